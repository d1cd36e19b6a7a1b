/* tests/unit/conf/test_conf.c: the config loader. The shipped example loads with its values,
 * every default of conf.h applies, and every validation rule fails with "file:line: ..." at
 * the line a user would look at. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"

/* Allocation failure injection: the executable links with --wrap for malloc, calloc and
 * realloc (tests/unit/conf/CMakeLists.txt), which reaches every allocation in conf/ and base/
 * (libyaml is a shared library and keeps the real ones). */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static long alloc_fail_at = -1; /* index of the allocation to fail; -1: none */
static long alloc_count;

static bool alloc_should_fail(void)
{
    return alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at;
}

void *__wrap_malloc(size_t size)
{
    return alloc_should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    return alloc_should_fail() ? NULL : __real_realloc(p, size);
}

static conf_gateway sentinel_obj;
#define SENTINEL (&sentinel_obj)

/* Lines 1-9 of a minimal valid config; tests append sections from line 10. */
#define HEAD "city: guangzhou\n"
#define LISTEN "listeners:\n  - address: 127.0.0.1:8443\n"
#define TLS "tls:\n  cert: c.pem\n  key: k.pem\n  trust_bundle: t.pem\n"
#define UPSTREAM "upstream:\n  url: builtin\n"
#define MINIMAL HEAD LISTEN TLS UPSTREAM
/* Lines 1-7 without listeners: listener tests start theirs at line 8. */
#define NOLISTEN HEAD TLS UPSTREAM
/* Lines 1-13: two peers (shenzhen at 11, macau at 12); a routes: key goes on line 14. */
#define PEERS                                                                                      \
    MINIMAL "peers:\n"                                                                             \
            "  - {name: shenzhen, urls: [https://127.0.0.1:8444]}\n"                               \
            "  - name: macau\n"                                                                    \
            "    urls: [https://127.0.0.1:8446]\n"

static int load(const char *name, const char *yaml, conf_gateway **out, bg_errbuf *eb)
{
    return conf_gateway_load_buffer(out, name, (const uint8_t *)yaml, strlen(yaml), eb);
}

static conf_gateway *load_ok(const char *yaml)
{
    conf_gateway *cfg = NULL;
    bg_errbuf eb = {{0}};
    int rv = load("t.yaml", yaml, &cfg, &eb);
    if (rv != 0) {
        print_error("unexpected failure %d: %s\n--- yaml:\n%s\n", rv, eb.msg, yaml);
        fail();
    }
    assert_non_null(cfg);
    return cfg;
}

/* Loads |yaml| as "t.yaml" and expects BG_ERR_CONF_INVALID, "t.yaml:<line>: " and |phrase|,
 * with the out-parameter untouched. */
static void expect_fail_buf(const char *yaml, size_t len, int line, const char *phrase)
{
    conf_gateway *cfg = SENTINEL;
    bg_errbuf eb = {{0}};
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "t.yaml:%d: ", line);
    int rv = conf_gateway_load_buffer(&cfg, "t.yaml", (const uint8_t *)yaml, len, &eb);
    if (rv != BG_ERR_CONF_INVALID || strncmp(eb.msg, prefix, strlen(prefix)) != 0 ||
        strstr(eb.msg, phrase) == NULL) {
        print_error("got rv=%d msg='%s'\nwant prefix '%s' and phrase '%s'\n--- yaml:\n%.*s\n", rv,
                    eb.msg, prefix, phrase, (int)len, yaml);
        fail();
    }
    assert_ptr_equal(cfg, SENTINEL);
}

static void expect_fail(const char *yaml, int line, const char *phrase)
{
    expect_fail_buf(yaml, strlen(yaml), line, phrase);
}

/* ---- the example and defaults ---- */

static void test_conf_gateway_load_example(void **state)
{
    (void)state;
    conf_gateway *cfg = NULL;
    bg_errbuf eb = {{0}};
    const char *path = BG_EXAMPLES_DIR "/guangzhou.yaml";
    int rv = conf_gateway_load(&cfg, path, &eb);
    if (rv != 0) {
        print_error("%s\n", eb.msg);
    }
    assert_int_equal(rv, 0);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->city, "guangzhou");
    assert_int_equal(cfg->workers, 2);
    assert_string_equal(cfg->log_level, "info");
    assert_string_equal(cfg->access_log, "stdout");

    assert_int_equal(cfg->nlisteners, 2);
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1:8443");
    assert_string_equal(cfg->listeners[0].host, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].port, 8443);
    assert_true(cfg->listeners[0].tls);
    assert_false(cfg->listeners[0].local);
    assert_string_equal(cfg->listeners[1].host, "127.0.0.1");
    assert_int_equal(cfg->listeners[1].port, 9443);
    assert_false(cfg->listeners[1].tls);
    assert_true(cfg->listeners[1].local);

    assert_string_equal(cfg->tls.cert, BG_EXAMPLES_DIR "/guangzhou/gateway.crt");
    assert_string_equal(cfg->tls.key, BG_EXAMPLES_DIR "/guangzhou/gateway.key");
    assert_string_equal(cfg->tls.trust_bundle, BG_EXAMPLES_DIR "/trust-bundle.pem");

    assert_int_equal(cfg->npeers, 2);
    assert_string_equal(cfg->peers[0].name, "shenzhen");
    assert_string_equal(cfg->peers[0].spiffe_id, "spiffe://shenzhen.gba/gateway");
    assert_int_equal(cfg->peers[0].nurls, 1);
    assert_string_equal(cfg->peers[0].urls[0].text, "https://127.0.0.1:8444");
    assert_true(cfg->peers[0].urls[0].tls);
    assert_string_equal(cfg->peers[0].urls[0].host, "127.0.0.1");
    assert_int_equal(cfg->peers[0].urls[0].port, 8444);
    assert_string_equal(cfg->peers[1].name, "macau");
    assert_string_equal(cfg->peers[1].spiffe_id, "spiffe://macau.gba/gateway");
    assert_int_equal(cfg->peers[1].nurls, 1);
    assert_int_equal(cfg->peers[1].urls[0].port, 8446);

    assert_int_equal(cfg->nroutes, 1);
    assert_string_equal(cfg->routes[0].city, "hongkong");
    assert_string_equal(cfg->routes[0].via, "shenzhen");

    assert_true(cfg->upstream.builtin);
    assert_null(cfg->upstream.url.text);

    assert_int_equal(cfg->timeouts.connect_ms, 2000);
    assert_int_equal(cfg->timeouts.request_ms, 10000);
    assert_int_equal(cfg->timeouts.ping_interval_ms, 10000);
    assert_int_equal(cfg->timeouts.ping_timeout_ms, 5000);
    assert_int_equal(cfg->timeouts.backoff_initial_ms, 100);
    assert_int_equal(cfg->timeouts.backoff_max_ms, 5000);
    assert_int_equal(cfg->timeouts.idle_ms, 120000);
    assert_int_equal(cfg->timeouts.shutdown_grace_ms, 10000);
    assert_int_equal(cfg->limits.max_body_bytes, 1048576);
    assert_int_equal(cfg->limits.max_hops, 8);
    assert_int_equal(cfg->limits.max_concurrent_streams, 100);
    assert_int_equal(cfg->limits.max_connections, 4096);
    assert_int_equal(cfg->limits.stream_window_bytes, 262144);
    assert_string_equal(cfg->ledger_path, BG_EXAMPLES_DIR "/guangzhou/ledger");
    conf_gateway_free(cfg);
}

