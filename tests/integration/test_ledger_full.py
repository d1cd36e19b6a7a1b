#!/usr/bin/python3
"""A provider whose ledger cannot be written stops releasing data (issue 5): guangzhou (home) -
hongkong (provider), profiles on, one contract. hongkong runs with a file-size limit
(RLIMIT_FSIZE, 1 MiB: its disk "fills up" once its ledger file reaches it) while h2load sends
federated counts to guangzhou's local listener until the limit is hit.
- every request is answered: 200 while hongkong's ledger takes receipts, then 503 (hongkong's
  `ledger_unavailable`, relayed by guangzhou); nothing else, and no gateway dies;
- hongkong's ledger holds exactly one allowed query receipt per 200 answer, so no answer left
  without its receipt and no receipt was written for an answer that was not released;
- hongkong keeps serving what needs no ledger write (/healthz) and counts the failures in
  /metrics;
- stopped, hongkong's ledger verifies in full (`--verify-ledger`: intact); restarted without the
  limit on the same ledger, it answers again, and its ledger has grown by that receipt."""
import os
import re
import subprocess
import time

import harness
from harness import curl

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))
FIRM = "spiffe://guangzhou.gba/firm/full"
LIMIT = 1 << 20  # bytes per file hongkong may write
N = 8000         # requests sent by h2load (the limit is hit after about 1000 - 2000)


def verify_ledger(gw):
    r = subprocess.run([harness.baygate_bin(), "--config", gw.config_path, "--verify-ledger"],
                       capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr


def main(t):
    gws = harness.federation(t, ["guangzhou", "hongkong"], [("guangzhou", "hongkong")],
                             client_identity=FIRM, extra_yaml="profiles: %s" % PROFILES,
                             limits={"firm_rps": 0, "firm_max_streams": 0},  # load, not limits
                             per_city={"hongkong": {"access_log": "off"}})
    gz, hk = gws["guangzhou"], gws["hongkong"]
    hk.rlimit_fsize = LIMIT
    hk.start()
    gz.start()
    t.require(gz.wait_peers(10), "federation ready")
    r = curl(t, gz.local_url("/v1/contracts"), h2c=True, headers=["content-type: application/json"],
             data=('{"provider":"hongkong","datasets":["hongkong/stroke-registry"],'
                   '"purpose":"科研","operations":["统计分析"],"legal_basis":"伦理审查批准",'
                   '"valid_days":30}').encode())
    cid = (r.json() or {}).get("id", "")
    t.require(r.status == 201 and len(cid) == 64, "contract (the local listener's firm)", r)
    body = t.path("query.json")
    with open(body, "w") as f:
        f.write('{"contract":"%s","dataset":"hongkong/stroke-registry","op":"count"}' % cid)

    argv = ["h2load", "-t", "1", "-c", "4", "-m", "8", "-n", str(N), "-d", body,
            "-H", "content-type: application/json", gz.local_url("/v1/queries")]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    ok, e4, e5 = (int(m.group(1)), int(m.group(3)), int(m.group(4))) if m else (0, 0, 0)
    t.check(m is not None and ok + e5 == N and e4 == 0 and 100 < ok < N,
            "%d requests: %d x 200 until hongkong's ledger could not grow, then %d x 5xx"
            % (N, ok, e5), out[-1200:])

    r = curl(t, gz.local_url("/v1/queries"), h2c=True, headers=["content-type: application/json"],
             data=open(body, "rb").read())
    t.check(r.status == 503 and r.error_code() == "ledger_unavailable" and
            "nothing was released" in r.body and "result" not in (r.json() or {}) and
            '"count"' not in r.body,
            "a query now: 503 ledger_unavailable, no figure", r)
    t.check(hk.alive() and gz.alive(), "both gateways still running")
    r = curl(t, hk.url("/healthz"), cacert=hk.bundle)
    t.check(r.status == 200, "hongkong still answers /healthz", r)
    r = hk.get("/metrics", cert=hk.client("admin"))
    fm = re.search(r'baygate_ledger_receipts_total\{result="failed"\} (\d+)', r.body or "")
    t.check(fm is not None and int(fm.group(1)) > 0,
            "hongkong's /metrics counts the receipts it could not write",
            (r.body or "")[-600:])

    # exactly one allowed query receipt at hongkong per 200 answer
    reg = hk.client("regulator")
    allowed, after = 0, ""
    for _ in range(50):
        r = hk.get("/v1/receipts?contract=%s&limit=1000%s" % (cid, after), cert=reg)
        page = (r.json() or {}) if r.status == 200 else {}
        allowed += sum(1 for x in page.get("receipts", []) if x.get("kind") == "query" and
                       x.get("decision") == "allowed")
        if "next" not in page:
            break
        after = "&after=%d" % page["next"]  # the cursor: receipts after that index
    t.check(r.status == 200 and allowed == ok,
            "hongkong's ledger: %d allowed query receipts for %d answers" % (allowed, ok), r)

    hk.stop()
    good, why = verify_ledger(hk)
    t.check(good, "hongkong's ledger verifies in full after the failed writes", why[-600:])
    hk.rlimit_fsize = None
    hk.start()
    t.require(gz.wait_peers(10), "hongkong back without the limit")
    r = None
    for _ in range(20):  # the session comes back within a few reconnect attempts
        r = curl(t, gz.local_url("/v1/queries"), h2c=True,
                 headers=["content-type: application/json"], data=open(body, "rb").read())
        if r.status == 200:
            break
        time.sleep(0.2)
    hkr = (((r.json() or {}).get("cities") or {}).get("hongkong") or {}).get("receipt") or {}
    t.check(r.status == 200 and isinstance(hkr.get("index"), int),
            "restarted without the limit, hongkong answers again, with a receipt", r)


if __name__ == "__main__":
    harness.run(main)
