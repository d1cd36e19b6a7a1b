/* tests/unit/space/test_exec.c: space_db_execute() against a brute-force computation over the
 * dumped CSV values: every operation, every comparison, group_by with empty cells, every
 * rejected query (with the field named), small-cell suppression, the differencing defence and
 * its history bounds, and concurrent execution. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "space/agg.h"
#include "space/data.h"

#define ROWS 20000
#define MAXC 256

/* ---- the fixture: one guangzhou db and its datasets parsed back from CSV ---- */

typedef struct frame {
    const space_schema *s;
    size_t nrows;
    double *v; /* nrows x nfields; categorical as its code */
} frame;

static space_db *db;
static frame peds, neo, cer;

static void frame_load(frame *fr, const char *dataset)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(space_db_dump_csv(db, dataset, f), 0);
    assert_int_equal(fclose(f), 0);
    const space_schema *s = space_schema_find(dataset);
    fr->s = s;
    fr->nrows = (size_t)space_db_rows(db, dataset);
    fr->v = malloc(fr->nrows * s->nfields * sizeof(double));
    assert_non_null(fr->v);
    char *p = strchr(buf, '\n') + 1;
    for (size_t i = 0; i < fr->nrows; i++) {
        for (size_t fi = 0; fi < s->nfields; fi++) {
            const space_field *fd = &s->fields[fi];
            size_t n = strcspn(p, ",\n");
            double x = -1;
            if (fd->type == SPACE_FIELD_NUMERIC) {
                x = strtod(p, NULL);
            } else {
                for (size_t c = 0; c < fd->ncats; c++) {
                    if (strlen(fd->cats[c]) == n && memcmp(fd->cats[c], p, n) == 0) {
                        x = (double)c;
                    }
                }
            }
            assert_true(x >= 0);
            fr->v[i * s->nfields + fi] = x;
            p += n + 1;
        }
    }
    free(buf);
}

static int setup(void **state)
{
    (void)state;
    bg_errbuf eb = {{0}};
    if (space_db_new(&db, "guangzhou", ROWS, 77, NULL, 0, &eb) != 0) {
        print_error("%s\n", eb.msg);
        return -1;
    }
    frame_load(&peds, "peds-pneumonia-indicators");
    frame_load(&neo, "neonatal-bilirubin");
    frame_load(&cer, "cerebral-infarction");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(peds.v);
    free(neo.v);
    free(cer.v);
    space_db_free(db);
    return 0;
}

/* ---- building queries ---- */

static space_query *q_new(const char *dataset, space_op op, const char *field)
{
    space_query *q = calloc(1, sizeof(*q));
    assert_non_null(q);
    snprintf(q->dataset, sizeof(q->dataset), "%s", dataset);
    q->op = op;
    snprintf(q->field, sizeof(q->field), "%s", field != NULL ? field : "");
    return q;
}

static void q_num(space_query *q, const char *field, space_cmp cmp, double v)
{
    space_filter *f = &q->where[q->nwhere++];
    snprintf(f->field, sizeof(f->field), "%s", field);
    f->cmp = cmp;
    f->nvals = 1;
    f->num[0] = v;
}

static void q_cat(space_query *q, const char *field, space_cmp cmp, const char *v)
{
    space_filter *f = &q->where[q->nwhere++];
    snprintf(f->field, sizeof(f->field), "%s", field);
    f->cmp = cmp;
    f->nvals = 1;
    f->is_cat = true;
    snprintf(f->cat[0], sizeof(f->cat[0]), "%s", v);
}

static void q_in_num(space_query *q, const char *field, const double *v, size_t n)
{
    space_filter *f = &q->where[q->nwhere++];
    snprintf(f->field, sizeof(f->field), "%s", field);
    f->cmp = SPACE_CMP_IN;
    f->nvals = n;
    memcpy(f->num, v, n * sizeof(double));
}

static void q_in_cat(space_query *q, const char *field, const char *const *v, size_t n)
{
    space_filter *f = &q->where[q->nwhere++];
    snprintf(f->field, sizeof(f->field), "%s", field);
    f->cmp = SPACE_CMP_IN;
    f->nvals = n;
    f->is_cat = true;
    for (size_t i = 0; i < n; i++) {
        snprintf(f->cat[i], sizeof(f->cat[i]), "%s", v[i]);
    }
}

static void q_group(space_query *q, const char *field)
{
    snprintf(q->group_by[q->ngroup], sizeof(q->group_by[0]), "%s", field);
    q->ngroup++;
}

static int run(const space_query *q, const space_exec_opts *o, space_result *r, bg_errbuf *eb)
{
    return space_db_execute(db, q, o, r, eb);
}

/* ---- brute force ---- */

static const space_field *fld(const frame *fr, const char *name, size_t *idx)
{
    int i = space_schema_field(fr->s, name);
    assert_true(i >= 0);
    *idx = (size_t)i;
    return &fr->s->fields[i];
}

