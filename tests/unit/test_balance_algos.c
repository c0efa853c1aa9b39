/* test_balance_algos.c - least_conn, random_two and hash (Maglev): choice, weights,
 * usability (health, draining, passive down, tried), growth and key movement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/balance.h"

#define CAP 8
#define NOW 1000000

/* A pool of n servers (cap CAP) with the given weights, all UP, 2 threads. */
static sl_pool_t *make_pool(const sl_balancer_ops_t *ops, uint32_t n, const uint32_t *weights)
{
    sl_pool_t *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->slots = calloc(CAP, sizeof(sl_server_t));
    assert_non_null(p->slots);
    p->cap = CAP;
    p->nthreads = 2;
    p->ops = ops;
    for (uint32_t i = 0; i < CAP; i++) {
        sl_server_t *s = &p->slots[i];
        s->index = i;
        s->id = 100 + i;
        s->state = SL_SRV_UP;
        s->conf.weight = i < n ? weights[i] : 1;
        snprintf(s->conf.addr.text, sizeof(s->conf.addr.text), "10.0.0.%u:8080", i + 1);
    }
    p->n = n;
    assert_int_equal(ops->init(p), 0);
    return p;
}

static void free_pool(sl_pool_t *p)
{
    p->ops->destroy(p);
    assert_null(p->state);
    free(p->slots);
    free(p);
}

static sl_pick_t ctx_at(int thread)
{
    return (sl_pick_t){.thread = thread, .now_ms = NOW};
}

static int pick_index(sl_pool_t *p, const sl_pick_t *ctx)
{
    sl_server_t *s = p->ops->pick(p, ctx);
    return s ? (int)s->index : -1;
}

/* The ways a server can be unusable, applied to slot i. */
static void make_unusable(sl_pool_t *p, uint32_t i, int how)
{
    sl_server_t *s = &p->slots[i];
    switch (how) {
    case 0:
        s->state = SL_SRV_CHECKING;
        break;
    case 1:
        s->state = SL_SRV_DRAINING;
        break;
    case 2:
        s->down_until_ms = NOW + 5000;
        break;
    default:
        s->state = SL_SRV_REMOVED;
        break;
    }
}

static void make_usable(sl_pool_t *p, uint32_t i)
{
    p->slots[i].state = SL_SRV_UP;
    p->slots[i].down_until_ms = 0;
}

/* ---- least_conn ------------------------------------------------------------------ */

static void test_lc_least_loaded(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_least_conn, 3, w);
    sl_pick_t c = ctx_at(0);
    p->slots[0].inflight = 5;
    p->slots[1].inflight = 2;
    p->slots[2].inflight = 7;
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick_index(p, &c), 1);
    c.thread = 1;
    assert_int_equal(pick_index(p, &c), 1);
    free_pool(p);
}

static void test_lc_per_weight(void **state)
{
    (void)state;
    const uint32_t w[3] = {3, 1, 2};
    sl_pool_t *p = make_pool(&sl_balance_least_conn, 3, w);
    sl_pick_t c = ctx_at(0);
    /* 6/3 = 2 < 3/1 and 5/2: slot 0 has the most requests but the least per weight. */
    p->slots[0].inflight = 6;
    p->slots[1].inflight = 3;
    p->slots[2].inflight = 5;
    for (int i = 0; i < 6; i++)
        assert_int_equal(pick_index(p, &c), 0);
    /* 7/3 > 4/2 = 2 < 3/1 */
    p->slots[0].inflight = 7;
    p->slots[2].inflight = 4;
    assert_int_equal(pick_index(p, &c), 2);
    free_pool(p);
}

/* Requests released at once (all counts stay 0): ties everywhere, so the split follows
 * the weights exactly, on every thread. */
static void test_lc_idle_follows_weights(void **state)
{
    (void)state;
    const uint32_t w[3] = {3, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_least_conn, 3, w);
    for (int t = 0; t < 2; t++) {
        sl_pick_t c = ctx_at(t);
        int count[3] = {0};
        for (int i = 0; i < 500; i++)
            count[pick_index(p, &c)]++;
        assert_int_equal(count[0], 300);
        assert_int_equal(count[1], 100);
        assert_int_equal(count[2], 100);
    }
    free_pool(p);
}

