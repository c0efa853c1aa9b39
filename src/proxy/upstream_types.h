/* upstream_types.h - services, pools and servers as the proxy sees them at run time.
 * Built from the configuration on the control thread and then shared read-only by every
 * worker, except the fields marked atomic. */
#ifndef SL_UPSTREAM_TYPES_H
#define SL_UPSTREAM_TYPES_H

#include <stdint.h>

#include "../core/config.h"

typedef struct sl_server {
    const sl_server_conf_t *conf; /* address, weight, max_fails, fail_timeout */
    uint32_t id;                  /* index into every worker's keep-alive pool table */
    uint32_t index;               /* position in its pool (exclude bit) */
    uint64_t inflight;            /* atomic: requests on it now, all workers */
    uint64_t fails;               /* atomic: failures in the current window (passive health) */
    uint64_t window_start_ms;     /* atomic: start of the fail_timeout window (uv_now ms) */
    uint64_t down_until_ms;       /* atomic: marked down until then (uv_now ms); 0 = up */
} sl_server_t;

struct sl_balancer_ops;

typedef struct sl_pool {
    sl_server_t *servers;
    uint32_t n;
    const struct sl_balancer_ops *ops;
    void *state; /* the balancer's */
} sl_pool_t;

typedef struct sl_service {
    const sl_service_conf_t *conf;
    uint32_t index;
    sl_pool_t primary;
} sl_service_t;

#endif
