/* tests/unit/space/test_agg.c: space/agg.c. METHODS.md test vectors (Chan merge, Bland-Altman),
 * the quantile counter-example of section 4, merges against direct two-pass computation on
 * random data in several orders, Student's t quantiles against values computed with mpmath at
 * 30 digits, heterogeneity against the textbook formulas, and result merging (disjoint and
 * overlapping keys, suppression, layout mismatches, every allocation failing in turn).
 * agg.c is included so that its allocations can be failed one by one. */
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- failing allocator (agg.c is compiled here against it) ------------------------------ */

static long alloc_left = -1; /* allocations that still succeed; -1: all */

static bool alloc_fails(void)
{
    if (alloc_left == 0) {
        return true;
    }
    if (alloc_left > 0) {
        alloc_left--;
    }
    return false;
}

static void *t_malloc(size_t n)
{
    return alloc_fails() ? NULL : malloc(n);
}

static void *t_calloc(size_t n, size_t m)
{
    return alloc_fails() ? NULL : calloc(n, m);
}

#define malloc t_malloc
#define calloc t_calloc
#include "space/agg.c"
#undef malloc
#undef calloc

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static double unif(void)
{
    return (double)(rng() >> 11) * (1.0 / 9007199254740992.0);
}

static double gauss(void)
{
    double u = unif(), v = unif();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(2.0 * M_PI * v);
}

static void assert_rel(double got, double want, double rel)
{
    double tol = rel * (fabs(want) > 1.0 ? fabs(want) : 1.0);
    if (!(fabs(got - want) <= tol)) {
        fail_msg("got %.17g, want %.17g (tolerance %.3g)", got, want, tol);
    }
}

static space_moments moments_of(const double *x, size_t n)
{
    space_moments m = {0};
    for (size_t i = 0; i < n; i++) {
        space_moments_add(&m, x[i]);
    }
    return m;
}

/* ---- moments ----------------------------------------------------------------------------- */

static void test_space_moments_merge_methods_vector(void **state)
{
    (void)state;
    const double a[] = {1, 2, 3, 4}, b[] = {2, 4, 6};
    space_moments ma = moments_of(a, 4), mb = moments_of(b, 3);
    assert_int_equal(ma.n, 4);
    assert_rel(ma.mean, 2.5, 1e-15);
    assert_rel(ma.m2, 5.0, 1e-15);
    assert_int_equal(mb.n, 3);
    assert_rel(mb.mean, 4.0, 1e-15);
    assert_rel(mb.m2, 8.0, 1e-15);
    space_moments_merge(&ma, &mb);
    assert_int_equal(ma.n, 7);
    assert_rel(ma.mean, 22.0 / 7.0, 1e-15);
    assert_rel(ma.m2, 118.0 / 7.0, 1e-14);
    assert_rel(space_moments_variance(&ma), 2.809524, 1e-6);
    /* the pooled sample variance of all 7 values */
    const double all[] = {1, 2, 3, 4, 2, 4, 6};
    space_moments mall = moments_of(all, 7);
    assert_rel(space_moments_variance(&ma), space_moments_variance(&mall), 1e-14);
}

static void test_space_moments_merge_empty(void **state)
{
    (void)state;
    space_moments e = {0}, a = {.n = 3, .mean = 2.0, .m2 = 4.0};
    space_moments_merge(&a, &e);
    assert_int_equal(a.n, 3);
    assert_rel(a.mean, 2.0, 0);
    assert_rel(a.m2, 4.0, 0);
    space_moments_merge(&e, &a);
    assert_int_equal(e.n, 3);
    assert_rel(e.mean, 2.0, 0);
    assert_rel(e.m2, 4.0, 0);
    space_moments one = {0};
    space_moments_add(&one, 7.0);
    assert_rel(space_moments_variance(&one), 0.0, 0);
    assert_rel(space_moments_variance(&(space_moments){0}), 0.0, 0);
}

/* Random data split into K parts of random sizes, merged forward, backward and as a tree,
 * against the two-pass mean and M2 of all the data. */
static void test_space_moments_merge_order_independent(void **state)
{
    (void)state;
    enum { N = 5000, K = 9 };
    static double x[N];
    for (int round = 0; round < 20; round++) {
        double shift = (double)round * 1000.0; /* a large mean stresses naive formulas */
        for (size_t i = 0; i < N; i++) {
            x[i] = shift + 3.0 * gauss();
        }
        size_t cut[K + 1];
        cut[0] = 0;
        cut[K] = N;
        for (size_t k = 1; k < K; k++) {
            cut[k] = (size_t)(rng() % N);
        }
        for (size_t a = 1; a < K; a++) { /* insertion sort of the inner cuts */
            for (size_t b = a; b > 1 && cut[b - 1] > cut[b]; b--) {
                size_t t = cut[b];
                cut[b] = cut[b - 1];
                cut[b - 1] = t;
            }
        }
        space_moments part[K];
        for (size_t k = 0; k < K; k++) {
            part[k] = moments_of(x + cut[k], cut[k + 1] - cut[k]);
        }
        double mean = 0.0, m2 = 0.0;
        for (size_t i = 0; i < N; i++) {
            mean += x[i];
        }
        mean /= N;
        for (size_t i = 0; i < N; i++) {
            m2 += (x[i] - mean) * (x[i] - mean);
        }
        space_moments fwd = {0}, bwd = {0};
        for (size_t k = 0; k < K; k++) {
            space_moments_merge(&fwd, &part[k]);
            space_moments_merge(&bwd, &part[K - 1 - k]);
        }
        space_moments tree[K];
        memcpy(tree, part, sizeof(tree));
        for (size_t step = 1; step < K; step *= 2) {
            for (size_t k = 0; k + step < K; k += 2 * step) {
                space_moments_merge(&tree[k], &tree[k + step]);
            }
        }
        const space_moments *all[3] = {&fwd, &bwd, &tree[0]};
        for (int v = 0; v < 3; v++) {
            assert_int_equal(all[v]->n, N);
            assert_rel(all[v]->mean, mean, 1e-9);
            assert_true(fabs(all[v]->m2 - m2) <= 1e-9 * m2);
        }
    }
}

