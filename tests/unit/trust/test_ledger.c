/* tests/unit/trust/test_ledger.c: the receipts ledger on real LMDB files in mkdtemp()
 * directories. The Merkle tree is checked three ways: against the published RFC 6962 test
 * vectors (the 8-leaf tree of certificate-transparency / Go transparency-dev/merkle, its roots
 * and its inclusion and consistency proofs), against an independent recursive MTH/PATH/PROOF
 * written here straight from RFC 6962 section 2.1 (every size 1..300, every index, every m <= n
 * up to 64 and a sample beyond), and the RFC 9162 verifiers against recursive verifiers derived
 * from those same definitions, under mutations. Then: atomic batches (a refused receipt, a disk
 * that cannot grow), map growth, reopen, tampering found by trust_ledger_verify(), checkpoints
 * (C2SP signed note; Go's sumdb/note vector), the secondary indexes, concurrent readers, and a
 * timing print (not an assertion) at 1e5 leaves. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "trust/ledger.h"

#define H TRUST_LEDGER_HASH_LEN
#define CITY "guangzhou"
#define TREE_MAX 300 /* sizes compared with the reference, all of them */
#define ALL_PAIRS 64 /* every m <= n consistency pair up to this size */

/* ---- Fixture -------------------------------------------------------------------------------- */

typedef struct fx {
    char dir[64];
    trust_ledger *l;
} fx;

static void make_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/bg-ledger-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_dir(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static trust_ledger *open_ledger(const char *dir, size_t map)
{
    trust_ledger *l = NULL;
    bg_errbuf eb = {{0}};
    int rc = trust_ledger_open(&l, dir, map, &eb);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", eb.msg);
    }
    assert_int_equal(rc, 0);
    return l;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    make_dir(f->dir, sizeof(f->dir));
    f->l = open_ledger(f->dir, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    trust_ledger_close(f->l);
    remove_dir(f->dir);
    free(f);
    return 0;
}

static const char *const providers[] = {"shenzhen", "hongkong", "macau"};

/* A deterministic, varied receipt number |i|. */
static void make_receipt(trust_receipt *r, unsigned i)
{
    memset(r, 0, sizeof(*r));
    r->kind = 1 + i % 9;
    r->decision = 1 + i % 3;
    r->time_ms = 1700000000000 + (int64_t)i * 10;
    snprintf(r->request_id, sizeof(r->request_id), "req-%u", i);
    snprintf(r->requester, sizeof(r->requester), "spiffe://guangzhou.gba/firm/f%u", i % 5);
    strcpy(r->home_city, "guangzhou");
    strcpy(r->provider_city, providers[i % 3]);
    r->ntransit = i % 3;
    for (size_t t = 0; t < r->ntransit; t++) {
        strcpy(r->transit[t], t == 0 ? "zhuhai" : "foshan");
    }
    snprintf(r->contract_id, sizeof(r->contract_id), "%064x", i % 7);
    strcpy(r->purpose, "科研");
    r->ndatasets = 2;
    snprintf(r->datasets[0], sizeof(r->datasets[0]), "%s/traffic", providers[i % 3]);
    snprintf(r->datasets[1], sizeof(r->datasets[1]), "%s/air", providers[i % 3]);
    strcpy(r->operation, "aggregate");
    r->has_query_digest = true;
    memset(r->query_digest, (int)(i & 0xff), H);
    r->has_result_digest = i % 2 == 0;
    memset(r->result_digest, 0x5a, H);
    r->cells_suppressed = i % 4;
    r->epsilon_micro = (uint64_t)i * 1000;
    r->error_code = r->decision == TRUST_RECEIPT_FAILED ? -401 : 0;
    strcpy(r->counterpart_city, providers[i % 3]);
    if (i % 4 == 0) {
        r->has_counterpart_ref = true;
        r->counterpart_index = (uint64_t)i * 3;
        memset(r->counterpart_leaf_hash, 0xc3, H);
    }
}

/* Appends receipts number [from, from + n) in one batch. */
static void append_range(trust_ledger *l, unsigned from, unsigned n)
{
    trust_receipt *rs = calloc(n, sizeof(*rs));
    uint64_t *idx = calloc(n, sizeof(*idx));
    for (unsigned i = 0; i < n; i++) {
        make_receipt(&rs[i], from + i);
    }
    bg_errbuf eb = {{0}};
    int rc = trust_ledger_append_batch(l, rs, n, idx, NULL, &eb);
    if (rc != 0) {
        fprintf(stderr, "append: %s\n", eb.msg);
    }
    assert_int_equal(rc, 0);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(idx[i], from + i);
    }
    free(idx);
    free(rs);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- An independent RFC 6962 section 2.1, written from the RFC --------------------------- */

static void sha256(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, const uint8_t *c,
                   size_t clen, uint8_t out[H])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    EVP_DigestUpdate(ctx, a, alen);
    EVP_DigestUpdate(ctx, b, blen);
    EVP_DigestUpdate(ctx, c, clen);
    assert_int_equal(EVP_DigestFinal_ex(ctx, out, &len), 1);
    EVP_MD_CTX_free(ctx);
}

static const uint8_t zero_byte[1] = {0x00}, one_byte[1] = {0x01};

static void ref_leaf(const uint8_t *d, size_t n, uint8_t out[H])
{
    sha256(zero_byte, 1, d, n, NULL, 0, out);
}

static void ref_node(const uint8_t l[H], const uint8_t r[H], uint8_t out[H])
{
    uint8_t tmp[H];
    sha256(one_byte, 1, l, H, r, H, tmp);
    memcpy(out, tmp, H);
}

/* "the largest power of two smaller than n" */
static uint64_t ref_k(uint64_t n)
{
    uint64_t k = 1;
    while (k * 2 < n) {
        k *= 2;
    }
    return k;
}

/* The leaf hashes of the tree under test, and a memo of MTH(D[s:e]) (it depends on the leaves
 * only, so it serves every tree size). */
static uint8_t (*ref_leaves)[H];
static uint8_t ref_memo[TREE_MAX + 1][TREE_MAX + 1][H];
static bool ref_memo_ok[TREE_MAX + 1][TREE_MAX + 1];

static void ref_set_leaves(uint8_t (*leaves)[H])
{
    ref_leaves = leaves;
    memset(ref_memo_ok, 0, sizeof(ref_memo_ok));
}

/* MTH({}) = SHA-256(); MTH({d(0)}) = SHA-256(0x00 || d(0));
 * MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) */
static void ref_mth(uint64_t s, uint64_t e, uint8_t out[H])
{
    if (e == s) {
        sha256(NULL, 0, NULL, 0, NULL, 0, out);
        return;
    }
    if (ref_memo_ok[s][e]) {
        memcpy(out, ref_memo[s][e], H);
        return;
    }
    if (e - s == 1) {
        memcpy(out, ref_leaves[s], H);
    } else {
        uint64_t k = ref_k(e - s);
        uint8_t l[H], r[H];
        ref_mth(s, s + k, l);
        ref_mth(s + k, e, r);
        ref_node(l, r, out);
    }
    memcpy(ref_memo[s][e], out, H);
    ref_memo_ok[s][e] = true;
}

/* PATH(m, {d(0)}) = {}; PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k, and
 * PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k. Offsets |s| keep D[k:n] in place. */
static void ref_path(uint64_t m, uint64_t s, uint64_t e, uint8_t (*out)[H], size_t *len)
{
    if (e - s == 1) {
        return;
    }
    uint64_t k = ref_k(e - s);
    if (m < k) {
        ref_path(m, s, s + k, out, len);
        ref_mth(s + k, e, out[(*len)++]);
    } else {
        ref_path(m - k, s + k, e, out, len);
        ref_mth(s, s + k, out[(*len)++]);
    }
}

/* SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])};
 * SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) for m <= k, and
 * SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]) for m > k. PROOF = SUBPROOF(m, D[n], true). */
static void ref_subproof(uint64_t m, uint64_t s, uint64_t e, bool b, uint8_t (*out)[H], size_t *len)
{
    uint64_t n = e - s;
    if (m == n) {
        if (!b) {
            ref_mth(s, e, out[(*len)++]);
        }
        return;
    }
    uint64_t k = ref_k(n);
    if (m <= k) {
        ref_subproof(m, s, s + k, b, out, len);
        ref_mth(s + k, e, out[(*len)++]);
    } else {
        ref_subproof(m - k, s + k, e, false, out, len);
        ref_mth(s, s + k, out[(*len)++]);
    }
}

/* Verifiers derived from the same definitions: walk PATH's recursion for (m, n) and fold the
 * proof from its last element (the top split) down. */
static bool ref_root_from_path(const uint8_t leaf[H], uint64_t m, uint64_t n, const uint8_t (*p)[H],
                               size_t len, uint8_t out[H])
{
    if (n == 1) {
        if (len != 0) {
            return false;
        }
        memcpy(out, leaf, H);
        return true;
    }
    if (len == 0) {
        return false;
    }
    uint64_t k = ref_k(n);
    uint8_t sub[H];
    if (m < k) {
        if (!ref_root_from_path(leaf, m, k, p, len - 1, sub)) {
            return false;
        }
        ref_node(sub, p[len - 1], out);
    } else {
        if (!ref_root_from_path(leaf, m - k, n - k, p, len - 1, sub)) {
            return false;
        }
        ref_node(p[len - 1], sub, out);
    }
    return true;
}

