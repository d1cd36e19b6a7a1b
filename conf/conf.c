/* conf/conf.c: loads the gateway's YAML file (libyaml) into a conf_gateway, applies the
 * defaults of conf.h and validates every rule up front, so the rest of the gateway only ever
 * sees a complete, consistent, const configuration. Not for: opening certificate or ledger
 * files (trust/ does that) or watching the file for changes (reload is the gateway's job). */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "base/ids.h"
#include "base/bytes.h"

/* The largest file we read; a gateway config is a few KiB, anything near this is a mistake. */
#define CONF_MAX_FILE_BYTES (1024u * 1024u)
/* Nesting the format needs is 5 (root > peers > peer > urls > url); more is an error. */
#define CONF_MAX_DEPTH 16
/* Bounds on list lengths keep validation (pairwise duplicate checks) cheap on any input. */
#define CONF_MAX_LISTENERS 32
#define CONF_MAX_PEERS 256
#define CONF_MAX_ROUTES 1024

#define KIB ((uint64_t)1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define MS_MAX ((uint64_t)86400000) /* one day */

/* Load state: the document being walked and where errors go. */
typedef struct loader {
    yaml_document_t *doc;
    const char *name; /* file name for messages */
    const char *dir;  /* base for relative paths, without trailing slash unless "/" */
    bg_errbuf *eb;
    conf_gateway *cfg;
} loader;

/* ---- messages ---- */

/* Copies at most 48 characters of |s| into |buf|, non-printable bytes as '?', so that
 * messages stay one readable line whatever the input holds. */
static const char *show(char *buf, size_t size, const char *s, size_t len)
{
    size_t max = size - 4;
    size_t i;
    for (i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c >= 0x20 && c < 0x7f) ? s[i] : '?';
    }
    if (i < len) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = 0;
    return buf;
}

static unsigned long node_line(const yaml_node_t *n)
{
    return n != NULL ? (unsigned long)n->start_mark.line + 1 : 1;
}

/* Writes "file:line: <message>" to the caller's error buffer; always returns
 * BG_ERR_CONF_INVALID, so `return fail(...)` never reads as success. */
static int fail_at(loader *l, unsigned long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(loader *l, unsigned long line, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    bg_errf(l->eb, BG_ERR_CONF_INVALID, "%s:%lu: %s", l->name, line, what);
    return BG_ERR_CONF_INVALID;
}

/* fail_at() at the line of node |n| (line 1 when |n| is NULL). */
static int fail(loader *l, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(loader *l, const yaml_node_t *n, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    bg_errf(l->eb, BG_ERR_CONF_INVALID, "%s:%lu: %s", l->name, node_line(n), what);
    return BG_ERR_CONF_INVALID;
}

/* Always returns BG_ERR_NOMEM. */
static int nomem(loader *l)
{
    bg_errf(l->eb, BG_ERR_NOMEM, "%s: out of memory", l->name);
    return BG_ERR_NOMEM;
}

/* ---- small syntax checks shared by config and URLs ---- */

/* City ids: [a-z][a-z0-9-]{0,62} (base/ids.h). */
static bool is_city_id(const char *s)
{
    return bg_city_id_valid(s, strlen(s));
}

/* Parses 1..65535 written as plain decimal digits (no sign, no leading zeros beyond "0"). */
static bool parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5) {
        return false;
    }
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < 1 || v > 65535) {
        return false;
    }
    *out = (uint16_t)v;
    return true;
}

/* Host names: letters, digits, '-' and '.', 1..253 characters. */
static bool is_host_name(const char *s, size_t len)
{
    if (len == 0 || len > 253) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.')) {
            return false;
        }
    }
    return true;
}

/* Splits "host:port" or "[v6]:port" (|text| is |len| bytes); on success |*host| is a fresh
 * string without brackets. Returns NULL (and |*host| NULL on NOMEM) or a static reason. */
static const char *split_host_port(const char *text, size_t len, char **host, uint16_t *port,
                                   int *rv)
{
    const char *hs;
    size_t hlen;
    const char *rest;
    *rv = 0;
    *host = NULL;
    if (len > 0 && text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (close == NULL) {
            return "missing ']' after IPv6 address";
        }
        hs = text + 1;
        hlen = (size_t)(close - hs);
        rest = close + 1;
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof(tmp)) {
            return "invalid IPv6 address";
        }
        memcpy(tmp, hs, hlen);
        tmp[hlen] = 0;
        if (inet_pton(AF_INET6, tmp, &a6) != 1) {
            return "invalid IPv6 address";
        }
    } else {
        const char *colon = memchr(text, ':', len);
        if (colon == NULL) {
            return "missing ':port'";
        }
        hs = text;
        hlen = (size_t)(colon - text);
        rest = colon;
        if (hlen == 0) {
            return "missing host";
        }
        if (!is_host_name(hs, hlen)) {
            return "invalid host (IPv6 addresses go in brackets)";
        }
    }
    size_t rlen = len - (size_t)(rest - text);
    if (rlen == 0 || rest[0] != ':') {
        return "missing ':port'";
    }
    if (!parse_port(rest + 1, rlen - 1, port)) {
        return "port must be a number from 1 to 65535";
    }
    *host = bg_strndup(hs, hlen);
    if (*host == NULL) {
        *rv = BG_ERR_NOMEM;
        return "out of memory";
    }
    return NULL;
}

