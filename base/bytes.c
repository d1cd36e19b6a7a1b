/* base/bytes.c: growable buffer with overflow-checked growth. */
#include "base/bytes.h"
#include "base/err.h"
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool bg_iov_eq_str(bg_iov v, const char *s)
{
    size_t n = strlen(s);
    return v.len == n && (n == 0 || memcmp(v.base, s, n) == 0);
}

void bg_buf_init(bg_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

static int reserve(bg_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        return BG_ERR_RANGE;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL) {
        return BG_ERR_NOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int bg_buf_append(bg_buf *b, const void *p, size_t len)
{
    int rv = reserve(b, len);
    if (rv != 0) {
        return rv;
    }
    if (len > 0) {
        memcpy(b->data + b->len, p, len);
    }
    b->len += len;
    b->data[b->len] = 0;
    assert(b->len < b->cap);
    return 0;
}

int bg_buf_appendf(bg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return BG_ERR_INVAL;
    }
    int rv = reserve(b, (size_t)n);
    if (rv != 0) {
        return rv;
    }
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void bg_buf_reset(bg_buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = 0;
    }
}

void bg_buf_dispose(bg_buf *b)
{
    free(b->data);
    bg_buf_init(b);
}

char *bg_strndup(const void *p, size_t len)
{
    if (len == SIZE_MAX) {
        return NULL;
    }
    char *s = malloc(len + 1);
    if (s == NULL) {
        return NULL;
    }
    memcpy(s, p, len);
    s[len] = 0;
    return s;
}

size_t bg_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = strlen(src);
    size_t c = n < cap ? n : cap - 1;
    memcpy(dst, src, c);
    dst[c] = 0;
    return n;
}

size_t bg_fmt_u64(char *out, uint64_t v)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    out[n] = 0;
    return n;
}
