#!/usr/bin/python3
"""mTLS: trusted city firm cert accepted (POST /v1/queries 200 over HTTP/2); no client cert ->
403 client_certificate_required (but /healthz 200); a cert from an untrusted CA and an expired
cert fail the handshake; wrong SPIFFE identity on /fed/v1/query -> 403 peer_not_allowed."""
import json
import os
import subprocess

import harness
from harness import curl

HANDSHAKE_FAIL = (35, 56, 16, 92)  # curl: SSL connect error / recv failure / HTTP/2 / stream


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen", "hongkong"],
                             [("guangzhou", "shenzhen"), ("shenzhen", "hongkong")])
    gz = gws["guangzhou"]
    for c in ("shenzhen", "hongkong", "guangzhou"):
        gws[c].start()
    body = json.dumps({"dataset": "guangzhou/air-quality"})

    # accepted: own city firm, and a firm of another trusted city
    for who in ("guangzhou", "hongkong"):
        crt, key = gws[who].client("firm")
        r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=crt, key=key, data=body)
        t.check(r.rc == 0 and r.status == 200 and r.version == "2",
                "%s firm cert: POST /v1/queries -> 200 over HTTP/2" % who, r)
        j = r.json() or {}
        t.check(j.get("city") == "guangzhou" and j.get("dataset") == "guangzhou/air-quality",
                "%s firm: built-in responder body names city and dataset" % who, r.body)
        t.check(bool(r.headers.get("x-request-id")), "%s firm: x-request-id returned" % who,
                r.headers)

    # no client certificate
    r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, data=body)
    t.check(r.status == 403 and r.error_code() == "client_certificate_required",
            "no client cert: /v1/queries -> 403 client_certificate_required", r)
    r = curl(t, gz.url("/healthz"), cacert=gz.bundle)
    t.check(r.status == 200 and r.version == "2" and (r.json() or {}).get("city") == "guangzhou",
            "no client cert: /healthz -> 200 {status ok, city guangzhou}", r)

    # untrusted CA (a CA not in the bundle), with a firm identity of a real city name
    evil = t.certs.ca_only("guangzhou", t.path("pki-evil"))
    ecrt, ekey = t.certs.issue(evil, "spiffe://guangzhou.gba/firm/evil", t.path("pki-evil", "firm"))
    r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=ecrt, key=ekey, data=body)
    t.check(r.rc in HANDSHAKE_FAIL and r.status == 0,
            "cert from untrusted CA: handshake refused (curl rc %d)" % r.rc, r)

    # expired certificate from the trusted guangzhou CA
    xcrt, xkey = t.certs.issue(gz.dir, "spiffe://guangzhou.gba/firm/expired",
                               t.path("expired-firm"), days=1,
                               not_before_offset=-3 * 86400)
    r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=xcrt, key=xkey, data=body)
    t.check(r.rc in HANDSHAKE_FAIL and r.status == 0,
            "expired cert: handshake refused (curl rc %d)" % r.rc, r)

    # the gateway keeps serving after the refusals
    crt, key = gz.client("firm")
    r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=crt, key=key, data=body)
    t.check(r.status == 200, "still serving after refused handshakes", r)

    # /fed/v1/query: only configured peers
    fed_hdrs = ["x-baygate-hops: shenzhen", "x-request-id: mtls-fed-1"]
    cases = [
        ("guangzhou firm cert", gz.client("firm")),
        ("shenzhen firm cert", gws["shenzhen"].client("firm")),
        ("hongkong gateway cert (trusted, not a peer of guangzhou)", gws["hongkong"].gateway_cert()),
    ]
    for what, (crt, key) in cases:
        r = curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, cert=crt, key=key, data=body,
                 headers=fed_hdrs)
        t.check(r.status == 403 and r.error_code() == "peer_not_allowed",
                "%s on /fed/v1/query -> 403 peer_not_allowed" % what, r)
    r = curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, data=body, headers=fed_hdrs)
    t.check(r.status == 403 and r.error_code() == "peer_not_allowed",
            "no cert on /fed/v1/query -> 403 peer_not_allowed", r)
    # and the configured peer is accepted
    crt, key = gws["shenzhen"].gateway_cert()
    r = curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, cert=crt, key=key, data=body,
             headers=fed_hdrs)
    t.check(r.status == 200, "shenzhen gateway cert (configured peer) on /fed/v1/query -> 200", r)

    # openssl s_client: TLS 1.3 + ALPN h2 negotiated; a client not offering h2 is refused
    def s_client(alpn, extra=()):
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % gz.tls_port, "-CAfile",
                gz.bundle, "-alpn", alpn, "-verify_return_error"] + list(extra)
        p = subprocess.run(argv, input="", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=15)
        return p.returncode, p.stdout
    fcrt, fkey = gz.client("firm")
    rc, out = s_client("h2", ["-cert", fcrt, "-key", fkey])
    t.check(rc == 0 and "ALPN protocol: h2" in out and "TLSv1.3" in out,
            "openssl s_client -alpn h2 with firm cert: TLSv1.3, ALPN h2", out[-1500:])
    rc, out = s_client("http/1.1", ["-cert", fcrt, "-key", fkey])
    t.check("ALPN protocol: http/1.1" not in out and (rc != 0 or "No ALPN negotiated" not in out or "alert" in out),
            "openssl s_client -alpn http/1.1: no http/1.1 session (rc %d)" % rc, out[-1500:])
    rc, out = s_client("h2", ["-tls1_2"])
    t.check(rc != 0 and "Cipher is (NONE)" in out, "TLS 1.2 client refused (rc %d)" % rc, out[-800:])

    # a gateway cert is not a client cert on /v1/queries
    r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=crt, key=key, data=body)
    t.check(r.status == 403 and r.error_code() in ("forbidden", "client_certificate_required"),
            "gateway-role cert on /v1/queries -> 403 forbidden", r)


if __name__ == "__main__":
    harness.run(main)
