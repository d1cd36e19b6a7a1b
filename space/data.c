/* space/data.c: the schemas of the reference datasets and their seeded synthetic generation
 * into columns, plus the CSV dump. Every row is invented from a PRNG: the shapes (skewed lab
 * values, bacterial pathogens with higher inflammation markers, a transcutaneous meter whose
 * bias grows with serum bilirubin, outcomes that worsen with severity and age) only make the
 * statistics worth computing. There are no missing values: every field of every row is set.
 * Not for: answering queries (exec.c). */
#include "space/data.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "space/data_int.h"

/* ---- schemas ------------------------------------------------------------------------------ */

#define NUM(n, u, res, l, h, d)                                                                    \
    {                                                                                              \
        .name = (n), .type = SPACE_FIELD_NUMERIC, .unit = (u), .resolution = (res), .lo = (l),     \
        .hi = (h), .description = (d)                                                              \
    }
#define CAT(n, c, d)                                                                               \
    {                                                                                              \
        .name = (n), .type = SPACE_FIELD_CATEGORICAL, .cats = (c),                                 \
        .ncats = sizeof(c) / sizeof((c)[0]), .description = (d)                                    \
    }

static const char *const sex_cats[] = {"f", "m"};
static const char *const peds_band_cats[] = {"0-11m", "12-35m", "36-71m", "72m+"};
static const char *const adult_band_cats[] = {"18-44", "45-64", "65-79", "80plus"};
static const char *const pathogen_cats[] = {"rsv",          "influenza",  "mycoplasma",
                                            "s_pneumoniae", "adenovirus", "unknown"};
static const char *const ga_band_cats[] = {"lt32", "32-36", "37plus"};
static const char *const device_cats[] = {"jm-105", "bilichek"};
static const char *const stroke_type_cats[] = {"ischaemic", "haemorrhagic"};
static const char *const hbv_cats[] = {"positive", "negative"};
static const char *const bclc_cats[] = {"0", "a", "b", "c", "d"};
static const char *const toast_cats[] = {"large_artery", "cardioembolic", "small_vessel", "other",
                                         "undetermined"};
static const char *const yes_no_cats[] = {"yes", "no"};

/* One list for every dataset and city, so results of different cities merge cell by cell.
 * Each city uses its own range (city_info_of()); the last hospital of each range is small
 * (about 0.3 % of rows), so grouping by hospital yields cells below any sensible k. */
static const char *const hospital_cats[] = {
    "guangzhou-h1", "guangzhou-h2", "guangzhou-h3", "guangzhou-h4", "macau-h1",
    "macau-h2",     "shenzhen-h1",  "shenzhen-h2",  "shenzhen-h3",  "hongkong-h1",
    "hongkong-h2",  "hongkong-h3",  "other-h1",     "other-h2",
};
#define HOSPITAL_DESC "treating hospital (synthetic code; the last of each city's is small)"

enum {
    PP_AGE_MONTHS,
    PP_AGE_BAND,
    PP_SEX,
    PP_PATHOGEN,
    PP_CRP,
    PP_PCT,
    PP_WBC,
    PP_NEUT,
    PP_HOSPITAL,
    PP_NFIELDS
};
static const space_field peds_fields[PP_NFIELDS] = {
    [PP_AGE_MONTHS] = NUM("age_months", "months", 1, 1, 180, "age at admission"),
    [PP_AGE_BAND] = CAT("age_band", peds_band_cats, "age band derived from age_months"),
    [PP_SEX] = CAT("sex", sex_cats, "sex"),
    [PP_PATHOGEN] = CAT("pathogen", pathogen_cats, "identified pathogen"),
    [PP_CRP] = NUM("crp", "mg/L", 0.1, 0, 300, "C-reactive protein"),
    [PP_PCT] = NUM("pct", "ng/mL", 0.01, 0, 100, "procalcitonin"),
    [PP_WBC] = NUM("wbc", "10^9/L", 0.1, 0, 60, "white blood cell count"),
    [PP_NEUT] = NUM("neutrophil_pct", "%", 0.1, 0, 100, "neutrophils, percent of white cells"),
    [PP_HOSPITAL] = CAT("hospital", hospital_cats, HOSPITAL_DESC),
};

