/* base/err.h: the one error-code space of baygate. Every fallible function returns 0 or a
 * negative BG_ERR_*; each folder owns a block. Not for: HTTP statuses or wire error codes,
 * which the gateway derives from these. */
#ifndef BG_ERR_H
#define BG_ERR_H
#include <stdbool.h>
#include <stddef.h>

enum {
    BG_OK = 0,
    /* base: -1..-99 */
    BG_ERR_NOMEM = -1,
    BG_ERR_INVAL = -2,
    BG_ERR_IO = -3,
    BG_ERR_RANGE = -4,
    BG_ERR_NOTFOUND = -5,
    BG_ERR_EXISTS = -6,
    BG_ERR_AGAIN = -7,
    BG_ERR_INTERNAL = -8,
    /* conf: -100s */
    BG_ERR_CONF_INVALID = -100,
    BG_ERR_CONF_IO = -101,
    /* trust: -200s */
    BG_ERR_TLS = -200,
    BG_ERR_CERT = -201,
    BG_ERR_IDENTITY = -202,
    BG_ERR_CONTRACT_INVALID = -203,  /* malformed or inconsistent contract */
    BG_ERR_SIGNATURE = -204,         /* a signature or its signer does not verify */
    BG_ERR_CONTRACT_EXPIRED = -205,  /* outside its validity */
    BG_ERR_CONTRACT_REVOKED = -206,  /* revoked, terminated or not yet finalized */
    BG_ERR_BUDGET_EXHAUSTED = -207,  /* no queries (or privacy budget) left */
    BG_ERR_STORE = -208,             /* the LMDB store failed (see the log for mdb_strerror) */
    /* routing: -300s */
    BG_ERR_NO_ROUTE = -300,
    BG_ERR_LOOP = -301,
    BG_ERR_TOO_MANY_HOPS = -302,
    /* gateway: -400s */
    BG_ERR_PEER_UNAVAILABLE = -400,
    BG_ERR_TIMEOUT = -401,
    BG_ERR_PROTOCOL = -402,
    BG_ERR_TOO_LARGE = -403,
    BG_ERR_SHUTDOWN = -404,
    /* space: -500s */
    BG_ERR_SPACE = -500,
};

/* Returns a static, human-readable name for |err|; never NULL. */
const char *bg_strerror(int err);
/* True when the object that returned |err| may only be freed now. */
bool bg_err_is_fatal(int err);

/* A caller-owned buffer for load-time errors: "file:line: what and why". */
typedef struct bg_errbuf {
    char msg[512];
} bg_errbuf;

/* Formats into |eb| (if not NULL); returns |err| so callers can `return bg_errf(...)`. */
int bg_errf(bg_errbuf *eb, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif /* BG_ERR_H */
