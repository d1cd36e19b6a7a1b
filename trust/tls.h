/* trust/tls.h: TLS 1.3 contexts for the gateway's listeners and its outbound peer sessions,
 * and the identity (SPIFFE URI SAN) of the party at the other end. OpenSSL stays behind this
 * header: callers get `struct ssl_st *` only to hand to libevent. Not for: deciding what an
 * identity may do (gateway/authz.c), or which identities are revoked (the gateway says, through
 * trust_tls_set_revocation_check()). */
#ifndef TRUST_TLS_H
#define TRUST_TLS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/bytes.h"
#include "base/err.h"
#include "conf/conf.h"

struct ssl_st;
typedef struct trust_tls trust_tls;

/* Loads |cfg|'s certificate, key and trust bundle into a server and a client context:
 * TLS 1.3 only, ALPN "h2" only (a client that does not offer h2 fails the handshake), client
 * certificates requested and verified against the bundle when presented but optional (so
 * /healthz stays open; the gateway enforces per route), peers' server certificates verified
 * against the bundle. Checks that the key matches the certificate. Returns 0 and |*out| (caller
 * frees with trust_tls_free()), or BG_ERR_TLS / BG_ERR_CERT with "file: reason" in |eb|.
 * Thread-safe to use from many workers once built. */
int trust_tls_new(trust_tls **out, const conf_tls *cfg, bg_errbuf *eb);
void trust_tls_free(trust_tls *t); /* NULL is a no-op */

/* Installs the revocation check of the listener side: during every handshake in which a client
 * presents a certificate that chains to the bundle, |revoked| is called with its SPIFFE id
 * ("" when it has none) and serial number (lowercase hex, "" when unreadable); true fails the
 * handshake with X509_V_ERR_CERT_REVOKED (the client gets a certificate_revoked alert; the
 * server's SSL_get_verify_result() says so). |revoked| runs on the handshaking thread, any of
 * them, and must be thread-safe; it may log. NULL removes the check. Call it before the
 * contexts are used from other threads. Resumed sessions do not re-run it: the caller checks
 * the identity of a finished handshake too. */
void trust_tls_set_revocation_check(trust_tls *t,
                                    bool (*revoked)(void *arg, const char *spiffe_id,
                                                    const char *serial_hex),
                                    void *arg);

/* A new SSL for an accepted connection; caller owns it (usually hands it to a bufferevent
 * with BEV_OPT_CLOSE_ON_FREE). NULL on allocation failure. */
struct ssl_st *trust_tls_server_ssl(trust_tls *t);
/* A new SSL for an outbound mutual-TLS connection to a peer, offering ALPN h2 and presenting
 * our certificate. |sni| may be NULL (IP literals get no SNI). Caller owns it. */
struct ssl_st *trust_tls_client_ssl(trust_tls *t, const char *sni);

/* True when ALPN selected "h2" on |ssl| after the handshake. */
bool trust_ssl_is_h2(struct ssl_st *ssl);

/* The other party of a finished handshake. */
typedef struct trust_identity {
    bool present;         /* a certificate was presented */
    bool verified;        /* and it chained to the trust bundle (OpenSSL verify result OK) */
    char spiffe_id[256];  /* first URI SAN starting "spiffe://", "" if none */
    char city[64];        /* from spiffe://<city>.gba/..., "" if not of that shape */
    char role[32];        /* first path segment: "gateway", "firm", "regulator", "admin" */
    char subject[256];    /* one-line subject DN, for logs */
    char fingerprint[65]; /* SHA-256 of the DER certificate, lowercase hex */
    char serial[65];      /* its serial number, lowercase hex ("" if it does not fit) */
} trust_identity;

/* Fills |out| from |ssl|'s peer certificate; when none was presented, present = false and
 * the strings are empty. Returns 0 (also when absent) or BG_ERR_NOMEM. */
int trust_identity_from_ssl(struct ssl_st *ssl, trust_identity *out);

/* Splits "spiffe://<city>.gba/<role>[/<id>]" into |city| and |role|; returns 0 or
 * BG_ERR_IDENTITY when |uri| has another shape. */
int trust_spiffe_parse(const char *uri, char *city, size_t city_len, char *role,
                       size_t role_len);

/* Drains OpenSSL's error queue into |buf| as one line ("" when empty). Call on the thread
 * that saw the error. */
void trust_tls_errors(char *buf, size_t len);

/* --- Signing with the gateway's own key (contracts, revocations) ------------------------ */
struct evp_pkey_st;
struct x509_store_st;

/* The signature algorithm name for |pkey|: "ecdsa-p256-sha256", "ecdsa-p384-sha384" or
 * "ed25519"; NULL for any other key (not usable for contract signatures). */
const char *trust_key_algorithm(const struct evp_pkey_st *pkey);
/* The algorithm trust_tls_sign() uses with |t|'s key, as above; NULL when unsupported. */
const char *trust_tls_sign_algorithm(trust_tls *t);
/* Signs |len| bytes at |msg| with |t|'s gateway private key (EVP_DigestSign: ECDSA with the
 * curve's SHA-2, DER signature; or Ed25519) and appends the signature to |sig|. Callers
 * domain-separate |msg| themselves. Returns 0, BG_ERR_NOMEM, or BG_ERR_TLS with the OpenSSL
 * reason in |eb| (may be NULL); |sig| is unchanged on failure. Thread-safe. */
int trust_tls_sign(trust_tls *t, const uint8_t *msg, size_t len, bg_buf *sig, bg_errbuf *eb);
/* Appends the DER of |t|'s own (leaf) certificate to |out|. Returns 0, BG_ERR_NOMEM or
 * BG_ERR_TLS. */
int trust_tls_cert_der(trust_tls *t, bg_buf *out);
/* Copies the first spiffe:// URI SAN of |t|'s own certificate into |out| (|cap| bytes).
 * Returns 0, or BG_ERR_IDENTITY when there is none or it does not fit ("" in |out|). */
int trust_tls_spiffe_id(trust_tls *t, char *out, size_t cap);
/* The trust bundle as an X509_STORE, borrowed from |t| (valid until trust_tls_free()); use it
 * read-only, e.g. with X509_STORE_CTX_init(). Thread-safe for verification. */
struct x509_store_st *trust_tls_trust_store(trust_tls *t);
/* The gateway's own private key, borrowed from |t| (valid until trust_tls_free()), for
 * key agreement with peers' certified keys (trust/secagg.h). Never copy it out or log it.
 * Thread-safe for use as the local key of a derivation. */
struct evp_pkey_st *trust_tls_private_key(trust_tls *t);

#endif /* TRUST_TLS_H */
