/* http1.c - HTTP/1.1 message parsing (RFC 9112), strict and zero-copy.
 * Owns the request/response head parsers, the chunked body decoder and header classification.
 * Never allocates, never does I/O, never writes to or copies the bytes it parses. */
#include "http1.h"

#include <limits.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define HAVE_SSE2 1
#endif

/* Byte classes, one bit each, looked up in a single 256-entry table (hot loops do one load
 * and one test per byte). Generated from the RFC 9110/9112/3986 grammars. */
#define C_TCHAR 0x01  /* tchar: header names, methods, list tokens */
#define C_FVAL 0x02   /* field-value/reason byte: HTAB, SP, VCHAR, obs-text */
#define C_TARGET 0x04 /* request-target byte: VCHAR except '#' */
#define C_HOST 0x08   /* authority byte: unreserved, pct, sub-delims, ':', '[', ']' */
#define C_QDTEXT 0x10 /* quoted-string text: HTAB, SP, VCHAR except '"' and '\\', obs-text */
#define C_WS 0x20     /* SP, HTAB (OWS/BWS) */
#define C_HEX 0x40    /* HEXDIG */

static const uint8_t cls[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x32, 0x1f, 0x06, 0x13, 0x1f, 0x1f, 0x1f, 0x1f, 0x1e, 0x1e, 0x1f, 0x1f, 0x1e, 0x1f, 0x1f, 0x16,
    0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x1e, 0x1e, 0x16, 0x1e, 0x16, 0x16,
    0x16, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1e, 0x06, 0x1e, 0x17, 0x1f,
    0x17, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x16, 0x17, 0x16, 0x1f, 0x00,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
    0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0x12,
};

#define IS(c, k) (cls[(uint8_t)(c)] & (k))
#define IS_DIGIT(c) ((unsigned)((uint8_t)(c) - '0') < 10u)

#ifdef HAVE_SSE2
/* 16-byte classifiers for the hot scans (names, values, targets, the end-of-head search).
 * Each returns the index of the first byte of p[0..16) outside its class, or 16; the
 * callers use them only where 16 bytes are known to be inside the head, and fall back to
 * the table loop for the tail. x86-64 always has SSE2; other targets use the tables. */

static inline __m128i sse_in_range(__m128i v, uint8_t lo, uint8_t hi)
{
    __m128i x = _mm_sub_epi8(v, _mm_set1_epi8((char)lo));
    return _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8((char)(hi - lo))), x);
}

static inline unsigned sse_first_zero(__m128i ok)
{
    unsigned m = ~(unsigned)_mm_movemask_epi8(ok) & 0xFFFFu;
    return m ? (unsigned)__builtin_ctz(m) : 16u;
}

/* Run of the bytes nearly every name and method is made of (ALPHA, DIGIT, '-'); the caller
 * finishes with the table, so the other tchars are still accepted, just more slowly. */
static inline unsigned sse_tchar_run(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i ok = sse_in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z');
    ok = _mm_or_si128(ok, sse_in_range(v, '0', '9'));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('-')));
    return sse_first_zero(ok);
}

static inline unsigned sse_fval_run(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i ctl = sse_in_range(v, 0x00, 0x1F);
    ctl = _mm_andnot_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\t')), ctl);
    __m128i bad = _mm_or_si128(ctl, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7F)));
    return sse_first_zero(_mm_xor_si128(bad, _mm_set1_epi8(-1)));
}

static inline unsigned sse_target_run(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i ok = sse_in_range(v, 0x21, 0x7E);
    return sse_first_zero(_mm_andnot_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('#')), ok));
}

#endif

/* Scanners: the first byte at or after p outside the class. They need no bound besides e
 * for the 16-byte steps because every head ends in LF, which is in none of the classes. */
#ifdef HAVE_SSE2
/* exact: the 16-byte classifier matches the table exactly, so its stop byte is final;
 * otherwise (names) it covers only the common bytes and the table finishes the run. */
