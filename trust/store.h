/* trust/store.h: the gateway's LMDB store of contracts, keyed by contract id, with the state and
 * usage counters that usage control needs on every query (queries and differential-privacy
 * epsilon), an index by requester, and the cache of published noisy answers. One environment
 * per gateway (the `ledger.path` directory; the receipts ledger has its own in "receipts/"
 * beside it, and where it exists it keeps the query count instead: trust_ledger_budget). Safe
 * to use from every worker thread: each call is one LMDB transaction, and writers are
 * serialized by LMDB, so a consume can never overspend a query count or an epsilon budget.
 * Not for: contract encoding or signatures (trust/contract.h), or drawing noise; it stores
 * their bytes and does the accounting. */
#ifndef TRUST_STORE_H
#define TRUST_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/bytes.h"
#include "base/err.h"

typedef struct trust_store trust_store;

/* Contract states as stored: the same values as trust_contract_state (trust/contract.h). */
typedef enum trust_store_state {
    TRUST_STATE_REQUESTED = 1,
    TRUST_STATE_AGREED = 2,
    TRUST_STATE_FINALIZED = 3,
    TRUST_STATE_TERMINATED = 4,
    TRUST_STATE_REVOKED = 5,
    TRUST_STATE_EXPIRED = 6,
} trust_store_state;

#define TRUST_STORE_ID_LEN 64        /* hex SHA-256 */
#define TRUST_STORE_REQUESTER_MAX 255
#define TRUST_STORE_VERSION 2        /* on-disk format; 2 added epsilon budgets and noise */
#define TRUST_STORE_DIGEST_LEN 32    /* a query's digest (SHA-256), the noise cache key */
#define TRUST_STORE_EPS_MICRO 1000000u /* micro-epsilon per epsilon */
/* The largest cached answer, in bytes (64 MiB). */
#define TRUST_STORE_NOISE_MAX (64u * 1024u * 1024u)
/* A consume request's |result| when a cached noisy answer exists: nothing was spent; the
 * caller answers with trust_store_noise_get(). Positive, so never a BG_ERR_*. */
#define TRUST_STORE_CACHED 1

/* What usage control reads on every query, kept beside the contract bytes. Epsilon amounts are
 * integers in micro-epsilon (TRUST_STORE_EPS_MICRO per epsilon) so that sums are exact; a
 * zeroed meta means "no query cap, no privacy budget". */
typedef struct trust_store_meta {
    uint32_t state;       /* trust_store_state */
    int64_t valid_from;   /* unix seconds */
    int64_t valid_until;  /* unix seconds, exclusive */
    uint32_t max_queries; /* 0: no cap */
    uint32_t used;        /* queries admitted so far */
    char requester[TRUST_STORE_REQUESTER_MAX + 1]; /* SPIFFE id */
    /* The contract's total epsilon (basic composition: the spends sum to at most this). 0: the
     * contract carries no privacy budget, so every request with an epsilon spend is refused. */
    uint64_t eps_total_micro;
    uint64_t eps_spent_micro; /* epsilon spent so far, <= eps_total_micro */
} trust_store_meta;

/* Converts |eps| (e.g. the contract's epsilon) to micro-epsilon, rounding to the nearest, into
 * |*out|. Call it once per amount and calibrate the noise from |*out| / TRUST_STORE_EPS_MICRO,
 * so that what is spent is exactly what the noise used. Returns 0 or BG_ERR_RANGE (negative,
 * not finite, or 2^63 micro-epsilon or more; |*out| untouched). */
int trust_store_eps_micro(double eps, uint64_t *out);

/* Opens (creating if needed, mode 0700) the LMDB environment in directory |dir| with an
 * initial map of |map_size| bytes (0: 64 MiB; it grows on MDB_MAP_FULL). Returns 0 and
 * |*out| (caller frees with trust_store_close()) or BG_ERR_STORE / BG_ERR_NOMEM with
 * "dir: reason" in |eb|. A store written in another format than TRUST_STORE_VERSION is refused
 * with BG_ERR_STORE and a message naming both versions (version 1, before epsilon budgets,
 * cannot be migrated: its records do not say how much epsilon their contracts allow). */
