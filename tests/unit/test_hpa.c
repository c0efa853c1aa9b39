/* test_hpa.c - the HPA decision against cases worked by hand from Kubernetes' rules
 * (tolerance, missing and unready instances, direction reversal, stabilization windows,
 * scale-up and scale-down policies, min/max), the reason lines, and long simulated runs
 * checked against a literal, unbounded transcription of K8s's lists: the bounded history
 * must never overflow and must decide exactly as the unbounded one does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../src/ops/hpa.h"

#define S 1000ull     /* one second in ms */
#define T0 (5000 * S) /* fake monotonic clock start: any value */
#define MAXN 4096

static double vals[MAXN];
static char why[256];

/* The usual group: min 1, max 20, 70 (% CPU) per instance, K8s default behaviours. */
static sl_hpa_conf_t conf(void)
{
    sl_hpa_conf_t c;
    sl_hpa_conf_defaults(&c);
    c.max = 20;
    c.target = 70;
    c.metric = "cpu";
    assert_int_equal(sl_hpa_conf_check(&c, NULL), 0);
    return c;
}

/* One decision where every ready instance reports `each`. */
static uint32_t dec(sl_hpa_state_t *s, const sl_hpa_conf_t *c, uint32_t current, uint32_t nready,
                    double each, uint32_t unready, uint32_t missing, uint64_t now)
{
    assert_true(nready <= MAXN);
    for (uint32_t i = 0; i < nready; i++)
        vals[i] = each;
    sl_hpa_input_t in = {current, vals, nready, unready, missing};
    uint32_t d = sl_hpa_decide(s, c, &in, now, why, sizeof(why));
    assert_true(strlen(why) < sizeof(why));
    return d;
}

#define assert_reason(s) assert_string_equal(why, s)
#define assert_reason_has(s) assert_non_null(strstr(why, s))

static void test_conf(void **state)
{
    (void)state;
    sl_hpa_conf_t c;
    const char *w = NULL;
    sl_hpa_conf_defaults(&c);
    assert_int_equal(c.min, 1);
    assert_true(c.tolerance == 0.1);
    assert_int_equal(c.up.window_ms, 0);
    assert_int_equal(c.up.npolicies, 2);
    assert_int_equal(c.up.policies[0].type, SL_HPA_PERCENT);
    assert_int_equal(c.up.policies[0].value, 100);
    assert_int_equal(c.up.policies[0].period_ms, 15000);
    assert_int_equal(c.up.policies[1].type, SL_HPA_PODS);
    assert_int_equal(c.up.policies[1].value, 4);
    assert_int_equal(c.up.select, SL_HPA_SELECT_MAX);
    assert_int_equal(c.down.window_ms, 300000);
    assert_int_equal(c.down.npolicies, 1);
    assert_int_equal(c.down.policies[0].type, SL_HPA_PERCENT);
    assert_int_equal(c.down.policies[0].value, 100);
    assert_int_equal(c.down.select, SL_HPA_SELECT_MAX);
    /* max and target have no default */
    assert_int_equal(sl_hpa_conf_check(&c, &w), SL_EINVAL);
    assert_string_equal(w, "max is at least 1");
    c.max = 10;
    assert_int_equal(sl_hpa_conf_check(&c, &w), SL_EINVAL);
    assert_string_equal(w, "target is a number greater than 0");
    c.target = 70;
    assert_int_equal(sl_hpa_conf_check(&c, &w), 0);
    assert_null(w);

    sl_hpa_conf_t b = c;
    b.min = 0; /* scale to zero */
    assert_int_equal(sl_hpa_conf_check(&b, NULL), 0);
    b.max = 0;
    assert_int_equal(sl_hpa_conf_check(&b, &w), SL_EINVAL);
    assert_string_equal(w, "max is at least 1");
    b = c, b.min = 11;
    assert_int_equal(sl_hpa_conf_check(&b, &w), SL_EINVAL);
    assert_string_equal(w, "max is at least min");
    b = c, b.target = NAN;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.tolerance = -0.1;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.up.npolicies = 0;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.down.npolicies = 5;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.up.policies[1].period_ms = 0;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.up.policies[1].period_ms = 1800001;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.down.policies[0].value = 0;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.down.policies[0].type = 3;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.down.window_ms = 3600001;
    assert_int_equal(sl_hpa_conf_check(&b, NULL), SL_EINVAL);
    b = c, b.up.select = 3;
    assert_int_equal(sl_hpa_conf_check(&b, &w), SL_EINVAL);
    assert_string_equal(w, "select is max, min or disabled");
    assert_int_equal(sl_hpa_conf_check(NULL, NULL), SL_EINVAL);
}

/* Tolerance 0.1 around ratio 1, both ways. The scale-down window is off so that the
 * recommendation itself is seen. */