#define SCANNER(fn, sse_fn, k, exact)                                                              \
    static inline const unsigned char *fn(const unsigned char *p, const unsigned char *e)          \
    {                                                                                              \
        while (e - p >= 16) {                                                                      \
            unsigned run = sse_fn(p);                                                              \
            p += run;                                                                              \
            if (run < 16) {                                                                        \
                if (exact)                                                                         \
                    return p;                                                                      \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
        while (IS(*p, k))                                                                          \
            p++;                                                                                   \
        return p;                                                                                  \
    }
#else
#define SCANNER(fn, sse_fn, k, exact)                                                              \
    static inline const unsigned char *fn(const unsigned char *p, const unsigned char *e)          \
    {                                                                                              \
        (void)e;                                                                                   \
        while (IS(*p, k))                                                                          \
            p++;                                                                                   \
        return p;                                                                                  \
    }
#endif
SCANNER(scan_tchar, sse_tchar_run, C_TCHAR, 0)
SCANNER(scan_fval, sse_fval_run, C_FVAL, 1)
SCANNER(scan_target, sse_target_run, C_TARGET, 1)

/* RFC 9112 §2.2 asks servers to skip "at least one" empty line before a request-line
 * (clients used to send a stray CRLF after a POST body); more than this many is garbage. */
#define MAX_LEADING_CRLF 8
#define CL_MAX ((uint64_t)1 << 62) /* largest Content-Length accepted */
#define CK_LINE_MAX 4096u          /* chunk-size line (with extensions) */
#define CK_TRAILER_MAX 8192u       /* whole trailer section */

/* Header ids that are hop-by-hop by definition (RFC 9110 §7.6.1, plus the legacy ones). */
#define HOP_MASK                                                                                   \
    ((1u << SL_H_CONNECTION) | (1u << SL_H_KEEP_ALIVE) | (1u << SL_H_PROXY_CONNECTION) |           \
     (1u << SL_H_TE) | (1u << SL_H_TRAILER) | (1u << SL_H_TRANSFER_ENCODING) |                     \
     (1u << SL_H_UPGRADE))
/* Header ids whose value the parser interprets while it walks the fields. */
#define ACT_MASK                                                                                   \
    ((1u << SL_H_HOST) | (1u << SL_H_CONTENT_LENGTH) | (1u << SL_H_TRANSFER_ENCODING) |            \
     (1u << SL_H_CONNECTION) | (1u << SL_H_UPGRADE) | (1u << SL_H_EXPECT))

static inline uint64_t load64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t load32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Case-insensitive equality of a[0..n) with the lowercase literal lit (strlen(lit) == n).
 * OR-ing 0x20 folds case exactly for bytes that are VCHAR/obs-text/HTAB/SP: among those, only
 * letters fold onto letters, and lit holds only letters, digits, '-', ':' and '/', which
 * no other such byte folds onto. Callers pass only such bytes (tokens, targets, values). */
static inline int name_eq(const char *a, const char *lit, size_t n)
{
    if (n >= 8) {
        const uint64_t m = 0x2020202020202020ull;
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            if ((load64(a + i) | m) != load64(lit + i))
                return 0;
        return i == n || (load64(a + n - 8) | m) == load64(lit + n - 8);
    }
    if (n >= 4) {
        const uint32_t m = 0x20202020u;
        return (load32(a) | m) == load32(lit) && (load32(a + n - 4) | m) == load32(lit + n - 4);
    }
    for (size_t i = 0; i < n; i++)
        if (((uint8_t)a[i] | 0x20) != (uint8_t)lit[i])
            return 0;
    return 1;
}

static inline int match_id(const char *name, size_t len, const char *lit, int id)
{
    return name_eq(name, lit, len) ? id : SL_H_OTHER;
}

/* Dispatch on length first, then on the first letter, so a name costs at most one compare.
 * name must be a token (see name_eq); every name the parser stores is one. */
static inline int header_id(const char *name, size_t len)
{
    if (len < 2 || len > 19)
        return SL_H_OTHER;
    unsigned c0 = (uint8_t)name[0] | 0x20u;
    switch (len) {
    case 2:
        return match_id(name, len, "te", SL_H_TE);
    case 3:
        return match_id(name, len, "via", SL_H_VIA);
    case 4:
        if (c0 == 'h')
            return match_id(name, len, "host", SL_H_HOST);
        if (c0 == 'd')
            return match_id(name, len, "date", SL_H_DATE);
        break;
    case 6:
        if (c0 == 'e')
            return match_id(name, len, "expect", SL_H_EXPECT);
        if (c0 == 's')
            return match_id(name, len, "server", SL_H_SERVER);
        if (c0 == 'c')
            return match_id(name, len, "cookie", SL_H_COOKIE);
        break;
    case 7:
        if (c0 == 'u')
            return match_id(name, len, "upgrade", SL_H_UPGRADE);
        if (c0 == 't')
            return match_id(name, len, "trailer", SL_H_TRAILER);
        break;
    case 9:
        return match_id(name, len, "x-real-ip", SL_H_X_REAL_IP);
    case 10:
        if (c0 == 'c')
            return match_id(name, len, "connection", SL_H_CONNECTION);
        if (c0 == 'k')
            return match_id(name, len, "keep-alive", SL_H_KEEP_ALIVE);
        if (c0 == 's')
            return match_id(name, len, "set-cookie", SL_H_SET_COOKIE);
        break;
    case 12:
        if (c0 == 'c')
            return match_id(name, len, "content-type", SL_H_CONTENT_TYPE);
        if (c0 == 'x')
            return match_id(name, len, "x-request-id", SL_H_X_REQUEST_ID);
        break;
    case 13:
        if (c0 == 'a')
            return match_id(name, len, "authorization", SL_H_AUTHORIZATION);
        if (c0 == 'c')
            return match_id(name, len, "cache-control", SL_H_CACHE_CONTROL);
        break;
    case 14:
        return match_id(name, len, "content-length", SL_H_CONTENT_LENGTH);
    case 15:
        return match_id(name, len, "x-forwarded-for", SL_H_X_FORWARDED_FOR);
    case 16:
        return match_id(name, len, "proxy-connection", SL_H_PROXY_CONNECTION);
    case 17:
        if (c0 == 't')
            return match_id(name, len, "transfer-encoding", SL_H_TRANSFER_ENCODING);
        if (c0 == 'x')
            return match_id(name, len, "x-forwarded-proto", SL_H_X_FORWARDED_PROTO);
        break;
    case 18:
        return match_id(name, len, "proxy-authenticate", SL_H_PROXY_AUTHENTICATE);
    case 19:
        return match_id(name, len, "proxy-authorization", SL_H_PROXY_AUTHORIZATION);
    default:
        break;
    }
    return SL_H_OTHER;
}

int sl_http1_header_id(const char *name, size_t len)
{
    return header_id(name, len);
}

int sl_http1_method_id(const char *m, size_t len)
{
    switch (len) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return SL_M_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return SL_M_PUT;
        break;
    case 4:
        if (memcmp(m, "POST", 4) == 0)
            return SL_M_POST;
        if (memcmp(m, "HEAD", 4) == 0)
            return SL_M_HEAD;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0)
            return SL_M_PATCH;
        if (memcmp(m, "TRACE", 5) == 0)
            return SL_M_TRACE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return SL_M_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return SL_M_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0)
            return SL_M_CONNECT;
        break;
    default:
        break;
    }
    return SL_M_OTHER;
}