static void test_conf_gateway_load_buffer_defaults(void **state)
{
    (void)state;
    conf_gateway *cfg = load_ok(MINIMAL);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t want = ncpu < 1 ? 1u : ncpu > 256 ? 256u : (uint32_t)ncpu;
    assert_string_equal(cfg->path, "t.yaml");
    assert_int_equal(cfg->workers, want);
    assert_string_equal(cfg->log_level, "info");
    assert_string_equal(cfg->access_log, "stdout");
    assert_string_equal(cfg->ledger_path, "./ledger-guangzhou");
    assert_string_equal(cfg->tls.cert, "./c.pem");
    assert_int_equal(cfg->nlisteners, 1);
    assert_true(cfg->listeners[0].tls);
    assert_false(cfg->listeners[0].local);
    assert_int_equal(cfg->npeers, 0);
    assert_null(cfg->peers);
    assert_int_equal(cfg->nroutes, 0);
    assert_true(cfg->upstream.builtin);
    assert_int_equal(cfg->timeouts.connect_ms, 2000);
    assert_int_equal(cfg->timeouts.request_ms, 10000);
    assert_int_equal(cfg->timeouts.ping_interval_ms, 10000);
    assert_int_equal(cfg->timeouts.ping_timeout_ms, 5000);
    assert_int_equal(cfg->timeouts.backoff_initial_ms, 100);
    assert_int_equal(cfg->timeouts.backoff_max_ms, 5000);
    assert_int_equal(cfg->timeouts.idle_ms, 120000);
    assert_int_equal(cfg->timeouts.shutdown_grace_ms, 10000);
    assert_int_equal(cfg->limits.max_body_bytes, 1024 * 1024);
    assert_int_equal(cfg->limits.max_hops, 8);
    assert_int_equal(cfg->limits.max_concurrent_streams, 100);
    assert_int_equal(cfg->limits.max_connections, 4096);
    assert_int_equal(cfg->limits.stream_window_bytes, 256 * 1024);
    conf_gateway_free(cfg);
}

static void test_conf_gateway_load_buffer_full_values(void **state)
{
    (void)state;
    conf_gateway *cfg = load_ok(PEERS "workers: 256\n"
                                      "log_level: debug\n"
                                      "access_log: off\n"
                                      "timeouts: {connect_ms: 1, idle_ms: 86400000}\n"
                                      "limits:\n"
                                      "  max_body_bytes: 1073741824\n"
                                      "  max_hops: 64\n"
                                      "  max_concurrent_streams: 10000\n"
                                      "  max_connections: 1\n"
                                      "  stream_window_bytes: 16384\n");
    assert_int_equal(cfg->workers, 256);
    assert_string_equal(cfg->log_level, "debug");
    assert_string_equal(cfg->access_log, "off");
    assert_int_equal(cfg->timeouts.connect_ms, 1);
    assert_int_equal(cfg->timeouts.idle_ms, 86400000);
    assert_int_equal(cfg->timeouts.request_ms, 10000);
    assert_int_equal(cfg->limits.max_body_bytes, 1073741824);
    assert_int_equal(cfg->limits.max_hops, 64);
    assert_int_equal(cfg->limits.max_concurrent_streams, 10000);
    assert_int_equal(cfg->limits.max_connections, 1);
    assert_int_equal(cfg->limits.stream_window_bytes, 16384);
    /* spiffe_id defaults to the peer's own identity. */
    assert_string_equal(cfg->peers[0].spiffe_id, "spiffe://shenzhen.gba/gateway");
    conf_gateway_free(cfg);

    cfg = load_ok(MINIMAL "limits: {stream_window_bytes: 16777216, max_hops: 1}\n"
                          "log_level: error\n");
    assert_int_equal(cfg->limits.stream_window_bytes, 16777216);
    assert_int_equal(cfg->limits.max_hops, 1);
    conf_gateway_free(cfg);
}

static void test_conf_gateway_load_buffer_upstream_url(void **state)
{
    (void)state;
    conf_gateway *cfg =
        load_ok(HEAD LISTEN TLS "upstream:\n  url: http://127.0.0.1:9500\n");
    assert_false(cfg->upstream.builtin);
    assert_string_equal(cfg->upstream.url.text, "http://127.0.0.1:9500");
    assert_false(cfg->upstream.url.tls);
    assert_string_equal(cfg->upstream.url.host, "127.0.0.1");
    assert_int_equal(cfg->upstream.url.port, 9500);
    conf_gateway_free(cfg);
    expect_fail(HEAD LISTEN TLS "upstream:\n  url: ftp://127.0.0.1:9500\n", 9, "upstream.url");
    expect_fail(HEAD LISTEN TLS "upstream:\n  url: builtin2\n", 9, "invalid URL");
    expect_fail(HEAD LISTEN TLS "upstream: builtin\n", 8, "upstream: expected a mapping");
}

