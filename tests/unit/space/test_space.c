/* tests/unit/space/test_space.c: space/space.c. Operation, comparison and suppression names
 * both ways; the shipped schemas (lookup, field indexes, fine-grid sizes); result init and
 * dispose (limits, every allocation failing in turn); and space_query_check: a valid query of
 * every operation on every shipped schema, then every documented refusal with the exact error
 * message naming the offending member (docs/queries.md, "Errors"). space.c is included so
 * that its allocations can be failed one by one. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- failing allocator (space.c is compiled here against it) ------------------------------ */

static long alloc_left = -1; /* allocations that still succeed; -1: all */

static void *t_calloc(size_t n, size_t m)
{
    if (alloc_left == 0) {
        return NULL;
    }
    if (alloc_left > 0) {
        alloc_left--;
    }
    return calloc(n, m);
}

#define calloc t_calloc
#include "space/space.c"
#undef calloc

/* ---- helpers ----------------------------------------------------------------------------- */

static const space_schema *schema(const char *name)
{
    const space_schema *s = space_schema_find(name);
    if (s == NULL) {
        fail_msg("no shipped schema %s", name);
    }
    return s;
}

static const space_field *field(const space_schema *s, const char *name)
{
    int i = space_schema_field(s, name);
    if (i < 0) {
        fail_msg("no field %s in %s", name, s->name);
    }
    return &s->fields[i];
}

/* A query of |op| on |ds| with no filters and no group_by. */
static void base_query(space_query *q, const char *ds, space_op op, const char *f)
{
    memset(q, 0, sizeof(*q));
    snprintf(q->dataset, sizeof(q->dataset), "%s", ds);
    q->op = op;
    if (f != NULL) {
        snprintf(q->field, sizeof(q->field), "%s", f);
    }
}

static void add_num(space_query *q, const char *f, space_cmp cmp, double v)
{
    space_filter *fl = &q->where[q->nwhere++];
    snprintf(fl->field, sizeof(fl->field), "%s", f);
    fl->cmp = cmp;
    fl->num[0] = v;
    fl->nvals = 1;
}

static void add_cat(space_query *q, const char *f, space_cmp cmp, const char *v)
{
    space_filter *fl = &q->where[q->nwhere++];
    snprintf(fl->field, sizeof(fl->field), "%s", f);
    fl->cmp = cmp;
    fl->is_cat = true;
    snprintf(fl->cat[0], sizeof(fl->cat[0]), "%s", v);
    fl->nvals = 1;
}

static void add_group(space_query *q, const char *g)
{
    snprintf(q->group_by[q->ngroup], sizeof(q->group_by[0]), "%s", g);
    q->ngroup++;
}

static void expect_ok(const space_query *q)
{
    bg_errbuf eb = {{0}};
    int rc = space_query_check(q, schema(q->dataset), &eb);
    if (rc != 0) {
        fail_msg("%s %s on %s refused (%d): %s", space_op_name(q->op), q->field, q->dataset, rc,
                 eb.msg);
    }
}

/* Refused with BG_ERR_INVAL and exactly |msg|. */
static void expect_refused(const space_query *q, const space_schema *s, const char *msg)
{
    bg_errbuf eb = {{0}};
    assert_int_equal(space_query_check(q, s, &eb), BG_ERR_INVAL);
    assert_string_equal(eb.msg, msg);
}

static const char *const shipped[] = {"peds-pneumonia-indicators", "neonatal-bilirubin",
                                      "stroke-registry", "liver-cancer", "cerebral-infarction"};
#define NSHIPPED (sizeof(shipped) / sizeof(shipped[0]))

/* ---- names ------------------------------------------------------------------------------- */

static void test_space_op_name_round_trip(void **state)
{
    (void)state;
    static const struct {
        space_op op;
        const char *name;
    } ops[] = {
        {SPACE_OP_COUNT, "count"},         {SPACE_OP_SUM, "sum"},
        {SPACE_OP_MEAN, "mean"},           {SPACE_OP_HISTOGRAM, "histogram"},
        {SPACE_OP_QUANTILES, "quantiles"}, {SPACE_OP_AGREEMENT, "agreement"},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        assert_string_equal(space_op_name(ops[i].op), ops[i].name);
        assert_int_equal(space_op_parse(ops[i].name), ops[i].op);
        assert_int_equal(space_op_parse(space_op_name(ops[i].op)), ops[i].op);
    }
}

static void test_space_op_parse_unknown(void **state)
{
    (void)state;
    static const char *const bad[] = {"",      "?",     "median", "COUNT",    "Count",     "count ",
                                      " mean", "sum\t", "hist",   "quantile", "agreements"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(space_op_parse(bad[i]), 0);
    }
    assert_string_equal(space_op_name((space_op)0), "?");
    assert_string_equal(space_op_name((space_op)7), "?");
    assert_string_equal(space_op_name((space_op)1000), "?");
}

static void test_space_cmp_name_round_trip(void **state)
{
    (void)state;
    static const struct {
        space_cmp cmp;
        const char *name;
    } cmps[] = {
        {SPACE_CMP_EQ, "="}, {SPACE_CMP_NE, "!="}, {SPACE_CMP_LT, "<"},  {SPACE_CMP_LE, "<="},
        {SPACE_CMP_GT, ">"}, {SPACE_CMP_GE, ">="}, {SPACE_CMP_IN, "in"},
    };
    for (size_t i = 0; i < sizeof(cmps) / sizeof(cmps[0]); i++) {
        assert_string_equal(space_cmp_name(cmps[i].cmp), cmps[i].name);
        assert_int_equal(space_cmp_parse(cmps[i].name), cmps[i].cmp);
    }
    /* "==" is accepted as "=" (queries.md, "Filters") and written back as "=" */
    assert_int_equal(space_cmp_parse("=="), SPACE_CMP_EQ);
}

