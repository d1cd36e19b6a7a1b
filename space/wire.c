/* space/wire.c: space/wire.h over protobuf-c. The generated types of space.proto appear only
 * here: encoders borrow the caller's strings and arrays into a protobuf-c view and pack it;
 * decoders unpack with an allocator that caps what a message may make us allocate, copy into
 * the plain structs of space/space.h checking every bound on the way, and then apply the same
 * rule checks the encoders apply. Not for: schema checks, transport, signing. */
#include "space/wire.h"

#include "base/utf8.h"

#include <assert.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "space.pb-c.h"

/* The proto enums carry our values unchanged (both are consecutive from 1, or 0 for Supp). */
_Static_assert((int)SPACE_OP_COUNT == (int)BAYGATE__SPACE__OP__OP_COUNT &&
                   (int)SPACE_OP_AGREEMENT == (int)BAYGATE__SPACE__OP__OP_AGREEMENT,
               "Op matches space_op");
_Static_assert((int)SPACE_CMP_EQ == (int)BAYGATE__SPACE__CMP__CMP_EQ &&
                   (int)SPACE_CMP_IN == (int)BAYGATE__SPACE__CMP__CMP_IN,
               "Cmp matches space_cmp");
_Static_assert((int)SPACE_SUPP_NONE == (int)BAYGATE__SPACE__SUPP__SUPP_NONE &&
                   (int)SPACE_SUPP_DOMINANCE == (int)BAYGATE__SPACE__SUPP__SUPP_DOMINANCE,
               "Supp matches space_supp");
_Static_assert(SPACE_MAX_GROUP_BY == 2, "cells carry up to two keys");

/* ---- rules shared by encoders and decoders ---------------------------------------------- */

/* With |name|, no controls either: names end up in logs, JSON and error messages. */
static bool utf8_ok(const char *s, size_t n, bool name)
{
    return bg_utf8_valid((const uint8_t *)s, n, name ? BG_UTF8_NO_CONTROLS : BG_UTF8_ANY);
}

enum {
    STR_TEXT = 0,     /* any valid UTF-8 */
    STR_NAME = 1,     /* no control characters */
    STR_NONEMPTY = 2, /* at least one byte */
};

/* |s| is NUL-terminated within |cap| bytes and obeys |flags|. */
static bool str_ok(const char *s, size_t cap, unsigned flags)
{
    size_t n = strnlen(s, cap);
    if (n == cap || ((flags & STR_NONEMPTY) != 0 && n == 0)) {
        return false;
    }
    return utf8_ok(s, n, (flags & STR_NAME) != 0);
}
#define NAME_OK(s) str_ok((s), sizeof(s), STR_NAME | STR_NONEMPTY)

static bool query_id_ok(const char *s)
{
    size_t n = strnlen(s, SPACE_WIRE_QUERY_ID_MAX + 1);
    if (n == 0 || n > SPACE_WIRE_QUERY_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || s[i] == '-')) {
            return false;
        }
    }
    return true;
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

static bool op_ok(int op)
{
    return op >= SPACE_OP_COUNT && op <= SPACE_OP_AGREEMENT;
}

static bool supp_ok(int s)
{
    return s >= SPACE_SUPP_NONE && s <= SPACE_SUPP_DOMINANCE;
}

static int check_filter(const space_filter *f)
{
    if (!NAME_OK(f->field) || f->cmp < SPACE_CMP_EQ || f->cmp > SPACE_CMP_IN) {
        return BG_ERR_INVAL;
    }
    if (f->nvals == 0 || f->nvals > SPACE_MAX_IN || (f->cmp != SPACE_CMP_IN && f->nvals != 1)) {
        return BG_ERR_INVAL;
    }
    if (f->is_cat) {
        for (size_t i = 0; i < f->nvals; i++) {
            if (!NAME_OK(f->cat[i])) {
                return BG_ERR_INVAL;
            }
        }
        return 0;
    }
    return all_finite(f->num, f->nvals) ? 0 : BG_ERR_INVAL;
}

