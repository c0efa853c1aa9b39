/* test_ratelimit_redis.c - the shared limiter against a real redis-server on a loopback port:
 * exact allow/deny sequences and numbers equal to the in-memory sl_rl_decide's, multi-limit
 * atomicity and dry-run (checked with GETs on a second connection), a budget shared by two
 * instances, NOSCRIPT recovery, deadlines on a hung server, a killed and restarted server,
 * cancel and close. Skipped (with a message) when /usr/bin/redis-server is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../src/core/log.h"
#include "../../src/policy/ratelimit_redis.h"
#include "redis_test.h"

#define PREFIX "test:rl:"
#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1000 * SEC)

static uv_loop_t loop;

static int group_setup(void **state)
{
    SL_UNUSED(state);
    redis_group_start("test_ratelimit_redis");
    if (have_redis)
        uv_loop_init(&loop);
    return 0;
}

static int group_teardown(void **state)
{
    SL_UNUSED(state);
    if (!have_redis)
        return 0;
    redis_kill();
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

/* Per test: skip without a server, empty the database, reset the log counters. */
static int setup(void **state)
{
    SL_UNUSED(state);
    n_lost = n_cannot = n_again = 0;
    if (have_redis)
        redis_flushall();
    return 0;
}

/* --- the loop --- */

static void on_tick(uv_timer_t *t)
{
    SL_UNUSED(t);
}

/* Run the loop until cond(arg) or max_ms passed; 1 when cond held. */
static int run_until(int (*cond)(void *), void *arg, uint64_t max_ms)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 1, 1);
    uint64_t end = uv_hrtime() + max_ms * MS;
    int ok;
    while (!(ok = cond ? cond(arg) : 0) && uv_hrtime() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static void run_ms(uint64_t ms)
{
    run_until(NULL, NULL, ms);
}

static int is_connected(void *arg)
{
    return sl_rl_redis_stats(arg)->connected;
}

static sl_rl_redis_t *mk_redis(int port, uint64_t timeout_ms)
{
    sl_addr_t a = loopback_addr(port);
    sl_rl_redis_t *r = sl_rl_redis_new(&loop, &a, timeout_ms, PREFIX);
    assert_non_null(r);
    return r;
}

static sl_rl_redis_t *mk_connected(uint64_t timeout_ms)
{
    sl_rl_redis_t *r = mk_redis(redis_port, timeout_ms);
    assert_true(run_until(is_connected, r, 3000));
    return r;
}

static void close_redis(sl_rl_redis_t *r)
{
    sl_rl_redis_close(r);
    run_ms(5); /* the close callbacks free it */
}

struct result {
    int calls, res;
    uint64_t at_ns;
};

static void on_result(void *arg, int res)
{
    struct result *x = arg;
    x->calls++;
    x->res = res;
    x->at_ns = uv_hrtime();
}

static int is_done(void *arg)
{
    return ((struct result *)arg)->calls > 0;
}

/* One decision, waited for: 1, 0 or SL_EIO. */
static int decide(sl_rl_redis_t *r, sl_rl_check_t *c, unsigned n)
{
    struct result x = {0};
    void *h = NULL;
    int rc = sl_rl_redis_decide(r, c, n, on_result, &x, &h);
    if (rc != 0)
        return rc;
    assert_int_equal(x.calls, 0); /* never inside the call */
    assert_true(run_until(is_done, &x, 5000));
    assert_int_equal(x.calls, 1);
    return x.res;
}

static sl_rl_limit_t mk(uint32_t id, uint32_t count, uint64_t period_ms, int has_burst,
                        uint32_t burst, int dry_run)
{
    sl_rl_limit_t l;
    assert_int_equal(sl_rl_limit_init(&l, id, count, period_ms, has_burst, burst, dry_run), 0);
    return l;
}

static void assert_same(const sl_rl_check_t *a, const sl_rl_check_t *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(a[i].allowed, b[i].allowed);
        assert_int_equal(a[i].remaining, b[i].remaining);
        assert_int_equal(a[i].reset_s, b[i].reset_s);
        assert_int_equal(a[i].retry_after_s, b[i].retry_after_s);
    }
}