enum { NB_GA, NB_GA_BAND, NB_HOURS, NB_TSB, NB_TCB, NB_DEVICE, NB_HOSPITAL, NB_NFIELDS };
static const space_field neonatal_fields[NB_NFIELDS] = {
    [NB_GA] = NUM("gestational_age_weeks", "weeks", 1, 24, 42, "gestational age at birth"),
    [NB_GA_BAND] = CAT("ga_band", ga_band_cats, "gestational age band"),
    [NB_HOURS] = NUM("hours_of_life", "h", 1, 1, 336, "age at the paired measurement"),
    [NB_TSB] = NUM("tsb", "umol/L", 1, 20, 500, "total serum bilirubin (reference)"),
    [NB_TCB] = NUM("tcb", "umol/L", 1, 20, 500, "transcutaneous bilirubin (meter)"),
    [NB_DEVICE] = CAT("device", device_cats, "transcutaneous meter model"),
    [NB_HOSPITAL] = CAT("hospital", hospital_cats, HOSPITAL_DESC),
};

enum { SR_AGE, SR_AGE_BAND, SR_SEX, SR_TYPE, SR_NIHSS, SR_OTD, SR_MRS, SR_HOSPITAL, SR_NFIELDS };
static const space_field stroke_fields[SR_NFIELDS] = {
    [SR_AGE] = NUM("age", "years", 1, 18, 100, "age at onset"),
    [SR_AGE_BAND] = CAT("age_band", adult_band_cats, "age band derived from age"),
    [SR_SEX] = CAT("sex", sex_cats, "sex"),
    [SR_TYPE] = CAT("stroke_type", stroke_type_cats, "stroke type"),
    [SR_NIHSS] = NUM("nihss", "points", 1, 0, 42, "NIH stroke scale at admission"),
    [SR_OTD] = NUM("onset_to_door_min", "min", 1, 10, 1440, "symptom onset to hospital door"),
    [SR_MRS] = NUM("mrs_90d", "points", 1, 0, 6, "modified Rankin scale at 90 days"),
    [SR_HOSPITAL] = CAT("hospital", hospital_cats, HOSPITAL_DESC),
};

enum { LC_AGE, LC_AGE_BAND, LC_SEX, LC_HBV, LC_AFP, LC_BCLC, LC_SURV, LC_HOSPITAL, LC_NFIELDS };
static const space_field liver_fields[LC_NFIELDS] = {
    [LC_AGE] = NUM("age", "years", 1, 18, 100, "age at diagnosis"),
    [LC_AGE_BAND] = CAT("age_band", adult_band_cats, "age band derived from age"),
    [LC_SEX] = CAT("sex", sex_cats, "sex"),
    [LC_HBV] = CAT("hbv_status", hbv_cats, "hepatitis B surface antigen"),
    [LC_AFP] = NUM("afp", "ng/mL", 1, 0, 20000, "alpha-fetoprotein at diagnosis"),
    [LC_BCLC] = CAT("bclc_stage", bclc_cats, "Barcelona Clinic Liver Cancer stage"),
    [LC_SURV] = NUM("survival_months", "months", 1, 0, 120, "survival, censored at 120"),
    [LC_HOSPITAL] = CAT("hospital", hospital_cats, HOSPITAL_DESC),
};

enum {
    CI_AGE,
    CI_AGE_BAND,
    CI_SEX,
    CI_NIHSS,
    CI_TOAST,
    CI_THROMB,
    CI_DTN,
    CI_MRS,
    CI_HOSPITAL,
    CI_NFIELDS
};
static const space_field cerebral_fields[CI_NFIELDS] = {
    [CI_AGE] = NUM("age", "years", 1, 18, 100, "age at onset"),
    [CI_AGE_BAND] = CAT("age_band", adult_band_cats, "age band derived from age"),
    [CI_SEX] = CAT("sex", sex_cats, "sex"),
    [CI_NIHSS] = NUM("nihss", "points", 1, 0, 42, "NIH stroke scale at admission"),
    [CI_TOAST] = CAT("toast_subtype", toast_cats, "TOAST aetiology"),
    [CI_THROMB] = CAT("thrombolysis", yes_no_cats, "intravenous thrombolysis given"),
    [CI_DTN] = NUM("door_to_needle_min", "min", 1, 10, 300,
                   "door to needle (not thrombolysed: door to treatment decision)"),
    [CI_MRS] = NUM("mrs_90d", "points", 1, 0, 6, "modified Rankin scale at 90 days"),
    [CI_HOSPITAL] = CAT("hospital", hospital_cats, HOSPITAL_DESC),
};

