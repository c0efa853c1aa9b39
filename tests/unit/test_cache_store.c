/* test_cache_store.c - the L1 object store: put/get/replace, Vary variants, reference lifetimes
 * (evicted and replaced objects stay readable while held), the byte budget and LRU order under
 * 2x the budget, max_object, coalescing (one leader among threads, waiters called exactly once,
 * hit-for-pass and its expiry, cancel racing with publish, the waiter bound), purges (also during
 * a fill), and a multi-threaded stress test that checks the invariants at the end. Run it under
 * SAN=1 too: leaks and use-after-free are the failures that matter here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "../../src/cache/store.h"

/* Checks inside worker threads: cmocka's asserts longjmp to the main thread's test, so a thread
 * records the failure (file:line on stderr) and the test asserts on the count after join. */
static int thread_failures;
#define TCHECK(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            __atomic_fetch_add(&thread_failures, 1, __ATOMIC_RELAXED);                             \
        }                                                                                          \
    } while (0)

/* The caller's metadata in these tests: an expiry on the fake clock. */
struct meta {
    uint64_t expires_ms;
    uint64_t serial;
};

static sl_slice_t sl(const char *s)
{
    return (sl_slice_t){s, strlen(s)};
}

static sl_cache_store_t *mkstore(size_t memory, size_t max_object, unsigned shards)
{
    sl_cache_store_config_t cfg = {.memory = memory,
                                   .max_object = max_object,
                                   .meta_size = sizeof(struct meta),
                                   .shards = shards};
    sl_cache_store_t *s = NULL;
    assert_int_equal(sl_cache_store_new(&cfg, &s), 0);
    assert_non_null(s);
    return s;
}

static sl_cache_stats_t stats(sl_cache_store_t *s)
{
    sl_cache_stats_t st;
    sl_cache_store_stats(s, &st);
    return st;
}

/* Every fill done, every reference released: the books balance exactly. */
static void assert_quiet(sl_cache_store_t *s)
{
    assert_int_equal(sl_cache_store_verify(s), 0);
    sl_cache_stats_t st = stats(s);
    assert_int_equal(st.bytes, st.stored);
    assert_int_equal(st.fills, 0);
    assert_int_equal(st.waiters, 0);
}

/* A body of n bytes derived from seed, so a reader can check it is intact. */
static void fill_body(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (seed + i * 7) % 26);
}

static int body_ok(const sl_cache_obj_t *o, size_t n, unsigned seed)
{
    if (o->body.len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (o->body.p[i] != (char)('a' + (seed + i * 7) % 26))
            return 0;
    return 1;
}

struct put_args {
    const char *key, *vary, *skey, *head;
    const sl_slice_t *tags;
    unsigned ntags;
    size_t body;   /* body length */
    unsigned seed; /* body content */
    uint64_t expires_ms;
    size_t chunk; /* append in chunks of this size (0: one append) */
    int hint;     /* pass the length as body_hint */
};

/* Build an object (as a filler would); 0 or the builder's error. */
static int build(sl_cache_store_t *s, sl_cache_builder_t *b, const struct put_args *a)
{
    struct meta m = {.expires_ms = a->expires_ms ? a->expires_ms : UINT64_MAX, .serial = a->seed};
    sl_cache_obj_spec_t spec = {.key = sl(a->key),
                                .vary = sl(a->vary ? a->vary : ""),
                                .skey = sl(a->skey ? a->skey : ""),
                                .head = sl(a->head ? a->head : "HTTP/1.1 200 OK\r\n\r\n"),
                                .meta = &m,
                                .tags = a->tags,
                                .ntags = a->ntags,
                                .body_hint = a->hint ? a->body : 0};
    int r = sl_cache_builder_init(s, b, &spec);
    if (r)
        return r;
    static __thread char buf[128 << 10]; /* per thread: builders run on several */
    if (a->body > sizeof(buf))
        return SL_EINVAL;
    fill_body(buf, a->body, a->seed);
    size_t step = a->chunk ? a->chunk : (a->body ? a->body : 1);
    for (size_t off = 0; off < a->body; off += step) {
        size_t n = a->body - off < step ? a->body - off : step;
        r = sl_cache_builder_append(b, buf + off, n);
        if (r)
            return r;
    }
    return 0;
}

/* Build and publish (no fill); returns publish's result. */
static int put(sl_cache_store_t *s, const struct put_args *a, uint64_t now)
{
    sl_cache_builder_t b;
    int r = build(s, &b, a);
    if (r) {
        sl_cache_builder_discard(&b);
        return r;
    }
    return sl_cache_publish(s, &b, NULL, now, NULL);
}

/* A request: its Accept-Encoding and Accept-Language, the fake clock for freshness. */
struct rq {
    sl_cache_req_t req;
    const char *ae, *lang;
    uint64_t now;
    int vary_calls;
    char scratch[128];
};

static int vary_cb(void *arg, const char *names, size_t len, char *out, size_t cap)
{
    struct rq *q = arg;
    size_t n = 0;
    q->vary_calls++;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && names[j] != ',')
            j++;
        const char *v = "";
        if (j - i == 15 && memcmp(names + i, "accept-encoding", 15) == 0)
            v = q->ae ? q->ae : "";
        else if (j - i == 15 && memcmp(names + i, "accept-language", 15) == 0)
            v = q->lang ? q->lang : "";
        size_t vl = strlen(v);
        if (n + vl + 1 > cap)
            return -1;
        memcpy(out + n, v, vl);
        n += vl;
        out[n++] = '\n';
        i = j + 1;
    }
    return (int)n;
}

static int fresh_cb(void *arg, const sl_cache_obj_t *o)
{
    const struct rq *q = arg;
    const struct meta *m = o->meta;
    return m->expires_ms > q->now;
}

static void rq_init(struct rq *q, const char *key, const char *ae)
{
    memset(q, 0, sizeof(*q));
    q->ae = ae;
    q->req.key = sl(key);
    q->req.vary = vary_cb;
    q->req.fresh = fresh_cb;
    q->req.arg = q;
    q->req.scratch = q->scratch;
    q->req.scratch_cap = sizeof(q->scratch);
}

static sl_cache_obj_t *get(sl_cache_store_t *s, const char *key, const char *ae, uint64_t now)
{
    struct rq q;
    rq_init(&q, key, ae);
    return sl_cache_lookup(s, &q.req, now);
}

/* A waiter that records its callback. */
struct wctx {
    sl_cache_waiter_t w;
    int calls; /* atomic */
    int outcome;
    sl_cache_obj_t *obj;
};

static void on_wait(void *arg, int outcome, sl_cache_obj_t *obj)
{
    struct wctx *c = arg;
    c->outcome = outcome;
    c->obj = obj;
    __atomic_fetch_add(&c->calls, 1, __ATOMIC_SEQ_CST);
}

static void wctx_init(struct wctx *c)
{
    memset(c, 0, sizeof(*c));
    sl_cache_waiter_init(&c->w, on_wait, c);
}

/* ---------------------------------------------------------------------------------------- */

