/* gateway/main.c: the `baygate` daemon. Loads and validates the whole configuration before
 * anything starts (exit 2 with file:line on any error), builds the shared read-only state
 * (TLS contexts, route table, metrics, access log), runs N workers, and turns signals into
 * drain (SIGTERM/SIGINT) or a reload check (SIGHUP) from the main thread. */
#include "gateway/gw_int.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/thread.h>

#include "base/clock.h"
#include "base/log.h"
#include "space/data.h"
#include "space/pool.h"
#include "conf/profile.h"
#include "trust/firms.h"
#include "trust/ledger.h"
#include "trust/store.h"

#define BAYGATE_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: baygate --config FILE [--workers N]\n"
               "       baygate --config FILE --verify-ledger   (check every receipt and exit)\n"
               "       baygate --check-config FILE\n"
               "       baygate --version\n"
               "Runs one city's federation gateway. Exit codes: 0 clean stop, 1 runtime failure,\n"
               "2 invalid configuration or usage.\n");
}

/* Everything that --check-config validates: the file, then what it points at. */
static int load_all(const char *path, conf_gateway **cfg, trust_tls **tls, route_table **rt,
                    bg_errbuf *eb)
{
    int rv = conf_gateway_load(cfg, path, eb);
    if (rv != 0) {
        return rv;
    }
    rv = trust_tls_new(tls, &(*cfg)->tls, eb);
    if (rv != 0) {
        conf_gateway_free(*cfg);
        *cfg = NULL;
        return rv;
    }
    rv = route_table_new(rt, *cfg, eb);
    if (rv != 0) {
        trust_tls_free(*tls);
        conf_gateway_free(*cfg);
        *tls = NULL;
        *cfg = NULL;
        return rv;
    }
    return 0;
}

/* Contract vocabularies: this city's and every city it can reach (peers, routes), from
 * cfg->profiles_dir. A missing or malformed profile stops the start (exit 2, file:line). */
static int load_profiles(const conf_gateway *cfg, conf_profile ***out, size_t *n, bg_errbuf *eb)
{
    size_t cap = 1 + cfg->npeers + cfg->nroutes;
    const char **cities = calloc(cap, sizeof(*cities));
    conf_profile **profiles = calloc(cap, sizeof(*profiles));
    if (cities == NULL || profiles == NULL) {
        free(cities);
        free(profiles);
        return bg_errf(eb, BG_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    cities[k++] = cfg->city;
    for (size_t i = 0; i < cfg->npeers; i++) {
        cities[k++] = cfg->peers[i].name;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        cities[k++] = cfg->routes[i].city;
    }
    int rv = conf_profiles_load_dir(profiles, cfg->profiles_dir, cities, k, eb);
    free(cities);
    if (rv != 0) {
        free(profiles);
        return rv;
    }
    *out = profiles;
    *n = k;
    return 0;
}

/* SO_REUSEPORT would let a second daemon share our port silently: probe without it first. */
static int probe_listeners(const conf_gateway *cfg, bg_errbuf *eb)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const conf_listener *l = &cfg->listeners[i];
        struct addrinfo hints, *res = NULL;
        char port[8];
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        snprintf(port, sizeof(port), "%u", l->port);
        if (getaddrinfo(l->host, port, &hints, &res) != 0) {
            return bg_errf(eb, BG_ERR_IO, "%s: listener %s: cannot resolve", cfg->path,
                           l->address);
        }
        int fd = socket(res->ai_family, SOCK_STREAM, 0);
        int one = 1;
        int rv = fd < 0 ? -1 : setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (rv == 0) {
            rv = bind(fd, res->ai_addr, res->ai_addrlen);
        }
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(res);
        if (rv != 0) {
            return bg_errf(eb, BG_ERR_IO, "%s: listener %s: cannot bind: %s", cfg->path,
                           l->address, strerror(e));
        }
    }
    return 0;
}

