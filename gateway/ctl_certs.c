/* gateway/ctl_certs.c: `baygatectl certs`: city CAs, gateway and client certificates and trust
 * bundles, through trust/certs.h (no shelling out to openssl). Not for: anything a running
 * gateway does; these are files an operator or the demo lays down before start. */
#include "gateway/ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/err.h"
#include "trust/certs.h"
#include "trust/tls.h"

#define EXIT_USAGE 2

static const char usage_text[] =
    "usage:\n"
    "  baygatectl certs ca --city C --out-cert F --out-key F [--days N]\n"
    "  baygatectl certs issue --ca-cert F --ca-key F --spiffe URI [--server] [--days N]\n"
    "                         [--not-before-offset SECONDS] --out-cert F --out-key F\n"
    "  baygatectl certs city --city C --dir D [--days N]\n"
    "      writes D/ca.{crt,key}, D/gateway.{crt,key} (spiffe://C.gba/gateway) and\n"
    "      D/clients/C-{firm,regulator,admin}.{crt,key} (spiffe://C.gba/<role>/demo)\n"
    "  baygatectl certs bundle --out F CA.crt [CA.crt ...]\n"
    "\n"
    "Keys are EC P-256 PEM files written with mode 0600; existing files are overwritten.\n";

/* Options of every certs subcommand; a subcommand rejects the ones it does not take. */
typedef struct certs_opts {
    const char *city, *out_cert, *out_key, *ca_cert, *ca_key, *spiffe, *dir, *out;
    const char *days, *nbo;
    bool server;
    char **rest; /* positional arguments, borrowed from argv */
    int nrest;
} certs_opts;

enum {
    OPT_CITY = 1 << 0,
    OPT_OUT_CERT = 1 << 1,
    OPT_OUT_KEY = 1 << 2,
    OPT_CA_CERT = 1 << 3,
    OPT_CA_KEY = 1 << 4,
    OPT_SPIFFE = 1 << 5,
    OPT_DIR = 1 << 6,
    OPT_OUT = 1 << 7,
    OPT_DAYS = 1 << 8,
    OPT_NBO = 1 << 9,
    OPT_SERVER = 1 << 10,
    OPT_POSITIONAL = 1 << 11,
};

static int usage_err(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "baygatectl certs |sub|: <message>" and the usage; returns the usage exit code. */
static int usage_err(const char *sub, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "baygatectl certs %s: ", sub);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", usage_text);
    return EXIT_USAGE;
}

/* Parses argv[1..] of a certs subcommand (argv[0] is its name) allowing the |allowed| options.
 * Accepts "--name value" and "--name=value". Returns 0, or an exit code (2 usage, or 0 with
 * *|help| set for --help). */
static int parse_opts(int argc, char **argv, unsigned allowed, certs_opts *o, bool *help)
{
    static const struct {
        const char *name;
        unsigned bit;
        size_t off;
    } table[] = {
        {"city", OPT_CITY, offsetof(certs_opts, city)},
        {"out-cert", OPT_OUT_CERT, offsetof(certs_opts, out_cert)},
        {"out-key", OPT_OUT_KEY, offsetof(certs_opts, out_key)},
        {"ca-cert", OPT_CA_CERT, offsetof(certs_opts, ca_cert)},
        {"ca-key", OPT_CA_KEY, offsetof(certs_opts, ca_key)},
        {"spiffe", OPT_SPIFFE, offsetof(certs_opts, spiffe)},
        {"dir", OPT_DIR, offsetof(certs_opts, dir)},
        {"out", OPT_OUT, offsetof(certs_opts, out)},
        {"days", OPT_DAYS, offsetof(certs_opts, days)},
        {"not-before-offset", OPT_NBO, offsetof(certs_opts, nbo)},
    };
    const char *sub = argv[0];
    memset(o, 0, sizeof(*o));
    *help = false;
    o->rest = argv + argc; /* empty unless positionals follow */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            *help = true;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (!(allowed & OPT_POSITIONAL)) {
                return usage_err(sub, "unexpected argument \"%s\"", a);
            }
            if (o->nrest == 0) {
                o->rest = argv + i;
            } else if (o->rest + o->nrest != argv + i) {
                return usage_err(sub, "options must come before the files (\"%s\")", a);
            }
            o->nrest++;
            continue;
        }
        const char *name = a + 2;
        if (strcmp(name, "server") == 0 && (allowed & OPT_SERVER)) {
            o->server = true;
            continue;
        }
        const char *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        bool found = false;
        for (size_t t = 0; t < sizeof(table) / sizeof(table[0]); t++) {
            if (strlen(table[t].name) != nlen || strncmp(table[t].name, name, nlen) != 0 ||
                !(allowed & table[t].bit)) {
                continue;
            }
            const char *val;
            if (eq != NULL) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                return usage_err(sub, "%s needs a value", a);
            }
            if (val[0] == '\0') {
                return usage_err(sub, "%s needs a non-empty value", a);
            }
            memcpy((char *)o + table[t].off, &val, sizeof(val));
            found = true;
            break;
        }
        if (!found) {
            return usage_err(sub, "unknown option \"%s\"", a);
        }
    }
    return 0;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