static void test_space_cmp_parse_unknown(void **state)
{
    (void)state;
    static const char *const bad[] = {"",   "=<",  "=>", "<>",     "!",  "!==", "===", "IN",
                                      "In", "in ", " =", "not in", "eq", "ne",  "≤"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (space_cmp_parse(bad[i]) != 0) {
            fail_msg("\"%s\" parsed as comparison %d", bad[i], (int)space_cmp_parse(bad[i]));
        }
    }
    assert_string_equal(space_cmp_name((space_cmp)0), "?");
    assert_string_equal(space_cmp_name((space_cmp)8), "?");
    assert_string_equal(space_cmp_name((space_cmp)1000), "?");
}

static void test_space_supp_name_every_reason(void **state)
{
    (void)state;
    assert_string_equal(space_supp_name(SPACE_SUPP_NONE), "none");
    assert_string_equal(space_supp_name(SPACE_SUPP_BELOW_K), "below_k");
    assert_string_equal(space_supp_name(SPACE_SUPP_COMPLEMENTARY), "complementary");
    assert_string_equal(space_supp_name(SPACE_SUPP_DIFFERENCING), "differencing");
    assert_string_equal(space_supp_name(SPACE_SUPP_DOMINANCE), "dominance");
    /* an unknown reason still reads as withheld, never as a value */
    assert_string_equal(space_supp_name((space_supp)5), "suppressed");
    assert_string_equal(space_supp_name((space_supp)255), "suppressed");
}

/* ---- schemas ----------------------------------------------------------------------------- */

static void test_space_schema_find_shipped(void **state)
{
    (void)state;
    size_t n = 0;
    const space_schema *const *all = space_schema_all(&n);
    assert_int_equal(n, NSHIPPED);
    for (size_t i = 0; i < NSHIPPED; i++) {
        const space_schema *s = space_schema_find(shipped[i]);
        assert_non_null(s);
        assert_string_equal(s->name, shipped[i]);
        assert_ptr_equal(all[i], s);
        assert_non_null(s->description);
        assert_true(s->nfields > 0);
    }
    static const char *const bad[] = {"",
                                      "stroke-registy",
                                      "Stroke-Registry",
                                      "stroke-registry ",
                                      "hongkong/stroke-registry",
                                      "*/stroke-registry",
                                      "stroke"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(space_schema_find(bad[i]));
    }
}

static void test_space_schema_field_index(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    /* the order the unknown-field message lists (docs/queries.md, "Errors") */
    static const char *const order[] = {"age",   "age_band",          "sex",     "stroke_type",
                                        "nihss", "onset_to_door_min", "mrs_90d", "hospital"};
    assert_int_equal(s->nfields, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(space_schema_field(s, order[i]), (int)i);
    }
    assert_int_equal(space_schema_field(s, "agee"), -1);
    assert_int_equal(space_schema_field(s, "Age"), -1);
    assert_int_equal(space_schema_field(s, "age "), -1);
    assert_int_equal(space_schema_field(s, ""), -1);
    assert_int_equal(space_schema_field(s, "tcb"), -1); /* another dataset's field */
    assert_int_equal(space_schema_field(schema("neonatal-bilirubin"), "tcb"), 4);

    /* every shipped field: found at its index, well formed for its type */
    for (size_t d = 0; d < NSHIPPED; d++) {
        const space_schema *sc = schema(shipped[d]);
        for (size_t i = 0; i < sc->nfields; i++) {
            const space_field *f = &sc->fields[i];
            assert_int_equal(space_schema_field(sc, f->name), (int)i);
            assert_true(strlen(f->name) < SPACE_NAME_MAX);
            if (f->type == SPACE_FIELD_NUMERIC) {
                assert_true(f->resolution > 0);
                assert_true(f->hi > f->lo);
                assert_non_null(f->unit);
                assert_true(space_field_grid_bins(f) <= SPACE_MAX_GRID);
            } else {
                assert_int_equal(f->type, SPACE_FIELD_CATEGORICAL);
                assert_true(f->ncats >= 2);
                assert_non_null(f->cats);
                assert_int_equal(space_field_grid_bins(f), 0);
            }
        }
    }
}

static void test_space_field_grid_bins(void **state)
{
    (void)state;
    /* the sizes docs/upstream.md quotes */
    const space_schema *sr = schema("stroke-registry");
    assert_int_equal(space_field_grid_bins(field(sr, "mrs_90d")), 7);
    assert_int_equal(space_field_grid_bins(field(sr, "onset_to_door_min")), 1431);
    assert_int_equal(space_field_grid_bins(field(sr, "age")), 83);
    assert_int_equal(space_field_grid_bins(field(sr, "nihss")), 43);
    const space_schema *pp = schema("peds-pneumonia-indicators");
    assert_int_equal(space_field_grid_bins(field(pp, "crp")), 3001);
    assert_int_equal(space_field_grid_bins(field(pp, "pct")), 10001);
    assert_int_equal(space_field_grid_bins(field(pp, "age_months")), 180);
    assert_int_equal(space_field_grid_bins(field(schema("liver-cancer"), "afp")), 20001);
    assert_int_equal(space_field_grid_bins(field(sr, "sex")), 0);

    /* rounding, not truncation: (0.3 - 0) / 0.1 is 2.9999999999999996 in binary */
    space_field f = {
        .name = "x", .type = SPACE_FIELD_NUMERIC, .resolution = 0.1, .lo = 0, .hi = 0.3};
    assert_int_equal(space_field_grid_bins(&f), 4);
    f.lo = -1.5;
    f.hi = 1.5;
    assert_int_equal(space_field_grid_bins(&f), 31);
    f.hi = f.lo; /* one value */
    assert_int_equal(space_field_grid_bins(&f), 1);
    f.hi = f.lo - 1; /* inverted range */
    assert_int_equal(space_field_grid_bins(&f), 0);
    f.hi = 1;
    f.resolution = 0;
    assert_int_equal(space_field_grid_bins(&f), 0);
    f.resolution = -0.1;
    assert_int_equal(space_field_grid_bins(&f), 0);
    f.resolution = NAN;
    assert_int_equal(space_field_grid_bins(&f), 0);
}