/* The proxy's use: a pick adds to the server's count and the request stays in flight. The
 * counts then grow in proportion to the weights. */
static void test_lc_load_follows_weights(void **state)
{
    (void)state;
    const uint32_t w[3] = {2, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_least_conn, 3, w);
    sl_pick_t c = ctx_at(1);
    for (int i = 0; i < 400; i++) {
        sl_server_t *s = p->ops->pick(p, &c);
        __atomic_add_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
    }
    assert_int_equal(p->slots[0].inflight, 200);
    assert_int_equal(p->slots[1].inflight, 100);
    assert_int_equal(p->slots[2].inflight, 100);
    free_pool(p);
}

static void test_lc_threads_start_apart(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_least_conn, 3, w);
    sl_pick_t c0 = ctx_at(0), c1 = ctx_at(1);
    assert_int_not_equal(pick_index(p, &c0), pick_index(p, &c1));
    /* Equal servers share an idle worker's requests in turn. */
    int count[3] = {0};
    for (int i = 0; i < 300; i++)
        count[pick_index(p, &c0)]++;
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
    free_pool(p);
}

static void test_lc_skips_unusable(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    for (int how = 0; how < 4; how++) {
        sl_pool_t *p = make_pool(&sl_balance_least_conn, 3, w);
        sl_pick_t c = ctx_at(0);
        p->slots[1].inflight = 3;
        p->slots[2].inflight = 9;
        make_unusable(p, 0, how); /* the least loaded */
        for (int i = 0; i < 5; i++)
            assert_int_equal(pick_index(p, &c), 1);
        make_unusable(p, 1, how);
        assert_int_equal(pick_index(p, &c), 2);
        make_unusable(p, 2, how);
        assert_null(p->ops->pick(p, &c));
        free_pool(p);
    }
}

static void test_lc_down_period_over_and_tried(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_least_conn, 3, w);
    sl_pick_t c = ctx_at(0);
    p->slots[1].inflight = 3;
    p->slots[2].inflight = 9;
    p->slots[0].down_until_ms = NOW; /* its down period has ended */
    assert_int_equal(pick_index(p, &c), 0);
    c.tried[c.ntried++] = &p->slots[0];
    assert_int_equal(pick_index(p, &c), 1);
    c.tried[c.ntried++] = &p->slots[1];
    assert_int_equal(pick_index(p, &c), 2);
    c.tried[c.ntried++] = &p->slots[2];
    assert_null(p->ops->pick(p, &c));
    free_pool(p);
}

static void test_lc_growth_and_empty(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_least_conn, 0, w);
    sl_pick_t c = ctx_at(0);
    assert_null(p->ops->pick(p, &c));
    p->slots[0].inflight = 4;
    __atomic_store_n(&p->n, 1, __ATOMIC_RELEASE);
    assert_int_equal(pick_index(p, &c), 0);
    __atomic_store_n(&p->n, 2, __ATOMIC_RELEASE); /* a server added at run time, idle */
    for (int i = 0; i < 4; i++)
        assert_int_equal(pick_index(p, &c), 1);
    /* A caller that is not a worker still gets an answer. */
    c.thread = 7;
    assert_int_equal(pick_index(p, &c), 1);
    free_pool(p);
}

/* ---- random_two ------------------------------------------------------------------ */

static void test_p2c_distribution_follows_weights(void **state)
{
    (void)state;
    const uint32_t w[3] = {3, 2, 1};
    sl_pool_t *p = make_pool(&sl_balance_random_two, 3, w);
    for (int t = 0; t < 2; t++) {
        sl_pick_t c = ctx_at(t);
        int count[3] = {0};
        for (int i = 0; i < 30000; i++)
            count[pick_index(p, &c)]++;
        assert_in_range(count[0], 15000 - 900, 15000 + 900);
        assert_in_range(count[1], 10000 - 900, 10000 + 900);
        assert_in_range(count[2], 5000 - 900, 5000 + 900);
    }
    free_pool(p);
}

