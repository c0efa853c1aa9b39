/* static_route.h - answering a route whose target is `static:` from files under its root.
 * Owns: the route's root directory fd, the per-request job that runs the blocking file
 * work (open beneath the root, fstat, the conditional/Range decision, reading, on-the-fly
 * compression) on libuv's threadpool, and sending the answer from the worker loop: the
 * head from a pooled buffer, the body by reference in chunks of SL_STATIC_CHUNK bytes,
 * reading the next chunk while the previous one is written (at most two chunks per
 * response in memory). The pure rules (path mapping, validators, Range, content types,
 * fingerprints, Accept-Encoding) are http/static and http/compress; docs/static.md. */
#ifndef SL_STATIC_ROUTE_H
#define SL_STATIC_ROUTE_H

#include "../core/config.h"
#include "../http/conn.h"

#define SL_STATIC_CHUNK (256u * 1024) /* body bytes read per threadpool job */

typedef struct sl_static_route {
    const sl_static_conf_t *conf;
    int root_fd;          /* O_PATH directory fd, -1 when the root could not be opened */
    unsigned open_flags;  /* SL_STATIC_OPEN_* */
    unsigned path_flags;  /* SL_STATIC_PATH_* */
    int immutable;        /* IMM_AUTO, IMM_NONE or IMM_GLOB (static_route.c) */
    struct fcache *files; /* small files kept in memory, or NULL (file_cache: 0) */
} sl_static_route_t;

/* Open conf->root (blocking: at start-up or reload). 0, or a negative errno (logged). */
int sl_static_route_init(sl_static_route_t *sr, const sl_static_conf_t *conf);
void sl_static_route_free(sl_static_route_t *sr);

/* Where its per-exchange state (a pointer) sits in x->hdata, and its size: the router
 * lays out the handler state of its parts (router, proxy, cache, static). */
void sl_static_set_offset(size_t off);
size_t sl_static_state_size(void);

/* Register static_* metrics (once, at start-up, before the worker threads). */
void sl_static_metrics_init(void);

/* Answer x (its route matched with a path_prefix of prefix_len bytes) from the files of
 * sr. Takes x over: it ends through sl_conn_end / sl_conn_respond on x's loop. */
void sl_static_route_serve(sl_exchange_t *x, const sl_static_route_t *sr, size_t prefix_len);

#endif