static bool bf_filter(const frame *fr, const space_filter *fl, const double *row)
{
    size_t fi;
    const space_field *f = fld(fr, fl->field, &fi);
    double x = row[fi];
    if (f->type == SPACE_FIELD_CATEGORICAL) {
        bool any = false;
        for (size_t v = 0; v < fl->nvals; v++) {
            any = any || strcmp(f->cats[(size_t)x], fl->cat[v]) == 0;
        }
        return fl->cmp == SPACE_CMP_NE ? !any : any;
    }
    double res = f->resolution;
    switch (fl->cmp) {
    case SPACE_CMP_EQ:
        return llround(x / res) == llround(fl->num[0] / res);
    case SPACE_CMP_NE:
        return llround(x / res) != llround(fl->num[0] / res);
    case SPACE_CMP_LT:
        return x < fl->num[0];
    case SPACE_CMP_LE:
        return x <= fl->num[0];
    case SPACE_CMP_GT:
        return x > fl->num[0];
    case SPACE_CMP_GE:
        return x >= fl->num[0];
    case SPACE_CMP_IN:
        for (size_t v = 0; v < fl->nvals; v++) {
            if (llround(x / res) == llround(fl->num[v] / res)) {
                return true;
            }
        }
        return false;
    }
    fail();
    return false;
}

/* The cell of |row| under |q|, or -1 when filtered out. */
static long bf_cell(const frame *fr, const space_query *q, const double *row)
{
    for (size_t i = 0; i < q->nwhere; i++) {
        if (!bf_filter(fr, &q->where[i], row)) {
            return -1;
        }
    }
    long c = 0;
    for (size_t g = 0; g < q->ngroup; g++) {
        size_t gi;
        const space_field *f = fld(fr, q->group_by[g], &gi);
        c = c * (long)f->ncats + (long)row[gi];
    }
    return c;
}

static size_t bf_ncells(const frame *fr, const space_query *q)
{
    size_t n = 1;
    for (size_t g = 0; g < q->ngroup; g++) {
        size_t gi;
        n *= fld(fr, q->group_by[g], &gi)->ncats;
    }
    return n;
}

typedef struct bf {
    size_t ncells;
    uint64_t n[MAXC];
    int64_t units[MAXC];
    double mean[MAXC], m2[MAXC];
    /* agreement, two-pass */
    double dm[MAXC], dm2[MAXC], am[MAXC], am2[MAXC], cad[MAXC];
    double xm[MAXC], xm2[MAXC], ym[MAXC], ym2[MAXC], cxy[MAXC];
} bf;

/* Counts, exact sums and two-pass moments of |q| (field, field2) by brute force. */
static bf *bf_run(const frame *fr, const space_query *q)
{
    bf *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    b->ncells = bf_ncells(fr, q);
    assert_true(b->ncells <= MAXC);
    size_t fx = 0, fy = 0;
    double res = 1;
    if (q->field[0]) {
        res = fld(fr, q->field, &fx)->resolution;
    }
    if (q->field2[0]) {
        fld(fr, q->field2, &fy);
    }
    size_t nf = fr->s->nfields;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < fr->nrows; i++) {
            const double *row = fr->v + i * nf;
            long c = bf_cell(fr, q, row);
            if (c < 0) {
                continue;
            }
            double x = row[fx], y = row[fy], d = x - y, a = (x + y) / 2;
            if (pass == 0) {
                b->n[c]++;
                b->units[c] += llround(x / res);
                b->mean[c] += x;
                b->dm[c] += d;
                b->am[c] += a;
                b->xm[c] += x;
                b->ym[c] += y;
                continue;
            }
            b->m2[c] += (x - b->mean[c]) * (x - b->mean[c]);
            b->dm2[c] += (d - b->dm[c]) * (d - b->dm[c]);
            b->am2[c] += (a - b->am[c]) * (a - b->am[c]);
            b->cad[c] += (a - b->am[c]) * (d - b->dm[c]);
            b->xm2[c] += (x - b->xm[c]) * (x - b->xm[c]);
            b->ym2[c] += (y - b->ym[c]) * (y - b->ym[c]);
            b->cxy[c] += (x - b->xm[c]) * (y - b->ym[c]);
        }
        if (pass == 0) {
            for (size_t c = 0; c < b->ncells; c++) {
                double n = b->n[c] > 0 ? (double)b->n[c] : 1;
                b->mean[c] /= n;
                b->dm[c] /= n;
                b->am[c] /= n;
                b->xm[c] /= n;
                b->ym[c] /= n;
            }
        }
    }
    return b;
}

static void near(double got, double want, double scale, const char *what)
{
    double tol = 1e-9 * (fabs(scale) > 1e-300 ? fabs(scale) : 1);
    if (!(fabs(got - want) <= tol)) {
        fail_msg("%s: got %.17g want %.17g", what, got, want);
    }
}

static void check_layout(const space_result *r, const space_query *q, const frame *fr)
{
    assert_int_equal(r->op, q->op);
    assert_int_equal(r->ncells, bf_ncells(fr, q));
    assert_int_equal(r->ngroup, q->ngroup);
    assert_int_equal(r->rows_scanned, fr->nrows);
    size_t n1 = 1;
    if (q->ngroup == 2) {
        size_t gi;
        n1 = fld(fr, q->group_by[1], &gi)->ncats;
    }
    for (size_t g = 0; g < q->ngroup; g++) {
        assert_string_equal(r->group_by[g], q->group_by[g]);
    }
    for (size_t c = 0; c < r->ncells; c++) {
        if (q->ngroup == 2) {
            assert_int_equal(r->cells[c].key[0], c / n1);
            assert_int_equal(r->cells[c].key[1], c % n1);
        } else if (q->ngroup == 1) {
            assert_int_equal(r->cells[c].key[0], c);
        }
        assert_int_equal(r->cells[c].supp, SPACE_SUPP_NONE);
    }
}

