/* tests/unit/gateway/test_limits.c: gateway/limits.c on a bare gw_server (no worker, no loop),
 * with time passed in: token buckets (refill, cap, Retry-After rounding), in-flight counts,
 * per-address applications, bounded tables with eviction, limits turned off, and threads
 * sharing one firm's count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gw_int.h"

typedef struct fixture {
    conf_gateway cfg;
    gw_server srv;
} fixture;

static fixture *fixture_new(uint32_t rps, uint32_t burst, uint32_t streams, uint32_t apply)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->cfg.limits.firm_rps = rps;
    f->cfg.limits.firm_burst = burst;
    f->cfg.limits.firm_max_streams = streams;
    f->cfg.limits.apply_per_minute = apply;
    f->srv.cfg = &f->cfg;
    return f;
}

static void fixture_free(fixture *f)
{
    gw_limits_dispose(&f->srv);
    gw_limits_dispose(&f->srv); /* twice: a no-op */
    free(f);
}

#define A "spiffe://guangzhou.gba/firm/a"
#define B "spiffe://guangzhou.gba/firm/b"
#define T0 1000000000ULL /* an arbitrary start, in us */

/* Admits one request of |id| at |now| and gives its place back at once. */
static gw_limit_kind once(fixture *f, const char *id, uint64_t now, uint32_t *retry)
{
    gw_limit_slot *slot = NULL;
    gw_limit_kind k = gw_limits_firm_admit(&f->srv, id, now, &slot, retry);
    if (k == GW_LIMIT_OK) {
        gw_limits_firm_release(&f->srv, slot);
    } else {
        assert_null(slot);
    }
    return k;
}

static void test_gw_limits_firm_admit_bucket(void **state)
{
    (void)state;
    fixture *f = fixture_new(10, 5, 0, 0);
    uint32_t retry = 0;
    for (int i = 0; i < 5; i++) { /* the burst */
        assert_int_equal(once(f, A, T0, &retry), GW_LIMIT_OK);
    }
    assert_int_equal(once(f, A, T0, &retry), GW_LIMIT_FIRM_RATE);
    assert_int_equal(retry, 1); /* 0.1 s, rounded up */
    assert_int_equal(once(f, B, T0, &retry), GW_LIMIT_OK); /* another firm: its own bucket */
    assert_int_equal(once(f, A, T0 + 99999, &retry), GW_LIMIT_FIRM_RATE);
    assert_int_equal(once(f, A, T0 + 100000, &retry), GW_LIMIT_OK); /* one token in 100 ms */
    assert_int_equal(once(f, A, T0 + 100000, &retry), GW_LIMIT_FIRM_RATE);
    /* idle for a long time: full again, never more than the burst */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(once(f, A, T0 + 3600000000ULL, &retry), GW_LIMIT_OK);
    }
    assert_int_equal(once(f, A, T0 + 3600000000ULL, &retry), GW_LIMIT_FIRM_RATE);
    /* time going backwards (another thread's older clock reading) adds nothing */
    assert_int_equal(once(f, A, T0, &retry), GW_LIMIT_FIRM_RATE);
    fixture_free(f);
}

/* Over a long run the admitted count is rate * duration + burst, with no drift from rounding:
 * requests every 7 us against 3 a second. */
static void test_gw_limits_firm_admit_exact_rate(void **state)
{
    (void)state;
    fixture *f = fixture_new(3, 2, 0, 0);
    uint32_t retry;
    unsigned ok = 0;
    for (uint64_t t = 0; t < 10000000 + 7; t += 7) { /* last: 10.000004 s */
        ok += once(f, A, T0 + t, &retry) == GW_LIMIT_OK;
    }
    assert_int_equal(ok, 2 + 3 * 10);
    fixture_free(f);
}

static void test_gw_limits_firm_admit_retry_after_rounds_up(void **state)
{
    (void)state;
    fixture *f = fixture_new(1, 1, 0, 0);
    uint32_t retry = 0;
    assert_int_equal(once(f, A, T0, &retry), GW_LIMIT_OK);
    assert_int_equal(once(f, A, T0 + 1, &retry), GW_LIMIT_FIRM_RATE);
    assert_int_equal(retry, 1);
    assert_int_equal(once(f, A, T0 + 999999, &retry), GW_LIMIT_FIRM_RATE);
    assert_int_equal(retry, 1);
    assert_int_equal(once(f, A, T0 + 1000000, &retry), GW_LIMIT_OK);
    fixture_free(f);

    f = fixture_new(0, 1, 0, 2); /* applications: 2 a minute */
    assert_int_equal(gw_limits_apply_admit(&f->srv, "10.0.0.1:5000", T0, &retry), GW_LIMIT_OK);
    assert_int_equal(gw_limits_apply_admit(&f->srv, "10.0.0.1:5001", T0, &retry), GW_LIMIT_OK);
    assert_int_equal(gw_limits_apply_admit(&f->srv, "10.0.0.1:5002", T0 + 500000, &retry),
                     GW_LIMIT_APPLY);
    assert_int_equal(retry, 30); /* 29.5 s, rounded up */
    assert_int_equal(gw_limits_apply_admit(&f->srv, "10.0.0.2:5000", T0, &retry), GW_LIMIT_OK);
    assert_int_equal(gw_limits_apply_admit(&f->srv, "[::1]:80", T0, &retry), GW_LIMIT_OK);
    assert_int_equal(gw_limits_apply_admit(&f->srv, "10.0.0.1:1", T0 + 30000000, &retry),
                     GW_LIMIT_OK);
    fixture_free(f);
}

