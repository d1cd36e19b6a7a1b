/* trust/disclosure.h: the provider gateway's last check of every result before it leaves its
 * city (../shared/METHODS.md sections 1 and 2): validation of what the data space returned
 * (which may be an untrusted external one), small-cell and complementary suppression, and
 * discrete-Laplace noise sampled exactly with integer arithmetic. Plain library, any thread.
 * Not for: budgets and the release ledger (trust/store.h), differencing against earlier
 * releases (the data space's history, space/exec.c), secure aggregation (trust/secagg.h). */
#ifndef TRUST_DISCLOSURE_H
#define TRUST_DISCLOSURE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "space/space.h"

/* The disclosure policy of the effective contract. */
typedef struct trust_disclosure {
    uint32_t k;        /* a count c with 0 < c < k is not published; 0 and 1 disable this */
    bool zero_is_safe; /* a count of 0 is publishable (the usual choice); when false, 0 is
                          treated like a small count */
} trust_disclosure;

/* Checks |r| and applies suppression to it in place.
 *
 * Validation (nothing is changed and BG_ERR_INVAL is returned when any rule fails):
 *  V1  op is one of SPACE_OP_COUNT..SPACE_OP_AGREEMENT; 1 <= ncells <= SPACE_MAX_CELLS and
 *      cells != NULL; ngroup <= SPACE_MAX_GROUP_BY, and ngroup == 0 means exactly one cell.
 *  V2  keys: over the first |ngroup| slots, strictly ascending across cells (so no duplicate
 *      group); unused slots are 0.
 *  V3  supp is a known space_supp value; noisy cells have a finite noise_scale > 0, other
 *      cells noise_scale == 0.
 *  V4  bins by op: count, sum, mean and agreement carry none (nbins == 0); a histogram has
 *      2 <= nbins <= SPACE_MAX_EDGES + 1, the same in every cell, bins != NULL, and no qvals;
 *      bin_supp (per-bin reasons) only in histogram cells, each a known space_supp value;
 *      quantiles are either all grid cells (the same 1 <= nbins <= SPACE_MAX_GRID in every
 *      cell, bins != NULL, has_qvals false: qvals together with bins are refused) or all
 *      final cells (nbins == 0; has_qvals only when n > 0; every qvals entry finite).
 *  V5  values of cells not already suppressed by the data space: histogram and quantile grid
 *      bins sum to n exactly (without overflow), except that a histogram bin withheld in
 *      bin_supp must be 0 and then the others sum to at most n; mean: mom.n == n, mean and
 *      m2 finite, m2 >= 0, and mean == m2 == 0 when n == 0, m2 == 0 when n == 1;
 *      agreement: agree.n == n, every moment finite, every M2 >= 0, all zero when n == 0;
 *      sum: sum_units == 0 when n == 0 unless the cell is noisy; the n of all cells sums
 *      without overflowing 64 bits.
 *  Members an op does not use (METHODS layout in space.h) are then cleared, so nothing the
 *  data space put there can leave the city; rows_scanned is left alone (never on the wire).
 *  A cell that arrived suppressed (e.g. SPACE_SUPP_DIFFERENCING from the data space's
 *  history) keeps its reason, has its values zeroed, and is protected like any other; so
 *  does a bin that arrived withheld (its value, unknown to us, is always protected).
 *
 * Primary suppression: a cell whose n is below |p->k| (0 < n < k), or 0 when
 * !zero_is_safe, gets SPACE_SUPP_BELOW_K and every value zeroed (n, sum_units, mom, agree,
 * bins, qvals, has_qvals). Histogram bins are cells too: in a published histogram cell, a
 * bin with the same property is withheld (see per-bin reasons below). Quantile grid bins
 * are not checked one by one: the grid is only released masked under secure aggregation and
 * the final quantiles only for cells that pass; only their cell n is checked.
 *
 * Complementary suppression (METHODS s.1 step 2): the lines are sets of cells whose total
 * an attacker can learn from another query of the same contract: with one group_by field
 * all cells; with two, every row, every column and the whole table; the bins of a histogram
 * cell (total n); and, for a grouped histogram, bin j across the cells of each of those
 * lines (total: bin j of the coarser histogram). Repeated to a fixed point: a line of two
 * or more cells with exactly one withheld member, whose total would itself pass the
 * primary rule, gets its unsuppressed member with the smallest non-zero value withheld too
 * (SPACE_SUPP_COMPLEMENTARY; ties: first in cell order). A zero is taken only when no
 * non-zero member is left (which happens only with zero_is_safe, as other zeros are primary
 * suppressed). Withholding a cell withholds its bins. Groups the data space did not return
 * are public zeros and are not part of any line.
 * Lines alone still let some withheld cells be solved from several margins at once, so the
 * two-way structures (a two-group_by table; a one-group_by histogram as cells x bins) get
 * an exact linear check on top: a withheld cell is determined by the published margins iff
 * it is a bridge of the graph of withheld cells (disclosure.c explains why); each such
 * cell, unless it is a complement of ordinary size, gets the cheapest published cell that
 * closes a cycle through it withheld too, and lines are rechecked. When no cell can (sparse
 * tables) or after 256 rounds, every cell is withheld.
 * Not done: the LP interval check (METHODS s.1 step 3: bounds from non-negativity, e.g. a
 * line whose total is 0 reveals its members), three-way structures (the bins of a
 * two-group_by histogram are protected by lines only), dominance and p% rules (results
 * carry no per-contributor values), differencing against earlier releases, which the data
 * space's history (space/exec.c) and DP noise handle, and the per-site vs pooled line,
 * which the home gateway owns.
 *
 * Per-bin reasons (histograms), one space_supp per bin (SPACE_SUPP_NONE for a published
 * bin; the data space's reason for a bin that arrived withheld; else _BELOW_K or
 * _COMPLEMENTARY), for the published cells only: a suppressed cell's bins are covered by
 * its own supp, and its bin_supp is freed and set to NULL. Withheld bins read 0 in |r|.
 *  - With |bin_supp_out| != NULL: |*bin_supp_out| is set to a caller-freed (free()) array of
 *    ncells * nbins reasons, [cell * nbins + bin], when some bin of a published cell is
 *    withheld, else to NULL; every cell's bin_supp is then freed and set to NULL (the array
 *    holds them all, including the ones that arrived).
 *  - With |bin_supp_out| == NULL: the reasons go into each published cell's own bin_supp
 *    (allocated when needed, owned by |r|); a cell with none withheld gets NULL.
 * |suppressed_out| (may be NULL): the number of cells whose supp is not NONE afterwards.
 *
 * Order with noise: call trust_disclosure_noise() first, then this, so suppression is
 * post-processing of the noisy values and costs no privacy (METHODS s.2). Suppressing on
 * exact counts and noising after would make the suppression pattern itself depend on the
 * exact counts and leak outside the DP guarantee.
 *
 * Returns 0, BG_ERR_INVAL (see above; |r| and the outputs are untouched) or BG_ERR_NOMEM
 * (likewise untouched). */
