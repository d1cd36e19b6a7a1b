/* trust/firms.c: see firms.h. Applications are validated here once (JSON, registration number,
 * CSR); records are JSON documents in LMDB, one write transaction per state change; the
 * certificates and the CRL are made with OpenSSL's library. LMDB, OpenSSL and jansson
 * conventions stop at this file: callers get BG_ERR_* and copies. */
#include "trust/firms.h"

#include "trust/certs_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <lmdb.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/ids.h"
#include "trust/tls.h"

#define MAP_SIZE (256u * 1024u * 1024u) /* ~100k firms; sparse on disk */
#define STORE_VERSION 1u
#define RECORD_VERSION 1
#define CERTS_MAX 16 /* unexpired certificates one firm may hold (renewal cap) */
#define SKEW_S 300   /* notBefore backdating for peers' clock skew */
#define MAX_DAYS 365
#define NAME_UB 64    /* RFC 5280 ub-common-name, ub-organization-name (characters) */
#define QUOTE_MAX 160 /* bytes of peer-supplied text quoted into an error message */

struct trust_firms {
    MDB_env *env;
    MDB_dbi firms;     /* firm id -> record (JSON) */
    MDB_dbi regnos;    /* "<jurisdiction>:<number>" -> firm id, for applications not rejected */
    MDB_dbi withdrawn; /* firm id -> "" for suspended and revoked firms (the CRL's input) */
    MDB_dbi info;      /* "version" -> uint32, "crl_number" -> uint64 */
};

/* A certificate issued to a firm, kept in its record until it expires. */
typedef struct cert_ref {
    char serial[TRUST_FIRM_SERIAL_LEN + 1];
    int64_t not_after;
} cert_ref;

/* A record as stored: the public part plus the firm's unexpired certificates. */
typedef struct rec {
    trust_firm pub;
    cert_ref certs[CERTS_MAX];
    size_t ncerts;
} rec;

static const char VERSION_KEY[] = "version";
static const char CRL_NUMBER_KEY[] = "crl_number";

/* ----------------------------------------------------------------------------------------
 * Text: UTF-8, printable, quoting peer data into messages */

/* Decodes the code point at |s|[*i] (|n| bytes in all) and advances |*i|; -1 when the bytes
 * are not shortest-form UTF-8 of a scalar value. */
static long utf8_next(const uint8_t *s, size_t n, size_t *i)
{
    uint8_t c = s[*i];
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1fu;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0fu;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07u;
        min = 0x10000;
    } else {
        return -1;
    }
    if (n - *i < len) {
        return -1;
    }
    for (size_t k = 1; k < len; k++) {
        uint8_t cc = s[*i + k];
        if ((cc & 0xc0) != 0x80) {
            return -1;
        }
        cp = (cp << 6) | (cc & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return -1;
    }
    *i += len;
    return (long)cp;
}

/* Names and contacts are shown to admins and logged: refuse what renders as something else
 * (controls, zero-width and bidi-override characters that reorder or hide text, line
 * separators, private-use and noncharacters). */
static bool cp_printable(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
        return false;
    }
    if (cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
        (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff) {
        return false;
    }
    if ((cp >= 0xe000 && cp <= 0xf8ff) || cp >= 0xf0000 || (cp >= 0xfdd0 && cp <= 0xfdef) ||
        (cp & 0xfffe) == 0xfffe) {
        return false;
    }
    return true;
}

static bool cp_space(uint32_t cp)
{
    return cp == ' ' || cp == 0xa0 || cp == 0x3000 || (cp >= 0x2000 && cp <= 0x200a);
}

/* Copies |s| (|n| bytes) into |dst| for an error message: valid, printable UTF-8 only (others
 * become '?'), at most QUOTE_MAX bytes, "..." when cut. Always NUL-terminates. */
static void quote(char *dst, size_t cap, const uint8_t *s, size_t n)
{
    size_t o = 0, i = 0;
    assert(cap > 4);
    size_t lim = cap - 4 < QUOTE_MAX ? cap - 4 : QUOTE_MAX;
    while (i < n) {
        size_t start = i;
        long cp = utf8_next(s, n, &i);
        size_t w = i - start;
        if (cp < 0 || !cp_printable((uint32_t)cp)) {
            if (cp < 0) {
                i = start + 1;
            }
            if (o + 1 > lim) {
                break;
            }
            dst[o++] = '?';
            continue;
        }
        if (o + w > lim) {
            break;
        }
        memcpy(dst + o, s + start, w);
        o += w;
    }
    if (i < n) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/* Checks that |s| (|n| bytes) is printable UTF-8 of |min|..|max_bytes| bytes and at most
 * |max_chars| code points (0: no limit), without leading or trailing spaces when |edges|.
 * Returns 0 or BG_ERR_INVAL with "<member>: problem" in |eb|. */
static int check_text(const char *member, const uint8_t *s, size_t n, size_t min, size_t max_bytes,
                      size_t max_chars, bool edges, bg_errbuf *eb)
{
    if (n < min) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: must not be empty", member);
    }
    if (n > max_bytes) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: longer than %zu bytes", member, max_bytes);
    }
    size_t i = 0, chars = 0;
    long first = -1, last = -1;
    while (i < n) {
        size_t at = i;
        long cp = utf8_next(s, n, &i);
        if (cp < 0) {
            return bg_errf(eb, BG_ERR_INVAL, "%s: not valid UTF-8 at byte %zu", member, at);
        }
        if (!cp_printable((uint32_t)cp)) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "%s: contains the control or invisible character U+%04lX", member,
                           (unsigned long)cp);
        }
        if (first < 0) {
            first = cp;
        }
        last = cp;
        chars++;
    }
    if (max_chars > 0 && chars > max_chars) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: longer than %zu characters", member, max_chars);
    }
    if (edges && n > 0 && (cp_space((uint32_t)first) || cp_space((uint32_t)last))) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: leading or trailing space", member);
    }
    return 0;
}

/* Byte length of the first |chars| code points of the valid UTF-8 string |s|. */
static size_t utf8_prefix(const char *s, size_t chars)
{
    size_t n = strlen(s), i = 0;
    for (size_t c = 0; c < chars && i < n; c++) {
        if (utf8_next((const uint8_t *)s, n, &i) < 0) {
            break;
        }
    }
    return i;
}

/* ----------------------------------------------------------------------------------------
 * Registration numbers */

