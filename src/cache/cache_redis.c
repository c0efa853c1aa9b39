/* cache_redis.c - the response cache's L2 tier: objects, tag sets and purge broadcasts in
 * Redis, over two hiredis async connections attached to one libuv loop (commands; and the
 * purge subscription, made only when asked for), each a core/redis_conn (connect, handshake,
 * reconnect with backoff, stall detection). Owns the handshakes (PING on the command
 * connection, SUBSCRIBE on the other), the pending gets and purges and their deadlines. Never
 * blocks the loop; every get and purge calls back exactly once within its deadline (or never,
 * if the get was cancelled); a request object lives until Redis answered it or the
 * connection is gone, whichever comes first after its callback.
 *
 * Gets: a FIFO in send order. Every get has the same timeout, so deadlines are in list order
 * too and one uv_timer serves the list (an sl_redis_reqs_t, as in policy/ratelimit_redis.c).
 *
 * Puts: fire and forget. A put with tags is one MULTI/EXEC transaction (SET, then SADD and
 * PEXPIRE NX + PEXPIRE GT per tag: NX gives a new set its first expiry, GT only raises it; GT
 * alone would never set one, since Redis treats "no expiry" as infinite). The transaction
 * makes an object and its tag memberships appear together, so a tag purge on another
 * instance never sees the object without its tag. PEXPIRE's NX/GT need Redis >= 7.0.
 *
 * Purges: a small state machine per purge on the command connection; several commands may be
 * in flight at once (SCAN pipelined with the DEL of the previous page; a tag's DEL chunks),
 * counted in `refs`, and the object is freed when the purge has called back and every command
 * has answered. A tag purge reads and deletes the tag's set in one MULTI/EXEC (SMEMBERS, DEL),
 * so a put racing with it either lands in the old set (and is purged) or starts a new one.
 * When the deletes are done, PUBLISH tells the other instances; the callback runs when
 * PUBLISH is answered. A purge cut short (deadline, error reply) still publishes, fire and
 * forget, so the other instances drop their L1 copies; its callback says SL_EIO.
 * Deadline of a purge: max(timeout_ms, PURGE_MIN_MS), whatever its kind: purges run on the
 * control loop, where a second is cheap, and a prefix SCAN walks the whole keyspace.
 *
 * Stalls: a command connection with replies owed and no reply for max(4 x timeout_ms, 2 s) is
 * dropped and re-made by redis_conn, so a hung server or a peer lost without a FIN does not
 * leave requests piling up. The subscription has no replies owed; TCP keepalive finds a dead
 * peer there.
 *
 * hiredis 0.14 rules this file follows (see core/redis_conn.h): a drop inside a hiredis
 * callback is scheduled (sl_redis_conn_drop), never done there; freeing a context runs every
 * pending reply callback with a NULL reply, subscription callbacks included. */
#include "cache_redis.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "../core/log.h"
#include "../core/redis_conn.h"

#define BACKOFF_MAX_MS 2000
#define PURGE_MIN_MS 1000
#define MAX_PENDING 16384 /* gets sent and not yet answered, per connection */
#define FREE_GETS 1024    /* get objects kept for reuse */
#define DEL_CHUNK 1000    /* keys in one DEL of a tag purge */
#define SCAN_COUNT "1000"
#define VALUE_MAX (512ull << 20) /* Redis' proto-max-bulk-len default */
#define MSG_MAGIC "SLP1 "
#define MSG_MAGIC_LEN 5
#define MSG_LEN_DIGITS 19 /* a length of 20 digits cannot fit in memory anyway */

/* ---- the process's sender id (the only global mutable state) ---- */

static uint64_t process_sender;
static pthread_once_t sender_once = PTHREAD_ONCE_INIT;

static uint64_t mix64(uint64_t v)
{
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdull;
    v ^= v >> 33;
    v *= 0xc4ceb9fe1a85ec53ull;
    v ^= v >> 33;
    return v;
}

