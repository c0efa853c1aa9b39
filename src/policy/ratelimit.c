/* ratelimit.c - GCRA rate limits in one bounded table of (key, TAT) slots shared by all workers.
 * Owns: the slot table (allocated once in sl_rl_new, never grows), the all-or-nothing decision
 * over several limits, and the RateLimit numbers. Never blocks, never allocates after sl_rl_new.
 *
 * Slot: 16 bytes, { key, tat }. key is the caller's 64-bit key hash mixed with limit->id (0 means
 * empty); tat is the theoretical arrival time in ns on the caller's clock. The pair is updated
 * with one 16-byte compare-and-swap (cmpxchg16b on x86-64), so a key and its TAT always change
 * together: no fingerprint truncation, no clock base to re-base, ns precision over any range
 * (T = 60 ns for 1e9/minute as well as T = 1 day for 1/day). The file turns on the cx16 target
 * for the few functions that CAS, so no -mcx16 flag is needed and libatomic is never called.
 *
 * Table: 1..256 shards (a power of two, about 64+ slots each) chosen by bits 32..39 of the
 * mixed key; inside a shard, open addressing over a window of 8 consecutive slots (wrapping)
 * starting at a position taken from the low 32 bits. A slot never becomes empty again once
 * used (eviction replaces in place), so a lookup may stop at the first empty slot. A new key
 * takes, in order: the first empty slot in its window, the first slot whose TAT <= now (an
 * expired entry is a full budget: forgetting it changes nothing), or the slot with the smallest
 * TAT (a forced eviction, counted: that key's next request starts with a full budget).
 *
 * Races, all benign and bounded to a request or so under contention on the same slot:
 * - two threads adding the same new key to a full window may pick two different victims and
 *   each store the key: the first copy is used, the other ages out; one request's charge lost;
 * - multi-limit rollback: when a later limit loses a CAS race and now rejects, the limits
 *   already advanced are rolled back by CAS (new -> previous value); if another request moved
 *   one of them meanwhile the rollback is skipped and that limit stays over-charged by one. */
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define WINDOW 8 /* slots probed per key */
#define MAX_SHARDS 256
#define SLOTS_PER_SHARD_MIN 64 /* below that, fewer shards */
#define MAX_CHECKS 16
/* Bound on T and tau (~146 years): with a monotonic clock below 2^62 ns, now + tau + T never
 * overflows 64 bits. */
#define DURATION_MAX (UINT64_MAX >> 2)

/* x86-64: cmpxchg16b needs the cx16 target; elsewhere the compiler's own 16-byte __sync. */
#if defined(__x86_64__)
#define CAS16_TARGET __attribute__((target("cx16")))
#else
#define CAS16_TARGET
#endif

typedef union slot {
    struct {
        uint64_t key; /* mixed (key, limit id) hash; 0 = empty */
        uint64_t tat; /* theoretical arrival time, ns */
    } w;
    unsigned __int128 v;
} __attribute__((aligned(16))) slot_t;

/* Per-shard counters, one cache line each so floods of new keys do not share one line. */
struct shard {
    uint64_t size;      /* slots holding a key */
    uint64_t evictions; /* forced evictions (victim's TAT still in the future) */
} __attribute__((aligned(64)));

struct sl_ratelimiter {
    slot_t *slots;      /* nshards x per_shard, zeroed */
    uint32_t per_shard; /* >= WINDOW */
    uint32_t shard_mask;
    size_t capacity;
    struct shard shards[MAX_SHARDS];
};

int sl_rl_limit_init(sl_rl_limit_t *l, uint32_t id, uint32_t count, uint64_t period_ms,
                     int has_burst, uint32_t burst, int dry_run)
{
    if (!l || count == 0 || period_ms == 0 || period_ms > DURATION_MAX / NS_PER_MS)
        return SL_EINVAL;
    uint64_t period_ns = period_ms * NS_PER_MS;
    /* Rounded up: never more permissive than configured, and T >= 1 ns even past 1e9/s. */
    uint64_t t = period_ns / count + (period_ns % count != 0);
    uint64_t extra = has_burst ? burst : (uint64_t)count - 1;
    memset(l, 0, sizeof(*l));
    l->t_ns = t;
    l->tau_ns = extra > DURATION_MAX / t ? DURATION_MAX : extra * t;
    l->count = count;
    l->id = id;
    l->period_ms = period_ms;
    l->dry_run = dry_run != 0;
    return SL_OK;
}

