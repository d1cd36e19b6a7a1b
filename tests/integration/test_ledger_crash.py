#!/usr/bin/python3
"""The receipts ledger survives kill -9 (issue 5): guangzhou (home) - hongkong (provider),
profiles on, one contract with a large max_queries.
- client threads keep sending the same federated count to guangzhou and record every answer
  that came back 200: it carries guangzhou's receipt ("receipt") and hongkong's
  (cities.hongkong.receipt: index and leaf hash);
- hongkong is killed with SIGKILL 20 times, each time 100 - 600 ms after it was back and
  peered; before each restart `baygate --config <hongkong> --verify-ledger` checks the stopped
  ledger in full (exit 0, "intact"), and the gateway restarts on it;
- at the end, for every 200 answer: hongkong's ledger (GET /v1/receipts/{index} as hongkong's
  regulator) holds a receipt at that index whose leaf hash is the one in the answer (a commit
  acknowledged to guangzhou was never lost nor rewritten), naming guangzhou as counterpart, and
  guangzhou's ledger holds the home receipt of the answer, whose counterpart reference is
  exactly hongkong's index and leaf hash; no two answers share a hongkong index; an inclusion
  proof of the last acknowledged receipt verifies against hongkong's signed checkpoint; and
  both ledgers verify in full once the gateways are stopped.
Every wait is bounded; the whole test takes about 13 s here (17 s under ASan)."""
import base64
import hashlib
import json
import os
import random
import subprocess
import threading
import time

import harness

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))
KILLS = int(os.environ.get("BG_CRASH_KILLS", "20"))
CLIENTS = 3
BUDGET_S = 75.0  # the kill loop stops early rather than run past this (ctest timeout: 180 s)


