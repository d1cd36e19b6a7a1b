/* trust/translate.c: the narrowing translator (see translate.h). Canonical name sets are held
 * as bit masks over the canonical vocabularies of conf/profile.h while checking, so "the
 * stricter of both" is plain set arithmetic and the output order is canonical, not the order
 * a requester happened to type. Not for: wire encoding or signatures (trust/contract.c). */
#include "trust/translate.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "base/ids.h"

#define SECONDS_PER_DAY 86400
#define DATASET_NAME_MAX 128

typedef uint32_t canon_mask;
#define CANON_MAX 32 /* bits in canon_mask; the vocabularies are far smaller */

/* ---- refusals ---- */

const char *trust_refusal_code_name(trust_refusal_code code)
{
    switch (code) {
    case TRUST_REFUSE_UNTRANSLATABLE: return "untranslatable";
    case TRUST_REFUSE_FORBIDDEN_PURPOSE: return "forbidden_purpose";
    case TRUST_REFUSE_LEGAL_BASIS: return "legal_basis_required";
    case TRUST_REFUSE_OPERATION: return "operation_refused";
    case TRUST_REFUSE_DURATION: return "duration_exceeded";
    case TRUST_REFUSE_INVALID: return "invalid";
    }
    return "invalid";
}

void trust_refusals_init(trust_refusals *r)
{
    r->items = NULL;
    r->n = 0;
    r->cap = 0;
}

void trust_refusals_dispose(trust_refusals *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].field);
        free(r->items[i].term);
        free(r->items[i].profile);
        free(r->items[i].reason);
    }
    free(r->items);
    trust_refusals_init(r);
}

/* Length of |s| clipped to |max| bytes without splitting a UTF-8 sequence, so a refusal
 * echoing a huge junk term stays bounded and still valid text. */
static size_t clip_len(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max) {
        return len;
    }
    len = max;
    while (len > 0 && ((unsigned char)s[len] & 0xc0u) == 0x80u) {
        len--;
    }
    return len;
}

int trust_refusals_add(trust_refusals *r, trust_refusal_code code, const char *field,
                       const char *term, const char *profile, const char *reason)
{
    if (r->n == r->cap) {
        size_t ncap = r->cap == 0 ? 4 : r->cap * 2;
        if (ncap > SIZE_MAX / sizeof(*r->items)) {
            return BG_ERR_NOMEM;
        }
        trust_refusal *ni = realloc(r->items, ncap * sizeof(*ni));
        if (ni == NULL) {
            return BG_ERR_NOMEM;
        }
        r->items = ni;
        r->cap = ncap;
    }
    if (field == NULL) {
        field = "";
    }
    if (term == NULL) {
        term = "";
    }
    if (profile == NULL) {
        profile = "";
    }
    if (reason == NULL) {
        reason = "";
    }
    trust_refusal x = {
        .code = code,
        .field = bg_strndup(field, strlen(field)),
        .term = bg_strndup(term, clip_len(term, TRUST_MAX_TERM_BYTES)),
        .profile = bg_strndup(profile, strlen(profile)),
        .reason = bg_strndup(reason, strlen(reason)),
    };
    if (x.field == NULL || x.term == NULL || x.profile == NULL || x.reason == NULL) {
        free(x.field);
        free(x.term);
        free(x.profile);
        free(x.reason);
        return BG_ERR_NOMEM;
    }
    r->items[r->n++] = x;
    return 0;
}

/* Collects refusals for one translation step; remembers the first allocation failure so the
 * checks read straight through and the step reports NOMEM once at the end. */
typedef struct refuser {
    trust_refusals *list;
    size_t start; /* list->n when the step began */
    int err;
} refuser;

