/* http_cache.c - the response cache in the request path; see http_cache.h.
 *
 * A GET or HEAD on a caching route asks the store (sl_cache_begin) once:
 *   HIT     a fresh object: written from the object itself - its stored head (without the
 *           final CRLF), a small tail (Age, X-Cache, Content-Length, connection fields),
 *           its body - and the object's reference is dropped when the write completes.
 *   LEADER  nobody fetches this key: go upstream with a proxy tap that decides at the
 *           response head whether the answer is storable, builds the object while the
 *           answer streams to the client, and publishes it at the end, which hands it to
 *           every waiter. With a stale object in hand the request is conditional
 *           (If-None-Match / If-Modified-Since from it): a 304 is merged into a new object
 *           and served (REVALIDATED); within stale-while-revalidate the stale object is
 *           served first and the refresh rides on the same exchange afterwards.
 *   WAITER  another request is fetching: wait (bounded by lock_timeout) for its object.
 *           The fill completes on the leader's thread; the waiter's callback only queues
 *           the outcome for the waiter's own loop (a uv_async per worker).
 *   PASS    go upstream and store nothing (hit-for-pass, coalescing off, HEAD misses).
 * A stale object held by any of these may stand in for a failed origin (stale-if-error).
 * Unsafe methods purge their URL (and Location / Content-Location) when they succeed. */
#include "http_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/log.h"
#include "../core/out.h"
#include "proxy.h"
#include "../cache/cache_redis.h"
#include "../cache/cachecontrol.h"
#include "../cache/objcodec.h"
#include "../cache/store.h"

#define KEY_MAX 2048     /* longer keys are not cached */
#define SCRATCH_MAX 1024 /* the request's secondary key (Vary values) */
#define COND_MAX 600     /* conditional header lines of a revalidation */
#define MAX_WORKERS 1024

typedef struct hc_meta {
    sl_cc_entry_t e;
    uint16_t status;
} hc_meta_t;

typedef struct hc_wait hc_wait_t;

/* A worker's queue of fill outcomes for its waiters. */
typedef struct hc_wq {
    pthread_mutex_t mu;
    uv_async_t async;
    int open;
    hc_wait_t *head, **tail;
    sl_hcache_t *hc;
    hc_wait_t *spare; /* one node kept for the next lookup (loop thread only) */
} hc_wq_t;

/* A waiting request. Allocated (not in the exchange) because the store may still hand it
 * an outcome after the exchange is gone: cancelled too late, the node is orphaned and the
 * queue frees it. */
struct hc_wait {
    sl_cache_waiter_t w;
    sl_timed_t timed; /* lock_timeout */
    sl_exchange_t *x; /* NULL: orphaned */
    hc_wq_t *q;
    int outcome;
    sl_cache_obj_t *obj;
    hc_wait_t *next;
};

struct sl_hcache {
    sl_cache_store_t *store;
    sl_cache_conf_t conf;
    int nthreads;
    hc_wq_t *wq; /* by thread index */
    sl_counter_t *m_results;  /* cache_requests_total{result} */
    sl_counter_t *m_purges;   /* cache_purges_total{kind} */
    sl_counter_t *m_invalid;  /* cache_invalidations_total */
    sl_counter_t *m_timeouts; /* cache_lock_timeouts_total */
    sl_counter_t *m_refused;  /* cache_store_refused_total{reason} */
    /* The L2 tier (cache.redis): one connection per thread slot, the control thread's
     * (index 0) for purges and the purge subscription. */
    int l2;
    sl_addr_t l2_addr;
    uint64_t l2_timeout_ms;
    char l2_prefix[128];
    sl_l2_t **l2s;
    sl_counter_t *m_l2;        /* cache_l2_requests_total{result} */
    sl_counter_t *m_l2_stores; /* cache_l2_stores_total{result} */
    sl_counter_t *m_refresh;   /* cache_background_refreshes_total{result} */
    sl_conn_cfg_t bg_cfg;      /* detached refresh exchanges' (on_done: bg_done) */
    int bg_cfg_set;
};

enum { L2_HIT = 0, L2_MISS, L2_ERROR, L2_STALE, L2_VARIANT };

/* What a tap does with the answer (hc_x_t.mode). */
enum { MODE_PASS = 1, MODE_FILL, MODE_INVALIDATE };
/* What the tap will answer with at the end (hc_x_t.then). */
enum { THEN_STREAMED = 0, THEN_SERVE_NEW, THEN_SERVE_STALE, THEN_END };

typedef struct hc_x {
    uint8_t active;  /* sl_hcache_handle took x: done must clean up */
    uint8_t result;  /* enum sl_hc_result */
    uint8_t mode;
    uint8_t then;
    uint8_t leading;    /* s->fill is registered */
    uint8_t building;   /* s->b holds an object */
    uint8_t background; /* the client was answered (stale); the refresh goes on */
    uint8_t held;       /* we paused the exchange's body while it waited */
    uint8_t dedupe;     /* share one answer among identical requests; store nothing */
    uint8_t l2_pending; /* a Redis lookup is out (l2_handle) */
    uint8_t bg;         /* a detached refresh (no client): fetch, store, end */
    uint8_t stored;     /* this exchange's fill was published */
    const sl_route_cache_conf_t *rc;
    void *l2_handle;
    int served_status;
    sl_hcache_t *hc;
    sl_service_t *svc;
    sl_cc_route_t ccr;
    sl_cc_t reqcc;
    sl_cache_obj_t *stale; /* a stale matching object held (revalidation, stale-if-error) */
    sl_cache_obj_t *fresh; /* the object published by this exchange's fill, to serve */
    hc_wait_t *wait;
    int64_t now_ms;    /* wall clock of the lookup (the fresh callback reads it) */
    int64_t req_ms;    /* when the upstream request went out */
    sl_cache_fill_t fill;
    sl_cache_builder_t b;
    sl_cache_req_t creq;
    size_t cond_len;
    char cond[COND_MAX];
    char key[KEY_MAX];
    char scratch[SCRATCH_MAX];
} hc_x_t;

static size_t hc_offset;

void sl_hcache_set_offset(size_t off)
{
    hc_offset = off;
}

size_t sl_hcache_state_size(void)
{
    return (sizeof(hc_x_t) + 15) & ~(size_t)15;
}

static inline hc_x_t *HC(sl_exchange_t *x)
{
    return (hc_x_t *)(x->hdata + hc_offset);
}

void sl_hcache_reset(sl_exchange_t *x)
{
    hc_x_t *s = HC(x);
    s->active = 0;
    s->result = SL_HC_NONE;
}

int sl_hcache_result(const sl_exchange_t *x)
{
    return ((const hc_x_t *)(x->hdata + hc_offset))->result;
}

static const char *result_names[SL_HC__COUNT] = {"",      "hit",         "miss", "stale",
                                                 "coalesced", "revalidated", "pass"};
static const char *xcache_lines[SL_HC__COUNT] = {
    "", "X-Cache: HIT\r\n", "X-Cache: MISS\r\n", "X-Cache: STALE\r\n", "X-Cache: COALESCED\r\n",
    "X-Cache: REVALIDATED\r\n", "X-Cache: PASS\r\n"};

const char *sl_hcache_result_name(int r)
{
    return r >= 0 && r < SL_HC__COUNT ? result_names[r] : "";
}

/* ---- metrics ---- */

static size_t result_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    int n = snprintf(out, cap, "result=\"%s\"", key < SL_HC__COUNT ? result_names[key] : "other");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t purge_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    static const char *k[] = {"url", "prefix", "tag"};
    int n = snprintf(out, cap, "kind=\"%s\"", key < 3 ? k[key] : "other");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static const char *refused_names[] = {"too_big", "no_memory", "head_too_large"};

static size_t refresh_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    static const char *k[] = {"stored", "not_stored", "not_needed", "failed"};
    int n = snprintf(out, cap, "result=\"%s\"", key < 4 ? k[key] : "other");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

enum { RF_STORED = 0, RF_NOT_STORED, RF_NOT_NEEDED, RF_FAILED };

static size_t l2_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    static const char *k[] = {"hit", "miss", "error", "stale", "variant"};
    int n = snprintf(out, cap, "result=\"%s\"", key < 5 ? k[key] : "other");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t l2_store_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    int n = snprintf(out, cap, "result=\"%s\"", key == 0 ? "sent" : "dropped");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t refused_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    int n = snprintf(out, cap, "reason=\"%s\"", key < 3 ? refused_names[key] : "other");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

struct counts {
    uint64_t v[SL_HC__COUNT];
};

static void add_count(uint64_t key, uint64_t val, void *arg)
{
    struct counts *c = arg;
    if (key < SL_HC__COUNT)
        c->v[key] += val;
}

