/* tests/unit/gateway/harness.h: runs one real gateway worker (no listeners, no TLS) and
 * connects to it through a socketpair, as the unit tests and the HTTP/2 fuzz target need. */
#ifndef GW_TEST_HARNESS_H
#define GW_TEST_HARNESS_H
#include "gateway/gw_int.h"
#include "space/data.h"
#include "space/pool.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/thread.h>

typedef struct gwt {
    conf_gateway *cfg;
    route_table *rt;
    gw_server srv;
    bg_errbuf eb;
} gwt;

/* A city "testcity" with one local h2c listener whose requests count as a test firm. */
static const char gwt_default_yaml[] =
    "city: testcity\n"
    "workers: 1\n"
    "access_log: \"off\"\n"
    "listeners:\n"
    "  - address: 127.0.0.1:1\n"
    "    tls: false\n"
    "    local: true\n"
    "    client_identity: spiffe://testcity.gba/firm/test\n"
    "tls: {cert: none.crt, key: none.key, trust_bundle: none.pem}\n"
    "upstream: {url: builtin}\n"
    "limits: {max_body_bytes: 4096}\n";

static inline int gwt_init(gwt *t, const char *yaml)
{
    memset(t, 0, sizeof(*t));
    signal(SIGPIPE, SIG_IGN); /* as baygate's main does: a closed peer is an error, not death */
    /* as baygate's main does: executor threads activate a worker's job event */
    static bool threads_on;
    if (!threads_on) {
        if (evthread_use_pthreads() != 0) {
            return -1;
        }
        threads_on = true;
    }
    if (yaml == NULL) {
        yaml = gwt_default_yaml;
    }
    if (conf_gateway_load_buffer(&t->cfg, "test.yaml", (const uint8_t *)yaml, strlen(yaml),
                                 &t->eb) != 0 ||
        route_table_new(&t->rt, t->cfg, &t->eb) != 0) {
        return -1;
    }
    t->srv.cfg = t->cfg;
    t->srv.gen = gw_gen_new(t->cfg, t->rt, false);
    if (t->srv.gen == NULL) {
        return -1;
    }
    t->rt = NULL; /* owned by the generation */
    pthread_mutex_init(&t->srv.gen_mu, NULL);
    t->srv.no_listeners = true;
    atomic_init(&t->srv.draining, false);
    if (gw_metrics_new(&t->srv.metrics) != 0 ||
        gw_accesslog_new(&t->srv.alog, "off", &t->eb) != 0) {
        return -1;
    }
    if (t->cfg->upstream.builtin) { /* a small embedded data space: stroke-registry only */
        const char *const ds[1] = {"stroke-registry"};
        if (space_db_new(&t->srv.space, t->cfg->city, 1000, 1, ds, 1, &t->eb) != 0 ||
            space_pool_new(&t->srv.pool, 1, 64) != 0) {
            return -1;
        }
    }
    t->srv.workers = calloc(1, sizeof(gw_worker));
    t->srv.nworkers = 1;
    return t->srv.workers == NULL ? -1 : gw_worker_init(&t->srv.workers[0], &t->srv, 0, &t->eb);
}

/* Returns the client end of a new connection to the worker's first listener, or -1. */
static inline int gwt_connect(gwt *t)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
        return -1;
    }
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    gw_conn_accept(&t->srv.workers[0], &t->cfg->listeners[0], fds[0], (struct sockaddr *)&sa,
                   (int)sizeof(sa));
    return fds[1];
}

/* Runs the worker's loop until nothing is ready (bounded). */
static inline void gwt_run(gwt *t)
{
    for (int i = 0; i < 64; i++) {
        event_base_loop(t->srv.workers[0].base, EVLOOP_NONBLOCK);
    }
}

static inline void gwt_free(gwt *t)
{
    space_pool_free(t->srv.pool); /* before the worker its jobs post to */
    t->srv.pool = NULL;
    if (t->srv.workers != NULL) {
        gw_worker_dispose(&t->srv.workers[0]);
        free(t->srv.workers);
    }
    gw_accesslog_free(t->srv.alog);
    gw_metrics_free(t->srv.metrics);
    space_db_free(t->srv.space);
    gw_gen_unref(t->srv.gen);
    route_table_free(t->rt);
    conf_gateway_free(t->cfg);
}
#endif
