/* tests/unit/space/asserts.h: cmocka assertions on space/ structs that several space/ tests
 * need (test_wire.c, test_json.c). Include after <cmocka.h> and space/space.h. */
#ifndef SPACE_TEST_ASSERTS_H
#define SPACE_TEST_ASSERTS_H

/* |a| and |b| are the same query, every array compared whole (unused entries too, so a
 * decoder that leaves garbage past the count is caught). */
static void assert_query_equal(const space_query *a, const space_query *b)
{
    assert_string_equal(a->dataset, b->dataset);
    assert_int_equal(a->op, b->op);
    assert_string_equal(a->field, b->field);
    assert_string_equal(a->field2, b->field2);
    assert_int_equal(a->nedges, b->nedges);
    assert_memory_equal(a->edges, b->edges, sizeof(a->edges));
    assert_int_equal(a->nprobs, b->nprobs);
    assert_memory_equal(a->probs, b->probs, sizeof(a->probs));
    assert_int_equal(a->nwhere, b->nwhere);
    for (size_t i = 0; i < a->nwhere; i++) {
        const space_filter *f = &a->where[i], *g = &b->where[i];
        assert_string_equal(f->field, g->field);
        assert_int_equal(f->cmp, g->cmp);
        assert_int_equal(f->is_cat, g->is_cat);
        assert_int_equal(f->nvals, g->nvals);
        for (size_t v = 0; v < f->nvals; v++) {
            if (f->is_cat) {
                assert_string_equal(f->cat[v], g->cat[v]);
            } else {
                assert_memory_equal(&f->num[v], &g->num[v], sizeof(double));
            }
        }
    }
    assert_int_equal(a->ngroup, b->ngroup);
    for (size_t g = 0; g < a->ngroup; g++) {
        assert_string_equal(a->group_by[g], b->group_by[g]);
    }
}
#endif /* SPACE_TEST_ASSERTS_H */
