/* server.c - workers, listeners, accept, limits, signals, drain, reload; see server.h.
 *
 * Every worker owns one listening socket per `listen` address, all bound with
 * SO_REUSEPORT, so the kernel spreads new connections over the workers and no accept
 * lock or hand-off exists. Sockets are bound on the main thread before any worker
 * starts, so a port in use is a start-up error, not a silent half-start.
 *
 * Reload (nginx's generations, as threads of one process): workers come in generations,
 * each serving one gateway (routes, services, limits) built from one configuration. A
 * reload builds a new gateway on the control thread, starts a new generation on dup()s
 * of the same listening sockets, then tells the old generation to stop accepting and
 * drain. A socket is never closed while it has a connection queued, since each lives on
 * in its dup; old workers see only the old gateway and new ones only the new, so nothing
 * per request needs a lock. The old gateway is freed once its last worker has exited. */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>

#include <fcntl.h>
#include <time.h>

#include "core/config_diff.h"
#include "core/cpus.h"
#include "core/inherit.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/conn.h"
#include "http/h2.h"
#include "ops/admin.h"
#include "ops/alerts.h"
#include "ops/autoscale.h"
#include "ops/sampler.h"
#include "policy/ratelimit_redis.h"
#include "proxy/discovery.h"
#include "proxy/health.h"
#include "proxy/router.h"
#include "proxy/upstream.h"
#include "http/tls.h"

/* Listening sockets one worker accepts on: one per `listen` address, more when a reload
 * to fewer workers gave it the sockets of several old ones (each socket must keep a
 * holder, or connections queued on it would be reset). */
#define WC_MAX_LISTEN (SL_CONF_MAX_LISTEN * 4)

struct gen;

#define NSIGNALS 4 /* SIGTERM, SIGINT: drain and exit; SIGHUP: reload; SIGUSR2: upgrade */
#define UPGRADE_TIMEOUT_MS 60000 /* the new binary must be serving within this */
/* After a reload, how long an idle keep-alive connection of the old generation may still
 * send a request (answered with Connection: close) before it is closed. */
#define RELOAD_IDLE_GRACE_MS 1000

typedef struct wctx {
    sl_worker_t w;
    pthread_t thread;
    uv_async_t stop; /* signalled by the control thread: drain (or force) */
    uv_tcp_t listeners[WC_MAX_LISTEN];
    int fds[WC_MAX_LISTEN];
    uint8_t lidx[WC_MAX_LISTEN]; /* which `listen` entry of its generation's config */
    uint32_t nlisten;
    int force;              /* atomic: close everything now */
    uint64_t idle_grace_ms; /* atomic: drain after a reload: see sl_conn_drain_all */
    int exited;             /* drained: its loop is closing */
    int done;               /* atomic: the thread is about to return */
    int started;            /* the thread was created (join it) */
    int loop_ready;         /* worker_setup got as far as the loop */
    uint32_t nopened;       /* fds[0, nopened) belong to listener handles */
    uint64_t accepted, rejected;
    sl_upstream_stats_t up_final; /* its upstream counters as it exited */
    struct server *srv;
    struct gen *gen;
} wctx_t;

/* One generation: a gateway and the workers serving it. Control thread owns it. */
typedef struct gen {
    uint64_t id;     /* sluice_config_generation: 1 at start, +1 per reload */
    sl_gateway_t gw; /* its configuration is gw.cfg */
    sl_conn_cfg_t conn_cfg;
    /* TLS listeners: tls[j] for listen[j] (NULL: plain), whose connections use tls_cfg[j]
     * (conn_cfg plus the TLS session). Each generation reads its certificates anew, so a
     * reload is also how new certificates come in; old connections keep theirs. */
    sl_tls_listener_t *tls[SL_CONF_MAX_LISTEN];
    sl_conn_cfg_t tls_cfg[SL_CONF_MAX_LISTEN];
    int nworkers;
    wctx_t *workers;
    int stopping;     /* told to drain */
    int carried;      /* services whose state a reload carried over */
    uv_timer_t grace; /* shutdown_timeout of a drain after a reload */
    struct gen *next; /* older generations, still draining */
    struct server *srv;
} gen_t;

/* Totals of generations that are gone, so counters summed over workers never go back. */
typedef struct retired {
    uint64_t accepted, rejected, connects, reused, cerr;
} retired_t;

typedef struct server {
    gen_t *cur; /* serving; cur->next... drain */
    retired_t retired;
    uint8_t index_used[SL_MAX_THREADS]; /* thread slots (sl_thread_index) in use */
    uint64_t reloads_ok, reloads_failed, last_reload_ok_unix, upgrades_failed;
    sl_worker_t control;
    uv_tcp_t admin;
    int admin_open;
    uv_signal_t sig[NSIGNALS];
    uv_async_t worker_exit, log_wake;
    uv_timer_t grace;
    sl_conn_cfg_t conn_cfg, admin_cfg;
    int stopping, nexited;
    /* Guards each worker's `exited` against the control thread signalling a stop handle
     * that the worker is closing (uv_async_send on a closed handle aborts). */
    pthread_mutex_t stop_mu;
    sl_health_t *health;
    sl_discovery_t *discovery;
    uint64_t start_time;
    char *pid_file; /* written at start (the first configuration's), or NULL */
    /* Binary upgrade (SIGUSR2): the successor process, and the pipe it reports on. */
    int upgrading;
    pid_t up_pid;
    uv_pipe_t up_pipe;
    uv_timer_t up_timer;
    char up_buf[8];
    sl_sampler_t *sampler;
    sl_alerts_t *alerts;
    sl_autoscale_t *autoscale;
    uv_timer_t observe; /* one sample and one alert evaluation a second */
} server_t;

/* ---- sockets ---- */

/* Sockets inherited from the process this one replaces (binary upgrade), by address. */
static sl_inherit_t inherited;

static int bind_socket(const sl_addr_t *a, int reuseport)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* ---- workers ---- */

static void worker_common_init(sl_worker_t *w, int index, server_t *s, gen_t *g)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->server = s;
    w->gw = &g->gw;
    w->reqid_salt =
        (uint32_t)(uv_hrtime() ^ ((uint64_t)getpid() << 16) ^ (uint64_t)index ^ (g->id << 40));
    uint64_t size = g->gw.cfg->limits.max_header_bytes + 16 * 1024;
    sl_bufpool_init(&w->bufs, (uint32_t)size, 256);
    sl_worker_update_date(w);
}

static void on_tick(sl_timers_t *ts)
{
    sl_worker_t *w = ts->data;
    sl_worker_update_date(w);
    sl_accesslog_flush(&w->alog);
    wctx_t *wc = (wctx_t *)w;
    if (w->draining && w->nconns == 0 && !wc->exited) {
        /* Drained: close what keeps the loop alive so uv_run returns. Its upstream
         * counters are kept first: from `exited` on, scrapes read those. */
        if (w->proxy)
            wc->up_final = *sl_upstream_worker_stats(w);
        pthread_mutex_lock(&wc->srv->stop_mu);
        __atomic_store_n(&wc->exited, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&wc->srv->stop_mu);
        if (w->rl_redis) {
            sl_rl_redis_close(w->rl_redis);
            w->rl_redis = NULL;
        }
        sl_upstream_worker_close_idle(w);
        sl_hcache_worker_close(wc->gen->gw.cache, w);
        uv_close((uv_handle_t *)&wc->stop, NULL);
        sl_timers_stop(&w->timers);
    }
}

