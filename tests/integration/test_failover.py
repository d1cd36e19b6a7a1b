#!/usr/bin/python3
"""Routing across regions with alternatives (issue 4): five gateways, hongkong reaches macau
over three hops through shenzhen (preferred) or zhuhai (the configured alternative):
  hongkong - shenzhen - guangzhou - macau
  hongkong - zhuhai   - guangzhou
- the query takes the preferred path, x-baygate-route names all four cities;
- shenzhen is killed: queries fail over to zhuhai within a bounded time;
- zhuhai is killed too: a single-city query answers 502, a fan-out answers `partial` with
  macau's failure in its per-city status and guangzhou's data merged;
- a deadline that expires on the way answers 504 deadline_exceeded without reaching macau."""
import json
import time

import harness


def ask(gw, body):
    return gw.query(None, body=json.dumps(body))


def main(t):
    cities = ["hongkong", "shenzhen", "zhuhai", "guangzhou", "macau"]
    links = [("hongkong", "shenzhen"), ("shenzhen", "guangzhou"), ("guangzhou", "macau"),
             ("hongkong", "zhuhai"), ("zhuhai", "guangzhou")]
    gws = harness.federation(t, cities, links, space_rows=5000,
                             timeouts={"backoff_initial_ms": 100, "backoff_max_ms": 500})
    hk, sz, zh, gz, mo = (gws[c] for c in cities)
    hk.routes = [("guangzhou", "shenzhen"), ("guangzhou", "zhuhai"), ("macau", "shenzhen"),
                 ("macau", "zhuhai")]
    hk.write_config()
    for g in (mo, gz, zh, sz, hk):
        g.start()
    t.check(hk.wait_peers(15) and gz.wait_peers(15), "federation ready")

    q = {"dataset": "macau/peds-pneumonia-indicators", "op": "count"}
    r = ask(hk, q)
    t.check(r.status == 200 and (r.json() or {}).get("result", {}).get("count") == 5000 and
            r.headers.get("x-baygate-route") == "hongkong,shenzhen,guangzhou,macau",
            "hongkong -> macau over three hops, preferred path through shenzhen", r)

    sz.kill()
    deadline = time.time() + 10
    r = None
    while time.time() < deadline:
        r = ask(hk, q)
        if r.status == 200:
            break
        time.sleep(0.2)
    t.check(r is not None and r.status == 200 and
            r.headers.get("x-baygate-route") == "hongkong,zhuhai,guangzhou,macau",
            "shenzhen killed: the query fails over to zhuhai", r)
    ok = all(ask(hk, q).status == 200 for _ in range(5))
    t.check(ok, "and keeps answering through zhuhai")

    zh.kill()
    time.sleep(0.5)
    r = ask(hk, q)
    t.check(r.status == 502, "zhuhai killed too: no path to macau, 502", r)
    r = ask(hk, {"dataset": "*/peds-pneumonia-indicators", "op": "count",
                 "contracts": {"macau": "none", "hongkong": "none"}})
    j = r.json() or {}
    t.check(r.status in (200, 502) and j.get("partial") is True and
            j.get("cities", {}).get("macau", {}).get("status") == "error",
            "fan-out with macau unreachable: partial, macau's failure in the per-city status", r)

    # deadlines shrink at every hop; expired on the way -> 504, never forwarded further
    r = ask(gz, {"dataset": "macau/peds-pneumonia-indicators", "op": "count",
                 "deadline_ms": 1})
    seen = [e for e in mo.access_log_entries() if e.get("request_id") == r.headers.get(
        "x-request-id")]
    t.check(r.status == 504 and r.error_code() == "deadline_exceeded" and not seen,
            "a 1 ms deadline: 504 deadline_exceeded, macau never ran it", r)
    r = ask(gz, {"dataset": "macau/peds-pneumonia-indicators", "op": "count",
                 "deadline_ms": 5000})
    t.check(r.status == 200, "a 5 s deadline: answered", r)


if __name__ == "__main__":
    harness.run(main)
