/* admin.c - admin endpoints and the run-time server API; see admin.h and docs/api.md.
 *
 * Everything here runs on the control thread, one exchange at a time per connection and
 * never concurrently with itself, so the table of request bodies being collected is a
 * plain list. Worker threads read the same services and servers: this file only reads
 * their atomic fields (with atomic loads) and changes them through upstream.h
 * (sl_upstreams_add, sl_server_drain), which publish changes safely. */
#include "admin.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/log.h"
#include "../core/metrics.h"
#include "../proxy/router.h"
#include "alerts.h"
#include "autoscale.h"
#include "sampler.h"
#include "status_page.h"

#define API_MAX_BODY (64 * 1024) /* POST bodies beyond this: 413 */
#define API_MAX_PENDING 64       /* bodies being collected at once; beyond: 503 */
#define API_MAX_NAME 256         /* longest service name a path may carry */
#define API_MAX_SEGS 4           /* /api/services/NAME/servers/ADDRESS */

/* ---- responses ---- */

static const char *reason(int status)
{
    return status == 507 ? "Insufficient Storage" : sl_http1_reason(status);
}

/* Answer status with body[0..len) (plus a final "\n" when nl), then end the exchange.
 * The body may exceed one I/O buffer: it is copied into as many pool buffers as it needs,
 * which conn owns (and frees) whether it writes them at once or queues them. extra is
 * more header lines, each ending in CRLF, or NULL. */
static void send_response(sl_exchange_t *x, int status, const char *ctype, const char *extra,
                          const char *body, size_t len, int nl)
{
    char hdr[768];
    sl_worker_t *w = x->conn->w;
    int ka = sl_conn_keepalive(x);
    size_t total = len + (nl ? 1 : 0);
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 %d %s\r\nServer: sluice\r\n%.*s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
                     status, reason(status), (int)w->date_len, w->date, ctype, total,
                     extra ? extra : "", ka ? "" : "Connection: close\r\n");
    if (n < 0 || (size_t)n >= sizeof(hdr)) {
        sl_conn_error(x, 500, "response head too long");
        return;
    }
    x->status = status;
    int head_only = x->req.method_id == SL_M_HEAD;
    const char *parts[3] = {hdr, body, "\n"};
    size_t lens[3] = {(size_t)n, head_only ? 0 : len, head_only || !nl ? 0 : 1};
    int ok = 1;
    for (int i = 0; i < 3 && ok; i++) {
        for (size_t off = 0; off < lens[i] && ok;) {
            sl_buf_t *b = sl_buf_get(&w->bufs);
            if (!b) {
                ok = 0;
                break;
            }
            size_t take = lens[i] - off < b->size ? lens[i] - off : b->size;
            memcpy(b->data, parts[i] + off, take);
            uv_buf_t ub = uv_buf_init(b->data, (unsigned)take);
            sl_conn_send(x, &ub, 1, &b, 1);
            off += take;
        }
    }
    sl_conn_end(x, ok && ka);
}

/* Answer with j (a reference this call takes over), compact, ending in a newline. A NULL
 * j (an allocation failed while building it) is answered 503. */
static void reply_json(sl_exchange_t *x, int status, json_t *j, const char *extra)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        sl_conn_error(x, 503, "out of memory");
        return;
    }
    send_response(x, status, "application/json", extra, s, strlen(s), 1);
    free(s);
}

/* {"error": message, "status": status}. The message is printf-formatted; callers quote
 * request bytes with quote() so it is always ASCII (valid JSON string content). */
static void reply_error(sl_exchange_t *x, int status, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_error(sl_exchange_t *x, int status, const char *extra, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(x, status, json_pack("{s:s,s:i}", "error", msg, "status", status), extra);
}

/* Optional integer field name of j in [lo, hi] into *out (left as is when absent).
 * 0, or -1 after answering 400 naming the field. */
static int int_field(sl_exchange_t *x, json_t *j, const char *name, json_int_t lo, json_int_t hi,
                     uint32_t *out)
{
    json_t *v = json_object_get(j, name);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        reply_error(x, 400, NULL, "bad \"%s\": want an integer from %lld to %lld", name,
                    (long long)lo, (long long)hi);
        return -1;
    }
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

/* s[0..n) as a double-quoted, printable-ASCII string for messages: bytes outside
 * 0x20..0x7e become \xNN; long input is cut with "...". */
static const char *quote(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 8 >= cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o++] = '"';
    out[o] = 0;
    return out;
}

/* ---- reading the model ---- */

static const char *balance_name(int b)
{
    static const char *names[] = {"round_robin", "least_conn", "random_two", "hash"};
    return b >= 0 && (size_t)b < SL_ARRAY_LEN(names) ? names[b] : "unknown";
}

static uint64_t ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static uint32_t pool_len(const sl_pool_t *p)
{
    return p->slots ? sl_pool_size(p) : 0;
}

/* The API's state of s: its state name, or "down" for an UP server that passive health
 * has taken out until a time still ahead of now_ms. */
static const char *server_state(const sl_server_t *s, uint64_t now_ms)
{
    uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
    if (st == SL_SRV_UP) {
        uint64_t until = ld64(&s->down_until_ms);
        if (until && now_ms < until)
            return "down";
    }
    return sl_server_state_name(st);
}

static int server_healthy(const sl_server_t *s, uint64_t now_ms)
{
    return strcmp(server_state(s, now_ms), "up") == 0;
}

