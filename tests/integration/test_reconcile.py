#!/usr/bin/python3
"""A regulator's tools on real gateways: guangzhou - hongkong, profiles on (contracts).
- `baygatectl verify` accepts a real receipt (GET /v1/receipts/{i}?tree_size=N), checkpoint and
  verifier key, and a real consistency proof, offline; it refuses, naming what failed, a flipped
  proof byte, a flipped receipt byte, a receipt whose leaf hash was recomputed after the flip,
  a checkpoint of the other city (wrong key), an altered checkpoint (bad signature), a malformed
  checkpoint, a proof for another tree size, malformed JSON and base64, and a flipped
  consistency proof byte;
- `baygatectl reconcile` fetches both ledgers over HTTP/2 as each city's regulator and finds no
  discrepancy; the same from exports saved to files; another city's regulator cert is a fetch
  error (exit 2);
- discrepancies injected into hongkong's export file are found: a deleted receipt (the
  counterpart guangzhou references is missing), a changed result digest (the leaf hash
  guangzhou recorded no longer matches), a deleted home receipt (hongkong's receipt has no
  counterpart)."""
import base64
import hashlib
import json
import os
import subprocess

import harness

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))


def ctl(t, *args, timeout=60):
    r = subprocess.run([harness.baygatectl_bin()] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    t.log("baygatectl %s -> %d" % (args[0], r.returncode))
    return r


def out(r):
    return "rc=%d\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout[-3000:], r.stderr[-2000:])


def write(t, name, data):
    p = t.path(name)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def main(t):
    gws = harness.federation(t, ["guangzhou", "hongkong"], [("guangzhou", "hongkong")],
                             extra_yaml="profiles: %s" % PROFILES, space_rows=5000)
    gz, hk = gws["guangzhou"], gws["hongkong"]
    for g in (hk, gz):
        g.start()
    t.require(gz.wait_peers(10) and hk.wait_peers(10), "federation ready")
    r = gz.query(None, path="/v1/contracts", body=json.dumps(
        {"provider": "hongkong", "datasets": ["hongkong/stroke-registry"], "purpose": "科研",
         "operations": ["统计分析"], "legal_basis": "伦理审查批准", "valid_days": 30,
         "max_queries": 100}, ensure_ascii=False))
    t.require(r.status == 201, "contract guangzhou -> hongkong", r)
    cid = r.json()["id"]
    reg_gz, reg_hk = gz.client("regulator"), hk.client("regulator")

    def get(gw, path, cert):
        r = gw.get(path, cert=cert)
        t.require(r.status == 200, "GET %s on %s" % (path, gw.city), r)
        return r.body

    hk_old = get(hk, "/v1/ledger/checkpoint", reg_hk)
    q = {"contract": cid, "dataset": "hongkong/stroke-registry", "op": "count",
         "where": [["age", ">=", 60]]}
    prov = None
    for i in range(4):
        r = gz.query(None, body=json.dumps(dict(q, where=[["age", ">=", 60 + i]])))
        t.require(r.status == 200, "query %d answered" % i, r)
        prov = (r.json() or {}).get("cities", {}).get("hongkong", {}).get("receipt", {})
    t.require(isinstance(prov.get("index"), int), "the answer names hongkong's receipt", prov)

    # ---- baygatectl verify, offline ---------------------------------------------------------
    hk_key = get(hk, "/v1/ledger/key", reg_hk)
    hk_ckpt = get(hk, "/v1/ledger/checkpoint", reg_hk)
    gz_key = get(gz, "/v1/ledger/key", reg_gz)
    gz_ckpt = get(gz, "/v1/ledger/checkpoint", reg_gz)
    size = int(hk_ckpt.split("\n")[1])
    old_size = int(hk_old.split("\n")[1])
    rec_body = get(hk, "/v1/receipts/%d?tree_size=%d" % (prov["index"], size), reg_hk)
    rec = json.loads(rec_body)
    cons_body = get(hk, "/v1/ledger/consistency?first=%d&second=%d" % (old_size, size), reg_hk)
    f_key = write(t, "hk.key", hk_key)
    f_ckpt = write(t, "hk.checkpoint", hk_ckpt)
    f_old = write(t, "hk-old.checkpoint", hk_old)
    f_rec = write(t, "receipt.json", rec_body)
    f_cons = write(t, "consistency.json", cons_body)
    f_gz_ckpt = write(t, "gz.checkpoint", gz_ckpt)

    r = ctl(t, "verify", "--receipt", f_rec, "--checkpoint", f_ckpt, "--key-file", f_key)
    t.check(r.returncode == 0 and "hongkong.gba/baygate/ledger" in r.stdout and
            ("receipt %d: query" % prov["index"]) in r.stdout and
            rec["receipt"]["request_id"] in r.stdout and ("size %d" % size) in r.stdout and
            "verified" in r.stdout,
            "verify: a real receipt, checkpoint and key verify (origin, size, index, kind, "
            "request id printed)", out(r))
    r = ctl(t, "verify", "--receipt", f_rec, "--checkpoint", f_ckpt, "--key", hk_key.strip(),
            "--consistency", f_cons, "--old-checkpoint", f_old)
    t.check(r.returncode == 0 and "is a prefix of" in r.stdout,
            "verify: --key VKEY, and a consistency proof from size %d to %d" % (old_size, size),
            out(r))

    def refused(what, expect, *args):
        r = ctl(t, "verify", *args)
        t.check(r.returncode == 1 and expect in r.stderr,
                "verify refuses %s: \"%s\"" % (what, expect), out(r))

    t.require(rec["proof"]["hashes"], "the proof has hashes", rec)
    bad = json.loads(rec_body)
    h0 = bytearray(base64.b64decode(bad["proof"]["hashes"][0]))
    h0[5] ^= 0x01
    bad["proof"]["hashes"][0] = base64.b64encode(bytes(h0)).decode()
    refused("a flipped proof byte", "proof does not verify", "--receipt",
            write(t, "bad-proof.json", json.dumps(bad)), "--checkpoint", f_ckpt, "--key-file",
            f_key)

    rb = bytearray(base64.b64decode(rec["receipt_b64"]))
    rid = rec["receipt"]["request_id"].encode()
    pos = bytes(rb).find(rid)
    t.require(pos > 0, "the request id is in the receipt bytes")
    rb[pos] = ord("f") if rb[pos] != ord("f") else ord("e")  # still a canonical receipt
    bad = json.loads(rec_body)
    bad["receipt_b64"] = base64.b64encode(bytes(rb)).decode()
    refused("a flipped receipt byte", "leaf hash mismatch", "--receipt",
            write(t, "bad-receipt.json", json.dumps(bad)), "--checkpoint", f_ckpt,
            "--key-file", f_key)
    bad["leaf_hash"] = base64.b64encode(hashlib.sha256(b"\x00" + bytes(rb)).digest()).decode()
    refused("a flipped receipt byte with its leaf hash recomputed", "proof does not verify",
            "--receipt", write(t, "bad-receipt2.json", json.dumps(bad)), "--checkpoint", f_ckpt,
            "--key-file", f_key)
    rb2 = bytearray(base64.b64decode(rec["receipt_b64"]))
    rb2.append(0x00)  # a trailing byte: not a canonical encoding
    bad["receipt_b64"] = base64.b64encode(bytes(rb2)).decode()
    bad["leaf_hash"] = base64.b64encode(hashlib.sha256(b"\x00" + bytes(rb2)).digest()).decode()
    refused("receipt bytes that do not decode canonically", "does not decode canonically",
            "--receipt", write(t, "bad-receipt3.json", json.dumps(bad)), "--checkpoint", f_ckpt,
            "--key-file", f_key)

    refused("guangzhou's checkpoint with hongkong's key", "wrong key", "--receipt", f_rec,
            "--checkpoint", f_gz_ckpt, "--key-file", f_key)
    refused("hongkong's checkpoint with guangzhou's key", "wrong key", "--receipt", f_rec,
            "--checkpoint", f_ckpt, "--key", gz_key.strip())
    lines = hk_ckpt.split("\n")
    lines[1] = str(size + 1)
    refused("an altered checkpoint (size + 1)", "bad signature", "--receipt", f_rec,
            "--checkpoint", write(t, "altered.checkpoint", "\n".join(lines)), "--key-file",
            f_key)
    refused("a malformed checkpoint (no signature)", "malformed checkpoint", "--receipt", f_rec,
            "--checkpoint", write(t, "unsigned.checkpoint", hk_ckpt.split("\n\n")[0] + "\n"),
            "--key-file", f_key)
    refused("a malformed checkpoint (garbage)", "malformed checkpoint", "--receipt", f_rec,
            "--checkpoint", write(t, "garbage.checkpoint", "hello\n\nworld\n"), "--key-file",
            f_key)
    refused("a malformed key", "malformed key", "--receipt", f_rec, "--checkpoint", f_ckpt,
            "--key", "hongkong+zz")
    rec_small = get(hk, "/v1/receipts/0?tree_size=1", reg_hk)
    refused("a proof for another tree size", "size mismatch", "--receipt",
            write(t, "small.json", rec_small), "--checkpoint", f_ckpt, "--key-file", f_key)
    refused("malformed JSON", "malformed JSON", "--receipt",
            write(t, "trunc.json", rec_body[:len(rec_body) // 2]), "--checkpoint", f_ckpt,
            "--key-file", f_key)
    bad = json.loads(rec_body)
    bad["receipt_b64"] = "%%%" + bad["receipt_b64"][3:]
    refused("malformed base64", "malformed base64", "--receipt",
            write(t, "b64.json", json.dumps(bad)), "--checkpoint", f_ckpt, "--key-file", f_key)
    cons = json.loads(cons_body)
    if cons["hashes"]:
        c0 = bytearray(base64.b64decode(cons["hashes"][-1]))
        c0[0] ^= 0x80
        cons["hashes"][-1] = base64.b64encode(bytes(c0)).decode()
        refused("a flipped consistency proof byte", "consistency proof does not verify",
                "--consistency", write(t, "bad-cons.json", json.dumps(cons)),
                "--old-checkpoint", f_old, "--checkpoint", f_ckpt, "--key-file", f_key)
    r = ctl(t, "verify", "--receipt", f_rec, "--checkpoint", t.path("nonexistent"), "--key",
            hk_key.strip())
    t.check(r.returncode == 2, "verify: an unreadable file is exit 2", out(r))

    # cosignatures: guangzhou witnesses hongkong's ledger every few seconds, and hongkong's
    # checkpoint carries guangzhou's cosignature once guangzhou saw that size
    def cosigned():
        b = hk.get("/v1/ledger/checkpoint", cert=reg_hk).body or ""
        return b if "\u2014 guangzhou.gba/baygate/witness " in b else None

    cs = harness.wait_until(cosigned, 20, 0.5)
    t.require(cs, "hongkong's checkpoint carries guangzhou's cosignature within 20 s")
    f_cs = write(t, "hk-cosigned.checkpoint", cs)
    r = ctl(t, "verify", "--checkpoint", f_cs, "--key-file", f_key, "--witness", gz_key.strip())
    t.check(r.returncode == 0 and "cosignature: guangzhou.gba/baygate/witness" in r.stdout,
            "verify --witness (guangzhou's ledger key): guangzhou's cosignature verifies", out(r))
    refused("a witness that did not cosign", "missing cosignature", "--checkpoint", f_cs,
            "--key-file", f_key, "--witness", hk_key.strip())
    lines = cs.split("\n")
    k = [i for i, x in enumerate(lines) if x.startswith("\u2014 guangzhou.gba/baygate/witness ")][0]
    sig = list(lines[k])
    sig[-10] = "A" if sig[-10] != "A" else "B"
    lines[k] = "".join(sig)
    refused("an altered cosignature", "bad cosignature", "--checkpoint",
            write(t, "bad-cosig.checkpoint", "\n".join(lines)), "--key-file", f_key,
            "--witness", gz_key.strip())

    # ---- baygatectl reconcile -----------------------------------------------------------------
    bundle = gz.bundle
    base = ["--cacert", bundle, "--cert", reg_gz[0], "--key", reg_gz[1], "--cert-b", reg_hk[0],
            "--key-b", reg_hk[1], "--timeout", "20"]
    r = ctl(t, "reconcile", "--a", gz.url(""), "--b", hk.url(""), *base)
    t.check(r.returncode == 0 and "0 discrepancies" in r.stdout and
            "signed checkpoint of size" in r.stdout,
            "reconcile over HTTP/2 against the running gateways: no discrepancy", out(r))
    r = ctl(t, "reconcile", "--a", gz.url(""), "--b", hk.url(""), "--cacert", bundle, "--cert",
            reg_gz[0], "--key", reg_gz[1], "--timeout", "20")
    t.check(r.returncode == 2 and "403" in r.stderr,
            "reconcile with guangzhou's regulator cert for hongkong: 403, exit 2", out(r))
    r = ctl(t, "reconcile", "--a", gz.url(""), "--b", "https://127.0.0.1:%d" %
            harness.free_port(), *base)
    t.check(r.returncode == 2 and "connect" in r.stderr,
            "reconcile against a closed port: exit 2 naming the connection", out(r))

    gz_exp = get(gz, "/v1/ledger/export", reg_gz)
    hk_exp = get(hk, "/v1/ledger/export", reg_hk)
    f_gz_exp = write(t, "guangzhou.jsonl", gz_exp)
    f_hk_exp = write(t, "hongkong.jsonl", hk_exp)
    r = ctl(t, "reconcile", "--a-file", f_gz_exp, "--b-file", f_hk_exp)
    t.check(r.returncode == 0 and "0 discrepancies" in r.stdout and "guangzhou:" in r.stdout
            and "hongkong:" in r.stdout,
            "reconcile from saved exports (cities inferred): no discrepancy", out(r))
    r = ctl(t, "reconcile", "--a-file", f_gz_exp, "--b-file", f_hk_exp, "--from",
            "4000000000000")
    t.check(r.returncode == 0 and "0 receipts between" in r.stdout,
            "reconcile --from after every receipt examines none", out(r))

    hk_lines = hk_exp.splitlines()
    gz_lines = gz_exp.splitlines()
    # the first query's pair: guangzhou's home receipt references hongkong's (not the last line,
    # so that a deleted one leaves a gap in the export too)
    refs = sorted((o["counterpart"]["index"], o["index"]) for o in map(json.loads, gz_lines)
                  if o["kind"] == "query" and "index" in o.get("counterpart", {}))
    t.require(len(refs) == 4, "guangzhou's 4 query receipts reference hongkong's", gz_exp)
    pi, hi = refs[0]
    # (a) hongkong's receipt that guangzhou's home receipt references is deleted
    kept = [x for x in hk_lines if json.loads(x)["index"] != pi]
    t.require(len(kept) == len(hk_lines) - 1, "one line removed from hongkong's export")
    r = ctl(t, "reconcile", "--a-file", f_gz_exp, "--b-file",
            write(t, "hk-deleted.jsonl", "\n".join(kept) + "\n"))
    t.check(r.returncode == 1 and ("guangzhou#%d -> hongkong#%d: missing index" % (hi, pi)) in
            r.stdout and ("hongkong#%d is missing from the export" % pi) in r.stdout,
            "a deleted counterpart: the missing index is reported", out(r))

    # (b) the result digest of that receipt is changed, bytes and JSON field alike
    edited = []
    for x in hk_lines:
        o = json.loads(x)
        if o["index"] == pi:
            rb = bytearray(base64.b64decode(o["receipt_b64"]))
            d = base64.b64decode(o["result_digest"])
            p = bytes(rb).find(b"\x72\x20" + d)  # field 14, 32 bytes
            t.require(p >= 0, "the result digest is in the receipt bytes")
            nd = bytes([d[0] ^ 0xff]) + d[1:]
            rb[p + 2:p + 34] = nd
            o["receipt_b64"] = base64.b64encode(bytes(rb)).decode()
            o["result_digest"] = base64.b64encode(nd).decode()
            x = json.dumps(o, separators=(",", ":"), ensure_ascii=False)
        edited.append(x)
    r = ctl(t, "reconcile", "--a-file", f_gz_exp, "--b-file",
            write(t, "hk-digest.jsonl", "\n".join(edited) + "\n"))
    t.check(r.returncode == 1 and
            ("guangzhou#%d -> hongkong#%d: leaf hash mismatch" % (hi, pi)) in r.stdout and
            "result digest differs" in r.stdout and "disagrees" not in r.stdout,
            "a changed digest: the leaf hash mismatch (and the digest) are reported", out(r))

    # (c) guangzhou's home receipt of a query is deleted: hongkong's has no counterpart
    kept = [x for x in gz_lines if json.loads(x)["index"] != hi]
    r = ctl(t, "reconcile", "--a-file", write(t, "gz-deleted.jsonl", "\n".join(kept) + "\n"),
            "--b-file", f_hk_exp, "--a-city", "guangzhou")
    t.check(r.returncode == 1 and ("hongkong#%d (query" % pi) in r.stdout and
            "no counterpart in guangzhou's ledger" in r.stdout,
            "a deleted home receipt: hongkong's receipt has no counterpart", out(r))


if __name__ == "__main__":
    harness.run(main)
