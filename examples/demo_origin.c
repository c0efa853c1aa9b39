/* demo_origin.c - `demo-origin`: the small single-process libuv HTTP/1.1 origin used by the
 * demo, the integration tests, the benchmarks and the autoscaler.
 * Owns: its endpoints (blog API, echo, byte streams, status, sleep, stats). Never blocks its
 * loop (except for the deliberate --cpu-us busy work) and never holds a whole request or
 * response body in memory: bodies are counted as they stream through, responses are
 * generated piece by piece as earlier writes complete.
 *
 * Endpoints (GET also answers HEAD; `?cache=N` on any endpoint adds
 * `Cache-Control: public, max-age=N`):
 *   GET  /health                200 {"status":"ok","name":...}
 *   GET  /api/blog/posts        200 {"name":...,"count":5,"posts":[...]}
 *   GET  /api/blog/posts/ID     200 one post, or 404
 *   POST /api/blog/customer-review   201 {"received":BYTES,"checksum":SUM,...}
 *   ANY  /echo, /echo/...       200 the request as JSON: method, target, headers, body size
 *   GET  /bytes/N               N bytes 'a'+i%26 with Content-Length, 64 KiB per write
 *   GET  /chunked/N             the same bytes chunked, 16 KiB chunks
 *   ANY  /status/CODE           that status (200..599), small JSON body (none for 204/304)
 *   ANY  /sleep/MS              200 after MS ms (a timer, not a blocked loop)
 *   GET  /stats                 {"connections_accepted":n,"connections_active":n,"requests":n}
 *   anything else               404 JSON (405 with Allow for a known path, wrong method) */

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "../src/http/http1.h"

#define READ_BUF_SIZE (64 * 1024) /* per connection; holds pipelined requests and body data */
#define MAX_HEAD (32 * 1024)      /* longer request heads get 431 */
#define STREAM_PIECE (64 * 1024)  /* /bytes/N: body bytes per write */
#define CHUNK_SIZE (16 * 1024)    /* /chunked/N: bytes per chunk */
#define CHUNKS_PER_WRITE 4
#define LINGER_MS 2000        /* after a closing response: drain the client this long, then close */
#define MAX_NAME 64           /* --name length bound (it goes into every response head) */
#define MAX_DELAY_MS 3600000u /* --latency and /sleep/MS bound: one hour */
#define MAX_STREAM (UINT64_C(1) << 40) /* /bytes/N and /chunked/N bound: 1 TiB */

/* A growable byte buffer for response bodies; `failed` latches an allocation failure so a
 * sequence of appends needs one check at the end. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
} sbuf_t;

enum conn_state {
    ST_HEAD,   /* waiting for (the rest of) a request head */
    ST_BODY,   /* counting the request body */
    ST_WAIT,   /* request complete; the latency/sleep timer runs */
    ST_SEND,   /* a response write is in flight */
    ST_CLOSING /* write side shut down; discarding input until EOF or the linger timer */
};

enum route {
    R_NOT_FOUND = 0,
    R_NOT_ALLOWED,
    R_HEALTH,
    R_POSTS,
    R_POST,
    R_REVIEW,
    R_ECHO,
    R_BYTES,
    R_CHUNKED,
    R_STATUS,
    R_SLEEP,
    R_STATS,
};

/* One client connection. Requests are handled strictly one at a time: the next head is
 * parsed only when the previous response is fully written, which answers pipelined
 * requests in order. Freed in the close callback of the last of its two handles. */
typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* latency/sleep delay, then the linger timeout when closing */
    uv_write_t wr;    /* at most one response write in flight */
    uv_shutdown_t sd;
    int open_handles;
    uint8_t state; /* enum conn_state */
    uint8_t closed, eof, reading;

    /* the current request (reset by reset_request) */
    uint8_t keepalive, head_only, http10, route;
    uint8_t body_kind; /* enum sl_http_body */
    uint8_t has_cache;
    uint8_t stream_chunked, stream_end_sent;
    uint64_t arg; /* the number in the path: post id, byte count, status code, ms */
    uint64_t cache_max_age;
    const char *allow;  /* Allow header value for 405 */
    uint64_t body_left; /* SL_BODY_LENGTH: bytes still to come */
    sl_chunked_t chunked;
    uint64_t body_len;
    uint32_t body_sum; /* sum of the body bytes mod 2^32 */

    /* the response */
    uint64_t stream_pos, stream_left; /* /bytes and /chunked: next byte index, bytes left */
    char chunk_line[24];
    char head[1024];
    size_t head_len;
    sbuf_t body;

    /* input: unprocessed bytes are buf[off..len) */
    size_t scan; /* sl_http1_parse_request resume point for the current head */
    size_t off, len;
    char buf[READ_BUF_SIZE];
} conn_t;

