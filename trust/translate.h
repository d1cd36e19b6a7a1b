/* trust/translate.h: the narrowing translator between city contract vocabularies. The home
 * gateway turns a proposal written in its city's terms into the canonical interlingua
 * (trust_translate_home); the provider gateway turns that into its own terms and applies the
 * stricter rules of both cities (trust_translate_provider). Either step refuses with EVERY
 * problem it finds, never just the first, and never widens what either city allows.
 * Not for: signing, encoding or storing contracts (trust/contract.h), or enforcing them on
 * queries. Plain C on conf/profile.h: no OpenSSL, no protobuf, no I/O, no globals; every
 * function is reentrant and may be called from any thread. */
#ifndef TRUST_TRANSLATE_H
#define TRUST_TRANSLATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "conf/profile.h"

/* Bounds on what a proposal may carry (more is an "invalid" refusal). */
#define TRUST_MAX_DATASETS 64
#define TRUST_MAX_OPERATIONS 32
#define TRUST_MAX_TERM_BYTES 256

/* ---- refusals ---- */

typedef enum trust_refusal_code {
    TRUST_REFUSE_UNTRANSLATABLE = 0, /* "untranslatable": term unknown or not expressible */
    TRUST_REFUSE_FORBIDDEN_PURPOSE,  /* "forbidden_purpose": a city forbids the purpose */
    TRUST_REFUSE_LEGAL_BASIS,        /* "legal_basis_required": missing or wrong legal basis */
    TRUST_REFUSE_OPERATION,          /* "operation_refused": a city's rules refuse it */
    TRUST_REFUSE_DURATION,           /* "duration_exceeded": valid_days above the home max */
    TRUST_REFUSE_INVALID,            /* "invalid": malformed field or a cap exceeded */
} trust_refusal_code;

/* The API string of |code| (the names above); "invalid" for an unknown value. Static. */
const char *trust_refusal_code_name(trust_refusal_code code);

/* One reason for refusing. All strings owned by the list that holds the refusal. */
typedef struct trust_refusal {
    trust_refusal_code code;
    char *field;   /* proposal field: "purpose", "operations", "legal_basis", "datasets",
                      "valid_days", "max_queries", "epsilon", "requester", "home_city",
                      "provider_city" */
    char *term;    /* the offending term or value as given (home term, or canonical name on
                      the provider side); may be "" but never NULL */
    char *profile; /* city whose profile or rule refuses, e.g. "hongkong"; never NULL */
    char *reason;  /* one English sentence for people; never NULL */
} trust_refusal;

/* A growable list of refusals in the order found. Invariant: n <= cap. */
typedef struct trust_refusals {
    trust_refusal *items;
    size_t n;
    size_t cap;
} trust_refusals;

void trust_refusals_init(trust_refusals *r);
/* Frees every refusal and empties the list; |r| may be reused (init not needed again). */
void trust_refusals_dispose(trust_refusals *r);
/* Appends a refusal (copies every string; NULL |term| is stored as ""). Returns 0 or
 * BG_ERR_NOMEM (the list is then unchanged). Callers outside trust/ rarely need it. */
int trust_refusals_add(trust_refusals *r, trust_refusal_code code, const char *field,
                       const char *term, const char *profile, const char *reason);

/* ---- input: a proposal in the home vocabulary (everything borrowed) ---- */

typedef struct trust_proposal {
    const char *requester;     /* SPIFFE id spiffe://<home_city>.gba/<role>/<id> */
    const char *home_city;     /* must equal the home profile's city */
    const char *provider_city; /* the data holder; every dataset must live there */
    const char *purpose;       /* home purpose term, e.g. "科研" */
    const char *const *operations; /* home operation terms, >= 1 */
    size_t noperations;
    const char *legal_basis;   /* home legal-basis term or NULL */
    const char *const *datasets; /* "<provider_city>/<name>", name [a-z0-9][a-z0-9._-]{0,127} */
    size_t ndatasets;
    uint32_t valid_days;  /* >= 1 */
    uint32_t max_queries; /* 0 = none requested */
    double epsilon;       /* privacy budget; 0 = none requested; finite, >= 0 */
} trust_proposal;

/* ---- the wording of a contract in one city's vocabulary ---- */

typedef struct trust_terms {
    char *city;
    char *language;
    char *law;
    char *purpose;     /* that city's purpose term */
    char **operations; /* that city's operation terms */
    size_t noperations;
    char *legal_basis; /* that city's legal-basis term or NULL */
} trust_terms;

