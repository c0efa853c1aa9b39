/* objcodec.h - the byte form of a cache object in the L2 tier (Redis): what a sluice
 * instance writes and any other instance of the same version reads back.
 * Owns only the layout: a fixed header ("SLC1", a version, the caller's metadata size, the
 * lengths, little-endian), the tag lengths, then metadata, Vary names, secondary key, head,
 * tags and body. Decoding checks every length against the bytes given and never reads
 * outside them; the caller checks what the pieces mean (the head parses, the metadata size
 * is its own). Pure functions; any thread. */
#ifndef SL_OBJCODEC_H
#define SL_OBJCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

#define SL_OBJCODEC_MAX_TAGS 16
#define SL_OBJCODEC_HDR 32 /* fixed header bytes */

typedef struct sl_objcodec {
    const void *meta;
    size_t meta_size;
    sl_slice_t vary, skey, head, body;
    sl_slice_t tags[SL_OBJCODEC_MAX_TAGS];
    unsigned ntags;
} sl_objcodec_t;

/* The bytes before the body: header, tag lengths, meta, vary, skey, head, tags. */
size_t sl_objcodec_prefix_size(const sl_objcodec_t *o);

/* Write those bytes into out (cap >= sl_objcodec_prefix_size); the encoded object is them
 * followed by o->body. Returns the prefix length, or 0 (too many tags, a length over 2^32,
 * cap too small). */
size_t sl_objcodec_encode_prefix(const sl_objcodec_t *o, char *out, size_t cap);

/* Decode p[0..n) into o (slices into p). 0, or SL_EBADMSG (bad magic or version, lengths
 * that do not add up to exactly n, too many tags). */
int sl_objcodec_decode(const char *p, size_t n, sl_objcodec_t *o);

#endif
