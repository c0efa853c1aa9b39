/* ratelimit_redis.c - the shared GCRA limiter: one Lua script in Redis per decision, on a
 * hiredis async connection attached to one worker's libuv loop. Owns the connection (connect,
 * SCRIPT LOAD, reconnect with backoff), the FIFO of pending decisions and their deadlines.
 * Never blocks; every decision calls back exactly once within timeout_ms (or never, if
 * cancelled); a request object lives until Redis answered it or the connection is gone.
 *
 * Pending list: requests in send order, each still owned by hiredis (its reply callback
 * frees it). Deadlines are send time + timeout_ms, so they are in list order too: the
 * requests already answered by the timer (or cancelled) before their reply form a prefix
 * plus holes, and `cursor` points past the prefix; one uv_timer serves the whole list.
 * A connection that leaves its oldest request unanswered for STALL_MS (hung server, lost
 * peer without a FIN) is dropped and re-made, so abandoned requests do not pile up. */
#include "ratelimit_redis.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "../core/log.h"

#define MAX_CHECKS 16
#define MAX_PENDING 4096 /* requests sent and not yet answered by Redis, per connection */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 2000 /* TCP connect + SCRIPT LOAD */
#define STALL_MIN_MS 2000       /* oldest request unanswered this long (or 4 x timeout): drop */
#define KEY_HEX_MAX 26          /* "ffffffff:" + 16 hex digits + NUL */

/* The decision, the same as sl_rl_decide's (ratelimit.c) in microseconds of Redis's clock.
 * KEYS[i]: the TAT of limit i (absent = a full budget). ARGV[3i-2..3i]: T, tau (µs), dry_run.
 * Integers stay below 2^53, so Lua's doubles hold them exactly; values written back are
 * formatted with %d (redis.call would print a number with 14 digits). Returns
 * {all_pass, then per limit: allowed, remaining, reset_s, retry_after_s}. Only writes when the
 * request passes, and only limits that allow it; each TAT expires when it has drained. */
