/* tests/unit/trust/test_disclosure.c: trust/disclosure.c through its header: validation of
 * malformed results, primary and complementary suppression (1-D, 2-D, histogram bins, the
 * zero policy), a brute-force attack on random tables, the exact discrete-Laplace sampler's
 * distribution, and noise on counts, histograms and sums. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trust/disclosure.h"

/* ---- helpers ----------------------------------------------------------------------------- */

/* A count result: |nrows| x |ncols| cells (ngroup 2), or |ncols| cells (ngroup 1 when
 * nrows == 0), or one cell (ngroup 0 when both are 0), with the given n. */
static void make_counts(space_result *r, size_t nrows, size_t ncols, const uint64_t *n)
{
    size_t ncells = nrows > 0 ? nrows * ncols : ncols > 0 ? ncols : 1;
    assert_int_equal(space_result_init(r, SPACE_OP_COUNT, ncells, 0), 0);
    r->ngroup = nrows > 0 ? 2 : ncols > 0 ? 1 : 0;
    for (size_t i = 0; i < ncells; i++) {
        space_cell *c = &r->cells[i];
        if (r->ngroup == 2) {
            c->key[0] = (uint16_t)(i / ncols);
            c->key[1] = (uint16_t)(i % ncols);
        } else if (r->ngroup == 1) {
            c->key[0] = (uint16_t)i;
        }
        c->n = n[i];
    }
}

/* A one-way histogram result with |ncells| cells of |nbins| bins; n is the sum of the bins. */
static void make_hist(space_result *r, size_t ncells, size_t nbins, const uint64_t *bins)
{
    assert_int_equal(space_result_init(r, SPACE_OP_HISTOGRAM, ncells, nbins), 0);
    r->ngroup = ncells > 1 ? 1 : 0;
    for (size_t i = 0; i < ncells; i++) {
        space_cell *c = &r->cells[i];
        c->key[0] = (uint16_t)(ncells > 1 ? i : 0);
        for (size_t j = 0; j < nbins; j++) {
            c->bins[j] = bins[i * nbins + j];
            c->n += bins[i * nbins + j];
        }
    }
}

static const trust_disclosure k5 = {.k = 5, .zero_is_safe = true};

/* Asserts the supp of every cell against |want| and that withheld cells are all zero. */
static void expect_supp(const space_result *r, const space_supp *want)
{
    for (size_t i = 0; i < r->ncells; i++) {
        if (r->cells[i].supp != want[i]) {
            fail_msg("cell %zu: supp %d, want %d", i, r->cells[i].supp, want[i]);
        }
        if (want[i] != SPACE_SUPP_NONE) {
            assert_int_equal(r->cells[i].n, 0);
        }
    }
}

/* xorshift64*: deterministic test data (the library's randomness is RAND_bytes). */
static uint64_t prng_state = 0x9e3779b97f4a7c15u;
static uint64_t prng(void)
{
    prng_state ^= prng_state >> 12;
    prng_state ^= prng_state << 25;
    prng_state ^= prng_state >> 27;
    return prng_state * 0x2545f4914f6cdd1du;
}

/* ---- validation -------------------------------------------------------------------------- */

typedef void (*mutate_fn)(space_result *r);

/* A well-formed base for each op, then one mutation; apply must refuse it and change
 * nothing. */
static void base_result(space_result *r, space_op op)
{
    size_t nbins = op == SPACE_OP_HISTOGRAM ? 3 : op == SPACE_OP_QUANTILES ? 4 : 0;
    assert_int_equal(space_result_init(r, op, 2, nbins), 0);
    r->ngroup = 1;
    for (size_t i = 0; i < 2; i++) {
        space_cell *c = &r->cells[i];
        c->key[0] = (uint16_t)(i + 1);
        c->n = 12;
        if (op == SPACE_OP_SUM) {
            c->sum_units = -40;
        } else if (op == SPACE_OP_MEAN) {
            c->mom = (space_moments){.n = 12, .mean = 3.5, .m2 = 7.0};
        } else if (op == SPACE_OP_AGREEMENT) {
            c->agree =
                (space_agree){.n = 12, .d_mean = 0.5, .d_m2 = 2, .a_m2 = 3, .x_m2 = 1, .y_m2 = 1};
        } else if (nbins > 0) {
            c->bins[0] = 5;
            c->bins[1] = 7;
        }
    }
}

static void m_op_zero(space_result *r)
{
    r->op = (space_op)0;
}
static void m_op_big(space_result *r)
{
    r->op = (space_op)7;
}
static void m_ncells_zero(space_result *r)
{
    r->ncells = 0;
}
static void m_ncells_big(space_result *r)
{
    r->ncells = SPACE_MAX_CELLS + 1;
}
static void m_ngroup_3(space_result *r)
{
    r->ngroup = 3;
}
static void m_ngroup_0_two_cells(space_result *r)
{
    r->ngroup = 0;
}
static void m_keys_dup(space_result *r)
{
    r->cells[1].key[0] = r->cells[0].key[0];
}
static void m_keys_desc(space_result *r)
{
    r->cells[1].key[0] = 0;
}
static void m_key_unused_slot(space_result *r)
{
    r->cells[0].key[1] = 9;
}
static void m_supp_unknown(space_result *r)
{
    r->cells[0].supp = (space_supp)42;
}
static void m_noisy_no_scale(space_result *r)
{
    r->cells[0].noisy = true;
}
static void m_scale_not_noisy(space_result *r)
{
    r->cells[1].noise_scale = 2.0;
}
static void m_noisy_nan(space_result *r)
{
    r->cells[1].noisy = true;
    r->cells[1].noise_scale = NAN;
}
static void m_count_with_bins(space_result *r)
{
    r->cells[0].bins = calloc(2, sizeof(uint64_t));
    r->cells[0].nbins = 2;
}
static void m_total_overflow(space_result *r)
{
    r->cells[0].n = UINT64_MAX / 2 + 1;
    r->cells[1].n = UINT64_MAX / 2 + 1;
}
static void m_sum_n0(space_result *r)
{
    r->cells[1].n = 0;
}
static void m_mean_n(space_result *r)
{
    r->cells[0].mom.n = 11;
}
static void m_mean_nan(space_result *r)
{
    r->cells[0].mom.mean = NAN;
}
static void m_mean_inf_m2(space_result *r)
{
    r->cells[0].mom.m2 = INFINITY;
}
static void m_mean_neg_m2(space_result *r)
{
    r->cells[0].mom.m2 = -1.0;
}
static void m_mean_n1_m2(space_result *r)
{
    r->cells[0].n = r->cells[0].mom.n = 1;
}
static void m_mean_n0(space_result *r)
{
    r->cells[0].n = r->cells[0].mom.n = 0;
    r->cells[0].mom.m2 = 0;
}
static void m_hist_sum(space_result *r)
{
    r->cells[1].bins[2] = 1;
}
static void m_hist_one_bin(space_result *r)
{
    r->cells[0].nbins = r->cells[1].nbins = 1;
    r->cells[0].bins[0] = r->cells[1].bins[0] = 12;
}
static void m_hist_nbins_differ(space_result *r)
{
    r->cells[1].nbins = 2;
}
static void m_hist_bins_null(space_result *r)
{
    free(r->cells[0].bins);
    r->cells[0].bins = NULL;
}
static void m_hist_qvals(space_result *r)
{
    r->cells[0].has_qvals = true;
}
static void m_hist_too_many(space_result *r)
{
    for (size_t i = 0; i < 2; i++) {
        free(r->cells[i].bins);
        r->cells[i].bins = calloc(SPACE_MAX_EDGES + 2, sizeof(uint64_t));
        r->cells[i].nbins = SPACE_MAX_EDGES + 2;
        r->cells[i].bins[0] = 12;
    }
}
static void m_bin_supp_on_count(space_result *r)
{
    r->cells[0].bin_supp = calloc(1, 1);
}
static void m_hist_bin_supp_unknown(space_result *r)
{
    r->cells[1].bin_supp = calloc(3, 1);
    r->cells[1].bin_supp[2] = 9;
}
static void m_hist_withheld_nonzero(space_result *r)
{
    r->cells[1].bin_supp = calloc(3, 1);
    r->cells[1].bin_supp[1] = SPACE_SUPP_DOMINANCE; /* but bins[1] is 7 */
}
static void m_hist_withheld_over_n(space_result *r)
{
    r->cells[1].bin_supp = calloc(3, 1);
    r->cells[1].bin_supp[2] = SPACE_SUPP_DOMINANCE;
    r->cells[1].n = 11; /* published 5 + 7 > 11 */
}
static void m_q_bin_supp(space_result *r)
{
    r->cells[0].bin_supp = calloc(4, 1);
}
static void m_q_qvals_with_bins(space_result *r)
{
    r->cells[1].has_qvals = true;
}
static void m_q_grid_sum(space_result *r)
{
    r->cells[0].bins[3] = 100;
}
static void m_q_mixed(space_result *r)
{
    free(r->cells[1].bins);
    r->cells[1].bins = NULL;
    r->cells[1].nbins = 0;
}
static void m_q_final_n0(space_result *r)
{
    for (size_t i = 0; i < 2; i++) {
        free(r->cells[i].bins);
        r->cells[i].bins = NULL;
        r->cells[i].nbins = 0;
        r->cells[i].has_qvals = true;
    }
    r->cells[1].n = 0;
}
static void m_q_final_nan(space_result *r)
{
    for (size_t i = 0; i < 2; i++) {
        free(r->cells[i].bins);
        r->cells[i].bins = NULL;
        r->cells[i].nbins = 0;
        r->cells[i].has_qvals = true;
    }
    r->cells[1].qvals[SPACE_MAX_PROBS - 1] = NAN;
}
static void m_agree_n(space_result *r)
{
    r->cells[1].agree.n = 13;
}
static void m_agree_inf(space_result *r)
{
    r->cells[1].agree.c_xy = -INFINITY;
}
static void m_agree_neg(space_result *r)
{
    r->cells[1].agree.a_m2 = -0.5;
}
static void m_agree_n0(space_result *r)
{
    r->cells[1].n = r->cells[1].agree.n = 0;
}