static void pick_sender(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
        /* no entropy yet (early boot): unique enough among the instances of one Redis */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = mix64((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
            mix64((uint64_t)getpid() << 20 ^ (uint64_t)(uintptr_t)&ts);
    }
    process_sender = v;
}

/* ---- types ---- */

struct get {
    sl_redis_req_t rq; /* pending list; rq.next alone in the free list */
    sl_l2_t *l;
    sl_l2_get_cb cb;
    void *arg;
};

enum { P_RUNNING, P_PUBLISHING, P_DONE };

struct purge {
    struct purge *prev, *next;
    sl_l2_t *l;
    int kind, phase;
    int scanning;  /* PREFIX: the SCAN has not returned cursor 0 yet */
    int in_cb;     /* inside its callback: a nested close must not free it */
    unsigned refs; /* commands sent whose reply callback has not run */
    sl_l2_purge_cb cb;
    void *arg;
    uint64_t deadline_ms, removed;
    char *pattern; /* PREFIX: the MATCH pattern */
    size_t pattern_len;
    size_t n;
    char s[]; /* the caller's bytes, for the message */
};

struct sbuf {
    char *p;
    size_t len, cap;
};

struct sl_l2 {
    uv_loop_t *loop;
    sl_redis_conn_t main, sub; /* commands; the purge subscription */
    uv_timer_t deadline_timer; /* the first get or purge deadline */
    uint64_t timer_due_ms;
    int closing;
    int open_handles;
    uint64_t timeout_ms, purge_ms;
    uint64_t sender;
    char *prefix, *channel, *objpre; /* P; P "purge"; P "c:" */
    size_t prefix_len, channel_len, objpre_len;
    struct sbuf kbuf, tbuf; /* scratch for keys: hiredis copies every command it is given */
    sl_redis_reqs_t gets;   /* the pending gets */
    struct get *free_gets;
    unsigned nfree_gets;
    struct purge *purges, *purges_tail;
    int store_err_logged;  /* a store error was logged on this connection */
    int subscribed_wanted; /* sl_l2_subscribe was called */
    sl_l2_purge_msg_cb msg_cb;
    void *msg_arg;
    sl_l2_stats_t stats;
};

static void arm(sl_l2_t *l);

/* ---- scratch buffers ---- */

static int sb_reserve(struct sbuf *b, size_t more)
{
    if (more > SIZE_MAX / 2 - b->len)
        return SL_ENOMEM;
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return SL_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sb_add(struct sbuf *b, const void *s, size_t n)
{
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* prefix + kind + ':' + s[0..n) into b (reset first). The key's start, or NULL (memory). */
static const char *make_key(sl_l2_t *l, struct sbuf *b, char kind, const char *s, size_t n,
                            size_t *len)
{
    b->len = 0;
    if (sb_reserve(b, l->prefix_len + 2 + n) != 0)
        return NULL;
    sb_add(b, l->prefix, l->prefix_len);
    char sep[2] = {kind, ':'};
    sb_add(b, sep, 2);
    sb_add(b, s, n);
    *len = b->len;
    return b->p;
}

/* s[0..n) with Redis' glob specials escaped by a backslash, appended (room reserved). */
static void glob_escape(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '*':
        case '?':
        case '[':
        case ']':
        case '\\':
            b->p[b->len++] = '\\';
            break;
        default:
            break;
        }
        b->p[b->len++] = s[i];
    }
}

/* ---- the purge message ---- */

static const char HEX[] = "0123456789abcdef";

size_t sl_l2_format_msg(uint64_t sender, int kind, const char *s, size_t n, char *out, size_t cap)
{
    char dec[24];
    if (kind < SL_L2_PURGE_KEY || kind > SL_L2_PURGE_TAG || (!s && n) || !out)
        return 0;
    size_t dl = sl_u64_dec(dec, n);
    size_t head = MSG_MAGIC_LEN + 16 + 1 + 1 + 1 + dl + 1;
    if (n > cap || head > cap - n)
        return 0;
    char *o = out;
    memcpy(o, MSG_MAGIC, MSG_MAGIC_LEN);
    o += MSG_MAGIC_LEN;
    for (int i = 15; i >= 0; i--)
        *o++ = HEX[(sender >> (4 * i)) & 15];
    *o++ = ' ';
    *o++ = (char)('0' + kind);
    *o++ = ' ';
    memcpy(o, dec, dl);
    o += dl;
    *o++ = ':';
    if (n)
        memcpy(o, s, n);
    return head + n;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case too: one spelling per message, so format(parse(m)) == m */
}

int sl_l2_parse_msg(const char *msg, size_t len, uint64_t *sender, int *kind, const char **s,
                    size_t *n)
{
    /* "SLP1 " 16 hex ' ' kind ' ' then at least one digit and ':' */
    const size_t fixed = MSG_MAGIC_LEN + 16 + 3;
    if (!msg || len < fixed + 2 || memcmp(msg, MSG_MAGIC, MSG_MAGIC_LEN) != 0)
        return SL_EBADMSG;
    uint64_t snd = 0;
    for (size_t i = 0; i < 16; i++) {
        int v = hex_val(msg[MSG_MAGIC_LEN + i]);
        if (v < 0)
            return SL_EBADMSG;
        snd = snd << 4 | (uint64_t)v;
    }
    size_t i = MSG_MAGIC_LEN + 16;
    if (msg[i] != ' ' || msg[i + 1] < '0' || msg[i + 1] > '0' + SL_L2_PURGE_TAG ||
        msg[i + 2] != ' ')
        return SL_EBADMSG;
    int k = msg[i + 1] - '0';
    i += 3;
    size_t start = i;
    uint64_t v = 0;
    while (i < len && msg[i] >= '0' && msg[i] <= '9' && i - start < MSG_LEN_DIGITS)
        v = v * 10 + (uint64_t)(msg[i++] - '0');
    size_t digits = i - start;
    if (digits == 0 || (digits > 1 && msg[start] == '0') || i >= len || msg[i] != ':')
        return SL_EBADMSG; /* no length, a leading zero, too many digits, or no ':' */
    i++;
    if (v != (uint64_t)(len - i))
        return SL_EBADMSG; /* short, or trailing bytes */
    if (sender)
        *sender = snd;
    if (kind)
        *kind = k;
    if (s)
        *s = msg + i;
    if (n)
        *n = (size_t)v;
    return 0;
}

/* ---- get objects ---- */

static struct get *get_alloc(sl_l2_t *l)
{
    struct get *q = l->free_gets;
    if (q) {
        l->free_gets = (struct get *)q->rq.next;
        l->nfree_gets--;
        return q;
    }
    return malloc(sizeof(*q));
}

static void get_free(sl_l2_t *l, struct get *q)
{
    if (l->nfree_gets >= FREE_GETS || l->closing) {
        free(q);
        return;
    }
    q->rq.next = l->free_gets ? &l->free_gets->rq : NULL;
    l->free_gets = q;
    l->nfree_gets++;
}

/* ---- the command connection ---- */

/* One command on the command connection; fn (may be NULL: the reply is dropped) gets priv.
 * 0, or SL_EIO (hiredis refused it: out of memory, or the context is going). */
static int send_cmd(sl_l2_t *l, redisCallbackFn *fn, void *priv, int argc, const char **argv,
                    const size_t *lens)
{
    return sl_redis_conn_command(&l->main, fn, priv, argc, argv, lens);
}

static int main_ready(const sl_l2_t *l)
{
    return sl_redis_conn_ready(&l->main) && !l->closing;
}

static void main_up(sl_redis_conn_t *c)
{
    sl_l2_t *l = c->data;
    l->stats.connected = 1;
    l->stats.connects++;
    l->store_err_logged = 0;
}

static void main_down(sl_redis_conn_t *c)
{
    sl_l2_t *l = c->data;
    l->stats.connected = 0;
    l->stats.disconnects++;
}

/* PING's answer makes it up: a hung server accepts connections too, and must not count. */
static const sl_redis_conn_cfg_t main_cfg = {
    .what = "cache",
    .ping = 1,
    .stall = 1,
    .backoff_max_ms = BACKOFF_MAX_MS,
    .up = main_up,
    .down = main_down,
};

/* ---- deadlines ---- */

static void on_deadline(uv_timer_t *t);
static void purge_cut(struct purge *p);

/* Arm the timer for the first waiting get's deadline, or the first running purge's. */
static void arm(sl_l2_t *l)
{
    uint64_t due = sl_redis_reqs_due(&l->gets);
    for (struct purge *p = l->purges; p; p = p->next)
        if (p->phase != P_DONE && p->deadline_ms < due)
            due = p->deadline_ms;
    sl_redis_timer_set(&l->deadline_timer, on_deadline, due, &l->timer_due_ms);
}

static void arm_for(sl_l2_t *l, uint64_t due)
{
    if (!uv_is_active((uv_handle_t *)&l->deadline_timer) || l->timer_due_ms > due)
        arm(l);
}

static void on_deadline(uv_timer_t *t)
{
    sl_l2_t *l = t->data;
    uint64_t now = uv_now(l->loop);
    sl_redis_req_t *e;
    while ((e = sl_redis_reqs_expire(&l->gets, now)) != NULL) {
        struct get *q = (struct get *)e;
        l->stats.timeouts++;
        q->cb(q->arg, SL_EIO, NULL, 0);
        if (l->closing)
            return;
    }
    /* purges: a callback may start new ones (appended) but finishes no other one */
    struct purge *p = l->purges, *next;
    for (; p; p = next) {
        next = p->next;
        if (p->phase != P_DONE && p->deadline_ms <= now) {
            purge_cut(p);
            if (l->closing)
                return;
        }
    }
    arm(l);
}

/* ---- gets ---- */

static void on_get_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct get *q = priv;
    sl_l2_t *l = q->l;
    redisReply *rep = reply;
    SL_UNUSED(ac);
    sl_redis_conn_replied(&l->main, reply);
    if (q->rq.waiting) {
        q->rq.waiting = 0;
        if (rep && rep->type == REDIS_REPLY_STRING) {
            l->stats.hits++;
            q->cb(q->arg, 0, rep->str, (size_t)rep->len);
        } else if (rep && rep->type == REDIS_REPLY_NIL) {
            l->stats.misses++;
            q->cb(q->arg, 1, NULL, 0);
        } else {
            l->stats.errors++;
            q->cb(q->arg, SL_EIO, NULL, 0);
        }
    }
    sl_redis_reqs_remove(&l->gets, &q->rq);
    get_free(l, q);
}