#define SCHEMA(n, f, d)                                                                            \
    {                                                                                              \
        .name = (n), .description = (d), .fields = (f), .nfields = sizeof(f) / sizeof((f)[0])      \
    }
static const space_schema schema_peds = SCHEMA(
    "peds-pneumonia-indicators", peds_fields,
    "children admitted with community-acquired pneumonia: pathogen and inflammation markers");
static const space_schema schema_neonatal =
    SCHEMA("neonatal-bilirubin", neonatal_fields,
           "paired transcutaneous and serum bilirubin of newborns, for meter agreement");
static const space_schema schema_stroke =
    SCHEMA("stroke-registry", stroke_fields, "acute stroke admissions: severity, delays, outcome");
static const space_schema schema_liver =
    SCHEMA("liver-cancer", liver_fields, "hepatocellular carcinoma: AFP, stage, survival");
static const space_schema schema_cerebral = SCHEMA(
    "cerebral-infarction", cerebral_fields, "ischaemic stroke: aetiology, thrombolysis, outcome");

static const space_schema *const all_schemas[] = {
    &schema_peds, &schema_neonatal, &schema_stroke, &schema_liver, &schema_cerebral,
};
#define NSCHEMAS (sizeof(all_schemas) / sizeof(all_schemas[0]))

const space_schema *space_schema_find(const char *name)
{
    for (size_t i = 0; i < NSCHEMAS; i++) {
        if (strcmp(all_schemas[i]->name, name) == 0) {
            return all_schemas[i];
        }
    }
    return NULL;
}

const space_schema *const *space_schema_all(size_t *n)
{
    *n = NSCHEMAS;
    return all_schemas;
}

/* ---- grid values -------------------------------------------------------------------------- */

int space_resolution_decimals(double resolution)
{
    if (resolution >= 1.0) {
        return 0;
    }
    return (int)lround(-log10(resolution));
}

double space_units_value(int64_t units, double resolution)
{
    int d = space_resolution_decimals(resolution);
    if (d == 0) {
        return (double)units * resolution;
    }
    /* units / 10^d is correctly rounded, so it is the double a parser makes of the decimal;
     * units * 0.1 is not (3 * 0.1 != 0.3). */
    double p = 1.0;
    for (int i = 0; i < d; i++) {
        p *= 10.0;
    }
    return (double)units / p;
}

/* ---- PRNG: xoshiro256** seeded through splitmix64 (Blackman and Vigna) ----------------------- */

typedef struct rng {
    uint64_t s[4];
    double spare;
    bool has_spare;
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (; *s != 0; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3u;
    }
    return h;
}

static void rng_seed(rng *r, uint64_t seed, const char *city, const char *dataset)
{
    uint64_t x = seed;
    x = splitmix64(&x) ^ fnv1a(city) ^ rotl64(fnv1a(dataset), 29);
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&x);
    }
    r->has_spare = false;
    r->spare = 0;
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

/* Uniform in (0,1): never 0, so log() is safe. */
static double rng_unif(rng *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

/* Standard normal (Box-Muller, both values used). */
static double rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double rad = sqrt(-2.0 * log(rng_unif(r)));
    double ang = 6.283185307179586 * rng_unif(r);
    r->spare = rad * sin(ang);
    r->has_spare = true;
    return rad * cos(ang);
}

/* Index drawn with weights |w| (need not sum to 1). */
static uint8_t rng_pick(rng *r, const double *w, size_t n)
{
    double tot = 0;
    for (size_t i = 0; i < n; i++) {
        tot += w[i];
    }
    double u = rng_unif(r) * tot;
    for (size_t i = 0; i + 1 < n; i++) {
        if (u < w[i]) {
            return (uint8_t)i;
        }
        u -= w[i];
    }
    return (uint8_t)(n - 1);
}

