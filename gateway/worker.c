/* gateway/worker.c: one worker = one thread running one event_base, with its own
 * SO_REUSEPORT listeners (the kernel spreads connections across workers), its inbound
 * connections and its own outbound sessions to every peer and the upstream. Shutdown and drain
 * are driven from main through an event activated across threads. */
#include "gateway/gw_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/log.h"

typedef struct gw_lctx {
    gw_worker *w;
    const conf_listener *lst;
} lctx;

/* evconnlistener callback: a new TCP connection on one of our listeners. */
static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    lctx *lc = arg;
    (void)l;
    gw_conn_accept(lc->w, lc->lst, fd, sa, salen);
    gw_worker_run_deferred(lc->w); /* e.g. an h2c connection's SETTINGS go out now */
}

static void finish(gw_worker *w)
{
    event_base_loopexit(w->base, NULL);
}

static void free_listeners(gw_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i] != NULL) {
            evconnlistener_free(w->listeners[i]);
            w->listeners[i] = NULL;
        }
    }
}

/* Grace period over: whatever is still open is closed now. */
static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    (void)fd;
    (void)what;
    bg_log(BG_LOG_WARN, "worker=%u msg=\"drain grace period over\" closing=%zu", w->idx,
           w->nconns);
    while (w->conns != NULL) {
        gw_conn_free(w->conns);
    }
    finish(w);
}

/* Activated from the main thread (SIGTERM): stop accepting, GOAWAY, drain. */
static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    (void)fd;
    (void)what;
    if (w->draining) {
        return;
    }
    w->draining = true;
    free_listeners(w);
    bg_log(BG_LOG_INFO, "worker=%u msg=\"draining\" connections=%zu", w->idx, w->nconns);
    gw_conn_goaway_all(w);
    uint32_t ms = w->srv->cfg->timeouts.shutdown_grace_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&w->grace_ev, &tv);
    if (w->nconns == 0) {
        finish(w);
    }
    gw_worker_run_deferred(w);
}

void gw_worker_conn_gone(gw_worker *w)
{
    if (w->draining && w->nconns == 0) {
        finish(w);
    }
}

void gw_worker_request_shutdown(gw_worker *w)
{
    event_active(&w->ctl_ev, EV_READ, 0);
}

void gw_worker_defer(gw_worker *w, gw_flushable *f)
{
    if (f->queued) {
        return;
    }
    f->queued = true;
    f->next = NULL;
    if (w->deferred_tail != NULL) {
        w->deferred_tail->next = f;
    } else {
        w->deferred = f;
    }
    w->deferred_tail = f;
}

void gw_worker_undefer(gw_worker *w, gw_flushable *f)
{
    if (!f->queued) {
        return;
    }
    gw_flushable *prev = NULL;
    for (gw_flushable *p = w->deferred; p != NULL; prev = p, p = p->next) {
        if (p == f) {
            if (prev != NULL) {
                prev->next = f->next;
            } else {
                w->deferred = f->next;
            }
            if (w->deferred_tail == f) {
                w->deferred_tail = prev;
            }
            break;
        }
    }
    f->queued = false;
    f->next = NULL;
}

void gw_worker_run_deferred(gw_worker *w)
{
    while (w->deferred != NULL) {
        gw_flushable *f = w->deferred;
        w->deferred = f->next;
        if (w->deferred == NULL) {
            w->deferred_tail = NULL;
        }
        f->queued = false;
        f->next = NULL;
        f->run(f); /* may free its owner, and may queue others */
    }
}

void gw_worker_request_reload(gw_worker *w)
{
    event_active(&w->reload_ev, EV_READ, 0);
}

gw_gen *gw_gen_new(conf_gateway *cfg, route_table *rt, bool owns_cfg)
{
    gw_gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return NULL;
    }
    g->cfg = cfg;
    g->rt = rt;
    g->owns_cfg = owns_cfg;
    atomic_init(&g->refs, 1);
    return g;
}

void gw_gen_ref(gw_gen *g)
{
    atomic_fetch_add(&g->refs, 1);
}

void gw_gen_unref(gw_gen *g)
{
    if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1) {
        return;
    }
    route_table_free(g->rt);
    if (g->owns_cfg) {
        conf_gateway_free(g->cfg);
    }
    free(g);
}

/* Builds this worker's sessions for |g|: sessions whose target is unchanged move over (their
 * connections and in-flight streams untouched), new targets get new sessions, and the rest
 * retire once their streams end. Called at init (old set empty) and on reload. */