void sl_hcache_counts(const sl_hcache_t *hc, uint64_t *hits, uint64_t *lookups)
{
    struct counts c = {{0}};
    if (hc)
        sl_counter_foreach(hc->m_results, add_count, &c);
    uint64_t t = 0;
    for (int i = 1; i < SL_HC__COUNT; i++)
        t += c.v[i];
    *hits = c.v[SL_HC_HIT];
    *lookups = t;
}

static void collect(sl_textbuf_t *t, void *arg)
{
    const sl_hcache_t *hc = arg;
    sl_cache_stats_t st;
    sl_cache_store_stats(hc->store, &st);
    uint64_t hits, lookups;
    sl_hcache_counts(hc, &hits, &lookups);
    sl_text_printf(
        t,
        "# HELP cache_hits_total Cache lookups answered fresh from the store.\n"
        "# TYPE cache_hits_total counter\ncache_hits_total %llu\n"
        "# HELP cache_misses_total Cache lookups that were not hits (miss, stale, coalesced, "
        "revalidated, pass).\n"
        "# TYPE cache_misses_total counter\ncache_misses_total %llu\n"
        "# HELP cache_hit_ratio Hits over lookups since start (use rate() of "
        "cache_requests_total for a window).\n"
        "# TYPE cache_hit_ratio gauge\ncache_hit_ratio %.6f\n"
        "# HELP cache_objects Objects in the L1 store.\n"
        "# TYPE cache_objects gauge\ncache_objects %llu\n"
        "# HELP cache_bytes Bytes charged to the L1 budget (stored objects, objects still being "
        "sent after eviction, fills in progress).\n"
        "# TYPE cache_bytes gauge\ncache_bytes %llu\n"
        "# HELP cache_budget_bytes The L1 budget (cache.memory).\n"
        "# TYPE cache_budget_bytes gauge\ncache_budget_bytes %llu\n"
        "# HELP cache_evictions_total Objects evicted for room (LRU) or past the variant bound.\n"
        "# TYPE cache_evictions_total counter\ncache_evictions_total %llu\n"
        "# HELP cache_replaced_total Objects replaced by a newer answer for the same variant.\n"
        "# TYPE cache_replaced_total counter\ncache_replaced_total %llu\n"
        "# HELP cache_purged_objects_total Objects removed by purges and invalidations.\n"
        "# TYPE cache_purged_objects_total counter\ncache_purged_objects_total %llu\n"
        "# HELP cache_fills_in_progress Upstream fills under way.\n"
        "# TYPE cache_fills_in_progress gauge\ncache_fills_in_progress %llu\n"
        "# HELP cache_waiters Requests waiting for a fill.\n"
        "# TYPE cache_waiters gauge\ncache_waiters %llu\n"
        "# HELP cache_waiters_refused_total Requests sent upstream because a fill had "
        "max_waiters waiters.\n"
        "# TYPE cache_waiters_refused_total counter\ncache_waiters_refused_total %llu\n"
        "# HELP cache_hit_for_pass_keys Keys marked hit-for-pass now.\n"
        "# TYPE cache_hit_for_pass_keys gauge\ncache_hit_for_pass_keys %llu\n",
        (unsigned long long)hits, (unsigned long long)(lookups - hits),
        lookups ? (double)hits / (double)lookups : 0.0, (unsigned long long)st.objects,
        (unsigned long long)st.bytes, (unsigned long long)st.budget,
        (unsigned long long)st.evictions, (unsigned long long)st.replaced,
        (unsigned long long)st.purged, (unsigned long long)st.fills,
        (unsigned long long)st.waiters, (unsigned long long)st.busy,
        (unsigned long long)st.pass_marks);
    const sl_l2_t *ctl = hc->l2s ? hc->l2s[0] : NULL; /* this (the control) thread's */
    if (ctl) {
        const sl_l2_stats_t *ls = sl_l2_stats(ctl);
        sl_text_printf(t,
                       "# HELP cache_l2_connected 1 when the control thread's Redis connection "
                       "(purges and their broadcast) is up.\n"
                       "# TYPE cache_l2_connected gauge\ncache_l2_connected %d\n"
                       "# HELP cache_l2_purge_messages_total Purges received from other "
                       "instances.\n"
                       "# TYPE cache_l2_purge_messages_total counter\n"
                       "cache_l2_purge_messages_total %llu\n",
                       ls->connected ? 1 : 0, (unsigned long long)ls->purge_messages);
    }
}

/* ---- set-up ---- */

int sl_hcache_wanted(const sl_config_t *cfg)
{
    int any = 0;
    for (uint32_t i = 0; i < cfg->nroutes; i++)
        any |= cfg->routes[i].cache.enabled | cfg->routes[i].dedupe;
    return any;
}

void sl_hcache_unpublish(sl_hcache_t *hc)
{
    sl_metrics_collector_remove(collect, hc);
}

int sl_hcache_new(const sl_config_t *cfg, int nthreads, sl_hcache_t **out)
{
    *out = NULL;
    if (!sl_hcache_wanted(cfg))
        return 0;
    if (nthreads <= 0 || nthreads > MAX_WORKERS)
        return SL_EINVAL;
    sl_hcache_t *hc = calloc(1, sizeof(*hc));
    if (!hc)
        return SL_ENOMEM;
    hc->conf = cfg->cache;
    hc->nthreads = nthreads;
    sl_cache_store_config_t sc = {.memory = cfg->cache.memory,
                                  .max_object = cfg->cache.max_object,
                                  .meta_size = sizeof(hc_meta_t),
                                  .max_waiters = cfg->cache.max_waiters};
    int rc = sl_cache_store_new(&sc, &hc->store);
    hc->wq = calloc((size_t)nthreads, sizeof(hc_wq_t));
    if (rc || !hc->wq) {
        sl_hcache_free(hc);
        return rc ? rc : SL_ENOMEM;
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_mutex_init(&hc->wq[i].mu, NULL);
        hc->wq[i].tail = &hc->wq[i].head;
        hc->wq[i].hc = hc;
    }
    hc->m_results = sl_metrics_counter("cache_requests_total",
                                       "Requests on caching routes, by how the cache answered: "
                                       "hit, miss, stale, coalesced, revalidated, pass.",
                                       result_labels, NULL);
    hc->m_purges = sl_metrics_counter("cache_purges_total", "Purge requests, by kind.",
                                      purge_labels, NULL);
    hc->m_invalid = sl_metrics_counter("cache_invalidations_total",
                                       "Objects removed because an unsafe method (POST, PUT, "
                                       "DELETE, PATCH...) succeeded on their URL.",
                                       NULL, NULL);
    hc->m_timeouts = sl_metrics_counter("cache_lock_timeouts_total",
                                        "Waiters that gave up on a fill after "
                                        "cache.lock_timeout and went upstream themselves.",
                                        NULL, NULL);
    hc->m_refresh = sl_metrics_counter("cache_background_refreshes_total",
                                       "Stale-while-revalidate refreshes run in the "
                                       "background, by result: stored, not_stored, "
                                       "not_needed (another request refreshed first), failed "
                                       "(no memory).",
                                       refresh_labels, NULL);
    hc->m_refused = sl_metrics_counter("cache_store_refused_total",
                                       "Storable answers not stored, by reason: too_big "
                                       "(cache.max_object), no_memory (budget full of objects "
                                       "in use), head_too_large.",
                                       refused_labels, NULL);
    if (cfg->cache.redis && cfg->redis.enabled) {
        hc->l2 = 1;
        hc->l2_addr = cfg->redis.addr;
        hc->l2_timeout_ms = cfg->redis.timeout_ms;
        snprintf(hc->l2_prefix, sizeof(hc->l2_prefix), "%s",
                 cfg->redis.key_prefix ? cfg->redis.key_prefix : "sluice:");
        hc->l2s = calloc((size_t)nthreads, sizeof(*hc->l2s));
        hc->m_l2 = sl_metrics_counter("cache_l2_requests_total",
                                      "L1 misses looked up in Redis, by result: hit, miss, "
                                      "stale (found but not fresh), variant (another Vary "
                                      "variant), error (down, slow or bad).",
                                      l2_labels, NULL);
        hc->m_l2_stores = sl_metrics_counter("cache_l2_stores_total",
                                             "Objects written to Redis, by result: sent, "
                                             "dropped (not connected).",
                                             l2_store_labels, NULL);
        if (!hc->l2s || !hc->m_l2 || !hc->m_l2_stores) {
            sl_hcache_free(hc);
            return SL_ENOMEM;
        }
    }
    sl_metrics_collector(collect, hc);
    if (!hc->m_results || !hc->m_purges || !hc->m_invalid || !hc->m_timeouts || !hc->m_refused ||
        !hc->m_refresh) {
        sl_hcache_free(hc);
        return SL_ENOMEM;
    }
    *out = hc;
    return 0;
}

