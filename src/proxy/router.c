/* router.c - routes, the request handler, per-request metrics and access log; see router.h. */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <stdlib.h>

#include "../core/config_diff.h"
#include "../core/log.h"
#include "../policy/ratelimit_redis.h"
#include "proxy.h"
#include "static_route.h"

/* The router's per-exchange state, in front of the proxy's in x->hdata: the limit
 * checks of a request, kept while a shared (Redis) decision is pending. */
typedef struct rt_state {
    const sl_route_t *rt;
    void *handle; /* pending Redis decision */
    unsigned n;
    int pending;
    uint8_t rl_result; /* for the access log: 0 none, 1 pass, 2 reject, 3 dry-run reject, 4 503 */
    uint8_t cached;    /* the cache took the exchange: its on_done and log field apply */
    sl_rl_check_t checks[16];
} rt_state_t;

#define RT_STATE_SIZE ((sizeof(rt_state_t) + 15) & ~(size_t)15)

static inline rt_state_t *RS(sl_exchange_t *x)
{
    return (rt_state_t *)x->hdata;
}

static const char *method_names[SL_M__COUNT] = {"OTHER", "GET",   "HEAD",    "POST",    "PUT",
                                                "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"};

/* Label key of http_requests_total: the route's label id (0 = none) << 24 | method << 16 |
 * status. Ids, not indexes, so a reload that reorders routes keeps each series. */
static size_t request_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    uint32_t route = (uint32_t)(key >> 24);
    unsigned method = (unsigned)(key >> 16) & 0xff, status = (unsigned)key & 0xffff;
    const char *rname = sl_label_text(SL_LABELS_ROUTE, route);
    if (!rname)
        rname = "unmatched";
    int n = snprintf(out, cap, "route=\"%s\",method=\"%s\",status=\"%u\"", rname,
                     method < SL_M__COUNT ? method_names[method] : "OTHER", status);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* By the server's label id (sl_server_t.mid), whose text is the label set itself. */
