/* trust/certs.c: a small certificate authority for cities on OpenSSL's library: self-signed
 * city CAs (name-constrained to their own trust domain) and leaf certificates with SPIFFE URI
 * SANs. Not for: production PKI (no CRLs, no OCSP, no HSM); cities may bring their own CAs. */
#include "trust/certs.h"
#include "trust/certs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "trust/tls.h"

#define DEFAULT_DAYS 365
#define MAX_DAYS 36500
#define CN_MAX 64 /* RFC 5280 ub-common-name */

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

static int new_key(EVP_PKEY **out, bg_errbuf *eb)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pkey == NULL) {
        return ossl_err(eb, BG_ERR_CERT, "certs: cannot generate an EC P-256 key");
    }
    *out = pkey;
    return 0;
}

/* A random positive 127-bit serial (RFC 5280 §4.1.2.2: at most 20 octets, positive). */
static int set_serial(X509 *cert)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return -1;
    }
    raw[0] &= 0x7f;
    raw[0] |= 0x40; /* never zero, always 16 bytes long */
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    if (bn == NULL) {
        return -1;
    }
    ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (serial == NULL) {
        return -1;
    }
    int ok = X509_set_serialNumber(cert, serial);
    ASN1_INTEGER_free(serial);
    return ok == 1 ? 0 : -1;
}

/* notBefore = now + |offset_s|, notAfter = notBefore + |days|. */
static int set_validity(X509 *cert, int days, long offset_s)
{
    if (X509_gmtime_adj(X509_getm_notBefore(cert), offset_s) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(cert), days, offset_s, NULL) == NULL) {
        return -1;
    }
    return 0;
}

static int set_cn(X509_NAME *name, const char *cn)
{
    size_t n = strlen(cn);
    if (n > CN_MAX) {
        n = CN_MAX;
    }
    return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, (int)n,
                                      -1, 0) == 1
               ? 0
               : -1;
}

int trust_certs_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return -1;
    }
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static int push_name(GENERAL_NAMES *names, int type, const char *value)
{
    GENERAL_NAME *gn = NULL;
    if (type == GEN_IPADD) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(value);
        if (ip == NULL) {
            return -1;
        }
        gn = GENERAL_NAME_new();
        if (gn == NULL) {
            ASN1_OCTET_STRING_free(ip);
            return -1;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (s == NULL || ASN1_STRING_set(s, value, -1) != 1) {
            ASN1_IA5STRING_free(s);
            return -1;
        }
        gn = GENERAL_NAME_new();
        if (gn == NULL) {
            ASN1_IA5STRING_free(s);
            return -1;
        }
        GENERAL_NAME_set0_value(gn, type, s);
    }
    if (sk_GENERAL_NAME_push(names, gn) <= 0) {
        GENERAL_NAME_free(gn);
        return -1;
    }
    return 0;
}

/* subjectAltName built as structures, not config text, so a URI containing "," cannot
 * smuggle in extra names. */
static int add_san(X509 *cert, const char *uri, bool server)
{
    int rc = -1;
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    if (names == NULL) {
        return -1;
    }
    if (push_name(names, GEN_URI, uri) != 0) {
        goto out;
    }
    if (server && (push_name(names, GEN_DNS, "localhost") != 0 ||
                   push_name(names, GEN_IPADD, "127.0.0.1") != 0 ||
                   push_name(names, GEN_IPADD, "::1") != 0)) {
        goto out;
    }
    rc = X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_REPLACE) == 1 ? 0 : -1;
out:
    GENERAL_NAMES_free(names);
    return rc;
}

/* Writes |data| through |write| to |path| created with |mode|; an existing file is truncated
 * and its mode reset, so an old world-readable key file does not stay world-readable. */