void sl_hcache_free(sl_hcache_t *hc)
{
    if (!hc)
        return;
    sl_metrics_collector_remove(collect, hc);
    for (int i = 0; hc->wq && i < hc->nthreads; i++) {
        hc_wq_t *q = &hc->wq[i];
        for (hc_wait_t *n = q->head, *next; n; n = next) {
            next = n->next;
            sl_cache_obj_release(n->obj);
            free(n);
        }
        free(q->spare);
        pthread_mutex_destroy(&q->mu);
    }
    free(hc->wq);
    free(hc->l2s); /* each closed by its loop's sl_hcache_worker_close */
    sl_cache_store_free(hc->store);
    free(hc);
}

static void wake_cb(uv_async_t *a);
static void purge_message(void *arg, int kind, const char *s, size_t n);

int sl_hcache_worker_init(sl_hcache_t *hc, sl_worker_t *w)
{
    if (!hc)
        return 0;
    if (w->index < 0 || w->index >= hc->nthreads)
        return SL_EINVAL;
    hc_wq_t *q = &hc->wq[w->index];
    int rc = uv_async_init(&w->loop, &q->async, wake_cb);
    if (rc)
        return rc;
    q->async.data = q;
    q->open = 1;
    if (hc->l2) {
        sl_l2_t *l2 = sl_l2_new(&w->loop, &hc->l2_addr, hc->l2_timeout_ms, hc->l2_prefix);
        if (!l2)
            return SL_ENOMEM;
        hc->l2s[w->index] = l2;
        if (w->index == 0 && sl_l2_subscribe(l2, purge_message, hc) != 0)
            return SL_ENOMEM;
    }
    return 0;
}

void sl_hcache_worker_close(sl_hcache_t *hc, sl_worker_t *w)
{
    if (!hc || w->index < 0 || w->index >= hc->nthreads)
        return;
    hc_wq_t *q = &hc->wq[w->index];
    pthread_mutex_lock(&q->mu);
    int was_open = q->open;
    q->open = 0;
    pthread_mutex_unlock(&q->mu);
    if (was_open)
        uv_close((uv_handle_t *)&q->async, NULL);
    if (hc->l2s && hc->l2s[w->index]) {
        sl_l2_close(hc->l2s[w->index]);
        hc->l2s[w->index] = NULL;
    }
}

/* ---- keys ---- */

/* The primary key: path [?query], a space, the host lower-cased (spaces occur in neither,
 * so a URL purge without a host is the prefix "path?query "). Returns its length, or 0
 * when it does not fit (the request is not cached). */
static size_t build_key(const sl_http_request_t *r, char *out, size_t cap)
{
    size_t need = r->path.len + (r->query.p ? 1 + r->query.len : 0) + 1 + r->host.len;
    if (!r->path.len || need > cap)
        return 0;
    size_t o = 0;
    memcpy(out, r->path.p, r->path.len);
    o += r->path.len;
    if (r->query.p) {
        out[o++] = '?';
        memcpy(out + o, r->query.p, r->query.len);
        o += r->query.len;
    }
    out[o++] = ' ';
    for (size_t i = 0; i < r->host.len; i++) {
        char c = r->host.p[i];
        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    return o;
}

static int vary_cb(void *arg, const char *names, size_t len, char *out, size_t cap)
{
    sl_exchange_t *x = arg;
    sl_cc_vary_t v;
    memset(&v, 0, sizeof(v));
    if (sl_cc_vary_add(&v, names, len) < 0)
        return -1;
    int64_t k = sl_cc_vary_key(&v, x->req.headers, x->req.nheaders, out, cap);
    return k < 0 || k > (int64_t)cap ? -1 : (int)k;
}

static int fresh_cb(void *arg, const sl_cache_obj_t *obj)
{
    sl_exchange_t *x = arg;
    hc_x_t *s = HC(x);
    const hc_meta_t *m = obj->meta;
    if (s->dedupe)
        return 0; /* nothing is stored under dedupe keys; never a hit */
    sl_cc_decision_t d;
    int a = sl_cc_lookup(&m->e, &s->reqcc, &s->ccr, s->now_ms, &d);
    return a == SL_CC_ACT_FRESH || a == SL_CC_ACT_STALE_OK;
}

/* ---- serving a stored object ---- */

static void release_obj(void *arg)
{
    sl_cache_obj_release(arg);
}

#define PUTS(w, lit) SL_OUT_LIT(w, lit)

static inline void put_field(sl_out_t *w, const sl_http_header_t *h)
{
    sl_out_put(w, h->name, h->name_len);
    PUTS(w, ": ");
    sl_out_put(w, h->value, h->value_len);
    PUTS(w, "\r\n");
}

static int name_is(const sl_http_header_t *h, const char *name, size_t n)
{
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

/* The request carries If-None-Match or If-Modified-Since. */
static int has_validators(const sl_http_request_t *r)
{
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        if (h->id == SL_H_OTHER && h->name_len >= 13 && (h->name[0] | 0x20) == 'i' &&
            (name_is(h, "if-none-match", 13) || name_is(h, "if-modified-since", 17)))
            return 1;
    }
    return 0;
}

/* Parse an object's stored head into r (it is a complete response head). */
static int parse_stored(const sl_cache_obj_t *obj, sl_http_response_t *r)
{
    size_t scan = 0;
    int rc = sl_http1_parse_response(obj->head.p, obj->head.len, obj->head.len, &scan, r);
    return rc > 0 ? 0 : -1;
}

/* The connection fields, the policies' fields (RateLimit...) and Via, ending the head. */
static void put_tail(sl_out_t *w, sl_exchange_t *x, int ka)
{
    if (!ka)
        PUTS(w, "Connection: close\r\n");
    else if (x->req.version == 10)
        PUTS(w, "Connection: keep-alive\r\n");
    sl_out_put(w, x->resp_extra, x->resp_extra_len);
    PUTS(w, "Via: 1.1 sluice\r\n\r\n");
}

/* 304 from a stored response (RFC 9110 §15.4.5: the fields a 200 would have sent that
 * describe the representation's validators and caching). */
static void send_304(sl_exchange_t *x, const sl_cache_obj_t *obj, const sl_http_response_t *st,
                     uint32_t age, int result, int ka)
{
    static const struct {
        const char *s;
        size_t n;
    } keep[] = {{"cache-control", 13}, {"content-location", 16}, {"date", 4}, {"etag", 4},
                {"expires", 7},        {"vary", 4},              {"last-modified", 13}};
    (void)obj;
    sl_buf_t *b = sl_buf_get(&x->conn->w->bufs);
    if (!b) {
        sl_conn_end(x, 0);
        return;
    }
    sl_out_t w = {b->data, b->data + b->size, 0};
    PUTS(&w, "HTTP/1.1 304 Not Modified\r\n");
    for (unsigned i = 0; i < st->nheaders; i++)
        for (size_t k = 0; k < SL_ARRAY_LEN(keep); k++)
            if (name_is(&st->headers[i], keep[k].s, keep[k].n)) {
                put_field(&w, &st->headers[i]);
                break;
            }
    PUTS(&w, "Age: ");
    sl_out_u64(&w, age);
    PUTS(&w, "\r\n");
    sl_out_put(&w, xcache_lines[result], strlen(xcache_lines[result]));
    put_tail(&w, x, ka);
    if (w.overflow) {
        sl_buf_put(&x->conn->w->bufs, b);
        sl_conn_end(x, 0);
        return;
    }
    x->status = 304;
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)(w.p - b->data));
    sl_conn_send(x, &ub, 1, &b, 1);
    sl_conn_end(x, ka);
}

/* Answer x from obj (consumes the caller's reference); end: end the exchange (0 leaves it
 * open for a background refresh). */
static void serve(sl_exchange_t *x, sl_cache_obj_t *obj, int result, int end)
{
    hc_x_t *s = HC(x);
    const hc_meta_t *m = obj->meta;
    sl_worker_t *w = x->conn->w;
    int64_t now = (int64_t)sl_worker_wall_ms(w);
    uint32_t age = sl_cc_age_header(&m->e, now);
    int ka = sl_conn_keepalive(x);
    s->result = (uint8_t)result;
    if (SL_UNLIKELY(has_validators(&x->req)) && end) {
        sl_http_response_t st;
        if (parse_stored(obj, &st) == 0 &&
            sl_cc_conditional(x->req.headers, x->req.nheaders, m->status, st.headers,
                              st.nheaders, now) == SL_CC_COND_NOT_MODIFIED) {
            send_304(x, obj, &st, age, result, ka);
            sl_cache_obj_release(obj);
            return;
        }
    }
    sl_buf_t *tb = sl_buf_get(&w->bufs);
    if (!tb) {
        sl_cache_obj_release(obj);
        sl_conn_end(x, 0);
        return;
    }
    sl_out_t o = {tb->data, tb->data + tb->size, 0};
    PUTS(&o, "Age: ");
    sl_out_u64(&o, age);
    PUTS(&o, "\r\n");
    sl_out_put(&o, xcache_lines[result], strlen(xcache_lines[result]));
    if (m->status != 204 && m->status != 304) {
        PUTS(&o, "Content-Length: ");
        sl_out_u64(&o, obj->body.len);
        PUTS(&o, "\r\n");
    }
    put_tail(&o, x, ka);
    if (o.overflow) {
        sl_buf_put(&w->bufs, tb);
        sl_cache_obj_release(obj);
        sl_conn_end(x, 0);
        return;
    }
    tb->len = (uint32_t)(o.p - tb->data);
    uv_buf_t iov[3];
    unsigned n = 0;
    iov[n++] = uv_buf_init((char *)obj->head.p, (unsigned)obj->head.len - 2); /* no final CRLF */
    iov[n++] = uv_buf_init(tb->data, tb->len);
    if (x->req.method_id != SL_M_HEAD && obj->body.len)
        iov[n++] = uv_buf_init((char *)obj->body.p, (unsigned)obj->body.len);
    x->status = m->status;
    s->served_status = m->status;
    sl_conn_send_ref(x, iov, n, &tb, 1, release_obj, obj);
    if (end)
        sl_conn_end(x, ka);
}