/* ---- generation --------------------------------------------------------------------------- */

typedef struct city_info {
    double shift;       /* in [-1, 1]: a small city-specific shift of some distributions */
    uint8_t hosp_first; /* its range in hospital_cats */
    uint8_t hosp_n;
} city_info;

static city_info city_info_of(const char *city)
{
    static const struct {
        const char *name;
        uint8_t first, n;
    } known[] = {
        {"guangzhou", 0, 4},
        {"macau", 4, 2},
        {"shenzhen", 6, 3},
        {"hongkong", 9, 3},
    };
    city_info ci = {.hosp_first = 12, .hosp_n = 2};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(known[i].name, city) == 0) {
            ci.hosp_first = known[i].first;
            ci.hosp_n = known[i].n;
        }
    }
    ci.shift = (double)(fnv1a(city) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
    return ci;
}

/* The small hospital takes 0.3 % of rows; the others share the rest 3:2:1 (or 2:1, or all). */
static uint8_t pick_hospital(rng *r, const city_info *ci)
{
    double w[8];
    size_t big = (size_t)ci->hosp_n - 1;
    assert(ci->hosp_n >= 2 && ci->hosp_n <= 8);
    double tot = (double)(big * (big + 1)) / 2.0;
    for (size_t j = 0; j < big; j++) {
        w[j] = 0.997 * (double)(big - j) / tot;
    }
    w[big] = 0.003;
    return (uint8_t)(ci->hosp_first + rng_pick(r, w, big + 1));
}

/* Stores |x| rounded to the field's grid and clipped to [lo, hi]. */
static void put_num(space_table *t, size_t f, size_t row, double x)
{
    const space_field *fd = &t->schema->fields[f];
    space_column *c = &t->cols[f];
    assert(c->num != NULL);
    double g = (x - fd->lo) / fd->resolution;
    uint16_t i;
    if (!(g > 0)) { /* also NaN */
        i = 0;
    } else if (g >= (double)(c->nbins - 1)) {
        i = (uint16_t)(c->nbins - 1);
    } else {
        i = (uint16_t)llround(g);
    }
    c->num[row] = i;
}

static void put_cat(space_table *t, size_t f, size_t row, uint8_t code)
{
    uint8_t *col = t->cols[f].cat;
    assert(col != NULL && code < t->schema->fields[f].ncats);
    col[row] = code;
}

/* The stored value (after rounding and clipping), so derived fields agree with it. */
static double got_num(const space_table *t, size_t f, size_t row)
{
    const space_column *c = &t->cols[f];
    return c->vals[c->num[row]];
}

static uint8_t adult_band(double age)
{
    return (uint8_t)(age < 45 ? 0 : age < 65 ? 1 : age < 80 ? 2 : 3);
}

static void gen_peds(space_table *t, rng *r, const city_info *ci)
{
    enum { RSV, FLU, MYCO, SPN, ADENO, UNK };
    static const double crp_med[] = {8, 10, 22, 70, 18, 12};
    static const double pct_med[] = {0.12, 0.2, 0.25, 2.5, 0.4, 0.3};
    static const double wbc_med[] = {9.5, 7.5, 10, 17, 12, 10.5};
    static const double neut_mean[] = {42, 55, 62, 78, 60, 55};
    for (size_t i = 0; i < t->nrows; i++) {
        put_num(t, PP_AGE_MONTHS, i, exp(log(28.0) + 0.05 * ci->shift + 0.75 * rng_normal(r)));
        double age = got_num(t, PP_AGE_MONTHS, i);
        put_cat(t, PP_AGE_BAND, i, (uint8_t)(age < 12 ? 0 : age < 36 ? 1 : age < 72 ? 2 : 3));
        put_cat(t, PP_SEX, i, rng_unif(r) < 0.53 ? 1 : 0);
        double w[6] = {0.24, 0.14, 0.18, 0.12, 0.08, 0.24};
        if (age < 24) {
            w[RSV] *= 2.2;
            w[MYCO] *= 0.3;
        } else if (age >= 60) {
            w[RSV] *= 0.3;
            w[MYCO] *= 2.2;
        }
        uint8_t p = rng_pick(r, w, 6);
        put_cat(t, PP_PATHOGEN, i, p);
        double sev = rng_normal(r); /* shared severity makes the markers correlate */
        put_num(t, PP_CRP, i,
                crp_med[p] * (1 + 0.06 * ci->shift) *
                    exp(0.95 * (0.6 * sev + 0.8 * rng_normal(r))));
        put_num(t, PP_PCT, i, pct_med[p] * exp(1.1 * (0.6 * sev + 0.8 * rng_normal(r))));
        put_num(t, PP_WBC, i, wbc_med[p] * exp(0.33 * (0.5 * sev + 0.87 * rng_normal(r))));
        put_num(t, PP_NEUT, i, neut_mean[p] + 6 * sev + 10 * rng_normal(r));
        put_cat(t, PP_HOSPITAL, i, pick_hospital(r, ci));
    }
}

