/* alert_expr.c - parsing the alert rule language; see alert_expr.h. */
#include "alert_expr.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int selector;
    uint64_t window_ms;
} signals[SL_SIG__COUNT] = {
    [SL_SIG_ERROR_RATE] = {"error_rate", SL_SEL_ROUTE, 300000},
    [SL_SIG_REQUEST_RATE] = {"request_rate", SL_SEL_ROUTE, 60000},
    [SL_SIG_LATENCY_P50] = {"latency_p50", SL_SEL_ROUTE, 300000},
    [SL_SIG_LATENCY_P95] = {"latency_p95", SL_SEL_ROUTE, 300000},
    [SL_SIG_LATENCY_P99] = {"latency_p99", SL_SEL_ROUTE, 300000},
    [SL_SIG_RATELIMITED_RATIO] = {"ratelimited_ratio", SL_SEL_NONE, 300000},
    [SL_SIG_CACHE_HIT_RATIO] = {"cache_hit_ratio", SL_SEL_ROUTE, 600000},
    [SL_SIG_CPU_UTILIZATION] = {"cpu_utilization", SL_SEL_NONE, 60000},
    [SL_SIG_MEMORY_UTILIZATION] = {"memory_utilization", SL_SEL_NONE, 60000},
    [SL_SIG_POOL_UTILIZATION] = {"upstream_pool_utilization", SL_SEL_SERVICE, 60000},
};

const sl_alert_builtin_t sl_alert_builtins[] = {
    {"HighErrorRate", "error_rate > 0.01", "critical", "More than 1% of answers are 5xx",
     60000, 300000},
    {"HighLatencyP95", "latency_p95 > 2", "warning", "95th percentile latency above 2 s",
     300000, 300000},
    {"LowCacheHitRate", "cache_hit_ratio < 0.8", "warning", "Cache hit ratio below 80%", 600000,
     600000},
    {"HighCPU", "cpu_utilization > 0.8", "warning", "Host CPU above 80%", 300000, 60000},
    {"HighMemory", "memory_utilization > 0.9", "warning", "Host memory above 90%", 300000,
     60000},
    {"UpstreamPoolExhausted", "upstream_pool_utilization > 0.9", "warning",
     "Upstream connections above 90% of the keep-alive pool", 300000, 60000},
};
const size_t sl_alert_nbuiltins = sizeof(sl_alert_builtins) / sizeof(sl_alert_builtins[0]);

const char *sl_signal_name(int signal)
{
    return signal >= 0 && signal < SL_SIG__COUNT ? signals[signal].name : "?";
}

const char *sl_alert_op_name(int op)
{
    static const char *names[] = {">", ">=", "<", "<="};
    return op >= 0 && op < 4 ? names[op] : "?";
}

int sl_signal_selector(int signal)
{
    return signal >= 0 && signal < SL_SIG__COUNT ? signals[signal].selector : SL_SEL_NONE;
}

uint64_t sl_signal_default_window_ms(int signal)
{
    return signal >= 0 && signal < SL_SIG__COUNT ? signals[signal].window_ms : 60000;
}

int sl_alert_compare(const sl_alert_expr_t *e, double v)
{
    switch (e->op) {
    case SL_OP_GT:
        return v > e->threshold;
    case SL_OP_GE:
        return v >= e->threshold;
    case SL_OP_LT:
        return v < e->threshold;
    default:
        return v <= e->threshold;
    }
}

struct cur {
    const char *s;
    size_t n, i;
    char *err;
    size_t errcap, *errpos;
};

static int fail(struct cur *c, const char *msg)
{
    snprintf(c->err, c->errcap, "%s", msg);
    if (c->errpos)
        *c->errpos = c->i;
    return -1;
}

static void skip_ws(struct cur *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
        c->i++;
}

