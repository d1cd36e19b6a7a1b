/* conf/conf.c: loads the gateway's YAML file (libyaml) into a conf_gateway, applies the
 * defaults of conf.h and validates every rule up front, so the rest of the gateway only ever
 * sees a complete, consistent, const configuration. Not for: opening certificate or ledger
 * files (trust/ does that) or watching the file for changes (reload is the gateway's job). */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "base/ids.h"
#include "base/bytes.h"
#include "conf/yaml_int.h"

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

/* Load state: the document being walked and where errors go (|y|), and what is being built. */
typedef struct loader {
    conf_yaml y;
    const char *dir; /* base for relative paths, without trailing slash unless "/" */
    conf_gateway *cfg;
} loader;

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
                       conf_yaml_show(sh, sizeof(sh), text, strlen(text)), why);
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
    for (size_t i = 0; i < cfg->upstream.ndatasets; i++) {
        free(cfg->upstream.datasets[i]);
    }
    free(cfg->upstream.datasets);
    free(cfg->profiles_dir);
    free(cfg->ca.cert);
    free(cfg->ca.key);
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

/* A non-empty string without NUL bytes; |*out| is a fresh copy. */
static int get_str(loader *l, const yaml_node_t *n, const char *what, char **out)
{
    if (n->type != YAML_SCALAR_NODE) {
        return conf_yaml_fail(&l->y, n, "%s: expected a string, got %s", what,
                              conf_yaml_kind_name(n));
    }
    if (conf_yaml_is_null(n)) {
        return conf_yaml_fail(&l->y, n, "%s: expected a string, got nothing (null)", what);
    }
    size_t len = n->data.scalar.length;
    if (len == 0) {
        return conf_yaml_fail(&l->y, n, "%s: must not be empty", what);
    }
    if (strlen(conf_yaml_scalar(n)) != len) {
        return conf_yaml_fail(&l->y, n, "%s: contains a NUL byte", what);
    }
    char *s = bg_strndup(conf_yaml_scalar(n), len);
    if (s == NULL) {
        return conf_yaml_nomem(&l->y);
    }
    free(*out);
    *out = s;
    return 0;
}

