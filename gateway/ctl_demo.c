/* gateway/ctl_demo.c: `baygatectl demo`, a four-city federation on loopback to try baygate by
 * hand. Creates (or reuses) the cities' CAs, gateway and client certificates, writes one config
 * per city, starts one `baygate` per city, waits until each listens, prints curl commands and
 * stops them all on Ctrl-C. Not for: production layouts or tests (those build their own
 * fixtures). Uses libc and trust/certs.h only: no OpenSSL command line, no config parsing. */
#include "gateway/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "base/err.h"
#include "trust/certs.h"

#define DEMO_NCITIES 4
#define DEMO_MAX_LINKS 3
#define DEMO_CA_DAYS 3650
#define DEMO_LEAF_DAYS 365
/* A certificate this close to the end of its validity is reissued rather than reused. */
#define DEMO_RENEW_MARGIN_DAYS 7
#define DEMO_READY_TIMEOUT_MS 10000
#define DEMO_STOP_TIMEOUT_MS 15000
#define DEMO_POLL_MS 100
/* Only the head of a PEM file is read to recognise it; ours are a few hundred bytes. */
#define DEMO_PEM_HEAD 65536
/* Synthetic rows per dataset of each city's embedded data space (upstream.rows): large enough
 * for the distributions to be smooth, small enough to generate in well under a second. */
#define DEMO_ROWS 100000

typedef struct demo_route {
    const char *city;
    const char *via;
} demo_route;

/* One city of the demo: its ports, its direct peers and the cities it reaches through them.
 * Topology: guangzhou-shenzhen, shenzhen-hongkong, guangzhou-macau. */
typedef struct demo_city {
    const char *name;
    uint16_t tls_port;
    uint16_t local_port;
    const char *peers[DEMO_MAX_LINKS]; /* NULL-terminated when shorter */
    demo_route routes[DEMO_MAX_LINKS]; /* .city NULL-terminated when shorter */
} demo_city;

static const demo_city cities[DEMO_NCITIES] = {
    {.name = "guangzhou",
     .tls_port = 8443,
     .local_port = 9443,
     .peers = {"shenzhen", "macau"},
     .routes = {{"hongkong", "shenzhen"}}},
    {.name = "shenzhen",
     .tls_port = 8444,
     .local_port = 9444,
     .peers = {"guangzhou", "hongkong"},
     .routes = {{"macau", "guangzhou"}}},
    {.name = "hongkong",
     .tls_port = 8445,
     .local_port = 9445,
     .peers = {"shenzhen"},
     .routes = {{"guangzhou", "shenzhen"}, {"macau", "shenzhen"}}},
    {.name = "macau",
     .tls_port = 8446,
     .local_port = 9446,
     .peers = {"guangzhou"},
     .routes = {{"shenzhen", "guangzhou"}, {"hongkong", "guangzhou"}}},
};

/* The client identities issued per city, as DIR/clients/<city>-<role>.{crt,key}. */
static const char *const client_roles[] = {"firm", "regulator", "admin"};
#define DEMO_NROLES (sizeof client_roles / sizeof client_roles[0])

typedef struct demo_opts {
    const char *dir;
    const char *bin; /* NULL: the directory of /proc/self/exe */
    const char *profiles; /* contract profiles directory, or NULL: no contracts */
    bool start;
} demo_opts;

/* Absolute path of --profiles, written into every config; "" when not given. */
static char profiles_abs[PATH_MAX];

typedef struct demo_child {
    const demo_city *city;
    pid_t pid;   /* 0 before start and once reaped */
    int status;  /* wait status, valid once |reaped| */
    bool reaped;
    bool ready;
    char log_path[PATH_MAX];
} demo_child;

typedef struct demo_cert_stats {
    unsigned created;
    unsigned reused;
} demo_cert_stats;

static void usage(FILE *f)
{
    fputs("usage: baygatectl demo [--dir DIR] [--bin BINDIR] [--no-start]\n"
          "  --dir DIR      where certificates, configs, logs and ledgers go (default run/demo)\n"
          "  --bin BINDIR   directory holding the baygate binary (default: baygatectl's own)\n"
          "  --no-start     only create certificates and configs\n"
          "  --profiles DIR contract profiles for every city (e.g. conf/profiles); without it the\n"
          "                 demo offers no contracts\n",
          f);
}

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    va_list ap;

    fputs("baygatectl demo: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Formats a path into |out|; false (with a message) when it does not fit in |cap|. */
__attribute__((format(printf, 3, 4))) static bool path_fmt(char *out, size_t cap,
                                                           const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        fail("path too long (%s...)", out);
        return false;
    }
    return true;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const demo_city *find_city(const char *name)
{
    for (size_t i = 0; i < DEMO_NCITIES; i++) {
        if (strcmp(cities[i].name, name) == 0) {
            return &cities[i];
        }
    }
    return NULL;
}

/* mkdir -p: creates |path| and its missing parents; the last component gets |mode|. */
static bool mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof buf) {
        fail("bad directory path '%s'", path);
        return false;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            fail("mkdir %s: %s", buf, strerror(errno));
            return false;
        }
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST) {
        fail("mkdir %s: %s", buf, strerror(errno));
        return false;
    }
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fail("%s exists and is not a directory", buf);
        return false;
    }
    return true;
}

