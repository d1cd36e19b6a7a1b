/* gateway/client.c: outbound HTTP/2 sessions from one worker to one peer gateway (mutual TLS,
 * identity checked against the peer's configured SPIFFE id) or to the data-space upstream.
 * Multiplexed, kept alive with PING, reconnected with exponential backoff, failing over across
 * the peer's URLs. Responses are relayed into the inbound stream with end-to-end flow control:
 * the outbound stream's window is reopened only as the inbound side sends bytes on, so a slow
 * client slows the upstream instead of growing our buffers. Not for: choosing the peer. */
#include "gateway/gw_int.h"

#include <netdb.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>


#include "base/log.h"

#define MAX_PENDING 4096

struct gw_cstream {
    gw_client *cl;
    int32_t id; /* 0 until submitted */
    gw_stream *down; /* the inbound stream we relay to; NULL once it went away */
    gw_cstream *prev, *next;
    bool pending; /* on cl->pending, not yet submitted */
    bool head_done;
    bool eof;
    bg_buf body;
    size_t body_off;
    int status; /* response head */
    gw_call_cb cb; /* call mode: the response is buffered and handed to |cb|, not relayed */
    gw_leg *leg;   /* leg mode: buffered like a call, handed to leg->done; NULL once cancelled */
    bg_buf resp;
    /* text last: only the first byte of each is cleared for a new stream */
    char path[64];
    char request_id[65];
    char hops[1100];
    char dest[64];
    char req_type[64];
    char contract[72];
    char requester[256];
    char deadline[24];
    char content_type[128];
    char content_length[24];
    char route[1024];
};

struct gw_client {
    gw_worker *w;
    gw_gen *gen; /* referenced: |peer| and |urls| live in gen->cfg */
    bool retiring;
    gw_client *next_retiring; /* on w->retiring */
    const conf_peer *peer; /* NULL for the upstream */
    const conf_url *urls;
    size_t nurls;
    size_t url_idx;
    char name[64];
    char authority[300];
    _Atomic int state;
    gw_io io;
    bool io_live; /* |io| holds a socket */
    nghttp2_session *h2;
    bool goaway; /* peer sent GOAWAY: no new streams on this session */
    bool ping_outstanding;
    uint32_t backoff_ms;
    struct event timer_ev; /* connect timeout, or backoff */
    struct event ping_ev;
    gw_flushable fl;
    gw_cstream *pending; /* FIFO: head */
    gw_cstream *pending_tail;
    size_t npending;
    gw_cstream *active; /* submitted streams */
    char last_error[160];
};

static void client_connect(gw_client *cl);
static void client_flush(gw_client *cl);

const char *gw_client_state_name(gw_client_state st)
{
    switch (st) {
    case GW_CLIENT_IDLE: return "idle";
    case GW_CLIENT_CONNECTING: return "connecting";
    case GW_CLIENT_CONNECTED: return "connected";
    case GW_CLIENT_BACKOFF: return "backoff";
    }
    return "unknown";
}

gw_client_state gw_client_get_state(const gw_client *cl)
{
    return (gw_client_state)atomic_load(&cl->state);
}

const char *gw_client_name(const gw_client *cl)
{
    return cl->name;
}

static void set_timer(struct event *ev, uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void schedule_flush(gw_client *cl)
{
    gw_worker_defer(cl->w, &cl->fl);
}

static void set_state(gw_client *cl, gw_client_state st)
{
    int old = atomic_exchange(&cl->state, (int)st);
    if (old != (int)st) {
        gw_metrics_peer_state(cl->w->srv->metrics, cl->name, old, (int)st);
    }
}

/* ---- stream lists ---------------------------------------------------------------------------- */

static void active_unlink(gw_client *cl, gw_cstream *cs)
{
    if (cl->active == cs) {
        cl->active = cs->next;
    } else if (cs->prev != NULL) {
        cs->prev->next = cs->next;
    }
    if (cs->next != NULL) {
        cs->next->prev = cs->prev;
    }
    cs->prev = cs->next = NULL;
}

static void pending_remove(gw_client *cl, gw_cstream *cs)
{
    gw_cstream **pp = &cl->pending;
    gw_cstream *prev = NULL;
    while (*pp != NULL && *pp != cs) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == cs) {
        *pp = cs->next;
        if (cl->pending_tail == cs) {
            cl->pending_tail = prev;
        }
        cl->npending--;
    }
    cs->next = NULL;
    cs->pending = false;
}

static void cstream_free(gw_cstream *cs)
{
    bg_buf_dispose(&cs->body);
    bg_buf_dispose(&cs->resp);
    free(cs);
}

