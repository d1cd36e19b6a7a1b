/* tests/unit/space/test_wire.c: space/wire.c. Round trips of queries, results (every op,
 * plain and masked bins, per-bin suppression, final quantiles), legs and leg answers; every
 * decoder rule broken by a message built directly with the generated protobuf-c types; the
 * encoders refusing what no decoder would take; truncation at every length; the allocation
 * budget against cheap-to-send, costly-to-unpack messages; and every allocation failing in
 * turn. wire.c is included so that its allocations can be failed one by one. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- failing allocator (wire.c is compiled here against it) ------------------------------ */

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
#include "space/wire.c"
#include "space/agg.h"
#include "asserts.h"
#undef malloc
#undef calloc

/* ---- fixtures ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

/* A query of |op| with a numeric and a categorical filter and two group_by fields. */
static void make_query(space_query *q, space_op op)
{
    memset(q, 0, sizeof(*q));
    strcpy(q->dataset, "neonatal-bilirubin");
    q->op = op;
    if (op != SPACE_OP_COUNT) {
        strcpy(q->field, "tcb");
    }
    if (op == SPACE_OP_AGREEMENT) {
        strcpy(q->field2, "tsb");
    }
    if (op == SPACE_OP_HISTOGRAM) {
        const double e[] = {0, 50, 100, 150.5, 200, 250, 300};
        memcpy(q->edges, e, sizeof(e));
        q->nedges = 7;
    }
    if (op == SPACE_OP_QUANTILES) {
        const double p[] = {0.05, 0.25, 0.5, 0.75, 0.95};
        memcpy(q->probs, p, sizeof(p));
        q->nprobs = 5;
    }
    strcpy(q->where[0].field, "age_hours");
    q->where[0].cmp = SPACE_CMP_GE;
    q->where[0].num[0] = 24.5;
    q->where[0].nvals = 1;
    strcpy(q->where[1].field, "sex");
    q->where[1].cmp = SPACE_CMP_IN;
    q->where[1].is_cat = true;
    strcpy(q->where[1].cat[0], "f");
    strcpy(q->where[1].cat[1], "m");
    strcpy(q->where[1].cat[2], "不详"); /* UTF-8 category names travel as they are */
    q->where[1].nvals = 3;
    strcpy(q->where[2].field, "gest_weeks");
    q->where[2].cmp = SPACE_CMP_IN;
    q->where[2].num[0] = 35;
    q->where[2].num[1] = -0.25;
    q->where[2].nvals = 2;
    q->nwhere = 3;
    strcpy(q->group_by[0], "site");
    strcpy(q->group_by[1], "sex");
    q->ngroup = 2;
}


/* A result of |op| with |ncells| cells keyed (0,0), (0,1), ..., holding plausible states;
 * histogram and quantile cells get |nbins| bins (random 64-bit values when |masked|). */
static void make_result(space_result *r, space_op op, size_t ncells, size_t nbins, bool masked)
{
    assert_int_equal(space_result_init(r, op, ncells, nbins), 0);
    r->ngroup = 2;
    strcpy(r->group_by[0], "site");
    strcpy(r->group_by[1], "sex");
    r->resolution = op == SPACE_OP_SUM || op == SPACE_OP_QUANTILES ? 0.1 : 0.0;
    r->grid_lo = op == SPACE_OP_QUANTILES ? -12.5 : 0.0;
    r->rows_scanned = 123456;
    for (size_t i = 0; i < ncells; i++) {
        space_cell *c = &r->cells[i];
        c->key[0] = (uint16_t)(i / 3);
        c->key[1] = (uint16_t)(i % 3);
        c->n = 100 + i;
        if (op == SPACE_OP_SUM) {
            c->sum_units = (int64_t)(i * 1000) - 7777;
        }
        if (op == SPACE_OP_MEAN) {
            for (int k = 0; k < 5; k++) {
                space_moments_add(&c->mom, (double)k * 1.5 + (double)i);
            }
        }
        if (op == SPACE_OP_AGREEMENT) {
            c->agree = (space_agree){.n = c->n,
                                     .d_mean = -1.25,
                                     .d_m2 = 40.5,
                                     .a_mean = 150.0,
                                     .a_m2 = 9000.0,
                                     .c_ad = -12.0,
                                     .x_mean = 149.375,
                                     .x_m2 = 9100.0,
                                     .y_mean = 150.625,
                                     .y_m2 = 8900.0,
                                     .c_xy = 8800.0};
        }
        for (size_t j = 0; j < c->nbins; j++) {
            c->bins[j] = masked ? rng() : (j % 7 == 0 ? j : 0);
        }
    }
}

static void assert_result_equal(const space_result *a, const space_result *b)
{
    assert_int_equal(a->op, b->op);
    assert_memory_equal(&a->resolution, &b->resolution, sizeof(double));
    assert_memory_equal(&a->grid_lo, &b->grid_lo, sizeof(double));
    assert_int_equal(a->ngroup, b->ngroup);
    for (size_t g = 0; g < a->ngroup; g++) {
        assert_string_equal(a->group_by[g], b->group_by[g]);
    }
    assert_int_equal(a->ncells, b->ncells);
    for (size_t i = 0; i < a->ncells; i++) {
        const space_cell *c = &a->cells[i], *d = &b->cells[i];
        for (size_t g = 0; g < a->ngroup; g++) {
            assert_int_equal(c->key[g], d->key[g]);
        }
        assert_int_equal(c->n, d->n);
        assert_int_equal(c->sum_units, d->sum_units);
        assert_memory_equal(&c->mom, &d->mom, sizeof(c->mom));
        assert_memory_equal(&c->agree, &d->agree, sizeof(c->agree));
        assert_int_equal(c->nbins, d->nbins);
        if (c->nbins > 0) {
            assert_memory_equal(c->bins, d->bins, c->nbins * sizeof(uint64_t));
        }
        assert_int_equal(c->bin_supp != NULL, d->bin_supp != NULL);
        if (c->bin_supp != NULL) {
            assert_memory_equal(c->bin_supp, d->bin_supp, c->nbins);
        }
        assert_int_equal(c->has_qvals, d->has_qvals);
        if (c->has_qvals) {
            assert_memory_equal(c->qvals, d->qvals, sizeof(c->qvals));
        }
        assert_int_equal(c->supp, d->supp);
        assert_int_equal(c->noisy, d->noisy);
        assert_memory_equal(&c->noise_scale, &d->noise_scale, sizeof(double));
    }
}

