/* trust/store.h: the gateway's LMDB store of contracts, keyed by contract id, with the state and
 * usage counters that usage control needs on every query, and an index by requester. One
 * environment per gateway (the `ledger.path` directory; the receipts ledger of issue 5 will
 * share it). Safe to use from every worker thread: each call is one LMDB transaction, and
 * writers are serialized by LMDB, so trust_store_consume() can never overspend a budget.
 * Not for: contract encoding or signatures (trust/contract.h); it stores their bytes. */
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

/* What usage control reads on every query, kept beside the contract bytes. */
typedef struct trust_store_meta {
    uint32_t state;       /* trust_store_state */
    int64_t valid_from;   /* unix seconds */
    int64_t valid_until;  /* unix seconds, exclusive */
    uint32_t max_queries; /* 0: no cap */
    uint32_t used;        /* queries admitted so far */
    char requester[TRUST_STORE_REQUESTER_MAX + 1]; /* SPIFFE id */
} trust_store_meta;

/* Opens (creating if needed, mode 0700) the LMDB environment in directory |dir| with an
 * initial map of |map_size| bytes (0: 64 MiB; it grows on MDB_MAP_FULL). Returns 0 and
 * |*out| (caller frees with trust_store_close()) or BG_ERR_STORE / BG_ERR_NOMEM with
 * "dir: reason" in |eb|. */
int trust_store_open(trust_store **out, const char *dir, size_t map_size, bg_errbuf *eb);
void trust_store_close(trust_store *s); /* NULL is a no-op */

/* Stores contract |id| (TRUST_STORE_ID_LEN hex chars) with |meta| and its encoded |bytes|.
 * Idempotent: storing the same id again with the same bytes changes nothing and returns 0;
 * different bytes under the same id return BG_ERR_EXISTS (ids are digests: that is tampering
 * or a bug). The stored counters (|used|) of an existing entry are never reset. */
int trust_store_put(trust_store *s, const char *id, const trust_store_meta *meta,
                    const uint8_t *bytes, size_t len);

/* Reads contract |id| into |meta| and, when |bytes| is not NULL, its encoding (appended).
 * Returns 0, BG_ERR_NOTFOUND, BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_store_get(trust_store *s, const char *id, trust_store_meta *meta, bg_buf *bytes);

/* Moves contract |id| to |state| and, when |bytes| is not NULL, replaces its encoding (e.g.
 * after the countersignature). 0, BG_ERR_NOTFOUND or BG_ERR_STORE. */
int trust_store_update(trust_store *s, const char *id, uint32_t state, const uint8_t *bytes,
                       size_t len);

/* Usage control, atomically in one write transaction: contract |id| must belong to
 * |requester|, be FINALIZED, have valid_from <= |now| < valid_until, and have budget left;
 * then its |used| counter grows by one. Returns 0 (|meta| filled after the increment),
 * BG_ERR_NOTFOUND, BG_ERR_IDENTITY (another requester's), BG_ERR_CONTRACT_REVOKED (revoked,
 * terminated or not finalized), BG_ERR_CONTRACT_EXPIRED, BG_ERR_BUDGET_EXHAUSTED or
 * BG_ERR_STORE. On an error nothing changes. */
int trust_store_consume(trust_store *s, const char *id, const char *requester, int64_t now,
                        trust_store_meta *meta);

/* One query's request in a batch: inputs |id|, |requester|; output |result| (0 or one of
 * trust_store_consume()'s errors) and |meta| after the increment when 0. */
typedef struct trust_store_consume_req {
    const char *id;
    const char *requester;
    int result;
    trust_store_meta meta;
} trust_store_consume_req;

/* trust_store_consume() for |n| requests in ONE write transaction (group commit: one sync for
 * the batch), in order, each checked against the state the earlier ones left. Each request
 * gets its own result. Returns 0 when the batch committed (results valid), or BG_ERR_STORE /
 * BG_ERR_NOMEM when it did not (then nothing changed and every result is that error). */
int trust_store_consume_batch(trust_store *s, trust_store_consume_req *reqs, size_t n,
                              int64_t now);

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