static size_t server_labels(uint64_t id, char *out, size_t cap, void *arg)
{
    (void)arg;
    const char *t = sl_label_text(SL_LABELS_SERVER, (uint32_t)id);
    int n = snprintf(out, cap, "%s", t ? t : "service=\"\",server=\"other\"");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t route_labels(uint64_t i, char *out, size_t cap, void *arg)
{
    (void)arg;
    const char *t = sl_label_text(SL_LABELS_ROUTE, (uint32_t)i);
    int n = snprintf(out, cap, "route=\"%s\"", t ? t : "unmatched");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- policies: identity, require_auth, rate limits ---- */

static size_t limit_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    const char *t = sl_label_text(SL_LABELS_LIMIT, (uint32_t)key);
    int n = snprintf(out, cap, "limit=\"%s\"", t ? t : "unknown");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t auth_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    static const char *r[] = {"valid", "invalid", "missing"};
    int n = snprintf(out, cap, "result=\"%s\"", key < 3 ? r[key] : "other");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void collect_rl(sl_textbuf_t *t, void *arg)
{
    const sl_gateway_t *g = arg;
    sl_text_printf(t,
                   "# HELP ratelimit_table_keys Keys held by the rate-limit table.\n"
                   "# TYPE ratelimit_table_keys gauge\nratelimit_table_keys %llu\n"
                   "# HELP ratelimit_evictions_total Keys evicted from the rate-limit table to "
                   "make room (limits.rate_limit_keys).\n"
                   "# TYPE ratelimit_evictions_total counter\nratelimit_evictions_total %llu\n",
                   (unsigned long long)sl_rl_size(g->rl),
                   (unsigned long long)sl_rl_evictions(g->rl));
}

/* "RateLimit-Policy: "minute";q=100;w=60, "hour";q=1000;w=3600\r\n" */
static char *policy_header(const sl_limit_conf_t **l, uint32_t n, size_t *len)
{
    size_t cap = 32 + (size_t)n * 96;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t o = (size_t)snprintf(s, cap, "RateLimit-Policy: ");
    for (uint32_t i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s\"%s\";q=%u;w=%llu", i ? ", " : "", l[i]->name,
                              l[i]->count, (unsigned long long)(l[i]->period_ms / 1000));
    o += (size_t)snprintf(s + o, cap - o, "\r\n");
    *len = o;
    return s;
}

static char *read_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

static int build_policies(sl_gateway_t *g, const sl_gateway_t *prev)
{
    const sl_config_t *cfg = g->cfg;
    if (cfg->auth.jwt) {
        sl_jwt_conf_t jc = {.algorithms = 0, .user_claim = cfg->auth.user_claim,
                            .leeway_s = cfg->auth.leeway_ms / 1000, .has_leeway = 1};
        if (cfg->auth.algorithms & SL_ALG_HS256)
            jc.algorithms |= SL_JWT_HS256;
        if (cfg->auth.algorithms & SL_ALG_RS256)
            jc.algorithms |= SL_JWT_RS256;
        if (cfg->auth.algorithms & SL_ALG_ES256)
            jc.algorithms |= SL_JWT_ES256;
        const char *secret = cfg->auth.secret_env ? getenv(cfg->auth.secret_env) : NULL;
        if (cfg->auth.secret_env && (!secret || !*secret)) {
            sl_log_error("auth.jwt.secret_env: environment variable %s is not set",
                         cfg->auth.secret_env);
            return SL_EINVAL;
        }
        jc.secret = secret;
        jc.secret_len = secret ? strlen(secret) : 0;
        char *pem = NULL;
        if (cfg->auth.public_key && !(pem = read_file(cfg->auth.public_key, 64 * 1024))) {
            sl_log_error("auth.jwt.public_key: cannot read %s", cfg->auth.public_key);
            return SL_EINVAL;
        }
        jc.public_key_pem = pem;
        char err[200] = "";
        g->jwt = sl_jwt_new(&jc, err, sizeof(err));
        free(pem);
        if (!g->jwt) {
            sl_log_error("auth.jwt: %s", err);
            return SL_EINVAL;
        }
    }
    uint32_t total = cfg->nrate_limits;
    for (uint32_t r = 0; r < cfg->nroutes; r++)
        total += cfg->routes[r].nrate_limits;
    if (total) {
        /* The same limits as the running gateway: share its table, so a reload neither
         * forgives nor double-charges a client (limit ids, mixed into keys, match). */
        if (prev && prev->rl && sl_config_ratelimits_equal(prev->cfg, cfg)) {
            g->rl = prev->rl;
            g->rl_refs = prev->rl_refs;
            (*g->rl_refs)++;
        } else {
            g->rl = sl_rl_new(cfg->limits.rate_limit_keys);
            g->rl_refs = calloc(1, sizeof(int));
            if (g->rl_refs)
                *g->rl_refs = 1;
        }
        g->all_limits = calloc(total, sizeof(*g->all_limits));
        g->limit_state = calloc(total, sizeof(sl_rl_limit_t));
        g->heads = calloc(total, sizeof(sl_rl_head_t));
        g->limit_mid = calloc(total, sizeof(uint32_t));
        if (!g->rl || !g->rl_refs || !g->all_limits || !g->limit_state || !g->heads ||
            !g->limit_mid)
            return SL_ENOMEM;
        for (uint32_t i = 0; i < cfg->nrate_limits; i++)
            g->all_limits[g->nall_limits++] = &cfg->rate_limits[i];
        for (uint32_t r = 0; r < cfg->nroutes; r++)
            for (uint32_t i = 0; i < cfg->routes[r].nrate_limits; i++)
                g->all_limits[g->nall_limits++] = &cfg->routes[r].rate_limits[i];
        for (uint32_t i = 0; i < g->nall_limits; i++) {
            const sl_limit_conf_t *l = g->all_limits[i];
            if (sl_rl_limit_init(&g->limit_state[i], i, l->count, l->period_ms, l->has_burst,
                                 l->burst, l->dry_run))
                return SL_EINVAL;
            int hl = snprintf(g->heads[i].text, sizeof(g->heads[i].text), "RateLimit: \"%s\";r=",
                              l->name);
            if (hl < 0 || (size_t)hl >= sizeof(g->heads[i].text))
                return SL_EINVAL; /* the loader keeps names to 64 bytes */
            g->heads[i].len = (uint32_t)hl;
            g->limit_mid[i] = sl_label_id(SL_LABELS_LIMIT, l->name);
        }
        g->m_allowed = sl_metrics_counter("ratelimit_allowed_total",
                                          "Requests a rate limit let through.", limit_labels, NULL);
        g->m_rejected = sl_metrics_counter("ratelimit_rejected_total",
                                           "Requests rejected (429) by a rate limit.",
                                           limit_labels, NULL);
        g->m_shadow = sl_metrics_counter("ratelimit_dry_run_rejected_total",
                                         "Requests a dry_run limit would have rejected.",
                                         limit_labels, NULL);
        g->m_fallback = sl_metrics_counter("ratelimit_redis_fallbacks_total",
                                           "Decisions made by the local limiter because Redis "
                                           "did not answer in time (on_failure: fail_open).",
                                           NULL, NULL);
        sl_metrics_collector(collect_rl, g);
    }
    if (g->jwt)
        g->m_auth = sl_metrics_counter("jwt_verifications_total",
                                       "Authorization tokens checked, by result.", auth_labels,
                                       NULL);
    uint32_t id = cfg->nrate_limits;
    for (uint32_t r = 0; r < g->nroutes; r++) {
        sl_route_t *rt = &g->routes[r];
        const sl_route_conf_t *rc = rt->conf;
        rt->nlimits = cfg->nrate_limits + rc->nrate_limits;
        rt->needs_user = rc->require_auth;
        if (!rt->nlimits)
            continue;
        rt->limits = calloc(rt->nlimits, sizeof(sl_rl_limit_t));
        rt->lconf = calloc(rt->nlimits, sizeof(*rt->lconf));
        if (!rt->limits || !rt->lconf)
            return SL_ENOMEM;
        for (uint32_t i = 0; i < rt->nlimits; i++) {
            uint32_t gid = i < cfg->nrate_limits ? i : id + (i - cfg->nrate_limits);
            rt->limits[i] = g->limit_state[gid];
            rt->lconf[i] = g->all_limits[gid];
            rt->needs_user |= rt->lconf[i]->key == SL_RLKEY_USER;
        }
        id += rc->nrate_limits;
        rt->policy = policy_header(rt->lconf, rt->nlimits, &rt->policy_len);
        if (!rt->policy)
            return SL_ENOMEM;
    }
    return 0;
}

/* ---- the access log ----
 * One JSON line per answered request, formatted in place in the worker's log buffer with
 * plain copies (snprintf cost 10,900 instructions a line, more than the rest of the
 * request): the time's second is formatted once a second per worker, numbers with
 * sl_u64_dec, strings copied whole unless they hold a byte JSON must escape. Every part
 * is bounded, so the line fits LOG_LINE_MAX and no copy is checked on its own. */

#define ID_MAX 128     /* bytes of a client's X-Request-Id logged */
#define METHOD_MAX 32  /* bytes of a method logged */
#define PATH_MAX_LOG 1024
#define LABEL_MAX 256  /* bytes of a route label logged */
#define LOG_LINE_MAX (400 + 6 * (ID_MAX + METHOD_MAX + PATH_MAX_LOG + LABEL_MAX) + 46 + 64)

#define PUT_LIT(o, lit) (memcpy(o, lit, sizeof(lit) - 1), (o) += sizeof(lit) - 1)

/* Microseconds as milliseconds with three decimals: 1234 -> 1.234. */
static inline char *put_ms(char *o, uint64_t us)
{
    o += sl_u64_dec(o, us / 1000);
    unsigned f = (unsigned)(us % 1000);
    o[0] = '.';
    o[1] = (char)('0' + f / 100);
    o[2] = (char)('0' + f / 10 % 10);
    o[3] = (char)('0' + f % 10);
    return o + 4;
}

/* A JSON string's contents (at most 6 x n bytes): quotes, backslashes, control and
 * non-ASCII bytes escaped (\u00XX: the line stays valid JSON whatever the bytes). */
static char *put_json(char *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)
            break;
        i++;
    }
    if (i) /* s may be NULL when n is 0 (a request refused before its target was read) */
        memcpy(o, s, i);
    o += i;
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[ch >> 4];
            o[5] = hex[ch & 15];
            o += 6;
        } else {
            *o++ = (char)ch;
        }
    }
    return o;
}

