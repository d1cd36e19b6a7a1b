/* space/exec.c: the executor of the reference data space. Resolves a query against the
 * dataset's own schema, scans the columns block by block (filters as index ranges or lookup
 * tables over the fine grid, so every comparison is exact), fills one mergeable state per
 * group, then applies the data space's own disclosure control: small cells and differencing
 * against the requester's earlier releases. Not for: the gateway's disclosure control
 * (trust/disclosure.c), merging across cities (agg.c). */
#include "space/data.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "space/agg.h"
#include "space/data_int.h"

#define BLOCK 2048           /* rows per pass of the filter kernels: fits L1 with its masks */
#define NO_CELL UINT32_MAX   /* the row is filtered out */
#define HIST_DEPTH 16        /* releases remembered per (key, dataset) */
#define HIST_KEYS 256        /* keys remembered, least recently used evicted */
#define JOINT_MAX (1u << 22) /* entries of one differencing joint table */

/* ---- compiled filters and selectors -------------------------------------------------------- */

enum cond_kind {
    COND_RANGE = 1, /* lo <= index < hi */
    COND_NOT_RANGE, /* not that */
    COND_SET,       /* index in set[] */
};

/* One filter resolved to grid indexes (numeric) or category codes, so the scan compares
 * small integers only. */
typedef struct cond {
    uint16_t field;
    uint8_t kind;
    uint32_t lo, hi;
    uint32_t nset;
    uint32_t set[SPACE_MAX_IN];
} cond;

/* Which rows a query selects and which cell each falls in: the part of a query that the
 * release history keeps. cell = sum of code(gfield[g]) * gmul[g]. */
typedef struct selector {
    size_t nconds;
    cond *conds;
    size_t ngroup;
    uint16_t gfield[SPACE_MAX_GROUP_BY];
    uint32_t gmul[SPACE_MAX_GROUP_BY];
    size_t ncells;
} selector;

/* A selector bound to a table, with the lookup tables of its COND_SET filters. */
typedef struct matcher {
    const selector *s;
    const space_table *t;
    uint8_t *lut[SPACE_MAX_FILTERS];
} matcher;

static void matcher_dispose(matcher *m)
{
    for (size_t i = 0; i < SPACE_MAX_FILTERS; i++) {
        free(m->lut[i]);
        m->lut[i] = NULL;
    }
}

static int matcher_init(matcher *m, const selector *s, const space_table *t)
{
    memset(m, 0, sizeof(*m));
    m->s = s;
    m->t = t;
    for (size_t k = 0; k < s->nconds; k++) {
        const cond *c = &s->conds[k];
        if (c->kind != COND_SET) {
            continue;
        }
        const space_column *col = &t->cols[c->field];
        size_t n = col->num != NULL ? col->nbins : 256;
        m->lut[k] = calloc(n, 1);
        if (m->lut[k] == NULL) {
            matcher_dispose(m);
            return BG_ERR_NOMEM;
        }
        for (size_t v = 0; v < c->nset; v++) {
            assert(c->set[v] < n);
            m->lut[k][c->set[v]] = 1;
        }
    }
    return 0;
}

