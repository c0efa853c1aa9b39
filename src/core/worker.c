/* worker.c - per-thread context helpers; see worker.h. */
#include "worker.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void sl_worker_update_date(sl_worker_t *w)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(w->date, sizeof(w->date), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT",
                     days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    w->date_len = n > 0 ? (size_t)n : 0;
    w->wall_offset_ms = (int64_t)sl_unix_ms() - (int64_t)uv_now(&w->loop);
}

uint64_t sl_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *sl_worker_iso(sl_worker_t *w, uint64_t wall_ms)
{
    uint64_t sec = wall_ms / 1000;
    if (sec != w->iso_sec || !w->iso[0]) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        char buf[64];
        snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        memcpy(w->iso, buf, 20);
        w->iso[20] = 0;
        w->iso_sec = sec;
    }
    return w->iso;
}
