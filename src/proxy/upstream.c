/* upstream.c - services, servers, upstream connections and keep-alive pools; see upstream.h.
 * An idle pooled connection keeps reading: a server that closes it (keep-alive timeout)
 * or sends unsolicited bytes is noticed at once and the connection is dropped, so a
 * request is rarely sent on a dead connection (proxy.c retries the rest). */
#include "upstream.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/config_diff.h"
#include "../core/log.h"
#include "../core/metrics.h"

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

/* Fill slot i of pool from conf and give it the next global id. */
/* The server's label id: its label set is the text, so a reload keeps the series. */
static uint32_t server_mid(const char *service, const char *addr)
{
    char t[256];
    snprintf(t, sizeof(t), "service=\"%s\",server=\"%s\"", service, addr);
    return sl_label_id(SL_LABELS_SERVER, t);
}

static sl_server_t *slot_init(sl_upstreams_t *u, sl_pool_t *pool, const sl_server_conf_t *conf,
                              int read_pool, uint32_t state, const char *service)
{
    uint32_t i = pool->n;
    sl_server_t *s = &pool->slots[i];
    memset(s, 0, sizeof(*s));
    s->conf = *conf;
    s->index = i;
    s->read_pool = (uint32_t)read_pool;
    s->pool = pool;
    s->state = state;
    s->id = u->nservers;
    s->mid = server_mid(service, conf->addr.text);
    u->servers[s->id] = s;
    __atomic_store_n(&u->nservers, s->id + 1, __ATOMIC_RELEASE);
    return s;
}

/* Resolve a configured name now, blocking: only at start-up, before any worker runs
 * (as nginx resolves upstream names when it loads its configuration). Appends one
 * entry per address to *out. Returns the count, or a negative EAI_ code. */
static int resolve_now(const sl_server_conf_t *conf, sl_server_conf_t **out, uint32_t *n,
                       uint32_t *cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(conf->host, NULL, &hints, &res);
    if (rc)
        return rc < 0 ? rc : -rc;
    int added = 0;
    for (struct addrinfo *ai = res; ai && added < SL_MAX_RESOLVED; ai = ai->ai_next) {
        sl_server_conf_t c = *conf;
        if (sl_addr_from_sockaddr(&c.addr, ai->ai_addr, conf->port))
            continue;
        int dup = 0;
        for (uint32_t k = 0; k < *n; k++)
            dup |= strcmp((*out)[k].addr.text, c.addr.text) == 0;
        if (dup)
            continue;
        if (*n == *cap) {
            uint32_t ncap = *cap ? *cap * 2 : 8;
            sl_server_conf_t *m = realloc(*out, ncap * sizeof(*m));
            if (!m)
                break;
            *out = m;
            *cap = ncap;
        }
        (*out)[(*n)++] = c;
        added++;
    }
    freeaddrinfo(res);
    return added;
}

/* The configured servers with names expanded to their addresses: *out (caller frees)
 * and origin[i] = the entry each came from. SL_EINVAL when a name that is resolved only
 * once cannot be resolved (start-up fails, as nginx's "host not found in upstream"). */
static int expand(const sl_server_conf_t *servers, uint32_t n, sl_server_conf_t **out,
                  const sl_server_conf_t ***origin, uint32_t *count)
{
    uint32_t cap = 0, k = 0;
    *out = NULL;
    *origin = NULL;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t before = k;
        if (!servers[j].host) {
            if (k == cap) {
                uint32_t ncap = cap ? cap * 2 : 8;
                sl_server_conf_t *m = realloc(*out, ncap * sizeof(*m));
                if (!m)
                    return SL_ENOMEM;
                *out = m;
                cap = ncap;
            }
            (*out)[k++] = servers[j];
        } else {
            int rc = resolve_now(&servers[j], out, &k, &cap);
            if (rc <= 0) {
                if (!servers[j].resolve_ms) {
                    sl_log_error("upstream %s:%u: cannot resolve: %s", servers[j].host,
                                 servers[j].port, rc ? gai_strerror(-rc) : "no address");
                    return SL_EINVAL;
                }
                sl_log_warn("upstream %s:%u: cannot resolve yet (%s): will retry every %llums",
                            servers[j].host, servers[j].port, rc ? gai_strerror(-rc) : "no address",
                            (unsigned long long)servers[j].resolve_ms);
            }
        }
        const sl_server_conf_t **o = realloc(*origin, (cap ? cap : 1) * sizeof(*o));
        if (!o)
            return SL_ENOMEM;
        *origin = o;
        for (uint32_t i = before; i < k; i++)
            o[i] = &servers[j];
    }
    *count = k;
    return 0;
}

