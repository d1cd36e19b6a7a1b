/* conf/yaml.c: the libyaml front end shared by conf/conf.c and conf/profile.c (see
 * conf/yaml_int.h): messages with "file:line", whole-file reading, the event pre-check that
 * refuses what neither format needs, and the typed node getters. Not for: any key, default or
 * rule of one format; those stay with their loader. */
#include "conf/yaml_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- messages ---- */

const char *conf_yaml_show(char *buf, size_t size, const char *s, size_t len)
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

unsigned long conf_yaml_node_line(const yaml_node_t *n)
{
    return n != NULL ? (unsigned long)n->start_mark.line + 1 : 1;
}

int conf_yaml_fail_at(conf_yaml *y, unsigned long line, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    bg_errf(y->eb, BG_ERR_CONF_INVALID, "%s:%lu: %s", y->name, line, what);
    return BG_ERR_CONF_INVALID;
}

int conf_yaml_fail(conf_yaml *y, const yaml_node_t *n, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    bg_errf(y->eb, BG_ERR_CONF_INVALID, "%s:%lu: %s", y->name, conf_yaml_node_line(n), what);
    return BG_ERR_CONF_INVALID;
}

int conf_yaml_nomem(conf_yaml *y)
{
    bg_errf(y->eb, BG_ERR_NOMEM, "%s: out of memory", y->name);
    return BG_ERR_NOMEM;
}

/* ---- reading and parsing ---- */

int conf_yaml_read_file(const char *path, size_t cap_max, unsigned max_bytes, uint8_t **out,
                        size_t *outlen, bg_errbuf *eb)
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
            if (cap >= cap_max) {
                close(fd);
                free(data);
                return bg_errf(eb, BG_ERR_CONF_INVALID, "%s: file larger than %u bytes", path,
                               max_bytes);
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
    *out = data;
    *outlen = len;
    return 0;
}

static unsigned long offset_line(const uint8_t *data, size_t len, size_t offset)
{
    unsigned long line = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        line += data[i] == '\n';
    }
    return line;
}

static int syntax_error(conf_yaml *y, const yaml_parser_t *p, const uint8_t *data, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR) {
        return conf_yaml_nomem(y);
    }
    unsigned long line = p->error == YAML_READER_ERROR ? offset_line(data, len, p->problem_offset)
                                                       : (unsigned long)p->problem_mark.line + 1;
    const char *problem = p->problem != NULL ? p->problem : "malformed document";
    if (p->context != NULL) {
        return conf_yaml_fail_at(y, line, "YAML syntax error: %s (%s started at line %lu)", problem,
                                 p->context, (unsigned long)p->context_mark.line + 1);
    }
    return conf_yaml_fail_at(y, line, "YAML syntax error: %s", problem);
}

/* First pass over the event stream: rejects what the document loader would silently accept
 * or what neither format needs (aliases, which make billion-laughs inputs, anchors, tags,
 * several documents, deep nesting), before any tree is built. */
static int check_events(conf_yaml *y, const uint8_t *data, size_t len, int max_depth,
                        const char *empty)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0;
    int ndocs = 0;
    int rv = 0;
    char sh[64];
    if (!yaml_parser_initialize(&p)) {
        return conf_yaml_nomem(y);
    }
    yaml_parser_set_input_string(&p, data, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            rv = syntax_error(y, &p, data, len);
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
                rv = conf_yaml_fail_at(y, line, "only one YAML document is allowed");
            }
            break;
        case YAML_ALIAS_EVENT:
            rv = conf_yaml_fail_at(
                y, line, "YAML aliases (*%s) are not supported; write the value out",
                conf_yaml_show(sh, sizeof(sh), (const char *)ev.data.alias.anchor,
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
            rv = conf_yaml_fail_at(
                y, line, "YAML anchors (&%s) are not supported",
                conf_yaml_show(sh, sizeof(sh), (const char *)anchor, strlen((const char *)anchor)));
        }
        if (rv == 0 && tag != NULL) {
            rv = conf_yaml_fail_at(
                y, line, "YAML tags (%s) are not supported",
                conf_yaml_show(sh, sizeof(sh), (const char *)tag, strlen((const char *)tag)));
        }
        if (rv == 0 && depth > max_depth) {
            rv = conf_yaml_fail_at(y, line, "nesting too deep (more than %d levels)", max_depth);
        }
        yaml_event_delete(&ev);
        if (rv != 0 || done) {
            break;
        }
    }
    if (rv == 0 && ndocs == 0) {
        rv = conf_yaml_fail_at(y, 1, "%s", empty);
    }
    yaml_parser_delete(&p);
    return rv;
}

