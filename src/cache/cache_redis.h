/* cache_redis.h - the response cache's second tier (L2) in Redis, shared by every sluice
 * instance using the same Redis: lookups and stores of serialized cache objects, purges by
 * key, key prefix and tag, and the purge broadcast that reaches the other instances' L1.
 * Owns: the Redis connection of one libuv loop (hiredis async, reconnect with backoff), the
 * Redis key layout, deadlines. Knows nothing of HTTP: keys, values and tags are bytes the
 * caller builds. Never blocks; every call has a deadline; Redis down or slow means "not
 * found" quickly, never an error to the client.
 *
 * Redis keys (P = the configured prefix, e.g. "sluice:"):
 *   P "c:" KEY        the object (a string value) with PX = its TTL
 *   P "t:" TAG        a set of KEYs (without P "c:") carrying TAG; PEXPIRE'd to the
 *                     longest TTL added to it
 *   channel P "purge" purge messages between instances
 * One sl_l2_t per loop (each worker's, and the control thread's for purges). */
#ifndef SL_CACHE_REDIS_H
#define SL_CACHE_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../core/common.h"
#include "../core/config.h"

typedef struct sl_l2 sl_l2_t;

/* Connect (asynchronously) to addr from loop's thread. timeout_ms bounds every get and
 * purge; prefix starts every key and the channel name (copied). NULL when out of memory. */
sl_l2_t *sl_l2_new(uv_loop_t *loop, const sl_addr_t *addr, uint64_t timeout_ms,
                   const char *prefix);

/* Close: every pending get and purge completes first (SL_EIO), the subscription ends. The
 * memory is freed once libuv has closed the handles (run the loop after). NULL ignored. */
void sl_l2_close(sl_l2_t *l);

/* ---- lookups and stores (worker loops) ---- */

/* A get's outcome: rc 0 found (data[0..len) valid only during the call), 1 absent,
 * SL_EIO (not connected, timed out, error reply). */
typedef void (*sl_l2_get_cb)(void *arg, int rc, const char *data, size_t len);

/* GET P "c:" key. cb runs exactly once, never inside this call, at the latest timeout_ms
 * later. Returns 0 and *handle (for sl_l2_cancel), or SL_EIO at once when not connected
 * (cb will not run). */
int sl_l2_get(sl_l2_t *l, const char *key, size_t klen, sl_l2_get_cb cb, void *arg,
              void **handle);

/* The caller is gone: cb must not run for this get (its reply is dropped). */
void sl_l2_cancel(sl_l2_t *l, void *handle);

/* Store val (the pieces val[0..nval), concatenated; copied) under P "c:" key with PX
 * ttl_ms (>= 1), and add key to the set P "t:" tag of every tag, each set's expiry raised
 * to at least ttl_ms (PEXPIRE ... GT, or an equivalent that never shortens it). Fire and
 * forget: 0 when queued, SL_EIO when not connected (dropped and counted), SL_ETOOBIG when
 * the value is over the configured bound (512 MiB, Redis' own). */
int sl_l2_put(sl_l2_t *l, const char *key, size_t klen, const uv_buf_t *val, unsigned nval,
              uint64_t ttl_ms, const sl_slice_t *tags, unsigned ntags);

/* ---- purges (the control loop) ---- */

enum {
    SL_L2_PURGE_KEY = 0,    /* one key, exactly */
    SL_L2_PURGE_PREFIX = 1, /* every key starting with the bytes given (SCAN MATCH with the
                             * glob characters * ? [ ] \ in them escaped; bounded by the
                             * deadline: what a deadline cut short is reported) */
    SL_L2_PURGE_TAG = 2,    /* every key in the tag's set, and the set */
};

/* removed: the keys deleted; rc 0, or SL_EIO (not connected, timed out: removed says how
 * many went before that). */
typedef void (*sl_l2_purge_cb)(void *arg, int rc, uint64_t removed);

/* Delete from Redis what kind/s[0..n) names, then PUBLISH it on P "purge" so the other
 * instances purge their L1 too. cb runs exactly once, never inside this call. Returns 0,
 * or SL_EIO at once (not connected: cb will not run). */
int sl_l2_purge(sl_l2_t *l, int kind, const char *s, size_t n, sl_l2_purge_cb cb, void *arg);

/* A purge message from another instance (its own are not delivered back). */
typedef void (*sl_l2_purge_msg_cb)(void *arg, int kind, const char *s, size_t n);

/* Subscribe to P "purge" on a second connection of this loop, re-subscribing after every
 * reconnect; cb runs for each message another instance published. 0, or SL_ENOMEM. */
int sl_l2_subscribe(sl_l2_t *l, sl_l2_purge_msg_cb cb, void *arg);

/* The purge message format on the channel (exposed for tests and the fuzz target):
 * sl_l2_format_msg writes the message for (sender, kind, s[0..n)) into out (cap bytes) and
 * returns its length, or 0 when it does not fit; sl_l2_parse_msg parses one received
 * message: 0 and the fields (*s points into msg), or SL_EBADMSG for anything malformed
 * (wrong version, unknown kind, bad lengths, trailing bytes). */
size_t sl_l2_format_msg(uint64_t sender, int kind, const char *s, size_t n, char *out,
                        size_t cap);
int sl_l2_parse_msg(const char *msg, size_t len, uint64_t *sender, int *kind, const char **s,
                    size_t *n);

/* ---- stats (read by the control thread; plain 64-bit fields written by the owner) ---- */

typedef struct sl_l2_stats {
    uint64_t gets, hits, misses, errors, timeouts, not_connected; /* lookups */
    uint64_t puts, put_errors, put_dropped;                      /* stores */
    uint64_t purges, purge_errors, purge_messages;               /* purges sent / received */
    uint64_t connects, disconnects;
    int connected;
    /* added: the purge subscription's connection, and received messages that did not parse
     * (dropped). A subscription that was down may have missed messages. */
    uint64_t sub_connects, sub_disconnects, purge_bad_messages;
    int subscribed;
} sl_l2_stats_t;

const sl_l2_stats_t *sl_l2_stats(const sl_l2_t *l);

/* added: the sender id this instance puts in the purge messages it publishes; its
 * subscription skips messages carrying it. Default: one random id per process, shared by
 * every instance of the process (they share the L1 the purging caller has already purged).
 * Tests use it to tell two instances of one process apart. */
void sl_l2_set_sender(sl_l2_t *l, uint64_t sender);

#endif
