#!/usr/bin/python3
"""Forwarding over two and three hops in the demo topology (guangzhou-shenzhen,
shenzhen-hongkong, guangzhou-macau): x-baygate-route, one request id in every access log on the
way, every city reaches every other; the request id and hop list reach a real upstream.
macau's data space is an external upstream (upstream.py, passthrough) that gets opaque datasets
relayed to it; the other cities hold the embedded data space, queried with real federated
queries (hongkong/stroke-registry, guangzhou/cerebral-infarction)."""
import json
import os

import harness

CITIES = ["guangzhou", "shenzhen", "hongkong", "macau"]
LINKS = [("guangzhou", "shenzhen"), ("shenzhen", "hongkong"), ("guangzhou", "macau")]
PATHS = {  # (from, to) -> expected route
    ("hongkong", "macau"): "hongkong,shenzhen,guangzhou,macau",
    ("guangzhou", "hongkong"): "guangzhou,shenzhen,hongkong",
    ("macau", "hongkong"): "macau,guangzhou,shenzhen,hongkong",
    ("shenzhen", "macau"): "shenzhen,guangzhou,macau",
    ("macau", "guangzhou"): "macau,guangzhou",
}
DATASET = {  # a dataset of each destination: real ones on the embedded spaces, opaque at macau
    "hongkong": "hongkong/stroke-registry",
    "guangzhou": "guangzhou/cerebral-infarction",
    "macau": "macau/x",
}


def count_query(gw, dataset, **kw):
    return gw.query(None, body=json.dumps({"dataset": dataset, "op": "count"}), **kw)


def log_lines(gw, rid, timeout=3.0):
    return gw.log_for(rid, timeout)


def main(t):
    up = harness.PyUpstream(t, "up-macau").start_ready()
    gws = harness.federation(t, CITIES, LINKS, per_city={"macau": {"upstream": up.url()}})
    for c in CITIES:
        gws[c].start()
    for c in CITIES:
        r = gws[c].wait_peers(10)
        t.check(r, "%s /readyz 200 (all peers connected) within 10 s" % c,
                gws[c].readyz())

    hk = gws["hongkong"]
    # three hops: hongkong -> shenzhen -> guangzhou -> macau, with a client request id
    rid = "it-3hop-0001"
    r = hk.query("macau/air-quality", headers=["x-request-id: " + rid])
    t.check(r.status == 200 and r.version == "2", "hongkong firm -> macau dataset: 200 over HTTP/2", r)
    t.check(r.headers.get("x-baygate-route") == "hongkong,shenzhen,guangzhou,macau",
            "x-baygate-route == hongkong,shenzhen,guangzhou,macau (got %r)"
            % r.headers.get("x-baygate-route"))
    t.check(r.headers.get("x-request-id") == rid, "x-request-id echoed (%r)" % r.headers.get("x-request-id"))
    j = r.json() or {}
    up_hdrs = j.get("headers", {})
    t.check(j.get("upstream") == "py" and j.get("path") == "/space/v1/query" and j.get("method") == "POST",
            "macau upstream got POST /space/v1/query", r.body)
    t.check(up_hdrs.get("x-request-id") == rid, "upstream saw x-request-id %s" % rid, up_hdrs)
    r2 = hk.query("macau/air-quality",
                  headers=["content-type: application/json; charset=utf-8"])
    t.check(((r2.json() or {}).get("headers") or {}).get("content-type")
            == "application/json; charset=utf-8",
            "the client's content-type reaches the upstream across three hops", r2.body)
    t.check(j.get("body_len") == len(json.dumps({"dataset": "macau/air-quality"})),
            "upstream got the whole request body", j.get("body_len"))
    for c in CITIES:
        lines = log_lines(gws[c], rid)
        t.check(len(lines) >= 1, "%s access log has request id %s" % (c, rid), gws[c].access_log_entries()[-3:])
        for e in lines[:1]:
            missing = [k for k in harness.ACCESS_LOG_KEYS if k not in e]
            t.check(not missing and e.get("status") == 200 and e.get("city") == c,
                    "   %s access log line: all keys, status 200, city %s" % (c, c),
                    "missing %s in %s" % (missing, e))

    # generated request id (no client id): same id in all four logs
    r = hk.query("macau/air-quality")
    gen = r.headers.get("x-request-id", "")
    t.check(r.status == 200 and len(gen) == 32 and all(ch in "0123456789abcdef" for ch in gen.lower()),
            "generated x-request-id is 32 hex digits (%r)" % gen, r)
    t.check(all(log_lines(gws[c], gen) for c in CITIES), "generated id %s in all four access logs" % gen)
    # an invalid client id is replaced
    r = hk.query("macau/air-quality", headers=["x-request-id: bad id!"])
    t.check(r.status == 200 and r.headers.get("x-request-id") not in (None, "bad id!")
            and len(r.headers.get("x-request-id", "")) == 32,
            "invalid client x-request-id replaced by a generated one", r.headers)

    # two hops: guangzhou -> shenzhen -> hongkong (embedded data space, a federated query)
    rid2 = "it-2hop-0002"
    r = count_query(gws["guangzhou"], "hongkong/stroke-registry",
                    headers=["x-request-id: " + rid2])
    j = r.json() or {}
    t.check(r.status == 200 and r.headers.get("x-baygate-route") == "guangzhou,shenzhen,hongkong",
            "guangzhou -> hongkong: 200, route guangzhou,shenzhen,hongkong", r)
    t.check(j.get("dataset") == "hongkong/stroke-registry" and
            j.get("result", {}).get("count") == gws["hongkong"].space_rows and
            j.get("cities", {}).get("hongkong", {}).get("route") == "guangzhou,shenzhen,hongkong"
            and r.headers.get("x-request-id") == rid2,
            "hongkong's answer: its rows counted, per-city route, the client's request id", r)
    for c in ("guangzhou", "shenzhen", "hongkong"):
        t.check(log_lines(gws[c], rid2), "%s access log has %s" % (c, rid2))
    e = log_lines(gws["shenzhen"], rid2)
    t.check(e and e[0].get("route") == "/fed/v1/query" and e[0].get("status") == 200,
            "   shenzhen logged the leg as transit on /fed/v1/query, 200", e)
    t.check(not log_lines(gws["macau"], rid2, 0.5), "macau access log does not have %s" % rid2)

    for (a, b), route in PATHS.items():
        r = count_query(gws[a], DATASET[b])
        t.check(r.status == 200 and r.headers.get("x-baygate-route") == route,
                "%s -> %s: 200 route %s" % (a, b, route), r)
    # the hop list reaching macau's upstream names each gateway before macau
    r = gws["shenzhen"].query("macau/y")
    hops = ((r.json() or {}).get("headers") or {}).get("x-baygate-hops")
    t.check(r.status == 200 and hops in ("shenzhen,guangzhou,macau", "shenzhen,guangzhou"),
            "x-baygate-hops at macau's upstream lists the path (%r)" % hops, r)


if __name__ == "__main__":
    harness.run(main)
