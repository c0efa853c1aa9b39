/* store.c - the L1 object store: sharded tables of immutable, reference-counted objects under one
 * byte budget, the coalescing registry and hit-for-pass marks, purges. Shared by every worker;
 * never blocks on I/O, never holds two locks, allocates nothing under a lock.
 *
 * Objects. One malloc per object: [struct obj | meta | tag slices | key skey vary tags head |
 * body]. The body is last so the builder grows it with realloc (glibc moves big blocks with
 * mremap, no copy); publish shrinks it to fit. Once published an object never changes: readers
 * on any thread use it with no lock, for as long as they hold a reference. refs is atomic; the
 * store holds one reference while the object is in a table, each reader one more. Replacing,
 * evicting or purging an object only unlinks it and drops the store's reference: the memory goes
 * with the last reference, on whichever thread drops it.
 *
 * Shards. N (a power of two, 64 by default) by the primary key's hash, each with a mutex, a
 * chained hash table of objects (fixed bucket count, sized from memory / avg_object at creation:
 * nothing is resized under a lock), an LRU list, and the pending table (fills in progress and
 * hit-for-pass marks, also chained). A key's variants, fills and marks live in one shard, so
 * every decision about a key is one critical section: pointer walks, memcmp, the caller's vary
 * and fresh callbacks (pure functions of the request), no allocation, no I/O, no second lock.
 * A hit: lock, walk the chain, take a reference, move to the LRU head, unlock.
 *
 * Budget. bytes (atomic) counts every object alive: in a table, evicted or replaced but still
 * referenced, and builders being filled. A builder reserves its allocation before making it
 * (compare-and-swap that never passes the budget) and reserves again before each growth, so
 * bytes <= memory always. An object's charge is its allocation rounded as glibc's malloc rounds
 * it: + 16 bytes of chunk header, to 16 bytes, or to a 4 KiB page from 64 KiB (mmapped chunks).
 * The object header (struct obj, 208 bytes on x86-64), meta, keys, tags and head are inside the
 * charge. So memory in use <= budget + the fixed tables (8 bytes a bucket, 128 a shard) + the
 * hit-for-pass marks (not charged: at most max_pass of 104 bytes + key + secondary key each) +
 * allocator fragmentation. Fills and waiters are the caller's memory. The charge is returned when
 * the memory is freed, not when the object leaves the table: an object evicted while a slow
 * client reads it still counts, so the budget bounds real memory, at the price of evicting more
 * while it is held. max_object is clamped to a quarter of the budget: an object must fit with its
 * header, and one object must not flush the whole cache.
 *
 * Eviction. When a reservation does not fit, the store evicts the least recently used object of
 * the whole store, approximately: every shard publishes the last-use time of its LRU tail
 * (`oldest`, caller ms, atomic); the reserver reads all N and evicts the tail of the shard whose
 * tail is oldest (its own shard on a tie), one object per lock hold, until the reservation fits.
 * Exact LRU inside a shard, millisecond-exact across shards, no global list or lock. If nothing
 * is left to evict (the bytes are held by readers or builders) the builder gets SL_ENOMEM and
 * the response streams through uncached.
 *
 * Variants. Objects sharing a primary key are variants, told apart by the secondary key (the
 * request's values of the Vary fields). All variants of a key are stored under one Vary names
 * string: publishing under other names drops the others (the origin changed its Vary). At most
 * max_variants per key, the least recently used goes first. The caller's vary callback is called
 * at most once per distinct names string per lookup (memoized), under the lock.
 *
 * Coalescing. A fill (the leader's, caller-owned) sits in the pending table with the key, the
 * Vary names the store knew at the time (those of the key's variants, or none) and the leader's
 * secondary key under them; a request joins it when its own secondary key under those names
 * matches (with no names known, every request for the key joins). Waiters are caller-owned,
 * doubly linked into the fill; at most max_waiters (then BUSY). Completion (publish or abandon)
 * takes the waiter list out under the lock, marks each waiter NOTIFIED, takes one object
 * reference per waiter, unlocks, then runs the callbacks on its own thread, reading each
 * waiter's next/cb/arg before calling it (the callback may free it).
 * Cancel contract: under the same lock, a WAITING waiter is unlinked (returns 1: never called);
 * a NOTIFIED one is left alone (returns 0: its callback has run or will run, exactly once; the
 * owner keeps it valid until then). No waiter is both called and cancelled, none is lost.
 * Hit-for-pass: abandoning with NOT_STORABLE leaves a mark with the fill's key and secondary key
 * until now + pass_ms; begin answers PASS while it lasts. Marks are bounded per shard (the oldest
 * goes first) and reaped when met expired.
 *
 * Purge. Objects matching are unlinked and their store reference dropped after the lock. A fill
 * in progress that matches (key or prefix; for a tag purge every fill, as its tags are unknown
 * until it publishes) is detached from the pending table: later requests start a new fill, and
 * the detached fill's publish goes to its waiters (who asked before the purge) but not into the
 * table, so a purge is never undone by an answer requested before it. Prefix and tag purges walk
 * each shard in batches of PURGE_BATCH buckets per lock hold. */
#include "store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/hash.h"

#define DEF_SHARDS 64
#define DEF_WAITERS 10000
#define DEF_VARIANTS 32
#define DEF_PASS 65536
#define DEF_AVG 4096
#define FIRST_BODY 4096 /* first body capacity when the length is unknown */
#define PURGE_BATCH 256 /* buckets walked per lock hold by prefix and tag purges */
#define MAX_BUCKETS (1u << 26)

enum { P_FILL = 1, P_PASS = 2 };                         /* pending kinds */
enum { F_IDLE = 0, F_ACTIVE, F_DETACHED };               /* fill states */
enum { W_IDLE = 0, W_WAITING, W_NOTIFIED, W_CANCELLED }; /* waiter states */

struct obj {
    sl_cache_obj_t pub; /* first: what callers see */
    sl_cache_store_t *store;
    uint64_t hash;
    uint64_t atime;            /* last use, caller ms; under the shard lock */
    struct obj *next, **pprev; /* bucket chain */
    struct obj *newer, *older; /* LRU list; a doomed list (after unlink) reuses older */
    size_t fixed;              /* allocation bytes before the body */
    size_t body_cap;
    uint32_t refs; /* atomic */
    uint32_t shard;
    int in_table;
    int error; /* builder: first error, sticky */
} __attribute__((aligned(16)));