static void test_p2c_prefers_less_loaded(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_random_two, 3, w);
    sl_pick_t c = ctx_at(0);
    p->slots[0].inflight = 0;
    p->slots[1].inflight = 5;
    p->slots[2].inflight = 10;
    int count[3] = {0};
    for (int i = 0; i < 30000; i++)
        count[pick_index(p, &c)]++;
    /* The most loaded never wins a draw; the least loaded wins every draw it is in (2/3). */
    assert_int_equal(count[2], 0);
    assert_in_range(count[0], 20000 - 900, 20000 + 900);
    free_pool(p);

    /* Per weight: 4/2 = 2 < 3/1, so slot 0 wins every time. */
    const uint32_t w2[2] = {2, 1};
    p = make_pool(&sl_balance_random_two, 2, w2);
    p->slots[0].inflight = 4;
    p->slots[1].inflight = 3;
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick_index(p, &c), 0);
    free_pool(p);
}

static void test_p2c_load_evens_out(void **state)
{
    (void)state;
    const uint32_t w[4] = {1, 1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_random_two, 4, w);
    sl_pick_t c = ctx_at(1);
    for (int i = 0; i < 4000; i++) {
        sl_server_t *s = p->ops->pick(p, &c);
        __atomic_add_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < 4; i++) /* two choices keep the gap tiny (log log n) */
        assert_in_range(p->slots[i].inflight, 995, 1005);
    free_pool(p);
}

static void test_p2c_skips_unusable(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    for (int how = 0; how < 4; how++) {
        sl_pool_t *p = make_pool(&sl_balance_random_two, 3, w);
        sl_pick_t c = ctx_at(0);
        make_unusable(p, 0, how);
        int count[3] = {0};
        for (int i = 0; i < 1000; i++)
            count[pick_index(p, &c)]++;
        assert_int_equal(count[0], 0);
        assert_in_range(count[1], 400, 600);
        make_unusable(p, 1, how);
        for (int i = 0; i < 10; i++)
            assert_int_equal(pick_index(p, &c), 2);
        c.tried[c.ntried++] = &p->slots[2];
        assert_null(p->ops->pick(p, &c));
        c.ntried = 0;
        make_unusable(p, 2, how);
        assert_null(p->ops->pick(p, &c));
        make_usable(p, 0);
        assert_int_equal(pick_index(p, &c), 0);
        /* Not a worker: still an answer. */
        c.thread = -1;
        assert_int_equal(pick_index(p, &c), 0);
        free_pool(p);
    }
}

static void test_p2c_empty_and_growth(void **state)
{
    (void)state;
    const uint32_t w[1] = {1};
    sl_pool_t *p = make_pool(&sl_balance_random_two, 0, w);
    sl_pick_t c = ctx_at(0);
    assert_null(p->ops->pick(p, &c));
    for (uint32_t n = 1; n <= CAP; n++) {
        __atomic_store_n(&p->n, n, __ATOMIC_RELEASE);
        int seen[CAP] = {0};
        for (int i = 0; i < 400; i++)
            seen[pick_index(p, &c)]++;
        for (uint32_t i = 0; i < n; i++)
            assert_true(seen[i] > 0);
    }
    free_pool(p);
}

/* ---- hash ------------------------------------------------------------------------ */

#define NKEYS 10000
/* Maglev is not perfectly minimal: a rebuild also moves a few keys between servers that
 * stayed (the paper's "disruption"; measured here 0.01-0.3% of keys for 2-8 servers in a
 * 65537-entry table). Tests allow 0.5% of keys to stray so. */
#define MAX_STRAY (NKEYS / 200)

static sl_pick_t key_ctx(int k)
{
    char key[32];
    int len = snprintf(key, sizeof(key), "user-%d", k);
    sl_pick_t c = ctx_at(k & 1);
    c.hash = sl_hash_bytes(key, (size_t)len);
    return c;
}

static void map_keys(sl_pool_t *p, int *out)
{
    for (int k = 0; k < NKEYS; k++) {
        sl_pick_t c = key_ctx(k);
        out[k] = pick_index(p, &c);
    }
}