static void test_tolerance(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    c.down.window_ms = 0;
    sl_hpa_init(&s);
    /* 3 at 73.5 of 70: ratio 1.05, |1 - 1.05| <= 0.1: keep 3 */
    assert_int_equal(dec(&s, &c, 3, 3, 73.5, 0, 0, T0), 3);
    assert_reason("cpu 73.5 > target 70.0 (ratio 1.05, within tolerance 0.10): keep 3");
    /* 3 at 77.7: ratio 1.11 > 1.1: ceil(3 x 77.7 / 70) = ceil(3.33) = 4 */
    assert_int_equal(dec(&s, &c, 3, 3, 77.7, 0, 0, T0 + 15 * S), 4);
    assert_reason("cpu 77.7 > target 70.0 (ratio 1.11): 3 -> 4");
    /* 10 at 66.5: ratio 0.95: keep 10 */
    assert_int_equal(dec(&s, &c, 10, 10, 66.5, 0, 0, T0 + 30 * S), 10);
    /* 10 at 62.3: ratio 0.89: ceil(623 / 70) = ceil(8.9) = 9 */
    assert_int_equal(dec(&s, &c, 10, 10, 62.3, 0, 0, T0 + 45 * S), 9);
    assert_reason("cpu 62.3 < target 70.0 (ratio 0.89): 10 -> 9");
    /* Exactly on the edge, as in K8s: 77 / 70 = 1.1 in doubles is 1.1000000000000000888,
     * so |1 - ratio| = 0.10000000000000009 > 0.1 and the count changes. The count is
     * ceil(770 / 70) = 11, where K8s's ceil(1.1 x 10) = ceil(11.000000000000002) says 12. */
    assert_int_equal(dec(&s, &c, 10, 10, 77, 0, 0, T0 + 60 * S), 11);
    /* tolerance 0: any difference counts; 3 at 70.7 -> ceil(212.1 / 70) = 4 */
    c.tolerance = 0;
    assert_int_equal(dec(&s, &c, 3, 3, 70.7, 0, 0, T0 + 75 * S), 4);
    assert_int_equal(dec(&s, &c, 3, 3, 70, 0, 0, T0 + 90 * S), 3);
    assert_reason("cpu 70.0 = target 70.0 (ratio 1.00, within tolerance 0.00): keep 3");
}

/* 3 instances at 90 % of a 70 % target: ceil(3 x 90 / 70) = ceil(3.857) = 4. The default
 * scale-up policies allow max(ceil(3 x 2), 3 + 4) = 7, the window 0 s stabilizes nothing. */
static void test_scale_up_plain(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 3, 3, 90, 0, 0, T0), 4);
    assert_reason("cpu 90.0 > target 70.0 (ratio 1.29): 3 -> 4");
    /* the caller may refuse: nothing is recorded as a scale event, and the next decision
     * reaches the same answer */
    assert_int_equal(dec(&s, &c, 3, 3, 90, 0, 0, T0 + 1 * S), 4);
    /* metric name defaults to "metric" */
    c.metric = NULL;
    assert_int_equal(dec(&s, &c, 3, 3, 91, 0, 0, T0 + 2 * S), 4);
    assert_reason("metric 91.0 > target 70.0 (ratio 1.30): 3 -> 4");
}

/* 5 instances at 20 of 70: ceil(5 x 20 / 70) = ceil(1.43) = 2. The first decision seeds the
 * history with the current 5 (K8s recordInitialRecommendation), so the 300 s scale-down
 * window holds 5 until the seed is 300 s old: an entry counts while now - t < window. At
 * T0 + 300 s only recommendations of 2 remain: the default 100 %/15 s policy allows down
 * to trunc(5 x 0) = 0, so 2 stands. */
static void test_scale_down_window(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 5, 5, 20, 0, 0, T0), 5);
    assert_reason("cpu 20.0 < target 70.0 (ratio 0.29) recommends 2; scale-down stabilized "
                  "(max 5 over 300 s): keep 5");
    for (uint64_t t = 15 * S; t < 300 * S; t += 15 * S)
        assert_int_equal(dec(&s, &c, 5, 5, 20, 0, 0, T0 + t), 5);
    assert_int_equal(dec(&s, &c, 5, 5, 20, 0, 0, T0 + 300 * S - 1), 5);
    assert_int_equal(dec(&s, &c, 5, 5, 20, 0, 0, T0 + 300 * S), 2);
    assert_reason("cpu 20.0 < target 70.0 (ratio 0.29): 5 -> 2");
    sl_hpa_applied(&s, T0 + 300 * S, 5, 2);

    /* A recommendation of 4 inside the window holds a later 1 at 4, for 300 s after it. */
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 4, 4, 70, 0, 0, T0), 4);           /* seed 4, rec 4 */
    assert_int_equal(dec(&s, &c, 4, 4, 10, 0, 0, T0 + 100 * S), 4); /* rec 1 */
    assert_reason_has("recommends 1; scale-down stabilized (max 4 over 300 s): keep 4");
    assert_int_equal(dec(&s, &c, 4, 4, 10, 0, 0, T0 + 300 * S - 1), 4);
    assert_int_equal(dec(&s, &c, 4, 4, 10, 0, 0, T0 + 300 * S), 1);

    /* Without a window the first decision scales down at once. */
    c.down.window_ms = 0;
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 5, 5, 20, 0, 0, T0), 2);
}