/* Encodes |r|, decodes it again and compares; returns the encoded size. */
static size_t result_round_trip(const space_result *r)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(space_result_encode(r, &buf, &len), 0);
    space_result back;
    assert_int_equal(space_result_decode(buf, len, &back), 0);
    assert_result_equal(r, &back);
    assert_int_equal(back.rows_scanned, 0); /* stays at the provider */
    space_result_dispose(&back);
    free(buf);
    return len;
}

/* ---- round trips ---------------------------------------------------------------------------- */

static void test_space_query_encode_round_trip_every_op(void **state)
{
    (void)state;
    for (int op = SPACE_OP_COUNT; op <= SPACE_OP_AGREEMENT; op++) {
        space_query q, back;
        make_query(&q, (space_op)op);
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(space_query_encode(&q, &buf, &len), 0);
        assert_true(len > 0);
        memset(&back, 0xa5, sizeof(back));
        assert_int_equal(space_query_decode(buf, len, &back), 0);
        assert_query_equal(&q, &back);
        free(buf);
    }
    /* the smallest query: a count without filters */
    space_query q, back;
    memset(&q, 0, sizeof(q));
    strcpy(q.dataset, "d");
    q.op = SPACE_OP_COUNT;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(space_query_encode(&q, &buf, &len), 0);
    assert_int_equal(space_query_decode(buf, len, &back), 0);
    assert_query_equal(&q, &back);
    free(buf);
}

static void test_space_result_encode_round_trip_every_op(void **state)
{
    (void)state;
    for (int op = SPACE_OP_COUNT; op <= SPACE_OP_AGREEMENT; op++) {
        size_t nbins = op == SPACE_OP_HISTOGRAM ? 8 : op == SPACE_OP_QUANTILES ? 3001 : 0;
        space_result r;
        make_result(&r, (space_op)op, 7, nbins, false);
        result_round_trip(&r);
        space_result_dispose(&r);
    }
    /* no cells at all (a grouped query that matched nothing) */
    space_result r;
    make_result(&r, SPACE_OP_COUNT, 0, 0, false);
    result_round_trip(&r);
    r.ngroup = 0;
    result_round_trip(&r);
    space_result_dispose(&r);
}

static void test_space_result_encode_masked_bins_fixed64(void **state)
{
    (void)state;
    space_result plain, masked;
    make_result(&plain, SPACE_OP_QUANTILES, 2, 5000, false);
    make_result(&masked, SPACE_OP_QUANTILES, 2, 5000, true);
    masked.cells[0].bins[0] = 0;
    masked.cells[0].bins[1] = UINT64_MAX;
    size_t lp = result_round_trip(&plain);
    size_t lm = result_round_trip(&masked);
    /* masked grids go as fixed64 (8 bytes a bin), not 10-byte varints */
    assert_true(lm <= 2 * 5000 * 8 + 600);
    assert_true(lp < 2 * 5000 * 2);
    space_result_dispose(&plain);
    space_result_dispose(&masked);
}

static void test_space_result_encode_round_trip_cell_flags(void **state)
{
    (void)state;
    space_result r;
    make_result(&r, SPACE_OP_HISTOGRAM, 4, 6, false);
    r.cells[0].supp = SPACE_SUPP_BELOW_K;
    r.cells[0].n = 0;
    r.cells[1].noisy = true;
    r.cells[1].noise_scale = 2.5;
    r.cells[2].bin_supp = calloc(6, 1);
    assert_non_null(r.cells[2].bin_supp);
    r.cells[2].bin_supp[1] = SPACE_SUPP_COMPLEMENTARY;
    r.cells[2].bin_supp[5] = SPACE_SUPP_DOMINANCE;
    r.cells[3].key[0] = 65535;
    r.cells[3].key[1] = 65535;
    result_round_trip(&r);
    space_result_dispose(&r);
    /* single-city quantiles released as final values */
    make_result(&r, SPACE_OP_QUANTILES, 2, 0, false);
    r.ngroup = 1;
    r.cells[1].key[0] = 1;
    for (size_t i = 0; i < 2; i++) {
        r.cells[i].has_qvals = true;
        for (size_t k = 0; k < 5; k++) {
            r.cells[i].qvals[k] = 80.0 + 10.0 * (double)k + (double)i;
        }
    }
    result_round_trip(&r);
    space_result_dispose(&r);
}

static void make_leg(space_leg *l)
{
    memset(l, 0, sizeof(*l));
    strcpy(l->query_id, "3f2a9c1e-0b4d-4e7a-9a51-0c6f1d2e8b77");
    make_query(&l->q, SPACE_OP_QUANTILES);
    static const char *const cities[] = {"guangzhou", "hongkong", "macau"};
    for (size_t i = 0; i < 3; i++) {
        strcpy(l->parties[i].city, cities[i]);
        l->parties[i].cert_len = 300 + i;
        l->parties[i].cert_der = malloc(l->parties[i].cert_len);
        assert_non_null(l->parties[i].cert_der);
        for (size_t j = 0; j < l->parties[i].cert_len; j++) {
            l->parties[i].cert_der[j] = (uint8_t)(j * 7 + i);
        }
    }
    l->nparties = 3;
    l->masked = true;
}