/* Fails the inbound side of |cs| with 502 (or a reset when its response already started). */
static void fail_down(gw_cstream *cs, const char *code, const char *why)
{
    if (cs->leg != NULL) {
        gw_leg *leg = cs->leg;
        char msg[300];
        snprintf(msg, sizeof(msg), "%s %s: %s", cs->cl->peer ? "peer" : "upstream", cs->cl->name,
                 why);
        cs->leg = NULL;
        leg->cs = NULL;
        leg->done(leg, 0, code, msg, NULL, 0);
        return;
    }
    gw_stream *s = cs->down;
    if (s == NULL) {
        return;
    }
    s->up = NULL;
    cs->down = NULL;
    if (cs->cb != NULL) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s %s: %s", cs->cl->peer ? "peer" : "upstream", cs->cl->name,
                 why);
        cs->cb(s, 0, code, msg, NULL, 0);
        return;
    }
    if (!s->responded) {
        gw_stream_error(s, 502, code, "%s %s: %s", cs->cl->peer ? "peer" : "upstream",
                        cs->cl->name, why);
    } else if (!s->resp_eof) {
        gw_stream_reset(s, NGHTTP2_INTERNAL_ERROR);
    }
}

static const char *unavailable_code(const gw_client *cl)
{
    return cl->peer != NULL ? "peer_unavailable" : "upstream_unavailable";
}

/* ---- nghttp2 client callbacks ---------------------------------------------------------------- */

