/* gateway/contracts.c: contract negotiation over the federation (issue 3). The home gateway
 * takes a firm's proposal in its city's vocabulary (POST /v1/contracts), translates it to the
 * canonical interlingua and sends it, as a protobuf Contract in state REQUESTED, towards the
 * provider city (POST /fed/v1/contracts, routed hop by hop like a query). The provider
 * translates it into its vocabulary, narrows it by both cities' rules, signs it (AGREED),
 * stores it and answers it; the home checks that nothing was widened, countersigns
 * (FINALIZED), stores it, and hands the provider the countersigned copy
 * (POST /fed/v1/contracts/finalize) before answering the firm. Vocabularies and narrowing live
 * in trust/translate.c, encoding and signatures in trust/contract.c, storage in trust/store.c;
 * this file is only the protocol between them. */
#include "gateway/gw_int.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "trust/contract.h"
#include "trust/store.h"
#include "trust/translate.h"

#define PROTOBUF_TYPE "application/x-protobuf"
#define DAY 86400

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* "YYYY-MM-DDTHH:MM:SSZ" -> unix seconds; 0 or -1. */
static int parse_utc(const char *text, int64_t *out)
{
    struct tm tm;
    int y, mo, d, h, mi, sec;
    char z = 0, extra = 0;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &y, &mo, &d, &h, &mi, &sec, &z, &extra) != 7 ||
        z != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
        y < 1970 || h < 0 || mi < 0 || sec < 0) {
        return -1;
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = (int64_t)timegm(&tm);
    return 0;
}

const conf_profile *gw_profile_of(const gw_server *srv, const char *city)
{
    for (size_t i = 0; i < srv->nprofiles; i++) {
        if (strcmp(srv->profiles[i]->city, city) == 0) {
            return srv->profiles[i];
        }
    }
    return NULL;
}

static void iso8601(int64_t t, char *out, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *str_array(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(a, json_string(v[i]));
    }
    return a;
}

static json_t *terms_json(const trust_contract_terms *t)
{
    json_t *j = json_pack("{s:s?,s:s?,s:o}", "city", t->city, "purpose", t->purpose,
                          "operations", str_array(t->operations, t->noperations));
    if (j != NULL && t->legal_basis != NULL && t->legal_basis[0]) {
        json_object_set_new(j, "legal_basis", json_string(t->legal_basis));
    }
    return j;
}

/* The contract as a firm or an operator reads it: both wordings side by side, plus what is
 * enforced (canonical names, effective constraints). */
static json_t *contract_json(gw_server *srv, const trust_contract *c,
                             const trust_store_meta *m)
{
    const trust_contract_body *b = trust_contract_get_body(c);
    char from[32], until[32];
    iso8601(b->valid_from, from, sizeof(from));
    iso8601(b->valid_until, until, sizeof(until));
    json_t *eff = json_pack("{s:i,s:s,s:s,s:o,s:s}", "min_cell_size", (json_int_t)b->min_cell_size,
                            "valid_from", from, "valid_until", until, "operations",
                            str_array(b->operations, b->noperations), "purpose", b->purpose);
    if (eff == NULL) {
        return NULL;
    }
    if (b->max_queries != 0) {
        json_object_set_new(eff, "max_queries", json_integer((json_int_t)b->max_queries));
    }
    if (b->legal_basis != NULL && b->legal_basis[0]) {
        json_object_set_new(eff, "legal_basis", json_string(b->legal_basis));
    }
    if (b->has_epsilon) {
        json_object_set_new(eff, "epsilon", json_real(b->epsilon));
    }
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "id", trust_contract_get_id(c),
                          "state", trust_contract_state_name(trust_contract_get_state(c)),
                          "requester", b->requester, "home", b->home_city, "provider",
                          b->provider_city, "datasets", str_array(b->datasets, b->ndatasets),
                          "home_terms", terms_json(&b->home_terms), "provider_terms",
                          terms_json(&b->provider_terms), "effective", eff);
    if (j != NULL && m != NULL) {
        /* what the store counted, plus the ledger's count (where a ledger counts queries) */
        uint32_t in_ledger = 0;
        if (srv->ledger != NULL &&
            trust_ledger_budget_used(srv->ledger, trust_contract_get_id(c), &in_ledger) != 0) {
            in_ledger = 0;
        }
        json_object_set_new(j, "queries_used", json_integer((json_int_t)m->used + in_ledger));
    }
    return j;
}

static void contract_receipt(gw_stream *s, uint32_t kind, const char *id,
                             const trust_contract_body *b, const char *requester,
                             const char *home, const char *provider);

static void respond_refusals(gw_stream *s, const trust_refusals *r)
{
    json_t *list = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const trust_refusal *f = &r->items[i];
        json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:s,s:s}", "code",
                                              trust_refusal_code_name(f->code), "field", f->field,
                                              "term", f->term, "profile", f->profile, "reason",
                                              f->reason));
    }
    const char *code = r->n > 0 ? trust_refusal_code_name(r->items[0].code) : "invalid";
    char msg[256];
    snprintf(msg, sizeof(msg), "%zu term(s) cannot be agreed; see refusals", r->n);
    bg_strlcpy(s->err_code, code, sizeof(s->err_code));
    gw_stream_respond_json(s, 422, json_pack("{s:{s:s,s:s,s:o}}", "error", "code", code,
                                             "message", msg, "refusals", list));
}

static void respond_contract(gw_stream *s, int status, const trust_contract *c,
                             const trust_store_meta *m)
{
    json_t *j = contract_json(s->conn->w->srv, c, m);
    gw_stream_respond_json(s, j != NULL ? status : 500, j);
}

static void contracts_revoke(gw_stream *s, const char *id);
static void fed_revoke(gw_stream *s);

/* ---- the home side ------------------------------------------------------------------------ */

/* A JSON array of strings into a borrowed const char * array (valid while |root| lives). */
static int json_strings(json_t *a, const char **out, size_t cap, size_t *n)
{
    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > cap) {
        return -1;
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        out[i] = json_string_value(json_array_get(a, i));
        if (out[i] == NULL) {
            return -1;
        }
    }
    *n = json_array_size(a);
    return 0;
}

static const conf_peer *next_hop(gw_stream *s, const char *city)
{
    const conf_peer *next = NULL;
    if ((next = gw_route_pick(s->conn->w, city, NULL)) == NULL) {
        return NULL;
    }
    return next;
}

static gw_client *client_for(gw_worker *w, const conf_peer *p)
{
    return w->peers[(size_t)(p - w->gen->cfg->peers)];
}

static bool in_list(char *const *v, size_t n, const char *x)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], x) == 0) {
            return true;
        }
    }
    return false;
}

/* The provider's answer must be the proposal, narrowed: never an operation, dataset, day,
 * smaller cell size or extra query the home did not agree to. Returns NULL or what is wrong. */
static const char *check_narrowed(const trust_contract_body *got, const trust_contract_body *asked)
{
    if (strcmp(got->requester, asked->requester) != 0 ||
        strcmp(got->home_city, asked->home_city) != 0 ||
        strcmp(got->provider_city, asked->provider_city) != 0) {
        return "parties changed";
    }
    if (strcmp(got->purpose, asked->purpose) != 0) {
        return "purpose changed";
    }
    if ((got->legal_basis != NULL && got->legal_basis[0]) &&
        (asked->legal_basis == NULL || strcmp(got->legal_basis, asked->legal_basis) != 0)) {
        return "legal basis changed";
    }
    for (size_t i = 0; i < got->noperations; i++) {
        if (!in_list(asked->operations, asked->noperations, got->operations[i])) {
            return "an operation was added";
        }
    }
    for (size_t i = 0; i < got->ndatasets; i++) {
        if (!in_list(asked->datasets, asked->ndatasets, got->datasets[i])) {
            return "a dataset was added";
        }
    }
    if (got->noperations == 0 || got->ndatasets == 0) {
        return "nothing left to agree";
    }
    /* the end may not pass the asked end; the start may precede the home's clock only by
     * a little skew (the provider starts the contract when it agrees) */
    if (got->valid_until > asked->valid_until || got->valid_from < asked->valid_from - 300) {
        return "validity widened";
    }
    if (got->min_cell_size < asked->min_cell_size) {
        return "minimum cell size lowered";
    }
    if (asked->max_queries != 0 && (got->max_queries == 0 || got->max_queries > asked->max_queries)) {
        return "query budget raised";
    }
    if (asked->has_epsilon && (!got->has_epsilon || got->epsilon > asked->epsilon)) {
        return "privacy budget raised";
    }
    if (strcmp(got->home_terms.purpose, asked->home_terms.purpose) != 0) {
        return "home terms changed";
    }
    return NULL;
}

