#!/usr/bin/python3
"""The receipts ledger on real gateways (issue 5): guangzhou - shenzhen - hongkong, profiles on.
- a cross-border query leaves one receipt on each side before the answer: the answer carries
  the home receipt ("receipt") and hongkong's (cities.hongkong.receipt); guangzhou's receipt
  holds hongkong's index and leaf hash, and hongkong's names guangzhou as counterpart;
- a refused query is receipted too;
- hongkong's regulator reads the signed checkpoint (C2SP signed note, origin
  hongkong.gba/baygate/ledger), the receipt with an inclusion proof that verifies here against
  the checkpoint's root (RFC 9162 algorithms re-implemented in this file), filtered pages,
  a consistency proof between two checkpoints that verifies, and an export;
- a firm, another city's regulator and proofs outside the tree are refused (403, 403, 400);
- a byte changed in hongkong's ledger file makes it refuse to start, naming the receipt."""
import base64
import hashlib
import json
import os
import subprocess
import time

import harness

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))


def h(b):
    return hashlib.sha256(b).digest()


def node(a, b):
    return h(b"\x01" + a + b)


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m, n, root_m, root_n, proof):
    """RFC 9162 section 2.1.4.2."""
    if m == n:
        return not proof and root_m == root_n
    if m == 0 or m > n or not proof and m != n:
        return m == 0 and not proof
    if m & (m - 1) == 0:
        proof = [root_m] + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root_m and sr == root_n