static void count_keys(const int *map, int *count, int n)
{
    memset(count, 0, (size_t)n * sizeof(*count));
    for (int k = 0; k < NKEYS; k++) {
        assert_in_range(map[k], 0, n - 1);
        count[map[k]]++;
    }
}

static void test_hash_same_key_same_server(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_hash, 3, w);
    static int a[NKEYS], b[NKEYS];
    map_keys(p, a);
    map_keys(p, b);
    assert_memory_equal(a, b, sizeof(a));
    /* Another pool with the same servers (another gateway) agrees. */
    sl_pool_t *q = make_pool(&sl_balance_hash, 3, w);
    map_keys(q, b);
    assert_memory_equal(a, b, sizeof(a));
    /* changed() with nothing changed keeps the mapping. */
    p->ops->changed(p);
    map_keys(p, b);
    assert_memory_equal(a, b, sizeof(a));
    free_pool(q);
    free_pool(p);
}

static void test_hash_balanced(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_hash, 3, w);
    static int map[NKEYS];
    int count[3];
    map_keys(p, map);
    count_keys(map, count, 3);
    for (int i = 0; i < 3; i++)
        assert_in_range(count[i], 3333 - 300, 3333 + 300);
    free_pool(p);
}

static void test_hash_weights(void **state)
{
    (void)state;
    const uint32_t w[3] = {2, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_hash, 3, w);
    static int map[NKEYS];
    int count[3];
    map_keys(p, map);
    count_keys(map, count, 3);
    assert_in_range(count[0], 5000 - 300, 5000 + 300);
    assert_in_range(count[1], 2500 - 300, 2500 + 300);
    assert_in_range(count[2], 2500 - 300, 2500 + 300);
    free_pool(p);
}

static void test_hash_add_server(void **state)
{
    (void)state;
    const uint32_t w[4] = {1, 1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_hash, 3, w);
    static int before[NKEYS], after[NKEYS];
    map_keys(p, before);
    __atomic_store_n(&p->n, 4, __ATOMIC_RELEASE);
    p->ops->changed(p);
    map_keys(p, after);
    int moved = 0, to_new = 0;
    for (int k = 0; k < NKEYS; k++)
        if (before[k] != after[k]) {
            moved++;
            to_new += after[k] == 3;
        }
    assert_in_range(moved, NKEYS * 20 / 100, NKEYS * 30 / 100);
    assert_in_range(moved - to_new, 0, MAX_STRAY);
    /* and the new server took a fair share from each old one */
    int from[3] = {0};
    for (int k = 0; k < NKEYS; k++)
        if (after[k] == 3)
            from[before[k]]++;
    for (int i = 0; i < 3; i++)
        assert_in_range(from[i], to_new / 3 - 200, to_new / 3 + 200);
    free_pool(p);
}

static void test_hash_remove_server(void **state)
{
    (void)state;
    const uint32_t w[4] = {1, 1, 1, 1};
    for (uint32_t gone = 0; gone < 4; gone++) {
        for (int how = 1; how <= 3; how += 2) { /* DRAINING, then REMOVED */
            sl_pool_t *p = make_pool(&sl_balance_hash, 4, w);
            static int before[NKEYS], after[NKEYS];
            map_keys(p, before);
            make_unusable(p, gone, how);
            p->ops->changed(p);
            map_keys(p, after);
            int moved = 0, had = 0, stray = 0, got[4] = {0};
            for (int k = 0; k < NKEYS; k++) {
                had += before[k] == (int)gone;
                assert_int_not_equal(after[k], (int)gone);
                if (before[k] != after[k]) {
                    moved++;
                    got[after[k]]++;
                    stray += before[k] != (int)gone; /* (nearly) only its keys move */
                }
            }
            assert_in_range(stray, 0, MAX_STRAY);
            assert_int_equal(moved - stray, had);
            for (uint32_t i = 0; i < 4; i++) /* and they spread over the rest */
                if (i != gone)
                    assert_in_range(got[i], had / 3 - 250, had / 3 + 250);
            free_pool(p);
        }
    }
}

