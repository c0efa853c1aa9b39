/* h2.c - HTTP/2 server sessions; see h2.h.
 *
 * Shape. nghttp2 does the framing, HPACK, stream states and flow-control arithmetic in
 * memory (mem_recv on what conn read, mem_send into pool buffers written with
 * sl_conn_write). Each request stream becomes an sl_exchange_t whose request head is
 * built from the pseudo-headers and fields (copied into memory the stream owns) and
 * handed to the connection's handler, so routing, limits, the cache and the proxy run
 * unchanged. They answer as they would an HTTP/1.1 client: a serialised response head
 * and body bytes (chunked when the upstream's length is unknown, as for any 1.1 client).
 * sl_h2_send parses that head with the HTTP/1 response parser into HEADERS (dropping the
 * hop-by-hop fields), de-chunks the body and queues it for the stream's data provider.
 *
 * Lifetimes. A stream struct lives from its HEADERS until nghttp2 closes the stream (or
 * the session goes). Its exchange lives from dispatch until the handler's sl_conn_end or
 * an abort (client RST_STREAM, connection gone), as on HTTP/1; the queued answer stays
 * with the stream, so the exchange can end before its last DATA frame is sent.
 *
 * Re-entrancy. nghttp2 forbids calling mem_send from inside its callbacks, and mem_send
 * may close streams (and so abort exchanges); so what handlers call (send, end, resume)
 * only queues, and the frames go out from a uv_check handle after this loop iteration's
 * I/O callbacks, never with a handler on the stack. That also batches the frames of many
 * streams into one write. Reads, drains and timers (top-level callbacks) flush at once.
 * Handlers' drained callbacks run after mem_send returns, never inside it.
 *
 * Flow control, inbound. The session does not auto-acknowledge DATA: bytes are consumed
 * (WINDOW_UPDATE) only once delivered to the handler, so a handler that pauses stops the
 * client after one window; what arrives meanwhile is held per stream, bounded by the
 * stream window (H2_STREAM_WINDOW) and in total by the connection window. */
#include "h2.h"

#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "../core/metrics.h"

/* Windows we grant the client for request bodies. 256 KiB per stream lets an upload run
 * at loopback speed without a round trip per 64 KiB; the connection's 1 MiB bounds what
 * one client can make us hold across its paused streams. */
#define H2_STREAM_WINDOW (256 * 1024)
#define H2_CONN_WINDOW (1024 * 1024)
/* A stream's queued answer above this reports congestion to the handler (as conn's
 * 64 KiB of unacknowledged output does); below LOW, ops->drained. */
#define H2_OUT_HIGH (64 * 1024)
#define H2_OUT_LOW (16 * 1024)
/* Flood bounds, per connection per one-second window. A browser cancels a handful of
 * streams a second, pings rarely, and never sends empty DATA without END_STREAM; these
 * are orders of magnitude above that and far below what costs us real work. nghttp2's
 * own reset limit (1000 burst, 33/s) stays as a second line. */
#define H2_MAX_RESETS 200        /* RST_STREAM from the client (rapid reset, CVE-2023-44487) */
#define H2_MAX_CONTROL 500       /* PING, SETTINGS, PRIORITY frames */
#define H2_MAX_EMPTY_DATA 100    /* DATA frames with no payload and no END_STREAM */
#define H2_MAX_OUTBOUND_ACK 1000 /* PING/SETTINGS ACKs queued unsent (peer not reading) */
#define H2_MAX_CONTINUATIONS 16  /* CONTINUATION frames after one HEADERS */
/* A response head above this many bytes fails the stream (the pool buffer bounds it on
 * HTTP/1 too). */
#define H2_MAX_RESP_HEAD (64 * 1024)

enum {
    GA_SHUTDOWN,
    GA_IDLE,
    GA_PROTOCOL,
    GA_RAPID_RESET,
    GA_CONTROL_FLOOD,
    GA_EMPTY_DATA,
    GA_HEADER_FLOOD,
    GA__COUNT
};
static const char *const ga_names[GA__COUNT] = {"shutdown",    "idle",          "protocol_error",
                                                "rapid_reset", "control_flood", "empty_data_flood",
                                                "header_flood"};
enum { RST_BY_CLIENT, RST_BY_SERVER };

static sl_counter_t *m_sessions, *m_streams, *m_goaway, *m_resets;

static inline void count(sl_counter_t *c, uint64_t key)
{
    if (c) /* a fuzzer runs sessions without registering metrics */
        sl_counter_add(c, key, 1);
}

/* A byte run queued on a stream: request body held while paused, or answer body. */
typedef struct chunk {
    struct chunk *next;
    uint32_t len, off;
    char data[];
} chunk_t;

typedef struct queue {
    chunk_t *head, *tail;
    size_t bytes;
} queue_t;

/* One request field (or pseudo-header) inside the stream's header store. */
typedef struct field {
    uint32_t off;
    uint32_t value_len;
    uint16_t name_len;
} field_t;

