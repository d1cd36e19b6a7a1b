/* conf/profile.c: loads a city profile (conf/profiles/<city>.yaml, libyaml) into a conf_profile
 * and validates it whole before anyone sees it, the same way conf/conf.c treats the gateway
 * config: unknown keys, unknown canonical names, duplicates and out-of-range rules are errors
 * with "file:line". Not for: translating contracts (trust/translate.c) or any I/O after load.
 *
 * Format (docs/contracts.md has the full table):
 *   city: <city id>             language: <BCP 47 tag>        law: <text>
 *   purposes | operations | legal_bases: list of
 *       {term: <UTF-8 text>, canonical: <name> | [<name>, ...],
 *        requires_legal_basis: [<legal basis>, ...]   # purposes only, optional
 *        description: <text>}                          # optional
 *   forbidden_purposes: [<canonical purpose>, ...]     # optional
 *   rules: {min_cell_size: 1.., max_duration_days: 1..3660, model_training: bool,
 *           max_queries: 0.. (optional, 0 = no cap), max_epsilon: 0.. (optional, 0 = no cap)} */
#include "conf/profile.h"

#include "base/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "base/bytes.h"
#include "base/ids.h"
#include "conf/yaml_int.h"

/* A profile is a few KiB; anything near this is a mistake. */
#define PROFILE_MAX_FILE_BYTES (256u * 1024u)
/* The format needs depth 4 (root > purposes > term > canonical). */
#define PROFILE_MAX_DEPTH 8
/* Bounds keep the pairwise duplicate checks cheap on any input. */
#define PROFILE_MAX_TERMS 256
#define PROFILE_MAX_CANON 16
#define PROFILE_MAX_TEXT 256 /* bytes in a term, language, law */
#define PROFILE_MAX_DESCRIPTION 1024
#define PROFILE_MAX_DAYS 3660 /* ten years */
#define PROFILE_MAX_EPSILON 1000.0

/* ---- the canonical vocabulary (a federation-wide change to edit) ---- */

static const char *const canon_purposes[] = {
    "scientific_research", "public_health",  "clinical_quality", "health_policy",
    "commercial_insurance_actuarial", "model_development", NULL,
};
static const char *const canon_operations[] = {
    "count", "sum", "mean", "histogram", "quantiles", "agreement", "model_training", NULL,
};
static const char *const canon_legal_bases[] = {
    "consent", "ethics_approval", "public_interest", "statutory_duty", "anonymised_data", NULL,
};

const char *const *conf_canon_names(conf_canon_kind kind)
{
    switch (kind) {
    case CONF_CANON_PURPOSE: return canon_purposes;
    case CONF_CANON_OPERATION: return canon_operations;
    case CONF_CANON_LEGAL_BASIS: return canon_legal_bases;
    }
    return NULL;
}

