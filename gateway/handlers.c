/* gateway/handlers.c: the request pipeline. Every federated request goes through the same
 * named stages, so that later issues slot in without rewrites:
 *   authorize -> authenticate peer -> parse -> route -> enforce -> forward ... record
 * authorize:    every request: revoked identities, the authorization table (authz.c), rate
 *               limits (limits.c).
 * authenticate: for /fed/, the caller is a configured peer.
 * route:        which city holds the dataset, next hop or local upstream, hop-list checks.
 * enforce:      contracts and usage control (issue 3); today it allows what authenticate allowed.
 * forward:      to the next-hop peer (/fed/v1/query) or the data-space upstream (/space/v1/query).
 * record:       access log and metrics when the stream closes (receipts: issue 5).
 * Operator endpoints (/healthz, /readyz, /metrics) are answered here too. */
#include "gateway/gw_int.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/ids.h"
#include "base/log.h"

/* Routes named by a prefix: the prefix, then "" or "/<something>". */
static const struct {
    const char *prefix;
    gw_route_id id;
} prefixes[] = {{"/v1/contracts", GW_ROUTE_CONTRACTS},
                {"/fed/v1/contracts", GW_ROUTE_FED_CONTRACTS},
                {"/v1/ledger", GW_ROUTE_LEDGER},
                {"/v1/receipts", GW_ROUTE_LEDGER},
                {"/v1/firms", GW_ROUTE_FIRMS}};

void gw_request_classify(gw_stream *s)
{
    const char *p = s->path;
    size_t n = strcspn(p, "?");
    struct {
        const char *path;
        gw_route_id id;
    } table[] = {
        {"/healthz", GW_ROUTE_HEALTHZ},     {"/readyz", GW_ROUTE_READYZ},
        {"/metrics", GW_ROUTE_METRICS},     {"/v1/queries", GW_ROUTE_QUERIES},
        {"/fed/v1/query", GW_ROUTE_FED_QUERY}, {"/v1/catalog", GW_ROUTE_CATALOG},
        {"/fed/v1/catalog", GW_ROUTE_FED_CATALOG}, {"/fed/v1/witness", GW_ROUTE_FED_WITNESS},
        {"/v1/crl", GW_ROUTE_CRL},
    };
    s->route = GW_ROUTE_OTHER;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strlen(table[i].path) == n && strncmp(p, table[i].path, n) == 0) {
            s->route = table[i].id;
            return;
        }
    }
    /* prefix routes: a fixed prefix, then "" or "/<something>" */
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pl = strlen(prefixes[i].prefix);
        if (n >= pl && strncmp(p, prefixes[i].prefix, pl) == 0 && (n == pl || p[pl] == '/')) {
            s->route = prefixes[i].id;
            return;
        }
    }
}

/* What follows |s|'s route prefix in its path ("" for exact routes), for the authz table. */
static const char *route_subpath(const gw_stream *s)
{
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pl = strlen(prefixes[i].prefix);
        if (prefixes[i].id == s->route && strncmp(s->path, prefixes[i].prefix, pl) == 0) {
            return s->path + pl;
        }
    }
    return "";
}

/* ---- stages ----------------------------------------------------------------------------------- */

static bool route_is_fed(gw_route_id r)
{
    return r == GW_ROUTE_FED_QUERY || r == GW_ROUTE_FED_CATALOG || r == GW_ROUTE_FED_CONTRACTS ||
           r == GW_ROUTE_FED_WITNESS;
}

/* Answers 429 rate_limited for limit |k| with Retry-After |retry_s|. */
static void answer_limited(gw_stream *s, gw_limit_kind k, uint32_t retry_s)
{
    const conf_limits *c = &s->conn->w->srv->cfg->limits;
    gw_metrics_rate_limited(s->conn->w->srv->metrics, k);
    s->retry_after_s = retry_s;
    switch (k) {
    case GW_LIMIT_FIRM_STREAMS:
        gw_stream_error(s, 429, "rate_limited", "%s has %u requests in flight, the most allowed",
                        s->conn->id.spiffe_id, c->firm_max_streams);
        return;
    case GW_LIMIT_APPLY:
        gw_stream_error(s, 429, "rate_limited",
                        "at most %u applications a minute from one address; retry in %u s",
                        c->apply_per_minute, retry_s);
        return;
    default:
        gw_stream_error(s, 429, "rate_limited",
                        "%s is over %u requests/s (burst %u); retry in %u s",
                        s->conn->id.spiffe_id, c->firm_rps, c->firm_burst, retry_s);
        return;
    }
}

