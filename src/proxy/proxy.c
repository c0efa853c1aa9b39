/* proxy.c - forwarding an exchange upstream and streaming the answer back; see proxy.h.
 *
 * The common case costs one write upstream and one write to the client: the request
 * head is re-serialised into a pool buffer and written with uv_try_write; the response
 * head is re-serialised into another, and written together with the body bytes that
 * arrived with it (still in the upstream read buffer, not copied) in one writev. A
 * write that the kernel does not take at once is queued by conn, which then owns the
 * buffers, and the upstream is not read again until the client has caught up: memory
 * per exchange stays bounded whatever the speed of either side. */
#include "proxy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/log.h"
#include "../core/out.h"
#include "../http/compress.h"
#include "../http/encoder.h"
#include "../core/metrics.h"

enum { PX_CONNECTING = 1, PX_SENDING, PX_TUNNEL, PX_DONE };
enum {
    E_COUNTED = -1, /* for fail(): the cause was counted already */
    E_CONNECT = 0,
    E_TIMEOUT,
    E_BAD_RESPONSE,
    E_RESET,
    E_RETRY,
    E_NEXT,
    E_DOWN,
    E_NOSERVER,
    E_BUDGET,
    E__COUNT
};

#define MAX_OUT 3
#define SL_PX_ETAG_MAX 136 /* a longer ETag is dropped from a compressed answer */
#define MAX_ENCODERS 256   /* compressed answers in progress per worker (codec state is
                            * 256 KiB - 1 MiB each); past it answers go uncompressed */
#define MAX_IOV SL_CONN_MAX_IOV

typedef struct px {
    sl_exchange_t *x;
    sl_service_t *svc;
    sl_server_t *server;
    sl_upconn_t *up;
    sl_buf_t *out[MAX_OUT]; /* request bytes not yet handed to the kernel or libuv */
    unsigned nout;
    size_t scan;
    int64_t resp_left;
    sl_chunked_t rch;
    uint64_t sent_ns, first_byte_ns;
    sl_pool_t *pool;          /* the pool p->server came from */
    sl_pick_t pick;           /* servers tried so far, the request's hash */
    uint8_t state;
    uint8_t resp_kind;
    uint8_t head_parsed : 1, rechunk : 1, close_after : 1, req_done : 1, writing : 1,
        client_paused : 1, up_paused : 1, reused : 1;
    uint8_t retried : 1, got_bytes : 1, upgrade : 1, extra : 1, req_chunked : 1, rebuild : 1;
    uint8_t attempts; /* retries on other servers so far */
    uint8_t trial : 1;       /* p->server's trial request after a down period is ours */
    uint8_t counted : 1;     /* counted in svc->active */
    uint8_t retrying : 1;    /* counted in svc->active_retries */
    uint8_t swallow : 1;     /* the tap keeps the answer from the client */
    uint8_t strip_cond : 1;
    uint8_t compress;          /* the route's SL_COMPRESS_HAVE_* codings for this answer */
    uint64_t compress_min;
    sl_encoder_t *enc;         /* the answer is being compressed (freed in sl_proxy_done) */
    char etag[SL_PX_ETAG_MAX]; /* the compressed representation's ETag */
    const sl_proxy_tap_t *tap; /* NULL, or until its end ran */
    const char *up_extra;
    size_t up_extra_len;
    sl_http_response_t resp;
} px_t;

typedef struct upwrite {
    uv_write_t req;
    sl_upconn_t *u;
    unsigned nowned;
    sl_buf_t *owned[MAX_OUT];
} upwrite_t;

static sl_counter_t *m_errors;

static size_t error_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    static const char *names[] = {"connect", "timeout",     "bad_response", "reset",
                                  "retry",   "next_server", "marked_down", "no_server",
                                  "retry_budget_exhausted"};
    int n = snprintf(out, cap, "kind=\"%s\"", key < E__COUNT ? names[key] : "other");
    return n > 0 ? (size_t)n : 0;
}

/* proxy_compressed_total{coding,result}: answers the proxy compressed, and why others it
 * could have compressed were not. */
static sl_counter_t *m_compress;
static __thread unsigned live_encoders;
enum { CZ_GZIP = 0, CZ_BR, CZ_IDENTITY_CHOSEN, CZ_BUSY, CZ_FAILED, CZ__COUNT };

static size_t compress_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    static const char *names[] = {"coding=\"gzip\",result=\"compressed\"",
                                  "coding=\"br\",result=\"compressed\"",
                                  "coding=\"identity\",result=\"not_accepted\"",
                                  "coding=\"identity\",result=\"busy\"",
                                  "coding=\"identity\",result=\"failed\""};
    int n = snprintf(out, cap, "%s", key < CZ__COUNT ? names[key] : "result=\"other\"");
    return n > 0 ? (size_t)n : 0;
}

void sl_proxy_metrics_register(void)
{
    m_compress = sl_metrics_counter("proxy_compressed_total",
                                    "Proxied answers eligible for compression: compressed (by "
                                    "coding), or sent as they are because the client accepted "
                                    "no offered coding, too many were in progress (busy) or the "
                                    "codec failed.",
                                    compress_labels, NULL);
    m_errors = sl_metrics_counter("sluice_upstream_errors_total",
                                  "Upstream failures by kind: connect, timeout, bad_response, "
                                  "reset; retry = re-sent on a fresh connection to the same "
                                  "server; next_server = re-sent to another server "
                                  "(retries); marked_down = a server taken out by max_fails; "
                                  "no_server = every server down or tried; "
                                  "retry_budget_exhausted = a retry refused by the budget.",
                                  error_labels, NULL);
}

static inline void count_error(int kind)
{
    if (m_errors && kind >= 0)
        sl_counter_add(m_errors, (uint64_t)kind, 1);
}

size_t sl_proxy_state_size(void)
{
    return sizeof(px_t);
}

/* A warning about p's server, at most one a second per server (an outage would
 * otherwise log one line per request). */
__attribute__((format(printf, 2, 3))) static void warn(const px_t *p, const char *fmt, ...)
{
    uint64_t dropped = 0;
    if (!sl_server_warn_ok(p->server, uv_now(&p->x->conn->w->loop), &dropped))
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (dropped)
        sl_log_warn("upstream %s: %s (%llu similar warnings suppressed)",
                    p->server->conf.addr.text, msg, (unsigned long long)dropped);
    else
        sl_log_warn("upstream %s: %s", p->server->conf.addr.text, msg);
}

/* Where px_t sits in x->hdata (the router keeps its own state in front of it). */
static size_t px_offset;

void sl_proxy_set_offset(size_t off)
{
    px_offset = off;
}

static inline px_t *PX(sl_exchange_t *x)
{
    return (px_t *)(x->hdata + px_offset);
}

const sl_server_t *sl_proxy_server(const sl_exchange_t *x)
{
    return ((const px_t *)(x->hdata + px_offset))->server;
}

uint64_t sl_proxy_upstream_us(const sl_exchange_t *x)
{
    const px_t *p = (const px_t *)(x->hdata + px_offset);
    return p->first_byte_ns > p->sent_ns && p->sent_ns ? (p->first_byte_ns - p->sent_ns) / 1000
                                                       : 0;
}

/* ---- building bytes ---- */

#define PUTS(w, lit) SL_OUT_LIT(w, lit)