int trust_store_open(trust_store **out, const char *dir, size_t map_size, bg_errbuf *eb);
void trust_store_close(trust_store *s); /* NULL is a no-op */

/* Stores contract |id| (TRUST_STORE_ID_LEN hex chars) with |meta| and its encoded |bytes|
 * (both borrowed for the call). |meta->eps_total_micro| must be the contract's epsilon (see
 * trust_store_eps_micro()); the store does not decode contracts. Idempotent: storing the same
 * id again with the same bytes changes nothing and returns 0; different bytes under the same
 * id return BG_ERR_EXISTS (ids are digests: that is tampering or a bug). The stored counters
 * (|used|, |eps_spent_micro|) of an existing entry are never reset. Returns 0, BG_ERR_EXISTS,
 * BG_ERR_INVAL (bad id, empty or long requester, eps_spent_micro > eps_total_micro),
 * BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_store_put(trust_store *s, const char *id, const trust_store_meta *meta,
                    const uint8_t *bytes, size_t len);

/* Reads contract |id| into |meta| and, when |bytes| is not NULL, its encoding (appended to the
 * caller's buffer). One read transaction: |meta| is a consistent snapshot. Returns 0,
 * BG_ERR_NOTFOUND (also for a malformed id), BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_store_get(trust_store *s, const char *id, trust_store_meta *meta, bg_buf *bytes);

/* Moves contract |id| to |state| and, when |bytes| is not NULL, replaces its encoding (e.g.
 * after the countersignature). Counters, budget and cached answers are kept. 0,
 * BG_ERR_NOTFOUND, BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_store_update(trust_store *s, const char *id, uint32_t state, const uint8_t *bytes,
                       size_t len);

/* Usage control, atomically in one write transaction: contract |id| must belong to
 * |requester|, be FINALIZED, have valid_from <= |now| < valid_until, and have queries left;
 * then its |used| counter grows by one. Spends no epsilon and ignores the noise cache (for
 * those, use trust_store_consume_batch(), with one request if need be). Returns 0 (|meta|,
 * if not NULL, filled after the increment), BG_ERR_NOTFOUND, BG_ERR_IDENTITY (another
 * requester's), BG_ERR_CONTRACT_REVOKED (revoked, terminated or not finalized),
 * BG_ERR_CONTRACT_EXPIRED, BG_ERR_BUDGET_EXHAUSTED, BG_ERR_NOMEM or BG_ERR_STORE. On an
 * error nothing changes. */
int trust_store_consume(trust_store *s, const char *id, const char *requester, int64_t now,
                        trust_store_meta *meta);

/* One query's request in a batch. Inputs: |id| and |requester| as for trust_store_consume();
 * the optional fields default to "off" when zero-initialised:
 * - |eps_micro|: epsilon this query spends (0: none). Spent in the same transaction as the
 *   query count, all or nothing: refused with BG_ERR_BUDGET_EXHAUSTED when
 *   eps_total_micro - eps_spent_micro < eps_micro (so always when the contract has no budget).
 * - |digest|: TRUST_STORE_DIGEST_LEN bytes naming the query (NULL: not cacheable). When an
 *   answer is cached for (|id|, |digest|) and the contract passes the usage-control checks
 *   (requester, state, validity), the result is TRUST_STORE_CACHED and nothing is spent, not
 *   even a query: the query count and epsilon limits do not apply to replays.
 * - |answer|, |answer_len|: an already drawn noisy answer for |digest| (NULL: none yet). On
 *   success it is cached in the same transaction as the spend, so no other query can ever be
 *   answered differently. Needs |digest|; at most TRUST_STORE_NOISE_MAX bytes.
 * - |no_count|: spend epsilon (and cache) only; the query count is neither checked nor
 *   counted here (a gateway with a receipts ledger counts queries there, in the receipt's own
 *   transaction: trust_ledger_budget in trust/ledger.h).
 * All pointers are borrowed for the call. Outputs: |result| and |meta| (below). */
