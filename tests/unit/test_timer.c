/* test_timer.c - coarse deadlines: expiry, clearing, and expiry that unlinks neighbours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/core/timer.h"

typedef struct item {
    sl_timed_t t;
    int fired;
    struct item *victim; /* unlinked by this item's expiry (a cascade) */
} item_t;

static void on_expire(sl_timed_t *t)
{
    item_t *it = (item_t *)t;
    it->fired++;
    sl_timed_unlink(t);
    if (it->victim)
        sl_timed_unlink(&it->victim->t);
}

static void stop_loop(uv_timer_t *h)
{
    uv_stop(h->loop);
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_loop, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void test_expiry_and_cascade(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_timers_t ts;
    assert_int_equal(sl_timers_init(&ts, &loop), 0);
    item_t a = {0}, b = {0}, c = {0}, d = {0};
    sl_timed_link(&ts, &a.t, on_expire);
    sl_timed_link(&ts, &b.t, on_expire);
    sl_timed_link(&ts, &c.t, on_expire);
    sl_timed_link(&ts, &d.t, on_expire);
    /* List order is d c b a; c's expiry unlinks b, the next entry the walk would visit. */
    c.victim = &b;
    sl_timed_set(&ts, &a.t, 50);
    sl_timed_set(&ts, &b.t, 50);
    sl_timed_set(&ts, &c.t, 50);
    sl_timed_set(&ts, &d.t, 5000);
    sl_timed_clear(&d.t);
    run_for(&loop, 350);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 0); /* unlinked before its turn: never expired */
    assert_int_equal(c.fired, 1);
    assert_int_equal(d.fired, 0); /* cleared */
    assert_ptr_equal(ts.head.next, &d.t);
    assert_ptr_equal(d.t.next, &ts.head);
    sl_timed_unlink(&d.t);
    sl_timers_stop(&ts);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_not_before_deadline(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_timers_t ts;
    sl_timers_init(&ts, &loop);
    item_t a = {0};
    sl_timed_link(&ts, &a.t, on_expire);
    sl_timed_set(&ts, &a.t, 1000);
    run_for(&loop, 300);
    assert_int_equal(a.fired, 0);
    sl_timed_unlink(&a.t);
    sl_timers_stop(&ts);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expiry_and_cascade),
        cmocka_unit_test(test_not_before_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