/* A scale-up window: the lowest recommendation of the last 60 s is as high as it goes. */
static void test_scale_up_window(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    c.up.window_ms = 60 * S;
    sl_hpa_init(&s);
    /* seed 3 at T0; rec 4 (3 at 90): min(3, 4) = 3 */
    assert_int_equal(dec(&s, &c, 3, 3, 90, 0, 0, T0), 3);
    assert_reason("cpu 90.0 > target 70.0 (ratio 1.29) recommends 4; scale-up stabilized "
                  "(min 3 over 60 s): keep 3");
    for (uint64_t t = 15 * S; t < 60 * S; t += 15 * S)
        assert_int_equal(dec(&s, &c, 3, 3, 90, 0, 0, T0 + t), 3);
    /* the entries of T0 leave the window: all remaining say 4 */
    assert_int_equal(dec(&s, &c, 3, 3, 90, 0, 0, T0 + 60 * S), 4);
    /* a burst to 7 (3 at 150: ceil(6.43)) goes only to the window's minimum, 4 */
    assert_int_equal(dec(&s, &c, 3, 3, 150, 0, 0, T0 + 61 * S), 4);
    assert_reason_has("recommends 7; scale-up stabilized (min 4 over 60 s): 3 -> 4");
}

/* Instances without a sample: at the target on a scale-down, at 0 on a scale-up. */
static void test_missing(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    c.down.window_ms = 0;
    sl_hpa_init(&s);
    /* scale-down: 4 at 20 + 1 missing, current 5. ratio 20/70 = 0.29 < 1: missing as 70:
     * (80 + 70) / 5 / 70 = 0.43, ceil(150 / 70) = ceil(2.14) = 3 (not ceil(80/70) = 2). */
    assert_int_equal(dec(&s, &c, 5, 4, 20, 0, 1, T0), 3);
    assert_reason("cpu 20.0 < target 70.0 (ratio 0.29; 1 missing as 70.0: ratio 0.43): 5 -> 3");
    /* 4 at 10 + 2 missing, current 6: plain: (40 + 140) / 70 = 2.57 -> 3 */
    assert_int_equal(dec(&s, &c, 6, 4, 10, 0, 2, T0 + 15 * S), 3);
    /* as a utilization (% of request), a missing instance counts max(100, 70) = 100:
     * (40 + 200) / 70 = 3.43 -> 4 */
    c.utilization = 1;
    assert_int_equal(dec(&s, &c, 6, 4, 10, 0, 2, T0 + 30 * S), 4);
    assert_reason_has("2 missing as 100.0");
    c.utilization = 0;

    /* scale-up: 2 at 150 + 1 missing, current 3. ratio 2.14 > 1: missing as 0:
     * 300 / 3 / 70 = 1.43, ceil(300 / 70) = ceil(4.29) = 5 */
    assert_int_equal(dec(&s, &c, 3, 2, 150, 0, 1, T0 + 45 * S), 5);
    assert_reason("cpu 150.0 > target 70.0 (ratio 2.14; 1 missing as 0: ratio 1.43): 3 -> 5");
    /* 2 at 100 + 1 missing: ratio 1.43, filled 200 / 3 / 70 = 0.95: within tolerance */
    assert_int_equal(dec(&s, &c, 3, 2, 100, 0, 1, T0 + 60 * S), 3);
    assert_reason_has("ratio 0.95, within tolerance 0.10): keep 3");
    /* ratio exactly 1 with missing instances: nothing filled in (K8s 1.28), keep */
    assert_int_equal(dec(&s, &c, 3, 2, 70, 0, 1, T0 + 75 * S), 3);
    assert_reason("cpu 70.0 = target 70.0 (ratio 1.00; 1 missing not counted: ratio 1.00, "
                  "within tolerance 0.10): keep 3");
}

/* Unready instances: as 0 when scaling up, ignored when scaling down. */
static void test_unready(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    c.down.window_ms = 0;
    sl_hpa_init(&s);
    /* 2 at 210 + 1 unready, current 3: ratio 3, unready as 0: 420 / 3 / 70 = 2,
     * ceil(420 / 70) = 6; policies allow max(ceil(3 x 2), 3 + 4) = 7 */
    assert_int_equal(dec(&s, &c, 3, 2, 210, 1, 0, T0), 6);
    assert_reason("cpu 210.0 > target 70.0 (ratio 3.00; 1 unready as 0: ratio 2.00): 3 -> 6");
    /* 2 at 140 + 2 unready, current 4: ratio 2, unready as 0: 280 / 4 / 70 = 1.0: keep
     * (the starting instances will take the load) */
    assert_int_equal(dec(&s, &c, 4, 2, 140, 2, 0, T0 + 15 * S), 4);
    assert_reason_has("2 unready as 0: ratio 1.00, within tolerance 0.10): keep 4");
    /* scale-down: 3 at 35 + 2 unready, current 5: ratio 0.5, the unready are ignored:
     * ceil(105 / 70) = ceil(1.5) = 2 */
    assert_int_equal(dec(&s, &c, 5, 3, 35, 2, 0, T0 + 30 * S), 2);
    assert_reason("cpu 35.0 < target 70.0 (ratio 0.50; 2 unready ignored): 5 -> 2");
    /* both at once on a scale-up: 2 at 280 + 1 missing + 1 unready, current 4: ratio 4,
     * 560 / 4 / 70 = 2, ceil(560 / 70) = 8; policies: max(8, 8) = 8 */
    assert_int_equal(dec(&s, &c, 4, 2, 280, 1, 1, T0 + 45 * S), 8);
    assert_reason_has("(ratio 4.00; 1 missing as 0, 1 unready as 0: ratio 2.00): 4 -> 8");
}