static int check_query(const space_query *q)
{
    if (!NAME_OK(q->dataset) || !op_ok((int)q->op) ||
        !str_ok(q->field, sizeof(q->field), STR_NAME) ||
        !str_ok(q->field2, sizeof(q->field2), STR_NAME) || q->nedges > SPACE_MAX_EDGES ||
        !all_finite(q->edges, q->nedges) || q->nprobs > SPACE_MAX_PROBS ||
        !all_finite(q->probs, q->nprobs) || q->nwhere > SPACE_MAX_FILTERS ||
        q->ngroup > SPACE_MAX_GROUP_BY) {
        return BG_ERR_INVAL;
    }
    for (size_t i = 0; i < q->nwhere; i++) {
        if (check_filter(&q->where[i]) != 0) {
            return BG_ERR_INVAL;
        }
    }
    for (size_t g = 0; g < q->ngroup; g++) {
        if (!NAME_OK(q->group_by[g])) {
            return BG_ERR_INVAL;
        }
    }
    return 0;
}

static int key_cmp(const space_cell *a, const space_cell *b, size_t ngroup)
{
    for (size_t g = 0; g < ngroup; g++) {
        if (a->key[g] != b->key[g]) {
            return a->key[g] < b->key[g] ? -1 : 1;
        }
    }
    return 0;
}

static int check_cell(const space_cell *c)
{
    const space_moments *m = &c->mom;
    const space_agree *a = &c->agree;
    const double v[] = {m->mean,   m->m2,   a->d_mean, a->d_m2, a->a_mean, a->a_m2,       a->c_ad,
                        a->x_mean, a->x_m2, a->y_mean, a->y_m2, a->c_xy,   c->noise_scale};
    if (!all_finite(v, sizeof(v) / sizeof(v[0])) || m->m2 < 0.0 || a->d_m2 < 0.0 || a->a_m2 < 0.0 ||
        a->x_m2 < 0.0 || a->y_m2 < 0.0 || c->noise_scale < 0.0 || !supp_ok((int)c->supp)) {
        return BG_ERR_INVAL;
    }
    if (c->nbins > SPACE_MAX_GRID || (c->nbins > 0 && c->bins == NULL)) {
        return BG_ERR_INVAL;
    }
    if (c->bin_supp != NULL) {
        for (size_t j = 0; j < c->nbins; j++) {
            if (!supp_ok(c->bin_supp[j])) {
                return BG_ERR_INVAL;
            }
        }
    }
    if (c->has_qvals && !all_finite(c->qvals, SPACE_MAX_PROBS)) {
        return BG_ERR_INVAL;
    }
    return 0;
}

static int check_result(const space_result *r)
{
    if (!op_ok((int)r->op) || !isfinite(r->resolution) || !isfinite(r->grid_lo) ||
        r->ngroup > SPACE_MAX_GROUP_BY || r->ncells > SPACE_MAX_CELLS ||
        (r->ncells > 0 && r->cells == NULL)) {
        return BG_ERR_INVAL;
    }
    for (size_t g = 0; g < r->ngroup; g++) {
        if (!NAME_OK(r->group_by[g])) {
            return BG_ERR_INVAL;
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < r->ncells; i++) {
        const space_cell *c = &r->cells[i];
        if (check_cell(c) != 0 || (i > 0 && key_cmp(&r->cells[i - 1], c, r->ngroup) >= 0)) {
            return BG_ERR_INVAL;
        }
        total += c->nbins;
        if (total > SPACE_WIRE_MAX_BINS) {
            return BG_ERR_INVAL;
        }
    }
    return 0;
}

static int check_leg(const space_leg *l)
{
    if (!query_id_ok(l->query_id) || l->nparties > SPACE_WIRE_MAX_PARTIES ||
        check_query(&l->q) != 0) {
        return BG_ERR_INVAL;
    }
    for (size_t i = 0; i < l->nparties; i++) {
        const space_party *p = &l->parties[i];
        if (!NAME_OK(p->city) || p->cert_der == NULL || p->cert_len == 0 ||
            p->cert_len > SPACE_WIRE_MAX_CERT) {
            return BG_ERR_INVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(l->parties[j].city, p->city) == 0) {
                return BG_ERR_INVAL;
            }
        }
    }
    return 0;
}

static bool result_is_empty(const space_result *r)
{
    return r->op == 0 && r->ncells == 0;
}

static int check_answer(const space_leg_answer *a)
{
    if (!NAME_OK(a->city) || !str_ok(a->error_code, sizeof(a->error_code), STR_NAME) ||
        !str_ok(a->error_msg, sizeof(a->error_msg), STR_TEXT) ||
        (a->has_receipt && !NAME_OK(a->receipt_city))) {
        return BG_ERR_INVAL;
    }
    if (a->error_code[0] != '\0') {
        return result_is_empty(&a->result) ? 0 : BG_ERR_INVAL;
    }
    return check_result(&a->result);
}