/* URL syntax: returns NULL on success or a static reason. */
static const char *url_parse(conf_url *out, const char *text, int *rv)
{
    size_t len = strlen(text);
    conf_url u = {0};
    size_t off;
    *rv = 0;
    if (strncmp(text, "https://", 8) == 0) {
        u.tls = true;
        off = 8;
    } else if (strncmp(text, "http://", 7) == 0) {
        u.tls = false;
        off = 7;
    } else {
        return "scheme must be https:// or http://";
    }
    size_t end = len;
    if (end > off && text[end - 1] == '/') {
        end--; /* the one trailing slash allowed */
    }
    const char *hp = text + off;
    size_t hplen = end - off;
    if (hplen > 0 && memchr(hp, '/', hplen) != NULL) {
        return "a path is not allowed (only an optional trailing '/')";
    }
    if (hplen > 0 && (memchr(hp, '@', hplen) != NULL || memchr(hp, '?', hplen) != NULL ||
                      memchr(hp, '#', hplen) != NULL)) {
        return "only scheme://host:port is allowed";
    }
    const char *why = split_host_port(hp, hplen, &u.host, &u.port, rv);
    if (why != NULL) {
        return why;
    }
    u.text = bg_strndup(text, len);
    if (u.text == NULL) {
        free(u.host);
        *rv = BG_ERR_NOMEM;
        return "out of memory";
    }
    *out = u;
    return NULL;
}

int conf_url_parse(conf_url *out, const char *text, bg_errbuf *eb)
{
    char sh[64];
    int rv;
    if (text == NULL) {
        return bg_errf(eb, BG_ERR_CONF_INVALID, "invalid URL: missing");
    }
    const char *why = url_parse(out, text, &rv);
    if (rv == BG_ERR_NOMEM) {
        return bg_errf(eb, BG_ERR_NOMEM, "out of memory");
    }
    if (why != NULL) {
        return bg_errf(eb, BG_ERR_CONF_INVALID, "invalid URL '%s': %s",
                       show(sh, sizeof(sh), text, strlen(text)), why);
    }
    return 0;
}

void conf_url_dispose(conf_url *u)
{
    if (u == NULL) {
        return;
    }
    free(u->text);
    free(u->host);
    u->text = NULL;
    u->host = NULL;
}

/* ---- freeing ---- */

void conf_gateway_free(conf_gateway *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free(cfg->path);
    free(cfg->city);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        free(cfg->listeners[i].address);
        free(cfg->listeners[i].host);
        free(cfg->listeners[i].client_identity);
    }
    free(cfg->listeners);
    free(cfg->tls.cert);
    free(cfg->tls.key);
    free(cfg->tls.trust_bundle);
    for (size_t i = 0; i < cfg->npeers; i++) {
        free(cfg->peers[i].name);
        free(cfg->peers[i].spiffe_id);
        for (size_t j = 0; j < cfg->peers[i].nurls; j++) {
            conf_url_dispose(&cfg->peers[i].urls[j]);
        }
    }
    free(cfg->peers);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        free(cfg->routes[i].city);
        free(cfg->routes[i].via);
    }
    free(cfg->routes);
    conf_url_dispose(&cfg->upstream.url);
    free(cfg->profiles_dir);
    free(cfg->ledger_path);
    free(cfg->access_log);
    free(cfg->log_level);
    free(cfg);
}

const conf_peer *conf_gateway_find_peer(const conf_gateway *cfg, const char *name)
{
    if (cfg == NULL || name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        if (cfg->peers[i].name != NULL && strcmp(cfg->peers[i].name, name) == 0) {
            return &cfg->peers[i];
        }
    }
    return NULL;
}

/* ---- typed scalar access ---- */

static const char *kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_SCALAR_NODE: return "a scalar";
    default: return "nothing";
    }
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return false;
    }
    const char *v = (const char *)n->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A non-empty string without NUL bytes; |*out| is a fresh copy. */
static int get_str(loader *l, const yaml_node_t *n, const char *what, char **out)
{
    if (n->type != YAML_SCALAR_NODE) {
        return fail(l, n, "%s: expected a string, got %s", what, kind_name(n));
    }
    if (is_null(n)) {
        return fail(l, n, "%s: expected a string, got nothing (null)", what);
    }
    size_t len = n->data.scalar.length;
    if (len == 0) {
        return fail(l, n, "%s: must not be empty", what);
    }
    if (strlen(scalar(n)) != len) {
        return fail(l, n, "%s: contains a NUL byte", what);
    }
    char *s = bg_strndup(scalar(n), len);
    if (s == NULL) {
        return nomem(l);
    }
    free(*out);
    *out = s;
    return 0;
}

/* A plain decimal integer in [min, max]. */
static int get_uint(loader *l, const yaml_node_t *n, const char *what, uint64_t min,
                    uint64_t max, uint64_t *out)
{
    char sh[64];
    if (n->type != YAML_SCALAR_NODE) {
        return fail(l, n, "%s: expected an integer, got %s", what, kind_name(n));
    }
    const char *s = scalar(n);
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return fail(l, n, "%s: expected an integer, got the string '%s'", what,
                    show(sh, sizeof(sh), s, len));
    }
    if (len > 1 && s[0] == '-' && s[1] >= '0' && s[1] <= '9') {
        return fail(l, n, "%s: must not be negative (allowed: %llu..%llu)", what,
                    (unsigned long long)min, (unsigned long long)max);
    }
    if (len == 0) {
        return fail(l, n, "%s: expected an integer, got nothing (null)", what);
    }
    if (len > 1 && s[0] == '0') {
        /* YAML 1.1 reads 010 as octal 8 and 1.2 as 10: refuse rather than guess. */
        return fail(l, n, "%s: expected an integer without leading zeros, got '%s'", what,
                    show(sh, sizeof(sh), s, len));
    }
    uint64_t v = 0;
    bool overflow = false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return fail(l, n, "%s: expected an integer, got '%s'", what,
                        show(sh, sizeof(sh), s, len));
        }
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            overflow = true;
        } else {
            v = v * 10 + d;
        }
    }
    if (overflow || v < min || v > max) {
        return fail(l, n, "%s: %s is out of range (allowed: %llu..%llu)", what,
                    show(sh, sizeof(sh), s, len), (unsigned long long)min,
                    (unsigned long long)max);
    }
    *out = v;
    return 0;
}