typedef struct bad_case {
    const char *name;
    space_op op;
    mutate_fn mutate;
} bad_case;

static const bad_case bad_cases[] = {
    {"op 0", SPACE_OP_COUNT, m_op_zero},
    {"op 7", SPACE_OP_COUNT, m_op_big},
    {"ncells 0", SPACE_OP_COUNT, m_ncells_zero},
    {"ncells > max", SPACE_OP_COUNT, m_ncells_big},
    {"ngroup 3", SPACE_OP_COUNT, m_ngroup_3},
    {"ngroup 0, 2 cells", SPACE_OP_COUNT, m_ngroup_0_two_cells},
    {"duplicate keys", SPACE_OP_COUNT, m_keys_dup},
    {"descending keys", SPACE_OP_COUNT, m_keys_desc},
    {"unused key slot", SPACE_OP_COUNT, m_key_unused_slot},
    {"unknown supp", SPACE_OP_COUNT, m_supp_unknown},
    {"noisy without scale", SPACE_OP_COUNT, m_noisy_no_scale},
    {"scale without noisy", SPACE_OP_COUNT, m_scale_not_noisy},
    {"noise scale NaN", SPACE_OP_COUNT, m_noisy_nan},
    {"count with bins", SPACE_OP_COUNT, m_count_with_bins},
    {"total overflow", SPACE_OP_COUNT, m_total_overflow},
    {"sum with n 0", SPACE_OP_SUM, m_sum_n0},
    {"sum with bins", SPACE_OP_SUM, m_count_with_bins},
    {"mean n != mom.n", SPACE_OP_MEAN, m_mean_n},
    {"mean NaN", SPACE_OP_MEAN, m_mean_nan},
    {"mean m2 inf", SPACE_OP_MEAN, m_mean_inf_m2},
    {"mean m2 < 0", SPACE_OP_MEAN, m_mean_neg_m2},
    {"mean n 1, m2 > 0", SPACE_OP_MEAN, m_mean_n1_m2},
    {"mean n 0, mean != 0", SPACE_OP_MEAN, m_mean_n0},
    {"histogram bins != n", SPACE_OP_HISTOGRAM, m_hist_sum},
    {"histogram 1 bin", SPACE_OP_HISTOGRAM, m_hist_one_bin},
    {"histogram nbins differ", SPACE_OP_HISTOGRAM, m_hist_nbins_differ},
    {"histogram bins NULL", SPACE_OP_HISTOGRAM, m_hist_bins_null},
    {"histogram with qvals", SPACE_OP_HISTOGRAM, m_hist_qvals},
    {"histogram too many bins", SPACE_OP_HISTOGRAM, m_hist_too_many},
    {"bin_supp on count", SPACE_OP_COUNT, m_bin_supp_on_count},
    {"histogram bin_supp unknown", SPACE_OP_HISTOGRAM, m_hist_bin_supp_unknown},
    {"histogram withheld bin not 0", SPACE_OP_HISTOGRAM, m_hist_withheld_nonzero},
    {"histogram published bins > n", SPACE_OP_HISTOGRAM, m_hist_withheld_over_n},
    {"quantile grid with bin_supp", SPACE_OP_QUANTILES, m_q_bin_supp},
    {"quantiles qvals with bins", SPACE_OP_QUANTILES, m_q_qvals_with_bins},
    {"quantiles grid != n", SPACE_OP_QUANTILES, m_q_grid_sum},
    {"quantiles grid and final mixed", SPACE_OP_QUANTILES, m_q_mixed},
    {"quantiles qvals with n 0", SPACE_OP_QUANTILES, m_q_final_n0},
    {"quantiles qvals NaN", SPACE_OP_QUANTILES, m_q_final_nan},
    {"agreement n != agree.n", SPACE_OP_AGREEMENT, m_agree_n},
    {"agreement inf", SPACE_OP_AGREEMENT, m_agree_inf},
    {"agreement m2 < 0", SPACE_OP_AGREEMENT, m_agree_neg},
    {"agreement n 0, moments", SPACE_OP_AGREEMENT, m_agree_n0},
    {"agreement with bins", SPACE_OP_AGREEMENT, m_count_with_bins},
};