typedef struct stream stream_t;
struct stream {
    stream_t *prev, *next; /* the session's list */
    sl_h2_t *s;
    sl_exchange_t *x; /* NULL before dispatch and once the exchange ended or aborted */
    int32_t id;
    /* Request head: names and values copied into hb (offsets, since hb grows). */
    char *hb;
    uint32_t hb_len, hb_cap;
    uint32_t list_bytes; /* decoded header list size (RFC 9113 §6.5.2 counting) */
    field_t f[SL_HTTP_MAX_HEADERS];
    uint16_t nf;
    field_t method, path, authority;
    uint8_t too_big : 1, bad : 1, req_end : 1, paused : 1, in_deliver : 1;
    /* Answer side. */
    uint8_t head_done : 1, chunked : 1, bodyless : 1, ended : 1, deferred : 1, congested : 1,
        want_drained : 1, submitted : 1, reset : 1, truncated : 1;
    char *rh; /* response head bytes until its end is seen */
    uint32_t rh_len;
    int64_t resp_left; /* Content-Length bytes still expected; -1 = not delimited by length */
    sl_chunked_t ch;
    queue_t in, out;
};

struct sl_h2 {
    nghttp2_session *ng;
    sl_conn_t *c;
    const sl_h2_io_t *io;
    stream_t *streams;
    uint32_t nstreams;
    uint8_t dead : 1, in_ng : 1, flushing : 1, again : 1, congested : 1, fatal : 1, goaway : 1,
        closing : 1;
    sl_buf_t *ob;     /* output being filled */
    uv_check_t check; /* runs the flush handlers asked for (see the top of the file) */
    uint8_t has_check;
    /* Flood accounting for the current one-second window. */
    uint64_t win_ns;
    uint32_t resets, control, empty_data;
    uint32_t block_frames; /* frames of the header block being received */
    uint8_t ga_reason;     /* why we sent GOAWAY (metric label); GA_PROTOCOL when nghttp2 did */
};

static void flush(sl_h2_t *s);

static void on_check(uv_check_t *h)
{
    sl_h2_t *s = h->data;
    uv_check_stop(h);
    flush(s);
}

/* Flush soon, from a safe place: the check handle (or, in a fuzzer without a loop, the
 * driver's next sl_h2_flush). */
static void schedule(sl_h2_t *s)
{
    if (s->dead)
        return;
    if (s->flushing) {
        s->again = 1;
        return;
    }
    if (s->has_check && !uv_is_active((uv_handle_t *)&s->check))
        uv_check_start(&s->check, on_check);
}

/* ---- queues ---- */

static int q_push(queue_t *q, const char *p, size_t n)
{
    if (!n)
        return 0;
    chunk_t *k = malloc(sizeof(*k) + n);
    if (!k)
        return SL_ENOMEM;
    k->next = NULL;
    k->len = (uint32_t)n;
    k->off = 0;
    memcpy(k->data, p, n);
    if (q->tail)
        q->tail->next = k;
    else
        q->head = k;
    q->tail = k;
    q->bytes += n;
    return 0;
}

static void q_pop(queue_t *q)
{
    chunk_t *k = q->head;
    q->head = k->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= k->len - k->off;
    free(k);
}

static void q_clear(queue_t *q)
{
    while (q->head)
        q_pop(q);
}

/* ---- metrics ---- */

