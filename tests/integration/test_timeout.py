#!/usr/bin/python3
"""Next hop too slow -> 504 timeout: an upstream that answers after 3 s behind a gateway with
timeouts.request_ms 1000 (direct, and one hop away); a fast upstream still gets 200.
guangzhou's data space is upstream.py with --delay (passthrough): an opaque dataset is relayed
to it, and a federated query leg from shenzhen for guangzhou/cerebral-infarction is sent to it as
a data-space query; shenzhen's embedded data space answers its own stroke-registry at once."""
import json

import harness

REQUEST_MS = 1000
DELAY = 3.0


def main(t):
    slow = harness.PyUpstream(t, "up-slow", delay=DELAY).start_ready()
    gws = harness.federation(t, ["guangzhou", "shenzhen"], [("guangzhou", "shenzhen")],
                             per_city={"guangzhou": {"upstream": slow.url()}},
                             timeouts={"request_ms": REQUEST_MS})
    gz, sz = gws["guangzhou"], gws["shenzhen"]
    gz.start()
    sz.start()

    r = gz.query("guangzhou/slow", headers=["x-request-id: slow-direct"], timeout=20)
    t.check(r.status == 504 and r.error_code() == "timeout",
            "slow upstream (%.1f s) behind request_ms %d -> 504 timeout" % (DELAY, REQUEST_MS), r)
    t.check(REQUEST_MS / 1000.0 - 0.1 <= r.elapsed < DELAY,
            "   answered after %.2f s (>= ~%.1f s and < %.1f s)" % (r.elapsed, REQUEST_MS / 1000.0, DELAY))
    t.check(r.headers.get("x-request-id") == "slow-direct", "   504 carries x-request-id", r.headers)
    e = gz.log_for("slow-direct")
    t.check(e and e[0].get("status") == 504, "   access log records 504", e)

    r = sz.query("guangzhou/slow", timeout=20)
    t.check(r.status == 504 and r.elapsed < DELAY,
            "via shenzhen -> guangzhou -> slow upstream: 504 in %.2f s" % r.elapsed, r)

    # a federated query leg: shenzhen (home) -> guangzhou, whose data space is the slow upstream
    seen = slow.requests_seen()
    r = sz.query(None, body=json.dumps({"dataset": "guangzhou/cerebral-infarction", "op": "count"}),
                 headers=["x-request-id: slow-leg"], timeout=20)
    t.check(r.status == 504 and r.error_code() == "timeout" and
            REQUEST_MS / 1000.0 - 0.1 <= r.elapsed < DELAY,
            "federated leg to guangzhou's slow data space: 504 timeout in %.2f s" % r.elapsed, r)
    t.check(harness.wait_until(lambda: slow.requests_seen() > seen, 3),
            "   the leg reached guangzhou's data space (the upstream saw it)")
    e = gz.log_for("slow-leg")
    t.check(e and e[0].get("route") == "/fed/v1/query", "   guangzhou logged the leg", e)

    r = sz.query(None, body=json.dumps({"dataset": "shenzhen/stroke-registry", "op": "count"}))
    t.check(r.status == 200 and (r.json() or {}).get("result", {}).get("count") == sz.space_rows,
            "shenzhen's embedded data space still answers 200", r)
    # the gateway recovers: after the slow upstream answered, its late answer is dropped
    import time
    time.sleep(DELAY)
    t.check(gz.alive(), "guangzhou alive after late upstream answers")
    r = gz.query("guangzhou/slow", timeout=20)
    t.check(r.status == 504, "second slow query also 504", r)


if __name__ == "__main__":
    harness.run(main)
