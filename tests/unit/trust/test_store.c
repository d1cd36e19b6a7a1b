/* tests/unit/trust/test_store.c: the LMDB contract store on real LMDB files in a mkdtemp()
 * directory: idempotent puts, tamper refusal, usage control, the requester index, map growth,
 * persistence across reopen, and concurrent consumers never overspending a budget. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
        cmocka_unit_test(test_trust_store_open_bad_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