/* GB 32100-2015: the code's alphabet (I, O, S, V, Z left out) and the weights 3^i mod 31. */
static const char USCC_CHARS[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
static const unsigned USCC_WEIGHTS[17] = {1,  3,  9,  27, 19, 26, 16, 17, 20,
                                          29, 25, 13, 8,  24, 10, 30, 28};
_Static_assert(sizeof(USCC_CHARS) - 1 == 31, "31 characters");

static int uscc_value(char c)
{
    const char *p = c != '\0' ? strchr(USCC_CHARS, c) : NULL;
    return p != NULL ? (int)(p - USCC_CHARS) : -1;
}

int trust_firm_uscc_check(const char *code, bg_errbuf *eb)
{
    size_t n = strlen(code);
    if (n != 18) {
        return bg_errf(eb, BG_ERR_INVAL,
                       "registration_number: a unified social credit code has 18 characters, "
                       "got %zu",
                       n);
    }
    unsigned sum = 0;
    for (size_t i = 0; i < 18; i++) {
        int v = uscc_value(code[i]);
        if (v < 0) {
            char q[8];
            quote(q, sizeof(q), (const uint8_t *)code + i, 1);
            return bg_errf(eb, BG_ERR_INVAL,
                           "registration_number: character '%s' at position %zu is not in "
                           "0-9A-HJ-NP-RTUW-Y (upper case)",
                           q, i + 1);
        }
        if (i >= 2 && i <= 7 && v > 9) {
            return bg_errf(eb, BG_ERR_INVAL,
                           "registration_number: positions 3-8 (administrative division code) "
                           "must be digits");
        }
        if (i < 17) {
            sum += (unsigned)v * USCC_WEIGHTS[i];
        }
    }
    unsigned check = (31u - sum % 31u) % 31u;
    if (code[17] != USCC_CHARS[check]) {
        return bg_errf(eb, BG_ERR_INVAL, "registration_number: check character is %c, expected %c",
                       code[17], USCC_CHARS[check]);
    }
    return 0;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Hong Kong BRN: 8 digits, optionally "-" and a 3-digit branch number. The Business
 * Registration Office publishes no check digit, so the format is all we can check. */
static bool hk_brn_ok(const char *s, size_t n)
{
    return (n == 8 && all_digits(s, 8)) ||
           (n == 12 && all_digits(s, 8) && s[8] == '-' && all_digits(s + 9, 3));
}

/* Macau commercial registration numbers are sequential digits without a check digit. */
static bool mo_crn_ok(const char *s, size_t n)
{
    return n >= 1 && n <= 8 && all_digits(s, n);
}

/* Validates |num| for |jur| ("" to derive it) and writes the jurisdiction into |jur_out|. */
static int check_regno(const char *num, size_t n, const char *jur, char *jur_out, size_t cap,
                       bg_errbuf *eb)
{
    static const char any[] =
        "registration_number: not a mainland unified social credit code (18 characters), a "
        "Hong Kong business registration number (8 digits, optionally -NNN) or a Macau "
        "commercial registration number (1-8 digits)";
    const char *derived;
    if (jur[0] == '\0') {
        if (n == 18) {
            derived = "mainland";
        } else if (hk_brn_ok(num, n)) {
            derived = "hongkong";
        } else if (n >= 1 && n <= 7 && all_digits(num, n)) {
            derived = "macau";
        } else {
            return bg_errf(eb, BG_ERR_INVAL, "%s", any);
        }
    } else {
        derived = jur;
    }
    int rc = 0;
    if (strcmp(derived, "mainland") == 0) {
        rc = trust_firm_uscc_check(num, eb);
    } else if (strcmp(derived, "hongkong") == 0) {
        if (!hk_brn_ok(num, n)) {
            rc = bg_errf(eb, BG_ERR_INVAL,
                         "registration_number: a Hong Kong business registration number is 8 "
                         "digits, optionally followed by -NNN (branch)");
        }
    } else if (strcmp(derived, "macau") == 0) {
        if (!mo_crn_ok(num, n)) {
            rc = bg_errf(eb, BG_ERR_INVAL,
                         "registration_number: a Macau commercial registration number is 1-8 "
                         "digits");
        }
    } else {
        rc = bg_errf(eb, BG_ERR_INVAL,
                     "jurisdiction: must be \"mainland\", \"hongkong\" or \"macau\"");
    }
    if (rc == 0) {
        bg_strlcpy(jur_out, derived, cap);
    }
    return rc;
}

/* ----------------------------------------------------------------------------------------
 * CSRs */

/* Formats "|what|" plus the OpenSSL error queue into |eb|; returns |err|. */
static int ossl_err(bg_errbuf *eb, int err, const char *what)
{
    char ossl[256];
    trust_tls_errors(ossl, sizeof(ossl));
    if (ossl[0] != '\0') {
        return bg_errf(eb, err, "%s (%s)", what, ossl);
    }
    return bg_errf(eb, err, "%s", what);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const char *find(const char *s, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        if (s[i] == needle[0] && memcmp(s + i, needle, m) == 0) {
            return s + i;
        }
    }
    return NULL;
}

/* Describes |pk| for a refusal ("RSA-2048", "EC P-384"); true when it is one we accept. */
static bool key_ok(EVP_PKEY *pk, char *desc, size_t cap)
{
    char group[64];
    size_t glen = 0;
    if (EVP_PKEY_is_a(pk, "ED25519")) {
        bg_strlcpy(desc, "Ed25519", cap);
        return true;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        if (EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) != 1) {
            ERR_clear_error();
            bg_strlcpy(desc, "EC with explicit curve parameters", cap);
            return false;
        }
        const char *nist = strcmp(group, "prime256v1") == 0  ? "P-256"
                           : strcmp(group, "secp384r1") == 0 ? "P-384"
                           : strcmp(group, "secp521r1") == 0 ? "P-521"
                                                             : group;
        snprintf(desc, cap, "EC %s", nist);
        return strcmp(nist, "P-256") == 0;
    }
    if (EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "RSA-PSS") || EVP_PKEY_is_a(pk, "DSA")) {
        snprintf(desc, cap, "%s-%d", EVP_PKEY_get0_type_name(pk), EVP_PKEY_get_bits(pk));
        return false;
    }
    const char *t = EVP_PKEY_get0_type_name(pk);
    snprintf(desc, cap, "%s", t != NULL ? t : "of an unknown type");
    return false;
}

/* The PEM envelope: exactly one CERTIFICATE REQUEST block, whitespace around it only, no
 * headers. Returns the DER in |*der| (OPENSSL_free) or BG_ERR_INVAL. */
static int csr_unwrap(const char *pem, size_t len, unsigned char **der, long *der_len,
                      bg_errbuf *eb)
{
    static const char begin1[] = "-----BEGIN CERTIFICATE REQUEST-----";
    static const char begin2[] = "-----BEGIN NEW CERTIFICATE REQUEST-----";
    size_t i = 0;
    while (i < len && is_ws(pem[i])) {
        i++;
    }
    size_t rem = len - i;
    if (!(rem >= sizeof(begin1) - 1 && memcmp(pem + i, begin1, sizeof(begin1) - 1) == 0) &&
        !(rem >= sizeof(begin2) - 1 && memcmp(pem + i, begin2, sizeof(begin2) - 1) == 0)) {
        return bg_errf(eb, BG_ERR_INVAL, "csr: not a PEM certificate request (expected \"%s\")",
                       begin1);
    }
    const char *second = find(pem + i + 5, len - i - 5, "-----BEGIN");
    if (second != NULL) {
        return bg_errf(eb, BG_ERR_INVAL,
                       "csr: more than one PEM block; send exactly one certificate request");
    }
    BIO *bio = BIO_new_mem_buf(pem + i, (int)(len - i));
    if (bio == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "csr: out of memory");
    }
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    int rc = 0;
    if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
        ERR_clear_error();
        rc = bg_errf(eb, BG_ERR_INVAL, "csr: malformed PEM (bad base64 or no END line)");
        goto out;
    }
    if (header != NULL && header[0] != '\0') {
        rc = bg_errf(eb, BG_ERR_INVAL, "csr: PEM headers (encryption) are not allowed");
        goto out;
    }
    char rest[64];
    int got;
    while ((got = BIO_read(bio, rest, (int)sizeof(rest))) > 0) {
        for (int k = 0; k < got; k++) {
            if (!is_ws(rest[k])) {
                rc = bg_errf(eb, BG_ERR_INVAL, "csr: text after the END line");
                goto out;
            }
        }
    }
    *der = data;
    *der_len = dlen;
    data = NULL;
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* The subject's single O must be |name|, byte for byte after conversion to UTF-8. */
static int csr_check_org(X509_REQ *req, const char *name, bg_errbuf *eb)
{
    char qn[QUOTE_MAX + 4], qo[QUOTE_MAX + 4];
    quote(qn, sizeof(qn), (const uint8_t *)name, strlen(name));
    const X509_NAME *subj = X509_REQ_get_subject_name(req);
    int at = X509_NAME_get_index_by_NID(subj, NID_organizationName, -1);
    if (at < 0) {
        return bg_errf(eb, BG_ERR_INVAL,
                       "csr: subject has no O (organizationName); it must be the firm's name "
                       "\"%s\"",
                       qn);
    }
    if (X509_NAME_get_index_by_NID(subj, NID_organizationName, at) >= 0) {
        return bg_errf(eb, BG_ERR_INVAL, "csr: subject has more than one O (organizationName)");
    }
    const ASN1_STRING *o = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, at));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, o);
    if (n < 0) {
        ERR_clear_error();
        return bg_errf(eb, BG_ERR_INVAL, "csr: subject O is not a valid string");
    }
    int rc = 0;
    if ((size_t)n != strlen(name) || memcmp(utf8, name, (size_t)n) != 0) {
        quote(qo, sizeof(qo), utf8, (size_t)n);
        rc = bg_errf(eb, BG_ERR_INVAL,
                     "csr: subject O \"%s\" does not match the application's name \"%s\"", qo, qn);
    }
    OPENSSL_free(utf8);
    return rc;
}