int sl_l2_get(sl_l2_t *l, const char *key, size_t klen, sl_l2_get_cb cb, void *arg, void **handle)
{
    l->stats.gets++;
    if (!main_ready(l)) {
        l->stats.not_connected++;
        return SL_EIO;
    }
    size_t kl;
    const char *k;
    struct get *q;
    if (!cb || l->gets.n >= MAX_PENDING || !(k = make_key(l, &l->kbuf, 'c', key, klen, &kl)) ||
        !(q = get_alloc(l))) {
        l->stats.errors++;
        return SL_EIO;
    }
    q->l = l;
    q->rq.waiting = 1;
    q->rq.deadline_ms = uv_now(l->loop) + l->timeout_ms;
    q->cb = cb;
    q->arg = arg;
    const char *argv[2] = {"GET", k};
    size_t lens[2] = {3, kl};
    if (send_cmd(l, on_get_reply, q, 2, argv, lens) != 0) {
        get_free(l, q);
        l->stats.errors++;
        return SL_EIO;
    }
    sl_redis_reqs_push(&l->gets, &q->rq);
    arm_for(l, q->rq.deadline_ms);
    if (handle)
        *handle = q;
    return 0;
}

void sl_l2_cancel(sl_l2_t *l, void *handle)
{
    struct get *q = handle;
    SL_UNUSED(l);
    if (q && q->rq.waiting)
        q->rq.waiting = 0; /* stays linked: its reply (or the connection's end) frees it */
}