static ssize_t req_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                           size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                           void *user_data)
{
    gw_cstream *cs = source->ptr;
    (void)session;
    (void)stream_id;
    (void)user_data;
    size_t left = cs->body.len - cs->body_off;
    size_t n = left < length ? left : length;
    if (n > 0) {
        memcpy(buf, cs->body.data + cs->body_off, n);
        cs->body_off += n;
    }
    if (cs->body_off == cs->body.len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static void copy_val(char *dst, size_t cap, const uint8_t *v, size_t len)
{
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(dst, v, len);
    dst[len] = 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    (void)user_data;
    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_RESPONSE) {
        return 0;
    }
    gw_cstream *cs = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (cs == NULL) {
        return 0;
    }
    bg_iov n = {name, namelen};
    if (bg_iov_eq_str(n, ":status")) {
        /* a 3-digit status, else 0: relay_head() only relays >= 200 */
        cs->status = 0;
        if (valuelen == 3 && value[0] >= '1' && value[0] <= '9' && value[1] >= '0' &&
            value[1] <= '9' && value[2] >= '0' && value[2] <= '9') {
            cs->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        }
    } else if (bg_iov_eq_str(n, "content-type")) {
        copy_val(cs->content_type, sizeof(cs->content_type), value, valuelen);
    } else if (bg_iov_eq_str(n, "content-length")) {
        copy_val(cs->content_length, sizeof(cs->content_length), value, valuelen);
    } else if (bg_iov_eq_str(n, "x-baygate-route")) {
        copy_val(cs->route, sizeof(cs->route), value, valuelen);
    }
    return 0;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME     \
    }

/* Response head complete: relay it to the inbound stream. */
static void relay_head(gw_cstream *cs)
{
    gw_stream *s = cs->down;
    cs->head_done = true;
    if (s == NULL || s->responded || cs->cb != NULL) {
        return;
    }
    if (cs->route[0]) {
        bg_strlcpy(s->resp_route, cs->route, sizeof(s->resp_route));
    }
    nghttp2_nv extra[2];
    size_t n = 0;
    if (cs->content_type[0]) {
        nghttp2_nv nv = NV("content-type", cs->content_type);
        extra[n++] = nv;
    }
    if (cs->content_length[0]) {
        nghttp2_nv nv = NV("content-length", cs->content_length);
        extra[n++] = nv;
    }
    if (gw_stream_respond_streaming(s, cs->status, extra, n) != 0) {
        fail_down(cs, "bad_gateway", "cannot relay response");
    }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    gw_client *cl = user_data;
    gw_cstream *cs;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        cs = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (cs == NULL) {
            return 0;
        }
        if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE && cs->status >= 200) {
            relay_head(cs);
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            cs->eof = true;
            if (cs->down != NULL && cs->down->responded) {
                gw_stream_body_more(cs->down, true);
            }
        }
        break;
    case NGHTTP2_DATA:
        cs = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (cs != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            cs->eof = true;
            if (cs->down != NULL && cs->down->responded) {
                gw_stream_body_more(cs->down, true);
            }
        }
        break;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
            cl->ping_outstanding = false;
            set_timer(&cl->ping_ev, cl->w->srv->cfg->timeouts.ping_interval_ms);
        }
        break;
    case NGHTTP2_GOAWAY:
        cl->goaway = true;
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    (void)flags;
    (void)user_data;
    /* Connection-level window reopens at once; the stream window only as the inbound side
     * consumes (gw_cstream_consumed), which bounds what we buffer per stream. */
    nghttp2_session_consume_connection(session, len);
    gw_cstream *cs = nghttp2_session_get_stream_user_data(session, stream_id);
    if (cs != NULL && (cs->cb != NULL || cs->leg != NULL)) {
        nghttp2_session_consume_stream(session, stream_id, len);
        if (cs->resp.len + len > (cs->leg != NULL ? GW_LEG_MAX_RESPONSE : GW_CALL_MAX_RESPONSE)) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream: fails the call */
        }
        return bg_buf_append(&cs->resp, data, len) == 0 ? 0
                                                        : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (cs == NULL || cs->down == NULL || !cs->down->responded) {
        nghttp2_session_consume_stream(session, stream_id, len);
        return 0;
    }
    if (evbuffer_add(cs->down->resp_body, data, len) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    gw_stream_body_more(cs->down, false);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    gw_client *cl = user_data;
    gw_cstream *cs = nghttp2_session_get_stream_user_data(session, stream_id);
    if (cs == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    if (cs->leg != NULL) {
        if (!cs->eof || error_code != NGHTTP2_NO_ERROR || cs->status < 200) {
            char why[96];
            snprintf(why, sizeof(why), "stream reset (%s)", nghttp2_http2_strerror(error_code));
            fail_down(cs, "bad_gateway", why);
        } else {
            gw_leg *leg = cs->leg;
            cs->leg = NULL;
            leg->cs = NULL;
            bg_strlcpy(leg->route, cs->route, sizeof(leg->route));
            leg->done(leg, cs->status, cs->content_type, NULL, cs->resp.data, cs->resp.len);
        }
    } else if (cs->down != NULL && cs->cb != NULL) {
        if (!cs->eof || error_code != NGHTTP2_NO_ERROR || cs->status < 200) {
            char why[96];
            snprintf(why, sizeof(why), "stream reset (%s)", nghttp2_http2_strerror(error_code));
            fail_down(cs, "bad_gateway", why);
        } else {
            gw_stream *s = cs->down;
            s->up = NULL;
            cs->down = NULL;
            cs->cb(s, cs->status, cs->content_type, NULL, cs->resp.data, cs->resp.len);
        }
    } else if (cs->down != NULL) {
        gw_stream *s = cs->down;
        if (!s->responded || !cs->eof || error_code != NGHTTP2_NO_ERROR) {
            char why[96];
            snprintf(why, sizeof(why), "stream reset (%s)", nghttp2_http2_strerror(error_code));
            fail_down(cs, "bad_gateway", why);
        } else {
            s->up = NULL;
            cs->down = NULL;
        }
    }
    active_unlink(cl, cs);
    cstream_free(cs);
    if (cl->retiring && cl->active == NULL) {
        schedule_flush(cl);
    }
    return 0;
}

static int on_error(nghttp2_session *session, int lib_error_code, const char *msg, size_t len,
                    void *user_data)
{
    gw_client *cl = user_data;
    (void)session;
    bg_log(BG_LOG_INFO, "peer=%s msg=\"http2 error\" code=%d detail=\"%.*s\"", cl->name,
           lib_error_code, (int)len, msg);
    return 0;
}

/* ---- session lifecycle ------------------------------------------------------------------------ */

static void submit_one(gw_client *cl, gw_cstream *cs)
{
    const conf_url *u = &cl->urls[cl->url_idx];
    char clen[24];
    bg_fmt_u64(clen, cs->body.len);
    nghttp2_nv nva[12] = {
        NV(":method", "POST"),
        NV(":scheme", u->tls ? "https" : "http"),
        NV(":authority", cl->authority),
        NV(":path", cs->path),
        NV("content-type", cs->req_type[0] ? cs->req_type : "application/json"),
        NV("content-length", clen),
        NV("x-request-id", cs->request_id),
        NV("x-baygate-hops", cs->hops),
        NV("x-baygate-dest", cs->dest),
    };
    size_t nnv = 9;
    if (cs->contract[0]) {
        nghttp2_nv nv = NV("x-baygate-contract", cs->contract);
        nva[nnv++] = nv;
    }
    if (cs->requester[0]) {
        nghttp2_nv nv = NV("x-baygate-requester", cs->requester);
        nva[nnv++] = nv;
    }
    if (cs->deadline[0]) {
        nghttp2_nv nv = NV("x-baygate-deadline-ms", cs->deadline);
        nva[nnv++] = nv;
    }
    nghttp2_data_provider prd = {.source = {.ptr = cs}, .read_callback = req_read_cb};
    int32_t id = nghttp2_submit_request(cl->h2, NULL, nva, nnv,
                                        cs->body.len > 0 ? &prd : NULL, cs);
    if (id < 0) {
        fail_down(cs, "bad_gateway", nghttp2_strerror(id));
        cstream_free(cs);
        return;
    }
    cs->id = id;
    cs->next = cl->active;
    cs->prev = NULL;
    if (cl->active != NULL) {
        cl->active->prev = cs;
    }
    cl->active = cs;
}

static void submit_pending(gw_client *cl)
{
    while (cl->pending != NULL) {
        gw_cstream *cs = cl->pending;
        pending_remove(cl, cs);
        submit_one(cl, cs);
    }
    schedule_flush(cl);
}

static void fail_pending(gw_client *cl, const char *why)
{
    while (cl->pending != NULL) {
        gw_cstream *cs = cl->pending;
        pending_remove(cl, cs);
        fail_down(cs, unavailable_code(cl), why);
        cstream_free(cs);
    }
}

/* Tears the session down; in-flight streams fail. Then either the next URL is tried at once
 * (connect failures with URLs left), or the backoff timer starts. It and client_connect()
 * recurse only through an immediate connect failure, at most once per configured URL. */
static void client_drop(gw_client *cl, const char *why, bool connect_failure)
{
    bool was_connected = gw_client_get_state(cl) == GW_CLIENT_CONNECTED;
    bg_strlcpy(cl->last_error, why, sizeof(cl->last_error));
    bg_log(was_connected ? BG_LOG_WARN : BG_LOG_INFO, "peer=%s url=%s msg=\"session down\" why=\"%s\"",
           cl->name, cl->urls[cl->url_idx].text, why);
    while (cl->active != NULL) {
        gw_cstream *cs = cl->active;
        active_unlink(cl, cs);
        if (cl->h2 != NULL) {
            nghttp2_session_set_stream_user_data(cl->h2, cs->id, NULL);
        }
        fail_down(cs, unavailable_code(cl), why);
        cstream_free(cs);
    }
    if (cl->h2 != NULL) {
        nghttp2_session_del(cl->h2);
        cl->h2 = NULL;
    }
    if (cl->io_live) {
        gw_io_dispose(&cl->io);
        cl->io_live = false;
        if (was_connected) {
            gw_metrics_conn(cl->w->srv->metrics, false, -1);
        }
    }
    event_del(&cl->timer_ev);
    event_del(&cl->ping_ev);
    cl->goaway = false;
    cl->ping_outstanding = false;
    const conf_timeouts *to = &cl->w->srv->cfg->timeouts;
    if (cl->retiring) {
        fail_pending(cl, why);
        set_state(cl, GW_CLIENT_IDLE);
        schedule_flush(cl); /* frees it */
        return;
    }
    if (connect_failure && cl->url_idx + 1 < cl->nurls) {
        cl->url_idx++;
        client_connect(cl); /* fail over to the next URL; pending requests wait */
        return;
    }
    if (connect_failure) {
        cl->url_idx = 0;
    }
    if (!connect_failure && cl->pending != NULL) {
        client_connect(cl); /* a clean close (GOAWAY) with requests waiting: reconnect now */
        return;
    }
    fail_pending(cl, why);
    set_state(cl, GW_CLIENT_BACKOFF);
    set_timer(&cl->timer_ev, cl->backoff_ms);
    cl->backoff_ms = cl->backoff_ms * 2 > to->backoff_max_ms ? to->backoff_max_ms
                                                              : cl->backoff_ms * 2;
}

static void client_flush(gw_client *cl)
{
    if (cl->h2 == NULL || gw_client_get_state(cl) != GW_CLIENT_CONNECTED) {
        return;
    }
    const char *why = NULL;
    if (gw_h2_send(cl->h2, &cl->io, &why) != 0) {
        char copy[sizeof(cl->io.err)];
        bg_strlcpy(copy, why, sizeof(copy)); /* |why| may point into the io being torn down */
        client_drop(cl, copy, false);
        return;
    }
    if (!nghttp2_session_want_read(cl->h2) && !nghttp2_session_want_write(cl->h2) &&
        gw_io_pending(&cl->io) == 0) {
        client_drop(cl, cl->goaway ? "peer closed the session (GOAWAY)" : "session ended",
                    false);
    }
}

/* A retired session with nothing left in flight leaves the worker's list and is freed. */
static void maybe_free_retired(gw_client *cl)
{
    if (!cl->retiring || cl->active != NULL || cl->pending != NULL) {
        return;
    }
    gw_client **pp = &cl->w->retiring;
    while (*pp != NULL && *pp != cl) {
        pp = &(*pp)->next_retiring;
    }
    if (*pp == cl) {
        *pp = cl->next_retiring;
    }
    bg_log(BG_LOG_INFO, "peer=%s msg=\"retired session closed\"", cl->name);
    gw_client_free(cl);
}

/* Deferred flush, queued by whoever submitted frames; also where retired sessions end,
 * since no callback of this session is on the stack here. */
static void client_run_flush(gw_flushable *f)
{
    gw_client *cl = (gw_client *)(void *)((char *)f - offsetof(gw_client, fl));
    client_flush(cl);
    maybe_free_retired(cl);
}

/* The socket is readable: feed nghttp2 until the kernel has nothing more. */
static void client_readable(void *owner)
{
    gw_client *cl = owner;
    gw_worker *w = cl->w;
    bool got;
    const char *why = NULL;
    int rv = cl->h2 != NULL ? gw_h2_recv(cl->h2, &cl->io, &got, &why) : 0;
    if (rv != 0) {
        char copy[sizeof(cl->io.err)]; /* |why| may point into the io being torn down */
        bg_strlcpy(copy, rv == GW_H2_EOF ? "connection closed by peer" : why, sizeof(copy));
        client_drop(cl, copy, false);
        gw_worker_run_deferred(w);
        return;
    }
    client_flush(cl);
    gw_worker_run_deferred(w);
}

static void client_writable(void *owner)
{
    gw_client *cl = owner;
    gw_worker *w = cl->w;
    client_flush(cl);
    gw_worker_run_deferred(w);
}

static void client_failed(void *owner, const char *why)
{
    gw_client *cl = owner;
    gw_worker *w = cl->w;
    client_drop(cl, why, gw_client_get_state(cl) == GW_CLIENT_CONNECTING);
    gw_worker_run_deferred(w);
}

static int session_start(gw_client *cl)
{
    const conf_gateway *cfg = cl->w->srv->cfg;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return BG_ERR_NOMEM;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return BG_ERR_NOMEM;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rv = nghttp2_session_client_new2(&cl->h2, cbs, cl, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        cl->h2 = NULL;
        return BG_ERR_NOMEM;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)cfg->limits.stream_window_bytes},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
    };
    nghttp2_submit_settings(cl->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(cl->h2, NGHTTP2_FLAG_NONE, 0, 16 * 1024 * 1024);
    return 0;
}

