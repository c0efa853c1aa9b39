/* redis_conn.c - one hiredis async connection on a libuv loop: connect, handshake, drop
 * detection, reconnect with backoff, the stall check; and the request FIFO its users share.
 * Never blocks; never frees a context inside a hiredis callback (a drop from there is
 * scheduled on the connection's timer).
 *
 * One uv_timer per connection does four jobs, one at a time: the backoff while IDLE, the
 * connect timeout while CONNECTING or in HANDSHAKE, a scheduled drop (DROPPING), and the
 * stall check while READY. The stall check is lazy: the timer is started when the first
 * reply becomes owed and, when it fires, re-started for the last reply + the limit if replies
 * came meanwhile, so a reply costs a store, not a timer update. */
#include "redis_conn.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "log.h"

#define BACKOFF_MIN_MS 100
#define CONNECT_TIMEOUT_MS 2000 /* TCP connect and the handshake */
#define STALL_MIN_MS 2000

enum { CS_IDLE, CS_CONNECTING, CS_HANDSHAKE, CS_READY, CS_DROPPING, CS_CLOSING };

static void start_connect(sl_redis_conn_t *c);
static void on_timer(uv_timer_t *t);

/* ---- the poll watchers ---- */

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
    int events = (p->events | add) & ~remove;
    if (events == p->events && uv_is_active((uv_handle_t *)&p->handle) == (events != 0))
        return; /* hiredis re-asks for reads after every write: no epoll_ctl for nothing */
    p->events = events;
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
    redisLibuvEvents *e = p;
    sl_redis_conn_t *c = e->context ? e->context->data : NULL;
    if (c && c->corked) {
        c->write_wanted = 1; /* sl_redis_conn_uncork writes */
        return;
    }
    poll_update(p, UV_WRITABLE, 0);
}

static void ev_del_write(void *p)
{
    redisLibuvEvents *e = p;
    sl_redis_conn_t *c = e->context ? e->context->data : NULL;
    if (c)
        c->write_wanted = 0;
    if (e->events & UV_WRITABLE)
        poll_update(p, 0, UV_WRITABLE);
}

void sl_redis_conn_cork(sl_redis_conn_t *c)
{
    c->corked = 1;
}

void sl_redis_conn_uncork(sl_redis_conn_t *c)
{
    c->corked = 0;
    if (c->write_wanted && c->ac && !c->dropping && !c->closing) {
        /* write now; hiredis asks for a write watch (a real one now) if some is left */
        c->write_wanted = 0;
        redisAsyncHandleWrite(c->ac);
    }
}

/* ---- logs ---- */

void sl_redis_conn_warn(sl_redis_conn_t *c, const char *fmt, ...)
{
    if (c->outage)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sl_log_warn("redis %s: %s", c->label, msg);
    c->outage = 1;
}

/* ---- connection states ---- */

/* A connection that was up is not: the down hook, once. */
static void lost(sl_redis_conn_t *c)
{
    if (!c->live)
        return;
    c->live = 0;
    if (!c->closing && c->cfg->down)
        c->cfg->down(c);
}

static void retry_later(sl_redis_conn_t *c)
{
    uv_timer_start(&c->timer, on_timer, c->backoff_ms, 0);
    c->backoff_ms =
        c->backoff_ms * 2 > c->cfg->backoff_max_ms ? c->cfg->backoff_max_ms : c->backoff_ms * 2;
}

/* A connect attempt failed before the connection was made (no context left). */
static void conn_failed(sl_redis_conn_t *c, const char *why)
{
    if (c->closing)
        return;
    c->state = CS_IDLE;
    sl_redis_conn_warn(c, "cannot connect: %s; retrying", why);
    retry_later(c);
}

/* Drop the connection from our side (timer context only, never inside a hiredis callback).
 * A connected context fails its pending replies and calls on_disconnect from inside
 * redisAsyncFree; one still connecting calls nothing, so the failure is handled here. */
static void force_drop(sl_redis_conn_t *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (!ac || c->dropping)
        return;
    if (!(ac->c.flags & REDIS_CONNECTED)) {
        c->ac = NULL;
        redisAsyncFree(ac);
        conn_failed(c, why);
        return;
    }
    c->forced = why;
    c->dropping = 1;
    c->state = CS_DROPPING;
    lost(c);
    redisAsyncFree(ac);
}

void sl_redis_conn_drop(sl_redis_conn_t *c, const char *why)
{
    if (!c->ac || c->dropping || c->closing)
        return;
    c->forced = why;
    c->state = CS_DROPPING;
    lost(c);
    uv_timer_start(&c->timer, on_timer, 0, 0);
}

