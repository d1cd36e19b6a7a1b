/* tests/unit/trust/test_firms.c: trust/firms.c through its header: registration numbers
 * (USCC check characters against an independent implementation, Hong Kong and Macau formats),
 * strict application JSON, every CSR refusal, and the whole lifecycle (apply, approve, renew,
 * suspend, reinstate, revoke, CRL, reopen) against a real city CA verified with OpenSSL's own
 * verifier. Everything lives in one mkdtemp() directory. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "trust/certs.h"
#include "trust/firms.h"

static char dir[64];
static char ca_crt[128], ca_key[128], hk_crt[128], hk_key[128], store_dir[128];

static const char ACME[] = "Acme Data Services Ltd";
static const char USCC_OK[] = "91350100M000100Y43";

/* ---- fixture ---------------------------------------------------------------------------- */

static void rm_tree(const char *d)
{
    DIR *dp = opendir(d);
    if (dp == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        char p[512];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            rm_tree(p);
        } else {
            unlink(p);
        }
    }
    closedir(dp);
    rmdir(d);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bg-test-firms-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    bg_errbuf eb = {{0}};
    snprintf(ca_crt, sizeof(ca_crt), "%s/gz-ca.crt", dir);
    snprintf(ca_key, sizeof(ca_key), "%s/gz-ca.key", dir);
    snprintf(hk_crt, sizeof(hk_crt), "%s/hk-ca.crt", dir);
    snprintf(hk_key, sizeof(hk_key), "%s/hk-ca.key", dir);
    if (trust_certs_ca_new("guangzhou", 365, ca_crt, ca_key, &eb) != 0 ||
        trust_certs_ca_new("hongkong", 365, hk_crt, hk_key, &eb) != 0) {
        fprintf(stderr, "setup: %s\n", eb.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rm_tree(dir);
    return 0;
}

/* Each lifecycle test gets a fresh store. */
static int store_setup(void **state)
{
    static int n;
    snprintf(store_dir, sizeof(store_dir), "%s/firms-%d", dir, n++);
    trust_firms *f = NULL;
    bg_errbuf eb = {{0}};
    if (trust_firms_open(&f, store_dir, &eb) != 0) {
        fprintf(stderr, "store: %s\n", eb.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int store_teardown(void **state)
{
    trust_firms_close(*state);
    return 0;
}

/* ---- CSRs and applications -------------------------------------------------------------- */

static EVP_PKEY *keygen(const char *kind)
{
    if (strcmp(kind, "RSA") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    }
    if (strcmp(kind, "ED25519") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", kind);
}

static char *req_pem(X509_REQ *req)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *out = strndup(data, (size_t)n);
    BIO_free(bio);
    return out;
}

/* A CSR for |org| (NULL: no O) with a |kind| key ("P-256", "P-384", "RSA", "ED25519"),
 * subject CN "ignored", and a SAN request for another firm's identity (always ignored).
 * |tamper| changes the subject after signing, so the signature no longer verifies. Returns a
 * malloc'd PEM; |*key_out| (if given) receives the key. */
static char *make_csr2(const char *kind, const char *org, bool tamper, EVP_PKEY **key_out)
{
    EVP_PKEY *key = keygen(kind);
    assert_non_null(key);
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    X509_NAME *name = X509_NAME_new();
    if (org != NULL) {
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                                    (const unsigned char *)org, -1, -1, 0),
                         1);
    }
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)"ignored", -1, -1, 0),
                     1);
    assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
                                              "URI:spiffe://guangzhou.gba/firm/other");
    assert_non_null(san);
    sk_X509_EXTENSION_push(exts, san);
    assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    const EVP_MD *md = strcmp(kind, "ED25519") == 0 ? NULL : EVP_sha256();
    assert_true(X509_REQ_sign(req, key, md) > 0);
    if (tamper) {
        X509_NAME_ENTRY *cn = X509_NAME_delete_entry(name, X509_NAME_entry_count(name) - 1);
        X509_NAME_ENTRY_free(cn);
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                    (const unsigned char *)"tampered", -1, -1, 0),
                         1);
        assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
    }
    char *pem = req_pem(req);
    X509_NAME_free(name);
    X509_REQ_free(req);
    if (key_out != NULL) {
        *key_out = key;
    } else {
        EVP_PKEY_free(key);
    }
    return pem;
}

static char *make_csr(const char *kind, const char *org)
{
    return make_csr2(kind, org, false, NULL);
}