static int get_days(const char *sub, const certs_opts *o, int *days)
{
    long v = 0;
    *days = 0;
    if (o->days == NULL) {
        return 0;
    }
    if (!parse_long(o->days, 1, 36500, &v)) {
        return usage_err(sub, "--days must be an integer 1..36500, got \"%s\"", o->days);
    }
    *days = (int)v;
    return 0;
}

static int fail(const char *sub, const bg_errbuf *eb)
{
    fprintf(stderr, "baygatectl certs %s: %s\n", sub, eb->msg);
    return 1;
}

static int cmd_ca(int argc, char **argv)
{
    certs_opts o;
    bool help;
    int days, rc;
    bg_errbuf eb = {{0}};
    if ((rc = parse_opts(argc, argv, OPT_CITY | OPT_OUT_CERT | OPT_OUT_KEY | OPT_DAYS, &o,
                         &help)) != 0) {
        return rc;
    }
    if (help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (o.city == NULL || o.out_cert == NULL || o.out_key == NULL) {
        return usage_err("ca", "%s", "--city, --out-cert and --out-key are required");
    }
    if ((rc = get_days("ca", &o, &days)) != 0) {
        return rc;
    }
    if (trust_certs_ca_new(o.city, days, o.out_cert, o.out_key, &eb) != 0) {
        return fail("ca", &eb);
    }
    printf("wrote %s and %s (CA for spiffe://%s.gba)\n", o.out_cert, o.out_key, o.city);
    return 0;
}

static int cmd_issue(int argc, char **argv)
{
    certs_opts o;
    bool help;
    int days, rc;
    long nbo = 0;
    bg_errbuf eb = {{0}};
    unsigned allowed = OPT_CA_CERT | OPT_CA_KEY | OPT_SPIFFE | OPT_SERVER | OPT_DAYS | OPT_NBO |
                       OPT_OUT_CERT | OPT_OUT_KEY;
    if ((rc = parse_opts(argc, argv, allowed, &o, &help)) != 0) {
        return rc;
    }
    if (help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (o.ca_cert == NULL || o.ca_key == NULL || o.spiffe == NULL || o.out_cert == NULL ||
        o.out_key == NULL) {
        return usage_err("issue", "%s",
                         "--ca-cert, --ca-key, --spiffe, --out-cert and --out-key are required");
    }
    if ((rc = get_days("issue", &o, &days)) != 0) {
        return rc;
    }
    /* +-100 years keeps notBefore/notAfter inside what X509_time_adj_ex can represent. */
    if (o.nbo != NULL && !parse_long(o.nbo, -3153600000L, 3153600000L, &nbo)) {
        return usage_err("issue", "--not-before-offset must be an integer (seconds), got \"%s\"",
                         o.nbo);
    }
    trust_cert_req req = {
        .spiffe_id = o.spiffe,
        .common_name = NULL,
        .server = o.server,
        .days = days,
        .not_before_offset_s = nbo,
    };
    if (trust_certs_issue(o.ca_cert, o.ca_key, &req, o.out_cert, o.out_key, &eb) != 0) {
        return fail("issue", &eb);
    }
    printf("wrote %s and %s (%s)\n", o.out_cert, o.out_key, o.spiffe);
    return 0;
}

/* mkdir that accepts an existing directory. */
static int make_dir(const char *path)
{
    struct stat st;
    if (mkdir(path, 0755) == 0) {
        return 0;
    }
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        return 0;
    }
    fprintf(stderr, "baygatectl certs city: %s: cannot create directory: %s\n", path,
            strerror(errno));
    return -1;
}

static int join(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "baygatectl certs city: path too long: %s/%s\n", dir, name);
        return -1;
    }
    return 0;
}