static bool ref_verify_inclusion(const uint8_t leaf[H], uint64_t m, uint64_t n,
                                 const uint8_t (*p)[H], size_t len, const uint8_t root[H])
{
    uint8_t r[H];
    return m < n && n <= 4096 && ref_root_from_path(leaf, m, n, p, len, r) &&
           memcmp(r, root, H) == 0;
}

/* Computes (old, new) subtree hashes of SUBPROOF(m, D[n], b) from its proof. */
static bool ref_fold_subproof(uint64_t m, uint64_t n, bool b, const uint8_t root_m[H],
                              const uint8_t (*p)[H], size_t len, uint8_t old[H], uint8_t nw[H])
{
    if (m == n) {
        if (b) {
            if (len != 0) {
                return false;
            }
            memcpy(old, root_m, H);
            memcpy(nw, root_m, H);
            return true;
        }
        if (len != 1) {
            return false;
        }
        memcpy(old, p[0], H);
        memcpy(nw, p[0], H);
        return true;
    }
    if (len == 0 || m == 0) {
        return false;
    }
    uint64_t k = ref_k(n);
    uint8_t o[H], s[H];
    if (m <= k) {
        if (!ref_fold_subproof(m, k, b, root_m, p, len - 1, o, s)) {
            return false;
        }
        memcpy(old, o, H);
        ref_node(s, p[len - 1], nw);
    } else {
        if (!ref_fold_subproof(m - k, n - k, false, root_m, p, len - 1, o, s)) {
            return false;
        }
        ref_node(p[len - 1], o, old);
        ref_node(p[len - 1], s, nw);
    }
    return true;
}

static bool ref_verify_consistency(uint64_t m, uint64_t n, const uint8_t rm[H], const uint8_t rn[H],
                                   const uint8_t (*p)[H], size_t len)
{
    if (m > n || n > 4096) {
        return false;
    }
    if (m == n) {
        return len == 0 && memcmp(rm, rn, H) == 0;
    }
    if (m == 0) {
        return len == 0;
    }
    uint8_t o[H], s[H];
    return ref_fold_subproof(m, n, true, rm, p, len, o, s) && memcmp(o, rm, H) == 0 &&
           memcmp(s, rn, H) == 0;
}

/* ---- Published reference vectors -------------------------------------------------------- */

static void unhex(const char *s, uint8_t *out, size_t n)
{
    assert_int_equal(strlen(s), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* The 8 leaves and roots of the RFC 6962 reference tree (certificate-transparency's
 * merkle_tree_test.cc, reused by Go transparency-dev/merkle proof/verify_test.go). */
static const char *const ct_leaves_hex[8] = {
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
};
static const char *const ct_roots_hex[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", /* size 0 */
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

typedef struct vec {
    uint64_t a, b; /* inclusion: leaf index (0-based), size; consistency: m, n */
    size_t len;
    const char *proof[3];
} vec;

/* transparency-dev/merkle proof/verify_test.go inclusionProofs (leaf numbers there are
 * 1-based) and consistencyProofs. */
static const vec ct_inclusion[] = {
    {0, 1, 0, {NULL}},
    {0,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {5,
     8,
     3,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2, 3, 1, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {1,
     5,
     3,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};
static const vec ct_consistency[] = {
    {1, 1, 0, {NULL}},
    {1,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2,
     5,
     2,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     7,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

static uint8_t ct_leaf[8][H], ct_root[9][H];

static void ct_load(void)
{
    for (size_t i = 0; i < 8; i++) {
        uint8_t d[16];
        size_t n = strlen(ct_leaves_hex[i]) / 2;
        unhex(ct_leaves_hex[i], d, n);
        assert_int_equal(trust_ledger_leaf_hash(d, n, ct_leaf[i]), 0);
        uint8_t mine[H];
        ref_leaf(d, n, mine);
        assert_memory_equal(mine, ct_leaf[i], H);
    }
    for (size_t i = 0; i < 9; i++) {
        unhex(ct_roots_hex[i], ct_root[i], H);
    }
    ref_set_leaves(ct_leaf);
}

static void vec_proof(const vec *v, uint8_t (*p)[H])
{
    for (size_t i = 0; i < v->len; i++) {
        unhex(v->proof[i], p[i], H);
    }
}

/* Go's corruptInclusionProof probes: each must fail. */
static void expect_inclusion_corruptions_fail(const uint8_t leaf[H], uint64_t i, uint64_t n,
                                              uint8_t (*p)[H], size_t len, const uint8_t root[H])
{
    static const uint8_t some[H] = {0xab, 0xac, 0xab, 0xa0};
    uint8_t buf[TRUST_LEDGER_PROOF_MAX + 2][H];
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i - 1, n, p, len, root), 0);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i + 1, n, p, len, root), 0);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i ^ 2, n, p, len, root), 0);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n * 2, p, len, root), 0);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n / 2, p, len, root), 0);
    assert_int_not_equal(trust_ledger_verify_inclusion(some, i, n, p, len, root), 0);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, p, len, ct_root[0]), 0);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, p, len, some), 0);
    /* trailing and preceding extra hashes */
    memcpy(buf, p, len * H);
    memcpy(buf[len], root, H);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, buf, len + 1, root), 0);
    memcpy(buf[0], root, H);
    memcpy(buf + 1, p, len * H);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, buf, len + 1, root), 0);
    for (size_t k = 0; k < len; k++) {
        p[k][0] ^= 8;
        assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, p, len, root), 0);
        p[k][0] ^= 8;
    }
    if (len > 0) {
        assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, p, len - 1, root), 0);
    }
}

static void test_trust_ledger_reference_vectors(void **state)
{
    (void)state;
    ct_load();
    /* the independent reference reproduces the published roots... */
    for (uint64_t n = 0; n <= 8; n++) {
        uint8_t r[H];
        ref_mth(0, n, r);
        assert_memory_equal(r, ct_root[n], H);
    }
    /* ...and proofs; the ledger's RFC 9162 verifiers accept them and refuse corruptions */
    for (size_t v = 0; v < sizeof(ct_inclusion) / sizeof(ct_inclusion[0]); v++) {
        const vec *t = &ct_inclusion[v];
        uint8_t p[3][H], mine[TRUST_LEDGER_PROOF_MAX][H];
        size_t ml = 0;
        vec_proof(t, p);
        ref_path(t->a, 0, t->b, mine, &ml);
        assert_int_equal(ml, t->len);
        assert_memory_equal(mine, p, t->len * H);
        assert_int_equal(
            trust_ledger_verify_inclusion(ct_leaf[t->a], t->a, t->b, p, t->len, ct_root[t->b]), 0);
        expect_inclusion_corruptions_fail(ct_leaf[t->a], t->a, t->b, p, t->len, ct_root[t->b]);
    }
    for (size_t v = 0; v < sizeof(ct_consistency) / sizeof(ct_consistency[0]); v++) {
        const vec *t = &ct_consistency[v];
        uint8_t p[4][H], mine[TRUST_LEDGER_PROOF_MAX][H];
        size_t ml = 0;
        vec_proof(t, p);
        if (t->a < t->b) {
            ref_subproof(t->a, 0, t->b, true, mine, &ml);
        }
        assert_int_equal(ml, t->len);
        assert_memory_equal(mine, p, t->len * H);
        const uint8_t *r1 = ct_root[t->a], *r2 = ct_root[t->b];
        assert_int_equal(trust_ledger_verify_consistency(t->a, t->b, r1, r2, p, t->len), 0);
        if (t->len == 0) {
            continue;
        }
        /* Go's corruptConsistencyProof probes */
        uint64_t m = t->a, n = t->b;
        assert_int_not_equal(trust_ledger_verify_consistency(m - 1, n, r1, r2, p, t->len), 0);
        assert_int_not_equal(trust_ledger_verify_consistency(m + 1, n, r1, r2, p, t->len), 0);
        assert_int_not_equal(trust_ledger_verify_consistency(m ^ 2, n, r1, r2, p, t->len), 0);
        assert_int_not_equal(trust_ledger_verify_consistency(m, n * 2, r1, r2, p, t->len), 0);
        assert_int_not_equal(trust_ledger_verify_consistency(m, n / 2, r1, r2, p, t->len), 0);
        assert_int_not_equal(trust_ledger_verify_consistency(m, n, r2, r1, p, t->len), 0);
        assert_int_not_equal(trust_ledger_verify_consistency(m, n, r1, r2, p, 0), 0);
        assert_int_not_equal(trust_ledger_verify_consistency(m, n, r1, r2, p, t->len - 1), 0);
        memcpy(p[t->len], r2, H);
        assert_int_not_equal(trust_ledger_verify_consistency(m, n, r1, r2, p, t->len + 1), 0);
        for (size_t k = 0; k < t->len; k++) {
            p[k][0] ^= 16;
            assert_int_not_equal(trust_ledger_verify_consistency(m, n, r1, r2, p, t->len), 0);
            p[k][0] ^= 16;
        }
    }
    /* Go's TestVerifyConsistency table of trivial cases */
    uint8_t some[1][H] = {{0}};
    const uint8_t *e = ct_root[0], *a = ct_leaf[0], *b = ct_leaf[1];
    memcpy(some[0], e, H);
    assert_int_not_equal(trust_ledger_verify_consistency(0, 0, a, b, NULL, 0), 0);
    assert_int_not_equal(trust_ledger_verify_consistency(1, 1, a, b, NULL, 0), 0);
    assert_int_equal(trust_ledger_verify_consistency(0, 0, a, a, NULL, 0), 0);
    assert_int_equal(trust_ledger_verify_consistency(0, 1, a, b, NULL, 0), 0);
    assert_int_equal(trust_ledger_verify_consistency(1, 1, b, b, NULL, 0), 0);
    assert_int_not_equal(trust_ledger_verify_consistency(1, 0, a, b, NULL, 0), 0);
    assert_int_not_equal(trust_ledger_verify_consistency(2, 1, a, b, NULL, 0), 0);
    assert_int_not_equal(trust_ledger_verify_consistency(1, 2, a, b, NULL, 0), 0);
    assert_int_not_equal(trust_ledger_verify_consistency(0, 0, e, e, some, 1), 0);
    assert_int_not_equal(trust_ledger_verify_consistency(0, 1, e, e, some, 1), 0);
    assert_int_not_equal(trust_ledger_verify_consistency(1, 1, e, e, some, 1), 0);
    /* Go's TestVerifyInclusion probes with an empty proof */
    const uint64_t probes[4][2] = {{0, 0}, {0, 1}, {1, 0}, {2, 1}};
    for (size_t i = 0; i < 4; i++) {
        assert_int_not_equal(
            trust_ledger_verify_inclusion(a, probes[i][0], probes[i][1], NULL, 0, e), 0);
    }
    assert_int_equal(trust_ledger_verify_inclusion(a, 0, 1, NULL, 0, a), 0);
}