static void test_put_get(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    sl_slice_t tags[2] = {sl("post:1"), sl("blog")};
    struct put_args a = {.key = "example.com/a?x=1",
                         .head = "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n",
                         .tags = tags,
                         .ntags = 2,
                         .body = 3000,
                         .seed = 7,
                         .chunk = 100};
    assert_int_equal(put(s, &a, 1), 0);
    assert_null(get(s, "example.com/a?x=2", NULL, 2));
    assert_null(get(s, "example.com/a?x=", NULL, 2));

    sl_cache_obj_t *o = get(s, "example.com/a?x=1", NULL, 2);
    assert_non_null(o);
    assert_true(body_ok(o, 3000, 7));
    assert_int_equal(o->key.len, strlen(a.key));
    assert_memory_equal(o->key.p, a.key, o->key.len);
    assert_int_equal(o->head.len, strlen(a.head));
    assert_memory_equal(o->head.p, a.head, o->head.len);
    assert_int_equal(o->vary.len, 0);
    assert_int_equal(o->skey.len, 0);
    assert_int_equal(o->ntags, 2);
    assert_memory_equal(o->tags[1].p, "blog", 4);
    assert_int_equal(o->tags[0].len, 6);
    assert_int_equal(((uintptr_t)o->meta) % 16, 0);
    assert_int_equal(((struct meta *)o->meta)->serial, 7);
    assert_int_equal(sl_cache_obj_refs(o), 2);
    assert_true(o->charge >= 3000 + strlen(a.head) + strlen(a.key));
    assert_true(o->charge < 3000 + 1024); /* shrunk to fit after growing by doubling */

    /* the body hint sizes the allocation once; an empty body is an object too */
    struct put_args hinted = {.key = "example.com/h", .body = 5000, .seed = 1, .hint = 1};
    assert_int_equal(put(s, &hinted, 3), 0);
    struct put_args empty = {.key = "example.com/empty"};
    assert_int_equal(put(s, &empty, 3), 0);
    sl_cache_obj_t *e = get(s, "example.com/empty", NULL, 4);
    assert_non_null(e);
    assert_int_equal(e->body.len, 0);
    sl_cache_obj_release(e);

    sl_cache_stats_t st = stats(s);
    assert_int_equal(st.objects, 3);
    assert_true(st.bytes <= st.budget);
    sl_cache_obj_release(o);
    assert_int_equal(sl_cache_obj_refs(o), 1);
    assert_quiet(s);

    /* spec errors */
    sl_cache_builder_t b;
    sl_cache_obj_spec_t bad = {.key = sl("k"), .vary = sl("accept, *")};
    assert_int_equal(sl_cache_builder_init(s, &b, &bad), SL_EINVAL); /* Vary: * is not stored */
    assert_null(b.obj);
    bad.vary = sl(" * ");
    assert_int_equal(sl_cache_builder_init(s, &b, &bad), SL_EINVAL);
    bad.vary = sl("x-*-y"); /* a token containing '*' is a field name, not the member "*" */
    assert_int_equal(sl_cache_builder_init(s, &b, &bad), 0);
    sl_cache_builder_discard(&b);
    sl_cache_builder_discard(&b); /* empty: no-op */
    bad.vary = sl("");
    bad.skey = sl("gzip"); /* a secondary key without Vary could never match */
    assert_int_equal(sl_cache_builder_init(s, &b, &bad), SL_EINVAL);
    sl_slice_t many[SL_CACHE_MAX_TAGS + 1];
    for (unsigned i = 0; i <= SL_CACHE_MAX_TAGS; i++)
        many[i] = sl("t");
    sl_cache_obj_spec_t toomany = {.key = sl("k"), .tags = many, .ntags = SL_CACHE_MAX_TAGS + 1};
    assert_int_equal(sl_cache_builder_init(s, &b, &toomany), SL_EINVAL);
    toomany.ntags = SL_CACHE_MAX_TAGS;
    assert_int_equal(sl_cache_builder_init(s, &b, &toomany), 0);
    assert_int_equal(sl_cache_publish(s, &b, NULL, 5, NULL), 0);
    assert_null(b.obj);
    assert_int_equal(sl_cache_publish(s, &b, NULL, 5, NULL), SL_EINVAL); /* consumed */

    /* bad configurations */
    sl_cache_store_t *x;
    sl_cache_store_config_t c0 = {.memory = 0};
    assert_int_equal(sl_cache_store_new(&c0, &x), SL_EINVAL);
    sl_cache_store_config_t c1 = {.memory = 1 << 20, .shards = 3};
    assert_int_equal(sl_cache_store_new(&c1, &x), SL_EINVAL);
    sl_cache_store_config_t c2 = {.memory = 1 << 20, .meta_size = SL_CACHE_MAX_META + 1};
    assert_int_equal(sl_cache_store_new(&c2, &x), SL_EINVAL);
    sl_cache_store_free(s);
    sl_cache_store_free(NULL);
}

/* A replaced object stays readable, unchanged, while a reader holds it; it is freed (and its
 * bytes returned) on the last release. */
static void test_replace_refcount(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    struct put_args a = {.key = "h/r", .body = 2000, .seed = 1};
    assert_int_equal(put(s, &a, 1), 0);
    sl_cache_obj_t *old = get(s, "h/r", NULL, 2);
    assert_non_null(old);
    size_t old_charge = old->charge;

    a.seed = 2;
    a.body = 2500;
    sl_cache_builder_t b;
    assert_int_equal(build(s, &b, &a), 0);
    sl_cache_obj_t *mine;
    assert_int_equal(sl_cache_publish(s, &b, NULL, 3, &mine), 0);
    assert_true(body_ok(mine, 2500, 2));
    assert_int_equal(sl_cache_obj_refs(mine), 2); /* store + publisher */

    sl_cache_obj_t *now = get(s, "h/r", NULL, 4);
    assert_ptr_equal(now, mine);
    assert_true(body_ok(old, 2000, 1)); /* still intact */
    assert_int_equal(sl_cache_obj_refs(old), 1);
    sl_cache_stats_t st = stats(s);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.bytes, st.stored + old_charge); /* held: still charged */
    sl_cache_obj_release(old);                          /* freed here (ASan would see a leak) */
    st = stats(s);
    assert_int_equal(st.bytes, st.stored);
    sl_cache_obj_release(now);
    sl_cache_obj_release(mine);
    assert_quiet(s);
    sl_cache_store_free(s);
}