/* The filled-in ratio crossing 1 leaves the count alone. */
static void test_direction_reversed(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    c.down.window_ms = 0;
    sl_hpa_init(&s);
    /* up became down: 1 at 100 + 1 missing: ratio 1.43, filled 100 / 2 / 70 = 0.71 */
    assert_int_equal(dec(&s, &c, 2, 1, 100, 0, 1, T0), 2);
    assert_reason("cpu 100.0 > target 70.0 (ratio 1.43; 1 missing as 0: ratio 0.71, direction "
                  "reversed): keep 2");
    /* up became down through unready: 1 at 100 + 2 unready: 100 / 3 / 70 = 0.48 */
    assert_int_equal(dec(&s, &c, 3, 1, 100, 2, 0, T0 + 15 * S), 3);
    assert_reason_has("direction reversed): keep 3");
    /* down became up: a utilization at 60 of 70 (0.86) with 3 missing counted at 100 %:
     * (60 + 300) / 4 / 70 = 1.29 */
    c.utilization = 1;
    assert_int_equal(dec(&s, &c, 4, 1, 60, 0, 3, T0 + 30 * S), 4);
    assert_reason_has("3 missing as 100.0: ratio 1.29, direction reversed): keep 4");
    c.utilization = 0;
    /* K8s 1.28's last check: the counted instances outnumber current. 3 at 35 + 1 missing
     * but current 2: (105 + 70) / 4 / 70 = 0.625 < 1, yet ceil(175 / 70) = 3 > 2: keep */
    assert_int_equal(dec(&s, &c, 2, 3, 35, 0, 1, T0 + 45 * S), 2);
    assert_reason_has("3 would reverse the direction): keep 2");
    /* and fewer: current 10, 2 at 140 + 1 unready: 280 / 3 / 70 = 1.33 > 1, but
     * ceil(280 / 70) = 4 < 10: keep */
    assert_int_equal(dec(&s, &c, 10, 2, 140, 1, 0, T0 + 60 * S), 10);
    assert_reason_has("4 would reverse the direction): keep 10");
}

/* Default scale-up policies: 100 % or 4 instances per 15 s, whichever is more. */
static void test_scale_up_policies(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    sl_hpa_init(&s);
    /* 2 at 700: ceil(1400 / 70) = 20; limit max(ceil(2 x 2), 2 + 4) = 6 */
    assert_int_equal(dec(&s, &c, 2, 2, 700, 0, 0, T0), 6);
    assert_reason("cpu 700.0 > target 70.0 (ratio 10.00) recommends 20; limited by scale-up "
                  "policy to 6: 2 -> 6");
    sl_hpa_applied(&s, T0, 2, 6);
    /* 5 s later, same period: start = 6 - 4 = 2, limit max(4, 6) = 6 = current: keep */
    assert_int_equal(dec(&s, &c, 6, 6, 700, 0, 0, T0 + 5 * S), 6);
    assert_reason("cpu 700.0 > target 70.0 (ratio 10.00) recommends 60; limited by scale-up "
                  "policy to 6: keep 6");
    assert_int_equal(dec(&s, &c, 6, 6, 700, 0, 0, T0 + 15 * S - 1), 6);
    /* 15 s after the event it is out of the period: start 6, max(12, 10) = 12 */
    assert_int_equal(dec(&s, &c, 6, 6, 700, 0, 0, T0 + 15 * S), 12);
    sl_hpa_applied(&s, T0 + 15 * S, 6, 12);
    /* start 12: max(24, 16) = 24 >= max 20: the max is what limits */
    assert_int_equal(dec(&s, &c, 12, 12, 700, 0, 0, T0 + 30 * S), 20);
    assert_reason("cpu 700.0 > target 70.0 (ratio 10.00) recommends 120; clamped to max 20: "
                  "12 -> 20");

    /* MIN select: min(ceil(2 x 2), 2 + 4) = 4 */
    c.up.select = SL_HPA_SELECT_MIN;
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 2, 2, 700, 0, 0, T0), 4);
    /* PERCENT rounds up: +10 % of 3 is ceil(3.3) = 4, so a group can always grow */
    c.up.select = SL_HPA_SELECT_MAX;
    c.up.npolicies = 1;
    c.up.policies[0] = (sl_hpa_policy_t){SL_HPA_PERCENT, 10, 60 * S};
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 3, 3, 700, 0, 0, T0), 4);
    /* DISABLED: no scale-up at all */
    c.up.select = SL_HPA_SELECT_DISABLED;
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 3, 3, 700, 0, 0, T0), 3);
    assert_reason("cpu 700.0 > target 70.0 (ratio 10.00) recommends 30; scale-up disabled: "
                  "keep 3");
}