/* Runs |q| without suppression and compares n (and the op's state) with brute force. */
static void check_query(const frame *fr, space_query *q)
{
    space_result r;
    bg_errbuf eb = {{0}};
    int rv = run(q, NULL, &r, &eb);
    if (rv != 0) {
        fail_msg("execute: %d %s", rv, eb.msg);
    }
    check_layout(&r, q, fr);
    bf *b = bf_run(fr, q);
    for (size_t c = 0; c < r.ncells; c++) {
        const space_cell *cell = &r.cells[c];
        assert_int_equal(cell->n, b->n[c]);
        switch (q->op) {
        case SPACE_OP_SUM:
            assert_int_equal(cell->sum_units, b->units[c]);
            break;
        case SPACE_OP_MEAN:
            assert_int_equal(cell->mom.n, b->n[c]);
            near(cell->mom.mean, b->mean[c], b->mean[c], "mean");
            near(cell->mom.m2, b->m2[c], b->m2[c], "m2");
            break;
        case SPACE_OP_AGREEMENT: {
            const space_agree *a = &cell->agree;
            assert_int_equal(a->n, b->n[c]);
            near(a->d_mean, b->dm[c], sqrt(b->dm2[c] / (double)b->n[c]) + fabs(b->dm[c]), "d");
            near(a->d_m2, b->dm2[c], b->dm2[c], "d_m2");
            near(a->a_mean, b->am[c], b->am[c], "a");
            near(a->a_m2, b->am2[c], b->am2[c], "a_m2");
            near(a->c_ad, b->cad[c], sqrt(b->am2[c] * b->dm2[c]), "c_ad");
            near(a->x_mean, b->xm[c], b->xm[c], "x");
            near(a->x_m2, b->xm2[c], b->xm2[c], "x_m2");
            near(a->y_mean, b->ym[c], b->ym[c], "y");
            near(a->y_m2, b->ym2[c], b->ym2[c], "y_m2");
            near(a->c_xy, b->cxy[c], sqrt(b->xm2[c] * b->ym2[c]), "c_xy");
            break;
        }
        default:
            break;
        }
    }
    free(b);
    space_result_dispose(&r);
}

/* ---- operations ---- */

static void test_space_db_execute_count_all(void **state)
{
    (void)state;
    space_query *q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    space_result r;
    bg_errbuf eb = {{0}};
    assert_int_equal(run(q, NULL, &r, &eb), 0);
    assert_int_equal(r.ncells, 1);
    assert_int_equal(r.cells[0].n, ROWS);
    assert_int_equal(r.rows_scanned, ROWS);
    space_result_dispose(&r);
    free(q);
}

static void test_space_db_execute_filters_numeric(void **state)
{
    (void)state;
    /* thresholds on the grid (boundary rows are in the data) and between grid points */
    const double crp[] = {10.0, 10.05, 0.3, 0.0, 300.0, -5, 1e9};
    for (space_cmp cmp = SPACE_CMP_EQ; cmp <= SPACE_CMP_GE; cmp++) {
        for (size_t i = 0; i < sizeof(crp) / sizeof(crp[0]); i++) {
            space_query *q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
            q_num(q, "crp", cmp, crp[i]);
            check_query(&peds, q);
            free(q);
        }
    }
    /* equality after rounding to the grid: 24.4 months is 24 */
    space_query *q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_num(q, "age_months", SPACE_CMP_EQ, 24.4);
    check_query(&peds, q);
    space_result r;
    bg_errbuf eb = {{0}};
    assert_int_equal(run(q, NULL, &r, &eb), 0);
    assert_true(r.cells[0].n > 100); /* the grid match is not vacuous */
    space_result_dispose(&r);
    free(q);
    /* in, with values off the grid range and repeated */
    const double ages[] = {6, 12, 12, 200, 24.2, 0};
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_in_num(q, "age_months", ages, 6);
    check_query(&peds, q);
    free(q);
    /* a band: 0.5 < pct <= 2.0 and wbc >= 15 */
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_num(q, "pct", SPACE_CMP_GT, 0.5);
    q_num(q, "pct", SPACE_CMP_LE, 2.0);
    q_num(q, "wbc", SPACE_CMP_GE, 15);
    check_query(&peds, q);
    free(q);
}

static void test_space_db_execute_filters_categorical(void **state)
{
    (void)state;
    space_query *q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_cat(q, "pathogen", SPACE_CMP_EQ, "rsv");
    check_query(&peds, q);
    free(q);
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_cat(q, "pathogen", SPACE_CMP_NE, "rsv");
    q_cat(q, "sex", SPACE_CMP_EQ, "f");
    check_query(&peds, q);
    free(q);
    const char *bact[] = {"s_pneumoniae", "mycoplasma"};
    q = q_new("peds-pneumonia-indicators", SPACE_OP_MEAN, "crp");
    q_in_cat(q, "pathogen", bact, 2);
    q_group(q, "age_band");
    check_query(&peds, q);
    free(q);
    /* a category no row of this city has: zero, not an error */
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_cat(q, "hospital", SPACE_CMP_EQ, "macau-h1");
    space_result r;
    bg_errbuf eb = {{0}};
    assert_int_equal(run(q, NULL, &r, &eb), 0);
    assert_int_equal(r.cells[0].n, 0);
    space_result_dispose(&r);
    free(q);
}

