/* tests/unit/base/test_ids.c: city id syntax. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/ids.h"

static bool valid(const char *s)
{
    return bg_city_id_valid(s, strlen(s));
}

static void test_bg_city_id_valid_accepts(void **state)
{
    (void)state;
    assert_true(valid("guangzhou"));
    assert_true(valid("a"));
    assert_true(valid("hong-kong2"));
    char max[BG_CITY_MAX + 1];
    memset(max, 'z', BG_CITY_MAX);
    max[BG_CITY_MAX] = 0;
    assert_true(valid(max));
    /* only |len| bytes count */
    assert_true(bg_city_id_valid("macau/x", 5));
}

static void test_bg_city_id_valid_rejects(void **state)
{
    (void)state;
    static const char *bad[] = {"", "Guangzhou", "1city", "-x", "hong kong", "hong_kong",
                                "city.", "macau/x", "\xe5\xb9\xbf\xe5\xb7\x9e"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(valid(bad[i]));
    }
    char over[BG_CITY_MAX + 2];
    memset(over, 'z', BG_CITY_MAX + 1);
    over[BG_CITY_MAX + 1] = 0;
    assert_false(valid(over));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bg_city_id_valid_accepts),
        cmocka_unit_test(test_bg_city_id_valid_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
