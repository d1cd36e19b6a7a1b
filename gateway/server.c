/* gateway/server.c: inbound HTTP/2 connections (TLS with ALPN h2, or h2c prior knowledge on
 * local listeners), the nghttp2 server session wired to libevent, and the response helpers the
 * request pipeline uses. Not for: deciding what a request may do (handlers.c) or talking to
 * peers (client.c). */
#include "gateway/gw_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/log.h"

static void conn_flush(gw_conn *conn);

/* ---- small helpers ------------------------------------------------------------------------ */

static gw_stream *stream_get(gw_conn *conn, int32_t id)
{
    if (conn->h2 == NULL) {
        return NULL;
    }
    return nghttp2_session_get_stream_user_data(conn->h2, id);
}

static void stream_unlink(gw_stream *s)
{
    gw_conn *conn = s->conn;
    if (conn->streams == s) {
        conn->streams = s->next;
    } else if (s->prev != NULL) {
        s->prev->next = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    s->prev = s->next = NULL;
}

static void stream_free(gw_stream *s)
{
    if (s->in_consume) {
        gw_contracts_cancel(s);
    }
    if (s->up != NULL) {
        gw_cstream_detach(s->up);
        s->up = NULL;
    }
    if (s->timer_added) {
        event_del(&s->timer_ev);
    }
    if (s->resp_body != NULL) {
        evbuffer_free(s->resp_body);
    }
    if (s->ctx_free != NULL) {
        s->ctx_free(s->ctx);
    }
    bg_buf_dispose(&s->body);
    free(s);
}

void gw_conn_schedule_flush(gw_conn *conn)
{
    gw_worker_defer(conn->w, &conn->fl);
}

/* Per-request timeout: fires when no response head was produced within request_ms. */
static void on_request_timeout(evutil_socket_t fd, short what, void *arg)
{
    gw_stream *s = arg;
    (void)fd;
    (void)what;
    s->timer_added = false;
    if (s->responded) {
        return;
    }
    if (s->up != NULL) {
        gw_cstream_detach(s->up);
        s->up = NULL;
    }
    gw_worker *w = s->conn->w;
    gw_stream_error(s, 504, "timeout", "no response from %s within %u ms",
                    s->dest[0] ? s->dest : "next hop", w->srv->cfg->timeouts.request_ms);
    gw_worker_run_deferred(w);
}

/* ---- response side -------------------------------------------------------------------------- */

/* nghttp2 pulls response body bytes; called from nghttp2_session_mem_send() on the loop. */
static ssize_t resp_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    gw_stream *s = source->ptr;
    (void)session;
    (void)stream_id;
    (void)user_data;
    size_t avail = evbuffer_get_length(s->resp_body);
    if (avail == 0) {
        if (s->resp_eof) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        s->resp_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    int n = evbuffer_remove(s->resp_body, buf, length);
    if (n < 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->bytes_out += (uint64_t)n;
    if (s->up != NULL) {
        gw_cstream_consumed(s->up, (size_t)n);
    }
    if (s->resp_eof && evbuffer_get_length(s->resp_body) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return n;
}

#define MAKE_NV(n, v, vl)                                                                          \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NO_COPY_NAME          \
    }

static int submit_head(gw_stream *s, int status, const nghttp2_nv *extra, size_t nextra,
                       bool has_body)
{
    char st[4], retry[12];
    nghttp2_nv nva[16];
    size_t n = 0;
    if (s->responded || s->conn->h2 == NULL) {
        return BG_ERR_INVAL;
    }
    if (status < 100 || status > 999) {
        status = 502;
    }
    st[0] = (char)('0' + status / 100);
    st[1] = (char)('0' + status / 10 % 10);
    st[2] = (char)('0' + status % 10);
    st[3] = 0;
    nghttp2_nv stnv = MAKE_NV(":status", st, 3);
    nva[n++] = stnv;
    if (s->request_id[0]) {
        /* unique per request: never worth a slot in the peer's HPACK table */
        nghttp2_nv nv = MAKE_NV("x-request-id", s->request_id, strlen(s->request_id));
        nv.flags |= NGHTTP2_NV_FLAG_NO_INDEX;
        nva[n++] = nv;
    }
    if (s->resp_route[0]) {
        nghttp2_nv nv = MAKE_NV("x-baygate-route", s->resp_route, strlen(s->resp_route));
        nva[n++] = nv;
    }
    if (s->retry_after_s > 0) { /* RFC 9110 §10.2.3: delay-seconds */
        nghttp2_nv nv = MAKE_NV("retry-after", retry, bg_fmt_u64(retry, s->retry_after_s));
        nva[n++] = nv;
    }
    for (size_t i = 0; i < nextra && n < sizeof(nva) / sizeof(nva[0]); i++) {
        nva[n++] = extra[i];
    }
    if (s->resp_body == NULL) {
        s->resp_body = evbuffer_new();
        if (s->resp_body == NULL) {
            return BG_ERR_NOMEM;
        }
    }
    nghttp2_data_provider prd = {.source = {.ptr = s}, .read_callback = resp_read_cb};
    int rv = nghttp2_submit_response(s->conn->h2, s->id, nva, n, has_body ? &prd : NULL);
    if (rv != 0) {
        bg_log(BG_LOG_WARN, "conn=%llu stream=%d msg=\"submit_response failed\" err=\"%s\"",
               (unsigned long long)s->conn->conn_id, s->id, nghttp2_strerror(rv));
        return BG_ERR_PROTOCOL;
    }
    s->status = status;
    s->responded = true;
    if (s->timer_added) {
        event_del(&s->timer_ev);
        s->timer_added = false;
    }
    gw_conn_schedule_flush(s->conn);
    return 0;
}

int gw_stream_respond(gw_stream *s, int status, const char *content_type, const void *body,
                      size_t len)
{
    char cl[24];
    nghttp2_nv extra[2];
    size_t n = 0;
    if (s->responded) {
        return BG_ERR_INVAL;
    }
    if (s->resp_body == NULL && (s->resp_body = evbuffer_new()) == NULL) {
        return BG_ERR_NOMEM;
    }
    if (content_type != NULL) {
        nghttp2_nv nv = MAKE_NV("content-type", content_type, strlen(content_type));
        extra[n++] = nv;
    }
    bg_fmt_u64(cl, len);
    nghttp2_nv lnv = MAKE_NV("content-length", cl, strlen(cl));
    extra[n++] = lnv;
    if (len > 0 && evbuffer_add(s->resp_body, body, len) != 0) {
        return BG_ERR_NOMEM;
    }
    s->resp_eof = true;
    return submit_head(s, status, extra, n, len > 0);
}

void gw_stream_respond_json(gw_stream *s, int status, json_t *j)
{
    char *txt = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(j);
    if (txt == NULL) {
        gw_stream_error(s, 500, "internal", "out of memory");
        return;
    }
    size_t len = strlen(txt);
    txt[len] = '\n'; /* json_dumps' NUL becomes the newline: the length is passed */
    if (gw_stream_respond(s, status, "application/json", txt, len + 1) != 0) {
        gw_stream_reset(s, NGHTTP2_INTERNAL_ERROR);
    }
    free(txt);
}

void gw_stream_error(gw_stream *s, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->responded) {
        gw_stream_reset(s, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    bg_strlcpy(s->err_code, code, sizeof(s->err_code));
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    char buf[1024];
    size_t len = 0;
    if (j != NULL) {
        len = json_dumpb(j, buf, sizeof(buf) - 1, JSON_COMPACT);
        json_decref(j);
    }
    if (len == 0 || len >= sizeof(buf) - 1) {
        len = (size_t)snprintf(buf, sizeof(buf), "{\"error\":{\"code\":\"%s\"}}", code);
    }
    buf[len++] = '\n';
    if (gw_stream_respond(s, status, "application/json", buf, len) != 0) {
        gw_stream_reset(s, NGHTTP2_INTERNAL_ERROR);
    }
}

int gw_stream_respond_streaming(gw_stream *s, int status, const nghttp2_nv *extra, size_t nextra)
{
    if (s->resp_body == NULL && (s->resp_body = evbuffer_new()) == NULL) {
        return BG_ERR_NOMEM;
    }
    return submit_head(s, status, extra, nextra, true);
}

void gw_stream_body_more(gw_stream *s, bool eof)
{
    if (eof) {
        s->resp_eof = true;
    }
    if (s->resp_deferred && s->conn->h2 != NULL) {
        s->resp_deferred = false;
        nghttp2_session_resume_data(s->conn->h2, s->id);
    }
    gw_conn_schedule_flush(s->conn);
}

void gw_stream_reset(gw_stream *s, uint32_t error_code)
{
    if (s->conn->h2 != NULL) {
        nghttp2_submit_rst_stream(s->conn->h2, NGHTTP2_FLAG_NONE, s->id, error_code);
        gw_conn_schedule_flush(s->conn);
    }
}

/* ---- nghttp2 server callbacks ----------------------------------------------------------------- */

/* A new request stream: state is created here and released only in on_stream_close. */
static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    gw_conn *conn = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    gw_stream *s = malloc(sizeof(*s));
    if (s == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream, keeps the conn */
    }
    memset(s, 0, GW_STREAM_ZERO_END);
    s->method[0] = s->path[0] = s->request_id[0] = s->hops[0] = 0;
    s->dest[0] = s->resp_route[0] = s->req_type[0] = s->contract[0] = s->requester[0] = 0;
    s->err_code[0] = 0;
    s->operation[0] = s->dataset[0] = 0;
    s->conn = conn;
    s->id = frame->hd.stream_id;
    s->content_length = -1;
    s->start_us = bg_now_us();
    s->route = GW_ROUTE_OTHER;
    bg_strlcpy(s->peer_name, conn->id.spiffe_id[0] ? conn->id.spiffe_id : "-",
               sizeof(s->peer_name));
    bg_buf_init(&s->body);
    evtimer_assign(&s->timer_ev, conn->w->base, on_request_timeout, s);
    s->next = conn->streams;
    if (conn->streams != NULL) {
        conn->streams->prev = s;
    }
    conn->streams = s;
    nghttp2_session_set_stream_user_data(session, s->id, s);
    gw_metrics_streams(conn->w->srv->metrics, +1);
    return 0;
}

static bool valid_request_id(const uint8_t *v, size_t len)
{
    if (len == 0 || len > 64) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

static void copy_hdr(char *dst, size_t cap, const uint8_t *v, size_t len, bool *bad)
{
    if (len >= cap) {
        *bad = true;
        return;
    }
    memcpy(dst, v, len);
    dst[len] = 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    gw_conn *conn = user_data;
    (void)session;
    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0; /* trailers are ignored */
    }
    gw_stream *s = stream_get(conn, frame->hd.stream_id);
    if (s == NULL) {
        return 0;
    }
    /* dispatch on length first: most names are rejected without a compare */
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)
    switch (namelen) {
    case 5:
        if (IS(":path")) {
            copy_hdr(s->path, sizeof(s->path), value, valuelen, &s->bad_header);
        }
        break;
    case 7:
        if (IS(":method")) {
            copy_hdr(s->method, sizeof(s->method), value, valuelen, &s->bad_header);
        }
        break;
    case 12:
        if (IS("x-request-id") && valid_request_id(value, valuelen)) {
            memcpy(s->request_id, value, valuelen);
            s->request_id[valuelen] = 0;
        } else if (IS("content-type")) {
            copy_hdr(s->req_type, sizeof(s->req_type), value, valuelen, &s->bad_header);
        }
        break;
    case 14:
        if (IS("x-baygate-hops")) {
            copy_hdr(s->hops, sizeof(s->hops), value, valuelen, &s->bad_header);
        } else if (IS("x-baygate-dest")) {
            copy_hdr(s->dest, sizeof(s->dest), value, valuelen, &s->bad_header);
        } else if (IS("content-length")) {
            int64_t v = 0;
            bool ok = valuelen > 0 && valuelen <= 18;
            for (size_t i = 0; ok && i < valuelen; i++) {
                ok = value[i] >= '0' && value[i] <= '9';
                v = v * 10 + (value[i] - '0');
            }
            if (ok) {
                s->content_length = v;
            }
        }
        break;
    case 18:
        if (IS("x-baygate-contract")) {
            copy_hdr(s->contract, sizeof(s->contract), value, valuelen, &s->bad_header);
        }
        break;
    case 19:
        if (IS("x-baygate-requester")) {
            copy_hdr(s->requester, sizeof(s->requester), value, valuelen, &s->bad_header);
        }
        break;
    case 21:
        if (IS("x-baygate-deadline-ms")) { /* time left, shrunk by every hop */
            uint64_t v = 0;
            bool ok = valuelen > 0 && valuelen <= 9;
            for (size_t i = 0; ok && i < valuelen; i++) {
                ok = value[i] >= '0' && value[i] <= '9';
                v = v * 10 + (uint64_t)(value[i] - '0');
            }
            if (!ok) {
                s->bad_header = true;
            } else {
                s->deadline_ms = v;
            }
        }
        break;
    default:
        break;
    }
#undef IS
    return 0;
}

static void request_headers_done(gw_conn *conn, gw_stream *s)
{
    const conf_gateway *cfg = conn->w->srv->cfg;
    if (s->request_id[0] == 0) {
        gw_worker_new_request_id(conn->w, s->request_id);
    }
    gw_request_classify(s);
    if (s->bad_header) {
        gw_stream_error(s, 400, "bad_request", "a request header is too long");
        return;
    }
    if (s->content_length > 0 && (uint64_t)s->content_length > cfg->limits.max_body_bytes) {
        s->too_large = true;
        gw_stream_error(s, 413, "body_too_large", "request body of %lld bytes exceeds %zu",
                        (long long)s->content_length, cfg->limits.max_body_bytes);
        return;
    }
    evtimer_add(&s->timer_ev, conn->w->ct_request);
    s->timer_added = true;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    gw_conn *conn = user_data;
    (void)session;
    gw_stream *s;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        s = stream_get(conn, frame->hd.stream_id);
        if (s == NULL) {
            return 0;
        }
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            request_headers_done(conn, s);
        }
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->responded) {
            s->req_done = true;
            gw_request_dispatch(s);
        }
        break;
    case NGHTTP2_DATA:
        s = stream_get(conn, frame->hd.stream_id);
        if (s != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->responded) {
            s->req_done = true;
            gw_request_dispatch(s);
        }
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    gw_conn *conn = user_data;
    (void)session;
    (void)flags;
    gw_stream *s = stream_get(conn, stream_id);
    if (s == NULL) {
        return 0;
    }
    s->bytes_in += len;
    if (s->responded || s->too_large) {
        return 0; /* answered early (413 or error): the rest is discarded */
    }
    size_t max = conn->w->srv->cfg->limits.max_body_bytes;
    if (s->body.len + len > max) {
        s->too_large = true;
        gw_stream_error(s, 413, "body_too_large", "request body exceeds %zu bytes", max);
        return 0;
    }
    if (bg_buf_append(&s->body, data, len) != 0) {
        gw_stream_error(s, 500, "internal", "out of memory");
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    gw_conn *conn = user_data;
    gw_stream *s = stream_get(conn, stream_id);
    if (s == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_unlink(s);
    gw_request_record(s, error_code);
    stream_free(s);
    gw_metrics_streams(conn->w->srv->metrics, -1);
    return 0;
}

static int on_error(nghttp2_session *session, int lib_error_code, const char *msg, size_t len,
                    void *user_data)
{
    gw_conn *conn = user_data;
    (void)session;
    bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"http2 error\" code=%d detail=\"%.*s\"",
           (unsigned long long)conn->conn_id, conn->addr, lib_error_code, (int)len, msg);
    return 0;
}

