/* balance_random_two.c - power of two choices: draw two distinct usable servers at random,
 * each with probability proportional to its weight, and take the one with fewer requests
 * in flight per unit of weight. Owns its per-worker random state; pick() never allocates,
 * locks, calls rand() or writes memory another worker reads. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balance.h"

#define CACHE_LINE 64

/* One worker's state, alone on its cache lines. The scratch arrays hold one pick's
 * snapshot of the usable servers, so the two draws see one consistent set even while
 * health changes under them. */
typedef struct p2c_thread {
    uint64_t rng;   /* splitmix64 state */
    uint32_t *idx;  /* cap slots: usable servers of this pick (after cum) */
    uint64_t cum[]; /* cap running weight totals: cum[j] = w(idx[0]) + ... + w(idx[j]) */
} p2c_thread_t;

typedef struct p2c_state {
    unsigned char *threads; /* nthreads blocks of stride bytes */
    size_t stride;
    int nthreads;
    uint64_t shared_seq; /* atomic: random source for callers that are not workers */
    uint64_t seed;
} p2c_state_t;

static inline uint64_t weight_of(const sl_server_t *s)
{
    return s->conf.weight ? s->conf.weight : 1;
}

/* splitmix64 (Steele, Lea, Flood 2014): one add and a finaliser; passes BigCrush. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t next_random(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return mix64(*state);
}

/* A number in [0, bound) from 64 random bits, by multiply-shift (Lemire): no division,
 * and a bias below bound / 2^64. */
static inline uint64_t below(uint64_t r, uint64_t bound)
{
    return (uint64_t)(((unsigned __int128)r * bound) >> 64);
}

static inline p2c_thread_t *thread_at(p2c_state_t *st, int t)
{
    return (p2c_thread_t *)(st->threads + (size_t)t * st->stride);
}

/* Seeds differ per process, pool and thread, so workers (and gateways) do not draw in
 * lockstep. */
static int p2c_init(sl_pool_t *pool)
{
    int nthreads = pool->nthreads > 0 ? pool->nthreads : 1;
    size_t cap = pool->cap ? pool->cap : 1;
    p2c_state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return SL_ENOMEM;
    size_t bytes = sizeof(p2c_thread_t) + cap * (sizeof(uint32_t) + sizeof(uint64_t));
    st->stride = (bytes + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    st->nthreads = nthreads;
    st->threads = aligned_alloc(CACHE_LINE, st->stride * (size_t)nthreads);
    if (!st->threads) {
        free(st);
        return SL_ENOMEM;
    }
    memset(st->threads, 0, st->stride * (size_t)nthreads);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    st->seed = mix64((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^
               mix64((uint64_t)(uintptr_t)pool);
    for (int t = 0; t < nthreads; t++) {
        p2c_thread_t *th = thread_at(st, t);
        th->idx = (uint32_t *)(void *)(th->cum + cap);
        th->rng = mix64(st->seed + (uint64_t)t * 0x9e3779b97f4a7c15ULL);
    }
    pool->state = st;
    return 0;
}

/* The position in cum[0, m) whose weight range holds r (r < cum[m - 1]). */
static inline uint32_t find(const uint64_t *cum, uint32_t m, uint64_t r)
{
    uint32_t lo = 0, hi = m - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cum[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The less loaded of a and b per unit of weight (a on a tie: it is already random). */
static inline sl_server_t *less_loaded(sl_server_t *a, sl_server_t *b)
{
    uint64_t ia = __atomic_load_n(&a->inflight, __ATOMIC_RELAXED);
    uint64_t ib = __atomic_load_n(&b->inflight, __ATOMIC_RELAXED);
    return ib * weight_of(a) < ia * weight_of(b) ? b : a;
}

/* A caller outside the worker threads has no scratch: it gets the least loaded usable
 * server, scanning from a shared random start. Not a hot path (no caller today). */
static sl_server_t *pick_shared(sl_pool_t *pool, p2c_state_t *st, const sl_pick_t *ctx, uint32_t n)
{
    uint64_t r = mix64(st->seed ^ __atomic_fetch_add(&st->shared_seq, 1, __ATOMIC_RELAXED));
    uint32_t start = (uint32_t)below(r, n);
    sl_server_t *best = NULL;
    for (uint32_t k = 0, i = start; k < n; k++, i = i + 1 < n ? i + 1 : 0) {
        sl_server_t *s = &pool->slots[i];
        if (sl_server_usable(s, ctx))
            best = best ? less_loaded(best, s) : s;
    }
    return best;
}

/* One pass collects the usable servers and their running weight totals; the first draw
 * is weighted over all of them, the second over the rest (its range skips the first's
 * weight), so the two are distinct and each is drawn in proportion to its weight. */
static sl_server_t *p2c_pick(sl_pool_t *pool, const sl_pick_t *ctx)
{
    p2c_state_t *st = pool->state;
    uint32_t n = sl_pool_size(pool);
    if (SL_UNLIKELY(n == 0))
        return NULL;
    if (SL_UNLIKELY((unsigned)ctx->thread >= (unsigned)st->nthreads))
        return pick_shared(pool, st, ctx, n);
    p2c_thread_t *th = thread_at(st, ctx->thread);

    uint32_t m = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        sl_server_t *s = &pool->slots[i];
        if (!sl_server_usable(s, ctx))
            continue;
        total += weight_of(s);
        th->idx[m] = i;
        th->cum[m] = total;
        m++;
    }
    if (m <= 1)
        return m ? &pool->slots[th->idx[0]] : NULL;

    uint32_t ja = find(th->cum, m, below(next_random(&th->rng), total));
    uint64_t wa = weight_of(&pool->slots[th->idx[ja]]);
    uint64_t a_start = th->cum[ja] - wa;
    uint64_t r = below(next_random(&th->rng), total - wa);
    if (r >= a_start)
        r += wa;
    uint32_t jb = find(th->cum, m, r);
    return less_loaded(&pool->slots[th->idx[ja]], &pool->slots[th->idx[jb]]);
}

static void p2c_destroy(sl_pool_t *pool)
{
    p2c_state_t *st = pool->state;
    if (st) {
        free(st->threads);
        free(st);
    }
    pool->state = NULL;
}

/* No changed(): the scratch covers all cap slots and each pick reads the pool afresh. */
const sl_balancer_ops_t sl_balance_random_two = {
    .name = "random_two", .init = p2c_init, .pick = p2c_pick, .destroy = p2c_destroy};
