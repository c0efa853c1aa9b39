/* ratelimit_redis.c - the shared GCRA limiter: a Lua script in Redis decides, on a hiredis
 * async connection attached to one worker's libuv loop. Owns the connection (connect,
 * SCRIPT LOAD, reconnect with backoff), the batches, the FIFO of pending decisions and their
 * deadlines. Never blocks; every decision calls back exactly once within timeout_ms (or
 * never, if cancelled); a request object lives until Redis answered it or the connection is
 * gone.
 *
 * Batches: the decisions asked for during one loop iteration go out as one EVALSHA (a uv_idle
 * handle sends them before the loop polls again, so no decision waits longer than it would
 * have alone): the script decides them one after another, each as the single-request script
 * would, so two requests for one key in one batch see each other. Redis runs one script call
 * instead of one per request, and the worker parses one reply. A batch's arguments are
 * formatted when each decision is asked for (the caller's checks may be gone by send time if
 * it cancels) and kept until the reply, for the one re-send after NOSCRIPT.
 *
 * Pending list: requests in send order, each still owned by hiredis (its reply callback
 * frees it). Deadlines are send time + timeout_ms, so they are in list order too: the
 * requests already answered by the timer (or cancelled) before their reply form a prefix
 * plus holes, and `cursor` points past the prefix; one uv_timer serves the whole list.
 * A connection that leaves its oldest request unanswered for STALL_MS (hung server, lost
 * peer without a FIN) is dropped and re-made, so abandoned requests do not pile up. */
#include "ratelimit_redis.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "../core/log.h"

#define MAX_CHECKS 16
#define MAX_PENDING 4096 /* requests sent and not yet answered by Redis, per connection */
#define BATCH_REQS 64    /* decisions in one EVALSHA, at most */
#define BATCH_KEYS 256   /* keys in one EVALSHA, at most (a request has up to MAX_CHECKS) */
#define BATCH_ARGS (BATCH_REQS + 3 * BATCH_KEYS) /* ARGV entries */
#define FREE_BATCHES 8   /* batch objects kept for reuse */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 2000 /* TCP connect + SCRIPT LOAD */
#define STALL_MIN_MS 2000       /* oldest request unanswered this long (or 4 x timeout): drop */
#define KEY_HEX_MAX 26          /* "ffffffff:" + 16 hex digits + NUL */

/* The decisions, each the same as sl_rl_decide's (ratelimit.c) in microseconds of Redis's
 * clock, one request after another. ARGV, per request: its number of limits k, then per limit
 * T, tau (µs) and dry_run; KEYS: every request's k keys in the same order (the TAT of each
 * limit; absent = a full budget). A request passes when every limit that is not dry_run
 * allows it; then each limit that allows it advances. Integers stay below 2^53, so Lua's
 * doubles hold them exactly, and redis.call writes a number argument with all its digits
 * (%.17g). Returns one integer per key: 2 x d + allowed, where d = the limit's TAT after the
 * decision minus now (>= 0); the worker derives everything else (pass, remaining, reset,
 * retry) from d, T and tau, as sl_rl_decide does. Each TAT expires when it has drained.
 * Measured on redis-server 7.0, 20 decisions a call: see docs/ratelimit.md. */
static const char SCRIPT[] =
    "local call, tonumber, ceil = redis.call, tonumber, math.ceil\n"
    "local t = call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local out = {}\n"
    "local a, kb = 1, 0\n"
    "local nargs = #ARGV\n"
    "local st, ok = {}, {}\n"
    "while a <= nargs do\n"
    "  local n = tonumber(ARGV[a])\n"
    "  local pass = true\n"
    "  for i = 1, n do\n"
    "    local p = a + 3 * i - 2\n"
    "    local s = tonumber(call('GET', KEYS[kb + i]) or '') or 0\n"
    "    local good = s <= now or s - now <= tonumber(ARGV[p + 1])\n"
    "    st[i], ok[i] = s, good\n"
    "    if not good and ARGV[p + 2] == '0' then pass = false end\n"
    "  end\n"
    "  for i = 1, n do\n"
    "    local s, good = st[i], ok[i]\n"
    "    if pass and good then\n"
    "      if s < now then s = now end\n"
    "      s = s + tonumber(ARGV[a + 3 * i - 2])\n"
    "      call('SET', KEYS[kb + i], s, 'PX', ceil((s - now) / 1000))\n"
    "    end\n"
    "    local d = 0\n"
    "    if s > now then d = s - now end\n"
    "    out[kb + i] = good and d * 2 + 1 or d * 2\n"
    "  end\n"
    "  a = a + 1 + 3 * n\n"
    "  kb = kb + n\n"
    "end\n"
    "return out\n";

