/* tests/unit/trust/test_tls.c: trust/tls.c through its header. Loading failures and their
 * messages, SPIFFE parsing, and real TLS 1.3 handshakes between a server and a client SSL from
 * trust_tls, joined in memory by a BIO pair: success with h2, and the mTLS refusals (other CA,
 * expired, no ALPN h2) plus the allowed anonymous client. Certificates are generated with
 * trust/certs.h into one mkdtemp() directory. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "trust/certs.h"
#include "trust/tls.h"

static char dir[64];

/* Files of the fixture, all under |dir|. */
enum {
    F_CA_CRT, /* guangzhou CA: the trust bundle */
    F_CA_KEY,
    F_GW_CRT, /* spiffe://guangzhou.gba/gateway, server */
    F_GW_KEY,
    F_FIRM_CRT, /* spiffe://guangzhou.gba/firm/acme */
    F_FIRM_KEY,
    F_OLD_CRT, /* expired firm certificate */
    F_OLD_KEY,
    F_ROGUE_CA_CRT, /* a CA not in the bundle ("rogue" city) */
    F_ROGUE_CA_KEY,
    F_ROGUE_CRT, /* spiffe://rogue.gba/firm/x, from the rogue CA */
    F_ROGUE_KEY,
    F_ROGUE_GW_CRT, /* spiffe://rogue.gba/gateway, from the rogue CA */
    F_ROGUE_GW_KEY,
    F_GARBAGE, /* not PEM */
    F_COUNT
};
static const char *const fnames[F_COUNT] = {
    "ca.crt",       "ca.key",       "gw.crt",       "gw.key",       "firm.crt",
    "firm.key",     "old.crt",      "old.key",      "rogue-ca.crt", "rogue-ca.key",
    "rogue.crt",    "rogue.key",    "rogue-gw.crt", "rogue-gw.key", "garbage.pem",
};
static char files[F_COUNT][128];

/* Removes the flat fixture directory |d| and the files in it. */
static int rm_dir(const char *d)
{
    DIR *dp = opendir(d);
    if (dp == NULL) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        char p[512];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
        unlink(p);
    }
    closedir(dp);
    return rmdir(d);
}

static int issue(int ca, int crt, const char *spiffe, bool server, int days, long nbo)
{
    bg_errbuf eb = {{0}};
    trust_cert_req req = {
        .spiffe_id = spiffe, .server = server, .days = days, .not_before_offset_s = nbo};
    int rc = trust_certs_issue(files[ca], files[ca + 1], &req, files[crt], files[crt + 1], &eb);
    if (rc != 0) {
        fprintf(stderr, "setup: %s\n", eb.msg);
    }
    return rc;
}

static int group_setup(void **state)
{
    (void)state;
    bg_errbuf eb = {{0}};
    snprintf(dir, sizeof(dir), "/tmp/bg-test-tls-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    for (int i = 0; i < F_COUNT; i++) {
        snprintf(files[i], sizeof(files[i]), "%s/%s", dir, fnames[i]);
    }
    if (trust_certs_ca_new("guangzhou", 30, files[F_CA_CRT], files[F_CA_KEY], &eb) != 0 ||
        trust_certs_ca_new("rogue", 30, files[F_ROGUE_CA_CRT], files[F_ROGUE_CA_KEY], &eb) != 0) {
        fprintf(stderr, "setup: %s\n", eb.msg);
        return -1;
    }
    if (issue(F_CA_CRT, F_GW_CRT, "spiffe://guangzhou.gba/gateway", true, 30, 0) != 0 ||
        issue(F_CA_CRT, F_FIRM_CRT, "spiffe://guangzhou.gba/firm/acme", false, 30, 0) != 0 ||
        issue(F_CA_CRT, F_OLD_CRT, "spiffe://guangzhou.gba/firm/old", false, 1, -3 * 86400) != 0 ||
        issue(F_ROGUE_CA_CRT, F_ROGUE_CRT, "spiffe://rogue.gba/firm/x", false, 30, 0) != 0 ||
        issue(F_ROGUE_CA_CRT, F_ROGUE_GW_CRT, "spiffe://rogue.gba/gateway", true, 30, 0) != 0) {
        return -1;
    }
    FILE *f = fopen(files[F_GARBAGE], "w");
    if (f == NULL) {
        return -1;
    }
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return rm_dir(dir);
}

