/* base/ids.h: the syntax of the federation's names, shared by every module that reads them
 * (config, routing, the request path). Not for: what a name means or whether it is known. */
#ifndef BG_IDS_H
#define BG_IDS_H
#include <stdbool.h>
#include <stddef.h>

#define BG_CITY_MAX 63 /* bytes in a city id */

/* True when the |len| bytes at |s| are a city id: [a-z][a-z0-9-]{0,62}. */
bool bg_city_id_valid(const char *s, size_t len);
#endif /* BG_IDS_H */