/* ---- agreement --------------------------------------------------------------------------- */

typedef struct direct_agree {
    double d_mean, d_m2, a_mean, a_m2, c_ad, x_mean, x_m2, y_mean, y_m2, c_xy;
} direct_agree;

static direct_agree two_pass(const double *x, const double *y, size_t n)
{
    direct_agree r = {0};
    for (size_t i = 0; i < n; i++) {
        r.x_mean += x[i];
        r.y_mean += y[i];
        r.d_mean += x[i] - y[i];
        r.a_mean += (x[i] + y[i]) / 2.0;
    }
    r.x_mean /= (double)n;
    r.y_mean /= (double)n;
    r.d_mean /= (double)n;
    r.a_mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - y[i] - r.d_mean, a = (x[i] + y[i]) / 2.0 - r.a_mean;
        double dx = x[i] - r.x_mean, dy = y[i] - r.y_mean;
        r.d_m2 += d * d;
        r.a_m2 += a * a;
        r.c_ad += a * d;
        r.x_m2 += dx * dx;
        r.y_m2 += dy * dy;
        r.c_xy += dx * dy;
    }
    return r;
}

static void assert_agree_matches(const space_agree *s, const direct_agree *r, size_t n)
{
    assert_int_equal(s->n, n);
    assert_rel(s->d_mean, r->d_mean, 1e-9);
    assert_rel(s->a_mean, r->a_mean, 1e-9);
    assert_rel(s->x_mean, r->x_mean, 1e-9);
    assert_rel(s->y_mean, r->y_mean, 1e-9);
    assert_true(fabs(s->d_m2 - r->d_m2) <= 1e-9 * r->d_m2);
    assert_true(fabs(s->a_m2 - r->a_m2) <= 1e-9 * r->a_m2);
    assert_true(fabs(s->x_m2 - r->x_m2) <= 1e-9 * r->x_m2);
    assert_true(fabs(s->y_m2 - r->y_m2) <= 1e-9 * r->y_m2);
    /* co-moments may be near zero: compare against the scale of their Cauchy-Schwarz bound */
    assert_true(fabs(s->c_ad - r->c_ad) <= 1e-9 * sqrt(r->a_m2 * r->d_m2));
    assert_true(fabs(s->c_xy - r->c_xy) <= 1e-9 * sqrt(r->x_m2 * r->y_m2));
}

/* Bilirubin-like pairs: reference y, meter x = y with proportional and additive error. */
static void make_pairs(double *x, double *y, size_t n, double bias)
{
    for (size_t i = 0; i < n; i++) {
        y[i] = 50.0 + 250.0 * unif();
        x[i] = y[i] * 1.05 + bias + 12.0 * gauss();
    }
}

static void test_space_agree_add_matches_two_pass(void **state)
{
    (void)state;
    enum { N = 3000 };
    static double x[N], y[N];
    make_pairs(x, y, N, 4.0);
    space_agree s = {0};
    for (size_t i = 0; i < N; i++) {
        space_agree_add(&s, x[i], y[i]);
    }
    direct_agree r = two_pass(x, y, N);
    assert_agree_matches(&s, &r, N);
}

static void test_space_agree_merge_matches_two_pass(void **state)
{
    (void)state;
    enum { N = 4000, K = 7 };
    static double x[N], y[N];
    for (int round = 0; round < 10; round++) {
        make_pairs(x, y, N, (double)round);
        size_t cut[K + 1] = {0, 10, 11, 500, 1700, 1700, 3000, N};
        space_agree part[K];
        memset(part, 0, sizeof(part));
        for (size_t k = 0; k < K; k++) {
            for (size_t i = cut[k]; i < cut[k + 1]; i++) {
                space_agree_add(&part[k], x[i], y[i]);
            }
        }
        space_agree fwd = {0}, bwd = {0};
        for (size_t k = 0; k < K; k++) {
            space_agree_merge(&fwd, &part[k]);
            space_agree_merge(&bwd, &part[K - 1 - k]);
        }
        direct_agree r = two_pass(x, y, N);
        assert_agree_matches(&fwd, &r, N);
        assert_agree_matches(&bwd, &r, N);
    }
}

