/* buf.c - the per-thread buffer pool; see buf.h. */
#include "buf.h"

void sl_bufpool_init(sl_bufpool_t *p, uint32_t size, uint32_t max_free)
{
    p->free = NULL;
    p->size = size;
    p->nfree = 0;
    p->max_free = max_free;
    p->in_use = 0;
    p->failed = 0;
}

void sl_bufpool_destroy(sl_bufpool_t *p)
{
    while (p->free) {
        sl_buf_t *b = p->free;
        p->free = b->next;
        free(b);
    }
    p->nfree = 0;
}