bool conf_canon_is_known(conf_canon_kind kind, const char *name)
{
    const char *const *names = conf_canon_names(kind);
    if (names == NULL || name == NULL) {
        return false;
    }
    for (size_t i = 0; names[i] != NULL; i++) {
        if (strcmp(names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

const conf_term *conf_profile_find_term(const conf_term *terms, size_t n, const char *term)
{
    if (terms == NULL || term == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (terms[i].term != NULL && strcmp(terms[i].term, term) == 0) {
            return &terms[i];
        }
    }
    return NULL;
}

/* ---- freeing ---- */

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static void terms_free(conf_term *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].term);
        strv_free(t[i].canonical, t[i].ncanonical);
        strv_free(t[i].requires_legal_basis, t[i].nrequires);
        free(t[i].description);
    }
    free(t);
}

void conf_profile_free(conf_profile *p)
{
    if (p == NULL) {
        return;
    }
    free(p->path);
    free(p->city);
    free(p->language);
    free(p->law);
    terms_free(p->purposes, p->npurposes);
    terms_free(p->operations, p->noperations);
    terms_free(p->legal_bases, p->nlegal_bases);
    strv_free(p->forbidden_purposes, p->nforbidden);
    free(p);
}

/* ---- load state ---- */

/* The document being walked and where errors go (|y|), and the profile being built. */
typedef struct loader {
    conf_yaml y;
    conf_profile *p;
} loader;

/* ---- typed scalars ---- */

/* Terms end up in JSON, logs and signed contracts, where a stray byte would be another term. */
static bool is_clean_utf8(const char *s, size_t len)
{
    return bg_utf8_valid((const uint8_t *)s, len, BG_UTF8_NO_CONTROLS);
}

/* A non-empty text of at most |max| bytes, clean UTF-8; |*out| is a fresh copy. */
static int get_text(loader *l, const yaml_node_t *n, const char *what, size_t max, char **out)
{
    if (n->type != YAML_SCALAR_NODE) {
        return conf_yaml_fail(&l->y, n, "%s: expected a string, got %s", what,
                              conf_yaml_kind_name(n));
    }
    if (conf_yaml_is_null(n)) {
        return conf_yaml_fail(&l->y, n, "%s: expected a string, got nothing (null)", what);
    }
    size_t len = n->data.scalar.length;
    if (len == 0) {
        return conf_yaml_fail(&l->y, n, "%s: must not be empty", what);
    }
    if (len > max) {
        return conf_yaml_fail(&l->y, n, "%s: longer than %zu bytes", what, max);
    }
    if (strlen(conf_yaml_scalar(n)) != len || !is_clean_utf8(conf_yaml_scalar(n), len)) {
        return conf_yaml_fail(&l->y, n, "%s: must be UTF-8 text without control characters", what);
    }
    if (conf_yaml_scalar(n)[0] == ' ' || conf_yaml_scalar(n)[len - 1] == ' ') {
        return conf_yaml_fail(&l->y, n, "%s: must not start or end with a space", what);
    }
    char *s = bg_strndup(conf_yaml_scalar(n), len);
    if (s == NULL) {
        return conf_yaml_nomem(&l->y);
    }
    free(*out);
    *out = s;
    return 0;
}

/* A plain decimal number (digits, one '.', optional exponent) in [0, max]. strtod() alone
 * would also take "inf", "nan" and hex floats, which no profile means. */
static int get_nonneg_double(loader *l, const yaml_node_t *n, const char *what, double max,
                             double *out)
{
    char sh[64];
    char buf[64];
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
        conf_yaml_is_null(n)) {
        return conf_yaml_fail(&l->y, n, "%s: expected a number", what);
    }
    const char *s = conf_yaml_scalar(n);
    size_t len = n->data.scalar.length;
    bool ok = len > 0 && len < sizeof(buf) && s[0] >= '0' && s[0] <= '9';
    for (size_t i = 0; ok && i < len; i++) {
        char c = s[i];
        ok = (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
    }
    double v = 0;
    if (ok) {
        memcpy(buf, s, len);
        buf[len] = 0;
        char *end = NULL;
        errno = 0;
        v = strtod(buf, &end);
        ok = end == buf + len && errno == 0 && isfinite(v);
    }
    if (!ok) {
        return conf_yaml_fail(&l->y, n, "%s: expected a non-negative decimal number, got '%s'",
                              what, conf_yaml_show(sh, sizeof(sh), s, len));
    }
    if (v < 0 || v > max) {
        return conf_yaml_fail(&l->y, n, "%s: %s is out of range (allowed: 0..%g)", what,
                    conf_yaml_show(sh, sizeof(sh), s, len), max);
    }
    *out = v;
    return 0;
}

static bool strv_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

static const char *canon_kind_name(conf_canon_kind kind)
{
    switch (kind) {
    case CONF_CANON_PURPOSE: return "purpose";
    case CONF_CANON_OPERATION: return "operation";
    case CONF_CANON_LEGAL_BASIS: return "legal basis";
    }
    return "name";
}

/* A list of distinct canonical names of |kind| (a single scalar counts as a one-entry list)
 * into |*out|/|*n|; at least |min| entries. */
static int get_canon_list(loader *l, const yaml_node_t *n, const char *what,
                          conf_canon_kind kind, size_t min, char ***out, size_t *nout)
{
    char sh[64];
    char iw[96];
    yaml_node_item_t *items = NULL;
    size_t count;
    bool single = n->type == YAML_SCALAR_NODE && !conf_yaml_is_null(n);
    int rv;
    if (single) {
        count = 1;
    } else if ((rv = conf_yaml_seq_items(&l->y, n, what, min, PROFILE_MAX_CANON, &items, &count)) !=
               0) {
        return rv;
    }
    if (count == 0) {
        return 0;
    }
    char **v = calloc(count, sizeof(*v));
    if (v == NULL) {
        return conf_yaml_nomem(&l->y);
    }
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *e = single ? n : conf_yaml_item(&l->y, items, i);
        snprintf(iw, sizeof(iw), "%s[%zu]", what, i);
        if (e == NULL) {
            rv = conf_yaml_fail(&l->y, n, "%s: malformed list entry", iw);
            goto fail_free;
        }
        if ((rv = get_text(l, e, iw, PROFILE_MAX_TEXT, &v[i])) != 0) {
            goto fail_free;
        }
        if (!conf_canon_is_known(kind, v[i])) {
            rv = conf_yaml_fail(&l->y, e, "%s: '%s' is not a canonical %s (see docs/contracts.md)",
                                iw, conf_yaml_show(sh, sizeof(sh), v[i], strlen(v[i])),
                                canon_kind_name(kind));
            goto fail_free;
        }
        if (strv_has(v, i, v[i])) {
            rv = conf_yaml_fail(&l->y, e, "%s: '%s' is listed twice", iw, v[i]);
            goto fail_free;
        }
    }
    *out = v;
    *nout = count;
    return 0;

fail_free:
    strv_free(v, count); /* unfilled entries are NULL */
    return rv;
}

