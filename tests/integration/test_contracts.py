#!/usr/bin/python3
"""Contract negotiation across cities (issue 3), with the shipped profiles: guangzhou -
shenzhen - hongkong, so a guangzhou firm's proposal to hongkong crosses shenzhen as transit.
- a guangzhou firm proposes in Chinese terms (科研 / 统计分析 / 伦理审查批准) for hongkong stroke
  data: 201 FINALIZED, held in both vocabularies, narrowed to hongkong's rules (k = 10, at most
  180 days, at most hongkong's query cap), signed by both gateways (provider and home logs);
- the firm reads it back (GET by id, list); another identity cannot;
- refusals list every term that cannot be agreed, with the right code: unknown terms
  (untranslatable), model training towards hongkong (operation_refused), and a hongkong firm's
  insurance actuarial purpose towards guangzhou (forbidden_purpose);
- malformed proposals are 400, and a proposal from a non-firm identity is 403;
- usage control on real federated queries (hongkong's embedded stroke-registry): a permitted
  operation passes, no contract / an operation outside it (agreement under 统计分析) / a dataset
  outside it / someone else's contract are 403 at the home, and the provider itself refuses a
  protobuf leg sent straight to it without a contract, or under an expired or revoked one; the
  budget holds under concurrency."""
import json
import os
import threading
import time
import uuid

import harness
from harness import curl

PROFILES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                                        "profiles"))
PB = "application/x-protobuf"
FIRM = "spiffe://guangzhou.gba/firm/demo"


def propose(gw, body, role="firm"):
    return gw.query(None, role=role, path="/v1/contracts", body=json.dumps(body, ensure_ascii=False))


