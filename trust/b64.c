/* trust/b64.c: strict base64 over OpenSSL's block codec; see trust/b64.h. */
#include "trust/b64.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/err.h"

int trust_b64_append(bg_buf *out, const uint8_t *p, size_t n)
{
    if (n > (size_t)INT32_MAX / 4 * 3) {
        return BG_ERR_RANGE;
    }
    char *tmp = malloc((n + 2) / 3 * 4 + 1); /* EVP_EncodeBlock adds a NUL */
    if (tmp == NULL) {
        return BG_ERR_NOMEM;
    }
    int w = EVP_EncodeBlock((unsigned char *)tmp, p, (int)n);
    int rc = w < 0 ? BG_ERR_RANGE : bg_buf_append(out, tmp, (size_t)w);
    free(tmp);
    return rc;
}

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

bool trust_b64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    /* EVP_DecodeBlock skips surrounding whitespace and ignores unused bits: check the
     * alphabet and the padding first, then that the result re-encodes to exactly |s|. */
    if (n == 0 || n % 4 != 0 || n > (size_t)INT32_MAX) {
        return false;
    }
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < n - pad; i++) {
        if (!b64_char(s[i])) {
            return false;
        }
    }
    size_t len = n / 4 * 3 - pad;
    if (len > cap) {
        return false;
    }
    uint8_t *tmp = malloc(n / 4 * 3);
    char *back = malloc(n + 1);
    bool ok = tmp != NULL && back != NULL &&
              EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n) == (int)(n / 4 * 3) &&
              EVP_EncodeBlock((unsigned char *)back, tmp, (int)len) == (int)n &&
              memcmp(back, s, n) == 0;
    if (ok) {
        memcpy(out, tmp, len);
        *outlen = len;
    }
    if (tmp != NULL) {
        OPENSSL_cleanse(tmp, n / 4 * 3); /* may hold a key or signature */
    }
    free(tmp);
    free(back);
    return ok;
}