/* Parses and checks the CSR |pem| (|len| bytes) for firm |name|; returns 0 and |*out| (when
 * not NULL; caller frees with X509_REQ_free) or BG_ERR_INVAL / BG_ERR_NOMEM with "csr: ...". */
static int csr_parse(const char *pem, size_t len, const char *name, X509_REQ **out, bg_errbuf *eb)
{
    if (len > TRUST_FIRM_CSR_MAX) {
        return bg_errf(eb, BG_ERR_INVAL, "csr: longer than %d bytes", TRUST_FIRM_CSR_MAX);
    }
    if (memchr(pem, '\0', len) != NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "csr: contains a NUL byte");
    }
    unsigned char *der = NULL;
    long der_len = 0;
    int rc = csr_unwrap(pem, len, &der, &der_len, eb);
    if (rc != 0) {
        return rc;
    }
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, der_len);
    if (req == NULL) {
        rc = bg_errf(eb, BG_ERR_INVAL, "csr: the PEM block is not a DER certificate request");
        goto out;
    }
    if (p != der + der_len) {
        rc = bg_errf(eb, BG_ERR_INVAL, "csr: bytes after the certificate request");
        goto out;
    }
    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    char desc[80];
    if (pk == NULL) {
        rc = bg_errf(eb, BG_ERR_INVAL, "csr: the public key cannot be decoded");
        goto out;
    }
    if (!key_ok(pk, desc, sizeof(desc))) {
        rc = bg_errf(eb, BG_ERR_INVAL,
                     "csr: key is %s (weak or unsupported); use EC P-256 or Ed25519", desc);
        goto out;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
        int ok = pctx != NULL && EVP_PKEY_public_check(pctx) == 1;
        EVP_PKEY_CTX_free(pctx);
        if (!ok) {
            rc = bg_errf(eb, BG_ERR_INVAL, "csr: the EC public key is not a valid P-256 point");
            goto out;
        }
    }
    int md_nid = NID_undef, pk_nid = NID_undef;
    if (OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &md_nid, &pk_nid) != 1 ||
        !(md_nid == NID_sha256 || md_nid == NID_sha384 || md_nid == NID_sha512 ||
          (md_nid == NID_undef && pk_nid == NID_ED25519))) {
        rc = bg_errf(eb, BG_ERR_INVAL,
                     "csr: signature algorithm is not allowed; sign with SHA-256 or better "
                     "(or Ed25519)");
        goto out;
    }
    if (X509_REQ_verify(req, pk) != 1) {
        rc = bg_errf(eb, BG_ERR_INVAL,
                     "csr: signature does not verify (the request was altered or not signed "
                     "by its key)");
        goto out;
    }
    if ((rc = csr_check_org(req, name, eb)) != 0) {
        goto out;
    }
    if (out != NULL) {
        *out = req;
        req = NULL;
    }
out:
    X509_REQ_free(req);
    OPENSSL_free(der);
    ERR_clear_error();
    return rc;
}

/* ----------------------------------------------------------------------------------------
 * Applications */

/* Copies string member |key| of |obj| into |dst| after check_text(). */
static int take_text(json_t *obj, const char *key, char *dst, size_t cap, size_t min,
                     size_t max_bytes, size_t max_chars, bg_errbuf *eb)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: missing", key);
    }
    if (!json_is_string(v)) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: must be a string", key);
    }
    size_t n = json_string_length(v);
    const uint8_t *s = (const uint8_t *)json_string_value(v);
    int rc = check_text(key, s, n, min, max_bytes, max_chars, true, eb);
    if (rc != 0) {
        return rc;
    }
    if (n >= cap) {
        return bg_errf(eb, BG_ERR_INVAL, "%s: longer than %zu bytes", key, cap - 1);
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int trust_firm_app_parse(const uint8_t *json, size_t len, trust_firm_app *out, bg_errbuf *eb)
{
    static const char *const members[] = {"name", "registration_number", "contact", "purposes",
                                          "csr",  "jurisdiction"};
    if (len > TRUST_FIRM_APP_MAX) {
        return bg_errf(eb, BG_ERR_INVAL, "application: larger than %d bytes", TRUST_FIRM_APP_MAX);
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        char q[QUOTE_MAX + 4];
        quote(q, sizeof(q), (const uint8_t *)jerr.text, strlen(jerr.text));
        return bg_errf(eb, BG_ERR_INVAL, "application: invalid JSON at line %d column %d: %s",
                       jerr.line, jerr.column, q);
    }
    int rc = 0;
    trust_firm_app *a = calloc(1, sizeof(*a)); /* ~3 KiB: keep it off a fuzzer's stack */
    if (a == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "application: out of memory");
        goto out;
    }
    if (!json_is_object(root)) {
        rc = bg_errf(eb, BG_ERR_INVAL, "application: must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
            known = known || strcmp(key, members[i]) == 0;
        }
        if (!known) {
            char q[QUOTE_MAX + 4];
            quote(q, sizeof(q), (const uint8_t *)key, strlen(key));
            rc = bg_errf(eb, BG_ERR_INVAL, "application: unknown member \"%s\"", q);
            goto out;
        }
    }
    char jur[16] = "";
    if ((rc = take_text(root, "name", a->name, sizeof(a->name), 1, TRUST_FIRM_NAME_MAX,
                        TRUST_FIRM_NAME_CHARS, eb)) != 0 ||
        (rc = take_text(root, "registration_number", a->registration_number,
                        sizeof(a->registration_number), 1, TRUST_FIRM_REGNO_MAX, 0, eb)) != 0 ||
        (rc = take_text(root, "contact", a->contact, sizeof(a->contact), 1, TRUST_FIRM_CONTACT_MAX,
                        0, eb)) != 0) {
        goto out;
    }
    if (json_object_get(root, "jurisdiction") != NULL &&
        (rc = take_text(root, "jurisdiction", jur, sizeof(jur), 1, sizeof(jur) - 1, 0, eb)) != 0) {
        goto out;
    }
    if ((rc = check_regno(a->registration_number, strlen(a->registration_number), jur,
                          a->jurisdiction, sizeof(a->jurisdiction), eb)) != 0) {
        goto out;
    }
    json_t *ps = json_object_get(root, "purposes");
    if (ps == NULL || !json_is_array(ps) || json_array_size(ps) == 0 ||
        json_array_size(ps) > TRUST_FIRM_PURPOSES_MAX) {
        rc = bg_errf(eb, BG_ERR_INVAL, "purposes: %s",
                     ps == NULL ? "missing" : "must be an array of 1 to 8 home-city purpose terms");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(ps); i++) {
        json_t *p = json_array_get(ps, i);
        if (!json_is_string(p)) {
            rc = bg_errf(eb, BG_ERR_INVAL, "purposes: item %zu is not a string", i + 1);
            goto out;
        }
        size_t n = json_string_length(p);
        const char *s = json_string_value(p);
        if ((rc = check_text("purposes", (const uint8_t *)s, n, 1, TRUST_FIRM_PURPOSE_MAX, 0, true,
                             eb)) != 0) {
            goto out;
        }
        for (size_t k = 0; k < a->npurposes; k++) {
            if (strcmp(a->purposes[k], s) == 0) {
                char q[QUOTE_MAX + 4];
                quote(q, sizeof(q), (const uint8_t *)s, n);
                rc = bg_errf(eb, BG_ERR_INVAL, "purposes: \"%s\" appears twice", q);
                goto out;
            }
        }
        memcpy(a->purposes[a->npurposes], s, n + 1);
        a->npurposes++;
    }
    json_t *csr = json_object_get(root, "csr");
    if (csr == NULL || !json_is_string(csr)) {
        rc = bg_errf(eb, BG_ERR_INVAL, "csr: %s",
                     csr == NULL ? "missing" : "must be a string holding one PEM CSR");
        goto out;
    }
    size_t clen = json_string_length(csr);
    if ((rc = csr_parse(json_string_value(csr), clen, a->name, NULL, eb)) != 0) {
        goto out;
    }
    a->csr_pem = bg_strndup(json_string_value(csr), clen);
    if (a->csr_pem == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "application: out of memory");
        goto out;
    }
    *out = *a;
out:
    free(a);
    json_decref(root);
    return rc;
}

void trust_firm_app_dispose(trust_firm_app *a)
{
    if (a == NULL) {
        return;
    }
    free(a->csr_pem);
    memset(a, 0, sizeof(*a));
}