/* ---- going upstream ---- */

static const sl_proxy_tap_t tap_ops;

static void go_upstream(sl_exchange_t *x, int mode)
{
    hc_x_t *s = HC(x);
    s->mode = (uint8_t)mode;
    s->then = THEN_STREAMED;
    s->req_ms = (int64_t)sl_worker_wall_ms(x->conn->w);
    if (mode == MODE_PASS && s->result == SL_HC_NONE)
        s->result = SL_HC_PASS;
    sl_proxy_set_tap(x, &tap_ops, s->cond, s->cond_len, mode == MODE_FILL);
    sl_proxy_start(x, s->svc);
}

/* The same, from a waiter's wake-up: the exchange's body was held, resume it unless the
 * proxy already answered (and a pipelined request may reuse x). */
static void go_upstream_resumed(sl_exchange_t *x, int mode)
{
    sl_conn_t *c = x->conn;
    uint64_t id = x->id;
    hc_x_t *s = HC(x);
    int held = s->held;
    s->held = 0;
    x->ops = NULL;
    go_upstream(x, mode);
    if (held && sl_conn_live(c, x, id))
        sl_conn_resume(x);
}

/* If-None-Match / If-Modified-Since lines from a stored object's validators. */
static void make_conditional(hc_x_t *s, const sl_cache_obj_t *obj)
{
    s->cond_len = 0;
    sl_http_response_t st;
    if (parse_stored(obj, &st))
        return;
    sl_out_t w = {s->cond, s->cond + sizeof(s->cond), 0};
    for (unsigned i = 0; i < st.nheaders; i++) {
        const sl_http_header_t *h = &st.headers[i];
        char *mark = w.p;
        if (name_is(h, "etag", 4)) {
            PUTS(&w, "If-None-Match: ");
        } else if (name_is(h, "last-modified", 13)) {
            PUTS(&w, "If-Modified-Since: ");
        } else {
            continue;
        }
        sl_out_put(&w, h->value, h->value_len);
        PUTS(&w, "\r\n");
        if (w.overflow) { /* a validator too long to send: revalidate without it */
            w.p = mark;
            w.overflow = 0;
        }
    }
    s->cond_len = (size_t)(w.p - s->cond);
}

static void abandon(hc_x_t *s, int outcome, uint64_t pass_ms, uint64_t mono)
{
    if (s->building) {
        sl_cache_builder_discard(&s->b);
        s->building = 0;
    }
    if (s->leading) {
        s->leading = 0;
        sl_cache_fill_abandon(s->hc->store, &s->fill, outcome, mono, pass_ms);
    }
}

/* ---- waiting ---- */

static void wait_abort(sl_exchange_t *x);
static const sl_exchange_ops_t wait_ops = {.abort = wait_abort};
static void lookup(sl_exchange_t *x);

static void wait_cb(void *arg, int outcome, sl_cache_obj_t *obj)
{
    hc_wait_t *n = arg;
    hc_wq_t *q = n->q;
    n->outcome = outcome;
    n->obj = obj;
    n->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (!q->open) {
        pthread_mutex_unlock(&q->mu);
        sl_cache_obj_release(obj);
        free(n);
        return;
    }
    *q->tail = n;
    q->tail = &n->next;
    uv_async_send(&q->async);
    pthread_mutex_unlock(&q->mu);
}

static void waiter_woken(sl_exchange_t *x, int outcome, sl_cache_obj_t *obj)
{
    hc_x_t *s = HC(x);
    if (outcome == SL_CACHE_PUBLISHED && obj) {
        if (sl_cache_obj_matches(obj, &s->creq)) {
            x->ops = NULL;
            serve(x, obj, SL_HC_COALESCED, 1);
            return;
        }
        sl_cache_obj_release(obj); /* another variant: look again */
        lookup(x);
        return;
    }
    sl_cache_obj_release(obj);
    if (outcome == SL_CACHE_NOT_STORABLE) {
        go_upstream_resumed(x, MODE_PASS);
        return;
    }
    lookup(x); /* abandoned: one of the waiters leads next */
}

static void wake_cb(uv_async_t *a)
{
    hc_wq_t *q = a->data;
    pthread_mutex_lock(&q->mu);
    hc_wait_t *list = q->head;
    q->head = NULL;
    q->tail = &q->head;
    pthread_mutex_unlock(&q->mu);
    while (list) {
        hc_wait_t *n = list;
        list = n->next;
        sl_timed_unlink(&n->timed);
        sl_exchange_t *x = n->x;
        int outcome = n->outcome;
        sl_cache_obj_t *obj = n->obj;
        free(n);
        if (!x) { /* orphaned: its exchange went away */
            sl_cache_obj_release(obj);
            continue;
        }
        HC(x)->wait = NULL;
        waiter_woken(x, outcome, obj);
    }
}

static void wait_expired(sl_timed_t *t)
{
    hc_wait_t *n = (hc_wait_t *)((char *)t - offsetof(hc_wait_t, timed));
    sl_exchange_t *x = n->x;
    hc_x_t *s = HC(x);
    if (!sl_cache_waiter_cancel(s->hc->store, &n->w))
        return; /* the outcome is on its way */
    sl_timed_unlink(&n->timed);
    s->wait = NULL;
    free(n);
    sl_counter_inc(s->hc->m_timeouts);
    go_upstream_resumed(x, MODE_PASS);
}

static void wait_abort(sl_exchange_t *x)
{
    hc_x_t *s = HC(x);
    hc_wait_t *n = s->wait;
    if (!n)
        return;
    s->wait = NULL;
    sl_timed_unlink(&n->timed);
    if (sl_cache_waiter_cancel(s->hc->store, &n->w))
        free(n);
    else
        n->x = NULL; /* the queue frees it when its outcome arrives */
}

/* ---- the L2 tier (Redis) ---- */

static void l2_abort(sl_exchange_t *x);
static const sl_exchange_ops_t l2_ops = {.abort = l2_abort};
static void l2_got(void *arg, int rc, const char *data, size_t len);

static sl_l2_t *l2_of(const sl_hcache_t *hc, const sl_worker_t *w)
{
    return hc->l2s && w->index >= 0 && w->index < hc->nthreads ? hc->l2s[w->index] : NULL;
}

/* Ask Redis for x's key (x leads the fill meanwhile). 0: l2_got will go on; -1: no L2. */
static int l2_lookup(sl_exchange_t *x)
{
    hc_x_t *s = HC(x);
    sl_l2_t *l2 = l2_of(s->hc, x->conn->w);
    if (!l2)
        return -1;
    if (sl_l2_get(l2, s->creq.key.p, s->creq.key.len, l2_got, x, &s->l2_handle) != 0) {
        sl_counter_add(s->hc->m_l2, L2_ERROR, 1);
        return -1;
    }
    s->l2_pending = 1;
    x->ops = &l2_ops;
    if (!s->held && !s->bg) { /* a detached refresh has no body to hold */
        s->held = 1;
        sl_conn_pause(x);
    }
    return 0;
}

static void l2_abort(sl_exchange_t *x)
{
    hc_x_t *s = HC(x);
    if (s->l2_pending) {
        s->l2_pending = 0;
        sl_l2_cancel(l2_of(s->hc, x->conn->w), s->l2_handle);
    }
}

/* An object from Redis as an L1 object for x's fill, or NULL (with the L2 result to count)
 * when it cannot serve x: malformed, another variant, not fresh for this request. */
