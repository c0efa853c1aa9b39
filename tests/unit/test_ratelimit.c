/* test_ratelimit.c - GCRA limits on a fake clock: exact allow/deny sequences (nginx burst
 * semantics), RateLimit numbers, multi-limit atomicity, dry-run, huge and tiny rates, the
 * bounded table under a flood of keys, and exact counts with threads racing on one key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "../../src/policy/ratelimit.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1000 * SEC) /* fake clock start: any monotonic value */

static sl_rl_limit_t mk(uint32_t id, uint32_t count, uint64_t period_ms, int has_burst,
                        uint32_t burst, int dry_run)
{
    sl_rl_limit_t l;
    assert_int_equal(sl_rl_limit_init(&l, id, count, period_ms, has_burst, burst, dry_run), 0);
    return l;
}

/* One request for key against one limit; *out gets the filled check. */
static int req(sl_ratelimiter_t *rl, const sl_rl_limit_t *l, uint64_t key, uint64_t now,
               sl_rl_check_t *out)
{
    sl_rl_check_t c = {.limit = l, .key = key};
    int r = sl_rl_decide(rl, &c, 1, now);
    assert_int_equal(r, c.allowed || l->dry_run);
    if (out)
        *out = c;
    return r;
}

/* How many requests pass at one instant before the first rejection (bounded by max). */
static unsigned burst_at(sl_ratelimiter_t *rl, const sl_rl_limit_t *l, uint64_t key, uint64_t now,
                         unsigned max)
{
    unsigned n = 0;
    while (n < max && req(rl, l, key, now, NULL))
        n++;
    return n;
}

static void test_limit_init(void **state)
{
    (void)state;
    sl_rl_limit_t l;
    assert_int_equal(sl_rl_limit_init(&l, 1, 0, 1000, 0, 0, 0), SL_EINVAL);
    assert_int_equal(sl_rl_limit_init(&l, 1, 5, 0, 0, 0, 0), SL_EINVAL);
    assert_int_equal(sl_rl_limit_init(NULL, 1, 5, 1000, 0, 0, 0), SL_EINVAL);
    assert_int_equal(sl_rl_limit_init(&l, 1, 5, UINT64_MAX, 0, 0, 0), SL_EINVAL);

    l = mk(7, 5, 1000, 0, 0, 0); /* 5/second: N at once */
    assert_int_equal(l.t_ns, 200 * MS);
    assert_int_equal(l.tau_ns, 800 * MS);
    assert_int_equal(l.count, 5);
    assert_int_equal(l.id, 7);
    assert_int_equal(l.period_ms, 1000);
    assert_int_equal(l.dry_run, 0);
    l = mk(1, 5, 1000, 1, 0, 1); /* burst 0 */
    assert_int_equal(l.tau_ns, 0);
    assert_int_equal(l.dry_run, 1);
    l = mk(1, 10, 1000, 1, 20, 0); /* nginx's rate=10r/s burst=20 */
    assert_int_equal(l.t_ns, 100 * MS);
    assert_int_equal(l.tau_ns, 2 * SEC);
    l = mk(1, 1000000000u, 60000, 0, 0, 0);
    assert_int_equal(l.t_ns, 60);
    assert_int_equal(l.tau_ns, 999999999ull * 60);
    l = mk(1, 3, 1000, 0, 0, 0); /* rounded up: never more permissive */
    assert_int_equal(l.t_ns, 333333334);
    l = mk(1, 4000000000u, 1000, 0, 0, 0); /* past 1e9/s: T clamps to 1 ns */
    assert_int_equal(l.t_ns, 1);
    l = mk(1, 1, 86400000ull * 365, 1, UINT32_MAX, 0); /* 1/year, burst 2^32-1: tau saturates */
    assert_true(l.tau_ns <= UINT64_MAX >> 2);
}

static void test_n_per_second_no_burst(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    assert_non_null(rl);
    sl_rl_limit_t l = mk(1, 5, 1000, 0, 0, 0);
    sl_rl_check_t c;

    assert_int_equal(burst_at(rl, &l, 42, T0, 100), 5);
    assert_int_equal(req(rl, &l, 42, T0, &c), 0);
    assert_int_equal(c.retry_after_s, 1);
    /* then exactly one more every 200 ms */
    for (uint64_t k = 1; k <= 20; k++) {
        uint64_t at = T0 + k * 200 * MS;
        assert_int_equal(req(rl, &l, 42, at - 1, NULL), 0);
        assert_int_equal(burst_at(rl, &l, 42, at, 100), 1);
    }
    /* idle for a period: the full 5 again */
    assert_int_equal(burst_at(rl, &l, 42, T0 + 5 * SEC, 100), 5);
    sl_rl_free(rl);
}