static int get_u32(loader *l, const yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                   uint32_t *out)
{
    uint64_t v;
    int rv = get_uint(l, n, what, min, max, &v);
    if (rv == 0) {
        *out = (uint32_t)v;
    }
    return rv;
}

static int get_size(loader *l, const yaml_node_t *n, const char *what, uint64_t min,
                    uint64_t max, size_t *out)
{
    uint64_t v;
    if (max > SIZE_MAX) {
        max = SIZE_MAX;
    }
    int rv = get_uint(l, n, what, min, max, &v);
    if (rv == 0) {
        *out = (size_t)v;
    }
    return rv;
}

static int get_bool(loader *l, const yaml_node_t *n, const char *what, bool *out)
{
    char sh[64];
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        const char *s = scalar(n);
        if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) {
            *out = false;
            return 0;
        }
    }
    if (n->type != YAML_SCALAR_NODE) {
        return fail(l, n, "%s: expected true or false, got %s", what, kind_name(n));
    }
    return fail(l, n, "%s: expected true or false, got '%s'", what,
                show(sh, sizeof(sh), scalar(n), n->data.scalar.length));
}

/* ---- mappings with a fixed key set ---- */

#define MAX_KEYS 16

/* Walks mapping |map| (named |ctx| in messages): every key must be one of |keys| and appear
 * once; the value of keys[i] lands in vals[i] (NULL when absent). */
static int map_collect(loader *l, const yaml_node_t *map, const char *ctx,
                       const char *const *keys, size_t nkeys, yaml_node_t **vals)
{
    char sh[64];
    assert(nkeys <= MAX_KEYS);
    for (size_t i = 0; i < nkeys; i++) {
        vals[i] = NULL;
    }
    if (map->type != YAML_MAPPING_NODE) {
        if (is_null(map)) {
            return fail(l, map, "%s: expected a mapping, got nothing (null)", ctx);
        }
        return fail(l, map, "%s: expected a mapping, got %s", ctx, kind_name(map));
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        if (k == NULL || v == NULL) {
            return fail(l, map, "%s: malformed mapping entry", ctx);
        }
        if (k->type != YAML_SCALAR_NODE) {
            return fail(l, k, "%s: keys must be plain strings, got %s", ctx, kind_name(k));
        }
        size_t klen = k->data.scalar.length;
        size_t i;
        for (i = 0; i < nkeys; i++) {
            if (strlen(keys[i]) == klen && memcmp(keys[i], scalar(k), klen) == 0) {
                break;
            }
        }
        const char *where = map == yaml_document_get_root_node(l->doc) ? "at" : "in";
        if (i == nkeys) {
            return fail(l, k, "unknown key '%s' %s %s", show(sh, sizeof(sh), scalar(k), klen),
                        where, ctx);
        }
        if (vals[i] != NULL) {
            return fail(l, k, "duplicate key '%s' %s %s", keys[i], where, ctx);
        }
        vals[i] = v;
    }
    return 0;
}

/* Returns the items of sequence |n| (named |what|), checking 1 <= count <= |max| (0 allowed
 * when |min| is 0). */
static int seq_items(loader *l, const yaml_node_t *n, const char *what, size_t min, size_t max,
                     yaml_node_item_t **items, size_t *count)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        if (is_null(n) && min == 0) {
            *items = NULL;
            *count = 0;
            return 0;
        }
        return fail(l, n, "%s: expected a list, got %s", what,
                    is_null(n) ? "nothing (null)" : kind_name(n));
    }
    size_t c = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (c < min) {
        return fail(l, n, "%s: at least %zu entr%s required", what, min, min == 1 ? "y" : "ies");
    }
    if (c > max) {
        return fail(l, n, "%s: at most %zu entries allowed, got %zu", what, max, c);
    }
    *items = n->data.sequence.items.start;
    *count = c;
    return 0;
}

static yaml_node_t *item(loader *l, yaml_node_item_t *items, size_t i)
{
    return yaml_document_get_node(l->doc, items[i]);
}

/* ---- paths ---- */

/* Resolves |*p| against the config directory unless it is absolute. */
static int resolve_path(loader *l, char **p)
{
    if ((*p)[0] == '/') {
        return 0;
    }
    bg_buf b;
    bg_buf_init(&b);
    const char *sep = strcmp(l->dir, "/") == 0 ? "" : "/";
    if (bg_buf_appendf(&b, "%s%s%s", l->dir, sep, *p) != 0) {
        bg_buf_dispose(&b);
        return nomem(l);
    }
    free(*p);
    *p = (char *)b.data;
    return 0;
}

/* ---- sections ---- */

static bool is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0) {
        return true;
    }
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
    }
    return false;
}

/* Two listener hosts name the same address: equal IPs in any spelling, or equal names. */
static bool same_host(const char *a, const char *b)
{
    struct in6_addr a6, b6;
    struct in_addr a4, b4;
    if (inet_pton(AF_INET, a, &a4) == 1 && inet_pton(AF_INET, b, &b4) == 1) {
        return a4.s_addr == b4.s_addr;
    }
    if (inet_pton(AF_INET6, a, &a6) == 1 && inet_pton(AF_INET6, b, &b6) == 1) {
        return memcmp(&a6, &b6, sizeof(a6)) == 0;
    }
    return strcasecmp(a, b) == 0;
}

