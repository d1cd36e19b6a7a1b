/* gateway/accesslog.c: one JSON object per line per request (time, request id, caller
 * identity, route, status, bytes, latency), written with a single write(2) so lines from
 * several workers never interleave. Separate from the diagnostic log (base/log.h). */
#include "gateway/gw_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/clock.h"

struct gw_accesslog {
    int fd; /* -1: off */
    bool owned;
    char *path; /* owned files only, for reopen */
};

int gw_accesslog_new(gw_accesslog **out, const char *where, bg_errbuf *eb)
{
    gw_accesslog *al = calloc(1, sizeof(*al));
    if (al == NULL) {
        return BG_ERR_NOMEM;
    }
    al->fd = -1;
    if (where == NULL || strcmp(where, "stdout") == 0) {
        al->fd = STDOUT_FILENO;
    } else if (strcmp(where, "off") != 0) {
        al->fd = open(where, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (al->fd < 0) {
            int e = errno;
            free(al);
            return bg_errf(eb, BG_ERR_IO, "%s: cannot open access log: %s", where, strerror(e));
        }
        al->owned = true;
        al->path = strdup(where);
        if (al->path == NULL) {
            close(al->fd);
            free(al);
            return BG_ERR_NOMEM;
        }
    }
    *out = al;
    return 0;
}

void gw_accesslog_free(gw_accesslog *al)
{
    if (al == NULL) {
        return;
    }
    if (al->owned) {
        close(al->fd);
    }
    free(al->path);
    free(al);
}

int gw_accesslog_reopen(gw_accesslog *al, bg_errbuf *eb)
{
    if (al == NULL || !al->owned) {
        return 0;
    }
    int fd = open(al->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        return bg_errf(eb, BG_ERR_IO, "%s: cannot reopen access log: %s", al->path,
                       strerror(errno));
    }
    /* dup2 swaps the file under the same descriptor number atomically: workers writing
     * concurrently land in the old file or the new one, never nowhere. */
    int rv = dup2(fd, al->fd) < 0 ? bg_errf(eb, BG_ERR_IO, "%s: dup2: %s", al->path,
                                            strerror(errno))
                                  : 0;
    close(fd);
    return rv;
}

bool gw_accesslog_enabled(const gw_accesslog *al)
{
    return al != NULL && al->fd >= 0;
}

void gw_accesslog_write(gw_accesslog *al, const gw_stream *s, const char *city,
                        uint64_t latency_us, uint32_t error_code)
{
    char ts[40];
    bg_wall_iso8601(ts, sizeof(ts));
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:I,s:f}", "time", ts, "city",
                          city, "request_id", s->request_id, "peer", s->peer_name, "addr",
                          s->conn->addr, "method", s->method, "route", gw_route_label(s->route),
                          "status", s->responded ? s->status : 0, "bytes_in",
                          (json_int_t)s->bytes_in, "bytes_out", (json_int_t)s->bytes_out,
                          "latency_ms", (double)latency_us / 1000.0);
    if (j == NULL) {
        return;
    }
    if (s->dest[0]) {
        json_object_set_new(j, "dest", json_string(s->dest));
    }
    if (s->hops[0]) {
        json_object_set_new(j, "hops", json_string(s->hops));
    }
    if (s->err_code[0]) {
        json_object_set_new(j, "error", json_string(s->err_code));
    }
    if (error_code != 0) {
        json_object_set_new(j, "reset", json_string(nghttp2_http2_strerror(error_code)));
    }
    char buf[2048];
    size_t n = json_dumpb(j, buf, sizeof(buf) - 1, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (n == 0 || n >= sizeof(buf) - 1) {
        return;
    }
    buf[n++] = '\n';
    ssize_t w = write(al->fd, buf, n);
    (void)w;
}