def checkpoint(text):
    body = text.split("\n\n")[0].split("\n")
    return body[0], int(body[1]), base64.b64decode(body[2])


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen", "hongkong"],
                             [("guangzhou", "shenzhen"), ("shenzhen", "hongkong")],
                             extra_yaml="profiles: %s" % PROFILES, space_rows=5000)
    gz, sz, hk = gws["guangzhou"], gws["shenzhen"], gws["hongkong"]
    for g in (hk, sz, gz):
        g.start()
    t.check(gz.wait_peers(10) and hk.wait_peers(10), "federation ready")
    r = gz.query(None, path="/v1/contracts", body=json.dumps(
        {"provider": "hongkong", "datasets": ["hongkong/stroke-registry"], "purpose": "科研",
         "operations": ["统计分析"], "legal_basis": "伦理审查批准", "valid_days": 30,
         "max_queries": 100}, ensure_ascii=False))
    t.require(r.status == 201, "contract", r)
    cid = r.json()["id"]
    reg_hk = hk.client("regulator")
    reg_gz = gz.client("regulator")

    def get(gw, path, cert):
        return gw.get(path, cert=cert)

    r = get(hk, "/v1/ledger/checkpoint", reg_hk)
    t.check(r.status == 200 and r.body.startswith("hongkong.gba/baygate/ledger\n") and
            "\n\n\u2014 hongkong.gba/baygate/ledger " in r.body,
            "hongkong's regulator reads a C2SP signed checkpoint", r)
    origin, m, root_m = checkpoint(r.body)

    q = {"contract": cid, "dataset": "hongkong/stroke-registry", "op": "count",
         "where": [["age", ">=", 60]]}
    r = gz.query(None, body=json.dumps(q))
    j = r.json() or {}
    home = j.get("receipt", {})
    prov = j.get("cities", {}).get("hongkong", {}).get("receipt", {})
    t.check(r.status == 200 and home.get("city") == "guangzhou" and
            prov.get("city") == "hongkong" and isinstance(prov.get("index"), int),
            "the answer carries guangzhou's and hongkong's receipt references", r)

    r = get(hk, "/v1/ledger/checkpoint", reg_hk)
    _, n, root_n = checkpoint(r.body)
    r = get(hk, "/v1/receipts/%d?tree_size=%d" % (prov.get("index", 0), n), reg_hk)
    rj = r.json() or {}
    leaf = base64.b64decode(rj.get("leaf_hash", ""))
    rec = rj.get("receipt", {})
    t.check(r.status == 200 and rj.get("leaf_hash") == prov.get("leaf_hash") and
            h(b"\x00" + base64.b64decode(rj.get("receipt_b64", ""))) == leaf and
            rec.get("kind") == "query" and rec.get("contract") == cid and
            rec.get("counterpart", {}).get("city") == "guangzhou" and
            rec.get("requester") == "spiffe://guangzhou.gba/firm/guangzhou-firm" or
            rec.get("requester", "").startswith("spiffe://guangzhou.gba/firm"),
            "hongkong's receipt: the query, its contract, guangzhou as counterpart, leaf hash "
            "= SHA-256(0x00 || bytes)", r)
    proof = [base64.b64decode(x) for x in rj.get("proof", {}).get("hashes", [])]
    t.check(verify_inclusion(leaf, prov.get("index", 0), n, proof, root_n),
            "the inclusion proof verifies against hongkong's signed checkpoint root", rj)
    bad = list(proof)
    if bad:
        bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
    t.check(not verify_inclusion(leaf, prov.get("index", 0), n, bad, root_n) or not proof,
            "a flipped proof byte does not verify (the check can fail)")

    r = get(gz, "/v1/receipts/%d" % home.get("index", 0), reg_gz)
    grec = (r.json() or {}).get("receipt", {})
    cp = grec.get("counterpart", {})
    t.check(r.status == 200 and cp.get("city") == "hongkong" and
            cp.get("index") == prov.get("index") and cp.get("leaf_hash") == prov.get("leaf_hash")
            and grec.get("transit") == ["shenzhen"],
            "guangzhou's receipt holds hongkong's index and leaf hash, transit shenzhen", r)

    r = gz.query(None, body=json.dumps(dict(q, contract="0" * 64)))
    t.check(r.status == 403, "a query under an unknown contract: 403", r)
    r = get(gz, "/v1/receipts?limit=50", reg_gz)
    kinds = [x.get("kind") for x in (r.json() or {}).get("receipts", [])]
    t.check(r.status == 200 and "refusal" in kinds and "query" in kinds,
            "guangzhou's ledger holds the refusal as well as the query", r)

    for i in range(5):
        gz.query(None, body=json.dumps(dict(q, where=[["age", ">=", 61 + i]])))
    r = get(hk, "/v1/receipts?contract=%s&limit=3" % cid, reg_hk)
    page = (r.json() or {}).get("receipts", [])
    t.check(r.status == 200 and len(page) == 3 and (r.json() or {}).get("next") is not None and
            all(x.get("contract") == cid for x in page),
            "filtered pages by contract, 3 at a time with a next cursor", r)
    # the cursor: `next` is the page's last index, and after=<index> starts past it, so paging
    # with next (or with the last index one saw) neither repeats nor skips a receipt
    r_all = get(hk, "/v1/receipts?contract=%s&limit=1000" % cid, reg_hk)
    every = [x.get("index") for x in (r_all.json() or {}).get("receipts", [])]
    seen, after, pages = [], None, 0
    while pages < 100:
        rr = get(hk, "/v1/receipts?contract=%s&limit=2%s" % (cid, "" if after is None else
                                                          "&after=%d" % after), reg_hk)
        pj = rr.json() or {}
        seen += [x.get("index") for x in pj.get("receipts", [])]
        pages += 1
        if "next" not in pj:
            break
        t.check(pj["next"] == seen[-1], "next is the page's last index", pj.get("next"))
        after = pj["next"]
    t.check(len(every) >= 6 and seen == every,
            "paging 2 at a time with after=next gives every receipt once, in order (%d)"
            % len(every), (every, seen))
    r = get(hk, "/v1/ledger/checkpoint", reg_hk)
    _, n2, root_n2 = checkpoint(r.body)
    r = get(hk, "/v1/ledger/consistency?first=%d&second=%d" % (n, n2), reg_hk)
    cj = r.json() or {}
    cproof = [base64.b64decode(x) for x in cj.get("hashes", [])]
    t.check(r.status == 200 and n2 > n and verify_consistency(n, n2, root_n, root_n2, cproof),
            "a consistency proof from size %d to %d verifies" % (n, n2), r)
    r = get(hk, "/v1/ledger/export?from=0&to=%d" % n2, reg_hk)
    lines = [json.loads(x) for x in r.body.splitlines() if x.strip()]
    t.check(r.status == 200 and len(lines) == n2 and [x["index"] for x in lines] ==
            list(range(n2)), "export: %d receipts as JSON lines" % n2, r)
    agreed = [x for x in lines if x.get("kind") == "contract_agreed" and x.get("contract") == cid]
    t.check(len(agreed) == 1 and agreed[0].get("counterpart", {}).get("city") == "guangzhou",
            "the contract's agreement is receipted at hongkong, guangzhou as counterpart", lines[:3])
    r = get(gz, "/v1/receipts?contract=%s&limit=100" % cid, reg_gz)
    gk = [x.get("kind") for x in (r.json() or {}).get("receipts", [])]
    t.check("contract_agreed" in gk and gk.count("query") == 6,
            "guangzhou's receipts under the contract: its agreement and the 6 queries", gk)

    r = hk.get("/metrics", cert=hk.client("admin"))
    import re
    mm = re.search(r'baygate_ledger_size (\d+)', r.body or "")
    t.check(r.status == 200 and mm is not None and int(mm.group(1)) >= n2 and
            'baygate_ledger_receipts_total{result="failed"} 0' in r.body,
            "/metrics shows the ledger's size and no failed receipt", (r.body or "")[-600:])
    cs = re.search(r'baygate_ledger_commit_seconds_sum ([0-9.]+)\nbaygate_ledger_commit_seconds_count (\d+)',
                   r.body or "")
    nb = re.search(r'baygate_ledger_batches_total (\d+)', r.body or "")
    t.check(cs is not None and nb is not None and int(cs.group(2)) == int(nb.group(1)) > 0 and
            0 < float(cs.group(1)) < 60 * int(nb.group(1)),
            "/metrics shows the ledger's commit time, one sample per batch", (r.body or "")[-900:])
    r = get(hk, "/v1/receipts/0", hk.client("firm"))
    t.check(r.status == 403, "a firm cannot read the ledger: 403", r)
    r = get(hk, "/v1/receipts/0", reg_gz)
    t.check(r.status == 403, "guangzhou's regulator cannot read hongkong's ledger: 403", r)
    r = get(hk, "/v1/receipts/%d" % (n2 + 5), reg_hk)
    t.check(r.status == 400, "a receipt outside the tree: 400", r)
    r = get(hk, "/v1/ledger/consistency?first=%d&second=%d" % (n2 + 1, n2 + 2), reg_hk)
    t.check(r.status == 400, "a consistency proof outside the tree: 400", r)

    # tampering: change one byte of a stored receipt (its request id) in hongkong's LMDB file
    rid = (get(hk, "/v1/receipts/%d" % prov["index"], reg_hk).json() or {}).get(
        "receipt", {}).get("request_id", "")
    hk.stop()
    path = os.path.join(hk.dir, "ledger", "receipts", "data.mdb")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    # every copy: LMDB pages are copy-on-write, so older versions of the page may linger
    hits = []
    pos = data.find(rid.encode()) if rid else -1
    while pos >= 0:
        hits.append(pos)
        pos = data.find(rid.encode(), pos + 1)
    t.require(hits, "the receipt's bytes are in the LMDB file")
    for pos in hits:
        data[pos] ^= 0x01
    with open(path, "wb") as f:
        f.write(data)
    out = subprocess.run([harness.baygate_bin(), "--config", hk.config_path, "--verify-ledger"],
                         capture_output=True, text=True, timeout=60)
    t.check(out.returncode != 0 and ("receipt %d" % prov["index"]) in out.stderr,
            "--verify-ledger refuses the altered ledger naming receipt %d" % prov["index"],
            out.stderr)
    p = subprocess.Popen([harness.baygate_bin(), "--config", hk.config_path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        err = "(it started) " + err
    t.check(p.returncode not in (0, None, -9) and "altered" in err,
            "and the gateway refuses to start on it", err)


if __name__ == "__main__":
    harness.run(main)
