/* space/agg.c: exact accumulation and merging of aggregate states (../shared/METHODS.md
 * sections 3-5), quantiles from fine-grid counts, Student's t quantiles, and the Bland-Altman,
 * Lin and heterogeneity figures. No I/O and no globals; every function is safe on any thread.
 * Not for: what may be released (trust/disclosure.c) or how states travel (space/wire.c). */
#include "space/agg.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- moments ---------------------------------------------------------------------------- */

void space_moments_add(space_moments *m, double x)
{
    /* Welford: the update form of the Chan merge with nB = 1, numerically stable. */
    m->n++;
    double delta = x - m->mean;
    m->mean += delta / (double)m->n;
    m->m2 += delta * (x - m->mean);
}

void space_moments_merge(space_moments *a, const space_moments *b)
{
    if (b->n == 0) {
        return;
    }
    if (a->n == 0) {
        *a = *b;
        return;
    }
    double na = (double)a->n;
    double nb = (double)b->n;
    double n = na + nb;
    double delta = b->mean - a->mean;
    a->mean += delta * nb / n;
    a->m2 += b->m2 + delta * delta * na * nb / n;
    a->n += b->n;
}

double space_moments_variance(const space_moments *m)
{
    if (m->n < 2) {
        return 0.0;
    }
    return m->m2 / (double)(m->n - 1);
}

/* ---- agreement states ------------------------------------------------------------------- */

void space_agree_add(space_agree *s, double x, double y)
{
    double d = x - y;
    double a = (x + y) / 2.0;
    s->n++;
    double n = (double)s->n;
    /* Co-moments use the old mean of one variable and the new mean of the other (the Chan
     * merge with nB = 1: C += dx * dy * (n-1)/n). */
    double da = a - s->a_mean;
    double dd = d - s->d_mean;
    double dx = x - s->x_mean;
    double dy = y - s->y_mean;
    s->a_mean += da / n;
    s->d_mean += dd / n;
    s->x_mean += dx / n;
    s->y_mean += dy / n;
    s->a_m2 += da * (a - s->a_mean);
    s->d_m2 += dd * (d - s->d_mean);
    s->x_m2 += dx * (x - s->x_mean);
    s->y_m2 += dy * (y - s->y_mean);
    s->c_ad += da * (d - s->d_mean);
    s->c_xy += dx * (y - s->y_mean);
}

void space_agree_merge(space_agree *a, const space_agree *b)
{
    if (b->n == 0) {
        return;
    }
    if (a->n == 0) {
        *a = *b;
        return;
    }
    double na = (double)a->n;
    double nb = (double)b->n;
    double n = na + nb;
    double f = na * nb / n;
    double dd = b->d_mean - a->d_mean;
    double da = b->a_mean - a->a_mean;
    double dx = b->x_mean - a->x_mean;
    double dy = b->y_mean - a->y_mean;
    a->d_mean += dd * nb / n;
    a->a_mean += da * nb / n;
    a->x_mean += dx * nb / n;
    a->y_mean += dy * nb / n;
    a->d_m2 += b->d_m2 + dd * dd * f;
    a->a_m2 += b->a_m2 + da * da * f;
    a->x_m2 += b->x_m2 + dx * dx * f;
    a->y_m2 += b->y_m2 + dy * dy * f;
    a->c_ad += b->c_ad + da * dd * f;
    a->c_xy += b->c_xy + dx * dy * f;
    a->n += b->n;
}

/* ---- merging results -------------------------------------------------------------------- */

static int key_cmp(const space_cell *a, const space_cell *b, size_t ngroup)
{
    for (size_t g = 0; g < ngroup; g++) {
        if (a->key[g] != b->key[g]) {
            return a->key[g] < b->key[g] ? -1 : 1;
        }
    }
    return 0;
}

