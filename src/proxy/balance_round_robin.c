/* balance_round_robin.c - smooth weighted round robin, as nginx's default balancer.
 * Each pick adds every usable server's weight to its current weight, takes the largest,
 * and subtracts the total from it: weights 5,1,1 give a a b a c a a, spread out rather
 * than a a a a a b c. State is per worker (as in nginx, where each worker process keeps
 * its own), so a pick is lock-free; it covers every slot so servers added at run time
 * join the cycle. */
#include <stdlib.h>

#include "balance.h"

typedef struct rr_state {
    int64_t *current; /* nthreads x cap current weights */
} rr_state_t;

static sl_server_t *rr_pick(sl_pool_t *pool, const sl_pick_t *ctx)
{
    rr_state_t *s = pool->state;
    uint32_t n = sl_pool_size(pool);
    int64_t *cur = s->current + (size_t)ctx->thread * pool->cap;
    int64_t total = 0;
    sl_server_t *best = NULL;
    int64_t *best_cur = NULL;
    for (uint32_t i = 0; i < n; i++) {
        sl_server_t *srv = &pool->slots[i];
        if (!sl_server_usable(srv, ctx))
            continue;
        int64_t w = srv->conf.weight;
        cur[i] += w;
        total += w;
        if (!best || cur[i] > *best_cur) {
            best = srv;
            best_cur = &cur[i];
        }
    }
    if (best)
        *best_cur -= total;
    return best;
}

static int rr_init(sl_pool_t *pool)
{
    rr_state_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SL_ENOMEM;
    s->current = calloc((size_t)pool->nthreads * pool->cap, sizeof(int64_t));
    if (!s->current) {
        free(s);
        return SL_ENOMEM;
    }
    pool->state = s;
    /* Start each worker at a different point of the cycle, so the first requests of
     * all workers do not all go to the first server. */
    for (int t = 0; t < pool->nthreads; t++) {
        sl_pick_t ctx = {.thread = t};
        for (uint32_t k = 0; pool->n && k < (uint32_t)t % pool->n; k++)
            rr_pick(pool, &ctx);
    }
    return 0;
}

static void rr_destroy(sl_pool_t *pool)
{
    rr_state_t *s = pool->state;
    if (s) {
        free(s->current);
        free(s);
    }
    pool->state = NULL;
}

const sl_balancer_ops_t sl_balance_round_robin = {
    .name = "round_robin", .init = rr_init, .pick = rr_pick, .destroy = rr_destroy};

/* The balancers this build has, by configured enum sl_balance value. */
static const sl_balancer_ops_t *const balancers[] = {
    [SL_BALANCE_ROUND_ROBIN] = &sl_balance_round_robin,
    [SL_BALANCE_LEAST_CONN] = &sl_balance_least_conn,
    [SL_BALANCE_RANDOM_TWO] = &sl_balance_random_two,
    [SL_BALANCE_HASH] = &sl_balance_hash,
};

const sl_balancer_ops_t *sl_balancer_for(int balance)
{
    if (balance < 0 || (size_t)balance >= SL_ARRAY_LEN(balancers))
        return NULL;
    return balancers[balance];
}