const sl_http_header_t *sl_http1_find(const sl_http_header_t *h, unsigned n, int id)
{
    for (unsigned i = 0; i < n; i++)
        if (h[i].id == id)
            return &h[i];
    return NULL;
}

const char *sl_http1_reason(int status)
{
    /* clang-format off */
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
    /* clang-format on */
}

static inline uint8_t ascii_lower(uint8_t c)
{
    return (uint8_t)(c - 'A') < 26u ? (uint8_t)(c | 0x20) : c;
}

/* Exact for any bytes (unlike name_eq), as list_has takes arbitrary caller input. */
static int ieq_any(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((uint8_t)a[i]) != ascii_lower((uint8_t)b[i]))
            return 0;
    return 1;
}

int sl_http1_list_has(const char *v, size_t vlen, const char *tok, size_t toklen)
{
    const char *p = v, *e = v + vlen;
    while (p < e) {
        while (p < e && (*p == ',' || *p == ' ' || *p == '\t'))
            p++;
        const char *s = p;
        while (p < e && *p != ',')
            p++;
        const char *t = p;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - s) == toklen && toklen > 0 && ieq_any(s, tok, toklen))
            return 1;
    }
    return 0;
}

int sl_http1_request_body(const sl_http_request_t *req)
{
    if (req->flags & SL_HF_CHUNKED)
        return SL_BODY_CHUNKED;
    return req->content_length > 0 ? SL_BODY_LENGTH : SL_BODY_NONE;
}

int sl_http1_response_body(const sl_http_response_t *resp, int req_method)
{
    unsigned s = resp->status;
    if (req_method == SL_M_HEAD || s < 200 || s == 204 || s == 304)
        return SL_BODY_NONE;
    /* RFC 9112 §6.3 (2): a 2xx to CONNECT turns the connection into a tunnel. */
    if (req_method == SL_M_CONNECT && s < 300)
        return SL_BODY_NONE;
    if (resp->flags & SL_HF_CHUNKED)
        return SL_BODY_CHUNKED;
    if (resp->flags & SL_HF_TE_OTHER)
        return SL_BODY_EOF;
    if (resp->flags & SL_HF_CONTENT_LENGTH)
        return resp->content_length > 0 ? SL_BODY_LENGTH : SL_BODY_NONE;
    return SL_BODY_EOF;
}

/* ---- head framing ---------------------------------------------------------------------- */

/* Skips the empty lines allowed before a request-line; *start is where that line begins.
 * A lone LF or a CR not followed by LF there fails at once rather than waiting for a head. */
static int skip_empty_lines(const char *buf, size_t len, size_t max_head, size_t *start)
{
    size_t off = 0;
    while (off < len && (buf[off] == '\r' || buf[off] == '\n')) {
        if (buf[off] == '\n' || off >= 2 * MAX_LEADING_CRLF)
            return SL_EBADMSG;
        if (off + 1 == len)
            return len >= max_head ? SL_ETOOBIG : SL_AGAIN;
        if (buf[off + 1] != '\n')
            return SL_EBADMSG;
        off += 2;
    }
    *start = off;
    return SL_OK;
}

#ifdef HAVE_SSE2
/* LF mask of the 32 bytes at blk (bit j = blk[j] is LF). */
static inline uint32_t lf_mask32(const char *blk)
{
    __m128i a = _mm_loadu_si128((const __m128i *)(const void *)blk);
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16));
    __m128i n = _mm_set1_epi8('\n');
    return (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, n)) |
           (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(b, n)) << 16;
}
#endif

/* Finds the end of the head starting at start: the first LF that ends an empty line, so
 * "\r\n\r\n" but also the malformed "\n\n" and "\n\r\n" (those heads then fail in the parser
 * instead of stalling until max_head). The search looks backwards from each LF, so it can
 * resume exactly where the previous call stopped (*scan) and the total cost is O(len).
 * Returns SL_OK with *end one past the final LF, or SL_AGAIN / SL_ETOOBIG. */
static int find_head_end(const char *buf, size_t len, size_t max_head, size_t start, size_t *scan,
                         size_t *end)
{
    if (max_head > INT_MAX)
        max_head = INT_MAX; /* the head length is returned as an int */
    size_t lim = len < max_head ? len : max_head;
    size_t i = *scan > start ? *scan : start;
    /* Fast path for the usual read that holds exactly one head: the buffer ends in an
     * empty line, so a terminator exists and the parser's strict line walk will stop at
     * the first one (an earlier "\n\n" or "\n\r\n" would be a bare LF it rejects first).
     * *end is then only an upper bound; the parser reports the real end. */
    if (len <= max_head && len - start >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0) {
        *end = len;
        return SL_OK;
    }
#ifdef HAVE_SSE2
    if (i < lim && lim >= 32) {
        /* 32 bytes a step, LFs only: an LF one or two bytes after another LF is a candidate
         * (in a well-formed head that happens only at the end), checked against the byte
         * before it. In LF, bit j+2 stands for new byte j and bits 0-1 for the two bytes
         * before it (only those at or after start), so a terminator split across steps or
         * calls is still seen. A last step shorter than 32 loads the 32 bytes ending at lim
         * and shifts out the ones already seen. */
        uint64_t lf_h = 0;
        if (i >= start + 1)
            lf_h |= (uint64_t)(buf[i - 1] == '\n') << 1;
        if (i >= start + 2)
            lf_h |= (uint64_t)(buf[i - 2] == '\n');
        do {
            size_t n = lim - i;
            const char *blk = buf + i;
            unsigned skip = 0;
            if (n >= 32) {
                n = 32;
            } else {
                blk = buf + lim - 32;
                skip = (unsigned)(32 - n);
            }
            uint64_t LF = ((uint64_t)(lf_mask32(blk) >> skip) << 2) | lf_h;
            uint64_t cand = (LF & ((LF << 1) | (LF << 2))) >> 2;
            while (SL_UNLIKELY(cand != 0)) {
                size_t k = i + (size_t)__builtin_ctzll(cand);
                /* LF at k-1 ("\n\n"), or LF at k-2 and CR at k-1 ("\n\r\n") */
                if (buf[k - 1] == '\n' || buf[k - 1] == '\r') {
                    *end = k + 1;
                    return SL_OK;
                }
                cand &= cand - 1;
            }
            lf_h = (LF >> n) & 3u;
            i += n;
        } while (i < lim);
    }
#endif
    while (i < lim) {
        const char *lf = memchr(buf + i, '\n', lim - i);
        if (lf == NULL)
            break;
        size_t k = (size_t)(lf - buf);
        if ((k >= start + 1 && lf[-1] == '\n') ||
            (k >= start + 2 && lf[-1] == '\r' && lf[-2] == '\n')) {
            *end = k + 1;
            return SL_OK;
        }
        i = k + 1;
    }
    if (lim > *scan)
        *scan = lim;
    return len >= max_head ? SL_ETOOBIG : SL_AGAIN;
}