/* A hit-for-pass mark; key, vary and skey bytes follow. */
struct mark {
    struct sl_cache_pending pend; /* kind P_PASS */
    struct mark *older, *newer;   /* the shard's marks, oldest first (the bound drops the oldest) */
    uint64_t expires_ms;
    char bytes[];
};

struct shard {
    pthread_mutex_t lock;
    struct obj **buckets;
    struct sl_cache_pending **pend;
    struct obj *lru_new, *lru_old;
    struct mark *mark_old, *mark_new;
    uint32_t npass;
    uint64_t nobj;
    uint64_t oldest; /* atime of lru_old, UINT64_MAX when empty; written under the lock, read
                      * without it by eviction (atomic) */
} __attribute__((aligned(64)));

struct sl_cache_store {
    size_t budget, max_object, meta_size, meta_pad;
    uint32_t nshards, shard_mask, bucket_mask, pend_mask;
    uint32_t max_waiters, max_variants, max_pass_shard;
    struct shard *shards;
    uint64_t bytes __attribute__((aligned(64))); /* the budget's CAS target, alone on its line */
    struct {
        uint64_t objects, stored, evictions, replaced, purged, nomem, pass_marks, pass_set, fills,
            waiters, busy;
    } c __attribute__((aligned(64)));
};

#define CNT_ADD(s, f, n) __atomic_fetch_add(&(s)->c.f, (uint64_t)(n), __ATOMIC_RELAXED)
#define CNT_SUB(s, f, n) __atomic_fetch_sub(&(s)->c.f, (uint64_t)(n), __ATOMIC_RELAXED)

static inline int bytes_eq(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

static inline int slice_eq(sl_slice_t a, sl_slice_t b)
{
    return bytes_eq(a.p, a.len, b.p, b.len);
}

static inline uint32_t shard_index(const sl_cache_store_t *s, uint64_t h)
{
    return (uint32_t)(h >> 32) & s->shard_mask;
}

static uint32_t pow2_at_least(uint64_t v, uint32_t max)
{
    uint32_t p = 1;
    while (p < v && p < max)
        p <<= 1;
    return p;
}

/* ---- budget ------------------------------------------------------------------------------ */

/* What an allocation of n bytes costs (see the file comment). */
static size_t charge_of(size_t n)
{
    if (n >= (64u << 10))
        return (n + 16 + 4095) & ~(size_t)4095;
    return (n + 16 + 15) & ~(size_t)15;
}

static void unreserve(sl_cache_store_t *s, size_t n)
{
    __atomic_fetch_sub(&s->bytes, (uint64_t)n, __ATOMIC_RELEASE);
}

static void obj_free(struct obj *o)
{
    sl_cache_store_t *s = o->store;
    size_t c = o->pub.charge;
    free(o);
    unreserve(s, c);
}

void sl_cache_obj_ref(sl_cache_obj_t *obj)
{
    __atomic_fetch_add(&((struct obj *)obj)->refs, 1, __ATOMIC_RELAXED);
}

void sl_cache_obj_release(sl_cache_obj_t *obj)
{
    if (!obj)
        return;
    struct obj *o = (struct obj *)obj;
    if (__atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) == 0)
        obj_free(o);
}

uint32_t sl_cache_obj_refs(const sl_cache_obj_t *obj)
{
    return __atomic_load_n(&((const struct obj *)obj)->refs, __ATOMIC_RELAXED);
}

/* Release a list of unlinked objects chained through `older` (after the lock). */
static void release_list(struct obj *o)
{
    while (o) {
        struct obj *next = o->older;
        sl_cache_obj_release(&o->pub);
        o = next;
    }
}

static void free_marks(struct mark *m)
{
    while (m) {
        struct mark *next = m->older;
        free(m);
        m = next;
    }
}

/* ---- shard tables (caller holds the shard lock) ------------------------------------------ */

static inline void set_oldest(struct shard *sh)
{
    __atomic_store_n(&sh->oldest, sh->lru_old ? sh->lru_old->atime : UINT64_MAX, __ATOMIC_RELAXED);
}

static void lru_unlink(struct shard *sh, struct obj *o)
{
    if (o->newer)
        o->newer->older = o->older;
    else
        sh->lru_new = o->older;
    if (o->older)
        o->older->newer = o->newer;
    else
        sh->lru_old = o->newer;
    o->newer = o->older = NULL;
}

static void lru_push(struct shard *sh, struct obj *o)
{
    o->newer = NULL;
    o->older = sh->lru_new;
    if (sh->lru_new)
        sh->lru_new->newer = o;
    else
        sh->lru_old = o;
    sh->lru_new = o;
}

static void touch(struct shard *sh, struct obj *o, uint64_t now_ms)
{
    if (now_ms > o->atime)
        o->atime = now_ms;
    if (sh->lru_new != o) {
        lru_unlink(sh, o);
        lru_push(sh, o);
    }
    set_oldest(sh);
}

static void obj_insert(sl_cache_store_t *s, struct shard *sh, struct obj *o, uint64_t now_ms)
{
    struct obj **b = &sh->buckets[o->hash & s->bucket_mask];
    o->next = *b;
    if (*b)
        (*b)->pprev = &o->next;
    o->pprev = b;
    *b = o;
    o->atime = now_ms;
    lru_push(sh, o);
    set_oldest(sh);
    o->in_table = 1;
    sh->nobj++;
    CNT_ADD(s, objects, 1);
    CNT_ADD(s, stored, o->pub.charge);
}

/* Take o out of its shard and push it on *doomed (its store reference is dropped by the caller
 * once the lock is released). */
static void obj_unlink(sl_cache_store_t *s, struct shard *sh, struct obj *o, struct obj **doomed)
{
    *o->pprev = o->next;
    if (o->next)
        o->next->pprev = o->pprev;
    o->next = NULL;
    o->pprev = NULL;
    lru_unlink(sh, o);
    set_oldest(sh);
    o->in_table = 0;
    sh->nobj--;
    CNT_SUB(s, objects, 1);
    CNT_SUB(s, stored, o->pub.charge);
    o->older = *doomed;
    *doomed = o;
}

static void pend_insert(sl_cache_store_t *s, struct shard *sh, struct sl_cache_pending *p)
{
    struct sl_cache_pending **b = &sh->pend[p->hash & s->pend_mask];
    p->next = *b;
    if (*b)
        (*b)->pprev = &p->next;
    p->pprev = b;
    *b = p;
}

