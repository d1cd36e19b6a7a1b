/* trust/ledger.c: see ledger.h. LMDB's conventions (MDB_* codes, values valid only inside their
 * transaction) and OpenSSL's (1 is success, the error queue) stop here: callers get BG_ERR_*,
 * copies and plain bytes. The tree follows RFC 6962 section 2.1 to the letter (MTH, PATH,
 * PROOF) and the verifiers RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, so that every
 * other implementation of those RFCs (CT, Go's transparency-dev/merkle) agrees with ours. The
 * protobuf-c messages of receipt.proto are used only here. */
#include "trust/ledger.h"

#include "base/utf8.h"
#include "trust/b64.h"
#include "trust/lmdb_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "receipt.pb-c.h"
#include "base/ids.h"

#define DEFAULT_MAP (64u * 1024u * 1024u)
#define MAX_GROWS 40       /* doublings of the map for one batch; 2^40 x anything is plenty */
#define CHEAP_LEAVES 1024u /* receipts trust_ledger_verify() rehashes when not |full| */
#define KEY_FILE "checkpoint.key"
#define KEY_FILE_MAX 4096 /* a PKCS#8 PEM Ed25519 key is about 120 bytes */
#define NOTE_MAX 65536u   /* a signed note we are willing to parse */
#define NOTE_SIGS_MAX 100 /* signature lines in a note (the signed-note spec: >= 16) */
#define ED25519_LEN 32
#define ED25519_SIG_LEN 64
#define SIG_TYPE_ED25519 0x01 /* the signed-note signature type byte */
#define NODE_KEY_LEN 9        /* u64 last leaf || u8 level */
#define HASH TRUST_LEDGER_HASH_LEN

_Static_assert(TRUST_RECEIPT_CITY_MAX == BG_CITY_MAX, "receipt cities are city ids");
_Static_assert(sizeof(uint64_t) == 8, "big-endian keys are 8 bytes");

static const char version_key[] = "version";
static const char checkpoint_key[] = "checkpoint";
static const char origin_suffix[] = ".gba/baygate/ledger";
static const uint8_t sig_prefix[4] = {0xe2, 0x80, 0x94, 0x20}; /* U+2014 em dash, space */

struct trust_ledger {
    trust_lmdb db; /* the environment, its map size and its growth lock */
    MDB_dbi receipts;       /* be64 index -> canonical receipt bytes */
    MDB_dbi nodes;          /* be64 last leaf || level -> subtree hash */
    MDB_dbi by_contract;    /* contract id -> be64 index (DUPSORT, DUPFIXED) */
    MDB_dbi by_requester;   /* requester -> be64 index (idem) */
    MDB_dbi by_counterpart; /* counterpart city -> be64 index (idem) */
    MDB_dbi by_time;        /* be64 time_ms -> be64 index (idem) */
    MDB_dbi info;           /* "version", "checkpoint" */
    MDB_dbi budgets;        /* contract id -> be32 queries used */
    EVP_PKEY *key; /* the checkpoint signing key, Ed25519 */
    uint8_t pub[ED25519_LEN];
};

/* ---- Small helpers ------------------------------------------------------------------------- */

/* Ours are BG_ERR_* (-1..-999); LMDB's are MDB_* (<= -30600) or errno values (> 0). */
static bool is_bg_err(int rc)
{
    return rc < 0 && rc > -1000;
}

static int mdb_to_bg(int rc)
{
    if (rc == 0 || is_bg_err(rc)) {
        return rc;
    }
    return rc == ENOMEM ? BG_ERR_NOMEM : BG_ERR_STORE;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* floor(log2(v)) for v > 0 */
static unsigned log2_floor(uint64_t v)
{
    assert(v > 0);
    return 63u - (unsigned)__builtin_clzll(v);
}

/* The largest power of two smaller than |n| (n >= 2): RFC 6962's k. */
static uint64_t split_point(uint64_t n)
{
    assert(n >= 2);
    return (uint64_t)1 << log2_floor(n - 1);
}

static unsigned popcount64(uint64_t v)
{
    return (unsigned)__builtin_popcountll(v);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool utf8_check(const unsigned char *s, size_t n, bool note)
{
    return bg_utf8_valid(s, n, note ? BG_UTF8_NOTE : BG_UTF8_NO_CONTROLS);
}

static bool text_ok(const char *s, size_t n)
{
    return utf8_check((const unsigned char *)s, n, false);
}

/* ---- hex ---------------------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* ---- SHA-256 -------------------------------------------------------------------------------- */

/* Fetched once for the process (an implicit fetch per digest costs a lock and a lookup); it is
 * immutable and shared by every thread. Never freed: it lives as long as the library. */
static EVP_MD *sha256_fetched;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_md(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_fetched != NULL ? sha256_fetched : EVP_sha256();
}

/* One digest context per call of the API, reused for every hash the call makes. */
typedef struct hasher {
    EVP_MD_CTX *ctx;
} hasher;

static int hasher_init(hasher *h)
{
    h->ctx = EVP_MD_CTX_new();
    return h->ctx != NULL ? 0 : BG_ERR_NOMEM;
}

static void hasher_dispose(hasher *h)
{
    EVP_MD_CTX_free(h->ctx);
}

/* SHA-256(|prefix| || a || b) into |out| (b may be NULL). |out| may alias |a| or |b|: the
 * inputs are consumed before it is written. */
static int hash3(hasher *h, int prefix, const uint8_t *a, size_t alen, const uint8_t *b,
                 size_t blen, uint8_t out[HASH])
{
    uint8_t pre = (uint8_t)prefix;
    unsigned int len = 0;
    int ok =
        EVP_DigestInit_ex(h->ctx, sha256_md(), NULL) &&
        (prefix < 0 || EVP_DigestUpdate(h->ctx, &pre, 1)) && EVP_DigestUpdate(h->ctx, a, alen) &&
        (b == NULL || EVP_DigestUpdate(h->ctx, b, blen)) && EVP_DigestFinal_ex(h->ctx, out, &len);
    if (!ok || len != HASH) {
        ERR_clear_error();
        return BG_ERR_NOMEM; /* with a valid digest, only allocation can fail */
    }
    return 0;
}

/* RFC 6962 section 2.1: leaf = SHA-256(0x00 || d), node = SHA-256(0x01 || left || right). The
 * prefixes make a leaf never collide with a node (second-preimage resistance). */
static int leaf_hash(hasher *h, const uint8_t *d, size_t n, uint8_t out[HASH])
{
    return hash3(h, 0x00, d, n, NULL, 0, out);
}

static int node_hash(hasher *h, const uint8_t left[HASH], const uint8_t right[HASH],
                     uint8_t out[HASH])
{
    return hash3(h, 0x01, left, HASH, right, HASH, out);
}

static int empty_root(hasher *h, uint8_t out[HASH])
{
    static const uint8_t nothing[1];
    return hash3(h, -1, nothing, 0, NULL, 0, out);
}

int trust_ledger_leaf_hash(const uint8_t *data, size_t len, uint8_t out[TRUST_LEDGER_HASH_LEN])
{
    static const uint8_t nothing[1];
    hasher h;
    if (hasher_init(&h) != 0) {
        return BG_ERR_NOMEM;
    }
    int rc = leaf_hash(&h, len > 0 ? data : nothing, len, out);
    hasher_dispose(&h);
    return rc;
}

/* ---- Receipts ------------------------------------------------------------------------------ */

/* protobuf-c wants char * and uint8_t *; it never writes through them when packing. */
static char *mut_str(const char *s)
{
    return (char *)(uintptr_t)s;
}

static uint8_t *mut_bytes(const uint8_t *p)
{
    return (uint8_t *)(uintptr_t)p;
}

/* The length of the string in the |size|-byte array |s|, or false when it is not terminated
 * there (a caller's struct filled with memcpy). */
static bool field_len(const char *s, size_t size, size_t *len)
{
    const char *nul = memchr(s, 0, size);
    if (nul == NULL) {
        return false;
    }
    *len = (size_t)(nul - s);
    return true;
}

static int check_text(const char *field, const char *s, size_t size, bool required, bg_errbuf *eb)
{
    size_t n;
    if (!field_len(s, size, &n)) {
        return bg_errf(eb, BG_ERR_RANGE, "receipt: %s: longer than %zu bytes", field, size - 1);
    }
    if (n == 0 && required) {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: %s: empty", field);
    }
    if (!text_ok(s, n)) {
        return bg_errf(eb, BG_ERR_INVAL,
                       "receipt: %s: not UTF-8 text (broken sequence or control character)", field);
    }
    return 0;
}

static int check_city(const char *field, const char *s, size_t size, bool required, bg_errbuf *eb)
{
    size_t n;
    if (!field_len(s, size, &n)) {
        return bg_errf(eb, BG_ERR_RANGE, "receipt: %s: longer than %zu bytes", field, size - 1);
    }
    if (n == 0) {
        return required ? bg_errf(eb, BG_ERR_INVAL, "receipt: %s: empty", field) : 0;
    }
    if (!bg_city_id_valid(s, n)) {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: %s: not a city id", field);
    }
    return 0;
}

static bool contract_id_ok(const char *s, size_t size)
{
    size_t n;
    if (!field_len(s, size, &n)) {
        return false;
    }
    if (n == 0) {
        return true;
    }
    if (n != TRUST_RECEIPT_CONTRACT_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

int trust_receipt_check(const trust_receipt *r, bg_errbuf *eb)
{
    int rc;
    if (r->kind < TRUST_RECEIPT_QUERY || r->kind > TRUST_RECEIPT_IDENTITY_REVOKED) {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: kind: unknown value %u", (unsigned)r->kind);
    }
    if (r->decision < TRUST_RECEIPT_ALLOWED || r->decision > TRUST_RECEIPT_FAILED) {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: decision: unknown value %u",
                       (unsigned)r->decision);
    }
    if (r->time_ms < 0) {
        return bg_errf(eb, BG_ERR_RANGE, "receipt: time_ms: negative");
    }
    if ((rc = check_text("request_id", r->request_id, sizeof(r->request_id), false, eb)) != 0 ||
        (rc = check_text("requester", r->requester, sizeof(r->requester), false, eb)) != 0 ||
        (rc = check_city("home_city", r->home_city, sizeof(r->home_city), false, eb)) != 0 ||
        (rc = check_city("provider_city", r->provider_city, sizeof(r->provider_city), false, eb)) !=
            0 ||
        (rc = check_text("purpose", r->purpose, sizeof(r->purpose), false, eb)) != 0 ||
        (rc = check_text("operation", r->operation, sizeof(r->operation), false, eb)) != 0 ||
        (rc = check_city("counterpart_city", r->counterpart_city, sizeof(r->counterpart_city),
                         false, eb)) != 0) {
        return rc;
    }
    if (!contract_id_ok(r->contract_id, sizeof(r->contract_id))) {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: contract_id: not %d lowercase hex digits",
                       TRUST_RECEIPT_CONTRACT_ID_LEN);
    }
    if (r->ntransit > TRUST_RECEIPT_TRANSIT_MAX) {
        return bg_errf(eb, BG_ERR_RANGE, "receipt: transit: %zu cities, more than %d", r->ntransit,
                       TRUST_RECEIPT_TRANSIT_MAX);
    }
    for (size_t i = 0; i < r->ntransit; i++) {
        if ((rc = check_city("transit", r->transit[i], sizeof(r->transit[i]), true, eb)) != 0) {
            return rc;
        }
    }
    if (r->ndatasets > TRUST_RECEIPT_DATASETS_MAX) {
        return bg_errf(eb, BG_ERR_RANGE, "receipt: datasets: %zu entries, more than %d",
                       r->ndatasets, TRUST_RECEIPT_DATASETS_MAX);
    }
    for (size_t i = 0; i < r->ndatasets; i++) {
        if ((rc = check_text("datasets", r->datasets[i], sizeof(r->datasets[i]), true, eb)) != 0) {
            return rc;
        }
    }
    if (r->has_counterpart_ref && r->counterpart_city[0] == '\0') {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: counterpart reference without its city");
    }
    if (r->queries_used > 0 && r->contract_id[0] == '\0') {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: queries_used without a contract");
    }
    return 0;
}

/* The protobuf-c view of a receipt: every pointer borrowed from the receipt. */
typedef struct receipt_pb {
    Baygate__Ledger__Receipt msg;
    Baygate__Ledger__CounterpartRef cp;
    char *transit[TRUST_RECEIPT_TRANSIT_MAX];
    char *datasets[TRUST_RECEIPT_DATASETS_MAX];
} receipt_pb;

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fills |p| from a checked receipt |r|. */
static void receipt_pb_fill(receipt_pb *p, const trust_receipt *r)
{
    baygate__ledger__receipt__init(&p->msg);
    baygate__ledger__counterpart_ref__init(&p->cp);
    Baygate__Ledger__Receipt *m = &p->msg;
    m->index = r->index;
    m->time_ms = r->time_ms;
    m->kind = (Baygate__Ledger__ReceiptKind)r->kind;
    m->request_id = mut_str(r->request_id);
    m->requester = mut_str(r->requester);
    m->home_city = mut_str(r->home_city);
    m->provider_city = mut_str(r->provider_city);
    for (size_t i = 0; i < r->ntransit; i++) {
        p->transit[i] = mut_str(r->transit[i]);
    }
    m->n_transit = r->ntransit;
    m->transit = r->ntransit > 0 ? p->transit : NULL;
    m->contract_id = mut_str(r->contract_id);
    m->purpose = mut_str(r->purpose);
    /* a set of datasets: one order (bytewise) and no repeats, so one encoding */
    size_t nd = 0;
    for (size_t i = 0; i < r->ndatasets; i++) {
        p->datasets[i] = mut_str(r->datasets[i]);
    }
    if (r->ndatasets > 0) {
        qsort(p->datasets, r->ndatasets, sizeof(p->datasets[0]), cmp_str_ptr);
        nd = 1;
        for (size_t i = 1; i < r->ndatasets; i++) {
            if (strcmp(p->datasets[i], p->datasets[nd - 1]) != 0) {
                p->datasets[nd++] = p->datasets[i];
            }
        }
    }
    m->n_datasets = nd;
    m->datasets = nd > 0 ? p->datasets : NULL;
    m->operation = mut_str(r->operation);
    if (r->has_query_digest) {
        m->query_digest.data = mut_bytes(r->query_digest);
        m->query_digest.len = HASH;
    }
    if (r->has_result_digest) {
        m->result_digest.data = mut_bytes(r->result_digest);
        m->result_digest.len = HASH;
    }
    m->cells_suppressed = r->cells_suppressed;
    m->epsilon_micro = r->epsilon_micro;
    m->decision = (Baygate__Ledger__Decision)r->decision;
    m->error_code = r->error_code;
    m->queries_used = r->queries_used;
    if (r->counterpart_city[0] != '\0') {
        p->cp.city = mut_str(r->counterpart_city);
        if (r->has_counterpart_ref) {
            p->cp.index = r->counterpart_index;
            p->cp.leaf_hash.data = mut_bytes(r->counterpart_leaf_hash);
            p->cp.leaf_hash.len = HASH;
        }
        m->counterpart = &p->cp;
    }
}

/* Encodes a checked receipt into |buf| (TRUST_RECEIPT_MAX_BYTES); returns the length. The
 * field limits keep every receipt well under the bound (about 3.5 KiB at most). */
static size_t receipt_pack(const trust_receipt *r, uint8_t *buf)
{
    receipt_pb p;
    receipt_pb_fill(&p, r);
    assert(protobuf_c_message_get_packed_size(&p.msg.base) <= TRUST_RECEIPT_MAX_BYTES);
    return protobuf_c_message_pack(&p.msg.base, buf);
}

int trust_receipt_encode(const trust_receipt *r, bg_buf *out, bg_errbuf *eb)
{
    int rc = trust_receipt_check(r, eb);
    if (rc != 0) {
        return rc;
    }
    uint8_t *buf = malloc(TRUST_RECEIPT_MAX_BYTES);
    if (buf == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "receipt: out of memory");
    }
    size_t n = receipt_pack(r, buf);
    rc = bg_buf_append(out, buf, n);
    free(buf);
    return rc != 0 ? bg_errf(eb, rc, "receipt: out of memory") : 0;
}

/* Copies the protobuf string |s| into the |size|-byte array |dst|. */
static bool copy_str(char *dst, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n >= size) {
        return false;
    }
    memcpy(dst, s, n + 1);
    return true;
}

