/* health.c - active health checks on the control thread's loop.
 * Owns: one scheduling timer, a side table of per-server check state (indexed by server
 * id) and the check connections themselves. Writes only the hc_* fields of a server and
 * changes its state through sl_server_set_state. Never blocks, never runs on a worker. */

#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "../http/http1.h"

#define HEAD_MAX 4096     /* a check's response head must fit in this (else a failure) */
#define TICK_MIN_MS 10    /* scheduling timer period: a quarter of the shortest interval, */
#define TICK_MAX_MS 100   /* within these bounds */
#define JITTER_MAX_MS 250 /* first check of a server: after a random 0..min(interval/4, this) */

typedef struct check check_t;

/* What this module keeps for one server id. */
typedef struct hc_slot {
    uint64_t next_due; /* uv_now ms when the next check may start */
    check_t *check;    /* the check in flight, or NULL (never more than one) */
    uint8_t scheduled; /* 0 until the server is first seen (next_due then gets its jitter) */
} hc_slot_t;

struct sl_health {
    uv_loop_t *loop;
    sl_upstreams_t *u;
    uv_timer_t tick;
    hc_slot_t *slots; /* u->cap entries, by server id */
    uint32_t nslots;
    uint32_t live; /* check objects not yet freed (some may be closing) */
    uint64_t rng;  /* xorshift state for the jitter */
    uint8_t stopping, tick_closed;
};

/* One check: a connection and its timeout. Freed when both handles have closed. */
struct check {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_timer_t timer;
    sl_health_t *h;
    sl_server_t *s;
    const sl_health_conf_t *conf;
    unsigned open; /* initialised handles whose close callback has not run */
    uint8_t done;  /* result taken (or aborted); callbacks after this do nothing */
    uint8_t tcp_init;
    size_t len;  /* bytes in buf */
    size_t scan; /* sl_http1_parse_response resume point */
    size_t reqlen;
    char buf[HEAD_MAX];
    char req[]; /* the request bytes, reqlen of them (plus a NUL) */
};

static const char REQ_FMT[] = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health-check\r\n"
                              "Connection: close\r\n\r\n";

static void maybe_free(sl_health_t *h)
{
    if (h->stopping && h->tick_closed && h->live == 0) {
        free(h->slots);
        free(h);
    }
}

static void on_check_close(uv_handle_t *hd)
{
    check_t *c = hd->data;
    if (--c->open > 0)
        return;
    sl_health_t *h = c->h;
    free(c);
    h->live--;
    maybe_free(h);
}

static int status_expected(const sl_health_conf_t *conf, int status)
{
    if (conf->nexpect == 0)
        return status >= 200 && status < 400;
    for (uint32_t i = 0; i < conf->nexpect && i < SL_CONF_MAX_STATUS; i++)
        if (conf->expect_status[i] == status)
            return 1;
    return 0;
}

/* Count one result on the server and move it between UP and CHECKING when a streak
 * reaches its threshold. status: HTTP status (> 0) or a negative libuv error; reason
 * says why a failure failed. DRAINING/REMOVED servers only get their counters updated. */
static void record(check_t *c, int ok, int status, const char *reason)
{
    sl_server_t *s = c->s;
    const sl_health_conf_t *conf = c->conf;
    __atomic_add_fetch(&s->hc_checks, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->hc_last_status, status, __ATOMIC_RELAXED);
    uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
    if (ok) {
        uint32_t streak = __atomic_load_n(&s->hc_ok, __ATOMIC_RELAXED);
        if (streak < UINT32_MAX)
            streak++;
        __atomic_store_n(&s->hc_ok, streak, __ATOMIC_RELAXED);
        __atomic_store_n(&s->hc_fail, 0, __ATOMIC_RELAXED);
        uint32_t need = conf->passes ? conf->passes : 1;
        if (st == SL_SRV_CHECKING && streak >= need)
            sl_server_set_state(s, SL_SRV_UP, "health check passed");
        return;
    }
    __atomic_add_fetch(&s->hc_failed, 1, __ATOMIC_RELAXED);
    uint32_t streak = __atomic_load_n(&s->hc_fail, __ATOMIC_RELAXED);
    if (streak < UINT32_MAX)
        streak++;
    __atomic_store_n(&s->hc_fail, streak, __ATOMIC_RELAXED);
    __atomic_store_n(&s->hc_ok, 0, __ATOMIC_RELAXED);
    sl_log(SL_LOG_DEBUG, "health check of %s failed: %s", s->conf.addr.text, reason);
    uint32_t need = conf->fails ? conf->fails : 1;
    if (st == SL_SRV_UP && streak >= need) {
        char why[160];
        snprintf(why, sizeof(why), "health check failed: %s", reason);
        sl_server_set_state(s, SL_SRV_CHECKING, why);
    }
}

