/* gateway/ctl_ledger.c: `baygatectl verify` and `baygatectl reconcile`, a regulator's tools for
 * the receipts ledger (docs/regulators.md). verify checks, offline and with no gateway, what a
 * gateway's ledger API handed out: a checkpoint against its verifier key, a receipt and its
 * inclusion proof against the checkpoint, a consistency proof between two checkpoints. reconcile
 * fetches two cities' exports (as each city's regulator, over HTTP/2 + mTLS) or reads them from
 * files, and reports every receipt whose counterpart in the other city's ledger is missing or
 * says something else. Not for: reading a ledger's LMDB files (`baygate --verify-ledger`),
 * writing anything, or witnessing checkpoints (gateway/witness.c; verify only checks the
 * cosignatures a checkpoint carries). */
#include "gateway/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/bytes.h"
#include "base/err.h"
#include "trust/b64.h"
#include "trust/ledger.h"

#define HASH TRUST_LEDGER_HASH_LEN
#define B64_HASH_LEN 45           /* base64 of 32 bytes, with its NUL */
#define INPUT_FILE_MAX (1u << 30) /* an export file; the other inputs are far smaller */
#define EXPORT_PAGE 10000u        /* receipts per GET /v1/ledger/export (the API takes 100000) */
#define BODY_MAX (512u << 20)     /* a response body we are willing to hold */
#define DEFAULT_TIMEOUT_S 30      /* connect, handshake, and each request */
#define READ_CHUNK 16384

/* The signed-note signature line prefix: U+2014 em dash, space (C2SP signed-note). */
static const char sig_prefix[] = "\xe2\x80\x94 ";
static const char origin_suffix[] = ".gba/baygate/ledger";

static const char *kind_name(uint32_t k)
{
    static const char *const names[] = {"?",
                                        "query",
                                        "refusal",
                                        "contract_proposed",
                                        "contract_agreed",
                                        "contract_refused",
                                        "contract_revoked",
                                        "identity_issued",
                                        "identity_renewed",
                                        "identity_revoked"};
    return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static const char *decision_name(uint32_t d)
{
    return d == TRUST_RECEIPT_ALLOWED   ? "allowed"
           : d == TRUST_RECEIPT_REFUSED ? "refused"
           : d == TRUST_RECEIPT_FAILED  ? "failed"
                                        : "?";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A hash as base64 into |out|. */
static const char *b64_hash(const uint8_t h[HASH], char out[B64_HASH_LEN])
{
    EVP_EncodeBlock((unsigned char *)out, h, HASH);
    return out;
}

/* Decodes the base64 JSON string |j| of exactly one hash into |out|. */
static bool json_hash(const json_t *j, uint8_t out[HASH])
{
    const char *s = json_string_value(j);
    size_t n = 0;
    uint8_t tmp[HASH + 3];
    if (s == NULL || !trust_b64_decode(s, strlen(s), tmp, sizeof(tmp), &n) || n != HASH) {
        return false;
    }
    memcpy(out, tmp, HASH);
    return true;
}

/* A non-negative JSON integer |j| into |*out|. */
static bool json_u64(const json_t *j, uint64_t *out)
{
    if (!json_is_integer(j) || json_integer_value(j) < 0) {
        return false;
    }
    *out = (uint64_t)json_integer_value(j);
    return true;
}

/* ---- files --------------------------------------------------------------------------------- */

/* Reads all of |path| (at most |max| bytes) into |out|. Returns 0, or 2 with a message. */
static int read_file(const char *path, size_t max, bg_buf *out, const char *cmd)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "baygatectl %s: %s: %s\n", cmd, path, strerror(errno));
        return 2;
    }
    uint8_t buf[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (out->len + n > max || bg_buf_append(out, buf, n) != 0) {
            fprintf(stderr, "baygatectl %s: %s: larger than %zu bytes\n", cmd, path, max);
            rc = 2;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "baygatectl %s: %s: read error\n", cmd, path);
        rc = 2;
    }
    fclose(f);
    return rc;
}

/* ---- checkpoints --------------------------------------------------------------------------- */

/* The length of a signed note's text (up to and including the newline before its last blank
 * line, as trust_ledger_note_verify() splits it), or 0 when there is no blank line. */
static size_t note_split(const uint8_t *note, size_t len)
{
    size_t split = len > 1 ? len - 1 : 0;
    while (split > 0 && !(note[split - 1] == '\n' && note[split] == '\n')) {
        split--;
    }
    return split;
}

/* Verifies the signed checkpoint note at |note| against the verifier key |vkey| into |*cp|.
 * trust_ledger_checkpoint_verify() decides; when it refuses, the note is taken apart here only
 * to say why, in |why| (|cap| bytes), starting with one of "malformed key", "malformed
 * checkpoint", "wrong key" or "bad signature". Returns true when verified. */
static bool checkpoint_check(const uint8_t *note, size_t len, const char *vkey,
                             trust_ledger_checkpoint *cp, char *why, size_t cap)
{
    int rv = trust_ledger_checkpoint_verify(note, len, vkey, cp);
    if (rv == 0) {
        return true;
    }
    if (rv == BG_ERR_INVAL) {
        snprintf(why, cap,
                 "malformed key: \"%.80s\" is not an Ed25519 verifier key "
                 "(<name>+<8 hex>+<base64>, as GET /v1/ledger/key returns it)",
                 vkey);
        return false;
    }
    if (rv != BG_ERR_SIGNATURE) {
        snprintf(why, cap, "cannot verify the checkpoint: %s", bg_strerror(rv));
        return false;
    }
    size_t split = note_split(note, len);
    trust_ledger_checkpoint c;
    if (split == 0 || note[len - 1] != '\n') {
        snprintf(why, cap,
                 "malformed checkpoint: not a signed note (text, a blank line, "
                 "signature lines)");
        return false;
    }
    if (trust_ledger_checkpoint_parse(note, split, &c) != 0) {
        snprintf(why, cap,
                 "malformed checkpoint: its text is not \"<origin>\\n<size>\\n<base64 "
                 "root>\\n\"");
        return false;
    }
    const char *plus = strchr(vkey, '+');
    size_t nl = (size_t)(plus - vkey); /* the key parsed, so it has its '+' */
    uint8_t id[4] = {0};
    for (size_t i = 0; i < 8; i++) {
        char h = plus[1 + i];
        int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : 0;
        id[i / 2] = (uint8_t)(id[i / 2] << 4 | (uint8_t)v);
    }
    if (strlen(c.origin) != nl || memcmp(c.origin, vkey, nl) != 0) {
        snprintf(why, cap, "wrong key: the checkpoint is %s's, the key is %.*s's", c.origin,
                 (int)nl, vkey);
        return false;
    }
    char signers[256] = "";
    size_t pos = split + 1;
    bool ours = false;
    while (pos < len) {
        const uint8_t *line = note + pos;
        const uint8_t *eol = memchr(line, '\n', len - pos);
        size_t ll = (size_t)(eol - line);
        pos += ll + 1;
        size_t pl = sizeof(sig_prefix) - 1;
        const uint8_t *sp = ll > pl ? memchr(line + pl, ' ', ll - pl) : NULL;
        uint8_t sig[128];
        size_t sl = 0;
        if (ll <= pl || memcmp(line, sig_prefix, pl) != 0 || sp == NULL ||
            !trust_b64_decode((const char *)sp + 1, (size_t)(eol - sp - 1), sig, sizeof(sig), &sl) ||
            sl < 5) {
            snprintf(why, cap,
                     "malformed checkpoint: a signature line is not \"\xe2\x80\x94 "
                     "<name> <base64>\"");
            return false;
        }
        size_t name_len = (size_t)(sp - line - (ptrdiff_t)pl);
        if (name_len == nl && memcmp(line + pl, vkey, nl) == 0 && memcmp(sig, id, 4) == 0) {
            ours = true;
        }
        size_t used = strlen(signers);
        snprintf(signers + used, sizeof(signers) - used, "%s%.*s+%02x%02x%02x%02x",
                 used > 0 ? ", " : "", (int)name_len, (const char *)line + pl, sig[0], sig[1],
                 sig[2], sig[3]);
    }
    if (ours) {
        snprintf(why, cap,
                 "bad signature: the signature by %.*s does not verify the checkpoint "
                 "(altered, or signed by another key with the same id)",
                 (int)(strchr(plus + 1, '+') - vkey), vkey);
    } else {
        snprintf(why, cap, "wrong key: the checkpoint is not signed by %.*s (signed by: %s)",
                 (int)(strchr(plus + 1, '+') - vkey), vkey, signers[0] ? signers : "nobody");
    }
    return false;
}

/* The city of ledger origin |origin| ("<city>.gba/baygate/ledger") into |city|. */
static bool origin_city(const char *origin, char *city, size_t cap)
{
    size_t n = strlen(origin), sl = strlen(origin_suffix);
    if (n <= sl || n - sl >= cap || strcmp(origin + n - sl, origin_suffix) != 0) {
        return false;
    }
    memcpy(city, origin, n - sl);
    city[n - sl] = 0;
    return true;
}

