/* out.h - bounded appends into a caller's buffer, for building response and request heads
 * without printf (which costs more than a whole rejected request). Writing past the end
 * sets overflow and writes nothing more; the caller checks it once at the end. */
#ifndef SL_OUT_H
#define SL_OUT_H

#include <stdint.h>
#include <string.h>

#include "common.h"

typedef struct sl_out {
    char *p, *end;
    int overflow;
} sl_out_t;

static inline void sl_out_put(sl_out_t *o, const char *s, size_t n)
{
    if (SL_UNLIKELY((size_t)(o->end - o->p) < n)) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

/* A string literal, its length known at compile time. */
#define SL_OUT_LIT(o, lit) sl_out_put((o), (lit), sizeof(lit) - 1)

static inline void sl_out_str(sl_out_t *o, const char *s)
{
    sl_out_put(o, s, strlen(s));
}

static inline void sl_out_u64(sl_out_t *o, uint64_t v)
{
    char tmp[24];
    sl_out_put(o, tmp, sl_u64_dec(tmp, v));
}

#endif
