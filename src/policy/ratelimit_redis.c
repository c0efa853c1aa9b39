/* ratelimit_redis.c - the shared GCRA limiter: a Lua script in Redis decides, on a hiredis
 * async connection (core/redis_conn: connect, reconnect with backoff, stall check) attached to
 * one worker's libuv loop. Owns the script (SCRIPT LOAD on every connect: the connection's
 * handshake), the batches, the FIFO of pending decisions and their deadlines. Never blocks;
 * every decision calls back exactly once within timeout_ms (or never, if cancelled); a
 * request object lives until Redis answered it or the connection is gone.
 *
 * Batches: the decisions asked for during one loop iteration go out as one EVALSHA (a uv_idle
 * handle sends them before the loop polls again, so no decision waits longer than it would
 * have alone): the script decides them one after another, each as the single-request script
 * would, so two requests for one key in one batch see each other. Redis runs one script call
 * instead of one per request, and the worker parses one reply. A batch's arguments are
 * formatted when each decision is asked for (the caller's checks may be gone by send time if
 * it cancels) and kept until the reply, for the one re-send after NOSCRIPT.
 *
 * Pending list: requests in send order (an sl_redis_reqs_t), each still owned by hiredis (its
 * reply callback frees it); one uv_timer serves their deadlines. A connection that owes
 * replies and gets none for max(4 x timeout_ms, 2 s) (hung server, lost peer without a FIN)
 * is dropped and re-made by redis_conn, so abandoned requests do not pile up. */
#include "ratelimit_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "../core/log.h"
#include "../core/redis_conn.h"

#define MAX_CHECKS 16
#define MAX_PENDING 4096 /* requests sent and not yet answered by Redis, per connection */
#define BATCH_REQS 64    /* decisions in one EVALSHA, at most */
#define BATCH_KEYS 256   /* keys in one EVALSHA, at most (a request has up to MAX_CHECKS) */
#define BATCH_ARGS (BATCH_REQS + 3 * BATCH_KEYS) /* ARGV entries */
#define FREE_BATCHES 8   /* batch objects kept for reuse */
#define BACKOFF_MAX_MS 5000
#define KEY_HEX_MAX 26 /* "ffffffff:" + 16 hex digits + NUL */

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

struct req {
    sl_redis_req_t rq; /* pending list; rq.next alone in the free list */
    sl_rl_check_t *checks;
    unsigned n;
    sl_rl_redis_cb cb;
    void *arg;
    uint64_t sent_ns; /* uv_hrtime, for latency */
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
    sl_redis_conn_t conn;
    uv_timer_t deadline_timer; /* the oldest pending deadline */
    int closing;               /* sl_rl_redis_close was called */
    int open_handles;          /* handles (and the connection) not yet closed */
    uint64_t timeout_ms;
    uint64_t timer_due_ms; /* when deadline_timer fires, if active */
    char sha[41];
    char *prefix;
    size_t prefix_len;
    size_t key_size;      /* bytes a key takes at most */
    sl_redis_reqs_t reqs; /* the pending list */
    struct req *free_list;
    uv_idle_t flusher;                   /* sends the open batches before the loop polls */
    struct batch *open_head, *open_tail; /* not sent yet */
    struct batch *free_batches;
    unsigned nfree_batches;
    const char **argv; /* scratch for sending a batch: 3 + BATCH_KEYS + BATCH_ARGS */
    size_t *argl;
    sl_rl_redis_stats_t stats;
};

/* --- request objects: allocated on first need, recycled through a free list --- */

static struct req *req_get(sl_rl_redis_t *r)
{
    struct req *q = r->free_list;
    if (q) {
        r->free_list = (struct req *)q->rq.next;
        return q;
    }
    return malloc(sizeof(*q));
}

static void req_put(sl_rl_redis_t *r, struct req *q)
{
    q->rq.next = r->free_list ? &r->free_list->rq : NULL;
    r->free_list = q;
}