static struct {
    const char *host;
    int port;
    char name[MAX_NAME + 1];
    char name_json[MAX_NAME * 6 + 3]; /* name as a JSON string, quotes included */
    uint64_t latency_ms;
    uint64_t cpu_us;
    int quiet;
} opt;

static struct {
    uint64_t accepted, active, requests;
} stats;

static uv_loop_t *loop;

/* 'a'+i%26 for i in [0, STREAM_PIECE + 26): byte i of any generated body is
 * pattern[i % 26 + (offset within the piece)], so every piece is a slice of this array. */
static char pattern[STREAM_PIECE + 26];
static char crlf[] = "\r\n";
static char full_chunk_line[] = "4000\r\n"; /* CHUNK_SIZE in hex */
static char last_chunk[] = "0\r\n\r\n";
static char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static const struct post {
    unsigned id;
    const char *title, *author, *published, *summary;
} posts[] = {
    {1, "Hello, sluice", "ada", "2024-01-15",
     "Why we put a gateway in front of a three-server blog."},
    {2, "Keep-alive pools", "grace", "2024-02-03",
     "Reusing upstream connections saves a handshake per request."},
    {3, "Caching with stale-while-revalidate", "linus", "2024-03-21",
     "Serve the old copy while one request fetches the new one."},
    {4, "Rate limits as GCRA", "barbara", "2024-04-09",
     "One timestamp per key is all a token bucket needs."},
    {5, "Zero-downtime reloads", "ken", "2024-05-30",
     "SIGHUP, a new configuration, and not one dropped connection."},
};

static void process(conn_t *c);

/* ---- byte buffers ---- */