/* ---- connection I/O ------------------------------------------------------------------------ */

static void conn_unlink(gw_conn *conn)
{
    gw_worker *w = conn->w;
    if (w->conns == conn) {
        w->conns = conn->next;
    } else if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    conn->prev = conn->next = NULL;
}

void gw_conn_free(gw_conn *conn)
{
    if (conn == NULL) {
        return;
    }
    gw_worker *w = conn->w;
    /* nghttp2_session_del() does not call on_stream_close: release streams here. */
    while (conn->streams != NULL) {
        gw_stream *s = conn->streams; /* pop the head */
        conn->streams = s->next;
        if (s->next != NULL) {
            s->next->prev = NULL;
        }
        s->next = NULL;
        if (conn->h2 != NULL) {
            nghttp2_session_set_stream_user_data(conn->h2, s->id, NULL);
        }
        gw_request_record(s, NGHTTP2_CANCEL);
        stream_free(s);
        gw_metrics_streams(w->srv->metrics, -1);
    }
    if (conn->h2 != NULL) {
        nghttp2_session_del(conn->h2);
    }
    gw_worker_undefer(w, &conn->fl);
    event_del(&conn->idle_ev);
    gw_io_dispose(&conn->io);
    conn_unlink(conn);
    gw_metrics_conn(w->srv->metrics, true, -1);
    free(conn);
    w->nconns--;
    gw_worker_conn_gone(w);
}