/* The value Redis holds for (limit, key), or -1 when absent. */
static long long get_tat(redisContext *c, uint32_t id, uint64_t key)
{
    char k[128];
    snprintf(k, sizeof(k), PREFIX "%x:%016llx", id, (unsigned long long)key);
    redisReply *rep = redisCommand(c, "GET %s", k);
    assert_non_null(rep);
    long long v = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : -1;
    freeReplyObject(rep);
    return v;
}

static long long pttl(redisContext *c, uint32_t id, uint64_t key)
{
    char k[128];
    snprintf(k, sizeof(k), PREFIX "%x:%016llx", id, (unsigned long long)key);
    redisReply *rep = redisCommand(c, "PTTL %s", k);
    assert_non_null(rep);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* --- tests --- */

/* 5/second: exactly 5 pass, then retry after 1 s; every number as the in-memory limiter's. */
static void test_five_per_second(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_rl_redis_t *r = mk_connected(1000);
    sl_ratelimiter_t *mem = sl_rl_new(64);
    sl_rl_limit_t l = mk(1, 5, 1000, 0, 0, 0);
    for (int i = 0; i < 7; i++) {
        sl_rl_check_t c = {.limit = &l, .key = 42}, m = {.limit = &l, .key = 42};
        int res = decide(r, &c, 1);
        int want = sl_rl_decide(mem, &m, 1, T0); /* back to back: within a ms of each other */
        assert_int_equal(res, i < 5 ? 1 : 0);
        assert_int_equal(res, want);
        assert_same(&c, &m, 1);
        if (i >= 5)
            assert_int_equal(c.retry_after_s, 1);
    }
    const sl_rl_redis_stats_t *st = sl_rl_redis_stats(r);
    assert_int_equal(st->calls, 7);
    assert_int_equal(st->latency_count, 7);
    assert_int_equal(st->errors + st->timeouts + st->not_connected, 0);
    sl_rl_free(mem);
    close_redis(r);
}

static int reached(void *arg)
{
    return uv_hrtime() >= *(uint64_t *)arg;
}

/* A timed sequence (10/s, burst 2: 3 at once) against sl_rl_decide on the ideal times. The
 * schedule keeps every decision >= 10 ms away from a boundary, so the sub-ms skew between the
 * two clocks cannot change an outcome; the numbers must then be identical. */
static void test_same_as_memory(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    static const uint64_t at_ms[] = {0,   0,   0,   0,   0,   37,  58,  142,
                                     171, 260, 333, 349, 720, 731, 736, 740};
    sl_rl_redis_t *r = mk_connected(1000);
    sl_ratelimiter_t *mem = sl_rl_new(64);
    sl_rl_limit_t l = mk(7, 10, 1000, 1, 2, 0);
    uint64_t start = uv_hrtime();
    int allowed = 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(at_ms); i++) {
        uint64_t when = start + at_ms[i] * MS;
        run_until(reached, &when, 2000);
        sl_rl_check_t c = {.limit = &l, .key = 9}, m = {.limit = &l, .key = 9};
        int res = decide(r, &c, 1);
        int want = sl_rl_decide(mem, &m, 1, T0 + at_ms[i] * MS);
        assert_int_equal(res, want);
        assert_same(&c, &m, 1);
        allowed += res;
    }
    assert_int_equal(allowed, 9);
    sl_rl_free(mem);
    close_redis(r);
}

/* A request rejected by one limit changes no key; a dry-run limit never rejects, and is only
 * advanced where it would allow. Every key expires when its TAT has drained. */