static bool keys_ascending(const space_result *r)
{
    for (size_t i = 1; i < r->ncells; i++) {
        if (key_cmp(&r->cells[i - 1], &r->cells[i], r->ngroup) >= 0) {
            return false;
        }
    }
    return true;
}

static bool layout_equal(const space_result *a, const space_result *b)
{
    if (a->op != b->op || a->ngroup != b->ngroup || a->ngroup > SPACE_MAX_GROUP_BY) {
        return false;
    }
    /* Both come from the same schema field, so equal layouts have bit-equal doubles. */
    if (!(a->resolution == b->resolution) || !(a->grid_lo == b->grid_lo)) {
        return false;
    }
    for (size_t g = 0; g < a->ngroup; g++) {
        if (strncmp(a->group_by[g], b->group_by[g], SPACE_NAME_MAX) != 0) {
            return false;
        }
    }
    return true;
}

/* Whether matched cells |d| and |s| can merge: same bin count, no final quantiles (they
 * cannot be combined exactly), and an exact sum that does not overflow. */
static int cells_mergeable(const space_cell *d, const space_cell *s)
{
    if (d->nbins != s->nbins || (d->nbins > 0 && (d->bins == NULL || s->bins == NULL))) {
        return BG_ERR_INVAL;
    }
    if (d->has_qvals || s->has_qvals) {
        return BG_ERR_INVAL;
    }
    int64_t sum;
    if (d->supp == SPACE_SUPP_NONE && s->supp == SPACE_SUPP_NONE &&
        __builtin_add_overflow(d->sum_units, s->sum_units, &sum)) {
        return BG_ERR_RANGE;
    }
    return 0;
}

/* Deep copy of |s|'s bins and per-bin suppression into |o| (a shallow copy of |s|). */
static int cell_copy_arrays(space_cell *o, const space_cell *s)
{
    o->bins = NULL;
    o->bin_supp = NULL;
    if (s->nbins == 0) {
        o->nbins = 0;
        return 0;
    }
    o->bins = malloc(s->nbins * sizeof(uint64_t));
    if (o->bins == NULL) {
        return BG_ERR_NOMEM;
    }
    memcpy(o->bins, s->bins, s->nbins * sizeof(uint64_t));
    if (s->bin_supp != NULL) {
        o->bin_supp = malloc(s->nbins);
        if (o->bin_supp == NULL) {
            free(o->bins);
            o->bins = NULL;
            return BG_ERR_NOMEM;
        }
        memcpy(o->bin_supp, s->bin_supp, s->nbins);
    }
    return 0;
}

static void cell_zero_values(space_cell *o)
{
    o->n = 0;
    o->sum_units = 0;
    memset(&o->mom, 0, sizeof(o->mom));
    memset(&o->agree, 0, sizeof(o->agree));
    if (o->bins != NULL) {
        memset(o->bins, 0, o->nbins * sizeof(uint64_t));
    }
    memset(o->qvals, 0, sizeof(o->qvals));
    o->has_qvals = false;
}

/* o := o (+) s for matched cells already checked by cells_mergeable(); o->bin_supp is
 * allocated when s has one. Never fails. */
