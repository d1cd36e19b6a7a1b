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

/* bufferevent_openssl needs the SSL type; everything else about TLS is in trust/. */
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <jansson.h>

#include "base/clock.h"
#include "base/log.h"

/* Output above this is not topped up from nghttp2 until the socket drains (backpressure). */
#define OUTBUF_HIGH (64 * 1024)

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
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        conn->streams = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    s->prev = s->next = NULL;
}

static void stream_free(gw_stream *s)
{
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
    bg_buf_dispose(&s->body);
    free(s);
}

void gw_conn_schedule_flush(gw_conn *conn)
{
    event_active(&conn->flush_ev, EV_WRITE, 0);
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
    gw_stream_error(s, 504, "timeout", "no response from %s within %u ms",
                    s->dest[0] ? s->dest : "next hop", s->conn->w->srv->cfg->timeouts.request_ms);
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
    char st[4];
    nghttp2_nv nva[16];
    size_t n = 0;
    if (s->responded || s->conn->h2 == NULL) {
        return BG_ERR_INVAL;
    }
    if (status < 100 || status > 999) {
        status = 502;
    }
    snprintf(st, sizeof(st), "%d", status);
    nghttp2_nv stnv = MAKE_NV(":status", st, 3);
    nva[n++] = stnv;
    if (s->request_id[0]) {
        nghttp2_nv nv = MAKE_NV("x-request-id", s->request_id, strlen(s->request_id));
        nva[n++] = nv;
    }
    if (s->resp_route[0]) {
        nghttp2_nv nv = MAKE_NV("x-baygate-route", s->resp_route, strlen(s->resp_route));
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
    snprintf(cl, sizeof(cl), "%zu", len);
    nghttp2_nv lnv = MAKE_NV("content-length", cl, strlen(cl));
    extra[n++] = lnv;
    if (len > 0 && evbuffer_add(s->resp_body, body, len) != 0) {
        return BG_ERR_NOMEM;
    }
    s->resp_eof = true;
    return submit_head(s, status, extra, n, len > 0);
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
    s->err_code = code;
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
    gw_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream, keeps the conn */
    }
    s->conn = conn;
    s->id = frame->hd.stream_id;
    s->content_length = -1;
    s->start_us = bg_now_us();
    s->route = GW_ROUTE_OTHER;
    snprintf(s->peer_name, sizeof(s->peer_name), "%s",
             conn->id.spiffe_id[0] ? conn->id.spiffe_id : "-");
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
    bg_iov n = {name, namelen};
    if (bg_iov_eq_str(n, ":method")) {
        copy_hdr(s->method, sizeof(s->method), value, valuelen, &s->bad_header);
    } else if (bg_iov_eq_str(n, ":path")) {
        copy_hdr(s->path, sizeof(s->path), value, valuelen, &s->bad_header);
    } else if (bg_iov_eq_str(n, "x-request-id")) {
        if (valid_request_id(value, valuelen)) {
            memcpy(s->request_id, value, valuelen);
            s->request_id[valuelen] = 0;
        }
    } else if (bg_iov_eq_str(n, "x-baygate-hops")) {
        copy_hdr(s->hops, sizeof(s->hops), value, valuelen, &s->bad_header);
    } else if (bg_iov_eq_str(n, "content-length")) {
        char tmp[24];
        bool bad = false;
        copy_hdr(tmp, sizeof(tmp), value, valuelen, &bad);
        if (!bad) {
            char *end = NULL;
            long long v = strtoll(tmp, &end, 10);
            if (end != NULL && *end == 0 && v >= 0) {
                s->content_length = v;
            }
        }
    }
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
    struct timeval tv = {(time_t)(cfg->timeouts.request_ms / 1000),
                         (suseconds_t)(cfg->timeouts.request_ms % 1000) * 1000};
    evtimer_add(&s->timer_ev, &tv);
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
    gw_request_record(s, error_code);
    stream_unlink(s);
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
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else if (w->conns == conn) {
        w->conns = conn->next;
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
        gw_stream *s = conn->streams;
        if (conn->h2 != NULL) {
            nghttp2_session_set_stream_user_data(conn->h2, s->id, NULL);
        }
        gw_request_record(s, NGHTTP2_CANCEL);
        stream_unlink(s);
        stream_free(s);
        gw_metrics_streams(w->srv->metrics, -1);
    }
    if (conn->h2 != NULL) {
        nghttp2_session_del(conn->h2);
    }
    event_del(&conn->flush_ev);
    event_del(&conn->idle_ev);
    if (conn->bev != NULL) {
        if (conn->ssl != NULL && conn->ready) {
            SSL_shutdown(conn->ssl); /* close_notify before the bev frees it */
        }
        bufferevent_free(conn->bev);
    }
    conn_unlink(conn);
    gw_metrics_conn(w->srv->metrics, true, -1);
    free(conn);
    w->nconns--;
    gw_worker_conn_gone(w);
}