static void test_trust_disclosure_apply_rejects_malformed(void **state)
{
    (void)state;
    for (space_op op = SPACE_OP_COUNT; op <= SPACE_OP_AGREEMENT; op++) {
        space_result r;
        base_result(&r, op);
        assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
        space_result_dispose(&r);
    }
    for (size_t t = 0; t < sizeof(bad_cases) / sizeof(bad_cases[0]); t++) {
        const bad_case *bc = &bad_cases[t];
        space_result r;
        base_result(&r, bc->op);
        size_t ncells = r.ncells;
        space_cell *cells = r.cells;
        bc->mutate(&r);
        space_result copy = r;
        space_cell before[2];
        memcpy(before, cells, sizeof(before));
        uint8_t *flags = (uint8_t *)&copy; /* must stay untouched */
        size_t nsupp = 777;
        int rc = trust_disclosure_apply(&k5, &r, &flags, &nsupp);
        if (rc != BG_ERR_INVAL) {
            fail_msg("case \"%s\": rc %d, want BG_ERR_INVAL", bc->name, rc);
        }
        assert_memory_equal(&copy, &r, sizeof(r));
        assert_memory_equal(before, cells, sizeof(before));
        assert_ptr_equal(flags, (uint8_t *)&copy);
        assert_int_equal(nsupp, 777);
        /* The same refusal from the noise entry point. */
        trust_dp dp = {.eps_num = 1, .eps_den = 1, .sens_sum = 10};
        assert_int_equal(trust_disclosure_noise(&r, &dp), BG_ERR_INVAL);
        r.cells = cells;
        r.ncells = ncells;
        space_result_dispose(&r);
    }
    assert_int_equal(trust_disclosure_apply(NULL, NULL, NULL, NULL), BG_ERR_INVAL);
}

/* Members an op does not use are cleared, whatever the data space put there. */
static void test_trust_disclosure_apply_scrubs_unused_members(void **state)
{
    (void)state;
    space_result r;
    base_result(&r, SPACE_OP_COUNT);
    r.cells[0].sum_units = 99;
    r.cells[0].mom = (space_moments){.n = 3, .mean = 1.5};
    r.cells[1].agree.c_xy = 4.0;
    r.cells[1].qvals[2] = 7.0;
    r.cells[1].has_qvals = true;
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
    space_cell zero;
    memset(&zero, 0, sizeof(zero));
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(r.cells[i].n, 12);
        assert_int_equal(r.cells[i].sum_units, 0);
        assert_memory_equal(&r.cells[i].mom, &zero.mom, sizeof(zero.mom));
        assert_memory_equal(&r.cells[i].agree, &zero.agree, sizeof(zero.agree));
        assert_memory_equal(r.cells[i].qvals, zero.qvals, sizeof(zero.qvals));
        assert_false(r.cells[i].has_qvals);
    }
    space_result_dispose(&r);
}

/* ---- primary and complementary suppression ----------------------------------------------- */

static void test_trust_disclosure_apply_ungrouped(void **state)
{
    (void)state;
    space_result r;
    uint64_t n = 4;
    size_t nsupp = 9;
    make_counts(&r, 0, 0, &n);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_BELOW_K);
    assert_int_equal(nsupp, 1);
    space_result_dispose(&r);
    n = 5;
    make_counts(&r, 0, 0, &n);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_NONE);
    assert_int_equal(r.cells[0].n, 5);
    assert_int_equal(nsupp, 0);
    space_result_dispose(&r);
}

static void test_trust_disclosure_apply_1d_complement(void **state)
{
    (void)state;
    space_result r;
    const uint64_t n[] = {30, 3, 10, 20, 7};
    size_t nsupp = 0;
    make_counts(&r, 0, 5, n);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    const space_supp want[] = {SPACE_SUPP_NONE, SPACE_SUPP_BELOW_K, SPACE_SUPP_NONE,
                               SPACE_SUPP_NONE, SPACE_SUPP_COMPLEMENTARY};
    expect_supp(&r, want);
    assert_int_equal(nsupp, 2);
    assert_int_equal(r.cells[0].n, 30);
    assert_int_equal(r.cells[2].n, 10);
    space_result_dispose(&r);

    /* Two small cells protect each other: no complement. */
    const uint64_t n2[] = {2, 40, 3, 50};
    make_counts(&r, 0, 4, n2);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    const space_supp want2[] = {SPACE_SUPP_BELOW_K, SPACE_SUPP_NONE, SPACE_SUPP_BELOW_K,
                                SPACE_SUPP_NONE};
    expect_supp(&r, want2);
    space_result_dispose(&r);

    /* A total that is itself below k is not published: the line is satisfied. */
    const uint64_t n3[] = {1, 0, 3};
    make_counts(&r, 0, 3, n3);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    const space_supp want3[] = {SPACE_SUPP_BELOW_K, SPACE_SUPP_NONE, SPACE_SUPP_BELOW_K};
    expect_supp(&r, want3);
    space_result_dispose(&r);

    /* Ties: the first in cell order. k 0 and 1 suppress nothing but (policy) zeros. */
    const uint64_t n4[] = {8, 8, 1};
    make_counts(&r, 0, 3, n4);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    const space_supp want4[] = {SPACE_SUPP_COMPLEMENTARY, SPACE_SUPP_NONE, SPACE_SUPP_BELOW_K};
    expect_supp(&r, want4);
    space_result_dispose(&r);
    const trust_disclosure k1 = {.k = 1, .zero_is_safe = true};
    make_counts(&r, 0, 3, n4);
    assert_int_equal(trust_disclosure_apply(&k1, &r, NULL, &nsupp), 0);
    assert_int_equal(nsupp, 0);
    space_result_dispose(&r);
}

static void test_trust_disclosure_apply_zero_policy(void **state)
{
    (void)state;
    space_result r;
    const uint64_t n[] = {0, 10, 20};
    size_t nsupp = 0;
    make_counts(&r, 0, 3, n);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    assert_int_equal(nsupp, 0);
    space_result_dispose(&r);

    const trust_disclosure unsafe = {.k = 5, .zero_is_safe = false};
    make_counts(&r, 0, 3, n);
    assert_int_equal(trust_disclosure_apply(&unsafe, &r, NULL, &nsupp), 0);
    const space_supp want[] = {SPACE_SUPP_BELOW_K, SPACE_SUPP_COMPLEMENTARY, SPACE_SUPP_NONE};
    expect_supp(&r, want);
    space_result_dispose(&r);

    /* With zeros safe, a zero is a complement only when no non-zero cell is left. */
    const uint64_t n2[] = {0, 3, 0, 6};
    make_counts(&r, 0, 4, n2);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    const space_supp want2[] = {SPACE_SUPP_NONE, SPACE_SUPP_BELOW_K, SPACE_SUPP_NONE,
                                SPACE_SUPP_COMPLEMENTARY};
    expect_supp(&r, want2);
    space_result_dispose(&r);
    const uint64_t n3[] = {0, 3, 0, 6};
    make_counts(&r, 2, 2, n3); /* rows {0,3} and {0,6}: columns {0,0} and {3,6} */
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    /* Row 0 has only a zero left; it is taken, then column 0 needs a second one. */
    const space_supp want3[] = {SPACE_SUPP_COMPLEMENTARY, SPACE_SUPP_BELOW_K,
                                SPACE_SUPP_COMPLEMENTARY, SPACE_SUPP_COMPLEMENTARY};
    expect_supp(&r, want3);
    space_result_dispose(&r);
}

