#!/usr/bin/python3
"""h2c only where allowed: prior-knowledge cleartext works on a `local: true` listener (with and
without client_identity), not on the TLS port; `tls: false` without `local: true` (or on a
non-loopback address) is rejected by --check-config with exit 2 and file:line. Queries are real
federated counts on the embedded data spaces (shenzhen/stroke-registry,
guangzhou/cerebral-infarction)."""
import json
import os

import harness
from harness import curl


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen"], [("guangzhou", "shenzhen")],
                             per_city={"shenzhen": {
                                 "client_identity": "spiffe://shenzhen.gba/firm/frontend"}})
    gz, sz = gws["guangzhou"], gws["shenzhen"]
    gz.start()
    body = json.dumps({"dataset": "guangzhou/cerebral-infarction", "op": "count"})
    rows = gz.space_rows

    r = curl(t, gz.local_url("/healthz"), h2c=True)
    t.check(r.status == 200 and r.version == "2", "h2c prior knowledge GET /healthz on local -> 200 HTTP/2", r)
    r = curl(t, gz.local_url("/readyz"), h2c=True)
    t.check(r.status in (200, 503) and "guangzhou" in (r.body or ""),
            "h2c GET /readyz on local listener answered (anyone on local)", r)
    # without client_identity: /v1/* -> 403
    r = curl(t, gz.local_url("/v1/queries"), h2c=True, data=body)
    t.check(r.status == 403, "h2c POST /v1/queries on local listener without client_identity -> 403", r)

    # with client_identity (shenzhen's in-house front end)
    try:
        sz.start()
    except harness.TestFailed as e:
        t.check(False, "shenzhen with a local listener carrying client_identity starts", e)
    if sz.alive():
        r = curl(t, sz.local_url("/v1/queries"), h2c=True,
                 data=json.dumps({"dataset": "shenzhen/stroke-registry", "op": "count"}),
                 headers=["x-request-id: h2c-ident-1"])
        j = r.json() or {}
        t.check(r.status == 200 and r.version == "2" and
                j.get("result", {}).get("count") == rows and
                j.get("cities", {}).get("shenzhen", {}).get("status") == "ok",
                "h2c POST /v1/queries on local listener with client_identity -> 200, "
                "shenzhen's rows counted", r)
        e = sz.log_for("h2c-ident-1")
        t.check(e and "shenzhen.gba/firm/frontend" in json.dumps(e[0]),
                "   access log peer names the configured client_identity", e)
        r = curl(t, sz.local_url("/v1/queries"), h2c=True, data=body)
        j = r.json() or {}
        t.check(r.status == 200 and r.headers.get("x-baygate-route") == "shenzhen,guangzhou" and
                j.get("result", {}).get("count") == rows and
                j.get("cities", {}).get("guangzhou", {}).get("route") == "shenzhen,guangzhou",
                "h2c local at shenzhen -> forwarded to guangzhou: 200, route shenzhen,guangzhou", r)

    # HTTP/1.1 cleartext on the local listener is not served
    r = curl(t, gz.local_url("/healthz"), extra=["--http1.1"], timeout=5)
    t.check(r.status != 200, "HTTP/1.1 on the h2c listener is not served with 200", r)

    # cleartext on the TLS port fails
    r = curl(t, "http://127.0.0.1:%d/healthz" % gz.tls_port, h2c=True, timeout=5)
    t.check(r.status == 0 and r.rc != 0, "h2c prior knowledge on the TLS port fails (curl rc %d)" % r.rc, r)
    r = curl(t, gz.url("/healthz"), cacert=gz.bundle)
    t.check(r.status == 200, "TLS port still serves after the cleartext attempt", r)

    # TLS on the local port fails
    r = curl(t, "https://127.0.0.1:%d/healthz" % gz.local_port, cacert=gz.bundle, timeout=5)
    t.check(r.status == 0 and r.rc != 0, "TLS on the h2c local port fails (curl rc %d)" % r.rc, r)

    # config checks: tls: false without local: true; tls: false + local on a non-loopback
    good = open(gz.config_path).read()
    lines = good.split("\n")
    lport = "127.0.0.1:%d" % gz.local_port
    idx = next(i for i, l in enumerate(lines) if lport in l)
    # listener block: address line idx, "tls: false" idx+1, "local: true" idx+2
    assert lines[idx + 2].strip() == "local: true", lines[idx:idx + 3]
    bad = lines[:idx + 2] + lines[idx + 3:]
    path = t.path("no-local.yaml")
    with open(path, "w") as f:
        f.write("\n".join(bad))
    # relative paths in the copy would resolve against t.dir: make them absolute
    with open(path) as f:
        txt = f.read()
    txt = txt.replace("cert: gateway.crt", "cert: %s/gateway.crt" % gz.dir) \
             .replace("key: gateway.key", "key: %s/gateway.key" % gz.dir) \
             .replace("trust_bundle: ../trust-bundle.pem", "trust_bundle: %s" % gz.bundle)
    with open(path, "w") as f:
        f.write(txt)
    rc, out, err = harness.run_baygate(["--check-config", path])
    m = harness.file_line_re(path).search(err)
    t.check(rc == 2 and m, "--check-config: tls:false without local:true -> exit 2, file:line (rc %d)" % rc,
            err)
    if m:
        t.check(int(m.group(1)) in (idx + 1, idx + 2),
                "   error line %s points at the listener (address line %d / tls line %d)"
                % (m.group(1), idx + 1, idx + 2), err)
    rc2, _, err2 = harness.run_baygate(["--config", path], timeout=10)
    t.check(rc2 == 2 and harness.file_line_re(path).search(err2),
            "--config with the same file -> exit 2 with file:line (rc %d)" % rc2, err2)

    # local: true on a non-loopback address
    txt2 = txt.replace("- address: %s\n    tls: false" % lport,
                       "- address: 0.0.0.0:%d\n    tls: false\n    local: true" % gz.local_port)
    path2 = t.path("local-any.yaml")
    with open(path2, "w") as f:
        f.write(txt2)
    rc, _, err = harness.run_baygate(["--check-config", path2])
    t.check(rc == 2 and harness.file_line_re(path2).search(err),
            "--check-config: local h2c listener on 0.0.0.0 -> exit 2, file:line (rc %d)" % rc, err)

    # control: the generated configs are valid
    rc, out, err = harness.run_baygate(["--check-config", gz.config_path])
    t.check(rc == 0, "--check-config on the running (valid) config -> exit 0 (rc %d)" % rc, err)


if __name__ == "__main__":
    harness.run(main)
