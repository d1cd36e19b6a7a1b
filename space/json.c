/* space/json.c: client queries in, upstream-protocol states in and out, client answers out.
 * See space/json.h. The answer is computed here from mergeable states only: nothing in this
 * file sees a row. */
#include "space/json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/bytes.h"
#include "space/agg.h"

/* ---- client query -> space_query ------------------------------------------------------------ */

static int copy_name(char *dst, const json_t *v, const char *what, bg_errbuf *eb)
{
    const char *s = json_string_value(v);
    if (s == NULL || s[0] == 0 || strlen(s) >= SPACE_NAME_MAX) {
        return bg_errf(eb, BG_ERR_INVAL, "\"%s\" must be a non-empty string of at most %d bytes",
                       what, SPACE_NAME_MAX - 1);
    }
    bg_strlcpy(dst, s, SPACE_NAME_MAX);
    return 0;
}

static int numbers(const json_t *a, double *out, size_t cap, size_t *n, const char *what,
                   bg_errbuf *eb)
{
    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > cap) {
        return bg_errf(eb, BG_ERR_INVAL, "\"%s\" must be an array of 1 to %zu numbers", what, cap);
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            return bg_errf(eb, BG_ERR_INVAL, "\"%s\"[%zu] is not a finite number", what, i);
        }
        out[i] = json_number_value(v);
    }
    *n = json_array_size(a);
    return 0;
}

/* One value of a filter into slot |i| of |f|; all values of one filter have one type. */
static int filter_value(space_filter *f, size_t i, const json_t *v, size_t wi, bg_errbuf *eb)
{
    bool cat = json_is_string(v);
    if (!cat && !(json_is_number(v) && isfinite(json_number_value(v)))) {
        return bg_errf(eb, BG_ERR_INVAL, "where[%zu]: values are numbers or category names", wi);
    }
    if (i > 0 && cat != f->is_cat) {
        return bg_errf(eb, BG_ERR_INVAL, "where[%zu]: mixes numbers and category names", wi);
    }
    f->is_cat = cat;
    if (cat) {
        const char *s = json_string_value(v);
        if (strlen(s) >= SPACE_NAME_MAX) {
            return bg_errf(eb, BG_ERR_INVAL, "where[%zu]: category name too long", wi);
        }
        bg_strlcpy(f->cat[i], s, SPACE_NAME_MAX);
    } else {
        f->num[i] = json_number_value(v);
    }
    return 0;
}

static int parse_where(const json_t *a, space_query *q, bg_errbuf *eb)
{
    if (!json_is_array(a) || json_array_size(a) > SPACE_MAX_FILTERS) {
        return bg_errf(eb, BG_ERR_INVAL, "\"where\" must be an array of at most %d "
                       "[field, comparison, value] filters", SPACE_MAX_FILTERS);
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *t = json_array_get(a, i);
        space_filter *f = &q->where[i];
        if (!json_is_array(t) || json_array_size(t) != 3) {
            return bg_errf(eb, BG_ERR_INVAL, "where[%zu] must be [field, comparison, value]", i);
        }
        char what[32];
        snprintf(what, sizeof(what), "where[%zu][0]", i);
        int rv = copy_name(f->field, json_array_get(t, 0), what, eb);
        if (rv != 0) {
            return rv;
        }
        const char *c = json_string_value(json_array_get(t, 1));
        f->cmp = c != NULL ? space_cmp_parse(c) : (space_cmp)0;
        if (f->cmp == 0) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "where[%zu][1]: comparison must be one of =, !=, <, <=, >, >=, in", i);
        }
        const json_t *v = json_array_get(t, 2);
        if (f->cmp == SPACE_CMP_IN) {
            if (!json_is_array(v) || json_array_size(v) == 0 ||
                json_array_size(v) > SPACE_MAX_IN) {
                return bg_errf(eb, BG_ERR_INVAL, "where[%zu][2]: \"in\" takes an array of 1 to "
                               "%d values", i, SPACE_MAX_IN);
            }
            for (size_t j = 0; j < json_array_size(v); j++) {
                if ((rv = filter_value(f, j, json_array_get(v, j), i, eb)) != 0) {
                    return rv;
                }
            }
            f->nvals = json_array_size(v);
        } else {
            if ((rv = filter_value(f, 0, v, i, eb)) != 0) {
                return rv;
            }
            f->nvals = 1;
        }
    }
    q->nwhere = json_array_size(a);
    return 0;
}

