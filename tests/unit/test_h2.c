/* test_h2.c - unit tests for the HTTP/2 session (src/http/h2.c) without sockets: an
 * nghttp2 client session is the peer, bytes are pumped between the two in memory. Covers
 * the preface test, the request built from a stream, the translation of a handler's
 * HTTP/1.1 answer (hop-by-hop fields dropped, names lower-cased, chunked body de-chunked,
 * 1xx dropped), a short answer ending in RST_STREAM, and pause holding the client's
 * flow-control window until resume. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/http/h2.h"

/* ---- the server side: a connection without a socket ---- */

static sl_worker_t g_w;
static sl_conn_cfg_t g_cfg;
static sl_conn_t *g_c;
static char *g_out; /* bytes the server wrote, not yet given to the client */
static size_t g_out_len;
static int g_closed;

static int sink_write(sl_conn_t *c, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                      unsigned nowned, void (*release)(void *arg), void *release_arg)
{
    for (unsigned i = 0; i < n; i++) {
        g_out = realloc(g_out, g_out_len + bufs[i].len);
        assert_non_null(g_out);
        memcpy(g_out + g_out_len, bufs[i].base, bufs[i].len);
        g_out_len += bufs[i].len;
    }
    for (unsigned i = 0; i < nowned; i++)
        sl_buf_put(&c->w->bufs, owned[i]);
    if (release)
        release(release_arg);
    return 0;
}

static void sink_close(sl_conn_t *c)
{
    (void)c;
    g_closed = 1;
}

static const sl_h2_io_t sink = {sink_write, sink_close};

/* What the handler saw and does. */
static void (*g_answer)(sl_exchange_t *x);
static sl_exchange_t *g_x;
static uint64_t g_x_id;
static char g_method[16], g_path[64], g_query[64], g_host[64], g_cookie[64];
static int64_t g_cl;
static uint32_t g_flags;
static size_t g_body_len;
static int g_body_end, g_pause_body, g_aborted;

static void copy_slice(char *dst, size_t cap, sl_slice_t s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n)
        memcpy(dst, s.p, n);
    dst[n] = 0;
}

static int on_body(sl_exchange_t *x, const char *p, size_t n)
{
    (void)x;
    (void)p;
    g_body_len += n;
    return 0;
}

static void on_body_end(sl_exchange_t *x)
{
    g_body_end = 1;
    if (g_answer)
        g_answer(x);
}

static void on_abort(sl_exchange_t *x)
{
    (void)x;
    g_aborted = 1;
    g_x = NULL;
}

static const sl_exchange_ops_t ops = {on_body, on_body_end, NULL, on_abort};

static void handler(sl_exchange_t *x)
{
    const sl_http_request_t *r = &x->req;
    g_x = x;
    g_x_id = x->id;
    copy_slice(g_method, sizeof(g_method), r->method);
    copy_slice(g_path, sizeof(g_path), r->path);
    copy_slice(g_query, sizeof(g_query), r->query);
    copy_slice(g_host, sizeof(g_host), r->host);
    g_cookie[0] = 0;
    for (unsigned i = 0; i < r->nheaders; i++)
        if (r->headers[i].id == SL_H_COOKIE)
            copy_slice(g_cookie, sizeof(g_cookie),
                       (sl_slice_t){r->headers[i].value, r->headers[i].value_len});
    g_cl = r->content_length;
    g_flags = r->flags;
    x->ops = &ops;
    if (g_pause_body)
        sl_conn_pause(x);
    if (x->body_done && g_answer)
        g_answer(x);
}

/* ---- the client side ---- */

static nghttp2_session *g_cli;
static int g_status;
static char g_rh[1024]; /* "name: value\n" lines of the answer */
static size_t g_rh_len;
static char *g_rbody;
static size_t g_rbody_len;
static int g_stream_closed;
static uint32_t g_stream_code;

static int cli_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                      const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)s, (void)f, (void)flags, (void)ud;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        g_status = atoi((const char *)value);
        return 0;
    }
    g_rh_len += (size_t)snprintf(g_rh + g_rh_len, sizeof(g_rh) - g_rh_len, "%.*s: %.*s\n", (int)nl,
                                 name, (int)vl, value);
    return 0;
}

static int cli_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                    void *ud)
{
    (void)s, (void)flags, (void)id, (void)ud;
    g_rbody = realloc(g_rbody, g_rbody_len + len + 1);
    memcpy(g_rbody + g_rbody_len, data, len);
    g_rbody_len += len;
    g_rbody[g_rbody_len] = 0;
    return 0;
}

static int cli_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s, (void)id, (void)ud;
    g_stream_closed = 1;
    g_stream_code = code;
    return 0;
}

/* Move bytes both ways until neither side has anything to say. */
static void pump(void)
{
    for (int round = 0; round < 1000; round++) {
        const uint8_t *p;
        ssize_t n;
        int moved = 0;
        while ((n = nghttp2_session_mem_send(g_cli, &p)) > 0) {
            sl_h2_recv(g_c, (const char *)p, (size_t)n);
            moved = 1;
        }
        sl_h2_flush(g_c);
        if (g_out_len) {
            char *o = g_out;
            size_t ol = g_out_len;
            g_out = NULL;
            g_out_len = 0;
            assert_int_equal(nghttp2_session_mem_recv(g_cli, (const uint8_t *)o, ol), (ssize_t)ol);
            free(o);
            moved = 1;
        }
        if (!moved)
            return;
    }
    fail_msg("pump did not settle");
}