static void pend_unlink(struct sl_cache_pending *p)
{
    *p->pprev = p->next;
    if (p->next)
        p->next->pprev = p->pprev;
    p->next = NULL;
    p->pprev = NULL;
}

/* Unlink mark m and push it on *dead (freed after the lock). */
static void mark_unlink(sl_cache_store_t *s, struct shard *sh, struct mark *m, struct mark **dead)
{
    pend_unlink(&m->pend);
    if (m->newer)
        m->newer->older = m->older;
    else
        sh->mark_new = m->older;
    if (m->older)
        m->older->newer = m->newer;
    else
        sh->mark_old = m->newer;
    sh->npass--;
    CNT_SUB(s, pass_marks, 1);
    m->newer = NULL;
    m->older = *dead;
    *dead = m;
}

/* ---- eviction ---------------------------------------------------------------------------- */

/* The shard whose LRU tail was used longest ago (home on a tie), or -1 when all are empty. */
static int pick_victim(sl_cache_store_t *s, uint32_t home)
{
    uint64_t best = __atomic_load_n(&s->shards[home].oldest, __ATOMIC_RELAXED);
    int bi = best == UINT64_MAX ? -1 : (int)home;
    for (uint32_t i = 0; i < s->nshards; i++) {
        uint64_t t = __atomic_load_n(&s->shards[i].oldest, __ATOMIC_RELAXED);
        if (t < best) {
            best = t;
            bi = (int)i;
        }
    }
    return bi;
}

/* Evict shard v's LRU tail; 1 when one was evicted. */
static int evict_one(sl_cache_store_t *s, uint32_t v)
{
    struct shard *sh = &s->shards[v];
    struct obj *doomed = NULL;
    pthread_mutex_lock(&sh->lock);
    if (sh->lru_old) {
        obj_unlink(s, sh, sh->lru_old, &doomed);
        CNT_ADD(s, evictions, 1);
    }
    pthread_mutex_unlock(&sh->lock);
    release_list(doomed);
    return doomed != NULL;
}

/* Charge n bytes, evicting LRU objects until they fit. 0, or SL_ENOMEM when nothing evictable is
 * left (the bytes are held by readers or builders) or n exceeds the budget. No lock held. */
static int reserve(sl_cache_store_t *s, size_t n, uint32_t home)
{
    if (n > s->budget)
        return SL_ENOMEM;
    unsigned misses = 0;
    uint64_t cur = __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
    for (;;) {
        if (cur + n <= s->budget) {
            if (__atomic_compare_exchange_n(&s->bytes, &cur, cur + n, 1, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED))
                return SL_OK;
            continue;
        }
        int v = pick_victim(s, home);
        if (v < 0)
            return SL_ENOMEM;
        /* a race emptied the chosen shard: retry, but not forever */
        if (!evict_one(s, (uint32_t)v) && ++misses > 2 * s->nshards)
            return SL_ENOMEM;
        cur = __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
    }
}

/* ---- the store --------------------------------------------------------------------------- */

int sl_cache_store_new(const sl_cache_store_config_t *cfg, sl_cache_store_t **out)
{
    *out = NULL;
    unsigned nsh = cfg->shards ? cfg->shards : DEF_SHARDS;
    if (cfg->memory == 0 || cfg->meta_size > SL_CACHE_MAX_META || nsh > SL_CACHE_MAX_SHARDS ||
        (nsh & (nsh - 1)) != 0)
        return SL_EINVAL;
    size_t avg = cfg->avg_object ? cfg->avg_object : DEF_AVG;
    uint32_t nb = pow2_at_least(cfg->memory / avg, MAX_BUCKETS) / nsh;
    if (nb < 8)
        nb = 8;
    unsigned max_pass = cfg->max_pass ? cfg->max_pass : DEF_PASS;
    uint32_t per_pass = (max_pass + nsh - 1) / nsh;
    uint32_t np = pow2_at_least(per_pass / 4, 1u << 16);
    if (np < 16)
        np = 16;

    sl_cache_store_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SL_ENOMEM;
    s->budget = cfg->memory;
    /* One object never takes more than a quarter of the budget: it must fit with its header,
     * and storing it must not flush the whole cache. */
    s->max_object =
        cfg->max_object && cfg->max_object < cfg->memory / 4 ? cfg->max_object : cfg->memory / 4;
    if (s->max_object == 0)
        s->max_object = 1;
    s->meta_size = cfg->meta_size;
    s->meta_pad = (cfg->meta_size + 15) & ~(size_t)15;
    s->nshards = nsh;
    s->shard_mask = nsh - 1;
    s->bucket_mask = nb - 1;
    s->pend_mask = np - 1;
    s->max_waiters = cfg->max_waiters ? cfg->max_waiters : DEF_WAITERS;
    s->max_variants = cfg->max_variants ? cfg->max_variants : DEF_VARIANTS;
    s->max_pass_shard = per_pass ? per_pass : 1;
    s->shards = aligned_alloc(64, sizeof(struct shard) * nsh);
    if (!s->shards) {
        free(s);
        return SL_ENOMEM;
    }
    memset(s->shards, 0, sizeof(struct shard) * nsh);
    for (uint32_t i = 0; i < nsh; i++) {
        struct shard *sh = &s->shards[i];
        sh->oldest = UINT64_MAX;
        sh->buckets = calloc(nb, sizeof(*sh->buckets));
        sh->pend = calloc(np, sizeof(*sh->pend));
        if (!sh->buckets || !sh->pend || pthread_mutex_init(&sh->lock, NULL) != 0) {
            free(sh->buckets);
            free(sh->pend);
            s->nshards = i; /* shards [0, i) are complete */
            sl_cache_store_free(s);
            return SL_ENOMEM;
        }
    }
    *out = s;
    return SL_OK;
}

void sl_cache_store_free(sl_cache_store_t *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];
        struct obj *doomed = NULL;
        struct mark *dead = NULL;
        pthread_mutex_lock(&sh->lock);
        while (sh->lru_old)
            obj_unlink(s, sh, sh->lru_old, &doomed);
        while (sh->mark_old)
            mark_unlink(s, sh, sh->mark_old, &dead);
        pthread_mutex_unlock(&sh->lock);
        release_list(doomed);
        free_marks(dead);
        pthread_mutex_destroy(&sh->lock);
        free(sh->buckets);
        free(sh->pend);
    }
    free(s->shards);
    free(s);
}