/* ---- encoding: protobuf-c views of our structs ------------------------------------------ */

/* protobuf-c wants char * and double *; packing never writes through them. */
static char *pb_str(const char *s)
{
    return (char *)s;
}

typedef struct query_pb {
    Baygate__Space__Query msg;
    Baygate__Space__Filter filters[SPACE_MAX_FILTERS];
    Baygate__Space__Filter *fptrs[SPACE_MAX_FILTERS];
    char *cats[SPACE_MAX_FILTERS][SPACE_MAX_IN];
    char *group_by[SPACE_MAX_GROUP_BY];
} query_pb;

/* Fills |p| with a view of checked |q|; borrows everything, allocates nothing. */
static void query_pb_fill(query_pb *p, const space_query *q)
{
    baygate__space__query__init(&p->msg);
    p->msg.dataset = pb_str(q->dataset);
    p->msg.op = (Baygate__Space__Op)q->op;
    p->msg.field = pb_str(q->field);
    p->msg.field2 = pb_str(q->field2);
    p->msg.n_edges = q->nedges;
    p->msg.edges = (double *)q->edges;
    p->msg.n_probs = q->nprobs;
    p->msg.probs = (double *)q->probs;
    for (size_t i = 0; i < q->nwhere; i++) {
        const space_filter *f = &q->where[i];
        Baygate__Space__Filter *pf = &p->filters[i];
        baygate__space__filter__init(pf);
        pf->field = pb_str(f->field);
        pf->cmp = (Baygate__Space__Cmp)f->cmp;
        pf->is_cat = f->is_cat;
        if (f->is_cat) {
            for (size_t v = 0; v < f->nvals; v++) {
                p->cats[i][v] = pb_str(f->cat[v]);
            }
            pf->n_cat = f->nvals;
            pf->cat = p->cats[i];
        } else {
            pf->n_num = f->nvals;
            pf->num = (double *)f->num;
        }
        p->fptrs[i] = pf;
    }
    p->msg.n_where = q->nwhere;
    p->msg.where = p->fptrs;
    for (size_t g = 0; g < q->ngroup; g++) {
        p->group_by[g] = pb_str(q->group_by[g]);
    }
    p->msg.n_group_by = q->ngroup;
    p->msg.group_by = p->group_by;
}

typedef struct result_pb {
    Baygate__Space__Result msg;
    char *group_by[SPACE_MAX_GROUP_BY];
    Baygate__Space__Cell *cells; /* the arrays below: owned, ncells each */
    Baygate__Space__Cell **ptrs;
    Baygate__Space__Moments *moms;
    Baygate__Space__Agree *agrees;
    uint32_t *keys; /* SPACE_MAX_GROUP_BY per cell */
} result_pb;

static void result_pb_dispose(result_pb *p)
{
    free(p->cells);
    free(p->ptrs);
    free(p->moms);
    free(p->agrees);
    free(p->keys);
}

/* Whether all of |v| are zero as numbers (-0.0 included): proto3 omits such fields, so a
 * sub-message of nothing but zeros would arrive empty; we leave it out instead. */
static bool all_zero(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] != 0.0) {
            return false;
        }
    }
    return true;
}

/* Bytes of |v| as a varint. */
static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Fills |p| with a view of checked |r| (bins borrowed); on failure |p| is still safe to
 * dispose. Returns 0 or BG_ERR_NOMEM. */
