/* trust/secagg.c: pairwise additive masks mod 2^64 from ECDH + HKDF-SHA256 + AES-256-CTR,
 * over the gateways' own certified keys (no extra key exchange: the certificates are what
 * mTLS already trusts). Not for: dropouts (no secret sharing of the pairwise seeds; a
 * missing party makes the sum useless, never wrong-but-plausible), or any transport. */
#include "trust/secagg.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "trust/tls.h"

#define CITY_MAX 63
#define KEY_LEN 32 /* AES-256 */
#define IV_LEN 16  /* the CTR block: a 128-bit big-endian counter starting at the IV */
#define CHUNK 4096 /* keystream bytes per EVP call */
static const char info_prefix[] = "baygate secagg v1|";

/* Formats "secagg: party "<city>": |what|" plus the OpenSSL queue, if any; returns |err|. */
static int party_err(bg_errbuf *eb, int err, const char *city, const char *what)
{
    char ossl[256];
    trust_tls_errors(ossl, sizeof(ossl));
    return bg_errf(eb, err, "secagg: party \"%s\": %s%s%s%s", city, what,
                   ossl[0] != '\0' ? " (" : "", ossl, ossl[0] != '\0' ? ")" : "");
}

/* [a-z][a-z0-9-]*, at most CITY_MAX bytes: the trust-domain label of spiffe://<city>.gba. */
static bool city_is_valid(const char *city)
{
    if (city == NULL || !(city[0] >= 'a' && city[0] <= 'z')) {
        return false;
    }
    size_t n = 0;
    for (const char *p = city; *p != '\0'; p++, n++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            return false;
        }
    }
    return n <= CITY_MAX;
}

/* True for an EC key on P-256, the only curve this project issues. */
static bool is_p256(const EVP_PKEY *k)
{
    char group[32];
    size_t len = 0;
    if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(k, group, sizeof(group), &len) != 1) {
        ERR_clear_error();
        return false;
    }
    return strcmp(group, "prime256v1") == 0;
}

/* Parses exactly |len| bytes of DER; NULL when they are not one certificate. */
static X509 *parse_der(const uint8_t *der, size_t len)
{
    if (der == NULL || len == 0 || len > (size_t)INT32_MAX) {
        return NULL;
    }
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x != NULL && p != der + len) {
        X509_free(x); /* trailing bytes: not what was signed for us */
        x = NULL;
    }
    return x;
}

/* The first URI SAN starting "spiffe://" into |out|, "" when none (or it does not fit or
 * holds a NUL). */
static void first_spiffe_san(X509 *cert, char *out, size_t cap)
{
    out[0] = '\0';
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
        const char *data = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        int n = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (data == NULL || n < 9 || strncmp(data, "spiffe://", 9) != 0) {
            continue;
        }
        if ((size_t)n < cap && memchr(data, '\0', (size_t)n) == NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
        break; /* the first spiffe:// URI decides, valid or not */
    }
    GENERAL_NAMES_free(names);
}

/* Verifies |cert| for |city| against |store|: chain, validity, purpose, SAN. */
static int check_peer(X509 *cert, const char *city, X509_STORE *store, bg_errbuf *eb)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx == NULL) {
        return party_err(eb, BG_ERR_NOMEM, city, "out of memory");
    }
    if (X509_STORE_CTX_init(ctx, store, cert, NULL) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        X509_STORE_CTX_free(ctx);
        return party_err(eb, BG_ERR_TLS, city, "cannot set up verification");
    }
    int ok = X509_verify_cert(ctx);
    int verr = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    if (ok != 1) {
        ERR_clear_error();
        char what[200];
        snprintf(what, sizeof(what), "certificate does not verify: %s",
                 X509_verify_cert_error_string(verr));
        return party_err(eb, BG_ERR_CERT, city, what);
    }
    char want[CITY_MAX + 32], got[256];
    snprintf(want, sizeof(want), "spiffe://%s.gba/gateway", city);
    first_spiffe_san(cert, got, sizeof(got));
    if (strcmp(want, got) != 0) {
        char what[400];
        snprintf(what, sizeof(what), "certificate identity is \"%s\", want \"%s\"", got, want);
        return party_err(eb, BG_ERR_CERT, city, what);
    }
    if (!is_p256(X509_get0_pubkey(cert))) {
        return party_err(eb, BG_ERR_CERT, city,
                         "certificate key is not EC P-256, which secure aggregation needs");
    }
    return 0;
}

