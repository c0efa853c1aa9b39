/* metrics.c - registry and exposition; see metrics.h. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

__thread int sl_thread_index;

typedef struct collector {
    sl_collect_fn fn;
    void *arg;
    struct collector *next;
} collector_t;

static sl_counter_t *counters, **counters_tail = &counters;
static sl_hist_t *hists, **hists_tail = &hists;
static collector_t *collectors, **collectors_tail = &collectors;

/* Label texts by stable id, per kind; control thread only (ids are taken when a gateway
 * is built or a server added, texts read at scrape time). Append-only until reset. */
typedef struct label_table {
    char **text;
    uint32_t n;
} label_table_t;
static label_table_t label_tables[SL_LABELS__COUNT];

void sl_text_append(sl_textbuf_t *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

void sl_text_printf(sl_textbuf_t *t, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(tmp)) {
        char *big = malloc((size_t)n + 1);
        if (!big) {
            t->failed = 1;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        sl_text_append(t, big, (size_t)n);
        free(big);
        return;
    }
    sl_text_append(t, tmp, (size_t)n);
}

/* A family registered again under the same name (a gateway rebuilt on reload) is the
 * same family: its series and per-thread slots go on, so counters never go backwards and
 * a thread slot reused by a later worker adds to what it held. The newest label function
 * wins; it must name the same keys the same way (stable label ids, see below). */
sl_counter_t *sl_metrics_counter(const char *name, const char *help, sl_label_fn labels,
                                 void *arg)
{
    for (sl_counter_t *e = counters; e; e = e->next)
        if (strcmp(e->name, name) == 0) {
            e->labels = labels;
            e->label_arg = arg;
            return e;
        }
    sl_counter_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->name = name;
    c->help = help;
    c->labels = labels;
    c->label_arg = arg;
    /* Published with release: a worker of a new generation may be walking the list in
     * sl_metrics_thread_init while a reload registers families. */
    __atomic_store_n(counters_tail, c, __ATOMIC_RELEASE);
    counters_tail = &c->next;
    return c;
}

sl_hist_t *sl_metrics_hist(const char *name, const char *help, uint32_t nlabels,
                           sl_label_fn labels, void *arg)
{
    for (sl_hist_t *e = hists; e; e = e->next)
        if (strcmp(e->name, name) == 0) {
            e->labels = labels;
            e->label_arg = arg;
            return e; /* nlabels stays: label ids are stable, see sl_label_id */
        }
    sl_hist_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->name = name;
    h->help = help;
    h->nlabels = nlabels ? nlabels : 1;
    h->labels = labels;
    h->label_arg = arg;
    __atomic_store_n(hists_tail, h, __ATOMIC_RELEASE);
    hists_tail = &h->next;
    return h;
}

void sl_metrics_collector_remove(sl_collect_fn fn, void *arg)
{
    for (collector_t **pp = &collectors; *pp; pp = &(*pp)->next) {
        collector_t *c = *pp;
        if (c->fn == fn && c->arg == arg) {
            *pp = c->next;
            if (collectors_tail == &c->next)
                collectors_tail = pp;
            free(c);
            return;
        }
    }
}

void sl_metrics_collector(sl_collect_fn fn, void *arg)
{
    for (collector_t *c = collectors; c; c = c->next)
        if (c->fn == fn && c->arg == arg)
            return;
    collector_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->fn = fn;
    c->arg = arg;
    *collectors_tail = c;
    collectors_tail = &c->next;
}

int sl_metrics_thread_init(void)
{
    int t = sl_thread_index;
    for (sl_counter_t *c = __atomic_load_n(&counters, __ATOMIC_ACQUIRE); c;
         c = __atomic_load_n(&c->next, __ATOMIC_ACQUIRE))
        if (!c->slots[t] && !(c->slots[t] = calloc(SL_COUNTER_SLOTS, sizeof(sl_counter_slot_t))))
            return -5;
    for (sl_hist_t *h = __atomic_load_n(&hists, __ATOMIC_ACQUIRE); h;
         h = __atomic_load_n(&h->next, __ATOMIC_ACQUIRE))
        if (!h->cells[t] && !(h->cells[t] = calloc(h->nlabels, sizeof(sl_hist_cell_t))))
            return -5;
    return 0;
}

void sl_metrics_reset(void)
{
    while (counters) {
        sl_counter_t *c = counters;
        counters = c->next;
        for (int i = 0; i < SL_MAX_THREADS; i++)
            free(c->slots[i]);
        free(c);
    }
    counters_tail = &counters;
    while (hists) {
        sl_hist_t *h = hists;
        hists = h->next;
        for (int i = 0; i < SL_MAX_THREADS; i++)
            free(h->cells[i]);
        free(h);
    }
    hists_tail = &hists;
    while (collectors) {
        collector_t *c = collectors;
        collectors = c->next;
        free(c);
    }
    collectors_tail = &collectors;
    for (int t = 0; t < SL_LABELS__COUNT; t++) {
        for (uint32_t i = 0; i < label_tables[t].n; i++)
            free(label_tables[t].text[i]);
        free(label_tables[t].text);
        label_tables[t].text = NULL;
        label_tables[t].n = 0;
    }
}

/* ---- stable label ids ---- */

uint64_t sl_label_overflow;

uint32_t sl_label_id(int table, const char *text)
{
    label_table_t *t = &label_tables[table];
    for (uint32_t i = 1; i < t->n; i++)
        if (strcmp(t->text[i], text) == 0)
            return i;
    if (!t->text) {
        t->text = calloc(SL_LABEL_IDS, sizeof(char *));
        if (!t->text)
            return 0;
        t->n = 1; /* id 0: none ("unmatched", "other") */
    }
    char *dup = t->n < SL_LABEL_IDS ? strdup(text) : NULL;
    if (!dup) {
        sl_label_overflow++;
        return 0;
    }
    t->text[t->n] = dup;
    return t->n++;
}

const char *sl_label_text(int table, uint32_t id)
{
    const label_table_t *t = &label_tables[table];
    return id && id < t->n ? t->text[id] : NULL;
}

typedef struct kv {
    uint64_t key, val;
} kv_t;

static int kv_cmp(const void *a, const void *b)
{
    uint64_t x = ((const kv_t *)a)->key, y = ((const kv_t *)b)->key;
    return x < y ? -1 : x > y;
}

/* Gather (key, sum) over all threads, sorted by key. Returns count; *out owned by caller. */
static size_t counter_merge(const sl_counter_t *c, kv_t **out)
{
    size_t n = 0;
    kv_t *v = malloc(sizeof(kv_t) * SL_COUNTER_SLOTS * 2 + sizeof(kv_t));
    size_t cap = SL_COUNTER_SLOTS * 2;
    *out = NULL;
    if (!v)
        return 0;
    for (int t = 0; t < SL_MAX_THREADS; t++) {
        const sl_counter_slot_t *s = c->slots[t];
        if (!s)
            continue;
        for (size_t i = 0; i < SL_COUNTER_SLOTS; i++) {
            uint64_t k = __atomic_load_n(&s[i].key, __ATOMIC_ACQUIRE);
            if (!k)
                continue;
            if (n == cap) {
                kv_t *nv = realloc(v, sizeof(kv_t) * cap * 2);
                if (!nv)
                    break;
                v = nv;
                cap *= 2;
            }
            v[n].key = k - 1;
            v[n].val = __atomic_load_n(&s[i].val, __ATOMIC_RELAXED);
            n++;
        }
    }
    qsort(v, n, sizeof(kv_t), kv_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && v[m - 1].key == v[i].key)
            v[m - 1].val += v[i].val;
        else
            v[m++] = v[i];
    }
    *out = v;
    return m;
}