static int result_pb_fill(result_pb *p, const space_result *r)
{
    memset(p, 0, sizeof(*p));
    baygate__space__result__init(&p->msg);
    p->msg.op = (Baygate__Space__Op)r->op;
    p->msg.resolution = r->resolution;
    p->msg.grid_lo = r->grid_lo;
    for (size_t g = 0; g < r->ngroup; g++) {
        p->group_by[g] = pb_str(r->group_by[g]);
    }
    p->msg.n_group_by = r->ngroup;
    p->msg.group_by = p->group_by;
    size_t n = r->ncells;
    if (n == 0) {
        return 0;
    }
    p->cells = calloc(n, sizeof(*p->cells));
    p->ptrs = calloc(n, sizeof(*p->ptrs));
    p->moms = calloc(n, sizeof(*p->moms));
    p->agrees = calloc(n, sizeof(*p->agrees));
    p->keys = calloc(n * SPACE_MAX_GROUP_BY, sizeof(*p->keys));
    if (p->cells == NULL || p->ptrs == NULL || p->moms == NULL || p->agrees == NULL ||
        p->keys == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const space_cell *c = &r->cells[i];
        Baygate__Space__Cell *pc = &p->cells[i];
        baygate__space__cell__init(pc);
        uint32_t *key = &p->keys[i * SPACE_MAX_GROUP_BY];
        for (size_t g = 0; g < r->ngroup; g++) {
            key[g] = c->key[g];
        }
        pc->n_key = r->ngroup;
        pc->key = key;
        pc->n = c->n;
        pc->sum_units = c->sum_units;
        const double mv[] = {c->mom.mean, c->mom.m2};
        if (c->mom.n != 0 || !all_zero(mv, 2)) {
            Baygate__Space__Moments *m = &p->moms[i];
            baygate__space__moments__init(m);
            m->n = c->mom.n;
            m->mean = c->mom.mean;
            m->m2 = c->mom.m2;
            pc->mom = m;
        }
        const space_agree *a = &c->agree;
        const double av[] = {a->d_mean, a->d_m2, a->a_mean, a->a_m2, a->c_ad,
                             a->x_mean, a->x_m2, a->y_mean, a->y_m2, a->c_xy};
        if (a->n != 0 || !all_zero(av, sizeof(av) / sizeof(av[0]))) {
            Baygate__Space__Agree *pa = &p->agrees[i];
            baygate__space__agree__init(pa);
            pa->n = a->n;
            pa->d_mean = a->d_mean;
            pa->d_m2 = a->d_m2;
            pa->a_mean = a->a_mean;
            pa->a_m2 = a->a_m2;
            pa->c_ad = a->c_ad;
            pa->x_mean = a->x_mean;
            pa->x_m2 = a->x_m2;
            pa->y_mean = a->y_mean;
            pa->y_m2 = a->y_m2;
            pa->c_xy = a->c_xy;
            pc->agree = pa;
        }
        /* Whichever packed form is smaller: masked grids are uniform 64-bit values (10-byte
         * varints), plain counts are mostly one byte. */
        size_t vlen = 0;
        for (size_t j = 0; j < c->nbins; j++) {
            vlen += varint_len(c->bins[j]);
        }
        if (vlen <= 8 * c->nbins) {
            pc->n_bins = c->nbins;
            pc->bins = c->bins;
        } else {
            pc->n_bins_fixed = c->nbins;
            pc->bins_fixed = c->bins;
        }
        if (c->bin_supp != NULL && c->nbins > 0) {
            pc->bin_supp.len = c->nbins;
            pc->bin_supp.data = c->bin_supp;
        }
        pc->has_qvals = c->has_qvals;
        if (c->has_qvals) {
            pc->n_qvals = SPACE_MAX_PROBS;
            pc->qvals = (double *)c->qvals;
        }
        pc->supp = (Baygate__Space__Supp)c->supp;
        pc->noisy = c->noisy;
        pc->noise_scale = c->noise_scale;
        p->ptrs[i] = pc;
    }
    p->msg.n_cells = n;
    p->msg.cells = p->ptrs;
    return 0;
}

/* Packs |msg| into a new buffer. */
static int pack_out(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > SPACE_WIRE_MAX_BYTES) {
        return BG_ERR_INVAL; /* no decoder would take it */
    }
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        return BG_ERR_NOMEM;
    }
    size_t got = protobuf_c_message_pack(msg, buf);
    assert(got == n);
    (void)got;
    *out = buf;
    *len = n;
    return 0;
}

int space_query_encode(const space_query *in, uint8_t **out, size_t *len)
{
    if (check_query(in) != 0) {
        return BG_ERR_INVAL;
    }
    query_pb p;
    query_pb_fill(&p, in);
    return pack_out(&p.msg.base, out, len);
}

int space_result_encode(const space_result *in, uint8_t **out, size_t *len)
{
    if (check_result(in) != 0) {
        return BG_ERR_INVAL;
    }
    result_pb p;
    int rc = result_pb_fill(&p, in);
    if (rc == 0) {
        rc = pack_out(&p.msg.base, out, len);
    }
    result_pb_dispose(&p);
    return rc;
}