static void test_space_leg_encode_round_trip(void **state)
{
    (void)state;
    space_leg l, back;
    make_leg(&l);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(space_leg_encode(&l, &buf, &len), 0);
    assert_int_equal(space_leg_decode(buf, len, &back), 0);
    assert_string_equal(back.query_id, l.query_id);
    assert_query_equal(&l.q, &back.q);
    assert_int_equal(back.nparties, 3);
    assert_true(back.masked);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(back.parties[i].city, l.parties[i].city);
        assert_int_equal(back.parties[i].cert_len, l.parties[i].cert_len);
        assert_memory_equal(back.parties[i].cert_der, l.parties[i].cert_der, l.parties[i].cert_len);
        assert_true(back.parties[i].cert_der != l.parties[i].cert_der);
    }
    space_leg_dispose(&back);
    space_leg_dispose(&back); /* idempotent */
    space_leg_dispose(NULL);
    free(buf);
    /* unmasked, no parties */
    space_leg_dispose(&l);
    l.masked = false;
    assert_int_equal(space_leg_encode(&l, &buf, &len), 0);
    assert_int_equal(space_leg_decode(buf, len, &back), 0);
    assert_int_equal(back.nparties, 0);
    assert_false(back.masked);
    free(buf);
}

static void make_answer(space_leg_answer *a, space_op op)
{
    memset(a, 0, sizeof(*a));
    strcpy(a->city, "hongkong");
    make_result(&a->result, op, 5, op == SPACE_OP_HISTOGRAM ? 9 : 0, false);
    a->has_receipt = true;
    strcpy(a->receipt_city, "hongkong");
    a->receipt_index = 0x0123456789abcdefu;
    for (size_t i = 0; i < 32; i++) {
        a->receipt_leaf[i] = (uint8_t)(0xf0 ^ i);
    }
}

static void test_space_leg_answer_encode_round_trip(void **state)
{
    (void)state;
    for (int op = SPACE_OP_COUNT; op <= SPACE_OP_AGREEMENT; op++) {
        space_leg_answer a, back;
        make_answer(&a, (space_op)op);
        a.masked = op == SPACE_OP_QUANTILES;
        a.has_receipt = op % 2 == 0;
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(space_leg_answer_encode(&a, &buf, &len), 0);
        assert_int_equal(space_leg_answer_decode(buf, len, &back), 0);
        assert_string_equal(back.city, "hongkong");
        assert_int_equal(back.masked, a.masked);
        assert_string_equal(back.error_code, "");
        assert_result_equal(&a.result, &back.result);
        assert_int_equal(back.has_receipt, a.has_receipt);
        if (a.has_receipt) {
            assert_string_equal(back.receipt_city, a.receipt_city);
            assert_int_equal(back.receipt_index, a.receipt_index);
            assert_memory_equal(back.receipt_leaf, a.receipt_leaf, 32);
        }
        space_leg_answer_dispose(&back);
        space_leg_answer_dispose(&back);
        space_leg_answer_dispose(&a);
        free(buf);
    }
    space_leg_answer_dispose(NULL);
}

static void test_space_leg_answer_encode_error(void **state)
{
    (void)state;
    space_leg_answer a, back;
    memset(&a, 0, sizeof(a));
    strcpy(a.city, "macau");
    strcpy(a.error_code, "contract_expired");
    strcpy(a.error_msg, "contract 7c1e… expired at 2025-01-01T00:00:00Z\n(see ledger)");
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(space_leg_answer_encode(&a, &buf, &len), 0);
    assert_int_equal(space_leg_answer_decode(buf, len, &back), 0);
    assert_string_equal(back.city, "macau");
    assert_string_equal(back.error_code, a.error_code);
    assert_string_equal(back.error_msg, a.error_msg);
    assert_int_equal(back.result.op, 0);
    assert_int_equal(back.result.ncells, 0);
    assert_false(back.has_receipt);
    space_leg_answer_dispose(&back);
    free(buf);
    /* an error answer with a result is refused */
    make_result(&a.result, SPACE_OP_COUNT, 1, 0, false);
    buf = NULL;
    assert_int_equal(space_leg_answer_encode(&a, &buf, &len), BG_ERR_INVAL);
    assert_null(buf);
    space_result_dispose(&a.result);
}

/* ---- decoder rules, one message each ------------------------------------------------------ */

typedef struct qpb {
    Baygate__Space__Query m;
    Baygate__Space__Filter f[2];
    Baygate__Space__Filter *fp[SPACE_MAX_FILTERS + 1];
    double num[SPACE_MAX_IN + 1];
    char *cat[SPACE_MAX_IN + 1];
    double edges[SPACE_MAX_EDGES + 1];
    double probs[SPACE_MAX_PROBS + 1];
    char *group_by[SPACE_MAX_GROUP_BY + 1];
} qpb;

static char s_dataset[] = "stroke-registry", s_age[] = "age", s_sex[] = "sex", s_f[] = "f",
            s_site[] = "site", s_empty[] = "";
static char s_long[SPACE_NAME_MAX + 1]; /* 64 x 'a': one too many */
static char s_max[SPACE_NAME_MAX];      /* 63 x 'a': fits */
static char s_ctl[] = "a\tb", s_overlong[] = "\xc0\xaf", s_surrogate[] = "\xed\xa0\x80",
            s_cut[] = "ab\xe4\xb8", s_c1[] = "a\xc2\x85";

/* A valid query message: a histogram of age >= 18 and sex = f, grouped by site. */
static void qpb_init(qpb *p)
{
    memset(p, 0, sizeof(*p));
    baygate__space__query__init(&p->m);
    p->m.dataset = s_dataset;
    p->m.op = BAYGATE__SPACE__OP__OP_HISTOGRAM;
    p->m.field = s_age;
    for (size_t i = 0; i <= SPACE_MAX_EDGES; i++) {
        p->edges[i] = 10.0 * (double)i;
    }
    for (size_t i = 0; i <= SPACE_MAX_PROBS; i++) {
        p->probs[i] = 0.5;
    }
    for (size_t i = 0; i <= SPACE_MAX_IN; i++) {
        p->num[i] = 18.0 + (double)i;
        p->cat[i] = s_f;
    }
    p->m.n_edges = 3;
    p->m.edges = p->edges;
    baygate__space__filter__init(&p->f[0]);
    p->f[0].field = s_age;
    p->f[0].cmp = BAYGATE__SPACE__CMP__CMP_GE;
    p->f[0].n_num = 1;
    p->f[0].num = p->num;
    baygate__space__filter__init(&p->f[1]);
    p->f[1].field = s_sex;
    p->f[1].cmp = BAYGATE__SPACE__CMP__CMP_EQ;
    p->f[1].is_cat = 1;
    p->f[1].n_cat = 1;
    p->f[1].cat = p->cat;
    for (size_t i = 0; i <= SPACE_MAX_FILTERS; i++) {
        p->fp[i] = &p->f[i % 2];
    }
    p->m.n_where = 2;
    p->m.where = p->fp;
    for (size_t g = 0; g <= SPACE_MAX_GROUP_BY; g++) {
        p->group_by[g] = g == 0 ? s_site : s_sex;
    }
    p->m.n_group_by = 1;
    p->m.group_by = p->group_by;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len + 1);
    assert_non_null(buf);
    protobuf_c_message_pack(m, buf);
    return buf;
}