/* A conf_tls over fixture files; the strings are borrowed, conf_tls only names them. */
static conf_tls cfg_of(int crt, int key, int bundle)
{
    conf_tls c = {.cert = files[crt], .key = files[key], .trust_bundle = files[bundle]};
    return c;
}

static trust_tls *tls_new_ok(int crt, int key)
{
    trust_tls *t = NULL;
    bg_errbuf eb = {{0}};
    conf_tls c = cfg_of(crt, key, F_CA_CRT);
    int rc = trust_tls_new(&t, &c, &eb);
    if (rc != 0) {
        fprintf(stderr, "trust_tls_new: %s\n", eb.msg);
    }
    assert_int_equal(rc, 0);
    assert_non_null(t);
    return t;
}

/* Joins |server| and |client| with an in-memory BIO pair (each SSL takes its end). */
static void connect_pair(SSL *server, SSL *client)
{
    BIO *s = NULL, *c = NULL;
    assert_int_equal(BIO_new_bio_pair(&s, 0, &c, 0), 1);
    SSL_set_bio(server, s, s);
    SSL_set_bio(client, c, c);
}

typedef struct hs_result {
    int server_rc; /* 1 done, <= 0 failed (SSL_do_handshake's last return) */
    int client_rc;
} hs_result;

/* Drives both handshakes until each is done or has failed for a reason other than waiting
 * for the other side. In TLS 1.3 the client finishes before the server has checked the
 * client's certificate, so a refusal shows on the server side (and later client reads). */
static hs_result handshake(SSL *server, SSL *client)
{
    hs_result r = {0, 0};
    bool s_done = false, c_done = false;
    for (int round = 0; round < 50 && !(s_done && c_done); round++) {
        if (!c_done) {
            r.client_rc = SSL_do_handshake(client);
            int e = SSL_get_error(client, r.client_rc);
            c_done = r.client_rc == 1 || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE);
        }
        if (!s_done) {
            r.server_rc = SSL_do_handshake(server);
            int e = SSL_get_error(server, r.server_rc);
            s_done = r.server_rc == 1 || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE);
        }
        if (s_done && r.server_rc != 1) {
            /* Let the client read the server's alert. */
            if (c_done && r.client_rc == 1) {
                char b[16];
                (void)SSL_read(client, b, sizeof(b));
            }
            break;
        }
    }
    ERR_clear_error();
    return r;
}