/* ---- The stored tree against the reference, sizes 1..300 ------------------------------- */

static uint8_t tree_leaves[TREE_MAX][H];

/* The ledger's verifiers must say exactly what the recursive ones say for a claim, and a
 * changed byte anywhere must always fail. */
static void check_inclusion(uint64_t i, uint64_t n, trust_ledger_proof *p, const uint8_t root[H],
                            bool exhaustive)
{
    const uint8_t *leaf = tree_leaves[i];
    assert_int_equal(trust_ledger_verify_inclusion(leaf, i, n, p->hash, p->len, root), 0);
    const uint64_t alt[][2] = {{i - 1, n}, {i + 1, n}, {i ^ 2, n}, {i, n + 1},
                               {i, n - 1}, {i, n * 2}, {i, n / 2}, {i + 1, n + 1}};
    for (size_t k = 0; k < sizeof(alt) / sizeof(alt[0]); k++) {
        bool want = ref_verify_inclusion(leaf, alt[k][0], alt[k][1], p->hash, p->len, root);
        int got = trust_ledger_verify_inclusion(leaf, alt[k][0], alt[k][1], p->hash, p->len, root);
        assert_int_equal(got == 0, want);
    }
    if (p->len > 0) {
        assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, p->hash, p->len - 1, root),
                             0);
    }
    memcpy(p->hash[p->len], root, H);
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, p->hash, p->len + 1, root), 0);
    for (size_t k = 0; k < p->len; k++) {
        for (size_t byte = exhaustive ? 0 : (i + k) % H; byte < H; byte += exhaustive ? 1 : H) {
            p->hash[k][byte] ^= 0x01;
            assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, p->hash, p->len, root),
                                 0);
            p->hash[k][byte] ^= 0x01;
        }
    }
    uint8_t bad[H];
    memcpy(bad, root, H);
    bad[i % H] ^= 0x80;
    assert_int_not_equal(trust_ledger_verify_inclusion(leaf, i, n, p->hash, p->len, bad), 0);
}

static void check_consistency(uint64_t m, uint64_t n, trust_ledger_proof *p, bool exhaustive)
{
    uint8_t rm[H], rn[H];
    ref_mth(0, m, rm);
    ref_mth(0, n, rn);
    assert_int_equal(trust_ledger_verify_consistency(m, n, rm, rn, p->hash, p->len), 0);
    const uint64_t alt[][2] = {{m - 1, n}, {m + 1, n}, {m ^ 2, n}, {m, n + 1},
                               {m, n - 1}, {m, n * 2}, {m, n / 2}, {m + 1, n + 1}};
    for (size_t k = 0; k < sizeof(alt) / sizeof(alt[0]); k++) {
        bool want = ref_verify_consistency(alt[k][0], alt[k][1], rm, rn, p->hash, p->len);
        int got = trust_ledger_verify_consistency(alt[k][0], alt[k][1], rm, rn, p->hash, p->len);
        assert_int_equal(got == 0, want);
    }
    if (p->len == 0) {
        return;
    }
    assert_int_not_equal(trust_ledger_verify_consistency(m, n, rn, rm, p->hash, p->len), 0);
    assert_int_not_equal(trust_ledger_verify_consistency(m, n, rm, rn, p->hash, p->len - 1), 0);
    memcpy(p->hash[p->len], rn, H);
    assert_int_not_equal(trust_ledger_verify_consistency(m, n, rm, rn, p->hash, p->len + 1), 0);
    for (size_t k = 0; k < p->len; k++) {
        for (size_t byte = exhaustive ? 0 : (m + n + k) % H; byte < H; byte += exhaustive ? 1 : H) {
            p->hash[k][byte] ^= 0x01;
            assert_int_not_equal(trust_ledger_verify_consistency(m, n, rm, rn, p->hash, p->len), 0);
            p->hash[k][byte] ^= 0x01;
        }
    }
    rm[0] ^= 1;
    assert_int_not_equal(trust_ledger_verify_consistency(m, n, rm, rn, p->hash, p->len), 0);
}

static void test_trust_ledger_tree_matches_rfc6962(void **state)
{
    fx *f = *state;
    /* batches of 1, 2, 3, ... so that subtrees are completed across batch boundaries */
    unsigned done = 0;
    for (unsigned b = 1; done < TREE_MAX; b++) {
        unsigned n = b < TREE_MAX - done ? b : TREE_MAX - done;
        trust_receipt *rs = calloc(n, sizeof(*rs));
        uint8_t(*lh)[H] = calloc(n, H);
        for (unsigned i = 0; i < n; i++) {
            make_receipt(&rs[i], done + i);
        }
        assert_int_equal(trust_ledger_append_batch(f->l, rs, n, NULL, lh, NULL), 0);
        memcpy(tree_leaves[done], lh, (size_t)n * H);
        done += n;
        free(lh);
        free(rs);
    }
    /* the leaves are SHA-256(0x00 || stored bytes), computed here independently */
    for (uint64_t i = 0; i < TREE_MAX; i++) {
        bg_buf bytes;
        bg_buf_init(&bytes);
        assert_int_equal(trust_ledger_get(f->l, i, &bytes, NULL), 0);
        uint8_t mine[H];
        ref_leaf(bytes.data, bytes.len, mine);
        assert_memory_equal(mine, tree_leaves[i], H);
        bg_buf_dispose(&bytes);
    }
    ref_set_leaves(tree_leaves);
    uint8_t r[H], want[H];
    assert_int_equal(trust_ledger_root(f->l, 0, r), 0);
    ref_mth(0, 0, want);
    assert_memory_equal(r, want, H);
    trust_ledger_proof *p = malloc(sizeof(*p) + 2 * H);
    uint8_t(*refp)[H] = malloc(TRUST_LEDGER_PROOF_MAX * H);
    size_t nincl = 0, ncons = 0;
    for (uint64_t n = 1; n <= TREE_MAX; n++) {
        assert_int_equal(trust_ledger_root(f->l, n, r), 0);
        ref_mth(0, n, want);
        assert_memory_equal(r, want, H);
        for (uint64_t i = 0; i < n; i++) {
            assert_int_equal(trust_ledger_inclusion_proof(f->l, i, n, p), 0);
            size_t rl = 0;
            ref_path(i, 0, n, refp, &rl);
            assert_int_equal(p->len, rl);
            assert_memory_equal(p->hash, refp, rl * H);
            if (n <= ALL_PAIRS || i % 7 == 0 || i == n - 1) {
                check_inclusion(i, n, p, r, n <= 16);
            } else {
                assert_int_equal(
                    trust_ledger_verify_inclusion(tree_leaves[i], i, n, p->hash, p->len, r), 0);
            }
            nincl++;
        }
        for (uint64_t m = 0; m <= n; m++) {
            /* all pairs up to ALL_PAIRS, then edges, powers of two and a stride */
            bool pick = n <= ALL_PAIRS || m <= 2 || m >= n - 2 || (m & (m - 1)) == 0 ||
                        (m * 31 + n) % 17 == 0;
            if (!pick) {
                continue;
            }
            assert_int_equal(trust_ledger_consistency_proof(f->l, m, n, p), 0);
            size_t rl = 0;
            if (m > 0 && m < n) {
                ref_subproof(m, 0, n, true, refp, &rl);
            }
            assert_int_equal(p->len, rl);
            assert_memory_equal(p->hash, refp, rl * H);
            check_consistency(m, n, p, n <= 16);
            ncons++;
        }
    }
    /* out of range */
    assert_int_equal(trust_ledger_inclusion_proof(f->l, 5, 5, p), BG_ERR_RANGE);
    assert_int_equal(trust_ledger_inclusion_proof(f->l, 0, TREE_MAX + 1, p), BG_ERR_RANGE);
    assert_int_equal(trust_ledger_consistency_proof(f->l, 6, 5, p), BG_ERR_RANGE);
    assert_int_equal(trust_ledger_consistency_proof(f->l, 1, TREE_MAX + 1, p), BG_ERR_RANGE);
    assert_int_equal(trust_ledger_root(f->l, TREE_MAX + 1, r), BG_ERR_RANGE);
    printf("# compared %zu inclusion and %zu consistency proofs with RFC 6962\n", nincl, ncons);
    free(refp);
    free(p);
}

