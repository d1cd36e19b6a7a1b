/* trust/ledger.h: the gateway's receipts ledger. Every query, refusal, contract event and
 * identity event becomes a receipt appended to an LMDB-backed RFC 6962 / RFC 9162 Merkle tree,
 * so that the gateway can prove to a counterpart or an auditor that a receipt is in its ledger
 * (inclusion proof), that its ledger only ever grew (consistency proof), and what its head was
 * (a C2SP tlog-checkpoint signed with the ledger's own Ed25519 key). Not for: deciding what is
 * recorded or when (the gateway), contracts or usage control (trust/store.h).
 *
 * Storage. One LMDB environment of its own per gateway, in the directory given to
 * trust_ledger_open(); the gateway uses "<ledger.path>/receipts" (the contract store has
 * <ledger.path> itself, and LMDB forbids opening one environment twice in a process). A
 * separate environment keeps receipts' write lock and map growth apart from usage control's.
 * Named databases (all keys big-endian, so byte order is numeric order):
 *   "receipts"        u64 index -> canonical Receipt bytes (written with MDB_APPEND)
 *   "nodes"           u64 last leaf || u8 level -> 32-byte hash of the perfect subtree at
 *                     (level, last leaf >> level) (level 0: leaf hashes); one entry for every
 *                     complete subtree, appended in order with MDB_APPEND
 *   "by_contract"     contract id -> u64 index      (MDB_DUPSORT | MDB_DUPFIXED)
 *   "by_requester"    requester -> u64 index        (idem)
 *   "by_counterpart"  counterpart city -> u64 index (idem)
 *   "by_time"         u64 time_ms -> u64 index      (idem)
 *   "ledger_info"     "version" -> u32; "checkpoint" -> the last signed checkpoint note
 *   "budgets"         contract id -> u32 queries used (usage control's count, written in the
 *                     same transaction as the receipt that uses a query: see
 *                     trust_ledger_budget)
 * and "checkpoint.key", the Ed25519 signing key (PKCS#8 PEM, mode 0600), beside the files.
 * Commits are fully synchronous (data and meta page): a receipt that was acknowledged, or
 * covered by a signed checkpoint, survives an OS crash, so the ledger can never fork.
 *
 * Threads: one writer (trust_ledger_append_batch(), trust_ledger_checkpoint_sign()) at a time is
 * the intended use, readers from any thread at any time; every call is its own LMDB transaction
 * (writers are serialized by LMDB, so a second writer waits rather than corrupts). The pure
 * functions (encode, decode, hashes, proofs, notes) need no ledger and are thread-safe. */
#ifndef TRUST_LEDGER_H
#define TRUST_LEDGER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/bytes.h"
#include "base/err.h"

typedef struct trust_ledger trust_ledger;

#define TRUST_LEDGER_HASH_LEN 32
/* The longest proof for a tree of fewer than 2^64 leaves (inclusion: 64, consistency: 65). */
#define TRUST_LEDGER_PROOF_MAX 65
#define TRUST_LEDGER_VERSION 1 /* on-disk format */

/* ---- Receipts ----------------------------------------------------------------------------- */

#define TRUST_RECEIPT_MAX_BYTES 8192 /* an encoded receipt; larger input is refused */
#define TRUST_RECEIPT_REQUEST_ID_MAX 64
#define TRUST_RECEIPT_IDENTITY_MAX 255 /* a SPIFFE id */
#define TRUST_RECEIPT_CITY_MAX 63      /* BG_CITY_MAX */
#define TRUST_RECEIPT_TRANSIT_MAX 8
#define TRUST_RECEIPT_CONTRACT_ID_LEN 64 /* hex SHA-256 */
#define TRUST_RECEIPT_PURPOSE_MAX 127
#define TRUST_RECEIPT_DATASETS_MAX 16
#define TRUST_RECEIPT_DATASET_MAX 127
#define TRUST_RECEIPT_OPERATION_MAX 63

