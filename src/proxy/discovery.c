/* discovery.c - periodic re-resolution of server names; see discovery.h. */
#include "discovery.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"

typedef struct entry {
    uv_timer_t timer;
    uv_getaddrinfo_t req;
    sl_discovery_t *d;
    sl_service_t *svc;
    sl_pool_t *pool;
    const sl_server_conf_t *conf; /* the configured name */
    int read_pool;
    int busy;    /* a resolution is in flight */
    int closing;
} entry_t;

struct sl_discovery {
    sl_upstreams_t *u;
    entry_t *entries;
    uint32_t n;
    uint32_t open;  /* timers not yet closed + resolutions not yet called back: the
                     * object is freed when both are done */
    int stopping;
    uint64_t done, failed;
};

static void release(sl_discovery_t *d)
{
    if (--d->open == 0) {
        free(d->entries);
        free(d);
    }
}

static void apply(entry_t *e, int status, struct addrinfo *res);

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    entry_t *e = req->data;
    sl_discovery_t *d = e->d;
    e->busy = 0;
    /* A resolution already running in the thread pool cannot be cancelled: it calls
     * back even after stop, so it holds a reference (d->open) until here. */
    if (!d->stopping && status != UV_ECANCELED)
        apply(e, status, res);
    else
        uv_freeaddrinfo(res);
    release(d);
}

static void apply(entry_t *e, int status, struct addrinfo *res)
{
    sl_discovery_t *d = e->d;
    d->done++;
    if (status < 0) {
        /* Keep what we have: a resolver hiccup must not empty a pool. */
        d->failed++;
        sl_log_warn("upstream %s:%u: resolve: %s (servers unchanged)", e->conf->host,
                    e->conf->port, uv_strerror(status));
        return;
    }
    sl_addr_t seen[SL_MAX_RESOLVED * 2];
    uint32_t nseen = 0;
    for (struct addrinfo *ai = res; ai && nseen < SL_ARRAY_LEN(seen); ai = ai->ai_next) {
        sl_addr_t a;
        if (sl_addr_from_sockaddr(&a, ai->ai_addr, e->conf->port))
            continue;
        int dup = 0;
        for (uint32_t k = 0; k < nseen; k++)
            dup |= strcmp(seen[k].text, a.text) == 0;
        if (!dup)
            seen[nseen++] = a;
    }
    uv_freeaddrinfo(res);
    /* Join the new addresses (or bring back ones being drained). */
    for (uint32_t k = 0; k < nseen; k++) {
        sl_server_t *s = NULL;
        uint32_t n = sl_pool_size(e->pool);
        for (uint32_t i = 0; i < n; i++) {
            sl_server_t *c = &e->pool->slots[i];
            if (c->state != SL_SRV_REMOVED && strcmp(c->conf.addr.text, seen[k].text) == 0)
                s = c;
        }
        if (s) {
            if (s->state == SL_SRV_DRAINING) {
                sl_server_set_state(s, e->svc->conf->health.enabled ? SL_SRV_CHECKING : SL_SRV_UP,
                                    "back in DNS");
                if (e->pool->ops->changed)
                    e->pool->ops->changed(e->pool);
            }
            continue;
        }
        sl_server_conf_t conf = *e->conf;
        conf.addr = seen[k];
        if (sl_upstreams_add(d->u, e->svc, e->read_pool, &conf, &s) == 0)
            s->origin = e->conf;
        else
            sl_log_warn("upstream %s: cannot add (pool full)", seen[k].text);
    }
    /* Drain those of this name that vanished. */
    uint32_t n = sl_pool_size(e->pool);
    for (uint32_t i = 0; i < n; i++) {
        sl_server_t *s = &e->pool->slots[i];
        if (s->origin != e->conf || s->state == SL_SRV_DRAINING || s->state == SL_SRV_REMOVED)
            continue;
        int still = 0;
        for (uint32_t k = 0; k < nseen; k++)
            still |= strcmp(seen[k].text, s->conf.addr.text) == 0;
        if (!still) {
            sl_log_info("upstream %s: gone from DNS %s: draining", s->conf.addr.text,
                        e->conf->host);
            sl_server_drain(s);
        }
    }
}

static void tick(uv_timer_t *t)
{
    entry_t *e = t->data;
    if (e->busy || e->d->stopping)
        return;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    e->req.data = e;
    if (uv_getaddrinfo(t->loop, &e->req, resolved, e->conf->host, NULL, &hints) == 0) {
        e->busy = 1;
        e->d->open++;
    }
}

static void add_entries(sl_discovery_t *d, uv_loop_t *loop, sl_service_t *svc, int read_pool,
                        const sl_server_conf_t *servers, uint32_t n)
{
    for (uint32_t j = 0; j < n; j++) {
        if (!servers[j].host || !servers[j].resolve_ms)
            continue;
        entry_t *e = &d->entries[d->n++];
        e->d = d;
        e->svc = svc;
        e->read_pool = read_pool;
        e->pool = read_pool ? &svc->read : &svc->primary;
        e->conf = &servers[j];
        uv_timer_init(loop, &e->timer);
        e->timer.data = e;
        d->open++;
        uv_timer_start(&e->timer, tick, servers[j].resolve_ms, servers[j].resolve_ms);
    }
}

sl_discovery_t *sl_discovery_start(uv_loop_t *loop, sl_upstreams_t *u)
{
    uint32_t count = 0;
    for (uint32_t i = 0; i < u->nservices; i++) {
        const sl_service_conf_t *sc = u->services[i].conf;
        for (uint32_t j = 0; j < sc->nservers; j++)
            count += sc->servers[j].host && sc->servers[j].resolve_ms;
        for (uint32_t j = 0; j < sc->nread_servers; j++)
            count += sc->read_servers[j].host && sc->read_servers[j].resolve_ms;
    }
    if (!count)
        return NULL;
    sl_discovery_t *d = calloc(1, sizeof(*d));
    if (!d || !(d->entries = calloc(count, sizeof(entry_t)))) {
        free(d);
        return NULL;
    }
    d->u = u;
    for (uint32_t i = 0; i < u->nservices; i++) {
        sl_service_t *svc = &u->services[i];
        add_entries(d, loop, svc, 0, svc->conf->servers, svc->conf->nservers);
        add_entries(d, loop, svc, 1, svc->conf->read_servers, svc->conf->nread_servers);
    }
    return d;
}

static void closed(uv_handle_t *h)
{
    entry_t *e = h->data;
    release(e->d);
}

void sl_discovery_stop(sl_discovery_t *d)
{
    if (!d)
        return;
    d->stopping = 1;
    for (uint32_t i = 0; i < d->n; i++) {
        entry_t *e = &d->entries[i];
        if (e->busy)
            uv_cancel((uv_req_t *)&e->req);
        uv_close((uv_handle_t *)&e->timer, closed);
    }
}

uint64_t sl_discovery_count(const sl_discovery_t *d, int failed)
{
    return d ? (failed ? d->failed : d->done) : 0;
}