static void test_variants(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    const char *vary = "accept-encoding";
    struct put_args gz = {.key = "h/v", .vary = vary, .skey = "gzip\n", .body = 100, .seed = 1};
    struct put_args br = {.key = "h/v", .vary = vary, .skey = "br\n", .body = 100, .seed = 2};
    struct put_args id = {.key = "h/v", .vary = vary, .skey = "\n", .body = 100, .seed = 3};
    assert_int_equal(put(s, &gz, 1), 0);
    assert_int_equal(put(s, &br, 1), 0);
    assert_int_equal(put(s, &id, 1), 0);
    assert_int_equal(stats(s).objects, 3);

    struct rq q;
    rq_init(&q, "h/v", "br");
    sl_cache_obj_t *o = sl_cache_lookup(s, &q.req, 2);
    assert_non_null(o);
    assert_true(body_ok(o, 100, 2));
    assert_int_equal(q.vary_calls, 1); /* memoized across the three variants */
    assert_true(sl_cache_obj_matches(o, &q.req));
    q.ae = "gzip";
    assert_false(sl_cache_obj_matches(o, &q.req));
    sl_cache_obj_release(o);
    o = get(s, "h/v", "gzip", 2);
    assert_true(body_ok(o, 100, 1));
    sl_cache_obj_release(o);
    o = get(s, "h/v", NULL, 2); /* no Accept-Encoding: the identity variant */
    assert_true(body_ok(o, 100, 3));
    sl_cache_obj_release(o);
    assert_null(get(s, "h/v", "zstd", 2));

    /* a request that cannot compute its secondary key matches no variant */
    struct rq nov;
    rq_init(&nov, "h/v", "gzip");
    nov.req.vary = NULL;
    assert_null(sl_cache_lookup(s, &nov.req, 2));
    rq_init(&nov, "h/v", "gzip");
    nov.req.scratch_cap = 2;
    assert_null(sl_cache_lookup(s, &nov.req, 2));

    /* the same variant again replaces it; the others stay */
    gz.seed = 4;
    assert_int_equal(put(s, &gz, 3), 0);
    assert_int_equal(stats(s).objects, 3);
    o = get(s, "h/v", "gzip", 3);
    assert_true(body_ok(o, 100, 4));
    sl_cache_obj_release(o);

    /* the origin changed its Vary: every variant stored under the old names goes */
    struct put_args two = {.key = "h/v",
                           .vary = "accept-encoding,accept-language",
                           .skey = "gzip\nfr\n",
                           .body = 10,
                           .seed = 5};
    assert_int_equal(put(s, &two, 4), 0);
    assert_int_equal(stats(s).objects, 1);
    assert_int_equal(stats(s).replaced, 4);
    assert_null(get(s, "h/v", "br", 5));
    rq_init(&q, "h/v", "gzip");
    q.lang = "fr";
    o = sl_cache_lookup(s, &q.req, 5);
    assert_non_null(o);
    assert_true(body_ok(o, 10, 5));
    sl_cache_obj_release(o);
    /* and no Vary at all is one more names string: replaces them too */
    struct put_args plain = {.key = "h/v", .body = 10, .seed = 6};
    assert_int_equal(put(s, &plain, 6), 0);
    assert_int_equal(stats(s).objects, 1);
    o = get(s, "h/v", "anything", 7);
    assert_true(body_ok(o, 10, 6));
    sl_cache_obj_release(o);
    assert_quiet(s);
    sl_cache_store_free(s);

    /* at most max_variants per key: the least recently used variant goes */
    sl_cache_store_config_t cfg = {.memory = 1 << 20, .meta_size = 16, .max_variants = 4};
    assert_int_equal(sl_cache_store_new(&cfg, &s), 0);
    char skey[16], ae[16];
    for (int i = 0; i < 4; i++) {
        snprintf(skey, sizeof(skey), "e%d\n", i);
        struct put_args v = {.key = "h/m", .vary = vary, .skey = skey, .body = 10, .seed = 10u + i};
        assert_int_equal(put(s, &v, 10 + (uint64_t)i), 0);
    }
    o = get(s, "h/m", "e0", 20); /* e0 used last: e1 is now the least recently used */
    sl_cache_obj_release(o);
    struct put_args v4 = {.key = "h/m", .vary = vary, .skey = "e4\n", .body = 10, .seed = 14};
    assert_int_equal(put(s, &v4, 21), 0);
    assert_int_equal(stats(s).objects, 4);
    assert_int_equal(stats(s).evictions, 1);
    for (int i = 0; i <= 4; i++) {
        snprintf(ae, sizeof(ae), "e%d", i);
        o = get(s, "h/m", ae, 22);
        if (i == 1) {
            assert_null(o);
        } else {
            assert_non_null(o);
            assert_true(body_ok(o, 10, 10u + i));
            sl_cache_obj_release(o);
        }
    }
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* An evicted object stays readable while held and keeps counting against the budget (the budget
 * bounds real memory); when everything left is held, builders get SL_ENOMEM. */
static void test_evicted_stays_readable(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(64 << 10, 64 << 10, 4);
    struct put_args a = {.key = "h/0", .body = 10000, .seed = 100};
    assert_int_equal(put(s, &a, 1), 0);
    sl_cache_obj_t *held = get(s, "h/0", NULL, 2);
    assert_non_null(held);
    char key[32];
    for (unsigned i = 1; i <= 20; i++) {
        snprintf(key, sizeof(key), "h/%u", i);
        struct put_args b = {.key = key, .body = 10000, .seed = 100 + i};
        assert_int_equal(put(s, &b, 2 + i), 0);
        assert_true(stats(s).bytes <= 64 << 10);
    }
    assert_null(get(s, "h/0", NULL, 30)); /* evicted */
    assert_true(body_ok(held, 10000, 100));
    sl_cache_stats_t st = stats(s);
    assert_true(st.evictions >= 15);
    assert_int_equal(st.bytes, st.stored + held->charge);
    assert_int_equal(sl_cache_obj_refs(held), 1);
    sl_cache_obj_release(held);
    assert_quiet(s);

    /* hold everything stored: the store evicts all of it (held objects are evictable) and
     * still has no room, since held bytes stay charged */
    sl_cache_obj_t *hold[32];
    unsigned nh = 0;
    for (unsigned i = 1; i <= 20; i++) {
        snprintf(key, sizeof(key), "h/%u", i);
        sl_cache_obj_t *o = get(s, key, NULL, 40);
        if (o)
            hold[nh++] = o;
    }
    assert_true(nh >= 4);
    uint64_t nomem = stats(s).nomem;
    struct put_args big = {.key = "big", .body = 15000, .seed = 1};
    assert_int_equal(put(s, &big, 50), SL_ENOMEM);
    st = stats(s);
    assert_int_equal(st.nomem, nomem + 1);
    assert_int_equal(st.objects, 0);
    assert_true(st.bytes <= 64 << 10);
    for (unsigned i = 0; i < nh; i++) {
        assert_true(hold[i]->body.len == 10000);
        sl_cache_obj_release(hold[i]);
    }
    assert_int_equal(stats(s).bytes, 0);
    assert_quiet(s);
    struct put_args again = {.key = "again", .body = 15000, .seed = 1};
    assert_int_equal(put(s, &again, 100), 0); /* room again once released */
    sl_cache_store_free(s);
}

/* Fill 2x the budget with objects of many sizes: the charged bytes never pass the budget, and
 * what survives is exactly the most recently used objects (LRU across all shards). */
static void test_lru_budget(void **state)
{
    (void)state;
    enum { MAXK = 4096 };
    const size_t budget = 256 << 10;
    sl_cache_store_t *s = mkstore(budget, 32 << 10, 0);
    static uint64_t last_use[MAXK];
    static unsigned size_of[MAXK];
    char key[32];
    uint64_t now = 1, x = 88172645463325252ull, inserted = 0;
    unsigned n = 0;
    while (inserted < 2 * budget) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned sz = (unsigned)(x % 12000); /* 0 .. 12 KB, growing through several reallocs */
        snprintf(key, sizeof(key), "lru.example/%u", n);
        struct put_args a = {.key = key, .body = sz, .seed = n, .chunk = 1500};
        assert_int_equal(put(s, &a, now), 0);
        size_of[n] = sz;
        last_use[n] = now++;
        inserted += sz;
        sl_cache_stats_t st = stats(s);
        assert_true(st.bytes <= budget);
        assert_int_equal(st.bytes, st.stored);
        /* keep the first five hot */
        if (n % 8 == 7) {
            for (unsigned k = 0; k < 5; k++) {
                snprintf(key, sizeof(key), "lru.example/%u", k);
                sl_cache_obj_t *o = get(s, key, NULL, now);
                assert_non_null(o);
                assert_true(body_ok(o, size_of[k], k));
                sl_cache_obj_release(o);
                last_use[k] = now++;
            }
        }
        n++;
        assert_true(n < MAXK);
    }
    sl_cache_stats_t st = stats(s);
    assert_true(st.evictions > 0);
    assert_true(st.bytes > budget / 2); /* it is used, too */
    /* present = a suffix of the keys ordered by last use */
    uint64_t oldest_present = UINT64_MAX, newest_absent = 0;
    unsigned present = 0;
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "lru.example/%u", i);
        struct rq q;
        rq_init(&q, key, NULL);
        q.req.fresh = NULL;
        /* look without touching: begin with neither fill nor waiter is a pure lookup + PASS */
        sl_cache_obj_t *o = NULL;
        int r = sl_cache_begin(s, &q.req, 0, NULL, NULL, &o);
        if (o) {
            assert_int_equal(r, SL_CACHE_HIT);
            assert_true(body_ok(o, size_of[i], i));
            sl_cache_obj_release(o);
            present++;
            if (last_use[i] < oldest_present)
                oldest_present = last_use[i];
        } else if (last_use[i] > newest_absent) {
            newest_absent = last_use[i];
        }
    }
    assert_true(newest_absent < oldest_present);
    for (unsigned k = 0; k < 5; k++) { /* the hot ones survived */
        snprintf(key, sizeof(key), "lru.example/%u", k);
        sl_cache_obj_t *o = get(s, key, NULL, now);
        assert_non_null(o);
        sl_cache_obj_release(o);
    }
    assert_int_equal(present, st.objects);
    assert_int_equal(st.evictions, n - present);
    assert_quiet(s);
    sl_cache_store_free(s);
}

static void test_max_object(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 1000, 0);
    sl_cache_builder_t b;
    struct put_args big = {.key = "h/big", .body = 1001, .hint = 1};
    assert_int_equal(build(s, &b, &big), SL_ETOOBIG); /* refused from the Content-Length */
    assert_null(b.obj);

    big.hint = 0;
    big.chunk = 300;
    assert_int_equal(build(s, &b, &big), SL_ETOOBIG); /* refused while streaming */
    assert_int_equal(sl_cache_builder_body_len(&b), 900);
    assert_int_equal(sl_cache_builder_append(&b, "x", 1), SL_ETOOBIG); /* sticky */
    assert_int_equal(sl_cache_publish(s, &b, NULL, 1, NULL), SL_EINVAL);
    sl_cache_builder_discard(&b);
    assert_int_equal(stats(s).bytes, 0); /* the builder's reservation went back */

    struct put_args exact = {.key = "h/exact", .body = 1000, .chunk = 7, .seed = 3};
    assert_int_equal(put(s, &exact, 1), 0);
    sl_cache_obj_t *o = get(s, "h/exact", NULL, 2);
    assert_true(body_ok(o, 1000, 3));
    sl_cache_obj_release(o);
    assert_quiet(s);
    sl_cache_store_free(s);

    /* max_object above memory is clamped to it */
    s = mkstore(64 << 10, 1 << 20, 1);
    struct put_args huge = {.key = "h/huge", .body = 100 << 10, .chunk = 8192};
    assert_int_equal(put(s, &huge, 1), SL_ETOOBIG);
    assert_int_equal(stats(s).bytes, 0);
    sl_cache_store_free(s);
}

