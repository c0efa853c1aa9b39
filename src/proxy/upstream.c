/* upstream.c - services, servers, upstream connections and keep-alive pools; see upstream.h.
 * An idle pooled connection keeps reading: a server that closes it (keep-alive timeout)
 * or sends unsolicited bytes is noticed at once and the connection is dropped, so a
 * request is rarely sent on a dead connection (proxy.c retries the rest). */
#include "upstream.h"

#include <stdlib.h>
#include <string.h>

#include "../core/log.h"

#define IDLE_TIMEOUT_MS 60000 /* idle upstream connections closed after this, as nginx */

typedef struct idle_list {
    sl_upconn_t *head; /* most recently parked first (LIFO: warm connections) */
    sl_upconn_t *tail;
    uint32_t n;
} idle_list_t;

typedef struct up_worker {
    idle_list_t *idle; /* by server id */
    uint32_t nservers;
    uint32_t nidle;
    sl_upstream_stats_t stats;
} up_worker_t;

int sl_upstreams_build(sl_upstreams_t *u, const sl_config_t *cfg, int nthreads)
{
    memset(u, 0, sizeof(*u));
    u->nservices = cfg->nservices;
    u->services = calloc(cfg->nservices ? cfg->nservices : 1, sizeof(sl_service_t));
    uint32_t total = 0;
    for (uint32_t i = 0; i < cfg->nservices; i++)
        total += cfg->services[i].nservers;
    u->servers = calloc(total ? total : 1, sizeof(sl_server_t *));
    if (!u->services || !u->servers)
        goto fail;
    for (uint32_t i = 0; i < cfg->nservices; i++) {
        const sl_service_conf_t *sc = &cfg->services[i];
        sl_service_t *s = &u->services[i];
        s->conf = sc;
        s->index = i;
        s->primary.n = sc->nservers;
        s->primary.servers = calloc(sc->nservers ? sc->nservers : 1, sizeof(sl_server_t));
        s->primary.ops = sl_balancer_for(sc->balance);
        if (!s->primary.servers || !s->primary.ops)
            goto fail;
        for (uint32_t j = 0; j < sc->nservers; j++) {
            sl_server_t *sv = &s->primary.servers[j];
            sv->conf = &sc->servers[j];
            sv->index = j;
            sv->id = u->nservers;
            u->servers[u->nservers++] = sv;
        }
        if (s->primary.ops->init(&s->primary, nthreads))
            goto fail;
    }
    return 0;
fail:
    sl_upstreams_free(u);
    return SL_ENOMEM;
}

void sl_upstreams_free(sl_upstreams_t *u)
{
    for (uint32_t i = 0; u->services && i < u->nservices; i++) {
        sl_pool_t *p = &u->services[i].primary;
        if (p->ops && p->state)
            p->ops->destroy(p);
        free(p->servers);
    }
    free(u->services);
    free(u->servers);
    memset(u, 0, sizeof(*u));
}

int sl_upstream_worker_init(sl_worker_t *w, const sl_upstreams_t *u)
{
    up_worker_t *uw = calloc(1, sizeof(*uw));
    if (!uw)
        return SL_ENOMEM;
    uw->idle = calloc(u->nservers ? u->nservers : 1, sizeof(idle_list_t));
    if (!uw->idle) {
        free(uw);
        return SL_ENOMEM;
    }
    uw->nservers = u->nservers;
    w->proxy = uw;
    return 0;
}

void sl_upstream_worker_free(sl_worker_t *w)
{
    up_worker_t *uw = w->proxy;
    if (!uw)
        return;
    free(uw->idle);
    free(uw);
    w->proxy = NULL;
}

const sl_upstream_stats_t *sl_upstream_worker_stats(const sl_worker_t *w)
{
    return &((up_worker_t *)w->proxy)->stats;
}

uint32_t sl_upstream_worker_idle(const sl_worker_t *w)
{
    return w->proxy ? ((up_worker_t *)w->proxy)->nidle : 0;
}

