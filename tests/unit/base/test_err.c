/* tests/unit/base/test_err.c: error names and the load-time error buffer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/err.h"

static const int all_codes[] = {
    BG_OK,
    BG_ERR_NOMEM,
    BG_ERR_INVAL,
    BG_ERR_IO,
    BG_ERR_RANGE,
    BG_ERR_NOTFOUND,
    BG_ERR_EXISTS,
    BG_ERR_AGAIN,
    BG_ERR_INTERNAL,
    BG_ERR_CONF_INVALID,
    BG_ERR_CONF_IO,
    BG_ERR_TLS,
    BG_ERR_CERT,
    BG_ERR_IDENTITY,
    BG_ERR_CONTRACT_INVALID,
    BG_ERR_SIGNATURE,
    BG_ERR_CONTRACT_EXPIRED,
    BG_ERR_CONTRACT_REVOKED,
    BG_ERR_BUDGET_EXHAUSTED,
    BG_ERR_STORE,
    BG_ERR_NO_ROUTE,
    BG_ERR_LOOP,
    BG_ERR_TOO_MANY_HOPS,
    BG_ERR_PEER_UNAVAILABLE,
    BG_ERR_TIMEOUT,
    BG_ERR_PROTOCOL,
    BG_ERR_TOO_LARGE,
    BG_ERR_SHUTDOWN,
    BG_ERR_SPACE,
};
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

static void test_bg_strerror_every_code_named(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        const char *s = bg_strerror(all_codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        if (strstr(s, "unknown") != NULL) {
            print_error("code %d has no name\n", all_codes[i]);
            fail();
        }
    }
}

static void test_bg_strerror_names_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        for (size_t j = i + 1; j < NCODES; j++) {
            assert_string_not_equal(bg_strerror(all_codes[i]), bg_strerror(all_codes[j]));
        }
    }
}

static void test_bg_strerror_unknown(void **state)
{
    (void)state;
    assert_string_equal(bg_strerror(-9999), "unknown error");
    assert_string_equal(bg_strerror(1), "unknown error");
    assert_string_equal(bg_strerror(BG_ERR_NO_ROUTE), "no route");
}

static void test_bg_err_is_fatal_cases(void **state)
{
    (void)state;
    assert_true(bg_err_is_fatal(BG_ERR_NOMEM));
    assert_true(bg_err_is_fatal(BG_ERR_INTERNAL));
    assert_false(bg_err_is_fatal(BG_OK));
    assert_false(bg_err_is_fatal(BG_ERR_NO_ROUTE));
    assert_false(bg_err_is_fatal(BG_ERR_CONF_INVALID));
}

static void test_bg_errf_formats(void **state)
{
    (void)state;
    bg_errbuf eb = {{0}};
    int rv = bg_errf(&eb, BG_ERR_CONF_INVALID, "%s:%d: unknown key '%s'", "gz.yaml", 7, "x");
    assert_int_equal(rv, BG_ERR_CONF_INVALID);
    assert_string_equal(eb.msg, "gz.yaml:7: unknown key 'x'");
    /* Overwrites, does not append. */
    bg_errf(&eb, BG_ERR_IO, "short");
    assert_string_equal(eb.msg, "short");
}

static void test_bg_errf_truncates(void **state)
{
    (void)state;
    bg_errbuf eb;
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(bg_errf(&eb, BG_ERR_RANGE, "%s", big), BG_ERR_RANGE);
    assert_int_equal(strlen(eb.msg), sizeof(eb.msg) - 1);
}

static void test_bg_errf_null_buffer(void **state)
{
    (void)state;
    assert_int_equal(bg_errf(NULL, BG_ERR_NOMEM, "ignored %d", 1), BG_ERR_NOMEM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bg_strerror_every_code_named),
        cmocka_unit_test(test_bg_strerror_names_distinct),
        cmocka_unit_test(test_bg_strerror_unknown),
        cmocka_unit_test(test_bg_err_is_fatal_cases),
        cmocka_unit_test(test_bg_errf_formats),
        cmocka_unit_test(test_bg_errf_truncates),
        cmocka_unit_test(test_bg_errf_null_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