/* ---- Receipts ------------------------------------------------------------------------------ */

static void test_trust_receipt_encode_decode(void **state)
{
    (void)state;
    trust_receipt r, back;
    make_receipt(&r, 20);
    bg_buf a, b;
    bg_buf_init(&a);
    bg_buf_init(&b);
    assert_int_equal(trust_receipt_encode(&r, &a, NULL), 0);
    assert_int_equal(trust_receipt_decode(&back, a.data, a.len, NULL), 0);
    /* datasets come back sorted; everything else as given */
    assert_string_equal(back.datasets[0], "macau/air");
    assert_string_equal(back.datasets[1], "macau/traffic");
    assert_string_equal(back.purpose, "科研");
    assert_string_equal(back.transit[0], "zhuhai");
    assert_string_equal(back.transit[1], "foshan");
    assert_int_equal(back.epsilon_micro, 20000);
    assert_true(back.has_counterpart_ref);
    assert_int_equal(back.counterpart_index, 60);
    assert_int_equal(back.time_ms, r.time_ms);
    assert_int_equal(trust_receipt_encode(&back, &b, NULL), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    /* duplicates collapse: the same set has the same bytes */
    strcpy(r.datasets[2], r.datasets[0]);
    r.ndatasets = 3;
    bg_buf_reset(&b);
    assert_int_equal(trust_receipt_encode(&r, &b, NULL), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);

    /* hostile input: every truncation and every single-byte change either fails or decodes to
     * a receipt whose canonical encoding is exactly the input */
    uint8_t *m = malloc(a.len + 16);
    for (size_t n = 0; n < a.len; n++) {
        if (trust_receipt_decode(&back, a.data, n, NULL) == 0) {
            bg_buf_reset(&b);
            assert_int_equal(trust_receipt_encode(&back, &b, NULL), 0);
            assert_int_equal(b.len, n);
        }
    }
    size_t accepted = 0;
    for (size_t i = 0; i < a.len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            memcpy(m, a.data, a.len);
            m[i] ^= (uint8_t)(1u << bit);
            if (trust_receipt_decode(&back, m, a.len, NULL) == 0) {
                bg_buf_reset(&b);
                assert_int_equal(trust_receipt_encode(&back, &b, NULL), 0);
                assert_int_equal(b.len, a.len);
                assert_memory_equal(b.data, m, a.len);
                accepted++;
            }
        }
    }
    printf("# %zu of %zu single-bit changes still decode (to their own canonical form)\n", accepted,
           a.len * 8);
    /* trailing garbage, an unknown field, an explicit default, a short digest, unsorted */
    memcpy(m, a.data, a.len);
    m[a.len] = 0;
    assert_int_not_equal(trust_receipt_decode(&back, m, a.len + 1, NULL), 0);
    m[a.len] = 0xa8, m[a.len + 1] = 0x06, m[a.len + 2] = 0x01; /* field 101 varint 1 */
    assert_int_not_equal(trust_receipt_decode(&back, m, a.len + 3, NULL), 0);
    static const uint8_t explicit_zero[] = {0x18, 0x01, 0x88, 0x01, 0x01, 0x78, 0x00};
    assert_int_equal(trust_receipt_decode(&back, explicit_zero, 5, NULL), 0); /* kind, decision */
    assert_int_not_equal(trust_receipt_decode(&back, explicit_zero, 7, NULL), 0); /* cells=0 */
    static const uint8_t short_digest[] = {0x18, 0x01, 0x6a, 0x01, 0xff, 0x88, 0x01, 0x01};
    assert_int_not_equal(trust_receipt_decode(&back, short_digest, sizeof(short_digest), NULL), 0);
    static const uint8_t unsorted[] = {0x18, 0x01, 0x5a, 0x01, 'b', 0x5a,
                                       0x01, 'a',  0x88, 0x01, 0x01};
    assert_int_not_equal(trust_receipt_decode(&back, unsorted, sizeof(unsorted), NULL), 0);
    static const uint8_t nul_in_string[] = {0x18, 0x01, 0x22, 0x02, 'a', 0x00, 0x88, 0x01, 0x01};
    assert_int_not_equal(trust_receipt_decode(&back, nul_in_string, sizeof(nul_in_string), NULL),
                         0);
    assert_int_not_equal(trust_receipt_decode(&back, NULL, 0, NULL), 0);
    free(m);

    /* what the checker refuses */
    bg_errbuf eb = {{0}};
    make_receipt(&r, 1);
    r.kind = 0;
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_INVAL);
    make_receipt(&r, 1);
    r.decision = 9;
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_INVAL);
    make_receipt(&r, 1);
    strcpy(r.provider_city, "Shenzhen");
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_INVAL);
    make_receipt(&r, 1);
    r.contract_id[3] = 'A';
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_INVAL);
    make_receipt(&r, 1);
    memset(r.operation, 'x', sizeof(r.operation)); /* not terminated */
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_RANGE);
    make_receipt(&r, 1);
    strcpy(r.purpose, "a\x01z");
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_INVAL);
    make_receipt(&r, 1);
    r.ntransit = TRUST_RECEIPT_TRANSIT_MAX + 1;
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_RANGE);
    make_receipt(&r, 1);
    r.counterpart_city[0] = '\0';
    r.has_counterpart_ref = true;
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_INVAL);
    make_receipt(&r, 1);
    r.time_ms = -1;
    assert_int_equal(trust_receipt_check(&r, &eb), BG_ERR_RANGE);
    bg_buf_dispose(&a);
    bg_buf_dispose(&b);
}

/* ---- Atomic batches, map growth, reopen ------------------------------------------------ */

static void test_trust_ledger_append_batch_atomic(void **state)
{
    fx *f = *state;
    append_range(f->l, 0, 10);
    uint8_t root10[H], r[H];
    uint64_t size;
    assert_int_equal(trust_ledger_root(f->l, 10, root10), 0);

    /* a refused receipt in the middle refuses the batch */
    trust_receipt *rs = calloc(600, sizeof(*rs));
    for (unsigned i = 0; i < 600; i++) {
        make_receipt(&rs[i], 10 + i);
    }
    rs[3].kind = 42;
    bg_errbuf eb = {{0}};
    assert_int_equal(trust_ledger_append_batch(f->l, rs, 5, NULL, NULL, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "receipt 3"));
    assert_int_equal(trust_ledger_size(f->l, &size), 0);
    assert_int_equal(size, 10);
    rs[3].kind = TRUST_RECEIPT_QUERY;

    /* a disk that cannot grow (RLIMIT_FSIZE at the file's size): LMDB's commit fails, the
     * ledger says BG_ERR_STORE and nothing was appended */
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = trust_ledger_append_batch(f->l, rs, 600, NULL, NULL, &eb);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, BG_ERR_STORE);
    printf("# write failure reported as: %s\n", eb.msg);
    assert_int_equal(trust_ledger_size(f->l, &size), 0);
    assert_int_equal(size, 10);
    assert_int_equal(trust_ledger_root(f->l, 10, r), 0);
    assert_memory_equal(r, root10, H);

    /* and the ledger goes on from where it was */
    uint64_t idx[600];
    assert_int_equal(trust_ledger_append_batch(f->l, rs, 600, idx, NULL, &eb), 0);
    assert_int_equal(idx[0], 10);
    assert_int_equal(idx[599], 609);
    uint64_t bad;
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), 0);
    assert_int_equal(bad, UINT64_MAX);
    free(rs);
}

static void test_trust_ledger_time_is_monotonic(void **state)
{
    fx *f = *state;
    trust_receipt rs[3];
    make_receipt(&rs[0], 0);
    make_receipt(&rs[1], 1);
    make_receipt(&rs[2], 2);
    rs[0].time_ms = 5000;
    rs[1].time_ms = 4000; /* a clock stepped back */
    rs[2].time_ms = 0;    /* stamped by the ledger */
    assert_int_equal(trust_ledger_append_batch(f->l, rs, 3, NULL, NULL, NULL), 0);
    trust_receipt got;
    assert_int_equal(trust_ledger_get(f->l, 1, NULL, &got), 0);
    assert_int_equal(got.time_ms, 5000);
    assert_int_equal(got.index, 1);
    assert_int_equal(trust_ledger_get(f->l, 2, NULL, &got), 0);
    assert_true(got.time_ms > 1700000000000);
    assert_int_equal(trust_ledger_get(f->l, 3, NULL, &got), BG_ERR_NOTFOUND);
    assert_int_equal(trust_ledger_append_batch(f->l, rs, 0, NULL, NULL, NULL), 0);
}

static void test_trust_ledger_map_full_grows(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof(dir));
    trust_ledger *l = open_ledger(dir, 64 * 1024); /* far too small for what follows */
    append_range(l, 0, 2000);
    append_range(l, 2000, 10);
    uint64_t size, bad;
    assert_int_equal(trust_ledger_size(l, &size), 0);
    assert_int_equal(size, 2010);
    assert_int_equal(trust_ledger_verify(l, true, &bad), 0);
    trust_ledger_close(l);
    l = open_ledger(dir, 64 * 1024); /* the grown file keeps its size */
    append_range(l, 2010, 500);
    assert_int_equal(trust_ledger_verify(l, true, &bad), 0);
    trust_ledger_close(l);
    remove_dir(dir);
}