/* What a home gateway keeps between the two calls of one negotiation; owned by the stream
 * through s->ctx (freed with it). */
typedef struct nego {
    trust_contract_body asked;
    trust_contract *agreed;
    char hops[1100];
    char key[TRUST_CONTRACT_ID_LEN + 1]; /* the proposal's digest, for repeats */
} nego;

static void nego_free(void *p)
{
    nego *n = p;
    if (n == NULL) {
        return;
    }
    trust_contract_body_dispose(&n->asked);
    trust_contract_free(n->agreed);
    free(n);
}

static void on_finalized(gw_stream *s, int status, const char *ctype_or_code, const char *msg,
                         const uint8_t *body, size_t len)
{
    nego *n = s->ctx;
    gw_server *srv = s->conn->w->srv;
    (void)body;
    (void)len;
    const char *id = trust_contract_get_id(n->agreed);
    if (status != 204 && status != 200) {
        /* the provider did not take the countersignature: the contract is not in force */
        trust_store_update(srv->store, id, TRUST_STATE_TERMINATED, NULL, 0);
        gw_stream_error(s, 502, status == 0 ? ctype_or_code : "bad_gateway",
                        "provider did not confirm the finalized contract: %s",
                        status == 0 ? msg : "unexpected status");
        return;
    }
    trust_store_meta m;
    if (trust_store_get(srv->store, id, &m, NULL) != 0) {
        memset(&m, 0, sizeof(m));
    }
    if (n->key[0]) {
        trust_store_proposal_put(srv->store, n->key, id); /* best effort: repeats renegotiate */
    }
    bg_log(BG_LOG_INFO, "msg=\"contract finalized\" id=%s requester=\"%s\" provider=%s", id,
           trust_contract_get_body(n->agreed)->requester,
           trust_contract_get_body(n->agreed)->provider_city);
    {
        const trust_contract_body *ab = trust_contract_get_body(n->agreed);
        contract_receipt(s, TRUST_RECEIPT_CONTRACT_AGREED, id, ab, ab->requester, ab->home_city,
                         ab->provider_city);
    }
    respond_contract(s, 201, n->agreed, &m);
}

static void on_agreed(gw_stream *s, int status, const char *ctype_or_code, const char *msg,
                      const uint8_t *body, size_t len)
{
    nego *n = s->ctx;
    gw_worker *w = s->conn->w;
    gw_server *srv = w->srv;
    bg_errbuf eb = {{0}};
    if (status == 0) {
        gw_stream_error(s, 502, ctype_or_code, "%s", msg);
        return;
    }
    if (status == 422 || status == 400 || status == 403 || status == 404) {
        /* the provider's refusal, as it wrote it: receipted here too, then relayed */
        contract_receipt(s, TRUST_RECEIPT_CONTRACT_REFUSED, NULL, &n->asked, n->asked.requester,
                         n->asked.home_city, n->asked.provider_city);
        gw_stream_respond(s, status, "application/json", body, len);
        return;
    }
    if (status != 201 || ctype_or_code == NULL || strcmp(ctype_or_code, PROTOBUF_TYPE) != 0) {
        gw_stream_error(s, 502, "bad_gateway", "provider answered %d", status);
        return;
    }
    trust_contract *c = NULL;
    if (trust_contract_decode(&c, body, len, &eb) != 0 ||
        trust_contract_get_state(c) != TRUST_CONTRACT_AGREED ||
        trust_contract_verify(c, srv->tls, now_s(), &eb) != 0) {
        bg_log(BG_LOG_WARN, "msg=\"provider contract rejected\" detail=\"%s\"",
               eb.msg[0] ? eb.msg : "not AGREED");
        trust_contract_free(c);
        gw_stream_error(s, 502, "contract_invalid", "provider's contract does not verify: %s",
                        eb.msg[0] ? eb.msg : "state is not AGREED");
        return;
    }
    const char *why = check_narrowed(trust_contract_get_body(c), &n->asked);
    if (why != NULL) {
        bg_log(BG_LOG_WARN, "msg=\"provider widened a contract\" why=\"%s\"", why);
        trust_contract_free(c);
        gw_stream_error(s, 502, "contract_widened", "provider's contract is not a narrowing of "
                                                    "the proposal: %s", why);
        return;
    }
    bg_buf enc;
    bg_buf_init(&enc);
    if (trust_contract_sign(c, TRUST_CONTRACT_HOME, srv->tls, &eb) != 0 ||
        trust_contract_encode(c, &enc, &eb) != 0) {
        trust_contract_free(c);
        bg_buf_dispose(&enc);
        gw_stream_error(s, 500, "internal", "cannot countersign: %s", eb.msg);
        return;
    }
    const trust_contract_body *b = trust_contract_get_body(c);
    trust_store_meta m;
    memset(&m, 0, sizeof(m));
    m.state = TRUST_STATE_FINALIZED;
    m.valid_from = b->valid_from;
    m.valid_until = b->valid_until;
    m.max_queries = b->max_queries;
    if (b->has_epsilon) {
        trust_store_eps_micro(b->epsilon, &m.eps_total_micro);
    }
    bg_strlcpy(m.requester, b->requester, sizeof(m.requester));
    int rv = trust_store_put(srv->store, trust_contract_get_id(c), &m, enc.data, enc.len);
    if (rv != 0 && rv != BG_ERR_EXISTS) {
        trust_contract_free(c);
        bg_buf_dispose(&enc);
        gw_stream_error(s, 503, "store_unavailable", "cannot store the contract: %s",
                        bg_strerror(rv));
        return;
    }
    n->agreed = c;
    const conf_peer *next = next_hop(s, b->provider_city);
    if (next == NULL) {
        bg_buf_dispose(&enc);
        gw_stream_error(s, 404, "unknown_city", "no route to %s", b->provider_city);
        return;
    }
    gw_client_call(client_for(w, next), s, "/fed/v1/contracts/finalize", n->hops, enc.data,
                   enc.len, PROTOBUF_TYPE, on_finalized);
    bg_buf_dispose(&enc);
}

