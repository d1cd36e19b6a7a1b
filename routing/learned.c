/* routing/learned.c: routes learned from peers' catalogs; see routing/learned.h. A flat array:
 * a federation has tens of cities, and lookups happen per query leg, not per byte. */
#include "routing/learned.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "base/ids.h"

typedef struct learned_route {
    char city[64];
    char peer[64];
    uint32_t hops; /* from here */
    uint64_t seq;  /* learning order, for stable ties */
} learned_route;

struct route_learned {
    char self[64];
    learned_route *r;
    size_t n, cap;
    uint64_t seq;
};

route_learned *route_learned_new(const char *self)
{
    route_learned *t = calloc(1, sizeof(*t));
    if (t != NULL) {
        bg_strlcpy(t->self, self, sizeof(t->self));
    }
    return t;
}

void route_learned_free(route_learned *t)
{
    if (t != NULL) {
        free(t->r);
        free(t);
    }
}

void route_learned_forget(route_learned *t, const char *peer)
{
    size_t j = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->r[i].peer, peer) != 0) {
            t->r[j++] = t->r[i];
        }
    }
    t->n = j;
}

int route_learned_update(route_learned *t, const char *peer, const char *const *cities,
                         const uint32_t *hops, size_t n)
{
    route_learned_forget(t, peer);
    for (size_t i = 0; i < n; i++) {
        const char *c = cities[i];
        size_t len = strlen(c);
        if (!bg_city_id_valid(c, len) || len >= sizeof(t->r[0].city) ||
            strcmp(c, t->self) == 0 || strcmp(c, peer) == 0 ||
            hops[i] >= ROUTE_LEARNED_MAX_HOPS) {
            continue;
        }
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 16;
            learned_route *r = realloc(t->r, cap * sizeof(*r));
            if (r == NULL) {
                route_learned_forget(t, peer);
                return BG_ERR_NOMEM;
            }
            t->r = r;
            t->cap = cap;
        }
        learned_route *e = &t->r[t->n++];
        bg_strlcpy(e->city, c, sizeof(e->city));
        bg_strlcpy(e->peer, peer, sizeof(e->peer));
        e->hops = hops[i] + 1;
        e->seq = t->seq++;
    }
    return 0;
}

size_t route_learned_next_hops(const route_learned *t, const char *city, const char **out,
                               uint32_t *hops, size_t max)
{
    size_t n = 0;
    const learned_route *pick[64];
    for (size_t i = 0; i < t->n && n < 64; i++) {
        if (strcmp(t->r[i].city, city) == 0) {
            pick[n++] = &t->r[i];
        }
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort: fewest hops, then learned first */
        const learned_route *x = pick[i];
        size_t j = i;
        while (j > 0 && (pick[j - 1]->hops > x->hops ||
                         (pick[j - 1]->hops == x->hops && pick[j - 1]->seq > x->seq))) {
            pick[j] = pick[j - 1];
            j--;
        }
        pick[j] = x;
    }
    size_t k = n < max ? n : max;
    for (size_t i = 0; i < k; i++) {
        out[i] = pick[i]->peer;
        if (hops != NULL) {
            hops[i] = pick[i]->hops;
        }
    }
    return k;
}

size_t route_learned_cities(const route_learned *t, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n && n < max; i++) {
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++) {
            seen = strcmp(out[j], t->r[i].city) == 0;
        }
        if (!seen) {
            out[n++] = t->r[i].city;
        }
    }
    return n;
}
