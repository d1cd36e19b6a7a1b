/* tests/unit/gateway/test_authz.c: gateway/authz.c. The authorization table against an
 * expected table written out here, every caller against every endpoint and method, so that any
 * change to the code's table shows up; and, through a real worker on socketpairs, the table at
 * dispatch, the revoked-identity set (requests refused, open connections closed on the worker)
 * and the rate limits' 429 with Retry-After. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>

#include "harness.h"

/* ---- the table ---------------------------------------------------------------------------- */

/* The callers, one column each in the expected table. */
enum {
    C_ANON,         /* TLS listener, no client certificate */
    C_LOCAL,        /* local listener without client_identity */
    C_FIRM,         /* spiffe://testcity.gba/firm/acme */
    C_REGULATOR,    /* spiffe://testcity.gba/regulator/office */
    C_ADMIN,        /* spiffe://testcity.gba/admin/ops */
    C_GATEWAY,      /* spiffe://testcity.gba/gateway */
    C_FIRM_X,       /* spiffe://othercity.gba/firm/acme */
    C_REGULATOR_X,  /* spiffe://othercity.gba/regulator/office */
    C_ADMIN_X,      /* spiffe://othercity.gba/admin/ops */
    C_GATEWAY_X,    /* spiffe://othercity.gba/gateway */
    C_LOCAL_FIRM,   /* local listener with client_identity spiffe://testcity.gba/firm/front */
    C_ROBOT,        /* spiffe://testcity.gba/robot/r2: a role nobody admits */
    C_COUNT
};

static const struct {
    const char *spiffe; /* NULL: no identity */
    bool local;
} callers[C_COUNT] = {
    [C_ANON] = {NULL, false},
    [C_LOCAL] = {NULL, true},
    [C_FIRM] = {"spiffe://testcity.gba/firm/acme", false},
    [C_REGULATOR] = {"spiffe://testcity.gba/regulator/office", false},
    [C_ADMIN] = {"spiffe://testcity.gba/admin/ops", false},
    [C_GATEWAY] = {"spiffe://testcity.gba/gateway", false},
    [C_FIRM_X] = {"spiffe://othercity.gba/firm/acme", false},
    [C_REGULATOR_X] = {"spiffe://othercity.gba/regulator/office", false},
    [C_ADMIN_X] = {"spiffe://othercity.gba/admin/ops", false},
    [C_GATEWAY_X] = {"spiffe://othercity.gba/gateway", false},
    [C_LOCAL_FIRM] = {"spiffe://testcity.gba/firm/front", true},
    [C_ROBOT] = {"spiffe://testcity.gba/robot/r2", false},
};

static trust_identity identity_of(int c)
{
    trust_identity id;
    memset(&id, 0, sizeof(id));
    if (callers[c].spiffe != NULL) {
        id.present = true;
        id.verified = true;
        bg_strlcpy(id.spiffe_id, callers[c].spiffe, sizeof(id.spiffe_id));
        assert_int_equal(trust_spiffe_parse(id.spiffe_id, id.city, sizeof(id.city), id.role,
                                            sizeof(id.role)),
                         0);
    }
    return id;
}

/* One letter per caller, in the order of the enum above:
 *   A allowed, D denied (403), M method not allowed (405), P no such endpoint (404).
 * Columns: anon local firm reg admin gw | firm@x reg@x admin@x gw@x | local-firm robot */
#define ALL_A "AAAAAAAAAAAA"
#define ALL_M "MMMMMMMMMMMM"
#define ALL_P "PPPPPPPPPPPP"
#define OPERATOR "DAAAAADDDDAD"   /* a local listener, or any identity of this city */
#define FIRM_HERE "DDADDDDDDDAD"  /* a firm of this city (local client_identity included) */
#define REGULATOR "DDDADDDDDDDD"  /* the regulator of this city */
#define ADMIN "DDDDADDDDDDD"      /* the admin of this city */
#define PEER_GW "DDDDDDDDDADD"    /* a gateway of another city (then: a configured peer) */