/* The client's request body: `left` bytes of 'b'. */
static size_t g_up_left;
static ssize_t cli_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *ud)
{
    (void)s, (void)id, (void)src, (void)ud;
    size_t n = len < g_up_left ? len : g_up_left;
    memset(buf, 'b', n);
    g_up_left -= n;
    if (!g_up_left)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int setup(void **state)
{
    (void)state;
    static int once;
    if (!once) {
        sl_bufpool_init(&g_w.bufs, 32 * 1024, 8);
        g_w.timers.loop = uv_default_loop();
        g_w.date_len =
            (size_t)snprintf(g_w.date, sizeof(g_w.date), "Date: Thu, 01 Jan 2026 00:00:00 GMT");
        once = 1;
    }
    g_cfg = (sl_conn_cfg_t){.handler = handler,
                            .max_header_bytes = 8192,
                            .max_body_bytes = 1 << 20,
                            .h2_max_streams = 8};
    g_c = calloc(1, sizeof(*g_c));
    g_c->w = &g_w;
    g_c->cfg = &g_cfg;
    g_answer = NULL;
    g_x = NULL;
    g_body_len = 0;
    g_body_end = g_pause_body = g_aborted = 0;
    g_status = 0;
    g_rh_len = 0;
    g_rh[0] = 0;
    g_rbody_len = 0;
    g_stream_closed = 0;
    g_stream_code = 0xff;
    g_closed = 0;
    assert_int_equal(sl_h2_session_new(g_c, &sink), 0);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, cli_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cli_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, cli_close);
    assert_int_equal(nghttp2_session_client_new(&g_cli, cb, NULL), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(g_cli, NGHTTP2_FLAG_NONE, NULL, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_h2_free(g_c);
    free(g_c);
    nghttp2_session_del(g_cli);
    free(g_out);
    g_out = NULL;
    g_out_len = 0;
    free(g_rbody);
    g_rbody = NULL;
    sl_conn_worker_free(&g_w);
    return 0;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE         \
    }

static int32_t get(const char *path)
{
    nghttp2_nv nv[] = {NV(":method", "GET"),
                       NV(":scheme", "http"),
                       NV(":authority", "ex.org"),
                       {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0}};
    int32_t id = nghttp2_submit_request(g_cli, NULL, nv, 4, NULL, NULL);
    assert_true(id > 0);
    return id;
}

static void send_str(sl_exchange_t *x, const char *s)
{
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)strlen(s));
    sl_conn_send(x, &b, 1, NULL, 0);
}

/* ---- tests ---- */

static void test_preface(void **state)
{
    (void)state;
    assert_int_equal(sl_h2_preface(SL_H2_PREFACE, SL_H2_PREFACE_LEN), 1);
    assert_int_equal(sl_h2_preface("PRI * HTTP/2.0\r\n", 16), 1);
    assert_int_equal(sl_h2_preface("PRI * HT", 8), 0);
    assert_int_equal(sl_h2_preface("P", 1), 0);
    assert_int_equal(sl_h2_preface("POST / HTTP/1.1\r\n", 17), -1);
    assert_int_equal(sl_h2_preface("PRI * HTTP/1.1\r\n", 16), -1);
}