static json_t *server_json(const sl_server_t *s, int read_pool, uint64_t now_ms)
{
    int st = s->hc_last_status;
    json_t *health = json_pack("{s:I,s:I,s:o}", "checks", (json_int_t)ld64(&s->hc_checks), "failed",
                               (json_int_t)ld64(&s->hc_failed), "last_status",
                               st > 0 ? json_integer(st) : json_null());
    if (health && st < 0)
        json_object_set_new(health, "last_error", json_string(uv_err_name(st)));
    const char *state = server_state(s, now_ms);
    json_t *j =
        json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:o}", "address", s->conf.addr.text,
                  "pool", read_pool ? "read" : "primary", "weight", (json_int_t)s->conf.weight,
                  "max_fails", (json_int_t)s->conf.max_fails, "fail_timeout_ms",
                  (json_int_t)s->conf.fail_timeout_ms, "state", state, "in_flight",
                  (json_int_t)ld64(&s->inflight), "fails", (json_int_t)ld64(&s->fails), "requests",
                  (json_int_t)ld64(&s->requests), "failures", (json_int_t)ld64(&s->failures),
                  "transitions", (json_int_t)ld64(&s->transitions), "health", health);
    if (j && strcmp(state, "down") == 0) {
        uint64_t until = ld64(&s->down_until_ms);
        json_object_set_new(j, "down_for_ms",
                            json_integer(until > now_ms ? (json_int_t)(until - now_ms) : 0));
    }
    return j;
}

/* Append every server of p to arr. 0, or -1 when out of memory. */
static int pool_json(json_t *arr, const sl_pool_t *p, int read_pool, uint64_t now_ms)
{
    if (!arr)
        return -1;
    uint32_t n = pool_len(p);
    for (uint32_t i = 0; i < n; i++)
        if (json_array_append_new(arr, server_json(&p->slots[i], read_pool, now_ms)))
            return -1;
    return 0;
}

static void pool_counts(const sl_pool_t *p, uint64_t now_ms, uint32_t *live, uint32_t *healthy)
{
    uint32_t n = pool_len(p);
    *live = 0;
    for (uint32_t i = 0; i < n; i++) {
        const sl_server_t *s = &p->slots[i];
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SL_SRV_REMOVED)
            (*live)++;
        if (server_healthy(s, now_ms))
            (*healthy)++;
    }
}

static int addr_eq(const sl_addr_t *a, const sl_addr_t *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return strcmp(a->text, b->text) == 0;
}

/* The server at address a in pool p: the live one (not REMOVED), else with removed_ok the
 * most recently added removed one; NULL when none. Addresses compare as socket
 * addresses, so "[::1]:80" finds "[0:0::1]:80". */
static sl_server_t *pool_find_addr(const sl_pool_t *p, const sl_addr_t *a, int removed_ok)
{
    sl_server_t *removed = NULL;
    uint32_t n = pool_len(p);
    for (uint32_t i = 0; i < n; i++) {
        sl_server_t *s = &p->slots[i];
        if (!addr_eq(&s->conf.addr, a))
            continue;
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SL_SRV_REMOVED)
            return s;
        removed = s;
    }
    return removed_ok ? removed : NULL;
}

/* ---- authentication ---- */

/* The bearer token, read from the environment variable admin.token_env once, at the
 * first /api request (so it never sits in the configuration file). */
static struct {
    int loaded;
    char *token; /* NULL: variable unset or empty (fail closed) */
    size_t len;
} api_token;

static void load_token(const char *env)
{
    const char *v = getenv(env);
    if (v && *v && !(api_token.token = strdup(v)))
        return; /* out of memory: try again next time, refuse meanwhile */
    api_token.loaded = 1;
    api_token.len = api_token.token ? strlen(api_token.token) : 0;
    if (!api_token.token)
        sl_log_warn("admin: token_env %s is unset or empty: /api/* answers 503 until sluice "
                    "is restarted with it set",
                    env);
}

/* 1 when a[0..alen) equals b[0..blen); the time taken depends on blen only (the secret's
 * length), never on where the first difference is. */
static int ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    volatile unsigned char d = alen != blen;
    for (size_t i = 0; i < blen; i++)
        d |= (unsigned char)(b[i] ^ (i < alen ? a[i] : 0));
    return d == 0;
}

/* 1 when the request may use the /api paths; otherwise it has been answered (401 or 503). */
static int api_authorized(sl_exchange_t *x, const sl_config_t *cfg)
{
    if (!cfg->admin_token_env)
        return 1;
    if (!api_token.loaded)
        load_token(cfg->admin_token_env);
    if (!api_token.token) {
        sl_conn_error(x, 503, "admin token not configured");
        return 0;
    }
    const sl_http_request_t *r = &x->req;
    const sl_http_header_t *auth = NULL;
    int nauth = 0;
    for (unsigned i = 0; i < r->nheaders; i++)
        if (r->headers[i].id == SL_H_AUTHORIZATION) {
            auth = &r->headers[i];
            nauth++;
        }
    if (nauth == 1 && auth->value_len > 7 && strncasecmp(auth->value, "Bearer ", 7) == 0) {
        const char *t = auth->value + 7;
        size_t tl = auth->value_len - 7;
        while (tl && *t == ' ') {
            t++;
            tl--;
        }
        if (ct_equal(t, tl, api_token.token, api_token.len))
            return 1;
    }
    reply_error(x, 401, "WWW-Authenticate: Bearer realm=\"sluice admin\"\r\n",
                "missing or bad bearer token");
    return 0;
}

/* ---- request paths ---- */