/* authorize: every request. A revoked identity is refused outright; then the authorization
 * table (authz.c) decides; then the rate limits: a firm's bucket and in-flight count on /v1/,
 * and for anyone else applying (POST /v1/firms) the source address's. Returns true when the
 * request may go on; otherwise it answered. */
static bool stage_authorize(gw_stream *s)
{
    gw_conn *conn = s->conn;
    gw_server *srv = conn->w->srv;
    const trust_identity *id = &conn->id;
    if (id->present && gw_identity_revoked(srv, id->spiffe_id)) {
        bg_log(BG_LOG_INFO, "conn=%llu stream=%d msg=\"refused: identity revoked\" identity=\"%s\"",
               (unsigned long long)conn->conn_id, s->id, id->spiffe_id);
        gw_stream_error(s, 403, "certificate_revoked", "the certificate of %s has been revoked",
                        id->spiffe_id);
        return false;
    }
    const char *why = NULL;
    size_t plen = strcspn(s->path, "?");
    switch (gw_authz_check(s->route, s->method, route_subpath(s), id, conn->lst->local,
                           srv->cfg->city, &why)) {
    case GW_AUTHZ_ALLOW:
        break;
    case GW_AUTHZ_NO_PATH:
        gw_stream_error(s, 404, "not_found", "no such endpoint: %.*s", (int)plen, s->path);
        return false;
    case GW_AUTHZ_NO_METHOD:
        gw_stream_error(s, 405, "method_not_allowed", "%s is not allowed on %.*s", s->method,
                        (int)plen, s->path);
        return false;
    case GW_AUTHZ_DENY:
        /* the codes callers already know: peers' and certificate-less callers' */
        gw_stream_error(s, 403,
                        route_is_fed(s->route) ? "peer_not_allowed"
                        : !id->present         ? "client_certificate_required"
                                               : "forbidden",
                        "%s %.*s is for %s (this city: %s; caller: %s)", s->method, (int)plen,
                        s->path, why, srv->cfg->city,
                        id->present && id->spiffe_id[0] ? id->spiffe_id
                        : id->present                   ? "a certificate without a SPIFFE id"
                                                        : "no client certificate");
        return false;
    }
    if (route_is_fed(s->route) || s->route == GW_ROUTE_HEALTHZ || s->route == GW_ROUTE_READYZ ||
        s->route == GW_ROUTE_METRICS) {
        return true; /* not a /v1/ endpoint */
    }
    uint32_t retry = 1;
    gw_limit_kind k = GW_LIMIT_OK;
    const char *sub = route_subpath(s);
    assert(s->limit_slot == NULL); /* dispatched once */
    if (id->present && id->verified && strcmp(id->role, "firm") == 0) {
        k = gw_limits_firm_admit(srv, id->spiffe_id, bg_now_us(), &s->limit_slot, &retry);
    } else if (s->route == GW_ROUTE_FIRMS && strcmp(s->method, "POST") == 0 &&
               (sub[0] == 0 || sub[0] == '?')) { /* an application, by anyone but a firm */
        k = gw_limits_apply_admit(srv, conn->addr, bg_now_us(), &retry);
    }
    if (k != GW_LIMIT_OK) {
        answer_limited(s, k, retry);
        return false;
    }
    return true;
}

/* authenticate (federation side): the certificate chains to the bundle (checked at the
 * handshake) and its SPIFFE id is exactly a configured peer's. */
