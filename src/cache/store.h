/* store.h - the in-memory (L1) object store of the shared response cache: immutable,
 * reference-counted response objects in sharded tables under one byte budget (LRU eviction),
 * their Vary variants, the coalescing registry of fills in progress (one upstream request per
 * key, the other requests wait for its answer) with hit-for-pass marks, and purges.
 * Owns storage and concurrency only: keys, Vary values and freshness come from the caller
 * (cachecontrol). Shared by every worker and the control thread; never blocks on I/O, never
 * holds two locks, never runs caller code that may block, and a hit is served without a lock
 * or a copy. See store.c for the design: locking, eviction, accounting, the contracts. */
#ifndef SL_CACHE_STORE_H
#define SL_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

#define SL_CACHE_MAX_TAGS 16   /* purge tags per object */
#define SL_CACHE_MAX_META 1024 /* bytes of caller metadata per object, at most */
#define SL_CACHE_MAX_SHARDS 256

typedef struct sl_cache_store sl_cache_store_t;

/* ---- Objects ---------------------------------------------------------------------------- */

/* A stored response. Every field is read-only and never changes once the object is published,
 * so any thread holding a reference reads it without a lock. All bytes live in the object's
 * one allocation; nothing is NUL-terminated. */
typedef struct sl_cache_obj {
    sl_slice_t key;         /* primary key, as the caller built it (host + path + query) */
    sl_slice_t vary;        /* the Vary field names the caller stored ("" without Vary) */
    sl_slice_t skey;        /* secondary key: the request's values of those fields ("" none) */
    sl_slice_t head;        /* the stored response head */
    sl_slice_t body;        /* the body */
    const sl_slice_t *tags; /* ntags purge tags */
    unsigned ntags;
    void *meta;    /* meta_size bytes for the caller (freshness...), 16-byte aligned */
    size_t charge; /* bytes this object counts against the budget */
} sl_cache_obj_t;

/* Take one more reference (the caller already holds one). Any thread. */
void sl_cache_obj_ref(sl_cache_obj_t *obj);

/* Drop a reference; the last one frees the object and returns its charge to the budget.
 * Any thread, no lock; NULL is ignored. The store must still exist. */
void sl_cache_obj_release(sl_cache_obj_t *obj);

/* The reference count right now (racy; tests and debugging). */
uint32_t sl_cache_obj_refs(const sl_cache_obj_t *obj);

/* ---- The store ---------------------------------------------------------------------------- */

typedef struct sl_cache_store_config {
    size_t memory;         /* the budget in bytes (cache.memory); > 0 */
    size_t max_object;     /* body bytes beyond which a response is not stored (cache.max_object);
                            * 0 or more than memory / 4: memory / 4 */
    size_t meta_size;      /* caller metadata bytes in every object, <= SL_CACHE_MAX_META */
    unsigned shards;       /* a power of two <= SL_CACHE_MAX_SHARDS; 0: 64 */
    unsigned max_waiters;  /* waiters per fill; 0: 10000 */
    unsigned max_variants; /* objects per primary key (Vary variants); 0: 32 */
    unsigned max_pass;     /* hit-for-pass marks kept in all; 0: 65536 */
    size_t avg_object;     /* sizes the hash tables (memory / avg_object chains); 0: 4096 */
} sl_cache_store_config_t;

/* A store for cfg. 0 and *out set; SL_EINVAL (memory 0, shards not a power of two, meta_size too
 * large); SL_ENOMEM. All memory but the objects and hit-for-pass marks is allocated here. */
int sl_cache_store_new(const sl_cache_store_config_t *cfg, sl_cache_store_t **out);

/* Drops the store's references and frees the store. Every fill must be completed and every
 * object reference released first (objects point back to the store). NULL is ignored. */
void sl_cache_store_free(sl_cache_store_t *s);

/* ---- Building and publishing an object ---------------------------------------------------- */

/* What a new object holds besides its body. Everything is copied; nothing is kept. */
typedef struct sl_cache_obj_spec {
    sl_slice_t key;         /* primary key */
    sl_slice_t vary;        /* Vary field names, comma-separated as the caller normalizes them;
                             * a member "*" is refused (SL_EINVAL): such responses are not stored */
    sl_slice_t skey;        /* the secondary key of the request this response answers, i.e. what
                             * the request's vary callback gives for `vary` ("" when vary is "") */
    sl_slice_t head;        /* response head */
    const void *meta;       /* meta_size bytes copied in, or NULL for zeros */
    const sl_slice_t *tags; /* ntags <= SL_CACHE_MAX_TAGS purge tags */
    unsigned ntags;
    size_t body_hint; /* expected body length (Content-Length), 0 unknown: sizes the
                       * allocation once instead of growing it */
} sl_cache_obj_spec_t;

