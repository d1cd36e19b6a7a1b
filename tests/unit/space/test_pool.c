/* tests/unit/space/test_pool.c: the executor thread pool: bounds, every accepted job runs on a
 * pool thread, a full queue refuses, and free drains the queue and then refuses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "base/err.h"
#include "space/pool.h"

static void nap(void)
{
    struct timespec ts = {0, 200000}; /* 0.2 ms */
    nanosleep(&ts, NULL);
}

/* ---- shared job state ---- */

typedef struct tally {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t ran;
    size_t on_main; /* jobs that ran on the submitting thread: must stay 0 */
    pthread_t main;
    bool gate_open;
    bool gate_entered;
} tally;

static void tally_init(tally *t)
{
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->ran = 0;
    t->on_main = 0;
    t->main = pthread_self();
    t->gate_open = false;
    t->gate_entered = false;
}

static void tally_dispose(tally *t)
{
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

/* A job that counts itself. */
static void count_job(void *arg)
{
    tally *t = arg;
    pthread_mutex_lock(&t->mu);
    t->ran++;
    t->on_main += pthread_equal(pthread_self(), t->main) != 0;
    pthread_mutex_unlock(&t->mu);
}

/* A job that blocks its worker until the gate opens, so the queue behind it stays put. */
static void gate_job(void *arg)
{
    tally *t = arg;
    pthread_mutex_lock(&t->mu);
    t->gate_entered = true;
    pthread_cond_broadcast(&t->cv);
    while (!t->gate_open) {
        pthread_cond_wait(&t->cv, &t->mu);
    }
    t->ran++;
    pthread_mutex_unlock(&t->mu);
}

static void wait_gate_entered(tally *t)
{
    pthread_mutex_lock(&t->mu);
    while (!t->gate_entered) {
        pthread_cond_wait(&t->cv, &t->mu);
    }
    pthread_mutex_unlock(&t->mu);
}

static void open_gate(tally *t)
{
    pthread_mutex_lock(&t->mu);
    t->gate_open = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* ---- tests ---- */

static void test_space_pool_new_bounds(void **state)
{
    (void)state;
    space_pool *p = (space_pool *)0x1;
    assert_int_equal(space_pool_new(&p, 0, 8), BG_ERR_INVAL);
    assert_int_equal(space_pool_new(&p, SPACE_POOL_MAX_THREADS + 1, 8), BG_ERR_INVAL);
    assert_int_equal(space_pool_new(&p, 2, 0), BG_ERR_INVAL);
    assert_ptr_equal(p, (space_pool *)0x1);
    assert_int_equal(space_pool_new(&p, 3, 1), 0);
    assert_int_equal(space_pool_threads(p), 3);
    space_pool_free(p);
    space_pool_free(NULL);
}

static void test_space_pool_submit_runs_all(void **state)
{
    (void)state;
    tally t;
    tally_init(&t);
    space_pool *p;
    assert_int_equal(space_pool_new(&p, 4, 16), 0);
    size_t again = 0;
    for (size_t i = 0; i < 5000; i++) {
        int rv;
        while ((rv = space_pool_submit(p, count_job, &t)) == BG_ERR_AGAIN) {
            again++;
            nap();
        }
        assert_int_equal(rv, 0);
    }
    space_pool_free(p);
    assert_int_equal(t.ran, 5000);
    assert_int_equal(t.on_main, 0);
    print_message("queue full %zu times\n", again);
    tally_dispose(&t);
}

static void test_space_pool_submit_queue_full(void **state)
{
    (void)state;
    tally t;
    tally_init(&t);
    space_pool *p;
    assert_int_equal(space_pool_new(&p, 1, 2), 0);
    assert_int_equal(space_pool_submit(p, gate_job, &t), 0);
    wait_gate_entered(&t); /* the only worker is busy; the queue is empty */
    assert_int_equal(space_pool_submit(p, count_job, &t), 0);
    assert_int_equal(space_pool_submit(p, count_job, &t), 0);
    assert_int_equal(space_pool_submit(p, count_job, &t), BG_ERR_AGAIN);
    assert_int_equal(space_pool_submit(p, count_job, &t), BG_ERR_AGAIN);
    open_gate(&t);
    space_pool_free(p);
    assert_int_equal(t.ran, 3); /* the gate and the two accepted; not the refused */
    tally_dispose(&t);
}

typedef struct freer {
    space_pool *p;
} freer;

static void *freer_main(void *arg)
{
    freer *f = arg;
    space_pool_free(f->p);
    return NULL;
}

/* A job submitted from a pool thread while free drains the queue: refused. */
typedef struct late {
    tally *t;
    space_pool *p;
    int rv;
} late;

static void late_job(void *arg)
{
    late *l = arg;
    l->rv = space_pool_submit(l->p, count_job, l->t);
}

static void test_space_pool_free_drains(void **state)
{
    (void)state;
    tally t;
    tally_init(&t);
    space_pool *p;
    assert_int_equal(space_pool_new(&p, 2, 1000), 0);
    assert_int_equal(space_pool_submit(p, gate_job, &t), 0);
    wait_gate_entered(&t);
    /* the second worker may take some of these; most wait behind the gate once it blocks */
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(space_pool_submit(p, gate_job, &t), 0);
    }
    late l = {.t = &t, .p = p, .rv = 1};
    assert_int_equal(space_pool_submit(p, late_job, &l), 0);
    freer f = {.p = p};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, freer_main, &f), 0);
    /* free has started once submit says so; every accepted job still has to run */
    size_t accepted = 0;
    int rv;
    while ((rv = space_pool_submit(p, count_job, &t)) != BG_ERR_SHUTDOWN) {
        assert_true(rv == 0 || rv == BG_ERR_AGAIN);
        accepted += rv == 0;
        nap();
    }
    open_gate(&t);
    pthread_join(th, NULL);
    assert_int_equal(t.ran, 101 + accepted);
    assert_int_equal(l.rv, BG_ERR_SHUTDOWN);
    tally_dispose(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_pool_new_bounds),
        cmocka_unit_test(test_space_pool_submit_runs_all),
        cmocka_unit_test(test_space_pool_submit_queue_full),
        cmocka_unit_test(test_space_pool_free_drains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
