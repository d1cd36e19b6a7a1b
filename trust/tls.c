/* trust/tls.c: the gateway's two TLS 1.3 contexts (listener side and outbound peer side) and
 * the reading of a peer's SPIFFE identity after the handshake. Not for: deciding what an
 * identity may do; the gateway's authenticate stage does that with trust_identity. */
#include "trust/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct trust_tls {
    SSL_CTX *server;
    SSL_CTX *client;
    /* set once before use (trust_tls_set_revocation_check()), then read-only */
    bool (*revoked)(void *arg, const char *spiffe_id, const char *serial_hex);
    void *revoked_arg;
};

/* Chains are leaf + city CA; a little room for an intermediate, no more. */
#define VERIFY_DEPTH 4
/* Distinguishes our sessions from any other application's in a shared cache; required by
 * OpenSSL when client certificates are verified and sessions are cached. */
static const unsigned char session_id_ctx[] = "baygate";
/* ALPN wire format: length-prefixed protocol names. We speak HTTP/2 only (RFC 9113 §3.2). */
static const unsigned char alpn_h2[] = {2, 'h', '2'};

void trust_tls_errors(char *buf, size_t len)
{
    size_t used = 0;
    unsigned long e;

    if (buf != NULL && len > 0) {
        buf[0] = '\0';
    }
    /* Drain the whole queue even when |buf| is full, so the next caller starts clean. */
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        if (buf == NULL || len == 0) {
            continue;
        }
        int n = snprintf(buf + used, len - used, "%s%s", used > 0 ? "; " : "", one);
        if (n < 0 || (size_t)n >= len - used) {
            used = len - 1; /* truncated; snprintf left it terminated */
        } else {
            used += (size_t)n;
        }
    }
}

/* Formats "|file|: |what|" plus the OpenSSL queue, if any, into |eb|; returns |err|. */
static int file_err(bg_errbuf *eb, int err, const char *file, const char *what)
{
    char ossl[256];
    trust_tls_errors(ossl, sizeof(ossl));
    if (ossl[0] != '\0') {
        return bg_errf(eb, err, "%s: %s (%s)", file, what, ossl);
    }
    return bg_errf(eb, err, "%s: %s", file, what);
}

/* OpenSSL's messages for a missing file are indirect ("system library"); say it plainly. */
static int check_readable(const char *path, const char *what, bg_errbuf *eb)
{
    if (path == NULL || path[0] == '\0') {
        return bg_errf(eb, BG_ERR_CERT, "tls: no %s file configured", what);
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return bg_errf(eb, BG_ERR_CERT, "%s: cannot open %s: %s", path, what, strerror(errno));
    }
    fclose(f);
    return 0;
}

/* Reads the first private key in |path|; caller frees with EVP_PKEY_free(). */
static int load_key(EVP_PKEY **out, const char *path, bg_errbuf *eb)
{
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        return file_err(eb, BG_ERR_CERT, path, "cannot open private key");
    }
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pkey == NULL) {
        return file_err(eb, BG_ERR_CERT, path, "no PEM private key found");
    }
    *out = pkey;
    return 0;
}

/* Loads certificate chain, key and trust bundle into |ctx|, shared by both directions. */
static int load_identity(SSL_CTX *ctx, const conf_tls *cfg, bg_errbuf *eb)
{
    int rc;

    if ((rc = check_readable(cfg->cert, "certificate", eb)) != 0 ||
        (rc = check_readable(cfg->key, "private key", eb)) != 0 ||
        (rc = check_readable(cfg->trust_bundle, "trust bundle", eb)) != 0) {
        return rc;
    }
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
        return file_err(eb, BG_ERR_CERT, cfg->cert, "no usable PEM certificate chain");
    }
    /* Load the key ourselves so "not a key" and "wrong key" get different messages;
     * SSL_CTX_use_PrivateKey_file reports both as a bare OpenSSL error. */
    EVP_PKEY *pkey = NULL;
    if ((rc = load_key(&pkey, cfg->key, eb)) != 0) {
        return rc;
    }
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    if (leaf == NULL || X509_check_private_key(leaf, pkey) != 1) {
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        return bg_errf(eb, BG_ERR_CERT, "%s: key does not match certificate %s", cfg->key,
                       cfg->cert);
    }
    rc = SSL_CTX_use_PrivateKey(ctx, pkey);
    EVP_PKEY_free(pkey); /* the context holds its own reference */
    if (rc != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        return file_err(eb, BG_ERR_CERT, cfg->key, "key does not match certificate");
    }
    if (SSL_CTX_load_verify_locations(ctx, cfg->trust_bundle, NULL) != 1) {
        return file_err(eb, BG_ERR_CERT, cfg->trust_bundle, "no usable PEM CA certificates");
    }
    SSL_CTX_set_verify_depth(ctx, VERIFY_DEPTH);
    return 0;
}