static int sb_reserve(sbuf_t *b, size_t more)
{
    if (b->failed)
        return -1;
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (n == 0 || sb_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_str(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_fmt(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    if (sb_reserve(b, 128) != 0)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        if (sb_reserve(b, (size_t)n + 1) != 0)
            return;
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

/* Append s[0..n) as a JSON string. Bytes outside printable ASCII become \u00XX, i.e. header
 * bytes are read as Latin-1, as Python's http.client does, so any input gives valid JSON. */
static void sb_json(sbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (sb_reserve(b, n * 6 + 2) != 0)
        return;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[ch >> 4];
            o[5] = hex[ch & 15];
            o += 6;
        } else {
            *o++ = (char)ch;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}

/* ---- small helpers ---- */

/* Decimal digits only, no sign, value <= max. Returns 0 or -1. */
static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int path_is(sl_slice_t p, const char *s)
{
    size_t n = strlen(s);
    return p.len == n && memcmp(p.p, s, n) == 0;
}

static int path_has_prefix(sl_slice_t p, const char *s)
{
    size_t n = strlen(s);
    return p.len >= n && memcmp(p.p, s, n) == 0;
}

/* p == prefix + a decimal number <= max: 1 and *out set; else 0. */
static int path_num(sl_slice_t p, const char *prefix, uint64_t max, uint64_t *out)
{
    size_t n = strlen(prefix);
    if (!path_has_prefix(p, prefix))
        return 0;
    return parse_u64(p.p + n, p.len - n, max, out) == 0;
}

/* Value of a numeric query parameter key=N ("a=1&cache=60"): 0 and *out set, or -1. */
static int query_u64(sl_slice_t q, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < q.len) {
        size_t end = i;
        while (end < q.len && q.p[end] != '&')
            end++;
        if (end - i > klen && memcmp(q.p + i, key, klen) == 0 && q.p[i + klen] == '=')
            return parse_u64(q.p + i + klen + 1, end - i - klen - 1, UINT32_MAX, out);
        i = end + 1;
    }
    return -1;
}

/* IMF-fixdate of the current second, regenerated at most once a second. */
static const char *http_date(void)
{
    static char buf[40];
    static time_t last = -1;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return buf;
}

/* Busy work of `us` microseconds of this thread's CPU time (not wall time), so that a
 * descheduled process still does the full amount: what an autoscaler's CPU target sees. */
static void burn_cpu(uint64_t us)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    uint64_t end = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec + us * 1000u;
    volatile uint32_t x = 0;
    do {
        for (uint32_t i = 0; i < 256; i++)
            x += i;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    } while ((uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec < end);
}

/* ---- connection lifetime ---- */

static void on_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->open_handles == 0) {
        free(c->body.p);
        free(c);
    }
}

/* Close now. Pending write/shutdown callbacks still run (with UV_ECANCELED) before the
 * close callbacks, and check c->closed. */
static void conn_close(conn_t *c)
{
    if (c->closed)
        return;
    c->closed = 1;
    stats.active--;
    uv_close((uv_handle_t *)&c->timer, on_close);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    conn_t *c = h->data;
    SL_UNUSED(suggested);
    if (c->state == ST_CLOSING) {
        c->off = c->len = 0;
    } else if (c->off > 0) {
        /* No pointer into buf outlives a call of process(): compacting is always safe. */
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    *out = uv_buf_init(c->buf + c->len, (unsigned)(READ_BUF_SIZE - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* Read while there is room for more input (or always, when discarding before a close);
 * a full buffer stops reading until the pending response and requests drain it. */
static void update_reading(conn_t *c)
{
    if (c->closed || c->eof)
        return;
    int want = c->state == ST_CLOSING || c->len - c->off < READ_BUF_SIZE;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            conn_close(c);
            return;
        }
        c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_timer(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    if (c->closed)
        return;
    if (status < 0 || c->eof) {
        conn_close(c);
        return;
    }
    /* Closing with unread input would reset the connection and could destroy the response
     * in flight to the client: read until the client closes too, for a bounded time. */
    uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
    update_reading(c);
}

/* Finish the connection after a response that did not keep it alive. */
static void conn_shutdown(conn_t *c)
{
    c->state = ST_CLOSING;
    c->off = c->len = 0;
    c->sd.data = c;
    if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

static void reset_request(conn_t *c)
{
    c->route = R_NOT_FOUND;
    c->head_only = 0;
    c->http10 = 0;
    c->has_cache = 0;
    c->stream_chunked = 0;
    c->stream_end_sent = 0;
    c->arg = 0;
    c->allow = NULL;
    c->body_kind = SL_BODY_NONE;
    c->body_left = 0;
    c->body_len = 0;
    c->body_sum = 0;
    c->stream_pos = c->stream_left = 0;
    c->head_len = 0;
    c->body.len = 0;
    c->body.failed = 0;
    if (c->body.cap > 256 * 1024) { /* an unusually large echo: give the memory back */
        free(c->body.p);
        c->body.p = NULL;
        c->body.cap = 0;
    }
}

/* ---- responses ---- */

__attribute__((format(printf, 2, 3))) static void head_add(conn_t *c, const char *fmt, ...)
{
    va_list ap;
    size_t room = sizeof(c->head) - c->head_len;
    va_start(ap, fmt);
    int n = vsnprintf(c->head + c->head_len, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->head_len += (size_t)n < room ? (size_t)n : room - 1;
}

/* Status line and headers. clen < 0: no Content-Length (chunked, or a status without a
 * body). Bounded: every part is fixed or bounded (name <= MAX_NAME). */
static void build_head(conn_t *c, int status, int64_t clen, int chunked)
{
    c->head_len = 0;
    head_add(c, "HTTP/1.1 %d %s\r\nServer: demo-origin\r\nDate: %s\r\nX-Origin: %s\r\n", status,
             sl_http1_reason(status), http_date(), opt.name);
    if (chunked)
        head_add(c, "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n");
    else if (clen >= 0)
        head_add(c, "Content-Type: %s\r\nContent-Length: %" PRId64 "\r\n",
                 c->route == R_BYTES || c->route == R_CHUNKED ? "application/octet-stream"
                                                              : "application/json",
                 clen);
    if (c->has_cache)
        head_add(c, "Cache-Control: public, max-age=%" PRIu64 "\r\n", c->cache_max_age);
    if (c->allow)
        head_add(c, "Allow: %s\r\n", c->allow);
    if (!c->keepalive)
        head_add(c, "Connection: close\r\n");
    else if (c->http10)
        head_add(c, "Connection: keep-alive\r\n");
    head_add(c, "\r\n");
}

static void on_write(uv_write_t *req, int status);

static void write_bufs(conn_t *c, uv_buf_t *bufs, unsigned n)
{
    c->state = ST_SEND;
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, n, on_write) != 0)
        conn_close(c);
}

/* Send c->body as the response body (not for HEAD, 1xx, 204 and 304). */
static void send_body(conn_t *c, int status)
{
    if (c->body.failed) { /* out of memory: drop this connection, not the process */
        conn_close(c);
        return;
    }
    int bodyless = status < 200 || status == 204 || status == 304;
    build_head(c, status, bodyless ? -1 : (int64_t)c->body.len, 0);
    uv_buf_t bufs[2] = {uv_buf_init(c->head, (unsigned)c->head_len),
                        uv_buf_init(c->body.p, (unsigned)c->body.len)};
    write_bufs(c, bufs, bodyless || c->head_only || c->body.len == 0 ? 1 : 2);
}

/* A JSON error answer; keep_alive 0 closes the connection after it. */
static void send_error(conn_t *c, int status, int keep_alive)
{
    if (!keep_alive)
        c->keepalive = 0;
    c->body.len = 0;
    c->body.failed = 0;
    sb_fmt(&c->body, "{\"error\":\"%s\",\"status\":%d,\"name\":%s}\n", sl_http1_reason(status),
           status, opt.name_json);
    send_body(c, status);
}

static int stream_pending(const conn_t *c)
{
    if (c->route != R_BYTES && c->route != R_CHUNKED)
        return 0;
    if (c->head_only)
        return 0;
    return c->stream_left > 0 || (c->stream_chunked && !c->stream_end_sent);
}

/* Write the next piece of a generated body (/bytes, /chunked), after the head if with_head.
 * The data is a slice of the static pattern: nothing is copied or held per piece. */
static void stream_next(conn_t *c, int with_head)
{
    uv_buf_t bufs[1 + 3 * CHUNKS_PER_WRITE + 1];
    unsigned n = 0;
    if (with_head)
        bufs[n++] = uv_buf_init(c->head, (unsigned)c->head_len);
    if (!c->head_only && !c->stream_chunked && c->stream_left > 0) {
        size_t k = c->stream_left < STREAM_PIECE ? (size_t)c->stream_left : STREAM_PIECE;
        bufs[n++] = uv_buf_init(pattern + c->stream_pos % 26, (unsigned)k);
        c->stream_pos += k;
        c->stream_left -= k;
    } else if (!c->head_only && c->stream_chunked) {
        for (int i = 0; i < CHUNKS_PER_WRITE && c->stream_left > 0; i++) {
            size_t k = c->stream_left < CHUNK_SIZE ? (size_t)c->stream_left : CHUNK_SIZE;
            if (k == CHUNK_SIZE) {
                bufs[n++] = uv_buf_init(full_chunk_line, sizeof(full_chunk_line) - 1);
            } else { /* only the last chunk is short: one chunk_line per write suffices */
                int len = snprintf(c->chunk_line, sizeof(c->chunk_line), "%zx\r\n", k);
                bufs[n++] = uv_buf_init(c->chunk_line, (unsigned)len);
            }
            bufs[n++] = uv_buf_init(pattern + c->stream_pos % 26, (unsigned)k);
            bufs[n++] = uv_buf_init(crlf, 2);
            c->stream_pos += k;
            c->stream_left -= k;
        }
        if (c->stream_left == 0) {
            bufs[n++] = uv_buf_init(last_chunk, sizeof(last_chunk) - 1);
            c->stream_end_sent = 1;
        }
    }
    write_bufs(c, bufs, n);
}

static void start_stream(conn_t *c)
{
    c->stream_pos = 0;
    c->stream_left = c->arg;
    /* HTTP/1.0 has no chunked coding: a 1.0 client gets the bytes with a Content-Length. */
    c->stream_chunked = c->route == R_CHUNKED && !c->http10;
    build_head(c, 200, c->stream_chunked ? -1 : (int64_t)c->arg, c->stream_chunked);
    stream_next(c, 1);
}

static void post_json(sbuf_t *b, const struct post *p)
{
    sb_fmt(b, "{\"id\":%u,\"title\":", p->id);
    sb_json(b, p->title, strlen(p->title));
    sb_str(b, ",\"author\":");
    sb_json(b, p->author, strlen(p->author));
    sb_str(b, ",\"published\":");
    sb_json(b, p->published, strlen(p->published));
    sb_str(b, ",\"summary\":");
    sb_json(b, p->summary, strlen(p->summary));
    sb_str(b, "}");
}

/* The request (head and body) is complete and any delay has passed: answer it. */
static void respond(conn_t *c)
{
    sbuf_t *b = &c->body;
    if (opt.cpu_us)
        burn_cpu(opt.cpu_us);
    switch (c->route) {
    case R_HEALTH:
        sb_fmt(b, "{\"status\":\"ok\",\"name\":%s}\n", opt.name_json);
        send_body(c, 200);
        return;
    case R_POSTS:
        sb_fmt(b, "{\"name\":%s,\"count\":%zu,\"posts\":[", opt.name_json, SL_ARRAY_LEN(posts));
        for (size_t i = 0; i < SL_ARRAY_LEN(posts); i++) {
            if (i)
                sb_str(b, ",");
            post_json(b, &posts[i]);
        }
        sb_str(b, "]}\n");
        send_body(c, 200);
        return;
    case R_POST:
        if (c->arg < 1 || c->arg > SL_ARRAY_LEN(posts)) {
            sb_fmt(b, "{\"error\":\"post not found\",\"status\":404,\"name\":%s}\n", opt.name_json);
            send_body(c, 404);
            return;
        }
        sb_fmt(b, "{\"name\":%s,\"post\":", opt.name_json);
        post_json(b, &posts[c->arg - 1]);
        sb_str(b, "}\n");
        send_body(c, 200);
        return;
    case R_REVIEW:
        sb_fmt(b,
               "{\"status\":\"created\",\"name\":%s,\"received\":%" PRIu64 ",\"checksum\":%" PRIu32
               "}\n",
               opt.name_json, c->body_len, c->body_sum);
        send_body(c, 201);
        return;
    case R_ECHO: /* the head part was written by echo_begin */
        sb_fmt(b, ",\"body_length\":%" PRIu64 ",\"body_checksum\":%" PRIu32 "}\n", c->body_len,
               c->body_sum);
        send_body(c, 200);
        return;
    case R_BYTES:
    case R_CHUNKED:
        start_stream(c);
        return;
    case R_STATUS:
        if (c->arg != 204 && c->arg != 304)
            sb_fmt(b, "{\"status\":%d,\"reason\":\"%s\",\"name\":%s}\n", (int)c->arg,
                   sl_http1_reason((int)c->arg), opt.name_json);
        send_body(c, (int)c->arg);
        return;
    case R_SLEEP:
        sb_fmt(b, "{\"slept_ms\":%" PRIu64 ",\"name\":%s}\n", c->arg, opt.name_json);
        send_body(c, 200);
        return;
    case R_STATS:
        sb_fmt(b,
               "{\"name\":%s,\"connections_accepted\":%" PRIu64 ",\"connections_active\":%" PRIu64
               ",\"requests\":%" PRIu64 "}\n",
               opt.name_json, stats.accepted, stats.active, stats.requests);
        send_body(c, 200);
        return;
    case R_NOT_ALLOWED:
        send_error(c, 405, 1);
        return;
    default:
        send_error(c, 404, 1);
        return;
    }
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->closed)
        return;
    if (c->state == ST_WAIT)
        respond(c);
    else if (c->state == ST_CLOSING)
        conn_close(c);
}

/* The response is fully written: next request, or the end of the connection. */
static void response_done(conn_t *c)
{
    int keep = c->keepalive;
    reset_request(c);
    if (!keep) {
        conn_shutdown(c);
        return;
    }
    c->state = ST_HEAD;
    process(c);
}

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    if (c->closed)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (stream_pending(c))
        stream_next(c, 0);
    else
        response_done(c);
}

/* ---- requests ---- */

static void route_request(conn_t *c, const sl_http_request_t *r)
{
    sl_slice_t p = r->path;
    int get = r->method_id == SL_M_GET || r->method_id == SL_M_HEAD;
    uint64_t n;

    c->route = R_NOT_FOUND;
    if (path_is(p, "/echo") || path_has_prefix(p, "/echo/")) {
        c->route = R_ECHO;
        return;
    }
    if (path_is(p, "/api/blog/customer-review")) {
        c->route = r->method_id == SL_M_POST ? R_REVIEW : R_NOT_ALLOWED;
        c->allow = r->method_id == SL_M_POST ? NULL : "POST";
        return;
    }
    /* Any method: tests use POST /status/503 and the like. */
    if (path_num(p, "/status/", 599, &n) && n >= 200) {
        c->route = R_STATUS;
        c->arg = n;
        return;
    }
    if (path_num(p, "/sleep/", MAX_DELAY_MS, &n)) {
        c->route = R_SLEEP;
        c->arg = n;
        return;
    }
    /* GET/HEAD only from here on. */
    if (path_is(p, "/health")) {
        c->route = R_HEALTH;
    } else if (path_is(p, "/api/blog/posts")) {
        c->route = R_POSTS;
    } else if (path_has_prefix(p, "/api/blog/posts/")) {
        c->route = R_POST;
        if (!path_num(p, "/api/blog/posts/", UINT32_MAX, &c->arg))
            c->arg = 0; /* not a number: 404 */
    } else if (path_num(p, "/bytes/", MAX_STREAM, &n)) {
        c->route = R_BYTES;
        c->arg = n;
    } else if (path_num(p, "/chunked/", MAX_STREAM, &n)) {
        c->route = R_CHUNKED;
        c->arg = n;
    } else if (path_is(p, "/stats")) {
        c->route = R_STATS;
    } else {
        return;
    }
    if (!get) {
        c->route = R_NOT_ALLOWED;
        c->allow = "GET, HEAD";
    }
}

/* The head part of the /echo answer, written now because the head's bytes are reused for
 * the body once it starts streaming. respond() appends the body figures and the '}'. */
static void echo_begin(conn_t *c, const sl_http_request_t *r)
{
    sbuf_t *b = &c->body;
    static const char *framing[] = {"none", "length", "chunked", "eof"};
    sb_fmt(b, "{\"name\":%s,\"method\":", opt.name_json);
    sb_json(b, r->method.p, r->method.len);
    sb_str(b, ",\"target\":");
    sb_json(b, r->target.p, r->target.len);
    sb_str(b, ",\"path\":");
    sb_json(b, r->path.p, r->path.len);
    sb_str(b, ",\"query\":");
    sb_json(b, r->query.p, r->query.len);
    sb_fmt(b, ",\"version\":\"HTTP/%d.%d\",\"headers\":[", r->version / 10, r->version % 10);
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        sb_str(b, i ? ",{\"name\":" : "{\"name\":");
        sb_json(b, h->name, h->name_len);
        sb_str(b, ",\"value\":");
        sb_json(b, h->value, h->value_len);
        sb_str(b, "}");
    }
    sb_fmt(b, "],\"body_framing\":\"%s\",\"content_length\":%" PRId64,
           framing[c->body_kind < 4 ? c->body_kind : 0], r->content_length);
}

/* A request head of head_len bytes was parsed into r: set up the request. */
static void begin_request(conn_t *c, const sl_http_request_t *r, size_t head_len)
{
    uint64_t n;
    stats.requests++;
    c->http10 = r->version == 10;
    if (r->flags & SL_HF_CONN_CLOSE)
        c->keepalive = 0;
    else
        c->keepalive = c->http10 ? (r->flags & SL_HF_CONN_KEEPALIVE) != 0 : 1;
    c->head_only = r->method_id == SL_M_HEAD;
    c->body_kind = (uint8_t)sl_http1_request_body(r);
    c->body_left = c->body_kind == SL_BODY_LENGTH ? (uint64_t)r->content_length : 0;
    memset(&c->chunked, 0, sizeof(c->chunked));
    if (query_u64(r->query, "cache", &n) == 0) {
        c->has_cache = 1;
        c->cache_max_age = n;
    }
    route_request(c, r);
    if (c->route == R_ECHO)
        echo_begin(c, r);
    c->off += head_len;
    c->scan = 0;
    c->state = ST_BODY;
    /* The client waits for this before sending the body (curl: a second, then sends). */
    if ((r->flags & SL_HF_EXPECT_CONTINUE) && c->body_kind != SL_BODY_NONE && !c->http10 &&
        c->off == c->len) {
        uv_buf_t b = uv_buf_init(continue_100, sizeof(continue_100) - 1);
        /* Nothing else is being written now (one request at a time), so this either
         * writes all 25 bytes or nothing; anything else means a broken connection. */
        int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (w >= 0 && (size_t)w != b.len)
            conn_close(c);
    }
}

static void count_body(conn_t *c, const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    uint32_t s = c->body_sum;
    for (size_t i = 0; i < n; i++)
        s += u[i];
    c->body_sum = s;
    c->body_len += n;
}

/* Count the body bytes in buf[off..len). Returns 1 when the body is complete, 0 when more
 * is needed, or a negative SL_E* code for a malformed chunked body. */
static int consume_body(conn_t *c)
{
    if (c->body_kind == SL_BODY_LENGTH) {
        size_t avail = c->len - c->off;
        size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
        count_body(c, c->buf + c->off, n);
        c->off += n;
        c->body_left -= n;
        return c->body_left == 0;
    }
    if (c->body_kind == SL_BODY_CHUNKED) {
        while (!c->chunked.done && c->off < c->len) {
            size_t doff = 0, dlen = 0;
            int64_t n = sl_http1_chunked_decode(&c->chunked, c->buf + c->off, c->len - c->off,
                                                &doff, &dlen);
            if (n < 0)
                return (int)n;
            if (dlen)
                count_body(c, c->buf + c->off + doff, dlen);
            if (n == 0)
                break;
            c->off += (size_t)n;
        }
        return c->chunked.done;
    }
    return 1;
}

static int status_for_parse_error(int rc)
{
    switch (rc) {
    case SL_ETOOBIG:
        return 431;
    case SL_ENOTSUP:
        return 501;
    case SL_EVERSION:
        return 505;
    default:
        return 400;
    }
}

/* Run the input state machine over the buffered bytes until it needs more input or a
 * response is under way. */
static void process(conn_t *c)
{
    while (!c->closed) {
        if (c->state == ST_HEAD) {
            if (c->off == c->len) {
                if (c->eof)
                    conn_close(c);
                break;
            }
            sl_http_request_t req;
            int rc =
                sl_http1_parse_request(c->buf + c->off, c->len - c->off, MAX_HEAD, &c->scan, &req);
            if (rc == SL_AGAIN) {
                if (c->eof)
                    conn_close(c);
                break;
            }
            if (rc < 0) {
                c->scan = 0;
                send_error(c, status_for_parse_error(rc), 0);
                break;
            }
            begin_request(c, &req, (size_t)rc);
        } else if (c->state == ST_BODY) {
            int rc = consume_body(c);
            if (c->off == c->len)
                c->off = c->len = 0;
            if (rc < 0) {
                send_error(c, 400, 0);
                break;
            }
            if (rc == 0) {
                if (c->eof)
                    conn_close(c);
                break;
            }
            uint64_t delay = opt.latency_ms + (c->route == R_SLEEP ? c->arg : 0);
            if (delay) {
                c->state = ST_WAIT;
                uv_timer_start(&c->timer, on_timer, delay, 0);
            } else {
                respond(c);
            }
        } else {
            break;
        }
    }
    update_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    conn_t *c = s->data;
    SL_UNUSED(b);
    if (nread == 0 || c->closed)
        return;
    if (nread == UV_ENOBUFS) { /* buffer full: update_reading restarts when drained */
        uv_read_stop(s);
        c->reading = 0;
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        /* A half-close still gets its answers: finish what is buffered, then close. */
        c->eof = 1;
        uv_read_stop(s);
        c->reading = 0;
        if (c->state == ST_CLOSING)
            conn_close(c);
        else if (c->state == ST_HEAD || c->state == ST_BODY)
            process(c);
        return;
    }
    if (c->state == ST_CLOSING) {
        c->off = c->len = 0;
        return;
    }
    c->len += (size_t)nread;
    if (c->state == ST_HEAD || c->state == ST_BODY)
        process(c);
    else
        update_reading(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "demo-origin %s: accept: %s\n", opt.name, uv_strerror(status));
        return;
    }
    /* Only the fields before buf need zeroing: buf is written before it is read. */
    conn_t *c = malloc(sizeof(*c));
    if (!c) {
        fprintf(stderr, "demo-origin %s: out of memory\n", opt.name);
        return;
    }
    memset(c, 0, offsetof(conn_t, buf));
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->state = ST_HEAD;
    c->keepalive = 1;
    stats.active++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    stats.accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    update_reading(c);
}

/* ---- start-up ---- */

static void on_signal(uv_signal_t *h, int signum)
{
    SL_UNUSED(signum);
    uv_stop(h->loop);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: demo-origin --port N [--host ADDR] [--name NAME] [--latency MS]\n"
            "                   [--cpu-us US] [--quiet]\n"
            "  --port N       listen on ADDR:N (required)\n"
            "  --host ADDR    IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
            "  --name NAME    name in the X-Origin header and JSON bodies (default origin-PORT)\n"
            "  --latency MS   delay every response by MS milliseconds (a timer)\n"
            "  --cpu-us US    busy-loop US microseconds of CPU per request\n"
            "  --quiet        no start-up line on stderr\n");
}