/* "HTTP/1.1" at p[0..8): 10 or 11, SL_EVERSION for another major digit, else SL_EBADMSG. */
static inline int parse_version(const unsigned char *p)
{
    if (SL_LIKELY(memcmp(p, "HTTP/1.1", 8) == 0))
        return 11;
    if (memcmp(p, "HTTP/", 5) != 0 || !IS_DIGIT(p[5]) || p[6] != '.' || !IS_DIGIT(p[7]))
        return SL_EBADMSG;
    if (p[5] != '1')
        return SL_EVERSION;
    return p[7] == '0' ? 10 : 11;
}

/* ---- header fields --------------------------------------------------------------------- */

#define TE_SEEN 1u
#define TE_CHUNKED 2u      /* chunked appeared */
#define TE_LAST_CHUNKED 4u /* ... and is the final coding so far */
#define TE_OTHER 8u        /* some other coding appeared */

/* What the field walk learnt about the message, for the request/response specific checks. */
struct fields {
    uint32_t flags;
    unsigned n;
    unsigned host_count;
    unsigned te;
    int is_req;
    int conn_named; /* a Connection header names a field: second pass needed */
    int64_t cl;
    const unsigned char *host;
    size_t host_len;
    const unsigned char *end; /* one past the empty line that ends the head */
};

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *e)
{
    while (p < e && IS(*p, C_WS))
        p++;
    return p;
}

/* quoted-string at p (*p == '"'); returns the byte after the closing quote, or NULL. */
static const unsigned char *skip_quoted(const unsigned char *p, const unsigned char *e)
{
    for (p++; p < e; p++) {
        if (*p == '"')
            return p + 1;
        if (*p == '\\') {
            if (++p == e || !IS(*p, C_FVAL))
                return NULL;
        } else if (!IS(*p, C_QDTEXT)) {
            return NULL;
        }
    }
    return NULL;
}

/* *( OWS ";" OWS token BWS "=" BWS ( token / quoted-string ) ) at p (*p == ';');
 * returns where the parameters end, or NULL when malformed. */
static const unsigned char *skip_params(const unsigned char *p, const unsigned char *e)
{
    while (p < e && *p == ';') {
        p = skip_ws(p + 1, e);
        const unsigned char *n = p;
        while (p < e && IS(*p, C_TCHAR))
            p++;
        if (p == n)
            return NULL;
        p = skip_ws(p, e);
        if (p == e || *p != '=')
            return NULL;
        p = skip_ws(p + 1, e);
        if (p < e && *p == '"') {
            p = skip_quoted(p, e);
            if (p == NULL)
                return NULL;
        } else {
            n = p;
            while (p < e && IS(*p, C_TCHAR))
                p++;
            if (p == n)
                return NULL;
        }
        p = skip_ws(p, e);
    }
    return p;
}

/* Transfer-Encoding: #( token *( OWS ";" OWS transfer-parameter ) ). Records which codings
 * appear in which order; the verdict waits until all fields are seen (the list may be split
 * over several fields). chunked twice, or chunked with parameters, is malformed. */
static int te_scan(const unsigned char *p, const unsigned char *e, struct fields *f)
{
    f->te |= TE_SEEN;
    for (;;) {
        while (p < e && (*p == ',' || IS(*p, C_WS)))
            p++;
        if (p == e)
            return SL_OK;
        const unsigned char *tok = p;
        while (p < e && IS(*p, C_TCHAR))
            p++;
        size_t tlen = (size_t)(p - tok);
        if (tlen == 0)
            return SL_EBADMSG;
        p = skip_ws(p, e);
        int params = 0;
        if (p < e && *p == ';') {
            params = 1;
            p = skip_params(p, e);
            if (p == NULL)
                return SL_EBADMSG;
        }
        if (p < e && *p != ',')
            return SL_EBADMSG;
        if (tlen == 7 && name_eq((const char *)tok, "chunked", 7)) {
            if (params || (f->te & TE_CHUNKED))
                return SL_EBADMSG;
            f->te |= TE_CHUNKED | TE_LAST_CHUNKED;
        } else {
            f->te = (f->te & ~TE_LAST_CHUNKED) | TE_OTHER;
        }
    }
}