void trust_firm_dispose(trust_firm *r)
{
    if (r == NULL) {
        return;
    }
    trust_firm_app_dispose(&r->app);
    free(r->cert_pem);
    memset(r, 0, sizeof(*r));
}

const char *trust_firm_status_name(trust_firm_status s)
{
    switch (s) {
    case TRUST_FIRM_PENDING:
        return "pending";
    case TRUST_FIRM_APPROVED:
        return "approved";
    case TRUST_FIRM_REJECTED:
        return "rejected";
    case TRUST_FIRM_SUSPENDED:
        return "suspended";
    case TRUST_FIRM_REVOKED:
        return "revoked";
    default:
        return "unknown";
    }
}

/* ----------------------------------------------------------------------------------------
 * Records: JSON in LMDB. The file never leaves this host, but a record that does not decode
 * is reported as BG_ERR_STORE rather than trusted. */

static json_t *encode(const rec *r)
{
    const trust_firm *p = &r->pub;
    json_t *o = json_object(), *ps = json_array(), *cs = json_array();
    if (o == NULL || ps == NULL || cs == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < p->app.npurposes; i++) {
        if (json_array_append_new(ps, json_string(p->app.purposes[i])) != 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < r->ncerts; i++) {
        if (json_array_append_new(cs, json_pack("{s:s, s:I}", "serial", r->certs[i].serial,
                                                "not_after", (json_int_t)r->certs[i].not_after)) !=
            0) {
            goto fail;
        }
    }
    int rc = 0;
    rc |= json_object_set_new(o, "v", json_integer(RECORD_VERSION));
    rc |= json_object_set_new(o, "id", json_string(p->id));
    rc |= json_object_set_new(o, "status", json_integer((json_int_t)p->status));
    rc |= json_object_set_new(o, "city", json_string(p->city));
    rc |= json_object_set_new(o, "spiffe_id", json_string(p->spiffe_id));
    rc |= json_object_set_new(o, "created", json_integer((json_int_t)p->created));
    rc |= json_object_set_new(o, "updated", json_integer((json_int_t)p->updated));
    rc |= json_object_set_new(o, "name", json_string(p->app.name));
    rc |= json_object_set_new(o, "registration_number", json_string(p->app.registration_number));
    rc |= json_object_set_new(o, "jurisdiction", json_string(p->app.jurisdiction));
    rc |= json_object_set_new(o, "contact", json_string(p->app.contact));
    rc |= json_object_set(o, "purposes", ps);
    rc |= json_object_set(o, "certs", cs);
    rc |= json_object_set_new(o, "cert_serial", json_string(p->cert_serial));
    rc |= json_object_set_new(o, "cert_not_after", json_integer((json_int_t)p->cert_not_after));
    rc |= json_object_set_new(o, "reason", json_string(p->reason));
    if (p->app.csr_pem != NULL) {
        rc |= json_object_set_new(o, "csr", json_string(p->app.csr_pem));
    }
    if (p->cert_pem != NULL) {
        rc |= json_object_set_new(o, "cert_pem", json_string(p->cert_pem));
    }
    json_decref(ps);
    json_decref(cs);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
fail:
    json_decref(o);
    json_decref(ps);
    json_decref(cs);
    return NULL;
}

static bool get_str(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) >= cap ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        return false;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static bool get_int(json_t *o, const char *key, int64_t *dst)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        return false;
    }
    *dst = (int64_t)json_integer_value(v);
    return true;
}

/* Returns a newly allocated copy of string member |key|, NULL when absent; |*bad| on error. */
static char *get_dup(json_t *o, const char *key, bool *bad)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        return NULL;
    }
    char *s = json_is_string(v) ? bg_strndup(json_string_value(v), json_string_length(v)) : NULL;
    if (s == NULL) {
        *bad = true;
    }
    return s;
}

/* Decodes the stored |v| into |r| (zeroed first). Returns 0, BG_ERR_STORE or BG_ERR_NOMEM. */
static int decode(const MDB_val *v, rec *r)
{
    memset(r, 0, sizeof(*r));
    json_t *o = json_loadb(v->mv_data, v->mv_size, JSON_ALLOW_NUL, NULL);
    if (o == NULL) {
        return BG_ERR_STORE;
    }
    trust_firm *p = &r->pub;
    int64_t version = 0, status = 0;
    bool ok = get_int(o, "v", &version) && version == RECORD_VERSION &&
              get_str(o, "id", p->id, sizeof(p->id)) && get_int(o, "status", &status) &&
              status >= TRUST_FIRM_PENDING && status <= TRUST_FIRM_REVOKED &&
              get_str(o, "city", p->city, sizeof(p->city)) &&
              get_str(o, "spiffe_id", p->spiffe_id, sizeof(p->spiffe_id)) &&
              get_int(o, "created", &p->created) && get_int(o, "updated", &p->updated) &&
              get_str(o, "name", p->app.name, sizeof(p->app.name)) &&
              get_str(o, "registration_number", p->app.registration_number,
                      sizeof(p->app.registration_number)) &&
              get_str(o, "jurisdiction", p->app.jurisdiction, sizeof(p->app.jurisdiction)) &&
              get_str(o, "contact", p->app.contact, sizeof(p->app.contact)) &&
              get_str(o, "cert_serial", p->cert_serial, sizeof(p->cert_serial)) &&
              get_int(o, "cert_not_after", &p->cert_not_after) &&
              get_str(o, "reason", p->reason, sizeof(p->reason));
    p->status = (trust_firm_status)status;
    json_t *ps = json_object_get(o, "purposes"), *cs = json_object_get(o, "certs");
    ok = ok && json_is_array(ps) && json_array_size(ps) <= TRUST_FIRM_PURPOSES_MAX &&
         json_is_array(cs) && json_array_size(cs) <= CERTS_MAX;
    for (size_t i = 0; ok && i < json_array_size(ps); i++) {
        json_t *s = json_array_get(ps, i);
        ok = json_is_string(s) && json_string_length(s) <= TRUST_FIRM_PURPOSE_MAX;
        if (ok) {
            memcpy(p->app.purposes[i], json_string_value(s), json_string_length(s) + 1);
            p->app.npurposes++;
        }
    }
    for (size_t i = 0; ok && i < json_array_size(cs); i++) {
        json_t *c = json_array_get(cs, i);
        ok = get_str(c, "serial", r->certs[i].serial, sizeof(r->certs[i].serial)) &&
             get_int(c, "not_after", &r->certs[i].not_after);
        r->ncerts += ok ? 1 : 0;
    }
    bool bad = false;
    if (ok) {
        p->app.csr_pem = get_dup(o, "csr", &bad);
        p->cert_pem = get_dup(o, "cert_pem", &bad);
    }
    json_decref(o);
    if (!ok || bad) {
        trust_firm_dispose(p);
        return ok ? BG_ERR_NOMEM : BG_ERR_STORE;
    }
    return 0;
}

/* ----------------------------------------------------------------------------------------
 * The environment */

static int mdb_to_bg(int rc)
{
    /* ours are BG_ERR_* (-1..-999); LMDB's are MDB_* (<= -30600) or errno values */
    if (rc < 0 && rc > -1000) {
        return rc;
    }
    return rc == MDB_NOTFOUND ? BG_ERR_NOTFOUND : rc == ENOMEM ? BG_ERR_NOMEM : BG_ERR_STORE;
}