/* ---- puts ---- */

/* The reply of a put: SET's, or the EXEC of its transaction. */
static void on_put_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    sl_l2_t *l = priv;
    redisReply *rep = reply;
    SL_UNUSED(ac);
    sl_redis_conn_replied(&l->main, reply);
    if (!rep) {
        if (!l->closing)
            l->stats.put_errors++;
        return;
    }
    int bad = rep->type == REDIS_REPLY_ERROR || rep->type == REDIS_REPLY_NIL;
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++)
            bad |= rep->element[i]->type == REDIS_REPLY_ERROR;
    if (bad) {
        if (!l->store_err_logged && rep->type == REDIS_REPLY_ERROR) { /* once a connection */
            sl_log_warn("redis %s: store failed: %.*s", sl_redis_conn_label(&l->main),
                        (int)rep->len, rep->str);
            l->store_err_logged = 1;
        }
        l->stats.put_errors++;
    }
}

int sl_l2_put(sl_l2_t *l, const char *key, size_t klen, const uv_buf_t *val, unsigned nval,
              uint64_t ttl_ms, const sl_slice_t *tags, unsigned ntags)
{
    l->stats.puts++;
    size_t total = 0;
    for (unsigned i = 0; i < nval; i++) {
        if (val[i].len > VALUE_MAX - total) {
            l->stats.put_dropped++;
            return SL_ETOOBIG;
        }
        total += val[i].len;
    }
    if (!main_ready(l)) {
        l->stats.put_dropped++;
        return SL_EIO;
    }
    size_t kl;
    const char *k = make_key(l, &l->kbuf, 'c', key, klen, &kl);
    char *joined = NULL;
    const char *v = "";
    if (nval == 1 && total)
        v = val[0].base;
    else if (nval > 1 && total) {
        joined = malloc(total);
        if (joined) {
            size_t at = 0;
            for (unsigned i = 0; i < nval; i++) {
                if (val[i].len)
                    memcpy(joined + at, val[i].base, val[i].len);
                at += val[i].len;
            }
        }
        v = joined;
    }
    if (!k || !v) {
        free(joined);
        l->stats.put_dropped++;
        return SL_EIO;
    }
    char ttl[24];
    size_t tl = sl_u64_dec(ttl, ttl_ms ? ttl_ms : 1);
    int rc = 0;
    if (ntags) {
        const char *m[1] = {"MULTI"};
        size_t ml[1] = {5};
        rc = send_cmd(l, NULL, NULL, 1, m, ml);
    }
    if (rc == 0) {
        const char *argv[5] = {"SET", k, v, "PX", ttl};
        size_t lens[5] = {3, kl, total, 2, tl};
        rc = send_cmd(l, ntags ? NULL : on_put_reply, l, 5, argv, lens);
    }
    free(joined);
    for (unsigned i = 0; i < ntags && rc == 0; i++) {
        size_t tkl;
        const char *tk = make_key(l, &l->tbuf, 't', tags[i].p, tags[i].len, &tkl);
        if (!tk) {
            rc = SL_ENOMEM;
            break;
        }
        const char *sadd[3] = {"SADD", tk, key ? key : ""};
        size_t saddl[3] = {4, tkl, klen};
        const char *px[4] = {"PEXPIRE", tk, ttl, "NX"};
        size_t pxl[4] = {7, tkl, tl, 2};
        rc = send_cmd(l, NULL, NULL, 3, sadd, saddl);
        if (rc == 0)
            rc = send_cmd(l, NULL, NULL, 4, px, pxl);
        px[3] = "GT";
        if (rc == 0)
            rc = send_cmd(l, NULL, NULL, 4, px, pxl);
    }
    if (ntags && rc == 0) {
        const char *e[1] = {"EXEC"};
        size_t el[1] = {4};
        rc = send_cmd(l, on_put_reply, l, 1, e, el);
    }
    if (rc != 0) {
        l->stats.put_dropped++;
        if (ntags) /* a transaction may be half queued: the connection cannot be trusted */
            sl_redis_conn_drop(&l->main, "a store could not be queued whole");
        return SL_EIO;
    }
    return 0;
}

