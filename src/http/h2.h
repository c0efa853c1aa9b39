/* h2.h - HTTP/2 server sessions (RFC 9113) on a client connection, with nghttp2.
 * Owns: the session (frames in from the connection's reads, frames out through
 * sl_conn_write), one exchange per stream driven through the connection's handler exactly
 * like an HTTP/1 request, the translation of the handler's HTTP/1.1-serialised answer into
 * HEADERS and DATA, flow control both ways, and the flood bounds. Never blocks; runs on
 * the connection's loop only. Upper layers never see it: conn.c dispatches to it when an
 * exchange belongs to a stream (x->h2). */
#ifndef SL_H2_H
#define SL_H2_H

#include "conn.h"

#define SL_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define SL_H2_PREFACE_LEN 24

/* Where a session's bytes and its end go. sl_h2_start uses the connection's own
 * (sl_conn_write, sl_conn_shutdown); a fuzzer drives a session without a socket. */
typedef struct sl_h2_io {
    int (*write)(sl_conn_t *c, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned, unsigned nowned,
                 void (*release)(void *arg), void *release_arg);
    /* The session is over (GOAWAY sent, or fatal): close once the output is written. */
    void (*close)(sl_conn_t *c);
} sl_h2_io_t;

/* 1 when p[0, n) starts with the whole client preface, 0 when it is a proper prefix of
 * it (wait for more bytes), -1 when it is something else (HTTP/1). */
int sl_h2_preface(const char *p, size_t n);

/* Turn c into an HTTP/2 session: preread[0, n) are the bytes read so far (they must start
 * with the client preface; h2c prior knowledge, or TLS after ALPN chose "h2"). Sends the
 * server SETTINGS. From here on every byte conn reads goes to the session. On a failure
 * (out of memory, bad preface) the connection is closed. On c's loop. */
void sl_h2_start(sl_conn_t *c, const char *preread, size_t n);

/* The same without the read side's preface handling, with io for the output: 0, or
 * SL_ENOMEM. sl_h2_recv then takes the bytes (preface first). For fuzzers and tests. */
int sl_h2_session_new(sl_conn_t *c, const sl_h2_io_t *io);

/* Bytes read from the client; p need only stay valid during the call (what the session
 * keeps, it copies). May close the connection. */
void sl_h2_recv(sl_conn_t *c, const char *p, size_t n);

/* Send what handlers queued (sl_h2_start's sessions do it from a check handle after each
 * loop iteration's I/O; a fuzzer driving a session without a loop calls this). */
void sl_h2_flush(sl_conn_t *c);

/* Free the session and every stream left (after sl_h2_closed; from the close callback). */
void sl_h2_free(sl_conn_t *c);

/* ---- conn.c's side: the sl_conn_* calls on an exchange that is a stream ---- */
int sl_h2_send(sl_exchange_t *x, const uv_buf_t *bufs, unsigned n, sl_buf_t **owned,
               unsigned nowned, void (*release)(void *arg), void *release_arg);
void sl_h2_end(sl_exchange_t *x);
void sl_h2_pause(sl_exchange_t *x);
void sl_h2_resume(sl_exchange_t *x);
/* 1 while x (with id) is still a live stream's exchange on c (the pointer is compared
 * before it is read, so x may be freed memory). */
int sl_h2_live(const sl_conn_t *c, const sl_exchange_t *x, uint64_t id);
/* The connection's output drained below its low mark: produce frames again. */
void sl_h2_drained(sl_conn_t *c);
/* The connection is closing: abort every stream's exchange (ops->abort, on_done). */
void sl_h2_closed(sl_conn_t *c);
/* Graceful drain: GOAWAY(NO_ERROR) now; the connection closes when its streams are done. */
void sl_h2_drain(sl_conn_t *c);
/* 1 while a stream's whole request is with the handler (waiting on an upstream): the
 * session is not idle then, however long no frame moves. */
int sl_h2_busy(const sl_conn_t *c);
/* No traffic for idle_timeout and not busy: GOAWAY(NO_ERROR) and close. */
void sl_h2_timeout(sl_conn_t *c);

/* Register the http2_* metric families (start-up, before workers run). 0 or SL_ENOMEM. */
int sl_h2_metrics_init(void);

#endif
