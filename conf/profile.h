/* conf/profile.h: a city's contract vocabulary and rules (conf/profiles/<city>.yaml), loaded
 * and validated up front like the gateway config. Each city term maps to one or more names of the
 * federation's canonical vocabulary (the interlingua, ODRL-inspired: actions, purposes, legal
 * bases), which is fixed here in code because changing it is a federation-wide change; adding a
 * city needs only a profile file. Not for: translating or narrowing contracts (trust/translate.h). */
#ifndef CONF_PROFILE_H
#define CONF_PROFILE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

/* Kinds of canonical names. */
typedef enum conf_canon_kind {
    CONF_CANON_PURPOSE = 0,
    CONF_CANON_OPERATION,
    CONF_CANON_LEGAL_BASIS,
} conf_canon_kind;

/* The canonical vocabulary of |kind|: a static NULL-terminated array of names, e.g. operations
 * "count", "sum", "mean", "histogram", "quantiles", "agreement", "model_training"; purposes
 * "scientific_research", "public_health", "clinical_quality", "health_policy",
 * "commercial_insurance_actuarial", "model_development"; legal bases "consent",
 * "ethics_approval", "public_interest", "statutory_duty", "anonymised_data". */
const char *const *conf_canon_names(conf_canon_kind kind);
/* True when |name| is in the canonical vocabulary of |kind|. */
bool conf_canon_is_known(conf_canon_kind kind, const char *name);

/* One term of a city's vocabulary (UTF-8, as written in that city's language). */
typedef struct conf_term {
    char *term;
    char **canonical; /* >= 1 canonical names this term means (one-to-many allowed) */
    size_t ncanonical;
    char **requires_legal_basis; /* purposes only: canonical legal bases of which one must be
                                    given with this purpose in this city; 0 = none needed */
    size_t nrequires;
    char *description; /* optional, for people; may be NULL */
} conf_term;

typedef struct conf_profile {
    char *path;
    char *city;     /* [a-z][a-z0-9-]* */
    char *language; /* BCP 47, e.g. "zh-Hans-CN", "en-HK", "pt-MO" */
    char *law;      /* e.g. "PIPL", "PDPO", "Macau Law 8/2005" */
    conf_term *purposes;
    size_t npurposes;
    conf_term *operations;
    size_t noperations;
    conf_term *legal_bases; /* each maps to exactly one canonical legal basis */
    size_t nlegal_bases;
    char **forbidden_purposes; /* canonical purposes this city refuses outright */
    size_t nforbidden;
    /* rules */
    uint32_t min_cell_size;     /* smallest publishable count cell, >= 1 */
    uint32_t max_duration_days; /* longest contract validity, >= 1 */
    bool model_training;        /* canonical operation "model_training" allowed at all */
    uint32_t max_queries;       /* cap on a contract's query count; 0 = no cap */
    double max_epsilon;         /* cap on a contract's privacy budget; 0 = no cap */
} conf_profile;

/* Loads |path| into |*out| (caller frees with conf_profile_free()). On failure |*out| is
 * untouched and |eb| holds "file:line: what is wrong". Checks: unknown keys, every canonical
 * name known (for its kind), duplicate terms, legal bases with exactly one canonical name,
 * requires_legal_basis only on purposes and naming known legal bases, rules in range.
 * Returns 0, BG_ERR_CONF_IO, BG_ERR_CONF_INVALID or BG_ERR_NOMEM. */
int conf_profile_load(conf_profile **out, const char *path, bg_errbuf *eb);
/* As conf_profile_load() for an in-memory document named |name| in messages. */
int conf_profile_load_buffer(conf_profile **out, const char *name, const uint8_t *data,
                             size_t len, bg_errbuf *eb);
void conf_profile_free(conf_profile *p); /* NULL is a no-op */

/* The term spelled exactly |term| among |terms| or NULL; borrowed from the profile. */
const conf_term *conf_profile_find_term(const conf_term *terms, size_t n, const char *term);

/* Loads every "<dir>/<city>.yaml" for the |ncities| names in |cities| into |out| (an array the
 * caller provides, |ncities| long); on failure frees what it loaded. The file's `city:` must
 * match its name. */
int conf_profiles_load_dir(conf_profile **out, const char *dir, const char *const *cities,
                           size_t ncities, bg_errbuf *eb);
#endif /* CONF_PROFILE_H */
