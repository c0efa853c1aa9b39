/* conn.c - client connections; see conn.h.
 *
 * Buffer discipline. A connection holds a read buffer only while it has bytes to parse
 * or an exchange is active, so an idle keep-alive connection costs its struct and the
 * kernel socket, nothing more. A request head is parsed in place at rbuf[0, head_len)
 * (pipelined bytes are moved to the front first); the head stays there, untouched,
 * until the exchange ends, because every header slice points into it. Body bytes are
 * read after it and handed to the handler at once; once consumed, that space is
 * reused. So per-connection memory is bounded by one buffer plus 64 KiB of
 * unacknowledged output whatever the body sizes or the peers' speeds. */
#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/hash.h"
#include "../core/log.h"
#include "../core/out.h"
#include "h2.h"
#include "tls.h"

/* ST_H2: an HTTP/2 session owns the connection's reads (h2.c); no exchange is c->x. */
enum { ST_IDLE = 0, ST_HEAD, ST_ACTIVE, ST_TUNNEL, ST_LINGER, ST_CLOSED, ST_H2 };

#define OUT_HIGH (64 * 1024) /* congested above this many unacknowledged bytes */
#define OUT_LOW (16 * 1024)

typedef struct wreq {
    uv_write_t req;
    sl_conn_t *c;
    size_t bytes;
    unsigned nowned;
    sl_buf_t *owned[4];
    void (*release)(void *arg); /* run once the bytes are written (or dropped) */
    void *release_arg;
    uv_buf_t bufs[SL_CONN_MAX_IOV];
} wreq_t;

static void process(sl_conn_t *c);
static void update_reading(sl_conn_t *c);
static void finish_close(sl_conn_t *c);
static void conn_close(sl_conn_t *c);
static void write_failed(sl_conn_t *c);
static int wire_write(sl_conn_t *c, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                      unsigned nowned, void (*release)(void *arg), void *release_arg);

/* TLS connections read ciphertext here: it goes into the session's memory BIO at once,
 * within the read callback, so one buffer per thread serves every connection. */
#define TLS_SCRATCH (64 * 1024)
#define TLS_RECORD (16 * 1024) /* the most plaintext one TLS record carries */
static __thread char tls_scratch[TLS_SCRATCH];

/* ---- exchanges ---- */

typedef struct xnode {
    struct xnode *next;
} xnode_t;

static sl_exchange_t *exchange_get(sl_conn_t *c)
{
    sl_exchange_t *x;
#ifndef SL_SAN
    sl_worker_t *w = c->w;
    if (w->xfree) {
        xnode_t *n = w->xfree;
        w->xfree = n->next;
        x = (sl_exchange_t *)n;
    } else
#endif
        x = malloc(sizeof(sl_exchange_t) + c->cfg->handler_size);
    if (!x)
        return NULL;
    /* Only the fixed part is cleared here; the request is filled by the parser and
     * hdata is cleared at dispatch, so a head that never completes costs nothing more. */
    memset(x, 0, offsetof(sl_exchange_t, resp_extra));
    x->conn = c;
    x->route = -1;
    return x;
}

static void exchange_put(sl_worker_t *w, sl_exchange_t *x)
{
#ifndef SL_SAN
    xnode_t *n = (xnode_t *)x;
    n->next = w->xfree;
    w->xfree = n;
#else
    (void)w;
    free(x);
#endif
}

sl_exchange_t *sl_conn_exchange_new(sl_conn_t *c)
{
    return exchange_get(c);
}

void sl_conn_exchange_free(sl_exchange_t *x)
{
    sl_conn_t *c = x->conn;
    if (c->cfg->on_done)
        c->cfg->on_done(x);
    exchange_put(c->w, x);
}

void sl_conn_worker_free(sl_worker_t *w)
{
    while (w->xfree) {
        xnode_t *n = w->xfree;
        w->xfree = n->next;
        free(n);
    }
}

/* ---- reading ---- */

static void set_deadline(sl_conn_t *c, uint64_t ms)
{
    if (c->broken)
        ms = 1; /* see write_failed: close at the next tick, whatever else is due */
    if (ms)
        sl_timed_set(&c->w->timers, &c->timed, ms);
    else
        sl_timed_clear(&c->timed);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    (void)hint;
    sl_conn_t *c = h->data;
    if (c->tls) {
        out->base = tls_scratch;
        out->len = TLS_SCRATCH;
        return;
    }
    if (!c->rbuf) {
        c->rbuf = sl_buf_get(&c->w->bufs);
        c->rpos = 0;
        if (!c->rbuf) {
            out->base = NULL;
            out->len = 0; /* libuv reports UV_ENOBUFS; the connection is closed */
            return;
        }
    }
    sl_buf_t *b = c->rbuf;
    if (c->state == ST_ACTIVE && c->rpos == b->len && b->len > c->head_len) {
        /* All body bytes consumed: reuse the space after the head. */
        b->len = c->rpos = c->head_len;
    }
    out->base = b->data + b->len;
    out->len = b->size - b->len;
}

static void read_stop(sl_conn_t *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void read_start(sl_conn_t *c)
{
    if (!c->reading && c->state != ST_CLOSED && !c->peer_eof) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
            c->reading = 1;
    }
}

