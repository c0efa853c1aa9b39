/* test_cpus.c - the cgroup CPU quota: v2 cpu.max text and v1 numbers, rounded up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../src/core/cpus.h"

static int v2(const char *s)
{
    return sl_cpu_quota_v2(s, strlen(s));
}

static void test_v2(void **state)
{
    (void)state;
    assert_int_equal(v2("max 100000\n"), 0);    /* no limit */
    assert_int_equal(v2("200000 100000\n"), 2); /* limits.cpu: 2 */
    assert_int_equal(v2("150000 100000"), 2);   /* 1.5 CPUs: two workers */
    assert_int_equal(v2("50000 100000\n"), 1);  /* 500m */
    assert_int_equal(v2("1 100000"), 1);
    assert_int_equal(v2(""), -1);
    assert_int_equal(v2("max"), -1);
    assert_int_equal(v2("200000"), -1);
    assert_int_equal(v2("200000 0"), -1);
    assert_int_equal(v2("-1 100000"), -1);
    assert_int_equal(v2("200000 100000 x"), -1);
    assert_int_equal(v2("2e5 100000"), -1);
    assert_int_equal(v2("999999999999999999999 1"), -1); /* too long a number */
    assert_int_equal(v2("100000000000 1"), 4096);         /* bounded */
}

static void test_v1(void **state)
{
    (void)state;
    assert_int_equal(sl_cpu_quota_v1(-1, 100000), 0);
    assert_int_equal(sl_cpu_quota_v1(300000, 100000), 3);
    assert_int_equal(sl_cpu_quota_v1(250000, 100000), 3);
    assert_int_equal(sl_cpu_quota_v1(100000, 0), 0);
}

static void test_count(void **state)
{
    (void)state;
    int n = sl_cpu_count();
    assert_true(n >= 1 && n <= 4096);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