/* ---- query budgets: the count and the receipt in one transaction ---------------------------- */

/* A query receipt of contract |c| (one hex digit, repeated) that uses one query. */
static void budget_receipt(trust_receipt *r, unsigned i, char c)
{
    make_receipt(r, i);
    r->kind = TRUST_RECEIPT_QUERY;
    r->decision = TRUST_RECEIPT_ALLOWED;
    r->error_code = 0;
    r->has_result_digest = true;
    r->cells_suppressed = 2;
    memset(r->contract_id, c, TRUST_RECEIPT_CONTRACT_ID_LEN);
    r->contract_id[TRUST_RECEIPT_CONTRACT_ID_LEN] = 0;
}

/* Within and across batches each contract counts on its own; once its limit is reached, the
 * receipts that would go over are stored as refusals, with nothing counted and no result. */
static void test_trust_ledger_budget_counts(void **state)
{
    fx *f = *state;
    enum { N = 12 };
    trust_receipt rs[N];
    trust_ledger_budget b[N];
    for (unsigned i = 0; i < N; i++) {
        budget_receipt(&rs[i], i, i % 3 == 2 ? 'b' : 'a'); /* a: 8 receipts, b: 4 */
        b[i] = (trust_ledger_budget){.limit = i % 3 == 2 ? 100 : 5, .used = 77, .exhausted = true};
    }
    b[N - 1].limit = 0; /* uses no query (a replay, say) */
    bg_errbuf eb;
    uint64_t idx[N];
    assert_int_equal(trust_ledger_append_signed(f->l, rs, N, b, idx, NULL, "hongkong", NULL, &eb),
                     0);
    unsigned a_used = 0, b_used = 0;
    for (unsigned i = 0; i < N; i++) {
        trust_receipt got;
        assert_int_equal(trust_ledger_get(f->l, idx[i], NULL, &got), 0);
        if (b[i].limit == 0) {
            assert_false(b[i].exhausted);
            assert_int_equal(b[i].used, 0);
            assert_int_equal(got.queries_used, 0);
            assert_int_equal(got.kind, TRUST_RECEIPT_QUERY);
            continue;
        }
        unsigned *n = rs[i].contract_id[0] == 'a' ? &a_used : &b_used;
        if (*n < b[i].limit) {
            ++*n;
            assert_false(b[i].exhausted);
            assert_int_equal(b[i].used, *n);
            assert_int_equal(got.queries_used, *n);
            assert_int_equal(got.kind, TRUST_RECEIPT_QUERY);
            assert_int_equal(got.decision, TRUST_RECEIPT_ALLOWED);
            assert_true(got.has_result_digest);
        } else {
            assert_true(b[i].exhausted);
            assert_int_equal(b[i].used, 0);
            assert_int_equal(got.queries_used, 0);
            assert_int_equal(got.kind, TRUST_RECEIPT_REFUSAL);
            assert_int_equal(got.decision, TRUST_RECEIPT_REFUSED);
            assert_int_equal(got.error_code, BG_ERR_BUDGET_EXHAUSTED);
            assert_false(got.has_result_digest);
            assert_int_equal(got.cells_suppressed, 0);
        }
    }
    assert_int_equal(a_used, 5);
    assert_int_equal(b_used, 3);
    char ida[TRUST_RECEIPT_CONTRACT_ID_LEN + 1], idb[TRUST_RECEIPT_CONTRACT_ID_LEN + 1];
    memset(ida, 'a', TRUST_RECEIPT_CONTRACT_ID_LEN);
    memset(idb, 'b', TRUST_RECEIPT_CONTRACT_ID_LEN);
    ida[TRUST_RECEIPT_CONTRACT_ID_LEN] = idb[TRUST_RECEIPT_CONTRACT_ID_LEN] = 0;
    uint32_t used;
    assert_int_equal(trust_ledger_budget_used(f->l, ida, &used), 0);
    assert_int_equal(used, 5);
    assert_int_equal(trust_ledger_budget_used(f->l, idb, &used), 0);
    assert_int_equal(used, 3);
    /* the next batch goes on from the stored count: a raised limit allows one more */
    budget_receipt(&rs[0], 100, 'a');
    b[0] = (trust_ledger_budget){.limit = 6};
    assert_int_equal(trust_ledger_append_signed(f->l, rs, 1, b, NULL, NULL, "hongkong", NULL, &eb),
                     0);
    assert_false(b[0].exhausted);
    assert_int_equal(b[0].used, 6);
    assert_int_equal(trust_ledger_budget_used(f->l, ida, &used), 0);
    assert_int_equal(used, 6);
    /* a contract never seen: 0; a malformed id: refused */
    char idc[TRUST_RECEIPT_CONTRACT_ID_LEN + 1];
    memset(idc, 'c', TRUST_RECEIPT_CONTRACT_ID_LEN);
    idc[TRUST_RECEIPT_CONTRACT_ID_LEN] = 0;
    assert_int_equal(trust_ledger_budget_used(f->l, idc, &used), 0);
    assert_int_equal(used, 0);
    assert_int_equal(trust_ledger_budget_used(f->l, "abc", &used), BG_ERR_INVAL);
    idc[3] = 'G';
    assert_int_equal(trust_ledger_budget_used(f->l, idc, &used), BG_ERR_INVAL);
    uint64_t bad;
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), 0);
}

/* A budget on a receipt without a contract, or a count the caller made up, appends nothing. */
static void test_trust_ledger_budget_refused(void **state)
{
    fx *f = *state;
    trust_receipt rs[2];
    trust_ledger_budget b[2] = {{.limit = 3}, {.limit = 3}};
    budget_receipt(&rs[0], 0, 'a');
    budget_receipt(&rs[1], 1, 'a');
    rs[1].contract_id[0] = 0;
    bg_errbuf eb;
    assert_int_equal(trust_ledger_append_signed(f->l, rs, 2, b, NULL, NULL, "hongkong", NULL, &eb),
                     BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "receipt 1"));
    budget_receipt(&rs[1], 1, 'a');
    rs[1].queries_used = 1;
    assert_int_equal(trust_ledger_append_signed(f->l, rs, 2, b, NULL, NULL, "hongkong", NULL, &eb),
                     BG_ERR_INVAL);
    uint64_t size;
    assert_int_equal(trust_ledger_size(f->l, &size), 0);
    assert_int_equal(size, 0);
    char ida[TRUST_RECEIPT_CONTRACT_ID_LEN + 1];
    memset(ida, 'a', TRUST_RECEIPT_CONTRACT_ID_LEN);
    ida[TRUST_RECEIPT_CONTRACT_ID_LEN] = 0;
    uint32_t used = 9;
    assert_int_equal(trust_ledger_budget_used(f->l, ida, &used), 0);
    assert_int_equal(used, 0);
    /* queries_used is encoded, and needs a contract */
    trust_receipt r, back;
    budget_receipt(&r, 5, 'a');
    r.queries_used = 42;
    bg_buf enc;
    bg_buf_init(&enc);
    assert_int_equal(trust_receipt_encode(&r, &enc, NULL), 0);
    assert_int_equal(trust_receipt_decode(&back, enc.data, enc.len, NULL), 0);
    assert_int_equal(back.queries_used, 42);
    bg_buf_dispose(&enc);
    r.contract_id[0] = 0;
    assert_int_equal(trust_receipt_check(&r, NULL), BG_ERR_INVAL);
}

typedef struct budget_thread {
    trust_ledger *l;
    unsigned from, n, ok, refused;
} budget_thread;

static void *budget_writer(void *arg)
{
    budget_thread *t = arg;
    for (unsigned i = 0; i < t->n; i += 4) { /* batches of 4, racing the other thread */
        trust_receipt rs[4];
        trust_ledger_budget b[4];
        unsigned k = t->n - i < 4 ? t->n - i : 4;
        for (unsigned j = 0; j < k; j++) {
            budget_receipt(&rs[j], t->from + i + j, 'd');
            b[j] = (trust_ledger_budget){.limit = 50};
        }
        if (trust_ledger_append_signed(t->l, rs, k, b, NULL, NULL, "hongkong", NULL, NULL) != 0) {
            return NULL;
        }
        for (unsigned j = 0; j < k; j++) {
            t->ok += !b[j].exhausted;
            t->refused += b[j].exhausted;
        }
    }
    return NULL;
}

