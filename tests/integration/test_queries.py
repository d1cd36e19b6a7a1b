#!/usr/bin/python3
"""Federated queries (issue 4) on four real gateways with the embedded data space and the
shipped profiles: guangzhou - shenzhen - hongkong, guangzhou - macau.
- every operation on one city and fanned out over the cities that hold a dataset equals the same
  computation done here, independently, on the union of the cities' synthetic rows (dumped with
  `baygatectl space dump`, the gateway's own generator and seed): counts, sums and histograms
  exactly, mean and variance within 1e-9, single-city quantiles exactly on the fine grid,
  Bland-Altman agreement from per-city sufficient statistics;
- disclosure: tiny groups come back as {"suppressed": ...} objects, never small numbers, and no
  number that crosses a border is a count below k; a differencing attack with two overlapping
  filters gets its second answer suppressed;
- hongkong reaches macau over three hops (hongkong, shenzhen, guangzhou, macau);
- bad input: unknown dataset (404 with near names), unknown field (400 listing fields), edges,
  probabilities, group_by, filter types (400 naming the member), dataset outside the contract
  (403), no route (502 no_route), a failed city in a fan-out (partial with per-city status)."""
import csv
import io
import json
import math
import os
import subprocess
import threading

import harness

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))
ROWS = 20000
K = {"guangzhou": 5, "shenzhen": 5, "hongkong": 10, "macau": 10}


