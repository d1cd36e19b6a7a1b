/* gateway/catalog.c: what the federation holds. /fed/v1/catalog answers a peer with this
 * city's datasets (name, approximate rows, fields) and this gateway's certificate (the public
 * key other providers mask quantile grids with, trust/secagg.h). /v1/catalog answers a client
 * with every reachable city's catalog, fetched in parallel, and each owning city's contract
 * terms shown next to the caller's own terms for the same canonical meaning.
 * Not for: routing decisions (routing/table.h) or contracts (contracts.c). */
#include "gateway/gw_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conf/profile.h"
#include "space/data.h"

#define CATALOG_MAX_CITIES 32

static json_t *field_json(const space_field *f)
{
    if (f->type == SPACE_FIELD_CATEGORICAL) {
        json_t *cats = json_array();
        for (size_t i = 0; i < f->ncats; i++) {
            json_array_append_new(cats, json_string(f->cats[i]));
        }
        return json_pack("{s:s,s:s,s:o}", "name", f->name, "type", "categorical", "categories",
                         cats);
    }
    return json_pack("{s:s,s:s,s:s,s:f,s:f,s:f}", "name", f->name, "type", "numeric", "unit",
                     f->unit != NULL ? f->unit : "", "resolution", f->resolution, "min", f->lo,
                     "max", f->hi);
}

/* Approximate size: rounded to two significant digits, so a catalog is no census. */
static json_int_t approx(uint64_t n)
{
    uint64_t scale = 1;
    while (n / scale >= 100) {
        scale *= 10;
    }
    return (json_int_t)((n + scale / 2) / scale * scale);
}

/* This city's catalog: datasets with fields and approximate rows, and the gateway certificate
 * (base64 DER). New reference or NULL. */
static json_t *own_catalog(gw_server *srv)
{
    json_t *ds = json_array();
    for (size_t i = 0; srv->space != NULL && i < space_db_count(srv->space); i++) {
        const space_schema *sc = space_db_schema_at(srv->space, i);
        json_t *fields = json_array();
        for (size_t f = 0; f < sc->nfields; f++) {
            json_array_append_new(fields, field_json(&sc->fields[f]));
        }
        json_array_append_new(ds, json_pack("{s:s,s:s,s:I,s:o}", "name", sc->name,
                                            "description", sc->description, "approx_rows",
                                            approx(space_db_rows(srv->space, sc->name)),
                                            "fields", fields));
    }
    json_t *j = json_pack("{s:s,s:o}", "city", srv->cfg->city, "datasets", ds);
    bg_buf der;
    bg_buf_init(&der);
    if (j != NULL && trust_tls_cert_der(srv->tls, &der) == 0 && der.len < 65536) {
        char *b64 = malloc(der.len / 3 * 4 + 8);
        if (b64 != NULL) {
            EVP_EncodeBlock((unsigned char *)b64, der.data, (int)der.len);
            json_object_set_new(j, "gateway_cert", json_string(b64));
            free(b64);
        }
    }
    bg_buf_dispose(&der);
    return j;
}

void gw_catalog_fed(gw_stream *s)
{
    gw_stream_respond_json(s, 200, own_catalog(s->conn->w->srv));
}

/* ---- the federation's catalog for a client --------------------------------------------------- */

typedef struct cat_run cat_run;
typedef struct cat_leg {
    gw_leg leg;
    cat_run *run;
    char city[64];
    json_t *answer; /* the city's catalog, or an error status */
} cat_leg;

struct cat_run {
    gw_stream *s;
    cat_leg legs[CATALOG_MAX_CITIES];
    size_t nlegs, pending;
};

static void cat_run_free(void *p)
{
    cat_run *run = p;
    for (size_t i = 0; i < run->nlegs; i++) {
        gw_leg_cancel(&run->legs[i].leg);
        json_decref(run->legs[i].answer);
    }
    free(run);
}

/* The terms of |owner|'s profile for |kind|, each with the caller's terms of the same
 * canonical meaning (|home| may be NULL). */
static json_t *terms_json(const conf_term *terms, size_t n, const conf_term *mine, size_t nmine)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *canon = json_array();
        json_t *yours = json_array();
        for (size_t c = 0; c < terms[i].ncanonical; c++) {
            json_array_append_new(canon, json_string(terms[i].canonical[c]));
        }
        for (size_t m = 0; m < nmine; m++) {
            bool same = false;
            for (size_t c = 0; c < terms[i].ncanonical && !same; c++) {
                for (size_t d = 0; d < mine[m].ncanonical && !same; d++) {
                    same = strcmp(terms[i].canonical[c], mine[m].canonical[d]) == 0;
                }
            }
            if (same) {
                json_array_append_new(yours, json_string(mine[m].term));
            }
        }
        json_array_append_new(a, json_pack("{s:s,s:o,s:o}", "term", terms[i].term, "canonical",
                                           canon, "in_your_terms", yours));
    }
    return a;
}