int space_query_from_json(const json_t *root, space_query *q, bg_errbuf *eb)
{
    static const char *const caller_keys[] = {"dataset", "contract", "contracts", "deadline_ms",
                                              "query_id"};
    memset(q, 0, sizeof(*q));
    if (!json_is_object(root)) {
        return bg_errf(eb, BG_ERR_INVAL, "the query must be a JSON object");
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v)
    {
        static const char *const known[] = {"op", "operation", "field", "fields",
                                            "edges", "probs", "where", "group_by"};
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && !ok; i++) {
            ok = strcmp(key, known[i]) == 0;
        }
        for (size_t i = 0; i < sizeof(caller_keys) / sizeof(caller_keys[0]) && !ok; i++) {
            ok = strcmp(key, caller_keys[i]) == 0;
        }
        if (!ok) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "unknown member \"%.60s\"; a query has dataset, contract or contracts, "
                           "op, field, fields, edges, probs, where, group_by",
                           key);
        }
    }
    const json_t *op = json_object_get(root, "op");
    if (op == NULL) {
        op = json_object_get(root, "operation");
    }
    if (op == NULL) {
        q->op = SPACE_OP_COUNT;
    } else if (!json_is_string(op) || (q->op = space_op_parse(json_string_value(op))) == 0) {
        return bg_errf(eb, BG_ERR_INVAL, "\"op\" must be one of count, sum, mean, histogram, "
                       "quantiles, agreement");
    }
    int rv;
    const json_t *f = json_object_get(root, "field");
    if (f != NULL && (rv = copy_name(q->field, f, "field", eb)) != 0) {
        return rv;
    }
    const json_t *fs = json_object_get(root, "fields");
    if (fs != NULL) {
        if (!json_is_array(fs) || json_array_size(fs) != 2 || f != NULL) {
            return bg_errf(eb, BG_ERR_INVAL, "\"fields\" must be [method, reference] (two field "
                           "names), instead of \"field\"");
        }
        if ((rv = copy_name(q->field, json_array_get(fs, 0), "fields[0]", eb)) != 0 ||
            (rv = copy_name(q->field2, json_array_get(fs, 1), "fields[1]", eb)) != 0) {
            return rv;
        }
    }
    if (q->op == SPACE_OP_AGREEMENT && fs == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "agreement takes \"fields\": [method, reference]");
    }
    if (q->op != SPACE_OP_AGREEMENT && fs != NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "\"fields\" is for agreement; %s takes \"field\"",
                       space_op_name(q->op));
    }
    if (q->op == SPACE_OP_COUNT && f != NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "count takes no \"field\"");
    }
    const json_t *e = json_object_get(root, "edges");
    if ((e != NULL) != (q->op == SPACE_OP_HISTOGRAM)) {
        return bg_errf(eb, BG_ERR_INVAL, "\"edges\" %s", e != NULL ? "is for histogram only"
                                                                   : "is required for histogram");
    }
    if (e != NULL && (rv = numbers(e, q->edges, SPACE_MAX_EDGES, &q->nedges, "edges", eb)) != 0) {
        return rv;
    }
    const json_t *p = json_object_get(root, "probs");
    if ((p != NULL) != (q->op == SPACE_OP_QUANTILES)) {
        return bg_errf(eb, BG_ERR_INVAL, "\"probs\" %s", p != NULL ? "is for quantiles only"
                                                                   : "is required for quantiles");
    }
    if (p != NULL && (rv = numbers(p, q->probs, SPACE_MAX_PROBS, &q->nprobs, "probs", eb)) != 0) {
        return rv;
    }
    const json_t *w = json_object_get(root, "where");
    if (w != NULL && (rv = parse_where(w, q, eb)) != 0) {
        return rv;
    }
    const json_t *g = json_object_get(root, "group_by");
    if (json_is_string(g)) {
        rv = copy_name(q->group_by[0], g, "group_by", eb);
        q->ngroup = 1;
        return rv;
    }
    if (g != NULL) {
        if (!json_is_array(g) || json_array_size(g) > SPACE_MAX_GROUP_BY) {
            return bg_errf(eb, BG_ERR_INVAL, "\"group_by\" takes at most %d field names "
                           "(got %zu)", SPACE_MAX_GROUP_BY,
                           json_is_array(g) ? json_array_size(g) : (size_t)0);
        }
        for (size_t i = 0; i < json_array_size(g); i++) {
            if ((rv = copy_name(q->group_by[i], json_array_get(g, i), "group_by", eb)) != 0) {
                return rv;
            }
        }
        q->ngroup = json_array_size(g);
    }
    return 0;
}