/* --- deadlines --- */

static void on_deadline(uv_timer_t *t);

/* Arm the timer for the first waiting request's deadline. */
static void arm(sl_rl_redis_t *r)
{
    sl_redis_timer_set(&r->deadline_timer, on_deadline, sl_redis_reqs_due(&r->reqs),
                       &r->timer_due_ms);
}

static void on_deadline(uv_timer_t *t)
{
    sl_rl_redis_t *r = t->data;
    sl_redis_req_t *e;
    while ((e = sl_redis_reqs_expire(&r->reqs, uv_now(r->loop))) != NULL) {
        struct req *q = (struct req *)e;
        r->stats.timeouts++;
        q->cb(q->arg, SL_EIO);
        if (r->closing)
            return;
    }
    arm(r);
}

/* --- the connection: SCRIPT LOAD is its handshake --- */

static int load_script(sl_rl_redis_t *r);

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *priv)
{
    sl_rl_redis_t *r = priv;
    redisReply *rep = reply;
    SL_UNUSED(ac);
    sl_redis_conn_replied(&r->conn, reply);
    if (!rep || r->closing)
        return; /* the connection is going */
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        /* not up yet: the connect timeout drops it and retries with backoff */
        sl_redis_conn_warn(&r->conn, "SCRIPT LOAD failed: %.*s; retrying",
                           rep->type == REDIS_REPLY_ERROR ? (int)rep->len : 0,
                           rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        return;
    }
    memcpy(r->sha, rep->str, 40);
    r->sha[40] = '\0';
    sl_redis_conn_up(&r->conn); /* ignored after a re-load for NOSCRIPT: up already */
}

static int load_script(sl_rl_redis_t *r)
{
    const char *argv[3] = {"SCRIPT", "LOAD", SCRIPT};
    size_t len[3] = {6, 4, sizeof(SCRIPT) - 1};
    return sl_redis_conn_command(&r->conn, on_script_loaded, r, 3, argv, len);
}

static void conn_handshake(sl_redis_conn_t *c)
{
    if (load_script(c->data) != 0)
        sl_redis_conn_drop(c, "cannot send SCRIPT LOAD");
}

static void conn_up(sl_redis_conn_t *c)
{
    sl_rl_redis_t *r = c->data;
    r->stats.connected = 1;
    r->stats.connects++;
}

static void conn_down(sl_redis_conn_t *c)
{
    sl_rl_redis_t *r = c->data;
    r->stats.connected = 0;
    r->stats.disconnects++;
}

static const sl_redis_conn_cfg_t conn_cfg = {
    .what = NULL,
    .ping = 0, /* SCRIPT LOAD's answer proves the server alive */
    .awaits = NULL,
    .stall = 1,
    .backoff_max_ms = BACKOFF_MAX_MS,
    .handshake = conn_handshake,
    .up = conn_up,
    .down = conn_down,
};

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
    if (sl_redis_conn_command(&r->conn, on_reply, b, (int)argc, r->argv, r->argl) != 0)
        return SL_EIO;
    r->stats.batches++;
    return 0;
}

/* Every request of b that still waits gets SL_EIO (counted as an error); all are freed. */
static void batch_fail(sl_rl_redis_t *r, struct batch *b)
{
    for (unsigned i = 0; i < b->nreq; i++) {
        struct req *q = b->reqs[i];
        if (q->rq.waiting) {
            q->rq.waiting = 0;
            r->stats.errors++;
            q->cb(q->arg, SL_EIO);
        }
        sl_redis_reqs_remove(&r->reqs, &q->rq);
        req_put(r, q);
    }
    batch_put(r, b);
}

