/* proxy.h - forwarding one exchange to a server of a service and streaming the answer.
 * Owns: the upstream request (re-serialised: request line, end-to-end headers, proxy
 * headers, framing of its own), the upstream response (parsed, hop-by-hop fields
 * dropped, re-framed for the client), timeouts, 502/504 answers, WebSocket tunnels.
 * It never forwards bytes whose framing it did not determine (DESIGN §6).
 * Worker loop only; never blocks. */
#ifndef SL_PROXY_H
#define SL_PROXY_H

#include "../http/conn.h"
#include "upstream.h"

/* Per-exchange proxy state size, and its offset in x->hdata (set once at start-up). */
size_t sl_proxy_state_size(void);
void sl_proxy_set_offset(size_t off);

/* Clear x's proxy state; the handler calls it first thing for every exchange (hdata is
 * not cleared by conn), so sl_proxy_done can always read it. */
void sl_proxy_reset(sl_exchange_t *x);

/* Forward x to svc. x->route must be set. Always ends x eventually (answer or abort). */
void sl_proxy_start(sl_exchange_t *x, sl_service_t *svc);

/* Server the exchange was sent to (NULL if none yet), for the access log. */
const sl_server_t *sl_proxy_server(const sl_exchange_t *x);
/* Time from sending to the first response byte, microseconds (0 if none). */
uint64_t sl_proxy_upstream_us(const sl_exchange_t *x);

/* The exchange is over (the gateway's on_done): release what it counted in shared
 * state (service in-flight and retry budget, a claimed trial request). */
void sl_proxy_done(sl_exchange_t *x);

/* Register the proxy's metrics (start-up, before the workers start). */
void sl_proxy_metrics_register(void);

#endif
