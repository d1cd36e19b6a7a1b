/* tests/unit/trust/test_store.c: the LMDB contract store on real LMDB files in a mkdtemp()
 * directory: idempotent puts, tamper refusal, usage control, the requester index, map growth,
 * persistence across reopen, concurrent consumers never overspending a query or epsilon budget,
 * the first-writer-wins noise cache, and refusal of an older store format. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "trust/store.h"

#define ID_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define FIRM "spiffe://guangzhou.gba/firm/acme"

typedef struct fx {
    char dir[64];
    trust_store *s;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/bg-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        return -1;
    }
    bg_errbuf eb = {{0}};
    if (trust_store_open(&f->s, f->dir, 1 << 20, &eb) != 0) {
        fprintf(stderr, "%s\n", eb.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[128];
    trust_store_close(f->s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0) {
        return -1;
    }
    free(f);
    return 0;
}

static trust_store_meta meta(uint32_t state, int64_t from, int64_t until, uint32_t maxq)
{
    trust_store_meta m;
    memset(&m, 0, sizeof(m));
    m.state = state;
    m.valid_from = from;
    m.valid_until = until;
    m.max_queries = maxq;
    snprintf(m.requester, sizeof(m.requester), "%s", FIRM);
    return m;
}

static void test_trust_store_put_get_roundtrip(void **state)
{
    fx *f = *state;
    trust_store_meta m = meta(TRUST_STATE_FINALIZED, 100, 200, 5), got;
    assert_int_equal(trust_store_put(f->s, ID_A, &m, (const uint8_t *)"bytes-A", 7), 0);
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(trust_store_get(f->s, ID_A, &got, &b), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "bytes-A", 7);
    assert_int_equal(got.state, TRUST_STATE_FINALIZED);
    assert_int_equal(got.valid_until, 200);
    assert_int_equal(got.max_queries, 5);
    assert_string_equal(got.requester, FIRM);
    bg_buf_dispose(&b);
    assert_int_equal(trust_store_get(f->s, ID_B, &got, NULL), BG_ERR_NOTFOUND);
    assert_int_equal(trust_store_get(f->s, "short", &got, NULL), BG_ERR_NOTFOUND);
}

static void test_trust_store_put_idempotent_and_tamper(void **state)
{
    fx *f = *state;
    trust_store_meta m = meta(TRUST_STATE_FINALIZED, 0, 1000, 3), got;
    assert_int_equal(trust_store_put(f->s, ID_A, &m, (const uint8_t *)"same", 4), 0);
    assert_int_equal(trust_store_consume(f->s, ID_A, FIRM, 10, &got), 0);
    /* repeating the proposal: no error, and the counter is not reset */
    assert_int_equal(trust_store_put(f->s, ID_A, &m, (const uint8_t *)"same", 4), 0);
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.used, 1);
    /* other bytes under the same digest id: refused, nothing changed */
    assert_int_equal(trust_store_put(f->s, ID_A, &m, (const uint8_t *)"diff", 4), BG_ERR_EXISTS);
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(trust_store_get(f->s, ID_A, &got, &b), 0);
    assert_memory_equal(b.data, "same", 4);
    bg_buf_dispose(&b);
    /* malformed ids and requesters */
    assert_int_equal(trust_store_put(f->s, "AAAA", &m, NULL, 0), BG_ERR_INVAL);
    trust_store_meta anon = m;
    anon.requester[0] = 0;
    assert_int_equal(trust_store_put(f->s, ID_B, &anon, NULL, 0), BG_ERR_INVAL);
}

