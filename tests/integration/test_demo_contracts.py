#!/usr/bin/python3
"""The contracts scenario of issue 3 on the processes `make demo` runs: `baygatectl demo
--no-start` writes the demo's certificates and four configs (guangzhou - shenzhen - hongkong,
guangzhou - macau; two workers each; 100000 rows per dataset; the shipped profiles); the test
moves their listeners to free ports (so it never clashes with a demo someone is running) and
starts the four gateways on them, unchanged otherwise. Then, with the demo's own client
certificates:
- a guangzhou firm proposes, in Chinese terms, a contract for hongkong stroke data: 201
  FINALIZED; hongkong holds it in its English terms, with k = 10 and at most 180 days;
- a permitted query passes; an operation the contract does not permit is 403;
- 64 concurrent queries against a budget of 50 get exactly 50 answers;
- a contract that ends in a few seconds is answered before its end and refused after it, by
  the home and by the provider;
- DELETE revokes it on both sides: within one second the home and the provider (a leg sent to
  hongkong straight from its peer shenzhen) both refuse it;
- hongkong's regulator proves a receipt offline (`baygatectl verify`), and `baygatectl
  reconcile` finds every receipt of guangzhou and hongkong with its counterpart, except the
  one use that did not come from guangzhou (the leg sent from shenzhen), which it reports.""" 
import json
import os
import re
import subprocess
import threading
import time

import harness
from harness import curl

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))
CITIES = ("guangzhou", "shenzhen", "hongkong", "macau")
FIRM = "spiffe://guangzhou.gba/firm/demo"
PB = "application/x-protobuf"