static const struct {
    gw_route_id route;
    const char *sub;
    const char *get, *head, *post, *del, *put;
} expected[] = {
    {GW_ROUTE_HEALTHZ, "", ALL_A, ALL_A, ALL_M, ALL_M, ALL_M},
    {GW_ROUTE_READYZ, "", OPERATOR, OPERATOR, ALL_M, ALL_M, ALL_M},
    {GW_ROUTE_METRICS, "", OPERATOR, OPERATOR, ALL_M, ALL_M, ALL_M},
    {GW_ROUTE_QUERIES, "", ALL_M, ALL_M, FIRM_HERE, ALL_M, ALL_M},
    {GW_ROUTE_CATALOG, "", FIRM_HERE, FIRM_HERE, ALL_M, ALL_M, ALL_M},
    {GW_ROUTE_CONTRACTS, "", FIRM_HERE, FIRM_HERE, FIRM_HERE, FIRM_HERE, ALL_M},
    {GW_ROUTE_CONTRACTS, "/5a0fedbc0685020270bbd1997657406061e2109e5d5670728b33934ad1ef98f0",
     FIRM_HERE, FIRM_HERE, FIRM_HERE, FIRM_HERE, ALL_M},
    {GW_ROUTE_LEDGER, "/checkpoint", REGULATOR, REGULATOR, ALL_M, ALL_M, ALL_M},
    {GW_ROUTE_LEDGER, "/7?tree_size=9", REGULATOR, REGULATOR, ALL_M, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "", ALL_M, ALL_M, ALL_A, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "?lang=en", ALL_M, ALL_M, ALL_A, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "/3f2a9c", ALL_A, ALL_A, ALL_M, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "/3f2a9c/approve", ALL_M, ALL_M, ADMIN, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "/3f2a9c/reject", ALL_M, ALL_M, ADMIN, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "/3f2a9c/suspend", ALL_M, ALL_M, ADMIN, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "/3f2a9c/revoke", ALL_M, ALL_M, ADMIN, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "/3f2a9c/reinstate", ALL_M, ALL_M, ADMIN, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "/3f2a9c/renew", ALL_M, ALL_M, FIRM_HERE, ALL_M, ALL_M},
    {GW_ROUTE_FIRMS, "/3f2a9c/delete", ALL_P, ALL_P, ALL_P, ALL_P, ALL_P},
    {GW_ROUTE_FIRMS, "/3f2a9c/approve/now", ALL_P, ALL_P, ALL_P, ALL_P, ALL_P},
    {GW_ROUTE_FIRMS, "//approve", ALL_P, ALL_P, ALL_P, ALL_P, ALL_P},
    {GW_ROUTE_CRL, "", ALL_A, ALL_A, ALL_M, ALL_M, ALL_M},
    {GW_ROUTE_FED_QUERY, "", ALL_M, ALL_M, PEER_GW, ALL_M, ALL_M},
    {GW_ROUTE_FED_CATALOG, "", ALL_M, ALL_M, PEER_GW, ALL_M, ALL_M},
    {GW_ROUTE_FED_CONTRACTS, "", ALL_M, ALL_M, PEER_GW, ALL_M, ALL_M},
    {GW_ROUTE_FED_CONTRACTS, "/finalize", ALL_M, ALL_M, PEER_GW, ALL_M, ALL_M},
    {GW_ROUTE_FED_WITNESS, "", ALL_M, ALL_M, PEER_GW, ALL_M, ALL_M},
    {GW_ROUTE_OTHER, "", ALL_P, ALL_P, ALL_P, ALL_P, ALL_P},
};

static char letter(gw_authz_result r)
{
    switch (r) {
    case GW_AUTHZ_ALLOW:
        return 'A';
    case GW_AUTHZ_DENY:
        return 'D';
    case GW_AUTHZ_NO_METHOD:
        return 'M';
    case GW_AUTHZ_NO_PATH:
        return 'P';
    }
    return '?';
}

