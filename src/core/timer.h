/* timer.h - coarse deadlines for many objects on one loop.
 * Every connection needs a timeout that changes on each request; a libuv timer per
 * object would cost a heap insert and remove per change. Instead an object carries a
 * deadline (a plain store on the hot path) and one periodic tick per loop walks the
 * list and expires what is due. Precision is the tick (100 ms), which is what
 * header/idle/upstream timeouts need. Loop thread only. */
#ifndef SL_TIMER_H
#define SL_TIMER_H

#include <stdint.h>
#include <uv.h>

typedef struct sl_timed {
    struct sl_timed *prev, *next;
    uint64_t deadline; /* uv_now() ms; 0 = none */
    void (*expire)(struct sl_timed *t); /* called once when due; deadline is reset to 0 first */
} sl_timed_t;

typedef struct sl_timers {
    uv_timer_t tick;
    sl_timed_t head; /* circular list sentinel */
    uv_loop_t *loop;
    void (*on_tick)(struct sl_timers *ts); /* optional hook run on every tick */
    void *data;
} sl_timers_t;

#define SL_TICK_MS 100

int sl_timers_init(sl_timers_t *ts, uv_loop_t *loop);
/* Stop the tick; the handle is closed (pass a close callback owner if needed). */
void sl_timers_stop(sl_timers_t *ts);

static inline void sl_timed_link(sl_timers_t *ts, sl_timed_t *t, void (*expire)(sl_timed_t *))
{
    t->expire = expire;
    t->deadline = 0;
    t->next = ts->head.next;
    t->prev = &ts->head;
    ts->head.next->prev = t;
    ts->head.next = t;
}

static inline void sl_timed_unlink(sl_timed_t *t)
{
    if (t->next) {
        t->prev->next = t->next;
        t->next->prev = t->prev;
        t->next = t->prev = NULL;
    }
    t->deadline = 0;
}

static inline void sl_timed_set(sl_timers_t *ts, sl_timed_t *t, uint64_t ms)
{
    t->deadline = uv_now(ts->loop) + ms;
}

static inline void sl_timed_clear(sl_timed_t *t)
{
    t->deadline = 0;
}

#endif
