/* trust/disclosure.c: validation, small-cell and complementary suppression, and exact
 * discrete-Laplace noise for results about to leave the provider's city. The rules are
 * stated in disclosure.h; this file explains the choices behind them. Not for: budgets,
 * ledgers or differencing against earlier releases. */
#include "trust/disclosure.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

/* ---- validation -------------------------------------------------------------------------- */

static bool key_less(const space_cell *a, const space_cell *b, size_t ngroup)
{
    for (size_t g = 0; g < ngroup; g++) {
        if (a->key[g] != b->key[g]) {
            return a->key[g] < b->key[g];
        }
    }
    return false;
}

/* Sums |n| bins into |*sum|; false on overflow. */
static bool sum_bins(const uint64_t *bins, size_t n, uint64_t *sum)
{
    uint64_t s = 0;
    for (size_t j = 0; j < n; j++) {
        if (bins[j] > UINT64_MAX - s) {
            return false;
        }
        s += bins[j];
    }
    *sum = s;
    return true;
}

static bool supp_known(int s)
{
    return s >= SPACE_SUPP_NONE && s <= SPACE_SUPP_DOMINANCE;
}

/* Was bin |j| of |c| withheld before it reached us (by the data space, or a merge)? */
static bool bin_withheld(const space_cell *c, size_t j)
{
    return c->bin_supp != NULL && c->bin_supp[j] != SPACE_SUPP_NONE;
}

static bool all_finite(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            return false;
        }
    }
    return true;
}

/* V5 for one cell that did not arrive suppressed. */
static bool cell_values_ok(const space_result *r, const space_cell *c)
{
    uint64_t s;
    switch (r->op) {
    case SPACE_OP_COUNT:
        return true;
    case SPACE_OP_SUM:
        return c->n > 0 || c->sum_units == 0 || c->noisy;
    case SPACE_OP_MEAN: {
        const space_moments *m = &c->mom;
        if (m->n != c->n || !isfinite(m->mean) || !isfinite(m->m2) || m->m2 < 0) {
            return false;
        }
        if (c->n == 0 && (m->mean != 0 || m->m2 != 0)) {
            return false;
        }
        return c->n != 1 || m->m2 == 0;
    }
    case SPACE_OP_HISTOGRAM: {
        /* Withheld bins travel as 0 and n keeps the true total (space/agg.c, space/wire.c):
         * the published bins then sum to at most n. */
        uint64_t pub = 0;
        bool withheld = false;
        for (size_t j = 0; j < c->nbins; j++) {
            if (bin_withheld(c, j)) {
                if (c->bins[j] != 0) {
                    return false;
                }
                withheld = true;
            } else if (c->bins[j] > UINT64_MAX - pub) {
                return false;
            } else {
                pub += c->bins[j];
            }
        }
        return withheld ? pub <= c->n : pub == c->n;
    }
    case SPACE_OP_QUANTILES:
        if (c->nbins > 0) {
            return sum_bins(c->bins, c->nbins, &s) && s == c->n;
        }
        return !c->has_qvals || c->n > 0;
    case SPACE_OP_AGREEMENT: {
        const space_agree *a = &c->agree;
        const double v[] = {a->d_mean, a->d_m2, a->a_mean, a->a_m2, a->c_ad,
                            a->x_mean, a->x_m2, a->y_mean, a->y_m2, a->c_xy};
        if (a->n != c->n || !all_finite(v, sizeof(v) / sizeof(v[0]))) {
            return false;
        }
        if (a->d_m2 < 0 || a->a_m2 < 0 || a->x_m2 < 0 || a->y_m2 < 0) {
            return false;
        }
        if (c->n == 0) {
            for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                if (v[i] != 0) {
                    return false;
                }
            }
        }
        return true;
    }
    }
    return false;
}

/* V4: the bin layout of one cell, given the first cell's as the reference. */
static bool cell_layout_ok(const space_result *r, const space_cell *c, const space_cell *first)
{
    if (c->nbins > 0 && c->bins == NULL) {
        return false;
    }
    if (c->bin_supp != NULL) {
        if (r->op != SPACE_OP_HISTOGRAM || c->nbins == 0) {
            return false;
        }
        for (size_t j = 0; j < c->nbins; j++) {
            if (!supp_known(c->bin_supp[j])) {
                return false;
            }
        }
    }
    switch (r->op) {
    case SPACE_OP_COUNT:
    case SPACE_OP_SUM:
    case SPACE_OP_MEAN:
    case SPACE_OP_AGREEMENT:
        return c->nbins == 0;
    case SPACE_OP_HISTOGRAM:
        return c->nbins >= 2 && c->nbins <= SPACE_MAX_EDGES + 1 && c->nbins == first->nbins &&
               !c->has_qvals;
    case SPACE_OP_QUANTILES:
        if (c->nbins != first->nbins) {
            return false; /* grid and final cells mixed, or grids of different sizes */
        }
        if (c->nbins > 0) {
            return c->nbins <= SPACE_MAX_GRID && !c->has_qvals;
        }
        return all_finite(c->qvals, SPACE_MAX_PROBS);
    }
    return false;
}

/* Applies V1..V5 of disclosure.h to |r|; 0 or BG_ERR_INVAL. */
static int check_result(const space_result *r)
{
    if (r->op < SPACE_OP_COUNT || r->op > SPACE_OP_AGREEMENT) {
        return BG_ERR_INVAL;
    }
    if (r->cells == NULL || r->ncells == 0 || r->ncells > SPACE_MAX_CELLS ||
        r->ngroup > SPACE_MAX_GROUP_BY || (r->ngroup == 0 && r->ncells != 1)) {
        return BG_ERR_INVAL;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < r->ncells; i++) {
        const space_cell *c = &r->cells[i];
        for (size_t g = r->ngroup; g < SPACE_MAX_GROUP_BY; g++) {
            if (c->key[g] != 0) {
                return BG_ERR_INVAL;
            }
        }
        if (i > 0 && !key_less(&r->cells[i - 1], c, r->ngroup)) {
            return BG_ERR_INVAL;
        }
        if (!supp_known((int)c->supp)) {
            return BG_ERR_INVAL;
        }
        if (c->noisy ? !(isfinite(c->noise_scale) && c->noise_scale > 0) : c->noise_scale != 0) {
            return BG_ERR_INVAL;
        }
        if (!cell_layout_ok(r, c, &r->cells[0])) {
            return BG_ERR_INVAL;
        }
        if (c->supp != SPACE_SUPP_NONE) {
            continue; /* zeroed below, whatever it holds */
        }
        if (!cell_values_ok(r, c)) {
            return BG_ERR_INVAL;
        }
        if (c->n > UINT64_MAX - total) {
            return BG_ERR_INVAL;
        }
        total += c->n;
    }
    return 0;
}