static size_t goaway_label(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    const char *n = key < GA__COUNT ? ga_names[key] : "other";
    int len = snprintf(out, cap, "reason=\"%s\"", n);
    return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

static size_t reset_label(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    int len = snprintf(out, cap, "by=\"%s\"", key == RST_BY_CLIENT ? "client" : "server");
    return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

int sl_h2_metrics_init(void)
{
    m_sessions = sl_metrics_counter("http2_sessions_total", "HTTP/2 sessions started.", NULL, NULL);
    m_streams =
        sl_metrics_counter("http2_streams_total", "HTTP/2 request streams opened.", NULL, NULL);
    m_goaway = sl_metrics_counter("http2_goaway_sent_total",
                                  "GOAWAY frames sent, by reason (floods, drain, idle).",
                                  goaway_label, NULL);
    m_resets = sl_metrics_counter("http2_streams_reset_total",
                                  "HTTP/2 streams ended by RST_STREAM, by which side sent it.",
                                  reset_label, NULL);
    return m_sessions && m_streams && m_goaway && m_resets ? 0 : SL_ENOMEM;
}

/* ---- session end ---- */

/* Send GOAWAY with code (the connection ends once it is written). */
static void goaway(sl_h2_t *s, uint32_t code, int reason)
{
    if (s->goaway)
        return;
    s->goaway = 1;
    s->ga_reason = (uint8_t)reason;
    nghttp2_session_terminate_session(s->ng, code);
}

/* A flood: GOAWAY ENHANCE_YOUR_CALM, stop reading what the client sent. */
static int flood(sl_h2_t *s, int reason)
{
    sl_log_warn("http2 %.*s: %s, closing the session", (int)s->c->peer_len, s->c->peer,
                ga_names[reason]);
    goaway(s, NGHTTP2_ENHANCE_YOUR_CALM, reason);
    s->fatal = 1;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* Close the connection once nothing more will be said. */
static void maybe_close(sl_h2_t *s)
{
    if (s->dead || s->closing)
        return;
    if (s->fatal || (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng))) {
        s->closing = 1;
        s->io->close(s->c);
    }
}

/* ---- output ---- */

static void out_write(sl_h2_t *s)
{
    sl_buf_t *b = s->ob;
    if (!b)
        return;
    s->ob = NULL;
    uv_buf_t ub = uv_buf_init(b->data, b->len);
    if (s->io->write(s->c, &ub, 1, &b, 1, NULL, NULL)) {
        /* Stop making frames, and stop reading what would make more, until it drains. */
        s->congested = 1;
        s->c->paused = 1;
    }
}

static int out_append(sl_h2_t *s, const uint8_t *p, size_t n)
{
    while (n) {
        if (!s->ob && !(s->ob = sl_buf_get(&s->c->w->bufs)))
            return SL_ENOMEM;
        sl_buf_t *b = s->ob;
        size_t room = b->size - b->len;
        size_t k = n < room ? n : room;
        memcpy(b->data + b->len, p, k);
        b->len += (uint32_t)k;
        p += k;
        n -= k;
        if (b->len == b->size)
            out_write(s);
    }
    return 0;
}

/* Write what nghttp2 has to send, until it has nothing or the connection is congested;
 * then tell handlers whose streams drained. Never inside an nghttp2 call (deferred to its
 * end); a call from a drained callback only asks the running loop to go round again. */
static void flush(sl_h2_t *s)
{
    if (s->dead || s->in_ng)
        return;
    if (s->flushing) {
        s->again = 1;
        return;
    }
    s->flushing = 1;
    do {
        s->again = 0;
        while (!s->congested && !s->dead) {
            const uint8_t *data;
            s->in_ng = 1;
            ssize_t n = nghttp2_session_mem_send(s->ng, &data);
            s->in_ng = 0;
            if (n <= 0) {
                if (n < 0)
                    s->fatal = 1;
                break;
            }
            if (out_append(s, data, (size_t)n)) {
                s->fatal = 1;
                break;
            }
        }
        if (!s->dead)
            out_write(s);
        for (stream_t *st = s->streams; st && !s->dead;) {
            stream_t *next = st->next;
            if (st->want_drained) {
                st->want_drained = 0;
                st->congested = 0;
                if (st->x && st->x->ops && st->x->ops->drained)
                    st->x->ops->drained(st->x);
                /* The callback may end the exchange but never frees the stream (only
                 * nghttp2's close does, inside mem_send, which runs in this loop's next
                 * round), so next is still valid. */
            }
            st = next;
        }
    } while (s->again && !s->dead);
    s->flushing = 0;
    maybe_close(s);
}

/* ---- streams ---- */

static stream_t *stream_new(sl_h2_t *s, int32_t id)
{
    stream_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->s = s;
    st->id = id;
    st->resp_left = -1;
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    s->nstreams++;
    return st;
}

static void stream_free(sl_h2_t *s, stream_t *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    s->nstreams--;
    q_clear(&st->in);
    q_clear(&st->out);
    free(st->hb);
    free(st->rh);
    free(st);
}

/* The stream's exchange goes away without an answer (client reset, connection gone). */
static void stream_abort(stream_t *st)
{
    sl_exchange_t *x = st->x;
    if (!x)
        return;
    st->x = NULL;
    x->h2 = NULL;
    if (x->ops && x->ops->abort)
        x->ops->abort(x);
    if (!x->status)
        x->status = 499;
    sl_conn_exchange_free(x);
}

static void rst(stream_t *st, uint32_t code)
{
    if (st->reset)
        return;
    st->reset = 1;
    q_clear(&st->out);
    count(m_resets, RST_BY_SERVER);
    nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, code);
}

/* ---- request side ---- */

static int hb_put(stream_t *st, const uint8_t *p, size_t n, uint32_t *off)
{
    if (st->hb_len + n > st->hb_cap) {
        uint32_t cap = st->hb_cap ? st->hb_cap : 512;
        while (cap < st->hb_len + n)
            cap *= 2;
        char *nb = realloc(st->hb, cap);
        if (!nb)
            return SL_ENOMEM;
        st->hb = nb;
        st->hb_cap = cap;
    }
    *off = st->hb_len;
    memcpy(st->hb + st->hb_len, p, n);
    st->hb_len += (uint32_t)n;
    return 0;
}

static sl_slice_t slice_of(const stream_t *st, const field_t *f, int value)
{
    if (!f->name_len)
        return (sl_slice_t){NULL, 0};
    if (value)
        return (sl_slice_t){st->hb + f->off + f->name_len, f->value_len};
    return (sl_slice_t){st->hb + f->off, f->name_len};
}

/* RFC 9113 §8.2.3: the cookie crumbs a client split go upstream as one field. */
static int join_cookies(stream_t *st)
{
    unsigned n = 0;
    size_t total = 6;
    for (unsigned i = 0; i < st->nf; i++)
        if (st->f[i].name_len == 6 && memcmp(st->hb + st->f[i].off, "cookie", 6) == 0) {
            n++;
            total += st->f[i].value_len + 2;
        }
    if (n < 2)
        return 0;
    char *tmp = malloc(total);
    if (!tmp)
        return SL_ENOMEM;
    memcpy(tmp, "cookie", 6);
    size_t len = 6;
    unsigned w = 0;
    int at = -1;
    for (unsigned i = 0; i < st->nf; i++) {
        field_t f = st->f[i];
        if (f.name_len == 6 && memcmp(st->hb + f.off, "cookie", 6) == 0) {
            if (len > 6) {
                memcpy(tmp + len, "; ", 2);
                len += 2;
            }
            memcpy(tmp + len, st->hb + f.off + 6, f.value_len);
            len += f.value_len;
            if (at >= 0)
                continue; /* folded into the first */
            at = (int)w;
        }
        st->f[w++] = f;
    }
    uint32_t off;
    int rc = hb_put(st, (const uint8_t *)tmp, len, &off);
    free(tmp);
    if (rc)
        return rc;
    st->f[at] = (field_t){off, (uint32_t)(len - 6), 6};
    st->nf = (uint16_t)w;
    return 0;
}

/* 1 when every byte of v is visible ASCII (no space, control or byte >= 0x80): what the
 * HTTP/1 parser allows in a request target, so the request line the proxy writes from
 * it is well formed whatever nghttp2's own checks let through. */
static int visible_ascii(sl_slice_t v)
{
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.p[i] <= 0x20 || (unsigned char)v.p[i] >= 0x7f)
            return 0;
    return 1;
}