/* ---- purges ---- */

static void purge_free(struct purge *p)
{
    sl_l2_t *l = p->l;
    if (p->prev)
        p->prev->next = p->next;
    else
        l->purges = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        l->purges_tail = p->prev;
    free(p->pattern);
    free(p);
}

static void purge_finish(struct purge *p, int rc)
{
    sl_l2_t *l = p->l;
    p->phase = P_DONE;
    if (rc)
        l->stats.purge_errors++;
    p->in_cb = 1;
    p->cb(p->arg, rc, p->removed);
    p->in_cb = 0;
    if (p->refs == 0)
        purge_free(p);
}

/* PUBLISH the purge; fn NULL: fire and forget. 0 or SL_EIO. */
static int purge_publish(struct purge *p, redisCallbackFn *fn)
{
    sl_l2_t *l = p->l;
    size_t cap = p->n + 64;
    char *msg = malloc(cap);
    if (!msg)
        return SL_EIO;
    size_t len = sl_l2_format_msg(l->sender, p->kind, p->s, p->n, msg, cap);
    const char *argv[3] = {"PUBLISH", l->channel, msg};
    size_t lens[3] = {7, l->channel_len, len};
    int rc = len ? send_cmd(l, fn, p, 3, argv, lens) : SL_EIO;
    free(msg);
    if (rc == 0 && fn)
        p->refs++;
    return rc;
}

/* The purge ends early (deadline, error reply): the other instances are still told, so
 * their L1 copies go; the caller hears SL_EIO and how many keys went. */
static void purge_cut(struct purge *p)
{
    if (p->phase == P_RUNNING && main_ready(p->l))
        purge_publish(p, NULL);
    purge_finish(p, SL_EIO);
}

static void on_publish_reply(redisAsyncContext *ac, void *reply, void *priv);

/* After a reply: when every delete is done, publish. */
static void purge_next(struct purge *p)
{
    if (p->phase != P_RUNNING || p->refs || p->scanning)
        return;
    p->phase = P_PUBLISHING;
    if (!main_ready(p->l) || purge_publish(p, on_publish_reply) != 0)
        purge_finish(p, SL_EIO);
}

/* Common start of a purge command's reply callback: the purge to go on with, or NULL (its
 * callback has run, or runs now because the connection went). */
static struct purge *purge_reply(void *reply, void *priv)
{
    struct purge *p = priv;
    sl_redis_conn_replied(&p->l->main, reply);
    p->refs--;
    if (p->phase == P_DONE) {
        if (p->refs == 0 && !p->in_cb)
            purge_free(p);
        return NULL;
    }
    if (!reply) {
        purge_finish(p, SL_EIO);
        return NULL;
    }
    return p;
}

static void on_del_reply(redisAsyncContext *ac, void *reply, void *priv);