/* Every value of |c| to zero; keys, reasons, noise metadata and the bins array stay; per-bin
 * reasons go (the cell's own reason covers its bins). */
static void zero_values(space_cell *c)
{
    free(c->bin_supp);
    c->bin_supp = NULL;
    c->n = 0;
    c->sum_units = 0;
    memset(&c->mom, 0, sizeof(c->mom));
    memset(&c->agree, 0, sizeof(c->agree));
    if (c->nbins > 0) {
        memset(c->bins, 0, c->nbins * sizeof(c->bins[0]));
    }
    memset(c->qvals, 0, sizeof(c->qvals));
    c->has_qvals = false;
}

/* Clears the members |op| does not use (layout in space.h), so that a data space cannot
 * smuggle anything past us in them. */
static void scrub_unused(space_op op, space_cell *c)
{
    if (op != SPACE_OP_SUM) {
        c->sum_units = 0;
    }
    if (op != SPACE_OP_MEAN) {
        memset(&c->mom, 0, sizeof(c->mom));
    }
    if (op != SPACE_OP_AGREEMENT) {
        memset(&c->agree, 0, sizeof(c->agree));
    }
    if (op != SPACE_OP_QUANTILES) {
        memset(c->qvals, 0, sizeof(c->qvals));
        c->has_qvals = false;
    }
}

/* ---- suppression ------------------------------------------------------------------------- */

/* Items are the released counts: item i < ncells is cell i's n; for a histogram, item
 * ncells + i * nbins + j is bin j of cell i. Lines are sets of items with a known total:
 *   [0, G)                   group lines of cells: one (ngroup 1), or nrows rows, ncols
 *                            columns and the table (ngroup 2); none without group_by;
 *   [G, G + ncells)          histogram: the bins of cell i (total n_i);
 *   [G + ncells, ... )       histogram: bin j across the cells of group line g, at
 *                            G + ncells + g * nbins + j.
 * Line membership is stored once (CSR); an item's lines are recomputed from its position. */
typedef struct supp_work {
    uint32_t k;
    bool zero_is_safe;
    size_t ncells, nbins, ngroup;
    size_t nrows, ncols, ngl; /* ngl = G */
    uint32_t *row, *col;      /* per cell, ngroup 2 */
    size_t nitems, nlines;
    uint64_t *val;
    uint8_t *supp;
    bool *pre;      /* withheld before us: the value is unknown (0 here) */
    size_t *lstart; /* nlines + 1 */
    uint32_t *lmem;
    uint32_t *lcount;
    bool *lprot; /* the line has >= 2 members and a total an attacker can learn */
    uint32_t *queue;
    size_t qhead, qtail;
} supp_work;

/* Does count |v| fail the primary rule? */
static bool is_small(const supp_work *w, uint64_t v)
{
    return v == 0 ? !w->zero_is_safe : v < w->k;
}

/* The group lines of cell |i| into |out| (at most 3); returns how many. */
static size_t cell_glines(const supp_work *w, size_t i, uint32_t *out)
{
    if (w->ngroup == 0) {
        return 0;
    }
    if (w->ngroup == 1) {
        out[0] = 0;
        return 1;
    }
    out[0] = w->row[i];
    out[1] = (uint32_t)(w->nrows + w->col[i]);
    out[2] = (uint32_t)(w->nrows + w->ncols);
    return 3;
}

/* The lines of |item| into |out| (at most 4); returns how many. */
static size_t item_lines(const supp_work *w, size_t item, uint32_t *out)
{
    if (item < w->ncells) {
        return cell_glines(w, item, out);
    }
    size_t i = (item - w->ncells) / w->nbins, j = (item - w->ncells) % w->nbins;
    uint32_t g[3];
    size_t ng = cell_glines(w, i, g);
    out[0] = (uint32_t)(w->ngl + i);
    for (size_t x = 0; x < ng; x++) {
        out[1 + x] = (uint32_t)(w->ngl + w->ncells + g[x] * w->nbins + j);
    }
    return 1 + ng;
}

static int cmp_u16(const void *a, const void *b)
{
    uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return (x > y) - (x < y);
}

static void work_dispose(supp_work *w)
{
    free(w->row);
    free(w->col);
    free(w->val);
    free(w->supp);
    free(w->pre);
    free(w->lstart);
    free(w->lmem);
    free(w->lcount);
    free(w->lprot);
    free(w->queue);
}

/* Row and column indexes of the cells of a two-way table: cells are sorted by (key0, key1),
 * so rows are runs; columns are ranks among the distinct key1 values. */
static int index_rows_cols(supp_work *w, const space_result *r)
{
    uint16_t *keys = malloc(w->ncells * sizeof(*keys));
    if (keys == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < w->ncells; i++) {
        keys[i] = r->cells[i].key[1];
        w->row[i] =
            (uint32_t)(i == 0 ? 0 : w->row[i - 1] + (r->cells[i].key[0] != r->cells[i - 1].key[0]));
    }
    w->nrows = w->row[w->ncells - 1] + 1;
    qsort(keys, w->ncells, sizeof(*keys), cmp_u16);
    size_t nd = 0;
    for (size_t i = 0; i < w->ncells; i++) {
        if (nd == 0 || keys[nd - 1] != keys[i]) {
            keys[nd++] = keys[i];
        }
    }
    w->ncols = nd;
    for (size_t i = 0; i < w->ncells; i++) {
        const uint16_t *f = bsearch(&r->cells[i].key[1], keys, nd, sizeof(*keys), cmp_u16);
        assert(f != NULL);
        w->col[i] = (uint32_t)(f - keys);
    }
    free(keys);
    return 0;
}