static int is_ident(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* A plain decimal number: digits, an optional fraction, an optional exponent. */
static int number(struct cur *c, double *out)
{
    char buf[64];
    size_t start = c->i, k = 0;
    if (c->i < c->n && (c->s[c->i] == '-' || c->s[c->i] == '+'))
        buf[k++] = c->s[c->i++];
    size_t digits = 0;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9' && k < sizeof(buf) - 1) {
        buf[k++] = c->s[c->i++];
        digits++;
    }
    if (c->i < c->n && c->s[c->i] == '.' && k < sizeof(buf) - 1) {
        buf[k++] = c->s[c->i++];
        while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9' && k < sizeof(buf) - 1) {
            buf[k++] = c->s[c->i++];
            digits++;
        }
    }
    if (!digits) {
        c->i = start;
        return fail(c, "expected a number");
    }
    if (c->i < c->n && (c->s[c->i] == 'e' || c->s[c->i] == 'E') && k < sizeof(buf) - 4) {
        buf[k++] = c->s[c->i++];
        if (c->i < c->n && (c->s[c->i] == '-' || c->s[c->i] == '+'))
            buf[k++] = c->s[c->i++];
        size_t ed = 0;
        while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9' && k < sizeof(buf) - 1) {
            buf[k++] = c->s[c->i++];
            ed++;
        }
        if (!ed)
            return fail(c, "expected digits in the exponent");
    }
    if (k >= sizeof(buf) - 1)
        return fail(c, "number too long");
    buf[k] = 0;
    double v;
    if (sscanf(buf, "%lf", &v) != 1 || !isfinite(v))
        return fail(c, "not a finite number");
    *out = v;
    return 0;
}

int sl_alert_expr_parse(const char *s, size_t n, sl_alert_expr_t *out, char *err, size_t errcap,
                        size_t *errpos)
{
    struct cur c = {s, n, 0, err, errcap, errpos};
    memset(out, 0, sizeof(*out));
    skip_ws(&c);
    size_t start = c.i;
    while (c.i < n && is_ident(s[c.i]))
        c.i++;
    size_t len = c.i - start;
    out->signal = -1;
    for (int k = 0; k < SL_SIG__COUNT; k++)
        if (strlen(signals[k].name) == len && memcmp(signals[k].name, s + start, len) == 0)
            out->signal = k;
    if (out->signal < 0) {
        c.i = start;
        return fail(&c, len ? "unknown signal (error_rate, request_rate, latency_p50|p95|p99, "
                              "ratelimited_ratio, cache_hit_ratio, cpu_utilization, "
                              "memory_utilization, upstream_pool_utilization)"
                            : "expected a signal name");
    }
    skip_ws(&c);
    if (c.i < n && s[c.i] == '{') {
        c.i++;
        skip_ws(&c);
        size_t ks = c.i;
        while (c.i < n && is_ident(s[c.i]))
            c.i++;
        size_t kl = c.i - ks;
        int want = signals[out->signal].selector;
        if (kl == 5 && memcmp(s + ks, "route", 5) == 0)
            out->selector = SL_SEL_ROUTE;
        else if (kl == 7 && memcmp(s + ks, "service", 7) == 0)
            out->selector = SL_SEL_SERVICE;
        else {
            c.i = ks;
            return fail(&c, "expected route or service in the selector");
        }
        if (out->selector != want) {
            c.i = ks;
            return fail(&c, want == SL_SEL_NONE ? "this signal takes no selector"
                            : want == SL_SEL_ROUTE ? "this signal is selected by route"
                                                   : "this signal is selected by service");
        }
        skip_ws(&c);
        if (c.i >= n || s[c.i] != '=')
            return fail(&c, "expected '='");
        c.i++;
        skip_ws(&c);
        if (c.i >= n || s[c.i] != '"')
            return fail(&c, "expected a quoted value");
        c.i++;
        size_t vs = c.i;
        while (c.i < n && s[c.i] != '"') {
            if ((unsigned char)s[c.i] < 0x20 || s[c.i] == '\\')
                return fail(&c, "control characters and backslashes are not allowed here");
            c.i++;
        }
        if (c.i >= n)
            return fail(&c, "unterminated value");
        size_t vl = c.i - vs;
        if (vl == 0 || vl >= SL_ALERT_SEL_MAX) {
            c.i = vs;
            return fail(&c, "the value must be 1..127 bytes");
        }
        memcpy(out->sel, s + vs, vl);
        out->sel[vl] = 0;
        c.i++;
        skip_ws(&c);
        if (c.i >= n || s[c.i] != '}')
            return fail(&c, "expected '}'");
        c.i++;
        skip_ws(&c);
    }
    if (c.i < n && s[c.i] == '>') {
        c.i++;
        out->op = SL_OP_GT;
    } else if (c.i < n && s[c.i] == '<') {
        c.i++;
        out->op = SL_OP_LT;
    } else {
        return fail(&c, "expected a comparison: >, >=, < or <=");
    }
    if (c.i < n && s[c.i] == '=') {
        c.i++;
        out->op = out->op == SL_OP_GT ? SL_OP_GE : SL_OP_LE;
    }
    skip_ws(&c);
    if (number(&c, &out->threshold) != 0)
        return -1;
    skip_ws(&c);
    if (c.i != n)
        return fail(&c, "unexpected text after the number");
    return 0;
}
