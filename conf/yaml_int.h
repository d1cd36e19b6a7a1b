/* conf/yaml_int.h: the libyaml front end shared by the gateway config loader (conf/conf.c) and
 * the contract-profile loader (conf/profile.c): reading the file, the event pre-check, loading
 * the document, "file:line" messages and the typed node getters both formats use the same way.
 * Folder-internal; not for: anything format-specific (keys, defaults, limits of one file). */
#ifndef CONF_YAML_INT_H
#define CONF_YAML_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "base/err.h"

/* The most keys conf_yaml_map_collect() accepts in one mapping. */
#define CONF_YAML_MAX_KEYS 16

/* Load state both loaders embed as their first member: the document being walked and where
 * errors go. All pointers are borrowed from the caller of the load. */
typedef struct conf_yaml {
    yaml_document_t *doc; /* NULL until conf_yaml_load() succeeds */
    const char *name;     /* file name for messages */
    bg_errbuf *eb;
} conf_yaml;

/* ---- messages ---- */

/* Copies at most |size| - 4 bytes of |s| (|len| bytes) into |buf|, non-printable bytes as '?'
 * and "..." when cut, so that messages stay one readable line whatever the input holds.
 * |size| must be at least 4. Returns |buf|. */
const char *conf_yaml_show(char *buf, size_t size, const char *s, size_t len);
/* The 1-based line of |n|, or 1 when |n| is NULL. */
unsigned long conf_yaml_node_line(const yaml_node_t *n);
/* Writes "file:line: <message>" to the caller's error buffer; always returns
 * BG_ERR_CONF_INVALID, so `return conf_yaml_fail_at(...)` never reads as success. */
int conf_yaml_fail_at(conf_yaml *y, unsigned long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* conf_yaml_fail_at() at the line of node |n| (line 1 when |n| is NULL). */
int conf_yaml_fail(conf_yaml *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes "file: out of memory"; always returns BG_ERR_NOMEM. */
int conf_yaml_nomem(conf_yaml *y);

/* ---- reading and parsing ---- */

/* Reads |path| whole into |*data| (caller frees; one spare byte past |*len|). The buffer
 * starts at 4096 bytes and doubles; once it is full at a capacity of |cap_max| or more the file
 * is refused as "file larger than |max_bytes| bytes". On failure |*data| and |*len| are
 * untouched. Returns 0, BG_ERR_CONF_IO, BG_ERR_CONF_INVALID or BG_ERR_NOMEM. */
int conf_yaml_read_file(const char *path, size_t cap_max, unsigned max_bytes, uint8_t **data,
                        size_t *len, bg_errbuf *eb);
/* Checks the event stream of |data| (no aliases, anchors, tags or second document, at most
 * |max_depth| levels; |empty| is the message for a stream without a document), then loads it
 * through |parser| into |doc| and sets |y->doc|. On success |*root| is the root node and the
 * caller deletes |doc| and then |parser|; on failure neither needs deleting and |y->doc| is
 * untouched. Returns 0, BG_ERR_CONF_INVALID or BG_ERR_NOMEM. */
int conf_yaml_load(conf_yaml *y, const uint8_t *data, size_t len, int max_depth, const char *empty,
                   yaml_parser_t *parser, yaml_document_t *doc, yaml_node_t **root);

/* ---- typed node access ---- */

/* "a mapping", "a list", "a scalar" or "nothing", for messages. */
const char *conf_yaml_kind_name(const yaml_node_t *n);
/* True for a plain scalar spelling null: "", "~", "null", "Null", "NULL". */
bool conf_yaml_is_null(const yaml_node_t *n);
/* The NUL-terminated value of scalar |n|; borrowed from the document. */
const char *conf_yaml_scalar(const yaml_node_t *n);
/* A plain decimal integer in [|min|, |max|] into |*out| (named |what| in messages). */
int conf_yaml_get_uint(conf_yaml *y, const yaml_node_t *n, const char *what, uint64_t min,
                       uint64_t max, uint64_t *out);
/* conf_yaml_get_uint() for a uint32_t; |max| must not exceed UINT32_MAX. */
int conf_yaml_get_u32(conf_yaml *y, const yaml_node_t *n, const char *what, uint64_t min,
                      uint64_t max, uint32_t *out);
/* true/True/TRUE or false/False/FALSE as a plain scalar into |*out|. */
int conf_yaml_get_bool(conf_yaml *y, const yaml_node_t *n, const char *what, bool *out);

/* ---- mappings and lists ---- */

/* Walks mapping |map| (named |ctx| in messages): every key must be one of |keys| and appear
 * once; the value of keys[i] lands in vals[i] (NULL when absent). |nkeys| is at most
 * CONF_YAML_MAX_KEYS. The nodes are borrowed from |y->doc|. */
int conf_yaml_map_collect(conf_yaml *y, const yaml_node_t *map, const char *ctx,
                          const char *const *keys, size_t nkeys, yaml_node_t **vals);
/* Returns the items of sequence |n| (named |what|), checking |min| <= count <= |max|; a null
 * counts as an empty list when |min| is 0. |*items| is borrowed from |y->doc|. */
int conf_yaml_seq_items(conf_yaml *y, const yaml_node_t *n, const char *what, size_t min,
                        size_t max, yaml_node_item_t **items, size_t *count);
/* The node of items[i], borrowed from |y->doc|; NULL when the document has no such node. */
yaml_node_t *conf_yaml_item(conf_yaml *y, const yaml_node_item_t *items, size_t i);
#endif /* CONF_YAML_INT_H */
