/* gateway/limits.c: rate limits shared by all workers. Per firm identity (SPIFFE id): a token
 * bucket (limits.firm_rps, limits.firm_burst) and a count of requests in flight across every
 * connection and worker (limits.firm_max_streams); per source address: a bucket for
 * applications (POST /v1/firms, limits.apply_per_minute). Over a limit the request gets 429
 * rate_limited with Retry-After (handlers.c). Not for: per-connection limits (nghttp2's
 * SETTINGS_MAX_CONCURRENT_STREAMS, server.c) or contract budgets (contracts.c). */
#include "gateway/gw_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Each table is bounded: a key seen for the first time when the table is full takes the place
 * of the least recently used key with nothing in flight. A bucket that idled long enough to be
 * full again loses nothing by going; only an attacker holding more than TABLE_CAP identities
 * (certificates from a city CA) or addresses could reset someone's bucket early. */
#define TABLE_CAP 4096
#define TABLE_HEADS 8192 /* power of two */
#define NONE UINT32_MAX
/* A token is TOKEN units, chosen so that both kinds of rate are whole units per microsecond:
 * r a second is r * 60000 units/us, m a minute is m * 1000 units/us. A bucket then refills by
 * exactly dt_us * rate units: integer arithmetic, no drift. */
#define TOKEN 60000000000ULL
#define PER_SECOND 60000ULL
#define PER_MINUTE 1000ULL

struct gw_limit_slot {
    char key[256];
    uint64_t tokens; /* units (TOKEN a request) */
    uint64_t at_us;  /* last refill, and last use (for eviction) */
    uint32_t inflight;
    uint32_t next; /* chain in its hash head; NONE at the end */
    uint32_t head; /* the head it is chained in */
};

typedef struct table {
    pthread_mutex_t mu;
    gw_limit_slot *slots; /* TABLE_CAP */
    uint32_t heads[TABLE_HEADS];
    uint32_t n;
} table;

struct gw_limits {
    table firms;
    table addrs;
};

static uint32_t hash_key(const char *k)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *k != 0; k++) {
        h = (h ^ (uint8_t)*k) * 16777619u;
    }
    return h & (TABLE_HEADS - 1);
}

static int table_init(table *t)
{
    t->slots = calloc(TABLE_CAP, sizeof(*t->slots));
    if (t->slots == NULL) {
        return BG_ERR_NOMEM;
    }
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t->slots);
        return BG_ERR_NOMEM;
    }
    for (size_t i = 0; i < TABLE_HEADS; i++) {
        t->heads[i] = NONE;
    }
    t->n = 0;
    return 0;
}

static void table_dispose(table *t)
{
    pthread_mutex_destroy(&t->mu);
    free(t->slots);
}

static void unchain(table *t, uint32_t i)
{
    uint32_t *p = &t->heads[t->slots[i].head];
    while (*p != i) {
        assert(*p != NONE);
        p = &t->slots[*p].next;
    }
    *p = t->slots[i].next;
}

/* The slot of |key|, made (with a full bucket of |burst| tokens) when new. NULL when the key
 * does not fit or every slot has requests in flight. Caller holds t->mu. */
static gw_limit_slot *table_get(table *t, const char *key, uint64_t now_us, uint32_t burst)
{
    if (strlen(key) >= sizeof(t->slots[0].key)) {
        return NULL;
    }
    uint32_t h = hash_key(key);
    for (uint32_t i = t->heads[h]; i != NONE; i = t->slots[i].next) {
        if (strcmp(t->slots[i].key, key) == 0) {
            return &t->slots[i];
        }
    }
    uint32_t i;
    if (t->n < TABLE_CAP) {
        i = t->n++;
    } else { /* least recently used with nothing in flight */
        i = NONE;
        for (uint32_t j = 0; j < TABLE_CAP; j++) {
            if (t->slots[j].inflight == 0 && (i == NONE || t->slots[j].at_us < t->slots[i].at_us)) {
                i = j;
            }
        }
        if (i == NONE) {
            return NULL;
        }
        unchain(t, i);
    }
    gw_limit_slot *s = &t->slots[i];
    memset(s, 0, sizeof(*s));
    bg_strlcpy(s->key, key, sizeof(s->key));
    s->tokens = (uint64_t)burst * TOKEN;
    s->at_us = now_us;
    s->head = h;
    s->next = t->heads[h];
    t->heads[h] = i;
    return s;
}

/* Refills |s| at |rate| units/us up to |burst| tokens and takes one: true, or false with the
 * seconds until one is there (rounded up, at least 1). */
static bool bucket_take(gw_limit_slot *s, uint64_t now_us, uint64_t rate, uint32_t burst,
                        uint32_t *retry_after_s)
{
    const uint64_t cap = (uint64_t)burst * TOKEN; /* <= 6e17 */
    assert(rate > 0);
    if (now_us > s->at_us) {
        /* Compared before multiplying, so no overflow however long it idled. */
        uint64_t missing = cap > s->tokens ? cap - s->tokens : 0;
        uint64_t dt = now_us - s->at_us;
        s->tokens = dt > missing / rate ? cap : s->tokens + dt * rate;
        if (s->tokens > cap) {
            s->tokens = cap;
        }
    }
    s->at_us = now_us;
    if (s->tokens >= TOKEN) {
        s->tokens -= TOKEN;
        return true;
    }
    uint64_t wait_us = (TOKEN - s->tokens + rate - 1) / rate;
    uint64_t secs = (wait_us + 999999) / 1000000;
    *retry_after_s = secs < 1 ? 1 : secs > 3600 ? 3600 : (uint32_t)secs;
    return false;
}