/* ---- sections ---- */

enum { T_TERM, T_CANONICAL, T_REQUIRES, T_DESCRIPTION, T_COUNT };

/* One of purposes / operations / legal_bases (|section|, canonical kind |kind|). */
static int load_terms(loader *l, const yaml_node_t *n, const char *section, conf_canon_kind kind,
                      conf_term **out, size_t *nout)
{
    static const char *const keys[T_COUNT] = {
        [T_TERM] = "term",
        [T_CANONICAL] = "canonical",
        [T_REQUIRES] = "requires_legal_basis",
        [T_DESCRIPTION] = "description",
    };
    yaml_node_t *v[T_COUNT];
    yaml_node_item_t *items;
    size_t count;
    char what[96];
    char sh[64];
    int rv = conf_yaml_seq_items(&l->y, n, section, 1, PROFILE_MAX_TERMS, &items, &count);
    if (rv != 0) {
        return rv;
    }
    /* Owned by the profile as soon as it is attached, so every error path below is covered by
     * conf_profile_free() (entries are zeroed by calloc). */
    *out = calloc(count, sizeof(**out));
    if (*out == NULL) {
        return conf_yaml_nomem(&l->y);
    }
    *nout = count;
    for (size_t i = 0; i < count; i++) {
        conf_term *t = &(*out)[i];
        const yaml_node_t *e = conf_yaml_item(&l->y, items, i);
        snprintf(what, sizeof(what), "%s[%zu]", section, i);
        if (e == NULL) {
            return conf_yaml_fail(&l->y, n, "%s: malformed list entry", what);
        }
        if ((rv = conf_yaml_map_collect(&l->y, e, what, keys, T_COUNT, v)) != 0) {
            return rv;
        }
        if (v[T_TERM] == NULL) {
            return conf_yaml_fail(&l->y, e, "%s: missing required key 'term'", what);
        }
        if (v[T_CANONICAL] == NULL) {
            return conf_yaml_fail(&l->y, e, "%s: missing required key 'canonical'", what);
        }
        snprintf(what, sizeof(what), "%s[%zu].term", section, i);
        if ((rv = get_text(l, v[T_TERM], what, PROFILE_MAX_TEXT, &t->term)) != 0) {
            return rv;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp((*out)[j].term, t->term) == 0) {
                return conf_yaml_fail(&l->y, v[T_TERM], "%s: duplicate term '%s' (%s[%zu])", what,
                            conf_yaml_show(sh, sizeof(sh), t->term, strlen(t->term)), section, j);
            }
        }
        snprintf(what, sizeof(what), "%s[%zu].canonical", section, i);
        if ((rv = get_canon_list(l, v[T_CANONICAL], what, kind, 1, &t->canonical,
                                 &t->ncanonical)) != 0) {
            return rv;
        }
        if (kind == CONF_CANON_LEGAL_BASIS && t->ncanonical != 1) {
            return conf_yaml_fail(&l->y, v[T_CANONICAL],
                        "%s: a legal basis term must map to exactly one canonical legal basis",
                        what);
        }
        if (v[T_REQUIRES] != NULL) {
            snprintf(what, sizeof(what), "%s[%zu].requires_legal_basis", section, i);
            if (kind != CONF_CANON_PURPOSE) {
                return conf_yaml_fail(&l->y, v[T_REQUIRES],
                                      "%s: only purposes can require a legal basis", what);
            }
            if ((rv = get_canon_list(l, v[T_REQUIRES], what, CONF_CANON_LEGAL_BASIS, 0,
                                     &t->requires_legal_basis, &t->nrequires)) != 0) {
                return rv;
            }
        }
        if (v[T_DESCRIPTION] != NULL) {
            snprintf(what, sizeof(what), "%s[%zu].description", section, i);
            if ((rv = get_text(l, v[T_DESCRIPTION], what, PROFILE_MAX_DESCRIPTION,
                               &t->description)) != 0) {
                return rv;
            }
        }
    }
    return 0;
}

