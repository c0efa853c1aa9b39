/* sampler.h - what the gateway has done, once a second, for the last 15 minutes: the
 * totals the alert rules and the status page need (answers by status class, the latency
 * histogram, rate-limit rejections, cache lookups, host CPU), read from the metrics
 * registry and /proc on the control thread. Signals over a window are differences between
 * two samples, as PromQL's rate() over the same counters.
 * Owns: the sample rings (global, and per route for the routes alert rules select).
 * Control thread only; never touches a worker's memory except through atomic loads. */
#ifndef SL_SAMPLER_H
#define SL_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "../core/alert_expr.h"
#include "../core/metrics.h"
#include "../proxy/router.h"

#define SL_SAMPLES 901 /* 15 minutes + 1 at one a second */

/* Cumulative counts at one instant. cls[0] = other, cls[1..5] = 1xx..5xx. */
typedef struct sl_counts {
    uint64_t cls[6];
    uint64_t bucket[SL_HIST_BUCKETS + 1]; /* durations, non-cumulative */
} sl_counts_t;

/* Answers of every class in c. */
static inline uint64_t sl_counts_total(const sl_counts_t *c)
{
    uint64_t t = 0;
    for (int k = 0; k < 6; k++)
        t += c->cls[k];
    return t;
}

typedef struct sl_sample {
    uint64_t t_ms;    /* monotonic (uv_now of the control loop) */
    uint64_t unix_ms; /* wall clock, for the status page */
    sl_counts_t all;
    uint64_t ratelimited;             /* 429s from rate limits */
    uint64_t cache_hits, cache_lookups; /* cache_requests_total: hits, all (0 without cache) */
    uint64_t cpu_busy, cpu_total;     /* host jiffies since boot (/proc/stat) */
} sl_sample_t;

typedef struct sl_sampler sl_sampler_t;

/* For gateway g (nworkers serving loops; the pool capacity of a service is its keepalive x
 * nworkers). track[i] != 0: keep route i's own ring (an alert rule selects it); may be NULL. */
sl_sampler_t *sl_sampler_new(const sl_gateway_t *g, int nworkers, const uint8_t *track);
void sl_sampler_free(sl_sampler_t *s);

/* Take a sample now. */
void sl_sampler_take(sl_sampler_t *s, uint64_t now_ms, uint64_t unix_ms);

/* A signal's value over the last window_ms (route/service: an index, or -1 for all; a
 * route that is not tracked has no data). 0 and *out, or -1: no data (fewer than two
 * samples, no answers in the window, ...), which never fires an alert. */
int sl_sampler_signal(const sl_sampler_t *s, int signal, int route, int service,
                      uint64_t window_ms, double *out);

/* Samples held (at most SL_SAMPLES), and the one `ago` samples before the newest. */
size_t sl_sampler_count(const sl_sampler_t *s);
const sl_sample_t *sl_sampler_at(const sl_sampler_t *s, size_t ago);

/* The q-quantile (0..1) of the durations in the difference of two bucket sets, in seconds,
 * interpolated linearly inside its bucket as Prometheus's histogram_quantile does (a
 * quantile in the +Inf bucket is the top finite bound). -1 when the difference is empty. */
double sl_quantile(const uint64_t *newer, const uint64_t *older, double q);

/* Host CPU time since boot, in jiffies (USER_HZ): busy (user, nice, system, irq, softirq,
 * steal) and total (busy + idle + iowait). Both 0 if /proc/stat says nothing. */
void sl_host_cpu(uint64_t *busy, uint64_t *total);

/* Host memory in use, 0..1 (1 - MemAvailable / MemTotal), or -1 if /proc says nothing. */
double sl_host_memory_utilization(uint64_t *total_bytes, uint64_t *available_bytes);

#endif
