/* balance.h - the balancer seam: one const ops struct per algorithm, one file each.
 * The proxy never switches on a balancer's name; it calls pool->ops->pick(). State a
 * balancer keeps per worker (smooth round-robin weights) is indexed by the worker's
 * thread index, so pick() takes no lock. */
#ifndef SL_BALANCE_H
#define SL_BALANCE_H

#include "upstream_types.h"

typedef struct sl_balancer_ops {
    const char *name;
    /* Build the pool's balancer state for nthreads loop threads. 0 or SL_ENOMEM. */
    int (*init)(sl_pool_t *pool, int nthreads);
    /* Choose a server for a request on thread `thread`, skipping those whose bit is set
     * in `exclude` (servers already tried); NULL when none is eligible. */
    sl_server_t *(*pick)(sl_pool_t *pool, int thread, uint64_t exclude);
    void (*destroy)(sl_pool_t *pool);
} sl_balancer_ops_t;

extern const sl_balancer_ops_t sl_balance_round_robin;

/* The ops for a configured enum sl_balance value, or NULL if not built. */
const sl_balancer_ops_t *sl_balancer_for(int balance);

#endif