#define APPLY_COND(v)                                                                              \
    do {                                                                                           \
        if (c->kind == COND_RANGE) {                                                               \
            uint32_t w = c->hi - c->lo;                                                            \
            for (size_t j = 0; j < len; j++) {                                                     \
                sel[j] = (uint8_t)(sel[j] & ((uint32_t)(v)[j] - c->lo < w));                       \
            }                                                                                      \
        } else if (c->kind == COND_NOT_RANGE) {                                                    \
            uint32_t w = c->hi - c->lo;                                                            \
            for (size_t j = 0; j < len; j++) {                                                     \
                sel[j] = (uint8_t)(sel[j] & ((uint32_t)(v)[j] - c->lo >= w));                      \
            }                                                                                      \
        } else {                                                                                   \
            const uint8_t *lut = m->lut[k];                                                        \
            for (size_t j = 0; j < len; j++) {                                                     \
                sel[j] = (uint8_t)(sel[j] & lut[(v)[j]]);                                          \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* Sets cell[j] to the cell of row |start| + j, or NO_CELL when a filter drops it. |sel| is
 * scratch of |len| bytes. */
static void match_block(const matcher *m, size_t start, size_t len, uint8_t *sel, uint32_t *cell)
{
    const selector *s = m->s;
    const space_table *t = m->t;
    memset(sel, 1, len);
    for (size_t k = 0; k < s->nconds; k++) {
        const cond *c = &s->conds[k];
        const space_column *col = &t->cols[c->field];
        if (col->num != NULL) {
            const uint16_t *v = col->num + start;
            APPLY_COND(v);
        } else {
            const uint8_t *v = col->cat + start;
            APPLY_COND(v);
        }
    }
    if (s->ngroup == 0) {
        for (size_t j = 0; j < len; j++) {
            cell[j] = sel[j] ? 0 : NO_CELL;
        }
    } else if (s->ngroup == 1) {
        const uint8_t *g0 = t->cols[s->gfield[0]].cat + start;
        for (size_t j = 0; j < len; j++) {
            cell[j] = sel[j] ? g0[j] : NO_CELL;
        }
    } else {
        const uint8_t *g0 = t->cols[s->gfield[0]].cat + start;
        const uint8_t *g1 = t->cols[s->gfield[1]].cat + start;
        uint32_t mul = s->gmul[0];
        for (size_t j = 0; j < len; j++) {
            cell[j] = sel[j] ? g0[j] * mul + g1[j] : NO_CELL;
        }
    }
}

/* ---- resolving a query --------------------------------------------------------------------- */

typedef struct plan {
    selector sel;
    cond conds[SPACE_MAX_FILTERS];
    space_op op;
    uint16_t field, field2; /* numeric fields of the operation */
} plan;

static bool terminated(const char *s)
{
    return memchr(s, 0, SPACE_NAME_MAX) != NULL;
}

/* Writes "a, b, c" of |n| names (name(items, i)) into |buf|, truncated to |cap|. */
static void join_names(char *buf, size_t cap, const void *items, size_t n,
                       const char *(*name)(const void *items, size_t i))
{
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", name(items, i));
        if (w < 0 || (size_t)w >= cap - off) {
            break;
        }
        off += (size_t)w;
    }
}

static const char *field_name_at(const void *items, size_t i)
{
    const space_field *fields = items;
    return fields[i].name;
}

static const char *cat_name_at(const void *items, size_t i)
{
    const char *const *cats = items;
    return cats[i];
}

static int unknown_field(const space_schema *s, const char *role, const char *name, bg_errbuf *eb)
{
    char list[400];
    join_names(list, sizeof(list), s->fields, s->nfields, field_name_at);
    return bg_errf(eb, BG_ERR_INVAL, "unknown field \"%s\" (%s) in %s; fields: %s", name, role,
                   s->name, list);
}

/* Resolves |name| (for |role|) to a field of type |type| in |*out|. */
static int want_field(const space_schema *s, const char *role, const char *name, space_ftype type,
                      uint16_t *out, bg_errbuf *eb)
{
    if (!terminated(name)) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: field name longer than %d bytes", role,
                       SPACE_NAME_MAX - 1);
    }
    if (name[0] == 0) {
        return bg_errf(eb, BG_ERR_INVAL, "%s needs a field", role);
    }
    int i = space_schema_field(s, name);
    if (i < 0) {
        return unknown_field(s, role, name, eb);
    }
    if (s->fields[i].type != type) {
        return bg_errf(eb, BG_ERR_INVAL, "field \"%s\" is %s; %s needs a %s field", name,
                       type == SPACE_FIELD_NUMERIC ? "categorical" : "numeric", role,
                       type == SPACE_FIELD_NUMERIC ? "numeric" : "categorical");
    }
    *out = (uint16_t)i;
    return 0;
}

/* First grid index whose value is >= v (|strict|: > v). */
static uint32_t grid_bound(const space_column *col, double v, bool strict)
{
    size_t lo = 0, hi = col->nbins;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        bool below = strict ? col->vals[mid] <= v : col->vals[mid] < v;
        if (below) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return (uint32_t)lo;
}

/* Grid index equal to |v| on the grid (llround(x/res) == llround(v/res)), or -1 off the grid. */
static int64_t grid_index_of(const space_field *f, const space_column *col, double v)
{
    double u = v / f->resolution;
    if (!(fabs(u) < 9e15)) {
        return -1;
    }
    int64_t i = llround(u) - col->units_lo;
    return i >= 0 && i < (int64_t)col->nbins ? i : -1;
}