int trust_firms_open(trust_firms **out, const char *dir, bg_errbuf *eb)
{
    trust_firms *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "%s: out of memory", dir);
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        free(f);
        return bg_errf(eb, BG_ERR_STORE, "%s: cannot create directory: %s", dir, strerror(e));
    }
    int rc = mdb_env_create(&f->env);
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(f->env, 4);
    }
    if (rc == 0) {
        rc = mdb_env_set_mapsize(f->env, MAP_SIZE);
    }
    if (rc == 0) {
        /* MDB_NOTLS: read transactions are not tied to threads (workers share the handle). */
        rc = mdb_env_open(f->env, dir, MDB_NOTLS, 0600);
    }
    MDB_txn *txn = NULL;
    if (rc == 0) {
        rc = mdb_txn_begin(f->env, NULL, 0, &txn);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "firms", MDB_CREATE, &f->firms);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "firm_regnos", MDB_CREATE, &f->regnos);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "firm_withdrawn", MDB_CREATE, &f->withdrawn);
    }
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "firm_info", MDB_CREATE, &f->info);
    }
    uint32_t version = STORE_VERSION;
    if (rc == 0) {
        MDB_val k = {sizeof(VERSION_KEY) - 1, (void *)(uintptr_t)VERSION_KEY}, v;
        rc = mdb_get(txn, f->info, &k, &v);
        if (rc == MDB_NOTFOUND) {
            v.mv_size = sizeof(version);
            v.mv_data = &version;
            rc = mdb_put(txn, f->info, &k, &v, 0);
        } else if (rc == 0 && v.mv_size == sizeof(version)) {
            memcpy(&version, v.mv_data, sizeof(version));
        } else if (rc == 0) {
            rc = MDB_CORRUPTED;
        }
    }
    if (rc == 0 && version != STORE_VERSION) {
        mdb_txn_abort(txn);
        mdb_env_close(f->env);
        free(f);
        return bg_errf(eb, BG_ERR_STORE,
                       "%s: firms store format %u is not this build's %u: run the baygate "
                       "that wrote it",
                       dir, (unsigned)version, STORE_VERSION);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        if (txn != NULL) {
            mdb_txn_abort(txn);
        }
        mdb_env_close(f->env); /* NULL-safe only after create succeeded */
        free(f);
        return bg_errf(eb, rc == ENOMEM ? BG_ERR_NOMEM : BG_ERR_STORE,
                       "%s: cannot open firms store: %s", dir, mdb_strerror(rc));
    }
    *out = f;
    return 0;
}

void trust_firms_close(trust_firms *f)
{
    if (f == NULL) {
        return;
    }
    mdb_env_close(f->env);
    free(f);
}

/* Runs |fn| in one transaction, committed when it returns 0 (and |write|), else aborted. |fn|
 * returns 0, an LMDB code or a BG_ERR_*; the result is a BG_ERR_*. */
static int run_txn(trust_firms *f, bool write, int (*fn)(trust_firms *, MDB_txn *, void *),
                   void *arg)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(f->env, NULL, write ? 0 : MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = fn(f, txn, arg);
        if (rc == 0 && write) {
            rc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
        }
    }
    return rc == 0 ? 0 : mdb_to_bg(rc);
}

static bool valid_id(const char *id)
{
    if (id == NULL || strlen(id) != TRUST_FIRM_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < TRUST_FIRM_ID_LEN; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

static MDB_val id_key(const char *id)
{
    MDB_val k = {TRUST_FIRM_ID_LEN, (void *)(uintptr_t)id};
    return k;
}

static int load(trust_firms *f, MDB_txn *txn, const char *id, rec *r)
{
    MDB_val k = id_key(id), v;
    int rc = mdb_get(txn, f->firms, &k, &v);
    return rc != 0 ? rc : decode(&v, r);
}

static int save(trust_firms *f, MDB_txn *txn, const rec *r, unsigned flags)
{
    json_t *o = encode(r);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL) {
        return BG_ERR_NOMEM;
    }
    MDB_val k = id_key(r->pub.id), v = {strlen(text), text};
    int rc = mdb_put(txn, f->firms, &k, &v, flags);
    free(text);
    return rc;
}

static void regno_key(char *buf, size_t cap, const trust_firm_app *a)
{
    snprintf(buf, cap, "%s:%s", a->jurisdiction, a->registration_number);
}

static void hex(char *out, const unsigned char *raw, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[2 * n] = '\0';
}

static int check_reason(const char *reason, bg_errbuf *eb)
{
    if (reason == NULL) {
        return 0;
    }
    return check_text("reason", (const uint8_t *)reason, strlen(reason), 0, TRUST_FIRM_REASON_MAX,
                      0, false, eb);
}

/* ----------------------------------------------------------------------------------------
 * Apply, get, list */

typedef struct apply_arg {
    const trust_firm_app *app;
    const char *city;
    rec r;
    bg_errbuf *eb;
} apply_arg;

static int do_apply(trust_firms *f, MDB_txn *txn, void *arg)
{
    apply_arg *a = arg;
    char key[64];
    regno_key(key, sizeof(key), a->app);
    MDB_val rk = {strlen(key), key}, rv;
    int rc = mdb_get(txn, f->regnos, &rk, &rv);
    if (rc == 0) {
        char other[TRUST_FIRM_ID_LEN + 1];
        rec old;
        if (rv.mv_size != TRUST_FIRM_ID_LEN) {
            return MDB_CORRUPTED;
        }
        memcpy(other, rv.mv_data, TRUST_FIRM_ID_LEN);
        other[TRUST_FIRM_ID_LEN] = '\0';
        if ((rc = load(f, txn, other, &old)) != 0) {
            return rc;
        }
        trust_firm_status st = old.pub.status;
        trust_firm_dispose(&old.pub);
        if (st != TRUST_FIRM_REJECTED) {
            return bg_errf(
                a->eb, BG_ERR_EXISTS, "registration_number: %s %s already has an application (%s)",
                a->app->jurisdiction, a->app->registration_number, trust_firm_status_name(st));
        }
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    unsigned char raw[TRUST_FIRM_ID_LEN / 2];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return ossl_err(a->eb, BG_ERR_INTERNAL, "firms: no random bytes for an id");
    }
    trust_firm *p = &a->r.pub;
    hex(p->id, raw, sizeof(raw));
    p->app = *a->app;
    p->app.csr_pem = strdup(a->app->csr_pem);
    if (p->app.csr_pem == NULL) {
        return BG_ERR_NOMEM;
    }
    p->status = TRUST_FIRM_PENDING;
    bg_strlcpy(p->city, a->city, sizeof(p->city));
    snprintf(p->spiffe_id, sizeof(p->spiffe_id), "spiffe://%s.gba/firm/%s", a->city, p->id);
    p->created = p->updated = (int64_t)time(NULL);
    if ((rc = save(f, txn, &a->r, MDB_NOOVERWRITE)) != 0) {
        return rc == MDB_KEYEXIST ? BG_ERR_INTERNAL : rc; /* 128 random bits collided */
    }
    MDB_val idv = id_key(p->id);
    return mdb_put(txn, f->regnos, &rk, &idv, 0);
}

int trust_firms_apply(trust_firms *f, const trust_firm_app *app, const char *city, trust_firm *out,
                      bg_errbuf *eb)
{
    if (city == NULL || !bg_city_id_valid(city, strlen(city))) {
        return bg_errf(eb, BG_ERR_INVAL, "firms: city is not [a-z][a-z0-9-]{0,62}");
    }
    if (app == NULL || app->csr_pem == NULL || app->name[0] == '\0' ||
        app->jurisdiction[0] == '\0') {
        return bg_errf(eb, BG_ERR_INVAL, "firms: the application was not parsed");
    }
    apply_arg a = {.app = app, .city = city, .eb = eb};
    int rc = run_txn(f, true, do_apply, &a);
    if (rc == 0 && out != NULL) {
        *out = a.r.pub;
    } else {
        trust_firm_dispose(&a.r.pub);
    }
    if (rc != 0 && rc != BG_ERR_EXISTS && rc != BG_ERR_INTERNAL) {
        bg_errf(eb, rc, "firms: cannot store the application: %s", bg_strerror(rc));
    }
    return rc;
}

typedef struct get_arg {
    const char *id;
    rec r;
} get_arg;

static int do_get(trust_firms *f, MDB_txn *txn, void *arg)
{
    get_arg *a = arg;
    return load(f, txn, a->id, &a->r);
}

int trust_firms_get(trust_firms *f, const char *id, trust_firm *out)
{
    if (!valid_id(id)) {
        return BG_ERR_NOTFOUND;
    }
    get_arg a = {.id = id};
    int rc = run_txn(f, false, do_get, &a);
    if (rc == 0) {
        *out = a.r.pub;
    }
    return rc;
}

typedef struct list_arg {
    trust_firm_status status;
    trust_firm *items;
    size_t n, cap;
} list_arg;

static void list_dispose(list_arg *a)
{
    for (size_t i = 0; i < a->n; i++) {
        trust_firm_dispose(&a->items[i]);
    }
    free(a->items);
    a->items = NULL;
    a->n = a->cap = 0;
}

static int do_list(trust_firms *f, MDB_txn *txn, void *arg)
{
    list_arg *a = arg;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, f->firms, &cur);
    if (rc != 0) {
        return rc;
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        rec r;
        int drc = decode(&v, &r);
        if (drc != 0) {
            rc = drc;
            break;
        }
        if (a->status != 0 && r.pub.status != a->status) {
            trust_firm_dispose(&r.pub);
            continue;
        }
        if (a->n == a->cap) {
            size_t ncap = a->cap ? a->cap * 2 : 16;
            trust_firm *ni = realloc(a->items, ncap * sizeof(*ni));
            if (ni == NULL) {
                trust_firm_dispose(&r.pub);
                rc = BG_ERR_NOMEM;
                break;
            }
            a->items = ni;
            a->cap = ncap;
        }
        a->items[a->n++] = r.pub;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int trust_firms_list(trust_firms *f, trust_firm_status status,
                     int (*cb)(void *arg, const trust_firm *firm), void *arg)
{
    list_arg a = {.status = status};
    int rc = run_txn(f, false, do_list, &a);
    for (size_t i = 0; rc == 0 && i < a.n; i++) {
        rc = cb(arg, &a.items[i]);
    }
    list_dispose(&a);
    return rc;
}

/* ----------------------------------------------------------------------------------------
 * Certificates */

typedef struct ca {
    X509 *crt;
    EVP_PKEY *key;
} ca;

static void ca_dispose(ca *c)
{
    X509_free(c->crt);
    EVP_PKEY_free(c->key);
    c->crt = NULL;
    c->key = NULL;
}

/* Loads the city CA (trust/certs_int.h). */
static int ca_load(ca *c, const char *crt_path, const char *key_path, bg_errbuf *eb)
{
    return trust_certs_load_ca(&c->crt, &c->key, crt_path, key_path, eb);
}

/* A CA carrying a SPIFFE trust domain (ours do, with a name constraint) must be |city|'s, or
 * the certificate would fail verification far from the cause. */
static int ca_check_city(const ca *c, const char *city, bg_errbuf *eb)
{
    char want[96], td[256];
    snprintf(want, sizeof(want), "spiffe://%s.gba", city);
    trust_certs_ca_domain(c->crt, td, sizeof(td));
    if (td[0] != '\0' && strcmp(td, want) != 0) {
        return bg_errf(eb, BG_ERR_CERT, "ca: the CA is not the city %s's (%s expected)", city,
                       want);
    }
    return 0;
}

/* The SPIFFE id as the only SAN, built as structures so no text is ever parsed. */
static int add_uri_san(X509 *cert, const char *uri)
{
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    int rc = -1;
    if (names == NULL || s == NULL || gn == NULL || ASN1_STRING_set(s, uri, -1) != 1) {
        goto out;
    }
    GENERAL_NAME_set0_value(gn, GEN_URI, s);
    s = NULL;
    if (sk_GENERAL_NAME_push(names, gn) <= 0) {
        goto out;
    }
    gn = NULL;
    rc = X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_REPLACE) == 1 ? 0 : -1;
out:
    GENERAL_NAME_free(gn);
    ASN1_IA5STRING_free(s);
    GENERAL_NAMES_free(names);
    return rc;
}

/* A random positive 128-bit serial (RFC 5280 §4.1.2.2), exactly 16 octets, in |hexout|. */
static int set_serial(X509 *cert, char hexout[TRUST_FIRM_SERIAL_LEN + 1])
{
    unsigned char raw[TRUST_FIRM_SERIAL_LEN / 2];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return -1;
    }
    raw[0] = (unsigned char)((raw[0] & 0x7f) | 0x40);
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    ASN1_INTEGER *serial = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    int ok = serial != NULL && X509_set_serialNumber(cert, serial) == 1;
    ASN1_INTEGER_free(serial);
    if (ok) {
        hex(hexout, raw, sizeof(raw));
    }
    return ok ? 0 : -1;
}