/* Give the read buffer back when nothing in it is needed any more. */
static void maybe_release_rbuf(sl_conn_t *c)
{
    if (c->rbuf && c->state == ST_IDLE && c->rpos == c->rbuf->len) {
        sl_buf_put(&c->w->bufs, c->rbuf);
        c->rbuf = NULL;
        c->rpos = 0;
    }
}

static void abort_exchange(sl_conn_t *c)
{
    sl_exchange_t *x = c->x;
    if (!x)
        return;
    c->x = NULL;
    if (x->ops && x->ops->abort)
        x->ops->abort(x);
    if (!x->status)
        x->status = 499; /* client closed request, as nginx logs it */
    if (c->cfg->on_done)
        c->cfg->on_done(x);
    exchange_put(c->w, x);
}

/* The peer's end of the stream (TCP EOF, a TLS close_notify) or a read error. */
static void on_eof(sl_conn_t *c, ssize_t nread)
{
    read_stop(c);
    c->peer_eof = 1;
    if (c->state == ST_TUNNEL && nread == UV_EOF && c->x) {
        if (c->x->ops && c->x->ops->body_end)
            c->x->ops->body_end(c->x);
        return;
    }
    if (c->state == ST_ACTIVE && c->x && nread == UV_EOF && c->x->body_done &&
        c->rpos == c->rbuf->len) {
        /* A client that half-closes after a complete request still gets its answer
         * (HTTP/1.0 tools do this); it cannot send another request anyway. */
        c->keepalive = 0;
        return;
    }
    conn_close(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sl_conn_t *c = s->data;
    if (nread > 0) {
        if (c->tls) {
            /* Ciphertext: process() decrypts it into rbuf as room allows. */
            if (sl_tls_feed(c->tls, buf->base, (size_t)nread) != 0)
                conn_close(c);
            else
                process(c);
            return;
        }
        c->rbuf->len += (uint32_t)nread;
        process(c);
        return;
    }
    if (nread == 0) { /* EAGAIN */
        maybe_release_rbuf(c);
        return;
    }
    on_eof(c, nread);
}

/* ---- TLS (only connections with c->tls come here) ---- */

/* Send whatever ciphertext the session produced (handshake messages, records, alerts),
 * copied out of its memory BIO into pooled buffers. Returns 1 when the output is
 * congested, as sl_conn_write. */
static int tls_flush(sl_conn_t *c)
{
    int congested = 0;
    while (c->state != ST_CLOSED && sl_tls_out_pending(c->tls)) {
        sl_buf_t *owned[4];
        uv_buf_t bufs[4];
        unsigned k = 0;
        while (k < 4 && sl_tls_out_pending(c->tls)) {
            sl_buf_t *b = sl_buf_get(&c->w->bufs);
            if (!b)
                break;
            b->len = (uint32_t)sl_tls_out_take(c->tls, b->data, b->size);
            bufs[k] = uv_buf_init(b->data, b->len);
            owned[k++] = b;
        }
        if (k == 0) {
            conn_close(c); /* out of buffers: the stream cannot be continued */
            return 0;
        }
        congested |= wire_write(c, bufs, k, owned, k, NULL, NULL);
    }
    return congested;
}

/* Decrypt what the session holds into rbuf, as far as there is room (the same room
 * alloc_cb gives a plain connection). Runs the handshake first. Returns plaintext bytes
 * added, or -1 when the connection closed. */
static long tls_pull(sl_conn_t *c)
{
    sl_tls_conn_t *t = c->tls;
    long total = 0;
    for (;;) {
        sl_buf_t *b = c->rbuf;
        if (!b && sl_tls_established(t) && sl_tls_has_input(t)) {
            if (!(b = c->rbuf = sl_buf_get(&c->w->bufs))) {
                conn_close(c);
                return -1;
            }
            c->rpos = 0;
        }
        char *dst = NULL;
        size_t room = 0;
        if (b) {
            if ((c->state == ST_ACTIVE && c->rpos == b->len && b->len > c->head_len) ||
                (c->state == ST_TUNNEL && c->rpos == b->len && b->len > c->head_len))
                b->len = c->rpos = c->head_len; /* all consumed: reuse the space */
            dst = b->data + b->len;
            room = b->size - b->len;
        }
        int was = sl_tls_established(t);
        long r = sl_tls_read(t, dst, room);
        if (r > 0) {
            b->len += (uint32_t)r;
            total += r;
            continue;
        }
        if (r == SL_AGAIN) {
            /* The handshake just completed. HTTP/2 over TLS hooks in here: when
             * sl_tls_alpn_h2(c), hand the connection to the h2 session instead of
             * reading HTTP/1.1 (ALPN offers h2 only once tls.alpn may list it). */
            if (!was && sl_tls_established(t))
                continue; /* the request may have come with the client's Finished */
            break;
        }
        if (r == SL_TLS_NOT_TLS) {
            /* Plain HTTP on the TLS port: there is no way to answer that a client could
             * read as HTTP and TLS at once; close without a word, as the handshake did. */
            conn_close(c);
            return -1;
        }
        tls_flush(c); /* the alert, or our close_notify answer */
        if (r == SL_TLS_EOF)
            on_eof(c, UV_EOF);
        else
            conn_close(c);
        return c->state == ST_CLOSED ? -1 : total;
    }
    tls_flush(c);
    return c->state == ST_CLOSED ? -1 : total;
}

/* sl_conn_write for a TLS connection: encrypt now (OpenSSL copies the bytes, so the
 * caller's buffers are released at once) and send the records. */
static int tls_send(sl_conn_t *c, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                    unsigned nowned, void (*release)(void *arg), void *release_arg)
{
    int ok = c->state != ST_CLOSED && !c->closing && !c->broken, congested = 0;
    /* One record's worth at a time, sent on as pooled buffers fill: the session's output
     * BIO stays small however large the caller's buffers are (a cached object may be
     * one buffer of megabytes). */
    for (unsigned i = 0; ok && i < n; i++) {
        const char *p = bufs[i].base;
        size_t left = bufs[i].len;
        while (ok && left) {
            size_t k = left < TLS_RECORD ? left : TLS_RECORD;
            if (sl_tls_write(c->tls, p, k) != 0)
                ok = 0;
            p += k;
            left -= k;
            if (ok && sl_tls_out_pending(c->tls) >= c->w->bufs.size) {
                congested |= tls_flush(c);
                ok = c->state != ST_CLOSED && !c->broken;
            }
        }
    }
    for (unsigned i = 0; i < nowned; i++)
        sl_buf_put(&c->w->bufs, owned[i]);
    if (release)
        release(release_arg);
    if (c->state == ST_CLOSED || c->closing)
        return 0;
    if (!ok) {
        write_failed(c);
        return 0;
    }
    return tls_flush(c) | congested;
}

static const char *status_message(int status)
{
    switch (status) {
    case 400: return "bad request";
    case 408: return "request header timeout";
    case 413: return "request body too large";
    case 431: return "request header fields too large";
    case 501: return "transfer coding not implemented";
    case 505: return "HTTP version not supported";
    default: return "error";
    }
}

/* A request the gateway refuses before dispatch: answer and close. */
static void refuse(sl_conn_t *c, int status)
{
    const char *msg = status_message(status);
    sl_exchange_t *x = c->x;
    if (!x) {
        x = c->x = exchange_get(c);
        if (!x) {
            conn_close(c);
            return;
        }
    }
    x->start_ns = x->start_ns ? x->start_ns : uv_hrtime();
    c->keepalive = 0;
    c->state = ST_ACTIVE;
    read_stop(c);
    /* The request fields may be half-filled garbage: make them empty for on_done. */
    memset(&x->req, 0, offsetof(sl_http_request_t, headers));
    sl_conn_error(x, status, msg);
}

/* The body of a dispatched request turned out bad (or too large): drop the handler's
 * side, answer status if nothing was sent yet, and close. */
static void fail_exchange(sl_conn_t *c, int status)
{
    sl_exchange_t *x = c->x;
    if (x->ops && x->ops->abort)
        x->ops->abort(x);
    x->ops = NULL;
    if (x->response_started) {
        conn_close(c);
        return;
    }
    const char *msg = status_message(status);
    c->keepalive = 0;
    read_stop(c);
    sl_conn_error(x, status, msg);
}

static void dispatch(sl_conn_t *c, int head_len)
{
    sl_exchange_t *x = c->x;
    const sl_http_request_t *r = &x->req;
    c->head_len = (uint32_t)head_len;
    c->rpos = (uint32_t)head_len;
    c->state = ST_ACTIVE;
    x->id = ++c->requests;
    x->start_ns = uv_hrtime();
    c->keepalive = (r->version == 11) ? !(r->flags & SL_HF_CONN_CLOSE)
                                      : !!(r->flags & SL_HF_CONN_KEEPALIVE);
    if (c->w->draining)
        c->keepalive = 0;
    c->body_kind = (uint8_t)sl_http1_request_body(r);
    if (c->body_kind == SL_BODY_LENGTH) {
        if (c->cfg->max_body_bytes && (uint64_t)r->content_length > c->cfg->max_body_bytes) {
            refuse(c, 413);
            return;
        }
        c->body_left = r->content_length;
        set_deadline(c, c->cfg->idle_timeout_ms);
    } else if (c->body_kind == SL_BODY_CHUNKED) {
        memset(&c->chunked, 0, sizeof(c->chunked));
        set_deadline(c, c->cfg->idle_timeout_ms);
    } else {
        x->body_done = 1;
        sl_timed_clear(&c->timed);
    }
    x->dispatched = 1;
    c->cfg->handler(x);
    if (c->x != x || c->state != ST_ACTIVE)
        return; /* answered (or closed) synchronously */
    if (!x->body_done && (r->flags & SL_HF_EXPECT_CONTINUE) && r->version == 11 &&
        !x->response_started && c->rpos == c->rbuf->len) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
        x->continue_sent = 1;
        sl_conn_send(x, &b, 1, NULL, 0);
        /* An interim answer: the final one has not started (errors can still be sent). */
        x->response_started = 0;
        x->bytes_out = 0;
    }
}