/* 0 or 32 bytes: |*has| says which. */
static bool copy_digest(uint8_t dst[HASH], bool *has, const ProtobufCBinaryData *b)
{
    if (b->len == 0) {
        *has = false;
        return true;
    }
    if (b->len != HASH) {
        return false;
    }
    memcpy(dst, b->data, HASH);
    *has = true;
    return true;
}

static int receipt_from_pb(trust_receipt *r, const Baygate__Ledger__Receipt *m, bg_errbuf *eb)
{
    memset(r, 0, sizeof(*r));
    r->index = m->index;
    r->time_ms = m->time_ms;
    r->kind = (uint32_t)m->kind;
    r->decision = (uint32_t)m->decision;
    r->cells_suppressed = m->cells_suppressed;
    r->epsilon_micro = m->epsilon_micro;
    r->error_code = m->error_code;
    r->queries_used = m->queries_used;
    if (!copy_str(r->request_id, sizeof(r->request_id), m->request_id) ||
        !copy_str(r->requester, sizeof(r->requester), m->requester) ||
        !copy_str(r->home_city, sizeof(r->home_city), m->home_city) ||
        !copy_str(r->provider_city, sizeof(r->provider_city), m->provider_city) ||
        !copy_str(r->contract_id, sizeof(r->contract_id), m->contract_id) ||
        !copy_str(r->purpose, sizeof(r->purpose), m->purpose) ||
        !copy_str(r->operation, sizeof(r->operation), m->operation)) {
        return bg_errf(eb, BG_ERR_RANGE, "receipt: a string field is too long");
    }
    if (m->n_transit > TRUST_RECEIPT_TRANSIT_MAX || m->n_datasets > TRUST_RECEIPT_DATASETS_MAX) {
        return bg_errf(eb, BG_ERR_RANGE, "receipt: too many transit cities or datasets");
    }
    r->ntransit = m->n_transit;
    for (size_t i = 0; i < m->n_transit; i++) {
        if (!copy_str(r->transit[i], sizeof(r->transit[i]), m->transit[i])) {
            return bg_errf(eb, BG_ERR_RANGE, "receipt: transit: a city is too long");
        }
    }
    r->ndatasets = m->n_datasets;
    for (size_t i = 0; i < m->n_datasets; i++) {
        if (!copy_str(r->datasets[i], sizeof(r->datasets[i]), m->datasets[i])) {
            return bg_errf(eb, BG_ERR_RANGE, "receipt: datasets: a name is too long");
        }
    }
    if (!copy_digest(r->query_digest, &r->has_query_digest, &m->query_digest) ||
        !copy_digest(r->result_digest, &r->has_result_digest, &m->result_digest)) {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: a digest is not %d bytes", HASH);
    }
    if (m->counterpart != NULL) {
        const Baygate__Ledger__CounterpartRef *cp = m->counterpart;
        if (!copy_str(r->counterpart_city, sizeof(r->counterpart_city), cp->city)) {
            return bg_errf(eb, BG_ERR_RANGE, "receipt: counterpart: city too long");
        }
        if (!copy_digest(r->counterpart_leaf_hash, &r->has_counterpart_ref, &cp->leaf_hash)) {
            return bg_errf(eb, BG_ERR_INVAL, "receipt: counterpart: leaf hash not %d bytes", HASH);
        }
        r->counterpart_index = cp->index;
    }
    return trust_receipt_check(r, eb);
}

int trust_receipt_decode(trust_receipt *out, const uint8_t *data, size_t len, bg_errbuf *eb)
{
    if (data == NULL || len == 0) {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: empty input");
    }
    if (len > TRUST_RECEIPT_MAX_BYTES) {
        return bg_errf(eb, BG_ERR_RANGE, "receipt: %zu bytes, more than %d", len,
                       TRUST_RECEIPT_MAX_BYTES);
    }
    Baygate__Ledger__Receipt *m = baygate__ledger__receipt__unpack(NULL, len, data);
    if (m == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "receipt: not a well-formed protobuf Receipt");
    }
    int rc = BG_ERR_NOMEM;
    trust_receipt *r = malloc(sizeof(*r));
    uint8_t *again = malloc(TRUST_RECEIPT_MAX_BYTES);
    if (r == NULL || again == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "receipt: out of memory");
        goto done;
    }
    if ((rc = receipt_from_pb(r, m, eb)) != 0) {
        goto done;
    }
    /* Only the canonical encoding is accepted: re-encode and compare. This refuses duplicate,
     * reordered or unknown fields, non-minimal varints, explicit defaults, unsorted or repeated
     * datasets, strings cut by an embedded NUL and every other second spelling of a receipt, so
     * a receipt has exactly one leaf hash. */
    size_t n = receipt_pack(r, again);
    if (n != len || memcmp(again, data, len) != 0) {
        rc = bg_errf(eb, BG_ERR_INVAL, "receipt: not in canonical encoding");
        goto done;
    }
    *out = *r;
done:
    free(again);
    free(r);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    return rc;
}

/* ---- The signing key ------------------------------------------------------------------------ */

/* The key file is never encrypted: refuse rather than prompt on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static int key_set(trust_ledger *l, EVP_PKEY *k, const char *path, bg_errbuf *eb)
{
    size_t len = ED25519_LEN;
    if (EVP_PKEY_get_id(k) != EVP_PKEY_ED25519 ||
        EVP_PKEY_get_raw_public_key(k, l->pub, &len) != 1 || len != ED25519_LEN) {
        ERR_clear_error();
        EVP_PKEY_free(k);
        return bg_errf(eb, BG_ERR_STORE, "%s: not an Ed25519 private key", path);
    }
    l->key = k;
    return 0;
}

/* Loads the key at |path|; BG_ERR_NOTFOUND when there is none. */
static int key_load(trust_ledger *l, const char *path, bg_errbuf *eb)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return BG_ERR_NOTFOUND;
        }
        return bg_errf(eb, BG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    uint8_t buf[KEY_FILE_MAX];
    size_t n = 0;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = bg_errf(eb, BG_ERR_IO, "%s: not a regular file", path);
    } else if ((st.st_mode & 077) != 0) {
        /* a signing key others can read signs checkpoints for anyone: as ssh does, refuse */
        rc = bg_errf(eb, BG_ERR_IO, "%s: mode %03o: readable or writable by others (chmod 600)",
                     path, (unsigned)(st.st_mode & 0777));
    } else {
        ssize_t got;
        while (n < sizeof(buf) && (got = read(fd, buf + n, sizeof(buf) - n)) != 0) {
            if (got < 0 && errno == EINTR) {
                continue;
            }
            if (got < 0) {
                rc = bg_errf(eb, BG_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
                break;
            }
            n += (size_t)got;
        }
        if (rc == 0 && n == sizeof(buf)) {
            rc = bg_errf(eb, BG_ERR_IO, "%s: larger than %d bytes", path, KEY_FILE_MAX);
        }
    }
    close(fd);
    if (rc == 0) {
        BIO *bio = BIO_new_mem_buf(buf, (int)n);
        EVP_PKEY *k = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
        BIO_free(bio);
        if (k == NULL) {
            ERR_clear_error();
            rc = bg_errf(eb, BG_ERR_STORE, "%s: not a PEM private key", path);
        } else {
            rc = key_set(l, k, path, eb);
        }
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

static bool write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* Creates a new key at |path| (written to a temporary file, then link()ed, which fails if the
 * name exists: two gateways racing on one directory end up with one key, never two). Returns
 * 0, BG_ERR_EXISTS (another opener won: load theirs), or an error in |eb|. */
static int key_create(trust_ledger *l, const char *dir, const char *path, bg_errbuf *eb)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= sizeof(tmp)) {
        return bg_errf(eb, BG_ERR_IO, "%s: path too long", dir);
    }
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (kc == NULL || EVP_PKEY_keygen_init(kc) != 1 || EVP_PKEY_keygen(kc, &k) != 1) {
        EVP_PKEY_CTX_free(kc);
        ERR_clear_error();
        return bg_errf(eb, BG_ERR_TLS, "%s: cannot generate an Ed25519 key", path);
    }
    EVP_PKEY_CTX_free(kc);
    BIO *mem = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pemlen = 0;
    int rc = 0;
    if (mem == NULL || PEM_write_bio_PrivateKey(mem, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        (pemlen = BIO_get_mem_data(mem, &pem)) <= 0) {
        ERR_clear_error();
        rc = bg_errf(eb, BG_ERR_NOMEM, "%s: cannot encode the key", path);
        goto fail_bio;
    }
    unlink(tmp); /* left over by a crash of an earlier process with our pid */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = bg_errf(eb, BG_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto fail_bio;
    }
    bool ok = write_all(fd, pem, (size_t)pemlen) && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok) {
        rc = bg_errf(eb, BG_ERR_IO, "%s: cannot write: %s", tmp, strerror(e));
        goto fail_unlink;
    }
    if (link(tmp, path) != 0) {
        e = errno;
        rc = e == EEXIST ? BG_ERR_EXISTS
                         : bg_errf(eb, BG_ERR_IO, "%s: cannot create: %s", path, strerror(e));
        goto fail_unlink;
    }
    unlink(tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* the new name survives a crash */
        close(dfd);
    }
    OPENSSL_cleanse(pem, (size_t)pemlen);
    BIO_free(mem);
    return key_set(l, k, path, eb);

fail_unlink:
    unlink(tmp);
fail_bio:
    if (pem != NULL) {
        OPENSSL_cleanse(pem, (size_t)pemlen);
    }
    BIO_free(mem);
    EVP_PKEY_free(k);
    return rc;
}