/* An application JSON (malloc'd) with these members; |csr| NULL leaves it out. */
static char *app_json(const char *name, const char *regno, const char *csr)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:[s, s]}", "name", name, "registration_number", regno,
                          "contact", "ops@acme.example", "purposes", "科研", "公共服务");
    assert_non_null(o);
    if (csr != NULL) {
        json_object_set_new(o, "csr", json_string(csr));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Parses |json| expecting |want|; on failure the message must contain |needle|. */
static void expect_parse(const char *json, int want, const char *needle)
{
    trust_firm_app app;
    memset(&app, 0xa5, sizeof(app));
    bg_errbuf eb = {{0}};
    int rc = trust_firm_app_parse((const uint8_t *)json, strlen(json), &app, &eb);
    if (rc != want || (needle != NULL && strstr(eb.msg, needle) == NULL)) {
        fail_msg("parse: rc %d (want %d), message \"%s\" (want \"%s\")", rc, want, eb.msg,
                 needle ? needle : "");
    }
    if (rc == 0) {
        trust_firm_app_dispose(&app);
    }
}

static void expect_csr_refused(const char *csr, const char *needle)
{
    char *json = app_json(ACME, USCC_OK, csr);
    expect_parse(json, BG_ERR_INVAL, needle);
    free(json);
}

static void parse_ok(const char *name, const char *regno, const char *csr, trust_firm_app *out)
{
    char *json = app_json(name, regno, csr);
    bg_errbuf eb = {{0}};
    int rc = trust_firm_app_parse((const uint8_t *)json, strlen(json), out, &eb);
    if (rc != 0) {
        fail_msg("parse: %s", eb.msg);
    }
    free(json);
}

/* ---- registration numbers --------------------------------------------------------------- */

/* GB 32100-2015 written independently of firms.c: weights as powers of 3 mod 31. */
static char ref_check(const char *body17)
{
    static const char set[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    unsigned w = 1, sum = 0;
    for (int i = 0; i < 17; i++) {
        sum += (unsigned)(strchr(set, body17[i]) - set) * w;
        w = (w * 3) % 31;
    }
    return set[(31 - sum % 31) % 31];
}

static void test_trust_firm_uscc_check_valid(void **state)
{
    (void)state;
    bg_errbuf eb = {{0}};
    assert_int_equal(trust_firm_uscc_check(USCC_OK, &eb), 0);
    assert_int_equal(ref_check(USCC_OK), USCC_OK[17]);
    static const char *const bodies[] = {"91440300MA5DC1234", "12100000400000123",
                                         "5231010050132456K", "92440101L12345678",
                                         "Y1110000QWERTY012"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char code[19];
        snprintf(code, sizeof(code), "%s%c", bodies[i], ref_check(bodies[i]));
        if (trust_firm_uscc_check(code, &eb) != 0) {
            fail_msg("%s: %s", code, eb.msg);
        }
    }
}

static void test_trust_firm_uscc_check_changed(void **state)
{
    (void)state;
    char code[19];
    memcpy(code, USCC_OK, sizeof(code));
    code[9] = '1'; /* M000100Y4 -> M100100Y4 */
    char want[128];
    snprintf(want, sizeof(want), "registration_number: check character is 3, expected %c",
             ref_check(code));
    assert_int_not_equal(ref_check(code), '3');
    bg_errbuf eb = {{0}};
    assert_int_equal(trust_firm_uscc_check(code, &eb), BG_ERR_INVAL);
    assert_string_equal(eb.msg, want);
    /* a changed check character alone */
    memcpy(code, USCC_OK, sizeof(code));
    code[17] = '4';
    assert_int_equal(trust_firm_uscc_check(code, &eb), BG_ERR_INVAL);
    assert_string_equal(eb.msg, "registration_number: check character is 4, expected 3");
}

static void test_trust_firm_uscc_check_format(void **state)
{
    (void)state;
    bg_errbuf eb = {{0}};
    assert_int_equal(trust_firm_uscc_check("91350100M000100Y4", &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "18 characters, got 17"));
    assert_int_equal(trust_firm_uscc_check("91350100M000100I43", &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "character 'I' at position 16"));
    assert_int_equal(trust_firm_uscc_check("91350100m000100Y43", &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "position 9"));
    assert_int_equal(trust_firm_uscc_check("913501A0M000100Y43", &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "positions 3-8"));
}

static void check_jurisdiction(const char *regno, const char *jur_member, const char *want)
{
    char *csr = make_csr("P-256", ACME);
    json_t *o = json_pack("{s:s, s:s, s:s, s:[s], s:s}", "name", ACME, "registration_number", regno,
                          "contact", "x", "purposes", "科研", "csr", csr);
    if (jur_member != NULL) {
        json_object_set_new(o, "jurisdiction", json_string(jur_member));
    }
    char *json = json_dumps(o, JSON_COMPACT);
    trust_firm_app app;
    bg_errbuf eb = {{0}};
    int rc = trust_firm_app_parse((const uint8_t *)json, strlen(json), &app, &eb);
    if (want == NULL) {
        assert_int_equal(rc, BG_ERR_INVAL);
        assert_non_null(strstr(eb.msg, "registration_number: "));
    } else {
        if (rc != 0) {
            fail_msg("%s: %s", regno, eb.msg);
        }
        assert_string_equal(app.jurisdiction, want);
        assert_string_equal(app.registration_number, regno);
        trust_firm_app_dispose(&app);
    }
    free(json);
    json_decref(o);
    free(csr);
}

static void test_trust_firm_app_parse_hk_macau(void **state)
{
    (void)state;
    check_jurisdiction("12345678", NULL, "hongkong");
    check_jurisdiction("12345678-001", NULL, "hongkong");
    check_jurisdiction("12345678-001", "hongkong", "hongkong");
    check_jurisdiction("1234567-001", NULL, NULL);
    check_jurisdiction("12345678-01", NULL, NULL);
    check_jurisdiction("1234567A", NULL, NULL);
    check_jurisdiction("123456789", NULL, NULL);
    check_jurisdiction("1", NULL, "macau");
    check_jurisdiction("1234567", NULL, "macau");
    check_jurisdiction("12345678", "macau", "macau");
    check_jurisdiction("12345678-001", "macau", NULL);
    check_jurisdiction("123", "hongkong", NULL);
    check_jurisdiction(USCC_OK, NULL, "mainland");
    check_jurisdiction(USCC_OK, "mainland", "mainland");
    check_jurisdiction("12345678", "mainland", NULL);
}

/* ---- applications ----------------------------------------------------------------------- */

static void test_trust_firm_app_parse_valid(void **state)
{
    (void)state;
    static const char *const kinds[] = {"P-256", "ED25519"};
    for (size_t i = 0; i < 2; i++) {
        char *csr = make_csr(kinds[i], ACME);
        trust_firm_app app;
        parse_ok(ACME, USCC_OK, csr, &app);
        assert_string_equal(app.name, ACME);
        assert_string_equal(app.registration_number, USCC_OK);
        assert_string_equal(app.jurisdiction, "mainland");
        assert_string_equal(app.contact, "ops@acme.example");
        assert_int_equal(app.npurposes, 2);
        assert_string_equal(app.purposes[0], "科研");
        assert_string_equal(app.purposes[1], "公共服务");
        assert_string_equal(app.csr_pem, csr);
        trust_firm_app_dispose(&app);
        assert_null(app.csr_pem);
        free(csr);
    }
    /* Unicode names: the CSR's O must match byte for byte */
    char *csr = make_csr("P-256", "廣州數據服務有限公司");
    trust_firm_app app;
    parse_ok("廣州數據服務有限公司", "12345678", csr, &app);
    assert_string_equal(app.jurisdiction, "hongkong");
    trust_firm_app_dispose(&app);
    free(csr);
}

static void test_trust_firm_app_parse_strict(void **state)
{
    (void)state;
    char *csr = make_csr("P-256", ACME);
    char *good = app_json(ACME, USCC_OK, csr);
    char buf[8192];

    /* unknown member, duplicate member, trailing bytes, not an object */
    snprintf(buf, sizeof(buf), "{\"admin\":true,%s", good + 1);
    expect_parse(buf, BG_ERR_INVAL, "application: unknown member \"admin\"");
    snprintf(buf, sizeof(buf), "{\"name\":\"X\",%s", good + 1);
    expect_parse(buf, BG_ERR_INVAL, "application: invalid JSON");
    snprintf(buf, sizeof(buf), "%s x", good);
    expect_parse(buf, BG_ERR_INVAL, "application: invalid JSON");
    expect_parse("[1,2]", BG_ERR_INVAL, "application: must be a JSON object");
    expect_parse("", BG_ERR_INVAL, "application: invalid JSON");
    expect_parse("{\"name\":\"a\\u0000b\"}", BG_ERR_INVAL, "application: invalid JSON");
    /* missing and mistyped members */
    expect_parse("{\"name\":\"Acme\"}", BG_ERR_INVAL, "registration_number: missing");
    char *j = app_json(ACME, USCC_OK, NULL);
    expect_parse(j, BG_ERR_INVAL, "csr: missing");
    free(j);
    snprintf(buf, sizeof(buf), "{\"name\":5,\"registration_number\":\"1\",\"contact\":\"c\"}");
    expect_parse(buf, BG_ERR_INVAL, "name: must be a string");
    free(good);

    /* names */
    char longname[TRUST_FIRM_NAME_CHARS + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    j = app_json(longname, USCC_OK, csr);
    expect_parse(j, BG_ERR_INVAL, "name: longer than 200 characters");
    free(j);
    static const char *const bad_names[] = {"",         " Acme",      "Acme ",
                                            "Ac\x01me", "Ac\u202eme", "Ac\u200bme"};
    static const char *const why[] = {"name: must not be empty",
                                      "name: leading or trailing",
                                      "name: leading or trailing",
                                      "U+0001",
                                      "U+202E",
                                      "U+200B"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        j = app_json(bad_names[i], USCC_OK, csr);
        expect_parse(j, BG_ERR_INVAL, why[i]);
        free(j);
    }
    /* raw invalid UTF-8 is refused by the JSON parser */
    snprintf(buf, sizeof(buf), "{\"name\":\"Ac\xc3\x28me\"}");
    expect_parse(buf, BG_ERR_INVAL, "application: invalid JSON");

    /* purposes */
    static const char *const bad_purposes[] = {
        "[]",
        "\"科研\"",
        "[\"科研\",\"科研\"]",
        "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]",
        "[1]",
        "[\"\"]"};
    for (size_t i = 0; i < sizeof(bad_purposes) / sizeof(bad_purposes[0]); i++) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "name", ACME, "registration_number", USCC_OK,
                              "contact", "c", "csr", csr);
        json_object_set_new(o, "purposes", json_loads(bad_purposes[i], 0, NULL));
        j = json_dumps(o, JSON_COMPACT);
        expect_parse(j, BG_ERR_INVAL, "purposes: ");
        free(j);
        json_decref(o);
    }
    /* registration number with no recognizable format */
    j = app_json(ACME, "ABC-123", csr);
    expect_parse(j, BG_ERR_INVAL, "registration_number: not a mainland");
    free(j);
    /* too large */
    char *big = malloc(TRUST_FIRM_APP_MAX + 2);
    memset(big, ' ', TRUST_FIRM_APP_MAX + 1);
    big[TRUST_FIRM_APP_MAX + 1] = '\0';
    expect_parse(big, BG_ERR_INVAL, "application: larger than");
    free(big);
    free(csr);
}

static void test_trust_firm_app_parse_csr_refusals(void **state)
{
    (void)state;
    char *csr = make_csr("RSA", ACME);
    expect_csr_refused(csr, "csr: key is RSA-2048 (weak or unsupported); use EC P-256 or "
                            "Ed25519");
    free(csr);
    csr = make_csr("P-384", ACME);
    expect_csr_refused(csr, "csr: key is EC P-384 (weak or unsupported)");
    free(csr);
    csr = make_csr("P-256", "Other Firm Ltd");
    expect_csr_refused(csr, "csr: subject O \"Other Firm Ltd\" does not match the "
                            "application's name \"Acme Data Services Ltd\"");
    free(csr);
    csr = make_csr("P-256", NULL);
    expect_csr_refused(csr, "csr: subject has no O");
    free(csr);
    csr = make_csr2("P-256", ACME, true, NULL);
    expect_csr_refused(csr, "csr: signature does not verify");
    free(csr);
    /* two CSRs */
    char *a = make_csr("P-256", ACME), *b = make_csr("P-256", ACME);
    char two[8192];
    snprintf(two, sizeof(two), "%s%s", a, b);
    expect_csr_refused(two, "csr: more than one PEM block");
    /* text after the END line, PEM headers */
    snprintf(two, sizeof(two), "%sjunk\n", a);
    expect_csr_refused(two, "csr: text after the END line");
    /* not a CSR: garbage, a certificate, broken base64 */
    expect_csr_refused("hello", "csr: not a PEM certificate request");
    FILE *fp = fopen(ca_crt, "r");
    char cert[8192];
    size_t n = fread(cert, 1, sizeof(cert) - 1, fp);
    fclose(fp);
    cert[n] = '\0';
    expect_csr_refused(cert, "csr: not a PEM certificate request");
    snprintf(two, sizeof(two), "%s", a);
    char *body = strchr(two, '\n') + 1;
    body[3] = '!';
    expect_csr_refused(two, "csr: malformed PEM");
    /* a CERTIFICATE REQUEST block holding a certificate's DER */
    char *begin = strstr(cert, "-----BEGIN CERTIFICATE-----");
    char *end = strstr(cert, "-----END CERTIFICATE-----");
    assert_non_null(begin);
    assert_non_null(end);
    *end = '\0';
    snprintf(two, sizeof(two),
             "-----BEGIN CERTIFICATE REQUEST-----%s-----END CERTIFICATE REQUEST-----\n",
             begin + strlen("-----BEGIN CERTIFICATE-----"));
    expect_csr_refused(two, "csr: the PEM block is not a DER certificate request");
    free(a);
    free(b);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static X509 *first_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);
    return x;
}