static int get_size(loader *l, const yaml_node_t *n, const char *what, uint64_t min,
                    uint64_t max, size_t *out)
{
    uint64_t v;
    if (max > SIZE_MAX) {
        max = SIZE_MAX;
    }
    int rv = conf_yaml_get_uint(&l->y, n, what, min, max, &v);
    if (rv == 0) {
        *out = (size_t)v;
    }
    return rv;
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
        return conf_yaml_nomem(&l->y);
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
    int rv = conf_yaml_seq_items(&l->y, n, "listeners", 1, CONF_MAX_LISTENERS, &items, &count);
    if (rv != 0) {
        return rv;
    }
    conf_gateway *cfg = l->cfg;
    cfg->listeners = calloc(count, sizeof(*cfg->listeners));
    if (cfg->listeners == NULL) {
        return conf_yaml_nomem(&l->y);
    }
    cfg->nlisteners = count;
    for (size_t i = 0; i < count; i++) {
        conf_listener *li = &cfg->listeners[i];
        yaml_node_t *e = conf_yaml_item(&l->y, items, i);
        snprintf(what, sizeof(what), "listeners[%zu]", i);
        if ((rv = conf_yaml_map_collect(&l->y, e, what, keys, 4, v)) != 0) {
            return rv;
        }
        if (v[0] == NULL) {
            return conf_yaml_fail(&l->y, e, "%s: missing required key 'address'", what);
        }
        snprintf(what, sizeof(what), "listeners[%zu].address", i);
        if ((rv = get_str(l, v[0], what, &li->address)) != 0) {
            return rv;
        }
        const char *why =
            split_host_port(li->address, strlen(li->address), &li->host, &li->port, &rv);
        if (rv != 0) {
            return conf_yaml_nomem(&l->y);
        }
        if (why != NULL) {
            return conf_yaml_fail(&l->y, v[0], "%s: '%s': %s", what,
                        conf_yaml_show(sh, sizeof(sh), li->address, strlen(li->address)), why);
        }
        li->tls = true;
        li->local = false;
        snprintf(what, sizeof(what), "listeners[%zu].tls", i);
        if (v[1] != NULL && (rv = conf_yaml_get_bool(&l->y, v[1], what, &li->tls)) != 0) {
            return rv;
        }
        snprintf(what, sizeof(what), "listeners[%zu].local", i);
        if (v[2] != NULL && (rv = conf_yaml_get_bool(&l->y, v[2], what, &li->local)) != 0) {
            return rv;
        }
        if (!li->tls && !li->local) {
            return conf_yaml_fail(
                &l->y, v[1], "listeners[%zu]: tls: false (cleartext h2c) requires local: true", i);
        }
        if (!li->tls && !is_loopback(li->host)) {
            return conf_yaml_fail(&l->y, v[0],
                        "listeners[%zu]: cleartext listener must be on a loopback address "
                        "(127.0.0.0/8, ::1 or localhost), not '%s'",
                        i, conf_yaml_show(sh, sizeof(sh), li->host, strlen(li->host)));
        }
        if (v[3] != NULL) {
            /* A fixed caller identity is only acceptable where no certificate can be asked
             * for and only the local host can connect: a local cleartext listener. */
            snprintf(what, sizeof(what), "listeners[%zu].client_identity", i);
            if ((rv = get_str(l, v[3], what, &li->client_identity)) != 0) {
                return rv;
            }
            if (li->tls) {
                return conf_yaml_fail(&l->y, v[3],
                                      "%s: only allowed on a local cleartext listener (tls: false)",
                                      what);
            }
            if (!valid_client_identity(li->client_identity)) {
                return conf_yaml_fail(&l->y, v[3],
                                      "%s: '%s' is not spiffe://<city>.gba/<role>/<id>", what,
                                      conf_yaml_show(sh, sizeof(sh), li->client_identity,
                                                     strlen(li->client_identity)));
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (cfg->listeners[j].port == li->port && same_host(cfg->listeners[j].host, li->host)) {
                return conf_yaml_fail(
                    &l->y, v[0], "listeners[%zu]: duplicate listener address '%s' (see line %lu)",
                    i, conf_yaml_show(sh, sizeof(sh), li->address, strlen(li->address)),
                    conf_yaml_node_line(conf_yaml_item(&l->y, items, j)));
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
    int rv = conf_yaml_map_collect(&l->y, n, "tls", keys, 3, v);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < 3; i++) {
        if (v[i] == NULL) {
            return conf_yaml_fail(&l->y, n, "tls: missing required key '%s'", keys[i]);
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
    int rv = conf_yaml_seq_items(&l->y, n, "peers", 0, CONF_MAX_PEERS, &items, &count);
    if (rv != 0 || count == 0) {
        return rv;
    }
    conf_gateway *cfg = l->cfg;
    cfg->peers = calloc(count, sizeof(*cfg->peers));
    if (cfg->peers == NULL) {
        return conf_yaml_nomem(&l->y);
    }
    cfg->npeers = count;
    for (size_t i = 0; i < count; i++) {
        conf_peer *p = &cfg->peers[i];
        yaml_node_t *e = conf_yaml_item(&l->y, items, i);
        snprintf(what, sizeof(what), "peers[%zu]", i);
        if ((rv = conf_yaml_map_collect(&l->y, e, what, keys, 3, v)) != 0) {
            return rv;
        }
        if (v[0] == NULL) {
            return conf_yaml_fail(&l->y, e, "%s: missing required key 'name'", what);
        }
        if (v[2] == NULL) {
            return conf_yaml_fail(&l->y, e, "%s: missing required key 'urls'", what);
        }
        snprintf(what, sizeof(what), "peers[%zu].name", i);
        if ((rv = get_str(l, v[0], what, &p->name)) != 0) {
            return rv;
        }
        if (!is_city_id(p->name)) {
            return conf_yaml_fail(&l->y, v[0],
                                  "%s: '%s' is not a valid city id ([a-z][a-z0-9-]{0,62})", what,
                                  conf_yaml_show(sh, sizeof(sh), p->name, strlen(p->name)));
        }
        if (strcmp(p->name, cfg->city) == 0) {
            return conf_yaml_fail(&l->y, v[0], "%s: a peer cannot be this gateway's own city '%s'",
                                  what, cfg->city);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->peers[j].name, p->name) == 0) {
                return conf_yaml_fail(&l->y, v[0], "%s: duplicate peer name '%s' (see line %lu)",
                                      what, p->name,
                                      conf_yaml_node_line(conf_yaml_item(&l->y, items, j)));
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
                return conf_yaml_fail(
                    &l->y, v[1], "%s: '%s' must be '%s' (spiffe://<name>.gba/gateway)", what,
                    conf_yaml_show(sh, sizeof(sh), p->spiffe_id, strlen(p->spiffe_id)), expect);
            }
        } else {
            p->spiffe_id = bg_strndup(expect, strlen(expect));
            if (p->spiffe_id == NULL) {
                return conf_yaml_nomem(&l->y);
            }
        }
        yaml_node_item_t *uitems;
        size_t ucount;
        snprintf(what, sizeof(what), "peers[%zu].urls", i);
        if ((rv = conf_yaml_seq_items(&l->y, v[2], what, 1, CONF_MAX_URLS, &uitems, &ucount)) !=
            0) {
            return rv;
        }
        for (size_t j = 0; j < ucount; j++) {
            yaml_node_t *un = conf_yaml_item(&l->y, uitems, j);
            char *text = NULL;
            snprintf(what, sizeof(what), "peers[%zu].urls[%zu]", i, j);
            if ((rv = get_str(l, un, what, &text)) != 0) {
                return rv;
            }
            const char *why = url_parse(&p->urls[j], text, &rv);
            if (rv != 0) {
                free(text);
                return conf_yaml_nomem(&l->y);
            }
            if (why != NULL) {
                rv = conf_yaml_fail(&l->y, un, "%s: invalid URL '%s': %s", what,
                          conf_yaml_show(sh, sizeof(sh), text, strlen(text)), why);
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
    int rv = conf_yaml_seq_items(&l->y, n, "routes", 0, CONF_MAX_ROUTES, &items, &count);
    if (rv != 0 || count == 0) {
        return rv;
    }
    conf_gateway *cfg = l->cfg;
    cfg->routes = calloc(count, sizeof(*cfg->routes));
    if (cfg->routes == NULL) {
        return conf_yaml_nomem(&l->y);
    }
    cfg->nroutes = count;
    for (size_t i = 0; i < count; i++) {
        conf_route *r = &cfg->routes[i];
        yaml_node_t *e = conf_yaml_item(&l->y, items, i);
        snprintf(what, sizeof(what), "routes[%zu]", i);
        if ((rv = conf_yaml_map_collect(&l->y, e, what, keys, 2, v)) != 0) {
            return rv;
        }
        for (size_t k = 0; k < 2; k++) {
            if (v[k] == NULL) {
                return conf_yaml_fail(&l->y, e, "%s: missing required key '%s'", what, keys[k]);
            }
        }
        snprintf(what, sizeof(what), "routes[%zu].city", i);
        if ((rv = get_str(l, v[0], what, &r->city)) != 0) {
            return rv;
        }
        if (!is_city_id(r->city)) {
            return conf_yaml_fail(&l->y, v[0],
                                  "%s: '%s' is not a valid city id ([a-z][a-z0-9-]{0,62})", what,
                                  conf_yaml_show(sh, sizeof(sh), r->city, strlen(r->city)));
        }
        if (strcmp(r->city, cfg->city) == 0) {
            return conf_yaml_fail(&l->y, v[0], "%s: '%s' is this gateway's own city", what,
                                  r->city);
        }
        if (conf_gateway_find_peer(cfg, r->city) != NULL) {
            return conf_yaml_fail(&l->y, v[0],
                                  "%s: '%s' is a peer and is reached directly; remove this route",
                                  what, r->city);
        }
        snprintf(what, sizeof(what), "routes[%zu].via", i);
        if ((rv = get_str(l, v[1], what, &r->via)) != 0) {
            return rv;
        }
        if (conf_gateway_find_peer(cfg, r->via) == NULL) {
            return conf_yaml_fail(&l->y, v[1], "%s: unknown peer '%s' (not in peers)", what,
                        conf_yaml_show(sh, sizeof(sh), r->via, strlen(r->via)));
        }
        /* several routes to one city are alternatives, tried in the order written */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->routes[j].city, r->city) == 0 && strcmp(cfg->routes[j].via, r->via) == 0) {
                return conf_yaml_fail(&l->y, v[0], "%s: duplicate route for '%s' via '%s' (see "
                                      "line %lu)", what, r->city, r->via,
                                      conf_yaml_node_line(conf_yaml_item(&l->y, items, j)));
            }
        }
    }
    return 0;
}

static int load_upstream(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"url", "rows", "seed", "threads", "datasets",
                                       "passthrough"};
    yaml_node_t *v[6];
    char *text = NULL;
    char sh[64];
    conf_upstream *u = &l->cfg->upstream;
    int rv = conf_yaml_map_collect(&l->y, n, "upstream", keys, 6, v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] == NULL) {
        return conf_yaml_fail(&l->y, n, "upstream: missing required key 'url'");
    }
    if ((rv = get_str(l, v[0], "upstream.url", &text)) != 0) {
        return rv;
    }
    if (strcmp(text, "builtin") == 0) {
        u->builtin = true;
        free(text);
        if (v[5] != NULL) {
            return conf_yaml_fail(&l->y, v[5], "upstream.passthrough is for an external data "
                                  "space only");
        }
        if ((v[1] != NULL && (rv = conf_yaml_get_u32(&l->y, v[1], "upstream.rows", 1000,
                                                     10000000, &u->rows)) != 0) ||
            (v[2] != NULL && (rv = conf_yaml_get_uint(&l->y, v[2], "upstream.seed", 0,
                                                      UINT64_MAX, &u->seed)) != 0) ||
            (v[3] != NULL && (rv = conf_yaml_get_u32(&l->y, v[3], "upstream.threads", 1, 64,
                                                     &u->threads)) != 0)) {
            return rv;
        }
        if (v[4] != NULL) {
            yaml_node_item_t *items;
            size_t count;
            if ((rv = conf_yaml_seq_items(&l->y, v[4], "upstream.datasets", 0, 64, &items,
                                          &count)) != 0) {
                return rv;
            }
            if ((u->datasets = calloc(count + 1, sizeof(char *))) == NULL) {
                return conf_yaml_nomem(&l->y);
            }
            for (size_t i = 0; i < count; i++) {
                yaml_node_t *it = conf_yaml_item(&l->y, items, i);
                if ((rv = get_str(l, it, "upstream.datasets[]", &u->datasets[i])) != 0) {
                    return rv;
                }
                u->ndatasets++;
            }
        }
        return 0;
    }
    if (v[5] != NULL &&
        (rv = conf_yaml_get_bool(&l->y, v[5], "upstream.passthrough", &u->passthrough)) != 0) {
        free(text);
        return rv;
    }
    for (size_t i = 1; i < 5; i++) {
        if (v[i] != NULL) {
            free(text);
            return conf_yaml_fail(&l->y, v[i], "upstream.%s is for the embedded data space "
                                  "(url: builtin) only", keys[i]);
        }
    }
    const char *why = url_parse(&l->cfg->upstream.url, text, &rv);
    if (rv != 0) {
        free(text);
        return conf_yaml_nomem(&l->y);
    }
    if (why != NULL) {
        rv = conf_yaml_fail(&l->y, v[0], "upstream.url: invalid URL '%s': %s (or 'builtin')",
                  conf_yaml_show(sh, sizeof(sh), text, strlen(text)), why);
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
    int rv = conf_yaml_map_collect(&l->y, n, "timeouts", keys, 8, v);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < 8; i++) {
        snprintf(what, sizeof(what), "timeouts.%s", keys[i]);
        if (v[i] != NULL && (rv = conf_yaml_get_u32(&l->y, v[i], what, 1, MS_MAX, dst[i])) != 0) {
            return rv;
        }
    }
    if (t->backoff_initial_ms > t->backoff_max_ms) {
        return conf_yaml_fail(&l->y, v[5] != NULL ? v[5] : n,
                    "timeouts: backoff_max_ms (%u) must not be below backoff_initial_ms (%u)",
                    (unsigned)t->backoff_max_ms, (unsigned)t->backoff_initial_ms);
    }
    return 0;
}

static int load_limits(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"max_body_bytes",      "max_hops",
                                       "max_concurrent_streams", "max_connections",
                                       "stream_window_bytes", "firm_rps",
                                       "firm_burst",          "firm_max_streams",
                                       "apply_per_minute"};
    conf_limits *m = &l->cfg->limits;
    yaml_node_t *v[9];
    int rv = conf_yaml_map_collect(&l->y, n, "limits", keys, 9, v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] != NULL &&
        (rv = get_size(l, v[0], "limits.max_body_bytes", 1, GIB, &m->max_body_bytes)) != 0) {
        return rv;
    }
    if (v[1] != NULL &&
        (rv = conf_yaml_get_u32(&l->y, v[1], "limits.max_hops", 1, 64, &m->max_hops)) != 0) {
        return rv;
    }
    if (v[2] != NULL && (rv = conf_yaml_get_u32(&l->y, v[2], "limits.max_concurrent_streams", 1,
                                                10000, &m->max_concurrent_streams)) != 0) {
        return rv;
    }
    if (v[3] != NULL && (rv = conf_yaml_get_u32(&l->y, v[3], "limits.max_connections", 1, 1000000,
                                      &m->max_connections)) != 0) {
        return rv;
    }
    if (v[4] != NULL && (rv = get_size(l, v[4], "limits.stream_window_bytes", 16 * KIB,
                                       16 * MIB, &m->stream_window_bytes)) != 0) {
        return rv;
    }
    if (v[5] != NULL && (rv = conf_yaml_get_u32(&l->y, v[5], "limits.firm_rps", 0, 1000000,
                                                &m->firm_rps)) != 0) {
        return rv;
    }
    if (v[6] != NULL && (rv = conf_yaml_get_u32(&l->y, v[6], "limits.firm_burst", 1, 10000000,
                                                &m->firm_burst)) != 0) {
        return rv;
    }
    if (v[7] != NULL && (rv = conf_yaml_get_u32(&l->y, v[7], "limits.firm_max_streams", 0,
                                                1000000, &m->firm_max_streams)) != 0) {
        return rv;
    }
    if (v[8] != NULL && (rv = conf_yaml_get_u32(&l->y, v[8], "limits.apply_per_minute", 0,
                                                100000, &m->apply_per_minute)) != 0) {
        return rv;
    }
    return 0;
}

