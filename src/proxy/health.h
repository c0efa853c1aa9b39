/* health.h - active health checks (HAProxy/Envoy style): every interval an HTTP GET of
 * the service's health path to each server; `fails` failures in a row take an UP server
 * out (CHECKING), `passes` successes in a row bring a CHECKING server (back) in.
 * Runs on the control thread's loop only, never on a worker loop; never blocks. */
#ifndef SL_HEALTH_H
#define SL_HEALTH_H

#include <uv.h>

#include "upstream.h"

typedef struct sl_health sl_health_t;

/* Start checking every server (not DRAINING or REMOVED) of every service with
 * health_check enabled, in its primary and read pools; servers added to those pools
 * later are picked up within one tick. The first check of each server runs soon after
 * start (with a small per-server jitter). u must outlive the returned object, and every
 * call that changes u must come from loop's thread.
 * Returns NULL when no service has health checks, or when out of memory. */
sl_health_t *sl_health_start(uv_loop_t *loop, sl_upstreams_t *u);

/* Stop: abort checks in flight (their results are not recorded) and close every handle.
 * The memory is freed by the close callbacks, so the loop must run again afterwards
 * (uv_run until it ends). NULL is ignored. Call once. */
void sl_health_stop(sl_health_t *h);

#endif
