/* balance_least_conn.c - weighted least connections, as nginx's least_conn.
 * Owns: choosing the usable server with the fewest requests in flight per unit of weight.
 * pick() never allocates, locks or writes shared memory: in-flight counts are shared by
 * all workers (the proxy counts them), the tie-breaking state is per worker thread. */
#include <stdlib.h>
#include <string.h>

#include "balance.h"

#define CACHE_LINE 64

/* One worker's state, alone on its cache lines so workers never share a line. */
typedef struct lc_thread {
    uint32_t next_start; /* where the next scan starts */
    uint32_t pad;
    int64_t current[]; /* smooth weighted round robin among tied servers, cap slots */
} lc_thread_t;

typedef struct lc_state {
    unsigned char *threads; /* nthreads blocks of stride bytes */
    size_t stride;
    int nthreads;
} lc_state_t;

static inline uint64_t weight_of(const sl_server_t *s)
{
    return s->conf.weight ? s->conf.weight : 1;
}

static int lc_init(sl_pool_t *pool)
{
    int nthreads = pool->nthreads > 0 ? pool->nthreads : 1;
    lc_state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return SL_ENOMEM;
    size_t bytes = sizeof(lc_thread_t) + (size_t)pool->cap * sizeof(int64_t);
    st->stride = (bytes + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    st->nthreads = nthreads;
    st->threads = aligned_alloc(CACHE_LINE, st->stride * (size_t)nthreads);
    if (!st->threads) {
        free(st);
        return SL_ENOMEM;
    }
    memset(st->threads, 0, st->stride * (size_t)nthreads);
    /* Workers start their scans at different slots, so when they see the same counts
     * (an idle pool) their first requests do not all go to slot 0. */
    uint32_t n = sl_pool_size(pool);
    for (int t = 0; t < nthreads; t++) {
        lc_thread_t *th = (lc_thread_t *)(st->threads + (size_t)t * st->stride);
        th->next_start = n ? (uint32_t)t % n : 0;
    }
    pool->state = st;
    return 0;
}

/* The caller's state, or NULL for a thread index outside [0, nthreads) (no worker:
 * such a caller gets the least loaded server without tie-breaking state). */
static inline lc_thread_t *thread_state(lc_state_t *st, int thread)
{
    if ((unsigned)thread >= (unsigned)st->nthreads)
        return NULL;
    return (lc_thread_t *)(st->threads + (size_t)thread * st->stride);
}

/* Two passes from a rotating start slot. The first finds the lowest inflight/weight
 * (cross-multiplied: a/wa < b/wb as a*wb < b*wa) and counts the servers at it; when
 * several tie, the second runs smooth weighted round robin among them, as nginx does,
 * so idle or evenly loaded servers share requests by weight. Counts move under us
 * (other workers); a server whose count changed between the passes simply stops being
 * tied, and if none is left the first pass's choice stands. */
static sl_server_t *lc_pick(sl_pool_t *pool, const sl_pick_t *ctx)
{
    lc_state_t *st = pool->state;
    uint32_t n = sl_pool_size(pool);
    if (SL_UNLIKELY(n == 0))
        return NULL;
    lc_thread_t *th = thread_state(st, ctx->thread);
    uint32_t start = 0;
    if (SL_LIKELY(th != NULL)) {
        start = th->next_start < n ? th->next_start : 0;
        th->next_start = start + 1 < n ? start + 1 : 0;
    }

    sl_server_t *best = NULL;
    uint64_t best_in = 0, best_w = 1;
    unsigned ntied = 0;
    uint32_t i = start;
    for (uint32_t k = 0; k < n; k++, i = i + 1 < n ? i + 1 : 0) {
        sl_server_t *s = &pool->slots[i];
        if (!sl_server_usable(s, ctx))
            continue;
        uint64_t in = __atomic_load_n(&s->inflight, __ATOMIC_RELAXED);
        uint64_t w = weight_of(s);
        if (!best || in * best_w < best_in * w) {
            best = s;
            best_in = in;
            best_w = w;
            ntied = 1;
        } else if (in * best_w == best_in * w) {
            ntied++;
        }
    }
    if (ntied <= 1 || !th)
        return best;

    sl_server_t *chosen = NULL;
    int64_t *chosen_cur = NULL;
    int64_t total = 0;
    i = start;
    for (uint32_t k = 0; k < n; k++, i = i + 1 < n ? i + 1 : 0) {
        sl_server_t *s = &pool->slots[i];
        if (!sl_server_usable(s, ctx))
            continue;
        uint64_t in = __atomic_load_n(&s->inflight, __ATOMIC_RELAXED);
        uint64_t w = weight_of(s);
        if (in * best_w != best_in * w)
            continue;
        int64_t *cur = &th->current[i];
        *cur += (int64_t)w;
        total += (int64_t)w;
        if (!chosen || *cur > *chosen_cur) {
            chosen = s;
            chosen_cur = cur;
        }
    }
    if (!chosen)
        return best;
    *chosen_cur -= total;
    return chosen;
}

static void lc_destroy(sl_pool_t *pool)
{
    lc_state_t *st = pool->state;
    if (st) {
        free(st->threads);
        free(st);
    }
    pool->state = NULL;
}

/* No changed(): the state covers all cap slots, so a server added at run time starts
 * with a current weight of 0 and is considered from the next pick on. */
const sl_balancer_ops_t sl_balance_least_conn = {
    .name = "least_conn", .init = lc_init, .pick = lc_pick, .destroy = lc_destroy};
