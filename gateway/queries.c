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
#include "trust/disclosure.h"

#define QUERY_MAX_LEGS 16
#define PB_TYPE "application/x-protobuf"

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
    space_leg in;
    char city[64];
    uint32_t k;
    double epsilon;
    char history[400];
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
    if (x->epsilon > 0) {
        if (r->op != SPACE_OP_COUNT && r->op != SPACE_OP_HISTOGRAM && r->op != SPACE_OP_SUM) {
            xjob_fail(x, 403, "dp_unsupported_operation",
                      "the contract carries a privacy budget; %s cannot be released with noise "
                      "(count, histogram and sum can)",
                      space_op_name(r->op));
            return false;
        }
        const space_schema *sc = space_schema_find(x->in.q.dataset);
        int fi = sc != NULL ? space_schema_field(sc, x->in.q.field) : -1;
        trust_dp dp = {.eps_num = (uint64_t)llround(x->epsilon * 1000.0), .eps_den = 1000,
                       .sens_count = 1};
        if (r->op == SPACE_OP_SUM && fi >= 0) {
            const space_field *f = &sc->fields[fi];
            double m = fmax(fabs(f->lo), fabs(f->hi));
            dp.sens_sum = (uint64_t)llround(m / f->resolution);
        }
        if (dp.eps_num == 0) {
            dp.eps_num = 1;
        }
        int rv = trust_disclosure_noise(r, &dp);
        if (rv != 0) {
            xjob_fail(x, 502, "disclosure_refused", "noise could not be applied: %s",
                      bg_strerror(rv));
            return false;
        }
    }
    trust_disclosure pol = {.k = x->k, .zero_is_safe = true};
    uint8_t *bin_supp = NULL;
    int rv = trust_disclosure_apply(&pol, r, &bin_supp, NULL);
    if (rv != 0) {
        xjob_fail(x, 502, "not_an_aggregate",
                  "the data space returned something that is not a well-formed aggregate of "
                  "this query; nothing was released");
        return false;
    }
    if (bin_supp != NULL) {
        for (size_t i = 0; i < r->ncells; i++) {
            space_cell *c = &r->cells[i];
            c->bin_supp = malloc(c->nbins);
            if (c->bin_supp == NULL) {
                free(bin_supp);
                xjob_fail(x, 500, "internal", "out of memory");
                return false;
            }
            memcpy(c->bin_supp, bin_supp + i * c->nbins, c->nbins);
        }
        free(bin_supp);
    }
    if (r->op == SPACE_OP_QUANTILES && !x->in.masked) {
        /* one city: release the quantiles only, never the fine grid */
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
    } else if (r->op == SPACE_OP_QUANTILES) {
        xjob_fail(x, 501, "secure_aggregation_unavailable",
                  "quantiles across cities need secure aggregation of the fine grid, which this "
                  "gateway does not offer yet");
        return false;
    }
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
    space_exec_opts opts = {.k = x->k, .history_key = x->history[0] ? x->history : NULL};
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