/* Fill x->req from the stream's head. 0, or -1 when it cannot be an HTTP/1-shaped request. */
static int build_request(stream_t *st, sl_exchange_t *x)
{
    sl_http_request_t *r = &x->req;
    memset(r, 0, offsetof(sl_http_request_t, headers));
    r->method = slice_of(st, &st->method, 1);
    r->target = slice_of(st, &st->path, 1);
    r->host = slice_of(st, &st->authority, 1);
    r->method_id = (uint8_t)sl_http1_method_id(r->method.p, r->method.len);
    r->version = 11; /* handlers answer as to a 1.1 client; h2.c translates */
    r->content_length = -1;
    if (r->method_id == SL_M_CONNECT) {
        r->target = r->host;
    } else if (r->target.len == 1 && r->target.p[0] == '*') {
        r->path = r->target;
    } else {
        const char *q = memchr(r->target.p, '?', r->target.len);
        r->path = r->target;
        if (q) {
            r->path.len = (size_t)(q - r->target.p);
            r->query = (sl_slice_t){q + 1, r->target.len - r->path.len - 1};
        }
    }
    for (unsigned i = 0; i < st->nf; i++) {
        sl_http_header_t *h = &r->headers[r->nheaders++];
        const field_t *f = &st->f[i];
        h->name = st->hb + f->off;
        h->name_len = f->name_len;
        h->value = h->name + f->name_len;
        h->value_len = f->value_len;
        h->id = (uint8_t)sl_http1_header_id(h->name, h->name_len);
        /* nghttp2 already refused the connection-specific fields; TE: trailers is the
         * one left, and it is hop-by-hop. */
        h->hop = h->id == SL_H_TE;
        if (h->id == SL_H_HOST) {
            if (!r->host.len)
                r->host = (sl_slice_t){h->value, h->value_len};
        } else if (h->id == SL_H_CONTENT_LENGTH) {
            /* nghttp2 checked it is digits and that the DATA adds up to it. */
            int64_t v = 0;
            for (uint32_t k = 0; k < h->value_len && v < (INT64_MAX / 10 - 10); k++)
                v = v * 10 + (h->value[k] - '0');
            r->content_length = v;
            r->flags |= SL_HF_CONTENT_LENGTH;
        } else if (h->id == SL_H_EXPECT) {
            h->hop = 1; /* no 100-continue in HTTP/2: the client just sends */
        }
    }
    if (!st->req_end && !(r->flags & SL_HF_CONTENT_LENGTH))
        r->flags |= SL_HF_CHUNKED; /* a body of unknown length: the proxy re-frames it */
    if (!r->method.len || (!r->target.len && r->method_id != SL_M_CONNECT) ||
        !visible_ascii(r->target) || !visible_ascii(r->host) ||
        memchr(r->target.p, '#', r->target.len))
        return -1;
    return 0;
}

/* A stream the gateway answers without the handler (431, 413, 400): the same error
 * bodies HTTP/1 gets. */
static void refuse(sl_exchange_t *x, int status, const char *msg)
{
    memset(&x->req, 0, offsetof(sl_http_request_t, headers));
    x->req.content_length = -1;
    x->req.version = 11;
    sl_conn_error(x, status, msg);
}

