/* tests/unit/space/test_data.c: the reference datasets: schemas, bounds, default holdings,
 * determinism of the seeded generation (byte-identical CSV), the stored values' grid and range,
 * and the intended shapes (pathogen, proportional meter bias, outcome by severity, hospitals). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "space/data.h"

/* ---- helpers ---- */

typedef struct frame {
    const space_schema *s;
    size_t nrows;
    double *v; /* nrows x nfields; categorical as its code */
} frame;

static char *dump(const space_db *db, const char *dataset, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    assert_non_null(f);
    assert_int_equal(space_db_dump_csv(db, dataset, f), 0);
    assert_int_equal(fclose(f), 0);
    return buf;
}

/* Parses the CSV of |dataset| back into numbers, checking the header and every category. */
static void frame_load(frame *fr, const space_db *db, const char *dataset)
{
    size_t len;
    char *buf = dump(db, dataset, &len);
    const space_schema *s = space_schema_find(dataset);
    assert_non_null(s);
    fr->s = s;
    fr->nrows = (size_t)space_db_rows(db, dataset);
    fr->v = malloc(fr->nrows * s->nfields * sizeof(double));
    assert_non_null(fr->v);
    char *p = buf;
    for (size_t f = 0; f < s->nfields; f++) {
        size_t n = strlen(s->fields[f].name);
        assert_memory_equal(p, s->fields[f].name, n);
        p += n;
        assert_int_equal(*p, f + 1 < s->nfields ? ',' : '\n');
        p++;
    }
    for (size_t i = 0; i < fr->nrows; i++) {
        for (size_t f = 0; f < s->nfields; f++) {
            const space_field *fd = &s->fields[f];
            size_t n = strcspn(p, ",\n");
            assert_int_equal(p[n], f + 1 < s->nfields ? ',' : '\n');
            double x = -1;
            if (fd->type == SPACE_FIELD_NUMERIC) {
                char *end;
                x = strtod(p, &end);
                assert_ptr_equal(end, p + n);
            } else {
                for (size_t c = 0; c < fd->ncats; c++) {
                    if (strlen(fd->cats[c]) == n && memcmp(fd->cats[c], p, n) == 0) {
                        x = (double)c;
                    }
                }
                assert_true(x >= 0);
            }
            fr->v[i * s->nfields + f] = x;
            p += n + 1;
        }
    }
    assert_int_equal((size_t)(p - buf), len);
    free(buf);
}

static double val(const frame *fr, size_t row, const char *field)
{
    int f = space_schema_field(fr->s, field);
    assert_true(f >= 0);
    return fr->v[row * fr->s->nfields + (size_t)f];
}

static size_t code(const space_schema *s, const char *field, const char *cat)
{
    const space_field *f = &s->fields[space_schema_field(s, field)];
    for (size_t c = 0; c < f->ncats; c++) {
        if (strcmp(f->cats[c], cat) == 0) {
            return c;
        }
    }
    fail_msg("no category %s of %s", cat, field);
    return 0;
}

static space_db *db_make(const char *city, uint64_t rows, uint64_t seed)
{
    space_db *db = NULL;
    bg_errbuf eb = {{0}};
    int rv = space_db_new(&db, city, rows, seed, NULL, 0, &eb);
    if (rv != 0) {
        fail_msg("space_db_new: %d %s", rv, eb.msg);
    }
    return db;
}

/* ---- schemas ---- */