static int dup_list(char ***out, size_t *nout, char *const *in, size_t n)
{
    *out = calloc(n ? n : 1, sizeof(char *));
    if (*out == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (((*out)[i] = strdup(in[i])) == NULL) {
            return BG_ERR_NOMEM;
        }
        *nout = i + 1;
    }
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* The REQUESTED body the home sends: canonical names, the firm's wording, the home's
 * narrowed constraints; the provider completes it. */
static int body_from_canonical(trust_contract_body *b, const trust_canonical *k,
                               const conf_profile *home, int64_t now)
{
    trust_contract_body_init(b);
    if (k->npurposes == 0) {
        return BG_ERR_INVAL;
    }
    if ((b->requester = strdup(k->requester)) == NULL ||
        (b->home_city = strdup(k->home_city)) == NULL ||
        (b->provider_city = strdup(k->provider_city)) == NULL ||
        dup_list(&b->datasets, &b->ndatasets, k->datasets, k->ndatasets) != 0 ||
        (b->purpose = strdup(k->purposes[0])) == NULL ||
        dup_list(&b->operations, &b->noperations, k->operations, k->noperations) != 0 ||
        (k->legal_basis != NULL && (b->legal_basis = strdup(k->legal_basis)) == NULL) ||
        (b->home_terms.city = strdup(k->home_city)) == NULL ||
        (b->home_terms.purpose = dup_or_null(k->home_terms.purpose)) == NULL ||
        dup_list(&b->home_terms.operations, &b->home_terms.noperations,
                 k->home_terms.operations, k->home_terms.noperations) != 0 ||
        (k->home_terms.legal_basis != NULL &&
         (b->home_terms.legal_basis = strdup(k->home_terms.legal_basis)) == NULL)) {
        return BG_ERR_NOMEM;
    }
    b->valid_from = now;
    b->valid_until = now + (int64_t)k->valid_days * DAY;
    b->min_cell_size = home->min_cell_size;
    b->max_queries = k->max_queries;
    b->has_epsilon = k->epsilon > 0;
    b->epsilon = k->epsilon;
    b->created_at = now;
    return 0;
}

/* A proposal's key: the id of its body with the times taken out, so the same terms from the
 * same firm give the same key on any day. */
static int proposal_key(const trust_contract_body *asked, char *key)
{
    trust_contract_body b;
    trust_contract_body_init(&b);
    if (trust_contract_body_copy(&b, asked) != 0) {
        return BG_ERR_NOMEM;
    }
    b.valid_until -= b.valid_from;
    b.valid_from = 0;
    b.created_at = 0;
    free(b.nonce);
    b.nonce = NULL;
    int rv = trust_contract_body_id(&b, key, NULL);
    trust_contract_body_dispose(&b);
    return rv;
}

/* Repeating a proposal is idempotent: while the contract it produced is in force, the same
 * proposal answers that contract (200) instead of negotiating a second one. */
static bool answer_repeat(gw_stream *s, nego *n)
{
    gw_server *srv = s->conn->w->srv;
    char id[TRUST_CONTRACT_ID_LEN + 1];
    trust_store_meta m;
    bg_buf b;
    if (proposal_key(&n->asked, n->key) != 0) {
        n->key[0] = 0;
        return false;
    }
    if (trust_store_proposal_get(srv->store, n->key, id) != 0) {
        return false;
    }
    bg_buf_init(&b);
    trust_contract *c = NULL;
    int64_t now = now_s();
    bool ok = trust_store_get(srv->store, id, &m, &b) == 0 && m.state == TRUST_STATE_FINALIZED &&
              now >= m.valid_from && now < m.valid_until &&
              strcmp(m.requester, n->asked.requester) == 0 &&
              trust_contract_decode(&c, b.data, b.len, NULL) == 0;
    bg_buf_dispose(&b);
    if (ok) {
        respond_contract(s, 200, c, &m);
    }
    trust_contract_free(c);
    return ok;
}

static void contracts_propose(gw_stream *s)
{
    gw_worker *w = s->conn->w;
    gw_server *srv = w->srv;
    const conf_profile *home = gw_profile_of(srv, srv->cfg->city);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)s->body.data, s->body.len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        gw_stream_error(s, 400, "invalid_json", "request body is not a JSON object");
        return;
    }
    const char *ops[TRUST_MAX_OPERATIONS], *ds[TRUST_MAX_DATASETS];
    trust_proposal p;
    memset(&p, 0, sizeof(p));
    p.requester = s->conn->id.spiffe_id;
    p.home_city = srv->cfg->city;
    p.provider_city = json_string_value(json_object_get(root, "provider"));
    p.purpose = json_string_value(json_object_get(root, "purpose"));
    p.legal_basis = json_string_value(json_object_get(root, "legal_basis"));
    json_t *vd = json_object_get(root, "valid_days"), *mq = json_object_get(root, "max_queries");
    json_t *ep = json_object_get(root, "epsilon");
    /* an end time instead of a number of days: "valid_until": "YYYY-MM-DDTHH:MM:SSZ" */
    int64_t now = now_s(), until = 0;
    const char *vu = json_string_value(json_object_get(root, "valid_until"));
    if (vd == NULL && vu != NULL) {
        if (parse_utc(vu, &until) != 0 || until <= now || until - now > (int64_t)36500 * DAY) {
            json_decref(root);
            gw_stream_error(s, 400, "bad_request", "valid_until must be a future UTC time "
                                                   "YYYY-MM-DDTHH:MM:SSZ within 100 years");
            return;
        }
        vd = json_integer((until - now + DAY - 1) / DAY);
        json_object_set_new(root, "valid_days", vd); /* owned by |root| from here */
    }
    if (p.provider_city == NULL || p.purpose == NULL ||
        json_strings(json_object_get(root, "operations"), ops, TRUST_MAX_OPERATIONS,
                     &p.noperations) != 0 ||
        json_strings(json_object_get(root, "datasets"), ds, TRUST_MAX_DATASETS,
                     &p.ndatasets) != 0 ||
        !json_is_integer(vd) || json_integer_value(vd) < 1 ||
        json_integer_value(vd) > 36500 || (mq != NULL && (!json_is_integer(mq) ||
                                                          json_integer_value(mq) < 0 ||
                                                          json_integer_value(mq) > 1000000000)) ||
        (ep != NULL && (!json_is_number(ep) || !(json_number_value(ep) >= 0) ||
                        !isfinite(json_number_value(ep))))) {
        json_decref(root);
        gw_stream_error(s, 400, "bad_request",
                        "need provider, datasets[], purpose, operations[], valid_days (1..36500); "
                        "optional legal_basis, max_queries (>= 0), epsilon (>= 0)");
        return;
    }
    p.operations = ops;
    p.datasets = ds;
    p.valid_days = (uint32_t)json_integer_value(vd);
    p.max_queries = mq != NULL ? (uint32_t)json_integer_value(mq) : 0;
    p.epsilon = ep != NULL ? json_number_value(ep) : 0;
    if (strcmp(p.provider_city, srv->cfg->city) == 0) {
        json_decref(root);
        gw_stream_error(s, 400, "bad_request", "the provider must be another city");
        return;
    }
    trust_canonical k;
    trust_refusals refusals;
    trust_refusals_init(&refusals);
    int rv = trust_translate_home(home, &p, &k, &refusals);
    json_decref(root); /* |p| borrowed from it; |k| holds copies */
    if (rv == BG_ERR_INVAL) {
        respond_refusals(s, &refusals);
        trust_refusals_dispose(&refusals);
        return;
    }
    trust_refusals_dispose(&refusals);
    if (rv != 0) {
        gw_stream_error(s, 500, "internal", "%s", bg_strerror(rv));
        return;
    }
    const conf_peer *next = next_hop(s, k.provider_city);
    if (next == NULL) {
        gw_stream_error(s, 404, "unknown_city", "no route from %s to city %s", srv->cfg->city,
                        k.provider_city);
        trust_canonical_dispose(&k);
        return;
    }
    nego *n = calloc(1, sizeof(*n));
    bg_errbuf eb = {{0}};
    trust_contract *req = NULL;
    bg_buf enc;
    bg_buf_init(&enc);
    if (n == NULL || body_from_canonical(&n->asked, &k, home, now) != 0 ||
        (n->asked.nonce = strdup(s->request_id)) == NULL || /* two proposals, two ids */
        trust_contract_new(&req, &n->asked, &eb) != 0 ||
        trust_contract_encode(req, &enc, &eb) != 0) {
        trust_canonical_dispose(&k);
        trust_contract_free(req);
        bg_buf_dispose(&enc);
        nego_free(n);
        gw_stream_error(s, 500, "internal", "cannot build the proposal: %s", eb.msg);
        return;
    }
    trust_canonical_dispose(&k);
    trust_contract_free(req);
    req = NULL;
    if (until != 0 && until < n->asked.valid_until) {
        /* the requested end, if sooner than the home rules allow; re-encode the proposal */
        n->asked.valid_until = until;
        bg_buf_reset(&enc);
        if (trust_contract_new(&req, &n->asked, &eb) != 0 ||
            trust_contract_encode(req, &enc, &eb) != 0) {
            trust_contract_free(req);
            bg_buf_dispose(&enc);
            nego_free(n);
            gw_stream_error(s, 500, "internal", "cannot build the proposal: %s", eb.msg);
            return;
        }
        trust_contract_free(req);
    }
    s->ctx = n;
    s->ctx_free = nego_free;
    if (answer_repeat(s, n)) {
        bg_buf_dispose(&enc);
        return;
    }
    bg_strlcpy(s->dest, n->asked.provider_city, sizeof(s->dest));
    route_hops_append("", srv->cfg->city, n->hops, sizeof(n->hops));
    gw_client_call(client_for(w, next), s, "/fed/v1/contracts", n->hops, enc.data, enc.len,
                   PROTOBUF_TYPE, on_agreed);
    bg_buf_dispose(&enc);
}

typedef struct list_ctx {
    gw_server *srv;
    json_t *arr;
} list_ctx;

static int list_one(void *arg, const char *id)
{
    list_ctx *lc = arg;
    trust_store_meta m;
    bg_buf b;
    bg_buf_init(&b);
    trust_contract *c = NULL;
    if (trust_store_get(lc->srv->store, id, &m, &b) == 0 &&
        trust_contract_decode(&c, b.data, b.len, NULL) == 0) {
        json_t *j = contract_json(lc->srv, c, &m);
        if (j != NULL) {
            json_array_append_new(lc->arr, j);
        }
    }
    trust_contract_free(c);
    bg_buf_dispose(&b);
    return json_array_size(lc->arr) >= 1000; /* bounded page */
}