/* Slots an autoscaled service's primary pool needs beyond its configured servers: one per
 * port of its range, since an instance always returns to the slot of its port. */
static uint32_t autoscale_slots(const sl_service_conf_t *sc)
{
    const sl_autoscale_conf_t *a = &sc->autoscale;
    return a->enabled && a->port_hi >= a->port_lo ? a->port_hi - a->port_lo + 1 : 0;
}

static int pool_build(sl_upstreams_t *u, sl_pool_t *pool, const sl_service_conf_t *sc,
                      const sl_server_conf_t *servers, uint32_t n, int read_pool, int nthreads)
{
    pool->nthreads = nthreads;
    pool->ops = sl_balancer_for(sc->balance);
    if (!n)
        return 0;
    sl_server_conf_t *list;
    const sl_server_conf_t **origin;
    uint32_t count = 0;
    int rc = expand(servers, n, &list, &origin, &count);
    if (rc || u->nservers + count + SL_POOL_HEADROOM + autoscale_slots(sc) > u->cap) {
        free(list);
        free(origin);
        return rc ? rc : SL_ENOMEM;
    }
    pool->cap = count + SL_POOL_HEADROOM + (read_pool ? 0 : autoscale_slots(sc));
    pool->slots = calloc(pool->cap, sizeof(sl_server_t));
    if (!pool->slots || !pool->ops) {
        free(list);
        free(origin);
        return SL_ENOMEM;
    }
    /* With active checks a server earns traffic by passing them, at start too. */
    uint32_t state = sc->health.enabled ? SL_SRV_CHECKING : SL_SRV_UP;
    for (uint32_t j = 0; j < count; j++) {
        sl_server_t *s = slot_init(u, pool, &list[j], read_pool, state, sc->name);
        s->origin = origin[j];
        pool->n++;
    }
    free(list);
    free(origin);
    return pool->ops->init(pool);
}

int sl_upstreams_build(sl_upstreams_t *u, const sl_config_t *cfg, int nthreads)
{
    memset(u, 0, sizeof(*u));
    u->nservices = cfg->nservices;
    u->services = calloc(cfg->nservices ? cfg->nservices : 1, sizeof(sl_service_t));
    /* Ids for every slot of every pool: configured entries, the addresses names expand
     * to (bounded), and the run-time headroom. */
    uint32_t cap = 0;
    for (uint32_t i = 0; i < cfg->nservices; i++)
        cap += 2 * SL_POOL_HEADROOM + autoscale_slots(&cfg->services[i]) +
               (cfg->services[i].nservers + cfg->services[i].nread_servers) * SL_MAX_RESOLVED;
    u->cap = cap;
    u->servers = calloc(cap ? cap : 1, sizeof(sl_server_t *));
    if (!u->services || !u->servers)
        goto fail;
    for (uint32_t i = 0; i < cfg->nservices; i++) {
        const sl_service_conf_t *sc = &cfg->services[i];
        sl_service_t *s = &u->services[i];
        s->conf = sc;
        s->index = i;
        int rc = pool_build(u, &s->primary, sc, sc->servers, sc->nservers, 0, nthreads);
        if (!rc)
            rc = pool_build(u, &s->read, sc, sc->read_servers, sc->nread_servers, 1, nthreads);
        if (rc) {
            sl_upstreams_free(u);
            return rc;
        }
    }
    return 0;
fail:
    sl_upstreams_free(u);
    return SL_ENOMEM;
}

static void pool_free(sl_pool_t *p)
{
    if (p->ops && p->state)
        p->ops->destroy(p);
    free(p->slots);
}

void sl_upstreams_free(sl_upstreams_t *u)
{
    for (uint32_t i = 0; u->services && i < u->nservices; i++) {
        pool_free(&u->services[i].primary);
        pool_free(&u->services[i].read);
    }
    free(u->services);
    free(u->servers);
    memset(u, 0, sizeof(*u));
}

