/* alerts.c - alert rules, their states and the webhook notifier; see alerts.h.
 *
 * Notifier: one queue of JSON bodies, sent one at a time over a fresh HTTP/1.1 connection
 * (Connection: close) to the webhook's address, each attempt bounded by NOTIFY_TIMEOUT_MS.
 * A 2xx answer is success; anything else (refused, reset, timeout, other status) is retried
 * after 1 s, 2 s, 4 s, then dropped and counted. The queue holds at most QUEUE_MAX bodies:
 * past that the oldest is dropped (counted), so a dead receiver cannot grow memory. */
#include "alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"

#define NOTIFY_TIMEOUT_MS 5000
#define NOTIFY_ATTEMPTS 4
#define QUEUE_MAX 64
#define RESP_MAX 1024

typedef struct note {
    struct note *next;
    char *body;
    size_t len;
    int attempts;
} note_t;

struct sl_alerts {
    uv_loop_t *loop;
    sl_alert_t *a;
    uint32_t n;
    const sl_gateway_t *g;
    char instance[64];
    /* webhook */
    int has_webhook;
    sl_addr_t addr;
    char host[128], path[512];
    note_t *head, *tail;
    uint32_t queued;
    int busy;          /* a POST is under way, or waiting for its retry */
    int attempting;    /* an attempt's callbacks may still end it */
    int closing;
    int open_handles;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer; /* attempt deadline, or retry backoff */
    uv_buf_t out[2];
    char head_buf[768];
    char resp[RESP_MAX];
    size_t resp_len;
    int tcp_open;
    uint64_t sent, failed, dropped;
};

const char *sl_alert_state_name(int state)
{
    static const char *names[] = {"inactive", "pending", "firing", "resolved"};
    return state >= 0 && state < 4 ? names[state] : "?";
}

uint32_t sl_alerts_count(const sl_alerts_t *al)
{
    return al ? al->n : 0;
}

const sl_alert_t *sl_alerts_get(const sl_alerts_t *al, uint32_t i)
{
    return al && i < al->n ? &al->a[i] : NULL;
}

/* ---- building the rule set ---- */

static int route_index(const sl_gateway_t *g, const char *sel)
{
    for (uint32_t i = 0; i < g->nroutes; i++)
        if (strcmp(sl_route_label(&g->routes[i]), sel) == 0)
            return (int)i;
    return -1;
}

static int service_index(const sl_gateway_t *g, const char *sel)
{
    for (uint32_t i = 0; i < g->up.nservices; i++)
        if (strcmp(g->up.services[i].conf->name, sel) == 0)
            return (int)i;
    return -1;
}

static int set_expr(sl_alert_t *a, const sl_gateway_t *g, const char *expr)
{
    char err[200];
    size_t at;
    if (sl_alert_expr_parse(expr, strlen(expr), &a->e, err, sizeof(err), &at) != 0)
        return -1; /* built-ins parse; config rules were checked by the loader */
    free(a->expr);
    a->expr = strdup(expr);
    a->route = a->e.selector == SL_SEL_ROUTE ? route_index(g, a->e.sel) : -1;
    a->service = a->e.selector == SL_SEL_SERVICE ? service_index(g, a->e.sel) : -1;
    return a->expr ? 0 : -1;
}

static int set_summary(sl_alert_t *a, const char *s)
{
    free(a->summary);
    a->summary = strdup(s ? s : "");
    return a->summary ? 0 : -1;
}

static void alert_free(sl_alert_t *a)
{
    free(a->expr);
    free(a->summary);
}

