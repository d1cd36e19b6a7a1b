#!/usr/bin/python3
"""Cities witness each other's ledgers (issue 5): guangzhou - hongkong, profiles on.
- every few seconds each gateway shows the other its latest signed checkpoint with a
  consistency proof; the other cosigns it (C2SP tlog-cosignature/v1), and the checkpoint
  hongkong's regulator reads carries guangzhou's cosignature, which verifies here with
  Ed25519 (python3-cryptography) against guangzhou's witness key;
- hongkong then forks its history: its ledger is rolled back to an older copy (signed with the
  same key) after guangzhou cosigned a larger tree. guangzhou catches the split view when
  hongkong shows the older checkpoint: an ALARM in its log, the split-view counter, both
  checkpoints kept as evidence, and traffic with hongkong stopped both ways."""
import base64
import json
import os
import re
import shutil
import struct
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import harness

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))


def cosig_ok(note, wkey):
    """Verifies every cosignature line of |wkey| on |note| (C2SP tlog-cosignature/v1)."""
    name, _, b64key = wkey.split("+", 2)
    raw = base64.b64decode(b64key)
    if raw[0] != 4:
        return False
    pub = Ed25519PublicKey.from_public_bytes(raw[1:])
    text = note.split("\n\n")[0] + "\n"
    found = False
    for line in note.split("\n\n", 1)[1].splitlines():
        if not line.startswith("\u2014 %s " % name):
            continue
        blob = base64.b64decode(line.split(" ")[2])
        ts = struct.unpack(">Q", blob[4:12])[0]
        msg = ("cosignature/v1\ntime %d\n" % ts).encode() + text.encode()
        pub.verify(blob[12:], msg)  # raises when it does not verify
        found = True
    return found


def main(t):
    gws = harness.federation(t, ["guangzhou", "hongkong"], [("guangzhou", "hongkong")],
                             extra_yaml="profiles: %s" % PROFILES, space_rows=2000)
    gz, hk = gws["guangzhou"], gws["hongkong"]
    hk.start()
    gz.start()
    t.check(gz.wait_peers(10) and hk.wait_peers(10), "federation ready")
    r = gz.query(None, path="/v1/contracts", body=json.dumps(
        {"provider": "hongkong", "datasets": ["hongkong/stroke-registry"], "purpose": "科研",
         "operations": ["统计分析"], "legal_basis": "伦理审查批准", "valid_days": 30,
         "max_queries": 100}, ensure_ascii=False))
    t.require(r.status == 201, "contract", r)
    cid = r.json()["id"]

    def query(age):
        return gz.query(None, body=json.dumps({"contract": cid, "dataset":
                                               "hongkong/stroke-registry", "op": "count",
                                               "where": [["age", ">=", age]]}))
    t.check(query(60).status == 200, "a query", None)

    # snapshot of hongkong's ledger now (the fork's base)
    hk.stop()
    snap = t.path("hk-ledger-snapshot")
    shutil.copytree(os.path.join(hk.dir, "ledger", "receipts"), snap)
    hk.start()
    t.check(gz.wait_peers(10) and hk.wait_peers(10), "hongkong back")
    for a in range(61, 66):
        query(a)

    # guangzhou cosigns hongkong's current checkpoint within a few rounds
    reg = hk.client("regulator")
    wkey = None
    note = ""
    deadline = time.time() + 15
    while time.time() < deadline:
        note = hk.get("/v1/ledger/checkpoint", cert=reg).body or ""
        if "\u2014 guangzhou.gba/baygate/witness " in note:
            break
        time.sleep(0.5)
    t.check("\u2014 guangzhou.gba/baygate/witness " in note,
            "hongkong's checkpoint carries guangzhou's cosignature", note)
    wfile = os.path.join(gz.dir, "ledger", "witness", "hongkong.note")
    t.check(os.path.exists(wfile), "guangzhou holds hongkong's checkpoint", wfile)
    # guangzhou's witness key: from its answer to a witness request, as logged in its ledger dir
    # is not exposed; take it from the cosignature line's key id and guangzhou's ledger key
    gkey = gz.get("/v1/ledger/key", cert=gz.client("regulator")).body.strip()
    name, kid, b64 = gkey.split("+", 2)
    raw = base64.b64decode(b64)
    import hashlib
    wname = "guangzhou.gba/baygate/witness"
    wid = hashlib.sha256(wname.encode() + b"\n\x04" + raw[1:]).digest()[:4].hex()
    wkey = "%s+%s+%s" % (wname, wid, base64.b64encode(b"\x04" + raw[1:]).decode())
    try:
        ok = cosig_ok(note, wkey)
    except Exception as e:  # cryptography raises InvalidSignature
        ok = False
        note += "\n(%r)" % e
    t.check(ok, "guangzhou's cosignature verifies with Ed25519 over cosignature/v1", note)

    # the fork: hongkong's ledger rolled back to the snapshot, same key
    hk.stop()
    live = os.path.join(hk.dir, "ledger", "receipts")
    shutil.rmtree(live)
    shutil.copytree(snap, live)
    hk.start()
    deadline = time.time() + 15
    ev = os.path.join(gz.dir, "ledger", "witness", "hongkong.split")
    while time.time() < deadline and not os.path.exists(ev):
        time.sleep(0.3)
    t.check(os.path.exists(ev), "guangzhou caught the split view and kept evidence", ev)
    evidence = open(ev).read() if os.path.exists(ev) else ""
    t.check("checkpoint held" in evidence and "checkpoint shown" in evidence and
            evidence.count("hongkong.gba/baygate/ledger") >= 2,
            "the evidence holds both checkpoints", evidence[:400])
    with open(gz.cur_err_path) as f:
        log = f.read()
    t.check('msg="ALARM: split view" city=hongkong' in log, "an alarm in guangzhou's log",
            log[-600:])
    m = gz.get("/metrics", cert=gz.client("admin"))
    t.check(re.search(r"baygate_witness_split_views_total 1\b", m.body or "") is not None,
            "the split-view counter", (m.body or "")[-400:])
    r = query(70)
    t.check(r.status >= 400, "guangzhou stops sending queries to hongkong", r)
    r = hk.query(None, body=json.dumps({"dataset": "guangzhou/cerebral-infarction",
                                         "op": "count"}))
    t.check(r.status >= 400, "and hongkong's requests are refused by guangzhou", r)


if __name__ == "__main__":
    harness.run(main)