/* Builds items, values and lines for |r| (already validated). */
static int work_init(supp_work *w, const trust_disclosure *p, const space_result *r)
{
    memset(w, 0, sizeof(*w));
    w->k = p->k;
    w->zero_is_safe = p->zero_is_safe;
    w->ncells = r->ncells;
    w->ngroup = r->ngroup;
    w->nbins = r->op == SPACE_OP_HISTOGRAM ? r->cells[0].nbins : 0;
    w->row = calloc(w->ncells, sizeof(*w->row));
    w->col = calloc(w->ncells, sizeof(*w->col));
    if (w->row == NULL || w->col == NULL) {
        return BG_ERR_NOMEM;
    }
    if (w->ngroup == 2) {
        int rc = index_rows_cols(w, r);
        if (rc != 0) {
            return rc;
        }
    }
    w->ngl = w->ngroup == 0 ? 0 : w->ngroup == 1 ? 1 : w->nrows + w->ncols + 1;
    /* Bounded by SPACE_MAX_CELLS and SPACE_MAX_EDGES: no overflow, and indexes fit 32 bits. */
    w->nitems = w->ncells * (1 + w->nbins);
    w->nlines = w->ngl + (w->nbins > 0 ? w->ncells + w->ngl * w->nbins : 0);
    _Static_assert((uint64_t)SPACE_MAX_CELLS * (SPACE_MAX_EDGES + 2) * 4 < UINT32_MAX,
                   "item and line indexes fit uint32_t");

    w->val = calloc(w->nitems, sizeof(*w->val));
    w->supp = calloc(w->nitems, sizeof(*w->supp));
    w->pre = calloc(w->nitems, sizeof(*w->pre));
    w->lstart = calloc(w->nlines + 1, sizeof(*w->lstart));
    w->lmem = calloc(w->nitems * 4 + 1, sizeof(*w->lmem));
    w->lcount = calloc(w->nlines + 1, sizeof(*w->lcount));
    w->lprot = calloc(w->nlines + 1, sizeof(*w->lprot));
    w->queue = calloc(w->nlines + 1, sizeof(*w->queue));
    uint64_t *ltotal = calloc(w->nlines + 1, sizeof(*ltotal));
    bool *lunknown = calloc(w->nlines + 1, sizeof(*lunknown));
    if (w->val == NULL || w->supp == NULL || w->pre == NULL || w->lstart == NULL ||
        w->lmem == NULL || w->lcount == NULL || w->lprot == NULL || w->queue == NULL ||
        ltotal == NULL || lunknown == NULL) {
        free(ltotal);
        free(lunknown);
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < w->ncells; i++) {
        const space_cell *c = &r->cells[i];
        w->val[i] = c->n;
        w->pre[i] = c->supp != SPACE_SUPP_NONE;
        for (size_t j = 0; j < w->nbins; j++) {
            w->val[w->ncells + i * w->nbins + j] = c->bins[j];
            w->pre[w->ncells + i * w->nbins + j] = w->pre[i] || bin_withheld(c, j);
        }
    }
    /* Membership counts, then prefix sums, then fill (lcount doubles as the fill cursor). */
    uint32_t ls[4];
    for (size_t it = 0; it < w->nitems; it++) {
        size_t nl = item_lines(w, it, ls);
        for (size_t x = 0; x < nl; x++) {
            w->lstart[ls[x] + 1]++;
        }
    }
    for (size_t l = 0; l < w->nlines; l++) {
        w->lstart[l + 1] += w->lstart[l];
    }
    for (size_t it = 0; it < w->nitems; it++) {
        bool unknown = w->pre[it];
        size_t nl = item_lines(w, it, ls);
        for (size_t x = 0; x < nl; x++) {
            w->lmem[w->lstart[ls[x]] + w->lcount[ls[x]]++] = (uint32_t)it;
            /* Sums of validated counts: bounded by the total, which fits 64 bits. */
            ltotal[ls[x]] += w->val[it];
            lunknown[ls[x]] = lunknown[ls[x]] || unknown;
        }
    }
    /* A line protects when an attacker can learn its total: another query of the contract
     * publishes it unless it fails the primary rule itself (METHODS s.1 step 2, "if the
     * total itself is suppressed, the line is satisfied"). A line holding a cell or bin the
     * data space already withheld has a total we cannot know, so it is assumed learnable.
     * One-member lines are the member itself, released or not by the same rule. */
    for (size_t l = 0; l < w->nlines; l++) {
        w->lcount[l] = 0;
        w->lprot[l] =
            w->lstart[l + 1] - w->lstart[l] >= 2 && (lunknown[l] || !is_small(w, ltotal[l]));
    }
    free(ltotal);
    free(lunknown);
    return 0;
}

/* Marks |item| withheld for |why| (when it was not), counting it in its lines and queueing
 * every line that now has exactly one withheld member. */
static void withhold_one(supp_work *w, size_t item, uint8_t why)
{
    if (w->supp[item] != SPACE_SUPP_NONE) {
        return;
    }
    w->supp[item] = why;
    uint32_t ls[4];
    size_t nl = item_lines(w, item, ls);
    for (size_t x = 0; x < nl; x++) {
        /* Counts only grow, so each line is queued at most once: the queue holds nlines. */
        if (++w->lcount[ls[x]] == 1) {
            w->queue[w->qtail++] = ls[x];
        }
    }
}

/* Withholds |item| for |why|, and for a cell all its bins too. */
static void withhold(supp_work *w, size_t item, uint8_t why)
{
    withhold_one(w, item, why);
    if (item < w->ncells) {
        for (size_t j = 0; j < w->nbins; j++) {
            withhold_one(w, w->ncells + item * w->nbins + j, why);
        }
    }
}

/* The complement for line |l|: the unwithheld member with the smallest non-zero value
 * (the cheapest information loss); a zero only when nothing else is left, because a
 * publicly known (structural) zero protects nothing. Returns nitems when none. */
static size_t pick_complement(const supp_work *w, size_t l)
{
    size_t best = w->nitems, zero = w->nitems;
    for (size_t m = w->lstart[l]; m < w->lstart[l + 1]; m++) {
        size_t it = w->lmem[m];
        if (w->supp[it] != SPACE_SUPP_NONE) {
            continue;
        }
        if (w->val[it] == 0) {
            if (zero == w->nitems) {
                zero = it;
            }
        } else if (best == w->nitems || w->val[it] < w->val[best]) {
            best = it;
        }
    }
    return best != w->nitems ? best : zero;
}