static void contracts_get(gw_stream *s, const char *id)
{
    gw_server *srv = s->conn->w->srv;
    if (id == NULL) {
        list_ctx lc = {srv, json_array()};
        trust_store_list(srv->store, s->conn->id.spiffe_id, list_one, &lc);
        gw_stream_respond_json(s, 200, json_pack("{s:o}", "contracts", lc.arr));
        return;
    }
    trust_store_meta m;
    bg_buf b;
    bg_buf_init(&b);
    trust_contract *c = NULL;
    int rv = trust_store_get(srv->store, id, &m, &b);
    /* another requester's contract is answered like a missing one: ids are not secrets,
     * but who holds which contract is */
    if (rv == 0 && strcmp(m.requester, s->conn->id.spiffe_id) != 0) {
        rv = BG_ERR_NOTFOUND;
    }
    if (rv == 0 && trust_contract_decode(&c, b.data, b.len, NULL) != 0) {
        rv = BG_ERR_STORE;
    }
    bg_buf_dispose(&b);
    if (rv == BG_ERR_NOTFOUND) {
        gw_stream_error(s, 404, "not_found", "no contract %s for %s", id, s->conn->id.spiffe_id);
    } else if (rv != 0) {
        gw_stream_error(s, 503, "store_unavailable", "%s", bg_strerror(rv));
    } else {
        respond_contract(s, 200, c, &m);
    }
    trust_contract_free(c);
}

void gw_contracts_client(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    if (srv->store == NULL || gw_profile_of(srv, srv->cfg->city) == NULL) {
        gw_stream_error(s, 404, "not_found", "this gateway offers no contracts (no profiles)");
        return;
    }
    const char *sub = s->path + strlen("/v1/contracts");
    size_t sublen = strcspn(sub, "?");
    char id[TRUST_CONTRACT_ID_LEN + 1] = "";
    if (sublen > 1 && sub[0] == '/' && sublen - 1 == TRUST_CONTRACT_ID_LEN) {
        memcpy(id, sub + 1, TRUST_CONTRACT_ID_LEN);
    } else if (sublen != 0) {
        gw_stream_error(s, 404, "not_found", "no such contract path: %s", s->path);
        return;
    }
    if (strcmp(s->method, "POST") == 0 && id[0] == 0) {
        if (strcmp(s->conn->id.role, "firm") != 0 ||
            strcmp(s->conn->id.city, srv->cfg->city) != 0) {
            gw_stream_error(s, 403, "forbidden", "contracts are proposed by firms of %s",
                            srv->cfg->city);
            return;
        }
        contracts_propose(s);
    } else if (strcmp(s->method, "GET") == 0) {
        contracts_get(s, id[0] ? id : NULL);
    } else if (strcmp(s->method, "DELETE") == 0 && id[0]) {
        contracts_revoke(s, id);
    } else {
        gw_stream_error(s, 405, "method_not_allowed", "%s %s", s->method, s->path);
    }
}

/* ---- the provider side --------------------------------------------------------------------- */

static int canonical_from_body(trust_canonical *k, const trust_contract_body *b,
                               const conf_profile *home)
{
    memset(k, 0, sizeof(*k));
    if ((k->requester = strdup(b->requester)) == NULL ||
        (k->home_city = strdup(b->home_city)) == NULL ||
        (k->provider_city = strdup(b->provider_city)) == NULL ||
        dup_list(&k->purposes, &k->npurposes, &b->purpose, 1) != 0 ||
        dup_list(&k->operations, &k->noperations, b->operations, b->noperations) != 0 ||
        (b->legal_basis != NULL && b->legal_basis[0] &&
         (k->legal_basis = strdup(b->legal_basis)) == NULL) ||
        dup_list(&k->datasets, &k->ndatasets, b->datasets, b->ndatasets) != 0 ||
        (k->home_terms.city = strdup(b->home_city)) == NULL ||
        (k->home_terms.language = strdup(home->language)) == NULL ||
        (k->home_terms.law = strdup(home->law)) == NULL ||
        (k->home_terms.purpose = dup_or_null(b->home_terms.purpose)) == NULL ||
        dup_list(&k->home_terms.operations, &k->home_terms.noperations,
                 b->home_terms.operations, b->home_terms.noperations) != 0 ||
        (b->home_terms.legal_basis != NULL && b->home_terms.legal_basis[0] &&
         (k->home_terms.legal_basis = strdup(b->home_terms.legal_basis)) == NULL)) {
        return BG_ERR_NOMEM;
    }
    int64_t span = b->valid_until - b->valid_from;
    k->valid_days = span <= 0 ? 0 : (uint32_t)((span + DAY - 1) / DAY);
    k->max_queries = b->max_queries;
    k->epsilon = b->has_epsilon ? b->epsilon : 0;
    return 0;
}

/* Deep copy of one side's wording within contract bodies. */
static int terms_copy(trust_contract_terms *dst, const trust_contract_terms *src)
{
    if ((src->city != NULL && (dst->city = strdup(src->city)) == NULL) ||
        (src->purpose != NULL && (dst->purpose = strdup(src->purpose)) == NULL) ||
        dup_list(&dst->operations, &dst->noperations, src->operations, src->noperations) != 0 ||
        (src->legal_basis != NULL && (dst->legal_basis = strdup(src->legal_basis)) == NULL)) {
        return BG_ERR_NOMEM;
    }
    return 0;
}

static int body_from_agreement(trust_contract_body *b, const trust_agreement *a,
                               const trust_contract_body *asked)
{
    trust_contract_body_init(b);
    if (a->npurposes == 0) {
        return BG_ERR_INVAL;
    }
    if ((b->requester = strdup(a->requester)) == NULL ||
        (b->home_city = strdup(a->home_city)) == NULL ||
        (b->provider_city = strdup(a->provider_city)) == NULL ||
        dup_list(&b->datasets, &b->ndatasets, a->datasets, a->ndatasets) != 0 ||
        (b->purpose = strdup(a->purposes[0])) == NULL ||
        dup_list(&b->operations, &b->noperations, a->operations, a->noperations) != 0 ||
        (a->legal_basis != NULL && (b->legal_basis = strdup(a->legal_basis)) == NULL) ||
        terms_copy(&b->home_terms, &asked->home_terms) != 0 ||
        (b->provider_terms.city = strdup(a->provider_city)) == NULL ||
        (b->provider_terms.purpose = dup_or_null(a->provider_terms.purpose)) == NULL ||
        dup_list(&b->provider_terms.operations, &b->provider_terms.noperations,
                 a->provider_terms.operations, a->provider_terms.noperations) != 0 ||
        (a->provider_terms.legal_basis != NULL &&
         (b->provider_terms.legal_basis = strdup(a->provider_terms.legal_basis)) == NULL)) {
        return BG_ERR_NOMEM;
    }
    b->valid_from = a->valid_from;
    /* never past what the proposal asked for (an end time may be sooner than whole days) */
    b->valid_until = a->valid_until < asked->valid_until ? a->valid_until : asked->valid_until;
    b->min_cell_size = a->min_cell_size;
    b->max_queries = a->max_queries;
    b->has_epsilon = a->epsilon > 0;
    b->epsilon = a->epsilon;
    b->created_at = asked->created_at;
    return 0;
}