static void refuse(refuser *rf, trust_refusal_code code, const char *field, const char *term,
                   const char *profile, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void refuse(refuser *rf, trust_refusal_code code, const char *field, const char *term,
                   const char *profile, const char *fmt, ...)
{
    char reason[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (rf->err == 0) {
        rf->err = trust_refusals_add(rf->list, code, field, term, profile, reason);
    }
}

static bool refused(const refuser *rf)
{
    return rf->list->n > rf->start;
}

/* ---- canonical sets ---- */

static size_t canon_count(conf_canon_kind kind)
{
    const char *const *names = conf_canon_names(kind);
    size_t n = 0;
    while (names[n] != NULL) {
        n++;
    }
    assert(n <= CANON_MAX);
    return n;
}

/* Bit of |name| in |kind|'s vocabulary, or 0 when unknown. */
static canon_mask canon_bit(conf_canon_kind kind, const char *name)
{
    const char *const *names = conf_canon_names(kind);
    if (name == NULL) {
        return 0;
    }
    for (size_t i = 0; names[i] != NULL && i < CANON_MAX; i++) {
        if (strcmp(names[i], name) == 0) {
            return (canon_mask)1u << i;
        }
    }
    return 0;
}

static canon_mask term_mask(conf_canon_kind kind, const conf_term *t)
{
    canon_mask m = 0;
    for (size_t i = 0; i < t->ncanonical; i++) {
        m |= canon_bit(kind, t->canonical[i]);
    }
    return m;
}

static canon_mask requires_mask(const conf_term *t)
{
    canon_mask m = 0;
    for (size_t i = 0; i < t->nrequires; i++) {
        m |= canon_bit(CONF_CANON_LEGAL_BASIS, t->requires_legal_basis[i]);
    }
    return m;
}

static canon_mask forbidden_mask(const conf_profile *p)
{
    canon_mask m = 0;
    for (size_t i = 0; i < p->nforbidden; i++) {
        m |= canon_bit(CONF_CANON_PURPOSE, p->forbidden_purposes[i]);
    }
    return m;
}

/* Union of the canonical meanings of all terms of |kind| in |terms|: what a city can say. */
static canon_mask expressible(conf_canon_kind kind, const conf_term *terms, size_t n)
{
    canon_mask m = 0;
    for (size_t i = 0; i < n; i++) {
        m |= term_mask(kind, &terms[i]);
    }
    return m;
}

static const char *canon_name(conf_canon_kind kind, size_t bit)
{
    return conf_canon_names(kind)[bit];
}

/* "a, b, c" for the names in |m| (for messages). */
static void mask_text(char *buf, size_t size, conf_canon_kind kind, canon_mask m)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < canon_count(kind); i++) {
        if ((m & ((canon_mask)1u << i)) != 0 && used < size) {
            int w = snprintf(buf + used, size - used, "%s%s", used > 0 ? ", " : "",
                             canon_name(kind, i));
            used += w > 0 ? (size_t)w : 0;
        }
    }
}

static void strv_free(char **v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static char *dup_str(const char *s)
{
    return s != NULL ? bg_strndup(s, strlen(s)) : NULL;
}

/* Copies |s| into |*out|; a NULL |s| gives NULL. Returns 0 or BG_ERR_NOMEM. */
static int dup_opt(char **out, const char *s)
{
    *out = NULL;
    if (s != NULL && (*out = dup_str(s)) == NULL) {
        return BG_ERR_NOMEM;
    }
    return 0;
}

/* The names of |m| in canonical order as a fresh string vector. */
static int mask_strv(conf_canon_kind kind, canon_mask m, char ***out, size_t *n)
{
    size_t count = 0;
    size_t total = canon_count(kind);
    for (size_t i = 0; i < total; i++) {
        count += (m >> i) & 1u;
    }
    *out = NULL;
    *n = 0;
    if (count == 0) {
        return 0;
    }
    char **v = calloc(count, sizeof(*v));
    if (v == NULL) {
        return BG_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < total; i++) {
        if ((m & ((canon_mask)1u << i)) != 0) {
            if ((v[k++] = dup_str(canon_name(kind, i))) == NULL) {
                strv_free(v, count);
                return BG_ERR_NOMEM;
            }
        }
    }
    *out = v;
    *n = count;
    return 0;
}

static int strv_dup(char *const *src, size_t n, char ***out)
{
    *out = NULL;
    if (n == 0) {
        return 0;
    }
    char **v = calloc(n, sizeof(*v));
    if (v == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if ((v[i] = dup_str(src[i])) == NULL) {
            strv_free(v, n);
            return BG_ERR_NOMEM;
        }
    }
    *out = v;
    return 0;
}

/* ---- syntax of identities and datasets ---- */

/* spiffe://<city>.gba/<role>/<id> with <city> == |city|: role [a-z]+, id [A-Za-z0-9._-]+. */
static bool valid_requester(const char *s, const char *city)
{
    static const char pre[] = "spiffe://";
    if (s == NULL || city == NULL || strncmp(s, pre, sizeof(pre) - 1) != 0) {
        return false;
    }
    const char *p = s + sizeof(pre) - 1;
    size_t clen = strlen(city);
    if (strncmp(p, city, clen) != 0 || strncmp(p + clen, ".gba/", 5) != 0) {
        return false;
    }
    p += clen + 5;
    const char *role = p;
    while (*p >= 'a' && *p <= 'z') {
        p++;
    }
    if (p == role || *p != '/' || p[1] == 0) {
        return false;
    }
    for (p++; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-')) {
            return false;
        }
    }
    return true;
}

static bool valid_city(const char *s)
{
    return s != NULL && bg_city_id_valid(s, strlen(s));
}