/* Percent-decode s[0..n) into out (cap bytes, NUL-terminated). Returns the length, or -1
 * when it does not fit or has a bad escape or a NUL. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i];
        if (c == '%') {
            unsigned v = 0;
            for (int k = 1; k <= 2; k++) {
                unsigned h = i + (size_t)k < n ? (unsigned char)s[i + k] : 0;
                v = v * 16 + (h - '0' < 10         ? h - '0'
                              : (h | 32) - 'a' < 6 ? (h | 32) - 'a' + 10
                                                   : 256);
            }
            if (v > 255)
                return -1;
            c = v;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return (int)o;
}

/* The value of query parameter key (no decoding), or a NULL slice. */
static sl_slice_t query_param(sl_slice_t q, const char *key)
{
    size_t kl = strlen(key);
    const char *p = q.p, *end = q.p + q.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=')
            return (sl_slice_t){p + kl + 1, (size_t)(e - p - kl - 1)};
        p = amp ? amp + 1 : end;
    }
    return (sl_slice_t){NULL, 0};
}

/* ?pool=primary|read: 0 or 1; -1 when absent. Answers 400 and returns -2 when bad. */
static int pool_param(sl_exchange_t *x)
{
    sl_slice_t v = query_param(x->req.query, "pool");
    if (!v.p)
        return -1;
    if (v.len == 7 && memcmp(v.p, "primary", 7) == 0)
        return 0;
    if (v.len == 4 && memcmp(v.p, "read", 4) == 0)
        return 1;
    char q[80];
    reply_error(x, 400, NULL, "query parameter pool must be primary or read, not %s",
                quote(q, sizeof(q), v.p, v.len));
    return -2;
}

static sl_service_t *find_service(sl_exchange_t *x, const char *name, size_t len)
{
    sl_gateway_t *gw = x->conn->w->gw;
    sl_service_t *svc = sl_upstreams_find(&gw->up, name, len);
    if (!svc) {
        char q[300];
        reply_error(x, 404, NULL, "unknown service %s", quote(q, sizeof(q), name, len));
    }
    return svc;
}

static uint64_t now_ms(sl_exchange_t *x)
{
    return uv_now(&x->conn->w->loop);
}

/* ---- GET handlers ---- */

static void get_services(sl_exchange_t *x)
{
    sl_gateway_t *gw = x->conn->w->gw;
    uint64_t now = now_ms(x);
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < gw->up.nservices; i++) {
        const sl_service_t *svc = &gw->up.services[i];
        uint32_t np, nr, healthy = 0;
        pool_counts(&svc->primary, now, &np, &healthy);
        pool_counts(&svc->read, now, &nr, &healthy);
        if (json_array_append_new(arr, json_pack("{s:s,s:s,s:i,s:i,s:i}", "name", svc->conf->name,
                                                 "balance", balance_name(svc->conf->balance),
                                                 "servers", (int)np, "read_servers", (int)nr,
                                                 "healthy", (int)healthy))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    reply_json(x, 200, arr ? json_pack("{s:o}", "services", arr) : NULL, NULL);
}

static void get_service(sl_exchange_t *x, const sl_service_t *svc)
{
    uint64_t now = now_ms(x);
    uint32_t np, nr, healthy = 0;
    pool_counts(&svc->primary, now, &np, &healthy);
    pool_counts(&svc->read, now, &nr, &healthy);
    json_t *prim = json_array(), *read = json_array();
    if (pool_json(prim, &svc->primary, 0, now) || pool_json(read, &svc->read, 1, now)) {
        json_decref(prim);
        json_decref(read);
        reply_json(x, 503, NULL, NULL);
        return;
    }
    json_t *j = json_pack("{s:s,s:s,s:i,s:o,s:o}", "name", svc->conf->name, "balance",
                          balance_name(svc->conf->balance), "healthy", (int)healthy, "servers",
                          prim, "read_servers", read);
    json_t *as = j ? sl_autoscale_json(x->conn->w->autoscale, svc) : NULL;
    if (as)
        json_object_set_new(j, "autoscale", as);
    reply_json(x, 200, j, NULL);
}

static void get_servers(sl_exchange_t *x, const sl_service_t *svc)
{
    uint64_t now = now_ms(x);
    json_t *arr = json_array();
    if (pool_json(arr, &svc->primary, 0, now) || pool_json(arr, &svc->read, 1, now)) {
        json_decref(arr);
        reply_json(x, 503, NULL, NULL);
        return;
    }
    reply_json(x, 200, json_pack("{s:s,s:o}", "service", svc->conf->name, "servers", arr), NULL);
}

/* ---- one server: GET, DELETE ---- */

static void one_server(sl_exchange_t *x, sl_service_t *svc, const char *raw, size_t rawlen)
{
    char addr[sizeof(((sl_addr_t *)0)->text)], q[200];
    sl_addr_t a;
    int n = pct_decode(raw, rawlen, addr, sizeof(addr));
    if (n <= 0 || sl_parse_addr(addr, (size_t)n, &a)) {
        reply_error(x, 400, NULL, "bad server address %s (want IPv4:port or [IPv6]:port)",
                    quote(q, sizeof(q), raw, rawlen));
        return;
    }
    int pool = pool_param(x);
    if (pool == -2)
        return;
    int del = x->req.method_id == SL_M_DELETE;
    sl_server_t *p = pool != 1 ? pool_find_addr(&svc->primary, &a, !del) : NULL;
    sl_server_t *r = pool != 0 ? pool_find_addr(&svc->read, &a, !del) : NULL;
    if (p && r) {
        int plive = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != SL_SRV_REMOVED;
        int rlive = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE) != SL_SRV_REMOVED;
        if (plive && rlive) {
            reply_error(x, 409, NULL,
                        "server %s is in both pools of service %s: choose one with "
                        "?pool=primary or ?pool=read",
                        a.text, quote(q, sizeof(q), svc->conf->name, strlen(svc->conf->name)));
            return;
        }
        if (plive || !rlive) /* the live one; when both were removed, the primary's */
            r = NULL;
        else
            p = NULL;
    }
    sl_server_t *s = p ? p : r;
    if (!s) {
        reply_error(x, 404, NULL, "no server %s in service %s", a.text,
                    quote(q, sizeof(q), svc->conf->name, strlen(svc->conf->name)));
        return;
    }
    if (!del) {
        reply_json(x, 200,
                   json_pack("{s:s,s:o}", "service", svc->conf->name, "server",
                             server_json(s, s == r, now_ms(x))),
                   NULL);
        return;
    }
    if (sl_server_drain(s)) {
        reply_error(x, 409, NULL, "server %s of service %s is already draining", s->conf.addr.text,
                    quote(q, sizeof(q), svc->conf->name, strlen(svc->conf->name)));
        return;
    }
    sl_log_info("admin: %s asked to drain server %s of service %s (%s pool, %llu in flight)",
                x->conn->peer, s->conf.addr.text, svc->conf->name, s == r ? "read" : "primary",
                (unsigned long long)ld64(&s->inflight));
    reply_json(x, 202, json_pack("{s:o}", "draining", server_json(s, s == r, now_ms(x))), NULL);
}