/* Hand body bytes in rbuf[rpos, len) to the handler. Returns 0 to go on, 1 when the
 * handler paused or the exchange went away. */
static int deliver_body(sl_conn_t *c)
{
    sl_exchange_t *x = c->x;
    sl_buf_t *b = c->rbuf;
    while (!x->body_done && c->rpos < b->len && !c->paused) {
        const char *p = b->data + c->rpos;
        size_t avail = b->len - c->rpos;
        const char *data = p;
        size_t dlen = 0;
        if (c->body_kind == SL_BODY_LENGTH) {
            dlen = avail < (uint64_t)c->body_left ? avail : (size_t)c->body_left;
            c->rpos += (uint32_t)dlen;
            c->body_left -= (int64_t)dlen;
            if (c->body_left == 0)
                x->body_done = 1;
        } else {
            size_t off = 0;
            int64_t n = sl_http1_chunked_decode(&c->chunked, p, avail, &off, &dlen);
            if (n < 0) {
                /* The head was accepted and maybe forwarded; the body turned out bad.
                 * If nothing was answered yet, say so; either way close. */
                fail_exchange(c, n == SL_ETOOBIG ? 431 : 400);
                return 1;
            }
            c->rpos += (uint32_t)n;
            data = p + off;
            if (c->chunked.done)
                x->body_done = 1;
        }
        x->bytes_in += dlen;
        if (c->cfg->max_body_bytes && x->bytes_in > c->cfg->max_body_bytes) {
            fail_exchange(c, 413);
            return 1;
        }
        if (dlen && x->ops && x->ops->body && x->ops->body(x, data, dlen)) {
            if (c->x == x)
                c->paused = 1;
        }
        if (c->x != x)
            return 1;
        if (x->body_done) {
            sl_timed_clear(&c->timed);
            if (x->ops && x->ops->body_end)
                x->ops->body_end(x);
            if (c->x != x)
                return 1;
        } else {
            set_deadline(c, c->cfg->idle_timeout_ms);
        }
    }
    return c->paused;
}