/* The kinds of event (the same values as ReceiptKind in trust/receipt.proto). */
typedef enum trust_receipt_kind {
    TRUST_RECEIPT_QUERY = 1,
    TRUST_RECEIPT_REFUSAL = 2,
    TRUST_RECEIPT_CONTRACT_PROPOSED = 3,
    TRUST_RECEIPT_CONTRACT_AGREED = 4,
    TRUST_RECEIPT_CONTRACT_REFUSED = 5,
    TRUST_RECEIPT_CONTRACT_REVOKED = 6,
    TRUST_RECEIPT_IDENTITY_ISSUED = 7,
    TRUST_RECEIPT_IDENTITY_RENEWED = 8,
    TRUST_RECEIPT_IDENTITY_REVOKED = 9,
} trust_receipt_kind;

/* What was decided (Decision in trust/receipt.proto). */
typedef enum trust_receipt_decision {
    TRUST_RECEIPT_ALLOWED = 1,
    TRUST_RECEIPT_REFUSED = 2,
    TRUST_RECEIPT_FAILED = 3, /* allowed, but answering failed: see error_code */
} trust_receipt_decision;

/* One receipt, the plain-C mirror of Receipt in trust/receipt.proto, with fixed-size fields so
 * it can live on the stack or in an array. Strings are NUL-terminated UTF-8 without control
 * characters; "" (or a false has_ flag, or a zero count) means absent. Zero-initialise, then
 * fill. Required: |kind| and |decision|; |time_ms| >= 0. */
typedef struct trust_receipt {
    uint64_t index;  /* its position; trust_ledger_append_batch() sets it */
    int64_t time_ms; /* unix ms; 0: the ledger stamps the current time (see append_batch) */
    uint32_t kind;   /* trust_receipt_kind */
    char request_id[TRUST_RECEIPT_REQUEST_ID_MAX + 1];
    char requester[TRUST_RECEIPT_IDENTITY_MAX + 1];
    char home_city[TRUST_RECEIPT_CITY_MAX + 1];     /* a city id ([a-z][a-z0-9-]*) or "" */
    char provider_city[TRUST_RECEIPT_CITY_MAX + 1]; /* idem */
    size_t ntransit;                                /* path order, city ids */
    char transit[TRUST_RECEIPT_TRANSIT_MAX][TRUST_RECEIPT_CITY_MAX + 1];
    char contract_id[TRUST_RECEIPT_CONTRACT_ID_LEN + 1]; /* 64 lowercase hex or "" */
    char purpose[TRUST_RECEIPT_PURPOSE_MAX + 1];         /* canonical vocabulary */
    size_t ndatasets; /* each non-empty; encoded sorted and de-duplicated */
    char datasets[TRUST_RECEIPT_DATASETS_MAX][TRUST_RECEIPT_DATASET_MAX + 1];
    char operation[TRUST_RECEIPT_OPERATION_MAX + 1];
    bool has_query_digest;
    uint8_t query_digest[TRUST_LEDGER_HASH_LEN];
    bool has_result_digest;
    uint8_t result_digest[TRUST_LEDGER_HASH_LEN];
    uint32_t cells_suppressed;
    uint64_t epsilon_micro; /* epsilon spent, TRUST_STORE_EPS_MICRO per epsilon */
    uint32_t decision;      /* trust_receipt_decision */
    int32_t error_code;     /* a BG_ERR_*, 0 when none */
    /* The other party's ledger: its city (a city id, "" when there is none, e.g. an identity
     * event) and, once known, where it recorded the same event. */
    char counterpart_city[TRUST_RECEIPT_CITY_MAX + 1];
    bool has_counterpart_ref; /* needs counterpart_city */
    uint64_t counterpart_index;
    uint8_t counterpart_leaf_hash[TRUST_LEDGER_HASH_LEN];
    /* For a receipt that used one query of its contract's budget: the contract's count after
     * it. Set by the ledger (trust_ledger_budget); needs |contract_id|. */
    uint32_t queries_used;
} trust_receipt;

/* Checks |r| against the rules above. Returns 0, or BG_ERR_INVAL / BG_ERR_RANGE with the field
 * in |eb| (may be NULL). */
int trust_receipt_check(const trust_receipt *r, bg_errbuf *eb);

/* Appends the canonical encoding of |r| (checked first) to |out|: protobuf, fields in number
 * order, proto3 defaults omitted, datasets sorted by bytes and de-duplicated. The same receipt
 * always gives the same bytes, and trust_receipt_decode() accepts nothing else. Returns 0,
 * BG_ERR_INVAL / BG_ERR_RANGE (see trust_receipt_check(); |eb| says which field) or
 * BG_ERR_NOMEM; |out| is unchanged on failure. */
