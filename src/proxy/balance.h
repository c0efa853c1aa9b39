/* balance.h - the balancer seam: one const ops struct per algorithm, one file each.
 * The proxy never switches on a balancer's name; it calls pool->ops->pick(). Pools may
 * grow at run time (servers added by the API or DNS: pool->n rises, slots never move)
 * and servers change state (health, draining), so pick() reads pool->n with acquire and
 * asks sl_server_usable() about each candidate. Balancer state covers pool->cap slots. */
#ifndef SL_BALANCE_H
#define SL_BALANCE_H

#include "../core/hash.h"
#include "upstream_types.h"

/* What a pick knows about the request. */
typedef struct sl_pick {
    int thread;              /* caller's sl_thread_index (per-thread balancer state) */
    uint64_t now_ms;         /* uv_now() of the caller's loop */
    uint64_t hash;           /* balance: hash - the hash of the request's hash_key */
    const sl_server_t *tried[SL_MAX_TRIES]; /* servers this request already tried */
    unsigned ntried;
} sl_pick_t;

/* 1 when s may take a new request: state UP, not passively down (a server whose down
 * period has ended is usable: the proxy then claims its one trial request), and not
 * already tried by this request. Any thread. */
static inline int sl_server_usable(const sl_server_t *s, const sl_pick_t *ctx)
{
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SL_SRV_UP)
        return 0;
    uint64_t until = __atomic_load_n(&s->down_until_ms, __ATOMIC_RELAXED);
    if (until && ctx->now_ms < until)
        return 0;
    for (unsigned i = 0; i < ctx->ntried; i++)
        if (ctx->tried[i] == s)
            return 0;
    return 1;
}

static inline uint32_t sl_pool_size(const sl_pool_t *p)
{
    return __atomic_load_n(&p->n, __ATOMIC_ACQUIRE);
}

typedef struct sl_balancer_ops {
    const char *name;
    /* Build state for pool->cap slots and pool->nthreads threads. 0 or SL_ENOMEM.
     * Control thread, before workers use the pool. */
    int (*init)(sl_pool_t *pool);
    /* A usable server for the request, or NULL when none is. Worker threads, lock-free. */
    sl_server_t *(*pick)(sl_pool_t *pool, const sl_pick_t *ctx);
    /* Membership changed (a server added, or one left for good): rebuild what depends
     * on it (the hash table). Control thread. May be NULL. */
    void (*changed)(sl_pool_t *pool);
    void (*destroy)(sl_pool_t *pool);
} sl_balancer_ops_t;

extern const sl_balancer_ops_t sl_balance_round_robin;
extern const sl_balancer_ops_t sl_balance_least_conn;
extern const sl_balancer_ops_t sl_balance_random_two;
extern const sl_balancer_ops_t sl_balance_hash;

/* The ops for a configured enum sl_balance value, or NULL if not built. */
const sl_balancer_ops_t *sl_balancer_for(int balance);

#endif
