/* space/space.c: names of operations and comparisons, query checking against a schema, and
 * the result container. Schemas themselves live with the datasets (data.c). */
#include "space/space.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {
    [SPACE_OP_COUNT] = "count",         [SPACE_OP_SUM] = "sum",
    [SPACE_OP_MEAN] = "mean",           [SPACE_OP_HISTOGRAM] = "histogram",
    [SPACE_OP_QUANTILES] = "quantiles", [SPACE_OP_AGREEMENT] = "agreement",
};

const char *space_op_name(space_op op)
{
    if ((size_t)op < sizeof(op_names) / sizeof(op_names[0]) && op_names[op] != NULL) {
        return op_names[op];
    }
    return "?";
}

space_op space_op_parse(const char *name)
{
    for (size_t i = 1; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
        if (op_names[i] != NULL && strcmp(op_names[i], name) == 0) {
            return (space_op)i;
        }
    }
    return (space_op)0;
}

static const char *const cmp_names[] = {
    [SPACE_CMP_EQ] = "=", [SPACE_CMP_NE] = "!=", [SPACE_CMP_LT] = "<",  [SPACE_CMP_LE] = "<=",
    [SPACE_CMP_GT] = ">", [SPACE_CMP_GE] = ">=", [SPACE_CMP_IN] = "in",
};

const char *space_cmp_name(space_cmp c)
{
    if ((size_t)c < sizeof(cmp_names) / sizeof(cmp_names[0]) && cmp_names[c] != NULL) {
        return cmp_names[c];
    }
    return "?";
}

space_cmp space_cmp_parse(const char *s)
{
    for (size_t i = 1; i < sizeof(cmp_names) / sizeof(cmp_names[0]); i++) {
        if (strcmp(cmp_names[i], s) == 0) {
            return (space_cmp)i;
        }
    }
    if (strcmp(s, "==") == 0) {
        return SPACE_CMP_EQ;
    }
    return (space_cmp)0;
}

const char *space_supp_name(space_supp s)
{
    switch (s) {
    case SPACE_SUPP_NONE:
        return "none";
    case SPACE_SUPP_BELOW_K:
        return "below_k";
    case SPACE_SUPP_COMPLEMENTARY:
        return "complementary";
    case SPACE_SUPP_DIFFERENCING:
        return "differencing";
    case SPACE_SUPP_DOMINANCE:
        return "dominance";
    }
    return "suppressed";
}