/* ---- results ----------------------------------------------------------------------------- */

static void test_space_result_init_zeroed(void **state)
{
    (void)state;
    space_result r;
    memset(&r, 0xa5, sizeof(r));
    assert_int_equal(space_result_init(&r, SPACE_OP_QUANTILES, 4, 7), 0);
    assert_int_equal(r.op, SPACE_OP_QUANTILES);
    assert_int_equal(r.ncells, 4);
    assert_int_equal(r.ngroup, 0);
    assert_int_equal(r.rows_scanned, 0);
    assert_true(r.resolution == 0.0 && r.grid_lo == 0.0);
    assert_non_null(r.cells);
    for (size_t i = 0; i < 4; i++) {
        const space_cell *c = &r.cells[i];
        assert_int_equal(c->nbins, 7);
        assert_non_null(c->bins);
        for (size_t b = 0; b < 7; b++) {
            assert_int_equal(c->bins[b], 0);
        }
        assert_int_equal(c->n, 0);
        assert_int_equal(c->sum_units, 0);
        assert_int_equal(c->supp, SPACE_SUPP_NONE);
        assert_null(c->bin_supp);
        assert_false(c->has_qvals);
        assert_false(c->noisy);
        assert_int_equal(c->key[0], 0);
        assert_int_equal(c->key[1], 0);
        for (size_t j = i + 1; j < 4; j++) { /* each cell owns its own bins */
            assert_ptr_not_equal(c->bins, r.cells[j].bins);
        }
    }
    space_result_dispose(&r);
    assert_null(r.cells);
    assert_int_equal(r.ncells, 0);
    space_result_dispose(&r); /* idempotent */
    space_result_dispose(NULL);
}

static void test_space_result_init_no_bins(void **state)
{
    (void)state;
    space_result r;
    assert_int_equal(space_result_init(&r, SPACE_OP_MEAN, 3, 0), 0);
    assert_int_equal(r.ncells, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_null(r.cells[i].bins);
        assert_int_equal(r.cells[i].nbins, 0);
    }
    space_result_dispose(&r);

    assert_int_equal(space_result_init(&r, SPACE_OP_COUNT, 0, 5), 0); /* no cells at all */
    assert_int_equal(r.op, SPACE_OP_COUNT);
    assert_null(r.cells);
    assert_int_equal(r.ncells, 0);
    space_result_dispose(&r);
}

static void test_space_result_init_range(void **state)
{
    (void)state;
    space_result r;
    assert_int_equal(space_result_init(&r, SPACE_OP_HISTOGRAM, SPACE_MAX_CELLS, 2), 0);
    assert_int_equal(r.ncells, SPACE_MAX_CELLS);
    assert_int_equal(r.cells[SPACE_MAX_CELLS - 1].nbins, 2);
    space_result_dispose(&r);

    memset(&r, 0xa5, sizeof(r));
    assert_int_equal(space_result_init(&r, SPACE_OP_COUNT, SPACE_MAX_CELLS + 1, 0), BG_ERR_RANGE);
    assert_null(r.cells); /* safe to dispose, nothing to free */
    assert_int_equal(r.ncells, 0);
    assert_int_equal(r.op, SPACE_OP_COUNT);
    space_result_dispose(&r);
    assert_int_equal(space_result_init(&r, SPACE_OP_COUNT, (size_t)-1, 0), BG_ERR_RANGE);
    assert_null(r.cells);
}

/* Every allocation failing in turn: BG_ERR_NOMEM, an empty result, and no leak (ASan). */
static void test_space_result_init_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        space_result r;
        alloc_left = n;
        int rc = space_result_init(&r, SPACE_OP_HISTOGRAM, 5, 4);
        alloc_left = -1;
        if (rc == 0) {
            assert_int_equal(n, 6); /* the cells, then the bins of each of 5 cells */
            assert_int_equal(r.ncells, 5);
            space_result_dispose(&r);
            break;
        }
        assert_int_equal(rc, BG_ERR_NOMEM);
        assert_null(r.cells);
        assert_int_equal(r.ncells, 0);
        space_result_dispose(&r);
    }
}

static void test_space_result_dispose_frees_bin_supp(void **state)
{
    (void)state;
    space_result r;
    assert_int_equal(space_result_init(&r, SPACE_OP_HISTOGRAM, 2, 3), 0);
    r.cells[1].bin_supp = calloc(3, 1);
    assert_non_null(r.cells[1].bin_supp);
    r.cells[1].bin_supp[2] = SPACE_SUPP_BELOW_K;
    space_result_dispose(&r); /* LeakSanitizer fails the test if it did not */
    assert_null(r.cells);
}

/* ---- space_query_check: accepted --------------------------------------------------------- */

/* Every operation on every numeric field of every shipped schema, grouped by each categorical
 * field, with a numeric and a categorical filter. */