static int decode_query_msg(const Baygate__Space__Query *m)
{
    size_t len;
    uint8_t *buf = pack(&m->base, &len);
    space_query q;
    memset(&q, 0x5a, sizeof(q));
    int rc = space_query_decode(buf, len, &q);
    if (rc != 0) {
        assert_int_equal(q.dataset[0], 0x5a); /* untouched */
    }
    free(buf);
    return rc;
}

static void test_space_query_decode_rejects(void **state)
{
    (void)state;
    memset(s_long, 'a', SPACE_NAME_MAX);
    memset(s_max, 'a', SPACE_NAME_MAX - 1);
    for (int c = -2; c < 32; c++) {
        qpb p;
        qpb_init(&p);
        switch (c) {
        case -2: /* valid at the limits */
            p.m.dataset = s_max;
            p.m.n_edges = SPACE_MAX_EDGES;
            p.m.n_probs = SPACE_MAX_PROBS;
            p.m.probs = p.probs;
            p.m.n_where = SPACE_MAX_FILTERS;
            p.m.n_group_by = SPACE_MAX_GROUP_BY;
            p.f[0].cmp = BAYGATE__SPACE__CMP__CMP_IN;
            p.f[0].n_num = SPACE_MAX_IN;
            break;
        case -1: /* valid as built */
            break;
        case 0:
            p.m.dataset = s_long;
            break;
        case 1:
            p.m.dataset = s_empty;
            break;
        case 2:
            p.m.op = (Baygate__Space__Op)0;
            break;
        case 3:
            p.m.op = (Baygate__Space__Op)7;
            break;
        case 4:
            p.m.field = s_long;
            break;
        case 5:
            p.m.field = s_ctl;
            break;
        case 6:
            p.m.field2 = s_overlong;
            break;
        case 7:
            p.m.dataset = s_surrogate;
            break;
        case 8:
            p.m.n_edges = SPACE_MAX_EDGES + 1;
            break;
        case 9:
            p.edges[1] = INFINITY;
            break;
        case 10:
            p.m.n_probs = SPACE_MAX_PROBS + 1;
            p.m.probs = p.probs;
            break;
        case 11:
            p.probs[0] = NAN;
            p.m.n_probs = 1;
            p.m.probs = p.probs;
            break;
        case 12:
            p.m.n_where = SPACE_MAX_FILTERS + 1;
            break;
        case 13:
            p.f[0].cmp = (Baygate__Space__Cmp)0;
            break;
        case 14:
            p.f[1].cmp = (Baygate__Space__Cmp)8;
            break;
        case 15:
            p.f[0].n_num = 0;
            break;
        case 16:
            p.f[0].n_num = 2; /* two values for ">=" */
            break;
        case 17:
            p.f[0].cmp = BAYGATE__SPACE__CMP__CMP_IN;
            p.f[0].n_num = SPACE_MAX_IN + 1;
            break;
        case 18:
            p.f[1].n_num = 1; /* numbers in a categorical filter */
            p.f[1].num = p.num;
            break;
        case 19:
            p.f[0].n_cat = 1; /* names in a numeric filter */
            p.f[0].cat = p.cat;
            break;
        case 20:
            p.cat[0] = s_long;
            break;
        case 21:
            p.cat[0] = s_empty;
            break;
        case 22:
            p.num[0] = NAN;
            break;
        case 23:
            p.m.n_group_by = SPACE_MAX_GROUP_BY + 1;
            break;
        case 24:
            p.group_by[0] = s_empty;
            break;
        case 25:
            p.f[0].field = s_empty;
            break;
        case 26:
            p.f[1].field = s_cut;
            break;
        case 27:
            p.group_by[0] = s_c1;
            break;
        case 28:
            p.f[1].is_cat = 0; /* cat values while is_cat is false */
            break;
        case 29:
            p.f[0].is_cat = 1; /* numbers while is_cat is true */
            break;
        case 30:
            p.num[0] = -INFINITY;
            break;
        case 31:
            p.f[1].n_cat = 0;
            break;
        }
        int rc = decode_query_msg(&p.m);
        if (rc != (c < 0 ? 0 : BG_ERR_INVAL)) {
            fail_msg("case %d: rc %d", c, rc);
        }
    }
}

/* ---- results ------------------------------------------------------------------------------- */

#define RPB_CELLS 3
typedef struct rpb {
    Baygate__Space__Result m;
    char *group_by[SPACE_MAX_GROUP_BY + 1];
    Baygate__Space__Cell c[RPB_CELLS];
    Baygate__Space__Cell *cp[RPB_CELLS];
    uint32_t keys[RPB_CELLS][SPACE_MAX_GROUP_BY + 1];
    Baygate__Space__Moments mom;
    Baygate__Space__Agree agree;
    uint64_t bins[RPB_CELLS][4];
    uint8_t bin_supp[4];
    double qvals[SPACE_MAX_PROBS + 1];
} rpb;