/* "<city>/<name>": returns NULL when well formed and held by |provider|, else why not. */
static const char *dataset_problem(const char *d, const char *provider)
{
    if (d == NULL) {
        return "missing dataset";
    }
    const char *slash = strchr(d, '/');
    if (slash == NULL || !bg_city_id_valid(d, (size_t)(slash - d))) {
        return "a dataset is named <city>/<name>";
    }
    const char *name = slash + 1;
    size_t len = strlen(name);
    if (len == 0 || len > DATASET_NAME_MAX || !((name[0] >= 'a' && name[0] <= 'z') ||
                                                (name[0] >= '0' && name[0] <= '9'))) {
        return "a dataset name is [a-z0-9][a-z0-9._-]{0,127}";
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-')) {
            return "a dataset name is [a-z0-9][a-z0-9._-]{0,127}";
        }
    }
    if (provider != NULL &&
        (strlen(provider) != (size_t)(slash - d) || memcmp(d, provider, strlen(provider)) != 0)) {
        return "the dataset is not held by the provider city";
    }
    return NULL;
}

/* Checks the datasets list (shared by both steps). */
static void check_datasets(refuser *rf, const char *const *ds, size_t n, const char *provider,
                           const char *profile)
{
    if (n == 0 || ds == NULL) {
        refuse(rf, TRUST_REFUSE_INVALID, "datasets", "", profile, "at least one dataset is needed");
        return;
    }
    if (n > TRUST_MAX_DATASETS) {
        refuse(rf, TRUST_REFUSE_INVALID, "datasets", "", profile, "at most %d datasets",
               TRUST_MAX_DATASETS);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *why = dataset_problem(ds[i], provider);
        if (why != NULL) {
            refuse(rf, TRUST_REFUSE_INVALID, "datasets", ds[i], profile, "%s", why);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (ds[j] != NULL && strcmp(ds[j], ds[i]) == 0) {
                refuse(rf, TRUST_REFUSE_INVALID, "datasets", ds[i], profile,
                       "dataset listed twice");
                break;
            }
        }
    }
}

/* Range checks on the request numbers shared by both steps. */
static void check_numbers(refuser *rf, uint32_t days, double epsilon, const char *profile)
{
    if (days == 0) {
        refuse(rf, TRUST_REFUSE_INVALID, "valid_days", "0", profile,
               "valid_days must be at least 1");
    }
    if (!isfinite(epsilon) || epsilon < 0) {
        refuse(rf, TRUST_REFUSE_INVALID, "epsilon", "", profile,
               "epsilon must be a finite number >= 0");
    }
}

/* min over the non-zero values of |a|, |b|, |c|; 0 when all are 0 (no limit anywhere). */
static uint32_t min_nonzero_u32(uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t v = 0;
    uint32_t x[3] = {a, b, c};
    for (size_t i = 0; i < 3; i++) {
        if (x[i] != 0 && (v == 0 || x[i] < v)) {
            v = x[i];
        }
    }
    return v;
}

static double min_nonzero_double(double a, double b, double c)
{
    double v = 0;
    double x[3] = {a, b, c};
    for (size_t i = 0; i < 3; i++) {
        if (x[i] > 0 && (v == 0 || x[i] < v)) {
            v = x[i];
        }
    }
    return v;
}

/* ---- terms ---- */

void trust_terms_dispose(trust_terms *t)
{
    if (t == NULL) {
        return;
    }
    free(t->city);
    free(t->language);
    free(t->law);
    free(t->purpose);
    strv_free(t->operations, t->noperations);
    free(t->legal_basis);
    memset(t, 0, sizeof(*t));
}

static int terms_header(trust_terms *t, const conf_profile *p)
{
    if ((t->city = dup_str(p->city)) == NULL || (t->language = dup_str(p->language)) == NULL ||
        (t->law = dup_str(p->law)) == NULL) {
        return BG_ERR_NOMEM;
    }
    return 0;
}

/* ---- home step ---- */

void trust_canonical_dispose(trust_canonical *c)
{
    if (c == NULL) {
        return;
    }
    free(c->requester);
    free(c->home_city);
    free(c->provider_city);
    strv_free(c->purposes, c->npurposes);
    strv_free(c->operations, c->noperations);
    free(c->legal_basis);
    strv_free(c->datasets, c->ndatasets);
    trust_terms_dispose(&c->home_terms);
    memset(c, 0, sizeof(*c));
}

/* The legal-basis requirement of purpose term |t| against canonical basis |lb| (0 = none). */
static void check_requirement(refuser *rf, const conf_term *t, canon_mask lb, const char *lb_text,
                              const char *profile)
{
    canon_mask need = requires_mask(t);
    char names[200];
    if (need == 0 || (lb & need) != 0) {
        return;
    }
    mask_text(names, sizeof(names), CONF_CANON_LEGAL_BASIS, need);
    if (lb == 0) {
        refuse(rf, TRUST_REFUSE_LEGAL_BASIS, "legal_basis", t->term, profile,
               "purpose '%s' needs a legal basis: one of %s", t->term, names);
    } else {
        refuse(rf, TRUST_REFUSE_LEGAL_BASIS, "legal_basis", lb_text, profile,
               "purpose '%s' needs one of %s as legal basis", t->term, names);
    }
}

