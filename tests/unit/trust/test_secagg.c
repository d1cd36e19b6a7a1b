/* tests/unit/trust/test_secagg.c: trust/secagg.c through its header, with certificates made
 * at run time by trust/certs.h in one mkdtemp() directory: city CAs a, b and c (each
 * name-constrained to its own trust domain) in one trust bundle, their gateways, and
 * impostors (another CA's "a" gateway, b's firm, an expired b gateway). Party a uses the
 * key and store of a real trust_tls, the way the gateway will. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "conf/conf.h"
#include "trust/certs.h"
#include "trust/secagg.h"
#include "trust/tls.h"

static char dir[64];

typedef struct gw {
    const char *city;
    EVP_PKEY *key;
    uint8_t *der;
    size_t der_len;
} gw;

/* a, b, c; and the impostors. */
static gw gws[3];
static uint8_t *rogue_a_der, *firm_b_der, *expired_b_der;
static size_t rogue_a_len, firm_b_len, expired_b_len;
static X509_STORE *store;
static trust_tls *tls_a;

static const char *path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

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

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* DER of the PEM certificate at |path| into |*der| (OPENSSL_free) and |*len|. */
static int read_der(const char *path, uint8_t **der, size_t *len)
{
    X509 *x = read_cert(path);
    if (x == NULL) {
        return -1;
    }
    unsigned char *out = NULL;
    int n = i2d_X509(x, &out);
    X509_free(x);
    if (n <= 0) {
        return -1;
    }
    *der = out;
    *len = (size_t)n;
    return 0;
}

/* Issues spiffe |id| from |ca| into <name>.crt/.key; returns 0 or -1. */
static int issue(const char *ca, const char *id, const char *name, int days, long offset_s)
{
    char ca_crt[128], ca_key[128], crt[128], key[128], f[64];
    bg_errbuf eb = {{0}};
    snprintf(f, sizeof(f), "%s-ca.crt", ca);
    path_in(ca_crt, sizeof(ca_crt), f);
    snprintf(f, sizeof(f), "%s-ca.key", ca);
    path_in(ca_key, sizeof(ca_key), f);
    snprintf(f, sizeof(f), "%s.crt", name);
    path_in(crt, sizeof(crt), f);
    snprintf(f, sizeof(f), "%s.key", name);
    path_in(key, sizeof(key), f);
    trust_cert_req req = {.spiffe_id = id, .days = days, .not_before_offset_s = offset_s};
    if (trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb) != 0) {
        fprintf(stderr, "setup: %s: %s\n", id, eb.msg);
        return -1;
    }
    return 0;
}

