/* gateway/authz.c: who may call what. One table of endpoint + method -> the roles admitted,
 * deny by default, consulted at dispatch for every request (docs/api.md mirrors it); and the
 * process-wide set of revoked identities, whose requests, handshakes and open connections are
 * refused. Not for: authenticating (TLS does that, trust/tls.c), checking which gateways are
 * configured peers (handlers.c), contracts and usage control (contracts.c). */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

/* ---- the table ---------------------------------------------------------------------------- */

/* Who a caller is, as bits: its role in this city or in another one, and whether it came on
 * a `local` listener (an operator's own loopback port). A caller without a federation
 * identity (no certificate, or a local listener without client_identity) has no role bit. */
enum {
    P_LOCAL = 1u << 0,
    P_FIRM = 1u << 1, /* of this city */
    P_REGULATOR = 1u << 2,
    P_ADMIN = 1u << 3,
    P_GATEWAY = 1u << 4,
    P_FIRM_OTHER = 1u << 5, /* of another city */
    P_REGULATOR_OTHER = 1u << 6,
    P_ADMIN_OTHER = 1u << 7,
    P_GATEWAY_OTHER = 1u << 8,
    P_ANYONE = 1u << 15, /* matches every caller, anonymous included */
};
#define P_THIS_CITY (P_FIRM | P_REGULATOR | P_ADMIN | P_GATEWAY)

typedef struct rule {
    gw_route_id route;
    const char *method; /* "GET" admits HEAD as well */
    /* What follows the route's prefix: "" nothing, "*" anything, otherwise literally with
     * "{id}" standing for one non-empty path segment. */
    const char *sub;
    unsigned who;
    const char *why; /* who may, said when refusing */
} rule;

/* Why each line admits whom:
 * - /v1/queries, /v1/catalog, /v1/contracts: firms of this city only. A firm's home gateway
 *   vouches for it to the other cities (it signs its contracts and sends its queries on as
 *   x-baygate-requester), so a firm of another city goes through its own gateway.
 * - the ledger: this city's regulator, read-only (only GET rows exist).
 * - onboarding: applying (POST /v1/firms) is open, limited per source address; an application
 *   id is a 128-bit bearer secret, so whoever holds it may read its status; deciding on it is
 *   for this city's admin; renewing is for the firm itself (firms.c checks that the certificate
 *   is the firm's current one), and the CRL is public.
 * - /fed/v1/...: gateways of other cities; handlers.c then requires a configured peer. */
static const rule rules[] = {
    {GW_ROUTE_HEALTHZ, "GET", "", P_ANYONE, "anyone"},
    {GW_ROUTE_READYZ, "GET", "", P_LOCAL | P_THIS_CITY,
     "a local listener, or any identity of this city"},
    {GW_ROUTE_METRICS, "GET", "", P_LOCAL | P_THIS_CITY,
     "a local listener, or any identity of this city"},
    {GW_ROUTE_QUERIES, "POST", "", P_FIRM, "firms of this city"},
    {GW_ROUTE_CATALOG, "GET", "", P_FIRM, "firms of this city"},
    {GW_ROUTE_CONTRACTS, "GET", "*", P_FIRM, "firms of this city"},
    {GW_ROUTE_CONTRACTS, "POST", "*", P_FIRM, "firms of this city"},
    {GW_ROUTE_CONTRACTS, "DELETE", "*", P_FIRM, "firms of this city"},
    {GW_ROUTE_LEDGER, "GET", "*", P_REGULATOR, "the regulator of this city (read-only)"},
    {GW_ROUTE_FIRMS, "POST", "", P_ANYONE, "anyone"},
    {GW_ROUTE_FIRMS, "GET", "/{id}", P_ANYONE, "anyone holding the application id"},
    {GW_ROUTE_FIRMS, "POST", "/{id}/approve", P_ADMIN, "the admin of this city"},
    {GW_ROUTE_FIRMS, "POST", "/{id}/reject", P_ADMIN, "the admin of this city"},
    {GW_ROUTE_FIRMS, "POST", "/{id}/suspend", P_ADMIN, "the admin of this city"},
    {GW_ROUTE_FIRMS, "POST", "/{id}/revoke", P_ADMIN, "the admin of this city"},
    {GW_ROUTE_FIRMS, "POST", "/{id}/reinstate", P_ADMIN, "the admin of this city"},
    {GW_ROUTE_FIRMS, "POST", "/{id}/renew", P_FIRM, "the firm itself, with its current certificate"},
    {GW_ROUTE_CRL, "GET", "", P_ANYONE, "anyone"},
    {GW_ROUTE_FED_QUERY, "POST", "", P_GATEWAY_OTHER, "configured peer gateways"},
    {GW_ROUTE_FED_CATALOG, "POST", "", P_GATEWAY_OTHER, "configured peer gateways"},
    {GW_ROUTE_FED_CONTRACTS, "POST", "*", P_GATEWAY_OTHER, "configured peer gateways"},
    {GW_ROUTE_FED_WITNESS, "POST", "", P_GATEWAY_OTHER, "configured peer gateways"},
};

