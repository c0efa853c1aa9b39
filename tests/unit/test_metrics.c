/* test_metrics.c - per-thread counters merged on read, histograms, exposition text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/metrics.h"

static size_t labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    return (size_t)snprintf(out, cap, "code=\"%llu\"", (unsigned long long)key);
}

static sl_counter_t *c;

static void *worker(void *arg)
{
    sl_thread_index = (int)(intptr_t)arg;
    sl_metrics_thread_init();
    for (int i = 0; i < 100000; i++)
        sl_counter_add(c, (uint64_t)(200 + i % 2), 1);
    return NULL;
}

static void test_counter_merge_across_threads(void **state)
{
    (void)state;
    c = sl_metrics_counter("t_requests_total", "help", labels, NULL);
    sl_thread_index = 0;
    assert_int_equal(sl_metrics_thread_init(), 0);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(sl_counter_total(c), 300000);
    sl_textbuf_t out = {0};
    sl_metrics_render(&out);
    assert_non_null(strstr(out.p, "# TYPE t_requests_total counter\n"));
    assert_non_null(strstr(out.p, "t_requests_total{code=\"200\"} 150000\n"));
    assert_non_null(strstr(out.p, "t_requests_total{code=\"201\"} 150000\n"));
    free(out.p);
    sl_metrics_reset();
}

static size_t route(uint64_t i, char *out, size_t cap, void *arg)
{
    (void)arg;
    return (size_t)snprintf(out, cap, "route=\"r%llu\"", (unsigned long long)i);
}

static void test_histogram_buckets(void **state)
{
    (void)state;
    sl_hist_t *h = sl_metrics_hist("t_seconds", "help", 2, route, NULL);
    sl_thread_index = 0;
    assert_int_equal(sl_metrics_thread_init(), 0);
    sl_hist_observe(h, 0, 500);      /* 0.5 ms: first bucket */
    sl_hist_observe(h, 0, 1000);     /* exactly 1 ms: le="0.001" is inclusive */
    sl_hist_observe(h, 0, 30000);    /* 30 ms */
    sl_hist_observe(h, 0, 20000000); /* 20 s: only +Inf */
    sl_hist_observe(h, 7, 100);      /* label out of range goes to the last */
    sl_textbuf_t out = {0};
    sl_metrics_render(&out);
    assert_non_null(strstr(out.p, "t_seconds_bucket{route=\"r0\",le=\"0.001\"} 2\n"));
    assert_non_null(strstr(out.p, "t_seconds_bucket{route=\"r0\",le=\"0.025\"} 2\n"));
    assert_non_null(strstr(out.p, "t_seconds_bucket{route=\"r0\",le=\"0.05\"} 3\n"));
    assert_non_null(strstr(out.p, "t_seconds_bucket{route=\"r0\",le=\"10\"} 3\n"));
    assert_non_null(strstr(out.p, "t_seconds_bucket{route=\"r0\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(out.p, "t_seconds_count{route=\"r0\"} 4\n"));
    assert_non_null(strstr(out.p, "t_seconds_sum{route=\"r0\"} 20.031500\n"));
    assert_non_null(strstr(out.p, "t_seconds_count{route=\"r1\"} 1\n"));
    free(out.p);
    sl_metrics_reset();
}

static void test_counter_overflow_is_counted(void **state)
{
    (void)state;
    sl_counter_t *k = sl_metrics_counter("t_many_total", "help", labels, NULL);
    sl_thread_index = 0;
    assert_int_equal(sl_metrics_thread_init(), 0);
    /* More distinct keys than slots: none is lost from the total. */
    for (uint64_t i = 0; i < SL_COUNTER_SLOTS + 500; i++)
        sl_counter_add(k, i, 1);
    assert_int_equal(sl_counter_total(k), SL_COUNTER_SLOTS + 500);
    sl_metrics_reset();
}

static void collector(sl_textbuf_t *t, void *arg)
{
    sl_text_printf(t, "g %d\n", *(int *)arg);
}

static void test_collector_and_unlabelled(void **state)
{
    (void)state;
    static int v = 42;
    sl_counter_t *u = sl_metrics_counter("t_plain_total", "help", NULL, NULL);
    sl_metrics_collector(collector, &v);
    sl_thread_index = 0;
    assert_int_equal(sl_metrics_thread_init(), 0);
    sl_counter_inc(u);
    sl_counter_inc(u);
    sl_textbuf_t out = {0};
    sl_metrics_render(&out);
    assert_non_null(strstr(out.p, "t_plain_total 2\n"));
    assert_non_null(strstr(out.p, "g 42\n"));
    free(out.p);
    sl_metrics_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_merge_across_threads),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_counter_overflow_is_counted),
        cmocka_unit_test(test_collector_and_unlabelled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