/* A valid histogram result grouped by site: three cells with 4 bins each. */
static void rpb_init(rpb *p)
{
    memset(p, 0, sizeof(*p));
    baygate__space__result__init(&p->m);
    p->m.op = BAYGATE__SPACE__OP__OP_HISTOGRAM;
    p->m.resolution = 0.5;
    p->group_by[0] = s_site;
    p->group_by[1] = s_sex;
    p->group_by[2] = s_age;
    p->m.n_group_by = 1;
    p->m.group_by = p->group_by;
    baygate__space__moments__init(&p->mom);
    p->mom.n = 3;
    p->mom.m2 = 1.0;
    baygate__space__agree__init(&p->agree);
    p->agree.n = 3;
    p->agree.d_m2 = 2.0;
    for (size_t i = 0; i <= SPACE_MAX_PROBS; i++) {
        p->qvals[i] = (double)i;
    }
    for (size_t i = 0; i < RPB_CELLS; i++) {
        Baygate__Space__Cell *c = &p->c[i];
        baygate__space__cell__init(c);
        p->keys[i][0] = (uint32_t)(2 * i);
        p->keys[i][1] = 1;
        c->n_key = 1;
        c->key = p->keys[i];
        c->n = 10 * i;
        for (size_t j = 0; j < 4; j++) {
            p->bins[i][j] = i + j;
        }
        c->n_bins = 4;
        c->bins = p->bins[i];
        p->cp[i] = c;
    }
    p->m.n_cells = RPB_CELLS;
    p->m.cells = p->cp;
}

static int decode_result_msg(const Baygate__Space__Result *m)
{
    size_t len;
    uint8_t *buf = pack(&m->base, &len);
    space_result r;
    memset(&r, 0x5a, sizeof(r));
    int rc = space_result_decode(buf, len, &r);
    if (rc == 0) {
        space_result_dispose(&r);
    } else {
        assert_int_equal(r.ncells, 0x5a5a5a5a5a5a5a5au); /* untouched */
    }
    free(buf);
    return rc;
}

static void test_space_result_decode_rejects(void **state)
{
    (void)state;
    memset(s_long, 'a', SPACE_NAME_MAX);
    for (int c = -4; c < 30; c++) {
        rpb p;
        rpb_init(&p);
        Baygate__Space__Cell *c0 = &p.c[0], *c1 = &p.c[1];
        switch (c) {
        case -4: /* valid: masked bins as fixed64, per-bin suppression */
            c1->n_bins = 0;
            c1->n_bins_fixed = 4;
            c1->bins_fixed = p.bins[1];
            c0->bin_supp.len = 4;
            c0->bin_supp.data = p.bin_supp;
            p.bin_supp[3] = SPACE_SUPP_DOMINANCE;
            break;
        case -3: /* valid: two keys, sub-messages, final quantiles */
            p.m.n_group_by = 2;
            for (size_t i = 0; i < RPB_CELLS; i++) {
                p.c[i].n_key = 2;
            }
            c0->mom = &p.mom;
            c1->agree = &p.agree;
            c0->has_qvals = 1;
            c0->n_qvals = SPACE_MAX_PROBS;
            c0->qvals = p.qvals;
            c1->has_qvals = 1;
            c1->n_qvals = 1;
            c1->qvals = p.qvals;
            break;
        case -2: /* valid: no cells */
            p.m.n_cells = 0;
            break;
        case -1:
            break;
        case 0:
            p.m.op = (Baygate__Space__Op)0;
            break;
        case 1:
            p.m.op = (Baygate__Space__Op)99;
            break;
        case 2:
            p.m.resolution = INFINITY;
            break;
        case 3:
            p.m.grid_lo = NAN;
            break;
        case 4:
            p.m.n_group_by = 3;
            break;
        case 5:
            p.group_by[0] = s_long;
            break;
        case 6:
            c1->n_key = 2; /* key count != ngroup */
            break;
        case 7:
            c1->n_key = 0;
            break;
        case 8:
            p.keys[2][0] = 65536;
            break;
        case 9:
            p.keys[1][0] = 0; /* duplicate of cell 0 */
            break;
        case 10:
            p.keys[0][0] = 5; /* 5, 2, 4: not ascending */
            break;
        case 11:
            c1->n_bins_fixed = 4; /* both forms */
            c1->bins_fixed = p.bins[1];
            break;
        case 12:
            c0->bin_supp.len = 3;
            c0->bin_supp.data = p.bin_supp;
            break;
        case 13:
            c0->bin_supp.len = 4;
            c0->bin_supp.data = p.bin_supp;
            p.bin_supp[2] = 5;
            break;
        case 14:
            c0->has_qvals = 1; /* without values */
            break;
        case 15:
            c0->n_qvals = 2; /* values without has_qvals */
            c0->qvals = p.qvals;
            break;
        case 16:
            c0->has_qvals = 1;
            c0->n_qvals = SPACE_MAX_PROBS + 1;
            c0->qvals = p.qvals;
            break;
        case 17:
            c0->has_qvals = 1;
            c0->n_qvals = 3;
            c0->qvals = p.qvals;
            p.qvals[2] = NAN;
            break;
        case 18:
            c0->supp = (Baygate__Space__Supp)5;
            break;
        case 19:
            c0->supp = (Baygate__Space__Supp)-1;
            break;
        case 20:
            c0->noise_scale = -1.0;
            break;
        case 21:
            c0->noise_scale = NAN;
            break;
        case 22:
            c0->mom = &p.mom;
            p.mom.m2 = -0.5;
            break;
        case 23:
            c0->mom = &p.mom;
            p.mom.mean = INFINITY;
            break;
        case 24:
            c0->agree = &p.agree;
            p.agree.c_xy = NAN;
            break;
        case 25:
            c0->agree = &p.agree;
            p.agree.y_m2 = -1.0;
            break;
        case 26:
            p.group_by[0] = s_ctl;
            break;
        case 27:
            c0->agree = &p.agree;
            p.agree.a_mean = -INFINITY;
            break;
        case 28:
            p.group_by[0] = s_empty;
            break;
        case 29:
            c0->bin_supp.len = 2; /* supp for bins that are not there */
            c0->bin_supp.data = p.bin_supp;
            c0->n_bins = 0;
            break;
        }
        int rc = decode_result_msg(&p.m);
        if (rc != (c < 0 ? 0 : BG_ERR_INVAL)) {
            fail_msg("case %d: rc %d", c, rc);
        }
    }
}