/* ---- relative paths ---- */

static void test_conf_gateway_load_buffer_relative_paths(void **state)
{
    (void)state;
    const char *yaml = HEAD LISTEN
        "tls:\n  cert: certs/c.pem\n  key: /abs/k.pem\n  trust_bundle: ../t.pem\n" UPSTREAM
        "access_log: logs/access.log\nledger:\n  path: data/ledger\nprofiles: profiles\n";
    conf_gateway *cfg = NULL;
    bg_errbuf eb = {{0}};
    assert_int_equal(load("/etc/baygate/gz.yaml", yaml, &cfg, &eb), 0);
    assert_string_equal(cfg->profiles_dir, "/etc/baygate/profiles");
    assert_string_equal(cfg->tls.cert, "/etc/baygate/certs/c.pem");
    assert_string_equal(cfg->tls.key, "/abs/k.pem");
    assert_string_equal(cfg->tls.trust_bundle, "/etc/baygate/../t.pem");
    assert_string_equal(cfg->access_log, "/etc/baygate/logs/access.log");
    assert_string_equal(cfg->ledger_path, "/etc/baygate/data/ledger");
    conf_gateway_free(cfg);

    assert_int_equal(load("/gz.yaml", yaml, &cfg, &eb), 0);
    assert_string_equal(cfg->tls.cert, "/certs/c.pem");
    conf_gateway_free(cfg);

    assert_int_equal(load("conf/gz.yaml", yaml, &cfg, &eb), 0);
    assert_string_equal(cfg->tls.cert, "conf/certs/c.pem");
    conf_gateway_free(cfg);

    assert_int_equal(load("gz.yaml", yaml, &cfg, &eb), 0);
    assert_string_equal(cfg->tls.cert, "./certs/c.pem");
    conf_gateway_free(cfg);

    /* Default ledger path is relative to the config directory too. */
    assert_int_equal(load("/srv/gz/gz.yaml", MINIMAL "access_log: stdout\n", &cfg, &eb), 0);
    assert_string_equal(cfg->ledger_path, "/srv/gz/ledger-guangzhou");
    assert_string_equal(cfg->access_log, "stdout");
    assert_null(cfg->profiles_dir); /* no profiles: no contracts offered */
    conf_gateway_free(cfg);
}

static void test_conf_gateway_load_temp_file(void **state)
{
    (void)state;
    char path[] = "/tmp/baygate-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *yaml = MINIMAL;
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    conf_gateway *cfg = NULL;
    bg_errbuf eb = {{0}};
    assert_int_equal(conf_gateway_load(&cfg, path, &eb), 0);
    assert_string_equal(cfg->tls.cert, "/tmp/c.pem");
    assert_string_equal(cfg->ledger_path, "/tmp/ledger-guangzhou");
    conf_gateway_free(cfg);

    /* An error names the real file. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    yaml = MINIMAL "bogus: 1\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    cfg = SENTINEL;
    assert_int_equal(conf_gateway_load(&cfg, path, &eb), BG_ERR_CONF_INVALID);
    char want[128];
    snprintf(want, sizeof(want), "%s:10: unknown key 'bogus' at the top level", path);
    assert_string_equal(eb.msg, want);
    assert_ptr_equal(cfg, SENTINEL);
    unlink(path);
}

static void test_conf_gateway_load_io_errors(void **state)
{
    (void)state;
    conf_gateway *cfg = SENTINEL;
    bg_errbuf eb = {{0}};
    assert_int_equal(conf_gateway_load(&cfg, "/nonexistent/baygate.yaml", &eb), BG_ERR_CONF_IO);
    assert_string_equal(eb.msg, "/nonexistent/baygate.yaml: cannot read: No such file or directory");
    assert_ptr_equal(cfg, SENTINEL);
    assert_int_equal(conf_gateway_load(&cfg, "/tmp", &eb), BG_ERR_CONF_IO);
    assert_string_equal(eb.msg, "/tmp: cannot read: Is a directory");
    assert_ptr_equal(cfg, SENTINEL);
    /* A NULL errbuf is allowed. */
    assert_int_equal(conf_gateway_load(&cfg, "/nonexistent/x", NULL), BG_ERR_CONF_IO);
}

/* ---- keys and types ---- */

static void test_conf_gateway_load_buffer_unknown_key(void **state)
{
    (void)state;
    expect_fail(MINIMAL "bogus: 1\n", 10, "unknown key 'bogus'");
    expect_fail(MINIMAL "limits:\n  max_hopz: 3\n", 11, "unknown key 'max_hopz' in limits");
    expect_fail(MINIMAL "timeouts:\n  connect: 3\n", 11, "unknown key 'connect' in timeouts");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:1\n    tsl: true\n", 10,
                "unknown key 'tsl' in listeners[0]");
    expect_fail(HEAD LISTEN "tls:\n  cert: c\n  key: k\n  trust_bundle: t\n  ca: x\n" UPSTREAM, 8,
                "unknown key 'ca' in tls");
    expect_fail(MINIMAL "peers:\n  - {name: macau, url: https://h:1}\n", 11,
                "unknown key 'url' in peers[0]");
    expect_fail(MINIMAL "ledger:\n  dir: x\n", 11, "unknown key 'dir' in ledger");
    expect_fail(MINIMAL "[1]: x\n", 10, "keys must be plain strings");
}

static void test_conf_gateway_load_buffer_duplicate_key(void **state)
{
    (void)state;
    expect_fail(MINIMAL "city: shenzhen\n", 10, "duplicate key 'city'");
    expect_fail(MINIMAL "limits:\n  max_hops: 3\n  max_hops: 4\n", 12, "duplicate key 'max_hops'");
}