void sl_cache_store_stats(const sl_cache_store_t *s, sl_cache_stats_t *st)
{
#define LD(f) __atomic_load_n(&s->c.f, __ATOMIC_RELAXED)
    st->objects = LD(objects);
    st->bytes = __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
    st->stored = LD(stored);
    st->budget = s->budget;
    st->evictions = LD(evictions);
    st->replaced = LD(replaced);
    st->purged = LD(purged);
    st->nomem = LD(nomem);
    st->pass_marks = LD(pass_marks);
    st->pass_set = LD(pass_set);
    st->fills = LD(fills);
    st->waiters = LD(waiters);
    st->busy = LD(busy);
#undef LD
}

/* ---- building ---------------------------------------------------------------------------- */

/* Whether a Vary names list has the member "*" (OWS around members ignored). */
static int vary_has_star(sl_slice_t v)
{
    size_t i = 0;
    while (i < v.len) {
        size_t j = i;
        while (j < v.len && v.p[j] != ',')
            j++;
        size_t a = i, z = j;
        while (a < z && (v.p[a] == ' ' || v.p[a] == '\t'))
            a++;
        while (z > a && (v.p[z - 1] == ' ' || v.p[z - 1] == '\t'))
            z--;
        if (z - a == 1 && v.p[a] == '*')
            return 1;
        i = j + 1;
    }
    return 0;
}

/* Point the public slices at their bytes (after the allocation was made or moved). */
static void relayout(struct obj *o, size_t meta_pad)
{
    char *p = (char *)(o + 1);
    o->pub.meta = p;
    p += meta_pad;
    sl_slice_t *tags = (sl_slice_t *)p;
    o->pub.tags = tags;
    p += o->pub.ntags * sizeof(sl_slice_t);
    o->pub.key.p = p;
    p += o->pub.key.len;
    o->pub.skey.p = p;
    p += o->pub.skey.len;
    o->pub.vary.p = p;
    p += o->pub.vary.len;
    for (unsigned i = 0; i < o->pub.ntags; i++) {
        tags[i].p = p;
        p += tags[i].len;
    }
    o->pub.head.p = p;
    p += o->pub.head.len;
    o->pub.body.p = p;
}

static int add_ok(size_t *acc, size_t n)
{
    if (n > SIZE_MAX / 4 - *acc)
        return 0;
    *acc += n;
    return 1;
}

int sl_cache_builder_init(sl_cache_store_t *s, sl_cache_builder_t *b,
                          const sl_cache_obj_spec_t *spec)
{
    b->obj = NULL;
    if (spec->ntags > SL_CACHE_MAX_TAGS || (spec->ntags && !spec->tags) ||
        vary_has_star(spec->vary) || (spec->vary.len == 0 && spec->skey.len != 0))
        return SL_EINVAL;
    if (spec->body_hint > s->max_object)
        return SL_ETOOBIG;
    size_t fixed = sizeof(struct obj);
    int ok = add_ok(&fixed, s->meta_pad) && add_ok(&fixed, spec->ntags * sizeof(sl_slice_t)) &&
             add_ok(&fixed, spec->key.len) && add_ok(&fixed, spec->skey.len) &&
             add_ok(&fixed, spec->vary.len) && add_ok(&fixed, spec->head.len);
    for (unsigned i = 0; ok && i < spec->ntags; i++)
        ok = add_ok(&fixed, spec->tags[i].len);
    if (!ok)
        return SL_EINVAL;
    size_t body_cap = spec->body_hint ? spec->body_hint
                                      : (FIRST_BODY < s->max_object ? FIRST_BODY : s->max_object);
    size_t alloc = fixed + body_cap;
    size_t charge = charge_of(alloc);
    uint64_t h = sl_hash_bytes(spec->key.p, spec->key.len);
    if (reserve(s, charge, shard_index(s, h)) != SL_OK) {
        CNT_ADD(s, nomem, 1);
        return SL_ENOMEM;
    }
    struct obj *o = malloc(alloc);
    if (!o) {
        unreserve(s, charge);
        CNT_ADD(s, nomem, 1);
        return SL_ENOMEM;
    }
    memset(o, 0, sizeof(*o));
    o->store = s;
    o->hash = h;
    o->shard = shard_index(s, h);
    o->refs = 1; /* the builder's; becomes the store's on publish */
    o->fixed = fixed;
    o->body_cap = body_cap;
    o->pub.charge = charge;
    o->pub.ntags = spec->ntags;
    o->pub.key.len = spec->key.len;
    o->pub.skey.len = spec->skey.len;
    o->pub.vary.len = spec->vary.len;
    o->pub.head.len = spec->head.len;
    sl_slice_t *tags = (sl_slice_t *)((char *)(o + 1) + s->meta_pad);
    for (unsigned i = 0; i < spec->ntags; i++)
        tags[i].len = spec->tags[i].len;
    relayout(o, s->meta_pad);
    if (spec->meta)
        memcpy(o->pub.meta, spec->meta, s->meta_size);
    else
        memset(o->pub.meta, 0, s->meta_size);
    if (spec->key.len)
        memcpy((char *)o->pub.key.p, spec->key.p, spec->key.len);
    if (spec->skey.len)
        memcpy((char *)o->pub.skey.p, spec->skey.p, spec->skey.len);
    if (spec->vary.len)
        memcpy((char *)o->pub.vary.p, spec->vary.p, spec->vary.len);
    for (unsigned i = 0; i < spec->ntags; i++)
        if (spec->tags[i].len)
            memcpy((char *)tags[i].p, spec->tags[i].p, spec->tags[i].len);
    if (spec->head.len)
        memcpy((char *)o->pub.head.p, spec->head.p, spec->head.len);
    b->obj = o;
    return SL_OK;
}