/* rt->label_json: the route's label escaped once, for every access-log line. */
static int label_json(sl_route_t *rt)
{
    const char *l = sl_route_label(rt);
    size_t n = strlen(l);
    if (n > LABEL_MAX)
        n = LABEL_MAX;
    rt->label_json = malloc(6 * n + 1);
    if (!rt->label_json)
        return SL_ENOMEM;
    rt->label_json_len = (size_t)(put_json(rt->label_json, l, n) - rt->label_json);
    return 0;
}

int sl_gateway_build(sl_gateway_t *g, sl_config_t *cfg, int nthreads)
{
    return sl_gateway_rebuild(g, cfg, nthreads, NULL);
}

int sl_gateway_rebuild(sl_gateway_t *g, sl_config_t *cfg, int nthreads, const sl_gateway_t *prev)
{
    memset(g, 0, sizeof(*g));
    g->cfg = cfg;
    if (sl_upstreams_build(&g->up, cfg, nthreads))
        return SL_ENOMEM;
    g->routes = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(sl_route_t));
    if (!g->routes) {
        sl_gateway_free(g);
        return SL_ENOMEM;
    }
    g->nroutes = cfg->nroutes;
    for (uint32_t i = 0; i < cfg->nroutes; i++) {
        g->routes[i].conf = &cfg->routes[i];
        g->routes[i].index = i;
        if (cfg->routes[i].stat.enabled) {
            g->routes[i].stat = calloc(1, sizeof(sl_static_route_t));
            if (!g->routes[i].stat || sl_static_route_init(g->routes[i].stat, &cfg->routes[i].stat)) {
                sl_gateway_free(g);
                return SL_EINVAL;
            }
        } else {
            g->routes[i].service = &g->up.services[cfg->routes[i].service_index];
        }
        g->routes[i].mid = sl_label_id(SL_LABELS_ROUTE, sl_route_label(&g->routes[i]));
        if (label_json(&g->routes[i])) {
            sl_gateway_free(g);
            return SL_ENOMEM;
        }
    }
    if (build_policies(g, prev))
        return SL_EINVAL;
    sl_static_metrics_init();
    if (prev && prev->cache && sl_config_cache_equal(prev->cfg, cfg) && sl_hcache_wanted(cfg)) {
        /* The store is kept, objects and all: the section that sized it is the same. */
        g->cache = prev->cache;
        g->cache_refs = prev->cache_refs;
        (*g->cache_refs)++;
    } else {
        if (sl_hcache_new(cfg, nthreads, &g->cache))
            return SL_ENOMEM;
        if (g->cache && !(g->cache_refs = calloc(1, sizeof(int))))
            return SL_ENOMEM;
        if (g->cache)
            *g->cache_refs = 1;
    }
    g->m_requests = sl_metrics_counter("http_requests_total",
                                       "HTTP requests answered, by route, method and status.",
                                       request_labels, NULL);
    g->m_duration = sl_metrics_hist("http_request_duration_seconds",
                                    "Time from a complete request head to the end of the "
                                    "response, by route.",
                                    SL_LABEL_IDS, route_labels, NULL);
    g->m_upstream = sl_metrics_hist("upstream_response_seconds",
                                    "Time from sending a request to a server to its answer's "
                                    "first byte, by server.",
                                    SL_LABEL_IDS, server_labels, NULL);
    sl_proxy_metrics_register();
    sl_metrics_collector(sl_upstreams_collect, &g->up);
    return g->m_requests && g->m_duration && g->m_upstream ? 0 : SL_ENOMEM;
}