def main(t):
    d = t.path("demo")
    ctl = os.path.join(harness.bin_dir(), "baygatectl")
    r = subprocess.run([ctl, "demo", "--dir", d, "--bin", harness.bin_dir(), "--no-start",
                        "--profiles", PROFILES], capture_output=True, text=True, timeout=120)
    t.require(r.returncode == 0 and all(os.path.exists(os.path.join(d, c + ".yaml"))
                                        for c in CITIES),
              "baygatectl demo --no-start wrote the four configs", r.stdout + r.stderr)
    # the demo's ports (TLS 8443.., local 9443..) -> free ones, in every config
    ports = {}
    for i in range(4):
        ports[8443 + i] = harness.free_port()
        ports[9443 + i] = harness.free_port()
    procs = {}
    for c in CITIES:
        path = os.path.join(d, c + ".yaml")
        with open(path) as f:
            y = f.read()
        y = re.sub(r"127\.0\.0\.1:(8443|8444|8445|8446|9443|9444|9445|9446)\b",
                   lambda m: "127.0.0.1:%d" % ports[int(m.group(1))], y)
        with open(path, "w") as f:
            f.write(y)
        procs[c] = harness.Proc(t, "demo-" + c, [harness.baygate_bin(), "--config", path],
                                check_exit=True).start()
    tls = {c: ports[8443 + i] for i, c in enumerate(CITIES)}
    local = {c: ports[9443 + i] for i, c in enumerate(CITIES)}
    bundle = os.path.join(d, "trust-bundle.pem")

    def ready(c):
        r = curl(t, "http://127.0.0.1:%d/readyz" % local[c], h2c=True, timeout=2)
        return r.status == 200
    t.require(harness.wait_until(lambda: all(ready(c) for c in CITIES), 60, 0.3),
              "the four demo gateways are up and peered")

    def client(city, role):
        return (os.path.join(d, "clients", "%s-%s.crt" % (city, role)),
                os.path.join(d, "clients", "%s-%s.key" % (city, role)))
    fcrt, fkey = client("guangzhou", "firm")

    def gz(path, body=None, method=None):
        return curl(t, "https://127.0.0.1:%d%s" % (tls["guangzhou"], path), cacert=bundle,
                    cert=fcrt, key=fkey, method=method,
                    data=None if body is None else json.dumps(body, ensure_ascii=False))

    ask = {"provider": "hongkong", "datasets": ["hongkong/stroke-registry"], "purpose": "科研",
           "operations": ["统计分析"], "legal_basis": "伦理审查批准", "valid_days": 365,
           "max_queries": 50}
    r = gz("/v1/contracts", ask)
    c = r.json() or {}
    eff = c.get("effective", {})
    days = (harness_ts(eff.get("valid_until")) - harness_ts(eff.get("valid_from"))) / 86400.0
    t.check(r.status == 201 and c.get("state") == "FINALIZED" and
            c.get("home_terms", {}).get("purpose") == "科研" and
            c.get("provider_terms", {}).get("purpose") == "scientific research" and
            eff.get("min_cell_size") == 10 and 0 < days <= 180,
            "a guangzhou firm's contract in Chinese terms: FINALIZED, held by hongkong in "
            "English, k = 10, %.0f days (asked 365, hongkong allows 180)" % days, r)
    cid = c.get("id", "")

    def q(body):
        return gz("/v1/queries", body)
    r = q({"contract": cid, "dataset": "hongkong/stroke-registry", "op": "count",
           "where": [["age", ">=", 65]]})
    n65 = ((r.json() or {}).get("result") or {}).get("count")
    t.check(r.status == 200 and isinstance(n65, int) and n65 > 0,
            "a permitted query (count, routed guangzhou -> shenzhen -> hongkong): 200", r)
    r = q({"contract": cid, "dataset": "hongkong/stroke-registry", "op": "agreement",
           "fields": ["nihss", "age"]})
    t.check(r.status == 403 and r.error_code() == "operation_not_permitted",
            "an operation the contract does not permit (agreement): 403", r)

    # ---- the budget: 64 at once against 50 (a contract of its own)
    r = gz("/v1/contracts", dict(ask, valid_days=100))
    bid = (r.json() or {}).get("id", "")
    t.check(r.status == 201, "a second contract with a budget of 50", r)
    results, lock = [], threading.Lock()

    def one():
        rr = q({"contract": bid, "dataset": "hongkong/stroke-registry", "op": "count"})
        with lock:
            results.append((rr.status, rr.error_code()))
    ths = [threading.Thread(target=one) for _ in range(64)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(60)
    ok = sum(1 for st, _ in results if st == 200)
    spent = sum(1 for st, code in results if st == 429 and code == "budget_exhausted")
    t.check(ok == 50 and spent == 14,
            "64 concurrent queries against a budget of 50: %d x 200, %d x 429" % (ok, spent),
            sorted(results))

    # ---- the provider's side: a leg sent to hongkong straight from its peer shenzhen
    scrt = os.path.join(d, "shenzhen", "gateway.crt")
    skey = os.path.join(d, "shenzhen", "gateway.key")

    def leg(contract):
        h = ["x-baygate-hops: guangzhou,shenzhen", "x-baygate-dest: hongkong",
             "x-baygate-requester: " + FIRM, "content-type: " + PB,
             "x-baygate-contract: " + contract]
        return curl(t, "https://127.0.0.1:%d/fed/v1/query" % tls["hongkong"], cacert=bundle,
                    cert=scrt, key=skey, data=harness.leg_body("stroke-registry"), headers=h)

    # ---- expiry
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    short = dict(ask, valid_until=end, max_queries=10)
    del short["valid_days"]
    r = gz("/v1/contracts", short)
    sid = (r.json() or {}).get("id", "")
    t.check(r.status == 201, "a contract ending at %s" % end, r)
    r = q({"contract": sid, "dataset": "hongkong/stroke-registry", "op": "count"})
    t.check(r.status == 200, "before its end: 200", r)
    while time.time() < harness_ts(end) + 1.2:
        time.sleep(0.2)
    r = q({"contract": sid, "dataset": "hongkong/stroke-registry", "op": "count"})
    t.check(r.status == 403 and r.error_code() == "contract_expired",
            "after its end the home refuses it: 403 contract_expired", r)
    r = leg(sid)
    t.check(r.status == 403 and r.error_code() == "contract_expired",
            "and so does hongkong: 403 contract_expired", r)

    # ---- revocation
    r = leg(cid)
    t.check(r.status == 200 and r.headers.get("content-type") == PB,
            "before revocation hongkong answers a leg under the contract", r)
    forged = r.headers.get("x-request-id", "?")  # guangzhou never saw this one
    r = gz("/v1/contracts/" + cid, method="DELETE")
    t0 = time.time()
    t.check(r.status == 200 and (r.json() or {}).get("state") == "REVOKED",
            "DELETE /v1/contracts/{id}: 200 REVOKED", r)
    r1 = q({"contract": cid, "dataset": "hongkong/stroke-registry", "op": "count"})
    r2 = leg(cid)
    took = time.time() - t0
    t.check(r1.status == 403 and r1.error_code() == "contract_revoked" and
            r2.status == 403 and r2.error_code() == "contract_revoked" and took < 1.0,
            "within %.2f s both the home and hongkong refuse it: 403 contract_revoked" % took,
            (r1, r2))

    # ---- regulators (docs/regulators.md): every use above is provable and the two cities agree
    rcrt, rkey = client("hongkong", "regulator")

    def reg(path, out=None):
        return curl(t, "https://127.0.0.1:%d%s" % (tls["hongkong"], path), cacert=bundle,
                    cert=rcrt, key=rkey, output=out)
    cp, key = t.path("hk.checkpoint"), t.path("hk.key")
    r1, r2 = reg("/v1/ledger/checkpoint", cp), reg("/v1/ledger/key", key)
    size = int(open(cp).read().split("\n")[1]) if r1.status == 200 else 0
    rec = t.path("receipt-1.json")
    r3 = reg("/v1/receipts/1?tree_size=%d" % size, rec)
    v = subprocess.run([ctl, "verify", "--checkpoint", cp, "--key-file", key, "--receipt", rec],
                       capture_output=True, text=True, timeout=30)
    t.check(r1.status == r2.status == r3.status == 200 and size > 64 and v.returncode == 0 and
            "verified" in v.stdout,
            "baygatectl verify: hongkong's receipt 1 is in its signed tree of %d receipts" % size,
            v.stdout + v.stderr)
    gcrt, gkey = client("guangzhou", "regulator")
    rc = subprocess.run([ctl, "reconcile", "--a", "https://127.0.0.1:%d" % tls["guangzhou"],
                         "--b", "https://127.0.0.1:%d" % tls["hongkong"], "--cacert", bundle,
                         "--cert", gcrt, "--key", gkey, "--cert-b", rcrt, "--key-b", rkey],
                        capture_output=True, text=True, timeout=60)
    bad = [x for x in rc.stdout.splitlines() if x.startswith(("guangzhou#", "hongkong#"))]
    t.check(rc.returncode == 1 and re.search(r"summary: .* 1 discrepancy\b", rc.stdout) and
            len(bad) == 1 and "hongkong#" in bad[0] and forged in bad[0],
            "baygatectl reconcile guangzhou / hongkong: every receipt has its counterpart (the "
            "budget's refusals and the revocation included) but the one leg sent to hongkong "
            "from shenzhen, which guangzhou never saw: request %s" % forged,
            rc.stdout[-1500:] + rc.stderr)
    for c in CITIES:
        procs[c].stop()


def harness_ts(iso):
    import calendar
    if not iso:
        return 0
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


if __name__ == "__main__":
    harness.run(main)