json_t *space_query_to_json(const space_query *q)
{
    json_t *j = json_pack("{s:s,s:s}", "dataset", q->dataset, "op", space_op_name(q->op));
    if (j == NULL) {
        return NULL;
    }
    if (q->op == SPACE_OP_AGREEMENT) {
        json_object_set_new(j, "fields", json_pack("[s,s]", q->field, q->field2));
    } else if (q->field[0]) {
        json_object_set_new(j, "field", json_string(q->field));
    }
    if (q->nedges > 0) {
        json_t *a = json_array();
        for (size_t i = 0; i < q->nedges; i++) {
            json_array_append_new(a, json_real(q->edges[i]));
        }
        json_object_set_new(j, "edges", a);
    }
    if (q->nprobs > 0) {
        json_t *a = json_array();
        for (size_t i = 0; i < q->nprobs; i++) {
            json_array_append_new(a, json_real(q->probs[i]));
        }
        json_object_set_new(j, "probs", a);
    }
    json_t *w = json_array();
    for (size_t i = 0; i < q->nwhere; i++) {
        const space_filter *f = &q->where[i];
        json_t *vals = json_array();
        for (size_t k = 0; k < f->nvals; k++) {
            json_array_append_new(vals, f->is_cat ? json_string(f->cat[k]) : json_real(f->num[k]));
        }
        json_t *val = vals;
        if (f->cmp != SPACE_CMP_IN) {
            val = json_incref(json_array_get(vals, 0));
            json_decref(vals);
        }
        json_array_append_new(w, json_pack("[s,s,o]", f->field, space_cmp_name(f->cmp), val));
    }
    json_object_set_new(j, "where", w);
    json_t *g = json_array();
    for (size_t i = 0; i < q->ngroup; i++) {
        json_array_append_new(g, json_string(q->group_by[i]));
    }
    json_object_set_new(j, "group_by", g);
    return j;
}

/* ---- cell layout ---------------------------------------------------------------------------- */

/* The group_by fields of |q| in |s|: |gf|[i], and the number of cells (every combination). */
static size_t layout(const space_query *q, const space_schema *s, const space_field **gf)
{
    size_t cells = 1;
    for (size_t g = 0; g < q->ngroup; g++) {
        int i = space_schema_field(s, q->group_by[g]);
        gf[g] = i >= 0 ? &s->fields[i] : NULL;
        cells *= gf[g] != NULL ? gf[g]->ncats : 0;
    }
    return cells;
}

/* ---- upstream protocol: states -------------------------------------------------------------- */

/* Building a document: every step can fail for memory, and one failure fails the whole
 * document (NULL), never leaves a half-built one. These take |v|'s reference in every case. */
static bool put(json_t *o, const char *k, json_t *v)
{
    return o != NULL && v != NULL ? json_object_set_new(o, k, v) == 0 : (json_decref(v), false);
}

static bool push(json_t *a, json_t *v)
{
    return a != NULL && v != NULL ? json_array_append_new(a, v) == 0 : (json_decref(v), false);
}

/* |o| when every step succeeded, else NULL (|o| released). */
static json_t *done(json_t *o, bool ok)
{
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *u64_array(const uint64_t *v, size_t n)
{
    json_t *a = json_array();
    bool ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        ok = push(a, json_integer((json_int_t)v[i]));
    }
    return done(a, ok);
}