/* One thread: LEADER, WAITER (also NO_LEAD), PASS without a role, HIT after publish, waiters'
 * references, a stale object handed out with LEADER. */
static void test_begin_basics(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    struct rq q1, q2, q3, q4;
    sl_cache_fill_t f1, f2;
    struct wctx w1, w2, w3;
    sl_cache_obj_t *o;
    sl_cache_fill_init(&f1);
    sl_cache_fill_init(&f2);
    wctx_init(&w1);
    wctx_init(&w2);
    wctx_init(&w3);
    rq_init(&q1, "h/c", NULL);
    rq_init(&q2, "h/c", NULL);
    rq_init(&q3, "h/c", NULL);
    rq_init(&q4, "h/other", NULL);

    assert_int_equal(sl_cache_begin(s, &q1.req, 1, &f1, &w1.w, &o), SL_CACHE_LEADER);
    assert_null(o);
    assert_int_equal(sl_cache_begin(s, &q2.req, 1, &f2, &w2.w, &o), SL_CACHE_WAITER);
    q3.req.flags = SL_CACHE_NO_LEAD; /* a HEAD joins the GET's fill */
    assert_int_equal(sl_cache_begin(s, &q3.req, 1, NULL, &w3.w, &o), SL_CACHE_WAITER);
    q4.req.flags = SL_CACHE_NO_LEAD; /* but never leads one */
    assert_int_equal(sl_cache_begin(s, &q4.req, 1, &f2, &w1.w, &o), SL_CACHE_PASS);
    assert_int_equal(sl_cache_begin(s, &q2.req, 1, &f2, NULL, &o), SL_CACHE_PASS); /* no w */
    sl_cache_stats_t st = stats(s);
    assert_int_equal(st.fills, 1);
    assert_int_equal(st.waiters, 2);
    assert_int_equal(sl_cache_store_verify(s), 0);

    /* a builder for another key cannot complete this fill */
    sl_cache_builder_t b;
    struct put_args wrong = {.key = "h/d", .body = 10};
    assert_int_equal(build(s, &b, &wrong), 0);
    assert_int_equal(sl_cache_publish(s, &b, &f1, 2, NULL), SL_EINVAL);
    sl_cache_builder_discard(&b);

    struct put_args a = {.key = "h/c", .body = 500, .seed = 9, .expires_ms = 100};
    assert_int_equal(build(s, &b, &a), 0);
    sl_cache_obj_t *mine;
    assert_int_equal(sl_cache_publish(s, &b, &f1, 2, &mine), 0);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w3.calls, 1);
    assert_int_equal(w1.calls, 0);
    assert_int_equal(w2.outcome, SL_CACHE_PUBLISHED);
    assert_ptr_equal(w2.obj, mine);
    assert_ptr_equal(w3.obj, mine);
    assert_int_equal(sl_cache_obj_refs(mine), 4);          /* store, publisher, two waiters */
    assert_int_equal(sl_cache_waiter_cancel(s, &w2.w), 0); /* too late: already called */
    sl_cache_obj_release(w2.obj);
    sl_cache_obj_release(w3.obj);
    sl_cache_obj_release(mine);
    st = stats(s);
    assert_int_equal(st.fills, 0);
    assert_int_equal(st.waiters, 0);
    assert_int_equal(sl_cache_waiter_cancel(s, &w1.w), 1); /* never registered */

    /* fresh: a hit; no new fill */
    sl_cache_fill_init(&f1);
    q1.now = 50;
    assert_int_equal(sl_cache_begin(s, &q1.req, 50, &f1, &w1.w, &o), SL_CACHE_HIT);
    assert_true(body_ok(o, 500, 9));
    sl_cache_obj_release(o);

    /* stale: the caller leads a refresh and gets the stale object to fall back on */
    q1.now = q2.now = 200;
    assert_int_equal(sl_cache_begin(s, &q1.req, 200, &f1, &w1.w, &o), SL_CACHE_LEADER);
    assert_non_null(o);
    assert_true(body_ok(o, 500, 9));
    sl_cache_obj_release(o);
    wctx_init(&w2);
    assert_int_equal(sl_cache_begin(s, &q2.req, 200, &f2, &w2.w, &o), SL_CACHE_WAITER);
    assert_non_null(o); /* the waiter may serve stale too (and cancel) */
    sl_cache_obj_release(o);
    a.seed = 10;
    a.expires_ms = 1000;
    assert_int_equal(build(s, &b, &a), 0);
    assert_int_equal(sl_cache_publish(s, &b, &f1, 201, NULL), 0);
    assert_int_equal(w2.calls, 1);
    assert_true(body_ok(w2.obj, 500, 10));
    assert_int_equal(sl_cache_obj_refs(w2.obj), 2);
    sl_cache_obj_release(w2.obj);
    assert_int_equal(sl_cache_begin(s, &q2.req, 202, &f2, &w2.w, &o), SL_CACHE_HIT);
    assert_true(body_ok(o, 500, 10));
    sl_cache_obj_release(o);
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* sl_cache_share hands the object to the waiters but stores nothing; its bytes go back to
 * the budget with the last reference (request deduplication). */
static void test_share(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    struct rq q1, q2;
    sl_cache_fill_t f1, f2;
    struct wctx w2;
    sl_cache_obj_t *o, *mine;
    sl_cache_fill_init(&f1);
    sl_cache_fill_init(&f2);
    wctx_init(&w2);
    rq_init(&q1, "h/dd", NULL);
    rq_init(&q2, "h/dd", NULL);
    assert_int_equal(sl_cache_begin(s, &q1.req, 1, &f1, NULL, &o), SL_CACHE_LEADER);
    assert_int_equal(sl_cache_begin(s, &q2.req, 1, &f2, &w2.w, &o), SL_CACHE_WAITER);
    sl_cache_builder_t b;
    struct put_args a = {.key = "h/dd", .body = 3000, .seed = 4, .expires_ms = 100};
    assert_int_equal(build(s, &b, &a), 0);
    assert_int_equal(sl_cache_share(s, &b, NULL, NULL), SL_EINVAL); /* needs the fill */
    assert_int_equal(sl_cache_share(s, &b, &f1, &mine), 0);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.outcome, SL_CACHE_PUBLISHED);
    assert_ptr_equal(w2.obj, mine);
    assert_true(body_ok(w2.obj, 3000, 4));
    assert_int_equal(sl_cache_obj_refs(mine), 2); /* publisher and waiter: not the table */
    sl_cache_stats_t st = stats(s);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.fills, 0);
    assert_true(st.bytes >= 3000);
    /* not stored: the next request leads again */
    sl_cache_fill_init(&f1);
    q1.now = 2;
    assert_int_equal(sl_cache_begin(s, &q1.req, 2, &f1, NULL, &o), SL_CACHE_LEADER);
    sl_cache_fill_abandon(s, &f1, SL_CACHE_ABANDONED, 2, 0);
    sl_cache_obj_release(w2.obj);
    sl_cache_obj_release(mine);
    st = stats(s);
    assert_int_equal(st.bytes, 0);
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* A fill started before the key's Vary was known answers every request; a waiter wanting
 * another variant sees it does not match and begins again, now under the known names. */