/* The check is over: record its result (unless the module is stopping), free the
 * server's slot for the next check and close the handles. Runs at most once. */
static void finish(check_t *c, int ok, int status, const char *reason)
{
    if (c->done)
        return;
    c->done = 1;
    sl_health_t *h = c->h;
    if (c->s->id < h->nslots && h->slots[c->s->id].check == c)
        h->slots[c->s->id].check = NULL;
    if (!h->stopping)
        record(c, ok, status, reason);
    /* Pending connect/write requests get UV_ECANCELED before the close callbacks. */
    uv_close((uv_handle_t *)&c->timer, on_check_close);
    if (c->tcp_init)
        uv_close((uv_handle_t *)&c->tcp, on_check_close);
}

static void fail_uv(check_t *c, int err)
{
    const char *reason = err == UV_EOF ? "connection closed before a response" : uv_strerror(err);
    finish(c, 0, err, reason);
}

static void on_timeout(uv_timer_t *t)
{
    check_t *c = t->data;
    finish(c, 0, UV_ETIMEDOUT, "timed out");
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    check_t *c = hd->data;
    buf->base = c->buf + c->len;
    buf->len = sizeof(c->buf) - c->len; /* 0 when full: libuv reports UV_ENOBUFS */
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    check_t *c = st->data;
    if (c->done || nread == 0)
        return;
    if (nread == UV_ENOBUFS) {
        finish(c, 0, UV_EMSGSIZE, "response head too large");
        return;
    }
    if (nread < 0) {
        fail_uv(c, (int)nread);
        return;
    }
    c->len += (size_t)nread;
    for (;;) {
        sl_http_response_t resp;
        int rc = sl_http1_parse_response(c->buf, c->len, sizeof(c->buf), &c->scan, &resp);
        if (rc == SL_AGAIN)
            return;
        if (rc == SL_ETOOBIG) {
            finish(c, 0, UV_EMSGSIZE, "response head too large");
            return;
        }
        if (rc < 0) {
            finish(c, 0, UV_EPROTO, "malformed response");
            return;
        }
        if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
            /* interim answer: the final one follows */
            memmove(c->buf, c->buf + rc, c->len - (size_t)rc);
            c->len -= (size_t)rc;
            c->scan = 0;
            continue;
        }
        if (status_expected(c->conf, resp.status)) {
            finish(c, 1, resp.status, NULL);
        } else {
            char reason[32];
            snprintf(reason, sizeof(reason), "status %d", resp.status);
            finish(c, 0, resp.status, reason);
        }
        return;
    }
}

static void on_write(uv_write_t *req, int status)
{
    check_t *c = req->data;
    if (!c->done && status < 0)
        fail_uv(c, status);
}

static void on_connect(uv_connect_t *req, int status)
{
    check_t *c = req->data;
    if (c->done)
        return;
    if (status < 0) {
        fail_uv(c, status);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0) {
        uv_buf_t b = uv_buf_init(c->req, (unsigned)c->reqlen);
        c->wreq.data = c;
        rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    }
    if (rc < 0)
        fail_uv(c, rc);
}

/* Start one check of s (its slot has no check in flight). A failure to even start is
 * recorded as a failed check, except out of memory (nothing is known about the server). */