static void test_trust_disclosure_apply_2d_rows_and_columns(void **state)
{
    (void)state;
    space_result r;
    /* One small cell at (0,0): row 0 takes (0,1) = 10, column 0 takes (1,0) = 15, and
     * column 1, now holding one, takes (1,1) = 30: a second round. */
    const uint64_t n[] = {2, 10, 20, 15, 30, 40, 25, 35, 45};
    size_t nsupp = 0;
    make_counts(&r, 3, 3, n);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    const space_supp C = SPACE_SUPP_COMPLEMENTARY, N = SPACE_SUPP_NONE;
    const space_supp want[] = {SPACE_SUPP_BELOW_K, C, N, C, C, N, N, N, N};
    expect_supp(&r, want);
    assert_int_equal(nsupp, 4);
    assert_int_equal(r.cells[8].n, 45);
    space_result_dispose(&r);

    /* A cascade: each complement lands in a line that then needs one more. */
    const uint64_t m[] = {1, 50, 60, 70, 9, 50, 80, 90, 99, 8, 90, 95};
    make_counts(&r, 3, 4, m);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    for (size_t i = 0; i < 12; i++) {
        assert_true(r.cells[i].supp != N || r.cells[i].n == m[i]);
    }
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_BELOW_K);
    /* Every row and column holds 0 or >= 2 withheld cells. */
    for (size_t a = 0; a < 3; a++) {
        size_t cnt = 0;
        for (size_t b = 0; b < 4; b++) {
            cnt += r.cells[a * 4 + b].supp != N;
        }
        assert_true(cnt != 1);
    }
    for (size_t b = 0; b < 4; b++) {
        size_t cnt = 0;
        for (size_t a = 0; a < 3; a++) {
            cnt += r.cells[a * 4 + b].supp != N;
        }
        assert_true(cnt != 1);
    }
    space_result_dispose(&r);
}

/* A two-way cell solvable from several margins at once, though every line holds 0 or >= 2
 * withheld cells: P's row total (4) is small, so the row publishes nothing, but P = its
 * column's total minus the column's other two withheld cells, whose sum the rows 3 and 4
 * and column 0 give. The exact check withholds (2,0) too, the only cell closing a cycle. */
static void test_trust_disclosure_apply_2d_determined_by_margins(void **state)
{
    (void)state;
    space_result r;
    const uint64_t n[] = {0, 0, 39, 16, 0, 4, 28, 17, 1, 11, 0, 21, 32, 36};
    const trust_disclosure k8 = {.k = 8, .zero_is_safe = true};
    make_counts(&r, 7, 2, n);
    assert_int_equal(trust_disclosure_apply(&k8, &r, NULL, NULL), 0);
    const space_supp P = SPACE_SUPP_BELOW_K, C = SPACE_SUPP_COMPLEMENTARY, N = SPACE_SUPP_NONE;
    const space_supp want[] = {N, N, N, N, C, P, C, C, P, C, N, N, N, N};
    expect_supp(&r, want);
    space_result_dispose(&r);
}

/* A sparse table (absent groups are public zeros) where no published cell can close a
 * cycle through a determined cell: everything is withheld. */
static void test_trust_disclosure_apply_2d_sparse_withholds_all(void **state)
{
    (void)state;
    space_result r;
    assert_int_equal(space_result_init(&r, SPACE_OP_COUNT, 5, 0), 0);
    r.ngroup = 2;
    const uint16_t keys[5][2] = {{0, 0}, {0, 1}, {1, 0}, {2, 2}, {2, 3}};
    const uint64_t n[5] = {2, 10, 10, 50, 60};
    for (size_t i = 0; i < 5; i++) {
        r.cells[i].key[0] = keys[i][0];
        r.cells[i].key[1] = keys[i][1];
        r.cells[i].n = n[i];
    }
    size_t nsupp = 0;
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    assert_int_equal(nsupp, 5);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_BELOW_K);
    space_result_dispose(&r);
}

/* A cell the data space already withheld (differencing) keeps its reason and gets a
 * complement like any other, its total being unknown to us. */
static void test_trust_disclosure_apply_presuppressed(void **state)
{
    (void)state;
    space_result r;
    const uint64_t n[] = {0, 40, 12, 30};
    size_t nsupp = 0;
    make_counts(&r, 0, 4, n);
    r.cells[0].supp = SPACE_SUPP_DIFFERENCING;
    r.cells[0].n = 77; /* whatever it holds is zeroed */
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, &nsupp), 0);
    const space_supp want[] = {SPACE_SUPP_DIFFERENCING, SPACE_SUPP_NONE, SPACE_SUPP_COMPLEMENTARY,
                               SPACE_SUPP_NONE};
    expect_supp(&r, want);
    assert_int_equal(nsupp, 2);
    space_result_dispose(&r);
}

static void test_trust_disclosure_apply_histogram_bins(void **state)
{
    (void)state;
    space_result r;
    uint8_t *flags = NULL;
    size_t nsupp = 0;
    /* One cell: bin 1 (2) is small; the complement within the cell's bins is bin 4 (8);
     * zero bins stay published; n stays. */
    const uint64_t b1[] = {0, 2, 10, 30, 8};
    make_hist(&r, 1, 5, b1);
    assert_int_equal(trust_disclosure_apply(&k5, &r, &flags, &nsupp), 0);
    assert_non_null(flags);
    const uint8_t want1[] = {0, SPACE_SUPP_BELOW_K, 0, 0, SPACE_SUPP_COMPLEMENTARY};
    assert_memory_equal(flags, want1, sizeof(want1));
    const uint64_t shown1[] = {0, 0, 10, 30, 0};
    assert_memory_equal(r.cells[0].bins, shown1, sizeof(shown1));
    assert_int_equal(r.cells[0].n, 50);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_NONE);
    assert_int_equal(nsupp, 0);
    free(flags);
    space_result_dispose(&r);

    /* Two cells: bin j across the cells is a line too (the ungrouped histogram). */
    const uint64_t b2[] = {2, 10, 10, 20, 20, 20};
    make_hist(&r, 2, 3, b2);
    assert_int_equal(trust_disclosure_apply(&k5, &r, &flags, &nsupp), 0);
    assert_non_null(flags);
    const uint8_t P = SPACE_SUPP_BELOW_K, C = SPACE_SUPP_COMPLEMENTARY;
    const uint8_t want2[] = {P, C, 0, C, C, 0};
    assert_memory_equal(flags, want2, sizeof(want2));
    assert_int_equal(r.cells[0].bins[2], 10);
    assert_int_equal(r.cells[1].bins[2], 20);
    assert_int_equal(r.cells[0].n, 22);
    free(flags);
    space_result_dispose(&r);

    /* A small cell is withheld whole: the other cell goes too (its line), no bin flags. */
    const uint64_t b3[] = {1, 2, 0, 20, 20, 10};
    make_hist(&r, 2, 3, b3);
    assert_int_equal(trust_disclosure_apply(&k5, &r, &flags, &nsupp), 0);
    assert_null(flags);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_BELOW_K);
    assert_int_equal(r.cells[1].supp, SPACE_SUPP_COMPLEMENTARY);
    for (size_t j = 0; j < 3; j++) {
        assert_int_equal(r.cells[0].bins[j], 0);
        assert_int_equal(r.cells[1].bins[j], 0);
    }
    assert_int_equal(nsupp, 2);
    space_result_dispose(&r);

    /* Nothing small: no flags array. */
    const uint64_t b4[] = {5, 0, 9};
    make_hist(&r, 1, 3, b4);
    flags = (uint8_t *)&r;
    assert_int_equal(trust_disclosure_apply(&k5, &r, &flags, NULL), 0);
    assert_null(flags);
    space_result_dispose(&r);
}

/* Bins that arrived withheld (an external data space's dominance rule, say) travel as 0
 * with n the true total: they are protected like our own, and their reasons are kept. Both
 * ways of returning the reasons. */