static int compile_filter(const space_table *t, const space_filter *fl, cond *c, bg_errbuf *eb)
{
    const space_schema *s = t->schema;
    if (!terminated(fl->field)) {
        return bg_errf(eb, BG_ERR_INVAL, "filter: field name longer than %d bytes",
                       SPACE_NAME_MAX - 1);
    }
    int idx = space_schema_field(s, fl->field);
    if (idx < 0) {
        return unknown_field(s, "filter", fl->field, eb);
    }
    uint16_t fi = (uint16_t)idx;
    const space_field *f = &s->fields[fi];
    const space_column *col = &t->cols[fi];
    memset(c, 0, sizeof(*c));
    c->field = fi;
    if (fl->cmp < SPACE_CMP_EQ || fl->cmp > SPACE_CMP_IN) {
        return bg_errf(eb, BG_ERR_INVAL, "filter on \"%s\": unknown comparison", f->name);
    }
    if (fl->nvals == 0 || fl->nvals > SPACE_MAX_IN || (fl->cmp != SPACE_CMP_IN && fl->nvals != 1)) {
        return bg_errf(eb, BG_ERR_INVAL, "filter on \"%s\": \"%s\" takes %s (got %zu)", f->name,
                       space_cmp_name(fl->cmp),
                       fl->cmp == SPACE_CMP_IN ? "1 to 16 values" : "one value", fl->nvals);
    }
    if (f->type == SPACE_FIELD_CATEGORICAL) {
        if (!fl->is_cat) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "filter on \"%s\": the field is categorical; compare it with "
                           "category names",
                           f->name);
        }
        if (fl->cmp != SPACE_CMP_EQ && fl->cmp != SPACE_CMP_NE && fl->cmp != SPACE_CMP_IN) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "filter on \"%s\": \"%s\" does not apply to a categorical field; "
                           "use =, != or in",
                           f->name, space_cmp_name(fl->cmp));
        }
        for (size_t v = 0; v < fl->nvals; v++) {
            if (!terminated(fl->cat[v])) {
                return bg_errf(eb, BG_ERR_INVAL, "filter on \"%s\": category name too long",
                               f->name);
            }
            size_t code = 0;
            while (code < f->ncats && strcmp(f->cats[code], fl->cat[v]) != 0) {
                code++;
            }
            if (code == f->ncats) {
                char list[300];
                join_names(list, sizeof(list), f->cats, f->ncats, cat_name_at);
                return bg_errf(eb, BG_ERR_INVAL,
                               "filter on \"%s\": unknown category \"%s\"; categories: %s", f->name,
                               fl->cat[v], list);
            }
            c->set[c->nset++] = (uint32_t)code;
        }
        c->kind = fl->cmp == SPACE_CMP_IN   ? COND_SET
                  : fl->cmp == SPACE_CMP_NE ? COND_NOT_RANGE
                                            : COND_RANGE;
        c->lo = c->set[0];
        c->hi = c->set[0] + 1;
        return 0;
    }
    if (fl->is_cat) {
        return bg_errf(eb, BG_ERR_INVAL,
                       "filter on \"%s\": the field is numeric (%s); compare it with numbers",
                       f->name, f->unit);
    }
    for (size_t v = 0; v < fl->nvals; v++) {
        if (!isfinite(fl->num[v])) {
            return bg_errf(eb, BG_ERR_INVAL, "filter on \"%s\": value is not a finite number",
                           f->name);
        }
    }
    double v = fl->num[0];
    uint32_t nb = (uint32_t)col->nbins;
    c->kind = COND_RANGE;
    switch (fl->cmp) {
    case SPACE_CMP_LT:
        c->hi = grid_bound(col, v, false);
        break;
    case SPACE_CMP_LE:
        c->hi = grid_bound(col, v, true);
        break;
    case SPACE_CMP_GT:
        c->lo = grid_bound(col, v, true);
        c->hi = nb;
        break;
    case SPACE_CMP_GE:
        c->lo = grid_bound(col, v, false);
        c->hi = nb;
        break;
    case SPACE_CMP_EQ:
    case SPACE_CMP_NE: {
        /* equality on the grid: a value off the grid matches nothing (= ) or everything (!=) */
        int64_t i = grid_index_of(f, col, v);
        if (i >= 0) {
            c->lo = (uint32_t)i;
            c->hi = (uint32_t)i + 1;
        }
        c->kind = fl->cmp == SPACE_CMP_EQ ? COND_RANGE : COND_NOT_RANGE;
        break;
    }
    case SPACE_CMP_IN:
        c->kind = COND_SET;
        for (size_t k = 0; k < fl->nvals; k++) {
            int64_t i = grid_index_of(f, col, fl->num[k]);
            if (i >= 0) {
                c->set[c->nset++] = (uint32_t)i;
            }
        }
        break;
    }
    return 0;
}