static int key_open(trust_ledger *l, const char *dir, bg_errbuf *eb)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, KEY_FILE) >= sizeof(path)) {
        return bg_errf(eb, BG_ERR_IO, "%s: path too long", dir);
    }
    int rc = key_load(l, path, eb);
    if (rc == BG_ERR_NOTFOUND) {
        rc = key_create(l, dir, path, eb);
        if (rc == BG_ERR_EXISTS) {
            rc = key_load(l, path, eb);
        }
    }
    return rc;
}

/* ---- Opening, transactions, map growth ----------------------------------------------------- */

/* Reads the format version, stamping a new (empty) ledger with ours. A ledger with receipts
 * but no version record was not written by us. Returns 0 or an LMDB code. */
static int check_version(trust_ledger *l, MDB_txn *txn, uint32_t *version)
{
    MDB_val k = {sizeof(version_key) - 1, mut_str(version_key)}, v;
    int rc = mdb_get(txn, l->info, &k, &v);
    if (rc == 0) {
        if (v.mv_size != sizeof(*version)) {
            return MDB_CORRUPTED;
        }
        memcpy(version, v.mv_data, sizeof(*version));
        return 0;
    }
    if (rc != MDB_NOTFOUND) {
        return rc;
    }
    MDB_stat st;
    if ((rc = mdb_stat(txn, l->receipts, &st)) != 0) {
        return rc;
    }
    if (st.ms_entries > 0) {
        *version = 0;
        return 0;
    }
    uint32_t ours = TRUST_LEDGER_VERSION;
    MDB_val nv = {sizeof(ours), &ours};
    *version = ours;
    return mdb_put(txn, l->info, &k, &nv, 0);
}

static int open_dbis(trust_ledger *l, MDB_txn *txn)
{
    const unsigned idx = MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED;
    int rc;
    if ((rc = mdb_dbi_open(txn, "receipts", MDB_CREATE, &l->receipts)) != 0 ||
        (rc = mdb_dbi_open(txn, "nodes", MDB_CREATE, &l->nodes)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_contract", idx, &l->by_contract)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_requester", idx, &l->by_requester)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_counterpart", idx, &l->by_counterpart)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_time", idx, &l->by_time)) != 0 ||
        (rc = mdb_dbi_open(txn, "ledger_info", MDB_CREATE, &l->info)) != 0 ||
        (rc = mdb_dbi_open(txn, "budgets", MDB_CREATE, &l->budgets)) != 0) {
        return rc;
    }
    return 0;
}

int trust_ledger_open(trust_ledger **out, const char *dir, size_t map_size, bg_errbuf *eb)
{
    trust_ledger *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "%s: out of memory", dir);
    }
    l->db.map_size = map_size ? map_size : DEFAULT_MAP;
    int rc;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = bg_errf(eb, BG_ERR_STORE, "%s: cannot create directory: %s", dir, strerror(errno));
        goto fail_free;
    }
    int mrc = mdb_env_create(&l->db.env);
    if (mrc != 0) {
        rc = bg_errf(eb, mdb_to_bg(mrc), "%s: cannot open ledger: %s", dir, mdb_strerror(mrc));
        goto fail_free;
    }
    MDB_txn *txn = NULL;
    /* MDB_NOTLS: read transactions are not tied to threads (workers share the env). Unlike the
     * contract store, no MDB_NOMETASYNC: an OS crash must not undo a commit whose receipts were
     * acknowledged or covered by a signed checkpoint, or the ledger could later fork. */
    if ((mrc = mdb_env_set_maxdbs(l->db.env, 12)) != 0 ||
        (mrc = mdb_env_set_mapsize(l->db.env, l->db.map_size)) != 0 ||
        (mrc = mdb_env_open(l->db.env, dir, MDB_NOTLS, 0600)) != 0 ||
        (mrc = mdb_txn_begin(l->db.env, NULL, 0, &txn)) != 0) {
        rc = bg_errf(eb, mdb_to_bg(mrc), "%s: cannot open ledger: %s", dir, mdb_strerror(mrc));
        goto fail_env;
    }
    uint32_t version = 0;
    if ((mrc = open_dbis(l, txn)) != 0 || (mrc = check_version(l, txn, &version)) != 0) {
        rc = bg_errf(eb, mdb_to_bg(mrc), "%s: cannot open ledger: %s", dir, mdb_strerror(mrc));
        goto fail_txn;
    }
    if (version != TRUST_LEDGER_VERSION) {
        rc = bg_errf(eb, BG_ERR_STORE,
                     "%s: ledger format version %u, but this build reads version %u: run the "
                     "baygate that wrote it",
                     dir, (unsigned)version, (unsigned)TRUST_LEDGER_VERSION);
        goto fail_txn;
    }
    mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (mrc != 0) {
        rc = bg_errf(eb, mdb_to_bg(mrc), "%s: cannot open ledger: %s", dir, mdb_strerror(mrc));
        goto fail_env;
    }
    l->db.map_size = 0;
    MDB_envinfo info;
    if (mdb_env_info(l->db.env, &info) == 0) {
        l->db.map_size = info.me_mapsize; /* an existing, larger file keeps its size */
    }
    if (l->db.map_size == 0) {
        l->db.map_size = map_size ? map_size : DEFAULT_MAP;
    }
    if ((rc = key_open(l, dir, eb)) != 0) {
        goto fail_env;
    }
    if (pthread_rwlock_init(&l->db.grow, NULL) != 0) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "%s: cannot create a lock", dir);
        goto fail_key;
    }
    *out = l;
    return 0;

fail_key:
    EVP_PKEY_free(l->key);
fail_txn:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
fail_env:
    mdb_env_close(l->db.env);
fail_free:
    free(l);
    return rc;
}

void trust_ledger_close(trust_ledger *l)
{
    if (l == NULL) {
        return;
    }
    mdb_env_close(l->db.env);
    pthread_rwlock_destroy(&l->db.grow);
    EVP_PKEY_free(l->key); /* OpenSSL cleanses Ed25519 private keys when freeing them */
    free(l);
}

static int read_begin(trust_ledger *l, MDB_txn **txn)
{
    return trust_lmdb_read_begin(&l->db, txn);
}

static void read_end(trust_ledger *l, MDB_txn *txn)
{
    trust_lmdb_read_end(&l->db, txn);
}

typedef struct ledger_call {
    trust_ledger *l;
    int (*fn)(trust_ledger *l, MDB_txn *txn, void *arg);
    void *arg;
} ledger_call;

static int ledger_fn(void *arg, MDB_txn *txn)
{
    ledger_call *c = arg;
    return c->fn(c->l, txn, c->arg);
}

/* One write transaction running |fn| (trust_lmdb_write(): on MDB_MAP_FULL the map is doubled
 * and |fn| runs again from the start). |fn| returns 0, an LMDB code or a BG_ERR_* and has no
 * effect outside the transaction. Returns what |fn| or LMDB said, as is. */
static int write_txn(trust_ledger *l, int (*fn)(trust_ledger *l, MDB_txn *txn, void *arg),
                     void *arg)
{
    ledger_call c = {l, fn, arg};
    return trust_lmdb_write(&l->db, ledger_fn, &c, MAX_GROWS);
}

static int tree_size(trust_ledger *l, MDB_txn *txn, uint64_t *size)
{
    MDB_stat st;
    int rc = mdb_stat(txn, l->receipts, &st);
    if (rc == 0) {
        *size = (uint64_t)st.ms_entries;
    }
    return rc;
}

/* ---- The tree over LMDB ---------------------------------------------------------------------- */

/* A view of the stored tree inside one transaction. */
typedef struct tree {
    trust_ledger *l;
    MDB_txn *txn;
    hasher h;
} tree;

/* The node at (level, index) covers leaves [index << level, (index + 1) << level). Its key is
 * its last leaf, then its level: nodes are completed in exactly that order, so every put is an
 * MDB_APPEND, and the hashes of one region of the tree share pages. */
static void node_key(uint8_t k[NODE_KEY_LEN], unsigned level, uint64_t index)
{
    put_be64(k, ((index + 1) << level) - 1);
    k[8] = (uint8_t)level;
}

static int node_get(tree *t, unsigned level, uint64_t index, uint8_t out[HASH])
{
    uint8_t kb[NODE_KEY_LEN];
    node_key(kb, level, index);
    MDB_val k = {sizeof(kb), kb}, v;
    int rc = mdb_get(t->txn, t->l->nodes, &k, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size != HASH)) {
        return MDB_CORRUPTED; /* every complete subtree has its hash */
    }
    if (rc == 0) {
        memcpy(out, v.mv_data, HASH);
    }
    return rc;
}

static int node_put(tree *t, unsigned level, uint64_t index, const uint8_t hash[HASH])
{
    uint8_t kb[NODE_KEY_LEN];
    node_key(kb, level, index);
    MDB_val k = {sizeof(kb), kb}, v = {HASH, mut_bytes(hash)};
    return mdb_put(t->txn, t->l->nodes, &k, &v, MDB_APPEND);
}

/* MTH(D[s:e]) (RFC 6962 section 2.1) from stored nodes: [s, e) is a run of perfect subtrees,
 * largest first, and MTH folds them from the right (D[k:n] is the recursive right part). Every
 * range RFC 6962 asks for starts at a multiple of a power of two >= its length, so each piece
 * is aligned and stored: at most 64 reads. */
static int range_hash(tree *t, uint64_t s, uint64_t e, uint8_t out[HASH])
{
    assert(s < e);
    uint8_t parts[64][HASH];
    size_t n = 0;
    int rc;
    while (s < e) {
        unsigned level = log2_floor(e - s);
        assert((s & (((uint64_t)1 << level) - 1)) == 0);
        if ((rc = node_get(t, level, s >> level, parts[n])) != 0) {
            return rc;
        }
        n++;
        s += (uint64_t)1 << level;
    }
    memcpy(out, parts[n - 1], HASH);
    for (size_t i = n - 1; i-- > 0;) {
        if ((rc = node_hash(&t->h, parts[i], out, out)) != 0) {
            return rc;
        }
    }
    return 0;
}

static int tree_root(tree *t, uint64_t size, uint8_t out[HASH])
{
    return size == 0 ? empty_root(&t->h, out) : range_hash(t, 0, size, out);
}

static int proof_add(tree *t, uint64_t s, uint64_t e, trust_ledger_proof *p)
{
    assert(p->len < TRUST_LEDGER_PROOF_MAX);
    int rc = range_hash(t, s, e, p->hash[p->len]);
    if (rc == 0) {
        p->len++;
    }
    return rc;
}

/* The ranges of a proof, collected top down by the RFC's recursion, are emitted bottom up
 * (the recursion appends after returning): the hash nearest the leaf comes first. */
typedef struct ranges {
    size_t n;
    uint64_t s[TRUST_LEDGER_PROOF_MAX], e[TRUST_LEDGER_PROOF_MAX];
} ranges;

static void ranges_push(ranges *r, uint64_t s, uint64_t e)
{
    assert(r->n < TRUST_LEDGER_PROOF_MAX);
    r->s[r->n] = s;
    r->e[r->n] = e;
    r->n++;
}

static int ranges_emit(tree *t, const ranges *r, trust_ledger_proof *p)
{
    for (size_t i = r->n; i-- > 0;) {
        int rc = proof_add(t, r->s[i], r->e[i], p);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* RFC 6962 section 2.1.1, PATH(m, D[n]), unrolled (depth <= 64):
 *   PATH(m, {d(0)}) = {}
 *   PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])      for m < k
 *   PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])  for m >= k
 * with D[s:e] kept in place (m absolute). Only the first sibling on the way down can be an
 * incomplete subtree (below a left turn all is perfect), so a proof costs O(log n) reads. */
