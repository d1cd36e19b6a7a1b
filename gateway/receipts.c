/* gateway/receipts.c: the one writer of the receipts ledger (trust/ledger.h). Workers hand it
 * receipts; a writer thread appends everything pending in one LMDB transaction (group commit),
 * signs one checkpoint for the batch, and hands each receipt's index and leaf hash back to the
 * worker's loop, which only then releases what the receipt covers. A failed append fails every
 * receipt of the batch: the caller answers 503 ledger_unavailable and releases nothing. The
 * same thread runs the contract store's writes that a query waits for (epsilon spends, the
 * noise cache: gw_receipts_store_job), so that no event loop ever waits for a disk sync.
 * Not for: what goes into a receipt (queries.c, contracts.c) or the regulators' API
 * (ledger_api.c). */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "trust/ledger.h"

#define WRITER_BATCH_MAX 4096

struct gw_receipts {
    gw_server *srv;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gw_receipt_req *head, *tail; /* FIFO of pending appends */
    gw_store_job *jhead, *jtail; /* FIFO of contract-store writes (gw_receipts_store_job) */
    bool stop;
    bool started;
    uint64_t batches, appended, failed, commit_us, budget_refused;
};

/* Results on their way back to the workers: one chain per worker, posted with one lock and
 * one wake-up each (a batch of receipts is one hand-over, not one per receipt). */
#define POST_GROUPS 64

typedef struct post_group {
    gw_worker *w;
    gw_job *head, *tail; /* newest first, as gw_worker_post_chain() takes them */
} post_group;

static void post_add(post_group *g, size_t *ng, gw_worker *w, gw_job *j)
{
    for (size_t i = 0; i < *ng; i++) {
        if (g[i].w == w) {
            j->next = g[i].head;
            g[i].head = j;
            return;
        }
    }
    if (*ng == POST_GROUPS) { /* more workers than groups: this one's go one by one */
        gw_worker_post(w, j);
        return;
    }
    j->next = NULL;
    g[(*ng)++] = (post_group){w, j, j};
}

static void post_flush(post_group *g, size_t *ng)
{
    for (size_t i = 0; i < *ng; i++) {
        gw_worker_post_chain(g[i].w, g[i].head, g[i].tail);
    }
    *ng = 0;
}

static void *writer_main(void *arg)
{
    gw_receipts *rc = arg;
    trust_ledger *led = rc->srv->ledger;
    trust_receipt *batch = malloc(WRITER_BATCH_MAX * sizeof(*batch));
    uint64_t *idx = malloc(WRITER_BATCH_MAX * sizeof(*idx));
    uint8_t(*leaf)[TRUST_LEDGER_HASH_LEN] = malloc(WRITER_BATCH_MAX * sizeof(*leaf));
    trust_ledger_budget *bud = malloc(WRITER_BATCH_MAX * sizeof(*bud));
    gw_receipt_req *reqs[WRITER_BATCH_MAX];
    post_group groups[POST_GROUPS];
    size_t ngroups = 0;
    for (;;) {
        pthread_mutex_lock(&rc->mu);
        while (rc->head == NULL && rc->jhead == NULL && !rc->stop) {
            pthread_cond_wait(&rc->cv, &rc->mu);
        }
        if (rc->head == NULL && rc->jhead == NULL && rc->stop) {
            pthread_mutex_unlock(&rc->mu);
            break;
        }
        gw_store_job *jobs = rc->jhead;
        rc->jhead = rc->jtail = NULL;
        size_t n = 0;
        while (rc->head != NULL && n < WRITER_BATCH_MAX) {
            gw_receipt_req *r = rc->head;
            rc->head = r->next;
            reqs[n++] = r;
        }
        if (rc->head == NULL) {
            rc->tail = NULL;
        }
        pthread_mutex_unlock(&rc->mu);
        while (jobs != NULL) { /* the store's writes first: they were asked for first */
            gw_store_job *j = jobs;
            jobs = j->next;
            j->run(j);
            post_add(groups, &ngroups, j->w, &j->job);
        }
        post_flush(groups, &ngroups);
        if (n == 0) {
            continue;
        }
        int rv = batch == NULL || idx == NULL || leaf == NULL || bud == NULL ? BG_ERR_NOMEM : 0;
        bg_errbuf eb = {{0}};
        for (size_t i = 0; rv == 0 && i < n; i++) {
            batch[i] = reqs[i]->receipt;
            bud[i] = (trust_ledger_budget){.limit = reqs[i]->budget.limit};
        }
        uint64_t t0 = bg_now_us();
        if (rv == 0) { /* the batch, the query counts it uses and its signed checkpoint: one
                        * transaction, one sync */
            rv = trust_ledger_append_signed(led, batch, n, bud, idx, leaf, rc->srv->cfg->city, NULL,
                                            &eb);
        }
        uint64_t took = bg_now_us() - t0;
        size_t over = 0;
        for (size_t i = 0; rv == 0 && i < n; i++) {
            over += bud[i].exhausted;
        }
        if (rv != 0) {
            bg_log(BG_LOG_ERROR, "msg=\"ledger append failed\" receipts=%zu err=%s why=\"%s\"", n,
                   bg_strerror(rv), eb.msg);
        }
        pthread_mutex_lock(&rc->mu);
        rc->batches++;
        rc->commit_us += took;
        rc->budget_refused += over;
        if (rv == 0) {
            rc->appended += n;
        } else {
            rc->failed += n;
        }
        pthread_mutex_unlock(&rc->mu);
        for (size_t i = 0; i < n; i++) {
            gw_receipt_req *r = reqs[i];
            r->result = rv;
            if (rv == 0) {
                r->index = idx[i];
                memcpy(r->leaf_hash, leaf[i], TRUST_LEDGER_HASH_LEN);
                r->budget = bud[i];
            }
            post_add(groups, &ngroups, r->w, &r->job);
        }
        post_flush(groups, &ngroups);
    }
    free(batch);
    free(idx);
    free(leaf);
    free(bud);
    return NULL;
}