static void gen_neonatal(space_table *t, rng *r, const city_info *ci)
{
    for (size_t i = 0; i < t->nrows; i++) {
        double u = rng_unif(r);
        put_num(t, NB_GA, i,
                u < 0.1 ? 24 + 13 * pow(rng_unif(r), 0.6) : 38.8 + 1.2 * rng_normal(r));
        double ga = got_num(t, NB_GA, i);
        put_cat(t, NB_GA_BAND, i, (uint8_t)(ga < 32 ? 0 : ga < 37 ? 1 : 2));
        put_num(t, NB_HOURS, i, exp(log(60.0) + 0.75 * rng_normal(r)));
        double h = got_num(t, NB_HOURS, i);
        /* Physiological jaundice peaks on day 3-5, later and higher when preterm. */
        double peak = ga < 37 ? 120 : 96;
        double curve = 35 + 190 * (h / peak) * exp(1 - h / peak);
        double ga_factor = 1 + 0.035 * fmax(0, 38 - ga);
        put_num(t, NB_TSB, i,
                curve * ga_factor * (1 + 0.04 * ci->shift) * exp(0.28 * rng_normal(r)));
        double tsb = got_num(t, NB_TSB, i);
        uint8_t dev = rng_unif(r) < 0.6 ? 0 : 1;
        put_cat(t, NB_DEVICE, i, dev);
        /* The meter's bias grows with the serum level (proportional bias), differently by
         * device, so Bland-Altman has a slope to find. */
        double bias = dev == 0 ? -6 + 0.06 * tsb : 4 + 0.14 * tsb;
        put_num(t, NB_TCB, i, tsb + bias + 3 * ci->shift + (10 + 0.06 * tsb) * rng_normal(r));
        put_cat(t, NB_HOSPITAL, i, pick_hospital(r, ci));
    }
}

static void gen_stroke(space_table *t, rng *r, const city_info *ci)
{
    for (size_t i = 0; i < t->nrows; i++) {
        put_num(t, SR_AGE, i, 68 + 1.5 * ci->shift + 13 * rng_normal(r));
        double age = got_num(t, SR_AGE, i);
        put_cat(t, SR_AGE_BAND, i, adult_band(age));
        put_cat(t, SR_SEX, i, rng_unif(r) < 0.57 ? 1 : 0);
        bool haem = rng_unif(r) < 0.2 + 0.03 * ci->shift;
        put_cat(t, SR_TYPE, i, haem ? 1 : 0);
        put_num(t, SR_NIHSS, i, exp(log(6.0) + (haem ? 0.3 : 0) + 0.75 * rng_normal(r)) - 1);
        double nihss = got_num(t, SR_NIHSS, i);
        put_num(t, SR_OTD, i, exp(log(170.0) + 0.9 * rng_normal(r)));
        put_num(t, SR_MRS, i,
                0.4 + 0.16 * nihss + 0.035 * (age - 65) + (haem ? 0.7 : 0) + 0.9 * rng_normal(r));
        put_cat(t, SR_HOSPITAL, i, pick_hospital(r, ci));
    }
}

