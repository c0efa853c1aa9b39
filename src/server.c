/* server.c - workers, listeners, accept, limits, signals, drain; see server.h.
 *
 * Every worker owns one listening socket per `listen` address, all bound with
 * SO_REUSEPORT, so the kernel spreads new connections over the workers and no accept
 * lock or hand-off exists. Sockets are bound on the main thread before any worker
 * starts, so a port in use is a start-up error, not a silent half-start. */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <dirent.h>

#include "core/cpus.h"
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


typedef struct wctx {
    sl_worker_t w;
    pthread_t thread;
    uv_async_t stop; /* signalled by the control thread: drain (or force) */
    uv_tcp_t listeners[SL_CONF_MAX_LISTEN];
    int fds[SL_CONF_MAX_LISTEN];
    uint32_t nlisten;
    int force;       /* atomic: close everything now */
    int exited;      /* drained: its loop is closing */
    int done;        /* atomic: the thread is about to return */
    uint64_t accepted, rejected;
    struct server *srv;
} wctx_t;

typedef struct server {
    sl_config_t *cfg;
    sl_gateway_t gw;
    int nworkers;
    wctx_t *workers;
    sl_worker_t control;
    uv_tcp_t admin;
    int admin_open;
    uv_signal_t sig[3];
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
    sl_sampler_t *sampler;
    sl_alerts_t *alerts;
    sl_autoscale_t *autoscale;
    uv_timer_t observe; /* one sample and one alert evaluation a second */
    /* TLS listeners: tls[j] for listen[j] (NULL: plain), whose connections use tls_cfg[j]
     * (conn_cfg plus the TLS session). */
    sl_tls_listener_t *tls[SL_CONF_MAX_LISTEN];
    sl_conn_cfg_t tls_cfg[SL_CONF_MAX_LISTEN];
} server_t;

/* ---- sockets ---- */

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

static void worker_common_init(sl_worker_t *w, int index, server_t *s)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->server = s;
    w->gw = &s->gw;
    w->reqid_salt = (uint32_t)(uv_hrtime() ^ ((uint64_t)getpid() << 16) ^ (uint64_t)index);
    uint64_t size = s->cfg->limits.max_header_bytes + 16 * 1024;
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
        /* Drained: close what keeps the loop alive so uv_run returns. */
        pthread_mutex_lock(&wc->srv->stop_mu);
        wc->exited = 1;
        pthread_mutex_unlock(&wc->srv->stop_mu);
        if (w->rl_redis) {
            sl_rl_redis_close(w->rl_redis);
            w->rl_redis = NULL;
        }
        sl_upstream_worker_close_idle(w);
        sl_hcache_worker_close(wc->srv->gw.cache, w);
        uv_close((uv_handle_t *)&wc->stop, NULL);
        sl_timers_stop(&w->timers);
    }
}