int sl_cache_builder_append(sl_cache_builder_t *b, const void *p, size_t n)
{
    struct obj *o = b->obj;
    if (!o)
        return SL_EINVAL;
    if (o->error)
        return o->error;
    if (n == 0)
        return SL_OK;
    sl_cache_store_t *s = o->store;
    size_t len = o->pub.body.len;
    if (n > s->max_object - len) {
        o->error = SL_ETOOBIG;
        return o->error;
    }
    if (len + n > o->body_cap) {
        size_t cap = o->body_cap > s->max_object / 2 ? s->max_object : o->body_cap * 2;
        if (cap < len + n)
            cap = len + n;
        size_t charge = charge_of(o->fixed + cap);
        size_t more = charge - o->pub.charge;
        if (reserve(s, more, o->shard) != SL_OK) {
            CNT_ADD(s, nomem, 1);
            o->error = SL_ENOMEM;
            return o->error;
        }
        struct obj *m = realloc(o, o->fixed + cap);
        if (!m) {
            unreserve(s, more);
            CNT_ADD(s, nomem, 1);
            o->error = SL_ENOMEM;
            return o->error;
        }
        o = m;
        b->obj = o;
        o->body_cap = cap;
        o->pub.charge = charge;
        relayout(o, s->meta_pad);
    }
    memcpy((char *)o->pub.body.p + len, p, n);
    o->pub.body.len = len + n;
    return SL_OK;
}

void *sl_cache_builder_meta(sl_cache_builder_t *b)
{
    return b->obj ? ((struct obj *)b->obj)->pub.meta : NULL;
}

size_t sl_cache_builder_body_len(const sl_cache_builder_t *b)
{
    return b->obj ? ((const struct obj *)b->obj)->pub.body.len : 0;
}

void sl_cache_builder_discard(sl_cache_builder_t *b)
{
    if (b->obj)
        sl_cache_obj_release(&((struct obj *)b->obj)->pub);
    b->obj = NULL;
}

/* ---- lookups ----------------------------------------------------------------------------- */

/* The request's secondary key, memoized for the last names string asked (names pointers stay
 * valid for a whole critical section). */
struct vctx {
    const sl_cache_req_t *req;
    const char *names;
    size_t nlen;
    int have;
    int len; /* < 0: cannot be computed */
};

/* The request's secondary key under names at *out; 0, or -1 when it cannot be computed. */
static int vctx_skey(struct vctx *c, const char *names, size_t nlen, sl_slice_t *out)
{
    if (nlen == 0) {
        out->p = "";
        out->len = 0;
        return 0;
    }
    const sl_cache_req_t *r = c->req;
    if (!c->have || !bytes_eq(c->names, c->nlen, names, nlen)) {
        int len = -1;
        if (r->vary && r->scratch && r->scratch_cap > 0) {
            len = r->vary(r->arg, names, nlen, r->scratch, r->scratch_cap);
            if (len >= 0 && (size_t)len > r->scratch_cap)
                len = -1;
        }
        c->names = names;
        c->nlen = nlen;
        c->have = 1;
        c->len = len;
    }
    if (c->len < 0)
        return -1;
    out->p = r->scratch;
    out->len = (size_t)c->len;
    return 0;
}

static int vctx_matches(struct vctx *c, sl_slice_t names, sl_slice_t skey)
{
    sl_slice_t mine;
    return vctx_skey(c, names.p, names.len, &mine) == 0 && slice_eq(mine, skey);
}

/* The variant of key matching the request, or NULL; *names: the key's Vary names (those of the
 * first variant met; all share one), "" without variants. Under the shard lock. */
static struct obj *find_variant(sl_cache_store_t *s, struct shard *sh, uint64_t h, sl_slice_t key,
                                struct vctx *vc, sl_slice_t *names)
{
    names->p = "";
    names->len = 0;
    int first = 1;
    for (struct obj *o = sh->buckets[h & s->bucket_mask]; o; o = o->next) {
        if (o->hash != h || !slice_eq(o->pub.key, key))
            continue;
        if (first) {
            *names = o->pub.vary;
            first = 0;
        }
        if (vctx_matches(vc, o->pub.vary, o->pub.skey))
            return o;
    }
    return NULL;
}

sl_cache_obj_t *sl_cache_lookup(sl_cache_store_t *s, const sl_cache_req_t *req, uint64_t now_ms)
{
    uint64_t h = sl_hash_bytes(req->key.p, req->key.len);
    struct shard *sh = &s->shards[shard_index(s, h)];
    struct vctx vc = {.req = req};
    sl_slice_t names;
    pthread_mutex_lock(&sh->lock);
    struct obj *o = find_variant(s, sh, h, req->key, &vc, &names);
    if (o) {
        __atomic_fetch_add(&o->refs, 1, __ATOMIC_RELAXED);
        touch(sh, o, now_ms);
    }
    pthread_mutex_unlock(&sh->lock);
    return o ? &o->pub : NULL;
}

int sl_cache_obj_matches(const sl_cache_obj_t *obj, const sl_cache_req_t *req)
{
    struct vctx vc = {.req = req};
    return vctx_matches(&vc, obj->vary, obj->skey);
}

/* ---- coalescing -------------------------------------------------------------------------- */

/* A fill's state read without its shard lock, by its leader: a purge on another thread may be
 * turning ACTIVE into DETACHED meanwhile (either way it is not IDLE). */
static inline int fill_state(const sl_cache_fill_t *f)
{
    return __atomic_load_n(&f->state, __ATOMIC_RELAXED);
}