static void test_conf_gateway_load_buffer_type_errors(void **state)
{
    (void)state;
    expect_fail(MINIMAL "workers: abc\n", 10, "workers: expected an integer, got 'abc'");
    expect_fail(MINIMAL "workers: \"4\"\n", 10, "expected an integer, got the string");
    expect_fail(MINIMAL "workers: 4.5\n", 10, "expected an integer");
    expect_fail(MINIMAL "workers: 0x10\n", 10, "expected an integer");
    expect_fail(MINIMAL "workers: 010\n", 10, "without leading zeros");
    expect_fail(MINIMAL "workers: +3\n", 10, "expected an integer");
    expect_fail(MINIMAL "workers: 1_0\n", 10, "expected an integer");
    expect_fail(MINIMAL "workers: [1]\n", 10, "expected an integer, got a list");
    expect_fail(MINIMAL "workers:\n", 10, "expected an integer, got nothing");
    expect_fail(MINIMAL "workers: -1\n", 10, "must not be negative");
    expect_fail(MINIMAL "workers: 0\n", 10, "out of range");
    expect_fail(MINIMAL "workers: 257\n", 10, "out of range (allowed: 1..256)");
    expect_fail(MINIMAL "workers: 99999999999999999999999999\n", 10, "out of range");
    expect_fail(MINIMAL "timeouts: {request_ms: 4294967296}\n", 10, "timeouts.request_ms");
    expect_fail(MINIMAL "timeouts: {request_ms: 18446744073709551616}\n", 10, "out of range");
    expect_fail("city: [guangzhou]\n" LISTEN TLS UPSTREAM, 1, "city: expected a string, got a list");
    expect_fail("city:\n" LISTEN TLS UPSTREAM, 1, "city: expected a string, got nothing");
    expect_fail("city: ~\n" LISTEN TLS UPSTREAM, 1, "expected a string");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:1\n    tls: maybe\n", 10,
                "listeners[0].tls: expected true or false, got 'maybe'");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:1\n    local: \"true\"\n", 10,
                "expected true or false");
    expect_fail(NOLISTEN "listeners:\n  - address: {a: 1}\n", 9, "expected a string, got a mapping");
    expect_fail(NOLISTEN "listeners:\n  - 127.0.0.1:1\n", 9, "listeners[0]: expected a mapping");
    expect_fail(NOLISTEN "listeners: 127.0.0.1:1\n", 8, "listeners: expected a list");
    expect_fail(MINIMAL "limits: 5\n", 10, "limits: expected a mapping");
    expect_fail(MINIMAL "timeouts:\n", 10, "timeouts: expected a mapping, got nothing");
    expect_fail(MINIMAL "peers: {name: x}\n", 10, "peers: expected a list");
    expect_fail(MINIMAL "routes: x\n", 10, "routes: expected a list");
    expect_fail(MINIMAL "ledger: {path: [a]}\n", 10, "ledger.path: expected a string");
    expect_fail(MINIMAL "ledger: {path: \"\"}\n", 10, "ledger.path: must not be empty");
}

static void test_conf_gateway_load_buffer_ranges(void **state)
{
    (void)state;
    expect_fail(MINIMAL "limits:\n  max_body_bytes: 0\n", 11, "limits.max_body_bytes");
    expect_fail(MINIMAL "limits:\n  max_body_bytes: 1073741825\n", 11, "out of range");
    expect_fail(MINIMAL "limits:\n  max_hops: 0\n", 11, "limits.max_hops: 0 is out of range");
    expect_fail(MINIMAL "limits:\n  max_hops: 65\n", 11, "allowed: 1..64");
    expect_fail(MINIMAL "limits:\n  stream_window_bytes: 16383\n", 11, "16384..16777216");
    expect_fail(MINIMAL "limits:\n  stream_window_bytes: 16777217\n", 11, "out of range");
    expect_fail(MINIMAL "limits:\n  max_concurrent_streams: 0\n", 11, "out of range");
    expect_fail(MINIMAL "limits:\n  max_concurrent_streams: 10001\n", 11, "1..10000");
    expect_fail(MINIMAL "limits:\n  max_connections: 0\n", 11, "max_connections");
    expect_fail(MINIMAL "timeouts:\n  connect_ms: 0\n", 11, "timeouts.connect_ms: 0 is out");
    expect_fail(MINIMAL "timeouts:\n  idle_ms: 86400001\n", 11, "1..86400000");
    expect_fail(MINIMAL "timeouts:\n  ping_timeout_ms: -5\n", 11, "must not be negative");
    expect_fail(MINIMAL "timeouts:\n  backoff_initial_ms: 6000\n", 11, "backoff_max_ms");
    expect_fail(MINIMAL "timeouts:\n  backoff_initial_ms: 600\n  backoff_max_ms: 500\n", 12,
                "must not be below backoff_initial_ms");
}

static void test_conf_gateway_load_buffer_missing_required(void **state)
{
    (void)state;
    expect_fail(LISTEN TLS UPSTREAM, 1, "missing required key 'city'");
    expect_fail("# comment\n\n" LISTEN TLS UPSTREAM, 3, "missing required key 'city'");
    expect_fail(HEAD TLS UPSTREAM, 1, "missing required key 'listeners'");
    expect_fail(HEAD LISTEN UPSTREAM, 1, "missing required key 'tls'");
    expect_fail(HEAD LISTEN TLS, 1, "missing required key 'upstream'");
    expect_fail(NOLISTEN "listeners: []\n", 8, "listeners: at least 1 entry required");
    expect_fail(NOLISTEN "listeners:\n", 8, "listeners: expected a list");
    expect_fail(NOLISTEN "listeners:\n  - tls: true\n", 9, "listeners[0]: missing required key 'address'");
    expect_fail(HEAD LISTEN "tls:\n  key: k\n  trust_bundle: t\n" UPSTREAM, 5,
                "tls: missing required key 'cert'");
    expect_fail(HEAD LISTEN "tls:\n  cert: c\n  trust_bundle: t\n" UPSTREAM, 5,
                "tls: missing required key 'key'");
    expect_fail(HEAD LISTEN "tls:\n  cert: c\n  key: k\n" UPSTREAM, 5,
                "tls: missing required key 'trust_bundle'");
    expect_fail(HEAD LISTEN "tls:\n  cert: c\n  key: k\n  trust_bundle:\n" UPSTREAM, 7,
                "tls.trust_bundle: expected a string");
    expect_fail(HEAD LISTEN TLS "upstream: {}\n", 8, "upstream: missing required key 'url'");
}