typedef struct trust_store_consume_req {
    const char *id;
    const char *requester;
    int result;
    trust_store_meta meta;
    uint64_t eps_micro;
    const uint8_t *digest;
    const uint8_t *answer;
    size_t answer_len;
    bool no_count;
} trust_store_consume_req;

/* trust_store_consume() for |n| requests in ONE write transaction (group commit: one sync for
 * the batch), in order, each checked against the state the earlier ones left (a cached
 * |answer| of an earlier request makes a later identical one TRUST_STORE_CACHED). Each request
 * gets its own |result|: 0 (admitted and spent; |meta| after the spend), TRUST_STORE_CACHED
 * (|meta| as stored, unchanged), or one of trust_store_consume()'s errors, BG_ERR_INVAL
 * (|answer| without |digest|) or BG_ERR_TOO_LARGE (|answer_len|); a refused request changes
 * nothing. Returns 0 when the batch committed (results valid), or BG_ERR_STORE / BG_ERR_NOMEM
 * when it did not (then nothing changed and every result is that error).
 * A cacheable query without an |answer| goes: consume with |digest|; on 0 run the query, draw
 * the noise, trust_store_noise_put(), then publish what trust_store_noise_get() returns; on
 * TRUST_STORE_CACHED publish trust_store_noise_get(). Two identical queries racing before any
 * answer is cached may both spend (over-counting is safe), but both publish the same answer. */
int trust_store_consume_batch(trust_store *s, trust_store_consume_req *reqs, size_t n,
                              int64_t now);

/* Reads the cached noisy answer of query |digest| (TRUST_STORE_DIGEST_LEN bytes) under
 * contract |id| and appends it to the caller's |answer|. Performs no usage control: call it
 * after a consume said 0 or TRUST_STORE_CACHED. Returns 0, BG_ERR_NOTFOUND (also for a
 * malformed id), BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_store_noise_get(trust_store *s, const char *id,
                          const uint8_t digest[TRUST_STORE_DIGEST_LEN], bg_buf *answer);

/* Caches |len| bytes of |answer| (borrowed; NULL only when |len| is 0) as the noisy answer to
 * query |digest| under the stored contract |id|. The first answer stored wins, for good: a
 * later put for the same key changes nothing and returns BG_ERR_EXISTS, whatever its bytes,
 * and the caller must then publish what trust_store_noise_get() returns, never its own draw.
 * Returns 0, BG_ERR_EXISTS, BG_ERR_NOTFOUND (no such contract), BG_ERR_INVAL (malformed id),
 * BG_ERR_TOO_LARGE (|len| > TRUST_STORE_NOISE_MAX), BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_store_noise_put(trust_store *s, const char *id,
                          const uint8_t digest[TRUST_STORE_DIGEST_LEN], const uint8_t *answer,
                          size_t len);

/* Remembers that proposal |key| (TRUST_STORE_ID_LEN hex chars, a digest of the proposal's
 * terms) led to contract |id|, replacing an earlier one; and reads it back into |id| (65
 * bytes). Used to answer a repeated proposal with the contract it already has. 0,
 * BG_ERR_NOTFOUND, BG_ERR_INVAL or BG_ERR_STORE. */
int trust_store_proposal_put(trust_store *s, const char *key, const char *id);
int trust_store_proposal_get(trust_store *s, const char *key, char *id);

/* Calls |cb| with the id of each contract of |requester| (index order) until it returns
 * non-zero; the id is valid during the call only. Returns 0 or BG_ERR_STORE. */
int trust_store_list(trust_store *s, const char *requester,
                     int (*cb)(void *arg, const char *id), void *arg);
#endif /* TRUST_STORE_H */