static void test_coalesce_vary(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    struct rq qg, qb, qb2, qg2;
    sl_cache_fill_t fg, fb, fx;
    struct wctx wb, wb2;
    sl_cache_obj_t *o;
    rq_init(&qg, "h/cv", "gzip");
    rq_init(&qb, "h/cv", "br");
    rq_init(&qb2, "h/cv", "br");
    rq_init(&qg2, "h/cv", "gzip");
    sl_cache_fill_init(&fg);
    sl_cache_fill_init(&fb);
    sl_cache_fill_init(&fx);
    wctx_init(&wb);
    wctx_init(&wb2);

    assert_int_equal(sl_cache_begin(s, &qg.req, 1, &fg, NULL, &o), SL_CACHE_LEADER);
    assert_int_equal(sl_cache_begin(s, &qb.req, 1, &fb, &wb.w, &o), SL_CACHE_WAITER);
    assert_int_equal(qb.vary_calls, 0); /* no names known yet: nothing to compute */
    struct put_args a = {
        .key = "h/cv", .vary = "accept-encoding", .skey = "gzip\n", .body = 10, .seed = 1};
    sl_cache_builder_t b;
    assert_int_equal(build(s, &b, &a), 0);
    assert_int_equal(sl_cache_publish(s, &b, &fg, 2, NULL), 0);
    assert_int_equal(wb.calls, 1);
    assert_false(sl_cache_obj_matches(wb.obj, &qb.req)); /* a gzip answer for a br request */
    sl_cache_obj_release(wb.obj);

    wctx_init(&wb);
    assert_int_equal(sl_cache_begin(s, &qb.req, 3, &fb, &wb.w, &o), SL_CACHE_LEADER);
    assert_null(o);
    assert_int_equal(sl_cache_begin(s, &qb2.req, 3, &fx, &wb2.w, &o), SL_CACHE_WAITER);
    assert_int_equal(sl_cache_begin(s, &qg2.req, 3, &fx, NULL, &o), SL_CACHE_HIT);
    sl_cache_obj_release(o);
    a.skey = "br\n";
    a.seed = 2;
    assert_int_equal(build(s, &b, &a), 0);
    assert_int_equal(sl_cache_publish(s, &b, &fb, 4, NULL), 0);
    assert_int_equal(wb2.calls, 1);
    assert_true(sl_cache_obj_matches(wb2.obj, &qb2.req));
    assert_true(body_ok(wb2.obj, 10, 2));
    sl_cache_obj_release(wb2.obj);
    assert_int_equal(stats(s).objects, 2);
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* Not storable: waiters go upstream themselves, the key is hit-for-pass until it expires.
 * Abandoned: waiters begin again and one of them leads. */
static void test_abandon(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    struct rq q[4];
    sl_cache_fill_t f[4];
    struct wctx w[4];
    sl_cache_obj_t *o;
    for (int i = 0; i < 4; i++) {
        rq_init(&q[i], "h/np", NULL);
        sl_cache_fill_init(&f[i]);
        wctx_init(&w[i]);
    }
    assert_int_equal(sl_cache_begin(s, &q[0].req, 1000, &f[0], &w[0].w, &o), SL_CACHE_LEADER);
    for (int i = 1; i < 4; i++)
        assert_int_equal(sl_cache_begin(s, &q[i].req, 1000, &f[i], &w[i].w, &o), SL_CACHE_WAITER);
    sl_cache_fill_abandon(s, &f[0], SL_CACHE_NOT_STORABLE, 1000, 5000);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].outcome, SL_CACHE_NOT_STORABLE);
        assert_null(w[i].obj);
    }
    sl_cache_stats_t st = stats(s);
    assert_int_equal(st.pass_marks, 1);
    assert_int_equal(st.pass_set, 1);
    assert_int_equal(st.fills, 0);
    assert_int_equal(sl_cache_store_verify(s), 0);
    /* hit-for-pass: everyone goes upstream, no coalescing */
    for (int i = 0; i < 4; i++)
        assert_int_equal(sl_cache_begin(s, &q[i].req, 5999, &f[i], &w[i].w, &o), SL_CACHE_PASS);
    assert_int_equal(stats(s).fills, 0);
    sl_cache_fill_abandon(s, &f[0], SL_CACHE_NOT_STORABLE, 5999, 100); /* IDLE: no-op */
    /* expired: a leader again, and the mark is reaped */
    assert_int_equal(sl_cache_begin(s, &q[0].req, 6000, &f[0], &w[0].w, &o), SL_CACHE_LEADER);
    assert_int_equal(stats(s).pass_marks, 0);

    /* abandoned (upstream error): waiters begin again; one leads, the rest wait for it */
    for (int i = 1; i < 4; i++) {
        wctx_init(&w[i]);
        assert_int_equal(sl_cache_begin(s, &q[i].req, 6001, &f[i], &w[i].w, &o), SL_CACHE_WAITER);
    }
    sl_cache_fill_abandon(s, &f[0], SL_CACHE_ABANDONED, 6002, 5000);
    assert_int_equal(stats(s).pass_marks, 0); /* no mark for an error */
    int leaders = 0;
    for (int i = 1; i < 4; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].outcome, SL_CACHE_ABANDONED);
        wctx_init(&w[i]);
        int r = sl_cache_begin(s, &q[i].req, 6003, &f[i], &w[i].w, &o);
        leaders += r == SL_CACHE_LEADER;
        assert_true(r == SL_CACHE_LEADER || r == SL_CACHE_WAITER);
    }
    assert_int_equal(leaders, 1);
    struct put_args a = {.key = "h/np", .body = 10, .seed = 3};
    sl_cache_builder_t b;
    assert_int_equal(build(s, &b, &a), 0);
    assert_int_equal(sl_cache_publish(s, &b, &f[1], 6004, NULL), 0);
    for (int i = 2; i < 4; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_true(body_ok(w[i].obj, 10, 3));
        sl_cache_obj_release(w[i].obj);
    }

    /* too big while streaming: abandon as not storable */
    sl_cache_fill_init(&f[0]);
    rq_init(&q[0], "h/big", NULL);
    assert_int_equal(sl_cache_begin(s, &q[0].req, 7000, &f[0], NULL, &o), SL_CACHE_LEADER);
    struct put_args big = {.key = "h/big", .body = 65 << 10, .chunk = 4096};
    assert_int_equal(build(s, &b, &big), SL_ETOOBIG);
    sl_cache_builder_discard(&b);
    sl_cache_fill_abandon(s, &f[0], SL_CACHE_NOT_STORABLE, 7000, 1000);
    assert_int_equal(sl_cache_begin(s, &q[0].req, 7500, &f[0], NULL, &o), SL_CACHE_PASS);
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* Hit-for-pass marks are bounded (the oldest goes) and one per key. */
static void test_pass_bound(void **state)
{
    (void)state;
    sl_cache_store_config_t cfg = {.memory = 1 << 20, .shards = 1, .max_pass = 4};
    sl_cache_store_t *s;
    assert_int_equal(sl_cache_store_new(&cfg, &s), 0);
    char key[8][16];
    struct rq q;
    sl_cache_fill_t f;
    sl_cache_obj_t *o;
    for (int i = 0; i < 8; i++) {
        snprintf(key[i], sizeof(key[i]), "h/p%d", i);
        rq_init(&q, key[i], NULL);
        sl_cache_fill_init(&f);
        assert_int_equal(sl_cache_begin(s, &q.req, 10, &f, NULL, &o), SL_CACHE_LEADER);
        sl_cache_fill_abandon(s, &f, SL_CACHE_NOT_STORABLE, 10, 1000);
        assert_true(stats(s).pass_marks <= 4);
    }
    assert_int_equal(stats(s).pass_marks, 4);
    for (int i = 0; i < 8; i++) { /* the four oldest marks were dropped */
        rq_init(&q, key[i], NULL);
        sl_cache_fill_init(&f);
        int r = sl_cache_begin(s, &q.req, 20, &f, NULL, &o);
        assert_int_equal(r, i < 4 ? SL_CACHE_LEADER : SL_CACHE_PASS);
        if (r == SL_CACHE_LEADER)
            sl_cache_fill_abandon(s, &f, SL_CACHE_ABANDONED, 20, 1000); /* leaves no mark */
    }
    /* one more mark (p0) drops the oldest (p4) */
    rq_init(&q, key[0], NULL);
    sl_cache_fill_init(&f);
    assert_int_equal(sl_cache_begin(s, &q.req, 30, &f, NULL, &o), SL_CACHE_LEADER);
    sl_cache_fill_abandon(s, &f, SL_CACHE_NOT_STORABLE, 30, 1000);
    rq_init(&q, key[4], NULL);
    assert_int_equal(sl_cache_begin(s, &q.req, 31, &f, NULL, &o), SL_CACHE_LEADER);
    sl_cache_fill_abandon(s, &f, SL_CACHE_ABANDONED, 31, 0);
    rq_init(&q, key[5], NULL);
    assert_int_equal(sl_cache_begin(s, &q.req, 31, &f, NULL, &o), SL_CACHE_PASS);
    rq_init(&q, key[0], NULL);
    assert_int_equal(sl_cache_begin(s, &q.req, 31, &f, NULL, &o), SL_CACHE_PASS);
    assert_int_equal(stats(s).pass_marks, 4);
    assert_int_equal(sl_cache_store_verify(s), 0);
    sl_cache_store_free(s);
}