/* ---- POST: add a server ---- */

/* Fill conf and *read_pool from the JSON body, or answer 400 and return -1. */
static int parse_new_server(sl_exchange_t *x, const char *body, size_t len, sl_server_conf_t *conf,
                            int *read_pool)
{
    static const char *fields[] = {"address", "weight", "pool", "max_fails", "fail_timeout"};
    char q[200];
    if (len == 0) {
        reply_error(x, 400, NULL, "missing request body: a JSON object with \"address\"");
        return -1;
    }
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!j) {
        reply_error(x, 400, NULL, "bad JSON: %s (line %d, column %d)", err.text, err.line,
                    err.column);
        return -1;
    }
    int rc = -1;
    const char *key;
    json_t *v;
    if (!json_is_object(j)) {
        reply_error(x, 400, NULL, "the body must be a JSON object");
        goto out;
    }
    json_object_foreach(j, key, v)
    {
        size_t i = 0;
        while (i < SL_ARRAY_LEN(fields) && strcmp(key, fields[i]) != 0)
            i++;
        if (i == SL_ARRAY_LEN(fields)) {
            reply_error(x, 400, NULL,
                        "unknown field %s (known: address, weight, pool, max_fails, "
                        "fail_timeout)",
                        quote(q, sizeof(q), key, strlen(key)));
            goto out;
        }
    }
    memset(conf, 0, sizeof(*conf));
    conf->weight = 1; /* the configuration's defaults */
    conf->max_fails = 1;
    conf->fail_timeout_ms = 10000;
    *read_pool = 0;

    v = json_object_get(j, "address");
    if (!v) {
        reply_error(x, 400, NULL, "missing field \"address\"");
        goto out;
    }
    if (!json_is_string(v)) {
        reply_error(x, 400, NULL, "\"address\" must be a string: \"IPv4:port\" or \"[IPv6]:port\"");
        goto out;
    }
    if (sl_parse_addr(json_string_value(v), json_string_length(v), &conf->addr)) {
        reply_error(x, 400, NULL,
                    "bad \"address\" %s: want IPv4:port or [IPv6]:port (numeric, no host "
                    "names)",
                    quote(q, sizeof(q), json_string_value(v), json_string_length(v)));
        goto out;
    }
    if (int_field(x, j, "weight", 1, 1000, &conf->weight))
        goto out;
    if ((v = json_object_get(j, "pool"))) {
        const char *p = json_string_value(v);
        if (!p || (strcmp(p, "primary") != 0 && strcmp(p, "read") != 0)) {
            reply_error(x, 400, NULL, "bad \"pool\": want \"primary\" or \"read\"");
            goto out;
        }
        *read_pool = p[0] == 'r';
    }
    if (int_field(x, j, "max_fails", 0, 1000, &conf->max_fails))
        goto out;
    if ((v = json_object_get(j, "fail_timeout"))) {
        const uint64_t max_ms = 365ull * 24 * 3600 * 1000;
        uint64_t ms = 0;
        int bad;
        if (json_is_integer(v)) { /* a bare number is seconds, as in the configuration */
            json_int_t sec = json_integer_value(v);
            bad = sec < 1 || (uint64_t)sec > max_ms / 1000;
            ms = bad ? 0 : (uint64_t)sec * 1000;
        } else
            bad = !json_is_string(v) ||
                  sl_parse_duration(json_string_value(v), json_string_length(v), &ms) || ms < 1 ||
                  ms > max_ms;
        if (bad) {
            reply_error(x, 400, NULL,
                        "bad \"fail_timeout\": want a duration from 1ms to 365d such as "
                        "\"10s\"");
            goto out;
        }
        conf->fail_timeout_ms = ms;
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

static void add_server(sl_exchange_t *x, const char *name, size_t name_len, const char *body,
                       size_t len)
{
    sl_service_t *svc = find_service(x, name, name_len);
    if (!svc)
        return;
    sl_server_conf_t conf;
    int read_pool;
    if (parse_new_server(x, body, len, &conf, &read_pool))
        return;
    const char *pname = read_pool ? "read" : "primary";
    char q[300];
    quote(q, sizeof(q), svc->conf->name, strlen(svc->conf->name));
    sl_server_t *old = pool_find_addr(read_pool ? &svc->read : &svc->primary, &conf.addr, 0);
    if (old) {
        int draining = __atomic_load_n(&old->state, __ATOMIC_ACQUIRE) == SL_SRV_DRAINING;
        reply_error(x, 409, NULL, "server %s is already in the %s pool of service %s%s",
                    conf.addr.text, pname, q,
                    draining ? " (draining: add it again once it is removed)" : "");
        return;
    }
    sl_gateway_t *gw = x->conn->w->gw;
    sl_server_t *s = NULL;
    int rc = sl_upstreams_add(&gw->up, svc, read_pool, &conf, &s);
    if (rc == -17) {
        reply_error(x, 409, NULL, "server %s is already in the %s pool of service %s",
                    conf.addr.text, pname, q);
        return;
    }
    if (rc == SL_EINVAL) {
        reply_error(x, 507, NULL,
                    "the %s pool of service %s is full (at most %d servers added at run time "
                    "per pool)",
                    pname, q, SL_POOL_HEADROOM);
        return;
    }
    if (rc || !s) {
        sl_conn_error(x, 503, "out of memory");
        return;
    }
    sl_log_info("admin: %s added server %s to service %s (%s pool, weight %u)", x->conn->peer,
                s->conf.addr.text, svc->conf->name, pname, s->conf.weight);
    /* Location: the new server's own URL (ASCII only; otherwise left out). */
    char loc[600], encname[3 * API_MAX_NAME + 1];
    size_t o = 0;
    int ascii = 1;
    for (const char *p = svc->conf->name; *p && o + 4 < sizeof(encname); p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x21 || c > 0x7e)
            ascii = 0;
        if (c == '/' || c == '%' || c == '?' || c == '#')
            o += (size_t)snprintf(encname + o, sizeof(encname) - o, "%%%02X", c);
        else
            encname[o++] = (char)c;
    }
    encname[o] = 0;
    int n = snprintf(loc, sizeof(loc), "Location: /api/services/%s/servers/%s%s\r\n", encname,
                     s->conf.addr.text, read_pool ? "?pool=read" : "");
    reply_json(x, 201, json_pack("{s:o}", "added", server_json(s, read_pool, now_ms(x))),
               ascii && n > 0 && (size_t)n < sizeof(loc) ? loc : NULL);
}