enum { ST_IDLE, ST_CONNECTING, ST_LOADING, ST_READY, ST_DROPPING, ST_CLOSING };
enum { R_WAITING, R_DONE }; /* R_DONE: called back (timeout) or cancelled; reply pending */

struct req {
    struct req *prev, *next; /* pending list; next alone in the free list */
    sl_rl_check_t *checks;
    unsigned n;
    int state;
    sl_rl_redis_cb cb;
    void *arg;
    uint64_t sent_ms, deadline_ms; /* loop time */
    uint64_t sent_ns;              /* uv_hrtime, for latency */
};

/* One EVALSHA: its requests in order and their arguments, formatted as they were added. */
struct batch {
    struct batch *next; /* open list, or free list */
    sl_rl_redis_t *r;
    struct req *reqs[BATCH_REQS];
    unsigned nreq, nkeys, nargs;
    int retried;                 /* NOSCRIPT re-send done */
    char *kbuf, *abuf;           /* keys, ARGV entries: each entry's bytes back to back */
    size_t klen, alen;           /* bytes used */
    uint32_t kl[BATCH_KEYS];     /* key lengths */
    uint8_t al[BATCH_ARGS];      /* ARGV entry lengths (<= 20) */
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
    size_t key_size; /* bytes a key takes at most */
    struct req *head, *tail, *cursor; /* cursor: first request that may still be R_WAITING */
    unsigned pending;                 /* requests in the list */
    struct req *free_list;
    uv_idle_t flusher;                 /* sends the open batches before the loop polls */
    struct batch *open_head, *open_tail; /* not sent yet */
    struct batch *free_batches;
    unsigned nfree_batches;
    int flushing;      /* inside flush(): see ev_add_write */
    int write_wanted;  /* hiredis has output waiting that no poll watches for yet */
    const char **argv; /* scratch for sending a batch: 3 + BATCH_KEYS + BATCH_ARGS */
    size_t *argl;
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

/* While flush() sends batches, a request to watch for writability is only noted: flush
 * writes the output itself once at the end (the socket is almost always writable), and only
 * what is left goes to the poll handle. That saves two epoll_ctl calls per batch. */
static void ev_add_write(void *p)
{
    redisLibuvEvents *e = p;
    sl_rl_redis_t *r = e->context ? e->context->data : NULL;
    if (r && r->flushing) {
        r->write_wanted = 1;
        return;
    }
    poll_update(p, UV_WRITABLE, 0);
}

static void ev_del_write(void *p)
{
    redisLibuvEvents *e = p;
    sl_rl_redis_t *r = e->context ? e->context->data : NULL;
    if (r)
        r->write_wanted = 0;
    if (e->events & UV_WRITABLE)
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

/* --- batches --- */

static struct batch *batch_get(sl_rl_redis_t *r)
{
    struct batch *b = r->free_batches;
    if (b) {
        r->free_batches = b->next;
        r->nfree_batches--;
    } else {
        b = calloc(1, sizeof(*b));
        if (!b)
            return NULL;
        /* sized for a full batch once, so adding to it never allocates */
        b->kbuf = malloc(BATCH_KEYS * r->key_size);
        b->abuf = malloc(BATCH_ARGS * 21);
        if (!b->kbuf || !b->abuf) {
            free(b->kbuf);
            free(b->abuf);
            free(b);
            return NULL;
        }
    }
    b->next = NULL;
    b->r = r;
    b->nreq = b->nkeys = b->nargs = 0;
    b->klen = b->alen = 0;
    b->retried = 0;
    return b;
}

static void batch_free(struct batch *b)
{
    free(b->kbuf);
    free(b->abuf);
    free(b);
}

static void batch_put(sl_rl_redis_t *r, struct batch *b)
{
    if (r->nfree_batches >= FREE_BATCHES) {
        batch_free(b);
        return;
    }
    b->next = r->free_batches;
    r->free_batches = b;
    r->nfree_batches++;
}

static void put_arg(struct batch *b, uint64_t v)
{
    size_t n = sl_u64_dec(b->abuf + b->alen, v);
    b->alen += n;
    b->al[b->nargs++] = (uint8_t)n;
}

/* The Redis key of a check: prefix + limit id in hex + ':' + the key hash in 16 hex digits. */
static void put_key(sl_rl_redis_t *r, struct batch *b, const sl_rl_check_t *c)
{
    static const char hex[] = "0123456789abcdef";
    char *k = b->kbuf + b->klen, *o = k;
    memcpy(o, r->prefix, r->prefix_len);
    o += r->prefix_len;
    uint32_t id = c->limit->id;
    int digits = 1;
    while (digits < 8 && (id >> (4 * digits)))
        digits++;
    for (int i = digits - 1; i >= 0; i--)
        *o++ = hex[(id >> (4 * i)) & 15];
    *o++ = ':';
    for (int i = 15; i >= 0; i--)
        *o++ = hex[(c->key >> (4 * i)) & 15];
    b->kl[b->nkeys++] = (uint32_t)(o - k);
    b->klen += (size_t)(o - k);
}

/* Add q's checks to b (room was checked): the keys, then k and (T, tau, dry_run) per limit. */
static void limit_us(const sl_rl_limit_t *l, uint64_t *t_us, uint64_t *tau_us);

static void batch_add(sl_rl_redis_t *r, struct batch *b, struct req *q)
{
    b->reqs[b->nreq++] = q;
    put_arg(b, q->n);
    for (unsigned i = 0; i < q->n; i++) {
        const sl_rl_limit_t *l = q->checks[i].limit;
        uint64_t t_us, tau_us;
        limit_us(l, &t_us, &tau_us);
        put_key(r, b, &q->checks[i]);
        put_arg(b, t_us);
        put_arg(b, tau_us);
        put_arg(b, l->dry_run != 0);
    }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* EVALSHA sha nkeys keys... args... for b. 0, or SL_EIO when hiredis refuses it. hiredis
 * copies the command into its output buffer, so r->argv is scratch. */
static int batch_send(sl_rl_redis_t *r, struct batch *b)
{
    char nkeys[24];
    unsigned argc = 0;
    r->argv[argc] = "EVALSHA";
    r->argl[argc++] = 7;
    r->argv[argc] = r->sha;
    r->argl[argc++] = 40;
    r->argv[argc] = nkeys;
    r->argl[argc++] = sl_u64_dec(nkeys, b->nkeys);
    const char *p = b->kbuf;
    for (unsigned i = 0; i < b->nkeys; p += b->kl[i], i++) {
        r->argv[argc] = p;
        r->argl[argc++] = b->kl[i];
    }
    p = b->abuf;
    for (unsigned i = 0; i < b->nargs; p += b->al[i], i++) {
        r->argv[argc] = p;
        r->argl[argc++] = b->al[i];
    }
    if (redisAsyncCommandArgv(r->ac, on_reply, b, (int)argc, r->argv, r->argl) != REDIS_OK)
        return SL_EIO;
    r->stats.batches++;
    return 0;
}

/* Every request of b that still waits gets SL_EIO (counted as an error); all are freed. */
static void batch_fail(sl_rl_redis_t *r, struct batch *b)
{
    for (unsigned i = 0; i < b->nreq; i++) {
        struct req *q = b->reqs[i];
        if (q->state == R_WAITING) {
            q->state = R_DONE;
            r->stats.errors++;
            q->cb(q->arg, SL_EIO);
        }
        req_unlink(r, q);
        req_put(r, q);
    }
    batch_put(r, b);
}

/* Send every open batch (the idle callback, and close). One that cannot go fails. */
static void flush(sl_rl_redis_t *r)
{
    struct batch *b;
    r->flushing = 1;
    while ((b = r->open_head) != NULL) {
        r->open_head = b->next;
        if (!r->open_head)
            r->open_tail = NULL;
        b->next = NULL;
        if (r->state != ST_READY || r->closing || batch_send(r, b) != 0)
            batch_fail(r, b);
    }
    r->flushing = 0;
    if (r->write_wanted && r->ac && !r->closing) {
        /* write now; hiredis asks for a write watch (a real one now) if some is left */
        r->write_wanted = 0;
        redisAsyncHandleWrite(r->ac);
    }
    if (!r->closing)
        arm(r);
}

static void on_idle(uv_idle_t *h)
{
    sl_rl_redis_t *r = h->data;
    uv_idle_stop(h);
    flush(r);
}

/* --- decisions --- */

/* T and tau of a limit in µs, as sent to Redis: T rounded up, tau down, so never more
 * permissive than configured. */
static void limit_us(const sl_rl_limit_t *l, uint64_t *t_us, uint64_t *tau_us)
{
    *t_us = (l->t_ns + 999) / 1000;
    if (*t_us == 0)
        *t_us = 1;
    *tau_us = l->tau_ns / 1000;
}

/* One request's part of the reply (elements from *at, one per limit: 2 x d + allowed) into
 * out[0..n), with the limits of checks: 1 passed, 0 rejected, SL_EIO when malformed. */
static int parse_one(const redisReply *rep, size_t *at, const sl_rl_check_t *checks,
                     sl_rl_check_t *out, unsigned n)
{
    if (rep->elements - *at < n)
        return SL_EIO;
    redisReply **e = rep->element + *at;
    int pass = 1;
    for (unsigned i = 0; i < n; i++) {
        if (e[i]->type != REDIS_REPLY_INTEGER || e[i]->integer < 0)
            return SL_EIO;
        uint64_t v = (uint64_t)e[i]->integer, d = v >> 1, t, tau;
        limit_us(checks[i].limit, &t, &tau);
        int ok = (int)(v & 1);
        out[i].allowed = ok;
        out[i].remaining = d > tau ? 0 : (tau - d) / t + 1;
        out[i].reset_s = (d + 999999) / 1000000;
        out[i].retry_after_s = ok ? 0 : d > tau ? (d - tau + 999999) / 1000000 : 1;
        if (!ok && !checks[i].limit->dry_run)
            pass = 0;
    }
    *at += n;
    return pass;
}

static int is_noscript(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR && rep->len >= 8 && memcmp(rep->str, "NOSCRIPT", 8) == 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct batch *b = priv;
    sl_rl_redis_t *r = b->r;
    redisReply *rep = reply;
    SL_UNUSED(ac);

    if (!rep) { /* the connection is being freed: every pending reply fails */
        if (r->ac && !r->dropping) {
            r->dropping = 1;
            if (r->state != ST_CLOSING)
                r->state = ST_DROPPING;
        }
    } else if (is_noscript(rep) && !b->retried && r->state == ST_READY) {
        /* Redis lost the script (SCRIPT FLUSH, restart behind a proxy): load it and send the
         * batch once more; pipelined, so the re-send runs after the load. */
        b->retried = 1;
        if (load_script(r) == 0 && batch_send(r, b) == 0)
            return;
    }
    /* one element per key; parsed into tmp, so a malformed reply leaves checks untouched */
    int good = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == b->nkeys;
    size_t at = 0;
    uint64_t now_ns = uv_hrtime();
    for (unsigned i = 0; i < b->nreq; i++) {
        struct req *q = b->reqs[i];
        if (q->state == R_WAITING) {
            sl_rl_check_t tmp[MAX_CHECKS];
            int res = good ? parse_one(rep, &at, q->checks, tmp, q->n) : SL_EIO;
            q->state = R_DONE;
            if (res == SL_EIO) {
                good = 0; /* the rest of the reply cannot be trusted either */
                r->stats.errors++;
            } else {
                for (unsigned k = 0; k < q->n; k++) {
                    q->checks[k].allowed = tmp[k].allowed;
                    q->checks[k].remaining = tmp[k].remaining;
                    q->checks[k].reset_s = tmp[k].reset_s;
                    q->checks[k].retry_after_s = tmp[k].retry_after_s;
                }
                r->stats.latency_us_sum += (now_ns - q->sent_ns) / 1000;
                r->stats.latency_count++;
            }
            q->cb(q->arg, res);
        } else {
            at += q->n; /* cancelled or timed out: its checks may be gone */
        }
        req_unlink(r, q);
        req_put(r, q);
    }
    batch_put(r, b);
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
    struct batch *b = r->open_tail;
    if (!b || b->nreq == BATCH_REQS || b->nkeys + n > BATCH_KEYS) {
        b = batch_get(r);
        if (!b) {
            r->stats.errors++;
            return SL_EIO;
        }
    }
    struct req *q = req_get(r);
    if (!q) {
        if (b != r->open_tail)
            batch_put(r, b);
        r->stats.errors++;
        return SL_EIO;
    }
    if (b != r->open_tail) {
        if (r->open_tail)
            r->open_tail->next = b;
        else
            r->open_head = b;
        r->open_tail = b;
    }
    q->checks = checks;
    q->n = n;
    q->state = R_WAITING;
    q->cb = cb;
    q->arg = arg;
    q->sent_ms = uv_now(r->loop);
    q->deadline_ms = q->sent_ms + r->timeout_ms;
    q->sent_ns = uv_hrtime();
    batch_add(r, b, q);
    req_link(r, q);
    if (!uv_is_active((uv_handle_t *)&r->flusher))
        uv_idle_start(&r->flusher, on_idle);
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
    r->argv = malloc((3 + BATCH_KEYS + BATCH_ARGS) * sizeof(*r->argv));
    r->argl = malloc((3 + BATCH_KEYS + BATCH_ARGS) * sizeof(*r->argl));
    if (!r->prefix || !r->argv || !r->argl) {
        free(r->prefix);
        free(r->argv);
        free(r->argl);
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
    uv_idle_init(loop, &r->flusher);
    r->deadline_timer.data = r->retry_timer.data = r->flusher.data = r;
    r->open_handles = 3;
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
    while (r->free_batches) {
        struct batch *b = r->free_batches;
        r->free_batches = b->next;
        batch_free(b);
    }
    free(r->prefix);
    free(r->argv);
    free(r->argl);
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
    uv_idle_stop(&r->flusher);
    flush(r); /* closing: the batches not sent yet fail (SL_EIO to their callers) */
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
    uv_close((uv_handle_t *)&r->flusher, on_handle_closed);
}