static sl_cache_obj_t *l2_adopt(sl_exchange_t *x, const char *data, size_t len, int *why)
{
    hc_x_t *s = HC(x);
    sl_worker_t *w = x->conn->w;
    sl_objcodec_t o;
    hc_meta_t meta;
    sl_http_response_t st;
    size_t scan = 0;
    *why = L2_ERROR;
    if (sl_objcodec_decode(data, len, &o) || o.meta_size != sizeof(meta) ||
        o.ntags > SL_CACHE_MAX_TAGS ||
        sl_http1_parse_response(o.head.p, o.head.len, o.head.len, &scan, &st) !=
            (int)o.head.len)
        return NULL;
    memcpy(&meta, o.meta, sizeof(meta));
    *why = L2_VARIANT;
    if (o.vary.len) {
        char key[SCRATCH_MAX];
        int k = vary_cb(x, o.vary.p, o.vary.len, key, sizeof(key));
        if (k < 0 || (size_t)k != o.skey.len || memcmp(key, o.skey.p, o.skey.len) != 0)
            return NULL;
    } else if (o.skey.len) {
        return NULL;
    }
    *why = L2_STALE;
    sl_cc_decision_t d;
    int a = sl_cc_lookup(&meta.e, &s->reqcc, &s->ccr, (int64_t)sl_worker_wall_ms(w), &d);
    if (a != SL_CC_ACT_FRESH && a != SL_CC_ACT_STALE_OK)
        return NULL;
    *why = L2_ERROR;
    sl_cache_obj_spec_t spec;
    memset(&spec, 0, sizeof(spec));
    spec.key = s->creq.key;
    spec.vary = o.vary;
    spec.skey = o.skey;
    spec.head = o.head;
    spec.meta = &meta;
    spec.tags = o.tags;
    spec.ntags = o.ntags;
    spec.body_hint = o.body.len;
    if (sl_cache_builder_init(s->hc->store, &s->b, &spec) != 0)
        return NULL;
    if (o.body.len && sl_cache_builder_append(&s->b, o.body.p, o.body.len) != 0) {
        sl_cache_builder_discard(&s->b);
        return NULL;
    }
    sl_cache_obj_t *out = NULL;
    s->leading = 0;
    if (sl_cache_publish(s->hc->store, &s->b, &s->fill, uv_now(&w->loop), &out) < 0) {
        sl_cache_builder_discard(&s->b);
        s->leading = 1; /* the fill is still ours */
        return NULL;
    }
    *why = L2_HIT;
    return out;
}

static void l2_got(void *arg, int rc, const char *data, size_t len)
{
    sl_exchange_t *x = arg;
    hc_x_t *s = HC(x);
    s->l2_pending = 0;
    int why = rc == 1 ? L2_MISS : L2_ERROR;
    sl_cache_obj_t *obj = rc == 0 ? l2_adopt(x, data, len, &why) : NULL;
    sl_counter_add(s->hc->m_l2, (uint64_t)why, 1);
    if (obj) {
        x->ops = NULL;
        serve(x, obj, SL_HC_HIT, 1);
        return;
    }
    go_upstream_resumed(x, MODE_FILL);
}

/* Write a published object to Redis for as long as it stays usable there. */
static void l2_store(sl_exchange_t *x, const sl_cache_obj_t *obj)
{
    hc_x_t *s = HC(x);
    sl_worker_t *w = x->conn->w;
    sl_l2_t *l2 = l2_of(s->hc, w);
    if (!l2 || s->dedupe)
        return;
    const hc_meta_t *m = obj->meta;
    int64_t ttl = sl_cc_usable_ms(&m->e, &s->ccr, (int64_t)sl_worker_wall_ms(w));
    if (ttl < 1)
        return;
    sl_objcodec_t o;
    memset(&o, 0, sizeof(o));
    o.meta = obj->meta;
    o.meta_size = sizeof(hc_meta_t);
    o.vary = obj->vary;
    o.skey = obj->skey;
    o.head = obj->head;
    o.body = obj->body;
    o.ntags = obj->ntags <= SL_OBJCODEC_MAX_TAGS ? obj->ntags : SL_OBJCODEC_MAX_TAGS;
    for (unsigned i = 0; i < o.ntags; i++)
        o.tags[i] = obj->tags[i];
    size_t pre = sl_objcodec_prefix_size(&o);
    char *buf = malloc(pre);
    if (!buf || sl_objcodec_encode_prefix(&o, buf, pre) != pre) {
        free(buf);
        return;
    }
    uv_buf_t iov[2] = {uv_buf_init(buf, (unsigned)pre),
                       uv_buf_init((char *)obj->body.p, (unsigned)obj->body.len)};
    int rc = sl_l2_put(l2, obj->key.p, obj->key.len, iov, 2, (uint64_t)ttl, o.tags, o.ntags);
    sl_counter_add(s->hc->m_l2_stores, rc == 0 ? 0 : 1, 1);
    free(buf);
}

static void l2_purged_quietly(void *arg, int rc, uint64_t removed)
{
    (void)arg;
    (void)rc;
    (void)removed;
}

/* A purge another instance published: apply it to this process's L1. */
static void purge_message(void *arg, int kind, const char *p, size_t n)
{
    sl_hcache_t *hc = arg;
    sl_slice_t k = {p, n};
    if (kind == SL_L2_PURGE_KEY)
        sl_cache_purge_key(hc->store, k);
    else if (kind == SL_L2_PURGE_PREFIX)
        sl_cache_purge_prefix(hc->store, k);
    else if (kind == SL_L2_PURGE_TAG)
        sl_cache_purge_tag(hc->store, k);
}

/* ---- background refreshes (stale-while-revalidate) ---- */

/* A refresh is over: what it did is counted, the proxy's counts released. */
static void bg_done(sl_exchange_t *x)
{
    sl_hcache_done(x);
    sl_proxy_done(x);
}

static int cache_init(sl_exchange_t *x, sl_hcache_t *hc, const sl_route_cache_conf_t *rc,
                      sl_service_t *svc);

static const sl_conn_cfg_t *bg_cfg(sl_hcache_t *hc, const sl_exchange_t *x)
{
    if (!hc->bg_cfg_set) { /* every listener's exchanges have the same size */
        hc->bg_cfg = *x->conn->cfg;
        hc->bg_cfg.on_done = bg_done;
        hc->bg_cfg_set = 1;
    }
    return &hc->bg_cfg;
}

static void lookup(sl_exchange_t *x);

/* Run the refresh d (a detached copy of the request that found the answer stale). */
static void start_refresh(sl_exchange_t *d, sl_hcache_t *hc, const sl_route_cache_conf_t *rc,
                          sl_service_t *svc, unsigned codings, uint64_t compress_min)
{
    sl_proxy_reset(d);
    sl_proxy_set_compress(d, codings, compress_min); /* the same variant as the stale one */
    sl_hcache_reset(d);
    if (!cache_init(d, hc, rc, svc)) {
        sl_counter_add(hc->m_refresh, RF_FAILED, 1);
        sl_conn_end(d, 0);
        return;
    }
    HC(d)->bg = 1;
    lookup(d);
}

/* ---- the lookup ---- */

static hc_wait_t *take_node(hc_wq_t *q)
{
    hc_wait_t *n = q->spare;
    if (n)
        q->spare = NULL;
    else if (!(n = malloc(sizeof(*n))))
        return NULL;
    memset(n, 0, sizeof(*n));
    n->q = q;
    return n;
}

