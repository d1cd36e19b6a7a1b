/* gateway/queries.c: federated queries, both ends.
 * Home (/v1/queries from a client): parse and check the JSON query, plan one leg per city (the
 * dataset's city, or every city named in "contracts" for a pattern "*" + "/<name>"), check each
 * leg's contract here (fail fast), send the legs in parallel as protobuf (space/wire.h) over
 * /fed/v1/query (the home city's own leg runs on its own data space), merge the answers
 * exactly (space/agg.h) and answer with a per-city status; a failed city makes the answer
 * `partial`, never silently smaller.
 * Provider (/fed/v1/query at the destination, after usage control consumed the budget): run
 * the leg on the embedded data space on the executor threads (never on the loop), or on the
 * external data space over the upstream protocol, then apply disclosure control
 * (trust/disclosure.h) to whatever came back before anything leaves the city.
 * Not for: routing (handlers.c stages) and contracts (contracts.c). */
#include "gateway/gw_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/ids.h"
#include "base/log.h"
#include "conf/profile.h"
#include "space/agg.h"
#include "space/data.h"
#include "space/json.h"
#include "space/pool.h"
#include "space/wire.h"
#include "trust/b64.h"
#include "trust/disclosure.h"
#include "trust/secagg.h"
#include "trust/store.h"

#include <openssl/evp.h>

#define QUERY_MAX_LEGS 16
#define PB_TYPE "application/x-protobuf"

/* ---- provider side: answers by query id ------------------------------------------------------ */

/* Recent answers by (query id, contract, requester): a leg that a home gateway sends again
 * after a connection failure (over another route) gets the answer already given, so it never
 * runs, spends budget or draws noise twice. Process-wide, bounded, oldest replaced. */
#define ANSWER_SLOTS 512

typedef struct answer_slot {
    char key[400];
    uint8_t *bytes;
    size_t len;
} answer_slot;

struct gw_answers {
    pthread_mutex_t mu;
    answer_slot slot[ANSWER_SLOTS];
    size_t next;
};

static void answer_key(char *key, size_t cap, const char *qid, const gw_stream *s)
{
    snprintf(key, cap, "%s|%s|%s", qid, s->contract, s->requester);
}

