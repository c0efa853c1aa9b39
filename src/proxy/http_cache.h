/* http_cache.h - the response cache in the request path: what a caching route does with a
 * GET or HEAD (serve a stored answer, wait for a fill in progress, or lead one upstream and
 * store its answer), the invalidation done by unsafe methods, stale serving, revalidation,
 * purges, and the cache's metrics.
 * Owns the glue only: the rules are cachecontrol's (RFC 9111), the storage and coalescing
 * the store's. A hit is written straight from the stored object (no copy, no lock); a
 * waiter is woken on its own loop through its worker's uv_async. Worker loops only, except
 * sl_hcache_new/free (control thread) and purges (any thread). */
#ifndef SL_HTTP_CACHE_H
#define SL_HTTP_CACHE_H

#include "../core/config.h"
#include "../core/metrics.h"
#include "../http/conn.h"
#include "upstream.h"

typedef struct sl_hcache sl_hcache_t;

/* How an exchange used the cache (cache_requests_total{result}, the access log's "cache"
 * field, X-Cache). */
enum sl_hc_result {
    SL_HC_NONE = 0,    /* not a cache lookup (other route, unsafe method...) */
    SL_HC_HIT,         /* served fresh from the store */
    SL_HC_MISS,        /* went upstream to fill the store */
    SL_HC_STALE,       /* served stale (stale-while-revalidate, stale-if-error, max-stale) */
    SL_HC_COALESCED,   /* waited for another request's fill and was served its answer */
    SL_HC_REVALIDATED, /* a stored answer the origin confirmed with 304 */
    SL_HC_PASS,        /* went upstream without storing (hit-for-pass, not coalesced...) */
    SL_HC__COUNT
};

/* The cache for cfg, for nthreads thread slots (thread index < nthreads), with its metrics
 * registered. *out is NULL (and 0 returned) when no route caches or dedupes. SL_ENOMEM, SL_EINVAL. */
int sl_hcache_new(const sl_config_t *cfg, int nthreads, sl_hcache_t **out);
/* After every worker closed its wake handle. NULL is ignored. */
void sl_hcache_free(sl_hcache_t *hc);
/* 1 when some route of cfg caches or dedupes (sl_hcache_new would build a cache). */
int sl_hcache_wanted(const sl_config_t *cfg);
/* Take hc's scrape-time gauges out of the exposition (a reload replaced it). */
void sl_hcache_unpublish(sl_hcache_t *hc);

/* A worker's wake handle (on w->loop), and its close (when the worker drains: later fills
 * find the handle closed and drop what they would have handed over). */
int sl_hcache_worker_init(sl_hcache_t *hc, sl_worker_t *w);
void sl_hcache_worker_close(sl_hcache_t *hc, sl_worker_t *w);

/* Per-exchange state size, and its offset in x->hdata (set once at start-up). */
size_t sl_hcache_state_size(void);
void sl_hcache_set_offset(size_t off);

/* Mark x as not using the cache (the handler calls it for every exchange). */
void sl_hcache_reset(sl_exchange_t *x);

/* Run x (routed to route) through the cache: a GET or HEAD on a caching route is looked
 * up, a GET on a dedupe route joins an identical request in flight, an unsafe method
 * invalidates its URL; the proxy to svc is started when it must go upstream. Returns 1 when x is taken care of (answered, waiting, or proxied), 0 when the
 * caller should proxy it as usual (not cacheable: upgrades, bodies...). */
int sl_hcache_handle(sl_hcache_t *hc, sl_exchange_t *x, const sl_route_conf_t *route,
                     sl_service_t *svc);

/* The exchange is over (on_done): count it and let go of what it holds. Idempotent. */
void sl_hcache_done(sl_exchange_t *x);

/* x's result (enum sl_hc_result), and its name ("hit", "miss"...; "" for NONE). */
int sl_hcache_result(const sl_exchange_t *x);
const char *sl_hcache_result_name(int result);

/* Purge kinds. */
enum { SL_HC_PURGE_URL = 0, SL_HC_PURGE_PREFIX, SL_HC_PURGE_TAG };

/* Purge: URL "/path?q" (every host) or "http://host/path?q" (that host), a path prefix
 * "/path" (every host), or a tag (Surrogate-Key / Cache-Tag). Returns the objects removed.
 * Any thread. */
size_t sl_hcache_purge(sl_hcache_t *hc, int kind, const char *s, size_t n);

/* The same purge in Redis (cache.redis), from the control thread: the objects there go, and
 * every other instance is told to purge its memory. cb(arg, rc, removed) runs once, later
 * (rc 0, or SL_EIO: Redis down or slow). Returns 0, or SL_EINVAL (no Redis tier, or a URL
 * too long) / SL_EIO (not connected): cb will not run. */
int sl_hcache_purge_l2(sl_hcache_t *hc, int kind, const char *s, size_t n,
                       void (*cb)(void *arg, int rc, uint64_t removed), void *arg);

/* Lookups and hits so far (the sampler's cache_hit_ratio). */
void sl_hcache_counts(const sl_hcache_t *hc, uint64_t *hits, uint64_t *lookups);

#endif
