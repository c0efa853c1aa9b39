/* buf.h - fixed-size I/O buffers from a per-thread pool.
 * A buffer has exactly one owner at a time (a connection's read side, a pending write,
 * a response being built); ownership moves, it is never shared, so no reference counts
 * and no locks. The pool belongs to one loop thread and must only be used there.
 * SAN=1 builds bypass the free list so ASan sees every allocation and every misuse. */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct sl_buf {
    struct sl_buf *next; /* free-list link while pooled */
    uint32_t size;       /* capacity of data[] */
    uint32_t len;        /* bytes in use (owner's bookkeeping) */
    char data[];
} sl_buf_t;

typedef struct sl_bufpool {
    sl_buf_t *free;
    uint32_t size;    /* data[] capacity of every buffer */
    uint32_t nfree;   /* buffers on the free list */
    uint32_t max_free;/* beyond this, released buffers go back to malloc */
    uint64_t in_use;  /* buffers handed out and not yet returned (metric) */
    uint64_t failed;  /* allocation failures (metric) */
} sl_bufpool_t;

void sl_bufpool_init(sl_bufpool_t *p, uint32_t size, uint32_t max_free);
void sl_bufpool_destroy(sl_bufpool_t *p);

/* A buffer with len = 0, or NULL when memory is exhausted (the caller fails the request). */
static inline sl_buf_t *sl_buf_get(sl_bufpool_t *p)
{
    sl_buf_t *b = p->free;
#ifndef SL_SAN
    if (b) {
        p->free = b->next;
        p->nfree--;
    } else
#endif
    {
        b = malloc(sizeof(*b) + p->size);
        if (!b) {
            p->failed++;
            return NULL;
        }
        b->size = p->size;
    }
    b->len = 0;
    p->in_use++;
    return b;
}

static inline void sl_buf_put(sl_bufpool_t *p, sl_buf_t *b)
{
    if (!b)
        return;
    p->in_use--;
#ifndef SL_SAN
    if (p->nfree < p->max_free) {
        b->next = p->free;
        p->free = b;
        p->nfree++;
        return;
    }
#endif
    free(b);
}

#endif
