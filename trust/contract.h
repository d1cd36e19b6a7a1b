/* trust/contract.h: the digital contract between a home and a provider city (issue 3): its
 * body as plain C, the canonical encoding and id of the body, the wire/storage encoding of a
 * whole contract, and the gateways' signatures over it. protobuf-c and OpenSSL stay behind this
 * header. Not for: translating vocabularies, narrowing terms, storing contracts or per-query
 * usage control (those read a verified contract's body). Format: docs/contracts-model.md. */
#ifndef TRUST_CONTRACT_H
#define TRUST_CONTRACT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/bytes.h"
#include "base/err.h"
#include "trust/tls.h"

/* Bounds applied when encoding and decoding; anything larger is BG_ERR_RANGE. */
#define TRUST_CONTRACT_MAX_BYTES 65536 /* one encoded Contract */
#define TRUST_CONTRACT_MAX_STR 256     /* bytes in any string field but a revocation reason */
#define TRUST_CONTRACT_MAX_REASON 1024 /* bytes in a revocation reason */
#define TRUST_CONTRACT_MAX_LIST 64     /* entries in any repeated field */
#define TRUST_CONTRACT_MAX_CERT 8192   /* bytes of a signer certificate (DER) */
#define TRUST_CONTRACT_MAX_SIG 512     /* bytes of a signature */
#define TRUST_CONTRACT_ID_LEN 64       /* hex characters of an id, without the NUL */

/* One city's terms as written in its own vocabulary (UTF-8, untranslated). |city| NULL or ""
 * means "absent" (allowed only for provider_terms of an unsigned REQUESTED contract). */
typedef struct trust_contract_terms {
    char *city;
    char *purpose;
    char **operations;
    size_t noperations;
    char *legal_basis; /* NULL or "" when none */
} trust_contract_terms;

/* The signed part of a contract. Every pointer is owned by the struct (malloc'd) and freed by
 * trust_contract_body_dispose(); strings are NUL-terminated UTF-8 without embedded NULs.
 * Order and duplicates in the lists do not matter: the canonical encoding sorts them by bytes
 * and drops duplicates, so two bodies that differ only there have the same id. */
typedef struct trust_contract_body {
    char *requester; /* SPIFFE id, spiffe://<home_city>.gba/<role>[/<id>] */
    char *home_city; /* city ids, [a-z][a-z0-9-]*, different from each other */
    char *provider_city;
    char **datasets; /* "<provider_city>/<name>" */
    size_t ndatasets;
    char *purpose;     /* canonical vocabulary */
    char **operations; /* canonical vocabulary */
    size_t noperations;
    char *legal_basis;      /* canonical; NULL or "" when none */
    int64_t valid_from;     /* unix seconds UTC, inclusive, >= 0 */
    int64_t valid_until;    /* unix seconds UTC, exclusive, > valid_from */
    uint32_t min_cell_size; /* >= 1 */
    uint32_t max_queries;   /* query budget; 0 = no count cap (both cities agreed to none) */
    bool has_epsilon;
    double epsilon; /* finite, > 0 when has_epsilon; ignored (encoded as absent) otherwise */
    trust_contract_terms home_terms; /* required; city == home_city */
    trust_contract_terms
        provider_terms; /* city == provider_city once the provider has translated */
    char *nonce;        /* optional (NULL or ""), printable ASCII */
    int64_t created_at; /* unix seconds UTC, >= 0 */
} trust_contract_body;

/* Zeroes |b|: all strings NULL, lists empty. */
void trust_contract_body_init(trust_contract_body *b);
/* Frees everything |b| owns and zeroes it; safe on an initialised or disposed body. */
void trust_contract_body_dispose(trust_contract_body *b);
/* Deep-copies |src| into |dst| (initialised or disposed; overwritten). Returns 0 or
 * BG_ERR_NOMEM, leaving |dst| initialised (empty) on failure. */
int trust_contract_body_copy(trust_contract_body *dst, const trust_contract_body *src);

/* Checks |b| against the rules above and, when |complete|, also requires provider terms (a
 * body must be complete before anyone signs it). Returns 0, or BG_ERR_INVAL / BG_ERR_RANGE
 * with the field and the reason in |eb|. */