static int cmd_city(int argc, char **argv)
{
    static const char *const client_roles[] = {"firm", "regulator", "admin"};
    certs_opts o;
    bool help;
    int days, rc;
    bg_errbuf eb = {{0}};
    char ca_crt[PATH_MAX], ca_key[PATH_MAX], crt[PATH_MAX], key[PATH_MAX], name[256];
    char spiffe[256];

    if ((rc = parse_opts(argc, argv, OPT_CITY | OPT_DIR | OPT_DAYS, &o, &help)) != 0) {
        return rc;
    }
    if (help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (o.city == NULL || o.dir == NULL) {
        return usage_err("city", "%s", "--city and --dir are required");
    }
    if ((rc = get_days("city", &o, &days)) != 0) {
        return rc;
    }
    if (strlen(o.city) > 63) {
        return usage_err("city", "city name too long: \"%s\"", o.city);
    }
    if (make_dir(o.dir) != 0 || join(ca_crt, sizeof(ca_crt), o.dir, "ca.crt") != 0 ||
        join(ca_key, sizeof(ca_key), o.dir, "ca.key") != 0) {
        return 1;
    }
    if (trust_certs_ca_new(o.city, days, ca_crt, ca_key, &eb) != 0) {
        return fail("city", &eb);
    }
    printf("wrote %s\n", ca_crt);

    snprintf(spiffe, sizeof(spiffe), "spiffe://%s.gba/gateway", o.city);
    trust_cert_req req = {.spiffe_id = spiffe, .server = true, .days = days};
    if (join(crt, sizeof(crt), o.dir, "gateway.crt") != 0 ||
        join(key, sizeof(key), o.dir, "gateway.key") != 0) {
        return 1;
    }
    if (trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb) != 0) {
        return fail("city", &eb);
    }
    printf("wrote %s (%s)\n", crt, spiffe);

    char clients[PATH_MAX];
    if (join(clients, sizeof(clients), o.dir, "clients") != 0 || make_dir(clients) != 0) {
        return 1;
    }
    for (size_t i = 0; i < sizeof(client_roles) / sizeof(client_roles[0]); i++) {
        snprintf(spiffe, sizeof(spiffe), "spiffe://%s.gba/%s/demo", o.city, client_roles[i]);
        req = (trust_cert_req){.spiffe_id = spiffe, .server = false, .days = days};
        snprintf(name, sizeof(name), "%s-%s.crt", o.city, client_roles[i]);
        if (join(crt, sizeof(crt), clients, name) != 0) {
            return 1;
        }
        snprintf(name, sizeof(name), "%s-%s.key", o.city, client_roles[i]);
        if (join(key, sizeof(key), clients, name) != 0) {
            return 1;
        }
        if (trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb) != 0) {
            return fail("city", &eb);
        }
        printf("wrote %s (%s)\n", crt, spiffe);
    }
    return 0;
}

/* Reads every certificate in |path| into |all|, each of which must be a CA; returns 0, or 1
 * after printing why. Duplicates (same certificate in two inputs) are kept once. */