sl_alerts_t *sl_alerts_new(uv_loop_t *loop, const sl_config_t *cfg, const sl_gateway_t *g,
                           const char *instance)
{
    sl_alerts_t *al = calloc(1, sizeof(*al));
    if (!al)
        return NULL;
    al->loop = loop;
    al->g = g;
    snprintf(al->instance, sizeof(al->instance), "%s", instance ? instance : "");
    size_t cap = sl_alert_nbuiltins + cfg->alerts.nrules;
    al->a = calloc(cap ? cap : 1, sizeof(sl_alert_t));
    if (!al->a) {
        free(al);
        return NULL;
    }
    int bad = 0;
    for (size_t i = 0; cfg->alerts.defaults && i < sl_alert_nbuiltins; i++) {
        const sl_alert_builtin_t *b = &sl_alert_builtins[i];
        sl_alert_t *a = &al->a[al->n++];
        snprintf(a->name, sizeof(a->name), "%s", b->name);
        snprintf(a->severity, sizeof(a->severity), "%s", b->severity);
        a->for_ms = b->for_ms;
        a->window_ms = b->window_ms;
        bad |= set_expr(a, g, b->expr) | set_summary(a, b->summary);
    }
    for (uint32_t i = 0; i < cfg->alerts.nrules; i++) {
        const sl_alert_rule_conf_t *r = &cfg->alerts.rules[i];
        sl_alert_t *a = NULL;
        uint32_t k;
        for (k = 0; k < al->n && !a; k++)
            if (strcmp(al->a[k].name, r->name) == 0)
                a = &al->a[k];
        if (a && !r->enabled) { /* turn a built-in off */
            alert_free(a);
            memmove(a, a + 1, (al->n - (uint32_t)(a - al->a) - 1) * sizeof(*a));
            al->n--;
            continue;
        }
        if (!r->enabled)
            continue;
        if (!a) {
            const sl_alert_builtin_t *b = NULL;
            for (size_t j = 0; j < sl_alert_nbuiltins; j++)
                if (strcmp(sl_alert_builtins[j].name, r->name) == 0)
                    b = &sl_alert_builtins[j];
            if (!r->expr && !b)
                continue; /* the loader refuses this; nothing to evaluate */
            a = &al->a[al->n++];
            snprintf(a->name, sizeof(a->name), "%s", r->name);
            snprintf(a->severity, sizeof(a->severity), "%s", b ? b->severity : "warning");
            a->for_ms = b ? b->for_ms : 0;
            a->window_ms = b ? b->window_ms : SL_ALERT_UNSET;
            bad |= set_summary(a, b ? b->summary : r->name);
            if (b && !r->expr)
                bad |= set_expr(a, g, b->expr);
        }
        if (r->expr)
            bad |= set_expr(a, g, r->expr);
        if (r->for_ms != SL_ALERT_UNSET)
            a->for_ms = r->for_ms;
        if (r->window_ms != SL_ALERT_UNSET)
            a->window_ms = r->window_ms;
        if (a->window_ms == SL_ALERT_UNSET)
            a->window_ms = sl_signal_default_window_ms(a->e.signal);
        if (r->severity)
            snprintf(a->severity, sizeof(a->severity), "%s", r->severity);
        if (r->summary)
            bad |= set_summary(a, r->summary);
    }
    if (cfg->alerts.webhook) {
        const char *u = cfg->alerts.webhook + 7, *slash = strchr(u, '/');
        size_t hl = slash ? (size_t)(slash - u) : strlen(u);
        if (hl < sizeof(al->host) && sl_parse_addr(u, hl, &al->addr) == 0) {
            memcpy(al->host, u, hl);
            al->host[hl] = 0;
            snprintf(al->path, sizeof(al->path), "%s", slash ? slash : "/");
            al->has_webhook = 1;
        }
    }
    if (bad) {
        for (uint32_t i = 0; i < al->n; i++)
            alert_free(&al->a[i]);
        free(al->a);
        free(al);
        return NULL;
    }
    uv_timer_init(loop, &al->timer);
    al->timer.data = al;
    al->open_handles = 1;
    return al;
}

void sl_alerts_tracked_routes(const sl_alerts_t *al, uint8_t *track, uint32_t nroutes)
{
    for (uint32_t i = 0; al && i < al->n; i++)
        if (al->a[i].route >= 0 && (uint32_t)al->a[i].route < nroutes)
            track[al->a[i].route] = 1;
}

/* ---- notifications ---- */

static void fmt_time(char *out, size_t cap, uint64_t unix_ms)
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(unix_ms % 1000));
}

/* FNV-1a of the alert's labels: Alertmanager's fingerprint is a label hash too. */
static uint64_t fingerprint(const sl_alerts_t *al, const sl_alert_t *a)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const char *parts[3] = {a->name, a->severity, al->instance};
    for (int p = 0; p < 3; p++)
        for (const char *s = parts[p]; *s; s++)
            h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static void send_next(sl_alerts_t *al);