static void idle_remove(up_worker_t *uw, sl_upconn_t *u)
{
    idle_list_t *l = &uw->idle[u->server->id];
    if (u->prev)
        u->prev->next = u->next;
    else
        l->head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    else
        l->tail = u->prev;
    u->prev = u->next = NULL;
    l->n--;
    uw->nidle--;
}

static void close_cb(uv_handle_t *h)
{
    sl_upconn_t *u = h->data;
    free(u);
}

void sl_upconn_close(sl_upconn_t *u)
{
    if (u->state == SL_UP_CLOSED)
        return;
    if (u->state == SL_UP_IDLE)
        idle_remove(u->w->proxy, u);
    u->state = SL_UP_CLOSED;
    u->owner = NULL;
    sl_timed_unlink(&u->timed);
    if (u->rbuf) {
        sl_buf_put(&u->w->bufs, u->rbuf);
        u->rbuf = NULL;
    }
    uv_close((uv_handle_t *)&u->tcp, close_cb);
}

static void expire(sl_timed_t *t)
{
    sl_upconn_t *u = (sl_upconn_t *)((char *)t - offsetof(sl_upconn_t, timed));
    if (u->state == SL_UP_IDLE || !u->on_timeout) {
        if (u->state == SL_UP_IDLE)
            ((up_worker_t *)u->w->proxy)->stats.idle_closed++;
        sl_upconn_close(u);
        return;
    }
    u->on_timeout(u);
}

void sl_upconn_deadline(sl_upconn_t *u, uint64_t ms)
{
    if (ms)
        sl_timed_set(&u->w->timers, &u->timed, ms);
    else
        sl_timed_clear(&u->timed);
}

static void connect_cb(uv_connect_t *req, int status)
{
    sl_upconn_t *u = req->data;
    if (u->state == SL_UP_CLOSED)
        return; /* closed while connecting (client went away): close_cb frees it */
    up_worker_t *uw = u->w->proxy;
    if (status < 0)
        uw->stats.connect_errors++;
    else
        u->state = SL_UP_ACTIVE;
    sl_upconn_deadline(u, 0);
    u->on_connect(u, status);
}

sl_upconn_t *sl_upconn_connect(sl_worker_t *w, sl_server_t *s, uint64_t timeout_ms,
                               sl_upconn_cb cb, void *owner, int *err)
{
    up_worker_t *uw = w->proxy;
    sl_upconn_t *u = calloc(1, sizeof(*u));
    *err = SL_ENOMEM;
    if (!u)
        return NULL;
    u->w = w;
    u->server = s;
    u->owner = owner;
    u->on_connect = cb;
    *err = uv_tcp_init(&w->loop, &u->tcp);
    if (*err) {
        free(u);
        return NULL;
    }
    u->tcp.data = u;
    u->creq.data = u;
    u->state = SL_UP_CONNECTING;
    uw->stats.connects++;
    uv_tcp_nodelay(&u->tcp, 1);
    *err = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&s->conf->addr.ss,
                          connect_cb);
    if (*err) {
        uw->stats.connect_errors++;
        u->state = SL_UP_CLOSED;
        uv_close((uv_handle_t *)&u->tcp, close_cb);
        return NULL;
    }
    sl_timed_link(&w->timers, &u->timed, expire);
    sl_upconn_deadline(u, timeout_ms);
    return u;
}

/* A parked connection should hear nothing; anything it hears ends it. */
static void idle_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    (void)hint;
    static char scratch[64];
    (void)h;
    out->base = scratch;
    out->len = sizeof(scratch);
}

static void idle_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    sl_upconn_t *u = s->data;
    if (nread == 0)
        return;
    ((up_worker_t *)u->w->proxy)->stats.idle_closed++;
    sl_upconn_close(u);
}

sl_upconn_t *sl_upconn_take_idle(sl_worker_t *w, sl_server_t *s)
{
    up_worker_t *uw = w->proxy;
    sl_upconn_t *u = uw->idle[s->id].head;
    if (!u)
        return NULL;
    idle_remove(uw, u);
    u->state = SL_UP_ACTIVE;
    sl_upconn_deadline(u, 0);
    uw->stats.reused++;
    return u;
}