def dump(city, dataset):
    out = subprocess.run([harness.baygatectl_bin(), "space", "dump", "--city", city, "--dataset",
                          dataset, "--rows", str(ROWS), "--seed", "1"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return list(csv.DictReader(io.StringIO(out)))


def propose(gw, body, role="firm"):
    r = gw.query(None, role=role, path="/v1/contracts", body=json.dumps(body, ensure_ascii=False))
    return r


def ask(gw, body, role="firm"):
    return gw.query(None, role=role, body=json.dumps(body))


def match(row, where):
    for f, op, v in where:
        x = row[f]
        if isinstance(v, str) or (isinstance(v, list) and v and isinstance(v[0], str)):
            pass
        else:
            x = float(x)
        if op == "=" and not x == v:
            return False
        if op == "!=" and not x != v:
            return False
        if op == "<" and not x < v:
            return False
        if op == "<=" and not x <= v:
            return False
        if op == ">" and not x > v:
            return False
        if op == ">=" and not x >= v:
            return False
        if op == "in" and x not in v:
            return False
    return True


def rows_of(tables, where):
    return [r for t in tables for r in t if match(r, where)]


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen", "hongkong", "macau"],
                             [("guangzhou", "shenzhen"), ("shenzhen", "hongkong"),
                              ("guangzhou", "macau")],
                             extra_yaml="profiles: %s" % PROFILES, space_rows=ROWS)
    gz, sz, hk, mo = gws["guangzhou"], gws["shenzhen"], gws["hongkong"], gws["macau"]
    for g in (mo, hk, sz, gz):
        g.start()
    t.check(gz.wait_peers(15) and hk.wait_peers(15) and mo.wait_peers(15), "federation ready")

    # contracts of a guangzhou firm with shenzhen, hongkong and macau, and a hongkong firm's
    # with macau (three hops away)
    def contract(home, provider, dataset, ops, basis="伦理审查批准", purpose="科研"):
        r = propose(home, {"provider": provider, "datasets": ["%s/%s" % (provider, dataset)],
                           "purpose": purpose, "operations": ops, "legal_basis": basis,
                           "valid_days": 60, "max_queries": 400})
        t.require(r.status == 201, "contract %s -> %s for %s" % (home.city, provider, dataset), r)
        return r.json()["id"]

    c_hk = contract(gz, "hongkong", "stroke-registry", ["统计分析"])
    c_sz = contract(gz, "shenzhen", "stroke-registry", ["统计分析"])
    c_mo = contract(gz, "macau", "neonatal-bilirubin", ["一致性评估", "统计分析"], basis="个人同意")
    c_mo_p = contract(gz, "macau", "peds-pneumonia-indicators", ["统计分析"], basis="个人同意")
    r = propose(hk, {"provider": "macau", "datasets": ["macau/peds-pneumonia-indicators"],
                     "purpose": "scientific research", "operations": ["counts"],
                     "legal_basis": "prescribed consent", "valid_days": 30})
    t.require(r.status == 201, "hongkong firm -> macau contract", r)
    c_hk_mo = r.json()["id"]

    stroke = {"shenzhen": dump("shenzhen", "stroke-registry"),
              "hongkong": dump("hongkong", "stroke-registry")}
    t.check(len(stroke["hongkong"]) == ROWS and stroke["hongkong"][0] != stroke["shenzhen"][0],
            "synthetic rows dumped for both cities, different data", len(stroke["hongkong"]))

    # -- single city, count with filter and group_by
    where = [["age", ">=", 65], ["stroke_type", "=", "ischaemic"]]
    r = ask(gz, {"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "count",
                 "where": where, "group_by": ["sex"]})
    j = r.json() or {}
    truth = {}
    for row in rows_of([stroke["hongkong"]], where):
        truth[row["sex"]] = truth.get(row["sex"], 0) + 1
    got = {g["group"]["sex"]: g.get("count") for g in j.get("result", {}).get("groups", [])}
    t.check(r.status == 200 and got == truth and j.get("partial") is False and
            j.get("cities", {}).get("hongkong", {}).get("status") == "ok",
            "hongkong count by sex, age>=65 ischaemic: exact (%s)" % truth, r)

    # -- fan-out over both stroke cities: count, sum, mean, histogram
    both = {"shenzhen": c_sz, "hongkong": c_hk}
    union = stroke["shenzhen"] + stroke["hongkong"]
    w2 = [["age", "<", 80], ["hospital", "in", ["shenzhen-h1", "shenzhen-h2", "hongkong-h1",
                                                "hongkong-h2"]]]
    sel = rows_of([union], w2)
    r = ask(gz, {"contracts": both, "dataset": "*/stroke-registry", "op": "count", "where": w2})
    j = r.json() or {}
    t.check(r.status == 200 and j.get("result", {}).get("count") == len(sel) and
            j.get("partial") is False and set(j.get("cities", {})) == {"shenzhen", "hongkong"},
            "fan-out count over shenzhen + hongkong = count on the union (%d)" % len(sel), r)

    r = ask(gz, {"contracts": both, "dataset": "*/stroke-registry", "op": "sum", "field": "nihss",
                 "where": w2})
    j = r.json() or {}
    s_true = sum(int(x["nihss"]) for x in sel)
    t.check(r.status == 200 and j.get("result", {}).get("sum") == s_true and
            j["result"].get("n") == len(sel), "fan-out sum of nihss exact (%d)" % s_true, r)

    r = ask(gz, {"contracts": both, "dataset": "*/stroke-registry", "op": "mean",
                 "field": "onset_to_door_min", "where": w2, "group_by": "stroke_type"})
    j = r.json() or {}
    ok = r.status == 200
    for g in j.get("result", {}).get("groups", []):
        xs = [float(x["onset_to_door_min"]) for x in sel
              if x["stroke_type"] == g["group"]["stroke_type"]]
        m = sum(xs) / len(xs)
        v = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
        ok = ok and g["n"] == len(xs) and abs(g["mean"] - m) <= 1e-9 * abs(m) and \
            abs(g["variance"] - v) <= 1e-9 * v
    t.check(ok and len(j.get("result", {}).get("groups", [])) == 2,
            "fan-out mean/variance by stroke type: relative error <= 1e-9 (Chan merge)", r)

    edges = [18, 45, 65, 80, 101]
    r = ask(gz, {"contracts": both, "dataset": "*/stroke-registry", "op": "histogram",
                 "field": "age", "edges": edges})
    j = r.json() or {}
    bins = [b.get("count") for b in j.get("result", {}).get("bins", [])]
    tb = [0] * (len(edges) + 1)
    for x in union:
        a = float(x["age"])
        i = 0
        while i < len(edges) and a >= edges[i]:
            i += 1
        tb[i] += 1
    t.check(r.status == 200 and bins == [c if c == 0 or c >= 10 else {"suppressed": "below_k"}
                                         for c in tb],
            "fan-out histogram of age exact per bin (%s)" % tb, r)

    # -- single-city quantiles: exact on the fine grid, only the quantiles released
    r = ask(gz, {"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "quantiles",
                 "field": "onset_to_door_min", "probs": [0.1, 0.5, 0.9]})
    j = r.json() or {}
    xs = sorted(float(x["onset_to_door_min"]) for x in stroke["hongkong"])
    tq = [xs[max(0, math.ceil(p * len(xs)) - 1)] for p in (0.1, 0.5, 0.9)]
    gq = [q.get("value") for q in j.get("result", {}).get("quantiles", [])]
    t.check(r.status == 200 and gq == tq, "hongkong quantiles of onset-to-door exact (%s)" % tq, r)

    # -- agreement: guangzhou (own data, local leg) + macau, per-city sufficient statistics
    bili = dump("guangzhou", "neonatal-bilirubin") + dump("macau", "neonatal-bilirubin")
    r = ask(gz, {"contracts": {"guangzhou": "local", "macau": c_mo},
                 "dataset": "*/neonatal-bilirubin", "op": "agreement", "fields": ["tcb", "tsb"]})
    j = r.json() or {}
    d = [float(x["tcb"]) - float(x["tsb"]) for x in bili]
    n = len(d)
    dm = sum(d) / n
    sd = math.sqrt(sum((x - dm) ** 2 for x in d) / (n - 1))
    res = j.get("result", {})
    t.check(r.status == 200 and res.get("n") == n and abs(res.get("bias", 1e9) - dm) < 1e-9 *
            max(1, abs(dm)) and abs(res.get("sd_differences", 1e9) - sd) < 1e-9 * sd and
            abs(res["limits_of_agreement"][0] - (dm - 1.96 * sd)) < 1e-6 and
            "heterogeneity" in res and res.get("proportional_bias", {}).get("slope", 0) > 0,
            "agreement tcb vs tsb over guangzhou + macau: bias %.4f sd %.4f, LoA, proportional "
            "bias > 0, heterogeneity" % (dm, sd), r)

    # -- quantiles across cities: fine grids under secure aggregation, exact on the union
    pneu_gz = dump("guangzhou", "peds-pneumonia-indicators")
    pneu_mo = dump("macau", "peds-pneumonia-indicators")
    probs = [0.05, 0.25, 0.5, 0.75, 0.95]
    r = ask(gz, {"contracts": {"guangzhou": "local", "macau": c_mo_p},
                 "dataset": "*/peds-pneumonia-indicators", "op": "quantiles", "field": "crp",
                 "probs": probs, "group_by": "pathogen"})
    j = r.json() or {}
    ok = r.status == 200 and j.get("partial") is False
    for g in j.get("result", {}).get("groups", []):
        xs = sorted(float(x["crp"]) for x in pneu_gz + pneu_mo
                    if x["pathogen"] == g["group"]["pathogen"])
        want = [round(xs[max(0, math.ceil(p * len(xs)) - 1)], 1) for p in probs]
        got = [round(q["value"], 1) for q in g.get("quantiles", [])]
        ok = ok and g.get("n") == len(xs) and got == want
    t.check(ok and len(j.get("result", {}).get("groups", [])) == 6,
            "CRP quantiles by pathogen over guangzhou + macau (masked fine grids): exact", r)
    for city in (gz, mo):
        e = [x for x in city.access_log_entries() if x.get("route") in ("/fed/v1/catalog",
                                                                         "/fed/v1/query")]
        t.check(city is gz or e, "%s answered the certificate and query legs" % city.city, e)

    r = gz.get("/v1/catalog", cert=gz.client("firm"))
    j = r.json() or {}
    cities = j.get("cities", {})
    hk_ds = {d["name"]: d for d in cities.get("hongkong", {}).get("datasets", [])}
    t.check(r.status == 200 and set(cities) == {"guangzhou", "shenzhen", "hongkong", "macau"}
            and "stroke-registry" in hk_ds and hk_ds["stroke-registry"]["approx_rows"] == ROWS
            and any(f["name"] == "nihss" for f in hk_ds["stroke-registry"]["fields"]) and
            any("统计分析" in o.get("in_your_terms", []) for o in
                cities.get("hongkong", {}).get("terms", {}).get("operations", [])) and
            "gateway_cert" not in cities.get("hongkong", {}),
            "GET /v1/catalog: every city's datasets, fields, sizes, hongkong's terms in "
            "guangzhou's vocabulary", r)

    # -- disclosure: tiny groups are objects, never small numbers
    wt = [["age", ">=", 90]]
    r = ask(gz, {"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "count",
                 "where": wt, "group_by": ["hospital", "sex"]})
    j = r.json() or {}
    groups = j.get("result", {}).get("groups", [])
    small = [g for g in groups if isinstance(g.get("count"), int) and 0 < g["count"] < 10]
    supp = [g for g in groups if isinstance(g.get("count"), dict)]
    t.check(r.status == 200 and not small and supp and
            all(g["count"].get("suppressed") in ("below_k", "complementary") for g in supp),
            "group_by hospital x sex on age>=90: %d cells suppressed as objects, no count < 10"
            % len(supp), r)
    # complementary: no suppressed cell recoverable from its row (hospital) total
    tr = {}
    for row in rows_of([stroke["hongkong"]], wt):
        tr[row["hospital"]] = tr.get(row["hospital"], 0) + 1
    per_h = {}
    for g in groups:
        per_h.setdefault(g["group"]["hospital"], []).append(g["count"])
    rec = [h for h, cs in per_h.items() if sum(isinstance(c, dict) for c in cs) == 1]
    t.check(not rec, "no hospital line has exactly one suppressed cell (complementary)", per_h)

    # differencing: find two overlapping filters whose difference is 1..9 people
    base = [["hospital", "=", "hongkong-h3"]]
    hk_rows = rows_of([stroke["hongkong"]], base)
    pair = None
    for a in range(40, 95):
        n1 = sum(1 for x in hk_rows if float(x["age"]) >= a)
        n2 = sum(1 for x in hk_rows if float(x["age"]) >= a + 1)
        if n2 >= 10 and 0 < n1 - n2 < 10:
            pair = (a, n1, n2)
            break
    t.require(pair is not None, "a differencing pair exists in the synthetic data")
    a, n1, n2 = pair
    r1 = ask(gz, {"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "count",
                  "where": base + [["age", ">=", a]]})
    r2 = ask(gz, {"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "count",
                  "where": base + [["age", ">=", a + 1]]})
    c1 = (r1.json() or {}).get("result", {}).get("count")
    c2 = (r2.json() or {}).get("result", {}).get("count")
    t.check(c1 == n1 and isinstance(c2, dict) and c2.get("suppressed") == "differencing",
            "differencing attack: age>=%d answered (%d), age>=%d suppressed (differs by %d < k)"
            % (a, n1, a + 1, n1 - n2), (r1, r2))

    # -- differential privacy: a contract with a privacy budget gets exact discrete-Laplace
    # noise, a tenth of the budget per release; an identical query is answered from the cache
    # with the same noise at no cost; the eleventh distinct release is refused
    r = propose(gz, {"provider": "hongkong", "datasets": ["hongkong/liver-cancer"],
                     "purpose": "科研", "operations": ["统计分析"], "legal_basis": "伦理审查批准",
                     "valid_days": 30, "max_queries": 100, "epsilon": 1.0})
    t.require(r.status == 201 and r.json().get("effective", {}).get("epsilon") == 1.0,
              "contract with epsilon 1.0", r)
    c_dp = r.json()["id"]
    liver = dump("hongkong", "liver-cancer")

    def dp(age):
        return ask(gz, {"contract": c_dp, "dataset": "hongkong/liver-cancer", "op": "count",
                        "where": [["age", ">=", age]]})
    r1, r2 = dp(40), dp(40)
    v1 = (r1.json() or {}).get("result", {}).get("count", {})
    v2 = (r2.json() or {}).get("result", {}).get("count", {})
    true40 = sum(1 for x in liver if float(x["age"]) >= 40)
    t.check(r1.status == 200 and isinstance(v1, dict) and
            v1.get("noise", {}).get("mechanism") == "discrete_laplace" and
            abs(v1.get("noise", {}).get("scale", 0) - 10.0) < 1e-9 and
            abs(v1.get("value", -1e9) - true40) < 200,
            "noisy count typed with its mechanism and scale 10 (epsilon 0.1 per release), "
            "near the truth %d" % true40, r1)
    t.check(r2.status == 200 and v2 == v1, "the identical query: the same noisy answer (cache)",
            (r1, r2))
    # ... which crosses the border again, so it is receipted again (another provider receipt)
    rc1 = ((r1.json() or {}).get("cities", {}).get("hongkong") or {}).get("receipt") or {}
    rc2 = ((r2.json() or {}).get("cities", {}).get("hongkong") or {}).get("receipt") or {}
    t.check(rc1.get("city") == rc2.get("city") == "hongkong" and
            isinstance(rc2.get("index"), int) and rc2.get("index") != rc1.get("index"),
            "the cached noisy answer carries its own provider receipt", (rc1, rc2))
    statuses = [dp(41 + i).status for i in range(9)]
    r = dp(60)
    t.check(statuses == [200] * 9 and r.status == 429 and r.error_code() == "budget_exhausted",
            "ten distinct releases spend the budget; the eleventh is refused 429", (statuses, r))
    r = dp(40)
    t.check(r.status == 200 and (r.json() or {}).get("result", {}).get("count") == v1,
            "the first query, asked again after the budget is spent: still its cached answer", r)
    # the epsilon spends run on the ledger's writer thread, in one store transaction per batch:
    # 16 distinct releases at once against a fresh budget of ten: exactly ten are answered
    r = propose(gz, {"provider": "hongkong", "datasets": ["hongkong/liver-cancer"],
                     "purpose": "科研", "operations": ["统计分析"], "legal_basis": "伦理审查批准",
                     "valid_days": 29, "max_queries": 100, "epsilon": 1.0})
    c_dp2 = (r.json() or {}).get("id", "")
    got = []
    lock = threading.Lock()

    def one(age):
        rr = ask(gz, {"contract": c_dp2, "dataset": "hongkong/liver-cancer", "op": "count",
                      "where": [["age", ">=", age]]})
        with lock:
            got.append((rr.status, rr.error_code() if rr.status != 200 else ""))
    ths = [threading.Thread(target=one, args=(30 + i,)) for i in range(16)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(60)
    t.check(r.status == 201 and sum(1 for st, _ in got if st == 200) == 10 and
            sum(1 for st, c in got if st == 429 and c == "budget_exhausted") == 6,
            "16 concurrent distinct noisy releases against a budget of ten: 10 x 200, 6 x 429",
            sorted(got))
    r = ask(gz, {"contract": c_dp, "dataset": "hongkong/liver-cancer", "op": "mean",
                 "field": "afp"})
    t.check(r.status == 403 and r.error_code() == "dp_unsupported_operation",
            "mean under a privacy budget: 403 dp_unsupported_operation", r)

    # -- three hops: hongkong -> shenzhen -> guangzhou -> macau
    pneu = dump("macau", "peds-pneumonia-indicators")
    r = ask(hk, {"contract": c_hk_mo, "dataset": "macau/peds-pneumonia-indicators",
                 "op": "count", "where": [["pathogen", "=", "rsv"]]})
    j = r.json() or {}
    t.check(r.status == 200 and j.get("result", {}).get("count") ==
            sum(1 for x in pneu if x["pathogen"] == "rsv") and
            r.headers.get("x-baygate-route", "") in ("", "hongkong,shenzhen,guangzhou,macau"),
            "hongkong firm counts macau rows over three hops", r)
    e = [x for x in sz.access_log_entries() if x.get("route") == "/fed/v1/query"]
    t.check(e, "the leg crossed shenzhen as transit", sz.access_log_entries()[-3:])

    # -- bad input
    def bad(body, status, code, what, gw=gz):
        r = ask(gw, body)
        t.check(r.status == status and r.error_code() == code, what, r)
        return r
    r = bad({"contract": c_hk, "dataset": "hongkong/stroke-registy", "op": "count"}, 404,
            "unknown_dataset", "misspelt dataset: 404 unknown_dataset")
    t.check("stroke-registry" in r.body, "the 404 lists the near name stroke-registry", r)
    r = bad({"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "mean",
             "field": "agee"}, 400, "invalid_query", "unknown field: 400")
    t.check("agee" in r.body and "nihss" in r.body, "the 400 names the field and lists fields", r)
    bad({"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "histogram",
         "field": "age", "edges": [10, 5]}, 400, "invalid_query", "edges not increasing: 400")
    bad({"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "quantiles",
         "field": "age", "probs": [0.5, 1.0]}, 400, "invalid_query", "probability 1.0: 400")
    bad({"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "count",
         "group_by": ["sex", "hospital", "stroke_type"]}, 400, "invalid_query",
        "three group_by fields: 400")
    r = bad({"contract": c_hk, "dataset": "hongkong/stroke-registry", "op": "count",
             "where": [["sex", ">", 3]]}, 400, "invalid_query", "filter type mismatch: 400")
    t.check("where[0]" in r.body, "the 400 names where[0]", r)
    bad({"contract": c_hk, "dataset": "hongkong/liver-cancer", "op": "count"}, 403,
        "contract_scope", "dataset outside the contract: 403")
    bad({"contract": c_hk, "dataset": "zhuhai/stroke-registry", "op": "count"}, 502,
        "no_route", "city without a route: 502 no_route")
    r = ask(gz, {"contracts": {"shenzhen": c_sz, "hongkong": "0" * 64},
                 "dataset": "*/stroke-registry", "op": "count"})
    j = r.json() or {}
    t.check(r.status == 200 and j.get("partial") is True and
            j.get("cities", {}).get("shenzhen", {}).get("status") == "ok" and
            j.get("cities", {}).get("hongkong", {}).get("code") == "contract_required" and
            j.get("result", {}).get("count") == len(stroke["shenzhen"]),
            "a city refused in a fan-out: partial, per-city status, the rest answered", r)


if __name__ == "__main__":
    harness.run(main)