static void on_connection(uv_stream_t *ls, int status)
{
    wctx_t *wc = ls->data;
    gen_t *g = wc->gen;
    if (status < 0)
        return;
    sl_conn_t *c = sl_conn_new(&wc->w);
    if (!c)
        return;
    if (uv_tcp_init(&wc->w.loop, &c->tcp) || uv_accept(ls, (uv_stream_t *)&c->tcp)) {
        free(c);
        return;
    }
    /* The limit counts this generation's connections: during a drain the old one's may
     * add to them for a while (at most shutdown_timeout). */
    uint64_t total = 0;
    for (int i = 0; i < g->nworkers; i++)
        total += __atomic_load_n(&g->workers[i].w.nconns, __ATOMIC_RELAXED);
    if (total >= g->gw.cfg->limits.max_connections || wc->w.draining) {
        wc->rejected++;
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    wc->accepted++;
    uint32_t li = wc->lidx[(uv_tcp_t *)ls - wc->listeners]; /* its `listen` entry */
    sl_conn_start(c, &wc->w, g->tls[li] ? &g->tls_cfg[li] : &g->conn_cfg);
}

static void stop_cb(uv_async_t *a)
{
    wctx_t *wc = a->data;
    sl_worker_t *w = &wc->w;
    if (!w->draining) {
        w->draining = 1;
        for (uint32_t i = 0; i < wc->nlisten; i++)
            uv_close((uv_handle_t *)&wc->listeners[i], NULL);
        sl_upstream_worker_close_idle(w);
        sl_conn_drain_all(w, __atomic_load_n(&wc->idle_grace_ms, __ATOMIC_ACQUIRE));
    }
    if (__atomic_load_n(&wc->force, __ATOMIC_ACQUIRE))
        sl_conn_close_all(w);
}

static void *worker_main(void *arg)
{
    wctx_t *wc = arg;
    sl_worker_t *w = &wc->w;
    server_t *s = wc->srv;
    sl_thread_index = w->index;
    char name[16];
    snprintf(name, sizeof(name), "sluice-w%d", w->index);
    pthread_setname_np(pthread_self(), name);
    if (sl_metrics_thread_init() == 0) {
        uv_run(&w->loop, UV_RUN_DEFAULT);
    } else {
        sl_log_error("worker %d: out of memory for metrics", w->index);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT); /* close callbacks still pending */
    sl_accesslog_flush(&w->alog);
    free(w->alog.data);
    sl_conn_worker_free(w);
    if (w->proxy)
        wc->up_final = *sl_upstream_worker_stats(w);
    sl_upstream_worker_free(w);
    uv_loop_close(&w->loop);
    sl_bufpool_destroy(&w->bufs);
    __atomic_store_n(&wc->done, 1, __ATOMIC_RELEASE);
    uv_async_send(&s->worker_exit);
    return NULL;
}

static int worker_setup(server_t *s, gen_t *g, wctx_t *wc, int index)
{
    sl_worker_t *w = &wc->w;
    worker_common_init(w, index, s, g);
    wc->srv = s;
    wc->gen = g;
    int rc = uv_loop_init(&w->loop);
    if (rc)
        return rc;
    wc->loop_ready = 1;
    sl_worker_update_date(w); /* the wall-clock offset needs the loop's time */
    if ((rc = sl_timers_init(&w->timers, &w->loop)))
        return rc;
    w->timers.data = w;
    w->timers.on_tick = on_tick;
    const sl_config_t *cfg = g->gw.cfg;
    if ((rc = sl_upstream_worker_init(w, &g->gw.up)))
        return rc;
    if ((rc = uv_async_init(&w->loop, &wc->stop, stop_cb)))
        return rc;
    if ((rc = sl_hcache_worker_init(g->gw.cache, w)))
        return rc;
    if (cfg->redis.enabled && g->gw.rl) {
        w->rl_redis = sl_rl_redis_new(&w->loop, &cfg->redis.addr, cfg->redis.timeout_ms,
                                      cfg->redis.key_prefix ? cfg->redis.key_prefix : "sluice:");
        if (!w->rl_redis)
            return UV_ENOMEM;
    }
    wc->stop.data = wc;
    for (uint32_t i = 0; i < wc->nlisten; i++) {
        uv_tcp_init(&w->loop, &wc->listeners[i]);
        wc->listeners[i].data = wc;
        if ((rc = uv_tcp_open(&wc->listeners[i], wc->fds[i])))
            return rc;
        wc->nopened = i + 1;
        if ((rc = uv_listen((uv_stream_t *)&wc->listeners[i], 4096, on_connection)))
            return rc;
    }
    return 0;
}

/* ---- control thread ---- */

static void log_wake_cb(uv_async_t *a)
{
    (void)a;
    sl_accesslog_drain();
}

static void wake_logger(void *arg)
{
    uv_async_send(arg);
}

/* The lowest free thread slot (sl_thread_index) of 1..SL_MAX_THREADS-1, or -1. A slot is
 * free again once its thread is joined: the next thread on it adds to the same per-thread
 * metric storage, so totals neither drop nor count twice. */
static int index_take(server_t *s)
{
    for (int i = 1; i < SL_MAX_THREADS; i++)
        if (!s->index_used[i]) {
            s->index_used[i] = 1;
            return i;
        }
    return -1;
}

/* The control-thread services that read the gateway: health checks, discovery,
 * autoscale, samples and alerts. Started on s->cur; stopped before a swap. */
static int ops_start(server_t *s)
{
    sl_worker_t *ctl = &s->control;
    sl_gateway_t *gw = &s->cur->gw;
    s->alerts = sl_alerts_new(&ctl->loop, gw->cfg, gw, gw->cfg->admin_listen.text);
    uint8_t *track = calloc(gw->nroutes + 1, 1);
    if (s->alerts && track)
        sl_alerts_tracked_routes(s->alerts, track, gw->nroutes);
    s->sampler = track ? sl_sampler_new(gw, s->cur->nworkers, track) : NULL;
    free(track);
    if (!s->alerts || !s->sampler) {
        sl_log_error("out of memory for alerts");
        return SL_ENOMEM;
    }
    ctl->sampler = s->sampler;
    ctl->alerts = s->alerts;
    ctl->nworkers = s->cur->nworkers;
    sl_metrics_collector(sl_alerts_collect, s->alerts);
    s->health = sl_health_start(&ctl->loop, &gw->up);
    if (s->autoscale) { /* kept across a reload: its instances run on */
        sl_autoscale_rebind(s->autoscale, gw, s->cur->nworkers);
    } else {
        int aerr = 0;
        s->autoscale = sl_autoscale_start(&ctl->loop, gw, s->cur->nworkers, &aerr);
        if (aerr) {
            sl_log_error("out of memory for autoscale");
            return SL_ENOMEM;
        }
        if (s->autoscale)
            sl_metrics_collector(sl_autoscale_collect, s->autoscale);
    }
    ctl->autoscale = s->autoscale;
    s->discovery = sl_discovery_start(&ctl->loop, &gw->up);
    return 0;
}

/* keep_autoscale: a reload moves the supervisor to the new gateway (ops_start) instead of
 * stopping its instances. */
static void ops_stop(server_t *s, int keep_autoscale)
{
    if (!keep_autoscale) {
        if (s->autoscale)
            sl_metrics_collector_remove(sl_autoscale_collect, s->autoscale);
        sl_autoscale_stop(s->autoscale); /* the instances go once the last request is done */
        s->autoscale = NULL;
        s->control.autoscale = NULL;
    }
    if (s->alerts)
        sl_metrics_collector_remove(sl_alerts_collect, s->alerts);
    sl_alerts_close(s->alerts);
    s->alerts = NULL;
    s->control.alerts = NULL;
    sl_sampler_free(s->sampler);
    s->sampler = NULL;
    s->control.sampler = NULL;
    sl_health_stop(s->health);
    s->health = NULL;
    sl_discovery_stop(s->discovery);
    s->discovery = NULL;
}

static void upgrade_end(server_t *s);

static void control_close(server_t *s)
{
    upgrade_end(s);
    ops_stop(s, 0);
    uv_close((uv_handle_t *)&s->observe, NULL);
    if (s->admin_open)
        uv_close((uv_handle_t *)&s->admin, NULL);
    s->admin_open = 0;
    sl_conn_close_all(&s->control);
    sl_hcache_worker_close(s->cur->gw.cache, &s->control);
    for (int i = 0; i < NSIGNALS; i++)
        uv_close((uv_handle_t *)&s->sig[i], NULL);
    uv_close((uv_handle_t *)&s->worker_exit, NULL);
    uv_close((uv_handle_t *)&s->log_wake, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->grace))
        uv_close((uv_handle_t *)&s->grace, NULL);
    sl_timers_stop(&s->control.timers);
}