/* Scale-down policies, the window off: 10 at 7 recommends ceil(70 / 70) = 1. */
static void test_scale_down_policies(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    c.down.window_ms = 0;
    c.down.npolicies = 2;
    c.down.policies[0] = (sl_hpa_policy_t){SL_HPA_PERCENT, 50, 60 * S};
    c.down.policies[1] = (sl_hpa_policy_t){SL_HPA_PODS, 3, 60 * S};
    /* MAX (the biggest change): floors trunc(10 x 0.5) = 5 and 10 - 3 = 7: the lower, 5 */
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 10, 10, 7, 0, 0, T0), 5);
    assert_reason("cpu 7.0 < target 70.0 (ratio 0.10) recommends 1; limited by scale-down "
                  "policy to 5: 10 -> 5");
    sl_hpa_applied(&s, T0, 10, 5);
    /* 10 s later: start 5 + 5 = 10: floors 5 and 7, 5 = current: keep */
    assert_int_equal(dec(&s, &c, 5, 5, 7, 0, 0, T0 + 10 * S), 5);
    assert_reason_has("limited by scale-down policy to 5: keep 5");
    /* 60 s after the event: start 5: trunc(2.5) = 2 and 5 - 3 = 2 */
    assert_int_equal(dec(&s, &c, 5, 5, 7, 0, 0, T0 + 60 * S), 2);

    /* MIN (the smallest change): the higher floor, 7 */
    c.down.select = SL_HPA_SELECT_MIN;
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 10, 10, 7, 0, 0, T0), 7);
    sl_hpa_applied(&s, T0, 10, 7);
    /* start 10: floors 5 and 7, the higher 7 = current: keep */
    assert_int_equal(dec(&s, &c, 7, 7, 7, 0, 0, T0 + 30 * S), 7);

    /* PERCENT truncates (K8s int32()): 50 % off 5 leaves trunc(2.5) = 2, not 3 */
    c.down.select = SL_HPA_SELECT_MAX;
    c.down.npolicies = 1;
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 5, 5, 7, 0, 0, T0), 2);
    /* PODS alone: 10 - 3 = 7 */
    c.down.policies[0] = (sl_hpa_policy_t){SL_HPA_PODS, 3, 60 * S};
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 10, 10, 7, 0, 0, T0), 7);
    /* a scale-up in the period raises nothing but is subtracted from the start: after
     * 4 -> 7 at T0 + 1 s, start = 7 - 3 = 4, floor 4 - 3 = 1 */
    sl_hpa_init(&s);
    sl_hpa_applied(&s, T0 + 1 * S, 4, 7);
    assert_int_equal(dec(&s, &c, 7, 7, 7, 0, 0, T0 + 2 * S), 1);

    /* DISABLED: no scale-down at all */
    c.down.select = SL_HPA_SELECT_DISABLED;
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 10, 10, 7, 0, 0, T0), 10);
    assert_reason("cpu 7.0 < target 70.0 (ratio 0.10) recommends 1; scale-down disabled: "
                  "keep 10");
}

/* min and max: a count outside is brought back at once; recommendations stop at them. */
static void test_clamp(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    c.min = 3;
    c.max = 12;
    c.down.window_ms = 0;
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 25, 25, 70, 0, 0, T0), 12);
    assert_reason("current 25 above max 12: 25 -> 12");
    assert_int_equal(dec(&s, &c, 1, 1, 70, 0, 0, T0 + 1 * S), 3);
    assert_reason("current 1 below min 3: 1 -> 3");
    /* every instance gone: to min (K8s would read 0 as "switched off by hand") */
    assert_int_equal(dec(&s, &c, 0, 0, 0, 0, 0, T0 + 2 * S), 3);
    /* 10 at 7 recommends 1, the policy allows 0: min 3 */
    assert_int_equal(dec(&s, &c, 10, 10, 7, 0, 0, T0 + 3 * S), 3);
    assert_reason("cpu 7.0 < target 70.0 (ratio 0.10) recommends 1; clamped to min 3: 10 -> 3");
    /* 10 at 140 recommends 20, the policies allow max(20, 14) = 20: max 12 */
    assert_int_equal(dec(&s, &c, 10, 10, 140, 0, 0, T0 + 4 * S), 12);
    assert_reason_has("recommends 20; clamped to max 12: 10 -> 12");
    /* all idle: ceil(0) = 0, held at min */
    assert_int_equal(dec(&s, &c, 5, 5, 0, 0, 0, T0 + 5 * S), 3);
    /* min 0: all idle goes to ceil(0) = 0, and 0 stays 0 (nothing to measure) */
    c.min = 0;
    assert_int_equal(dec(&s, &c, 5, 5, 0, 0, 0, T0 + 6 * S), 0);
    assert_reason("cpu 0.0 < target 70.0 (ratio 0.00): 5 -> 0");
    assert_int_equal(dec(&s, &c, 0, 0, 0, 0, 0, T0 + 7 * S), 0);
    assert_reason("no ready instance reports cpu: keep 0");
    /* min = max: fixed */
    c.min = c.max = 4;
    assert_int_equal(dec(&s, &c, 4, 4, 700, 0, 0, T0 + 8 * S), 4);
    assert_int_equal(dec(&s, &c, 4, 4, 1, 0, 0, T0 + 9 * S), 4);
}

