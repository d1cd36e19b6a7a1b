#!/usr/bin/python3
"""A forked ledger of the same size (issue 5): hongkong shows guangzhou a checkpoint of size N,
which guangzhou cosigns; then hongkong's ledger is rolled back to an older copy (same key) and
grown to the same size N with other receipts while guangzhou is down. When guangzhou comes
back, hongkong shows it a second, different checkpoint of size N signed with the same key:
guangzhou catches the split view ("two different roots for the same tree size"), keeps both
signed checkpoints as evidence, and stops traffic with hongkong."""
import json
import os
import shutil
import time

import harness


def size_of(note):
    return int(note.split("\n")[1])


def main(t):
    gws = harness.federation(t, ["guangzhou", "hongkong"], [("guangzhou", "hongkong")],
                             space_rows=2000)
    gz, hk = gws["guangzhou"], gws["hongkong"]
    hk.start()
    gz.start()
    t.check(gz.wait_peers(10) and hk.wait_peers(10), "federation ready")
    reg = hk.client("regulator")

    def hk_size():
        return size_of(hk.get("/v1/ledger/checkpoint", cert=reg).body or "x\n0\n")

    def query_from_gz(i):
        return gz.query(None, body=json.dumps({"dataset": "hongkong/stroke-registry",
                                               "op": "count", "where": [["age", ">=", 40 + i]]}))

    def local_hk_query(i):
        return hk.query(None, body=json.dumps({"dataset": "hongkong/liver-cancer", "op": "count",
                                               "where": [["age", ">=", 30 + i]]}))

    t.check(query_from_gz(0).status == 200, "a query from guangzhou")
    hk.stop()
    snap = t.path("hk-snapshot")
    shutil.copytree(os.path.join(hk.dir, "ledger", "receipts"), snap)
    m = None
    hk.start()
    t.check(hk.wait_peers(10) and gz.wait_peers(10), "hongkong back")
    for i in range(1, 6):
        query_from_gz(i)
    # wait until guangzhou holds hongkong's current checkpoint
    held = os.path.join(gz.dir, "ledger", "witness", "hongkong.note")
    deadline = time.time() + 15
    n = hk_size()
    while time.time() < deadline:
        if os.path.exists(held) and size_of(open(held).read()) == n:
            break
        time.sleep(0.3)
        n = hk_size()
    t.require(os.path.exists(held) and size_of(open(held).read()) == n,
              "guangzhou holds hongkong's checkpoint of size %d" % n)

    # the fork: guangzhou down, hongkong rolled back and regrown to the same size
    gz.stop()
    hk.stop()
    live = os.path.join(hk.dir, "ledger", "receipts")
    shutil.rmtree(live)
    shutil.copytree(snap, live)
    hk.start()
    m = hk_size()
    t.check(m < n, "hongkong rolled back to size %d (< %d)" % (m, n))
    i = 0
    while hk_size() < n and i < 50:
        r = local_hk_query(i)
        i += 1
        if r.status != 200:
            break
    t.require(hk_size() == n, "hongkong regrown to size %d with other receipts" % n)
    gz.start()
    ev = os.path.join(gz.dir, "ledger", "witness", "hongkong.split")
    deadline = time.time() + 15
    while time.time() < deadline and not os.path.exists(ev):
        time.sleep(0.3)
    evidence = open(ev).read() if os.path.exists(ev) else ""
    t.check("two different roots for the same tree size" in evidence,
            "guangzhou caught two checkpoints of size %d with different roots" % n, evidence[:300])
    t.check(evidence.count("\n%d\n" % n) >= 2 and evidence.count("hongkong.gba/baygate/ledger") >= 4,
            "the evidence holds both signed checkpoints of that size", evidence[:800])
    r = gz.query(None, body=json.dumps({"dataset": "hongkong/stroke-registry", "op": "count"}))
    t.check(r.status >= 400, "traffic with hongkong is stopped", r)


if __name__ == "__main__":
    harness.run(main)