/* Signal every worker of g that has not exited yet to look at its stop state. */
static void signal_workers(server_t *s, gen_t *g)
{
    pthread_mutex_lock(&s->stop_mu);
    for (int i = 0; i < g->nworkers; i++)
        if (!g->workers[i].exited && g->workers[i].started)
            uv_async_send(&g->workers[i].stop);
    pthread_mutex_unlock(&s->stop_mu);
}

static void force_gen(server_t *s, gen_t *g)
{
    for (int i = 0; i < g->nworkers; i++)
        __atomic_store_n(&g->workers[i].force, 1, __ATOMIC_RELEASE);
    signal_workers(s, g);
}

static void gen_grace_cb(uv_timer_t *t)
{
    gen_t *g = t->data;
    sl_log_warn("generation %llu: shutdown_timeout reached: closing its remaining connections",
                (unsigned long long)g->id);
    force_gen(g->srv, g);
}

static void gen_free_cb(uv_handle_t *h)
{
    gen_t *g = h->data;
    free(g->workers);
    free(g);
}

/* g's threads have all returned: join them, give back their thread slots, keep their
 * counters, free its gateway (what a reload carried over lives on in the newer one). */
static void gen_free(server_t *s, gen_t *g)
{
    for (int i = 0; i < g->nworkers; i++) {
        wctx_t *wc = &g->workers[i];
        if (wc->started)
            pthread_join(wc->thread, NULL);
        s->retired.accepted += wc->accepted;
        s->retired.rejected += wc->rejected;
        s->retired.connects += wc->up_final.connects;
        s->retired.reused += wc->up_final.reused;
        s->retired.cerr += wc->up_final.connect_errors;
        if (wc->w.index > 0)
            s->index_used[wc->w.index] = 0;
    }
    sl_gateway_free(&g->gw);
    for (uint32_t j = 0; j < SL_CONF_MAX_LISTEN; j++)
        sl_tls_listener_free(g->tls[j]); /* its connections are all closed */
    g->grace.data = g;
    uv_close((uv_handle_t *)&g->grace, gen_free_cb);
}

static int gen_done(const gen_t *g)
{
    for (int i = 0; i < g->nworkers; i++)
        if (g->workers[i].started && !__atomic_load_n(&g->workers[i].done, __ATOMIC_ACQUIRE))
            return 0;
    return 1;
}

static void worker_exit_cb(uv_async_t *a)
{
    server_t *s = a->data;
    /* Old generations that finished draining. */
    for (gen_t **pp = &s->cur->next; *pp;) {
        gen_t *g = *pp;
        if (gen_done(g)) {
            *pp = g->next;
            sl_upstreams_fold(&s->cur->gw.up, &g->gw.up);
            sl_log_info("generation %llu drained; its workers have exited",
                        (unsigned long long)g->id);
            gen_free(s, g);
        } else {
            pp = &g->next;
        }
    }
    if (s->stopping && !s->cur->next && gen_done(s->cur)) {
        sl_log_info("all workers drained; exiting");
        control_close(s); /* the control loop ends; threads are joined after it */
    }
}

static void grace_cb(uv_timer_t *t)
{
    server_t *s = t->data;
    sl_log_warn("shutdown_timeout reached: closing remaining connections");
    for (gen_t *g = s->cur; g; g = g->next)
        force_gen(s, g);
}

static void begin_stop(server_t *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    sl_log_info("stopping: draining connections (shutdown_timeout %llums)",
                (unsigned long long)s->cur->gw.cfg->limits.shutdown_timeout_ms);
    if (s->admin_open) {
        uv_close((uv_handle_t *)&s->admin, NULL);
        s->admin_open = 0;
    }
    for (gen_t *g = s->cur; g; g = g->next)
        signal_workers(s, g);
    uv_timer_start(&s->grace, grace_cb, s->cur->gw.cfg->limits.shutdown_timeout_ms, 0);
    uv_unref((uv_handle_t *)&s->grace);
}

/* ---- reload ---- */