static int load_ca(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"cert", "key", "firm_cert_days"};
    yaml_node_t *v[3];
    conf_ca *ca = &l->cfg->ca;
    int rv = conf_yaml_map_collect(&l->y, n, "ca", keys, 3, v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] == NULL || v[1] == NULL) {
        return conf_yaml_fail(&l->y, n, "ca: needs both 'cert' and 'key'");
    }
    if ((rv = get_str(l, v[0], "ca.cert", &ca->cert)) != 0 ||
        (rv = resolve_path(l, &ca->cert)) != 0 || (rv = get_str(l, v[1], "ca.key", &ca->key)) != 0 ||
        (rv = resolve_path(l, &ca->key)) != 0) {
        return rv;
    }
    if (v[2] != NULL &&
        (rv = conf_yaml_get_u32(&l->y, v[2], "ca.firm_cert_days", 1, 365, &ca->firm_cert_days)) != 0) {
        return rv;
    }
    return 0;
}

static int load_ledger(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"path"};
    yaml_node_t *v[1];
    int rv = conf_yaml_map_collect(&l->y, n, "ledger", keys, 1, v);
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
    cfg->ca.firm_cert_days = 90;
    cfg->upstream.rows = 100000;
    cfg->upstream.seed = 1;
    cfg->upstream.threads = 2;
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
    cfg->limits.firm_rps = 200;
    cfg->limits.firm_burst = 400;
    cfg->limits.firm_max_streams = 100;
    cfg->limits.apply_per_minute = 10;
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
    K_CA,
    K_COUNT
};