static void test_trust_disclosure_apply_bins_arrived_withheld(void **state)
{
    (void)state;
    const uint64_t b[] = {0, 10, 20, 30, 40, 40, 40, 40};
    const uint8_t D = SPACE_SUPP_DOMINANCE, C = SPACE_SUPP_COMPLEMENTARY;
    for (int mode = 0; mode < 2; mode++) {
        space_result r;
        make_hist(&r, 2, 4, b);
        r.cells[0].n = 70; /* 10 more than the published bins: bin 0 holds them */
        r.cells[0].bin_supp = calloc(4, 1);
        assert_non_null(r.cells[0].bin_supp);
        r.cells[0].bin_supp[0] = D;
        r.cells[1].bin_supp = calloc(4, 1); /* all published: becomes NULL */
        assert_non_null(r.cells[1].bin_supp);
        uint8_t *flags = NULL;
        assert_int_equal(trust_disclosure_apply(&k5, &r, mode == 0 ? &flags : NULL, NULL), 0);
        /* Cell 0's bins line: bin 1 (10) is the complement. Bin 0 across the cells: cell
         * 1's bin 0, and then bin 1 across the cells takes cell 1's bin 1. */
        const uint8_t want[] = {D, C, 0, 0, C, C, 0, 0};
        if (mode == 0) {
            assert_non_null(flags);
            assert_memory_equal(flags, want, sizeof(want));
            assert_null(r.cells[0].bin_supp);
            assert_null(r.cells[1].bin_supp);
            free(flags);
        } else {
            assert_non_null(r.cells[0].bin_supp);
            assert_non_null(r.cells[1].bin_supp);
            assert_memory_equal(r.cells[0].bin_supp, want, 4);
            assert_memory_equal(r.cells[1].bin_supp, want + 4, 4);
        }
        assert_int_equal(r.cells[0].n, 70);
        assert_int_equal(r.cells[0].bins[1], 0);
        assert_int_equal(r.cells[0].bins[3], 30);
        space_result_dispose(&r);
    }

    /* A suppressed cell loses its bin_supp; in-cell mode allocates for our own flags. Cell
     * 0 (n 2) is small, cell 1 (30) its complement; cell 2 is shown with bin 0 (3) small
     * and bin 1 its complement. */
    space_result r;
    const uint64_t b2[] = {1, 1, 10, 20, 3, 57};
    make_hist(&r, 3, 2, b2);
    r.cells[0].bin_supp = calloc(2, 1);
    assert_non_null(r.cells[0].bin_supp);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_BELOW_K);
    assert_int_equal(r.cells[1].supp, SPACE_SUPP_COMPLEMENTARY);
    assert_null(r.cells[0].bin_supp);
    assert_null(r.cells[1].bin_supp);
    assert_int_equal(r.cells[2].supp, SPACE_SUPP_NONE);
    assert_int_equal(r.cells[2].n, 60);
    assert_non_null(r.cells[2].bin_supp);
    assert_int_equal(r.cells[2].bin_supp[0], SPACE_SUPP_BELOW_K);
    assert_int_equal(r.cells[2].bin_supp[1], SPACE_SUPP_COMPLEMENTARY);
    space_result_dispose(&r);
}

/* Quantile grid bins are checked only through the cell's n; final quantiles likewise. */
static void test_trust_disclosure_apply_quantiles(void **state)
{
    (void)state;
    space_result r;
    uint8_t *flags = (uint8_t *)&r;
    assert_int_equal(space_result_init(&r, SPACE_OP_QUANTILES, 1, 4), 0);
    r.cells[0].bins[1] = 1;
    r.cells[0].bins[2] = 49;
    r.cells[0].n = 50;
    assert_int_equal(trust_disclosure_apply(&k5, &r, &flags, NULL), 0);
    assert_null(flags);
    assert_int_equal(r.cells[0].bins[1], 1);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_NONE);
    space_result_dispose(&r);

    assert_int_equal(space_result_init(&r, SPACE_OP_QUANTILES, 2, 0), 0);
    r.ngroup = 1;
    r.cells[1].key[0] = 1;
    r.cells[0].n = 4;
    r.cells[0].has_qvals = true;
    r.cells[0].qvals[0] = 3.5;
    r.cells[1].n = 40;
    r.cells[1].has_qvals = true;
    r.cells[1].qvals[0] = 5.5;
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
    assert_int_equal(r.cells[0].supp, SPACE_SUPP_BELOW_K);
    assert_false(r.cells[0].has_qvals);
    assert_true(r.cells[0].qvals[0] == 0.0);
    assert_int_equal(r.cells[1].supp, SPACE_SUPP_COMPLEMENTARY);
    assert_false(r.cells[1].has_qvals);
    space_result_dispose(&r);
}

/* Mean and agreement cells: every moment is zeroed with the cell. */
static void test_trust_disclosure_apply_magnitudes_zeroed(void **state)
{
    (void)state;
    space_result r;
    base_result(&r, SPACE_OP_MEAN);
    r.cells[0].n = r.cells[0].mom.n = 3;
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(r.cells[i].supp, i == 0 ? SPACE_SUPP_BELOW_K : SPACE_SUPP_COMPLEMENTARY);
        assert_true(r.cells[i].mom.mean == 0 && r.cells[i].mom.m2 == 0);
        assert_int_equal(r.cells[i].mom.n, 0);
    }
    space_result_dispose(&r);
    base_result(&r, SPACE_OP_AGREEMENT);
    r.cells[1].n = r.cells[1].agree.n = 2;
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
    space_agree zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&r.cells[1].agree, &zero, sizeof(zero));
    assert_memory_equal(&r.cells[0].agree, &zero, sizeof(zero));
    space_result_dispose(&r);
    base_result(&r, SPACE_OP_SUM);
    r.cells[1].n = 1;
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
    assert_int_equal(r.cells[0].sum_units, 0);
    assert_int_equal(r.cells[1].sum_units, 0);
    space_result_dispose(&r);
}

/* ---- brute force: no withheld cell can be recomputed ------------------------------------- */

/* Rank of the |rows| x |cols| matrix |a| (row-major, modified), by Gaussian elimination with
 * partial pivoting; entries are small integers, so a tolerance is safe. */
static size_t rank_of(double *a, size_t rows, size_t cols)
{
    size_t rank = 0;
    for (size_t c = 0; c < cols && rank < rows; c++) {
        size_t piv = rank;
        for (size_t i = rank + 1; i < rows; i++) {
            if (fabs(a[i * cols + c]) > fabs(a[piv * cols + c])) {
                piv = i;
            }
        }
        if (fabs(a[piv * cols + c]) < 1e-9) {
            continue;
        }
        for (size_t j = 0; j < cols; j++) {
            double t = a[rank * cols + j];
            a[rank * cols + j] = a[piv * cols + j];
            a[piv * cols + j] = t;
        }
        for (size_t i = 0; i < rows; i++) {
            if (i == rank) {
                continue;
            }
            double f = a[i * cols + c] / a[rank * cols + c];
            for (size_t j = 0; j < cols; j++) {
                a[i * cols + j] -= f * a[rank * cols + j];
            }
        }
        rank++;
    }
    return rank;
}

/* The attacker: variables (cells or bins) with some hidden; lines (sets of variables) whose
 * totals are known or not; every published variable is known. */
#define AT_MAXV 64
#define AT_MAXL 40

typedef struct at_line {
    bool mem[AT_MAXV];
    bool known;
} at_line;