/* Nothing to compute from: keep current and record nothing. */
static void test_no_metrics(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    sl_hpa_init(&s);
    assert_int_equal(dec(&s, &c, 3, 0, 0, 2, 1, T0), 3);
    assert_reason("no ready instance reports cpu: keep 3");
    assert_int_equal(s.nrecs, 1); /* only the seed */
    sl_hpa_input_t in = {3, NULL, 2, 0, 0};
    assert_int_equal(sl_hpa_decide(&s, &c, &in, T0, why, sizeof(why)), 3);
    assert_int_equal(dec(&s, &c, 3, 3, NAN, 0, 0, T0 + 1 * S), 3);
    assert_reason("invalid cpu sample nan: keep 3");
    assert_int_equal(dec(&s, &c, 3, 3, INFINITY, 0, 0, T0 + 2 * S), 3);
    assert_int_equal(dec(&s, &c, 3, 3, -1, 0, 0, T0 + 3 * S), 3);
    assert_int_equal(s.nrecs, 1);
    /* a huge value saturates instead of overflowing: ceil(3e300 / 70) -> UINT32_MAX,
     * which the scale-up policies cut to max(ceil(3 x 2), 3 + 4) = 7 */
    assert_int_equal(dec(&s, &c, 3, 3, 1e300, 0, 0, T0 + 4 * S), 7);
    /* an invalid configuration changes nothing, and says why */
    c.target = 0;
    assert_int_equal(dec(&s, &c, 3, 3, 700, 0, 0, T0 + 5 * S), 3);
    assert_reason("invalid configuration: target is a number greater than 0: keep 3");
}

/* The reason buffer: truncated, always terminated, optional. */
static void test_reason_buffer(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    char small[12];
    memset(small, 'x', sizeof(small));
    vals[0] = vals[1] = vals[2] = 90;
    sl_hpa_input_t in = {3, vals, 3, 0, 0};
    sl_hpa_init(&s);
    assert_int_equal(sl_hpa_decide(&s, &c, &in, T0, small, sizeof(small)), 4);
    assert_string_equal(small, "cpu 90.0 > ");
    assert_int_equal(sl_hpa_decide(&s, &c, &in, T0, small, 1), 4);
    assert_string_equal(small, "");
    assert_int_equal(sl_hpa_decide(&s, &c, &in, T0, small, 0), 4);
    assert_int_equal(sl_hpa_decide(&s, &c, &in, T0, NULL, 100), 4);
}

/* sl_hpa_applied beyond SL_HPA_EVENTS in one period: merged, never lost. 100 scale-ups of
 * one instance within 100 ms take 2 to 102; 1 s later start = 102 - 100 = 2, limit
 * max(ceil(2 x 2), 2 + 4) = 6 < 102: no further scale-up. */
static void test_events_bounded(void **state)
{
    (void)state;
    sl_hpa_state_t s;
    sl_hpa_conf_t c = conf();
    c.max = 1000;
    sl_hpa_init(&s);
    for (uint32_t i = 0; i < 100; i++)
        sl_hpa_applied(&s, T0 + i, 2 + i, 3 + i);
    assert_int_equal(s.nup, SL_HPA_EVENTS);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < s.nup; i++)
        sum += s.up[i].change;
    assert_int_equal(sum, 100);
    assert_int_equal(dec(&s, &c, 102, 102, 700, 0, 0, T0 + 1 * S), 102);
    assert_reason_has("limited by scale-up policy to 102: keep 102");
    /* 15 s after the last event every one of them has left the period */
    assert_int_equal(dec(&s, &c, 102, 102, 700, 0, 0, T0 + 99 + 15 * S), 204);
    assert_int_equal(s.nup, 0);
    sl_hpa_applied(&s, T0, 5, 5); /* no change, no event */
    assert_int_equal(s.nup + s.ndown, 0);
}

/* ---- a literal transcription of K8s's unbounded lists, for the long runs ---- */

#define REF_MAX 40000
static struct {
    int seeded;
    size_t nrecs, nup, ndown;
    struct {
        int64_t t, v;
    } recs[REF_MAX], up[REF_MAX], down[REF_MAX];
} R;