static void test_space_schema_all_wellformed(void **state)
{
    (void)state;
    size_t n;
    const space_schema *const *all = space_schema_all(&n);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        const space_schema *s = all[i];
        assert_ptr_equal(space_schema_find(s->name), s);
        assert_true(s->nfields > 0 && s->nfields <= 16);
        for (size_t f = 0; f < s->nfields; f++) {
            const space_field *fd = &s->fields[f];
            for (const char *c = fd->name; *c; c++) {
                assert_true((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_');
            }
            assert_int_equal(space_schema_field(s, fd->name), (int)f);
            if (fd->type == SPACE_FIELD_NUMERIC) {
                /* resolution is 1 or a power of ten below it; lo, hi on the grid */
                double d = fd->resolution >= 1 ? 0 : round(-log10(fd->resolution));
                assert_true(fabs(fd->resolution - (d == 0 ? 1 : pow(10, -d))) < 1e-15);
                double glo = fd->lo / fd->resolution, ghi = fd->hi / fd->resolution;
                assert_true(fabs(glo - round(glo)) < 1e-9 && fabs(ghi - round(ghi)) < 1e-9);
                assert_true(fd->hi > fd->lo);
                assert_non_null(fd->unit);
                size_t nb = space_field_grid_bins(fd);
                assert_true(nb > 1 && nb <= SPACE_MAX_GRID);
            } else {
                assert_int_equal(fd->type, SPACE_FIELD_CATEGORICAL);
                assert_true(fd->ncats >= 2 && fd->ncats <= 255);
                for (size_t c = 0; c < fd->ncats; c++) {
                    for (const char *p = fd->cats[c]; *p; p++) {
                        assert_true(*p > ' ' && *p < 127 && !(*p >= 'A' && *p <= 'Z') && *p != ',');
                    }
                }
            }
        }
    }
    assert_null(space_schema_find("stroke"));
    assert_null(space_schema_find(""));
    const space_schema *s = space_schema_find("neonatal-bilirubin");
    assert_non_null(s);
    const space_field *tsb = &s->fields[space_schema_field(s, "tsb")];
    assert_string_equal(tsb->unit, "umol/L");
    assert_int_equal(space_field_grid_bins(tsb), 481);
    s = space_schema_find("peds-pneumonia-indicators");
    assert_int_equal(space_field_grid_bins(&s->fields[space_schema_field(s, "pct")]), 10001);
}

/* ---- space_db_new ---- */

static void test_space_db_new_rows_bounds(void **state)
{
    (void)state;
    space_db *db = (space_db *)0x1;
    bg_errbuf eb = {{0}};
    assert_int_equal(space_db_new(&db, "guangzhou", 999, 1, NULL, 0, &eb), BG_ERR_RANGE);
    assert_non_null(strstr(eb.msg, "999"));
    assert_int_equal(space_db_new(&db, "guangzhou", 10000001, 1, NULL, 0, &eb), BG_ERR_RANGE);
    assert_int_equal(space_db_new(&db, "guangzhou", 0, 1, NULL, 0, &eb), BG_ERR_RANGE);
    assert_ptr_equal(db, (space_db *)0x1); /* untouched on failure */
    assert_int_equal(space_db_new(&db, "macau", 1000, 1, NULL, 0, &eb), 0);
    assert_int_equal(space_db_rows(db, "neonatal-bilirubin"), 1000);
    space_db_free(db);
}

static void test_space_db_new_bad_names(void **state)
{
    (void)state;
    space_db *db = NULL;
    bg_errbuf eb = {{0}};
    const char *bad[] = {"stroke-registry", "stroke-registri"};
    assert_int_equal(space_db_new(&db, "zhuhai", 1000, 1, bad, 2, &eb), BG_ERR_NOTFOUND);
    assert_non_null(strstr(eb.msg, "\"stroke-registri\""));
    const char *twice[] = {"liver-cancer", "liver-cancer"};
    assert_int_equal(space_db_new(&db, "zhuhai", 1000, 1, twice, 2, &eb), BG_ERR_INVAL);
    assert_non_null(strstr(eb.msg, "liver-cancer"));
    assert_int_equal(space_db_new(&db, "", 1000, 1, NULL, 0, &eb), BG_ERR_INVAL);
    assert_null(db);
    space_db_free(NULL);
}

static void test_space_db_new_holdings(void **state)
{
    (void)state;
    static const struct {
        const char *city;
        const char *sets[3];
        size_t n;
    } want[] = {
        {"guangzhou",
         {"peds-pneumonia-indicators", "neonatal-bilirubin", "cerebral-infarction"},
         3},
        {"macau", {"peds-pneumonia-indicators", "neonatal-bilirubin", NULL}, 2},
        {"shenzhen", {"stroke-registry", "liver-cancer", NULL}, 2},
        {"hongkong", {"stroke-registry", "liver-cancer", NULL}, 2},
        {"zhuhai", {NULL, NULL, NULL}, 0},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        space_db *db = db_make(want[i].city, 1000, 3);
        assert_int_equal(space_db_count(db), want[i].n);
        for (size_t j = 0; j < want[i].n; j++) {
            assert_string_equal(space_db_schema_at(db, j)->name, want[i].sets[j]);
            assert_int_equal(space_db_rows(db, want[i].sets[j]), 1000);
        }
        assert_null(space_db_schema_at(db, want[i].n));
        assert_int_equal(
            space_db_rows(db, want[i].n == 2 && i > 1 ? "neonatal-bilirubin" : "stroke-registry"),
            0);
        assert_string_equal(space_db_city(db), want[i].city);
        space_db_free(db);
    }
    /* an explicit list, in its order, for any city */
    space_db *db = NULL;
    bg_errbuf eb = {{0}};
    const char *sets[] = {"liver-cancer", "neonatal-bilirubin"};
    assert_int_equal(space_db_new(&db, "zhuhai", 2000, 3, sets, 2, &eb), 0);
    assert_int_equal(space_db_count(db), 2);
    assert_string_equal(space_db_schema_at(db, 0)->name, "liver-cancer");
    assert_int_equal(space_db_rows(db, "neonatal-bilirubin"), 2000);
    assert_int_equal(space_db_rows(db, "stroke-registry"), 0);
    FILE *f = fopen("/dev/null", "w");
    assert_int_equal(space_db_dump_csv(db, "stroke-registry", f), BG_ERR_NOTFOUND);
    fclose(f);
    space_db_free(db);
    /* an empty explicit list holds nothing, even in guangzhou */
    assert_int_equal(space_db_new(&db, "guangzhou", 2000, 3, sets, 0, &eb), 0);
    assert_int_equal(space_db_count(db), 0);
    space_db_free(db);
}

/* ---- determinism ---- */

static void test_space_db_dump_csv_deterministic(void **state)
{
    (void)state;
    const char *sets[] = {"stroke-registry", "peds-pneumonia-indicators"};
    space_db *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
    bg_errbuf eb = {{0}};
    assert_int_equal(space_db_new(&a, "shenzhen", 5000, 42, sets, 2, &eb), 0);
    assert_int_equal(space_db_new(&b, "shenzhen", 5000, 42, sets, 2, &eb), 0);
    assert_int_equal(space_db_new(&c, "hongkong", 5000, 42, sets, 2, &eb), 0);
    assert_int_equal(space_db_new(&d, "shenzhen", 5000, 43, sets, 2, &eb), 0);
    /* the dataset's stream does not depend on which others the city holds */
    assert_int_equal(space_db_new(&e, "shenzhen", 5000, 42, sets + 1, 1, &eb), 0);
    for (size_t i = 0; i < 2; i++) {
        size_t la, lb, lc, ld;
        char *ta = dump(a, sets[i], &la), *tb = dump(b, sets[i], &lb);
        char *tc = dump(c, sets[i], &lc), *td = dump(d, sets[i], &ld);
        assert_int_equal(la, lb);
        assert_memory_equal(ta, tb, la);
        assert_true(lc != la || memcmp(ta, tc, la) != 0);
        assert_true(ld != la || memcmp(ta, td, la) != 0);
        if (i == 1) {
            size_t le;
            char *te = dump(e, sets[i], &le);
            assert_int_equal(la, le);
            assert_memory_equal(ta, te, la);
            free(te);
        }
        free(ta);
        free(tb);
        free(tc);
        free(td);
    }
    space_db_free(a);
    space_db_free(b);
    space_db_free(c);
    space_db_free(d);
    space_db_free(e);
}

#define DIGEST_NEONATAL_MACAU_1000_2024 0x16a7f4c0056c7a29u

/* A digest of a fixed configuration: catches an accidental change of the generator (which
 * would silently change every published example). Update deliberately, with the reason. */
static void test_space_db_dump_csv_digest(void **state)
{
    (void)state;
    space_db *db = db_make("macau", 1000, 2024);
    size_t len;
    char *t = dump(db, "neonatal-bilirubin", &len);
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)t[i]) * 0x100000001b3u;
    }
    /* first data line, for a readable failure */
    const char *nl = strchr(t, '\n');
    print_message("first row: %.*s digest=%016llx\n", (int)(strchr(nl + 1, '\n') - nl - 1), nl + 1,
                  (unsigned long long)h);
    assert_int_equal(h, DIGEST_NEONATAL_MACAU_1000_2024);
    free(t);
    space_db_free(db);
}