/* An object being filled. Owned by the caller (embedded in the leader's request); its field is
 * private (the object grows by realloc as the body streams in, so it moves). */
typedef struct sl_cache_builder {
    void *obj;
} sl_cache_builder_t;

/* Start an object in b. 0; SL_EINVAL (vary has a "*" member, a non-empty skey without vary, too
 * many tags); SL_ETOOBIG (body_hint past max_object: stream through uncached); SL_ENOMEM (no
 * memory, or no room in the budget even after evicting). From here on its bytes count against
 * the budget (the budget bounds objects being filled too). On failure b is empty (discarding it
 * is a no-op). Any thread; the builder is then used by one thread at a time. */
int sl_cache_builder_init(sl_cache_store_t *s, sl_cache_builder_t *b,
                          const sl_cache_obj_spec_t *spec);

/* Append body bytes as they stream in. 0; SL_ETOOBIG (the body would pass max_object); SL_ENOMEM
 * (as above). After an error the builder refuses everything: discard it, and end its fill with
 * sl_cache_fill_abandon (SL_CACHE_NOT_STORABLE for SL_ETOOBIG). */
int sl_cache_builder_append(sl_cache_builder_t *b, const void *p, size_t n);

/* The metadata block (meta_size bytes) to fill before publishing; read-only afterwards. */
void *sl_cache_builder_meta(sl_cache_builder_t *b);

/* Body bytes appended so far. */
size_t sl_cache_builder_body_len(const sl_cache_builder_t *b);

/* Throw a builder's object away (not published); b is empty afterwards. Empty: no-op. */
void sl_cache_builder_discard(sl_cache_builder_t *b);

/* ---- Lookups and coalescing --------------------------------------------------------------- */

/* The request's secondary key for a Vary names string: write the request's normalized values of
 * those fields at out (at most cap bytes) and return the length, or a negative number when they
 * do not fit (the request then matches no variant and cannot lead a fill). Called only for
 * non-empty names, at most once per distinct names string per call, UNDER A SHARD LOCK: it must
 * only read the request, never block, never call into the store. */
typedef int (*sl_cache_vary_fn)(void *arg, const char *names, size_t names_len, char *out,
                                size_t cap);

/* Whether a matching object may be served as a hit (reads obj->meta: expiry against the
 * caller's clock). Called under a shard lock, same rules as sl_cache_vary_fn. */
typedef int (*sl_cache_fresh_fn)(void *arg, const sl_cache_obj_t *obj);

enum {
    SL_CACHE_NO_LEAD = 1, /* never become a leader (PASS instead): a HEAD the caller won't turn
                           * into a GET upstream may use a hit or join a GET's fill, not lead one */
};

/* A request, as the store sees it. */
typedef struct sl_cache_req {
    sl_slice_t key;          /* primary key: host + path + query (HEAD uses the GET's key) */
    sl_cache_vary_fn vary;   /* NULL: the request matches only objects stored without Vary */
    sl_cache_fresh_fn fresh; /* NULL: every matching object is a hit */
    void *arg;               /* for vary and fresh */
    char *scratch;           /* the secondary key is computed here; a leader's fill also keeps
                              * its Vary names here: keep it, and key.p, valid and unchanged
                              * until the fill is published or abandoned */
    size_t scratch_cap;
    unsigned flags; /* SL_CACHE_NO_LEAD */
} sl_cache_req_t;

/* The object matching req: the variant whose secondary key equals the request's for the stored
 * Vary names. Returns it with a reference for the caller, or NULL. Marks it recently used at
 * now_ms (monotonic milliseconds; the caller's loop time). Does not look at freshness.
 * Any thread; one shard lock, briefly. */
sl_cache_obj_t *sl_cache_lookup(sl_cache_store_t *s, const sl_cache_req_t *req, uint64_t now_ms);

/* Whether obj is the variant req asks for (the request's values of obj->vary equal obj->skey).
 * A waiter checks the object it was handed: a fill started before the key's Vary was known
 * answers whoever asked, and a request wanting another variant must call sl_cache_begin again.
 * No lock; calls req->vary. */
int sl_cache_obj_matches(const sl_cache_obj_t *obj, const sl_cache_req_t *req);