static int64_t i64min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}
static int64_t i64max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* getReplicasChangePerPeriod over both lists: events with t > now - period */
static int64_t ref_start(int64_t current, int64_t period, int64_t now)
{
    int64_t r = current;
    for (size_t i = 0; i < R.nup; i++)
        if (R.up[i].t > now - period)
            r -= R.up[i].v;
    for (size_t i = 0; i < R.ndown; i++)
        if (R.down[i].t > now - period)
            r += R.down[i].v;
    return r;
}

/* reconcileAutoscaler + calcPlainMetricReplicas (every instance ready) +
 * normalizeDesiredReplicasWithBehaviors, straight from the Go. */
static uint32_t ref_decide(const sl_hpa_conf_t *c, uint32_t current, const double *v, uint32_t n,
                           int64_t now)
{
    if (!R.seeded) {
        R.seeded = 1;
        R.recs[R.nrecs].t = now, R.recs[R.nrecs++].v = current;
    }
    if (current > c->max)
        return c->max;
    if (current < c->min)
        return c->min;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += v[i];
    double ratio = sum / n / c->target;
    int64_t desired = fabs(1.0 - ratio) <= c->tolerance ? current : (int64_t)ceil(sum / c->target);

    int64_t up = desired, down = desired;
    for (size_t i = 0; i < R.nrecs; i++) {
        if (R.recs[i].t > now - (int64_t)c->up.window_ms)
            up = i64min(up, R.recs[i].v);
        if (R.recs[i].t > now - (int64_t)c->down.window_ms)
            down = i64max(down, R.recs[i].v);
    }
    int64_t r = current;
    if (r < up)
        r = up;
    if (r > down)
        r = down;
    assert_true(R.nrecs < REF_MAX);
    R.recs[R.nrecs].t = now, R.recs[R.nrecs++].v = desired;

    if (r > current) {
        int64_t lim = c->up.select == SL_HPA_SELECT_MIN ? INT64_MAX : INT64_MIN;
        for (unsigned i = 0; i < c->up.npolicies; i++) {
            const sl_hpa_policy_t *p = &c->up.policies[i];
            int64_t st = ref_start(current, (int64_t)p->period_ms, now);
            int64_t x =
                p->type == SL_HPA_PODS ? st + p->value : (int64_t)ceil(st * (1 + p->value / 100.0));
            lim = c->up.select == SL_HPA_SELECT_MIN ? i64min(lim, x) : i64max(lim, x);
        }
        if (c->up.select == SL_HPA_SELECT_DISABLED)
            lim = current;
        lim = i64max(lim, current);
        int64_t maxa = i64min(c->max, lim);
        return (uint32_t)(r > maxa ? maxa : r);
    }
    if (r < current) {
        int64_t lim = c->down.select == SL_HPA_SELECT_MIN ? INT64_MIN : INT64_MAX;
        for (unsigned i = 0; i < c->down.npolicies; i++) {
            const sl_hpa_policy_t *p = &c->down.policies[i];
            int64_t st = ref_start(current, (int64_t)p->period_ms, now);
            int64_t x =
                p->type == SL_HPA_PODS ? st - p->value : (int64_t)(st * (1 - p->value / 100.0));
            lim = c->down.select == SL_HPA_SELECT_MIN ? i64max(lim, x) : i64min(lim, x);
        }
        if (c->down.select == SL_HPA_SELECT_DISABLED)
            lim = current;
        lim = i64min(lim, current);
        int64_t mina = i64max(c->min, lim);
        return (uint32_t)(r < mina ? mina : r);
    }
    return (uint32_t)r;
}

static void ref_applied(int64_t now, uint32_t from, uint32_t to)
{
    if (to > from) {
        assert_true(R.nup < REF_MAX);
        R.up[R.nup].t = now, R.up[R.nup++].v = to - from;
    } else if (to < from) {
        assert_true(R.ndown < REF_MAX);
        R.down[R.ndown].t = now, R.down[R.ndown++].v = from - to;
    }
}

static uint64_t rng = 88172645463325252ull;
static uint32_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* steps decisions, period_ms apart, under a load that drifts and jumps; the supervisor
 * applies every answer (but refuses one in 17, as it might while an instance starts).
 * Every decision must equal the reference's; the arrays stay within their bounds.
 * Returns how many decisions changed the count. */