int space_leg_encode(const space_leg *in, uint8_t **out, size_t *len)
{
    if (check_leg(in) != 0) {
        return BG_ERR_INVAL;
    }
    Baygate__Space__Leg msg;
    query_pb q;
    Baygate__Space__Party parties[SPACE_WIRE_MAX_PARTIES];
    Baygate__Space__Party *ptrs[SPACE_WIRE_MAX_PARTIES];
    baygate__space__leg__init(&msg);
    query_pb_fill(&q, &in->q);
    msg.query_id = pb_str(in->query_id);
    msg.query = &q.msg;
    for (size_t i = 0; i < in->nparties; i++) {
        baygate__space__party__init(&parties[i]);
        parties[i].city = pb_str(in->parties[i].city);
        parties[i].cert_der.len = in->parties[i].cert_len;
        parties[i].cert_der.data = in->parties[i].cert_der;
        ptrs[i] = &parties[i];
    }
    msg.n_participants = in->nparties;
    msg.participants = ptrs;
    msg.masked = in->masked;
    return pack_out(&msg.base, out, len);
}

int space_leg_answer_encode(const space_leg_answer *in, uint8_t **out, size_t *len)
{
    if (check_answer(in) != 0) {
        return BG_ERR_INVAL;
    }
    Baygate__Space__LegAnswer msg;
    Baygate__Space__Receipt receipt;
    result_pb r;
    memset(&r, 0, sizeof(r));
    baygate__space__leg_answer__init(&msg);
    msg.city = pb_str(in->city);
    msg.masked = in->masked;
    msg.error_code = pb_str(in->error_code);
    msg.error_msg = pb_str(in->error_msg);
    int rc = 0;
    if (in->error_code[0] == '\0') {
        rc = result_pb_fill(&r, &in->result);
        msg.result = &r.msg;
    }
    if (in->has_receipt) {
        baygate__space__receipt__init(&receipt);
        receipt.city = pb_str(in->receipt_city);
        receipt.index = in->receipt_index;
        receipt.leaf_hash.len = sizeof(in->receipt_leaf);
        receipt.leaf_hash.data = (uint8_t *)in->receipt_leaf;
        receipt.queries_used = in->receipt_queries_used;
        msg.receipt = &receipt;
    }
    if (rc == 0) {
        rc = pack_out(&msg.base, out, len);
    }
    result_pb_dispose(&r);
    return rc;
}

/* ---- decoding ---------------------------------------------------------------------------- */

/* protobuf-c allocates as it parses, and a few bytes of input can make it allocate a lot (an
 * empty Cell is 2 bytes on the wire and a ~150-byte struct; a 1-byte varint bin is 8). This
 * allocator gives one unpack a budget proportional to its input, so a hostile message fails
 * to parse instead of exhausting memory. */
typedef struct capped {
    size_t used, budget;
    bool oom; /* the system allocator failed within budget (BG_ERR_NOMEM, not INVAL) */
} capped;

#define CAPPED_HDR alignof(max_align_t)

static void *capped_alloc(void *data, size_t size)
{
    capped *c = data;
    if (size > c->budget - c->used || size > SIZE_MAX - CAPPED_HDR) {
        return NULL;
    }
    unsigned char *base = malloc(CAPPED_HDR + size);
    if (base == NULL) {
        c->oom = true;
        return NULL;
    }
    memcpy(base, &size, sizeof(size));
    c->used += size;
    return base + CAPPED_HDR;
}

static void capped_free(void *data, void *ptr)
{
    capped *c = data;
    if (ptr == NULL) {
        return;
    }
    unsigned char *base = (unsigned char *)ptr - CAPPED_HDR;
    size_t size;
    memcpy(&size, base, sizeof(size));
    assert(size <= c->used);
    c->used -= size;
    free(base);
}

typedef struct unpacked {
    capped cap;
    ProtobufCAllocator alloc;
    ProtobufCMessage *msg;
} unpacked;

/* Unpacks |len| bytes at |buf| as |desc| into |u->msg|. Returns 0, BG_ERR_INVAL (malformed,
 * too large, over budget) or BG_ERR_NOMEM. */
static int unpack_capped(unpacked *u, const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                         size_t len)
{
    static const uint8_t empty[1];
    if (len > SPACE_WIRE_MAX_BYTES || (buf == NULL && len > 0)) {
        return BG_ERR_INVAL;
    }
    u->cap.used = 0;
    u->cap.budget = ((size_t)4 << 20) + 16 * len;
    u->cap.oom = false;
    u->alloc.alloc = capped_alloc;
    u->alloc.free = capped_free;
    u->alloc.allocator_data = &u->cap;
    u->msg = protobuf_c_message_unpack(desc, &u->alloc, len, buf != NULL ? buf : empty);
    if (u->msg == NULL) {
        return u->cap.oom ? BG_ERR_NOMEM : BG_ERR_INVAL;
    }
    return 0;
}