static void test_trust_store_consume_rules(void **state)
{
    fx *f = *state;
    trust_store_meta m = meta(TRUST_STATE_FINALIZED, 100, 200, 2), got;
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    assert_int_equal(trust_store_consume(f->s, ID_A, "spiffe://hongkong.gba/firm/x", 150, &got),
                     BG_ERR_IDENTITY);
    assert_int_equal(trust_store_consume(f->s, ID_A, FIRM, 99, &got), BG_ERR_CONTRACT_EXPIRED);
    assert_int_equal(trust_store_consume(f->s, ID_A, FIRM, 200, &got), BG_ERR_CONTRACT_EXPIRED);
    assert_int_equal(trust_store_consume(f->s, ID_A, FIRM, 150, &got), 0);
    assert_int_equal(got.used, 1);
    assert_int_equal(trust_store_consume(f->s, ID_A, FIRM, 150, &got), 0);
    assert_int_equal(got.used, 2);
    assert_int_equal(trust_store_consume(f->s, ID_A, FIRM, 150, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.used, 2); /* a refusal changes nothing */
    assert_int_equal(trust_store_consume(f->s, ID_B, FIRM, 150, &got), BG_ERR_NOTFOUND);

    trust_store_meta r = meta(TRUST_STATE_FINALIZED, 0, 1000, 0);
    assert_int_equal(trust_store_put(f->s, ID_B, &r, (const uint8_t *)"v1", 2), 0);
    for (int i = 0; i < 100; i++) { /* max_queries 0: no cap */
        assert_int_equal(trust_store_consume(f->s, ID_B, FIRM, 5, &got), 0);
    }
    assert_int_equal(trust_store_update(f->s, ID_B, TRUST_STATE_REVOKED, NULL, 0), 0);
    assert_int_equal(trust_store_consume(f->s, ID_B, FIRM, 5, &got), BG_ERR_CONTRACT_REVOKED);
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(trust_store_get(f->s, ID_B, &got, &b), 0);
    assert_int_equal(got.state, TRUST_STATE_REVOKED);
    assert_int_equal(got.used, 100);
    assert_memory_equal(b.data, "v1", 2); /* update without bytes keeps them */
    bg_buf_dispose(&b);
    assert_int_equal(trust_store_update(f->s, ID_B, TRUST_STATE_EXPIRED, (const uint8_t *)"v2",
                                        2),
                     0);
    assert_int_equal(trust_store_consume(f->s, ID_B, FIRM, 5, &got), BG_ERR_CONTRACT_EXPIRED);
}

static int count_cb(void *arg, const char *id)
{
    int *n = arg;
    assert_int_equal(strlen(id), TRUST_STORE_ID_LEN);
    (*n)++;
    return 0;
}

static void test_trust_store_list_by_requester(void **state)
{
    fx *f = *state;
    trust_store_meta m = meta(TRUST_STATE_AGREED, 0, 10, 0);
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    assert_int_equal(trust_store_put(f->s, ID_B, &m, NULL, 0), 0);
    trust_store_meta other = m;
    snprintf(other.requester, sizeof(other.requester), "spiffe://macau.gba/firm/y");
    char id_c[TRUST_STORE_ID_LEN + 1];
    memset(id_c, 'c', TRUST_STORE_ID_LEN);
    id_c[TRUST_STORE_ID_LEN] = 0;
    assert_int_equal(trust_store_put(f->s, id_c, &other, NULL, 0), 0);
    int n = 0;
    assert_int_equal(trust_store_list(f->s, FIRM, count_cb, &n), 0);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_equal(trust_store_list(f->s, "spiffe://macau.gba/firm/y", count_cb, &n), 0);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(trust_store_list(f->s, "spiffe://nobody.gba/firm/z", count_cb, &n), 0);
    assert_int_equal(n, 0);
}

static void test_trust_store_grows_and_persists(void **state)
{
    fx *f = *state;
    /* 1 MiB map; 600 contracts of 8 KiB need several growths */
    static uint8_t big[8192];
    memset(big, 'x', sizeof(big));
    char id[TRUST_STORE_ID_LEN + 1];
    trust_store_meta m = meta(TRUST_STATE_FINALIZED, 0, 100, 0), got;
    for (int i = 0; i < 600; i++) {
        snprintf(id, sizeof(id), "%064x", i);
        big[0] = (uint8_t)i;
        assert_int_equal(trust_store_put(f->s, id, &m, big, sizeof(big)), 0);
    }
    trust_store_close(f->s);
    bg_errbuf eb = {{0}};
    assert_int_equal(trust_store_open(&f->s, f->dir, 1 << 20, &eb), 0);
    snprintf(id, sizeof(id), "%064x", 599);
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(trust_store_get(f->s, id, &got, &b), 0);
    assert_int_equal(b.len, sizeof(big));
    assert_int_equal(b.data[0], (uint8_t)599);
    bg_buf_dispose(&b);
}

typedef struct racer {
    trust_store *s;
    int ok, exhausted, other;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < 16; i++) {
        int rv = trust_store_consume(r->s, ID_A, FIRM, 50, NULL);
        if (rv == 0) {
            r->ok++;
        } else if (rv == BG_ERR_BUDGET_EXHAUSTED) {
            r->exhausted++;
        } else {
            r->other++;
        }
    }
    return NULL;
}

