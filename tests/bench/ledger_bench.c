/* tests/bench/ledger_bench.c: the receipts ledger (trust/ledger.h) measured the way the
 * gateway's writer thread (gateway/receipts.c) uses it, for tests/bench/ledger.
 *
 *   ledger_bench append DIR BATCH SECONDS MAX_RECEIPTS
 *     A fresh ledger in DIR (must not exist yet). Appends batches of BATCH realistic receipts
 *     with trust_ledger_append_signed() (the batch and its signed checkpoint in one fully
 *     synchronous LMDB commit), exactly as the writer does,
 *     until SECONDS have passed or MAX_RECEIPTS were appended. Prints one line:
 *       append batch=B receipts=N batches=K seconds=S receipts_per_s=R batch_p50_ms=..
 *              batch_p99_ms=.. append_mean_ms=.. sign_mean_ms=.. cpu_us_per_receipt=..
 *              sys_us_per_receipt=.. size=<ledger size>
 *     (CPU: user + system time of this process per receipt appended, from getrusage)
 *   ledger_bench proofs DIR SIZE SAMPLES
 *     A fresh ledger in DIR filled to SIZE receipts (batches of 4096, a checkpoint per batch,
 *     so this is the append figure at that size too), then SAMPLES inclusion proofs of random
 *     leaves in the tree of SIZE and SAMPLES consistency proofs from random sizes to SIZE, each
 *     made by the ledger and verified with the pure verifiers; then the quick and the full
 *     integrity check (what the gateway runs at start-up and with --verify-ledger). Prints
 *       fill size=.. seconds=.. receipts_per_s=..
 *       inclusion size=.. samples=.. make_p50_us=.. make_p99_us=.. verify_p50_us=.. ...
 *       consistency size=.. samples=.. make_p50_us=.. ...
 *       verify quick_ms=.. full_ms=..
 *
 * Receipts: half as a provider writes them (query, allowed, requester, home and provider
 * cities, one transit city, contract id, purpose, dataset, operation, query and result
 * digests, the home as counterpart), half as a home writes them (the same plus the provider's
 * index and leaf hash as counterpart reference); 8 contracts and 64 requesters; time_ms 0, so
 * the ledger stamps the time as it does in the gateway. Exit 0 on success, 1 on any failure. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "base/bytes.h"
#include "base/err.h"
#include "trust/ledger.h"

#define FILL_BATCH 4096

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{ /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static void fill_digest(uint8_t d[TRUST_LEDGER_HASH_LEN], uint64_t seq, uint64_t salt)
{
    for (size_t i = 0; i < TRUST_LEDGER_HASH_LEN; i += 8) {
        uint64_t v = (seq + 1) * 0x9e3779b97f4a7c15ULL ^ (salt + i) * 0xbf58476d1ce4e5b9ULL;
        memcpy(d + i, &v, 8);
    }
}

/* Receipt |seq| of the run (see the head of the file). */
static void make_receipt(trust_receipt *r, uint64_t seq)
{
    memset(r, 0, sizeof(*r));
    r->kind = TRUST_RECEIPT_QUERY;
    r->decision = TRUST_RECEIPT_ALLOWED;
    snprintf(r->request_id, sizeof(r->request_id), "%016" PRIx64 "%016" PRIx64, seq,
             (uint64_t)(seq * 0x9e3779b97f4a7c15ULL));
    snprintf(r->requester, sizeof(r->requester), "spiffe://guangzhou.gba/firm/firm-%02u",
             (unsigned)(seq % 64));
    strcpy(r->home_city, "guangzhou");
    strcpy(r->provider_city, "hongkong");
    r->ntransit = 1;
    strcpy(r->transit[0], "shenzhen");
    unsigned c = (unsigned)(seq / 64 % 8);
    for (size_t i = 0; i < TRUST_RECEIPT_CONTRACT_ID_LEN; i++) {
        r->contract_id[i] = "0123456789abcdef"[(c * 7 + i * 13) % 16];
    }
    r->contract_id[TRUST_RECEIPT_CONTRACT_ID_LEN] = 0;
    strcpy(r->purpose, "scientific_research");
    r->ndatasets = 1;
    strcpy(r->datasets[0], "hongkong/stroke-registry");
    strcpy(r->operation, "count");
    r->has_query_digest = true;
    fill_digest(r->query_digest, seq % 97, 1);
    r->has_result_digest = true;
    fill_digest(r->result_digest, seq, 2);
    if (seq % 2 == 0) { /* the provider's receipt */
        strcpy(r->counterpart_city, "guangzhou");
    } else { /* the home's, with the provider's reference */
        strcpy(r->counterpart_city, "hongkong");
        r->has_counterpart_ref = true;
        r->counterpart_index = seq / 2;
        fill_digest(r->counterpart_leaf_hash, seq, 3);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{ /* nearest rank on a sorted array */
    if (n == 0) {
        return 0;
    }
    size_t k = (size_t)(p * (double)n + 0.999999);
    k = k == 0 ? 1 : k > n ? n : k;
    return v[k - 1];
}

static trust_ledger *open_fresh(const char *dir)
{
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "ledger_bench: %s: %s (give a directory that does not exist yet)\n",
                dir, strerror(errno));
        return NULL;
    }
    trust_ledger *l = NULL;
    bg_errbuf eb = {{0}};
    if (trust_ledger_open(&l, dir, 0, &eb) != 0) {
        fprintf(stderr, "ledger_bench: open: %s\n", eb.msg);
        return NULL;
    }
    return l;
}

