/* gateway/metrics.c: process-wide counters and histograms, updated lock-free (relaxed atomics)
 * by every worker and rendered in the Prometheus text format on GET /metrics. */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int status_codes[] = {0,   200, 201, 202, 204, 400, 403, 404, 405, 409,
                                   413, 422, 429, 500, 502, 503, 504, 508};
#define NSTATUS (sizeof(status_codes) / sizeof(status_codes[0]) + 1) /* + "other" */

/* Upper bounds in microseconds for the latency histogram. */
static const uint64_t buckets_us[] = {1000,   2500,   5000,    10000,   25000,   50000,  100000,
                                      250000, 500000, 1000000, 2500000, 5000000, 10000000};
#define NBUCKETS (sizeof(buckets_us) / sizeof(buckets_us[0]))

#define MAX_PEER_NAMES 512

/* Outbound session states by target name; names are added under |mu| and never removed (a
 * peer dropped by reload keeps reporting zeros), so readers need the lock only for the count. */
typedef struct peer_gauge {
    char name[64];
    atomic_int_fast64_t count[4];
} peer_gauge;

struct gw_metrics {
    pthread_mutex_t mu;
    peer_gauge peers[MAX_PEER_NAMES];
    size_t npeers;
    atomic_uint_fast64_t requests[GW_ROUTE_COUNT][NSTATUS];
    atomic_uint_fast64_t hist[GW_ROUTE_COUNT][NBUCKETS + 1];
    atomic_uint_fast64_t hist_sum_us[GW_ROUTE_COUNT];
    atomic_uint_fast64_t bytes_in, bytes_out;
    atomic_int_fast64_t open_streams;
    atomic_int_fast64_t conns_in, conns_out;
    atomic_uint_fast64_t rate_limited[GW_LIMIT_COUNT];
};

const char *gw_route_label(gw_route_id r)
{
    static const char *const names[] = {
        "/healthz",      "/readyz",       "/metrics",          "/v1/queries",
        "/fed/v1/query", "/v1/contracts", "/fed/v1/contracts", "/v1/catalog", "/fed/v1/catalog",
        "/v1/ledger", "/fed/v1/witness", "/v1/firms", "/v1/crl", "other"};
    _Static_assert(sizeof(names) / sizeof(names[0]) == GW_ROUTE_COUNT, "a label per route");
    return (unsigned)r < GW_ROUTE_COUNT ? names[r] : "other";
}

int gw_metrics_new(gw_metrics **out)
{
    gw_metrics *m = calloc(1, sizeof(*m)); /* all-zero bits are valid zero atomics here */
    if (m == NULL) {
        return BG_ERR_NOMEM;
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return 0;
}

void gw_metrics_free(gw_metrics *m)
{
    if (m != NULL) {
        pthread_mutex_destroy(&m->mu);
    }
    free(m);
}

void gw_metrics_peer_state(gw_metrics *m, const char *peer, int from, int to)
{
    peer_gauge *g = NULL;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->npeers; i++) {
        if (strcmp(m->peers[i].name, peer) == 0) {
            g = &m->peers[i];
            break;
        }
    }
    if (g == NULL && m->npeers < MAX_PEER_NAMES) {
        g = &m->peers[m->npeers++];
        snprintf(g->name, sizeof(g->name), "%s", peer);
    }
    pthread_mutex_unlock(&m->mu);
    if (g == NULL) {
        return;
    }
    if (from >= 0 && from < 4) {
        atomic_fetch_sub_explicit(&g->count[from], 1, memory_order_relaxed);
    }
    if (to >= 0 && to < 4) {
        atomic_fetch_add_explicit(&g->count[to], 1, memory_order_relaxed);
    }
}

static size_t status_index(int status)
{
    for (size_t i = 0; i < NSTATUS - 1; i++) {
        if (status_codes[i] == status) {
            return i;
        }
    }
    return NSTATUS - 1;
}