/* True when |path| is a regular file whose head contains every marker in |markers|; its
 * modification time goes to |*mtime|. Recognises the PEM files trust/certs.c writes and
 * rejects empty or half-written ones (an interrupted earlier run). */
static bool pem_file_is_usable(const char *path, const char *const *markers, size_t nmarkers,
                               time_t *mtime)
{
    struct stat st;
    char *head;
    size_t n;
    bool ok = true;
    FILE *f;

    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
        return false;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        return false;
    }
    head = malloc(DEMO_PEM_HEAD + 1);
    if (head == NULL) {
        fclose(f);
        return false;
    }
    n = fread(head, 1, DEMO_PEM_HEAD, f);
    fclose(f);
    head[n] = '\0';
    for (size_t i = 0; i < nmarkers && ok; i++) {
        ok = strstr(head, markers[i]) != NULL;
    }
    free(head);
    *mtime = st.st_mtime;
    return ok;
}

/* True when |crt| and |key| can be reused: both complete PEM files, the certificate issued no
 * earlier than |not_before| (its CA's file time: a regenerated CA invalidates its leaves) and
 * not within DEMO_RENEW_MARGIN_DAYS of the end of its |days| of validity. The file time stands
 * in for notBefore because we only issue certificates dated "now" and use libc alone here. */
static bool cert_pair_is_usable(const char *crt, const char *key, int days, time_t not_before,
                                time_t *crt_mtime)
{
    static const char *const crt_markers[] = {"-----BEGIN CERTIFICATE-----",
                                              "-----END CERTIFICATE-----"};
    static const char *const key_markers[] = {"-----BEGIN ", "PRIVATE KEY-----", "-----END "};
    time_t crt_time, key_time, now = time(NULL);
    time_t life = (time_t)(days - DEMO_RENEW_MARGIN_DAYS) * 86400;

    if (!pem_file_is_usable(crt, crt_markers, 2, &crt_time) ||
        !pem_file_is_usable(key, key_markers, 3, &key_time)) {
        return false;
    }
    if (crt_time < not_before || crt_time > now + 300 || now - crt_time > life) {
        return false;
    }
    *crt_mtime = crt_time;
    return true;
}

/* Reuses or creates DIR/<city>/ca.{crt,key}; |*created| says which, so that a new CA's
 * leaves are reissued even when the clock has not ticked since the old ones were written. */
static bool ensure_ca(const char *dir, const demo_city *c, time_t *ca_mtime, bool *created,
                      demo_cert_stats *stats)
{
    char crt[PATH_MAX], key[PATH_MAX];
    bg_errbuf eb = {{0}};
    int rc;

    if (!path_fmt(crt, sizeof crt, "%s/%s/ca.crt", dir, c->name) ||
        !path_fmt(key, sizeof key, "%s/%s/ca.key", dir, c->name)) {
        return false;
    }
    *created = false;
    if (cert_pair_is_usable(crt, key, DEMO_CA_DAYS, 0, ca_mtime)) {
        stats->reused++;
        return true;
    }
    rc = trust_certs_ca_new(c->name, DEMO_CA_DAYS, crt, key, &eb);
    if (rc != 0) {
        fail("%s CA: %s (%s)", c->name, eb.msg, bg_strerror(rc));
        return false;
    }
    struct stat st;
    if (stat(crt, &st) != 0) {
        fail("%s: %s", crt, strerror(errno));
        return false;
    }
    *ca_mtime = st.st_mtime;
    *created = true;
    stats->created++;
    return true;
}

/* Issues |spiffe_id| into |base|.crt / |base|.key unless a usable pair is already there and
 * |reissue| is false. */
static bool ensure_leaf(const char *dir, const demo_city *c, time_t ca_mtime, bool reissue,
                        const char *base, const char *spiffe_id, bool server,
                        demo_cert_stats *stats)
{
    char ca_crt[PATH_MAX], ca_key[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];
    trust_cert_req req = {.spiffe_id = spiffe_id, .server = server, .days = DEMO_LEAF_DAYS};
    bg_errbuf eb = {{0}};
    time_t mtime;
    int rc;

    if (!path_fmt(ca_crt, sizeof ca_crt, "%s/%s/ca.crt", dir, c->name) ||
        !path_fmt(ca_key, sizeof ca_key, "%s/%s/ca.key", dir, c->name) ||
        !path_fmt(crt, sizeof crt, "%s.crt", base) || !path_fmt(key, sizeof key, "%s.key", base)) {
        return false;
    }
    if (!reissue && cert_pair_is_usable(crt, key, DEMO_LEAF_DAYS, ca_mtime, &mtime)) {
        stats->reused++;
        return true;
    }
    rc = trust_certs_issue(ca_crt, ca_key, &req, crt, key, &eb);
    if (rc != 0) {
        fail("%s: %s (%s)", spiffe_id, eb.msg, bg_strerror(rc));
        return false;
    }
    stats->created++;
    return true;
}