static void test_burst_zero(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t l = mk(1, 5, 1000, 1, 0, 0);
    assert_int_equal(burst_at(rl, &l, 1, T0, 100), 1);
    assert_int_equal(req(rl, &l, 1, T0 + 199 * MS, NULL), 0);
    assert_int_equal(burst_at(rl, &l, 1, T0 + 200 * MS, 100), 1);
    assert_int_equal(burst_at(rl, &l, 1, T0 + 10 * SEC, 100), 1);
    sl_rl_free(rl);
}

static void test_nginx_burst(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t l = mk(1, 10, 1000, 1, 20, 0);
    sl_rl_check_t c;
    assert_int_equal(burst_at(rl, &l, 9, T0, 100), 21);
    assert_int_equal(req(rl, &l, 9, T0 + 99 * MS, &c), 0);
    assert_int_equal(burst_at(rl, &l, 9, T0 + 100 * MS, 100), 1);
    assert_int_equal(burst_at(rl, &l, 9, T0 + 1100 * MS, 100), 10);
    sl_rl_free(rl);
}

static void test_one_per_minute(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t l = mk(1, 1, 60000, 0, 0, 0);
    sl_rl_check_t c;
    assert_int_equal(req(rl, &l, 5, T0, &c), 1);
    assert_int_equal(c.remaining, 0);
    assert_int_equal(c.reset_s, 60);
    assert_int_equal(c.retry_after_s, 0);
    assert_int_equal(req(rl, &l, 5, T0, &c), 0);
    assert_int_equal(c.retry_after_s, 60);
    assert_int_equal(c.remaining, 0);
    assert_int_equal(c.reset_s, 60);
    assert_int_equal(req(rl, &l, 5, T0 + SEC, &c), 0);
    assert_int_equal(c.retry_after_s, 59);
    assert_int_equal(c.reset_s, 59);
    assert_int_equal(req(rl, &l, 5, T0 + 59 * SEC + 500 * MS, &c), 0);
    assert_int_equal(c.retry_after_s, 1);
    for (uint64_t s = 2; s < 60; s++) /* rejections charge nothing */
        assert_int_equal(req(rl, &l, 5, T0 + s * SEC, NULL), 0);
    assert_int_equal(req(rl, &l, 5, T0 + 60 * SEC - 1, NULL), 0);
    assert_int_equal(req(rl, &l, 5, T0 + 60 * SEC, &c), 1);
    assert_int_equal(req(rl, &l, 5, T0 + 60 * SEC, &c), 0);
    assert_int_equal(c.retry_after_s, 60);
    sl_rl_free(rl);
}

static void test_one_per_day(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t l = mk(1, 1, 86400000, 0, 0, 0);
    sl_rl_check_t c;
    assert_int_equal(req(rl, &l, 5, T0, &c), 1);
    assert_int_equal(c.reset_s, 86400);
    assert_int_equal(req(rl, &l, 5, T0 + 3600 * SEC, &c), 0);
    assert_int_equal(c.retry_after_s, 86400 - 3600);
    assert_int_equal(req(rl, &l, 5, T0 + 86400 * SEC - 1, &c), 0);
    assert_int_equal(c.retry_after_s, 1);
    assert_int_equal(req(rl, &l, 5, T0 + 86400 * SEC, &c), 1);
    /* 10/day with burst 1000: a far-future TAT stays exact */
    sl_rl_limit_t b = mk(2, 10, 86400000, 1, 1000, 0);
    assert_int_equal(burst_at(rl, &b, 6, T0, 5000), 1001);
    assert_int_equal(req(rl, &b, 6, T0, &c), 0);
    assert_int_equal(c.retry_after_s, 8640);
    assert_int_equal(c.reset_s, 1001ull * 8640);
    sl_rl_free(rl);
}