static void dispatch(sl_h2_t *s, stream_t *st)
{
    sl_conn_t *c = s->c;
    sl_exchange_t *x = sl_conn_exchange_new(c);
    if (!x) {
        rst(st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    count(m_streams, 0);
    st->x = x;
    x->h2 = st;
    x->start_ns = uv_hrtime();
    x->id = ++c->requests;
    if (st->too_big) {
        refuse(x, 431, "request header fields too large");
        return;
    }
    if (join_cookies(st) || build_request(st, x)) {
        refuse(x, 400, "bad request");
        return;
    }
    if (c->cfg->max_body_bytes && x->req.content_length > 0 &&
        (uint64_t)x->req.content_length > c->cfg->max_body_bytes) {
        refuse(x, 413, "request body too large");
        return;
    }
    x->body_done = st->req_end;
    x->dispatched = 1;
    c->cfg->handler(x);
}

/* Hand held body bytes to the handler while it is not paused; consume each as delivered
 * (which is what re-opens the client's window). */
static void deliver(sl_h2_t *s, stream_t *st)
{
    if (st->in_deliver)
        return; /* a resume from inside ops->body: the running loop goes on */
    st->in_deliver = 1;
    while (st->x && !st->paused && st->in.head) {
        chunk_t *k = st->in.head;
        sl_exchange_t *x = st->x;
        size_t n = k->len;
        int pause = 0;
        x->bytes_in += n;
        if (s->c->cfg->max_body_bytes && x->bytes_in > s->c->cfg->max_body_bytes) {
            size_t held = st->in.bytes; /* this chunk and any after it */
            q_clear(&st->in);
            nghttp2_session_consume(s->ng, st->id, held);
            st->in_deliver = 0;
            if (x->ops && x->ops->abort)
                x->ops->abort(x);
            x->ops = NULL;
            if (x->response_started) {
                rst(st, NGHTTP2_CANCEL);
                sl_conn_end(x, 0);
            } else {
                sl_conn_error(x, 413, "request body too large");
            }
            return;
        }
        if (x->ops && x->ops->body)
            pause = x->ops->body(x, k->data, n);
        q_pop(&st->in);
        nghttp2_session_consume(s->ng, st->id, n);
        if (pause && st->x == x)
            st->paused = 1;
    }
    if (st->x && !st->paused && !st->in.head && st->req_end && !st->x->body_done) {
        sl_exchange_t *x = st->x;
        x->body_done = 1;
        if (x->ops && x->ops->body_end)
            x->ops->body_end(x);
    }
    st->in_deliver = 0;
}

/* ---- nghttp2 callbacks (all inside mem_recv or mem_send: no flush here) ---- */

/* One-second flood windows. */
static void window(sl_h2_t *s)
{
    uint64_t now = uv_hrtime();
    if (now - s->win_ns > 1000000000ull) {
        s->win_ns = now;
        s->resets = s->control = s->empty_data = 0;
    }
}

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *ud)
{
    (void)ng;
    sl_h2_t *s = ud;
    if (s->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (hd->type == NGHTTP2_HEADERS)
        s->block_frames = 0;
    else if (hd->type == NGHTTP2_CONTINUATION) {
        /* Each fragment's fields are counted against max_header_bytes as they decode;
         * this bounds the frames themselves (empty CONTINUATIONs decode to nothing). */
        if (++s->block_frames > H2_MAX_CONTINUATIONS)
            return flood(s, GA_HEADER_FLOOD);
    }
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    sl_h2_t *s = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    stream_t *st = stream_new(s, frame->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    sl_h2_t *s = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    stream_t *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!st || st->x)
        return 0; /* trailers (after dispatch): validated by nghttp2, not forwarded */
    uint64_t max = s->c->cfg->max_header_bytes ? s->c->cfg->max_header_bytes : 16384;
    st->list_bytes += (uint32_t)(namelen + valuelen + 32);
    if (st->list_bytes > max || st->nf == SL_HTTP_MAX_HEADERS)
        st->too_big = 1; /* answered 431 once the block is complete */
    if (st->too_big || st->bad)
        return 0;
    field_t *f;
    if (namelen && name[0] == ':') {
        /* nghttp2 already validated the pseudo-headers (known, once, before fields). */
        if (namelen == 7 && memcmp(name, ":method", 7) == 0)
            f = &st->method;
        else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
            f = &st->path;
        else if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
            f = &st->authority;
        else
            return 0; /* :scheme, :protocol */
    } else {
        f = &st->f[st->nf++];
    }
    uint32_t off, voff;
    if (hb_put(st, name, namelen, &off) || hb_put(st, value, valuelen, &voff)) {
        st->bad = 1;
        return 0;
    }
    *f = (field_t){off, (uint32_t)valuelen, (uint16_t)(namelen ? namelen : 1)};
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    sl_h2_t *s = ud;
    if (s->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    window(s);
    stream_t *st;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (!st)
            return 0;
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            st->req_end = 1;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST && !st->x) {
            if (s->fatal)
                return 0; /* the session is going: start no new work */
            dispatch(s, st);
        } else if (st->req_end) {
            deliver(s, st); /* trailers ended the body */
        }
        return 0;
    case NGHTTP2_DATA:
        if (frame->hd.length == 0 && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
            ++s->empty_data > H2_MAX_EMPTY_DATA)
            return flood(s, GA_EMPTY_DATA);
        if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
            return 0;
        st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (st) {
            st->req_end = 1;
            deliver(s, st);
        }
        return 0;
    case NGHTTP2_RST_STREAM:
        count(m_resets, RST_BY_CLIENT);
        if (++s->resets > H2_MAX_RESETS)
            return flood(s, GA_RAPID_RESET);
        return 0;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && ++s->control > H2_MAX_CONTROL)
            return flood(s, GA_CONTROL_FLOOD);
        return 0;
    default:
        return 0;
    }
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    sl_h2_t *s = ud;
    stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st || !st->x) {
        /* Nobody wants it (the answer was given already): keep the windows open. */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    if (!st->paused && !st->in.head && !st->in_deliver && st->x->ops && st->x->ops->body &&
        !(s->c->cfg->max_body_bytes && st->x->bytes_in + len > s->c->cfg->max_body_bytes)) {
        /* The common case: straight to the handler, no copy. */
        sl_exchange_t *x = st->x;
        x->bytes_in += len;
        st->in_deliver = 1;
        int pause = x->ops->body(x, (const char *)data, len);
        st->in_deliver = 0;
        nghttp2_session_consume(ng, id, len);
        if (pause && st->x == x)
            st->paused = 1;
        if (st->x && !st->paused && st->in.head)
            deliver(s, st); /* bytes that a resume inside body() left */
        return 0;
    }
    if (q_push(&st->in, (const char *)data, len)) {
        nghttp2_session_consume(ng, id, len);
        rst(st, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    deliver(s, st);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    sl_h2_t *s = ud;
    stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st)
        return 0;
    (void)code;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    /* Body bytes held for a paused handler were never consumed: give the connection
     * window back, or every such reset would shrink it for good. */
    if (st->in.bytes)
        nghttp2_session_consume_connection(ng, st->in.bytes);
    stream_abort(st); /* still an exchange: the answer was not complete (reset, error) */
    stream_free(s, st);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    sl_h2_t *s = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        count(m_goaway, s->ga_reason);
        return 0;
    }
    /* Our answer is complete while the client is still sending a body nobody will read
     * (a refused upload): tell it to stop (RFC 9113 §8.1). */
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        stream_t *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (st && !st->req_end)
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

/* The answer's body for nghttp2, from the stream's queue. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)id;
    sl_h2_t *s = ud;
    stream_t *st = src->ptr;
    size_t n = 0;
    while (n < length && st->out.head) {
        chunk_t *k = st->out.head;
        size_t avail = k->len - k->off;
        size_t take = avail < length - n ? avail : length - n;
        memcpy(buf + n, k->data + k->off, take);
        n += take;
        k->off += (uint32_t)take;
        st->out.bytes -= take;
        if (k->off == k->len)
            q_pop(&st->out); /* subtracts len - off = 0 */
    }
    if (st->congested && st->out.bytes <= H2_OUT_LOW && st->x) {
        st->want_drained = 1;
        s->again = 1;
    }
    if (!st->out.head) {
        if (st->ended && st->truncated && !n) {
            /* What there was is out; now the reset that says it was not all. */
            count(m_resets, RST_BY_SERVER);
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM(INTERNAL_ERROR) */
        }
        if (st->ended && !st->truncated) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return (ssize_t)n;
        }
        if (!n) {
            st->deferred = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

/* ---- answer side (conn.c's sl_conn_* on a stream) ---- */

static int is_hop(const sl_http_header_t *h)
{
    return h->hop || h->id == SL_H_KEEP_ALIVE || h->id == SL_H_PROXY_CONNECTION;
}

/* The head is complete in st->rh[0, head_len): parse it and submit HEADERS (unless it
 * is an interim 1xx, which is dropped). Returns 0, 1 for "interim, look for the next
 * head", or -1 on a head that cannot be translated. */
static int submit_head(sl_h2_t *s, stream_t *st, size_t head_len)
{
    sl_http_response_t resp;
    size_t scan = 0;
    int rc = sl_http1_parse_response(st->rh, head_len, head_len, &scan, &resp);
    if (rc <= 0)
        return -1;
    if (resp.status < 200)
        return resp.status == 101 ? -1 : 1; /* no upgrades on a stream */
    nghttp2_nv nv[SL_HTTP_MAX_HEADERS + 1];
    char status[3] = {(char)('0' + resp.status / 100), (char)('0' + resp.status / 10 % 10),
                      (char)('0' + resp.status % 10)};
    unsigned n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (unsigned i = 0; i < resp.nheaders; i++) {
        sl_http_header_t *h = &resp.headers[i];
        if (is_hop(h))
            continue;
        /* Field names are lower case on HTTP/2 (RFC 9113 §8.2.1); rh is ours to edit. */
        char *name = (char *)h->name;
        for (unsigned k = 0; k < h->name_len; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] = (char)(name[k] + 32);
        nv[n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)h->value, h->name_len, h->value_len,
                               NGHTTP2_NV_FLAG_NONE};
    }
    int method = st->x ? st->x->req.method_id : SL_M_GET;
    int kind = sl_http1_response_body(&resp, method);
    st->bodyless = kind == SL_BODY_NONE;
    st->chunked = kind == SL_BODY_CHUNKED;
    st->resp_left = kind == SL_BODY_LENGTH ? resp.content_length : -1;
    memset(&st->ch, 0, sizeof(st->ch));
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_body};
    /* nghttp2 copies the fields. */
    if (nghttp2_submit_response(s->ng, st->id, nv, n, &dp) != 0)
        return -1;
    st->submitted = 1;
    return 0;
}

