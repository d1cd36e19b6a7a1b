/* space/data_int.h: the in-memory layout of a space_db, shared by data.c (generation, schemas,
 * CSV) and exec.c (the executor and its release history). Internal to space/; tests may
 * include it to reach the raw columns. */
#ifndef SPACE_DATA_INT_H
#define SPACE_DATA_INT_H
#include <stddef.h>
#include <stdint.h>

#include "space/data.h"

/* Numeric values are stored as their fine-grid index, which fits 16 bits. */
_Static_assert(SPACE_MAX_GRID <= 65536, "grid indexes are stored as uint16_t");

/* One column: exactly one of |num| and |cat| is set, by the field's type. */
typedef struct space_column {
    uint16_t *num;    /* numeric: grid index i, the value lo + i*resolution */
    uint8_t *cat;     /* categorical: category code */
    double *vals;     /* numeric: value of each grid index (the decimal the CSV prints) */
    int64_t units_lo; /* numeric: lo / resolution, so i + units_lo = value / resolution */
    size_t nbins;     /* numeric: space_field_grid_bins() */
} space_column;

/* One dataset of one city: immutable once generated. */
typedef struct space_table {
    const space_schema *schema;
    size_t nrows;
    space_column *cols; /* schema->nfields */
} space_table;

typedef struct space_hist space_hist; /* the release history (exec.c) */

struct space_db {
    char *city;
    size_t ntables;
    space_table *tables;
    space_hist *hist; /* release history of exec.c, created with the db */
};

/* The table called |name| or NULL; its index in db->tables goes to |*idx| when not NULL. */
const space_table *space_db_table(const space_db *db, const char *name, size_t *idx);

/* Value of |units| multiples of |resolution| (1 or 10^-d): exactly the double nearest the
 * decimal the CSV prints, so independent parsers see the same number. */
double space_units_value(int64_t units, double resolution);
/* Decimals of |resolution| when printed: 0 for 1, d for 10^-d. */
int space_resolution_decimals(double resolution);

/* Creates and frees the release history of |ntables| datasets (exec.c). */
int space_hist_new(space_hist **out, size_t ntables);
void space_hist_free(space_hist *h); /* NULL is a no-op */

#endif /* SPACE_DATA_INT_H */
