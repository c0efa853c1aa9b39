/* redis_conn.h - one hiredis async connection to Redis, attached to one libuv loop: what every
 * Redis client in sluice (policy/ratelimit_redis.c, cache/cache_redis.c) needs underneath its
 * own commands. Owns the redisAsyncContext, the poll watchers (hiredis 0.14's libuv adapter,
 * fixed: see redis_conn.c), connect with a timeout and an optional handshake, drop detection,
 * reconnect with backoff, the stall check, and one log line per outage. Also the FIFO of
 * requests with deadlines that both clients keep (sl_redis_reqs_t, below).
 * Never blocks; knows no command but PING. Loop thread only: every function and every hook
 * runs on the loop given to sl_redis_conn_init.
 *
 * Life of a connection: IDLE -> CONNECTING (TCP; a connect timer runs) -> HANDSHAKE (PING when
 * cfg->ping, then the owner's handshake hook; the same timer runs on) -> READY (the up hook)
 * -> lost (the down hook; hiredis fails every pending reply with a NULL reply) -> IDLE, and a
 * new attempt after the backoff (100 ms, doubling to cfg->backoff_max_ms; 100 ms again after
 * a connection that was up). A connect or handshake not done within 2 s is dropped and
 * retried the same way.
 *
 * Stall check (cfg->stall): a READY connection that owes replies to commands sent with a
 * callback and has had no reply for max(4 x timeout_ms, 2 s) is dropped and re-made, so a hung
 * server or a peer lost without a FIN does not leave requests piling up. TCP keepalive is on
 * for every connection (it finds a dead peer of an idle one, e.g. a subscription).
 *
 * hiredis 0.14 rules the owner follows: never free anything of a connection inside a hiredis
 * callback (sl_redis_conn_drop schedules a drop; sl_redis_conn_close may be called anywhere,
 * hiredis defers the free until its callback returns); every reply callback of a command
 * sent with sl_redis_conn_command calls sl_redis_conn_replied first, with the reply; a NULL
 * reply means the connection is going: nothing new may be sent on it. */
#ifndef SL_REDIS_CONN_H
#define SL_REDIS_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

struct redisAsyncContext;
typedef struct sl_redis_conn sl_redis_conn_t;

/* What differs between the users of a connection; a static const of the owner. */
typedef struct sl_redis_conn_cfg {
    const char *what;        /* logs say "redis ADDR: WHAT: ..."; NULL: "redis ADDR: ..." */
    int ping;                /* PING must be answered (a hung server accepts TCP too) */
    const char *awaits;      /* the handshake hook's command, for the log when its answer is
                              * late ("SUBSCRIBE" -> "SUBSCRIBE not answered"); NULL: with ping,
                              * "PING not answered", otherwise "connect timed out" */
    int stall;               /* drop a READY connection whose replies stall (above) */
    uint64_t backoff_max_ms; /* the longest wait between two connect attempts */
    /* Hooks, each may be NULL; c->data is the owner. None runs after sl_redis_conn_close.
     * handshake: TCP is up (and PING answered, with ping): send what must be answered before
     *   the connection counts (sl_redis_conn_command works) and call sl_redis_conn_up when it
     *   is (in a reply callback, typically). NULL: up at once.
     * up: the connection is READY (after sl_redis_conn_up).
     * down: a connection that was up is not any more (once per up; its pending replies fail
     *   after or around this call; a new attempt follows). */
    void (*handshake)(sl_redis_conn_t *c);
    void (*up)(sl_redis_conn_t *c);
    void (*down)(sl_redis_conn_t *c);
} sl_redis_conn_cfg_t;

/* Embedded in its owner. Fields below `private` are the module's. */
struct sl_redis_conn {
    void *data; /* the owner's */
    /* private */
    const sl_redis_conn_cfg_t *cfg;
    uv_loop_t *loop;
    struct redisAsyncContext *ac;
    uv_timer_t timer; /* backoff; connect timeout; a scheduled drop; the stall check when READY */
    void (*closed)(sl_redis_conn_t *c);
    int state;
    int dropping;       /* hiredis is freeing ac (failing its replies): do not free it again */
    int up;             /* READY since the last connect */
    int live;           /* up, and the down hook not called yet */
    int outage;         /* a failure was logged and no recovery since */
    int closing;        /* sl_redis_conn_close was called */
    int corked;         /* see sl_redis_conn_cork */
    int write_wanted;   /* corked, and hiredis has output no watcher waits for */
    const char *forced; /* why we drop the connection ourselves */
    uint64_t backoff_ms, stall_ms;
    unsigned inflight;    /* commands with a reply callback still to run (with stall) */
    uint64_t quiet_since; /* the last reply, or when inflight became non-zero */
    int port;
    char ip[46];     /* INET6_ADDRSTRLEN */
    char label[128]; /* "ADDR" or "ADDR: WHAT", for logs */
    char late[32];   /* "X not answered" */
};

