/* tests/unit/gateway/test_server.c: the HTTP/2 front end and request pipeline, driven by a
 * real nghttp2 client over a socketpair into a real worker loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>

#include "harness.h"

typedef struct reply {
    int status;
    char request_id[80];
    char route[256];
    char body[65536];
    size_t body_len;
    bool closed;
    uint32_t close_code;
    bool goaway;
    uint32_t goaway_code;
} reply;

static int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                       const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
    (void)s;
    (void)f;
    (void)flags;
    reply *r = ud;
    if (nl == 7 && memcmp(n, ":status", 7) == 0) {
        r->status = atoi((const char *)v);
    } else if (nl == 12 && memcmp(n, "x-request-id", 12) == 0 && vl < sizeof(r->request_id)) {
        memcpy(r->request_id, v, vl);
        r->request_id[vl] = 0;
    } else if (nl == 15 && memcmp(n, "x-baygate-route", 15) == 0 && vl < sizeof(r->route)) {
        memcpy(r->route, v, vl);
        r->route[vl] = 0;
    }
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
                     void *ud)
{
    (void)s;
    (void)flags;
    (void)id;
    reply *r = ud;
    if (r->body_len + len < sizeof(r->body)) {
        memcpy(r->body + r->body_len, d, len);
        r->body_len += len;
        r->body[r->body_len] = 0;
    }
    return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s;
    (void)id;
    reply *r = ud;
    r->closed = true;
    r->close_code = code;
    return 0;
}

static int c_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    reply *r = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        r->goaway = true;
        r->goaway_code = f->goaway.error_code;
    }
    return 0;
}

static nghttp2_session *client_new(reply *r)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session *s;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_on_frame);
    nghttp2_session_client_new(&s, cb, r);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
    return s;
}

/* Pumps bytes both ways until the reply's stream closed or nothing moves. */
static void pump(gwt *t, int fd, nghttp2_session *c, reply *r)
{
    for (int round = 0; round < 200 && !r->closed && !r->goaway; round++) {
        const uint8_t *data;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c, &data)) > 0) {
            assert_int_equal(write(fd, data, (size_t)n), n);
        }
        gwt_run(t);
        uint8_t buf[16384];
        bool got = false;
        while ((n = read(fd, buf, sizeof(buf))) > 0) {
            assert_true(nghttp2_session_mem_recv(c, buf, (size_t)n) == n);
            got = true;
        }
        if (!got) {
            usleep(2000); /* an answer may be on the data space's executor thread */
        }
    }
}

typedef struct body_src {
    const char *p;
    size_t len, off;
} body_src;

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    body_src *b = src->ptr;
    size_t n = b->len - b->off < len ? b->len - b->off : len;
    memcpy(buf, b->p + b->off, n);
    b->off += n;
    if (b->off == b->len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}

static void request(gwt *t, const char *method, const char *path, const char *body,
                    const char *extra_name, const char *extra_val, reply *r)
{
    memset(r, 0, sizeof(*r));
    int fd = gwt_connect(t);
    assert_true(fd >= 0);
    nghttp2_session *c = client_new(r);
    nghttp2_nv nva[5] = {NV(":method", method), NV(":scheme", "http"),
                         NV(":authority", "test"), NV(":path", path)};
    size_t n = 4;
    if (extra_name != NULL) {
        nghttp2_nv nv = NV(extra_name, extra_val);
        nva[n++] = nv;
    }
    body_src b = {body, body ? strlen(body) : 0, 0};
    nghttp2_data_provider prd = {.source = {.ptr = &b}, .read_callback = body_read};
    assert_true(nghttp2_submit_request(c, NULL, nva, n, body ? &prd : NULL, NULL) > 0);
    pump(t, fd, c, r);
    nghttp2_session_del(c);
    close(fd);
    gwt_run(t);
}

