/* base/err.c: error names and the load-time error buffer. */
#include "base/err.h"
#include <stdarg.h>
#include <stdio.h>

const char *bg_strerror(int err)
{
    switch (err) {
    case BG_OK: return "ok";
    case BG_ERR_NOMEM: return "out of memory";
    case BG_ERR_INVAL: return "invalid argument";
    case BG_ERR_IO: return "i/o error";
    case BG_ERR_RANGE: return "value out of range";
    case BG_ERR_NOTFOUND: return "not found";
    case BG_ERR_EXISTS: return "already exists";
    case BG_ERR_AGAIN: return "try again";
    case BG_ERR_INTERNAL: return "internal error";
    case BG_ERR_CONF_INVALID: return "invalid configuration";
    case BG_ERR_CONF_IO: return "cannot read configuration";
    case BG_ERR_TLS: return "tls error";
    case BG_ERR_CERT: return "certificate error";
    case BG_ERR_IDENTITY: return "identity error";
    case BG_ERR_CONTRACT_INVALID: return "invalid contract";
    case BG_ERR_SIGNATURE: return "signature does not verify";
    case BG_ERR_CONTRACT_EXPIRED: return "contract expired";
    case BG_ERR_CONTRACT_REVOKED: return "contract revoked or not in force";
    case BG_ERR_BUDGET_EXHAUSTED: return "contract budget exhausted";
    case BG_ERR_STORE: return "store error";
    case BG_ERR_NO_ROUTE: return "no route";
    case BG_ERR_LOOP: return "routing loop";
    case BG_ERR_TOO_MANY_HOPS: return "too many hops";
    case BG_ERR_PEER_UNAVAILABLE: return "peer unavailable";
    case BG_ERR_TIMEOUT: return "timeout";
    case BG_ERR_PROTOCOL: return "protocol error";
    case BG_ERR_TOO_LARGE: return "too large";
    case BG_ERR_SHUTDOWN: return "shutting down";
    case BG_ERR_SPACE: return "data space error";
    default: return "unknown error";
    }
}

bool bg_err_is_fatal(int err)
{
    return err == BG_ERR_NOMEM || err == BG_ERR_INTERNAL;
}

int bg_errf(bg_errbuf *eb, int err, const char *fmt, ...)
{
    if (eb != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
        va_end(ap);
    }
    return err;
}