/* The Alertmanager webhook payload (version 4) for one alert's firing or resolution. */
static void notify(sl_alerts_t *al, const sl_alert_t *a, int firing)
{
    if (!al->has_webhook || al->closing)
        return;
    char starts[80], ends[80], desc[256], fp[24], url[160];
    fmt_time(starts, sizeof(starts), a->active_unix_ms ? a->active_unix_ms : a->fired_unix_ms);
    if (firing)
        snprintf(ends, sizeof(ends), "0001-01-01T00:00:00Z");
    else
        fmt_time(ends, sizeof(ends), a->resolved_unix_ms);
    if (a->has_value)
        snprintf(desc, sizeof(desc), "%s: %s = %g (%s %g)", a->expr, sl_signal_name(a->e.signal),
                 a->value, sl_alert_op_name(a->e.op), a->e.threshold);
    else
        snprintf(desc, sizeof(desc), "%s: no data", a->expr);
    snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)fingerprint(al, a));
    snprintf(url, sizeof(url), "http://%s/alerts", al->instance);
    const char *status = firing ? "firing" : "resolved";
    json_t *labels = json_pack("{s:s,s:s,s:s}", "alertname", a->name, "severity", a->severity,
                               "instance", al->instance);
    json_t *ann = json_pack("{s:s,s:s}", "summary", a->summary ? a->summary : "", "description",
                            desc);
    char gk[160];
    snprintf(gk, sizeof(gk), "{}:{alertname=\"%s\"}", a->name);
    json_t *alert = json_pack("{s:s,s:O,s:O,s:s,s:s,s:s,s:s}", "status", status, "labels", labels,
                              "annotations", ann, "startsAt", starts, "endsAt", ends,
                              "generatorURL", url, "fingerprint", fp);
    json_t *msg = json_pack("{s:s,s:s,s:i,s:s,s:s,s:{s:s},s:O,s:O,s:s,s:[o]}", "version", "4",
                            "groupKey", gk, "truncatedAlerts", 0, "status", status, "receiver",
                            "sluice", "groupLabels", "alertname", a->name, "commonLabels", labels,
                            "commonAnnotations", ann, "externalURL", url + 0, "alerts", alert);
    json_decref(labels);
    json_decref(ann);
    char *body = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    note_t *nt = body ? calloc(1, sizeof(*nt)) : NULL;
    if (!nt) {
        free(body);
        al->dropped++;
        return;
    }
    nt->body = body;
    nt->len = strlen(body);
    if (al->queued >= QUEUE_MAX && al->head && al->head->next) {
        /* drop the oldest that is not being sent */
        note_t *old = al->head->next;
        al->head->next = old->next;
        if (al->tail == old)
            al->tail = al->head;
        free(old->body);
        free(old);
        al->queued--;
        al->dropped++;
    }
    if (al->tail)
        al->tail->next = nt;
    else
        al->head = nt;
    al->tail = nt;
    al->queued++;
    if (!al->busy)
        send_next(al);
}

static void pop_head(sl_alerts_t *al)
{
    note_t *nt = al->head;
    if (!nt)
        return;
    al->head = nt->next;
    if (!al->head)
        al->tail = NULL;
    al->queued--;
    free(nt->body);
    free(nt);
}

static void on_retry(uv_timer_t *t)
{
    sl_alerts_t *al = t->data;
    al->busy = 0;
    send_next(al);
}

static void on_tcp_closed(uv_handle_t *h)
{
    sl_alerts_t *al = h->data;
    if (h == (uv_handle_t *)&al->tcp)
        al->tcp_open = 0;
    if (!al->closing && !al->busy && al->head)
        send_next(al); /* a retry that came due while the last connection was closing */
    if (--al->open_handles == 0 && al->closing) {
        while (al->head)
            pop_head(al);
        for (uint32_t i = 0; i < al->n; i++)
            alert_free(&al->a[i]);
        free(al->a);
        free(al);
    }
}