static void test_space_query_check_accepts_every_op_every_schema(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t d = 0; d < NSHIPPED; d++) {
        const space_schema *s = schema(shipped[d]);
        const space_field *cat = NULL, *num = NULL;
        for (size_t i = 0; i < s->nfields; i++) {
            if (s->fields[i].type == SPACE_FIELD_CATEGORICAL && cat == NULL) {
                cat = &s->fields[i];
            }
            if (s->fields[i].type == SPACE_FIELD_NUMERIC && num == NULL) {
                num = &s->fields[i];
            }
        }
        assert_non_null(cat);
        assert_non_null(num);
        for (size_t i = 0; i < s->nfields; i++) {
            const space_field *f = &s->fields[i];
            space_query q;
            if (f->type == SPACE_FIELD_CATEGORICAL) {
                base_query(&q, s->name, SPACE_OP_COUNT, NULL);
                add_group(&q, f->name);
                add_cat(&q, f->name, SPACE_CMP_NE, f->cats[f->ncats - 1]);
                expect_ok(&q);
                checked++;
                continue;
            }
            for (int op = SPACE_OP_COUNT; op <= SPACE_OP_QUANTILES; op++) {
                base_query(&q, s->name, (space_op)op, op == SPACE_OP_COUNT ? NULL : f->name);
                add_num(&q, num->name, SPACE_CMP_GE, num->lo);
                add_cat(&q, cat->name, SPACE_CMP_EQ, cat->cats[0]);
                add_group(&q, cat->name);
                if (op == SPACE_OP_HISTOGRAM) {
                    q.edges[0] = f->lo;
                    q.edges[1] = (f->lo + f->hi) / 2;
                    q.edges[2] = f->hi;
                    q.nedges = 3;
                }
                if (op == SPACE_OP_QUANTILES) {
                    q.probs[0] = 0.5;
                    q.nprobs = 1;
                }
                expect_ok(&q);
                checked++;
            }
            for (size_t j = 0; j < s->nfields; j++) { /* agreement with every other one */
                if (j != i && s->fields[j].type == SPACE_FIELD_NUMERIC) {
                    base_query(&q, s->name, SPACE_OP_AGREEMENT, f->name);
                    snprintf(q.field2, sizeof(q.field2), "%s", s->fields[j].name);
                    expect_ok(&q);
                    checked++;
                }
            }
        }
    }
    assert_true(checked > 100);
}

/* The documented examples (docs/queries.md) and the limits, each just inside. */
static void test_space_query_check_accepts_documented(void **state)
{
    (void)state;
    space_query q;
    /* count: ischaemic strokes aged 65 or more, by sex */
    base_query(&q, "stroke-registry", SPACE_OP_COUNT, NULL);
    add_num(&q, "age", SPACE_CMP_GE, 65);
    add_cat(&q, "stroke_type", SPACE_CMP_EQ, "ischaemic");
    add_group(&q, "sex");
    expect_ok(&q);
    /* sum of nihss */
    base_query(&q, "stroke-registry", SPACE_OP_SUM, "nihss");
    add_cat(&q, "stroke_type", SPACE_CMP_EQ, "haemorrhagic");
    expect_ok(&q);
    /* mean by age band */
    base_query(&q, "stroke-registry", SPACE_OP_MEAN, "nihss");
    add_group(&q, "age_band");
    expect_ok(&q);
    /* histogram of onset to door */
    base_query(&q, "stroke-registry", SPACE_OP_HISTOGRAM, "onset_to_door_min");
    const double e[] = {60, 180, 270, 360, 720};
    memcpy(q.edges, e, sizeof(e));
    q.nedges = 5;
    expect_ok(&q);
    /* quantiles */
    base_query(&q, "stroke-registry", SPACE_OP_QUANTILES, "onset_to_door_min");
    q.probs[0] = 0.1;
    q.probs[1] = 0.5;
    q.probs[2] = 0.9;
    q.nprobs = 3;
    expect_ok(&q);
    /* agreement of the bilirubin meter, by device and gestational age band */
    base_query(&q, "neonatal-bilirubin", SPACE_OP_AGREEMENT, "tcb");
    snprintf(q.field2, sizeof(q.field2), "tsb");
    add_group(&q, "device");
    add_group(&q, "ga_band");
    expect_ok(&q);
    /* fan-out example: two hospitals, under 80, by sex and stroke type */
    base_query(&q, "stroke-registry", SPACE_OP_COUNT, NULL);
    add_num(&q, "age", SPACE_CMP_LT, 80);
    add_cat(&q, "hospital", SPACE_CMP_IN, "shenzhen-h1");
    snprintf(q.where[1].cat[1], SPACE_NAME_MAX, "hongkong-h1");
    q.where[1].nvals = 2;
    add_group(&q, "sex");
    add_group(&q, "stroke_type");
    expect_ok(&q);
    /* liver-cancer: every comparison on a numeric field, in on numbers */
    base_query(&q, "liver-cancer", SPACE_OP_MEAN, "survival_months");
    add_num(&q, "afp", SPACE_CMP_LT, 400);
    add_num(&q, "afp", SPACE_CMP_LE, 400);
    add_num(&q, "age", SPACE_CMP_GT, 18);
    add_num(&q, "age", SPACE_CMP_NE, 50.5); /* off-grid values are fine: they match nothing */
    add_num(&q, "age", SPACE_CMP_EQ, 60);
    add_num(&q, "survival_months", SPACE_CMP_IN, 0); /* SPACE_MAX_IN values */
    for (size_t v = 0; v < SPACE_MAX_IN; v++) {
        q.where[5].num[v] = (double)v * 7.5 - 3;
    }
    q.where[5].nvals = SPACE_MAX_IN;
    add_cat(&q, "hbv_status", SPACE_CMP_IN, "positive");
    add_cat(&q, "bclc_stage", SPACE_CMP_NE, "d"); /* SPACE_MAX_FILTERS filters */
    assert_int_equal(q.nwhere, SPACE_MAX_FILTERS);
    add_group(&q, "bclc_stage");
    add_group(&q, "hospital");
    expect_ok(&q);
    /* cerebral-infarction */
    base_query(&q, "cerebral-infarction", SPACE_OP_MEAN, "door_to_needle_min");
    add_cat(&q, "thrombolysis", SPACE_CMP_EQ, "yes");
    add_group(&q, "toast_subtype");
    expect_ok(&q);
    /* the largest shipped quantile layout: crp (3001 bins) x pathogen x hospital */
    base_query(&q, "peds-pneumonia-indicators", SPACE_OP_QUANTILES, "crp");
    q.probs[0] = 0.5;
    q.nprobs = 1;
    add_group(&q, "pathogen");
    add_group(&q, "hospital");
    expect_ok(&q);
    /* SPACE_MAX_EDGES edges and SPACE_MAX_PROBS probabilities; probabilities near 0 and 1 */
    base_query(&q, "peds-pneumonia-indicators", SPACE_OP_HISTOGRAM, "crp");
    for (size_t i = 0; i < SPACE_MAX_EDGES; i++) {
        q.edges[i] = -1 + (double)i * 0.1;
    }
    q.nedges = SPACE_MAX_EDGES;
    expect_ok(&q);
    base_query(&q, "peds-pneumonia-indicators", SPACE_OP_QUANTILES, "crp");
    for (size_t i = 0; i < SPACE_MAX_PROBS; i++) {
        q.probs[i] = (double)(i + 1) / (SPACE_MAX_PROBS + 1);
    }
    q.probs[0] = 1e-12;
    q.probs[SPACE_MAX_PROBS - 1] = nextafter(1.0, 0.0);
    q.nprobs = SPACE_MAX_PROBS;
    expect_ok(&q);
    /* probabilities need not be sorted, nor distinct */
    q.probs[0] = 0.9;
    q.probs[1] = 0.1;
    q.probs[2] = 0.1;
    q.nprobs = 3;
    expect_ok(&q);
}