/* ---- verify -------------------------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int verify_fail(const char *what, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout); /* what verified so far comes first */
    fprintf(stderr, "baygatectl verify: FAILED: %s: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* A JSON file into |*out|; 0, 1 (malformed JSON) or 2 (cannot read). */
static int load_json(const char *path, json_t **out)
{
    bg_buf b;
    bg_buf_init(&b);
    int rc = read_file(path, 64u << 20, &b, "verify");
    if (rc != 0) {
        bg_buf_dispose(&b);
        return rc;
    }
    json_error_t je;
    *out = json_loadb((const char *)b.data, b.len, 0, &je);
    bg_buf_dispose(&b);
    if (*out == NULL || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return verify_fail("malformed JSON", "%s:%d: %s", path, je.line,
                           *je.text ? je.text : "not a JSON object");
    }
    return 0;
}

/* The base64 proof hashes of JSON array |a| (named |what|) into |p|; 0 or 1 (reported). */
static int proof_from_json(const json_t *a, const char *path, const char *what,
                           trust_ledger_proof *p)
{
    if (!json_is_array(a)) {
        return verify_fail("malformed JSON", "%s: no \"%s\" array", path, what);
    }
    if (json_array_size(a) > TRUST_LEDGER_PROOF_MAX) {
        return verify_fail("proof does not verify", "%s: %zu hashes, more than any tree needs",
                           path, json_array_size(a));
    }
    p->len = json_array_size(a);
    for (size_t i = 0; i < p->len; i++) {
        if (!json_hash(json_array_get(a, i), p->hash[i])) {
            return verify_fail("malformed base64", "%s: %s[%zu] is not a base64 SHA-256 hash", path,
                               what, i);
        }
    }
    return 0;
}

static void print_checkpoint(const char *label, const trust_ledger_checkpoint *cp, const char *vkey)
{
    char r[B64_HASH_LEN];
    const char *plus = strchr(vkey, '+');
    printf("%s: %s, size %" PRIu64 ", root %s: signature by %.*s verifies\n", label, cp->origin,
           cp->size, b64_hash(cp->root, r), (int)(strchr(plus + 1, '+') - vkey), vkey);
}

/* The receipt file at |path| (GET /v1/receipts/{i}?tree_size=N) against checkpoint |cp|. */
static int verify_receipt(const char *path, const trust_ledger_checkpoint *cp)
{
    json_t *j = NULL;
    int rc = load_json(path, &j);
    if (rc != 0) {
        return rc;
    }
    trust_ledger_proof *p = malloc(sizeof(*p));
    uint8_t *bytes = malloc(TRUST_RECEIPT_MAX_BYTES + 3);
    trust_receipt *r = malloc(sizeof(*r));
    if (p == NULL || bytes == NULL || r == NULL) {
        rc = verify_fail("out of memory", "%s", path);
        goto done;
    }
    const char *rb64 = json_string_value(json_object_get(j, "receipt_b64"));
    const json_t *proof = json_object_get(j, "proof");
    uint64_t index = 0, tree_size = 0;
    uint8_t claimed[HASH], leaf[HASH];
    size_t blen = 0;
    bg_errbuf eb = {{0}};
    char h1[B64_HASH_LEN], h2[B64_HASH_LEN];
    if (rb64 == NULL || !json_is_string(json_object_get(j, "leaf_hash")) ||
        !json_u64(json_object_get(j, "index"), &index) || !json_is_object(proof) ||
        !json_u64(json_object_get(proof, "tree_size"), &tree_size)) {
        rc = verify_fail("malformed JSON",
                         "%s: not a receipt with its proof (receipt_b64, leaf_hash, index, "
                         "proof.tree_size, proof.hashes as GET /v1/receipts/{i} returns)",
                         path);
        goto done;
    }
    if (!trust_b64_decode(rb64, strlen(rb64), bytes, TRUST_RECEIPT_MAX_BYTES, &blen) || blen == 0) {
        rc = verify_fail("malformed base64", "%s: receipt_b64 is not base64 of at most %d bytes",
                         path, TRUST_RECEIPT_MAX_BYTES);
        goto done;
    }
    if (!json_hash(json_object_get(j, "leaf_hash"), claimed)) {
        rc = verify_fail("malformed base64", "%s: leaf_hash is not a base64 SHA-256 hash", path);
        goto done;
    }
    if ((rc = proof_from_json(json_object_get(proof, "hashes"), path, "proof.hashes", p)) != 0) {
        goto done;
    }
    if (trust_ledger_leaf_hash(bytes, blen, leaf) != 0) {
        rc = verify_fail("out of memory", "%s", path);
        goto done;
    }
    if (memcmp(leaf, claimed, HASH) != 0) {
        rc = verify_fail("leaf hash mismatch",
                         "%s: SHA-256(0x00 || receipt bytes) is %s, leaf_hash says %s", path,
                         b64_hash(leaf, h1), b64_hash(claimed, h2));
        goto done;
    }
    if (trust_receipt_decode(r, bytes, blen, &eb) != 0) {
        rc = verify_fail("receipt does not decode canonically", "%s: %s", path, eb.msg);
        goto done;
    }
    if (r->index != index) {
        rc = verify_fail("index mismatch",
                         "%s: the receipt's bytes say index %" PRIu64 ", the file says %" PRIu64,
                         path, r->index, index);
        goto done;
    }
    if (tree_size != cp->size) {
        rc = verify_fail("size mismatch",
                         "%s: the proof is for a tree of %" PRIu64
                         " receipts, the checkpoint's size is %" PRIu64
                         " (fetch the receipt with ?tree_size=%" PRIu64 ")",
                         path, tree_size, cp->size, cp->size);
        goto done;
    }
    int vr = trust_ledger_verify_inclusion(leaf, r->index, cp->size,
                                           (const uint8_t(*)[HASH])p->hash, p->len, cp->root);
    if (vr != 0) {
        rc = vr == BG_ERR_SIGNATURE
                 ? verify_fail("proof does not verify",
                               "%s: receipt %" PRIu64 " is not proven to be in %s's tree of "
                               "size %" PRIu64,
                               path, r->index, cp->origin, cp->size)
                 : verify_fail("out of memory", "%s", path);
        goto done;
    }
    printf("receipt %" PRIu64 ": %s (%s) request %s at %" PRId64 " ms\n"
           "  requester %s, home %s, provider %s, contract %s\n"
           "  counterpart %s",
           r->index, kind_name(r->kind), decision_name(r->decision), r->request_id, r->time_ms,
           r->requester[0] ? r->requester : "-", r->home_city[0] ? r->home_city : "-",
           r->provider_city[0] ? r->provider_city : "-", r->contract_id[0] ? r->contract_id : "-",
           r->counterpart_city[0] ? r->counterpart_city : "-");
    if (r->has_counterpart_ref) {
        printf(" #%" PRIu64 " (leaf hash %s)", r->counterpart_index,
               b64_hash(r->counterpart_leaf_hash, h1));
    }
    if (r->queries_used > 0) {
        printf("\n  query %u of its contract's budget", r->queries_used);
    }
    printf("\n  leaf hash %s = SHA-256(0x00 || receipt bytes), canonical encoding\n"
           "  included in %s's tree of size %" PRIu64 " (%zu proof hashes)\n",
           b64_hash(leaf, h2), cp->origin, cp->size, p->len);
    rc = 0;
done:
    free(r);
    free(bytes);
    free(p);
    json_decref(j);
    return rc;
}

/* The consistency proof file at |path| (GET /v1/ledger/consistency) from |old| to |cp|. */
static int verify_consistency(const char *path, const trust_ledger_checkpoint *old,
                              const trust_ledger_checkpoint *cp)
{
    json_t *j = NULL;
    int rc = load_json(path, &j);
    if (rc != 0) {
        return rc;
    }
    trust_ledger_proof *p = malloc(sizeof(*p));
    uint64_t first = 0, second = 0;
    if (p == NULL) {
        rc = verify_fail("out of memory", "%s", path);
    } else if (!json_u64(json_object_get(j, "first"), &first) ||
               !json_u64(json_object_get(j, "second"), &second)) {
        rc = verify_fail("malformed JSON",
                         "%s: not a consistency proof (first, second, hashes as GET "
                         "/v1/ledger/consistency returns)",
                         path);
    } else if ((rc = proof_from_json(json_object_get(j, "hashes"), path, "hashes", p)) != 0) {
        /* reported */
    } else if (first != old->size || second != cp->size) {
        rc = verify_fail("size mismatch",
                         "%s: the proof is from size %" PRIu64 " to %" PRIu64
                         ", the checkpoints are of sizes %" PRIu64 " and %" PRIu64
                         " (fetch ?first=%" PRIu64 "&second=%" PRIu64 ")",
                         path, first, second, old->size, cp->size, old->size, cp->size);
    } else if (old->size > cp->size) {
        rc = verify_fail("size mismatch",
                         "the old checkpoint (size %" PRIu64
                         ") is larger than the new one (%" PRIu64 ")",
                         old->size, cp->size);
    } else {
        int vr = trust_ledger_verify_consistency(old->size, cp->size, old->root, cp->root,
                                                 (const uint8_t(*)[HASH])p->hash, p->len);
        if (vr != 0) {
            rc = vr == BG_ERR_SIGNATURE
                     ? verify_fail("consistency proof does not verify",
                                   "%s: the tree of size %" PRIu64 " is not proven to be a "
                                   "prefix of the tree of size %" PRIu64
                                   " (a forked or rewritten ledger, or a wrong proof)",
                                   path, old->size, cp->size)
                     : verify_fail("out of memory", "%s", path);
        } else {
            printf("consistency: %s's tree of size %" PRIu64 " is a prefix of its tree of size "
                   "%" PRIu64 " (%zu proof hashes)\n",
                   cp->origin, old->size, cp->size, p->len);
        }
    }
    free(p);
    json_decref(j);
    return rc;
}

#define WITNESS_MAX 16
#define VKEY_MAX 512

/* The witness verifier key of |vkey| into |out| (|cap| bytes): a witness key
 * "<name>+<id>+<base64(0x04 || key)>" as it is; a city's ledger key
 * "<city>.gba/baygate/ledger+<id>+<base64(0x01 || key)>" (GET /v1/ledger/key) becomes the
 * witness key of the same Ed25519 key, named "<city>.gba/baygate/witness", since a gateway
 * cosigns its peers' checkpoints with its ledger key (gateway/witness.c). */
static bool witness_key(const char *vkey, char *out, size_t cap)
{
    const char *p1 = strchr(vkey, '+');
    const char *p2 = p1 != NULL ? strchr(p1 + 1, '+') : NULL;
    uint8_t raw[48];
    size_t rawlen = 0;
    if (p2 == NULL || !trust_b64_decode(p2 + 1, strlen(p2 + 1), raw, sizeof(raw), &rawlen) ||
        rawlen != 33) {
        return false;
    }
    if (raw[0] == 0x04) {
        return bg_strlcpy(out, vkey, cap) < cap;
    }
    char name[TRUST_LEDGER_ORIGIN_MAX + 1], city[TRUST_RECEIPT_CITY_MAX + 1];
    size_t nl = (size_t)(p1 - vkey);
    if (raw[0] != 0x01 || nl >= sizeof(name)) {
        return false;
    }
    memcpy(name, vkey, nl);
    name[nl] = 0;
    if (!origin_city(name, city, sizeof(city))) {
        return false;
    }
    /* key id = SHA-256(name || 0x0A || 0x04 || key)[:4] (C2SP tlog-cosignature) */
    uint8_t msg[TRUST_LEDGER_ORIGIN_MAX + 40], id[HASH];
    int n = snprintf(name, sizeof(name), "%s.gba/baygate/witness", city);
    if (n < 0 || (size_t)n >= sizeof(name)) {
        return false;
    }
    memcpy(msg, name, (size_t)n);
    msg[n] = 0x0a;
    msg[n + 1] = 0x04;
    memcpy(msg + n + 2, raw + 1, 32);
    if (EVP_Digest(msg, (size_t)n + 34, id, NULL, EVP_sha256(), NULL) != 1) {
        return false;
    }
    raw[0] = 0x04;
    char b64[64];
    EVP_EncodeBlock((unsigned char *)b64, raw, 33);
    n = snprintf(out, cap, "%s+%02x%02x%02x%02x+%s", name, id[0], id[1], id[2], id[3], b64);
    return n > 0 && (size_t)n < cap;
}

/* Checks that the verified checkpoint |note| carries a valid cosignature by each of the |nw|
 * witness keys at |witness| (see witness_key()); lists the cosigners when none are asked for.
 * Returns 0 or 1 (reported). */
static int check_cosignatures(const uint8_t *note, size_t len, const char *const *witness,
                              size_t nw)
{
    size_t tlen = note_split(note, len), pl = sizeof(sig_prefix) - 1;
    char line[VKEY_MAX], wkey[VKEY_MAX];
    for (size_t i = 0; i < nw; i++) {
        if (!witness_key(witness[i], wkey, sizeof(wkey))) {
            return verify_fail("malformed key",
                               "--witness \"%.80s\" is neither a witness key nor a city's "
                               "ledger key",
                               witness[i]);
        }
        size_t nl = (size_t)(strchr(wkey, '+') - wkey);
        bool seen = false, ok = false;
        uint64_t ts = 0;
        for (size_t pos = tlen + 1; pos < len && !ok;) {
            const uint8_t *eol = memchr(note + pos, '\n', len - pos);
            size_t ll = eol != NULL ? (size_t)(eol - note - (ptrdiff_t)pos) : len - pos;
            if (ll < sizeof(line) && ll > pl + nl && memcmp(note + pos, sig_prefix, pl) == 0 &&
                memcmp(note + pos + pl, wkey, nl) == 0 && note[pos + pl + nl] == ' ') {
                seen = true;
                memcpy(line, note + pos, ll);
                line[ll] = 0;
                ok = trust_ledger_cosign_verify(note, tlen, line, wkey, &ts) == 0;
            }
            pos += ll + 1;
        }
        if (!ok) {
            return seen ? verify_fail("bad cosignature",
                                      "the cosignature by %.*s does not verify with %s", (int)nl,
                                      wkey, wkey)
                        : verify_fail("missing cosignature",
                                      "the checkpoint carries no cosignature by %.*s (witnesses "
                                      "cosign every few seconds: fetch it again)",
                                      (int)nl, wkey);
        }
        printf("cosignature: %.*s witnessed this checkpoint at %" PRIu64 " (unix s)\n", (int)nl,
               wkey, ts);
    }
    if (nw == 0) {
        int listed = 0;
        for (size_t pos = tlen + 1; pos < len;) {
            const uint8_t *eol = memchr(note + pos, '\n', len - pos);
            size_t ll = eol != NULL ? (size_t)(eol - note - (ptrdiff_t)pos) : len - pos;
            const uint8_t *sp = ll > pl ? memchr(note + pos + pl, ' ', ll - pl) : NULL;
            size_t nl = sp != NULL ? (size_t)(sp - note - (ptrdiff_t)pos) - pl : 0;
            if (nl > 7 && memcmp(sp - 7, "witness", 7) == 0) {
                printf("%s%.*s",
                       listed++ ? ", " : "also cosigned by (not checked; see --witness): ", (int)nl,
                       (const char *)note + pos + pl);
            }
            pos += ll + 1;
        }
        if (listed > 0) {
            printf("\n");
        }
    }
    return 0;
}

/* A checkpoint note file, verified against |vkey| (and the |nw| |witness| keys' cosignatures);
 * 0, 1 (reported) or 2. */
static int load_checkpoint(const char *path, const char *label, const char *vkey,
                           const char *const *witness, size_t nw, trust_ledger_checkpoint *cp)
{
    bg_buf b;
    bg_buf_init(&b);
    int rc = read_file(path, 1u << 20, &b, "verify");
    if (rc == 0) {
        char why[512];
        if (!checkpoint_check(b.data, b.len, vkey, cp, why, sizeof(why))) {
            fflush(stdout);
            fprintf(stderr, "baygatectl verify: FAILED: %s%s%s (%s)\n",
                    strcmp(label, "checkpoint") == 0 ? "" : label,
                    strcmp(label, "checkpoint") == 0 ? "" : ": ", why, path);
            rc = 1;
        } else {
            print_checkpoint(label, cp, vkey);
            rc = check_cosignatures(b.data, b.len, witness, nw);
        }
    }
    bg_buf_dispose(&b);
    return rc;
}

static void verify_usage(FILE *f)
{
    fputs("usage: baygatectl verify --checkpoint FILE (--key VKEY | --key-file FILE)\n"
          "                         [--receipt FILE] [--consistency FILE --old-checkpoint FILE]\n"
          "                         [--witness VKEY ...]\n"
          "\n"
          "Offline, no gateway: checks what a city's ledger API handed a regulator.\n"
          "  --checkpoint FILE      the signed checkpoint note (GET /v1/ledger/checkpoint)\n"
          "  --key VKEY             the ledger's verifier key (GET /v1/ledger/key), or\n"
          "  --key-file FILE        a file holding it\n"
          "  --receipt FILE         a receipt with its inclusion proof\n"
          "                         (GET /v1/receipts/{i}?tree_size=<the checkpoint's size>)\n"
          "  --consistency FILE     a consistency proof (GET /v1/ledger/consistency?first=M"
          "&second=N)\n"
          "  --old-checkpoint FILE  the checkpoint of size M, signed by the same key\n"
          "  --witness VKEY         a peer city that must have cosigned the checkpoint: its\n"
          "                         ledger key (its GET /v1/ledger/key) or witness key; repeat\n"
          "Exit 0 when everything verifies; 1 naming the first check that failed (malformed\n"
          "key/checkpoint/JSON/base64, wrong key, bad signature, leaf hash mismatch, receipt\n"
          "does not decode canonically, index mismatch, size mismatch, proof does not verify,\n"
          "consistency proof does not verify, missing/bad cosignature); 2 on usage or\n"
          "unreadable files.\n",
          f);
}

static int verify_main(int argc, char **argv)
{
    static const struct option opts[] = {{"receipt", required_argument, NULL, 'r'},
                                         {"checkpoint", required_argument, NULL, 'c'},
                                         {"old-checkpoint", required_argument, NULL, 'o'},
                                         {"consistency", required_argument, NULL, 's'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"key-file", required_argument, NULL, 'K'},
                                         {"witness", required_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *witness[WITNESS_MAX];
    size_t nw = 0;
    const char *receipt = NULL, *ckpt = NULL, *old = NULL, *cons = NULL, *key = NULL,
               *key_file = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            receipt = optarg;
            break;
        case 'c':
            ckpt = optarg;
            break;
        case 'o':
            old = optarg;
            break;
        case 's':
            cons = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'K':
            key_file = optarg;
            break;
        case 'w':
            if (nw == WITNESS_MAX) {
                fprintf(stderr, "baygatectl verify: at most %d --witness\n", WITNESS_MAX);
                return 2;
            }
            witness[nw++] = optarg;
            break;
        case 'h':
            verify_usage(stdout);
            return 0;
        default:
            verify_usage(stderr);
            return 2;
        }
    }
    if (optind != argc || ckpt == NULL || (key == NULL) == (key_file == NULL) ||
        (receipt == NULL && cons == NULL && nw == 0) || (cons == NULL) != (old == NULL)) {
        verify_usage(stderr);
        return 2;
    }
    bg_buf kb;
    bg_buf_init(&kb);
    if (key_file != NULL) {
        if (read_file(key_file, 4096, &kb, "verify") != 0) {
            bg_buf_dispose(&kb);
            return 2;
        }
        while (kb.len > 0 && strchr(" \t\r\n", kb.data[kb.len - 1]) != NULL) {
            kb.data[--kb.len] = 0; /* GET /v1/ledger/key ends the key with a newline */
        }
        if (kb.len == 0 || memchr(kb.data, 0, kb.len) != NULL) {
            bg_buf_dispose(&kb);
            return verify_fail("malformed key", "%s holds no verifier key", key_file);
        }
        key = (const char *)kb.data;
    }
    trust_ledger_checkpoint cp, ocp;
    int rc = load_checkpoint(ckpt, "checkpoint", key, witness, nw, &cp);
    if (rc == 0 && cons != NULL) {
        rc = load_checkpoint(old, "old checkpoint", key, NULL, 0, &ocp);
        if (rc == 0) {
            rc = verify_consistency(cons, &ocp, &cp);
        }
    }
    if (rc == 0 && receipt != NULL) {
        rc = verify_receipt(receipt, &cp);
    }
    if (rc == 0) {
        printf("verified\n");
    }
    bg_buf_dispose(&kb);
    return rc;
}

/* ---- a small blocking HTTP/2 client (TLS 1.3, ALPN h2, client certificate) ------------------ */

/* One HTTP/2 connection to a gateway, one request at a time; every wait is bounded by
 * |deadline|. nghttp2 does no I/O: pump() moves its bytes through the SSL. */
typedef struct h2_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    nghttp2_session *h2;
    char host[256];
    char authority[300];
    int timeout_ms;
    int64_t deadline;
    /* the request in flight */
    int32_t stream_id;
    bool stream_done;
    int status;
    uint32_t stream_error;
    bg_buf *body;
    bool too_large;
} h2_conn;

