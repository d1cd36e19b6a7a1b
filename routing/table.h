/* routing/table.h: which peer is the next hop toward a destination city, and the hop list
 * that travels with a federated request. Built once from config, then read-only; safe to share
 * across worker threads. Not for: peer health or connections (gateway/), later issues add
 * catalog-learned routes and alternatives here. */
#ifndef ROUTE_TABLE_H
#define ROUTE_TABLE_H
#include <stddef.h>
#include "base/err.h"
#include "conf/conf.h"

typedef struct route_table route_table;

/* Builds the table from |cfg|: every peer is a route to its own city; every `routes:` entry
 * adds `city via peer`. Returns 0 and |*out| (caller frees with route_table_free()) or
 * BG_ERR_NOMEM / BG_ERR_CONF_INVALID (with |eb|). */
int route_table_new(route_table **out, const conf_gateway *cfg, bg_errbuf *eb);
void route_table_free(route_table *t); /* NULL is a no-op */

/* Resolves |dest_city|: returns 0 with *|peer| = NULL when it is this gateway's own city,
 * 0 with *|peer| set (borrowed from |t|'s config, valid while |t| lives) for a remote city,
 * or BG_ERR_NO_ROUTE. */
int route_table_next_hop(const route_table *t, const char *dest_city, const conf_peer **peer);

/* The next-hop peers toward |dest_city| in order of preference (the peer of that city itself,
 * then `routes:` entries in the order written), at most |max| into |out| (borrowed from |t|'s
 * config). Returns how many; 0 for the own city or no route. Picking among them by session
 * health is the gateway's job. */
size_t route_table_next_hops(const route_table *t, const char *dest_city, const conf_peer **out,
                             size_t max);

/* Splits a dataset reference "<city>/<name>" (city [a-z][a-z0-9-]{0,62}, name
 * [A-Za-z0-9._-]{1,128}) writing the city into |city| (NUL-terminated). Returns 0 or
 * BG_ERR_INVAL. */
int route_dataset_city(const char *dataset, char *city, size_t city_len);

/* Checks the hop list header value |hops| (comma-separated city ids, may be NULL or "") as
 * received by |self|: BG_ERR_LOOP when |self| already appears, BG_ERR_TOO_MANY_HOPS when it
 * already holds |max_hops| entries, BG_ERR_INVAL when malformed, else 0. */
int route_hops_check(const char *hops, const char *self, unsigned max_hops);

/* Writes |hops| with |self| appended ("a,b,self", or "self" when |hops| is empty) into |out|.
 * Returns 0 or BG_ERR_RANGE when it does not fit. */
int route_hops_append(const char *hops, const char *self, char *out, size_t out_len);

#endif /* ROUTE_TABLE_H */