static inline size_t hex_line(char *dst, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[20];
    char *e = tmp + sizeof(tmp), *q = e;
    *--q = '\n';
    *--q = '\r';
    do {
        *--q = hex[v & 15];
        v >>= 4;
    } while (v);
    memcpy(dst, q, (size_t)(e - q));
    return (size_t)(e - q);
}

static inline void put_header(sl_out_t *w, const sl_http_header_t *h)
{
    size_t n = (size_t)h->name_len + 2 + h->value_len + 2;
    if (SL_UNLIKELY((size_t)(w->end - w->p) < n)) {
        w->overflow = 1;
        return;
    }
    char *o = w->p;
    memcpy(o, h->name, h->name_len);
    o += h->name_len;
    *o++ = ':';
    *o++ = ' ';
    memcpy(o, h->value, h->value_len);
    o += h->value_len;
    *o++ = '\r';
    *o++ = '\n';
    w->p = o;
}

static void put_request_id(sl_out_t *w, sl_exchange_t *x)
{
    static const char hex[] = "0123456789abcdef";
    sl_worker_t *wk = x->conn->w;
    uint64_t v = ++wk->reqid_seq ^ ((uint64_t)wk->reqid_salt << 32);
    v ^= (uint64_t)wk->index << 56;
    v = v ? v : 1;
    x->reqid = v;
    char id[16];
    for (int i = 15; i >= 0; i--, v >>= 4)
        id[i] = hex[v & 15];
    PUTS(w, "X-Request-Id: ");
    sl_out_put(w, id, 16);
    PUTS(w, "\r\n");
}

/* The upstream request head: request line in origin-form, the client's end-to-end
 * fields in order, then the proxy's own fields and framing. Returns the buffer or NULL
 * (out of memory, or a head that does not fit: the client's is already bounded). */
/* If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since, If-Range. */
static int is_conditional(const sl_http_header_t *h)
{
    static const struct {
        const char *s;
        size_t n;
    } names[] = {{"if-none-match", 13},       {"if-modified-since", 17}, {"if-match", 8},
                 {"if-unmodified-since", 19}, {"if-range", 8}};
    if (h->name_len < 8 || (h->name[0] | 0x20) != 'i' || (h->name[1] | 0x20) != 'f')
        return 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++)
        if (h->name_len == names[i].n && strncasecmp(h->name, names[i].s, names[i].n) == 0)
            return 1;
    return 0;
}

static sl_buf_t *build_request(px_t *p)
{
    sl_exchange_t *x = p->x;
    const sl_http_request_t *r = &x->req;
    sl_conn_t *c = x->conn;
    sl_buf_t *b = sl_buf_get(&c->w->bufs);
    if (!b)
        return NULL;
    sl_out_t w = {b->data, b->data + b->size, 0};
    sl_out_put(&w, r->method.p, r->method.len);
    PUTS(&w, " ");
    sl_out_put(&w, r->path.p, r->path.len);
    if (r->query.p) {
        PUTS(&w, "?");
        sl_out_put(&w, r->query.p, r->query.len);
    }
    PUTS(&w, " HTTP/1.1\r\n");
    const sl_http_header_t *xff[8], *via[8];
    unsigned nxff = 0, nvia = 0;
    int host_seen = 0, id_seen = 0;
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        if (h->hop)
            continue;
        switch (h->id) {
        case SL_H_CONTENT_LENGTH:
        case SL_H_EXPECT:
        case SL_H_X_REAL_IP:
        case SL_H_X_FORWARDED_PROTO:
            continue;
        case SL_H_X_FORWARDED_FOR:
            if (nxff < SL_ARRAY_LEN(xff))
                xff[nxff++] = h;
            continue;
        case SL_H_VIA:
            if (nvia < SL_ARRAY_LEN(via))
                via[nvia++] = h;
            continue;
        case SL_H_HOST:
            host_seen = 1;
            break;
        case SL_H_X_REQUEST_ID:
            id_seen = 1;
            break;
        case SL_H_OTHER:
            if (p->strip_cond && is_conditional(h))
                continue;
            break;
        }
        put_header(&w, h);
    }
    if (!host_seen) {
        PUTS(&w, "Host: ");
        if (r->host.len)
            sl_out_put(&w, r->host.p, r->host.len);
        else
            sl_out_put(&w, p->server->conf.addr.text, strlen(p->server->conf.addr.text));
        PUTS(&w, "\r\n");
    }
    PUTS(&w, "X-Forwarded-For: ");
    for (unsigned i = 0; i < nxff; i++) {
        sl_out_put(&w, xff[i]->value, xff[i]->value_len);
        PUTS(&w, ", ");
    }
    sl_out_put(&w, c->peer, c->peer_len);
    PUTS(&w, "\r\nX-Real-IP: ");
    sl_out_put(&w, c->peer, c->peer_len);
    if (c->cfg->is_tls)
        PUTS(&w, "\r\nX-Forwarded-Proto: https\r\nVia: ");
    else
        PUTS(&w, "\r\nX-Forwarded-Proto: http\r\nVia: ");
    for (unsigned i = 0; i < nvia; i++) {
        sl_out_put(&w, via[i]->value, via[i]->value_len);
        PUTS(&w, ", ");
    }
    if (r->version == 10)
        PUTS(&w, "1.0 sluice\r\n");
    else
        PUTS(&w, "1.1 sluice\r\n");
    if (!id_seen)
        put_request_id(&w, x);
    if (p->up_extra_len)
        sl_out_put(&w, p->up_extra, p->up_extra_len);
    int kind = sl_http1_request_body(r);
    if (kind == SL_BODY_LENGTH || (r->flags & SL_HF_CONTENT_LENGTH)) {
        PUTS(&w, "Content-Length: ");
        sl_out_u64(&w, (uint64_t)r->content_length);
        PUTS(&w, "\r\n");
    } else if (kind == SL_BODY_CHUNKED) {
        PUTS(&w, "Transfer-Encoding: chunked\r\n");
        p->req_chunked = 1;
    }
    if (p->upgrade) {
        const sl_http_header_t *u = sl_http1_find(r->headers, r->nheaders, SL_H_UPGRADE);
        PUTS(&w, "Connection: upgrade\r\nUpgrade: ");
        sl_out_put(&w, u->value, u->value_len);
        PUTS(&w, "\r\n");
    }
    PUTS(&w, "\r\n");
    if (w.overflow) {
        sl_buf_put(&c->w->bufs, b);
        return NULL;
    }
    b->len = (uint32_t)(w.p - b->data);
    return b;
}

/* ---- the upstream side ---- */

static void up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out);
static void up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void px_flush(px_t *p);
static void cut(px_t *p);
static void on_connect(sl_upconn_t *u, int status);
static void on_timeout(sl_upconn_t *u);

static void release_out(px_t *p)
{
    sl_bufpool_t *pool = &p->x->conn->w->bufs;
    for (unsigned i = 0; i < p->nout; i++)
        sl_buf_put(pool, p->out[i]);
    p->nout = 0;
}

/* Let go of the upstream connection: back to the pool if reusable, else closed. */
static void detach(px_t *p, int reusable)
{
    sl_upconn_t *u = p->up;
    if (!u)
        return;
    p->up = NULL;
    u->owner = NULL;
    __atomic_fetch_sub(&p->server->inflight, 1, __ATOMIC_RELAXED);
    sl_upconn_release(u, reusable, p->svc->conf->keepalive);
}