/* Body bytes of the answer: de-chunked, bounded by Content-Length, queued. */
static int body_bytes(stream_t *st, const char *p, size_t n)
{
    if (st->bodyless)
        return 0;
    if (!st->chunked) {
        if (st->resp_left >= 0) {
            if ((int64_t)n > st->resp_left)
                n = (size_t)st->resp_left; /* more than announced: not ours to send */
            st->resp_left -= (int64_t)n;
        }
        return q_push(&st->out, p, n);
    }
    while (n && !st->ch.done) {
        size_t off = 0, dlen = 0;
        int64_t used = sl_http1_chunked_decode(&st->ch, p, n, &off, &dlen);
        if (used < 0)
            return -1;
        if (dlen && q_push(&st->out, p + off, dlen))
            return SL_ENOMEM;
        if (used == 0)
            break;
        p += used;
        n -= (size_t)used;
    }
    return 0;
}

/* Feed answer bytes through the head parser and the body framing. -1 on a failure
 * (the stream is reset). */
static int answer_bytes(sl_h2_t *s, stream_t *st, const char *p, size_t n)
{
    while (n && !st->head_done) {
        /* Collect the head; look for its end from just before the new bytes. */
        size_t old = st->rh_len;
        size_t take = n;
        if (old + take > H2_MAX_RESP_HEAD)
            take = H2_MAX_RESP_HEAD - old;
        if (!take)
            return -1;
        char *nr = realloc(st->rh, old + take);
        if (!nr)
            return -1;
        st->rh = nr;
        memcpy(st->rh + old, p, take);
        st->rh_len = (uint32_t)(old + take);
        size_t from = old > 3 ? old - 3 : 0;
        const char *end = NULL;
        for (size_t i = from; i + 4 <= st->rh_len; i++)
            if (st->rh[i] == '\r' && memcmp(st->rh + i, "\r\n\r\n", 4) == 0) {
                end = st->rh + i + 4;
                break;
            }
        if (!end) {
            p += take;
            n -= take;
            continue;
        }
        size_t head_len = (size_t)(end - st->rh);
        size_t rest_in_rh = st->rh_len - head_len; /* body bytes that came with the head */
        size_t used_from_p = take - rest_in_rh;
        int rc = submit_head(s, st, head_len);
        if (rc < 0)
            return -1;
        p += used_from_p;
        n -= used_from_p;
        /* The bytes after the head are in p[0, n) again (they were also copied into rh). */
        free(st->rh);
        st->rh = NULL;
        st->rh_len = 0;
        if (rc == 0)
            st->head_done = 1;
    }
    if (n && body_bytes(st, p, n))
        return -1;
    return 0;
}