/* spiffe://<city>.gba/<role>/<id>: city [a-z][a-z0-9-]*, role [a-z]+, id [A-Za-z0-9._-]+. */
static bool valid_client_identity(const char *s)
{
    static const char pre[] = "spiffe://";
    if (strncmp(s, pre, sizeof(pre) - 1) != 0) {
        return false;
    }
    const char *p = s + sizeof(pre) - 1;
    if (!(*p >= 'a' && *p <= 'z')) {
        return false;
    }
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-') {
        p++;
    }
    if (strncmp(p, ".gba/", 5) != 0) {
        return false;
    }
    p += 5;
    const char *role = p;
    while (*p >= 'a' && *p <= 'z') {
        p++;
    }
    if (p == role || *p != '/' || p[1] == 0) {
        return false;
    }
    for (p++; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-')) {
            return false;
        }
    }
    return true;
}

static int load_listeners(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"address", "tls", "local", "client_identity"};
    yaml_node_t *v[4];
    yaml_node_item_t *items;
    size_t count;
    char what[64];
    char sh[64];
    int rv = seq_items(l, n, "listeners", 1, CONF_MAX_LISTENERS, &items, &count);
    if (rv != 0) {
        return rv;
    }
    conf_gateway *cfg = l->cfg;
    cfg->listeners = calloc(count, sizeof(*cfg->listeners));
    if (cfg->listeners == NULL) {
        return nomem(l);
    }
    cfg->nlisteners = count;
    for (size_t i = 0; i < count; i++) {
        conf_listener *li = &cfg->listeners[i];
        yaml_node_t *e = item(l, items, i);
        snprintf(what, sizeof(what), "listeners[%zu]", i);
        if ((rv = map_collect(l, e, what, keys, 4, v)) != 0) {
            return rv;
        }
        if (v[0] == NULL) {
            return fail(l, e, "%s: missing required key 'address'", what);
        }
        snprintf(what, sizeof(what), "listeners[%zu].address", i);
        if ((rv = get_str(l, v[0], what, &li->address)) != 0) {
            return rv;
        }
        const char *why =
            split_host_port(li->address, strlen(li->address), &li->host, &li->port, &rv);
        if (rv != 0) {
            return nomem(l);
        }
        if (why != NULL) {
            return fail(l, v[0], "%s: '%s': %s", what,
                        show(sh, sizeof(sh), li->address, strlen(li->address)), why);
        }
        li->tls = true;
        li->local = false;
        snprintf(what, sizeof(what), "listeners[%zu].tls", i);
        if (v[1] != NULL && (rv = get_bool(l, v[1], what, &li->tls)) != 0) {
            return rv;
        }
        snprintf(what, sizeof(what), "listeners[%zu].local", i);
        if (v[2] != NULL && (rv = get_bool(l, v[2], what, &li->local)) != 0) {
            return rv;
        }
        if (!li->tls && !li->local) {
            return fail(l, v[1], "listeners[%zu]: tls: false (cleartext h2c) requires local: true",
                        i);
        }
        if (!li->tls && !is_loopback(li->host)) {
            return fail(l, v[0],
                        "listeners[%zu]: cleartext listener must be on a loopback address "
                        "(127.0.0.0/8, ::1 or localhost), not '%s'",
                        i, show(sh, sizeof(sh), li->host, strlen(li->host)));
        }
        if (v[3] != NULL) {
            /* A fixed caller identity is only acceptable where no certificate can be asked
             * for and only the local host can connect: a local cleartext listener. */
            snprintf(what, sizeof(what), "listeners[%zu].client_identity", i);
            if ((rv = get_str(l, v[3], what, &li->client_identity)) != 0) {
                return rv;
            }
            if (li->tls) {
                return fail(l, v[3], "%s: only allowed on a local cleartext listener (tls: false)",
                            what);
            }
            if (!valid_client_identity(li->client_identity)) {
                return fail(l, v[3], "%s: '%s' is not spiffe://<city>.gba/<role>/<id>", what,
                            show(sh, sizeof(sh), li->client_identity,
                                 strlen(li->client_identity)));
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (cfg->listeners[j].port == li->port && same_host(cfg->listeners[j].host, li->host)) {
                return fail(l, v[0], "listeners[%zu]: duplicate listener address '%s' (see line %lu)",
                            i, show(sh, sizeof(sh), li->address, strlen(li->address)),
                            node_line(item(l, items, j)));
            }
        }
    }
    return 0;
}

static int load_tls(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"cert", "key", "trust_bundle"};
    yaml_node_t *v[3];
    char **dst[3] = {&l->cfg->tls.cert, &l->cfg->tls.key, &l->cfg->tls.trust_bundle};
    char what[64];
    int rv = map_collect(l, n, "tls", keys, 3, v);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < 3; i++) {
        if (v[i] == NULL) {
            return fail(l, n, "tls: missing required key '%s'", keys[i]);
        }
        snprintf(what, sizeof(what), "tls.%s", keys[i]);
        if ((rv = get_str(l, v[i], what, dst[i])) != 0 || (rv = resolve_path(l, dst[i])) != 0) {
            return rv;
        }
    }
    return 0;
}