int trust_receipt_encode(const trust_receipt *r, bg_buf *out, bg_errbuf *eb);

/* Decodes |len| bytes at |data| (untrusted; at most TRUST_RECEIPT_MAX_BYTES) into |*out|.
 * Accepts only a canonical encoding of a receipt that passes trust_receipt_check(): duplicate,
 * reordered or unknown fields, unsorted datasets, non-minimal varints, wrong digest lengths,
 * embedded NULs or over-long strings are all refused, so equal receipts have equal bytes and
 * equal leaf hashes. Returns 0, BG_ERR_INVAL, BG_ERR_RANGE or BG_ERR_NOMEM (|eb| says why;
 * |*out| is untouched on failure). */
int trust_receipt_decode(trust_receipt *out, const uint8_t *data, size_t len, bg_errbuf *eb);

/* ---- Merkle tree hashing (RFC 6962 / RFC 9162 section 2.1), pure ---------------------------- */

/* The leaf hash SHA-256(0x00 || |len| bytes at |data|) into |out|. Returns 0 or BG_ERR_NOMEM. */
int trust_ledger_leaf_hash(const uint8_t *data, size_t len, uint8_t out[TRUST_LEDGER_HASH_LEN]);

/* A proof: |len| hashes, the one nearest the leaves first (RFC 9162 order). Caller's storage. */
typedef struct trust_ledger_proof {
    size_t len;
    uint8_t hash[TRUST_LEDGER_PROOF_MAX][TRUST_LEDGER_HASH_LEN];
} trust_ledger_proof;

/* Verifies an inclusion proof (RFC 9162 section 2.1.3.2, step by step): that the leaf with hash
 * |leaf_hash| is at |index| in the tree of |size| leaves whose root is |root|, given the
 * |proof_len| hashes at |proof| (borrowed; NULL when |proof_len| is 0). Returns 0 when it is
 * proven, BG_ERR_SIGNATURE when the proof does not verify (also index >= size, or a proof of
 * the wrong length), BG_ERR_NOMEM. */
int trust_ledger_verify_inclusion(const uint8_t leaf_hash[TRUST_LEDGER_HASH_LEN], uint64_t index,
                                  uint64_t size, const uint8_t (*proof)[TRUST_LEDGER_HASH_LEN],
                                  size_t proof_len, const uint8_t root[TRUST_LEDGER_HASH_LEN]);

/* Verifies a consistency proof (RFC 9162 section 2.1.4.2, step by step): that the tree of |m|
 * leaves with root |root_m| is a prefix of the tree of |n| leaves with root |root_n|. As in
 * RFC 9162, m == n needs an empty proof and equal roots, and m == 0 an empty proof (every tree
 * extends the empty one). Returns 0 when proven, BG_ERR_SIGNATURE when not (also m > n),
 * BG_ERR_NOMEM. */
int trust_ledger_verify_consistency(uint64_t m, uint64_t n,
                                    const uint8_t root_m[TRUST_LEDGER_HASH_LEN],
                                    const uint8_t root_n[TRUST_LEDGER_HASH_LEN],
                                    const uint8_t (*proof)[TRUST_LEDGER_HASH_LEN],
                                    size_t proof_len);

/* ---- The ledger ---------------------------------------------------------------------------- */

/* Opens (creating if needed, mode 0700) the ledger in directory |dir| with an initial LMDB map
 * of |map_size| bytes (0: 64 MiB; it grows on MDB_MAP_FULL), and its checkpoint signing key
 * "checkpoint.key" there (a new Ed25519 key, mode 0600, on first open; a key file readable by
 * group or others is refused). Returns 0 and |*out| (caller frees with trust_ledger_close()),
 * or BG_ERR_STORE / BG_ERR_NOMEM / BG_ERR_IO with "dir: reason" in |eb| (may be NULL). A ledger
 * in another format than TRUST_LEDGER_VERSION is refused with BG_ERR_STORE. */
int trust_ledger_open(trust_ledger **out, const char *dir, size_t map_size, bg_errbuf *eb);
/* Closes |l|; no call on it may be running. The signing key is wiped. NULL is a no-op. */
void trust_ledger_close(trust_ledger *l);