static void unpacked_free(unpacked *u)
{
    protobuf_c_message_free_unpacked(u->msg, &u->alloc);
    assert(u->cap.used == 0);
}

/* Copies protobuf-c string |src| (NULL: "") into |dst| of |cap| bytes. The rules are checked
 * later on the struct; here only that it fits. A string with an embedded NUL arrives cut at
 * the NUL (protobuf-c gives us no length); it is still bounded and checked. */
static int str_in(char *dst, size_t cap, const char *src)
{
    if (src == NULL) {
        dst[0] = '\0';
        return 0;
    }
    size_t n = strnlen(src, cap);
    if (n == cap) {
        return BG_ERR_INVAL;
    }
    memcpy(dst, src, n + 1);
    return 0;
}
#define STR_IN(dst, src) str_in((dst), sizeof(dst), (src))

static int query_from_pb(space_query *q, const Baygate__Space__Query *m)
{
    memset(q, 0, sizeof(*q));
    if (STR_IN(q->dataset, m->dataset) != 0 || STR_IN(q->field, m->field) != 0 ||
        STR_IN(q->field2, m->field2) != 0 || !op_ok((int)m->op) || m->n_edges > SPACE_MAX_EDGES ||
        m->n_probs > SPACE_MAX_PROBS || m->n_where > SPACE_MAX_FILTERS ||
        m->n_group_by > SPACE_MAX_GROUP_BY) {
        return BG_ERR_INVAL;
    }
    q->op = (space_op)m->op;
    if (m->n_edges > 0) {
        memcpy(q->edges, m->edges, m->n_edges * sizeof(double));
    }
    q->nedges = m->n_edges;
    if (m->n_probs > 0) {
        memcpy(q->probs, m->probs, m->n_probs * sizeof(double));
    }
    q->nprobs = m->n_probs;
    for (size_t i = 0; i < m->n_where; i++) {
        const Baygate__Space__Filter *pf = m->where[i];
        space_filter *f = &q->where[i];
        if (STR_IN(f->field, pf->field) != 0 || (int)pf->cmp < SPACE_CMP_EQ ||
            (int)pf->cmp > SPACE_CMP_IN) {
            return BG_ERR_INVAL;
        }
        f->cmp = (space_cmp)pf->cmp;
        f->is_cat = pf->is_cat != 0;
        if (f->is_cat) {
            if (pf->n_num != 0 || pf->n_cat > SPACE_MAX_IN) {
                return BG_ERR_INVAL;
            }
            for (size_t v = 0; v < pf->n_cat; v++) {
                if (STR_IN(f->cat[v], pf->cat[v]) != 0) {
                    return BG_ERR_INVAL;
                }
            }
            f->nvals = pf->n_cat;
        } else {
            if (pf->n_cat != 0 || pf->n_num > SPACE_MAX_IN) {
                return BG_ERR_INVAL;
            }
            if (pf->n_num > 0) {
                memcpy(f->num, pf->num, pf->n_num * sizeof(double));
            }
            f->nvals = pf->n_num;
        }
    }
    q->nwhere = m->n_where;
    for (size_t g = 0; g < m->n_group_by; g++) {
        if (STR_IN(q->group_by[g], m->group_by[g]) != 0) {
            return BG_ERR_INVAL;
        }
    }
    q->ngroup = m->n_group_by;
    return check_query(q);
}