static void test_gw_authz_check_table(void **state)
{
    (void)state;
    static const char *const methods[] = {"GET", "HEAD", "POST", "DELETE", "PUT"};
    int mismatches = 0;
    bool routes_seen[GW_ROUTE_COUNT] = {false};
    for (size_t e = 0; e < sizeof(expected) / sizeof(expected[0]); e++) {
        const char *want_row[5] = {expected[e].get, expected[e].head, expected[e].post,
                                   expected[e].del, expected[e].put};
        routes_seen[expected[e].route] = true;
        for (size_t m = 0; m < 5; m++) {
            assert_int_equal(strlen(want_row[m]), C_COUNT);
            for (int c = 0; c < C_COUNT; c++) {
                trust_identity id = identity_of(c);
                const char *why = NULL;
                gw_authz_result r = gw_authz_check(expected[e].route, methods[m],
                                                   expected[e].sub, &id, callers[c].local,
                                                   "testcity", &why);
                bool allowed = gw_authz_allowed(expected[e].route, methods[m], expected[e].sub,
                                                &id, callers[c].local, "testcity", NULL);
                assert_int_equal(allowed, r == GW_AUTHZ_ALLOW);
                if (r != GW_AUTHZ_ALLOW) {
                    assert_non_null(why);
                }
                if (letter(r) != want_row[m][c]) {
                    fprintf(stderr, "route %s sub \"%s\" %s caller %s: got %c, want %c\n",
                            gw_route_label(expected[e].route), expected[e].sub, methods[m],
                            callers[c].spiffe != NULL ? callers[c].spiffe
                            : callers[c].local        ? "(local)"
                                                      : "(anonymous)",
                            letter(r), want_row[m][c]);
                    mismatches++;
                }
            }
        }
    }
    assert_int_equal(mismatches, 0);
    for (int r = 0; r < GW_ROUTE_COUNT; r++) { /* every route is in the expected table */
        if (!routes_seen[r]) {
            fprintf(stderr, "route %s missing from the expected table\n",
                    gw_route_label((gw_route_id)r));
        }
        assert_true(routes_seen[r]);
    }
}

/* A certificate that did not verify, or whose SAN is not a federation identity, has no role. */
static void test_gw_authz_check_unverified_has_no_role(void **state)
{
    (void)state;
    trust_identity id = identity_of(C_FIRM);
    id.verified = false;
    assert_int_equal(gw_authz_check(GW_ROUTE_QUERIES, "POST", "", &id, false, "testcity", NULL),
                     GW_AUTHZ_DENY);
    id = identity_of(C_ADMIN);
    id.city[0] = 0;
    assert_int_equal(gw_authz_check(GW_ROUTE_METRICS, "GET", "", &id, false, "testcity", NULL),
                     GW_AUTHZ_DENY);
    assert_int_equal(gw_authz_check(GW_ROUTE_HEALTHZ, "GET", "", NULL, false, "testcity", NULL),
                     GW_AUTHZ_ALLOW);
    assert_int_equal(gw_authz_check(GW_ROUTE_FIRMS, "GET", "/x", NULL, false, "testcity", NULL),
                     GW_AUTHZ_ALLOW);
    assert_int_equal(gw_authz_check(GW_ROUTE_FIRMS, "GET", NULL, NULL, false, "testcity", NULL),
                     GW_AUTHZ_NO_METHOD);
}

/* ---- through a worker ------------------------------------------------------------------------ */

typedef struct reply {
    int status;
    char retry_after[16];
    char body[65536];
    size_t body_len;
    bool closed;
    bool goaway;
    char goaway_data[64];
} reply;

static int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                       const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
    (void)s;
    (void)f;
    (void)flags;
    reply *r = ud;
    if (nl == 7 && memcmp(n, ":status", 7) == 0) {
        r->status = atoi((const char *)v);
    } else if (nl == 11 && memcmp(n, "retry-after", 11) == 0 && vl < sizeof(r->retry_after)) {
        memcpy(r->retry_after, v, vl);
        r->retry_after[vl] = 0;
    }
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
                     void *ud)
{
    (void)s;
    (void)flags;
    (void)id;
    reply *r = ud;
    if (r->body_len + len < sizeof(r->body)) {
        memcpy(r->body + r->body_len, d, len);
        r->body_len += len;
        r->body[r->body_len] = 0;
    }
    return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s;
    (void)id;
    (void)code;
    ((reply *)ud)->closed = true;
    return 0;
}