sl_service_t *sl_upstreams_find(sl_upstreams_t *u, const char *name, size_t len)
{
    for (uint32_t i = 0; i < u->nservices; i++) {
        const char *n = u->services[i].conf->name;
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return &u->services[i];
    }
    return NULL;
}

static sl_server_t *pool_find(sl_pool_t *p, const char *addr, size_t len)
{
    for (uint32_t i = 0; i < p->n; i++) {
        sl_server_t *s = &p->slots[i];
        if (s->state != SL_SRV_REMOVED && strlen(s->conf.addr.text) == len &&
            memcmp(s->conf.addr.text, addr, len) == 0)
            return s;
    }
    return NULL;
}

sl_server_t *sl_upstreams_find_server(sl_service_t *svc, const char *addr, size_t len)
{
    sl_server_t *s = pool_find(&svc->primary, addr, len);
    return s ? s : pool_find(&svc->read, addr, len);
}

const char *sl_server_state_name(uint32_t st)
{
    static const char *names[] = {"up", "checking", "draining", "removed"};
    return st < SL_ARRAY_LEN(names) ? names[st] : "unknown";
}

void sl_server_set_state(sl_server_t *s, uint32_t st, const char *why)
{
    uint32_t old = __atomic_exchange_n(&s->state, st, __ATOMIC_ACQ_REL);
    if (old == st)
        return;
    __atomic_add_fetch(&s->transitions, 1, __ATOMIC_RELAXED);
    if (st == SL_SRV_UP) {
        /* Active checks vouch for it: forget passive marks (as Envoy un-ejects a host on
         * a passing check), or it would stay out up to fail_timeout more. */
        __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->down_until_ms, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->trial, 0, __ATOMIC_RELEASE);
    }
    sl_log_info("upstream %s: %s -> %s (%s)", s->conf.addr.text, sl_server_state_name(old),
                sl_server_state_name(st), why);
}

int sl_server_warn_ok(sl_server_t *s, uint64_t now_ms, uint64_t *dropped)
{
    uint64_t last = __atomic_load_n(&s->last_warn_ms, __ATOMIC_RELAXED);
    if (last && now_ms - last < 1000) {
        __atomic_add_fetch(&s->warns_dropped, 1, __ATOMIC_RELAXED);
        return 0;
    }
    if (!__atomic_compare_exchange_n(&s->last_warn_ms, &last, now_ms ? now_ms : 1, 0,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        __atomic_add_fetch(&s->warns_dropped, 1, __ATOMIC_RELAXED);
        return 0;
    }
    *dropped = __atomic_exchange_n(&s->warns_dropped, 0, __ATOMIC_RELAXED);
    return 1;
}

int sl_upstreams_add(sl_upstreams_t *u, sl_service_t *svc, int read_pool,
                     const sl_server_conf_t *conf, sl_server_t **out)
{
    sl_pool_t *pool = read_pool ? &svc->read : &svc->primary;
    if (pool_find(pool, conf->addr.text, strlen(conf->addr.text)))
        return -17;
    if (!pool->slots) {
        /* A read pool the configuration did not have: create it now. */
        pool->cap = SL_POOL_HEADROOM + (read_pool ? 0 : autoscale_slots(svc->conf));
        pool->nthreads = svc->primary.nthreads;
        pool->ops = svc->primary.ops;
        pool->slots = calloc(pool->cap, sizeof(sl_server_t));
        if (!pool->slots || pool->ops->init(pool)) {
            free(pool->slots);
            pool->slots = NULL;
            pool->cap = 0;
            return SL_ENOMEM;
        }
    }
    uint32_t state = svc->conf->health.enabled ? SL_SRV_CHECKING : SL_SRV_UP;
    sl_server_t *s = NULL;
    if (pool->n >= pool->cap || u->nservers >= u->cap) {
        /* Full: take the slot of a server removed long enough ago that no worker can still
         * be using it (nothing is in flight on a REMOVED server; its kept-alive
         * connections are of the old generation and get closed, not reused). */
        uint64_t now = uv_hrtime() / 1000000;
        for (uint32_t i = 0; i < pool->n && !s; i++) {
            sl_server_t *r = &pool->slots[i];
            if (__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == SL_SRV_REMOVED &&
                now - r->removed_ms >= SL_SLOT_QUIET_MS)
                s = r;
        }
        if (!s)
            return SL_EINVAL;
        sl_log_info("upstream %s: takes the slot of removed %s", conf->addr.text,
                    s->conf.addr.text);
        /* Field by field, state last: workers read state (acquire) before anything else of a
         * slot and skip a REMOVED one, so they never see it half rewritten. */
        s->conf = *conf;
        s->mid = server_mid(svc->conf->name, conf->addr.text);
        s->origin = NULL;
        s->read_pool = (uint32_t)read_pool;
        __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->window_start_ms, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->down_until_ms, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->trial, 0, __ATOMIC_RELAXED);
        s->hc_ok = s->hc_fail = 0;
        __atomic_store_n(&s->hc_checks, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->hc_failed, 0, __ATOMIC_RELAXED);
        s->hc_last_status = 0;
        __atomic_store_n(&s->requests, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->failures, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->transitions, 0, __ATOMIC_RELAXED);
        s->removed_ms = 0;
        __atomic_store_n(&s->gen, s->gen + 1, __ATOMIC_RELEASE);
        __atomic_store_n(&s->state, state, __ATOMIC_RELEASE);
    } else {
        s = slot_init(u, pool, conf, read_pool, state, svc->conf->name);
        __atomic_store_n(&pool->n, pool->n + 1, __ATOMIC_RELEASE);
    }
    if (pool->ops->changed)
        pool->ops->changed(pool);
    sl_log_info("upstream %s: added to service %s (%s pool, %s)", s->conf.addr.text,
                svc->conf->name, read_pool ? "read" : "primary", sl_server_state_name(s->state));
    if (out)
        *out = s;
    return 0;
}