static int plan_build(plan *p, const space_table *t, const space_query *q, bg_errbuf *eb)
{
    const space_schema *s = t->schema;
    int rv;
    memset(p, 0, sizeof(*p));
    p->op = q->op;
    p->sel.conds = p->conds;
    if (q->ngroup > SPACE_MAX_GROUP_BY) {
        return bg_errf(eb, BG_ERR_INVAL, "group_by takes at most %d fields (got %zu)",
                       SPACE_MAX_GROUP_BY, q->ngroup);
    }
    p->sel.ngroup = q->ngroup;
    p->sel.ncells = 1;
    for (size_t g = 0; g < q->ngroup; g++) {
        if ((rv = want_field(s, "group_by", q->group_by[g], SPACE_FIELD_CATEGORICAL,
                             &p->sel.gfield[g], eb)) != 0) {
            return rv;
        }
        if (g == 1 && p->sel.gfield[0] == p->sel.gfield[1]) {
            return bg_errf(eb, BG_ERR_INVAL, "group_by names \"%s\" twice", q->group_by[0]);
        }
        p->sel.ncells *= s->fields[p->sel.gfield[g]].ncats;
    }
    if (q->ngroup == 2) {
        p->sel.gmul[0] = (uint32_t)s->fields[p->sel.gfield[1]].ncats;
        p->sel.gmul[1] = 1;
    } else if (q->ngroup == 1) {
        p->sel.gmul[0] = 1;
    }
    if (q->nwhere > SPACE_MAX_FILTERS) {
        return bg_errf(eb, BG_ERR_INVAL, "at most %d filters (got %zu)", SPACE_MAX_FILTERS,
                       q->nwhere);
    }
    for (size_t i = 0; i < q->nwhere; i++) {
        if ((rv = compile_filter(t, &q->where[i], &p->conds[i], eb)) != 0) {
            return rv;
        }
    }
    p->sel.nconds = q->nwhere;

    const char *opname = space_op_name(q->op);
    switch (q->op) {
    case SPACE_OP_COUNT:
        return 0;
    case SPACE_OP_SUM:
    case SPACE_OP_MEAN:
        return want_field(s, opname, q->field, SPACE_FIELD_NUMERIC, &p->field, eb);
    case SPACE_OP_HISTOGRAM:
        if ((rv = want_field(s, opname, q->field, SPACE_FIELD_NUMERIC, &p->field, eb)) != 0) {
            return rv;
        }
        if (q->nedges < 2 || q->nedges > SPACE_MAX_EDGES) {
            return bg_errf(eb, BG_ERR_INVAL, "histogram of \"%s\" needs 2 to %d edges (got %zu)",
                           q->field, SPACE_MAX_EDGES, q->nedges);
        }
        for (size_t i = 0; i < q->nedges; i++) {
            if (!isfinite(q->edges[i]) || (i > 0 && !(q->edges[i] > q->edges[i - 1]))) {
                return bg_errf(eb, BG_ERR_INVAL,
                               "histogram of \"%s\": edges must be finite and strictly "
                               "increasing (edges[%zu] = %g)",
                               q->field, i, q->edges[i]);
            }
        }
        return 0;
    case SPACE_OP_QUANTILES:
        if ((rv = want_field(s, opname, q->field, SPACE_FIELD_NUMERIC, &p->field, eb)) != 0) {
            return rv;
        }
        if (q->nprobs < 1 || q->nprobs > SPACE_MAX_PROBS) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "quantiles of \"%s\" need 1 to %d probabilities (got %zu)", q->field,
                           SPACE_MAX_PROBS, q->nprobs);
        }
        for (size_t i = 0; i < q->nprobs; i++) {
            if (!(q->probs[i] > 0.0 && q->probs[i] < 1.0)) {
                return bg_errf(eb, BG_ERR_INVAL,
                               "quantiles of \"%s\": probability %g is outside (0,1)", q->field,
                               q->probs[i]);
            }
        }
        if (p->sel.ncells * t->cols[p->field].nbins > ((size_t)1 << 22)) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "quantiles of \"%s\" over %zu groups need too many grid bins; group "
                           "by fewer fields",
                           q->field, p->sel.ncells);
        }
        return 0;
    case SPACE_OP_AGREEMENT:
        if ((rv = want_field(s, "agreement (method)", q->field, SPACE_FIELD_NUMERIC, &p->field,
                             eb)) != 0 ||
            (rv = want_field(s, "agreement (reference)", q->field2, SPACE_FIELD_NUMERIC, &p->field2,
                             eb)) != 0) {
            return rv;
        }
        if (p->field == p->field2) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "agreement needs two different fields (got \"%s\" "
                           "twice)",
                           q->field);
        }
        return 0;
    }
    return bg_errf(eb, BG_ERR_INVAL, "unknown operation %d", (int)q->op);
}

/* Same filters (as compiled, so equal conditions spelled differently also match) and cells. */
static bool selector_equal(const selector *a, const selector *b)
{
    if (a->nconds != b->nconds || a->ngroup != b->ngroup || a->ncells != b->ncells) {
        return false;
    }
    for (size_t g = 0; g < a->ngroup; g++) {
        if (a->gfield[g] != b->gfield[g]) {
            return false;
        }
    }
    for (size_t i = 0; i < a->nconds; i++) {
        const cond *x = &a->conds[i], *y = &b->conds[i];
        if (x->field != y->field || x->kind != y->kind || x->lo != y->lo || x->hi != y->hi ||
            x->nset != y->nset || memcmp(x->set, y->set, x->nset * sizeof(x->set[0])) != 0) {
            return false;
        }
    }
    return true;
}

/* ---- release history ------------------------------------------------------------------------ */