/* Moves nghttp2's pending frames to the socket, bounded by GW_IO_HIGH (the rest follows when
 * the socket drains), and frees the connection once the session is done with it. */
static void conn_flush(gw_conn *conn)
{
    if (conn->closing) {
        gw_conn_free(conn);
        return;
    }
    if (conn->h2 == NULL) {
        return;
    }
    const char *why = NULL;
    int rv = gw_h2_send(conn->h2, &conn->io, &why);
    if (rv != 0) {
        bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"send failed\" err=\"%s\"",
               (unsigned long long)conn->conn_id, conn->addr, why);
        gw_conn_free(conn);
        return;
    }
    if (!nghttp2_session_want_read(conn->h2) && !nghttp2_session_want_write(conn->h2) &&
        gw_io_pending(&conn->io) == 0) {
        gw_conn_free(conn);
    }
}

int gw_h2_send(nghttp2_session *h2, gw_io *io, const char **why)
{
    bool produced;
    do {
        produced = false;
        while (gw_io_pending(io) < GW_IO_HIGH && nghttp2_session_want_write(h2)) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h2, &data);
            if (n < 0) {
                *why = nghttp2_strerror((int)n);
                return BG_ERR_PROTOCOL;
            }
            if (n == 0) {
                break;
            }
            produced = true;
            if (gw_io_append(io, data, (size_t)n) != 0) {
                *why = "out of memory";
                return BG_ERR_NOMEM;
            }
        }
        if (gw_io_flush(io) != 0) {
            *why = io->err;
            return BG_ERR_IO;
        }
    } while (produced && gw_io_pending(io) == 0 && nghttp2_session_want_write(h2));
    return 0;
}