sl_server_t *sl_upstreams_revive(sl_service_t *svc, const char *addr)
{
    sl_pool_t *pool = &svc->primary;
    for (uint32_t i = 0; pool->slots && i < pool->n; i++) {
        sl_server_t *s = &pool->slots[i];
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SL_SRV_REMOVED ||
            strcmp(s->conf.addr.text, addr) != 0)
            continue;
        __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->down_until_ms, 0, __ATOMIC_RELAXED);
        s->hc_ok = s->hc_fail = 0;
        sl_server_set_state(s, svc->conf->health.enabled ? SL_SRV_CHECKING : SL_SRV_UP,
                            "instance restarted");
        if (pool->ops->changed)
            pool->ops->changed(pool);
        return s;
    }
    return NULL;
}

int sl_server_drain(sl_server_t *s)
{
    uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
    if (st == SL_SRV_DRAINING || st == SL_SRV_REMOVED)
        return SL_EINVAL;
    sl_server_set_state(s, SL_SRV_DRAINING, "drain requested");
    /* Rebuild now (the hash table moves its keys once, not again at REMOVED). */
    if (s->pool && s->pool->ops->changed)
        s->pool->ops->changed(s->pool);
    return 0;
}

static int pool_tick(sl_pool_t *p)
{
    int removed = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        sl_server_t *s = &p->slots[i];
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == SL_SRV_DRAINING &&
            __atomic_load_n(&s->inflight, __ATOMIC_ACQUIRE) == 0) {
            sl_server_set_state(s, SL_SRV_REMOVED, "drained: no requests in flight");
            s->removed_ms = uv_hrtime() / 1000000;
            removed++;
        }
    }
    if (removed && p->ops->changed)
        p->ops->changed(p);
    return removed;
}

int sl_upstreams_tick(sl_upstreams_t *u)
{
    int removed = 0;
    for (uint32_t i = 0; i < u->nservices; i++)
        removed += pool_tick(&u->services[i].primary) + pool_tick(&u->services[i].read);
    return removed;
}