/* 64 queries from two threads at once against a limit of 50: exactly 50 counted. */
static void test_trust_ledger_budget_concurrent(void **state)
{
    fx *f = *state;
    budget_thread t[2] = {{f->l, 0, 32, 0, 0}, {f->l, 1000, 32, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, budget_writer, &t[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    assert_int_equal(t[0].ok + t[1].ok, 50);
    assert_int_equal(t[0].refused + t[1].refused, 14);
    char idd[TRUST_RECEIPT_CONTRACT_ID_LEN + 1];
    memset(idd, 'd', TRUST_RECEIPT_CONTRACT_ID_LEN);
    idd[TRUST_RECEIPT_CONTRACT_ID_LEN] = 0;
    uint32_t used;
    assert_int_equal(trust_ledger_budget_used(f->l, idd, &used), 0);
    assert_int_equal(used, 50);
    uint64_t size;
    assert_int_equal(trust_ledger_size(f->l, &size), 0);
    assert_int_equal(size, 64);
}

/* The batch and its checkpoint in one transaction: the stored checkpoint is the new head's,
 * it verifies, and a tiny map that must grow mid-transaction still ends consistent. */
static void test_trust_ledger_append_signed(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof(dir));
    trust_ledger *l = open_ledger(dir, 64 * 1024);
    trust_receipt *rs = calloc(700, sizeof(*rs));
    assert_non_null(rs);
    for (unsigned i = 0; i < 700; i++) {
        make_receipt(&rs[i], i);
    }
    bg_buf note, key;
    bg_buf_init(&note);
    bg_buf_init(&key);
    bg_errbuf eb;
    assert_int_equal(trust_ledger_append_signed(l, rs, 700, NULL, NULL, NULL, "hongkong", &note, &eb),
                     0);
    assert_int_equal(trust_ledger_verifier_key(l, "hongkong", &key), 0);
    assert_int_equal(bg_buf_append(&key, "", 1), 0);
    trust_ledger_checkpoint cp;
    assert_int_equal(trust_ledger_checkpoint_verify(note.data, note.len, (const char *)key.data,
                                                    &cp), 0);
    assert_int_equal(cp.size, 700);
    uint8_t root[TRUST_LEDGER_HASH_LEN];
    assert_int_equal(trust_ledger_root(l, 700, root), 0);
    assert_memory_equal(root, cp.root, sizeof(root));
    bg_buf last;
    bg_buf_init(&last);
    assert_int_equal(trust_ledger_checkpoint_last(l, &last), 0);
    assert_int_equal(last.len, note.len);
    assert_memory_equal(last.data, note.data, note.len);
    uint64_t bad;
    assert_int_equal(trust_ledger_verify(l, true, &bad), 0);
    /* a bad city appends nothing */
    assert_int_equal(trust_ledger_append_signed(l, rs, 1, NULL, NULL, NULL, "Bad City", NULL, &eb),
                     BG_ERR_INVAL);
    uint64_t size;
    assert_int_equal(trust_ledger_size(l, &size), 0);
    assert_int_equal(size, 700);
    bg_buf_dispose(&last);
    bg_buf_dispose(&note);
    bg_buf_dispose(&key);
    free(rs);
    trust_ledger_close(l);
    remove_dir(dir);
}

static void test_trust_ledger_reopen_keeps_everything(void **state)
{
    fx *f = *state;
    append_range(f->l, 0, 77);
    uint8_t root[H], r[H];
    uint64_t size;
    assert_int_equal(trust_ledger_head(f->l, &size, root), 0);
    assert_int_equal(size, 77);
    bg_buf note, vk, note2, vk2, b1, b2;
    bg_buf_init(&note);
    bg_buf_init(&vk);
    bg_buf_init(&note2);
    bg_buf_init(&vk2);
    bg_buf_init(&b1);
    bg_buf_init(&b2);
    assert_int_equal(trust_ledger_checkpoint_sign(f->l, CITY, &note, NULL), 0);
    assert_int_equal(trust_ledger_verifier_key(f->l, CITY, &vk), 0);
    assert_int_equal(trust_ledger_get(f->l, 40, &b1, NULL), 0);
    trust_ledger_close(f->l);

    char key[128];
    snprintf(key, sizeof(key), "%s/checkpoint.key", f->dir);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    f->l = open_ledger(f->dir, 0);
    assert_int_equal(trust_ledger_head(f->l, &size, r), 0);
    assert_int_equal(size, 77);
    assert_memory_equal(r, root, H);
    assert_int_equal(trust_ledger_checkpoint_last(f->l, &note2), 0);
    assert_int_equal(note.len, note2.len);
    assert_memory_equal(note.data, note2.data, note.len);
    assert_int_equal(trust_ledger_verifier_key(f->l, CITY, &vk2), 0);
    assert_string_equal((char *)vk.data, (char *)vk2.data); /* the same key, loaded */
    assert_int_equal(trust_ledger_get(f->l, 40, &b2, NULL), 0);
    assert_int_equal(b1.len, b2.len);
    assert_memory_equal(b1.data, b2.data, b1.len);
    uint64_t bad;
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), 0);
    append_range(f->l, 77, 5); /* indexes go on */

    /* a key file others can read is refused */
    trust_ledger_close(f->l);
    f->l = NULL;
    assert_int_equal(chmod(key, 0644), 0);
    bg_errbuf eb = {{0}};
    assert_int_not_equal(trust_ledger_open(&f->l, f->dir, 0, &eb), 0);
    assert_non_null(strstr(eb.msg, "chmod 600"));
    assert_int_equal(chmod(key, 0600), 0);
    f->l = open_ledger(f->dir, 0);
    bg_buf_dispose(&note);
    bg_buf_dispose(&vk);
    bg_buf_dispose(&note2);
    bg_buf_dispose(&vk2);
    bg_buf_dispose(&b1);
    bg_buf_dispose(&b2);
}

/* ---- Tampering -------------------------------------------------------------------------- */

/* Flips one byte of the value under |key| in database |db| of the closed ledger in |dir|,
 * with LMDB directly, as an attacker with the files would. */
static void tamper(const char *dir, const char *db, const void *key, size_t klen, size_t at)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    MDB_val k = {klen, (void *)(uintptr_t)key}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[at < v.mv_size ? at : v.mv_size - 1] ^= 0x20;
    MDB_val nv = {v.mv_size, copy};
    assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

static void tamper_receipt(const char *dir, uint64_t index)
{
    uint8_t kb[8];
    for (int i = 7; i >= 0; i--) {
        kb[i] = (uint8_t)(index >> (8 * (7 - i)));
    }
    tamper(dir, "receipts", kb, 8, 20);
}

/* A query count set back by hand (to give a contract more queries) fails the full check, which
 * names the last receipt that used a query of that contract. */
static void test_trust_ledger_budget_tamper(void **state)
{
    fx *f = *state;
    enum { N = 6 };
    trust_receipt rs[N];
    trust_ledger_budget b[N];
    uint64_t idx[N];
    for (unsigned i = 0; i < N; i++) {
        budget_receipt(&rs[i], i, 'e');
        b[i] = (trust_ledger_budget){.limit = 10};
    }
    assert_int_equal(trust_ledger_append_signed(f->l, rs, N, b, idx, NULL, CITY, NULL, NULL), 0);
    uint64_t bad;
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), 0);
    trust_ledger_close(f->l);
    char ide[TRUST_RECEIPT_CONTRACT_ID_LEN + 1];
    memset(ide, 'e', TRUST_RECEIPT_CONTRACT_ID_LEN);
    ide[TRUST_RECEIPT_CONTRACT_ID_LEN] = 0;
    tamper(f->dir, "budgets", ide, TRUST_RECEIPT_CONTRACT_ID_LEN, 3); /* 6 -> 38 */
    f->l = open_ledger(f->dir, 0);
    uint32_t used;
    assert_int_equal(trust_ledger_budget_used(f->l, ide, &used), 0);
    assert_int_equal(used, 6 ^ 0x20);
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), BG_ERR_SIGNATURE);
    assert_int_equal(bad, idx[N - 1]);
    trust_ledger_close(f->l);
    tamper(f->dir, "budgets", ide, TRUST_RECEIPT_CONTRACT_ID_LEN, 3); /* back to 6 */
    f->l = open_ledger(f->dir, 0);
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), 0);
}