static int setup(void **state)
{
    gwt *t = calloc(1, sizeof(*t));
    if (t == NULL || gwt_init(t, NULL) != 0) {
        fprintf(stderr, "setup: %s\n", t ? t->eb.msg : "nomem");
        if (t != NULL) {
            gwt_free(t);
            free(t);
        }
        *state = NULL;
        return -1;
    }
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    gwt *t = *state;
    if (t != NULL) {
        gwt_free(t);
        free(t);
    }
    return 0;
}

static void test_healthz_ok(void **state)
{
    reply r;
    request(*state, "GET", "/healthz", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"city\":\"testcity\""));
    assert_int_equal(strlen(r.request_id), 32);
}

static void test_unknown_path_404(void **state)
{
    reply r;
    request(*state, "GET", "/nope", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "\"code\":\"not_found\""));
}

static void test_method_not_allowed_405(void **state)
{
    reply r;
    request(*state, "GET", "/v1/queries", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 405);
}

static void test_query_local_builtin(void **state)
{
    reply r;
    request(*state, "POST", "/v1/queries", "{\"dataset\":\"testcity/stroke-registry\"}",
            "x-request-id", "abc-123", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.request_id, "abc-123");
    assert_non_null(strstr(r.body, "\"dataset\":\"testcity/stroke-registry\""));
    assert_non_null(strstr(r.body, "\"count\":1000")); /* every synthetic row, own city */
}

static void test_query_unknown_dataset_404(void **state)
{
    reply r;
    request(*state, "POST", "/v1/queries", "{\"dataset\":\"testcity/stroke-registy\"}", NULL,
            NULL, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "unknown_dataset"));
    assert_non_null(strstr(r.body, "stroke-registry")); /* the near name */
}

static void test_query_bad_request_id_replaced(void **state)
{
    reply r;
    request(*state, "POST", "/v1/queries", "{\"dataset\":\"testcity/stroke-registry\"}",
            "x-request-id", "bad id with spaces", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(strlen(r.request_id), 32);
}

static void test_query_invalid_json_400(void **state)
{
    reply r;
    request(*state, "POST", "/v1/queries", "{not json", NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "invalid_json"));
}

static void test_query_invalid_dataset_400(void **state)
{
    reply r;
    request(*state, "POST", "/v1/queries", "{\"dataset\":\"NoSlash\"}", NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "invalid_dataset"));
}

static void test_query_unknown_city_404(void **state)
{
    reply r;
    request(*state, "POST", "/v1/queries", "{\"dataset\":\"atlantis/x\"}", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "unknown_city"));
}

static void test_query_too_large_413(void **state)
{
    char big[6000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    reply r;
    request(*state, "POST", "/v1/queries", big, NULL, NULL, &r);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "body_too_large"));
}

static void test_fed_query_from_non_peer_403(void **state)
{
    reply r;
    request(*state, "POST", "/fed/v1/query", "{\"dataset\":\"testcity/x\"}", NULL, NULL, &r);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body, "peer_not_allowed"));
}

static void test_metrics_counts_requests(void **state)
{
    reply r;
    request(*state, "GET", "/healthz", NULL, NULL, NULL, &r);
    request(*state, "GET", "/metrics", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "baygate_requests_total{route=\"/healthz\",status=\"200\"}"));
    assert_non_null(strstr(r.body, "baygate_request_duration_seconds_bucket"));
}