static bool ensure_city_certs(const char *dir, const demo_city *c, demo_cert_stats *stats)
{
    char base[PATH_MAX], id[256];
    time_t ca_mtime = 0;
    bool new_ca = false;

    if (!ensure_ca(dir, c, &ca_mtime, &new_ca, stats)) {
        return false;
    }
    if (!path_fmt(base, sizeof base, "%s/%s/gateway", dir, c->name) ||
        !path_fmt(id, sizeof id, "spiffe://%s.gba/gateway", c->name) ||
        !ensure_leaf(dir, c, ca_mtime, new_ca, base, id, true, stats)) {
        return false;
    }
    for (size_t r = 0; r < DEMO_NROLES; r++) {
        if (!path_fmt(base, sizeof base, "%s/clients/%s-%s", dir, c->name, client_roles[r]) ||
            !path_fmt(id, sizeof id, "spiffe://%s.gba/%s/demo", c->name, client_roles[r]) ||
            !ensure_leaf(dir, c, ca_mtime, new_ca, base, id, false, stats)) {
            return false;
        }
    }
    return true;
}

/* Opens |path|.tmp for writing; commit_file() renames it over |path|, so a reader (a running
 * gateway, a rerun) never sees a half-written file. */
static FILE *open_tmp(const char *path, char *tmp, size_t cap)
{
    FILE *f;

    if (!path_fmt(tmp, cap, "%s.tmp", path)) {
        return NULL;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        fail("%s: %s", tmp, strerror(errno));
    }
    return f;
}

static bool commit_file(FILE *f, const char *tmp, const char *path)
{
    bool ok = !ferror(f);

    if (fclose(f) != 0) {
        ok = false;
    }
    if (!ok) {
        fail("writing %s failed", tmp);
        unlink(tmp);
        return false;
    }
    if (rename(tmp, path) != 0) {
        fail("rename %s -> %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

static bool append_file(FILE *out, const char *path)
{
    char buf[4096];
    size_t n;
    FILE *in = fopen(path, "rb");

    if (in == NULL) {
        fail("%s: %s", path, strerror(errno));
        return false;
    }
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            break;
        }
    }
    bool ok = !ferror(in) && !ferror(out);
    fclose(in);
    if (!ok) {
        fail("copying %s failed", path);
    }
    return ok;
}

/* DIR/trust-bundle.pem: every city's CA, the federation's one trust anchor set. */
static bool write_trust_bundle(const char *dir)
{
    char path[PATH_MAX], tmp[PATH_MAX], ca[PATH_MAX];
    FILE *f;

    if (!path_fmt(path, sizeof path, "%s/trust-bundle.pem", dir)) {
        return false;
    }
    f = open_tmp(path, tmp, sizeof tmp);
    if (f == NULL) {
        return false;
    }
    for (size_t i = 0; i < DEMO_NCITIES; i++) {
        if (!path_fmt(ca, sizeof ca, "%s/%s/ca.crt", dir, cities[i].name) ||
            !append_file(f, ca)) {
            fclose(f);
            unlink(tmp);
            return false;
        }
    }
    return commit_file(f, tmp, path);
}

/* DIR/<city>.yaml. Paths inside are relative to the config's own directory (conf/ resolves
 * them so), which keeps DIR movable. Rewritten on every run so it follows this program. */
static bool write_config(const char *dir, const demo_city *c)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    FILE *f;

    if (!path_fmt(path, sizeof path, "%s/%s.yaml", dir, c->name)) {
        return false;
    }
    f = open_tmp(path, tmp, sizeof tmp);
    if (f == NULL) {
        return false;
    }
    fprintf(f,
            "# Generated by `baygatectl demo`; rewritten on every run (docs/configuration.md).\n"
            "city: %s\n"
            "workers: 2\n"
            "log_level: info\n"
            "access_log: %s/access.log\n"
            "listeners:\n"
            "  - address: 127.0.0.1:%u\n"
            "    tls: true\n"
            "  - address: 127.0.0.1:%u\n"
            "    tls: false\n"
            "    local: true\n"
            "tls:\n"
            "  cert: %s/gateway.crt\n"
            "  key: %s/gateway.key\n"
            "  trust_bundle: trust-bundle.pem\n",
            c->name, c->name, (unsigned)c->tls_port, (unsigned)c->local_port, c->name,
            c->name);
    fputs("peers:\n", f);
    for (size_t i = 0; i < DEMO_MAX_LINKS && c->peers[i] != NULL; i++) {
        const demo_city *p = find_city(c->peers[i]);
        if (p == NULL) {
            fclose(f);
            unlink(tmp);
            fail("internal: unknown peer %s", c->peers[i]);
            return false;
        }
        fprintf(f,
                "  - name: %s\n"
                "    spiffe_id: spiffe://%s.gba/gateway\n"
                "    urls: [https://127.0.0.1:%u]\n",
                p->name, p->name, (unsigned)p->tls_port);
    }
    if (c->routes[0].city != NULL) {
        fputs("routes:\n", f);
    }
    for (size_t i = 0; i < DEMO_MAX_LINKS && c->routes[i].city != NULL; i++) {
        fprintf(f, "  - city: %s\n    via: %s\n", c->routes[i].city, c->routes[i].via);
    }
    /* the embedded reference data space: seeded synthetic rows, the same on every run */
    fprintf(f,
            "upstream:\n"
            "  url: builtin\n"
            "  rows: %u\n"
            "  seed: 1\n"
            "ledger:\n"
            "  path: %s/ledger\n"
            "ca:\n" /* onboarding: this city's admin approves firms, the gateway issues */
            "  cert: %s/ca.crt\n"
            "  key: %s/ca.key\n",
            (unsigned)DEMO_ROWS, c->name, c->name, c->name);
    if (profiles_abs[0]) {
        fprintf(f, "profiles: %s\n", profiles_abs);
    }
    return commit_file(f, tmp, path);
}