/* The number of receipts into |*size|. Returns 0 or BG_ERR_STORE. */
int trust_ledger_size(trust_ledger *l, uint64_t *size);

/* The Merkle tree root of the first |size| receipts (|size| <= the current size; 0 gives
 * SHA-256 of the empty string) into |root|, from at most 64 stored subtree hashes. Returns 0,
 * BG_ERR_RANGE (|size| beyond the ledger), BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_ledger_root(trust_ledger *l, uint64_t size, uint8_t root[TRUST_LEDGER_HASH_LEN]);
/* The current size and its root, read in one transaction. Returns as trust_ledger_root(). */
int trust_ledger_head(trust_ledger *l, uint64_t *size, uint8_t root[TRUST_LEDGER_HASH_LEN]);

/* Appends the |n| receipts at |receipts| (borrowed for the call; not modified) in order, in ONE
 * write transaction (group commit: one sync for the batch). Each receipt is checked, given the
 * next index and encoded canonically; its time is |time_ms|, or the current time when 0, but
 * never earlier than the receipt before it (a stepped-back clock is clamped, so time order is
 * index order and a time range is an index range). The tree's new subtree hashes and the
 * secondary indexes are written in the same transaction. On MDB_MAP_FULL the map is doubled
 * and the batch retried. When |out_indexes| / |out_leaf_hashes| are not NULL they receive,
 * after the commit, each receipt's index and leaf hash (|n| entries each).
 * Returns 0 (all appended), or nothing is appended and: BG_ERR_INVAL / BG_ERR_RANGE (receipt
 * |i| fails trust_receipt_check(); the message names it in |eb|, which may be NULL),
 * BG_ERR_NOMEM, or BG_ERR_STORE (LMDB or the disk failed; reason in |eb|). n == 0 is a no-op.
 * Sign a checkpoint afterwards, at most once per batch, with trust_ledger_checkpoint_sign(). */
int trust_ledger_append_batch(trust_ledger *l, const trust_receipt *receipts, size_t n,
                              uint64_t *out_indexes,
                              uint8_t (*out_leaf_hashes)[TRUST_LEDGER_HASH_LEN], bg_errbuf *eb);

/* Usage control's query count, kept in the ledger so that a query's use of its contract's
 * budget and its receipt commit in ONE transaction: no receipt without its count, no count
 * without its receipt, and concurrent queries can never overspend (the writer checks each
 * against the count the receipts before it left). One per receipt of a batch. */
typedef struct trust_ledger_budget {
    /* In: how many queries the receipt's contract may have used in this ledger in all; 0: the
     * receipt uses none (refusals, replays, other kinds). Non-zero needs a contract id. */
    uint32_t limit;
    /* Out: the contract's count after the receipt (its |queries_used|); 0 when it used none. */
    uint32_t used;
    /* Out: the count had already reached |limit|: nothing was counted and the receipt was
     * recorded as a refusal instead (kind REFUSAL, decision REFUSED, error_code
     * BG_ERR_BUDGET_EXHAUSTED, no result digest, no cells suppressed). Release nothing. */
    bool exhausted;
} trust_ledger_budget;

/* The number of queries contract |contract_id| (64 hex digits) has used in this ledger, into
 * |*used| (0 when none). Returns 0, BG_ERR_INVAL (malformed id) or BG_ERR_STORE. */
int trust_ledger_budget_used(trust_ledger *l, const char *contract_id, uint32_t *used);

/* trust_ledger_append_batch() and trust_ledger_checkpoint_sign() for |city| in the SAME write
 * transaction: the batch and the signed checkpoint of the new head commit together, with one
 * sync. The note is appended to |note| (may be NULL). |budgets| (NULL: none; else |n| entries,
 * |used| and |exhausted| written after the commit) counts queries in the same transaction.
 * Returns as trust_ledger_append_batch() (BG_ERR_TLS when signing failed; nothing is then
 * appended; BG_ERR_INVAL also for a budget limit on a receipt without a contract, or a
 * receipt whose |queries_used| is set by the caller). */
int trust_ledger_append_signed(trust_ledger *l, const trust_receipt *receipts, size_t n,
                               trust_ledger_budget *budgets, uint64_t *out_indexes,
                               uint8_t (*out_leaf_hashes)[TRUST_LEDGER_HASH_LEN],
                               const char *city, bg_buf *note, bg_errbuf *eb);