static int load_peers(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"name", "spiffe_id", "urls"};
    yaml_node_t *v[3];
    yaml_node_item_t *items;
    size_t count;
    char what[64];
    char sh[64];
    int rv = seq_items(l, n, "peers", 0, CONF_MAX_PEERS, &items, &count);
    if (rv != 0 || count == 0) {
        return rv;
    }
    conf_gateway *cfg = l->cfg;
    cfg->peers = calloc(count, sizeof(*cfg->peers));
    if (cfg->peers == NULL) {
        return nomem(l);
    }
    cfg->npeers = count;
    for (size_t i = 0; i < count; i++) {
        conf_peer *p = &cfg->peers[i];
        yaml_node_t *e = item(l, items, i);
        snprintf(what, sizeof(what), "peers[%zu]", i);
        if ((rv = map_collect(l, e, what, keys, 3, v)) != 0) {
            return rv;
        }
        if (v[0] == NULL) {
            return fail(l, e, "%s: missing required key 'name'", what);
        }
        if (v[2] == NULL) {
            return fail(l, e, "%s: missing required key 'urls'", what);
        }
        snprintf(what, sizeof(what), "peers[%zu].name", i);
        if ((rv = get_str(l, v[0], what, &p->name)) != 0) {
            return rv;
        }
        if (!is_city_id(p->name)) {
            return fail(l, v[0], "%s: '%s' is not a valid city id ([a-z][a-z0-9-]{0,62})", what,
                        show(sh, sizeof(sh), p->name, strlen(p->name)));
        }
        if (strcmp(p->name, cfg->city) == 0) {
            return fail(l, v[0], "%s: a peer cannot be this gateway's own city '%s'", what,
                        cfg->city);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->peers[j].name, p->name) == 0) {
                return fail(l, v[0], "%s: duplicate peer name '%s' (see line %lu)", what,
                            p->name, node_line(item(l, items, j)));
            }
        }
        char expect[128];
        snprintf(expect, sizeof(expect), "spiffe://%s.gba/gateway", p->name);
        if (v[1] != NULL) {
            snprintf(what, sizeof(what), "peers[%zu].spiffe_id", i);
            if ((rv = get_str(l, v[1], what, &p->spiffe_id)) != 0) {
                return rv;
            }
            if (strcmp(p->spiffe_id, expect) != 0) {
                return fail(l, v[1], "%s: '%s' must be '%s' (spiffe://<name>.gba/gateway)", what,
                            show(sh, sizeof(sh), p->spiffe_id, strlen(p->spiffe_id)), expect);
            }
        } else {
            p->spiffe_id = bg_strndup(expect, strlen(expect));
            if (p->spiffe_id == NULL) {
                return nomem(l);
            }
        }
        yaml_node_item_t *uitems;
        size_t ucount;
        snprintf(what, sizeof(what), "peers[%zu].urls", i);
        if ((rv = seq_items(l, v[2], what, 1, CONF_MAX_URLS, &uitems, &ucount)) != 0) {
            return rv;
        }
        for (size_t j = 0; j < ucount; j++) {
            yaml_node_t *un = item(l, uitems, j);
            char *text = NULL;
            snprintf(what, sizeof(what), "peers[%zu].urls[%zu]", i, j);
            if ((rv = get_str(l, un, what, &text)) != 0) {
                return rv;
            }
            const char *why = url_parse(&p->urls[j], text, &rv);
            if (rv != 0) {
                free(text);
                return nomem(l);
            }
            if (why != NULL) {
                rv = fail(l, un, "%s: invalid URL '%s': %s", what,
                          show(sh, sizeof(sh), text, strlen(text)), why);
                free(text);
                return rv;
            }
            free(text);
            p->nurls = j + 1;
        }
    }
    return 0;
}

static int load_routes(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"city", "via"};
    yaml_node_t *v[2];
    yaml_node_item_t *items;
    size_t count;
    char what[64];
    char sh[64];
    int rv = seq_items(l, n, "routes", 0, CONF_MAX_ROUTES, &items, &count);
    if (rv != 0 || count == 0) {
        return rv;
    }
    conf_gateway *cfg = l->cfg;
    cfg->routes = calloc(count, sizeof(*cfg->routes));
    if (cfg->routes == NULL) {
        return nomem(l);
    }
    cfg->nroutes = count;
    for (size_t i = 0; i < count; i++) {
        conf_route *r = &cfg->routes[i];
        yaml_node_t *e = item(l, items, i);
        snprintf(what, sizeof(what), "routes[%zu]", i);
        if ((rv = map_collect(l, e, what, keys, 2, v)) != 0) {
            return rv;
        }
        for (size_t k = 0; k < 2; k++) {
            if (v[k] == NULL) {
                return fail(l, e, "%s: missing required key '%s'", what, keys[k]);
            }
        }
        snprintf(what, sizeof(what), "routes[%zu].city", i);
        if ((rv = get_str(l, v[0], what, &r->city)) != 0) {
            return rv;
        }
        if (!is_city_id(r->city)) {
            return fail(l, v[0], "%s: '%s' is not a valid city id ([a-z][a-z0-9-]{0,62})", what,
                        show(sh, sizeof(sh), r->city, strlen(r->city)));
        }
        if (strcmp(r->city, cfg->city) == 0) {
            return fail(l, v[0], "%s: '%s' is this gateway's own city", what, r->city);
        }
        if (conf_gateway_find_peer(cfg, r->city) != NULL) {
            return fail(l, v[0], "%s: '%s' is a peer and is reached directly; remove this route",
                        what, r->city);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->routes[j].city, r->city) == 0) {
                return fail(l, v[0], "%s: duplicate route for '%s' (see line %lu)", what, r->city,
                            node_line(item(l, items, j)));
            }
        }
        snprintf(what, sizeof(what), "routes[%zu].via", i);
        if ((rv = get_str(l, v[1], what, &r->via)) != 0) {
            return rv;
        }
        if (conf_gateway_find_peer(cfg, r->via) == NULL) {
            return fail(l, v[1], "%s: unknown peer '%s' (not in peers)", what,
                        show(sh, sizeof(sh), r->via, strlen(r->via)));
        }
    }
    return 0;
}