/* ECDH between |own| and |peer|, then HKDF-SHA256 into |okm| (KEY_LEN + IV_LEN bytes). */
static int derive_pair_key(EVP_PKEY *own, EVP_PKEY *peer, const char *self_city, const char *city,
                           const char *query_id, uint8_t *okm, bg_errbuf *eb)
{
    uint8_t secret[66]; /* the x coordinate: 32 bytes on P-256; room for P-521 */
    size_t slen = sizeof(secret);
    int rc = 0;
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    EVP_PKEY_CTX *dctx = EVP_PKEY_CTX_new_from_pkey(NULL, own, NULL);
    if (dctx == NULL) {
        return party_err(eb, BG_ERR_NOMEM, city, "out of memory");
    }
    /* validate_peer = 1: the peer's point is checked to be on the curve (invalid-curve
     * attacks would otherwise leak bits of our key). */
    if (EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer_ex(dctx, peer, 1) != 1 ||
        EVP_PKEY_derive(dctx, NULL, &slen) != 1 || slen > sizeof(secret) ||
        EVP_PKEY_derive(dctx, secret, &slen) != 1) {
        rc = party_err(eb, BG_ERR_TLS, city, "ECDH failed");
        goto done;
    }

    /* info = prefix + lo + "|" + hi, both orders giving the same string. */
    const char *lo = strcmp(self_city, city) < 0 ? self_city : city;
    const char *hi = lo == self_city ? city : self_city;
    char info[sizeof(info_prefix) + 2 * CITY_MAX + 2];
    int ilen = snprintf(info, sizeof(info), "%s%s|%s", info_prefix, lo, hi);
    if (ilen < 0 || (size_t)ilen >= sizeof(info)) {
        rc = party_err(eb, BG_ERR_INVAL, city, "city names too long");
        goto done;
    }
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, secret, slen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)query_id, strlen(query_id)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, (size_t)ilen),
        OSSL_PARAM_construct_end(),
    };
    if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL ||
        (kctx = EVP_KDF_CTX_new(kdf)) == NULL ||
        EVP_KDF_derive(kctx, okm, KEY_LEN + IV_LEN, params) != 1) {
        rc = party_err(eb, BG_ERR_TLS, city, "HKDF failed");
        goto done;
    }
done:
    OPENSSL_cleanse(secret, sizeof(secret));
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    EVP_PKEY_CTX_free(dctx);
    return rc;
}

/* acc[i] += (or -=) keystream word i, for the AES-256-CTR stream of |okm|. */
static int apply_stream(const uint8_t *okm, bool add, uint64_t *acc, size_t nvals, const char *city,
                        bg_errbuf *eb)
{
    static const uint8_t zeros[CHUNK];
    uint8_t ks[CHUNK];
    int rc = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return party_err(eb, BG_ERR_NOMEM, city, "out of memory");
    }
    if (EVP_EncryptInit_ex2(c, EVP_aes_256_ctr(), okm, okm + KEY_LEN, NULL) != 1) {
        rc = party_err(eb, BG_ERR_TLS, city, "AES-256-CTR init failed");
        goto done;
    }
    for (size_t i = 0; i < nvals;) {
        size_t words = nvals - i < CHUNK / 8 ? nvals - i : CHUNK / 8;
        int outl = 0;
        if (EVP_EncryptUpdate(c, ks, &outl, zeros, (int)(words * 8)) != 1 ||
            (size_t)outl != words * 8) {
            rc = party_err(eb, BG_ERR_TLS, city, "AES-256-CTR failed");
            goto done;
        }
        for (size_t w = 0; w < words; w++, i++) {
            uint64_t m = 0;
            for (size_t b = 0; b < 8; b++) {
                m |= (uint64_t)ks[8 * w + b] << (8 * b);
            }
            acc[i] = add ? acc[i] + m : acc[i] - m; /* unsigned: wraps mod 2^64 */
        }
    }
done:
    OPENSSL_cleanse(ks, sizeof(ks));
    EVP_CIPHER_CTX_free(c);
    return rc;
}