json_t *space_result_state_to_json(const space_result *r)
{
    json_t *cells = json_array();
    bool ok = cells != NULL;
    for (size_t i = 0; ok && i < r->ncells; i++) {
        const space_cell *c = &r->cells[i];
        json_t *key = json_array();
        ok = key != NULL;
        for (size_t g = 0; ok && g < r->ngroup; g++) {
            ok = push(key, json_integer(c->key[g]));
        }
        json_t *o = json_pack("{s:o,s:I}", "key", done(key, ok), "n", (json_int_t)c->n);
        ok = o != NULL;
        switch (r->op) {
        case SPACE_OP_SUM:
            ok = ok && put(o, "sum_units", json_integer(c->sum_units));
            break;
        case SPACE_OP_MEAN:
            ok = ok && put(o, "mean", json_real(c->mom.mean)) &&
                 put(o, "m2", json_real(c->mom.m2));
            break;
        case SPACE_OP_HISTOGRAM:
        case SPACE_OP_QUANTILES:
            ok = ok && put(o, "bins", u64_array(c->bins, c->nbins));
            break;
        case SPACE_OP_AGREEMENT:
            ok = ok &&
                 put(o, "agree",
                     json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "d_mean",
                               c->agree.d_mean, "d_m2", c->agree.d_m2, "a_mean", c->agree.a_mean,
                               "a_m2", c->agree.a_m2, "c_ad", c->agree.c_ad, "x_mean",
                               c->agree.x_mean, "x_m2", c->agree.x_m2, "y_mean", c->agree.y_mean,
                               "y_m2", c->agree.y_m2, "c_xy", c->agree.c_xy));
            break;
        default:
            break;
        }
        if (ok && c->supp != SPACE_SUPP_NONE) {
            ok = put(o, "suppressed", json_string(space_supp_name(c->supp)));
        }
        ok = ok ? push(cells, o) : (json_decref(o), false);
    }
    if (!ok) {
        json_decref(cells);
        return NULL;
    }
    return json_pack("{s:{s:s,s:f,s:f,s:o}}", "state", "op", space_op_name(r->op), "resolution",
                     r->resolution, "grid_lo", r->grid_lo, "cells", cells);
}

static bool get_u64(const json_t *o, const char *k, uint64_t *out)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool get_real(const json_t *o, const char *k, double *out)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        return false;
    }
    *out = json_number_value(v);
    return true;
}

static int cell_from_json(const json_t *o, const space_query *q, space_cell *c, bg_errbuf *eb)
{
    const json_t *sp = json_object_get(o, "suppressed");
    if (sp != NULL) { /* the data space withheld it itself: kept withheld, whatever else */
        static const space_supp known[] = {SPACE_SUPP_BELOW_K, SPACE_SUPP_COMPLEMENTARY,
                                           SPACE_SUPP_DIFFERENCING, SPACE_SUPP_DOMINANCE};
        const char *why = json_string_value(sp);
        for (size_t i = 0; why != NULL && i < sizeof(known) / sizeof(known[0]); i++) {
            if (strcmp(why, space_supp_name(known[i])) == 0) {
                c->supp = known[i];
            }
        }
        if (c->supp == SPACE_SUPP_NONE) {
            return bg_errf(eb, BG_ERR_INVAL, "a cell's \"suppressed\" must be below_k, "
                           "complementary, differencing or dominance");
        }
        return 0; /* its values stay zero */
    }
    if (!get_u64(o, "n", &c->n)) {
        return bg_errf(eb, BG_ERR_INVAL, "a cell has no count \"n\"");
    }
    switch (q->op) {
    case SPACE_OP_COUNT:
        return 0;
    case SPACE_OP_SUM: {
        const json_t *v = json_object_get(o, "sum_units");
        if (!json_is_integer(v)) {
            return bg_errf(eb, BG_ERR_INVAL, "a sum cell has no integer \"sum_units\"");
        }
        c->sum_units = (int64_t)json_integer_value(v);
        return 0;
    }
    case SPACE_OP_MEAN:
        c->mom.n = c->n;
        if (!get_real(o, "mean", &c->mom.mean) || !get_real(o, "m2", &c->mom.m2) ||
            c->mom.m2 < 0) {
            return bg_errf(eb, BG_ERR_INVAL, "a mean cell needs finite \"mean\" and \"m2\" >= 0");
        }
        return 0;
    case SPACE_OP_HISTOGRAM:
    case SPACE_OP_QUANTILES: {
        const json_t *b = json_object_get(o, "bins");
        if (!json_is_array(b) || json_array_size(b) != c->nbins) {
            return bg_errf(eb, BG_ERR_INVAL, "a %s cell needs \"bins\" of length %zu",
                           space_op_name(q->op), c->nbins);
        }
        for (size_t i = 0; i < c->nbins; i++) {
            const json_t *v = json_array_get(b, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                return bg_errf(eb, BG_ERR_INVAL, "bins[%zu] is not a count", i);
            }
            c->bins[i] = (uint64_t)json_integer_value(v);
        }
        return 0;
    }
    case SPACE_OP_AGREEMENT: {
        const json_t *a = json_object_get(o, "agree");
        space_agree *g = &c->agree;
        g->n = c->n;
        if (!get_real(a, "d_mean", &g->d_mean) || !get_real(a, "d_m2", &g->d_m2) ||
            !get_real(a, "a_mean", &g->a_mean) || !get_real(a, "a_m2", &g->a_m2) ||
            !get_real(a, "c_ad", &g->c_ad) || !get_real(a, "x_mean", &g->x_mean) ||
            !get_real(a, "x_m2", &g->x_m2) || !get_real(a, "y_mean", &g->y_mean) ||
            !get_real(a, "y_m2", &g->y_m2) || !get_real(a, "c_xy", &g->c_xy)) {
            return bg_errf(eb, BG_ERR_INVAL, "an agreement cell needs \"agree\" with every "
                           "mean, m2 and co-moment");
        }
        return 0;
    }
    }
    return bg_errf(eb, BG_ERR_INVAL, "unknown operation");
}