static const conf_peer *stage_authenticate_peer(gw_stream *s)
{
    const trust_identity *id = &s->conn->id;
    const conf_gateway *cfg = s->conn->w->gen->cfg;
    if (id->present && id->verified && id->spiffe_id[0] && s->conn->lst->tls) {
        for (size_t i = 0; i < cfg->npeers; i++) {
            if (strcmp(cfg->peers[i].spiffe_id, id->spiffe_id) == 0) {
                if (gw_witness_blocked(s->conn->w->srv, cfg->peers[i].name)) {
                    gw_stream_error(s, 403, "peer_split_view",
                                    "%s showed this city a split view of its ledger; traffic "
                                    "is stopped until an operator clears it",
                                    cfg->peers[i].name);
                    return NULL;
                }
                return &cfg->peers[i];
            }
        }
    }
    bg_log(BG_LOG_WARN, "conn=%llu stream=%d msg=\"federation call refused\" identity=\"%s\"",
           (unsigned long long)s->conn->conn_id, s->id, id->spiffe_id[0] ? id->spiffe_id : "-");
    gw_stream_error(s, 403, "peer_not_allowed", "%s is not a configured peer gateway",
                    id->spiffe_id[0] ? id->spiffe_id : "the caller");
    return NULL;
}


/* parse: the body is a JSON object naming "dataset": "<city>/<name>"; fills s->dest.
 * The home gateway parses; it sends the destination on as x-baygate-dest, so transit and
 * destination gateways route on that header from an authenticated peer without reading the
 * body (the destination's data space validates the query itself). */
static bool stage_parse(gw_stream *s)
{
    if ((s->route == GW_ROUTE_FED_CONTRACTS || s->route == GW_ROUTE_FED_CATALOG ||
         s->route == GW_ROUTE_FED_WITNESS) &&
        s->dest[0] == 0) {
        gw_stream_error(s, 400, "bad_request", "x-baygate-dest is required on %s", s->path);
        return false;
    }
    if ((s->route == GW_ROUTE_FED_QUERY || s->route == GW_ROUTE_FED_CONTRACTS ||
         s->route == GW_ROUTE_FED_CATALOG || s->route == GW_ROUTE_FED_WITNESS) &&
        s->dest[0]) {
        if (!bg_city_id_valid(s->dest, strlen(s->dest))) {
            gw_stream_error(s, 400, "bad_request", "malformed x-baygate-dest header");
            return false;
        }
        if (s->route == GW_ROUTE_FED_QUERY &&
            strcmp(s->dest, s->conn->w->srv->cfg->city) == 0 &&
            strcmp(s->req_type, "application/x-protobuf") == 0) {
            return gw_queries_fed_parse(s); /* this city holds the data: read the leg */
        }
        return true;
    }
    if (s->route == GW_ROUTE_FED_QUERY) {
        gw_stream_error(s, 400, "bad_request", "x-baygate-dest is required on %s", s->path);
        return false;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)s->body.data, s->body.len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        gw_stream_error(s, 400, "invalid_json", "request body is not a JSON object%s%s",
                        root == NULL ? ": " : "", root == NULL ? jerr.text : "");
        json_decref(root);
        return false;
    }
    const char *ds = json_string_value(json_object_get(root, "dataset"));
    if (ds == NULL || route_dataset_city(ds, s->dest, sizeof(s->dest)) != 0) {
        gw_stream_error(s, 400, "invalid_dataset",
                        "\"dataset\" must be a string \"<city>/<name>\"");
        json_decref(root);
        return false;
    }
    bg_strlcpy(s->dataset, strlen(ds) < sizeof(s->dataset) ? ds : "", sizeof(s->dataset));
    const char *op = json_string_value(json_object_get(root, "operation"));
    bg_strlcpy(s->operation, op != NULL && strlen(op) < sizeof(s->operation) ? op : "count",
               sizeof(s->operation));
    json_t *ct = json_object_get(root, "contract");
    if (ct != NULL && s->route == GW_ROUTE_QUERIES) {
        const char *cid = json_string_value(ct);
        if (cid == NULL || strlen(cid) >= sizeof(s->contract)) {
            json_decref(root);
            gw_stream_error(s, 400, "bad_request", "\"contract\" must be a contract id");
            return false;
        }
        bg_strlcpy(s->contract, cid, sizeof(s->contract));
    }
    json_decref(root);
    return true;
}

