/* tests/unit/routing/test_learned.c: routes learned from peers' catalogs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "routing/learned.h"

static void test_route_learned_shortest_first(void **state)
{
    (void)state;
    route_learned *t = route_learned_new("hongkong");
    assert_non_null(t);
    const char *sz[] = {"guangzhou", "macau", "hongkong", "Bad City"};
    const uint32_t szh[] = {1, 2, 1, 1};
    const char *zh[] = {"macau", "guangzhou"};
    const uint32_t zhh[] = {1, 1};
    assert_int_equal(route_learned_update(t, "shenzhen", sz, szh, 4), 0);
    assert_int_equal(route_learned_update(t, "zhuhai", zh, zhh, 2), 0);
    const char *out[4];
    uint32_t hops[4];
    /* macau: 2 hops via zhuhai beats 3 via shenzhen */
    assert_int_equal(route_learned_next_hops(t, "macau", out, hops, 4), 2);
    assert_string_equal(out[0], "zhuhai");
    assert_int_equal(hops[0], 2);
    assert_string_equal(out[1], "shenzhen");
    assert_int_equal(hops[1], 3);
    /* guangzhou: a tie at 2 hops keeps the one learned first */
    assert_int_equal(route_learned_next_hops(t, "guangzhou", out, hops, 4), 2);
    assert_string_equal(out[0], "shenzhen");
    /* the own city and invalid ids are never learned */
    assert_int_equal(route_learned_next_hops(t, "hongkong", out, hops, 4), 0);
    assert_int_equal(route_learned_next_hops(t, "Bad City", out, hops, 4), 0);
    const char *cities[8];
    assert_int_equal(route_learned_cities(t, cities, 8), 2);
    /* a new advertisement replaces the old; forgetting a peer drops its routes */
    const char *sz2[] = {"taipa"};
    const uint32_t sz2h[] = {3};
    assert_int_equal(route_learned_update(t, "shenzhen", sz2, sz2h, 1), 0);
    assert_int_equal(route_learned_next_hops(t, "macau", out, hops, 4), 1);
    assert_int_equal(route_learned_next_hops(t, "taipa", out, hops, 4), 1);
    assert_int_equal(hops[0], 4);
    route_learned_forget(t, "zhuhai");
    assert_int_equal(route_learned_next_hops(t, "macau", out, hops, 4), 0);
    /* too many hops: ignored */
    const char *far[] = {"faraway"};
    const uint32_t farh[] = {ROUTE_LEARNED_MAX_HOPS};
    assert_int_equal(route_learned_update(t, "zhuhai", far, farh, 1), 0);
    assert_int_equal(route_learned_next_hops(t, "faraway", out, hops, 4), 0);
    route_learned_free(t);
    route_learned_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_learned_shortest_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