/* Secondary suppression by lines, to a fixed point: complements may create new lines with a
 * single withheld member. */
static void drain_lines(supp_work *w)
{
    while (w->qhead < w->qtail) {
        size_t l = w->queue[w->qhead++];
        if (!w->lprot[l] || w->lcount[l] != 1) {
            continue;
        }
        size_t it = pick_complement(w, l);
        assert(it != w->nitems); /* >= 2 members, one withheld */
        withhold(w, it, SPACE_SUPP_COMPLEMENTARY);
    }
}

/* ---- exact check of two-way structures ---------------------------------------------------
 * Lines alone are not enough. Two-way example (k 8): a small cell P whose row total is small
 * too (so that row publishes nothing), and four cells withheld in two other rows and two
 * columns, one of them P's. Every line holds 0 or >= 2 withheld cells, yet the other two
 * withheld cells of P's column sum to (their rows' totals - the other column's withheld
 * pair), so P = its column total - its published cells - that sum.
 *
 * Exactly: in a two-way table whose row, column and grand totals may be known, let each
 * withheld cell be an edge between its row node and its column node; merge the rows whose
 * total is unknown into one node RF and such columns into one node CF, and RF and CF into
 * one node when the grand total is unknown too (then the grand total gives nothing; when it
 * is known, it fixes the sums over RF and over CF). The withheld values consistent with the
 * published numbers differ from the truth by a vector that sums to 0 at every known node:
 * with rows as tails and columns as heads that is a circulation (the unknown node's balance
 * follows from the others'). So a withheld cell is determined by the published margins iff
 * no circulation uses it, i.e. iff it is a *bridge* of this multigraph (loops and parallel
 * edges lie on cycles). A bridge that needs protection (anything not merely a
 * complement, or a small value) is repaired by also withholding the cheapest published
 * cell that joins the two sides of the bridge, which closes a cycle through it; then lines
 * and bridges are checked again. This is linear determinacy, not the LP interval check:
 * bounds from non-negativity are still not computed (METHODS s.1 step 3).
 *
 * It runs on the two-way views that exist here: the cells of a two-group_by result (rows,
 * columns, table), and the cells x bins of a one-group_by histogram (a published cell's n is
 * its row total, bin j of the ungrouped histogram a column total, the ungrouped n the grand
 * total). A two-group_by histogram is three-way: its bins are protected by lines only. */

/* Each round costs O(cells x bins); real tables need a handful (random 64 x 64 tables with
 * 30 % small cells: a few). The cap bounds what a hostile data space can make us spend. */
#define BRIDGE_ROUNDS_MAX 256

typedef struct view2d {
    size_t nr, nc, nv;
    uint32_t *item, *r, *c; /* the nv positions of the view */
    bool *rcon, *ccon;      /* row / column total known */
    bool tcon;              /* grand total known */
} view2d;

static void view_dispose(view2d *v)
{
    free(v->item);
    free(v->r);
    free(v->c);
    free(v->rcon);
    free(v->ccon);
}

static int view_init(view2d *v, const supp_work *w)
{
    memset(v, 0, sizeof(*v));
    bool hist = w->ngroup == 1;
    v->nr = hist ? w->ncells : w->nrows;
    v->nc = hist ? w->nbins : w->ncols;
    v->nv = hist ? w->ncells * w->nbins : w->ncells;
    /* + 1: never a zero-size allocation (all are >= 1 for validated results anyway). */
    v->item = calloc(v->nv + 1, sizeof(*v->item));
    v->r = calloc(v->nv + 1, sizeof(*v->r));
    v->c = calloc(v->nv + 1, sizeof(*v->c));
    v->rcon = calloc(v->nr + 1, sizeof(*v->rcon));
    v->ccon = calloc(v->nc + 1, sizeof(*v->ccon));
    if (v->item == NULL || v->r == NULL || v->c == NULL || v->rcon == NULL || v->ccon == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t x = 0; x < v->nv; x++) {
        if (hist) {
            v->item[x] = (uint32_t)(w->ncells + x);
            v->r[x] = (uint32_t)(x / w->nbins);
            v->c[x] = (uint32_t)(x % w->nbins);
        } else {
            v->item[x] = (uint32_t)x;
            v->r[x] = w->row[x];
            v->c[x] = w->col[x];
        }
    }
    return 0;
}

/* Which totals are known now (a histogram cell's n goes when the cell is withheld). */
static void view_constraints(view2d *v, const supp_work *w)
{
    bool hist = w->ngroup == 1;
    for (size_t a = 0; a < v->nr; a++) {
        v->rcon[a] = hist ? w->lprot[w->ngl + a] && w->supp[a] == SPACE_SUPP_NONE : w->lprot[a];
    }
    for (size_t b = 0; b < v->nc; b++) {
        v->ccon[b] = hist ? w->lprot[w->ngl + w->ncells + b] : w->lprot[w->nrows + b];
    }
    v->tcon = hist ? w->lprot[0] : w->lprot[w->nrows + w->ncols];
}

/* Scratch for one bridge search over at most nodes = nr + nc + 2 and edges = nv. */
typedef struct bridge_scratch {
    uint32_t *eu, *ev, *epos; /* edge endpoints and view position */
    size_t *astart;           /* adjacency CSR */
    uint32_t *ato, *aedge;
    uint32_t *disc, *low, *pedge; /* Tarjan; disc 0 = unvisited */
    uint32_t *stack, *it;
    uint8_t *side; /* 1: u side, 2: v side */
} bridge_scratch;

static void scratch_dispose(bridge_scratch *b)
{
    free(b->eu);
    free(b->ev);
    free(b->epos);
    free(b->astart);
    free(b->ato);
    free(b->aedge);
    free(b->disc);
    free(b->low);
    free(b->pedge);
    free(b->stack);
    free(b->it);
    free(b->side);
}