static void test_remaining_reset(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t l = mk(1, 100, 60000, 0, 0, 0);
    sl_rl_check_t c;
    for (unsigned i = 1; i <= 100; i++) {
        assert_int_equal(req(rl, &l, 3, T0, &c), 1);
        assert_int_equal(c.remaining, 100 - i);
        assert_int_equal(c.reset_s, (i * 600 + 999) / 1000); /* T = 600 ms */
        if (i == 1) {
            assert_int_equal(c.remaining, 99);
            assert_int_equal(c.reset_s, 1);
        } else if (i == 50) {
            assert_int_equal(c.remaining, 50);
            assert_int_equal(c.reset_s, 30);
        } else if (i == 100) {
            assert_int_equal(c.remaining, 0);
            assert_int_equal(c.reset_s, 60);
        }
    }
    assert_int_equal(req(rl, &l, 3, T0, &c), 0);
    assert_int_equal(c.remaining, 0);
    assert_int_equal(c.reset_s, 60);
    assert_int_equal(c.retry_after_s, 1); /* one request back after 600 ms */
    assert_int_equal(req(rl, &l, 3, T0 + 600 * MS, &c), 1);
    assert_int_equal(c.remaining, 0);
    /* 30 s idle drains half the bucket */
    assert_int_equal(req(rl, &l, 3, T0 + 30600 * MS, &c), 1);
    assert_int_equal(c.remaining, 49);
    assert_int_equal(c.reset_s, 31);
    sl_rl_free(rl);
}

static void test_multi_limit_atomic(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t a = mk(1, 2, 1000, 0, 0, 0);
    sl_rl_limit_t b = mk(2, 5, 1000, 0, 0, 0);
    sl_rl_limit_t g = mk(3, 1000, 1000, 0, 0, 0);
    sl_rl_check_t cs[2] = {{.limit = &a, .key = 77}, {.limit = &b, .key = 77}};

    assert_int_equal(sl_rl_decide(rl, cs, 2, T0), 1);
    assert_int_equal(sl_rl_decide(rl, cs, 2, T0), 1);
    assert_int_equal(cs[1].remaining, 3);
    for (int k = 0; k < 10; k++) { /* A rejects: nothing charged anywhere */
        assert_int_equal(sl_rl_decide(rl, cs, 2, T0), 0);
        assert_int_equal(cs[0].allowed, 0);
        assert_int_equal(cs[0].retry_after_s, 1);
        assert_int_equal(cs[1].allowed, 1);
        assert_int_equal(cs[1].remaining, 3);
        assert_int_equal(cs[1].retry_after_s, 0);
    }
    /* the order of checks does not matter */
    sl_rl_check_t rev[2] = {{.limit = &b, .key = 77}, {.limit = &a, .key = 77}};
    assert_int_equal(sl_rl_decide(rl, rev, 2, T0), 0);
    assert_int_equal(rev[0].allowed, 1);
    assert_int_equal(rev[1].allowed, 0);
    /* proof that B was never charged: with A replaced by a generous limit, exactly 3 more */
    sl_rl_check_t gb[2] = {{.limit = &g, .key = 77}, {.limit = &b, .key = 77}};
    for (int k = 0; k < 3; k++)
        assert_int_equal(sl_rl_decide(rl, gb, 2, T0), 1);
    assert_int_equal(sl_rl_decide(rl, gb, 2, T0), 0);
    assert_int_equal(gb[0].allowed, 1);
    assert_int_equal(gb[0].remaining, 997); /* G charged 3 times only */
    assert_int_equal(gb[1].allowed, 0);
    assert_int_equal(gb[1].retry_after_s, 1);
    sl_rl_free(rl);
}

/* One limit takes a path of its own (no multi-limit bookkeeping): over a random sequence of
 * keys and times its verdicts and numbers must equal the general path's for the same limit
 * (checked there beside a second, dry-run limit that never rejects). */
static void test_one_limit_path_matches_general(void **state)
{
    (void)state;
    const sl_rl_limit_t limits[] = {mk(1, 5, 1000, 0, 0, 0), mk(1, 10, 1000, 1, 3, 0),
                                    mk(1, 2, 60000, 1, 0, 0), mk(1, 3, 1000, 0, 0, 1)};
    sl_rl_limit_t shadow = mk(2, 1, 1000, 1, 0, 1);
    for (size_t li = 0; li < sizeof(limits) / sizeof(limits[0]); li++) {
        sl_ratelimiter_t *one = sl_rl_new(1 << 16), *many = sl_rl_new(1 << 16);
        assert_non_null(one);
        assert_non_null(many);
        uint64_t now = T0, x = 88172645463325252ull;
        for (int i = 0; i < 20000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += (x >> 40) % (50 * MS); /* 0..50 ms between requests */
            uint64_t key = x % 7;
            sl_rl_check_t a = {.limit = &limits[li], .key = key};
            sl_rl_check_t b[2] = {{.limit = &limits[li], .key = key}, {.limit = &shadow, .key = key}};
            int ra = sl_rl_decide(one, &a, 1, now);
            int rb = sl_rl_decide(many, b, 2, now);
            assert_int_equal(ra, rb);
            assert_int_equal(a.allowed, b[0].allowed);
            assert_int_equal(a.remaining, b[0].remaining);
            assert_int_equal(a.reset_s, b[0].reset_s);
            assert_int_equal(a.retry_after_s, b[0].retry_after_s);
        }
        sl_rl_free(one);
        sl_rl_free(many);
    }
}

