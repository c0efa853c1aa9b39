/* sampler.c - one sample a second of the gateway's totals; see sampler.h. */
#include "sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_sampler {
    const sl_gateway_t *g;
    int nworkers;
    uint32_t nroutes;
    size_t head, n;             /* ring: next slot to write, samples held */
    sl_sample_t ring[SL_SAMPLES];
    sl_counts_t **route_ring;   /* by route: SL_SAMPLES counts, or NULL when not tracked */
    sl_counts_t *now_routes;    /* scratch for one take: nroutes + 1 (unmatched) */
};

sl_sampler_t *sl_sampler_new(const sl_gateway_t *g, int nworkers, const uint8_t *track)
{
    sl_sampler_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->g = g;
    s->nworkers = nworkers;
    s->nroutes = g->nroutes;
    s->route_ring = calloc(g->nroutes + 1, sizeof(*s->route_ring));
    s->now_routes = calloc(g->nroutes + 1, sizeof(*s->now_routes));
    if (!s->route_ring || !s->now_routes) {
        sl_sampler_free(s);
        return NULL;
    }
    for (uint32_t i = 0; track && i < g->nroutes; i++) {
        if (!track[i])
            continue;
        s->route_ring[i] = calloc(SL_SAMPLES, sizeof(sl_counts_t));
        if (!s->route_ring[i]) {
            sl_sampler_free(s);
            return NULL;
        }
    }
    return s;
}

void sl_sampler_free(sl_sampler_t *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; s->route_ring && i <= s->nroutes; i++)
        free(s->route_ring[i]);
    free(s->route_ring);
    free(s->now_routes);
    free(s);
}

size_t sl_sampler_count(const sl_sampler_t *s)
{
    return s->n;
}

static size_t slot_of(const sl_sampler_t *s, size_t ago)
{
    return (s->head + SL_SAMPLES - 1 - ago) % SL_SAMPLES;
}

const sl_sample_t *sl_sampler_at(const sl_sampler_t *s, size_t ago)
{
    return ago < s->n ? &s->ring[slot_of(s, ago)] : NULL;
}

/* The index in s->g of the route with label id mid; nroutes for 0 (unmatched); -1 for a
 * route an earlier configuration had (its series live on in the shared family). */
static int64_t route_of(const sl_sampler_t *s, uint32_t mid)
{
    if (!mid)
        return s->nroutes;
    for (uint32_t i = 0; i < s->nroutes; i++)
        if (s->g->routes[i].mid == mid)
            return i;
    return -1;
}

/* http_requests_total's key: route label id (0 = none) << 24 | method << 16 | status. */
static void add_request(uint64_t key, uint64_t val, void *arg)
{
    sl_sampler_t *s = arg;
    uint32_t route = (uint32_t)(key >> 24);
    unsigned status = (unsigned)(key & 0xffff), cls = status / 100;
    if (cls > 5)
        cls = 0;
    int64_t r = route_of(s, route);
    if (r >= 0)
        s->now_routes[r].cls[cls] += val;
}

void sl_host_cpu(uint64_t *busy, uint64_t *total)
{
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return;
    unsigned long long v[8] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) >= 4) {
        /* user nice system idle iowait irq softirq steal: idle and iowait are not busy */
        *busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        *total = *busy + v[3] + v[4];
    }
    fclose(f);
}

double sl_host_memory_utilization(uint64_t *total_bytes, uint64_t *available_bytes)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    char line[256];
    unsigned long long total = 0, avail = 0, v;
    int have_total = 0, have_avail = 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "MemTotal: %llu kB", &v) == 1) {
            total = v;
            have_total = 1;
        } else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
            avail = v;
            have_avail = 1;
        }
    }
    fclose(f);
    if (!have_total || !have_avail || total == 0)
        return -1;
    if (total_bytes)
        *total_bytes = total * 1024;
    if (available_bytes)
        *available_bytes = avail * 1024;
    return avail >= total ? 0.0 : 1.0 - (double)avail / (double)total;
}

void sl_sampler_take(sl_sampler_t *s, uint64_t now_ms, uint64_t unix_ms)
{
    const sl_gateway_t *g = s->g;
    memset(s->now_routes, 0, (s->nroutes + 1) * sizeof(*s->now_routes));
    if (g->m_requests)
        sl_counter_foreach(g->m_requests, add_request, s);
    for (uint32_t i = 0; g->m_duration && i <= s->nroutes; i++) {
        sl_hist_cell_t cell;
        sl_hist_read(g->m_duration, i < s->nroutes ? g->routes[i].mid : 0, &cell);
        memcpy(s->now_routes[i].bucket, cell.bucket, sizeof(cell.bucket));
    }
    sl_sample_t *x = &s->ring[s->head];
    memset(x, 0, sizeof(*x));
    x->t_ms = now_ms;
    x->unix_ms = unix_ms;
    for (uint32_t i = 0; i <= s->nroutes; i++) {
        for (int c = 0; c < 6; c++)
            x->all.cls[c] += s->now_routes[i].cls[c];
        for (int b = 0; b <= SL_HIST_BUCKETS; b++)
            x->all.bucket[b] += s->now_routes[i].bucket[b];
        if (i < s->nroutes && s->route_ring[i])
            s->route_ring[i][s->head] = s->now_routes[i];
    }
    x->ratelimited = g->m_rejected ? sl_counter_total(g->m_rejected) : 0;
    if (g->cache)
        sl_hcache_counts(g->cache, &x->cache_hits, &x->cache_lookups);
    sl_host_cpu(&x->cpu_busy, &x->cpu_total);
    s->head = (s->head + 1) % SL_SAMPLES;
    if (s->n < SL_SAMPLES)
        s->n++;
}