static void test_space_db_execute_sum_exact(void **state)
{
    (void)state;
    const char *fields[] = {"crp", "pct", "wbc", "neutrophil_pct", "age_months"};
    for (size_t i = 0; i < 5; i++) {
        space_query *q = q_new("peds-pneumonia-indicators", SPACE_OP_SUM, fields[i]);
        q_group(q, "sex");
        check_query(&peds, q);
        space_result r;
        bg_errbuf eb = {{0}};
        assert_int_equal(run(q, NULL, &r, &eb), 0);
        size_t fi;
        assert_true(r.resolution == fld(&peds, fields[i], &fi)->resolution);
        assert_true(r.cells[0].sum_units > 0);
        space_result_dispose(&r);
        free(q);
    }
    /* a field with lo > 0: the offset of lo is in the sum */
    space_query *q = q_new("neonatal-bilirubin", SPACE_OP_SUM, "tsb");
    q_num(q, "tsb", SPACE_CMP_LT, 40);
    check_query(&neo, q);
    free(q);
}

static void test_space_db_execute_mean_moments(void **state)
{
    (void)state;
    space_query *q = q_new("peds-pneumonia-indicators", SPACE_OP_MEAN, "pct");
    q_group(q, "pathogen");
    check_query(&peds, q);
    free(q);
    q = q_new("cerebral-infarction", SPACE_OP_MEAN, "door_to_needle_min");
    q_cat(q, "thrombolysis", SPACE_CMP_EQ, "yes");
    q_group(q, "toast_subtype");
    q_group(q, "sex");
    check_query(&cer, q);
    free(q);
}

static void test_space_db_execute_histogram_exact(void **state)
{
    (void)state;
    /* edges on grid values (half-open bins must put 10.0 in [10, 20)), and off them */
    const double edges[] = {1.0, 5.0, 10.0, 20.0, 49.95, 100.0, 250.0};
    space_query *q = q_new("peds-pneumonia-indicators", SPACE_OP_HISTOGRAM, "crp");
    memcpy(q->edges, edges, sizeof(edges));
    q->nedges = 7;
    q_group(q, "pathogen");
    space_result r;
    bg_errbuf eb = {{0}};
    assert_int_equal(run(q, NULL, &r, &eb), 0);
    check_layout(&r, q, &peds);
    size_t fi, gi;
    fld(&peds, "crp", &fi);
    fld(&peds, "pathogen", &gi);
    uint64_t want[6][8] = {{0}};
    for (size_t i = 0; i < peds.nrows; i++) {
        const double *row = peds.v + i * peds.s->nfields;
        size_t b = 0;
        while (b < 7 && row[fi] >= edges[b]) {
            b++;
        }
        want[(size_t)row[gi]][b]++;
    }
    for (size_t c = 0; c < 6; c++) {
        assert_int_equal(r.cells[c].nbins, 8);
        uint64_t n = 0;
        for (size_t b = 0; b < 8; b++) {
            assert_int_equal(r.cells[c].bins[b], want[c][b]);
            n += want[c][b];
        }
        assert_int_equal(r.cells[c].n, n);
    }
    assert_true(want[0][0] > 0 && want[3][7] > 0); /* underflow and overflow used */
    space_result_dispose(&r);
    free(q);
}

static void test_space_db_execute_quantile_grid(void **state)
{
    (void)state;
    space_query *q = q_new("neonatal-bilirubin", SPACE_OP_QUANTILES, "tcb");
    q->probs[0] = 0.5;
    q->probs[1] = 0.95;
    q->nprobs = 2;
    q_group(q, "ga_band");
    space_result r;
    bg_errbuf eb = {{0}};
    assert_int_equal(run(q, NULL, &r, &eb), 0);
    check_layout(&r, q, &neo);
    assert_true(r.grid_lo == 20.0 && r.resolution == 1.0);
    size_t fi, gi;
    fld(&neo, "tcb", &fi);
    fld(&neo, "ga_band", &gi);
    uint64_t *want = calloc(3 * 481, sizeof(uint64_t));
    assert_non_null(want);
    for (size_t i = 0; i < neo.nrows; i++) {
        const double *row = neo.v + i * neo.s->nfields;
        want[(size_t)row[gi] * 481 + (size_t)llround((row[fi] - 20.0) / 1.0)]++;
    }
    for (size_t c = 0; c < 3; c++) {
        assert_int_equal(r.cells[c].nbins, 481);
        assert_memory_equal(r.cells[c].bins, want + c * 481, 481 * sizeof(uint64_t));
    }
    free(want);
    space_result_dispose(&r);
    free(q);

    /* a 0.01 grid: bin i is lo + i*res */
    q = q_new("peds-pneumonia-indicators", SPACE_OP_QUANTILES, "pct");
    q->probs[0] = 0.5;
    q->nprobs = 1;
    assert_int_equal(run(q, NULL, &r, &eb), 0);
    assert_int_equal(r.cells[0].nbins, 10001);
    assert_true(r.resolution == 0.01 && r.grid_lo == 0.0);
    fld(&peds, "pct", &fi);
    uint64_t *w2 = calloc(10001, sizeof(uint64_t));
    assert_non_null(w2);
    for (size_t i = 0; i < peds.nrows; i++) {
        w2[llround(peds.v[i * peds.s->nfields + fi] / 0.01)]++;
    }
    assert_memory_equal(r.cells[0].bins, w2, 10001 * sizeof(uint64_t));
    free(w2);
    space_result_dispose(&r);
    free(q);
}

static void test_space_db_execute_agreement(void **state)
{
    (void)state;
    space_query *q = q_new("neonatal-bilirubin", SPACE_OP_AGREEMENT, "tcb");
    snprintf(q->field2, sizeof(q->field2), "tsb");
    q_group(q, "device");
    check_query(&neo, q);
    q->ngroup = 0;
    q_num(q, "hours_of_life", SPACE_CMP_LE, 72);
    check_query(&neo, q);
    free(q);
}

