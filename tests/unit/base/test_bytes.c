/* tests/unit/base/test_bytes.c: byte views and the growable buffer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "base/err.h"

static void check_invariant(const bg_buf *b)
{
    assert_true(b->len < b->cap);
    assert_int_equal(b->data[b->len], 0);
}

static void test_bg_buf_init_empty(void **state)
{
    (void)state;
    bg_buf b;
    bg_buf_init(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    bg_buf_reset(&b); /* no data: still fine */
    bg_buf_dispose(&b);
    bg_buf_dispose(&b); /* twice is fine after dispose re-inits */
}

static void test_bg_buf_append_grows(void **state)
{
    (void)state;
    bg_buf b;
    bg_buf_init(&b);
    char expect[5000];
    for (size_t i = 0; i < 1000; i++) {
        assert_int_equal(bg_buf_append(&b, "abcde", 5), 0);
        memcpy(expect + i * 5, "abcde", 5);
        check_invariant(&b);
    }
    assert_int_equal(b.len, 5000);
    assert_memory_equal(b.data, expect, 5000);
    assert_true(b.cap >= 5001);
    bg_buf_dispose(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
}

static void test_bg_buf_append_empty(void **state)
{
    (void)state;
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(bg_buf_append(&b, NULL, 0), 0);
    check_invariant(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal((char *)b.data, "");
    bg_buf_dispose(&b);
}

static void test_bg_buf_append_overflow(void **state)
{
    (void)state;
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(bg_buf_append(&b, "x", 1), 0);
    assert_int_equal(bg_buf_append(&b, "x", SIZE_MAX), BG_ERR_RANGE);
    assert_int_equal(bg_buf_append(&b, "x", SIZE_MAX - 1), BG_ERR_RANGE);
    assert_int_equal(b.len, 1);
    check_invariant(&b);
    bg_buf_dispose(&b);
}

static void test_bg_buf_appendf_formats(void **state)
{
    (void)state;
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(bg_buf_appendf(&b, "%s=%d", "hops", 3), 0);
    assert_int_equal(bg_buf_appendf(&b, ",%s", "x"), 0);
    assert_string_equal((char *)b.data, "hops=3,x");
    assert_int_equal(b.len, 8);
    check_invariant(&b);
    assert_int_equal(bg_buf_appendf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 8);
    bg_buf_dispose(&b);
}

static void test_bg_buf_appendf_grows(void **state)
{
    (void)state;
    bg_buf b;
    bg_buf_init(&b);
    for (int i = 0; i < 500; i++) {
        assert_int_equal(bg_buf_appendf(&b, "%04d;", i), 0);
        check_invariant(&b);
    }
    assert_int_equal(b.len, 2500);
    assert_memory_equal(b.data, "0000;0001;", 10);
    assert_memory_equal(b.data + 2495, "0499;", 5);
    /* One append much larger than the current capacity. */
    char big[10000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(bg_buf_appendf(&b, "%s", big), 0);
    assert_int_equal(b.len, 2500 + 9999);
    check_invariant(&b);
    bg_buf_dispose(&b);
}

static void test_bg_buf_reset_keeps_capacity(void **state)
{
    (void)state;
    bg_buf b;
    bg_buf_init(&b);
    assert_int_equal(bg_buf_append(&b, "hello", 5), 0);
    size_t cap = b.cap;
    bg_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_string_equal((char *)b.data, "");
    assert_int_equal(bg_buf_append(&b, "hi", 2), 0);
    assert_string_equal((char *)b.data, "hi");
    bg_buf_dispose(&b);
}

static void test_bg_strndup_copies(void **state)
{
    (void)state;
    char *s = bg_strndup("abcdef", 3);
    assert_non_null(s);
    assert_string_equal(s, "abc");
    free(s);
    s = bg_strndup("", 0);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    /* Embedded NUL is copied as bytes; the result is cut there as a C string. */
    s = bg_strndup("a\0b", 3);
    assert_non_null(s);
    assert_memory_equal(s, "a\0b", 4);
    free(s);
}

static void test_bg_strndup_overflow(void **state)
{
    (void)state;
    assert_null(bg_strndup("x", SIZE_MAX));
}

static void test_bg_iov_eq_str_cases(void **state)
{
    (void)state;
    const uint8_t raw[] = {'a', 'b', 'c'};
    bg_iov v = {raw, 3};
    assert_true(bg_iov_eq_str(v, "abc"));
    assert_false(bg_iov_eq_str(v, "ab"));
    assert_false(bg_iov_eq_str(v, "abcd"));
    assert_false(bg_iov_eq_str(v, "abd"));
    bg_iov empty = {NULL, 0};
    assert_true(bg_iov_eq_str(empty, ""));
    assert_false(bg_iov_eq_str(empty, "a"));
    bg_iov s = bg_iov_str("hello");
    assert_int_equal(s.len, 5);
    assert_true(bg_iov_eq_str(s, "hello"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bg_buf_init_empty),
        cmocka_unit_test(test_bg_buf_append_grows),
        cmocka_unit_test(test_bg_buf_append_empty),
        cmocka_unit_test(test_bg_buf_append_overflow),
        cmocka_unit_test(test_bg_buf_appendf_formats),
        cmocka_unit_test(test_bg_buf_appendf_grows),
        cmocka_unit_test(test_bg_buf_reset_keeps_capacity),
        cmocka_unit_test(test_bg_strndup_copies),
        cmocka_unit_test(test_bg_strndup_overflow),
        cmocka_unit_test(test_bg_iov_eq_str_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