static void test_conf_gateway_load_buffer_city(void **state)
{
    (void)state;
    expect_fail("city: Guangzhou\n" LISTEN TLS UPSTREAM, 1, "not a valid city id");
    expect_fail("city: 1abc\n" LISTEN TLS UPSTREAM, 1, "'1abc' is not a valid city id");
    expect_fail("city: guang_zhou\n" LISTEN TLS UPSTREAM, 1, "not a valid city id");
    expect_fail("city: -abc\n" LISTEN TLS UPSTREAM, 1, "not a valid city id");
    expect_fail("city: \"\"\n" LISTEN TLS UPSTREAM, 1, "city: must not be empty");
    expect_fail("city: a23456789012345678901234567890123456789012345678901234567890123x\n" LISTEN
                    TLS UPSTREAM,
                1, "not a valid city id");
    conf_gateway *cfg =
        load_ok("city: a23456789012345678901234567890123456789012345678901234567890123\n" LISTEN
                    TLS UPSTREAM);
    assert_int_equal(strlen(cfg->city), 63);
    conf_gateway_free(cfg);
    cfg = load_ok("city: a-0\n" LISTEN TLS UPSTREAM);
    assert_string_equal(cfg->city, "a-0");
    conf_gateway_free(cfg);
}

static void test_conf_gateway_load_buffer_log_level(void **state)
{
    (void)state;
    expect_fail(MINIMAL "log_level: verbose\n", 10, "log_level: 'verbose' is not one of");
    expect_fail(MINIMAL "log_level: INFO\n", 10, "log_level");
    static const char *const ok[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++) {
        char yaml[512];
        snprintf(yaml, sizeof(yaml), MINIMAL "log_level: %s\n", ok[i]);
        conf_gateway *cfg = load_ok(yaml);
        assert_string_equal(cfg->log_level, ok[i]);
        conf_gateway_free(cfg);
    }
}

/* ---- listeners ---- */

static void test_conf_gateway_load_buffer_listeners(void **state)
{
    (void)state;
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:9443\n    tls: false\n", 10,
                "tls: false (cleartext h2c) requires local: true");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:9443\n    tls: false\n"
                         "    local: false\n",
                10, "requires local: true");
    expect_fail(NOLISTEN "listeners:\n  - address: 0.0.0.0:9443\n    tls: false\n"
                         "    local: true\n",
                9, "cleartext listener must be on a loopback address");
    expect_fail(NOLISTEN "listeners:\n  - address: \"[::]:9443\"\n    tls: false\n"
                         "    local: true\n",
                9, "loopback");
    expect_fail(NOLISTEN "listeners:\n  - address: gateway.example:9443\n    tls: false\n"
                         "    local: true\n",
                9, "not 'gateway.example'");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:8443\n  - address: 10.0.0.1:1\n"
                         "  - address: 127.0.0.1:8443\n",
                11, "duplicate listener address '127.0.0.1:8443' (see line 9)");
    expect_fail(NOLISTEN "listeners:\n  - address: \"[::1]:8443\"\n"
                         "  - address: \"[0:0::1]:8443\"\n",
                10, "duplicate listener address");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:0\n", 9, "port must be a number");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:65536\n", 9, "1 to 65535");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1\n", 9, "missing ':port'");
    expect_fail(NOLISTEN "listeners:\n  - address: \":8443\"\n", 9, "missing host");
    expect_fail(NOLISTEN "listeners:\n  - address: \"::1:8443\"\n", 9, "missing host");
    expect_fail(NOLISTEN "listeners:\n  - address: \"[::1:8443\"\n", 9, "missing ']'");
    expect_fail(NOLISTEN "listeners:\n  - address: \"[zz]:8443\"\n", 9, "invalid IPv6");
    expect_fail(NOLISTEN "listeners:\n  - address: \"a b:8443\"\n", 9, "invalid host");

    conf_gateway *cfg = load_ok(
        NOLISTEN "listeners:\n"
                 "  - {address: 127.5.6.7:1, tls: false, local: true}\n"
                 "  - {address: \"[::1]:2\", tls: false, local: true}\n"
                 "  - {address: localhost:3, tls: false, local: true}\n"
                 "  - {address: \"[::]:4\"}\n"
                 "  - {address: 0.0.0.0:4, local: true}\n"
                 "  - {address: 127.0.0.1:3}\n");
    assert_int_equal(cfg->nlisteners, 6);
    assert_string_equal(cfg->listeners[1].host, "::1");
    assert_string_equal(cfg->listeners[1].address, "[::1]:2");
    assert_int_equal(cfg->listeners[1].port, 2);
    assert_false(cfg->listeners[2].tls);
    assert_true(cfg->listeners[4].local);
    assert_true(cfg->listeners[4].tls);
    conf_gateway_free(cfg);
}

static void test_conf_gateway_load_buffer_client_identity(void **state)
{
    (void)state;
    conf_gateway *cfg = load_ok(NOLISTEN "listeners:\n"
                                         "  - {address: 127.0.0.1:1, tls: false, local: true,\n"
                                         "     client_identity: spiffe://guangzhou.gba/firm/bench}\n"
                                         "  - {address: 127.0.0.1:2}\n");
    assert_string_equal(cfg->listeners[0].client_identity, "spiffe://guangzhou.gba/firm/bench");
    assert_null(cfg->listeners[1].client_identity);
    conf_gateway_free(cfg);
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:8443\n"
                         "    client_identity: spiffe://guangzhou.gba/firm/x\n",
                10, "only allowed on a local cleartext listener");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:8443\n    tls: false\n"
                         "    local: true\n    client_identity: spiffe://guangzhou.gba/firm\n",
                12, "is not spiffe://<city>.gba/<role>/<id>");
    expect_fail(NOLISTEN "listeners:\n  - address: 127.0.0.1:8443\n    tls: false\n"
                         "    local: true\n    client_identity: https://x.gba/firm/a\n",
                12, "is not spiffe://");
}