/* ---- values ---- */

static void check_frame_grid(const frame *fr)
{
    for (size_t f = 0; f < fr->s->nfields; f++) {
        const space_field *fd = &fr->s->fields[f];
        for (size_t i = 0; i < fr->nrows; i++) {
            double x = fr->v[i * fr->s->nfields + f];
            if (fd->type == SPACE_FIELD_NUMERIC) {
                assert_true(x >= fd->lo && x <= fd->hi);
                double u = x / fd->resolution;
                assert_true(fabs(u - round(u)) < 1e-6);
            } else {
                assert_true(x >= 0 && x < (double)fd->ncats);
            }
        }
    }
}

static void test_space_db_dump_csv_values_on_grid(void **state)
{
    (void)state;
    const char *cities[] = {"guangzhou", "shenzhen"};
    for (size_t c = 0; c < 2; c++) {
        space_db *db = db_make(cities[c], 3000, 9);
        for (size_t i = 0; i < space_db_count(db); i++) {
            frame fr;
            frame_load(&fr, db, space_db_schema_at(db, i)->name);
            assert_int_equal(fr.nrows, 3000);
            check_frame_grid(&fr);
            free(fr.v);
        }
        space_db_free(db);
    }
}

static void test_space_db_new_derived_bands(void **state)
{
    (void)state;
    space_db *db = db_make("guangzhou", 5000, 11);
    frame fr;
    frame_load(&fr, db, "peds-pneumonia-indicators");
    for (size_t i = 0; i < fr.nrows; i++) {
        double a = val(&fr, i, "age_months");
        size_t band = a < 12 ? 0 : a < 36 ? 1 : a < 72 ? 2 : 3;
        assert_int_equal((size_t)val(&fr, i, "age_band"), band);
    }
    free(fr.v);
    frame_load(&fr, db, "neonatal-bilirubin");
    for (size_t i = 0; i < fr.nrows; i++) {
        double ga = val(&fr, i, "gestational_age_weeks");
        assert_int_equal((size_t)val(&fr, i, "ga_band"), ga < 32 ? 0 : ga < 37 ? 1 : 2);
    }
    free(fr.v);
    frame_load(&fr, db, "cerebral-infarction");
    size_t seen[4] = {0};
    for (size_t i = 0; i < fr.nrows; i++) {
        double a = val(&fr, i, "age");
        size_t band = a < 45 ? 0 : a < 65 ? 1 : a < 80 ? 2 : 3;
        assert_int_equal((size_t)val(&fr, i, "age_band"), band);
        seen[band]++;
    }
    for (size_t b = 0; b < 4; b++) {
        assert_true(seen[b] > 0);
    }
    free(fr.v);
    space_db_free(db);
}