uint64_t sl_counter_total(const sl_counter_t *c)
{
    kv_t *v;
    size_t n = counter_merge(c, &v);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i].val;
    for (int t = 0; t < SL_MAX_THREADS; t++)
        sum += c->overflow[t];
    free(v);
    return sum;
}

int sl_counter_foreach(const sl_counter_t *c, void (*fn)(uint64_t key, uint64_t val, void *arg),
                       void *arg)
{
    kv_t *v;
    size_t n = counter_merge(c, &v);
    if (!v)
        return SL_ENOMEM;
    for (size_t i = 0; i < n; i++)
        fn(v[i].key, v[i].val, arg);
    free(v);
    return 0;
}

const uint32_t sl_hist_bounds_us[SL_HIST_BUCKETS] = {1000,   2500,   5000,    10000,   25000,
                                                     50000,  100000, 250000,  500000,  1000000,
                                                     2500000, 5000000, 10000000};

void sl_hist_read(const sl_hist_t *h, uint32_t label, sl_hist_cell_t *out)
{
    memset(out, 0, sizeof(*out));
    if (label >= h->nlabels)
        return;
    for (int t = 0; t < SL_MAX_THREADS; t++) {
        const sl_hist_cell_t *c = h->cells[t];
        if (!c)
            continue;
        for (int b = 0; b <= SL_HIST_BUCKETS; b++)
            out->bucket[b] += __atomic_load_n(&c[label].bucket[b], __ATOMIC_RELAXED);
        out->sum_us += __atomic_load_n(&c[label].sum_us, __ATOMIC_RELAXED);
        out->count += __atomic_load_n(&c[label].count, __ATOMIC_RELAXED);
    }
}