sl_ratelimiter_t *sl_rl_new(size_t max_keys)
{
    if (max_keys < WINDOW)
        max_keys = WINDOW;
    if (max_keys > (SIZE_MAX / sizeof(slot_t)) / 2 || max_keys > (size_t)UINT32_MAX * 4)
        return NULL;
    uint32_t nshards = 1;
    while (nshards < MAX_SHARDS && (size_t)nshards * 2 * SLOTS_PER_SHARD_MIN <= max_keys)
        nshards *= 2;
    size_t per = (max_keys + nshards - 1) / nshards;
    if (per < WINDOW)
        per = WINDOW;
    if (per > UINT32_MAX)
        return NULL;

    size_t rl_bytes = (sizeof(sl_ratelimiter_t) + 63) & ~(size_t)63;
    sl_ratelimiter_t *rl = aligned_alloc(64, rl_bytes);
    if (!rl)
        return NULL;
    memset(rl, 0, sizeof(*rl));
    rl->per_shard = (uint32_t)per;
    rl->shard_mask = nshards - 1;
    rl->capacity = per * nshards;
    size_t bytes = (rl->capacity * sizeof(slot_t) + 63) & ~(size_t)63;
    rl->slots = aligned_alloc(64, bytes);
    if (!rl->slots) {
        free(rl);
        return NULL;
    }
    memset(rl->slots, 0, bytes);
    return rl;
}

void sl_rl_free(sl_ratelimiter_t *rl)
{
    if (!rl)
        return;
    free(rl->slots);
    free(rl);
}

uint64_t sl_rl_size(const sl_ratelimiter_t *rl)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i <= rl->shard_mask; i++)
        n += __atomic_load_n(&rl->shards[i].size, __ATOMIC_RELAXED);
    return n;
}

uint64_t sl_rl_evictions(const sl_ratelimiter_t *rl)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i <= rl->shard_mask; i++)
        n += __atomic_load_n(&rl->shards[i].evictions, __ATOMIC_RELAXED);
    return n;
}

/* Murmur3's 64-bit finalizer: a bijection, so distinct (key ^ salt(id)) stay distinct. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static inline uint64_t slot_key(uint64_t key, uint32_t id)
{
    uint64_t h = mix64(key ^ (((uint64_t)id + 1) * 0x9e3779b97f4a7c15ull));
    return h ? h : 1; /* 0 marks an empty slot */
}

/* How the slot in a probe was obtained; decides the counters to move on commit. */
enum { P_FOUND, P_EMPTY, P_EXPIRED, P_EVICT };

struct probe {
    slot_t *slot;
    slot_t old;   /* the value the commit CAS expects (as read) */
    uint64_t tat; /* this key's TAT, 0 when the key is not in the table */
    int kind;
};

/* Find key h, or the slot a new h would take (see the file comment). The two halves are read
 * with two 8-byte loads: a torn pair only makes the later CAS fail, and a rejection is
 * confirmed by a CAS before it is returned (confirm()). */
static __attribute__((noinline)) void locate(sl_ratelimiter_t *rl, uint64_t h, uint64_t now, struct probe *p)
{
    uint32_t per = rl->per_shard;
    slot_t *base = rl->slots + (size_t)((uint32_t)(h >> 32) & rl->shard_mask) * per;
    uint32_t i = (uint32_t)(((h & 0xffffffffull) * per) >> 32);
    slot_t *victim = NULL;
    uint64_t vkey = 0, vtat = UINT64_MAX;
    int expired = 0;

    for (int k = 0; k < WINDOW; k++) {
        slot_t *s = base + i;
        uint64_t key = __atomic_load_n(&s->w.key, __ATOMIC_ACQUIRE);
        if (key == 0) { /* never written: (0, 0) */
            p->slot = s;
            p->old.w.key = 0;
            p->old.w.tat = 0;
            p->tat = 0;
            p->kind = P_EMPTY;
            return;
        }
        uint64_t tat = __atomic_load_n(&s->w.tat, __ATOMIC_ACQUIRE);
        if (key == h) {
            p->slot = s;
            p->old.w.key = key;
            p->old.w.tat = tat;
            p->tat = tat;
            p->kind = P_FOUND;
            return;
        }
        if (!expired && (!victim || tat <= now || tat < vtat)) {
            victim = s;
            vkey = key;
            vtat = tat;
            expired = tat <= now;
        }
        if (++i == per)
            i = 0;
    }
    p->slot = victim;
    p->old.w.key = vkey;
    p->old.w.tat = vtat;
    p->tat = 0;
    p->kind = expired ? P_EXPIRED : P_EVICT;
}