static void test_space_agree_finish_methods_vector(void **state)
{
    (void)state;
    const double d[] = {1, 2, 3, 4, 2, 4, 6};
    space_agree sa = {0}, sb = {0};
    for (size_t i = 0; i < 7; i++) {
        double y = 100.0 + 10.0 * (double)i;
        space_agree_add(i < 4 ? &sa : &sb, y + d[i], y);
    }
    space_agree_merge(&sa, &sb);
    space_ba ba;
    assert_int_equal(space_agree_finish(&sa, &ba), 0);
    assert_int_equal(ba.n, 7);
    assert_rel(ba.bias, 3.1429, 1e-4);
    assert_rel(ba.sd, 1.6762, 1e-4);
    assert_rel(ba.loa[0], -0.1424, 1e-4);
    assert_rel(ba.loa[1], 6.4281, 1e-4);
    double t6 = 2.4469118511449693; /* t_{0.975,6} */
    double se_bias = ba.sd / sqrt(7.0);
    assert_rel(se_bias, 0.6335, 1e-4);
    assert_rel(ba.bias_ci[0], ba.bias - t6 * se_bias, 1e-12);
    assert_rel(ba.bias_ci[1], ba.bias + t6 * se_bias, 1e-12);
    double se_loa = ba.sd * sqrt(1.0 / 7.0 + 1.96 * 1.96 / 12.0);
    assert_rel(se_loa / (ba.sd * sqrt(3.0 / 7.0)), 1.0, 0.05); /* the sqrt(3/n) shortcut */
    assert_rel(ba.loa_lower_ci[0], ba.loa[0] - t6 * se_loa, 1e-12);
    assert_rel(ba.loa_lower_ci[1], ba.loa[0] + t6 * se_loa, 1e-12);
    assert_rel(ba.loa_upper_ci[0], ba.loa[1] - t6 * se_loa, 1e-12);
    assert_rel(ba.loa_upper_ci[1], ba.loa[1] + t6 * se_loa, 1e-12);
}

/* Regression slope, intercept, its SE and Lin's CCC against direct formulas. */
static void test_space_agree_finish_regression_and_ccc(void **state)
{
    (void)state;
    enum { N = 500 };
    static double x[N], y[N];
    make_pairs(x, y, N, -3.0);
    space_agree s = {0};
    for (size_t i = 0; i < N; i++) {
        space_agree_add(&s, x[i], y[i]);
    }
    space_ba ba;
    assert_int_equal(space_agree_finish(&s, &ba), 0);
    direct_agree r = two_pass(x, y, N);
    double slope = r.c_ad / r.a_m2;
    assert_rel(ba.slope, slope, 1e-9);
    assert_rel(ba.intercept, r.d_mean - slope * r.a_mean, 1e-9);
    double resid = 0.0;
    for (size_t i = 0; i < N; i++) {
        double a = (x[i] + y[i]) / 2.0, d = x[i] - y[i];
        double e = d - (r.d_mean - slope * r.a_mean) - slope * a;
        resid += e * e;
    }
    assert_rel(ba.slope_se, sqrt(resid / (N - 2) / r.a_m2), 1e-9);
    /* Lin: 2 s_xy / (s_x^2 + s_y^2 + (mx - my)^2) with n-denominators */
    double sxy = r.c_xy / N, sx2 = r.x_m2 / N, sy2 = r.y_m2 / N;
    double dm = r.x_mean - r.y_mean;
    assert_rel(ba.ccc, 2.0 * sxy / (sx2 + sy2 + dm * dm), 1e-9);
    assert_true(ba.ccc > 0.0 && ba.ccc < 1.0);
    assert_rel(ba.bias_ci[1] - ba.bias, space_t_quantile(0.975, N - 1) * ba.sd / sqrt(N), 1e-12);
}

static void test_space_agree_finish_small_and_degenerate(void **state)
{
    (void)state;
    space_agree s = {0};
    space_ba ba = {.n = 99};
    space_agree_add(&s, 1.0, 2.0);
    space_agree_add(&s, 2.0, 2.5);
    assert_int_equal(space_agree_finish(&s, &ba), BG_ERR_INVAL);
    assert_int_equal(ba.n, 99); /* untouched */
    /* every average equal: no regression, still a bias */
    space_agree c = {0};
    space_agree_add(&c, 1.0, 3.0);
    space_agree_add(&c, 2.0, 2.0);
    space_agree_add(&c, 3.0, 1.0);
    assert_int_equal(space_agree_finish(&c, &ba), 0);
    assert_rel(ba.bias, 0.0, 1e-15);
    assert_true(isnan(ba.slope) && isnan(ba.intercept) && isnan(ba.slope_se));
    assert_true(isfinite(ba.ccc));
}

/* ---- Student's t ------------------------------------------------------------------------- */