/* TCP (and TLS) up: check the peer's identity, then start the HTTP/2 session. */
static void client_connected(void *owner)
{
    gw_client *cl = owner;
    gw_worker *w = cl->w;
    if (cl->io.ssl != NULL) {
        trust_identity id;
        char why[400] = "";
        if (!trust_ssl_is_h2(cl->io.ssl)) {
            snprintf(why, sizeof(why), "ALPN h2 not negotiated");
        } else if (trust_identity_from_ssl(cl->io.ssl, &id) != 0 || !id.verified) {
            snprintf(why, sizeof(why), "peer certificate not verified");
        } else if (cl->peer != NULL && strcmp(id.spiffe_id, cl->peer->spiffe_id) != 0) {
            snprintf(why, sizeof(why), "peer identity %s, expected %s",
                     id.spiffe_id[0] ? id.spiffe_id : "(none)", cl->peer->spiffe_id);
        }
        if (why[0]) {
            client_drop(cl, why, true);
            gw_worker_run_deferred(w);
            return;
        }
    }
    event_del(&cl->timer_ev);
    if (session_start(cl) != 0) {
        client_drop(cl, "cannot create http2 session", true);
        gw_worker_run_deferred(w);
        return;
    }
    set_state(cl, GW_CLIENT_CONNECTED);
    gw_metrics_conn(w->srv->metrics, false, +1);
    cl->backoff_ms = w->srv->cfg->timeouts.backoff_initial_ms;
    bg_log(BG_LOG_INFO, "peer=%s url=%s msg=\"session up\"", cl->name,
           cl->urls[cl->url_idx].text);
    set_timer(&cl->ping_ev, w->srv->cfg->timeouts.ping_interval_ms);
    submit_pending(cl);
    client_flush(cl);
    gw_worker_run_deferred(w);
}