/* Set c up (nothing is sent yet): addr is where to connect (its text names it in logs),
 * timeout_ms sets the stall limit (with cfg->stall); cfg must outlive c; data goes to
 * c->data. Initializes one uv handle, so sl_redis_conn_close must follow. */
void sl_redis_conn_init(sl_redis_conn_t *c, uv_loop_t *loop, const sl_addr_t *addr,
                        uint64_t timeout_ms, const sl_redis_conn_cfg_t *cfg, void *data);

/* Connect now (and reconnect for ever after, until closed). Once only. */
void sl_redis_conn_start(sl_redis_conn_t *c);

/* Close: the context is freed (its pending reply callbacks run with NULL, synchronously, or
 * right after the hiredis callback we may be inside of returns); no hook runs any more;
 * closed(c) runs once libuv has closed the handle (run the loop after). Once only. */
void sl_redis_conn_close(sl_redis_conn_t *c, void (*closed)(sl_redis_conn_t *c));

/* 1 when c is READY: commands may be sent. */
int sl_redis_conn_ready(const sl_redis_conn_t *c);

/* The owner's handshake is answered: the connection is READY (the up hook runs; the connect
 * timer stops; "connected again" is logged after an outage). Ignored unless in HANDSHAKE. */
void sl_redis_conn_up(sl_redis_conn_t *c);

/* Drop the connection soon (safe inside a hiredis callback, where freeing it is not), e.g.
 * a failed handshake or a transaction half queued; why (a static string) is logged. No
 * command may go to it meanwhile: it is not READY any more. */
void sl_redis_conn_drop(sl_redis_conn_t *c, const char *why);

/* One command, argv/lens copied by hiredis; fn (NULL: the reply is dropped) gets priv and
 * must begin with sl_redis_conn_replied. 0, or SL_EIO (not connected, out of memory, or the
 * context is going). Counts towards the stall check when fn is set. */
typedef void sl_redis_reply_fn(struct redisAsyncContext *ac, void *reply, void *priv);
int sl_redis_conn_command(sl_redis_conn_t *c, sl_redis_reply_fn *fn, void *priv, int argc,
                          const char **argv, const size_t *lens);

/* Bookkeeping at the top of a reply callback: a reply resets the stall clock; NULL marks the
 * connection as going (not READY; the down hook runs if it was up). */
void sl_redis_conn_replied(sl_redis_conn_t *c, const void *reply);

/* Between cork and uncork, hiredis's requests to watch for writability are only noted, and
 * uncork writes the output once itself (the socket is almost always writable); only what is
 * left then goes to the poll watcher. For owners that send many commands at once: saves two
 * epoll_ctl calls per burst. */
void sl_redis_conn_cork(sl_redis_conn_t *c);
void sl_redis_conn_uncork(sl_redis_conn_t *c);

/* Log a failure as "redis LABEL: ..." unless one was logged in this outage already (the next
 * success logs "connected again"). */
void sl_redis_conn_warn(sl_redis_conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "ADDR" or "ADDR: WHAT", as the logs name the connection. */
static inline const char *sl_redis_conn_label(const sl_redis_conn_t *c)
{
    return c->label;
}

/* ---- requests with deadlines ----
 * A FIFO of requests in send order, owned by the client (which embeds sl_redis_req_t in its
 * request objects). Every request of one FIFO has the same timeout, so deadlines are in list
 * order too and one uv_timer serves the whole list: the requests already answered by the
 * timer or cancelled before their reply form a prefix plus holes, and `cursor` points past
 * the prefix. A request stays linked until its reply (or the connection's end) unlinks it. */

typedef struct sl_redis_req {
    struct sl_redis_req *prev, *next;
    uint64_t deadline_ms; /* loop time */
    int waiting;          /* 0: called back (deadline) or cancelled; its reply is still owed */
} sl_redis_req_t;

typedef struct sl_redis_reqs {
    sl_redis_req_t *head, *tail, *cursor; /* cursor: the first that may still be waiting */
    unsigned n;                           /* linked */
} sl_redis_reqs_t;

/* Append q (waiting, deadline_ms set by the caller). */
void sl_redis_reqs_push(sl_redis_reqs_t *l, sl_redis_req_t *q);
void sl_redis_reqs_remove(sl_redis_reqs_t *l, sl_redis_req_t *q);
/* The first waiting request's deadline, or UINT64_MAX. */
uint64_t sl_redis_reqs_due(sl_redis_reqs_t *l);
/* The first waiting request whose deadline is <= now, no longer waiting, or NULL: the caller
 * calls it back (it stays linked). Call again until NULL; callbacks may push and cancel. */
sl_redis_req_t *sl_redis_reqs_expire(sl_redis_reqs_t *l, uint64_t now);

/* Start t (cb) for loop time due, or stop it when due is UINT64_MAX; *armed = due. */
void sl_redis_timer_set(uv_timer_t *t, uv_timer_cb cb, uint64_t due, uint64_t *armed);

#endif