static void test_multi_limit_atomic(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_rl_redis_t *r = mk_connected(1000);
    sl_ratelimiter_t *mem = sl_rl_new(64);
    redisContext *sc = sync_ctx();
    assert_non_null(sc);
    sl_rl_limit_t l[3] = {mk(1, 2, 3600000, 0, 0, 0), mk(2, 100, 3600000, 0, 0, 0),
                          mk(3, 1, 3600000, 0, 0, 1)};
    uint64_t key = 0xabcdef0123456789ull;

    for (int i = 0; i < 3; i++) {
        long long before1 = get_tat(sc, 1, key), before2 = get_tat(sc, 2, key);
        sl_rl_check_t c[2] = {{.limit = &l[0], .key = key}, {.limit = &l[1], .key = key}};
        sl_rl_check_t m[2] = {{.limit = &l[0], .key = key}, {.limit = &l[1], .key = key}};
        int res = decide(r, c, 2);
        assert_int_equal(res, i < 2);
        assert_int_equal(sl_rl_decide(mem, m, 2, T0), res);
        if (i < 2) {
            assert_same(c, m, 2);
            assert_true(get_tat(sc, 2, key) > before2);
        } else {
            assert_int_equal(c[0].allowed, 0);
            assert_int_equal(c[1].allowed, 1);
            assert_int_equal(c[0].remaining, 0);
            assert_int_equal(c[1].remaining, 98); /* not charged: still 98 after two */
            assert_int_equal(m[1].remaining, 98);
            assert_true(c[0].retry_after_s >= 1799 && c[0].retry_after_s <= 1800);
            assert_int_equal(get_tat(sc, 1, key), before1);
            assert_int_equal(get_tat(sc, 2, key), before2);
        }
    }
    long long ttl = pttl(sc, 2, key); /* two requests x 36 s to drain */
    assert_true(ttl > 70000 && ttl <= 72000);

    /* dry-run: 1/hour never rejects; its key only moves on the first request */
    uint64_t k2 = 77;
    sl_rl_check_t c[2] = {{.limit = &l[1], .key = k2}, {.limit = &l[2], .key = k2}};
    assert_int_equal(decide(r, c, 2), 1);
    assert_int_equal(c[1].allowed, 1);
    long long d1 = get_tat(sc, 3, k2), a1 = get_tat(sc, 2, k2);
    assert_true(d1 > 0);
    assert_int_equal(decide(r, c, 2), 1);
    assert_int_equal(c[1].allowed, 0);
    assert_true(c[1].retry_after_s >= 3599 && c[1].retry_after_s <= 3600);
    assert_int_equal(get_tat(sc, 3, k2), d1);
    assert_true(get_tat(sc, 2, k2) > a1);

    redisFree(sc);
    sl_rl_free(mem);
    close_redis(r);
}

/* Two instances on one server share one budget: 100/hour, 300 alternating -> 100 pass. */
static void test_shared_budget(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_rl_redis_t *a = mk_connected(1000), *b = mk_connected(1000);
    sl_rl_limit_t l = mk(5, 100, 3600000, 0, 0, 0);
    int allowed = 0;
    for (int i = 0; i < 300; i++) {
        sl_rl_check_t c = {.limit = &l, .key = 1234};
        int res = decide(i & 1 ? b : a, &c, 1);
        assert_true(res == 0 || res == 1);
        allowed += res;
    }
    assert_int_equal(allowed, 100);
    assert_int_equal(sl_rl_redis_stats(a)->calls, 150);
    assert_int_equal(sl_rl_redis_stats(b)->calls, 150);
    close_redis(a);
    close_redis(b);
}

/* SCRIPT FLUSH behind the module's back: NOSCRIPT is answered by a re-load and one retry. */
static void test_noscript_retry(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_rl_redis_t *r = mk_connected(1000);
    sl_rl_limit_t l = mk(1, 5, 1000, 0, 0, 0);
    sl_rl_check_t c = {.limit = &l, .key = 1};
    assert_int_equal(decide(r, &c, 1), 1);
    redisContext *sc = sync_ctx();
    freeReplyObject(redisCommand(sc, "SCRIPT FLUSH"));
    redisFree(sc);
    assert_int_equal(decide(r, &c, 1), 1);
    assert_int_equal(c.remaining, 3);
    assert_int_equal(decide(r, &c, 1), 1);
    assert_int_equal(sl_rl_redis_stats(r)->errors, 0);
    close_redis(r);
}

struct batch {
    struct result x[32];
    int n;
};

struct many {
    struct result x[200];
    int n;
};

static int many_done(void *arg)
{
    struct many *m = arg;
    for (int i = 0; i < m->n; i++)
        if (m->x[i].calls == 0)
            return 0;
    return 1;
}