/* Called by OpenSSL during a server handshake with the client's ALPN list. We accept only
 * "h2"; anything else ends the handshake with no_application_protocol (RFC 7301 §3.2). */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int n = in[i];
        if (n == 0 || n > inlen - i - 1) {
            break; /* malformed list; OpenSSL has validated it, but be safe */
        }
        if (n == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += n + 1;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Called by OpenSSL on every ClientHello. The ALPN select callback only runs when the client
 * sent the extension; a client that sent none must fail too, because we speak h2 only. */
static int on_client_hello(SSL *ssl, int *al, void *arg)
{
    (void)arg;
    const unsigned char *ext = NULL;
    size_t extlen = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation,
                                  &ext, &extlen) != 1) {
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

static void find_spiffe_san(X509 *cert, char *id, size_t cap);
static void serial_hex(X509 *cert, char *out, size_t cap);

/* Called by OpenSSL for each certificate of a client's chain as it is verified (server side),
 * with |ok| the verdict so far. The leaf (depth 0) of a chain that verified is also put to the
 * revocation check; a revoked one fails with X509_V_ERR_CERT_REVOKED, ending the handshake. */
static int on_verify(int ok, X509_STORE_CTX *xs)
{
    if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0) {
        return ok;
    }
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    trust_tls *t = ssl != NULL ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
    X509 *leaf = X509_STORE_CTX_get_current_cert(xs);
    if (t == NULL || t->revoked == NULL || leaf == NULL) {
        return ok;
    }
    char id[256], serial[65];
    find_spiffe_san(leaf, id, sizeof(id));
    serial_hex(leaf, serial, sizeof(serial));
    if (t->revoked(t->revoked_arg, id, serial)) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REVOKED);
        return 0;
    }
    return ok;
}

static int ctx_common(SSL_CTX *ctx, const char *side, bg_errbuf *eb)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
        char ossl[256];
        trust_tls_errors(ossl, sizeof(ossl));
        return bg_errf(eb, BG_ERR_TLS, "tls: cannot restrict %s context to TLS 1.3 (%s)",
                       side, ossl);
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return 0;
}

static int server_ctx_new(SSL_CTX **out, const conf_tls *cfg, bg_errbuf *eb)
{
    int rc;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        char ossl[256];
        trust_tls_errors(ossl, sizeof(ossl));
        return bg_errf(eb, BG_ERR_TLS, "tls: cannot create server context (%s)", ossl);
    }
    if ((rc = ctx_common(ctx, "server", eb)) != 0 || (rc = load_identity(ctx, cfg, eb)) != 0) {
        goto fail_free;
    }
    /* Tell clients which CAs we accept (TLS 1.3 certificate_authorities). Optional: when the
     * list cannot be built, clients just pick their only certificate anyway. */
    STACK_OF(X509_NAME) *cas = SSL_load_client_CA_file(cfg->trust_bundle);
    if (cas != NULL) {
        SSL_CTX_set_client_CA_list(ctx, cas); /* takes |cas| */
    }
    ERR_clear_error();
    /* Request a client certificate and verify it when presented, but do not require one:
     * /healthz stays open and the gateway enforces identity per route. A presented
     * certificate that fails verification (unknown CA, expired) aborts the handshake. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
    if (SSL_CTX_set_session_id_context(ctx, session_id_ctx, sizeof(session_id_ctx) - 1) != 1) {
        rc = file_err(eb, BG_ERR_TLS, "tls", "cannot set session id context");
        goto fail_free;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    *out = ctx;
    return 0;

fail_free:
    SSL_CTX_free(ctx);
    return rc;
}

static int client_ctx_new(SSL_CTX **out, const conf_tls *cfg, bg_errbuf *eb)
{
    int rc;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        char ossl[256];
        trust_tls_errors(ossl, sizeof(ossl));
        return bg_errf(eb, BG_ERR_TLS, "tls: cannot create client context (%s)", ossl);
    }
    if ((rc = ctx_common(ctx, "client", eb)) != 0 || (rc = load_identity(ctx, cfg, eb)) != 0) {
        goto fail_free;
    }
    /* Peers are identified by the SPIFFE id in their certificate, which the gateway checks
     * after the handshake; no hostname verification (peers are often IP literals). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* SSL_CTX_set_alpn_protos() returns 0 on success, unlike the rest of the API. */
    if (SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2)) != 0) {
        rc = file_err(eb, BG_ERR_TLS, "tls", "cannot set client ALPN");
        goto fail_free;
    }
    *out = ctx;
    return 0;