/* nghttp2, from mem_recv(): a response header; keeps :status. */
static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    h2_conn *c = user_data;
    (void)session;
    (void)flags;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->hd.stream_id == c->stream_id && namelen == 7 &&
        memcmp(name, ":status", 7) == 0 && valuelen == 3) {
        c->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    }
    return 0;
}

/* nghttp2, from mem_recv(): response body bytes; over BODY_MAX the stream is cancelled. */
static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    h2_conn *c = user_data;
    (void)flags;
    if (stream_id != c->stream_id || c->too_large) {
        return 0;
    }
    if (c->body->len + len > BODY_MAX || bg_buf_append(c->body, data, len) != 0) {
        c->too_large = true;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    }
    return 0;
}

/* nghttp2, from mem_recv(): the stream ended (answered or reset). */
static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    h2_conn *c = user_data;
    (void)session;
    if (stream_id == c->stream_id) {
        c->stream_done = true;
        c->stream_error = error_code;
    }
    return 0;
}

/* The OpenSSL error queue's last entry as text (and the queue cleared). */
static const char *ssl_err(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error(), last = e;
    while (e != 0) {
        last = e;
        e = ERR_get_error();
    }
    if (last == 0) {
        snprintf(buf, cap, "%s", errno != 0 ? strerror(errno) : "connection closed");
    } else {
        ERR_error_string_n(last, buf, cap);
    }
    return buf;
}