/* Decisions asked for in one loop iteration go out together: 150 at once for one key under
 * 5/second + burst 20 pass exactly as 150 in-memory decisions in order (21 pass), in 3
 * EVALSHA calls (64 a batch); requests with 16 limits each fill a batch at 16 (256 keys). A
 * request cancelled inside a batch is still charged, and its checks are never written (the
 * caller's memory may be reused by then). */
static void test_batches(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_rl_redis_t *r = mk_connected(2000);
    sl_ratelimiter_t *mem = sl_rl_new(64);
    sl_rl_limit_t l = mk(4, 5, 1000, 1, 20, 0);
    static sl_rl_check_t c[200];
    static struct many m;
    void *h;
    m.n = 150;
    memset(m.x, 0, sizeof(m.x));
    for (int i = 0; i < m.n; i++) {
        c[i] = (sl_rl_check_t){.limit = &l, .key = 99};
        assert_int_equal(sl_rl_redis_decide(r, &c[i], 1, on_result, &m.x[i], &h), 0);
        if (i == 7) { /* cancelled; the caller's checks then reused for something else */
            sl_rl_redis_cancel(r, h);
            memset(&c[i], 0x5a, sizeof(c[i]));
        }
    }
    m.x[7].calls = 1; /* not waited for */
    assert_int_equal(sl_rl_redis_stats(r)->batches, 0); /* nothing sent inside the calls */
    assert_true(run_until(many_done, &m, 5000));
    run_ms(20);
    assert_int_equal(sl_rl_redis_stats(r)->batches, 3);
    int allowed = 0;
    for (int i = 0; i < m.n; i++) {
        sl_rl_check_t want = {.limit = &l, .key = 99};
        int w = sl_rl_decide(mem, &want, 1, T0);
        if (i == 7) {
            unsigned char pat[sizeof(c[i])];
            memset(pat, 0x5a, sizeof(pat));
            assert_memory_equal(&c[i], pat, sizeof(pat));
            assert_int_equal(w, 1); /* charged all the same */
            continue;
        }
        assert_int_equal(m.x[i].calls, 1);
        assert_int_equal(m.x[i].res, w);
        assert_same(&c[i], &want, 1);
        allowed += m.x[i].res;
    }
    assert_int_equal(allowed, 20); /* 21 passed, one of them the cancelled request */

    /* 16 limits a request: 256 keys a batch, so 20 requests make 2 batches */
    static sl_rl_limit_t ls[16];
    static sl_rl_check_t cs[20][16];
    for (int k = 0; k < 16; k++)
        ls[k] = mk((uint32_t)(100 + k), 1000, 1000, 0, 0, 0);
    m.n = 20;
    memset(m.x, 0, sizeof(m.x));
    uint64_t before = sl_rl_redis_stats(r)->batches;
    for (int i = 0; i < m.n; i++) {
        for (int k = 0; k < 16; k++)
            cs[i][k] = (sl_rl_check_t){.limit = &ls[k], .key = (uint64_t)i};
        assert_int_equal(sl_rl_redis_decide(r, cs[i], 16, on_result, &m.x[i], &h), 0);
    }
    assert_true(run_until(many_done, &m, 5000));
    assert_int_equal(sl_rl_redis_stats(r)->batches - before, 2);
    for (int i = 0; i < m.n; i++) {
        assert_int_equal(m.x[i].res, 1);
        for (int k = 0; k < 16; k++)
            assert_int_equal(cs[i][k].remaining, 999);
    }
    assert_int_equal(sl_rl_redis_stats(r)->errors, 0);
    sl_rl_free(mem);
    close_redis(r);
}

static int batch_done(void *arg)
{
    struct batch *b = arg;
    for (int i = 0; i < b->n; i++)
        if (b->x[i].calls == 0)
            return 0;
    return 1;
}

/* A hung server (SIGSTOP): every decision calls back SL_EIO at its deadline; cancelled ones
 * never; the late replies are dropped (and freed) once the server resumes. */