/* Reads receipt |index|: its stored bytes appended to |bytes| and/or decoded into |*out| (either
 * may be NULL). Returns 0, BG_ERR_NOTFOUND (no such index), BG_ERR_NOMEM or BG_ERR_STORE (also
 * when the stored bytes do not decode: see trust_ledger_verify()). */
int trust_ledger_get(trust_ledger *l, uint64_t index, bg_buf *bytes, trust_receipt *out);

/* The inclusion proof of leaf |index| in the tree of the first |tree_size| receipts (RFC 6962
 * PATH) into |*proof|, in O(log n) reads. Returns 0, BG_ERR_RANGE (index >= tree_size or
 * tree_size beyond the ledger), BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_ledger_inclusion_proof(trust_ledger *l, uint64_t index, uint64_t tree_size,
                                 trust_ledger_proof *proof);
/* The consistency proof between the trees of the first |m| and first |n| receipts (RFC 6962
 * PROOF; empty when m == 0 or m == n) into |*proof|, in O(log n) reads. Returns 0,
 * BG_ERR_RANGE (m > n or n beyond the ledger), BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_ledger_consistency_proof(trust_ledger *l, uint64_t m, uint64_t n,
                                   trust_ledger_proof *proof);

/* A query over the secondary indexes. NULL or "" fields do not filter; all given ones must
 * match. Times are unix ms: |time_from| inclusive, |time_until| exclusive (0: no bound). */
typedef struct trust_ledger_filter {
    const char *contract_id;
    const char *requester;
    const char *counterpart_city;
    int64_t time_from;
    int64_t time_until;
} trust_ledger_filter;

/* Writes into |out| (room for |limit|) the indexes, ascending, of up to |limit| receipts with
 * index >= |start| that match |f| (NULL: all), and their number into |*n|. |*next| gets the
 * |start| of the next page; a page with fewer than |limit| entries is the last. Works from the
 * indexes, not by scanning receipts: the time bounds become an index range (times are
 * non-decreasing), the rarest of the given keys drives the walk and the others are probed.
 * One read transaction. Returns 0, BG_ERR_NOMEM or BG_ERR_STORE (|*n| and |*next| untouched).
 */
int trust_ledger_query(trust_ledger *l, const trust_ledger_filter *f, uint64_t start, size_t limit,
                       uint64_t *out, size_t *n, uint64_t *next);

/* Checks the ledger's integrity in one read transaction: recomputes leaf hashes from the stored
 * receipt bytes and every checked subtree hash from its children, then the root at the size
 * of the last stored checkpoint, whose signature must verify with the ledger's key and whose
 * root must match. |full| checks every receipt and node; otherwise the most recent receipts
 * (up to 1024), the nodes above them, the root path and the checkpoint. Returns 0 (intact),
 * BG_ERR_SIGNATURE (tampered or corrupt: |*bad_index| is the first bad receipt's index, or
 * UINT64_MAX when only the checkpoint or the root disagrees), BG_ERR_NOMEM or BG_ERR_STORE.
 * |*bad_index| is UINT64_MAX whenever the result is not BG_ERR_SIGNATURE. */
int trust_ledger_verify(trust_ledger *l, bool full, uint64_t *bad_index);

/* ---- Checkpoints (C2SP tlog-checkpoint in a C2SP signed note, Ed25519) --------------------- */

#define TRUST_LEDGER_ORIGIN_MAX 128

/* Writes the checkpoint origin and key name of |city|'s ledger, "<city>.gba/baygate/ledger",
 * into |out| (|cap| bytes). Returns 0 or BG_ERR_INVAL (not a city id, or does not fit). */
int trust_ledger_origin(const char *city, char *out, size_t cap);

/* Appends the ledger key's verifier key "<origin>+<8 hex key id>+<base64(0x01 || public key)>"
 * (the signed-note "vkey" format) for |city| to |out|; key id = the first 4 bytes of
 * SHA-256(origin || 0x0A || 0x01 || public key). Returns 0, BG_ERR_INVAL or BG_ERR_NOMEM. */
int trust_ledger_verifier_key(trust_ledger *l, const char *city, bg_buf *out);