static void start_check(sl_health_t *h, const sl_health_conf_t *conf, sl_server_t *s,
                        hc_slot_t *slot)
{
    const char *path = conf->path ? conf->path : "/health";
    int n = snprintf(NULL, 0, REQ_FMT, path, s->conf.addr.text);
    if (n < 0)
        return;
    check_t *c = malloc(sizeof(*c) + (size_t)n + 1);
    if (!c) {
        sl_log_warn("health check of %s: out of memory", s->conf.addr.text);
        return;
    }
    memset(c, 0, sizeof(*c));
    snprintf(c->req, (size_t)n + 1, REQ_FMT, path, s->conf.addr.text);
    c->reqlen = (size_t)n;
    c->h = h;
    c->s = s;
    c->conf = conf;
    h->live++;
    slot->check = c;

    uv_timer_init(h->loop, &c->timer);
    c->timer.data = c;
    c->open++;
    uv_timer_start(&c->timer, on_timeout, conf->timeout_ms ? conf->timeout_ms : 1, 0);
    int rc = uv_tcp_init(h->loop, &c->tcp);
    if (rc < 0) {
        fail_uv(c, rc);
        return;
    }
    c->tcp.data = c;
    c->tcp_init = 1;
    c->open++;
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&s->conf.addr.ss, on_connect);
    if (rc < 0)
        fail_uv(c, rc); /* no callback will run for a connect that failed to start */
}

static uint64_t jitter(sl_health_t *h, uint64_t interval_ms)
{
    uint64_t x = h->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    h->rng = x;
    uint64_t span = interval_ms / 4;
    if (span > JITTER_MAX_MS)
        span = JITTER_MAX_MS;
    return x % (span + 1);
}

static void visit_pool(sl_health_t *h, const sl_health_conf_t *conf, sl_pool_t *p, uint64_t now)
{
    uint32_t n = __atomic_load_n(&p->n, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < n && i < p->cap; i++) {
        sl_server_t *s = &p->slots[i];
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (st == SL_SRV_DRAINING || st == SL_SRV_REMOVED || s->id >= h->nslots)
            continue;
        hc_slot_t *slot = &h->slots[s->id];
        if (!slot->scheduled) {
            slot->scheduled = 1;
            slot->next_due = now + jitter(h, conf->interval_ms);
        }
        if (slot->check || now < slot->next_due)
            continue;
        /* Keep to the interval's grid (checks start interval apart on average, whatever
         * the tick's phase), but never catch up with a burst after a slow check. */
        slot->next_due += conf->interval_ms ? conf->interval_ms : 1;
        if (slot->next_due <= now)
            slot->next_due = now + conf->interval_ms;
        start_check(h, conf, s, slot);
    }
}

static void on_tick(uv_timer_t *t)
{
    sl_health_t *h = t->data;
    uint64_t now = uv_now(h->loop);
    for (uint32_t i = 0; i < h->u->nservices; i++) {
        sl_service_t *svc = &h->u->services[i];
        if (!svc->conf || !svc->conf->health.enabled)
            continue;
        visit_pool(h, &svc->conf->health, &svc->primary, now);
        visit_pool(h, &svc->conf->health, &svc->read, now);
    }
}

static void on_tick_close(uv_handle_t *hd)
{
    sl_health_t *h = hd->data;
    h->tick_closed = 1;
    maybe_free(h);
}

sl_health_t *sl_health_start(uv_loop_t *loop, sl_upstreams_t *u)
{
    uint64_t min_interval = 0;
    for (uint32_t i = 0; i < u->nservices; i++) {
        const sl_service_conf_t *sc = u->services[i].conf;
        if (!sc || !sc->health.enabled)
            continue;
        uint64_t iv = sc->health.interval_ms ? sc->health.interval_ms : 1;
        if (min_interval == 0 || iv < min_interval)
            min_interval = iv;
    }
    if (min_interval == 0 || u->cap == 0)
        return NULL;
    sl_health_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->slots = calloc(u->cap, sizeof(*h->slots));
    if (!h->slots) {
        free(h);
        return NULL;
    }
    h->nslots = u->cap;
    h->loop = loop;
    h->u = u;
    h->rng = uv_hrtime() | 1;
    uint64_t tick = min_interval / 4;
    if (tick < TICK_MIN_MS)
        tick = TICK_MIN_MS;
    if (tick > TICK_MAX_MS)
        tick = TICK_MAX_MS;
    uv_timer_init(loop, &h->tick);
    h->tick.data = h;
    uv_timer_start(&h->tick, on_tick, 0, tick);
    return h;
}

void sl_health_stop(sl_health_t *h)
{
    if (!h || h->stopping)
        return;
    h->stopping = 1;
    uv_close((uv_handle_t *)&h->tick, on_tick_close);
    for (uint32_t id = 0; id < h->nslots; id++)
        if (h->slots[id].check)
            finish(h->slots[id].check, 0, UV_ECANCELED, "stopped");
}