const conf_peer *gw_route_pick(gw_worker *w, const char *city, const conf_peer *avoid)
{
    const conf_peer *hops[16];
    size_t n = route_table_next_hops(w->gen->rt, city, hops, 16);
    if (n == 0 && w->learned != NULL) { /* no configured route: what peers advertised */
        const char *names[16];
        size_t m = route_learned_next_hops(w->learned, city, names, NULL, 16);
        for (size_t i = 0; i < m; i++) {
            const conf_peer *p = conf_gateway_find_peer(w->gen->cfg, names[i]);
            if (p != NULL) {
                hops[n++] = p;
            }
        }
    }
    const conf_peer *best = NULL;
    int best_rank = 4;
    for (size_t i = 0; i < n; i++) {
        if (hops[i] == avoid || gw_witness_blocked(w->srv, hops[i]->name)) {
            continue; /* a split view stops traffic with that city */
        }
        gw_client_state st = gw_client_get_state(w->peers[hops[i] - w->gen->cfg->peers]);
        int rank = st == GW_CLIENT_CONNECTED ? 0 : st == GW_CLIENT_BACKOFF ? 2 : 1;
        if (rank < best_rank) { /* ties keep the configured order */
            best = hops[i];
            best_rank = rank;
        }
    }
    return best;
}

/* route: hop-list checks, then own city (upstream) or the next-hop peer. */
static bool stage_route(gw_stream *s, const conf_peer **next, char *hops_out, size_t hops_len)
{
    const gw_server *srv = s->conn->w->srv;
    const char *self = srv->cfg->city;
    int rv = route_hops_check(s->hops, self, srv->cfg->limits.max_hops);
    if (rv == BG_ERR_LOOP) {
        gw_stream_error(s, 508, "loop_detected", "request already passed through %s (hops: %s)",
                        self, s->hops);
        return false;
    }
    if (rv == BG_ERR_TOO_MANY_HOPS) {
        gw_stream_error(s, 508, "too_many_hops", "hop list exceeds %u (hops: %s)",
                        srv->cfg->limits.max_hops, s->hops);
        return false;
    }
    if (rv != 0) {
        gw_stream_error(s, 400, "bad_request", "malformed x-baygate-hops header");
        return false;
    }
    if (route_hops_append(s->hops, self, hops_out, hops_len) != 0) {
        gw_stream_error(s, 508, "too_many_hops", "hop list too long");
        return false;
    }
    rv = route_table_next_hop(s->conn->w->gen->rt, s->dest, next);
    if (rv != 0 || *next != NULL) { /* among alternatives (configured, then learned), a healthy
                                       session first */
        *next = gw_route_pick(s->conn->w, s->dest, NULL);
        rv = *next != NULL ? 0 : BG_ERR_NO_ROUTE;
    }
    if (rv != 0) {
        gw_stream_error(s, 404, "unknown_city", "no route from %s to city %s", self, s->dest);
        return false;
    }
    return true;
}

/* enforce: contracts and usage control (contracts.c). |local|: this city holds the data. */
static gw_enforce stage_enforce(gw_stream *s, bool local)
{
    if (s->route != GW_ROUTE_QUERIES && s->route != GW_ROUTE_FED_QUERY) {
        return GW_ENFORCE_GO;
    }
    if (s->route == GW_ROUTE_FED_QUERY && !local) {
        return GW_ENFORCE_GO; /* transit: the provider enforces */
    }
    return gw_contracts_enforce(s, local);
}

