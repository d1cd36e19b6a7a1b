/* trust/store.c: see store.h. LMDB's conventions (MDB_* codes, values valid only inside their
 * transaction) stop here: callers get BG_ERR_* and copies. */
#include "trust/store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "trust/lmdb_int.h"

#define DEFAULT_MAP (64u * 1024u * 1024u)
#define RECORD_MAGIC 0x42474332u /* "BGC2": format 2 (format 1 was "BGC1") */
#define NOISE_KEY_LEN (TRUST_STORE_ID_LEN + TRUST_STORE_DIGEST_LEN)

struct trust_store {
    trust_lmdb db;        /* the environment, its map size and its growth lock */
    MDB_dbi contracts;    /* id -> record */
    MDB_dbi by_requester; /* requester -> id (MDB_DUPSORT) */
    MDB_dbi proposals;    /* proposal key -> contract id */
    MDB_dbi noise;        /* contract id + query digest -> first noisy answer stored */
    MDB_dbi info;         /* "version" -> uint32 TRUST_STORE_VERSION */
};

/* Record layout (native byte order: the file never leaves this host):
 * header | requester bytes | contract bytes. */
typedef struct record_hdr {
    uint32_t magic;
    uint32_t state;
    int64_t valid_from;
    int64_t valid_until;
    uint32_t max_queries;
    uint32_t used;
    uint32_t requester_len;
    uint32_t reserved;
    uint64_t eps_total_micro;
    uint64_t eps_spent_micro; /* <= eps_total_micro */
} record_hdr;
_Static_assert(sizeof(record_hdr) == 56, "record header layout");
_Static_assert(TRUST_STORE_NOISE_MAX <= SIZE_MAX, "noise bound fits size_t");

static const char VERSION_KEY[] = "version";

static int mdb_err(int rc)
{
    return rc == MDB_NOTFOUND ? BG_ERR_NOTFOUND : rc == ENOMEM ? BG_ERR_NOMEM : BG_ERR_STORE;
}

/* Reads the format version into |*version|, stamping a new (or empty) store with ours. Format 1
 * had no version record, so a store with contracts but no record is format 1. Returns 0 or an
 * LMDB code. */
static int check_version(trust_store *s, MDB_txn *txn, uint32_t *version)
{
    MDB_val k = {sizeof(VERSION_KEY) - 1, (void *)(uintptr_t)VERSION_KEY}, v;
    int rc = mdb_get(txn, s->info, &k, &v);
    if (rc == 0) {
        if (v.mv_size != sizeof(*version)) {
            return MDB_CORRUPTED;
        }
        memcpy(version, v.mv_data, sizeof(*version));
        return 0;
    }
    if (rc != MDB_NOTFOUND) {
        return rc;
    }
    MDB_stat st;
    rc = mdb_stat(txn, s->contracts, &st);
    if (rc != 0) {
        return rc;
    }
    if (st.ms_entries > 0) {
        *version = 1;
        return 0;
    }
    uint32_t ours = TRUST_STORE_VERSION;
    MDB_val nv = {sizeof(ours), &ours};
    *version = ours;
    return mdb_put(txn, s->info, &k, &nv, 0);
}

int trust_store_eps_micro(double eps, uint64_t *out)
{
    /* !(>=) also refuses NaN; 2^63 keeps the cast defined and sums far from wrapping */
    if (!(eps >= 0.0) || eps * (double)TRUST_STORE_EPS_MICRO >= 9223372036854775808.0) {
        return BG_ERR_RANGE;
    }
    *out = (uint64_t)(eps * (double)TRUST_STORE_EPS_MICRO + 0.5);
    return 0;
}