static void test_same_key_two_limits(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t a = mk(1, 2, 1000, 0, 0, 0);
    sl_rl_limit_t b = mk(2, 2, 1000, 0, 0, 0);
    assert_int_equal(burst_at(rl, &a, 99, T0, 10), 2);
    assert_int_equal(burst_at(rl, &b, 99, T0, 10), 2); /* own entry */
    assert_int_equal(burst_at(rl, &a, 100, T0, 10), 2);
    assert_int_equal(sl_rl_size(rl), 3);
    assert_int_equal(sl_rl_evictions(rl), 0);
    sl_rl_free(rl);
}

static void test_dry_run(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t d = mk(1, 2, 1000, 0, 0, 1);
    sl_rl_limit_t e = mk(2, 3, 1000, 0, 0, 0);
    sl_rl_check_t c;
    static const int want[6] = {1, 1, 0, 0, 0, 0};
    for (int k = 0; k < 6; k++) {
        assert_int_equal(req(rl, &d, 8, T0, &c), 1); /* never rejects */
        assert_int_equal(c.allowed, want[k]);        /* but tells */
        if (!c.allowed)
            assert_int_equal(c.retry_after_s, 1);
    }
    /* would-be rejections charge nothing: at +500 ms one passes again, as if enforced */
    assert_int_equal(req(rl, &d, 8, T0 + 500 * MS, &c), 1);
    assert_int_equal(c.allowed, 1);
    assert_int_equal(req(rl, &d, 8, T0 + 500 * MS, &c), 1);
    assert_int_equal(c.allowed, 0);

    /* with an enforced limit: D counts only requests that pass */
    sl_rl_check_t cs[2] = {{.limit = &d, .key = 9}, {.limit = &e, .key = 9}};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(sl_rl_decide(rl, cs, 2, T0), 1);
        assert_int_equal(cs[0].allowed, k < 2);
        assert_int_equal(cs[1].allowed, 1);
    }
    assert_int_equal(sl_rl_decide(rl, cs, 2, T0), 0);
    assert_int_equal(cs[1].allowed, 0);
    sl_rl_free(rl);
}

static void test_huge_rate_same_ns(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t l = mk(1, 1000000000u, 60000, 0, 0, 0);
    sl_rl_check_t c = {0};
    for (unsigned i = 0; i < 1000000; i++) {
        c.limit = &l;
        c.key = 1;
        if (!sl_rl_decide(rl, &c, 1, T0))
            fail_msg("rejected request %u", i);
    }
    assert_int_equal(c.remaining, 1000000000ull - 1000000);
    assert_int_equal(c.reset_s, 1); /* TAT = now + 1e6 x 60 ns = 60 ms */
    /* ~100k req/s on a real clock pace: never rejects either */
    for (unsigned i = 0; i < 100000; i++)
        assert_int_equal(req(rl, &l, 2, T0 + (uint64_t)i * 10000, NULL), 1);
    sl_rl_free(rl);
}

