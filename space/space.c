/* space/space.c: names of operations and comparisons, query checking against a schema, and
 * the result container. Schemas themselves live with the datasets (data.c). */
#include "space/space.h"

#include <math.h>
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
    }
    free(r->cells);
    r->cells = NULL;
    r->ncells = 0;
}
