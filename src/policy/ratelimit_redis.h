/* ratelimit_redis.h - the shared rate limiter: the same GCRA decision as sl_rl_decide,
 * made inside Redis by a Lua script (all of a request's limits at once, and every request a
 * worker asks for in one loop iteration in one EVALSHA; the time taken from Redis so
 * instances with skewed clocks agree), so every sluice instance using the same Redis
 * enforces one global limit.
 * One sl_rl_redis_t per worker: a hiredis async connection attached to that worker's
 * libuv loop. Never blocks; every call has a deadline; reconnects with backoff. */
#ifndef SL_RATELIMIT_REDIS_H
#define SL_RATELIMIT_REDIS_H

#include <uv.h>

#include "../core/config.h"
#include "ratelimit.h"

typedef struct sl_rl_redis sl_rl_redis_t;

/* Result of a decision: 1 allowed, 0 rejected (checks[] filled as sl_rl_decide fills
 * them), or SL_EIO when Redis did not answer within the deadline, is not connected, or
 * answered with an error (checks[] untouched: the caller applies on_failure). */
typedef void (*sl_rl_redis_cb)(void *arg, int result);

/* Connect (asynchronously) to addr from loop's thread. timeout_ms bounds every decision;
 * prefix starts every Redis key ("sluice:rl:"). NULL when out of memory. */
sl_rl_redis_t *sl_rl_redis_new(uv_loop_t *loop, const sl_addr_t *addr, uint64_t timeout_ms,
                               const char *prefix);
/* Close the connection and every handle; pending callbacks run with SL_EIO first. The
 * memory is freed once libuv has closed the handles (run the loop after). */
void sl_rl_redis_close(sl_rl_redis_t *r);

/* Decide for checks[0..n) (n <= 16). The key in Redis is prefix + limit->id + key hash.
 * cb(arg, result) runs exactly once, never inside this call, at the latest timeout_ms
 * later; checks must stay valid until then. *handle (for cancel) is set.
 * Returns 0, or SL_EIO at once (not connected: nothing is sent, cb will not run). */
int sl_rl_redis_decide(sl_rl_redis_t *r, sl_rl_check_t *checks, unsigned n, sl_rl_redis_cb cb,
                       void *arg, void **handle);
/* The caller is gone: cb must not run for this decision (its reply is dropped). */
void sl_rl_redis_cancel(sl_rl_redis_t *r, void *handle);

typedef struct sl_rl_redis_stats {
    uint64_t calls, errors, timeouts, not_connected; /* decisions, and their failures */
    uint64_t batches;                                /* EVALSHA calls sent (re-sends too) */
    uint64_t latency_us_sum, latency_count;          /* of answered decisions */
    uint64_t connects, disconnects;
    int connected;
} sl_rl_redis_stats_t;
/* Read by the control thread (plain 64-bit fields, written by the owning worker). */
const sl_rl_redis_stats_t *sl_rl_redis_stats(const sl_rl_redis_t *r);

#endif