static bool prepare_dir(const char *dir)
{
    char path[PATH_MAX];
    demo_cert_stats stats = {0, 0};

    if (!mkdir_p(dir, 0755) || !path_fmt(path, sizeof path, "%s/clients", dir) ||
        !mkdir_p(path, 0700)) {
        return false;
    }
    for (size_t i = 0; i < DEMO_NCITIES; i++) {
        if (!path_fmt(path, sizeof path, "%s/%s/ledger", dir, cities[i].name) ||
            !mkdir_p(path, 0700)) {
            return false;
        }
    }
    for (size_t i = 0; i < DEMO_NCITIES; i++) {
        if (!ensure_city_certs(dir, &cities[i], &stats)) {
            return false;
        }
    }
    if (!write_trust_bundle(dir)) {
        return false;
    }
    for (size_t i = 0; i < DEMO_NCITIES; i++) {
        if (!write_config(dir, &cities[i])) {
            return false;
        }
    }
    printf("demo: %s: certificates %u reused, %u created; trust-bundle.pem and 4 configs "
           "written\n",
           dir, stats.reused, stats.created);
    return true;
}

/* True when something accepts TCP connections on 127.0.0.1:|port|. A loopback connect()
 * completes or is refused at once, so a blocking socket is fine. */
static bool port_is_open(uint16_t port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool open;

    if (fd < 0) {
        return false;
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    open = connect(fd, (const struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return open;
}

/* Resolves the directory holding `baygate` into |out|: |opt| if given, else our own. */
static bool find_bin_dir(const char *opt, char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n;
    char *slash;

    if (opt != NULL) {
        return path_fmt(out, cap, "%s", opt);
    }
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        fail("readlink /proc/self/exe: %s; pass --bin", strerror(errno));
        return false;
    }
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (slash == NULL) {
        return path_fmt(out, cap, ".");
    }
    *slash = '\0';
    return path_fmt(out, cap, "%s", self[0] != '\0' ? self : "/");
}

/* Writes |s| to |out| quoted for a POSIX shell when it needs it, for the printed commands. */
static const char *shell_word(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    bool plain = s[0] != '\0';

    for (const char *p = s; *p != '\0' && plain; p++) {
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-+:,=@",
                       *p) != NULL;
    }
    if (plain || cap < 3) {
        return s;
    }
    out[o++] = '\'';
    for (const char *p = s; *p != '\0'; p++) {
        const char *piece = *p == '\'' ? "'\\''" : NULL;
        size_t len = piece != NULL ? strlen(piece) : 1;
        if (o + len + 2 > cap) {
            return s;
        }
        if (piece != NULL) {
            memcpy(out + o, piece, len);
        } else {
            out[o] = *p;
        }
        o += len;
    }
    out[o++] = '\'';
    out[o] = '\0';
    return out;
}

static void print_tail(const char *path)
{
    char buf[2048];
    FILE *f = fopen(path, "rb");
    long size;
    size_t n;
    const char *start = buf;

    if (f == NULL) {
        return;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > (long)sizeof buf - 1) {
        fseek(f, size - (long)(sizeof buf - 1), SEEK_SET);
    } else {
        fseek(f, 0, SEEK_SET);
        size = 0;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (size > 0) {
        const char *nl = strchr(buf, '\n'); /* drop the partial first line */
        start = nl != NULL ? nl + 1 : buf;
    }
    if (*start != '\0') {
        fprintf(stderr, "---- last lines of %s ----\n%s%s---- end ----\n", path, start,
                buf[n > 0 ? n - 1 : 0] == '\n' ? "" : "\n");
    }
}

static void describe_exit(const demo_child *k, char *out, size_t cap)
{
    if (WIFEXITED(k->status)) {
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(k->status));
    } else if (WIFSIGNALED(k->status)) {
        snprintf(out, cap, "was killed by signal %d (%s)", WTERMSIG(k->status),
                 strsignal(WTERMSIG(k->status)));
    } else {
        snprintf(out, cap, "ended with wait status %#x", (unsigned)k->status);
    }
}

/* Reaps every child that has ended, without blocking. Returns the first one reaped by this
 * call (or NULL), so callers can tell an unexpected death. */
static demo_child *reap(demo_child *kids, size_t n)
{
    demo_child *first = NULL;
    pid_t pid;
    int status;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (kids[i].pid == pid && !kids[i].reaped) {
                kids[i].reaped = true;
                kids[i].status = status;
                if (first == NULL) {
                    first = &kids[i];
                }
            }
        }
    }
    return first;
}

