/* log.c - error log and access-log hand-off; see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int sl_log_level = SL_LOG_INFO;

static const char *level_name[] = {"error", "warn", "info", "debug"};

void sl_log(int level, const char *fmt, ...)
{
    if (level > sl_log_level)
        return;
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_name[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}

/* Access log: a queue of filled buffers guarded by one mutex (taken once per 64 KiB of
 * log lines, not per line), written by the control thread. */
#define LOGBUF_CAP (64 * 1024)
#define QUEUE_MAX 256 /* 16 MiB of unwritten lines at most */

typedef struct queued {
    struct queued *next;
    size_t len;
    char data[];
} queued_t;

static struct {
    int fd;
    pthread_mutex_t mu;
    queued_t *head, *tail;
    unsigned nqueued;
    uint64_t dropped;
    void (*wake)(void *);
    void *wake_arg;
} alog = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

int sl_accesslog_open(const char *path)
{
    if (!path)
        return 0;
    if (strcmp(path, "stderr") == 0) {
        alog.fd = 2;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    alog.fd = fd;
    return 0;
}

int sl_accesslog_enabled(void)
{
    return alog.fd >= 0;
}

void sl_accesslog_set_waker(void (*wake)(void *), void *arg)
{
    alog.wake = wake;
    alog.wake_arg = arg;
}

void sl_accesslog_flush(sl_logbuf_t *b)
{
    if (!b->len)
        return;
    queued_t *q = malloc(sizeof(*q) + b->len);
    int queued = 0;
    pthread_mutex_lock(&alog.mu);
    if (q && alog.nqueued < QUEUE_MAX) {
        q->next = NULL;
        q->len = b->len;
        memcpy(q->data, b->data, b->len);
        if (alog.tail)
            alog.tail->next = q;
        else
            alog.head = q;
        alog.tail = q;
        alog.nqueued++;
        queued = 1;
    } else {
        for (size_t i = 0; i < b->len; i++)
            alog.dropped += b->data[i] == '\n';
    }
    pthread_mutex_unlock(&alog.mu);
    if (!queued)
        free(q);
    b->len = 0;
    if (queued && alog.wake)
        alog.wake(alog.wake_arg);
}

void sl_accesslog_append(sl_logbuf_t *b, const char *line, size_t len)
{
    if (!b->data) {
        b->data = malloc(LOGBUF_CAP);
        if (!b->data)
            return;
        b->cap = LOGBUF_CAP;
    }
    if (len + 1 > b->cap)
        return;
    if (b->len + len + 1 > b->cap)
        sl_accesslog_flush(b);
    memcpy(b->data + b->len, line, len);
    b->len += len;
    b->data[b->len++] = '\n';
}

char *sl_accesslog_reserve_slow(sl_logbuf_t *b, size_t max)
{
    if (!b->data) {
        b->data = malloc(LOGBUF_CAP);
        if (!b->data)
            return NULL;
        b->cap = LOGBUF_CAP;
    }
    if (max + 1 > b->cap)
        return NULL;
    if (b->cap - b->len < max + 1)
        sl_accesslog_flush(b);
    return b->cap - b->len >= max + 1 ? b->data + b->len : NULL;
}

size_t sl_accesslog_drain(void)
{
    pthread_mutex_lock(&alog.mu);
    queued_t *q = alog.head;
    alog.head = alog.tail = NULL;
    alog.nqueued = 0;
    pthread_mutex_unlock(&alog.mu);
    size_t total = 0;
    while (q) {
        queued_t *next = q->next;
        size_t off = 0;
        while (off < q->len) {
            ssize_t w = write(alog.fd, q->data + off, q->len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        total += off;
        free(q);
        q = next;
    }
    return total;
}

uint64_t sl_accesslog_dropped(void)
{
    pthread_mutex_lock(&alog.mu);
    uint64_t d = alog.dropped;
    pthread_mutex_unlock(&alog.mu);
    return d;
}