/* Outcomes handed to a waiter. */
enum {
    SL_CACHE_PUBLISHED = 0,    /* obj: the fill's object, with a reference for the waiter (may
                                * be another variant: sl_cache_obj_matches) */
    SL_CACHE_NOT_STORABLE = 1, /* go upstream yourself and store nothing (hit-for-pass) */
    SL_CACHE_ABANDONED = 2,    /* the leader gave up (error, client gone): call sl_cache_begin
                                * again (one of the waiters becomes the next leader) */
};

/* A waiter's callback: runs exactly once per registration unless sl_cache_waiter_cancel
 * returned 1, on the thread that completes the fill (the leader's; another worker's loop, in
 * general), with no store lock held. It must be thread-safe and short: hand the outcome (and
 * the reference in obj, which the waiter must release) to the waiter's own loop, e.g. through
 * a uv_async_t. It is the store's last access to the waiter: it may free it. */
typedef void (*sl_cache_wait_fn)(void *arg, int outcome, sl_cache_obj_t *obj);

/* A request waiting for a fill. Owned by the caller (embedded in its request); the store
 * allocates nothing for it. Fields after `arg` are private. */
typedef struct sl_cache_waiter {
    sl_cache_wait_fn cb;
    void *arg;
    struct sl_cache_waiter *prev, *next;
    struct sl_cache_fill *fill;
    uint32_t shard;
    int state;
} sl_cache_waiter_t;

/* Private: a key's entry in the coalescing registry (a fill, or a hit-for-pass mark). */
struct sl_cache_pending {
    struct sl_cache_pending *next, **pprev;
    uint64_t hash;
    sl_slice_t key, vary, skey;
    int kind;
};

/* A fill in progress: the leader's upstream request for a key. Owned by the caller (embedded in
 * the leader's request); all fields are private. */
typedef struct sl_cache_fill {
    struct sl_cache_pending pend;
    sl_cache_waiter_t *waiters;
    uint32_t nwaiters;
    uint32_t shard;
    int state;
} sl_cache_fill_t;

/* Set up a waiter or a fill before its first use (and again to reuse it: a waiter after its
 * callback ran or its cancel returned 1, a fill after it was published or abandoned). */
void sl_cache_waiter_init(sl_cache_waiter_t *w, sl_cache_wait_fn cb, void *arg);
void sl_cache_fill_init(sl_cache_fill_t *f);

/* sl_cache_begin results. */
enum {
    SL_CACHE_HIT = 0,    /* *obj is a fresh matching object */
    SL_CACHE_LEADER = 1, /* fill registered: go upstream, then sl_cache_publish(.., fill, ..) or
                          * sl_cache_fill_abandon; the store's request waits on you */
    SL_CACHE_WAITER = 2, /* w registered with the fill for this key: its callback will run once,
                          * unless cancelled; the caller's timeout must call the cancel */
    SL_CACHE_PASS = 3,   /* go upstream yourself and don't store: the key is hit-for-pass, or
                          * NO_LEAD, or the request's secondary key does not fit scratch */
    SL_CACHE_BUSY = 4,   /* go upstream yourself: the fill already has max_waiters waiters */
};

/* Look up req and, on a miss, join or lead the fill for its key, atomically: of any number of
 * concurrent calls for one key (primary + the request's secondary key under the Vary names the
 * store knows for it; all requests when it knows none) exactly one is LEADER until its fill
 * completes, the rest are WAITERs (or BUSY past max_waiters); a call after a publish is a HIT.
 * In order: a fresh matching object -> HIT; an unexpired hit-for-pass mark -> PASS; a fill ->
 * WAITER; NO_LEAD -> PASS; else LEADER.
 * *obj: NULL, or a matching object with a reference for the caller: the fresh hit, or, with any
 * other result, a stale one (req->fresh said no) to serve while revalidating or on error.
 * fill (IDLE) is used on LEADER, w (initialized, not waiting) on WAITER; either may be NULL when
 * the caller cannot take that role (then that result becomes PASS). now_ms: monotonic ms.
 * Any thread; one shard lock, briefly; allocates nothing. */
int sl_cache_begin(sl_cache_store_t *s, const sl_cache_req_t *req, uint64_t now_ms,
                   sl_cache_fill_t *fill, sl_cache_waiter_t *w, sl_cache_obj_t **obj);

/* Cancel a waiter (timeout, client gone). Returns 1: its callback will never run for this
 * registration, and the store will not touch w again (also when w was not waiting at all).
 * Returns 0: the fill completed first; the callback has run or is about to run on the
 * completing thread, exactly once: keep w valid until it has run, and release the object it
 * hands over. Any thread. */
int sl_cache_waiter_cancel(sl_cache_store_t *s, sl_cache_waiter_t *w);