static void conn_close_later(gw_conn *conn)
{
    conn->closing = true;
    gw_conn_schedule_flush(conn);
}

static void conn_flush(gw_conn *conn)
{
    if (conn->closing) {
        gw_conn_free(conn);
        return;
    }
    if (!conn->ready) {
        return;
    }
    struct evbuffer *out = bufferevent_get_output(conn->bev);
    while (evbuffer_get_length(out) < OUTBUF_HIGH && nghttp2_session_want_write(conn->h2)) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(conn->h2, &data);
        if (n < 0) {
            bg_log(BG_LOG_WARN, "conn=%llu msg=\"http2 send failed\" err=\"%s\"",
                   (unsigned long long)conn->conn_id, nghttp2_strerror((int)n));
            gw_conn_free(conn);
            return;
        }
        if (n == 0) {
            break;
        }
        if (evbuffer_add(out, data, (size_t)n) != 0) {
            gw_conn_free(conn);
            return;
        }
    }
    if (!nghttp2_session_want_read(conn->h2) && !nghttp2_session_want_write(conn->h2) &&
        evbuffer_get_length(out) == 0) {
        gw_conn_free(conn);
    }
}

/* Deferred flush: scheduled by anything that submitted frames on this session. */
static void on_flush_event(evutil_socket_t fd, short what, void *arg)
{
    gw_conn *conn = arg;
    (void)fd;
    (void)what;
    conn_flush(conn);
}

/* Idle timer: no open streams for idle_ms closes the connection gracefully. */
static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    gw_conn *conn = arg;
    (void)fd;
    (void)what;
    if (!conn->ready) {
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
        uint32_t ms = conn->w->srv->cfg->timeouts.idle_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        evtimer_add(&conn->idle_ev, &tv);
    }
}

static void touch_idle(gw_conn *conn)
{
    uint32_t ms = conn->w->srv->cfg->timeouts.idle_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&conn->idle_ev, &tv);
}

/* bufferevent read callback: feeds nghttp2 chunk by chunk, drains what it consumed. */
static void conn_readcb(struct bufferevent *bev, void *arg)
{
    gw_conn *conn = arg;
    if (!conn->ready || conn->closing) {
        return;
    }
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[8];
    while (evbuffer_get_length(in) > 0) {
        int nv = evbuffer_peek(in, -1, NULL, v, 8);
        size_t consumed = 0;
        for (int i = 0; i < nv && i < 8; i++) {
            ssize_t n = nghttp2_session_mem_recv(conn->h2, v[i].iov_base, v[i].iov_len);
            if (n < 0) {
                bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"bad http2 input\" err=\"%s\"",
                       (unsigned long long)conn->conn_id, conn->addr, nghttp2_strerror((int)n));
                /* GOAWAY PROTOCOL_ERROR goes out; conn_flush() frees the connection once
                 * it is written (the session then wants neither read nor write). */
                nghttp2_session_terminate_session(conn->h2, NGHTTP2_PROTOCOL_ERROR);
                evbuffer_drain(in, evbuffer_get_length(in));
                bufferevent_disable(bev, EV_READ);
                conn_flush(conn);
                return;
            }
            consumed += (size_t)n;
        }
        evbuffer_drain(in, consumed);
        if (nv <= 8) {
            break;
        }
    }
    touch_idle(conn);
    conn_flush(conn);
}

/* Write callback: the socket drained below the low watermark; top it up from nghttp2. */
static void conn_writecb(struct bufferevent *bev, void *arg)
{
    gw_conn *conn = arg;
    (void)bev;
    conn_flush(conn);
}