static void lookup(sl_exchange_t *x)
{
    hc_x_t *s = HC(x);
    sl_hcache_t *hc = s->hc;
    sl_worker_t *w = x->conn->w;
    hc_wq_t *q = &hc->wq[w->index];
    uint64_t mono = uv_now(&w->loop);
    s->now_ms = (int64_t)sl_worker_wall_ms(w);
    if (s->stale) {
        sl_cache_obj_release(s->stale);
        s->stale = NULL;
    }
    hc_wait_t *n = hc->conf.coalesce ? take_node(q) : NULL;
    if (n)
        sl_cache_waiter_init(&n->w, wait_cb, n);
    sl_cache_fill_init(&s->fill);
    sl_cache_obj_t *obj = NULL;
    int rc = sl_cache_begin(hc->store, &s->creq, mono, &s->fill, n ? &n->w : NULL, &obj);
    if (rc != SL_CACHE_WAITER && n)
        q->spare = n;
    if (SL_UNLIKELY(s->bg) && rc != SL_CACHE_LEADER) {
        /* Another request refreshed it first, or is refreshing it now. */
        if (rc == SL_CACHE_WAITER && !sl_cache_waiter_cancel(hc->store, &n->w)) {
            n->x = NULL; /* orphaned: the queue frees it */
        } else if (n && rc == SL_CACHE_WAITER) {
            q->spare = n;
        }
        sl_cache_obj_release(obj);
        sl_counter_add(hc->m_refresh, RF_NOT_NEEDED, 1);
        s->bg = 0;
        sl_conn_end(x, 0);
        return;
    }
    switch (rc) {
    case SL_CACHE_HIT:
        x->ops = NULL;
        serve(x, obj, sl_cc_is_fresh(&((hc_meta_t *)obj->meta)->e, s->now_ms) ? SL_HC_HIT
                                                                              : SL_HC_STALE,
              1);
        return;
    case SL_CACHE_LEADER: {
        s->leading = 1;
        s->cond_len = 0;
        if (!obj) {
            if (SL_UNLIKELY(s->reqcc.flags & SL_CC_ONLY_IF_CACHED)) {
                abandon(s, SL_CACHE_ABANDONED, 0, mono);
                x->ops = NULL;
                sl_conn_error(x, 504, "not cached (only-if-cached)");
                return;
            }
            s->result = SL_HC_MISS;
            if (!s->dedupe && l2_lookup(x) == 0)
                return; /* l2_got goes on */
            go_upstream_resumed(x, MODE_FILL);
            return;
        }
        sl_cc_decision_t d;
        int a = sl_cc_lookup(&((hc_meta_t *)obj->meta)->e, &s->reqcc, &s->ccr, s->now_ms, &d);
        if (a == SL_CC_ACT_UNSATISFIABLE) {
            sl_cache_obj_release(obj);
            abandon(s, SL_CACHE_ABANDONED, 0, mono);
            x->ops = NULL;
            sl_conn_error(x, 504, "not cached fresh enough (only-if-cached)");
            return;
        }
        if (a == SL_CC_ACT_STALE_WHILE_REVALIDATE && !s->bg) {
            /* Answer now from the stale object; a detached exchange refreshes it. */
            sl_exchange_t *bx = sl_conn_detached(w, bg_cfg(hc, x), x);
            const sl_route_cache_conf_t *rconf = s->rc;
            sl_service_t *svc = s->svc;
            uint64_t cmin = 0;
            unsigned cz = sl_proxy_compress_codings(x, &cmin);
            abandon(s, SL_CACHE_ABANDONED, 0, mono); /* bx leads the refresh */
            if (bx)
                start_refresh(bx, hc, rconf, svc, cz, cmin);
            else
                sl_counter_add(hc->m_refresh, RF_FAILED, 1);
            x->ops = NULL;
            serve(x, obj, SL_HC_STALE, 1);
            return;
        }
        s->stale = obj;
        make_conditional(s, obj);
        s->result = SL_HC_MISS;
        if (s->bg)
            s->background = 1; /* swallow the answer: there is no client */
        go_upstream_resumed(x, MODE_FILL);
        return;
    }
    case SL_CACHE_WAITER: {
        if (obj) {
            sl_cc_decision_t d;
            int a = sl_cc_lookup(&((hc_meta_t *)obj->meta)->e, &s->reqcc, &s->ccr, s->now_ms,
                                 &d);
            if (a == SL_CC_ACT_STALE_WHILE_REVALIDATE && sl_cache_waiter_cancel(hc->store, &n->w)) {
                q->spare = n;
                x->ops = NULL;
                serve(x, obj, SL_HC_STALE, 1);
                return;
            }
            s->stale = obj; /* may stand in if the fill fails */
        }
        n->x = x;
        s->wait = n;
        sl_timed_link(&w->timers, &n->timed, wait_expired);
        sl_timed_set(&w->timers, &n->timed, hc->conf.lock_timeout_ms);
        x->ops = &wait_ops;
        if (!s->held) {
            s->held = 1;
            sl_conn_pause(x);
        }
        return;
    }
    default: /* PASS, BUSY */
        s->stale = obj;
        go_upstream_resumed(x, MODE_PASS);
        return;
    }
}

/* ---- the tap: storing, revalidating, standing in ---- */

/* Up to SL_CACHE_MAX_TAGS tags from Surrogate-Key (space-separated) and Cache-Tag
 * (comma-separated). */
static unsigned parse_tags(const sl_http_response_t *r, sl_slice_t *tags)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        int sk = name_is(h, "surrogate-key", 13);
        if (!sk && !name_is(h, "cache-tag", 9))
            continue;
        const char *p = h->value, *e = p + h->value_len;
        while (p < e && n < SL_CACHE_MAX_TAGS) {
            while (p < e && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *t = p;
            while (p < e && *p != ' ' && *p != '\t' && (sk || *p != ','))
                p++;
            if (p > t)
                tags[n++] = (sl_slice_t){t, (size_t)(p - t)};
        }
    }
    return n;
}

/* Fields a stored head leaves out besides what sl_cc_store_drops says: the framing (the
 * cache frames its answers), Age (computed when served), and what sluice adds itself. */
static int stored_skips(const sl_http_header_t *h)
{
    return h->id == SL_H_CONTENT_LENGTH || h->id == SL_H_TRANSFER_ENCODING ||
           name_is(h, "age", 3) || name_is(h, "x-cache", 7);
}

static void refused(hc_x_t *s, int reason)
{
    sl_counter_add(s->hc->m_refused, (uint64_t)reason, 1);
}

/* Start an object for the answer r in s->b. 0, or -1 (not stored: the fill is abandoned). */
static int start_object(sl_exchange_t *x, const sl_http_response_t *r,
                        const sl_http_header_t *fields, unsigned nfields, const sl_cache_obj_t *from)
{
    hc_x_t *s = HC(x);
    sl_worker_t *w = x->conn->w;
    uint64_t mono = uv_now(&w->loop);
    int64_t now = (int64_t)sl_worker_wall_ms(w);
    sl_buf_t *tmp = sl_buf_get(&w->bufs);
    if (!tmp) {
        abandon(s, SL_CACHE_NOT_STORABLE, 0, mono);
        return -1;
    }
    sl_out_t o = {tmp->data, tmp->data + tmp->size, 0};
    /* The head: status line, then the stored fields. */
    PUTS(&o, "HTTP/1.1 ");
    char st[4] = {(char)('0' + r->status / 100), (char)('0' + r->status / 10 % 10),
                  (char)('0' + r->status % 10), ' '};
    sl_out_put(&o, st, 4);
    sl_out_put(&o, r->reason.p, r->reason.len);
    PUTS(&o, "\r\n");
    for (unsigned i = 0; i < nfields; i++) {
        const sl_http_header_t *h = &fields[i];
        if (sl_cc_store_drops(h, fields, nfields) || stored_skips(h))
            continue;
        put_field(&o, h);
    }
    PUTS(&o, "\r\n");
    size_t head_len = (size_t)(o.p - tmp->data);
    sl_cache_obj_spec_t spec;
    memset(&spec, 0, sizeof(spec));
    spec.key = (sl_slice_t){s->creq.key.p, s->creq.key.len};
    spec.head = (sl_slice_t){tmp->data, head_len};
    sl_slice_t tags[SL_CACHE_MAX_TAGS];
    if (from) {
        spec.vary = from->vary;
        spec.skey = from->skey;
        spec.tags = from->tags;
        spec.ntags = from->ntags;
        spec.body_hint = from->body.len;
    } else {
        sl_cc_vary_t v;
        sl_cc_vary_parse(fields, nfields, &v); /* storable: no "*", within bounds */
        if (v.n) {
            char *names = o.p;
            for (unsigned i = 0; i < v.n; i++) {
                if (i)
                    PUTS(&o, ",");
                sl_out_put(&o, v.names + v.off[i], v.len[i]);
            }
            spec.vary = (sl_slice_t){names, (size_t)(o.p - names)};
            int64_t k = o.overflow ? -1
                                   : sl_cc_vary_key(&v, x->req.headers, x->req.nheaders, o.p,
                                                    (size_t)(o.end - o.p));
            if (k < 0)
                o.overflow = 1;
            else
                spec.skey = (sl_slice_t){o.p, (size_t)k};
        }
        spec.ntags = parse_tags(r, tags);
        spec.tags = tags;
        spec.body_hint = r->content_length > 0 ? (size_t)r->content_length : 0;
    }
    if (o.overflow) {
        sl_buf_put(&w->bufs, tmp);
        refused(s, 2);
        abandon(s, SL_CACHE_NOT_STORABLE, s->hc->conf.hit_for_pass_ms, mono);
        return -1;
    }
    hc_meta_t meta;
    memset(&meta, 0, sizeof(meta));
    sl_cc_entry_init(&meta.e, fields, nfields, s->req_ms, now, &s->ccr);
    meta.status = r->status;
    spec.meta = &meta;
    int rc = sl_cache_builder_init(s->hc->store, &s->b, &spec);
    sl_buf_put(&w->bufs, tmp);
    if (rc) {
        refused(s, rc == SL_ETOOBIG ? 0 : 1);
        abandon(s, SL_CACHE_NOT_STORABLE, rc == SL_ETOOBIG ? s->hc->conf.hit_for_pass_ms : 0,
                mono);
        return -1;
    }
    s->building = 1;
    if (from && from->body.len &&
        sl_cache_builder_append(&s->b, from->body.p, from->body.len) != 0) {
        refused(s, 1);
        abandon(s, SL_CACHE_NOT_STORABLE, 0, mono);
        return -1;
    }
    return 0;
}