static const EVP_MD *sign_md(EVP_PKEY *key)
{
    return EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448") ? NULL : EVP_sha256();
}

static int append_pem(BIO *bio, X509 *x)
{
    return PEM_write_bio_X509(bio, x) == 1 ? 0 : -1;
}

/* Issues the certificate of firm |p| for |req|'s key: see trust_firms_approve(). Fills
 * |*pem| (malloc'd chain), |serial| and |*not_after|. */
static int issue(const ca *c, X509_REQ *req, const trust_firm *p, int days, int64_t now, char **pem,
                 char serial[TRUST_FIRM_SERIAL_LEN + 1], int64_t *not_after, bg_errbuf *eb)
{
    int rc = 0;
    X509 *cert = X509_new();
    BIO *bio = NULL;
    if (cert == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "firms: out of memory");
    }
    /* CN and O carry the name, cut to the 64 characters RFC 5280 allows. */
    size_t nlen = utf8_prefix(p->app.name, NAME_UB);
    X509_NAME *subj = X509_get_subject_name(cert);
    int64_t end = now + (int64_t)days * 86400;
    if (X509_set_version(cert, X509_VERSION_3) != 1 || set_serial(cert, serial) != 0 ||
        ASN1_TIME_set(X509_getm_notBefore(cert), (time_t)(now - SKEW_S)) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(cert), (time_t)end) == NULL ||
        X509_NAME_add_entry_by_NID(subj, NID_organizationName, MBSTRING_UTF8,
                                   (const unsigned char *)p->app.name, (int)nlen, -1, 0) != 1 ||
        X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)p->app.name, (int)nlen, -1, 0) != 1 ||
        X509_set_issuer_name(cert, X509_get_subject_name(c->crt)) != 1 ||
        X509_set_pubkey(cert, X509_REQ_get0_pubkey(req)) != 1) {
        rc = ossl_err(eb, BG_ERR_CERT, "firms: cannot build the certificate");
        goto out;
    }
    if (trust_certs_add_ext(cert, c->crt, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        trust_certs_add_ext(cert, c->crt, NID_key_usage, "critical,digitalSignature") != 0 ||
        trust_certs_add_ext(cert, c->crt, NID_ext_key_usage, "clientAuth") != 0 ||
        trust_certs_add_ext(cert, c->crt, NID_subject_key_identifier, "hash") != 0 ||
        trust_certs_add_ext(cert, c->crt, NID_authority_key_identifier, "keyid:always") != 0 ||
        add_uri_san(cert, p->spiffe_id) != 0) {
        rc = ossl_err(eb, BG_ERR_CERT, "firms: cannot add certificate extensions");
        goto out;
    }
    if (X509_sign(cert, c->key, sign_md(c->key)) <= 0) {
        rc = ossl_err(eb, BG_ERR_CERT, "firms: cannot sign the certificate");
        goto out;
    }
    bio = BIO_new(BIO_s_mem());
    char *data;
    long n;
    if (bio == NULL || append_pem(bio, cert) != 0 || append_pem(bio, c->crt) != 0 ||
        (n = BIO_get_mem_data(bio, &data)) <= 0) {
        rc = ossl_err(eb, BG_ERR_NOMEM, "firms: cannot encode the certificate");
        goto out;
    }
    *pem = bg_strndup(data, (size_t)n);
    if (*pem == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "firms: out of memory");
        goto out;
    }
    *not_after = end;
out:
    BIO_free(bio);
    X509_free(cert);
    return rc;
}

/* ----------------------------------------------------------------------------------------
 * Transitions */

typedef enum action {
    ACT_APPROVE,
    ACT_REJECT,
    ACT_RENEW,
    ACT_SUSPEND,
    ACT_REINSTATE,
    ACT_REVOKE,
} action;

static const char *const ACTION_VERB[] = {"approve", "reject",    "renew",
                                          "suspend", "reinstate", "revoke"};

typedef struct change_arg {
    action act;
    const char *id;
    const char *reason;
    const char *csr_pem; /* renew */
    const ca *ca;        /* approve, renew */
    int days;
    rec r;
    bg_errbuf *eb;
} change_arg;

