/* tests/unit/trust/test_certs.c: trust/certs.c through its header: CA and leaf generation,
 * verification of what was issued with OpenSSL's own verifier, SANs, EKUs, name constraints,
 * expiry, file modes and error messages. Everything lives in one mkdtemp() directory. */
#include <arpa/inet.h>
#include <errno.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "trust/certs.h"

static char dir[64];
static char ca_crt[128], ca_key[128];

static const char *path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* Removes the flat fixture directory |d| and the files in it. */
static int rm_dir(const char *d)
{
    DIR *dp = opendir(d);
    if (dp == NULL) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        char p[512];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
        unlink(p);
    }
    closedir(dp);
    return rmdir(d);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bg-test-certs-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    bg_errbuf eb = {{0}};
    path_in(ca_crt, sizeof(ca_crt), "ca.crt");
    path_in(ca_key, sizeof(ca_key), "ca.key");
    if (trust_certs_ca_new("guangzhou", 30, ca_crt, ca_key, &eb) != 0) {
        fprintf(stderr, "setup: %s\n", eb.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return rm_dir(dir);
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

/* Verifies |leaf| against the test CA for |purpose|; returns the X509_V_* result. */
static int verify_with(X509 *leaf, const char *ca_path, int purpose)
{
    X509 *ca = read_cert(ca_path);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    int ok = X509_verify_cert(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(ca);
    ERR_clear_error();
    assert_true(ok == 1 ? err == X509_V_OK : err != X509_V_OK);
    return err;
}

/* Collects the SANs of |x| as "URI:..", "DNS:..", "IP:a.b.c.d" / "IP:v6" lines in |buf|. */
static void san_text(X509 *x, char *buf, size_t cap)
{
    buf[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(names);
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        char one[300];
        if (gn->type == GEN_URI || gn->type == GEN_DNS) {
            const ASN1_IA5STRING *s = gn->d.ia5;
            snprintf(one, sizeof(one), "%s:%.*s;", gn->type == GEN_URI ? "URI" : "DNS",
                     ASN1_STRING_length(s), (const char *)ASN1_STRING_get0_data(s));
        } else if (gn->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN];
            int len = ASN1_STRING_length(gn->d.iPAddress);
            assert_true(len == 4 || len == 16);
            assert_non_null(inet_ntop(len == 4 ? AF_INET : AF_INET6,
                                      ASN1_STRING_get0_data(gn->d.iPAddress), ip, sizeof(ip)));
            snprintf(one, sizeof(one), "IP:%s;", ip);
        } else {
            snprintf(one, sizeof(one), "other;");
        }
        strncat(buf, one, cap - strlen(buf) - 1);
    }
    GENERAL_NAMES_free(names);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void test_trust_certs_ca_new_is_self_signed_ca(void **state)
{
    (void)state;
    X509 *ca = read_cert(ca_crt);
    assert_int_equal(X509_check_ca(ca), 1);
    assert_int_equal(X509_check_issued(ca, ca), X509_V_OK);
    assert_int_equal(verify_with(ca, ca_crt, X509_PURPOSE_ANY), X509_V_OK);

    char cn[128];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn,
                                          sizeof(cn)) > 0);
    assert_string_equal(cn, "guangzhou city CA");
    char sans[512];
    san_text(ca, sans, sizeof(sans));
    assert_string_equal(sans, "URI:spiffe://guangzhou.gba;");
    /* basicConstraints is critical, and the CA is limited to its own trust domain. */
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_true(bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(ca, NID_name_constraints, &crit, NULL);
    assert_non_null(nc);
    assert_int_equal(crit, 1);
    NAME_CONSTRAINTS_free(nc);
    assert_non_null(X509_get0_subject_key_id(ca));
    assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(ca)), 256);
    assert_int_equal(X509_get_signature_nid(ca), NID_ecdsa_with_SHA256);
    X509_free(ca);

    assert_int_equal(file_mode(ca_key), 0600);
    assert_int_equal(file_mode(ca_crt), 0644);
}

static void test_trust_certs_ca_new_bad_city(void **state)
{
    (void)state;
    char crt[128], key[128];
    bg_errbuf eb = {{0}};
    path_in(crt, sizeof(crt), "bad.crt");
    path_in(key, sizeof(key), "bad.key");
    assert_int_equal(trust_certs_ca_new("Guangzhou", 0, crt, key, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "Guangzhou"));
    assert_int_equal(trust_certs_ca_new("a,b", 0, crt, key, &eb), BG_ERR_INVAL);
    assert_int_equal(trust_certs_ca_new("", 0, crt, key, &eb), BG_ERR_INVAL);
    assert_int_equal(trust_certs_ca_new("x", -1, crt, key, &eb), BG_ERR_INVAL);
    assert_int_equal(access(crt, F_OK), -1);
}

