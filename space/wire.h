/* space/wire.h: the protobuf wire form (space/space.proto) of queries, results, and the legs
 * a home gateway sends providers and their answers. Decoders take hostile bytes from another
 * city's gateway: every count, length, enum and number is checked against space/space.h
 * before it reaches a struct, and anything out of bounds is rejected whole. Plain functions,
 * any thread, no I/O. Not for: checking a query against a schema (space_query_check()),
 * transport, signing or the ledger. */
#ifndef SPACE_WIRE_H
#define SPACE_WIRE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "space/space.h"

#define SPACE_WIRE_MAX_BYTES (64u << 20) /* largest encoded message a decoder accepts */
#define SPACE_WIRE_MAX_BINS (1u << 22)   /* bins summed over all cells of one result */
#define SPACE_WIRE_MAX_PARTIES 16
#define SPACE_WIRE_MAX_CERT 16384  /* DER bytes of one participant's certificate */
#define SPACE_WIRE_QUERY_ID_MAX 64 /* query ids are [0-9a-f-]{1,64} */

/* A participant of secure aggregation: its city and its gateway certificate (DER). */
typedef struct space_party {
    char city[64];
    uint8_t *cert_der; /* owned by the leg that holds the party */
    size_t cert_len;
} space_party;

/* What the home gateway sends one provider for one query. */
typedef struct space_leg {
    char query_id[SPACE_WIRE_QUERY_ID_MAX + 1];
    space_query q;
    space_party parties[SPACE_WIRE_MAX_PARTIES]; /* distinct cities */
    size_t nparties;
    bool masked; /* the provider masks its grids for secure aggregation among |parties| */
} space_leg;

/* A provider's answer to one leg: |result| when |error_code| is empty, else an error (and an
 * empty result: op 0, no cells). result.rows_scanned never travels and decodes as 0. */
typedef struct space_leg_answer {
    char city[64];
    space_result result; /* owned */
    bool masked;         /* the result's bins are masked (sums mod 2^64 unmask them) */
    char error_code[64];
    char error_msg[256];
    bool has_receipt; /* the provider's ledger entry for this release */
    char receipt_city[64];
    uint64_t receipt_index;
    uint8_t receipt_leaf[32];
    uint32_t receipt_queries_used; /* the contract's query count after it, in that ledger */
} space_leg_answer;

/* Encoders: check |in| by the decoder's rules, then write a malloc'd message to |*out| and
 * its length to |*len| (caller frees with free()). On failure |*out| and |*len| are untouched.
 * Return 0, BG_ERR_INVAL (|in| breaks a rule below, so no decoder would accept it) or
 * BG_ERR_NOMEM.
 *
 * Decoders: read |len| bytes at |buf| into |*out| (caller's storage; on success it owns
 * memory to release with the matching _dispose / space_result_dispose()). On failure |*out|
 * is untouched and nothing is allocated. Return 0, BG_ERR_INVAL for anything that is not a
 * well-formed message within these rules, or BG_ERR_NOMEM.
 *
 * Rules (both directions): strings fit their buffers (NUL included) and are valid UTF-8
 * without control characters (error_msg: valid UTF-8); dataset, city, group_by and filter
 * field names are non-empty; op, cmp and supp are known values; counts within SPACE_MAX_*
 * and the limits above; a filter has one value unless its cmp is "in", and numbers or
 * category names as its is_cat says; edges, probs, filter numbers and every double of a
 * result are finite, M2 values and noise_scale >= 0; a result has at most SPACE_MAX_CELLS
 * cells with strictly ascending keys (each < 65536, exactly ngroup of them), at most
 * SPACE_MAX_GRID bins per cell and SPACE_WIRE_MAX_BINS in all, bin_supp values known;
 * has_qvals cells carry their quantiles (all SPACE_MAX_PROBS slots travel: a cell does not
 * record how many the query asked for). query_id matches [0-9a-f-]{1,64}; parties have
 * distinct cities and 1..SPACE_WIRE_MAX_CERT certificate bytes; a leg answer has a city, a
 * result exactly when error_code is empty, and a receipt with a city when has_receipt. */
int space_query_encode(const space_query *in, uint8_t **out, size_t *len);
int space_query_decode(const uint8_t *buf, size_t len, space_query *out);

int space_result_encode(const space_result *in, uint8_t **out, size_t *len);
int space_result_decode(const uint8_t *buf, size_t len, space_result *out);

int space_leg_encode(const space_leg *in, uint8_t **out, size_t *len);
int space_leg_decode(const uint8_t *buf, size_t len, space_leg *out);
/* Frees the parties' certificates; NULL-safe, idempotent. */
void space_leg_dispose(space_leg *leg);

int space_leg_answer_encode(const space_leg_answer *in, uint8_t **out, size_t *len);
int space_leg_answer_decode(const uint8_t *buf, size_t len, space_leg_answer *out);
/* Frees the result; NULL-safe, idempotent. */
void space_leg_answer_dispose(space_leg_answer *a);

#endif /* SPACE_WIRE_H */