/* Waits until |c|'s socket is ready for |events| or the deadline passes. */
static int wait_fd(h2_conn *c, short events, bg_errbuf *eb)
{
    for (;;) {
        int64_t left = c->deadline - now_ms();
        if (left <= 0) {
            return bg_errf(eb, BG_ERR_TIMEOUT, "%s: timed out after %d s", c->authority,
                           c->timeout_ms / 1000);
        }
        struct pollfd p = {.fd = c->fd, .events = events};
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0) {
            return 0;
        }
        if (n < 0 && errno != EINTR) {
            return bg_errf(eb, BG_ERR_IO, "%s: poll: %s", c->authority, strerror(errno));
        }
    }
}

/* Waits as SSL error |e| asks; an error for anything but WANT_READ / WANT_WRITE. */
static int ssl_wait(h2_conn *c, int r, const char *what, bg_errbuf *eb)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        return wait_fd(c, POLLIN, eb);
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        return wait_fd(c, POLLOUT, eb);
    }
    char buf[256];
    if (e == SSL_ERROR_ZERO_RETURN) {
        return bg_errf(eb, BG_ERR_IO, "%s: %s: the gateway closed the connection", c->authority,
                       what);
    }
    return bg_errf(eb, BG_ERR_TLS, "%s: %s: %s", c->authority, what, ssl_err(buf, sizeof(buf)));
}

static int ssl_write_all(h2_conn *c, const uint8_t *p, size_t n, bg_errbuf *eb)
{
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        ERR_clear_error();
        int r = SSL_write(c->ssl, p, chunk);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        int rv = ssl_wait(c, r, "write", eb);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* Sends what nghttp2 has queued, then feeds it what arrives, until the request's stream
 * closed. */
static int pump(h2_conn *c, bg_errbuf *eb)
{
    uint8_t buf[READ_CHUNK];
    for (;;) {
        for (;;) {
            const uint8_t *data = NULL;
            ssize_t n = nghttp2_session_mem_send(c->h2, &data);
            if (n < 0) {
                return bg_errf(eb, BG_ERR_PROTOCOL, "%s: HTTP/2: %s", c->authority,
                               nghttp2_strerror((int)n));
            }
            if (n == 0) {
                break;
            }
            int rv = ssl_write_all(c, data, (size_t)n, eb);
            if (rv != 0) {
                return rv;
            }
        }
        if (c->stream_done) {
            return 0;
        }
        if (!nghttp2_session_want_read(c->h2)) {
            return bg_errf(eb, BG_ERR_PROTOCOL, "%s: the gateway ended the HTTP/2 session",
                           c->authority);
        }
        ERR_clear_error();
        int r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r <= 0) {
            int rv = ssl_wait(c, r, "read", eb);
            if (rv != 0) {
                return rv;
            }
            continue;
        }
        ssize_t m = nghttp2_session_mem_recv(c->h2, buf, (size_t)r);
        if (m < 0) {
            return bg_errf(eb, BG_ERR_PROTOCOL, "%s: HTTP/2: %s", c->authority,
                           nghttp2_strerror((int)m));
        }
    }
}

/* Splits "https://HOST[:PORT][/]" into |c|'s host and |port|. */
static bool parse_url(const char *url, h2_conn *c, char *port, size_t pcap)
{
    if (strncmp(url, "https://", 8) != 0) {
        return false;
    }
    const char *h = url + 8, *end;
    size_t hl;
    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL) {
            return false;
        }
        h++;
        hl = (size_t)(end - h);
        end++;
    } else {
        hl = strcspn(h, ":/");
        end = h + hl;
    }
    if (hl == 0 || hl >= sizeof(c->host)) {
        return false;
    }
    memcpy(c->host, h, hl);
    c->host[hl] = 0;
    const char *p = "443";
    size_t plen = 3;
    if (*end == ':') {
        p = end + 1;
        plen = strspn(p, "0123456789");
        if (plen == 0 || plen > 5) {
            return false;
        }
        end = p + plen;
    }
    if (!(*end == 0 || (end[0] == '/' && end[1] == 0)) || plen >= pcap) {
        return false; /* the API's paths are absolute: a base path is not supported */
    }
    memcpy(port, p, plen);
    port[plen] = 0;
    bool v6 = strchr(c->host, ':') != NULL;
    snprintf(c->authority, sizeof(c->authority), "%s%s%s:%s", v6 ? "[" : "", c->host, v6 ? "]" : "",
             port);
    return true;
}

/* A non-blocking TCP connection to |c|'s host:|port| within the deadline, into c->fd. */
static int tcp_connect(h2_conn *c, const char *port, bg_errbuf *eb)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(c->host, port, &hints, &ai);
    if (gai != 0) {
        return bg_errf(eb, BG_ERR_IO, "%s: %s", c->authority, gai_strerror(gai));
    }
    int rv = bg_errf(eb, BG_ERR_IO, "%s: no address", c->authority);
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            rv = bg_errf(eb, BG_ERR_IO, "%s: socket: %s", c->authority, strerror(errno));
            continue;
        }
        c->fd = fd;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            rv = bg_errf(eb, BG_ERR_IO, "%s: connect: %s", c->authority, strerror(errno));
        } else if ((rv = wait_fd(c, POLLOUT, eb)) == 0) {
            int err = 0;
            socklen_t el = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) {
                rv = 0;
                break;
            }
            rv = bg_errf(eb, BG_ERR_IO, "%s: connect: %s", c->authority, strerror(err));
        }
        close(fd);
        c->fd = -1;
    }
    freeaddrinfo(ai);
    return rv;
}

