/* space/data.h: the embedded reference data space: seeded synthetic (never real) health
 * datasets held in memory column by column, and the executor that answers a space_query over
 * them with mergeable aggregate states, applying the data space's own disclosure control
 * (small cells, differencing against earlier releases). Built once at start-up, then shared
 * read-only by every executor thread. Not for: merging results (space/agg.h), the gateway's
 * disclosure control (trust/disclosure.h), real data. */
#ifndef SPACE_DATA_H
#define SPACE_DATA_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "space/space.h"

#define SPACE_DB_ROWS_MIN 1000u
#define SPACE_DB_ROWS_MAX 10000000u

typedef struct space_db space_db;

/* Generates the datasets of |city| into |*out| (caller frees with space_db_free()): |rows|
 * rows each, from |seed| mixed with the city and dataset names, so the same (city, dataset,
 * rows, seed) gives the same data on every run and two cities never share rows. |datasets|
 * (|ndatasets| names, borrowed for the call) chooses what the city holds; NULL means its
 * default holdings (guangzhou: peds-pneumonia-indicators, neonatal-bilirubin,
 * cerebral-infarction; macau: the first two; shenzhen and hongkong: stroke-registry,
 * liver-cancer; any other city: nothing). On failure |*out| is untouched. Returns 0,
 * BG_ERR_INVAL (empty city, a dataset named twice), BG_ERR_RANGE (|rows| outside
 * SPACE_DB_ROWS_MIN..SPACE_DB_ROWS_MAX), BG_ERR_NOTFOUND (unknown dataset) or BG_ERR_NOMEM, with
 * a message in |eb|. Takes 0.15-0.2 s per million rows and dataset, on the calling thread. */
int space_db_new(space_db **out, const char *city, uint64_t rows, uint64_t seed,
                 const char *const *datasets, size_t ndatasets, bg_errbuf *eb);
void space_db_free(space_db *db); /* NULL is a no-op; no execute may be running */

/* Number of datasets held, and the schema of the |i|th (borrowed, static). */
size_t space_db_count(const space_db *db);
const space_schema *space_db_schema_at(const space_db *db, size_t i);
/* Rows of |dataset| (name without city), or 0 when it is not held. */
uint64_t space_db_rows(const space_db *db, const char *dataset);
/* The city the data space was generated for (borrowed from |db|). */
const char *space_db_city(const space_db *db);

/* Writes |dataset| to |out| as CSV: a header of field names, then one line per row in
 * storage order, numbers with exactly the decimals of their resolution (the stored value),
 * categories by name. Returns 0, BG_ERR_NOTFOUND or BG_ERR_IO (a write failed). */
int space_db_dump_csv(const space_db *db, const char *dataset, FILE *out);

/* The data space's own disclosure control for one execute. */
typedef struct space_exec_opts {
    uint32_t k; /* > 0: cells with 0 < n < k are suppressed (SPACE_SUPP_BELOW_K) */
    /* Non-NULL (borrowed for the call): the requester's history; a cell that differs by fewer
     * than k rows from a cell released earlier under this key (same dataset; the last 16 distinct
     * releases per key, LRU over 256 keys) is suppressed (SPACE_SUPP_DIFFERENCING). Queries of
     * one key are serialised. k == 0 checks nothing but still remembers the release. */
    const char *history_key;
} space_exec_opts;

/* Runs |q| on |db| into |out| (caller disposes with space_result_dispose()). Field and
 * category names are resolved here against the dataset's own schema. |out| has one cell for
 * every combination of the group_by categories (empty ones included), key[0] major; members
 * are filled as documented on space_cell. Suppressed cells carry supp and all-zero values.
 * |opts| may be NULL (no suppression). Thread-safe: any number of threads may execute on one
 * db at once. On failure |out| is untouched. Returns 0, BG_ERR_NOTFOUND (dataset not held),
 * BG_ERR_INVAL (a field, value, edge or probability the query may not use, named in |eb|),
 * BG_ERR_RANGE (too many cells) or BG_ERR_NOMEM. */
int space_db_execute(space_db *db, const space_query *q, const space_exec_opts *opts,
                     space_result *out, bg_errbuf *eb);

#endif /* SPACE_DATA_H */