static X509 *read_ca(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

/* Verifies |leaf| for TLS client use against the Guangzhou CA, optionally with |crl|. */
static int verify_leaf(X509 *leaf, X509_CRL *crl)
{
    X509_STORE *store = X509_STORE_new();
    X509 *ca = read_ca(ca_crt);
    X509_STORE_add_cert(store, ca);
    if (crl != NULL) {
        X509_STORE_add_crl(store, crl);
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    int ok = X509_verify_cert(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(ca);
    ERR_clear_error();
    return ok == 1 ? X509_V_OK : err;
}

static void check_issued(const trust_firm *r, EVP_PKEY *key, int days)
{
    X509 *leaf = first_cert(r->cert_pem);
    assert_int_equal(verify_leaf(leaf, NULL), X509_V_OK);
    /* the CA follows the leaf */
    const char *second = strstr(r->cert_pem + 10, "-----BEGIN CERTIFICATE-----");
    assert_non_null(second);
    X509 *ca = first_cert(second), *ca_file = read_ca(ca_crt);
    assert_int_equal(X509_cmp(ca, ca_file), 0);
    /* key from the CSR, SAN = our SPIFFE id only, EKU clientAuth only, subject */
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), key), 1);
    GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(names), 1);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, 0);
    assert_int_equal(gn->type, GEN_URI);
    assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
                        r->spiffe_id);
    GENERAL_NAMES_free(names);
    assert_true((X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) != 0);
    assert_int_equal(X509_get_extended_key_usage(leaf), XKU_SSL_CLIENT);
    char cn[256];
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, r->app.name);
    /* serial, lifetime */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
    char *hex = BN_bn2hex(bn);
    for (char *p = hex; *p; p++) {
        *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    }
    assert_string_equal(hex, r->cert_serial);
    assert_int_equal(strlen(r->cert_serial), TRUST_FIRM_SERIAL_LEN);
    OPENSSL_free(hex);
    BN_free(bn);
    int pday = 0, psec = 0;
    assert_int_equal(ASN1_TIME_diff(&pday, &psec, NULL, X509_get0_notAfter(leaf)), 1);
    assert_true(pday == days || (pday == days - 1 && psec > 86000));
    int64_t now = (int64_t)time(NULL);
    assert_true(r->cert_not_after >= now + (int64_t)days * 86400 - 60);
    assert_true(r->cert_not_after <= now + (int64_t)days * 86400);
    X509_free(leaf);
    X509_free(ca);
    X509_free(ca_file);
}

