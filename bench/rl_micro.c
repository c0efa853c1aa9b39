/* rl_micro.c - single-thread microbenchmark of sl_rl_decide: decisions per second on a fake
 * clock that advances 100 ns per decision (10M requests/s offered), for a few key/limit mixes.
 *
 * Build and run (from the repository root; no Makefile rule):
 *   gcc -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror bench/rl_micro.c \
 *       src/policy/ratelimit.c -o /tmp/rl_micro && /tmp/rl_micro [decisions] [scenario]
 * decisions defaults to 10000000; scenario is one name below, or all of them by default.
 * Instructions per decision without perf: run under callgrind with N and 2N decisions and
 * divide the difference of the totals by N, e.g.
 *   for n in 1000000 2000000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *       /tmp/rl_micro $n hot-allow 2>&1 | grep refs; done */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/policy/ratelimit.h"

struct scenario {
    const char *name;
    const char *what;
    uint64_t keys; /* distinct keys, cycled */
    unsigned nlimits;
    uint32_t count[3];
    uint64_t period_ms[3];
    int has_burst[3];
    uint32_t burst[3];
};

static const struct scenario scenarios[] = {
    {"keys64-allow", "64 keys, 1M/s each (all pass)", 64, 1, {1000000}, {1000}, {0}, {0}},
    {"keys64-reject", "64 keys, 100/s burst 20 (mostly rejected)", 64, 1, {100}, {1000}, {1}, {20}},
    {"hot-allow", "1 key, 1e9/minute (all pass)", 1, 1, {1000000000u}, {60000}, {0}, {0}},
    {"hot-reject", "1 key, 100/s burst 20 (mostly rejected)", 1, 1, {100}, {1000}, {1}, {20}},
    {"keys4k-3limits",
     "4096 keys, 100/min b20 + 1000/h + 10000/day",
     4096,
     3,
     {100, 1000, 10000},
     {60000, 3600000, 86400000},
     {1, 0, 0},
     {20, 0, 0}},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run(const struct scenario *sc, uint64_t n)
{
    sl_ratelimiter_t *rl = sl_rl_new(100000);
    sl_rl_limit_t lim[3];
    if (!rl) {
        fprintf(stderr, "rl_micro: out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < sc->nlimits; i++)
        if (sl_rl_limit_init(&lim[i], i + 1, sc->count[i], sc->period_ms[i], sc->has_burst[i],
                             sc->burst[i], 0) != 0) {
            fprintf(stderr, "rl_micro: bad limit\n");
            exit(1);
        }
    /* keys as a caller would pass them: already hashed */
    uint64_t *keys = malloc(sc->keys * sizeof(*keys));
    if (!keys)
        exit(1);
    for (uint64_t k = 0; k < sc->keys; k++)
        keys[k] = (k + 1) * 0x9e3779b97f4a7c15ull;

    uint64_t clock = 1000000000000ull, allowed = 0, k = 0;
    sl_rl_check_t cs[3];
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        for (unsigned j = 0; j < sc->nlimits; j++) {
            cs[j].limit = &lim[j];
            cs[j].key = keys[k];
        }
        allowed += (uint64_t)sl_rl_decide(rl, cs, sc->nlimits, clock);
        clock += 100;
        if (++k == sc->keys)
            k = 0;
    }
    double dt = now_s() - t0;
    printf("%-17s %-46s %10.2f M decisions/s  %5.1f ns/decision  %5.1f%% allowed\n", sc->name,
           sc->what, (double)n / dt / 1e6, dt * 1e9 / (double)n,
           100.0 * (double)allowed / (double)n);
    free(keys);
    sl_rl_free(rl);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    const char *only = argc > 2 ? argv[2] : NULL;
    int ran = 0;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        if (!only || strcmp(only, scenarios[i].name) == 0) {
            run(&scenarios[i], n);
            ran = 1;
        }
    if (!ran) {
        fprintf(stderr, "rl_micro: unknown scenario %s\n", only);
        return 2;
    }
    return 0;
}