static void cell_merge(space_cell *o, const space_cell *s)
{
    /* Counts and bins add modulo 2^64 (unsigned arithmetic): plain counts never get near it,
     * and grids under secure aggregation carry pairwise additive masks mod 2^64 that cancel
     * only if the sum wraps. */
    o->n += s->n;
    for (size_t j = 0; j < o->nbins; j++) {
        o->bins[j] += s->bins[j];
    }
    if (s->bin_supp != NULL) {
        assert(o->bin_supp != NULL);
        for (size_t j = 0; j < o->nbins; j++) {
            if (o->bin_supp[j] == SPACE_SUPP_NONE) {
                o->bin_supp[j] = s->bin_supp[j];
            }
        }
    }
    if (o->bin_supp != NULL) {
        for (size_t j = 0; j < o->nbins; j++) {
            if (o->bin_supp[j] != SPACE_SUPP_NONE) {
                o->bins[j] = 0;
            }
        }
    }
    space_moments_merge(&o->mom, &s->mom);
    space_agree_merge(&o->agree, &s->agree);
    /* Noise: the merged value carries the noise of both sides. Their variances add (2b^2
     * each), but a cell records a single scale, so we keep the larger one: a lower bound on
     * the merged noise, never an overstatement of the protection. */
    o->noisy = o->noisy || s->noisy;
    if (s->noise_scale > o->noise_scale) {
        o->noise_scale = s->noise_scale;
    }
    if (o->supp != SPACE_SUPP_NONE || s->supp != SPACE_SUPP_NONE) {
        /* A suppressed part makes the pooled value disclosive by difference (the other side's
         * value is known to its provider), so the merged cell is suppressed too. */
        if (o->supp == SPACE_SUPP_NONE) {
            o->supp = s->supp;
        }
        cell_zero_values(o);
        return;
    }
    o->sum_units += s->sum_units; /* checked by cells_mergeable() */
}

/* A zeroed result (op 0, no cells) is the identity of the merge: it takes |src|'s layout. */
static bool is_empty_result(const space_result *r)
{
    return r->op == 0 && r->ncells == 0;
}

int space_result_merge(space_result *dst, const space_result *src)
{
    const bool adopt = is_empty_result(dst);
    if (!adopt && !layout_equal(dst, src)) {
        return BG_ERR_INVAL;
    }
    if (src->ngroup > SPACE_MAX_GROUP_BY || !keys_ascending(dst) || !keys_ascending(src)) {
        return BG_ERR_INVAL;
    }
    /* Pass 1: check every matched cell and count the new ones; dst is untouched. */
    size_t i = 0, j = 0, total = 0;
    int rc;
    while (i < dst->ncells || j < src->ncells) {
        int c = i == dst->ncells   ? 1
                : j == src->ncells ? -1
                                   : key_cmp(&dst->cells[i], &src->cells[j], src->ngroup);
        if (c == 0 && (rc = cells_mergeable(&dst->cells[i], &src->cells[j])) != 0) {
            return rc;
        }
        if (c > 0 && src->cells[j].nbins > 0 && src->cells[j].bins == NULL) {
            return BG_ERR_INVAL;
        }
        i += c <= 0 ? 1 : 0;
        j += c >= 0 ? 1 : 0;
        total++;
    }
    if (total > SPACE_MAX_CELLS) {
        return BG_ERR_RANGE;
    }
    /* Pass 2: allocate everything the merge needs; on failure free what was made here. */
    space_cell *cells = NULL;
    uint8_t *fresh = NULL; /* 1: bins/bin_supp copied from src; 2: bin_supp made here */
    if (total > 0) {
        cells = calloc(total, sizeof(*cells));
        fresh = calloc(total, 1);
        if (cells == NULL || fresh == NULL) {
            free(cells);
            free(fresh);
            return BG_ERR_NOMEM;
        }
    }
    i = j = 0;
    size_t k = 0;
    rc = 0;
    while (rc == 0 && (i < dst->ncells || j < src->ncells)) {
        int c = i == dst->ncells   ? 1
                : j == src->ncells ? -1
                                   : key_cmp(&dst->cells[i], &src->cells[j], src->ngroup);
        if (c > 0) {
            cells[k] = src->cells[j];
            rc = cell_copy_arrays(&cells[k], &src->cells[j]);
            fresh[k] = rc == 0 ? 1 : 0;
        } else {
            cells[k] = dst->cells[i];
            if (c == 0 && src->cells[j].bin_supp != NULL && cells[k].bin_supp == NULL &&
                cells[k].nbins > 0) {
                cells[k].bin_supp = calloc(cells[k].nbins, 1);
                rc = cells[k].bin_supp != NULL ? 0 : BG_ERR_NOMEM;
                fresh[k] = rc == 0 ? 2 : 0;
            }
        }
        i += c <= 0 ? 1 : 0;
        j += c >= 0 ? 1 : 0;
        k++;
    }
    if (rc != 0) {
        for (size_t m = 0; m < k; m++) {
            if (fresh[m] == 1) {
                free(cells[m].bins);
            }
            if (fresh[m] != 0) {
                free(cells[m].bin_supp);
            }
        }
        free(cells);
        free(fresh);
        return rc;
    }
    assert(k == total);
    /* Pass 3: merge matched cells; cannot fail. dst's bins move into the new array. */
    i = j = k = 0;
    while (i < dst->ncells || j < src->ncells) {
        int c = i == dst->ncells   ? 1
                : j == src->ncells ? -1
                                   : key_cmp(&dst->cells[i], &src->cells[j], src->ngroup);
        if (c == 0) {
            cell_merge(&cells[k], &src->cells[j]);
        }
        i += c <= 0 ? 1 : 0;
        j += c >= 0 ? 1 : 0;
        k++;
    }
    free(fresh);
    free(dst->cells);
    dst->cells = cells;
    dst->ncells = total;
    if (adopt) {
        dst->op = src->op;
        dst->resolution = src->resolution;
        dst->grid_lo = src->grid_lo;
        dst->ngroup = src->ngroup;
        memcpy(dst->group_by, src->group_by, sizeof(dst->group_by));
    }
    dst->rows_scanned += src->rows_scanned;
    return 0;
}