static void test_deadline_and_cancel(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    const uint64_t timeout = 100;
    sl_rl_redis_t *r = mk_connected(timeout);
    sl_rl_limit_t l = mk(1, 1000, 1000, 0, 0, 0);
    sl_rl_check_t c[32];
    struct batch b = {.n = 10};
    uint64_t t_call[32];

    /* cancel on a live server: the reply comes and is dropped */
    struct result cx = {0};
    void *h = NULL;
    c[31] = (sl_rl_check_t){.limit = &l, .key = 5};
    assert_int_equal(sl_rl_redis_decide(r, &c[31], 1, on_result, &cx, &h), 0);
    sl_rl_redis_cancel(r, h);
    sl_rl_check_t c2 = {.limit = &l, .key = 5};
    assert_int_equal(decide(r, &c2, 1), 1);
    assert_int_equal(c2.remaining, 998); /* the cancelled one was still counted */
    assert_int_equal(cx.calls, 0);

    kill(redis_pid, SIGSTOP);
    for (int i = 0; i < b.n; i++) {
        c[i] = (sl_rl_check_t){.limit = &l, .key = (uint64_t)i};
        t_call[i] = uv_hrtime();
        assert_int_equal(sl_rl_redis_decide(r, &c[i], 1, on_result, &b.x[i], &h), 0);
        if (i == 3)
            sl_rl_redis_cancel(r, h);
        run_ms(3);
    }
    b.x[3].calls = 1; /* cancelled: not waited for */
    assert_true(run_until(batch_done, &b, timeout + 500));
    run_ms(50);
    for (int i = 0; i < b.n; i++) {
        if (i == 3)
            continue;
        assert_int_equal(b.x[i].calls, 1);
        assert_int_equal(b.x[i].res, SL_EIO);
        uint64_t took_ms = (b.x[i].at_ns - t_call[i]) / MS;
        assert_true(took_ms + 2 >= timeout && took_ms <= timeout + 50);
    }
    assert_int_equal(b.x[3].calls, 1); /* our own mark: the callback never ran */
    assert_int_equal(sl_rl_redis_stats(r)->timeouts, 9);

    kill(redis_pid, SIGCONT);
    sl_rl_check_t c3 = {.limit = &l, .key = 77};
    assert_int_equal(decide(r, &c3, 1), 1);
    assert_int_equal(sl_rl_redis_stats(r)->connected, 1);
    assert_int_equal(n_lost, 0);
    close_redis(r);
}

/* A server that stays hung past the stall limit (2 s): the connection is dropped and re-made
 * (once logged); when the server resumes, decisions pass again without a new object. */
static void test_stall_reconnect(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_rl_redis_t *r = mk_connected(100);
    sl_rl_limit_t l = mk(1, 10, 1000, 0, 0, 0);
    sl_rl_check_t c = {.limit = &l, .key = 1};
    kill(redis_pid, SIGSTOP);
    assert_int_equal(decide(r, &c, 1), SL_EIO);
    run_ms(2300);
    assert_int_equal(sl_rl_redis_stats(r)->disconnects, 1);
    assert_int_equal(sl_rl_redis_stats(r)->connected, 0);
    assert_int_equal(n_lost, 1);
    kill(redis_pid, SIGCONT);
    assert_true(run_until(is_connected, r, 6000));
    assert_int_equal(decide(r, &c, 1), 1);
    assert_int_equal(n_lost, 1);
    assert_int_equal(n_again, 1);
    close_redis(r);
}

/* close with decisions pending: each calls back SL_EIO, once; the memory goes with the loop. */
static void test_close_pending(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_rl_redis_t *r = mk_connected(1000);
    sl_rl_limit_t l = mk(1, 10, 1000, 0, 0, 0);
    sl_rl_check_t c[4];
    struct batch b = {.n = 4};
    void *h;
    kill(redis_pid, SIGSTOP);
    for (int i = 0; i < b.n; i++) {
        c[i] = (sl_rl_check_t){.limit = &l, .key = (uint64_t)i};
        assert_int_equal(sl_rl_redis_decide(r, &c[i], 1, on_result, &b.x[i], &h), 0);
    }
    sl_rl_redis_cancel(r, h);
    sl_rl_redis_close(r);
    run_ms(5);
    kill(redis_pid, SIGCONT);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(b.x[i].calls, 1);
        assert_int_equal(b.x[i].res, SL_EIO);
    }
    assert_int_equal(b.x[3].calls, 0);
}