void sl_gateway_unpublish(sl_gateway_t *g, const sl_gateway_t *next)
{
    sl_metrics_collector_remove(collect_rl, g);
    sl_metrics_collector_remove(sl_upstreams_collect, &g->up);
    if (g->cache && (!next || next->cache != g->cache))
        sl_hcache_unpublish(g->cache);
}

void sl_gateway_free(sl_gateway_t *g)
{
    for (uint32_t i = 0; g->routes && i < g->nroutes; i++) {
        free(g->routes[i].limits);
        free(g->routes[i].lconf);
        free(g->routes[i].policy);
        free(g->routes[i].label_json);
        if (g->routes[i].stat) {
            sl_static_route_free(g->routes[i].stat);
            free(g->routes[i].stat);
        }
    }
    free(g->all_limits);
    free(g->heads);
    free(g->limit_mid);
    /* Its own collectors; the cache's goes with the cache (sl_hcache_free). */
    sl_metrics_collector_remove(collect_rl, g);
    sl_metrics_collector_remove(sl_upstreams_collect, &g->up);
    if (g->rl_refs && --*g->rl_refs == 0) {
        sl_rl_free(g->rl);
        free(g->rl_refs);
    }
    sl_jwt_free(g->jwt);
    if (g->cache_refs && --*g->cache_refs == 0) {
        sl_hcache_free(g->cache);
        free(g->cache_refs);
    }
    sl_upstreams_free(&g->up);
    free(g->limit_state);
    free(g->routes);
    sl_config_free(g->cfg);
    memset(g, 0, sizeof(*g));
}

/* Host without its port, for matching. */
static sl_slice_t host_only(sl_slice_t h)
{
    if (h.len && h.p[0] == '[') { /* [v6]:port */
        const char *e = memchr(h.p, ']', h.len);
        if (e)
            h.len = (size_t)(e - h.p) + 1;
        return h;
    }
    const char *colon = memchr(h.p, ':', h.len);
    if (colon)
        h.len = (size_t)(colon - h.p);
    return h;
}

static inline uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* memcmp(a, b, n) == 0 inline: eight bytes a step (the last step overlapping), since a
 * call to memcmp per route costs more than the comparison (prefixes are short). */
static inline int prefix_eq(const char *a, const char *b, size_t n)
{
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return 0;
        return 1;
    }
    for (size_t i = 0; i + 8 < n; i += 8)
        if (load64(a + i) != load64(b + i))
            return 0;
    return load64(a + n - 8) == load64(b + n - 8);
}

const sl_route_t *sl_router_match(const sl_gateway_t *g, const sl_http_request_t *r)
{
    for (uint32_t i = 0; i < g->nroutes; i++) {
        const sl_route_conf_t *rc = g->routes[i].conf;
        if (rc->methods && !(rc->methods & SL_METHOD_BIT(r->method_id)))
            continue;
        if (r->path.len < rc->path_prefix_len ||
            !prefix_eq(r->path.p, rc->path_prefix, rc->path_prefix_len))
            continue;
        if (rc->host) {
            sl_slice_t h = host_only(r->host);
            if (h.len != strlen(rc->host) || strncasecmp(h.p, rc->host, h.len) != 0)
                continue;
        }
        return &g->routes[i];
    }
    return NULL;
}

size_t sl_gateway_state_size(void)
{
    size_t px = (sl_proxy_state_size() + 15) & ~(size_t)15;
    size_t hc = (sl_hcache_state_size() + 15) & ~(size_t)15;
    sl_proxy_set_offset(RT_STATE_SIZE);
    sl_hcache_set_offset(RT_STATE_SIZE + px);
    sl_static_set_offset(RT_STATE_SIZE + px + hc);
    return RT_STATE_SIZE + px + hc + sl_static_state_size();
}

/* Send a routed request on: through the cache when the route caches (or the method may
 * invalidate cached answers), else straight to the service. */