static void test_space_t_quantile_values(void **state)
{
    (void)state;
    /* references: mpmath, 30 digits */
    static const struct {
        double p, df, t;
    } v[] = {
        {0.975, 1, 12.706204736174693},     {0.975, 10, 2.2281388519862742},
        {0.975, 30, 2.0422724563012379},    {0.975, 1e6, 1.9599663568141067},
        {0.975, 6, 2.4469118511449693},     {0.995, 3, 5.8409093097333554},
        {0.9, 2.5, 1.7302509288071768},     {0.999, 100, 3.1737394937387827},
        {0.975, 99999, 1.9599877077718444}, {0.975, 100001, 1.9599877072973789},
        {1e-10, 3, -2225.7692846830932},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_rel(space_t_quantile(v[i].p, v[i].df) / v[i].t, 1.0, 1e-9);
    }
    assert_rel(space_t_quantile(0.975, 1e6), 1.959966, 1e-6);
}

static void test_space_t_quantile_symmetry_and_edges(void **state)
{
    (void)state;
    const double dfs[] = {0.5, 1, 2, 3, 7.5, 29, 1000, 2e5};
    const double ps[] = {1e-12, 0.001, 0.05, 0.3, 0.49};
    for (size_t i = 0; i < sizeof(dfs) / sizeof(dfs[0]); i++) {
        double prev = -INFINITY;
        for (size_t j = 0; j < sizeof(ps) / sizeof(ps[0]); j++) {
            /* p and 1 - p, both exact */
            double hi = space_t_quantile(1.0 - ps[j], dfs[i]);
            double lo = space_t_quantile(1.0 - (1.0 - ps[j]), dfs[i]);
            assert_true(lo < 0.0 && lo > prev);
            assert_rel(hi, -lo, 1e-12);
            prev = lo;
        }
    }
    assert_rel(space_t_quantile(0.5, 4), 0.0, 0);
    assert_true(isnan(space_t_quantile(0.0, 4)));
    assert_true(isnan(space_t_quantile(1.0, 4)));
    assert_true(isnan(space_t_quantile(0.5, 0.0)));
    assert_true(isnan(space_t_quantile(NAN, 4)));
    /* large df tends to the normal quantile */
    assert_rel(space_t_quantile(0.975, 1e12), 1.9599639845424261, 1e-12);
}

/* ---- grid quantiles ---------------------------------------------------------------------- */

/* One quantiles cell holding values |lo..hi| (integers) on the grid 1..1009. */
static void grid_result(space_result *r, int lo, int hi)
{
    assert_int_equal(space_result_init(r, SPACE_OP_QUANTILES, 1, 1009), 0);
    r->resolution = 1.0;
    r->grid_lo = 1.0;
    for (int v = lo; v <= hi; v++) {
        r->cells[0].bins[v - 1]++;
        r->cells[0].n++;
    }
}

static void test_space_grid_quantiles_counter_example(void **state)
{
    (void)state;
    space_result a, b;
    grid_result(&a, 1, 100);
    grid_result(&b, 1000, 1009);
    assert_int_equal(space_result_merge(&a, &b), 0);
    assert_int_equal(a.cells[0].n, 110);
    const double probs[] = {0.5, 0.25, 0.9, 0.95};
    double q[4];
    assert_int_equal(space_grid_quantiles(a.cells[0].bins, a.cells[0].nbins, a.grid_lo,
                                          a.resolution, probs, 4, q),
                     0);
    /* ceil(0.5 * 110) = 55: the 55th smallest value; the pooled median 55.5 lies between
     * the 55th and 56th, and the N-weighted mean of the site medians would be 137.2 */
    assert_rel(q[0], 55.0, 0);
    assert_true(fabs(q[0] - 137.2) > 80.0);
    assert_rel(q[1], 28.0, 0);   /* ceil(27.5) */
    assert_rel(q[2], 99.0, 0);   /* 99th */
    assert_rel(q[3], 1004.0, 0); /* ceil(104.5) = 105th: the 5th of 1000.. */
    space_result_dispose(&a);
    space_result_dispose(&b);
}

static void test_space_grid_quantiles_rounding(void **state)
{
    (void)state;
    uint64_t bins[100];
    for (size_t i = 0; i < 100; i++) {
        bins[i] = 1;
    }
    /* 0.07 * 100 is 7.000000000000001 in binary floating point; the rank is 7, not 8 */
    const double probs[] = {0.07, 0.29, 0.57, 0.071, 0.999};
    double q[5];
    assert_int_equal(space_grid_quantiles(bins, 100, 0.5, 0.1, probs, 5, q), 0);
    assert_rel(q[0], 0.5 + 6 * 0.1, 1e-15);
    assert_rel(q[1], 0.5 + 28 * 0.1, 1e-15);
    assert_rel(q[2], 0.5 + 56 * 0.1, 1e-15);
    assert_rel(q[3], 0.5 + 7 * 0.1, 1e-15); /* ceil(7.1) = 8th */
    assert_rel(q[4], 0.5 + 99 * 0.1, 1e-15);
    /* leading empty bins and a single value */
    uint64_t one[5] = {0, 0, 0, 3, 0};
    const double half = 0.5;
    assert_int_equal(space_grid_quantiles(one, 5, 10.0, 2.0, &half, 1, q), 0);
    assert_rel(q[0], 16.0, 0);
}

