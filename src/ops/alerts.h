/* alerts.h - alert rules evaluated by sluice itself, so a single machine is warned without
 * a Prometheus, and one with Alertmanager receivers can point a webhook at them.
 * Owns: the rule set (built-in rules + the configuration's), each rule's state (inactive ->
 * pending -> firing -> resolved, as Prometheus's `for:`), and the webhook notifier (one
 * Alertmanager-format POST per firing and per resolved, queued, retried, never blocking).
 * Control thread only: evaluated after each sample of ops/sampler.c. */
#ifndef SL_ALERTS_H
#define SL_ALERTS_H

#include <jansson.h>
#include <uv.h>

#include "../core/config.h"
#include "../core/metrics.h"
#include "sampler.h"

enum sl_alert_state { SL_ALERT_INACTIVE, SL_ALERT_PENDING, SL_ALERT_FIRING, SL_ALERT_RESOLVED };

typedef struct sl_alert {
    char name[72], severity[72];
    char *summary; /* owned */
    char *expr;    /* owned: the rule as written */
    sl_alert_expr_t e;
    int route, service; /* selector as an index, or -1 */
    uint64_t for_ms, window_ms;
    int state;                  /* enum sl_alert_state */
    int has_value;              /* the signal had data at the last evaluation */
    double value;               /* its value then */
    uint64_t pending_since_ms;  /* monotonic, while pending or firing */
    uint64_t active_unix_ms;    /* wall clock: pending since */
    uint64_t fired_unix_ms, resolved_unix_ms;
    uint64_t fired_total;
} sl_alert_t;

typedef struct sl_alerts sl_alerts_t;

/* The rules of cfg (with the built-in ones unless alerts.defaults is false), for gateway g,
 * notifying cfg->alerts.webhook (if set) from loop. instance labels the notifications (the
 * admin address). NULL when out of memory. */
sl_alerts_t *sl_alerts_new(uv_loop_t *loop, const sl_config_t *cfg, const sl_gateway_t *g,
                           const char *instance);
/* Stop the notifier (queued notifications are dropped) and free; safe with NULL. The
 * memory goes once libuv has closed the handles (run the loop after). */
void sl_alerts_close(sl_alerts_t *al);

/* Routes the rules select (track[i] = 1), for the sampler: nroutes bytes. */
void sl_alerts_tracked_routes(const sl_alerts_t *al, uint8_t *track, uint32_t nroutes);

/* Evaluate every rule against the samples at now_ms (monotonic) / unix_ms (wall clock). */
void sl_alerts_eval(sl_alerts_t *al, const sl_sampler_t *s, uint64_t now_ms, uint64_t unix_ms);

/* The rules and their states, for GET /alerts and the status page. */
json_t *sl_alerts_json(const sl_alerts_t *al);
/* sluice_alerts{alertname,severity,state} and notification counters. */
void sl_alerts_collect(sl_textbuf_t *t, void *arg);

/* For tests: the rules. */
uint32_t sl_alerts_count(const sl_alerts_t *al);
const sl_alert_t *sl_alerts_get(const sl_alerts_t *al, uint32_t i);
const char *sl_alert_state_name(int state);

#endif