static void render_counter(sl_textbuf_t *out, const sl_counter_t *c)
{
    sl_text_printf(out, "# HELP %s %s\n# TYPE %s counter\n", c->name, c->help, c->name);
    kv_t *v;
    size_t n = counter_merge(c, &v);
    char lab[512];
    if (!c->labels) {
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += v[i].val;
        sl_text_printf(out, "%s %llu\n", c->name, (unsigned long long)sum);
    }
    for (size_t i = 0; c->labels && i < n; i++) {
        size_t l = c->labels(v[i].key, lab, sizeof(lab), c->label_arg);
        sl_text_printf(out, "%s{%.*s} %llu\n", c->name, (int)l, lab,
                       (unsigned long long)v[i].val);
    }
    free(v);
}

static void render_hist(sl_textbuf_t *out, const sl_hist_t *h)
{
    static const char *le[SL_HIST_BUCKETS] = {"0.001", "0.0025", "0.005", "0.01", "0.025",
                                              "0.05",  "0.1",    "0.25",  "0.5",  "1",
                                              "2.5",   "5",      "10"};
    sl_text_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
    char lab[512];
    for (uint32_t i = 0; i < h->nlabels; i++) {
        sl_hist_cell_t sum = {0};
        for (int t = 0; t < SL_MAX_THREADS; t++) {
            const sl_hist_cell_t *c = h->cells[t];
            if (!c)
                continue;
            for (int b = 0; b <= SL_HIST_BUCKETS; b++)
                sum.bucket[b] += __atomic_load_n(&c[i].bucket[b], __ATOMIC_RELAXED);
            sum.sum_us += __atomic_load_n(&c[i].sum_us, __ATOMIC_RELAXED);
            sum.count += __atomic_load_n(&c[i].count, __ATOMIC_RELAXED);
        }
        if (!sum.count)
            continue;
        size_t l = h->labels ? h->labels(i, lab, sizeof(lab), h->label_arg) : 0;
        const char *sep = l ? "," : "";
        uint64_t cum = 0;
        for (int b = 0; b < SL_HIST_BUCKETS; b++) {
            cum += sum.bucket[b];
            sl_text_printf(out, "%s_bucket{%.*s%sle=\"%s\"} %llu\n", h->name, (int)l, lab, sep,
                           le[b], (unsigned long long)cum);
        }
        cum += sum.bucket[SL_HIST_BUCKETS];
        /* count is read last and may be ahead of the buckets by a few in-flight updates;
         * +Inf must equal _count, so report the bucket total for both. */
        sl_text_printf(out, "%s_bucket{%.*s%sle=\"+Inf\"} %llu\n", h->name, (int)l, lab, sep,
                       (unsigned long long)cum);
        sl_text_printf(out, "%s_sum{%.*s} %.6f\n", h->name, (int)l, lab, sum.sum_us / 1e6);
        sl_text_printf(out, "%s_count{%.*s} %llu\n", h->name, (int)l, lab,
                       (unsigned long long)cum);
    }
}

void sl_metrics_render(sl_textbuf_t *out)
{
    for (sl_counter_t *c = counters; c; c = c->next)
        render_counter(out, c);
    for (sl_hist_t *h = hists; h; h = h->next)
        render_hist(out, h);
    for (collector_t *c = collectors; c; c = c->next)
        c->fn(out, c->arg);
}