/* ---- space_query_check: refused ---------------------------------------------------------- */

static void test_space_query_check_unknown_field(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    const char *list = "age, age_band, sex, stroke_type, nihss, onset_to_door_min, mrs_90d, "
                       "hospital";
    char want[400];
    space_query q;
    /* the exact message of docs/queries.md */
    base_query(&q, s->name, SPACE_OP_MEAN, "agee");
    snprintf(want, sizeof(want), "unknown field \"agee\" in field; fields of stroke-registry: %s",
             list);
    expect_refused(&q, s, want);
    /* in a filter: names where[i] */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_num(&q, "age", SPACE_CMP_GE, 65);
    add_cat(&q, "sex", SPACE_CMP_EQ, "f");
    add_num(&q, "tcb", SPACE_CMP_GT, 100);
    snprintf(want, sizeof(want), "unknown field \"tcb\" in where[2]; fields of stroke-registry: %s",
             list);
    expect_refused(&q, s, want);
    /* in group_by */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_group(&q, "sex");
    add_group(&q, "device");
    snprintf(want, sizeof(want),
             "unknown field \"device\" in group_by; fields of stroke-registry: %s", list);
    expect_refused(&q, s, want);
    /* agreement: each of its two fields */
    const space_schema *nb = schema("neonatal-bilirubin");
    const char *nb_list = "gestational_age_weeks, ga_band, hours_of_life, tsb, tcb, device, "
                          "hospital";
    base_query(&q, nb->name, SPACE_OP_AGREEMENT, "tcbb");
    snprintf(q.field2, sizeof(q.field2), "tsb");
    snprintf(want, sizeof(want),
             "unknown field \"tcbb\" in fields[0]; fields of neonatal-bilirubin: %s", nb_list);
    expect_refused(&q, nb, want);
    base_query(&q, nb->name, SPACE_OP_AGREEMENT, "tcb");
    snprintf(q.field2, sizeof(q.field2), "TSB");
    snprintf(want, sizeof(want),
             "unknown field \"TSB\" in fields[1]; fields of neonatal-bilirubin: %s", nb_list);
    expect_refused(&q, nb, want);
    /* a field of another shipped dataset is unknown here */
    base_query(&q, s->name, SPACE_OP_SUM, "afp");
    snprintf(want, sizeof(want), "unknown field \"afp\" in field; fields of stroke-registry: %s",
             list);
    expect_refused(&q, s, want);
}

static void test_space_query_check_missing_field(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    space_query q;
    for (int op = SPACE_OP_SUM; op <= SPACE_OP_QUANTILES; op++) {
        base_query(&q, s->name, (space_op)op, NULL);
        q.edges[0] = 1;
        q.edges[1] = 2;
        q.nedges = 2;
        q.probs[0] = 0.5;
        q.nprobs = 1;
        expect_refused(&q, s, "\"field\" is required for this operation");
    }
    base_query(&q, s->name, SPACE_OP_AGREEMENT, NULL);
    snprintf(q.field2, sizeof(q.field2), "nihss");
    expect_refused(&q, s, "\"fields[0]\" is required for this operation");
    base_query(&q, s->name, SPACE_OP_AGREEMENT, "nihss");
    expect_refused(&q, s, "\"fields[1]\" is required for this operation");
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_group(&q, "");
    expect_refused(&q, s, "\"group_by\" is required for this operation");
}

static void test_space_query_check_wrong_type(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    space_query q;
    for (int op = SPACE_OP_SUM; op <= SPACE_OP_QUANTILES; op++) {
        base_query(&q, s->name, (space_op)op, "stroke_type");
        q.edges[0] = 1;
        q.edges[1] = 2;
        q.nedges = 2;
        q.probs[0] = 0.5;
        q.nprobs = 1;
        expect_refused(
            &q, s, "field \"stroke_type\" in field is categorical; field needs a numeric field");
    }
    base_query(&q, s->name, SPACE_OP_AGREEMENT, "sex");
    snprintf(q.field2, sizeof(q.field2), "nihss");
    expect_refused(&q, s,
                   "field \"sex\" in fields[0] is categorical; fields[0] needs a numeric field");
    base_query(&q, s->name, SPACE_OP_AGREEMENT, "nihss");
    snprintf(q.field2, sizeof(q.field2), "hospital");
    expect_refused(&q, s,
                   "field \"hospital\" in fields[1] is categorical; fields[1] needs a numeric "
                   "field");
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_group(&q, "age");
    expect_refused(&q, s,
                   "field \"age\" in group_by is numeric; group_by needs a categorical field");
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_group(&q, "sex");
    add_group(&q, "nihss");
    expect_refused(&q, s,
                   "field \"nihss\" in group_by is numeric; group_by needs a categorical field");
}