/* ---- peers ---- */

static void test_conf_gateway_load_buffer_peers(void **state)
{
    (void)state;
    expect_fail(MINIMAL "peers:\n  - {name: macau, urls: [https://h:1]}\n"
                        "  - {name: macau, urls: [https://h:2]}\n",
                12, "duplicate peer name 'macau' (see line 11)");
    expect_fail(MINIMAL "peers:\n  - {name: guangzhou, urls: [https://h:1]}\n", 11,
                "cannot be this gateway's own city");
    expect_fail(MINIMAL "peers:\n  - {name: Macau, urls: [https://h:1]}\n", 11,
                "peers[0].name: 'Macau' is not a valid city id");
    expect_fail(MINIMAL "peers:\n  - name: macau\n    spiffe_id: spiffe://shenzhen.gba/gateway\n"
                        "    urls: [https://h:1]\n",
                12, "must be 'spiffe://macau.gba/gateway'");
    expect_fail(MINIMAL "peers:\n  - name: macau\n    spiffe_id: spiffe://macau.gba/gw\n"
                        "    urls: [https://h:1]\n",
                12, "peers[0].spiffe_id");
    expect_fail(MINIMAL "peers:\n  - name: macau\n    spiffe_id: macau\n"
                        "    urls: [https://h:1]\n",
                12, "spiffe://<name>.gba/gateway");
    expect_fail(MINIMAL "peers:\n  - name: macau\n", 11, "peers[0]: missing required key 'urls'");
    expect_fail(MINIMAL "peers:\n  - urls: [https://h:1]\n", 11, "missing required key 'name'");
    expect_fail(MINIMAL "peers:\n  - name: macau\n    urls: []\n", 12,
                "peers[0].urls: at least 1 entry");
    expect_fail(MINIMAL "peers:\n  - name: macau\n    urls: https://h:1\n", 12,
                "peers[0].urls: expected a list");
    expect_fail(MINIMAL "peers:\n  - name: macau\n    urls: [https://h:1, https://h:2, "
                        "https://h:3, https://h:4, https://h:5, https://h:6, https://h:7, "
                        "https://h:8, https://h:9]\n",
                12, "at most 8 entries");
    expect_fail(MINIMAL "peers:\n  - name: macau\n    urls:\n      - https://h:1\n"
                        "      - https://h/\n",
                14, "peers[0].urls[1]: invalid URL 'https://h/'");

    conf_gateway *cfg = load_ok(MINIMAL "peers:\n  - name: macau\n    urls:\n"
                                        "      - https://[::1]:1/\n"
                                        "      - http://h.example:2\n");
    assert_int_equal(cfg->npeers, 1);
    assert_int_equal(cfg->peers[0].nurls, 2);
    assert_string_equal(cfg->peers[0].urls[0].host, "::1");
    assert_string_equal(cfg->peers[0].urls[0].text, "https://[::1]:1/");
    assert_false(cfg->peers[0].urls[1].tls);
    conf_gateway_free(cfg);
    cfg = load_ok(MINIMAL "peers: []\nroutes: []\n");
    assert_int_equal(cfg->npeers, 0);
    assert_int_equal(cfg->nroutes, 0);
    conf_gateway_free(cfg);
}

static void test_conf_gateway_find_peer_lookup(void **state)
{
    (void)state;
    conf_gateway *cfg = load_ok(PEERS);
    const conf_peer *p = conf_gateway_find_peer(cfg, "macau");
    assert_non_null(p);
    assert_string_equal(p->name, "macau");
    assert_ptr_equal(conf_gateway_find_peer(cfg, "shenzhen"), &cfg->peers[0]);
    assert_null(conf_gateway_find_peer(cfg, "hongkong"));
    assert_null(conf_gateway_find_peer(cfg, "guangzhou"));
    assert_null(conf_gateway_find_peer(cfg, NULL));
    assert_null(conf_gateway_find_peer(NULL, "macau"));
    conf_gateway_free(cfg);
    conf_gateway_free(NULL);
}

/* ---- routes ---- */

static void test_conf_gateway_load_buffer_routes(void **state)
{
    (void)state;
    conf_gateway *cfg = load_ok(PEERS "routes:\n  - {city: hongkong, via: shenzhen}\n"
                                      "  - {city: zhuhai, via: macau}\n");
    assert_int_equal(cfg->nroutes, 2);
    assert_string_equal(cfg->routes[1].city, "zhuhai");
    assert_string_equal(cfg->routes[1].via, "macau");
    conf_gateway_free(cfg);

    expect_fail(PEERS "routes:\n  - {city: hongkong, via: taipa}\n", 15,
                "routes[0].via: unknown peer 'taipa'");
    expect_fail(PEERS "routes:\n  - {city: guangzhou, via: macau}\n", 15,
                "'guangzhou' is this gateway's own city");
    expect_fail(PEERS "routes:\n  - {city: macau, via: shenzhen}\n", 15,
                "'macau' is a peer");
    expect_fail(PEERS "routes:\n  - {city: macau, via: macau}\n", 15, "is a peer");
    expect_fail(PEERS "routes:\n  - {city: Hong-Kong, via: macau}\n", 15, "not a valid city id");
    expect_fail(PEERS "routes:\n  - {city: hongkong, via: macau}\n"
                      "  - {city: hongkong, via: macau}\n",
                16, "duplicate route for 'hongkong' via 'macau' (see line 15)");
    {   /* two routes to one city through different peers: alternatives, in order */
        const char *y = PEERS "routes:\n  - {city: hongkong, via: macau}\n"
                              "  - {city: hongkong, via: shenzhen}\n";
        conf_gateway *alt = NULL;
        bg_errbuf eb2 = {{0}};
        assert_int_equal(conf_gateway_load_buffer(&alt, "t.yaml", (const uint8_t *)y, strlen(y),
                                                  &eb2), 0);
        assert_int_equal(alt->nroutes, 2);
        assert_string_equal(alt->routes[1].via, "shenzhen");
        conf_gateway_free(alt);
    }
    expect_fail(PEERS "routes:\n  - {city: hongkong}\n", 15, "missing required key 'via'");
    expect_fail(PEERS "routes:\n  - {via: macau}\n", 15, "missing required key 'city'");
    /* Routes before peers in the file still see every peer. */
    cfg = load_ok(MINIMAL "routes: [{city: hongkong, via: macau}]\n"
                          "peers: [{name: macau, urls: ['https://h:1']}]\n");
    assert_int_equal(cfg->nroutes, 1);
    conf_gateway_free(cfg);
}

