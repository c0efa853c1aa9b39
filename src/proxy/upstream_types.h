/* upstream_types.h - services, pools and servers as the proxy sees them at run time.
 * Built from the configuration on the control thread and then shared by every worker.
 * Fields marked atomic change at run time (health, in-flight counts, servers added by
 * the API or DNS); everything else is written before the workers start or before the
 * slot is published (pool->n is stored with release after a new slot is filled). */
#ifndef SL_UPSTREAM_TYPES_H
#define SL_UPSTREAM_TYPES_H

#include <stdint.h>

#include "../core/config.h"

#define SL_POOL_HEADROOM 64 /* slots per pool for servers added at run time */
#define SL_MAX_TRIES 12     /* servers one request may try (1 + retries, bounded) */
#define SL_MAX_RESOLVED 16  /* addresses one configured name may give at start-up */
#define SL_SLOT_QUIET_MS 2000 /* a REMOVED slot this long is reusable for another address */

enum sl_server_state {
    SL_SRV_UP = 0,      /* takes requests (unless passively down: see down_until_ms) */
    SL_SRV_CHECKING,    /* active health: needs `passes` good checks first (new, or failed) */
    SL_SRV_DRAINING,    /* removed (API, DNS): no new requests; REMOVED at in-flight 0 */
    SL_SRV_REMOVED,     /* gone; its slot is reused by the same address coming back (an
                         * autoscaled instance restarted on its port: sl_upstreams_revive),
                         * or, once quiet for SL_SLOT_QUIET_MS, by any new server when the
                         * pool is full (DNS following pods that get new addresses) */
};

typedef struct sl_server {
    sl_server_conf_t conf;   /* own copy: servers added at run time have no config entry */
    uint32_t id;             /* global: index into every worker's keep-alive table */
    uint32_t mid;            /* label id (service and address) in upstream metrics */
    uint32_t index;          /* slot in its pool */
    uint32_t state;          /* atomic: enum sl_server_state */
    uint32_t read_pool;      /* 1 when the server is in its service's read pool */
    struct sl_pool *pool;    /* the pool it is a slot of */
    const sl_server_conf_t *origin; /* the configured entry it came from (a name may give
                                     * several addresses); NULL when added by the API */
    uint64_t inflight;       /* atomic: requests on it now, all workers */
    /* passive health (see sl_server_fail) */
    uint64_t fails;          /* atomic: failures in the current window */
    uint64_t window_start_ms;/* atomic */
    uint64_t down_until_ms;  /* atomic: out until then (uv_now ms); 0 = not marked */
    uint32_t trial;          /* atomic: 1 while the one trial request after down is out */
    /* active health (control thread writes) */
    uint32_t hc_ok, hc_fail; /* current streaks */
    uint64_t hc_checks, hc_failed; /* atomic: totals */
    int hc_last_status;      /* last check's HTTP status, or a negative libuv error */
    uint64_t last_warn_ms;   /* atomic: when a per-request warning was last logged */
    uint64_t warns_dropped;  /* atomic: warnings not logged since (rate limit) */
    /* counters for the API and metrics (atomic) */
    uint64_t requests, failures, transitions;
    uint64_t carried_requests, carried_failures; /* control thread: requests, failures as a
                                                  * reload copied them to a successor */
    uint32_t gen;            /* atomic: +1 each time the slot takes another address; a
                              * kept-alive connection of an older generation is closed */
    uint64_t removed_ms;     /* control thread: when it became REMOVED (monotonic ms) */
} sl_server_t;

struct sl_balancer_ops;
struct sl_pool;

typedef struct sl_pool {
    sl_server_t *slots; /* cap slots; [0, n) are in use (some may be REMOVED) */
    uint32_t n;         /* atomic: store-release after a slot is filled */
    uint32_t cap;
    const struct sl_balancer_ops *ops;
    void *state;        /* the balancer's, sized for cap slots */
    int nthreads;
} sl_pool_t;

typedef struct sl_service {
    const sl_service_conf_t *conf;
    uint32_t index;
    sl_pool_t primary; /* servers: writes, and reads without read_servers */
    sl_pool_t read;    /* read_servers (n = 0 when none) */
    /* retry budget, as Envoy's: retries in flight <= max(min, percent x requests in flight) */
    uint64_t active;   /* atomic: requests in flight on the service */
    uint64_t active_retries; /* atomic */
    uint64_t retries_total, budget_exhausted; /* atomic counters */
} sl_service_t;

#endif