/* True when |sub| (ended by NUL or '?') fits |pat| (see rule.sub). */
static bool sub_matches(const char *pat, const char *sub)
{
    if (strcmp(pat, "*") == 0) {
        return true;
    }
    while (*pat != 0) {
        if (strncmp(pat, "{id}", 4) == 0) {
            size_t n = strcspn(sub, "/?");
            if (n == 0) {
                return false;
            }
            sub += n;
            pat += 4;
        } else if (*sub == *pat && *sub != '?') {
            sub++;
            pat++;
        } else {
            return false;
        }
    }
    return *sub == 0 || *sub == '?';
}

static bool method_matches(const char *want, const char *method)
{
    return strcmp(want, method) == 0 || (strcmp(want, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* The caller as P_* bits. */
static unsigned principal(const trust_identity *id, bool local_listener, const char *self_city)
{
    unsigned p = local_listener ? P_LOCAL : 0;
    if (id == NULL || !id->present || !id->verified || id->city[0] == 0) {
        return p; /* anonymous, or not a federation identity: no role */
    }
    bool self = strcmp(id->city, self_city) == 0;
    static const struct {
        const char *role;
        unsigned self, other;
    } roles[] = {{"firm", P_FIRM, P_FIRM_OTHER},
                 {"regulator", P_REGULATOR, P_REGULATOR_OTHER},
                 {"admin", P_ADMIN, P_ADMIN_OTHER},
                 {"gateway", P_GATEWAY, P_GATEWAY_OTHER}};
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (strcmp(id->role, roles[i].role) == 0) {
            return p | (self ? roles[i].self : roles[i].other);
        }
    }
    return p; /* a role nobody admits */
}

gw_authz_result gw_authz_check(gw_route_id route, const char *method, const char *subpath,
                               const trust_identity *id, bool local_listener,
                               const char *self_city, const char **why)
{
    const rule *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        const rule *r = &rules[i];
        if (r->route != route || !sub_matches(r->sub, subpath != NULL ? subpath : "")) {
            continue;
        }
        path_known = true;
        if (method_matches(r->method, method)) {
            found = r;
            break;
        }
    }
    if (found == NULL) {
        if (why != NULL) {
            *why = path_known ? "method not allowed" : "no such endpoint";
        }
        return path_known ? GW_AUTHZ_NO_METHOD : GW_AUTHZ_NO_PATH;
    }
    if ((found->who & P_ANYONE) != 0 ||
        (found->who & principal(id, local_listener, self_city)) != 0) {
        return GW_AUTHZ_ALLOW;
    }
    if (why != NULL) {
        *why = found->why;
    }
    return GW_AUTHZ_DENY;
}

bool gw_authz_allowed(gw_route_id route, const char *method, const char *subpath,
                      const trust_identity *id, bool local_listener, const char *self_city,
                      const char **why)
{
    return gw_authz_check(route, method, subpath, id, local_listener, self_city, why) ==
           GW_AUTHZ_ALLOW;
}

/* ---- revoked identities ------------------------------------------------------------------ */

/* Sorted by SPIFFE id for bsearch; every request of an identified caller looks here, while
 * changes are rare, hence the rwlock, and |count| lets an empty set cost one atomic load. */
typedef struct revoked_entry {
    char *spiffe_id;
    char *serial_hex; /* "" when not given */
} revoked_entry;

struct gw_revoked {
    pthread_rwlock_t mu;
    revoked_entry *v;
    size_t n, cap;
    atomic_size_t count;
};

/* The set, created on first use; NULL only when |create| is false and there is none, or out
 * of memory. Two threads creating it at once: the loser frees its copy. */
static struct gw_revoked *revoked_set(gw_server *srv, bool create)
{
    struct gw_revoked *r = atomic_load_explicit(&srv->revoked, memory_order_acquire);
    if (r != NULL || !create) {
        return r;
    }
    struct gw_revoked *mine = calloc(1, sizeof(*mine));
    if (mine == NULL) {
        return NULL;
    }
    if (pthread_rwlock_init(&mine->mu, NULL) != 0) {
        free(mine);
        return NULL;
    }
    atomic_init(&mine->count, 0);
    if (!atomic_compare_exchange_strong_explicit(&srv->revoked, &r, mine, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        pthread_rwlock_destroy(&mine->mu);
        free(mine);
        return r; /* set by the winner */
    }
    return mine;
}

static int cmp_entry(const void *key, const void *elem)
{
    return strcmp(key, ((const revoked_entry *)elem)->spiffe_id);
}

/* Index of |spiffe_id| in r->v, or where it would go (|*found| says which). Caller locks. */
static size_t revoked_find(const struct gw_revoked *r, const char *spiffe_id, bool *found)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_entry(spiffe_id, &r->v[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    *found = false;
    return lo;
}

bool gw_identity_revoked(gw_server *srv, const char *spiffe_id)
{
    struct gw_revoked *r = revoked_set(srv, false);
    if (r == NULL || spiffe_id == NULL || spiffe_id[0] == 0 ||
        atomic_load_explicit(&r->count, memory_order_acquire) == 0) {
        return false;
    }
    bool found;
    pthread_rwlock_rdlock(&r->mu);
    (void)revoked_find(r, spiffe_id, &found);
    pthread_rwlock_unlock(&r->mu);
    return found;
}

/* A job on one worker's loop: close the connections of a newly revoked identity. */
typedef struct close_job {
    gw_job job;
    gw_worker *w;
    char spiffe_id[256];
} close_job;

static void close_job_deliver(gw_job *j)
{
    close_job *c = (close_job *)(void *)j;
    size_t n = gw_conn_close_identity(c->w, c->spiffe_id);
    if (n > 0) {
        bg_log(BG_LOG_WARN, "worker=%u msg=\"closed connections of a revoked identity\" "
                            "identity=\"%s\" connections=%zu",
               c->w->idx, c->spiffe_id, n);
    }
    free(c);
}

static void close_job_discard(gw_job *j)
{
    free(j);
}

int gw_revoke_identity(gw_server *srv, const char *spiffe_id, const char *serial_hex)
{
    char city[64], role[32];
    if (spiffe_id == NULL || strlen(spiffe_id) >= sizeof(((trust_identity *)0)->spiffe_id) ||
        trust_spiffe_parse(spiffe_id, city, sizeof(city), role, sizeof(role)) != 0) {
        return BG_ERR_INVAL;
    }
    struct gw_revoked *r = revoked_set(srv, true);
    char *id = strdup(spiffe_id);
    char *serial = strdup(serial_hex != NULL ? serial_hex : "");
    if (r == NULL || id == NULL || serial == NULL) {
        free(id);
        free(serial);
        return BG_ERR_NOMEM;
    }
    bool found;
    pthread_rwlock_wrlock(&r->mu);
    size_t at = revoked_find(r, spiffe_id, &found);
    if (found) { /* again, maybe naming another certificate: keep the latest for the logs */
        free(r->v[at].serial_hex);
        r->v[at].serial_hex = serial;
        free(id);
    } else {
        if (r->n == r->cap) {
            size_t cap = r->cap != 0 ? r->cap * 2 : 16;
            revoked_entry *v = realloc(r->v, cap * sizeof(*v));
            if (v == NULL) {
                pthread_rwlock_unlock(&r->mu);
                free(id);
                free(serial);
                return BG_ERR_NOMEM;
            }
            r->v = v;
            r->cap = cap;
        }
        memmove(&r->v[at + 1], &r->v[at], (r->n - at) * sizeof(r->v[0]));
        r->v[at].spiffe_id = id;
        r->v[at].serial_hex = serial;
        r->n++;
        atomic_store_explicit(&r->count, r->n, memory_order_release);
    }
    pthread_rwlock_unlock(&r->mu);
    bg_log(BG_LOG_WARN, "msg=\"identity revoked\" identity=\"%s\" serial=%s", spiffe_id,
           serial_hex != NULL && serial_hex[0] ? serial_hex : "-");
    /* Open connections of that identity go now, on whichever worker holds them. A worker that
     * cannot get its job (out of memory) still refuses every request of them at dispatch. */
    for (size_t i = 0; srv->workers != NULL && i < srv->nworkers; i++) {
        gw_worker *w = &srv->workers[i];
        if (w->base == NULL) {
            continue; /* not started */
        }
        close_job *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            continue;
        }
        c->job.deliver = close_job_deliver;
        c->job.discard = close_job_discard;
        c->w = w;
        bg_strlcpy(c->spiffe_id, spiffe_id, sizeof(c->spiffe_id));
        gw_worker_post(w, &c->job);
    }
    return 0;
}

void gw_unrevoke_identity(gw_server *srv, const char *spiffe_id)
{
    struct gw_revoked *r = revoked_set(srv, false);
    if (r == NULL || spiffe_id == NULL) {
        return;
    }
    bool found;
    pthread_rwlock_wrlock(&r->mu);
    size_t at = revoked_find(r, spiffe_id, &found);
    if (found) {
        free(r->v[at].spiffe_id);
        free(r->v[at].serial_hex);
        memmove(&r->v[at], &r->v[at + 1], (r->n - at - 1) * sizeof(r->v[0]));
        r->n--;
        atomic_store_explicit(&r->count, r->n, memory_order_release);
    }
    pthread_rwlock_unlock(&r->mu);
    if (found) {
        bg_log(BG_LOG_WARN, "msg=\"identity reinstated\" identity=\"%s\"", spiffe_id);
    }
}

bool gw_tls_revoked(void *arg, const char *spiffe_id, const char *serial_hex)
{
    gw_server *srv = arg;
    if (!gw_identity_revoked(srv, spiffe_id)) {
        return false;
    }
    bg_log(BG_LOG_WARN, "msg=\"tls handshake refused: certificate revoked\" identity=\"%s\" "
                        "serial=%s",
           spiffe_id, serial_hex != NULL && serial_hex[0] ? serial_hex : "-");
    return true;
}

void gw_authz_dispose(gw_server *srv)
{
    struct gw_revoked *r = atomic_exchange(&srv->revoked, NULL);
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].spiffe_id);
        free(r->v[i].serial_hex);
    }
    free(r->v);
    pthread_rwlock_destroy(&r->mu);
    free(r);
}