/* ---- quantiles -------------------------------------------------------------------------- */

/* ceil(p * n) as an integer in [1, n]. p * n is rounded in double arithmetic, so a product
 * that should be an integer (0.5 * 110 = 55) may come out as 55.000000000000007 and a naive
 * ceil() would move the quantile one grid step up; products within 1e-9 (relative for big
 * n) of an integer are taken as that integer. */
static uint64_t rank_for(double p, uint64_t n)
{
    double x = p * (double)n;
    double r = nearbyint(x);
    double tol = 1e-9 * (x > 1.0 ? x : 1.0);
    double c = fabs(x - r) <= tol ? r : ceil(x);
    if (!(c >= 1.0)) {
        return 1;
    }
    if (c >= (double)n) {
        return n;
    }
    return (uint64_t)c;
}

int space_grid_quantiles(const uint64_t *bins, size_t nbins, double lo, double res,
                         const double *probs, size_t nprobs, double *out)
{
    uint64_t n = 0;
    for (size_t i = 0; i < nbins; i++) {
        if (__builtin_add_overflow(n, bins[i], &n)) {
            return BG_ERR_INVAL;
        }
    }
    if (n == 0) {
        return BG_ERR_INVAL;
    }
    for (size_t k = 0; k < nprobs; k++) {
        if (!(probs[k] > 0.0 && probs[k] < 1.0)) {
            return BG_ERR_INVAL;
        }
    }
    for (size_t k = 0; k < nprobs; k++) {
        uint64_t want = rank_for(probs[k], n);
        uint64_t cum = 0;
        size_t i = 0;
        for (; i < nbins; i++) {
            cum += bins[i];
            if (cum >= want) {
                break;
            }
        }
        assert(i < nbins);
        out[k] = lo + (double)i * res;
    }
    return 0;
}

/* ---- Student's t quantile --------------------------------------------------------------- */

#ifndef T_EXPAND_DF
#define T_EXPAND_DF 1e5 /* above: Cornish-Fisher expansion; below: incomplete beta */
#endif

/* ln Gamma(a + 1/2) - ln Gamma(a). For large a the two lgamma() values are huge and nearly
 * equal, so their difference loses digits (about 1e-9 at a = 5e5); there we use the
 * difference of the Stirling series instead, exact to double precision for a >= 50. */