static json_t *city_terms(const gw_server *srv, const char *city)
{
    const conf_profile *p = gw_profile_of(srv, city);
    const conf_profile *h = gw_profile_of(srv, srv->cfg->city);
    if (p == NULL) {
        return json_null();
    }
    return json_pack(
        "{s:s,s:s,s:s,s:o,s:o,s:{s:i,s:i,s:b}}", "language", p->language, "law", p->law,
        "your_profile", h != NULL ? h->city : "", "purposes",
        terms_json(p->purposes, p->npurposes, h ? h->purposes : NULL, h ? h->npurposes : 0),
        "operations",
        terms_json(p->operations, p->noperations, h ? h->operations : NULL,
                   h ? h->noperations : 0),
        "rules", "min_cell_size", (int)p->min_cell_size, "max_duration_days",
        (int)p->max_duration_days, "model_training", p->model_training);
}

static void cat_answer(cat_run *run)
{
    gw_stream *s = run->s;
    gw_server *srv = s->conn->w->srv;
    json_t *cities = json_object();
    size_t ok = 0;
    for (size_t i = 0; i < run->nlegs; i++) {
        cat_leg *l = &run->legs[i];
        json_t *c = l->answer != NULL ? json_incref(l->answer)
                                      : json_pack("{s:s}", "status", "unreachable");
        if (json_object_get(c, "datasets") != NULL) {
            json_object_del(c, "gateway_cert"); /* for gateways, not clients */
            json_object_del(c, "city");
            json_object_set_new(c, "status", json_string("ok"));
            json_object_set_new(c, "route", json_string(l->leg.route));
            ok++;
        }
        json_object_set_new(c, "terms", city_terms(srv, l->city));
        json_object_set_new(cities, l->city, c);
    }
    gw_stream_respond_json(s, 200,
                           json_pack("{s:s,s:o,s:b}", "city", srv->cfg->city, "cities", cities,
                                     "partial", ok < run->nlegs));
}

static void cat_leg_done(gw_leg *leg, int status, const char *ctype_or_code, const char *msg,
                         const uint8_t *body, size_t len)
{
    cat_leg *l = (cat_leg *)(void *)leg;
    cat_run *run = l->run;
    if (status == 200) {
        l->answer = json_loadb((const char *)body, len, 0, NULL);
        if (!json_is_object(l->answer)) {
            json_decref(l->answer);
            l->answer = json_pack("{s:s,s:s}", "status", "error", "message",
                                  "malformed catalog");
        }
    } else {
        l->answer = json_pack("{s:s,s:s,s:s}", "status", "error", "code",
                              status == 0 ? ctype_or_code : "bad_gateway", "message",
                              status == 0 && msg != NULL ? msg : "the city answered an error");
    }
    if (--run->pending == 0) {
        run->s->ctx = NULL;
        run->s->ctx_free = NULL;
        cat_answer(run);
        cat_run_free(run);
    }
}

static bool have_city(const cat_run *run, const char *city)
{
    for (size_t i = 0; i < run->nlegs; i++) {
        if (strcmp(run->legs[i].city, city) == 0) {
            return true;
        }
    }
    return false;
}

static void add_city(cat_run *run, const char *city)
{
    if (run->nlegs < CATALOG_MAX_CITIES && !have_city(run, city)) {
        bg_strlcpy(run->legs[run->nlegs++].city, city, sizeof(run->legs[0].city));
    }
}

void gw_catalog_client(gw_stream *s)
{
    gw_worker *w = s->conn->w;
    const conf_gateway *cfg = w->gen->cfg;
    cat_run *run = calloc(1, sizeof(*run));
    if (run == NULL) {
        gw_stream_error(s, 500, "internal", "out of memory");
        return;
    }
    run->s = s;
    add_city(run, w->srv->cfg->city);
    for (size_t i = 0; i < cfg->npeers; i++) {
        add_city(run, cfg->peers[i].name);
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        add_city(run, cfg->routes[i].city);
    }
    s->ctx = run;
    s->ctx_free = cat_run_free;
    run->pending = run->nlegs + 1;
    for (size_t i = 0; i < run->nlegs; i++) {
        cat_leg *l = &run->legs[i];
        l->run = run;
        l->leg.done = cat_leg_done;
        const conf_peer *next = NULL;
        if (i == 0) { /* this city */
            l->answer = own_catalog(w->srv);
            bg_strlcpy(l->leg.route, w->srv->cfg->city, sizeof(l->leg.route));
            run->pending--;
            continue;
        }
        if ((next = gw_route_pick(w, l->city, NULL)) == NULL) {
            l->answer = json_pack("{s:s,s:s}", "status", "error", "code", "no_route");
            run->pending--;
            continue;
        }
        size_t pi = (size_t)(next - cfg->peers);
        bg_strlcpy(l->leg.path, "/fed/v1/catalog", sizeof(l->leg.path));
        bg_strlcpy(l->leg.request_id, s->request_id, sizeof(l->leg.request_id));
        bg_strlcpy(l->leg.hops, w->srv->cfg->city, sizeof(l->leg.hops));
        bg_strlcpy(l->leg.dest, l->city, sizeof(l->leg.dest));
        bg_strlcpy(l->leg.ctype, "application/json", sizeof(l->leg.ctype));
        gw_client_leg(w->peers[pi], &l->leg, NULL, 0);
    }
    if (--run->pending == 0) {
        s->ctx = NULL;
        s->ctx_free = NULL;
        cat_answer(run);
        cat_run_free(run);
    }
}