/* Parse and serve whatever rbuf holds. Re-entrant calls (a handler that answers
 * synchronously, whose sl_conn_end wants to serve the next pipelined request) only mark
 * work; the outermost call loops. */
static void process(sl_conn_t *c)
{
    if (c->in_process) {
        c->end_pending = 1;
        return;
    }
    c->in_process = 1;
    for (;;) {
        c->end_pending = 0;
        if (c->state == ST_CLOSED)
            break;
        if (c->tls && tls_pull(c) < 0)
            break;
        sl_buf_t *b = c->rbuf;
        if (c->state == ST_H2) {
            if (b && c->rpos < b->len) {
                /* The session copies what it keeps, so the buffer goes back at once; it
                 * is detached first because the session may close the connection. */
                c->rbuf = NULL;
                set_deadline(c, c->cfg->idle_timeout_ms);
                sl_h2_recv(c, b->data + c->rpos, b->len - c->rpos);
                c->rpos = 0;
                sl_buf_put(&c->w->bufs, b);
            }
            /* TLS records already read but not yet decrypted (the read buffer was full):
             * decrypt and pass them on now, as no read event will come for them. */
            if (c->tls && c->state == ST_H2 && sl_tls_has_input(c->tls) && tls_pull(c) > 0)
                continue;
            break;
        }
        if (c->state == ST_TUNNEL) {
            sl_exchange_t *x = c->x;
            while (x && c->rpos < b->len && !c->paused) {
                const char *p = b->data + c->rpos;
                size_t n = b->len - c->rpos;
                c->rpos = b->len;
                if (x->ops->body(x, p, n))
                    c->paused = 1;
            }
            if (c->rpos == b->len)
                b->len = c->rpos = c->head_len;
            if (c->tls && !c->paused && sl_tls_has_input(c->tls) && tls_pull(c) > 0)
                continue; /* more was decrypted now that there is room */
            break;
        }
        if (c->state == ST_ACTIVE) {
            if (c->x && !c->x->body_done && !c->paused)
                deliver_body(c);
            if (c->end_pending)
                continue;
            if (c->tls && c->state == ST_ACTIVE && c->x && !c->x->body_done && !c->paused &&
                sl_tls_has_input(c->tls) && tls_pull(c) > 0)
                continue; /* body bytes the full buffer could not take before */
            break; /* pipelined bytes wait in rbuf for the current answer */
        }
        /* IDLE or HEAD: look for a request head. */
        if (!b || c->rpos == b->len) {
            maybe_release_rbuf(c);
            break;
        }
        if (c->rpos) {
            /* Pipelined request: move it to the front so the head sits at rbuf[0..]. */
            memmove(b->data, b->data + c->rpos, b->len - c->rpos);
            b->len -= c->rpos;
            c->rpos = 0;
            c->scan = 0;
        }
        if (SL_UNLIKELY(c->requests == 0 && b->data[0] == 'P' && c->cfg->h2_max_streams)) {
            /* h2c with prior knowledge: the client preface instead of a first request. */
            int pf = sl_h2_preface(b->data, b->len);
            if (pf == 0)
                break; /* a prefix of it: wait for more */
            if (pf > 0) {
                c->rbuf = NULL;
                sl_h2_start(c, b->data, b->len);
                sl_buf_put(&c->w->bufs, b);
                break;
            }
        }
        if (c->state == ST_IDLE) {
            c->state = ST_HEAD;
            c->scan = 0;
            set_deadline(c, c->cfg->header_timeout_ms);
        }
        if (!c->x && !(c->x = exchange_get(c))) {
            conn_close(c);
            break;
        }
        int rc = sl_http1_parse_request(b->data, b->len, c->cfg->max_header_bytes, &c->scan,
                                        &c->x->req);
        if (rc > 0) {
            dispatch(c, rc);
            continue;
        }
        if (rc == SL_AGAIN) {
            if (b->len == b->size)
                refuse(c, 431);
            break;
        }
        refuse(c, rc == SL_ETOOBIG     ? 431
                  : rc == SL_ENOTSUP   ? 501
                  : rc == SL_EVERSION ? 505
                                       : 400);
        break;
    }
    c->in_process = 0;
    update_reading(c);
}