/* Cell and bin counts at and past their limits. */
static void test_space_result_decode_rejects_sizes(void **state)
{
    (void)state;
    Baygate__Space__Result m;
    baygate__space__result__init(&m);
    m.op = BAYGATE__SPACE__OP__OP_QUANTILES;
    char *gb[1] = {s_site};
    m.n_group_by = 1;
    m.group_by = gb;
    size_t ncells = SPACE_MAX_CELLS + 1;
    Baygate__Space__Cell *cells = calloc(ncells, sizeof(*cells));
    Baygate__Space__Cell **cp = calloc(ncells, sizeof(*cp));
    uint32_t *keys = calloc(ncells, sizeof(*keys));
    uint64_t *bins = calloc(SPACE_MAX_GRID + 1, sizeof(*bins));
    assert_true(cells != NULL && cp != NULL && keys != NULL && bins != NULL);
    for (size_t i = 0; i < ncells; i++) {
        baygate__space__cell__init(&cells[i]);
        keys[i] = (uint32_t)i;
        cells[i].n_key = 1;
        cells[i].key = &keys[i];
        cp[i] = &cells[i];
    }
    m.cells = cp;
    m.n_cells = SPACE_MAX_CELLS;
    assert_int_equal(decode_result_msg(&m), 0);
    m.n_cells = SPACE_MAX_CELLS + 1;
    assert_int_equal(decode_result_msg(&m), BG_ERR_INVAL);
    /* one cell at SPACE_MAX_GRID bins, then one more */
    m.n_cells = 1;
    cells[0].n_bins = SPACE_MAX_GRID;
    cells[0].bins = bins;
    assert_int_equal(decode_result_msg(&m), 0);
    cells[0].n_bins = SPACE_MAX_GRID + 1;
    assert_int_equal(decode_result_msg(&m), BG_ERR_INVAL);
    /* 64 full cells are exactly SPACE_WIRE_MAX_BINS; a 65th bin-carrying cell is too many */
    for (size_t i = 0; i < 65; i++) {
        cells[i].n_bins = SPACE_MAX_GRID;
        cells[i].bins = bins;
    }
    m.n_cells = 64;
    assert_int_equal(decode_result_msg(&m), 0);
    cells[64].n_bins = 1;
    m.n_cells = 65;
    assert_int_equal(decode_result_msg(&m), BG_ERR_INVAL);
    free(cells);
    free(cp);
    free(keys);
    free(bins);
}

/* Messages that are cheap to send and expensive to unpack fail on the allocation budget. */
static void test_space_result_decode_budget(void **state)
{
    (void)state;
    /* 1 MiB of empty Cell fields (tag 0x2a, length 0): half a million cells */
    size_t len = (size_t)1 << 20;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    for (size_t i = 0; i < len; i += 2) {
        buf[i] = 0x2a;
        buf[i + 1] = 0x00;
    }
    space_result r;
    assert_int_equal(space_result_decode(buf, len, &r), BG_ERR_INVAL);
    space_leg_answer a;
    assert_int_equal(space_leg_answer_decode(buf, len, &a), BG_ERR_INVAL);
    free(buf);
    /* too large to look at (never read), and NULL with a length */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(space_result_decode(junk, (size_t)SPACE_WIRE_MAX_BYTES + 1, &r), BG_ERR_INVAL);
    assert_int_equal(space_query_decode(NULL, 3, &(space_query){0}), BG_ERR_INVAL);
    /* garbage, and an empty message (op 0) */
    assert_int_equal(space_result_decode(junk, sizeof(junk), &r), BG_ERR_INVAL);
    assert_int_equal(space_result_decode(NULL, 0, &r), BG_ERR_INVAL);
    assert_int_equal(space_leg_decode(junk, 0, &(space_leg){0}), BG_ERR_INVAL);
}

/* ---- legs and answers ------------------------------------------------------------------ */

static char s_qid[] = "0123456789abcdef-", s_qid_upper[] = "ABC", s_qid_65[66];
static char s_gz[] = "guangzhou", s_hk[] = "hongkong";
static uint8_t cert[SPACE_WIRE_MAX_CERT + 1];

typedef struct lpb {
    qpb q;
    Baygate__Space__Leg m;
    Baygate__Space__Party p[2];
    Baygate__Space__Party *pp[SPACE_WIRE_MAX_PARTIES + 1];
} lpb;

static void lpb_init(lpb *l)
{
    memset(l, 0, sizeof(*l));
    qpb_init(&l->q);
    baygate__space__leg__init(&l->m);
    l->m.query_id = s_qid;
    l->m.query = &l->q.m;
    for (size_t i = 0; i < 2; i++) {
        baygate__space__party__init(&l->p[i]);
        l->p[i].city = i == 0 ? s_gz : s_hk;
        l->p[i].cert_der.data = cert;
        l->p[i].cert_der.len = 100;
    }
    for (size_t i = 0; i <= SPACE_WIRE_MAX_PARTIES; i++) {
        l->pp[i] = &l->p[i % 2];
    }
    l->m.n_participants = 2;
    l->m.participants = l->pp;
    l->m.masked = 1;
}

static void test_space_leg_decode_rejects(void **state)
{
    (void)state;
    memset(s_long, 'a', SPACE_NAME_MAX);
    memset(s_qid_65, 'a', 65);
    for (int c = -2; c < 12; c++) {
        lpb l;
        lpb_init(&l);
        switch (c) {
        case -2:
            l.p[1].cert_der.len = SPACE_WIRE_MAX_CERT;
            break;
        case -1:
            l.m.n_participants = 0;
            l.m.masked = 0;
            break;
        case 0:
            l.m.query_id = s_empty;
            break;
        case 1:
            l.m.query_id = s_qid_upper;
            break;
        case 2:
            l.m.query_id = s_qid_65;
            break;
        case 3:
            l.m.query = NULL;
            break;
        case 4:
            l.q.m.op = (Baygate__Space__Op)0; /* the query's own rules apply */
            break;
        case 5:
            l.m.n_participants = SPACE_WIRE_MAX_PARTIES + 1;
            break;
        case 6:
            l.m.n_participants = 3; /* guangzhou twice */
            break;
        case 7:
            l.p[0].cert_der.len = 0;
            break;
        case 8:
            l.p[1].cert_der.len = SPACE_WIRE_MAX_CERT + 1;
            break;
        case 9:
            l.p[0].city = s_empty;
            break;
        case 10:
            l.p[0].city = s_long;
            break;
        case 11:
            l.m.query_id = s_ctl;
            break;
        }
        size_t len;
        uint8_t *buf = pack(&l.m.base, &len);
        space_leg out;
        memset(&out, 0x5a, sizeof(out));
        int rc = space_leg_decode(buf, len, &out);
        if (rc != (c < 0 ? 0 : BG_ERR_INVAL)) {
            fail_msg("case %d: rc %d", c, rc);
        }
        if (rc == 0) {
            space_leg_dispose(&out);
        } else {
            assert_int_equal(out.nparties, 0x5a5a5a5a5a5a5a5au);
        }
        free(buf);
    }
}