/* Publish a built object: it replaces the variant with the same key, Vary names and secondary
 * key (variants stored under other Vary names for the key are dropped: the origin changed its
 * Vary), and LRU-evicts the key's least recently used variant past max_variants. With a fill
 * (the LEADER's, possibly NULL for a plain insert), the fill completes: every waiter's callback
 * runs here, on this thread, after the store's locks are released, with the object and a
 * reference each. If a purge matched the fill while it was in progress, the object is handed
 * to the fill's waiters and *out but not stored (a purge is never undone by a fill that began
 * before it). *out (may be NULL): the object with a reference for the caller.
 * Returns 0 (stored), 1 (not stored: purged meanwhile), SL_EINVAL (b empty or failed, fill not
 * leading, or the fill's key differs: nothing consumed). Otherwise b is empty afterwards and the
 * fill IDLE again. Any thread. */
int sl_cache_publish(sl_cache_store_t *s, sl_cache_builder_t *b, sl_cache_fill_t *fill,
                     uint64_t now_ms, sl_cache_obj_t **out);

/* Complete a fill by handing the built object to its waiters (and *out) WITHOUT storing it:
 * request deduplication of answers that may not be cached. Waiters get SL_CACHE_PUBLISHED
 * with the object, exactly as from sl_cache_publish; nothing stays in the table, and the
 * object's charge returns to the budget when the last reference goes. 0, or SL_EINVAL
 * (as sl_cache_publish; fill NULL). Any thread. */
int sl_cache_share(sl_cache_store_t *s, sl_cache_builder_t *b, sl_cache_fill_t *fill,
                   sl_cache_obj_t **out);

/* End a fill without an object. outcome SL_CACHE_NOT_STORABLE: waiters are told to go upstream
 * themselves and, when pass_ms > 0, the key (with the fill's secondary key) is hit-for-pass
 * until now_ms + pass_ms: sl_cache_begin answers PASS, no coalescing. SL_CACHE_ABANDONED: the
 * waiters call sl_cache_begin again. Callbacks run here, after the locks are released. The fill
 * is IDLE again. Any thread. */
void sl_cache_fill_abandon(sl_cache_store_t *s, sl_cache_fill_t *fill, int outcome, uint64_t now_ms,
                           uint64_t pass_ms);

/* ---- Purge ------------------------------------------------------------------------------- */

/* Remove every object (all variants) whose primary key is exactly key / starts with prefix /
 * carries tag; returns how many. Fills in progress that match (key, prefix: by primary key; tag:
 * every fill in progress, since a fill's tags are unknown until it publishes) are detached: new
 * requests start a new fill, and the detached fill's publish is not stored. Key and prefix
 * purges also clear matching hit-for-pass marks. Objects already handed out stay readable until
 * released. Any thread (the control thread); key lookups take one shard lock, prefix and tag
 * purges walk every shard in short lock holds. */
size_t sl_cache_purge_key(sl_cache_store_t *s, sl_slice_t key);
size_t sl_cache_purge_prefix(sl_cache_store_t *s, sl_slice_t prefix);
size_t sl_cache_purge_tag(sl_cache_store_t *s, sl_slice_t tag);

/* ---- Stats ------------------------------------------------------------------------------- */

typedef struct sl_cache_stats {
    uint64_t objects;    /* objects in the store */
    uint64_t bytes;      /* bytes charged: stored objects, evicted or replaced ones still
                          * referenced, and builders; never above the budget */
    uint64_t stored;     /* of which stored objects */
    uint64_t budget;     /* cfg.memory */
    uint64_t evictions;  /* objects evicted for room (LRU), and variants past max_variants */
    uint64_t replaced;   /* objects replaced by a newer one for the same variant */
    uint64_t purged;     /* objects removed by purges */
    uint64_t nomem;      /* builders refused for lack of room or memory */
    uint64_t pass_marks; /* hit-for-pass marks now */
    uint64_t pass_set;   /* hit-for-pass marks set, in all */
    uint64_t fills;      /* fills in progress */
    uint64_t waiters;    /* waiters now */
    uint64_t busy;       /* BUSY answers (waiter bound) */
} sl_cache_stats_t;

/* A snapshot of the counters (each read atomically, not all at one instant). Any thread. */
void sl_cache_store_stats(const sl_cache_store_t *s, sl_cache_stats_t *st);

/* Walk every shard (each under its lock) and check the store's invariants: chains, LRU lists
 * and counters agree, charged bytes <= budget. 0, or a negative line-tagged code naming the
 * broken one. For tests and debugging; O(objects). */
int sl_cache_store_verify(sl_cache_store_t *s);

#endif