fail_free:
    SSL_CTX_free(ctx);
    return rc;
}

int trust_tls_new(trust_tls **out, const conf_tls *cfg, bg_errbuf *eb)
{
    int rc;
    if (out == NULL || cfg == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "tls: missing configuration");
    }
    trust_tls *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "tls: out of memory");
    }
    if ((rc = server_ctx_new(&t->server, cfg, eb)) != 0) {
        goto fail_free;
    }
    if ((rc = client_ctx_new(&t->client, cfg, eb)) != 0) {
        goto fail_server;
    }
    SSL_CTX_set_app_data(t->server, t); /* for on_verify() */
    *out = t;
    return 0;

fail_server:
    SSL_CTX_free(t->server);
fail_free:
    free(t);
    return rc;
}

void trust_tls_free(trust_tls *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->client);
    SSL_CTX_free(t->server);
    free(t);
}

void trust_tls_set_revocation_check(trust_tls *t,
                                    bool (*revoked)(void *arg, const char *spiffe_id,
                                                    const char *serial_hex),
                                    void *arg)
{
    t->revoked = revoked;
    t->revoked_arg = arg;
}

struct ssl_st *trust_tls_server_ssl(trust_tls *t)
{
    SSL *ssl = SSL_new(t->server);
    if (ssl != NULL) {
        SSL_set_accept_state(ssl);
    }
    return ssl;
}

static bool is_ip_literal(const char *s)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

