#!/usr/bin/python3
"""Onboarding (issue 6), played as a firm's engineer would: the openssl CLI and curl only, plus
python's httpx for one long-lived HTTP/2 connection. guangzhou - hongkong, profiles on,
guangzhou's gateway holding its city CA (config `ca:`).
- the firm makes an EC P-256 key and a CSR, applies without a certificate (202, pending),
  guangzhou's admin approves, the firm fetches its certificate (90 days, its SPIFFE id),
  proposes a contract with hongkong in Chinese terms and runs a query across the border;
- refusals: a duplicate application (409), an RSA CSR and a CSR for another organisation (400
  naming the problem), approval by a firm, by hongkong's admin (403);
- the admin revokes the firm: its open HTTP/2 connection is closed and its next handshake is
  refused within one second, at home and for a query reaching hongkong; the CRL lists it; the
  revocation is receipted."""
import json
import os
import subprocess
import time

import harness

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))
USCC = "91350100M000100Y43"


def openssl(t, *args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)
    t.require(r.returncode == 0, "openssl " + " ".join(args[:2]), r.stderr)
    return r.stdout


def main(t):
    gz_dir = t.certs.city("guangzhou")
    ca = "ca:\n  cert: %s\n  key: %s\n" % (os.path.join(gz_dir, "ca.crt"),
                                           os.path.join(gz_dir, "ca.key"))
    gws = harness.federation(t, ["guangzhou", "hongkong"], [("guangzhou", "hongkong")],
                             extra_yaml="profiles: %s" % PROFILES, space_rows=2000,
                             per_city={"guangzhou": {"extra_yaml": "profiles: %s\n%s" %
                                                     (PROFILES, ca)}})
    gz, hk = gws["guangzhou"], gws["hongkong"]
    hk.start()
    gz.start()
    t.check(gz.wait_peers(10), "federation ready")
    base = gz.url("").rstrip("/")

    key, csr = t.path("firm.key"), t.path("firm.csr")
    openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl(t, "req", "-new", "-key", key, "-subj", "/O=Acme Health Analytics/CN=acme", "-out",
            csr)
    app = {"name": "Acme Health Analytics", "registration_number": USCC,
           "contact": "ops@acme.example", "purposes": ["科研"], "csr": open(csr).read()}

    def post(path, body, cert=None):
        crt, k = cert if cert else (None, None)
        return harness.curl(t, base + path, cacert=gz.bundle, cert=crt, key=k,
                            data=json.dumps(body, ensure_ascii=False))

    r = post("/v1/firms", app)
    j = r.json() or {}
    fid = j.get("id", "")
    t.check(r.status == 202 and j.get("status") == "pending" and len(fid) == 32 and
            j.get("spiffe_id") == "spiffe://guangzhou.gba/firm/" + fid,
            "apply without a certificate: 202 pending, an id and the SPIFFE id to come", r)
    r = post("/v1/firms", app)
    t.check(r.status == 409, "the same registration number again: 409", r)

    rsa_key, rsa_csr = t.path("rsa.key"), t.path("rsa.csr")
    openssl(t, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa_key)
    openssl(t, "req", "-new", "-key", rsa_key, "-subj", "/O=Beta/CN=beta", "-out", rsa_csr)
    r = post("/v1/firms", dict(app, name="Beta", registration_number="91110000100000000X"
                               if False else "12345678", csr=open(rsa_csr).read()))
    t.check(r.status == 400 and "csr" in r.body and "RSA" in r.body,
            "an RSA CSR: 400 naming the key", r)
    other_csr = t.path("other.csr")
    openssl(t, "req", "-new", "-key", key, "-subj", "/O=Someone Else/CN=x", "-out", other_csr)
    r = post("/v1/firms", dict(app, name="Gamma Data", registration_number="87654321",
                               csr=open(other_csr).read()))
    t.check(r.status == 400 and "csr" in r.body, "a CSR for another organisation: 400", r)
    r = post("/v1/firms", dict(app, registration_number=USCC[:-1] + "0"))
    t.check(r.status == 400 and "registration_number" in r.body,
            "a credit code with a wrong check character: 400", r)

    r = harness.curl(t, base + "/v1/firms/" + fid, cacert=gz.bundle)
    t.check(r.status == 200 and (r.json() or {}).get("status") == "pending", "poll: pending", r)
    r = post("/v1/firms/%s/approve" % fid, {}, cert=gz.client("firm"))
    t.check(r.status == 403, "a firm cannot approve: 403", r)
    r = harness.curl(t, gz.url("/v1/firms/%s/approve" % fid), cacert=gz.bundle,
                     cert=hk.client("admin")[0], key=hk.client("admin")[1], data="{}")
    t.check(r.status == 403, "hongkong's admin cannot approve a guangzhou firm: 403", r)
    r = post("/v1/firms/%s/approve" % fid, {}, cert=gz.client("admin"))
    j = r.json() or {}
    t.check(r.status == 200 and j.get("status") == "approved" and
            "BEGIN CERTIFICATE" in j.get("certificate", ""), "guangzhou's admin approves", r)

    r = harness.curl(t, base + "/v1/firms/" + fid, cacert=gz.bundle)
    crt = t.path("firm.crt")
    with open(crt, "w") as f:
        f.write((r.json() or {}).get("certificate", ""))
    text = openssl(t, "x509", "-in", crt, "-noout", "-text")
    t.check("URI:spiffe://guangzhou.gba/firm/" + fid in text and "TLS Web Client" in text,
            "the certificate carries the firm's SPIFFE id, client auth", text[-600:])
    days = (int(time.mktime(time.strptime(openssl(t, "x509", "-in", crt, "-noout", "-enddate")
                                          .strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")))
            - time.time()) / 86400
    t.check(88 < days <= 90.1, "valid for 90 days (%.1f)" % days)

    firm = (crt, key)
    r = post("/v1/contracts", {"provider": "hongkong", "datasets": ["hongkong/stroke-registry"],
                               "purpose": "科研", "operations": ["统计分析"],
                               "legal_basis": "伦理审查批准", "valid_days": 30}, cert=firm)
    t.check(r.status == 201, "the new firm proposes a contract with hongkong", r)
    cid = (r.json() or {}).get("id", "")
    q = {"contract": cid, "dataset": "hongkong/stroke-registry", "op": "count"}
    r = post("/v1/queries", q, cert=firm)
    t.check(r.status == 200 and (r.json() or {}).get("result", {}).get("count") == 2000,
            "and runs a query across the border", r)

    # a long-lived HTTP/2 connection of the firm, then the admin revokes it
    import httpx
    client = httpx.Client(http2=True, verify=gz.bundle, cert=(crt, key), timeout=5)
    resp = client.get(base + "/v1/contracts")
    t.check(resp.status_code == 200 and resp.http_version == "HTTP/2",
            "the firm holds an open HTTP/2 connection", resp.status_code)
    t0 = time.time()
    r = post("/v1/firms/%s/revoke" % fid, {"reason": "contract breach"}, cert=gz.client("admin"))
    t.check(r.status == 200 and (r.json() or {}).get("status") == "revoked", "revoked", r)
    closed = False
    while time.time() - t0 < 1.0 and not closed:
        try:
            client.get(base + "/v1/contracts")
        except (httpx.HTTPError, OSError):
            closed = True
        else:
            time.sleep(0.05)
    client.close()
    t.check(closed, "its open connection is gone within one second (%.2f s)" % (time.time() - t0))
    r = post("/v1/queries", q, cert=firm)
    t.check(r.status != 200 and r.status in (0, 403), "its next handshake (or request) is "
            "refused, also for a query reaching hongkong", r)
    r = harness.curl(t, base + "/v1/crl", cacert=gz.bundle)
    crl = t.path("gz.crl")
    with open(crl, "w") as f:
        f.write(r.body or "")
    ctext = openssl(t, "crl", "-in", crl, "-noout", "-text")
    serial = (openssl(t, "x509", "-in", crt, "-noout", "-serial").strip().split("=")[1]).upper()
    t.check(r.status == 200 and serial in ctext.replace(":", "").upper(),
            "the CRL lists the revoked certificate", ctext[-400:])
    r = harness.curl(t, base + "/v1/receipts?limit=100", cacert=gz.bundle,
                     cert=gz.client("regulator")[0], key=gz.client("regulator")[1])
    kinds = [x.get("kind") for x in (r.json() or {}).get("receipts", [])]
    t.check("identity_issued" in kinds and "identity_revoked" in kinds,
            "the approval and the revocation are receipted", kinds)


if __name__ == "__main__":
    harness.run(main)