int space_schema_field(const space_schema *s, const char *name)
{
    for (size_t i = 0; i < s->nfields; i++) {
        if (strcmp(s->fields[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

size_t space_field_grid_bins(const space_field *f)
{
    if (f->type != SPACE_FIELD_NUMERIC || !(f->resolution > 0) || !(f->hi >= f->lo)) {
        return 0;
    }
    return (size_t)llround((f->hi - f->lo) / f->resolution) + 1;
}

int space_result_init(space_result *r, space_op op, size_t ncells, size_t nbins)
{
    memset(r, 0, sizeof(*r));
    r->op = op;
    if (ncells > SPACE_MAX_CELLS) {
        return BG_ERR_RANGE;
    }
    if (ncells == 0) {
        return 0;
    }
    r->cells = calloc(ncells, sizeof(*r->cells));
    if (r->cells == NULL) {
        return BG_ERR_NOMEM;
    }
    r->ncells = ncells;
    if (nbins > 0) {
        for (size_t i = 0; i < ncells; i++) {
            r->cells[i].bins = calloc(nbins, sizeof(uint64_t));
            if (r->cells[i].bins == NULL) {
                space_result_dispose(r);
                return BG_ERR_NOMEM;
            }
            r->cells[i].nbins = nbins;
        }
    }
    return 0;
}

void space_result_dispose(space_result *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->ncells; i++) {
        free(r->cells[i].bins);
        free(r->cells[i].bin_supp);
    }
    free(r->cells);
    r->cells = NULL;
    r->ncells = 0;
}

/* ---- checking a query against a schema ------------------------------------------------------ */

static int unknown_field(const space_schema *s, const char *where, const char *name,
                         bg_errbuf *eb)
{
    char list[400] = "";
    size_t off = 0;
    for (size_t i = 0; i < s->nfields && off + 2 < sizeof(list); i++) {
        int n = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", s->fields[i].name);
        if (n < 0) {
            break;
        }
        off += (size_t)n;
    }
    return bg_errf(eb, BG_ERR_INVAL, "unknown field \"%s\" in %s; fields of %s: %s", name, where,
                   s->name, list);
}

static const space_field *want_field(const space_schema *s, const char *where, const char *name,
                                     space_ftype type, bg_errbuf *eb, int *rv)
{
    if (name[0] == 0) {
        *rv = bg_errf(eb, BG_ERR_INVAL, "\"%s\" is required for this operation", where);
        return NULL;
    }
    int i = space_schema_field(s, name);
    if (i < 0) {
        *rv = unknown_field(s, where, name, eb);
        return NULL;
    }
    const space_field *f = &s->fields[i];
    if (f->type != type) {
        *rv = bg_errf(eb, BG_ERR_INVAL, "field \"%s\" in %s is %s; %s needs a %s field", name,
                      where, f->type == SPACE_FIELD_NUMERIC ? "numeric" : "categorical", where,
                      type == SPACE_FIELD_NUMERIC ? "numeric" : "categorical");
        return NULL;
    }
    return f;
}

static bool has_cat(const space_field *f, const char *v)
{
    for (size_t i = 0; i < f->ncats; i++) {
        if (strcmp(f->cats[i], v) == 0) {
            return true;
        }
    }
    return false;
}

static int check_filter(const space_query *q, size_t i, const space_schema *s, bg_errbuf *eb)
{
    const space_filter *fl = &q->where[i];
    char where[32];
    snprintf(where, sizeof(where), "where[%zu]", i);
    int fi = space_schema_field(s, fl->field);
    if (fi < 0) {
        return unknown_field(s, where, fl->field, eb);
    }
    const space_field *f = &s->fields[fi];
    if (fl->cmp < SPACE_CMP_EQ || fl->cmp > SPACE_CMP_IN) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: unknown comparison", where);
    }
    if (fl->nvals == 0 || fl->nvals > SPACE_MAX_IN || (fl->cmp != SPACE_CMP_IN && fl->nvals != 1)) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: \"%s\" takes %s", where, space_cmp_name(fl->cmp),
                       fl->cmp == SPACE_CMP_IN ? "1 to 16 values" : "one value");
    }
    if (f->type == SPACE_FIELD_CATEGORICAL) {
        if (!fl->is_cat) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "%s: field \"%s\" is categorical; compare it with category names, "
                           "not numbers",
                           where, f->name);
        }
        if (fl->cmp != SPACE_CMP_EQ && fl->cmp != SPACE_CMP_NE && fl->cmp != SPACE_CMP_IN) {
            return bg_errf(eb, BG_ERR_INVAL, "%s: field \"%s\" is categorical; use =, != or in",
                           where, f->name);
        }
        for (size_t v = 0; v < fl->nvals; v++) {
            if (!has_cat(f, fl->cat[v])) {
                char list[300] = "";
                size_t off = 0;
                for (size_t c = 0; c < f->ncats && off + 2 < sizeof(list); c++) {
                    int n = snprintf(list + off, sizeof(list) - off, "%s%s", c ? ", " : "",
                                     f->cats[c]);
                    if (n < 0) {
                        break;
                    }
                    off += (size_t)n;
                }
                return bg_errf(eb, BG_ERR_INVAL, "%s: \"%s\" is not a category of \"%s\" (%s)",
                               where, fl->cat[v], f->name, list);
            }
        }
        return 0;
    }
    if (fl->is_cat) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: field \"%s\" is numeric (%s); compare it with numbers",
                       where, f->name, f->unit != NULL ? f->unit : "");
    }
    for (size_t v = 0; v < fl->nvals; v++) {
        if (!isfinite(fl->num[v])) {
            return bg_errf(eb, BG_ERR_INVAL, "%s: value is not a finite number", where);
        }
    }
    return 0;
}