/* Run the tap's end once; its answer (1: it answered x). */
static int tap_end(px_t *p, int status)
{
    const sl_proxy_tap_t *t = p->tap;
    if (!t)
        return 0;
    p->tap = NULL;
    return t->end(p->x, status);
}

/* Fail before any response byte reached the client: 502/504 JSON. */
static void fail(px_t *p, int status, const char *msg, int kind)
{
    count_error(kind);
    release_out(p);
    detach(p, 0);
    p->state = PX_DONE;
    sl_exchange_t *x = p->x;
    if (tap_end(p, x->response_started ? -1 : status))
        return; /* the tap answered (a stale copy) */
    if (x->response_started) {
        /* Part of an answer went out already: the only honest signal left is to cut
         * the connection, so the client sees a truncated response. */
        x->status = x->status ? x->status : status;
        sl_conn_end(x, 0);
        return;
    }
    sl_conn_error(x, status, msg);
}

static void attach(px_t *p, sl_upconn_t *u)
{
    p->up = u;
    u->owner = p;
    u->on_timeout = on_timeout;
    u->requests++;
    sl_upconn_read(u, up_alloc, up_read);
}

static int retryable_method(const px_t *p)
{
    return (p->svc->conf->retry_methods & SL_METHOD_BIT(p->x->req.method_id)) != 0;
}

static int next_server(px_t *p, int sent);

/* Passive health: this attempt on p->server failed. */
static void server_failed(px_t *p)
{
    if (sl_server_fail(p->server, uv_now(&p->x->conn->w->loop), sl_pool_size(p->pool) == 1))
        count_error(E_DOWN);
    p->trial = 0; /* its outcome is known */
}

/* The shared read-your-writes table: client key -> time of its last write, direct-mapped
 * (a collision only sends someone's reads to the primary for a while: safe). */
#define RYW_SLOTS 65536
static uint64_t ryw_table[RYW_SLOTS];

/* Who the client is for read_your_writes: its address (a JWT subject later). */
static uint64_t client_key(const px_t *p)
{
    const sl_conn_t *c = p->x->conn;
    return c->peer_hash ^ ((uint64_t)p->svc->index * 0x9E3779B97F4A7C15ull);
}

static int ryw_recent(const px_t *p, uint64_t now_ms)
{
    uint64_t k = client_key(p);
    uint64_t v = __atomic_load_n(&ryw_table[k & (RYW_SLOTS - 1)], __ATOMIC_RELAXED);
    /* slot = 16-bit key tag << 48 | 48-bit ms time */
    if ((v >> 48) != (k >> 48))
        return 0;
    return now_ms - (v & 0xffffffffffffull) < p->svc->conf->read_your_writes_ms;
}

static void ryw_mark(const px_t *p, uint64_t now_ms)
{
    uint64_t k = client_key(p);
    __atomic_store_n(&ryw_table[k & (RYW_SLOTS - 1)],
                     (k >> 48) << 48 | (now_ms & 0xffffffffffffull), __ATOMIC_RELAXED);
}

/* The value balance: hash hashes (hash_key). A request without the header or cookie
 * hashes its client address, so such requests still spread (as HAProxy falls back). */
static uint64_t request_hash(const px_t *p)
{
    const sl_service_conf_t *sc = p->svc->conf;
    const sl_http_request_t *r = &p->x->req;
    const sl_conn_t *c = p->x->conn;
    switch (sc->hash_key) {
    case SL_HASH_PATH:
        return sl_hash_bytes(r->path.p, r->path.len); /* the query is not part of it */
    case SL_HASH_HEADER:
    case SL_HASH_COOKIE: {
        size_t nl = strlen(sc->hash_key_name);
        int cookie = sc->hash_key == SL_HASH_COOKIE;
        for (unsigned i = 0; i < r->nheaders; i++) {
            const sl_http_header_t *h = &r->headers[i];
            if (cookie ? h->id != SL_H_COOKIE
                       : (h->name_len != nl || strncasecmp(h->name, sc->hash_key_name, nl)))
                continue;
            if (!cookie)
                return sl_hash_bytes(h->value, h->value_len);
            /* Cookie: a=1; b=2 */
            const char *v = h->value, *e = h->value + h->value_len;
            while (v < e) {
                while (v < e && (*v == ' ' || *v == ';'))
                    v++;
                const char *eq = memchr(v, '=', (size_t)(e - v));
                const char *semi = memchr(v, ';', (size_t)(e - v));
                if (!semi)
                    semi = e;
                if (eq && eq < semi && (size_t)(eq - v) == nl &&
                    memcmp(v, sc->hash_key_name, nl) == 0)
                    return sl_hash_bytes(eq + 1, (size_t)(semi - eq - 1));
                v = semi;
            }
        }
        return c->peer_hash;
    }
    default:
        return c->peer_hash;
    }
}

/* The pool for this request: reads to the read pool unless the client wrote within
 * read_your_writes; everything else to the primary. */
static sl_pool_t *choose_pool(px_t *p, uint64_t now_ms)
{
    sl_service_t *svc = p->svc;
    int m = p->x->req.method_id;
    int read = m == SL_M_GET || m == SL_M_HEAD || m == SL_M_OPTIONS;
    if (!read) {
        if (svc->conf->read_your_writes_ms)
            ryw_mark(p, now_ms);
        return &svc->primary;
    }
    if (sl_pool_size(&svc->read) == 0)
        return &svc->primary;
    if (svc->conf->read_your_writes_ms && ryw_recent(p, now_ms))
        return &svc->primary;
    return &svc->read;
}

/* A usable server: from the request's pool, else (reads) the primary; a server back
 * from a down period takes only its one trial request. NULL when none. */
static sl_server_t *pick_server(px_t *p, uint64_t now_ms)
{
    p->pick.now_ms = now_ms;
    for (int pass = 0; pass < 2; pass++) {
        sl_pool_t *pool = pass == 0 ? choose_pool(p, now_ms) : &p->svc->primary;
        if (pass == 1 && pool == p->pool)
            break;
        p->pool = pool;
        for (unsigned k = 0; k < SL_MAX_TRIES; k++) {
            sl_server_t *s = pool->ops->pick(pool, &p->pick);
            if (!s)
                break;
            if (sl_server_claim(s)) {
                p->trial = __atomic_load_n(&s->down_until_ms, __ATOMIC_RELAXED) != 0;
                return s;
            }
            if (p->pick.ntried < SL_MAX_TRIES) /* its trial is taken: another one */
                p->pick.tried[p->pick.ntried++] = s;
            else
                break;
        }
    }
    return NULL;
}

/* Pick a server (skipping those tried and those out), build the request head if it is
 * not queued yet, and get a connection: a pooled one, or a new one. */