static void gen_liver(space_table *t, rng *r, const city_info *ci)
{
    static const double stage_w[] = {0.10, 0.30, 0.25, 0.28, 0.07};
    static const double afp_mult[] = {1, 2, 6, 15, 25};
    static const double surv_mean[] = {96, 60, 30, 12, 4};
    for (size_t i = 0; i < t->nrows; i++) {
        put_num(t, LC_AGE, i, 58 + ci->shift + 11 * rng_normal(r));
        put_cat(t, LC_AGE_BAND, i, adult_band(got_num(t, LC_AGE, i)));
        put_cat(t, LC_SEX, i, rng_unif(r) < 0.76 ? 1 : 0);
        put_cat(t, LC_HBV, i, rng_unif(r) < 0.72 + 0.05 * ci->shift ? 0 : 1);
        uint8_t st = rng_pick(r, stage_w, 5);
        put_cat(t, LC_BCLC, i, st);
        /* A third of tumours do not secrete AFP; the rest have a heavy right tail. */
        double afp = rng_unif(r) < 0.35 ? 5 * exp(0.6 * rng_normal(r))
                                        : 20 * afp_mult[st] * exp(1.8 * rng_normal(r));
        put_num(t, LC_AFP, i, afp);
        put_num(t, LC_SURV, i, -surv_mean[st] * log(rng_unif(r)));
        put_cat(t, LC_HOSPITAL, i, pick_hospital(r, ci));
    }
}

static void gen_cerebral(space_table *t, rng *r, const city_info *ci)
{
    static const double toast_w[] = {0.30, 0.22, 0.28, 0.05, 0.15};
    static const double nihss_med[] = {7, 10, 3, 5, 5};
    for (size_t i = 0; i < t->nrows; i++) {
        put_num(t, CI_AGE, i, 66 + ci->shift + 12 * rng_normal(r));
        double age = got_num(t, CI_AGE, i);
        put_cat(t, CI_AGE_BAND, i, adult_band(age));
        put_cat(t, CI_SEX, i, rng_unif(r) < 0.6 ? 1 : 0);
        uint8_t toast = rng_pick(r, toast_w, 5);
        put_cat(t, CI_TOAST, i, toast);
        put_num(t, CI_NIHSS, i, exp(log(nihss_med[toast] + 1) + 0.7 * rng_normal(r)) - 1);
        double nihss = got_num(t, CI_NIHSS, i);
        bool lysed = rng_unif(r) < (nihss >= 4 && nihss <= 25 ? 0.35 : 0.08);
        put_cat(t, CI_THROMB, i, lysed ? 0 : 1);
        put_num(t, CI_DTN, i, exp(log(lysed ? 48.0 : 70.0) + 0.45 * rng_normal(r)));
        put_num(t, CI_MRS, i,
                0.3 + 0.17 * nihss + 0.03 * (age - 65) - (lysed ? 0.5 : 0) + 0.9 * rng_normal(r));
        put_cat(t, CI_HOSPITAL, i, pick_hospital(r, ci));
    }
}

typedef void (*gen_fn)(space_table *t, rng *r, const city_info *ci);

static gen_fn generator_of(const space_schema *s)
{
    if (s == &schema_peds) {
        return gen_peds;
    }
    if (s == &schema_neonatal) {
        return gen_neonatal;
    }
    if (s == &schema_stroke) {
        return gen_stroke;
    }
    if (s == &schema_liver) {
        return gen_liver;
    }
    assert(s == &schema_cerebral);
    return gen_cerebral;
}