void trust_terms_dispose(trust_terms *t); /* frees the strings, zeroes |t|; NULL is a no-op */

/* ---- output of the home step: the canonical proposal ---- */

/* What travels to the provider city. Every string owned; release with
 * trust_canonical_dispose(). Canonical name lists are in canonical-vocabulary order
 * (conf_canon_names()), without duplicates, so equal meaning gives equal bytes. */
typedef struct trust_canonical {
    char *requester;
    char *home_city;
    char *provider_city;
    char **purposes; /* canonical purposes (normally one) */
    size_t npurposes;
    char **operations; /* canonical operations requested */
    size_t noperations;
    char *legal_basis; /* canonical legal basis or NULL */
    char **datasets;   /* in the order given */
    size_t ndatasets;
    uint32_t valid_days;
    uint32_t max_queries;     /* 0 = none */
    double epsilon;           /* 0 = none */
    trust_terms home_terms;   /* as the requester wrote them (operations deduplicated) */
} trust_canonical;

void trust_canonical_dispose(trust_canonical *c); /* zeroes |c|; NULL is a no-op */

/* ---- output of the provider step: the agreed, narrowed contract ---- */

typedef struct trust_agreement {
    char *requester;
    char *home_city;
    char *provider_city;
    char **datasets;
    size_t ndatasets;
    char **purposes; /* canonical */
    size_t npurposes;
    char **operations; /* effective canonical operations, canonical-vocabulary order */
    size_t noperations;
    char *legal_basis;        /* canonical or NULL */
    trust_terms home_terms;     /* the home city's wording */
    trust_terms provider_terms; /* the provider's purpose term, the minimal set of its
                                   operation terms covering |operations|, its legal-basis
                                   term. The canonical names above are what is enforced. */
    /* effective constraints: the stricter of request, home rules and provider rules */
    uint32_t min_cell_size; /* max(home k, provider k) */
    int64_t valid_from;     /* Unix seconds, UTC (= |now|) */
    int64_t valid_until;    /* valid_from + valid_days * 86400 */
    uint32_t valid_days;    /* min(requested, home max, provider max) */
    uint32_t max_queries;   /* min of the request and the non-zero caps; 0 = unlimited */
    double epsilon;         /* likewise; 0 = no privacy budget */
} trust_agreement;

void trust_agreement_dispose(trust_agreement *a); /* zeroes |a|; NULL is a no-op */

/* ---- the two steps ---- */

/* Home side: validates |proposal| (borrowed) against |home| (borrowed) and maps it to the
 * canonical vocabulary in |*out| (caller's storage, released with trust_canonical_dispose()).
 * Checks: home_city is the profile's city; requester, provider_city, datasets well formed;
 * every term known (untranslatable: field, term, profile); purpose not forbidden at home;
 * legal basis present and acceptable when the purpose term requires one; model_training only
 * if home allows it (operation_refused); valid_days in 1..home max (duration_exceeded above);
 * max_queries and epsilon within the home caps (invalid).
 * Returns 0 (|*out| filled, |refusals| untouched); BG_ERR_INVAL when refused (|*out|
 * untouched, every reason appended to |refusals|, which the caller has initialised and
 * disposes); BG_ERR_NOMEM (|*out| untouched, |refusals| may hold some reasons). */
int trust_translate_home(const conf_profile *home, const trust_proposal *proposal,
                         trust_canonical *out, trust_refusals *refusals);

/* Provider side: maps |canonical| (borrowed; as received, so revalidated) into |provider|'s
 * vocabulary and narrows it by the rules of |provider| and |home| (both borrowed; |home| is
 * the profile of canonical->home_city). Every requested operation must be expressible by the
 * provider (else untranslatable) and allowed by both cities (else operation_refused): nothing
 * is silently dropped. Purposes must be expressible (untranslatable) and forbidden by neither
 * city (forbidden_purpose); the provider's and the home term's legal-basis requirements must
 * be met (legal_basis_required); a legal basis the provider cannot express is untranslatable.
 * |now| is Unix seconds UTC and becomes valid_from.
 * Returns 0 (|*out| filled, caller releases with trust_agreement_dispose()); BG_ERR_INVAL
 * when refused (|*out| untouched, every reason in |refusals|); BG_ERR_NOMEM as above. */
int trust_translate_provider(const conf_profile *provider, const conf_profile *home,
                             const trust_canonical *canonical, int64_t now,
                             trust_agreement *out, trust_refusals *refusals);

#endif /* TRUST_TRANSLATE_H */
