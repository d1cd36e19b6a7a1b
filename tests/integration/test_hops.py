#!/usr/bin/python3
"""Loops and the hop bound: /fed/v1/query from a configured peer (its gateway cert as the curl
client cert) with x-baygate-hops containing the receiving gateway's city -> 508 loop_detected; a
list already limits.max_hops long -> 508 too_many_hops; one shorter passes.
What the peer sends is what a home gateway sends: x-baygate-dest (required on /fed/v1/query) and
a protobuf leg (space/space.proto) counting a real dataset of the destination's embedded data
space (guangzhou/cerebral-infarction, macau/neonatal-bilirubin)."""
import json

import harness
from harness import curl

MAX_HOPS = 4
PB = "application/x-protobuf"
NAME = {"guangzhou": "cerebral-infarction", "macau": "neonatal-bilirubin"}


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen", "macau"],
                             [("guangzhou", "shenzhen"), ("guangzhou", "macau")],
                             limits={"max_hops": MAX_HOPS})
    for c in ("guangzhou", "shenzhen", "macau"):
        gws[c].start()
    gz, sz = gws["guangzhou"], gws["shenzhen"]
    t.check(gz.wait_peers(10), "guangzhou ready (shenzhen and macau connected)", gz.readyz())
    crt, key = sz.gateway_cert()

    def fed(hops, dest="guangzhou", rid=None):
        h = ["x-baygate-hops: " + hops, "x-baygate-dest: " + dest, "content-type: " + PB]
        if rid:
            h.append("x-request-id: " + rid)
        return curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, cert=crt, key=key,
                    data=harness.leg_body(NAME[dest]), headers=h)

    r = fed("shenzhen")
    t.check(r.status == 200 and r.headers.get("content-type") == PB and
            r.headers.get("x-baygate-route") == "shenzhen,guangzhou",
            "control: peer shenzhen, hops 'shenzhen' -> 200 (a LegAnswer, route "
            "shenzhen,guangzhou)", r)

    r = fed("shenzhen,guangzhou", rid="loop-1")
    t.check(r.status == 508 and r.error_code() == "loop_detected",
            "hops 'shenzhen,guangzhou' at guangzhou -> 508 loop_detected", r)
    r = fed("guangzhou,shenzhen")
    t.check(r.status == 508 and r.error_code() == "loop_detected",
            "hops 'guangzhou,shenzhen' at guangzhou -> 508 loop_detected", r)
    r = fed("macau,guangzhou,shenzhen", dest="macau")
    t.check(r.status == 508 and r.error_code() == "loop_detected",
            "loop detected also for a leg that would be forwarded (dest macau)", r)
    e = gz.log_for("loop-1")
    t.check(e and e[0].get("status") == 508, "access log records the 508 for loop-1", e)

    long_list = ",".join(["zhuhai", "foshan", "dongguan", "shenzhen", "huizhou", "jiangmen",
                          "zhongshan", "zhaoqing"][-MAX_HOPS:])
    r = fed(long_list)
    t.check(r.status == 508 and r.error_code() == "too_many_hops",
            "hop list of %d (== max_hops) -> 508 too_many_hops" % MAX_HOPS, r)
    r = fed(long_list + ",a,b,c")
    t.check(r.status == 508 and r.error_code() == "too_many_hops",
            "hop list of %d (> max_hops) -> 508 too_many_hops" % (MAX_HOPS + 3), r)
    shorter = ",".join(long_list.split(",")[1:])
    r = fed(shorter)
    t.check(r.status == 200, "hop list of %d (< max_hops) -> 200" % (MAX_HOPS - 1), r)
    r = fed(",".join(["zhuhai", "foshan"]), dest="macau")
    t.check(r.status == 200 and r.headers.get("x-baygate-route") == "zhuhai,foshan,guangzhou,macau",
            "control: hop list of 2 forwarded to macau (+guangzhou = 3) -> 200", r)
    # forwarded on, guangzhou appends itself: macau then sees a list max_hops long
    r = fed(shorter, dest="macau")
    t.check(r.status == 508 and r.error_code() == "too_many_hops",
            "hop list of %d at guangzhou, forwarded to macau (+guangzhou = %d) -> 508 too_many_hops"
            % (MAX_HOPS - 1, MAX_HOPS), r)

    # x-baygate-dest: set by the home gateway; transit hops route on it without the body
    def fed_dest(dest, body, ctype=PB):
        return curl(t, gz.url("/fed/v1/query"), cacert=gz.bundle, cert=crt, key=key, data=body,
                    headers=["x-baygate-hops: shenzhen", "x-baygate-dest: " + dest,
                             "content-type: " + ctype])
    # the leg is protobuf, not JSON: guangzhou (transit) routes on the header alone
    r = fed_dest("macau", harness.leg_body(NAME["macau"]))
    t.check(r.status == 200 and r.headers.get("x-baygate-route") == "shenzhen,guangzhou,macau"
            and r.headers.get("content-type") == PB,
            "x-baygate-dest macau with an unparsed (protobuf) body: forwarded to macau (route %s)"
            % r.headers.get("x-baygate-route"), r)
    r = fed_dest("Macau!", harness.leg_body(NAME["macau"]))
    t.check(r.status == 400 and r.error_code() == "bad_request",
            "malformed x-baygate-dest -> 400 bad_request", r)
    r = fed_dest("atlantis", harness.leg_body(NAME["macau"]))
    t.check(r.status == 404 and r.error_code() == "unknown_city",
            "x-baygate-dest of an unknown city -> 404 unknown_city", r)
    # a client cannot steer with it: /v1/queries ignores a client's x-baygate-dest
    q = json.dumps({"dataset": "guangzhou/" + NAME["guangzhou"], "op": "count"})
    r = curl(t, gz.url("/v1/queries"), cacert=gz.bundle, cert=gz.client("firm")[0],
             key=gz.client("firm")[1], data=q, headers=["x-baygate-dest: macau"])
    t.check(r.status == 200 and r.headers.get("x-baygate-route") == "guangzhou" and
            set((r.json() or {}).get("cities", {})) == {"guangzhou"},
            "client-supplied x-baygate-dest is ignored on /v1/queries", r)

    # the gateway still serves normally
    r = gz.query(None, body=q)
    t.check(r.status == 200, "guangzhou still serves after 508s", r)


if __name__ == "__main__":
    harness.run(main)