static void fed_propose(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    bg_errbuf eb = {{0}};
    trust_contract *req = NULL;
    if (trust_contract_decode(&req, s->body.data, s->body.len, &eb) != 0 ||
        trust_contract_get_state(req) != TRUST_CONTRACT_REQUESTED) {
        trust_contract_free(req);
        gw_stream_error(s, 400, "contract_invalid", "proposal: %s",
                        eb.msg[0] ? eb.msg : "state is not REQUESTED");
        return;
    }
    const trust_contract_body *asked = trust_contract_get_body(req);
    /* the hop list starts with the city whose gateway sent the proposal */
    size_t first = strcspn(s->hops, ",");
    char requester_city[64] = "", role[32];
    trust_spiffe_parse(asked->requester, requester_city, sizeof(requester_city), role,
                       sizeof(role));
    if (strcmp(asked->provider_city, srv->cfg->city) != 0 ||
        strcmp(requester_city, asked->home_city) != 0 || strlen(asked->home_city) != first ||
        strncmp(s->hops, asked->home_city, first) != 0) {
        trust_contract_free(req);
        gw_stream_error(s, 403, "forbidden", "proposal's parties do not match its route (%s)",
                        s->hops);
        return;
    }
    const conf_profile *home = gw_profile_of(srv, asked->home_city);
    const conf_profile *mine = gw_profile_of(srv, srv->cfg->city);
    if (home == NULL) {
        gw_stream_error(s, 422, "untranslatable", "no profile for home city %s",
                        asked->home_city);
        trust_contract_free(req); /* |asked| lives in it */
        return;
    }
    trust_canonical k;
    trust_agreement ag;
    trust_refusals refusals;
    trust_refusals_init(&refusals);
    int rv = canonical_from_body(&k, asked, home);
    if (rv == 0) {
        rv = trust_translate_provider(mine, home, &k, now_s(), &ag, &refusals);
    }
    trust_canonical_dispose(&k);
    if (rv == BG_ERR_INVAL) {
        bg_log(BG_LOG_INFO, "msg=\"contract refused\" requester=\"%s\" refusals=%zu",
               asked->requester, refusals.n);
        contract_receipt(s, TRUST_RECEIPT_CONTRACT_REFUSED, NULL, asked, asked->requester,
                         asked->home_city, s->conn->w->srv->cfg->city);
        respond_refusals(s, &refusals);
        trust_refusals_dispose(&refusals);
        trust_contract_free(req);
        return;
    }
    trust_refusals_dispose(&refusals);
    trust_contract_body b;
    trust_contract *c = NULL;
    bg_buf enc;
    bg_buf_init(&enc);
    if (rv != 0 || body_from_agreement(&b, &ag, asked) != 0 ||
        trust_contract_new(&c, &b, &eb) != 0 ||
        trust_contract_sign(c, TRUST_CONTRACT_PROVIDER, srv->tls, &eb) != 0 ||
        trust_contract_encode(c, &enc, &eb) != 0) {
        if (rv == 0) {
            trust_agreement_dispose(&ag);
            trust_contract_body_dispose(&b);
        }
        trust_contract_free(c);
        trust_contract_free(req);
        bg_buf_dispose(&enc);
        gw_stream_error(s, 500, "internal", "cannot make the agreement: %s", eb.msg);
        return;
    }
    trust_agreement_dispose(&ag);
    trust_contract_body_dispose(&b);
    trust_contract_free(req);
    const trust_contract_body *cb = trust_contract_get_body(c);
    trust_store_meta m;
    memset(&m, 0, sizeof(m));
    m.state = TRUST_STATE_AGREED;
    m.valid_from = cb->valid_from;
    m.valid_until = cb->valid_until;
    m.max_queries = cb->max_queries;
    if (cb->has_epsilon) {
        trust_store_eps_micro(cb->epsilon, &m.eps_total_micro);
    }
    bg_strlcpy(m.requester, cb->requester, sizeof(m.requester));
    rv = trust_store_put(srv->store, trust_contract_get_id(c), &m, enc.data, enc.len);
    if (rv != 0 && rv != BG_ERR_EXISTS) {
        trust_contract_free(c);
        bg_buf_dispose(&enc);
        gw_stream_error(s, 503, "store_unavailable", "cannot store the agreement: %s",
                        bg_strerror(rv));
        return;
    }
    bg_log(BG_LOG_INFO, "msg=\"contract agreed\" id=%s requester=\"%s\"",
           trust_contract_get_id(c), cb->requester);
    contract_receipt(s, TRUST_RECEIPT_CONTRACT_AGREED, trust_contract_get_id(c), cb,
                     cb->requester, cb->home_city, cb->provider_city);
    gw_stream_respond(s, 201, PROTOBUF_TYPE, enc.data, enc.len);
    trust_contract_free(c);
    bg_buf_dispose(&enc);
}

static void fed_finalize(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    bg_errbuf eb = {{0}};
    trust_contract *c = NULL;
    if (trust_contract_decode(&c, s->body.data, s->body.len, &eb) != 0 ||
        trust_contract_get_state(c) != TRUST_CONTRACT_FINALIZED ||
        trust_contract_verify(c, srv->tls, now_s(), &eb) != 0) {
        bg_log(BG_LOG_WARN, "msg=\"finalized contract rejected\" detail=\"%s\"", eb.msg);
        trust_contract_free(c);
        gw_stream_error(s, 400, "contract_invalid", "finalized contract: %s",
                        eb.msg[0] ? eb.msg : "state is not FINALIZED");
        return;
    }
    char id[TRUST_CONTRACT_ID_LEN + 1];
    bg_strlcpy(id, trust_contract_get_id(c), sizeof(id)); /* outlives |c| */
    trust_store_meta m;
    int rv = trust_store_get(srv->store, id, &m, NULL);
    if (rv == 0 && m.state != TRUST_STATE_AGREED && m.state != TRUST_STATE_FINALIZED) {
        rv = BG_ERR_CONTRACT_REVOKED;
    }
    if (rv == 0 && strcmp(trust_contract_get_body(c)->provider_city, srv->cfg->city) != 0) {
        rv = BG_ERR_IDENTITY;
    }
    bg_buf enc;
    bg_buf_init(&enc);
    if (rv == 0 && trust_contract_encode(c, &enc, &eb) == 0) {
        rv = trust_store_update(srv->store, id, TRUST_STATE_FINALIZED, enc.data, enc.len);
    }
    bg_buf_dispose(&enc);
    trust_contract_free(c);
    if (rv == BG_ERR_NOTFOUND) {
        gw_stream_error(s, 404, "not_found", "no agreed contract %s here", id);
    } else if (rv != 0) {
        gw_stream_error(s, 409, "contract_state", "cannot finalize %s: %s", id, bg_strerror(rv));
    } else {
        bg_log(BG_LOG_INFO, "msg=\"contract finalized\" id=%s", id);
        gw_stream_respond(s, 204, NULL, NULL, 0);
    }
}

void gw_contracts_fed(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    if (srv->store == NULL || gw_profile_of(srv, srv->cfg->city) == NULL) {
        gw_stream_error(s, 404, "not_found", "this gateway offers no contracts (no profiles)");
        return;
    }
    size_t n = strcspn(s->path, "?");
    if (n == strlen("/fed/v1/contracts") && strncmp(s->path, "/fed/v1/contracts", n) == 0) {
        fed_propose(s);
    } else if (n == strlen("/fed/v1/contracts/finalize") &&
               strncmp(s->path, "/fed/v1/contracts/finalize", n) == 0) {
        fed_finalize(s);
    } else if (n == strlen("/fed/v1/contracts/revoke") &&
               strncmp(s->path, "/fed/v1/contracts/revoke", n) == 0) {
        fed_revoke(s);
    } else {
        gw_stream_error(s, 404, "not_found", "no such endpoint: %s", s->path);
    }
}

/* ---- usage control -------------------------------------------------------------------------- */

/* The status, code and message of usage-control error |rv| (from the store) for contract
 * |id|. */
static void refusal(int rv, const char *id, gw_refusal *out)
{
    const char *code = "store_unavailable";
    int status = 403;
    switch (rv) {
    case BG_ERR_NOTFOUND:
        code = "contract_required";
        snprintf(out->msg, sizeof(out->msg), "no contract %s in force here", id);
        break;
    case BG_ERR_IDENTITY:
        code = "contract_forbidden";
        snprintf(out->msg, sizeof(out->msg), "contract %s belongs to another party", id);
        break;
    case BG_ERR_CONTRACT_REVOKED:
        code = "contract_revoked";
        snprintf(out->msg, sizeof(out->msg), "contract %s is revoked or not in force", id);
        break;
    case BG_ERR_CONTRACT_EXPIRED:
        code = "contract_expired";
        snprintf(out->msg, sizeof(out->msg), "contract %s is outside its validity", id);
        break;
    case BG_ERR_BUDGET_EXHAUSTED:
        status = 429;
        code = "budget_exhausted";
        snprintf(out->msg, sizeof(out->msg),
                 "contract %s has no queries (or privacy budget) left", id);
        break;
    default:
        status = 503;
        snprintf(out->msg, sizeof(out->msg), "contract store: %s", bg_strerror(rv));
        break;
    }
    out->status = status;
    out->code = code;
}

/* Records a contract event of |s| (kind TRUST_RECEIPT_CONTRACT_*) in the ledger: the contract
 * |id| (may be NULL: a refusal has none), its |requester|, the two cities and the datasets. */
