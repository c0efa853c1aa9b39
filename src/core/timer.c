/* timer.c - the per-loop deadline tick; see timer.h. */
#include "timer.h"

static void tick_cb(uv_timer_t *h)
{
    sl_timers_t *ts = h->data;
    uint64_t now = uv_now(ts->loop);
    sl_timed_t cursor = {0};
    sl_timed_t *t = ts->head.next;
    while (t != &ts->head) {
        if (t->deadline && t->deadline <= now) {
            /* expire() may unlink t and, through a cascade (a client connection closing
             * its upstream one), other entries too; a cursor node placed after t stays
             * valid whatever is unlinked around it. */
            cursor.prev = t;
            cursor.next = t->next;
            t->next->prev = &cursor;
            t->next = &cursor;
            t->deadline = 0;
            t->expire(t);
            t = cursor.next;
            sl_timed_unlink(&cursor);
            continue;
        }
        t = t->next;
    }
    if (ts->on_tick)
        ts->on_tick(ts);
}

int sl_timers_init(sl_timers_t *ts, uv_loop_t *loop)
{
    ts->loop = loop;
    ts->on_tick = NULL;
    ts->data = NULL;
    ts->head.next = ts->head.prev = &ts->head;
    ts->head.deadline = 0;
    int rc = uv_timer_init(loop, &ts->tick);
    if (rc)
        return rc;
    ts->tick.data = ts;
    uv_unref((uv_handle_t *)&ts->tick); /* the tick alone does not keep a loop alive */
    return uv_timer_start(&ts->tick, tick_cb, SL_TICK_MS, SL_TICK_MS);
}

void sl_timers_stop(sl_timers_t *ts)
{
    uv_timer_stop(&ts->tick);
    if (!uv_is_closing((uv_handle_t *)&ts->tick))
        uv_close((uv_handle_t *)&ts->tick, NULL);
}