static const gw_io_ops client_io_ops = {
    .readable = client_readable,
    .writable = client_writable,
    .connected = client_connected,
    .failed = client_failed,
};

/* Connect timeout while CONNECTING; end of backoff while BACKOFF. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    gw_client *cl = arg;
    (void)fd;
    (void)what;
    gw_worker *w = cl->w;
    if (gw_client_get_state(cl) == GW_CLIENT_CONNECTING) {
        char why[64];
        snprintf(why, sizeof(why), "connect timeout (%u ms)", w->srv->cfg->timeouts.connect_ms);
        client_drop(cl, why, true);
    } else if (gw_client_get_state(cl) == GW_CLIENT_BACKOFF) {
        client_connect(cl);
    }
    gw_worker_run_deferred(w);
}

/* Keep-alive: send a PING; if the previous one is still unanswered, the session is dead. */
static void on_ping(evutil_socket_t fd, short what, void *arg)
{
    gw_client *cl = arg;
    (void)fd;
    (void)what;
    if (cl->h2 == NULL) {
        return;
    }
    gw_worker *w = cl->w;
    if (cl->ping_outstanding) {
        client_drop(cl, "ping timeout", false);
    } else {
        nghttp2_submit_ping(cl->h2, NGHTTP2_FLAG_NONE, NULL);
        cl->ping_outstanding = true;
        set_timer(&cl->ping_ev, w->srv->cfg->timeouts.ping_timeout_ms);
        client_flush(cl);
    }
    gw_worker_run_deferred(w);
}