static int path(tree *t, uint64_t m, uint64_t n, trust_ledger_proof *p)
{
    ranges r = {0};
    uint64_t s = 0, e = n;
    while (e - s > 1) {
        uint64_t k = split_point(e - s);
        if (m < s + k) {
            ranges_push(&r, s + k, e);
            e = s + k;
        } else {
            ranges_push(&r, s, s + k);
            s += k;
        }
    }
    return ranges_emit(t, &r, p);
}

/* RFC 6962 section 2.1.2, PROOF(m, D[n]) = SUBPROOF(m, D[n], true) for 0 < m < n, unrolled:
 *   SUBPROOF(m, D[m], true) = {}
 *   SUBPROOF(m, D[m], false) = {MTH(D[m])}
 *   SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          for m <= k
 *   SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  for m > k
 * with D[s:e] kept in place (m relative to s). As for PATH, O(log n) reads. */
static int consistency(tree *t, uint64_t m, uint64_t n, trust_ledger_proof *p)
{
    ranges r = {0};
    uint64_t s = 0, e = n;
    bool b = true;
    while (m != e - s) {
        uint64_t k = split_point(e - s);
        if (m <= k) {
            ranges_push(&r, s + k, e);
            e = s + k;
        } else {
            ranges_push(&r, s, s + k);
            m -= k;
            s += k;
            b = false;
        }
    }
    if (!b) {
        ranges_push(&r, s, e); /* pushed last, so emitted first: the deepest element */
    }
    return ranges_emit(t, &r, p);
}

/* ---- Appending ------------------------------------------------------------------------------ */

typedef struct batch {
    const trust_receipt *in;
    size_t n;
    int64_t now;
    uint64_t *indexes;       /* out, n */
    uint8_t (*hashes)[HASH]; /* out, n */
    trust_receipt *scratch;  /* one receipt being stamped */
    uint8_t *enc;            /* TRUST_RECEIPT_MAX_BYTES */
    const trust_ledger_budget *budgets; /* n, or NULL */
    trust_ledger_budget *bout;          /* out, n (when budgets) */
} batch;

/* Counts receipt |r|'s use of one query of its contract (|limit| in all) in |txn|, or turns it
 * into the refusal it then is; |out| says which. */
static int budget_use(trust_ledger *l, MDB_txn *txn, trust_receipt *r, uint32_t limit,
                      trust_ledger_budget *out)
{
    MDB_val k = {TRUST_RECEIPT_CONTRACT_ID_LEN, r->contract_id}, v;
    uint32_t used = 0;
    int rc = mdb_get(txn, l->budgets, &k, &v);
    if (rc == 0 && v.mv_size == 4) {
        used = get_be32(v.mv_data);
    } else if (rc == 0) {
        return BG_ERR_STORE; /* not ours */
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    if (used >= limit) {
        r->kind = TRUST_RECEIPT_REFUSAL;
        r->decision = TRUST_RECEIPT_REFUSED;
        r->error_code = BG_ERR_BUDGET_EXHAUSTED;
        r->has_result_digest = false;
        memset(r->result_digest, 0, sizeof(r->result_digest));
        r->cells_suppressed = 0;
        *out = (trust_ledger_budget){.limit = limit, .used = 0, .exhausted = true};
        return 0;
    }
    uint8_t vb[4];
    put_be32(vb, ++used);
    MDB_val nv = {4, vb};
    if ((rc = mdb_put(txn, l->budgets, &k, &nv, 0)) != 0) {
        return rc;
    }
    r->queries_used = used;
    *out = (trust_ledger_budget){.limit = limit, .used = used, .exhausted = false};
    return 0;
}

/* Adds |index| under |key| in the dupsort index |dbi|; indexes only grow, so it is always the
 * last duplicate of its key (MDB_APPENDDUP). An empty key is not indexed. */
static int index_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const uint8_t vb[8])
{
    size_t n = strlen(key);
    if (n == 0) {
        return 0;
    }
    MDB_val k = {n, mut_str(key)}, v = {8, mut_bytes(vb)};
    return mdb_put(txn, dbi, &k, &v, MDB_APPENDDUP);
}

/* The time of the last receipt (times never decrease, so the last key of by_time), or 0. */
static int last_time(trust_ledger *l, MDB_txn *txn, int64_t *out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, l->by_time, &cur);
    if (rc != 0) {
        return rc;
    }
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0) {
        uint64_t t = k.mv_size == 8 ? get_be64(k.mv_data) : 0;
        *out = t > INT64_MAX ? INT64_MAX : (int64_t)t;
    } else if (rc == MDB_NOTFOUND) {
        *out = 0;
        rc = 0;
    }
    mdb_cursor_close(cur);
    return rc;
}

/* The whole batch inside one write transaction: 0, an LMDB code or a BG_ERR_*. */
static int do_append(trust_ledger *l, MDB_txn *txn, void *arg)
{
    batch *b = arg;
    tree t = {l, txn, {NULL}};
    int rc = hasher_init(&t.h);
    if (rc != 0) {
        return rc;
    }
    uint64_t size;
    int64_t prev_time;
    if ((rc = tree_size(l, txn, &size)) != 0 || (rc = last_time(l, txn, &prev_time)) != 0) {
        goto done;
    }
    /* The right edge of the tree (a compact range): for each set bit |level| of size, the
     * perfect subtree of that height, left to right. Appending a leaf merges it with the
     * edge's lowest subtrees exactly like a binary increment carries. */
    uint8_t edge[64][HASH];
    uint64_t off = 0;
    for (int level = 63; level >= 0; level--) {
        if ((size >> level) & 1) {
            if ((rc = node_get(&t, (unsigned)level, off >> level, edge[level])) != 0) {
                goto done;
            }
            off += (uint64_t)1 << level;
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        trust_receipt *r = b->scratch;
        *r = b->in[i];
        r->index = size;
        if (r->time_ms == 0) {
            r->time_ms = b->now;
        }
        if (r->time_ms < prev_time) {
            r->time_ms = prev_time; /* a stepped-back clock never reorders the ledger */
        }
        prev_time = r->time_ms;
        if (b->budgets != NULL) {
            b->bout[i] = (trust_ledger_budget){.limit = b->budgets[i].limit};
            if (b->budgets[i].limit > 0 &&
                (rc = budget_use(l, txn, r, b->budgets[i].limit, &b->bout[i])) != 0) {
                goto done;
            }
        }
        size_t len = receipt_pack(r, b->enc);
        uint8_t kb[8];
        put_be64(kb, size);
        MDB_val k = {8, kb}, v = {len, b->enc};
        if ((rc = mdb_put(txn, l->receipts, &k, &v, MDB_APPEND)) != 0) {
            goto done;
        }
        uint8_t h[HASH];
        if ((rc = leaf_hash(&t.h, b->enc, len, h)) != 0) {
            goto done;
        }
        memcpy(b->hashes[i], h, HASH);
        b->indexes[i] = size;
        if ((rc = node_put(&t, 0, size, h)) != 0) {
            goto done;
        }
        unsigned level = 0;
        while ((size >> level) & 1) {
            if ((rc = node_hash(&t.h, edge[level], h, h)) != 0) {
                goto done;
            }
            level++;
            if ((rc = node_put(&t, level, size >> level, h)) != 0) {
                goto done;
            }
        }
        memcpy(edge[level], h, HASH);
        uint8_t tb[8];
        put_be64(tb, (uint64_t)r->time_ms);
        MDB_val tk = {8, tb};
        if ((rc = index_put(txn, l->by_contract, r->contract_id, kb)) != 0 ||
            (rc = index_put(txn, l->by_requester, r->requester, kb)) != 0 ||
            (rc = index_put(txn, l->by_counterpart, r->counterpart_city, kb)) != 0 ||
            (rc = mdb_put(txn, l->by_time, &tk, &k, MDB_APPENDDUP)) != 0) {
            goto done;
        }
        size++;
    }
done:
    hasher_dispose(&t.h);
    return rc;
}

typedef struct sign_arg sign_arg;
static int do_sign(trust_ledger *l, MDB_txn *txn, void *arg);
static int do_append_sign(trust_ledger *l, MDB_txn *txn, void *arg);
static int append_common(trust_ledger *l, const trust_receipt *receipts, size_t n,
                         trust_ledger_budget *budgets, uint64_t *out_indexes,
                         uint8_t (*out_leaf_hashes)[TRUST_LEDGER_HASH_LEN], sign_arg *sign,
                         bg_errbuf *eb);

/* The batch, then (when signing) the checkpoint of the new head, in one transaction. */
typedef struct append_sign {
    void *batch;
    sign_arg *sign;
} append_sign;

int trust_ledger_append_batch(trust_ledger *l, const trust_receipt *receipts, size_t n,
                              uint64_t *out_indexes,
                              uint8_t (*out_leaf_hashes)[TRUST_LEDGER_HASH_LEN], bg_errbuf *eb)
{
    return append_common(l, receipts, n, NULL, out_indexes, out_leaf_hashes, NULL, eb);
}

static int append_common(trust_ledger *l, const trust_receipt *receipts, size_t n,
                         trust_ledger_budget *budgets, uint64_t *out_indexes,
                         uint8_t (*out_leaf_hashes)[TRUST_LEDGER_HASH_LEN], sign_arg *sign,
                         bg_errbuf *eb)
{
    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        bg_errbuf one;
        int rc = trust_receipt_check(&receipts[i], &one);
        if (rc != 0) {
            return bg_errf(eb, rc, "receipt %zu of the batch: %s", i, one.msg);
        }
        if (budgets != NULL && budgets[i].limit > 0 &&
            (receipts[i].contract_id[0] == '\0' || receipts[i].queries_used != 0)) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "receipt %zu of the batch: a budget needs a contract id and no "
                           "queries_used of the caller's", i);
        }
    }
    if (n > SIZE_MAX / (sizeof(uint64_t) + HASH)) {
        return bg_errf(eb, BG_ERR_RANGE, "ledger: a batch of %zu receipts", n);
    }
    batch b = {
        .in = receipts,
        .n = n,
        .now = now_ms(),
        .indexes = malloc(n * sizeof(uint64_t)),
        .hashes = malloc(n * HASH),
        .scratch = malloc(sizeof(trust_receipt)),
        .enc = malloc(TRUST_RECEIPT_MAX_BYTES),
        .budgets = budgets,
        .bout = budgets != NULL ? malloc(n * sizeof(trust_ledger_budget)) : NULL,
    };
    int rc = 0;
    if (b.indexes == NULL || b.hashes == NULL || b.scratch == NULL || b.enc == NULL ||
        (budgets != NULL && b.bout == NULL)) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "ledger: out of memory");
        goto done;
    }
    if (sign != NULL) {
        append_sign as = {&b, sign};
        rc = write_txn(l, do_append_sign, &as);
    } else {
        rc = write_txn(l, do_append, &b);
    }
    if (rc != 0) {
        rc = is_bg_err(rc)
                 ? bg_errf(eb, rc, "ledger: append failed: %s", bg_strerror(rc))
                 : bg_errf(eb, mdb_to_bg(rc), "ledger: append failed: %s", mdb_strerror(rc));
        goto done;
    }
    if (out_indexes != NULL) {
        memcpy(out_indexes, b.indexes, n * sizeof(uint64_t));
    }
    if (out_leaf_hashes != NULL) {
        memcpy(out_leaf_hashes, b.hashes, n * HASH);
    }
    if (budgets != NULL) { /* only now: a retried transaction wrote them again */
        memcpy(budgets, b.bout, n * sizeof(*budgets));
    }
done:
    free(b.bout);
    free(b.indexes);
    free(b.hashes);
    free(b.scratch);
    free(b.enc);
    return rc;
}

/* ---- Reading -------------------------------------------------------------------------------- */

int trust_ledger_size(trust_ledger *l, uint64_t *size)
{
    MDB_txn *txn;
    int rc = read_begin(l, &txn);
    if (rc != 0) {
        return mdb_to_bg(rc);
    }
    rc = tree_size(l, txn, size);
    read_end(l, txn);
    return mdb_to_bg(rc);
}

/* Runs |fn| on the tree inside one read transaction with the current size; converts codes. */
typedef int (*tree_fn)(tree *t, uint64_t size, void *arg);

static int with_tree(trust_ledger *l, tree_fn fn, void *arg)
{
    tree t = {l, NULL, {NULL}};
    if (hasher_init(&t.h) != 0) {
        return BG_ERR_NOMEM;
    }
    int rc = read_begin(l, &t.txn);
    if (rc == 0) {
        uint64_t size;
        rc = tree_size(l, t.txn, &size);
        if (rc == 0) {
            rc = fn(&t, size, arg);
        }
        read_end(l, t.txn);
    }
    hasher_dispose(&t.h);
    return mdb_to_bg(rc);
}