static void answer_chunked(sl_exchange_t *x)
{
    send_str(x, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
    send_str(x, "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                "Transfer-Encoding: chunked\r\nX-Thing: A\r\nKeep-Alive: timeout=5\r\n"
                "Proxy-Connection: x\r\nUpgrade: foo\r\n\r\n5\r\nhel");
    send_str(x, "lo\r\n6\r\n world\r\n");
    send_str(x, "0\r\n\r\n");
    sl_conn_end(x, 1);
}

static void test_answer_translated(void **state)
{
    (void)state;
    g_answer = answer_chunked;
    get("/a");
    pump();
    assert_int_equal(g_status, 200);
    assert_string_equal(g_rh, "x-thing: A\n");
    assert_int_equal(g_rbody_len, 11);
    assert_string_equal(g_rbody, "hello world");
    assert_true(g_stream_closed);
    assert_int_equal(g_stream_code, NGHTTP2_NO_ERROR);
}

static void answer_short(sl_exchange_t *x)
{
    send_str(x, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
    sl_conn_end(x, 0);
}

static void test_short_answer_is_reset(void **state)
{
    (void)state;
    g_answer = answer_short;
    get("/short");
    pump();
    assert_int_equal(g_status, 200);
    assert_string_equal(g_rbody, "abc"); /* what there was, then the reset */
    assert_true(g_stream_closed);
    assert_int_equal(g_stream_code, NGHTTP2_INTERNAL_ERROR);
}

static void answer_respond(sl_exchange_t *x)
{
    sl_conn_respond(x, 201, "text/plain", "made", 4, NULL);
}

static void test_request_built_from_stream(void **state)
{
    (void)state;
    g_answer = answer_respond;
    nghttp2_nv nv[] = {
        NV(":method", "POST"),     NV(":scheme", "http"), NV(":authority", "ex.org:81"),
        NV(":path", "/p/q?x=1&y"), NV("cookie", "a=1"),   NV("content-length", "7"),
        NV("cookie", "b=2")};
    nghttp2_data_provider dp = {.read_callback = cli_read};
    g_up_left = 7;
    assert_true(nghttp2_submit_request(g_cli, NULL, nv, SL_ARRAY_LEN(nv), &dp, NULL) > 0);
    pump();
    assert_string_equal(g_method, "POST");
    assert_string_equal(g_path, "/p/q");
    assert_string_equal(g_query, "x=1&y");
    assert_string_equal(g_host, "ex.org:81");
    assert_string_equal(g_cookie, "a=1; b=2");
    assert_int_equal(g_cl, 7);
    assert_true(g_flags & SL_HF_CONTENT_LENGTH);
    assert_int_equal(g_body_len, 7);
    assert_true(g_body_end);
    assert_int_equal(g_status, 201);
    assert_string_equal(g_rbody, "made");
    assert_int_equal(g_stream_code, NGHTTP2_NO_ERROR);
}

static void test_body_without_length_is_chunked_upstream(void **state)
{
    (void)state;
    g_answer = answer_respond;
    nghttp2_nv nv[] = {NV(":method", "PUT"), NV(":scheme", "http"), NV(":authority", "h"),
                       NV(":path", "/u")};
    nghttp2_data_provider dp = {.read_callback = cli_read};
    g_up_left = 3;
    assert_true(nghttp2_submit_request(g_cli, NULL, nv, 4, &dp, NULL) > 0);
    pump();
    assert_int_equal(g_cl, -1);
    assert_true(g_flags & SL_HF_CHUNKED);
    assert_int_equal(sl_http1_request_body(&(sl_http_request_t){.flags = g_flags}),
                     SL_BODY_CHUNKED);
    assert_int_equal(g_body_len, 3);
}

static void test_pause_holds_the_window(void **state)
{
    (void)state;
    g_answer = answer_respond;
    g_pause_body = 1;
    nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "h"),
                       NV(":path", "/up")};
    nghttp2_data_provider dp = {.read_callback = cli_read};
    size_t total = 600 * 1024;
    g_up_left = total;
    assert_true(nghttp2_submit_request(g_cli, NULL, nv, 4, &dp, NULL) > 0);
    pump();
    /* Paused: nothing delivered, and the client is stuck at the 256 KiB stream window. */
    assert_int_equal(g_body_len, 0);
    assert_int_equal(total - g_up_left, 256 * 1024);
    assert_non_null(g_x);
    assert_true(sl_conn_live(g_c, g_x, g_x_id));
    sl_conn_resume(g_x);
    pump();
    /* Delivery re-opened the window; the rest came through. */
    assert_int_equal(g_up_left, 0);
    assert_int_equal(g_body_len, total);
    assert_true(g_body_end);
    assert_int_equal(g_status, 201);
}

static void test_client_reset_aborts(void **state)
{
    (void)state;
    g_answer = NULL; /* the handler holds the exchange open */
    int32_t id = get("/hold");
    pump();
    assert_non_null(g_x);
    sl_exchange_t *x = g_x;
    uint64_t xid = g_x_id;
    nghttp2_submit_rst_stream(g_cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    pump();
    assert_true(g_aborted);
    assert_false(sl_conn_live(g_c, x, xid));
}

/* Bytes held for a paused handler whose stream the client resets give the connection
 * window back: without that, each such reset would shrink it for good. */
static void test_reset_while_paused_returns_the_window(void **state)
{
    (void)state;
    g_answer = answer_respond;
    g_pause_body = 1;
    nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "h"),
                       NV(":path", "/up")};
    for (int i = 0; i < 6; i++) { /* 6 x 256 KiB held and dropped > the 1 MiB window */
        nghttp2_data_provider dp = {.read_callback = cli_read};
        g_up_left = 300 * 1024;
        int32_t id = nghttp2_submit_request(g_cli, NULL, nv, 4, &dp, NULL);
        pump();
        assert_int_equal(300 * 1024 - g_up_left, 256 * 1024);
        nghttp2_submit_rst_stream(g_cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        pump();
    }
    g_pause_body = 0;
    nghttp2_data_provider dp = {.read_callback = cli_read};
    g_up_left = 900 * 1024;
    g_body_len = 0;
    assert_true(nghttp2_submit_request(g_cli, NULL, nv, 4, &dp, NULL) > 0);
    pump();
    assert_int_equal(g_up_left, 0);
    assert_int_equal(g_body_len, 900 * 1024);
    assert_int_equal(g_status, 201);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preface),
        cmocka_unit_test_setup_teardown(test_answer_translated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_answer_is_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_built_from_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_without_length_is_chunked_upstream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pause_holds_the_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_reset_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_while_paused_returns_the_window, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