typedef struct seen {
    size_t n;
    char serials[8][TRUST_FIRM_SERIAL_LEN + 1];
    trust_firm_status status[8];
    char spiffe[8][256];
} seen;

static int on_revoked(void *arg, const trust_firm_revocation *r)
{
    seen *s = arg;
    if (s->n < 8) {
        snprintf(s->serials[s->n], sizeof(s->serials[0]), "%s", r->serial);
        snprintf(s->spiffe[s->n], sizeof(s->spiffe[0]), "%s", r->spiffe_id);
        s->status[s->n] = r->status;
    }
    s->n++;
    return 0;
}

static bool seen_has(const seen *s, const char *serial)
{
    for (size_t i = 0; i < s->n && i < 8; i++) {
        if (strcmp(s->serials[i], serial) == 0) {
            return true;
        }
    }
    return false;
}

static X509_CRL *make_crl(trust_firms *f)
{
    bg_buf pem;
    bg_buf_init(&pem);
    bg_errbuf eb = {{0}};
    if (trust_firms_crl(f, ca_crt, ca_key, 0, &pem, &eb) != 0) {
        fail_msg("crl: %s", eb.msg);
    }
    BIO *bio = BIO_new_mem_buf(pem.data, (int)pem.len);
    X509_CRL *crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
    BIO_free(bio);
    bg_buf_dispose(&pem);
    assert_non_null(crl);
    X509 *ca = read_ca(ca_crt);
    assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
    X509_free(ca);
    assert_int_equal(X509_CRL_get_version(crl), 1); /* v2 */
    int day = 0, sec = 0;
    assert_int_equal(ASN1_TIME_diff(&day, &sec, NULL, X509_CRL_get0_nextUpdate(crl)), 1);
    assert_true(day == 7 || (day == 6 && sec > 86000));
    return crl;
}