/* A POST body being collected: conn hands it over in pieces (ops->body) and it is
 * handled at ops->body_end. handler_size is 0 on the admin listener, so collectors live
 * in this list keyed by exchange (control thread only; at most API_MAX_PENDING). */
typedef void (*body_done_fn)(sl_exchange_t *x, const char *name, size_t name_len,
                             const char *body, size_t len);

typedef struct collector {
    struct collector *prev, *next;
    sl_exchange_t *x;
    body_done_fn done;
    char *buf;
    size_t len, cap;
    size_t name_len;
    char name[API_MAX_NAME];
} collector_t;

static collector_t *collectors;
static unsigned ncollectors;

static collector_t *collector_of(const sl_exchange_t *x)
{
    for (collector_t *c = collectors; c; c = c->next)
        if (c->x == x)
            return c;
    return NULL;
}

static void collector_free(collector_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        collectors = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ncollectors--;
    free(c->buf);
    free(c);
}

static int body_piece(sl_exchange_t *x, const char *p, size_t n)
{
    collector_t *c = collector_of(x);
    if (!c)
        return 0;
    if (n > API_MAX_BODY - c->len) {
        collector_free(c);
        x->ops = NULL;
        sl_conn_error(x, 413, "request body over 64 KiB");
        return 0;
    }
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n)
            cap *= 2;
        cap = cap > API_MAX_BODY ? API_MAX_BODY : cap;
        char *b = realloc(c->buf, cap);
        if (!b) {
            collector_free(c);
            x->ops = NULL;
            sl_conn_error(x, 503, "out of memory");
            return 0;
        }
        c->buf = b;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    return 0;
}

static void body_end(sl_exchange_t *x)
{
    collector_t *c = collector_of(x);
    if (!c)
        return;
    /* Detach first: answering ends (and frees) x, after which nothing may refer to it. */
    if (c->prev)
        c->prev->next = c->next;
    else
        collectors = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    ncollectors--;
    x->ops = NULL;
    c->done(x, c->name, c->name_len, c->buf ? c->buf : "", c->len);
    free(c->buf);
    free(c);
}

static void body_abort(sl_exchange_t *x)
{
    collector_t *c = collector_of(x);
    if (c)
        collector_free(c);
}

static const sl_exchange_ops_t post_ops = {
    .body = body_piece,
    .body_end = body_end,
    .abort = body_abort,
};

/* Collect x's body (at most API_MAX_BODY), then done(x, name, body). */
static void collect_body(sl_exchange_t *x, const char *name, size_t name_len, body_done_fn done)
{
    if (x->body_done) { /* no body at all */
        done(x, name, name_len, "", 0);
        return;
    }
    if (x->req.content_length > API_MAX_BODY) {
        sl_conn_error(x, 413, "request body over 64 KiB");
        return;
    }
    collector_t *c = ncollectors < API_MAX_PENDING ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        sl_conn_error(x, 503, "too many API requests in progress");
        return;
    }
    if (x->req.content_length > 0) {
        c->cap = (size_t)x->req.content_length;
        if (!(c->buf = malloc(c->cap))) {
            free(c);
            sl_conn_error(x, 503, "out of memory");
            return;
        }
    }
    c->x = x;
    c->done = done;
    memcpy(c->name, name, name_len);
    c->name_len = name_len;
    c->next = collectors;
    if (collectors)
        collectors->prev = c;
    collectors = c;
    ncollectors++;
    x->ops = &post_ops;
}

