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
    sl_server_t **servers; /* every slot of every pool, by id (cap entries) */
    uint32_t nservers;     /* atomic: ids handed out */
    uint32_t cap;          /* total slots: configured servers + headroom per pool */
} sl_upstreams_t;

/* Build from cfg (which must outlive the result) for nthreads loop threads. */
int sl_upstreams_build(sl_upstreams_t *u, const sl_config_t *cfg, int nthreads);
void sl_upstreams_free(sl_upstreams_t *u);

/* Reload: u was just built from a new configuration, old serves the running one. For
 * each service of u with a namesake in old, copy the servers' counters; when the service
 * is unchanged (sl_config_service_equal) also their health (state, passive fails, check
 * streaks) and the servers the API added. Control thread, before u's workers start.
 * Returns how many services were unchanged. */
int sl_upstreams_carry(sl_upstreams_t *u, sl_upstreams_t *old);
/* When old's workers have all exited: add to u's servers what old's namesakes counted
 * after sl_upstreams_carry copied them (requests its generation finished while it
 * drained), so the per-server counters lose nothing. Control thread. */
void sl_upstreams_fold(sl_upstreams_t *u, const sl_upstreams_t *old);

/* Run-time changes. Control thread only; workers see them at their next pick. */
sl_service_t *sl_upstreams_find(sl_upstreams_t *u, const char *name, size_t len);
/* Add a server (conf copied) to svc's primary pool, or its read pool when read_pool.
 * It starts CHECKING when the service has active health checks (it gets traffic after
 * `passes` good checks), else UP. Returns 0 and *out, or SL_EINVAL (pool full: at most
 * SL_POOL_HEADROOM added per pool) or -17 (EEXIST: that address is already in the pool
 * and not removed). */
int sl_upstreams_add(sl_upstreams_t *u, sl_service_t *svc, int read_pool,
                     const sl_server_conf_t *conf, sl_server_t **out);
/* Bring back svc's REMOVED primary server with this address (an autoscaled instance
 * started again on its port): counters of passive health reset, state CHECKING (health
 * checks on) or UP. NULL when there is none. Control thread only. */
sl_server_t *sl_upstreams_revive(sl_service_t *svc, const char *addr);
/* Find a live (not REMOVED) server of svc by its address text ("127.0.0.1:8001"). */
sl_server_t *sl_upstreams_find_server(sl_service_t *svc, const char *addr, size_t len);
/* Start draining s: no new requests from now on; it becomes REMOVED once its in-flight
 * count is 0 (sl_upstreams_tick notices). 0, or SL_EINVAL if already draining/removed. */
int sl_server_drain(sl_server_t *s);
/* Control thread, periodically: finish drains whose in-flight reached 0 (logging the
 * removal). Returns how many servers were removed. */
int sl_upstreams_tick(sl_upstreams_t *u);
/* Control thread: move s to state st, counting and logging the transition. */
void sl_server_set_state(sl_server_t *s, uint32_t st, const char *why);
const char *sl_server_state_name(uint32_t st);
/* Rate limit for per-request warnings about s (connect refused, timeouts): 1 at most
 * once a second per server, with *dropped = warnings suppressed since the last one. */
int sl_server_warn_ok(sl_server_t *s, uint64_t now_ms, uint64_t *dropped);

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
    uint32_t gen;                  /* server->gen when it connected */
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
 * timeout, reset or malformed answer before a response, and the fail_on_status answers)
 * within fail_timeout take the server out for fail_timeout; then it gets one trial
 * request (sl_server_claim): success brings it back (sl_server_ok), failure takes it out
 * again at once. lone = the server is its pool's only one: as nginx, never taken out.
 * Any thread; lock-free. now_ms is uv_now() of the caller's loop (all loops share the
 * monotonic clock). sl_server_fail returns 1 when this failure took the server out. */
int sl_server_fail(sl_server_t *s, uint64_t now_ms, int lone);
void sl_server_ok(sl_server_t *s);
/* After a pick: 1 when s may take this request. A server back from a down period takes
 * one request (its trial) until that one's outcome is known; others get 0 and pick again.
 * A claimed trial that ends without an outcome (client gone) is given back with unclaim. */
int sl_server_claim(sl_server_t *s);
void sl_server_unclaim(sl_server_t *s);

/* Metrics collector (sl_metrics_collector): per-server and per-service upstream series. */
struct sl_textbuf;
void sl_upstreams_collect(struct sl_textbuf *t, void *arg);

/* Counters for metrics (per worker, summed at scrape). */
typedef struct sl_upstream_stats {
    uint64_t connects, connect_errors, reused, idle_closed;
} sl_upstream_stats_t;
const sl_upstream_stats_t *sl_upstream_worker_stats(const sl_worker_t *w);
uint32_t sl_upstream_worker_idle(const sl_worker_t *w);
/* Requests in flight on every server of svc (both pools), i.e. its busy upstream
 * connections; any thread. */
uint64_t sl_service_busy(const sl_service_t *svc);
/* Idle connections w keeps to the server with that id (another thread may read it). */
uint32_t sl_upstream_worker_idle_server(const sl_worker_t *w, uint32_t server_id);

#endif