typedef struct root_arg {
    uint64_t size; /* UINT64_MAX: the current size, reported back */
    uint8_t *root;
} root_arg;

static int do_root(tree *t, uint64_t size, void *arg)
{
    root_arg *a = arg;
    if (a->size == UINT64_MAX) {
        a->size = size;
    } else if (a->size > size) {
        return BG_ERR_RANGE;
    }
    uint8_t r[HASH];
    int rc = tree_root(t, a->size, r);
    if (rc == 0) {
        memcpy(a->root, r, HASH);
    }
    return rc;
}

int trust_ledger_root(trust_ledger *l, uint64_t size, uint8_t root[TRUST_LEDGER_HASH_LEN])
{
    if (size == UINT64_MAX) {
        return BG_ERR_RANGE;
    }
    root_arg a = {size, root};
    return with_tree(l, do_root, &a);
}

int trust_ledger_budget_used(trust_ledger *l, const char *contract_id, uint32_t *used)
{
    if (contract_id == NULL || strlen(contract_id) != TRUST_RECEIPT_CONTRACT_ID_LEN ||
        !contract_id_ok(contract_id, TRUST_RECEIPT_CONTRACT_ID_LEN + 1)) {
        return BG_ERR_INVAL;
    }
    MDB_txn *txn;
    int rc = read_begin(l, &txn);
    if (rc != 0) {
        return BG_ERR_STORE;
    }
    MDB_val k = {TRUST_RECEIPT_CONTRACT_ID_LEN, mut_str(contract_id)}, v;
    rc = mdb_get(txn, l->budgets, &k, &v);
    if (rc == 0 && v.mv_size == 4) {
        *used = get_be32(v.mv_data);
    } else if (rc == MDB_NOTFOUND) {
        *used = 0;
        rc = 0;
    } else {
        rc = BG_ERR_STORE;
    }
    read_end(l, txn);
    return rc;
}

int trust_ledger_head(trust_ledger *l, uint64_t *size, uint8_t root[TRUST_LEDGER_HASH_LEN])
{
    root_arg a = {UINT64_MAX, root};
    int rc = with_tree(l, do_root, &a);
    if (rc == 0) {
        *size = a.size;
    }
    return rc;
}

typedef struct proof_arg {
    uint64_t a, b;
    trust_ledger_proof *proof;
} proof_arg;

static int do_inclusion(tree *t, uint64_t size, void *arg)
{
    proof_arg *a = arg;
    if (a->b > size || a->a >= a->b) {
        return BG_ERR_RANGE;
    }
    trust_ledger_proof p;
    p.len = 0;
    int rc = path(t, a->a, a->b, &p);
    if (rc == 0) {
        a->proof->len = p.len;
        memcpy(a->proof->hash, p.hash, p.len * HASH);
    }
    return rc;
}

int trust_ledger_inclusion_proof(trust_ledger *l, uint64_t index, uint64_t tree_size,
                                 trust_ledger_proof *proof)
{
    proof_arg a = {index, tree_size, proof};
    return with_tree(l, do_inclusion, &a);
}

static int do_consistency(tree *t, uint64_t size, void *arg)
{
    proof_arg *a = arg;
    if (a->b > size || a->a > a->b) {
        return BG_ERR_RANGE;
    }
    trust_ledger_proof p;
    p.len = 0;
    int rc = 0;
    if (a->a > 0 && a->a < a->b) {
        rc = consistency(t, a->a, a->b, &p);
    }
    if (rc == 0) {
        a->proof->len = p.len;
        memcpy(a->proof->hash, p.hash, p.len * HASH);
    }
    return rc;
}

int trust_ledger_consistency_proof(trust_ledger *l, uint64_t m, uint64_t n,
                                   trust_ledger_proof *proof)
{
    proof_arg a = {m, n, proof};
    return with_tree(l, do_consistency, &a);
}

int trust_ledger_get(trust_ledger *l, uint64_t index, bg_buf *bytes, trust_receipt *out)
{
    MDB_txn *txn;
    int rc = read_begin(l, &txn);
    if (rc != 0) {
        return mdb_to_bg(rc);
    }
    uint8_t kb[8];
    put_be64(kb, index);
    MDB_val k = {8, kb}, v;
    rc = mdb_get(txn, l->receipts, &k, &v);
    int out_rc = 0;
    if (rc == MDB_NOTFOUND) {
        out_rc = BG_ERR_NOTFOUND;
    } else if (rc != 0) {
        out_rc = mdb_to_bg(rc);
    } else {
        /* copy out (decoding copies) before the transaction ends */
        trust_receipt r;
        r.index = ~index;
        if (out != NULL) {
            out_rc = trust_receipt_decode(&r, v.mv_data, v.mv_size, NULL);
            if (out_rc != BG_ERR_NOMEM && (out_rc != 0 || r.index != index)) {
                out_rc = BG_ERR_STORE; /* corrupt or tampered: trust_ledger_verify() says where */
            }
        }
        if (out_rc == 0 && bytes != NULL) {
            out_rc = bg_buf_append(bytes, v.mv_data, v.mv_size);
        }
        if (out_rc == 0 && out != NULL) {
            *out = r;
        }
    }
    read_end(l, txn);
    return out_rc;
}

/* ---- Queries over the secondary indexes ----------------------------------------------------- */

/* The first index whose time is >= |t|, or |size| when none. Times never decrease along the
 * ledger, so that is the smallest index under the first time key >= t (MDB_SET_RANGE lands
 * on the first duplicate, and duplicates are sorted). */
static int index_at_time(trust_ledger *l, MDB_txn *txn, int64_t t, uint64_t size, uint64_t *out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, l->by_time, &cur);
    if (rc != 0) {
        return rc;
    }
    uint8_t tb[8];
    put_be64(tb, (uint64_t)t);
    MDB_val k = {8, tb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0) {
        if (v.mv_size != 8) {
            rc = MDB_CORRUPTED;
        } else {
            *out = get_be64(v.mv_data);
        }
    } else if (rc == MDB_NOTFOUND) {
        *out = size;
        rc = 0;
    }
    mdb_cursor_close(cur);
    return rc;
}

typedef struct key_filter {
    MDB_dbi dbi;
    MDB_val key;
    MDB_cursor *cur;
    size_t count; /* receipts under the key */
} key_filter;

/* Fills |out| for a query in |txn|; see trust_ledger_query(). Returns 0 or an LMDB code. */
static int do_query(trust_ledger *l, MDB_txn *txn, const trust_ledger_filter *f, uint64_t start,
                    size_t limit, uint64_t *out, size_t *found, uint64_t *next)
{
    uint64_t size, lo = start, hi;
    int rc = tree_size(l, txn, &size);
    if (rc != 0) {
        return rc;
    }
    hi = size;
    key_filter keys[3];
    size_t nkeys = 0;
    if (f != NULL) {
        uint64_t at;
        if (f->time_from > 0) {
            if ((rc = index_at_time(l, txn, f->time_from, size, &at)) != 0) {
                return rc;
            }
            lo = at > lo ? at : lo;
        }
        if (f->time_until > 0) {
            if ((rc = index_at_time(l, txn, f->time_until, size, &at)) != 0) {
                return rc;
            }
            hi = at < hi ? at : hi;
        }
        const struct {
            const char *value;
            MDB_dbi dbi;
        } given[3] = {{f->contract_id, l->by_contract},
                      {f->requester, l->by_requester},
                      {f->counterpart_city, l->by_counterpart}};
        for (size_t i = 0; i < 3; i++) {
            if (given[i].value != NULL && given[i].value[0] != '\0') {
                keys[nkeys].dbi = given[i].dbi;
                keys[nkeys].key.mv_size = strlen(given[i].value);
                keys[nkeys].key.mv_data = mut_str(given[i].value);
                keys[nkeys].cur = NULL;
                nkeys++;
            }
        }
    }
    *found = 0;
    *next = hi > start ? hi : start;
    size_t driver = 0;
    for (size_t i = 0; i < nkeys && rc == 0; i++) {
        MDB_val v;
        if ((rc = mdb_cursor_open(txn, keys[i].dbi, &keys[i].cur)) != 0) {
            break;
        }
        rc = mdb_cursor_get(keys[i].cur, &keys[i].key, &v, MDB_SET);
        if (rc == 0) {
            rc = mdb_cursor_count(keys[i].cur, &keys[i].count);
            if (keys[i].count < keys[driver].count) {
                driver = i;
            }
        }
    }
    if (rc == MDB_NOTFOUND) {
        rc = 0; /* a key nobody has: no match */
        lo = hi;
    }
    if (rc == 0 && lo < hi) {
        if (nkeys == 0) {
            for (uint64_t i = lo; i < hi && *found < limit; i++) {
                out[(*found)++] = i;
            }
        } else {
            /* Walk the rarest key's indexes from |lo| (duplicates are sorted big-endian
             * indexes) and probe the other keys for each: O(rarest) reads, never a scan. */
            key_filter *d = &keys[driver];
            uint8_t lb[8];
            put_be64(lb, lo);
            MDB_val v = {8, lb};
            rc = mdb_cursor_get(d->cur, &d->key, &v, MDB_GET_BOTH_RANGE);
            while (rc == 0 && *found < limit) {
                if (v.mv_size != 8) {
                    rc = MDB_CORRUPTED;
                    break;
                }
                uint64_t idx = get_be64(v.mv_data);
                if (idx >= hi) {
                    break;
                }
                bool match = true;
                for (size_t i = 0; i < nkeys && match && rc == 0; i++) {
                    if (i == driver) {
                        continue;
                    }
                    MDB_val pv = {8, v.mv_data};
                    rc = mdb_cursor_get(keys[i].cur, &keys[i].key, &pv, MDB_GET_BOTH);
                    if (rc == MDB_NOTFOUND) {
                        match = false;
                        rc = 0;
                    }
                }
                if (rc != 0) {
                    break;
                }
                if (match) {
                    out[(*found)++] = idx;
                }
                rc = mdb_cursor_get(d->cur, &d->key, &v, MDB_NEXT_DUP);
            }
            if (rc == MDB_NOTFOUND) {
                rc = 0;
            }
        }
        if (rc == 0 && *found == limit && limit > 0) {
            *next = out[limit - 1] + 1;
        }
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (keys[i].cur != NULL) {
            mdb_cursor_close(keys[i].cur);
        }
    }
    return rc;
}

int trust_ledger_query(trust_ledger *l, const trust_ledger_filter *f, uint64_t start, size_t limit,
                       uint64_t *out, size_t *n, uint64_t *next)
{
    MDB_txn *txn;
    int rc = read_begin(l, &txn);
    if (rc != 0) {
        return mdb_to_bg(rc);
    }
    size_t found = 0;
    uint64_t nx = start;
    rc = do_query(l, txn, f, start, limit, out, &found, &nx);
    read_end(l, txn);
    if (rc == 0) {
        *n = found;
        *next = nx;
    }
    return mdb_to_bg(rc);
}

/* ---- Proof verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2), pure ---------------------- */