/* Is |vec| (over the hidden variables |unk|) in the row space of the known lines? */
static bool at_determined(const at_line *lines, size_t nl, const size_t *unk, size_t nunk,
                          const double *vec)
{
    static double a[(AT_MAXL + 1) * AT_MAXV], b[(AT_MAXL + 1) * AT_MAXV];
    size_t neq = 0;
    for (size_t l = 0; l < nl; l++) {
        if (!lines[l].known) {
            continue;
        }
        for (size_t u = 0; u < nunk; u++) {
            a[neq * nunk + u] = lines[l].mem[unk[u]] ? 1.0 : 0.0;
        }
        neq++;
    }
    memcpy(b, a, neq * nunk * sizeof(double));
    size_t base = rank_of(b, neq, nunk);
    memcpy(b, a, neq * nunk * sizeof(double));
    memcpy(&b[neq * nunk], vec, nunk * sizeof(double));
    return rank_of(b, neq + 1, nunk) == base;
}

/* Fails when a known line has exactly one hidden variable (peeling), when a hidden variable
 * flagged |sensitive| is determined by linear algebra over the known lines, or when one of
 * the |ntargets| sums (each a set of variables, all hidden) is determined. Returns how many
 * hidden, non-sensitive variables (complements of ordinary size) are determined. */
static size_t attack(int iter, size_t nv, const bool *hidden, const bool *sensitive,
                     const at_line *lines, size_t nl, const at_line *targets, size_t ntargets)
{
    size_t unk[AT_MAXV], nunk = 0, determined = 0;
    for (size_t x = 0; x < nv; x++) {
        if (hidden[x]) {
            unk[nunk++] = x;
        }
    }
    for (size_t l = 0; l < nl; l++) {
        size_t nmem = 0, nhid = 0;
        for (size_t x = 0; x < nv; x++) {
            nmem += lines[l].mem[x];
            nhid += lines[l].mem[x] && hidden[x];
        }
        if (lines[l].known && nhid == 1) {
            fail_msg("table %d: line %zu (%zu members) has one hidden cell and a known total", iter,
                     l, nmem);
        }
    }
    double vec[AT_MAXV];
    for (size_t u = 0; u < nunk; u++) {
        for (size_t x = 0; x < nunk; x++) {
            vec[x] = x == u ? 1.0 : 0.0;
        }
        if (at_determined(lines, nl, unk, nunk, vec)) {
            if (sensitive[unk[u]]) {
                fail_msg("table %d: hidden variable %zu is determined", iter, unk[u]);
            }
            determined++;
        }
    }
    for (size_t t = 0; t < ntargets; t++) {
        for (size_t u = 0; u < nunk; u++) {
            vec[u] = targets[t].mem[unk[u]] ? 1.0 : 0.0;
        }
        if (at_determined(lines, nl, unk, nunk, vec)) {
            fail_msg("table %d: hidden sum %zu is determined", iter, t);
        }
    }
    return determined;
}

static bool small_for(const trust_disclosure *p, uint64_t v)
{
    return v == 0 ? !p->zero_is_safe : v < p->k;
}

/* A line's total is known when the line has two or more members and the total passes the
 * primary rule. (A one-member line is the member itself, released by its own query under
 * the same suppression: a table with a dimension of size 1 is its own margin.) */
static void set_known(at_line *l, const uint64_t *v, size_t nv, const trust_disclosure *p)
{
    uint64_t total = 0;
    size_t nmem = 0;
    for (size_t x = 0; x < nv; x++) {
        if (l->mem[x]) {
            total += v[x];
            nmem++;
        }
    }
    l->known = nmem >= 2 && !small_for(p, total);
}

/* Random values with many small ones and zeros. */
static uint64_t rand_count(void)
{
    uint64_t x = prng() % 10;
    return x < 2 ? 0 : x < 5 ? prng() % 5 : prng() % 40;
}

#define BF_MAX 8

/* Count tables of up to 8 x 8 (or 1-D up to 12), random k and zero policy. Every small cell
 * must be withheld and zeroed; an attacker who knows every publishable margin (rows,
 * columns, table) and every published cell can neither peel a withheld cell off a line nor
 * determine a primary cell by any linear combination. Complements of ordinary size may be
 * determined (their values are not sensitive); they are counted. */
static void test_trust_disclosure_apply_random_tables_not_recomputable(void **state)
{
    (void)state;
    size_t withheld = 0, determined = 0;
    for (int iter = 0; iter < 3000; iter++) {
        bool two_d = prng() % 3 != 0;
        size_t nr = two_d ? 1 + prng() % BF_MAX : 0;
        size_t nc = two_d ? 1 + prng() % BF_MAX : 1 + prng() % 12;
        size_t ncells = two_d ? nr * nc : nc;
        uint64_t n[BF_MAX * BF_MAX];
        for (size_t i = 0; i < ncells; i++) {
            n[i] = rand_count();
        }
        trust_disclosure p = {.k = 3 + (uint32_t)(prng() % 9), .zero_is_safe = prng() % 4 != 0};
        space_result r;
        make_counts(&r, nr, nc, n);
        assert_int_equal(trust_disclosure_apply(&p, &r, NULL, NULL), 0);

        bool hidden[AT_MAXV], sensitive[AT_MAXV];
        for (size_t i = 0; i < ncells; i++) {
            hidden[i] = r.cells[i].supp != SPACE_SUPP_NONE;
            sensitive[i] =
                hidden[i] && (r.cells[i].supp != SPACE_SUPP_COMPLEMENTARY || small_for(&p, n[i]));
            if (small_for(&p, n[i])) {
                assert_true(hidden[i]);
            }
            assert_int_equal(r.cells[i].n, hidden[i] ? 0 : n[i]);
            withheld += hidden[i];
        }
        static at_line lines[2 * BF_MAX + 1];
        size_t nl = two_d ? nr + nc + 1 : 1;
        memset(lines, 0, sizeof(lines));
        for (size_t i = 0; i < ncells; i++) {
            if (two_d) {
                lines[i / nc].mem[i] = true;
                lines[nr + i % nc].mem[i] = true;
                lines[nr + nc].mem[i] = true;
            } else {
                lines[0].mem[i] = true;
            }
        }
        for (size_t l = 0; l < nl; l++) {
            set_known(&lines[l], n, ncells, &p);
        }
        determined += attack(iter, ncells, hidden, sensitive, lines, nl, NULL, 0);
        space_result_dispose(&r);
    }
    print_message("3000 count tables: %zu cells withheld, %zu complements determined\n", withheld,
                  determined);
    assert_true(withheld > 1000);
}

/* Grouped histograms of up to 6 cells x 6 bins: the bins of a published cell sum to its n,
 * bin j across cells to the ungrouped histogram's bin j, everything to the ungrouped n.
 * No small bin and no withheld cell's n may be determined. */