static void test_trust_ledger_verify_detects_tamper(void **state)
{
    fx *f = *state;
    append_range(f->l, 0, 1000);
    append_range(f->l, 1000, 500);
    bg_buf note;
    bg_buf_init(&note);
    assert_int_equal(trust_ledger_checkpoint_sign(f->l, CITY, &note, NULL), 0);
    uint64_t bad = 0;
    assert_int_equal(trust_ledger_verify(f->l, false, &bad), 0);
    assert_int_equal(bad, UINT64_MAX);
    bg_buf before, after;
    bg_buf_init(&before);
    bg_buf_init(&after);
    assert_int_equal(trust_ledger_get(f->l, 1400, &before, NULL), 0);
    trust_ledger_close(f->l);

    /* a recent receipt: both modes name it */
    tamper_receipt(f->dir, 1400);
    f->l = open_ledger(f->dir, 0);
    assert_int_equal(trust_ledger_verify(f->l, false, &bad), BG_ERR_SIGNATURE);
    assert_int_equal(bad, 1400);
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), BG_ERR_SIGNATURE);
    assert_int_equal(bad, 1400);
    /* the bytes read back are the altered ones; decoding them either fails (BG_ERR_STORE) or
     * gives another receipt, and only the hashes tell which receipt was touched */
    assert_int_equal(trust_ledger_get(f->l, 1400, &after, NULL), 0);
    assert_int_equal(after.len, before.len);
    assert_memory_not_equal(after.data, before.data, before.len);
    trust_receipt r;
    int grc = trust_ledger_get(f->l, 1400, NULL, &r);
    assert_true(grc == BG_ERR_STORE || grc == 0);
    bg_buf_dispose(&before);
    bg_buf_dispose(&after);
    trust_ledger_close(f->l);

    /* an old one too: the cheap check does not reach it, the full one names the first */
    tamper_receipt(f->dir, 7);
    f->l = open_ledger(f->dir, 0);
    assert_int_equal(trust_ledger_verify(f->l, false, &bad), BG_ERR_SIGNATURE);
    assert_int_equal(bad, 1400);
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), BG_ERR_SIGNATURE);
    assert_int_equal(bad, 7);
    trust_ledger_close(f->l);

    /* undo both; then alter the stored checkpoint's root: the signature no longer verifies */
    tamper_receipt(f->dir, 7);
    tamper_receipt(f->dir, 1400);
    f->l = open_ledger(f->dir, 0);
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), 0);
    trust_ledger_close(f->l);
    const char *nl = memchr(note.data, '\n', note.len);
    nl = memchr(nl + 1, '\n', note.len - (size_t)(nl + 1 - (const char *)note.data));
    tamper(f->dir, "ledger_info", "checkpoint", 10, (size_t)(nl + 3 - (const char *)note.data));
    f->l = open_ledger(f->dir, 0);
    assert_int_equal(trust_ledger_verify(f->l, false, &bad), BG_ERR_SIGNATURE);
    assert_int_equal(bad, UINT64_MAX);

    /* and a tampered subtree hash is found too, named by its first leaf */
    trust_ledger_close(f->l);
    tamper(f->dir, "ledger_info", "checkpoint", 10, (size_t)(nl + 3 - (const char *)note.data));
    uint8_t nk[9] = {0, 0, 0, 0, 0, 0, 0x05, 0x7f, 4}; /* level 4, last leaf 1407: leaves 1392.. */
    tamper(f->dir, "nodes", nk, 9, 0);
    f->l = open_ledger(f->dir, 0);
    assert_int_equal(trust_ledger_verify(f->l, true, &bad), BG_ERR_SIGNATURE);
    assert_int_equal(bad, 1392);
    bg_buf_dispose(&note);
}

/* ---- Checkpoints ------------------------------------------------------------------------- */

/* golang.org/x/mod/sumdb/note's documented example (note.go, note_test.go). */
#define GO_VKEY "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#define GO_SKEY_B64 "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
#define GO_TEXT                                                                                    \
    "If you think cryptography is the answer to your problem,\n"                                   \
    "then you don't know what your problem is.\n"
#define GO_NOTE                                                                                    \
    GO_TEXT "\n\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1"    \
            "FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

static void test_trust_ledger_checkpoint_roundtrip(void **state)
{
    fx *f = *state;
    bg_buf note, vk;
    bg_buf_init(&note);
    bg_buf_init(&vk);
    /* the empty tree */
    assert_int_equal(trust_ledger_checkpoint_last(f->l, &note), BG_ERR_NOTFOUND);
    assert_int_equal(trust_ledger_checkpoint_sign(f->l, CITY, &note, NULL), 0);
    assert_int_equal(trust_ledger_verifier_key(f->l, CITY, &vk), 0);
    trust_ledger_checkpoint c;
    assert_int_equal(trust_ledger_checkpoint_verify(note.data, note.len, (char *)vk.data, &c), 0);
    assert_int_equal(c.size, 0);
    bg_buf_reset(&note);

    append_range(f->l, 0, 123);
    uint64_t size;
    assert_int_equal(trust_ledger_checkpoint_sign(f->l, CITY, &note, &size), 0);
    assert_int_equal(size, 123);
    printf("# checkpoint note:\n%.*s", (int)note.len, (char *)note.data);
    printf("# %s\n", (char *)vk.data);
    assert_true(strncmp((char *)vk.data, "guangzhou.gba/baygate/ledger+", 29) == 0);
    /* the exact shape: origin, size, root; blank line; em dash line */
    const char *txt = (const char *)note.data;
    assert_true(strncmp(txt, "guangzhou.gba/baygate/ledger\n123\n", 33) == 0);
    assert_non_null(strstr(txt, "=\n\n\xe2\x80\x94 guangzhou.gba/baygate/ledger "));
    assert_int_equal(trust_ledger_checkpoint_verify(note.data, note.len, (char *)vk.data, &c), 0);
    uint8_t root[H];
    assert_int_equal(trust_ledger_root(f->l, 123, root), 0);
    assert_int_equal(c.size, 123);
    assert_memory_equal(c.root, root, H);
    assert_string_equal(c.origin, "guangzhou.gba/baygate/ledger");

    /* any flipped byte fails */
    uint8_t *m = malloc(note.len);
    for (size_t i = 0; i < note.len; i++) {
        memcpy(m, note.data, note.len);
        m[i] ^= 0x01;
        assert_int_not_equal(trust_ledger_checkpoint_verify(m, note.len, (char *)vk.data, &c), 0);
    }
    assert_int_not_equal(
        trust_ledger_checkpoint_verify(note.data, note.len - 1, (char *)vk.data, &c), 0);
    free(m);

    /* another ledger's key does not verify it, nor does our key under another name */
    char dir2[64];
    make_dir(dir2, sizeof(dir2));
    trust_ledger *other = open_ledger(dir2, 0);
    bg_buf vk2;
    bg_buf_init(&vk2);
    assert_int_equal(trust_ledger_verifier_key(other, CITY, &vk2), 0);
    assert_string_not_equal((char *)vk.data, (char *)vk2.data);
    assert_int_equal(trust_ledger_checkpoint_verify(note.data, note.len, (char *)vk2.data, &c),
                     BG_ERR_SIGNATURE);
    bg_buf vk3;
    bg_buf_init(&vk3);
    assert_int_equal(trust_ledger_verifier_key(f->l, "shenzhen", &vk3), 0);
    assert_int_equal(trust_ledger_checkpoint_verify(note.data, note.len, (char *)vk3.data, &c),
                     BG_ERR_SIGNATURE);
    /* a note signed by both keys verifies with either (unknown signatures are ignored) */
    bg_buf both;
    bg_buf_init(&both);
    append_range(other, 0, 123);
    bg_buf onote;
    bg_buf_init(&onote);
    assert_int_equal(trust_ledger_checkpoint_sign(other, CITY, &onote, NULL), 0);
    const char *sig2 = strstr((const char *)onote.data, "\n\n") + 2;
    assert_int_equal(bg_buf_append(&both, note.data, note.len), 0);
    assert_int_equal(bg_buf_append(&both, sig2, strlen(sig2)), 0);
    /* the other ledger has different receipts? no: the same, so same text, two signatures */
    assert_int_equal(trust_ledger_checkpoint_verify(both.data, both.len, (char *)vk.data, &c), 0);
    assert_int_equal(trust_ledger_checkpoint_verify(both.data, both.len, (char *)vk2.data, &c), 0);
    trust_ledger_close(other);
    remove_dir(dir2);

    /* malformed verifier keys */
    char bad[256];
    snprintf(bad, sizeof(bad), "%s", (char *)vk.data);
    char *id = strchr(bad, '+') + 1;
    id[0] = id[0] == '0' ? '1' : '0';
    assert_int_equal(trust_ledger_checkpoint_verify(note.data, note.len, bad, &c), BG_ERR_INVAL);
    assert_int_equal(trust_ledger_checkpoint_verify(note.data, note.len, "x+y", &c), BG_ERR_INVAL);
    assert_int_equal(trust_ledger_verifier_key(f->l, "Bad City", &vk3), BG_ERR_INVAL);

    /* interoperability: Go's sumdb/note example verifies here, and fails when altered */
    size_t tl = 0;
    const uint8_t *go = (const uint8_t *)GO_NOTE;
    assert_int_equal(trust_ledger_note_verify(go, strlen(GO_NOTE), GO_VKEY, &tl), 0);
    assert_int_equal(tl, strlen(GO_TEXT));
    char alt[sizeof(GO_NOTE)];
    memcpy(alt, GO_NOTE, sizeof(GO_NOTE));
    alt[20] = 'Y';
    assert_int_equal(trust_ledger_note_verify((uint8_t *)alt, strlen(alt), GO_VKEY, &tl),
                     BG_ERR_SIGNATURE);

    bg_buf_dispose(&note);
    bg_buf_dispose(&vk);
    bg_buf_dispose(&vk2);
    bg_buf_dispose(&vk3);
    bg_buf_dispose(&both);
    bg_buf_dispose(&onote);
}

/* Go's PeterNeumann private key put in place as the ledger's key: the verifier key we publish
 * carries exactly Go's public key encoding. */
static void test_trust_ledger_loads_existing_key(void **state)
{
    (void)state;
    char dir[64], path[128];
    make_dir(dir, sizeof(dir));
    uint8_t raw[33];
    assert_int_equal(
        EVP_DecodeBlock(raw, (const unsigned char *)GO_SKEY_B64, (int)strlen(GO_SKEY_B64)), 33);
    assert_int_equal(raw[0], 1);
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw + 1, 32);
    assert_non_null(k);
    snprintf(path, sizeof(path), "%s/checkpoint.key", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    FILE *fp = fdopen(fd, "w");
    assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    EVP_PKEY_free(k);
    trust_ledger *l = open_ledger(dir, 0);
    bg_buf vk;
    bg_buf_init(&vk);
    assert_int_equal(trust_ledger_verifier_key(l, CITY, &vk), 0);
    const char *b64 = strrchr((char *)vk.data, '+') + 1;
    assert_string_equal(b64, strrchr(GO_VKEY, '+') + 1);
    bg_buf_dispose(&vk);
    trust_ledger_close(l);
    remove_dir(dir);
}