static void test_space_query_check_edges(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    space_query q;
    base_query(&q, s->name, SPACE_OP_HISTOGRAM, "age");
    expect_refused(&q, s, "\"edges\" needs 2 to 64 numbers");
    q.edges[0] = 45;
    q.nedges = 1; /* NB: docs/queries.md and upstream.md say 1 to 64; the code needs 2 */
    expect_refused(&q, s, "\"edges\" needs 2 to 64 numbers");
    q.nedges = SPACE_MAX_EDGES + 1;
    expect_refused(&q, s, "\"edges\" needs 2 to 64 numbers");
    /* the documented example: [65, 45] */
    q.edges[0] = 65;
    q.edges[1] = 45;
    q.nedges = 2;
    expect_refused(&q, s, "\"edges\" must be finite and strictly increasing (edges[1])");
    /* equal neighbours are not strictly increasing */
    const double eq[] = {18, 45, 65, 65, 80};
    memcpy(q.edges, eq, sizeof(eq));
    q.nedges = 5;
    expect_refused(&q, s, "\"edges\" must be finite and strictly increasing (edges[3])");
    /* a decrease far from the start */
    for (size_t i = 0; i < SPACE_MAX_EDGES; i++) {
        q.edges[i] = (double)i;
    }
    q.edges[SPACE_MAX_EDGES - 1] = q.edges[SPACE_MAX_EDGES - 2] - 0.5;
    q.nedges = SPACE_MAX_EDGES;
    expect_refused(&q, s, "\"edges\" must be finite and strictly increasing (edges[63])");
    /* non-finite edges, first and last */
    q.nedges = 3;
    q.edges[0] = NAN;
    q.edges[1] = 1;
    q.edges[2] = 2;
    expect_refused(&q, s, "\"edges\" must be finite and strictly increasing (edges[0])");
    q.edges[0] = -INFINITY;
    expect_refused(&q, s, "\"edges\" must be finite and strictly increasing (edges[0])");
    q.edges[0] = 0;
    q.edges[2] = INFINITY;
    expect_refused(&q, s, "\"edges\" must be finite and strictly increasing (edges[2])");
    q.edges[1] = NAN;
    q.edges[2] = 2;
    expect_refused(&q, s, "\"edges\" must be finite and strictly increasing (edges[1])");
}

static void test_space_query_check_probs(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    space_query q;
    base_query(&q, s->name, SPACE_OP_QUANTILES, "age");
    expect_refused(&q, s, "\"probs\" needs 1 to 32 probabilities");
    for (size_t i = 0; i < SPACE_MAX_PROBS; i++) {
        q.probs[i] = 0.5;
    }
    q.nprobs = SPACE_MAX_PROBS + 1; /* the count alone must refuse, before any is read */
    expect_refused(&q, s, "\"probs\" needs 1 to 32 probabilities");
    /* the documented example: [0.5, 1.0] */
    q.probs[0] = 0.5;
    q.probs[1] = 1.0;
    q.nprobs = 2;
    expect_refused(&q, s, "\"probs\"[1] must be in (0,1)");
    static const double bad[] = {0.0, -0.0, 1.0, -0.5, 1.5, 100, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        q.probs[0] = 0.25;
        q.probs[1] = 0.5;
        q.probs[2] = bad[i];
        q.nprobs = 3;
        expect_refused(&q, s, "\"probs\"[2] must be in (0,1)");
        q.probs[0] = bad[i];
        expect_refused(&q, s, "\"probs\"[0] must be in (0,1)");
    }
}

static void test_space_query_check_group_by(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    space_query q;
    /* the documented example: sex, hospital, stroke_type */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_group(&q, "sex");
    add_group(&q, "hospital");
    q.ngroup = 3; /* group_by[] has no room for a third name: the count alone must refuse */
    expect_refused(&q, s, "group_by takes at most 2 fields");
    q.ngroup = 2;
    expect_ok(&q);
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_group(&q, "sex");
    add_group(&q, "sex");
    expect_refused(&q, s, "group_by names \"sex\" twice");
}

