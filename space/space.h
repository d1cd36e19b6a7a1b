/* space/space.h: the federated query model and its aggregate states. A query names one dataset
 * (without its city), one operation, AND-ed filters and up to two categorical group_by fields;
 * a result is a table of cells, one per group, each holding the *mergeable state* of the
 * operation (count, exact sum, Chan moments, histogram bins, fine-grid counts, agreement
 * moments), never rows. Plain data: no I/O, no threads, no event loop.
 * Not for: the datasets and the executor (space/data.h), merging (space/agg.h), wire
 * encoding (space/wire.h), disclosure control (trust/disclosure.h). */
#ifndef SPACE_SPACE_H
#define SPACE_SPACE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define SPACE_NAME_MAX 64    /* field, dataset and category names, NUL included */
#define SPACE_MAX_FILTERS 8
#define SPACE_MAX_IN 16      /* values of one `in` filter */
#define SPACE_MAX_EDGES 64   /* histogram edges (so at most 63 inner bins + under/overflow) */
#define SPACE_MAX_PROBS 32
#define SPACE_MAX_GROUP_BY 2
#define SPACE_MAX_CELLS 4096 /* group combinations of one result */
#define SPACE_MAX_GRID 65536 /* fine-grid bins of one quantile field */

/* ---- schema ----------------------------------------------------------------------------- */

typedef enum space_ftype {
    SPACE_FIELD_NUMERIC = 1, /* a measured value on a fixed resolution grid */
    SPACE_FIELD_CATEGORICAL = 2,
} space_ftype;

/* One field of a dataset. Numeric fields hold multiples of |resolution| in [lo, hi]; their
 * fine grid for exact quantiles is lo, lo+resolution, ..., hi. Categorical fields hold one of
 * |cats| (codes 0..ncats-1). All strings are static. */
typedef struct space_field {
    const char *name;
    space_ftype type;
    const char *unit;        /* numeric: "mg/L", "months", ...; categorical: NULL */
    double resolution;       /* numeric: measurement resolution (> 0) */
    double lo, hi;           /* numeric: the value range (clipped to it) */
    const char *const *cats; /* categorical: the category names */
    size_t ncats;
    const char *description;
} space_field;

/* A dataset's shape; static, shared by every city that holds a dataset of this name. */
typedef struct space_schema {
    const char *name; /* "stroke-registry" */
    const char *description;
    const space_field *fields;
    size_t nfields;
} space_schema;

/* The schema called |name| or NULL. */
const space_schema *space_schema_find(const char *name);
/* All known schemas: *|n| of them. */
const space_schema *const *space_schema_all(size_t *n);
/* Index of field |name| in |s| or -1. */
int space_schema_field(const space_schema *s, const char *name);
/* Number of fine-grid bins of numeric field |f|: round((hi - lo) / resolution) + 1. */
size_t space_field_grid_bins(const space_field *f);

/* ---- query ------------------------------------------------------------------------------ */

typedef enum space_op {
    SPACE_OP_COUNT = 1,
    SPACE_OP_SUM = 2,       /* field */
    SPACE_OP_MEAN = 3,      /* field: mean, variance and n */
    SPACE_OP_HISTOGRAM = 4, /* field, edges */
    SPACE_OP_QUANTILES = 5, /* field, probs */
    SPACE_OP_AGREEMENT = 6, /* fields[0] (method, e.g. tcb), fields[1] (reference, e.g. tsb) */
} space_op;

typedef enum space_cmp {
    SPACE_CMP_EQ = 1,
    SPACE_CMP_NE,
    SPACE_CMP_LT,
    SPACE_CMP_LE,
    SPACE_CMP_GT,
    SPACE_CMP_GE,
    SPACE_CMP_IN,
} space_cmp;

/* One filter. Numeric fields compare |num| values; categorical fields accept only EQ, NE and
 * IN, with category names in |cat| (resolved against the schema when the query is checked). */
typedef struct space_filter {
    char field[SPACE_NAME_MAX];
    space_cmp cmp;
    size_t nvals; /* 1, or up to SPACE_MAX_IN for IN */
    double num[SPACE_MAX_IN];
    char cat[SPACE_MAX_IN][SPACE_NAME_MAX];
    bool is_cat; /* the values are category names (else numbers) */
} space_filter;

/* A query as it travels: field names, not indexes, so any data space can check it. */
typedef struct space_query {
    char dataset[SPACE_NAME_MAX]; /* name without city: "stroke-registry" */
    space_op op;
    char field[SPACE_NAME_MAX];  /* sum, mean, histogram, quantiles */
    char field2[SPACE_NAME_MAX]; /* agreement: the reference method */
    double edges[SPACE_MAX_EDGES];
    size_t nedges;
    double probs[SPACE_MAX_PROBS];
    size_t nprobs;
    space_filter where[SPACE_MAX_FILTERS];
    size_t nwhere;
    char group_by[SPACE_MAX_GROUP_BY][SPACE_NAME_MAX];
    size_t ngroup;
} space_query;