/* Content-Length: 1*DIGIT, or a list of identical values ("5, 5", RFC 9110 §8.6). Every
 * value, in this field and earlier ones, must be the same; empty elements are malformed. */
static int cl_scan(const unsigned char *p, const unsigned char *e, struct fields *f)
{
    for (;;) {
        if (p == e || !IS_DIGIT(*p))
            return SL_EBADMSG;
        uint64_t n = 0;
        do {
            unsigned d = (unsigned)(*p - '0');
            if (SL_UNLIKELY(n >= CL_MAX / 10) && n > (CL_MAX - d) / 10)
                return SL_EBADMSG;
            n = n * 10 + d;
            p++;
        } while (p < e && IS_DIGIT(*p));
        if (f->cl >= 0 && (uint64_t)f->cl != n)
            return SL_EBADMSG;
        f->cl = (int64_t)n;
        p = skip_ws(p, e);
        if (p == e)
            return SL_OK;
        if (*p != ',')
            return SL_EBADMSG;
        p = skip_ws(p + 1, e);
    }
}

/* Connection: #token. close / keep-alive / upgrade become flags; any other token names a
 * field to treat as hop-by-hop. Naming Host or Content-Length is refused: a proxy that
 * dropped them would forward a message whose routing or framing the next hop reads
 * differently (a request-smuggling lever), and no legitimate sender does it. */
static int conn_scan(const unsigned char *p, const unsigned char *e, struct fields *f)
{
    /* the two values nearly every message carries, without the list walk */
    if (e - p == 10 && name_eq((const char *)p, "keep-alive", 10)) {
        f->flags |= SL_HF_CONN_KEEPALIVE;
        return SL_OK;
    }
    if (e - p == 5 && name_eq((const char *)p, "close", 5)) {
        f->flags |= SL_HF_CONN_CLOSE;
        return SL_OK;
    }
    for (;;) {
        while (p < e && (*p == ',' || IS(*p, C_WS)))
            p++;
        if (p == e)
            return SL_OK;
        const char *tok = (const char *)p;
        while (p < e && IS(*p, C_TCHAR))
            p++;
        size_t tlen = (size_t)((const char *)p - tok);
        if (tlen == 0)
            return SL_EBADMSG;
        p = skip_ws(p, e);
        if (p < e && *p != ',')
            return SL_EBADMSG;
        if (tlen == 5 && name_eq(tok, "close", 5))
            f->flags |= SL_HF_CONN_CLOSE;
        else if (tlen == 10 && name_eq(tok, "keep-alive", 10))
            f->flags |= SL_HF_CONN_KEEPALIVE;
        else if (tlen == 7 && name_eq(tok, "upgrade", 7))
            f->flags |= SL_HF_CONN_UPGRADE;
        else if ((tlen == 4 && name_eq(tok, "host", 4)) ||
                 (tlen == 14 && name_eq(tok, "content-length", 14)))
            return SL_EBADMSG;
        else
            f->conn_named = 1;
    }
}

/* uri-host [ ":" port ] bytes only (no userinfo '@', no '/', '?', '#', whitespace). */
static int host_chars_ok(const unsigned char *p, const unsigned char *e)
{
    while (p < e && IS(*p, C_HOST))
        p++;
    return p == e;
}

static int field_action(unsigned id, const unsigned char *v, const unsigned char *ve,
                        struct fields *f)
{
    switch (id) {
    case SL_H_HOST:
        f->host_count++;
        f->host = v;
        f->host_len = (size_t)(ve - v);
        if (f->is_req && !host_chars_ok(v, ve))
            return SL_EBADMSG;
        return SL_OK;
    case SL_H_CONTENT_LENGTH:
        return cl_scan(v, ve, f);
    case SL_H_TRANSFER_ENCODING:
        return te_scan(v, ve, f);
    case SL_H_CONNECTION:
        return conn_scan(v, ve, f);
    case SL_H_UPGRADE:
        f->flags |= SL_HF_UPGRADE;
        return SL_OK;
    case SL_H_EXPECT:
        if (ve - v == 12 && name_eq((const char *)v, "100-continue", 12))
            f->flags |= SL_HF_EXPECT_CONTINUE;
        return SL_OK;
    default:
        return SL_OK;
    }
}

/* Walks the field lines from p up to and including the first empty line, which lies at or
 * before e (f->end is set past it). The bytes up to e end in LF (find_head_end), and no byte
 * class below includes LF, so every scan stops before e without bounds checks; a CR is never
 * the last byte, so reading the byte after one is safe too. */