int trust_ledger_verify_inclusion(const uint8_t leaf_hash[TRUST_LEDGER_HASH_LEN], uint64_t index,
                                  uint64_t size, const uint8_t (*proof)[TRUST_LEDGER_HASH_LEN],
                                  size_t proof_len, const uint8_t root[TRUST_LEDGER_HASH_LEN])
{
    /* 1. Compare leaf_index against tree_size. If leaf_index >= tree_size, fail. */
    if (index >= size || proof_len > TRUST_LEDGER_PROOF_MAX || (proof_len > 0 && proof == NULL)) {
        return BG_ERR_SIGNATURE;
    }
    hasher h;
    if (hasher_init(&h) != 0) {
        return BG_ERR_NOMEM;
    }
    /* 2. Set fn to leaf_index and sn to tree_size - 1. 3. Set r to hash. */
    uint64_t fn = index, sn = size - 1;
    uint8_t r[HASH];
    memcpy(r, leaf_hash, HASH);
    int rc = 0;
    /* 4. For each value p in the inclusion_path array: */
    for (size_t i = 0; i < proof_len && rc == 0; i++) {
        /* a. If sn is 0, then stop the iteration and fail the proof verification. */
        if (sn == 0) {
            rc = BG_ERR_SIGNATURE;
            break;
        }
        /* b. If LSB(fn) is set, or if fn is equal to sn, then: */
        if ((fn & 1) != 0 || fn == sn) {
            /* i. Set r to HASH(0x01 || p || r). */
            rc = node_hash(&h, proof[i], r, r);
            /* ii. If LSB(fn) is not set, then right-shift both fn and sn equally until either
             * LSB(fn) is set or fn is 0. */
            while ((fn & 1) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            /* Otherwise: i. Set r to HASH(0x01 || r || p). */
            rc = node_hash(&h, r, proof[i], r);
        }
        /* c. Finally, right-shift both fn and sn one time. */
        fn >>= 1;
        sn >>= 1;
    }
    hasher_dispose(&h);
    if (rc != 0) {
        return rc;
    }
    /* 5. Compare sn to 0. Compare r against the root_hash. If sn is equal to 0 and r and the
     * root_hash are equal, then the log has proven the inclusion of hash. */
    return sn == 0 && CRYPTO_memcmp(r, root, HASH) == 0 ? 0 : BG_ERR_SIGNATURE;
}

int trust_ledger_verify_consistency(uint64_t m, uint64_t n,
                                    const uint8_t root_m[TRUST_LEDGER_HASH_LEN],
                                    const uint8_t root_n[TRUST_LEDGER_HASH_LEN],
                                    const uint8_t (*proof)[TRUST_LEDGER_HASH_LEN], size_t proof_len)
{
    if (m > n || proof_len > TRUST_LEDGER_PROOF_MAX || (proof_len > 0 && proof == NULL)) {
        return BG_ERR_SIGNATURE;
    }
    if (m == n) { /* the same tree: nothing to prove but equal roots */
        return proof_len == 0 && CRYPTO_memcmp(root_m, root_n, HASH) == 0 ? 0 : BG_ERR_SIGNATURE;
    }
    if (m == 0) { /* every tree extends the empty one */
        return proof_len == 0 ? 0 : BG_ERR_SIGNATURE;
    }
    /* 0 < first < second from here on. 1. If consistency_path is an empty array, stop and
     * fail the proof verification. */
    if (proof_len == 0) {
        return BG_ERR_SIGNATURE;
    }
    /* 2. If first is an exact power of 2, then prepend first_hash to the consistency_path
     * array: path[j] is root_m for j == 0 then, else proof[j - skip]. */
    size_t skip = (m & (m - 1)) == 0 ? 1 : 0;
    size_t total = proof_len + skip;
    hasher h;
    if (hasher_init(&h) != 0) {
        return BG_ERR_NOMEM;
    }
    /* 3. Set fn to first - 1 and sn to second - 1. */
    uint64_t fn = m - 1, sn = n - 1;
    /* 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set. */
    while ((fn & 1) != 0) {
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. Set both fr and sr to the first value in the consistency_path array. */
    uint8_t fr[HASH], sr[HASH];
    memcpy(fr, skip ? root_m : proof[0], HASH);
    memcpy(sr, fr, HASH);
    int rc = 0;
    /* 6. For each subsequent value c in the consistency_path array: */
    for (size_t j = 1; j < total && rc == 0; j++) {
        const uint8_t *c = proof[j - skip];
        /* a. If sn is 0, then stop the iteration and fail the proof verification. */
        if (sn == 0) {
            rc = BG_ERR_SIGNATURE;
            break;
        }
        /* b. If LSB(fn) is set, or if fn is equal to sn, then: */
        if ((fn & 1) != 0 || fn == sn) {
            /* i. Set fr to HASH(0x01 || c || fr). Set sr to HASH(0x01 || c || sr). */
            if ((rc = node_hash(&h, c, fr, fr)) == 0) {
                rc = node_hash(&h, c, sr, sr);
            }
            /* ii. If LSB(fn) is not set, then right-shift both fn and sn equally until either
             * LSB(fn) is set or fn is 0. */
            while ((fn & 1) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            /* Otherwise: i. Set sr to HASH(0x01 || sr || c). */
            rc = node_hash(&h, sr, c, sr);
        }
        /* c. Finally, right-shift both fn and sn one time. */
        fn >>= 1;
        sn >>= 1;
    }
    hasher_dispose(&h);
    if (rc != 0) {
        return rc;
    }
    /* 7. Verify that the fr calculated is equal to the first_hash supplied, that the sr
     * calculated is equal to the second_hash supplied, and that sn is 0. */
    return sn == 0 && CRYPTO_memcmp(fr, root_m, HASH) == 0 && CRYPTO_memcmp(sr, root_n, HASH) == 0
               ? 0
               : BG_ERR_SIGNATURE;
}

/* ---- Signed notes and checkpoints (c2sp.org/signed-note, c2sp.org/tlog-checkpoint) ---------- */

#define NAME_MAX_LEN 255 /* a verifier key's name */

int trust_ledger_origin(const char *city, char *out, size_t cap)
{
    if (city == NULL || !bg_city_id_valid(city, strlen(city))) {
        return BG_ERR_INVAL;
    }
    int n = snprintf(out, cap, "%s%s", city, origin_suffix);
    return n > 0 && (size_t)n < cap ? 0 : BG_ERR_INVAL;
}

/* key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4] */
static int key_id(const char *name, size_t nlen, const uint8_t pub[ED25519_LEN], uint8_t id[4])
{
    static const uint8_t sep[2] = {0x0a, SIG_TYPE_ED25519};
    hasher h;
    if (hasher_init(&h) != 0) {
        return BG_ERR_NOMEM;
    }
    uint8_t d[HASH];
    unsigned int len = 0;
    int ok = EVP_DigestInit_ex(h.ctx, sha256_md(), NULL) && EVP_DigestUpdate(h.ctx, name, nlen) &&
             EVP_DigestUpdate(h.ctx, sep, sizeof(sep)) &&
             EVP_DigestUpdate(h.ctx, pub, ED25519_LEN) && EVP_DigestFinal_ex(h.ctx, d, &len);
    hasher_dispose(&h);
    if (!ok) {
        ERR_clear_error();
        return BG_ERR_NOMEM;
    }
    memcpy(id, d, 4);
    return 0;
}

/* A key name as baygate accepts it in a verifier key: printable ASCII without space or '+'
 * (the signed-note spec allows any non-space UTF-8; we never need more). */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '+') {
            return false;
        }
    }
    return true;
}

typedef struct vkey {
    char name[NAME_MAX_LEN + 1];
    size_t name_len;
    uint8_t id[4];
    uint8_t pub[ED25519_LEN];
} vkey;

/* Parses "<name>+<8 hex key id>+<base64(0x01 || 32-byte key)>" and checks that the id is the
 * key's. Returns 0 or BG_ERR_INVAL. */
static int vkey_parse(const char *s, vkey *k)
{
    if (s == NULL) {
        return BG_ERR_INVAL;
    }
    const char *plus = strchr(s, '+');
    if (plus == NULL || !name_ok(s, (size_t)(plus - s))) {
        return BG_ERR_INVAL;
    }
    k->name_len = (size_t)(plus - s);
    memcpy(k->name, s, k->name_len);
    k->name[k->name_len] = '\0';
    const char *hex = plus + 1;
    for (size_t i = 0; i < 8; i++) {
        int hi = hex_value(hex[i]);
        if (hi < 0) {
            return BG_ERR_INVAL;
        }
        if (i % 2 == 1) {
            k->id[i / 2] = (uint8_t)((hex_value(hex[i - 1]) << 4) | hi);
        }
    }
    if (hex[8] != '+') {
        return BG_ERR_INVAL;
    }
    const char *b64 = hex + 9;
    uint8_t raw[1 + ED25519_LEN + 3];
    size_t rawlen;
    if (!trust_b64_decode(b64, strlen(b64), raw, sizeof(raw), &rawlen) ||
        rawlen != 1 + ED25519_LEN || raw[0] != SIG_TYPE_ED25519) {
        return BG_ERR_INVAL; /* another signature type, or not a key */
    }
    memcpy(k->pub, raw + 1, ED25519_LEN);
    uint8_t want[4];
    if (key_id(k->name, k->name_len, k->pub, want) != 0 || memcmp(want, k->id, 4) != 0) {
        return BG_ERR_INVAL; /* the id does not name this key */
    }
    return 0;
}

static bool ed25519_verify(const uint8_t pub[ED25519_LEN], const uint8_t *sig, const uint8_t *msg,
                           size_t len)
{
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, ED25519_LEN);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = pk != NULL && ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
              EVP_DigestVerify(ctx, sig, ED25519_SIG_LEN, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return ok;
}

int trust_ledger_note_verify(const uint8_t *note, size_t len, const char *vkey_str,
                             size_t *text_len)
{
    vkey k;
    if (vkey_parse(vkey_str, &k) != 0) {
        return BG_ERR_INVAL;
    }
    if (note == NULL || len < 2 || len > NOTE_MAX || !utf8_check(note, len, true)) {
        return BG_ERR_SIGNATURE;
    }
    /* The text ends at the last blank line: it may contain blank lines, signatures cannot. */
    size_t split = len - 1;
    while (split > 0 && !(note[split - 1] == '\n' && note[split] == '\n')) {
        split--;
    }
    if (split == 0) {
        return BG_ERR_SIGNATURE;
    }
    size_t tlen = split; /* the text, including its final newline */
    size_t pos = split + 1;
    if (pos >= len || note[len - 1] != '\n') {
        return BG_ERR_SIGNATURE; /* no signature lines, or the last is not terminated */
    }
    uint8_t *dec = malloc(len);
    if (dec == NULL) {
        return BG_ERR_NOMEM;
    }
    int rc = BG_ERR_SIGNATURE;
    bool verified = false;
    size_t lines = 0;
    while (pos < len) {
        const uint8_t *line = note + pos;
        const uint8_t *eol = memchr(line, '\n', len - pos);
        assert(eol != NULL); /* the note ends in a newline */
        size_t ll = (size_t)(eol - line);
        pos += ll + 1;
        /* "— " name " " base64 */
        if (++lines > NOTE_SIGS_MAX || ll < sizeof(sig_prefix) + 3 ||
            memcmp(line, sig_prefix, sizeof(sig_prefix)) != 0) {
            goto done;
        }
        const uint8_t *name = line + sizeof(sig_prefix);
        const uint8_t *sp = memchr(name, ' ', ll - sizeof(sig_prefix));
        if (sp == NULL || sp == name || memchr(name, '+', (size_t)(sp - name)) != NULL) {
            goto done;
        }
        size_t nl = (size_t)(sp - name);
        const uint8_t *b64 = sp + 1;
        size_t bl = (size_t)(eol - b64);
        size_t dl;
        if (!trust_b64_decode((const char *)b64, bl, dec, len, &dl) || dl < 5) {
            goto done; /* a malformed line makes the note malformed, known key or not */
        }
        if (nl != k.name_len || memcmp(name, k.name, nl) != 0 || memcmp(dec, k.id, 4) != 0) {
            continue; /* another key's signature: ignored, as the spec requires */
        }
        /* our key: it must verify, or the whole note is rejected */
        if (dl != 4 + ED25519_SIG_LEN || !ed25519_verify(k.pub, dec + 4, note, tlen)) {
            goto done;
        }
        verified = true;
    }
    if (verified) {
        rc = 0;
        if (text_len != NULL) {
            *text_len = tlen;
        }
    }
done:
    free(dec);
    return rc;
}

int trust_ledger_checkpoint_parse(const uint8_t *text, size_t len, trust_ledger_checkpoint *out)
{
    if (text == NULL || len == 0 || text[len - 1] != '\n') {
        return BG_ERR_INVAL;
    }
    trust_ledger_checkpoint c;
    memset(&c, 0, sizeof(c));
    size_t pos = 0, line = 0;
    while (pos < len) {
        const uint8_t *s = text + pos;
        const uint8_t *eol = memchr(s, '\n', len - pos);
        size_t n = (size_t)(eol - s);
        pos += n + 1;
        if (n == 0) {
            return BG_ERR_INVAL; /* no line is empty, extension lines included */
        }
        if (line == 0) {
            if (n > TRUST_LEDGER_ORIGIN_MAX || !text_ok((const char *)s, n)) {
                return BG_ERR_INVAL;
            }
            memcpy(c.origin, s, n);
            c.origin[n] = '\0';
        } else if (line == 1) {
            /* ASCII decimal, no leading zeroes (unless the tree is empty) */
            if ((s[0] == '0' && n > 1) || n > 20) {
                return BG_ERR_INVAL;
            }
            uint64_t v = 0;
            for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9') {
                    return BG_ERR_INVAL;
                }
                uint64_t d = (uint64_t)(s[i] - '0');
                if (v > (UINT64_MAX - d) / 10) {
                    return BG_ERR_INVAL;
                }
                v = v * 10 + d;
            }
            c.size = v;
        } else if (line == 2) {
            uint8_t root[HASH + 3];
            size_t rl;
            if (!trust_b64_decode((const char *)s, n, root, sizeof(root), &rl) || rl != HASH) {
                return BG_ERR_INVAL;
            }
            memcpy(c.root, root, HASH);
        }
        line++;
    }
    if (line < 3) {
        return BG_ERR_INVAL;
    }
    *out = c;
    return 0;
}