static void contract_receipt(gw_stream *s, uint32_t kind, const char *id,
                             const trust_contract_body *b, const char *requester,
                             const char *home, const char *provider)
{
    trust_receipt r;
    memset(&r, 0, sizeof(r));
    r.kind = kind;
    r.decision = kind == TRUST_RECEIPT_CONTRACT_REFUSED ? TRUST_RECEIPT_REFUSED
                                                         : TRUST_RECEIPT_ALLOWED;
    bg_strlcpy(r.request_id, s->request_id, sizeof(r.request_id));
    bg_strlcpy(r.requester, requester != NULL ? requester : "", sizeof(r.requester));
    bg_strlcpy(r.home_city, home != NULL ? home : "", sizeof(r.home_city));
    bg_strlcpy(r.provider_city, provider != NULL ? provider : "", sizeof(r.provider_city));
    const char *self = s->conn->w->srv->cfg->city;
    const char *other = home != NULL && strcmp(home, self) != 0 ? home : provider;
    bg_strlcpy(r.counterpart_city, other != NULL && strcmp(other, self) != 0 ? other : "",
               sizeof(r.counterpart_city));
    if (id != NULL && strlen(id) == TRUST_RECEIPT_CONTRACT_ID_LEN) {
        bg_strlcpy(r.contract_id, id, sizeof(r.contract_id));
    }
    if (b != NULL) {
        bg_strlcpy(r.purpose, b->purpose != NULL ? b->purpose : "", sizeof(r.purpose));
        for (size_t i = 0; i < b->ndatasets && r.ndatasets < TRUST_RECEIPT_DATASETS_MAX; i++) {
            if (strlen(b->datasets[i]) < sizeof(r.datasets[0])) {
                bg_strlcpy(r.datasets[r.ndatasets++], b->datasets[i], sizeof(r.datasets[0]));
            }
        }
    }
    gw_receipts_event(s->conn->w, &r);
}

/* Answers the usage-control error for |rv| (from the store) and returns false. */
static bool refuse(gw_stream *s, int rv, const char *id)
{
    gw_refusal r;
    refusal(rv, id, &r);
    gw_stream_error(s, r.status, r.code, "%s", r.msg);
    return false;
}

/* The query's dataset and operation (default "count"): from what stage_parse() read at the
 * home gateway, from the body at the provider (which routed on a header). */
static bool query_scope(gw_stream *s, char *dataset, size_t dlen, char *op, size_t olen)
{
    if (s->operation[0] && s->dataset[0]) {
        bg_strlcpy(dataset, s->dataset, dlen);
        bg_strlcpy(op, s->operation, olen);
        return true;
    }
    json_t *root = json_loadb((const char *)s->body.data, s->body.len, 0, NULL);
    const char *ds = json_string_value(json_object_get(root, "dataset"));
    const char *o = json_string_value(json_object_get(root, "operation"));
    bool ok = ds != NULL && strlen(ds) < dlen && (o == NULL || strlen(o) < olen);
    if (ok) {
        bg_strlcpy(dataset, ds, dlen);
        bg_strlcpy(op, o != NULL ? o : "count", olen);
    }
    json_decref(root);
    if (!ok) {
        gw_stream_error(s, 400, "bad_request", "query needs \"dataset\" (and \"operation\")");
    }
    return ok;
}

/* A contract's scope (datasets, operations) never changes under its id, which is the digest
 * of its body: each worker keeps the decoded scope of recent contracts, so a query costs one
 * LMDB read of the contract's state and counters, not a decode. Direct-mapped, replaced on
 * collision. */
#define SCOPE_SLOTS 256

typedef struct scope {
    char id[TRUST_CONTRACT_ID_LEN + 1];
    char **datasets;
    size_t ndatasets;
    char **operations;
    size_t noperations;
    uint32_t k; /* effective minimum cell size */
    bool has_epsilon;
    double epsilon;
    char purpose[128]; /* canonical */
} scope;

struct gw_scope_cache {
    scope slot[SCOPE_SLOTS];
};

static void scope_clear(scope *sc)
{
    for (size_t i = 0; i < sc->ndatasets; i++) {
        free(sc->datasets[i]);
    }
    for (size_t i = 0; i < sc->noperations; i++) {
        free(sc->operations[i]);
    }
    free(sc->datasets);
    free(sc->operations);
    memset(sc, 0, sizeof(*sc));
}

void gw_contracts_worker_dispose(gw_worker *w)
{
    if (w->scopes == NULL) {
        return;
    }
    for (size_t i = 0; i < SCOPE_SLOTS; i++) {
        scope_clear(&w->scopes->slot[i]);
    }
    free(w->scopes);
    w->scopes = NULL;
}