/* Signs a checkpoint of the current head, "<origin>\n<size>\n<base64 root>\n", as a signed note
 * ending "\n— <origin> <base64(key id || signature)>\n", stores it as the last checkpoint (one
 * write transaction, so the stored note always matches the tree), and appends it to |note|.
 * |size| (may be NULL) receives its tree size. Call at most once per committed batch.
 * Returns 0, BG_ERR_INVAL (city), BG_ERR_NOMEM, BG_ERR_TLS (signing failed) or BG_ERR_STORE. */
int trust_ledger_checkpoint_sign(trust_ledger *l, const char *city, bg_buf *note, uint64_t *size);
/* Appends the last signed checkpoint note to |note|. Returns 0, BG_ERR_NOTFOUND (none signed
 * yet), BG_ERR_NOMEM or BG_ERR_STORE. */
int trust_ledger_checkpoint_last(trust_ledger *l, bg_buf *note);

/* Verifies the C2SP signed note of |len| bytes at |note| (untrusted) against the verifier key
 * |vkey| (NUL-terminated, "<name>+<hex id>+<base64>", Ed25519 only): the note must be UTF-8
 * without control characters but newline, with text, a blank line and signature lines; lines
 * of other keys are ignored, a line of this key (same name and id) that fails rejects the note,
 * and at least one must verify. |*text_len| (may be NULL) gets the length of the signed text
 * (which starts at |note| and ends with its final newline). Returns 0, BG_ERR_INVAL (malformed
 * |vkey|) or BG_ERR_SIGNATURE (malformed note, or no valid signature by this key). Pure. */
int trust_ledger_note_verify(const uint8_t *note, size_t len, const char *vkey, size_t *text_len);

/* A parsed checkpoint. */
typedef struct trust_ledger_checkpoint {
    char origin[TRUST_LEDGER_ORIGIN_MAX + 1];
    uint64_t size;
    uint8_t root[TRUST_LEDGER_HASH_LEN];
} trust_ledger_checkpoint;

/* Parses the checkpoint text (not the note) of |len| bytes at |text|: origin, decimal size
 * without leading zeroes, base64 root of 32 bytes, optional non-empty extension lines, each
 * line ending in a newline. Returns 0 or BG_ERR_INVAL (|*out| untouched). Pure. */
int trust_ledger_checkpoint_parse(const uint8_t *text, size_t len, trust_ledger_checkpoint *out);

/* trust_ledger_note_verify() then trust_ledger_checkpoint_parse(), and the origin must equal
 * the verifier key's name (so one log's key cannot vouch for another log's head). This is
 * what `baygatectl verify` runs on a checkpoint. Returns 0 and |*out|, BG_ERR_INVAL (malformed
 * |vkey|) or BG_ERR_SIGNATURE (anything else). Pure. */
int trust_ledger_checkpoint_verify(const uint8_t *note, size_t len, const char *vkey,
                                   trust_ledger_checkpoint *out);

/* ---- Cosignatures: cities witness each other's checkpoints (C2SP tlog-cosignature) ---------- */

/* Appends this ledger key's witness verifier key "<name>+<hex id>+<base64(0x04 || key)>" for
 * witness name |name| (e.g. "<city>.gba/baygate/witness"). Returns 0, BG_ERR_INVAL, NOMEM. */
int trust_ledger_witness_key(trust_ledger *l, const char *name, bg_buf *out);
/* Appends the cosignature/v1 line "— <name> <base64(id || 8-byte big-endian |ts| || sig)>\n"
 * over the checkpoint text |text| (|len| bytes, ending in a newline, no signatures), signed as
 * "cosignature/v1\ntime <ts>\n" || text with this ledger's Ed25519 key. Returns 0,
 * BG_ERR_INVAL, BG_ERR_NOMEM or BG_ERR_TLS. */
int trust_ledger_cosign(trust_ledger *l, const char *name, const uint8_t *text, size_t len,
                        uint64_t ts, bg_buf *line);
/* Verifies cosignature |line| (NUL-terminated) of checkpoint text |text| by the witness key
 * |witness_vkey|; |*ts| (may be NULL) gets its time. Returns 0, BG_ERR_INVAL (malformed key) or
 * BG_ERR_SIGNATURE. Pure. */
int trust_ledger_cosign_verify(const uint8_t *text, size_t len, const char *line,
                               const char *witness_vkey, uint64_t *ts);
#endif /* TRUST_LEDGER_H */
