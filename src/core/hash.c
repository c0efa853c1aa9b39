/* hash.c - the hash of keys; see hash.h. */
#include "hash.h"

#include <string.h>

static inline uint64_t read64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint64_t read32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* 64 x 64 -> 128 bit multiply folded to 64 bits: one instruction on x86-64 and arm64.
 * The high half depends on every input bit; xoring it onto the low half spreads them. */
static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* Reads 16 bytes per multiply, the tail with overlapping loads, and ends with a fold that
 * mixes in the length. A fast, well-spread hash for balancing, not a keyed one: it is the
 * same in every process and on every machine, so gateways sharing a config send a key to
 * the same server; it does not resist crafted collisions (a client choosing its key can
 * choose its server anyway). Byte order: little-endian hosts agree with each other. */
uint64_t sl_hash_seeded(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ fold_mul(seed ^ SL_HASH_K0, SL_HASH_K1);
    size_t left = n;
    while (left > 16) {
        h = fold_mul(read64(s) ^ SL_HASH_K1, read64(s + 8) ^ h);
        s += 16;
        left -= 16;
    }
    uint64_t a = 0, b = 0;
    if (left >= 8) {
        a = read64(s);
        b = read64(s + left - 8);
    } else if (left >= 4) {
        a = read32(s);
        b = read32(s + left - 4);
    } else if (left > 0) {
        a = ((uint64_t)s[0] << 16) | ((uint64_t)s[left >> 1] << 8) | s[left - 1];
    }
    h = fold_mul(a ^ SL_HASH_K2, b ^ h ^ SL_HASH_K1);
    return fold_mul(h ^ SL_HASH_K3, (uint64_t)n ^ SL_HASH_K0);
}

uint64_t sl_hash_bytes(const void *p, size_t n)
{
    return sl_hash_seeded(p, n, 0);
}
