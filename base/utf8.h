/* base/utf8.h: the one UTF-8 validator: well-formed (shortest form, no surrogates, nothing
 * past U+10FFFF), with an optional ban on control characters. Contract terms, profile terms,
 * wire names, receipts and signed notes all go through it, so "the same text" means the same
 * thing everywhere. */
#ifndef BG_UTF8_H
#define BG_UTF8_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    BG_UTF8_ANY = 0,         /* well-formed is enough */
    BG_UTF8_NO_CONTROLS = 1, /* no C0 controls, DEL or C1 controls (U+0080..U+009F) */
    BG_UTF8_NOTE = 2,        /* no C0 controls except newline (C2SP signed notes) */
};

/* True when the |n| bytes at |s| are well-formed UTF-8 obeying |flags| (one BG_UTF8_*). */
bool bg_utf8_valid(const uint8_t *s, size_t n, unsigned flags);

#endif /* BG_UTF8_H */