static void test_waiter_bound(void **state)
{
    (void)state;
    sl_cache_store_config_t cfg = {.memory = 1 << 20, .max_waiters = 3};
    sl_cache_store_t *s;
    assert_int_equal(sl_cache_store_new(&cfg, &s), 0);
    struct rq q[5];
    sl_cache_fill_t f[5];
    struct wctx w[5];
    sl_cache_obj_t *o;
    for (int i = 0; i < 5; i++) {
        rq_init(&q[i], "h/wb", NULL);
        sl_cache_fill_init(&f[i]);
        wctx_init(&w[i]);
        int r = sl_cache_begin(s, &q[i].req, 1, &f[i], &w[i].w, &o);
        assert_int_equal(r, i == 0 ? SL_CACHE_LEADER : i <= 3 ? SL_CACHE_WAITER : SL_CACHE_BUSY);
    }
    assert_int_equal(stats(s).busy, 1);
    assert_int_equal(sl_cache_waiter_cancel(s, &w[2].w), 1); /* room for one more */
    assert_int_equal(sl_cache_waiter_cancel(s, &w[2].w), 1); /* idempotent */
    assert_int_equal(sl_cache_begin(s, &q[4].req, 1, &f[4], &w[4].w, &o), SL_CACHE_WAITER);
    assert_int_equal(stats(s).waiters, 3);
    sl_cache_fill_abandon(s, &f[0], SL_CACHE_ABANDONED, 2, 0);
    assert_int_equal(w[1].calls + w[2].calls + w[3].calls + w[4].calls, 3);
    assert_int_equal(w[2].calls, 0);
    assert_quiet(s);
    sl_cache_store_free(s);
}