/* Read when there is room and a reason: not closing, and the buffer has free space (or
 * consumed body space alloc_cb can reuse). A paused exchange keeps reading until the buffer
 * is full (process() delivers nothing while paused): stopping and restarting the socket for
 * every pause would cost two epoll_ctl calls, and pauses are per request (a shared
 * rate-limit decision) and short; the buffer bounds what is read meanwhile. */
static void update_reading(sl_conn_t *c)
{
    if (c->state == ST_CLOSED || c->closing) {
        read_stop(c);
        return;
    }
    if (c->state == ST_H2) {
        /* paused: the session's output is congested; reading would only make more. */
        if (c->paused)
            read_stop(c);
        else
            read_start(c);
        return;
    }
    sl_buf_t *b = c->rbuf;
    if (b && b->len == b->size &&
        !(c->state == ST_ACTIVE && c->rpos == b->len && b->len > c->head_len) &&
        !(c->state == ST_TUNNEL && c->rpos == b->len)) {
        read_stop(c); /* full of pipelined bytes: wait for the current answer */
        return;
    }
    read_start(c);
}

/* ---- writing ---- */

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *wr = (wreq_t *)req;
    sl_conn_t *c = wr->c;
    for (unsigned i = 0; i < wr->nowned; i++)
        sl_buf_put(&c->w->bufs, wr->owned[i]);
    if (wr->release)
        wr->release(wr->release_arg);
    c->pending_bytes -= wr->bytes;
    c->pending_writes--;
    free(wr);
    if (c->state == ST_CLOSED)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->closing && c->pending_writes == 0) {
        finish_close(c);
        return;
    }
    if (c->pending_writes == 0 && c->x)
        sl_timed_clear(&c->timed);
    else if (c->pending_writes)
        set_deadline(c, c->cfg->idle_timeout_ms); /* a slow reader must keep reading */
    if (c->congested && c->pending_bytes <= OUT_LOW) {
        c->congested = 0;
        if (c->state == ST_H2) {
            sl_h2_drained(c);
            update_reading(c);
        } else if (c->x && c->x->ops && c->x->ops->drained) {
            c->x->ops->drained(c->x);
        }
    }
}

/* A write failed at once (the client reset the connection, or memory ran out). Closing
 * here would abort the exchange - and free it - inside the handler's send call, which then
 * carries on with freed state. Instead drop every further byte and close at the next tick
 * (at most SL_TICK_MS away): the abort then comes from the timer, outside any handler. */
static void write_failed(sl_conn_t *c)
{
    c->broken = 1;
    c->keepalive = 0;
    set_deadline(c, 1);
}

int sl_conn_send(sl_exchange_t *x, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                 unsigned nowned)
{
    return sl_conn_send_ref(x, bufs, n, owned, nowned, NULL, NULL);
}

int sl_conn_send_ref(sl_exchange_t *x, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                     unsigned nowned, void (*release)(void *arg), void *release_arg)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total)
        x->response_started = 1;
    x->bytes_out += total;
    if (SL_UNLIKELY(x->h2 != NULL))
        return sl_h2_send(x, bufs, n, owned, nowned, release, release_arg);
    return sl_conn_write(x->conn, bufs, n, owned, nowned, release, release_arg);
}

int sl_conn_write(sl_conn_t *c, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                  unsigned nowned, void (*release)(void *arg), void *release_arg)
{
    if (c->tls)
        return tls_send(c, bufs, n, owned, nowned, release, release_arg);
    return wire_write(c, bufs, n, owned, nowned, release, release_arg);
}

/* Bytes to the socket as they are: try a direct write, queue the rest. Same contract as
 * sl_conn_write. A closing TLS connection still sends here (its close_notify). */