int gw_h2_recv(nghttp2_session *h2, gw_io *io, bool *got, const char **why)
{
    uint8_t buf[32768];
    *got = false;
    for (int budget = GW_IO_READ_BUDGET; budget > 0; budget--) {
        ssize_t n = gw_io_read(io, buf, sizeof(buf));
        if (n == GW_IO_AGAIN) {
            return 0;
        }
        if (n == GW_IO_EOF) {
            return GW_H2_EOF;
        }
        if (n == GW_IO_ERROR) {
            *why = io->err;
            return BG_ERR_IO;
        }
        *got = true;
        ssize_t r = nghttp2_session_mem_recv(h2, buf, (size_t)n);
        if (r < 0) {
            *why = nghttp2_strerror((int)r);
            return BG_ERR_PROTOCOL;
        }
    }
    gw_io_yield_read(io); /* fairness: others get the loop too */
    return 0;
}

static void conn_run_flush(gw_flushable *f)
{
    gw_conn *conn = (gw_conn *)(void *)((char *)f - offsetof(gw_conn, fl));
    conn_flush(conn);
}

static void arm_idle(gw_conn *conn, uint32_t ms)
{
    if (ms == conn->w->srv->cfg->timeouts.idle_ms) {
        evtimer_add(&conn->idle_ev, conn->w->ct_idle);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&conn->idle_ev, &tv);
}

