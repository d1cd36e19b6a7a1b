/* base/utf8.c: see base/utf8.h. */
#include "base/utf8.h"

bool bg_utf8_valid(const uint8_t *s, size_t n, unsigned flags)
{
    bool no_ctl = flags == BG_UTF8_NO_CONTROLS;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if ((no_ctl && (c < 0x20 || c == 0x7f)) ||
                (flags == BG_UTF8_NOTE && c < 0x20 && c != '\n')) {
                return false;
            }
            i++;
            continue;
        }
        size_t len;
        unsigned min, cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (len > n - i) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (no_ctl && cp <= 0x9f)) {
            return false;
        }
        i += len;
    }
    return true;
}