int trust_contract_body_check(const trust_contract_body *b, bool complete, bg_errbuf *eb);

/* Appends the canonical encoding of |b| to |out| (protobuf ContractBody, fields in number
 * order, repeated strings sorted by bytes and de-duplicated, defaults omitted). Deterministic:
 * the same body always gives the same bytes. Checks |b| first (incomplete allowed). Returns 0,
 * BG_ERR_NOMEM, or BG_ERR_INVAL / BG_ERR_RANGE with |eb|; |out| is unchanged on failure. */
int trust_contract_body_encode(const trust_contract_body *b, bg_buf *out, bg_errbuf *eb);

/* Writes the id of |b| (lowercase hex SHA-256 of its canonical encoding, NUL-terminated) into
 * |id|. Returns 0 or an error of trust_contract_body_encode(). */
int trust_contract_body_id(const trust_contract_body *b, char id[TRUST_CONTRACT_ID_LEN + 1],
                           bg_errbuf *eb);

/* Contract states, as in the Dataspace Protocol's negotiation plus REVOKED and EXPIRED. Which
 * signatures each state requires is a rule of the format (docs/contracts-model.md):
 * REQUESTED: no provider signature; AGREED: provider only; FINALIZED, EXPIRED: both;
 * TERMINATED: not both; REVOKED: both plus a signed revocation. */
typedef enum trust_contract_state {
    TRUST_CONTRACT_REQUESTED = 1,
    TRUST_CONTRACT_AGREED = 2,
    TRUST_CONTRACT_FINALIZED = 3,
    TRUST_CONTRACT_TERMINATED = 4,
    TRUST_CONTRACT_REVOKED = 5,
    TRUST_CONTRACT_EXPIRED = 6,
} trust_contract_state;

/* Which gateway signs: the requester's (home) or the data holder's (provider). */
typedef enum trust_contract_role {
    TRUST_CONTRACT_HOME = 1,
    TRUST_CONTRACT_PROVIDER = 2,
} trust_contract_role;

/* Static name of |s| ("FINALIZED"), "?" for an unknown value. */
const char *trust_contract_state_name(trust_contract_state s);

/* A contract: body, id, state, up to two signatures and an optional revocation. Opaque; not
 * thread-safe for mutation, safe to read from many threads once no one mutates it. */
typedef struct trust_contract trust_contract;

/* A signed revocation (state REVOKED), borrowed from its contract. */
typedef struct trust_revocation {
    const char *contract_id;
    const char *city;   /* revoking city: the home or the provider city */
    int64_t revoked_at; /* unix seconds UTC */
    const char *reason;
    const char *signer; /* spiffe://<city>.gba/gateway */
} trust_revocation;

/* A new REQUESTED contract with a deep copy of |body| (checked, incomplete allowed) and its id.
 * Returns 0 and |*out| (caller frees with trust_contract_free()), or BG_ERR_NOMEM /
 * BG_ERR_INVAL / BG_ERR_RANGE with |eb|. */
int trust_contract_new(trust_contract **out, const trust_contract_body *body, bg_errbuf *eb);
void trust_contract_free(trust_contract *c); /* NULL is a no-op */

/* Borrowed views, valid until |c| is freed or changed. */
const trust_contract_body *trust_contract_get_body(const trust_contract *c);
const char *trust_contract_get_id(const trust_contract *c); /* 64 lowercase hex characters */
trust_contract_state trust_contract_get_state(const trust_contract *c);
bool trust_contract_has_signature(const trust_contract *c, trust_contract_role role);
/* The signer's SPIFFE id for |role|, or NULL when that side has not signed. */
const char *trust_contract_get_signer(const trust_contract *c, trust_contract_role role);
/* The revocation of a REVOKED contract, or NULL. */
const trust_revocation *trust_contract_get_revocation(const trust_contract *c);

/* Appends the encoding of |c| (protobuf Contract, canonical: the only encoding that
 * trust_contract_decode() accepts for it) to |out|. Returns 0, BG_ERR_NOMEM or BG_ERR_RANGE
 * with |eb|; |out| is unchanged on failure. */