static int adopt_gen(gw_worker *w, gw_gen *g)
{
    const conf_gateway *cfg = g->cfg;
    gw_client **peers = calloc(cfg->npeers ? cfg->npeers : 1, sizeof(*peers));
    if (peers == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        for (size_t j = 0; j < w->npeers; j++) {
            if (w->peers[j] != NULL &&
                gw_client_same_target(w->peers[j], &cfg->peers[i], NULL)) {
                peers[i] = w->peers[j];
                w->peers[j] = NULL;
                gw_client_rebind(peers[i], g, &cfg->peers[i], NULL);
                break;
            }
        }
        if (peers[i] == NULL && gw_client_new(&peers[i], w, g, &cfg->peers[i], NULL) != 0) {
            for (size_t k = 0; k < i; k++) {
                gw_client_free(peers[k]);
            }
            free(peers);
            return BG_ERR_NOMEM;
        }
    }
    gw_client *up = NULL;
    if (!cfg->upstream.builtin) {
        if (w->upstream != NULL && gw_client_same_target(w->upstream, NULL, &cfg->upstream.url)) {
            up = w->upstream;
            w->upstream = NULL;
            gw_client_rebind(up, g, NULL, &cfg->upstream.url);
        } else if (gw_client_new(&up, w, g, NULL, &cfg->upstream.url) != 0) {
            up = NULL; /* requests to the upstream answer 502 until the next reload */
        }
    }
    for (size_t j = 0; j < w->npeers; j++) {
        if (w->peers[j] != NULL) {
            gw_client_retire(w->peers[j]);
        }
    }
    if (w->upstream != NULL) {
        gw_client_retire(w->upstream);
    }
    free(w->peers);
    w->peers = peers;
    w->npeers = cfg->npeers;
    w->upstream = up;
    gw_gen_ref(g);
    gw_gen_unref(w->gen);
    w->gen = g;
    return 0;
}

/* Activated from main after SIGHUP installed a new generation. */
static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&w->srv->gen_mu);
    gw_gen *g = w->srv->gen;
    gw_gen_ref(g);
    pthread_mutex_unlock(&w->srv->gen_mu);
    if (g != w->gen) {
        int rv = adopt_gen(w, g);
        bg_log(rv == 0 ? BG_LOG_INFO : BG_LOG_ERROR,
               "worker=%u msg=\"reload %s\" peers=%zu", w->idx,
               rv == 0 ? "applied" : "failed, keeping the previous peers", w->npeers);
    }
    gw_gen_unref(g);
    gw_worker_run_deferred(w);
}

/* Runs on w's loop when an executor thread posted jobs: delivers them in posting order. */
static void on_jobs(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&w->jobs_mu);
    gw_job *j = w->jobs, *fifo = NULL;
    w->jobs = NULL;
    pthread_mutex_unlock(&w->jobs_mu);
    while (j != NULL) { /* LIFO -> FIFO */
        gw_job *next = j->next;
        j->next = fifo;
        fifo = j;
        j = next;
    }
    while (fifo != NULL) {
        gw_job *next = fifo->next;
        fifo->deliver(fifo);
        fifo = next;
    }
    gw_worker_run_deferred(w);
}

void gw_worker_post(gw_worker *w, gw_job *j)
{
    j->next = NULL;
    gw_worker_post_chain(w, j, j);
}

void gw_worker_post_chain(gw_worker *w, gw_job *first, gw_job *last)
{
    pthread_mutex_lock(&w->jobs_mu);
    last->next = w->jobs; /* w->jobs is LIFO: the chain goes in last-first */
    w->jobs = first;
    pthread_mutex_unlock(&w->jobs_mu);
    event_active(&w->jobs_ev, EV_READ, 0);
}

void gw_worker_new_request_id(gw_worker *w, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int half = 0; half < 2; half++) {
        /* splitmix64: ids must be unique, not secret */
        uint64_t z = (w->rng += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        for (int i = 0; i < 16; i++) {
            out[half * 16 + i] = hex[(z >> (60 - 4 * i)) & 0xf];
        }
    }
    out[32] = 0;
}