/* A 304 for the stale object: its fields updated by the 304's (RFC 9111 §4.3.4), its body. */
static int merge_304(sl_exchange_t *x, const sl_http_response_t *r304)
{
    hc_x_t *s = HC(x);
    sl_http_response_t st;
    if (parse_stored(s->stale, &st))
        return -1;
    sl_http_header_t merged[SL_HTTP_MAX_HEADERS];
    unsigned n = 0;
    for (unsigned i = 0; i < st.nheaders; i++) {
        int replaced = 0;
        for (unsigned k = 0; k < r304->nheaders && !replaced; k++)
            replaced = sl_cc_304_updates(&r304->headers[k], r304->headers, r304->nheaders) &&
                       st.headers[i].name_len == r304->headers[k].name_len &&
                       strncasecmp(st.headers[i].name, r304->headers[k].name,
                                   st.headers[i].name_len) == 0;
        if (!replaced)
            merged[n++] = st.headers[i];
    }
    for (unsigned k = 0; k < r304->nheaders && n < SL_HTTP_MAX_HEADERS; k++)
        if (sl_cc_304_updates(&r304->headers[k], r304->headers, r304->nheaders))
            merged[n++] = r304->headers[k];
    /* The status line stays the stored one. */
    sl_http_response_t like = st;
    return start_object(x, &like, merged, n, s->stale);
}

static int tap_head(sl_exchange_t *x, const sl_http_response_t *r)
{
    hc_x_t *s = HC(x);
    sl_worker_t *w = x->conn->w;
    uint64_t mono = uv_now(&w->loop);
    if (s->mode == MODE_INVALIDATE) {
        if (r->status < 400) {
            size_t k = 0;
            k += sl_cache_purge_key(s->hc->store, s->creq.key);
            sl_l2_t *l2 = l2_of(s->hc, x->conn->w);
            if (l2)
                sl_l2_purge(l2, SL_L2_PURGE_KEY, s->creq.key.p, s->creq.key.len,
                            l2_purged_quietly, NULL);
            for (unsigned i = 0; i < r->nheaders; i++) {
                const sl_http_header_t *h = &r->headers[i];
                if (!name_is(h, "location", 8) && !name_is(h, "content-location", 16))
                    continue;
                /* Same origin only (RFC 9111 §4.4): a path, or this host's absolute URL. */
                const char *p = h->value;
                size_t len = h->value_len, plen = 0;
                if (len > 7 && strncasecmp(p, "http://", 7) == 0) {
                    const char *slash = memchr(p + 7, '/', len - 7);
                    size_t hl = slash ? (size_t)(slash - p - 7) : len - 7;
                    if (hl != x->req.host.len || strncasecmp(p + 7, x->req.host.p, hl) != 0)
                        continue;
                    p = slash ? slash : "/";
                    len = slash ? len - (size_t)(slash - h->value) : 1;
                }
                if (!len || p[0] != '/')
                    continue;
                plen = len + 1 + x->req.host.len;
                if (plen > KEY_MAX)
                    continue;
                char key[KEY_MAX];
                memcpy(key, p, len);
                key[len] = ' ';
                for (size_t j = 0; j < x->req.host.len; j++) {
                    char c = x->req.host.p[j];
                    key[len + 1 + j] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                }
                k += sl_cache_purge_key(s->hc->store, (sl_slice_t){key, plen});
                if (l2)
                    sl_l2_purge(l2, SL_L2_PURGE_KEY, key, plen, l2_purged_quietly, NULL);
            }
            if (k)
                sl_counter_add(s->hc->m_invalid, 0, k);
        }
        return SL_TAP_STREAM;
    }
    int error_answer = r->status >= 500;
    if (error_answer && s->stale) {
        sl_cc_decision_t d;
        sl_cc_lookup(&((hc_meta_t *)s->stale->meta)->e, &s->reqcc, &s->ccr,
                     (int64_t)sl_worker_wall_ms(w), &d);
        if (d.error_grace_ms > 0 || s->background) {
            abandon(s, SL_CACHE_NOT_STORABLE, 0, mono);
            s->then = s->background ? THEN_END : THEN_SERVE_STALE;
            return SL_TAP_SWALLOW;
        }
    }
    if (s->mode == MODE_PASS) {
        const char *l = xcache_lines[SL_HC_PASS];
        size_t ll = strlen(l);
        if (x->resp_extra_len + ll <= sizeof(x->resp_extra)) {
            memcpy(x->resp_extra + x->resp_extra_len, l, ll);
            x->resp_extra_len += (uint32_t)ll;
        }
        return SL_TAP_STREAM;
    }
    /* MODE_FILL */
    if (s->dedupe) {
        /* Shared with the identical requests waiting, whatever its caching fields - except
         * a Set-Cookie, which would hand one client's new session to the others. */
        if (sl_http1_find(r->headers, r->nheaders, SL_H_SET_COOKIE))
            abandon(s, SL_CACHE_NOT_STORABLE, 0, mono);
        else
            start_object(x, r, r->headers, r->nheaders, NULL);
        goto streamed;
    }
    if (s->background)
        x->status = s->served_status; /* the client's answer, not the refresh's */
    if (r->status == 304 && s->stale && s->cond_len) {
        if (!s->background)
            s->result = SL_HC_REVALIDATED;
        s->then = s->background ? THEN_END : THEN_SERVE_NEW;
        if (merge_304(x, r) != 0)
            abandon(s, SL_CACHE_ABANDONED, 0, mono);
        return SL_TAP_SWALLOW;
    }
    const char *why = NULL;
    if (sl_cc_storable(SL_M_GET, r->status, x->req.headers, x->req.nheaders, r->headers,
                       r->nheaders, &s->ccr, &why)) {
        start_object(x, r, r->headers, r->nheaders, NULL);
    } else {
        abandon(s, SL_CACHE_NOT_STORABLE, s->hc->conf.hit_for_pass_ms, mono);
    }
    if (s->background) {
        s->then = THEN_END;
        return SL_TAP_SWALLOW;
    }
streamed:;
    const char *l = xcache_lines[SL_HC_MISS];
    size_t ll = strlen(l);
    if (x->resp_extra_len + ll <= sizeof(x->resp_extra)) {
        memcpy(x->resp_extra + x->resp_extra_len, l, ll);
        x->resp_extra_len += (uint32_t)ll;
    }
    return SL_TAP_STREAM;
}

static void tap_body(sl_exchange_t *x, const char *p, size_t n)
{
    hc_x_t *s = HC(x);
    if (!s->building)
        return;
    int rc = sl_cache_builder_append(&s->b, p, n);
    if (rc) {
        refused(s, rc == SL_ETOOBIG ? 0 : 1);
        abandon(s, SL_CACHE_NOT_STORABLE,
                rc == SL_ETOOBIG ? s->hc->conf.hit_for_pass_ms : 0, uv_now(&x->conn->w->loop));
    }
}

static int tap_end(sl_exchange_t *x, int status)
{
    hc_x_t *s = HC(x);
    sl_worker_t *w = x->conn->w;
    uint64_t mono = uv_now(&w->loop);
    if (status == 0 && s->building) {
        sl_cache_obj_t *out = NULL;
        s->building = 0;
        s->leading = 0;
        if ((s->dedupe ? sl_cache_share(s->hc->store, &s->b, &s->fill, &out)
                       : sl_cache_publish(s->hc->store, &s->b, &s->fill, mono, &out)) < 0) {
            sl_cache_builder_discard(&s->b);
            out = NULL;
        }
        if (out) {
            s->stored = 1;
            l2_store(x, out);
        }
        if (s->then == THEN_SERVE_NEW && out) {
            serve(x, out, SL_HC_REVALIDATED, 1);
            return 1;
        }
        sl_cache_obj_release(out);
    } else {
        /* Not stored: waiters go upstream themselves (the client went away: one of them
         * leads instead). */
        abandon(s, status == -2 ? SL_CACHE_ABANDONED : SL_CACHE_NOT_STORABLE, 0, mono);
    }
    if (status == -2)
        return 0; /* the client is gone: conn frees x */
    if (s->background) {
        sl_conn_end(x, 1); /* the client had its (stale) answer */
        return 1;
    }
    if (s->then == THEN_SERVE_NEW && s->stale) {
        /* The 304 could not be stored: its stored answer is still the one to give. */
        sl_cache_obj_t *o = s->stale;
        s->stale = NULL;
        serve(x, o, SL_HC_REVALIDATED, 1);
        return 1;
    }
    int stand_in = s->then == THEN_SERVE_STALE;
    if (!stand_in && status > 0 && s->stale) {
        sl_cc_decision_t d;
        sl_cc_lookup(&((hc_meta_t *)s->stale->meta)->e, &s->reqcc, &s->ccr,
                     (int64_t)sl_worker_wall_ms(w), &d);
        stand_in = d.error_grace_ms > 0;
    }
    if (stand_in && s->stale && status >= 0) {
        sl_cache_obj_t *o = s->stale;
        s->stale = NULL;
        serve(x, o, SL_HC_STALE, 1);
        return 1;
    }
    return 0;
}