static size_t count_live(const demo_child *kids, size_t n)
{
    size_t live = 0;

    for (size_t i = 0; i < n; i++) {
        live += kids[i].pid > 0 && !kids[i].reaped;
    }
    return live;
}

/* Waits up to |ms| for one of |set|'s signals; returns it, or 0 on timeout. */
static int wait_signal(const sigset_t *set, int64_t ms)
{
    struct timespec ts;
    int sig;

    if (ms < 0) {
        ms = 0;
    }
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    do {
        sig = sigtimedwait(set, NULL, &ts);
    } while (sig < 0 && errno == EINTR);
    return sig < 0 ? 0 : sig;
}

/* SIGTERM to every live child, then up to DEMO_STOP_TIMEOUT_MS for them to finish their
 * graceful shutdown; SIGKILL for the rest (or at once on another Ctrl-C). Reports each. */
static void stop_children(demo_child *kids, size_t n, const sigset_t *set)
{
    int64_t deadline = now_ms() + DEMO_STOP_TIMEOUT_MS;
    bool kill_now = false;

    reap(kids, n);
    if (count_live(kids, n) > 0) {
        printf("demo: stopping the gateways (SIGTERM, up to %d s; Ctrl-C again kills them)\n",
               DEMO_STOP_TIMEOUT_MS / 1000);
        fflush(stdout);
    }
    for (size_t i = 0; i < n; i++) {
        if (kids[i].pid > 0 && !kids[i].reaped) {
            kill(kids[i].pid, SIGTERM);
        }
    }
    while (count_live(kids, n) > 0 && !kill_now) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            break;
        }
        int sig = wait_signal(set, left < DEMO_POLL_MS ? left : DEMO_POLL_MS);
        kill_now = sig == SIGINT || sig == SIGTERM;
        reap(kids, n);
    }
    for (size_t i = 0; i < n; i++) {
        if (kids[i].pid > 0 && !kids[i].reaped) {
            printf("demo: %s (pid %ld) still running, sending SIGKILL\n", kids[i].city->name,
                   (long)kids[i].pid);
            kill(kids[i].pid, SIGKILL);
            while (waitpid(kids[i].pid, &kids[i].status, 0) < 0 && errno == EINTR) {
            }
            kids[i].reaped = true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char how[128];
        if (kids[i].pid <= 0) {
            continue;
        }
        describe_exit(&kids[i], how, sizeof how);
        printf("demo: %s (pid %ld) %s\n", kids[i].city->name, (long)kids[i].pid, how);
    }
    fflush(stdout);
}

static void report_death(const demo_child *k, const char *when)
{
    char how[128];

    describe_exit(k, how, sizeof how);
    fail("%s (pid %ld) %s %s; its log: %s", k->city->name, (long)k->pid, how, when,
         k->log_path);
    print_tail(k->log_path);
}

/* Starts `<bin>/baygate --config DIR/<city>.yaml` with stdout and stderr in
 * DIR/<city>/baygate.log. The child gets its own process group, so a terminal Ctrl-C reaches
 * only us and we decide how the gateways stop, and dies with us if we are killed. */
static bool start_child(demo_child *k, const char *dir, const char *baygate,
                        const sigset_t *orig_mask)
{
    char cfg[PATH_MAX], arg0[] = "baygate", arg1[] = "--config";
    char *argv[] = {arg0, arg1, cfg, NULL};
    char emsg[PATH_MAX + 64];
    pid_t parent = getpid(), pid;
    int logfd, nullfd;
    int emsg_len;

    if (!path_fmt(cfg, sizeof cfg, "%s/%s.yaml", dir, k->city->name) ||
        !path_fmt(k->log_path, sizeof k->log_path, "%s/%s/baygate.log", dir, k->city->name)) {
        return false;
    }
    emsg_len = snprintf(emsg, sizeof emsg, "baygatectl demo: cannot execute %s\n", baygate);
    if (emsg_len < 0 || (size_t)emsg_len >= sizeof emsg) {
        emsg_len = (int)strlen(emsg);
    }
    logfd = open(k->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0) {
        fail("%s: %s", k->log_path, strerror(errno));
        return false;
    }
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0) {
        fail("/dev/null: %s", strerror(errno));
        close(logfd);
        return false;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        fail("fork: %s", strerror(errno));
        close(nullfd);
        close(logfd);
        return false;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here to exec. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(1); /* we died before prctl() took effect */
        }
        if (dup2(nullfd, STDIN_FILENO) < 0 || dup2(logfd, STDOUT_FILENO) < 0 ||
            dup2(logfd, STDERR_FILENO) < 0) {
            _exit(127);
        }
        sigprocmask(SIG_SETMASK, orig_mask, NULL);
        execv(baygate, argv);
        if (write(STDERR_FILENO, emsg, (size_t)emsg_len) < 0) {
            _exit(127);
        }
        _exit(127);
    }
    setpgid(pid, pid); /* also here: whichever runs first wins the race */
    close(nullfd);
    close(logfd);
    k->pid = pid;
    return true;
}