/* One earlier release: the rows and cells it described, and which cells carried values. */
typedef struct hist_query {
    selector sel;      /* conds owned */
    uint8_t *released; /* sel.ncells flags */
} hist_query;

typedef struct hist_ring {
    hist_query q[HIST_DEPTH];
    size_t head, len; /* q[(head + i) % HIST_DEPTH] for i < len, oldest first */
} hist_ring;

typedef struct hist_key {
    char *name;       /* NULL: free slot */
    uint64_t used;    /* LRU clock */
    unsigned pins;    /* threads waiting for it: not evictable */
    bool busy;        /* a query of this key is between its check and its release */
    hist_ring *rings; /* one per table of the db */
} hist_key;

/* Queries of one key are serialised (busy): two concurrent queries that each pass the check
 * against an empty history would otherwise both be released, which is the attack itself. */
struct space_hist {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a key stopped being busy */
    uint64_t clock;
    size_t ntables;
    hist_key keys[HIST_KEYS];
};

static void hist_query_dispose(hist_query *h)
{
    free(h->sel.conds);
    free(h->released);
    memset(h, 0, sizeof(*h));
}

static void hist_key_clear(hist_key *k, size_t ntables)
{
    if (k->rings != NULL) {
        for (size_t t = 0; t < ntables; t++) {
            for (size_t i = 0; i < k->rings[t].len; i++) {
                hist_query_dispose(&k->rings[t].q[(k->rings[t].head + i) % HIST_DEPTH]);
            }
        }
    }
    free(k->rings);
    free(k->name);
    memset(k, 0, sizeof(*k));
}

int space_hist_new(space_hist **out, size_t ntables)
{
    space_hist *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return BG_ERR_NOMEM;
    }
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        goto fail_free;
    }
    if (pthread_cond_init(&h->cv, NULL) != 0) {
        goto fail_mutex;
    }
    h->ntables = ntables;
    *out = h;
    return 0;

fail_mutex:
    pthread_mutex_destroy(&h->mu);
fail_free:
    free(h);
    return BG_ERR_NOMEM;
}

void space_hist_free(space_hist *h)
{
    if (h == NULL) {
        return;
    }
    for (size_t i = 0; i < HIST_KEYS; i++) {
        hist_key_clear(&h->keys[i], h->ntables);
    }
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* A free slot, else the least recently used key nobody holds or waits for; NULL if none. */
static hist_key *hist_slot(space_hist *h)
{
    hist_key *best = NULL;
    for (size_t i = 0; i < HIST_KEYS; i++) {
        hist_key *k = &h->keys[i];
        if (k->name == NULL) {
            return k;
        }
        if (!k->busy && k->pins == 0 && (best == NULL || k->used < best->used)) {
            best = k;
        }
    }
    return best;
}

/* Marks key |name| busy for the caller (waiting while another query holds it) and returns it
 * in |*out|; its rings are then the caller's to read and, through hist_release(), extend. */
static int hist_acquire(space_hist *h, const char *name, hist_key **out)
{
    int rv = 0;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        hist_key *k = NULL;
        for (size_t i = 0; i < HIST_KEYS && k == NULL; i++) {
            if (h->keys[i].name != NULL && strcmp(h->keys[i].name, name) == 0) {
                k = &h->keys[i];
            }
        }
        if (k != NULL && k->busy) {
            k->pins++; /* so it is not evicted while we wait */
            pthread_cond_wait(&h->cv, &h->mu);
            k->pins--;
            continue;
        }
        if (k == NULL) {
            k = hist_slot(h);
            if (k == NULL) { /* every key is in use right now */
                pthread_cond_wait(&h->cv, &h->mu);
                continue;
            }
            hist_key_clear(k, h->ntables);
            k->name = strdup(name);
            k->rings = calloc(h->ntables > 0 ? h->ntables : 1, sizeof(*k->rings));
            if (k->name == NULL || k->rings == NULL) {
                hist_key_clear(k, h->ntables);
                rv = BG_ERR_NOMEM;
                break;
            }
        }
        k->busy = true;
        k->used = ++h->clock;
        *out = k;
        break;
    }
    pthread_mutex_unlock(&h->mu);
    return rv;
}

/* Forgets the |i|th oldest entry of |r|, keeping the order of the others. */
static void ring_remove(hist_ring *r, size_t i)
{
    assert(i < r->len);
    hist_query_dispose(&r->q[(r->head + i) % HIST_DEPTH]);
    for (size_t j = i; j + 1 < r->len; j++) {
        r->q[(r->head + j) % HIST_DEPTH] = r->q[(r->head + j + 1) % HIST_DEPTH];
    }
    r->len--;
    memset(&r->q[(r->head + r->len) % HIST_DEPTH], 0, sizeof(hist_query));
}

