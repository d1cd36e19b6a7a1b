/* routing/table.c: the static route table (destination city -> next-hop peer) and the hop-list
 * rules that stop loops between gateways. The table is a sorted array searched with bsearch:
 * built once, never mutated, so readers on any thread need no lock. Not for: peer health or
 * choosing among alternatives (later issues). */
#include "routing/table.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/ids.h"

#define DATASET_NAME_MAX 128

typedef struct route_entry {
    const char *city;      /* borrowed from the config */
    const conf_peer *peer; /* borrowed from the config */
    size_t order;          /* preference: the peer itself first, then routes as written */
} route_entry;

struct route_table {
    char *self; /* own city, copied */
    route_entry *entries; /* sorted by city, then preference */
    size_t n;
};

/* City ids: [a-z][a-z0-9-]{0,62}; |len| bytes of |s| (base/ids.h). */
static bool is_city(const char *s, size_t len)
{
    return bg_city_id_valid(s, len);
}

static int entry_cmp(const void *a, const void *b)
{
    const route_entry *x = a;
    const route_entry *y = b;
    int c = strcmp(x->city, y->city);
    return c != 0 ? c : (x->order > y->order) - (x->order < y->order);
}

static int key_cmp(const void *key, const void *elem)
{
    const route_entry *e = elem;
    return strcmp(key, e->city);
}

int route_table_new(route_table **out, const conf_gateway *cfg, bg_errbuf *eb)
{
    const char *name = cfg->path != NULL ? cfg->path : "<config>";
    if (cfg->city == NULL || !is_city(cfg->city, strlen(cfg->city))) {
        return bg_errf(eb, BG_ERR_CONF_INVALID, "%s: route table: invalid own city", name);
    }
    size_t n = cfg->npeers + cfg->nroutes;
    if (n < cfg->npeers) {
        return bg_errf(eb, BG_ERR_NOMEM, "%s: route table: out of memory", name);
    }
    route_table *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return bg_errf(eb, BG_ERR_NOMEM, "%s: route table: out of memory", name);
    }
    int rv;
    t->self = strdup(cfg->city);
    if (t->self == NULL) {
        rv = bg_errf(eb, BG_ERR_NOMEM, "%s: route table: out of memory", name);
        goto fail_free;
    }
    if (n == 0) {
        /* No peers and no routes: only the own city is reachable. */
        *out = t;
        return 0;
    }
    t->entries = calloc(n, sizeof(*t->entries));
    if (t->entries == NULL) {
        rv = bg_errf(eb, BG_ERR_NOMEM, "%s: route table: out of memory", name);
        goto fail_free;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        const conf_peer *p = &cfg->peers[i];
        if (p->name == NULL || !is_city(p->name, strlen(p->name)) ||
            strcmp(p->name, cfg->city) == 0) {
            rv = bg_errf(eb, BG_ERR_CONF_INVALID, "%s: route table: invalid peer name", name);
            goto fail_free;
        }
        t->entries[t->n].city = p->name;
        t->entries[t->n].peer = p;
        t->entries[t->n].order = t->n;
        t->n++;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const conf_route *r = &cfg->routes[i];
        if (r->city == NULL || !is_city(r->city, strlen(r->city)) ||
            strcmp(r->city, cfg->city) == 0) {
            rv = bg_errf(eb, BG_ERR_CONF_INVALID, "%s: route table: invalid route city", name);
            goto fail_free;
        }
        const conf_peer *via = r->via != NULL ? conf_gateway_find_peer(cfg, r->via) : NULL;
        if (via == NULL) {
            rv = bg_errf(eb, BG_ERR_CONF_INVALID, "%s: route table: route to '%s' via unknown peer",
                         name, r->city);
            goto fail_free;
        }
        t->entries[t->n].city = r->city;
        t->entries[t->n].peer = via;
        t->entries[t->n].order = t->n;
        t->n++;
    }
    if (t->n > 1) {
        qsort(t->entries, t->n, sizeof(*t->entries), entry_cmp);
    }
    for (size_t i = 1; i < t->n; i++) {
        if (strcmp(t->entries[i - 1].city, t->entries[i].city) == 0 &&
            (t->entries[i - 1].peer == t->entries[i].peer ||
             (t->entries[i - 1].order < cfg->npeers && t->entries[i].order < cfg->npeers))) {
            rv = bg_errf(eb, BG_ERR_CONF_INVALID, "%s: route table: '%s' twice via '%s'", name,
                         t->entries[i].city, t->entries[i].peer->name);
            goto fail_free;
        }
    }
    *out = t;
    return 0;