int space_result_state_from_json(const json_t *j, const space_query *q, space_result *r,
                                 bg_errbuf *eb)
{
    const space_schema *s = space_schema_find(q->dataset);
    const json_t *st = json_object_get(j, "state");
    if (s == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "unknown dataset %s", q->dataset);
    }
    if (!json_is_object(st)) {
        return bg_errf(eb, BG_ERR_INVAL, "the data space answered without an aggregate "
                       "\"state\"%s", json_object_get(j, "rows") ? " (it sent rows)" : "");
    }
    const char *op = json_string_value(json_object_get(st, "op"));
    if (op == NULL || space_op_parse(op) != q->op) {
        return bg_errf(eb, BG_ERR_INVAL, "the state is not of operation %s", space_op_name(q->op));
    }
    const space_field *gf[SPACE_MAX_GROUP_BY] = {NULL, NULL};
    size_t ncells = layout(q, s, gf);
    size_t nbins = 0;
    int fi = space_schema_field(s, q->field);
    if (q->op == SPACE_OP_HISTOGRAM) {
        nbins = q->nedges + 1;
    } else if (q->op == SPACE_OP_QUANTILES && fi >= 0) {
        nbins = space_field_grid_bins(&s->fields[fi]);
    }
    int rv = space_result_init(r, q->op, ncells, nbins);
    if (rv != 0) {
        return bg_errf(eb, rv, "result of %zu cells: %s", ncells, bg_strerror(rv));
    }
    r->ngroup = q->ngroup;
    for (size_t g = 0; g < q->ngroup; g++) {
        bg_strlcpy(r->group_by[g], q->group_by[g], SPACE_NAME_MAX);
    }
    if (fi >= 0) {
        r->resolution = s->fields[fi].resolution;
        r->grid_lo = s->fields[fi].lo;
    }
    for (size_t i = 0; i < ncells; i++) { /* key order: key[0] major */
        size_t rest = i;
        for (size_t g = q->ngroup; g-- > 0;) {
            r->cells[i].key[g] = (uint16_t)(rest % gf[g]->ncats);
            rest /= gf[g]->ncats;
        }
    }
    const json_t *cells = json_object_get(st, "cells");
    if (!json_is_array(cells) || json_array_size(cells) > ncells) {
        space_result_dispose(r);
        return bg_errf(eb, BG_ERR_INVAL, "\"cells\" must be an array of at most %zu cells",
                       ncells);
    }
    uint8_t seen[SPACE_MAX_CELLS] = {0};
    for (size_t i = 0; i < json_array_size(cells); i++) {
        const json_t *o = json_array_get(cells, i);
        const json_t *key = json_object_get(o, "key");
        if (!json_is_array(key) || json_array_size(key) != q->ngroup) {
            space_result_dispose(r);
            return bg_errf(eb, BG_ERR_INVAL, "cells[%zu].key must hold %zu category codes", i,
                           q->ngroup);
        }
        size_t idx = 0;
        for (size_t g = 0; g < q->ngroup; g++) {
            const json_t *k = json_array_get(key, g);
            if (!json_is_integer(k) || json_integer_value(k) < 0 ||
                (size_t)json_integer_value(k) >= gf[g]->ncats) {
                space_result_dispose(r);
                return bg_errf(eb, BG_ERR_INVAL, "cells[%zu].key[%zu] is not a category code of "
                               "%s", i, g, q->group_by[g]);
            }
            idx = idx * gf[g]->ncats + (size_t)json_integer_value(k);
        }
        if (seen[idx]++) {
            space_result_dispose(r);
            return bg_errf(eb, BG_ERR_INVAL, "cells[%zu] repeats a key", i);
        }
        if ((rv = cell_from_json(o, q, &r->cells[idx], eb)) != 0) {
            space_result_dispose(r);
            return rv;
        }
    }
    return 0;
}