static void test_trust_store_consume_concurrent_exact_budget(void **state)
{
    fx *f = *state;
    trust_store_meta m = meta(TRUST_STATE_FINALIZED, 0, 100, 50);
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    pthread_t th[4];
    racer r[4];
    for (int i = 0; i < 4; i++) { /* 64 attempts against a budget of 50 */
        r[i] = (racer){f->s, 0, 0, 0};
        pthread_create(&th[i], NULL, race, &r[i]);
    }
    int ok = 0, ex = 0, other = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += r[i].ok;
        ex += r[i].exhausted;
        other += r[i].other;
    }
    assert_int_equal(ok, 50);
    assert_int_equal(ex, 14);
    assert_int_equal(other, 0);
}

static void test_trust_store_consume_batch_in_order(void **state)
{
    fx *f = *state;
    trust_store_meta m = meta(TRUST_STATE_FINALIZED, 0, 100, 7);
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    trust_store_consume_req reqs[12];
    for (int i = 0; i < 12; i++) {
        reqs[i] = (trust_store_consume_req){.id = ID_A, .requester = FIRM, .result = 99};
    }
    reqs[3].id = ID_B;                              /* unknown: refused alone */
    reqs[5].requester = "spiffe://macau.gba/firm/x"; /* someone else's: refused alone */
    assert_int_equal(trust_store_consume_batch(f->s, reqs, 12, 50), 0);
    int ok = 0, spent = 0;
    for (int i = 0; i < 12; i++) {
        if (reqs[i].result == 0) {
            ok++;
            assert_int_equal(reqs[i].meta.used, ok); /* in order */
        } else if (reqs[i].result == BG_ERR_BUDGET_EXHAUSTED) {
            spent++;
        }
    }
    assert_int_equal(reqs[3].result, BG_ERR_NOTFOUND);
    assert_int_equal(reqs[5].result, BG_ERR_IDENTITY);
    assert_int_equal(ok, 7);
    assert_int_equal(spent, 3);
    trust_store_meta got;
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.used, 7);
    /* expired for the whole batch */
    assert_int_equal(trust_store_consume_batch(f->s, reqs, 1, 100), 0);
    assert_int_equal(reqs[0].result, BG_ERR_CONTRACT_EXPIRED);
}

static void test_trust_store_proposal_alias(void **state)
{
    fx *f = *state;
    char id[TRUST_STORE_ID_LEN + 1];
    assert_int_equal(trust_store_proposal_get(f->s, ID_A, id), BG_ERR_NOTFOUND);
    assert_int_equal(trust_store_proposal_put(f->s, ID_A, ID_B), 0);
    assert_int_equal(trust_store_proposal_get(f->s, ID_A, id), 0);
    assert_string_equal(id, ID_B);
    assert_int_equal(trust_store_proposal_put(f->s, ID_A, ID_A), 0); /* replaced */
    assert_int_equal(trust_store_proposal_get(f->s, ID_A, id), 0);
    assert_string_equal(id, ID_A);
    assert_int_equal(trust_store_proposal_put(f->s, "nothex", ID_A), BG_ERR_INVAL);
}

/* ---- differential-privacy budget ---- */

static trust_store_meta dp_meta(uint32_t maxq, uint64_t eps_total)
{
    trust_store_meta m = meta(TRUST_STATE_FINALIZED, 0, 1000, maxq);
    m.eps_total_micro = eps_total;
    return m;
}

/* One request through the batch path (the one that spends epsilon). */
static int spend(trust_store *s, const char *id, uint64_t eps, const uint8_t *digest,
                 trust_store_meta *out)
{
    trust_store_consume_req r = {
        .id = id, .requester = FIRM, .eps_micro = eps, .digest = digest};
    if (trust_store_consume_batch(s, &r, 1, 50) != 0) {
        return -9999;
    }
    if (out != NULL) {
        *out = r.meta;
    }
    return r.result;
}

static void test_trust_store_eps_micro_conversion(void **state)
{
    (void)state;
    uint64_t u = 7;
    assert_int_equal(trust_store_eps_micro(0.0, &u), 0);
    assert_int_equal(u, 0);
    assert_int_equal(trust_store_eps_micro(0.1, &u), 0);
    assert_int_equal(u, 100000);
    assert_int_equal(trust_store_eps_micro(1.0, &u), 0);
    assert_int_equal(u, 1000000);
    assert_int_equal(trust_store_eps_micro(0.3, &u), 0); /* 0.3 * 1e6 is not exact in double */
    assert_int_equal(u, 300000);
    assert_int_equal(trust_store_eps_micro(1e-7, &u), 0); /* below resolution: rounds to 0 */
    assert_int_equal(u, 0);
    u = 7;
    assert_int_equal(trust_store_eps_micro(-0.1, &u), BG_ERR_RANGE);
    assert_int_equal(trust_store_eps_micro(NAN, &u), BG_ERR_RANGE);
    assert_int_equal(trust_store_eps_micro(INFINITY, &u), BG_ERR_RANGE);
    assert_int_equal(trust_store_eps_micro(1e13, &u), BG_ERR_RANGE);
    assert_int_equal(u, 7); /* untouched on failure */
}