int gw_receipts_start(gw_server *srv, bg_errbuf *eb)
{
    gw_receipts *rc = calloc(1, sizeof(*rc));
    if (rc == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "out of memory");
    }
    rc->srv = srv;
    pthread_mutex_init(&rc->mu, NULL);
    pthread_cond_init(&rc->cv, NULL);
    if (pthread_create(&rc->thread, NULL, writer_main, rc) != 0) {
        pthread_cond_destroy(&rc->cv);
        pthread_mutex_destroy(&rc->mu);
        free(rc);
        return bg_errf(eb, BG_ERR_INTERNAL, "cannot start the ledger writer thread");
    }
    rc->started = true;
    srv->receipts = rc;
    return 0;
}

void gw_receipts_stop(gw_server *srv)
{
    gw_receipts *rc = srv->receipts;
    if (rc == NULL) {
        return;
    }
    pthread_mutex_lock(&rc->mu);
    rc->stop = true;
    pthread_cond_signal(&rc->cv);
    pthread_mutex_unlock(&rc->mu);
    pthread_join(rc->thread, NULL); /* appends what is queued, then posts the results */
    pthread_cond_destroy(&rc->cv);
    pthread_mutex_destroy(&rc->mu);
    free(rc);
    srv->receipts = NULL;
}

void gw_receipts_store_job(gw_server *srv, gw_store_job *j)
{
    gw_receipts *rc = srv->receipts;
    j->next = NULL;
    if (rc == NULL) { /* no writer thread (no ledger): on this thread, delivered the same way */
        j->run(j);
        gw_worker_post(j->w, &j->job);
        return;
    }
    pthread_mutex_lock(&rc->mu);
    if (rc->jtail != NULL) {
        rc->jtail->next = j;
    } else {
        rc->jhead = j;
    }
    rc->jtail = j;
    pthread_cond_signal(&rc->cv);
    pthread_mutex_unlock(&rc->mu);
}

void gw_receipts_submit(gw_server *srv, gw_receipt_req *r)
{
    gw_receipts *rc = srv->receipts;
    r->next = NULL;
    if (rc == NULL) { /* no ledger: an immediate failure, delivered like any result */
        r->result = BG_ERR_STORE;
        gw_worker_post(r->w, &r->job);
        return;
    }
    pthread_mutex_lock(&rc->mu);
    if (rc->tail != NULL) {
        rc->tail->next = r;
    } else {
        rc->head = r;
    }
    rc->tail = r;
    pthread_cond_signal(&rc->cv);
    pthread_mutex_unlock(&rc->mu);
}

void gw_receipts_stats(gw_server *srv, gw_receipts_stat *out)
{
    gw_receipts *rc = srv->receipts;
    memset(out, 0, sizeof(*out));
    if (rc != NULL) {
        pthread_mutex_lock(&rc->mu);
        out->appended = rc->appended;
        out->failed = rc->failed;
        out->batches = rc->batches;
        out->commit_us = rc->commit_us;
        out->budget_refused = rc->budget_refused;
        pthread_mutex_unlock(&rc->mu);
    }
}

/* ---- events recorded without anyone waiting ------------------------------------------------ */

static void event_done(gw_job *j)
{
    gw_receipt_req *r = (gw_receipt_req *)(void *)j;
    if (r->result != 0) {
        bg_log(BG_LOG_ERROR, "msg=\"event not receipted\" kind=%u request_id=%s err=%s",
               r->receipt.kind, r->receipt.request_id, bg_strerror(r->result));
    }
    free(r);
}

void gw_receipts_event(gw_worker *w, const trust_receipt *receipt)
{
    if (w->srv->ledger == NULL) {
        return;
    }
    gw_receipt_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        bg_log(BG_LOG_ERROR, "msg=\"event not receipted: out of memory\" kind=%u",
               receipt->kind);
        return;
    }
    r->receipt = *receipt;
    r->w = w;
    r->job.deliver = event_done;
    r->job.discard = event_done;
    gw_receipts_submit(w->srv, r);
}