static void test_space_db_execute_group_by_two_with_empty_cells(void **state)
{
    (void)state;
    space_query *q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_group(q, "hospital");
    q_group(q, "age_band");
    q_num(q, "crp", SPACE_CMP_GE, 5);
    check_query(&peds, q);
    space_result r;
    bg_errbuf eb = {{0}};
    assert_int_equal(run(q, NULL, &r, &eb), 0);
    assert_int_equal(r.ncells, 14 * 4);
    /* macau-h1 (code 4) has no rows in guangzhou; guangzhou-h1 has */
    for (size_t b = 0; b < 4; b++) {
        assert_int_equal(r.cells[4 * 4 + b].n, 0);
        assert_true(r.cells[0 * 4 + b].n > 0);
    }
    space_result_dispose(&r);
    free(q);
}

/* ---- rejected queries ---- */

static void expect_error(space_query *q, int want, const char *const *needles)
{
    space_result r;
    memset(&r, 0x5a, sizeof(r));
    bg_errbuf eb = {{0}};
    int rv = run(q, NULL, &r, &eb);
    if (rv != want) {
        fail_msg("rv %d want %d (%s)", rv, want, eb.msg);
    }
    for (size_t i = 0; needles[i] != NULL; i++) {
        if (strstr(eb.msg, needles[i]) == NULL) {
            fail_msg("message \"%s\" lacks \"%s\"", eb.msg, needles[i]);
        }
    }
    assert_int_equal(r.ncells, 0x5a5a5a5a5a5a5a5au); /* untouched */
    free(q);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_space_db_execute_errors(void **state)
{
    (void)state;
    space_query *q;
    expect_error(q_new("stroke-registry", SPACE_OP_COUNT, NULL), BG_ERR_NOTFOUND,
                 NEEDLES("\"stroke-registry\"", "peds-pneumonia-indicators"));
    expect_error(q_new("peds-pneumonia-indicators", SPACE_OP_MEAN, "crpp"), BG_ERR_INVAL,
                 NEEDLES("\"crpp\"", "age_months", "neutrophil_pct", "hospital"));
    expect_error(q_new("peds-pneumonia-indicators", SPACE_OP_SUM, "sex"), BG_ERR_INVAL,
                 NEEDLES("\"sex\"", "categorical", "numeric"));
    expect_error(q_new("peds-pneumonia-indicators", SPACE_OP_MEAN, ""), BG_ERR_INVAL,
                 NEEDLES("mean"));
    q = q_new("peds-pneumonia-indicators", (space_op)99, NULL);
    expect_error(q, BG_ERR_INVAL, NEEDLES("operation"));

    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_group(q, "crp");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"crp\"", "numeric", "group_by"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_group(q, "sexx");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"sexx\"", "age_band"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_group(q, "sex");
    q_group(q, "pathogen");
    q->ngroup = 3; /* the array holds two; a peer can still say three */
    expect_error(q, BG_ERR_INVAL, NEEDLES("group_by", "2"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_group(q, "sex");
    q_group(q, "sex");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"sex\"", "twice"));

    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_cat(q, "pathogen", SPACE_CMP_EQ, "covid");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"covid\"", "\"pathogen\"", "rsv"));
    const char *some[] = {"rsv", "RSV"};
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_in_cat(q, "pathogen", some, 2);
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"RSV\"", "\"pathogen\""));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_cat(q, "sex", SPACE_CMP_LT, "m");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"sex\"", "<"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_num(q, "sex", SPACE_CMP_EQ, 1);
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"sex\"", "categorical"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_cat(q, "crp", SPACE_CMP_EQ, "high");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"crp\"", "numeric"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_num(q, "crp_mg", SPACE_CMP_GT, 1);
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"crp_mg\"", "crp", "wbc"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_num(q, "crp", SPACE_CMP_GT, NAN);
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"crp\"", "finite"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_num(q, "crp", SPACE_CMP_GT, 1);
    q->where[0].nvals = 2;
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"crp\""));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_num(q, "crp", (space_cmp)0, 1);
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"crp\"", "comparison"));

    q = q_new("peds-pneumonia-indicators", SPACE_OP_HISTOGRAM, "crp");
    q->edges[0] = 1;
    q->nedges = 1;
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"crp\"", "edges"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_HISTOGRAM, "crp");
    q->edges[0] = 1;
    q->edges[1] = 5;
    q->edges[2] = 5;
    q->nedges = 3;
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"crp\"", "increasing", "edges[2]"));
    q = q_new("peds-pneumonia-indicators", SPACE_OP_HISTOGRAM, "pathogen");
    q->edges[0] = 1;
    q->edges[1] = 5;
    q->nedges = 2;
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"pathogen\"", "numeric"));

    const double bad_p[] = {0.0, 1.0, -0.5, NAN};
    for (size_t i = 0; i < 4; i++) {
        q = q_new("peds-pneumonia-indicators", SPACE_OP_QUANTILES, "wbc");
        q->probs[0] = 0.5;
        q->probs[1] = bad_p[i];
        q->nprobs = 2;
        expect_error(q, BG_ERR_INVAL, NEEDLES("\"wbc\"", "(0,1)"));
    }
    q = q_new("peds-pneumonia-indicators", SPACE_OP_QUANTILES, "wbc");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"wbc\"", "probabilit"));

    q = q_new("neonatal-bilirubin", SPACE_OP_AGREEMENT, "tcb");
    snprintf(q->field2, sizeof(q->field2), "tsbb");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"tsbb\"", "hours_of_life"));
    q = q_new("neonatal-bilirubin", SPACE_OP_AGREEMENT, "tcb");
    snprintf(q->field2, sizeof(q->field2), "device");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"device\"", "categorical"));
    q = q_new("neonatal-bilirubin", SPACE_OP_AGREEMENT, "tcb");
    snprintf(q->field2, sizeof(q->field2), "tcb");
    expect_error(q, BG_ERR_INVAL, NEEDLES("\"tcb\"", "different"));

    /* names that fill the array without a NUL (peer input) */
    q = q_new("neonatal-bilirubin", SPACE_OP_COUNT, NULL);
    memset(q->dataset, 'a', sizeof(q->dataset));
    expect_error(q, BG_ERR_INVAL, NEEDLES("dataset"));
    q = q_new("neonatal-bilirubin", SPACE_OP_MEAN, NULL);
    memset(q->field, 'a', sizeof(q->field));
    expect_error(q, BG_ERR_INVAL, NEEDLES("field"));
}