static inline __attribute__((always_inline)) int
wire_write(sl_conn_t *c, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned, unsigned nowned,
           void (*release)(void *arg), void *release_arg)
{
    sl_bufpool_t *pool = &c->w->bufs;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (c->state == ST_CLOSED || c->broken || (c->closing && !c->tls))
        goto release;
    size_t done = 0;
    if (total == 0 && c->pending_writes == 0)
        goto release;
    if (c->pending_writes == 0) {
        int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (r >= 0)
            done = (size_t)r;
        else if (r != UV_EAGAIN && r != UV_ENOSYS) {
            write_failed(c);
            goto release;
        }
        if (done == total)
            goto release;
    }
    /* Queue what is left, keeping the owned buffers alive until it is written. */
    wreq_t *wr = malloc(sizeof(*wr));
    if (!wr || n > SL_ARRAY_LEN(wr->bufs) || nowned > SL_ARRAY_LEN(wr->owned)) {
        free(wr);
        write_failed(c);
        goto release;
    }
    unsigned m = 0;
    size_t skip = done;
    for (unsigned i = 0; i < n; i++) {
        if (skip >= bufs[i].len) {
            skip -= bufs[i].len;
            continue;
        }
        wr->bufs[m++] = uv_buf_init(bufs[i].base + skip, (unsigned)(bufs[i].len - skip));
        skip = 0;
    }
    if (m == 0) /* only buffers to release after the queued writes: an empty write */
        wr->bufs[m++] = uv_buf_init((char *)"", 0);
    wr->c = c;
    wr->bytes = total - done;
    wr->nowned = nowned;
    for (unsigned i = 0; i < nowned; i++)
        wr->owned[i] = owned[i];
    wr->release = release;
    wr->release_arg = release_arg;
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, wr->bufs, m, write_cb) < 0) {
        free(wr);
        write_failed(c);
        goto release;
    }
    c->pending_writes++;
    c->pending_bytes += wr->bytes;
    set_deadline(c, c->cfg->idle_timeout_ms);
    if (c->pending_bytes > OUT_HIGH) {
        c->congested = 1;
        return 1;
    }
    return 0;
release:
    for (unsigned i = 0; i < nowned; i++)
        sl_buf_put(pool, owned[i]);
    if (release)
        release(release_arg);
    return 0;
}


/* An HTTP/1.1 head for a stream's request (its fields live in the stream, not in a read
 * buffer): into b, or 0 when it does not fit. */
static size_t h2_head(const sl_exchange_t *from, sl_buf_t *b)
{
    const sl_http_request_t *r = &from->req;
    sl_out_t o = {b->data, b->data + b->size, 0};
    int host = 0;
    sl_out_put(&o, r->method.p, r->method.len);
    sl_out_put(&o, " ", 1);
    sl_out_put(&o, r->target.p, r->target.len);
    sl_out_put(&o, " HTTP/1.1\r\n", 11);
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        host |= h->id == SL_H_HOST;
        sl_out_put(&o, h->name, h->name_len);
        sl_out_put(&o, ": ", 2);
        sl_out_put(&o, h->value, h->value_len);
        sl_out_put(&o, "\r\n", 2);
    }
    if (!host) {
        sl_out_put(&o, "Host: ", 6);
        sl_out_put(&o, r->host.p, r->host.len);
        sl_out_put(&o, "\r\n", 2);
    }
    sl_out_put(&o, "\r\n", 2);
    return o.overflow ? 0 : (size_t)(o.p - b->data);
}

sl_exchange_t *sl_conn_detached(sl_worker_t *w, const sl_conn_cfg_t *cfg, const sl_exchange_t *from)
{
    const sl_conn_t *fc = from->conn;
    if (!from->h2 && (!fc->rbuf || !fc->head_len))
        return NULL;
    sl_conn_t *c = calloc(1, sizeof(*c));
    sl_buf_t *b = c ? sl_buf_get(&w->bufs) : NULL;
    if (b && from->h2)
        b->len = (uint32_t)h2_head(from, b);
    if (!b || (from->h2 ? b->len == 0 : b->size < fc->head_len)) {
        if (b)
            sl_buf_put(&w->bufs, b);
        free(c);
        return NULL;
    }
    c->w = w;
    c->cfg = cfg;
    c->state = ST_CLOSED; /* whatever is sent goes nowhere */
    c->detached = 1;
    c->rbuf = b;
    memcpy(c->peer, fc->peer, sizeof(c->peer));
    c->peer_len = fc->peer_len;
    c->peer_hash = fc->peer_hash;
    if (!from->h2) {
        memcpy(b->data, fc->rbuf->data, fc->head_len);
        b->len = fc->head_len;
    }
    sl_exchange_t *x = exchange_get(c);
    size_t scan = 0;
    if (!x || sl_http1_parse_request(b->data, b->len, b->size, &scan, &x->req) != (int)b->len) {
        if (x)
            exchange_put(w, x);
        sl_buf_put(&w->bufs, b);
        free(c);
        return NULL;
    }
    c->head_len = b->len;
    c->x = x;
    x->start_ns = uv_hrtime();
    x->body_done = 1;
    x->dispatched = 1;
    x->route = from->route;
    return x;
}

int sl_conn_keepalive(const sl_exchange_t *x)
{
    if (x->h2)
        return 1; /* a stream's end never ends the connection (GOAWAY does) */
    return x->conn->keepalive && !x->conn->w->draining;
}