static void test_trust_certs_issue_client_verifies(void **state)
{
    (void)state;
    char crt[128], key[128], sans[512];
    bg_errbuf eb = {{0}};
    trust_cert_req req = {.spiffe_id = "spiffe://guangzhou.gba/firm/acme"};
    path_in(crt, sizeof(crt), "firm.crt");
    path_in(key, sizeof(key), "firm.key");
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), 0);

    X509 *x = read_cert(crt);
    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    /* clientAuth only: not usable as a TLS server certificate. */
    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_SSL_SERVER),
                     X509_V_ERR_INVALID_PURPOSE);
    assert_int_equal(X509_check_ca(x), 0);
    san_text(x, sans, sizeof(sans));
    assert_string_equal(sans, "URI:spiffe://guangzhou.gba/firm/acme;");
    uint32_t xku = X509_get_extended_key_usage(x);
    assert_true(xku & XKU_SSL_CLIENT);
    assert_false(xku & XKU_SSL_SERVER);
    char cn[128];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                          sizeof(cn)) > 0);
    assert_string_equal(cn, "guangzhou.gba/firm/acme");
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    assert_int_equal(ASN1_STRING_length(serial), 16);
    assert_non_null(X509_get0_authority_key_id(x));
    X509_free(x);

    /* The key file matches the certificate and is private. */
    FILE *f = fopen(key, "r");
    assert_non_null(f);
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(pkey);
    x = read_cert(crt);
    assert_int_equal(X509_check_private_key(x, pkey), 1);
    X509_free(x);
    EVP_PKEY_free(pkey);
    assert_int_equal(file_mode(key), 0600);
}

static void test_trust_certs_issue_server_sans_and_ekus(void **state)
{
    (void)state;
    char crt[128], key[128], sans[512];
    bg_errbuf eb = {{0}};
    trust_cert_req req = {.spiffe_id = "spiffe://guangzhou.gba/gateway", .server = true};
    path_in(crt, sizeof(crt), "gw.crt");
    path_in(key, sizeof(key), "gw.key");
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), 0);
    X509 *x = read_cert(crt);
    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    san_text(x, sans, sizeof(sans));
    assert_string_equal(sans, "URI:spiffe://guangzhou.gba/gateway;DNS:localhost;"
                              "IP:127.0.0.1;IP:::1;");
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
    X509_free(x);
}

static void test_trust_certs_issue_gateway_role_is_server(void **state)
{
    (void)state;
    char crt[128], key[128];
    bg_errbuf eb = {{0}};
    /* Gateways dial peers and accept connections: usable both ways even without .server. */
    trust_cert_req req = {.spiffe_id = "spiffe://guangzhou.gba/gateway"};
    path_in(crt, sizeof(crt), "gw2.crt");
    path_in(key, sizeof(key), "gw2.key");
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), 0);
    X509 *x = read_cert(crt);
    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    X509_free(x);
}

static void test_trust_certs_issue_expired(void **state)
{
    (void)state;
    char crt[128], key[128];
    bg_errbuf eb = {{0}};
    trust_cert_req req = {
        .spiffe_id = "spiffe://guangzhou.gba/firm/old", .days = 1, .not_before_offset_s = -3 * 86400};
    path_in(crt, sizeof(crt), "old.crt");
    path_in(key, sizeof(key), "old.key");
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), 0);
    X509 *x = read_cert(crt);
    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_CERT_HAS_EXPIRED);
    X509_free(x);

    req = (trust_cert_req){
        .spiffe_id = "spiffe://guangzhou.gba/firm/future", .days = 1, .not_before_offset_s = 3600};
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), 0);
    x = read_cert(crt);
    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_CERT_NOT_YET_VALID);
    X509_free(x);
}

static void test_trust_certs_issue_overwrites_and_fixes_mode(void **state)
{
    (void)state;
    char crt[128], key[128];
    bg_errbuf eb = {{0}};
    path_in(crt, sizeof(crt), "ow.crt");
    path_in(key, sizeof(key), "ow.key");
    FILE *f = fopen(key, "w");
    assert_non_null(f);
    fputs("old contents, much longer than nothing at all ...............................\n", f);
    fclose(f);
    assert_int_equal(chmod(key, 0644), 0);
    trust_cert_req req = {.spiffe_id = "spiffe://guangzhou.gba/regulator/demo"};
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), 0);
    assert_int_equal(file_mode(key), 0600);
    f = fopen(key, "r");
    assert_non_null(f);
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(pkey);
    EVP_PKEY_free(pkey);
}

static void test_trust_certs_issue_other_trust_domain(void **state)
{
    (void)state;
    char crt[128], key[128];
    bg_errbuf eb = {{0}};
    trust_cert_req req = {.spiffe_id = "spiffe://shenzhen.gba/gateway", .server = true};
    path_in(crt, sizeof(crt), "sz.crt");
    path_in(key, sizeof(key), "sz.key");
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), BG_ERR_IDENTITY);
    assert_non_null(strstr(eb.msg, "outside the trust domain spiffe://guangzhou.gba"));
    /* A prefix of the trust domain is not the trust domain. */
    req.spiffe_id = "spiffe://guangzhou.gbax/gateway";
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), BG_ERR_IDENTITY);
    assert_int_equal(access(crt, F_OK), -1);
}