static void conn_close(h2_conn *c)
{
    if (c->h2 != NULL && c->ssl != NULL) { /* a GOAWAY, best effort and briefly */
        bg_errbuf eb;
        c->deadline = now_ms() + 200;
        nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
        const uint8_t *data = NULL;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n > 0) {
            (void)ssl_write_all(c, data, (size_t)n, &eb);
        }
        (void)SSL_shutdown(c->ssl);
    }
    nghttp2_session_del(c->h2);
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->h2 = NULL;
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = -1;
    ERR_clear_error();
}

/* Connects |c| to |url| as the client |cert| / |key|, verifying the gateway against |cacert|,
 * TLS 1.3 with ALPN h2 only. Returns 0 or an error in |eb| (|c| then closed). */
static int conn_open(h2_conn *c, const char *url, const char *cert, const char *key,
                     const char *cacert, int timeout_ms, bg_errbuf *eb)
{
    char port[8], buf[256];
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    if (!parse_url(url, c, port, sizeof(port))) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: not https://HOST[:PORT]", url);
    }
    c->deadline = now_ms() + timeout_ms;
    int rv;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL || SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION) != 1) {
        rv = bg_errf(eb, BG_ERR_TLS, "TLS: %s", ssl_err(buf, sizeof(buf)));
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(c->ctx, cacert, NULL) != 1) {
        rv = bg_errf(eb, BG_ERR_TLS, "--cacert %s: %s", cacert, ssl_err(buf, sizeof(buf)));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1) {
        rv = bg_errf(eb, BG_ERR_TLS, "certificate %s: %s", cert, ssl_err(buf, sizeof(buf)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c->ctx) != 1) {
        rv = bg_errf(eb, BG_ERR_TLS, "key %s: %s", key, ssl_err(buf, sizeof(buf)));
        goto fail;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = {2, 'h', '2'};
    if (SSL_CTX_set_alpn_protos(c->ctx, alpn, sizeof(alpn)) != 0) {
        rv = bg_errf(eb, BG_ERR_TLS, "ALPN: %s", ssl_err(buf, sizeof(buf)));
        goto fail;
    }
    if ((rv = tcp_connect(c, port, eb)) != 0) {
        goto fail;
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        rv = bg_errf(eb, BG_ERR_TLS, "TLS: %s", ssl_err(buf, sizeof(buf)));
        goto fail;
    }
    struct in6_addr a6;
    bool ip = inet_pton(AF_INET, c->host, &a6) == 1 || inet_pton(AF_INET6, c->host, &a6) == 1;
    if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1
           : (SSL_set_tlsext_host_name(c->ssl, c->host) != 1 ||
              SSL_set1_host(c->ssl, c->host) != 1)) {
        rv = bg_errf(eb, BG_ERR_TLS, "TLS: cannot check the name %s", c->host);
        goto fail;
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1) {
            break;
        }
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK) {
            rv = bg_errf(eb, BG_ERR_CERT,
                         "%s: the gateway's certificate does not verify "
                         "against %s: %s",
                         c->authority, cacert, X509_verify_cert_error_string(vr));
            goto fail;
        }
        if ((rv = ssl_wait(c, r, "TLS handshake", eb)) != 0) {
            goto fail;
        }
    }
    const unsigned char *proto = NULL;
    unsigned int plen = 0;
    SSL_get0_alpn_selected(c->ssl, &proto, &plen);
    if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
        rv = bg_errf(eb, BG_ERR_PROTOCOL, "%s: the gateway did not agree to HTTP/2 (ALPN h2)",
                     c->authority);
        goto fail;
    }
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        rv = bg_errf(eb, BG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    int hr = nghttp2_session_client_new(&c->h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    /* a large window: an export is one long response, and we read it as fast as it comes */
    const nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                         {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 24}};
    if (hr != 0 ||
        nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 1 << 28) != 0) {
        rv = bg_errf(eb, BG_ERR_NOMEM, "HTTP/2 session: out of memory");
        goto fail;
    }
    return 0;
fail:
    conn_close(c);
    return rv;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE                 \
    }

/* GET |path| on |c|: its status into |*status| and body into |body|. Returns 0 or an error
 * (timeout, connection, reset stream, body over BODY_MAX) in |eb|. */
static int conn_get(h2_conn *c, const char *path, int *status, bg_buf *body, bg_errbuf *eb)
{
    const nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "https"),
                             NV(":authority", c->authority), NV(":path", path),
                             NV("user-agent", "baygatectl")};
    bg_buf_reset(body);
    c->body = body;
    c->status = 0;
    c->stream_done = false;
    c->stream_error = 0;
    c->too_large = false;
    c->deadline = now_ms() + c->timeout_ms;
    c->stream_id = nghttp2_submit_request(c->h2, NULL, nv, sizeof(nv) / sizeof(nv[0]), NULL, NULL);
    if (c->stream_id < 0) {
        return bg_errf(eb, BG_ERR_PROTOCOL, "%s: GET %s: %s", c->authority, path,
                       nghttp2_strerror(c->stream_id));
    }
    int rv = pump(c, eb);
    if (rv == 0 && c->too_large) {
        rv = bg_errf(eb, BG_ERR_TOO_LARGE, "%s: GET %s: the answer is larger than %u MiB",
                     c->authority, path, BODY_MAX >> 20);
    } else if (rv == 0 && (c->stream_error != NGHTTP2_NO_ERROR || c->status == 0)) {
        rv = bg_errf(eb, BG_ERR_PROTOCOL, "%s: GET %s: the stream was reset (%s)", c->authority,
                     path, nghttp2_http2_strerror(c->stream_error));
    }
    *status = c->status;
    return rv;
}

/* ---- reconcile: two cities' ledgers -------------------------------------------------------- */

/* What reconcile keeps of one receipt (its bytes are the truth; the export's JSON fields are
 * only checked against them). */
typedef struct rc_entry {
    uint64_t index;
    int64_t time_ms;
    uint64_t ref_index;
    uint32_t kind;
    uint32_t decision;
    bool has_result_digest;
    bool has_ref;
    bool matched;
    uint8_t leaf[HASH];
    uint8_t result_digest[HASH];
    uint8_t ref_leaf[HASH];
    char request_id[TRUST_RECEIPT_REQUEST_ID_MAX + 1];
    char home_city[TRUST_RECEIPT_CITY_MAX + 1];
    char provider_city[TRUST_RECEIPT_CITY_MAX + 1];
    char counterpart_city[TRUST_RECEIPT_CITY_MAX + 1];
    char contract_id[TRUST_RECEIPT_CONTRACT_ID_LEN + 1];
} rc_entry;

/* One city's ledger as exported. */
typedef struct rc_ledger {
    char city[TRUST_RECEIPT_CITY_MAX + 1];
    const char *source; /* URL or file name */
    rc_entry *e;        /* sorted by index once loaded */
    size_t n, cap;
    bool has_checkpoint;
    trust_ledger_checkpoint cp;
    bg_buf problems; /* lines found while loading, printed once the city is known */
    size_t nproblems;
    size_t *by_key; /* indexes into |e| of receipts with a counterpart, by request id */
    size_t nkeys;
} rc_ledger;

typedef struct rc_opts {
    int64_t from, to; /* receipts examined: time_ms in [from, to); to == 0: no bound */
    size_t discrepancies, notes;
    size_t by_ref, by_request, examined;
} rc_opts;

__attribute__((format(printf, 2, 3))) static void problem(rc_ledger *L, const char *fmt, ...)
{
    va_list ap;
    char line[600];
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (bg_buf_append(&L->problems, line, strlen(line)) == 0) {
        bg_buf_append(&L->problems, "\n", 1);
    }
    L->nproblems++;
}

static bool json_str_is(const json_t *o, const char *key, const char *want)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? strcmp(s, want) == 0 : want[0] == 0;
}

/* Whether the export line |o|'s own fields say what its receipt bytes |r| say (someone editing
 * an export by hand would change the fields first). The name of the first that does not. */
static const char *fields_disagree(const json_t *o, const trust_receipt *r)
{
    uint64_t v;
    uint8_t h[HASH];
    const json_t *cp = json_object_get(o, "counterpart");
    const json_t *rd = json_object_get(o, "result_digest");
    if (!json_u64(json_object_get(o, "index"), &v) || v != r->index) {
        return "index";
    }
    if (!json_str_is(o, "request_id", r->request_id)) {
        return "request_id";
    }
    if (!json_str_is(o, "contract", r->contract_id)) {
        return "contract";
    }
    if ((rd != NULL) != r->has_result_digest ||
        (rd != NULL && (!json_hash(rd, h) || memcmp(h, r->result_digest, HASH) != 0))) {
        return "result_digest";
    }
    if (cp != NULL && !json_str_is(cp, "city", r->counterpart_city)) {
        return "counterpart.city";
    }
    const json_t *ci = json_object_get(cp, "index");
    if ((ci != NULL) != r->has_counterpart_ref ||
        (ci != NULL && (!json_u64(ci, &v) || v != r->counterpart_index ||
                        !json_hash(json_object_get(cp, "leaf_hash"), h) ||
                        memcmp(h, r->counterpart_leaf_hash, HASH) != 0))) {
        return "counterpart.index/leaf_hash";
    }
    return NULL;
}

/* Parses export line |lineno| (|len| bytes at |s|) into a new entry of |L|. Lines that cannot
 * be taken are problems of |L|. Returns 0 or BG_ERR_NOMEM. */
