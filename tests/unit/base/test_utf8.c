/* tests/unit/base/test_utf8.c: the one UTF-8 validator and its control-character policies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/utf8.h"

static bool ok(const char *s, unsigned flags)
{
    return bg_utf8_valid((const uint8_t *)s, strlen(s), flags);
}

static void test_bg_utf8_valid_well_formed(void **state)
{
    (void)state;
    static const char *const good[] = {"", "stroke-registry", "科研", "investigação científica",
                                       "\xf0\x9f\x98\x80" /* U+1F600 */};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(ok(good[i], BG_UTF8_ANY));
        assert_true(ok(good[i], BG_UTF8_NO_CONTROLS));
        assert_true(ok(good[i], BG_UTF8_NOTE));
    }
    static const char *const bad[] = {
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong, three bytes */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\xf5\x80\x80\x80", /* invalid lead byte */
        "\x80",             /* lone continuation */
        "\xe7\xa7",         /* truncated */
        "\xe7\x41\x91",     /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(ok(bad[i], BG_UTF8_ANY));
        assert_false(ok(bad[i], BG_UTF8_NO_CONTROLS));
        assert_false(ok(bad[i], BG_UTF8_NOTE));
    }
}

static void test_bg_utf8_valid_controls(void **state)
{
    (void)state;
    /* C0, DEL, C1: only BG_UTF8_NO_CONTROLS refuses all three */
    assert_true(ok("a\tb", BG_UTF8_ANY));
    assert_false(ok("a\tb", BG_UTF8_NO_CONTROLS));
    assert_false(ok("a\tb", BG_UTF8_NOTE));
    assert_false(ok("a\x7f", BG_UTF8_NO_CONTROLS));
    assert_true(ok("a\x7f", BG_UTF8_NOTE));
    assert_false(ok("\xc2\x85", BG_UTF8_NO_CONTROLS)); /* U+0085 NEL */
    assert_true(ok("\xc2\x85", BG_UTF8_NOTE));
    assert_true(ok("\xc2\xa0", BG_UTF8_NO_CONTROLS)); /* U+00A0 is not a control */
    /* newline: only in notes */
    assert_true(ok("origin\n42\n", BG_UTF8_NOTE));
    assert_false(ok("origin\n42\n", BG_UTF8_NO_CONTROLS));
    assert_false(ok("a\rb", BG_UTF8_NOTE));
    /* a NUL inside the given length */
    assert_true(bg_utf8_valid((const uint8_t *)"a\0b", 3, BG_UTF8_ANY));
    assert_false(bg_utf8_valid((const uint8_t *)"a\0b", 3, BG_UTF8_NO_CONTROLS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bg_utf8_valid_well_formed),
        cmocka_unit_test(test_bg_utf8_valid_controls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
