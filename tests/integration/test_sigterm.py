#!/usr/bin/python3
"""SIGTERM with requests in flight: 8 concurrent queries to an upstream that answers after
1.5 s; once the upstream has all 8, SIGTERM the gateway; every request completes 200, the
gateway exits 0 within shutdown_grace_ms, and new connections are refused afterwards."""
import json
import threading
import time

import harness
from harness import curl

N = 8
DELAY = 1.5


def main(t):
    up = harness.PyUpstream(t, "up-slow", delay=DELAY).start_ready()
    gws = harness.federation(t, ["guangzhou", "shenzhen"], [("guangzhou", "shenzhen")],
                             per_city={"guangzhou": {"upstream": up.url()}},
                             timeouts={"shutdown_grace_ms": 8000})
    gz, sz = gws["guangzhou"], gws["shenzhen"]
    gz.start()
    sz.start()

    results = [None] * N

    def one(i):
        # half direct at guangzhou, half through shenzhen (so guangzhou drains a peer session)
        gw = gz if i % 2 == 0 else sz
        results[i] = gw.query("guangzhou/slow-%d" % i, headers=["x-request-id: drain-%d" % i],
                              timeout=30)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for th in threads:
        th.start()
    seen = harness.wait_until(lambda: up.requests_seen() >= N, 10, 0.02)
    t.check(seen, "upstream has all %d requests in flight (%d)" % (N, up.requests_seen()))
    t_term = time.monotonic()
    gz.signal(__import__("signal").SIGTERM)
    t.log("SIGTERM sent to guangzhou")
    # new work during the drain: refused or 503 shutting_down, never a hang
    time.sleep(0.2)
    r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=gz.client()[0], key=gz.client()[1],
             data=json.dumps({"dataset": "guangzhou/late"}), timeout=5)
    t.check((r.status == 0 and r.rc == 7) or (r.status == 503 and r.error_code() == "shutting_down"),
            "new request during drain: connection refused or 503 shutting_down (rc %d, status %d)"
            % (r.rc, r.status), r)
    for th in threads:
        th.join(40)
    for i, r in enumerate(results):
        t.check(r is not None and r.status == 200 and (r.json() or {}).get("upstream") == "py",
                "in-flight request %d (%s) completed 200" % (i, "direct" if i % 2 == 0 else "via shenzhen"), r)
    rc = gz.wait_exit(12)
    took = time.monotonic() - t_term
    if rc is not None:
        gz.stopped = True
    t.check(rc == 0, "guangzhou exited 0 after SIGTERM (rc %s, %.2f s after the signal)" % (rc, took),
            gz.stderr_tail())
    t.check(rc is not None and took < 8.0 + 2.0, "   exited within shutdown_grace_ms + 2 s")
    t.check(all(gz.log_for("drain-%d" % i, 0.2) for i in range(0, N, 2)),
            "access log has every direct in-flight request (flushed at exit)")
    r = curl(t, gz.url("/healthz"), cacert=gz.bundle, timeout=5)
    t.check(r.rc == 7 and r.status == 0, "after exit: TLS connect refused (curl rc %d)" % r.rc, r)
    r = curl(t, gz.local_url("/healthz"), h2c=True, timeout=5)
    t.check(r.rc == 7 and r.status == 0, "after exit: local h2c connect refused (curl rc %d)" % r.rc, r)
    r = sz.query("guangzhou/x", timeout=10)
    t.check(r.status == 502 and r.error_code() == "peer_unavailable",
            "shenzhen now answers 502 peer_unavailable for guangzhou", r)


if __name__ == "__main__":
    harness.run(main)