static void test_space_grid_quantiles_errors(void **state)
{
    (void)state;
    uint64_t zero[3] = {0, 0, 0}, some[3] = {1, 2, 3};
    double out[2] = {-1.0, -1.0};
    const double ok = 0.5;
    const double bad[][2] = {{0.5, 0.0}, {0.5, 1.0}, {0.5, NAN}, {-0.1, 0.5}};
    assert_int_equal(space_grid_quantiles(zero, 3, 0, 1, &ok, 1, out), BG_ERR_INVAL);
    assert_int_equal(space_grid_quantiles(some, 0, 0, 1, &ok, 1, out), BG_ERR_INVAL);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(space_grid_quantiles(some, 3, 0, 1, bad[i], 2, out), BG_ERR_INVAL);
    }
    assert_rel(out[0], -1.0, 0); /* untouched */
    uint64_t huge[2] = {UINT64_MAX, 1};
    assert_int_equal(space_grid_quantiles(huge, 2, 0, 1, &ok, 1, out), BG_ERR_INVAL);
}

/* ---- result merge ------------------------------------------------------------------------ */

/* A histogram result grouped by one field with cells at |keys| (ascending), 4 bins each;
 * cell values derive from the key and |salt|. */
static void hist_result(space_result *r, const uint16_t *keys, size_t n, uint64_t salt)
{
    assert_int_equal(space_result_init(r, SPACE_OP_HISTOGRAM, n, 4), 0);
    r->ngroup = 1;
    strcpy(r->group_by[0], "sex");
    r->resolution = 0.1;
    r->rows_scanned = 1000 + salt;
    for (size_t i = 0; i < n; i++) {
        space_cell *c = &r->cells[i];
        c->key[0] = keys[i];
        for (size_t j = 0; j < 4; j++) {
            c->bins[j] = keys[i] * 10 + j + salt;
            c->n += c->bins[j];
        }
        c->sum_units = (int64_t)(keys[i] + salt);
        space_moments_add(&c->mom, (double)keys[i]);
        space_moments_add(&c->mom, (double)salt);
    }
}

static void test_space_result_merge_disjoint(void **state)
{
    (void)state;
    const uint16_t ka[] = {0, 2}, kb[] = {1, 3, 7};
    space_result a, b, ref;
    hist_result(&a, ka, 2, 0);
    hist_result(&b, kb, 3, 5);
    hist_result(&ref, kb, 3, 5);
    assert_int_equal(space_result_merge(&a, &b), 0);
    assert_int_equal(a.ncells, 5);
    const uint16_t want[] = {0, 1, 2, 3, 7};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(a.cells[i].key[0], want[i]);
    }
    /* cells only in b are copies: their bins are a's own */
    assert_true(a.cells[1].bins != b.cells[0].bins);
    assert_memory_equal(a.cells[1].bins, ref.cells[0].bins, 4 * sizeof(uint64_t));
    assert_int_equal(a.cells[4].n, ref.cells[2].n);
    assert_int_equal(a.cells[2].bins[3], 23);
    assert_int_equal(a.rows_scanned, 2005);
    space_result_dispose(&b); /* a must not depend on b */
    assert_int_equal(a.cells[3].bins[0], 35);
    space_result_dispose(&a);
    space_result_dispose(&ref);
}

static void test_space_result_merge_overlapping(void **state)
{
    (void)state;
    const uint16_t ka[] = {0, 1, 3}, kb[] = {1, 2, 3};
    space_result a, b;
    hist_result(&a, ka, 3, 0);
    hist_result(&b, kb, 3, 5);
    space_moments m1 = a.cells[1].mom;
    space_moments_merge(&m1, &b.cells[0].mom);
    assert_int_equal(space_result_merge(&a, &b), 0);
    assert_int_equal(a.ncells, 4);
    const uint16_t want[] = {0, 1, 2, 3};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(a.cells[i].key[0], want[i]);
    }
    /* key 1: bins 10+j and 15+j */
    for (size_t j = 0; j < 4; j++) {
        assert_int_equal(a.cells[1].bins[j], 25 + 2 * j);
        assert_int_equal(a.cells[3].bins[j], 65 + 2 * j);
    }
    assert_int_equal(a.cells[1].n, 46 + 66);
    assert_int_equal(a.cells[1].sum_units, 1 + 6);
    assert_int_equal(a.cells[1].mom.n, 4);
    assert_rel(a.cells[1].mom.mean, m1.mean, 1e-15);
    assert_rel(a.cells[1].mom.m2, m1.m2, 1e-15);
    assert_int_equal(a.cells[2].bins[0], 25); /* only in b */
    space_result_dispose(&a);
    space_result_dispose(&b);
}

