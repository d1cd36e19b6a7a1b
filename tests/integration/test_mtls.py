#!/usr/bin/python3
"""mTLS: trusted city firm cert accepted (POST /v1/queries 200 over HTTP/2); no client cert ->
403 client_certificate_required (but /healthz 200); a cert from an untrusted CA and an expired
cert fail the handshake; wrong SPIFFE identity on /fed/v1/query -> 403 peer_not_allowed, the
configured peer's gateway cert gets its protobuf leg answered (200 LegAnswer).
The query is a real federated count on guangzhou's embedded data space
(guangzhou/cerebral-infarction, 20000 synthetic rows)."""
import json
import os
import subprocess

import harness
from harness import curl

HANDSHAKE_FAIL = (35, 56, 16, 92)  # curl: SSL connect error / recv failure / HTTP/2 / stream
ROWS = 20000  # harness default space_rows
DATASET = "guangzhou/cerebral-infarction"
PB = "application/x-protobuf"


def pb_fields(buf):
    """{field number: [values]} of one protobuf message (varints as int, LEN as bytes)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(f, []).append(v)
    return out


def _read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def leg_answer(path):
    """(city, n of the first cell) of the LegAnswer in file |path|, or (None, None)."""
    try:
        with open(path, "rb") as f:
            a = pb_fields(f.read())
        cell = pb_fields(pb_fields(a[2][0])[5][0])
        return a[1][0].decode(), cell.get(2, [0])[0]
    except (OSError, KeyError, IndexError, ValueError):
        return None, None


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen", "hongkong"],
                             [("guangzhou", "shenzhen"), ("shenzhen", "hongkong")])
    gz = gws["guangzhou"]
    for c in ("shenzhen", "hongkong", "guangzhou"):
        gws[c].start()
    body = json.dumps({"dataset": DATASET, "op": "count"})

    # a firm of another trusted city is authenticated but not served here: its own city's
    # gateway vouches for it (docs/api.md, the authorization table)
    crt, key = gws["hongkong"].client("firm")
    r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=crt, key=key, data=body)
    t.check(r.rc == 0 and r.status == 403 and r.error_code() == "forbidden",
            "hongkong firm cert at guangzhou: TLS accepted, 403 (served by its home city)", r)
    # accepted: own city firm
    for who in ("guangzhou",):
        crt, key = gws[who].client("firm")
        r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=crt, key=key, data=body)
        t.check(r.rc == 0 and r.status == 200 and r.version == "2",
                "%s firm cert: POST /v1/queries -> 200 over HTTP/2" % who, r)
        j = r.json() or {}
        t.check(j.get("dataset") == DATASET and j.get("result", {}).get("count") == ROWS and
                j.get("cities", {}).get("guangzhou", {}).get("status") == "ok",
                "%s firm: answer counts guangzhou's %d rows of %s" % (who, ROWS, DATASET),
                r.body)
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
    t.check(r.status == 200 and (r.json() or {}).get("result", {}).get("count") == ROWS,
            "still serving after refused handshakes", r)

    # /fed/v1/query: only configured peers; the body is a leg as a peer sends it
    fed_hdrs = ["x-baygate-hops: shenzhen", "x-baygate-dest: guangzhou",
                "x-request-id: mtls-fed-1", "content-type: " + PB]
    leg = harness.leg_body(DATASET.split("/")[1])
    cases = [
        ("guangzhou firm cert", gz.client("firm")),
        ("shenzhen firm cert", gws["shenzhen"].client("firm")),
        ("hongkong gateway cert (trusted, not a peer of guangzhou)", gws["hongkong"].gateway_cert()),
    ]
    for what, (crt, key) in cases:
        r = curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, cert=crt, key=key, data=leg,
                 headers=fed_hdrs)
        t.check(r.status == 403 and r.error_code() == "peer_not_allowed",
                "%s on /fed/v1/query -> 403 peer_not_allowed" % what, r)
    r = curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, data=leg, headers=fed_hdrs)
    t.check(r.status == 403 and r.error_code() == "peer_not_allowed",
            "no cert on /fed/v1/query -> 403 peer_not_allowed", r)
    # and the configured peer is accepted: its leg is answered with a LegAnswer
    crt, key = gws["shenzhen"].gateway_cert()
    out = t.path("fed-answer.pb")
    r = curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, cert=crt, key=key, data=leg,
             headers=fed_hdrs, output=out)
    city, n = leg_answer(out)
    t.check(r.status == 200 and r.headers.get("content-type") == PB and city == "guangzhou"
            and n == ROWS,
            "shenzhen gateway cert (configured peer) on /fed/v1/query -> 200 LegAnswer from "
            "guangzhou, count %s" % n, r)

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
