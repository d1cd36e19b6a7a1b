/* routing/learned.h: routes learned from what peers advertise in their catalogs
 * (GET /fed/v1/catalog "reaches": the cities a peer reaches and in how many hops). Each
 * advertised city becomes a route through that peer with one more hop; the shortest is
 * preferred and the others kept as alternatives. Configured routes always win over learned
 * ones (routing/table.h). One table per worker: not thread-safe, no locks.
 * Not for: deciding which session is healthy (the gateway picks among the alternatives). */
#ifndef ROUTE_LEARNED_H
#define ROUTE_LEARNED_H
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define ROUTE_LEARNED_MAX_HOPS 16 /* advertisements of more hops are ignored */

typedef struct route_learned route_learned;

/* A new, empty table for gateway |self| (copied). NULL on ENOMEM. */
route_learned *route_learned_new(const char *self);
void route_learned_free(route_learned *t); /* NULL is a no-op */

/* Replaces everything learned from peer |peer| with its advertisement: |n| cities at
 * |cities| reached in |hops| hops from the peer (so hops + 1 from here). The own city, the
 * peer itself, invalid city ids and hops >= ROUTE_LEARNED_MAX_HOPS are skipped. Returns 0 or
 * BG_ERR_NOMEM (the peer's earlier routes are then gone: a later update retries). */
int route_learned_update(route_learned *t, const char *peer, const char *const *cities,
                         const uint32_t *hops, size_t n);
/* Forgets every route through |peer| (its session went away for good). */
void route_learned_forget(route_learned *t, const char *peer);

/* The peers through which |city| was learned, fewest hops first (ties: the peer learned from
 * first), at most |max| names into |out| (borrowed until the next update) and their hop
 * counts into |hops| (may be NULL). Returns how many. */
size_t route_learned_next_hops(const route_learned *t, const char *city, const char **out,
                               uint32_t *hops, size_t max);

/* Every city learned, once each, at most |max| into |out| (borrowed). Returns how many. */
size_t route_learned_cities(const route_learned *t, const char **out, size_t max);

#endif /* ROUTE_LEARNED_H */