/* Copies the answer remembered for |key| into |out|; false when none. */
static bool answers_get(gw_server *srv, const char *key, bg_buf *out)
{
    gw_answers *a = srv->answers;
    bool found = false;
    if (a == NULL) {
        return false;
    }
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < ANSWER_SLOTS && !found; i++) {
        if (a->slot[i].bytes != NULL && strcmp(a->slot[i].key, key) == 0) {
            found = bg_buf_append(out, a->slot[i].bytes, a->slot[i].len) == 0;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return found;
}

static void answers_put(gw_server *srv, const char *key, const uint8_t *bytes, size_t len)
{
    gw_answers *a = srv->answers;
    uint8_t *copy = a != NULL ? malloc(len > 0 ? len : 1) : NULL;
    if (copy == NULL) {
        return; /* remembering is best effort: a retry then runs the leg again */
    }
    memcpy(copy, bytes, len);
    pthread_mutex_lock(&a->mu);
    answer_slot *sl = &a->slot[a->next];
    a->next = (a->next + 1) % ANSWER_SLOTS;
    free(sl->bytes);
    bg_strlcpy(sl->key, key, sizeof(sl->key));
    sl->bytes = copy;
    sl->len = len;
    pthread_mutex_unlock(&a->mu);
}

int gw_answers_new(gw_server *srv)
{
    srv->answers = calloc(1, sizeof(*srv->answers));
    if (srv->answers == NULL) {
        return BG_ERR_NOMEM;
    }
    pthread_mutex_init(&srv->answers->mu, NULL);
    return 0;
}

void gw_answers_free(gw_server *srv)
{
    gw_answers *a = srv->answers;
    if (a == NULL) {
        return;
    }
    for (size_t i = 0; i < ANSWER_SLOTS; i++) {
        free(a->slot[i].bytes);
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
    srv->answers = NULL;
}

/* ---- provider side: one leg executed here ---------------------------------------------------- */

typedef struct qleg qleg;

/* A leg run on this city's data: created at parse time on the provider (s->ctx) or by the home
 * for its own city's leg. While |queued| it belongs to the executor; the loop frees it in
 * deliver (or discard). */
typedef struct xjob {
    gw_job job;
    gw_worker *w;
    gw_stream *s; /* provider: the stream to answer; NULL once it went away */
    qleg *leg;    /* home: the leg to complete; NULL once cancelled */
    bool queued;
    bool replay; /* a retried leg: |answer| is the answer already given */
    space_leg in;
    char city[64];
    uint32_t k;
    uint64_t eps_micro; /* this release's privacy budget (0: exact) */
    uint8_t digest[32];
    char contract[72];
    char purpose[128];
    char history[400];
    gw_receipt_req rq; /* provider: the receipt of this release */
    uint32_t suppressed; /* cells withheld by disclosure control */
    /* out */
    int status; /* 200, or the HTTP status of |code| */
    char code[48];
    char msg[300];
    uint8_t *answer; /* encoded space_leg_answer when status == 200 */
    size_t answer_len;
} xjob;

static void xjob_free(xjob *x)
{
    space_leg_dispose(&x->in);
    free(x->answer);
    free(x);
}

static void xjob_fail(xjob *x, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void xjob_fail(xjob *x, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
    va_end(ap);
    x->status = status;
    bg_strlcpy(x->code, code, sizeof(x->code));
}

/* The border check of every result, whatever produced it: validation, noise when the contract
 * carries a privacy budget, suppression, then the quantile grid reduced to the quantiles.
 * Runs on any thread. Returns true with |r| ready to leave the city. */
static bool border_check(xjob *x, space_result *r)
{
    if (x->eps_micro > 0) {
        if (r->op != SPACE_OP_COUNT && r->op != SPACE_OP_HISTOGRAM && r->op != SPACE_OP_SUM) {
            xjob_fail(x, 403, "dp_unsupported_operation",
                      "the contract carries a privacy budget; %s cannot be released with noise "
                      "(count, histogram and sum can)",
                      space_op_name(r->op));
            return false;
        }
        const space_schema *sc = space_schema_find(x->in.q.dataset);
        int fi = sc != NULL ? space_schema_field(sc, x->in.q.field) : -1;
        trust_dp dp = {.eps_num = x->eps_micro, .eps_den = 1000000, .sens_count = 1};
        if (r->op == SPACE_OP_SUM && fi >= 0) {
            const space_field *f = &sc->fields[fi];
            double m = fmax(fabs(f->lo), fabs(f->hi));
            dp.sens_sum = (uint64_t)llround(m / f->resolution);
        }
        int rv = trust_disclosure_noise(r, &dp);
        if (rv != 0) {
            xjob_fail(x, 502, "disclosure_refused", "noise could not be applied: %s",
                      bg_strerror(rv));
            return false;
        }
    }
    trust_disclosure pol = {.k = x->k, .zero_is_safe = true};
    size_t nsupp = 0;
    if (trust_disclosure_apply(&pol, r, NULL, &nsupp) != 0) { /* bin reasons into the cells */
        xjob_fail(x, 502, "not_an_aggregate",
                  "the data space returned something that is not a well-formed aggregate of "
                  "this query; nothing was released");
        return false;
    }
    x->suppressed = (uint32_t)nsupp;
    if (r->op != SPACE_OP_QUANTILES) {
        return true;
    }
    if (!x->in.masked) { /* one city: release the quantiles only, never the fine grid */
        for (size_t i = 0; i < r->ncells; i++) {
            space_cell *c = &r->cells[i];
            if (c->supp == SPACE_SUPP_NONE && c->n > 0 && c->bins != NULL &&
                space_grid_quantiles(c->bins, c->nbins, r->grid_lo, r->resolution,
                                     x->in.q.probs, x->in.q.nprobs, c->qvals) == 0) {
                c->has_qvals = true;
            }
            free(c->bins);
            c->bins = NULL;
            c->nbins = 0;
        }
        return true;
    }
    /* several cities: the fine grids leave only under pairwise masks that cancel in the sum */
    size_t nb = r->ncells > 0 ? r->cells[0].nbins : 0, total = nb * r->ncells;
    uint64_t *vals = total > 0 ? malloc(total * sizeof(uint64_t)) : NULL;
    trust_secagg_party parties[SPACE_WIRE_MAX_PARTIES];
    for (size_t i = 0; i < x->in.nparties; i++) {
        parties[i] = (trust_secagg_party){.city = x->in.parties[i].city,
                                          .cert_der = x->in.parties[i].cert_der,
                                          .cert_len = x->in.parties[i].cert_len};
    }
    if (vals == NULL) {
        xjob_fail(x, 500, "internal", "out of memory");
        return false;
    }
    for (size_t i = 0; i < r->ncells; i++) {
        memcpy(vals + i * nb, r->cells[i].bins, nb * sizeof(uint64_t));
    }
    bg_errbuf eb = {{0}};
    gw_server *srv = x->w->srv;
    int rv = trust_secagg_mask(trust_tls_private_key(srv->tls), x->city, parties,
                               x->in.nparties, trust_tls_trust_store(srv->tls), x->in.query_id,
                               vals, total, &eb);
    if (rv != 0) {
        free(vals);
        xjob_fail(x, 403, "secure_aggregation_refused", "%s", eb.msg);
        return false;
    }
    for (size_t i = 0; i < r->ncells; i++) {
        memcpy(r->cells[i].bins, vals + i * nb, nb * sizeof(uint64_t));
    }
    OPENSSL_cleanse(vals, total * sizeof(uint64_t));
    free(vals);
    return true;
}

static void encode_answer(xjob *x, space_result *r)
{
    space_leg_answer a;
    memset(&a, 0, sizeof(a));
    bg_strlcpy(a.city, x->city, sizeof(a.city));
    a.result = *r; /* borrowed for the encode */
    a.masked = x->in.masked;
    int rv = space_leg_answer_encode(&a, &x->answer, &x->answer_len);
    if (rv != 0) {
        xjob_fail(x, 500, "internal", "cannot encode the answer: %s", bg_strerror(rv));
        return;
    }
    x->status = 200;
}

/* Executor thread: runs the leg on the embedded data space, checks it, encodes the answer. */
static void xjob_run(void *arg)
{
    xjob *x = arg;
    space_result r;
    bg_errbuf eb = {{0}};
    /* Under a privacy budget the noise comes first and suppression after it, on the noisy
     * values (trust/disclosure.h): the data space must not suppress on exact counts. */
    space_exec_opts opts = {.k = x->eps_micro > 0 ? 0 : x->k,
                            .history_key = x->eps_micro > 0 || !x->history[0] ? NULL
                                                                              : x->history};
    int rv = space_db_execute(x->w->srv->space, &x->in.q, &opts, &r, &eb);
    if (rv == BG_ERR_NOTFOUND) {
        xjob_fail(x, 404, "unknown_dataset", "%s holds no dataset %s", x->city,
                  x->in.q.dataset);
    } else if (rv == BG_ERR_INVAL || rv == BG_ERR_RANGE) {
        xjob_fail(x, 400, "invalid_query", "%s", eb.msg);
    } else if (rv != 0) {
        xjob_fail(x, 500, "internal", "data space: %s", bg_strerror(rv));
    } else {
        if (border_check(x, &r)) {
            encode_answer(x, &r);
        }
        space_result_dispose(&r);
    }
    gw_worker_post(x->w, &x->job);
}

static void leg_finish(qleg *l, int status, const char *ctype_or_code, const char *msg,
                       const uint8_t *body, size_t len);

/* Answers leg stream |s| with |x|'s outcome; a noisy answer goes through the contract's noise
 * cache first, so that only the first noisy answer to a query is ever published. */
static void respond_leg(xjob *x, gw_stream *s, const uint8_t *bytes, size_t len)
{
    char key[400];
    answer_key(key, sizeof(key), x->in.query_id, s);
    answers_put(x->w->srv, key, bytes, len);
    gw_stream_respond(s, 200, PB_TYPE, bytes, len);
}

static void xjob_ctx_free(void *p);

/* The provider's receipt committed (or failed): only now does the answer leave the city,
 * carrying the receipt's reference. */
static void on_provider_receipt(gw_job *j)
{
    xjob *x = (xjob *)(void *)((char *)j - offsetof(xjob, rq.job));
    x->queued = false;
    gw_stream *s = x->s;
    if (s == NULL) { /* the stream went away meanwhile; the receipt stays (the use happened) */
        xjob_free(x);
        return;
    }
    s->ctx = NULL;
    s->ctx_free = NULL;
    space_leg_answer a;
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (x->rq.result != 0) {
        gw_stream_error(s, 503, "ledger_unavailable",
                        "the receipt could not be recorded (%s); nothing was released",
                        bg_strerror(x->rq.result));
    } else if (x->rq.budget.exhausted) { /* concurrent queries spent it first: the ledger
                                          * recorded this one as a refusal, nothing leaves */
        s->receipted = true;
        gw_stream_error(s, 429, "budget_exhausted",
                        "contract %s has no queries (or privacy budget) left", s->contract);
    } else if (space_leg_answer_decode(x->answer, x->answer_len, &a) != 0) {
        gw_stream_error(s, 500, "internal", "cannot re-read the answer");
    } else {
        a.has_receipt = true;
        bg_strlcpy(a.receipt_city, x->city, sizeof(a.receipt_city));
        a.receipt_index = x->rq.index;
        memcpy(a.receipt_leaf, x->rq.leaf_hash, sizeof(a.receipt_leaf));
        a.receipt_queries_used = x->rq.budget.used;
        if (space_leg_answer_encode(&a, &bytes, &len) != 0) {
            gw_stream_error(s, 500, "internal", "cannot encode the answer");
        } else {
            respond_leg(x, s, bytes, len);
            free(bytes);
        }
        space_leg_answer_dispose(&a);
    }
    xjob_free(x);
}

static void on_provider_receipt_discard(gw_job *j)
{
    xjob_free((xjob *)(void *)((char *)j - offsetof(xjob, rq.job)));
}

/* Fills |r| with what a receipt of |s| (a federated request at this city) always says. */
static void receipt_base(trust_receipt *r, gw_stream *s, const char *self)
{
    memset(r, 0, sizeof(*r));
    bg_strlcpy(r->request_id, s->request_id, sizeof(r->request_id));
    bg_strlcpy(r->requester, s->requester, sizeof(r->requester));
    char role[32];
    if (trust_spiffe_parse(s->requester, r->home_city, sizeof(r->home_city), role,
                           sizeof(role)) != 0) {
        r->home_city[0] = 0;
    }
    bg_strlcpy(r->provider_city, self, sizeof(r->provider_city));
    const char *h = s->hops; /* "home,transit,..." as received */
    const char *comma = strchr(h, ',');
    while (comma != NULL && r->ntransit < TRUST_RECEIPT_TRANSIT_MAX) {
        const char *start = comma + 1;
        comma = strchr(start, ',');
        size_t n = comma != NULL ? (size_t)(comma - start) : strlen(start);
        if (n > 0 && n < sizeof(r->transit[0])) {
            memcpy(r->transit[r->ntransit], start, n);
            r->transit[r->ntransit++][n] = 0;
        }
    }
    if (strlen(s->contract) == TRUST_RECEIPT_CONTRACT_ID_LEN) {
        bg_strlcpy(r->contract_id, s->contract, sizeof(r->contract_id));
    }
    if (s->dataset[0] && strlen(s->dataset) < sizeof(r->datasets[0])) {
        bg_strlcpy(r->datasets[0], s->dataset, sizeof(r->datasets[0]));
        r->ndatasets = 1;
    }
    bg_strlcpy(r->operation, s->operation, sizeof(r->operation));
    bg_strlcpy(r->counterpart_city, r->home_city, sizeof(r->counterpart_city));
}

static bool provider_receipt(xjob *x, gw_stream *s);

/* The noise cache's write, on the ledger's writer thread (it syncs): |x| stays alive while
 * queued (xjob_ctx_free only drops |x->s|), and the loop touches none of what is read here. */
typedef struct noise_job {
    gw_store_job base;
    xjob *x;
    int rv;
    bg_buf first; /* the answer ever published for this query */
} noise_job;

static void noise_run(gw_store_job *j)
{
    noise_job *n = (noise_job *)(void *)j;
    xjob *x = n->x;
    trust_store *st = x->w->srv->store;
    n->rv = trust_store_noise_put(st, x->contract, x->digest, x->answer, x->answer_len);
    if (n->rv == 0 || n->rv == BG_ERR_EXISTS) {
        n->rv = trust_store_noise_get(st, x->contract, x->digest, &n->first);
    }
}

static void noise_done(gw_job *j)
{
    noise_job *n = (noise_job *)(void *)j;
    xjob *x = n->x;
    x->queued = false;
    gw_stream *s = x->s;
    if (s == NULL) { /* gone meanwhile; the noisy answer stays cached (spent) */
        xjob_free(x);
    } else {
        s->ctx = NULL;
        s->ctx_free = NULL;
        if (n->rv != 0) {
            gw_stream_error(s, 503, "store_unavailable",
                            "the noisy answer could not be recorded: %s", bg_strerror(n->rv));
            xjob_free(x);
        } else {
            free(x->answer);
            x->answer = n->first.data; /* taken */
            x->answer_len = n->first.len;
            bg_buf_init(&n->first);
            if (!provider_receipt(x, s)) {
                xjob_free(x);
            }
        }
    }
    bg_buf_dispose(&n->first);
    free(n);
}

static void noise_discard(gw_job *j)
{
    noise_job *n = (noise_job *)(void *)j;
    xjob_free(n->x);
    bg_buf_dispose(&n->first);
    free(n);
}

/* Answers leg stream |s| with |x|'s outcome. A noisy answer goes through the contract's noise
 * cache first (noise_job), so that only the first noisy answer to a query is ever published.
 * With a ledger, the answer waits for its receipt (on_provider_receipt). Returns true when |x|
 * is kept for later (noise cache or receipt), false when the caller frees it. */
static bool provider_publish(xjob *x, gw_stream *s)
{
    if (x->status != 200) {
        gw_stream_error(s, x->status, x->code, "%s", x->msg);
        return false;
    }
    if (x->eps_micro > 0) { /* the first noisy answer to this query is the one ever published */
        noise_job *n = calloc(1, sizeof(*n));
        if (n == NULL) {
            gw_stream_error(s, 503, "store_unavailable", "out of memory");
            return false;
        }
        n->x = x;
        bg_buf_init(&n->first);
        n->base.w = x->w;
        n->base.run = noise_run;
        n->base.job.deliver = noise_done;
        n->base.job.discard = noise_discard;
        x->s = s;
        x->queued = true; /* the stream going away leaves |x| to noise_done */
        s->ctx = x;
        s->ctx_free = xjob_ctx_free;
        gw_receipts_store_job(x->w->srv, &n->base);
        return true;
    }
    return provider_receipt(x, s);
}

/* |x|'s answer (final: noise drawn and cached) is released once its receipt committed. */
static bool provider_receipt(xjob *x, gw_stream *s)
{
    if (x->w->srv->ledger == NULL) {
        respond_leg(x, s, x->answer, x->answer_len);
        return false;
    }
    trust_receipt *r = &x->rq.receipt;
    receipt_base(r, s, x->city);
    r->kind = TRUST_RECEIPT_QUERY;
    r->decision = TRUST_RECEIPT_ALLOWED;
    bg_strlcpy(r->purpose, x->purpose, sizeof(r->purpose));
    r->has_query_digest = true;
    memcpy(r->query_digest, s->digest, sizeof(r->query_digest));
    r->has_result_digest = true;
    EVP_Digest(x->answer, x->answer_len, r->result_digest, NULL, EVP_sha256(), NULL);
    r->cells_suppressed = x->suppressed;
    r->epsilon_micro = x->eps_micro;
    /* the query it uses of its contract is counted in the receipt's own transaction */
    x->rq.budget = (trust_ledger_budget){.limit = s->contract[0] ? s->budget_limit : 0};
    x->rq.w = x->w;
    x->rq.job.deliver = on_provider_receipt;
    x->rq.job.discard = on_provider_receipt_discard;
    x->s = s;
    x->queued = true; /* the stream going away leaves |x| to on_provider_receipt */
    s->ctx = x;
    s->ctx_free = xjob_ctx_free;
    gw_receipts_submit(x->w->srv, &x->rq);
    return true;
}

/* Loop thread: the executor finished |j|. */
static void xjob_deliver(gw_job *j)
{
    xjob *x = (xjob *)(void *)j;
    if (x->s != NULL) {
        gw_stream *s = x->s;
        s->ctx = NULL;
        s->ctx_free = NULL;
        x->queued = false;
        if (provider_publish(x, s)) {
            return; /* kept until its receipt committed */
        }
    } else if (x->leg != NULL) {
        if (x->status == 200) {
            leg_finish(x->leg, 200, PB_TYPE, NULL, x->answer, x->answer_len);
        } else {
            char body[512];
            json_t *e = json_pack("{s:{s:s,s:s}}", "error", "code", x->code, "message", x->msg);
            char *t = e != NULL ? json_dumps(e, JSON_COMPACT) : NULL;
            bg_strlcpy(body, t != NULL ? t : "{}", sizeof(body));
            free(t);
            json_decref(e);
            leg_finish(x->leg, x->status, "application/json", NULL, (const uint8_t *)body,
                       strlen(body));
        }
    }
    xjob_free(x);
}

static void xjob_discard(gw_job *j)
{
    xjob_free((xjob *)(void *)j);
}

/* The stream went away: an xjob in the executor is freed when it comes back. */
static void xjob_ctx_free(void *p)
{
    xjob *x = p;
    if (x->queued) {
        x->s = NULL;
    } else {
        xjob_free(x);
    }
}

static xjob *xjob_new(gw_worker *w)
{
    xjob *x = calloc(1, sizeof(*x));
    if (x != NULL) {
        x->w = w;
        x->job.deliver = xjob_deliver;
        x->job.discard = xjob_discard;
        bg_strlcpy(x->city, w->srv->cfg->city, sizeof(x->city));
    }
    return x;
}

/* Hands |x| to the executor; on a full queue answers 503 through the usual delivery. */
static void xjob_submit(xjob *x)
{
    x->queued = true;
    int rv = x->w->srv->pool != NULL ? space_pool_submit(x->w->srv->pool, xjob_run, x)
                                     : BG_ERR_SHUTDOWN;
    if (rv != 0) {
        xjob_fail(x, 503, "overloaded", "the data space's executor queue is full");
        xjob_deliver(&x->job);
    }
}

/* The external data space answered leg |s->ctx|: check it at the border like any result. */
static void on_upstream_state(gw_stream *s, int status, const char *ctype_or_code,
                              const char *msg, const uint8_t *body, size_t len)
{
    xjob *x = s->ctx;
    if (status == 0) {
        gw_stream_error(s, 502, ctype_or_code, "%s", msg);
        return;
    }
    if (status != 200) {
        gw_stream_error(s, 502, "upstream_error", "the data space answered HTTP %d", status);
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb((const char *)body, len, 0, &jerr);
    space_result r;
    bg_errbuf eb = {{0}};
    if (j == NULL || space_result_state_from_json(j, &x->in.q, &r, &eb) != 0) {
        bg_log(BG_LOG_WARN, "conn=%llu stream=%d msg=\"data space answer refused\" why=\"%s\"",
               (unsigned long long)s->conn->conn_id, s->id, j == NULL ? jerr.text : eb.msg);
        json_decref(j);
        gw_stream_error(s, 502, "not_an_aggregate",
                        "the data space did not answer an aggregate state of this query; "
                        "nothing was released");
        return;
    }
    json_decref(j);
    if (border_check(x, &r)) {
        encode_answer(x, &r);
    }
    space_result_dispose(&r);
    provider_publish(x, s);
}

bool gw_queries_is_replay(const gw_stream *s)
{
    const xjob *x = s->ctx;
    return x != NULL && s->ctx_free == xjob_ctx_free && x->replay;
}

void gw_queries_fed_cached(gw_stream *s)
{
    gw_worker *w = s->conn->w;
    xjob *x = s->ctx;
    bg_buf b;
    bg_buf_init(&b);
    int rv = trust_store_noise_get(w->srv->store, s->contract, s->digest, &b);
    if (rv != 0) {
        bg_buf_dispose(&b);
        gw_stream_error(s, 503, "store_unavailable", "cached answer: %s", bg_strerror(rv));
        return;
    }
    if (x == NULL || s->ctx_free != xjob_ctx_free) {
        bg_buf_dispose(&b);
        gw_stream_error(s, 500, "internal", "query state lost");
        return;
    }
    /* published again: it crosses the border again, so it is receipted again (spending no
     * epsilon and no query: the same noisy answer tells nothing new) */
    s->ctx = NULL;
    s->ctx_free = NULL;
    double eps = 0;
    uint32_t ck = 0;
    if (gw_contracts_limits(w, s->contract, &ck, &eps, x->purpose, sizeof(x->purpose))) {
        bg_strlcpy(x->contract, s->contract, sizeof(x->contract));
    }
    free(x->answer);
    x->answer = b.data; /* taken */
    x->answer_len = b.len;
    x->status = 200;
    x->eps_micro = 0;
    s->budget_limit = 0;
    if (!provider_publish(x, s)) {
        xjob_free(x);
    }
}

bool gw_queries_fed_parse(gw_stream *s)
{
    gw_worker *w = s->conn->w;
    xjob *x = xjob_new(w);
    if (x == NULL) {
        gw_stream_error(s, 500, "internal", "out of memory");
        return false;
    }
    if (space_leg_decode(s->body.data, s->body.len, &x->in) != 0) {
        xjob_free(x);
        gw_stream_error(s, 400, "invalid_leg",
                        "/fed/v1/query takes a protobuf baygate.space.Leg (space/space.proto)");
        return false;
    }
    char key[400];
    bg_buf seen;
    bg_buf_init(&seen);
    answer_key(key, sizeof(key), x->in.query_id, s);
    if (answers_get(w->srv, key, &seen)) {
        /* a retried leg: once routing and usage control (without spending) pass again, it
         * gets the answer already given */
        x->replay = true;
        x->answer = seen.data; /* taken */
        x->answer_len = seen.len;
        x->status = 200;
    } else {
        bg_buf_dispose(&seen);
    }
    s->ctx = x;
    s->ctx_free = xjob_ctx_free;
    uint8_t *qb = NULL;
    size_t qlen = 0;
    if (space_query_encode(&x->in.q, &qb, &qlen) == 0) { /* names the query for the DP cache */
        EVP_Digest(qb, qlen, s->digest, NULL, EVP_sha256(), NULL);
        free(qb);
    }
    snprintf(s->dataset, sizeof(s->dataset), "%s/%s", w->srv->cfg->city, x->in.q.dataset);
    bg_strlcpy(s->operation, space_op_name(x->in.q.op), sizeof(s->operation));
    return true;
}

/* The minimum cell size this city applies when no contract says more. */
static uint32_t own_k(const gw_server *srv)
{
    const struct conf_profile *p = gw_profile_of(srv, srv->cfg->city);
    uint32_t k = p != NULL ? p->min_cell_size : 0;
    return k > 0 ? k : 10;
}

void gw_queries_fed(gw_stream *s)
{
    gw_worker *w = s->conn->w;
    xjob *x = s->ctx;
    if (x == NULL || s->ctx_free != xjob_ctx_free) {
        gw_stream_error(s, 500, "internal", "query state lost");
        return;
    }
    x->s = s;
    if (x->replay) {
        bg_log(BG_LOG_INFO, "conn=%llu stream=%d msg=\"query leg answered again\" query_id=%s",
               (unsigned long long)s->conn->conn_id, s->id, x->in.query_id);
        gw_stream_respond(s, 200, PB_TYPE, x->answer, x->answer_len);
        return;
    }
    x->k = own_k(w->srv);
    double eps = 0;
    uint32_t ck = 0;
    if (s->contract[0] &&
        gw_contracts_limits(w, s->contract, &ck, &eps, x->purpose, sizeof(x->purpose))) {
        x->k = ck > x->k ? ck : x->k;
        x->eps_micro = eps > 0 ? s->eps_micro : 0;
        memcpy(x->digest, s->digest, sizeof(x->digest));
        bg_strlcpy(x->contract, s->contract, sizeof(x->contract));
    }
    snprintf(x->history, sizeof(x->history), "%s|%s", s->contract, s->requester);
    if (w->srv->space != NULL) {
        xjob_submit(x);
        return;
    }
    if (w->upstream == NULL) {
        gw_stream_error(s, 502, "upstream_unavailable", "no data space session");
        return;
    }
    /* an external data space: the query as JSON (docs/upstream.md), its state back */
    json_t *j = space_query_to_json(&x->in.q);
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL) {
        gw_stream_error(s, 500, "internal", "out of memory");
        return;
    }
    gw_client_call(w->upstream, s, "/space/v1/query", s->hops, (const uint8_t *)text,
                   strlen(text), "application/json", on_upstream_state);
    free(text);
}

/* ---- home side: plan, fan out, merge -------------------------------------------------------- */

typedef struct qrun qrun;
struct qleg {
    gw_leg leg;
    qrun *run;
    char city[64];
    bool done, ok;
    int status;
    char code[48];
    char msg[300];
    space_result result;
    xjob *local; /* the home city's own leg while in the executor */
    bool is_local;
    bool sent; /* the query leg went out (this round) */
    bool retried; /* sent again over another route after a connection failure */
    size_t peer; /* index of the next-hop peer when !is_local */
    uint8_t *cert; /* masked quantiles: the city's gateway certificate (DER), owned */
    size_t cert_len;
    uint8_t result_digest[32]; /* SHA-256 of the city's LegAnswer */
    bool has_peer_receipt;     /* the provider's receipt reference, from its answer */
    uint32_t peer_queries_used; /* its contract's query count after it, at the provider */
    uint64_t peer_index;
    uint8_t peer_leaf[32];
    gw_receipt_req rq; /* this city's (the home's) receipt of the leg */
};

struct qrun {
    gw_stream *s;
    space_query q;
    const space_schema *schema;
    char dataset[200];
    bool pattern;
    qleg *legs; /* nlegs of them, allocated by plan() */
    size_t nlegs, pending;
    bool masked;       /* quantiles over several cities: fine grids under secure aggregation */
    bool fetching;     /* masked: collecting the cities' certificates first */
    bool retried;      /* masked: a second round ran without the cities that failed */
    uint8_t *body;     /* the encoded query leg of this round (resent on a retry) */
    size_t len;
    char query_id[33];
    struct event timer; /* shortly before the deadline: the legs still out are timed out */
    bool timer_set;
    /* answering: the home's receipts first, then the answer */
    json_t *answer;     /* the document to send once every receipt committed */
    int answer_status;
    size_t rq_pending;  /* receipts in the writer */
    bool orphaned;      /* the stream went away while receipts were pending */
};

static void qrun_free(void *p)
{
    qrun *run = p;
    if (run->rq_pending > 0) { /* the writer holds our receipts: the last one frees |run| */
        run->orphaned = true;
        run->s = NULL;
        return;
    }
    json_decref(run->answer);
    if (run->timer_set) {
        event_del(&run->timer);
    }
    for (size_t i = 0; i < run->nlegs; i++) {
        qleg *l = &run->legs[i];
        gw_leg_cancel(&l->leg);
        if (l->local != NULL && l->local->queued) {
            l->local->leg = NULL; /* the executor's; dropped when it comes back */
        } else if (l->local != NULL) {
            xjob_free(l->local); /* waiting on the external data space, whose call the
                                    stream cancels as it goes */
        }
        space_result_dispose(&l->result);
        free(l->cert);
    }
    free(run->legs);
    free(run->body);
    free(run);
}

static json_t *city_status(const qleg *l)
{
    if (l->ok) {
        return json_pack("{s:s,s:s}", "status", "ok", "route", l->leg.route);
    }
    return json_pack("{s:s,s:s,s:i,s:s}", "status", "error", "code", l->code, "http_status",
                     l->status, "message", l->msg);
}

/* Every leg is done: merge what succeeded and answer. */
/* The answer to the client: an error (|*status| not 200) or the merged result. */
static json_t *qrun_document(qrun *run, int *status)
{
    gw_stream *s = run->s;
    size_t nok = 0;
    const qleg *first_err = NULL;
    for (size_t i = 0; i < run->nlegs; i++) {
        if (run->legs[i].ok) {
            nok++;
        } else if (first_err == NULL) {
            first_err = &run->legs[i];
        }
    }
    if (!run->pattern) { /* one city: the route it answered over */
        bg_strlcpy(s->resp_route, run->legs[0].leg.route, sizeof(s->resp_route));
    }
    if (!run->pattern && first_err != NULL) { /* one city: its error is the answer */
        *status = first_err->status ? first_err->status : 502;
        return json_pack("{s:{s:s,s:s}}", "error", "code", first_err->code, "message",
                         first_err->msg);
    }
    json_t *cities = json_object();
    for (size_t i = 0; i < run->nlegs; i++) {
        json_object_set_new(cities, run->legs[i].city, city_status(&run->legs[i]));
    }
    if (nok == 0) {
        *status = 502;
        return json_pack("{s:{s:s,s:s},s:o,s:b}", "error", "code", "all_cities_failed",
                         "message", "no city answered; see \"cities\"", "cities", cities,
                         "partial", true);
    }
    space_result merged;
    const space_result *legs[QUERY_MAX_LEGS];
    size_t n = 0;
    int rv = 0;
    for (size_t i = 0; i < run->nlegs; i++) {
        if (!run->legs[i].ok) {
            continue;
        }
        const space_result *r = &run->legs[i].result;
        if (n == 0) { /* an empty result of the same layout, then every city merged into it */
            memset(&merged, 0, sizeof(merged));
            merged.op = r->op;
            merged.resolution = r->resolution;
            merged.grid_lo = r->grid_lo;
            merged.ngroup = r->ngroup;
            memcpy(merged.group_by, r->group_by, sizeof(merged.group_by));
        }
        legs[n++] = r;
        rv = rv != 0 ? rv : space_result_merge(&merged, r);
    }
    if (rv != 0) {
        space_result_dispose(&merged);
        json_decref(cities);
        *status = 502;
        return json_pack("{s:{s:s,s:s}}", "error", "code", "merge_failed", "message",
                         "the cities' answers do not merge");
    }
    json_t *result = space_answer_json(&run->q, run->schema, &merged, legs, n);
    space_result_dispose(&merged);
    *status = 200;
    return json_pack("{s:s,s:s,s:o,s:o,s:b}", "dataset", run->dataset, "op",
                     space_op_name(run->q.op), "result", result ? result : json_null(), "cities",
                     cities, "partial", nok < run->nlegs);
}

/* Sends run->answer, with the receipts' references when they committed; frees |run|. */
static void qrun_send(qrun *run)
{
    gw_stream *s = run->s;
    bool failed = false;
    json_t *top = NULL;
    json_t *cities = json_object_get(run->answer, "cities");
    for (size_t i = 0; i < run->nlegs; i++) {
        qleg *l = &run->legs[i];
        if (l->rq.w == NULL) {
            continue; /* no receipt was written (no ledger) */
        }
        if (l->rq.result != 0) {
            failed = true;
            continue;
        }
        json_t *ref = gw_receipt_ref_json(s->conn->w->srv->cfg->city, l->rq.index,
                                          l->rq.leaf_hash);
        json_t *c = json_object_get(cities, l->city);
        if (c != NULL) {
            json_object_set(c, "home_receipt", ref);
            if (l->has_peer_receipt) {
                json_object_set_new(c, "receipt",
                                    gw_receipt_ref_json(l->city, l->peer_index, l->peer_leaf));
                if (l->peer_queries_used > 0) { /* the firm sees how much of its budget is used */
                    json_object_set_new(c, "queries_used",
                                        json_integer((json_int_t)l->peer_queries_used));
                }
            }
        }
        if (top == NULL) {
            top = json_incref(ref);
        }
        json_decref(ref);
    }
    s->ctx = NULL;
    s->ctx_free = NULL;
    if (failed) {
        json_decref(top);
        gw_stream_error(s, 503, "ledger_unavailable",
                        "this city's receipts could not be recorded; the answer is withheld");
    } else {
        if (top != NULL && json_is_object(run->answer)) {
            json_object_set_new(run->answer, "receipt", top);
        } else {
            json_decref(top);
        }
        json_t *a = run->answer;
        run->answer = NULL;
        if (run->answer_status == 200) {
            gw_stream_respond_json(s, 200, a);
        } else { /* an error document: keep its code for the log */
            const char *code = json_string_value(
                json_object_get(json_object_get(a, "error"), "code"));
            bg_strlcpy(s->err_code, code != NULL ? code : "error", sizeof(s->err_code));
            gw_stream_respond_json(s, run->answer_status, a);
        }
    }
    qrun_free(run);
}

/* A home receipt committed or failed. */
static void on_home_receipt(gw_job *j)
{
    gw_receipt_req *rq = (gw_receipt_req *)(void *)j;
    qleg *l = (qleg *)(void *)((char *)rq - offsetof(qleg, rq));
    qrun *run = l->run;
    if (--run->rq_pending > 0) {
        return;
    }
    if (run->orphaned) {
        run->orphaned = false;
        qrun_free(run);
        return;
    }
    qrun_send(run);
}

static void on_home_receipt_discard(gw_job *j)
{
    gw_receipt_req *rq = (gw_receipt_req *)(void *)j;
    qleg *l = (qleg *)(void *)((char *)rq - offsetof(qleg, rq));
    qrun *run = l->run;
    if (--run->rq_pending == 0) {
        run->s = NULL;
        run->orphaned = false;
        qrun_free(run);
    }
}

/* Every leg is done: the home's receipt of each leg (holding the provider's reference), then
 * the answer. Frees |run| (now or when the receipts are back). */
static void qrun_answer(qrun *run)
{
    gw_stream *s = run->s;
    gw_worker *w = s->conn->w;
    run->answer = qrun_document(run, &run->answer_status);
    if (run->answer == NULL) {
        s->ctx = NULL;
        s->ctx_free = NULL;
        gw_stream_error(s, 500, "internal", "out of memory");
        qrun_free(run);
        return;
    }
    if (w->srv->ledger == NULL) {
        qrun_send(run);
        return;
    }
    uint8_t qdigest[32];
    uint8_t *qb = NULL;
    size_t qlen = 0;
    bool has_qd = space_query_encode(&run->q, &qb, &qlen) == 0;
    if (has_qd) {
        EVP_Digest(qb, qlen, qdigest, NULL, EVP_sha256(), NULL);
        free(qb);
    }
    const char *self = w->srv->cfg->city;
    run->rq_pending = run->nlegs + 1; /* +1: held while submitting */
    for (size_t i = 0; i < run->nlegs; i++) {
        qleg *l = &run->legs[i];
        trust_receipt *r = &l->rq.receipt;
        memset(r, 0, sizeof(*r));
        r->kind = l->ok ? TRUST_RECEIPT_QUERY : TRUST_RECEIPT_REFUSAL;
        r->decision = l->ok ? TRUST_RECEIPT_ALLOWED : TRUST_RECEIPT_REFUSED;
        bg_strlcpy(r->request_id, s->request_id, sizeof(r->request_id));
        bg_strlcpy(r->requester, s->conn->id.spiffe_id, sizeof(r->requester));
        bg_strlcpy(r->home_city, self, sizeof(r->home_city));
        bg_strlcpy(r->provider_city, l->city, sizeof(r->provider_city));
        const char *rt = strchr(l->leg.route, ','); /* "home,transit...,provider" */
        while (rt != NULL && r->ntransit < TRUST_RECEIPT_TRANSIT_MAX) {
            const char *start = rt + 1;
            rt = strchr(start, ',');
            size_t n = rt != NULL ? (size_t)(rt - start) : 0; /* the last one is the provider */
            if (rt != NULL && n > 0 && n < sizeof(r->transit[0])) {
                memcpy(r->transit[r->ntransit], start, n);
                r->transit[r->ntransit++][n] = 0;
            }
        }
        if (strlen(l->leg.contract) == TRUST_RECEIPT_CONTRACT_ID_LEN) {
            bg_strlcpy(r->contract_id, l->leg.contract, sizeof(r->contract_id));
            uint32_t k;
            double eps;
            gw_contracts_limits(w, l->leg.contract, &k, &eps, r->purpose, sizeof(r->purpose));
        }
        snprintf(r->datasets[0], sizeof(r->datasets[0]), "%s/%s", l->city, run->q.dataset);
        r->ndatasets = 1;
        bg_strlcpy(r->operation, space_op_name(run->q.op), sizeof(r->operation));
        r->has_query_digest = has_qd;
        memcpy(r->query_digest, qdigest, sizeof(qdigest));
        r->has_result_digest = l->ok;
        memcpy(r->result_digest, l->result_digest, sizeof(r->result_digest));
        if (strcmp(l->city, self) != 0) {
            bg_strlcpy(r->counterpart_city, l->city, sizeof(r->counterpart_city));
            r->has_counterpart_ref = l->has_peer_receipt;
            r->counterpart_index = l->peer_index;
            memcpy(r->counterpart_leaf_hash, l->peer_leaf, sizeof(l->peer_leaf));
        }
        l->rq.w = w;
        l->rq.job.deliver = on_home_receipt;
        l->rq.job.discard = on_home_receipt_discard;
        gw_receipts_submit(w->srv, &l->rq);
    }
    if (--run->rq_pending == 0) { /* every receipt came back already (cannot, but be safe) */
        qrun_send(run);
    }
}

/* Every pending leg of the current phase is done: answer, or (certificates collected) send
 * the query legs. */
static void qrun_phase_done(qrun *run);
static void cert_finish(qleg *l, int status, const char *code, const char *msg,
                        const uint8_t *body, size_t len);
static void on_local_upstream(gw_stream *s, int status, const char *ctype_or_code,
                              const char *msg, const uint8_t *body, size_t len);
static void leg_send(qrun *run, qleg *l, const char *path, const char *ctype,
                     const uint8_t *body, size_t len);

static void leg_finish(qleg *l, int status, const char *ctype_or_code, const char *msg,
                       const uint8_t *body, size_t len)
{
    qrun *run = l->run;
    l->local = NULL;
    if (l->done) {
        return;
    }
    bool expired = status == 0 && ctype_or_code != NULL &&
                   (strcmp(ctype_or_code, "deadline_exceeded") == 0 ||
                    strcmp(ctype_or_code, "timeout") == 0);
    if (status == 0 && !expired && !l->is_local && !l->retried && !run->fetching &&
        run->body != NULL) {
        /* the connection failed: once more over another route; the provider recognises the
         * query id, so the leg never runs (nor spends budget) twice */
        gw_worker *w = run->s->conn->w;
        const conf_peer *alt = gw_route_pick(w, l->city, &w->gen->cfg->peers[l->peer]);
        if (alt != NULL) {
            l->retried = true;
            l->peer = (size_t)(alt - w->gen->cfg->peers);
            bg_log(BG_LOG_INFO, "msg=\"query leg retried\" city=%s via=%s why=\"%s\"", l->city,
                   alt->name, msg != NULL ? msg : "");
            leg_send(run, l, "/fed/v1/query", PB_TYPE, run->body, run->len);
            return;
        }
    }
    l->done = true;
    if (status == 0) { /* no answer at all */
        l->status = expired ? 504 : 502;
        bg_strlcpy(l->code, ctype_or_code != NULL ? ctype_or_code : "bad_gateway",
                   sizeof(l->code));
        bg_strlcpy(l->msg, msg != NULL ? msg : "", sizeof(l->msg));
    } else if (status != 200) { /* the city's error document */
        l->status = status;
        json_t *e = json_loadb((const char *)body, len, 0, NULL);
        const char *code = json_string_value(json_object_get(json_object_get(e, "error"), "code"));
        const char *m = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
        bg_strlcpy(l->code, code != NULL ? code : "bad_gateway", sizeof(l->code));
        snprintf(l->msg, sizeof(l->msg), "%s", m != NULL ? m : "the city answered an error");
        json_decref(e);
    } else {
        space_leg_answer a;
        if (space_leg_answer_decode(body, len, &a) != 0) {
            l->status = 502;
            bg_strlcpy(l->code, "bad_gateway", sizeof(l->code));
            snprintf(l->msg, sizeof(l->msg), "%s answered a malformed LegAnswer", l->city);
        } else if (a.result.op != run->q.op) {
            l->status = 502;
            bg_strlcpy(l->code, "bad_gateway", sizeof(l->code));
            snprintf(l->msg, sizeof(l->msg), "%s answered another operation", l->city);
            space_leg_answer_dispose(&a);
        } else {
            l->result = a.result;
            memset(&a.result, 0, sizeof(a.result));
            l->has_peer_receipt = a.has_receipt && strcmp(a.receipt_city, l->city) == 0;
            l->peer_index = a.receipt_index;
            l->peer_queries_used = a.receipt_queries_used;
            memcpy(l->peer_leaf, a.receipt_leaf, sizeof(l->peer_leaf));
            /* the provider's receipt digests its answer before the reference to that
             * receipt was added: digest the same bytes */
            a.has_receipt = false;
            a.result = l->result;
            uint8_t *plain = NULL;
            size_t plen = 0;
            if (space_leg_answer_encode(&a, &plain, &plen) == 0) {
                EVP_Digest(plain, plen, l->result_digest, NULL, EVP_sha256(), NULL);
                free(plain);
            }
            memset(&a.result, 0, sizeof(a.result));
            space_leg_answer_dispose(&a);
            l->ok = true;
        }
    }
    if (--run->pending == 0) {
        qrun_phase_done(run);
    }
}

static void on_leg_done(gw_leg *leg, int status, const char *ctype_or_code, const char *msg,
                        const uint8_t *body, size_t len)
{
    qleg *l = (qleg *)(void *)leg;
    if (l->run->fetching) {
        cert_finish(l, status, ctype_or_code, msg, body, len);
    } else {
        leg_finish(l, status, ctype_or_code, msg, body, len);
    }
}

void gw_queries_near_names(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    const space_schema *const *all = space_schema_all(&n);
    size_t off = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && off + 2 < cap; i++) {
        const char *d = all[i]->name;
        bool near = strstr(d, name) != NULL || strstr(name, d) != NULL ||
                    strncmp(d, name, 3) == 0;
        if (!near) {
            continue;
        }
        int k = snprintf(out + off, cap - off, "%s%s", off ? ", " : "", d);
        off += k > 0 ? (size_t)k : 0;
    }
    if (off == 0) {
        for (size_t i = 0; i < n && off + 2 < cap; i++) {
            int k = snprintf(out + off, cap - off, "%s%s", off ? ", " : "", all[i]->name);
            off += k > 0 ? (size_t)k : 0;
        }
    }
}

/* Plans the legs of |run| from the client's "dataset" and "contract"/"contracts". */
static bool plan(qrun *run, json_t *root)
{
    gw_stream *s = run->s;
    const char *self = s->conn->w->srv->cfg->city;
    const char *ds = json_string_value(json_object_get(root, "dataset"));
    const char *slash = ds != NULL ? strchr(ds, '/') : NULL;
    if (ds == NULL || slash == NULL || strlen(ds) >= sizeof(run->dataset) ||
        strlen(slash + 1) >= SPACE_NAME_MAX || slash[1] == 0) {
        gw_stream_error(s, 400, "invalid_dataset",
                        "\"dataset\" must be \"<city>/<name>\" or \"*/<name>\"");
        return false;
    }
    bg_strlcpy(run->dataset, ds, sizeof(run->dataset));
    bg_strlcpy(run->q.dataset, slash + 1, sizeof(run->q.dataset));
    run->schema = space_schema_find(run->q.dataset);
    if (run->schema == NULL) {
        char near[300];
        gw_queries_near_names(run->q.dataset, near, sizeof(near));
        gw_stream_error(s, 404, "unknown_dataset", "no dataset called %s in the federation; "
                        "did you mean: %s", run->q.dataset, near);
        return false;
    }
    bg_errbuf eb = {{0}};
    if (space_query_check(&run->q, run->schema, &eb) != 0) {
        gw_stream_error(s, 400, "invalid_query", "%s", eb.msg);
        return false;
    }
    run->pattern = slash - ds == 1 && ds[0] == '*';
    json_t *contracts = json_object_get(root, "contracts");
    json_t *contract = json_object_get(root, "contract");
    if ((contract != NULL && !json_is_string(contract)) ||
        (contracts != NULL && !json_is_object(contracts))) {
        gw_stream_error(s, 400, "bad_request", "\"contract\" is a contract id; \"contracts\" an "
                        "object of city -> contract id");
        return false;
    }
    if (!run->pattern) {
        char city[64];
        if (route_dataset_city(ds, city, sizeof(city)) != 0) {
            gw_stream_error(s, 400, "invalid_dataset", "\"%s\" is not \"<city>/<name>\"", ds);
            return false;
        }
        const char *cid = json_string_value(contract);
        if (cid == NULL && contracts != NULL) {
            cid = json_string_value(json_object_get(contracts, city));
        }
        if ((run->legs = calloc(1, sizeof(qleg))) == NULL) {
            gw_stream_error(s, 500, "internal", "out of memory");
            return false;
        }
        bg_strlcpy(run->legs[0].city, city, sizeof(run->legs[0].city));
        bg_strlcpy(run->legs[0].leg.contract, cid != NULL ? cid : "",
                   sizeof(run->legs[0].leg.contract));
        run->nlegs = 1;
        return true;
    }
    if (contracts == NULL || json_object_size(contracts) == 0) {
        gw_stream_error(s, 400, "bad_request", "a \"*/%s\" query names each city's contract in "
                        "\"contracts\": {\"<city>\": \"<id>\", ...}", run->q.dataset);
        return false;
    }
    if (json_object_size(contracts) > QUERY_MAX_LEGS) {
        gw_stream_error(s, 400, "bad_request", "at most %d cities per query", QUERY_MAX_LEGS);
        return false;
    }
    if ((run->legs = calloc(json_object_size(contracts), sizeof(qleg))) == NULL) {
        gw_stream_error(s, 500, "internal", "out of memory");
        return false;
    }
    const char *city;
    json_t *v;
    json_object_foreach(contracts, city, v)
    {
        if (!json_is_string(v) || strlen(city) >= 64 || !bg_city_id_valid(city, strlen(city))) {
            gw_stream_error(s, 400, "bad_request", "\"contracts\".%.60s must be a contract id "
                            "under a city id", city);
            return false;
        }
        qleg *l = &run->legs[run->nlegs++];
        bg_strlcpy(l->city, city, sizeof(l->city));
        bg_strlcpy(l->leg.contract, json_string_value(v), sizeof(l->leg.contract));
    }
    (void)self;
    return true;
}

/* Marks leg |l| failed before it was sent. */
static void leg_refuse(qleg *l, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void leg_refuse(qleg *l, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->msg, sizeof(l->msg), fmt, ap);
    va_end(ap);
    l->done = true;
    l->status = status;
    bg_strlcpy(l->code, code, sizeof(l->code));
}

/* Checks leg |l| before anything is sent: a route to its city and, for another city, its
 * contract (fail fast; the provider is authoritative). False: the leg is refused. */
static bool leg_check(qrun *run, qleg *l)
{
    gw_stream *s = run->s;
    gw_worker *w = s->conn->w;
    const char *self = w->srv->cfg->city;
    l->run = run;
    l->leg.done = on_leg_done;
    l->is_local = strcmp(l->city, self) == 0;
    if (l->is_local) {
        bg_strlcpy(l->leg.route, self, sizeof(l->leg.route));
        return true;
    }
    const conf_peer *next = NULL;
    if ((next = gw_route_pick(w, l->city, NULL)) == NULL) {
        leg_refuse(l, 502, "no_route", "no route from %s to %s", self, l->city);
        return false;
    }
    l->peer = (size_t)(next - w->gen->cfg->peers);
    char dataset[200];
    snprintf(dataset, sizeof(dataset), "%s/%s", l->city, run->q.dataset);
    gw_refusal why;
    if (!gw_contracts_check_home(w, l->leg.contract, s->conn->id.spiffe_id, dataset,
                                 space_op_name(run->q.op), &why)) {
        leg_refuse(l, why.status, why.code, "%s", why.msg);
        return false;
    }
    return true;
}

/* Sends checked leg |l|: POST |path| with |body| to the next hop, or the own data space. */
static void leg_send(qrun *run, qleg *l, const char *path, const char *ctype,
                     const uint8_t *body, size_t len)
{
    gw_stream *s = run->s;
    gw_worker *w = s->conn->w;
    const char *self = w->srv->cfg->city;
    if (l->is_local) { /* this city's own data: its data space governs, no border crossed */
        xjob *x = xjob_new(w);
        if (x == NULL || space_leg_decode(body, len, &x->in) != 0) {
            if (x != NULL) {
                xjob_free(x);
            }
            leg_finish(l, 0, "internal", "out of memory", NULL, 0);
            return;
        }
        x->leg = l;
        x->k = own_k(w->srv);
        snprintf(x->history, sizeof(x->history), "local|%s", s->conn->id.spiffe_id);
        l->local = x;
        if (w->srv->space == NULL) { /* this city's external data space */
            json_t *j = w->upstream != NULL ? space_query_to_json(&x->in.q) : NULL;
            char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
            json_decref(j);
            if (text == NULL) {
                l->local = NULL;
                xjob_free(x);
                leg_finish(l, 0, "upstream_unavailable", "no data space session", NULL, 0);
                return;
            }
            gw_client_call(w->upstream, s, "/space/v1/query", self, (const uint8_t *)text,
                           strlen(text), "application/json", on_local_upstream);
            free(text);
            return;
        }
        xjob_submit(x);
        return;
    }
    if (s->deadline_at_us > 0 && bg_now_us() + 1000 >= s->deadline_at_us) {
        leg_finish(l, 0, "deadline_exceeded", "the query's deadline passed before the leg left",
                   NULL, 0);
        return;
    }
    bg_strlcpy(l->leg.path, path, sizeof(l->leg.path));
    bg_strlcpy(l->leg.request_id, s->request_id, sizeof(l->leg.request_id));
    bg_strlcpy(l->leg.hops, self, sizeof(l->leg.hops));
    bg_strlcpy(l->leg.dest, l->city, sizeof(l->leg.dest));
    bg_strlcpy(l->leg.ctype, ctype, sizeof(l->leg.ctype));
    bg_strlcpy(l->leg.requester, s->conn->id.spiffe_id, sizeof(l->leg.requester));
    if (s->deadline_at_us > 0) {
        uint64_t now = bg_now_us();
        l->leg.deadline_ms = s->deadline_at_us > now ? (s->deadline_at_us - now) / 1000 + 1 : 1;
    }
    gw_client_leg(w->peers[l->peer], &l->leg, body, len);
}


/* Encodes the query (with the participants' certificates when masked) and sends it to every
 * leg not refused yet. */
static void send_query_legs(qrun *run)
{
    gw_stream *s = run->s;
    space_leg leg;
    memset(&leg, 0, sizeof(leg));
    bg_strlcpy(leg.query_id, run->query_id, sizeof(leg.query_id));
    leg.q = run->q;
    leg.masked = run->masked;
    for (size_t i = 0; run->masked && i < run->nlegs; i++) {
        qleg *l = &run->legs[i];
        if (!l->done && l->cert != NULL && leg.nparties < SPACE_WIRE_MAX_PARTIES) {
            space_party *p = &leg.parties[leg.nparties++];
            bg_strlcpy(p->city, l->city, sizeof(p->city));
            p->cert_der = l->cert; /* borrowed for the encode */
            p->cert_len = l->cert_len;
        }
    }
    if (run->masked && leg.nparties < 2) { /* one city left: it releases quantiles only */
        run->masked = false;
        leg.masked = false;
        leg.nparties = 0;
    }
    uint8_t *body = NULL;
    size_t len = 0;
    int rv = space_leg_encode(&leg, &body, &len);
    run->pending = 1; /* held until every leg started */
    for (size_t i = 0; i < run->nlegs; i++) {
        qleg *l = &run->legs[i];
        if (l->done) {
            continue;
        }
        if (rv != 0) {
            leg_refuse(l, 500, "internal", "cannot encode the query: %s", bg_strerror(rv));
            continue;
        }
        run->pending++;
        l->sent = true;
        leg_send(run, l, "/fed/v1/query", PB_TYPE, body, len);
    }
    free(run->body); /* kept for retries until the next round */
    run->body = rv == 0 ? body : NULL;
    run->len = rv == 0 ? len : 0;
    if (--run->pending == 0) {
        qrun_phase_done(run);
    }
    (void)s;
}

/* The home city's own external data space answered its leg (home stream |s|). */
static void on_local_upstream(gw_stream *s, int status, const char *ctype_or_code,
                              const char *msg, const uint8_t *body, size_t len)
{
    qrun *run = s->ctx;
    qleg *l = NULL;
    for (size_t i = 0; run != NULL && i < run->nlegs && l == NULL; i++) {
        if (run->legs[i].is_local && run->legs[i].local != NULL) {
            l = &run->legs[i];
        }
    }
    if (l == NULL) {
        return;
    }
    xjob *x = l->local;
    l->local = NULL;
    if (status == 0) {
        xjob_free(x);
        leg_finish(l, 0, ctype_or_code, msg, NULL, 0);
        return;
    }
    json_t *j = status == 200 ? json_loadb((const char *)body, len, 0, NULL) : NULL;
    space_result r;
    bg_errbuf eb = {{0}};
    if (j == NULL || space_result_state_from_json(j, &x->in.q, &r, &eb) != 0) {
        json_decref(j);
        xjob_free(x);
        leg_finish(l, 0, "not_an_aggregate",
                   "this city's data space did not answer an aggregate state", NULL, 0);
        return;
    }
    json_decref(j);
    if (border_check(x, &r)) {
        encode_answer(x, &r);
    }
    space_result_dispose(&r);
    if (x->status == 200) {
        leg_finish(l, 200, PB_TYPE, NULL, x->answer, x->answer_len);
    } else {
        leg_finish(l, 0, x->code, x->msg, NULL, 0);
    }
    xjob_free(x);
}

/* Masked quantiles: the answer of city |l|'s catalog, holding its gateway certificate. */
static void cert_finish(qleg *l, int status, const char *code, const char *msg,
                        const uint8_t *body, size_t len)
{
    qrun *run = l->run;
    json_t *j = status == 200 ? json_loadb((const char *)body, len, 0, NULL) : NULL;
    const char *b64 = json_string_value(json_object_get(j, "gateway_cert"));
    size_t n = b64 != NULL ? strlen(b64) : 0;
    if (status == 0) {
        leg_refuse(l, 502, code != NULL ? code : "bad_gateway", "%s", msg != NULL ? msg : "");
    } else if (n == 0 || n > 4 * 16384 / 3 + 4 || (l->cert = malloc(n / 4 * 3 + 3)) == NULL ||
               !trust_b64_decode(b64, n, l->cert, n / 4 * 3 + 3, &l->cert_len)) {
        free(l->cert);
        l->cert = NULL;
        leg_refuse(l, 502, "bad_gateway", "%s sent no usable gateway certificate", l->city);
    }
    json_decref(j);
    if (--run->pending == 0) {
        qrun_phase_done(run);
    }
}

static void qrun_phase_done(qrun *run)
{
    gw_stream *s = run->s;
    if (run->fetching) {
        run->fetching = false;
        send_query_legs(run);
        return;
    }
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < run->nlegs; i++) {
        ok += run->legs[i].ok;
        failed += run->legs[i].sent && !run->legs[i].ok;
    }
    if (run->masked && failed > 0 && ok > 0 && !run->retried) {
        /* a party's masks are missing, so the others' grids cannot be unmasked: once more
         * with the cities that answered (a new query id, so new masks) */
        run->retried = true;
        for (size_t i = 0; i < run->nlegs; i++) {
            qleg *l = &run->legs[i];
            if (l->ok) {
                space_result_dispose(&l->result);
                l->ok = l->done = false;
            }
            l->sent = false; /* the failed ones stay done, with their error */
        }
        gw_worker_new_request_id(s->conn->w, run->query_id);
        send_query_legs(run);
        return;
    }
    if (run->masked && failed > 0) { /* masks did not cancel: nothing to merge */
        for (size_t i = 0; i < run->nlegs; i++) {
            run->legs[i].ok = false;
        }
    }
    qrun_answer(run); /* answers and frees |run|, after the home's receipts */
    (void)s;
}

/* Fires shortly before the query's deadline (the home's request timer would answer 504 for
 * the whole query): every leg still out is timed out, so the answer is `partial` with those
 * cities' status rather than nothing. */
static void on_run_deadline(evutil_socket_t fd, short what, void *arg)
{
    qrun *run = arg;
    gw_stream *s = run->s; /* outlives |run|: a stream closes only after its answer went out */
    gw_worker *w = s->conn->w;
    (void)fd;
    (void)what;
    run->timer_set = false;
    for (size_t i = 0; i < run->nlegs; i++) {
        qleg *l = &run->legs[i];
        if (l->done || (!l->sent && !run->fetching)) {
            continue;
        }
        gw_leg_cancel(&l->leg);
        if (l->local != NULL && l->local->queued) {
            l->local->leg = NULL; /* its result is dropped when it comes back */
        } else if (l->local != NULL) { /* the external data space's call */
            if (s->up != NULL) {
                gw_cstream_detach(s->up);
                s->up = NULL;
            }
            xjob_free(l->local);
        }
        l->local = NULL;
        if (run->fetching) {
            cert_finish(l, 0, "timeout", "no certificate before the deadline", NULL, 0);
        } else {
            leg_finish(l, 0, "timeout", "no answer before the query's deadline", NULL, 0);
        }
        if (s->ctx != (void *)run) {
            break; /* the run answered and was freed: |run| must not be read again */
        }
    }
    gw_worker_run_deferred(w);
}

bool gw_queries_client(gw_stream *s)
{
    gw_worker *w = s->conn->w;
    if (strcmp(s->method, "POST") != 0) {
        gw_stream_error(s, 405, "method_not_allowed", "%s %s: use POST", s->method, s->path);
        return true;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)s->body.data, s->body.len, 0, &jerr);
    if (!json_is_object(root)) {
        gw_stream_error(s, 400, "invalid_json", "request body is not a JSON object%s%s",
                        root == NULL ? ": " : "", root == NULL ? jerr.text : "");
        json_decref(root);
        return true;
    }
    const char *ds = json_string_value(json_object_get(root, "dataset"));
    const char *slash = ds != NULL ? strchr(ds, '/') : NULL;
    if (slash != NULL && !(slash - ds == 1 && ds[0] == '*') &&
        space_schema_find(slash + 1) == NULL && w->srv->store == NULL) {
        /* not a federation dataset, on a gateway that keeps no contracts (a transport test
         * federation): the caller relays it opaquely; its city serves it only with
         * upstream.passthrough */
        json_decref(root);
        return false;
    }
    qrun *run = calloc(1, sizeof(*run));
    if (run == NULL) {
        json_decref(root);
        gw_stream_error(s, 500, "internal", "out of memory");
        return true;
    }
    run->s = s;
    bg_errbuf eb = {{0}};
    if (space_query_from_json(root, &run->q, &eb) != 0) {
        gw_stream_error(s, 400, "invalid_query", "%s", eb.msg);
        json_decref(root);
        free(run);
        return true;
    }
    json_t *dl = json_object_get(root, "deadline_ms");
    uint64_t deadline_ms = w->srv->cfg->timeouts.request_ms;
    if (dl != NULL) {
        if (!json_is_integer(dl) || json_integer_value(dl) < 1 ||
            json_integer_value(dl) > (json_int_t)deadline_ms) {
            gw_stream_error(s, 400, "bad_request", "\"deadline_ms\" must be 1..%llu",
                            (unsigned long long)deadline_ms);
            json_decref(root);
            free(run);
            return true;
        }
        deadline_ms = (uint64_t)json_integer_value(dl);
    }
    s->deadline_at_us = s->start_us + deadline_ms * 1000;
    bool ok = plan(run, root);
    json_decref(root);
    if (!ok) {
        free(run->legs);
        free(run);
        return true;
    }
    bg_strlcpy(s->dataset, run->dataset, sizeof(s->dataset));
    bg_strlcpy(s->operation, space_op_name(run->q.op), sizeof(s->operation));
    bg_strlcpy(s->dest, run->pattern ? "*" : run->legs[0].city, sizeof(s->dest)); /* the log */
    gw_worker_new_request_id(w, run->query_id); /* hex, whatever the client's x-request-id */
    run->masked = run->pattern && run->q.op == SPACE_OP_QUANTILES && run->nlegs > 1;
    s->ctx = run;
    s->ctx_free = qrun_free;
    {
        uint64_t margin = deadline_ms / 10 < 100 ? deadline_ms / 10 : 100;
        uint64_t in_ms = deadline_ms - margin;
        struct timeval tv = {(time_t)(in_ms / 1000), (suseconds_t)(in_ms % 1000) * 1000};
        evtimer_assign(&run->timer, w->base, on_run_deadline, run);
        run->timer_set = evtimer_add(&run->timer, &tv) == 0;
    }
    run->pending = 1; /* held until every leg started */
    for (size_t i = 0; i < run->nlegs; i++) {
        leg_check(run, &run->legs[i]);
    }
    if (run->masked) { /* first every participant's gateway certificate */
        run->fetching = true;
        for (size_t i = 0; i < run->nlegs; i++) {
            qleg *l = &run->legs[i];
            if (l->done) {
                continue;
            }
            if (l->is_local) {
                bg_buf der;
                bg_buf_init(&der);
                if (trust_tls_cert_der(w->srv->tls, &der) != 0) {
                    leg_refuse(l, 500, "internal", "cannot read this gateway's certificate");
                } else {
                    l->cert = der.data; /* taken */
                    l->cert_len = der.len;
                }
                continue;
            }
            run->pending++;
            leg_send(run, l, "/fed/v1/catalog", "application/json", NULL, 0);
        }
        if (--run->pending == 0) {
            qrun_phase_done(run);
        }
        return true;
    }
    run->pending = 0;
    send_query_legs(run);
    return true;
}