int conf_yaml_load(conf_yaml *y, const uint8_t *data, size_t len, int max_depth, const char *empty,
                   yaml_parser_t *parser, yaml_document_t *doc, yaml_node_t **root)
{
    int rv;
    if ((rv = check_events(y, data, len, max_depth, empty)) != 0) {
        return rv;
    }
    if (!yaml_parser_initialize(parser)) {
        return conf_yaml_nomem(y);
    }
    yaml_parser_set_input_string(parser, data, len);
    if (!yaml_parser_load(parser, doc)) {
        rv = syntax_error(y, parser, data, len);
        goto fail_parser;
    }
    yaml_node_t *r = yaml_document_get_root_node(doc);
    if (r == NULL) {
        rv = conf_yaml_fail_at(y, 1, "%s", empty);
        goto fail_doc;
    }
    y->doc = doc;
    *root = r;
    return 0;

fail_doc:
    yaml_document_delete(doc);
fail_parser:
    yaml_parser_delete(parser);
    return rv;
}

/* ---- typed node access ---- */

const char *conf_yaml_kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return "a scalar";
    default:
        return "nothing";
    }
}

bool conf_yaml_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return false;
    }
    const char *v = (const char *)n->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

const char *conf_yaml_scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

int conf_yaml_get_uint(conf_yaml *y, const yaml_node_t *n, const char *what, uint64_t min,
                       uint64_t max, uint64_t *out)
{
    char sh[64];
    if (n->type != YAML_SCALAR_NODE) {
        return conf_yaml_fail(y, n, "%s: expected an integer, got %s", what,
                              conf_yaml_kind_name(n));
    }
    const char *s = conf_yaml_scalar(n);
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return conf_yaml_fail(y, n, "%s: expected an integer, got the string '%s'", what,
                              conf_yaml_show(sh, sizeof(sh), s, len));
    }
    if (len > 1 && s[0] == '-' && s[1] >= '0' && s[1] <= '9') {
        return conf_yaml_fail(y, n, "%s: must not be negative (allowed: %llu..%llu)", what,
                              (unsigned long long)min, (unsigned long long)max);
    }
    if (len == 0) {
        return conf_yaml_fail(y, n, "%s: expected an integer, got nothing (null)", what);
    }
    if (len > 1 && s[0] == '0') {
        /* YAML 1.1 reads 010 as octal 8 and 1.2 as 10: refuse rather than guess. */
        return conf_yaml_fail(y, n, "%s: expected an integer without leading zeros, got '%s'", what,
                              conf_yaml_show(sh, sizeof(sh), s, len));
    }
    uint64_t v = 0;
    bool overflow = false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return conf_yaml_fail(y, n, "%s: expected an integer, got '%s'", what,
                                  conf_yaml_show(sh, sizeof(sh), s, len));
        }
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            overflow = true;
        } else {
            v = v * 10 + d;
        }
    }
    if (overflow || v < min || v > max) {
        return conf_yaml_fail(y, n, "%s: %s is out of range (allowed: %llu..%llu)", what,
                              conf_yaml_show(sh, sizeof(sh), s, len), (unsigned long long)min,
                              (unsigned long long)max);
    }
    *out = v;
    return 0;
}

