/* router.h - the gateway: route table, services, and the request handler conn is given.
 * Owns: matching a request to a route (first match wins: host, path prefix, method),
 * running it through the route's target (today: proxy to a service), the per-request
 * metrics and the access log line. Built on the control thread, then read-only for
 * the workers that serve with it. */
#ifndef SL_ROUTER_H
#define SL_ROUTER_H

#include "http_cache.h"
#include "../core/config.h"
#include "../core/metrics.h"
#include "../http/conn.h"
#include "../policy/jwt.h"
#include "../policy/ratelimit.h"
#include "upstream.h"

typedef struct sl_route {
    const sl_route_conf_t *conf;
    sl_service_t *service;       /* NULL for a static route */
    struct sl_static_route *stat; /* the static: target, or NULL */
    uint32_t index;
    uint32_t mid;            /* label id in the request metrics (sl_label_id) */
    /* Rate limits that apply on this route: the global ones, then its own. */
    uint32_t nlimits;
    sl_rl_limit_t *limits;
    const sl_limit_conf_t **lconf;
    char *policy;            /* "RateLimit-Policy: ...\r\n" for 429 answers */
    size_t policy_len;
    int needs_user;          /* some limit keys on the user, or require_auth */
    char *label_json;        /* sl_route_label, escaped for the access log's JSON */
    size_t label_json_len;
} sl_route_t;

/* The start of a limit's RateLimit field, `RateLimit: "name";r=` (at most 80 bytes: names
 * are at most 64), copied in 16-byte steps: an answer's field is this, two numbers and
 * ";t=". */
typedef struct sl_rl_head {
    char text[96];
    uint32_t len;
} sl_rl_head_t;

typedef struct sl_gateway {
    sl_config_t *cfg;
    sl_upstreams_t up;
    sl_route_t *routes;
    uint32_t nroutes;
    sl_ratelimiter_t *rl;      /* NULL without rate limits */
    sl_jwt_t *jwt;             /* NULL without auth.jwt */
    sl_hcache_t *cache;        /* NULL when no route caches */
    const sl_limit_conf_t **all_limits; /* by limit id: global ones, then each route's */
    sl_rl_limit_t *limit_state;         /* by limit id */
    sl_rl_head_t *heads;                /* by limit id */
    uint32_t *limit_mid;                /* by limit id: label id in ratelimit_*_total */
    int *rl_refs, *cache_refs;          /* gateways sharing rl / cache (a reload carried
                                         * them over); the last one frees. Control thread */
    uint32_t nall_limits;
    sl_counter_t *m_allowed, *m_rejected, *m_shadow; /* ratelimit_*_total{limit} */
    sl_counter_t *m_fallback;  /* ratelimit_redis_fallbacks_total */
    sl_counter_t *m_auth;      /* jwt_verifications_total{result} */
    sl_counter_t *m_requests;  /* http_requests_total{route,method,status} */
    sl_hist_t *m_duration;     /* http_request_duration_seconds{route} */
    sl_hist_t *m_upstream;     /* upstream_response_seconds{service,server}, by server id */
} sl_gateway_t;

/* Build from cfg (owned by g afterwards) for nthreads thread slots (loop threads and the
 * control thread), registering the request metrics. 0 or SL_ENOMEM. */
int sl_gateway_build(sl_gateway_t *g, sl_config_t *cfg, int nthreads);
/* The same for a reload, with prev the running gateway (or NULL): the cache store is
 * shared with prev when the `cache:` section is unchanged, the rate-limit table when the
 * limits are. Services are always built new; the caller copies the run-time state of
 * unchanged ones (sl_upstreams_carry). prev stays valid and serving: nothing of it is
 * changed except the share counts. Control thread. */
int sl_gateway_rebuild(sl_gateway_t *g, sl_config_t *cfg, int nthreads, const sl_gateway_t *prev);
/* Take g's scrape-time collectors out of the exposition: next (or NULL) serves now, and
 * shows the cache's gauges if it kept g's cache. g's counters stay in the shared
 * families. Idempotent. */
void sl_gateway_unpublish(sl_gateway_t *g, const sl_gateway_t *next);
/* Free g and its configuration; shared parts go with their last user. */
void sl_gateway_free(sl_gateway_t *g);

/* The route's name in metrics, logs and alert selectors: its name, else its path prefix. */
static inline const char *sl_route_label(const sl_route_t *rt)
{
    return rt->conf->name ? rt->conf->name : rt->conf->path_prefix;
}

/* First route matching the request, or NULL. */
const sl_route_t *sl_router_match(const sl_gateway_t *g, const sl_http_request_t *r);

/* The conn handler and its on_done hook; the gateway is x->conn->w->gw. */
void sl_gateway_handle(sl_exchange_t *x);
void sl_gateway_done(sl_exchange_t *x);
size_t sl_gateway_state_size(void);

#endif