static void px_connect(px_t *p, int fresh)
{
    sl_worker_t *w = p->x->conn->w;
    if (!p->server) {
        p->server = pick_server(p, uv_now(&w->loop));
        if (!p->server) {
            if (p->attempts)
                fail(p, 502, "no server could be reached", E_NOSERVER);
            else
                fail(p, 503, "no healthy server", E_NOSERVER);
            return;
        }
        __atomic_fetch_add(&p->server->inflight, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&p->server->requests, 1, __ATOMIC_RELAXED);
    }
    if (p->rebuild) {
        sl_buf_t *head = build_request(p);
        if (!head) {
            fail(p, 431, "request header fields too large", E_BAD_RESPONSE);
            return;
        }
        p->rebuild = 0;
        release_out(p);
        p->out[p->nout++] = head;
    }
    sl_upconn_t *u = fresh ? NULL : sl_upconn_take_idle(w, p->server);
    if (u) {
        p->reused = 1;
        attach(p, u);
        p->state = PX_SENDING;
        p->sent_ns = uv_hrtime();
        px_flush(p);
        return;
    }
    p->reused = 0;
    int err;
    u = sl_upconn_connect(w, p->server, p->svc->conf->connect_ms, on_connect, p, &err);
    if (!u) {
        warn(p, "connect: %s", uv_strerror(err));
        count_error(E_CONNECT);
        if (!next_server(p, 0))
            fail(p, 502, "upstream unreachable", E_COUNTED);
        return;
    }
    p->up = u;
    u->on_timeout = on_timeout;
    p->state = PX_CONNECTING;
}

/* The current server failed before any answer: count it for passive health and, when
 * `retries` allows, send the request to another server. sent = request bytes may have
 * reached the server; then only an idempotent request without a body is re-sent (the
 * body is streamed, not kept). When nothing was sent (connect failed), the queued bytes
 * go to the next server as they are, whatever the method. Returns 1 when a new attempt
 * started. */
static int next_server(px_t *p, int sent)
{
    sl_exchange_t *x = p->x;
    sl_service_t *svc = p->svc;
    server_failed(p);
    if (p->attempts >= svc->conf->retries || x->response_started)
        return 0;
    if (sent && (!retryable_method(p) || x->bytes_in || !x->body_done))
        return 0;
    /* The retry budget, as Envoy's: retries in flight stay under percent of the
     * requests in flight (at least min_concurrency), so retries cannot multiply an
     * outage's load. */
    if (!p->retrying) {
        uint64_t active = __atomic_load_n(&svc->active, __ATOMIC_RELAXED);
        uint64_t allowed = active * svc->conf->retry_budget_percent / 100;
        if (allowed < svc->conf->retry_budget_min)
            allowed = svc->conf->retry_budget_min;
        if (__atomic_add_fetch(&svc->active_retries, 1, __ATOMIC_RELAXED) > allowed) {
            __atomic_sub_fetch(&svc->active_retries, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&svc->budget_exhausted, 1, __ATOMIC_RELAXED);
            count_error(E_BUDGET);
            return 0;
        }
        p->retrying = 1;
    }
    __atomic_add_fetch(&svc->retries_total, 1, __ATOMIC_RELAXED);
    p->attempts++;
    count_error(E_NEXT);
    if (p->pick.ntried < SL_MAX_TRIES)
        p->pick.tried[p->pick.ntried++] = p->server;
    sl_upconn_t *u = p->up;
    p->up = NULL;
    if (u)
        sl_upconn_close(u);
    __atomic_fetch_sub(&p->server->inflight, 1, __ATOMIC_RELAXED);
    p->server = NULL;
    p->writing = 0;
    p->got_bytes = 0;
    p->retried = 0;
    p->scan = 0;
    if (sent)
        p->rebuild = 1;
    px_connect(p, 0);
    return 1;
}

static void on_connect(sl_upconn_t *u, int status)
{
    px_t *p = u->owner;
    if (!p) { /* the exchange went away meanwhile */
        sl_upconn_close(u);
        return;
    }
    if (status < 0) {
        warn(p, "connect: %s", uv_strerror(status));
        count_error(E_CONNECT);
        if (!next_server(p, 0))
            fail(p, 502, "upstream unreachable", E_COUNTED);
        return;
    }
    attach(p, u);
    p->state = PX_SENDING;
    p->sent_ns = uv_hrtime();
    px_flush(p);
}

static void on_timeout(sl_upconn_t *u)
{
    px_t *p = u->owner;
    if (!p) {
        sl_upconn_close(u);
        return;
    }
    if (p->state == PX_TUNNEL) {
        detach(p, 0);
        p->state = PX_DONE;
        sl_conn_end(p->x, 0);
        return;
    }
    warn(p, "%s timeout", p->state == PX_CONNECTING ? "connect" : p->writing ? "send" : "read");
    count_error(E_TIMEOUT);
    if (!p->head_parsed && next_server(p, p->state != PX_CONNECTING))
        return;
    fail(p, 504, "upstream timeout", E_COUNTED);
}

static void upwrite_cb(uv_write_t *req, int status)
{
    upwrite_t *wr = (upwrite_t *)req;
    sl_upconn_t *u = wr->u;
    for (unsigned i = 0; i < wr->nowned; i++)
        sl_buf_put(&u->w->bufs, wr->owned[i]);
    free(wr);
    px_t *p = u->owner;
    if (!p || u->state == SL_UP_CLOSED)
        return;
    p->writing = 0;
    if (status < 0) {
        if (!p->got_bytes)
            fail(p, 502, "upstream write failed", E_RESET);
        return;
    }
    sl_upconn_deadline(u, p->svc->conf->read_ms);
    if (p->nout)
        px_flush(p);
    if (!p->writing && p->client_paused) {
        p->client_paused = 0;
        sl_conn_resume(p->x);
    }
}

/* Write the queued request bytes upstream: at once if the kernel takes them, else one
 * queued write (which owns the buffers) at a time. */
static void px_flush(px_t *p)
{
    if (p->state < PX_SENDING || p->writing || !p->nout || !p->up)
        return;
    sl_upconn_t *u = p->up;
    uv_buf_t iov[MAX_OUT];
    size_t total = 0;
    for (unsigned i = 0; i < p->nout; i++) {
        iov[i] = uv_buf_init(p->out[i]->data, p->out[i]->len);
        total += p->out[i]->len;
    }
    int r = uv_try_write((uv_stream_t *)&u->tcp, iov, p->nout);
    if (r < 0 && r != UV_EAGAIN) {
        if (p->state == PX_TUNNEL) {
            detach(p, 0);
            p->state = PX_DONE;
            sl_conn_end(p->x, 0);
            return;
        }
        fail(p, 502, "upstream write failed", E_RESET);
        return;
    }
    size_t done = r > 0 ? (size_t)r : 0;
    if (done == total) {
        release_out(p);
        sl_upconn_deadline(u, p->svc->conf->read_ms);
        if (p->client_paused) { /* body bytes waited for the connection: go on */
            p->client_paused = 0;
            sl_conn_resume(p->x);
        }
        return;
    }
    upwrite_t *wr = malloc(sizeof(*wr));
    if (!wr) {
        fail(p, 502, "out of memory", E_RESET);
        return;
    }
    unsigned m = 0;
    for (unsigned i = 0; i < p->nout; i++) {
        if (done >= iov[i].len) {
            done -= iov[i].len;
            continue;
        }
        iov[m++] = uv_buf_init(iov[i].base + done, (unsigned)(iov[i].len - done));
        done = 0;
    }
    wr->u = u;
    wr->nowned = p->nout;
    memcpy(wr->owned, p->out, sizeof(p->out[0]) * p->nout);
    p->nout = 0;
    if (uv_write(&wr->req, (uv_stream_t *)&u->tcp, iov, m, upwrite_cb) < 0) {
        for (unsigned i = 0; i < wr->nowned; i++)
            sl_buf_put(&u->w->bufs, wr->owned[i]);
        free(wr);
        fail(p, 502, "upstream write failed", E_RESET);
        return;
    }
    p->writing = 1;
    sl_upconn_deadline(u, p->svc->conf->send_ms);
}