static unsigned run(const sl_hpa_conf_t *c, unsigned steps, uint64_t period_ms, double load0)
{
    sl_hpa_state_t s;
    sl_hpa_init(&s);
    memset(&R, 0, sizeof(R));
    uint32_t current = c->min;
    unsigned changes = 0, spike = 0;
    for (unsigned k = 0; k < steps; k++) {
        uint64_t now = T0 + k * period_ms;
        uint32_t r = xorshift();
        /* total demand, in units of the per-instance metric: a daily-like wave between
         * 0.2 and 1.8 x load0 over 1800 decisions, +-15 % noise, and now and then a burst
         * of 3x lasting 40 decisions */
        if (spike == 0 && r % 300 == 0)
            spike = 40;
        double load =
            load0 * (1.0 + 0.8 * sin(k * (2 * M_PI / 1800))) * (0.85 + (r % 3001) / 10000.0);
        if (spike > 0) {
            load *= 3;
            spike--;
        }
        if (load > c->target * c->max * 3.0)
            load = c->target * c->max * 3.0;
        uint32_t n = current ? current : 1;
        for (uint32_t i = 0; i < n && i < MAXN; i++)
            vals[i] = load / n * (0.8 + 0.4 * (i % 5) / 4); /* uneven instances */
        sl_hpa_input_t in = {current, vals, current, 0, 0};
        uint32_t d = sl_hpa_decide(&s, c, &in, now, why, sizeof(why));
        assert_int_equal(d, ref_decide(c, current, vals, current, (int64_t)now));
        assert_true(d >= c->min && d <= c->max);
        assert_true(s.nrecs >= 1 && s.nrecs <= SL_HPA_RECS);
        assert_true(s.nup <= SL_HPA_EVENTS && s.ndown <= SL_HPA_EVENTS);
        if (d != current && r % 17 != 0) {
            sl_hpa_applied(&s, now, current, d);
            ref_applied((int64_t)now, current, d);
            current = d;
            changes++;
        }
    }
    return changes;
}

/* 10000 decisions at 1 s with the default 300 s scale-down window (301 recommendations
 * in the window at any time, more than SL_HPA_RECS): same decisions as K8s's lists. */
static void test_long_run_defaults(void **state)
{
    (void)state;
    sl_hpa_conf_t c = conf();
    unsigned changes = run(&c, 10000, 1 * S, 600);
    assert_true(changes > 50); /* the run did scale, both ways */
}

/* Other behaviours: windows both ways, MIN select, several periods, 15 s sync. */
static void test_long_run_mixed(void **state)
{
    (void)state;
    sl_hpa_conf_t c = conf();
    c.max = 100;
    c.up.window_ms = 45 * S;
    c.up.select = SL_HPA_SELECT_MIN;
    c.up.policies[1] = (sl_hpa_policy_t){SL_HPA_PODS, 3, 60 * S};
    c.down.window_ms = 120 * S;
    c.down.npolicies = 3;
    c.down.policies[0] = (sl_hpa_policy_t){SL_HPA_PERCENT, 30, 30 * S};
    c.down.policies[1] = (sl_hpa_policy_t){SL_HPA_PODS, 2, 20 * S};
    c.down.policies[2] = (sl_hpa_policy_t){SL_HPA_PERCENT, 60, 300 * S};
    assert_true(run(&c, 10000, 1 * S, 500) > 50);
    c.down.select = SL_HPA_SELECT_MIN;
    c.up.select = SL_HPA_SELECT_MAX;
    assert_true(run(&c, 5000, 15 * S, 500) > 50);
    c.tolerance = 0;
    c.up.window_ms = 0;
    assert_true(run(&c, 10000, 250, 500) > 50);
}

/* max far above SL_HPA_RECS with a one-hour window and decisions every 100 ms: the history
 * may now overflow (oldest dropped first), but never past its bound. */
static void test_long_run_bound(void **state)
{
    (void)state;
    sl_hpa_conf_t c = conf();
    c.max = 3000;
    c.up.window_ms = 60 * S;
    c.down.window_ms = 3600 * S;
    c.up.policies[0].value = 1000;
    /* this load leaves up to 114 distinct counts in the hour: still exact */
    assert_true(run(&c, 20000, 100, 50000) > 5);
    /* The pruning's worst case: a zigzag narrowing with time (1000, 1, 999, 2, 998, ...),
     * where every entry is more extreme than all newer ones and none can go. */
    sl_hpa_state_t s;
    sl_hpa_init(&s);
    for (unsigned k = 0; k < 1000; k++) {
        uint32_t want = k % 2 ? 1 + k / 2 : 1000 - k / 2;
        vals[0] = want * 70.0;
        sl_hpa_input_t in = {1, vals, 1, 0, 0};
        sl_hpa_decide(&s, &c, &in, T0 + k * 10, why, sizeof(why));
        assert_true(s.nrecs <= SL_HPA_RECS);
    }
    assert_int_equal(s.nrecs, SL_HPA_RECS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf),
        cmocka_unit_test(test_tolerance),
        cmocka_unit_test(test_scale_up_plain),
        cmocka_unit_test(test_scale_down_window),
        cmocka_unit_test(test_scale_up_window),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_unready),
        cmocka_unit_test(test_direction_reversed),
        cmocka_unit_test(test_scale_up_policies),
        cmocka_unit_test(test_scale_down_policies),
        cmocka_unit_test(test_clamp),
        cmocka_unit_test(test_no_metrics),
        cmocka_unit_test(test_reason_buffer),
        cmocka_unit_test(test_events_bounded),
        cmocka_unit_test(test_long_run_defaults),
        cmocka_unit_test(test_long_run_mixed),
        cmocka_unit_test(test_long_run_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
