#!/usr/bin/python3
"""Request errors: body over limits.max_body_bytes -> 413 body_too_large; unknown path -> 404
not_found; known path with another method -> 405; invalid JSON -> 400 invalid_json; no
dataset -> 400 invalid_dataset; unknown city -> 404 unknown_city (an opaque dataset) or 502
no_route (a federation dataset, planned as a query). Error bodies have the
{"error":{"code","message"}} shape and carry x-request-id. The query that succeeds is a real
count on guangzhou's embedded data space; bodies are sized with JSON whitespace so that only the
size differs between the 413 and the 200."""
import json

import harness
from harness import curl

MAX_BODY = 4096
QUERY = json.dumps({"dataset": "guangzhou/cerebral-infarction", "op": "count"})


def padded(size):
    """QUERY followed by whitespace: a valid JSON body of exactly |size| bytes."""
    return QUERY + " " * (size - len(QUERY))


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen"], [("guangzhou", "shenzhen")],
                             limits={"max_body_bytes": MAX_BODY})
    gz = gws["guangzhou"]
    gz.start()
    gws["shenzhen"].start()

    def shape_ok(r):
        j = r.json()
        return (isinstance(j, dict) and isinstance(j.get("error"), dict)
                and isinstance(j["error"].get("code"), str)
                and isinstance(j["error"].get("message"), str))

    r = gz.query(None, body=padded(MAX_BODY * 2))
    t.check(r.status == 413 and r.error_code() == "body_too_large",
            "body of %d bytes > max_body_bytes %d -> 413 body_too_large" % (MAX_BODY * 2, MAX_BODY), r)
    t.check(shape_ok(r) and r.headers.get("x-request-id"), "   413 body has error.code/message, x-request-id", r)
    r = gz.query(None, body=padded(MAX_BODY + 1))
    t.check(r.status == 413 and r.error_code() == "body_too_large",
            "body of max_body_bytes + 1 -> 413 body_too_large", r)
    r = gz.query(None, body=padded(1024 * 1024))
    t.check(r.status == 413 and r.error_code() == "body_too_large", "1 MiB body -> 413 body_too_large", r)
    # the same body over /fed/v1/query from the peer
    crt, key = gws["shenzhen"].gateway_cert()
    r = curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, cert=crt, key=key,
             data=padded(MAX_BODY * 2),
             headers=["x-baygate-hops: shenzhen", "x-baygate-dest: guangzhou"])
    t.check(r.status == 413 and r.error_code() == "body_too_large", "/fed/v1/query over limit -> 413", r)
    for size in (MAX_BODY - 100, MAX_BODY):
        r = gz.query(None, body=padded(size))
        t.check(r.status == 200 and (r.json() or {}).get("result", {}).get("count") == gz.space_rows,
                "body of %d bytes (<= limit) -> 200 with the count" % size, r)

    for path in ("/nope", "/v1/queries/extra", "/v2/queries", "/"):
        r = gz.get(path, cert=gz.client("firm"))
        t.check(r.status == 404 and r.error_code() == "not_found",
                "GET %s -> 404 not_found" % path, r)
    r = gz.query(None, body=QUERY, path="/v1/nothing")
    t.check(r.status == 404 and r.error_code() == "not_found", "POST /v1/nothing -> 404 not_found", r)
    r = gz.get("/v1/queries", cert=gz.client("firm"))
    t.check(r.status == 405 and r.error_code() == "method_not_allowed",
            "GET /v1/queries -> 405 method_not_allowed", r)

    for what, body in (("not JSON", "this is not json"), ("truncated JSON", '{"dataset": "guangzhou/a'),
                       ("empty body", "")):
        r = gz.query(None, body=body)
        t.check(r.status == 400 and r.error_code() in ("invalid_json", "invalid_dataset", "bad_request"),
                "%s -> 400 (%s)" % (what, r.error_code()), r)
    r = gz.query(None, body="this is not json")
    t.check(r.error_code() == "invalid_json" and shape_ok(r), "not JSON -> code invalid_json", r)
    for what, body in (("no dataset", '{"op":"count"}'), ("dataset not a string", '{"dataset":5}'),
                       ("dataset without city", '{"dataset":"noslash"}')):
        r = gz.query(None, body=body)
        t.check(r.status == 400 and r.error_code() == "invalid_dataset",
                "%s -> 400 invalid_dataset" % what, r)
    r = gz.query(None, body="[1,2]")
    t.check(r.status == 400 and r.error_code() in ("invalid_json", "invalid_dataset"),
            "JSON array (not an object) -> 400 invalid_json/invalid_dataset", r)
    r = gz.query(None, body='{"dataset":"guangzhou/cerebral-infarction","q":1}')
    t.check(r.status == 400 and r.error_code() == "invalid_query" and
            '"q"' in ((r.json() or {}).get("error") or {}).get("message", ""),
            "unknown member in a query -> 400 invalid_query naming it", r)
    r = gz.query("atlantis/x")
    t.check(r.status == 404 and r.error_code() == "unknown_city", "dataset of an unknown city -> 404 unknown_city", r)
    r = gz.query(None, body='{"dataset":"atlantis/stroke-registry","op":"count"}')
    t.check(r.status == 502 and r.error_code() == "no_route" and shape_ok(r),
            "federation dataset of an unknown city -> 502 no_route", r)

    r = gz.query(None, body=QUERY)
    t.check(r.status == 200, "gateway still answers 200 after the errors", r)
    rid = r.headers.get("x-request-id")
    e = gz.log_for(rid)
    t.check(e and e[0].get("status") == 200 and e[0].get("method") == "POST", "access log has the final 200", e)
    statuses = sorted(set(x.get("status") for x in gz.access_log_entries()))
    t.check(all(s in statuses for s in (200, 400, 404, 405, 413, 502)),
            "access log records 200/400/404/405/413/502 (%s)" % statuses)


if __name__ == "__main__":
    harness.run(main)