static long crl_number(X509_CRL *crl)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(n);
    long v = ASN1_INTEGER_get(n);
    ASN1_INTEGER_free(n);
    return v;
}

/* The reason code of |serial| on |crl|, or -1 when it is not listed. */
static int crl_reason(X509_CRL *crl, const char *serial)
{
    BIGNUM *bn = NULL;
    BN_hex2bn(&bn, serial);
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    X509_REVOKED *rv = NULL;
    int found = X509_CRL_get0_by_serial(crl, &rv, ai);
    ASN1_INTEGER_free(ai);
    if (found != 1) {
        return -1;
    }
    ASN1_ENUMERATED *e = X509_REVOKED_get_ext_d2i(rv, NID_crl_reason, NULL, NULL);
    assert_non_null(e);
    int reason = (int)ASN1_ENUMERATED_get(e);
    ASN1_ENUMERATED_free(e);
    return reason;
}

static void expect_transition(int rc, const bg_errbuf *eb, const char *msg)
{
    assert_int_equal(rc, BG_ERR_INVAL);
    assert_string_equal(eb->msg, msg);
}

static void test_trust_firms_lifecycle(void **state)
{
    trust_firms *f = *state;
    bg_errbuf eb = {{0}};
    EVP_PKEY *key1 = NULL, *key2 = NULL;
    char *csr = make_csr2("P-256", ACME, false, &key1);
    trust_firm_app app;
    parse_ok(ACME, USCC_OK, csr, &app);

    /* apply; the same registration number again is a conflict */
    trust_firm r;
    assert_int_equal(trust_firms_apply(f, &app, "guangzhou", &r, &eb), 0);
    assert_int_equal(r.status, TRUST_FIRM_PENDING);
    assert_int_equal(strlen(r.id), TRUST_FIRM_ID_LEN);
    char id[TRUST_FIRM_ID_LEN + 1], want[300];
    memcpy(id, r.id, sizeof(id));
    snprintf(want, sizeof(want), "spiffe://guangzhou.gba/firm/%s", id);
    assert_string_equal(r.spiffe_id, want);
    assert_string_equal(r.app.csr_pem, csr);
    assert_string_equal(r.cert_serial, "");
    assert_null(r.cert_pem);
    trust_firm_dispose(&r);
    memset(&r, 0x5a, sizeof(r));
    assert_int_equal(trust_firms_apply(f, &app, "guangzhou", &r, &eb), BG_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "already has an application (pending)"));
    assert_int_equal(r.status, 0x5a5a5a5a); /* untouched */
    assert_int_equal(trust_firms_apply(f, &app, "Bad City", NULL, &eb), BG_ERR_INVAL);

    /* get, unknown ids */
    assert_int_equal(trust_firms_get(f, id, &r), 0);
    assert_string_equal(r.app.name, ACME);
    assert_string_equal(r.app.purposes[1], "公共服务");
    trust_firm_dispose(&r);
    assert_int_equal(trust_firms_get(f, "00000000000000000000000000000000", &r), BG_ERR_NOTFOUND);
    assert_int_equal(trust_firms_get(f, "../etc", &r), BG_ERR_NOTFOUND);
    assert_int_equal(trust_firms_suspend(f, "ffffffffffffffffffffffffffffffff", NULL, NULL, &eb),
                     BG_ERR_NOTFOUND);

    /* transitions not allowed while pending */
    expect_transition(trust_firms_suspend(f, id, "x", NULL, &eb), &eb,
                      "cannot suspend a pending firm");
    expect_transition(trust_firms_reinstate(f, id, NULL, &eb), &eb,
                      "cannot reinstate a pending firm");
    expect_transition(trust_firms_revoke(f, id, NULL, NULL, &eb), &eb,
                      "cannot revoke a pending firm");

    /* a CA of another city cannot issue this firm's identity */
    assert_int_equal(trust_firms_approve(f, id, hk_crt, hk_key, 0, NULL, &eb), BG_ERR_CERT);
    assert_int_equal(trust_firms_approve(f, id, ca_crt, ca_key, 400, NULL, &eb), BG_ERR_INVAL);
    assert_int_equal(trust_firms_approve(f, id, ca_crt, hk_key, 0, NULL, &eb), BG_ERR_CERT);

    /* approve: a 90-day client certificate that verifies */
    assert_int_equal(trust_firms_approve(f, id, ca_crt, ca_key, 0, &r, &eb), 0);
    assert_int_equal(r.status, TRUST_FIRM_APPROVED);
    assert_null(r.app.csr_pem);
    check_issued(&r, key1, 90);
    char serial1[TRUST_FIRM_SERIAL_LEN + 1];
    memcpy(serial1, r.cert_serial, sizeof(serial1));
    X509 *leaf1 = first_cert(r.cert_pem);
    trust_firm_dispose(&r);
    expect_transition(trust_firms_approve(f, id, ca_crt, ca_key, 0, NULL, &eb), &eb,
                      "cannot approve an approved application");
    expect_transition(trust_firms_reject(f, id, "late", NULL, &eb), &eb,
                      "cannot reject an approved application");
    expect_transition(trust_firms_reinstate(f, id, NULL, &eb), &eb,
                      "cannot reinstate an approved firm");

    /* renew: new key, new serial, same identity; CSR checks apply */
    char *bad = make_csr("P-256", "Someone Else");
    assert_int_equal(trust_firms_renew(f, id, bad, ca_crt, ca_key, 30, NULL, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "csr: subject O \"Someone Else\""));
    free(bad);
    bad = make_csr("RSA", ACME);
    assert_int_equal(trust_firms_renew(f, id, bad, ca_crt, ca_key, 30, NULL, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "RSA-2048"));
    free(bad);
    char *csr2 = make_csr2("ED25519", ACME, false, &key2);
    assert_int_equal(trust_firms_renew(f, id, csr2, ca_crt, ca_key, 30, &r, &eb), 0);
    check_issued(&r, key2, 30);
    assert_string_not_equal(r.cert_serial, serial1);
    char serial2[TRUST_FIRM_SERIAL_LEN + 1];
    memcpy(serial2, r.cert_serial, sizeof(serial2));
    X509 *leaf2 = first_cert(r.cert_pem);
    trust_firm_dispose(&r);

    /* nothing is withdrawn yet */
    seen s = {0};
    assert_int_equal(trust_firms_revoked(f, 0, on_revoked, &s), 0);
    assert_int_equal(s.n, 0);
    X509_CRL *crl = make_crl(f);
    assert_null(X509_CRL_get_REVOKED(crl)); /* RFC 5280 §5.1.2.6: absent when empty */
    long number = crl_number(crl);
    X509_CRL_free(crl);

    /* suspend: both unexpired certificates are on hold */
    assert_int_equal(trust_firms_suspend(f, id, "audit pending", &r, &eb), 0);
    assert_int_equal(r.status, TRUST_FIRM_SUSPENDED);
    assert_string_equal(r.reason, "audit pending");
    trust_firm_dispose(&r);
    memset(&s, 0, sizeof(s));
    assert_int_equal(trust_firms_revoked(f, 0, on_revoked, &s), 0);
    assert_int_equal(s.n, 2);
    assert_true(seen_has(&s, serial1) && seen_has(&s, serial2));
    assert_int_equal(s.status[0], TRUST_FIRM_SUSPENDED);
    assert_string_equal(s.spiffe[0], want);
    crl = make_crl(f);
    assert_int_equal(crl_number(crl), number + 1);
    assert_int_equal(crl_reason(crl, serial1), CRL_REASON_CERTIFICATE_HOLD);
    assert_int_equal(crl_reason(crl, serial2), CRL_REASON_CERTIFICATE_HOLD);
    assert_int_equal(verify_leaf(leaf1, crl), X509_V_ERR_CERT_REVOKED);
    X509_CRL_free(crl);
    expect_transition(trust_firms_renew(f, id, csr2, ca_crt, ca_key, 0, NULL, &eb), &eb,
                      "cannot renew a suspended firm");
    expect_transition(trust_firms_suspend(f, id, NULL, NULL, &eb), &eb,
                      "cannot suspend a suspended firm");

    /* reinstate: off the list again */
    assert_int_equal(trust_firms_reinstate(f, id, &r, &eb), 0);
    assert_int_equal(r.status, TRUST_FIRM_APPROVED);
    assert_string_equal(r.reason, "");
    trust_firm_dispose(&r);
    memset(&s, 0, sizeof(s));
    assert_int_equal(trust_firms_revoked(f, 0, on_revoked, &s), 0);
    assert_int_equal(s.n, 0);
    crl = make_crl(f);
    assert_int_equal(verify_leaf(leaf2, crl), X509_V_OK);
    X509_CRL_free(crl);

    /* revoke: final */
    assert_int_equal(trust_firms_revoke(f, id, "contract ended", &r, &eb), 0);
    assert_int_equal(r.status, TRUST_FIRM_REVOKED);
    trust_firm_dispose(&r);
    crl = make_crl(f);
    assert_int_equal(crl_reason(crl, serial1), CRL_REASON_CESSATION_OF_OPERATION);
    assert_int_equal(crl_reason(crl, serial2), CRL_REASON_CESSATION_OF_OPERATION);
    assert_int_equal(verify_leaf(leaf2, crl), X509_V_ERR_CERT_REVOKED);
    X509_CRL_free(crl);
    /* past the longer certificate's expiry nothing needs listing */
    memset(&s, 0, sizeof(s));
    assert_int_equal(trust_firms_revoked(f, (int64_t)time(NULL) + 91 * 86400, on_revoked, &s), 0);
    assert_int_equal(s.n, 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(trust_firms_revoked(f, (int64_t)time(NULL) + 31 * 86400, on_revoked, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.serials[0], serial1);
    expect_transition(trust_firms_reinstate(f, id, NULL, &eb), &eb,
                      "cannot reinstate a revoked firm");
    expect_transition(trust_firms_approve(f, id, ca_crt, ca_key, 0, NULL, &eb), &eb,
                      "cannot approve a revoked application");
    expect_transition(trust_firms_revoke(f, id, NULL, NULL, &eb), &eb,
                      "cannot revoke a revoked firm");
    /* the number stays taken */
    assert_int_equal(trust_firms_apply(f, &app, "guangzhou", NULL, &eb), BG_ERR_EXISTS);
    assert_non_null(strstr(eb.msg, "(revoked)"));

    /* reopen: everything is still there */
    trust_firms_close(f);
    assert_int_equal(trust_firms_open(&f, store_dir, &eb), 0);
    *state = f;
    assert_int_equal(trust_firms_get(f, id, &r), 0);
    assert_int_equal(r.status, TRUST_FIRM_REVOKED);
    assert_string_equal(r.reason, "contract ended");
    assert_string_equal(r.cert_serial, serial2);
    assert_non_null(r.cert_pem);
    trust_firm_dispose(&r);
    crl = make_crl(f);
    assert_int_equal(crl_number(crl), number + 4);
    assert_int_equal(crl_reason(crl, serial1), CRL_REASON_CESSATION_OF_OPERATION);
    X509_CRL_free(crl);
    struct stat st;
    assert_int_equal(stat(store_dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    X509_free(leaf1);
    X509_free(leaf2);
    EVP_PKEY_free(key1);
    EVP_PKEY_free(key2);
    trust_firm_app_dispose(&app);
    free(csr);
    free(csr2);
}

static int count_cb(void *arg, const trust_firm *firm)
{
    size_t *n = arg;
    (void)firm;
    (*n)++;
    return 0;
}

static int stop_cb(void *arg, const trust_firm *firm)
{
    (void)arg;
    (void)firm;
    return 42;
}

static void test_trust_firms_reject_and_reapply(void **state)
{
    trust_firms *f = *state;
    bg_errbuf eb = {{0}};
    char *csr = make_csr("P-256", ACME);
    trust_firm_app app;
    parse_ok(ACME, "12345678-001", csr, &app);
    trust_firm r;
    assert_int_equal(trust_firms_apply(f, &app, "guangzhou", &r, &eb), 0);
    char id[TRUST_FIRM_ID_LEN + 1];
    memcpy(id, r.id, sizeof(id));
    trust_firm_dispose(&r);
    /* the same number in another jurisdiction is another registration */
    trust_firm_app mo;
    parse_ok(ACME, "1234567", csr, &mo);
    assert_int_equal(trust_firms_apply(f, &mo, "guangzhou", NULL, &eb), 0);

    assert_int_equal(trust_firms_reject(f, id, "bad\nreason", NULL, &eb), BG_ERR_INVAL);
    assert_int_equal(trust_firms_reject(f, id, "incomplete documents", &r, &eb), 0);
    assert_int_equal(r.status, TRUST_FIRM_REJECTED);
    assert_string_equal(r.reason, "incomplete documents");
    trust_firm_dispose(&r);
    expect_transition(trust_firms_approve(f, id, ca_crt, ca_key, 0, NULL, &eb), &eb,
                      "cannot approve a rejected application");
    expect_transition(trust_firms_reject(f, id, NULL, NULL, &eb), &eb,
                      "cannot reject a rejected application");
    /* a rejected number may apply again, under a new id */
    assert_int_equal(trust_firms_apply(f, &app, "guangzhou", &r, &eb), 0);
    assert_string_not_equal(r.id, id);
    trust_firm_dispose(&r);

    size_t n = 0;
    assert_int_equal(trust_firms_list(f, 0, count_cb, &n), 0);
    assert_int_equal(n, 3);
    n = 0;
    assert_int_equal(trust_firms_list(f, TRUST_FIRM_PENDING, count_cb, &n), 0);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_equal(trust_firms_list(f, TRUST_FIRM_REJECTED, count_cb, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(trust_firms_list(f, 0, stop_cb, NULL), 42);
    assert_string_equal(trust_firm_status_name(TRUST_FIRM_SUSPENDED), "suspended");

    trust_firm_app_dispose(&app);
    trust_firm_app_dispose(&mo);
    free(csr);
}

static void test_trust_firms_open_errors(void **state)
{
    (void)state;
    trust_firms *f = NULL;
    bg_errbuf eb = {{0}};
    char p[256];
    snprintf(p, sizeof(p), "%s/gz-ca.crt/sub", dir);
    assert_int_equal(trust_firms_open(&f, p, &eb), BG_ERR_STORE);
    assert_null(f);
    assert_non_null(strstr(eb.msg, p));
    trust_firms_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_firm_uscc_check_valid),
        cmocka_unit_test(test_trust_firm_uscc_check_changed),
        cmocka_unit_test(test_trust_firm_uscc_check_format),
        cmocka_unit_test(test_trust_firm_app_parse_hk_macau),
        cmocka_unit_test(test_trust_firm_app_parse_valid),
        cmocka_unit_test(test_trust_firm_app_parse_strict),
        cmocka_unit_test(test_trust_firm_app_parse_csr_refusals),
        cmocka_unit_test_setup_teardown(test_trust_firms_lifecycle, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_trust_firms_reject_and_reapply, store_setup,
                                        store_teardown),
        cmocka_unit_test(test_trust_firms_open_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