static int build_canonical(trust_canonical *c, const conf_profile *home, const trust_proposal *pp,
                           canon_mask purposes, canon_mask ops, const char *lb_canon)
{
    memset(c, 0, sizeof(*c));
    if ((c->requester = dup_str(pp->requester)) == NULL ||
        (c->home_city = dup_str(home->city)) == NULL ||
        (c->provider_city = dup_str(pp->provider_city)) == NULL ||
        mask_strv(CONF_CANON_PURPOSE, purposes, &c->purposes, &c->npurposes) != 0 ||
        mask_strv(CONF_CANON_OPERATION, ops, &c->operations, &c->noperations) != 0 ||
        dup_opt(&c->legal_basis, lb_canon) != 0 ||
        strv_dup((char *const *)pp->datasets, pp->ndatasets, &c->datasets) != 0) {
        return BG_ERR_NOMEM;
    }
    c->ndatasets = pp->ndatasets;
    c->valid_days = pp->valid_days;
    c->max_queries = pp->max_queries;
    c->epsilon = pp->epsilon;
    trust_terms *t = &c->home_terms;
    if (terms_header(t, home) != 0 || (t->purpose = dup_str(pp->purpose)) == NULL ||
        dup_opt(&t->legal_basis, pp->legal_basis) != 0) {
        return BG_ERR_NOMEM;
    }
    if ((t->operations = calloc(pp->noperations, sizeof(char *))) == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < pp->noperations; i++) {
        bool seen = false;
        for (size_t j = 0; j < t->noperations && !seen; j++) {
            seen = strcmp(t->operations[j], pp->operations[i]) == 0;
        }
        if (!seen) {
            if ((t->operations[t->noperations] = dup_str(pp->operations[i])) == NULL) {
                return BG_ERR_NOMEM;
            }
            t->noperations++;
        }
    }
    return 0;
}

int trust_translate_home(const conf_profile *home, const trust_proposal *pp,
                         trust_canonical *out, trust_refusals *refusals)
{
    if (home == NULL || pp == NULL || out == NULL || refusals == NULL) {
        return BG_ERR_INVAL;
    }
    refuser rf = {.list = refusals, .start = refusals->n};
    const char *hc = home->city;
    canon_mask mt_bit = canon_bit(CONF_CANON_OPERATION, "model_training");

    if (pp->home_city == NULL || strcmp(pp->home_city, hc) != 0) {
        refuse(&rf, TRUST_REFUSE_INVALID, "home_city", pp->home_city, hc,
               "the proposal's home city is not this gateway's city '%s'", hc);
    }
    if (!valid_requester(pp->requester, hc)) {
        refuse(&rf, TRUST_REFUSE_INVALID, "requester", pp->requester, hc,
               "requester must be spiffe://%s.gba/<role>/<id>", hc);
    }
    bool provider_ok = valid_city(pp->provider_city);
    if (!provider_ok) {
        refuse(&rf, TRUST_REFUSE_INVALID, "provider_city", pp->provider_city, hc,
               "provider must be a city id ([a-z][a-z0-9-]{0,62})");
    }
    check_datasets(&rf, pp->datasets, pp->ndatasets, provider_ok ? pp->provider_city : NULL, hc);

    /* purpose */
    canon_mask purposes = 0;
    const conf_term *pt = NULL;
    if (pp->purpose == NULL) {
        refuse(&rf, TRUST_REFUSE_INVALID, "purpose", "", hc, "a purpose is required");
    } else if ((pt = conf_profile_find_term(home->purposes, home->npurposes, pp->purpose)) ==
               NULL) {
        refuse(&rf, TRUST_REFUSE_UNTRANSLATABLE, "purpose", pp->purpose, hc,
               "'%s' is not a purpose term of %s", pp->purpose, hc);
    } else {
        purposes = term_mask(CONF_CANON_PURPOSE, pt);
        canon_mask bad = purposes & forbidden_mask(home);
        for (size_t i = 0; i < canon_count(CONF_CANON_PURPOSE); i++) {
            if ((bad >> i) & 1u) {
                refuse(&rf, TRUST_REFUSE_FORBIDDEN_PURPOSE, "purpose", pp->purpose, hc,
                       "%s forbids the purpose %s", hc, canon_name(CONF_CANON_PURPOSE, i));
            }
        }
    }

    /* legal basis */
    canon_mask lb = 0;
    const char *lb_canon = NULL;
    if (pp->legal_basis != NULL) {
        const conf_term *lt =
            conf_profile_find_term(home->legal_bases, home->nlegal_bases, pp->legal_basis);
        if (lt == NULL) {
            refuse(&rf, TRUST_REFUSE_UNTRANSLATABLE, "legal_basis", pp->legal_basis, hc,
                   "'%s' is not a legal-basis term of %s", pp->legal_basis, hc);
        } else {
            lb_canon = lt->canonical[0];
            lb = canon_bit(CONF_CANON_LEGAL_BASIS, lb_canon);
        }
    }
    /* An unknown legal-basis term was already reported; judging the requirement against it
     * would list the same mistake twice. */
    if (pt != NULL && (pp->legal_basis == NULL || lb != 0)) {
        check_requirement(&rf, pt, lb, pp->legal_basis, hc);
    }

    /* operations */
    canon_mask ops = 0;
    if (pp->noperations == 0 || pp->operations == NULL) {
        refuse(&rf, TRUST_REFUSE_INVALID, "operations", "", hc, "at least one operation is needed");
    } else if (pp->noperations > TRUST_MAX_OPERATIONS) {
        refuse(&rf, TRUST_REFUSE_INVALID, "operations", "", hc, "at most %d operations",
               TRUST_MAX_OPERATIONS);
    } else {
        for (size_t i = 0; i < pp->noperations; i++) {
            const char *o = pp->operations[i];
            const conf_term *ot =
                o != NULL ? conf_profile_find_term(home->operations, home->noperations, o) : NULL;
            if (ot == NULL) {
                refuse(&rf, TRUST_REFUSE_UNTRANSLATABLE, "operations", o, hc,
                       "'%s' is not an operation term of %s", o != NULL ? o : "", hc);
                continue;
            }
            canon_mask m = term_mask(CONF_CANON_OPERATION, ot);
            if ((m & mt_bit) != 0 && !home->model_training) {
                refuse(&rf, TRUST_REFUSE_OPERATION, "operations", o, hc,
                       "%s does not allow model training", hc);
            }
            ops |= m;
        }
    }

    /* numbers against the home rules */
    check_numbers(&rf, pp->valid_days, pp->epsilon, hc);
    if (pp->valid_days > home->max_duration_days) {
        char v[24];
        snprintf(v, sizeof(v), "%u", pp->valid_days);
        refuse(&rf, TRUST_REFUSE_DURATION, "valid_days", v, hc,
               "%s allows contracts of at most %u days", hc, home->max_duration_days);
    }
    if (home->max_queries != 0 && pp->max_queries > home->max_queries) {
        char v[24];
        snprintf(v, sizeof(v), "%u", pp->max_queries);
        refuse(&rf, TRUST_REFUSE_INVALID, "max_queries", v, hc,
               "%s allows at most %u queries per contract", hc, home->max_queries);
    }
    if (home->max_epsilon > 0 && isfinite(pp->epsilon) && pp->epsilon > home->max_epsilon) {
        char v[40];
        snprintf(v, sizeof(v), "%g", pp->epsilon);
        refuse(&rf, TRUST_REFUSE_INVALID, "epsilon", v, hc,
               "%s allows a privacy budget of at most %g", hc, home->max_epsilon);
    }

    if (rf.err != 0) {
        return rf.err;
    }
    if (refused(&rf)) {
        return BG_ERR_INVAL;
    }
    trust_canonical c;
    if (build_canonical(&c, home, pp, purposes, ops, lb_canon) != 0) {
        trust_canonical_dispose(&c);
        return BG_ERR_NOMEM;
    }
    *out = c;
    return 0;
}