static bool allowed(action act, trust_firm_status s)
{
    switch (act) {
    case ACT_APPROVE:
    case ACT_REJECT:
        return s == TRUST_FIRM_PENDING;
    case ACT_RENEW:
    case ACT_SUSPEND:
        return s == TRUST_FIRM_APPROVED;
    case ACT_REINSTATE:
        return s == TRUST_FIRM_SUSPENDED;
    case ACT_REVOKE:
        return s == TRUST_FIRM_APPROVED || s == TRUST_FIRM_SUSPENDED;
    }
    return false;
}

/* Issues a certificate from |csr| into |r| (approve and renew), pruning expired ones. */
static int change_issue(change_arg *a, const char *csr, int64_t now)
{
    trust_firm *p = &a->r.pub;
    X509_REQ *req = NULL;
    int rc = ca_check_city(a->ca, p->city, a->eb);
    if (rc == 0) {
        rc = csr_parse(csr, strlen(csr), p->app.name, &req, a->eb);
    }
    if (rc != 0) {
        return rc;
    }
    size_t keep = 0;
    for (size_t i = 0; i < a->r.ncerts; i++) {
        if (a->r.certs[i].not_after > now) {
            a->r.certs[keep++] = a->r.certs[i];
        }
    }
    a->r.ncerts = keep;
    if (keep == CERTS_MAX) {
        X509_REQ_free(req);
        return bg_errf(a->eb, BG_ERR_INVAL,
                       "csr: this firm already holds %d unexpired certificates; wait for one "
                       "to expire",
                       CERTS_MAX);
    }
    char *pem = NULL;
    cert_ref *c = &a->r.certs[keep];
    rc = issue(a->ca, req, p, a->days, now, &pem, c->serial, &c->not_after, a->eb);
    X509_REQ_free(req);
    if (rc != 0) {
        return rc;
    }
    a->r.ncerts++;
    free(p->cert_pem);
    p->cert_pem = pem;
    memcpy(p->cert_serial, c->serial, sizeof(p->cert_serial));
    p->cert_not_after = c->not_after;
    free(p->app.csr_pem);
    p->app.csr_pem = NULL;
    return 0;
}

static int do_change(trust_firms *f, MDB_txn *txn, void *arg)
{
    change_arg *a = arg;
    int rc = load(f, txn, a->id, &a->r);
    if (rc != 0) {
        return rc;
    }
    trust_firm *p = &a->r.pub;
    if (!allowed(a->act, p->status)) {
        const char *st = trust_firm_status_name(p->status);
        return bg_errf(a->eb, BG_ERR_INVAL, "cannot %s %s %s %s", ACTION_VERB[a->act],
                       st[0] == 'a' ? "an" : "a", st,
                       a->act == ACT_APPROVE || a->act == ACT_REJECT ? "application" : "firm");
    }
    int64_t now = (int64_t)time(NULL);
    MDB_val k = id_key(p->id), empty = {0, (void *)""};
    switch (a->act) {
    case ACT_APPROVE:
        if (p->app.csr_pem == NULL) {
            return BG_ERR_STORE;
        }
        rc = change_issue(a, p->app.csr_pem, now);
        p->status = TRUST_FIRM_APPROVED;
        p->reason[0] = '\0';
        break;
    case ACT_RENEW:
        rc = change_issue(a, a->csr_pem, now);
        break;
    case ACT_REJECT: {
        char key[64];
        regno_key(key, sizeof(key), &p->app);
        MDB_val rk = {strlen(key), key};
        rc = mdb_del(txn, f->regnos, &rk, NULL);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
        p->status = TRUST_FIRM_REJECTED;
        break;
    }
    case ACT_SUSPEND:
        rc = mdb_put(txn, f->withdrawn, &k, &empty, 0);
        p->status = TRUST_FIRM_SUSPENDED;
        break;
    case ACT_REVOKE:
        rc = mdb_put(txn, f->withdrawn, &k, &empty, 0);
        p->status = TRUST_FIRM_REVOKED;
        break;
    case ACT_REINSTATE:
        rc = mdb_del(txn, f->withdrawn, &k, NULL);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
        p->status = TRUST_FIRM_APPROVED;
        p->reason[0] = '\0';
        break;
    }
    if (rc != 0) {
        return rc;
    }
    if (a->reason != NULL) {
        bg_strlcpy(p->reason, a->reason, sizeof(p->reason));
    }
    /* |updated| of a suspended or revoked firm is the revocation time on the CRL: nothing
     * else changes a record in those states. */
    p->updated = now;
    return save(f, txn, &a->r, 0);
}

static int change(trust_firms *f, change_arg *a, trust_firm *out)
{
    if (!valid_id(a->id)) {
        return bg_errf(a->eb, BG_ERR_NOTFOUND, "firms: no firm with that id");
    }
    int rc = check_reason(a->reason, a->eb);
    if (rc != 0) {
        return rc;
    }
    if (a->act == ACT_APPROVE || a->act == ACT_RENEW) {
        if (a->days == 0) {
            a->days = TRUST_FIRM_DEFAULT_DAYS;
        }
        if (a->days < 1 || a->days > MAX_DAYS) {
            return bg_errf(a->eb, BG_ERR_INVAL, "days: must be 1..%d, got %d", MAX_DAYS, a->days);
        }
    }
    if (a->act == ACT_RENEW && a->csr_pem == NULL) {
        return bg_errf(a->eb, BG_ERR_INVAL, "csr: missing");
    }
    memset(&a->r, 0, sizeof(a->r));
    rc = run_txn(f, true, do_change, a);
    if (rc == 0 && out != NULL) {
        *out = a->r.pub;
    } else {
        trust_firm_dispose(&a->r.pub);
    }
    if (rc == BG_ERR_NOTFOUND) {
        bg_errf(a->eb, rc, "firms: no firm with that id");
    } else if (rc == BG_ERR_STORE || rc == BG_ERR_NOMEM) {
        bg_errf(a->eb, rc, "firms: cannot %s: %s", ACTION_VERB[a->act], bg_strerror(rc));
    }
    return rc;
}

int trust_firms_approve(trust_firms *f, const char *id, const char *ca_crt, const char *ca_key,
                        int days, trust_firm *out, bg_errbuf *eb)
{
    ca c = {0};
    int rc = ca_load(&c, ca_crt, ca_key, eb);
    if (rc != 0) {
        return rc;
    }
    change_arg a = {.act = ACT_APPROVE, .id = id, .ca = &c, .days = days, .eb = eb};
    rc = change(f, &a, out);
    ca_dispose(&c);
    return rc;
}

int trust_firms_renew(trust_firms *f, const char *id, const char *csr_pem, const char *ca_crt,
                      const char *ca_key, int days, trust_firm *out, bg_errbuf *eb)
{
    ca c = {0};
    int rc = ca_load(&c, ca_crt, ca_key, eb);
    if (rc != 0) {
        return rc;
    }
    change_arg a = {
        .act = ACT_RENEW, .id = id, .csr_pem = csr_pem, .ca = &c, .days = days, .eb = eb};
    rc = change(f, &a, out);
    ca_dispose(&c);
    return rc;
}

int trust_firms_reject(trust_firms *f, const char *id, const char *reason, trust_firm *out,
                       bg_errbuf *eb)
{
    change_arg a = {.act = ACT_REJECT, .id = id, .reason = reason ? reason : "", .eb = eb};
    return change(f, &a, out);
}

int trust_firms_suspend(trust_firms *f, const char *id, const char *reason, trust_firm *out,
                        bg_errbuf *eb)
{
    change_arg a = {.act = ACT_SUSPEND, .id = id, .reason = reason ? reason : "", .eb = eb};
    return change(f, &a, out);
}

int trust_firms_reinstate(trust_firms *f, const char *id, trust_firm *out, bg_errbuf *eb)
{
    change_arg a = {.act = ACT_REINSTATE, .id = id, .eb = eb};
    return change(f, &a, out);
}

int trust_firms_revoke(trust_firms *f, const char *id, const char *reason, trust_firm *out,
                       bg_errbuf *eb)
{
    change_arg a = {.act = ACT_REVOKE, .id = id, .reason = reason ? reason : "", .eb = eb};
    return change(f, &a, out);
}

/* ----------------------------------------------------------------------------------------
 * Revocations and the CRL */

typedef struct revoked_item {
    char firm_id[TRUST_FIRM_ID_LEN + 1];
    char spiffe_id[256];
    char serial[TRUST_FIRM_SERIAL_LEN + 1];
    int64_t not_after;
    int64_t revoked_at;
    trust_firm_status status;
} revoked_item;

