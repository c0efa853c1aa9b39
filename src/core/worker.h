/* worker.h - the per-thread context every module reaches through its objects.
 * One per loop thread (each worker and the control thread). Everything in it is touched
 * only by its own thread, except `stop`, which other threads signal through `wake`. */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "log.h"
#include "timer.h"

typedef struct sl_worker {
    uv_loop_t loop;
    int index;             /* sl_thread_index of this thread (0 = control) */
    sl_bufpool_t bufs;     /* I/O buffers, sized for a whole request head + a read */
    sl_timers_t timers;    /* connection deadlines */
    sl_logbuf_t alog;      /* access-log lines not yet handed to the writer */
    void *conns;           /* list of client connections (conn.c) */
    void *xfree;           /* free exchanges (conn.c) */
    void *server;          /* owner (server.c) */
    void *proxy;           /* per-worker proxy state: upstream pools (upstream.c) */
    void *gw;              /* the gateway (routes, services) this worker serves with */
    void *rl_redis;        /* this worker's shared rate-limit connection, or NULL */
    void *sampler;         /* control thread: the samples (ops/sampler.c) */
    void *alerts;          /* control thread: the alert rules (ops/alerts.c) */
    void *autoscale;       /* control thread: the backend supervisor (ops/autoscale.c), or NULL */
    int nworkers;          /* control thread: serving loops */
    /* control thread: reload the configuration from its file (server.c), as SIGHUP does;
     * returns the new generation (> 0), or a negative SL_E* code with a one-line reason
     * in err (the errors themselves are logged) */
    int64_t (*reload)(struct sl_worker *control, const char *why, char *err, size_t cap);
    uint64_t conns_active; /* control thread: client connections, refreshed every second */
    uint64_t start_unix_ms;
    uint64_t inflight;     /* exchanges dispatched and not yet done */
    uint64_t nconns;       /* client connections open on this worker */
    uint64_t reqid_seq;    /* request-id counter */
    uint32_t reqid_salt;
    int draining;          /* stop accepting; close connections as they go idle */
    char date[40];         /* "Date: <IMF-fixdate>" value, refreshed on every tick */
    size_t date_len;
    int64_t wall_offset_ms; /* wall clock ms - uv_now(loop), refreshed on every tick */
    uint64_t iso_sec;       /* the second iso holds */
    char iso[24];           /* "YYYY-MM-DDTHH:MM:SS." of iso_sec (UTC) */
} sl_worker_t;

/* Refresh w->date and w->wall_offset_ms from the wall clock. */
void sl_worker_update_date(sl_worker_t *w);

/* The wall clock now, in ms since the epoch (a clock_gettime). */
uint64_t sl_unix_ms(void);

/* The wall clock in ms from the loop's time (no system call), as of the last tick. */
static inline uint64_t sl_worker_wall_ms(const sl_worker_t *w)
{
    return (uint64_t)((int64_t)uv_now(&w->loop) + w->wall_offset_ms);
}

/* w->iso for the second of wall_ms (formatted at most once a second). */
const char *sl_worker_iso(sl_worker_t *w, uint64_t wall_ms);

#endif