int trust_ledger_checkpoint_verify(const uint8_t *note, size_t len, const char *vkey_str,
                                   trust_ledger_checkpoint *out)
{
    size_t tlen;
    int rc = trust_ledger_note_verify(note, len, vkey_str, &tlen);
    if (rc != 0) {
        return rc;
    }
    trust_ledger_checkpoint c;
    if (trust_ledger_checkpoint_parse(note, tlen, &c) != 0) {
        return BG_ERR_SIGNATURE;
    }
    const char *plus = strchr(vkey_str, '+'); /* vkey_parse() found it */
    size_t nl = (size_t)(plus - vkey_str);
    if (strlen(c.origin) != nl || memcmp(c.origin, vkey_str, nl) != 0) {
        return BG_ERR_SIGNATURE; /* signed by the right key, but for another log */
    }
    *out = c;
    return 0;
}

/* Appends the verifier key of the ledger's key under the name |origin|. */
static int vkey_append(trust_ledger *l, const char *origin, bg_buf *out)
{
    uint8_t id[4];
    int rc = key_id(origin, strlen(origin), l->pub, id);
    if (rc != 0) {
        return rc;
    }
    uint8_t raw[1 + ED25519_LEN];
    raw[0] = SIG_TYPE_ED25519;
    memcpy(raw + 1, l->pub, ED25519_LEN);
    size_t mark = out->len;
    rc = bg_buf_appendf(out, "%s+%02x%02x%02x%02x+", origin, id[0], id[1], id[2], id[3]);
    if (rc == 0) {
        rc = trust_b64_append(out, raw, sizeof(raw));
    }
    if (rc != 0) {
        out->len = mark; /* unchanged on failure */
        if (out->data != NULL) {
            out->data[mark] = 0;
        }
    }
    return rc;
}

int trust_ledger_verifier_key(trust_ledger *l, const char *city, bg_buf *out)
{
    char origin[TRUST_LEDGER_ORIGIN_MAX + 1];
    int rc = trust_ledger_origin(city, origin, sizeof(origin));
    return rc != 0 ? rc : vkey_append(l, origin, out);
}

/* Appends the signed note of a checkpoint of the tree of |size| leaves with |root|. */
static int note_build(trust_ledger *l, const char *origin, uint64_t size, const uint8_t root[HASH],
                      bg_buf *note)
{
    char num[24];
    bg_fmt_u64(num, size);
    int rc = bg_buf_appendf(note, "%s\n%s\n", origin, num);
    if (rc == 0) {
        rc = trust_b64_append(note, root, HASH);
    }
    if (rc == 0) {
        rc = bg_buf_append(note, "\n", 1);
    }
    if (rc != 0) {
        return rc;
    }
    size_t tlen = note->len;
    uint8_t blob[4 + ED25519_SIG_LEN];
    size_t siglen = ED25519_SIG_LEN;
    if ((rc = key_id(origin, strlen(origin), l->pub, blob)) != 0) {
        return rc;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, l->key) == 1 &&
              EVP_DigestSign(ctx, blob + 4, &siglen, note->data, tlen) == 1 &&
              siglen == ED25519_SIG_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return BG_ERR_TLS;
    }
    /* the blank line, then "— <name> <base64(key id || signature)>\n" */
    if ((rc = bg_buf_append(note, "\n", 1)) != 0 ||
        (rc = bg_buf_append(note, sig_prefix, sizeof(sig_prefix))) != 0 ||
        (rc = bg_buf_appendf(note, "%s ", origin)) != 0 ||
        (rc = trust_b64_append(note, blob, sizeof(blob))) != 0) {
        return rc;
    }
    return bg_buf_append(note, "\n", 1);
}

struct sign_arg {
    const char *origin;
    bg_buf note; /* built inside the transaction */
    uint64_t size;
};

static int do_sign(trust_ledger *l, MDB_txn *txn, void *arg)
{
    sign_arg *a = arg;
    tree t = {l, txn, {NULL}};
    int rc = hasher_init(&t.h);
    if (rc != 0) {
        return rc;
    }
    uint8_t root[HASH];
    bg_buf_reset(&a->note); /* a retry after map growth starts over */
    if ((rc = tree_size(l, txn, &a->size)) == 0 && (rc = tree_root(&t, a->size, root)) == 0 &&
        (rc = note_build(l, a->origin, a->size, root, &a->note)) == 0) {
        MDB_val k = {sizeof(checkpoint_key) - 1, mut_str(checkpoint_key)};
        MDB_val v = {a->note.len, a->note.data};
        rc = mdb_put(txn, l->info, &k, &v, 0);
    }
    hasher_dispose(&t.h);
    return rc;
}

static int do_append_sign(trust_ledger *l, MDB_txn *txn, void *arg)
{
    append_sign *a = arg;
    int rc = do_append(l, txn, a->batch);
    return rc != 0 ? rc : do_sign(l, txn, a->sign);
}

int trust_ledger_append_signed(trust_ledger *l, const trust_receipt *receipts, size_t n,
                               trust_ledger_budget *budgets, uint64_t *out_indexes,
                               uint8_t (*out_leaf_hashes)[TRUST_LEDGER_HASH_LEN],
                               const char *city, bg_buf *note, bg_errbuf *eb)
{
    char origin[TRUST_LEDGER_ORIGIN_MAX + 1];
    if (trust_ledger_origin(city, origin, sizeof(origin)) != 0) {
        return bg_errf(eb, BG_ERR_INVAL, "ledger: invalid city");
    }
    sign_arg a = {.origin = origin};
    bg_buf_init(&a.note);
    int rc = append_common(l, receipts, n, budgets, out_indexes, out_leaf_hashes, &a, eb);
    if (rc == 0 && note != NULL) {
        rc = bg_buf_append(note, a.note.data, a.note.len);
    }
    bg_buf_dispose(&a.note);
    return rc;
}

int trust_ledger_checkpoint_sign(trust_ledger *l, const char *city, bg_buf *note, uint64_t *size)
{
    char origin[TRUST_LEDGER_ORIGIN_MAX + 1];
    if (trust_ledger_origin(city, origin, sizeof(origin)) != 0) {
        return BG_ERR_INVAL;
    }
    sign_arg a = {.origin = origin};
    bg_buf_init(&a.note);
    int rc = mdb_to_bg(write_txn(l, do_sign, &a));
    if (rc == 0) {
        rc = bg_buf_append(note, a.note.data, a.note.len);
    }
    if (rc == 0 && size != NULL) {
        *size = a.size;
    }
    bg_buf_dispose(&a.note);
    return rc;
}

/* Reads the stored checkpoint note into |note|; MDB_NOTFOUND when none. */
static int checkpoint_get(trust_ledger *l, MDB_txn *txn, bg_buf *note)
{
    MDB_val k = {sizeof(checkpoint_key) - 1, mut_str(checkpoint_key)}, v;
    int rc = mdb_get(txn, l->info, &k, &v);
    if (rc == 0) {
        rc = bg_buf_append(note, v.mv_data, v.mv_size);
    }
    return rc;
}

int trust_ledger_checkpoint_last(trust_ledger *l, bg_buf *note)
{
    MDB_txn *txn;
    int rc = read_begin(l, &txn);
    if (rc != 0) {
        return mdb_to_bg(rc);
    }
    rc = checkpoint_get(l, txn, note);
    read_end(l, txn);
    return rc == MDB_NOTFOUND ? BG_ERR_NOTFOUND : mdb_to_bg(rc);
}

/* ---- Integrity --------------------------------------------------------------------------------
 */

#define BAD_NODES_MAX 256

typedef struct verify_arg {
    bool full;
    bool bad;           /* something does not match */
    uint64_t bad_index; /* the first receipt it concerns, UINT64_MAX when none */
    /* Nodes found wrong, so that their parents are not blamed too: a parent that disagrees
     * with a wrong child says nothing about itself. Past the bound, parents are blamed (the
     * index named is then a lower bound). */
    size_t nbad_nodes;
    struct {
        unsigned level;
        uint64_t index;
    } bad_nodes[BAD_NODES_MAX];
} verify_arg;

static void mark_bad(verify_arg *a, uint64_t index)
{
    a->bad = true;
    if (index < a->bad_index) {
        a->bad_index = index;
    }
}

/* Remembers a wrong node, or (|blame| false) one above a wrong node, whose own state is
 * unknown. */
static void mark_bad_node(verify_arg *a, unsigned level, uint64_t index, bool blame)
{
    if (blame) {
        mark_bad(a, index << level);
    }
    if (a->nbad_nodes < BAD_NODES_MAX) {
        a->bad_nodes[a->nbad_nodes].level = level;
        a->bad_nodes[a->nbad_nodes].index = index;
        a->nbad_nodes++;
    }
}

static bool node_is_bad(const verify_arg *a, unsigned level, uint64_t index)
{
    for (size_t i = 0; i < a->nbad_nodes; i++) {
        if (a->bad_nodes[i].level == level && a->bad_nodes[i].index == index) {
            return true;
        }
    }
    return false;
}