static void test_space_db_new_hospitals_per_city(void **state)
{
    (void)state;
    const char *cities[] = {"guangzhou", "macau", "hongkong", "zhuhai"};
    const char *prefix[] = {"guangzhou-", "macau-", "hongkong-", "other-"};
    const char *small[] = {"guangzhou-h4", "macau-h2", "hongkong-h3", "other-h2"};
    const char *sets[] = {"neonatal-bilirubin"};
    for (size_t c = 0; c < 4; c++) {
        space_db *db = NULL;
        bg_errbuf eb = {{0}};
        assert_int_equal(space_db_new(&db, cities[c], 100000, 5, sets, 1, &eb), 0);
        frame fr;
        frame_load(&fr, db, "neonatal-bilirubin");
        const space_field *h = &fr.s->fields[space_schema_field(fr.s, "hospital")];
        size_t nsmall = 0, other = 0;
        size_t small_code = code(fr.s, "hospital", small[c]);
        for (size_t i = 0; i < fr.nrows; i++) {
            size_t hc = (size_t)val(&fr, i, "hospital");
            assert_true(strncmp(h->cats[hc], prefix[c], strlen(prefix[c])) == 0);
            nsmall += hc == small_code;
            other += hc != small_code;
        }
        /* 0.3 % of 100000 = 300; binomial sd ~17 */
        assert_in_range(nsmall, 220, 380);
        assert_true(other > 99000);
        free(fr.v);
        space_db_free(db);
    }
}

/* ---- shapes ---- */

static void test_space_db_new_peds_shapes(void **state)
{
    (void)state;
    space_db *db = db_make("guangzhou", 50000, 1);
    frame fr;
    frame_load(&fr, db, "peds-pneumonia-indicators");
    size_t spn = code(fr.s, "pathogen", "s_pneumoniae"), rsv = code(fr.s, "pathogen", "rsv");
    double crp[2] = {0}, pct[2] = {0}, wbc[2] = {0}, neut[2] = {0};
    size_t n[2] = {0};
    double crp_all = 0;
    size_t crp_below_mean = 0;
    for (size_t i = 0; i < fr.nrows; i++) {
        crp_all += val(&fr, i, "crp");
        size_t p = (size_t)val(&fr, i, "pathogen");
        if (p != spn && p != rsv) {
            continue;
        }
        size_t j = p == spn ? 0 : 1;
        n[j]++;
        crp[j] += val(&fr, i, "crp");
        pct[j] += val(&fr, i, "pct");
        wbc[j] += val(&fr, i, "wbc");
        neut[j] += val(&fr, i, "neutrophil_pct");
    }
    assert_true(n[0] > 1000 && n[1] > 1000);
    assert_true(crp[0] / (double)n[0] > 3 * crp[1] / (double)n[1]);
    assert_true(pct[0] / (double)n[0] > 5 * pct[1] / (double)n[1]);
    assert_true(wbc[0] / (double)n[0] > 1.3 * wbc[1] / (double)n[1]);
    assert_true(neut[0] / (double)n[0] > neut[1] / (double)n[1] + 20);
    /* right skew: most values lie below the mean */
    crp_all /= (double)fr.nrows;
    for (size_t i = 0; i < fr.nrows; i++) {
        crp_below_mean += val(&fr, i, "crp") < crp_all;
    }
    assert_true(crp_below_mean > fr.nrows * 6 / 10);
    free(fr.v);
    space_db_free(db);
}