/* ---- disclosure at the source ---- */

static void test_space_db_execute_below_k_zeroes(void **state)
{
    (void)state;
    const uint32_t k = 100;
    space_op ops[] = {SPACE_OP_COUNT,     SPACE_OP_SUM,       SPACE_OP_MEAN,
                      SPACE_OP_HISTOGRAM, SPACE_OP_QUANTILES, SPACE_OP_AGREEMENT};
    for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
        space_query *q = q_new("neonatal-bilirubin", ops[o], "tcb");
        snprintf(q->field2, sizeof(q->field2), "tsb");
        q->edges[0] = 100;
        q->edges[1] = 200;
        q->nedges = 2;
        q->probs[0] = 0.5;
        q->nprobs = 1;
        q_group(q, "hospital");
        bf *b = bf_run(&neo, q);
        space_exec_opts opts = {.k = k};
        space_result r;
        bg_errbuf eb = {{0}};
        assert_int_equal(run(q, &opts, &r, &eb), 0);
        size_t small = 0, shown = 0;
        for (size_t c = 0; c < r.ncells; c++) {
            const space_cell *cell = &r.cells[c];
            if (b->n[c] > 0 && b->n[c] < k) {
                small++;
                assert_int_equal(cell->supp, SPACE_SUPP_BELOW_K);
                assert_int_equal(cell->n, 0);
                assert_int_equal(cell->sum_units, 0);
                assert_int_equal(cell->mom.n, 0);
                assert_true(cell->mom.mean == 0 && cell->mom.m2 == 0);
                assert_int_equal(cell->agree.n, 0);
                assert_true(cell->agree.d_mean == 0 && cell->agree.x_m2 == 0);
                for (size_t i = 0; i < cell->nbins; i++) {
                    assert_int_equal(cell->bins[i], 0);
                }
            } else {
                assert_int_equal(cell->supp, SPACE_SUPP_NONE);
                assert_int_equal(cell->n, b->n[c]);
                shown += b->n[c] > 0;
            }
        }
        assert_int_equal(small, 1); /* guangzhou-h4, about 60 rows */
        assert_int_equal(shown, 3);
        space_result_dispose(&r);
        free(b);
        free(q);
    }
}

static uint64_t bf_count(const frame *fr, const space_query *q)
{
    bf *b = bf_run(fr, q);
    uint64_t n = b->n[0];
    free(b);
    return n;
}

static space_query *age_query(double ge)
{
    space_query *q = q_new("cerebral-infarction", SPACE_OP_COUNT, NULL);
    q_num(q, "age", SPACE_CMP_GE, ge);
    return q;
}

/* Executes |q| under |key| and k; returns the first cell's supp and its n in |*n|. */
static space_supp run_hist(space_query *q, const char *key, uint32_t k, uint64_t *n)
{
    space_exec_opts opts = {.k = k, .history_key = key};
    space_result r;
    bg_errbuf eb = {{0}};
    int rv = run(q, &opts, &r, &eb);
    if (rv != 0) {
        fail_msg("execute: %d %s", rv, eb.msg);
    }
    space_supp s = r.cells[0].supp;
    if (n != NULL) {
        *n = r.cells[0].n;
    }
    space_result_dispose(&r);
    return s;
}

static void test_space_db_execute_differencing_attack(void **state)
{
    (void)state;
    const uint32_t k = 1000;
    space_query *q65 = age_query(65), *q66 = age_query(66), *q40 = age_query(40);
    uint64_t n65 = bf_count(&cer, q65), n66 = bf_count(&cer, q66), n40 = bf_count(&cer, q40);
    /* the set the attack isolates (the 65-year-olds) is non-empty and narrower than k,
     * while both answers are large enough to pass the small-cell rule on their own */
    assert_true(n65 > n66 && n65 - n66 < k && n66 >= k);
    assert_true(n40 - n65 >= k);

    uint64_t n;
    assert_int_equal(run_hist(q65, "alice", k, &n), SPACE_SUPP_NONE);
    assert_int_equal(n, n65);
    assert_int_equal(run_hist(q66, "alice", k, &n), SPACE_SUPP_DIFFERENCING);
    assert_int_equal(n, 0);
    /* identical and far-apart queries are answered */
    assert_int_equal(run_hist(q65, "alice", k, &n), SPACE_SUPP_NONE);
    assert_int_equal(n, n65);
    assert_int_equal(run_hist(q40, "alice", k, &n), SPACE_SUPP_NONE);
    assert_int_equal(n, n40);
    /* still refused later; the refused query was not remembered as released */
    assert_int_equal(run_hist(q66, "alice", k, &n), SPACE_SUPP_DIFFERENCING);
    /* another requester, no history, or k = 0 are not affected */
    assert_int_equal(run_hist(q66, "bob", k, &n), SPACE_SUPP_NONE);
    assert_int_equal(n, n66);
    space_exec_opts none = {.k = k};
    space_result r;
    bg_errbuf eb = {{0}};
    assert_int_equal(run(q66, &none, &r, &eb), 0);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_NONE);
    space_result_dispose(&r);
    assert_int_equal(run_hist(q66, "alice", 0, &n), SPACE_SUPP_NONE);
    /* the other direction: bob saw 66+, now 65+ would reveal the same set */
    assert_int_equal(run_hist(q65, "bob", k, &n), SPACE_SUPP_DIFFERENCING);
    /* history is per dataset: a peds query under the same key is unaffected */
    space_query *qp = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_num(qp, "age_months", SPACE_CMP_GE, 6);
    assert_int_equal(run_hist(qp, "bob", k, &n), SPACE_SUPP_NONE);
    free(qp);
    free(q65);
    free(q66);
    free(q40);
}