static inline void forward(sl_exchange_t *x, const sl_gateway_t *g, const sl_route_t *rt)
{
    /* A GET or HEAD on a route that neither caches nor dedupes never meets the cache; any
     * other method may invalidate what a caching route stored. */
    if (rt->stat) {
        sl_static_route_serve(x, rt->stat, rt->conf->path_prefix_len);
        return;
    }
    if (rt->conf->compress)
        sl_proxy_set_compress(x, rt->conf->compress, rt->conf->compress_min);
    int m = x->req.method_id;
    if (g->cache &&
        (rt->conf->cache.enabled || rt->conf->dedupe || (m != SL_M_GET && m != SL_M_HEAD))) {
        RS(x)->cached = 1; /* before: a hit is answered (and x freed) inside the call */
        if (sl_hcache_handle(g->cache, x, rt->conf, rt->service))
            return;
        RS(x)->cached = 0; /* not taken: x is still ours */
    }
    sl_proxy_start(x, rt->service);
}

static int in_cidr(const sl_cidr_t *c, int family, const uint8_t *a)
{
    if (c->family != family)
        return 0;
    uint32_t full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, a, full) != 0)
        return 0;
    return !rest || ((c->addr[full] ^ a[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static int trusted(const sl_config_t *cfg, const char *ip, size_t len)
{
    char buf[64];
    uint8_t a[16];
    if (len >= sizeof(buf))
        return 0;
    memcpy(buf, ip, len);
    buf[len] = 0;
    int fam = inet_pton(AF_INET, buf, a) == 1 ? AF_INET : inet_pton(AF_INET6, buf, a) == 1 ? AF_INET6 : 0;
    for (uint32_t i = 0; fam && i < cfg->ntrusted_proxies; i++)
        if (in_cidr(&cfg->trusted_proxies[i], fam, a))
            return 1;
    return 0;
}

/* The client's address for rate limits, as nginx's real_ip with real_ip_recursive: the
 * peer (x->conn->peer itself), unless it is a trusted proxy; then the rightmost
 * X-Forwarded-For entry that is not itself trusted. */
static sl_slice_t client_ip(const sl_exchange_t *x, const sl_config_t *cfg)
{
    const sl_conn_t *c = x->conn;
    sl_slice_t ip = {c->peer, c->peer_len};
    if (!trusted(cfg, ip.p, ip.len))
        return ip;
    const sl_http_request_t *r = &x->req;
    for (int i = (int)r->nheaders - 1; i >= 0; i--) {
        const sl_http_header_t *h = &r->headers[i];
        if (h->id != SL_H_X_FORWARDED_FOR)
            continue;
        const char *v = h->value, *e = v + h->value_len;
        while (e > v) {
            const char *s = e;
            while (s > v && s[-1] != ',')
                s--;
            const char *a = s, *b = e;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            if (b > a) {
                ip = (sl_slice_t){a, (size_t)(b - a)};
                if (!trusted(cfg, a, (size_t)(b - a)))
                    return ip;
            }
            e = s > v ? s - 1 : v;
        }
    }
    return ip;
}

/* The clock of local rate-limit decisions: the loop's time, taken once per loop iteration
 * (as nginx's ngx_current_msec): millisecond steps, which every limit tolerates (the
 * finest, N/second, has T >= 1 ms for N <= 1000 and only drains a millisecond late). */
static inline uint64_t rl_now(const sl_exchange_t *x)
{
    return uv_now(&x->conn->w->loop) * 1000000ull;
}

/* `RateLimit: "name";r=R;t=T` CRLF at o, which has room for 96 + 30 bytes (the head's
 * steps, the numbers' 8-byte stores). Returns the length (at most 80 + 45). */
static size_t ratelimit_field(char *o, const sl_rl_head_t *h, uint64_t r, uint64_t t)
{
    size_t k = h->len;
    for (size_t i = 0; i < k; i += 16)
        memcpy(o + i, h->text + i, 16);
    k += sl_u64_dec(o + k, r);
    memcpy(o + k, ";t=", 3);
    k += 3;
    k += sl_u64_dec(o + k, t);
    o[k++] = '\r';
    o[k++] = '\n';
    return k;
}

_Static_assert(sizeof(((sl_exchange_t *)0)->resp_extra) >= 96 + 30 &&
                   sizeof(((sl_rl_head_t *)0)->text) == 96,
               "resp_extra has room for ratelimit_field");

/* The request passed: count it per limit and give x->resp_extra the RateLimit field of the
 * limit closest to exhaustion (dry-run ones are not enforced, so not reported). */
static inline void report_allowed(sl_exchange_t *x, const sl_gateway_t *g, rt_state_t *rs)
{
    const sl_rl_check_t *best = NULL;
    uint64_t best_r = 0;
    rs->rl_result = 1;
    for (unsigned i = 0; i < rs->n; i++) {
        const sl_rl_check_t *c = &rs->checks[i];
        const sl_rl_limit_t *l = c->limit;
        sl_counter_add(g->m_allowed, g->limit_mid[l->id], 1);
        if (SL_UNLIKELY(l->dry_run)) {
            if (!c->allowed) {
                sl_counter_add(g->m_shadow, g->limit_mid[l->id], 1);
                rs->rl_result = 3;
            }
            continue;
        }
        /* With a burst the bucket holds more than the quota; the field says r <= q. */
        uint64_t r = c->remaining < l->count ? c->remaining : l->count;
        if (!best || r < best_r) {
            best = c;
            best_r = r;
        }
    }
    if (best)
        x->resp_extra_len = (uint32_t)ratelimit_field(x->resp_extra, &g->heads[best->limit->id],
                                                      best_r, best->reset_s);
}

/* The request is over a limit: 429 problem+json naming the violated policies, with
 * Retry-After and RateLimit for the one that frees up last. Built with plain copies:
 * printf would cost more than all the rest of a rejected request. */
static __attribute__((noinline)) void reject(sl_exchange_t *x, const sl_gateway_t *g,
                                             rt_state_t *rs)
{
    rs->rl_result = 2;
    static const char head[] = "{\"type\":\"https://iana.org/assignments/http-problem-types#"
                               "quota-exceeded\",\"title\":\"Too Many Requests\","
                               "\"status\":429,\"violated-policies\":[";
    const sl_route_t *rt = rs->rt;
    char body[600], extra[1200];
    size_t bl = sizeof(head) - 1;
    memcpy(body, head, bl);
    const sl_rl_check_t *worst = NULL;
    for (unsigned i = 0; i < rs->n; i++) {
        const sl_rl_check_t *c = &rs->checks[i];
        if (c->allowed || c->limit->dry_run)
            continue;
        sl_counter_add(g->m_rejected, g->limit_mid[c->limit->id], 1);
        const char *name = g->all_limits[c->limit->id]->name;
        size_t nl = strlen(name);
        if (bl + nl + 8 < sizeof(body)) {
            if (worst)
                body[bl++] = ',';
            body[bl++] = '"';
            memcpy(body + bl, name, nl);
            bl += nl;
            body[bl++] = '"';
        }
        if (!worst || c->retry_after_s > worst->retry_after_s)
            worst = c;
    }
    memcpy(body + bl, "]}\n", 3);
    bl += 3;
    uint64_t ra = worst ? worst->retry_after_s : 1;
    size_t el = 13;
    memcpy(extra, "Retry-After: ", 13);
    el += sl_u64_dec(extra + el, ra);
    memcpy(extra + el, "\r\n", 2);
    el += 2;
    if (rt->policy_len < sizeof(extra) - el - 140) {
        memcpy(extra + el, rt->policy, rt->policy_len);
        el += rt->policy_len;
    }
    if (worst)
        el += ratelimit_field(extra + el, &g->heads[worst->limit->id], 0, ra);
    extra[el] = 0;
    x->route = (int)rt->index;
    sl_conn_respond(x, 429, "application/problem+json", body, bl, extra);
}

/* Act on a decision over rs->checks: ok = 1 let the request on (x->resp_extra gets the
 * RateLimit field) and return 0; ok = 0 answer 429 and return 1. */
static inline int apply_decision(sl_exchange_t *x, const sl_gateway_t *g, rt_state_t *rs, int ok)
{
    if (SL_LIKELY(ok)) {
        report_allowed(x, g, rs);
        return 0;
    }
    reject(x, g, rs);
    return 1;
}

/* Shared state unavailable: on_failure decides. fail_open: the local limiter decides
 * (counted in ratelimit_redis_fallbacks_total); fail_closed: 503. */
static int decide_without_redis(sl_exchange_t *x, const sl_gateway_t *g, rt_state_t *rs)
{
    if (g->cfg->redis.on_failure == SL_FAIL_CLOSED) {
        rs->rl_result = 4;
        x->route = (int)rs->rt->index;
        sl_conn_error(x, 503, "rate limit store unavailable");
        return 1;
    }
    sl_counter_inc(g->m_fallback);
    return apply_decision(x, g, rs, sl_rl_decide(g->rl, rs->checks, rs->n, rl_now(x)));
}

static void pending_abort(sl_exchange_t *x)
{
    rt_state_t *rs = RS(x);
    if (rs->pending) {
        sl_rl_redis_cancel(x->conn->w->rl_redis, rs->handle);
        rs->pending = 0;
    }
}

static const sl_exchange_ops_t pending_ops = {.abort = pending_abort};

/* The Redis decision arrived (or failed): answer or go on to the service. */
static void redis_decided(void *arg, int result)
{
    sl_exchange_t *x = arg;
    rt_state_t *rs = RS(x);
    const sl_gateway_t *g = x->conn->w->gw;
    rs->pending = 0;
    x->ops = NULL;
    int answered = result < 0 ? decide_without_redis(x, g, rs) : apply_decision(x, g, rs, result);
    if (answered)
        return;
    x->route = (int)rs->rt->index;
    /* The proxy may answer at once (503: no server up) and so free x, or a pipelined
     * request may already reuse its memory: resume only the exchange we paused. */
    sl_conn_t *c = x->conn;
    uint64_t id = x->id;
    forward(x, g, rs->rt);
    if (sl_conn_live(c, x, id))
        sl_conn_resume(x); /* the body was held while the decision was out */
}

/* Identity, require_auth and rate limits for a routed request. Returns 1 when the
 * request was answered here (401, 429, 503) or will be once a shared decision arrives,
 * else 0 (x->resp_extra may carry RateLimit). */
static int run_policies(sl_exchange_t *x, const sl_gateway_t *g, const sl_route_t *rt)
{
    char sub[160];
    int sublen = 0;
    if (rt->needs_user && g->jwt) {
        const sl_http_request_t *r = &x->req;
        const sl_http_header_t *h = sl_http1_find(r->headers, r->nheaders, SL_H_AUTHORIZATION);
        size_t tl = 0;
        const char *tok = h ? sl_jwt_bearer(h->value, h->value_len, &tl) : NULL;
        if (tok) {
            int n = sl_jwt_verify(g->jwt, tok, tl, (uint64_t)time(NULL), sub, sizeof(sub));
            sublen = n > 0 ? n : 0;
        }
        sl_counter_add(g->m_auth, sublen ? 0 : tok ? 1 : 2, 1);
        if (rt->conf->require_auth && !sublen) {
            static const char body[] =
                "{\"error\":\"missing or invalid token\",\"status\":401}\n";
            x->route = (int)rt->index;
            sl_conn_respond(x, 401, "application/json", body, sizeof(body) - 1,
                            "WWW-Authenticate: Bearer\r\n");
            return 1;
        }
    }
    if (!rt->nlimits)
        return 0;
    rt_state_t *rs = RS(x);
    rs->rt = rt;
    uint64_t iph = x->conn->peer_hash;
    if (g->cfg->ntrusted_proxies) {
        sl_slice_t ip = client_ip(x, g->cfg);
        if (ip.p != x->conn->peer)
            iph = sl_hash_bytes(ip.p, ip.len);
    }
    unsigned n = 0;
    for (uint32_t i = 0; i < rt->nlimits && n < 16; i++) {
        const sl_limit_conf_t *l = rt->lconf[i];
        uint64_t key = iph;
        if (l->key == SL_RLKEY_USER && sublen) {
            key = sl_hash_bytes(sub, (size_t)sublen) ^ 0x5bd1e9955bd1e995ull;
        } else if (l->key == SL_RLKEY_ROUTE) {
            key = 0x9E3779B97F4A7C15ull * (rt->index + 1);
        } else if (l->key == SL_RLKEY_HEADER) {
            const sl_http_request_t *r = &x->req;
            size_t nl = strlen(l->key_name);
            const sl_http_header_t *h = NULL;
            for (unsigned k = 0; k < r->nheaders && !h; k++)
                if (r->headers[k].name_len == nl &&
                    strncasecmp(r->headers[k].name, l->key_name, nl) == 0)
                    h = &r->headers[k];
            if (!h)
                continue; /* no such header: this limit does not apply */
            key = sl_hash_bytes(h->value, h->value_len);
        }
        rs->checks[n].limit = &rt->limits[i];
        rs->checks[n].key = key;
        n++;
    }
    rs->n = n;
    if (!n)
        return 0;
    sl_rl_redis_t *shared = x->conn->w->rl_redis;
    if (!shared)
        return apply_decision(x, g, rs, sl_rl_decide(g->rl, rs->checks, n, rl_now(x)));
    if (sl_rl_redis_decide(shared, rs->checks, n, redis_decided, x, &rs->handle) != 0)
        return decide_without_redis(x, g, rs);
    rs->pending = 1;
    x->ops = &pending_ops;
    x->route = (int)rt->index;
    sl_conn_pause(x); /* no body is read until we know where it goes */
    return 1;
}

void sl_gateway_handle(sl_exchange_t *x)
{
    sl_worker_t *w = x->conn->w;
    const sl_gateway_t *g = w->gw;
    w->inflight++;
    sl_proxy_reset(x);
    RS(x)->pending = 0;
    RS(x)->rl_result = 0;
    RS(x)->cached = 0;
    const sl_route_t *rt = sl_router_match(g, &x->req);
    if (!rt) {
        sl_conn_error(x, 404, "no route matches");
        return;
    }
    if ((rt->nlimits || rt->needs_user) && run_policies(x, g, rt))
        return;
    x->route = (int)rt->index;
    if (x->req.method_id == SL_M_CONNECT) {
        sl_conn_error(x, 501, "CONNECT is not supported");
        return;
    }
    forward(x, g, rt);
}

/* sv and up_us: the upstream server that answered (NULL: none) and its time to first byte. */
static void access_log(sl_exchange_t *x, const sl_gateway_t *g, uint64_t dur_us,
                       const sl_server_t *sv, uint64_t up_us)
{
    /* two hex digits per byte */
    static const char hex2[513] =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    sl_worker_t *w = x->conn->w;
    char *line = sl_accesslog_reserve(&w->alog, LOG_LINE_MAX), *o = line;
    if (!line)
        return;
    const sl_http_request_t *r = &x->req;
    uint64_t wall = sl_worker_wall_ms(w);
    PUT_LIT(o, "{\"time\":\"");
    memcpy(o, sl_worker_iso(w, wall), 20);
    unsigned ms = (unsigned)(wall % 1000);
    o[20] = (char)('0' + ms / 100);
    o[21] = (char)('0' + ms / 10 % 10);
    o[22] = (char)('0' + ms % 10);
    o += 23;
    PUT_LIT(o, "Z\",\"request_id\":\"");
    if (x->reqid) {
        for (int i = 0; i < 8; i++)
            memcpy(o + 2 * i, hex2 + 2 * ((x->reqid >> (56 - 8 * i)) & 0xff), 2);
        o += 16;
    } else {
        const sl_http_header_t *h = sl_http1_find(r->headers, r->nheaders, SL_H_X_REQUEST_ID);
        if (h)
            o = put_json(o, h->value, h->value_len < ID_MAX ? h->value_len : ID_MAX);
    }
    PUT_LIT(o, "\",\"client\":\"");
    memcpy(o, x->conn->peer, sizeof(x->conn->peer)); /* whole: a fixed-size copy is moves */
    o += x->conn->peer_len;
    PUT_LIT(o, "\",\"method\":\"");
    if (r->method_id > SL_M_OTHER && r->method_id < SL_M__COUNT) {
        static const char names[SL_M__COUNT][8] = {"", "GET", "HEAD", "POST", "PUT",
                                                   "DELETE", "PATCH", "OPTIONS", "CONNECT",
                                                   "TRACE"};
        memcpy(o, names[r->method_id], 8);
        o += r->method.len;
    } else if (r->method.p) { /* a token: nothing to escape, but bounded */
        o = put_json(o, r->method.p, r->method.len < METHOD_MAX ? r->method.len : METHOD_MAX);
    }
    PUT_LIT(o, "\",\"path\":\"");
    o = put_json(o, r->target.p, r->target.len < PATH_MAX_LOG ? r->target.len : PATH_MAX_LOG);
    PUT_LIT(o, "\",\"status\":");
    if (x->status >= 100 && x->status <= 999) {
        o[0] = (char)('0' + x->status / 100);
        o[1] = (char)('0' + x->status / 10 % 10);
        o[2] = (char)('0' + x->status % 10);
        o += 3;
    } else {
        o += sl_u64_dec(o, (uint64_t)(x->status > 0 ? x->status : 0));
    }
    PUT_LIT(o, ",\"bytes\":");
    o += sl_u64_dec(o, x->bytes_out);
    PUT_LIT(o, ",\"duration_ms\":");
    o = put_ms(o, dur_us);
    PUT_LIT(o, ",\"route\":\"");
    if (x->route >= 0) {
        const sl_route_t *rt = &g->routes[x->route];
        memcpy(o, rt->label_json, rt->label_json_len);
        o += rt->label_json_len;
    }
    PUT_LIT(o, "\",\"upstream\":\"");
    if (sv) {
        size_t al = strnlen(sv->conf.addr.text, sizeof(sv->conf.addr.text));
        memcpy(o, sv->conf.addr.text, al);
        o += al;
    }
    PUT_LIT(o, "\",\"upstream_ms\":");
    o = put_ms(o, up_us);
    int rl = RS(x)->rl_result;
    if (rl) {
        static const struct {
            const char *s;
            size_t n;
        } words[] = {{"", 0},
                     {",\"ratelimit\":\"pass\"", 19},
                     {",\"ratelimit\":\"reject\"", 21},
                     {",\"ratelimit\":\"dry_run_reject\"", 29},
                     {",\"ratelimit\":\"unavailable\"", 26}};
        if (rl > 0 && rl < 5) {
            memcpy(o, words[rl].s, words[rl].n);
            o += words[rl].n;
        }
    }
    int cr = x->route >= 0 && RS(x)->cached ? sl_hcache_result(x) : SL_HC_NONE;
    if (cr != SL_HC_NONE) {
        const char *name = sl_hcache_result_name(cr);
        size_t nl = strlen(name);
        PUT_LIT(o, ",\"cache\":\"");
        memcpy(o, name, nl);
        o += nl;
        *o++ = '"';
    }
    *o++ = '}';
    sl_accesslog_commit(&w->alog, (size_t)(o - line));
}

void sl_gateway_done(sl_exchange_t *x)
{
    sl_worker_t *w = x->conn->w;
    const sl_gateway_t *g = w->gw;
    uint64_t dur_us = x->start_ns ? (uv_hrtime() - x->start_ns) / 1000 : 0;
    if (x->dispatched)
        w->inflight--;
    const sl_server_t *sv = NULL;
    uint64_t up_us = 0;
    if (x->route >= 0 && g->routes[x->route].service) {
        if (RS(x)->cached)
            sl_hcache_done(x);
        sl_proxy_done(x);
        sv = sl_proxy_server(x);
        up_us = sv ? sl_proxy_upstream_us(x) : 0;
        if (up_us)
            sl_hist_observe(g->m_upstream, sv->mid, up_us);
    }
    uint64_t route = x->route >= 0 ? (uint64_t)g->routes[x->route].mid : 0;
    sl_counter_add(g->m_requests,
                   route << 24 | (uint64_t)x->req.method_id << 16 | (uint64_t)(x->status & 0xffff),
                   1);
    sl_hist_observe(g->m_duration, (uint32_t)route, dur_us);
    if (sl_accesslog_enabled())
        access_log(x, g, dur_us, sv, up_us);
}