/* forward: to the next-hop peer, or to this city's data space. */
static void stage_forward(gw_stream *s, const conf_peer *next, const char *hops)
{
    gw_worker *w = s->conn->w;
    if (next != NULL) {
        size_t i = (size_t)(next - w->gen->cfg->peers);
        char path[64];
        if (s->route == GW_ROUTE_FED_CONTRACTS || s->route == GW_ROUTE_FED_CATALOG ||
            s->route == GW_ROUTE_FED_WITNESS) {
            /* passed on as it came */
            size_t n = strcspn(s->path, "?");
            bg_strlcpy(path, s->path, n + 1 < sizeof(path) ? n + 1 : sizeof(path));
        } else {
            bg_strlcpy(path, "/fed/v1/query", sizeof(path));
        }
        gw_client_forward(w->peers[i], s, path, hops);
        return;
    }
    if (s->route == GW_ROUTE_FED_WITNESS) { /* a peer shows us its checkpoint */
        gw_witness_fed(s);
        return;
    }
    if (s->route == GW_ROUTE_FED_CATALOG) { /* this city's own catalog */
        gw_catalog_fed(s);
        return;
    }
    if (s->route == GW_ROUTE_FED_CONTRACTS) { /* this city is the provider */
        bg_strlcpy(s->hops, hops, sizeof(s->hops));
        gw_contracts_fed(s);
        return;
    }
    bg_strlcpy(s->resp_route, hops, sizeof(s->resp_route));
    if (s->route == GW_ROUTE_FED_QUERY && s->ctx != NULL) {
        gw_queries_fed(s); /* a federated query leg */
        return;
    }
    if (w->gen->cfg->upstream.builtin || !w->gen->cfg->upstream.passthrough) {
        char name[200] = "", near[300];
        if (s->dataset[0] == 0) { /* arrived from a peer: the name is in the body */
            json_t *root = json_loadb((const char *)s->body.data, s->body.len, 0, NULL);
            const char *ds = json_string_value(json_object_get(root, "dataset"));
            bg_strlcpy(s->dataset, ds != NULL ? ds : "", sizeof(s->dataset));
            json_decref(root);
        }
        const char *sl = strchr(s->dataset, '/');
        bg_strlcpy(name, sl != NULL ? sl + 1 : s->dataset, sizeof(name));
        gw_queries_near_names(name, near, sizeof(near));
        gw_stream_error(s, 404, "unknown_dataset",
                        "no dataset called %s in the federation; did you mean: %s", name, near);
        return;
    }
    if (w->upstream == NULL) {
        gw_stream_error(s, 502, "upstream_unavailable", "no upstream session (out of memory)");
        return;
    }
    gw_client_forward(w->upstream, s, "/space/v1/query", hops);
}

/* ---- operator endpoints ----------------------------------------------------------------------- */


/* One session per worker: "connected" when every worker's is, else this worker's state, or
 * "partial" when this worker's is connected but another's is not. Requests land on any worker,
 * so ready means all of them can reach every peer. */
static const char *session_state(gw_worker *w, const gw_client *cl, bool *ready)
{
    long long up = gw_metrics_peer_count(w->srv->metrics, gw_client_name(cl),
                                         GW_CLIENT_CONNECTED);
    gw_client_state st = gw_client_get_state(cl);
    if (up >= (long long)w->srv->nworkers) {
        return "connected";
    }
    *ready = false;
    return st == GW_CLIENT_CONNECTED ? "partial" : gw_client_state_name(st);
}

static void handle_readyz(gw_stream *s)
{
    gw_worker *w = s->conn->w;
    bool ready = true;
    json_t *peers = json_object();
    for (size_t i = 0; i < w->npeers; i++) {
        json_object_set_new(peers, gw_client_name(w->peers[i]),
                            json_string(session_state(w, w->peers[i], &ready)));
    }
    const char *up = "builtin";
    if (w->upstream != NULL) {
        up = session_state(w, w->upstream, &ready);
    } else if (!w->gen->cfg->upstream.builtin) {
        up = "none";
        ready = false;
    }
    if (atomic_load(&w->srv->draining)) {
        ready = false;
    }
    gw_stream_respond_json(s, ready ? 200 : 503,
                           json_pack("{s:b,s:s,s:o,s:s}", "ready", ready, "city",
                                     w->srv->cfg->city, "peers", peers, "upstream", up));
}