static void test_space_query_check_filters(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    space_query q;
    /* the documented examples: a number for a categorical field, an unknown category */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_num(&q, "sex", SPACE_CMP_GT, 3);
    expect_refused(&q, s,
                   "where[0]: field \"sex\" is categorical; compare it with category names, not "
                   "numbers");
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_cat(&q, "sex", SPACE_CMP_EQ, "x");
    expect_refused(&q, s, "where[0]: \"x\" is not a category of \"sex\" (f, m)");
    /* categories are case-sensitive; the unknown one of an `in` is named, in where[i] */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_num(&q, "age", SPACE_CMP_GE, 65);
    add_cat(&q, "stroke_type", SPACE_CMP_IN, "ischaemic");
    snprintf(q.where[1].cat[1], SPACE_NAME_MAX, "Haemorrhagic");
    q.where[1].nvals = 2;
    expect_refused(&q, s,
                   "where[1]: \"Haemorrhagic\" is not a category of \"stroke_type\" (ischaemic, "
                   "haemorrhagic)");
    /* a category of another field is not one of this field */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_cat(&q, "sex", SPACE_CMP_NE, "ischaemic");
    expect_refused(&q, s, "where[0]: \"ischaemic\" is not a category of \"sex\" (f, m)");
    /* an order comparison on a categorical field */
    static const space_cmp order[] = {SPACE_CMP_LT, SPACE_CMP_LE, SPACE_CMP_GT, SPACE_CMP_GE};
    for (size_t i = 0; i < 4; i++) {
        base_query(&q, s->name, SPACE_OP_COUNT, NULL);
        add_cat(&q, "stroke_type", order[i], "ischaemic");
        expect_refused(&q, s, "where[0]: field \"stroke_type\" is categorical; use =, != or in");
    }
    /* a name for a numeric field: names the field and its unit */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_cat(&q, "sex", SPACE_CMP_EQ, "f");
    add_cat(&q, "age", SPACE_CMP_EQ, "65");
    expect_refused(&q, s, "where[1]: field \"age\" is numeric (years); compare it with numbers");
    /* non-finite numbers */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_num(&q, "age", SPACE_CMP_LT, NAN);
    expect_refused(&q, s, "where[0]: value is not a finite number");
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_num(&q, "nihss", SPACE_CMP_IN, 1);
    q.where[0].num[1] = 2;
    q.where[0].num[2] = 3;
    q.where[0].num[3] = -INFINITY;
    q.where[0].nvals = 4;
    expect_refused(&q, s, "where[0]: value is not a finite number");
    /* comparisons outside the enum */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_num(&q, "age", (space_cmp)0, 1);
    expect_refused(&q, s, "where[0]: unknown comparison");
    q.where[0].cmp = (space_cmp)(SPACE_CMP_IN + 1);
    expect_refused(&q, s, "where[0]: unknown comparison");
    /* value counts: one for a comparison, 1 to SPACE_MAX_IN for in */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_num(&q, "age", SPACE_CMP_EQ, 1);
    q.where[0].nvals = 0;
    expect_refused(&q, s, "where[0]: \"=\" takes one value");
    q.where[0].cmp = SPACE_CMP_LT;
    q.where[0].nvals = 2;
    expect_refused(&q, s, "where[0]: \"<\" takes one value");
    q.where[0].cmp = SPACE_CMP_IN;
    q.where[0].nvals = 0;
    expect_refused(&q, s, "where[0]: \"in\" takes 1 to 16 values");
    q.where[0].nvals = SPACE_MAX_IN + 1;
    expect_refused(&q, s, "where[0]: \"in\" takes 1 to 16 values");
    q.where[0].nvals = SPACE_MAX_IN;
    expect_ok(&q);
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    add_cat(&q, "hospital", SPACE_CMP_NE, "other-h1");
    q.where[0].nvals = 2;
    expect_refused(&q, s, "where[0]: \"!=\" takes one value");
    q.where[0].cmp = SPACE_CMP_IN;
    q.where[0].nvals = SPACE_MAX_IN + 1;
    expect_refused(&q, s, "where[0]: \"in\" takes 1 to 16 values");
    /* the first bad filter is the one named, after SPACE_MAX_FILTERS - 1 good ones */
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    for (size_t i = 0; i + 1 < SPACE_MAX_FILTERS; i++) {
        add_num(&q, "age", SPACE_CMP_GE, (double)i);
    }
    add_cat(&q, "sex", SPACE_CMP_EQ, "x");
    expect_refused(&q, s, "where[7]: \"x\" is not a category of \"sex\" (f, m)");
    /* group_by is checked before the filters, the filters before the operation's fields */
    base_query(&q, s->name, SPACE_OP_MEAN, "agee");
    add_cat(&q, "sex", SPACE_CMP_EQ, "x");
    expect_refused(&q, s, "where[0]: \"x\" is not a category of \"sex\" (f, m)");
    add_group(&q, "sex");
    add_group(&q, "sex");
    expect_refused(&q, s, "group_by names \"sex\" twice");
}

/* space_query_check() bounds q->nwhere by SPACE_MAX_FILTERS itself (it once read where[8],
 * one past the array, and refused only by accident); the JSON and protobuf readers keep
 * nwhere <= 8 too, and space_db_execute() checks again. */
static void test_space_query_check_too_many_filters(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    space_query q;
    base_query(&q, s->name, SPACE_OP_COUNT, NULL);
    for (size_t i = 0; i < SPACE_MAX_FILTERS; i++) {
        add_num(&q, "age", SPACE_CMP_GE, (double)i);
    }
    expect_ok(&q);
    q.nwhere = SPACE_MAX_FILTERS + 1;
    bg_errbuf eb = {{0}};
    assert_int_equal(space_query_check(&q, s, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "filters"));
    assert_null(strstr(eb.msg, "where[8]"));
}

static void test_space_query_check_agreement_fields(void **state)
{
    (void)state;
    const space_schema *s = schema("neonatal-bilirubin");
    space_query q;
    base_query(&q, s->name, SPACE_OP_AGREEMENT, "tcb");
    snprintf(q.field2, sizeof(q.field2), "tcb");
    expect_refused(&q, s, "agreement needs two different fields");
    snprintf(q.field2, sizeof(q.field2), "tsb");
    expect_ok(&q);
    /* the other order is a different (valid) question */
    base_query(&q, s->name, SPACE_OP_AGREEMENT, "tsb");
    snprintf(q.field2, sizeof(q.field2), "tcb");
    expect_ok(&q);
}

static void test_space_query_check_unknown_op(void **state)
{
    (void)state;
    const space_schema *s = schema("stroke-registry");
    space_query q;
    base_query(&q, s->name, (space_op)0, "age");
    expect_refused(&q, s, "unknown operation");
    q.op = (space_op)(SPACE_OP_AGREEMENT + 1);
    expect_refused(&q, s, "unknown operation");
}

/* A schema of our own, to reach limits no shipped schema reaches: the quantile grid over
 * groups, and field and category lists longer than the message buffers. */
static const char *const cats65[] = {
    "c00", "c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08", "c09", "c10", "c11", "c12",
    "c13", "c14", "c15", "c16", "c17", "c18", "c19", "c20", "c21", "c22", "c23", "c24", "c25",
    "c26", "c27", "c28", "c29", "c30", "c31", "c32", "c33", "c34", "c35", "c36", "c37", "c38",
    "c39", "c40", "c41", "c42", "c43", "c44", "c45", "c46", "c47", "c48", "c49", "c50", "c51",
    "c52", "c53", "c54", "c55", "c56", "c57", "c58", "c59", "c60", "c61", "c62", "c63", "c64"};
static const char *const cats2[] = {"a", "b"};