static int scratch_init(bridge_scratch *b, size_t nodes, size_t edges)
{
    memset(b, 0, sizeof(*b));
    b->eu = calloc(edges + 1, sizeof(*b->eu));
    b->ev = calloc(edges + 1, sizeof(*b->ev));
    b->epos = calloc(edges + 1, sizeof(*b->epos));
    b->astart = calloc(nodes + 1, sizeof(*b->astart));
    b->ato = calloc(2 * edges + 1, sizeof(*b->ato));
    b->aedge = calloc(2 * edges + 1, sizeof(*b->aedge));
    b->disc = calloc(nodes, sizeof(*b->disc));
    b->low = calloc(nodes, sizeof(*b->low));
    b->pedge = calloc(nodes, sizeof(*b->pedge));
    b->stack = calloc(nodes, sizeof(*b->stack));
    b->it = calloc(nodes, sizeof(*b->it));
    b->side = calloc(nodes, sizeof(*b->side));
    if (b->eu == NULL || b->ev == NULL || b->epos == NULL || b->astart == NULL || b->ato == NULL ||
        b->aedge == NULL || b->disc == NULL || b->low == NULL || b->pedge == NULL ||
        b->stack == NULL || b->it == NULL || b->side == NULL) {
        return BG_ERR_NOMEM;
    }
    return 0;
}

static uint32_t node_of_row(const view2d *v, uint32_t a)
{
    return v->rcon[a] ? a : (uint32_t)(v->nr + v->nc);
}

static uint32_t node_of_col(const view2d *v, uint32_t b)
{
    if (v->ccon[b]) {
        return (uint32_t)(v->nr + b);
    }
    return (uint32_t)(v->nr + v->nc + (v->tcon ? 1 : 0));
}

/* Does withheld |item| need to stay undetermined? Complements protect others; their own
 * values are not sensitive unless small (a small bin of a complementary cell). What was
 * withheld before us is protected whatever it says, its value being unknown. */
static bool needs_protection(const supp_work *w, size_t item)
{
    return w->pre[item] || w->supp[item] != SPACE_SUPP_COMPLEMENTARY || is_small(w, w->val[item]);
}

/* Marks in b->side the nodes reachable from |start| without edge |skip| as |mark|. */
static void flood(bridge_scratch *b, uint32_t start, uint32_t skip, uint8_t mark)
{
    size_t top = 0;
    b->side[start] = mark;
    b->stack[top++] = start;
    while (top > 0) {
        uint32_t x = b->stack[--top];
        for (size_t a = b->astart[x]; a < b->astart[x + 1]; a++) {
            uint32_t y = b->ato[a];
            if (b->aedge[a] != skip && b->side[y] == 0) {
                b->side[y] = mark;
                b->stack[top++] = y;
            }
        }
    }
}

/* One round: finds the first bridge (in view order) that needs protection and withholds a
 * cell closing a cycle through it. Sets |*found| when there was one, |*stuck| when no
 * published cell can close it. */
static void bridge_round(supp_work *w, view2d *v, bridge_scratch *b, bool *found, bool *stuck)
{
    const size_t nodes = v->nr + v->nc + 2;
    *found = *stuck = false;
    view_constraints(v, w);
    size_t ne = 0;
    for (size_t x = 0; x < v->nv; x++) {
        if (w->supp[v->item[x]] == SPACE_SUPP_NONE) {
            continue;
        }
        b->eu[ne] = node_of_row(v, v->r[x]);
        b->ev[ne] = node_of_col(v, v->c[x]);
        b->epos[ne] = (uint32_t)x;
        ne++;
    }
    memset(b->astart, 0, (nodes + 1) * sizeof(*b->astart));
    for (size_t e = 0; e < ne; e++) {
        if (b->eu[e] != b->ev[e]) { /* a loop is a cycle by itself: never a bridge */
            b->astart[b->eu[e] + 1]++;
            b->astart[b->ev[e] + 1]++;
        }
    }
    for (size_t x = 0; x < nodes; x++) {
        b->astart[x + 1] += b->astart[x];
        b->it[x] = 0;
    }
    for (size_t e = 0; e < ne; e++) {
        if (b->eu[e] != b->ev[e]) {
            uint32_t u = b->eu[e], t = b->ev[e];
            b->ato[b->astart[u] + b->it[u]] = t;
            b->aedge[b->astart[u] + b->it[u]++] = (uint32_t)e;
            b->ato[b->astart[t] + b->it[t]] = u;
            b->aedge[b->astart[t] + b->it[t]++] = (uint32_t)e;
        }
    }
    /* Tarjan's bridges, iteratively: edge pedge[x] into x is a bridge iff low[x] > disc of
     * its parent. The first qualifying bridge in view order wins (determinism). */
    const uint32_t none = UINT32_MAX;
    uint32_t best = none;
    uint32_t clock = 0;
    memset(b->disc, 0, nodes * sizeof(*b->disc));
    for (size_t s = 0; s < nodes; s++) {
        if (b->disc[s] != 0) {
            continue;
        }
        size_t top = 0;
        b->disc[s] = b->low[s] = ++clock;
        b->pedge[s] = none;
        b->it[s] = 0;
        b->stack[top++] = (uint32_t)s;
        while (top > 0) {
            uint32_t x = b->stack[top - 1];
            size_t a = b->astart[x] + b->it[x];
            if (a < b->astart[x + 1]) {
                b->it[x]++;
                uint32_t y = b->ato[a], e = b->aedge[a];
                if (e == b->pedge[x]) {
                    continue;
                }
                if (b->disc[y] == 0) {
                    b->disc[y] = b->low[y] = ++clock;
                    b->pedge[y] = e;
                    b->it[y] = 0;
                    b->stack[top++] = y;
                } else if (b->disc[y] < b->low[x]) {
                    b->low[x] = b->disc[y];
                }
                continue;
            }
            top--;
            if (top > 0) {
                uint32_t p = b->stack[top - 1];
                if (b->low[x] < b->low[p]) {
                    b->low[p] = b->low[x];
                }
                uint32_t e = b->pedge[x];
                if (b->low[x] > b->disc[p] && needs_protection(w, v->item[b->epos[e]]) &&
                    (best == none || b->epos[e] < b->epos[best])) {
                    best = e;
                }
            }
        }
    }
    if (best == none) {
        return;
    }
    *found = true;
    /* The two sides of the bridge, then the cheapest published cell joining them. */
    memset(b->side, 0, nodes);
    flood(b, b->eu[best], best, 1);
    flood(b, b->ev[best], best, 2);
    size_t pick = w->nitems, zero = w->nitems;
    for (size_t x = 0; x < v->nv; x++) {
        size_t it = v->item[x];
        if (w->supp[it] != SPACE_SUPP_NONE) {
            continue;
        }
        uint8_t su = b->side[node_of_row(v, v->r[x])], sv = b->side[node_of_col(v, v->c[x])];
        if (su == 0 || sv == 0 || su == sv) {
            continue;
        }
        if (w->val[it] == 0) {
            zero = zero == w->nitems ? it : zero;
        } else if (pick == w->nitems || w->val[it] < w->val[pick]) {
            pick = it;
        }
    }
    pick = pick != w->nitems ? pick : zero;
    if (pick == w->nitems) {
        *stuck = true;
        return;
    }
    withhold(w, pick, SPACE_SUPP_COMPLEMENTARY);
}