static void post_server(sl_exchange_t *x, const char *name, size_t name_len)
{
    if (!find_service(x, name, name_len))
        return; /* answered before reading the body (which closes the connection) */
    collect_body(x, name, name_len, add_server);
}

/* ---- POST /api/cache/purge ---- */

/* A purge waiting for Redis; x is NULL once its client went away. */
typedef struct purge_wait {
    sl_exchange_t *x;
    size_t purged; /* from this process's memory */
} purge_wait_t;

static purge_wait_t *purge_of(sl_exchange_t *x);

static void purge_abort(sl_exchange_t *x)
{
    purge_wait_t *pw = purge_of(x);
    if (pw)
        pw->x = NULL;
}

static const sl_exchange_ops_t purge_ops = {.abort = purge_abort};

/* The waiting purges (control thread only; at most API_MAX_PENDING). */
static purge_wait_t *purge_waits[API_MAX_PENDING];

static purge_wait_t *purge_of(sl_exchange_t *x)
{
    for (unsigned i = 0; i < API_MAX_PENDING; i++)
        if (purge_waits[i] && purge_waits[i]->x == x)
            return purge_waits[i];
    return NULL;
}

static void purge_l2_done(void *arg, int rc, uint64_t removed)
{
    purge_wait_t *pw = arg;
    for (unsigned i = 0; i < API_MAX_PENDING; i++)
        if (purge_waits[i] == pw)
            purge_waits[i] = NULL;
    sl_exchange_t *x = pw->x;
    if (x) {
        x->ops = NULL;
        if (rc == 0)
            reply_json(x, 200,
                       json_pack("{s:I,s:I}", "purged", (json_int_t)pw->purged, "redis_purged",
                                 (json_int_t)removed),
                       NULL);
        else
            reply_json(x, 200,
                       json_pack("{s:I,s:I,s:s}", "purged", (json_int_t)pw->purged,
                                 "redis_purged", (json_int_t)removed, "redis_error",
                                 "Redis did not answer in time; its objects expire by TTL"),
                       NULL);
    }
    free(pw);
}

static void purge_cache(sl_exchange_t *x, const char *name, size_t name_len, const char *body,
                        size_t len)
{
    (void)name;
    (void)name_len;
    sl_gateway_t *gw = x->conn->w->gw;
    static const char *kinds[] = {"url", "prefix", "tag"};
    char q[200];
    if (len == 0) {
        reply_error(x, 400, NULL,
                    "missing request body: a JSON object with one of \"url\", \"prefix\" or "
                    "\"tag\"");
        return;
    }
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!j) {
        reply_error(x, 400, NULL, "bad JSON: %s (line %d, column %d)", err.text, err.line,
                    err.column);
        return;
    }
    const char *key;
    json_t *v;
    int kind = -1, nkinds = 0;
    if (!json_is_object(j)) {
        reply_error(x, 400, NULL, "the body must be a JSON object");
        goto out;
    }
    json_object_foreach(j, key, v)
    {
        size_t i = 0;
        while (i < SL_ARRAY_LEN(kinds) && strcmp(key, kinds[i]) != 0)
            i++;
        if (i == SL_ARRAY_LEN(kinds)) {
            reply_error(x, 400, NULL, "unknown field %s (known: url, prefix, tag)",
                        quote(q, sizeof(q), key, strlen(key)));
            goto out;
        }
        kind = (int)i;
        nkinds++;
    }
    if (nkinds != 1) {
        reply_error(x, 400, NULL, "give exactly one of \"url\", \"prefix\" or \"tag\"");
        goto out;
    }
    v = json_object_get(j, kinds[kind]);
    if (!json_is_string(v) || json_string_length(v) == 0) {
        reply_error(x, 400, NULL, "\"%s\" must be a non-empty string", kinds[kind]);
        goto out;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (kind != SL_HC_PURGE_TAG && s[0] != '/' && strncmp(s, "http://", 7) != 0 &&
        strncmp(s, "https://", 8) != 0) {
        reply_error(x, 400, NULL,
                    "\"%s\" must start with / (a path, every host) or http:// (one host)",
                    kinds[kind]);
        goto out;
    }
    if (!gw->cache) {
        reply_error(x, 404, NULL, "no route caches: nothing to purge");
        goto out;
    }
    size_t purged = sl_hcache_purge(gw->cache, kind, s, n);
    sl_log_info("admin: %s purged %s %s: %zu objects", x->conn->peer, kinds[kind],
                quote(q, sizeof(q), s, n), purged);
    unsigned slot = 0;
    while (slot < API_MAX_PENDING && purge_waits[slot])
        slot++;
    purge_wait_t *pw = slot < API_MAX_PENDING ? calloc(1, sizeof(*pw)) : NULL;
    if (pw) {
        pw->x = x;
        pw->purged = purged;
        int rc = sl_hcache_purge_l2(gw->cache, kind, s, n, purge_l2_done, pw);
        if (rc == 0) {
            purge_waits[slot] = pw; /* the answer waits for Redis */
            x->ops = &purge_ops;
            goto out;
        }
        free(pw);
        if (rc == SL_EIO) {
            reply_json(x, 200,
                       json_pack("{s:I,s:s}", "purged", (json_int_t)purged, "redis_error",
                                 "Redis is not connected; its objects expire by TTL"),
                       NULL);
            goto out;
        }
    }
    reply_json(x, 200, json_pack("{s:I}", "purged", (json_int_t)purged), NULL);
out:
    json_decref(j);
}

