/* test_cache_redis.c - the cache's L2 tier against a real redis-server on a loopback port:
 * binary values in pieces, misses, TTL expiry, tag sets (their expiry only ever raised) and
 * tag purges, key purges, prefix purges with glob characters and many SCAN pages, the purge
 * broadcast between instances, a server that is absent, hung (deadlines, cancel, close) or
 * killed and restarted; and the purge message format, round trips and rejections. Each test
 * has its own loop, run for bounded times only. The server tests are skipped (with a message)
 * when /usr/bin/redis-server is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../../src/cache/cache_redis.h"
#include "../../src/core/log.h"
#include "redis_test.h"

#define PREFIX "test:l2:"
#define MS 1000000ull

static uv_loop_t loop;

static int group_setup(void **state)
{
    SL_UNUSED(state);
    return redis_group_start("test_cache_redis");
}

static int group_teardown(void **state)
{
    SL_UNUSED(state);
    redis_kill();
    return 0;
}

/* Per test: a fresh loop; a running, empty server (resumed, should a failed test have left it
 * stopped); the log counters reset. */
static int setup(void **state)
{
    SL_UNUSED(state);
    n_lost = n_cannot = n_again = 0;
    assert_int_equal(uv_loop_init(&loop), 0);
    if (!have_redis)
        return 0;
    if (redis_pid > 0)
        kill(redis_pid, SIGCONT);
    else
        redis_pid = redis_start(redis_port);
    assert_true(redis_pid > 0);
    redis_flushall();
    return 0;
}

static void run_ms(uint64_t ms);