static int read_cas(const char *path, STACK_OF(X509) *all)
{
    char ossl[256];
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        int e = errno;
        ERR_clear_error();
        fprintf(stderr, "baygatectl certs bundle: %s: cannot open: %s\n", path, strerror(e));
        return 1;
    }
    int n = 0, rc = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        n++;
        if (X509_check_ca(x) < 1) {
            char *subj = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
            fprintf(stderr, "baygatectl certs bundle: %s: certificate %d (%s) is not a CA\n",
                    path, n, subj != NULL ? subj : "?");
            OPENSSL_free(subj);
            X509_free(x);
            rc = 1;
            break;
        }
        bool dup = false;
        for (int i = 0; i < sk_X509_num(all); i++) {
            if (X509_cmp(sk_X509_value(all, i), x) == 0) {
                dup = true;
            }
        }
        if (dup || sk_X509_push(all, x) <= 0) {
            X509_free(x);
        }
    }
    /* The loop ends with "no start line" at EOF; anything else is a broken PEM block. */
    unsigned long e = ERR_peek_last_error();
    if (rc == 0 && n == 0) {
        trust_tls_errors(ossl, sizeof(ossl));
        fprintf(stderr, "baygatectl certs bundle: %s: no PEM certificate found (%s)\n", path,
                ossl);
        rc = 1;
    } else if (rc == 0 && e != 0 &&
               !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        trust_tls_errors(ossl, sizeof(ossl));
        fprintf(stderr, "baygatectl certs bundle: %s: bad PEM after certificate %d (%s)\n", path,
                n, ossl);
        rc = 1;
    }
    ERR_clear_error();
    BIO_free(bio);
    return rc;
}

static int cmd_bundle(int argc, char **argv)
{
    certs_opts o;
    bool help;
    int rc;
    if ((rc = parse_opts(argc, argv, OPT_OUT | OPT_POSITIONAL, &o, &help)) != 0) {
        return rc;
    }
    if (help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (o.out == NULL || o.nrest == 0) {
        return usage_err("bundle", "%s", "--out and at least one CA certificate are required");
    }
    STACK_OF(X509) *all = sk_X509_new_null();
    if (all == NULL) {
        fputs("baygatectl certs bundle: out of memory\n", stderr);
        return 1;
    }
    /* Read everything before writing, so --out may also be one of the inputs. */
    for (int i = 0; i < o.nrest && rc == 0; i++) {
        rc = read_cas(o.rest[i], all);
    }
    if (rc == 0) {
        FILE *f = fopen(o.out, "w");
        if (f == NULL) {
            fprintf(stderr, "baygatectl certs bundle: %s: cannot create: %s\n", o.out,
                    strerror(errno));
            rc = 1;
        } else {
            for (int i = 0; i < sk_X509_num(all) && rc == 0; i++) {
                if (PEM_write_X509(f, sk_X509_value(all, i)) != 1) {
                    rc = 1;
                }
            }
            if (fclose(f) != 0 || rc != 0) {
                fprintf(stderr, "baygatectl certs bundle: %s: write failed\n", o.out);
                rc = 1;
            }
        }
    }
    if (rc == 0) {
        printf("wrote %s (%d CA certificates)\n", o.out, sk_X509_num(all));
    }
    sk_X509_pop_free(all, X509_free);
    return rc;
}

int ctl_certs_main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(sub, "ca") == 0) {
        return cmd_ca(argc - 1, argv + 1);
    }
    if (strcmp(sub, "issue") == 0) {
        return cmd_issue(argc - 1, argv + 1);
    }
    if (strcmp(sub, "city") == 0) {
        return cmd_city(argc - 1, argv + 1);
    }
    if (strcmp(sub, "bundle") == 0) {
        return cmd_bundle(argc - 1, argv + 1);
    }
    fprintf(stderr, "baygatectl certs: unknown subcommand \"%s\"\n\n%s", sub, usage_text);
    return EXIT_USAGE;
}
