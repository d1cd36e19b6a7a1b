/* tests/fuzz/fuzz_receipt.c: arbitrary bytes into the pure, untrusted-input functions of the
 * receipts ledger (trust/ledger.h). None may crash, leak or read out of bounds, and:
 * - trust_receipt_decode(): 0 or BG_ERR_INVAL / BG_ERR_RANGE (BG_ERR_NOMEM if the machine runs
 *   out); what decodes passes trust_receipt_check() and re-encodes to exactly the input bytes
 *   (only canonical encodings are accepted, so equal receipts have equal leaf hashes);
 * - trust_ledger_checkpoint_parse(): 0 or BG_ERR_INVAL; what parses, written out again as
 *   "<origin>\n<size>\n<base64 root>\n", is exactly the first three lines of the input (decimal
 *   without leading zeroes, strict base64: one spelling per checkpoint);
 * - trust_ledger_note_verify() and trust_ledger_checkpoint_verify() against a fixed verifier key
 *   (hongkong's ledger key of the seed note, below): 0 or BG_ERR_SIGNATURE; when the note
 *   verifies, its signed text ends at a newline inside the input, checkpoint_verify() agrees
 *   with note_verify() + checkpoint_parse() of that text and the origin is the key's name. The
 *   input is also tried as a verifier key (0, BG_ERR_INVAL or BG_ERR_SIGNATURE) on the seed note;
 * - trust_ledger_verify_inclusion() / trust_ledger_verify_consistency() on the input read as
 *   (u64 index or m, u64 size or n, 32-byte leaf or first root, 32-byte root, hashes...), which
 *   must agree with the RFC 9162 section 2.1.3.2 / 2.1.4.2 algorithms written out here again.
 * Seeds (corpus/receipt/): real encoded receipts (provider, home with counterpart reference,
 * refusal, identity event), the real signed note of the key below, its checkpoint text, the key
 * itself, and a valid inclusion and a valid consistency proof input. */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/bytes.h"
#include "base/err.h"
#include "trust/ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The verifier key of the ledger that signed corpus/receipt/'s note (a throwaway ledger). */
static const char VKEY[] =
    "hongkong.gba/baygate/ledger+df205ff6+ARbpR2nHiiNj6dup5Qmita/JQ1F1384+mds8HZXQMXyH";
static const char NOTE[] =
    "hongkong.gba/baygate/ledger\n4\nMQ3hkUETetPI/zAb2qj635ChqNdBQznHPizxqmjWK+c=\n\n"
    "\xe2\x80\x94 hongkong.gba/baygate/ledger "
    "3yBf9pepYiAqJ9vqgPvkjFR5zn4rgRVfYsV2XBX7nd/kPJzpeQaadv6Ggu5ijMfPWKA92jUCMhNY2fZYaFWFVItIiQE="
    "\n";
#define HASH TRUST_LEDGER_HASH_LEN
#define PROOF_IN_MAX 70 /* hashes read from the input: a few beyond TRUST_LEDGER_PROOF_MAX */

static void fuzz_receipt(const uint8_t *data, size_t size)
{
    trust_receipt r;
    bg_errbuf eb = {{0}};
    int rc = trust_receipt_decode(&r, data, size, &eb);
    assert(rc == 0 || rc == BG_ERR_INVAL || rc == BG_ERR_RANGE || rc == BG_ERR_NOMEM);
    if (rc != 0) {
        return;
    }
    assert(trust_receipt_check(&r, NULL) == 0);
    bg_buf out;
    bg_buf_init(&out);
    rc = trust_receipt_encode(&r, &out, &eb);
    assert(rc == 0 || rc == BG_ERR_NOMEM);
    if (rc == 0) {
        assert(out.len == size && memcmp(out.data, data, size) == 0);
        uint8_t leaf[HASH];
        rc = trust_ledger_leaf_hash(out.data, out.len, leaf);
        assert(rc == 0 || rc == BG_ERR_NOMEM);
    }
    bg_buf_dispose(&out);
}

static size_t b64_encode(const uint8_t *p, size_t n, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16;
        if (i + 1 < n) {
            w |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < n) {
            w |= p[i + 2];
        }
        out[o++] = tab[w >> 18 & 63];
        out[o++] = tab[w >> 12 & 63];
        out[o++] = i + 1 < n ? tab[w >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[w & 63] : '=';
    }
    return o;
}