void gw_metrics_request(gw_metrics *m, gw_route_id route, int status, uint64_t latency_us,
                        uint64_t bytes_in, uint64_t bytes_out)
{
    size_t b = 0;
    while (b < NBUCKETS && latency_us > buckets_us[b]) {
        b++;
    }
    atomic_fetch_add_explicit(&m->requests[route][status_index(status)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist_sum_us[route], latency_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->bytes_in, bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->bytes_out, bytes_out, memory_order_relaxed);
}

void gw_metrics_rate_limited(gw_metrics *m, gw_limit_kind k)
{
    if ((unsigned)k < GW_LIMIT_COUNT) {
        atomic_fetch_add_explicit(&m->rate_limited[k], 1, memory_order_relaxed);
    }
}

void gw_metrics_conn(gw_metrics *m, bool inbound, int delta)
{
    atomic_fetch_add_explicit(inbound ? &m->conns_in : &m->conns_out, delta, memory_order_relaxed);
}

void gw_metrics_streams(gw_metrics *m, int delta)
{
    atomic_fetch_add_explicit(&m->open_streams, delta, memory_order_relaxed);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

long long gw_metrics_peer_count(gw_metrics *m, const char *peer, int state)
{
    long long v = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->npeers; i++) {
        if (strcmp(m->peers[i].name, peer) == 0 && state >= 0 && state < 4) {
            v = (long long)LOAD(m->peers[i].count[state]);
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return v;
}

int gw_metrics_render(gw_metrics *m, bg_buf *o)
{
    int rv = 0;
    rv |= bg_buf_appendf(o, "# HELP baygate_requests_total Requests answered, by route and "
                            "status (0: reset before a response).\n"
                            "# TYPE baygate_requests_total counter\n");
    for (size_t r = 0; r < GW_ROUTE_COUNT; r++) {
        for (size_t i = 0; i < NSTATUS; i++) {
            uint64_t v = LOAD(m->requests[r][i]);
            if (v == 0) {
                continue;
            }
            if (i == NSTATUS - 1) {
                rv |= bg_buf_appendf(o, "baygate_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                                     gw_route_label((gw_route_id)r), (unsigned long long)v);
            } else {
                rv |= bg_buf_appendf(o, "baygate_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                     gw_route_label((gw_route_id)r), status_codes[i],
                                     (unsigned long long)v);
            }
        }
    }
    rv |= bg_buf_appendf(o, "# HELP baygate_request_duration_seconds Time from request headers "
                            "to stream close.\n"
                            "# TYPE baygate_request_duration_seconds histogram\n");
    for (size_t r = 0; r < GW_ROUTE_COUNT; r++) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= NBUCKETS; b++) {
            cum += LOAD(m->hist[r][b]);
            if (b < NBUCKETS) {
                rv |= bg_buf_appendf(o,
                                     "baygate_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                                     gw_route_label((gw_route_id)r), (double)buckets_us[b] / 1e6,
                                     (unsigned long long)cum);
            } else {
                rv |= bg_buf_appendf(o,
                                     "baygate_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                                     gw_route_label((gw_route_id)r), (unsigned long long)cum);
            }
        }
        rv |= bg_buf_appendf(o, "baygate_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                             gw_route_label((gw_route_id)r),
                             (double)LOAD(m->hist_sum_us[r]) / 1e6);
        rv |= bg_buf_appendf(o, "baygate_request_duration_seconds_count{route=\"%s\"} %llu\n",
                             gw_route_label((gw_route_id)r), (unsigned long long)cum);
    }
    rv |= bg_buf_appendf(o, "# HELP baygate_peer_state Outbound sessions (one per worker) by "
                            "peer and state.\n# TYPE baygate_peer_state gauge\n");
    pthread_mutex_lock(&m->mu);
    size_t npeers = m->npeers;
    pthread_mutex_unlock(&m->mu);
    for (size_t p = 0; p < npeers; p++) {
        for (int st = 0; st < 4; st++) {
            rv |= bg_buf_appendf(o, "baygate_peer_state{peer=\"%s\",state=\"%s\"} %lld\n",
                                 m->peers[p].name, gw_client_state_name((gw_client_state)st),
                                 (long long)LOAD(m->peers[p].count[st]));
        }
    }
    rv |= bg_buf_appendf(o,
                         "# HELP baygate_open_streams Inbound HTTP/2 streams open now.\n"
                         "# TYPE baygate_open_streams gauge\nbaygate_open_streams %lld\n"
                         "# HELP baygate_connections Open connections.\n"
                         "# TYPE baygate_connections gauge\n"
                         "baygate_connections{direction=\"inbound\"} %lld\n"
                         "baygate_connections{direction=\"outbound\"} %lld\n"
                         "# HELP baygate_bytes_total Request/response body bytes on inbound "
                         "streams.\n# TYPE baygate_bytes_total counter\n"
                         "baygate_bytes_total{direction=\"in\"} %llu\n"
                         "baygate_bytes_total{direction=\"out\"} %llu\n",
                         (long long)LOAD(m->open_streams), (long long)LOAD(m->conns_in),
                         (long long)LOAD(m->conns_out), (unsigned long long)LOAD(m->bytes_in),
                         (unsigned long long)LOAD(m->bytes_out));
    rv |= bg_buf_appendf(o, "# HELP baygate_rate_limited_total Requests refused with 429 "
                            "rate_limited, by the limit hit.\n"
                            "# TYPE baygate_rate_limited_total counter\n");
    static const char *const kinds[GW_LIMIT_COUNT] = {
        [GW_LIMIT_FIRM_RATE] = "firm_rps",
        [GW_LIMIT_FIRM_STREAMS] = "firm_max_streams",
        [GW_LIMIT_APPLY] = "apply_per_minute",
    };
    for (size_t k = 0; k < GW_LIMIT_COUNT; k++) {
        if (kinds[k] != NULL) {
            rv |= bg_buf_appendf(o, "baygate_rate_limited_total{limit=\"%s\"} %llu\n", kinds[k],
                                 (unsigned long long)LOAD(m->rate_limited[k]));
        }
    }
    return rv != 0 ? BG_ERR_NOMEM : 0;
}
