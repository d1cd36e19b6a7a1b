#!/usr/bin/python3
"""Disclosure control at the border against a hostile data space (issue 4): hongkong's data
space is an external one (tests/integration/upstream.py answering whatever a test writes into
a file), so the provider gateway's own check is all that stands between it and the border.
- a data space that answers rows, free text or a malformed aggregate: 502 not_an_aggregate,
  nothing of it in the answer;
- one that answers small counts: every count below k (hongkong: 10) comes back as
  {"suppressed": ...}, and its complement in the same line too, so no number crossing the
  border is a small count or recovers one;
- an honest aggregate state passes unchanged."""
import json
import os

import harness

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))


def main(t):
    body = t.path("space-answer.json")
    with open(body, "w") as f:
        f.write("{}")
    up = harness.PyUpstream(t, "hostile-space", body_file=body).start_ready()
    gws = harness.federation(t, ["guangzhou", "hongkong"], [("guangzhou", "hongkong")],
                             extra_yaml="profiles: %s" % PROFILES,
                             per_city={"hongkong": {"upstream": up.url()}})
    gz, hk = gws["guangzhou"], gws["hongkong"]
    hk.start()
    gz.start()
    t.check(gz.wait_peers(10), "federation ready")
    r = gz.query(None, path="/v1/contracts", body=json.dumps(
        {"provider": "hongkong", "datasets": ["hongkong/stroke-registry"], "purpose": "科研",
         "operations": ["统计分析"], "legal_basis": "伦理审查批准", "valid_days": 30,
         "max_queries": 100}, ensure_ascii=False))
    t.require(r.status == 201, "contract", r)
    cid = r.json()["id"]

    def answer_with(doc, query):
        with open(body, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        q = {"contract": cid, "dataset": "hongkong/stroke-registry"}
        q.update(query)
        return gz.query(None, body=json.dumps(q))

    rows = {"rows": [{"age": 71, "sex": "f", "nihss": 12, "hospital": "hongkong-h3"}]}
    r = answer_with(rows, {"op": "count"})
    # the row's values must not appear anywhere but in the receipt's base64 leaf hash, which is
    # random bytes ("...7M71dq..." once made this check fail by chance)
    err = json.dumps((r.json() or {}).get("error"))
    t.check(r.status == 502 and r.error_code() == "not_an_aggregate" and "71" not in err and
            "nihss" not in r.body and "hongkong-h3" not in r.body,
            "a data space answering rows: 502 not_an_aggregate, no row content in the answer", r)
    r = answer_with("patient 12 is 71 years old", {"op": "count"})
    t.check(r.status == 502 and r.error_code() == "not_an_aggregate" and "patient" not in r.body,
            "free text: 502 not_an_aggregate", r)
    bad = {"state": {"op": "histogram", "cells": [{"key": [], "n": 100, "bins": [50, 20, 10]}]}}
    r = answer_with(bad, {"op": "histogram", "field": "age", "edges": [50, 70]})
    t.check(r.status == 502 and r.error_code() == "not_an_aggregate",
            "a histogram whose bins do not add up to n: 502 not_an_aggregate", r)

    small = {"state": {"op": "count", "cells": [{"key": [0], "n": 3}, {"key": [1], "n": 500}]}}
    r = answer_with(small, {"op": "count", "group_by": ["sex"]})
    groups = (r.json() or {}).get("result", {}).get("groups", [])
    counts = {g["group"]["sex"]: g.get("count") for g in groups}
    t.check(r.status == 200 and counts.get("f") == {"suppressed": "below_k"} and
            counts.get("m") == {"suppressed": "complementary"},
            "small count 3 suppressed (below_k) and its only complement 500 too (the total is "
            "publishable by another query)", r)
    small2 = {"state": {"op": "count", "cells": [{"key": [], "n": 7}]}}
    r = answer_with(small2, {"op": "count"})
    t.check(r.status == 200 and (r.json() or {}).get("result", {}).get("count") ==
            {"suppressed": "below_k"} and '"count":7' not in r.body,
            "a total of 7: suppressed, never the number", r)
    hist = {"state": {"op": "histogram", "cells": [{"key": [], "n": 120,
                                                    "bins": [4, 60, 56]}]}}
    r = answer_with(hist, {"op": "histogram", "field": "age", "edges": [50, 70]})
    bins = [b.get("count") for b in (r.json() or {}).get("result", {}).get("bins", [])]
    t.check(r.status == 200 and isinstance(bins[0], dict) and isinstance(bins[2], dict) and
            bins[1] == 60 and all(not (isinstance(b, int) and 0 < b < 10) for b in bins),
            "histogram bin of 4 withheld, and the smallest complement with it", r)

    honest = {"state": {"op": "count", "cells": [{"key": [0], "n": 40}, {"key": [1], "n": 52}]}}
    r = answer_with(honest, {"op": "count", "group_by": ["sex"]})
    counts = {g["group"]["sex"]: g.get("count")
              for g in (r.json() or {}).get("result", {}).get("groups", [])}
    t.check(r.status == 200 and counts == {"f": 40, "m": 52},
            "an honest aggregate state passes unchanged", r)
    seen = up.requests_seen()
    t.check(seen >= 7, "every query reached the external data space (%d)" % seen)


if __name__ == "__main__":
    harness.run(main)