int trust_contract_encode(const trust_contract *c, bg_buf *out, bg_errbuf *eb);

/* Decodes |len| bytes at |data| (peer input: never trusted) into a new contract. Accepts only
 * the canonical encoding: within bounds, no unknown fields, every required field present and
 * well-formed (trust_contract_body_check(), complete once signed), the id equal to the digest
 * of the body, a known state with the signatures that state requires, and bytes equal to what
 * trust_contract_encode() would produce, so that no two accepted inputs mean the same contract.
 * Does not check signatures: call trust_contract_verify(). Returns 0 and |*out| (caller frees
 * with trust_contract_free()), BG_ERR_NOMEM, or BG_ERR_INVAL / BG_ERR_RANGE with the reason in
 * |eb|; |*out| is untouched on failure. */
int trust_contract_decode(trust_contract **out, const uint8_t *data, size_t len, bg_errbuf *eb);

/* Signs the (complete) body of |c| as |role| with |t|'s gateway key and certificate, which
 * must be spiffe://<city>.gba/gateway for the body's home (HOME) or provider (PROVIDER) city.
 * Message: "baygate-contract-v1\n" || "home\n" or "provider\n" || canonical body bytes.
 * Replaces an earlier signature of that role and moves the state: provider signed -> AGREED,
 * both -> FINALIZED (home alone stays REQUESTED). Only REQUESTED and AGREED contracts can be
 * signed. Returns 0, BG_ERR_NOMEM, BG_ERR_INVAL (state, incomplete body), BG_ERR_IDENTITY
 * (our certificate is not that city's gateway) or BG_ERR_TLS (signing failed), with |eb|; |c| is
 * unchanged on failure. Cheap enough for negotiation, never for a per-query path. */
int trust_contract_sign(trust_contract *c, trust_contract_role role, trust_tls *t, bg_errbuf *eb);

/* Verifies every signature on |c| against |t|'s trust bundle at time |now| (unix seconds):
 * each signer certificate is well-formed DER, chains to the bundle through a CA whose URI SAN
 * is spiffe://<city>.gba (a city's CA speaks only for its own city), carries the URI SAN
 * spiffe://<city>.gba/gateway equal to the recorded signer, where <city> is the body's home
 * (HOME) or provider (PROVIDER) city, uses the recorded algorithm, and the signature verifies
 * over the canonical body bytes; the state has the signatures it requires; a revocation is
 * signed by the home or provider gateway and names this contract; EXPIRED needs now >=
 * valid_until. Returns 0 (and marks |c| verified), or BG_ERR_INVAL (state, missing signature),
 * BG_ERR_CERT (certificate or signature does not verify) or BG_ERR_IDENTITY (signer is not the
 * right city's gateway) with what failed in |eb|.
 * Verification is meant to run ONCE per contract, when it is received or loaded: callers keep
 * the verified contract (or trust_contract_is_verified()) and must not verify per query; usage
 * control then compares times and counters only. */
int trust_contract_verify(trust_contract *c, trust_tls *t, int64_t now, bg_errbuf *eb);
/* True after a successful trust_contract_verify() and until |c| is changed again. */
bool trust_contract_is_verified(const trust_contract *c);

/* Moves |c| to TERMINATED (from REQUESTED or AGREED) or EXPIRED (from FINALIZED when now >=
 * valid_until); other transitions are BG_ERR_INVAL with |eb|. REVOKED: trust_contract_revoke. */
int trust_contract_set_state(trust_contract *c, trust_contract_state state, int64_t now,
                             bg_errbuf *eb);

/* Revokes a FINALIZED (or EXPIRED) |c| as |t|'s gateway, which must be the home or provider
 * city's: attaches a signed revocation (|reason| may be NULL) at |now| and moves to REVOKED.
 * Returns 0 or BG_ERR_* as trust_contract_sign(), with |eb|; |c| is unchanged on failure. */
int trust_contract_revoke(trust_contract *c, trust_tls *t, int64_t now, const char *reason,
                          bg_errbuf *eb);

#endif /* TRUST_CONTRACT_H */
