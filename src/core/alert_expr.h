/* alert_expr.h - the alert rule language: one signal, an optional selector, a comparison
 * and a number, e.g. `error_rate > 0.01`, `latency_p95{route="blog"} > 2`,
 * `upstream_pool_utilization{service="api"} >= 0.9`. Small enough to read; parsed when the
 * configuration is loaded (so a bad rule is a config error with its line and column), and
 * evaluated by ops/alerts.c over the samples of ops/sampler.c.
 * Also owns the built-in rules: the seed's thresholds, on unless `alerts.defaults: false`. */
#ifndef SL_ALERT_EXPR_H
#define SL_ALERT_EXPR_H

#include <stddef.h>
#include <stdint.h>

enum sl_signal {
    SL_SIG_ERROR_RATE,       /* 5xx answers / all answers over the window (route) */
    SL_SIG_REQUEST_RATE,     /* answers per second over the window (route) */
    SL_SIG_LATENCY_P50,      /* seconds, from the duration histogram over the window (route) */
    SL_SIG_LATENCY_P95,
    SL_SIG_LATENCY_P99,
    SL_SIG_RATELIMITED_RATIO, /* 429s from rate limits / all answers over the window */
    SL_SIG_CACHE_HIT_RATIO,  /* cache hits / cache lookups over the window (route) */
    SL_SIG_CPU_UTILIZATION,  /* host CPU busy / total over the window, 0..1 */
    SL_SIG_MEMORY_UTILIZATION, /* host 1 - MemAvailable / MemTotal, now, 0..1 */
    SL_SIG_POOL_UTILIZATION, /* upstream connections busy / keep-alive capacity, now (service; max
                                over services without one) */
    SL_SIG__COUNT
};

enum sl_alert_op { SL_OP_GT, SL_OP_GE, SL_OP_LT, SL_OP_LE };

/* What a selector in braces names, if anything. */
enum sl_selector { SL_SEL_NONE, SL_SEL_ROUTE, SL_SEL_SERVICE };

#define SL_ALERT_SEL_MAX 128

typedef struct sl_alert_expr {
    int signal; /* enum sl_signal */
    int op;     /* enum sl_alert_op */
    double threshold;
    int selector;                /* enum sl_selector */
    char sel[SL_ALERT_SEL_MAX];  /* its value */
} sl_alert_expr_t;

/* Parse s[0..n). 0 and *out, or -1 with a message in err and the byte offset of the
 * problem in *errpos. Never reads past n; any bytes. */
int sl_alert_expr_parse(const char *s, size_t n, sl_alert_expr_t *out, char *err, size_t errcap,
                        size_t *errpos);

const char *sl_signal_name(int signal);
const char *sl_alert_op_name(int op);
/* The selector a signal accepts (SL_SEL_NONE: none). */
int sl_signal_selector(int signal);
/* Default rate window of a signal, ms (a rule's `window:` overrides it). */
uint64_t sl_signal_default_window_ms(int signal);
/* Does v meet the expression's comparison? */
int sl_alert_compare(const sl_alert_expr_t *e, double v);

/* The built-in rules: the seed's thresholds. */
typedef struct sl_alert_builtin {
    const char *name, *expr, *severity, *summary;
    uint64_t for_ms, window_ms;
} sl_alert_builtin_t;
extern const sl_alert_builtin_t sl_alert_builtins[];
extern const size_t sl_alert_nbuiltins;

#endif