struct ssl_st *trust_tls_client_ssl(trust_tls *t, const char *sni)
{
    SSL *ssl = SSL_new(t->client);
    if (ssl == NULL) {
        return NULL;
    }
    /* RFC 6066 §3: literal IPv4 and IPv6 addresses are not permitted in SNI. */
    if (sni != NULL && sni[0] != '\0' && !is_ip_literal(sni)) {
        if (SSL_set_tlsext_host_name(ssl, sni) != 1) {
            SSL_free(ssl);
            ERR_clear_error();
            return NULL;
        }
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

bool trust_ssl_is_h2(struct ssl_st *ssl)
{
    const unsigned char *proto = NULL;
    unsigned int len = 0;
    if (ssl == NULL) {
        return false;
    }
    SSL_get0_alpn_selected(ssl, &proto, &len);
    return proto != NULL && len == 2 && memcmp(proto, "h2", 2) == 0;
}

/* Copies |s| into |dst| when it fits; returns false (and leaves |dst|) otherwise. */
static bool copy_str(char *dst, size_t cap, const char *s, size_t n)
{
    if (dst == NULL || n >= cap) {
        return false;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

static bool is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int trust_spiffe_parse(const char *uri, char *city, size_t city_len, char *role,
                       size_t role_len)
{
    static const char scheme[] = "spiffe://";
    static const char suffix[] = ".gba";
    if (uri == NULL || strncmp(uri, scheme, sizeof(scheme) - 1) != 0) {
        return BG_ERR_IDENTITY;
    }
    /* Trust domain: <city>.gba with city [a-z][a-z0-9-]* */
    const char *c = uri + sizeof(scheme) - 1;
    const char *p = c;
    if (!is_lower(*p)) {
        return BG_ERR_IDENTITY;
    }
    while (is_lower(*p) || is_digit(*p) || *p == '-') {
        p++;
    }
    size_t clen = (size_t)(p - c);
    if (strncmp(p, suffix, sizeof(suffix) - 1) != 0) {
        return BG_ERR_IDENTITY;
    }
    p += sizeof(suffix) - 1;
    if (*p != '/') {
        return BG_ERR_IDENTITY;
    }
    /* Role: first path segment, [a-z]+ */
    const char *r = ++p;
    while (is_lower(*p)) {
        p++;
    }
    size_t rlen = (size_t)(p - r);
    if (rlen == 0) {
        return BG_ERR_IDENTITY;
    }
    /* Optional id segment [A-Za-z0-9._-]+, and nothing after it. "." and ".." are refused as
     * in the SPIFFE-ID spec, so that no path normalisation can change the identity. */
    if (*p == '/') {
        const char *id = ++p;
        while (is_lower(*p) || (*p >= 'A' && *p <= 'Z') || is_digit(*p) || *p == '.' ||
               *p == '_' || *p == '-') {
            p++;
        }
        size_t idlen = (size_t)(p - id);
        if (idlen == 0 || (idlen == 1 && id[0] == '.') ||
            (idlen == 2 && id[0] == '.' && id[1] == '.')) {
            return BG_ERR_IDENTITY;
        }
    }
    if (*p != '\0') {
        return BG_ERR_IDENTITY;
    }
    /* Both must fit before either is written: outputs are untouched on failure. */
    if ((city != NULL && clen >= city_len) || (role != NULL && rlen >= role_len)) {
        return BG_ERR_IDENTITY;
    }
    if (city != NULL) {
        copy_str(city, city_len, c, clen);
    }
    if (role != NULL) {
        copy_str(role, role_len, r, rlen);
    }
    return 0;
}

/* Finds the first URI SAN starting "spiffe://" and copies it into |id|; "" when none.
 * URIs with embedded NULs or that do not fit are skipped rather than truncated. */
static void find_spiffe_san(X509 *cert, char *id, size_t cap)
{
    id[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) {
        ERR_clear_error();
        return;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) {
            continue;
        }
        const ASN1_IA5STRING *uri = gn->d.uniformResourceIdentifier;
        const char *data = (const char *)ASN1_STRING_get0_data(uri);
        int n = ASN1_STRING_length(uri);
        if (data == NULL || n < 9 || memchr(data, '\0', (size_t)n) != NULL ||
            strncmp(data, "spiffe://", 9) != 0) {
            continue;
        }
        if (copy_str(id, cap, data, (size_t)n)) {
            break;
        }
    }
    GENERAL_NAMES_free(names);
}

/* |cert|'s serial number as lowercase hex into |out|; "" when it does not fit or on error. */
static void serial_hex(X509 *cert, char *out, size_t cap)
{
    out[0] = '\0';
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL && strlen(hex) < cap) {
        for (size_t i = 0; hex[i] != '\0'; i++) {
            char c = hex[i];
            out[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
        }
        out[strlen(hex)] = '\0';
    }
    OPENSSL_free(hex);
    BN_free(bn);
    ERR_clear_error();
}

int trust_identity_from_ssl(struct ssl_st *ssl, trust_identity *out)
{
    memset(out, 0, sizeof(*out));
    X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    if (cert == NULL) {
        return 0;
    }
    out->present = true;
    out->verified = SSL_get_verify_result(ssl) == X509_V_OK;

    find_spiffe_san(cert, out->spiffe_id, sizeof(out->spiffe_id));
    serial_hex(cert, out->serial, sizeof(out->serial));
    if (out->spiffe_id[0] != '\0' &&
        trust_spiffe_parse(out->spiffe_id, out->city, sizeof(out->city), out->role,
                           sizeof(out->role)) != 0) {
        out->city[0] = '\0';
        out->role[0] = '\0';
    }

    /* RFC 2253 one-line subject; a memory BIO because the DN's length is the peer's. */
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem == NULL) {
        memset(out, 0, sizeof(*out));
        return BG_ERR_NOMEM;
    }
    if (X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        char *dn = NULL;
        long n = BIO_get_mem_data(mem, &dn);
        if (dn != NULL && n > 0) {
            size_t len = (size_t)n < sizeof(out->subject) ? (size_t)n : sizeof(out->subject) - 1;
            memcpy(out->subject, dn, len);
            out->subject[len] = '\0';
        }
    }
    BIO_free(mem);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
        ERR_clear_error();
        memset(out, 0, sizeof(*out));
        return BG_ERR_NOMEM;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < mdlen; i++) {
        out->fingerprint[2 * i] = hex[md[i] >> 4];
        out->fingerprint[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out->fingerprint[2 * mdlen] = '\0';
    return 0;
}

/* --- Signing with the gateway's own key ------------------------------------------------- */

const char *trust_key_algorithm(const struct evp_pkey_st *pkey)
{
    if (pkey == NULL) {
        return NULL;
    }
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_ED25519:
        return "ed25519";
    case EVP_PKEY_EC:
        /* Only the NIST curves we issue; the bit count names them unambiguously here. */
        switch (EVP_PKEY_get_bits(pkey)) {
        case 256:
            return "ecdsa-p256-sha256";
        case 384:
            return "ecdsa-p384-sha384";
        default:
            return NULL;
        }
    default:
        return NULL;
    }
}

const char *trust_tls_sign_algorithm(trust_tls *t)
{
    return trust_key_algorithm(SSL_CTX_get0_privatekey(t->client));
}

int trust_tls_sign(trust_tls *t, const uint8_t *msg, size_t len, bg_buf *sig, bg_errbuf *eb)
{
    EVP_PKEY *pkey = SSL_CTX_get0_privatekey(t->client);
    const char *alg = trust_key_algorithm(pkey);
    if (alg == NULL) {
        return bg_errf(eb, BG_ERR_TLS, "sign: gateway key type is not usable for signatures");
    }
    /* Ed25519 hashes internally (PureEdDSA) and takes no digest. */
    const EVP_MD *md = NULL;
    if (strcmp(alg, "ecdsa-p256-sha256") == 0) {
        md = EVP_sha256();
    } else if (strcmp(alg, "ecdsa-p384-sha384") == 0) {
        md = EVP_sha384();
    }
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    if (mctx == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "sign: out of memory");
    }
    int rc = 0;
    uint8_t *out = NULL;
    size_t outlen = 0;
    char ossl[256];
    ERR_clear_error();
    if (EVP_DigestSignInit(mctx, NULL, md, NULL, pkey) != 1 ||
        EVP_DigestSign(mctx, NULL, &outlen, msg, len) != 1) {
        trust_tls_errors(ossl, sizeof(ossl));
        rc = bg_errf(eb, BG_ERR_TLS, "sign: %s init failed (%s)", alg, ossl);
        goto done;
    }
    out = OPENSSL_malloc(outlen > 0 ? outlen : 1);
    if (out == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "sign: out of memory");
        goto done;
    }
    if (EVP_DigestSign(mctx, out, &outlen, msg, len) != 1) {
        trust_tls_errors(ossl, sizeof(ossl));
        rc = bg_errf(eb, BG_ERR_TLS, "sign: %s failed (%s)", alg, ossl);
        goto done;
    }
    if ((rc = bg_buf_append(sig, out, outlen)) != 0) {
        rc = bg_errf(eb, rc, "sign: out of memory");
    }
done:
    OPENSSL_free(out);
    EVP_MD_CTX_free(mctx);
    return rc;
}

