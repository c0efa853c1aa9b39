/* balance_round_robin.c - smooth weighted round robin, as nginx's default balancer.
 * Each pick adds every eligible server's weight to its current weight, takes the
 * largest, and subtracts the total from it: weights 5,1,1 give a a b a c a a, spread
 * out rather than a a a a a b c. State is per worker (as in nginx, where each worker
 * process keeps its own), so a pick is lock-free. */
#include <stdlib.h>

#include "balance.h"

typedef struct rr_state {
    int nthreads;
    int64_t *current; /* nthreads x n current weights */
} rr_state_t;

static sl_server_t *rr_pick(sl_pool_t *pool, int thread, uint64_t exclude);

static int rr_init(sl_pool_t *pool, int nthreads)
{
    rr_state_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SL_ENOMEM;
    s->nthreads = nthreads;
    s->current = calloc((size_t)nthreads * (pool->n ? pool->n : 1), sizeof(int64_t));
    if (!s->current) {
        free(s);
        return SL_ENOMEM;
    }
    pool->state = s;
    /* Start each worker at a different point of the cycle, so the first requests of
     * all workers do not all go to the first server. */
    for (int t = 0; t < nthreads; t++)
        for (int k = 0; k < t % (int)(pool->n ? pool->n : 1); k++)
            rr_pick(pool, t, 0);
    return 0;
}

static sl_server_t *rr_pick(sl_pool_t *pool, int thread, uint64_t exclude)
{
    rr_state_t *s = pool->state;
    if (pool->n == 1)
        return (exclude & 1) ? NULL : &pool->servers[0];
    int64_t *cur = s->current + (size_t)thread * pool->n;
    int64_t total = 0;
    sl_server_t *best = NULL;
    int64_t *best_cur = NULL;
    for (uint32_t i = 0; i < pool->n; i++) {
        if (i < 64 && (exclude >> i) & 1)
            continue;
        int64_t w = pool->servers[i].conf->weight;
        cur[i] += w;
        total += w;
        if (!best || cur[i] > *best_cur) {
            best = &pool->servers[i];
            best_cur = &cur[i];
        }
    }
    if (best)
        *best_cur -= total;
    return best;
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
};

const sl_balancer_ops_t *sl_balancer_for(int balance)
{
    if (balance < 0 || (size_t)balance >= SL_ARRAY_LEN(balancers))
        return NULL;
    return balancers[balance];
}