/* Polls every child's TLS port until all accept connections, one shared deadline. Returns 0
 * when all are ready, 1 on a failure (reported), or the signal number if we were told to stop. */
static int wait_ready(demo_child *kids, size_t n, const sigset_t *set)
{
    int64_t deadline = now_ms() + DEMO_READY_TIMEOUT_MS;

    for (;;) {
        size_t ready = 0;
        demo_child *dead = reap(kids, n);

        if (dead != NULL) {
            report_death(dead, "during startup");
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            if (!kids[i].ready && port_is_open(kids[i].city->tls_port)) {
                kids[i].ready = true;
                printf("demo: %-9s listening on https://127.0.0.1:%u (pid %ld)\n",
                       kids[i].city->name, (unsigned)kids[i].city->tls_port, (long)kids[i].pid);
                fflush(stdout);
            }
            ready += kids[i].ready;
        }
        if (ready == n) {
            return 0;
        }
        if (now_ms() >= deadline) {
            for (size_t i = 0; i < n; i++) {
                if (!kids[i].ready) {
                    fail("%s not accepting connections on 127.0.0.1:%u after %d s; its log: %s",
                         kids[i].city->name, (unsigned)kids[i].city->tls_port,
                         DEMO_READY_TIMEOUT_MS / 1000, kids[i].log_path);
                    print_tail(kids[i].log_path);
                }
            }
            return 1;
        }
        int sig = wait_signal(set, DEMO_POLL_MS);
        if (sig == SIGINT || sig == SIGTERM) {
            return sig;
        }
    }
}

/* Prints |fn|() as a shell function: curl over HTTP/2 with the client certificate of
 * |city|'s |role| from |d| (already quoted for the shell), JSON bodies, a newline after. */
static void print_client_fn(const char *fn, const char *d, const char *city, const char *role)
{
    printf("%s() { curl -sS --http2 --cacert %s/trust-bundle.pem -w '\\n' \\\n"
           "  --cert %s/clients/%s-%s.crt --key %s/clients/%s-%s.key \\\n"
           "  -H 'content-type: application/json' \"$@\"; }\n",
           fn, d, d, city, role, d, city, role);
}

/* Every command printed here is run against the demo by hand when this text changes
 * (docs/queries.md and docs/data-products.md show what they answer). */