static int suppress(supp_work *w, const space_result *r)
{
    /* Primary: cells first (withholding their bins), then bins of the cells still shown. */
    for (size_t i = 0; i < w->ncells; i++) {
        const space_cell *c = &r->cells[i];
        if (c->supp != SPACE_SUPP_NONE) {
            withhold(w, i, (uint8_t)c->supp);
        } else if (is_small(w, w->val[i])) {
            withhold(w, i, SPACE_SUPP_BELOW_K);
        }
    }
    for (size_t it = w->ncells; it < w->nitems; it++) {
        size_t i = (it - w->ncells) / w->nbins, j = (it - w->ncells) % w->nbins;
        if (bin_withheld(&r->cells[i], j)) {
            withhold(w, it, r->cells[i].bin_supp[j]);
        } else if (is_small(w, w->val[it])) {
            withhold(w, it, SPACE_SUPP_BELOW_K);
        }
    }
    drain_lines(w);
    if (w->ngroup == 0 || (w->ngroup == 1 && w->nbins == 0)) {
        return 0; /* one line: no two-way structure */
    }
    view2d v;
    bridge_scratch b;
    int rc = view_init(&v, w);
    if (rc == 0) {
        rc = scratch_init(&b, v.nr + v.nc + 2, v.nv);
    } else {
        memset(&b, 0, sizeof(b));
    }
    size_t rounds = 0;
    for (bool found = rc == 0; found; rounds++) {
        bool stuck;
        bridge_round(w, &v, &b, &found, &stuck);
        if (stuck || (found && rounds >= BRIDGE_ROUNDS_MAX)) {
            /* No published cell joins the two sides (a sparse table), or a table built to
             * make us work: withhold every cell rather than release a determined one. */
            for (size_t i = 0; i < w->ncells; i++) {
                withhold(w, i, SPACE_SUPP_COMPLEMENTARY);
            }
            found = false;
        }
        drain_lines(w);
    }
    scratch_dispose(&b);
    view_dispose(&v);
    return rc;
}

int trust_disclosure_apply(const trust_disclosure *p, space_result *r, uint8_t **bin_supp_out,
                           size_t *suppressed_out)
{
    if (p == NULL || r == NULL) {
        return BG_ERR_INVAL;
    }
    int rc = check_result(r);
    if (rc != 0) {
        return rc;
    }
    supp_work w;
    rc = work_init(&w, p, r);
    if (rc != 0) {
        work_dispose(&w);
        return rc;
    }
    rc = suppress(&w, r);
    if (rc != 0) {
        work_dispose(&w);
        return rc;
    }
    /* Allocate whatever the outcome needs before |r| changes: the flags array, or (without
     * |bin_supp_out|) a bin_supp array for each published cell with a withheld bin. */
    uint8_t *flags = NULL, **fresh = NULL;
    bool any_bin = false;
    for (size_t it = w.ncells; it < w.nitems && !any_bin; it++) {
        any_bin =
            w.supp[it] != SPACE_SUPP_NONE && w.supp[(it - w.ncells) / w.nbins] == SPACE_SUPP_NONE;
    }
    if (any_bin && bin_supp_out != NULL) {
        flags = calloc(w.ncells * w.nbins, 1);
        rc = flags != NULL ? 0 : BG_ERR_NOMEM;
    } else if (any_bin) {
        fresh = calloc(w.ncells, sizeof(*fresh));
        rc = fresh != NULL ? 0 : BG_ERR_NOMEM;
        for (size_t i = 0; i < w.ncells && rc == 0; i++) {
            if (w.supp[i] == SPACE_SUPP_NONE && r->cells[i].bin_supp == NULL) {
                bool some = false;
                for (size_t j = 0; j < w.nbins; j++) {
                    some = some || w.supp[w.ncells + i * w.nbins + j] != SPACE_SUPP_NONE;
                }
                if (some && (fresh[i] = malloc(w.nbins)) == NULL) {
                    rc = BG_ERR_NOMEM;
                }
            }
        }
    }
    if (rc != 0) {
        for (size_t i = 0; fresh != NULL && i < w.ncells; i++) {
            free(fresh[i]);
        }
        free(fresh);
        work_dispose(&w);
        return rc;
    }

    /* Nothing can fail from here on: write the outcome into |r|. */
    size_t nsupp = 0;
    for (size_t i = 0; i < w.ncells; i++) {
        space_cell *c = &r->cells[i];
        scrub_unused(r->op, c);
        if (w.supp[i] != SPACE_SUPP_NONE) {
            if (c->supp == SPACE_SUPP_NONE) {
                c->supp = (space_supp)w.supp[i];
            }
            zero_values(c);
            nsupp++;
            continue;
        }
        const uint8_t *bs = &w.supp[w.ncells + i * w.nbins];
        bool some = false;
        for (size_t j = 0; j < w.nbins; j++) {
            if (bs[j] != SPACE_SUPP_NONE) {
                c->bins[j] = 0;
                some = true;
            }
        }
        if (flags != NULL) {
            memcpy(&flags[i * w.nbins], bs, w.nbins);
        }
        if (flags != NULL || !some) {
            free(c->bin_supp); /* the flags array carries them, or there are none */
            c->bin_supp = NULL;
        } else {
            if (c->bin_supp == NULL) {
                c->bin_supp = fresh[i];
                fresh[i] = NULL;
            }
            memcpy(c->bin_supp, bs, w.nbins);
        }
    }
    free(fresh); /* every entry was used or NULL */
    work_dispose(&w);
    if (bin_supp_out != NULL) {
        *bin_supp_out = flags;
    }
    if (suppressed_out != NULL) {
        *suppressed_out = nsupp;
    }
    return 0;
}