/* "<origin>\n<size>\n<base64 root>\n" into |out| (room for 256); its length. */
static size_t render_checkpoint(const trust_ledger_checkpoint *c, char *out)
{
    size_t n = strlen(c->origin);
    memcpy(out, c->origin, n);
    out[n++] = '\n';
    char dec[24];
    size_t d = 0;
    uint64_t v = c->size;
    do {
        dec[d++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (d > 0) {
        out[n++] = dec[--d];
    }
    out[n++] = '\n';
    n += b64_encode(c->root, HASH, out + n);
    out[n++] = '\n';
    return n;
}

static void fuzz_checkpoint(const uint8_t *data, size_t size)
{
    trust_ledger_checkpoint c;
    int rc = trust_ledger_checkpoint_parse(data, size, &c);
    assert(rc == 0 || rc == BG_ERR_INVAL);
    if (rc == 0) {
        char text[256];
        size_t n = render_checkpoint(&c, text);
        assert(n <= size && memcmp(text, data, n) == 0);
    }

    size_t tlen = 0;
    rc = trust_ledger_note_verify(data, size, VKEY, &tlen);
    assert(rc == 0 || rc == BG_ERR_SIGNATURE);
    trust_ledger_checkpoint v;
    int vrc = trust_ledger_checkpoint_verify(data, size, VKEY, &v);
    assert(vrc == 0 || vrc == BG_ERR_SIGNATURE);
    if (rc == 0) {
        assert(tlen > 0 && tlen <= size && data[tlen - 1] == '\n');
        trust_ledger_checkpoint p;
        int prc = trust_ledger_checkpoint_parse(data, tlen, &p);
        bool same_origin = prc == 0 && strcmp(p.origin, "hongkong.gba/baygate/ledger") == 0;
        assert((vrc == 0) == same_origin);
        if (vrc == 0) {
            assert(v.size == p.size && memcmp(v.root, p.root, HASH) == 0 &&
                   strcmp(v.origin, p.origin) == 0);
        }
    } else {
        assert(vrc != 0);
    }

    if (size < 512) { /* the input as a verifier key, on the seed note */
        char key[512];
        memcpy(key, data, size);
        key[size] = '\0';
        rc = trust_ledger_note_verify((const uint8_t *)NOTE, sizeof(NOTE) - 1, key, NULL);
        assert(rc == 0 || rc == BG_ERR_INVAL || rc == BG_ERR_SIGNATURE);
    }
}

/* ---- RFC 9162 verifiers, written out again as the oracle ---------------------------------- */

static void node(const uint8_t *l, const uint8_t *r, uint8_t *out)
{
    uint8_t buf[1 + 2 * HASH];
    buf[0] = 1;
    memcpy(buf + 1, l, HASH);
    memcpy(buf + 1 + HASH, r, HASH);
    SHA256(buf, sizeof(buf), out);
}

static bool ref_inclusion(const uint8_t *leaf, uint64_t index, uint64_t size,
                          const uint8_t (*proof)[HASH], size_t n, const uint8_t *root)
{
    if (index >= size) {
        return false;
    }
    uint64_t fn = index, sn = size - 1;
    uint8_t r[HASH];
    memcpy(r, leaf, HASH);
    for (size_t i = 0; i < n; i++) {
        if (sn == 0) {
            return false;
        }
        if ((fn & 1) || fn == sn) {
            node(proof[i], r, r);
            if (!(fn & 1)) {
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            node(r, proof[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(r, root, HASH) == 0;
}

static bool ref_consistency(uint64_t m, uint64_t n, const uint8_t *root_m, const uint8_t *root_n,
                            const uint8_t (*proof)[HASH], size_t len)
{
    if (m == n) {
        return len == 0 && memcmp(root_m, root_n, HASH) == 0;
    }
    if (m == 0) {
        return len == 0;
    }
    if (m > n || len == 0) {
        return false;
    }
    const uint8_t(*path)[HASH] = proof;
    size_t plen = len, start = 0;
    uint8_t fr[HASH], sr[HASH];
    bool pow2 = (m & (m - 1)) == 0;
    if (pow2) { /* root_m is prepended to the path */
        memcpy(fr, root_m, HASH);
    } else {
        memcpy(fr, path[0], HASH);
        start = 1;
    }
    memcpy(sr, fr, HASH);
    uint64_t fn = m - 1, sn = n - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    for (size_t i = start; i < plen; i++) {
        if (sn == 0) {
            return false;
        }
        if ((fn & 1) || fn == sn) {
            node(path[i], fr, fr);
            node(path[i], sr, sr);
            if (!(fn & 1)) {
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            node(sr, path[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(fr, root_m, HASH) == 0 && memcmp(sr, root_n, HASH) == 0;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static void fuzz_proofs(const uint8_t *data, size_t size)
{
    if (size < 16 + 2 * HASH) {
        return;
    }
    uint64_t a = be64(data), b = be64(data + 8);
    const uint8_t *h1 = data + 16, *h2 = data + 16 + HASH;
    size_t n = (size - 16 - 2 * HASH) / HASH;
    n = n > PROOF_IN_MAX ? PROOF_IN_MAX : n;
    uint8_t(*proof)[HASH] = n > 0 ? malloc(n * HASH) : NULL;
    if (n > 0 && proof == NULL) {
        return;
    }
    if (n > 0) {
        memcpy(proof, data + 16 + 2 * HASH, n * HASH);
    }
    int rc = trust_ledger_verify_inclusion(h1, a, b, (const uint8_t(*)[HASH])proof, n, h2);
    assert(rc == 0 || rc == BG_ERR_SIGNATURE || rc == BG_ERR_NOMEM);
    if (rc != BG_ERR_NOMEM) {
        assert((rc == 0) == ref_inclusion(h1, a, b, (const uint8_t(*)[HASH])proof, n, h2));
    }
    rc = trust_ledger_verify_consistency(a, b, h1, h2, (const uint8_t(*)[HASH])proof, n);
    assert(rc == 0 || rc == BG_ERR_SIGNATURE || rc == BG_ERR_NOMEM);
    if (rc != BG_ERR_NOMEM) {
        assert((rc == 0) == ref_consistency(a, b, h1, h2, (const uint8_t(*)[HASH])proof, n));
    }
    free(proof);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > TRUST_RECEIPT_MAX_BYTES + 1024) {
        return 0;
    }
    fuzz_receipt(data, size);
    fuzz_checkpoint(data, size);
    fuzz_proofs(data, size);
    return 0;
}