/* DEL pre + items[i] for the string items of items[0..n) (pre may be empty). 0 or SL_EIO. */
static int purge_del(struct purge *p, const char *pre, size_t prelen, redisReply **items, size_t n)
{
    size_t bytes = 0, count = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i]->type == REDIS_REPLY_STRING) {
            bytes += prelen + (size_t)items[i]->len;
            count++;
        }
    if (count == 0)
        return 0;
    const char **argv = malloc((count + 1) * sizeof(*argv));
    size_t *lens = malloc((count + 1) * sizeof(*lens));
    char *buf = prelen ? malloc(bytes) : NULL;
    int rc = SL_EIO;
    if (argv && lens && (buf || !prelen)) {
        argv[0] = "DEL";
        lens[0] = 3;
        size_t a = 1, at = 0;
        for (size_t i = 0; i < n; i++) {
            const redisReply *e = items[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            if (prelen) {
                memcpy(buf + at, pre, prelen);
                memcpy(buf + at + prelen, e->str, e->len);
                argv[a] = buf + at;
                at += prelen + e->len;
            } else {
                argv[a] = e->str;
            }
            lens[a++] = prelen + e->len;
        }
        rc = send_cmd(p->l, on_del_reply, p, (int)a, argv, lens);
        if (rc == 0)
            p->refs++;
    }
    free(argv);
    free(lens);
    free(buf);
    return rc;
}

static void on_scan_reply(redisAsyncContext *ac, void *reply, void *priv);

static int purge_scan(struct purge *p, const char *cursor, size_t clen)
{
    const char *argv[6] = {"SCAN", cursor, "MATCH", p->pattern, "COUNT", SCAN_COUNT};
    size_t lens[6] = {4, clen, 5, p->pattern_len, 5, sizeof(SCAN_COUNT) - 1};
    int rc = send_cmd(p->l, on_scan_reply, p, 6, argv, lens);
    if (rc == 0)
        p->refs++;
    return rc;
}

static void on_del_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    SL_UNUSED(ac);
    struct purge *p = purge_reply(reply, priv);
    if (!p)
        return;
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer < 0) {
        purge_cut(p);
        return;
    }
    p->removed += (uint64_t)rep->integer;
    purge_next(p);
}

/* SCAN's reply: [cursor, [keys...]]. The page's DEL and the next SCAN go out together. */
static void on_scan_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    SL_UNUSED(ac);
    struct purge *p = purge_reply(reply, priv);
    if (!p)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY) {
        purge_cut(p);
        return;
    }
    const redisReply *cur = rep->element[0], *keys = rep->element[1];
    if (!main_ready(p->l) || purge_del(p, "", 0, keys->element, keys->elements) != 0) {
        purge_cut(p);
        return;
    }
    if (cur->len == 1 && cur->str[0] == '0')
        p->scanning = 0;
    else if (uv_now(p->l->loop) >= p->deadline_ms || purge_scan(p, cur->str, cur->len) != 0) {
        purge_cut(p);
        return;
    }
    purge_next(p);
}

/* The EXEC of MULTI / SMEMBERS set / DEL set / EXEC: [[members...], deleted]. */
static void on_tag_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    SL_UNUSED(ac);
    struct purge *p = purge_reply(reply, priv);
    if (!p)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_ARRAY) {
        purge_cut(p);
        return;
    }
    sl_l2_t *l = p->l;
    const redisReply *members = rep->element[0];
    for (size_t at = 0; at < members->elements; at += DEL_CHUNK) {
        size_t n = members->elements - at < DEL_CHUNK ? members->elements - at : DEL_CHUNK;
        if (!main_ready(l) ||
            purge_del(p, l->objpre, l->objpre_len, members->element + at, n) != 0) {
            purge_cut(p);
            return;
        }
    }
    purge_next(p);
}

static void on_publish_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    SL_UNUSED(ac);
    struct purge *p = purge_reply(reply, priv);
    if (!p)
        return;
    purge_finish(p, rep->type == REDIS_REPLY_INTEGER ? 0 : SL_EIO);
}

