/* objcodec.c - the L2 byte form of a cache object; see objcodec.h.
 *
 * Header (32 bytes): "SLC1", version 1, three zero bytes, then six little-endian uint32:
 * meta size, Vary names length, secondary key length, head length, tag count, body length.
 * Then one uint32 per tag (its length), then the bytes in that order: meta, vary, skey,
 * head, tags, body. */
#include "objcodec.h"

#include <string.h>

static void put32(char *p, uint64_t v)
{
    p[0] = (char)(v & 0xff);
    p[1] = (char)((v >> 8) & 0xff);
    p[2] = (char)((v >> 16) & 0xff);
    p[3] = (char)((v >> 24) & 0xff);
}

static uint32_t get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

size_t sl_objcodec_prefix_size(const sl_objcodec_t *o)
{
    size_t n = SL_OBJCODEC_HDR + 4 * (size_t)o->ntags + o->meta_size + o->vary.len + o->skey.len +
               o->head.len;
    for (unsigned i = 0; i < o->ntags && i < SL_OBJCODEC_MAX_TAGS; i++)
        n += o->tags[i].len;
    return n;
}

static char *put_bytes(char *p, const void *s, size_t n)
{
    if (n)
        memcpy(p, s, n);
    return p + n;
}

size_t sl_objcodec_encode_prefix(const sl_objcodec_t *o, char *out, size_t cap)
{
    const uint64_t lim = UINT32_MAX;
    if (o->ntags > SL_OBJCODEC_MAX_TAGS || o->meta_size > lim || o->vary.len > lim ||
        o->skey.len > lim || o->head.len > lim || o->body.len > lim)
        return 0;
    size_t need = sl_objcodec_prefix_size(o);
    if (need > cap)
        return 0;
    char *p = out;
    memcpy(p, "SLC1\x01\0\0\0", 8);
    put32(p + 8, o->meta_size);
    put32(p + 12, o->vary.len);
    put32(p + 16, o->skey.len);
    put32(p + 20, o->head.len);
    put32(p + 24, o->ntags);
    put32(p + 28, o->body.len);
    p += SL_OBJCODEC_HDR;
    for (unsigned i = 0; i < o->ntags; i++, p += 4) {
        if (o->tags[i].len > lim)
            return 0;
        put32(p, o->tags[i].len);
    }
    p = put_bytes(p, o->meta, o->meta_size);
    p = put_bytes(p, o->vary.p, o->vary.len);
    p = put_bytes(p, o->skey.p, o->skey.len);
    p = put_bytes(p, o->head.p, o->head.len);
    for (unsigned i = 0; i < o->ntags; i++)
        p = put_bytes(p, o->tags[i].p, o->tags[i].len);
    return (size_t)(p - out);
}

int sl_objcodec_decode(const char *p, size_t n, sl_objcodec_t *o)
{
    memset(o, 0, sizeof(*o));
    if (n < SL_OBJCODEC_HDR || memcmp(p, "SLC1\x01\0\0\0", 8) != 0)
        return SL_EBADMSG;
    uint64_t meta = get32(p + 8), vary = get32(p + 12), skey = get32(p + 16),
             head = get32(p + 20), ntags = get32(p + 24), body = get32(p + 28);
    if (ntags > SL_OBJCODEC_MAX_TAGS)
        return SL_EBADMSG;
    size_t at = SL_OBJCODEC_HDR;
    if (n - at < 4 * ntags)
        return SL_EBADMSG;
    uint64_t total = (uint64_t)at + 4 * ntags + meta + vary + skey + head + body;
    uint32_t tl[SL_OBJCODEC_MAX_TAGS];
    for (unsigned i = 0; i < ntags; i++) {
        tl[i] = get32(p + at + 4 * i);
        total += tl[i];
    }
    if (total != n) /* every piece accounted for, nothing after (sums of 32-bit values:
                     * no overflow in 64 bits) */
        return SL_EBADMSG;
    at += 4 * ntags;
    o->meta = p + at;
    o->meta_size = meta;
    at += meta;
    o->vary = (sl_slice_t){p + at, vary};
    at += vary;
    o->skey = (sl_slice_t){p + at, skey};
    at += skey;
    o->head = (sl_slice_t){p + at, head};
    at += head;
    for (unsigned i = 0; i < ntags; i++) {
        o->tags[i] = (sl_slice_t){p + at, tl[i]};
        at += tl[i];
    }
    o->ntags = (unsigned)ntags;
    o->body = (sl_slice_t){p + at, body};
    return 0;
}