/* The tables, created on first use (see gw_server.limits). */
static struct gw_limits *limits_of(gw_server *srv)
{
    struct gw_limits *l = atomic_load_explicit(&srv->limits, memory_order_acquire);
    if (l != NULL) {
        return l;
    }
    struct gw_limits *mine = calloc(1, sizeof(*mine));
    if (mine == NULL) {
        return NULL;
    }
    if (table_init(&mine->firms) != 0) {
        free(mine);
        return NULL;
    }
    if (table_init(&mine->addrs) != 0) {
        table_dispose(&mine->firms);
        free(mine);
        return NULL;
    }
    if (!atomic_compare_exchange_strong_explicit(&srv->limits, &l, mine, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        table_dispose(&mine->addrs);
        table_dispose(&mine->firms);
        free(mine);
        return l; /* another thread's */
    }
    return mine;
}

gw_limit_kind gw_limits_firm_admit(gw_server *srv, const char *spiffe_id, uint64_t now_us,
                                   gw_limit_slot **slot, uint32_t *retry_after_s)
{
    const conf_limits *c = &srv->cfg->limits;
    *slot = NULL;
    if (c->firm_rps == 0 && c->firm_max_streams == 0) {
        return GW_LIMIT_OK;
    }
    struct gw_limits *l = limits_of(srv);
    if (l == NULL) {
        return GW_LIMIT_OK; /* out of memory: do not refuse service for it */
    }
    gw_limit_kind k = GW_LIMIT_OK;
    pthread_mutex_lock(&l->firms.mu);
    gw_limit_slot *s = table_get(&l->firms, spiffe_id, now_us, c->firm_burst);
    if (s == NULL) {
        /* Every slot busy (TABLE_CAP firms with requests in flight): this firm goes unlimited
         * rather than refused; memory stays bounded either way. */
    } else if (c->firm_max_streams != 0 && s->inflight >= c->firm_max_streams) {
        *retry_after_s = 1;
        k = GW_LIMIT_FIRM_STREAMS;
    } else if (c->firm_rps != 0 &&
               !bucket_take(s, now_us, c->firm_rps * PER_SECOND, c->firm_burst,
                            retry_after_s)) {
        k = GW_LIMIT_FIRM_RATE;
    } else {
        s->at_us = now_us;
        s->inflight++;
        *slot = s;
    }
    pthread_mutex_unlock(&l->firms.mu);
    return k;
}

void gw_limits_firm_release(gw_server *srv, gw_limit_slot *slot)
{
    struct gw_limits *l = atomic_load_explicit(&srv->limits, memory_order_acquire);
    if (slot == NULL || l == NULL) {
        return;
    }
    pthread_mutex_lock(&l->firms.mu);
    assert(slot->inflight > 0);
    slot->inflight--;
    pthread_mutex_unlock(&l->firms.mu);
}

uint32_t gw_limits_firm_inflight(gw_server *srv, const char *spiffe_id)
{
    struct gw_limits *l = atomic_load_explicit(&srv->limits, memory_order_acquire);
    uint32_t n = 0;
    if (l == NULL) {
        return 0;
    }
    pthread_mutex_lock(&l->firms.mu);
    for (uint32_t i = l->firms.heads[hash_key(spiffe_id)]; i != NONE; i = l->firms.slots[i].next) {
        if (strcmp(l->firms.slots[i].key, spiffe_id) == 0) {
            n = l->firms.slots[i].inflight;
            break;
        }
    }
    pthread_mutex_unlock(&l->firms.mu);
    return n;
}

gw_limit_kind gw_limits_apply_admit(gw_server *srv, const char *addr, uint64_t now_us,
                                    uint32_t *retry_after_s)
{
    uint32_t per_min = srv->cfg->limits.apply_per_minute;
    if (per_min == 0) {
        return GW_LIMIT_OK;
    }
    /* The host part: "1.2.3.4:5678" -> "1.2.3.4", "::1:5678" -> "::1" (conn->addr's shape). */
    char host[64];
    bg_strlcpy(host, addr, sizeof(host));
    char *colon = strrchr(host, ':');
    if (colon != NULL && colon != host) {
        *colon = 0;
    }
    struct gw_limits *l = limits_of(srv);
    if (l == NULL) {
        return GW_LIMIT_OK;
    }
    gw_limit_kind k = GW_LIMIT_OK;
    pthread_mutex_lock(&l->addrs.mu);
    gw_limit_slot *s = table_get(&l->addrs, host, now_us, per_min);
    if (s != NULL && !bucket_take(s, now_us, per_min * PER_MINUTE, per_min, retry_after_s)) {
        k = GW_LIMIT_APPLY;
    }
    pthread_mutex_unlock(&l->addrs.mu);
    return k;
}

void gw_limits_dispose(gw_server *srv)
{
    struct gw_limits *l = atomic_exchange(&srv->limits, NULL);
    if (l == NULL) {
        return;
    }
    table_dispose(&l->addrs);
    table_dispose(&l->firms);
    free(l);
}