typedef struct revoked_arg {
    int64_t now;
    revoked_item *items;
    size_t n, cap;
    /* trust_firms_crl only */
    const ca *ca;
    int days;
    bg_buf *pem_out;
    bg_errbuf *eb;
} revoked_arg;

/* Collects the unexpired certificates of every withdrawn firm into |a|. */
static int collect_revoked(trust_firms *f, MDB_txn *txn, revoked_arg *a)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, f->withdrawn, &cur);
    if (rc != 0) {
        return rc;
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char id[TRUST_FIRM_ID_LEN + 1];
        rec r;
        if (k.mv_size != TRUST_FIRM_ID_LEN) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(id, k.mv_data, TRUST_FIRM_ID_LEN);
        id[TRUST_FIRM_ID_LEN] = '\0';
        if ((rc = load(f, txn, id, &r)) != 0) {
            break;
        }
        for (size_t i = 0; i < r.ncerts && rc == 0; i++) {
            if (r.certs[i].not_after <= a->now) {
                continue;
            }
            if (a->n == a->cap) {
                size_t ncap = a->cap ? a->cap * 2 : 16;
                revoked_item *ni = realloc(a->items, ncap * sizeof(*ni));
                if (ni == NULL) {
                    rc = BG_ERR_NOMEM;
                    break;
                }
                a->items = ni;
                a->cap = ncap;
            }
            revoked_item *it = &a->items[a->n++];
            memcpy(it->firm_id, id, sizeof(id));
            bg_strlcpy(it->spiffe_id, r.pub.spiffe_id, sizeof(it->spiffe_id));
            memcpy(it->serial, r.certs[i].serial, sizeof(it->serial));
            it->not_after = r.certs[i].not_after;
            it->revoked_at = r.pub.updated;
            it->status = r.pub.status;
        }
        trust_firm_dispose(&r.pub);
        if (rc != 0) {
            break;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int do_revoked(trust_firms *f, MDB_txn *txn, void *arg)
{
    return collect_revoked(f, txn, arg);
}

int trust_firms_revoked(trust_firms *f, int64_t now,
                        int (*cb)(void *arg, const trust_firm_revocation *r), void *arg)
{
    revoked_arg a = {.now = now != 0 ? now : (int64_t)time(NULL)};
    int rc = run_txn(f, false, do_revoked, &a);
    for (size_t i = 0; rc == 0 && i < a.n; i++) {
        const revoked_item *it = &a.items[i];
        trust_firm_revocation r = {
            .firm_id = it->firm_id,
            .spiffe_id = it->spiffe_id,
            .serial = it->serial,
            .not_after = it->not_after,
            .revoked_at = it->revoked_at,
            .status = it->status,
        };
        rc = cb(arg, &r);
    }
    free(a.items);
    return rc;
}

static X509_REVOKED *crl_entry(const revoked_item *it)
{
    X509_REVOKED *rv = X509_REVOKED_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
    bool ok = rv != NULL && reason != NULL && BN_hex2bn(&bn, it->serial) > 0 &&
              (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
              X509_REVOKED_set_serialNumber(rv, serial) == 1 &&
              (when = ASN1_TIME_set(NULL, (time_t)it->revoked_at)) != NULL &&
              X509_REVOKED_set_revocationDate(rv, when) == 1 &&
              ASN1_ENUMERATED_set(reason, it->status == TRUST_FIRM_SUSPENDED
                                              ? CRL_REASON_CERTIFICATE_HOLD
                                              : CRL_REASON_CESSATION_OF_OPERATION) == 1 &&
              X509_REVOKED_add1_ext_i2d(rv, NID_crl_reason, reason, 0, 0) == 1;
    BN_free(bn);
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    ASN1_ENUMERATED_free(reason);
    if (!ok) {
        X509_REVOKED_free(rv);
        return NULL;
    }
    return rv;
}

static int do_crl(trust_firms *f, MDB_txn *txn, void *arg)
{
    revoked_arg *a = arg;
    MDB_val k = {sizeof(CRL_NUMBER_KEY) - 1, (void *)(uintptr_t)CRL_NUMBER_KEY}, v;
    uint64_t number = 0;
    int rc = mdb_get(txn, f->info, &k, &v);
    if (rc == 0 && v.mv_size == sizeof(number)) {
        memcpy(&number, v.mv_data, sizeof(number));
    } else if (rc == 0) {
        return MDB_CORRUPTED;
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    number++;
    v.mv_size = sizeof(number);
    v.mv_data = &number;
    if ((rc = mdb_put(txn, f->info, &k, &v, 0)) != 0 || (rc = collect_revoked(f, txn, a)) != 0) {
        return rc;
    }
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = NULL;
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    X509_EXTENSION *aki = NULL;
    BIO *bio = NULL;
    X509V3_CTX ctx;
    bool ok = crl != NULL && num != NULL && X509_CRL_set_version(crl, X509_CRL_VERSION_2) == 1 &&
              X509_CRL_set_issuer_name(crl, X509_get_subject_name(a->ca->crt)) == 1 &&
              (t = ASN1_TIME_set(NULL, (time_t)a->now)) != NULL &&
              X509_CRL_set1_lastUpdate(crl, t) == 1 &&
              ASN1_TIME_set(t, (time_t)(a->now + (int64_t)a->days * 86400)) != NULL &&
              X509_CRL_set1_nextUpdate(crl, t) == 1;
    for (size_t i = 0; ok && i < a->n; i++) {
        X509_REVOKED *rv = crl_entry(&a->items[i]);
        ok = rv != NULL && X509_CRL_add0_revoked(crl, rv) == 1;
        if (!ok) {
            X509_REVOKED_free(rv);
        }
    }
    if (ok) {
        X509V3_set_ctx(&ctx, a->ca->crt, NULL, NULL, crl, 0);
        aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        ok = aki != NULL && X509_CRL_add_ext(crl, aki, -1) == 1 &&
             ASN1_INTEGER_set_uint64(num, number) == 1 &&
             X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) == 1 && X509_CRL_sort(crl) == 1;
    }
    if (!ok) {
        rc = ossl_err(a->eb, BG_ERR_CERT, "firms: cannot build the CRL");
    } else if (X509_CRL_sign(crl, a->ca->key, sign_md(a->ca->key)) <= 0) {
        rc = ossl_err(a->eb, BG_ERR_CERT, "firms: cannot sign the CRL");
    } else {
        char *data;
        long n;
        bio = BIO_new(BIO_s_mem());
        if (bio == NULL || PEM_write_bio_X509_CRL(bio, crl) != 1 ||
            (n = BIO_get_mem_data(bio, &data)) <= 0) {
            rc = ossl_err(a->eb, BG_ERR_NOMEM, "firms: cannot encode the CRL");
        } else if ((rc = bg_buf_append(a->pem_out, data, (size_t)n)) != 0) {
            bg_errf(a->eb, rc, "firms: out of memory");
        }
    }
    BIO_free(bio);
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return rc;
}

int trust_firms_crl(trust_firms *f, const char *ca_crt, const char *ca_key, int days,
                    bg_buf *pem_out, bg_errbuf *eb)
{
    if (days == 0) {
        days = TRUST_FIRM_CRL_DEFAULT_DAYS;
    }
    if (days < 1 || days > MAX_DAYS) {
        return bg_errf(eb, BG_ERR_INVAL, "days: must be 1..%d, got %d", MAX_DAYS, days);
    }
    ca c = {0};
    int rc = ca_load(&c, ca_crt, ca_key, eb);
    if (rc != 0) {
        return rc;
    }
    size_t before = pem_out->len;
    revoked_arg a = {
        .now = (int64_t)time(NULL), .ca = &c, .days = days, .pem_out = pem_out, .eb = eb};
    rc = run_txn(f, true, do_crl, &a);
    if (rc != 0 && pem_out->len != before) {
        pem_out->len = before; /* the commit failed after the PEM was appended */
        pem_out->data[before] = 0;
    }
    if (rc == BG_ERR_STORE) {
        bg_errf(eb, rc, "firms: cannot record the CRL number: %s", bg_strerror(rc));
    }
    free(a.items);
    ca_dispose(&c);
    return rc;
}