/* Exchanges one message each way over a finished handshake. */
static void exchange(SSL *server, SSL *client)
{
    char buf[32];
    assert_int_equal(SSL_write(client, "ping", 4), 4);
    assert_int_equal(SSL_read(server, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(SSL_write(server, "pong", 4), 4);
    int n;
    /* The client may first consume the server's session tickets. */
    do {
        n = SSL_read(client, buf, sizeof(buf));
    } while (n <= 0 && SSL_get_error(client, n) == SSL_ERROR_WANT_READ);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "pong", 4);
}

/* A plain client context that trusts the bundle but has no certificate of its own. */
static SSL *bare_client(SSL_CTX **ctx_out, const unsigned char *alpn, unsigned alpn_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, files[F_CA_CRT], NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (alpn != NULL) {
        assert_int_equal(SSL_CTX_set_alpn_protos(ctx, alpn, alpn_len), 0);
    }
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_connect_state(ssl);
    *ctx_out = ctx;
    return ssl;
}

static void test_trust_tls_new_ok(void **state)
{
    (void)state;
    trust_tls *t = tls_new_ok(F_GW_CRT, F_GW_KEY);
    SSL *s = trust_tls_server_ssl(t);
    SSL *c = trust_tls_client_ssl(t, NULL);
    assert_non_null(s);
    assert_non_null(c);
    assert_int_equal(SSL_get_min_proto_version(s), TLS1_3_VERSION);
    assert_int_equal(SSL_get_max_proto_version(c), TLS1_3_VERSION);
    assert_int_equal(SSL_get_verify_mode(s), SSL_VERIFY_PEER);
    SSL_free(s);
    SSL_free(c);
    trust_tls_free(t);
    trust_tls_free(NULL);
}

static void test_trust_tls_new_missing_file(void **state)
{
    (void)state;
    trust_tls *t = (trust_tls *)&t; /* must stay untouched */
    trust_tls *const sentinel = t;
    bg_errbuf eb = {{0}};
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/nope.crt", dir);
    conf_tls c = cfg_of(F_GW_CRT, F_GW_KEY, F_CA_CRT);
    c.cert = missing;
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    assert_ptr_equal(t, sentinel);
    assert_non_null(strstr(eb.msg, missing));
    assert_non_null(strstr(eb.msg, "cannot open certificate: No such file or directory"));

    c = cfg_of(F_GW_CRT, F_GW_KEY, F_CA_CRT);
    c.key = missing;
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, "cannot open private key"));

    c = cfg_of(F_GW_CRT, F_GW_KEY, F_CA_CRT);
    c.trust_bundle = missing;
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, "cannot open trust bundle"));

    c.trust_bundle = NULL;
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, "no trust bundle file configured"));
    assert_ptr_equal(t, sentinel);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_trust_tls_new_key_mismatch(void **state)
{
    (void)state;
    trust_tls *t = NULL;
    bg_errbuf eb = {{0}};
    conf_tls c = cfg_of(F_GW_CRT, F_FIRM_KEY, F_CA_CRT);
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    assert_null(t);
    char want[300];
    snprintf(want, sizeof(want), "%s: key does not match certificate", files[F_FIRM_KEY]);
    assert_non_null(strstr(eb.msg, want));
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_trust_tls_new_garbage_pem(void **state)
{
    (void)state;
    trust_tls *t = NULL;
    bg_errbuf eb = {{0}};
    char want[300];

    conf_tls c = cfg_of(F_GARBAGE, F_GW_KEY, F_CA_CRT);
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    snprintf(want, sizeof(want), "%s: no usable PEM certificate chain", files[F_GARBAGE]);
    assert_non_null(strstr(eb.msg, want));

    c = cfg_of(F_GW_CRT, F_GARBAGE, F_CA_CRT);
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    snprintf(want, sizeof(want), "%s: no PEM private key found", files[F_GARBAGE]);
    assert_non_null(strstr(eb.msg, want));

    c = cfg_of(F_GW_CRT, F_GW_KEY, F_GARBAGE);
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    snprintf(want, sizeof(want), "%s: no usable PEM CA certificates", files[F_GARBAGE]);
    assert_non_null(strstr(eb.msg, want));

    /* A key file given as the certificate. */
    c = cfg_of(F_GW_KEY, F_GW_KEY, F_CA_CRT);
    assert_int_equal(trust_tls_new(&t, &c, &eb), BG_ERR_CERT);
    snprintf(want, sizeof(want), "%s: no usable PEM certificate chain", files[F_GW_KEY]);
    assert_non_null(strstr(eb.msg, want));
    assert_null(t);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_trust_tls_handshake_mtls_ok(void **state)
{
    (void)state;
    trust_tls *srv = tls_new_ok(F_GW_CRT, F_GW_KEY);
    trust_tls *cli = tls_new_ok(F_FIRM_CRT, F_FIRM_KEY);
    SSL *s = trust_tls_server_ssl(srv);
    SSL *c = trust_tls_client_ssl(cli, "guangzhou.gba");
    connect_pair(s, c);

    hs_result r = handshake(s, c);
    assert_int_equal(r.client_rc, 1);
    assert_int_equal(r.server_rc, 1);
    assert_int_equal(SSL_version(s), TLS1_3_VERSION);
    assert_true(trust_ssl_is_h2(s));
    assert_true(trust_ssl_is_h2(c));
    assert_string_equal(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name), "guangzhou.gba");

    trust_identity id;
    assert_int_equal(trust_identity_from_ssl(s, &id), 0);
    assert_true(id.present);
    assert_true(id.verified);
    assert_string_equal(id.spiffe_id, "spiffe://guangzhou.gba/firm/acme");
    assert_string_equal(id.city, "guangzhou");
    assert_string_equal(id.role, "firm");
    assert_string_equal(id.subject, "CN=guangzhou.gba/firm/acme");
    assert_int_equal(strlen(id.fingerprint), 64);
    assert_int_equal(strspn(id.fingerprint, "0123456789abcdef"), 64);

    /* And the client sees the gateway. */
    assert_int_equal(trust_identity_from_ssl(c, &id), 0);
    assert_true(id.present);
    assert_true(id.verified);
    assert_string_equal(id.spiffe_id, "spiffe://guangzhou.gba/gateway");
    assert_string_equal(id.role, "gateway");

    exchange(s, c);
    SSL_free(s);
    SSL_free(c);
    trust_tls_free(cli);
    trust_tls_free(srv);
}

/* Gateways dial each other with the same identity they serve with. */
static void test_trust_tls_handshake_gateway_to_gateway(void **state)
{
    (void)state;
    trust_tls *t = tls_new_ok(F_GW_CRT, F_GW_KEY);
    SSL *s = trust_tls_server_ssl(t);
    SSL *c = trust_tls_client_ssl(t, "127.0.0.1");
    assert_null(SSL_get_servername(c, TLSEXT_NAMETYPE_host_name)); /* no SNI for IPs */
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_equal(r.client_rc, 1);
    assert_int_equal(r.server_rc, 1);
    trust_identity id;
    assert_int_equal(trust_identity_from_ssl(s, &id), 0);
    assert_true(id.verified);
    assert_string_equal(id.spiffe_id, "spiffe://guangzhou.gba/gateway");
    exchange(s, c);
    SSL_free(s);
    SSL_free(c);
    trust_tls_free(t);
}

static void test_trust_tls_handshake_client_other_ca_fails(void **state)
{
    (void)state;
    trust_tls *srv = tls_new_ok(F_GW_CRT, F_GW_KEY);
    trust_tls *cli = tls_new_ok(F_ROGUE_CRT, F_ROGUE_KEY); /* trusts our CA, not trusted by it */
    SSL *s = trust_tls_server_ssl(srv);
    SSL *c = trust_tls_client_ssl(cli, NULL);
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_not_equal(r.server_rc, 1);
    long v = SSL_get_verify_result(s);
    assert_true(v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT);
    SSL_free(s);
    SSL_free(c);
    trust_tls_free(cli);
    trust_tls_free(srv);
}

static void test_trust_tls_handshake_client_expired_fails(void **state)
{
    (void)state;
    trust_tls *srv = tls_new_ok(F_GW_CRT, F_GW_KEY);
    trust_tls *cli = tls_new_ok(F_OLD_CRT, F_OLD_KEY);
    SSL *s = trust_tls_server_ssl(srv);
    SSL *c = trust_tls_client_ssl(cli, NULL);
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_not_equal(r.server_rc, 1);
    assert_int_equal(SSL_get_verify_result(s), X509_V_ERR_CERT_HAS_EXPIRED);
    SSL_free(s);
    SSL_free(c);
    trust_tls_free(cli);
    trust_tls_free(srv);
}

static void test_trust_tls_handshake_server_other_ca_fails(void **state)
{
    (void)state;
    trust_tls *srv = tls_new_ok(F_ROGUE_GW_CRT, F_ROGUE_GW_KEY);
    trust_tls *cli = tls_new_ok(F_FIRM_CRT, F_FIRM_KEY);
    SSL *s = trust_tls_server_ssl(srv);
    SSL *c = trust_tls_client_ssl(cli, NULL);
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_not_equal(r.client_rc, 1);
    assert_int_not_equal(SSL_get_verify_result(c), X509_V_OK);
    SSL_free(s);
    SSL_free(c);
    trust_tls_free(cli);
    trust_tls_free(srv);
}

static void test_trust_tls_handshake_no_client_cert_allowed(void **state)
{
    (void)state;
    static const unsigned char h2[] = {2, 'h', '2'};
    trust_tls *srv = tls_new_ok(F_GW_CRT, F_GW_KEY);
    SSL_CTX *cctx = NULL;
    SSL *c = bare_client(&cctx, h2, sizeof(h2));
    SSL *s = trust_tls_server_ssl(srv);
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_equal(r.client_rc, 1);
    assert_int_equal(r.server_rc, 1);
    assert_true(trust_ssl_is_h2(s));

    trust_identity id;
    memset(&id, 0x5a, sizeof(id));
    assert_int_equal(trust_identity_from_ssl(s, &id), 0);
    assert_false(id.present);
    assert_false(id.verified);
    assert_string_equal(id.spiffe_id, "");
    assert_string_equal(id.city, "");
    assert_string_equal(id.subject, "");
    assert_string_equal(id.fingerprint, "");
    exchange(s, c);
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(cctx);
    trust_tls_free(srv);
}

/* The revocation hook: what it was asked, and which SPIFFE id it refuses. */
typedef struct revocation_probe {
    const char *refuse;
    int calls;
    char spiffe_id[256];
    char serial[65];
} revocation_probe;

static bool probe_revoked(void *arg, const char *spiffe_id, const char *serial_hex)
{
    revocation_probe *p = arg;
    p->calls++;
    snprintf(p->spiffe_id, sizeof(p->spiffe_id), "%s", spiffe_id);
    snprintf(p->serial, sizeof(p->serial), "%s", serial_hex);
    return p->refuse != NULL && strcmp(spiffe_id, p->refuse) == 0;
}

/* A certificate the hook calls revoked fails the handshake; others, and clients without a
 * certificate, are not affected; the hook sees the leaf's SPIFFE id and serial. */
static void test_trust_tls_handshake_revoked_fails(void **state)
{
    (void)state;
    trust_tls *srv = tls_new_ok(F_GW_CRT, F_GW_KEY);
    trust_tls *firm = tls_new_ok(F_FIRM_CRT, F_FIRM_KEY);
    revocation_probe p = {.refuse = NULL};
    trust_tls_set_revocation_check(srv, probe_revoked, &p);

    /* not revoked: the hook is asked about the leaf, and lets it through */
    SSL *s = trust_tls_server_ssl(srv);
    SSL *c = trust_tls_client_ssl(firm, NULL);
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_equal(r.server_rc, 1);
    assert_true(p.calls >= 1);
    assert_string_equal(p.spiffe_id, "spiffe://guangzhou.gba/firm/acme");
    trust_identity id;
    assert_int_equal(trust_identity_from_ssl(s, &id), 0);
    assert_true(strlen(id.serial) > 0);
    assert_int_equal(strspn(id.serial, "0123456789abcdef"), strlen(id.serial));
    assert_string_equal(p.serial, id.serial);
    SSL_free(s);
    SSL_free(c);

    /* revoked: the handshake fails, and says why */
    p.refuse = "spiffe://guangzhou.gba/firm/acme";
    p.calls = 0;
    s = trust_tls_server_ssl(srv);
    c = trust_tls_client_ssl(firm, NULL);
    connect_pair(s, c);
    r = handshake(s, c);
    assert_int_not_equal(r.server_rc, 1);
    assert_true(p.calls >= 1);
    assert_int_equal(SSL_get_verify_result(s), X509_V_ERR_CERT_REVOKED);
    SSL_free(s);
    SSL_free(c);

    /* another identity passes */
    s = trust_tls_server_ssl(srv);
    c = trust_tls_client_ssl(srv, NULL); /* the gateway's own certificate */
    connect_pair(s, c);
    r = handshake(s, c);
    assert_int_equal(r.server_rc, 1);
    assert_int_equal(r.client_rc, 1);
    assert_string_equal(p.spiffe_id, "spiffe://guangzhou.gba/gateway");
    SSL_free(s);
    SSL_free(c);

    /* no certificate: nothing to ask about */
    static const unsigned char h2[] = {2, 'h', '2'};
    SSL_CTX *cctx = NULL;
    p.calls = 0;
    c = bare_client(&cctx, h2, sizeof(h2));
    s = trust_tls_server_ssl(srv);
    connect_pair(s, c);
    r = handshake(s, c);
    assert_int_equal(r.server_rc, 1);
    assert_int_equal(p.calls, 0);
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(cctx);

    /* the hook removed: the firm is back */
    trust_tls_set_revocation_check(srv, NULL, NULL);
    s = trust_tls_server_ssl(srv);
    c = trust_tls_client_ssl(firm, NULL);
    connect_pair(s, c);
    r = handshake(s, c);
    assert_int_equal(r.server_rc, 1);
    SSL_free(s);
    SSL_free(c);
    trust_tls_free(firm);
    trust_tls_free(srv);
}

static void test_trust_tls_handshake_alpn_http11_fails(void **state)
{
    (void)state;
    static const unsigned char h1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    trust_tls *srv = tls_new_ok(F_GW_CRT, F_GW_KEY);
    trust_tls *cli = tls_new_ok(F_FIRM_CRT, F_FIRM_KEY);
    SSL *s = trust_tls_server_ssl(srv);
    SSL *c = trust_tls_client_ssl(cli, NULL);
    assert_int_equal(SSL_set_alpn_protos(c, h1, sizeof(h1)), 0);
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_not_equal(r.server_rc, 1);
    assert_int_not_equal(r.client_rc, 1); /* the server refuses in its first flight */
    assert_false(trust_ssl_is_h2(s));
    SSL_free(s);
    SSL_free(c);
    trust_tls_free(cli);
    trust_tls_free(srv);
}

static void test_trust_tls_handshake_no_alpn_fails(void **state)
{
    (void)state;
    trust_tls *srv = tls_new_ok(F_GW_CRT, F_GW_KEY);
    SSL_CTX *cctx = NULL;
    SSL *c = bare_client(&cctx, NULL, 0);
    SSL *s = trust_tls_server_ssl(srv);
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_not_equal(r.server_rc, 1);
    assert_int_not_equal(r.client_rc, 1);
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(cctx);
    trust_tls_free(srv);
}

static void test_trust_tls_handshake_tls12_client_fails(void **state)
{
    (void)state;
    static const unsigned char h2[] = {2, 'h', '2'};
    trust_tls *srv = tls_new_ok(F_GW_CRT, F_GW_KEY);
    SSL_CTX *cctx = NULL;
    SSL *c = bare_client(&cctx, h2, sizeof(h2));
    assert_int_equal(SSL_set_max_proto_version(c, TLS1_2_VERSION), 1);
    SSL *s = trust_tls_server_ssl(srv);
    connect_pair(s, c);
    hs_result r = handshake(s, c);
    assert_int_not_equal(r.server_rc, 1);
    assert_int_not_equal(r.client_rc, 1);
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(cctx);
    trust_tls_free(srv);
}

static void test_trust_identity_from_ssl_before_handshake(void **state)
{
    (void)state;
    trust_tls *t = tls_new_ok(F_GW_CRT, F_GW_KEY);
    SSL *s = trust_tls_server_ssl(t);
    trust_identity id;
    assert_int_equal(trust_identity_from_ssl(s, &id), 0);
    assert_false(id.present);
    assert_false(trust_ssl_is_h2(s));
    SSL_free(s);
    trust_tls_free(t);
}

static void test_trust_spiffe_parse_table(void **state)
{
    (void)state;
    static const struct {
        const char *uri;
        int rc;
        const char *city, *role;
    } cases[] = {
        {"spiffe://guangzhou.gba/firm/acme", 0, "guangzhou", "firm"},
        {"spiffe://guangzhou.gba/gateway", 0, "guangzhou", "gateway"},
        {"spiffe://hong-kong2.gba/regulator/HKMA_1.x-y", 0, "hong-kong2", "regulator"},
        {"spiffe://m.gba/admin/.x", 0, "m", "admin"},
        {"spiffe://macau.gba/admin/a..b", 0, "macau", "admin"},
        {"spiffe://guangzhou.gba", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm/", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm/a/b", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm/..", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm/.", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/Firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm1", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm/a b", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm/a%2Fb", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm?x", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba:443/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://Guangzhou.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://1city.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://-city.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gbax/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.example/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba.evil/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://user@guangzhou.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"SPIFFE://guangzhou.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"https://guangzhou.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe:/guangzhou.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {" spiffe://guangzhou.gba/firm", BG_ERR_IDENTITY, NULL, NULL},
        {"spiffe://guangzhou.gba/firm ", BG_ERR_IDENTITY, NULL, NULL},
        {"", BG_ERR_IDENTITY, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char city[64] = "untouched", role[32] = "untouched";
        int rc = trust_spiffe_parse(cases[i].uri, city, sizeof(city), role, sizeof(role));
        if (rc != cases[i].rc) {
            fail_msg("%s: got %d, want %d", cases[i].uri, rc, cases[i].rc);
        }
        assert_string_equal(city, cases[i].city != NULL ? cases[i].city : "untouched");
        assert_string_equal(role, cases[i].role != NULL ? cases[i].role : "untouched");
    }
    assert_int_equal(trust_spiffe_parse(NULL, NULL, 0, NULL, 0), BG_ERR_IDENTITY);
    /* Validation only, no outputs. */
    assert_int_equal(trust_spiffe_parse("spiffe://a.gba/b", NULL, 0, NULL, 0), 0);
}

static void test_trust_spiffe_parse_small_buffers(void **state)
{
    (void)state;
    char city[9] = "x", role[4] = "y";
    /* "guangzhou" needs 10 bytes: refused, and nothing is written. */
    assert_int_equal(trust_spiffe_parse("spiffe://guangzhou.gba/firm", city, sizeof(city), role,
                                        sizeof(role)),
                     BG_ERR_IDENTITY);
    assert_string_equal(city, "x");
    assert_string_equal(role, "y");
    assert_int_equal(trust_spiffe_parse("spiffe://shenzhen.gba/firm", city, sizeof(city), role,
                                        sizeof(role)),
                     BG_ERR_IDENTITY); /* "firm" needs 5 */
    assert_string_equal(city, "x");
    assert_int_equal(trust_spiffe_parse("spiffe://shenzhen.gba/adm", city, sizeof(city), role,
                                        sizeof(role)),
                     0);
    assert_string_equal(city, "shenzhen");
    assert_string_equal(role, "adm");
}

static void test_trust_tls_errors_drains_queue(void **state)
{
    (void)state;
    char buf[512];
    ERR_clear_error();
    trust_tls_errors(buf, sizeof(buf));
    assert_string_equal(buf, "");

    assert_null(BIO_new_file("/nonexistent/baygate/x", "r"));
    assert_null(BIO_new_file("/nonexistent/baygate/y", "r"));
    trust_tls_errors(buf, sizeof(buf));
    assert_true(strlen(buf) > 0);
    assert_non_null(strstr(buf, "; "));
    assert_int_equal(ERR_peek_error(), 0);

    /* A tiny buffer truncates but still drains everything. */
    assert_null(BIO_new_file("/nonexistent/baygate/z", "r"));
    char tiny[8];
    trust_tls_errors(tiny, sizeof(tiny));
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    assert_int_equal(ERR_peek_error(), 0);
    trust_tls_errors(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_tls_new_ok),
        cmocka_unit_test(test_trust_tls_new_missing_file),
        cmocka_unit_test(test_trust_tls_new_key_mismatch),
        cmocka_unit_test(test_trust_tls_new_garbage_pem),
        cmocka_unit_test(test_trust_tls_handshake_mtls_ok),
        cmocka_unit_test(test_trust_tls_handshake_gateway_to_gateway),
        cmocka_unit_test(test_trust_tls_handshake_client_other_ca_fails),
        cmocka_unit_test(test_trust_tls_handshake_client_expired_fails),
        cmocka_unit_test(test_trust_tls_handshake_server_other_ca_fails),
        cmocka_unit_test(test_trust_tls_handshake_no_client_cert_allowed),
        cmocka_unit_test(test_trust_tls_handshake_revoked_fails),
        cmocka_unit_test(test_trust_tls_handshake_alpn_http11_fails),
        cmocka_unit_test(test_trust_tls_handshake_no_alpn_fails),
        cmocka_unit_test(test_trust_tls_handshake_tls12_client_fails),
        cmocka_unit_test(test_trust_identity_from_ssl_before_handshake),
        cmocka_unit_test(test_trust_spiffe_parse_table),
        cmocka_unit_test(test_trust_spiffe_parse_small_buffers),
        cmocka_unit_test(test_trust_tls_errors_drains_queue),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