/* The limit's T and tau: sl_rl_limit_init keeps 1 <= T <= DURATION_MAX, tau <= DURATION_MAX. */
static inline uint64_t limit_t(const sl_rl_limit_t *l)
{
    return l->t_ns;
}

static inline uint64_t limit_tau(const sl_rl_limit_t *l)
{
    return l->tau_ns;
}

/* GCRA: allowed iff max(TAT, now) - tau <= now. */
static inline int gcra_allows(uint64_t tat, uint64_t tau, uint64_t now)
{
    return tat <= now || tat - now <= tau;
}

/* Out fields from the TAT this limit holds after the decision (state) and its verdict:
 * remaining = requests that would still pass at now (each costs T, while TAT - now <= tau);
 * reset = seconds until TAT drains to now (full quota); retry_after = seconds until
 * TAT - tau <= now. */
static inline __attribute__((always_inline)) void fill_out(sl_rl_check_t *c, uint64_t state, uint64_t now, int allowed)
{
    uint64_t t = limit_t(c->limit), tau = limit_tau(c->limit);
    uint64_t d = state > now ? state - now : 0;
    c->allowed = allowed;
    c->remaining = d > tau ? 0 : (tau - d) / t + 1;
    c->reset_s = (d + NS_PER_S - 1) / NS_PER_S;
    c->retry_after_s = 0;
    if (!allowed) {
        uint64_t wait = d > tau ? d - tau : 0;
        c->retry_after_s = wait ? (wait + NS_PER_S - 1) / NS_PER_S : 1;
    }
}

static inline CAS16_TARGET int cas(slot_t *s, slot_t expect, slot_t desired)
{
    return __sync_bool_compare_and_swap(&s->v, expect.v, desired.v);
}

/* A rejection was computed from two separate loads: check with one atomic compare (a CAS that
 * writes back the same value) that the slot still held exactly that pair. */
static inline CAS16_TARGET int confirm(const struct probe *p)
{
    return cas(p->slot, p->old, p->old);
}

static inline struct shard *shard_of(sl_ratelimiter_t *rl, const slot_t *s)
{
    return &rl->shards[(size_t)(s - rl->slots) / rl->per_shard];
}

/* One limit: the common case (a route with one limit), without the bookkeeping that makes
 * several limits atomic. Same results as the general path with n = 1. */
static CAS16_TARGET __attribute__((noinline)) int decide_one(sl_ratelimiter_t *rl,
                                                             sl_rl_check_t *c, uint64_t now)
{
    const sl_rl_limit_t *l = c->limit;
    uint64_t h = slot_key(c->key, l->id);
    struct probe p;
    /* A known key is usually in the first slot of its window: try it before the full probe. */
    uint32_t per = rl->per_shard;
    slot_t *first = rl->slots + (size_t)((uint32_t)(h >> 32) & rl->shard_mask) * per +
                    (uint32_t)(((h & 0xffffffffull) * per) >> 32);
    if (__atomic_load_n(&first->w.key, __ATOMIC_ACQUIRE) == h) {
        p.slot = first;
        p.old.w.key = h;
        p.old.w.tat = p.tat = __atomic_load_n(&first->w.tat, __ATOMIC_ACQUIRE);
        p.kind = P_FOUND;
    } else {
        locate(rl, h, now, &p);
    }
    for (;;) {
        if (!gcra_allows(p.tat, limit_tau(l), now)) {
            if (l->dry_run) { /* counted as a would-be rejection; no state changes */
                fill_out(c, p.tat, now, 0);
                return 1;
            }
            if (confirm(&p)) {
                fill_out(c, p.tat, now, 0);
                return 0;
            }
        } else {
            slot_t next;
            next.w.key = h;
            next.w.tat = (p.tat > now ? p.tat : now) + limit_t(l);
            if (cas(p.slot, p.old, next)) {
                if (SL_UNLIKELY(p.kind == P_EMPTY))
                    __atomic_fetch_add(&shard_of(rl, p.slot)->size, 1, __ATOMIC_RELAXED);
                else if (SL_UNLIKELY(p.kind == P_EVICT))
                    __atomic_fetch_add(&shard_of(rl, p.slot)->evictions, 1, __ATOMIC_RELAXED);
                fill_out(c, next.w.tat, now, 1);
                return 1;
            }
        }
        locate(rl, h, now, &p); /* lost a race: read the slot again */
    }
}