static void client_connect(gw_client *cl)
{
    const conf_url *u = &cl->urls[cl->url_idx];
    const conf_timeouts *to = &cl->w->srv->cfg->timeouts;
    char port[8];
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", u->port);
    snprintf(cl->authority, sizeof(cl->authority), "%s%s%s:%u", strchr(u->host, ':') ? "[" : "",
             u->host, strchr(u->host, ':') ? "]" : "", u->port);
    set_state(cl, GW_CLIENT_CONNECTING);
    int gai = getaddrinfo(u->host, port, &hints, &res);
    if (gai != 0 || res == NULL) {
        char why[128];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", u->host, gai_strerror(gai));
        if (res != NULL) {
            freeaddrinfo(res);
        }
        client_drop(cl, why, true);
        return;
    }
    struct ssl_st *ssl = NULL;
    if (u->tls && (ssl = trust_tls_client_ssl(cl->w->srv->tls, NULL)) == NULL) {
        freeaddrinfo(res);
        client_drop(cl, "out of memory", true);
        return;
    }
    set_timer(&cl->timer_ev, to->connect_ms);
    int rv = gw_io_init_connect(&cl->io, cl->w->base, res->ai_addr, (socklen_t)res->ai_addrlen,
                                ssl, &client_io_ops, cl);
    freeaddrinfo(res);
    if (rv != 0) {
        char why[sizeof(cl->io.err)];
        memcpy(why, cl->io.err, sizeof(why));
        client_drop(cl, why, true);
        return;
    }
    cl->io_live = true;
}

int gw_client_new(gw_client **out, gw_worker *w, gw_gen *gen, const conf_peer *peer,
                  const conf_url *upstream_url)
{
    gw_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        return BG_ERR_NOMEM;
    }
    cl->w = w;
    cl->gen = gen;
    gw_gen_ref(gen);
    cl->peer = peer;
    if (peer != NULL) {
        cl->urls = peer->urls;
        cl->nurls = peer->nurls;
        bg_strlcpy(cl->name, peer->name, sizeof(cl->name));
    } else {
        cl->urls = upstream_url;
        cl->nurls = 1;
        snprintf(cl->name, sizeof(cl->name), "upstream");
    }
    cl->backoff_ms = w->srv->cfg->timeouts.backoff_initial_ms;
    atomic_init(&cl->state, GW_CLIENT_IDLE);
    gw_metrics_peer_state(w->srv->metrics, cl->name, -1, GW_CLIENT_IDLE);
    evtimer_assign(&cl->timer_ev, w->base, on_timer, cl);
    evtimer_assign(&cl->ping_ev, w->base, on_ping, cl);
    cl->fl.run = client_run_flush;
    client_connect(cl);
    *out = cl;
    return 0;
}

void gw_client_free(gw_client *cl)
{
    if (cl == NULL) {
        return;
    }
    while (cl->pending != NULL) {
        gw_cstream *cs = cl->pending;
        pending_remove(cl, cs);
        fail_down(cs, unavailable_code(cl), "gateway shutting down");
        cstream_free(cs);
    }
    while (cl->active != NULL) {
        gw_cstream *cs = cl->active;
        active_unlink(cl, cs);
        fail_down(cs, unavailable_code(cl), "gateway shutting down");
        cstream_free(cs);
    }
    if (cl->h2 != NULL) {
        nghttp2_session_del(cl->h2);
    }
    if (cl->io_live) {
        if (gw_client_get_state(cl) == GW_CLIENT_CONNECTED) {
            gw_metrics_conn(cl->w->srv->metrics, false, -1);
        }
        gw_io_dispose(&cl->io);
    }
    event_del(&cl->timer_ev);
    event_del(&cl->ping_ev);
    gw_worker_undefer(cl->w, &cl->fl);
    gw_metrics_peer_state(cl->w->srv->metrics, cl->name, atomic_load(&cl->state), -1);
    gw_gen_unref(cl->gen);
    free(cl);
}

static bool same_url(const conf_url *a, const conf_url *b)
{
    return strcmp(a->text, b->text) == 0;
}