static int load_upstream(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"url"};
    yaml_node_t *v[1];
    char *text = NULL;
    char sh[64];
    int rv = map_collect(l, n, "upstream", keys, 1, v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] == NULL) {
        return fail(l, n, "upstream: missing required key 'url'");
    }
    if ((rv = get_str(l, v[0], "upstream.url", &text)) != 0) {
        return rv;
    }
    if (strcmp(text, "builtin") == 0) {
        l->cfg->upstream.builtin = true;
        free(text);
        return 0;
    }
    const char *why = url_parse(&l->cfg->upstream.url, text, &rv);
    if (rv != 0) {
        free(text);
        return nomem(l);
    }
    if (why != NULL) {
        rv = fail(l, v[0], "upstream.url: invalid URL '%s': %s (or 'builtin')",
                  show(sh, sizeof(sh), text, strlen(text)), why);
    }
    free(text);
    return rv;
}

static int load_timeouts(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"connect_ms",         "request_ms",     "ping_interval_ms",
                                       "ping_timeout_ms",    "backoff_initial_ms",
                                       "backoff_max_ms",     "idle_ms",        "shutdown_grace_ms"};
    conf_timeouts *t = &l->cfg->timeouts;
    uint32_t *dst[8] = {&t->connect_ms,         &t->request_ms,     &t->ping_interval_ms,
                        &t->ping_timeout_ms,    &t->backoff_initial_ms,
                        &t->backoff_max_ms,     &t->idle_ms,        &t->shutdown_grace_ms};
    yaml_node_t *v[8];
    char what[64];
    int rv = map_collect(l, n, "timeouts", keys, 8, v);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < 8; i++) {
        snprintf(what, sizeof(what), "timeouts.%s", keys[i]);
        if (v[i] != NULL && (rv = get_u32(l, v[i], what, 1, MS_MAX, dst[i])) != 0) {
            return rv;
        }
    }
    if (t->backoff_initial_ms > t->backoff_max_ms) {
        return fail(l, v[5] != NULL ? v[5] : n,
                    "timeouts: backoff_max_ms (%u) must not be below backoff_initial_ms (%u)",
                    (unsigned)t->backoff_max_ms, (unsigned)t->backoff_initial_ms);
    }
    return 0;
}

static int load_limits(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"max_body_bytes", "max_hops", "max_concurrent_streams",
                                       "max_connections", "stream_window_bytes"};
    conf_limits *m = &l->cfg->limits;
    yaml_node_t *v[5];
    int rv = map_collect(l, n, "limits", keys, 5, v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] != NULL &&
        (rv = get_size(l, v[0], "limits.max_body_bytes", 1, GIB, &m->max_body_bytes)) != 0) {
        return rv;
    }
    if (v[1] != NULL && (rv = get_u32(l, v[1], "limits.max_hops", 1, 64, &m->max_hops)) != 0) {
        return rv;
    }
    if (v[2] != NULL && (rv = get_u32(l, v[2], "limits.max_concurrent_streams", 1, 10000,
                                      &m->max_concurrent_streams)) != 0) {
        return rv;
    }
    if (v[3] != NULL && (rv = get_u32(l, v[3], "limits.max_connections", 1, 1000000,
                                      &m->max_connections)) != 0) {
        return rv;
    }
    if (v[4] != NULL && (rv = get_size(l, v[4], "limits.stream_window_bytes", 16 * KIB,
                                       16 * MIB, &m->stream_window_bytes)) != 0) {
        return rv;
    }
    return 0;
}

static int load_ledger(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"path"};
    yaml_node_t *v[1];
    int rv = map_collect(l, n, "ledger", keys, 1, v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] != NULL && (rv = get_str(l, v[0], "ledger.path", &l->cfg->ledger_path)) != 0) {
        return rv;
    }
    return 0;
}

static void set_defaults(conf_gateway *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = ncpu < 1 ? 1u : ncpu > 256 ? 256u : (uint32_t)ncpu;
    cfg->timeouts.connect_ms = 2000;
    cfg->timeouts.request_ms = 10000;
    cfg->timeouts.ping_interval_ms = 10000;
    cfg->timeouts.ping_timeout_ms = 5000;
    cfg->timeouts.backoff_initial_ms = 100;
    cfg->timeouts.backoff_max_ms = 5000;
    cfg->timeouts.idle_ms = 120000;
    cfg->timeouts.shutdown_grace_ms = 10000;
    cfg->limits.max_body_bytes = (size_t)MIB;
    cfg->limits.max_hops = 8;
    cfg->limits.max_concurrent_streams = 100;
    cfg->limits.max_connections = 4096;
    cfg->limits.stream_window_bytes = (size_t)(256 * KIB);
}

enum {
    K_CITY,
    K_WORKERS,
    K_LOG_LEVEL,
    K_ACCESS_LOG,
    K_LISTENERS,
    K_TLS,
    K_PEERS,
    K_ROUTES,
    K_UPSTREAM,
    K_TIMEOUTS,
    K_LIMITS,
    K_LEDGER,
    K_PROFILES,
    K_COUNT
};