int gw_worker_init(gw_worker *w, gw_server *srv, unsigned idx, bg_errbuf *eb)
{
    const conf_gateway *cfg = srv->cfg;
    memset(w, 0, sizeof(*w));
    w->srv = srv;
    w->idx = idx;
    if (idx == 0 && srv->tls != NULL) {
        /* before any worker thread handshakes: the hook is read without a lock */
        trust_tls_set_revocation_check(srv->tls, gw_tls_revoked, srv);
    }
    if (getrandom(&w->rng, sizeof(w->rng), 0) != (ssize_t)sizeof(w->rng)) {
        w->rng = (uint64_t)time(NULL) ^ ((uint64_t)idx << 32);
    }
    /* The changelist folds the add/del churn of write interest within one loop iteration into
     * at most one epoll_ctl per fd. */
    struct event_config *ecfg = event_config_new();
    if (ecfg != NULL) {
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        w->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    if (w->base == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "cannot create event base");
    }
    {
        uint32_t rq = cfg->timeouts.request_ms, id = cfg->timeouts.idle_ms;
        struct timeval tr = {(time_t)(rq / 1000), (suseconds_t)(rq % 1000) * 1000};
        struct timeval ti = {(time_t)(id / 1000), (suseconds_t)(id % 1000) * 1000};
        w->ct_request = event_base_init_common_timeout(w->base, &tr);
        w->ct_idle = event_base_init_common_timeout(w->base, &ti);
        if (w->ct_request == NULL || w->ct_idle == NULL) {
            return bg_errf(eb, BG_ERR_NOMEM, "cannot create timers");
        }
    }
    event_assign(&w->ctl_ev, w->base, -1, 0, on_ctl, w);
    event_assign(&w->reload_ev, w->base, -1, 0, on_reload, w);
    event_assign(&w->jobs_ev, w->base, -1, 0, on_jobs, w);
    pthread_mutex_init(&w->jobs_mu, NULL);
    evtimer_assign(&w->grace_ev, w->base, on_grace, w);
    w->listeners = calloc(cfg->nlisteners, sizeof(*w->listeners));
    lctx *lcs = w->lctxs = calloc(cfg->nlisteners, sizeof(*lcs));
    if (w->listeners == NULL || lcs == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "out of memory");
    }
    w->nlisteners = cfg->nlisteners;
    for (size_t i = 0; i < cfg->nlisteners && !srv->no_listeners; i++) {
        const conf_listener *l = &cfg->listeners[i];
        struct addrinfo hints, *res = NULL;
        char port[8];
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        snprintf(port, sizeof(port), "%u", l->port);
        int gai = getaddrinfo(l->host, port, &hints, &res);
        if (gai != 0) {
            return bg_errf(eb, BG_ERR_IO, "%s: listener %s: %s", cfg->path, l->address,
                           gai_strerror(gai));
        }
        lcs[i].w = w;
        lcs[i].lst = l;
        w->listeners[i] = evconnlistener_new_bind(
            w->base, on_accept, &lcs[i],
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
                LEV_OPT_REUSEABLE_PORT,
            1024, res->ai_addr, (int)res->ai_addrlen);
        freeaddrinfo(res);
        if (w->listeners[i] == NULL) {
            return bg_errf(eb, BG_ERR_IO, "%s: listener %s: cannot bind: %s", cfg->path,
                           l->address, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        }
    }
    if (adopt_gen(w, srv->gen) != 0 || gw_catalog_worker_init(w) != 0) {
        return bg_errf(eb, BG_ERR_NOMEM, "out of memory");
    }
    gw_witness_worker_init(w);
    return 0;
}

void gw_worker_dispose(gw_worker *w)
{
    while (w->conns != NULL) {
        gw_conn_free(w->conns);
    }
    if (w->base != NULL) {
        gw_catalog_worker_dispose(w); /* before the sessions its requests ride on */
        gw_witness_worker_dispose(w);
    }
    if (w->listeners != NULL) {
        free_listeners(w);
        free(w->listeners);
        w->listeners = NULL;
    }
    free(w->lctxs);
    w->lctxs = NULL;
    for (size_t i = 0; i < w->npeers; i++) {
        gw_client_free(w->peers[i]);
    }
    free(w->peers);
    w->peers = NULL;
    gw_client_free(w->upstream);
    w->upstream = NULL;
    gw_client_free_retiring(w);
    gw_contracts_worker_dispose(w);
    if (w->base != NULL) { /* init got as far as the job queue */
        while (w->jobs != NULL) {
            gw_job *j = w->jobs;
            w->jobs = j->next;
            j->discard(j);
        }
        pthread_mutex_destroy(&w->jobs_mu);
    }
    gw_gen_unref(w->gen);
    w->gen = NULL;
    if (w->base != NULL) {
        event_del(&w->ctl_ev);
        event_del(&w->reload_ev);
        event_del(&w->jobs_ev);
        event_del(&w->grace_ev);
        event_base_free(w->base);
        w->base = NULL;
    }
    if (w->srv != NULL && w->idx + 1 == w->srv->nworkers) {
        /* the last worker: every thread that could use the process-wide tables has stopped */
        gw_limits_dispose(w->srv);
        gw_authz_dispose(w->srv);
    }
}

void *gw_worker_run(void *arg)
{
    gw_worker *w = arg;
    event_base_dispatch(w->base);
    bg_log(BG_LOG_INFO, "worker=%u msg=\"stopped\"", w->idx);
    return NULL;
}