static double stirling_tail(double x)
{
    double x2 = 1.0 / (x * x);
    return (1.0 / 12.0 - x2 * (1.0 / 360.0 - x2 * (1.0 / 1260.0 - x2 * (1.0 / 1680.0)))) / x;
}

static double lgamma_half_diff(double a)
{
    if (a < 50.0) {
        return lgamma(a + 0.5) - lgamma(a);
    }
    return a * log1p(0.5 / a) - 0.5 + 0.5 * log(a) + (stirling_tail(a + 0.5) - stirling_tail(a));
}

/* Continued fraction of the regularized incomplete beta function (modified Lentz), valid for
 * x < (a+1)/(a+b+2); converges in O(sqrt(max(a, b))) terms. */
static double beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0;
    double d = 1.0 - qab * x / qap;
    if (fabs(d) < tiny) {
        d = tiny;
    }
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 200000; m++) {
        double dm = (double)m, m2 = 2.0 * dm;
        double aa = dm * (b - dm) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = fabs(d) < tiny ? tiny : d;
        c = 1.0 + aa / c;
        c = fabs(c) < tiny ? tiny : c;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + dm) * (qab + dm) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = fabs(d) < tiny ? tiny : d;
        c = 1.0 + aa / c;
        c = fabs(c) < tiny ? tiny : c;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-16) {
            break;
        }
    }
    return h;
}

/* ln x and ln(1-x) for x = 1/(1+r^2), r = t/sqrt(df), without overflow for huge r. */
static void t_logs(double r, double *x, double *y, double *lx, double *ly)
{
    if (r < 1e100) {
        double r2 = r * r;
        *x = 1.0 / (1.0 + r2);
        *y = r2 / (1.0 + r2);
        *lx = -log1p(r2);
        *ly = r2 > 0.0 ? -log1p(1.0 / r2) : -INFINITY;
    } else {
        *lx = -2.0 * log(r);
        *ly = 0.0;
        *x = exp(*lx);
        *y = 1.0;
    }
}

/* P(T > t) for t >= 0: I_x(df/2, 1/2) / 2 with x = df/(df+t^2). */
static double t_upper(double t, double df)
{
    double a = df / 2.0, x, y, lx, ly;
    t_logs(t / sqrt(df), &x, &y, &lx, &ly);
    double lbeta = 0.5 * log(M_PI) - lgamma_half_diff(a);
    double front = exp(a * lx + 0.5 * ly - lbeta);
    if (x < (a + 1.0) / (a + 2.5)) {
        return 0.5 * front * beta_cf(a, 0.5, x) / a;
    }
    return 0.5 * (1.0 - front * beta_cf(0.5, a, y) / 0.5);
}

/* The density of t with |df| degrees of freedom. */
static double t_pdf(double t, double df)
{
    double r = fabs(t) / sqrt(df);
    double l1p = r < 1e100 ? log1p(r * r) : 2.0 * log(r);
    return exp(lgamma_half_diff(df / 2.0) - 0.5 * log(df * M_PI) - (df + 1.0) / 2.0 * l1p);
}

/* A rough upper-tail normal quantile (Abramowitz & Stegun 26.2.23, |error| < 4.5e-4), only
 * a starting point for the t iteration. */
static double z_rough(double q)
{
    double t = sqrt(-2.0 * log(q));
    return t - (2.515517 + t * (0.802853 + t * 0.010328)) /
                   (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308)));
}

/* t > 0 with P(T > t) = q, q in (0, 0.5): Newton steps on ln P(T > t), which stays well
 * scaled deep in the tail, kept inside a bracket and replaced by bisection whenever a step
 * would leave it. */