static void test_space_db_execute_differencing_grouped(void **state)
{
    (void)state;
    const uint32_t k = 1000;
    space_query *a = age_query(65), *b = age_query(66);
    q_group(a, "sex");
    q_group(b, "sex");
    bf *ba = bf_run(&cer, a), *bb = bf_run(&cer, b);
    for (size_t c = 0; c < 2; c++) {
        assert_true(ba->n[c] - bb->n[c] > 0 && ba->n[c] - bb->n[c] < k && bb->n[c] >= k);
    }
    space_exec_opts opts = {.k = k, .history_key = "carol"};
    space_result r;
    bg_errbuf eb = {{0}};
    assert_int_equal(run(a, &opts, &r, &eb), 0);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_NONE);
    assert_int_equal(r.cells[1].n, ba->n[1]);
    space_result_dispose(&r);
    assert_int_equal(run(b, &opts, &r, &eb), 0);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_DIFFERENCING);
    assert_int_equal(r.cells[1].supp, SPACE_SUPP_DIFFERENCING);
    assert_int_equal(r.cells[0].n + r.cells[1].n, 0);
    space_result_dispose(&r);
    /* the ungrouped total of 65+ is the sum of released cells: same rows, so it is answered;
     * the total of 66+ is not */
    space_query *t65 = age_query(65), *t66 = age_query(66);
    assert_int_equal(run_hist(t65, "carol", k, NULL), SPACE_SUPP_NONE);
    assert_int_equal(run_hist(t66, "carol", k, NULL), SPACE_SUPP_DIFFERENCING);
    free(t65);
    free(t66);
    free(ba);
    free(bb);
    free(a);
    free(b);
}

/* The last 16 distinct releases per key are remembered: the 17th back is forgotten, while
 * repeating a query does not push the others out. */
static void test_space_db_execute_differencing_depth(void **state)
{
    (void)state;
    const uint32_t k = 1000;
    space_query *q65 = age_query(65), *q66 = age_query(66), *q30 = age_query(30);
    assert_int_equal(run_hist(q65, "dave", k, NULL), SPACE_SUPP_NONE);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(run_hist(q30, "dave", k, NULL), SPACE_SUPP_NONE);
    }
    assert_int_equal(run_hist(q66, "dave", k, NULL), SPACE_SUPP_DIFFERENCING);
    /* 65+, 30+ and 14 more distinct releases (k = 0: not checked, still remembered) */
    for (int i = 0; i < 14; i++) {
        space_query *f = age_query(40 + i);
        assert_int_equal(run_hist(f, "dave", 0, NULL), SPACE_SUPP_NONE);
        free(f);
    }
    assert_int_equal(run_hist(q66, "dave", k, NULL), SPACE_SUPP_DIFFERENCING);
    /* a 17th distinct one pushes it out */
    space_query *f = age_query(55);
    assert_int_equal(run_hist(f, "dave", 0, NULL), SPACE_SUPP_NONE);
    free(f);
    assert_int_equal(run_hist(q66, "dave", k, NULL), SPACE_SUPP_NONE);
    free(q65);
    free(q66);
    free(q30);
}

/* 256 keys are remembered, least recently used evicted. */
static void test_space_db_execute_differencing_keys_lru(void **state)
{
    (void)state;
    const uint32_t k = 1000;
    space_query *q65 = age_query(65), *q66 = age_query(66), *q30 = age_query(30);
    assert_int_equal(run_hist(q65, "eve-0", k, NULL), SPACE_SUPP_NONE);
    assert_int_equal(run_hist(q65, "eve-1", k, NULL), SPACE_SUPP_NONE);
    char key[32];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "filler-%d", i);
        assert_int_equal(run_hist(q30, key, k, NULL), SPACE_SUPP_NONE);
        if (i % 50 == 0) { /* keeps eve-1 recently used */
            assert_int_equal(run_hist(q65, "eve-1", k, NULL), SPACE_SUPP_NONE);
        }
    }
    assert_int_equal(run_hist(q66, "eve-1", k, NULL), SPACE_SUPP_DIFFERENCING);
    assert_int_equal(run_hist(q66, "eve-0", k, NULL), SPACE_SUPP_NONE); /* evicted */
    free(q65);
    free(q66);
    free(q30);
}

/* ---- threads ---- */

typedef struct race {
    pthread_barrier_t *go;
    space_query *q;
    const char *key;
    space_supp supp;
} race;