/* ---- provider step ---- */

void trust_agreement_dispose(trust_agreement *a)
{
    if (a == NULL) {
        return;
    }
    free(a->requester);
    free(a->home_city);
    free(a->provider_city);
    strv_free(a->datasets, a->ndatasets);
    strv_free(a->purposes, a->npurposes);
    strv_free(a->operations, a->noperations);
    free(a->legal_basis);
    trust_terms_dispose(&a->home_terms);
    trust_terms_dispose(&a->provider_terms);
    memset(a, 0, sizeof(*a));
}

/* Mask of the canonical names in |v| of |kind|; unknown names are refused as invalid (the
 * canonical form came over the wire, so it is revalidated, not trusted). */
static canon_mask names_mask(refuser *rf, conf_canon_kind kind, char *const *v, size_t n,
                             const char *field, const char *profile)
{
    canon_mask m = 0;
    for (size_t i = 0; i < n; i++) {
        canon_mask b = canon_bit(kind, v[i]);
        if (b == 0) {
            refuse(rf, TRUST_REFUSE_INVALID, field, v[i], profile,
                   "'%s' is not a canonical name", v[i] != NULL ? v[i] : "");
        }
        m |= b;
    }
    return m;
}

/* The home wording must say what the canonical form says, under the home profile: a home
 * gateway that mistranslated is caught here rather than signed. */