/* Loop thread: the executor finished |j|. */
static void xjob_deliver(gw_job *j)
{
    xjob *x = (xjob *)(void *)j;
    if (x->s != NULL) {
        gw_stream *s = x->s;
        s->ctx = NULL;
        s->ctx_free = NULL;
        if (x->status == 200) {
            gw_stream_respond(s, 200, PB_TYPE, x->answer, x->answer_len);
        } else {
            gw_stream_error(s, x->status, x->code, "%s", x->msg);
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
    if (x->status == 200) {
        gw_stream_respond(s, 200, PB_TYPE, x->answer, x->answer_len);
    } else {
        gw_stream_error(s, x->status, x->code, "%s", x->msg);
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
    s->ctx = x;
    s->ctx_free = xjob_ctx_free;
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
    x->k = own_k(w->srv);
    double eps = 0;
    uint32_t ck = 0;
    if (s->contract[0] && gw_contracts_limits(w, s->contract, &ck, &eps)) {
        x->k = ck > x->k ? ck : x->k;
        x->epsilon = eps;
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
};

struct qrun {
    gw_stream *s;
    space_query q;
    const space_schema *schema;
    char dataset[200];
    bool pattern;
    qleg legs[QUERY_MAX_LEGS];
    size_t nlegs, pending;
};

static void qrun_free(void *p)
{
    qrun *run = p;
    for (size_t i = 0; i < run->nlegs; i++) {
        qleg *l = &run->legs[i];
        gw_leg_cancel(&l->leg);
        if (l->local != NULL) {
            l->local->leg = NULL;
        }
        space_result_dispose(&l->result);
    }
    free(run);
}

static json_t *city_status(const qleg *l)
{
    if (l->ok) {
        return json_pack("{s:s}", "status", "ok");
    }
    return json_pack("{s:s,s:s,s:i,s:s}", "status", "error", "code", l->code, "http_status",
                     l->status, "message", l->msg);
}

/* Every leg is done: merge what succeeded and answer. */
static void qrun_answer(qrun *run)
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
    if (!run->pattern && first_err != NULL) { /* one city: its error is the answer */
        gw_stream_error(s, first_err->status ? first_err->status : 502, first_err->code, "%s",
                        first_err->msg);
        return;
    }
    json_t *cities = json_object();
    for (size_t i = 0; i < run->nlegs; i++) {
        json_object_set_new(cities, run->legs[i].city, city_status(&run->legs[i]));
    }
    if (nok == 0) {
        json_t *err = json_pack("{s:{s:s,s:s},s:o,s:b}", "error", "code", "all_cities_failed",
                                "message", "no city answered; see \"cities\"", "cities", cities,
                                "partial", true);
        gw_stream_respond_json(s, 502, err);
        return;
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
        gw_stream_error(s, 502, "merge_failed", "the cities' answers do not merge: %s",
                        bg_strerror(rv));
        return;
    }
    json_t *result = space_answer_json(&run->q, run->schema, &merged, legs, n);
    space_result_dispose(&merged);
    json_t *j = json_pack("{s:s,s:s,s:o,s:o,s:b}", "dataset", run->dataset, "op",
                          space_op_name(run->q.op), "result", result ? result : json_null(),
                          "cities", cities, "partial", nok < run->nlegs);
    gw_stream_respond_json(s, 200, j);
}

static void leg_finish(qleg *l, int status, const char *ctype_or_code, const char *msg,
                       const uint8_t *body, size_t len)
{
    qrun *run = l->run;
    l->local = NULL;
    if (l->done) {
        return;
    }
    l->done = true;
    if (status == 0) { /* no answer at all */
        l->status = 502;
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
            space_leg_answer_dispose(&a);
            l->ok = true;
        }
    }
    if (--run->pending == 0) {
        gw_stream *s = run->s;
        s->ctx = NULL;
        s->ctx_free = NULL;
        qrun_answer(run);
        qrun_free(run);
    }
}

static void on_leg_done(gw_leg *leg, int status, const char *ctype_or_code, const char *msg,
                        const uint8_t *body, size_t len)
{
    leg_finish((qleg *)(void *)leg, status, ctype_or_code, msg, body, len);
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
    const char *city;
    json_t *v;
    json_object_foreach(contracts, city, v)
    {
        if (run->nlegs == QUERY_MAX_LEGS) {
            gw_stream_error(s, 400, "bad_request", "at most %d cities per query", QUERY_MAX_LEGS);
            return false;
        }
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

/* Starts leg |l|: usage control here, then the own data space or the next hop. */
static void leg_start(qrun *run, qleg *l, const uint8_t *body, size_t len, bool *sent)
{
    gw_stream *s = run->s;
    gw_worker *w = s->conn->w;
    const char *self = w->srv->cfg->city;
    char dataset[200];
    snprintf(dataset, sizeof(dataset), "%s/%s", l->city, run->q.dataset);
    l->run = run;
    l->leg.done = on_leg_done;
    bool local = strcmp(l->city, self) == 0;
    gw_refusal why;
    if (!local && !gw_contracts_check_home(w, l->leg.contract, s->conn->id.spiffe_id, dataset,
                                           space_op_name(run->q.op), &why)) {
        *sent = false;
        l->done = true;
        l->status = why.status;
        bg_strlcpy(l->code, why.code, sizeof(l->code));
        bg_strlcpy(l->msg, why.msg, sizeof(l->msg));
        return;
    }
    *sent = true;
    if (local) { /* this city's own data: its data space governs, no border crossed */
        xjob *x = xjob_new(w);
        if (x == NULL || space_leg_decode(body, len, &x->in) != 0) {
            if (x != NULL) {
                xjob_free(x);
            }
            *sent = false;
            l->done = true;
            l->status = 500;
            bg_strlcpy(l->code, "internal", sizeof(l->code));
            bg_strlcpy(l->msg, "out of memory", sizeof(l->msg));
            return;
        }
        x->leg = l;
        x->k = own_k(w->srv);
        snprintf(x->history, sizeof(x->history), "local|%s", s->conn->id.spiffe_id);
        l->local = x;
        if (w->srv->space == NULL) {
            xjob_fail(x, 502, "upstream_unsupported", "this city has no embedded data space");
            x->queued = true;
            gw_worker_post(w, &x->job);
            return;
        }
        xjob_submit(x);
        return;
    }
    const conf_peer *next = NULL;
    if (route_table_next_hop(w->gen->rt, l->city, &next) != 0 || next == NULL) {
        *sent = false;
        l->done = true;
        l->status = 502;
        bg_strlcpy(l->code, "no_route", sizeof(l->code));
        snprintf(l->msg, sizeof(l->msg), "no route from %s to %s", self, l->city);
        return;
    }
    size_t pi = (size_t)(next - w->gen->cfg->peers);
    bg_strlcpy(l->leg.path, "/fed/v1/query", sizeof(l->leg.path));
    bg_strlcpy(l->leg.request_id, s->request_id, sizeof(l->leg.request_id));
    bg_strlcpy(l->leg.hops, self, sizeof(l->leg.hops));
    bg_strlcpy(l->leg.dest, l->city, sizeof(l->leg.dest));
    bg_strlcpy(l->leg.ctype, PB_TYPE, sizeof(l->leg.ctype));
    bg_strlcpy(l->leg.requester, s->conn->id.spiffe_id, sizeof(l->leg.requester));
    if (s->deadline_at_us > 0) {
        uint64_t now = bg_now_us();
        l->leg.deadline_ms = s->deadline_at_us > now ? (s->deadline_at_us - now) / 1000 + 1 : 1;
    }
    gw_client_leg(w->peers[pi], &l->leg, body, len);
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
    if (slash != NULL && !(slash - ds == 1 && ds[0] == '*') && space_schema_find(slash + 1) == NULL) {
        json_decref(root); /* not a federation dataset: the caller relays it */
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
        free(run);
        return true;
    }
    bg_strlcpy(s->dataset, run->dataset, sizeof(s->dataset));
    bg_strlcpy(s->operation, space_op_name(run->q.op), sizeof(s->operation));
    bg_strlcpy(s->dest, run->pattern ? "*" : run->legs[0].city, sizeof(s->dest)); /* the log */
    /* one encoding of the leg serves every city */
    space_leg leg;
    memset(&leg, 0, sizeof(leg));
    char qid[33];
    gw_worker_new_request_id(w, qid); /* hex, whatever the client's x-request-id */
    bg_strlcpy(leg.query_id, qid, sizeof(leg.query_id));
    leg.q = run->q;
    leg.masked = run->pattern && run->q.op == SPACE_OP_QUANTILES && run->nlegs > 1;
    uint8_t *body = NULL;
    size_t len = 0;
    if (space_leg_encode(&leg, &body, &len) != 0) {
        free(run);
        gw_stream_error(s, 500, "internal", "cannot encode the query");
        return true;
    }
    s->ctx = run;
    s->ctx_free = qrun_free;
    run->pending = run->nlegs + 1; /* +1: held until every leg started */
    for (size_t i = 0; i < run->nlegs; i++) {
        bool sent = false;
        leg_start(run, &run->legs[i], body, len, &sent);
        if (!sent) {
            run->pending--;
        }
    }
    free(body);
    if (--run->pending == 0) {
        s->ctx = NULL;
        s->ctx_free = NULL;
        qrun_answer(run);
        qrun_free(run);
    }
    return true;
}
