/* space/agg.h: building and merging aggregate states exactly (../shared/METHODS.md sections
 * 3-5): Welford accumulation per row, Chan et al. pairwise merge of moments and co-moments,
 * exact sums and bins, quantiles from merged fine-grid counts, and the Bland-Altman, Lin and
 * heterogeneity figures computed from merged sufficient statistics. Pure functions, any thread.
 * Not for: deciding what may be released (trust/disclosure.h). */
#ifndef SPACE_AGG_H
#define SPACE_AGG_H
#include <stddef.h>
#include <stdint.h>

#include "space/space.h"

/* Adds one value (Welford). */
void space_moments_add(space_moments *m, double x);
/* a := a (+) b by the Chan formula; b may be empty. Order-independent up to rounding. */
void space_moments_merge(space_moments *a, const space_moments *b);
/* Sample variance M2/(n-1); 0 when n < 2. */
double space_moments_variance(const space_moments *m);

/* Adds one pair (x = method under test, y = reference). */
void space_agree_add(space_agree *s, double x, double y);
/* a := a (+) b (Chan merge of every mean, M2 and co-moment). */
void space_agree_merge(space_agree *a, const space_agree *b);

/* Merges |src| into |dst| cell by cell, matching cells by key (cells only in |src| are added,
 * keeping keys ascending). Both must have the same op, group_by and bin counts. Suppressed
 * cells of either side make the merged cell suppressed (the reason of the first). Returns 0,
 * BG_ERR_INVAL on a layout mismatch, BG_ERR_NOMEM, BG_ERR_RANGE (too many cells). */
int space_result_merge(space_result *dst, const space_result *src);

/* Quantiles from fine-grid counts |bins| (bin i is the value lo + i*res): for each p, the
 * smallest grid value v with cumulative count >= ceil(p * n), n = sum of bins. Returns 0, or
 * BG_ERR_INVAL when n == 0 or a p is outside (0,1). */
int space_grid_quantiles(const uint64_t *bins, size_t nbins, double lo, double res,
                         const double *probs, size_t nprobs, double *out);

/* Inverse CDF of Student's t with |df| > 0 degrees of freedom at |p| in (0,1). */
double space_t_quantile(double p, double df);

/* Bland-Altman figures from a merged state (METHODS.md section 5). */
typedef struct space_ba {
    uint64_t n;
    double bias, bias_ci[2];
    double sd;                              /* SD of differences */
    double loa[2];                          /* bias -/+ 1.96 sd */
    double loa_lower_ci[2], loa_upper_ci[2]; /* CIs of each limit, SE = sd*sqrt(1/n+1.96^2/(2(n-1))) */
    double slope, intercept, slope_se;      /* proportional bias: d regressed on a */
    double ccc;                             /* Lin's concordance correlation */
} space_ba;
/* Fills |out| from |s|; BG_ERR_INVAL when s->n < 3. */
int space_agree_finish(const space_agree *s, space_ba *out);

/* Between-site heterogeneity of the bias from per-site states (section 5): Cochran's Q, I^2,
 * DerSimonian-Laird tau^2, the random-effects pooled bias and s_total = sqrt(s_within^2 +
 * tau^2). Sites with n < 2 are skipped; |k| counts the sites used. */
typedef struct space_het {
    size_t k;
    double q, i2, tau2;
    double re_bias, re_bias_se;
    double s_within, s_total;
} space_het;
int space_agree_heterogeneity(const space_agree *sites, size_t nsites, space_het *out);

#endif /* SPACE_AGG_H */