static void test_purge(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    sl_slice_t t_post[2] = {sl("post:1"), sl("blog")};
    sl_slice_t t_blog[1] = {sl("blog")};
    struct put_args objs[] = {
        {.key = "a.com/x", .vary = "accept-encoding", .skey = "gzip\n", .tags = t_post, .ntags = 2},
        {.key = "a.com/x", .vary = "accept-encoding", .skey = "br\n", .tags = t_post, .ntags = 2},
        {.key = "a.com/x/y", .tags = t_blog, .ntags = 1},
        {.key = "a.com/xy"},
        {.key = "a.com/z", .tags = t_blog, .ntags = 1},
        {.key = "b.com/x"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(objs); i++) {
        objs[i].body = 100;
        objs[i].seed = (unsigned)i;
        assert_int_equal(put(s, &objs[i], 1), 0);
    }
    sl_cache_obj_t *held = get(s, "a.com/x", "br", 2);
    assert_non_null(held);
    assert_int_equal(sl_cache_purge_key(s, sl("a.com/x")), 2); /* every variant */
    assert_null(get(s, "a.com/x", "gzip", 3));
    assert_true(body_ok(held, 100, 1)); /* still readable */
    sl_cache_obj_release(held);
    assert_int_equal(sl_cache_purge_key(s, sl("a.com/x")), 0);
    assert_int_equal(sl_cache_purge_tag(s, sl("post:1")), 0);
    assert_int_equal(sl_cache_purge_tag(s, sl("blog")), 2);
    assert_int_equal(sl_cache_purge_prefix(s, sl("a.com/")), 1); /* a.com/xy */
    assert_int_equal(stats(s).objects, 1);
    assert_int_equal(sl_cache_purge_prefix(s, sl("")), 1);
    assert_int_equal(stats(s).purged, 6);
    assert_quiet(s);

    /* many objects: prefix and tag purges walk every shard in batches */
    char key[32];
    for (unsigned i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "%s.com/%u", i % 2 ? "odd" : "even", i);
        struct put_args a = {
            .key = key, .body = 10, .tags = i % 3 ? NULL : t_blog, .ntags = i % 3 ? 0 : 1};
        assert_int_equal(put(s, &a, 10 + i), 0);
    }
    assert_int_equal(sl_cache_purge_tag(s, sl("blog")), 667);
    assert_int_equal(sl_cache_purge_prefix(s, sl("odd.com/")), 1000 - 333);
    assert_int_equal(stats(s).objects, 2000 - 667 - 667);
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* A purge during a fill: later requests start a new fill; the old fill's answer goes to its own
 * waiters but is not stored (the purge is not undone). Purges also clear hit-for-pass marks. */
static void test_purge_during_fill(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(1 << 20, 64 << 10, 0);
    struct rq q1, q2, q3, q4;
    sl_cache_fill_t f1, f3, fx;
    struct wctx w2, w4, wc;
    sl_cache_obj_t *o;
    sl_cache_builder_t b;
    sl_cache_fill_init(&f1);
    sl_cache_fill_init(&f3);
    sl_cache_fill_init(&fx);
    wctx_init(&w2);
    wctx_init(&w4);
    wctx_init(&wc);
    rq_init(&q1, "p.com/a", NULL);
    rq_init(&q2, "p.com/a", NULL);
    rq_init(&q3, "p.com/a", NULL);
    rq_init(&q4, "p.com/a", NULL);

    for (int how = 0; how < 3; how++) {
        sl_cache_fill_init(&f1);
        sl_cache_fill_init(&f3);
        wctx_init(&w2);
        wctx_init(&w4);
        wctx_init(&wc);
        assert_int_equal(sl_cache_begin(s, &q1.req, 1, &f1, NULL, &o), SL_CACHE_LEADER);
        assert_int_equal(sl_cache_begin(s, &q2.req, 1, &fx, &w2.w, &o), SL_CACHE_WAITER);
        assert_int_equal(sl_cache_begin(s, &q2.req, 1, &fx, &wc.w, &o), SL_CACHE_WAITER);
        size_t n = how == 0   ? sl_cache_purge_key(s, sl("p.com/a"))
                   : how == 1 ? sl_cache_purge_prefix(s, sl("p.com/"))
                              : sl_cache_purge_tag(s, sl("whatever"));
        assert_int_equal(n, 0);
        assert_int_equal(sl_cache_store_verify(s), 0);
        /* a request after the purge does not join the purged fill */
        assert_int_equal(sl_cache_begin(s, &q3.req, 2, &f3, NULL, &o), SL_CACHE_LEADER);
        assert_int_equal(sl_cache_begin(s, &q4.req, 2, &fx, &w4.w, &o), SL_CACHE_WAITER);
        assert_int_equal(sl_cache_waiter_cancel(s, &wc.w), 1); /* cancel in a detached fill */
        sl_cache_stats_t st = stats(s);
        assert_int_equal(st.fills, 2);
        assert_int_equal(st.waiters, 2);

        struct put_args old = {.key = "p.com/a", .body = 20, .seed = 1};
        assert_int_equal(build(s, &b, &old), 0);
        assert_int_equal(sl_cache_publish(s, &b, &f1, 3, NULL), 1); /* not stored */
        assert_int_equal(w2.calls, 1);
        assert_true(body_ok(w2.obj, 20, 1));
        assert_int_equal(sl_cache_obj_refs(w2.obj), 1); /* the waiter's only */
        sl_cache_obj_release(w2.obj);
        assert_int_equal(wc.calls, 0);
        assert_null(get(s, "p.com/a", NULL, 4));

        struct put_args fresh = {.key = "p.com/a", .body = 30, .seed = 2};
        assert_int_equal(build(s, &b, &fresh), 0);
        assert_int_equal(sl_cache_publish(s, &b, &f3, 5, NULL), 0);
        assert_int_equal(w4.calls, 1);
        assert_true(body_ok(w4.obj, 30, 2));
        sl_cache_obj_release(w4.obj);
        o = get(s, "p.com/a", NULL, 6);
        assert_true(body_ok(o, 30, 2));
        sl_cache_obj_release(o);
        assert_int_equal(sl_cache_purge_key(s, sl("p.com/a")), 1);
        assert_quiet(s);
    }

    /* a purged fill that is abandoned leaves no hit-for-pass mark */
    sl_cache_fill_init(&f1);
    assert_int_equal(sl_cache_begin(s, &q1.req, 10, &f1, NULL, &o), SL_CACHE_LEADER);
    sl_cache_purge_key(s, sl("p.com/a"));
    sl_cache_fill_abandon(s, &f1, SL_CACHE_NOT_STORABLE, 11, 1000);
    assert_int_equal(stats(s).pass_marks, 0);
    /* key and prefix purges clear marks; tag purges do not know a mark's tags */
    for (int how = 0; how < 3; how++) {
        sl_cache_fill_init(&f1);
        assert_int_equal(sl_cache_begin(s, &q1.req, 20, &f1, NULL, &o), SL_CACHE_LEADER);
        sl_cache_fill_abandon(s, &f1, SL_CACHE_NOT_STORABLE, 20, 1000);
        assert_int_equal(stats(s).pass_marks, 1);
        if (how == 0)
            sl_cache_purge_key(s, sl("p.com/a"));
        else if (how == 1)
            sl_cache_purge_prefix(s, sl("p.com"));
        else
            sl_cache_purge_tag(s, sl("t"));
        assert_int_equal(stats(s).pass_marks, how == 2 ? 1 : 0);
    }
    assert_int_equal(sl_cache_begin(s, &q1.req, 21, &f1, NULL, &o), SL_CACHE_PASS);
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* ---- threads ----------------------------------------------------------------------------- */

enum { NT = 6 };

struct coal {
    sl_cache_store_t *s;
    pthread_barrier_t *bar;
    unsigned rounds;
    unsigned tid;
    unsigned leaders, waiters, hits;
};

static void *coal_run(void *arg)
{
    struct coal *c = arg;
    char key[32];
    for (unsigned r = 0; r < c->rounds; r++) {
        snprintf(key, sizeof(key), "co.example/%u", r);
        struct rq q;
        sl_cache_fill_t f;
        struct wctx w;
        sl_cache_obj_t *o;
        rq_init(&q, key, NULL);
        sl_cache_fill_init(&f);
        wctx_init(&w);
        pthread_barrier_wait(c->bar);
        int res = sl_cache_begin(c->s, &q.req, r, &f, &w.w, &o);
        if (res == SL_CACHE_LEADER) {
            c->leaders++;
            /* publish only once every other thread waits: all of them must be waiters */
            sl_cache_stats_t st;
            do {
                sched_yield();
                sl_cache_store_stats(c->s, &st);
            } while (st.waiters < NT - 1);
            sl_cache_builder_t b;
            struct put_args a = {.key = key, .body = 1000 + r, .seed = r};
            TCHECK((build(c->s, &b, &a)) == (0));
            TCHECK((sl_cache_publish(c->s, &b, &f, r, NULL)) == (0));
        } else {
            TCHECK((res) == (SL_CACHE_WAITER));
            c->waiters++;
            while (__atomic_load_n(&w.calls, __ATOMIC_SEQ_CST) == 0)
                sched_yield();
            TCHECK((w.outcome) == (SL_CACHE_PUBLISHED));
            TCHECK(body_ok(w.obj, 1000 + r, r));
            sl_cache_obj_release(w.obj);
        }
        pthread_barrier_wait(c->bar);
        TCHECK((w.calls) == (res == SL_CACHE_WAITER ? 1 : 0)); /* exactly once */
        /* a late request is a hit */
        TCHECK((sl_cache_begin(c->s, &q.req, r, &f, &w.w, &o)) == (SL_CACHE_HIT));
        sl_cache_obj_release(o);
        c->hits++;
        pthread_barrier_wait(c->bar);
    }
    return NULL;
}

static void test_coalesce_threads(void **state)
{
    (void)state;
    sl_cache_store_t *s = mkstore(4 << 20, 64 << 10, 0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NT);
    pthread_t th[NT];
    struct coal c[NT];
    const unsigned rounds = 200;
    for (unsigned t = 0; t < NT; t++) {
        c[t] = (struct coal){.s = s, .bar = &bar, .rounds = rounds, .tid = t};
        assert_int_equal(pthread_create(&th[t], NULL, coal_run, &c[t]), 0);
    }
    unsigned leaders = 0, waiters = 0;
    for (unsigned t = 0; t < NT; t++) {
        pthread_join(th[t], NULL);
        leaders += c[t].leaders;
        waiters += c[t].waiters;
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(__atomic_load_n(&thread_failures, __ATOMIC_RELAXED), 0);
    assert_int_equal(leaders, rounds);
    assert_int_equal(waiters, rounds * (NT - 1));
    /* refs balanced: every object holds the store's reference only */
    char key[32];
    for (unsigned r = 0; r < rounds; r++) {
        snprintf(key, sizeof(key), "co.example/%u", r);
        sl_cache_obj_t *o = get(s, key, NULL, 1000);
        assert_non_null(o);
        assert_int_equal(sl_cache_obj_refs(o), 2);
        sl_cache_obj_release(o);
    }
    assert_int_equal(stats(s).objects, rounds);
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* Threads cancel their waiters while the leader publishes: each waiter is either called once or
 * cancelled (cancel returned 1), never both, never neither; references balance. */
enum { CW = 16 }; /* waiters per thread */

struct cancel_ctx {
    sl_cache_store_t *s;
    pthread_barrier_t *bar;
    unsigned rounds;
    unsigned tid;
    struct wctx w[CW];
    int cancelled[CW];
    uint64_t both, neither, total_called, total_cancelled;
};

static void *cancel_run(void *arg)
{
    struct cancel_ctx *c = arg;
    char key[32];
    uint64_t x = 0x9e3779b97f4a7c15ull * (c->tid + 1);
    for (unsigned r = 0; r < c->rounds; r++) {
        snprintf(key, sizeof(key), "cx.example/%u", r);
        struct rq q[CW];
        sl_cache_fill_t f;
        sl_cache_obj_t *o;
        pthread_barrier_wait(c->bar); /* the leader has begun */
        for (int i = 0; i < CW; i++) {
            rq_init(&q[i], key, NULL);
            wctx_init(&c->w[i]);
            c->cancelled[i] = 0;
            sl_cache_fill_init(&f);
            TCHECK((sl_cache_begin(c->s, &q[i].req, r, &f, &c->w[i].w, &o)) == (SL_CACHE_WAITER));
        }
        pthread_barrier_wait(c->bar); /* all registered: the leader publishes now */
        for (int i = 0; i < CW; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for (unsigned k = (unsigned)(x % 64); k > 0; k--)
                __asm__ volatile("" ::: "memory");
            if (x & 0x100)
                sched_yield();
            c->cancelled[i] = sl_cache_waiter_cancel(c->s, &c->w[i].w);
        }
        pthread_barrier_wait(c->bar); /* the leader's publish has returned */
        for (int i = 0; i < CW; i++) {
            int called = __atomic_load_n(&c->w[i].calls, __ATOMIC_SEQ_CST);
            if (called > 1 || (called && c->cancelled[i]))
                c->both++;
            if (!called && !c->cancelled[i])
                c->neither++;
            if (called) {
                c->total_called++;
                TCHECK((c->w[i].outcome) == (SL_CACHE_PUBLISHED));
                TCHECK(body_ok(c->w[i].obj, 64, r));
                sl_cache_obj_release(c->w[i].obj);
            } else {
                c->total_cancelled++;
            }
        }
        pthread_barrier_wait(c->bar);
    }
    return NULL;
}

static void test_cancel_race(void **state)
{
    (void)state;
    enum { CT = 3 };
    sl_cache_store_t *s = mkstore(4 << 20, 64 << 10, 0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, CT + 1);
    pthread_t th[CT];
    static struct cancel_ctx c[CT];
    const unsigned rounds = 300;
    for (unsigned t = 0; t < CT; t++) {
        memset(&c[t], 0, sizeof(c[t]));
        c[t].s = s;
        c[t].bar = &bar;
        c[t].rounds = rounds;
        c[t].tid = t;
        assert_int_equal(pthread_create(&th[t], NULL, cancel_run, &c[t]), 0);
    }
    char key[32];
    for (unsigned r = 0; r < rounds; r++) {
        snprintf(key, sizeof(key), "cx.example/%u", r);
        struct rq q;
        sl_cache_fill_t f;
        sl_cache_obj_t *o, *mine;
        rq_init(&q, key, NULL);
        sl_cache_fill_init(&f);
        assert_int_equal(sl_cache_begin(s, &q.req, r, &f, NULL, &o), SL_CACHE_LEADER);
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
        sl_cache_builder_t b;
        struct put_args a = {.key = key, .body = 64, .seed = r};
        assert_int_equal(build(s, &b, &a), 0);
        for (unsigned k = (r * 37) % 200; k > 0; k--) /* vary where the publish lands */
            __asm__ volatile("" ::: "memory");
        assert_int_equal(sl_cache_publish(s, &b, &f, r, &mine), 0);
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
        assert_int_equal(sl_cache_obj_refs(mine), 2); /* store + mine: every waiter released */
        sl_cache_obj_release(mine);
        assert_int_equal(stats(s).waiters, 0);
    }
    uint64_t called = 0, cancelled = 0;
    for (unsigned t = 0; t < CT; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(c[t].both, 0);
        assert_int_equal(c[t].neither, 0);
        called += c[t].total_called;
        cancelled += c[t].total_cancelled;
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(__atomic_load_n(&thread_failures, __ATOMIC_RELAXED), 0);
    assert_int_equal(called + cancelled, (uint64_t)rounds * CT * CW);
    print_message("cancel race: %llu called, %llu cancelled\n", (unsigned long long)called,
                  (unsigned long long)cancelled);
    assert_quiet(s);
    sl_cache_store_free(s);
}

/* 4 threads, random operations on a small budget: lookups (some held for a while), fills that
 * publish, abandon or fail on size, waits with timeouts (cancel), plain puts, purges. */
enum { ST_THREADS = 4, ST_KEYS = 48, ST_HELD = 5 };

struct stress {
    sl_cache_store_t *s;
    unsigned tid;
    unsigned iters;
    uint64_t now; /* per thread; all start together */
    uint64_t ops[8];
    uint64_t over_budget;
};

static void *stress_run(void *arg)
{
    struct stress *st = arg;
    sl_cache_store_t *s = st->s;
    sl_cache_obj_t *held[ST_HELD] = {0};
    uint64_t x = 0x2545f4914f6cdd1dull * (st->tid + 7);
    char key[32];
    static const char *const enc[] = {"gzip", "br", NULL};
    sl_slice_t tags[2] = {sl("even"), sl("odd")};
    for (unsigned i = 0; i < st->iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned k = (unsigned)(x % ST_KEYS);
        int varied = k % 4 == 0;
        snprintf(key, sizeof(key), "%s.st/%u", k % 2 ? "odd" : "even", k);
        const char *ae = enc[(x >> 20) % 3];
        char skey[16];
        snprintf(skey, sizeof(skey), "%s\n", ae ? ae : "");
        st->now++;
        unsigned op = (unsigned)((x >> 8) % 100);
        struct put_args a = {.key = key,
                             .vary = varied ? "accept-encoding" : NULL,
                             .skey = varied ? skey : NULL,
                             .tags = &tags[k % 2],
                             .ntags = 1,
                             .body = (size_t)((x >> 32) % 6000),
                             .seed = k,
                             .chunk = 1024,
                             .expires_ms = st->now + (x >> 40) % 50};
        if (op < 40) { /* lookup, maybe keep it */
            st->ops[0]++;
            sl_cache_obj_t *o = get(s, key, ae, st->now);
            if (o) {
                TCHECK(body_ok(o, o->body.len, k));
                unsigned h = (unsigned)((x >> 16) % ST_HELD);
                sl_cache_obj_release(held[h]);
                held[h] = o;
            }
        } else if (op < 75) { /* a request through begin */
            st->ops[1]++;
            struct rq q;
            sl_cache_fill_t f;
            struct wctx w;
            sl_cache_obj_t *o;
            rq_init(&q, key, ae);
            q.now = st->now;
            sl_cache_fill_init(&f);
            wctx_init(&w);
            int r = sl_cache_begin(s, &q.req, st->now, &f, &w.w, &o);
            if (o)
                TCHECK(body_ok(o, o->body.len, k));
            sl_cache_obj_release(o);
            if (r == SL_CACHE_LEADER) {
                unsigned how = (unsigned)((x >> 50) % 10);
                if (how == 0) {
                    sl_cache_fill_abandon(s, &f, SL_CACHE_NOT_STORABLE, st->now, 20);
                } else if (how == 1) {
                    sl_cache_fill_abandon(s, &f, SL_CACHE_ABANDONED, st->now, 0);
                } else {
                    sl_cache_builder_t b;
                    if (how == 2)
                        a.body = 9000; /* past max_object */
                    int e = build(s, &b, &a);
                    if (e == 0) {
                        e = sl_cache_publish(s, &b, &f, st->now, NULL);
                        TCHECK(e == 0 || e == 1);
                    } else {
                        TCHECK(e == SL_ETOOBIG || e == SL_ENOMEM);
                        sl_cache_builder_discard(&b);
                        sl_cache_fill_abandon(
                            s, &f, e == SL_ETOOBIG ? SL_CACHE_NOT_STORABLE : SL_CACHE_ABANDONED,
                            st->now, 10);
                    }
                }
            } else if (r == SL_CACHE_WAITER) {
                /* wait a little, then time out */
                unsigned spins = (unsigned)((x >> 44) % 200);
                while (spins-- && !__atomic_load_n(&w.calls, __ATOMIC_SEQ_CST))
                    sched_yield();
                if (!sl_cache_waiter_cancel(s, &w.w)) {
                    while (!__atomic_load_n(&w.calls, __ATOMIC_SEQ_CST))
                        sched_yield();
                    if (w.obj) {
                        TCHECK(body_ok(w.obj, w.obj->body.len, k));
                        sl_cache_obj_release(w.obj);
                    }
                } else {
                    TCHECK((__atomic_load_n(&w.calls, __ATOMIC_SEQ_CST)) == (0));
                }
            }
        } else if (op < 93) { /* a plain put */
            st->ops[2]++;
            int e = put(s, &a, st->now);
            TCHECK(e == 0 || e == SL_ENOMEM);
        } else if (op < 97) {
            st->ops[3]++;
            sl_cache_purge_key(s, sl(key));
        } else if (op < 99) {
            st->ops[4]++;
            sl_cache_purge_tag(s, tags[(x >> 30) % 2]);
        } else {
            st->ops[5]++;
            sl_cache_purge_prefix(s, sl(k % 2 ? "odd.st/1" : "even.st/2"));
        }
        sl_cache_stats_t ss;
        sl_cache_store_stats(s, &ss);
        if (ss.bytes > ss.budget)
            st->over_budget++;
    }
    for (unsigned h = 0; h < ST_HELD; h++)
        sl_cache_obj_release(held[h]);
    return NULL;
}

static void test_stress(void **state)
{
    (void)state;
    const size_t budget = 128 << 10;
    sl_cache_store_config_t cfg = {.memory = budget,
                                   .max_object = 8 << 10,
                                   .meta_size = sizeof(struct meta),
                                   .shards = 8,
                                   .max_variants = 2,
                                   .max_pass = 16};
    sl_cache_store_t *s;
    assert_int_equal(sl_cache_store_new(&cfg, &s), 0);
    pthread_t th[ST_THREADS];
    static struct stress st[ST_THREADS];
    for (unsigned t = 0; t < ST_THREADS; t++) {
        memset(&st[t], 0, sizeof(st[t]));
        st[t].s = s;
        st[t].tid = t;
        st[t].iters = 30000;
        assert_int_equal(pthread_create(&th[t], NULL, stress_run, &st[t]), 0);
    }
    uint64_t ops[8] = {0};
    for (unsigned t = 0; t < ST_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(st[t].over_budget, 0);
        for (int i = 0; i < 8; i++)
            ops[i] += st[t].ops[i];
    }
    sl_cache_stats_t ss = stats(s);
    assert_int_equal(__atomic_load_n(&thread_failures, __ATOMIC_RELAXED), 0);
    print_message("stress: %llu lookups, %llu begins, %llu puts, %llu purges; %llu objects, "
                  "%llu bytes, %llu evictions, %llu replaced, %llu purged, %llu nomem, "
                  "%llu pass marks set\n",
                  (unsigned long long)ops[0], (unsigned long long)ops[1],
                  (unsigned long long)ops[2], (unsigned long long)(ops[3] + ops[4] + ops[5]),
                  (unsigned long long)ss.objects, (unsigned long long)ss.bytes,
                  (unsigned long long)ss.evictions, (unsigned long long)ss.replaced,
                  (unsigned long long)ss.purged, (unsigned long long)ss.nomem,
                  (unsigned long long)ss.pass_set);
    assert_true(ss.evictions > 0);
    assert_true(ss.bytes <= budget);
    assert_quiet(s);
    assert_true(ss.pass_marks <= 16);
    /* everything released: purging all leaves an empty store with nothing charged */
    sl_cache_purge_prefix(s, sl(""));
    ss = stats(s);
    assert_int_equal(ss.objects, 0);
    assert_int_equal(ss.bytes, 0);
    sl_cache_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_replace_refcount),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_evicted_stays_readable),
        cmocka_unit_test(test_lru_budget),
        cmocka_unit_test(test_max_object),
        cmocka_unit_test(test_begin_basics),
        cmocka_unit_test(test_coalesce_vary),
        cmocka_unit_test(test_abandon), cmocka_unit_test(test_share),
        cmocka_unit_test(test_pass_bound),
        cmocka_unit_test(test_waiter_bound),
        cmocka_unit_test(test_purge),
        cmocka_unit_test(test_purge_during_fill),
        cmocka_unit_test(test_coalesce_threads),
        cmocka_unit_test(test_cancel_race),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