static int cell_from_pb(space_cell *c, const Baygate__Space__Cell *pc, size_t ngroup, size_t *total)
{
    if (pc->n_key != ngroup || (pc->n_bins > 0 && pc->n_bins_fixed > 0) ||
        !supp_ok((int)pc->supp)) {
        return BG_ERR_INVAL;
    }
    for (size_t g = 0; g < ngroup; g++) {
        if (pc->key[g] > UINT16_MAX) {
            return BG_ERR_INVAL;
        }
        c->key[g] = (uint16_t)pc->key[g];
    }
    c->n = pc->n;
    c->sum_units = pc->sum_units;
    if (pc->mom != NULL) {
        c->mom.n = pc->mom->n;
        c->mom.mean = pc->mom->mean;
        c->mom.m2 = pc->mom->m2;
    }
    if (pc->agree != NULL) {
        const Baygate__Space__Agree *pa = pc->agree;
        space_agree *a = &c->agree;
        a->n = pa->n;
        a->d_mean = pa->d_mean;
        a->d_m2 = pa->d_m2;
        a->a_mean = pa->a_mean;
        a->a_m2 = pa->a_m2;
        a->c_ad = pa->c_ad;
        a->x_mean = pa->x_mean;
        a->x_m2 = pa->x_m2;
        a->y_mean = pa->y_mean;
        a->y_m2 = pa->y_m2;
        a->c_xy = pa->c_xy;
    }
    size_t nb = pc->n_bins > 0 ? pc->n_bins : pc->n_bins_fixed;
    const uint64_t *bins = pc->n_bins > 0 ? pc->bins : pc->bins_fixed;
    if (nb > SPACE_MAX_GRID || nb > SPACE_WIRE_MAX_BINS - *total ||
        (pc->bin_supp.len != 0 && pc->bin_supp.len != nb)) {
        return BG_ERR_INVAL;
    }
    *total += nb;
    if (pc->has_qvals ? pc->n_qvals == 0 || pc->n_qvals > SPACE_MAX_PROBS : pc->n_qvals != 0) {
        return BG_ERR_INVAL;
    }
    c->has_qvals = pc->has_qvals != 0;
    if (pc->n_qvals > 0) {
        memcpy(c->qvals, pc->qvals, pc->n_qvals * sizeof(double));
    }
    c->supp = (space_supp)pc->supp;
    c->noisy = pc->noisy != 0;
    c->noise_scale = pc->noise_scale;
    if (nb > 0) {
        c->bins = malloc(nb * sizeof(uint64_t));
        if (c->bins == NULL) {
            return BG_ERR_NOMEM;
        }
        memcpy(c->bins, bins, nb * sizeof(uint64_t));
        c->nbins = nb;
        if (pc->bin_supp.len > 0) {
            c->bin_supp = malloc(nb);
            if (c->bin_supp == NULL) {
                return BG_ERR_NOMEM;
            }
            memcpy(c->bin_supp, pc->bin_supp.data, nb);
        }
    }
    return 0;
}

/* Reads |m| into |r| (zeroed first); on failure |r| holds nothing. */
static int result_from_pb(space_result *r, const Baygate__Space__Result *m)
{
    memset(r, 0, sizeof(*r));
    if (!op_ok((int)m->op) || m->n_group_by > SPACE_MAX_GROUP_BY || m->n_cells > SPACE_MAX_CELLS) {
        return BG_ERR_INVAL;
    }
    r->op = (space_op)m->op;
    r->resolution = m->resolution;
    r->grid_lo = m->grid_lo;
    for (size_t g = 0; g < m->n_group_by; g++) {
        if (STR_IN(r->group_by[g], m->group_by[g]) != 0) {
            return BG_ERR_INVAL;
        }
    }
    r->ngroup = m->n_group_by;
    int rc = 0;
    if (m->n_cells > 0) {
        r->cells = calloc(m->n_cells, sizeof(*r->cells));
        if (r->cells == NULL) {
            return BG_ERR_NOMEM;
        }
        r->ncells = m->n_cells;
        size_t total = 0;
        for (size_t i = 0; rc == 0 && i < m->n_cells; i++) {
            rc = cell_from_pb(&r->cells[i], m->cells[i], r->ngroup, &total);
        }
    }
    if (rc == 0) {
        rc = check_result(r);
    }
    if (rc != 0) {
        space_result_dispose(r);
        memset(r, 0, sizeof(*r));
    }
    return rc;
}

int space_query_decode(const uint8_t *buf, size_t len, space_query *out)
{
    unpacked u;
    int rc = unpack_capped(&u, &baygate__space__query__descriptor, buf, len);
    if (rc != 0) {
        return rc;
    }
    space_query *q = malloc(sizeof(*q));
    if (q == NULL) {
        rc = BG_ERR_NOMEM;
    } else if ((rc = query_from_pb(q, (const Baygate__Space__Query *)u.msg)) == 0) {
        *out = *q;
    }
    free(q);
    unpacked_free(&u);
    return rc;
}

int space_result_decode(const uint8_t *buf, size_t len, space_result *out)
{
    unpacked u;
    int rc = unpack_capped(&u, &baygate__space__result__descriptor, buf, len);
    if (rc != 0) {
        return rc;
    }
    space_result r;
    if ((rc = result_from_pb(&r, (const Baygate__Space__Result *)u.msg)) == 0) {
        *out = r;
    }
    unpacked_free(&u);
    return rc;
}

