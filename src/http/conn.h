/* conn.h - one client connection: read, parse, dispatch, write, keep-alive, timeouts.
 * Owns: the client socket, its read buffer, request framing (Content-Length, chunked),
 * pipelining (one exchange at a time, answers in order), write backpressure, and the
 * header/idle timeouts. It hands each parsed request to the handler it was given and
 * never knows what the handler does (routing, proxying live in upper layers).
 * Runs on its worker's loop only; never blocks. */
#ifndef SL_CONN_H
#define SL_CONN_H

#include <uv.h>

#include "../core/buf.h"
#include "../core/worker.h"
#include "http1.h"

#define SL_CONN_MAX_IOV 16 /* most buffers one sl_conn_send() may take */

typedef struct sl_conn sl_conn_t;
typedef struct sl_exchange sl_exchange_t;
struct sl_tls_listener;
struct sl_tls_conn;
typedef struct sl_h2 sl_h2_t;

/* Callbacks the handler installs in x->ops for an exchange it keeps open. */
typedef struct sl_exchange_ops {
    /* Request body bytes, decoded (or, in a tunnel, raw bytes). p points into the
     * connection's read buffer and is valid only during the call. Return 0 to go on,
     * 1 to pause delivery until the handler calls sl_conn_resume(). */
    int (*body)(sl_exchange_t *x, const char *p, size_t n);
    /* The request body is complete (in a tunnel: the client closed its side). */
    void (*body_end)(sl_exchange_t *x);
    /* The output that sl_conn_send() reported congested has drained. */
    void (*drained)(sl_exchange_t *x);
    /* The client went away, timed out or failed: release everything tied to x. conn
     * frees x after this returns; the handler must not call sl_conn_* on it. */
    void (*abort)(sl_exchange_t *x);
} sl_exchange_ops_t;

/* One request/response on a client connection. Allocated by conn when a request head
 * starts arriving, freed after sl_conn_end() or abort. The handler's own per-exchange
 * state lives in hdata[] (handler_size bytes, NOT cleared: the handler initialises what
 * it uses, so a large state costs nothing on requests that need little of it). */
struct sl_exchange {
    sl_conn_t *conn;
    const sl_exchange_ops_t *ops;
    uint64_t start_ns;    /* uv_hrtime() when the head was complete */
    uint64_t bytes_out;   /* response bytes sent, head included */
    uint64_t bytes_in;    /* request body bytes received */
    int status;           /* status of the response (for logs and metrics) */
    int route;            /* set by the handler: route index, -1 = none */
    uint64_t reqid;       /* X-Request-Id the gateway generated (0 = the client's was kept) */
    uint64_t id;          /* the connection's request number (see sl_conn_live) */
    void *h2;             /* the HTTP/2 stream carrying it (h2.c), NULL on HTTP/1 */
    uint32_t response_started : 1;
    uint32_t body_done : 1;     /* request body fully received */
    uint32_t tunnel : 1;
    uint32_t continue_sent : 1;
    uint32_t dispatched : 1;    /* handed to the handler (not refused before) */
    uint32_t resp_extra_len;
    /* Header lines (each ending in CRLF) the handler's policies add to whatever response
     * this exchange gets (RateLimit fields...). Not cleared: only [0, resp_extra_len). */
    char resp_extra[160];
    sl_http_request_t req;      /* slices into the connection's read buffer, valid until end */
    char hdata[] __attribute__((aligned(16)));
};

typedef void (*sl_handler_fn)(sl_exchange_t *x);

/* What a listener's connections share: the handler, its hooks and the limits. */
typedef struct sl_conn_cfg {
    sl_handler_fn handler;
    void (*on_done)(sl_exchange_t *x); /* metrics and access log, before x is freed */
    size_t handler_size;
    uint64_t header_timeout_ms, idle_timeout_ms;
    uint64_t max_header_bytes, max_body_bytes; /* 0 = unlimited body */
    int is_tls;                                /* X-Forwarded-Proto */
    struct sl_tls_listener *tls;               /* NULL: plain HTTP (http/tls.h) */
    uint32_t h2_max_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS; 0 = no h2c on this listener */
} sl_conn_cfg_t;

struct sl_conn {
    uv_tcp_t tcp;
    sl_timed_t timed;
    sl_worker_t *w;
    const sl_conn_cfg_t *cfg;
    struct sl_conn *prev, *next; /* worker's list of client connections */
    sl_buf_t *rbuf;              /* NULL while idle with nothing buffered */
    uint32_t rpos;               /* first unconsumed byte in rbuf */
    uint32_t head_len;           /* head of the active exchange occupies rbuf[0, head_len) */
    size_t scan;                 /* end-of-head search position (see sl_http1_parse_request) */
    sl_exchange_t *x;            /* active exchange, or NULL */
    int64_t body_left;           /* Content-Length bytes still to come */
    sl_chunked_t chunked;
    size_t pending_bytes;        /* written but not yet acknowledged by libuv */
    uint32_t pending_writes;
    uint8_t state;               /* private */
    uint8_t body_kind;
    uint8_t keepalive : 1, reading : 1, paused : 1, congested : 1, closing : 1, in_process : 1,
        peer_eof : 1, end_pending : 1;
    uint8_t linger : 1, detached : 1, broken : 1;
    uint64_t requests;
    char peer[48];               /* client address as text (46 + room for whole-word copies) */
    uint8_t peer_len;
    uint64_t peer_hash;          /* sl_hash_bytes(peer): per-client keys cost one hash per connection */
    struct sl_tls_conn *tls;     /* TLS session (cfg->tls set), or NULL */
    sl_h2_t *h2;                 /* the HTTP/2 session once the connection became one */
};