/* Rehashes the receipts [from, size) and compares each with its stored leaf hash. */
static int verify_leaves(tree *t, uint64_t from, uint64_t size, verify_arg *a)
{
    if (from >= size) {
        return 0;
    }
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->l->receipts, &cur);
    if (rc != 0) {
        return rc;
    }
    uint8_t kb[8];
    put_be64(kb, from);
    MDB_val k = {8, kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (uint64_t i = from; i < size; i++) {
        if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != 8 || get_be64(k.mv_data) != i))) {
            mark_bad(a, i); /* a hole (or a stray key): the rest is misnumbered */
            rc = 0;
            break;
        }
        if (rc != 0) {
            break;
        }
        uint8_t want[HASH], got[HASH];
        if ((rc = leaf_hash(&t->h, v.mv_data, v.mv_size, want)) != 0) {
            break;
        }
        rc = node_get(t, 0, i, got);
        if (rc == MDB_CORRUPTED || (rc == 0 && memcmp(want, got, HASH) != 0)) {
            mark_bad_node(a, 0, i, true);
        } else if (rc != 0) {
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Recomputes every stored node above level 0 whose leaves reach |from| or beyond from its two
 * children, bottom up: in full mode (from 0) the whole tree, otherwise the nodes over the
 * recent window, which include the path from it to the root. */
static int verify_nodes(tree *t, uint64_t from, uint64_t size, verify_arg *a)
{
    for (unsigned level = 1; level < 64 && (size >> level) > 0; level++) {
        for (uint64_t j = from >> level; j < (size >> level); j++) {
            if (a->nbad_nodes > 0 && a->nbad_nodes < BAD_NODES_MAX &&
                (node_is_bad(a, level - 1, 2 * j) || node_is_bad(a, level - 1, 2 * j + 1))) {
                mark_bad_node(a, level, j, false); /* the child is to blame */
                continue;
            }
            uint8_t left[HASH], right[HASH], got[HASH];
            int rc = node_get(t, level - 1, 2 * j, left);
            if (rc == 0) {
                rc = node_get(t, level - 1, 2 * j + 1, right);
            }
            if (rc == 0) {
                rc = node_get(t, level, j, got);
            }
            if (rc == 0) {
                if ((rc = node_hash(&t->h, left, right, left)) != 0) {
                    return rc;
                }
                if (memcmp(left, got, HASH) != 0) {
                    mark_bad_node(a, level, j, true);
                }
            } else if (rc == MDB_CORRUPTED) {
                mark_bad_node(a, level, j, true);
            } else {
                return rc;
            }
        }
    }
    return 0;
}

/* Checks the last stored checkpoint: its signature by our key (under its own origin), and its
 * root against the tree at its size. */
static int verify_checkpoint(tree *t, uint64_t size, verify_arg *a)
{
    bg_buf note, vk;
    bg_buf_init(&note);
    bg_buf_init(&vk);
    int rc = checkpoint_get(t->l, t->txn, &note);
    if (rc == MDB_NOTFOUND) {
        return 0; /* never signed: the tree is all there is to check */
    }
    trust_ledger_checkpoint c;
    char origin[TRUST_LEDGER_ORIGIN_MAX + 1];
    const uint8_t *eol = rc == 0 ? memchr(note.data, '\n', note.len) : NULL;
    if (rc != 0) {
        goto done;
    }
    size_t ol = eol != NULL ? (size_t)(eol - note.data) : 0;
    if (ol == 0 || ol > TRUST_LEDGER_ORIGIN_MAX) {
        a->bad = true;
        goto done;
    }
    memcpy(origin, note.data, ol);
    origin[ol] = '\0';
    if ((rc = vkey_append(t->l, origin, &vk)) != 0) {
        goto done;
    }
    rc = trust_ledger_checkpoint_verify(note.data, note.len, (const char *)vk.data, &c);
    if (rc == BG_ERR_NOMEM) {
        goto done;
    }
    if (rc != 0) {
        rc = 0;
        a->bad = true; /* the stored checkpoint was altered */
        goto done;
    }
    if (c.size > size) {
        mark_bad(a, size); /* receipts the checkpoint covers are gone */
        goto done;
    }
    uint8_t root[HASH];
    rc = tree_root(t, c.size, root);
    if (rc == MDB_CORRUPTED || (rc == 0 && memcmp(root, c.root, HASH) != 0)) {
        rc = 0;
        a->bad = true;
    }
done:
    bg_buf_dispose(&note);
    bg_buf_dispose(&vk);
    return rc;
}

/* Full check of the query counts: for every contract with receipts, the receipts that used a
 * query carry 1, 2, ... in index order, and the stored count is the last of them; a stored
 * count for a contract without receipts must be 0. A count set back (or forward) by hand, a
 * queries_used altered, or a receipt of the sequence deleted is named. */
static int verify_budgets(tree *t, uint64_t size, verify_arg *a)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->l->by_contract, &cur);
    if (rc != 0) {
        return rc;
    }
    trust_receipt *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        mdb_cursor_close(cur);
        return BG_ERR_NOMEM;
    }
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        MDB_val ck = k; /* the contract id: valid while the txn is */
        uint32_t seen = 0;
        uint64_t last = UINT64_MAX;
        for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
            uint64_t i = v.mv_size == 8 ? get_be64(v.mv_data) : UINT64_MAX;
            if (i >= size) {
                continue; /* verify_leaves() judges the receipts themselves */
            }
            uint8_t kb[8];
            put_be64(kb, i);
            MDB_val rk = {8, kb}, rv;
            if (mdb_get(t->txn, t->l->receipts, &rk, &rv) != 0 ||
                trust_receipt_decode(r, rv.mv_data, rv.mv_size, NULL) != 0) {
                continue; /* idem */
            }
            if (r->queries_used > 0) {
                if (r->queries_used != seen + 1 || ck.mv_size != TRUST_RECEIPT_CONTRACT_ID_LEN ||
                    memcmp(r->contract_id, ck.mv_data, ck.mv_size) != 0) {
                    mark_bad(a, i);
                }
                seen = r->queries_used;
                last = i;
            }
        }
        if (rc != MDB_NOTFOUND) {
            break;
        }
        MDB_val bv;
        int brc = mdb_get(t->txn, t->l->budgets, &ck, &bv);
        if (brc != 0 && brc != MDB_NOTFOUND) {
            rc = brc;
            break;
        }
        uint32_t stored = brc == 0 && bv.mv_size == 4 ? get_be32(bv.mv_data) : 0;
        if ((brc == 0 && bv.mv_size != 4) || stored != seen) {
            mark_bad(a, last); /* UINT64_MAX when no receipt used a query: the count alone */
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_NODUP);
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) { /* counts of contracts that have no receipt at all */
        rc = mdb_cursor_open(t->txn, t->l->budgets, &cur);
        if (rc == 0) {
            MDB_cursor_op op = MDB_FIRST;
            while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
                op = MDB_NEXT;
                MDB_val iv;
                if (mdb_get(t->txn, t->l->by_contract, &k, &iv) == MDB_NOTFOUND &&
                    !(v.mv_size == 4 && get_be32(v.mv_data) == 0)) {
                    a->bad = true;
                }
            }
            mdb_cursor_close(cur);
        }
    }
    free(r);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int do_verify(tree *t, uint64_t size, void *arg)
{
    verify_arg *a = arg;
    uint64_t from = a->full || size <= CHEAP_LEAVES ? 0 : size - CHEAP_LEAVES;
    int rc;
    if ((rc = verify_leaves(t, from, size, a)) != 0 || (rc = verify_nodes(t, from, size, a)) != 0) {
        return rc;
    }
    if (a->full) {
        /* exactly one node per complete subtree: sum over levels of size >> level */
        MDB_stat st;
        if ((rc = mdb_stat(t->txn, t->l->nodes, &st)) != 0) {
            return rc;
        }
        if ((uint64_t)st.ms_entries != 2 * size - popcount64(size)) {
            a->bad = true;
        }
        if ((rc = verify_budgets(t, size, a)) != 0) {
            return rc;
        }
    }
    uint8_t root[HASH];
    rc = tree_root(t, size, root); /* the edge of the tree is all there */
    if (rc == MDB_CORRUPTED) {
        a->bad = true;
        rc = 0;
    }
    return rc != 0 ? rc : verify_checkpoint(t, size, a);
}

int trust_ledger_verify(trust_ledger *l, bool full, uint64_t *bad_index)
{
    verify_arg a = {.full = full, .bad = false, .bad_index = UINT64_MAX};
    *bad_index = UINT64_MAX;
    int rc = with_tree(l, do_verify, &a);
    if (rc != 0) {
        return rc;
    }
    if (a.bad) {
        *bad_index = a.bad_index;
        return BG_ERR_SIGNATURE;
    }
    return 0;
}

/* ---- Cosignatures (C2SP tlog-cosignature, cosignature/v1, Ed25519) -------------------------- */

#define SIG_TYPE_COSIGNATURE 0x04

/* cosigner key ID = SHA-256(name || 0x0A || 0x04 || public key)[:4] */
static int cosig_key_id(const char *name, const uint8_t pub[ED25519_LEN], uint8_t id[4])
{
    uint8_t buf[NAME_MAX_LEN + 2 + ED25519_LEN];
    size_t nlen = strlen(name);
    if (nlen > NAME_MAX_LEN) {
        return BG_ERR_INVAL;
    }
    memcpy(buf, name, nlen);
    buf[nlen] = 0x0a;
    buf[nlen + 1] = SIG_TYPE_COSIGNATURE;
    memcpy(buf + nlen + 2, pub, ED25519_LEN);
    uint8_t d[HASH];
    unsigned int dl = 0;
    if (EVP_Digest(buf, nlen + 2 + ED25519_LEN, d, &dl, sha256_md(), NULL) != 1) {
        ERR_clear_error();
        return BG_ERR_NOMEM;
    }
    memcpy(id, d, 4);
    return 0;
}

/* The signed message of a cosignature: "cosignature/v1\ntime <ts>\n" || checkpoint text. */
static int cosig_message(uint64_t ts, const uint8_t *text, size_t len, bg_buf *msg)
{
    char num[24];
    bg_fmt_u64(num, ts);
    int rc = bg_buf_appendf(msg, "cosignature/v1\ntime %s\n", num);
    return rc != 0 ? rc : bg_buf_append(msg, text, len);
}

int trust_ledger_witness_key(trust_ledger *l, const char *name, bg_buf *out)
{
    uint8_t id[4];
    if (!name_ok(name, strlen(name))) {
        return BG_ERR_INVAL;
    }
    int rc = cosig_key_id(name, l->pub, id);
    if (rc != 0) {
        return rc;
    }
    uint8_t raw[1 + ED25519_LEN];
    raw[0] = SIG_TYPE_COSIGNATURE;
    memcpy(raw + 1, l->pub, ED25519_LEN);
    size_t mark = out->len;
    rc = bg_buf_appendf(out, "%s+%02x%02x%02x%02x+", name, id[0], id[1], id[2], id[3]);
    if (rc == 0) {
        rc = trust_b64_append(out, raw, sizeof(raw));
    }
    if (rc != 0) {
        out->len = mark;
    }
    return rc;
}

int trust_ledger_cosign(trust_ledger *l, const char *name, const uint8_t *text, size_t len,
                        uint64_t ts, bg_buf *line)
{
    if (!name_ok(name, strlen(name)) || len == 0 || text[len - 1] != '\n') {
        return BG_ERR_INVAL;
    }
    uint8_t blob[4 + 8 + ED25519_SIG_LEN];
    int rc = cosig_key_id(name, l->pub, blob);
    if (rc != 0) {
        return rc;
    }
    for (int i = 0; i < 8; i++) {
        blob[4 + i] = (uint8_t)(ts >> (56 - 8 * i));
    }
    bg_buf msg;
    bg_buf_init(&msg);
    if ((rc = cosig_message(ts, text, len, &msg)) != 0) {
        bg_buf_dispose(&msg);
        return rc;
    }
    size_t siglen = ED25519_SIG_LEN;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, l->key) == 1 &&
              EVP_DigestSign(ctx, blob + 12, &siglen, msg.data, msg.len) == 1 &&
              siglen == ED25519_SIG_LEN;
    EVP_MD_CTX_free(ctx);
    bg_buf_dispose(&msg);
    if (!ok) {
        ERR_clear_error();
        return BG_ERR_TLS;
    }
    size_t mark = line->len;
    if ((rc = bg_buf_append(line, sig_prefix, sizeof(sig_prefix))) != 0 ||
        (rc = bg_buf_appendf(line, "%s ", name)) != 0 ||
        (rc = trust_b64_append(line, blob, sizeof(blob))) != 0 ||
        (rc = bg_buf_append(line, "\n", 1)) != 0) {
        line->len = mark;
    }
    return rc;
}

int trust_ledger_cosign_verify(const uint8_t *text, size_t len, const char *line,
                               const char *witness_vkey, uint64_t *ts)
{
    /* the witness key: "<name>+<id>+<base64(0x04 || key)>" */
    const char *p1 = strchr(witness_vkey, '+');
    const char *p2 = p1 != NULL ? strchr(p1 + 1, '+') : NULL;
    if (p1 == NULL || p2 == NULL || (size_t)(p1 - witness_vkey) > NAME_MAX_LEN) {
        return BG_ERR_INVAL;
    }
    char name[NAME_MAX_LEN + 1];
    memcpy(name, witness_vkey, (size_t)(p1 - witness_vkey));
    name[p1 - witness_vkey] = 0;
    uint8_t raw[64];
    size_t rawlen = 0;
    if (!trust_b64_decode((const char *)p2 + 1, strlen(p2 + 1), raw, sizeof(raw), &rawlen) ||
        rawlen != 1 + ED25519_LEN || raw[0] != SIG_TYPE_COSIGNATURE) {
        return BG_ERR_INVAL;
    }
    uint8_t id[4];
    if (cosig_key_id(name, raw + 1, id) != 0) {
        return BG_ERR_INVAL;
    }
    /* the line: "— <name> <base64(id || ts || sig)>" (newline optional) */
    size_t pl = sizeof(sig_prefix), nl = strlen(name), ll = strlen(line);
    if (ll > 0 && line[ll - 1] == '\n') {
        ll--;
    }
    if (ll < pl + nl + 2 || memcmp(line, sig_prefix, pl) != 0 ||
        memcmp(line + pl, name, nl) != 0 || line[pl + nl] != ' ') {
        return BG_ERR_SIGNATURE;
    }
    uint8_t blob[4 + 8 + ED25519_SIG_LEN + 4];
    size_t bl = 0;
    if (!trust_b64_decode((const char *)line + pl + nl + 1, ll - pl - nl - 1, blob, sizeof(blob),
                    &bl) ||
        bl != 4 + 8 + ED25519_SIG_LEN || memcmp(blob, id, 4) != 0) {
        return BG_ERR_SIGNATURE;
    }
    uint64_t t = 0;
    for (int i = 0; i < 8; i++) {
        t = (t << 8) | blob[4 + i];
    }
    bg_buf msg;
    bg_buf_init(&msg);
    if (cosig_message(t, text, len, &msg) != 0) {
        bg_buf_dispose(&msg);
        return BG_ERR_NOMEM;
    }
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw + 1, ED25519_LEN);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = pk != NULL && ctx != NULL &&
              EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
              EVP_DigestVerify(ctx, blob + 12, ED25519_SIG_LEN, msg.data, msg.len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    bg_buf_dispose(&msg);
    ERR_clear_error();
    if (!ok) {
        return BG_ERR_SIGNATURE;
    }
    if (ts != NULL) {
        *ts = t;
    }
    return 0;
}
