/* base/bytes.h: byte views and a growable byte buffer. Wire data is pointer + length and
 * never NUL-terminated; bg_buf keeps a spare NUL after its data for text convenience only. */
#ifndef BG_BYTES_H
#define BG_BYTES_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct bg_iov {
    const uint8_t *base;
    size_t len;
} bg_iov;

/* Invariant: len <= cap; data[len] == 0 when data != NULL. */
typedef struct bg_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} bg_buf;

static inline bg_iov bg_iov_str(const char *s);
#include <string.h>
static inline bg_iov bg_iov_str(const char *s)
{
    bg_iov v = {(const uint8_t *)s, strlen(s)};
    return v;
}
/* True when |v| equals the NUL-terminated |s|. */
bool bg_iov_eq_str(bg_iov v, const char *s);

void bg_buf_init(bg_buf *b);
/* Appends |len| bytes; returns 0, BG_ERR_NOMEM or BG_ERR_RANGE (size overflow). */
int bg_buf_append(bg_buf *b, const void *p, size_t len);
int bg_buf_appendf(bg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bg_buf_reset(bg_buf *b);
void bg_buf_dispose(bg_buf *b);

/* Copies the NUL-terminated |src| into |dst| of |cap| > 0 bytes, truncating if needed; always
 * NUL-terminates. Returns strlen(src) (>= cap means it was truncated). */
size_t bg_strlcpy(char *dst, const char *src, size_t cap);
/* Writes |v| in decimal into |out| (at least 21 bytes), NUL-terminated; returns the length. */
size_t bg_fmt_u64(char *out, uint64_t v);

/* Duplicates |len| bytes of |p| as a NUL-terminated string; NULL on allocation failure. */
char *bg_strndup(const void *p, size_t len);
#endif /* BG_BYTES_H */