static void close_fd_list(int *fds, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* Hand g's workers their listening sockets: for an address the running generation `prev`
 * also listens on, dup()s of prev's sockets (every one of them finds a new holder, so none
 * is closed with connections queued when prev's workers close theirs); for workers beyond
 * those, and for new addresses, new sockets bound with SO_REUSEPORT beside them.
 * 0, or a negative errno (everything given so far closed again). */
static int gen_sockets(gen_t *g, const gen_t *prev)
{
    const sl_config_t *cfg = g->gw.cfg;
    for (int i = 0; i < g->nworkers; i++)
        g->workers[i].nlisten = 0;
    for (uint32_t j = 0; j < cfg->nlisten; j++) {
        int have = 0;
        for (int k = 0; prev && k < prev->nworkers; k++) {
            const wctx_t *ow = &prev->workers[k];
            for (uint32_t l = 0; l < ow->nlisten; l++) {
                if (strcmp(prev->gw.cfg->listen[ow->lidx[l]].text, cfg->listen[j].text) != 0)
                    continue;
                wctx_t *nw = &g->workers[have % g->nworkers];
                if (nw->nlisten == WC_MAX_LISTEN)
                    continue; /* bounded: that socket goes with its old holder */
                int fd = fcntl(ow->fds[l], F_DUPFD_CLOEXEC, 0);
                if (fd < 0)
                    return -errno;
                nw->fds[nw->nlisten] = fd;
                nw->lidx[nw->nlisten++] = (uint8_t)j;
                have++;
            }
        }
        /* At start after a binary upgrade: every socket the old process had for this
         * address, each one with connections perhaps queued on it. */
        for (int fd; !prev && (fd = sl_inherit_take(&inherited, cfg->listen[j].text)) >= 0;) {
            wctx_t *nw = &g->workers[have % g->nworkers];
            if (nw->nlisten == WC_MAX_LISTEN) {
                close(fd);
                continue;
            }
            nw->fds[nw->nlisten] = fd;
            nw->lidx[nw->nlisten++] = (uint8_t)j;
            have++;
        }
        for (int i = have; i < g->nworkers; i++) {
            wctx_t *nw = &g->workers[i];
            int fd = bind_socket(&cfg->listen[j], 1);
            if (fd < 0) {
                sl_log_error("listen %s: %s", cfg->listen[j].text, strerror(-fd));
                return fd;
            }
            if (nw->nlisten == WC_MAX_LISTEN) {
                close(fd);
                return -EMFILE;
            }
            nw->fds[nw->nlisten] = fd;
            nw->lidx[nw->nlisten++] = (uint8_t)j;
        }
    }
    return 0;
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Undo worker_setup on a worker whose thread never started (a reload that failed half
 * way): its loop runs here, on the control thread, only to close its handles. */
static void worker_abandon(gen_t *g, wctx_t *wc)
{
    sl_worker_t *w = &wc->w;
    for (uint32_t i = wc->nopened; i < wc->nlisten; i++)
        close(wc->fds[i]); /* not yet given to a handle */
    if (!wc->loop_ready)
        return;
    sl_hcache_worker_close(g->gw.cache, w);
    if (w->rl_redis)
        sl_rl_redis_close(w->rl_redis);
    w->rl_redis = NULL;
    sl_timers_stop(&w->timers);
    uv_walk(&w->loop, close_any, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    sl_conn_worker_free(w);
    sl_upstream_worker_free(w);
    uv_loop_close(&w->loop);
    sl_bufpool_destroy(&w->bufs);
}

static uint32_t workers_for(const sl_config_t *cfg)
{
    int n = cfg->workers ? (int)cfg->workers : sl_cpu_count();
    /* Two generations side by side during a drain each need their thread slots. */
    int most = (SL_MAX_THREADS - 1) / 2;
    return (uint32_t)(n > most ? most : n < 1 ? 1 : n);
}

static sl_conn_cfg_t conn_cfg_for(const sl_config_t *cfg)
{
    return (sl_conn_cfg_t){
        .handler = sl_gateway_handle,
        .on_done = sl_gateway_done,
        .handler_size = sl_gateway_state_size(),
        .header_timeout_ms = cfg->limits.header_timeout_ms,
        .idle_timeout_ms = cfg->limits.idle_timeout_ms,
        .max_header_bytes = cfg->limits.max_header_bytes,
        .max_body_bytes = cfg->limits.max_body_bytes,
        .h2_max_streams = cfg->limits.h2_max_concurrent_streams,
    };
}

/* A generation for cfg (ownership passes, freed on failure), carrying over from prev's
 * gateway what is unchanged. Its workers are not set up yet. NULL on failure (logged). */
static gen_t *gen_new(server_t *s, sl_config_t *cfg, gen_t *prev)
{
    gen_t *g = calloc(1, sizeof(*g));
    if (!g) {
        sl_config_free(cfg);
        return NULL;
    }
    g->srv = s;
    g->id = prev ? prev->id + 1 : 1;
    g->nworkers = (int)workers_for(cfg);
    g->workers = calloc((size_t)g->nworkers, sizeof(wctx_t));
    /* Every thread slot may serve this gateway (generations take different slots). */
    int rc = g->workers ? sl_gateway_rebuild(&g->gw, cfg, SL_MAX_THREADS, prev ? &prev->gw : NULL)
                        : SL_ENOMEM;
    if (rc) {
        sl_log_error("%s: %s", cfg->path, rc == SL_ENOMEM ? "out of memory" : "see above");
        if (!g->gw.cfg)
            sl_config_free(cfg); /* not taken by the gateway */
        sl_gateway_free(&g->gw);
        free(g->workers);
        free(g);
        return NULL;
    }
    if (prev)
        g->carried = sl_upstreams_carry(&g->gw.up, &prev->gw.up);
    g->conn_cfg = conn_cfg_for(cfg);
    for (uint32_t j = 0; j < cfg->nlisten; j++) {
        char err[512];
        if (!cfg->listen_tls[j])
            continue;
        g->tls[j] = sl_tls_listener_new(cfg->listen[j].text, cfg->listen_tls[j], err, sizeof(err));
        if (!g->tls[j]) {
            sl_log_error("listen %s: tls: %s", cfg->listen[j].text, err);
            for (uint32_t k = 0; k < j; k++)
                sl_tls_listener_free(g->tls[k]);
            sl_gateway_free(&g->gw);
            free(g->workers);
            free(g);
            return NULL;
        }
        g->tls_cfg[j] = g->conn_cfg;
        g->tls_cfg[j].is_tls = 1;
        g->tls_cfg[j].tls = g->tls[j];
    }
    if (prev) /* at start the control loop comes after the first gateway */
        uv_timer_init(&s->control.loop, &g->grace);
    g->grace.data = g;
    return g;
}

/* Set up g's workers (sockets already handed out) and start their threads.
 * 0, or a libuv/SL code with nothing started (every worker abandoned). */
static int gen_start(server_t *s, gen_t *g)
{
    int rc = 0, i;
    for (i = 0; i < g->nworkers && !rc; i++) {
        int index = index_take(s);
        if (index < 0) {
            sl_log_error("no free thread slot (%d in use): a previous generation is still "
                         "draining",
                         SL_MAX_THREADS - 1);
            rc = SL_EINVAL;
            break;
        }
        rc = worker_setup(s, g, &g->workers[i], index);
        if (rc)
            sl_log_error("worker %d: %s", index, rc < 0 && rc > -4096 ? uv_strerror(rc) : "failed");
    }
    if (!rc && sl_metrics_thread_init()) /* the control thread's slot of new families */
        rc = SL_ENOMEM;
    if (rc) {
        for (int k = 0; k < g->nworkers; k++)
            worker_abandon(g, &g->workers[k]);
        return rc;
    }
    for (i = 0; i < g->nworkers; i++) {
        wctx_t *wc = &g->workers[i];
        if (pthread_create(&wc->thread, NULL, worker_main, wc)) {
            /* The ones started serve; this one and the rest never will. */
            sl_log_error("cannot start worker thread %d", wc->w.index);
            for (int k = i; k < g->nworkers; k++)
                worker_abandon(g, &g->workers[k]);
            if (i == 0)
                return SL_ENOMEM;
            g->nworkers = i;
            break;
        }
        wc->started = 1;
    }
    return 0;
}

/* Free a generation whose threads never ran (a failed reload). */
static void gen_discard(server_t *s, gen_t *g)
{
    for (int i = 0; i < g->nworkers; i++)
        if (g->workers[i].w.index > 0)
            s->index_used[g->workers[i].w.index] = 0;
    g->nworkers = 0;
    gen_free(s, g);
}

static void log_config_errors(const char *path, const sl_config_errors_t *errs)
{
    for (int i = 0; i < errs->n; i++) {
        const sl_config_error_t *e = &errs->e[i];
        if (e->line)
            sl_log_error("%s:%d:%d: %s", path, e->line, e->col, e->msg);
        else
            sl_log_error("%s: %s", path, e->msg);
    }
    if (errs->dropped)
        sl_log_error("%s: %d more errors not shown", path, errs->dropped);
}

/* Keys only a restart changes: the running values go into next (logged as such). */
static void keep_restart_keys(const sl_config_t *cur, sl_config_t *next)
{
    char which[200];
    if (!sl_config_restart_keys(cur, next, which, sizeof(which)))
        return;
    sl_log_warn("reload: %s changed: needs a restart; the running value stays", which);
    next->admin_listen = cur->admin_listen;
    char **keep[][2] = {{&next->admin_token_env, (char **)&cur->admin_token_env},
                        {&next->access_log, (char **)&cur->access_log},
                        {&next->pid_file, (char **)&cur->pid_file}};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        free(*keep[i][0]);
        *keep[i][0] = *keep[i][1] ? strdup(*keep[i][1]) : NULL;
    }
}

static int64_t reload_failed(server_t *s, char *err, size_t cap, const char *msg)
{
    s->reloads_failed++;
    snprintf(err, cap, "%s", msg);
    sl_log_error("reload failed: %s; the running configuration (generation %llu) stays", msg,
                 (unsigned long long)s->cur->id);
    return SL_EINVAL;
}

int64_t sl_server_reload(void *server, const char *why, char *err, size_t cap)
{
    server_t *s = server;
    char msg[300];
    if (s->stopping)
        return reload_failed(s, err, cap, "shutting down");
    const sl_config_t *old = s->cur->gw.cfg;
    sl_log_info("reload (%s): reading %s", why, old->path);
    sl_config_errors_t *errs = calloc(1, sizeof(*errs));
    if (!errs)
        return reload_failed(s, err, cap, "out of memory");
    sl_config_t *cfg = sl_config_load(old->path, errs);
    if (!cfg) {
        log_config_errors(old->path, errs);
        snprintf(msg, sizeof(msg), "%d error%s in %s (see the log)", errs->n + errs->dropped,
                 errs->n + errs->dropped == 1 ? "" : "s", old->path);
        free(errs);
        return reload_failed(s, err, cap, msg);
    }
    free(errs);
    keep_restart_keys(old, cfg);
    gen_t *prev = s->cur, *g = gen_new(s, cfg, prev);
    if (!g)
        return reload_failed(s, err, cap, "cannot build the new gateway (see the log)");
    /* The autoscaler's instances are processes: they run on when their services are the
     * same, and a configuration that keeps none of them stops them; anything in between
     * (an autoscaled service changed or added beside running ones) needs a restart. */
    int keep_as = s->autoscale && sl_autoscale_can_rebind(s->autoscale, &g->gw);
    int has_as = 0;
    for (uint32_t i = 0; i < g->gw.up.nservices; i++)
        has_as |= g->gw.up.services[i].conf->autoscale.enabled;
    if (s->autoscale && has_as && !keep_as) {
        gen_discard(s, g);
        return reload_failed(s, err, cap,
                             "autoscaled services changed (or were added beside running "
                             "ones): their instances would be restarted; this needs a restart");
    }
    int rc = gen_sockets(g, prev);
    if (rc == 0)
        rc = gen_start(s, g);
    else
        for (int k = 0; k < g->nworkers; k++)
            close_fd_list(g->workers[k].fds, g->workers[k].nlisten);
    if (rc) {
        gen_discard(s, g);
        return reload_failed(s, err, cap, "cannot start the new workers (see the log)");
    }
    /* The new generation accepts now. Swap what the control thread serves with, then
     * let the old generation go: it stops accepting and drains on its own gateway. */
    sl_worker_t *ctl = &s->control;
    ops_stop(s, keep_as);
    sl_gateway_unpublish(&prev->gw, &g->gw);
    if (g->gw.cache != prev->gw.cache) {
        sl_hcache_worker_close(prev->gw.cache, ctl);
        if (sl_hcache_worker_init(g->gw.cache, ctl))
            sl_log_error("cache: out of memory for purges on the control thread");
    }
    g->next = prev;
    s->cur = g;
    ctl->gw = &g->gw;
    if (ops_start(s))
        sl_log_error("reload: health checks, samples or alerts did not restart (out of memory)");
    prev->stopping = 1;
    for (uint32_t j = 0; j < SL_CONF_MAX_LISTEN; j++)
        sl_tls_listener_retire(prev->tls[j]);
    for (int i = 0; i < prev->nworkers; i++)
        __atomic_store_n(&prev->workers[i].idle_grace_ms, RELOAD_IDLE_GRACE_MS, __ATOMIC_RELEASE);
    signal_workers(s, prev);
    uv_timer_start(&prev->grace, gen_grace_cb, prev->gw.cfg->limits.shutdown_timeout_ms, 0);
    uv_unref((uv_handle_t *)&prev->grace);
    s->reloads_ok++;
    s->last_reload_ok_unix = (uint64_t)time(NULL);
    sl_log_info("reload (%s): generation %llu serving with %d workers (%d of %u services "
                "unchanged, state kept; cache %s; rate-limit table %s); generation %llu "
                "drains",
                why, (unsigned long long)g->id, g->nworkers, g->carried, g->gw.up.nservices,
                !g->gw.cache                    ? "off"
                : g->gw.cache == prev->gw.cache ? "kept"
                                                : "new",
                !g->gw.rl                 ? "off"
                : g->gw.rl == prev->gw.rl ? "kept"
                                          : "new",
                (unsigned long long)prev->id);
    return (int64_t)g->id;
}

/* ---- binary upgrade ---- */

/* What sl_server_set_exec gave: the binary to run and its argument vector. */
static char exec_path[4096];
static char **exec_argv;

void sl_server_set_exec(const char *exe, char **argv)
{
    snprintf(exec_path, sizeof(exec_path), "%s", exe);
    exec_argv = argv;
}

static void up_closed(uv_handle_t *h)
{
    (void)h;
}

static void upgrade_end(server_t *s)
{
    if (!s->upgrading)
        return;
    s->upgrading = 0;
    uv_close((uv_handle_t *)&s->up_pipe, up_closed);
    uv_close((uv_handle_t *)&s->up_timer, up_closed);
}

/* The successor failed: reap it (it exited, or is told to), keep serving. */
static void upgrade_failed(server_t *s, const char *why)
{
    int st = 0;
    pid_t r = 0;
    /* Its end of the pipe closes as it exits: give the exit a moment to complete so the
     * process is reaped, not left a zombie (at most 100 ms, a failed upgrade only). */
    for (int i = 0; i < 50 && r == 0; i++) {
        r = waitpid(s->up_pid, &st, WNOHANG);
        if (r == 0)
            usleep(2000);
    }
    if (r == 0) {
        kill(s->up_pid, SIGTERM);
        sl_log_error("upgrade: the new process %d %s; stopped it; this one (%d) keeps serving",
                     (int)s->up_pid, why, (int)getpid());
    } else if (r == s->up_pid && WIFEXITED(st)) {
        sl_log_error("upgrade: the new process %d %s (exit status %d: %s); this one (%d) keeps "
                     "serving",
                     (int)s->up_pid, why, WEXITSTATUS(st),
                     WEXITSTATUS(st) == 127 ? "could not run the binary" : "see its log above",
                     (int)getpid());
    } else {
        sl_log_error("upgrade: the new process %d %s; this one (%d) keeps serving", (int)s->up_pid,
                     why, (int)getpid());
    }
    s->upgrades_failed++;
    upgrade_end(s);
}

static void up_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    (void)size;
    server_t *s = h->data;
    *b = uv_buf_init(s->up_buf, sizeof(s->up_buf));
}

static void up_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    server_t *s = st->data;
    (void)b;
    if (n == 0)
        return;
    if (n > 0) {
        /* The successor serves on the same sockets: stop accepting and drain, as on
         * SIGTERM; what waits in a backlog is accepted by the successor. */
        sl_log_info("upgrade: the new process %d is serving; this one (%d) drains and exits",
                    (int)s->up_pid, (int)getpid());
        upgrade_end(s);
        /* As after a reload: clients that keep sending get a last answer with
         * Connection: close rather than a close racing their next request. */
        for (gen_t *g = s->cur; g; g = g->next)
            for (int i = 0; i < g->nworkers; i++)
                __atomic_store_n(&g->workers[i].idle_grace_ms, RELOAD_IDLE_GRACE_MS,
                                 __ATOMIC_RELEASE);
        begin_stop(s);
        return;
    }
    upgrade_failed(s, "exited before serving");
}