/* Verifies party |p|'s certificate and folds its pairwise mask into |acc|. */
static int mask_with(EVP_PKEY *own, const char *self_city, const trust_secagg_party *p,
                     X509_STORE *store, const char *query_id, uint64_t *acc, size_t nvals,
                     bg_errbuf *eb)
{
    X509 *cert = parse_der(p->cert_der, p->cert_len);
    if (cert == NULL) {
        return party_err(eb, BG_ERR_CERT, p->city, "certificate is not one DER X.509");
    }
    uint8_t okm[KEY_LEN + IV_LEN];
    int rc = check_peer(cert, p->city, store, eb);
    if (rc == 0) {
        rc = derive_pair_key(own, X509_get0_pubkey(cert), self_city, p->city, query_id, okm, eb);
    }
    if (rc == 0) {
        rc = apply_stream(okm, strcmp(self_city, p->city) < 0, acc, nvals, p->city, eb);
    }
    OPENSSL_cleanse(okm, sizeof(okm));
    X509_free(cert);
    return rc;
}

/* Party list and own key checks; returns 0 or BG_ERR_INVAL with |eb|. */
static int check_args(EVP_PKEY *own_key, const char *self_city, const trust_secagg_party *parties,
                      size_t nparties, bg_errbuf *eb)
{
    if (!city_is_valid(self_city)) {
        return bg_errf(eb, BG_ERR_INVAL, "secagg: self city \"%s\" is not [a-z][a-z0-9-]*",
                       self_city != NULL ? self_city : "");
    }
    if (nparties < 2) {
        return bg_errf(eb, BG_ERR_INVAL, "secagg: %zu parties; at least two are needed", nparties);
    }
    size_t self_idx = nparties;
    for (size_t i = 0; i < nparties; i++) {
        const char *c = parties[i].city;
        if (!city_is_valid(c)) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "secagg: party %zu: city \"%s\" is not "
                           "[a-z][a-z0-9-]*",
                           i, c != NULL ? c : "");
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(parties[j].city, c) == 0) {
                return bg_errf(eb, BG_ERR_INVAL, "secagg: city \"%s\" is listed twice", c);
            }
        }
        if (strcmp(c, self_city) == 0) {
            self_idx = i;
        }
    }
    if (self_idx == nparties) {
        return bg_errf(eb, BG_ERR_INVAL, "secagg: self city \"%s\" is not among the parties",
                       self_city);
    }
    if (!is_p256(own_key)) {
        return bg_errf(eb, BG_ERR_INVAL, "secagg: own key is not EC P-256");
    }
    const trust_secagg_party *self = &parties[self_idx];
    if (self->cert_der != NULL) {
        X509 *cert = parse_der(self->cert_der, self->cert_len);
        int eq = cert != NULL ? EVP_PKEY_eq(X509_get0_pubkey(cert), own_key) : 0;
        X509_free(cert);
        ERR_clear_error();
        if (eq != 1) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "secagg: own key does not match self's (\"%s\") certificate", self_city);
        }
    }
    return 0;
}

int trust_secagg_mask(struct evp_pkey_st *own_key, const char *self_city,
                      const trust_secagg_party *parties, size_t nparties,
                      struct x509_store_st *store, const char *query_id, uint64_t *vals,
                      size_t nvals, bg_errbuf *eb)
{
    if (own_key == NULL || parties == NULL || store == NULL || query_id == NULL ||
        query_id[0] == '\0' || (vals == NULL && nvals > 0) || nvals > SIZE_MAX / sizeof(uint64_t)) {
        return bg_errf(eb, BG_ERR_INVAL, "secagg: missing or invalid argument");
    }
    int rc = check_args(own_key, self_city, parties, nparties, eb);
    if (rc != 0) {
        return rc;
    }
    /* Accumulate every pair's mask apart and add it at the end, so that |vals| is untouched
     * when a later party fails. */
    uint64_t *acc = calloc(nvals > 0 ? nvals : 1, sizeof(*acc));
    if (acc == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "secagg: out of memory for %zu values", nvals);
    }
    ERR_clear_error();
    for (size_t i = 0; i < nparties && rc == 0; i++) {
        if (strcmp(parties[i].city, self_city) != 0) {
            rc = mask_with(own_key, self_city, &parties[i], store, query_id, acc, nvals, eb);
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < nvals; i++) {
            vals[i] += acc[i];
        }
    }
    /* The sum of the masks is as secret as the keys: it unmasks our contribution. */
    OPENSSL_cleanse(acc, (nvals > 0 ? nvals : 1) * sizeof(*acc));
    free(acc);
    return rc;
}