int sl_h2_send(sl_exchange_t *x, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
               unsigned nowned, void (*release)(void *arg), void *release_arg)
{
    stream_t *st = x->h2;
    sl_h2_t *s = st->s;
    int failed = 0;
    for (unsigned i = 0; i < n && !failed && !st->reset; i++)
        failed = answer_bytes(s, st, bufs[i].base, bufs[i].len) != 0;
    /* Everything is copied: the caller's memory is free to go now. */
    for (unsigned i = 0; i < nowned; i++)
        sl_buf_put(&x->conn->w->bufs, owned[i]);
    if (release)
        release(release_arg);
    if (failed) {
        /* A head we cannot translate (or no memory): the client sees the stream reset;
         * what the handler still sends is dropped. */
        rst(st, NGHTTP2_INTERNAL_ERROR);
        schedule(s);
        return 0;
    }
    if (st->deferred && st->out.head) {
        st->deferred = 0;
        nghttp2_session_resume_data(s->ng, st->id);
    }
    schedule(s);
    if (st->out.bytes > H2_OUT_HIGH) {
        st->congested = 1;
        return 1;
    }
    return 0;
}

void sl_h2_end(sl_exchange_t *x)
{
    stream_t *st = x->h2;
    sl_h2_t *s = st->s;
    sl_conn_t *c = x->conn;
    int complete = st->head_done && (st->chunked ? st->ch.done : st->resp_left <= 0);
    st->x = NULL;
    x->h2 = NULL;
    if (!x->status && !complete)
        x->status = 499;
    sl_conn_exchange_free(x); /* on_done, then back to the pool */
    (void)c;
    if (st->reset) {
        /* Already reset (a failed send, a body over the limit). */
    } else if (!complete && !st->submitted) {
        rst(st, NGHTTP2_INTERNAL_ERROR); /* not even a head to give */
    } else if (!complete) {
        /* Cut short (the upstream died mid-answer): the client gets what there was, as
         * on HTTP/1.1, then RST_STREAM, never a short answer that looks complete. */
        st->ended = 1;
        st->truncated = 1;
        if (st->deferred) {
            st->deferred = 0;
            nghttp2_session_resume_data(s->ng, st->id);
        }
    } else {
        st->ended = 1;
        if (st->deferred) {
            st->deferred = 0;
            nghttp2_session_resume_data(s->ng, st->id);
        }
    }
    /* Body bytes still held for a handler that is gone: give their window back. */
    if (st->in.bytes) {
        nghttp2_session_consume(s->ng, st->id, st->in.bytes);
        q_clear(&st->in);
    }
    schedule(s);
}

void sl_h2_pause(sl_exchange_t *x)
{
    stream_t *st = x->h2;
    st->paused = 1;
}

void sl_h2_resume(sl_exchange_t *x)
{
    stream_t *st = x->h2;
    if (!st->paused)
        return;
    st->paused = 0;
    deliver(st->s, st);
    schedule(st->s); /* window updates for what was delivered */
}

int sl_h2_live(const sl_conn_t *c, const sl_exchange_t *x, uint64_t id)
{
    const sl_h2_t *s = c->h2;
    if (!s || s->dead)
        return 0;
    for (const stream_t *st = s->streams; st; st = st->next)
        if (st->x == x)
            return x->id == id;
    return 0;
}

/* ---- the session ---- */

static const sl_h2_io_t conn_io = {sl_conn_write, sl_conn_shutdown};