/* argv[*i] needs a value: return it and advance, or exit with usage. */
static const char *arg_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "demo-origin: %s needs a value\n", argv[*i]);
        usage(stderr);
        exit(2);
    }
    return argv[++*i];
}

static uint64_t arg_number(const char *flag, const char *v, uint64_t max)
{
    uint64_t n;
    if (parse_u64(v, strlen(v), max, &n) != 0) {
        fprintf(stderr, "demo-origin: %s: expected a number up to %" PRIu64 ", got '%s'\n", flag,
                max, v);
        exit(2);
    }
    return n;
}

static void parse_args(int argc, char **argv)
{
    const char *name = NULL;
    opt.host = "127.0.0.1";
    opt.port = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--port") == 0) {
            opt.port = (int)arg_number(a, arg_value(argc, argv, &i), 65535);
        } else if (strcmp(a, "--host") == 0) {
            opt.host = arg_value(argc, argv, &i);
        } else if (strcmp(a, "--name") == 0) {
            name = arg_value(argc, argv, &i);
        } else if (strcmp(a, "--latency") == 0) {
            opt.latency_ms = arg_number(a, arg_value(argc, argv, &i), MAX_DELAY_MS);
        } else if (strcmp(a, "--cpu-us") == 0) {
            opt.cpu_us = arg_number(a, arg_value(argc, argv, &i), 10000000);
        } else if (strcmp(a, "--quiet") == 0) {
            opt.quiet = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "demo-origin: unknown argument '%s'\n", a);
            usage(stderr);
            exit(2);
        }
    }
    if (opt.port <= 0) {
        fprintf(stderr, "demo-origin: --port N (1..65535) is required\n");
        usage(stderr);
        exit(2);
    }
    if (name) {
        size_t n = strlen(name);
        if (n == 0 || n > MAX_NAME) {
            fprintf(stderr, "demo-origin: --name must be 1..%d bytes\n", MAX_NAME);
            exit(2);
        }
        for (size_t i = 0; i < n; i++) {
            if (name[i] < 0x20 || name[i] > 0x7e) { /* it goes into a header value */
                fprintf(stderr, "demo-origin: --name must be printable ASCII\n");
                exit(2);
            }
        }
        memcpy(opt.name, name, n + 1);
    } else {
        snprintf(opt.name, sizeof(opt.name), "origin-%d", opt.port);
    }
    sbuf_t b = {0};
    sb_json(&b, opt.name, strlen(opt.name));
    if (b.failed) {
        fprintf(stderr, "demo-origin: out of memory\n");
        exit(1);
    }
    memcpy(opt.name_json, b.p, b.len);
    opt.name_json[b.len] = '\0';
    free(b.p);
}