static void test_space_query_check_quantile_grid_limit(void **state)
{
    (void)state;
    space_field fields[] = {
        {.name = "v",
         .type = SPACE_FIELD_NUMERIC,
         .unit = "u",
         .resolution = 1,
         .lo = 0,
         .hi = 65535},
        {.name = "g64", .type = SPACE_FIELD_CATEGORICAL, .cats = cats65, .ncats = 64},
        {.name = "g65", .type = SPACE_FIELD_CATEGORICAL, .cats = cats65, .ncats = 65},
        {.name = "g2", .type = SPACE_FIELD_CATEGORICAL, .cats = cats2, .ncats = 2},
    };
    space_schema s = {.name = "grid", .fields = fields, .nfields = 4};
    assert_int_equal(space_field_grid_bins(&fields[0]), 65536);
    space_query q;
    base_query(&q, "grid", SPACE_OP_QUANTILES, "v");
    q.probs[0] = 0.5;
    q.nprobs = 1;
    add_group(&q, "g64"); /* 64 x 65536 = 4194304 bins: the limit itself */
    bg_errbuf eb = {{0}};
    assert_int_equal(space_query_check(&q, &s, &eb), 0);
    snprintf(q.group_by[0], SPACE_NAME_MAX, "g65");
    expect_refused(&q, &s,
                   "quantiles of \"v\" over 65 groups need more than 4194304 grid bins; group by "
                   "fewer fields");
    snprintf(q.group_by[0], SPACE_NAME_MAX, "g64");
    add_group(&q, "g2");
    expect_refused(&q, &s,
                   "quantiles of \"v\" over 128 groups need more than 4194304 grid bins; group by "
                   "fewer fields");
    /* the same layout for a mean needs no grid */
    q.op = SPACE_OP_MEAN;
    assert_int_equal(space_query_check(&q, &s, &eb), 0);
}

static void test_space_query_check_long_lists(void **state)
{
    (void)state;
    enum { NF = 40 };
    static char names[NF][SPACE_NAME_MAX];
    space_field fields[NF + 1];
    memset(fields, 0, sizeof(fields));
    for (size_t i = 0; i < NF; i++) {
        snprintf(names[i], sizeof(names[i]), "field_number_%02zu_with_a_rather_long_name", i);
        fields[i] = (space_field){.name = names[i],
                                  .type = SPACE_FIELD_NUMERIC,
                                  .unit = "u",
                                  .resolution = 1,
                                  .lo = 0,
                                  .hi = 10};
    }
    fields[NF] =
        (space_field){.name = "g", .type = SPACE_FIELD_CATEGORICAL, .cats = cats65, .ncats = 65};
    space_schema s = {.name = "wide", .fields = fields, .nfields = NF + 1};
    space_query q;
    base_query(&q, "wide", SPACE_OP_MEAN, "nope");
    bg_errbuf eb;
    memset(&eb, 'x', sizeof(eb));
    assert_int_equal(space_query_check(&q, &s, &eb), BG_ERR_INVAL);
    assert_non_null(memchr(eb.msg, 0, sizeof(eb.msg)));
    const char *prefix = "unknown field \"nope\" in field; fields of wide: "
                         "field_number_00_with_a_rather_long_name, "
                         "field_number_01_with_a_rather_long_name, ";
    assert_memory_equal(eb.msg, prefix, strlen(prefix));
    /* 65 categories: the list is cut, the message still names the filter and the value */
    base_query(&q, "wide", SPACE_OP_COUNT, NULL);
    add_cat(&q, "g", SPACE_CMP_IN, "c64");
    snprintf(q.where[0].cat[1], SPACE_NAME_MAX, "c65");
    q.where[0].nvals = 2;
    memset(&eb, 'x', sizeof(eb));
    assert_int_equal(space_query_check(&q, &s, &eb), BG_ERR_INVAL);
    assert_non_null(memchr(eb.msg, 0, sizeof(eb.msg)));
    prefix = "where[0]: \"c65\" is not a category of \"g\" (c00, c01, c02, ";
    assert_memory_equal(eb.msg, prefix, strlen(prefix));
    /* a NULL errbuf is allowed (bg_errf) */
    assert_int_equal(space_query_check(&q, &s, NULL), BG_ERR_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_op_name_round_trip),
        cmocka_unit_test(test_space_op_parse_unknown),
        cmocka_unit_test(test_space_cmp_name_round_trip),
        cmocka_unit_test(test_space_cmp_parse_unknown),
        cmocka_unit_test(test_space_supp_name_every_reason),
        cmocka_unit_test(test_space_schema_find_shipped),
        cmocka_unit_test(test_space_schema_field_index),
        cmocka_unit_test(test_space_field_grid_bins),
        cmocka_unit_test(test_space_result_init_zeroed),
        cmocka_unit_test(test_space_result_init_no_bins),
        cmocka_unit_test(test_space_result_init_range),
        cmocka_unit_test(test_space_result_init_alloc_failure),
        cmocka_unit_test(test_space_result_dispose_frees_bin_supp),
        cmocka_unit_test(test_space_query_check_accepts_every_op_every_schema),
        cmocka_unit_test(test_space_query_check_accepts_documented),
        cmocka_unit_test(test_space_query_check_unknown_field),
        cmocka_unit_test(test_space_query_check_missing_field),
        cmocka_unit_test(test_space_query_check_wrong_type),
        cmocka_unit_test(test_space_query_check_edges),
        cmocka_unit_test(test_space_query_check_probs),
        cmocka_unit_test(test_space_query_check_group_by),
        cmocka_unit_test(test_space_query_check_filters),
        cmocka_unit_test(test_space_query_check_too_many_filters),
        cmocka_unit_test(test_space_query_check_agreement_fields),
        cmocka_unit_test(test_space_query_check_unknown_op),
        cmocka_unit_test(test_space_query_check_quantile_grid_limit),
        cmocka_unit_test(test_space_query_check_long_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