static void test_trust_store_eps_exact_accounting(void **state)
{
    fx *f = *state;
    uint64_t total;
    assert_int_equal(trust_store_eps_micro(1.0, &total), 0);
    trust_store_meta m = dp_meta(0, total), got;
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.eps_total_micro, 1000000);
    assert_int_equal(got.eps_spent_micro, 0);
    /* 3010 spends of 333 micro-epsilon in one batch: exactly 3003 fit, remainder 1 */
    enum { N = 3010 };
    trust_store_consume_req *reqs = calloc(N, sizeof(*reqs));
    assert_non_null(reqs);
    for (size_t i = 0; i < N; i++) {
        reqs[i] = (trust_store_consume_req){.id = ID_A, .requester = FIRM, .eps_micro = 333};
    }
    assert_int_equal(trust_store_consume_batch(f->s, reqs, N, 50), 0);
    for (size_t i = 0; i < N; i++) {
        if (i < 3003) {
            assert_int_equal(reqs[i].result, 0);
            assert_int_equal(reqs[i].meta.eps_spent_micro, 333 * (i + 1));
            assert_int_equal(reqs[i].meta.used, i + 1);
        } else {
            assert_int_equal(reqs[i].result, BG_ERR_BUDGET_EXHAUSTED);
        }
    }
    free(reqs);
    assert_int_equal(spend(f->s, ID_A, 2, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(spend(f->s, ID_A, 1, NULL, &got), 0); /* the last micro-epsilon */
    assert_int_equal(got.eps_spent_micro, 1000000);
    assert_int_equal(spend(f->s, ID_A, 1, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(spend(f->s, ID_A, 0, NULL, &got), 0); /* no DP spend: only counted */
    assert_int_equal(trust_store_consume(f->s, ID_A, FIRM, 50, &got), 0);
    assert_int_equal(got.used, 3006);
    assert_int_equal(got.eps_spent_micro, 1000000);

    /* ten spends of 0.1 use up 1.0 exactly (a double sum would not) */
    trust_store_meta b = dp_meta(0, total);
    assert_int_equal(trust_store_put(f->s, ID_B, &b, NULL, 0), 0);
    uint64_t tenth;
    assert_int_equal(trust_store_eps_micro(0.1, &tenth), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(spend(f->s, ID_B, tenth, NULL, &got), 0);
    }
    assert_int_equal(got.eps_spent_micro, got.eps_total_micro);
    assert_int_equal(spend(f->s, ID_B, tenth, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
}

static void test_trust_store_eps_refused_when_remainder_small(void **state)
{
    fx *f = *state;
    trust_store_meta m = dp_meta(0, 1000), got;
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    assert_int_equal(spend(f->s, ID_A, 600, NULL, &got), 0);
    assert_int_equal(spend(f->s, ID_A, 401, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(spend(f->s, ID_A, UINT64_MAX, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.used, 1); /* refusals change neither counter */
    assert_int_equal(got.eps_spent_micro, 600);
    assert_int_equal(spend(f->s, ID_A, 400, NULL, &got), 0);
    assert_int_equal(got.eps_spent_micro, 1000);

    /* a contract without a budget refuses every DP spend but still admits plain queries */
    trust_store_meta nob = dp_meta(0, 0);
    assert_int_equal(trust_store_put(f->s, ID_B, &nob, NULL, 0), 0);
    assert_int_equal(spend(f->s, ID_B, 1, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(spend(f->s, ID_B, 0, NULL, &got), 0);

    /* the query cap still applies with epsilon left, and usage control comes first */
    char id_c[TRUST_STORE_ID_LEN + 1];
    memset(id_c, 'c', TRUST_STORE_ID_LEN);
    id_c[TRUST_STORE_ID_LEN] = 0;
    trust_store_meta capped = dp_meta(2, 1000);
    assert_int_equal(trust_store_put(f->s, id_c, &capped, NULL, 0), 0);
    assert_int_equal(spend(f->s, id_c, 10, NULL, &got), 0);
    assert_int_equal(spend(f->s, id_c, 10, NULL, &got), 0);
    assert_int_equal(spend(f->s, id_c, 10, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(trust_store_get(f->s, id_c, &got, NULL), 0);
    assert_int_equal(got.eps_spent_micro, 20);
    trust_store_consume_req r = {.id = id_c, .requester = "spiffe://macau.gba/firm/x",
                                 .eps_micro = 1};
    assert_int_equal(trust_store_consume_batch(f->s, &r, 1, 50), 0);
    assert_int_equal(r.result, BG_ERR_IDENTITY);

    /* a meta claiming more spent than the total is refused */
    trust_store_meta bad = dp_meta(0, 10);
    bad.eps_spent_micro = 11;
    char id_d[TRUST_STORE_ID_LEN + 1];
    memset(id_d, 'd', TRUST_STORE_ID_LEN);
    id_d[TRUST_STORE_ID_LEN] = 0;
    assert_int_equal(trust_store_put(f->s, id_d, &bad, NULL, 0), BG_ERR_INVAL);
}

typedef struct eps_racer {
    trust_store *s;
    int ok, exhausted, other;
} eps_racer;

static void *race_eps(void *arg)
{
    eps_racer *r = arg;
    for (int i = 0; i < 8; i++) { /* batches of two: 16 spends per thread */
        trust_store_consume_req reqs[2] = {
            {.id = ID_A, .requester = FIRM, .eps_micro = 30000},
            {.id = ID_A, .requester = FIRM, .eps_micro = 30000},
        };
        if (trust_store_consume_batch(r->s, reqs, 2, 50) != 0) {
            r->other += 2;
            continue;
        }
        for (int j = 0; j < 2; j++) {
            if (reqs[j].result == 0) {
                r->ok++;
            } else if (reqs[j].result == BG_ERR_BUDGET_EXHAUSTED) {
                r->exhausted++;
            } else {
                r->other++;
            }
        }
    }
    return NULL;
}

static void test_trust_store_eps_concurrent_never_overspends(void **state)
{
    fx *f = *state;
    trust_store_meta m = dp_meta(0, 1000000), got; /* 1.0: room for 33 spends of 0.03 */
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    pthread_t th[4];
    eps_racer r[4];
    for (int i = 0; i < 4; i++) { /* 64 attempts */
        r[i] = (eps_racer){f->s, 0, 0, 0};
        pthread_create(&th[i], NULL, race_eps, &r[i]);
    }
    int ok = 0, ex = 0, other = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += r[i].ok;
        ex += r[i].exhausted;
        other += r[i].other;
    }
    assert_int_equal(ok, 33);
    assert_int_equal(ex, 31);
    assert_int_equal(other, 0);
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.eps_spent_micro, 990000);
    assert_int_equal(got.used, 33);
}

/* ---- noise cache ---- */

static const uint8_t DIG1[TRUST_STORE_DIGEST_LEN] = {1, 2, 3};
static const uint8_t DIG2[TRUST_STORE_DIGEST_LEN] = {9, 9, 9};

static void assert_noise(trust_store *s, const char *id, const uint8_t *dig, const char *want)
{
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(trust_store_noise_get(s, id, dig, &b), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    bg_buf_dispose(&b);
}

static void test_trust_store_noise_first_writer_wins(void **state)
{
    fx *f = *state;
    trust_store_meta m = dp_meta(0, 1000);
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(trust_store_noise_get(f->s, ID_A, DIG1, &b), BG_ERR_NOTFOUND);
    assert_int_equal(trust_store_noise_put(f->s, ID_A, DIG1, (const uint8_t *)"41", 2), 0);
    assert_int_equal(trust_store_noise_put(f->s, ID_A, DIG1, (const uint8_t *)"44", 2),
                     BG_ERR_EXISTS);
    assert_int_equal(trust_store_noise_put(f->s, ID_A, DIG1, (const uint8_t *)"41", 2),
                     BG_ERR_EXISTS); /* even the same bytes: the caller reads, never assumes */
    assert_noise(f->s, ID_A, DIG1, "41");
    /* keyed by (contract, digest) */
    assert_int_equal(trust_store_noise_get(f->s, ID_A, DIG2, &b), BG_ERR_NOTFOUND);
    assert_int_equal(trust_store_noise_put(f->s, ID_A, DIG2, NULL, 0), 0); /* empty is fine */
    assert_noise(f->s, ID_A, DIG2, "");
    assert_int_equal(trust_store_noise_put(f->s, ID_B, DIG1, (const uint8_t *)"7", 1),
                     BG_ERR_NOTFOUND); /* no such contract */
    trust_store_meta mb = dp_meta(0, 1000);
    assert_int_equal(trust_store_put(f->s, ID_B, &mb, NULL, 0), 0);
    assert_int_equal(trust_store_noise_put(f->s, ID_B, DIG1, (const uint8_t *)"7", 1), 0);
    assert_noise(f->s, ID_B, DIG1, "7");
    assert_noise(f->s, ID_A, DIG1, "41");
    /* malformed input */
    assert_int_equal(trust_store_noise_put(f->s, "nothex", DIG1, (const uint8_t *)"1", 1),
                     BG_ERR_INVAL);
    assert_int_equal(trust_store_noise_get(f->s, "nothex", DIG1, &b), BG_ERR_NOTFOUND);
    assert_int_equal(trust_store_noise_put(f->s, ID_A, DIG1, NULL, 3), BG_ERR_INVAL);
    /* the size bound is checked before a byte is read */
    static const uint8_t one[1] = {0};
    assert_int_equal(trust_store_noise_put(f->s, ID_B, DIG2, one, TRUST_STORE_NOISE_MAX + 1u),
                     BG_ERR_TOO_LARGE);
    assert_int_equal(trust_store_noise_get(f->s, ID_B, DIG2, &b), BG_ERR_NOTFOUND);
    assert_int_equal(b.len, 0); /* nothing appended on failure */
    bg_buf_dispose(&b);
}

static void test_trust_store_noise_cached_replay_spends_nothing(void **state)
{
    fx *f = *state;
    trust_store_meta m = dp_meta(3, 1000), got;
    m.valid_until = 100;
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    /* first time: spends, then the caller caches its draw */
    assert_int_equal(spend(f->s, ID_A, 400, DIG1, &got), 0);
    assert_int_equal(got.eps_spent_micro, 400);
    assert_int_equal(trust_store_noise_put(f->s, ID_A, DIG1, (const uint8_t *)"c=12", 4), 0);
    /* replays: cached, nothing spent, not even past the caps */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(spend(f->s, ID_A, 400, DIG1, &got), TRUST_STORE_CACHED);
        assert_int_equal(got.eps_spent_micro, 400);
        assert_int_equal(got.used, 1);
    }
    assert_int_equal(spend(f->s, ID_A, 400, DIG2, &got), 0); /* another query spends */
    assert_int_equal(spend(f->s, ID_A, 400, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(spend(f->s, ID_A, 400, DIG1, &got), TRUST_STORE_CACHED);
    assert_int_equal(got.eps_spent_micro, 800);
    assert_noise(f->s, ID_A, DIG1, "c=12");

    /* the answer given with the request is cached atomically with the spend, and a later
     * identical request in the same batch is already a replay */
    trust_store_consume_req reqs[5];
    uint8_t dig3[TRUST_STORE_DIGEST_LEN] = {3};
    reqs[0] = (trust_store_consume_req){.id = ID_A, .requester = FIRM, .eps_micro = 100,
                                        .digest = dig3, .answer = (const uint8_t *)"n=5",
                                        .answer_len = 3};
    reqs[1] = reqs[0];
    reqs[1].answer = (const uint8_t *)"n=9"; /* a second draw: never stored */
    reqs[2] = (trust_store_consume_req){.id = ID_A, .requester = FIRM, .eps_micro = 1,
                                        .answer = (const uint8_t *)"x", .answer_len = 1};
    reqs[3] = reqs[0];
    reqs[3].digest = (const uint8_t[TRUST_STORE_DIGEST_LEN]){4};
    reqs[3].answer_len = TRUST_STORE_NOISE_MAX + 1u;
    reqs[4] = reqs[0];
    reqs[4].requester = "spiffe://macau.gba/firm/x"; /* replays obey usage control too */
    assert_int_equal(trust_store_consume_batch(f->s, reqs, 5, 50), 0);
    assert_int_equal(reqs[0].result, 0);
    assert_int_equal(reqs[0].meta.eps_spent_micro, 900);
    assert_int_equal(reqs[1].result, TRUST_STORE_CACHED);
    assert_int_equal(reqs[1].meta.eps_spent_micro, 900);
    assert_int_equal(reqs[2].result, BG_ERR_INVAL);     /* answer without digest */
    assert_int_equal(reqs[3].result, BG_ERR_TOO_LARGE); /* nothing spent */
    assert_int_equal(reqs[4].result, BG_ERR_IDENTITY);
    assert_noise(f->s, ID_A, dig3, "n=5");
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.eps_spent_micro, 900);
    assert_int_equal(got.used, 3);

    /* a revoked or expired contract answers no replay */
    assert_int_equal(spend(f->s, ID_A, 0, DIG1, &got), TRUST_STORE_CACHED);
    trust_store_consume_req late = {.id = ID_A, .requester = FIRM, .digest = DIG1};
    assert_int_equal(trust_store_consume_batch(f->s, &late, 1, 100), 0);
    assert_int_equal(late.result, BG_ERR_CONTRACT_EXPIRED);
    assert_int_equal(trust_store_update(f->s, ID_A, TRUST_STATE_REVOKED, NULL, 0), 0);
    assert_int_equal(spend(f->s, ID_A, 0, DIG1, &got), BG_ERR_CONTRACT_REVOKED);
    assert_noise(f->s, ID_A, DIG1, "c=12"); /* kept by update */
}

typedef struct noise_racer {
    trust_store *s;
    int idx;
    int spent, cached, other;
    char published[16];
} noise_racer;

/* Each thread runs the identical query the way the gateway would: consume with the digest;
 * on 0 draw its own "noise" and put it; then publish whatever the cache holds. */
static void *race_noise(void *arg)
{
    noise_racer *r = arg;
    trust_store_consume_req q = {.id = ID_A, .requester = FIRM, .eps_micro = 100, .digest = DIG1};
    if (trust_store_consume_batch(r->s, &q, 1, 50) != 0) {
        r->other++;
        return NULL;
    }
    if (q.result == 0) {
        char draw[16];
        int n = snprintf(draw, sizeof(draw), "draw-%d", r->idx);
        int rv = trust_store_noise_put(r->s, ID_A, DIG1, (const uint8_t *)draw, (size_t)n);
        if (rv != 0 && rv != BG_ERR_EXISTS) {
            r->other++;
        }
        r->spent++;
    } else if (q.result == TRUST_STORE_CACHED) {
        r->cached++;
    } else {
        r->other++;
        return NULL;
    }
    bg_buf b;
    bg_buf_init(&b);
    if (trust_store_noise_get(r->s, ID_A, DIG1, &b) == 0 && b.len < sizeof(r->published)) {
        memcpy(r->published, b.data, b.len);
        r->published[b.len] = 0;
    } else {
        r->other++;
    }
    bg_buf_dispose(&b);
    return NULL;
}

static void test_trust_store_noise_concurrent_identical_queries_converge(void **state)
{
    fx *f = *state;
    trust_store_meta m = dp_meta(0, 100000), got;
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    enum { T = 8 };
    pthread_t th[T];
    noise_racer r[T];
    for (int i = 0; i < T; i++) {
        r[i] = (noise_racer){.s = f->s, .idx = i};
        pthread_create(&th[i], NULL, race_noise, &r[i]);
    }
    int spent = 0, cached = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].other, 0);
        spent += r[i].spent;
        cached += r[i].cached;
    }
    assert_int_equal(spent + cached, T);
    assert_true(spent >= 1);
    for (int i = 1; i < T; i++) { /* one published answer, whoever drew first */
        assert_string_equal(r[i].published, r[0].published);
    }
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.eps_spent_micro, 100u * (unsigned)spent); /* racers may both pay */
    assert_int_equal(spend(f->s, ID_A, 100, DIG1, &got), TRUST_STORE_CACHED);
}

static void test_trust_store_eps_and_noise_persist(void **state)
{
    fx *f = *state;
    trust_store_meta m = dp_meta(0, 5000), got;
    assert_int_equal(trust_store_put(f->s, ID_A, &m, (const uint8_t *)"k", 1), 0);
    assert_int_equal(spend(f->s, ID_A, 1234, DIG1, &got), 0);
    assert_int_equal(trust_store_noise_put(f->s, ID_A, DIG1, (const uint8_t *)"ans", 3), 0);
    trust_store_close(f->s);
    bg_errbuf eb = {{0}};
    assert_int_equal(trust_store_open(&f->s, f->dir, 1 << 20, &eb), 0);
    assert_int_equal(trust_store_get(f->s, ID_A, &got, NULL), 0);
    assert_int_equal(got.eps_total_micro, 5000);
    assert_int_equal(got.eps_spent_micro, 1234);
    assert_int_equal(got.used, 1);
    assert_noise(f->s, ID_A, DIG1, "ans");
    assert_int_equal(spend(f->s, ID_A, 1234, DIG1, &got), TRUST_STORE_CACHED);
    assert_int_equal(trust_store_noise_put(f->s, ID_A, DIG1, (const uint8_t *)"new", 3),
                     BG_ERR_EXISTS);
    assert_int_equal(spend(f->s, ID_A, 3767, NULL, &got), BG_ERR_BUDGET_EXHAUSTED);
    assert_int_equal(spend(f->s, ID_A, 3766, NULL, &got), 0);
    assert_int_equal(got.eps_spent_micro, 5000);
}

/* Writes an LMDB environment in |dir| the way an older baygate did: a "contracts" database
 * holding |nrec| format-1 records, and a "store_info" version only when |version| is not 0. */
static void write_old_store(const char *dir, int nrec, uint32_t version)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "contracts", MDB_CREATE, &dbi), 0);
    for (int i = 0; i < nrec; i++) {
        uint8_t rec[40 + sizeof(FIRM) - 1] = {0};
        uint32_t magic = 0x42474331u, rl = sizeof(FIRM) - 1; /* "BGC1" */
        memcpy(rec, &magic, 4);
        memcpy(rec + 32, &rl, 4);
        memcpy(rec + 40, FIRM, rl);
        MDB_val k = {TRUST_STORE_ID_LEN, (void *)(uintptr_t)ID_A}, v = {sizeof(rec), rec};
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    if (version != 0) {
        assert_int_equal(mdb_dbi_open(txn, "store_info", MDB_CREATE, &dbi), 0);
        MDB_val k = {7, (void *)(uintptr_t)"version"}, v = {sizeof(version), &version};
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_trust_store_open_refuses_other_versions(void **state)
{
    fx *f = *state; /* reuses the fixture's directory after closing its store */
    trust_store_close(f->s);
    f->s = NULL;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -f %s/data.mdb %s/lock.mdb", f->dir, f->dir);
    assert_int_equal(system(cmd), 0);

    /* format 1 (no version record, contracts present): refused, and says why */
    write_old_store(f->dir, 1, 0);
    trust_store *s = NULL;
    bg_errbuf eb = {{0}};
    assert_int_equal(trust_store_open(&s, f->dir, 0, &eb), BG_ERR_STORE);
    assert_null(s);
    assert_non_null(strstr(eb.msg, f->dir));
    assert_non_null(strstr(eb.msg, "version 1 is older"));
    assert_non_null(strstr(eb.msg, "cannot be migrated"));
    /* the refusal wrote nothing: still refused the same way */
    memset(&eb, 0, sizeof(eb));
    assert_int_equal(trust_store_open(&s, f->dir, 0, &eb), BG_ERR_STORE);
    assert_non_null(strstr(eb.msg, "version 1 is older"));

    /* a newer format is refused too */
    assert_int_equal(system(cmd), 0);
    write_old_store(f->dir, 0, TRUST_STORE_VERSION + 1);
    memset(&eb, 0, sizeof(eb));
    assert_int_equal(trust_store_open(&s, f->dir, 0, &eb), BG_ERR_STORE);
    assert_non_null(strstr(eb.msg, "is newer"));

    /* an old store that never held a contract is simply adopted */
    assert_int_equal(system(cmd), 0);
    write_old_store(f->dir, 0, 0);
    assert_int_equal(trust_store_open(&f->s, f->dir, 0, &eb), 0);
    trust_store_meta m = dp_meta(0, 10);
    assert_int_equal(trust_store_put(f->s, ID_A, &m, NULL, 0), 0);
    trust_store_close(f->s);
    assert_int_equal(trust_store_open(&f->s, f->dir, 0, &eb), 0); /* stamped: reopens */
}

static void test_trust_store_open_bad_dir(void **state)
{
    (void)state;
    trust_store *s = NULL;
    bg_errbuf eb = {{0}};
    assert_int_equal(trust_store_open(&s, "/proc/no/such/dir", 0, &eb), BG_ERR_STORE);
    assert_null(s);
    assert_non_null(strstr(eb.msg, "/proc/no/such/dir"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trust_store_put_get_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_put_idempotent_and_tamper, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_consume_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_list_by_requester, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_grows_and_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_consume_concurrent_exact_budget, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_consume_batch_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_proposal_alias, setup, teardown),
        cmocka_unit_test(test_trust_store_eps_micro_conversion),
        cmocka_unit_test_setup_teardown(test_trust_store_eps_exact_accounting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_eps_refused_when_remainder_small, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_eps_concurrent_never_overspends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_noise_first_writer_wins, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_noise_cached_replay_spends_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_trust_store_noise_concurrent_identical_queries_converge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_eps_and_noise_persist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_store_open_refuses_other_versions, setup,
                                        teardown),
        cmocka_unit_test(test_trust_store_open_bad_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