static void test_flood_bounded(void **state)
{
    (void)state;
    const size_t max_keys = 10000;
    sl_ratelimiter_t *rl = sl_rl_new(max_keys);
    sl_rl_limit_t l = mk(1, 5, 1000, 0, 0, 0);
    sl_rl_limit_t slow = mk(2, 1, 60000, 0, 0, 0);
    const uint64_t flood = 1000000;

    /* heavy hitter: its TAT (+1 s) is larger than any one-shot key's (+200 ms) */
    assert_int_equal(burst_at(rl, &l, 0xfeed, T0, 100), 5);
    for (uint64_t k = 1; k <= flood; k++)
        assert_int_equal(req(rl, &l, k * 0x9e3779b97f4a7c15ull, T0, NULL), 1);
    uint64_t size = sl_rl_size(rl), ev = sl_rl_evictions(rl);
    assert_true(size >= max_keys);
    assert_true(size <= max_keys + 255); /* max_keys rounded up to whole shards */
    assert_int_equal(ev, flood + 1 - size);
    assert_int_equal(req(rl, &l, 0xfeed, T0, NULL), 0); /* kept: smallest TAT goes first */

    /* idle keys (TAT <= now) are reused first and are not evictions */
    uint64_t t1 = T0 + 10 * SEC;
    for (uint64_t k = 1; k <= flood; k++)
        assert_int_equal(req(rl, &l, (k + flood) * 0x9e3779b97f4a7c15ull, t1, NULL), 1);
    assert_true(sl_rl_evictions(rl) - ev < flood);
    assert_int_equal(sl_rl_size(rl), size); /* flat */
    /* 0xfeed went idle and may be gone: either way it has its full budget, like a new key */
    assert_int_equal(burst_at(rl, &l, 0xfeed, t1, 100), 5);

    /* an active key evicted by force (others hold later TATs) starts over: documented */
    uint64_t t2 = t1 + 10 * SEC;
    assert_int_equal(burst_at(rl, &l, 0xbeef, t2, 100), 5);
    for (uint64_t k = 1; k <= 200000; k++)
        assert_int_equal(req(rl, &slow, (k + 2 * flood) * 0x9e3779b97f4a7c15ull, t2, NULL), 1);
    assert_int_equal(burst_at(rl, &l, 0xbeef, t2, 100), 5);
    assert_true(sl_rl_size(rl) <= max_keys + 255);
    sl_rl_free(rl);
}

static void test_edges(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(0); /* clamped to one window */
    assert_non_null(rl);
    sl_rl_limit_t l = mk(1, 2, 1000, 0, 0, 0);
    assert_int_equal(sl_rl_decide(rl, NULL, 0, T0), 1);
    sl_rl_check_t many[17];
    for (int i = 0; i < 17; i++)
        many[i] = (sl_rl_check_t){.limit = &l, .key = (uint64_t)i};
    assert_int_equal(sl_rl_decide(rl, many, 17, T0), 0); /* n > 16: contract violation */
    assert_int_equal(sl_rl_size(rl), 0);
    assert_int_equal(sl_rl_decide(rl, many, 16, T0), 1); /* 16 keys, 8 slots: evictions */
    assert_true(sl_rl_size(rl) <= 8);
    assert_int_equal(sl_rl_evictions(rl), 8);
    /* same limit and key twice in one request: charged twice */
    sl_rl_check_t twice[2] = {{.limit = &l, .key = 1000}, {.limit = &l, .key = 1000}};
    assert_int_equal(sl_rl_decide(rl, twice, 2, T0), 1);
    assert_int_equal(twice[1].remaining, 0);
    assert_int_equal(sl_rl_decide(rl, twice, 2, T0), 0);
    sl_rl_free(rl);
    sl_rl_free(NULL);
}

/* Threads racing on one key at one instant of a fake clock. */
struct race {
    sl_ratelimiter_t *rl;
    sl_rl_check_t proto[2];
    unsigned n;
    unsigned iters;
    uint64_t keyspace; /* 0: one key; else distinct keys per thread (eviction races) */
    int first_only;    /* vary only the first check's key */
    unsigned tid;
    pthread_barrier_t *start;
    uint64_t allowed;
};

static void *race_run(void *arg)
{
    struct race *r = arg;
    pthread_barrier_wait(r->start);
    for (unsigned i = 0; i < r->iters; i++) {
        sl_rl_check_t cs[2];
        memcpy(cs, r->proto, sizeof(cs));
        if (r->keyspace) {
            cs[0].key = (i % r->keyspace) * 4 + r->tid;
            if (!r->first_only)
                cs[1].key = cs[0].key;
        }
        r->allowed += (uint64_t)sl_rl_decide(r->rl, cs, r->n, T0);
    }
    return NULL;
}