/* Idle timer: no open streams for idle_ms closes the connection gracefully; before the
 * handshake finished it is the handshake timeout. */
static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    gw_conn *conn = arg;
    gw_worker *w = conn->w;
    (void)fd;
    (void)what;
    if (conn->h2 == NULL) {
        bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"tls handshake timed out\"",
               (unsigned long long)conn->conn_id, conn->addr);
        gw_conn_free(conn);
        return;
    }
    if (conn->streams == NULL) {
        nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(conn->h2), NGHTTP2_NO_ERROR,
                              (const uint8_t *)"idle", 4);
        conn_flush(conn);
    } else {
        arm_idle(conn, w->srv->cfg->timeouts.idle_ms);
    }
    gw_worker_run_deferred(w);
}

/* The socket is readable: feed nghttp2 until the kernel has nothing more. */
static void conn_readable(void *owner)
{
    gw_conn *conn = owner;
    gw_worker *w = conn->w;
    bool got = false;
    if (conn->h2 == NULL || conn->closing) {
        conn_flush(conn);
        gw_worker_run_deferred(w);
        return;
    }
    const char *why = NULL;
    int rv = gw_h2_recv(conn->h2, &conn->io, &got, &why);
    if (rv == GW_H2_EOF || rv == BG_ERR_IO) {
        if (rv == BG_ERR_IO) {
            bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"read failed\" err=\"%s\"",
                   (unsigned long long)conn->conn_id, conn->addr, why);
        }
        gw_conn_free(conn);
        gw_worker_run_deferred(w);
        return;
    }
    if (rv == BG_ERR_PROTOCOL) {
        bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"bad http2 input\" err=\"%s\"",
               (unsigned long long)conn->conn_id, conn->addr, why);
        /* GOAWAY PROTOCOL_ERROR goes out; conn_flush() frees the connection once it is
         * written (the session then wants neither read nor write). */
        nghttp2_session_terminate_session(conn->h2, NGHTTP2_PROTOCOL_ERROR);
        gw_io_stop_reading(&conn->io);
    }
    if (got && conn->streams != NULL) {
        arm_idle(conn, w->srv->cfg->timeouts.idle_ms);
    }
    conn_flush(conn);
    gw_worker_run_deferred(w);
}