static int table_init(space_table *t, const space_schema *s, size_t rows)
{
    t->schema = s;
    t->nrows = rows;
    t->cols = calloc(s->nfields, sizeof(*t->cols));
    if (t->cols == NULL) {
        return BG_ERR_NOMEM;
    }
    for (size_t f = 0; f < s->nfields; f++) {
        const space_field *fd = &s->fields[f];
        space_column *c = &t->cols[f];
        if (fd->type == SPACE_FIELD_CATEGORICAL) {
            assert(fd->ncats > 0 && fd->ncats <= 256);
            c->cat = malloc(rows);
            if (c->cat == NULL) {
                return BG_ERR_NOMEM;
            }
            continue;
        }
        c->nbins = space_field_grid_bins(fd);
        assert(c->nbins > 0 && c->nbins <= SPACE_MAX_GRID);
        c->units_lo = llround(fd->lo / fd->resolution);
        c->num = malloc(rows * sizeof(uint16_t));
        c->vals = malloc(c->nbins * sizeof(double));
        if (c->num == NULL || c->vals == NULL) {
            return BG_ERR_NOMEM;
        }
        for (size_t i = 0; i < c->nbins; i++) {
            c->vals[i] = space_units_value(c->units_lo + (int64_t)i, fd->resolution);
        }
    }
    return 0;
}

static void table_dispose(space_table *t)
{
    if (t->cols == NULL) {
        return;
    }
    for (size_t f = 0; f < t->schema->nfields; f++) {
        free(t->cols[f].num);
        free(t->cols[f].cat);
        free(t->cols[f].vals);
    }
    free(t->cols);
    t->cols = NULL;
}

/* ---- the db ------------------------------------------------------------------------------- */

static const char *const holdings_guangzhou[] = {"peds-pneumonia-indicators", "neonatal-bilirubin",
                                                 "cerebral-infarction"};
static const char *const holdings_macau[] = {"peds-pneumonia-indicators", "neonatal-bilirubin"};
static const char *const holdings_pearl_east[] = {"stroke-registry", "liver-cancer"};

static const char *const *default_holdings(const char *city, size_t *n)
{
    if (strcmp(city, "guangzhou") == 0) {
        *n = 3;
        return holdings_guangzhou;
    }
    if (strcmp(city, "macau") == 0) {
        *n = 2;
        return holdings_macau;
    }
    if (strcmp(city, "shenzhen") == 0 || strcmp(city, "hongkong") == 0) {
        *n = 2;
        return holdings_pearl_east;
    }
    *n = 0;
    return NULL;
}

static int unknown_dataset(const char *name, bg_errbuf *eb)
{
    char list[256] = "";
    size_t off = 0;
    for (size_t i = 0; i < NSCHEMAS; i++) {
        int n =
            snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", all_schemas[i]->name);
        if (n < 0 || (size_t)n >= sizeof(list) - off) {
            break;
        }
        off += (size_t)n;
    }
    return bg_errf(eb, BG_ERR_NOTFOUND, "unknown dataset \"%s\"; known: %s", name, list);
}

int space_db_new(space_db **out, const char *city, uint64_t rows, uint64_t seed,
                 const char *const *datasets, size_t ndatasets, bg_errbuf *eb)
{
    if (city == NULL || city[0] == 0) {
        return bg_errf(eb, BG_ERR_INVAL, "data space needs a city name");
    }
    if (rows < SPACE_DB_ROWS_MIN || rows > SPACE_DB_ROWS_MAX) {
        return bg_errf(eb, BG_ERR_RANGE, "rows %llu outside %u..%u", (unsigned long long)rows,
                       SPACE_DB_ROWS_MIN, SPACE_DB_ROWS_MAX);
    }
    if (datasets == NULL) {
        datasets = default_holdings(city, &ndatasets);
    }
    /* Every name is known and distinct before it is kept, so at most NSCHEMAS are. */
    const space_schema *chosen[NSCHEMAS];
    size_t nchosen = 0;
    for (size_t i = 0; i < ndatasets; i++) {
        const space_schema *s = space_schema_find(datasets[i]);
        if (s == NULL) {
            return unknown_dataset(datasets[i], eb);
        }
        for (size_t j = 0; j < nchosen; j++) {
            if (chosen[j] == s) {
                return bg_errf(eb, BG_ERR_INVAL, "dataset \"%s\" listed twice", s->name);
            }
        }
        chosen[nchosen++] = s;
    }

    int rv = BG_ERR_NOMEM;
    space_db *db = calloc(1, sizeof(*db));
    if (db == NULL) {
        goto fail_nomem;
    }
    db->city = strdup(city);
    db->tables = calloc(nchosen > 0 ? nchosen : 1, sizeof(*db->tables));
    if (db->city == NULL || db->tables == NULL || space_hist_new(&db->hist, nchosen) != 0) {
        goto fail_free;
    }
    city_info ci = city_info_of(city);
    for (size_t i = 0; i < nchosen; i++) {
        space_table *t = &db->tables[i];
        db->ntables = i + 1;
        if ((rv = table_init(t, chosen[i], (size_t)rows)) != 0) {
            goto fail_free;
        }
        rng r;
        rng_seed(&r, seed, city, chosen[i]->name);
        generator_of(chosen[i])(t, &r, &ci);
    }
    *out = db;
    return 0;

fail_free:
    space_db_free(db);
fail_nomem:
    return bg_errf(eb, rv, "out of memory generating %llu rows for %s", (unsigned long long)rows,
                   city);
}