int main(int argc, char **argv)
{
    static uv_tcp_t server;
    static uv_signal_t sigterm, sigint;
    struct sockaddr_storage ss;
    int rc;

    parse_args(argc, argv);
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)('a' + i % 26);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error code, not a signal */

    loop = uv_default_loop();
    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(opt.host, opt.port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(opt.host, opt.port, (struct sockaddr_in6 *)&ss) != 0) {
        fprintf(stderr, "demo-origin: --host '%s' is not an IP address\n", opt.host);
        return 2;
    }
    uv_tcp_init(loop, &server);
    rc = uv_tcp_bind(&server, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (rc != 0) {
        fprintf(stderr, "demo-origin %s: listen on %s:%d: %s\n", opt.name, opt.host, opt.port,
                uv_strerror(rc));
        return 1;
    }
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);

    if (!opt.quiet)
        fprintf(stderr,
                "demo-origin %s: listening on %s:%d (latency %" PRIu64 " ms, cpu %" PRIu64
                " us/request, pid %d)\n",
                opt.name, opt.host, opt.port, opt.latency_ms, opt.cpu_us, (int)getpid());

    uv_run(loop, UV_RUN_DEFAULT);
    /* Stopped by SIGTERM/SIGINT: open connections simply end with the process. */
    return 0;
}