void space_leg_dispose(space_leg *leg)
{
    if (leg == NULL) {
        return;
    }
    for (size_t i = 0; i < leg->nparties && i < SPACE_WIRE_MAX_PARTIES; i++) {
        free(leg->parties[i].cert_der);
        leg->parties[i].cert_der = NULL;
        leg->parties[i].cert_len = 0;
    }
    leg->nparties = 0;
}

static int leg_from_pb(space_leg *l, const Baygate__Space__Leg *m)
{
    if (STR_IN(l->query_id, m->query_id) != 0 || m->query == NULL ||
        m->n_participants > SPACE_WIRE_MAX_PARTIES) {
        return BG_ERR_INVAL;
    }
    int rc = query_from_pb(&l->q, m->query);
    if (rc != 0) {
        return rc;
    }
    l->masked = m->masked != 0;
    for (size_t i = 0; i < m->n_participants; i++) {
        const Baygate__Space__Party *pp = m->participants[i];
        space_party *p = &l->parties[i];
        if (STR_IN(p->city, pp->city) != 0 || pp->cert_der.len == 0 ||
            pp->cert_der.len > SPACE_WIRE_MAX_CERT) {
            return BG_ERR_INVAL;
        }
        p->cert_der = malloc(pp->cert_der.len);
        if (p->cert_der == NULL) {
            return BG_ERR_NOMEM;
        }
        memcpy(p->cert_der, pp->cert_der.data, pp->cert_der.len);
        p->cert_len = pp->cert_der.len;
        l->nparties = i + 1;
    }
    return check_leg(l);
}

int space_leg_decode(const uint8_t *buf, size_t len, space_leg *out)
{
    unpacked u;
    int rc = unpack_capped(&u, &baygate__space__leg__descriptor, buf, len);
    if (rc != 0) {
        return rc;
    }
    space_leg *l = calloc(1, sizeof(*l)); /* about 40 KiB: not on the stack */
    if (l == NULL) {
        rc = BG_ERR_NOMEM;
    } else if ((rc = leg_from_pb(l, (const Baygate__Space__Leg *)u.msg)) == 0) {
        *out = *l;
    } else {
        space_leg_dispose(l);
    }
    free(l);
    unpacked_free(&u);
    return rc;
}

void space_leg_answer_dispose(space_leg_answer *a)
{
    if (a == NULL) {
        return;
    }
    space_result_dispose(&a->result);
}

static int answer_from_pb(space_leg_answer *a, const Baygate__Space__LegAnswer *m)
{
    memset(a, 0, sizeof(*a));
    if (STR_IN(a->city, m->city) != 0 || STR_IN(a->error_code, m->error_code) != 0 ||
        STR_IN(a->error_msg, m->error_msg) != 0) {
        return BG_ERR_INVAL;
    }
    a->masked = m->masked != 0;
    if (m->receipt != NULL) {
        if (STR_IN(a->receipt_city, m->receipt->city) != 0 ||
            m->receipt->leaf_hash.len != sizeof(a->receipt_leaf)) {
            return BG_ERR_INVAL;
        }
        a->has_receipt = true;
        a->receipt_index = m->receipt->index;
        memcpy(a->receipt_leaf, m->receipt->leaf_hash.data, sizeof(a->receipt_leaf));
        a->receipt_queries_used = m->receipt->queries_used;
    }
    /* a result exactly when there is no error */
    if ((a->error_code[0] == '\0') != (m->result != NULL)) {
        return BG_ERR_INVAL;
    }
    int rc = 0;
    if (m->result != NULL && (rc = result_from_pb(&a->result, m->result)) != 0) {
        return rc;
    }
    if ((rc = check_answer(a)) != 0) {
        space_result_dispose(&a->result);
    }
    return rc;
}

int space_leg_answer_decode(const uint8_t *buf, size_t len, space_leg_answer *out)
{
    unpacked u;
    int rc = unpack_capped(&u, &baygate__space__leg_answer__descriptor, buf, len);
    if (rc != 0) {
        return rc;
    }
    space_leg_answer a;
    if ((rc = answer_from_pb(&a, (const Baygate__Space__LegAnswer *)u.msg)) == 0) {
        *out = a;
    }
    unpacked_free(&u);
    return rc;
}