static void print_try(const char *dir)
{
    char q[PATH_MAX * 4 + 8];
    const char *d = shell_word(dir, q, sizeof q);
    static const char *const id_sed = "sed 's/.*\"id\":\"\\([0-9a-f]*\\)\".*/\\1/'";

    printf("\n"
           "The federation is up: guangzhou 8443, shenzhen 8444, hongkong 8445, macau 8446\n"
           "(peers guangzhou-shenzhen, shenzhen-hongkong, guangzhou-macau); each city's embedded\n"
           "data space holds %u synthetic rows per dataset (guangzhou: peds-pneumonia-indicators,\n"
           "neonatal-bilirubin, cerebral-infarction; macau: the first two; shenzhen and hongkong:\n"
           "stroke-registry, liver-cancer). Try, in bash or zsh:\n"
           "\n"
           "# a Guangzhou firm's client (curl with its certificate), and liveness\n",
           (unsigned)DEMO_ROWS);
    print_client_fn("gz", d, "guangzhou", "firm");
    printf("gz https://127.0.0.1:8443/healthz\n\n");
    if (profiles_abs[0]) {
        /* every cross-border query runs under a contract: negotiate them first */
        printf("# contracts in Guangzhou's own terms (科研 scientific research, 统计分析 statistics,\n"
               "# 一致性评估 agreement); each provider holds them in its own words. Macau's\n"
               "# research needs consent (个人同意); the others take ethics approval (伦理审查批准)\n"
               "HK=$(gz -d '{\"provider\":\"hongkong\",\"datasets\":[\"hongkong/stroke-registry\"],"
               "\"purpose\":\"科研\",\"operations\":[\"统计分析\"],\"legal_basis\":\"伦理审查批准\","
               "\"valid_days\":180,\"max_queries\":200}' \\\n"
               "  https://127.0.0.1:8443/v1/contracts | %s); echo \"hongkong: $HK\"\n"
               "SZ=$(gz -d '{\"provider\":\"shenzhen\",\"datasets\":[\"shenzhen/stroke-registry\"],"
               "\"purpose\":\"科研\",\"operations\":[\"统计分析\"],\"legal_basis\":\"伦理审查批准\","
               "\"valid_days\":180,\"max_queries\":200}' \\\n"
               "  https://127.0.0.1:8443/v1/contracts | %s); echo \"shenzhen: $SZ\"\n"
               "MO=$(gz -d '{\"provider\":\"macau\","
               "\"datasets\":[\"macau/peds-pneumonia-indicators\","
               "\"macau/neonatal-bilirubin\"],\"purpose\":\"科研\",\"operations\":[\"统计分析\","
               "\"一致性评估\"],\"legal_basis\":\"个人同意\",\"valid_days\":90}' \\\n"
               "  https://127.0.0.1:8443/v1/contracts | %s); echo \"macau: $MO\"\n"
               "\n"
               "# one city: Hong Kong stroke admissions aged 65+ by sex (guangzhou -> shenzhen ->\n"
               "# hongkong); small cells come back as {\"suppressed\": ...}, never as numbers\n"
               "gz -d '{\"contract\":\"'$HK'\",\"dataset\":\"hongkong/stroke-registry\","
               "\"op\":\"count\","
               "\"where\":[[\"age\",\">=\",65]],\"group_by\":[\"sex\"]}' \\\n"
               "  https://127.0.0.1:8443/v1/queries\n"
               "\n"
               "# fan-out to every city in \"contracts\", merged exactly: onset-to-door time "
               "by stroke type\n"
               "gz -d '{\"contracts\":{\"hongkong\":\"'$HK'\",\"shenzhen\":\"'$SZ'\"},"
               "\"dataset\":\"*/stroke-registry\",\"op\":\"mean\",\"field\":\"onset_to_door_min\","
               "\"group_by\":[\"stroke_type\"]}' \\\n"
               "  https://127.0.0.1:8443/v1/queries\n"
               "\n"
               "# quantiles across cities, exact, under secure aggregation (the home city's own "
               "leg\n"
               "# needs no contract: any string); then TcB-vs-serum bilirubin agreement by meter\n"
               "gz -d '{\"contracts\":{\"guangzhou\":\"local\",\"macau\":\"'$MO'\"},"
               "\"dataset\":\"*/peds-pneumonia-indicators\",\"op\":\"quantiles\",\"field\":\"crp\","
               "\"probs\":[0.25,0.5,0.75],\"group_by\":[\"pathogen\"]}' \\\n"
               "  https://127.0.0.1:8443/v1/queries\n"
               "gz -d '{\"contracts\":{\"guangzhou\":\"local\",\"macau\":\"'$MO'\"},"
               "\"dataset\":\"*/neonatal-bilirubin\",\"op\":\"agreement\","
               "\"fields\":[\"tcb\",\"tsb\"],"
               "\"group_by\":[\"device\"]}' \\\n"
               "  https://127.0.0.1:8443/v1/queries\n"
               "\n"
               "# what the federation holds: datasets, fields, sizes, each city's terms in yours\n"
               "gz https://127.0.0.1:8443/v1/catalog\n"
               "\n"
               "# a Hong Kong firm agrees a contract with Macau in English (Macau holds it in\n"
               "# Portuguese), then counts over three hops: hongkong -> shenzhen -> guangzhou "
               "-> macau\n",
               id_sed, id_sed, id_sed);
        print_client_fn("hk", d, "hongkong", "firm");
        printf("ID=$(hk -d '{\"provider\":\"macau\","
               "\"datasets\":[\"macau/peds-pneumonia-indicators\"],"
               "\"purpose\":\"scientific research\",\"operations\":[\"counts\"],"
               "\"legal_basis\":\"prescribed consent\",\"valid_days\":30}' \\\n"
               "  https://127.0.0.1:8445/v1/contracts | %s); echo \"macau: $ID\"\n"
               "hk -i -H 'x-request-id: demo-query-1' -d '{\"contract\":\"'$ID'\","
               "\"dataset\":\"macau/peds-pneumonia-indicators\",\"op\":\"count\","
               "\"group_by\":[\"pathogen\"]}' \\\n"
               "  https://127.0.0.1:8445/v1/queries\n"
               "\n",
               id_sed);
    } else {
        printf("# (started without --profiles: no contracts, queries name none)\n"
               "# one city: Hong Kong stroke admissions aged 65+ by sex\n"
               "gz -i -H 'x-request-id: demo-query-1' -d "
               "'{\"dataset\":\"hongkong/stroke-registry\","
               "\"op\":\"count\",\"where\":[[\"age\",\">=\",65]],\"group_by\":[\"sex\"]}' \\\n"
               "  https://127.0.0.1:8443/v1/queries\n"
               "# fan-out to the cities named in \"contracts\" (any strings here), merged exactly\n"
               "gz -d '{\"contracts\":{\"hongkong\":\"-\",\"shenzhen\":\"-\"},"
               "\"dataset\":\"*/stroke-registry\",\"op\":\"mean\",\"field\":\"onset_to_door_min\","
               "\"group_by\":[\"stroke_type\"]}' \\\n"
               "  https://127.0.0.1:8443/v1/queries\n"
               "# what the federation holds\n"
               "gz https://127.0.0.1:8443/v1/catalog\n"
               "\n");
    }
    printf("# readiness (peer sessions), as Guangzhou's admin; metrics on the local h2c listener\n"
           "curl --http2 --cacert %s/trust-bundle.pem \\\n"
           "  --cert %s/clients/guangzhou-admin.crt --key %s/clients/guangzhou-admin.key \\\n"
           "  https://127.0.0.1:8443/readyz\n"
           "curl --http2-prior-knowledge http://127.0.0.1:9443/metrics\n"
           "\n"
           "# follow one request through every city's access log; daemon logs are next to them\n"
           "grep demo-query-1 %s/*/access.log\n"
           "tail %s/*/baygate.log\n"
           "\n"
           "More: docs/queries.md (every operation), docs/data-products.md, docs/api.md.\n"
           "Press Ctrl-C to stop all four gateways.\n",
           d, d, d, d, d);
    fflush(stdout);
}