int space_query_check(const space_query *q, const space_schema *s, bg_errbuf *eb)
{
    int rv = 0;
    const space_field *f = NULL;
    size_t cells = 1;
    if (q->ngroup > SPACE_MAX_GROUP_BY) {
        return bg_errf(eb, BG_ERR_INVAL, "group_by takes at most %d fields", SPACE_MAX_GROUP_BY);
    }
    if (q->nwhere > SPACE_MAX_FILTERS) {
        return bg_errf(eb, BG_ERR_INVAL, "where takes at most %d filters", SPACE_MAX_FILTERS);
    }
    for (size_t g = 0; g < q->ngroup; g++) {
        const space_field *gf = want_field(s, "group_by", q->group_by[g], SPACE_FIELD_CATEGORICAL,
                                           eb, &rv);
        if (gf == NULL) {
            return rv;
        }
        if (g == 1 && strcmp(q->group_by[0], q->group_by[1]) == 0) {
            return bg_errf(eb, BG_ERR_INVAL, "group_by names \"%s\" twice", q->group_by[0]);
        }
        cells *= gf->ncats;
    }
    for (size_t i = 0; i < q->nwhere; i++) {
        if ((rv = check_filter(q, i, s, eb)) != 0) {
            return rv;
        }
    }
    switch (q->op) {
    case SPACE_OP_COUNT:
        return 0;
    case SPACE_OP_SUM:
    case SPACE_OP_MEAN:
        return want_field(s, "field", q->field, SPACE_FIELD_NUMERIC, eb, &rv) ? 0 : rv;
    case SPACE_OP_HISTOGRAM:
        if (want_field(s, "field", q->field, SPACE_FIELD_NUMERIC, eb, &rv) == NULL) {
            return rv;
        }
        if (q->nedges < 2 || q->nedges > SPACE_MAX_EDGES) {
            return bg_errf(eb, BG_ERR_INVAL, "\"edges\" needs 2 to %d numbers", SPACE_MAX_EDGES);
        }
        for (size_t i = 0; i < q->nedges; i++) {
            if (!isfinite(q->edges[i]) || (i > 0 && !(q->edges[i] > q->edges[i - 1]))) {
                return bg_errf(eb, BG_ERR_INVAL,
                               "\"edges\" must be finite and strictly increasing (edges[%zu])", i);
            }
        }
        return 0;
    case SPACE_OP_QUANTILES:
        if ((f = want_field(s, "field", q->field, SPACE_FIELD_NUMERIC, eb, &rv)) == NULL) {
            return rv;
        }
        if (q->nprobs < 1 || q->nprobs > SPACE_MAX_PROBS) {
            return bg_errf(eb, BG_ERR_INVAL, "\"probs\" needs 1 to %d probabilities",
                           SPACE_MAX_PROBS);
        }
        for (size_t i = 0; i < q->nprobs; i++) {
            if (!(q->probs[i] > 0.0 && q->probs[i] < 1.0)) {
                return bg_errf(eb, BG_ERR_INVAL, "\"probs\"[%zu] must be in (0,1)", i);
            }
        }
        if (cells * space_field_grid_bins(f) > ((size_t)1 << 22)) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "quantiles of \"%s\" over %zu groups need more than 4194304 grid "
                           "bins; group by fewer fields",
                           q->field, cells);
        }
        return 0;
    case SPACE_OP_AGREEMENT:
        if (want_field(s, "fields[0]", q->field, SPACE_FIELD_NUMERIC, eb, &rv) == NULL ||
            want_field(s, "fields[1]", q->field2, SPACE_FIELD_NUMERIC, eb, &rv) == NULL) {
            return rv;
        }
        if (strcmp(q->field, q->field2) == 0) {
            return bg_errf(eb, BG_ERR_INVAL, "agreement needs two different fields");
        }
        return 0;
    }
    return bg_errf(eb, BG_ERR_INVAL, "unknown operation");
}
