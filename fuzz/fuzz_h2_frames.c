/* fuzz_h2_frames.c - libFuzzer target for the HTTP/2 session (src/http/h2.c): the input,
 * after the client preface, is fed as frames into a session driven without a socket (its
 * output goes to a sink), in pieces whose sizes come from the input. The handler answers
 * every stream the way the gateway's handlers do (an HTTP/1.1 head and body through
 * sl_conn_send/sl_conn_respond, sometimes chunked, sometimes before the request body is
 * in), pauses and resumes request bodies, so the stream lifetimes, the answer translation,
 * flow control and the flood bounds all run. ASan/UBSan catch the rest. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http/h2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_worker_t g_w;
static sl_conn_cfg_t g_cfg;
static int g_ready, g_closed;

/* Paused exchanges to resume between pieces (held by id: they may end meanwhile). */
static struct {
    sl_exchange_t *x;
    uint64_t id;
} g_paused[8];

static int sink_write(sl_conn_t *c, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                      unsigned nowned, void (*release)(void *arg), void *release_arg)
{
    for (unsigned i = 0; i < n; i++)
        if (bufs[i].len && !bufs[i].base)
            abort();
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

static void answer(sl_exchange_t *x)
{
    const sl_http_request_t *r = &x->req;
    char last = r->path.len ? r->path.p[r->path.len - 1] : '/';
    if (last == 'c') {
        /* A chunked answer in three writes, as the proxy sends one for a 1.1 client. */
        static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                   "Connection: keep-alive\r\nX-A: b\r\n\r\n5\r\nhel";
        static const char mid[] = "lo\r\n";
        static const char end[] = "0\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)head, sizeof(head) - 1);
        sl_conn_send(x, &b, 1, NULL, 0);
        b = uv_buf_init((char *)mid, sizeof(mid) - 1);
        sl_conn_send(x, &b, 1, NULL, 0);
        b = uv_buf_init((char *)end, sizeof(end) - 1);
        sl_conn_send(x, &b, 1, NULL, 0);
        sl_conn_end(x, 1);
    } else if (last == 't') {
        /* Cut short: Content-Length promised more than was sent. */
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc";
        uv_buf_t b = uv_buf_init((char *)head, sizeof(head) - 1);
        sl_conn_send(x, &b, 1, NULL, 0);
        sl_conn_end(x, 0);
    } else if (last == 'i') {
        static const char head[] = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                                   "HTTP/1.1 204 No Content\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)head, sizeof(head) - 1);
        sl_conn_send(x, &b, 1, NULL, 0);
        sl_conn_end(x, 1);
    } else {
        sl_conn_respond(x, 200, "text/plain", "fuzz", 4, "X-Extra: 1\r\n");
    }
}

static int on_body(sl_exchange_t *x, const char *p, size_t n)
{
    (void)p;
    if (n & 1) {
        for (size_t i = 0; i < SL_ARRAY_LEN(g_paused); i++)
            if (!g_paused[i].x) {
                g_paused[i].x = x;
                g_paused[i].id = x->id;
                return 1;
            }
    }
    return 0;
}

static void on_body_end(sl_exchange_t *x)
{
    answer(x);
}

static void on_abort(sl_exchange_t *x)
{
    (void)x;
}

static const sl_exchange_ops_t ops = {on_body, on_body_end, NULL, on_abort};

static void handler(sl_exchange_t *x)
{
    x->ops = &ops;
    /* Answer at once (before any body) on some paths, as a 404 or a cache hit does. */
    if (x->body_done || (x->req.path.len && x->req.path.p[0] == '/' && x->req.path.len < 3))
        answer(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_ready) {
        sl_bufpool_init(&g_w.bufs, 32 * 1024, 8);
        g_w.timers.loop = uv_default_loop(); /* deadlines are stored, never ticked */
        g_cfg.handler = handler;
        g_cfg.max_header_bytes = 4096;
        g_cfg.max_body_bytes = 100000;
        g_cfg.idle_timeout_ms = 1000;
        g_cfg.h2_max_streams = 16;
        g_ready = 1;
    }
    sl_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return 0;
    c->w = &g_w;
    c->cfg = &g_cfg;
    memset(g_paused, 0, sizeof(g_paused));
    g_closed = 0;
    if (sl_h2_session_new(c, &sink)) {
        free(c);
        return 0;
    }
    sl_h2_recv(c, SL_H2_PREFACE, SL_H2_PREFACE_LEN);
    /* The first byte picks the piece size, so frames are split across reads too. */
    size_t piece = size ? (size_t)data[0] * 7 + 1 : 1;
    size_t off = size ? 1 : 0;
    while (off < size && !g_closed) {
        size_t n = size - off < piece ? size - off : piece;
        char *p = malloc(n); /* exactly n bytes: ASan sees any overread */
        if (!p)
            break;
        memcpy(p, data + off, n);
        sl_h2_recv(c, p, n);
        free(p);
        off += n;
        for (size_t i = 0; i < SL_ARRAY_LEN(g_paused) && !g_closed; i++) {
            sl_exchange_t *x = g_paused[i].x;
            g_paused[i].x = NULL;
            if (x && sl_conn_live(c, x, g_paused[i].id))
                sl_conn_resume(x);
        }
        sl_h2_flush(c);
    }
    sl_h2_closed(c);
    sl_h2_free(c);
    free(c);
    sl_conn_worker_free(&g_w);
    return 0;
}
