#!/usr/bin/python3
"""Next-hop peer killed and restarted: SIGKILL shenzhen, a guangzhou query for shenzhen's data
-> 502 peer_unavailable within timeouts.connect_ms (+ margin); /readyz turns 503 naming
shenzhen; while shenzhen's port is a black hole (TCP accepted by the kernel, no TLS answer) the
502 comes after about connect_ms; restart shenzhen on the same port; within 10 s queries
succeed again. Queries are real federated counts on the embedded data spaces
(shenzhen/stroke-registry; guangzhou/cerebral-infarction for the own city)."""
import json
import socket
import time

import harness

CONNECT_MS = 1000
MARGIN_S = 2.0
SZ_DATA = "shenzhen/stroke-registry"
GZ_DATA = "guangzhou/cerebral-infarction"


def count(gw, dataset, **kw):
    return gw.query(None, body=json.dumps({"dataset": dataset, "op": "count"}), **kw)


def answered(r, rows):
    """200 with the destination's rows counted."""
    return r.status == 200 and (r.json() or {}).get("result", {}).get("count") == rows


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen"], [("guangzhou", "shenzhen")],
                             timeouts={"connect_ms": CONNECT_MS, "backoff_max_ms": 1000})
    gz, sz = gws["guangzhou"], gws["shenzhen"]
    sz.start()
    gz.start()
    t.check(gz.wait_peers(10), "guangzhou ready with shenzhen connected", gz.readyz())
    r = count(gz, SZ_DATA)
    t.check(answered(r, sz.space_rows), "before: guangzhou -> shenzhen 200", r)

    sz.kill()
    t.log("shenzhen SIGKILLed")
    messages = []
    for i in range(3):
        r = count(gz, SZ_DATA, timeout=20)
        messages.append(((r.json() or {}).get("error") or {}).get("message", ""))
        t.check(r.status == 502 and r.error_code() == "peer_unavailable"
                and r.elapsed < CONNECT_MS / 1000.0 + MARGIN_S,
                "peer down, try %d: 502 peer_unavailable in %.2f s (< %.1f s)"
                % (i + 1, r.elapsed, CONNECT_MS / 1000.0 + MARGIN_S), r)
    r = count(gz, GZ_DATA)
    t.check(answered(r, gz.space_rows), "own-city queries still 200 while the peer is down", r)
    rz = harness.wait_until(lambda: (lambda x: x if x.status == 503 else None)(gz.readyz()), 5)
    t.check(rz and "shenzhen" in (rz.body or ""), "/readyz -> 503 naming shenzhen", rz or gz.readyz())

    # black hole: a listening socket that never accepts, so the TLS handshake never completes
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind(("127.0.0.1", sz.tls_port))
    hole.listen(64)
    # (a query may fail fast while the peer is in reconnect backoff; one that does try to
    # connect must give up after about connect_ms)
    waits = []
    for i in range(4):
        r = count(gz, SZ_DATA, timeout=20)
        messages.append(((r.json() or {}).get("error") or {}).get("message", ""))
        waits.append(round(r.elapsed, 2))
        t.check(r.status == 502 and r.error_code() == "peer_unavailable"
                and r.elapsed < CONNECT_MS / 1000.0 + MARGIN_S,
                "black-hole peer, try %d: 502 peer_unavailable after %.2f s (< %.1f s)"
                % (i + 1, r.elapsed, CONNECT_MS / 1000.0 + MARGIN_S), r)
        time.sleep(0.3)
    t.check(max(waits) >= CONNECT_MS / 1000.0 * 0.5,
            "   one black-hole attempt waited ~connect_ms %d before 502 (waits %s)" % (CONNECT_MS, waits))
    hole.close()
    t.log("502 messages: %s" % sorted(set(messages)))
    t.check(all("shenzhen" in m and not m.rstrip().endswith("Success") for m in messages),
            "every 502 message names shenzhen and a real reason (no errno-0 'Success')",
            sorted(set(messages)))

    sz.start()  # same config, same ports
    t0 = time.monotonic()
    r = harness.wait_until(lambda: (lambda x: x if answered(x, sz.space_rows) else None)(
        count(gz, SZ_DATA, timeout=5)), 10, 0.2)
    took = time.monotonic() - t0
    t.check(r, "after restart: guangzhou -> shenzhen 200 again within 10 s (%.2f s)" % took,
            count(gz, SZ_DATA))
    t.check(gz.wait_peers(10), "/readyz 200 again after the restart", gz.readyz())
    ok = sum(1 for _ in range(5) if answered(count(gz, SZ_DATA), sz.space_rows))
    t.check(ok == 5, "5 more queries after recovery all 200 (%d)" % ok)


if __name__ == "__main__":
    harness.run(main)