/* Merging in any order gives the same cells as merging everything directly. */
static void test_space_result_merge_order_independent(void **state)
{
    (void)state;
    enum { K = 5, N = 300 };
    space_result part[K];
    space_agree direct[3];
    memset(direct, 0, sizeof(direct));
    for (size_t k = 0; k < K; k++) {
        uint16_t keys[3];
        size_t n = 0;
        for (uint16_t g = 0; g < 3; g++) {
            if ((k + g) % 3 != 0) {
                keys[n++] = g;
            }
        }
        assert_int_equal(space_result_init(&part[k], SPACE_OP_AGREEMENT, n, 0), 0);
        part[k].ngroup = 1;
        strcpy(part[k].group_by[0], "meter");
        for (size_t i = 0; i < n; i++) {
            space_cell *c = &part[k].cells[i];
            c->key[0] = keys[i];
            for (size_t r = 0; r < N; r++) {
                double y = 100.0 + 200.0 * unif();
                double x = y + (double)keys[i] + (double)k + 5.0 * gauss();
                space_agree_add(&c->agree, x, y);
                space_agree_add(&direct[keys[i]], x, y);
            }
            c->n = c->agree.n;
        }
    }
    space_result fwd = {0}, bwd = {0};
    for (size_t k = 0; k < K; k++) {
        assert_int_equal(space_result_merge(&fwd, &part[k]), 0);
        assert_int_equal(space_result_merge(&bwd, &part[K - 1 - k]), 0);
    }
    assert_int_equal(fwd.op, SPACE_OP_AGREEMENT);
    assert_string_equal(bwd.group_by[0], "meter");
    assert_int_equal(fwd.ncells, 3);
    assert_int_equal(bwd.ncells, 3);
    for (size_t g = 0; g < 3; g++) {
        const space_agree *f = &fwd.cells[g].agree, *b = &bwd.cells[g].agree;
        assert_int_equal(fwd.cells[g].key[0], g);
        assert_int_equal(f->n, direct[g].n);
        assert_int_equal(fwd.cells[g].n, direct[g].n);
        assert_rel(f->d_mean, direct[g].d_mean, 1e-9);
        assert_rel(b->d_mean, direct[g].d_mean, 1e-9);
        assert_rel(f->d_m2, direct[g].d_m2, 1e-9);
        assert_rel(b->c_ad, direct[g].c_ad, 1e-9 * sqrt(direct[g].a_m2 * direct[g].d_m2));
        assert_rel(f->c_xy, direct[g].c_xy, 1e-9 * sqrt(direct[g].x_m2 * direct[g].y_m2));
    }
    for (size_t k = 0; k < K; k++) {
        space_result_dispose(&part[k]);
    }
    space_result_dispose(&fwd);
    space_result_dispose(&bwd);
}

static void test_space_result_merge_suppressed(void **state)
{
    (void)state;
    const uint16_t keys[] = {0, 1, 2, 3};
    space_result a, b;
    hist_result(&a, keys, 4, 0);
    hist_result(&b, keys, 4, 5);
    a.cells[0].supp = SPACE_SUPP_BELOW_K;
    b.cells[1].supp = SPACE_SUPP_COMPLEMENTARY;
    a.cells[2].supp = SPACE_SUPP_DOMINANCE;
    b.cells[2].supp = SPACE_SUPP_DIFFERENCING;
    a.cells[3].noisy = true;
    a.cells[3].noise_scale = 2.0;
    b.cells[3].noisy = false;
    b.cells[3].noise_scale = 0.0;
    b.cells[0].noisy = true;
    b.cells[0].noise_scale = 3.0;
    assert_int_equal(space_result_merge(&a, &b), 0);
    assert_int_equal(a.cells[0].supp, SPACE_SUPP_BELOW_K);
    assert_int_equal(a.cells[1].supp, SPACE_SUPP_COMPLEMENTARY);
    assert_int_equal(a.cells[2].supp, SPACE_SUPP_DOMINANCE); /* the first side's reason */
    assert_int_equal(a.cells[3].supp, SPACE_SUPP_NONE);
    for (size_t i = 0; i < 3; i++) {
        const space_cell *c = &a.cells[i];
        assert_int_equal(c->n, 0);
        assert_int_equal(c->sum_units, 0);
        assert_int_equal(c->mom.n, 0);
        assert_int_equal(c->nbins, 4);
        for (size_t j = 0; j < 4; j++) {
            assert_int_equal(c->bins[j], 0);
        }
    }
    assert_true(a.cells[0].noisy);
    assert_rel(a.cells[0].noise_scale, 3.0, 0);
    assert_true(a.cells[3].noisy);
    assert_rel(a.cells[3].noise_scale, 2.0, 0);
    assert_int_equal(a.cells[3].n, 126 + 146);
    space_result_dispose(&a);
    space_result_dispose(&b);
}

static void test_space_result_merge_bin_suppression(void **state)
{
    (void)state;
    const uint16_t keys[] = {4};
    space_result a, b;
    hist_result(&a, keys, 1, 0);
    hist_result(&b, keys, 1, 1);
    b.cells[0].bin_supp = calloc(4, 1);
    assert_non_null(b.cells[0].bin_supp);
    b.cells[0].bin_supp[2] = SPACE_SUPP_BELOW_K;
    assert_int_equal(space_result_merge(&a, &b), 0);
    assert_non_null(a.cells[0].bin_supp);
    assert_true(a.cells[0].bin_supp != b.cells[0].bin_supp);
    assert_int_equal(a.cells[0].bin_supp[2], SPACE_SUPP_BELOW_K);
    assert_int_equal(a.cells[0].bin_supp[1], SPACE_SUPP_NONE);
    assert_int_equal(a.cells[0].bins[2], 0);
    assert_int_equal(a.cells[0].bins[1], 41 + 41 + 1);
    space_result_dispose(&a);
    space_result_dispose(&b);
}