static int c_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    reply *r = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        r->goaway = true;
        size_t n = f->goaway.opaque_data_len < sizeof(r->goaway_data) - 1
                       ? f->goaway.opaque_data_len
                       : sizeof(r->goaway_data) - 1;
        memcpy(r->goaway_data, f->goaway.opaque_data, n);
        r->goaway_data[n] = 0;
    }
    return 0;
}

typedef struct client {
    int fd;
    nghttp2_session *h2;
    reply r;
    bool eof;
} client;

/* A connection to the worker's listener |lst| (0: the test firm, 1: another firm). */
static void client_open(gwt *t, client *c, size_t lst)
{
    memset(c, 0, sizeof(*c));
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    gw_conn_accept(&t->srv.workers[0], &t->cfg->listeners[lst], fds[0], (struct sockaddr *)&sa,
                   (int)sizeof(sa));
    c->fd = fds[1];
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_on_frame);
    nghttp2_session_client_new(&c->h2, cb, &c->r);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0);
}

/* Moves bytes both ways, |rounds| times or until the stream closed or the connection ended. */
static void client_pump(gwt *t, client *c, int rounds)
{
    for (int round = 0; round < rounds && !c->r.closed && !c->eof; round++) {
        const uint8_t *data;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c->h2, &data)) > 0) {
            assert_int_equal(write(c->fd, data, (size_t)n), n);
        }
        gwt_run(t);
        uint8_t buf[16384];
        bool got = false;
        while ((n = read(c->fd, buf, sizeof(buf))) > 0) {
            nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
            got = true;
        }
        if (n == 0) {
            c->eof = true;
        }
        if (!got) {
            usleep(2000); /* an answer may be on the data space's executor thread */
        }
    }
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}

/* Submits |method| |path| on |c| (no body); |end| false leaves the request open. */
static void client_submit(client *c, const char *method, const char *path, bool end)
{
    memset(&c->r, 0, sizeof(c->r));
    nghttp2_nv nva[4] = {NV(":method", method), NV(":scheme", "http"), NV(":authority", "test"),
                         NV(":path", path)};
    nghttp2_priority_spec *pri = NULL;
    if (end) {
        assert_true(nghttp2_submit_request(c->h2, pri, nva, 4, NULL, NULL) > 0);
    } else {
        assert_true(nghttp2_submit_headers(c->h2, NGHTTP2_FLAG_NONE, -1, pri, nva, 4, NULL) > 0);
    }
}

static void client_close(gwt *t, client *c)
{
    nghttp2_session_del(c->h2);
    close(c->fd);
    gwt_run(t);
}

/* One request on a new connection to listener |lst|. */
static void request(gwt *t, size_t lst, const char *method, const char *path, reply *out)
{
    client c;
    client_open(t, &c, lst);
    client_submit(&c, method, path, true);
    client_pump(t, &c, 200);
    *out = c.r;
    client_close(t, &c);
}

#define FIRM "spiffe://testcity.gba/firm/test"
#define OTHER "spiffe://testcity.gba/firm/other"

static const char two_firms_yaml[] =
    "city: testcity\n"
    "workers: 1\n"
    "access_log: \"off\"\n"
    "listeners:\n"
    "  - address: 127.0.0.1:1\n"
    "    tls: false\n"
    "    local: true\n"
    "    client_identity: " FIRM "\n"
    "  - address: 127.0.0.1:2\n"
    "    tls: false\n"
    "    local: true\n"
    "    client_identity: " OTHER "\n"
    "  - address: 127.0.0.1:3\n"
    "    tls: false\n"
    "    local: true\n"
    "tls: {cert: none.crt, key: none.key, trust_bundle: none.pem}\n"
    "upstream: {url: builtin}\n"
    "limits: {firm_rps: 1, firm_burst: 3, firm_max_streams: 1, apply_per_minute: 2}\n";

