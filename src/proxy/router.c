/* router.c - routes, the request handler, per-request metrics and access log; see router.h. */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../core/log.h"
#include "proxy.h"

static const char *method_names[SL_M__COUNT] = {"OTHER", "GET",   "HEAD",    "POST",    "PUT",
                                                "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"};

/* Label key of http_requests_total: route+1 (0 = none) << 24 | method << 16 | status. */
static size_t request_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    const sl_gateway_t *g = arg;
    uint32_t route = (uint32_t)(key >> 24);
    unsigned method = (unsigned)(key >> 16) & 0xff, status = (unsigned)key & 0xffff;
    const char *rname = route && route <= g->nroutes ? g->routes[route - 1].conf->path_prefix
                                                     : "unmatched";
    int n = snprintf(out, cap, "route=\"%s\",method=\"%s\",status=\"%u\"", rname,
                     method < SL_M__COUNT ? method_names[method] : "OTHER", status);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t route_labels(uint64_t i, char *out, size_t cap, void *arg)
{
    const sl_gateway_t *g = arg;
    int n = snprintf(out, cap, "route=\"%s\"",
                     i < g->nroutes ? g->routes[i].conf->path_prefix : "unmatched");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int sl_gateway_build(sl_gateway_t *g, sl_config_t *cfg, int nthreads)
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
        g->routes[i].service = &g->up.services[cfg->routes[i].service_index];
    }
    g->m_requests = sl_metrics_counter("http_requests_total",
                                       "HTTP requests answered, by route, method and status.",
                                       request_labels, g);
    g->m_duration = sl_metrics_hist("http_request_duration_seconds",
                                    "Time from a complete request head to the end of the "
                                    "response, by route.",
                                    g->nroutes + 1, route_labels, g);
    sl_proxy_metrics_register();
    sl_metrics_collector(sl_upstreams_collect, &g->up);
    return g->m_requests && g->m_duration ? 0 : SL_ENOMEM;
}

void sl_gateway_free(sl_gateway_t *g)
{
    sl_upstreams_free(&g->up);
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

const sl_route_t *sl_router_match(const sl_gateway_t *g, const sl_http_request_t *r)
{
    for (uint32_t i = 0; i < g->nroutes; i++) {
        const sl_route_conf_t *rc = g->routes[i].conf;
        if (rc->methods && !(rc->methods & SL_METHOD_BIT(r->method_id)))
            continue;
        if (r->path.len < rc->path_prefix_len ||
            memcmp(r->path.p, rc->path_prefix, rc->path_prefix_len) != 0)
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
    return sl_proxy_state_size();
}

void sl_gateway_handle(sl_exchange_t *x)
{
    sl_worker_t *w = x->conn->w;
    const sl_gateway_t *g = w->gw;
    w->inflight++;
    const sl_route_t *rt = sl_router_match(g, &x->req);
    if (!rt) {
        sl_conn_error(x, 404, "no route matches");
        return;
    }
    x->route = (int)rt->index;
    if (x->req.method_id == SL_M_CONNECT) {
        sl_conn_error(x, 501, "CONNECT is not supported");
        return;
    }
    sl_proxy_start(x, rt->service);
}

/* JSON string body: escapes quotes, backslashes and control bytes. */
static size_t json_escape(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 6 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[ch >> 4];
            out[o + 5] = hex[ch & 15];
            o += 6;
        } else {
            out[o++] = (char)ch;
        }
    }
    return o;
}

static void access_log(sl_exchange_t *x, const sl_gateway_t *g, uint64_t dur_us)
{
    char line[2048], path[1024], id[160];
    const sl_http_request_t *r = &x->req;
    size_t plen = json_escape(path, sizeof(path), r->target.p, r->target.len);
    size_t idlen;
    if (x->reqid) {
        idlen = (size_t)snprintf(id, sizeof(id), "%016llx", (unsigned long long)x->reqid);
    } else {
        const sl_http_header_t *h = sl_http1_find(r->headers, r->nheaders, SL_H_X_REQUEST_ID);
        idlen = h ? json_escape(id, sizeof(id), h->value, h->value_len) : 0;
    }
    const sl_server_t *sv = x->route >= 0 ? sl_proxy_server(x) : NULL;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(
        line, sizeof(line),
        "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"request_id\":\"%.*s\","
        "\"client\":\"%s\",\"method\":\"%.*s\",\"path\":\"%.*s\",\"status\":%d,"
        "\"bytes\":%llu,\"duration_ms\":%.3f,\"route\":\"%s\",\"upstream\":\"%s\","
        "\"upstream_ms\":%.3f}",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
        ts.tv_nsec / 1000000, (int)idlen, id, x->conn->peer, (int)r->method.len,
        r->method.p ? r->method.p : "", (int)plen, path, x->status,
        (unsigned long long)x->bytes_out, dur_us / 1000.0,
        x->route >= 0 ? g->routes[x->route].conf->path_prefix : "",
        sv ? sv->conf.addr.text : "", sv ? sl_proxy_upstream_us(x) / 1000.0 : 0.0);
    if (n > 0)
        sl_accesslog_append(&x->conn->w->alog, line, (size_t)n < sizeof(line) ? (size_t)n
                                                                               : sizeof(line) - 1);
}

void sl_gateway_done(sl_exchange_t *x)
{
    sl_worker_t *w = x->conn->w;
    const sl_gateway_t *g = w->gw;
    uint64_t dur_us = x->start_ns ? (uv_hrtime() - x->start_ns) / 1000 : 0;
    if (x->dispatched)
        w->inflight--;
    if (x->route >= 0 && g->routes[x->route].service)
        sl_proxy_done(x);
    uint64_t route = x->route >= 0 ? (uint64_t)x->route + 1 : 0;
    sl_counter_add(g->m_requests,
                   route << 24 | (uint64_t)x->req.method_id << 16 | (uint64_t)(x->status & 0xffff),
                   1);
    sl_hist_observe(g->m_duration, x->route >= 0 ? (uint32_t)x->route : g->nroutes, dur_us);
    if (sl_accesslog_enabled())
        access_log(x, g, dur_us);
}
