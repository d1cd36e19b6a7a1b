#!/usr/bin/python3
"""Per-firm rate limits, process-wide: a gateway with two workers and limits firm_rps 50,
firm_burst 50. h2load cannot present a client certificate, so the firm under load is the local
h2c listener's client_identity (spiffe://guangzhou.gba/firm/burst), asking GET /v1/catalog (a
firm of this city may; cheap on a gateway without peers). Checked: a burst of 400 (-c 4 -m 10)
gets about burst + rate * duration 200s and 429 for the rest; a 3 s flood gets about
50 + 50 * 3; the 429s carry Retry-After and code rate_limited; another firm of the city (curl
with its TLS client certificate) is served 200 while the flood runs; /metrics counts
baygate_rate_limited_total; and anonymous applications (POST /v1/firms) are limited per source
address by apply_per_minute."""
import re
import subprocess
import time

import harness
from harness import curl

RPS, BURST = 50, 50
APPLY = 3
BURSTER = "spiffe://guangzhou.gba/firm/burst"


def h2load(t, url, args):
    """Runs h2load; returns (2xx, 4xx, seconds it reports, output)."""
    argv = ["h2load", "-t", "1"] + list(args) + [url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    secs = re.search(r"finished in ([0-9.]+)(m?s)", out)
    if not m or r.returncode != 0:
        t.check(False, "h2load ran (rc %d)" % r.returncode, out[-2000:])
        return 0, 0, 0.0, out
    took = float(secs.group(1)) / (1000.0 if secs.group(2) == "ms" else 1.0) if secs else 0.0
    return int(m.group(1)), int(m.group(3)), took, out


def main(t):
    gz = harness.federation(t, ["guangzhou"], [], client_identity=BURSTER, workers=2,
                            limits={"firm_rps": RPS, "firm_burst": BURST,
                                    "firm_max_streams": 100,
                                    "apply_per_minute": APPLY})["guangzhou"]
    gz.start()
    url = gz.local_url("/v1/catalog")
    crt, key = gz.client("firm")  # another firm of guangzhou, over TLS

    r = curl(t, url, h2c=True)
    t.require(r.status == 200 and (r.json() or {}).get("city") == "guangzhou",
              "GET /v1/catalog as the local listener's firm -> 200", r)
    time.sleep(1.2)  # the bucket is full again

    # 1. a burst of 400 requests, 40 at a time
    ok, limited, took, out = h2load(t, url, ["-n", "400", "-c", "4", "-m", "10"])
    expect_hi = BURST + RPS * took + 3
    t.check(ok + limited == 400 and BURST <= ok <= expect_hi,
            "burst of 400: %d x 200 (burst %d + %d/s over %.3f s: at most %.0f), %d x 429"
            % (ok, BURST, RPS, took, expect_hi, limited), out[-1500:])

    # 2. a 3 s flood, while another firm of the city asks over TLS
    time.sleep(1.2)
    log = t.path("h2load-flood.out")
    with open(log, "w") as lf:
        p = subprocess.Popen(["h2load", "-t", "1", "-D", "3", "-c", "4", "-m", "10", url],
                             stdout=lf, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    others = []
    for _ in range(5):
        others.append(curl(t, gz.url("/v1/catalog"), cacert=gz.bundle, cert=crt, key=key))
    still_running = p.poll() is None
    p.wait(timeout=60)
    with open(log) as lf:
        out = lf.read()
    t.check(still_running, "the other firm's requests were made during the flood")
    t.check(all(o.status == 200 for o in others),
            "another firm of guangzhou (TLS client certificate) -> 200 x 5 during the flood",
            [(o.status, o.error_code()) for o in others])
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    secs = re.search(r"finished in ([0-9.]+)(m?s)", out)
    if t.check(m and secs and p.returncode == 0, "h2load -D 3 ran", out[-1500:]):
        ok, limited = int(m.group(1)), int(m.group(3))
        took = float(secs.group(1)) / (1000.0 if secs.group(2) == "ms" else 1.0)
        want = BURST + RPS * took
        # h2load's clock starts a little before the first request and stops a little after
        # the last one: a tolerance of 10% of the rate's share, plus a few requests
        t.check(abs(ok - want) <= 0.1 * RPS * took + 5 and limited > 10 * ok,
                "3 s flood: %d x 200, about burst %d + %d/s x %.2f s = %.0f; %d x 429"
                % (ok, BURST, RPS, took, want, limited), out[-1500:])

    # 3. the 429s: Retry-After and the error code. 60 requests multiplexed on one connection
    # (nghttp -m; curl 7.88's --parallel stalls over h2c prior knowledge) against the bucket
    # the flood left empty.
    n = 60
    r = subprocess.run(["nghttp", "-v", "-m", str(n), url], capture_output=True, text=True,
                       timeout=60)
    status, retry = {}, {}
    for m in re.finditer(r"recv \(stream_id=(\d+)\) (:status|retry-after): (\S+)", r.stdout):
        (status if m.group(2) == ":status" else retry)[m.group(1)] = m.group(3)
    got429 = [sid for sid, st in status.items() if st == "429"]
    t.check(len(status) == n and len(got429) >= n - BURST,
            "%d multiplexed requests: %d x 429" % (n, len(got429)), r.stdout[-600:] + r.stderr)
    t.check(got429 and all(retry.get(sid, "").isdigit() and int(retry[sid]) >= 1
                           for sid in got429),
            "every 429 has Retry-After: <seconds >= 1>", [retry.get(sid) for sid in got429][:5])
    t.check(got429 and r.stdout.count('"code":"rate_limited"') == len(got429),
            "the 429 answers are {\"error\":{\"code\":\"rate_limited\",...}}",
            r.stdout.count('"code":"rate_limited"'))

    # 4. metrics
    r = curl(t, gz.local_url("/metrics"), h2c=True)
    m = re.search(r'^baygate_rate_limited_total\{limit="firm_rps"\} (\d+)', r.body or "", re.M)
    t.check(m and int(m.group(1)) >= len(got429) + limited,
            "/metrics: baygate_rate_limited_total{limit=\"firm_rps\"} counts them (%s)"
            % (m.group(1) if m else "absent"),
            "\n".join(l for l in (r.body or "").split("\n") if "rate_limited" in l))

    # 5. applications from one address, without a certificate: apply_per_minute
    statuses = []
    for _ in range(APPLY + 1):
        statuses.append(curl(t, gz.url("/v1/firms"), cacert=gz.bundle, data="{}"))
    first, last = statuses[:APPLY], statuses[APPLY]
    t.check(all(s.status not in (403, 404, 405, 429) for s in first),
            "%d applications (POST /v1/firms, no certificate) are let through" % APPLY,
            [(s.status, s.error_code()) for s in first])
    ra = last.headers.get("retry-after", "")
    t.check(last.status == 429 and last.error_code() == "rate_limited" and ra.isdigit() and
            15 <= int(ra) <= 20,
            "application %d within the minute -> 429 rate_limited, Retry-After about 60/%d s (%s)"
            % (APPLY + 1, APPLY, ra), last)


if __name__ == "__main__":
    harness.run(main)