static void check_home_terms(refuser *rf, const conf_profile *home, const trust_canonical *c,
                             canon_mask purposes, canon_mask ops, canon_mask lb)
{
    const trust_terms *t = &c->home_terms;
    const char *hc = home->city;
    const conf_term *pt = conf_profile_find_term(home->purposes, home->npurposes, t->purpose);
    if (pt == NULL || term_mask(CONF_CANON_PURPOSE, pt) != purposes) {
        refuse(rf, TRUST_REFUSE_INVALID, "purpose", t->purpose, hc,
               "the home purpose term does not mean the canonical purpose");
    } else {
        check_requirement(rf, pt, lb, c->legal_basis, hc);
    }
    canon_mask hops = 0;
    for (size_t i = 0; i < t->noperations; i++) {
        const conf_term *ot =
            conf_profile_find_term(home->operations, home->noperations, t->operations[i]);
        hops |= ot != NULL ? term_mask(CONF_CANON_OPERATION, ot) : 0;
    }
    if (hops != ops || t->noperations == 0) {
        refuse(rf, TRUST_REFUSE_INVALID, "operations", "", hc,
               "the home operation terms do not mean the canonical operations");
    }
    const conf_term *lt = t->legal_basis != NULL
                              ? conf_profile_find_term(home->legal_bases, home->nlegal_bases,
                                                       t->legal_basis)
                              : NULL;
    canon_mask hlb = lt != NULL ? canon_bit(CONF_CANON_LEGAL_BASIS, lt->canonical[0]) : 0;
    if (hlb != lb || (t->legal_basis != NULL && lt == NULL)) {
        refuse(rf, TRUST_REFUSE_INVALID, "legal_basis", t->legal_basis, hc,
               "the home legal-basis term does not mean the canonical legal basis");
    }
}

/* The provider purpose term that covers all of |purposes| with the fewest extra meanings;
 * NULL when no single term does. */
static const conf_term *pick_purpose(const conf_profile *p, canon_mask purposes)
{
    const conf_term *best = NULL;
    int best_extra = 0;
    for (size_t i = 0; i < p->npurposes; i++) {
        canon_mask m = term_mask(CONF_CANON_PURPOSE, &p->purposes[i]);
        if ((m & purposes) != purposes) {
            continue;
        }
        int extra = __builtin_popcount(m & ~purposes);
        if (best == NULL || extra < best_extra) {
            best = &p->purposes[i];
            best_extra = extra;
        }
    }
    return best;
}

#define COVER_MAX_BITS 8 /* 256 states; the canonical operations are 7 */

/* Writes into |chosen| (p->noperations entries) the smallest set of provider operation terms
 * whose meanings cover |need|, ties broken by the fewest meanings beyond |need| and then by
 * profile order. Exact: dynamic programming over subsets of |need|. Returns false when |need|
 * cannot be covered (the caller has already checked it can). */
static bool cover_operations(const conf_profile *p, canon_mask need, bool *chosen)
{
    size_t bits[CANON_MAX];
    size_t nb = 0;
    for (size_t i = 0; i < CANON_MAX; i++) {
        if ((need >> i) & 1u) {
            bits[nb++] = i;
        }
    }
    assert(nb <= COVER_MAX_BITS);
    size_t full = ((size_t)1 << nb) - 1;
    enum { STATES = 1 << COVER_MAX_BITS };
    static const uint16_t unreached = UINT16_MAX;
    uint16_t count[STATES], extra[STATES], term[STATES], prev[STATES];
    for (size_t s = 0; s <= full; s++) {
        count[s] = unreached;
    }
    count[0] = 0;
    extra[0] = 0;
    for (size_t s = 0; s <= full; s++) {
        if (count[s] == unreached) {
            continue;
        }
        for (size_t t = 0; t < p->noperations && t < UINT16_MAX; t++) {
            canon_mask m = term_mask(CONF_CANON_OPERATION, &p->operations[t]);
            size_t c = 0;
            for (size_t k = 0; k < nb; k++) {
                c |= ((m >> bits[k]) & 1u) << k;
            }
            size_t ns = s | c;
            if (ns == s) {
                continue;
            }
            uint16_t nc = (uint16_t)(count[s] + 1);
            uint16_t ne = (uint16_t)(extra[s] + __builtin_popcount(m & ~need));
            if (count[ns] == unreached || nc < count[ns] || (nc == count[ns] && ne < extra[ns])) {
                count[ns] = nc;
                extra[ns] = ne;
                term[ns] = (uint16_t)t;
                prev[ns] = (uint16_t)s;
            }
        }
    }
    if (count[full] == unreached) {
        return false;
    }
    for (size_t s = full; s != 0; s = prev[s]) {
        chosen[term[s]] = true;
    }
    return true;
}