/* Output drained: top it up from nghttp2. */
static void conn_writable(void *owner)
{
    gw_conn *conn = owner;
    gw_worker *w = conn->w;
    conn_flush(conn);
    gw_worker_run_deferred(w);
}

static void conn_start_session(gw_conn *conn)
{
    const conf_gateway *cfg = conn->w->srv->cfg;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        conn->closing = true;
        gw_conn_schedule_flush(conn);
        return;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
    nghttp2_option *opt = NULL;
    int rv = nghttp2_option_new(&opt);
    if (rv == 0) {
        nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
        rv = nghttp2_session_server_new2(&conn->h2, cbs, conn, opt);
        nghttp2_option_del(opt);
    }
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        conn->h2 = NULL;
        conn->closing = true;
        gw_conn_schedule_flush(conn);
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->limits.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)cfg->limits.stream_window_bytes},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
    };
    nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    conn->ready = true;
    if (conn->w->draining) {
        nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    }
    arm_idle(conn, cfg->timeouts.idle_ms);
    gw_conn_schedule_flush(conn);
}

/* TLS handshake done: the identity is fixed for the connection's lifetime. */
static void conn_connected(void *owner)
{
    gw_conn *conn = owner;
    gw_worker *w = conn->w;
    if (!trust_ssl_is_h2(conn->io.ssl)) {
        bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"refused: ALPN h2 not negotiated\"",
               (unsigned long long)conn->conn_id, conn->addr);
        gw_conn_free(conn);
        gw_worker_run_deferred(w);
        return;
    }
    trust_identity_from_ssl(conn->io.ssl, &conn->id);
    /* The verify callback refuses revoked certificates, but a resumed session skips it, and a
     * revocation may have landed since: check the identity the connection will run as. */
    if (conn->id.present && gw_identity_revoked(w->srv, conn->id.spiffe_id)) {
        bg_log(BG_LOG_WARN,
               "conn=%llu peer=%s msg=\"refused: certificate revoked\" identity=\"%s\" "
               "serial=%s sha256=%s",
               (unsigned long long)conn->conn_id, conn->addr, conn->id.spiffe_id,
               conn->id.serial[0] ? conn->id.serial : "-", conn->id.fingerprint);
        gw_conn_free(conn);
        gw_worker_run_deferred(w);
        return;
    }
    bg_log(BG_LOG_INFO,
           "conn=%llu peer=%s msg=\"tls accepted\" identity=\"%s\" verified=%d "
           "subject=\"%s\" sha256=%s",
           (unsigned long long)conn->conn_id, conn->addr,
           conn->id.spiffe_id[0] ? conn->id.spiffe_id : "-", conn->id.verified,
           conn->id.subject, conn->id.present ? conn->id.fingerprint : "-");
    conn_start_session(conn);
    /* data that came with the handshake's last flight is already inside OpenSSL */
    conn_readable(conn);
}