static void handle_metrics(gw_stream *s)
{
    bg_buf out;
    bg_buf_init(&out);
    gw_server *srv = s->conn->w->srv;
    uint64_t size = 0;
    gw_receipts_stat st;
    gw_receipts_stats(srv, &st);
    if (srv->ledger != NULL) {
        trust_ledger_size(srv->ledger, &size);
    }
    if (gw_metrics_render(srv->metrics, &out) != 0 ||
        bg_buf_appendf(&out,
                       "# HELP baygate_ledger_receipts_total Receipts handed to the ledger writer.\n"
                       "# TYPE baygate_ledger_receipts_total counter\n"
                       "baygate_ledger_receipts_total{result=\"appended\"} %llu\n"
                       "baygate_ledger_receipts_total{result=\"failed\"} %llu\n"
                       "# HELP baygate_ledger_batches_total Group commits (one checkpoint each).\n"
                       "# TYPE baygate_ledger_batches_total counter\n"
                       "baygate_ledger_batches_total %llu\n"
                       "# HELP baygate_ledger_commit_seconds Wall time of the group commits "
                       "(append, query counts, checkpoint signature, sync).\n"
                       "# TYPE baygate_ledger_commit_seconds summary\n"
                       "baygate_ledger_commit_seconds_sum %.6f\n"
                       "baygate_ledger_commit_seconds_count %llu\n"
                       "# HELP baygate_ledger_budget_refusals_total Releases recorded as refusals "
                       "because concurrent queries had used the contract's last queries.\n"
                       "# TYPE baygate_ledger_budget_refusals_total counter\n"
                       "baygate_ledger_budget_refusals_total %llu\n"
                       "# HELP baygate_witness_split_views_total Split views seen of peers.\n"
                       "# TYPE baygate_witness_split_views_total counter\n"
                       "baygate_witness_split_views_total %llu\n"
                       "# HELP baygate_ledger_size Receipts in the ledger.\n"
                       "# TYPE baygate_ledger_size gauge\n"
                       "baygate_ledger_size %llu\n",
                       (unsigned long long)st.appended, (unsigned long long)st.failed,
                       (unsigned long long)st.batches, (double)st.commit_us / 1e6,
                       (unsigned long long)st.batches, (unsigned long long)st.budget_refused,
                       (unsigned long long)gw_witness_split_views(srv),
                       (unsigned long long)size) != 0) {
        bg_buf_dispose(&out);
        gw_stream_error(s, 500, "internal", "out of memory");
        return;
    }
    gw_stream_respond(s, 200, "text/plain; version=0.0.4", out.data, out.len);
    bg_buf_dispose(&out);
}

void gw_request_dispatch(gw_stream *s)
{
    gw_server *srv = s->conn->w->srv;
    if (s->responded || !stage_authorize(s)) { /* GW_ROUTE_OTHER: 404 there */
        return;
    }
    switch (s->route) {
    case GW_ROUTE_HEALTHZ:
        gw_stream_respond_json(s, 200, json_pack("{s:s,s:s}", "status", "ok", "city", srv->cfg->city));
        return;
    case GW_ROUTE_READYZ:
        handle_readyz(s);
        return;
    case GW_ROUTE_METRICS:
        handle_metrics(s);
        return;
    case GW_ROUTE_LEDGER:
        gw_ledger_api(s);
        return;
    case GW_ROUTE_CATALOG:
        gw_catalog_client(s);
        return;
    case GW_ROUTE_CONTRACTS: /* which of GET, POST, DELETE on which path: checked there */
        gw_contracts_client(s);
        return;
    case GW_ROUTE_FIRMS:
        gw_firms_client(s);
        return;
    case GW_ROUTE_CRL:
        gw_firms_crl(s);
        return;
    default:
        break;
    }
    char hops[1100];
    const conf_peer *next = NULL;
    if (s->route == GW_ROUTE_QUERIES) {
        s->hops[0] = 0; /* a client does not choose the hop list, the destination */
        s->dest[0] = 0; /* or for whom a query runs */
        s->contract[0] = 0;
        bg_strlcpy(s->requester, s->conn->id.spiffe_id, sizeof(s->requester));
        if (gw_queries_client(s)) {
            return;
        }
        /* a dataset outside the federation's schemas: relayed opaquely to its city, whose
         * gateway serves it only with upstream.passthrough */
    } else if (stage_authenticate_peer(s) == NULL) {
        return;
    }
    if (s->route == GW_ROUTE_FED_QUERY && s->deadline_ms > 0) { /* shrinks at every hop */
        s->deadline_at_us = s->start_us + s->deadline_ms * 1000;
        if (s->deadline_ms <= 1) {
            gw_stream_error(s, 504, "deadline_exceeded",
                            "the query's deadline passed before it reached %s",
                            srv->cfg->city);
            return;
        }
    }
    if (!stage_parse(s) || !stage_route(s, &next, hops, sizeof(hops))) {
        return;
    }
    switch (stage_enforce(s, next == NULL)) {
    case GW_ENFORCE_GO:
        stage_forward(s, next, hops);
        return;
    case GW_ENFORCE_WAIT: /* only a provider waits, and a provider forwards locally */
        bg_strlcpy(s->fwd_hops, hops, sizeof(s->fwd_hops));
        return;
    case GW_ENFORCE_STOP:
        return;
    }
}