static int load_root(loader *l, const yaml_node_t *root)
{
    static const char *const keys[K_COUNT] = {
        [K_CITY] = "city",         [K_WORKERS] = "workers",   [K_LOG_LEVEL] = "log_level",
        [K_ACCESS_LOG] = "access_log", [K_LISTENERS] = "listeners", [K_TLS] = "tls",
        [K_PEERS] = "peers",       [K_ROUTES] = "routes",     [K_UPSTREAM] = "upstream",
        [K_TIMEOUTS] = "timeouts", [K_LIMITS] = "limits",     [K_LEDGER] = "ledger",
        [K_PROFILES] = "profiles",
    };
    yaml_node_t *v[K_COUNT];
    conf_gateway *cfg = l->cfg;
    char sh[64];
    int rv;

    if (root->type != YAML_MAPPING_NODE) {
        return fail(l, root, "the top level must be a mapping of keys (city:, listeners:, ...), "
                             "got %s",
                    is_null(root) ? "nothing" : kind_name(root));
    }
    if ((rv = map_collect(l, root, "the top level", keys, K_COUNT, v)) != 0) {
        return rv;
    }
    /* Required keys first, in the order a reader looks for them. */
    static const int required[] = {K_CITY, K_LISTENERS, K_TLS, K_UPSTREAM};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (v[required[i]] == NULL) {
            return fail(l, root, "missing required key '%s'", keys[required[i]]);
        }
    }

    if ((rv = get_str(l, v[K_CITY], "city", &cfg->city)) != 0) {
        return rv;
    }
    if (!is_city_id(cfg->city)) {
        return fail(l, v[K_CITY], "city: '%s' is not a valid city id ([a-z][a-z0-9-]{0,62})",
                    show(sh, sizeof(sh), cfg->city, strlen(cfg->city)));
    }
    if (v[K_WORKERS] != NULL &&
        (rv = get_u32(l, v[K_WORKERS], "workers", 1, 256, &cfg->workers)) != 0) {
        return rv;
    }
    if (v[K_LOG_LEVEL] != NULL) {
        if ((rv = get_str(l, v[K_LOG_LEVEL], "log_level", &cfg->log_level)) != 0) {
            return rv;
        }
        const char *s = cfg->log_level;
        if (strcmp(s, "debug") != 0 && strcmp(s, "info") != 0 && strcmp(s, "warn") != 0 &&
            strcmp(s, "error") != 0) {
            return fail(l, v[K_LOG_LEVEL],
                        "log_level: '%s' is not one of debug, info, warn, error",
                        show(sh, sizeof(sh), s, strlen(s)));
        }
    } else if ((cfg->log_level = bg_strndup("info", 4)) == NULL) {
        return nomem(l);
    }
    if (v[K_ACCESS_LOG] != NULL) {
        if ((rv = get_str(l, v[K_ACCESS_LOG], "access_log", &cfg->access_log)) != 0) {
            return rv;
        }
        if (strcmp(cfg->access_log, "stdout") != 0 && strcmp(cfg->access_log, "off") != 0 &&
            (rv = resolve_path(l, &cfg->access_log)) != 0) {
            return rv;
        }
    } else if ((cfg->access_log = bg_strndup("stdout", 6)) == NULL) {
        return nomem(l);
    }
    if ((rv = load_listeners(l, v[K_LISTENERS])) != 0 || (rv = load_tls(l, v[K_TLS])) != 0) {
        return rv;
    }
    if (v[K_PEERS] != NULL && (rv = load_peers(l, v[K_PEERS])) != 0) {
        return rv;
    }
    if (v[K_ROUTES] != NULL && (rv = load_routes(l, v[K_ROUTES])) != 0) {
        return rv;
    }
    if ((rv = load_upstream(l, v[K_UPSTREAM])) != 0) {
        return rv;
    }
    if (v[K_TIMEOUTS] != NULL && (rv = load_timeouts(l, v[K_TIMEOUTS])) != 0) {
        return rv;
    }
    if (v[K_LIMITS] != NULL && (rv = load_limits(l, v[K_LIMITS])) != 0) {
        return rv;
    }
    if (v[K_LEDGER] != NULL && (rv = load_ledger(l, v[K_LEDGER])) != 0) {
        return rv;
    }
    if (v[K_PROFILES] != NULL) {
        if ((rv = get_str(l, v[K_PROFILES], "profiles", &cfg->profiles_dir)) != 0 ||
            (rv = resolve_path(l, &cfg->profiles_dir)) != 0) {
            return rv;
        }
    }
    if (cfg->ledger_path == NULL) {
        bg_buf b;
        bg_buf_init(&b);
        if (bg_buf_appendf(&b, "ledger-%s", cfg->city) != 0) {
            bg_buf_dispose(&b);
            return nomem(l);
        }
        cfg->ledger_path = (char *)b.data;
    }
    return resolve_path(l, &cfg->ledger_path);
}

/* ---- YAML front end ---- */

static unsigned long offset_line(const uint8_t *data, size_t len, size_t offset)
{
    unsigned long line = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        line += data[i] == '\n';
    }
    return line;
}

static int syntax_error(loader *l, const yaml_parser_t *p, const uint8_t *data, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR) {
        return nomem(l);
    }
    unsigned long line = p->error == YAML_READER_ERROR
                             ? offset_line(data, len, p->problem_offset)
                             : (unsigned long)p->problem_mark.line + 1;
    const char *problem = p->problem != NULL ? p->problem : "malformed document";
    if (p->context != NULL) {
        return fail_at(l, line, "YAML syntax error: %s (%s started at line %lu)", problem,
                       p->context, (unsigned long)p->context_mark.line + 1);
    }
    return fail_at(l, line, "YAML syntax error: %s", problem);
}

