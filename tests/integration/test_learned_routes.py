#!/usr/bin/python3
"""Routes learned from the peers' catalogs (issue 4): guangzhou - shenzhen - hongkong with no
configured route between guangzhou and hongkong at all. Each gateway advertises in
/fed/v1/catalog the cities it reaches and in how many hops; its peers learn them as routes
through it (one more hop), so within a few seconds guangzhou queries hongkong's data through
shenzhen, and the answer's route says so. A city nobody advertises stays unreachable (502)."""
import json
import time

import harness


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen", "hongkong"],
                             [("guangzhou", "shenzhen"), ("shenzhen", "hongkong")],
                             space_rows=2000)
    gz, sz, hk = gws["guangzhou"], gws["shenzhen"], gws["hongkong"]
    gz.routes, hk.routes = [], []  # nothing configured beyond the direct peers
    gz.write_config()
    hk.write_config()
    for g in (hk, sz, gz):
        g.start()
    t.check(gz.wait_peers(10) and hk.wait_peers(10), "federation ready")
    q = json.dumps({"dataset": "hongkong/stroke-registry", "op": "count"})
    deadline = time.time() + 15
    r = None
    while time.time() < deadline:
        r = gz.query(None, body=q)
        if r.status == 200:
            break
        time.sleep(0.3)
    t.check(r is not None and r.status == 200 and
            (r.json() or {}).get("result", {}).get("count") == 2000 and
            r.headers.get("x-baygate-route") == "guangzhou,shenzhen,hongkong",
            "guangzhou learned hongkong through shenzhen's catalog and queried it", r)
    qb = json.dumps({"dataset": "guangzhou/cerebral-infarction", "op": "count"})
    deadline = time.time() + 15
    while time.time() < deadline:
        r = hk.query(None, body=qb)
        if r.status == 200:
            break
        time.sleep(0.3)
    t.check(r.status == 200 and r.headers.get("x-baygate-route") ==
            "hongkong,shenzhen,guangzhou", "and the other way round", r)
    r = gz.query(None, body=json.dumps({"dataset": "zhuhai/stroke-registry", "op": "count"}))
    t.check(r.status == 502 and r.error_code() == "no_route",
            "a city nobody advertises: 502 no_route", r)


if __name__ == "__main__":
    harness.run(main)