/* ---- exact discrete Laplace (Canonne, Kamath, Steinke 2020) ------------------------------ */

/* Mironov (CCS 2012) showed that textbook floating-point Laplace noise, -b*log(u), leaks the
 * true value through the pattern of representable doubles. The CKS samplers below use only
 * integers: Bernoulli(exp(-gamma)) for rational gamma by von Neumann's series trick, a
 * geometric from it, and the discrete Laplace from a signed geometric. Uniform integers come
 * from RAND_bytes through a small buffer owned by the caller's stack (no shared state). */

#define DLAP_MAX ((uint64_t)1 << 56)

typedef struct rng {
    uint8_t buf[256];
    size_t pos; /* bytes consumed; sizeof(buf) when empty */
} rng;

static void rng_init(rng *g)
{
    g->pos = sizeof(g->buf);
}

static void rng_dispose(rng *g)
{
    OPENSSL_cleanse(g->buf, sizeof(g->buf));
}

static int rng_u64(rng *g, uint64_t *out)
{
    if (g->pos + 8 > sizeof(g->buf)) {
        if (RAND_bytes(g->buf, (int)sizeof(g->buf)) != 1) {
            return BG_ERR_TLS;
        }
        g->pos = 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++) {
        v |= (uint64_t)g->buf[g->pos + i] << (8 * i);
    }
    g->pos += 8;
    *out = v;
    return 0;
}

/* Uniform in [0, n), n >= 1: draws below 2^64 mod n are rejected, so the accepted range is
 * a whole number of copies of [0, n) and the modulo is unbiased. */
static int uniform(rng *g, uint64_t n, uint64_t *out)
{
    if (n == 0) {
        return BG_ERR_INTERNAL; /* callers pass n >= 1; kept for release builds */
    }
    const uint64_t reject_below = (0 - n) % n; /* 2^64 mod n */
    for (;;) {
        uint64_t v;
        int rc = rng_u64(g, &v);
        if (rc != 0) {
            return rc;
        }
        if (v >= reject_below) {
            *out = v % n;
            return 0;
        }
    }
}

/* Bernoulli(num/den), num <= den, den >= 1. */
static int bernoulli(rng *g, uint64_t num, uint64_t den, bool *out)
{
    uint64_t u;
    int rc = uniform(g, den, &u);
    if (rc == 0) {
        *out = u < num;
    }
    return rc;
}

/* Bernoulli(exp(-num/den)) for 0 <= num/den <= 1: K = 1; while Bernoulli(gamma/K), K++;
 * return K odd (CKS Algorithm 1, the alternating series of exp(-gamma)). */
static int bernoulli_exp1(rng *g, uint64_t num, uint64_t den, bool *out)
{
    for (uint64_t k = 1;; k++) {
        if (den > UINT64_MAX / k) {
            return BG_ERR_RANGE; /* probability below 1/k!: never in practice */
        }
        bool b;
        int rc = bernoulli(g, num, den * k, &b);
        if (rc != 0) {
            return rc;
        }
        if (!b) {
            *out = (k & 1) == 1;
            return 0;
        }
    }
}

/* The number k >= 0 of Bernoulli(exp(-1)) successes before the first failure:
 * P(k) = (1 - 1/e) e^-k. */
static int geometric_exp1(rng *g, uint64_t *out)
{
    uint64_t k = 0;
    for (;;) {
        bool b;
        int rc = bernoulli_exp1(g, 1, 1, &b);
        if (rc != 0) {
            return rc;
        }
        if (!b) {
            *out = k;
            return 0;
        }
        k++;
    }
}

/* Geometric with P(k) = (1 - e^-x) e^(-x k), x = t/s (CKS Algorithm 2): U uniform in [0, s)
 * accepted with probability exp(-U/s), V ~ geometric(e^-1); return floor((V s + U) / t). */
static int geometric_exp(rng *g, uint64_t t, uint64_t s, uint64_t *out)
{
    uint64_t u, v;
    int rc;
    for (;;) {
        bool b;
        if ((rc = uniform(g, s, &u)) != 0 || (rc = bernoulli_exp1(g, u, s, &b)) != 0) {
            return rc;
        }
        if (b) {
            break;
        }
    }
    if ((rc = geometric_exp1(g, &v)) != 0) {
        return rc;
    }
    if (v > (UINT64_MAX - u) / s) {
        return BG_ERR_RANGE;
    }
    *out = (v * s + u) / t;
    return 0;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t x = a % b;
        a = b;
        b = x;
    }
    return a;
}

/* CKS Algorithm 2, last step: sign B, magnitude Y ~ geometric(exp(-t/s)); (B=1, Y=0) is
 * rejected so that 0 is not counted twice. */
static int dlaplace(rng *g, uint64_t s, uint64_t t, int64_t *out)
{
    uint64_t d = gcd_u64(s, t);
    s /= d;
    t /= d;
    for (;;) {
        uint64_t sign, mag;
        int rc;
        if ((rc = uniform(g, 2, &sign)) != 0 || (rc = geometric_exp(g, t, s, &mag)) != 0) {
            return rc;
        }
        if (sign == 1 && mag == 0) {
            continue;
        }
        if (mag > (uint64_t)INT64_MAX) {
            return BG_ERR_RANGE;
        }
        *out = sign == 1 ? -(int64_t)mag : (int64_t)mag;
        return 0;
    }
}

int trust_dlaplace_sample(uint64_t s, uint64_t t, int64_t *out)
{
    if (out == NULL || s == 0 || t == 0 || s > DLAP_MAX || t > DLAP_MAX) {
        return BG_ERR_INVAL;
    }
    rng g;
    rng_init(&g);
    int64_t z = 0;
    int rc = dlaplace(&g, s, t, &z);
    rng_dispose(&g);
    if (rc == 0) {
        *out = z;
    }
    return rc;
}