static void conn_failed(void *owner, const char *why)
{
    gw_conn *conn = owner;
    gw_worker *w = conn->w;
    bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"%s\" detail=\"%s\"",
           (unsigned long long)conn->conn_id, conn->addr,
           conn->ready ? "connection failed" : "tls handshake refused", why);
    gw_conn_free(conn);
    gw_worker_run_deferred(w);
}

static const gw_io_ops conn_io_ops = {
    .readable = conn_readable,
    .writable = conn_writable,
    .connected = conn_connected,
    .failed = conn_failed,
};

void gw_conn_accept(gw_worker *w, const conf_listener *lst, evutil_socket_t fd,
                    const struct sockaddr *sa, int salen)
{
    (void)salen;
    const conf_gateway *cfg = w->srv->cfg;
    if (w->nconns >= cfg->limits.max_connections || w->draining) {
        evutil_closesocket(fd);
        return;
    }
    gw_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        evutil_closesocket(fd);
        return;
    }
    conn->w = w;
    conn->lst = lst;
    conn->conn_id = ++w->next_conn_id * 1000 + w->idx;
    conn->fl.run = conn_run_flush;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(conn->addr, sizeof(conn->addr), "%s:%d", host, port);
    evtimer_assign(&conn->idle_ev, w->base, on_idle, conn);
    struct ssl_st *ssl = NULL;
    if (lst->tls) {
        ssl = trust_tls_server_ssl(w->srv->tls);
        if (ssl == NULL) {
            evutil_closesocket(fd);
            free(conn);
            return;
        }
    }
    if (gw_io_init_accepted(&conn->io, w->base, fd, ssl, &conn_io_ops, conn) != 0) {
        free(conn); /* the io released fd and ssl */
        return;
    }
    if (!lst->tls && lst->client_identity != NULL) {
        conn->id.present = true;
        conn->id.verified = true;
        bg_strlcpy(conn->id.spiffe_id, lst->client_identity, sizeof(conn->id.spiffe_id));
        trust_spiffe_parse(lst->client_identity, conn->id.city, sizeof(conn->id.city),
                           conn->id.role, sizeof(conn->id.role));
    }
    conn->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = conn;
    }
    w->conns = conn;
    w->nconns++;
    gw_metrics_conn(w->srv->metrics, true, +1);
    if (!lst->tls) {
        conn_start_session(conn);
    } else {
        arm_idle(conn, cfg->timeouts.connect_ms); /* bounds the handshake */
    }
}

void gw_conn_goaway_all(gw_worker *w)
{
    gw_conn *next;
    for (gw_conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->h2 == NULL) {
            gw_conn_free(c);
            continue;
        }
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              (const uint8_t *)"shutdown", 8);
        gw_conn_schedule_flush(c);
    }
}

size_t gw_conn_close_identity(gw_worker *w, const char *spiffe_id)
{
    size_t n = 0;
    gw_conn *next;
    for (gw_conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (!c->id.present || strcmp(c->id.spiffe_id, spiffe_id) != 0 || c->closing) {
            continue;
        }
        n++;
        bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"closing: identity revoked\" identity=\"%s\"",
               (unsigned long long)c->conn_id, c->addr, spiffe_id);
        if (c->h2 != NULL) {
            /* Tell the client why before the connection goes; what cannot be written at once
             * is dropped with it. Its streams end with the connection (cancelled). */
            const char *why = NULL;
            nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(c->h2),
                                  NGHTTP2_NO_ERROR, (const uint8_t *)"certificate revoked", 19);
            (void)gw_h2_send(c->h2, &c->io, &why);
        }
        c->closing = true; /* freed by the next flush, outside any of its callbacks */
        gw_conn_schedule_flush(c);
    }
    return n;
}