/* Append request bytes to the outgoing queue. Returns 0, or SL_ENOMEM. */
static int out_append(px_t *p, const char *s, size_t n)
{
    sl_bufpool_t *pool = &p->x->conn->w->bufs;
    while (n) {
        sl_buf_t *b = p->nout ? p->out[p->nout - 1] : NULL;
        if (!b || b->len == b->size) {
            if (p->nout == MAX_OUT || !(b = sl_buf_get(pool)))
                return SL_ENOMEM;
            p->out[p->nout++] = b;
        }
        size_t take = b->size - b->len < n ? b->size - b->len : n;
        memcpy(b->data + b->len, s, take);
        b->len += (uint32_t)take;
        s += take;
        n -= take;
    }
    return 0;
}

/* ---- request body from the client (conn callbacks) ---- */

static int px_body(sl_exchange_t *x, const char *d, size_t n)
{
    px_t *p = PX(x);
    if (p->state == PX_DONE)
        return 0; /* answered already; the body is dropped (conn closes after) */
    int rc = 0;
    if (p->req_chunked && p->state != PX_TUNNEL) {
        char line[20];
        size_t l = hex_line(line, n);
        rc = out_append(p, line, l);
        rc = rc ? rc : out_append(p, d, n);
        rc = rc ? rc : out_append(p, "\r\n", 2);
    } else {
        rc = out_append(p, d, n);
    }
    if (rc) {
        fail(p, 502, "out of memory", E_RESET);
        return 1;
    }
    px_flush(p);
    if (p->state == PX_DONE)
        return 1;
    /* Pause the client while a write is queued or bytes wait for the connection:
     * this is what bounds memory for a fast client and a slow upstream. */
    if (p->writing || p->nout >= 2 || (p->nout && p->state < PX_SENDING)) {
        p->client_paused = 1;
        return 1;
    }
    return 0;
}

static void px_body_end(sl_exchange_t *x)
{
    px_t *p = PX(x);
    if (p->state == PX_TUNNEL) { /* client closed its side of the tunnel */
        detach(p, 0);
        p->state = PX_DONE;
        sl_conn_end(x, 0);
        return;
    }
    p->req_done = 1;
    if (p->req_chunked && p->state != PX_DONE) {
        if (out_append(p, "0\r\n\r\n", 5)) {
            fail(p, 502, "out of memory", E_RESET);
            return;
        }
        px_flush(p);
    }
}

/* The client is slower than the upstream: stop reading the upstream until it has caught
 * up. The read timeout stops too (the wait is ours, not the server's, as nginx does);
 * a client that stops reading altogether is cut by conn's idle_timeout. */
static void pause_upstream(px_t *p)
{
    p->up_paused = 1;
    sl_upconn_read_stop(p->up);
    sl_upconn_deadline(p->up, 0);
}

static void px_drained(sl_exchange_t *x)
{
    px_t *p = PX(x);
    if (p->up_paused && p->up) {
        p->up_paused = 0;
        sl_upconn_read(p->up, up_alloc, up_read);
        sl_upconn_deadline(p->up, p->svc->conf->read_ms);
    }
}

static void px_abort(sl_exchange_t *x)
{
    px_t *p = PX(x);
    tap_end(p, -2);
    release_out(p);
    detach(p, 0);
    p->state = PX_DONE;
}

static const sl_exchange_ops_t px_ops = {
    .body = px_body, .body_end = px_body_end, .drained = px_drained, .abort = px_abort};

/* ---- the response ---- */

static void up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    (void)hint;
    sl_upconn_t *u = h->data;
    if (!u->rbuf && !(u->rbuf = sl_buf_get(&u->w->bufs))) {
        out->base = NULL;
        out->len = 0;
        return;
    }
    out->base = u->rbuf->data + u->rbuf->len;
    out->len = u->rbuf->size - u->rbuf->len;
}

/* Finish the exchange: the upstream connection goes back to the pool when the
 * response was complete and cleanly delimited and the request was fully sent. */
static void complete(px_t *p)
{
    const sl_http_response_t *r = &p->resp;
    int reusable = p->resp_kind != SL_BODY_EOF && !p->extra && p->req_done && !p->writing &&
                   !p->nout &&
                   (r->version == 11 ? !(r->flags & SL_HF_CONN_CLOSE)
                                     : !!(r->flags & SL_HF_CONN_KEEPALIVE));
    detach(p, reusable);
    p->state = PX_DONE;
    if (tap_end(p, 0))
        return; /* the tap answered x */
    if (p->swallow) {
        sl_conn_error(p->x, 502, "no answer to give");
        return;
    }
    sl_conn_end(p->x, !p->close_after);
}

/* ---- compressing the answer (route compress:, docs/static.md) ---- */

static void add_field(sl_http_response_t *r, const char *name, const char *value)
{
    sl_http_header_t *h = &r->headers[r->nheaders++];
    memset(h, 0, sizeof(*h));
    h->name = name;
    h->name_len = (uint16_t)strlen(name);
    h->value = value;
    h->value_len = (uint32_t)strlen(value);
}

/* Decide, once the head is parsed and before the tap sees it, whether to compress the
 * answer; if so rewrite the head the client (and a cache fill) gets: Content-Encoding and
 * Vary: Accept-Encoding added, Content-Length dropped (the answer is re-chunked), the
 * ETag made the compressed representation's own. The cache then stores the compressed
 * bytes as a variant keyed on Accept-Encoding, so a hit costs no compression. */
static void maybe_compress(px_t *p)
{
    sl_exchange_t *x = p->x;
    sl_http_response_t *r = &p->resp;
    if (!p->compress || r->nheaders + 2 > SL_HTTP_MAX_HEADERS ||
        !sl_compress_eligible(x->req.method_id, r->status, x->req.headers, x->req.nheaders,
                              r->headers, r->nheaders, p->compress_min, NULL))
        return;
    /* From here the answer varies with Accept-Encoding, whatever this client gets. */
    if (!sl_compress_vary_has(r->headers, r->nheaders))
        add_field(r, "Vary", "Accept-Encoding");
    sl_compress_accept_t a;
    sl_compress_accept_from(x->req.headers, x->req.nheaders, &a);
    int c = sl_compress_choose(&a, p->compress);
    if (c != SL_COMPRESS_GZIP && c != SL_COMPRESS_BR) {
        sl_counter_add(m_compress, CZ_IDENTITY_CHOSEN, 1);
        return;
    }
    if (live_encoders >= MAX_ENCODERS) {
        sl_counter_add(m_compress, CZ_BUSY, 1);
        return;
    }
    p->enc = sl_encoder_new(c);
    if (!p->enc) {
        sl_counter_add(m_compress, CZ_FAILED, 1);
        return;
    }
    live_encoders++;
    sl_counter_add(m_compress, c == SL_COMPRESS_GZIP ? CZ_GZIP : CZ_BR, 1);
    for (unsigned i = 0; i < r->nheaders; i++) {
        sl_http_header_t *h = &r->headers[i];
        if (h->id == SL_H_CONTENT_LENGTH) {
            h->hop = 1;
        } else if (h->name_len == 4 && strncasecmp(h->name, "etag", 4) == 0 && !h->hop) {
            int64_t n = sl_compress_etag(h->value, h->value_len, c, p->etag, sizeof(p->etag));
            if (n > 0) {
                h->value = p->etag;
                h->value_len = (uint32_t)n;
            } else {
                h->hop = 1; /* not one valid tag, or too long: send none */
            }
        }
    }
    add_field(r, "Content-Encoding", sl_compress_token(c));
    r->content_length = -1;
    if (x->req.version == 11)
        p->rechunk = 1;
    else
        p->close_after = 1; /* HTTP/1.0 client: the close delimits the body */
}

