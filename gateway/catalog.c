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
static json_t *reaches_json(gw_worker *w);

static json_t *own_catalog(gw_server *srv, gw_worker *w)
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
    if (j != NULL && w != NULL) {
        json_object_set_new(j, "reaches", reaches_json(w));
    }
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
    gw_stream_respond_json(s, 200, own_catalog(s->conn->w->srv, s->conn->w));
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
            l->answer = own_catalog(w->srv, w);
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

/* ---- routes learned from the peers' catalogs ------------------------------------------------ */

/* What this gateway reaches, for its catalog: its peers (1 hop), its configured routes (at
 * least 2) and what it learned (as learned), each city once with its fewest hops. */
static json_t *reaches_json(gw_worker *w)
{
    const conf_gateway *cfg = w->gen->cfg;
    json_t *o = json_object();
    for (size_t i = 0; i < cfg->npeers; i++) {
        json_object_set_new(o, cfg->peers[i].name, json_integer(1));
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (json_object_get(o, cfg->routes[i].city) == NULL) {
            json_object_set_new(o, cfg->routes[i].city, json_integer(2));
        }
    }
    const char *cities[64];
    size_t n = w->learned != NULL ? route_learned_cities(w->learned, cities, 64) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *via[1];
        uint32_t hops[1];
        if (json_object_get(o, cities[i]) == NULL &&
            route_learned_next_hops(w->learned, cities[i], via, hops, 1) == 1) {
            json_object_set_new(o, cities[i], json_integer(hops[0]));
        }
    }
    return o;
}

typedef struct learn_leg {
    gw_leg leg;
    gw_worker *w;
    char peer[64];
    struct learn_leg *next; /* the worker's in-flight list */
} learn_leg;

/* A peer's catalog arrived: what it reaches becomes routes through it. */
static void learn_done(gw_leg *leg, int status, const char *ctype_or_code, const char *msg,
                       const uint8_t *body, size_t len)
{
    learn_leg *l = (learn_leg *)(void *)leg;
    (void)ctype_or_code;
    (void)msg;
    if (status == 200 && l->w->learned != NULL) {
        json_t *j = json_loadb((const char *)body, len, 0, NULL);
        json_t *r = json_object_get(j, "reaches");
        const char *cities[64];
        uint32_t hops[64];
        size_t n = 0;
        const char *city;
        json_t *v;
        json_object_foreach(r, city, v)
        {
            if (n < 64 && json_is_integer(v) && json_integer_value(v) > 0 &&
                json_integer_value(v) < ROUTE_LEARNED_MAX_HOPS) {
                cities[n] = city;
                hops[n++] = (uint32_t)json_integer_value(v);
            }
        }
        if (json_is_object(r)) {
            route_learned_update(l->w->learned, l->peer, cities, hops, n);
        }
        json_decref(j);
    }
    /* unlink from the worker's list and free */
    learn_leg **pp = (learn_leg **)&l->w->learn_legs;
    while (*pp != NULL && *pp != l) {
        pp = &(*pp)->next;
    }
    if (*pp == l) {
        *pp = l->next;
    }
    free(l);
}

/* Asks every connected peer for its catalog; returns false when some peer was not connected
 * (the next round then comes sooner). */
static bool learn_round(gw_worker *w)
{
    const conf_gateway *cfg = w->gen->cfg;
    bool all = true;
    for (size_t i = 0; i < cfg->npeers && i < w->npeers; i++) {
        if (gw_client_get_state(w->peers[i]) != GW_CLIENT_CONNECTED) {
            all = false;
            continue;
        }
        learn_leg *l = calloc(1, sizeof(*l));
        if (l == NULL) {
            return false;
        }
        l->w = w;
        bg_strlcpy(l->peer, cfg->peers[i].name, sizeof(l->peer));
        l->leg.done = learn_done;
        bg_strlcpy(l->leg.path, "/fed/v1/catalog", sizeof(l->leg.path));
        gw_worker_new_request_id(w, l->leg.request_id);
        bg_strlcpy(l->leg.hops, w->srv->cfg->city, sizeof(l->leg.hops));
        bg_strlcpy(l->leg.dest, l->peer, sizeof(l->leg.dest));
        bg_strlcpy(l->leg.ctype, "application/json", sizeof(l->leg.ctype));
        l->next = w->learn_legs;
        w->learn_legs = l;
        gw_client_leg(w->peers[i], &l->leg, NULL, 0);
    }
    return all;
}

/* The worker's learning timer: a round, then the next in GW_LEARN_INTERVAL_MS. */
static void on_learn(evutil_socket_t fd, short what, void *arg)
{
    gw_worker *w = arg;
    (void)fd;
    (void)what;
    w->learn_armed = false;
    if (w->draining) {
        return;
    }
    uint32_t ms = learn_round(w) ? GW_LEARN_INTERVAL_MS : 500;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    w->learn_armed = evtimer_add(&w->learn_ev, &tv) == 0;
    gw_worker_run_deferred(w);
}

int gw_catalog_worker_init(gw_worker *w)
{
    w->learned = route_learned_new(w->srv->cfg->city);
    if (w->learned == NULL) {
        return BG_ERR_NOMEM;
    }
    evtimer_assign(&w->learn_ev, w->base, on_learn, w);
    struct timeval tv = {0, 300 * 1000}; /* soon after start: sessions are up by then */
    w->learn_armed = evtimer_add(&w->learn_ev, &tv) == 0;
    return 0;
}

void gw_catalog_worker_dispose(gw_worker *w)
{
    if (w->learn_armed) {
        event_del(&w->learn_ev);
        w->learn_armed = false;
    }
    while (w->learn_legs != NULL) {
        learn_leg *l = w->learn_legs;
        w->learn_legs = l->next;
        gw_leg_cancel(&l->leg);
        free(l);
    }
    route_learned_free(w->learned);
    w->learned = NULL;
}
