/* test_common.c - the core's inline helpers: decimal formatting (sl_u64_dec). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../src/core/common.h"

/* sl_u64_dec(v) against printf, and that nothing is written past the digits. */
static void check_dec(uint64_t v)
{
    char out[32], want[32];
    memset(out, '#', sizeof(out));
    size_t n = sl_u64_dec(out, v);
    int wn = snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
    assert_int_equal(n, (size_t)wn);
    assert_memory_equal(out, want, n);
    for (size_t i = n; i < sizeof(out); i++)
        assert_int_equal(out[i], '#');
}

static void test_dec_edges(void **state)
{
    (void)state;
    check_dec(0);
    check_dec(UINT64_MAX);
    check_dec(UINT64_MAX - 1);
    /* every length boundary: 10^k - 1, 10^k, 10^k + 1 */
    uint64_t p = 1;
    for (int k = 0; k < 20; k++) {
        check_dec(p - 1);
        check_dec(p);
        check_dec(p + 1);
        if (k < 19)
            p *= 10;
    }
    /* every bit length boundary: 2^k - 1, 2^k */
    for (int k = 1; k < 64; k++) {
        check_dec((1ull << k) - 1);
        check_dec(1ull << k);
    }
}

static void test_dec_sweep(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 200000; v++)
        check_dec(v);
    uint64_t x = 0x9E3779B97F4A7C15ull; /* a spread of large values (xorshift) */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check_dec(x >> (x & 63));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dec_edges),
        cmocka_unit_test(test_dec_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