int trust_tls_cert_der(trust_tls *t, bg_buf *out)
{
    X509 *leaf = SSL_CTX_get0_certificate(t->client);
    if (leaf == NULL) {
        return BG_ERR_TLS;
    }
    unsigned char *der = NULL;
    int n = i2d_X509(leaf, &der);
    if (n <= 0) {
        ERR_clear_error();
        return BG_ERR_NOMEM;
    }
    int rc = bg_buf_append(out, der, (size_t)n);
    OPENSSL_free(der);
    return rc;
}

int trust_tls_spiffe_id(trust_tls *t, char *out, size_t cap)
{
    char id[256];
    X509 *leaf = SSL_CTX_get0_certificate(t->client);
    if (out == NULL || cap == 0) {
        return BG_ERR_IDENTITY;
    }
    out[0] = '\0';
    if (leaf == NULL) {
        return BG_ERR_IDENTITY;
    }
    find_spiffe_san(leaf, id, sizeof(id));
    if (id[0] == '\0' || strlen(id) >= cap) {
        return BG_ERR_IDENTITY;
    }
    memcpy(out, id, strlen(id) + 1);
    return 0;
}

struct x509_store_st *trust_tls_trust_store(trust_tls *t)
{
    /* Both contexts loaded the same bundle; the client one verifies peers' certificates. */
    return SSL_CTX_get_cert_store(t->client);
}

struct evp_pkey_st *trust_tls_private_key(trust_tls *t)
{
    /* Both contexts loaded the same key, checked against the certificate by load_identity(). */
    return SSL_CTX_get0_privatekey(t->client);
}