enum { R_K, R_DAYS, R_TRAINING, R_QUERIES, R_EPSILON, R_COUNT };

static int load_rules(loader *l, const yaml_node_t *n)
{
    static const char *const keys[R_COUNT] = {
        [R_K] = "min_cell_size",     [R_DAYS] = "max_duration_days",
        [R_TRAINING] = "model_training", [R_QUERIES] = "max_queries",
        [R_EPSILON] = "max_epsilon",
    };
    yaml_node_t *v[R_COUNT];
    conf_profile *p = l->p;
    int rv = conf_yaml_map_collect(&l->y, n, "rules", keys, R_COUNT, v);
    if (rv != 0) {
        return rv;
    }
    /* The three rules every regime states explicitly; a silent default here would be a
     * policy decision nobody made. */
    static const int required[] = {R_K, R_DAYS, R_TRAINING};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (v[required[i]] == NULL) {
            return conf_yaml_fail(&l->y, n, "rules: missing required key '%s'", keys[required[i]]);
        }
    }
    if ((rv = conf_yaml_get_u32(&l->y, v[R_K], "rules.min_cell_size", 1, 1000000,
                                &p->min_cell_size)) != 0 ||
        (rv = conf_yaml_get_u32(&l->y, v[R_DAYS], "rules.max_duration_days", 1, PROFILE_MAX_DAYS,
                                &p->max_duration_days)) != 0 ||
        (rv = conf_yaml_get_bool(&l->y, v[R_TRAINING], "rules.model_training",
                                 &p->model_training)) != 0) {
        return rv;
    }
    if (v[R_QUERIES] != NULL && (rv = conf_yaml_get_u32(&l->y, v[R_QUERIES], "rules.max_queries", 0,
                                                        UINT32_MAX, &p->max_queries)) != 0) {
        return rv;
    }
    if (v[R_EPSILON] != NULL &&
        (rv = get_nonneg_double(l, v[R_EPSILON], "rules.max_epsilon", PROFILE_MAX_EPSILON,
                                &p->max_epsilon)) != 0) {
        return rv;
    }
    return 0;
}

/* BCP 47 shape only: 2-8 letters, then "-" subtags of 1-8 letters or digits. */
static bool is_language_tag(const char *s)
{
    size_t i = 0;
    while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')) {
        i++;
    }
    if (i < 2 || i > 8) {
        return false;
    }
    while (s[i] == '-') {
        size_t start = ++i;
        while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
               (s[i] >= '0' && s[i] <= '9')) {
            i++;
        }
        if (i == start || i - start > 8) {
            return false;
        }
    }
    return s[i] == 0;
}

enum {
    K_CITY,
    K_LANGUAGE,
    K_LAW,
    K_PURPOSES,
    K_OPERATIONS,
    K_LEGAL_BASES,
    K_FORBIDDEN,
    K_RULES,
    K_COUNT
};