/* Several limits: all verdicts first, then every state advanced or none (see the file
 * comment). Kept out of line: its arrays would make the one-limit path pay for a frame. */
static CAS16_TARGET __attribute__((noinline)) int decide_many(sl_ratelimiter_t *rl,
                                                              sl_rl_check_t *checks,
                                                              unsigned n, uint64_t now_ns)
{
    struct probe p[MAX_CHECKS];
    slot_t next[MAX_CHECKS];
    uint64_t h[MAX_CHECKS];
    unsigned char ok[MAX_CHECKS], done[MAX_CHECKS];

    if (SL_UNLIKELY(n > MAX_CHECKS)) { /* contract violation: fail closed, visibly */
        for (unsigned i = 0; i < n; i++) {
            checks[i].allowed = 0;
            checks[i].remaining = checks[i].reset_s = 0;
            checks[i].retry_after_s = 1;
        }
        return 0;
    }
    for (unsigned i = 0; i < n; i++)
        h[i] = slot_key(checks[i].key, checks[i].limit->id);

restart:;
    /* 1. Every verdict from the current state; nothing written yet. */
    int reject = -1;
    for (unsigned i = 0; i < n; i++) {
        locate(rl, h[i], now_ns, &p[i]);
        ok[i] = (unsigned char)gcra_allows(p[i].tat, limit_tau(checks[i].limit), now_ns);
        done[i] = 0;
        if (!ok[i] && !checks[i].limit->dry_run && reject < 0)
            reject = (int)i;
    }
    if (reject >= 0) {
        if (!confirm(&p[reject]))
            goto restart;
        for (unsigned i = 0; i < n; i++)
            fill_out(&checks[i], p[i].tat, now_ns, ok[i]);
        return 0;
    }

    /* 2. All pass: advance each limit in order (a dry-run one only where it would allow). A lost
     * race re-evaluates that limit alone; if it now rejects, undo the ones already advanced. */
    for (unsigned i = 0; i < n; i++) {
        const sl_rl_limit_t *l = checks[i].limit;
        for (;;) {
            if (!ok[i]) {
                if (l->dry_run)
                    break;
                if (!confirm(&p[i])) {
                    locate(rl, h[i], now_ns, &p[i]);
                    ok[i] = (unsigned char)gcra_allows(p[i].tat, limit_tau(l), now_ns);
                    continue;
                }
                for (unsigned j = i; j-- > 0;) {
                    if (!done[j])
                        continue;
                    /* a new key rolls back to (key, 0), not to empty: slots never empty again */
                    slot_t back = p[j].old;
                    if (p[j].kind == P_EMPTY) {
                        back.w.key = h[j];
                        back.w.tat = 0;
                    }
                    if (cas(p[j].slot, next[j], back) && p[j].kind == P_EVICT)
                        __atomic_fetch_sub(&shard_of(rl, p[j].slot)->evictions, 1,
                                           __ATOMIC_RELAXED);
                }
                for (unsigned j = 0; j < n; j++)
                    fill_out(&checks[j], p[j].tat, now_ns, ok[j]);
                return 0;
            }
            uint64_t at = p[i].tat > now_ns ? p[i].tat : now_ns;
            next[i].w.key = h[i];
            next[i].w.tat = at + limit_t(l);
            if (cas(p[i].slot, p[i].old, next[i])) {
                done[i] = 1;
                if (p[i].kind == P_EMPTY)
                    __atomic_fetch_add(&shard_of(rl, p[i].slot)->size, 1, __ATOMIC_RELAXED);
                else if (p[i].kind == P_EVICT)
                    __atomic_fetch_add(&shard_of(rl, p[i].slot)->evictions, 1, __ATOMIC_RELAXED);
                break;
            }
            locate(rl, h[i], now_ns, &p[i]);
            ok[i] = (unsigned char)gcra_allows(p[i].tat, limit_tau(l), now_ns);
        }
    }
    for (unsigned i = 0; i < n; i++)
        fill_out(&checks[i], done[i] ? next[i].w.tat : p[i].tat, now_ns, ok[i]);
    return 1;
}

CAS16_TARGET int sl_rl_decide(sl_ratelimiter_t *rl, sl_rl_check_t *checks, unsigned n,
                              uint64_t now_ns)
{
    return n == 1 ? decide_one(rl, checks, now_ns) : decide_many(rl, checks, n, now_ns);
}