static void up_timeout(uv_timer_t *t)
{
    upgrade_failed(t->data, "was not serving in time");
}

/* SIGUSR2: run the binary this process was started from (as it is on disk now) as a child
 * that inherits every listening socket, including the admin one. The child adopts them
 * (SLUICE_INHERIT) instead of binding, and writes a byte to SLUICE_UPGRADE_FD once it
 * serves; then this process drains and exits 0. If the child fails (cannot run, bad
 * configuration, not serving within UPGRADE_TIMEOUT_MS), this process keeps serving. */
static void upgrade_start(server_t *s)
{
    if (s->upgrading || s->stopping) {
        sl_log_warn("upgrade: %s; SIGUSR2 ignored",
                    s->upgrading ? "one is already in progress" : "stopping");
        return;
    }
    if (!exec_argv || !exec_path[0]) {
        sl_log_error("upgrade: the binary's path is unknown; SIGUSR2 ignored");
        return;
    }
    /* Everything the child needs is prepared here: after fork only async-signal-safe
     * calls are allowed (this process has threads). */
    enum { MAXFD = SL_INHERIT_MAX };
    int fds[MAXFD], nfds = 0;
    size_t cap = (size_t)MAXFD * (SL_INHERIT_ADDR + 12) + 32, off = 0;
    char *list = malloc(cap);
    if (!list) {
        sl_log_error("upgrade: out of memory");
        return;
    }
    list[0] = 0;
    memcpy(list, "SLUICE_INHERIT=", 15);
    off = 15;
    list[off] = 0;
    const gen_t *g = s->cur;
    int bad = 0;
    for (int i = 0; i < g->nworkers && !bad; i++)
        for (uint32_t l = 0; l < g->workers[i].nlisten && !bad; l++) {
            int fd = g->workers[i].fds[l];
            bad = nfds == MAXFD || sl_inherit_append(list, cap, &off, fd,
                                                     g->gw.cfg->listen[g->workers[i].lidx[l]].text);
            if (!bad)
                fds[nfds++] = fd;
        }
    uv_os_fd_t afd = -1;
    if (!bad && s->admin_open && uv_fileno((uv_handle_t *)&s->admin, &afd) == 0) {
        bad =
            nfds == MAXFD || sl_inherit_append(list, cap, &off, afd, g->gw.cfg->admin_listen.text);
        if (!bad)
            fds[nfds++] = afd;
    }
    int pfd[2] = {-1, -1};
    if (bad || pipe2(pfd, O_CLOEXEC) != 0) {
        sl_log_error("upgrade: %s",
                     bad ? "too many listening sockets to hand over" : strerror(errno));
        free(list);
        return;
    }
    char upfd[48];
    snprintf(upfd, sizeof(upfd), "SLUICE_UPGRADE_FD=%d", pfd[1]);
    extern char **environ;
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 3, sizeof(char *));
    if (!envp) {
        free(list);
        close(pfd[0]);
        close(pfd[1]);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "SLUICE_INHERIT=", 15) &&
            strncmp(environ[i], "SLUICE_UPGRADE_FD=", 18))
            envp[k++] = environ[i];
    envp[k++] = list;
    envp[k++] = upfd;
    envp[k] = NULL;
    sl_log_info("upgrade: starting %s with %d inherited sockets", exec_path, nfds);
    pid_t pid = fork();
    if (pid == 0) {
        /* The child: these (and only these) fds survive the exec. */
        for (int i = 0; i < nfds; i++)
            fcntl(fds[i], F_SETFD, 0);
        fcntl(pfd[1], F_SETFD, 0);
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        execve(exec_path, exec_argv, envp);
        _exit(127);
    }
    int fork_errno = errno;
    close(pfd[1]);
    free(envp);
    free(list);
    if (pid < 0) {
        sl_log_error("upgrade: fork: %s", strerror(fork_errno));
        close(pfd[0]);
        return;
    }
    s->up_pid = pid;
    s->upgrading = 1;
    uv_pipe_init(&s->control.loop, &s->up_pipe, 0);
    s->up_pipe.data = s;
    uv_pipe_open(&s->up_pipe, pfd[0]);
    uv_read_start((uv_stream_t *)&s->up_pipe, up_alloc, up_read);
    uv_timer_init(&s->control.loop, &s->up_timer);
    s->up_timer.data = s;
    uv_timer_start(&s->up_timer, up_timeout, UPGRADE_TIMEOUT_MS, 0);
}

