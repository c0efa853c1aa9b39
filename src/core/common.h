/* common.h - the one error vocabulary and the byte-slice type every layer shares.
 * Header-only; includes nothing from sluice. */
#ifndef SL_COMMON_H
#define SL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Return codes: 0 (or a byte count) on success, negative SL_E* on failure. */
enum {
    SL_OK = 0,
    SL_AGAIN = -1,     /* not enough bytes yet: call again with more */
    SL_EBADMSG = -2,   /* malformed input: answer 400 and close */
    SL_ETOOBIG = -3,   /* a size bound was exceeded (431 headers, 413 body) */
    SL_ENOTSUP = -4,   /* valid but unsupported (501 transfer-coding) */
    SL_ENOMEM = -5,    /* allocation failed: fail the request, not the process */
    SL_EINVAL = -6,    /* bad argument or configuration value */
    SL_EIO = -7,       /* I/O error or peer closed */
};

/* A view into bytes owned by someone else (normally a connection's read buffer).
 * Never NUL-terminated; valid only as long as its owner's buffer is. */
typedef struct sl_slice {
    const char *p;
    size_t len;
} sl_slice_t;

#define SL_SLICE_LIT(s) ((sl_slice_t){ (s), sizeof(s) - 1 })
#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SL_UNUSED(x) ((void)(x))
#define SL_LIKELY(x) __builtin_expect(!!(x), 1)
#define SL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* HTTP methods the gateway tells apart (shared by the parser and the config loader). Any other valid token is SL_M_OTHER. */
enum sl_http_method {
    SL_M_OTHER = 0,
    SL_M_GET,
    SL_M_HEAD,
    SL_M_POST,
    SL_M_PUT,
    SL_M_DELETE,
    SL_M_PATCH,
    SL_M_OPTIONS,
    SL_M_CONNECT,
    SL_M_TRACE,
    SL_M__COUNT
};

#define SL_METHOD_BIT(m) (1u << (m))

/* The release, in --version, logs, sluice_build_info and the status page. */
#ifndef SL_VERSION
#define SL_VERSION "0.1.0"
#endif

/* Decimal digits of v written at out (at most 20 bytes); returns how many. The length
 * first (from the bit length, corrected by one comparison), then two digits per step from
 * a table, written in place from the end: numbers are formatted on the request path
 * (lengths, RateLimit fields), where printf would cost more than the rest of the work.
 * (An 8-digits-at-once SWAR conversion was measured: more instructions for the 1- to
 * 10-digit numbers written here.) */
static inline size_t sl_u64_dec(char *out, uint64_t v)
{
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324"
                                   "25262728293031323334353637383940414243444546474849"
                                   "50515253545556575859606162636465666768697071727374"
                                   "75767778798081828384858687888990919293949596979899";
    static const uint64_t pow10[20] = {1ull,
                                       10ull,
                                       100ull,
                                       1000ull,
                                       10000ull,
                                       100000ull,
                                       1000000ull,
                                       10000000ull,
                                       100000000ull,
                                       1000000000ull,
                                       10000000000ull,
                                       100000000000ull,
                                       1000000000000ull,
                                       10000000000000ull,
                                       100000000000000ull,
                                       1000000000000000ull,
                                       10000000000000000ull,
                                       100000000000000000ull,
                                       1000000000000000000ull,
                                       10000000000000000000ull};
    /* floor(log10(2) x bits) is the digit count of 2^(bits-1), at most one short. */
    unsigned bits = 64u - (unsigned)__builtin_clzll(v | 1);
    size_t n = (bits * 1233u) >> 12;
    n += (v | 1) >= pow10[n]; /* v | 1: 0 has one digit; powers of ten above 1 are even */
    char *q = out + n;
    while (v >= 10000) { /* four digits a step: one 64-bit division, the rest in 32 bits */
        uint32_t r4 = (uint32_t)(v % 10000), hi = r4 / 100;
        v /= 10000;
        q -= 4;
        memcpy(q, pairs + 2 * hi, 2);
        memcpy(q + 2, pairs + 2 * (r4 - hi * 100), 2);
    }
    if (v >= 100) {
        uint32_t lo = (uint32_t)(v % 100);
        v /= 100;
        q -= 2;
        memcpy(q, pairs + 2 * lo, 2);
    }
    if (v >= 10)
        memcpy(q - 2, pairs + 2 * v, 2);
    else
        q[-1] = (char)('0' + v);
    return n;
}

#endif