static void on_connection(uv_stream_t *ls, int status)
{
    wctx_t *wc = ls->data;
    server_t *s = wc->srv;
    if (status < 0)
        return;
    sl_conn_t *c = sl_conn_new(&wc->w);
    if (!c)
        return;
    if (uv_tcp_init(&wc->w.loop, &c->tcp) || uv_accept(ls, (uv_stream_t *)&c->tcp)) {
        free(c);
        return;
    }
    uint64_t total = 0;
    for (int i = 0; i < s->nworkers; i++)
        total += __atomic_load_n(&s->workers[i].w.nconns, __ATOMIC_RELAXED);
    if (total >= s->cfg->limits.max_connections || wc->w.draining) {
        wc->rejected++;
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    wc->accepted++;
    uint32_t li = (uint32_t)((uv_tcp_t *)ls - wc->listeners);
    sl_conn_start(c, &wc->w, s->tls[li] ? &s->tls_cfg[li] : &s->conn_cfg);
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
        sl_conn_drain_all(w);
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
    if (sl_metrics_thread_init() == 0) {
        uv_run(&w->loop, UV_RUN_DEFAULT);
    } else {
        sl_log_error("worker %d: out of memory for metrics", w->index);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT); /* close callbacks still pending */
    sl_accesslog_flush(&w->alog);
    free(w->alog.data);
    sl_conn_worker_free(w);
    sl_upstream_worker_free(w);
    uv_loop_close(&w->loop);
    sl_bufpool_destroy(&w->bufs);
    __atomic_store_n(&wc->done, 1, __ATOMIC_RELEASE);
    uv_async_send(&s->worker_exit);
    return NULL;
}

static int worker_setup(server_t *s, wctx_t *wc, int index)
{
    sl_worker_t *w = &wc->w;
    worker_common_init(w, index, s);
    wc->srv = s;
    int rc = uv_loop_init(&w->loop);
    if (rc)
        return rc;
    sl_worker_update_date(w); /* the wall-clock offset needs the loop's time */
    if ((rc = sl_timers_init(&w->timers, &w->loop)))
        return rc;
    w->timers.data = w;
    w->timers.on_tick = on_tick;
    if ((rc = sl_upstream_worker_init(w, &s->gw.up)))
        return rc;
    if ((rc = uv_async_init(&w->loop, &wc->stop, stop_cb)))
        return rc;
    if ((rc = sl_hcache_worker_init(s->gw.cache, w)))
        return rc;
    if (s->cfg->redis.enabled && s->gw.rl) {
        w->rl_redis = sl_rl_redis_new(&w->loop, &s->cfg->redis.addr, s->cfg->redis.timeout_ms,
                                      s->cfg->redis.key_prefix ? s->cfg->redis.key_prefix
                                                               : "sluice:");
        if (!w->rl_redis)
            return UV_ENOMEM;
    }
    wc->stop.data = wc;
    for (uint32_t i = 0; i < wc->nlisten; i++) {
        uv_tcp_init(&w->loop, &wc->listeners[i]);
        wc->listeners[i].data = wc;
        if ((rc = uv_tcp_open(&wc->listeners[i], wc->fds[i])))
            return rc;
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

static void control_close(server_t *s)
{
    sl_autoscale_stop(s->autoscale); /* the instances go once the last request is done */
    s->autoscale = NULL;
    s->control.autoscale = NULL;
    uv_close((uv_handle_t *)&s->observe, NULL);
    sl_alerts_close(s->alerts);
    s->alerts = NULL;
    s->control.alerts = NULL;
    sl_health_stop(s->health);
    s->health = NULL;
    sl_discovery_stop(s->discovery);
    s->discovery = NULL;
    if (s->admin_open)
        uv_close((uv_handle_t *)&s->admin, NULL);
    s->admin_open = 0;
    sl_conn_close_all(&s->control);
    sl_hcache_worker_close(s->gw.cache, &s->control);
    for (int i = 0; i < 3; i++)
        uv_close((uv_handle_t *)&s->sig[i], NULL);
    uv_close((uv_handle_t *)&s->worker_exit, NULL);
    uv_close((uv_handle_t *)&s->log_wake, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->grace))
        uv_close((uv_handle_t *)&s->grace, NULL);
    sl_timers_stop(&s->control.timers);
}

static void worker_exit_cb(uv_async_t *a)
{
    server_t *s = a->data;
    int n = 0;
    for (int i = 0; i < s->nworkers; i++)
        n += __atomic_load_n(&s->workers[i].done, __ATOMIC_ACQUIRE) ? 1 : 0;
    if (n == s->nworkers) {
        sl_log_info("all workers drained; exiting");
        control_close(s); /* the control loop ends; threads are joined after it */
    }
}

/* Signal every worker that has not exited yet to look at its stop state. */
static void signal_workers(server_t *s)
{
    pthread_mutex_lock(&s->stop_mu);
    for (int i = 0; i < s->nworkers; i++)
        if (!s->workers[i].exited)
            uv_async_send(&s->workers[i].stop);
    pthread_mutex_unlock(&s->stop_mu);
}

static void grace_cb(uv_timer_t *t)
{
    server_t *s = t->data;
    sl_log_warn("shutdown_timeout reached: closing remaining connections");
    for (int i = 0; i < s->nworkers; i++)
        __atomic_store_n(&s->workers[i].force, 1, __ATOMIC_RELEASE);
    signal_workers(s);
}

static void begin_stop(server_t *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    sl_log_info("stopping: draining connections (shutdown_timeout %llums)",
                (unsigned long long)s->cfg->limits.shutdown_timeout_ms);
    if (s->admin_open) {
        uv_close((uv_handle_t *)&s->admin, NULL);
        s->admin_open = 0;
    }
    signal_workers(s);
    uv_timer_start(&s->grace, grace_cb, s->cfg->limits.shutdown_timeout_ms, 0);
    uv_unref((uv_handle_t *)&s->grace);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (signum == SIGHUP) {
        sl_tls_reload(s->tls, s->cfg->nlisten); /* logs each error, or success */
        sl_log_warn("SIGHUP: configuration reload is not implemented in this build; "
                    "the running configuration stays");
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
    for (int i = 0; i < s->nworkers; i++)
        conns += __atomic_load_n(&s->workers[i].w.nconns, __ATOMIC_RELAXED);
    s->control.conns_active = conns;
    sl_sampler_take(s->sampler, now, wall);
    sl_alerts_eval(s->alerts, s->sampler, now, wall);
}

static void control_tick(sl_timers_t *ts)
{
    sl_worker_t *w = ts->data;
    server_t *s = w->server;
    sl_worker_update_date(w);
    sl_upstreams_tick(&s->gw.up); /* finish drains whose last request ended */
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
    const sl_upstreams_t *u = &s->gw.up;
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
                for (int w = 0; w < s->nworkers; w++)
                    if (!s->workers[w].exited)
                        idle += sl_upstream_worker_idle_server(&s->workers[w].w, sv->id);
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
        sl_text_printf(t, "upstream_pool_capacity{service=\"%s\"} %llu\n",
                       u->services[i].conf->name,
                       (unsigned long long)u->services[i].conf->keepalive *
                           (unsigned long long)s->nworkers);
}

static void collect(sl_textbuf_t *t, void *arg)
{
    server_t *s = arg;
    collect_host_pools(t, s);
    uint64_t conns = 0, acc = 0, rej = 0, inflight = 0, idle = 0, bufs = 0, connects = 0,
             reused = 0, cerr = 0;
    for (int i = 0; i < s->nworkers; i++) {
        wctx_t *wc = &s->workers[i];
        conns += __atomic_load_n(&wc->w.nconns, __ATOMIC_RELAXED);
        acc += __atomic_load_n(&wc->accepted, __ATOMIC_RELAXED);
        rej += __atomic_load_n(&wc->rejected, __ATOMIC_RELAXED);
        inflight += __atomic_load_n(&wc->w.inflight, __ATOMIC_RELAXED);
        bufs += __atomic_load_n(&wc->w.bufs.in_use, __ATOMIC_RELAXED);
        if (wc->w.proxy && !wc->exited) {
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
                   (unsigned long long)reused, (unsigned long long)cerr,
                   (unsigned long long)bufs);
    if (s->cfg->redis.enabled) {
        sl_rl_redis_stats_t sum = {0};
        for (int i = 0; i < s->nworkers; i++) {
            const sl_rl_redis_t *r = s->workers[i].w.rl_redis;
            if (!r || s->workers[i].exited)
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
                       (unsigned long long)sum.errors,
                       (unsigned long long)sum.timeouts, (unsigned long long)sum.not_connected,
                       sum.latency_us_sum / 1e6, (unsigned long long)sum.latency_count,
                       sum.connected);
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
                   cpu, rss_pages * sysconf(_SC_PAGESIZE), fds,
                   (unsigned long long)rl.rlim_cur, (unsigned long long)s->start_time,
                   SL_VERSION, s->nworkers);
}

/* ---- run ---- */

int sl_server_run(sl_config_t *cfg)
{
    server_t *s = calloc(1, sizeof(*s));
    if (!s)
        return 1;
    s->cfg = cfg;
    s->start_time = (uint64_t)time(NULL);
    pthread_mutex_init(&s->stop_mu, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->nworkers = cfg->workers ? (int)cfg->workers : sl_cpu_count();
    if (s->nworkers > SL_MAX_THREADS - 1)
        s->nworkers = SL_MAX_THREADS - 1;
    /* Raise the descriptor limit toward the connection limit: two per proxied request. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t want = (rlim_t)cfg->limits.max_connections * 2 + 1024;
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int grc = sl_gateway_build(&s->gw, cfg, s->nworkers + 1);
    if (grc) {
        sl_log_error("cannot start: %s", grc == SL_ENOMEM ? "out of memory" : "see above");
        return 1;
    }
    if (cfg->access_log) {
        int rc = sl_accesslog_open(cfg->access_log);
        if (rc) {
            sl_log_error("access_log %s: %s", cfg->access_log, strerror(-rc));
            return 1;
        }
    }
    s->conn_cfg = (sl_conn_cfg_t){
        .handler = sl_gateway_handle,
        .on_done = sl_gateway_done,
        .handler_size = sl_gateway_state_size(),
        .header_timeout_ms = cfg->limits.header_timeout_ms,
        .idle_timeout_ms = cfg->limits.idle_timeout_ms,
        .max_header_bytes = cfg->limits.max_header_bytes,
        .max_body_bytes = cfg->limits.max_body_bytes,
        .h2_max_streams = cfg->limits.h2_max_concurrent_streams,
    };
    s->admin_cfg = s->conn_cfg;
    s->admin_cfg.h2_max_streams = 0; /* the admin API stays HTTP/1.1 */
    s->admin_cfg.handler = sl_admin_handle;
    s->admin_cfg.on_done = NULL;
    s->admin_cfg.handler_size = 0;
    sl_metrics_collector(collect, s);
    if (sl_h2_metrics_init()) {
        sl_log_error("cannot start: out of memory");
        return 1;
    }
    for (uint32_t j = 0; j < cfg->nlisten; j++) {
        if (cfg->listen_tls[j]) {
            sl_tls_metrics_init();
            break;
        }
    }
    for (uint32_t j = 0; j < cfg->nlisten; j++) {
        char err[512];
        if (!cfg->listen_tls[j])
            continue;
        if (!(s->tls[j] = sl_tls_listener_new(cfg->listen[j].text, cfg->listen_tls[j], err,
                                              sizeof(err)))) {
            sl_log_error("listen %s: tls: %s", cfg->listen[j].text, err);
            return 1;
        }
        s->tls_cfg[j] = s->conn_cfg;
        s->tls_cfg[j].is_tls = 1;
        s->tls_cfg[j].tls = s->tls[j];
    }

    /* Bind everything before starting anything. */
    s->workers = calloc((size_t)s->nworkers, sizeof(wctx_t));
    if (!s->workers)
        return 1;
    for (int i = 0; i < s->nworkers; i++) {
        wctx_t *wc = &s->workers[i];
        wc->nlisten = cfg->nlisten;
        for (uint32_t j = 0; j < cfg->nlisten; j++) {
            int fd = bind_socket(&cfg->listen[j], 1);
            if (fd < 0) {
                sl_log_error("listen %s: %s", cfg->listen[j].text, strerror(-fd));
                return 1;
            }
            wc->fds[j] = fd;
        }
    }
    /* Control thread: its loop serves the admin listener, signals and the log writer. */
    sl_worker_t *ctl = &s->control;
    worker_common_init(ctl, 0, s);
    sl_thread_index = 0;
    uv_loop_init(&ctl->loop);
    sl_worker_update_date(ctl);
    sl_timers_init(&ctl->timers, &ctl->loop);
    ctl->timers.data = ctl;
    ctl->timers.on_tick = control_tick;
    if (sl_hcache_worker_init(s->gw.cache, ctl)) { /* purges, and their broadcast */
        sl_log_error("cache: out of memory");
        return 1;
    }
    int afd = bind_socket(&cfg->admin_listen, 0);
    if (afd < 0) {
        sl_log_error("admin listen %s: %s", cfg->admin_listen.text, strerror(-afd));
        return 1;
    }
    uv_tcp_init(&ctl->loop, &s->admin);
    s->admin.data = s;
    if (uv_tcp_open(&s->admin, afd) ||
        uv_listen((uv_stream_t *)&s->admin, 128, admin_connection)) {
        sl_log_error("admin listen %s: failed", cfg->admin_listen.text);
        return 1;
    }
    s->admin_open = 1;
    int signums[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
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

    for (int i = 0; i < s->nworkers; i++) {
        int rc = worker_setup(s, &s->workers[i], i + 1);
        if (rc) {
            sl_log_error("worker %d: %s", i + 1, uv_strerror(rc));
            return 1;
        }
    }
    if (sl_metrics_thread_init()) {
        sl_log_error("out of memory for metrics");
        return 1;
    }
    for (int i = 0; i < s->nworkers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i])) {
            sl_log_error("cannot start worker thread %d", i + 1);
            return 1;
        }
    }
    /* Samples and alerts: the rules say which routes need their own history. */
    s->alerts = sl_alerts_new(&ctl->loop, cfg, &s->gw, cfg->admin_listen.text);
    uint8_t *track = calloc(s->gw.nroutes + 1, 1);
    if (s->alerts && track)
        sl_alerts_tracked_routes(s->alerts, track, s->gw.nroutes);
    s->sampler = track ? sl_sampler_new(&s->gw, s->nworkers, track) : NULL;
    free(track);
    if (!s->alerts || !s->sampler) {
        sl_log_error("out of memory for alerts");
        return 1;
    }
    ctl->sampler = s->sampler;
    ctl->alerts = s->alerts;
    ctl->nworkers = s->nworkers;
    ctl->start_unix_ms = sl_unix_ms();
    sl_metrics_collector(sl_alerts_collect, s->alerts);
    uv_timer_init(&ctl->loop, &s->observe);
    s->observe.data = s;
    uv_timer_start(&s->observe, observe_cb, 0, 1000);
    s->health = sl_health_start(&ctl->loop, &s->gw.up);
    int aerr = 0;
    s->autoscale = sl_autoscale_start(&ctl->loop, &s->gw, s->nworkers, &aerr);
    if (aerr) {
        sl_log_error("out of memory for autoscale");
        return 1;
    }
    ctl->autoscale = s->autoscale;
    if (s->autoscale)
        sl_metrics_collector(sl_autoscale_collect, s->autoscale);
    s->discovery = sl_discovery_start(&ctl->loop, &s->gw.up);
    char addrs[512] = "";
    size_t off = 0;
    for (uint32_t j = 0; j < cfg->nlisten && off < sizeof(addrs) - 70; j++)
        off += (size_t)snprintf(addrs + off, sizeof(addrs) - off, "%s%s", j ? ", " : "",
                                cfg->listen[j].text);
    sl_log_info("sluice %s listening on %s with %d workers; admin on %s", SL_VERSION, addrs,
                s->nworkers, cfg->admin_listen.text);

    uv_run(&ctl->loop, UV_RUN_DEFAULT);

    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].thread)
            pthread_join(s->workers[i].thread, NULL);
    uv_run(&ctl->loop, UV_RUN_DEFAULT);
    sl_accesslog_drain();
    uv_loop_close(&ctl->loop);
    sl_conn_worker_free(ctl);
    sl_bufpool_destroy(&ctl->bufs);
    sl_metrics_reset();
    sl_sampler_free(s->sampler);
    sl_gateway_free(&s->gw);
    for (uint32_t j = 0; j < SL_CONF_MAX_LISTEN; j++)
        sl_tls_listener_free(s->tls[j]);
    free(s->workers);
    free(s);
    return 0;
}