/* Cross-section rules, after every section loaded. */
static int check_consistency(loader *l, yaml_node_t *const *v)
{
    conf_profile *p = l->p;
    /* load_terms() already checked the list, so its items match p->purposes one to one. */
    yaml_node_item_t *items = v[K_PURPOSES]->data.sequence.items.start;
    for (size_t i = 0; i < p->npurposes; i++) {
        const conf_term *t = &p->purposes[i];
        const yaml_node_t *e = conf_yaml_item(&l->y, items, i);
        for (size_t j = 0; j < t->ncanonical; j++) {
            if (strv_has(p->forbidden_purposes, p->nforbidden, t->canonical[j])) {
                return conf_yaml_fail(&l->y, e,
                            "purposes[%zu]: '%s' is also in forbidden_purposes; a city cannot "
                            "both offer and forbid a purpose",
                            i, t->canonical[j]);
            }
        }
        /* A requirement nobody in this city can state would make the purpose unusable. */
        for (size_t j = 0; j < t->nrequires; j++) {
            bool found = false;
            for (size_t k = 0; k < p->nlegal_bases && !found; k++) {
                found = strcmp(p->legal_bases[k].canonical[0], t->requires_legal_basis[j]) == 0;
            }
            if (!found) {
                return conf_yaml_fail(&l->y, e,
                            "purposes[%zu].requires_legal_basis: '%s' has no term in "
                            "legal_bases",
                            i, t->requires_legal_basis[j]);
            }
        }
    }
    return 0;
}

static int load_root(loader *l, const yaml_node_t *root)
{
    static const char *const keys[K_COUNT] = {
        [K_CITY] = "city",
        [K_LANGUAGE] = "language",
        [K_LAW] = "law",
        [K_PURPOSES] = "purposes",
        [K_OPERATIONS] = "operations",
        [K_LEGAL_BASES] = "legal_bases",
        [K_FORBIDDEN] = "forbidden_purposes",
        [K_RULES] = "rules",
    };
    yaml_node_t *v[K_COUNT];
    conf_profile *p = l->p;
    char sh[64];
    int rv;

    if (root->type != YAML_MAPPING_NODE) {
        return conf_yaml_fail(
            &l->y, root, "the top level must be a mapping (city:, language:, law:, ...), got %s",
            conf_yaml_is_null(root) ? "nothing" : conf_yaml_kind_name(root));
    }
    if ((rv = conf_yaml_map_collect(&l->y, root, "the top level", keys, K_COUNT, v)) != 0) {
        return rv;
    }
    static const int required[] = {K_CITY,       K_LANGUAGE,    K_LAW,  K_PURPOSES,
                                   K_OPERATIONS, K_LEGAL_BASES, K_RULES};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (v[required[i]] == NULL) {
            return conf_yaml_fail(&l->y, root, "missing required key '%s'", keys[required[i]]);
        }
    }
    if ((rv = get_text(l, v[K_CITY], "city", PROFILE_MAX_TEXT, &p->city)) != 0) {
        return rv;
    }
    if (!bg_city_id_valid(p->city, strlen(p->city))) {
        return conf_yaml_fail(&l->y, v[K_CITY],
                              "city: '%s' is not a valid city id ([a-z][a-z0-9-]{0,62})",
                              conf_yaml_show(sh, sizeof(sh), p->city, strlen(p->city)));
    }
    if ((rv = get_text(l, v[K_LANGUAGE], "language", PROFILE_MAX_TEXT, &p->language)) != 0) {
        return rv;
    }
    if (!is_language_tag(p->language)) {
        return conf_yaml_fail(&l->y, v[K_LANGUAGE],
                              "language: '%s' is not a BCP 47 tag like zh-Hans-CN",
                              conf_yaml_show(sh, sizeof(sh), p->language, strlen(p->language)));
    }
    if ((rv = get_text(l, v[K_LAW], "law", PROFILE_MAX_TEXT, &p->law)) != 0 ||
        (rv = load_terms(l, v[K_PURPOSES], "purposes", CONF_CANON_PURPOSE, &p->purposes,
                         &p->npurposes)) != 0 ||
        (rv = load_terms(l, v[K_OPERATIONS], "operations", CONF_CANON_OPERATION, &p->operations,
                         &p->noperations)) != 0 ||
        (rv = load_terms(l, v[K_LEGAL_BASES], "legal_bases", CONF_CANON_LEGAL_BASIS,
                         &p->legal_bases, &p->nlegal_bases)) != 0) {
        return rv;
    }
    if (v[K_FORBIDDEN] != NULL &&
        (rv = get_canon_list(l, v[K_FORBIDDEN], "forbidden_purposes", CONF_CANON_PURPOSE, 0,
                             &p->forbidden_purposes, &p->nforbidden)) != 0) {
        return rv;
    }
    if ((rv = load_rules(l, v[K_RULES])) != 0) {
        return rv;
    }
    return check_consistency(l, v);
}

