/* conf/conf.h: the gateway's YAML configuration, parsed, defaulted and validated up front
 * into plain const structs. Not for: reading anything at request time; other modules get a
 * `const conf_gateway *` and never read files or the environment themselves. */
#ifndef CONF_CONF_H
#define CONF_CONF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

#define CONF_MAX_URLS 8

/* A parsed URL: scheme "https" (TLS, h2 via ALPN) or "http" (cleartext h2c, prior knowledge). */
typedef struct conf_url {
    char *text; /* as written, e.g. "https://127.0.0.1:8444" */
    bool tls;
    char *host; /* "127.0.0.1", "::1" (no brackets) or a name */
    uint16_t port;
} conf_url;

typedef struct conf_listener {
    char *address; /* as written, e.g. "127.0.0.1:8443" or "[::1]:8443" */
    char *host;
    uint16_t port;
    bool tls;   /* true: TLS 1.3 + ALPN h2; false: cleartext h2c (prior knowledge) */
    bool local; /* must be true for tls == false, and host must then be a loopback address */
    char *client_identity; /* optional, local cleartext listeners only: the SPIFFE id every
                              request on this listener is treated as coming from; NULL if unset */
} conf_listener;

typedef struct conf_peer {
    char *name;      /* the peer's city id, e.g. "shenzhen" */
    char *spiffe_id; /* expected URI SAN, e.g. "spiffe://shenzhen.gba/gateway" */
    conf_url urls[CONF_MAX_URLS]; /* tried in order; at least one */
    size_t nurls;
} conf_peer;

/* Static route: destination city reached through the peer named |via|. */
typedef struct conf_route {
    char *city;
    char *via;
} conf_route;

typedef struct conf_upstream {
    bool builtin; /* "url: builtin": the embedded reference data space (space/data.h) */
    conf_url url; /* valid when !builtin: an external data space (docs/upstream.md) */
    bool passthrough; /* external only: relay queries on datasets outside the federation's
                         schemas to it as opaque requests, with no disclosure control (for
                         transport tests and private data products); default false */
    /* embedded data space only: */
    uint32_t rows;    /* synthetic rows per dataset, 1000..10000000; default 100000 */
    uint64_t seed;    /* generator seed; default 1 */
    uint32_t threads; /* query executor threads; default 2 */
    char **datasets;  /* dataset names this city holds; NULL: the city's default holdings */
    size_t ndatasets;
} conf_upstream;

typedef struct conf_timeouts {
    uint32_t connect_ms;       /* outbound TCP+TLS connect; default 2000 */
    uint32_t request_ms;       /* whole request at this hop; default 10000 */
    uint32_t ping_interval_ms; /* keep-alive PING on outbound sessions; default 10000 */
    uint32_t ping_timeout_ms;  /* no PING ack in this time -> session dropped; default 5000 */
    uint32_t backoff_initial_ms; /* reconnect backoff start; default 100 */
    uint32_t backoff_max_ms;     /* reconnect backoff cap; default 5000 */
    uint32_t idle_ms;            /* inbound connection idle close; default 120000 */
    uint32_t shutdown_grace_ms;  /* SIGTERM: in-flight streams get this long; default 10000 */
} conf_timeouts;

typedef struct conf_limits {
    size_t max_body_bytes;          /* request body cap -> 413; default 1 MiB */
    uint32_t max_hops;              /* hop list length bound -> 508; default 8 */
    uint32_t max_concurrent_streams; /* per inbound connection; default 100 */
    uint32_t max_connections;        /* per worker; default 4096 */
    size_t stream_window_bytes;     /* HTTP/2 per-stream window, bounds buffered bytes; 256 KiB */
    /* Per-firm limits on the /v1/ endpoints (process-wide, by SPIFFE id; over them: 429
     * rate_limited). 0 turns a limit off (firm_burst excepted). */
    uint32_t firm_rps;         /* token bucket refill, requests/s; default 200 */
    uint32_t firm_burst;       /* token bucket size; default 400 */
    uint32_t firm_max_streams; /* requests in flight at once, across connections; default 100 */
    uint32_t apply_per_minute; /* POST /v1/firms by a caller that is not a firm, per source
                                  address; default 10 */
} conf_limits;

typedef struct conf_tls {
    char *cert;         /* PEM: gateway certificate (chain), SAN spiffe://<city>.gba/gateway */
    char *key;          /* PEM private key */
    char *trust_bundle; /* PEM: every city's CA; verifies clients and peers */
} conf_tls;

/* The city CA this gateway issues firms' certificates with (onboarding); optional. */
typedef struct conf_ca {
    char *cert; /* PEM: the city CA certificate; NULL when not configured */
    char *key;  /* PEM: its key (mode 0600) */
    uint32_t firm_cert_days; /* lifetime of a firm's certificate; default 90, 1..365 */
} conf_ca;

typedef struct conf_gateway {
    char *path;       /* the file this was loaded from */
    char *city;       /* [a-z][a-z0-9-]*, e.g. "guangzhou" */
    uint32_t workers; /* default: number of online CPUs */
    conf_listener *listeners;
    size_t nlisteners;
    conf_tls tls;
    conf_peer *peers;
    size_t npeers;
    conf_route *routes;
    size_t nroutes;
    conf_upstream upstream;
    conf_timeouts timeouts;
    conf_limits limits;
    char *ledger_path;     /* directory for the LMDB ledger; default "./ledger-<city>" */
    conf_ca ca;            /* `ca:`: onboarding issues firms' certificates with it */
    char *profiles_dir;    /* directory of city contract profiles (<city>.yaml); NULL: contracts
                              are not offered by this gateway */
    char *access_log;      /* "stdout" (default), "off", or a file path */
    char *log_level;       /* "debug|info|warn|error"; default "info" */
} conf_gateway;

/* Loads |path| into |*out| (caller frees with conf_gateway_free()). On failure |*out| is
 * untouched and |eb| holds "file:line: what is wrong". Returns 0, BG_ERR_CONF_IO,
 * BG_ERR_CONF_INVALID or BG_ERR_NOMEM. Relative file paths inside the config (cert, key,
 * trust_bundle, ledger path, access log file) are resolved against the config file's
 * directory. Does not open the certificate files: trust/ does that. */
int conf_gateway_load(conf_gateway **out, const char *path, bg_errbuf *eb);

/* As conf_gateway_load() for an in-memory document; |name| is used in messages and as the
 * base for relative paths ("." directory when it has no slash). */
int conf_gateway_load_buffer(conf_gateway **out, const char *name, const uint8_t *data,
                             size_t len, bg_errbuf *eb);

void conf_gateway_free(conf_gateway *cfg); /* NULL is a no-op */

/* Returns the configured peer named |name| or NULL; borrowed from |cfg|. */
const conf_peer *conf_gateway_find_peer(const conf_gateway *cfg, const char *name);

/* Parses "https://host:port" / "http://host:port" (an optional trailing "/" allowed; IPv6 in
 * brackets) into |*out| (caller disposes with conf_url_dispose()). Returns 0 or
 * BG_ERR_CONF_INVALID with a reason in |eb|. */
int conf_url_parse(conf_url *out, const char *text, bg_errbuf *eb);
void conf_url_dispose(conf_url *u);

#endif /* CONF_CONF_H */