/* Even a certificate that our issuer would refuse (here: built by hand with the CA's key)
 * fails verification, because the CA is name-constrained to its own trust domain. */
static void test_trust_certs_ca_new_name_constraint_enforced(void **state)
{
    (void)state;
    X509 *ca = read_cert(ca_crt);
    FILE *f = fopen(ca_key, "r");
    assert_non_null(f);
    EVP_PKEY *cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(cakey);
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);

    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(ca)), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
                                              "URI:spiffe://shenzhen.gba/gateway");
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);

    assert_int_equal(verify_with(x, ca_crt, X509_PURPOSE_ANY), X509_V_ERR_PERMITTED_VIOLATION);
    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
    X509_free(ca);
}

static void test_trust_certs_issue_bad_ca(void **state)
{
    (void)state;
    char crt[128], key[128], other_crt[128], other_key[128], leaf[128], garbage[128];
    bg_errbuf eb = {{0}};
    trust_cert_req req = {.spiffe_id = "spiffe://guangzhou.gba/firm/x"};
    path_in(crt, sizeof(crt), "x.crt");
    path_in(key, sizeof(key), "x.key");

    /* Missing CA file: the path and the reason. */
    path_in(garbage, sizeof(garbage), "missing.crt");
    assert_int_equal(trust_certs_issue(garbage, ca_key, &req, crt, key, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, garbage));
    assert_non_null(strstr(eb.msg, "No such file"));

    /* A CA key that belongs to another CA. */
    path_in(other_crt, sizeof(other_crt), "other-ca.crt");
    path_in(other_key, sizeof(other_key), "other-ca.key");
    assert_int_equal(trust_certs_ca_new("guangzhou", 1, other_crt, other_key, &eb), 0);
    assert_int_equal(trust_certs_issue(ca_crt, other_key, &req, crt, key, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, "key does not match certificate"));
    assert_non_null(strstr(eb.msg, other_key));

    /* Garbage instead of PEM. */
    path_in(garbage, sizeof(garbage), "garbage.pem");
    FILE *f = fopen(garbage, "w");
    assert_non_null(f);
    fputs("this is not PEM\n", f);
    fclose(f);
    assert_int_equal(trust_certs_issue(garbage, ca_key, &req, crt, key, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, "no PEM certificate found"));
    assert_int_equal(trust_certs_issue(ca_crt, garbage, &req, crt, key, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, "no PEM private key found"));

    /* A leaf is not a CA. */
    path_in(leaf, sizeof(leaf), "leaf.crt");
    path_in(garbage, sizeof(garbage), "leaf.key");
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, leaf, garbage, &eb), 0);
    assert_int_equal(trust_certs_issue(leaf, garbage, &req, crt, key, &eb), BG_ERR_CERT);
    assert_non_null(strstr(eb.msg, "not a CA certificate"));
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_trust_certs_issue_bad_request(void **state)
{
    (void)state;
    char crt[128], key[128], nodir[128];
    bg_errbuf eb = {{0}};
    path_in(crt, sizeof(crt), "r.crt");
    path_in(key, sizeof(key), "r.key");
    trust_cert_req req = {.spiffe_id = NULL};
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), BG_ERR_INVAL);
    req.spiffe_id = "https://guangzhou.gba/firm/x";
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), BG_ERR_IDENTITY);
    req.spiffe_id = "spiffe://guangzhou.gba/firm/x";
    req.days = -5;
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb), BG_ERR_INVAL);
    /* Unwritable output: the path and errno text. */
    req.days = 0;
    path_in(nodir, sizeof(nodir), "no/such/dir.key");
    assert_int_equal(trust_certs_issue(ca_crt, ca_key, &req, crt, nodir, &eb), BG_ERR_IO);
    assert_non_null(strstr(eb.msg, nodir));
    assert_non_null(strstr(eb.msg, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_certs_ca_new_is_self_signed_ca),
        cmocka_unit_test(test_trust_certs_ca_new_bad_city),
        cmocka_unit_test(test_trust_certs_ca_new_name_constraint_enforced),
        cmocka_unit_test(test_trust_certs_issue_client_verifies),
        cmocka_unit_test(test_trust_certs_issue_server_sans_and_ekus),
        cmocka_unit_test(test_trust_certs_issue_gateway_role_is_server),
        cmocka_unit_test(test_trust_certs_issue_expired),
        cmocka_unit_test(test_trust_certs_issue_overwrites_and_fixes_mode),
        cmocka_unit_test(test_trust_certs_issue_other_trust_domain),
        cmocka_unit_test(test_trust_certs_issue_bad_ca),
        cmocka_unit_test(test_trust_certs_issue_bad_request),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