def main(t):
    gws = harness.federation(t, ["guangzhou", "shenzhen", "hongkong"],
                             [("guangzhou", "shenzhen"), ("shenzhen", "hongkong")],
                             extra_yaml="profiles: %s" % PROFILES)
    gz, sz, hk = gws["guangzhou"], gws["shenzhen"], gws["hongkong"]
    for g in (hk, sz, gz):
        g.start()
    t.check(gz.wait_peers(10) and hk.wait_peers(10), "federation ready")

    ask = {"provider": "hongkong", "datasets": ["hongkong/stroke-registry"], "purpose": "科研",
           "operations": ["统计分析"], "legal_basis": "伦理审查批准", "valid_days": 365,
           "max_queries": 50}
    r = propose(gz, ask)
    c = r.json() or {}
    t.check(r.status == 201 and c.get("state") == "FINALIZED" and len(c.get("id", "")) == 64,
            "guangzhou firm, Chinese terms, hongkong data: 201 FINALIZED", r)
    eff = c.get("effective", {})
    t.check(eff.get("min_cell_size") == 10, "effective k = 10 (hongkong's, stricter than 5)", eff)
    days = (harness_ts(eff.get("valid_until")) - harness_ts(eff.get("valid_from"))) / 86400.0
    t.check(0 < days <= 180, "valid for at most 180 days (asked 365): %.1f" % days, eff)
    t.check(eff.get("max_queries") == 50, "max_queries 50 (under hongkong's cap)", eff)
    t.check(sorted(eff.get("operations", [])) == sorted(["count", "sum", "mean", "histogram",
                                                         "quantiles"]),
            "统计分析 -> the five canonical aggregate operations", eff)
    t.check(c.get("home_terms", {}).get("purpose") == "科研" and
            c.get("provider_terms", {}).get("purpose") == "scientific research" and
            sorted(c.get("provider_terms", {}).get("operations", [])) ==
            ["counts", "distribution", "summary statistics"],
            "terms side by side: 科研/统计分析 and scientific research/counts+summary+distribution",
            c)
    cid = c.get("id", "")
    with open(hk.cur_err_path) as f:
        hk_log = f.read()
    with open(gz.cur_err_path) as f:
        gz_log = f.read()
    t.check('msg="contract agreed" id=%s' % cid in hk_log and
            'msg="contract finalized" id=%s' % cid in hk_log,
            "hongkong signed (AGREED) and stored the countersigned (FINALIZED) contract",
            hk_log[-1500:])
    t.check('msg="contract finalized" id=%s' % cid in gz_log, "guangzhou countersigned it",
            gz_log[-800:])
    e = [x for x in sz.access_log_entries() if x.get("route") == "/fed/v1/contracts"]
    t.check(len(e) >= 2 and all(x.get("status") in (201, 204) for x in e),
            "the proposal and the finalization crossed shenzhen as transit", e)

    r = gz.get("/v1/contracts/" + cid, cert=gz.client("firm"))
    t.check(r.status == 200 and (r.json() or {}).get("id") == cid, "GET by id as the firm", r)
    r = gz.get("/v1/contracts", cert=gz.client("firm"))
    t.check(r.status == 200 and cid in [x.get("id") for x in (r.json() or {}).get("contracts", [])],
            "GET /v1/contracts lists it", r)
    r = gz.get("/v1/contracts/" + cid, cert=gz.client("regulator"))
    t.check(r.status == 403, "a regulator does not read contracts here (403)", r)
    r = propose(gz, ask)
    t.check(r.status == 200 and (r.json() or {}).get("id") == cid,
            "repeating the proposal is idempotent: 200 with the same contract", r)
    agreed = [x for x in hk.access_log_entries() if x.get("route") == "/fed/v1/contracts"
              and x.get("status") == 201]
    t.check(len(agreed) == 1, "and hongkong negotiated only once (%d agreements)" % len(agreed))

    # refusals, each listing the terms
    r = propose(gz, dict(ask, purpose="炼金术", operations=["统计分析", "占卜"]))
    err = (r.json() or {}).get("error", {})
    terms = sorted(x.get("term") for x in err.get("refusals", []))
    t.check(r.status == 422 and err.get("code") == "untranslatable" and terms == ["占卜", "炼金术"],
            "unknown purpose and operation: 422 untranslatable listing both", r)
    r = propose(gz, dict(ask, operations=["统计分析", "模型训练"], purpose="算法模型研发"))
    err = (r.json() or {}).get("error", {})
    t.check(r.status == 422 and any(x.get("code") == "operation_refused" and
                                    x.get("profile") == "hongkong"
                                    for x in err.get("refusals", [])),
            "model training towards hongkong: 422 operation_refused by hongkong's profile", r)
    hk_ask = {"provider": "guangzhou", "datasets": ["guangzhou/cerebral-infarction"],
              "purpose": "insurance actuarial research", "operations": ["counts"],
              "legal_basis": "prescribed consent", "valid_days": 30}
    r = propose(hk, hk_ask)
    err = (r.json() or {}).get("error", {})
    t.check(r.status == 422 and err.get("code") == "forbidden_purpose" and
            any(x.get("profile") == "guangzhou" for x in err.get("refusals", [])),
            "hongkong insurance actuarial towards guangzhou: 422 forbidden_purpose", r)

    r = gz.query(None, path="/v1/contracts", body="{not json")
    t.check(r.status == 400, "malformed JSON proposal: 400", r)
    r = propose(gz, {"provider": "hongkong"})
    t.check(r.status == 400 and (r.json() or {}).get("error", {}).get("code") == "bad_request",
            "proposal missing fields: 400 bad_request", r)
    r = propose(gz, ask, role="regulator")
    t.check(r.status == 403, "a regulator cannot propose: 403", r)

    # ---- usage control on queries
    def q(body, role="firm"):
        return gz.query(None, role=role, body=json.dumps(body))
    r = q({"dataset": "hongkong/stroke-registry", "operation": "mean", "field": "nihss",
           "contract": cid})
    j = r.json() or {}
    hk_status = (j.get("cities") or {}).get("hongkong", {})
    t.check(r.status == 200 and hk_status.get("status") == "ok" and
            hk_status.get("route") == "guangzhou,shenzhen,hongkong" and
            hk_status.get("receipt", {}).get("city") == "hongkong"
            and (j.get("result") or {}).get("n") == hk.space_rows
            and isinstance((j.get("result") or {}).get("mean"), float),
            "query under the contract, permitted operation (mean of nihss): 200 from hongkong", r)
    r = q({"dataset": "hongkong/stroke-registry", "operation": "mean", "field": "nihss"})
    t.check(r.status == 403 and r.error_code() == "contract_required",
            "cross-border query without a contract: 403 contract_required", r)
    r = q({"dataset": "hongkong/stroke-registry", "operation": "agreement",
           "fields": ["nihss", "mrs_90d"], "contract": cid})
    t.check(r.status == 403 and r.error_code() == "operation_not_permitted",
            "operation the contract does not permit (agreement under 统计分析): 403 "
            "operation_not_permitted", r)
    r = q({"dataset": "hongkong/liver-cancer", "operation": "count", "contract": cid})
    t.check(r.status == 403 and r.error_code() == "contract_scope",
            "dataset outside the contract: 403 contract_scope", r)
    r = q({"dataset": "hongkong/stroke-registry", "operation": "count", "contract": cid},
          role="regulator")
    t.check(r.status == 403 and r.error_code() == "forbidden",
            "a regulator cannot query, even under someone's contract: 403 forbidden", r)
    r = q({"dataset": "guangzhou/cerebral-infarction", "operation": "count"})
    t.check(r.status == 200 and (r.json() or {}).get("result", {}).get("count") == gz.space_rows,
            "own-city data needs no cross-border contract", r)
    # the provider is authoritative: a peer cannot query for a firm without its contract
    scrt, skey = sz.gateway_cert()

    def provider_leg(contract=None, query_id=None):
        """hongkong as the provider sees a leg: from its peer shenzhen, for the firm (a fresh
        query id unless |query_id|: the same one is a home gateway's retry)."""
        h = ["x-baygate-hops: guangzhou,shenzhen", "x-baygate-dest: hongkong",
             "x-baygate-requester: " + FIRM, "content-type: " + PB]
        if contract:
            h.append("x-baygate-contract: " + contract)
        return curl(t, hk.url("/fed/v1/query"), cacert=hk.bundle, cert=scrt, key=skey,
                    data=harness.leg_body("stroke-registry", query_id=query_id), headers=h)
    r = provider_leg()
    t.check(r.status == 403 and r.error_code() == "contract_required",
            "provider: federated query without x-baygate-contract: 403 contract_required", r)

    # ---- budget: 64 concurrent queries against max_queries 50 -> exactly 50 pass
    r = propose(gz, dict(ask, max_queries=50, valid_days=30))  # a different contract
    bid = (r.json() or {}).get("id", "")
    t.check(r.status == 201, "second contract with a budget of 50", r)
    results = []
    lock = threading.Lock()

    places = []

    def one():
        rr = q({"dataset": "hongkong/stroke-registry", "operation": "count", "contract": bid})
        with lock:
            results.append((rr.status, rr.error_code()))
            if rr.status == 200:
                places.append((((rr.json() or {}).get("cities") or {}).get("hongkong") or {})
                              .get("queries_used"))
    ths = [threading.Thread(target=one) for _ in range(64)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(60)
    ok = sum(1 for st, _ in results if st == 200)
    spent = sum(1 for st, code in results if st == 429 and code == "budget_exhausted")
    t.check(ok == 50 and spent == 14,
            "64 concurrent queries, budget 50: %d x 200, %d x 429 budget_exhausted" % (ok, spent),
            sorted(results))
    t.check(sorted(places) == list(range(1, 51)),
            "each answer tells the firm its place in the budget (cities.hongkong.queries_used "
            "1..50)", sorted(p for p in places if p is not None))
    # the count is the provider's ledger's: each of the 50 receipts carries its place in the
    # budget (queries_used 1..50, written with the count), every refusal says budget_exhausted
    r = hk.get("/v1/receipts?contract=%s&limit=1000" % bid, cert=hk.client("regulator"))
    recs = (r.json() or {}).get("receipts", []) if r.status == 200 else []
    used = sorted(x.get("queries_used", 0) for x in recs if x.get("kind") == "query")
    refused = [x for x in recs if x.get("kind") == "refusal"]
    t.check(used == list(range(1, 51)) and len(refused) == 14 and
            all(x.get("error_code") == -207 for x in refused),  # BG_ERR_BUDGET_EXHAUSTED
            "hongkong's ledger: 50 query receipts numbered 1..50 in the budget, 14 refusals",
            (used, [(x.get("kind"), x.get("error_code")) for x in refused]))

    # ---- expiry: a contract asked to end in a few seconds is refused by both sides after
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    short = dict(ask, valid_until=end, max_queries=10)
    del short["valid_days"]
    r = propose(gz, short)
    sid = (r.json() or {}).get("id", "")
    t.check(r.status == 201 and (r.json() or {}).get("effective", {}).get("valid_until") == end,
            "a contract ending at %s (valid_until instead of valid_days): 201" % end, r)
    r = q({"dataset": "hongkong/stroke-registry", "operation": "count", "contract": sid})
    t.check(r.status == 200, "before its end: 200", r)
    retry_sid = uuid.uuid4().hex
    r = provider_leg(sid, query_id=retry_sid)
    t.check(r.status == 200 and r.headers.get("content-type") == PB,
            "before its end the provider answers the same leg sent straight to it: 200", r)
    while time.time() < harness_ts(end) + 1.2:
        time.sleep(0.2)
    r = q({"dataset": "hongkong/stroke-registry", "operation": "count", "contract": sid})
    t.check(r.status == 403 and r.error_code() == "contract_expired",
            "after its end the home refuses: 403 contract_expired", r)
    r = provider_leg(sid)
    t.check(r.status == 403 and r.error_code() == "contract_expired",
            "and so does the provider: 403 contract_expired", r)
    r = provider_leg(sid, query_id=retry_sid)
    t.check(r.status == 403 and r.error_code() == "contract_expired",
            "   also for a leg it answered before its end, retried with the same query id", r)
    r = propose(gz, dict(short, valid_until="2001-01-01T00:00:00Z"))
    t.check(r.status == 400, "an end time in the past: 400", r)

    # ---- revocation: both sides refuse at once
    retry_cid = uuid.uuid4().hex
    r = provider_leg(cid, query_id=retry_cid)
    t.check(r.status == 200 and r.headers.get("content-type") == PB,
            "before revocation the provider answers a leg under the contract: 200", r)
    r = curl(t, gz.url("/v1/contracts/" + cid), cacert=gz.bundle, cert=gz.client("firm")[0],
             key=gz.client("firm")[1], method="DELETE")
    t.check(r.status == 200 and (r.json() or {}).get("state") == "REVOKED",
            "DELETE /v1/contracts/{id}: 200 REVOKED", r)
    t0 = time.time()
    r = q({"dataset": "hongkong/stroke-registry", "operation": "count", "contract": cid})
    t.check(r.status == 403 and r.error_code() == "contract_revoked",
            "home refuses the revoked contract: 403 contract_revoked", r)
    r = provider_leg(cid)
    t.check(r.status == 403 and r.error_code() == "contract_revoked" and time.time() - t0 < 1.0,
            "provider refuses it too, within a second: 403 contract_revoked", r)
    r = provider_leg(cid, query_id=retry_cid)
    t.check(r.status == 403 and r.error_code() == "contract_revoked",
            "   also for a leg it answered before, retried with the same query id", r)
    r = curl(t, gz.url("/v1/contracts/" + cid), cacert=gz.bundle, cert=gz.client("firm")[0],
             key=gz.client("firm")[1], method="DELETE")
    t.check(r.status == 200 and (r.json() or {}).get("state") == "REVOKED",
            "revoking again is idempotent: 200 REVOKED", r)
    r = propose(gz, ask)
    t.check(r.status == 201 and (r.json() or {}).get("id") not in (None, cid),
            "after revocation the same proposal negotiates a new contract (201, new id)", r)


def harness_ts(iso):
    import calendar
    import time
    if not iso:
        return 0
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


if __name__ == "__main__":
    harness.run(main)
