/* tests/unit/trust/test_b64.c: strict base64 over OpenSSL's block codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "trust/b64.h"

static bool dec(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    return trust_b64_decode(s, strlen(s), out, cap, n);
}

static void test_trust_b64_roundtrip(void **state)
{
    (void)state;
    /* RFC 4648 section 10 vectors, then every length 1..64 of a byte ramp */
    static const char *const v[][2] = {{"f", "Zg=="},         {"fo", "Zm8="},
                                       {"foo", "Zm9v"},       {"foob", "Zm9vYg=="},
                                       {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        bg_buf b;
        bg_buf_init(&b);
        assert_int_equal(trust_b64_append(&b, (const uint8_t *)v[i][0], strlen(v[i][0])), 0);
        assert_string_equal((const char *)b.data, v[i][1]);
        uint8_t out[16];
        size_t n = 0;
        assert_true(dec(v[i][1], out, sizeof(out), &n));
        assert_int_equal(n, strlen(v[i][0]));
        assert_memory_equal(out, v[i][0], n);
        bg_buf_dispose(&b);
    }
    uint8_t ramp[64], out[64];
    for (size_t i = 0; i < sizeof(ramp); i++) {
        ramp[i] = (uint8_t)(i * 37 + 250);
    }
    for (size_t len = 1; len <= sizeof(ramp); len++) {
        bg_buf b;
        bg_buf_init(&b);
        assert_int_equal(trust_b64_append(&b, ramp, len), 0);
        size_t n = 0;
        assert_true(trust_b64_decode((const char *)b.data, b.len, out, sizeof(out), &n));
        assert_int_equal(n, len);
        assert_memory_equal(out, ramp, len);
        assert_false(trust_b64_decode((const char *)b.data, b.len, out, len - 1, &n)); /* cap */
        bg_buf_dispose(&b);
    }
}

/* Only the canonical spelling decodes: what OpenSSL alone would accept is refused. */
static void test_trust_b64_decode_strict(void **state)
{
    (void)state;
    uint8_t out[16];
    size_t n = 99;
    static const char *const bad[] = {
        "",             /* empty */
        "Zg=",          /* length not a multiple of 4 */
        " Zg=",         /* whitespace (OpenSSL skips it) */
        "Zg==\n",       /* trailing newline */
        "Zh==",         /* non-zero unused bits: a second spelling of "f" */
        "Zm9=",         /* idem with one pad */
        "Z===",         /* three pad characters */
        "Zg=a",         /* data after padding */
        "=Zg=",         /* padding first */
        "Zm-v",         /* base64url alphabet */
        "Zm9v\0\0\0\0", /* NUL inside (length given by strlen: "Zm9v" only, so valid below) */
    };
    for (size_t i = 0; i + 1 < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(dec(bad[i], out, sizeof(out), &n));
        assert_int_equal(n, 99); /* untouched */
    }
    assert_false(trust_b64_decode("Zm9v\0\0\0\0", 8, out, sizeof(out), &n));
    assert_true(dec("Zg==", out, sizeof(out), &n) && n == 1 && out[0] == 'f');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_b64_roundtrip),
        cmocka_unit_test(test_trust_b64_decode_strict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