/* Least-squares slope of (tcb - tsb) on tsb, per device: the meter's bias grows with the level,
 * differently for each device. */
static void test_space_db_new_bilirubin_proportional_bias(void **state)
{
    (void)state;
    space_db *db = db_make("macau", 50000, 1);
    frame fr;
    frame_load(&fr, db, "neonatal-bilirubin");
    double slope[2];
    for (size_t dev = 0; dev < 2; dev++) {
        double sx = 0, sy = 0, sxx = 0, sxy = 0, n = 0;
        for (size_t i = 0; i < fr.nrows; i++) {
            if ((size_t)val(&fr, i, "device") != dev) {
                continue;
            }
            double x = val(&fr, i, "tsb"), y = val(&fr, i, "tcb") - x;
            n++;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        slope[dev] = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    }
    assert_true(slope[0] > 0.02 && slope[0] < 0.12);
    assert_true(slope[1] > 0.09 && slope[1] < 0.2);
    assert_true(slope[1] - slope[0] > 0.04);
    /* TSB peaks on day 3-5: higher at 72-120 h than in the first day */
    double early = 0, peak = 0;
    size_t ne = 0, np = 0;
    for (size_t i = 0; i < fr.nrows; i++) {
        double h = val(&fr, i, "hours_of_life");
        if (h <= 24) {
            early += val(&fr, i, "tsb");
            ne++;
        } else if (h >= 72 && h <= 120) {
            peak += val(&fr, i, "tsb");
            np++;
        }
    }
    assert_true(ne > 100 && np > 100);
    assert_true(peak / (double)np > 1.5 * early / (double)ne);
    free(fr.v);
    space_db_free(db);
}

static void test_space_db_new_outcome_shapes(void **state)
{
    (void)state;
    space_db *db = db_make("hongkong", 50000, 1);
    frame fr;
    frame_load(&fr, db, "stroke-registry");
    double mrs_lo = 0, mrs_hi = 0;
    size_t nlo = 0, nhi = 0, haem = 0;
    size_t haem_code = code(fr.s, "stroke_type", "haemorrhagic");
    for (size_t i = 0; i < fr.nrows; i++) {
        double nihss = val(&fr, i, "nihss");
        haem += (size_t)val(&fr, i, "stroke_type") == haem_code;
        if (nihss < 5) {
            mrs_lo += val(&fr, i, "mrs_90d");
            nlo++;
        } else if (nihss > 15) {
            mrs_hi += val(&fr, i, "mrs_90d");
            nhi++;
        }
    }
    assert_true(nlo > 1000 && nhi > 1000);
    assert_true(mrs_hi / (double)nhi > mrs_lo / (double)nlo + 1.5);
    assert_in_range(haem, 8000, 12000); /* ~20 % */
    free(fr.v);

    frame_load(&fr, db, "liver-cancer");
    double surv[5] = {0};
    size_t ns[5] = {0};
    for (size_t i = 0; i < fr.nrows; i++) {
        size_t st = (size_t)val(&fr, i, "bclc_stage");
        surv[st] += val(&fr, i, "survival_months");
        ns[st]++;
    }
    for (size_t st = 1; st < 5; st++) {
        assert_true(ns[st] > 0);
        assert_true(surv[st] / (double)ns[st] < surv[st - 1] / (double)ns[st - 1]);
    }
    free(fr.v);
    space_db_free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_schema_all_wellformed),
        cmocka_unit_test(test_space_db_new_rows_bounds),
        cmocka_unit_test(test_space_db_new_bad_names),
        cmocka_unit_test(test_space_db_new_holdings),
        cmocka_unit_test(test_space_db_dump_csv_deterministic),
        cmocka_unit_test(test_space_db_dump_csv_digest),
        cmocka_unit_test(test_space_db_dump_csv_values_on_grid),
        cmocka_unit_test(test_space_db_new_derived_bands),
        cmocka_unit_test(test_space_db_new_hospitals_per_city),
        cmocka_unit_test(test_space_db_new_peds_shapes),
        cmocka_unit_test(test_space_db_new_bilirubin_proportional_bias),
        cmocka_unit_test(test_space_db_new_outcome_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