/* Run d[0..n) through the encoder with mode (enum sl_encode_mode); what comes out goes to
 * the tap and, unless the tap swallows the answer, to the client as chunks. Returns 1 when
 * the client's output is congested, 0, or -1 when the codec or memory failed. */
static int enc_feed(px_t *p, const char *d, size_t n, int mode)
{
    sl_exchange_t *x = p->x;
    sl_bufpool_t *pool = &x->conn->w->bufs;
    int congested = 0;
    for (;;) {
        sl_buf_t *ob = sl_buf_get(pool);
        if (!ob)
            return -1;
        /* [chunk-size CRLF][coded bytes][CRLF]: room for both around the data */
        char *data = ob->data + 20;
        size_t room = ob->size - 20 - 2, used = 0;
        int64_t got = sl_encoder_run(p->enc, d, n, &used, data, room, mode);
        if (got < 0) {
            sl_buf_put(pool, ob);
            return -1;
        }
        d += used;
        n -= used;
        if (got > 0 && p->tap)
            p->tap->body(x, data, (size_t)got);
        if (got > 0 && !p->swallow) {
            char *start = data;
            size_t len = (size_t)got;
            if (p->rechunk) {
                char line[20];
                size_t l = hex_line(line, (uint64_t)got);
                start = data - l;
                memcpy(start, line, l);
                memcpy(data + got, "\r\n", 2);
                len += l + 2;
            }
            uv_buf_t ub = uv_buf_init(start, (unsigned)len);
            congested |= sl_conn_send(x, &ub, 1, &ob, 1);
        } else {
            sl_buf_put(pool, ob);
        }
        if ((size_t)got < room && n == 0 && (mode != SL_ENC_FINISH || sl_encoder_done(p->enc)))
            return congested;
    }
}

/* The client response head, re-serialised from the upstream's. */
static int build_response_head(px_t *p, sl_out_t *w)
{
    sl_exchange_t *x = p->x;
    const sl_http_response_t *r = &p->resp;
    int ka = sl_conn_keepalive(x) && !p->close_after;
    PUTS(w, "HTTP/1.1 ");
    char st[4] = {(char)('0' + r->status / 100), (char)('0' + r->status / 10 % 10),
                  (char)('0' + r->status % 10), ' '};
    sl_out_put(w, st, 4);
    sl_out_put(w, r->reason.p, r->reason.len);
    PUTS(w, "\r\n");
    const sl_http_header_t *cl = NULL;
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        if (h->hop)
            continue;
        if (h->id == SL_H_CONTENT_LENGTH) {
            cl = h;
            continue;
        }
        put_header(w, h);
    }
    if (p->resp_kind == SL_BODY_LENGTH && !p->enc) {
        PUTS(w, "Content-Length: ");
        sl_out_u64(w, (uint64_t)r->content_length);
        PUTS(w, "\r\n");
    } else if (p->resp_kind == SL_BODY_NONE && cl && r->status != 304 && r->status >= 200) {
        put_header(w, cl); /* HEAD: the length the GET would have */
    } else if (p->rechunk) {
        PUTS(w, "Transfer-Encoding: chunked\r\n");
    }
    if (r->status == 101) {
        const sl_http_header_t *u = sl_http1_find(r->headers, r->nheaders, SL_H_UPGRADE);
        PUTS(w, "Connection: upgrade\r\nUpgrade: ");
        if (u)
            sl_out_put(w, u->value, u->value_len);
        PUTS(w, "\r\n");
    } else if (!ka) {
        PUTS(w, "Connection: close\r\n");
    } else if (x->req.version == 10) {
        PUTS(w, "Connection: keep-alive\r\n");
    }
    sl_out_put(w, x->resp_extra, x->resp_extra_len);
    PUTS(w, "Via: 1.1 sluice\r\n\r\n");
    return w->overflow ? SL_ETOOBIG : 0;
}

static void up_eof(px_t *p, ssize_t err)
{
    if (p->state == PX_TUNNEL) {
        detach(p, 0);
        p->state = PX_DONE;
        sl_conn_end(p->x, 0);
        return;
    }
    if (!p->head_parsed) {
        /* Nothing of the answer arrived. A pooled connection the server had just
         * closed is the usual cause: send the request again on a fresh connection to
         * the same server, once, when that cannot repeat a side effect. */
        int idempotent = p->x->req.method_id == SL_M_GET || p->x->req.method_id == SL_M_HEAD ||
                         p->x->req.method_id == SL_M_OPTIONS;
        if (p->reused && !p->got_bytes && !p->retried && idempotent && !p->x->bytes_in &&
            p->x->body_done && !p->writing) {
            p->retried = 1;
            count_error(E_RETRY);
            sl_upconn_t *u = p->up;
            p->up = NULL;
            sl_upconn_close(u);
            p->rebuild = 1;
            px_connect(p, 1);
            return;
        }
        count_error(E_RESET);
        if (next_server(p, 1))
            return;
        fail(p, 502, err == UV_EOF ? "upstream closed the connection" : "upstream reset",
             E_COUNTED);
        return;
    }
    if (p->resp_kind == SL_BODY_EOF) {
        /* The body ran to the close, as announced. */
        if (p->enc && enc_feed(p, NULL, 0, SL_ENC_FINISH) < 0) {
            cut(p);
            return;
        }
        if (p->tap && !p->swallow)
            tap_end(p, 0); /* before the client sees the end (as in up_read) */
        if (p->rechunk && !p->swallow) {
            static const char last[] = "0\r\n\r\n";
            uv_buf_t b = uv_buf_init((char *)last, sizeof(last) - 1);
            sl_conn_send(p->x, &b, 1, NULL, 0);
        }
        complete(p);
        return;
    }
    /* Cut mid-body: the client must see a truncated response, not a complete one. */
    count_error(E_RESET);
    detach(p, 0);
    p->state = PX_DONE;
    if (tap_end(p, p->swallow ? 502 : -1))
        return;
    if (p->swallow) {
        sl_conn_error(p->x, 502, "upstream closed the connection mid-answer");
        return;
    }
    sl_conn_end(p->x, 0);
}

/* 1 when every Transfer-Encoding field of r is exactly "chunked". */
static int te_is_chunked(const sl_http_response_t *r)
{
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        if (h->id == SL_H_TRANSFER_ENCODING &&
            (h->value_len != 7 || strncasecmp(h->value, "chunked", 7) != 0))
            return 0;
    }
    return 1;
}

/* Parse the head in u->rbuf: its length when parsed (the body follows it in the
 * buffer), 0 when more bytes are needed, -1 when the exchange was failed. 1xx interim
 * answers are consumed and skipped (the gateway already sent its own 100 Continue). */