static void *race_main(void *arg)
{
    race *r = arg;
    pthread_barrier_wait(r->go);
    r->supp = run_hist(r->q, r->key, 1000, NULL);
    return NULL;
}

/* Two queries of one key at the same moment: one is checked against the other, whichever
 * runs second, so exactly one is refused (never both released). */
static void test_space_db_execute_differencing_concurrent(void **state)
{
    (void)state;
    space_query *q65 = age_query(65), *q66 = age_query(66);
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof(key), "race-%d", i);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        race a = {.go = &go, .q = q65, .key = key}, b = {.go = &go, .q = q66, .key = key};
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, race_main, &a), 0);
        assert_int_equal(pthread_create(&tb, NULL, race_main, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        assert_int_equal((a.supp == SPACE_SUPP_DIFFERENCING) + (b.supp == SPACE_SUPP_DIFFERENCING),
                         1);
    }
    free(q65);
    free(q66);
}

#define NQ 6
typedef struct worker {
    space_query *qs[NQ];
    space_result want[NQ];
    int id;
    int bad;
} worker;

static bool same_result(const space_result *a, const space_result *b)
{
    if (a->ncells != b->ncells) {
        return false;
    }
    for (size_t c = 0; c < a->ncells; c++) {
        const space_cell *x = &a->cells[c], *y = &b->cells[c];
        if (x->n != y->n || x->sum_units != y->sum_units || x->supp != y->supp ||
            memcmp(&x->mom, &y->mom, sizeof(x->mom)) != 0 ||
            memcmp(&x->agree, &y->agree, sizeof(x->agree)) != 0 || x->nbins != y->nbins ||
            (x->nbins > 0 && memcmp(x->bins, y->bins, x->nbins * sizeof(uint64_t)) != 0)) {
            return false;
        }
    }
    return true;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    char key[32];
    snprintf(key, sizeof(key), "worker-%d", w->id);
    for (int round = 0; round < 10; round++) {
        for (size_t i = 0; i < NQ; i++) {
            /* the same key for every query of this worker: all pairwise far apart or equal */
            space_exec_opts opts = {.k = 5, .history_key = round % 2 ? key : "shared"};
            space_result r;
            bg_errbuf eb = {{0}};
            if (space_db_execute(db, w->qs[i], &opts, &r, &eb) != 0) {
                w->bad++;
                continue;
            }
            w->bad += !same_result(&r, &w->want[i]);
            space_result_dispose(&r);
        }
    }
    return NULL;
}

static void test_space_db_execute_concurrent(void **state)
{
    (void)state;
    space_query *qs[NQ];
    qs[0] = q_new("peds-pneumonia-indicators", SPACE_OP_COUNT, NULL);
    q_group(qs[0], "pathogen");
    qs[1] = q_new("peds-pneumonia-indicators", SPACE_OP_MEAN, "crp");
    q_group(qs[1], "sex");
    qs[2] = q_new("neonatal-bilirubin", SPACE_OP_AGREEMENT, "tcb");
    snprintf(qs[2]->field2, sizeof(qs[2]->field2), "tsb");
    qs[3] = q_new("neonatal-bilirubin", SPACE_OP_QUANTILES, "tsb");
    qs[3]->probs[0] = 0.5;
    qs[3]->nprobs = 1;
    qs[4] = q_new("cerebral-infarction", SPACE_OP_SUM, "nihss");
    q_cat(qs[4], "thrombolysis", SPACE_CMP_EQ, "yes");
    qs[5] = q_new("cerebral-infarction", SPACE_OP_HISTOGRAM, "age");
    qs[5]->edges[0] = 45;
    qs[5]->edges[1] = 65;
    qs[5]->edges[2] = 80;
    qs[5]->nedges = 3;
    q_group(qs[5], "hospital");
    worker w[4];
    for (int t = 0; t < 4; t++) {
        w[t].id = t;
        w[t].bad = 0;
        for (size_t i = 0; i < NQ; i++) {
            w[t].qs[i] = qs[i];
            space_exec_opts opts = {.k = 5};
            bg_errbuf eb = {{0}};
            assert_int_equal(space_db_execute(db, qs[i], &opts, &w[t].want[i], &eb), 0);
        }
    }
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        assert_int_equal(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].bad, 0);
        for (size_t i = 0; i < NQ; i++) {
            space_result_dispose(&w[t].want[i]);
        }
    }
    for (size_t i = 0; i < NQ; i++) {
        free(qs[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_db_execute_count_all),
        cmocka_unit_test(test_space_db_execute_filters_numeric),
        cmocka_unit_test(test_space_db_execute_filters_categorical),
        cmocka_unit_test(test_space_db_execute_sum_exact),
        cmocka_unit_test(test_space_db_execute_mean_moments),
        cmocka_unit_test(test_space_db_execute_histogram_exact),
        cmocka_unit_test(test_space_db_execute_quantile_grid),
        cmocka_unit_test(test_space_db_execute_agreement),
        cmocka_unit_test(test_space_db_execute_group_by_two_with_empty_cells),
        cmocka_unit_test(test_space_db_execute_errors),
        cmocka_unit_test(test_space_db_execute_below_k_zeroes),
        cmocka_unit_test(test_space_db_execute_differencing_attack),
        cmocka_unit_test(test_space_db_execute_differencing_grouped),
        cmocka_unit_test(test_space_db_execute_differencing_depth),
        cmocka_unit_test(test_space_db_execute_differencing_keys_lru),
        cmocka_unit_test(test_space_db_execute_differencing_concurrent),
        cmocka_unit_test(test_space_db_execute_concurrent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