/* The first command(s) of a purge. 0 or SL_EIO. */
static int purge_start(sl_l2_t *l, struct purge *p)
{
    size_t kl;
    const char *k;
    switch (p->kind) {
    case SL_L2_PURGE_KEY: {
        if (!(k = make_key(l, &l->kbuf, 'c', p->s, p->n, &kl)))
            return SL_EIO;
        const char *argv[2] = {"DEL", k};
        size_t lens[2] = {3, kl};
        if (send_cmd(l, on_del_reply, p, 2, argv, lens) != 0)
            return SL_EIO;
        p->refs++;
        return 0;
    }
    case SL_L2_PURGE_PREFIX: {
        /* P "c:" s with the glob specials of both P and s escaped, then '*' */
        size_t max = 2 * (l->prefix_len + p->n) + 4;
        p->pattern = malloc(max);
        if (!p->pattern)
            return SL_EIO;
        struct sbuf b = {p->pattern, 0, max};
        glob_escape(&b, l->prefix, l->prefix_len);
        sb_add(&b, "c:", 2);
        glob_escape(&b, p->s, p->n);
        sb_add(&b, "*", 1);
        p->pattern_len = b.len;
        p->scanning = 1;
        return purge_scan(p, "0", 1);
    }
    default: { /* SL_L2_PURGE_TAG: read and delete the set at once */
        if (!(k = make_key(l, &l->kbuf, 't', p->s, p->n, &kl)))
            return SL_EIO;
        const char *m[1] = {"MULTI"}, *e[1] = {"EXEC"};
        size_t ml[1] = {5}, el[1] = {4};
        const char *sm[2] = {"SMEMBERS", k}, *del[2] = {"DEL", k};
        size_t sml[2] = {8, kl}, dell[2] = {3, kl};
        if (send_cmd(l, NULL, NULL, 1, m, ml) != 0)
            return SL_EIO;
        if (send_cmd(l, NULL, NULL, 2, sm, sml) != 0 ||
            send_cmd(l, NULL, NULL, 2, del, dell) != 0 ||
            send_cmd(l, on_tag_reply, p, 1, e, el) != 0) {
            sl_redis_conn_drop(&l->main, "a purge could not be queued whole");
            return SL_EIO;
        }
        p->refs++;
        return 0;
    }
    }
}

int sl_l2_purge(sl_l2_t *l, int kind, const char *s, size_t n, sl_l2_purge_cb cb, void *arg)
{
    if (kind < SL_L2_PURGE_KEY || kind > SL_L2_PURGE_TAG || !cb || (!s && n))
        return SL_EINVAL;
    if (!main_ready(l))
        return SL_EIO;
    struct purge *p = malloc(sizeof(*p) + n + 1);
    if (!p)
        return SL_EIO;
    memset(p, 0, sizeof(*p));
    p->l = l;
    p->kind = kind;
    p->phase = P_RUNNING;
    p->cb = cb;
    p->arg = arg;
    p->deadline_ms = uv_now(l->loop) + l->purge_ms;
    p->n = n;
    if (n)
        memcpy(p->s, s, n);
    if (purge_start(l, p) != 0) { /* nothing of it waits for a reply */
        free(p->pattern);
        free(p);
        return SL_EIO;
    }
    p->prev = l->purges_tail;
    if (l->purges_tail)
        l->purges_tail->next = p;
    else
        l->purges = p;
    l->purges_tail = p;
    l->stats.purges++;
    arm_for(l, p->deadline_ms);
    return 0;
}

/* ---- the subscription ---- */

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    sl_l2_t *l = priv;
    redisReply *rep = reply;
    SL_UNUSED(ac);
    sl_redis_conn_replied(&l->sub, reply);
    if (!rep || l->closing || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *type = rep->element[0], *body = rep->element[2];
    if (type->len == 9 && memcmp(type->str, "subscribe", 9) == 0) {
        sl_redis_conn_up(&l->sub); /* ignored unless subscribing */
        return;
    }
    if (type->len != 7 || memcmp(type->str, "message", 7) != 0)
        return;
    uint64_t sender;
    int kind;
    const char *s;
    size_t n;
    if (body->type != REDIS_REPLY_STRING ||
        sl_l2_parse_msg(body->str, (size_t)body->len, &sender, &kind, &s, &n) != 0) {
        l->stats.purge_bad_messages++;
        return;
    }
    if (sender == l->sender || !l->msg_cb)
        return;
    l->stats.purge_messages++;
    l->msg_cb(l->msg_arg, kind, s, n);
}

/* The subscription's handshake: SUBSCRIBE's answer makes it up (on_sub_reply). */
static void subscribe(sl_redis_conn_t *c)
{
    sl_l2_t *l = c->data;
    const char *argv[2] = {"SUBSCRIBE", l->channel};
    size_t lens[2] = {9, l->channel_len};
    if (sl_redis_conn_command(c, on_sub_reply, l, 2, argv, lens) != 0)
        sl_redis_conn_drop(c, "cannot send SUBSCRIBE");
}

static void sub_up(sl_redis_conn_t *c)
{
    sl_l2_t *l = c->data;
    l->stats.subscribed = 1;
    l->stats.sub_connects++;
}

static void sub_down(sl_redis_conn_t *c)
{
    sl_l2_t *l = c->data;
    l->stats.subscribed = 0;
    l->stats.sub_disconnects++;
}