/* ---- the client's answer ------------------------------------------------------------------- */

static json_t *suppressed(space_supp why)
{
    return json_pack("{s:s}", "suppressed", space_supp_name(why));
}

static json_t *noisy(json_t *value, const space_cell *c)
{
    if (!c->noisy) {
        return value;
    }
    return json_pack("{s:o,s:{s:s,s:f}}", "value", value, "noise", "mechanism",
                     "discrete_laplace", "scale", c->noise_scale);
}

static double round_to(double v, double res)
{
    return res > 0 ? round(v / res) * res : v;
}

/* A figure that may be undefined (NaN, e.g. a regression slope over equal averages, or Lin's
 * CCC of two constant methods): the number, or null. JSON has no NaN, and jansson refuses it. */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* The agreement figures of one cell, plus heterogeneity over the legs' cells with its key. */
static json_t *agreement_json(const space_cell *c, const space_result *const *legs, size_t nlegs,
                              size_t cell_idx)
{
    space_ba ba;
    if (space_agree_finish(&c->agree, &ba) != 0) {
        return json_pack("{s:I,s:s}", "n", (json_int_t)c->agree.n, "error",
                         "fewer than 3 pairs");
    }
    json_t *o = json_pack(
        "{s:I,s:o,s:[o,o],s:o,s:[o,o],s:{s:[o,o],s:[o,o]},s:{s:o,s:o,s:o},s:o}", "n",
        (json_int_t)ba.n, "bias", num(ba.bias), "bias_ci95", num(ba.bias_ci[0]),
        num(ba.bias_ci[1]), "sd_differences", num(ba.sd), "limits_of_agreement", num(ba.loa[0]),
        num(ba.loa[1]), "loa_ci95", "lower", num(ba.loa_lower_ci[0]), num(ba.loa_lower_ci[1]),
        "upper", num(ba.loa_upper_ci[0]), num(ba.loa_upper_ci[1]), "proportional_bias", "slope",
        num(ba.slope), "intercept", num(ba.intercept), "slope_se", num(ba.slope_se), "lin_ccc",
        num(ba.ccc));
    if (nlegs > 1 && o != NULL) {
        space_agree sites[64];
        size_t n = 0;
        for (size_t l = 0; l < nlegs && n < 64; l++) {
            if (cell_idx < legs[l]->ncells && legs[l]->cells[cell_idx].supp == SPACE_SUPP_NONE) {
                sites[n++] = legs[l]->cells[cell_idx].agree;
            }
        }
        space_het h;
        if (space_agree_heterogeneity(sites, n, &h) == 0 &&
            !put(o, "heterogeneity",
                 json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "cities", (json_int_t)h.k,
                           "cochran_q", num(h.q), "i2", num(h.i2), "tau2", num(h.tau2),
                           "random_effects_bias", num(h.re_bias), "random_effects_bias_se",
                           num(h.re_bias_se), "s_within", num(h.s_within), "s_total",
                           num(h.s_total)))) {
            return done(o, false);
        }
    }
    return o;
}