void gw_request_resume(gw_stream *s)
{
    if (!s->responded) {
        stage_forward(s, NULL, s->fwd_hops);
    }
}

/* The BG_ERR_* a refusal receipt records for the error code |code| answered with |status|. */
static int32_t refusal_error(const char *code, int status)
{
    static const struct {
        const char *code;
        int32_t err;
    } map[] = {
        {"budget_exhausted", BG_ERR_BUDGET_EXHAUSTED},
        {"contract_revoked", BG_ERR_CONTRACT_REVOKED},
        {"contract_expired", BG_ERR_CONTRACT_EXPIRED},
        {"contract_forbidden", BG_ERR_IDENTITY},
        {"contract_required", BG_ERR_NOTFOUND},
        {"contract_scope", BG_ERR_CONTRACT_INVALID},
        {"operation_not_permitted", BG_ERR_CONTRACT_INVALID},
        {"dp_unsupported_operation", BG_ERR_CONTRACT_INVALID},
        {"ledger_unavailable", BG_ERR_STORE},
        {"store_unavailable", BG_ERR_STORE},
        {"upstream_unavailable", BG_ERR_PEER_UNAVAILABLE},
        {"timeout", BG_ERR_TIMEOUT},
        {"deadline_exceeded", BG_ERR_TIMEOUT},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(code, map[i].code) == 0) {
            return map[i].err;
        }
    }
    return status == 429 ? BG_ERR_BUDGET_EXHAUSTED
           : status == 403 ? BG_ERR_CONTRACT_REVOKED
           : status >= 500 ? BG_ERR_INTERNAL
                           : BG_ERR_INVAL;
}

/* A federated query refused at this city (it held the data): receipted like any use. The
 * refusal carries no data, so it is answered first and recorded here, as the stream closes. */
static void record_refusal(gw_stream *s, int status)
{
    gw_worker *w = s->conn->w;
    const char *self = w->srv->cfg->city;
    if (w->srv->ledger == NULL || s->receipted || s->route != GW_ROUTE_FED_QUERY || status < 400 ||
        strcmp(s->dest, self) != 0 || strcmp(s->req_type, "application/x-protobuf") != 0) {
        return;
    }
    trust_receipt rc;
    trust_receipt *r = &rc;
    memset(r, 0, sizeof(*r));
    r->kind = TRUST_RECEIPT_REFUSAL;
    r->decision = TRUST_RECEIPT_REFUSED;
    bg_strlcpy(r->request_id, s->request_id, sizeof(r->request_id));
    bg_strlcpy(r->requester, s->requester, sizeof(r->requester));
    char role[32];
    if (trust_spiffe_parse(s->requester, r->home_city, sizeof(r->home_city), role,
                           sizeof(role)) != 0) {
        r->home_city[0] = 0;
    }
    bg_strlcpy(r->provider_city, self, sizeof(r->provider_city));
    bg_strlcpy(r->counterpart_city, r->home_city, sizeof(r->counterpart_city));
    if (strlen(s->contract) == TRUST_RECEIPT_CONTRACT_ID_LEN) {
        bg_strlcpy(r->contract_id, s->contract, sizeof(r->contract_id));
    }
    if (s->dataset[0] && strlen(s->dataset) < sizeof(r->datasets[0])) {
        bg_strlcpy(r->datasets[0], s->dataset, sizeof(r->datasets[0]));
        r->ndatasets = 1;
    }
    bg_strlcpy(r->operation, s->operation, sizeof(r->operation));
    r->error_code = refusal_error(s->err_code, status);
    gw_receipts_event(w, r);
}

void gw_request_record(gw_stream *s, uint32_t error_code)
{
    gw_server *srv = s->conn->w->srv;
    uint64_t lat = bg_now_us() - s->start_us;
    int status = s->responded ? s->status : 0;
    gw_limits_firm_release(srv, s->limit_slot); /* the firm's request is no longer in flight */
    s->limit_slot = NULL;
    record_refusal(s, status);
    gw_metrics_request(srv->metrics, s->route, status, lat, s->bytes_in, s->bytes_out);
    if (gw_accesslog_enabled(srv->alog)) {
        gw_accesslog_write(srv->alog, s, srv->cfg->city, lat, error_code);
    }
}