static int parse_fields(const unsigned char *p, const unsigned char *e, sl_http_header_t *hv,
                        struct fields *f)
{
    unsigned n = 0;
    for (;;) {
        const unsigned char *name = p;
        p = scan_tchar(p, e);
        if (SL_UNLIKELY(*p != ':' || p == name)) {
            /* the empty line; anything else here is a line starting with whitespace
             * (obs-fold), a missing colon, whitespace before it, or a stray CR/LF/CTL */
            if (p == name && *p == '\r' && p[1] == '\n')
                break;
            return SL_EBADMSG;
        }
        size_t nlen = (size_t)(p - name);
        p++;
        while (IS(*p, C_WS))
            p++;
        const unsigned char *v = p;
        p = scan_fval(p, e);
        if (SL_UNLIKELY(*p != '\r' || p[1] != '\n'))
            return SL_EBADMSG;
        const unsigned char *ve = p;
        while (ve > v && IS(ve[-1], C_WS))
            ve--;
        p += 2;
        if (SL_UNLIKELY(n == SL_HTTP_MAX_HEADERS || nlen > UINT16_MAX))
            return SL_ETOOBIG;
        unsigned id = (unsigned)header_id((const char *)name, nlen);
        sl_http_header_t *h = &hv[n++];
        h->name = (const char *)name;
        h->value = (const char *)v;
        h->value_len = (uint32_t)(ve - v);
        h->name_len = (uint16_t)nlen;
        h->id = (uint8_t)id;
        h->hop = (uint8_t)((HOP_MASK >> id) & 1u);
        if ((ACT_MASK >> id) & 1u) {
            int rc = field_action(id, v, ve, f);
            if (rc != SL_OK)
                return rc;
        }
    }
    f->n = n;
    f->end = p + 2;
    if (f->conn_named) {
        /* Second pass, only when some Connection header names fields. */
        for (unsigned i = 0; i < n; i++) {
            if (hv[i].id != SL_H_CONNECTION)
                continue;
            for (unsigned j = 0; j < n; j++)
                if (!hv[j].hop &&
                    sl_http1_list_has(hv[i].value, hv[i].value_len, hv[j].name, hv[j].name_len))
                    hv[j].hop = 1;
        }
    }
    return SL_OK;
}

/* Transfer-Encoding / Content-Length verdict shared by both directions (RFC 9112 §6.1). */
static int framing_check(struct fields *f, int version)
{
    if (f->te & TE_SEEN) {
        /* Both framings at once is the classic smuggling vector; TE in 1.0 was never
         * defined, so a 1.0 message carrying it is treated as faulty framing. */
        if (f->cl >= 0 || version == 10)
            return SL_EBADMSG;
        if (f->te & TE_LAST_CHUNKED) {
            if (f->is_req && (f->te & TE_OTHER))
                return SL_ENOTSUP;
            f->flags |= SL_HF_CHUNKED;
        } else {
            if (f->is_req)
                return SL_EBADMSG;
            f->flags |= SL_HF_TE_OTHER;
        }
    } else if (f->cl >= 0) {
        f->flags |= SL_HF_CONTENT_LENGTH;
    }
    return SL_OK;
}

/* ---- request --------------------------------------------------------------------------- */

/* authority-form (CONNECT only): uri-host ":" port, port 1..5 digits. */
static int authority_form_ok(const unsigned char *t, const unsigned char *te)
{
    if (!host_chars_ok(t, te))
        return 0;
    const unsigned char *c = te;
    while (c > t && IS_DIGIT(c[-1]))
        c--;
    return te - c >= 1 && te - c <= 5 && c - t >= 2 && c[-1] == ':';
}

static int parse_target(sl_http_request_t *req, const unsigned char *t, const unsigned char *te)
{
    size_t tl = (size_t)(te - t);
    const unsigned char *q;
    req->target = (sl_slice_t){(const char *)t, tl};
    req->query = (sl_slice_t){NULL, 0};
    req->host = (sl_slice_t){NULL, 0};
    if (SL_LIKELY(*t == '/')) {
        if (req->method_id == SL_M_CONNECT)
            return SL_EBADMSG;
        q = memchr(t, '?', tl);
        if (q == NULL) {
            req->path = req->target;
            return SL_OK;
        }
        req->path = (sl_slice_t){(const char *)t, (size_t)(q - t)};
        req->query = (sl_slice_t){(const char *)q + 1, (size_t)(te - q - 1)};
        return SL_OK;
    }
    if (*t == '*') {
        if (tl != 1 || req->method_id != SL_M_OPTIONS)
            return SL_EBADMSG;
        req->path = req->target;
        return SL_OK;
    }
    if (req->method_id == SL_M_CONNECT) {
        if (!authority_form_ok(t, te))
            return SL_EBADMSG;
        req->path = (sl_slice_t){NULL, 0};
        return SL_OK;
    }
    size_t skip;
    if (tl >= 7 && name_eq((const char *)t, "http://", 7))
        skip = 7;
    else if (tl >= 8 && name_eq((const char *)t, "https://", 8))
        skip = 8;
    else
        return SL_EBADMSG;
    const unsigned char *a = t + skip, *ae = a;
    while (ae < te && *ae != '/' && *ae != '?')
        ae++;
    if (ae == a || !host_chars_ok(a, ae))
        return SL_EBADMSG; /* empty host, userinfo, or junk in the authority */
    req->host = (sl_slice_t){(const char *)a, (size_t)(ae - a)};
    q = memchr(ae, '?', (size_t)(te - ae));
    if (q == ae || ae == te)
        req->path = (sl_slice_t){(const char *)a - 1, 1}; /* the last '/' of "//": path "/" */
    else
        req->path = (sl_slice_t){(const char *)ae, (size_t)((q ? q : te) - ae)};
    if (q != NULL)
        req->query = (sl_slice_t){(const char *)q + 1, (size_t)(te - q - 1)};
    return SL_OK;
}