/* Take a freshly accepted connection: tcp must be initialised on w->loop and accepted.
 * The connection lives until it closes itself. */
void sl_conn_start(sl_conn_t *c, sl_worker_t *w, const sl_conn_cfg_t *cfg);
/* Allocate a connection object for accepting into (pooled per worker). */
sl_conn_t *sl_conn_new(sl_worker_t *w);

/* Send response bytes. Every bufs[i] points either at memory that outlives the
 * connection (string constants) or into one of owned[0..nowned) (n <= SL_CONN_MAX_IOV,
 * nowned <= 4); ownership of the
 * owned buffers passes to conn in every case, and they go back to the pool once
 * written. Bytes are written in call order. Returns 1 when the output is congested
 * (more than 64 KiB unacknowledged): stop producing until ops->drained; else 0. */
int sl_conn_send(sl_exchange_t *x, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                 unsigned nowned);

/* sl_conn_send for bytes that live in memory someone else owns (a cached object): release
 * (if not NULL) runs exactly once, on this loop, when they need not stay valid any more -
 * before this returns if everything was written at once or dropped. */
int sl_conn_send_ref(sl_exchange_t *x, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                     unsigned nowned, void (*release)(void *arg), void *release_arg);

/* The one path by which bytes reach the client's socket (sl_conn_send_ref is this plus the
 * exchange's bookkeeping): same ownership rules and return value as sl_conn_send_ref. A
 * transport layered on the connection (TLS, an HTTP/2 session) sends through here. */
int sl_conn_write(sl_conn_t *c, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
                  unsigned nowned, void (*release)(void *arg), void *release_arg);

/* An exchange without a client, for work the gateway does on its own (a cache refresh in
 * the background): its request is a copy of from's head (from must still be active, and
 * bodiless), in memory it owns; everything sent on it goes nowhere; sl_conn_end calls
 * cfg->on_done and frees it. On w's loop; NULL when out of memory. */
sl_exchange_t *sl_conn_detached(sl_worker_t *w, const sl_conn_cfg_t *cfg, const sl_exchange_t *from);

/* The response is complete. keepalive_ok = 0 forces the connection to close after it
 * (e.g. a response delimited by closing). Frees x (after on_done); the next pipelined
 * request, if any, is served. */
void sl_conn_end(sl_exchange_t *x, int keepalive_ok);

/* Answer with a complete response made by the gateway (errors, 404...), then end. body
 * may be NULL; extra is more header lines, each ending in CRLF, or NULL. */
void sl_conn_respond(sl_exchange_t *x, int status, const char *ctype, const char *body,
                     size_t len, const char *extra);
/* A JSON error answer {"error": msg, "status": N}. */
void sl_conn_error(sl_exchange_t *x, int status, const char *msg);

/* Hold body delivery (e.g. while the handler waits for a decision before it has anywhere
 * to send the body); sl_conn_resume() goes on. */
void sl_conn_pause(sl_exchange_t *x);
/* Resume body delivery paused by ops->body returning 1 or sl_conn_pause. */
void sl_conn_resume(sl_exchange_t *x);
/* Switch the connection to a raw tunnel after a 101 answer: every further byte read is
 * passed to ops->body, EOF to ops->body_end. */
void sl_conn_tunnel(sl_exchange_t *x);
/* Keep-alive decision for the answer to x (client version, Connection, draining). */
int sl_conn_keepalive(const sl_exchange_t *x);
/* Graceful drain: make every connection close after its current (or next) response.
 * idle_grace_ms = 0 (shutdown): idle keep-alive connections are closed now.
 * idle_grace_ms > 0 (a reload hands over to a new generation): an idle keep-alive
 * connection may still send one request within that time, answered with
 * Connection: close, and is closed when it expires. A client closing to send a request
 * on a kept-alive connection is a race HTTP lets it lose (RFC 9112 9.3.1: it may only
 * retry); clients that keep sending never meet it this way. An HTTP/2 session gets
 * GOAWAY: its open streams finish, new ones are refused. */
void sl_conn_drain_all(sl_worker_t *w, uint64_t idle_grace_ms);
/* 1 while x, whose x->id was id when read, is still the connection's live exchange: for
 * a handler that held x across an asynchronous decision and must not touch it if it
 * ended meanwhile (x may be freed memory; it is compared, not read, until known live). */
static inline int sl_conn_live(const sl_conn_t *c, const sl_exchange_t *x, uint64_t id);
/* Close every connection now (end of the shutdown grace period). */
void sl_conn_close_all(sl_worker_t *w);
/* Release a worker's pooled exchanges (at exit). */
void sl_conn_worker_free(sl_worker_t *w);

/* ---- for transports layered on the connection (h2.c) ---- */

/* A fresh exchange on c (fixed part cleared, x->conn set), or NULL when out of memory. */
sl_exchange_t *sl_conn_exchange_new(sl_conn_t *c);
/* Finish x without touching the connection: cfg->on_done, then back to the pool. */
void sl_conn_exchange_free(sl_exchange_t *x);
/* Stop reading and close once every pending write is out. */
void sl_conn_shutdown(sl_conn_t *c);
/* From now on c's reads go to the HTTP/2 session s (h2.c calls this). */
void sl_conn_bind_h2(sl_conn_t *c, sl_h2_t *s);

int sl_h2_live(const sl_conn_t *c, const sl_exchange_t *x, uint64_t id);
static inline int sl_conn_live(const sl_conn_t *c, const sl_exchange_t *x, uint64_t id)
{
    if (SL_UNLIKELY(c->h2 != NULL))
        return sl_h2_live(c, x, id);
    return c->x == x && c->requests == id;
}

#endif