void sl_conn_end(sl_exchange_t *x, int keepalive_ok)
{
    sl_conn_t *c = x->conn;
    if (SL_UNLIKELY(x->h2 != NULL)) {
        sl_h2_end(x);
        return;
    }
    if (c->cfg->on_done)
        c->cfg->on_done(x);
    c->x = NULL;
    int body_left = !x->body_done; /* unread request body: the stream is out of sync */
    int refused = !x->dispatched;
    exchange_put(c->w, x);
    if (c->detached) {
        sl_buf_put(&c->w->bufs, c->rbuf);
        free(c);
        return;
    }
    if (c->state == ST_CLOSED)
        return;
    if (!keepalive_ok || !c->keepalive || body_left || c->w->draining || c->peer_eof) {
        c->closing = 1;
        /* The client may still be sending (a body we refused, pipelined requests):
         * closing with unread bytes makes the kernel send RST, which can destroy our
         * answer before the client reads it. Linger instead, as nginx does. */
        c->linger = !c->peer_eof &&
                    (body_left || refused || (c->rbuf && c->rpos < c->rbuf->len));
        read_stop(c);
        if (c->pending_writes == 0)
            finish_close(c);
        return;
    }
    c->state = ST_IDLE;
    c->paused = 0;
    c->head_len = 0;
    if (c->pending_writes == 0)
        set_deadline(c, c->cfg->idle_timeout_ms);
    if (c->tls)
        sl_tls_trim(c->tls);
    process(c);
}

void sl_conn_respond(sl_exchange_t *x, int status, const char *ctype, const char *body,
                     size_t len, const char *extra)
{
    sl_conn_t *c = x->conn;
    sl_buf_t *b = sl_buf_get(&c->w->bufs);
    x->status = status;
    if (!b) {
        c->keepalive = 0;
        sl_conn_end(x, 0);
        return;
    }
    int ka = sl_conn_keepalive(x);
    int head_only = x->req.method_id == SL_M_HEAD || status == 204 || status == 304;
    sl_out_t o = {b->data, b->data + b->size, 0};
    sl_out_put(&o, "HTTP/1.1 ", 9);
    sl_out_u64(&o, (uint64_t)status);
    sl_out_put(&o, " ", 1);
    sl_out_str(&o, sl_http1_reason(status));
    sl_out_put(&o, "\r\nServer: sluice\r\n", 18);
    sl_out_put(&o, c->w->date, c->w->date_len);
    sl_out_put(&o, "\r\n", 2);
    if (ctype) {
        sl_out_put(&o, "Content-Type: ", 14);
        sl_out_str(&o, ctype);
        sl_out_put(&o, "\r\n", 2);
    }
    sl_out_put(&o, "Content-Length: ", 16);
    sl_out_u64(&o, len);
    sl_out_put(&o, "\r\n", 2);
    if (!ka)
        sl_out_put(&o, "Connection: close\r\n", 19);
    if (extra)
        sl_out_str(&o, extra);
    sl_out_put(&o, x->resp_extra, x->resp_extra_len);
    sl_out_put(&o, "\r\n", 2);
    if (body && !head_only)
        sl_out_put(&o, body, len);
    if (o.overflow) {
        sl_buf_put(&c->w->bufs, b);
        sl_conn_end(x, 0);
        return;
    }
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)(o.p - b->data));
    sl_conn_send(x, &ub, 1, &b, 1);
    sl_conn_end(x, ka);
}

void sl_conn_error(sl_exchange_t *x, int status, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}\n", msg, status);
    sl_conn_respond(x, status, "application/json", body, (size_t)n, NULL);
}

void sl_conn_pause(sl_exchange_t *x)
{
    if (x->h2) {
        sl_h2_pause(x);
        return;
    }
    x->conn->paused = 1;
}

void sl_conn_resume(sl_exchange_t *x)
{
    sl_conn_t *c = x->conn;
    if (x->h2) {
        sl_h2_resume(x);
        return;
    }
    if (!c->paused)
        return;
    c->paused = 0;
    process(c);
}

void sl_conn_tunnel(sl_exchange_t *x)
{
    sl_conn_t *c = x->conn;
    if (x->h2) {
        /* No 101 on a stream: h2.c reset it when it saw the head; the handler's bytes
         * go nowhere until it ends the exchange. */
        x->tunnel = 1;
        return;
    }
    c->state = ST_TUNNEL;
    x->tunnel = 1;
    c->keepalive = 0;
    sl_timed_clear(&c->timed);
    process(c);
}

/* ---- lifecycle ---- */

static void close_cb(uv_handle_t *h)
{
    sl_conn_t *c = h->data;
    if (c->h2)
        sl_h2_free(c); /* here, not in conn_close: that may run inside nghttp2 */
    sl_tls_conn_free(c->tls);
    free(c);
}

static void conn_close(sl_conn_t *c)
{
    if (c->state == ST_CLOSED)
        return;
    if (c->h2)
        sl_h2_closed(c);
    abort_exchange(c);
    c->state = ST_CLOSED;
    sl_timed_unlink(&c->timed);
    if (c->rbuf) {
        sl_buf_put(&c->w->bufs, c->rbuf);
        c->rbuf = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->w->nconns--;
    uv_close((uv_handle_t *)&c->tcp, close_cb);
}

/* Lingering close: stop sending (FIN), then read and drop whatever the client still
 * sends, until it closes or LINGER_MS pass; then close. */
#define LINGER_MS 2000

static void linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    (void)hint;
    sl_conn_t *c = h->data;
    if (!c->rbuf && !(c->rbuf = sl_buf_get(&c->w->bufs))) {
        out->base = NULL;
        out->len = 0;
        return;
    }
    out->base = c->rbuf->data;
    out->len = c->rbuf->size;
}