static int load_root(loader *l, const yaml_node_t *root)
{
    static const char *const keys[K_COUNT] = {
        [K_CITY] = "city",         [K_WORKERS] = "workers",   [K_LOG_LEVEL] = "log_level",
        [K_ACCESS_LOG] = "access_log", [K_LISTENERS] = "listeners", [K_TLS] = "tls",
        [K_PEERS] = "peers",       [K_ROUTES] = "routes",     [K_UPSTREAM] = "upstream",
        [K_TIMEOUTS] = "timeouts", [K_LIMITS] = "limits",     [K_LEDGER] = "ledger",
        [K_PROFILES] = "profiles", [K_CA] = "ca",
    };
    yaml_node_t *v[K_COUNT];
    conf_gateway *cfg = l->cfg;
    char sh[64];
    int rv;

    if (root->type != YAML_MAPPING_NODE) {
        return conf_yaml_fail(&l->y, root,
                              "the top level must be a mapping of keys (city:, listeners:, ...), "
                              "got %s",
                              conf_yaml_is_null(root) ? "nothing" : conf_yaml_kind_name(root));
    }
    if ((rv = conf_yaml_map_collect(&l->y, root, "the top level", keys, K_COUNT, v)) != 0) {
        return rv;
    }
    /* Required keys first, in the order a reader looks for them. */
    static const int required[] = {K_CITY, K_LISTENERS, K_TLS, K_UPSTREAM};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (v[required[i]] == NULL) {
            return conf_yaml_fail(&l->y, root, "missing required key '%s'", keys[required[i]]);
        }
    }

    if ((rv = get_str(l, v[K_CITY], "city", &cfg->city)) != 0) {
        return rv;
    }
    if (!is_city_id(cfg->city)) {
        return conf_yaml_fail(&l->y, v[K_CITY],
                              "city: '%s' is not a valid city id ([a-z][a-z0-9-]{0,62})",
                              conf_yaml_show(sh, sizeof(sh), cfg->city, strlen(cfg->city)));
    }
    if (v[K_WORKERS] != NULL &&
        (rv = conf_yaml_get_u32(&l->y, v[K_WORKERS], "workers", 1, 256, &cfg->workers)) != 0) {
        return rv;
    }
    if (v[K_LOG_LEVEL] != NULL) {
        if ((rv = get_str(l, v[K_LOG_LEVEL], "log_level", &cfg->log_level)) != 0) {
            return rv;
        }
        const char *s = cfg->log_level;
        if (strcmp(s, "debug") != 0 && strcmp(s, "info") != 0 && strcmp(s, "warn") != 0 &&
            strcmp(s, "error") != 0) {
            return conf_yaml_fail(&l->y, v[K_LOG_LEVEL],
                        "log_level: '%s' is not one of debug, info, warn, error",
                        conf_yaml_show(sh, sizeof(sh), s, strlen(s)));
        }
    } else if ((cfg->log_level = bg_strndup("info", 4)) == NULL) {
        return conf_yaml_nomem(&l->y);
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
        return conf_yaml_nomem(&l->y);
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
    if (v[K_CA] != NULL && (rv = load_ca(l, v[K_CA])) != 0) {
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
            return conf_yaml_nomem(&l->y);
        }
        cfg->ledger_path = (char *)b.data;
    }
    return resolve_path(l, &cfg->ledger_path);
}