/* First pass over the event stream: rejects what the document loader would silently accept
 * or what the format never needs (aliases, anchors, tags, several documents, deep nesting),
 * before any tree is built. */
static int check_events(loader *l, const uint8_t *data, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0;
    int ndocs = 0;
    int rv = 0;
    char sh[64];
    if (!yaml_parser_initialize(&p)) {
        return nomem(l);
    }
    yaml_parser_set_input_string(&p, data, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            rv = syntax_error(l, &p, data, len);
            break;
        }
        unsigned long line = (unsigned long)ev.start_mark.line + 1;
        const yaml_char_t *anchor = NULL;
        const yaml_char_t *tag = NULL;
        bool done = false;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++ndocs > 1) {
                rv = fail_at(l, line, "only one YAML document is allowed");
            }
            break;
        case YAML_ALIAS_EVENT:
            rv = fail_at(l, line, "YAML aliases (*%s) are not supported; write the value out",
                         show(sh, sizeof(sh), (const char *)ev.data.alias.anchor,
                              strlen((const char *)ev.data.alias.anchor)));
            break;
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            tag = ev.data.scalar.tag;
            break;
        case YAML_SEQUENCE_START_EVENT:
            anchor = ev.data.sequence_start.anchor;
            tag = ev.data.sequence_start.tag;
            depth++;
            break;
        case YAML_MAPPING_START_EVENT:
            anchor = ev.data.mapping_start.anchor;
            tag = ev.data.mapping_start.tag;
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        default:
            break;
        }
        if (rv == 0 && anchor != NULL) {
            rv = fail_at(l, line, "YAML anchors (&%s) are not supported",
                         show(sh, sizeof(sh), (const char *)anchor, strlen((const char *)anchor)));
        }
        if (rv == 0 && tag != NULL) {
            rv = fail_at(l, line, "YAML tags (%s) are not supported",
                         show(sh, sizeof(sh), (const char *)tag, strlen((const char *)tag)));
        }
        if (rv == 0 && depth > CONF_MAX_DEPTH) {
            rv = fail_at(l, line, "nesting too deep (more than %d levels)", CONF_MAX_DEPTH);
        }
        yaml_event_delete(&ev);
        if (rv != 0 || done) {
            break;
        }
    }
    if (rv == 0 && ndocs == 0) {
        rv = fail_at(l, 1, "empty document (expected city:, listeners:, tls:, upstream:)");
    }
    yaml_parser_delete(&p);
    return rv;
}

/* Directory of |name| for relative paths: "." when it has no slash. */
static char *dir_of(const char *name)
{
    const char *slash = strrchr(name, '/');
    if (slash == NULL) {
        return bg_strndup(".", 1);
    }
    if (slash == name) {
        return bg_strndup("/", 1);
    }
    return bg_strndup(name, (size_t)(slash - name));
}

int conf_gateway_load_buffer(conf_gateway **out, const char *name, const uint8_t *data,
                             size_t len, bg_errbuf *eb)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    loader l = {.name = name != NULL ? name : "<config>", .eb = eb};
    int rv;

    if (data == NULL && len > 0) {
        return bg_errf(eb, BG_ERR_CONF_INVALID, "%s: no data", l.name);
    }
    if (data == NULL) {
        data = (const uint8_t *)"";
    }
    char *dir = dir_of(l.name);
    if (dir == NULL) {
        return nomem(&l);
    }
    l.dir = dir;
    if ((rv = check_events(&l, data, len)) != 0) {
        goto fail_dir;
    }
    if (!yaml_parser_initialize(&parser)) {
        rv = nomem(&l);
        goto fail_dir;
    }
    yaml_parser_set_input_string(&parser, data, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rv = syntax_error(&l, &parser, data, len);
        goto fail_parser;
    }
    l.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        rv = fail_at(&l, 1, "empty document (expected city:, listeners:, tls:, upstream:)");
        goto fail_doc;
    }
    l.cfg = calloc(1, sizeof(*l.cfg));
    if (l.cfg == NULL) {
        rv = nomem(&l);
        goto fail_doc;
    }
    set_defaults(l.cfg);
    if ((l.cfg->path = bg_strndup(l.name, strlen(l.name))) == NULL) {
        rv = nomem(&l);
        goto fail_cfg;
    }
    if ((rv = load_root(&l, root)) != 0) {
        goto fail_cfg;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(dir);
    *out = l.cfg;
    return 0;

fail_cfg:
    conf_gateway_free(l.cfg);
fail_doc:
    yaml_document_delete(&doc);
fail_parser:
    yaml_parser_delete(&parser);
fail_dir:
    free(dir);
    return rv;
}

int conf_gateway_load(conf_gateway **out, const char *path, bg_errbuf *eb)
{
    uint8_t *data = NULL;
    size_t len = 0;
    size_t cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return bg_errf(eb, BG_ERR_CONF_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    for (;;) {
        if (len == cap) {
            if (cap >= CONF_MAX_FILE_BYTES) {
                close(fd);
                free(data);
                return bg_errf(eb, BG_ERR_CONF_INVALID, "%s: file larger than %u bytes", path,
                               CONF_MAX_FILE_BYTES);
            }
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            uint8_t *p = realloc(data, ncap + 1);
            if (p == NULL) {
                close(fd);
                free(data);
                return bg_errf(eb, BG_ERR_NOMEM, "%s: out of memory", path);
            }
            data = p;
            cap = ncap;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            close(fd);
            free(data);
            return bg_errf(eb, BG_ERR_CONF_IO, "%s: cannot read: %s", path, strerror(e));
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    int rv = conf_gateway_load_buffer(out, path, data, len, eb);
    free(data);
    return rv;
}