static int parse_args(int argc, char **argv, demo_opts *o)
{
    o->dir = "run/demo";
    o->bin = NULL;
    o->profiles = NULL;
    o->start = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        size_t len = 0;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return -1;
        } else if (strcmp(a, "--no-start") == 0) {
            o->start = false;
            continue;
        } else if (strncmp(a, "--dir", 5) == 0 && (a[5] == '\0' || a[5] == '=')) {
            target = &o->dir;
            len = 5;
        } else if (strncmp(a, "--bin", 5) == 0 && (a[5] == '\0' || a[5] == '=')) {
            target = &o->bin;
            len = 5;
        } else if (strncmp(a, "--profiles", 10) == 0 && (a[10] == '\0' || a[10] == '=')) {
            target = &o->profiles;
            len = 10;
        } else {
            fail("unknown argument '%s'", a);
            usage(stderr);
            return 2;
        }
        if (a[len] == '=') {
            *target = a + len + 1;
        } else if (i + 1 < argc) {
            *target = argv[++i];
        } else {
            fail("%s needs a value", a);
            usage(stderr);
            return 2;
        }
        if (**target == '\0') {
            fail("%.5s needs a non-empty value", a);
            return 2;
        }
    }
    return 0;
}

/* Installed so that SIGCHLD, whose default action is to be discarded, stays pending for
 * sigtimedwait() while blocked. Never runs: the signals stay blocked while we wait. */
static void on_signal(int sig)
{
    (void)sig;
}

int ctl_demo_main(int argc, char **argv)
{
    demo_opts o;
    demo_child kids[DEMO_NCITIES];
    char bindir[PATH_MAX], baygate[PATH_MAX];
    sigset_t set, orig_mask;
    struct sigaction sa;
    int rc;

    rc = parse_args(argc, argv, &o);
    if (rc == 0 && o.profiles != NULL && realpath(o.profiles, profiles_abs) == NULL) {
        fail("--profiles %s: %s", o.profiles, strerror(errno));
        return 2;
    }
    if (rc != 0) {
        return rc < 0 ? 0 : rc;
    }
    if (o.start) {
        if (!find_bin_dir(o.bin, bindir, sizeof bindir) ||
            !path_fmt(baygate, sizeof baygate, "%s/baygate", bindir)) {
            return 1;
        }
        if (access(baygate, X_OK) != 0) {
            fail("%s: %s; build it (make build) or pass --bin DIR", baygate, strerror(errno));
            return 1;
        }
        for (size_t i = 0; i < DEMO_NCITIES; i++) {
            uint16_t ports[2] = {cities[i].tls_port, cities[i].local_port};
            for (size_t p = 0; p < 2; p++) {
                if (port_is_open(ports[p])) {
                    fail("127.0.0.1:%u (%s) is already in use; is another demo running?",
                         (unsigned)ports[p], cities[i].name);
                    return 1;
                }
            }
        }
    }
    if (!prepare_dir(o.dir)) {
        return 1;
    }
    if (!o.start) {
        printf("demo: --no-start: run each city with\n");
        for (size_t i = 0; i < DEMO_NCITIES; i++) {
            printf("  baygate --config %s/%s.yaml\n", o.dir, cities[i].name);
        }
        return 0;
    }

    /* From here SIGINT, SIGTERM and SIGCHLD are taken synchronously with sigtimedwait(). */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, &orig_mask) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGCHLD, &sa, NULL) != 0) {
        fail("signal setup: %s", strerror(errno));
        return 1;
    }

    memset(kids, 0, sizeof kids);
    for (size_t i = 0; i < DEMO_NCITIES; i++) {
        kids[i].city = &cities[i];
        if (!start_child(&kids[i], o.dir, baygate, &orig_mask)) {
            stop_children(kids, DEMO_NCITIES, &set);
            return 1;
        }
    }
    rc = wait_ready(kids, DEMO_NCITIES, &set);
    if (rc != 0) {
        stop_children(kids, DEMO_NCITIES, &set);
        return rc == 1 ? 1 : 0;
    }
    print_try(o.dir);

    for (;;) {
        int sig = wait_signal(&set, 1000);
        demo_child *dead = reap(kids, DEMO_NCITIES);

        if (dead != NULL) {
            report_death(dead, "unexpectedly");
            stop_children(kids, DEMO_NCITIES, &set);
            return 1;
        }
        if (sig == SIGINT || sig == SIGTERM) {
            printf("\ndemo: got %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
            stop_children(kids, DEMO_NCITIES, &set);
            return 0;
        }
    }
}