static int build_agreement(trust_agreement *a, const conf_profile *provider,
                           const conf_profile *home, const trust_canonical *c,
                           canon_mask purposes, canon_mask ops, const conf_term *ppt,
                           const conf_term *plt, int64_t now)
{
    memset(a, 0, sizeof(*a));
    if ((a->requester = dup_str(c->requester)) == NULL ||
        (a->home_city = dup_str(c->home_city)) == NULL ||
        (a->provider_city = dup_str(c->provider_city)) == NULL ||
        strv_dup(c->datasets, c->ndatasets, &a->datasets) != 0 ||
        mask_strv(CONF_CANON_PURPOSE, purposes, &a->purposes, &a->npurposes) != 0 ||
        mask_strv(CONF_CANON_OPERATION, ops, &a->operations, &a->noperations) != 0 ||
        dup_opt(&a->legal_basis, c->legal_basis) != 0) {
        return BG_ERR_NOMEM;
    }
    a->ndatasets = c->ndatasets;

    trust_terms *h = &a->home_terms;
    if (terms_header(h, home) != 0 || (h->purpose = dup_str(c->home_terms.purpose)) == NULL ||
        dup_opt(&h->legal_basis, c->home_terms.legal_basis) != 0 ||
        strv_dup(c->home_terms.operations, c->home_terms.noperations, &h->operations) != 0) {
        return BG_ERR_NOMEM;
    }
    h->noperations = c->home_terms.noperations;

    trust_terms *pt = &a->provider_terms;
    if (terms_header(pt, provider) != 0 || (pt->purpose = dup_str(ppt->term)) == NULL ||
        dup_opt(&pt->legal_basis, plt != NULL ? plt->term : NULL) != 0) {
        return BG_ERR_NOMEM;
    }
    bool *chosen = calloc(provider->noperations, sizeof(bool));
    if (chosen == NULL) {
        return BG_ERR_NOMEM;
    }
    bool covered = cover_operations(provider, ops, chosen);
    assert(covered);
    (void)covered;
    size_t n = 0;
    for (size_t i = 0; i < provider->noperations; i++) {
        n += chosen[i];
    }
    pt->operations = calloc(n, sizeof(char *));
    for (size_t i = 0; pt->operations != NULL && i < provider->noperations; i++) {
        if (chosen[i]) {
            if ((pt->operations[pt->noperations] = dup_str(provider->operations[i].term)) ==
                NULL) {
                break;
            }
            pt->noperations++;
        }
    }
    free(chosen);
    if (pt->noperations != n) {
        return BG_ERR_NOMEM;
    }

    a->min_cell_size = home->min_cell_size > provider->min_cell_size ? home->min_cell_size
                                                                     : provider->min_cell_size;
    uint32_t days = c->valid_days;
    if (home->max_duration_days < days) {
        days = home->max_duration_days;
    }
    if (provider->max_duration_days < days) {
        days = provider->max_duration_days;
    }
    a->valid_days = days;
    a->valid_from = now;
    a->valid_until = now + (int64_t)days * SECONDS_PER_DAY;
    a->max_queries = min_nonzero_u32(c->max_queries, home->max_queries, provider->max_queries);
    /* A privacy budget only when one was asked for: max_epsilon caps a budget, it does not
     * impose one (without one, answers are exact aggregates under k-suppression). */
    a->epsilon = c->epsilon > 0
                     ? min_nonzero_double(c->epsilon, home->max_epsilon, provider->max_epsilon)
                     : 0;
    return 0;
}