def verify_ledger(t, gw, what):
    """Runs --verify-ledger on |gw|'s stopped ledger: (ok, output)."""
    try:
        r = subprocess.run([harness.baygate_bin(), "--config", gw.config_path, "--verify-ledger"],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False, "--verify-ledger did not finish within 60 s (%s)" % what
    return r.returncode == 0 and "intact" in r.stdout, "rc %d: %s%s" % (r.returncode, r.stdout,
                                                                          r.stderr)


class Client(threading.Thread):
    """POSTs |body| to |gw| again and again with its own curl (no shared temp files), and keeps
    (request id, answer JSON) of every 200 answer and a count of every other outcome."""

    def __init__(self, gw, body, stop):
        super().__init__(daemon=True)
        self.gw, self.body, self.stop = gw, body, stop
        self.ok = []
        self.other = {}

    def run(self):
        crt, key = self.gw.client("firm")
        argv = ["curl", "-sS", "--http2", "--max-time", "10", "--cacert", self.gw.bundle,
                "--cert", crt, "--key", key, "-H", "content-type: application/json",
                "--data-binary", self.body, "-D", "-", "-o", "-", "-w", "\n%{http_code}",
                self.gw.url("/v1/queries")]
        while not self.stop.is_set():
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            except subprocess.TimeoutExpired:
                self.other["curl timeout"] = self.other.get("curl timeout", 0) + 1
                continue
            out = r.stdout
            status = out.rsplit("\n", 1)[-1].strip() if "\n" in out else ""
            if r.returncode != 0 or status != "200":
                k = "curl rc %d" % r.returncode if r.returncode else "status %s" % status
                self.other[k] = self.other.get(k, 0) + 1
                if r.returncode == 0:
                    time.sleep(0.02)  # hongkong down: no busy loop against guangzhou
                continue
            head, _, rest = out.replace("\r\n", "\n").partition("\n\n")
            body = rest.rsplit("\n", 1)[0]
            rid = ""
            for line in head.split("\n"):
                if line.lower().startswith("x-request-id:"):
                    rid = line.split(":", 1)[1].strip()
            try:
                self.ok.append((rid, json.loads(body)))
            except ValueError:
                self.other["200 without JSON"] = self.other.get("200 without JSON", 0) + 1


def fetch_all(t, gw, cert, paths, tag):
    """GET every path of |paths| on |gw| with one curl process (one connection, parallel
    streams): {path: (json or None)}."""
    out = {}
    d = t.path("fetch-%s" % tag)
    os.makedirs(d, exist_ok=True)
    cfg = t.path("fetch-%s.curlrc" % tag)
    names = {}
    with open(cfg, "w") as f:
        for i, p in enumerate(paths):
            names[p] = os.path.join(d, "%d.json" % i)
            f.write('url = "%s"\noutput = "%s"\n' % (gw.url(p), names[p]))
    crt, key = cert
    argv = ["curl", "-sS", "--http2", "--parallel", "--parallel-max", "32", "--max-time", "60",
            "--cacert", gw.bundle, "--cert", crt, "--key", key, "-K", cfg]
    subprocess.run(argv, capture_output=True, text=True, timeout=120)
    for p, fn in names.items():
        try:
            with open(fn) as f:
                out[p] = json.loads(f.read())
        except (OSError, ValueError):
            out[p] = None
    return out


def h(b):
    return hashlib.sha256(b).digest()


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = h(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main(t):
    t0 = time.monotonic()
    gws = harness.federation(t, ["guangzhou", "hongkong"], [("guangzhou", "hongkong")],
                             extra_yaml="profiles: %s" % PROFILES, space_rows=2000)
    gz, hk = gws["guangzhou"], gws["hongkong"]
    hk.start()
    gz.start()
    t.require(gz.wait_peers(15) and hk.wait_peers(15), "federation ready")
    r = gz.query(None, path="/v1/contracts", body=json.dumps(
        {"provider": "hongkong", "datasets": ["hongkong/stroke-registry"], "purpose": "科研",
         "operations": ["统计分析"], "legal_basis": "伦理审查批准", "valid_days": 30,
         "max_queries": 1000000}, ensure_ascii=False))
    t.require(r.status == 201, "contract guangzhou -> hongkong, max_queries 1000000", r)
    cid = r.json()["id"]
    body = json.dumps({"contract": cid, "dataset": "hongkong/stroke-registry", "op": "count",
                       "where": [["age", ">=", 60]]})
    r = gz.query(None, body=body)
    t.require(r.status == 200 and "receipt" in (r.json() or {}) and
              "receipt" in ((r.json() or {}).get("cities", {}).get("hongkong", {})),
              "a query is answered with both receipts' references", r)

    stop = threading.Event()
    clients = [Client(gz, body, stop) for _ in range(CLIENTS)]
    for c in clients:
        c.start()
    rng = random.Random(int(os.environ.get("BG_CRASH_SEED", str(int(time.time())))))
    kills = 0
    verified = 0
    t_up = time.monotonic()
    try:
        for i in range(KILLS):
            if time.monotonic() - t0 > BUDGET_S:
                t.log("time budget reached after %d kills" % kills)
                break
            delay = rng.uniform(0.1, 0.6)  # after hongkong was back and peered
            time.sleep(max(0.0, t_up + delay - time.monotonic()))
            n_before = sum(len(c.ok) for c in clients)
            hk.kill()  # SIGKILL
            kills += 1
            ok, out = verify_ledger(t, hk, "kill %d" % kills)
            if not t.check(ok, "kill %d (%.0f ms after peering, %d answers so far): "
                           "--verify-ledger says intact" % (kills, delay * 1000, n_before), out):
                break
            verified += 1
            hk.start(timeout=15)
            t.require(hk.wait_peers(15) and gz.wait_peers(15),
                      "hongkong back and peered after kill %d" % kills,
                      hk.stderr_tail() + "\n" + gz.stderr_tail())
            t_up = time.monotonic()
            # at least one answer through the new process before the next kill (bounded)
            harness.wait_until(lambda: sum(len(c.ok) for c in clients) > n_before, 5, 0.02)
    finally:
        stop.set()
        for c in clients:
            c.join(30)
    answers = [a for c in clients for a in c.ok]
    other = {}
    for c in clients:
        for k, v in c.other.items():
            other[k] = other.get(k, 0) + v
    t.log("%d kills in %.1f s; %d answers 200, others: %s"
          % (kills, time.monotonic() - t0, len(answers), other))
    t.check(kills == KILLS and verified == kills,
            "%d of %d kills made, ledger verified after each" % (kills, KILLS))
    t.require(len(answers) >= KILLS, "at least %d answers 200 over the run (%d)"
              % (KILLS, len(answers)))
    t.check(not any(c.is_alive() for c in clients), "the client threads stopped")

    bad = []
    refs = []  # (rid, home ref, hk ref)
    for rid, a in answers:
        home = a.get("receipt") or {}
        prov = (a.get("cities", {}).get("hongkong") or {}).get("receipt") or {}
        if (home.get("city") != "guangzhou" or not isinstance(home.get("index"), int) or
                prov.get("city") != "hongkong" or not isinstance(prov.get("index"), int) or
                a.get("partial") is not False):
            bad.append((rid, a))
        else:
            refs.append((rid, home, prov))
    t.check(not bad, "every 200 answer carries guangzhou's and hongkong's receipt references "
            "(%d do not)" % len(bad), bad[:3])
    hk_idx = [p["index"] for _, _, p in refs]
    gz_idx = [g["index"] for _, g, _ in refs]
    t.check(len(set(hk_idx)) == len(hk_idx) and len(set(gz_idx)) == len(gz_idx),
            "no two answers share a receipt index (hongkong %d distinct of %d, guangzhou %d)"
            % (len(set(hk_idx)), len(hk_idx), len(set(gz_idx))))

    # hongkong's ledger, as its regulator
    reg_hk, reg_gz = hk.client("regulator"), gz.client("regulator")
    got = fetch_all(t, hk, reg_hk, ["/v1/receipts/%d" % i for i in sorted(set(hk_idx))], "hk")
    missing, differs = [], []
    for rid, home, prov in refs:
        j = got.get("/v1/receipts/%d" % prov["index"])
        if not j or "leaf_hash" not in j:
            missing.append((rid, prov, j))
            continue
        rec = j.get("receipt", {})
        if (j["leaf_hash"] != prov["leaf_hash"] or
                h(b"\x00" + base64.b64decode(j.get("receipt_b64", ""))) !=
                base64.b64decode(prov["leaf_hash"]) or rec.get("kind") != "query" or
                rec.get("contract") != cid or
                rec.get("counterpart", {}).get("city") != "guangzhou" or
                (rid and rec.get("request_id") != rid)):
            differs.append((rid, prov, j))
    t.check(not missing, "every acknowledged hongkong receipt is in hongkong's ledger after %d "
            "kills (%d answers checked, %d missing)" % (kills, len(refs), len(missing)),
            missing[:3])
    t.check(not differs, "and each has the leaf hash given in the answer (the query, the "
            "contract, guangzhou as counterpart; %d differ)" % len(differs), differs[:3])

    # guangzhou's ledger: the home receipt references hongkong's
    got = fetch_all(t, gz, reg_gz, ["/v1/receipts/%d" % i for i in sorted(set(gz_idx))], "gz")
    gbad = []
    for rid, home, prov in refs:
        j = got.get("/v1/receipts/%d" % home["index"])
        cp = ((j or {}).get("receipt") or {}).get("counterpart") or {}
        grec = (j or {}).get("receipt") or {}
        if (not j or j.get("leaf_hash") != home["leaf_hash"] or cp.get("city") != "hongkong" or
                (rid and grec.get("request_id") != rid) or
                cp.get("index") != prov["index"] or cp.get("leaf_hash") != prov["leaf_hash"]):
            gbad.append((rid, home, prov, j))
    t.check(not gbad, "guangzhou's ledger holds every answer's home receipt, referencing "
            "hongkong's index and leaf hash (%d of %d do not)" % (len(gbad), len(refs)), gbad[:3])

    # the last acknowledged receipt is provable against hongkong's signed checkpoint
    r = hk.get("/v1/ledger/checkpoint", cert=reg_hk)
    lines = r.body.split("\n\n")[0].split("\n") if r.status == 200 else []
    if refs and len(lines) >= 3:
        size, root = int(lines[1]), base64.b64decode(lines[2])
        t.log("hongkong's ledger: %d receipts (checkpoint) for %d acknowledged answers; the "
              "rest were committed for answers lost to a kill, or are the probe's" % (size,
                                                                                   len(refs)))
        last = max(refs, key=lambda x: x[2]["index"])[2]
        r = hk.get("/v1/receipts/%d?tree_size=%d" % (last["index"], size), cert=reg_hk)
        pj = r.json() or {}
        proof = [base64.b64decode(x) for x in pj.get("proof", {}).get("hashes", [])]
        t.check(r.status == 200 and verify_inclusion(base64.b64decode(last["leaf_hash"]),
                                                     last["index"], size, proof, root),
                "hongkong receipt %d is proven included in its signed checkpoint of size %d"
                % (last["index"], size), r)
    else:
        t.check(False, "hongkong's regulator reads its checkpoint", r)

    for g in (gz, hk):
        g.stop()
        ok, out = verify_ledger(t, g, "end")
        t.check(ok, "%s's ledger verifies in full at the end" % g.city, out)
    t.log("total %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    harness.run(main)