/* In the successor, once it serves: tell the process it replaces (SLUICE_UPGRADE_FD). */
static void upgrade_report_ready(void)
{
    const char *v = getenv("SLUICE_UPGRADE_FD");
    if (!v)
        return;
    int fd = atoi(v);
    unsetenv("SLUICE_UPGRADE_FD");
    if (fd <= 2)
        return;
    ssize_t w = write(fd, "1", 1);
    (void)w;
    close(fd);
    sl_log_info("upgrade: serving; told the previous process (%d) to drain", (int)getppid());
}

static int64_t control_reload(sl_worker_t *ctl, const char *why, char *err, size_t cap)
{
    return sl_server_reload(ctl->server, why, err, cap);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (signum == SIGHUP) {
        char err[300];
        sl_server_reload(s, "SIGHUP", err, sizeof(err)); /* certificates included */
        return;
    }
    if (signum == SIGUSR2) {
        upgrade_start(s);
        return;
    }
    begin_stop(s);
}

static void admin_connection(uv_stream_t *ls, int status)
{
    server_t *s = ls->data;
    if (status < 0)
        return;
    sl_conn_t *c = sl_conn_new(&s->control);
    if (!c)
        return;
    if (uv_tcp_init(&s->control.loop, &c->tcp) || uv_accept(ls, (uv_stream_t *)&c->tcp)) {
        free(c);
        return;
    }
    sl_conn_start(c, &s->control, &s->admin_cfg);
}

static void observe_cb(uv_timer_t *t)
{
    server_t *s = t->data;
    uint64_t now = uv_now(t->loop), wall = sl_unix_ms();
    uint64_t conns = 0;
    for (gen_t *g = s->cur; g; g = g->next)
        for (int i = 0; i < g->nworkers; i++)
            conns += __atomic_load_n(&g->workers[i].w.nconns, __ATOMIC_RELAXED);
    s->control.conns_active = conns;
    sl_sampler_take(s->sampler, now, wall);
    sl_alerts_eval(s->alerts, s->sampler, now, wall);
}

static void control_tick(sl_timers_t *ts)
{
    sl_worker_t *w = ts->data;
    server_t *s = w->server;
    sl_worker_update_date(w);
    sl_upstreams_tick(&s->cur->gw.up); /* finish drains whose last request ended */
}

/* ---- metrics the wiring owns ---- */

/* The host (what the seed's CPU and memory alerts watch) and each service's upstream
 * connection pool: busy connections (a request on each), idle kept ones, and the pool's
 * capacity, keepalive x workers: busy past it means connections opened and closed per
 * request. */
static void collect_host_pools(sl_textbuf_t *t, server_t *s)
{
    uint64_t busy = 0, total = 0, mt = 0, ma = 0;
    sl_host_cpu(&busy, &total);
    double hz = (double)sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    sl_text_printf(t,
                   "# HELP host_cpu_seconds_total CPU time of the host since boot, all CPUs "
                   "(/proc/stat): busy = user, nice, system, irq, softirq, steal.\n"
                   "# TYPE host_cpu_seconds_total counter\n"
                   "host_cpu_seconds_total{mode=\"busy\"} %.2f\n"
                   "host_cpu_seconds_total{mode=\"idle\"} %.2f\n",
                   (double)busy / hz, (double)(total - busy) / hz);
    if (sl_host_memory_utilization(&mt, &ma) >= 0)
        sl_text_printf(t,
                       "# HELP host_memory_total_bytes MemTotal of the host (/proc/meminfo).\n"
                       "# TYPE host_memory_total_bytes gauge\nhost_memory_total_bytes %llu\n"
                       "# HELP host_memory_available_bytes MemAvailable of the host.\n"
                       "# TYPE host_memory_available_bytes gauge\n"
                       "host_memory_available_bytes %llu\n",
                       (unsigned long long)mt, (unsigned long long)ma);
    const gen_t *g = s->cur;
    const sl_upstreams_t *u = &g->gw.up;
    sl_text_printf(t, "# HELP upstream_pool_connections Upstream connections of the service: "
                      "busy (a request on it) or idle (kept for reuse).\n"
                      "# TYPE upstream_pool_connections gauge\n");
    for (uint32_t i = 0; i < u->nservices; i++) {
        const sl_service_t *svc = &u->services[i];
        uint64_t b = sl_service_busy(svc), idle = 0;
        const sl_pool_t *pools[2] = {&svc->primary, &svc->read};
        for (int p = 0; p < 2; p++) {
            uint32_t n = pools[p]->slots ? sl_pool_size(pools[p]) : 0;
            for (uint32_t k = 0; k < n; k++) {
                const sl_server_t *sv = &pools[p]->slots[k];
                for (int w = 0; w < g->nworkers; w++)
                    if (!g->workers[w].exited)
                        idle += sl_upstream_worker_idle_server(&g->workers[w].w, sv->id);
            }
        }
        sl_text_printf(t,
                       "upstream_pool_connections{service=\"%s\",state=\"busy\"} %llu\n"
                       "upstream_pool_connections{service=\"%s\",state=\"idle\"} %llu\n",
                       svc->conf->name, (unsigned long long)b, svc->conf->name,
                       (unsigned long long)idle);
    }
    sl_text_printf(t, "# HELP upstream_pool_capacity Keep-alive pool of the service: "
                      "keepalive x workers.\n# TYPE upstream_pool_capacity gauge\n");
    for (uint32_t i = 0; i < u->nservices; i++)
        sl_text_printf(
            t, "upstream_pool_capacity{service=\"%s\"} %llu\n", u->services[i].conf->name,
            (unsigned long long)u->services[i].conf->keepalive * (unsigned long long)g->nworkers);
}

static int ndraining(const server_t *s)
{
    int n = 0;
    for (const gen_t *g = s->cur->next; g; g = g->next)
        n++;
    return n;
}