static const char SCRIPT[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local n = #KEYS\n"
    "local st, ok = {}, {}\n"
    "local pass = 1\n"
    "for i = 1, n do\n"
    "  local tau = tonumber(ARGV[3 * i - 1])\n"
    "  local s = tonumber(redis.call('GET', KEYS[i]) or '') or 0\n"
    "  st[i] = s\n"
    "  ok[i] = s <= now or s - now <= tau\n"
    "  if not ok[i] and ARGV[3 * i] == '0' then pass = 0 end\n"
    "end\n"
    "local out = {pass}\n"
    "for i = 1, n do\n"
    "  local T = tonumber(ARGV[3 * i - 2])\n"
    "  local tau = tonumber(ARGV[3 * i - 1])\n"
    "  local s = st[i]\n"
    "  if pass == 1 and ok[i] then\n"
    "    if s < now then s = now end\n"
    "    s = s + T\n"
    "    redis.call('SET', KEYS[i], string.format('%d', s), 'PX',\n"
    "               string.format('%d', math.max(1, math.ceil((s - now) / 1000))))\n"
    "  end\n"
    "  local d = 0\n"
    "  if s > now then d = s - now end\n"
    "  local rem = 0\n"
    "  if d <= tau then rem = math.floor((tau - d) / T) + 1 end\n"
    "  local retry = 0\n"
    "  if not ok[i] then\n"
    "    retry = 1\n"
    "    if d > tau then retry = math.ceil((d - tau) / 1000000) end\n"
    "  end\n"
    "  out[#out + 1] = ok[i] and 1 or 0\n"
    "  out[#out + 1] = rem\n"
    "  out[#out + 1] = math.ceil(d / 1000000)\n"
    "  out[#out + 1] = retry\n"
    "end\n"
    "return out\n";

enum { ST_IDLE, ST_CONNECTING, ST_LOADING, ST_READY, ST_DROPPING, ST_CLOSING };
enum { R_WAITING, R_DONE }; /* R_DONE: called back (timeout) or cancelled; reply pending */

struct req {
    struct req *prev, *next; /* pending list; next alone in the free list */
    sl_rl_redis_t *r;
    sl_rl_check_t *checks;
    unsigned n;
    int state;
    int retried; /* NOSCRIPT retry done */
    sl_rl_redis_cb cb;
    void *arg;
    uint64_t sent_ms, deadline_ms; /* loop time */
    uint64_t sent_ns;              /* uv_hrtime, for latency */
};

struct sl_rl_redis {
    uv_loop_t *loop;
    redisAsyncContext *ac;
    uv_timer_t deadline_timer; /* the oldest pending deadline, or a stall check */
    uv_timer_t retry_timer;    /* reconnect backoff while idle; connect timeout while connecting */
    int state;
    int dropping;       /* hiredis is freeing ac (failing pending replies): do not free it again */
    int closing;        /* sl_rl_redis_close was called */
    int open_handles;   /* timers not yet closed */
    int outage;         /* a failure was logged and no recovery since */
    const char *forced; /* why we dropped the connection ourselves */
    uint64_t timeout_ms, stall_ms, backoff_ms;
    uint64_t timer_due_ms; /* when deadline_timer fires, if active */
    char ip[INET6_ADDRSTRLEN];
    int port;
    char name[64]; /* the address as written, for logs */
    char sha[41];
    char *prefix;
    size_t prefix_len;
    char *keybuf; /* MAX_CHECKS keys of key_size bytes, built per request */
    size_t key_size;
    struct req *head, *tail, *cursor; /* cursor: first request that may still be R_WAITING */
    unsigned pending;                 /* requests in the list */
    struct req *free_list;
    sl_rl_redis_stats_t stats;
};

static void start_connect(sl_rl_redis_t *r);

/* --- request objects: allocated on first need, recycled through a free list --- */

static struct req *req_get(sl_rl_redis_t *r)
{
    struct req *q = r->free_list;
    if (q) {
        r->free_list = q->next;
        return q;
    }
    return malloc(sizeof(*q));
}

static void req_put(sl_rl_redis_t *r, struct req *q)
{
    q->next = r->free_list;
    r->free_list = q;
}

static void req_link(sl_rl_redis_t *r, struct req *q)
{
    q->next = NULL;
    q->prev = r->tail;
    if (r->tail)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    if (!r->cursor)
        r->cursor = q;
    r->pending++;
}

static void req_unlink(sl_rl_redis_t *r, struct req *q)
{
    if (r->cursor == q)
        r->cursor = q->next;
    if (q->prev)
        q->prev->next = q->next;
    else
        r->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        r->tail = q->prev;
    r->pending--;
}

/* --- deadlines --- */

static void on_deadline(uv_timer_t *t);

/* Arm the timer for the first waiting request's deadline or the oldest request's stall. */
static void arm(sl_rl_redis_t *r)
{
    uint64_t due = UINT64_MAX;
    while (r->cursor && r->cursor->state != R_WAITING)
        r->cursor = r->cursor->next;
    if (r->cursor)
        due = r->cursor->deadline_ms;
    if (r->head && r->head->sent_ms + r->stall_ms < due)
        due = r->head->sent_ms + r->stall_ms;
    if (due == UINT64_MAX) {
        uv_timer_stop(&r->deadline_timer);
        return;
    }
    uint64_t now = uv_now(r->loop);
    r->timer_due_ms = due;
    uv_timer_start(&r->deadline_timer, on_deadline, due > now ? due - now : 0, 0);
}

/* Drop the connection from our side (timer context only, never inside a hiredis callback).
 * A connected context fails its pending replies and calls on_disconnect from inside
 * redisAsyncFree; one still connecting calls nothing, so the failure is handled here. */
static void conn_failed(sl_rl_redis_t *r, const char *why);

static void force_drop(sl_rl_redis_t *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    if (!ac || r->dropping)
        return;
    if (r->state == ST_CONNECTING) {
        r->ac = NULL;
        redisAsyncFree(ac);
        conn_failed(r, why);
        return;
    }
    r->forced = why;
    r->dropping = 1;
    r->state = ST_DROPPING;
    redisAsyncFree(ac);
}

static void on_deadline(uv_timer_t *t)
{
    sl_rl_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    struct req *q;
    while ((q = r->cursor) != NULL) {
        if (q->state == R_WAITING) {
            if (q->deadline_ms > now)
                break;
            q->state = R_DONE; /* freed when its reply comes, or the connection goes */
            r->cursor = q->next;
            r->stats.timeouts++;
            q->cb(q->arg, SL_EIO);
            if (r->closing)
                return;
            continue;
        }
        r->cursor = q->next;
    }
    if (r->head && now >= r->head->sent_ms + r->stall_ms &&
        (r->state == ST_READY || r->state == ST_LOADING)) {
        force_drop(r, "no reply within the stall limit");
        if (r->closing)
            return;
    }
    arm(r);
}

/* --- connection --- */

/* hiredis 0.14's libuv adapter drops poll callbacks with a status: libuv reports POLLERR (a
 * refused connect, a reset connection) that way and stops the handle, so the failure would
 * never reach hiredis and the connection would hang. We keep the adapter's state and cleanup
 * but install watchers that hand an error to hiredis as the events it was waiting for (what
 * hiredis 1.x's adapter does); hiredis's read or write then fails and reports it. */
static void on_poll(uv_poll_t *h, int status, int events)
{
    redisLibuvEvents *p = h->data;
    int ev = status ? p->events : events;
    if (p->context && (ev & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void poll_update(redisLibuvEvents *p, int add, int remove)
{
    p->events = (p->events | add) & ~remove;
    if (p->events)
        uv_poll_start(&p->handle, p->events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *p)
{
    poll_update(p, UV_READABLE, 0);
}

static void ev_del_read(void *p)
{
    poll_update(p, 0, UV_READABLE);
}

static void ev_add_write(void *p)
{
    poll_update(p, UV_WRITABLE, 0);
}

static void ev_del_write(void *p)
{
    poll_update(p, 0, UV_WRITABLE);
}

static void on_retry(uv_timer_t *t);

static void conn_failed(sl_rl_redis_t *r, const char *why)
{
    r->state = ST_IDLE;
    r->stats.connected = 0;
    if (r->closing)
        return;
    if (!r->outage) {
        sl_log_warn("redis %s: cannot connect: %s; retrying", r->name, why);
        r->outage = 1;
    }
    uv_timer_start(&r->retry_timer, on_retry, r->backoff_ms, 0);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void on_retry(uv_timer_t *t)
{
    sl_rl_redis_t *r = t->data;
    if (r->state == ST_IDLE)
        start_connect(r);
    else if (r->state == ST_CONNECTING || r->state == ST_LOADING)
        force_drop(r, "connect timed out");
}

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *priv)
{
    sl_rl_redis_t *r = ac->data;
    redisReply *rep = reply;
    SL_UNUSED(priv);
    if (!rep || r->closing)
        return; /* the connection is going: on_disconnect handles it */
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        /* stays ST_LOADING: the connect timeout drops it and retries with backoff */
        if (!r->outage) {
            sl_log_warn("redis %s: SCRIPT LOAD failed: %.*s; retrying", r->name,
                        rep->type == REDIS_REPLY_ERROR ? (int)rep->len : 0,
                        rep->type == REDIS_REPLY_ERROR ? rep->str : "");
            r->outage = 1;
        }
        return;
    }
    memcpy(r->sha, rep->str, 40);
    r->sha[40] = '\0';
    if (r->state != ST_LOADING)
        return; /* a re-load after NOSCRIPT */
    uv_timer_stop(&r->retry_timer);
    r->state = ST_READY;
    r->stats.connected = 1;
    r->stats.connects++;
    r->backoff_ms = BACKOFF_MIN_MS;
    if (r->outage)
        sl_log_info("redis %s: connected again", r->name);
    r->outage = 0;
}

static int load_script(sl_rl_redis_t *r)
{
    const char *argv[3] = {"SCRIPT", "LOAD", SCRIPT};
    size_t len[3] = {6, 4, sizeof(SCRIPT) - 1};
    return redisAsyncCommandArgv(r->ac, on_script_loaded, NULL, 3, argv, len) == REDIS_OK ? 0
                                                                                          : SL_EIO;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    sl_rl_redis_t *r = cac->data;
    if (status != REDIS_OK) { /* hiredis frees the context after this returns */
        r->ac = NULL;
        uv_timer_stop(&r->retry_timer);
        conn_failed(r, cac->errstr[0] ? cac->errstr : "connect failed");
        return;
    }
    r->state = ST_LOADING; /* the connect timer keeps running until the script is loaded */
    if (load_script(r) != 0)
        force_drop(r, "cannot send SCRIPT LOAD");
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    sl_rl_redis_t *r = cac->data;
    int was_ready = r->stats.connected;
    const char *why = status == REDIS_OK && r->forced ? r->forced
                      : cac->errstr[0]                ? cac->errstr
                                                      : "closed";
    r->ac = NULL;
    r->dropping = 0;
    r->forced = NULL;
    r->stats.connected = 0;
    if (r->closing)
        return;
    uv_timer_stop(&r->retry_timer);
    if (was_ready)
        r->stats.disconnects++;
    if (!r->outage) {
        sl_log_warn("redis %s: connection lost: %s; retrying", r->name, why);
        r->outage = 1;
    }
    r->state = ST_IDLE;
    if (was_ready)
        r->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_start(&r->retry_timer, on_retry, r->backoff_ms, 0);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void start_connect(sl_rl_redis_t *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->ip, r->port);
    if (!ac) {
        conn_failed(r, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        conn_failed(r, why);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        ac->ev.cleanup = NULL; /* the adapter's cleanup would dereference its missing state */
        redisAsyncFree(ac);
        conn_failed(r, "cannot attach to the loop");
        return;
    }
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    r->ac = ac;
    r->state = ST_CONNECTING;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect); /* also arms the write watch */
    uv_timer_start(&r->retry_timer, on_retry, CONNECT_TIMEOUT_MS, 0);
}

/* --- decisions --- */

/* Redis's reply into checks[]; 1, 0, or SL_EIO for anything but the script's array. */
static int parse_reply(const redisReply *rep, sl_rl_check_t *checks, unsigned n)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 1 + 4 * (size_t)n)
        return SL_EIO;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type != REDIS_REPLY_INTEGER || rep->element[i]->integer < 0)
            return SL_EIO;
    for (unsigned i = 0; i < n; i++) {
        redisReply **e = rep->element + 1 + 4 * i;
        checks[i].allowed = e[0]->integer != 0;
        checks[i].remaining = (uint64_t)e[1]->integer;
        checks[i].reset_s = (uint64_t)e[2]->integer;
        checks[i].retry_after_s = (uint64_t)e[3]->integer;
    }
    return rep->element[0]->integer != 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* EVALSHA sha n key... (T tau dry)... for q. 0, or SL_EIO when hiredis refuses it. */
static int send_request(sl_rl_redis_t *r, struct req *q)
{
    const char *argv[3 + MAX_CHECKS * 4];
    size_t len[3 + MAX_CHECKS * 4];
    char nums[1 + MAX_CHECKS * 2][24];
    int argc = 0;

    argv[argc] = "EVALSHA";
    len[argc++] = 7;
    argv[argc] = r->sha;
    len[argc++] = 40;
    argv[argc] = nums[0];
    len[argc++] = (size_t)snprintf(nums[0], sizeof(nums[0]), "%u", q->n);
    for (unsigned i = 0; i < q->n; i++) {
        char *k = r->keybuf + i * r->key_size;
        memcpy(k, r->prefix, r->prefix_len);
        int m = snprintf(k + r->prefix_len, KEY_HEX_MAX, "%" PRIx32 ":%016" PRIx64,
                         q->checks[i].limit->id, q->checks[i].key);
        argv[argc] = k;
        len[argc++] = r->prefix_len + (size_t)m;
    }
    for (unsigned i = 0; i < q->n; i++) {
        const sl_rl_limit_t *l = q->checks[i].limit;
        /* ns -> µs: T rounded up, tau down, so never more permissive than configured */
        uint64_t t_us = (l->t_ns + 999) / 1000, tau_us = l->tau_ns / 1000;
        if (t_us == 0)
            t_us = 1;
        char *a = nums[1 + 2 * i], *b = nums[2 + 2 * i];
        argv[argc] = a;
        len[argc++] = (size_t)snprintf(a, 24, "%" PRIu64, t_us);
        argv[argc] = b;
        len[argc++] = (size_t)snprintf(b, 24, "%" PRIu64, tau_us);
        argv[argc] = l->dry_run ? "1" : "0";
        len[argc++] = 1;
    }
    return redisAsyncCommandArgv(r->ac, on_reply, q, argc, argv, len) == REDIS_OK ? 0 : SL_EIO;
}

static int is_noscript(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR && rep->len >= 8 && memcmp(rep->str, "NOSCRIPT", 8) == 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct req *q = priv;
    sl_rl_redis_t *r = q->r;
    redisReply *rep = reply;
    SL_UNUSED(ac);

    if (!rep) { /* the connection is being freed: every pending reply fails */
        if (r->ac && !r->dropping) {
            r->dropping = 1;
            if (r->state != ST_CLOSING)
                r->state = ST_DROPPING;
        }
    } else if (q->state == R_WAITING && is_noscript(rep) && !q->retried && r->state == ST_READY) {
        /* Redis lost the script (SCRIPT FLUSH, restart behind a proxy): load it and retry
         * once; pipelined, so the retry runs after the load. */
        q->retried = 1;
        if (load_script(r) == 0 && send_request(r, q) == 0)
            return;
    }
    if (q->state == R_WAITING) {
        int res = rep ? parse_reply(rep, q->checks, q->n) : SL_EIO;
        q->state = R_DONE;
        if (res == SL_EIO) {
            r->stats.errors++;
        } else {
            r->stats.latency_us_sum += (uv_hrtime() - q->sent_ns) / 1000;
            r->stats.latency_count++;
        }
        q->cb(q->arg, res);
    }
    req_unlink(r, q);
    req_put(r, q);
}

int sl_rl_redis_decide(sl_rl_redis_t *r, sl_rl_check_t *checks, unsigned n, sl_rl_redis_cb cb,
                       void *arg, void **handle)
{
    r->stats.calls++;
    if (r->state != ST_READY) {
        r->stats.not_connected++;
        return SL_EIO;
    }
    if (n == 0 || n > MAX_CHECKS || !cb || r->pending >= MAX_PENDING) {
        r->stats.errors++;
        return SL_EIO;
    }
    struct req *q = req_get(r);
    if (!q) {
        r->stats.errors++;
        return SL_EIO;
    }
    q->r = r;
    q->checks = checks;
    q->n = n;
    q->state = R_WAITING;
    q->retried = 0;
    q->cb = cb;
    q->arg = arg;
    q->sent_ms = uv_now(r->loop);
    q->deadline_ms = q->sent_ms + r->timeout_ms;
    q->sent_ns = uv_hrtime();
    if (send_request(r, q) != 0) {
        req_put(r, q);
        r->stats.errors++;
        return SL_EIO;
    }
    req_link(r, q);
    if (!uv_is_active((uv_handle_t *)&r->deadline_timer) || r->timer_due_ms > q->deadline_ms)
        arm(r);
    if (handle)
        *handle = q;
    return 0;
}

void sl_rl_redis_cancel(sl_rl_redis_t *r, void *handle)
{
    struct req *q = handle;
    SL_UNUSED(r);
    if (q && q->state == R_WAITING)
        q->state = R_DONE; /* stays linked: its reply (or the connection's end) frees it */
}

const sl_rl_redis_stats_t *sl_rl_redis_stats(const sl_rl_redis_t *r)
{
    return &r->stats;
}

/* --- life cycle --- */

sl_rl_redis_t *sl_rl_redis_new(uv_loop_t *loop, const sl_addr_t *addr, uint64_t timeout_ms,
                               const char *prefix)
{
    if (!prefix)
        prefix = "";
    sl_rl_redis_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->prefix_len = strlen(prefix);
    r->key_size = r->prefix_len + KEY_HEX_MAX;
    r->prefix = malloc(r->prefix_len + 1);
    r->keybuf = malloc(r->key_size * MAX_CHECKS);
    if (!r->prefix || !r->keybuf) {
        free(r->prefix);
        free(r->keybuf);
        free(r);
        return NULL;
    }
    memcpy(r->prefix, prefix, r->prefix_len + 1);
    r->loop = loop;
    r->timeout_ms = timeout_ms ? timeout_ms : 1;
    r->stall_ms = 4 * r->timeout_ms > STALL_MIN_MS ? 4 * r->timeout_ms : STALL_MIN_MS;
    r->backoff_ms = BACKOFF_MIN_MS;
    snprintf(r->name, sizeof(r->name), "%s", addr->text);
    if (addr->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&addr->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, r->ip, sizeof(r->ip));
        r->port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&addr->ss;
        inet_ntop(AF_INET, &s4->sin_addr, r->ip, sizeof(r->ip));
        r->port = ntohs(s4->sin_port);
    }
    uv_timer_init(loop, &r->deadline_timer);
    uv_timer_init(loop, &r->retry_timer);
    r->deadline_timer.data = r->retry_timer.data = r;
    r->open_handles = 2;
    r->state = ST_IDLE;
    start_connect(r);
    return r;
}

static void on_handle_closed(uv_handle_t *h)
{
    sl_rl_redis_t *r = h->data;
    if (--r->open_handles > 0)
        return;
    while (r->head) { /* only if hiredis still held replies: never expected */
        struct req *q = r->head;
        req_unlink(r, q);
        free(q);
    }
    while (r->free_list) {
        struct req *q = r->free_list;
        r->free_list = q->next;
        free(q);
    }
    free(r->prefix);
    free(r->keybuf);
    free(r);
}

void sl_rl_redis_close(sl_rl_redis_t *r)
{
    if (!r || r->closing)
        return;
    r->closing = 1;
    int prev = r->state;
    r->state = ST_CLOSING;
    r->stats.connected = 0;
    uv_timer_stop(&r->deadline_timer);
    uv_timer_stop(&r->retry_timer);
    /* Fails every pending reply (SL_EIO to the waiting callers), synchronously, or right
     * after the hiredis callback we may be inside of returns. */
    if (r->ac && !r->dropping) {
        redisAsyncContext *ac = r->ac;
        if (prev == ST_CONNECTING)
            r->ac = NULL;
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&r->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->retry_timer, on_handle_closed);
}