/* Every mismatch is BG_ERR_INVAL and leaves dst exactly as it was. */
static void test_space_result_merge_layout_mismatch(void **state)
{
    (void)state;
    const uint16_t keys[] = {0, 1};
    for (int v = 0; v < 11; v++) {
        space_result a, b;
        hist_result(&a, keys, 2, 0);
        hist_result(&b, keys, 2, 1);
        int want = BG_ERR_INVAL;
        switch (v) {
        case 0:
            b.op = SPACE_OP_COUNT;
            break;
        case 1:
            b.ngroup = 2;
            strcpy(b.group_by[1], "age");
            break;
        case 2:
            strcpy(b.group_by[0], "site");
            break;
        case 3:
            b.resolution = 0.5;
            break;
        case 4:
            b.grid_lo = 1.0;
            break;
        case 5:
            b.cells[1].nbins = 3;
            break;
        case 6:
            b.cells[0].key[0] = 2; /* keys {2, 1}: not ascending */
            break;
        case 7:
            a.cells[1].key[0] = 0; /* duplicate key */
            break;
        case 8:
            a.cells[0].has_qvals = true; /* final quantiles cannot merge */
            break;
        case 9:
            a.cells[1].sum_units = INT64_MAX;
            want = BG_ERR_RANGE;
            break;
        case 10:
            a.ngroup = b.ngroup = 3;
            break;
        }
        space_cell *cells = a.cells;
        space_cell c0 = a.cells[0];
        size_t ncells = a.ncells;
        uint64_t rows = a.rows_scanned, bin0 = a.cells[0].bins[0];
        assert_int_equal(space_result_merge(&a, &b), want);
        assert_ptr_equal(a.cells, cells);
        assert_int_equal(a.ncells, ncells);
        assert_int_equal(a.rows_scanned, rows);
        assert_memory_equal(&a.cells[0], &c0, sizeof(c0));
        assert_int_equal(a.cells[0].bins[0], bin0);
        b.cells[1].nbins = 4;
        a.ngroup = b.ngroup = 1;
        space_result_dispose(&a);
        space_result_dispose(&b);
    }
}

static void test_space_result_merge_too_many_cells(void **state)
{
    (void)state;
    space_result a, b;
    assert_int_equal(space_result_init(&a, SPACE_OP_COUNT, SPACE_MAX_CELLS, 0), 0);
    assert_int_equal(space_result_init(&b, SPACE_OP_COUNT, 1, 0), 0);
    a.ngroup = b.ngroup = 2;
    for (size_t i = 0; i < SPACE_MAX_CELLS; i++) {
        a.cells[i].key[0] = (uint16_t)(i / 64);
        a.cells[i].key[1] = (uint16_t)(i % 64);
    }
    b.cells[0].key[0] = 9999;
    assert_int_equal(space_result_merge(&a, &b), BG_ERR_RANGE);
    b.cells[0].key[0] = 3; /* overlapping: fine */
    b.cells[0].key[1] = 5;
    b.cells[0].n = 7;
    assert_int_equal(space_result_merge(&a, &b), 0);
    assert_int_equal(a.ncells, SPACE_MAX_CELLS);
    assert_int_equal(a.cells[3 * 64 + 5].n, 7);
    space_result_dispose(&a);
    space_result_dispose(&b);
}

/* Every allocation of a merge fails in turn: a clean BG_ERR_NOMEM, dst untouched, no leak
 * (the sanitizer build checks the last part). */
static void test_space_result_merge_alloc_failure(void **state)
{
    (void)state;
    const uint16_t ka[] = {0, 2}, kb[] = {1, 2, 3};
    for (long n = 0;; n++) {
        space_result a, b;
        hist_result(&a, ka, 2, 0);
        hist_result(&b, kb, 3, 1);
        b.cells[1].bin_supp = calloc(4, 1);
        b.cells[2].bin_supp = calloc(4, 1);
        assert_non_null(b.cells[2].bin_supp);
        space_cell *cells = a.cells;
        alloc_left = n;
        int rc = space_result_merge(&a, &b);
        alloc_left = -1;
        if (rc == 0) {
            assert_true(n >= 5);
            assert_int_equal(a.ncells, 4);
            space_result_dispose(&a);
            space_result_dispose(&b);
            break;
        }
        assert_int_equal(rc, BG_ERR_NOMEM);
        assert_ptr_equal(a.cells, cells);
        assert_int_equal(a.ncells, 2);
        assert_null(a.cells[1].bin_supp);
        space_result_dispose(&a);
        space_result_dispose(&b);
    }
}

/* ---- heterogeneity ----------------------------------------------------------------------- */