int trust_translate_provider(const conf_profile *provider, const conf_profile *home,
                             const trust_canonical *c, int64_t now, trust_agreement *out,
                             trust_refusals *refusals)
{
    if (provider == NULL || home == NULL || c == NULL || out == NULL || refusals == NULL) {
        return BG_ERR_INVAL;
    }
    refuser rf = {.list = refusals, .start = refusals->n};
    const char *pc = provider->city;
    const char *hc = home->city;
    char names[200];

    /* the envelope, as received */
    if (c->provider_city == NULL || strcmp(c->provider_city, pc) != 0) {
        refuse(&rf, TRUST_REFUSE_INVALID, "provider_city", c->provider_city, pc,
               "the contract is not addressed to %s", pc);
    }
    if (c->home_city == NULL || strcmp(c->home_city, hc) != 0) {
        refuse(&rf, TRUST_REFUSE_INVALID, "home_city", c->home_city, pc,
               "the home profile given is not the contract's home city");
    }
    if (!valid_requester(c->requester, hc)) {
        refuse(&rf, TRUST_REFUSE_INVALID, "requester", c->requester, pc,
               "requester must be spiffe://%s.gba/<role>/<id>", hc);
    }
    check_datasets(&rf, (const char *const *)c->datasets, c->ndatasets, pc, pc);
    check_numbers(&rf, c->valid_days, c->epsilon, pc);
    if (now < 0 || now > INT64_MAX - (int64_t)UINT32_MAX * SECONDS_PER_DAY) {
        refuse(&rf, TRUST_REFUSE_INVALID, "valid_from", "", pc, "clock out of range");
    }
    canon_mask purposes = names_mask(&rf, CONF_CANON_PURPOSE, c->purposes, c->npurposes,
                                     "purpose", pc);
    canon_mask ops = names_mask(&rf, CONF_CANON_OPERATION, c->operations, c->noperations,
                                "operations", pc);
    canon_mask lb = 0;
    if (c->legal_basis != NULL) {
        lb = canon_bit(CONF_CANON_LEGAL_BASIS, c->legal_basis);
        if (lb == 0) {
            refuse(&rf, TRUST_REFUSE_INVALID, "legal_basis", c->legal_basis, pc,
                   "'%s' is not a canonical legal basis", c->legal_basis);
        }
    }
    if (purposes == 0 || ops == 0) {
        refuse(&rf, TRUST_REFUSE_INVALID, purposes == 0 ? "purpose" : "operations", "", pc,
               "a contract needs a purpose and at least one operation");
    }
    if (refused(&rf) || rf.err != 0) {
        return rf.err != 0 ? rf.err : BG_ERR_INVAL;
    }
    check_home_terms(&rf, home, c, purposes, ops, lb);

    /* purposes: forbidden by either city, or not expressible by the provider */
    canon_mask p_say = expressible(CONF_CANON_PURPOSE, provider->purposes, provider->npurposes);
    canon_mask h_forbid = forbidden_mask(home);
    canon_mask p_forbid = forbidden_mask(provider);
    for (size_t i = 0; i < canon_count(CONF_CANON_PURPOSE); i++) {
        canon_mask b = (canon_mask)1u << i;
        const char *name = canon_name(CONF_CANON_PURPOSE, i);
        if ((purposes & b) == 0) {
            continue;
        }
        if ((h_forbid & b) != 0) {
            refuse(&rf, TRUST_REFUSE_FORBIDDEN_PURPOSE, "purpose", name, hc,
                   "%s forbids the purpose %s", hc, name);
        }
        if ((p_forbid & b) != 0) {
            refuse(&rf, TRUST_REFUSE_FORBIDDEN_PURPOSE, "purpose", name, pc,
                   "%s forbids the purpose %s", pc, name);
        } else if ((p_say & b) == 0) {
            refuse(&rf, TRUST_REFUSE_UNTRANSLATABLE, "purpose", name, pc,
                   "%s has no purpose term for %s", pc, name);
        }
    }
    const conf_term *ppt = NULL;
    if ((purposes & ~p_say) == 0 && (purposes & (h_forbid | p_forbid)) == 0) {
        ppt = pick_purpose(provider, purposes);
        if (ppt == NULL) {
            mask_text(names, sizeof(names), CONF_CANON_PURPOSE, purposes);
            refuse(&rf, TRUST_REFUSE_UNTRANSLATABLE, "purpose", names, pc,
                   "%s has no single purpose term for %s", pc, names);
        }
    }

    /* legal basis: every provider purpose term meaning one of the purposes imposes its
     * requirement, so choosing a lenient synonym cannot dodge a strict one */
    for (size_t i = 0; i < provider->npurposes; i++) {
        const conf_term *t = &provider->purposes[i];
        if ((term_mask(CONF_CANON_PURPOSE, t) & purposes) != 0) {
            check_requirement(&rf, t, lb, c->legal_basis, pc);
        }
    }
    const conf_term *plt = NULL;
    if (lb != 0) {
        for (size_t i = 0; i < provider->nlegal_bases && plt == NULL; i++) {
            if (canon_bit(CONF_CANON_LEGAL_BASIS, provider->legal_bases[i].canonical[0]) == lb) {
                plt = &provider->legal_bases[i];
            }
        }
        if (plt == NULL) {
            refuse(&rf, TRUST_REFUSE_UNTRANSLATABLE, "legal_basis", c->legal_basis, pc,
                   "%s has no legal-basis term for %s", pc, c->legal_basis);
        }
    }

    /* operations: requested, expressible by the provider, allowed by both; no silent drop */
    canon_mask o_say =
        expressible(CONF_CANON_OPERATION, provider->operations, provider->noperations);
    canon_mask mt_bit = canon_bit(CONF_CANON_OPERATION, "model_training");
    for (size_t i = 0; i < canon_count(CONF_CANON_OPERATION); i++) {
        canon_mask b = (canon_mask)1u << i;
        const char *name = canon_name(CONF_CANON_OPERATION, i);
        if ((ops & b) == 0) {
            continue;
        }
        if ((o_say & b) == 0) {
            refuse(&rf, TRUST_REFUSE_UNTRANSLATABLE, "operations", name, pc,
                   "%s has no operation term for %s", pc, name);
        } else if (b == mt_bit && !provider->model_training) {
            refuse(&rf, TRUST_REFUSE_OPERATION, "operations", name, pc,
                   "%s does not allow model training", pc);
        } else if (b == mt_bit && !home->model_training) {
            refuse(&rf, TRUST_REFUSE_OPERATION, "operations", name, hc,
                   "%s does not allow model training", hc);
        }
    }

    if (rf.err != 0) {
        return rf.err;
    }
    if (refused(&rf)) {
        return BG_ERR_INVAL;
    }
    trust_agreement a;
    if (build_agreement(&a, provider, home, c, purposes, ops, ppt, plt, now) != 0) {
        trust_agreement_dispose(&a);
        return BG_ERR_NOMEM;
    }
    *out = a;
    return 0;
}