static int setup(void **state)
{
    gwt *t = calloc(1, sizeof(*t));
    if (t == NULL || gwt_init(t, two_firms_yaml) != 0) {
        fprintf(stderr, "setup: %s\n", t ? t->eb.msg : "nomem");
        if (t != NULL) {
            gwt_free(t);
            free(t);
        }
        return -1;
    }
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    gwt *t = *state;
    if (t != NULL) {
        gwt_free(t);
        free(t);
    }
    return 0;
}

static void test_dispatch_authorizes(void **state)
{
    gwt *t = *state;
    reply r;
    request(t, 2, "GET", "/v1/catalog", &r); /* local, no client_identity */
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "\"client_certificate_required\""));
    assert_non_null(strstr(r.body, "firms of this city"));
    request(t, 2, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    request(t, 0, "DELETE", "/v1/crl", &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.body, "\"method_not_allowed\""));
    request(t, 0, "POST", "/v1/firms/abc/frobnicate", &r);
    assert_int_equal(r.status, 404);
    request(t, 0, "POST", "/v1/firms/abc/approve", &r); /* a firm is not the admin */
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "\"forbidden\""));
    assert_non_null(strstr(r.body, "the admin of this city"));
}

/* The onboarding routes reach their handlers (501 not_built while gateway/firms.c is not part
 * of the build). */
static void test_dispatch_firms_routes(void **state)
{
    gwt *t = *state;
    reply r;
    request(t, 2, "GET", "/v1/crl", &r);
    assert_true(r.status != 403 && r.status != 405);
    if (r.status == 501) {
        assert_non_null(strstr(r.body, "\"not_built\""));
    } else if (r.status == 404) { /* the handler ran: this gateway issues no certificates */
        assert_non_null(strstr(r.body, "\"no_crl\""));
    }
    request(t, 2, "GET", "/v1/firms/0123456789abcdef0123456789abcdef", &r);
    assert_true(r.status != 403 && r.status != 405);
}

static void test_revoked_identity_refused(void **state)
{
    gwt *t = *state;
    reply r;
    request(t, 0, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_false(gw_identity_revoked(&t->srv, FIRM));
    assert_int_equal(gw_revoke_identity(&t->srv, FIRM, "0a1b"), 0);
    assert_int_equal(gw_revoke_identity(&t->srv, FIRM, NULL), 0); /* again: still one entry */
    assert_int_equal(gw_revoke_identity(&t->srv, "not a spiffe id", NULL), BG_ERR_INVAL);
    assert_true(gw_identity_revoked(&t->srv, FIRM));
    assert_false(gw_identity_revoked(&t->srv, OTHER));
    gwt_run(t); /* the close jobs ran: what follows is a connection made after revocation */
    request(t, 0, "GET", "/healthz", &r); /* every request of it, even /healthz */
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "\"certificate_revoked\""));
    request(t, 1, "GET", "/healthz", &r); /* another firm: unaffected */
    assert_int_equal(r.status, 200);
    request(t, 2, "GET", "/healthz", &r); /* anonymous: unaffected */
    assert_int_equal(r.status, 200);
    gw_unrevoke_identity(&t->srv, FIRM);
    gw_unrevoke_identity(&t->srv, FIRM); /* absent: no-op */
    assert_false(gw_identity_revoked(&t->srv, FIRM));
    request(t, 0, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
}