int trust_store_open(trust_store **out, const char *dir, size_t map_size, bg_errbuf *eb)
{
    trust_store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "%s: out of memory", dir);
    }
    s->db.map_size = map_size ? map_size : DEFAULT_MAP;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        free(s);
        return bg_errf(eb, BG_ERR_STORE, "%s: cannot create directory: %s", dir, strerror(e));
    }
    int rc = mdb_env_create(&s->db.env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(s->db.env, 8);
    }
    if (rc == 0) {
        rc = mdb_env_set_mapsize(s->db.env, s->db.map_size);
    }
    if (rc == 0) {
        /* MDB_NOTLS: read transactions are not tied to threads (workers share the env).
         * MDB_NOMETASYNC: one fsync per commit instead of two; a commit survives a crash of
         * the process (the kernel has it), and an OS crash can undo at most the last one. */
        rc = mdb_env_open(s->db.env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0600);
    }
    MDB_txn *txn = NULL;
    if (rc == 0) {
        rc = mdb_txn_begin(s->db.env, NULL, 0, &txn);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "contracts", MDB_CREATE, &s->contracts);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "contracts_by_requester", MDB_CREATE | MDB_DUPSORT,
                          &s->by_requester);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "proposals", MDB_CREATE, &s->proposals);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "noise", MDB_CREATE, &s->noise);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "store_info", MDB_CREATE, &s->info);
    }
    uint32_t version = TRUST_STORE_VERSION;
    if (rc == 0) {
        rc = check_version(s, txn, &version);
    }
    if (rc == 0 && version != TRUST_STORE_VERSION) {
        mdb_txn_abort(txn);
        mdb_env_close(s->db.env);
        free(s);
        if (version < TRUST_STORE_VERSION) {
            return bg_errf(eb, BG_ERR_STORE,
                           "%s: store format version %u is older than this build's %u and "
                           "cannot be migrated (its contracts carry no epsilon budget): move "
                           "the directory aside and negotiate the contracts again",
                           dir, (unsigned)version, (unsigned)TRUST_STORE_VERSION);
        }
        return bg_errf(eb, BG_ERR_STORE,
                       "%s: store format version %u is newer than this build's %u: run the "
                       "baygate that wrote it",
                       dir, (unsigned)version, (unsigned)TRUST_STORE_VERSION);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        if (txn != NULL) {
            mdb_txn_abort(txn);
        }
        if (s->db.env != NULL) {
            mdb_env_close(s->db.env);
        }
        free(s);
        return bg_errf(eb, BG_ERR_STORE, "%s: cannot open store: %s", dir, mdb_strerror(rc));
    }
    pthread_rwlock_init(&s->db.grow, NULL);
    *out = s;
    return 0;
}

void trust_store_close(trust_store *s)
{
    if (s == NULL) {
        return;
    }
    mdb_env_close(s->db.env);
    pthread_rwlock_destroy(&s->db.grow);
    free(s);
}

static void unpack(const MDB_val *v, trust_store_meta *m, const uint8_t **bytes, size_t *len)
{
    record_hdr h;
    memcpy(&h, v->mv_data, sizeof(h));
    m->state = h.state;
    m->valid_from = h.valid_from;
    m->valid_until = h.valid_until;
    m->max_queries = h.max_queries;
    m->used = h.used;
    m->eps_total_micro = h.eps_total_micro;
    m->eps_spent_micro = h.eps_spent_micro;
    size_t rl = h.requester_len > TRUST_STORE_REQUESTER_MAX ? TRUST_STORE_REQUESTER_MAX
                                                             : h.requester_len;
    memcpy(m->requester, (const uint8_t *)v->mv_data + sizeof(h), rl);
    m->requester[rl] = 0;
    if (bytes != NULL) {
        *bytes = (const uint8_t *)v->mv_data + sizeof(h) + h.requester_len;
        *len = v->mv_size - sizeof(h) - h.requester_len;
    }
}

static bool record_ok(const MDB_val *v)
{
    record_hdr h;
    if (v->mv_size < sizeof(h)) {
        return false;
    }
    memcpy(&h, v->mv_data, sizeof(h));
    return h.magic == RECORD_MAGIC && h.requester_len <= TRUST_STORE_REQUESTER_MAX &&
           sizeof(h) + h.requester_len <= v->mv_size && h.eps_spent_micro <= h.eps_total_micro;
}