static uint64_t race(sl_ratelimiter_t *rl, const sl_rl_check_t *proto, unsigned n, unsigned iters,
                     uint64_t keyspace, int first_only)
{
    enum { NT = 4 };
    pthread_t th[NT];
    struct race r[NT];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NT);
    for (unsigned t = 0; t < NT; t++) {
        r[t] = (struct race){.rl = rl,
                             .n = n,
                             .iters = iters,
                             .keyspace = keyspace,
                             .tid = t,
                             .first_only = first_only,
                             .start = &start};
        memcpy(r[t].proto, proto, n * sizeof(*proto));
        assert_int_equal(pthread_create(&th[t], NULL, race_run, &r[t]), 0);
    }
    uint64_t total = 0;
    for (unsigned t = 0; t < NT; t++) {
        pthread_join(th[t], NULL);
        total += r[t].allowed;
    }
    pthread_barrier_destroy(&start);
    return total;
}

static void test_concurrent_one_key(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(1024);
    sl_rl_limit_t l = mk(1, 1000, 1000, 0, 0, 0);
    sl_rl_check_t c = {.limit = &l, .key = 4242};
    assert_int_equal(race(rl, &c, 1, 50000, 0, 0), 1000);

    /* two limits, the binding one last: exactly its quota passes */
    sl_rl_limit_t a = mk(2, 1000, 1000, 0, 0, 0);
    sl_rl_limit_t b = mk(3, 600, 1000, 0, 0, 0);
    sl_rl_check_t ab[2] = {{.limit = &a, .key = 5}, {.limit = &b, .key = 5}};
    assert_int_equal(race(rl, ab, 2, 50000, 0, 0), 600);
    /* A was charged for those 600, plus at most one per failed rollback (documented) */
    sl_rl_check_t probe = {.limit = &a, .key = 5};
    sl_rl_decide(rl, &probe, 1, T0);
    assert_true(probe.remaining <= 1000 - 601);
    print_message("A over-charged by %llu under contention\n",
                  (unsigned long long)(1000 - 601 - probe.remaining));
    sl_rl_free(rl);
}

static void test_concurrent_evictions(void **state)
{
    (void)state;
    sl_ratelimiter_t *rl = sl_rl_new(64);
    sl_rl_limit_t a = mk(1, 3, 1000, 0, 0, 0);
    sl_rl_limit_t b = mk(2, 1000, 1000, 0, 0, 0);
    sl_rl_check_t ab[2] = {{.limit = &a}, {.limit = &b}};
    uint64_t ok = race(rl, ab, 2, 200000, 5000, 0);
    assert_true(ok > 0);
    assert_true(sl_rl_size(rl) <= 64);
    assert_true(sl_rl_evictions(rl) > 0);
    sl_rl_free(rl);
}

/* A fresh key under A on every request, one shared key under B: a lost race on B rolls back
 * A's insertion (into an empty slot, or over an evicted entry in a small table). B's entry
 * survives the flood because A's one-shot entries hold smaller TATs and go first. */
static void test_concurrent_rollback_inserts(void **state)
{
    (void)state;
    for (int small = 0; small < 2; small++) {
        sl_ratelimiter_t *rl = sl_rl_new(small ? 64 : 1 << 20);
        sl_rl_limit_t a = mk(1, 1000000000u, 60000, 0, 0, 0); /* one-shot keys: tiny TATs */
        sl_rl_limit_t b = mk(2, 2000, 1000, 0, 0, 0);
        sl_rl_check_t ab[2] = {{.limit = &a}, {.limit = &b, .key = 1}};
        assert_int_equal(race(rl, ab, 2, 100000, 100000, 1), 2000);
        uint64_t size = sl_rl_size(rl);
        assert_true(size <= (small ? 64u : (1u << 20) + 255));
        if (small)
            assert_true(sl_rl_evictions(rl) > 0);
        sl_rl_free(rl);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_init),
        cmocka_unit_test(test_n_per_second_no_burst),
        cmocka_unit_test(test_burst_zero),
        cmocka_unit_test(test_nginx_burst),
        cmocka_unit_test(test_one_per_minute),
        cmocka_unit_test(test_one_per_day),
        cmocka_unit_test(test_remaining_reset),
        cmocka_unit_test(test_multi_limit_atomic),
        cmocka_unit_test(test_one_limit_path_matches_general),
        cmocka_unit_test(test_same_key_two_limits),
        cmocka_unit_test(test_dry_run),
        cmocka_unit_test(test_huge_rate_same_ns),
        cmocka_unit_test(test_flood_bounded),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_concurrent_one_key),
        cmocka_unit_test(test_concurrent_evictions),
        cmocka_unit_test(test_concurrent_rollback_inserts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