static void test_space_leg_answer_decode_rejects(void **state)
{
    (void)state;
    static char s_code[] = "no_contract", s_msg_long[257], s_bad_utf8[] = "x\xff";
    memset(s_long, 'a', SPACE_NAME_MAX);
    memset(s_msg_long, 'm', 256);
    uint8_t leaf[33] = {0};
    for (int c = -3; c < 12; c++) {
        rpb r;
        rpb_init(&r);
        Baygate__Space__LegAnswer m;
        Baygate__Space__Receipt rec;
        baygate__space__leg_answer__init(&m);
        baygate__space__receipt__init(&rec);
        m.city = s_hk;
        m.result = &r.m;
        rec.city = s_hk;
        rec.index = 7;
        rec.leaf_hash.data = leaf;
        rec.leaf_hash.len = 32;
        m.receipt = &rec;
        switch (c) {
        case -3: /* an error answer */
            m.result = NULL;
            m.error_code = s_code;
            m.error_msg = s_code;
            break;
        case -2:
            m.receipt = NULL;
            break;
        case -1:
            break;
        case 0:
            m.city = s_empty;
            break;
        case 1:
            m.city = s_long;
            break;
        case 2:
            m.error_code = s_code; /* error with a result */
            break;
        case 3:
            m.result = NULL; /* no error, no result */
            break;
        case 4:
            rec.leaf_hash.len = 31;
            break;
        case 5:
            rec.leaf_hash.len = 33;
            break;
        case 6:
            rec.city = s_empty;
            break;
        case 7:
            m.result = NULL;
            m.error_code = s_code;
            m.error_msg = s_msg_long;
            break;
        case 8:
            m.result = NULL;
            m.error_code = s_code;
            m.error_msg = s_bad_utf8;
            break;
        case 9:
            m.result = NULL;
            m.error_code = s_ctl;
            break;
        case 10:
            r.m.op = (Baygate__Space__Op)0; /* the result's own rules apply */
            break;
        case 11:
            r.keys[1][0] = 0;
            break;
        }
        size_t len;
        uint8_t *buf = pack(&m.base, &len);
        space_leg_answer out;
        memset(&out, 0x5a, sizeof(out));
        int rc = space_leg_answer_decode(buf, len, &out);
        if (rc != (c < 0 ? 0 : BG_ERR_INVAL)) {
            fail_msg("case %d: rc %d", c, rc);
        }
        if (rc == 0) {
            space_leg_answer_dispose(&out);
        } else {
            assert_int_equal(out.result.ncells, 0x5a5a5a5a5a5a5a5au);
        }
        free(buf);
    }
}

/* ---- encoders refuse what no decoder takes ------------------------------------------------ */

static void test_space_encode_rejects(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t len = 12345;
    space_query q;
    make_query(&q, SPACE_OP_MEAN);
    memset(q.dataset, 'x', sizeof(q.dataset)); /* not NUL-terminated */
    assert_int_equal(space_query_encode(&q, &buf, &len), BG_ERR_INVAL);
    make_query(&q, SPACE_OP_MEAN);
    q.where[0].nvals = 2;
    assert_int_equal(space_query_encode(&q, &buf, &len), BG_ERR_INVAL);
    make_query(&q, SPACE_OP_HISTOGRAM);
    q.edges[2] = NAN;
    assert_int_equal(space_query_encode(&q, &buf, &len), BG_ERR_INVAL);
    make_query(&q, SPACE_OP_COUNT);
    q.op = (space_op)9;
    assert_int_equal(space_query_encode(&q, &buf, &len), BG_ERR_INVAL);
    make_query(&q, SPACE_OP_COUNT);
    strcpy(q.where[1].cat[1], "\x01");
    assert_int_equal(space_query_encode(&q, &buf, &len), BG_ERR_INVAL);
    assert_null(buf);
    assert_int_equal(len, 12345);
}

static void test_space_encode_rejects_results(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t len = 0;
    for (int c = 0; c < 7; c++) {
        space_result r;
        make_result(&r, SPACE_OP_HISTOGRAM, 3, 4, false);
        uint64_t *keep = r.cells[1].bins;
        switch (c) {
        case 0:
            r.cells[2].key[1] = 0; /* (0,0) after (0,1) */
            break;
        case 1:
            r.cells[1].bins = NULL;
            break;
        case 2:
            r.cells[0].mom.m2 = -1.0;
            break;
        case 3:
            r.cells[0].supp = (space_supp)7;
            break;
        case 4:
            r.ngroup = 3;
            break;
        case 5:
            r.cells[0].has_qvals = true;
            r.cells[0].qvals[31] = INFINITY;
            break;
        case 6:
            r.cells[1].bin_supp = calloc(4, 1);
            r.cells[1].bin_supp[0] = 9;
            break;
        }
        int rc = space_result_encode(&r, &buf, &len);
        if (rc != BG_ERR_INVAL) {
            fail_msg("case %d: rc %d", c, rc);
        }
        assert_null(buf);
        r.cells[1].bins = keep;
        r.ngroup = 2;
        space_result_dispose(&r);
    }
    space_leg l;
    make_leg(&l);
    strcpy(l.parties[2].city, "hongkong");
    assert_int_equal(space_leg_encode(&l, &buf, &len), BG_ERR_INVAL);
    strcpy(l.parties[2].city, "macau");
    strcpy(l.query_id, "Q1");
    assert_int_equal(space_leg_encode(&l, &buf, &len), BG_ERR_INVAL);
    space_leg_dispose(&l);
    space_leg_answer a;
    make_answer(&a, SPACE_OP_COUNT);
    a.receipt_city[0] = '\0';
    assert_int_equal(space_leg_answer_encode(&a, &buf, &len), BG_ERR_INVAL);
    a.has_receipt = false; /* the receipt is not sent, its city not checked */
    assert_int_equal(space_leg_answer_encode(&a, &buf, &len), 0);
    free(buf);
    space_leg_answer_dispose(&a);
    assert_null(a.result.cells);
}