/* ---- noise ------------------------------------------------------------------------------- */

/* |*out| = a * b, false on overflow or a result above DLAP_MAX. */
static bool scale_num(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > DLAP_MAX / a) {
        return false;
    }
    *out = a * b;
    return *out <= DLAP_MAX;
}

/* v + z clamped at 0; false when it would pass UINT64_MAX. */
static bool add_count(uint64_t v, int64_t z, uint64_t *out)
{
    if (z < 0) {
        uint64_t m = (uint64_t)(-(z + 1)) + 1; /* |z| without overflow at INT64_MIN */
        *out = m >= v ? 0 : v - m;
        return true;
    }
    if (v > UINT64_MAX - (uint64_t)z) {
        return false;
    }
    *out = v + (uint64_t)z;
    return true;
}

int trust_disclosure_noise(space_result *r, const trust_dp *dp)
{
    if (r == NULL || dp == NULL || dp->eps_num == 0 || dp->eps_den == 0 || dp->eps_num > DLAP_MAX) {
        return BG_ERR_INVAL;
    }
    int rc = check_result(r);
    if (rc != 0) {
        return rc;
    }
    if (r->op != SPACE_OP_COUNT && r->op != SPACE_OP_HISTOGRAM && r->op != SPACE_OP_SUM) {
        return BG_ERR_INVAL;
    }
    for (size_t i = 0; i < r->ncells; i++) {
        if (r->cells[i].noisy) {
            return BG_ERR_INVAL;
        }
    }
    const uint64_t sens_count = dp->sens_count == 0 ? 1 : dp->sens_count;
    const bool is_sum = r->op == SPACE_OP_SUM;
    if (is_sum && dp->sens_sum == 0) {
        return BG_ERR_INVAL;
    }
    /* Scales as s/t with t = eps_num: b = sens / (eps_num / eps_den) = sens * eps_den /
     * eps_num. A sum spends epsilon/2 on n and epsilon/2 on the sum, doubling both. */
    const uint64_t split = is_sum ? 2 : 1;
    uint64_t s_count, s_sum = 0, tmp;
    if (!scale_num(sens_count, dp->eps_den, &tmp) || !scale_num(tmp, split, &s_count)) {
        return BG_ERR_RANGE;
    }
    if (is_sum && (!scale_num(dp->sens_sum, dp->eps_den, &tmp) || !scale_num(tmp, split, &s_sum))) {
        return BG_ERR_RANGE;
    }

    /* Draw everything first, so that a failing generator leaves |r| untouched. Per cell:
     * histogram one draw per bin; count one; sum two (n, then sum_units). */
    const size_t nbins = r->op == SPACE_OP_HISTOGRAM ? r->cells[0].nbins : 0;
    const size_t per = nbins > 0 ? nbins : is_sum ? 2 : 1;
    int64_t *z = calloc(r->ncells * per, sizeof(*z));
    if (z == NULL) {
        return BG_ERR_NOMEM;
    }
    rng g;
    rng_init(&g);
    for (size_t i = 0; i < r->ncells && rc == 0; i++) {
        if (r->cells[i].supp != SPACE_SUPP_NONE) {
            continue;
        }
        for (size_t x = 0; x < per && rc == 0; x++) {
            uint64_t s = is_sum && x == 1 ? s_sum : s_count;
            rc = dlaplace(&g, s, dp->eps_num, &z[i * per + x]);
        }
    }
    rng_dispose(&g);

    /* Then check that every noisy value (and their grand total, which the validation of
     * trust_disclosure_apply() needs) fits, and only then write. */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        uint64_t total = 0;
        for (size_t i = 0; i < r->ncells && rc == 0; i++) {
            space_cell *c = &r->cells[i];
            const int64_t *zi = &z[i * per];
            if (c->supp != SPACE_SUPP_NONE) {
                continue;
            }
            uint64_t n = 0, v;
            if (nbins > 0) {
                /* Bins withheld before us stay 0 and hidden; their noisy values are summed
                 * into one virtual bin (true value: n minus the published bins), so n is
                 * still the sum of every noisy bin, clamped: post-processing. */
                uint64_t pub = 0;
                int64_t zw = 0;
                for (size_t j = 0; j < nbins && rc == 0; j++) {
                    if (bin_withheld(c, j)) {
                        if ((zi[j] > 0 && zw > INT64_MAX - zi[j]) ||
                            (zi[j] < 0 && zw < INT64_MIN - zi[j])) {
                            rc = BG_ERR_RANGE;
                        }
                        zw += rc == 0 ? zi[j] : 0;
                        continue;
                    }
                    pub += c->bins[j]; /* validated: no overflow, at most n */
                    if (!add_count(c->bins[j], zi[j], &v) || v > UINT64_MAX - n) {
                        rc = BG_ERR_RANGE;
                        break;
                    }
                    n += v;
                    if (pass == 1) {
                        c->bins[j] = v;
                    }
                }
                if (rc == 0 && (!add_count(c->n - pub, zw, &v) || v > UINT64_MAX - n)) {
                    rc = BG_ERR_RANGE;
                }
                n += rc == 0 ? v : 0;
            } else if (!add_count(c->n, zi[0], &n)) {
                rc = BG_ERR_RANGE;
            }
            if (rc == 0 && n > UINT64_MAX - total) {
                rc = BG_ERR_RANGE;
            }
            total += rc == 0 ? n : 0;
            int64_t sum = c->sum_units;
            if (is_sum && rc == 0) {
                if ((zi[1] > 0 && sum > INT64_MAX - zi[1]) ||
                    (zi[1] < 0 && sum < INT64_MIN - zi[1])) {
                    rc = BG_ERR_RANGE;
                } else {
                    sum += zi[1];
                }
            }
            if (pass == 1 && rc == 0) {
                c->n = n;
                c->sum_units = sum;
                c->noisy = true;
                c->noise_scale = (double)(is_sum ? s_sum : s_count) / (double)dp->eps_num;
            }
        }
    }
    OPENSSL_cleanse(z, r->ncells * per * sizeof(*z));
    free(z);
    return rc;
}
