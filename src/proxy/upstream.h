/* upstream.h - services and their servers at run time, and upstream connections with a
 * per-worker keep-alive pool for each server.
 * Owns: building services from the configuration, connecting (never blocking: addresses
 * are numeric, connect is asynchronous), parking idle connections and noticing when the
 * server closes them. Knows nothing of HTTP; proxy.c speaks HTTP over these connections.
 * Worker loop only, except sl_upstreams_build/free (control thread, before/after). */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <uv.h>

#include "../core/buf.h"
#include "../core/timer.h"
#include "../core/worker.h"
#include "balance.h"
#include "upstream_types.h"

typedef struct sl_upstreams {
    sl_service_t *services;
    uint32_t nservices;
    sl_server_t **servers; /* every server of every pool, by id */
    uint32_t nservers;
} sl_upstreams_t;

/* Build from cfg (which must outlive the result) for nthreads loop threads. */
int sl_upstreams_build(sl_upstreams_t *u, const sl_config_t *cfg, int nthreads);
void sl_upstreams_free(sl_upstreams_t *u);

typedef struct sl_upconn sl_upconn_t;
typedef void (*sl_upconn_cb)(sl_upconn_t *u, int status);

enum { SL_UP_CONNECTING = 1, SL_UP_ACTIVE, SL_UP_IDLE, SL_UP_CLOSED };

struct sl_upconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    sl_timed_t timed;
    sl_worker_t *w;
    sl_server_t *server;
    struct sl_upconn *prev, *next; /* idle list */
    sl_buf_t *rbuf;
    void *owner;                   /* the proxy exchange using it */
    sl_upconn_cb on_connect;       /* status 0 or a libuv error */
    void (*on_timeout)(sl_upconn_t *u);
    uint32_t requests;             /* requests sent on this connection */
    uint8_t state;
    uint8_t reading;
};

/* Per-worker state: one idle list per server. */
int sl_upstream_worker_init(sl_worker_t *w, const sl_upstreams_t *u);
void sl_upstream_worker_free(sl_worker_t *w);
/* Close every idle connection (drain, shutdown). */
void sl_upstream_worker_close_idle(sl_worker_t *w);

/* An idle keep-alive connection to s, taken out of the pool (state ACTIVE, not reading),
 * or NULL when there is none. */
sl_upconn_t *sl_upconn_take_idle(sl_worker_t *w, sl_server_t *s);
/* Start a new connection to s; cb runs once with 0 or an error (never synchronously).
 * NULL when out of memory or the connect could not even start (*err set). */
sl_upconn_t *sl_upconn_connect(sl_worker_t *w, sl_server_t *s, uint64_t timeout_ms,
                               sl_upconn_cb cb, void *owner, int *err);
/* Done with u: park it in the idle pool (keep <= max idle per server on this worker,
 * closing the oldest beyond) if reusable, else close it. */
void sl_upconn_release(sl_upconn_t *u, int reusable, uint32_t max_idle);
void sl_upconn_close(sl_upconn_t *u);
/* Read from u with these callbacks (switching callbacks if it already reads). */
void sl_upconn_read(sl_upconn_t *u, uv_alloc_cb alloc, uv_read_cb cb);
void sl_upconn_read_stop(sl_upconn_t *u);
/* Set or clear (ms = 0) the connection's deadline; on expiry on_timeout runs. */
void sl_upconn_deadline(sl_upconn_t *u, uint64_t ms);

/* Passive health, as nginx's max_fails/fail_timeout: max_fails failures (connect error,
 * timeout, reset or malformed answer before a response) within fail_timeout mark the
 * server down for fail_timeout; then it is eligible again (one failure marks it down
 * again when max_fails is 1). A good response clears the count. Any thread; lock-free.
 * As in nginx, the only server of a pool is never considered down.
 * now_ms is uv_now() of the caller's loop (all loops share the monotonic clock).
 * sl_server_fail returns 1 when this failure marked the server down. */
int sl_server_fail(sl_server_t *s, uint64_t now_ms);
void sl_server_ok(sl_server_t *s);
/* Bit i set for every server i (< 64) of the pool that is down at now_ms. */
uint64_t sl_pool_down_mask(const sl_pool_t *p, uint64_t now_ms);

/* Counters for metrics (per worker, summed at scrape). */
typedef struct sl_upstream_stats {
    uint64_t connects, connect_errors, reused, idle_closed;
} sl_upstream_stats_t;
const sl_upstream_stats_t *sl_upstream_worker_stats(const sl_worker_t *w);
uint32_t sl_upstream_worker_idle(const sl_worker_t *w);

#endif