/* ---- /api dispatch ---- */

static void method_not_allowed(sl_exchange_t *x, const char *allow)
{
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
    reply_error(x, 405, hdr, "method not allowed (allowed: %s)", allow);
}

/* POST /api/reload: what SIGHUP does, answered with the outcome. The reload runs here, on
 * the control thread, before the answer: 200 {"result":"ok","generation":N} once the new
 * generation of workers serves, 400 {"error":...} when the file is invalid (each error
 * is in the log) and the running configuration stays. */
static void api_reload(sl_exchange_t *x)
{
    sl_worker_t *w = x->conn->w;
    char err[300] = "";
    if (!w->reload) {
        reply_error(x, 503, NULL, "reload is not available");
        return;
    }
    int64_t gen = w->reload(w, "admin API", err, sizeof(err));
    if (gen < 0) {
        reply_error(x, 400, NULL, "reload failed: %s", err);
        return;
    }
    reply_json(x, 200, json_pack("{s:s,s:I}", "result", "ok", "generation", (json_int_t)gen),
               NULL);
}

static void api_handle(sl_exchange_t *x)
{
    const sl_http_request_t *r = &x->req;
    sl_gateway_t *gw = x->conn->w->gw;
    if (!api_authorized(x, gw->cfg))
        return;
    /* Split "/api/a/b/c" into segments; empty ones (double or trailing slashes) make the
     * path unknown. */
    sl_slice_t seg[API_MAX_SEGS] = {{0}};
    unsigned nseg = 0;
    const char *p = r->path.p + 5, *end = r->path.p + r->path.len;
    if (r->path.len <= 5) {
        reply_error(x, 404, NULL, "not found");
        return;
    }
    while (p <= end) {
        const char *sl = memchr(p, '/', (size_t)(end - p));
        const char *e = sl ? sl : end;
        if (e == p || nseg == API_MAX_SEGS) {
            reply_error(x, 404, NULL, "not found");
            return;
        }
        seg[nseg++] = (sl_slice_t){p, (size_t)(e - p)};
        p = e + 1;
    }
    int m = r->method_id, get = m == SL_M_GET || m == SL_M_HEAD;
    if (nseg == 2 && seg[0].len == 5 && memcmp(seg[0].p, "cache", 5) == 0 && seg[1].len == 5 &&
        memcmp(seg[1].p, "purge", 5) == 0) {
        if (m != SL_M_POST) {
            method_not_allowed(x, "POST");
            return;
        }
        collect_body(x, "", 0, purge_cache);
        return;
    }
    if (nseg == 1 && seg[0].len == 6 && memcmp(seg[0].p, "reload", 6) == 0) {
        if (m != SL_M_POST) {
            method_not_allowed(x, "POST");
            return;
        }
        api_reload(x);
        return;
    }
    if (!(seg[0].len == 8 && memcmp(seg[0].p, "services", 8) == 0) ||
        (nseg >= 3 && !(seg[2].len == 7 && memcmp(seg[2].p, "servers", 7) == 0))) {
        reply_error(x, 404, NULL, "not found");
        return;
    }
    const char *allow = nseg <= 2   ? "GET, HEAD"
                        : nseg == 3 ? "GET, HEAD, POST"
                                    : "GET, HEAD, DELETE";
    if (!get && !(nseg == 3 && m == SL_M_POST) && !(nseg == 4 && m == SL_M_DELETE)) {
        method_not_allowed(x, allow);
        return;
    }
    if (nseg == 1) {
        get_services(x);
        return;
    }
    char name[API_MAX_NAME];
    int nl = pct_decode(seg[1].p, seg[1].len, name, sizeof(name));
    if (nl < 0) {
        char q[300];
        reply_error(x, 404, NULL, "unknown service %s", quote(q, sizeof(q), seg[1].p, seg[1].len));
        return;
    }
    if (m == SL_M_POST) {
        post_server(x, name, (size_t)nl);
        return;
    }
    sl_service_t *svc = find_service(x, name, (size_t)nl);
    if (!svc)
        return;
    if (nseg == 2)
        get_service(x, svc);
    else if (nseg == 3)
        get_servers(x, svc);
    else
        one_server(x, svc, seg[3].p, seg[3].len);
}

/* ---- the admin handler ---- */

/* ---- alerts and the status page ---- */

static void get_alerts(sl_exchange_t *x)
{
    json_t *a = sl_alerts_json(x->conn->w->alerts);
    reply_json(x, 200, a ? json_pack("{s:o}", "alerts", a) : NULL, NULL);
}

/* Per-second points of the last STATUS_POINTS seconds, oldest first; percentiles over the
 * 5 s ending at each point (one second holds too few answers to say much). */