/* ---- YAML front end ---- */

int conf_profile_load_buffer(conf_profile **out, const char *name, const uint8_t *data,
                             size_t len, bg_errbuf *eb)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    loader l = {.y = {.name = name != NULL ? name : "<profile>", .eb = eb}};
    int rv;

    if (data == NULL && len > 0) {
        return bg_errf(eb, BG_ERR_CONF_INVALID, "%s: no data", l.y.name);
    }
    if (data == NULL) {
        data = (const uint8_t *)"";
    }
    if (len > PROFILE_MAX_FILE_BYTES) {
        return bg_errf(eb, BG_ERR_CONF_INVALID, "%s: larger than %u bytes", l.y.name,
                       PROFILE_MAX_FILE_BYTES);
    }
    if ((rv = conf_yaml_load(&l.y, data, len, PROFILE_MAX_DEPTH,
                             "empty document (expected city:, language:, law:, purposes:, ...)",
                             &parser, &doc, &root)) != 0) {
        return rv;
    }
    l.p = calloc(1, sizeof(*l.p));
    if (l.p == NULL) {
        rv = conf_yaml_nomem(&l.y);
        goto fail_doc;
    }
    if ((l.p->path = bg_strndup(l.y.name, strlen(l.y.name))) == NULL) {
        rv = conf_yaml_nomem(&l.y);
        goto fail_profile;
    }
    if ((rv = load_root(&l, root)) != 0) {
        goto fail_profile;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    *out = l.p;
    return 0;

fail_profile:
    conf_profile_free(l.p);
fail_doc:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rv;
}

int conf_profile_load(conf_profile **out, const char *path, bg_errbuf *eb)
{
    uint8_t *data;
    size_t len;
    if (path == NULL) {
        return bg_errf(eb, BG_ERR_CONF_IO, "profile: no path");
    }
    /* The buffer may grow to twice the limit, so that a file between the limit and that gets
     * conf_profile_load_buffer()'s "larger than" message; only a file filling it stops here. */
    int rv = conf_yaml_read_file(path, (size_t)PROFILE_MAX_FILE_BYTES + 1, PROFILE_MAX_FILE_BYTES,
                                 &data, &len, eb);
    if (rv != 0) {
        return rv;
    }
    rv = conf_profile_load_buffer(out, path, data, len, eb);
    free(data);
    return rv;
}

int conf_profiles_load_dir(conf_profile **out, const char *dir, const char *const *cities,
                           size_t ncities, bg_errbuf *eb)
{
    char sh[64];
    int rv = 0;
    size_t i;
    if (dir == NULL || (cities == NULL && ncities > 0)) {
        return bg_errf(eb, BG_ERR_CONF_INVALID, "profiles: no directory or city list");
    }
    for (i = 0; i < ncities; i++) {
        out[i] = NULL;
    }
    for (i = 0; i < ncities; i++) {
        const char *city = cities[i];
        /* The city id becomes a file name: its syntax also rules out "../" and "/". */
        if (city == NULL || !bg_city_id_valid(city, strlen(city))) {
            rv = bg_errf(eb, BG_ERR_CONF_INVALID, "%s: '%s' is not a valid city id", dir,
                         city == NULL ? "(null)"
                                      : conf_yaml_show(sh, sizeof(sh), city, strlen(city)));
            goto fail_free;
        }
        bg_buf path;
        bg_buf_init(&path);
        if (bg_buf_appendf(&path, "%s/%s.yaml", dir, city) != 0) {
            bg_buf_dispose(&path);
            rv = bg_errf(eb, BG_ERR_NOMEM, "%s: out of memory", dir);
            goto fail_free;
        }
        rv = conf_profile_load(&out[i], (const char *)path.data, eb);
        if (rv == 0 && strcmp(out[i]->city, city) != 0) {
            rv = bg_errf(eb, BG_ERR_CONF_INVALID, "%s:1: city: '%s' does not match the file name",
                         (const char *)path.data, out[i]->city);
        }
        bg_buf_dispose(&path);
        if (rv != 0) {
            goto fail_free;
        }
    }
    return 0;

fail_free:
    for (size_t j = 0; j <= i && j < ncities; j++) {
        conf_profile_free(out[j]);
        out[j] = NULL;
    }
    return rv;
}