static size_t scope_hash(const char *id)
{
    size_t h = 0;
    for (size_t i = 0; i < 8 && id[i]; i++) { /* the id is a digest: its hex is uniform */
        h = h * 16 + (size_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
    }
    return h % SCOPE_SLOTS;
}

/* The cached scope of contract |id|, or NULL. Borrowed until the next call on this worker. */
static const scope *scope_cached(gw_worker *w, const char *id)
{
    if (w->scopes == NULL || strlen(id) != TRUST_CONTRACT_ID_LEN) {
        return NULL;
    }
    const scope *sc = &w->scopes->slot[scope_hash(id)];
    return strcmp(sc->id, id) == 0 ? sc : NULL;
}

/* Decodes contract |id|'s stored bytes |b| into the cache; NULL on a decode failure or out of
 * memory. Borrowed until the next call on this worker. */
static const scope *scope_load(gw_worker *w, const char *id, const bg_buf *b)
{
    if (w->scopes == NULL && (w->scopes = calloc(1, sizeof(*w->scopes))) == NULL) {
        return NULL;
    }
    scope *sc = &w->scopes->slot[scope_hash(id)];
    scope_clear(sc);
    trust_contract *c = NULL;
    if (trust_contract_decode(&c, b->data, b->len, NULL) != 0) {
        return NULL;
    }
    const trust_contract_body *cb = trust_contract_get_body(c);
    sc->k = cb->min_cell_size;
    bg_strlcpy(sc->purpose, cb->purpose != NULL ? cb->purpose : "", sizeof(sc->purpose));
    sc->has_epsilon = cb->has_epsilon;
    sc->epsilon = cb->epsilon;
    int rv = dup_list(&sc->datasets, &sc->ndatasets, cb->datasets, cb->ndatasets);
    if (rv == 0) {
        rv = dup_list(&sc->operations, &sc->noperations, cb->operations, cb->noperations);
    }
    trust_contract_free(c);
    if (rv != 0) {
        scope_clear(sc);
        return NULL;
    }
    bg_strlcpy(sc->id, id, sizeof(sc->id));
    return sc;
}

/* Checks that contract |id| covers |dataset| and |op|. With |state| (the home gateway) it
 * also checks, from one LMDB read, that the contract is |requester|'s, in force and within its
 * validity. Without it (the provider) those checks are left to the group commit, which makes
 * them atomically with the budget, and a cached scope needs no store read at all. Returns the
 * scope (borrowed until the next call on this worker) or NULL with |why| filled. */
/* With |state| the contract's stored state, validity and counters are read (into |meta| when
 * not NULL), else only when its scope is not cached yet. */
static const scope *scope_check(gw_worker *w, const char *id, const char *requester,
                                const char *dataset, const char *op, int64_t now, bool state,
                                gw_refusal *why, trust_store_meta *meta)
{
    const scope *sc = scope_cached(w, id);
    int rv = 0;
    if (state || sc == NULL) {
        trust_store_meta m;
        bg_buf b;
        bg_buf_init(&b);
        rv = trust_store_get(w->srv->store, id, &m, sc == NULL ? &b : NULL);
        if (rv == 0 && strcmp(m.requester, requester) != 0) {
            rv = BG_ERR_IDENTITY;
        } else if (rv == 0 && state && m.state != TRUST_STATE_FINALIZED) {
            rv = m.state == TRUST_STATE_EXPIRED ? BG_ERR_CONTRACT_EXPIRED
                                                : BG_ERR_CONTRACT_REVOKED;
        } else if (rv == 0 && state && (now < m.valid_from || now >= m.valid_until)) {
            rv = BG_ERR_CONTRACT_EXPIRED;
        }
        if (rv == 0 && sc == NULL && (sc = scope_load(w, id, &b)) == NULL) {
            rv = BG_ERR_STORE;
        }
        bg_buf_dispose(&b);
        if (rv == 0 && meta != NULL) {
            *meta = m;
        }
    }
    if (rv != 0) {
        refusal(rv, id, why);
        return NULL;
    }
    if (!in_list(sc->datasets, sc->ndatasets, dataset)) {
        why->status = 403;
        why->code = "contract_scope";
        snprintf(why->msg, sizeof(why->msg), "contract %s does not cover dataset %s", id,
                 dataset);
        return NULL;
    }
    if (!in_list(sc->operations, sc->noperations, op)) {
        why->status = 403;
        why->code = "operation_not_permitted";
        snprintf(why->msg, sizeof(why->msg), "contract %s does not permit operation %s", id, op);
        return NULL;
    }
    if (sc->has_epsilon && strcmp(op, "count") != 0 && strcmp(op, "histogram") != 0 &&
        strcmp(op, "sum") != 0) {
        why->status = 403;
        why->code = "dp_unsupported_operation";
        snprintf(why->msg, sizeof(why->msg),
                 "contract %s carries a privacy budget; %s cannot be released with noise (count, "
                 "histogram and sum can)", id, op);
        return NULL;
    }
    return sc;
}

static bool check_scope(gw_stream *s, const char *id, const char *requester, int64_t now,
                        bool state, trust_store_meta *meta)
{
    char dataset[320], op[64];
    if (!query_scope(s, dataset, sizeof(dataset), op, sizeof(op))) {
        return false;
    }
    gw_refusal why;
    if (scope_check(s->conn->w, id, requester, dataset, op, now, state, &why, meta) == NULL) {
        gw_stream_error(s, why.status, why.code, "%s", why.msg);
        return false;
    }
    return true;
}

bool gw_contracts_check_home(gw_worker *w, const char *id, const char *requester,
                             const char *dataset, const char *op, gw_refusal *why)
{
    if (w->srv->store == NULL) {
        return true;
    }
    if (id == NULL || id[0] == 0) {
        why->status = 403;
        why->code = "contract_required";
        snprintf(why->msg, sizeof(why->msg), "a query for %s must name its contract", dataset);
        return false;
    }
    return scope_check(w, id, requester, dataset, op, now_s(), true, why, NULL) != NULL;
}

bool gw_contracts_limits(gw_worker *w, const char *id, uint32_t *k, double *epsilon,
                         char *purpose, size_t cap)
{
    const scope *sc = scope_cached(w, id);
    if (sc == NULL) {
        return false;
    }
    bg_strlcpy(purpose, sc->purpose, cap);
    *k = sc->k;
    *epsilon = sc->has_epsilon ? sc->epsilon : 0.0;
    return true;
}

#define CONSUME_MAX (sizeof(((gw_worker *)0)->consume) / sizeof(gw_stream *))

/* One group commit of the contract store on the ledger's writer thread: everything it reads
 * is copied here, since the streams may go while it runs (their slot in |who| is then NULL). */
typedef struct consume_job {
    gw_store_job base;
    trust_store *store;
    int64_t now;
    size_t n;
    gw_stream *who[CONSUME_MAX];
    trust_store_consume_req reqs[CONSUME_MAX];
    char id[CONSUME_MAX][TRUST_STORE_ID_LEN + 1];
    char requester[CONSUME_MAX][TRUST_STORE_REQUESTER_MAX + 1];
    uint8_t digest[CONSUME_MAX][TRUST_STORE_DIGEST_LEN];
} consume_job;

static void consume_run(gw_store_job *j)
{
    consume_job *c = (consume_job *)(void *)j;
    trust_store_consume_batch(c->store, c->reqs, c->n, c->now);
}

/* Back on the loop: each query goes on or is refused. */
static void consume_done(gw_job *j)
{
    consume_job *c = (consume_job *)(void *)j;
    for (size_t i = 0; i < c->n; i++) {
        gw_stream *s = c->who[i];
        if (s == NULL) {
            continue; /* gone meanwhile; what was spent stays spent */
        }
        s->in_consume = false;
        s->consume_job = NULL;
        if (s->responded) {
            continue; /* answered meanwhile (its deadline passed) */
        }
        if (c->reqs[i].result == 0) {
            gw_request_resume(s);
        } else if (c->reqs[i].result == TRUST_STORE_CACHED) {
            s->budget_limit = 0;
            gw_queries_fed_cached(s); /* the same noisy answer again, at no cost */
        } else {
            refuse(s, c->reqs[i].result, s->contract);
        }
    }
    free(c);
}

static void consume_discard(gw_job *j)
{
    free(j);
}

/* The group commit: every epsilon spend (with a ledger; also the query count without one)
 * queued during this callback in one LMDB transaction of the contract store, run on the
 * ledger's writer thread so that this loop never waits for its sync. Runs from
 * gw_worker_run_deferred(). */
static void run_consume(gw_flushable *f)
{
    gw_worker *w = (gw_worker *)(void *)((char *)f - offsetof(gw_worker, consume_fl));
    consume_job *c = malloc(sizeof(*c));
    if (c == NULL) {
        for (size_t i = 0; i < w->nconsume; i++) {
            gw_stream *s = w->consume[i];
            if (s != NULL) {
                s->in_consume = false;
                gw_stream_error(s, 503, "store_unavailable", "out of memory");
            }
        }
        w->nconsume = 0;
        return;
    }
    c->base.w = w;
    c->base.run = consume_run;
    c->base.job.deliver = consume_done;
    c->base.job.discard = consume_discard;
    c->store = w->srv->store;
    c->now = now_s();
    c->n = 0;
    for (size_t i = 0; i < w->nconsume; i++) {
        gw_stream *s = w->consume[i];
        if (s == NULL) {
            continue;
        }
        size_t k = c->n++;
        c->who[k] = s;
        s->consume_job = c;
        bg_strlcpy(c->id[k], s->contract, sizeof(c->id[k]));
        bg_strlcpy(c->requester[k], s->requester, sizeof(c->requester[k]));
        memcpy(c->digest[k], s->digest, sizeof(c->digest[k]));
        c->reqs[k] = (trust_store_consume_req){.id = c->id[k], .requester = c->requester[k],
                                               .eps_micro = s->eps_micro,
                                               .digest = s->eps_micro > 0 ? c->digest[k] : NULL,
                                               .no_count = w->srv->ledger != NULL};
    }
    w->nconsume = 0;
    if (c->n == 0) {
        free(c);
        return;
    }
    gw_receipts_store_job(w->srv, &c->base);
}

void gw_contracts_cancel(gw_stream *s)
{
    gw_worker *w = s->conn->w;
    for (size_t i = 0; i < w->nconsume; i++) {
        if (w->consume[i] == s) {
            w->consume[i] = NULL;
        }
    }
    consume_job *c = s->consume_job;
    for (size_t i = 0; c != NULL && i < c->n; i++) {
        if (c->who[i] == s) {
            c->who[i] = NULL;
        }
    }
    s->consume_job = NULL;
    s->in_consume = false;
}

/* Provider with a ledger: contract |s->contract|, whose stored counters |m| usage control has
 * just read, must have queries left in the ledger's count (plus what the contract store
 * counted before the ledger did); sets |s->budget_limit|. */
static bool ledger_budget(gw_stream *s, const trust_store_meta *m)
{
    gw_server *srv = s->conn->w->srv;
    uint32_t used = 0;
    int rv = trust_ledger_budget_used(srv->ledger, s->contract, &used);
    if (rv != 0) {
        gw_stream_error(s, 503, "store_unavailable", "usage control cannot read the budget: %s",
                        bg_strerror(rv));
        return false;
    }
    uint32_t limit = UINT32_MAX; /* no cap: still counted, for the receipts */
    if (m->max_queries != 0) {
        limit = m->used < m->max_queries ? m->max_queries - m->used : 0;
    }
    if (used >= limit) {
        gw_refusal why;
        refusal(BG_ERR_BUDGET_EXHAUSTED, s->contract, &why);
        gw_stream_error(s, why.status, why.code, "%s", why.msg);
        return false;
    }
    s->budget_limit = limit;
    return true;
}

gw_enforce gw_contracts_enforce(gw_stream *s, bool local)
{
    gw_worker *w = s->conn->w;
    gw_server *srv = w->srv;
    if (srv->store == NULL) {
        return GW_ENFORCE_GO; /* this gateway takes part in no contracts */
    }
    int64_t now = now_s();
    if (s->route == GW_ROUTE_QUERIES) {
        if (local) {
            return GW_ENFORCE_GO; /* this city's own data: its data space governs, no border */
        }
        if (s->contract[0] == 0) {
            gw_stream_error(s, 403, "contract_required",
                            "a query for %s data must name its contract (\"contract\")", s->dest);
            return GW_ENFORCE_STOP;
        }
        /* home: fail fast; the provider is authoritative and counts the budget */
        return check_scope(s, s->contract, s->conn->id.spiffe_id, now, true, NULL)
                   ? GW_ENFORCE_GO
                   : GW_ENFORCE_STOP;
    }
    /* provider: the query arrived from a peer on behalf of x-baygate-requester */
    if (s->contract[0] == 0 || s->requester[0] == 0) {
        gw_stream_error(s, 403, "contract_required", "federated query without a contract");
        return GW_ENFORCE_STOP;
    }
    if (gw_queries_is_replay(s)) { /* answered before: in force now? then no second spend */
        return check_scope(s, s->contract, s->requester, now, true, NULL) ? GW_ENFORCE_GO
                                                                           : GW_ENFORCE_STOP;
    }
    if (srv->ledger != NULL) {
        /* the query count lives in the ledger: checked here (fail fast, nothing runs for a
         * spent contract), counted by the writer in the transaction of the release's receipt */
        trust_store_meta m;
        if (!check_scope(s, s->contract, s->requester, now, true, &m) ||
            !ledger_budget(s, &m)) {
            return GW_ENFORCE_STOP;
        }
    } else if (!check_scope(s, s->contract, s->requester, now, false, NULL)) {
        return GW_ENFORCE_STOP;
    }
    const scope *sc = scope_cached(w, s->contract);
    s->eps_micro = 0;
    if (sc != NULL && sc->has_epsilon && s->route == GW_ROUTE_FED_QUERY && s->ctx != NULL) {
        /* a noisy release spends a tenth of the contract's privacy budget (docs/queries.md) */
        uint64_t total = 0;
        trust_store_eps_micro(sc->epsilon, &total);
        s->eps_micro = total / GW_DP_RELEASES > 0 ? total / GW_DP_RELEASES : 1;
    }
    if (srv->ledger != NULL && s->eps_micro == 0) {
        return GW_ENFORCE_GO; /* counted with the receipt */
    }
    /* the budget (with a ledger: the epsilon only): queued for this iteration's group commit */
    if (w->nconsume == CONSUME_MAX) {
        run_consume(&w->consume_fl); /* full: send what is queued first */
    }
    w->consume_fl.run = run_consume;
    w->consume[w->nconsume++] = s;
    s->in_consume = true;
    gw_worker_defer(w, &w->consume_fl);
    return GW_ENFORCE_WAIT;
}

/* ---- revocation ------------------------------------------------------------------------------- */

typedef struct revo {
    trust_contract *c;
} revo;

static void revo_free(void *p)
{
    revo *r = p;
    if (r != NULL) {
        trust_contract_free(r->c);
        free(r);
    }
}

static void on_revoked(gw_stream *s, int status, const char *ctype_or_code, const char *msg,
                       const uint8_t *body, size_t len)
{
    revo *r = s->ctx;
    (void)body;
    (void)len;
    if (status != 204 && status != 200) {
        /* refused here already; say that the provider has not confirmed */
        gw_stream_error(s, 502, status == 0 ? ctype_or_code : "bad_gateway",
                        "revoked at home; the provider did not confirm: %s",
                        status == 0 ? msg : "unexpected status");
        return;
    }
    bg_log(BG_LOG_INFO, "msg=\"contract revoked\" id=%s", trust_contract_get_id(r->c));
    {
        const trust_contract_body *rb = trust_contract_get_body(r->c);
        contract_receipt(s, TRUST_RECEIPT_CONTRACT_REVOKED, trust_contract_get_id(r->c), rb,
                         rb->requester, rb->home_city, rb->provider_city);
    }
    respond_contract(s, 200, r->c, NULL);
}

static void contracts_revoke(gw_stream *s, const char *id)
{
    gw_worker *w = s->conn->w;
    gw_server *srv = w->srv;
    trust_store_meta m;
    bg_buf b;
    bg_buf_init(&b);
    bg_errbuf eb = {{0}};
    trust_contract *c = NULL;
    int rv = trust_store_get(srv->store, id, &m, &b);
    if (rv == 0 && strcmp(m.requester, s->conn->id.spiffe_id) != 0) {
        rv = BG_ERR_NOTFOUND;
    }
    if (rv == 0 && trust_contract_decode(&c, b.data, b.len, &eb) != 0) {
        rv = BG_ERR_STORE;
    }
    bg_buf_dispose(&b);
    if (rv != 0) {
        trust_contract_free(c);
        if (rv == BG_ERR_NOTFOUND) {
            gw_stream_error(s, 404, "not_found", "no contract %s for %s", id,
                            s->conn->id.spiffe_id);
        } else {
            gw_stream_error(s, 503, "store_unavailable", "%s", bg_strerror(rv));
        }
        return;
    }
    bool already = trust_contract_get_state(c) == TRUST_CONTRACT_REVOKED;
    bg_buf enc;
    bg_buf_init(&enc);
    if ((!already && trust_contract_revoke(c, srv->tls, now_s(), "revoked by the requester",
                                           &eb) != 0) ||
        trust_contract_encode(c, &enc, &eb) != 0 ||
        (!already && trust_store_update(srv->store, id, TRUST_STATE_REVOKED, enc.data,
                                        enc.len) != 0)) {
        trust_contract_free(c);
        bg_buf_dispose(&enc);
        gw_stream_error(s, 409, "contract_state", "cannot revoke %s: %s", id,
                        eb.msg[0] ? eb.msg : "store error");
        return;
    }
    const trust_contract_body *cb = trust_contract_get_body(c);
    const conf_peer *next = next_hop(s, cb->provider_city);
    revo *r = calloc(1, sizeof(*r));
    if (next == NULL || r == NULL) {
        trust_contract_free(c);
        free(r);
        bg_buf_dispose(&enc);
        gw_stream_error(s, 502, "peer_unavailable", "revoked at home; no route to the provider");
        return;
    }
    r->c = c;
    s->ctx = r;
    s->ctx_free = revo_free;
    bg_strlcpy(s->dest, cb->provider_city, sizeof(s->dest));
    char hops[128];
    route_hops_append("", srv->cfg->city, hops, sizeof(hops));
    gw_client_call(client_for(w, next), s, "/fed/v1/contracts/revoke", hops, enc.data, enc.len,
                   PROTOBUF_TYPE, on_revoked);
    bg_buf_dispose(&enc);
}

static void fed_revoke(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    bg_errbuf eb = {{0}};
    trust_contract *c = NULL;
    if (trust_contract_decode(&c, s->body.data, s->body.len, &eb) != 0 ||
        trust_contract_get_state(c) != TRUST_CONTRACT_REVOKED ||
        trust_contract_verify(c, srv->tls, now_s(), &eb) != 0) {
        bg_log(BG_LOG_WARN, "msg=\"revocation rejected\" detail=\"%s\"", eb.msg);
        trust_contract_free(c);
        gw_stream_error(s, 400, "contract_invalid", "revocation: %s",
                        eb.msg[0] ? eb.msg : "state is not REVOKED");
        return;
    }
    char id[TRUST_CONTRACT_ID_LEN + 1];
    bg_strlcpy(id, trust_contract_get_id(c), sizeof(id));
    bg_buf enc;
    bg_buf_init(&enc);
    const trust_contract_body *cb = trust_contract_get_body(c);
    int rv = strcmp(cb->provider_city, srv->cfg->city) != 0
                 ? BG_ERR_IDENTITY
                 : trust_contract_encode(c, &enc, &eb);
    if (rv == 0) {
        rv = trust_store_update(srv->store, id, TRUST_STATE_REVOKED, enc.data, enc.len);
    }
    bg_buf_dispose(&enc);
    if (rv == BG_ERR_NOTFOUND) {
        gw_stream_error(s, 404, "not_found", "no contract %s here", id);
    } else if (rv != 0) {
        gw_stream_error(s, 409, "contract_state", "cannot revoke %s: %s", id, bg_strerror(rv));
    } else {
        bg_log(BG_LOG_INFO, "msg=\"contract revoked\" id=%s by=home", id);
        /* the contract's own parties, as the home's receipt of the same revocation names them,
         * so that the two receipts are each other's counterpart */
        contract_receipt(s, TRUST_RECEIPT_CONTRACT_REVOKED, id, cb, cb->requester, cb->home_city,
                         cb->provider_city);
        gw_stream_respond(s, 204, NULL, NULL, 0);
    }
    trust_contract_free(c);
}