fail_free:
    route_table_free(t);
    return rv;
}

void route_table_free(route_table *t)
{
    if (t == NULL) {
        return;
    }
    free(t->self);
    free(t->entries);
    free(t);
}

int route_table_next_hop(const route_table *t, const char *dest_city, const conf_peer **peer)
{
    assert(t != NULL && peer != NULL);
    if (dest_city == NULL) {
        return BG_ERR_NO_ROUTE;
    }
    if (strcmp(dest_city, t->self) == 0) {
        *peer = NULL;
        return 0;
    }
    if (t->n == 0) {
        return BG_ERR_NO_ROUTE;
    }
    const conf_peer *one[1];
    if (route_table_next_hops(t, dest_city, one, 1) == 0) {
        return BG_ERR_NO_ROUTE;
    }
    *peer = one[0];
    return 0;
}

size_t route_table_next_hops(const route_table *t, const char *dest_city, const conf_peer **out,
                             size_t max)
{
    if (dest_city == NULL || t->n == 0 || strcmp(dest_city, t->self) == 0) {
        return 0;
    }
    const route_entry *e = bsearch(dest_city, t->entries, t->n, sizeof(*t->entries), key_cmp);
    if (e == NULL) {
        return 0;
    }
    while (e > t->entries && strcmp(e[-1].city, dest_city) == 0) { /* the first alternative */
        e--;
    }
    size_t n = 0;
    for (; e < t->entries + t->n && strcmp(e->city, dest_city) == 0 && n < max; e++) {
        out[n++] = e->peer;
    }
    return n;
}

int route_dataset_city(const char *dataset, char *city, size_t city_len)
{
    if (dataset == NULL || city == NULL) {
        return BG_ERR_INVAL;
    }
    const char *slash = strchr(dataset, '/');
    if (slash == NULL) {
        return BG_ERR_INVAL;
    }
    size_t clen = (size_t)(slash - dataset);
    if (!is_city(dataset, clen)) {
        return BG_ERR_INVAL;
    }
    const char *nm = slash + 1;
    size_t nlen = strlen(nm);
    if (nlen == 0 || nlen > DATASET_NAME_MAX) {
        return BG_ERR_INVAL;
    }
    for (size_t i = 0; i < nlen; i++) {
        char c = nm[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return BG_ERR_INVAL;
        }
    }
    if (clen >= city_len) {
        return BG_ERR_INVAL;
    }
    memcpy(city, dataset, clen);
    city[clen] = 0;
    return 0;
}

int route_hops_check(const char *hops, const char *self, unsigned max_hops)
{
    if (hops == NULL || hops[0] == 0) {
        return max_hops == 0 ? BG_ERR_TOO_MANY_HOPS : 0;
    }
    size_t self_len = self != NULL ? strlen(self) : 0;
    size_t count = 0;
    bool loop = false;
    const char *p = hops;
    /* Validate the whole list before judging it: a malformed header is the sender's bug and
     * gets BG_ERR_INVAL even when it also names us. */
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (!is_city(p, len)) {
            return BG_ERR_INVAL;
        }
        if (len == self_len && self_len > 0 && memcmp(p, self, len) == 0) {
            loop = true;
        }
        count++;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    if (loop) {
        return BG_ERR_LOOP;
    }
    if (count >= max_hops) {
        return BG_ERR_TOO_MANY_HOPS;
    }
    return 0;
}

int route_hops_append(const char *hops, const char *self, char *out, size_t out_len)
{
    assert(self != NULL && out != NULL);
    size_t hlen = hops != NULL ? strlen(hops) : 0;
    size_t slen = strlen(self);
    size_t need = hlen + (hlen > 0 ? 1 : 0); /* "hops," */
    if (need > SIZE_MAX - slen - 1) {
        return BG_ERR_RANGE;
    }
    need += slen + 1; /* "self" NUL */
    if (need > out_len) {
        return BG_ERR_RANGE;
    }
    size_t off = 0;
    if (hlen > 0) {
        memmove(out, hops, hlen); /* |hops| may alias |out| */
        out[hlen] = ',';
        off = hlen + 1;
    }
    memcpy(out + off, self, slen);
    out[off + slen] = 0;
    return 0;
}