/* Nothing listening: SL_EIO at once, one log line however many retries, and close frees. */
static void test_not_connected(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    int port = free_port();
    sl_rl_redis_t *r = mk_redis(port, 100);
    sl_rl_limit_t l = mk(1, 10, 1000, 0, 0, 0);
    sl_rl_check_t c = {.limit = &l, .key = 1};
    struct result x = {0};
    void *h;
    assert_int_equal(sl_rl_redis_decide(r, &c, 1, on_result, &x, &h), SL_EIO);
    run_ms(800); /* 100 + 200 + 400 ms of backoff: 3 more attempts */
    assert_int_equal(sl_rl_redis_decide(r, &c, 1, on_result, &x, &h), SL_EIO);
    run_ms(20);
    assert_int_equal(x.calls, 0);
    assert_int_equal(n_cannot, 1);
    assert_int_equal(sl_rl_redis_stats(r)->not_connected, 2);
    assert_int_equal(sl_rl_redis_stats(r)->connected, 0);
    close_redis(r);
}

/* The server is killed mid-run: pending and new decisions fail within the deadline, never
 * hang; restarted on the same port, the same object decides again after its backoff. */
static void test_kill_and_restart(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    const uint64_t timeout = 200;
    sl_rl_redis_t *r = mk_connected(timeout);
    sl_rl_limit_t l = mk(1, 1000, 1000, 0, 0, 0);
    sl_rl_check_t c[32];
    struct batch b = {.n = 20};
    uint64_t t0 = uv_hrtime();
    void *h;

    sl_rl_check_t c0 = {.limit = &l, .key = 3};
    assert_int_equal(decide(r, &c0, 1), 1);
    redis_kill();
    for (int i = 0; i < b.n; i++) {
        c[i] = (sl_rl_check_t){.limit = &l, .key = (uint64_t)i};
        int rc = sl_rl_redis_decide(r, &c[i], 1, on_result, &b.x[i], &h);
        if (rc == SL_EIO) { /* already known down: no callback will come */
            b.x[i].calls = 1;
            b.x[i].res = SL_EIO;
            b.x[i].at_ns = uv_hrtime();
        } else {
            assert_int_equal(rc, 0);
        }
        if (i == 10)
            run_ms(5); /* let the loop see the lost connection */
    }
    assert_true(run_until(batch_done, &b, timeout + 100));
    for (int i = 0; i < b.n; i++) {
        assert_int_equal(b.x[i].calls, 1);
        assert_int_equal(b.x[i].res, SL_EIO);
        assert_true((b.x[i].at_ns - t0) / MS <= timeout + 50);
    }
    assert_int_equal(sl_rl_redis_stats(r)->connected, 0);
    run_ms(400); /* a few failed reconnects */

    redis_pid = redis_start(redis_port);
    assert_true(redis_pid > 0);
    assert_true(run_until(is_connected, r, 6000));
    sl_rl_check_t c1 = {.limit = &l, .key = 3};
    assert_int_equal(decide(r, &c1, 1), 1);
    assert_int_equal(c1.remaining, 999); /* a fresh server: a fresh budget */
    const sl_rl_redis_stats_t *st = sl_rl_redis_stats(r);
    assert_int_equal(st->connects, 2);
    assert_int_equal(st->disconnects, 1);
    assert_int_equal(n_lost, 1); /* once per outage, not per request or attempt */
    assert_int_equal(n_cannot, 0);
    assert_int_equal(n_again, 1);
    close_redis(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_five_per_second, setup),
        cmocka_unit_test_setup(test_same_as_memory, setup),
        cmocka_unit_test_setup(test_multi_limit_atomic, setup),
        cmocka_unit_test_setup(test_shared_budget, setup),
        cmocka_unit_test_setup(test_batches, setup),
        cmocka_unit_test_setup(test_noscript_retry, setup),
        cmocka_unit_test_setup(test_deadline_and_cancel, setup),
        cmocka_unit_test_setup(test_stall_reconnect, setup),
        cmocka_unit_test_setup(test_close_pending, setup),
        cmocka_unit_test_setup(test_not_connected, setup),
        cmocka_unit_test_setup(test_kill_and_restart, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