#define STATUS_POINTS 300
static json_t *status_series(const sl_sampler_t *sm)
{
    static const char *keys[] = {"t",          "rps",        "p50_ms",     "p95_ms",
                                 "p99_ms",     "status_2xx", "status_3xx", "status_4xx",
                                 "status_5xx", "ratelimited", "cache_hit_ratio"};
    enum { NK = 11 };
    json_t *arr[NK], *obj = json_object();
    for (int k = 0; k < NK; k++) {
        arr[k] = json_array();
        if (obj && arr[k])
            json_object_set_new(obj, keys[k], arr[k]);
    }
    size_t n = sl_sampler_count(sm);
    size_t points = n > 1 ? n - 1 : 0;
    if (points > STATUS_POINTS)
        points = STATUS_POINTS;
    for (size_t i = points; obj && i-- > 0;) {
        const sl_sample_t *a = sl_sampler_at(sm, i), *b = sl_sampler_at(sm, i + 1);
        size_t back5 = i + 5 < n ? i + 5 : n - 1;
        const sl_sample_t *b5 = sl_sampler_at(sm, back5);
        double dt = (double)(a->t_ms - b->t_ms) / 1000.0;
        if (dt <= 0)
            dt = 1;
        uint64_t d[6];
        for (int k = 0; k < 6; k++)
            d[k] = a->all.cls[k] - b->all.cls[k];
        json_array_append_new(arr[0], json_integer((json_int_t)a->unix_ms));
        json_array_append_new(arr[1], json_real((double)(sl_counts_total(&a->all) -
                                                          sl_counts_total(&b->all)) / dt));
        static const double qs[3] = {0.5, 0.95, 0.99};
        for (int q = 0; q < 3; q++) {
            double v = sl_quantile(a->all.bucket, b5->all.bucket, qs[q]);
            json_array_append_new(arr[2 + q], v < 0 ? json_null() : json_real(v * 1000.0));
        }
        json_array_append_new(arr[5], json_real((double)(d[1] + d[2] + d[0]) / dt));
        json_array_append_new(arr[6], json_real((double)d[3] / dt));
        json_array_append_new(arr[7], json_real((double)d[4] / dt));
        json_array_append_new(arr[8], json_real((double)d[5] / dt));
        json_array_append_new(arr[9], json_real((double)(a->ratelimited - b->ratelimited) / dt));
        uint64_t lk = a->cache_lookups - b->cache_lookups;
        json_array_append_new(arr[10], lk ? json_real((double)(a->cache_hits - b->cache_hits) /
                                                      (double)lk)
                                          : json_null());
    }
    return obj;
}

static void get_status(sl_exchange_t *x)
{
    sl_worker_t *w = x->conn->w;
    sl_gateway_t *gw = w->gw;
    const sl_sampler_t *sm = w->sampler;
    uint64_t now = now_ms(x);
    json_t *services = json_array();
    for (uint32_t i = 0; services && i < gw->up.nservices; i++) {
        const sl_service_t *svc = &gw->up.services[i];
        json_t *servers = json_array();
        json_t *one = NULL;
        if (pool_json(servers, &svc->primary, 0, now) || pool_json(servers, &svc->read, 1, now) ||
            !(one = json_pack("{s:s,s:s,s:o}", "name", svc->conf->name, "balance",
                              balance_name(svc->conf->balance), "servers", servers)) ||
            (w->autoscale &&
             json_object_set_new(one, "autoscale", sl_autoscale_json(w->autoscale, svc))) ||
            json_array_append_new(services, one)) {
            json_decref(services);
            services = NULL;
        }
    }
    const sl_sample_t *last = sm ? sl_sampler_at(sm, 0) : NULL;
    uint64_t wall = sl_unix_ms();
    json_t *alerts = sl_alerts_json(w->alerts);
    json_t *j = json_pack(
        "{s:s,s:I,s:i,s:o,s:{s:I,s:I,s:I,s:I},s:o,s:o}", "version", SL_VERSION,
        "uptime_s", (json_int_t)((wall - w->start_unix_ms) / 1000), "interval_s", 1, "series",
        sm ? status_series(sm) : json_object(), "totals", "requests",
        (json_int_t)(last ? sl_counts_total(&last->all) : 0), "status_5xx",
        (json_int_t)(last ? last->all.cls[5] : 0), "ratelimited",
        (json_int_t)(last ? last->ratelimited : 0), "connections_active",
        (json_int_t)w->conns_active, "services", services ? services : json_array(), "alerts",
        alerts ? alerts : json_array());
    reply_json(x, 200, j, NULL); /* send_response says Cache-Control: no-store */
}

static int path_is(const sl_http_request_t *r, const char *p)
{
    size_t n = strlen(p);
    return r->path.len == n && memcmp(r->path.p, p, n) == 0;
}

static void get_metrics(sl_exchange_t *x)
{
    sl_textbuf_t t = {0};
    sl_metrics_render(&t);
    if (t.failed) {
        free(t.p);
        sl_conn_error(x, 503, "out of memory");
        return;
    }
    send_response(x, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, t.p, t.len, 0);
    free(t.p);
}

void sl_admin_handle(sl_exchange_t *x)
{
    const sl_http_request_t *r = &x->req;
    int get = r->method_id == SL_M_GET || r->method_id == SL_M_HEAD;
    if (path_is(r, "/metrics")) {
        if (!get)
            method_not_allowed(x, "GET, HEAD");
        else
            get_metrics(x);
        return;
    }
    if (path_is(r, "/")) { /* the status page, fed by /status.json */
        if (!get)
            method_not_allowed(x, "GET, HEAD");
        else
            send_response(x, 200, "text/html; charset=utf-8", NULL,
                          sl_status_page, sl_status_page_len, 0);
        return;
    }
    if (path_is(r, "/alerts") || path_is(r, "/status.json")) {
        if (!get)
            method_not_allowed(x, "GET, HEAD");
        else if (r->path.len == 7)
            get_alerts(x);
        else
            get_status(x);
        return;
    }
    if (path_is(r, "/health")) {
        sl_conn_respond(x, 200, "application/json", "{\"status\":\"ok\"}\n", 16, NULL);
        return;
    }
    if (r->path.len >= 4 && memcmp(r->path.p, "/api", 4) == 0 &&
        (r->path.len == 4 || r->path.p[4] == '/')) {
        api_handle(x);
        return;
    }
    sl_conn_error(x, 404, "not found");
}