static void test_revoke_closes_open_connections(void **state)
{
    gwt *t = *state;
    gw_worker *w = &t->srv.workers[0];
    client a, a2, b;
    client_open(t, &a, 0);
    client_open(t, &a2, 0);
    client_open(t, &b, 1);
    client_submit(&a, "GET", "/healthz", true); /* a finished exchange */
    client_pump(t, &a, 200);
    assert_int_equal(a.r.status, 200);
    client_submit(&a2, "GET", "/v1/catalog", false); /* a request still open */
    client_pump(t, &a2, 5);
    client_submit(&b, "GET", "/healthz", true);
    client_pump(t, &b, 200);
    assert_int_equal(b.r.status, 200);
    assert_int_equal(w->nconns, 3);

    assert_int_equal(gw_revoke_identity(&t->srv, FIRM, NULL), 0);
    gwt_run(t); /* the job posted to the worker runs on its loop */
    assert_int_equal(w->nconns, 1); /* only the other firm's is left */
    memset(&a.r, 0, sizeof(a.r));
    client_pump(t, &a, 10);
    client_pump(t, &a2, 10);
    assert_true(a.r.goaway);
    assert_string_equal(a.r.goaway_data, "certificate revoked");
    assert_true(a.eof);
    assert_true(a2.eof);
    assert_false(a2.r.status == 200);
    client_submit(&b, "GET", "/healthz", true); /* the other firm's connection goes on */
    client_pump(t, &b, 200);
    assert_int_equal(b.r.status, 200);
    assert_false(b.eof);

    gw_unrevoke_identity(&t->srv, FIRM);
    client_close(t, &a);
    client_close(t, &a2);
    client_close(t, &b);
    assert_int_equal(w->nconns, 0);
    assert_int_equal(gw_limits_firm_inflight(&t->srv, FIRM), 0);
}

/* firm_rps 1, burst 3: three requests pass, the fourth is 429 with Retry-After, another firm
 * is unaffected, and the metrics count it. (/v1/contracts answers 404 on a gateway without
 * profiles: cheap, and past the limits.) */
static void test_rate_limited_429(void **state)
{
    gwt *t = *state;
    reply r;
    for (int i = 0; i < 3; i++) {
        request(t, 0, "GET", "/v1/contracts", &r);
        assert_int_equal(r.status, 404);
    }
    request(t, 0, "GET", "/v1/contracts", &r);
    assert_int_equal(r.status, 429);
    assert_non_null(strstr(r.body, "\"rate_limited\""));
    assert_string_equal(r.retry_after, "1");
    request(t, 1, "GET", "/v1/contracts", &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.retry_after, "");
    request(t, 2, "GET", "/metrics", &r); /* not a /v1/ endpoint: never limited */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "baygate_rate_limited_total{limit=\"firm_rps\"} 1\n"));
    assert_non_null(strstr(r.body, "route=\"/v1/contracts\",status=\"429\"} 1\n"));
    /* sequential requests with firm_max_streams 1: each one's place was given back */
    assert_int_equal(gw_limits_firm_inflight(&t->srv, FIRM), 0);
}

/* apply_per_minute 2: anonymous applications from one address. */
static void test_apply_rate_limited(void **state)
{
    gwt *t = *state;
    reply r;
    request(t, 2, "POST", "/v1/firms", &r);
    assert_int_not_equal(r.status, 429);
    request(t, 2, "POST", "/v1/firms", &r);
    assert_int_not_equal(r.status, 429);
    request(t, 2, "POST", "/v1/firms", &r);
    assert_int_equal(r.status, 429);
    assert_non_null(strstr(r.body, "\"rate_limited\""));
    assert_int_equal(atoi(r.retry_after), 30); /* 2 a minute: the next one in 30 s */
    request(t, 2, "GET", "/v1/firms/abc", &r); /* only applying is limited per address */
    assert_int_not_equal(r.status, 429);
}

int main(void)
{
    const struct CMUnitTest table_tests[] = {
        cmocka_unit_test(test_gw_authz_check_table),
        cmocka_unit_test(test_gw_authz_check_unverified_has_no_role),
    };
    const struct CMUnitTest worker_tests[] = {
        cmocka_unit_test_setup_teardown(test_dispatch_authorizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_firms_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoked_identity_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_closes_open_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limited_429, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_rate_limited, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("authz table", table_tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("authz at dispatch", worker_tests, NULL, NULL);
}