/* Ends the caller's hold on |k|; remembers |q| (taken, may be NULL) for table |ti|. A repeat
 * of a remembered query replaces it (cells released by either stay released), so repeating
 * one harmless query cannot flush the others out of the history. */
static void hist_release(space_hist *h, hist_key *k, size_t ti, hist_query *q)
{
    pthread_mutex_lock(&h->mu);
    if (q != NULL) {
        hist_ring *r = &k->rings[ti];
        for (size_t i = 0; i < r->len; i++) {
            const hist_query *old = &r->q[(r->head + i) % HIST_DEPTH];
            if (selector_equal(&old->sel, &q->sel)) {
                for (size_t c = 0; c < q->sel.ncells; c++) {
                    q->released[c] |= old->released[c];
                }
                ring_remove(r, i);
                break;
            }
        }
        if (r->len == HIST_DEPTH) {
            hist_query_dispose(&r->q[r->head]);
            r->head = (r->head + 1) % HIST_DEPTH;
            r->len--;
        }
        r->q[(r->head + r->len) % HIST_DEPTH] = *q;
        r->len++;
    }
    k->busy = false;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* The new query's selector and released cells, as the history keeps them. */
static int hist_query_make(hist_query *out, const selector *s, const space_result *r)
{
    memset(out, 0, sizeof(*out));
    out->sel = *s;
    out->sel.conds = NULL;
    if (s->nconds > 0) {
        out->sel.conds = malloc(s->nconds * sizeof(cond));
        if (out->sel.conds == NULL) {
            return BG_ERR_NOMEM;
        }
        memcpy(out->sel.conds, s->conds, s->nconds * sizeof(cond));
    }
    out->released = malloc(s->ncells);
    if (out->released == NULL) {
        hist_query_dispose(out);
        return BG_ERR_NOMEM;
    }
    for (size_t c = 0; c < s->ncells; c++) {
        out->released[c] = r->cells[c].supp == SPACE_SUPP_NONE;
    }
    return 0;
}

/* ---- the scan ------------------------------------------------------------------------------- */

/* One earlier release being compared: its matcher and the joint table of row counts
 * (new cell or none) x (its cell or none), (nc + 1) x (nh + 1), none last. */
typedef struct diff_pass {
    const hist_query *h;
    matcher m;
    uint64_t *joint;
} diff_pass;

static void zero_cell(space_cell *c, space_supp why)
{
    c->supp = why;
    c->n = 0;
    c->sum_units = 0;
    memset(&c->mom, 0, sizeof(c->mom));
    memset(&c->agree, 0, sizeof(c->agree));
    if (c->bins != NULL) {
        memset(c->bins, 0, c->nbins * sizeof(uint64_t));
    }
    c->has_qvals = false;
}

/* Aggregates the |m| selected rows idx[] (cells cell[]) of the block at |start|. */
static void aggregate_block(const plan *p, const space_table *t, size_t start, const uint32_t *idx,
                            size_t m, const uint32_t *cell, const uint8_t *bin_of, space_result *r)
{
    space_cell *cells = r->cells;
    const space_column *cx = &t->cols[p->field];
    if (p->op == SPACE_OP_COUNT) {
        for (size_t i = 0; i < m; i++) {
            cells[cell[idx[i]]].n++;
        }
        return;
    }
    assert(cx->num != NULL); /* plan_build() checked the field is numeric */
    const uint16_t *x = cx->num + start;
    switch (p->op) {
    case SPACE_OP_COUNT:
        break;
    case SPACE_OP_SUM:
        /* grid indexes now; the units of lo times n are added once at the end */
        for (size_t i = 0; i < m; i++) {
            space_cell *c = &cells[cell[idx[i]]];
            c->n++;
            c->sum_units += x[idx[i]];
        }
        break;
    case SPACE_OP_MEAN:
        for (size_t i = 0; i < m; i++) {
            space_cell *c = &cells[cell[idx[i]]];
            c->n++;
            space_moments_add(&c->mom, cx->vals[x[idx[i]]]);
        }
        break;
    case SPACE_OP_HISTOGRAM:
        assert(bin_of != NULL);
        for (size_t i = 0; i < m; i++) {
            space_cell *c = &cells[cell[idx[i]]];
            c->n++;
            c->bins[bin_of[x[idx[i]]]]++;
        }
        break;
    case SPACE_OP_QUANTILES:
        for (size_t i = 0; i < m; i++) {
            space_cell *c = &cells[cell[idx[i]]];
            c->n++;
            c->bins[x[idx[i]]]++;
        }
        break;
    case SPACE_OP_AGREEMENT: {
        const space_column *cy = &t->cols[p->field2];
        assert(cy->num != NULL);
        const uint16_t *y = cy->num + start;
        for (size_t i = 0; i < m; i++) {
            space_cell *c = &cells[cell[idx[i]]];
            c->n++;
            space_agree_add(&c->agree, cx->vals[x[idx[i]]], cy->vals[y[idx[i]]]);
        }
        break;
    }
    }
}

/* One pass over |t|: the aggregates of |p| into |r| and, for each of |ndiff| earlier
 * releases, the joint table of cell memberships. */
static void scan(const plan *p, const matcher *mm, const space_table *t, const uint8_t *bin_of,
                 diff_pass *diff, size_t ndiff, space_result *r)
{
    uint8_t sel[BLOCK];
    uint32_t cell[BLOCK], hcell[BLOCK], idx[BLOCK];
    size_t nc1 = p->sel.ncells;
    for (size_t start = 0; start < t->nrows; start += BLOCK) {
        size_t len = t->nrows - start < BLOCK ? t->nrows - start : BLOCK;
        match_block(mm, start, len, sel, cell);
        size_t m = 0;
        for (size_t j = 0; j < len; j++) {
            idx[m] = (uint32_t)j;
            m += cell[j] != NO_CELL;
        }
        aggregate_block(p, t, start, idx, m, cell, bin_of, r);
        for (size_t d = 0; d < ndiff; d++) {
            size_t nh = diff[d].h->sel.ncells;
            uint64_t *joint = diff[d].joint;
            match_block(&diff[d].m, start, len, sel, hcell);
            for (size_t j = 0; j < len; j++) {
                if ((cell[j] & hcell[j]) == NO_CELL) { /* in neither */
                    continue;
                }
                size_t a = cell[j] == NO_CELL ? nc1 : cell[j];
                size_t b = hcell[j] == NO_CELL ? nh : hcell[j];
                joint[a * (nh + 1) + b]++;
            }
        }
    }
}

/* Differencing: a new cell C and a released cell P of an earlier query that differ by fewer
 * than k rows (0 < |C \ P| < k or 0 < |P \ C| < k) would let the requester subtract one
 * from the other and learn about that small set, e.g. count(age >= 65) then count(age >= 66)
 * isolates the 65-year-olds. Suppress C. */
static void apply_differencing(const diff_pass *d, size_t nc, uint32_t k, space_result *r)
{
    const hist_query *h = d->h;
    size_t nh = h->sel.ncells, w = nh + 1;
    for (size_t c = 0; c < nc; c++) {
        if (r->cells[c].supp != SPACE_SUPP_NONE) {
            continue;
        }
        uint64_t cn = 0;
        for (size_t b = 0; b <= nh; b++) {
            cn += d->joint[c * w + b];
        }
        for (size_t b = 0; b < nh; b++) {
            if (!h->released[b]) {
                continue;
            }
            uint64_t pn = 0;
            for (size_t a = 0; a <= nc; a++) {
                pn += d->joint[a * w + b];
            }
            uint64_t both = d->joint[c * w + b];
            uint64_t c_only = cn - both, p_only = pn - both;
            if ((c_only > 0 && c_only < k) || (p_only > 0 && p_only < k)) {
                zero_cell(&r->cells[c], SPACE_SUPP_DIFFERENCING);
                break;
            }
        }
    }
}

int space_db_execute(space_db *db, const space_query *q, const space_exec_opts *opts,
                     space_result *out, bg_errbuf *eb)
{
    if (!terminated(q->dataset)) {
        return bg_errf(eb, BG_ERR_INVAL, "dataset name longer than %d bytes", SPACE_NAME_MAX - 1);
    }
    size_t ti = 0;
    const space_table *t = space_db_table(db, q->dataset, &ti);
    if (t == NULL) {
        char list[300] = "";
        size_t off = 0;
        for (size_t i = 0; i < db->ntables; i++) {
            int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
                             db->tables[i].schema->name);
            if (w < 0 || (size_t)w >= sizeof(list) - off) {
                break;
            }
            off += (size_t)w;
        }
        return bg_errf(eb, BG_ERR_NOTFOUND, "dataset \"%s\" is not held by %s (holds: %s)",
                       q->dataset, db->city, db->ntables > 0 ? list : "nothing");
    }
    plan p;
    int rv = plan_build(&p, t, q, eb);
    if (rv != 0) {
        return rv;
    }
    const space_field *fx = &t->schema->fields[p.field];
    const space_column *cx = &t->cols[p.field];
    size_t nbins = p.op == SPACE_OP_HISTOGRAM   ? q->nedges + 1
                   : p.op == SPACE_OP_QUANTILES ? cx->nbins
                                                : 0;
    uint32_t k = opts != NULL ? opts->k : 0;
    const char *key = opts != NULL ? opts->history_key : NULL;

    space_result r;
    if ((rv = space_result_init(&r, p.op, p.sel.ncells, nbins)) != 0) {
        return bg_errf(eb, rv, "%zu cells: %s", p.sel.ncells,
                       rv == BG_ERR_RANGE ? "too many groups" : "out of memory");
    }
    r.ngroup = q->ngroup;
    for (size_t g = 0; g < q->ngroup; g++) {
        memcpy(r.group_by[g], q->group_by[g], SPACE_NAME_MAX);
    }
    for (size_t c = 0; c < r.ncells; c++) {
        if (p.sel.ngroup == 2) {
            r.cells[c].key[0] = (uint16_t)(c / p.sel.gmul[0]);
            r.cells[c].key[1] = (uint16_t)(c % p.sel.gmul[0]);
        } else if (p.sel.ngroup == 1) {
            r.cells[c].key[0] = (uint16_t)c;
        }
    }
    if (p.op != SPACE_OP_COUNT && fx->type == SPACE_FIELD_NUMERIC) {
        r.resolution = fx->resolution;
        r.grid_lo = fx->lo;
    }
    r.rows_scanned = t->nrows;

    matcher mm;
    uint8_t *bin_of = NULL;
    hist_key *hk = NULL;
    diff_pass diff[HIST_DEPTH];
    size_t ndiff = 0;
    rv = BG_ERR_NOMEM;
    if (matcher_init(&mm, &p.sel, t) != 0) {
        goto fail_result;
    }
    if (p.op == SPACE_OP_HISTOGRAM) {
        /* bin of each grid value: the number of edges <= it (0: underflow, nedges: overflow) */
        bin_of = malloc(cx->nbins);
        if (bin_of == NULL) {
            goto fail_matcher;
        }
        size_t b = 0;
        for (size_t i = 0; i < cx->nbins; i++) {
            while (b < q->nedges && q->edges[b] <= cx->vals[i]) {
                b++;
            }
            bin_of[i] = (uint8_t)b;
        }
    }
    if (key != NULL) {
        if ((rv = hist_acquire(db->hist, key, &hk)) != 0) {
            goto fail_bins;
        }
        const hist_ring *ring = &hk->rings[ti];
        for (size_t i = 0; k > 0 && i < ring->len; i++) {
            diff_pass *d = &diff[ndiff];
            d->h = &ring->q[(ring->head + i) % HIST_DEPTH];
            if (selector_equal(&d->h->sel, &p.sel)) {
                continue; /* the same rows in the same cells: repeating it reveals nothing */
            }
            size_t cells = (p.sel.ncells + 1) * (d->h->sel.ncells + 1);
            if (cells > JOINT_MAX) {
                rv = bg_errf(eb, BG_ERR_RANGE, "too many groups to check against history");
                goto fail_diff;
            }
            d->joint = calloc(cells, sizeof(uint64_t));
            if (d->joint == NULL) {
                rv = BG_ERR_NOMEM;
                goto fail_diff;
            }
            if ((rv = matcher_init(&d->m, &d->h->sel, t)) != 0) {
                free(d->joint);
                goto fail_diff;
            }
            ndiff++;
        }
    }

    scan(&p, &mm, t, bin_of, diff, ndiff, &r);

    for (size_t c = 0; c < r.ncells; c++) {
        space_cell *cell = &r.cells[c];
        if (p.op == SPACE_OP_SUM) {
            cell->sum_units += cx->units_lo * (int64_t)cell->n;
        }
        if (k > 0 && cell->n > 0 && cell->n < k) {
            zero_cell(cell, SPACE_SUPP_BELOW_K);
        }
    }
    for (size_t d = 0; d < ndiff; d++) {
        apply_differencing(&diff[d], r.ncells, k, &r);
    }
    if (hk != NULL) {
        hist_query hq;
        bool any = false;
        for (size_t c = 0; c < r.ncells; c++) {
            any = any || r.cells[c].supp == SPACE_SUPP_NONE;
        }
        /* A release that showed nothing constrains no later one. */
        if (any && (rv = hist_query_make(&hq, &p.sel, &r)) != 0) {
            goto fail_diff;
        }
        for (size_t d = 0; d < ndiff; d++) {
            matcher_dispose(&diff[d].m);
            free(diff[d].joint);
        }
        hist_release(db->hist, hk, ti, any ? &hq : NULL);
    }
    matcher_dispose(&mm);
    free(bin_of);
    *out = r;
    return 0;

fail_diff:
    for (size_t d = 0; d < ndiff; d++) {
        matcher_dispose(&diff[d].m);
        free(diff[d].joint);
    }
    if (hk != NULL) {
        hist_release(db->hist, hk, ti, NULL);
    }
fail_bins:
    free(bin_of);
fail_matcher:
    matcher_dispose(&mm);
fail_result:
    space_result_dispose(&r);
    if (rv == BG_ERR_NOMEM) {
        bg_errf(eb, rv, "out of memory executing a query on %s", t->schema->name);
    }
    return rv;
}