static int parse_head(px_t *p)
{
    sl_buf_t *b = p->up->rbuf;
    for (;;) {
        int rc = sl_http1_parse_response(b->data, b->len, b->size, &p->scan, &p->resp);
        if (rc == SL_AGAIN) {
            if (b->len == b->size) {
                fail(p, 502, "upstream response head too large", E_BAD_RESPONSE);
                return -1;
            }
            return 0;
        }
        if (rc < 0) {
            warn(p, "malformed response");
            server_failed(p);
            fail(p, 502, "bad response from upstream", E_BAD_RESPONSE);
            return -1;
        }
        if (p->resp.status >= 200 || (p->resp.status == 101 && p->upgrade)) {
            if ((p->resp.flags & (SL_HF_CHUNKED | SL_HF_TE_OTHER)) && !te_is_chunked(&p->resp)) {
                /* gzip, chunked (or gzip alone): dropping the hop-by-hop field would
                 * pass encoded bytes on without saying so. */
                server_failed(p);
                fail(p, 502, "unsupported transfer coding from upstream", E_BAD_RESPONSE);
                return -1;
            }
            return rc;
        }
        if (p->resp.status == 101) {
            fail(p, 502, "upstream switched protocols unasked", E_BAD_RESPONSE);
            return -1;
        }
        memmove(b->data, b->data + rc, b->len - (uint32_t)rc);
        b->len -= (uint32_t)rc;
        p->scan = 0;
        if (!b->len)
            return 0;
    }
}

/* The answer is cut mid-body (the codec failed): the client must see it truncated. */
static void cut(px_t *p)
{
    sl_counter_add(m_compress, CZ_FAILED, 1);
    detach(p, 0);
    p->state = PX_DONE;
    if (tap_end(p, p->swallow ? 502 : -1))
        return;
    if (p->swallow) {
        sl_conn_error(p->x, 502, "upstream answer could not be compressed");
        return;
    }
    sl_conn_end(p->x, 0);
}

static int body_piece(px_t *p, const char *d, size_t n)
{
    if (p->enc)
        return enc_feed(p, d, n, SL_ENC_PROCESS);
    p->tap->body(p->x, d, n);
    return 0;
}

/* The body when it does not go to the client as it came: the tap keeps the answer from
 * the client (decode the body into the tap, send nothing), or the proxy compresses it
 * (decode, code, send what the codec gives). b stays the connection's read buffer,
 * emptied for the next read. */
static void sink_read(px_t *p, sl_buf_t *b, size_t pos)
{
    int done = 0, rc = 0;
    switch (p->resp_kind) {
    case SL_BODY_NONE:
        done = 1;
        p->extra = pos < b->len;
        break;
    case SL_BODY_LENGTH: {
        size_t avail = b->len - pos;
        size_t take = avail < (uint64_t)p->resp_left ? avail : (size_t)p->resp_left;
        if (take)
            rc |= body_piece(p, b->data + pos, take);
        p->resp_left -= (int64_t)take;
        if (p->resp_left == 0) {
            done = 1;
            p->extra = take < avail;
        }
        break;
    }
    case SL_BODY_EOF:
        if (b->len > pos)
            rc |= body_piece(p, b->data + pos, b->len - pos);
        break;
    case SL_BODY_CHUNKED:
        while (pos < b->len && !p->rch.done && rc >= 0) {
            size_t off = 0, dlen = 0;
            int64_t c = sl_http1_chunked_decode(&p->rch, b->data + pos, b->len - pos, &off, &dlen);
            if (c < 0) {
                b->len = 0;
                warn(p, "bad chunked body");
                if (p->enc && !p->swallow) { /* the head is out */
                    count_error(E_BAD_RESPONSE);
                    detach(p, 0);
                    p->state = PX_DONE;
                    if (!tap_end(p, -1))
                        sl_conn_end(p->x, 0);
                    return;
                }
                fail(p, 502, "bad response from upstream", E_BAD_RESPONSE);
                return;
            }
            if (dlen)
                rc |= body_piece(p, b->data + pos + off, dlen);
            pos += (size_t)c;
        }
        if (p->rch.done) {
            done = 1;
            p->extra = pos < b->len;
        }
        break;
    }
    b->len = 0;
    if (p->enc && rc >= 0) {
        /* Flush what this read brought: a streamed answer must not wait for the next. */
        int r = enc_feed(p, NULL, 0, done ? SL_ENC_FINISH : SL_ENC_FLUSH);
        rc = r < 0 ? r : rc | r;
    }
    if (rc < 0) {
        cut(p);
        return;
    }
    if (done) {
        if (p->enc && !p->swallow) {
            tap_end(p, 0); /* stored before the client can see the end (as in up_read) */
            if (p->rechunk) {
                uv_buf_t last = uv_buf_init((char *)"0\r\n\r\n", 5);
                sl_conn_send(p->x, &last, 1, NULL, 0);
            }
        }
        complete(p);
        return;
    }
    if (rc > 0)
        pause_upstream(p);
}