void sl_cache_waiter_init(sl_cache_waiter_t *w, sl_cache_wait_fn cb, void *arg)
{
    memset(w, 0, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->state = W_IDLE;
}

void sl_cache_fill_init(sl_cache_fill_t *f)
{
    memset(f, 0, sizeof(*f));
    f->state = F_IDLE;
}

int sl_cache_begin(sl_cache_store_t *s, const sl_cache_req_t *req, uint64_t now_ms,
                   sl_cache_fill_t *fill, sl_cache_waiter_t *w, sl_cache_obj_t **objp)
{
    uint64_t h = sl_hash_bytes(req->key.p, req->key.len);
    uint32_t si = shard_index(s, h);
    struct shard *sh = &s->shards[si];
    struct vctx vc = {.req = req};
    struct mark *dead = NULL;
    sl_slice_t names;
    int r;

    *objp = NULL;
    pthread_mutex_lock(&sh->lock);
    struct obj *o = find_variant(s, sh, h, req->key, &vc, &names);
    if (o) {
        __atomic_fetch_add(&o->refs, 1, __ATOMIC_RELAXED);
        touch(sh, o, now_ms);
        *objp = &o->pub;
        if (!req->fresh || req->fresh(req->arg, &o->pub)) {
            pthread_mutex_unlock(&sh->lock);
            return SL_CACHE_HIT;
        }
    }

    /* Marks first (a hit-for-pass key is not coalesced), then fills. */
    int pass = 0;
    sl_cache_fill_t *join = NULL;
    struct sl_cache_pending *p = sh->pend[h & s->pend_mask], *pn;
    for (; p; p = pn) {
        pn = p->next;
        if (p->hash != h || !slice_eq(p->key, req->key))
            continue;
        if (p->kind == P_PASS) {
            struct mark *m = (struct mark *)p;
            if (now_ms >= m->expires_ms) {
                mark_unlink(s, sh, m, &dead);
                continue;
            }
            if (vctx_matches(&vc, p->vary, p->skey)) {
                pass = 1;
                break;
            }
        } else if (!join && vctx_matches(&vc, p->vary, p->skey)) {
            join = (sl_cache_fill_t *)p;
        }
    }

    if (pass) {
        r = SL_CACHE_PASS;
    } else if (join) {
        if (!w) {
            r = SL_CACHE_PASS;
        } else if (join->nwaiters >= s->max_waiters) {
            CNT_ADD(s, busy, 1);
            r = SL_CACHE_BUSY;
        } else {
            w->fill = join;
            w->shard = si;
            w->state = W_WAITING;
            w->prev = NULL;
            w->next = join->waiters;
            if (join->waiters)
                join->waiters->prev = w;
            join->waiters = w;
            join->nwaiters++;
            CNT_ADD(s, waiters, 1);
            r = SL_CACHE_WAITER;
        }
    } else {
        sl_slice_t sk;
        r = SL_CACHE_PASS;
        /* Lead under the key's known Vary names; the fill keeps them after the secondary key
         * in the leader's scratch (the variant they came from may go away meanwhile). */
        if (fill && fill_state(fill) == F_IDLE && !(req->flags & SL_CACHE_NO_LEAD) &&
            vctx_skey(&vc, names.p, names.len, &sk) == 0 &&
            (names.len == 0 || names.len <= req->scratch_cap - sk.len)) {
            fill->pend.hash = h;
            fill->pend.kind = P_FILL;
            fill->pend.key = req->key;
            fill->pend.skey = sk;
            fill->pend.vary.len = names.len;
            fill->pend.vary.p = "";
            if (names.len) {
                memcpy(req->scratch + sk.len, names.p, names.len);
                fill->pend.vary.p = req->scratch + sk.len;
            }
            fill->waiters = NULL;
            fill->nwaiters = 0;
            fill->shard = si;
            fill->state = F_ACTIVE;
            pend_insert(s, sh, &fill->pend);
            CNT_ADD(s, fills, 1);
            r = SL_CACHE_LEADER;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    free_marks(dead);
    return r;
}

int sl_cache_waiter_cancel(sl_cache_store_t *s, sl_cache_waiter_t *w)
{
    struct shard *sh = &s->shards[w->shard & s->shard_mask];
    int r;
    pthread_mutex_lock(&sh->lock);
    if (w->state == W_WAITING) {
        sl_cache_fill_t *f = w->fill;
        if (w->prev)
            w->prev->next = w->next;
        else
            f->waiters = w->next;
        if (w->next)
            w->next->prev = w->prev;
        f->nwaiters--;
        CNT_SUB(s, waiters, 1);
        w->prev = w->next = NULL;
        w->fill = NULL;
        w->state = W_CANCELLED;
        r = 1;
    } else {
        r = w->state != W_NOTIFIED;
    }
    pthread_mutex_unlock(&sh->lock);
    return r;
}

/* End fill f under its shard lock: out of the pending table, its waiters taken out and marked
 * NOTIFIED. Returns them (to notify after the lock). */
static sl_cache_waiter_t *fill_finish(sl_cache_store_t *s, sl_cache_fill_t *f)
{
    if (f->state == F_ACTIVE)
        pend_unlink(&f->pend);
    sl_cache_waiter_t *list = f->waiters;
    for (sl_cache_waiter_t *w = list; w; w = w->next)
        w->state = W_NOTIFIED;
    CNT_SUB(s, waiters, f->nwaiters);
    CNT_SUB(s, fills, 1);
    f->waiters = NULL;
    f->nwaiters = 0;
    f->state = F_IDLE;
    return list;
}

/* Run the callbacks of a finished fill's waiters; no lock held. Each waiter's fields are read
 * before its callback, which may free it. */
static void notify(sl_cache_waiter_t *w, int outcome, sl_cache_obj_t *obj)
{
    while (w) {
        sl_cache_waiter_t *next = w->next;
        sl_cache_wait_fn cb = w->cb;
        void *arg = w->arg;
        cb(arg, outcome, obj);
        w = next;
    }
}

static int publish(sl_cache_store_t *s, sl_cache_builder_t *b, sl_cache_fill_t *fill,
                   uint64_t now_ms, sl_cache_obj_t **out, int store)
{
    struct obj *o = b->obj;
    if (out)
        *out = NULL;
    if (!o || o->error || (fill && fill_state(fill) == F_IDLE) ||
        (fill && !slice_eq(fill->pend.key, o->pub.key)))
        return SL_EINVAL;

    /* Shrink to fit, before the lock (realloc may move it; nobody else knows it yet). */
    if (o->body_cap > o->pub.body.len) {
        size_t charge = charge_of(o->fixed + o->pub.body.len);
        struct obj *m = realloc(o, o->fixed + o->pub.body.len);
        if (m) {
            o = m;
            o->body_cap = o->pub.body.len;
            unreserve(s, o->pub.charge - charge);
            o->pub.charge = charge;
            relayout(o, s->meta_pad);
        }
    }
    b->obj = NULL;

    struct shard *sh = &s->shards[o->shard];
    struct obj *doomed = NULL;
    sl_cache_waiter_t *waiters = NULL;
    pthread_mutex_lock(&sh->lock);
    int stored = store && (!fill || fill->state == F_ACTIVE);
    if (stored) {
        uint32_t same = 0;
        struct obj *lru = NULL, *x, *xn;
        for (x = sh->buckets[o->hash & s->bucket_mask]; x; x = xn) {
            xn = x->next;
            if (x->hash != o->hash || !slice_eq(x->pub.key, o->pub.key))
                continue;
            if (!slice_eq(x->pub.vary, o->pub.vary) || slice_eq(x->pub.skey, o->pub.skey)) {
                obj_unlink(s, sh, x, &doomed);
                CNT_ADD(s, replaced, 1);
                continue;
            }
            same++;
            if (!lru || x->atime < lru->atime)
                lru = x;
        }
        if (lru && same >= s->max_variants) {
            obj_unlink(s, sh, lru, &doomed);
            CNT_ADD(s, evictions, 1);
        }
        obj_insert(s, sh, o, now_ms);
    }
    uint32_t k = (out ? 1 : 0) + (fill ? fill->nwaiters : 0);
    if (k) /* before the unlock: once visible, the store's reference may go at any time */
        __atomic_fetch_add(&o->refs, k, __ATOMIC_RELAXED);
    if (fill)
        waiters = fill_finish(s, fill);
    pthread_mutex_unlock(&sh->lock);

    release_list(doomed);
    if (!stored) /* the builder's reference, not handed to the table */
        sl_cache_obj_release(&o->pub);
    if (out)
        *out = &o->pub;
    notify(waiters, SL_CACHE_PUBLISHED, k ? &o->pub : NULL);
    return stored ? SL_OK : 1;
}

int sl_cache_publish(sl_cache_store_t *s, sl_cache_builder_t *b, sl_cache_fill_t *fill,
                     uint64_t now_ms, sl_cache_obj_t **out)
{
    return publish(s, b, fill, now_ms, out, 1);
}

int sl_cache_share(sl_cache_store_t *s, sl_cache_builder_t *b, sl_cache_fill_t *fill,
                   sl_cache_obj_t **out)
{
    if (!fill)
        return SL_EINVAL;
    int rc = publish(s, b, fill, 0, out, 0);
    return rc < 0 ? rc : 0;
}

void sl_cache_fill_abandon(sl_cache_store_t *s, sl_cache_fill_t *fill, int outcome, uint64_t now_ms,
                           uint64_t pass_ms)
{
    if (fill_state(fill) == F_IDLE)
        return;
    if (outcome != SL_CACHE_NOT_STORABLE)
        outcome = SL_CACHE_ABANDONED;
    struct mark *m = NULL, *dead = NULL;
    const struct sl_cache_pending *fp = &fill->pend;
    if (outcome == SL_CACHE_NOT_STORABLE && pass_ms > 0) {
        m = malloc(sizeof(*m) + fp->key.len + fp->vary.len + fp->skey.len);
        if (m) {
            char *p = m->bytes;
            memset(m, 0, sizeof(*m));
            m->pend.kind = P_PASS;
            m->pend.hash = fp->hash;
            m->pend.key = (sl_slice_t){p, fp->key.len};
            if (fp->key.len)
                memcpy(p, fp->key.p, fp->key.len);
            p += fp->key.len;
            m->pend.vary = (sl_slice_t){p, fp->vary.len};
            if (fp->vary.len)
                memcpy(p, fp->vary.p, fp->vary.len);
            p += fp->vary.len;
            m->pend.skey = (sl_slice_t){p, fp->skey.len};
            if (fp->skey.len)
                memcpy(p, fp->skey.p, fp->skey.len);
            m->expires_ms = now_ms + pass_ms < now_ms ? UINT64_MAX : now_ms + pass_ms;
        }
    }

    struct shard *sh = &s->shards[fill->shard];
    pthread_mutex_lock(&sh->lock);
    /* A purge detached the fill: its verdict predates the purge, leave no mark. */
    if (m && fill->state == F_ACTIVE) {
        struct sl_cache_pending *p = sh->pend[m->pend.hash & s->pend_mask], *pn;
        for (; p; p = pn) { /* one mark per (key, vary, skey): the new one replaces it */
            pn = p->next;
            if (p->kind == P_PASS && p->hash == m->pend.hash && slice_eq(p->key, m->pend.key) &&
                slice_eq(p->vary, m->pend.vary) && slice_eq(p->skey, m->pend.skey))
                mark_unlink(s, sh, (struct mark *)p, &dead);
        }
        while (sh->mark_old &&
               (sh->npass >= s->max_pass_shard || now_ms >= sh->mark_old->expires_ms))
            mark_unlink(s, sh, sh->mark_old, &dead);
        pend_insert(s, sh, &m->pend);
        m->older = sh->mark_new;
        m->newer = NULL;
        if (sh->mark_new)
            sh->mark_new->newer = m;
        else
            sh->mark_old = m;
        sh->mark_new = m;
        sh->npass++;
        CNT_ADD(s, pass_marks, 1);
        CNT_ADD(s, pass_set, 1);
        m = NULL;
    }
    sl_cache_waiter_t *waiters = fill_finish(s, fill);
    pthread_mutex_unlock(&sh->lock);
    free(m);
    free_marks(dead);
    notify(waiters, outcome, NULL);
}

/* ---- purge ------------------------------------------------------------------------------- */

enum { BY_KEY, BY_PREFIX, BY_TAG };

static int obj_matches(const struct obj *o, int how, sl_slice_t arg)
{
    switch (how) {
    case BY_KEY:
        return slice_eq(o->pub.key, arg);
    case BY_PREFIX:
        return o->pub.key.len >= arg.len && memcmp(o->pub.key.p, arg.p, arg.len) == 0;
    default:
        for (unsigned i = 0; i < o->pub.ntags; i++)
            if (slice_eq(o->pub.tags[i], arg))
                return 1;
        return 0;
    }
}

/* Fills and marks of pending chain slot b that a purge matches: fills detached, marks dropped
 * (key and prefix only). Under the shard lock. */
static void purge_pending(sl_cache_store_t *s, struct shard *sh, uint32_t b, int how,
                          sl_slice_t arg, struct mark **dead)
{
    struct sl_cache_pending *p = sh->pend[b], *pn;
    for (; p; p = pn) {
        pn = p->next;
        int match = how == BY_KEY ? slice_eq(p->key, arg)
                    : how == BY_PREFIX
                        ? p->key.len >= arg.len && memcmp(p->key.p, arg.p, arg.len) == 0
                        : p->kind == P_FILL;
        if (!match)
            continue;
        if (p->kind == P_FILL) {
            pend_unlink(p);
            /* atomic: the leader reads the state without the lock (fill_state) */
            __atomic_store_n(&((sl_cache_fill_t *)p)->state, F_DETACHED, __ATOMIC_RELAXED);
        } else {
            mark_unlink(s, sh, (struct mark *)p, dead);
        }
    }
}

/* Object chains [from, to) of one shard. Under the shard lock; returns how many went. */
static size_t purge_buckets(sl_cache_store_t *s, struct shard *sh, uint32_t from, uint32_t to,
                            int how, sl_slice_t arg, struct obj **doomed)
{
    size_t n = 0;
    for (uint32_t b = from; b < to; b++) {
        struct obj *o = sh->buckets[b], *on;
        for (; o; o = on) {
            on = o->next;
            if (obj_matches(o, how, arg)) {
                obj_unlink(s, sh, o, doomed);
                n++;
            }
        }
    }
    return n;
}

size_t sl_cache_purge_key(sl_cache_store_t *s, sl_slice_t key)
{
    uint64_t h = sl_hash_bytes(key.p, key.len);
    struct shard *sh = &s->shards[shard_index(s, h)];
    struct obj *doomed = NULL;
    struct mark *dead = NULL;
    pthread_mutex_lock(&sh->lock);
    uint32_t b = (uint32_t)(h & s->bucket_mask);
    size_t n = purge_buckets(s, sh, b, b + 1, BY_KEY, key, &doomed);
    purge_pending(s, sh, (uint32_t)(h & s->pend_mask), BY_KEY, key, &dead);
    pthread_mutex_unlock(&sh->lock);
    release_list(doomed);
    free_marks(dead);
    CNT_ADD(s, purged, n);
    return n;
}

static size_t purge_all(sl_cache_store_t *s, int how, sl_slice_t arg)
{
    size_t n = 0;
    for (uint32_t i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];
        struct mark *dead = NULL;
        pthread_mutex_lock(&sh->lock);
        for (uint32_t b = 0; b <= s->pend_mask; b++)
            purge_pending(s, sh, b, how, arg, &dead);
        pthread_mutex_unlock(&sh->lock);
        free_marks(dead);
        for (uint32_t b = 0; b <= s->bucket_mask; b += PURGE_BATCH) {
            uint32_t to =
                b + PURGE_BATCH <= s->bucket_mask + 1 ? b + PURGE_BATCH : s->bucket_mask + 1;
            struct obj *doomed = NULL;
            pthread_mutex_lock(&sh->lock);
            n += purge_buckets(s, sh, b, to, how, arg, &doomed);
            pthread_mutex_unlock(&sh->lock);
            release_list(doomed);
        }
    }
    CNT_ADD(s, purged, n);
    return n;
}

size_t sl_cache_purge_prefix(sl_cache_store_t *s, sl_slice_t prefix)
{
    return purge_all(s, BY_PREFIX, prefix);
}

size_t sl_cache_purge_tag(sl_cache_store_t *s, sl_slice_t tag)
{
    return purge_all(s, BY_TAG, tag);
}

/* ---- verify ------------------------------------------------------------------------------ */

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            r = -__LINE__;                                                                         \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static int verify_shard(sl_cache_store_t *s, uint32_t i, uint64_t *nobj, uint64_t *stored,
                        uint64_t *npass, uint64_t *nwait)
{
    struct shard *sh = &s->shards[i];
    int r = 0;
    pthread_mutex_lock(&sh->lock);
    uint64_t n = 0, bytes = 0;
    for (uint32_t b = 0; b <= s->bucket_mask; b++) {
        struct obj **pp = &sh->buckets[b];
        for (struct obj *o = *pp; o; pp = &o->next, o = o->next) {
            CHECK(o->pprev == pp);
            CHECK(o->in_table && o->shard == i && (o->hash & s->bucket_mask) == b);
            CHECK(shard_index(s, o->hash) == i && o->store == s);
            CHECK(__atomic_load_n(&o->refs, __ATOMIC_RELAXED) >= 1);
            CHECK(o->body_cap >= o->pub.body.len && o->pub.body.len <= s->max_object);
            CHECK(o->pub.charge == charge_of(o->fixed + o->body_cap));
            n++;
            bytes += o->pub.charge;
        }
    }
    CHECK(n == sh->nobj);
    uint64_t m = 0;
    struct obj *prev = NULL;
    for (struct obj *o = sh->lru_new; o; prev = o, o = o->older) {
        CHECK(o->newer == prev && o->in_table);
        CHECK(++m <= n);
    }
    CHECK(m == n && sh->lru_old == prev);
    CHECK(__atomic_load_n(&sh->oldest, __ATOMIC_RELAXED) == (prev ? prev->atime : UINT64_MAX));
    uint64_t marks = 0, waiting = 0;
    for (uint32_t b = 0; b <= s->pend_mask; b++) {
        struct sl_cache_pending **pp = &sh->pend[b];
        for (struct sl_cache_pending *p = *pp; p; pp = &p->next, p = p->next) {
            CHECK(p->pprev == pp && (p->hash & s->pend_mask) == b);
            CHECK(shard_index(s, p->hash) == i);
            if (p->kind == P_PASS) {
                marks++;
            } else {
                sl_cache_fill_t *f = (sl_cache_fill_t *)p;
                CHECK(p->kind == P_FILL && f->state == F_ACTIVE && f->shard == i);
                uint32_t c = 0;
                for (sl_cache_waiter_t *w = f->waiters; w; w = w->next) {
                    CHECK(w->state == W_WAITING && w->fill == f && w->shard == i);
                    CHECK(++c <= f->nwaiters);
                }
                CHECK(c == f->nwaiters);
                waiting += c;
            }
        }
    }
    CHECK(marks == sh->npass);
    uint64_t fifo = 0;
    struct mark *mprev = NULL;
    for (struct mark *k = sh->mark_new; k; mprev = k, k = k->older) {
        CHECK(k->newer == mprev && ++fifo <= marks);
    }
    CHECK(fifo == marks && sh->mark_old == mprev && marks <= s->max_pass_shard);
    *nobj += n;
    *stored += bytes;
    *npass += marks;
    *nwait += waiting;
out:
    pthread_mutex_unlock(&sh->lock);
    return r;
}

int sl_cache_store_verify(sl_cache_store_t *s)
{
    uint64_t nobj = 0, stored = 0, npass = 0, nwait = 0;
    for (uint32_t i = 0; i < s->nshards; i++) {
        int r = verify_shard(s, i, &nobj, &stored, &npass, &nwait);
        if (r)
            return r;
    }
    /* Whole-store sums: exact when nothing runs concurrently (waiters of detached fills are not
     * in any chain, so they only bound from below). */
    sl_cache_stats_t st;
    sl_cache_store_stats(s, &st);
    int r = 0;
    CHECK(st.objects == nobj && st.stored == stored && st.pass_marks == npass);
    CHECK(st.waiters >= nwait);
    CHECK(st.bytes <= st.budget && st.bytes >= st.stored);
out:
    return r;
}