/* READY: replies are owed and none came for stall_ms: drop; otherwise look again then. */
static void stall_check(sl_redis_conn_t *c)
{
    if (!c->inflight)
        return;
    uint64_t now = uv_now(c->loop), due = c->quiet_since + c->stall_ms;
    if (now >= due)
        force_drop(c, "no reply within the stall limit");
    else
        uv_timer_start(&c->timer, on_timer, due - now, 0);
}

static void on_timer(uv_timer_t *t)
{
    sl_redis_conn_t *c = t->data;
    if (c->closing)
        return;
    if (c->state == CS_IDLE)
        start_connect(c);
    else if (c->state == CS_READY)
        stall_check(c);
    else if (c->ac && !c->dropping)
        force_drop(c, c->forced                  ? c->forced
                      : c->state == CS_HANDSHAKE ? c->late
                                                 : "connect timed out");
}

int sl_redis_conn_ready(const sl_redis_conn_t *c)
{
    return c->state == CS_READY && !c->closing;
}

void sl_redis_conn_up(sl_redis_conn_t *c)
{
    if (c->state != CS_HANDSHAKE || c->closing)
        return;
    uv_timer_stop(&c->timer);
    c->state = CS_READY;
    c->up = c->live = 1;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->forced = NULL;
    c->inflight = 0;
    if (c->outage)
        sl_log_info("redis %s: connected again", c->label);
    c->outage = 0;
    if (c->cfg->up)
        c->cfg->up(c);
}

/* After PING's answer, or at once: the owner's handshake, if it has one. */
static void handshake_next(sl_redis_conn_t *c)
{
    if (c->cfg->handshake)
        c->cfg->handshake(c);
    else
        sl_redis_conn_up(c);
}

static void on_ping_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    sl_redis_conn_t *c = priv;
    redisReply *rep = reply;
    (void)ac;
    sl_redis_conn_replied(c, reply);
    if (!rep || c->state != CS_HANDSHAKE || c->closing)
        return;
    if (rep->type == REDIS_REPLY_STATUS) /* PONG */
        handshake_next(c);
    else
        sl_redis_conn_drop(c, "PING failed"); /* e.g. NOAUTH: retried with backoff */
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    sl_redis_conn_t *c = cac->data;
    if (status != REDIS_OK) { /* hiredis frees the context after this returns */
        c->ac = NULL;
        uv_timer_stop(&c->timer);
        conn_failed(c, cac->errstr[0] ? cac->errstr : "connect failed");
        return;
    }
    if (c->closing)
        return;
    redisEnableKeepAlive((redisContext *)&cac->c);
    c->state = CS_HANDSHAKE; /* the connect timer runs on until the handshake is answered */
    if (!c->cfg->ping) {
        handshake_next(c);
        return;
    }
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    if (sl_redis_conn_command(c, on_ping_reply, c, 1, argv, lens) != 0)
        sl_redis_conn_drop(c, "cannot send PING");
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    sl_redis_conn_t *c = cac->data;
    int was_up = c->up;
    const char *why = status == REDIS_OK && c->forced ? c->forced
                      : cac->errstr[0]                ? cac->errstr
                                                      : "closed";
    c->ac = NULL;
    c->dropping = 0;
    c->up = 0;
    lost(c);
    if (c->closing)
        return;
    uv_timer_stop(&c->timer);
    if (was_up)
        c->backoff_ms = BACKOFF_MIN_MS;
    sl_redis_conn_warn(c, "connection lost: %s; retrying", why);
    c->forced = NULL;
    c->state = CS_IDLE;
    c->inflight = 0;
    retry_later(c);
}

static void start_connect(sl_redis_conn_t *c)
{
    redisAsyncContext *ac = redisAsyncConnect(c->ip, c->port);
    if (!ac) {
        conn_failed(c, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        conn_failed(c, why);
        return;
    }
    ac->data = c;
    if (redisLibuvAttach(ac, c->loop) != REDIS_OK) {
        ac->ev.cleanup = NULL; /* the adapter's cleanup would dereference its missing state */
        redisAsyncFree(ac);
        conn_failed(c, "cannot attach to the loop");
        return;
    }
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    c->ac = ac;
    c->state = CS_CONNECTING;
    c->forced = NULL;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect); /* also arms the write watch */
    uv_timer_start(&c->timer, on_timer, CONNECT_TIMEOUT_MS, 0);
}

/* ---- commands ---- */

int sl_redis_conn_command(sl_redis_conn_t *c, sl_redis_reply_fn *fn, void *priv, int argc,
                          const char **argv, const size_t *lens)
{
    if (!c->ac || c->dropping || c->closing || c->state == CS_DROPPING)
        return SL_EIO;
    if (redisAsyncCommandArgv(c->ac, fn, priv, argc, argv, lens) != REDIS_OK)
        return SL_EIO;
    if (fn && c->stall_ms && c->inflight++ == 0) {
        c->quiet_since = uv_now(c->loop);
        if (c->state == CS_READY && !uv_is_active((uv_handle_t *)&c->timer))
            uv_timer_start(&c->timer, on_timer, c->stall_ms, 0);
    }
    return 0;
}