static void up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    sl_upconn_t *u = s->data;
    px_t *p = u->owner;
    if (nread == 0)
        return;
    if (!p) {
        sl_upconn_close(u);
        return;
    }
    if (nread < 0) {
        up_eof(p, nread);
        return;
    }
    sl_exchange_t *x = p->x;
    sl_buf_t *b = u->rbuf;
    b->len += (uint32_t)nread;
    if (!p->got_bytes) {
        p->got_bytes = 1;
        p->first_byte_ns = uv_hrtime();
    }
    sl_upconn_deadline(u, p->svc->conf->read_ms);

    if (p->state == PX_TUNNEL) {
        u->rbuf = NULL;
        uv_buf_t iov = uv_buf_init(b->data, b->len);
        if (sl_conn_send(x, &iov, 1, &b, 1))
            pause_upstream(p);
        return;
    }

    if (p->swallow || p->enc) {
        sink_read(p, b, 0);
        return;
    }
    uv_buf_t iov[MAX_IOV];
    unsigned n = 0;
    sl_buf_t *hb = NULL;
    char *framing = NULL; /* chunk-size lines are written into hb after the head */
    size_t pos = 0;       /* first body byte in b */
    if (!p->head_parsed) {
        int rc = parse_head(p);
        if (rc <= 0)
            return;
        pos = (size_t)rc;
        p->head_parsed = 1;
        /* Passive health also counts answers like 502/503/504 (fail_on_status). */
        int bad = 0;
        for (uint32_t i = 0; i < p->svc->conf->nfail_status; i++)
            bad |= p->resp.status == p->svc->conf->fail_status[i];
        if (bad)
            server_failed(p);
        else
            sl_server_ok(p->server);
        p->trial = 0;
        x->status = p->resp.status;
        p->resp_kind = (uint8_t)sl_http1_response_body(&p->resp, x->req.method_id);
        if (p->resp.status == 101)
            p->resp_kind = SL_BODY_NONE;
        p->resp_left = p->resp.content_length;
        if (p->compress && p->resp.status != 101)
            maybe_compress(p);
        if (p->tap && p->resp.status != 101 && p->tap->head(x, &p->resp) == SL_TAP_SWALLOW) {
            p->swallow = 1;
            sink_read(p, b, pos);
            return;
        }
        if (!p->enc && (p->resp_kind == SL_BODY_CHUNKED || p->resp_kind == SL_BODY_EOF)) {
            if (x->req.version == 11)
                p->rechunk = 1;
            else
                p->close_after = 1; /* HTTP/1.0 client: the close delimits the body */
        }
        hb = sl_buf_get(&u->w->bufs);
        if (!hb) {
            fail(p, 502, "out of memory", E_RESET);
            return;
        }
        sl_out_t w = {hb->data, hb->data + hb->size, 0};
        if (build_response_head(p, &w)) {
            sl_buf_put(&u->w->bufs, hb);
            fail(p, 502, "upstream response head too large", E_BAD_RESPONSE);
            return;
        }
        hb->len = (uint32_t)(w.p - hb->data);
        iov[n++] = uv_buf_init(hb->data, hb->len);
        framing = hb->data + hb->len;
        if (p->enc) { /* the head alone; the body goes through the codec */
            sl_conn_send(x, iov, n, &hb, 1);
            sink_read(p, b, pos);
            return;
        }
        if (p->resp.status == 101) {
            /* Switch both sides to a raw tunnel; bytes already read follow the head. */
            p->state = PX_TUNNEL;
            u->rbuf = NULL;
            sl_buf_t *own[2] = {hb, b};
            if (b->len > pos)
                iov[n++] = uv_buf_init(b->data + pos, b->len - (unsigned)pos);
            sl_conn_send(x, iov, n, own, 2);
            sl_conn_tunnel(x);
            return;
        }
    }
    if (!hb) {
        hb = sl_buf_get(&u->w->bufs); /* framing scratch for re-chunking */
        if (!hb) {
            fail(p, 502, "out of memory", E_RESET);
            return;
        }
        framing = hb->data;
    }
    char *fend = hb->data + hb->size;
    int done = 0;
    switch (p->resp_kind) {
    case SL_BODY_NONE:
        done = 1;
        p->extra = pos < b->len;
        break;
    case SL_BODY_LENGTH: {
        size_t avail = b->len - pos;
        size_t take = avail < (uint64_t)p->resp_left ? avail : (size_t)p->resp_left;
        if (take) {
            iov[n++] = uv_buf_init(b->data + pos, (unsigned)take);
            if (p->tap)
                p->tap->body(x, b->data + pos, take);
        }
        p->resp_left -= (int64_t)take;
        if (p->resp_left == 0) {
            done = 1;
            p->extra = take < avail;
        }
        break;
    }
    case SL_BODY_EOF:
        if (b->len > pos) {
            if (p->rechunk) {
                size_t l = hex_line(framing, b->len - pos);
                iov[n++] = uv_buf_init(framing, (unsigned)l);
                framing += l;
            }
            iov[n++] = uv_buf_init(b->data + pos, b->len - (unsigned)pos);
            if (p->rechunk)
                iov[n++] = uv_buf_init((char *)"\r\n", 2);
            if (p->tap)
                p->tap->body(x, b->data + pos, b->len - pos);
        }
        break;
    case SL_BODY_CHUNKED:
        while (pos < b->len && !p->rch.done) {
            size_t off = 0, dlen = 0;
            int64_t c = sl_http1_chunked_decode(&p->rch, b->data + pos, b->len - pos, &off, &dlen);
            if (c < 0) {
                /* Framing is lost. Earlier batches may still reference hb and b: hand
                 * them to conn, which frees them after those writes. Then answer 502
                 * if nothing went out yet, else cut the response (fail decides). */
                sl_buf_t *own[2] = {hb, b};
                u->rbuf = NULL;
                sl_conn_send(x, NULL, 0, own, 2);
                warn(p, "bad chunked body");
                fail(p, 502, "bad response from upstream", E_BAD_RESPONSE);
                return;
            }
            if (dlen) {
                if (n + 3 > MAX_IOV || fend - framing < 20) {
                    /* Flush this batch; the buffers stay owned by the last send below,
                     * which completes after this one. */
                    sl_conn_send(x, iov, n, NULL, 0);
                    n = 0;
                }
                if (p->rechunk) {
                    size_t l = hex_line(framing, dlen);
                    iov[n++] = uv_buf_init(framing, (unsigned)l);
                    framing += l;
                }
                iov[n++] = uv_buf_init(b->data + pos + off, (unsigned)dlen);
                if (p->rechunk)
                    iov[n++] = uv_buf_init((char *)"\r\n", 2);
                if (p->tap)
                    p->tap->body(x, b->data + pos + off, dlen);
            }
            pos += (size_t)c;
        }
        if (p->rch.done) {
            done = 1;
            p->extra = pos < b->len;
            if (p->rechunk) {
                if (n + 1 > MAX_IOV) {
                    sl_conn_send(x, iov, n, NULL, 0);
                    n = 0;
                }
                iov[n++] = uv_buf_init((char *)"0\r\n\r\n", 5);
            }
        }
        break;
    }
    u->rbuf = NULL; /* ownership of b (and hb) passes to conn with the send */
    sl_buf_t *own[2] = {hb, b};
    if (done && p->tap)
        tap_end(p, 0); /* the tap (a cache fill) finishes before the client can see the end
                        * and ask again: its next request then finds what was stored */
    int congested = sl_conn_send(x, iov, n, own, 2);
    if (done) {
        complete(p);
        return;
    }
    if (congested)
        pause_upstream(p);
}

void sl_proxy_reset(sl_exchange_t *x)
{
    /* Everything but the parsed response, which the parser fills before any use. */
    memset(PX(x), 0, offsetof(px_t, resp));
}

void sl_proxy_set_tap(sl_exchange_t *x, const sl_proxy_tap_t *tap, const char *up_extra,
                      size_t up_extra_len, int strip_conditional)
{
    px_t *p = PX(x);
    p->tap = tap;
    p->up_extra = up_extra;
    p->up_extra_len = up_extra_len;
    p->strip_cond = strip_conditional ? 1 : 0;
}

void sl_proxy_start(sl_exchange_t *x, sl_service_t *svc)
{
    px_t *p = PX(x);
    p->x = x;
    p->svc = svc;
    x->ops = &px_ops;
    const sl_http_request_t *r = &x->req;
    p->upgrade = (r->flags & (SL_HF_UPGRADE | SL_HF_CONN_UPGRADE)) ==
                     (SL_HF_UPGRADE | SL_HF_CONN_UPGRADE) &&
                 r->version == 11;
    p->req_done = x->body_done;
    p->rebuild = 1;
    p->pick.thread = x->conn->w->index;
    if (svc->conf->balance == SL_BALANCE_HASH)
        p->pick.hash = request_hash(p);
    __atomic_add_fetch(&svc->active, 1, __ATOMIC_RELAXED);
    p->counted = 1;
    px_connect(p, 0);
}

void sl_proxy_set_compress(sl_exchange_t *x, unsigned codings, uint64_t min_length)
{
    px_t *p = PX(x);
    p->compress = (uint8_t)codings;
    p->compress_min = min_length;
}

unsigned sl_proxy_compress_codings(const sl_exchange_t *x, uint64_t *min_length)
{
    const px_t *p = (const px_t *)(x->hdata + px_offset);
    *min_length = p->compress_min;
    return p->compress;
}

void sl_proxy_done(sl_exchange_t *x)
{
    px_t *p = PX(x);
    if (p->enc) {
        sl_encoder_free(p->enc);
        p->enc = NULL;
        live_encoders--;
    }
    if (!p->svc)
        return; /* not a proxied exchange */
    if (p->counted)
        __atomic_sub_fetch(&p->svc->active, 1, __ATOMIC_RELAXED);
    if (p->retrying)
        __atomic_sub_fetch(&p->svc->active_retries, 1, __ATOMIC_RELAXED);
    if (p->trial && p->server)
        sl_server_unclaim(p->server); /* ended without an outcome: let another try */
    p->counted = p->retrying = p->trial = 0;
}
