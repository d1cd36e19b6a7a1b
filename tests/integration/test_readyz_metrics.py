#!/usr/bin/python3
"""/readyz 200 when every peer is connected, 503 naming the peer that is down; who may read
/readyz and /metrics over TLS; /metrics (Prometheus text) has baygate_requests_total etc. The
traffic counted is real federated counts (guangzhou's own cerebral-infarction, shenzhen's
stroke-registry one hop away)."""
import json
import re

import harness
from harness import curl


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen", "macau"],
                             [("guangzhou", "shenzhen"), ("guangzhou", "macau")])
    gz = gws["guangzhou"]
    for c in ("shenzhen", "macau", "guangzhou"):
        gws[c].start()

    r = gz.wait_peers(10)
    t.check(r, "/readyz 200 with shenzhen and macau up (within 10 s)", gz.readyz())
    if r:
        j = r.json() or {}
        t.check(j.get("ready") is True and j.get("city") == "guangzhou"
                and set((j.get("peers") or {}).keys()) == {"shenzhen", "macau"},
                "   body: ready true, city guangzhou, peers shenzhen+macau", r.body)

    # over TLS: a verified cert of this city may; another city's may not; none may not
    r = gz.get("/readyz", cert=gz.client("admin"))
    t.check(r.status == 200, "TLS /readyz with guangzhou admin cert -> 200", r)
    r = gz.get("/readyz", cert=gws["shenzhen"].client("admin"))
    t.check(r.status == 403 and r.error_code() == "forbidden", "TLS /readyz with shenzhen admin cert -> 403 forbidden", r)
    r = gz.get("/metrics")
    t.check(r.status == 403, "TLS /metrics without cert -> 403", r)

    answered = 0
    for _ in range(3):
        for ds in ("guangzhou/cerebral-infarction", "shenzhen/stroke-registry"):
            q = gz.query(None, body=json.dumps({"dataset": ds, "op": "count"}))
            answered += q.status == 200
    t.check(answered == 6, "6 queries (own city and shenzhen) answered 200 (%d)" % answered)
    gz.get("/nope", cert=gz.client("firm"))
    r = curl(t, gz.local_url("/metrics"), h2c=True)
    t.check(r.status == 200 and "baygate_requests_total" in (r.body or ""),
            "/metrics on local listener -> 200 with baygate_requests_total", r)
    body = r.body or ""
    tot = 0.0
    for m in re.finditer(r'^baygate_requests_total\{([^}]*)\}\s+([0-9.eE+]+)', body, re.M):
        if 'status="200"' in m.group(1):
            tot += float(m.group(2))
    t.check(tot >= 6, "baygate_requests_total{status=\"200\"} sums to >= 6 (%g)" % tot,
            "\n".join(l for l in body.split("\n") if l.startswith("baygate_requests_total")))
    t.check(re.search(r'^baygate_requests_total\{[^}]*status="404"[^}]*\}\s+[1-9]', body, re.M),
            "baygate_requests_total has a status=\"404\" sample")
    for name in ("baygate_request_duration_seconds_bucket", "baygate_peer_state", "baygate_open_streams",
                 "baygate_connections", "baygate_bytes_total"):
        t.check(re.search(r"^%s[{ ]" % name, body, re.M), "/metrics has %s" % name)
    t.check(re.search(r"^# TYPE baygate_requests_total counter", body, re.M),
            "/metrics: # TYPE baygate_requests_total counter")
    r = gz.get("/metrics", cert=gz.client("admin"))
    t.check(r.status == 200 and "baygate_requests_total" in (r.body or ""),
            "TLS /metrics with guangzhou admin cert -> 200", r)

    gws["macau"].kill()
    t.log("macau SIGKILLed")
    rz = harness.wait_until(lambda: (lambda x: x if x.status == 503 else None)(gz.readyz()), 10, 0.2)
    t.check(rz is not None and rz and "macau" in (rz.body or ""),
            "/readyz -> 503 naming macau after macau died", rz or gz.readyz())
    if rz:
        j = rz.json() or {}
        peers = j.get("peers") or {}
        t.check(j.get("ready") is False and peers.get("shenzhen") == "connected"
                and peers.get("macau") not in (None, "connected"),
                "   body: ready false, shenzhen connected, macau not (%s)" % peers, rz.body)
    r = gz.get("/healthz")
    t.check(r.status == 200, "/healthz still 200 while not ready", r)
    r = curl(t, gz.local_url("/metrics"), h2c=True)
    t.check(re.search(r'^baygate_peer_state\{[^}]*peer="macau"', r.body or "", re.M),
            "/metrics has baygate_peer_state for macau", r)


if __name__ == "__main__":
    harness.run(main)