int sl_h2_session_new(sl_conn_t *c, const sl_h2_io_t *io)
{
    sl_h2_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SL_ENOMEM;
    s->c = c;
    s->io = io;
    s->win_ns = uv_hrtime();
    s->ga_reason = GA_PROTOCOL;
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb)) {
        free(s);
        return SL_ENOMEM;
    }
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cb);
        free(s);
        return SL_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    /* Windows open only as the handler takes the bytes (see the top of this file). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, H2_MAX_OUTBOUND_ACK);
    nghttp2_option_set_max_settings(opt, 32); /* entries in one SETTINGS frame */
    nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS + 1);
    /* A second line behind our own reset bound (H2_MAX_RESETS a second). */
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_max_send_header_block_length(opt, H2_MAX_RESP_HEAD);
    int rc = nghttp2_session_server_new2(&s->ng, cb, s, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc) {
        free(s);
        return SL_ENOMEM;
    }
    uint32_t streams = c->cfg->h2_max_streams ? c->cfg->h2_max_streams : 128;
    uint32_t max_header = c->cfg->max_header_bytes ? (uint32_t)c->cfg->max_header_bytes : 16384;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, max_header},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, SL_ARRAY_LEN(iv)) ||
        nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW)) {
        nghttp2_session_del(s->ng);
        free(s);
        return SL_ENOMEM;
    }
    sl_conn_bind_h2(c, s);
    count(m_sessions, 0);
    return 0;
}

int sl_h2_preface(const char *p, size_t n)
{
    /* The preface's first line is enough to know the client means HTTP/2 (no HTTP/1
     * request is "PRI * HTTP/2.0"); a wrong remainder is the session's to refuse, with
     * GOAWAY(PROTOCOL_ERROR) rather than an HTTP/1 505. */
    size_t k = n < 16 ? n : 16;
    if (memcmp(p, SL_H2_PREFACE, k) != 0)
        return -1;
    return n >= 16 ? 1 : 0;
}

void sl_h2_start(sl_conn_t *c, const char *preread, size_t n)
{
    if (sl_h2_session_new(c, &conn_io)) {
        sl_log_warn("http2 %.*s: out of memory for a session", (int)c->peer_len, c->peer);
        sl_conn_shutdown(c);
        return;
    }
    sl_h2_t *s = c->h2;
    uv_check_init(&c->w->loop, &s->check);
    s->check.data = s;
    s->has_check = 1;
    sl_h2_recv(c, preread, n);
}

void sl_h2_flush(sl_conn_t *c)
{
    if (c->h2)
        flush(c->h2);
}

void sl_h2_recv(sl_conn_t *c, const char *p, size_t n)
{
    sl_h2_t *s = c->h2;
    if (!s || s->dead || s->closing)
        return;
    s->in_ng = 1;
    ssize_t rc = nghttp2_session_mem_recv(s->ng, (const uint8_t *)p, n);
    s->in_ng = 0;
    if (s->dead)
        return;
    if (rc < 0 && !s->fatal) {
        /* Errors nghttp2 does not answer itself (a bad preface, a flood of ACKs it
         * would have to queue): say so with GOAWAY, then close. */
        if (rc == NGHTTP2_ERR_FLOODED)
            goaway(s, NGHTTP2_ENHANCE_YOUR_CALM, GA_CONTROL_FLOOD);
        else
            goaway(s, NGHTTP2_PROTOCOL_ERROR, GA_PROTOCOL);
        s->fatal = 1;
    }
    flush(s);
}

void sl_h2_drained(sl_conn_t *c)
{
    sl_h2_t *s = c->h2;
    if (!s || s->dead)
        return;
    s->congested = 0;
    c->paused = 0;
    flush(s);
}

void sl_h2_closed(sl_conn_t *c)
{
    sl_h2_t *s = c->h2;
    if (!s || s->dead)
        return;
    s->dead = 1;
    if (s->ob) {
        sl_buf_put(&c->w->bufs, s->ob);
        s->ob = NULL;
    }
    for (stream_t *st = s->streams; st; st = st->next)
        stream_abort(st);
}

static void check_closed(uv_handle_t *h)
{
    free(h->data);
}

void sl_h2_free(sl_conn_t *c)
{
    sl_h2_t *s = c->h2;
    if (!s)
        return;
    sl_h2_closed(c);
    while (s->streams)
        stream_free(s, s->streams);
    nghttp2_session_del(s->ng);
    c->h2 = NULL;
    if (s->has_check)
        uv_close((uv_handle_t *)&s->check, check_closed); /* frees s */
    else
        free(s);
}

void sl_h2_drain(sl_conn_t *c)
{
    sl_h2_t *s = c->h2;
    if (!s || s->dead || s->goaway)
        return;
    s->goaway = 1;
    s->ga_reason = GA_SHUTDOWN;
    /* Streams up to the last one we processed finish; nghttp2 ignores newer ones and,
     * once GOAWAY is out and the last stream closed, wants neither to read nor to write,
     * which is when maybe_close ends the connection. */
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    flush(s);
}

int sl_h2_busy(const sl_conn_t *c)
{
    const sl_h2_t *s = c->h2;
    if (!s || s->dead)
        return 0;
    for (const stream_t *st = s->streams; st; st = st->next)
        if (st->x && st->x->body_done)
            return 1;
    return 0;
}

void sl_h2_timeout(sl_conn_t *c)
{
    sl_h2_t *s = c->h2;
    if (!s || s->dead)
        return;
    goaway(s, NGHTTP2_NO_ERROR, GA_IDLE);
    s->fatal = 1;
    flush(s);
}