static void test_hash_down_server_returns(void **state)
{
    (void)state;
    const uint32_t w[4] = {1, 1, 1, 1};
    for (int how = 0; how <= 2; how += 2) { /* CHECKING (active), passively down */
        sl_pool_t *p = make_pool(&sl_balance_hash, 4, w);
        static int before[NKEYS], during[NKEYS], after[NKEYS];
        map_keys(p, before);
        make_unusable(p, 2, how);
        map_keys(p, during);
        int moved = 0, got[4] = {0};
        for (int k = 0; k < NKEYS; k++) {
            if (before[k] == 2) {
                moved++;
                got[during[k]]++;
            } else {
                assert_int_equal(during[k], before[k]);
            }
        }
        assert_int_equal(got[2], 0);
        for (int i = 0; i < 4; i++)
            if (i != 2)
                assert_in_range(got[i], moved / 3 - 250, moved / 3 + 250);
        make_usable(p, 2);
        map_keys(p, after);
        assert_memory_equal(before, after, sizeof(before));
        free_pool(p);
    }
}

/* A retry (the first server in the tried list) goes to another server, the same one for
 * every worker; with every server tried or down there is none. */
static void test_hash_tried_and_none(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_hash, 3, w);
    for (int k = 0; k < 100; k++) {
        sl_pick_t c = key_ctx(k);
        sl_server_t *first = p->ops->pick(p, &c);
        c.tried[c.ntried++] = first;
        sl_server_t *second = p->ops->pick(p, &c);
        assert_non_null(second);
        assert_ptr_not_equal(second, first);
        c.thread ^= 1;
        assert_ptr_equal(p->ops->pick(p, &c), second);
        c.tried[c.ntried++] = second;
        sl_server_t *third = p->ops->pick(p, &c);
        assert_non_null(third);
        assert_ptr_not_equal(third, first);
        assert_ptr_not_equal(third, second);
        c.tried[c.ntried++] = third;
        assert_null(p->ops->pick(p, &c));
    }
    for (uint32_t i = 0; i < 3; i++)
        make_unusable(p, i, 2);
    sl_pick_t c = key_ctx(1);
    assert_null(p->ops->pick(p, &c));
    free_pool(p);
}

/* Membership over a pool's life: empty, grown one by one, all removed, one added back;
 * several tables retired in between (freed by destroy: ASan sees any leak). */
static void test_hash_membership_life(void **state)
{
    (void)state;
    const uint32_t w[1] = {1};
    sl_pool_t *p = make_pool(&sl_balance_hash, 0, w);
    sl_pick_t c = key_ctx(5);
    assert_null(p->ops->pick(p, &c));
    static int prev[NKEYS], cur[NKEYS];
    for (uint32_t n = 1; n <= 6; n++) {
        __atomic_store_n(&p->n, n, __ATOMIC_RELEASE);
        /* Before changed(), the new server has no entries: nothing breaks. */
        if (n == 1)
            assert_null(p->ops->pick(p, &c));
        else
            assert_in_range(pick_index(p, &c), 0, (int)n - 2);
        p->ops->changed(p);
        map_keys(p, cur);
        int count[CAP] = {0}, stray = 0;
        for (int k = 0; k < NKEYS; k++) {
            count[cur[k]]++;
            stray += n > 1 && cur[k] != prev[k] && cur[k] != (int)n - 1;
        }
        assert_in_range(stray, 0, MAX_STRAY);
        for (uint32_t i = 0; i < n; i++)
            assert_in_range(count[i], NKEYS / (int)n - 300, NKEYS / (int)n + 300);
        memcpy(prev, cur, sizeof(cur));
    }
    for (uint32_t i = 0; i < 6; i++) {
        make_unusable(p, i, 3);
        p->ops->changed(p);
    }
    assert_null(p->ops->pick(p, &c));
    __atomic_store_n(&p->n, 7, __ATOMIC_RELEASE);
    p->ops->changed(p);
    assert_int_equal(pick_index(p, &c), 6);
    free_pool(p);
}

