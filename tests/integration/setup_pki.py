#!/usr/bin/python3
"""ctest FIXTURES_SETUP step (integration_pki): generates the demo cities' PKI with
`baygatectl certs city` into $BAYGATE_IT_PKI (wiped first) and checks it: files present, keys
mode 0600, leaves verify against their city CA, SPIFFE URI SANs as documented. Tests copy a
city from there instead of generating it again (harness.Certs)."""
import os
import shutil
import stat
import subprocess
import sys

import harness

CITIES = ["guangzhou", "shenzhen", "hongkong", "macau"]


def sh(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


def main():
    root = os.environ.get("BAYGATE_IT_PKI")
    if not root:
        print("FAIL  BAYGATE_IT_PKI not set")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    os.environ.pop("BAYGATE_IT_PKI")  # generate for real, do not copy from ourselves

    class T:  # the harness Certs only needs a context with check()
        failures = []

        def check(self, c, w, d=""):
            print(("  ok  " if c else "FAIL  ") + w + ("" if c else "\n        %s" % d))
            if not c:
                self.failures.append(w)
            return c

    t = T()
    try:
        certs = harness.Certs(t, root)
        t.check(certs.use_ctl, "baygatectl present at %s" % harness.baygatectl_bin())
        for c in CITIES:
            d = certs.city(c)
            for f in ("ca.key", "gateway.key", "clients/%s-firm.key" % c):
                mode = stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode)
                t.check(mode == 0o600, "%s/%s mode 0600 (%o)" % (c, f, mode))
            for leaf, uri in (("gateway.crt", "spiffe://%s.gba/gateway" % c),
                              ("clients/%s-firm.crt" % c, "spiffe://%s.gba/firm" % c),
                              ("clients/%s-regulator.crt" % c, "spiffe://%s.gba/regulator" % c),
                              ("clients/%s-admin.crt" % c, "spiffe://%s.gba/admin" % c)):
                p = os.path.join(d, leaf)
                r = sh(["openssl", "verify", "-CAfile", os.path.join(d, "ca.crt"), p])
                t.check(r.returncode == 0, "%s/%s verifies against %s CA" % (c, leaf, c), r.stdout + r.stderr)
                r = sh(["openssl", "x509", "-in", p, "-noout", "-ext", "subjectAltName"])
                t.check(("URI:" + uri) in r.stdout, "%s/%s has URI SAN %s..." % (c, leaf, uri), r.stdout)
                if leaf == "gateway.crt":
                    t.check("IP Address:127.0.0.1" in r.stdout, "%s gateway cert has IP SAN 127.0.0.1" % c, r.stdout)
        certs.bundle(os.path.join(root, "trust-bundle.pem"),
                     [os.path.join(root, c, "ca.crt") for c in CITIES])
        with open(os.path.join(root, "trust-bundle.pem")) as f:
            n = f.read().count("BEGIN CERTIFICATE")
        t.check(n == len(CITIES), "trust bundle holds %d CAs (%d)" % (len(CITIES), n))
        # expired leaf via --days/--not-before-offset
        crt, _ = certs.issue(os.path.join(root, "guangzhou"), "spiffe://guangzhou.gba/firm/expired",
                             os.path.join(root, "expired-check"), days=1, not_before_offset=-3 * 86400)
        r = sh(["openssl", "x509", "-in", crt, "-noout", "-checkend", "0"])
        t.check(r.returncode != 0, "certs issue --days 1 --not-before-offset -259200 makes an expired cert")
    except harness.TestFailed as e:
        t.check(False, "certificate generation", e)
    return 1 if t.failures else 0


if __name__ == "__main__":
    sys.exit(main())