int conf_yaml_get_u32(conf_yaml *y, const yaml_node_t *n, const char *what, uint64_t min,
                      uint64_t max, uint32_t *out)
{
    assert(max <= UINT32_MAX);
    uint64_t v;
    int rv = conf_yaml_get_uint(y, n, what, min, max, &v);
    if (rv == 0) {
        *out = (uint32_t)v;
    }
    return rv;
}

int conf_yaml_get_bool(conf_yaml *y, const yaml_node_t *n, const char *what, bool *out)
{
    char sh[64];
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        const char *s = conf_yaml_scalar(n);
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
        return conf_yaml_fail(y, n, "%s: expected true or false, got %s", what,
                              conf_yaml_kind_name(n));
    }
    return conf_yaml_fail(
        y, n, "%s: expected true or false, got '%s'", what,
        conf_yaml_show(sh, sizeof(sh), conf_yaml_scalar(n), n->data.scalar.length));
}

/* ---- mappings and lists ---- */

int conf_yaml_map_collect(conf_yaml *y, const yaml_node_t *map, const char *ctx,
                          const char *const *keys, size_t nkeys, yaml_node_t **vals)
{
    char sh[64];
    assert(nkeys <= CONF_YAML_MAX_KEYS);
    for (size_t i = 0; i < nkeys; i++) {
        vals[i] = NULL;
    }
    if (map->type != YAML_MAPPING_NODE) {
        return conf_yaml_fail(y, map, "%s: expected a mapping, got %s", ctx,
                              conf_yaml_is_null(map) ? "nothing (null)" : conf_yaml_kind_name(map));
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
        if (k == NULL || v == NULL) {
            return conf_yaml_fail(y, map, "%s: malformed mapping entry", ctx);
        }
        if (k->type != YAML_SCALAR_NODE) {
            return conf_yaml_fail(y, k, "%s: keys must be plain strings, got %s", ctx,
                                  conf_yaml_kind_name(k));
        }
        size_t klen = k->data.scalar.length;
        size_t i;
        for (i = 0; i < nkeys; i++) {
            if (strlen(keys[i]) == klen && memcmp(keys[i], conf_yaml_scalar(k), klen) == 0) {
                break;
            }
        }
        const char *where = map == yaml_document_get_root_node(y->doc) ? "at" : "in";
        if (i == nkeys) {
            return conf_yaml_fail(y, k, "unknown key '%s' %s %s",
                                  conf_yaml_show(sh, sizeof(sh), conf_yaml_scalar(k), klen), where,
                                  ctx);
        }
        if (vals[i] != NULL) {
            return conf_yaml_fail(y, k, "duplicate key '%s' %s %s", keys[i], where, ctx);
        }
        vals[i] = v;
    }
    return 0;
}

int conf_yaml_seq_items(conf_yaml *y, const yaml_node_t *n, const char *what, size_t min,
                        size_t max, yaml_node_item_t **items, size_t *count)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        if (conf_yaml_is_null(n) && min == 0) {
            *items = NULL;
            *count = 0;
            return 0;
        }
        return conf_yaml_fail(y, n, "%s: expected a list, got %s", what,
                              conf_yaml_is_null(n) ? "nothing (null)" : conf_yaml_kind_name(n));
    }
    size_t c = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (c < min) {
        return conf_yaml_fail(y, n, "%s: at least %zu entr%s required", what, min,
                              min == 1 ? "y" : "ies");
    }
    if (c > max) {
        return conf_yaml_fail(y, n, "%s: at most %zu entries allowed, got %zu", what, max, c);
    }
    *items = n->data.sequence.items.start;
    *count = c;
    return 0;
}

yaml_node_t *conf_yaml_item(conf_yaml *y, const yaml_node_item_t *items, size_t i)
{
    return yaml_document_get_node(y->doc, items[i]);
}