static const sl_redis_conn_cfg_t sub_cfg = {
    .what = "cache purge subscription",
    .awaits = "SUBSCRIBE",
    .backoff_max_ms = BACKOFF_MAX_MS,
    .handshake = subscribe,
    .up = sub_up,
    .down = sub_down,
};

int sl_l2_subscribe(sl_l2_t *l, sl_l2_purge_msg_cb cb, void *arg)
{
    if (!cb)
        return SL_EINVAL;
    l->msg_cb = cb;
    l->msg_arg = arg;
    if (!l->subscribed_wanted && !l->closing) {
        l->subscribed_wanted = 1;
        sl_redis_conn_start(&l->sub);
    }
    return 0;
}

/* ---- life cycle ---- */

const sl_l2_stats_t *sl_l2_stats(const sl_l2_t *l)
{
    return &l->stats;
}

void sl_l2_set_sender(sl_l2_t *l, uint64_t sender)
{
    l->sender = sender;
}

sl_l2_t *sl_l2_new(uv_loop_t *loop, const sl_addr_t *addr, uint64_t timeout_ms, const char *prefix)
{
    pthread_once(&sender_once, pick_sender);
    if (!prefix)
        prefix = "";
    sl_l2_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->prefix_len = strlen(prefix);
    l->channel_len = l->prefix_len + 5;
    l->prefix = malloc(l->prefix_len + 1);
    l->channel = malloc(l->channel_len + 1);
    l->objpre_len = l->prefix_len + 2;
    l->objpre = malloc(l->objpre_len + 1);
    if (!l->prefix || !l->channel || !l->objpre) {
        free(l->prefix);
        free(l->channel);
        free(l->objpre);
        free(l);
        return NULL;
    }
    memcpy(l->prefix, prefix, l->prefix_len + 1);
    memcpy(l->objpre, prefix, l->prefix_len);
    memcpy(l->objpre + l->prefix_len, "c:", 3);
    memcpy(l->channel, prefix, l->prefix_len);
    memcpy(l->channel + l->prefix_len, "purge", 6);
    l->loop = loop;
    l->sender = process_sender;
    l->timeout_ms = timeout_ms ? timeout_ms : 1;
    l->purge_ms = l->timeout_ms > PURGE_MIN_MS ? l->timeout_ms : PURGE_MIN_MS;
    uv_timer_init(loop, &l->deadline_timer);
    l->deadline_timer.data = l;
    sl_redis_conn_init(&l->main, loop, addr, l->timeout_ms, &main_cfg, l);
    sl_redis_conn_init(&l->sub, loop, addr, l->timeout_ms, &sub_cfg, l);
    l->open_handles = 3; /* the timer, and the two connections */
    sl_redis_conn_start(&l->main);
    return l;
}

static void closed_one(sl_l2_t *l)
{
    if (--l->open_handles > 0)
        return;
    while (l->gets.head) { /* only if hiredis still held replies: never expected */
        struct get *q = (struct get *)l->gets.head;
        sl_redis_reqs_remove(&l->gets, &q->rq);
        free(q);
    }
    while (l->free_gets) {
        struct get *q = l->free_gets;
        l->free_gets = (struct get *)q->rq.next;
        free(q);
    }
    while (l->purges)
        purge_free(l->purges);
    free(l->kbuf.p);
    free(l->tbuf.p);
    free(l->prefix);
    free(l->channel);
    free(l->objpre);
    free(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void on_conn_closed(sl_redis_conn_t *c)
{
    closed_one(c->data);
}

void sl_l2_close(sl_l2_t *l)
{
    if (!l || l->closing)
        return;
    l->closing = 1;
    l->stats.connected = 0;
    l->stats.subscribed = 0;
    uv_timer_stop(&l->deadline_timer);
    /* every waiting get and running purge calls back first; a callback cannot start anything
     * new (closing) nor finish another purge, so the lists only shrink behind us */
    for (sl_redis_req_t *e = l->gets.head; e; e = e->next) {
        struct get *q = (struct get *)e;
        if (q->rq.waiting) {
            q->rq.waiting = 0;
            l->stats.errors++;
            q->cb(q->arg, SL_EIO, NULL, 0);
        }
    }
    struct purge *p = l->purges, *next;
    for (; p; p = next) {
        next = p->next;
        if (p->phase != P_DONE)
            purge_finish(p, SL_EIO);
    }
    /* their pending replies fail: synchronously, or right after the hiredis callback we may
     * be inside of returns */
    sl_redis_conn_close(&l->main, on_conn_closed);
    sl_redis_conn_close(&l->sub, on_conn_closed);
    uv_close((uv_handle_t *)&l->deadline_timer, on_handle_closed);
}