static int write_pem(const char *path, mode_t mode, int (*emit)(FILE *, void *), void *data,
                     bg_errbuf *eb)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return bg_errf(eb, BG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    if (fchmod(fd, mode) != 0) {
        int e = errno;
        close(fd);
        return bg_errf(eb, BG_ERR_IO, "%s: cannot set mode %o: %s", path, (unsigned)mode,
                       strerror(e));
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int e = errno;
        close(fd);
        return bg_errf(eb, BG_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    if (emit(f, data) != 1) {
        fclose(f);
        return ossl_err(eb, BG_ERR_IO, path);
    }
    if (fclose(f) != 0) {
        return bg_errf(eb, BG_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
}

static int write_cert_cb(FILE *f, void *data)
{
    return PEM_write_X509(f, data);
}

static int write_key_cb(FILE *f, void *data)
{
    return PEM_write_PrivateKey(f, data, NULL, NULL, 0, NULL, NULL);
}

static int write_pair(X509 *cert, EVP_PKEY *key, const char *crt_path, const char *key_path,
                      bg_errbuf *eb)
{
    int rc = write_pem(key_path, 0600, write_key_cb, key, eb);
    if (rc == 0) {
        rc = write_pem(crt_path, 0644, write_cert_cb, cert, eb);
    }
    return rc;
}

static int check_days(int *days, bg_errbuf *eb)
{
    if (*days == 0) {
        *days = DEFAULT_DAYS;
    }
    if (*days < 0 || *days > MAX_DAYS) {
        return bg_errf(eb, BG_ERR_INVAL, "certs: days must be 1..%d, got %d", MAX_DAYS, *days);
    }
    return 0;
}

static bool city_is_valid(const char *city)
{
    if (city == NULL || !(city[0] >= 'a' && city[0] <= 'z') || strlen(city) > 63) {
        return false;
    }
    for (const char *p = city; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            return false;
        }
    }
    return true;
}

int trust_certs_ca_new(const char *city, int days, const char *crt_path, const char *key_path,
                       bg_errbuf *eb)
{
    int rc;
    char buf[128];

    if (!city_is_valid(city)) {
        return bg_errf(eb, BG_ERR_INVAL, "certs: city \"%s\" is not [a-z][a-z0-9-]*",
                       city != NULL ? city : "");
    }
    if (crt_path == NULL || key_path == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "certs: output paths are required");
    }
    if ((rc = check_days(&days, eb)) != 0) {
        return rc;
    }
    EVP_PKEY *key = NULL;
    if ((rc = new_key(&key, eb)) != 0) {
        return rc;
    }
    X509 *cert = X509_new();
    if (cert == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "certs: out of memory");
        goto fail_key;
    }
    snprintf(buf, sizeof(buf), "%s city CA", city);
    if (X509_set_version(cert, X509_VERSION_3) != 1 || set_serial(cert) != 0 ||
        set_validity(cert, days, 0) != 0 || set_cn(X509_get_subject_name(cert), buf) != 0 ||
        X509_set_issuer_name(cert, X509_get_subject_name(cert)) != 1 ||
        X509_set_pubkey(cert, key) != 1) {
        rc = ossl_err(eb, BG_ERR_CERT, "certs: cannot build CA certificate");
        goto fail_cert;
    }
    /* pathlen:0: a city CA signs leaves only. The name constraint limits every URI SAN it
     * signs to its own trust domain, so one city's CA in the shared bundle cannot mint
     * another city's identities (RFC 5280 §4.2.1.10; OpenSSL matches the URI's host). */
    char nc[128];
    snprintf(nc, sizeof(nc), "critical,permitted;URI:%s.gba", city);
    snprintf(buf, sizeof(buf), "spiffe://%s.gba", city);
    if (trust_certs_add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") != 0 ||
        trust_certs_add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
        trust_certs_add_ext(cert, cert, NID_subject_key_identifier, "hash") != 0 ||
        trust_certs_add_ext(cert, cert, NID_authority_key_identifier, "keyid:always") != 0 ||
        trust_certs_add_ext(cert, cert, NID_name_constraints, nc) != 0 ||
        add_san(cert, buf, false) != 0) {
        rc = ossl_err(eb, BG_ERR_CERT, "certs: cannot add CA extensions");
        goto fail_cert;
    }
    if (X509_sign(cert, key, EVP_sha256()) <= 0) {
        rc = ossl_err(eb, BG_ERR_CERT, "certs: cannot sign CA certificate");
        goto fail_cert;
    }
    rc = write_pair(cert, key, crt_path, key_path, eb);

fail_cert:
    X509_free(cert);
fail_key:
    EVP_PKEY_free(key);
    return rc;
}

int trust_certs_load_ca(X509 **crt_out, EVP_PKEY **key_out, const char *crt_path,
                        const char *key_path, bg_errbuf *eb)
{
    char what[512];
    if (crt_path == NULL || key_path == NULL) {
        return bg_errf(eb, BG_ERR_CERT, "ca: certificate and key paths are required");
    }
    BIO *bio = BIO_new_file(crt_path, "r");
    if (bio == NULL) {
        int e = errno;
        ERR_clear_error();
        return bg_errf(eb, BG_ERR_CERT, "%s: cannot open CA certificate: %s", crt_path,
                       strerror(e));
    }
    X509 *crt = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (crt == NULL) {
        snprintf(what, sizeof(what), "%s: no PEM certificate found", crt_path);
        return ossl_err(eb, BG_ERR_CERT, what);
    }
    if (X509_check_ca(crt) < 1) {
        X509_free(crt);
        return bg_errf(eb, BG_ERR_CERT, "%s: not a CA certificate", crt_path);
    }
    bio = BIO_new_file(key_path, "r");
    if (bio == NULL) {
        int e = errno;
        X509_free(crt);
        ERR_clear_error();
        return bg_errf(eb, BG_ERR_CERT, "%s: cannot open CA key: %s", key_path, strerror(e));
    }
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (key == NULL) {
        X509_free(crt);
        snprintf(what, sizeof(what), "%s: no PEM private key found", key_path);
        return ossl_err(eb, BG_ERR_CERT, what);
    }
    if (X509_check_private_key(crt, key) != 1) {
        ERR_clear_error();
        EVP_PKEY_free(key);
        X509_free(crt);
        return bg_errf(eb, BG_ERR_CERT, "%s: key does not match certificate %s", key_path,
                       crt_path);
    }
    *crt_out = crt;
    *key_out = key;
    return 0;
}

void trust_certs_ca_domain(X509 *ca, char *td, size_t cap)
{
    td[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(ca, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) {
        ERR_clear_error();
        return;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && td[0] == '\0'; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) {
            continue;
        }
        const char *s = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        int n = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (n > 9 && (size_t)n < cap && strncmp(s, "spiffe://", 9) == 0 &&
            memchr(s, '\0', (size_t)n) == NULL) {
            memcpy(td, s, (size_t)n);
            td[n] = '\0';
        }
    }
    GENERAL_NAMES_free(names);
}

/* When the CA carries a SPIFFE trust domain (ours do), the leaf must belong to it: its name
 * constraint would make any other identity fail verification later, far from the cause. */
static int check_trust_domain(X509 *ca, const char *ca_path, const char *spiffe_id, bg_errbuf *eb)
{
    char td[256];
    trust_certs_ca_domain(ca, td, sizeof(td));
    if (td[0] == '\0') {
        return 0;
    }
    size_t n = strlen(td);
    if (strncmp(spiffe_id, td, n) != 0 || spiffe_id[n] != '/') {
        return bg_errf(eb, BG_ERR_IDENTITY, "certs: %s is outside the trust domain %s of %s",
                       spiffe_id, td, ca_path);
    }
    return 0;
}

int trust_certs_issue(const char *ca_crt, const char *ca_key, const trust_cert_req *req,
                      const char *crt_path, const char *key_path, bg_errbuf *eb)
{
    int rc;
    char city[64], role[32];

    if (req == NULL || req->spiffe_id == NULL || crt_path == NULL || key_path == NULL ||
        ca_crt == NULL || ca_key == NULL) {
        return bg_errf(eb, BG_ERR_INVAL, "certs: CA, SPIFFE id and output paths are required");
    }
    if (strncmp(req->spiffe_id, "spiffe://", 9) != 0 || req->spiffe_id[9] == '\0' ||
        strlen(req->spiffe_id) > 255) {
        return bg_errf(eb, BG_ERR_IDENTITY, "certs: \"%s\" is not a SPIFFE id", req->spiffe_id);
    }
    int days = req->days;
    if ((rc = check_days(&days, eb)) != 0) {
        return rc;
    }
    /* Gateways both accept connections and dial peers: always server and client usable. */
    bool server = req->server;
    if (trust_spiffe_parse(req->spiffe_id, city, sizeof(city), role, sizeof(role)) == 0 &&
        strcmp(role, "gateway") == 0) {
        server = true;
    }

    X509 *ca = NULL;
    EVP_PKEY *cakey = NULL;
    if ((rc = trust_certs_load_ca(&ca, &cakey, ca_crt, ca_key, eb)) != 0) {
        return rc;
    }
    if ((rc = check_trust_domain(ca, ca_crt, req->spiffe_id, eb)) != 0) {
        goto fail_ca;
    }
    EVP_PKEY *key = NULL;
    if ((rc = new_key(&key, eb)) != 0) {
        goto fail_ca;
    }
    X509 *cert = X509_new();
    if (cert == NULL) {
        rc = bg_errf(eb, BG_ERR_NOMEM, "certs: out of memory");
        goto fail_key;
    }
    const char *cn = req->common_name;
    if (cn == NULL) {
        cn = req->spiffe_id + 9; /* "guangzhou.gba/firm/acme" */
    }
    if (X509_set_version(cert, X509_VERSION_3) != 1 || set_serial(cert) != 0 ||
        set_validity(cert, days, req->not_before_offset_s) != 0 ||
        set_cn(X509_get_subject_name(cert), cn) != 0 ||
        X509_set_issuer_name(cert, X509_get_subject_name(ca)) != 1 ||
        X509_set_pubkey(cert, key) != 1) {
        rc = ossl_err(eb, BG_ERR_CERT, "certs: cannot build certificate");
        goto fail_cert;
    }
    if (trust_certs_add_ext(cert, ca, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        trust_certs_add_ext(cert, ca, NID_key_usage, "critical,digitalSignature") != 0 ||
        trust_certs_add_ext(cert, ca, NID_ext_key_usage,
                            server ? "serverAuth,clientAuth" : "clientAuth") != 0 ||
        trust_certs_add_ext(cert, ca, NID_subject_key_identifier, "hash") != 0 ||
        trust_certs_add_ext(cert, ca, NID_authority_key_identifier, "keyid:always") != 0 ||
        add_san(cert, req->spiffe_id, server) != 0) {
        rc = ossl_err(eb, BG_ERR_CERT, "certs: cannot add certificate extensions");
        goto fail_cert;
    }
    if (X509_sign(cert, cakey, EVP_sha256()) <= 0) {
        rc = ossl_err(eb, BG_ERR_CERT, "certs: cannot sign certificate");
        goto fail_cert;
    }
    rc = write_pair(cert, key, crt_path, key_path, eb);

fail_cert:
    X509_free(cert);
fail_key:
    EVP_PKEY_free(key);
fail_ca:
    EVP_PKEY_free(cakey);
    X509_free(ca);
    return rc;
}