static double t_solve(double q, double df)
{
    double z = z_rough(q);
    double guess = z + (z * z * z + z) / (4.0 * df);
    double lo = 0.0, hi = guess > 1.0 ? 2.0 * guess : 2.0;
    while (t_upper(hi, df) > q) {
        lo = hi;
        hi *= 4.0;
        if (hi > 1e300) {
            return INFINITY;
        }
    }
    double t = guess > lo && guess < hi ? guess : (lo + hi) / 2.0;
    double lq = log(q);
    for (int it = 0; it < 400; it++) {
        double up = t_upper(t, df);
        double g = log(up) - lq;
        if (g > 0.0) {
            lo = t;
        } else {
            hi = t;
        }
        double pdf = t_pdf(t, df);
        double next = pdf > 0.0 && up > 0.0 ? t + g * up / pdf : (lo + hi) / 2.0;
        if (!(next > lo && next < hi)) {
            next = (lo + hi) / 2.0;
        }
        if (fabs(next - t) <= 1e-15 * t || hi - lo <= 1e-15 * hi) {
            return next;
        }
        t = next;
    }
    return t;
}

/* The upper-tail normal quantile: z_rough() refined by Newton steps on ln Q(z). */
static double z_upper(double q)
{
    double z = z_rough(q);
    double lq = log(q);
    for (int it = 0; it < 8; it++) {
        double up = 0.5 * erfc(z / M_SQRT2);
        if (!(up > 0.0)) {
            break;
        }
        double pdf = exp(-0.5 * z * z) / sqrt(2.0 * M_PI);
        double step = (log(up) - lq) * up / pdf;
        z += step;
        if (fabs(step) <= 1e-16 * fabs(z)) {
            break;
        }
    }
    return z;
}

/* For large df the continued fraction needs O(sqrt(df)) terms and drifts; the Cornish-Fisher
 * expansion of t around the normal quantile (Abramowitz & Stegun 26.7.5) is exact to double
 * precision there, its next term being of order z^11 / df^5. */
static double t_expand(double q, double df)
{
    double z = z_upper(q);
    double z2 = z * z;
    double g1 = z * (z2 + 1.0) / 4.0;
    double g2 = z * ((5.0 * z2 + 16.0) * z2 + 3.0) / 96.0;
    double g3 = z * (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) / 384.0;
    double g4 = z * ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) / 92160.0;
    return z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df;
}

double space_t_quantile(double p, double df)
{
    if (!(p > 0.0 && p < 1.0) || !(df > 0.0)) {
        return NAN;
    }
    if (p == 0.5) {
        return 0.0;
    }
    /* The upper tail; 1 - p is exact for p >= 0.5 (Sterbenz). */
    double q = p < 0.5 ? p : 1.0 - p;
    double t;
    if (df == 1.0) {
        t = 1.0 / tan(M_PI * q); /* Cauchy */
    } else if (df == 2.0) {
        t = (1.0 - 2.0 * q) / sqrt(2.0 * q * (1.0 - q));
    } else if (df > T_EXPAND_DF) {
        t = t_expand(q, df);
    } else {
        t = t_solve(q, df);
    }
    return p < 0.5 ? -t : t;
}

/* ---- Bland-Altman ----------------------------------------------------------------------- */