int trust_disclosure_apply(const trust_disclosure *p, space_result *r, uint8_t **bin_supp_out,
                           size_t *suppressed_out);

/* A differential-privacy request: pure epsilon-DP with epsilon = eps_num / eps_den as an
 * exact rational (e.g. 1/2; milli-units are eps_num / 1000). */
typedef struct trust_dp {
    uint64_t eps_num, eps_den; /* both > 0 */
    uint64_t sens_count;       /* L1 sensitivity of a count (rows per patient); 0 means 1 */
    uint64_t sens_sum;         /* sum only: max(|lo|, |hi|) / resolution * rows per patient,
                                  in resolution units; > 0 for sums */
} trust_dp;

/* Adds discrete-Laplace (two-sided geometric) noise to |r| in place, sampled exactly
 * (trust_dlaplace_sample()), with scale b = sensitivity / epsilon:
 *   count:     each cell's n, b = sens_count / epsilon;
 *   histogram: each bin independently, b = sens_count / epsilon (disjoint bins: parallel
 *              composition, one epsilon for the whole histogram); n := the sum of the noisy
 *              bins (post-processing); bins that arrived withheld (bin_supp) stay 0, their
 *              noisy sum enters n as one bin;
 *   sum:       epsilon is split evenly: n with b = 2 sens_count / epsilon and sum_units with
 *              b = 2 sens_sum / epsilon; the cell's noise_scale records the latter, in
 *              resolution units (n's scale is noise_scale * sens_count / sens_sum).
 * The whole call costs |dp|'s epsilon. Counts and bins are then clamped to >= 0 (free
 * post-processing; this biases small counts upward, and suppression usually hides them);
 * sums are not clamped, since a sum of signed values may be negative. Each noised cell gets
 * noisy = true and noise_scale = b. Cells that arrived suppressed are left as they are.
 * Call before trust_disclosure_apply() (see there). Refuses mean, quantiles and agreement
 * (the gateway does not offer DP for them) and a result that already carries noise.
 * Returns 0; BG_ERR_INVAL (malformed result as trust_disclosure_apply() defines it, an op
 * without DP, epsilon or sensitivities invalid, eps_num above 2^56, already noisy);
 * BG_ERR_RANGE (scale too large for the exact sampler: sensitivity * eps_den, doubled for a
 * sum, above 2^56; or a noisy value beyond 64 bits); BG_ERR_TLS (the OpenSSL random
 * generator failed); BG_ERR_NOMEM. Every draw is made before |r| is changed, so on any
 * error |r| is untouched. */
int trust_disclosure_noise(space_result *r, const trust_dp *dp);

/* One draw of the discrete Laplace distribution with scale s/t (P(Z = z) proportional to
 * exp(-|z| t / s)) into |*out|, by the Canonne-Kamath-Steinke 2020 sampler: only integer
 * arithmetic and uniform integers from RAND_bytes() by rejection (no modulo bias).
 * 1 <= s, t <= 2^56. Returns 0, BG_ERR_INVAL (s or t out of range), BG_ERR_RANGE (a draw
 * beyond int64, or intermediate overflow: astronomically unlikely) or BG_ERR_TLS (the random
 * generator failed). Thread-safe. */
int trust_dlaplace_sample(uint64_t s, uint64_t t, int64_t *out);

#endif /* TRUST_DISCLOSURE_H */