static json_t *cell_json(const space_query *q, const space_result *r, size_t idx,
                         const space_result *const *legs, size_t nlegs)
{
    const space_cell *c = &r->cells[idx];
    if (c->supp != SPACE_SUPP_NONE) { /* every figure of the cell, typed, never a number */
        static const char *const main_member[] = {
            [SPACE_OP_COUNT] = "count",         [SPACE_OP_SUM] = "sum",
            [SPACE_OP_MEAN] = "mean",           [SPACE_OP_HISTOGRAM] = "bins",
            [SPACE_OP_QUANTILES] = "quantiles", [SPACE_OP_AGREEMENT] = "bias",
        };
        json_t *o = json_pack("{s:o}", main_member[q->op], suppressed(c->supp));
        return done(o, o != NULL && (q->op == SPACE_OP_COUNT || put(o, "n", suppressed(c->supp))));
    }
    switch (q->op) {
    case SPACE_OP_COUNT:
        return json_pack("{s:o}", "count", noisy(json_integer((json_int_t)c->n), c));
    case SPACE_OP_SUM:
        return json_pack("{s:o,s:o}", "n",
                         c->noisy ? json_pack("{s:I,s:{s:s}}", "value", (json_int_t)c->n,
                                              "noise", "mechanism", "discrete_laplace")
                                  : json_integer((json_int_t)c->n),
                         "sum",
                         noisy(json_real(round_to((double)c->sum_units * r->resolution,
                                                  r->resolution)),
                               c));
    case SPACE_OP_MEAN: {
        double var = space_moments_variance(&c->mom);
        return json_pack("{s:I,s:o,s:o,s:o}", "n", (json_int_t)c->mom.n, "mean",
                         num(c->mom.mean), "variance", num(var), "sd", num(sqrt(var)));
    }
    case SPACE_OP_HISTOGRAM: {
        json_t *bins = json_array();
        bool ok = bins != NULL;
        for (size_t b = 0; ok && b < c->nbins; b++) {
            json_t *lo = b == 0 ? json_null() : json_real(q->edges[b - 1]);
            json_t *hi = b + 1 == c->nbins ? json_null() : json_real(q->edges[b]);
            json_t *cnt = c->bin_supp != NULL && c->bin_supp[b] != SPACE_SUPP_NONE
                              ? suppressed((space_supp)c->bin_supp[b])
                              : noisy(json_integer((json_int_t)c->bins[b]), c);
            ok = push(bins, json_pack("{s:o,s:o,s:o}", "lo", lo, "hi", hi, "count", cnt));
        }
        return json_pack("{s:o,s:o}", "n", noisy(json_integer((json_int_t)c->n), c), "bins",
                         done(bins, ok));
    }
    case SPACE_OP_QUANTILES: {
        double vals[SPACE_MAX_PROBS];
        if (c->has_qvals) {
            memcpy(vals, c->qvals, sizeof(vals));
        } else if (c->n == 0 || space_grid_quantiles(c->bins, c->nbins, r->grid_lo,
                                                     r->resolution, q->probs, q->nprobs,
                                                     vals) != 0) {
            return json_pack("{s:I,s:n}", "n", (json_int_t)c->n, "quantiles");
        }
        json_t *qs = json_array();
        bool ok = qs != NULL;
        for (size_t i = 0; ok && i < q->nprobs; i++) {
            ok = push(qs, json_pack("{s:f,s:o}", "p", q->probs[i], "value",
                                    num(round_to(vals[i], r->resolution))));
        }
        return json_pack("{s:I,s:o,s:s,s:f}", "n", (json_int_t)c->n, "quantiles", done(qs, ok),
                         "method", "exact_fine_grid", "resolution", r->resolution);
    }
    case SPACE_OP_AGREEMENT:
        return agreement_json(c, legs, nlegs, idx);
    }
    return json_null();
}

json_t *space_answer_json(const space_query *q, const space_schema *schema,
                          const space_result *merged, const space_result *const *legs,
                          size_t nlegs)
{
    if (q->ngroup == 0) {
        return merged->ncells == 1 ? cell_json(q, merged, 0, legs, nlegs)
                                   : json_pack("{s:s}", "error", "no result");
    }
    const space_field *gf[SPACE_MAX_GROUP_BY] = {NULL, NULL};
    layout(q, schema, gf);
    json_t *groups = json_array();
    bool ok = groups != NULL;
    for (size_t i = 0; ok && i < merged->ncells; i++) {
        json_t *o = cell_json(q, merged, i, legs, nlegs); /* an object, or NULL: out of memory */
        json_t *key = json_object();
        ok = o != NULL && key != NULL;
        for (size_t g = 0; ok && g < q->ngroup; g++) {
            uint16_t k = merged->cells[i].key[g];
            ok = put(key, q->group_by[g],
                     gf[g] != NULL && k < gf[g]->ncats ? json_string(gf[g]->cats[k])
                                                       : json_integer(k));
        }
        ok = ok ? put(o, "group", key) : (json_decref(key), false);
        ok = ok ? push(groups, o) : (json_decref(o), false);
    }
    return json_pack("{s:o}", "groups", done(groups, ok));
}