static void test_accesslog_line_fields(void **state)
{
    gwt *t = *state;
    char path[] = "/tmp/bg-test-access-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    gw_accesslog *saved = t->srv.alog;
    assert_int_equal(gw_accesslog_new(&t->srv.alog, path, &t->eb), 0);
    reply r;
    request(t, "POST", "/v1/queries", "{\"dataset\":\"testcity/stroke-registry\"}",
            "x-request-id", "log-check-1", &r);
    assert_int_equal(r.status, 200);
    request(t, "POST", "/v1/queries", "{bad", "x-request-id", "log-check-2", &r);
    assert_int_equal(r.status, 400);
    gw_accesslog_free(t->srv.alog);
    t->srv.alog = saved;

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        assert_non_null(j);
        const char *rid = json_string_value(json_object_get(j, "request_id"));
        assert_non_null(rid);
        assert_string_equal(json_string_value(json_object_get(j, "city")), "testcity");
        assert_string_equal(json_string_value(json_object_get(j, "peer")),
                            "spiffe://testcity.gba/firm/test");
        assert_string_equal(json_string_value(json_object_get(j, "route")), "/v1/queries");
        assert_non_null(json_object_get(j, "time"));
        assert_true(json_is_real(json_object_get(j, "latency_ms")));
        if (strcmp(rid, "log-check-1") == 0) {
            assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
            assert_string_equal(json_string_value(json_object_get(j, "dest")), "testcity");
            assert_true(json_integer_value(json_object_get(j, "bytes_out")) > 0);
            n++;
        } else if (strcmp(rid, "log-check-2") == 0) {
            assert_int_equal(json_integer_value(json_object_get(j, "status")), 400);
            assert_string_equal(json_string_value(json_object_get(j, "error")), "invalid_json");
            n++;
        }
        json_decref(j);
    }
    fclose(f);
    unlink(path);
    assert_int_equal(n, 2);
}

static void test_garbage_frames_goaway_protocol_error(void **state)
{
    gwt *t = *state;
    int fd = gwt_connect(t);
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /* SETTINGS frame with a length that is not a multiple of 6: a connection error */
    static const uint8_t bad[] = {0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5};
    assert_int_equal(write(fd, preface, sizeof(preface) - 1), (ssize_t)sizeof(preface) - 1);
    assert_int_equal(write(fd, bad, sizeof(bad)), (ssize_t)sizeof(bad));
    gwt_run(t);
    uint8_t buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    assert_true(n > 0);
    bool found = false;
    for (ssize_t off = 0; off + 9 <= n;) {
        size_t flen = ((size_t)buf[off] << 16) | ((size_t)buf[off + 1] << 8) | buf[off + 2];
        if (buf[off + 3] == 7 && off + 9 + 8 <= n) {
            uint32_t code = ((uint32_t)buf[off + 13] << 24) | ((uint32_t)buf[off + 14] << 16) |
                            ((uint32_t)buf[off + 15] << 8) | buf[off + 16];
            assert_true(code == NGHTTP2_PROTOCOL_ERROR || code == NGHTTP2_FRAME_SIZE_ERROR);
            found = true;
        }
        off += 9 + (ssize_t)flen;
    }
    assert_true(found);
    close(fd);
    gwt_run(t);
    /* the worker still serves others */
    reply r;
    request(t, "GET", "/healthz", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
}

static void test_bad_preface_closes(void **state)
{
    gwt *t = *state;
    int fd = gwt_connect(t);
    static const char http1[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(fd, http1, sizeof(http1) - 1), (ssize_t)sizeof(http1) - 1);
    gwt_run(t);
    uint8_t buf[4096];
    ssize_t n;
    size_t total = 0;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        total += (size_t)n;
    }
    assert_int_equal(n, 0); /* EOF: the gateway closed the connection */
    (void)total;
    close(fd);
    assert_int_equal(t->srv.workers[0].nconns, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_ok),
        cmocka_unit_test(test_unknown_path_404),
        cmocka_unit_test(test_method_not_allowed_405),
        cmocka_unit_test(test_query_local_builtin),
        cmocka_unit_test(test_query_unknown_dataset_404),
        cmocka_unit_test(test_query_bad_request_id_replaced),
        cmocka_unit_test(test_query_invalid_json_400),
        cmocka_unit_test(test_query_invalid_dataset_400),
        cmocka_unit_test(test_query_unknown_city_404),
        cmocka_unit_test(test_query_too_large_413),
        cmocka_unit_test(test_fed_query_from_non_peer_403),
        cmocka_unit_test(test_metrics_counts_requests),
        cmocka_unit_test(test_accesslog_line_fields),
        cmocka_unit_test(test_garbage_frames_goaway_protocol_error),
        cmocka_unit_test(test_bad_preface_closes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