static const sl_proxy_tap_t tap_ops = {.head = tap_head, .body = tap_body, .end = tap_end};

/* ---- entry points ---- */

/* The dedupe key: the cache key, then the credentials that may make the answer personal
 * ("\n" cannot occur in a field value). 0 when it does not fit. */
static size_t dedupe_key(const sl_http_request_t *r, char *out, size_t cap)
{
    size_t o = build_key(r, out, cap);
    if (!o)
        return 0;
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        if (h->id != SL_H_AUTHORIZATION && h->id != SL_H_COOKIE)
            continue;
        if (o + 3 + h->value_len > cap)
            return 0;
        out[o++] = '\n';
        out[o++] = h->id == SL_H_AUTHORIZATION ? 'a' : 'c';
        out[o++] = ':';
        memcpy(out + o, h->value, h->value_len);
        o += h->value_len;
    }
    return o;
}

/* x's cache state, cleared, for a key of kl bytes already in s->key (0: it did not fit;
 * returns 0 and x is not the cache's). */
static int state_init(sl_exchange_t *x, sl_hcache_t *hc, sl_service_t *svc, size_t kl)
{
    hc_x_t *s = HC(x);
    if (!kl)
        return 0;
    memset(s, 0, offsetof(hc_x_t, cond));
    s->active = 1;
    s->hc = hc;
    s->svc = svc;
    s->creq.key = (sl_slice_t){s->key, kl};
    s->creq.fresh = fresh_cb;
    s->creq.arg = x;
    s->creq.scratch = s->scratch;
    s->creq.scratch_cap = sizeof(s->scratch);
    return 1;
}

int sl_hcache_handle(sl_hcache_t *hc, sl_exchange_t *x, const sl_route_conf_t *route,
                     sl_service_t *svc)
{
    const sl_route_cache_conf_t *rc = &route->cache;
    const sl_http_request_t *r = &x->req;
    hc_x_t *s = HC(x);
    int m = r->method_id;
    if (r->flags & (SL_HF_UPGRADE | SL_HF_CONN_UPGRADE))
        return 0;
    if (m != SL_M_GET && m != SL_M_HEAD) {
        if (m == SL_M_OPTIONS || m == SL_M_TRACE || m == SL_M_CONNECT)
            return 0;
        /* Unsafe: invalidate the URL once the origin accepted the request. */
        if (!state_init(x, hc, svc, build_key(r, s->key, sizeof(s->key))))
            return 0;
        /* Now too: a fill that started before this request cannot store what it precedes. */
        sl_cache_purge_key(hc->store, s->creq.key);
        s->mode = MODE_INVALIDATE;
        sl_proxy_set_tap(x, &tap_ops, NULL, 0, 0);
        sl_proxy_start(x, svc);
        return 1;
    }
    if (r->content_length > 0 || (r->flags & SL_HF_CHUNKED))
        return 0;
    if (!rc->enabled) {
        if (!route->dedupe || m != SL_M_GET || !hc->conf.coalesce)
            return 0;
        if (!state_init(x, hc, svc, dedupe_key(r, s->key, sizeof(s->key))))
            return 0;
        s->dedupe = 1;
        lookup(x);
        return 1;
    }
    if (!cache_init(x, hc, rc, svc))
        return 0;
    /* If-Match / If-Unmodified-Since are the origin's to judge (RFC 9111 §4.3.2). */
    for (unsigned i = 0; i < r->nheaders; i++) {
        const sl_http_header_t *h = &r->headers[i];
        if (h->id == SL_H_OTHER && (h->name[0] | 0x20) == 'i' &&
            (name_is(h, "if-match", 8) || name_is(h, "if-unmodified-since", 19))) {
            go_upstream(x, MODE_PASS);
            return 1;
        }
    }
    lookup(x);
    return 1;
}

/* x's cache state for a GET or HEAD on a caching route. 0 when its key does not fit. */
static int cache_init(sl_exchange_t *x, sl_hcache_t *hc, const sl_route_cache_conf_t *rc,
                      sl_service_t *svc)
{
    const sl_http_request_t *r = &x->req;
    hc_x_t *s = HC(x);
    if (!state_init(x, hc, svc, build_key(r, s->key, sizeof(s->key))))
        return 0;
    s->rc = rc;
    s->ccr.ttl_ms = rc->ttl_ms;
    s->ccr.swr_ms = rc->swr_ms;
    s->ccr.sie_ms = rc->sie_ms;
    s->ccr.override = (uint8_t)rc->override;
    s->ccr.allow_set_cookie = (uint8_t)rc->allow_set_cookie;
    sl_cc_request_directives(r->headers, r->nheaders, &s->reqcc);
    s->creq.vary = vary_cb;
    s->creq.flags = r->method_id == SL_M_HEAD ? SL_CACHE_NO_LEAD : 0;
    return 1;
}

void sl_hcache_done(sl_exchange_t *x)
{
    hc_x_t *s = HC(x);
    if (!s->active)
        return;
    s->active = 0;
    if (s->wait)
        wait_abort(x);
    if (s->l2_pending)
        l2_abort(x);
    if (s->bg)
        sl_counter_add(s->hc->m_refresh, s->stored ? RF_STORED : RF_NOT_STORED, 1);
    abandon(s, SL_CACHE_ABANDONED, 0, uv_now(&x->conn->w->loop));
    sl_cache_obj_release(s->stale);
    s->stale = NULL;
    if (s->result != SL_HC_NONE && !s->bg)
        sl_counter_add(s->hc->m_results, s->result, 1);
}

/* What a purge request names, as a store operation: the L2 kind (SL_L2_PURGE_KEY,
 * _PREFIX, _TAG) on raw key bytes written to key (KEY_MAX + 1 bytes). Returns the length,
 * or -1 when it does not fit. A URL with a host is that key; a URL without one is every
 * host's key for it, the prefix "path?query "; a path prefix is on every host. */
static int purge_target(int kind, const char *p, size_t n, char *key, int *l2kind)
{
    if (kind == SL_HC_PURGE_TAG) {
        if (n > KEY_MAX)
            return -1;
        memcpy(key, p, n);
        *l2kind = SL_L2_PURGE_TAG;
        return (int)n;
    }
    const char *host = NULL;
    size_t hl = 0;
    if (n > 7 && (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0)) {
        size_t skip = p[4] == ':' ? 7 : 8;
        const char *slash = memchr(p + skip, '/', n - skip);
        host = p + skip;
        hl = slash ? (size_t)(slash - host) : n - skip;
        p = slash ? slash : "/";
        n = slash ? n - (size_t)(slash - (host - skip)) : 1;
    }
    if (n + 1 + hl > KEY_MAX)
        return -1;
    memcpy(key, p, n);
    if (kind == SL_HC_PURGE_PREFIX) { /* by path, on every host */
        *l2kind = SL_L2_PURGE_PREFIX;
        return (int)n;
    }
    key[n] = ' ';
    for (size_t i = 0; i < hl; i++)
        key[n + 1 + i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] + 32 : host[i]);
    *l2kind = host ? SL_L2_PURGE_KEY : SL_L2_PURGE_PREFIX;
    return (int)(n + 1 + hl);
}

size_t sl_hcache_purge(sl_hcache_t *hc, int kind, const char *p, size_t n)
{
    char key[KEY_MAX + 1];
    int l2kind = 0;
    int kl = hc ? purge_target(kind, p, n, key, &l2kind) : -1;
    if (kl < 0)
        return 0;
    sl_counter_add(hc->m_purges, (uint64_t)kind, 1);
    sl_slice_t k = {key, (size_t)kl};
    return l2kind == SL_L2_PURGE_TAG      ? sl_cache_purge_tag(hc->store, k)
           : l2kind == SL_L2_PURGE_PREFIX ? sl_cache_purge_prefix(hc->store, k)
                                          : sl_cache_purge_key(hc->store, k);
}

int sl_hcache_purge_l2(sl_hcache_t *hc, int kind, const char *p, size_t n,
                       void (*cb)(void *arg, int rc, uint64_t removed), void *arg)
{
    char key[KEY_MAX + 1];
    int l2kind = 0;
    sl_l2_t *l2 = hc && hc->l2s ? hc->l2s[0] : NULL;
    int kl = l2 ? purge_target(kind, p, n, key, &l2kind) : -1;
    if (kl < 0)
        return SL_EINVAL;
    return sl_l2_purge(l2, l2kind, key, (size_t)kl, cb, arg);
}