static void test_trust_disclosure_apply_random_histograms_not_recomputable(void **state)
{
    (void)state;
    size_t bins_withheld = 0, determined = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t ncells = 1 + prng() % 6, nbins = 2 + prng() % 5, nv = ncells * nbins;
        uint64_t b[AT_MAXV];
        for (size_t x = 0; x < nv; x++) {
            b[x] = rand_count();
        }
        trust_disclosure p = {.k = 3 + (uint32_t)(prng() % 9), .zero_is_safe = prng() % 4 != 0};
        space_result r;
        make_hist(&r, ncells, nbins, b);
        uint64_t n[6];
        for (size_t i = 0; i < ncells; i++) {
            n[i] = r.cells[i].n;
        }
        uint8_t *flags = NULL;
        assert_int_equal(trust_disclosure_apply(&p, &r, &flags, NULL), 0);

        bool hidden[AT_MAXV], sensitive[AT_MAXV];
        static at_line lines[6 + 6 + 1], targets[6];
        memset(lines, 0, sizeof(lines));
        memset(targets, 0, sizeof(targets));
        size_t ntargets = 0;
        for (size_t i = 0; i < ncells; i++) {
            space_supp cs = r.cells[i].supp;
            assert_true(cs != SPACE_SUPP_NONE || !small_for(&p, n[i]));
            for (size_t j = 0; j < nbins; j++) {
                size_t x = i * nbins + j;
                uint8_t bs = flags != NULL ? flags[x] : 0;
                assert_true(cs == SPACE_SUPP_NONE || bs == 0);
                hidden[x] = cs != SPACE_SUPP_NONE || bs != 0;
                uint8_t why = cs != SPACE_SUPP_NONE ? (uint8_t)cs : bs;
                sensitive[x] =
                    hidden[x] && (why != SPACE_SUPP_COMPLEMENTARY || small_for(&p, b[x]));
                if (small_for(&p, b[x])) {
                    assert_true(hidden[x]);
                }
                assert_int_equal(r.cells[i].bins[j], hidden[x] ? 0 : b[x]);
                bins_withheld += hidden[x] && cs == SPACE_SUPP_NONE;
                lines[i].mem[x] = true;                     /* the cell's bins: total n_i */
                lines[ncells + j].mem[x] = ncells >= 2;     /* bin j over the cells */
                lines[ncells + nbins].mem[x] = ncells >= 2; /* the ungrouped n */
                targets[ntargets].mem[x] = cs == SPACE_SUPP_BELOW_K;
            }
            lines[i].known = cs == SPACE_SUPP_NONE;
            ntargets += cs == SPACE_SUPP_BELOW_K;
        }
        for (size_t l = ncells; l < ncells + nbins + 1; l++) {
            set_known(&lines[l], b, nv, &p);
        }
        determined +=
            attack(iter, nv, hidden, sensitive, lines, ncells + nbins + 1, targets, ntargets);
        free(flags);
        space_result_dispose(&r);
    }
    print_message("3000 histograms: %zu bins withheld in published cells, %zu complements "
                  "determined\n",
                  bins_withheld, determined);
    assert_true(bins_withheld > 500);
}

/* ---- the sampler ------------------------------------------------------------------------- */

/* Draws |n| values of scale s/t and checks P(Z=0), P(|Z|>=m), mean and variance against the
 * exact distribution, each within 5 standard errors. */
static void check_dlaplace(uint64_t s, uint64_t t, size_t n, int64_t m)
{
    const double a = exp(-(double)t / (double)s);
    const double p0 = (1 - a) / (1 + a);
    const double ptail = 2 * pow(a, (double)m) / (1 + a);
    const double var = 2 * a / ((1 - a) * (1 - a));
    /* Fourth moment of the two-sided geometric: 2a(1 + 11a + 11a^2 + a^3) / ((1-a)^4 (1+a)). */
    const double mu4 = 2 * a * (1 + 11 * a + 11 * a * a + a * a * a) / (pow(1 - a, 4) * (1 + a));
    size_t zeros = 0, tail = 0;
    double sum = 0, sumsq = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t z;
        assert_int_equal(trust_dlaplace_sample(s, t, &z), 0);
        zeros += z == 0;
        tail += z >= m || z <= -m;
        sum += (double)z;
        sumsq += (double)z * (double)z;
    }
    const double dn = (double)n;
    const double f0 = (double)zeros / dn, ft = (double)tail / dn;
    const double mean = sum / dn, v = sumsq / dn - mean * mean;
    print_message("scale %llu/%llu: P(0) %.5f (exact %.5f), P(|Z|>=%lld) %.5f (%.5f), "
                  "mean %.4f, var %.4f (%.4f)\n",
                  (unsigned long long)s, (unsigned long long)t, f0, p0, (long long)m, ft, ptail,
                  mean, v, var);
    assert_true(fabs(f0 - p0) < 5 * sqrt(p0 * (1 - p0) / dn));
    assert_true(fabs(ft - ptail) < 5 * sqrt(ptail * (1 - ptail) / dn));
    assert_true(fabs(mean) < 5 * sqrt(var / dn));
    assert_true(fabs(v - var) < 5 * sqrt((mu4 - var * var) / dn));
}

static void test_trust_dlaplace_sample_distribution(void **state)
{
    (void)state;
    check_dlaplace(1, 1, 200000, 2);       /* epsilon 1, sensitivity 1 */
    check_dlaplace(10, 1, 200000, 10);     /* epsilon 0.1 */
    check_dlaplace(5, 2, 100000, 3);       /* a non-integer scale 2.5 */
    check_dlaplace(1, 3, 100000, 1);       /* scale 1/3: mostly 0 */
    check_dlaplace(3000, 1000, 100000, 4); /* milli-units that reduce to 3/1 */
}

static void test_trust_dlaplace_sample_bad_args(void **state)
{
    (void)state;
    int64_t z = 42;
    assert_int_equal(trust_dlaplace_sample(0, 1, &z), BG_ERR_INVAL);
    assert_int_equal(trust_dlaplace_sample(1, 0, &z), BG_ERR_INVAL);
    assert_int_equal(trust_dlaplace_sample(((uint64_t)1 << 56) + 1, 1, &z), BG_ERR_INVAL);
    assert_int_equal(trust_dlaplace_sample(1, 1, NULL), BG_ERR_INVAL);
    assert_int_equal(z, 42);
    /* The largest scale works. */
    assert_int_equal(trust_dlaplace_sample((uint64_t)1 << 56, 1, &z), 0);
}

/* ---- noise ------------------------------------------------------------------------------- */

static void test_trust_disclosure_noise_count(void **state)
{
    (void)state;
    space_result r;
    assert_int_equal(space_result_init(&r, SPACE_OP_COUNT, SPACE_MAX_CELLS, 0), 0);
    r.ngroup = 1;
    for (size_t i = 0; i < r.ncells; i++) {
        r.cells[i].key[0] = (uint16_t)i;
        r.cells[i].n = i < 100 ? 0 : 1000;
    }
    /* epsilon = 0.25 (250 milli), sensitivity 1: b = 4. */
    const trust_dp dp = {.eps_num = 250, .eps_den = 1000};
    assert_int_equal(trust_disclosure_noise(&r, &dp), 0);
    const double a = exp(-0.25);
    const double var = 2 * a / ((1 - a) * (1 - a));
    double sum = 0;
    size_t changed = 0, zeros = 0;
    for (size_t i = 0; i < r.ncells; i++) {
        assert_true(r.cells[i].noisy);
        assert_true(r.cells[i].noise_scale == 4.0);
        if (i < 100) {
            zeros += r.cells[i].n == 0; /* clamped: about half plus P(0)/2 */
        } else {
            sum += (double)r.cells[i].n - 1000.0;
            changed += r.cells[i].n != 1000;
        }
    }
    double m = (double)(r.ncells - 100);
    assert_true(fabs(sum / m) < 5 * sqrt(var / m));
    assert_true(changed > (size_t)(0.8 * m)); /* P(Z != 0) = 1 - (1-a)/(1+a) = 0.88 */
    assert_true(zeros > 35 && zeros < 85);
    /* Already noisy: refused. Then suppression accepts the noisy result. */
    assert_int_equal(trust_disclosure_noise(&r, &dp), BG_ERR_INVAL);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
    space_result_dispose(&r);
}

