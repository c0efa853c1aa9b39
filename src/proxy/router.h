/* router.h - the gateway: route table, services, and the request handler conn is given.
 * Owns: matching a request to a route (first match wins: host, path prefix, method),
 * running it through the route's target (today: proxy to a service), the per-request
 * metrics and the access log line. Built on the control thread, then read-only for
 * the workers that serve with it. */
#ifndef SL_ROUTER_H
#define SL_ROUTER_H

#include "../core/config.h"
#include "../core/metrics.h"
#include "../http/conn.h"
#include "upstream.h"

typedef struct sl_route {
    const sl_route_conf_t *conf;
    sl_service_t *service;
    uint32_t index;
} sl_route_t;

typedef struct sl_gateway {
    sl_config_t *cfg;
    sl_upstreams_t up;
    sl_route_t *routes;
    uint32_t nroutes;
    sl_counter_t *m_requests;  /* http_requests_total{route,method,status} */
    sl_hist_t *m_duration;     /* http_request_duration_seconds{route} */
} sl_gateway_t;

/* Build from cfg (owned by g afterwards) for nthreads loop threads, registering the
 * request metrics. 0 or SL_ENOMEM. */
int sl_gateway_build(sl_gateway_t *g, sl_config_t *cfg, int nthreads);
void sl_gateway_free(sl_gateway_t *g);

/* First route matching the request, or NULL. */
const sl_route_t *sl_router_match(const sl_gateway_t *g, const sl_http_request_t *r);

/* The conn handler and its on_done hook; the gateway is x->conn->w->gw. */
void sl_gateway_handle(sl_exchange_t *x);
void sl_gateway_done(sl_exchange_t *x);
size_t sl_gateway_state_size(void);

#endif