static int make_ca(const char *city, const char *name)
{
    char crt[128], key[128], f[64];
    bg_errbuf eb = {{0}};
    snprintf(f, sizeof(f), "%s-ca.crt", name);
    path_in(crt, sizeof(crt), f);
    snprintf(f, sizeof(f), "%s-ca.key", name);
    path_in(key, sizeof(key), f);
    if (trust_certs_ca_new(city, 30, crt, key, &eb) != 0) {
        fprintf(stderr, "setup: CA %s: %s\n", name, eb.msg);
        return -1;
    }
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    static const char *const cities[3] = {"a", "b", "c"};
    char p[128], id[64], name[32];
    snprintf(dir, sizeof(dir), "/tmp/bg-test-secagg-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    store = X509_STORE_new();
    FILE *bundle = fopen(path_in(p, sizeof(p), "bundle.pem"), "w");
    if (store == NULL || bundle == NULL) {
        return -1;
    }
    for (size_t i = 0; i < 3; i++) {
        gws[i].city = cities[i];
        snprintf(id, sizeof(id), "spiffe://%s.gba/gateway", cities[i]);
        snprintf(name, sizeof(name), "%s-gw", cities[i]);
        if (make_ca(cities[i], cities[i]) != 0 || issue(cities[i], id, name, 0, 0) != 0) {
            return -1;
        }
        snprintf(name, sizeof(name), "%s-ca.crt", cities[i]);
        X509 *ca = read_cert(path_in(p, sizeof(p), name));
        if (ca == NULL || X509_STORE_add_cert(store, ca) != 1 || PEM_write_X509(bundle, ca) != 1) {
            return -1;
        }
        X509_free(ca);
        snprintf(name, sizeof(name), "%s-gw.key", cities[i]);
        gws[i].key = read_key(path_in(p, sizeof(p), name));
        snprintf(name, sizeof(name), "%s-gw.crt", cities[i]);
        if (gws[i].key == NULL ||
            read_der(path_in(p, sizeof(p), name), &gws[i].der, &gws[i].der_len) != 0) {
            return -1;
        }
    }
    fclose(bundle);
    /* Impostors: a second "a" CA outside the bundle; b's firm; an expired b gateway. */
    if (make_ca("a", "rogue") != 0 ||
        issue("rogue", "spiffe://a.gba/gateway", "rogue-a", 0, 0) != 0 ||
        issue("b", "spiffe://b.gba/firm/acme", "firm-b", 0, 0) != 0 ||
        issue("b", "spiffe://b.gba/gateway", "expired-b", 1, -3 * 86400) != 0 ||
        read_der(path_in(p, sizeof(p), "rogue-a.crt"), &rogue_a_der, &rogue_a_len) != 0 ||
        read_der(path_in(p, sizeof(p), "firm-b.crt"), &firm_b_der, &firm_b_len) != 0 ||
        read_der(path_in(p, sizeof(p), "expired-b.crt"), &expired_b_der, &expired_b_len) != 0) {
        return -1;
    }
    /* Party a as the gateway runs it: key and trust store from its TLS contexts. */
    char crt[128], key[128], bun[128];
    path_in(crt, sizeof(crt), "a-gw.crt");
    path_in(key, sizeof(key), "a-gw.key");
    path_in(bun, sizeof(bun), "bundle.pem");
    conf_tls c = {.cert = crt, .key = key, .trust_bundle = bun};
    bg_errbuf eb = {{0}};
    if (trust_tls_new(&tls_a, &c, &eb) != 0) {
        fprintf(stderr, "setup: trust_tls_new: %s\n", eb.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        EVP_PKEY_free(gws[i].key);
        OPENSSL_free(gws[i].der);
    }
    OPENSSL_free(rogue_a_der);
    OPENSSL_free(firm_b_der);
    OPENSSL_free(expired_b_der);
    X509_STORE_free(store);
    trust_tls_free(tls_a);
    return rm_dir(dir);
}

/* The three gateways as parties, in the order given by |order| (indexes into gws). */
static void parties_of(trust_secagg_party *out, const size_t *order, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const gw *g = &gws[order[i]];
        out[i] = (trust_secagg_party){.city = g->city, .cert_der = g->der, .cert_len = g->der_len};
    }
}

static uint64_t *random_vec(size_t n)
{
    uint64_t *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    assert_int_equal(RAND_bytes((unsigned char *)v, (int)(n * sizeof(*v))), 1);
    return v;
}

/* Masks a copy of |plain| as gateway |g| (a uses its trust_tls key and store). */
static int mask_as(size_t g, const trust_secagg_party *parties, size_t np, const char *qid,
                   uint64_t *vals, size_t n, bg_errbuf *eb)
{
    EVP_PKEY *key = g == 0 ? trust_tls_private_key(tls_a) : gws[g].key;
    X509_STORE *st = g == 0 ? trust_tls_trust_store(tls_a) : store;
    return trust_secagg_mask(key, gws[g].city, parties, np, st, qid, vals, n, eb);
}

static void test_trust_secagg_mask_sum_cancels(void **state)
{
    (void)state;
    const size_t n = 1000;
    const size_t order[3] = {2, 0, 1}; /* the list order does not matter */
    trust_secagg_party parties[3];
    parties_of(parties, order, 3);
    uint64_t *plain[3], *masked[3];
    bg_errbuf eb = {{0}};
    for (size_t g = 0; g < 3; g++) {
        plain[g] = random_vec(n);
        masked[g] = malloc(n * sizeof(uint64_t));
        assert_non_null(masked[g]);
        memcpy(masked[g], plain[g], n * sizeof(uint64_t));
        int rc = mask_as(g, parties, 3, "q-0001", masked[g], n, &eb);
        if (rc != 0) {
            fail_msg("%s: %s", gws[g].city, eb.msg);
        }
        size_t same = 0;
        for (size_t i = 0; i < n; i++) {
            same += masked[g][i] == plain[g][i];
        }
        assert_true(same <= 1); /* a mask word of 0 has probability 2^-64 */
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t sp = plain[0][i] + plain[1][i] + plain[2][i];
        uint64_t sm = masked[0][i] + masked[1][i] + masked[2][i];
        assert_true(sp == sm);
    }
    /* Deterministic: the same inputs mask the same way (retries are consistent). */
    uint64_t *again = malloc(n * sizeof(uint64_t));
    assert_non_null(again);
    memcpy(again, plain[1], n * sizeof(uint64_t));
    assert_int_equal(mask_as(1, parties, 3, "q-0001", again, n, &eb), 0);
    assert_memory_equal(again, masked[1], n * sizeof(uint64_t));
    free(again);
    for (size_t g = 0; g < 3; g++) {
        free(plain[g]);
        free(masked[g]);
    }
}

/* The format, recomputed here from the header's words: ECDH(b, c), HKDF-SHA256 with salt =
 * query id and info = "baygate secagg v1|b|c", 32 + 16 bytes as AES-256-CTR key and IV,
 * keystream as little-endian words; b (< c) adds, c subtracts. */
static void test_trust_secagg_mask_matches_spec(void **state)
{
    (void)state;
    uint8_t secret[32], okm[48], ks[32] = {0};
    size_t slen = sizeof(secret);
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new_from_pkey(NULL, gws[1].key, NULL);
    assert_non_null(d);
    assert_int_equal(EVP_PKEY_derive_init(d), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(d, gws[2].key), 1);
    assert_int_equal(EVP_PKEY_derive(d, secret, &slen), 1);
    assert_int_equal(slen, 32);
    EVP_PKEY_CTX_free(d);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *k = EVP_KDF_CTX_new(kdf);
    assert_non_null(k);
    char md[] = "SHA256", salt[] = "q-spec", info[] = "baygate secagg v1|b|c";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", md, 0),
        OSSL_PARAM_construct_octet_string("key", secret, slen),
        OSSL_PARAM_construct_octet_string("salt", salt, strlen(salt)),
        OSSL_PARAM_construct_octet_string("info", info, strlen(info)),
        OSSL_PARAM_construct_end(),
    };
    assert_int_equal(EVP_KDF_derive(k, okm, sizeof(okm), params), 1);
    EVP_KDF_CTX_free(k);
    EVP_KDF_free(kdf);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int outl = 0;
    assert_non_null(c);
    assert_int_equal(EVP_EncryptInit_ex2(c, EVP_aes_256_ctr(), okm, okm + 32, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(c, ks, &outl, ks, (int)sizeof(ks)), 1);
    EVP_CIPHER_CTX_free(c);
    uint64_t mask[4] = {0};
    for (size_t i = 0; i < 4; i++) {
        for (size_t b = 0; b < 8; b++) {
            mask[i] |= (uint64_t)ks[8 * i + b] << (8 * b);
        }
    }

    const size_t order[2] = {2, 1};
    trust_secagg_party parties[2];
    parties_of(parties, order, 2);
    uint64_t vb[4] = {0}, vc[4] = {0};
    bg_errbuf eb = {{0}};
    assert_int_equal(mask_as(1, parties, 2, "q-spec", vb, 4, &eb), 0);
    assert_int_equal(mask_as(2, parties, 2, "q-spec", vc, 4, &eb), 0);
    for (size_t i = 0; i < 4; i++) {
        assert_true(vb[i] == mask[i]);
        assert_true(vc[i] == 0 - mask[i]);
    }
}

static void test_trust_secagg_mask_two_parties(void **state)
{
    (void)state;
    const size_t order[2] = {1, 2};
    trust_secagg_party parties[2];
    parties_of(parties, order, 2);
    uint64_t b[4] = {1, 2, 3, UINT64_MAX}, c[4] = {10, 20, 30, 2};
    bg_errbuf eb = {{0}};
    assert_int_equal(mask_as(1, parties, 2, "q2", b, 4, &eb), 0);
    assert_int_equal(mask_as(2, parties, 2, "q2", c, 4, &eb), 0);
    const uint64_t want[4] = {11, 22, 33, 1}; /* mod 2^64 */
    for (size_t i = 0; i < 4; i++) {
        assert_true(b[i] + c[i] == want[i]);
    }
    /* Zero values: nothing to do, still verified. */
    assert_int_equal(mask_as(1, parties, 2, "q2", NULL, 0, &eb), 0);
}

static void test_trust_secagg_mask_wrong_query_id(void **state)
{
    (void)state;
    const size_t n = 256;
    const size_t order[3] = {0, 1, 2};
    trust_secagg_party parties[3];
    parties_of(parties, order, 3);
    uint64_t *v[3];
    bg_errbuf eb = {{0}};
    for (size_t g = 0; g < 3; g++) {
        v[g] = calloc(n, sizeof(uint64_t));
        assert_non_null(v[g]);
        assert_int_equal(mask_as(g, parties, 3, g == 0 ? "q-A" : "q-B", v[g], n, &eb), 0);
    }
    size_t zero = 0; /* the plain sum is 0 everywhere */
    for (size_t i = 0; i < n; i++) {
        zero += v[0][i] + v[1][i] + v[2][i] == 0;
    }
    assert_true(zero <= 1);
    for (size_t g = 0; g < 3; g++) {
        free(v[g]);
    }
}

/* A party other than the one in |slot| masks with a list in which that entry is replaced
 * by |bad|; expects BG_ERR_CERT with |needle| in the message, and its values untouched. */
static void expect_cert_refused(const trust_secagg_party *bad, size_t slot, const char *needle)
{
    const size_t order[3] = {0, 1, 2};
    trust_secagg_party parties[3];
    parties_of(parties, order, 3);
    parties[slot] = *bad;
    uint64_t v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, before[8];
    memcpy(before, v, sizeof(v));
    bg_errbuf eb = {{0}};
    assert_int_equal(mask_as(slot == 1 ? 2 : 1, parties, 3, "q", v, 8, &eb), BG_ERR_CERT);
    if (strstr(eb.msg, needle) == NULL) {
        fail_msg("message \"%s\" lacks \"%s\"", eb.msg, needle);
    }
    assert_memory_equal(v, before, sizeof(v));
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_trust_secagg_mask_refuses_other_ca(void **state)
{
    (void)state;
    trust_secagg_party p = {.city = "a", .cert_der = rogue_a_der, .cert_len = rogue_a_len};
    expect_cert_refused(&p, 0, "does not verify");
}

static void test_trust_secagg_mask_refuses_wrong_san(void **state)
{
    (void)state;
    /* b's firm presented as b's gateway: a valid chain, the wrong identity... */
    trust_secagg_party firm = {.city = "b", .cert_der = firm_b_der, .cert_len = firm_b_len};
    expect_cert_refused(&firm, 1, "identity is \"spiffe://b.gba/firm/acme\"");
    /* ...and a's gateway certificate listed as c. */
    trust_secagg_party swapped = {.city = "c", .cert_der = gws[0].der, .cert_len = gws[0].der_len};
    expect_cert_refused(&swapped, 2, "want \"spiffe://c.gba/gateway\"");
}

static void test_trust_secagg_mask_refuses_tampered_der(void **state)
{
    (void)state;
    size_t len = gws[2].der_len;
    uint8_t *der = malloc(len + 1);
    assert_non_null(der);
    trust_secagg_party p = {.city = "c", .cert_der = der, .cert_len = len};
    /* One bit in the signed body (the middle), then in the signature (the end). */
    const size_t spots[] = {len / 2, len - 3};
    for (size_t s = 0; s < 2; s++) {
        memcpy(der, gws[2].der, len);
        der[spots[s]] ^= 0x01;
        expect_cert_refused(&p, 2, "certificate");
    }
    /* Trailing bytes, truncation, nothing. */
    memcpy(der, gws[2].der, len);
    der[len] = 0;
    p.cert_len = len + 1;
    expect_cert_refused(&p, 2, "not one DER");
    p.cert_len = len - 1;
    expect_cert_refused(&p, 2, "not one DER");
    p.cert_der = NULL;
    p.cert_len = 0;
    expect_cert_refused(&p, 2, "not one DER");
    free(der);
}

static void test_trust_secagg_mask_refuses_expired(void **state)
{
    (void)state;
    /* b's expired certificate, seen by a. */
    const size_t order[3] = {0, 1, 2};
    trust_secagg_party parties[3];
    parties_of(parties, order, 3);
    parties[1].cert_der = expired_b_der;
    parties[1].cert_len = expired_b_len;
    uint64_t v[2] = {0, 0};
    bg_errbuf eb = {{0}};
    assert_int_equal(mask_as(0, parties, 3, "q", v, 2, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, "expired"));
    assert_non_null(strstr(eb.msg, "\"b\""));
    assert_true(v[0] == 0 && v[1] == 0);
}

static void test_trust_secagg_mask_bad_arguments(void **state)
{
    (void)state;
    const size_t order[3] = {0, 1, 2};
    trust_secagg_party parties[4];
    parties_of(parties, order, 3);
    uint64_t v[2] = {5, 6};
    bg_errbuf eb = {{0}};
    EVP_PKEY *kb = gws[1].key;
    /* Duplicate city, self missing, a single party, a bad city name. */
    parties[3] = parties[2];
    assert_int_equal(trust_secagg_mask(kb, "b", parties, 4, store, "q", v, 2, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "twice"));
    assert_int_equal(trust_secagg_mask(kb, "d", parties, 3, store, "q", v, 2, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "not among"));
    assert_int_equal(trust_secagg_mask(kb, "b", &parties[1], 1, store, "q", v, 2, &eb),
                     BG_ERR_INVAL);
    trust_secagg_party odd[2] = {parties[1], {.city = "B|x"}};
    assert_int_equal(trust_secagg_mask(kb, "b", odd, 2, store, "q", v, 2, &eb), BG_ERR_INVAL);
    assert_int_equal(trust_secagg_mask(kb, "", parties, 3, store, "q", v, 2, &eb), BG_ERR_INVAL);
    /* Missing pieces. */
    assert_int_equal(trust_secagg_mask(kb, "b", parties, 3, store, "", v, 2, &eb), BG_ERR_INVAL);
    assert_int_equal(trust_secagg_mask(kb, "b", parties, 3, store, NULL, v, 2, &eb), BG_ERR_INVAL);
    assert_int_equal(trust_secagg_mask(kb, "b", parties, 3, NULL, "q", v, 2, &eb), BG_ERR_INVAL);
    assert_int_equal(trust_secagg_mask(kb, "b", parties, 3, store, "q", NULL, 2, NULL),
                     BG_ERR_INVAL);
    assert_int_equal(trust_secagg_mask(NULL, "b", parties, 3, store, "q", v, 2, NULL),
                     BG_ERR_INVAL);
    /* Own key: not the one in self's certificate; not EC P-256. */
    assert_int_equal(trust_secagg_mask(gws[2].key, "b", parties, 3, store, "q", v, 2, &eb),
                     BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "does not match"));
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    assert_non_null(ed);
    assert_non_null(p384);
    parties[1].cert_der = NULL; /* no self certificate to compare with */
    assert_int_equal(trust_secagg_mask(ed, "b", parties, 3, store, "q", v, 2, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "P-256"));
    assert_int_equal(trust_secagg_mask(p384, "b", parties, 3, store, "q", v, 2, &eb), BG_ERR_INVAL);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(p384);
    assert_true(v[0] == 5 && v[1] == 6);
    /* Without self's certificate the right key still works. */
    assert_int_equal(trust_secagg_mask(kb, "b", parties, 3, store, "q", v, 2, &eb), 0);
    assert_int_equal(ERR_peek_error(), 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A full quantile grid (SPACE_MAX_GRID bins) for three cities. */
static void test_trust_secagg_mask_full_grid_is_fast(void **state)
{
    (void)state;
    const size_t n = 65536;
    const size_t order[3] = {0, 1, 2};
    trust_secagg_party parties[3];
    parties_of(parties, order, 3);
    uint64_t *v[3], *plain[3];
    bg_errbuf eb = {{0}};
    double t0 = now_s();
    for (size_t g = 0; g < 3; g++) {
        plain[g] = calloc(n, sizeof(uint64_t));
        assert_non_null(plain[g]);
        for (size_t i = 0; i < n; i++) {
            plain[g][i] = (i * 7 + g) % 13; /* sparse small counts, as a grid is */
        }
        v[g] = malloc(n * sizeof(uint64_t));
        assert_non_null(v[g]);
        memcpy(v[g], plain[g], n * sizeof(uint64_t));
        assert_int_equal(mask_as(g, parties, 3, "q-grid", v[g], n, &eb), 0);
    }
    double dt = now_s() - t0;
    print_message("3 parties x %zu values: %.3f s\n", n, dt);
    assert_true(dt < 2.0);
    for (size_t i = 0; i < n; i++) {
        assert_true(v[0][i] + v[1][i] + v[2][i] == plain[0][i] + plain[1][i] + plain[2][i]);
    }
    for (size_t g = 0; g < 3; g++) {
        free(v[g]);
        free(plain[g]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_secagg_mask_sum_cancels),
        cmocka_unit_test(test_trust_secagg_mask_matches_spec),
        cmocka_unit_test(test_trust_secagg_mask_two_parties),
        cmocka_unit_test(test_trust_secagg_mask_wrong_query_id),
        cmocka_unit_test(test_trust_secagg_mask_refuses_other_ca),
        cmocka_unit_test(test_trust_secagg_mask_refuses_wrong_san),
        cmocka_unit_test(test_trust_secagg_mask_refuses_tampered_der),
        cmocka_unit_test(test_trust_secagg_mask_refuses_expired),
        cmocka_unit_test(test_trust_secagg_mask_bad_arguments),
        cmocka_unit_test(test_trust_secagg_mask_full_grid_is_fast),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