int sl_http1_parse_request(const char *buf, size_t len, size_t max_head, size_t *scan,
                           sl_http_request_t *req)
{
    size_t start, end;
    int rc = skip_empty_lines(buf, len, max_head, &start);
    if (rc != SL_OK)
        return rc;
    rc = find_head_end(buf, len, max_head, start, scan, &end);
    if (rc != SL_OK)
        return rc;
    const unsigned char *p = (const unsigned char *)buf + start;
    const unsigned char *e = (const unsigned char *)buf + end;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    const unsigned char *m = p;
    p = scan_tchar(p, e);
    if (p == m || *p != ' ')
        return SL_EBADMSG;
    req->method = (sl_slice_t){(const char *)m, (size_t)(p - m)};
    req->method_id = (uint8_t)sl_http1_method_id(req->method.p, req->method.len);
    const unsigned char *t = ++p;
    p = scan_target(p, e);
    if (p == t || *p != ' ')
        return SL_EBADMSG;
    const unsigned char *te = p++;
    if (e - p < 10 || p[8] != '\r' || p[9] != '\n')
        return SL_EBADMSG;
    rc = parse_version(p); /* after the CRLF check, as in the status-line */
    if (rc < 0)
        return rc;
    req->version = (uint8_t)rc;
    p += 10;
    rc = parse_target(req, t, te);
    if (rc != SL_OK)
        return rc;

    struct fields f = {.cl = -1, .is_req = 1};
    rc = parse_fields(p, e, req->headers, &f);
    if (rc != SL_OK)
        return rc;
    /* RFC 9112 §3.2: a 1.1 request has exactly one Host; two are never acceptable. */
    if (f.host_count > 1 || (f.host_count == 0 && req->version == 11))
        return SL_EBADMSG;
    rc = framing_check(&f, req->version);
    if (rc != SL_OK)
        return rc;
    if (req->host.p == NULL && f.host != NULL)
        req->host = (sl_slice_t){(const char *)f.host, f.host_len};
    if (req->version == 10)
        f.flags &= ~(uint32_t)SL_HF_EXPECT_CONTINUE; /* RFC 9110 §10.1.1: ignored in 1.0 */
    req->nheaders = (uint16_t)f.n;
    req->flags = f.flags;
    req->content_length = f.cl;
    return (int)(f.end - (const unsigned char *)buf);
}

/* ---- response -------------------------------------------------------------------------- */

int sl_http1_parse_response(const char *buf, size_t len, size_t max_head, size_t *scan,
                            sl_http_response_t *resp)
{
    size_t end;
    int rc = find_head_end(buf, len, max_head, 0, scan, &end);
    if (rc != SL_OK)
        return rc;
    const unsigned char *p = (const unsigned char *)buf;
    const unsigned char *e = p + end;

    /* status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ] CRLF; the SP before an
     * empty reason is often omitted in practice, so "HTTP/1.1 200\r\n" is accepted.
     * The version is judged last, so that a malformed line is always SL_EBADMSG, whether
     * e is the exact end of the head or the fast path's upper bound (see find_head_end). */
    if (e - p < 14)
        return SL_EBADMSG;
    if (p[8] != ' ' || !IS_DIGIT(p[9]) || !IS_DIGIT(p[10]) || !IS_DIGIT(p[11]))
        return SL_EBADMSG;
    unsigned status = (unsigned)(p[9] - '0') * 100 + (unsigned)(p[10] - '0') * 10 + (p[11] - '0');
    if (status < 100 || status > 599)
        return SL_EBADMSG;
    const unsigned char *r = p + 12;
    if (*r == ' ') {
        r++;
        p = scan_fval(r, e);
    } else {
        p = r;
    }
    if (p[0] != '\r' || p[1] != '\n')
        return SL_EBADMSG;
    rc = parse_version((const unsigned char *)buf);
    if (rc < 0)
        return rc;
    resp->version = (uint8_t)rc;
    resp->status = (uint16_t)status;
    resp->reason = (sl_slice_t){(const char *)r, (size_t)(p - r)};
    p += 2;

    struct fields f = {.cl = -1, .is_req = 0};
    rc = parse_fields(p, e, resp->headers, &f);
    if (rc != SL_OK)
        return rc;
    rc = framing_check(&f, resp->version);
    if (rc != SL_OK)
        return rc;
    resp->pad = 0;
    resp->nheaders = (uint16_t)f.n;
    resp->flags = f.flags;
    resp->content_length = f.cl;
    return (int)(f.end - (const unsigned char *)buf);
}

/* ---- chunked body ---------------------------------------------------------------------- */

/* Decoder states. Everything up to CK_SIZE_LF belongs to the chunk-size line (bounded by
 * CK_LINE_MAX); CK_TRL_* belong to the trailer section (bounded by CK_TRAILER_MAX). */
enum {
    CK_SIZE = 0,    /* hex digits of chunk-size */
    CK_SIZE_WS,     /* BWS after the size: only ';' may follow */
    CK_EXT_PRE,     /* after ';': BWS, then an extension name */
    CK_EXT_NAME,    /* in chunk-ext-name */
    CK_EXT_NAME_WS, /* BWS after the name: '=' or ';' */
    CK_EXT_VAL_PRE, /* after '=': BWS, then token or quoted-string */
    CK_EXT_VAL_TOK, /* in a token value */
    CK_EXT_QS,      /* in a quoted-string value */
    CK_EXT_QS_ESC,  /* after a backslash in a quoted-string */
    CK_EXT_VAL_END, /* right after the closing quote */
    CK_EXT_VAL_WS,  /* BWS after a value: only ';' may follow */
    CK_SIZE_LF,     /* CR of the size line seen */
    CK_DATA,        /* chunk data, st->remaining bytes left */
    CK_DATA_CR,     /* CRLF after the data */
    CK_DATA_LF,
    CK_TRL_START, /* start of a trailer line or of the final empty line */
    CK_TRL_NAME,
    CK_TRL_VALUE,
    CK_TRL_LF,     /* CR of a trailer line seen */
    CK_TRL_END_LF, /* CR of the final empty line seen */
    CK_DONE,
    CK_ERR_BAD, /* sticky errors: later calls keep failing the same way */
    CK_ERR_BIG,
};

