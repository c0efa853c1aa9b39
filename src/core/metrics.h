/* metrics.h - counters and histograms with per-thread storage, merged when read.
 * Owns: the registry of metric families and their Prometheus text exposition.
 * The hot path (sl_counter_add, sl_hist_observe) touches only the calling thread's own
 * memory: no atomics with lock prefix, no shared cache lines. Families are registered at
 * start-up, before threads start; values are read by the control thread while workers
 * write (aligned 64-bit loads and stores, so a reader sees a recent value, never a torn one).
 * Labels have bounded cardinality by construction: they are small integers (route index,
 * method id, status code) packed into a key, turned into text only at scrape time. */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define SL_MAX_THREADS 72     /* workers + control thread */
#define SL_COUNTER_SLOTS 2048 /* distinct label keys per family per thread */

/* Index of the calling thread's storage: 0 = control thread, 1.. = workers. */
extern __thread int sl_thread_index;

/* Writes the label set of key as `a="x",b="y"` (no braces) into out; returns length. */
typedef size_t (*sl_label_fn)(uint64_t key, char *out, size_t cap, void *arg);

typedef struct sl_counter_slot {
    uint64_t key; /* key + 1; 0 = empty */
    uint64_t val;
} sl_counter_slot_t;

typedef struct sl_counter {
    const char *name, *help;
    sl_label_fn labels; /* NULL: a single unlabelled series (key 0) */
    void *label_arg;
    sl_counter_slot_t *slots[SL_MAX_THREADS]; /* per thread, allocated on first use */
    uint64_t overflow[SL_MAX_THREADS];        /* increments that found no free slot */
    struct sl_counter *next;
} sl_counter_t;

#define SL_HIST_BUCKETS 13 /* 1 ms .. 10 s, plus +Inf */

typedef struct sl_hist_cell {
    uint64_t bucket[SL_HIST_BUCKETS + 1]; /* non-cumulative; last = above the top bound */
    uint64_t sum_us;
    uint64_t count;
} sl_hist_cell_t;

typedef struct sl_hist {
    const char *name, *help;
    sl_label_fn labels; /* label text of index i */
    void *label_arg;
    uint32_t nlabels;
    sl_hist_cell_t *cells[SL_MAX_THREADS]; /* per thread: nlabels cells */
    struct sl_hist *next;
} sl_hist_t;

/* Gauges and anything computed at scrape time: fn appends complete exposition lines. */
typedef struct sl_textbuf {
    char *p;
    size_t len, cap;
    int failed;
} sl_textbuf_t;
void sl_text_append(sl_textbuf_t *t, const char *s, size_t n);
void sl_text_printf(sl_textbuf_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef void (*sl_collect_fn)(sl_textbuf_t *out, void *arg);

/* Registration (start-up, single thread). Returned objects live until sl_metrics_reset. */
sl_counter_t *sl_metrics_counter(const char *name, const char *help, sl_label_fn labels,
                                 void *arg);
sl_hist_t *sl_metrics_hist(const char *name, const char *help, uint32_t nlabels,
                           sl_label_fn labels, void *arg);
/* Add fn(arg) to what a scrape renders (once: the same pair again is ignored). */
void sl_metrics_collector(sl_collect_fn fn, void *arg);
/* Remove the collector fn(arg) (its object is being freed, e.g. an old gateway). */
void sl_metrics_collector_remove(sl_collect_fn fn, void *arg);
/* Free every family (tests, shutdown). */
void sl_metrics_reset(void);

/* Stable label ids. Series keyed by a route, limit or server use an id taken from a
 * process-wide table by the label's text, not the object's index in one gateway: a
 * configuration reloaded with routes reordered, added or removed keeps each series on its
 * name, and two generations of workers serving at once add into the same series.
 * Id 0 means none ("unmatched"/"other"), and is also what a full table gives (counted in
 * sl_label_overflow). Control thread only. */
#define SL_LABEL_IDS 1024 /* ids per kind, over the life of the process */
enum { SL_LABELS_ROUTE = 0, SL_LABELS_LIMIT, SL_LABELS_SERVER, SL_LABELS__COUNT };
uint32_t sl_label_id(int table, const char *text);
/* The text of id, or NULL for 0 or an id never given. */
const char *sl_label_text(int table, uint32_t id);
extern uint64_t sl_label_overflow;

/* Allocate the calling thread's storage for every family now (each thread calls it
 * once before serving), so the hot path never allocates. Returns 0 or SL_ENOMEM. */
int sl_metrics_thread_init(void);

static inline void sl_counter_add(sl_counter_t *c, uint64_t key, uint64_t n)
{
    sl_counter_slot_t *s = c->slots[sl_thread_index];
    uint64_t k = key + 1;
    uint32_t i = (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 53) & (SL_COUNTER_SLOTS - 1);
    for (uint32_t probe = 0; probe < 16; probe++, i = (i + 1) & (SL_COUNTER_SLOTS - 1)) {
        uint64_t sk = s[i].key;
        if (sk == k) {
            __atomic_store_n(&s[i].val, s[i].val + n, __ATOMIC_RELAXED);
            return;
        }
        if (sk == 0) {
            s[i].val = n;
            __atomic_store_n(&s[i].key, k, __ATOMIC_RELEASE);
            return;
        }
    }
    c->overflow[sl_thread_index] += n;
}

static inline void sl_counter_inc(sl_counter_t *c)
{
    sl_counter_add(c, 0, 1);
}

static inline void sl_hist_observe(sl_hist_t *h, uint32_t label, uint64_t us)
{
    static const uint32_t bounds_us[SL_HIST_BUCKETS] = {
        1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
        5000000, 10000000};
    if (label >= h->nlabels)
        label = h->nlabels - 1;
    sl_hist_cell_t *c = &h->cells[sl_thread_index][label];
    uint32_t b = 0;
    while (b < SL_HIST_BUCKETS && us > bounds_us[b])
        b++;
    __atomic_store_n(&c->bucket[b], c->bucket[b] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&c->sum_us, c->sum_us + us, __ATOMIC_RELAXED);
    __atomic_store_n(&c->count, c->count + 1, __ATOMIC_RELAXED);
}

/* Render every family in Prometheus text format 0.0.4 into out. */
void sl_metrics_render(sl_textbuf_t *out);

/* Sum of one counter over every thread and label key (tests, status). */
uint64_t sl_counter_total(const sl_counter_t *c);

/* Every (label key, sum over threads) of c, in key order; increments that found no slot
 * are not included (see sl_counter_total). Returns 0, or SL_ENOMEM. */
int sl_counter_foreach(const sl_counter_t *c, void (*fn)(uint64_t key, uint64_t val, void *arg),
                       void *arg);

/* Label i of h summed over threads into *out (non-cumulative buckets). */
void sl_hist_read(const sl_hist_t *h, uint32_t label, sl_hist_cell_t *out);

/* The upper bounds of the histogram buckets, µs (the last bucket is +Inf). */
extern const uint32_t sl_hist_bounds_us[SL_HIST_BUCKETS];

#endif