const char *space_op_name(space_op op); /* "count", ...; "?" when unknown */
/* SPACE_OP_* for |name|, or 0. */
space_op space_op_parse(const char *name);
const char *space_cmp_name(space_cmp c); /* "=", "!=", "<", "<=", ">", ">=", "in" */
space_cmp space_cmp_parse(const char *s); /* or 0 */

/* Checks |q| against |schema|: known fields of the right type for the operation, edges
 * strictly increasing, probabilities in (0,1), at most two categorical group_by fields, filter
 * values of the field's type, known categories. Returns 0, or BG_ERR_INVAL with a message
 * naming the exact field in |eb| ("unknown field \"agee\"; fields: age, sex, ..."). */
int space_query_check(const space_query *q, const space_schema *schema, bg_errbuf *eb);

/* ---- aggregate states -------------------------------------------------------------------- */

/* Why a cell carries no value. 0: it does. */
typedef enum space_supp {
    SPACE_SUPP_NONE = 0,
    SPACE_SUPP_BELOW_K = 1,       /* primary: fewer than k records */
    SPACE_SUPP_COMPLEMENTARY = 2, /* secondary: would reveal a suppressed cell from margins */
    SPACE_SUPP_DIFFERENCING = 3,  /* differs from an earlier release by fewer than k records */
    SPACE_SUPP_DOMINANCE = 4,     /* a magnitude cell dominated by few contributors */
} space_supp;
const char *space_supp_name(space_supp s); /* "below_k", ... */

/* Chan et al. moments of one variable: n, mean, M2 = sum (x - mean)^2. */
typedef struct space_moments {
    uint64_t n;
    double mean;
    double m2;
} space_moments;

/* Bland-Altman / concordance state of paired (x = method, y = reference) values, in the Chan
 * form (METHODS.md section 5): d = x - y, a = (x + y) / 2. */
typedef struct space_agree {
    uint64_t n;
    double d_mean, d_m2; /* differences */
    double a_mean, a_m2; /* averages */
    double c_ad;         /* co-moment of a and d */
    double x_mean, x_m2, y_mean, y_m2, c_xy; /* for Lin's concordance */
} space_agree;

/* One group's state. Which members are meaningful depends on the result's op:
 *   count:      n
 *   sum:        n, sum_units (exact: sum of value/resolution, an integer)
 *   mean:       mom
 *   histogram:  n, bins[0..nbins) = underflow, [e0,e1), ..., [e_{m-2}, e_{m-1}), overflow
 *   quantiles:  n, bins = fine-grid counts (space_field_grid_bins()), or already-final
 *               |qvals| when the data space released quantiles only (single-city answers)
 *   agreement:  agree (n in agree.n and n)
 * Noise (trust/disclosure.c) and suppression are recorded per cell. */
typedef struct space_cell {
    uint16_t key[SPACE_MAX_GROUP_BY]; /* category codes of the group_by fields */
    uint64_t n;
    int64_t sum_units;
    space_moments mom;
    space_agree agree;
    uint64_t *bins; /* owned by the result */
    size_t nbins;
    uint8_t *bin_supp; /* histogram: per-bin space_supp (nbins), owned; NULL when none is */
    double qvals[SPACE_MAX_PROBS]; /* quantiles only, when |has_qvals| */
    bool has_qvals;
    space_supp supp;
    bool noisy;           /* n (and bins) carry discrete-Laplace noise of |noise_scale| */
    double noise_scale;   /* b = sensitivity / epsilon */
} space_cell;

/* A result: the query's operation on one data space (or a merge of several), one cell per
 * group in a deterministic order (keys ascending). With no group_by there is one cell. */
typedef struct space_result {
    space_op op;
    double resolution; /* sum: the field's resolution (value = sum_units * resolution) */
    double grid_lo;    /* quantiles: value of fine-grid bin 0 (bin i = lo + i*resolution) */
    size_t ngroup;
    char group_by[SPACE_MAX_GROUP_BY][SPACE_NAME_MAX];
    space_cell *cells;
    size_t ncells;
    uint64_t rows_scanned; /* rows the data space read (not disclosed past the provider) */
} space_result;

/* Allocates |ncells| zeroed cells (and, when |nbins| > 0, that many zeroed bins in each).
 * Returns 0 or BG_ERR_NOMEM / BG_ERR_RANGE (ncells > SPACE_MAX_CELLS). */
int space_result_init(space_result *r, space_op op, size_t ncells, size_t nbins);
void space_result_dispose(space_result *r); /* frees cells and bins; NULL-safe, idempotent */

#endif /* SPACE_SPACE_H */