/* One framing byte. Returns the next state; CK_ERR_* on a grammar violation. */
static inline uint8_t chunk_step(sl_chunked_t *st, uint8_t s, uint8_t c)
{
    switch (s) {
    case CK_SIZE:
        if (IS(c, C_HEX)) {
            if (++st->digits > 16)
                return CK_ERR_BAD; /* 17 hex digits cannot fit in 64 bits */
            st->remaining = (st->remaining << 4) | (uint64_t)((c & 0xF) + (c >> 6) * 9);
            return CK_SIZE;
        }
        if (st->digits == 0)
            return CK_ERR_BAD;
        if (c == '\r')
            return CK_SIZE_LF;
        if (c == ';')
            return CK_EXT_PRE;
        return IS(c, C_WS) ? CK_SIZE_WS : CK_ERR_BAD;
    case CK_SIZE_WS:
    case CK_EXT_VAL_WS:
        if (c == ';')
            return CK_EXT_PRE;
        return IS(c, C_WS) ? s : CK_ERR_BAD;
    case CK_EXT_PRE:
        if (IS(c, C_TCHAR))
            return CK_EXT_NAME;
        return IS(c, C_WS) ? s : CK_ERR_BAD;
    case CK_EXT_NAME:
        if (IS(c, C_TCHAR))
            return s;
        if (c == '\r')
            return CK_SIZE_LF;
        __attribute__((fallthrough)); /* '=', ';' and BWS: as after a name */
    case CK_EXT_NAME_WS:
        if (c == '=')
            return CK_EXT_VAL_PRE;
        if (c == ';')
            return CK_EXT_PRE;
        return IS(c, C_WS) ? CK_EXT_NAME_WS : CK_ERR_BAD;
    case CK_EXT_VAL_PRE:
        if (IS(c, C_TCHAR))
            return CK_EXT_VAL_TOK;
        if (c == '"')
            return CK_EXT_QS;
        return IS(c, C_WS) ? s : CK_ERR_BAD;
    case CK_EXT_VAL_TOK:
        if (IS(c, C_TCHAR))
            return s;
        __attribute__((fallthrough)); /* CR, ';' and BWS: as after a quoted value */
    case CK_EXT_VAL_END:
        if (c == '\r')
            return CK_SIZE_LF;
        if (c == ';')
            return CK_EXT_PRE;
        return IS(c, C_WS) ? CK_EXT_VAL_WS : CK_ERR_BAD;
    case CK_EXT_QS:
        if (c == '"')
            return CK_EXT_VAL_END;
        if (c == '\\')
            return CK_EXT_QS_ESC;
        return IS(c, C_QDTEXT) ? s : CK_ERR_BAD;
    case CK_EXT_QS_ESC:
        return IS(c, C_FVAL) ? CK_EXT_QS : CK_ERR_BAD;
    case CK_SIZE_LF:
        if (c != '\n')
            return CK_ERR_BAD;
        st->line_len = 0;
        return st->remaining ? CK_DATA : CK_TRL_START;
    case CK_DATA_CR:
        return c == '\r' ? CK_DATA_LF : CK_ERR_BAD;
    case CK_DATA_LF:
        if (c != '\n')
            return CK_ERR_BAD;
        st->digits = 0;
        st->line_len = 0;
        return CK_SIZE;
    case CK_TRL_START:
        if (c == '\r')
            return CK_TRL_END_LF;
        /* a leading SP/HTAB would be obs-fold; ':' an empty name */
        return IS(c, C_TCHAR) ? CK_TRL_NAME : CK_ERR_BAD;
    case CK_TRL_NAME:
        if (c == ':')
            return CK_TRL_VALUE;
        return IS(c, C_TCHAR) ? s : CK_ERR_BAD;
    case CK_TRL_VALUE:
        if (c == '\r')
            return CK_TRL_LF;
        return IS(c, C_FVAL) ? s : CK_ERR_BAD;
    case CK_TRL_LF:
        if (c != '\n')
            return CK_ERR_BAD;
        st->line_len = 0;
        return CK_TRL_START;
    case CK_TRL_END_LF:
        return c == '\n' ? CK_DONE : CK_ERR_BAD;
    default:
        return CK_ERR_BAD;
    }
}

int64_t sl_http1_chunked_decode(sl_chunked_t *st, const char *in, size_t len, size_t *data_off,
                                size_t *data_len)
{
    const unsigned char *u = (const unsigned char *)in;
    size_t i = 0;
    uint8_t s = st->state;
    *data_off = 0;
    *data_len = 0;
    if (s == CK_ERR_BAD)
        return SL_EBADMSG;
    if (s == CK_ERR_BIG)
        return SL_ETOOBIG;
    if (st->done)
        return 0;
    while (i < len) {
        if (s == CK_DATA) {
            size_t n = len - i;
            if (n > st->remaining)
                n = (size_t)st->remaining;
            st->remaining -= n;
            if (st->remaining == 0)
                s = CK_DATA_CR;
            st->state = s;
            *data_off = i;
            *data_len = n;
            return (int64_t)(i + n);
        }
        if (s <= CK_SIZE_LF) {
            if (++st->line_len > CK_LINE_MAX) {
                st->state = CK_ERR_BIG;
                return SL_ETOOBIG;
            }
        } else if (s >= CK_TRL_START) {
            st->line_len++;
            if (++st->trailer_len > CK_TRAILER_MAX) {
                st->state = CK_ERR_BIG;
                return SL_ETOOBIG;
            }
        }
        s = chunk_step(st, s, u[i++]);
        if (SL_UNLIKELY(s >= CK_DONE)) {
            st->state = s;
            if (s == CK_DONE) {
                st->done = 1;
                return (int64_t)i;
            }
            return SL_EBADMSG;
        }
    }
    st->state = s;
    return (int64_t)i;
}