/* ---- YAML structure ---- */

static void test_conf_gateway_load_buffer_yaml_structure(void **state)
{
    (void)state;
    expect_fail("", 1, "empty document");
    expect_fail("# only a comment\n", 1, "empty document");
    expect_fail("---\n", 2, "the top level must be a mapping");
    expect_fail("- a\n- b\n", 1, "the top level must be a mapping");
    expect_fail("hello\n", 1, "the top level must be a mapping");
    expect_fail(MINIMAL "---\ncity: x\n", 10, "only one YAML document");
    expect_fail(MINIMAL "peers: &p []\n", 10, "anchors");
    expect_fail("city: &c guangzhou\n" LISTEN TLS UPSTREAM, 1, "anchors");
    expect_fail("base: &b {a: 1}\nother: *b\n", 1, "anchors");
    expect_fail(MINIMAL "routes: *r\n", 10, "aliases");
    expect_fail(MINIMAL "workers: !!int 3\n", 10, "tags");
    expect_fail(MINIMAL "peers: !custom []\n", 10, "tags (!custom)");
    expect_fail(MINIMAL "city: [a\n", 11,
                "YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
                "sequence started at line 10)");
    expect_fail("city: guangzhou\n  bad: indent\n", 2, "YAML syntax error");
    expect_fail("city: guangzhou\n\tlisteners: []\n", 2, "YAML syntax error");

    char deep[200];
    memset(deep, '[', 40);
    memcpy(deep + 40, "1", 2);
    expect_fail(deep, 1, "nesting too deep");
    char deepm[2000];
    size_t off = 0;
    for (int i = 0; i < 20; i++) {
        off += (size_t)snprintf(deepm + off, sizeof(deepm) - off, "%*sk%d:\n", i * 2, "", i);
    }
    expect_fail(deepm, 17, "nesting too deep");

    /* Bytes libyaml refuses, with the line they are on. */
    static const char nul[] = "city: guangzhou\nworkers: 1\x00\n";
    expect_fail_buf(nul, sizeof(nul) - 1, 2, "YAML syntax error");
    static const char badutf8[] = "city: guangzhou\n\nx: \xff\xfe\n";
    expect_fail_buf(badutf8, sizeof(badutf8) - 1, 3, "YAML syntax error");
    /* Escaped NUL inside a quoted string reaches us; reject it rather than truncate. */
    expect_fail("city: \"guang\\0zhou\"\n" LISTEN TLS UPSTREAM, 1, "NUL");
}

static void test_conf_gateway_load_buffer_null_args(void **state)
{
    (void)state;
    conf_gateway *cfg = SENTINEL;
    bg_errbuf eb = {{0}};
    assert_int_equal(conf_gateway_load_buffer(&cfg, NULL, NULL, 0, &eb), BG_ERR_CONF_INVALID);
    assert_string_equal(eb.msg, "<config>:1: empty document (expected city:, listeners:, tls:, upstream:)");
    assert_int_equal(conf_gateway_load_buffer(&cfg, "t.yaml", (const uint8_t *)"x: 1", 4, NULL),
                     BG_ERR_CONF_INVALID);
    assert_ptr_equal(cfg, SENTINEL);
}

static void test_conf_gateway_load_buffer_long_key_is_clipped(void **state)
{
    (void)state;
    char yaml[2048];
    char key[1001];
    memset(key, 'k', 1000);
    key[1000] = 0;
    snprintf(yaml, sizeof(yaml), MINIMAL "%s: 1\n", key);
    conf_gateway *cfg = SENTINEL;
    bg_errbuf eb = {{0}};
    assert_int_equal(load("t.yaml", yaml, &cfg, &eb), BG_ERR_CONF_INVALID);
    assert_true(strncmp(eb.msg, "t.yaml:10: unknown key 'kkkk", 28) == 0);
    assert_non_null(strstr(eb.msg, "...'"));
    assert_true(strlen(eb.msg) < 200);
}

/* ---- allocation failure ---- */

static void test_conf_gateway_load_nomem_every_allocation(void **state)
{
    (void)state;
    char path[] = "/tmp/baygate-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *in = fopen(BG_EXAMPLES_DIR "/guangzhou.yaml", "r");
    assert_non_null(in);
    char text[8192];
    size_t n = fread(text, 1, sizeof(text), in);
    fclose(in);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);

    long failures = 0;
    for (long i = 0;; i++) {
        conf_gateway *cfg = SENTINEL;
        bg_errbuf eb = {{0}};
        alloc_count = 0;
        alloc_fail_at = i;
        int rv = conf_gateway_load(&cfg, path, &eb);
        alloc_fail_at = -1;
        if (rv == 0) {
            assert_true(alloc_count <= i); /* every allocation succeeded: done */
            conf_gateway_free(cfg);
            break;
        }
        failures++;
        if (rv != BG_ERR_NOMEM || strstr(eb.msg, "out of memory") == NULL) {
            print_error("allocation %ld: rv=%d msg='%s'\n", i, rv, eb.msg);
            fail();
        }
        assert_ptr_equal(cfg, SENTINEL);
        assert_true(i < 100000);
    }
    assert_true(failures > 20);
    unlink(path);

    /* The URL parser alone. */
    for (long i = 0;; i++) {
        conf_url u = {0};
        alloc_count = 0;
        alloc_fail_at = i;
        int rv = conf_url_parse(&u, "https://[::1]:8443/", NULL);
        alloc_fail_at = -1;
        if (rv == 0) {
            conf_url_dispose(&u);
            break;
        }
        assert_int_equal(rv, BG_ERR_NOMEM);
        assert_null(u.text);
    }
}