static void test_gw_limits_firm_admit_streams(void **state)
{
    (void)state;
    fixture *f = fixture_new(0, 1, 2, 0);
    gw_limit_slot *s1 = NULL, *s2 = NULL, *s3 = NULL;
    uint32_t retry = 0;
    assert_int_equal(gw_limits_firm_admit(&f->srv, A, T0, &s1, &retry), GW_LIMIT_OK);
    assert_int_equal(gw_limits_firm_admit(&f->srv, A, T0, &s2, &retry), GW_LIMIT_OK);
    assert_non_null(s1);
    assert_int_equal(gw_limits_firm_inflight(&f->srv, A), 2);
    assert_int_equal(gw_limits_firm_admit(&f->srv, A, T0, &s3, &retry), GW_LIMIT_FIRM_STREAMS);
    assert_null(s3);
    assert_int_equal(retry, 1);
    assert_int_equal(gw_limits_firm_admit(&f->srv, B, T0, &s3, &retry), GW_LIMIT_OK);
    gw_limits_firm_release(&f->srv, s3);
    gw_limits_firm_release(&f->srv, s1);
    assert_int_equal(gw_limits_firm_inflight(&f->srv, A), 1);
    assert_int_equal(gw_limits_firm_admit(&f->srv, A, T0, &s1, &retry), GW_LIMIT_OK);
    gw_limits_firm_release(&f->srv, s1);
    gw_limits_firm_release(&f->srv, s2);
    gw_limits_firm_release(&f->srv, NULL);
    assert_int_equal(gw_limits_firm_inflight(&f->srv, A), 0);
    assert_int_equal(gw_limits_firm_inflight(&f->srv, "spiffe://x.gba/firm/never"), 0);
    fixture_free(f);
}

static void test_gw_limits_off(void **state)
{
    (void)state;
    fixture *f = fixture_new(0, 1, 0, 0);
    gw_limit_slot *slot = (gw_limit_slot *)&slot;
    uint32_t retry = 0;
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(gw_limits_firm_admit(&f->srv, A, T0, &slot, &retry), GW_LIMIT_OK);
        assert_null(slot); /* nothing counted */
        assert_int_equal(gw_limits_apply_admit(&f->srv, "1.2.3.4:5", T0, &retry), GW_LIMIT_OK);
    }
    assert_null(atomic_load(&f->srv.limits)); /* no table was even made */
    fixture_free(f);
}

/* More identities than the table holds: still bounded and working; one holding a request in
 * flight is never evicted, so its count survives the churn. */
static void test_gw_limits_firm_admit_eviction(void **state)
{
    (void)state;
    fixture *f = fixture_new(1, 1, 1, 0);
    gw_limit_slot *held = NULL;
    uint32_t retry;
    assert_int_equal(gw_limits_firm_admit(&f->srv, A, T0, &held, &retry), GW_LIMIT_OK);
    char id[64];
    for (uint64_t i = 0; i < 3 * 4096; i++) {
        snprintf(id, sizeof(id), "spiffe://guangzhou.gba/firm/f%llu", (unsigned long long)i);
        gw_limit_kind k = once(f, id, T0 + 1 + i, &retry);
        assert_int_equal(k, GW_LIMIT_OK);
    }
    assert_int_equal(gw_limits_firm_inflight(&f->srv, A), 1);
    assert_int_equal(once(f, A, T0 + 20000, &retry), GW_LIMIT_FIRM_STREAMS);
    gw_limits_firm_release(&f->srv, held);
    /* a recent identity kept its (empty) bucket */
    snprintf(id, sizeof(id), "spiffe://guangzhou.gba/firm/f%d", 3 * 4096 - 1);
    assert_int_equal(once(f, id, T0 + 20000, &retry), GW_LIMIT_FIRM_RATE);
    fixture_free(f);
}

typedef struct worker_arg {
    fixture *f;
    unsigned admitted;
} worker_arg;

static void *hammer(void *p)
{
    worker_arg *a = p;
    uint32_t retry;
    for (int i = 0; i < 20000; i++) {
        gw_limit_slot *slot = NULL;
        if (gw_limits_firm_admit(&a->f->srv, A, T0, &slot, &retry) == GW_LIMIT_OK) {
            a->admitted++;
            gw_limits_firm_release(&a->f->srv, slot);
        }
    }
    return NULL;
}

/* Threads share one firm's bucket (a fixed clock: exactly the burst gets through) and count. */
static void test_gw_limits_threads(void **state)
{
    (void)state;
    fixture *f = fixture_new(1, 1000, 4, 0);
    pthread_t th[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].f = f;
        args[i].admitted = 0;
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    unsigned total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += args[i].admitted;
    }
    assert_int_equal(total, 1000);
    assert_int_equal(gw_limits_firm_inflight(&f->srv, A), 0);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gw_limits_firm_admit_bucket),
        cmocka_unit_test(test_gw_limits_firm_admit_exact_rate),
        cmocka_unit_test(test_gw_limits_firm_admit_retry_after_rounds_up),
        cmocka_unit_test(test_gw_limits_firm_admit_streams),
        cmocka_unit_test(test_gw_limits_off),
        cmocka_unit_test(test_gw_limits_firm_admit_eviction),
        cmocka_unit_test(test_gw_limits_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