static void collect(sl_textbuf_t *t, void *arg)
{
    server_t *s = arg;
    collect_host_pools(t, s);
    uint64_t conns = 0, acc = s->retired.accepted, rej = s->retired.rejected, inflight = 0,
             idle = 0, bufs = 0, connects = s->retired.connects, reused = s->retired.reused,
             cerr = s->retired.cerr;
    for (gen_t *g = s->cur; g; g = g->next)
        for (int i = 0; i < g->nworkers; i++) {
            wctx_t *wc = &g->workers[i];
            conns += __atomic_load_n(&wc->w.nconns, __ATOMIC_RELAXED);
            acc += __atomic_load_n(&wc->accepted, __ATOMIC_RELAXED);
            rej += __atomic_load_n(&wc->rejected, __ATOMIC_RELAXED);
            inflight += __atomic_load_n(&wc->w.inflight, __ATOMIC_RELAXED);
            bufs += __atomic_load_n(&wc->w.bufs.in_use, __ATOMIC_RELAXED);
            if (__atomic_load_n(&wc->exited, __ATOMIC_ACQUIRE)) { /* up_final is written */
                connects += wc->up_final.connects;
                reused += wc->up_final.reused;
                cerr += wc->up_final.connect_errors;
            } else if (wc->w.proxy) {
                idle += sl_upstream_worker_idle(&wc->w);
                const sl_upstream_stats_t *st = sl_upstream_worker_stats(&wc->w);
                connects += st->connects;
                reused += st->reused;
                cerr += st->connect_errors;
            }
        }
    sl_text_printf(t,
                   "# HELP sluice_connections_active Client connections open now.\n"
                   "# TYPE sluice_connections_active gauge\nsluice_connections_active %llu\n"
                   "# HELP sluice_connections_accepted_total Client connections accepted.\n"
                   "# TYPE sluice_connections_accepted_total counter\n"
                   "sluice_connections_accepted_total %llu\n"
                   "# HELP sluice_connections_rejected_total Client connections closed at "
                   "once because limits.max_connections was reached or the server was "
                   "draining.\n# TYPE sluice_connections_rejected_total counter\n"
                   "sluice_connections_rejected_total %llu\n"
                   "# HELP http_requests_in_flight Requests being served now.\n"
                   "# TYPE http_requests_in_flight gauge\nhttp_requests_in_flight %llu\n",
                   (unsigned long long)conns, (unsigned long long)acc, (unsigned long long)rej,
                   (unsigned long long)inflight);
    sl_text_printf(t,
                   "# HELP sluice_upstream_idle_connections Idle keep-alive connections to "
                   "upstream servers, all workers.\n"
                   "# TYPE sluice_upstream_idle_connections gauge\n"
                   "sluice_upstream_idle_connections %llu\n"
                   "# HELP sluice_upstream_connects_total Upstream connections opened.\n"
                   "# TYPE sluice_upstream_connects_total counter\n"
                   "sluice_upstream_connects_total %llu\n"
                   "# HELP sluice_upstream_reused_total Requests sent on a kept-alive upstream "
                   "connection.\n# TYPE sluice_upstream_reused_total counter\n"
                   "sluice_upstream_reused_total %llu\n"
                   "# HELP sluice_upstream_connect_errors_total Upstream connects that failed.\n"
                   "# TYPE sluice_upstream_connect_errors_total counter\n"
                   "sluice_upstream_connect_errors_total %llu\n"
                   "# HELP sluice_buffers_in_use I/O buffers held by connections now.\n"
                   "# TYPE sluice_buffers_in_use gauge\nsluice_buffers_in_use %llu\n",
                   (unsigned long long)idle, (unsigned long long)connects,
                   (unsigned long long)reused, (unsigned long long)cerr, (unsigned long long)bufs);
    if (s->cur->gw.cfg->redis.enabled) {
        sl_rl_redis_stats_t sum = {0};
        for (int i = 0; i < s->cur->nworkers; i++) {
            const sl_rl_redis_t *r = s->cur->workers[i].w.rl_redis;
            if (!r || s->cur->workers[i].exited)
                continue;
            const sl_rl_redis_stats_t *st = sl_rl_redis_stats(r);
            sum.calls += st->calls;
            sum.batches += st->batches;
            sum.errors += st->errors;
            sum.timeouts += st->timeouts;
            sum.not_connected += st->not_connected;
            sum.latency_us_sum += st->latency_us_sum;
            sum.latency_count += st->latency_count;
            sum.connected += st->connected;
        }
        sl_text_printf(t,
                       "# HELP ratelimit_redis_calls_total Shared rate-limit decisions sent to "
                       "Redis.\n# TYPE ratelimit_redis_calls_total counter\n"
                       "ratelimit_redis_calls_total %llu\n"
                       "# HELP ratelimit_redis_batches_total EVALSHA calls that carried them "
                       "(one per worker loop iteration with decisions).\n"
                       "# TYPE ratelimit_redis_batches_total counter\n"
                       "ratelimit_redis_batches_total %llu\n"
                       "# HELP ratelimit_redis_errors_total Redis decisions that failed, by "
                       "kind.\n# TYPE ratelimit_redis_errors_total counter\n"
                       "ratelimit_redis_errors_total{kind=\"error\"} %llu\n"
                       "ratelimit_redis_errors_total{kind=\"timeout\"} %llu\n"
                       "ratelimit_redis_errors_total{kind=\"not_connected\"} %llu\n"
                       "# HELP ratelimit_redis_latency_seconds Round trip of answered "
                       "decisions.\n# TYPE ratelimit_redis_latency_seconds summary\n"
                       "ratelimit_redis_latency_seconds_sum %.6f\n"
                       "ratelimit_redis_latency_seconds_count %llu\n"
                       "# HELP ratelimit_redis_connected Workers connected to Redis.\n"
                       "# TYPE ratelimit_redis_connected gauge\nratelimit_redis_connected %d\n",
                       (unsigned long long)sum.calls, (unsigned long long)sum.batches,
                       (unsigned long long)sum.errors, (unsigned long long)sum.timeouts,
                       (unsigned long long)sum.not_connected, sum.latency_us_sum / 1e6,
                       (unsigned long long)sum.latency_count, sum.connected);
    }
    sl_text_printf(t,
                   "# HELP sluice_accesslog_dropped_total Access-log lines dropped because "
                   "the writer fell behind.\n# TYPE sluice_accesslog_dropped_total counter\n"
                   "sluice_accesslog_dropped_total %llu\n",
                   (unsigned long long)sl_accesslog_dropped());
    /* process_* as the Prometheus client libraries define them. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    long rss_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size;
        if (fscanf(f, "%ld %ld", &size, &rss_pages) != 2)
            rss_pages = 0;
        fclose(f);
    }
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        while (readdir(d))
            fds++;
        closedir(d);
        fds -= 3; /* ".", ".." and the directory's own descriptor */
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    sl_text_printf(t,
                   "# HELP process_cpu_seconds_total Total user and system CPU time.\n"
                   "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.3f\n"
                   "# HELP process_resident_memory_bytes Resident memory size.\n"
                   "# TYPE process_resident_memory_bytes gauge\n"
                   "process_resident_memory_bytes %ld\n"
                   "# HELP process_open_fds Open file descriptors.\n"
                   "# TYPE process_open_fds gauge\nprocess_open_fds %d\n"
                   "# HELP process_max_fds Maximum number of open file descriptors.\n"
                   "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n"
                   "# HELP process_start_time_seconds Start time since the epoch.\n"
                   "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %llu\n"
                   "# HELP sluice_build_info Build information.\n"
                   "# TYPE sluice_build_info gauge\n"
                   "sluice_build_info{version=\"%s\",workers=\"%d\"} 1\n",
                   cpu, rss_pages * sysconf(_SC_PAGESIZE), fds, (unsigned long long)rl.rlim_cur,
                   (unsigned long long)s->start_time, SL_VERSION, s->cur->nworkers);
    sl_text_printf(t,
                   "# HELP sluice_reloads_total Configuration reloads (SIGHUP, sluice -s reload, "
                   "POST /api/reload) by result; a failed one leaves the running "
                   "configuration serving.\n# TYPE sluice_reloads_total counter\n"
                   "sluice_reloads_total{result=\"ok\"} %llu\n"
                   "sluice_reloads_total{result=\"failed\"} %llu\n"
                   "# HELP sluice_config_generation Generation of the configuration serving now "
                   "(1 at start, +1 per successful reload).\n"
                   "# TYPE sluice_config_generation gauge\nsluice_config_generation %llu\n"
                   "# HELP sluice_config_last_reload_success_timestamp_seconds When the "
                   "configuration serving now was loaded (start or last successful reload).\n"
                   "# TYPE sluice_config_last_reload_success_timestamp_seconds gauge\n"
                   "sluice_config_last_reload_success_timestamp_seconds %llu\n"
                   "# HELP sluice_generations_draining Worker generations still draining after "
                   "a reload.\n# TYPE sluice_generations_draining gauge\n"
                   "sluice_generations_draining %d\n"
                   "# HELP sluice_metric_label_overflow_total Routes, limits or servers that "
                   "found the label table full (1024 names per kind) and are counted as "
                   "\"other\".\n# TYPE sluice_metric_label_overflow_total counter\n"
                   "sluice_metric_label_overflow_total %llu\n"
                   "# HELP sluice_upgrades_failed_total Binary upgrades (SIGUSR2) whose new "
                   "process did not start serving; this process went on.\n"
                   "# TYPE sluice_upgrades_failed_total counter\n"
                   "sluice_upgrades_failed_total %llu\n",
                   (unsigned long long)s->reloads_ok, (unsigned long long)s->reloads_failed,
                   (unsigned long long)s->cur->id, (unsigned long long)s->last_reload_ok_unix,
                   ndraining(s), (unsigned long long)sl_label_overflow,
                   (unsigned long long)s->upgrades_failed);
}