double sl_quantile(const uint64_t *newer, const uint64_t *older, double q)
{
    uint64_t d[SL_HIST_BUCKETS + 1], total = 0;
    for (int b = 0; b <= SL_HIST_BUCKETS; b++) {
        d[b] = newer[b] >= older[b] ? newer[b] - older[b] : 0;
        total += d[b];
    }
    if (!total)
        return -1;
    double rank = q * (double)total, cum = 0;
    for (int b = 0; b <= SL_HIST_BUCKETS; b++) {
        if (cum + (double)d[b] >= rank && d[b]) {
            if (b == SL_HIST_BUCKETS)
                return sl_hist_bounds_us[SL_HIST_BUCKETS - 1] / 1e6;
            double lo = b ? sl_hist_bounds_us[b - 1] / 1e6 : 0, hi = sl_hist_bounds_us[b] / 1e6;
            return lo + (hi - lo) * (rank - cum) / (double)d[b];
        }
        cum += (double)d[b];
    }
    return sl_hist_bounds_us[SL_HIST_BUCKETS - 1] / 1e6;
}

/* The newest sample's index and the one window_ms before it (or the oldest held). */
static int window_pair(const sl_sampler_t *s, uint64_t window_ms, size_t *newer, size_t *older)
{
    if (s->n < 2)
        return -1;
    const sl_sample_t *now = &s->ring[slot_of(s, 0)];
    size_t ago = 1;
    while (ago + 1 < s->n && now->t_ms - s->ring[slot_of(s, ago)].t_ms < window_ms)
        ago++;
    *newer = slot_of(s, 0);
    *older = slot_of(s, ago);
    return 0;
}

static int pool_utilization(const sl_sampler_t *s, int service, double *out)
{
    const sl_upstreams_t *u = &s->g->up;
    int found = 0;
    double best = 0;
    for (uint32_t i = 0; i < u->nservices; i++) {
        if (service >= 0 && (uint32_t)service != i)
            continue;
        const sl_service_t *svc = &u->services[i];
        uint64_t cap = (uint64_t)svc->conf->keepalive * (uint64_t)s->nworkers;
        if (!cap)
            continue;
        double v = (double)sl_service_busy(svc) / (double)cap;
        if (!found || v > best)
            best = v;
        found = 1;
    }
    if (!found)
        return -1;
    *out = best;
    return 0;
}

int sl_sampler_signal(const sl_sampler_t *s, int signal, int route, int service,
                      uint64_t window_ms, double *out)
{
    if (signal == SL_SIG_MEMORY_UTILIZATION) {
        double v = sl_host_memory_utilization(NULL, NULL);
        if (v < 0)
            return -1;
        *out = v;
        return 0;
    }
    if (signal == SL_SIG_POOL_UTILIZATION)
        return pool_utilization(s, service, out);
    size_t a, b;
    if (window_pair(s, window_ms, &a, &b) != 0)
        return -1;
    const sl_sample_t *na = &s->ring[a], *ob = &s->ring[b];
    const sl_counts_t *ca = &na->all, *cb = &ob->all;
    if (route >= 0) {
        if ((uint32_t)route >= s->nroutes || !s->route_ring[route])
            return -1;
        ca = &s->route_ring[route][a];
        cb = &s->route_ring[route][b];
    }
    double secs = (double)(na->t_ms - ob->t_ms) / 1000.0;
    uint64_t dt = sl_counts_total(ca) - sl_counts_total(cb);
    switch (signal) {
    case SL_SIG_ERROR_RATE:
        if (!dt)
            return -1;
        *out = (double)(ca->cls[5] - cb->cls[5]) / (double)dt;
        return 0;
    case SL_SIG_REQUEST_RATE:
        if (secs <= 0)
            return -1;
        *out = (double)dt / secs;
        return 0;
    case SL_SIG_LATENCY_P50:
    case SL_SIG_LATENCY_P95:
    case SL_SIG_LATENCY_P99: {
        double q = signal == SL_SIG_LATENCY_P50 ? 0.5 : signal == SL_SIG_LATENCY_P95 ? 0.95 : 0.99;
        double v = sl_quantile(ca->bucket, cb->bucket, q);
        if (v < 0)
            return -1;
        *out = v;
        return 0;
    }
    case SL_SIG_RATELIMITED_RATIO:
        if (!dt || route >= 0)
            return -1;
        *out = (double)(na->ratelimited - ob->ratelimited) / (double)dt;
        return 0;
    case SL_SIG_CACHE_HIT_RATIO: {
        uint64_t lk = na->cache_lookups - ob->cache_lookups;
        if (!lk || route >= 0)
            return -1;
        *out = (double)(na->cache_hits - ob->cache_hits) / (double)lk;
        return 0;
    }
    case SL_SIG_CPU_UTILIZATION: {
        uint64_t tot = na->cpu_total - ob->cpu_total;
        if (!tot || na->cpu_total < ob->cpu_total)
            return -1;
        *out = (double)(na->cpu_busy - ob->cpu_busy) / (double)tot;
        return 0;
    }
    default:
        return -1;
    }
}