void sl_upconn_release(sl_upconn_t *u, int reusable, uint32_t max_idle)
{
    up_worker_t *uw = u->w->proxy;
    if (!reusable || max_idle == 0 || u->w->draining || u->state != SL_UP_ACTIVE) {
        sl_upconn_close(u);
        return;
    }
    idle_list_t *l = &uw->idle[u->server->id];
    if (l->n >= max_idle) {
        sl_upconn_t *old = l->tail; /* least recently used */
        sl_upconn_close(old);
    }
    if (u->rbuf) {
        sl_buf_put(&u->w->bufs, u->rbuf);
        u->rbuf = NULL;
    }
    u->owner = NULL;
    u->on_timeout = NULL;
    u->state = SL_UP_IDLE;
    u->prev = NULL;
    u->next = l->head;
    if (l->head)
        l->head->prev = u;
    else
        l->tail = u;
    l->head = u;
    l->n++;
    uw->nidle++;
    sl_upconn_read(u, idle_alloc, idle_read);
    sl_upconn_deadline(u, IDLE_TIMEOUT_MS);
}

void sl_upstream_worker_close_idle(sl_worker_t *w)
{
    up_worker_t *uw = w->proxy;
    if (!uw)
        return;
    for (uint32_t i = 0; i < uw->nservers; i++)
        while (uw->idle[i].head)
            sl_upconn_close(uw->idle[i].head);
}

void sl_upconn_read(sl_upconn_t *u, uv_alloc_cb alloc, uv_read_cb cb)
{
    if (u->reading) {
        /* Swap the callbacks of a stream that is already reading instead of a stop and
         * start, which would cost two epoll_ctl calls per reused connection. These are
         * the fields uv_read_start sets; libuv reads them on every read event. */
        u->tcp.alloc_cb = alloc;
        u->tcp.read_cb = cb;
        return;
    }
    if (uv_read_start((uv_stream_t *)&u->tcp, alloc, cb) == 0)
        u->reading = 1;
}

void sl_upconn_read_stop(sl_upconn_t *u)
{
    if (u->reading) {
        uv_read_stop((uv_stream_t *)&u->tcp);
        u->reading = 0;
    }
}

int sl_server_fail(sl_server_t *s, uint64_t now_ms)
{
    uint32_t max = s->conf->max_fails;
    if (max == 0)
        return 0;
    uint64_t window = s->conf->fail_timeout_ms;
    uint64_t start = __atomic_load_n(&s->window_start_ms, __ATOMIC_RELAXED);
    if (now_ms - start >= window) {
        /* A new window; two threads may both reset it, which only loses a count. */
        __atomic_store_n(&s->window_start_ms, now_ms, __ATOMIC_RELAXED);
        __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
    }
    uint64_t n = __atomic_add_fetch(&s->fails, 1, __ATOMIC_RELAXED);
    if (n < max)
        return 0;
    uint64_t until = now_ms + window;
    uint64_t prev = __atomic_exchange_n(&s->down_until_ms, until, __ATOMIC_RELAXED);
    __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->window_start_ms, now_ms, __ATOMIC_RELAXED);
    if (prev <= now_ms) {
        sl_log_warn("upstream %s: %llu failure(s) within %llums: marked down for %llums",
                    s->conf->addr.text, (unsigned long long)n, (unsigned long long)window,
                    (unsigned long long)window);
        return 1;
    }
    return 0;
}

void sl_server_ok(sl_server_t *s)
{
    if (__atomic_load_n(&s->fails, __ATOMIC_RELAXED))
        __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
}

uint64_t sl_pool_down_mask(const sl_pool_t *p, uint64_t now_ms)
{
    uint64_t mask = 0;
    if (p->n == 1)
        return 0; /* as nginx: a lone server is never considered unavailable */
    uint32_t n = p->n < 64 ? p->n : 64;
    for (uint32_t i = 0; i < n; i++)
        if (__atomic_load_n(&p->servers[i].down_until_ms, __ATOMIC_RELAXED) > now_ms)
            mask |= 1ull << i;
    return mask;
}