/* ---- conf_url_parse ---- */

static void url_ok(const char *text, bool tls, const char *host, uint16_t port)
{
    conf_url u = {0};
    bg_errbuf eb = {{0}};
    int rv = conf_url_parse(&u, text, &eb);
    if (rv != 0) {
        print_error("'%s': %s\n", text, eb.msg);
    }
    assert_int_equal(rv, 0);
    assert_string_equal(u.text, text);
    assert_int_equal(u.tls, tls);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    conf_url_dispose(&u);
    assert_null(u.text);
    assert_null(u.host);
}

static void url_bad(const char *text, const char *phrase)
{
    conf_url u = {.text = (char *)"untouched"};
    bg_errbuf eb = {{0}};
    int rv = conf_url_parse(&u, text, &eb);
    if (rv != BG_ERR_CONF_INVALID || strncmp(eb.msg, "invalid URL", 11) != 0 ||
        strstr(eb.msg, phrase) == NULL) {
        print_error("'%s': rv=%d msg='%s', want phrase '%s'\n", text, rv, eb.msg, phrase);
        fail();
    }
    assert_string_equal(u.text, "untouched");
}

static void test_conf_url_parse_valid(void **state)
{
    (void)state;
    url_ok("https://127.0.0.1:8444", true, "127.0.0.1", 8444);
    url_ok("http://127.0.0.1:9500", false, "127.0.0.1", 9500);
    url_ok("https://gw.shenzhen.example:443/", true, "gw.shenzhen.example", 443);
    url_ok("https://[::1]:8443", true, "::1", 8443);
    url_ok("http://[fe80::1:2]:1/", false, "fe80::1:2", 1);
    url_ok("https://h:65535", true, "h", 65535);
}

static void test_conf_url_parse_invalid(void **state)
{
    (void)state;
    url_bad("", "scheme");
    url_bad("127.0.0.1:80", "scheme must be https:// or http://");
    url_bad("ftp://h:21", "scheme");
    url_bad("HTTPS://h:1", "scheme");
    url_bad("https://h", "missing ':port'");
    url_bad("https://h:", "port");
    url_bad("https://h:0", "1 to 65535");
    url_bad("https://h:65536", "1 to 65535");
    url_bad("https://h:123456", "port");
    url_bad("https://h:8a", "port");
    url_bad("https://h:+8", "port");
    url_bad("https://h:1/x", "path is not allowed");
    url_bad("https://h:1//", "path");
    url_bad("https://h:1?q", "only scheme://host:port");
    url_bad("https://h:1#f", "only scheme://host:port");
    url_bad("https://u@h:1", "only scheme://host:port");
    url_bad("https://:1", "missing host");
    url_bad("https://", "missing");
    url_bad("https:///", "missing");
    url_bad("https://::1:80", "missing host");
    url_bad("https://[::1:80", "missing ']'");
    url_bad("https://[::1]80", "missing ':port'");
    url_bad("https://[zz]:80", "invalid IPv6");
    url_bad("https://[]:80", "invalid IPv6");
    url_bad("https://[127.0.0.1]:80", "invalid IPv6");
    url_bad("https://h h:1", "invalid host");
    url_bad("https://h:1 ", "port");

    conf_url u;
    assert_int_equal(conf_url_parse(&u, "nope", NULL), BG_ERR_CONF_INVALID);
    assert_int_equal(conf_url_parse(&u, NULL, NULL), BG_ERR_CONF_INVALID);
    conf_url_dispose(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_gateway_load_example),
        cmocka_unit_test(test_conf_gateway_load_buffer_defaults),
        cmocka_unit_test(test_conf_gateway_load_buffer_full_values),
        cmocka_unit_test(test_conf_gateway_load_buffer_upstream_url),
        cmocka_unit_test(test_conf_gateway_load_buffer_relative_paths),
        cmocka_unit_test(test_conf_gateway_load_temp_file),
        cmocka_unit_test(test_conf_gateway_load_io_errors),
        cmocka_unit_test(test_conf_gateway_load_buffer_unknown_key),
        cmocka_unit_test(test_conf_gateway_load_buffer_duplicate_key),
        cmocka_unit_test(test_conf_gateway_load_buffer_type_errors),
        cmocka_unit_test(test_conf_gateway_load_buffer_ranges),
        cmocka_unit_test(test_conf_gateway_load_buffer_missing_required),
        cmocka_unit_test(test_conf_gateway_load_buffer_city),
        cmocka_unit_test(test_conf_gateway_load_buffer_log_level),
        cmocka_unit_test(test_conf_gateway_load_buffer_listeners),
        cmocka_unit_test(test_conf_gateway_load_buffer_client_identity),
        cmocka_unit_test(test_conf_gateway_load_buffer_peers),
        cmocka_unit_test(test_conf_gateway_find_peer_lookup),
        cmocka_unit_test(test_conf_gateway_load_buffer_routes),
        cmocka_unit_test(test_conf_gateway_load_buffer_yaml_structure),
        cmocka_unit_test(test_conf_gateway_load_buffer_null_args),
        cmocka_unit_test(test_conf_gateway_load_buffer_long_key_is_clipped),
        cmocka_unit_test(test_conf_gateway_load_nomem_every_allocation),
        cmocka_unit_test(test_conf_url_parse_valid),
        cmocka_unit_test(test_conf_url_parse_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