/* ---- Secondary indexes ------------------------------------------------------------------------
 */

static size_t brute(trust_ledger *l, uint64_t size, const trust_ledger_filter *q, uint64_t *out)
{
    size_t n = 0;
    for (uint64_t i = 0; i < size; i++) {
        trust_receipt r;
        assert_int_equal(trust_ledger_get(l, i, NULL, &r), 0);
        if ((q->contract_id != NULL && strcmp(q->contract_id, r.contract_id) != 0) ||
            (q->requester != NULL && strcmp(q->requester, r.requester) != 0) ||
            (q->counterpart_city != NULL && strcmp(q->counterpart_city, r.counterpart_city) != 0) ||
            (q->time_from > 0 && r.time_ms < q->time_from) ||
            (q->time_until > 0 && r.time_ms >= q->time_until)) {
            continue;
        }
        out[n++] = i;
    }
    return n;
}

static void test_trust_ledger_query_paging(void **state)
{
    fx *f = *state;
    append_range(f->l, 0, 150);
    append_range(f->l, 150, 60);
    char c3[65], c5[65];
    snprintf(c3, sizeof(c3), "%064x", 3);
    snprintf(c5, sizeof(c5), "%064x", 5);
    const int64_t t0 = 1700000000000;
    const trust_ledger_filter qs[] = {
        {NULL, NULL, NULL, 0, 0},
        {c3, NULL, NULL, 0, 0},
        {NULL, "spiffe://guangzhou.gba/firm/f2", NULL, 0, 0},
        {NULL, NULL, "macau", 0, 0},
        {c3, "spiffe://guangzhou.gba/firm/f1", NULL, 0, 0},
        {c5, NULL, "hongkong", t0 + 300, t0 + 1700},
        {NULL, NULL, NULL, t0 + 455, t0 + 1001},
        {c3, "spiffe://guangzhou.gba/firm/f1", "shenzhen", 0, t0 + 1500},
        {"ffff", NULL, NULL, 0, 0},
        {NULL, NULL, NULL, t0 + 999999, 0},
    };
    uint64_t want[256], got[256], page[7];
    for (size_t q = 0; q < sizeof(qs) / sizeof(qs[0]); q++) {
        size_t nw = brute(f->l, 210, &qs[q], want), ng = 0;
        uint64_t start = 0;
        for (;;) {
            size_t n = 99;
            uint64_t next = 0;
            assert_int_equal(trust_ledger_query(f->l, &qs[q], start, 7, page, &n, &next), 0);
            memcpy(got + ng, page, n * sizeof(uint64_t));
            ng += n;
            if (n < 7) {
                break;
            }
            assert_true(next > start);
            start = next;
        }
        assert_int_equal(ng, nw);
        assert_memory_equal(got, want, nw * sizeof(uint64_t));
    }
    /* NULL filter and a start beyond the end */
    size_t n;
    uint64_t next;
    assert_int_equal(trust_ledger_query(f->l, NULL, 205, 50, got, &n, &next), 0);
    assert_int_equal(n, 5);
    assert_int_equal(got[0], 205);
    assert_int_equal(trust_ledger_query(f->l, NULL, 1000, 50, got, &n, &next), 0);
    assert_int_equal(n, 0);
}

/* ---- Concurrency: one writer, readers on other threads ----------------------------------- */

typedef struct conc {
    trust_ledger *l;
    int stop; /* __atomic */
    int failures;
    int checks;
} conc;

static void *reader(void *arg)
{
    conc *c = arg;
    uint64_t old_size = 0;
    uint8_t old_root[H];
    trust_ledger_proof *p = malloc(sizeof(*p));
    unsigned seed = 7;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        uint64_t size;
        uint8_t root[H];
        if (trust_ledger_head(c->l, &size, root) != 0) {
            c->failures++;
            continue;
        }
        if (size == 0) {
            continue;
        }
        uint64_t i = (uint64_t)rand_r(&seed) % size;
        bg_buf b;
        bg_buf_init(&b);
        uint8_t leaf[H];
        if (trust_ledger_get(c->l, i, &b, NULL) != 0 ||
            trust_ledger_leaf_hash(b.data, b.len, leaf) != 0 ||
            trust_ledger_inclusion_proof(c->l, i, size, p) != 0 ||
            trust_ledger_verify_inclusion(leaf, i, size, p->hash, p->len, root) != 0) {
            c->failures++;
        }
        bg_buf_dispose(&b);
        if (old_size > 0 && (trust_ledger_consistency_proof(c->l, old_size, size, p) != 0 ||
                             trust_ledger_verify_consistency(old_size, size, old_root, root,
                                                             p->hash, p->len) != 0)) {
            c->failures++;
        }
        old_size = size;
        memcpy(old_root, root, H);
        c->checks++;
    }
    free(p);
    return NULL;
}

static void test_trust_ledger_concurrent_readers(void **state)
{
    (void)state;
    char dir[64];
    make_dir(dir, sizeof(dir));
    conc c[2] = {{.l = open_ledger(dir, 64 * 1024)}, {0}}; /* small: the map grows meanwhile */
    c[1].l = c[0].l;
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, reader, &c[i]), 0);
    }
    for (unsigned b = 0; b < 60; b++) {
        append_range(c[0].l, b * 40, 40);
    }
    __atomic_store_n(&c[0].stop, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&c[1].stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].failures, 0);
    }
    printf("# readers checked %d proofs while the writer appended\n", c[0].checks + c[1].checks);
    trust_ledger_close(c[0].l);
    remove_dir(dir);
}

/* ---- Timing (printed, not asserted) ------------------------------------------------------- */

static void test_trust_ledger_timing(void **state)
{
    (void)state;
    enum { BATCH = 1000, N = 100000 };
    char dir[64];
    make_dir(dir, sizeof(dir));
    trust_ledger *l = open_ledger(dir, 0);
    trust_receipt *rs = calloc(BATCH, sizeof(*rs));
    double t0 = now_s();
    for (unsigned b = 0; b < N / BATCH; b++) {
        for (unsigned i = 0; i < BATCH; i++) {
            make_receipt(&rs[i], b * BATCH + i);
        }
        assert_int_equal(trust_ledger_append_batch(l, rs, BATCH, NULL, NULL, NULL), 0);
    }
    double t1 = now_s();
    printf("# append: %d receipts in batches of %d: %.2f s, %.0f appends/s\n", N, BATCH, t1 - t0,
           N / (t1 - t0));
    trust_ledger_proof *p = malloc(sizeof(*p));
    uint8_t root[H];
    uint64_t size;
    assert_int_equal(trust_ledger_head(l, &size, root), 0);
    unsigned seed = 1;
    enum { Q = 2000 };
    t0 = now_s();
    for (int i = 0; i < Q; i++) {
        uint64_t idx = (uint64_t)rand_r(&seed) % size;
        assert_int_equal(trust_ledger_inclusion_proof(l, idx, size, p), 0);
    }
    t1 = now_s();
    printf("# inclusion proof at %llu leaves: %.1f us\n", (unsigned long long)size,
           (t1 - t0) * 1e6 / Q);
    t0 = now_s();
    for (int i = 0; i < Q; i++) {
        uint64_t m = 1 + (uint64_t)rand_r(&seed) % (size - 1);
        assert_int_equal(trust_ledger_consistency_proof(l, m, size, p), 0);
    }
    t1 = now_s();
    printf("# consistency proof at %llu leaves: %.1f us\n", (unsigned long long)size,
           (t1 - t0) * 1e6 / Q);
    t0 = now_s();
    for (int i = 0; i < Q; i++) {
        assert_int_equal(trust_ledger_root(l, 1 + (uint64_t)rand_r(&seed) % size, root), 0);
    }
    t1 = now_s();
    printf("# root at a random size: %.1f us\n", (t1 - t0) * 1e6 / Q);
    uint64_t bad;
    t0 = now_s();
    assert_int_equal(trust_ledger_verify(l, false, &bad), 0);
    t1 = now_s();
    assert_int_equal(trust_ledger_verify(l, true, &bad), 0);
    double t2 = now_s();
    printf("# verify: cheap %.1f ms, full %.1f ms\n", (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    free(p);
    free(rs);
    trust_ledger_close(l);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_ledger_reference_vectors),
        cmocka_unit_test_setup_teardown(test_trust_ledger_tree_matches_rfc6962, setup, teardown),
        cmocka_unit_test(test_trust_receipt_encode_decode),
        cmocka_unit_test_setup_teardown(test_trust_ledger_append_batch_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_ledger_time_is_monotonic, setup, teardown),
        cmocka_unit_test(test_trust_ledger_map_full_grows),
        cmocka_unit_test(test_trust_ledger_append_signed),
        cmocka_unit_test_setup_teardown(test_trust_ledger_budget_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_ledger_budget_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_ledger_budget_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_ledger_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_ledger_verify_detects_tamper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_ledger_budget_tamper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_ledger_checkpoint_roundtrip, setup, teardown),
        cmocka_unit_test(test_trust_ledger_loads_existing_key),
        cmocka_unit_test_setup_teardown(test_trust_ledger_query_paging, setup, teardown),
        cmocka_unit_test(test_trust_ledger_concurrent_readers),
        cmocka_unit_test(test_trust_ledger_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