/* The loop must end with nothing left open: every handle of the module closed. */
static int teardown(void **state)
{
    SL_UNUSED(state);
    run_ms(20);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

/* --- the loop, always for a bounded time --- */

struct runner {
    int (*cond)(void *);
    void *arg;
    int met;
};

static void on_check(uv_timer_t *t)
{
    struct runner *r = t->data;
    if (r->cond && r->cond(r->arg)) {
        r->met = 1;
        uv_stop(t->loop);
    }
}

static void on_watchdog(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Run the loop until cond(arg) holds (checked every ms) or max_ms passed: a watchdog timer
 * stops it, so a bug cannot hang the suite. 1 when cond held. */
static int run_until(int (*cond)(void *), void *arg, uint64_t max_ms)
{
    struct runner r = {cond, arg, 0};
    if (cond && cond(arg))
        return 1;
    uv_timer_t check, watchdog;
    uv_timer_init(&loop, &check);
    uv_timer_init(&loop, &watchdog);
    check.data = &r;
    uv_timer_start(&check, on_check, 1, 1);
    uv_timer_start(&watchdog, on_watchdog, max_ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&check, NULL);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return r.met || (cond && cond(arg));
}

static void run_ms(uint64_t ms)
{
    run_until(NULL, NULL, ms);
}

static int is_connected(void *arg)
{
    return sl_l2_stats(arg)->connected;
}

static int is_subscribed(void *arg)
{
    return sl_l2_stats(arg)->subscribed;
}

static sl_l2_t *mk_l2(int port, uint64_t timeout_ms)
{
    sl_addr_t a = loopback_addr(port);
    sl_l2_t *l = sl_l2_new(&loop, &a, timeout_ms, PREFIX);
    assert_non_null(l);
    return l;
}

static sl_l2_t *mk_connected(uint64_t timeout_ms)
{
    sl_l2_t *l = mk_l2(redis_port, timeout_ms);
    assert_true(run_until(is_connected, l, 3000));
    return l;
}

static void close_l2(sl_l2_t *l)
{
    sl_l2_close(l);
    run_ms(5); /* the close callbacks free it */
}

/* --- gets and purges, waited for --- */

struct got {
    int calls, rc;
    char data[256];
    size_t len;
    uint64_t at_ns;
};

static void on_got(void *arg, int rc, const char *data, size_t len)
{
    struct got *g = arg;
    g->calls++;
    g->rc = rc;
    g->len = len;
    g->at_ns = uv_hrtime();
    if (rc == 0 && len <= sizeof(g->data))
        memcpy(g->data, data, len);
    if (rc != 0)
        assert_int_equal(len, 0);
}

static int got_done(void *arg)
{
    return ((struct got *)arg)->calls > 0;
}

/* One get, waited for: its rc (0, 1, SL_EIO) with g filled, or sl_l2_get's SL_EIO. */
static int get(sl_l2_t *l, const char *key, size_t klen, struct got *g)
{
    memset(g, 0, sizeof(*g));
    void *h = NULL;
    int rc = sl_l2_get(l, key, klen, on_got, g, &h);
    if (rc != 0)
        return rc;
    assert_non_null(h);
    assert_int_equal(g->calls, 0); /* never inside the call */
    assert_true(run_until(got_done, g, 5000));
    assert_int_equal(g->calls, 1);
    return g->rc;
}

static int get_s(sl_l2_t *l, const char *key)
{
    struct got g;
    return get(l, key, strlen(key), &g);
}

struct purged {
    int calls, rc;
    uint64_t removed, at_ns;
};

static void on_purged(void *arg, int rc, uint64_t removed)
{
    struct purged *p = arg;
    p->calls++;
    p->rc = rc;
    p->removed = removed;
    p->at_ns = uv_hrtime();
}

static int purged_done(void *arg)
{
    return ((struct purged *)arg)->calls > 0;
}

/* One purge, waited for: its rc, and *removed. */
static int purge(sl_l2_t *l, int kind, const char *s, size_t n, uint64_t *removed)
{
    struct purged p = {0};
    int rc = sl_l2_purge(l, kind, s, n, on_purged, &p);
    if (rc != 0)
        return rc;
    assert_int_equal(p.calls, 0);
    assert_true(run_until(purged_done, &p, 5000));
    run_ms(2);
    assert_int_equal(p.calls, 1);
    *removed = p.removed;
    return p.rc;
}

static void put_s(sl_l2_t *l, const char *key, const char *val, uint64_t ttl_ms,
                  const sl_slice_t *tags, unsigned ntags)
{
    uv_buf_t b = uv_buf_init((char *)val, (unsigned)strlen(val));
    assert_int_equal(sl_l2_put(l, key, strlen(key), &b, 1, ttl_ms, tags, ntags), 0);
}

static long long sync_int(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *rep = redisCommand(c, fmt, arg);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* --- the message format (no server needed) --- */

static void test_msg_round_trip(void **state)
{
    SL_UNUSED(state);
    char out[256];
    size_t n =
        sl_l2_format_msg(0x0123456789abcdefull, SL_L2_PURGE_TAG, "a\0b", 3, out, sizeof(out));
    static const char want[] = "SLP1 0123456789abcdef 2 3:a\0b";
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(out, want, n);

    static const struct {
        uint64_t sender;
        int kind;
        const char *s;
        size_t n;
    } cases[] = {
        {0, SL_L2_PURGE_KEY, "", 0},
        {UINT64_MAX, SL_L2_PURGE_PREFIX, "/a?b=[1]*", 9},
        {42, SL_L2_PURGE_TAG, "\0\n\r :SLP1 ", 11},
        {0x8000000000000000ull, SL_L2_PURGE_KEY,
         "0123456789012345678901234567890123456789012345678901234567890123456789", 70},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        n = sl_l2_format_msg(cases[i].sender, cases[i].kind, cases[i].s, cases[i].n, out,
                             sizeof(out));
        assert_true(n > cases[i].n);
        /* an exact-size copy, so ASan sees any read past the end */
        char *m = malloc(n);
        assert_non_null(m);
        memcpy(m, out, n);
        uint64_t sender = 1;
        int kind = -1;
        const char *s = NULL;
        size_t sn = 999;
        assert_int_equal(sl_l2_parse_msg(m, n, &sender, &kind, &s, &sn), 0);
        assert_true(sender == cases[i].sender);
        assert_int_equal(kind, cases[i].kind);
        assert_int_equal(sn, cases[i].n);
        assert_memory_equal(s, cases[i].s, sn);
        assert_ptr_equal(s, m + n - sn);
        /* every proper prefix is rejected */
        for (size_t k = 0; k < n; k++) {
            char *p = malloc(k ? k : 1);
            memcpy(p, m, k);
            assert_int_equal(sl_l2_parse_msg(p, k, &sender, &kind, &s, &sn), SL_EBADMSG);
            free(p);
        }
        /* exactly the room it needs, and not a byte less */
        assert_int_equal(
            sl_l2_format_msg(cases[i].sender, cases[i].kind, cases[i].s, cases[i].n, out, n), n);
        assert_int_equal(
            sl_l2_format_msg(cases[i].sender, cases[i].kind, cases[i].s, cases[i].n, out, n - 1),
            0);
        free(m);
    }
    assert_int_equal(sl_l2_format_msg(1, 3, "x", 1, out, sizeof(out)), 0);
    assert_int_equal(sl_l2_format_msg(1, -1, "x", 1, out, sizeof(out)), 0);
    assert_int_equal(sl_l2_format_msg(1, 0, NULL, 1, out, sizeof(out)), 0);
    assert_int_equal(sl_l2_format_msg(1, 0, "x", 1, out, 0), 0);
}

static void test_msg_rejects(void **state)
{
    SL_UNUSED(state);
    static const struct {
        const char *m;
        size_t n;
    } bad[] = {
#define M(s) {s, sizeof(s) - 1}
        M(""),
        M("SLP1"),
        M("SLP2 0123456789abcdef 0 1:x"),  /* version */
        M("slp1 0123456789abcdef 0 1:x"),  /* magic is case-sensitive */
        M("SLP1  0123456789abcdef 0 1:x"), /* two spaces */
        M("SLP1 0123456789ABCDEF 0 1:x"),  /* upper-case hex */
        M("SLP1 0123456789abcdeg 0 1:x"),  /* not hex */
        M("SLP1 0123456789abcde 0 1:x"),   /* 15 digits */
        M("SLP1 0123456789abcdef0 0 1:x"), /* 17 digits */
        M("SLP1 0123456789abcdef 3 1:x"),  /* unknown kind */
        M("SLP1 0123456789abcdef a 1:x"),
        M("SLP1 0123456789abcdef / 1:x"),
        M("SLP1 0123456789abcdef 00 1:x"),
        M("SLP1 0123456789abcdef 0 :x"),   /* no length */
        M("SLP1 0123456789abcdef 0 01:x"), /* leading zero */
        M("SLP1 0123456789abcdef 0 +1:x"),
        M("SLP1 0123456789abcdef 0 -1:x"),
        M("SLP1 0123456789abcdef 0 1 :x"),
        M("SLP1 0123456789abcdef 0 1x"),   /* no ':' */
        M("SLP1 0123456789abcdef 0 2:x"),  /* short */
        M("SLP1 0123456789abcdef 0 1:xy"), /* trailing bytes */
        M("SLP1 0123456789abcdef 0 0:x"),
        M("SLP1 0123456789abcdef 0 1:"),
        M("SLP1 0123456789abcdef 0 18446744073709551617:x"), /* overflows 64 bits */
        M("SLP1 0123456789abcdef 0 99999999999999999999:x"),
        M("SLP1 0123456789abcdef 0 1844674407370955161:x"),
        M("SLP1\t0123456789abcdef 0 1:x"),
        M("SLP1 0123456789abcdef\t0 1:x"),
        M("SLP1 0123456789abcdef 0\t1:x"),
        M("SLP1 0123456789abcdef 0 1:x\0"),
#undef M
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        char *m = malloc(bad[i].n ? bad[i].n : 1);
        memcpy(m, bad[i].m, bad[i].n);
        uint64_t sender = 7;
        int kind = 7;
        const char *s = NULL;
        size_t n = 7;
        if (sl_l2_parse_msg(m, bad[i].n, &sender, &kind, &s, &n) != SL_EBADMSG)
            fail_msg("accepted: case %zu", i);
        assert_true(sender == 7 && kind == 7 && s == NULL && n == 7); /* untouched */
        free(m);
    }
    assert_int_equal(sl_l2_parse_msg(NULL, 0, NULL, NULL, NULL, NULL), SL_EBADMSG);
    /* and the good ones next to them */
    assert_int_equal(sl_l2_parse_msg("SLP1 0123456789abcdef 0 1:x", 27, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(sl_l2_parse_msg("SLP1 ffffffffffffffff 1 0:", 26, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(
        sl_l2_parse_msg("SLP1 0000000000000000 2 10:0123456789", 37, NULL, NULL, NULL, NULL), 0);
}

/* --- against the server --- */

/* A value in three pieces with NUL bytes comes back whole; a key with NUL bytes is a key; the
 * layout in Redis is P "c:" key with PX; a miss is 1; over 512 MiB is refused unread. */
static void test_put_get(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *l = mk_connected(1000);
    static const char p0[] = "head\0er", p1[] = "", p2[] = "\0body\r\n\0";
    uv_buf_t v[3] = {uv_buf_init((char *)p0, sizeof(p0) - 1), uv_buf_init((char *)p1, 0),
                     uv_buf_init((char *)p2, sizeof(p2) - 1)};
    static const char key[] = "GET example.com/x\0y";
    assert_int_equal(sl_l2_put(l, key, sizeof(key) - 1, v, 3, 60000, NULL, 0), 0);
    struct got g;
    assert_int_equal(get(l, key, sizeof(key) - 1, &g), 0);
    static const char want[] = "head\0er\0body\r\n\0";
    assert_int_equal(g.len, sizeof(want) - 1);
    assert_memory_equal(g.data, want, g.len);

    /* the same key without its tail is another key */
    assert_int_equal(get(l, key, sizeof(key) - 3, &g), 1);
    assert_int_equal(get(l, "absent", 6, &g), 1);

    /* one piece, and an empty value */
    put_s(l, "one", "value", 60000, NULL, 0);
    assert_int_equal(sl_l2_put(l, "empty", 5, NULL, 0, 60000, NULL, 0), 0);
    assert_int_equal(get(l, "one", 3, &g), 0);
    assert_int_equal(g.len, 5);
    assert_memory_equal(g.data, "value", 5);
    assert_int_equal(get(l, "empty", 5, &g), 0);
    assert_int_equal(g.len, 0);

    redisContext *sc = sync_ctx();
    redisReply *rep = redisCommand(sc, "GET %b", PREFIX "c:one", sizeof(PREFIX "c:one") - 1);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, "value");
    freeReplyObject(rep);
    long long ttl = sync_int(sc, "PTTL %s", PREFIX "c:one");
    assert_true(ttl > 59000 && ttl <= 60000);
    redisFree(sc);
    close_l2(l);
}

/* Over 512 MiB (Redis' limit) is SL_ETOOBIG, refused before a byte is read (the pieces'
 * bases point at one byte) or sent. */
static void test_put_too_big(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *l = mk_connected(1000);
    char x = 'x';
    uv_buf_t big[3] = {uv_buf_init(&x, 256u << 20), uv_buf_init(&x, 256u << 20),
                       uv_buf_init(&x, 1)};
    assert_int_equal(sl_l2_put(l, "big", 3, big, 3, 1000, NULL, 0), SL_ETOOBIG);
    uv_buf_t huge = {.base = &x, .len = SIZE_MAX};
    uv_buf_t two[2] = {uv_buf_init(&x, 1), huge};
    assert_int_equal(sl_l2_put(l, "big", 3, two, 2, 1000, NULL, 0), SL_ETOOBIG);
    assert_int_equal(sl_l2_stats(l)->put_dropped, 2);
    assert_int_equal(get_s(l, "big"), 1);
    close_l2(l);
}

static void test_ttl_expiry(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *l = mk_connected(1000);
    put_s(l, "short", "lived", 50, NULL, 0);
    put_s(l, "long", "lived", 60000, NULL, 0);
    assert_int_equal(get_s(l, "short"), 0);
    run_ms(150);
    assert_int_equal(get_s(l, "short"), 1);
    assert_int_equal(get_s(l, "long"), 0);
    const sl_l2_stats_t *st = sl_l2_stats(l);
    assert_int_equal(st->gets, 3);
    assert_int_equal(st->hits, 2);
    assert_int_equal(st->misses, 1);
    assert_int_equal(st->puts, 2);
    assert_int_equal(st->put_errors + st->put_dropped + st->errors + st->timeouts, 0);
    close_l2(l);
}

/* Two keys share tag T; a tag purge removes both (and the set) and reports 2; an untagged key
 * and a key of another tag stay. A set's expiry is set by its first key and only raised. */
static void test_tags(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *l = mk_connected(1000);
    redisContext *sc = sync_ctx();
    sl_slice_t t = SL_SLICE_LIT("T"), u = SL_SLICE_LIT("u\0v"), tu[2] = {t, u};

    put_s(l, "k1", "v1", 60000, &t, 1);
    assert_int_equal(get_s(l, "k1"), 0); /* answered after the put's transaction */
    long long ttl = sync_int(sc, "PTTL %s", PREFIX "t:T");
    assert_true(ttl > 59000 && ttl <= 60000);

    put_s(l, "k2", "v2", 5000, tu, 2); /* shorter: T keeps 60 s; u starts at 5 s */
    put_s(l, "k3", "v3", 60000, NULL, 0);
    assert_int_equal(get_s(l, "k2"), 0);
    ttl = sync_int(sc, "PTTL %s", PREFIX "t:T");
    assert_true(ttl > 59000 && ttl <= 60000);
    redisReply *rep = redisCommand(sc, "PTTL %b", PREFIX "t:u\0v", sizeof(PREFIX "t:u\0v") - 1);
    assert_true(rep->integer > 4000 && rep->integer <= 5000);
    freeReplyObject(rep);

    put_s(l, "k4", "v4", 120000, &u, 1); /* longer: u raised to 120 s */
    assert_int_equal(get_s(l, "k4"), 0);
    rep = redisCommand(sc, "PTTL %b", PREFIX "t:u\0v", sizeof(PREFIX "t:u\0v") - 1);
    assert_true(rep->integer > 119000 && rep->integer <= 120000);
    freeReplyObject(rep);
    rep = redisCommand(sc, "SCARD %s", PREFIX "t:T");
    assert_int_equal(rep->integer, 2);
    freeReplyObject(rep);
    rep = redisCommand(sc, "SISMEMBER %s k2", PREFIX "t:T");
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);

    uint64_t removed = 99;
    assert_int_equal(purge(l, SL_L2_PURGE_TAG, "T", 1, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(get_s(l, "k1"), 1);
    assert_int_equal(get_s(l, "k2"), 1);
    assert_int_equal(get_s(l, "k3"), 0);
    assert_int_equal(get_s(l, "k4"), 0);
    assert_int_equal(sync_int(sc, "EXISTS %s", PREFIX "t:T"), 0);

    /* again: nothing left; a tag nobody used: nothing */
    assert_int_equal(purge(l, SL_L2_PURGE_TAG, "T", 1, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(purge(l, SL_L2_PURGE_TAG, "never", 5, &removed), 0);
    assert_int_equal(removed, 0);
    /* u held k2 (gone) and k4 */
    assert_int_equal(purge(l, SL_L2_PURGE_TAG, "u\0v", 3, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(get_s(l, "k4"), 1);
    assert_int_equal(get_s(l, "k3"), 0);

    /* a tag with more members than one DEL takes (1000) */
    static char keys[2500][16];
    for (int i = 0; i < 2500; i++) {
        snprintf(keys[i], sizeof(keys[i]), "m%d", i);
        put_s(l, keys[i], "x", 60000, &t, 1);
    }
    assert_int_equal(get_s(l, "m2499"), 0);
    assert_int_equal(purge(l, SL_L2_PURGE_TAG, "T", 1, &removed), 0);
    assert_int_equal(removed, 2500);
    assert_int_equal(get_s(l, "m0"), 1);
    const sl_l2_stats_t *st = sl_l2_stats(l);
    assert_int_equal(st->purges, 5);
    assert_int_equal(st->purge_errors + st->put_errors + st->errors, 0);
    redisFree(sc);
    close_l2(l);
}

static void test_key_purge(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *l = mk_connected(1000);
    static const char k[] = "k\0*";
    uv_buf_t b = uv_buf_init((char *)"v", 1);
    assert_int_equal(sl_l2_put(l, k, sizeof(k) - 1, &b, 1, 60000, NULL, 0), 0);
    put_s(l, "k", "other", 60000, NULL, 0);
    struct got g;
    assert_int_equal(get(l, k, sizeof(k) - 1, &g), 0);
    uint64_t removed = 99;
    assert_int_equal(purge(l, SL_L2_PURGE_KEY, k, sizeof(k) - 1, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(get(l, k, sizeof(k) - 1, &g), 1);
    assert_int_equal(get_s(l, "k"), 0);
    assert_int_equal(purge(l, SL_L2_PURGE_KEY, k, sizeof(k) - 1, &removed), 0);
    assert_int_equal(removed, 0);
    /* a bad kind is refused at once */
    struct purged p = {0};
    assert_int_equal(sl_l2_purge(l, 3, "k", 1, on_purged, &p), SL_EINVAL);
    run_ms(5);
    assert_int_equal(p.calls, 0);
    close_l2(l);
}

/* The caller's bytes are a prefix, never a pattern: * ? [ ] \ match only themselves. */
static void test_prefix_purge(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *l = mk_connected(1000);
    static const char *const gone[] = {"/a?b=[1]*", "/a?b=[1]*x", "/a?b=[1]*\\y", "/a?b=[1]**"};
    static const char *const stay[] = {"/aXb=[1]*", "/a?b=1*",     "/a?b=[1]",   "/a?b=[1]Z",
                                       "/a?b=[2]*", "/a?b=\\[1]*", "x/a?b=[1]*", "/A?b=[1]*"};
    for (size_t i = 0; i < SL_ARRAY_LEN(gone); i++)
        put_s(l, gone[i], "g", 60000, NULL, 0);
    for (size_t i = 0; i < SL_ARRAY_LEN(stay); i++)
        put_s(l, stay[i], "s", 60000, NULL, 0);
    uint64_t removed = 99;
    assert_int_equal(purge(l, SL_L2_PURGE_PREFIX, "/a?b=[1]*", 9, &removed), 0);
    assert_int_equal(removed, SL_ARRAY_LEN(gone));
    for (size_t i = 0; i < SL_ARRAY_LEN(gone); i++)
        assert_int_equal(get_s(l, gone[i]), 1);
    for (size_t i = 0; i < SL_ARRAY_LEN(stay); i++)
        assert_int_equal(get_s(l, stay[i]), 0);

    /* a backslash, and a NUL byte */
    put_s(l, "/x\\1", "g", 60000, NULL, 0);
    put_s(l, "/x1", "s", 60000, NULL, 0);
    uv_buf_t b = uv_buf_init((char *)"v", 1);
    assert_int_equal(sl_l2_put(l, "/n\0a", 4, &b, 1, 60000, NULL, 0), 0);
    assert_int_equal(sl_l2_put(l, "/n\0", 3, &b, 1, 60000, NULL, 0), 0);
    put_s(l, "/n", "s", 60000, NULL, 0);
    assert_int_equal(purge(l, SL_L2_PURGE_PREFIX, "/x\\", 3, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(get_s(l, "/x1"), 0);
    assert_int_equal(purge(l, SL_L2_PURGE_PREFIX, "/n\0", 3, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(get_s(l, "/n"), 0);

    /* many SCAN pages: 3000 to go among 3000 to stay, and keys outside the prefix P */
    redisContext *sc = sync_ctx();
    for (int i = 0; i < 6000; i++)
        redisAppendCommand(sc, "SET %s%d x", i & 1 ? PREFIX "c:/many/" : PREFIX "c:/other/", i);
    for (int i = 0; i < 100; i++)
        redisAppendCommand(sc, "SET %s%d x", "elsewhere:c:/many/", i);
    for (int i = 0; i < 6100; i++) {
        void *r = NULL;
        assert_int_equal(redisGetReply(sc, &r), REDIS_OK);
        freeReplyObject(r);
    }
    long long before = sync_int(sc, "DBSIZE%s", "");
    assert_int_equal(purge(l, SL_L2_PURGE_PREFIX, "/many/", 6, &removed), 0);
    assert_int_equal(removed, 3000);
    assert_int_equal(sync_int(sc, "DBSIZE%s", ""), before - 3000);
    assert_int_equal(sync_int(sc, "EXISTS %s", PREFIX "c:/other/0"), 1);
    assert_int_equal(sync_int(sc, "EXISTS %s", "elsewhere:c:/many/1"), 1);
    redisFree(sc);
    assert_int_equal(sl_l2_stats(l)->purge_errors, 0);
    close_l2(l);
}

/* --- the purge broadcast --- */

struct msgs {
    int calls, kind;
    char s[64];
    size_t n;
};

static void on_msg(void *arg, int kind, const char *s, size_t n)
{
    struct msgs *m = arg;
    m->calls++;
    m->kind = kind;
    m->n = n;
    if (n <= sizeof(m->s))
        memcpy(m->s, s, n);
}

static int msg_seen(void *arg)
{
    return ((struct msgs *)arg)->calls > 0;
}

static void publish_raw(const char *m, size_t n)
{
    redisContext *sc = sync_ctx();
    redisReply *rep = redisCommand(sc, "PUBLISH %s %b", PREFIX "purge", m, n);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    freeReplyObject(rep);
    redisFree(sc);
}

/* Two instances of two "processes" (set apart with sl_l2_set_sender) and a third sharing the
 * first's id: a purge reaches only the instances of the other sender, kind and bytes exact. */
static void test_pubsub(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *a = mk_connected(1000), *b = mk_connected(1000), *c = mk_connected(1000);
    sl_l2_set_sender(a, 0x1111);
    sl_l2_set_sender(b, 0x2222);
    sl_l2_set_sender(c, 0x1111);
    struct msgs ma = {0}, mb = {0}, mc = {0};
    assert_int_equal(sl_l2_subscribe(a, on_msg, &ma), 0);
    assert_int_equal(sl_l2_subscribe(b, on_msg, &mb), 0);
    assert_int_equal(sl_l2_subscribe(c, on_msg, &mc), 0);
    assert_true(run_until(is_subscribed, a, 3000));
    assert_true(run_until(is_subscribed, b, 3000));
    assert_true(run_until(is_subscribed, c, 3000));

    uint64_t removed;
    static const char tag[] = "tag\0with NUL";
    assert_int_equal(purge(a, SL_L2_PURGE_TAG, tag, sizeof(tag) - 1, &removed), 0);
    assert_true(run_until(msg_seen, &mb, 2000));
    run_ms(50);
    assert_int_equal(mb.calls, 1);
    assert_int_equal(mb.kind, SL_L2_PURGE_TAG);
    assert_int_equal(mb.n, sizeof(tag) - 1);
    assert_memory_equal(mb.s, tag, mb.n);
    assert_int_equal(ma.calls, 0); /* its own */
    assert_int_equal(mc.calls, 0); /* the same sender: the same process's L1 */

    mb.calls = 0;
    assert_int_equal(purge(b, SL_L2_PURGE_PREFIX, "/p?[", 4, &removed), 0);
    assert_true(run_until(msg_seen, &ma, 2000));
    assert_true(run_until(msg_seen, &mc, 2000));
    run_ms(50);
    assert_int_equal(ma.calls, 1);
    assert_int_equal(ma.kind, SL_L2_PURGE_PREFIX);
    assert_int_equal(ma.n, 4);
    assert_memory_equal(ma.s, "/p?[", 4);
    assert_int_equal(mc.calls, 1);
    assert_int_equal(mb.calls, 0);

    /* another process's message reaches all three; garbage reaches none and is counted */
    ma.calls = mb.calls = mc.calls = 0;
    char m[64];
    size_t n = sl_l2_format_msg(0x3333, SL_L2_PURGE_KEY, "", 0, m, sizeof(m));
    publish_raw("SLP1 nonsense", 13);
    publish_raw(m, n);
    assert_true(run_until(msg_seen, &mc, 2000));
    run_ms(50);
    assert_int_equal(ma.calls, 1);
    assert_int_equal(mb.calls, 1);
    assert_int_equal(mc.calls, 1);
    assert_int_equal(mb.kind, SL_L2_PURGE_KEY);
    assert_int_equal(mb.n, 0);
    assert_int_equal(sl_l2_stats(a)->purge_bad_messages, 1);
    assert_int_equal(sl_l2_stats(b)->purge_messages, 2);
    assert_int_equal(sl_l2_stats(a)->purge_messages, 2);
    assert_int_equal(sl_l2_stats(c)->purge_messages, 2);
    close_l2(a);
    close_l2(b);
    close_l2(c);
}

/* --- failures --- */

/* Nothing listening: every call is refused at once, no callback ever runs, one log line per
 * connection however many retries; close frees. */
static void test_not_running(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    int port = free_port();
    sl_l2_t *l = mk_l2(port, 100);
    struct got g = {0};
    struct purged p = {0};
    struct msgs m = {0};
    void *h = NULL;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(sl_l2_get(l, "k", 1, on_got, &g, &h), SL_EIO);
    uv_buf_t b = uv_buf_init((char *)"v", 1);
    sl_slice_t t = SL_SLICE_LIT("t");
    assert_int_equal(sl_l2_put(l, "k", 1, &b, 1, 1000, &t, 1), SL_EIO);
    assert_int_equal(sl_l2_put(l, "k", 1, &b, 1, 1000, NULL, 0), SL_EIO);
    assert_true((uv_hrtime() - t0) / MS < 50);
    assert_int_equal(sl_l2_purge(l, SL_L2_PURGE_KEY, "k", 1, on_purged, &p), SL_EIO);
    assert_int_equal(sl_l2_subscribe(l, on_msg, &m), 0);
    run_ms(700); /* 100 + 200 + 400 ms of backoff: more attempts */
    assert_int_equal(sl_l2_get(l, "k", 1, on_got, &g, &h), SL_EIO);
    run_ms(20);
    assert_int_equal(g.calls + p.calls + m.calls, 0);
    assert_int_equal(n_cannot, 2); /* the command connection's and the subscription's */
    const sl_l2_stats_t *st = sl_l2_stats(l);
    assert_int_equal(st->not_connected, 2);
    assert_int_equal(st->put_dropped, 2);
    assert_int_equal(st->connected + st->subscribed, 0);
    close_l2(l);
}

static int x_done(void *arg)
{
    struct got *g = arg;
    for (int i = 0; i < 8; i++)
        if (g[i].calls == 0)
            return 0;
    return 1;
}

/* A hung server (SIGSTOP): gets call back SL_EIO at their deadline, a cancelled one never; a
 * purge fails at its own deadline (1 s at least); late replies are dropped once it resumes. */
static void test_deadline_and_cancel(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    const uint64_t timeout = 100;
    sl_l2_t *l = mk_connected(timeout);
    put_s(l, "k", "v", 60000, NULL, 0);

    /* cancel on a live server: the reply comes and is dropped */
    struct got c = {0}, g;
    void *h = NULL;
    assert_int_equal(sl_l2_get(l, "k", 1, on_got, &c, &h), 0);
    sl_l2_cancel(l, h);
    assert_int_equal(get_s(l, "k"), 0);
    run_ms(10);
    assert_int_equal(c.calls, 0);

    kill(redis_pid, SIGSTOP);
    struct got x[8];
    uint64_t t_call[8];
    memset(x, 0, sizeof(x));
    struct purged p = {0};
    uint64_t t_purge = uv_hrtime();
    assert_int_equal(sl_l2_purge(l, SL_L2_PURGE_PREFIX, "", 0, on_purged, &p), 0);
    for (int i = 0; i < 8; i++) {
        t_call[i] = uv_hrtime();
        assert_int_equal(sl_l2_get(l, "k", 1, on_got, &x[i], &h), 0);
        if (i == 3)
            sl_l2_cancel(l, h);
        run_ms(3);
    }
    x[3].calls = 1; /* cancelled: not waited for */
    assert_true(run_until(x_done, x, timeout + 500));
    for (int i = 0; i < 8; i++) {
        if (i == 3)
            continue;
        assert_int_equal(x[i].calls, 1);
        assert_int_equal(x[i].rc, SL_EIO);
        uint64_t took_ms = (x[i].at_ns - t_call[i]) / MS;
        assert_true(took_ms + 2 >= timeout && took_ms <= timeout + 50);
    }
    assert_int_equal(sl_l2_stats(l)->timeouts, 7);
    assert_true(run_until(purged_done, &p, 2000));
    assert_int_equal(p.rc, SL_EIO);
    uint64_t took_ms = (p.at_ns - t_purge) / MS;
    assert_true(took_ms + 2 >= 1000 && took_ms <= 1100);
    assert_int_equal(sl_l2_stats(l)->purge_errors, 1);

    kill(redis_pid, SIGCONT);
    assert_int_equal(get(l, "k", 1, &g), 0);
    run_ms(20);
    assert_int_equal(x[3].calls, 1); /* our own mark: the callback never ran */
    assert_int_equal(x[3].rc, 0);
    assert_int_equal(p.calls, 1);
    assert_int_equal(sl_l2_stats(l)->connected, 1);
    assert_int_equal(n_lost, 0);
    close_l2(l);
}

/* A server hung past the stall limit (2 s): the connection is dropped and re-made. */
static void test_stall_reconnect(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *l = mk_connected(100);
    kill(redis_pid, SIGSTOP);
    assert_int_equal(get_s(l, "k"), SL_EIO);
    run_ms(2300);
    assert_int_equal(sl_l2_stats(l)->disconnects, 1);
    assert_int_equal(sl_l2_stats(l)->connected, 0);
    assert_int_equal(n_lost, 1);
    kill(redis_pid, SIGCONT);
    assert_true(run_until(is_connected, l, 5000));
    assert_int_equal(get_s(l, "k"), 1);
    assert_int_equal(n_again, 1);
    close_l2(l);
}

/* close with a get, a purge and a cancelled get pending: the first two call back SL_EIO, once;
 * the cancelled one never; the memory goes with the loop (teardown checks the loop closes). */
static void test_close_pending(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    sl_l2_t *l = mk_connected(1000);
    struct msgs m = {0};
    assert_int_equal(sl_l2_subscribe(l, on_msg, &m), 0);
    assert_true(run_until(is_subscribed, l, 3000));
    kill(redis_pid, SIGSTOP);
    struct got g = {0}, c = {0};
    struct purged p = {0};
    void *h;
    assert_int_equal(sl_l2_get(l, "k", 1, on_got, &g, &h), 0);
    assert_int_equal(sl_l2_get(l, "k", 1, on_got, &c, &h), 0);
    sl_l2_cancel(l, h);
    assert_int_equal(sl_l2_purge(l, SL_L2_PURGE_TAG, "t", 1, on_purged, &p), 0);
    put_s(l, "k", "v", 1000, NULL, 0);
    run_ms(5);
    sl_l2_close(l);
    assert_int_equal(g.calls, 1); /* at once, inside close */
    assert_int_equal(g.rc, SL_EIO);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.rc, SL_EIO);
    run_ms(5);
    kill(redis_pid, SIGCONT);
    run_ms(20);
    assert_int_equal(g.calls, 1);
    assert_int_equal(p.calls, 1);
    assert_int_equal(c.calls, 0);
    assert_int_equal(m.calls, 0);
}

/* close from inside callbacks: a get's reply callback, and a purge's deadline callback while
 * its SCAN is still owed (the purge object must outlive the connection's end). */
static sl_l2_t *closing_l;

static void on_got_close(void *arg, int rc, const char *data, size_t len)
{
    on_got(arg, rc, data, len);
    sl_l2_close(closing_l);
    sl_l2_close(closing_l); /* twice: ignored */
}

static void on_purged_close(void *arg, int rc, uint64_t removed)
{
    on_purged(arg, rc, removed);
    sl_l2_close(closing_l);
}

static void on_msg_close(void *arg, int kind, const char *s, size_t n)
{
    on_msg(arg, kind, s, n);
    sl_l2_close(closing_l);
}

static void test_close_in_callback(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    closing_l = mk_connected(1000);
    struct got g = {0}, g2 = {0};
    void *h;
    assert_int_equal(sl_l2_get(closing_l, "k", 1, on_got_close, &g, &h), 0);
    assert_int_equal(sl_l2_get(closing_l, "k", 1, on_got, &g2, &h), 0);
    assert_true(run_until(got_done, &g, 2000));
    run_ms(10);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.rc, 1);
    assert_int_equal(g2.calls, 1); /* the close completed it */
    assert_int_equal(g2.rc, SL_EIO);

    closing_l = mk_connected(100);
    kill(redis_pid, SIGSTOP);
    struct purged p = {0};
    assert_int_equal(sl_l2_purge(closing_l, SL_L2_PURGE_PREFIX, "x", 1, on_purged_close, &p), 0);
    assert_true(run_until(purged_done, &p, 2000));
    run_ms(10);
    kill(redis_pid, SIGCONT);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.rc, SL_EIO);

    /* a purge message's callback; the purge's own callback closing the purger */
    sl_l2_t *a = mk_connected(1000);
    closing_l = mk_connected(1000);
    sl_l2_set_sender(a, 0xa);
    struct msgs m = {0};
    assert_int_equal(sl_l2_subscribe(closing_l, on_msg_close, &m), 0);
    assert_true(run_until(is_subscribed, closing_l, 3000));
    struct got g3 = {0};
    assert_int_equal(sl_l2_get(closing_l, "k", 1, on_got, &g3, &h), 0);
    memset(&p, 0, sizeof(p));
    assert_int_equal(sl_l2_purge(a, SL_L2_PURGE_KEY, "k", 1, on_purged, &p), 0);
    assert_true(run_until(msg_seen, &m, 2000));
    run_ms(10);
    assert_int_equal(m.calls, 1);
    assert_int_equal(g3.calls, 1); /* answered before the message came */
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.rc, 0);
    closing_l = a;
    memset(&p, 0, sizeof(p));
    assert_int_equal(sl_l2_purge(a, SL_L2_PURGE_TAG, "t", 1, on_purged_close, &p), 0);
    assert_true(run_until(purged_done, &p, 2000));
    run_ms(10);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.rc, 0);
}

static int back_up(void *arg)
{
    sl_l2_t *l = arg;
    return sl_l2_stats(l)->connected && sl_l2_stats(l)->subscribed;
}

/* The server is killed mid-run: gets fail at once or within the deadline, never hang; once
 * restarted on the same port, the same object gets and stores again and is subscribed again. */
static void test_kill_and_restart(void **state)
{
    SL_UNUSED(state);
    NEED_REDIS();
    const uint64_t timeout = 200;
    sl_l2_t *l = mk_connected(timeout);
    struct msgs m = {0};
    assert_int_equal(sl_l2_subscribe(l, on_msg, &m), 0);
    assert_true(run_until(is_subscribed, l, 3000));
    put_s(l, "k", "v", 60000, NULL, 0);
    assert_int_equal(get_s(l, "k"), 0);

    redis_kill();
    uint64_t t0 = uv_hrtime();
    struct got x[8];
    memset(x, 0, sizeof(x));
    void *h;
    for (int i = 0; i < 8; i++) {
        int rc = sl_l2_get(l, "k", 1, on_got, &x[i], &h);
        if (rc == SL_EIO) { /* already known down: no callback will come */
            x[i].calls = 1;
            x[i].rc = SL_EIO;
            x[i].at_ns = uv_hrtime();
        } else {
            assert_int_equal(rc, 0);
        }
        if (i == 3)
            run_ms(5); /* let the loop see the lost connection */
    }
    assert_true(run_until(x_done, x, timeout + 100));
    for (int i = 0; i < 8; i++) {
        assert_int_equal(x[i].rc, SL_EIO);
        assert_true((x[i].at_ns - t0) / MS <= timeout + 50);
    }
    assert_int_equal(sl_l2_stats(l)->connected, 0);
    assert_int_equal(sl_l2_stats(l)->subscribed, 0);
    struct got y = {0};
    t0 = uv_hrtime();
    assert_int_equal(sl_l2_get(l, "k", 1, on_got, &y, &h), SL_EIO); /* fast while down */
    assert_true((uv_hrtime() - t0) / MS < 5);
    run_ms(400); /* a few failed reconnects */
    assert_int_equal(y.calls, 0);

    redis_pid = redis_start(redis_port);
    assert_true(redis_pid > 0);
    assert_true(run_until(back_up, l, 5000));
    assert_int_equal(get_s(l, "k"), 1); /* a fresh server */
    put_s(l, "k", "again", 60000, NULL, 0);
    assert_int_equal(get_s(l, "k"), 0);
    char msg[64];
    size_t n = sl_l2_format_msg(0x4444, SL_L2_PURGE_KEY, "k", 1, msg, sizeof(msg));
    publish_raw(msg, n);
    assert_true(run_until(msg_seen, &m, 2000));
    const sl_l2_stats_t *st = sl_l2_stats(l);
    assert_int_equal(st->connects, 2);
    assert_int_equal(st->disconnects, 1);
    assert_int_equal(st->sub_connects, 2);
    assert_int_equal(st->sub_disconnects, 1);
    assert_int_equal(n_lost, 2); /* once per connection and outage, not per attempt */
    assert_int_equal(n_cannot, 0);
    assert_int_equal(n_again, 2);
    close_l2(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_msg_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msg_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_and_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