/* One batch the writer's way: append, then one signed checkpoint. */
static int one_batch(trust_ledger *l, trust_receipt *rs, size_t n, uint64_t *seq, uint64_t *idx,
                     uint8_t (*leaf)[TRUST_LEDGER_HASH_LEN], double *t_append, double *t_sign)
{
    for (size_t i = 0; i < n; i++) {
        make_receipt(&rs[i], (*seq)++);
    }
    bg_errbuf eb = {{0}};
    double t0 = now_s();
    /* the batch and its signed checkpoint in one transaction, as the writer does */
    int rv = trust_ledger_append_signed(l, rs, n, NULL, idx, leaf, "hongkong", NULL, &eb);
    double t1 = now_s();
    if (rv != 0) {
        fprintf(stderr, "ledger_bench: append: %s\n", eb.msg);
        return rv;
    }
    double t2 = t1; /* signing is inside the append's transaction now */
    *t_append = t1 - t0;
    *t_sign = t2 - t1;
    return 0;
}

/* CPU seconds this process used so far: user and system (the kernel's share of a synchronous
 * commit, pwrite and fdatasync, is most of it at small batches). */
static void cpu_s(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int run_append(const char *dir, size_t batch, double seconds, uint64_t max_receipts)
{
    trust_ledger *l = open_fresh(dir);
    trust_receipt *rs = malloc(batch * sizeof(*rs));
    uint64_t *idx = malloc(batch * sizeof(*idx));
    uint8_t(*leaf)[TRUST_LEDGER_HASH_LEN] = malloc(batch * sizeof(*leaf));
    size_t cap = 1 << 16, nlat = 0;
    double *lat = malloc(cap * sizeof(*lat));
    int rc = 1;
    if (l == NULL || rs == NULL || idx == NULL || leaf == NULL || lat == NULL) {
        goto out;
    }
    uint64_t seq = 0, done = 0;
    double sum_append = 0, sum_sign = 0;
    double u0, s0, u1, s1;
    cpu_s(&u0, &s0);
    double start = now_s(), elapsed = 0;
    while (elapsed < seconds && done < max_receipts) {
        size_t n = batch;
        if (max_receipts - done < n) {
            n = (size_t)(max_receipts - done);
        }
        double ta, ts;
        if (one_batch(l, rs, n, &seq, idx, leaf, &ta, &ts) != 0) {
            goto out;
        }
        if (nlat == cap) {
            double *m = realloc(lat, 2 * cap * sizeof(*lat));
            if (m == NULL) {
                goto out;
            }
            lat = m;
            cap *= 2;
        }
        lat[nlat++] = ta + ts;
        sum_append += ta;
        sum_sign += ts;
        done += n;
        elapsed = now_s() - start;
    }
    uint64_t size = 0;
    if (trust_ledger_size(l, &size) != 0 || size != done) {
        fprintf(stderr, "ledger_bench: size %" PRIu64 " after %" PRIu64 " appends\n", size,
                done);
        goto out;
    }
    cpu_s(&u1, &s1);
    qsort(lat, nlat, sizeof(*lat), cmp_double);
    printf("append batch=%zu receipts=%" PRIu64 " batches=%zu seconds=%.3f receipts_per_s=%.0f "
           "batch_p50_ms=%.3f batch_p99_ms=%.3f append_mean_ms=%.3f sign_mean_ms=%.3f "
           "cpu_us_per_receipt=%.2f sys_us_per_receipt=%.2f size=%" PRIu64 "\n",
           batch, done, nlat, elapsed, (double)done / elapsed, pct(lat, nlat, 0.5) * 1e3,
           pct(lat, nlat, 0.99) * 1e3, sum_append / (double)nlat * 1e3,
           sum_sign / (double)nlat * 1e3, ((u1 - u0) + (s1 - s0)) * 1e6 / (double)done,
           (s1 - s0) * 1e6 / (double)done, size);
    rc = 0;
out:
    trust_ledger_close(l);
    free(rs);
    free(idx);
    free(leaf);
    free(lat);
    return rc;
}

static int run_proofs(const char *dir, uint64_t size, size_t samples)
{
    trust_ledger *l = open_fresh(dir);
    trust_receipt *rs = malloc(FILL_BATCH * sizeof(*rs));
    uint64_t *idx = malloc(FILL_BATCH * sizeof(*idx));
    uint8_t(*leaf)[TRUST_LEDGER_HASH_LEN] = malloc(FILL_BATCH * sizeof(*leaf));
    double *mk = malloc(samples * sizeof(double)), *vf = malloc(samples * sizeof(double));
    trust_ledger_proof *p = malloc(sizeof(*p));
    int rc = 1;
    if (l == NULL || rs == NULL || idx == NULL || leaf == NULL || mk == NULL || vf == NULL ||
        p == NULL || samples == 0 || size < 2) {
        goto out;
    }
    uint64_t seq = 0, done = 0;
    double start = now_s();
    while (done < size) {
        size_t n = size - done < FILL_BATCH ? (size_t)(size - done) : FILL_BATCH;
        double ta, ts;
        if (one_batch(l, rs, n, &seq, idx, leaf, &ta, &ts) != 0) {
            goto out;
        }
        done += n;
    }
    double fill = now_s() - start;
    printf("fill size=%" PRIu64 " batch=%d seconds=%.3f receipts_per_s=%.0f\n", size,
           FILL_BATCH, fill, (double)size / fill);
    uint8_t root[TRUST_LEDGER_HASH_LEN];
    uint64_t head = 0;
    if (trust_ledger_head(l, &head, root) != 0 || head != size) {
        fprintf(stderr, "ledger_bench: head\n");
        goto out;
    }
    /* inclusion: make (O(log n) reads, leaf hash from the stored bytes as the API does) and
     * verify */
    for (size_t i = 0; i < samples; i++) {
        uint64_t k = rng() % size;
        bg_buf bytes;
        bg_buf_init(&bytes);
        uint8_t lh[TRUST_LEDGER_HASH_LEN];
        double t0 = now_s();
        int rv = trust_ledger_get(l, k, &bytes, NULL);
        if (rv == 0) {
            rv = trust_ledger_inclusion_proof(l, k, size, p);
        }
        if (rv == 0) {
            rv = trust_ledger_leaf_hash(bytes.data, bytes.len, lh);
        }
        double t1 = now_s();
        if (rv == 0) {
            rv = trust_ledger_verify_inclusion(lh, k, size, (const uint8_t(*)[32])p->hash,
                                               p->len, root);
        }
        double t2 = now_s();
        bg_buf_dispose(&bytes);
        if (rv != 0) {
            fprintf(stderr, "ledger_bench: inclusion of %" PRIu64 ": %s\n", k, bg_strerror(rv));
            goto out;
        }
        mk[i] = t1 - t0;
        vf[i] = t2 - t1;
    }
    qsort(mk, samples, sizeof(double), cmp_double);
    qsort(vf, samples, sizeof(double), cmp_double);
    printf("inclusion size=%" PRIu64 " samples=%zu proof_len=%zu make_p50_us=%.1f "
           "make_p99_us=%.1f verify_p50_us=%.1f verify_p99_us=%.1f\n",
           size, samples, p->len, pct(mk, samples, 0.5) * 1e6, pct(mk, samples, 0.99) * 1e6,
           pct(vf, samples, 0.5) * 1e6, pct(vf, samples, 0.99) * 1e6);
    /* consistency: from a random earlier size m (its root read from the ledger) to size */
    size_t plen = 0;
    for (size_t i = 0; i < samples; i++) {
        uint64_t m = 1 + rng() % (size - 1);
        uint8_t root_m[TRUST_LEDGER_HASH_LEN];
        if (trust_ledger_root(l, m, root_m) != 0) {
            goto out;
        }
        double t0 = now_s();
        int rv = trust_ledger_consistency_proof(l, m, size, p);
        double t1 = now_s();
        if (rv == 0) {
            rv = trust_ledger_verify_consistency(m, size, root_m, root,
                                                 (const uint8_t(*)[32])p->hash, p->len);
        }
        double t2 = now_s();
        if (rv != 0) {
            fprintf(stderr, "ledger_bench: consistency %" PRIu64 " -> %" PRIu64 ": %s\n", m,
                    size, bg_strerror(rv));
            goto out;
        }
        plen = p->len > plen ? p->len : plen;
        mk[i] = t1 - t0;
        vf[i] = t2 - t1;
    }
    qsort(mk, samples, sizeof(double), cmp_double);
    qsort(vf, samples, sizeof(double), cmp_double);
    printf("consistency size=%" PRIu64 " samples=%zu max_proof_len=%zu make_p50_us=%.1f "
           "make_p99_us=%.1f verify_p50_us=%.1f verify_p99_us=%.1f\n",
           size, samples, plen, pct(mk, samples, 0.5) * 1e6, pct(mk, samples, 0.99) * 1e6,
           pct(vf, samples, 0.5) * 1e6, pct(vf, samples, 0.99) * 1e6);
    /* the integrity checks of start-up (quick) and --verify-ledger (full) */
    uint64_t bad = 0;
    double t0 = now_s();
    int rv = trust_ledger_verify(l, false, &bad);
    double t1 = now_s();
    if (rv == 0) {
        rv = trust_ledger_verify(l, true, &bad);
    }
    double t2 = now_s();
    if (rv != 0) {
        fprintf(stderr, "ledger_bench: verify: %s (receipt %" PRIu64 ")\n", bg_strerror(rv),
                bad);
        goto out;
    }
    printf("verify size=%" PRIu64 " quick_ms=%.1f full_ms=%.1f\n", size, (t1 - t0) * 1e3,
           (t2 - t1) * 1e3);
    rc = 0;
out:
    trust_ledger_close(l);
    free(rs);
    free(idx);
    free(leaf);
    free(mk);
    free(vf);
    free(p);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: ledger_bench append DIR BATCH SECONDS MAX_RECEIPTS\n"
                    "       ledger_bench proofs DIR SIZE SAMPLES\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "append") == 0) {
        unsigned long long b = strtoull(argv[3], NULL, 10);
        double s = strtod(argv[4], NULL);
        unsigned long long m = strtoull(argv[5], NULL, 10);
        if (b == 0 || b > 1000000 || s <= 0 || m == 0) {
            return usage();
        }
        return run_append(argv[2], (size_t)b, s, (uint64_t)m);
    }
    if (argc == 5 && strcmp(argv[1], "proofs") == 0) {
        unsigned long long n = strtoull(argv[3], NULL, 10);
        unsigned long long k = strtoull(argv[4], NULL, 10);
        if (n < 2 || k == 0 || k > 10000000) {
            return usage();
        }
        return run_proofs(argv[2], (uint64_t)n, (size_t)k);
    }
    return usage();
}