/* The attempt is over: ok = the receiver answered 2xx. */
static void attempt_done(sl_alerts_t *al, int ok)
{
    if (!al->attempting)
        return; /* a late callback of an attempt already ended */
    al->attempting = 0;
    uv_timer_stop(&al->timer);
    if (al->tcp_open && !uv_is_closing((uv_handle_t *)&al->tcp))
        uv_close((uv_handle_t *)&al->tcp, on_tcp_closed);
    if (al->closing)
        return;
    note_t *nt = al->head;
    if (ok || !nt) {
        if (nt)
            al->sent++;
        pop_head(al);
        al->busy = 0;
        if (al->head)
            uv_timer_start(&al->timer, on_retry, 0, 0);
        return;
    }
    if (++nt->attempts >= NOTIFY_ATTEMPTS) {
        sl_log_warn("alerts: webhook %s:%s failed %d times; notification dropped", al->host,
                    al->path, nt->attempts);
        al->failed++;
        pop_head(al);
        al->busy = 0;
        if (al->head)
            uv_timer_start(&al->timer, on_retry, 0, 0);
        return;
    }
    uv_timer_start(&al->timer, on_retry, 1000ull << (nt->attempts - 1), 0);
}

static void on_deadline(uv_timer_t *t)
{
    attempt_done(t->data, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sl_alerts_t *al = h->data;
    SL_UNUSED(hint);
    buf->base = al->resp + al->resp_len;
    buf->len = RESP_MAX - 1 - al->resp_len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    sl_alerts_t *al = s->data;
    SL_UNUSED(buf);
    if (n > 0)
        al->resp_len += (size_t)n;
    al->resp[al->resp_len] = 0;
    const char *eol = strstr(al->resp, "\r\n");
    if (eol || n < 0 || al->resp_len >= RESP_MAX - 1) {
        int status = 0;
        int ok = sscanf(al->resp, "HTTP/1.%*d %d", &status) == 1 && status >= 200 && status < 300;
        attempt_done(al, ok);
    }
}

static void on_written(uv_write_t *w, int status)
{
    sl_alerts_t *al = w->data;
    if (status < 0) {
        attempt_done(al, 0);
        return;
    }
    if (uv_read_start((uv_stream_t *)&al->tcp, on_alloc, on_read) != 0)
        attempt_done(al, 0);
}

static void on_connected(uv_connect_t *c, int status)
{
    sl_alerts_t *al = c->data;
    if (status < 0 || al->closing) {
        attempt_done(al, 0);
        return;
    }
    note_t *nt = al->head;
    int hl = snprintf(al->head_buf, sizeof(al->head_buf),
                      "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-alerts\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      al->path, al->host, nt->len);
    al->out[0] = uv_buf_init(al->head_buf, (unsigned)hl);
    al->out[1] = uv_buf_init(nt->body, (unsigned)nt->len);
    al->write.data = al;
    if (uv_write(&al->write, (uv_stream_t *)&al->tcp, al->out, 2, on_written) != 0)
        attempt_done(al, 0);
}

static void send_next(sl_alerts_t *al)
{
    if (al->busy || !al->head || al->closing || al->tcp_open)
        return;
    al->busy = 1;
    al->attempting = 1;
    al->resp_len = 0;
    uv_tcp_init(al->loop, &al->tcp);
    al->tcp.data = al;
    al->tcp_open = 1;
    al->open_handles++;
    al->connect.data = al;
    uv_timer_start(&al->timer, on_deadline, NOTIFY_TIMEOUT_MS, 0);
    if (uv_tcp_connect(&al->connect, &al->tcp, (const struct sockaddr *)&al->addr.ss,
                       on_connected) != 0)
        attempt_done(al, 0);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_tcp_closed(h); /* the same accounting */
}

void sl_alerts_close(sl_alerts_t *al)
{
    if (!al || al->closing)
        return;
    al->closing = 1;
    uv_timer_stop(&al->timer);
    if (al->tcp_open && !uv_is_closing((uv_handle_t *)&al->tcp))
        uv_close((uv_handle_t *)&al->tcp, on_tcp_closed);
    uv_close((uv_handle_t *)&al->timer, on_timer_closed);
}

/* ---- evaluation ---- */

void sl_alerts_eval(sl_alerts_t *al, const sl_sampler_t *s, uint64_t now_ms, uint64_t unix_ms)
{
    for (uint32_t i = 0; al && i < al->n; i++) {
        sl_alert_t *a = &al->a[i];
        int has = (a->e.selector == SL_SEL_NONE || a->route >= 0 || a->service >= 0) &&
                  sl_sampler_signal(s, a->e.signal, a->route, a->service, a->window_ms,
                                    &a->value) == 0;
        a->has_value = has;
        int cond = has && sl_alert_compare(&a->e, a->value);
        int was = a->state;
        if (cond) {
            if (was == SL_ALERT_INACTIVE || was == SL_ALERT_RESOLVED) {
                a->state = SL_ALERT_PENDING;
                a->pending_since_ms = now_ms;
                a->active_unix_ms = unix_ms;
            }
            if (a->state == SL_ALERT_PENDING && now_ms - a->pending_since_ms >= a->for_ms) {
                a->state = SL_ALERT_FIRING;
                a->fired_unix_ms = unix_ms;
                a->fired_total++;
                sl_log_warn("alert %s firing: %s = %g (%s %g)", a->name,
                            sl_signal_name(a->e.signal), a->value, sl_alert_op_name(a->e.op),
                            a->e.threshold);
                notify(al, a, 1);
            }
        } else if (was == SL_ALERT_PENDING) {
            a->state = SL_ALERT_INACTIVE;
        } else if (was == SL_ALERT_FIRING) {
            a->state = SL_ALERT_RESOLVED;
            a->resolved_unix_ms = unix_ms;
            if (has)
                sl_log_info("alert %s resolved: %s = %g", a->name, sl_signal_name(a->e.signal),
                            a->value);
            else
                sl_log_info("alert %s resolved: %s has no data", a->name,
                            sl_signal_name(a->e.signal));
            notify(al, a, 0);
        }
    }
}

json_t *sl_alerts_json(const sl_alerts_t *al)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && al && i < al->n; i++) {
        const sl_alert_t *a = &al->a[i];
        char t[80];
        json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:o,s:I}", "name", a->name, "state",
                              sl_alert_state_name(a->state), "expr", a->expr, "severity",
                              a->severity, "summary", a->summary ? a->summary : "", "for_ms",
                              (json_int_t)a->for_ms, "window_ms", (json_int_t)a->window_ms,
                              "value", a->has_value ? json_real(a->value) : json_null(),
                              "fired_total", (json_int_t)a->fired_total);
        if (j && (a->state == SL_ALERT_PENDING || a->state == SL_ALERT_FIRING)) {
            fmt_time(t, sizeof(t), a->active_unix_ms);
            json_object_set_new(j, "active_since", json_string(t));
        }
        if (j && a->fired_unix_ms) {
            fmt_time(t, sizeof(t), a->fired_unix_ms);
            json_object_set_new(j, "fired_at", json_string(t));
        }
        if (j && a->state == SL_ALERT_RESOLVED) {
            fmt_time(t, sizeof(t), a->resolved_unix_ms);
            json_object_set_new(j, "resolved_at", json_string(t));
        }
        if (json_array_append_new(arr, j)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

void sl_alerts_collect(sl_textbuf_t *t, void *arg)
{
    const sl_alerts_t *al = arg;
    if (!al)
        return;
    sl_text_printf(t, "# HELP sluice_alerts Alert rules pending or firing (1), by state, as "
                      "Prometheus's ALERTS.\n# TYPE sluice_alerts gauge\n");
    for (uint32_t i = 0; i < al->n; i++) {
        const sl_alert_t *a = &al->a[i];
        if (a->state == SL_ALERT_PENDING || a->state == SL_ALERT_FIRING)
            sl_text_printf(t, "sluice_alerts{alertname=\"%s\",severity=\"%s\",state=\"%s\"} 1\n",
                           a->name, a->severity, sl_alert_state_name(a->state));
    }
    sl_text_printf(t,
                   "# HELP sluice_alert_notifications_total Webhook notifications, by result.\n"
                   "# TYPE sluice_alert_notifications_total counter\n"
                   "sluice_alert_notifications_total{result=\"sent\"} %llu\n"
                   "sluice_alert_notifications_total{result=\"failed\"} %llu\n"
                   "sluice_alert_notifications_total{result=\"dropped\"} %llu\n",
                   (unsigned long long)al->sent, (unsigned long long)al->failed,
                   (unsigned long long)al->dropped);
}
