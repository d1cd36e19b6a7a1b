#!/usr/bin/python3
"""A 100 MiB response streamed through two gateways with bounded memory: nghttpd (h2c) serves a
100 MiB file as guangzhou's upstream; a shenzhen firm fetches it via shenzhen -> guangzhou;
the size must be exact and each gateway's VmHWM (peak RSS) must stay under 64 MB."""
import os

import harness

SIZE = 100 * 1024 * 1024
LIMIT_KB = 64 * 1024


def main(t):
    docroot = t.path("docroot")
    os.makedirs(os.path.join(docroot, "space", "v1"))
    with open(os.path.join(docroot, "space", "v1", "query"), "wb") as f:
        block = (b"0123456789abcdef" * 4096)  # 64 KiB
        for _ in range(SIZE // len(block)):
            f.write(block)
    ngx = harness.Nghttpd(t, "nghttpd-big", docroot).start_ready()
    r = harness.curl(t, ngx.url() + "/space/v1/query", h2c=True, data='{"dataset":"x"}',
                     output="/dev/null")
    t.require(r.status == 200 and r.size == SIZE, "control: nghttpd serves 100 MiB on POST", r)
    env = None
    if harness.sanitized():
        # ASan keeps freed memory in a 256 MB quarantine: shrink it so peak RSS still says
        # whether the body was buffered; the bound is then start-up RSS + 64 MB.
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"
                               ":thread_local_quarantine_size_kb=256").lstrip(":")
    gws = harness.federation(t, ["guangzhou", "shenzhen"], [("guangzhou", "shenzhen")],
                             per_city={"guangzhou": {"upstream": ngx.url()}},
                             timeouts={"request_ms": 60000}, env=env)
    gws["guangzhou"].start()
    gws["shenzhen"].start()
    sz = gws["shenzhen"]
    base = {c: gws[c].vmhwm_kb() for c in gws}
    t.log("VmHWM after start-up: %s kB" % base)

    for i in (1, 2):
        r = sz.query("guangzhou/big", output="/dev/null", timeout=120)
        t.check(r.rc == 0 and r.status == 200 and r.size == SIZE,
                "fetch %d: 100 MiB via shenzhen -> guangzhou: 200, %d bytes (got %d) in %.2f s"
                % (i, SIZE, r.size, r.elapsed), r)
        t.check(r.headers.get("x-baygate-route") == "shenzhen,guangzhou",
                "fetch %d: route shenzhen,guangzhou" % i, r.headers)
    e = sz.log_for(r.headers.get("x-request-id", "-"))
    t.check(e and e[-1].get("bytes_out") == SIZE and e[-1].get("status") == 200,
            "shenzhen access log: status 200, bytes_out == %d" % SIZE, e)
    for c in ("shenzhen", "guangzhou"):
        hwm = gws[c].vmhwm_kb()
        limit = LIMIT_KB if env is None else base[c] + LIMIT_KB
        print("FIGURE vmhwm %s %d kB" % (c, hwm), flush=True)
        t.check(hwm < limit, "%s VmHWM %.1f MB < %d MB after 2 x 100 MiB%s"
                % (c, hwm / 1024.0, limit // 1024,
                   " (ASan build: start-up %d MB + 64 MB)" % (base[c] // 1024) if env else ""))


if __name__ == "__main__":
    harness.run(main)