static int add_line(rc_ledger *L, const char *s, size_t len, size_t lineno, uint8_t *bytes,
                    trust_receipt *r)
{
    json_error_t je;
    json_t *o = json_loadb(s, len, 0, &je);
    const char *b64 = json_string_value(json_object_get(o, "receipt_b64"));
    size_t blen = 0;
    bg_errbuf eb = {{0}};
    int rc = 0;
    if (o == NULL || !json_is_object(o) || b64 == NULL) {
        problem(L, "line %zu of the export is not a receipt (%s)", lineno,
                o == NULL ? je.text : "no receipt_b64");
        goto done;
    }
    if (!trust_b64_decode(b64, strlen(b64), bytes, TRUST_RECEIPT_MAX_BYTES, &blen) || blen == 0) {
        problem(L, "line %zu of the export: receipt_b64 is not base64 of a receipt", lineno);
        goto done;
    }
    if (trust_receipt_decode(r, bytes, blen, &eb) != 0) {
        problem(L, "line %zu of the export: the receipt bytes do not decode canonically: %s",
                lineno, eb.msg);
        goto done;
    }
    const char *f = fields_disagree(o, r);
    if (f != NULL) {
        problem(L, "#%" PRIu64 ": the export's %s disagrees with its receipt bytes", r->index, f);
    }
    if (L->n == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 1024;
        rc_entry *ne = realloc(L->e, nc * sizeof(*ne));
        if (ne == NULL) {
            rc = BG_ERR_NOMEM;
            goto done;
        }
        L->e = ne;
        L->cap = nc;
    }
    rc_entry *e = &L->e[L->n];
    memset(e, 0, sizeof(*e));
    if (trust_ledger_leaf_hash(bytes, blen, e->leaf) != 0) {
        rc = BG_ERR_NOMEM;
        goto done;
    }
    L->n++;
    e->index = r->index;
    e->time_ms = r->time_ms;
    e->kind = r->kind;
    e->decision = r->decision;
    e->has_result_digest = r->has_result_digest;
    memcpy(e->result_digest, r->result_digest, HASH);
    e->has_ref = r->has_counterpart_ref;
    e->ref_index = r->counterpart_index;
    memcpy(e->ref_leaf, r->counterpart_leaf_hash, HASH);
    bg_strlcpy(e->request_id, r->request_id, sizeof(e->request_id));
    bg_strlcpy(e->home_city, r->home_city, sizeof(e->home_city));
    bg_strlcpy(e->provider_city, r->provider_city, sizeof(e->provider_city));
    bg_strlcpy(e->counterpart_city, r->counterpart_city, sizeof(e->counterpart_city));
    bg_strlcpy(e->contract_id, r->contract_id, sizeof(e->contract_id));
done:
    json_decref(o);
    return rc;
}

/* Adds every line of the JSON-lines export |data| to |L|. Returns 0 or BG_ERR_NOMEM. */
static int add_export(rc_ledger *L, const uint8_t *data, size_t len, size_t *lineno)
{
    uint8_t *bytes = malloc(TRUST_RECEIPT_MAX_BYTES + 3);
    trust_receipt *r = malloc(sizeof(*r));
    int rc = bytes == NULL || r == NULL ? BG_ERR_NOMEM : 0;
    size_t pos = 0;
    while (rc == 0 && pos < len) {
        const uint8_t *nl = memchr(data + pos, '\n', len - pos);
        size_t ll = nl != NULL ? (size_t)(nl - data - (ptrdiff_t)pos) : len - pos;
        (*lineno)++;
        size_t t = ll;
        while (t > 0 && (data[pos + t - 1] == '\r' || data[pos + t - 1] == ' ')) {
            t--;
        }
        if (t > 0) {
            rc = add_line(L, (const char *)data + pos, t, *lineno, bytes, r);
        }
        pos += ll + 1;
    }
    free(r);
    free(bytes);
    return rc;
}