/* libevent's own warnings go through our log, not straight to stderr. */
static void on_libevent_log(int severity, const char *msg)
{
    bg_log_level lvl = severity >= EVENT_LOG_ERR    ? BG_LOG_ERROR
                       : severity >= EVENT_LOG_WARN ? BG_LOG_WARN
                       : severity >= EVENT_LOG_MSG  ? BG_LOG_INFO
                                                    : BG_LOG_DEBUG;
    bg_log(lvl, "msg=\"libevent\" detail=\"%s\"", msg);
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* What a reload cannot change without a restart; NULL when |n| differs from |o| only in
 * peers, routes and upstream. */
static const char *reload_blocker(const conf_gateway *o, const conf_gateway *n)
{
    if (strcmp(o->city, n->city) != 0) {
        return "city";
    }
    if (o->workers != n->workers) {
        return "workers";
    }
    if (o->nlisteners != n->nlisteners) {
        return "listeners";
    }
    for (size_t i = 0; i < o->nlisteners; i++) {
        const conf_listener *a = &o->listeners[i], *b = &n->listeners[i];
        if (strcmp(a->address, b->address) != 0 || a->tls != b->tls || a->local != b->local ||
            !same_str(a->client_identity, b->client_identity)) {
            return "listeners";
        }
    }
    if (strcmp(o->tls.cert, n->tls.cert) != 0 || strcmp(o->tls.key, n->tls.key) != 0 ||
        strcmp(o->tls.trust_bundle, n->tls.trust_bundle) != 0) {
        return "tls";
    }
    const conf_timeouts *ot = &o->timeouts, *nt = &n->timeouts;
    if (ot->connect_ms != nt->connect_ms || ot->request_ms != nt->request_ms ||
        ot->ping_interval_ms != nt->ping_interval_ms ||
        ot->ping_timeout_ms != nt->ping_timeout_ms ||
        ot->backoff_initial_ms != nt->backoff_initial_ms ||
        ot->backoff_max_ms != nt->backoff_max_ms || ot->idle_ms != nt->idle_ms ||
        ot->shutdown_grace_ms != nt->shutdown_grace_ms) {
        return "timeouts";
    }
    const conf_limits *ol = &o->limits, *nl = &n->limits;
    if (ol->max_body_bytes != nl->max_body_bytes || ol->max_hops != nl->max_hops ||
        ol->max_concurrent_streams != nl->max_concurrent_streams ||
        ol->max_connections != nl->max_connections ||
        ol->stream_window_bytes != nl->stream_window_bytes || ol->firm_rps != nl->firm_rps ||
        ol->firm_burst != nl->firm_burst || ol->firm_max_streams != nl->firm_max_streams ||
        ol->apply_per_minute != nl->apply_per_minute) {
        return "limits";
    }
    if (!same_str(o->ca.cert, n->ca.cert) || !same_str(o->ca.key, n->ca.key) ||
        o->ca.firm_cert_days != n->ca.firm_cert_days) {
        return "ca";
    }
    if (!same_str(o->ledger_path, n->ledger_path) || !same_str(o->access_log, n->access_log) ||
        !same_str(o->log_level, n->log_level)) {
        return "ledger, access_log or log_level";
    }
    return NULL;
}

/* SIGHUP: re-read the file; if only peers, routes or upstream changed, hand every worker the
 * new generation (existing connections stay up). Anything else: keep running as is, and say
 * what needs a restart. */
static void reload(gw_server *srv, const char *path)
{
    conf_gateway *ncfg = NULL;
    route_table *nrt = NULL;
    bg_errbuf eb = {{0}};
    if (conf_gateway_load(&ncfg, path, &eb) != 0 || route_table_new(&nrt, ncfg, &eb) != 0) {
        bg_log(BG_LOG_ERROR, "msg=\"SIGHUP: new configuration invalid, keeping the running one\" "
                             "detail=\"%s\"", eb.msg);
        conf_gateway_free(ncfg);
        return;
    }
    const char *blocker = reload_blocker(srv->cfg, ncfg);
    if (blocker != NULL) {
        bg_log(BG_LOG_ERROR, "msg=\"SIGHUP: '%s' changed; only peers, routes and upstream reload "
                             "live, restart to apply; keeping the running configuration\"", blocker);
        route_table_free(nrt);
        conf_gateway_free(ncfg);
        return;
    }
    gw_gen *g = gw_gen_new(ncfg, nrt, true);
    if (g == NULL) {
        route_table_free(nrt);
        conf_gateway_free(ncfg);
        return;
    }
    pthread_mutex_lock(&srv->gen_mu);
    gw_gen *old = srv->gen;
    srv->gen = g;
    pthread_mutex_unlock(&srv->gen_mu);
    gw_gen_unref(old);
    for (size_t i = 0; i < srv->nworkers; i++) {
        gw_worker_request_reload(&srv->workers[i]);
    }
    bg_log(BG_LOG_INFO, "msg=\"SIGHUP: reloading\" peers=%zu routes=%zu upstream=%s", ncfg->npeers,
           ncfg->nroutes, ncfg->upstream.builtin ? "builtin" : ncfg->upstream.url.text);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, 'k'},
        {"workers", required_argument, NULL, 'w'},
        {"verify-ledger", no_argument, NULL, 'L'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool check_only = false;
    bool verify_ledger = false;
    long workers = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:k:w:LVh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'k': path = optarg; check_only = true; break;
        case 'w':
            workers = strtol(optarg, NULL, 10);
            if (workers < 1 || workers > 256) {
                fprintf(stderr, "baygate: --workers must be 1..256\n");
                return 2;
            }
            break;
        case 'L': verify_ledger = true; break;
        case 'V': printf("baygate %s\n", BAYGATE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    bg_errbuf eb = {{0}};
    conf_gateway *cfg = NULL;
    trust_tls *tls = NULL;
    route_table *rt = NULL;
    if (load_all(path, &cfg, &tls, &rt, &eb) != 0) {
        fprintf(stderr, "%s\n", eb.msg);
        return 2;
    }
    conf_profile **profiles = NULL;
    size_t nprofiles = 0;
    if (cfg->profiles_dir != NULL && load_profiles(cfg, &profiles, &nprofiles, &eb) != 0) {
        fprintf(stderr, "%s\n", eb.msg);
        route_table_free(rt);
        trust_tls_free(tls);
        conf_gateway_free(cfg);
        return 2;
    }
    if (check_only) {
        for (size_t i = 0; i < nprofiles; i++) {
            conf_profile_free(profiles[i]);
        }
        free(profiles);
        printf("%s: ok (city %s, %zu listener(s), %zu peer(s), %zu route(s))\n", path, cfg->city,
               cfg->nlisteners, cfg->npeers, cfg->nroutes);
        route_table_free(rt);
        trust_tls_free(tls);
        conf_gateway_free(cfg);
        return 0;
    }
    if (workers > 0) {
        cfg->workers = (uint32_t)workers;
    }
    bg_log_level lvl = BG_LOG_INFO;
    bg_log_level_parse(cfg->log_level, &lvl);
    bg_log_set_level(lvl);

    int status = 1;
    gw_server srv;
    memset(&srv, 0, sizeof(srv));
    srv.cfg = cfg;
    srv.tls = tls;
    srv.profiles = profiles;
    srv.nprofiles = nprofiles;
    srv.gen = gw_gen_new(cfg, rt, false);
    if (srv.gen == NULL) {
        route_table_free(rt);
        trust_tls_free(tls);
        conf_gateway_free(cfg);
        return 1;
    }
    rt = NULL; /* owned by the generation now */
    pthread_mutex_init(&srv.gen_mu, NULL);
    atomic_init(&srv.draining, false);
    event_set_log_callback(on_libevent_log);
    if (evthread_use_pthreads() != 0 || gw_metrics_new(&srv.metrics) != 0 ||
        gw_accesslog_new(&srv.alog, cfg->access_log, &eb) != 0 ||
        probe_listeners(cfg, &eb) != 0 ||
        (nprofiles > 0 && trust_store_open(&srv.store, cfg->ledger_path, 0, &eb) != 0)) {
        fprintf(stderr, "baygate: %s\n", eb.msg[0] ? eb.msg : "cannot start");
        goto out;
    }
    { /* the receipts ledger: checked before anything is served, in full with --verify-ledger */
        char dir[4096];
        uint64_t bad = UINT64_MAX;
        snprintf(dir, sizeof(dir), "%s/receipts", cfg->ledger_path);
        if (mkdir(cfg->ledger_path, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "baygate: ledger: %s: %s\n", cfg->ledger_path, strerror(errno));
            goto out;
        }
        if (trust_ledger_open(&srv.ledger, dir, 0, &eb) != 0) {
            fprintf(stderr, "baygate: ledger: %s\n", eb.msg);
            goto out;
        }
        int lrv = trust_ledger_verify(srv.ledger, verify_ledger, &bad);
        if (lrv == BG_ERR_SIGNATURE) {
            if (bad != UINT64_MAX) {
                fprintf(stderr, "baygate: ledger %s was altered: receipt %llu does not match its "
                        "tree; refusing to start\n", dir, (unsigned long long)bad);
            } else {
                fprintf(stderr, "baygate: ledger %s was altered: its tree does not match its "
                        "signed checkpoint; refusing to start\n", dir);
            }
            goto out;
        }
        if (lrv != 0) {
            fprintf(stderr, "baygate: ledger %s cannot be checked: %s\n", dir, bg_strerror(lrv));
            goto out;
        }
        if (verify_ledger) {
            uint64_t n = 0;
            trust_ledger_size(srv.ledger, &n);
            printf("%s: ledger intact (%llu receipts)\n", dir, (unsigned long long)n);
            status = 0;
            goto out;
        }
        if (gw_witness_new(&srv, &eb) != 0 || gw_firms_open(&srv, &eb) != 0 ||
            gw_receipts_start(&srv, &eb) != 0) {
            fprintf(stderr, "baygate: %s\n", eb.msg);
            goto out;
        }
    }
    if (gw_answers_new(&srv) != 0) {
        fprintf(stderr, "baygate: out of memory\n");
        goto out;
    }
    if (cfg->upstream.builtin) { /* the embedded reference data space */
        uint64_t t0 = bg_now_us();
        if (space_db_new(&srv.space, cfg->city, cfg->upstream.rows, cfg->upstream.seed,
                         (const char *const *)cfg->upstream.datasets, cfg->upstream.ndatasets,
                         &eb) != 0 ||
            space_pool_new(&srv.pool, cfg->upstream.threads, 1024) != 0) {
            fprintf(stderr, "baygate: data space: %s\n", eb.msg[0] ? eb.msg : "out of memory");
            goto out;
        }
        bg_log(BG_LOG_INFO, "msg=\"embedded data space ready\" datasets=%zu rows=%u ms=%llu",
               space_db_count(srv.space), cfg->upstream.rows,
               (unsigned long long)((bg_now_us() - t0) / 1000));
    }

    /* Workers inherit this mask: signals are taken synchronously by the main thread only. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* a file-size limit reached (ulimit -f) fails the write with EFBIG, reported like a full
     * disk (503 ledger_unavailable), instead of killing the gateway */
    signal(SIGXFSZ, SIG_IGN);

    srv.workers = calloc(cfg->workers, sizeof(*srv.workers));
    if (srv.workers == NULL) {
        goto out;
    }
    for (unsigned i = 0; i < cfg->workers; i++) {
        srv.nworkers = i + 1;
        if (gw_worker_init(&srv.workers[i], &srv, i, &eb) != 0) {
            fprintf(stderr, "baygate: %s\n", eb.msg);
            goto out_workers;
        }
    }
    for (unsigned i = 0; i < cfg->workers; i++) {
        if (pthread_create(&srv.workers[i].thread, NULL, gw_worker_run, &srv.workers[i]) != 0) {
            fprintf(stderr, "baygate: cannot start worker thread\n");
            for (unsigned j = 0; j < i; j++) {
                gw_worker_request_shutdown(&srv.workers[j]);
                pthread_join(srv.workers[j].thread, NULL);
            }
            goto out_workers;
        }
    }
    bg_log(BG_LOG_INFO, "msg=\"baygate started\" version=%s city=%s workers=%u listeners=%zu "
                        "peers=%zu upstream=%s",
           BAYGATE_VERSION, cfg->city, cfg->workers, cfg->nlisteners, cfg->npeers,
           cfg->upstream.builtin ? "builtin" : cfg->upstream.url.text);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            reload(&srv, path);
            gw_witness_reload(&srv); /* an operator may have cleared a split view */
            continue;
        }
        if (sig == SIGUSR1) {
            bg_errbuf reb = {{0}};
            if (gw_accesslog_reopen(srv.alog, &reb) != 0) {
                bg_log(BG_LOG_ERROR, "msg=\"SIGUSR1: %s\"", reb.msg);
            } else {
                bg_log(BG_LOG_INFO, "msg=\"SIGUSR1: access log reopened\"");
            }
            continue;
        }
        bg_log(BG_LOG_INFO, "msg=\"%s: draining\" grace_ms=%u", sig == SIGINT ? "SIGINT" : "SIGTERM",
               cfg->timeouts.shutdown_grace_ms);
        break;
    }
    atomic_store(&srv.draining, true);
    for (size_t i = 0; i < srv.nworkers; i++) {
        gw_worker_request_shutdown(&srv.workers[i]);
    }
    for (size_t i = 0; i < srv.nworkers; i++) {
        pthread_join(srv.workers[i].thread, NULL);
    }
    status = 0;
    bg_log(BG_LOG_INFO, "msg=\"baygate stopped\"");

out_workers:
    space_pool_free(srv.pool); /* finishes queued jobs, which post to the (stopped) workers */
    srv.pool = NULL;
    gw_receipts_stop(&srv); /* appends what is queued; results go to the stopped workers */
    for (size_t i = 0; i < srv.nworkers; i++) {
        gw_worker_dispose(&srv.workers[i]);
    }
    free(srv.workers);
out:
    gw_receipts_stop(&srv);
    gw_witness_free(&srv);
    trust_firms_close(srv.firms);
    trust_ledger_close(srv.ledger);
    space_pool_free(srv.pool);
    space_db_free(srv.space);
    gw_answers_free(&srv);
    trust_store_close(srv.store);
    for (size_t i = 0; i < srv.nprofiles; i++) {
        conf_profile_free(srv.profiles[i]);
    }
    free(srv.profiles);
    gw_accesslog_free(srv.alog);
    gw_metrics_free(srv.metrics);
    gw_gen_unref(srv.gen);
    pthread_mutex_destroy(&srv.gen_mu);
    trust_tls_free(tls);
    conf_gateway_free(cfg);
    return status;
}
