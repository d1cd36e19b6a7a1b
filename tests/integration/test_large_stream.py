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
    gws = harness.federation(t, ["guangzhou", "shenzhen"], [("guangzhou", "shenzhen")],
                             per_city={"guangzhou": {"upstream": ngx.url()}},
                             timeouts={"request_ms": 60000})
    gws["guangzhou"].start()
    gws["shenzhen"].start()
    sz = gws["shenzhen"]
    t.log("VmHWM after start-up: %s kB" % {c: gws[c].vmhwm_kb() for c in gws})

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
    # Under ASan (shadow memory, quarantine) the 64 MB bound does not apply; a bound that
    # still catches buffering the whole 100 MiB body is used instead.
    limit = LIMIT_KB if not harness.sanitized() else 4 * SIZE // 1024
    for c in ("shenzhen", "guangzhou"):
        hwm = gws[c].vmhwm_kb()
        print("FIGURE vmhwm %s %d kB" % (c, hwm), flush=True)
        t.check(hwm < limit, "%s VmHWM %.1f MB < %d MB after 2 x 100 MiB%s"
                % (c, hwm / 1024.0, limit // 1024, " (ASan build)" if limit != LIMIT_KB else ""))


if __name__ == "__main__":
    harness.run(main)