static int cmp_index(const void *a, const void *b)
{
    const rc_entry *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The RFC 6962 root of the |n| leaf hashes of |e| (in order) into |root|: subtrees kept on a
 * stack by height, merged right to left at the end, which splits as MTH does. */
static int merkle_root(const rc_entry *e, size_t n, uint8_t root[HASH])
{
    uint8_t stack[65][HASH];
    unsigned height[65];
    size_t top = 0;
    uint8_t in[1 + 2 * HASH];
    in[0] = 0x01;
    if (n == 0) {
        return EVP_Digest("", 0, root, NULL, EVP_sha256(), NULL) == 1 ? 0 : BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(stack[top], e[i].leaf, HASH);
        height[top++] = 0;
        while (top >= 2 && height[top - 1] == height[top - 2]) {
            memcpy(in + 1, stack[top - 2], HASH);
            memcpy(in + 1 + HASH, stack[top - 1], HASH);
            if (EVP_Digest(in, sizeof(in), stack[top - 2], NULL, EVP_sha256(), NULL) != 1) {
                return BG_ERR_NOMEM;
            }
            height[top - 2]++;
            top--;
        }
    }
    while (top >= 2) {
        memcpy(in + 1, stack[top - 2], HASH);
        memcpy(in + 1 + HASH, stack[top - 1], HASH);
        if (EVP_Digest(in, sizeof(in), stack[top - 2], NULL, EVP_sha256(), NULL) != 1) {
            return BG_ERR_NOMEM;
        }
        top--;
    }
    memcpy(root, stack[0], HASH);
    return 0;
}

/* After loading: sorts |L| by index, and records gaps and repeats as problems. Exports from a
 * gateway start at 0; a file may hold any contiguous range. */
static void check_sequence(rc_ledger *L, bool from_zero)
{
    qsort(L->e, L->n, sizeof(L->e[0]), cmp_index);
    uint64_t expect = from_zero || L->n == 0 ? 0 : L->e[0].index;
    for (size_t i = 0; i < L->n; i++) {
        if (L->e[i].index < expect) {
            problem(L, "#%" PRIu64 " appears more than once in the export", L->e[i].index);
            continue;
        }
        if (L->e[i].index > expect) {
            if (L->e[i].index == expect + 1) {
                problem(L, "#%" PRIu64 " is missing from the export", expect);
            } else {
                problem(L, "#%" PRIu64 "..#%" PRIu64 " are missing from the export", expect,
                        L->e[i].index - 1);
            }
        }
        expect = L->e[i].index + 1;
    }
    if (L->has_checkpoint && expect < L->cp.size) {
        problem(L, "#%" PRIu64 "..#%" PRIu64 " are missing from the export", expect,
                L->cp.size - 1);
    }
}

/* Fetches |L|'s checkpoint (verified with its own key) and export of the checkpoint's tree
 * through |c|, and checks the export's Merkle root against the checkpoint. Returns 0, or 2
 * with the reason on stderr. */
static int fetch_ledger(rc_ledger *L, h2_conn *c)
{
    bg_buf body, vkey;
    bg_buf_init(&body);
    bg_buf_init(&vkey);
    bg_errbuf eb = {{0}};
    int status = 0, rc = 2;
    static const char *const paths[] = {"/v1/ledger/key", "/v1/ledger/checkpoint"};
    for (size_t i = 0; i < 2; i++) {
        if (conn_get(c, paths[i], &status, &body, &eb) != 0) {
            fprintf(stderr, "baygatectl reconcile: %s\n", eb.msg);
            goto done;
        }
        if (status != 200) {
            json_t *j = json_loadb((const char *)body.data, body.len, 0, NULL);
            const char *m =
                json_string_value(json_object_get(json_object_get(j, "error"), "message"));
            fprintf(stderr, "baygatectl reconcile: %s: GET %s: %d%s%s%s\n", L->source, paths[i],
                    status, m ? " (" : "", m ? m : "",
                    m               ? ")"
                    : status == 403 ? " (is the certificate this city's regulator's?)"
                                    : "");
            json_decref(j);
            goto done;
        }
        if (i == 0) {
            while (body.len > 0 && strchr(" \t\r\n", body.data[body.len - 1]) != NULL) {
                body.len--;
            }
            if (body.len == 0 || bg_buf_append(&vkey, body.data, body.len) != 0) {
                fprintf(stderr, "baygatectl reconcile: %s: GET %s: no key\n", L->source, paths[i]);
                goto done;
            }
        }
    }
    char why[512];
    if (!checkpoint_check(body.data, body.len, (const char *)vkey.data, &L->cp, why, sizeof(why))) {
        fprintf(stderr,
                "baygatectl reconcile: %s: its checkpoint does not verify with its own "
                "key: %s\n",
                L->source, why);
        goto done;
    }
    if (!origin_city(L->cp.origin, L->city, sizeof(L->city))) {
        fprintf(stderr, "baygatectl reconcile: %s: %s is not a city's ledger\n", L->source,
                L->cp.origin);
        goto done;
    }
    L->has_checkpoint = true;
    size_t lineno = 0;
    for (uint64_t from = 0; from < L->cp.size; from += EXPORT_PAGE) {
        uint64_t to = L->cp.size - from > EXPORT_PAGE ? from + EXPORT_PAGE : L->cp.size;
        char path[96];
        snprintf(path, sizeof(path), "/v1/ledger/export?from=%" PRIu64 "&to=%" PRIu64, from, to);
        if (conn_get(c, path, &status, &body, &eb) != 0) {
            fprintf(stderr, "baygatectl reconcile: %s\n", eb.msg);
            goto done;
        }
        if (status != 200) {
            fprintf(stderr, "baygatectl reconcile: %s: GET %s: %d %.*s\n", L->source, path, status,
                    (int)(body.len > 200 ? 200 : body.len), (const char *)body.data);
            goto done;
        }
        if (add_export(L, body.data, body.len, &lineno) != 0) {
            fprintf(stderr, "baygatectl reconcile: out of memory\n");
            goto done;
        }
    }
    check_sequence(L, true);
    bool exact = L->n == L->cp.size;
    for (size_t i = 0; exact && i < L->n; i++) {
        exact = L->e[i].index == i;
    }
    if (exact) {
        uint8_t root[HASH];
        char h1[B64_HASH_LEN], h2[B64_HASH_LEN];
        if (merkle_root(L->e, L->n, root) != 0) {
            fprintf(stderr, "baygatectl reconcile: out of memory\n");
            goto done;
        }
        if (memcmp(root, L->cp.root, HASH) != 0) {
            problem(L,
                    "the export does not match the signed checkpoint of size %" PRIu64
                    ": its Merkle root is %s, the checkpoint's %s",
                    L->cp.size, b64_hash(root, h1), b64_hash(L->cp.root, h2));
        }
    }
    rc = 0;
done:
    bg_buf_dispose(&body);
    bg_buf_dispose(&vkey);
    return rc;
}

/* Loads an export saved to |path|; |L|->city is inferred when not given: the one of each
 * receipt's home and provider that is not its counterpart. Returns 0 or 2. */
static int load_ledger_file(rc_ledger *L, const char *path)
{
    bg_buf b;
    bg_buf_init(&b);
    size_t lineno = 0;
    int rc = read_file(path, INPUT_FILE_MAX, &b, "reconcile");
    if (rc == 0 && add_export(L, b.data, b.len, &lineno) != 0) {
        fprintf(stderr, "baygatectl reconcile: out of memory\n");
        rc = 2;
    }
    bg_buf_dispose(&b);
    if (rc != 0) {
        return rc;
    }
    check_sequence(L, false);
    if (L->city[0]) {
        return 0;
    }
    for (size_t i = 0; i < L->n; i++) {
        const rc_entry *e = &L->e[i];
        if (!e->counterpart_city[0]) {
            continue;
        }
        const char *self =
            strcmp(e->home_city, e->counterpart_city) != 0 ? e->home_city : e->provider_city;
        if (!L->city[0]) {
            bg_strlcpy(L->city, self, sizeof(L->city));
        } else if (strcmp(L->city, self) != 0) {
            L->city[0] = 0;
            break;
        }
    }
    if (!L->city[0]) {
        fprintf(stderr,
                "baygatectl reconcile: %s: cannot tell whose ledger this is; name the "
                "city with --a-city / --b-city\n",
                path);
        return 2;
    }
    return 0;
}

static int cmp_key(const rc_entry *x, const rc_entry *y)
{
    int c = strcmp(x->request_id, y->request_id);
    if (c == 0) {
        c = strcmp(x->provider_city, y->provider_city);
    }
    if (c == 0) {
        c = strcmp(x->home_city, y->home_city);
    }
    return c;
}

static const rc_ledger *sort_ledger; /* qsort() has no context argument */

static int cmp_by_key(const void *a, const void *b)
{
    const rc_entry *x = &sort_ledger->e[*(const size_t *)a];
    const rc_entry *y = &sort_ledger->e[*(const size_t *)b];
    int c = cmp_key(x, y);
    return c != 0 ? c : x->index < y->index ? -1 : x->index > y->index;
}

/* Indexes |L|'s receipts with |other| as counterpart by (request id, provider, home). */
static int index_keys(rc_ledger *L, const char *other)
{
    L->by_key = malloc((L->n ? L->n : 1) * sizeof(size_t));
    if (L->by_key == NULL) {
        return BG_ERR_NOMEM;
    }
    L->nkeys = 0;
    for (size_t i = 0; i < L->n; i++) {
        if (strcmp(L->e[i].counterpart_city, other) == 0) {
            L->by_key[L->nkeys++] = i;
        }
    }
    sort_ledger = L;
    qsort(L->by_key, L->nkeys, sizeof(size_t), cmp_by_key);
    sort_ledger = NULL;
    return 0;
}

/* The receipt of |L| at |index|, or NULL. */
static rc_entry *find_index(rc_ledger *L, uint64_t index)
{
    size_t lo = 0, hi = L->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (L->e[mid].index < index) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < L->n && L->e[lo].index == index ? &L->e[lo] : NULL;
}

/* The first unmatched receipt of |L| with |e|'s request id, provider and home, or NULL. */
static rc_entry *find_key(rc_ledger *L, const rc_entry *e)
{
    size_t lo = 0, hi = L->nkeys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_key(&L->e[L->by_key[mid]], e) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (; lo < L->nkeys && cmp_key(&L->e[L->by_key[lo]], e) == 0; lo++) {
        if (!L->e[L->by_key[lo]].matched) {
            return &L->e[L->by_key[lo]];
        }
    }
    return NULL;
}

static bool in_window(const rc_opts *o, const rc_entry *e)
{
    return e->time_ms >= o->from && (o->to == 0 || e->time_ms < o->to);
}

__attribute__((format(printf, 2, 3))) static void discrepancy(rc_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    o->discrepancies++;
}

/* Compares the pair |a| (of |A|) and |b| (of |B|) found by reference ("->") or by request id
 * ("~"): one line per field that differs. */
static void compare_pair(rc_opts *o, const rc_ledger *A, const rc_entry *a, const rc_ledger *B,
                         const rc_entry *b, const char *how)
{
    char h1[B64_HASH_LEN], h2[B64_HASH_LEN];
    if (strcmp(a->request_id, b->request_id) != 0) {
        discrepancy(o, "%s#%" PRIu64 " %s %s#%" PRIu64 ": request id differs (%s: %s, %s: %s)",
                    A->city, a->index, how, B->city, b->index, A->city, a->request_id, B->city,
                    b->request_id);
    }
    if (strcmp(a->home_city, b->home_city) != 0 ||
        strcmp(a->provider_city, b->provider_city) != 0) {
        discrepancy(o,
                    "%s#%" PRIu64 " %s %s#%" PRIu64 ": home/provider differ (%s: %s/%s, %s: "
                    "%s/%s)",
                    A->city, a->index, how, B->city, b->index, A->city, a->home_city,
                    a->provider_city, B->city, b->home_city, b->provider_city);
    }
    if (strcmp(b->counterpart_city, A->city) != 0) {
        discrepancy(o, "%s#%" PRIu64 " %s %s#%" PRIu64 ": %s's receipt names %s as counterpart",
                    A->city, a->index, how, B->city, b->index, B->city,
                    b->counterpart_city[0] ? b->counterpart_city : "no city");
    }
    if (strcmp(a->contract_id, b->contract_id) != 0) {
        discrepancy(o, "%s#%" PRIu64 " %s %s#%" PRIu64 ": contract differs (%s: %s, %s: %s)",
                    A->city, a->index, how, B->city, b->index, A->city,
                    a->contract_id[0] ? a->contract_id : "none", B->city,
                    b->contract_id[0] ? b->contract_id : "none");
    }
    if (a->has_result_digest != b->has_result_digest ||
        (a->has_result_digest && memcmp(a->result_digest, b->result_digest, HASH) != 0)) {
        discrepancy(o, "%s#%" PRIu64 " %s %s#%" PRIu64 ": result digest differs (%s: %s, %s: %s)",
                    A->city, a->index, how, B->city, b->index, A->city,
                    a->has_result_digest ? b64_hash(a->result_digest, h1) : "none", B->city,
                    b->has_result_digest ? b64_hash(b->result_digest, h2) : "none");
    }
}

/* Pass 1: every receipt of |A| in the window that references a receipt of |B| by index. */
static void check_refs(rc_opts *o, rc_ledger *A, rc_ledger *B)
{
    char h1[B64_HASH_LEN], h2[B64_HASH_LEN];
    for (size_t i = 0; i < A->n; i++) {
        rc_entry *a = &A->e[i];
        if (!a->has_ref || strcmp(a->counterpart_city, B->city) != 0 || !in_window(o, a)) {
            continue;
        }
        a->matched = true;
        o->by_ref++;
        rc_entry *b = find_index(B, a->ref_index);
        if (b == NULL) {
            discrepancy(o,
                        "%s#%" PRIu64 " -> %s#%" PRIu64 ": missing index: %s's ledger (%s) "
                        "holds no receipt %" PRIu64 " (%s, request %s)",
                        A->city, a->index, B->city, a->ref_index, B->city, B->source, a->ref_index,
                        kind_name(a->kind), a->request_id);
            continue;
        }
        b->matched = true;
        if (memcmp(b->leaf, a->ref_leaf, HASH) != 0) {
            discrepancy(o,
                        "%s#%" PRIu64 " -> %s#%" PRIu64 ": leaf hash mismatch: %s recorded "
                        "%s, %s's receipt hashes to %s",
                        A->city, a->index, B->city, b->index, A->city, b64_hash(a->ref_leaf, h1),
                        B->city, b64_hash(b->leaf, h2));
        }
        compare_pair(o, A, a, B, b, "->");
    }
}

/* Pass 2: every receipt of |A| in the window with |B| as counterpart and no reference, matched
 * to an unmatched receipt of |B| with the same request id, provider and home. */
static void check_requests(rc_opts *o, rc_ledger *A, rc_ledger *B)
{
    for (size_t i = 0; i < A->n; i++) {
        rc_entry *a = &A->e[i];
        if (a->matched || strcmp(a->counterpart_city, B->city) != 0 || !in_window(o, a)) {
            continue;
        }
        rc_entry *b = find_key(B, a);
        if (b != NULL) {
            a->matched = b->matched = true;
            o->by_request++;
            compare_pair(o, A, a, B, b, "~");
        }
    }
}

/* Pass 3: what is left of |A| in the window has no counterpart in |B|. A refusal released
 * nothing and may never have reached the other city (a home refuses a query before it leaves;
 * a refused contract is recorded by its provider only), so that one is a note rather than a
 * discrepancy. */
static void check_unmatched(rc_opts *o, rc_ledger *A, const rc_ledger *B)
{
    for (size_t i = 0; i < A->n; i++) {
        rc_entry *a = &A->e[i];
        if (strcmp(a->counterpart_city, B->city) != 0 || !in_window(o, a)) {
            continue;
        }
        o->examined++;
        if (a->matched) {
            continue;
        }
        if (a->decision == TRUST_RECEIPT_REFUSED) {
            printf("note: %s#%" PRIu64 " (%s, refused, request %s, %s -> %s): no counterpart in "
                   "%s's ledger (the refusal may never have reached it)\n",
                   A->city, a->index, kind_name(a->kind), a->request_id, a->home_city,
                   a->provider_city, B->city);
            o->notes++;
            continue;
        }
        discrepancy(o,
                    "%s#%" PRIu64 " (%s, request %s, %s -> %s): no counterpart in %s's "
                    "ledger",
                    A->city, a->index, kind_name(a->kind), a->request_id, a->home_city,
                    a->provider_city, B->city);
    }
}

static void ledger_dispose(rc_ledger *L)
{
    free(L->e);
    free(L->by_key);
    bg_buf_dispose(&L->problems);
}

static void reconcile_usage(FILE *f)
{
    fputs("usage: baygatectl reconcile (--a URL | --a-file FILE) (--b URL | --b-file FILE)\n"
          "                            --cert CRT --key KEY [--cert-b CRT --key-b KEY]\n"
          "                            --cacert BUNDLE [--from MS] [--to MS] [--timeout S]\n"
          "                            [--a-city CITY] [--b-city CITY]\n"
          "\n"
          "Compares two cities' receipts ledgers. Each is fetched from its gateway (URL:\n"
          "https://HOST:PORT) over HTTP/2 as that city's regulator: --cert/--key for A, and\n"
          "--cert-b/--key-b for B (default: the same), since a city's ledger is read only by\n"
          "its own regulator; its checkpoint is verified with its key, and its export\n"
          "(GET /v1/ledger/export) against the checkpoint's root. Or an export saved to a\n"
          "file (--a-file/--b-file; the city is inferred, or named with --a-city/--b-city).\n"
          "Every receipt with the other city as counterpart and a time in [--from, --to) (unix\n"
          "ms) must have its counterpart: a home's receipt names the provider's index and leaf\n"
          "hash (checked by reference), a provider's receipt is matched by request id, home and\n"
          "provider. One line per discrepancy (missing index, leaf hash mismatch, request id,\n"
          "contract or result digest differs, no counterpart), then a summary.\n"
          "Exit 0: none; 1: discrepancies; 2: usage or fetch errors.\n",
          f);
}

static bool parse_ms(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == 0 || *end != 0 || errno != 0 || v < 0) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

static int reconcile_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"a", required_argument, NULL, 'a'},      {"b", required_argument, NULL, 'b'},
        {"a-file", required_argument, NULL, 'A'}, {"b-file", required_argument, NULL, 'B'},
        {"a-city", required_argument, NULL, 'x'}, {"b-city", required_argument, NULL, 'y'},
        {"cert", required_argument, NULL, 'c'},   {"key", required_argument, NULL, 'k'},
        {"cert-b", required_argument, NULL, 'C'}, {"key-b", required_argument, NULL, 'K'},
        {"cacert", required_argument, NULL, 'r'}, {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},     {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *url[2] = {NULL, NULL}, *file[2] = {NULL, NULL}, *city[2] = {NULL, NULL};
    const char *cert[2] = {NULL, NULL}, *key[2] = {NULL, NULL}, *cacert = NULL;
    rc_opts o;
    memset(&o, 0, sizeof(o));
    int64_t timeout_s = DEFAULT_TIMEOUT_S;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'a':
        case 'b':
            url[c - 'a'] = optarg;
            break;
        case 'A':
        case 'B':
            file[c - 'A'] = optarg;
            break;
        case 'x':
        case 'y':
            city[c - 'x'] = optarg;
            break;
        case 'c':
            cert[0] = optarg;
            break;
        case 'k':
            key[0] = optarg;
            break;
        case 'C':
            cert[1] = optarg;
            break;
        case 'K':
            key[1] = optarg;
            break;
        case 'r':
            cacert = optarg;
            break;
        case 'f':
            ok = parse_ms(optarg, &o.from);
            break;
        case 't':
            ok = parse_ms(optarg, &o.to);
            break;
        case 'T':
            ok = parse_ms(optarg, &timeout_s) && timeout_s > 0 && timeout_s <= 3600;
            break;
        case 'h':
            reconcile_usage(stdout);
            return 0;
        default:
            reconcile_usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "baygatectl reconcile: bad number: %s\n", optarg);
            return 2;
        }
    }
    if (cert[1] == NULL && key[1] == NULL) {
        cert[1] = cert[0];
        key[1] = key[0];
    }
    bool bad = optind != argc || (o.to != 0 && o.to <= o.from);
    for (size_t i = 0; i < 2; i++) {
        bad = bad || (url[i] == NULL) == (file[i] == NULL) ||
              (url[i] != NULL && (cert[i] == NULL || key[i] == NULL || cacert == NULL)) ||
              (url[i] != NULL && city[i] != NULL);
    }
    if (bad) {
        reconcile_usage(stderr);
        return 2;
    }
    rc_ledger L[2];
    memset(L, 0, sizeof(L));
    int rc = 0;
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        bg_buf_init(&L[i].problems);
        L[i].source = url[i] != NULL ? url[i] : file[i];
        if (city[i] != NULL) {
            bg_strlcpy(L[i].city, city[i], sizeof(L[i].city));
        }
        if (url[i] != NULL) {
            h2_conn conn;
            bg_errbuf eb = {{0}};
            if (conn_open(&conn, url[i], cert[i], key[i], cacert, (int)timeout_s * 1000, &eb) !=
                0) {
                fprintf(stderr, "baygatectl reconcile: %s\n", eb.msg);
                rc = 2;
                break;
            }
            rc = fetch_ledger(&L[i], &conn);
            conn_close(&conn);
        } else {
            rc = load_ledger_file(&L[i], file[i]);
        }
    }
    if (rc == 0 && strcmp(L[0].city, L[1].city) == 0) {
        fprintf(stderr, "baygatectl reconcile: both ledgers are %s's\n", L[0].city);
        rc = 2;
    }
    if (rc == 0 && (index_keys(&L[0], L[1].city) != 0 || index_keys(&L[1], L[0].city) != 0)) {
        fprintf(stderr, "baygatectl reconcile: out of memory\n");
        rc = 2;
    }
    if (rc != 0) {
        ledger_dispose(&L[0]);
        ledger_dispose(&L[1]);
        return rc;
    }
    for (size_t i = 0; i < 2; i++) {
        printf("%s: %zu receipts from %s", L[i].city, L[i].n, L[i].source);
        if (L[i].has_checkpoint) {
            printf(" (signed checkpoint of size %" PRIu64 " verified)", L[i].cp.size);
        }
        printf("\n");
    }
    for (size_t i = 0; i < 2; i++) { /* problems of the exports themselves */
        const char *p = (const char *)L[i].problems.data;
        while (p != NULL && *p) {
            const char *nl = strchr(p, '\n');
            if (nl == NULL) {
                break;
            }
            discrepancy(&o, "%s%s%.*s", L[i].city, *p == '#' ? "" : ": ", (int)(nl - p), p);
            p = nl + 1;
        }
    }
    check_refs(&o, &L[0], &L[1]);
    check_refs(&o, &L[1], &L[0]);
    check_requests(&o, &L[0], &L[1]);
    check_requests(&o, &L[1], &L[0]);
    check_unmatched(&o, &L[0], &L[1]);
    check_unmatched(&o, &L[1], &L[0]);
    printf("summary: %zu receipts between %s and %s examined, %zu references checked, %zu "
           "matched by request id; %zu discrepanc%s",
           o.examined, L[0].city, L[1].city, o.by_ref, o.by_request, o.discrepancies,
           o.discrepancies == 1 ? "y" : "ies");
    if (o.notes > 0) {
        printf(", %zu note%s", o.notes, o.notes == 1 ? "" : "s");
    }
    printf("\n");
    ledger_dispose(&L[0]);
    ledger_dispose(&L[1]);
    return o.discrepancies > 0 ? 1 : 0;
}

int ctl_ledger_main(int argc, char **argv)
{
    if (strcmp(argv[0], "verify") == 0) {
        return verify_main(argc, argv);
    }
    return reconcile_main(argc, argv);
}
