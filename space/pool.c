/* space/pool.c: the executor thread pool: a mutex-protected ring of jobs, one condition
 * variable the workers sleep on. Shutdown drains the ring before the workers exit, so a job
 * that was accepted always runs (its submitter may be waiting for its answer). */
#include "space/pool.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct pool_job {
    space_job_fn fn;
    void *arg;
} pool_job;

struct space_pool {
    pthread_mutex_t mu;
    pthread_cond_t ready; /* a job was queued, or shutdown began */
    pool_job *ring;       /* ring[(head + i) % cap] for i < len, oldest first */
    size_t cap, head, len;
    bool stopping;
    unsigned nthreads; /* started */
    pthread_t *threads;
};

/* Each worker: takes the oldest job and runs it unlocked; leaves once stopping and empty. */
static void *worker_main(void *arg)
{
    space_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->len == 0 && !p->stopping) {
            pthread_cond_wait(&p->ready, &p->mu);
        }
        if (p->len == 0) {
            break;
        }
        pool_job job = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->len--;
        pthread_mutex_unlock(&p->mu);
        job.fn(job.arg);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Stops and joins the started workers (draining the queue), then frees everything. */
static void pool_stop(space_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->ready);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++) {
        pthread_join(p->threads[i], NULL);
    }
    assert(p->len == 0);
    pthread_cond_destroy(&p->ready);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->ring);
    free(p);
}

int space_pool_new(space_pool **out, unsigned threads, size_t queue_cap)
{
    if (threads < 1 || threads > SPACE_POOL_MAX_THREADS || queue_cap < 1 ||
        queue_cap > SIZE_MAX / sizeof(pool_job)) {
        return BG_ERR_INVAL;
    }
    space_pool *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return BG_ERR_NOMEM;
    }
    p->ring = malloc(queue_cap * sizeof(pool_job));
    p->threads = calloc(threads, sizeof(pthread_t));
    if (p->ring == NULL || p->threads == NULL) {
        goto fail_free;
    }
    p->cap = queue_cap;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        goto fail_free;
    }
    if (pthread_cond_init(&p->ready, NULL) != 0) {
        goto fail_mutex;
    }
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            pool_stop(p); /* joins the ones started and frees p */
            return BG_ERR_NOMEM;
        }
        p->nthreads++;
    }
    *out = p;
    return 0;

fail_mutex:
    pthread_mutex_destroy(&p->mu);
fail_free:
    free(p->threads);
    free(p->ring);
    free(p);
    return BG_ERR_NOMEM;
}

int space_pool_submit(space_pool *p, space_job_fn fn, void *arg)
{
    assert(fn != NULL);
    int rv = 0;
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        rv = BG_ERR_SHUTDOWN;
    } else if (p->len == p->cap) {
        rv = BG_ERR_AGAIN;
    } else {
        p->ring[(p->head + p->len) % p->cap] = (pool_job){.fn = fn, .arg = arg};
        p->len++;
        pthread_cond_signal(&p->ready);
    }
    pthread_mutex_unlock(&p->mu);
    return rv;
}

unsigned space_pool_threads(const space_pool *p)
{
    return p->nthreads;
}

void space_pool_free(space_pool *p)
{
    if (p == NULL) {
        return;
    }
    pool_stop(p);
}