/* ---- run ---- */

static void pid_file_write(server_t *s, const char *path)
{
    if (!path)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    /* Written whole then renamed, so `sluice -s reload` never reads half a number. */
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        sl_log_error("pid_file %s: %s", path, strerror(errno));
        unlink(tmp);
        return;
    }
    s->pid_file = strdup(path); /* outlives the configurations */
}

/* Remove the pid file at exit, unless it names another process now (a binary upgrade's
 * successor wrote its own). */
static void pid_file_remove(server_t *s)
{
    if (!s->pid_file)
        return;
    FILE *f = fopen(s->pid_file, "r");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    if (pid == (int)getpid())
        unlink(s->pid_file);
    free(s->pid_file);
    s->pid_file = NULL;
}

int sl_server_run(sl_config_t *cfg)
{
    server_t *s = calloc(1, sizeof(*s));
    if (!s)
        return 1;
    s->start_time = (uint64_t)time(NULL);
    s->last_reload_ok_unix = s->start_time;
    pthread_mutex_init(&s->stop_mu, NULL);
    signal(SIGPIPE, SIG_IGN);
    const char *inherit_env = getenv("SLUICE_INHERIT");
    if (inherit_env && sl_inherit_parse(inherit_env, strlen(inherit_env), &inherited) != 0) {
        sl_log_error("SLUICE_INHERIT: malformed (\"%s\"); binding every address anew", inherit_env);
        memset(&inherited, 0, sizeof(inherited));
    }
    unsetenv("SLUICE_INHERIT"); /* not for the backends autoscale starts */
    /* Raise the descriptor limit toward the connection limit: two per proxied request. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t want = (rlim_t)cfg->limits.max_connections * 2 + 1024;
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Control thread: its loop serves the admin listener, signals and the log writer. */
    sl_worker_t *ctl = &s->control;
    memset(ctl, 0, sizeof(*ctl));
    sl_thread_index = 0;
    s->index_used[0] = 1;
    sl_tls_metrics_init(); /* once: a reload may bring the first TLS listener */
    gen_t *g = gen_new(s, cfg, NULL);
    if (!g) {
        sl_log_error("cannot start: see above");
        return 1;
    }
    s->cur = g;
    cfg = g->gw.cfg;
    worker_common_init(ctl, 0, s, g);
    uv_loop_init(&ctl->loop);
    uv_timer_init(&ctl->loop, &g->grace);
    ctl->reload = control_reload;
    sl_worker_update_date(ctl);
    sl_timers_init(&ctl->timers, &ctl->loop);
    ctl->timers.data = ctl;
    ctl->timers.on_tick = control_tick;
    if (cfg->access_log) {
        int rc = sl_accesslog_open(cfg->access_log);
        if (rc) {
            sl_log_error("access_log %s: %s", cfg->access_log, strerror(-rc));
            return 1;
        }
    }
    s->admin_cfg = conn_cfg_for(cfg);
    s->admin_cfg.h2_max_streams = 0; /* the admin API stays HTTP/1.1 */
    s->admin_cfg.handler = sl_admin_handle;
    s->admin_cfg.on_done = NULL;
    s->admin_cfg.handler_size = 0;
    sl_metrics_collector(collect, s);
    if (sl_h2_metrics_init()) {
        sl_log_error("cannot start: out of memory");
        return 1;
    }

    /* Bind everything before starting anything. */
    if (gen_sockets(g, NULL) != 0)
        return 1;
    if (sl_hcache_worker_init(g->gw.cache, ctl)) { /* purges, and their broadcast */
        sl_log_error("cache: out of memory");
        return 1;
    }
    int afd = sl_inherit_take(&inherited, cfg->admin_listen.text);
    if (afd < 0)
        afd = bind_socket(&cfg->admin_listen, 0);
    if (afd < 0) {
        sl_log_error("admin listen %s: %s", cfg->admin_listen.text, strerror(-afd));
        return 1;
    }
    sl_inherit_close_rest(&inherited); /* addresses this configuration no longer has */
    uv_tcp_init(&ctl->loop, &s->admin);
    s->admin.data = s;
    if (uv_tcp_open(&s->admin, afd) || uv_listen((uv_stream_t *)&s->admin, 128, admin_connection)) {
        sl_log_error("admin listen %s: failed", cfg->admin_listen.text);
        return 1;
    }
    s->admin_open = 1;
    int signums[NSIGNALS] = {SIGTERM, SIGINT, SIGHUP, SIGUSR2};
    for (int i = 0; i < NSIGNALS; i++) {
        uv_signal_init(&ctl->loop, &s->sig[i]);
        s->sig[i].data = s;
        uv_signal_start(&s->sig[i], signal_cb, signums[i]);
    }
    uv_async_init(&ctl->loop, &s->worker_exit, worker_exit_cb);
    s->worker_exit.data = s;
    uv_async_init(&ctl->loop, &s->log_wake, log_wake_cb);
    sl_accesslog_set_waker(wake_logger, &s->log_wake);
    uv_timer_init(&ctl->loop, &s->grace);
    s->grace.data = s;

    if (sl_metrics_thread_init()) {
        sl_log_error("out of memory for metrics");
        return 1;
    }
    if (gen_start(s, g)) {
        sl_log_error("cannot start the workers");
        return 1;
    }
    /* Samples and alerts: the rules say which routes need their own history. */
    ctl->start_unix_ms = sl_unix_ms();
    if (ops_start(s))
        return 1;
    uv_timer_init(&ctl->loop, &s->observe);
    s->observe.data = s;
    uv_timer_start(&s->observe, observe_cb, 0, 1000);
    pid_file_write(s, cfg->pid_file);
    upgrade_report_ready();
    char addrs[512] = "";
    size_t off = 0;
    for (uint32_t j = 0; j < cfg->nlisten && off < sizeof(addrs) - 70; j++)
        off += (size_t)snprintf(addrs + off, sizeof(addrs) - off, "%s%s", j ? ", " : "",
                                cfg->listen[j].text);
    sl_log_info("sluice %s listening on %s with %d workers; admin on %s", SL_VERSION, addrs,
                g->nworkers, cfg->admin_listen.text);

    uv_run(&ctl->loop, UV_RUN_DEFAULT);

    /* Every generation has drained (worker_exit_cb); join and free what is left. */
    while (s->cur->next) {
        gen_t *old = s->cur->next;
        s->cur->next = old->next;
        gen_free(s, old);
    }
    gen_free(s, s->cur);
    uv_run(&ctl->loop, UV_RUN_DEFAULT);
    sl_accesslog_drain();
    uv_loop_close(&ctl->loop);
    sl_conn_worker_free(ctl);
    sl_bufpool_destroy(&ctl->bufs);
    sl_metrics_reset();
    pid_file_remove(s);
    free(s);
    return 0;
}
