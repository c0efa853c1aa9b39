/* test_balance.c - smooth weighted round robin: order, weights, exclusion, per-thread state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../src/proxy/balance.h"

static sl_server_t servers[8];

static sl_pool_t make_pool(uint32_t n, const uint32_t *weights, int nthreads)
{
    sl_pool_t p = {.slots = servers, .n = n, .cap = 8, .nthreads = nthreads,
                   .ops = &sl_balance_round_robin};
    for (uint32_t i = 0; i < n; i++) {
        memset(&servers[i], 0, sizeof(servers[i]));
        servers[i].conf.weight = weights[i];
        servers[i].index = i;
    }
    assert_int_equal(p.ops->init(&p), 0);
    return p;
}

static sl_server_t *pick(sl_pool_t *p, int thread, uint64_t exclude)
{
    sl_pick_t ctx = {.thread = thread};
    for (uint32_t i = 0; i < p->n; i++)
        if ((exclude >> i) & 1)
            ctx.tried[ctx.ntried++] = &servers[i];
    return p->ops->pick(p, &ctx);
}

static void test_smooth_order(void **state)
{
    (void)state;
    uint32_t w[3] = {5, 1, 1};
    sl_pool_t p = make_pool(3, w, 1);
    /* nginx's documented sequence for weights 5,1,1: a a b a c a a */
    const int want[7] = {0, 0, 1, 0, 2, 0, 0};
    for (int i = 0; i < 7; i++)
        assert_int_equal(pick(&p, 0, 0)->index, want[i]);
    p.ops->destroy(&p);
}

static void test_weights_over_many(void **state)
{
    (void)state;
    uint32_t w[3] = {3, 2, 1};
    sl_pool_t p = make_pool(3, w, 2);
    int count[3] = {0};
    for (int i = 0; i < 600; i++)
        count[pick(&p, 1, 0)->index]++;
    assert_int_equal(count[0], 300);
    assert_int_equal(count[1], 200);
    assert_int_equal(count[2], 100);
    p.ops->destroy(&p);
}

static void test_exclude(void **state)
{
    (void)state;
    uint32_t w[3] = {1, 1, 1};
    sl_pool_t p = make_pool(3, w, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick(&p, 0, 1u | 4u)->index, 1);
    assert_null(pick(&p, 0, 7u));
    p.ops->destroy(&p);
}

static void test_threads_start_apart(void **state)
{
    (void)state;
    uint32_t w[3] = {1, 1, 1};
    sl_pool_t p = make_pool(3, w, 3);
    /* Each thread starts at a different point, so first picks spread out. */
    int a = (int)pick(&p, 0, 0)->index;
    int b = (int)pick(&p, 1, 0)->index;
    int c = (int)pick(&p, 2, 0)->index;
    assert_true(a != b && b != c && a != c);
    p.ops->destroy(&p);
}

static void test_states_and_growth(void **state)
{
    (void)state;
    uint32_t w[3] = {1, 1, 1};
    sl_pool_t p = make_pool(2, w, 1);
    /* a server that is checking, draining or passively down gets nothing */
    servers[0].state = SL_SRV_CHECKING;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pick(&p, 0, 0)->index, 1);
    servers[0].state = SL_SRV_UP;
    servers[1].down_until_ms = UINT64_MAX;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pick(&p, 0, 0)->index, 0);
    servers[1].down_until_ms = 0;
    /* a slot filled at run time joins the cycle */
    memset(&servers[2], 0, sizeof(servers[2]));
    servers[2].conf.weight = 1;
    servers[2].index = 2;
    p.n = 3;
    int seen[3] = {0};
    for (int i = 0; i < 9; i++)
        seen[pick(&p, 0, 0)->index]++;
    assert_int_equal(seen[0], 3);
    assert_int_equal(seen[1], 3);
    assert_int_equal(seen[2], 3);
    p.ops->destroy(&p);
}

static void test_single_server(void **state)
{
    (void)state;
    uint32_t w[1] = {7};
    sl_pool_t p = make_pool(1, w, 1);
    assert_int_equal(pick(&p, 0, 0)->index, 0);
    assert_null(pick(&p, 0, 1));
    p.ops->destroy(&p);
    assert_ptr_equal(sl_balancer_for(SL_BALANCE_ROUND_ROBIN), &sl_balance_round_robin);
    assert_null(sl_balancer_for(99));
    assert_ptr_equal(sl_balancer_for(SL_BALANCE_HASH), &sl_balance_hash);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smooth_order),     cmocka_unit_test(test_weights_over_many),
        cmocka_unit_test(test_exclude),          cmocka_unit_test(test_threads_start_apart),
        cmocka_unit_test(test_single_server),    cmocka_unit_test(test_states_and_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