void space_db_free(space_db *db)
{
    if (db == NULL) {
        return;
    }
    space_hist_free(db->hist);
    for (size_t i = 0; i < db->ntables; i++) {
        table_dispose(&db->tables[i]);
    }
    free(db->tables);
    free(db->city);
    free(db);
}

size_t space_db_count(const space_db *db)
{
    return db->ntables;
}

const space_schema *space_db_schema_at(const space_db *db, size_t i)
{
    return i < db->ntables ? db->tables[i].schema : NULL;
}

const char *space_db_city(const space_db *db)
{
    return db->city;
}

const space_table *space_db_table(const space_db *db, const char *name, size_t *idx)
{
    for (size_t i = 0; i < db->ntables; i++) {
        if (strcmp(db->tables[i].schema->name, name) == 0) {
            if (idx != NULL) {
                *idx = i;
            }
            return &db->tables[i];
        }
    }
    return NULL;
}

uint64_t space_db_rows(const space_db *db, const char *dataset)
{
    const space_table *t = space_db_table(db, dataset, NULL);
    return t != NULL ? t->nrows : 0;
}

/* ---- CSV ---------------------------------------------------------------------------------- */

/* Writes |units| * 10^-|decimals| as a decimal into |p|; returns the end. Integer arithmetic,
 * so the text is exact whatever printf would round to. */
static char *put_units(char *p, int64_t units, int decimals)
{
    uint64_t u = units < 0 ? (uint64_t)0 - (uint64_t)units : (uint64_t)units;
    char tmp[24];
    size_t n = 0;
    if (units < 0) {
        *p++ = '-';
    }
    /* digits from the right, the point after |decimals| of them, at least one digit before it */
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
        if ((int)n == decimals) {
            tmp[n++] = '.';
        }
    } while (u > 0 || (decimals > 0 && (int)n < decimals + 2));
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}

int space_db_dump_csv(const space_db *db, const char *dataset, FILE *out)
{
    const space_table *t = space_db_table(db, dataset, NULL);
    if (t == NULL) {
        return BG_ERR_NOTFOUND;
    }
    const space_schema *s = t->schema;
    int dec[16];
    assert(s->nfields <= sizeof(dec) / sizeof(dec[0]));
    for (size_t f = 0; f < s->nfields; f++) {
        dec[f] = space_resolution_decimals(s->fields[f].resolution);
        fprintf(out, "%s%s", f ? "," : "", s->fields[f].name);
    }
    fputc('\n', out);
    /* a line holds at most 16 fields of SPACE_NAME_MAX or 24-character numbers */
    char line[16 * (SPACE_NAME_MAX + 2) + 2];
    for (size_t i = 0; i < t->nrows; i++) {
        char *p = line;
        for (size_t f = 0; f < s->nfields; f++) {
            const space_column *c = &t->cols[f];
            if (f > 0) {
                *p++ = ',';
            }
            if (c->cat != NULL) {
                const char *name = s->fields[f].cats[c->cat[i]];
                size_t len = strlen(name);
                memcpy(p, name, len);
                p += len;
            } else {
                p = put_units(p, c->units_lo + c->num[i], dec[f]);
            }
        }
        *p++ = '\n';
        fwrite(line, 1, (size_t)(p - line), out);
    }
    return ferror(out) ? BG_ERR_IO : 0;
}