static bool valid_id(const char *id)
{
    if (strlen(id) != TRUST_STORE_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < TRUST_STORE_ID_LEN; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

static MDB_val key_of(const char *id)
{
    MDB_val k = {TRUST_STORE_ID_LEN, (void *)(uintptr_t)id};
    return k;
}

/* The noise cache key: contract id, then the query digest; |buf| holds it. */
static MDB_val noise_key(uint8_t buf[NOISE_KEY_LEN], const char *id, const uint8_t *digest)
{
    memcpy(buf, id, TRUST_STORE_ID_LEN);
    memcpy(buf + TRUST_STORE_ID_LEN, digest, TRUST_STORE_DIGEST_LEN);
    MDB_val k = {NOISE_KEY_LEN, buf};
    return k;
}

/* Stores |answer| under |k| unless a value is there already (MDB_KEYEXIST then). */
static int put_answer(trust_store *s, MDB_txn *txn, MDB_val *k, const uint8_t *answer, size_t len)
{
    static const uint8_t empty[1];
    MDB_val v = {len, (void *)(uintptr_t)(len > 0 ? answer : empty)};
    return mdb_put(txn, s->noise, k, &v, MDB_NOOVERWRITE);
}

typedef struct store_call {
    trust_store *s;
    int (*fn)(trust_store *s, MDB_txn *txn, void *arg);
    void *arg;
} store_call;

static int store_fn(void *arg, MDB_txn *txn)
{
    store_call *c = arg;
    return c->fn(c->s, txn, c->arg);
}

/* One write transaction running |fn| (trust_lmdb_write(): the map grows on MDB_MAP_FULL, up to
 * 8 times). |fn| returns 0, an LMDB code, or a BG_ERR_* to abort with that error. */
static int write_txn(trust_store *s, int (*fn)(trust_store *s, MDB_txn *txn, void *arg),
                     void *arg)
{
    store_call c = {s, fn, arg};
    int rc = trust_lmdb_write(&s->db, store_fn, &c, 8);
    if (rc == 0) {
        return 0;
    }
    /* ours are BG_ERR_* (-1..-999); LMDB's are MDB_* (<= -30600) or errno values */
    return (rc < 0 && rc > -1000) ? rc : mdb_err(rc);
}

typedef struct put_arg {
    const char *id;
    const trust_store_meta *meta;
    const uint8_t *bytes;
    size_t len;
} put_arg;

static int do_put(trust_store *s, MDB_txn *txn, void *arg)
{
    put_arg *a = arg;
    MDB_val k = key_of(a->id), v;
    int rc = mdb_get(txn, s->contracts, &k, &v);
    if (rc == 0) {
        const uint8_t *old;
        size_t oldlen;
        trust_store_meta m;
        if (!record_ok(&v)) {
            return BG_ERR_STORE;
        }
        unpack(&v, &m, &old, &oldlen);
        if (oldlen == a->len && memcmp(old, a->bytes, a->len) == 0) {
            return 0; /* same contract again: idempotent */
        }
        return BG_ERR_EXISTS;
    }
    if (rc != MDB_NOTFOUND) {
        return rc;
    }
    size_t rl = strlen(a->meta->requester);
    record_hdr h = {
        .magic = RECORD_MAGIC,
        .state = a->meta->state,
        .valid_from = a->meta->valid_from,
        .valid_until = a->meta->valid_until,
        .max_queries = a->meta->max_queries,
        .used = a->meta->used,
        .requester_len = (uint32_t)rl,
        .eps_total_micro = a->meta->eps_total_micro,
        .eps_spent_micro = a->meta->eps_spent_micro,
    };
    MDB_val nv = {sizeof(h) + rl + a->len, NULL};
    rc = mdb_put(txn, s->contracts, &k, &nv, MDB_RESERVE);
    if (rc != 0) {
        return rc;
    }
    memcpy(nv.mv_data, &h, sizeof(h));
    memcpy((uint8_t *)nv.mv_data + sizeof(h), a->meta->requester, rl);
    if (a->len > 0) {
        memcpy((uint8_t *)nv.mv_data + sizeof(h) + rl, a->bytes, a->len);
    }
    MDB_val rk = {rl, (void *)(uintptr_t)a->meta->requester};
    MDB_val rv = key_of(a->id);
    rc = mdb_put(txn, s->by_requester, &rk, &rv, MDB_NODUPDATA);
    return rc == MDB_KEYEXIST ? 0 : rc;
}

int trust_store_put(trust_store *s, const char *id, const trust_store_meta *meta,
                    const uint8_t *bytes, size_t len)
{
    if (!valid_id(id) || meta->requester[0] == 0 ||
        strlen(meta->requester) > TRUST_STORE_REQUESTER_MAX ||
        meta->eps_spent_micro > meta->eps_total_micro) {
        return BG_ERR_INVAL;
    }
    put_arg a = {id, meta, bytes, len};
    return write_txn(s, do_put, &a);
}

int trust_store_get(trust_store *s, const char *id, trust_store_meta *meta, bg_buf *bytes)
{
    if (!valid_id(id)) {
        return BG_ERR_NOTFOUND;
    }
    MDB_txn *txn;
    int rc = trust_lmdb_read_begin(&s->db, &txn);
    if (rc != 0) {
        return mdb_err(rc);
    }
    MDB_val k = key_of(id), v;
    rc = mdb_get(txn, s->contracts, &k, &v);
    int out = 0;
    if (rc != 0) {
        out = mdb_err(rc);
    } else if (!record_ok(&v)) {
        out = BG_ERR_STORE;
    } else {
        const uint8_t *b;
        size_t blen;
        unpack(&v, meta, &b, &blen); /* copies out before the txn ends */
        if (bytes != NULL) {
            out = bg_buf_append(bytes, b, blen);
        }
    }
    trust_lmdb_read_end(&s->db, txn);
    return out;
}

typedef struct update_arg {
    const char *id;
    uint32_t state;
    const uint8_t *bytes;
    size_t len;
    /* consume */
    const char *requester;
    int64_t now;
    trust_store_meta *meta;
    uint64_t eps_micro;
    const uint8_t *digest; /* NULL: not cacheable */
    const uint8_t *answer; /* NULL: none to cache; needs |digest| */
    size_t answer_len;
    bool no_count; /* spend epsilon only: the query count is the ledger's */
    bool cached; /* out: a cached answer exists, nothing spent */
} update_arg;

/* Rewrites the record of |a->id| with state |a->state| (and new bytes if given). */
static int do_update(trust_store *s, MDB_txn *txn, void *arg)
{
    update_arg *a = arg;
    MDB_val k = key_of(a->id), v;
    int rc = mdb_get(txn, s->contracts, &k, &v);
    if (rc != 0) {
        return rc;
    }
    if (!record_ok(&v)) {
        return BG_ERR_STORE;
    }
    record_hdr h;
    memcpy(&h, v.mv_data, sizeof(h));
    h.state = a->state;
    const uint8_t *body = a->bytes;
    size_t blen = a->len;
    bg_buf keep;
    bg_buf_init(&keep);
    if (body == NULL) { /* keep the old bytes: copy them out before mdb_put invalidates v */
        if (bg_buf_append(&keep, (const uint8_t *)v.mv_data + sizeof(h) + h.requester_len,
                          v.mv_size - sizeof(h) - h.requester_len) != 0) {
            return BG_ERR_NOMEM;
        }
        body = keep.data;
        blen = keep.len;
    }
    char req[TRUST_STORE_REQUESTER_MAX + 1];
    memcpy(req, (const uint8_t *)v.mv_data + sizeof(h), h.requester_len);
    MDB_val nv = {sizeof(h) + h.requester_len + blen, NULL};
    rc = mdb_put(txn, s->contracts, &k, &nv, MDB_RESERVE);
    if (rc == 0) {
        memcpy(nv.mv_data, &h, sizeof(h));
        memcpy((uint8_t *)nv.mv_data + sizeof(h), req, h.requester_len);
        if (blen > 0) {
            memcpy((uint8_t *)nv.mv_data + sizeof(h) + h.requester_len, body, blen);
        }
    }
    bg_buf_dispose(&keep);
    return rc;
}

int trust_store_update(trust_store *s, const char *id, uint32_t state, const uint8_t *bytes,
                       size_t len)
{
    if (!valid_id(id)) {
        return BG_ERR_NOTFOUND;
    }
    update_arg a = {.id = id, .state = state, .bytes = bytes, .len = len};
    return write_txn(s, do_update, &a);
}

/* Usage control: check, then count (the counters live in the record header; the record is
 * copied, bumped and put back in the same write transaction, so the query count, the epsilon
 * spend and the cached answer commit together or not at all). Refusals return a BG_ERR_*
 * before anything is written; after the first write only LMDB codes, which abort the txn. */
static int do_consume(trust_store *s, MDB_txn *txn, void *arg)
{
    update_arg *a = arg;
    MDB_val k = key_of(a->id), v;
    int rc = mdb_get(txn, s->contracts, &k, &v);
    if (rc != 0) {
        return rc;
    }
    if (!record_ok(&v)) {
        return BG_ERR_STORE;
    }
    trust_store_meta m;
    unpack(&v, &m, NULL, NULL);
    if (strcmp(m.requester, a->requester) != 0) {
        return BG_ERR_IDENTITY;
    }
    if (m.state != TRUST_STATE_FINALIZED) {
        return m.state == TRUST_STATE_EXPIRED ? BG_ERR_CONTRACT_EXPIRED : BG_ERR_CONTRACT_REVOKED;
    }
    if (a->now < m.valid_from || a->now >= m.valid_until) {
        return BG_ERR_CONTRACT_EXPIRED;
    }
    uint8_t nkbuf[NOISE_KEY_LEN];
    MDB_val nk = {0, NULL};
    if (a->digest != NULL) {
        /* A replay releases nothing new, so it costs nothing and no limit applies: answering
         * it is what stops averaging (METHODS s.2). Looked up in this write txn, so an answer
         * cached by an earlier request of the batch counts. */
        MDB_val nv;
        nk = noise_key(nkbuf, a->id, a->digest);
        rc = mdb_get(txn, s->noise, &nk, &nv);
        if (rc == 0) {
            a->cached = true;
            *a->meta = m;
            return 0;
        }
        if (rc != MDB_NOTFOUND) {
            return rc;
        }
    }
    if (!a->no_count && m.max_queries != 0 && m.used >= m.max_queries) {
        return BG_ERR_BUDGET_EXHAUSTED;
    }
    assert(m.eps_spent_micro <= m.eps_total_micro); /* record_ok() */
    if (a->eps_micro > m.eps_total_micro - m.eps_spent_micro) {
        return BG_ERR_BUDGET_EXHAUSTED; /* also every spend on a contract without a budget */
    }
    /* copy, bump, write back: v is only valid until the next write in this txn */
    uint8_t *copy = malloc(v.mv_size);
    if (copy == NULL) {
        return BG_ERR_NOMEM;
    }
    memcpy(copy, v.mv_data, v.mv_size);
    record_hdr h;
    memcpy(&h, copy, sizeof(h));
    h.used += a->no_count ? 0 : 1;
    h.eps_spent_micro += a->eps_micro;
    memcpy(copy, &h, sizeof(h));
    MDB_val nv = {v.mv_size, copy};
    rc = mdb_put(txn, s->contracts, &k, &nv, 0);
    free(copy);
    if (rc == 0 && a->answer != NULL) {
        assert(a->digest != NULL && a->answer_len <= TRUST_STORE_NOISE_MAX);
        rc = put_answer(s, txn, &nk, a->answer, a->answer_len); /* absent: looked up above */
    }
    if (rc == 0) {
        m.used = h.used;
        m.eps_spent_micro = h.eps_spent_micro;
        *a->meta = m;
    }
    return rc;
}

typedef struct batch_arg {
    trust_store_consume_req *reqs;
    size_t n;
    int64_t now;
} batch_arg;

static int do_batch(trust_store *s, MDB_txn *txn, void *arg)
{
    batch_arg *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        trust_store_consume_req *r = &b->reqs[i];
        if (!valid_id(r->id)) {
            r->result = BG_ERR_NOTFOUND;
            continue;
        }
        if (r->answer != NULL && r->digest == NULL) {
            r->result = BG_ERR_INVAL;
            continue;
        }
        if (r->answer != NULL && r->answer_len > TRUST_STORE_NOISE_MAX) {
            r->result = BG_ERR_TOO_LARGE;
            continue;
        }
        update_arg a = {.id = r->id,
                        .requester = r->requester,
                        .now = b->now,
                        .meta = &r->meta,
                        .eps_micro = r->eps_micro,
                        .digest = r->digest,
                        .answer = r->answer,
                        .answer_len = r->answer_len,
                        .no_count = r->no_count};
        int rc = do_consume(s, txn, &a);
        if (rc == MDB_NOTFOUND) {
            r->result = BG_ERR_NOTFOUND;
        } else if (rc < 0 && rc > -1000) {
            r->result = rc; /* this request's refusal; the others go on */
        } else if (rc != 0) {
            return rc; /* LMDB failed: the whole batch aborts */
        } else {
            r->result = a.cached ? TRUST_STORE_CACHED : 0;
        }
    }
    return 0;
}

int trust_store_consume_batch(trust_store *s, trust_store_consume_req *reqs, size_t n,
                              int64_t now)
{
    if (n == 0) {
        return 0;
    }
    batch_arg b = {reqs, n, now};
    int rv = write_txn(s, do_batch, &b);
    if (rv != 0) {
        for (size_t i = 0; i < n; i++) {
            reqs[i].result = rv;
        }
    }
    return rv;
}

int trust_store_consume(trust_store *s, const char *id, const char *requester, int64_t now,
                        trust_store_meta *meta)
{
    if (!valid_id(id)) {
        return BG_ERR_NOTFOUND;
    }
    trust_store_meta m;
    update_arg a = {.id = id, .requester = requester, .now = now, .meta = &m};
    int rc = write_txn(s, do_consume, &a);
    if (rc == 0 && meta != NULL) {
        *meta = m;
    }
    return rc;
}

typedef struct noise_arg {
    const char *id;
    const uint8_t *digest;
    const uint8_t *answer;
    size_t len;
} noise_arg;

static int do_noise_put(trust_store *s, MDB_txn *txn, void *arg)
{
    noise_arg *a = arg;
    MDB_val ck = key_of(a->id), cv;
    int rc = mdb_get(txn, s->contracts, &ck, &cv);
    if (rc != 0) {
        return rc; /* MDB_NOTFOUND: no such contract */
    }
    uint8_t kbuf[NOISE_KEY_LEN];
    MDB_val k = noise_key(kbuf, a->id, a->digest);
    rc = put_answer(s, txn, &k, a->answer, a->len);
    /* first writer wins: a second draw must never replace a published answer */
    return rc == MDB_KEYEXIST ? BG_ERR_EXISTS : rc;
}

int trust_store_noise_put(trust_store *s, const char *id,
                          const uint8_t digest[TRUST_STORE_DIGEST_LEN], const uint8_t *answer,
                          size_t len)
{
    if (!valid_id(id) || (answer == NULL && len > 0)) {
        return BG_ERR_INVAL;
    }
    if (len > TRUST_STORE_NOISE_MAX) {
        return BG_ERR_TOO_LARGE;
    }
    noise_arg a = {id, digest, answer, len};
    return write_txn(s, do_noise_put, &a);
}

int trust_store_noise_get(trust_store *s, const char *id,
                          const uint8_t digest[TRUST_STORE_DIGEST_LEN], bg_buf *answer)
{
    if (!valid_id(id)) {
        return BG_ERR_NOTFOUND;
    }
    MDB_txn *txn;
    int rc = trust_lmdb_read_begin(&s->db, &txn);
    if (rc != 0) {
        return mdb_err(rc);
    }
    uint8_t kbuf[NOISE_KEY_LEN];
    MDB_val k = noise_key(kbuf, id, digest), v;
    rc = mdb_get(txn, s->noise, &k, &v);
    int out;
    if (rc != 0) {
        out = mdb_err(rc);
    } else if (v.mv_size > TRUST_STORE_NOISE_MAX) {
        out = BG_ERR_STORE;
    } else {
        out = bg_buf_append(answer, v.mv_data, v.mv_size); /* copies out before the txn ends */
    }
    trust_lmdb_read_end(&s->db, txn);
    return out;
}

typedef struct alias_arg {
    const char *key;
    const char *id;
} alias_arg;

static int do_alias(trust_store *s, MDB_txn *txn, void *arg)
{
    alias_arg *a = arg;
    MDB_val k = key_of(a->key), v = key_of(a->id);
    return mdb_put(txn, s->proposals, &k, &v, 0);
}

int trust_store_proposal_put(trust_store *s, const char *key, const char *id)
{
    if (!valid_id(key) || !valid_id(id)) {
        return BG_ERR_INVAL;
    }
    alias_arg a = {key, id};
    return write_txn(s, do_alias, &a);
}

int trust_store_proposal_get(trust_store *s, const char *key, char *id)
{
    if (!valid_id(key)) {
        return BG_ERR_INVAL;
    }
    MDB_txn *txn;
    int rc = trust_lmdb_read_begin(&s->db, &txn);
    if (rc == 0) {
        MDB_val k = key_of(key), v;
        rc = mdb_get(txn, s->proposals, &k, &v);
        if (rc == 0 && v.mv_size == TRUST_STORE_ID_LEN) {
            memcpy(id, v.mv_data, TRUST_STORE_ID_LEN);
            id[TRUST_STORE_ID_LEN] = 0;
        } else if (rc == 0) {
            rc = MDB_CORRUPTED;
        }
        trust_lmdb_read_end(&s->db, txn);
    }
    return rc == 0 ? 0 : mdb_err(rc);
}

int trust_store_list(trust_store *s, const char *requester,
                     int (*cb)(void *arg, const char *id), void *arg)
{
    MDB_txn *txn;
    int rc = trust_lmdb_read_begin(&s->db, &txn);
    if (rc != 0) {
        return mdb_err(rc);
    }
    MDB_cursor *cur = NULL;
    rc = mdb_cursor_open(txn, s->by_requester, &cur);
    if (rc == 0) {
        MDB_val k = {strlen(requester), (void *)(uintptr_t)requester}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
        while (rc == 0) {
            char id[TRUST_STORE_ID_LEN + 1];
            size_t n = v.mv_size < TRUST_STORE_ID_LEN ? v.mv_size : TRUST_STORE_ID_LEN;
            memcpy(id, v.mv_data, n);
            id[n] = 0;
            if (cb(arg, id) != 0) {
                break;
            }
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
        }
        if (rc == MDB_NOTFOUND) {
            rc = 0;
        }
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    trust_lmdb_read_end(&s->db, txn);
    return rc == 0 ? 0 : mdb_err(rc);
}