int space_agree_finish(const space_agree *s, space_ba *out)
{
    if (s->n < 3) {
        return BG_ERR_INVAL;
    }
    double n = (double)s->n;
    double sd = sqrt((s->d_m2 > 0.0 ? s->d_m2 : 0.0) / (n - 1.0));
    double t = space_t_quantile(0.975, n - 1.0);
    double se_bias = sd / sqrt(n);
    double se_loa = sd * sqrt(1.0 / n + 1.96 * 1.96 / (2.0 * (n - 1.0)));
    space_ba ba;
    memset(&ba, 0, sizeof(ba));
    ba.n = s->n;
    ba.bias = s->d_mean;
    ba.bias_ci[0] = ba.bias - t * se_bias;
    ba.bias_ci[1] = ba.bias + t * se_bias;
    ba.sd = sd;
    ba.loa[0] = ba.bias - 1.96 * sd;
    ba.loa[1] = ba.bias + 1.96 * sd;
    ba.loa_lower_ci[0] = ba.loa[0] - t * se_loa;
    ba.loa_lower_ci[1] = ba.loa[0] + t * se_loa;
    ba.loa_upper_ci[0] = ba.loa[1] - t * se_loa;
    ba.loa_upper_ci[1] = ba.loa[1] + t * se_loa;
    /* Proportional bias and concordance are undefined (NaN) when their denominators vanish:
     * all averages equal, or both methods constant and equal. */
    if (s->a_m2 > 0.0) {
        ba.slope = s->c_ad / s->a_m2;
        ba.intercept = s->d_mean - ba.slope * s->a_mean;
        double resid = s->d_m2 - s->c_ad * s->c_ad / s->a_m2;
        ba.slope_se = sqrt((resid > 0.0 ? resid : 0.0) / ((n - 2.0) * s->a_m2));
    } else {
        ba.slope = ba.intercept = ba.slope_se = NAN;
    }
    double dm = s->x_mean - s->y_mean;
    double den = s->x_m2 + s->y_m2 + n * dm * dm;
    ba.ccc = den > 0.0 ? 2.0 * s->c_xy / den : NAN;
    *out = ba;
    return 0;
}

int space_agree_heterogeneity(const space_agree *sites, size_t nsites, space_het *out)
{
    /* Sites need n >= 2 and a non-zero SD of differences: a site with s_d = 0 would get an
     * infinite inverse-variance weight and swamp every other site. */
    double sw = 0.0, sw2 = 0.0, swd = 0.0, m2_within = 0.0, dof_within = 0.0;
    size_t k = 0;
    for (size_t i = 0; i < nsites; i++) {
        const space_agree *s = &sites[i];
        if (s->n < 2 || !(s->d_m2 > 0.0)) {
            continue;
        }
        double n = (double)s->n;
        double w = n / (s->d_m2 / (n - 1.0)); /* 1 / SE_k^2 = n_k / s_dk^2 */
        sw += w;
        sw2 += w * w;
        swd += w * s->d_mean;
        m2_within += s->d_m2;
        dof_within += n - 1.0;
        k++;
    }
    if (k == 0) {
        return BG_ERR_INVAL;
    }
    double dw = swd / sw;
    double q = 0.0;
    for (size_t i = 0; i < nsites; i++) {
        const space_agree *s = &sites[i];
        if (s->n < 2 || !(s->d_m2 > 0.0)) {
            continue;
        }
        double n = (double)s->n;
        double w = n / (s->d_m2 / (n - 1.0));
        q += w * (s->d_mean - dw) * (s->d_mean - dw);
    }
    space_het h;
    memset(&h, 0, sizeof(h));
    h.k = k;
    h.q = q;
    double df = (double)(k - 1);
    h.i2 = q > 0.0 && q > df ? (q - df) / q : 0.0;
    double cden = sw - sw2 / sw;
    h.tau2 = k > 1 && cden > 0.0 && q > df ? (q - df) / cden : 0.0;
    double swr = 0.0, swrd = 0.0;
    for (size_t i = 0; i < nsites; i++) {
        const space_agree *s = &sites[i];
        if (s->n < 2 || !(s->d_m2 > 0.0)) {
            continue;
        }
        double n = (double)s->n;
        double wr = 1.0 / (s->d_m2 / (n - 1.0) / n + h.tau2);
        swr += wr;
        swrd += wr * s->d_mean;
    }
    h.re_bias = swrd / swr;
    h.re_bias_se = sqrt(1.0 / swr);
    /* Pooled within-site SD: sum of the sites' M2 over sum of (n_k - 1), i.e. the merged
     * state's M2 without its between-site term, so tau^2 is not counted twice in s_total. */
    h.s_within = sqrt(m2_within / dof_within);
    h.s_total = sqrt(h.s_within * h.s_within + h.tau2);
    *out = h;
    return 0;
}
