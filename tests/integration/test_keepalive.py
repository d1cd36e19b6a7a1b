#!/usr/bin/python3
"""PING keep-alive finds a peer that hangs without closing its socket: shenzhen is frozen with
SIGSTOP (its TCP connections stay open, nothing answers). guangzhou's PING goes unanswered, the
session is dropped within ping_interval_ms + ping_timeout_ms (+ margin), /readyz turns 503
naming shenzhen, a query that was in flight ends 504 or 502 (never hangs) and new ones get 502
peer_unavailable; after SIGCONT the session comes back by itself (backoff) and queries pass.
Queries are real federated counts of shenzhen/stroke-registry on shenzhen's embedded data
space."""
import json
import signal
import threading
import time

import harness

PING_MS = 300
PING_TIMEOUT_MS = 300
MARGIN_S = 2.0
SZ_DATA = "shenzhen/stroke-registry"


def count(gw, dataset, **kw):
    return gw.query(None, body=json.dumps({"dataset": dataset, "op": "count"}), **kw)


def answered(r, rows):
    """200 with the destination's rows counted."""
    return r is not None and r.status == 200 and \
        (r.json() or {}).get("result", {}).get("count") == rows


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen"], [("guangzhou", "shenzhen")],
                             timeouts={"ping_interval_ms": PING_MS,
                                       "ping_timeout_ms": PING_TIMEOUT_MS,
                                       "request_ms": 3000, "backoff_max_ms": 500})
    gz, sz = gws["guangzhou"], gws["shenzhen"]
    sz.start()
    gz.start()
    t.check(gz.wait_peers(10), "guangzhou ready with shenzhen connected", gz.readyz())
    r = count(gz, SZ_DATA)
    t.check(answered(r, sz.space_rows), "before: shenzhen query 200", r)

    sz.signal(signal.SIGSTOP)
    t0 = time.time()
    inflight = {}

    def slow():
        inflight["r"] = count(gz, SZ_DATA, timeout=20)
    th = threading.Thread(target=slow)
    th.start()

    down = harness.wait_until(
        lambda: (lambda x: x if x.status == 503 else None)(gz.readyz()),
        (PING_MS + PING_TIMEOUT_MS) / 1000.0 + MARGIN_S, 0.05)
    elapsed = time.time() - t0
    t.check(down is not None and "shenzhen" in down.body,
            "frozen peer: /readyz 503 naming shenzhen after %.2f s (bound %.1f s)"
            % (elapsed, (PING_MS + PING_TIMEOUT_MS) / 1000.0 + MARGIN_S), down or gz.readyz())
    th.join(25)
    r = inflight.get("r")
    t.check(r is not None and r.status in (502, 504)
            and r.error_code() in ("peer_unavailable", "timeout"),
            "the query in flight when the peer froze ends with 502/504, not a hang", r)
    t.check("ping timeout" in gz.stderr_tail(50), "guangzhou logged the ping timeout",
            gz.stderr_tail(10))
    r = count(gz, SZ_DATA, timeout=10)
    t.check(r.status == 502 and r.error_code() == "peer_unavailable",
            "while frozen: new query -> 502 peer_unavailable", r)

    sz.signal(signal.SIGCONT)
    up = harness.wait_until(lambda: (lambda x: x if x.status == 200 else None)(gz.readyz()),
                            10, 0.1)
    t.check(up is not None, "after SIGCONT the session comes back (readyz 200)", gz.readyz())
    r = harness.wait_until(
        lambda: (lambda x: x if answered(x, sz.space_rows) else None)(count(gz, SZ_DATA)),
        10, 0.2)
    t.check(r is not None, "after SIGCONT: shenzhen query 200 again", r)


if __name__ == "__main__":
    harness.run(main)
