/* log.h - the error log (stderr, one line per event) and the access log sink.
 * Error logging may be called from any thread; a line is written with one write(2)
 * so lines from different threads never interleave. The access log never blocks a
 * worker: workers append JSON lines to their own buffer and hand full buffers to the
 * control thread, which does the file I/O (see sl_accesslog_*). */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stddef.h>
#include <stdint.h>

enum sl_log_level { SL_LOG_ERROR = 0, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG };

extern int sl_log_level;

/* printf-style; a newline is added. */
void sl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sl_log_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)
#define sl_log_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_log_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)

/* Access log. sl_accesslog_open is called once at start-up (path "stderr" or a file);
 * returns 0 or a negative errno. */
int sl_accesslog_open(const char *path);
int sl_accesslog_enabled(void);

/* A per-worker line buffer. Lines are appended by the owning worker only. */
typedef struct sl_logbuf {
    char *data;
    size_t len, cap;
} sl_logbuf_t;

/* Append one line (the caller formats it; no newline needed). Hands the buffer to the
 * writer when it is full. Drops (and counts) lines when the writer is behind by more
 * than the queue bound, so memory stays bounded. */
void sl_accesslog_append(sl_logbuf_t *b, const char *line, size_t len);

/* Format in place: room for a line of up to max bytes (max <= 16 KiB) at the end of b,
 * handing full buffers to the writer first; NULL when out of memory. Then
 * sl_accesslog_commit with the length written (<= max). */
char *sl_accesslog_reserve_slow(sl_logbuf_t *b, size_t max);
static inline char *sl_accesslog_reserve(sl_logbuf_t *b, size_t max)
{
    if (b->data && b->cap - b->len >= max + 1)
        return b->data + b->len;
    return sl_accesslog_reserve_slow(b, max);
}
static inline void sl_accesslog_commit(sl_logbuf_t *b, size_t len)
{
    b->data[b->len + len] = '\n';
    b->len += len + 1;
}
/* Hand over whatever is buffered (called on each tick and at exit). */
void sl_accesslog_flush(sl_logbuf_t *b);
/* Control thread: write out queued buffers. Returns bytes written. */
size_t sl_accesslog_drain(void);
/* Lines dropped because the writer fell behind. */
uint64_t sl_accesslog_dropped(void);
/* Set the function that wakes the control thread when a buffer is queued. */
void sl_accesslog_set_waker(void (*wake)(void *), void *arg);

#endif