static void conn_ready(gw_conn *conn)
{
    const conf_gateway *cfg = conn->w->srv->cfg;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        conn_close_later(conn);
        return;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
    int rv = nghttp2_session_server_new2(&conn->h2, cbs, conn, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        conn->h2 = NULL;
        conn_close_later(conn);
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
    touch_idle(conn);
    conn_flush(conn);
    if (!conn->closing && evbuffer_get_length(bufferevent_get_input(conn->bev)) > 0) {
        conn_readcb(conn->bev, conn);
    }
}

static void conn_eventcb(struct bufferevent *bev, short events, void *arg)
{
    gw_conn *conn = arg;
    if (events & BEV_EVENT_CONNECTED) {
        /* TLS handshake done: the identity is fixed for the connection's lifetime. */
        if (!trust_ssl_is_h2(conn->ssl)) {
            bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"refused: ALPN h2 not negotiated\"",
                   (unsigned long long)conn->conn_id, conn->addr);
            gw_conn_free(conn);
            return;
        }
        trust_identity_from_ssl(conn->ssl, &conn->id);
        bg_log(BG_LOG_INFO,
               "conn=%llu peer=%s msg=\"tls accepted\" identity=\"%s\" verified=%d "
               "subject=\"%s\" sha256=%s",
               (unsigned long long)conn->conn_id, conn->addr,
               conn->id.spiffe_id[0] ? conn->id.spiffe_id : "-", conn->id.verified,
               conn->id.subject, conn->id.present ? conn->id.fingerprint : "-");
        conn_ready(conn);
        return;
    }
    if (events & (BEV_EVENT_ERROR | BEV_EVENT_EOF | BEV_EVENT_TIMEOUT)) {
        if ((events & BEV_EVENT_ERROR) && conn->ssl != NULL && !conn->ready) {
            char err[256];
            trust_tls_errors(err, sizeof(err));
            bg_log(BG_LOG_INFO, "conn=%llu peer=%s msg=\"tls handshake refused\" detail=\"%s\"",
                   (unsigned long long)conn->conn_id, conn->addr, err[0] ? err : "eof");
        }
        (void)bev;
        gw_conn_free(conn);
    }
}

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
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    event_assign(&conn->flush_ev, w->base, -1, 0, on_flush_event, conn);
    evtimer_assign(&conn->idle_ev, w->base, on_idle, conn);
    if (lst->tls) {
        conn->ssl = trust_tls_server_ssl(w->srv->tls);
        if (conn->ssl == NULL) {
            evutil_closesocket(fd);
            free(conn);
            return;
        }
        conn->bev = bufferevent_openssl_socket_new(w->base, fd, conn->ssl,
                                                   BUFFEREVENT_SSL_ACCEPTING,
                                                   BEV_OPT_CLOSE_ON_FREE);
        if (conn->bev == NULL) {
            SSL_free(conn->ssl);
        } else {
            bufferevent_openssl_set_allow_dirty_shutdown(conn->bev, 1);
        }
    } else {
        conn->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (lst->client_identity != NULL) {
            conn->id.present = true;
            conn->id.verified = true;
            snprintf(conn->id.spiffe_id, sizeof(conn->id.spiffe_id), "%s", lst->client_identity);
            trust_spiffe_parse(lst->client_identity, conn->id.city, sizeof(conn->id.city),
                               conn->id.role, sizeof(conn->id.role));
        }
    }
    if (conn->bev == NULL) {
        evutil_closesocket(fd);
        free(conn);
        return;
    }
    conn->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = conn;
    }
    w->conns = conn;
    w->nconns++;
    gw_metrics_conn(w->srv->metrics, true, +1);
    bufferevent_setcb(conn->bev, conn_readcb, conn_writecb, conn_eventcb, conn);
    bufferevent_setwatermark(conn->bev, EV_WRITE, OUTBUF_HIGH / 2, 0);
    bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
    if (!lst->tls) {
        conn_ready(conn);
    } else {
        /* bound the handshake by the idle timeout's shorter cousin: connect_ms */
        uint32_t ms = w->srv->cfg->timeouts.connect_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        evtimer_add(&conn->idle_ev, &tv);
    }
}

void gw_conn_goaway_all(gw_worker *w)
{
    gw_conn *next;
    for (gw_conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->h2 == NULL || !c->ready) {
            gw_conn_free(c);
            continue;
        }
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              (const uint8_t *)"shutdown", 8);
        gw_conn_schedule_flush(c);
    }
}
