/* discovery.h - servers written as host names with `resolve: D`: re-resolved every D on
 * the control thread (uv_getaddrinfo runs in libuv's thread pool, never on a worker
 * loop); new addresses join the pool, vanished ones are drained, as a Kubernetes
 * headless Service is followed. A failed resolution changes nothing. */
#ifndef SL_DISCOVERY_H
#define SL_DISCOVERY_H

#include <uv.h>

#include "upstream.h"

typedef struct sl_discovery sl_discovery_t;

/* NULL when no server has `resolve` (or out of memory). loop = the control loop. */
sl_discovery_t *sl_discovery_start(uv_loop_t *loop, sl_upstreams_t *u);
/* Close every handle; memory is freed by the close callbacks (run the loop after). */
void sl_discovery_stop(sl_discovery_t *d);

/* Resolutions done and failed, all names (metrics). */
uint64_t sl_discovery_count(const sl_discovery_t *d, int failed);

#endif