static void test_space_agree_heterogeneity_direct(void **state)
{
    (void)state;
    enum { K = 4 };
    const size_t n[K] = {40, 120, 75, 300};
    const double bias[K] = {2.0, 5.0, -1.0, 3.0};
    space_agree s[K + 1];
    memset(s, 0, sizeof(s));
    for (size_t k = 0; k < K; k++) {
        for (size_t i = 0; i < n[k]; i++) {
            double y = 100.0 + 100.0 * unif();
            space_agree_add(&s[k], y + bias[k] + (1.0 + (double)k) * gauss(), y);
        }
    }
    space_agree_add(&s[K], 1.0, 1.0); /* n = 1: skipped */
    space_het h;
    assert_int_equal(space_agree_heterogeneity(s, K + 1, &h), 0);
    assert_int_equal(h.k, K);
    double w[K], sw = 0, sw2 = 0, swd = 0, m2 = 0, dof = 0;
    for (size_t k = 0; k < K; k++) {
        double sd2 = s[k].d_m2 / (double)(n[k] - 1);
        w[k] = 1.0 / (sd2 / (double)n[k]);
        sw += w[k];
        sw2 += w[k] * w[k];
        swd += w[k] * s[k].d_mean;
        m2 += s[k].d_m2;
        dof += (double)(n[k] - 1);
    }
    double dw = swd / sw, q = 0;
    for (size_t k = 0; k < K; k++) {
        q += w[k] * (s[k].d_mean - dw) * (s[k].d_mean - dw);
    }
    double tau2 = fmax(0.0, (q - (K - 1)) / (sw - sw2 / sw));
    double swr = 0, swrd = 0;
    for (size_t k = 0; k < K; k++) {
        double wr = 1.0 / (1.0 / w[k] + tau2);
        swr += wr;
        swrd += wr * s[k].d_mean;
    }
    assert_rel(h.q, q, 1e-12);
    assert_rel(h.i2, fmax(0.0, (q - (K - 1)) / q), 1e-12);
    assert_true(h.i2 > 0.5); /* biases differ by several SEs */
    assert_rel(h.tau2, tau2, 1e-12);
    assert_rel(h.re_bias, swrd / swr, 1e-12);
    assert_rel(h.re_bias_se, sqrt(1.0 / swr), 1e-12);
    assert_rel(h.s_within, sqrt(m2 / dof), 1e-12);
    assert_rel(h.s_total, sqrt(m2 / dof + tau2), 1e-12);
}

static void test_space_agree_heterogeneity_homogeneous_and_empty(void **state)
{
    (void)state;
    space_agree s[2];
    memset(s, 0, sizeof(s));
    const double d[] = {1, 2, 3, 4};
    for (size_t i = 0; i < 4; i++) {
        space_agree_add(&s[0], 10.0 + d[i], 10.0);
        space_agree_add(&s[1], 20.0 + d[i], 20.0);
    }
    space_het h;
    assert_int_equal(space_agree_heterogeneity(s, 2, &h), 0);
    assert_int_equal(h.k, 2);
    assert_rel(h.q, 0.0, 1e-15);
    assert_rel(h.i2, 0.0, 0);
    assert_rel(h.tau2, 0.0, 0);
    assert_rel(h.re_bias, 2.5, 1e-15);
    assert_rel(h.s_within, sqrt(5.0 / 3.0), 1e-15);
    assert_rel(h.s_total, h.s_within, 0);
    /* one site: Q = 0, tau2 = 0 */
    assert_int_equal(space_agree_heterogeneity(s, 1, &h), 0);
    assert_int_equal(h.k, 1);
    assert_rel(h.re_bias_se, sqrt((5.0 / 3.0) / 4.0), 1e-15);
    /* no usable site */
    space_het untouched = {.k = 77};
    space_agree tiny = {0};
    space_agree_add(&tiny, 1.0, 0.0);
    assert_int_equal(space_agree_heterogeneity(&tiny, 1, &untouched), BG_ERR_INVAL);
    assert_int_equal(space_agree_heterogeneity(NULL, 0, &untouched), BG_ERR_INVAL);
    assert_int_equal(untouched.k, 77);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_moments_merge_methods_vector),
        cmocka_unit_test(test_space_moments_merge_empty),
        cmocka_unit_test(test_space_moments_merge_order_independent),
        cmocka_unit_test(test_space_agree_add_matches_two_pass),
        cmocka_unit_test(test_space_agree_merge_matches_two_pass),
        cmocka_unit_test(test_space_agree_finish_methods_vector),
        cmocka_unit_test(test_space_agree_finish_regression_and_ccc),
        cmocka_unit_test(test_space_agree_finish_small_and_degenerate),
        cmocka_unit_test(test_space_t_quantile_values),
        cmocka_unit_test(test_space_t_quantile_symmetry_and_edges),
        cmocka_unit_test(test_space_grid_quantiles_counter_example),
        cmocka_unit_test(test_space_grid_quantiles_rounding),
        cmocka_unit_test(test_space_grid_quantiles_errors),
        cmocka_unit_test(test_space_result_merge_disjoint),
        cmocka_unit_test(test_space_result_merge_overlapping),
        cmocka_unit_test(test_space_result_merge_order_independent),
        cmocka_unit_test(test_space_result_merge_suppressed),
        cmocka_unit_test(test_space_result_merge_bin_suppression),
        cmocka_unit_test(test_space_result_merge_layout_mismatch),
        cmocka_unit_test(test_space_result_merge_too_many_cells),
        cmocka_unit_test(test_space_result_merge_alloc_failure),
        cmocka_unit_test(test_space_agree_heterogeneity_direct),
        cmocka_unit_test(test_space_agree_heterogeneity_homogeneous_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