void sl_redis_conn_replied(sl_redis_conn_t *c, const void *reply)
{
    if (c->inflight)
        c->inflight--;
    if (reply) {
        c->quiet_since = uv_now(c->loop);
        return;
    }
    /* hiredis is freeing the context: new commands must not go to it */
    if (c->ac && !c->dropping) {
        c->dropping = 1;
        if (!c->closing)
            c->state = CS_DROPPING;
    }
    lost(c);
}

/* ---- life cycle ---- */

void sl_redis_conn_init(sl_redis_conn_t *c, uv_loop_t *loop, const sl_addr_t *addr,
                        uint64_t timeout_ms, const sl_redis_conn_cfg_t *cfg, void *data)
{
    memset(c, 0, sizeof(*c));
    c->data = data;
    c->cfg = cfg;
    c->loop = loop;
    c->state = CS_IDLE;
    c->backoff_ms = BACKOFF_MIN_MS;
    if (cfg->stall) {
        uint64_t t = timeout_ms ? timeout_ms : 1;
        c->stall_ms = 4 * t > STALL_MIN_MS ? 4 * t : STALL_MIN_MS;
    }
    if (cfg->what)
        snprintf(c->label, sizeof(c->label), "%s: %s", addr->text, cfg->what);
    else
        snprintf(c->label, sizeof(c->label), "%s", addr->text);
    if (cfg->awaits)
        snprintf(c->late, sizeof(c->late), "%s not answered", cfg->awaits);
    else
        snprintf(c->late, sizeof(c->late), "%s",
                 cfg->ping ? "PING not answered" : "connect timed out");
    if (addr->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&addr->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, c->ip, sizeof(c->ip));
        c->port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&addr->ss;
        inet_ntop(AF_INET, &s4->sin_addr, c->ip, sizeof(c->ip));
        c->port = ntohs(s4->sin_port);
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
}

void sl_redis_conn_start(sl_redis_conn_t *c)
{
    if (c->state == CS_IDLE && !c->closing && !uv_is_active((uv_handle_t *)&c->timer))
        start_connect(c);
}

static void on_closed(uv_handle_t *h)
{
    sl_redis_conn_t *c = h->data;
    if (c->closed)
        c->closed(c);
}

void sl_redis_conn_close(sl_redis_conn_t *c, void (*closed)(sl_redis_conn_t *c))
{
    if (c->closing)
        return;
    c->closing = 1;
    c->closed = closed;
    c->state = CS_CLOSING;
    c->live = 0; /* no down hook for a close */
    uv_timer_stop(&c->timer);
    if (c->ac && !c->dropping) {
        redisAsyncContext *ac = c->ac;
        if (!(ac->c.flags & REDIS_CONNECTED))
            c->ac = NULL; /* hiredis calls no disconnect callback for it */
        c->dropping = 1;
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

/* ---- requests with deadlines ---- */

void sl_redis_reqs_push(sl_redis_reqs_t *l, sl_redis_req_t *q)
{
    q->next = NULL;
    q->prev = l->tail;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    if (!l->cursor)
        l->cursor = q;
    l->n++;
}

void sl_redis_reqs_remove(sl_redis_reqs_t *l, sl_redis_req_t *q)
{
    if (l->cursor == q)
        l->cursor = q->next;
    if (q->prev)
        q->prev->next = q->next;
    else
        l->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        l->tail = q->prev;
    l->n--;
}

uint64_t sl_redis_reqs_due(sl_redis_reqs_t *l)
{
    while (l->cursor && !l->cursor->waiting)
        l->cursor = l->cursor->next;
    return l->cursor ? l->cursor->deadline_ms : UINT64_MAX;
}

sl_redis_req_t *sl_redis_reqs_expire(sl_redis_reqs_t *l, uint64_t now)
{
    sl_redis_req_t *q;
    while ((q = l->cursor) != NULL) {
        l->cursor = q->next;
        if (q->waiting) {
            if (q->deadline_ms > now) {
                l->cursor = q;
                return NULL;
            }
            q->waiting = 0; /* freed when its reply comes, or the connection goes */
            return q;
        }
    }
    return NULL;
}

void sl_redis_timer_set(uv_timer_t *t, uv_timer_cb cb, uint64_t due, uint64_t *armed)
{
    if (due == UINT64_MAX) {
        uv_timer_stop(t);
        return;
    }
    uint64_t now = uv_now(t->loop);
    *armed = due;
    uv_timer_start(t, cb, due > now ? due - now : 0, 0);
}