static void test_trust_disclosure_noise_histogram(void **state)
{
    (void)state;
    space_result r;
    const uint64_t bins[] = {100, 0, 50, 7, 100, 100, 100, 100};
    make_hist(&r, 2, 4, bins);
    const trust_dp dp = {.eps_num = 1, .eps_den = 2}; /* epsilon 0.5: b = 2 */
    assert_int_equal(trust_disclosure_noise(&r, &dp), 0);
    size_t moved = 0;
    for (size_t i = 0; i < 2; i++) {
        uint64_t s = 0;
        for (size_t j = 0; j < 4; j++) {
            s += r.cells[i].bins[j];
            moved += r.cells[i].bins[j] != bins[i * 4 + j];
            assert_true(llabs((long long)r.cells[i].bins[j] - (long long)bins[i * 4 + j]) < 200);
        }
        assert_int_equal(r.cells[i].n, s); /* n is the sum of the noisy bins */
        assert_true(r.cells[i].noisy);
        assert_true(r.cells[i].noise_scale == 2.0);
    }
    assert_true(moved >= 1); /* P(no bin moved) = 0.24^8 */
    uint8_t *flags = NULL;
    assert_int_equal(trust_disclosure_apply(&k5, &r, &flags, NULL), 0);
    free(flags);
    space_result_dispose(&r);
}

/* A bin that arrived withheld stays 0; n stays the sum of every (noisy) bin. */
static void test_trust_disclosure_noise_histogram_withheld_bin(void **state)
{
    (void)state;
    size_t below_true = 0;
    for (int rep = 0; rep < 200; rep++) {
        space_result r;
        const uint64_t bins[] = {0, 500, 500};
        make_hist(&r, 1, 3, bins);
        r.cells[0].n = 1500; /* bin 0 holds 500 */
        r.cells[0].bin_supp = calloc(3, 1);
        assert_non_null(r.cells[0].bin_supp);
        r.cells[0].bin_supp[0] = SPACE_SUPP_DOMINANCE;
        const trust_dp dp = {.eps_num = 1, .eps_den = 1};
        assert_int_equal(trust_disclosure_noise(&r, &dp), 0);
        const space_cell *c = &r.cells[0];
        assert_int_equal(c->bins[0], 0);
        assert_true(c->n > c->bins[1] + c->bins[2] + 400);
        assert_true(c->n < 1600);
        below_true += c->n < 1500;
        assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
        space_result_dispose(&r);
    }
    assert_true(below_true > 50 && below_true < 150);
}

static void test_trust_disclosure_noise_sum(void **state)
{
    (void)state;
    space_result r;
    assert_int_equal(space_result_init(&r, SPACE_OP_SUM, 3, 0), 0);
    r.ngroup = 1;
    for (size_t i = 0; i < 3; i++) {
        r.cells[i].key[0] = (uint16_t)i;
        r.cells[i].n = 20;
        r.cells[i].sum_units = -500;
    }
    r.cells[2].supp = SPACE_SUPP_DIFFERENCING;
    r.cells[2].n = 0;
    r.cells[2].sum_units = 0;
    /* epsilon 1, values up to 100 units: n gets b = 2, the sum b = 200 (split epsilon). */
    const trust_dp dp = {.eps_num = 1, .eps_den = 1, .sens_sum = 100};
    assert_int_equal(trust_disclosure_noise(&r, &dp), 0);
    for (size_t i = 0; i < 2; i++) {
        assert_true(r.cells[i].noisy);
        assert_true(r.cells[i].noise_scale == 200.0);
        assert_true(llabs(r.cells[i].sum_units + 500) < 200 * 40);
        assert_true(r.cells[i].n < 20 + 2 * 40);
    }
    assert_false(r.cells[2].noisy); /* withheld cells are not noised */
    assert_int_equal(r.cells[2].sum_units, 0);
    assert_int_equal(trust_disclosure_apply(&k5, &r, NULL, NULL), 0);
    space_result_dispose(&r);
}

static void test_trust_disclosure_noise_refused(void **state)
{
    (void)state;
    const trust_dp dp = {.eps_num = 1, .eps_den = 1, .sens_sum = 10};
    for (space_op op = SPACE_OP_MEAN; op <= SPACE_OP_AGREEMENT; op++) {
        if (op == SPACE_OP_HISTOGRAM) {
            continue;
        }
        space_result r;
        base_result(&r, op);
        space_cell before = r.cells[0];
        assert_int_equal(trust_disclosure_noise(&r, &dp), BG_ERR_INVAL);
        assert_memory_equal(&before, &r.cells[0], sizeof(before));
        space_result_dispose(&r);
    }
    space_result r;
    base_result(&r, SPACE_OP_SUM);
    trust_dp bad = dp;
    bad.sens_sum = 0;
    assert_int_equal(trust_disclosure_noise(&r, &bad), BG_ERR_INVAL);
    bad = dp;
    bad.eps_num = 0;
    assert_int_equal(trust_disclosure_noise(&r, &bad), BG_ERR_INVAL);
    bad = dp;
    bad.eps_den = 0;
    assert_int_equal(trust_disclosure_noise(&r, &bad), BG_ERR_INVAL);
    bad = dp;
    bad.sens_sum = (uint64_t)1 << 56; /* doubled for the split: beyond the sampler */
    assert_int_equal(trust_disclosure_noise(&r, &bad), BG_ERR_RANGE);
    bad = dp;
    bad.eps_den = UINT64_MAX;
    assert_int_equal(trust_disclosure_noise(&r, &bad), BG_ERR_RANGE);
    assert_int_equal(r.cells[0].sum_units, -40);
    assert_false(r.cells[0].noisy);
    assert_int_equal(trust_disclosure_noise(NULL, &dp), BG_ERR_INVAL);
    assert_int_equal(trust_disclosure_noise(&r, NULL), BG_ERR_INVAL);
    space_result_dispose(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_disclosure_apply_rejects_malformed),
        cmocka_unit_test(test_trust_disclosure_apply_scrubs_unused_members),
        cmocka_unit_test(test_trust_disclosure_apply_ungrouped),
        cmocka_unit_test(test_trust_disclosure_apply_1d_complement),
        cmocka_unit_test(test_trust_disclosure_apply_zero_policy),
        cmocka_unit_test(test_trust_disclosure_apply_2d_rows_and_columns),
        cmocka_unit_test(test_trust_disclosure_apply_2d_determined_by_margins),
        cmocka_unit_test(test_trust_disclosure_apply_2d_sparse_withholds_all),
        cmocka_unit_test(test_trust_disclosure_apply_presuppressed),
        cmocka_unit_test(test_trust_disclosure_apply_histogram_bins),
        cmocka_unit_test(test_trust_disclosure_apply_bins_arrived_withheld),
        cmocka_unit_test(test_trust_disclosure_apply_quantiles),
        cmocka_unit_test(test_trust_disclosure_apply_magnitudes_zeroed),
        cmocka_unit_test(test_trust_disclosure_apply_random_tables_not_recomputable),
        cmocka_unit_test(test_trust_disclosure_apply_random_histograms_not_recomputable),
        cmocka_unit_test(test_trust_dlaplace_sample_distribution),
        cmocka_unit_test(test_trust_dlaplace_sample_bad_args),
        cmocka_unit_test(test_trust_disclosure_noise_count),
        cmocka_unit_test(test_trust_disclosure_noise_histogram),
        cmocka_unit_test(test_trust_disclosure_noise_histogram_withheld_bin),
        cmocka_unit_test(test_trust_disclosure_noise_sum),
        cmocka_unit_test(test_trust_disclosure_noise_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