int sl_upstream_worker_init(sl_worker_t *w, const sl_upstreams_t *u)
{
    up_worker_t *uw = calloc(1, sizeof(*uw));
    if (!uw)
        return SL_ENOMEM;
    uw->idle = calloc(u->cap ? u->cap : 1, sizeof(idle_list_t));
    if (!uw->idle) {
        free(uw);
        return SL_ENOMEM;
    }
    uw->nservers = u->cap;
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

uint64_t sl_service_busy(const sl_service_t *svc)
{
    uint64_t busy = 0;
    const sl_pool_t *pools[2] = {&svc->primary, &svc->read};
    for (int p = 0; p < 2; p++) {
        uint32_t n = pools[p]->slots ? sl_pool_size(pools[p]) : 0;
        for (uint32_t k = 0; k < n; k++)
            busy += __atomic_load_n(&pools[p]->slots[k].inflight, __ATOMIC_RELAXED);
    }
    return busy;
}

uint32_t sl_upstream_worker_idle_server(const sl_worker_t *w, uint32_t server_id)
{
    const up_worker_t *uw = w->proxy;
    if (!uw || server_id >= uw->nservers)
        return 0;
    return __atomic_load_n(&uw->idle[server_id].n, __ATOMIC_RELAXED);
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
    u->gen = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
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
    *err = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&s->conf.addr.ss,
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
    uint32_t gen = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
    sl_upconn_t *u;
    /* connections to the address the slot had before it was reused are useless */
    while ((u = uw->idle[s->id].head) != NULL && u->gen != gen)
        sl_upconn_close(u); /* takes it off the idle list */
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
    if (!reusable || max_idle == 0 || u->w->draining || u->state != SL_UP_ACTIVE ||
        u->gen != __atomic_load_n(&u->server->gen, __ATOMIC_ACQUIRE)) {
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

int sl_server_fail(sl_server_t *s, uint64_t now_ms, int lone)
{
    __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
    uint32_t max = s->conf.max_fails;
    if (max == 0 || lone)
        return 0;
    uint64_t window = s->conf.fail_timeout_ms;
    uint64_t until = __atomic_load_n(&s->down_until_ms, __ATOMIC_RELAXED);
    if (until && now_ms >= until) {
        /* It was out and its trial (or a request racing it) failed: out again at once. */
        __atomic_store_n(&s->down_until_ms, now_ms + window, __ATOMIC_RELAXED);
        __atomic_store_n(&s->trial, 0, __ATOMIC_RELEASE);
        __atomic_add_fetch(&s->transitions, 1, __ATOMIC_RELAXED);
        sl_log_warn("upstream %s: trial request failed: down for %llums", s->conf.addr.text,
                    (unsigned long long)window);
        return 1;
    }
    if (until)
        return 0; /* already out */
    uint64_t start = __atomic_load_n(&s->window_start_ms, __ATOMIC_RELAXED);
    if (now_ms - start >= window) {
        /* A new window; two threads may both reset it, which only loses a count. */
        __atomic_store_n(&s->window_start_ms, now_ms, __ATOMIC_RELAXED);
        __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
    }
    uint64_t n = __atomic_add_fetch(&s->fails, 1, __ATOMIC_RELAXED);
    if (n < max)
        return 0;
    uint64_t expect = 0;
    if (!__atomic_compare_exchange_n(&s->down_until_ms, &expect, now_ms + window, 0,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return 0; /* another thread marked it */
    __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->transitions, 1, __ATOMIC_RELAXED);
    sl_log_warn("upstream %s: %llu failure(s) within %llums: down for %llums", s->conf.addr.text,
                (unsigned long long)n, (unsigned long long)window, (unsigned long long)window);
    return 1;
}

void sl_server_ok(sl_server_t *s)
{
    if (__atomic_load_n(&s->fails, __ATOMIC_RELAXED))
        __atomic_store_n(&s->fails, 0, __ATOMIC_RELAXED);
    if (__atomic_load_n(&s->down_until_ms, __ATOMIC_RELAXED)) {
        __atomic_store_n(&s->down_until_ms, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->trial, 0, __ATOMIC_RELEASE);
        __atomic_add_fetch(&s->transitions, 1, __ATOMIC_RELAXED);
        sl_log_info("upstream %s: trial request succeeded: back", s->conf.addr.text);
    }
}

int sl_server_claim(sl_server_t *s)
{
    if (!__atomic_load_n(&s->down_until_ms, __ATOMIC_RELAXED))
        return 1;
    uint32_t expect = 0;
    return __atomic_compare_exchange_n(&s->trial, &expect, 1, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

void sl_server_unclaim(sl_server_t *s)
{
    __atomic_store_n(&s->trial, 0, __ATOMIC_RELEASE);
}

/* Per-server metrics, read from the shared counters at scrape time (control thread). */
static void collect_pool(sl_textbuf_t *t, const sl_service_t *svc, const sl_pool_t *p,
                         const char *family, int which, uint64_t now_ms)
{
    uint32_t n = sl_pool_size(p);
    for (uint32_t i = 0; i < n; i++) {
        const sl_server_t *s = &p->slots[i];
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        uint64_t until = __atomic_load_n(&s->down_until_ms, __ATOMIC_RELAXED);
        uint64_t v = 0;
        switch (which) {
        case 0: v = __atomic_load_n(&s->inflight, __ATOMIC_RELAXED); break;
        case 1: v = __atomic_load_n(&s->requests, __ATOMIC_RELAXED); break;
        case 2: v = __atomic_load_n(&s->failures, __ATOMIC_RELAXED); break;
        case 3: v = st == SL_SRV_UP && (!until || now_ms >= until); break;
        case 4: v = __atomic_load_n(&s->transitions, __ATOMIC_RELAXED); break;
        case 5: v = __atomic_load_n(&s->hc_checks, __ATOMIC_RELAXED) -
                    __atomic_load_n(&s->hc_failed, __ATOMIC_RELAXED); break;
        case 6: v = __atomic_load_n(&s->hc_failed, __ATOMIC_RELAXED); break;
        }
        if (which == 3 && st == SL_SRV_REMOVED)
            continue;
        sl_text_printf(t, "%s{service=\"%s\",server=\"%s\",pool=\"%s\"%s} %llu\n", family,
                       svc->conf->name, s->conf.addr.text, s->read_pool ? "read" : "primary",
                       which == 5 ? ",result=\"ok\"" : which == 6 ? ",result=\"failed\"" : "",
                       (unsigned long long)v);
    }
}

void sl_upstreams_collect(sl_textbuf_t *t, void *arg)
{
    const sl_upstreams_t *u = arg;
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"upstream_in_flight", "gauge", "Requests on the server now, all workers."},
        {"upstream_requests_total", "counter", "Requests sent to the server (each attempt)."},
        {"upstream_failures_total", "counter",
         "Failed attempts: connect error, timeout, reset or malformed answer, or a "
         "fail_on_status answer."},
        {"upstream_up", "gauge",
         "1 when the server takes requests: up, not checking, draining or passively down."},
        {"upstream_state_transitions_total", "counter",
         "State changes: health checks, passive marks and recoveries, drains."},
        {"upstream_health_checks_total", "counter", "Active health checks by result."},
    };
    uint64_t now_ms = uv_hrtime() / 1000000;
    for (int f = 0; f < 6; f++) {
        sl_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name,
                       fam[f].type);
        for (uint32_t i = 0; i < u->nservices; i++) {
            const sl_service_t *svc = &u->services[i];
            for (int which = f; which <= (f == 5 ? 6 : f); which++) {
                collect_pool(t, svc, &svc->primary, fam[f].name, which, now_ms);
                collect_pool(t, svc, &svc->read, fam[f].name, which, now_ms);
            }
        }
    }
    sl_text_printf(t, "# HELP upstream_retries_total Requests re-sent to another server.\n"
                      "# TYPE upstream_retries_total counter\n");
    for (uint32_t i = 0; i < u->nservices; i++)
        sl_text_printf(t, "upstream_retries_total{service=\"%s\"} %llu\n",
                       u->services[i].conf->name,
                       (unsigned long long)__atomic_load_n(&u->services[i].retries_total,
                                                           __ATOMIC_RELAXED));
    sl_text_printf(t, "# HELP upstream_retry_budget_exhausted_total Retries refused because "
                      "the service's retry budget was used up.\n"
                      "# TYPE upstream_retry_budget_exhausted_total counter\n");
    for (uint32_t i = 0; i < u->nservices; i++)
        sl_text_printf(t, "upstream_retry_budget_exhausted_total{service=\"%s\"} %llu\n",
                       u->services[i].conf->name,
                       (unsigned long long)__atomic_load_n(&u->services[i].budget_exhausted,
                                                           __ATOMIC_RELAXED));
}

/* ---- reload ---- */

/* Copy what the running server `from` learned into its successor `to` (same service, same
 * address): the counters always, so series never go backwards; the health state only
 * when `health` (the service is unchanged, so the old verdicts still mean the same). */
static void server_carry(sl_server_t *to, sl_server_t *from, int health)
{
    to->requests = from->carried_requests = __atomic_load_n(&from->requests, __ATOMIC_RELAXED);
    to->failures = from->carried_failures = __atomic_load_n(&from->failures, __ATOMIC_RELAXED);
    to->transitions = __atomic_load_n(&from->transitions, __ATOMIC_RELAXED);
    to->hc_checks = __atomic_load_n(&from->hc_checks, __ATOMIC_RELAXED);
    to->hc_failed = __atomic_load_n(&from->hc_failed, __ATOMIC_RELAXED);
    if (!health)
        return;
    to->fails = __atomic_load_n(&from->fails, __ATOMIC_RELAXED);
    to->window_start_ms = __atomic_load_n(&from->window_start_ms, __ATOMIC_RELAXED);
    to->down_until_ms = __atomic_load_n(&from->down_until_ms, __ATOMIC_RELAXED);
    to->hc_ok = from->hc_ok;
    to->hc_fail = from->hc_fail;
    to->hc_last_status = from->hc_last_status;
    to->removed_ms = from->removed_ms;
    to->state = __atomic_load_n(&from->state, __ATOMIC_ACQUIRE);
}

static void pool_carry(sl_upstreams_t *u, sl_service_t *to, sl_pool_t *np, sl_pool_t *op,
                       int same, int read_pool)
{
    uint32_t on = op->slots ? __atomic_load_n(&op->n, __ATOMIC_ACQUIRE) : 0;
    for (uint32_t i = 0; i < on; i++) {
        sl_server_t *os = &op->slots[i];
        sl_server_t *ns = NULL;
        uint32_t nn = np->slots ? np->n : 0;
        for (uint32_t k = 0; k < nn && !ns; k++)
            if (strcmp(np->slots[k].conf.addr.text, os->conf.addr.text) == 0)
                ns = &np->slots[k];
        uint32_t st = __atomic_load_n(&os->state, __ATOMIC_ACQUIRE);
        /* A server the API, DNS or the autoscaler added lives on while its service is
         * unchanged (the autoscaler then goes on with it: sl_autoscale_rebind). */
        if (!ns && same && !os->origin && st != SL_SRV_REMOVED)
            sl_upstreams_add(u, to, read_pool, &os->conf, &ns);
        if (ns)
            server_carry(ns, os, same);
    }
    if (np->slots && np->ops && np->ops->changed)
        np->ops->changed(np);
}

int sl_upstreams_carry(sl_upstreams_t *u, sl_upstreams_t *old)
{
    int carried = 0;
    for (uint32_t i = 0; i < u->nservices; i++) {
        sl_service_t *to = &u->services[i];
        sl_service_t *from = NULL;
        for (uint32_t k = 0; k < old->nservices && !from; k++)
            if (strcmp(old->services[k].conf->name, to->conf->name) == 0)
                from = &old->services[k];
        if (!from)
            continue;
        int same = sl_config_service_equal(from->conf, to->conf);
        to->retries_total = __atomic_load_n(&from->retries_total, __ATOMIC_RELAXED);
        to->budget_exhausted = __atomic_load_n(&from->budget_exhausted, __ATOMIC_RELAXED);
        pool_carry(u, to, &to->primary, &from->primary, same, 0);
        pool_carry(u, to, &to->read, &from->read, same, 1);
        carried += same;
    }
    return carried;
}

void sl_upstreams_fold(sl_upstreams_t *u, const sl_upstreams_t *old)
{
    for (uint32_t i = 0; i < old->nservices; i++) {
        const sl_service_t *from = &old->services[i];
        sl_service_t *to = sl_upstreams_find(u, from->conf->name, strlen(from->conf->name));
        if (!to)
            continue;
        const sl_pool_t *pools[2] = {&from->primary, &from->read};
        for (int p = 0; p < 2; p++)
            for (uint32_t k = 0; pools[p]->slots && k < pools[p]->n; k++) {
                const sl_server_t *os = &pools[p]->slots[k];
                sl_server_t *ns = sl_upstreams_find_server(to, os->conf.addr.text,
                                                           strlen(os->conf.addr.text));
                if (!ns || os->requests < os->carried_requests)
                    continue;
                __atomic_add_fetch(&ns->requests, os->requests - os->carried_requests,
                                   __ATOMIC_RELAXED);
                __atomic_add_fetch(&ns->failures, os->failures - os->carried_failures,
                                   __ATOMIC_RELAXED);
            }
    }
}
