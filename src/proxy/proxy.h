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

/* A tap on the upstream answer of one exchange (the cache's fill). Every hook runs on
 * the exchange's loop. */
typedef struct sl_proxy_tap {
    /* The final response head arrived, before anything of it goes to the client. Return
     * SL_TAP_STREAM to send it on as usual, SL_TAP_SWALLOW to keep it from the client: the
     * body is still read (and given to body) but not sent, and end must answer x. */
    int (*head)(sl_exchange_t *x, const sl_http_response_t *r);
    /* Decoded body bytes of the response (valid during the call). */
    void (*body)(sl_exchange_t *x, const char *p, size_t n);
    /* Called exactly once if the tap was set when the exchange started: status 0 after a
     * complete response, else the error status the proxy would answer (502, 504, 503), -1
     * when the answer was cut after bytes of it went to the client, -2 when the client went
     * away (x is being aborted: end must not answer it).
     * On a complete swallowed response, or a failure before any byte went to the client,
     * end returns 1 if it answered x itself (the proxy then does not), else 0. */
    int (*end)(sl_exchange_t *x, int status);
} sl_proxy_tap_t;

enum { SL_TAP_STREAM = 0, SL_TAP_SWALLOW = 1 };

/* Before sl_proxy_start: install a tap, and header lines (each ending in CRLF; the memory
 * must live as long as x) to add to the upstream request. strip_conditional drops the
 * client's If-None-Match / If-Modified-Since / If-Match / If-Unmodified-Since / If-Range,
 * so a fill gets the whole answer. */
void sl_proxy_set_tap(sl_exchange_t *x, const sl_proxy_tap_t *tap, const char *up_extra,
                      size_t up_extra_len, int strip_conditional);

/* Register the proxy's metrics (start-up, before the workers start). */
void sl_proxy_metrics_register(void);

/* Compress the answer of x with one of codings (SL_COMPRESS_HAVE_* bits; 0: never) when
 * the client accepts it and the answer is eligible (compress.h) and at least min_length
 * bytes (by Content-Length; unknown lengths qualify). After sl_proxy_reset, before
 * sl_proxy_start. */
void sl_proxy_set_compress(sl_exchange_t *x, unsigned codings, uint64_t min_length);
/* The codings set on x (and *min_length), to pass on to a refresh of its answer. */
unsigned sl_proxy_compress_codings(const sl_exchange_t *x, uint64_t *min_length);

#endif