/* ---- truncation ------------------------------------------------------------------------ */

/* Every prefix of |buf| decodes cleanly or fails with BG_ERR_INVAL (the sanitizer build
 * checks for leaks and stray reads); the whole message decodes. */
static void truncate_all(const uint8_t *buf, size_t len, int kind)
{
    size_t ok = 0;
    for (size_t n = 0; n <= len; n++) {
        /* a copy of exactly n bytes, so that a read past it is caught */
        uint8_t *cut = malloc(n > 0 ? n : 1);
        assert_non_null(cut);
        memcpy(cut, buf, n);
        int rc;
        if (kind == 0) {
            space_query q;
            rc = space_query_decode(cut, n, &q);
        } else if (kind == 1) {
            space_result r;
            if ((rc = space_result_decode(cut, n, &r)) == 0) {
                space_result_dispose(&r);
            }
        } else if (kind == 2) {
            space_leg l;
            if ((rc = space_leg_decode(cut, n, &l)) == 0) {
                space_leg_dispose(&l);
            }
        } else {
            space_leg_answer a;
            if ((rc = space_leg_answer_decode(cut, n, &a)) == 0) {
                space_leg_answer_dispose(&a);
            }
        }
        free(cut);
        if (rc != 0 && rc != BG_ERR_INVAL) {
            fail_msg("kind %d, %zu of %zu bytes: rc %d", kind, n, len, rc);
        }
        ok += rc == 0;
    }
    assert_true(ok >= 1);
}

static void test_space_decode_truncated_every_length(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    space_query q;
    make_query(&q, SPACE_OP_HISTOGRAM);
    assert_int_equal(space_query_encode(&q, &buf, &len), 0);
    truncate_all(buf, len, 0);
    free(buf);

    space_result r;
    make_result(&r, SPACE_OP_QUANTILES, 4, 40, false);
    r.cells[1].bin_supp = calloc(40, 1);
    r.cells[2].has_qvals = true;
    r.cells[3].mom.n = 3;
    r.cells[3].agree.n = 3;
    assert_int_equal(space_result_encode(&r, &buf, &len), 0);
    truncate_all(buf, len, 1);
    free(buf);
    space_result_dispose(&r);

    space_leg l;
    make_leg(&l);
    assert_int_equal(space_leg_encode(&l, &buf, &len), 0);
    truncate_all(buf, len, 2);
    free(buf);
    space_leg_dispose(&l);

    space_leg_answer a;
    make_answer(&a, SPACE_OP_AGREEMENT);
    assert_int_equal(space_leg_answer_encode(&a, &buf, &len), 0);
    truncate_all(buf, len, 3);
    free(buf);
    space_leg_answer_dispose(&a);
}

/* ---- allocation failure ---------------------------------------------------------------- */

/* Every allocation of an encode + decode round fails in turn: BG_ERR_NOMEM, nothing leaked. */
static void test_space_wire_alloc_failure(void **state)
{
    (void)state;
    space_leg_answer a;
    make_answer(&a, SPACE_OP_HISTOGRAM);
    a.result.cells[2].bin_supp = calloc(9, 1);
    space_leg l;
    make_leg(&l);
    for (int kind = 0; kind < 2; kind++) {
        for (long n = 0;; n++) {
            uint8_t *buf = NULL;
            size_t len = 0;
            alloc_left = n;
            int rc = kind == 0 ? space_leg_answer_encode(&a, &buf, &len)
                               : space_leg_encode(&l, &buf, &len);
            if (rc == 0) {
                space_leg_answer back;
                space_leg lback;
                rc = kind == 0 ? space_leg_answer_decode(buf, len, &back)
                               : space_leg_decode(buf, len, &lback);
                if (rc == 0) {
                    alloc_left = -1;
                    if (kind == 0) {
                        assert_result_equal(&a.result, &back.result);
                        space_leg_answer_dispose(&back);
                    } else {
                        assert_int_equal(lback.nparties, 3);
                        space_leg_dispose(&lback);
                    }
                    free(buf);
                    assert_true(n > 3);
                    break;
                }
                free(buf);
            }
            alloc_left = -1;
            if (rc != BG_ERR_NOMEM) {
                fail_msg("kind %d, allocation %ld failing: rc %d", kind, n, rc);
            }
        }
    }
    space_leg_answer_dispose(&a);
    space_leg_dispose(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_query_encode_round_trip_every_op),
        cmocka_unit_test(test_space_result_encode_round_trip_every_op),
        cmocka_unit_test(test_space_result_encode_masked_bins_fixed64),
        cmocka_unit_test(test_space_result_encode_round_trip_cell_flags),
        cmocka_unit_test(test_space_leg_encode_round_trip),
        cmocka_unit_test(test_space_leg_answer_encode_round_trip),
        cmocka_unit_test(test_space_leg_answer_encode_error),
        cmocka_unit_test(test_space_query_decode_rejects),
        cmocka_unit_test(test_space_result_decode_rejects),
        cmocka_unit_test(test_space_result_decode_rejects_sizes),
        cmocka_unit_test(test_space_result_decode_budget),
        cmocka_unit_test(test_space_leg_decode_rejects),
        cmocka_unit_test(test_space_leg_answer_decode_rejects),
        cmocka_unit_test(test_space_encode_rejects),
        cmocka_unit_test(test_space_encode_rejects_results),
        cmocka_unit_test(test_space_decode_truncated_every_length),
        cmocka_unit_test(test_space_wire_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