/* A server keeps its entries whatever slot it is in: its address decides them. */
static void test_hash_follows_addresses(void **state)
{
    (void)state;
    const uint32_t w[3] = {1, 1, 1};
    sl_pool_t *p = make_pool(&sl_balance_hash, 3, w);
    sl_pool_t *q = make_pool(&sl_balance_hash, 0, w);
    /* q holds p's servers in reverse slot order. */
    for (uint32_t i = 0; i < 3; i++)
        memcpy(q->slots[i].conf.addr.text, p->slots[2 - i].conf.addr.text,
               sizeof(q->slots[i].conf.addr.text));
    __atomic_store_n(&q->n, 3, __ATOMIC_RELEASE);
    q->ops->changed(q);
    for (int k = 0; k < 1000; k++) {
        sl_pick_t c = key_ctx(k);
        assert_string_equal(p->ops->pick(p, &c)->conf.addr.text,
                            q->ops->pick(q, &c)->conf.addr.text);
    }
    free_pool(q);
    free_pool(p);
}

static void test_hash_bytes(void **state)
{
    (void)state;
    assert_true(sl_hash_bytes("abc", 3) == sl_hash_bytes("abc", 3));
    assert_true(sl_hash_bytes("abc", 3) != sl_hash_bytes("abd", 3));
    assert_true(sl_hash_bytes("a", 1) != sl_hash_bytes("aa", 2));
    assert_true(sl_hash_bytes("", 0) != sl_hash_bytes("\0", 1));
    assert_true(sl_hash_bytes(NULL, 0) == sl_hash_bytes("", 0));
    /* Avalanche: flipping one input bit flips about half the output bits, at every
     * length (each path through the tail code and the 16-byte loop). */
    unsigned char buf[40];
    for (size_t len = 1; len <= sizeof(buf); len++) {
        long flips = 0, trials = 0;
        for (int r = 0; r < 20; r++) {
            for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char)(r * 131 + i * 7 + len);
            uint64_t h = sl_hash_bytes(buf, len);
            for (size_t bit = 0; bit < len * 8; bit++) {
                buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
                flips += __builtin_popcountll(h ^ sl_hash_bytes(buf, len));
                trials++;
                buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            }
        }
        double mean = (double)flips / (double)trials;
        assert_true(mean > 30.0 && mean < 34.0);
    }
    /* Sequential keys (IPv4 addresses) spread over a small table evenly. */
    int bucket[7] = {0};
    for (uint32_t ip = 0x0a000000; ip < 0x0a000000 + 70000; ip++)
        bucket[sl_hash_bytes(&ip, sizeof(ip)) % 7]++;
    for (int i = 0; i < 7; i++)
        assert_in_range(bucket[i], 10000 - 400, 10000 + 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lc_least_loaded),
        cmocka_unit_test(test_lc_per_weight),
        cmocka_unit_test(test_lc_idle_follows_weights),
        cmocka_unit_test(test_lc_load_follows_weights),
        cmocka_unit_test(test_lc_threads_start_apart),
        cmocka_unit_test(test_lc_skips_unusable),
        cmocka_unit_test(test_lc_down_period_over_and_tried),
        cmocka_unit_test(test_lc_growth_and_empty),
        cmocka_unit_test(test_p2c_distribution_follows_weights),
        cmocka_unit_test(test_p2c_prefers_less_loaded),
        cmocka_unit_test(test_p2c_load_evens_out),
        cmocka_unit_test(test_p2c_skips_unusable),
        cmocka_unit_test(test_p2c_empty_and_growth),
        cmocka_unit_test(test_hash_same_key_same_server),
        cmocka_unit_test(test_hash_balanced),
        cmocka_unit_test(test_hash_weights),
        cmocka_unit_test(test_hash_add_server),
        cmocka_unit_test(test_hash_remove_server),
        cmocka_unit_test(test_hash_down_server_returns),
        cmocka_unit_test(test_hash_tried_and_none),
        cmocka_unit_test(test_hash_membership_life),
        cmocka_unit_test(test_hash_follows_addresses),
        cmocka_unit_test(test_hash_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