/* Send every open batch (the idle callback, and close). One that cannot go fails. */
static void flush(sl_rl_redis_t *r)
{
    struct batch *b;
    sl_redis_conn_cork(&r->conn);
    while ((b = r->open_head) != NULL) {
        r->open_head = b->next;
        if (!r->open_head)
            r->open_tail = NULL;
        b->next = NULL;
        if (!sl_redis_conn_ready(&r->conn) || r->closing || batch_send(r, b) != 0)
            batch_fail(r, b);
    }
    sl_redis_conn_uncork(&r->conn); /* one write for every batch sent */
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

    /* NULL: the connection is being freed: every pending reply fails */
    sl_redis_conn_replied(&r->conn, reply);
    if (rep && is_noscript(rep) && !b->retried && sl_redis_conn_ready(&r->conn)) {
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
        if (q->rq.waiting) {
            sl_rl_check_t tmp[MAX_CHECKS];
            int res = good ? parse_one(rep, &at, q->checks, tmp, q->n) : SL_EIO;
            q->rq.waiting = 0;
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
        sl_redis_reqs_remove(&r->reqs, &q->rq);
        req_put(r, q);
    }
    batch_put(r, b);
}

int sl_rl_redis_decide(sl_rl_redis_t *r, sl_rl_check_t *checks, unsigned n, sl_rl_redis_cb cb,
                       void *arg, void **handle)
{
    r->stats.calls++;
    if (!sl_redis_conn_ready(&r->conn)) {
        r->stats.not_connected++;
        return SL_EIO;
    }
    if (n == 0 || n > MAX_CHECKS || !cb || r->reqs.n >= MAX_PENDING) {
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
    q->rq.waiting = 1;
    q->rq.deadline_ms = uv_now(r->loop) + r->timeout_ms;
    q->cb = cb;
    q->arg = arg;
    q->sent_ns = uv_hrtime();
    batch_add(r, b, q);
    sl_redis_reqs_push(&r->reqs, &q->rq);
    if (!uv_is_active((uv_handle_t *)&r->flusher))
        uv_idle_start(&r->flusher, on_idle);
    if (!uv_is_active((uv_handle_t *)&r->deadline_timer) || r->timer_due_ms > q->rq.deadline_ms)
        arm(r);
    if (handle)
        *handle = q;
    return 0;
}

void sl_rl_redis_cancel(sl_rl_redis_t *r, void *handle)
{
    struct req *q = handle;
    SL_UNUSED(r);
    if (q && q->rq.waiting)
        q->rq.waiting = 0; /* stays linked: its reply (or the connection's end) frees it */
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
    uv_timer_init(loop, &r->deadline_timer);
    uv_idle_init(loop, &r->flusher);
    r->deadline_timer.data = r->flusher.data = r;
    sl_redis_conn_init(&r->conn, loop, addr, r->timeout_ms, &conn_cfg, r);
    r->open_handles = 3; /* the two handles, and the connection */
    sl_redis_conn_start(&r->conn);
    return r;
}

static void closed_one(sl_rl_redis_t *r)
{
    if (--r->open_handles > 0)
        return;
    while (r->reqs.head) { /* only if hiredis still held replies: never expected */
        struct req *q = (struct req *)r->reqs.head;
        sl_redis_reqs_remove(&r->reqs, &q->rq);
        free(q);
    }
    while (r->free_list) {
        struct req *q = r->free_list;
        r->free_list = (struct req *)q->rq.next;
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

static void on_handle_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void on_conn_closed(sl_redis_conn_t *c)
{
    closed_one(c->data);
}

void sl_rl_redis_close(sl_rl_redis_t *r)
{
    if (!r || r->closing)
        return;
    r->closing = 1;
    r->stats.connected = 0;
    uv_timer_stop(&r->deadline_timer);
    uv_idle_stop(&r->flusher);
    flush(r); /* closing: the batches not sent yet fail (SL_EIO to their callers) */
    /* Fails every pending reply (SL_EIO to the waiting callers), synchronously, or right
     * after the hiredis callback we may be inside of returns. */
    sl_redis_conn_close(&r->conn, on_conn_closed);
    uv_close((uv_handle_t *)&r->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->flusher, on_handle_closed);
}