static void linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    sl_conn_t *c = s->data;
    if (nread < 0)
        conn_close(c);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    sl_conn_t *c = req->data;
    free(req);
    if (c->state == ST_CLOSED)
        return;
    if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, linger_alloc, linger_read) < 0) {
        conn_close(c);
        return;
    }
    c->reading = 1;
}

static void finish_close(sl_conn_t *c)
{
    if (c->tls && c->state != ST_CLOSED) {
        /* close_notify first, so the client knows the response was not truncated;
         * write_cb calls back here once it is sent. */
        sl_tls_shutdown(c->tls);
        if (sl_tls_out_pending(c->tls)) {
            tls_flush(c);
            if (c->pending_writes)
                return;
        }
    }
    if (!c->linger || c->state == ST_CLOSED) {
        conn_close(c);
        return;
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req) {
        conn_close(c);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_cb) < 0) {
        free(req);
        conn_close(c);
        return;
    }
    c->state = ST_LINGER;
    set_deadline(c, LINGER_MS);
}

static void expire(sl_timed_t *t)
{
    sl_conn_t *c = (sl_conn_t *)((char *)t - offsetof(sl_conn_t, timed));
    if (c->state == ST_H2 && !c->closing) {
        /* As on HTTP/1.1, a request with the handler is bounded by the upstream's
         * timeouts, not the idle one; a client that stops reading our answer or sending
         * its body is not waited for. */
        if (c->pending_writes == 0 && sl_h2_busy(c)) {
            set_deadline(c, c->cfg->idle_timeout_ms);
            return;
        }
        sl_h2_timeout(c); /* GOAWAY, then sl_conn_shutdown */
        if (c->state == ST_H2 && !c->closing)
            conn_close(c);
        return;
    }
    if (c->state == ST_HEAD && !c->broken && !c->x->response_started && c->pending_writes == 0) {
        refuse(c, 408);
        return;
    }
    conn_close(c);
}

sl_conn_t *sl_conn_new(sl_worker_t *w)
{
    (void)w;
    sl_conn_t *c = calloc(1, sizeof(*c));
    return c;
}

void sl_conn_start(sl_conn_t *c, sl_worker_t *w, const sl_conn_cfg_t *cfg)
{
    c->w = w;
    c->cfg = cfg;
    c->tcp.data = c;
    c->state = ST_IDLE;
    c->keepalive = 1;
    c->next = w->conns;
    c->prev = NULL;
    if (c->next)
        c->next->prev = c;
    w->conns = c;
    w->nconns++;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
    }
    c->peer_len = (uint8_t)strlen(c->peer);
    c->peer_hash = sl_hash_bytes(c->peer, c->peer_len);
    uv_tcp_nodelay(&c->tcp, 1);
    sl_timed_link(&w->timers, &c->timed, expire);
    set_deadline(c, cfg->idle_timeout_ms);
    if (cfg->tls) {
        /* The handshake counts as part of the request head: a client that connects and
         * never sends a ClientHello is gone after header_timeout. */
        if (!(c->tls = sl_tls_conn_new(cfg->tls))) {
            conn_close(c);
            return;
        }
        set_deadline(c, cfg->header_timeout_ms);
    }
    read_start(c);
}

void sl_conn_drain_all(sl_worker_t *w, uint64_t idle_grace_ms)
{
    sl_conn_t *c = w->conns;
    while (c) {
        sl_conn_t *next = c->next;
        if (c->state == ST_H2) {
            sl_h2_drain(c); /* GOAWAY: open streams finish, no new ones */
            c = next;
            continue;
        }
        if (idle_grace_ms && c->state == ST_IDLE && c->pending_writes == 0) {
            c->keepalive = 0;
            if (idle_grace_ms < c->cfg->idle_timeout_ms)
                set_deadline(c, idle_grace_ms);
            c = next;
            continue;
        }
        /* Idle between requests: close. A connection accepted a moment before the drain
         * that has sent nothing yet is not idle, its request is on the way (a reload
         * stops accepting while clients still connect): it gets that one answer, with
         * Connection: close, or its header_timeout. */
        if (c->state == ST_IDLE && c->pending_writes == 0 && c->requests > 0)
            conn_close(c);
        else
            c->keepalive = 0;
        c = next;
    }
}

void sl_conn_shutdown(sl_conn_t *c)
{
    if (c->state == ST_CLOSED || c->closing)
        return;
    c->closing = 1;
    /* The client may still be sending (a flood we refused): linger so that our last
     * frames (GOAWAY) are not destroyed by the RST that unread bytes would cause. */
    c->linger = !c->peer_eof;
    read_stop(c);
    if (c->pending_writes == 0)
        finish_close(c);
    else
        set_deadline(c, LINGER_MS);
}

void sl_conn_bind_h2(sl_conn_t *c, sl_h2_t *s)
{
    c->h2 = s;
    c->state = ST_H2;
    c->paused = 0;
    c->head_len = 0;
    if (c->x) { /* an exchange begun for what turned out to be the preface */
        exchange_put(c->w, c->x);
        c->x = NULL;
    }
    set_deadline(c, c->cfg->idle_timeout_ms);
}

void sl_conn_close_all(sl_worker_t *w)
{
    while (w->conns)
        conn_close(w->conns);
}
