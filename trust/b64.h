/* trust/b64.h: base64 (RFC 4648 section 4, padded) on top of OpenSSL's EVP_EncodeBlock and
 * EVP_DecodeBlock, with the strictness signed data needs: a decoder that accepts only the one
 * canonical spelling of each byte string (no whitespace, padding only at the end, unused bits
 * zero), so hashes, keys, signatures and receipts cannot be smuggled in a second form. Used by
 * the ledger, the witness, the query planner and baygatectl. Pure, any thread. */
#ifndef TRUST_B64_H
#define TRUST_B64_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/bytes.h"

/* Appends the base64 of |n| bytes at |p| to |out|. Returns 0, BG_ERR_NOMEM or BG_ERR_RANGE;
 * |out| is unchanged on failure. */
int trust_b64_append(bg_buf *out, const uint8_t *p, size_t n);

/* Decodes the |n| characters at |s| into |out| (room for |cap| bytes), |*outlen| bytes. False
 * when they are not canonical padded base64, are empty, or do not fit; |*outlen| is then
 * untouched (|out| may have been written). */
bool trust_b64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen);

#endif /* TRUST_B64_H */