/* ---- YAML front end ---- */

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
    yaml_node_t *root;
    loader l = {.y = {.name = name != NULL ? name : "<config>", .eb = eb}};
    int rv;

    if (data == NULL && len > 0) {
        return bg_errf(eb, BG_ERR_CONF_INVALID, "%s: no data", l.y.name);
    }
    if (data == NULL) {
        data = (const uint8_t *)"";
    }
    char *dir = dir_of(l.y.name);
    if (dir == NULL) {
        return conf_yaml_nomem(&l.y);
    }
    l.dir = dir;
    if ((rv = conf_yaml_load(&l.y, data, len, CONF_MAX_DEPTH,
                             "empty document (expected city:, listeners:, tls:, upstream:)",
                             &parser, &doc, &root)) != 0) {
        goto fail_dir;
    }
    l.cfg = calloc(1, sizeof(*l.cfg));
    if (l.cfg == NULL) {
        rv = conf_yaml_nomem(&l.y);
        goto fail_doc;
    }
    set_defaults(l.cfg);
    if ((l.cfg->path = bg_strndup(l.y.name, strlen(l.y.name))) == NULL) {
        rv = conf_yaml_nomem(&l.y);
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
    yaml_parser_delete(&parser);
fail_dir:
    free(dir);
    return rv;
}

int conf_gateway_load(conf_gateway **out, const char *path, bg_errbuf *eb)
{
    uint8_t *data;
    size_t len;
    int rv = conf_yaml_read_file(path, CONF_MAX_FILE_BYTES, CONF_MAX_FILE_BYTES, &data, &len, eb);
    if (rv != 0) {
        return rv;
    }
    rv = conf_gateway_load_buffer(out, path, data, len, eb);
    free(data);
    return rv;
}
