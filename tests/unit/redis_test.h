/* redis_test.h - what the unit tests of sluice's Redis clients (test_ratelimit_redis.c,
 * test_cache_redis.c) share: a throwaway redis-server on a free loopback port (started, killed,
 * restarted; SIGSTOP/SIGCONT on redis_pid hang and resume it), a synchronous hiredis context to
 * look inside it, the sl_addr_t of a loopback port, and the sl_log hook that counts the
 * connection log lines. Header-only (every tests/unit/test_*.c is one binary): include it
 * once, after cmocka.h. Without /usr/bin/redis-server, have_redis stays 0 and NEED_REDIS()
 * skips a test with a message. */
#ifndef SL_TEST_REDIS_TEST_H
#define SL_TEST_REDIS_TEST_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "../../src/core/config.h"
#include "../../src/core/log.h"

#define REDIS_BIN "/usr/bin/redis-server"

static int have_redis;  /* the server could be started */
static int redis_port;  /* where it listens (127.0.0.1) */
static pid_t redis_pid; /* 0 when not running */

/* The modules log through sl_log; the test provides it and counts the lines it cares about. */
static int n_lost, n_cannot, n_again;

void sl_log(int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "  [log %d] %s\n", level, line);
    n_lost += strstr(line, "connection lost") != NULL;
    n_cannot += strstr(line, "cannot connect") != NULL;
    n_again += strstr(line, "connected again") != NULL;
}

/* A loopback port nothing listens on (right now), or -1. */
static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* 127.0.0.1:port as the modules take it. */
static inline sl_addr_t loopback_addr(int port)
{
    sl_addr_t a;
    memset(&a, 0, sizeof(a));
    struct sockaddr_in *sa = (struct sockaddr_in *)&a.ss;
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.len = sizeof(*sa);
    snprintf(a.text, sizeof(a.text), "127.0.0.1:%d", port);
    return a;
}

/* A blocking connection to the test server (1 s timeout; the caller redisFree's it), or
 * NULL. */
static inline redisContext *sync_ctx(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Start a redis-server without persistence on port and wait (up to 5 s) until it answers
 * PING: its pid, or -1 (nothing is left running then). */
static inline pid_t redis_start(int port)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        int dn = open("/dev/null", O_RDWR);
        dup2(dn, 1);
        dup2(dn, 2);
        execl(REDIS_BIN, "redis-server", "--port", p, "--save", "", "--appendonly", "no", "--bind",
              "127.0.0.1", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && pid > 0; i++) {
        redisContext *c = sync_ctx();
        if (c) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS;
            freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return pid;
        }
        usleep(10000);
    }
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

/* Kill the server (SIGKILL: no goodbye to the clients) and reap it. */
static inline void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = 0;
    }
}

/* For a group setup: start the server on a free port (have_redis = 1), or say why every
 * server test of `test` is skipped. 0; a cmocka failure when the server does not start. */
static inline int redis_group_start(const char *test)
{
    if (access(REDIS_BIN, X_OK) != 0) {
        fprintf(stderr,
                "%s: %s not found: skipping the server tests (apt-get install redis-server)\n",
                test, REDIS_BIN);
        return 0;
    }
    redis_port = free_port();
    assert_true(redis_port > 0);
    redis_pid = redis_start(redis_port);
    assert_true(redis_pid > 0);
    have_redis = 1;
    return 0;
}

/* Empty the server's every database. */
static inline void redis_flushall(void)
{
    redisContext *c = sync_ctx();
    assert_non_null(c);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!have_redis) {                                                                         \
            print_message("skipped: " REDIS_BIN " is missing\n");                                  \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#endif
