#!/usr/bin/python3
"""Invalid configurations: `baygate --config F` and `baygate --check-config F` exit 2 with
"F:<line>:" on stderr, the line pointing at the fault; the valid base config checks 0."""
import os

import harness

BASE = """city: guangzhou
workers: 1
access_log: off
listeners:
  - address: 127.0.0.1:{tls}
    tls: true
  - address: 127.0.0.1:{local}
    tls: false
    local: true
tls:
  cert: gateway.crt
  key: gateway.key
  trust_bundle: ../trust-bundle.pem
peers:
  - name: shenzhen
    spiffe_id: spiffe://shenzhen.gba/gateway
    urls: [https://127.0.0.1:{peer}]
upstream:
  url: builtin
timeouts:
  connect_ms: 1000
limits:
  max_hops: 8
ledger:
  path: ledger
"""


def line_of(text, needle):
    for i, l in enumerate(text.split("\n"), 1):
        if needle in l:
            return i
    raise AssertionError(needle)


def main(t):
    gz_dir = t.certs.city("guangzhou")
    t.certs.city("shenzhen")
    t.certs.bundle(os.path.join(t.certs.root, "trust-bundle.pem"),
                   [os.path.join(t.certs.root, c, "ca.crt") for c in ("guangzhou", "shenzhen")])
    base = BASE.format(tls=harness.free_port(), local=harness.free_port(), peer=harness.free_port())

    def write(name, text):
        p = os.path.join(gz_dir, name)  # next to the certs: relative paths resolve
        with open(p, "w") as f:
            f.write(text)
        return p

    p = write("valid.yaml", base)
    rc, out, err = harness.run_baygate(["--check-config", p])
    t.check(rc == 0, "control: valid config -> --check-config exit 0 (rc %d)" % rc, err)

    cases = []
    # (name, text, expected line or None for "any line")
    cases.append(("syntax error (unclosed flow sequence)",
                  base.replace("urls: [https://127.0.0.1:", "urls: [https://127.0.0.1:").replace(
                      "]\nupstream:", "\nupstream:"), None))
    cases.append(("syntax error (bad indentation)", base.replace("    tls: true", "      tls: true\n   bogus"), None))
    t_unknown = base.replace("workers: 1\n", "workers: 1\nwrokers: 2\n")
    cases.append(("unknown top-level key", t_unknown, line_of(t_unknown, "wrokers")))
    t_unknown2 = base.replace("  connect_ms: 1000\n", "  connect_ms: 1000\n  conect_ms: 5\n")
    cases.append(("unknown key in timeouts", t_unknown2, line_of(t_unknown2, "conect_ms")))
    t_port = base.replace("127.0.0.1:{}".format(base.split("127.0.0.1:")[1].split("\n")[0]),
                          "127.0.0.1:70000", 1)
    cases.append(("listener port 70000", t_port, line_of(t_port, "70000")))
    t_port0 = base.replace("127.0.0.1:{}".format(base.split("127.0.0.1:")[1].split("\n")[0]),
                           "127.0.0.1:notaport", 1)
    cases.append(("listener port not a number", t_port0, line_of(t_port0, "notaport")))
    t_url = base.replace("urls: [https://127.0.0.1:", "urls: [ftp://127.0.0.1:")
    cases.append(("peer url with scheme ftp", t_url, line_of(t_url, "ftp://")))
    t_route = base.replace("upstream:\n", "routes:\n  - city: hongkong\n    via: nowhere\nupstream:\n")
    cases.append(("route via an unknown peer", t_route, None))
    t_city = base.replace("city: guangzhou", "city: Guang Zhou!")
    cases.append(("invalid city name", t_city, line_of(t_city, "city: Guang")))
    t_neg = base.replace("  max_hops: 8", "  max_hops: -3")
    cases.append(("negative max_hops", t_neg, line_of(t_neg, "max_hops")))

    for i, (what, text, line) in enumerate(cases):
        p = write("bad-%d.yaml" % i, text)
        for mode in ("--check-config", "--config"):
            rc, out, err = harness.run_baygate([mode, p], timeout=10)
            m = harness.file_line_re(p).search(err)
            ok = rc == 2 and m is not None
            if ok and line is not None and mode == "--check-config":
                ok = int(m.group(1)) == line
            t.check(ok, "%s: %s -> exit 2, '%s:%s:' on stderr (rc %d%s)"
                    % (what, mode, os.path.basename(p), line if line else "N", rc,
                       ", line %s" % m.group(1) if m else ""), err.strip()[-500:])

    # contract profiles are part of the configuration: a malformed one stops the start
    pdir = os.path.join(gz_dir, "profiles")
    os.makedirs(pdir, exist_ok=True)
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf", "profiles")
    for c in ("guangzhou", "shenzhen"):
        with open(os.path.join(src, c + ".yaml")) as f:
            text = f.read()
        if c == "shenzhen":
            text = text.replace("rules: {min_cell_size: 5", "rules: {min_cell_size: -5")
        with open(os.path.join(pdir, c + ".yaml"), "w") as f:
            f.write(text)
    bad = os.path.join(pdir, "shenzhen.yaml")
    p = write("with-profiles.yaml", base + "profiles: profiles\n")
    for mode in ("--check-config", "--config"):
        rc, out, err = harness.run_baygate([mode, p], timeout=10)
        m = harness.file_line_re(bad).search(err)
        t.check(rc == 2 and m is not None and "min_cell_size" in err,
                "malformed profile: %s -> exit 2 with 'shenzhen.yaml:<line>:' (rc %d)" % (mode, rc),
                err.strip()[-400:])
    os.remove(bad)
    rc, out, err = harness.run_baygate(["--check-config", p], timeout=10)
    t.check(rc == 2 and "shenzhen" in err, "missing profile of a peer: exit 2 naming it (rc %d)" % rc,
            err.strip()[-300:])

    rc, out, err = harness.run_baygate(["--check-config", os.path.join(gz_dir, "missing.yaml")])
    t.check(rc != 0 and "missing.yaml" in err, "missing file -> non-zero exit naming the file (rc %d)" % rc, err)


if __name__ == "__main__":
    harness.run(main)