bool gw_client_same_target(const gw_client *cl, const conf_peer *peer, const conf_url *url)
{
    if ((cl->peer == NULL) != (peer == NULL)) {
        return false;
    }
    if (peer == NULL) {
        return same_url(&cl->urls[0], url);
    }
    if (strcmp(cl->peer->name, peer->name) != 0 ||
        strcmp(cl->peer->spiffe_id, peer->spiffe_id) != 0 || cl->nurls != peer->nurls) {
        return false;
    }
    for (size_t i = 0; i < cl->nurls; i++) {
        if (!same_url(&cl->urls[i], &peer->urls[i])) {
            return false;
        }
    }
    return true;
}

void gw_client_rebind(gw_client *cl, gw_gen *gen, const conf_peer *peer, const conf_url *url)
{
    gw_gen_ref(gen);
    gw_gen_unref(cl->gen);
    cl->gen = gen;
    cl->peer = peer;
    cl->urls = peer != NULL ? peer->urls : url;
}

void gw_client_retire(gw_client *cl)
{
    cl->retiring = true;
    cl->next_retiring = cl->w->retiring;
    cl->w->retiring = cl;
    if (gw_client_get_state(cl) == GW_CLIENT_BACKOFF) {
        event_del(&cl->timer_ev); /* no reconnects; a connect in progress keeps its timeout */
        set_state(cl, GW_CLIENT_IDLE);
    }
    bg_log(BG_LOG_INFO, "peer=%s msg=\"session retired by reload\" in_flight=%s", cl->name,
           cl->active != NULL || cl->pending != NULL ? "yes" : "no");
    if (cl->h2 != NULL) {
        nghttp2_submit_goaway(cl->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    }
    schedule_flush(cl); /* frees it when nothing is in flight */
}

static void start(gw_client *cl, gw_stream *s, const char *path, const char *hops,
                  gw_call_cb cb, const uint8_t *body, size_t len, const char *ctype);
static void enqueue(gw_client *cl, gw_cstream *cs, gw_client_state st);

void gw_client_forward(gw_client *cl, gw_stream *s, const char *path, const char *hops)
{
    start(cl, s, path, hops, NULL, NULL, 0, NULL);
}

void gw_client_call(gw_client *cl, gw_stream *s, const char *path, const char *hops,
                    const uint8_t *body, size_t len, const char *ctype, gw_call_cb cb)
{
    start(cl, s, path, hops, cb, body, len, ctype);
}

static void start(gw_client *cl, gw_stream *s, const char *path, const char *hops,
                  gw_call_cb cb, const uint8_t *body, size_t len, const char *ctype)
{
    gw_client_state st = gw_client_get_state(cl);
    if (st == GW_CLIENT_BACKOFF || cl->npending >= MAX_PENDING) {
        bool busy = st != GW_CLIENT_BACKOFF;
        char msg[300];
        if (busy) {
            snprintf(msg, sizeof(msg), "too many requests waiting for %s", cl->name);
        } else {
            snprintf(msg, sizeof(msg), "%s %s unavailable: %s", cl->peer ? "peer" : "upstream",
                     cl->name, cl->last_error);
        }
        const char *code = busy ? "overloaded" : unavailable_code(cl);
        if (cb != NULL) {
            cb(s, 0, code, msg, NULL, 0);
        } else {
            gw_stream_error(s, busy ? 503 : 502, code, "%s", msg);
        }
        return;
    }
    gw_cstream *cs = malloc(sizeof(*cs));
    if (cs != NULL) {
        memset(cs, 0, offsetof(gw_cstream, path));
        cs->content_type[0] = cs->content_length[0] = cs->route[0] = 0;
        cs->contract[0] = cs->requester[0] = cs->deadline[0] = 0;
    }
    if (cs == NULL) {
        gw_stream_error(s, 500, "internal", "out of memory");
        return;
    }
    cs->cl = cl;
    cs->down = s;
    cs->cb = cb;
    bg_buf_init(&cs->resp);
    if (cb != NULL) {
        bg_buf_init(&cs->body);
        if (len > 0 && bg_buf_append(&cs->body, body, len) != 0) {
            free(cs);
            cb(s, 0, "internal", "out of memory", NULL, 0);
            return;
        }
    } else {
        cs->body = s->body; /* moved */
        bg_buf_init(&s->body);
    }
    bg_strlcpy(cs->path, path, sizeof(cs->path));
    bg_strlcpy(cs->request_id, s->request_id, sizeof(cs->request_id));
    bg_strlcpy(cs->hops, hops, sizeof(cs->hops));
    bg_strlcpy(cs->dest, s->dest, sizeof(cs->dest));
    bg_strlcpy(cs->req_type, ctype != NULL ? ctype : s->req_type, sizeof(cs->req_type));
    bg_strlcpy(cs->contract, s->contract, sizeof(cs->contract));
    bg_strlcpy(cs->requester, s->requester, sizeof(cs->requester));
    if (s->deadline_at_us > 0) {
        uint64_t now = bg_now_us();
        uint64_t left = s->deadline_at_us > now ? (s->deadline_at_us - now) / 1000 : 0;
        if (left <= 1) { /* expired here: not forwarded */
            s->up = NULL;
            cstream_free(cs);
            gw_stream_error(s, 504, "deadline_exceeded",
                            "the query's deadline passed before it left %s",
                            s->conn->w->srv->cfg->city);
            return;
        }
        bg_fmt_u64(cs->deadline, left);
    }
    s->up = cs;
    enqueue(cl, cs, st);
}

/* Submits |cs| now when the session is up, else queues it (connecting when idle). */
static void enqueue(gw_client *cl, gw_cstream *cs, gw_client_state st)
{
    if (st == GW_CLIENT_CONNECTED && !cl->goaway) {
        submit_one(cl, cs);
        schedule_flush(cl);
        return;
    }
    cs->pending = true;
    if (cl->pending_tail != NULL) {
        cl->pending_tail->next = cs;
    } else {
        cl->pending = cs;
    }
    cl->pending_tail = cs;
    cl->npending++;
    if (st == GW_CLIENT_IDLE) {
        client_connect(cl);
    }
}

void gw_client_leg(gw_client *cl, gw_leg *leg, const uint8_t *body, size_t len)
{
    gw_client_state st = gw_client_get_state(cl);
    leg->cs = NULL;
    leg->route[0] = 0;
    if (st == GW_CLIENT_BACKOFF || cl->npending >= MAX_PENDING) {
        char msg[300];
        bool busy = st != GW_CLIENT_BACKOFF;
        if (busy) {
            snprintf(msg, sizeof(msg), "too many requests waiting for %s", cl->name);
        } else {
            snprintf(msg, sizeof(msg), "%s %s unavailable: %s", cl->peer ? "peer" : "upstream",
                     cl->name, cl->last_error);
        }
        leg->done(leg, 0, busy ? "overloaded" : unavailable_code(cl), msg, NULL, 0);
        return;
    }
    gw_cstream *cs = calloc(1, sizeof(*cs));
    if (cs == NULL || (len > 0 && bg_buf_append(&cs->body, body, len) != 0)) {
        free(cs);
        leg->done(leg, 0, "internal", "out of memory", NULL, 0);
        return;
    }
    cs->cl = cl;
    cs->leg = leg;
    bg_buf_init(&cs->resp);
    bg_strlcpy(cs->path, leg->path, sizeof(cs->path));
    bg_strlcpy(cs->request_id, leg->request_id, sizeof(cs->request_id));
    bg_strlcpy(cs->hops, leg->hops, sizeof(cs->hops));
    bg_strlcpy(cs->dest, leg->dest, sizeof(cs->dest));
    bg_strlcpy(cs->req_type, leg->ctype, sizeof(cs->req_type));
    bg_strlcpy(cs->contract, leg->contract, sizeof(cs->contract));
    bg_strlcpy(cs->requester, leg->requester, sizeof(cs->requester));
    if (leg->deadline_ms > 0) {
        bg_fmt_u64(cs->deadline, leg->deadline_ms);
    }
    leg->cs = cs;
    enqueue(cl, cs, st);
}

void gw_leg_cancel(gw_leg *leg)
{
    gw_cstream *cs = leg->cs;
    if (cs == NULL) {
        return;
    }
    leg->cs = NULL;
    cs->leg = NULL;
    gw_cstream_detach(cs);
}

void gw_cstream_detach(gw_cstream *cs)
{
    gw_client *cl = cs->cl;
    cs->down = NULL;
    if (cs->pending) {
        pending_remove(cl, cs);
        cstream_free(cs);
        return;
    }
    if (cl->h2 != NULL && cs->id > 0) {
        /* the stream stays ours until on_stream_close frees it */
        nghttp2_submit_rst_stream(cl->h2, NGHTTP2_FLAG_NONE, cs->id, NGHTTP2_CANCEL);
        schedule_flush(cl);
    }
}

void gw_cstream_consumed(gw_cstream *cs, size_t n)
{
    gw_client *cl = cs->cl;
    if (cl->h2 != NULL && cs->id > 0) {
        nghttp2_session_consume_stream(cl->h2, cs->id, n);
        schedule_flush(cl);
    }
}

void gw_client_free_retiring(gw_worker *w)
{
    while (w->retiring != NULL) {
        gw_client *cl = w->retiring;
        w->retiring = cl->next_retiring;
        gw_client_free(cl);
    }
}
