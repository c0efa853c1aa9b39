/* fuzz_static_range.c - libFuzzer target for the Range parser (sl_static_range_parse) and
 * the conditional decision (sl_static_decide). The input is split at '\n': part 0 is the
 * Range value, the others become If-None-Match, If-Match, If-Modified-Since,
 * If-Unmodified-Since, If-Range and more Range lines; each is copied to an exact-size
 * buffer so ASan catches any read beyond. Invariants: a satisfiable range lies inside the
 * file and is not empty; the result does not change when the range-unit's case or the
 * spacing around list commas changes; a decision's status is one of 200/206/304/412/416
 * with a body span that fits the file; Content-Range is well-formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http/static.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PARTS 8

static void check(int ok)
{
    if (!ok)
        abort();
}

static sl_http_header_t hdr(const char *name, const char *v, size_t n)
{
    sl_http_header_t h;
    memset(&h, 0, sizeof(h));
    h.name = name;
    h.name_len = (uint16_t)strlen(name);
    h.value = v;
    h.value_len = (uint32_t)n;
    return h;
}

static void fuzz_range(const char *s, size_t n)
{
    static const uint64_t sizes[] = {0,         1, 2, 10, 100, 1000, 4294967296ULL, UINT64_MAX - 1,
                                     UINT64_MAX};
    int rcs[sizeof(sizes) / sizeof(sizes[0])];
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t f = 7, l = 7;
        int rc = sl_static_range_parse(s, n, sizes[i], &f, &l);
        rcs[i] = rc;
        check(rc >= SL_STATIC_RANGE_NONE && rc <= SL_STATIC_RANGE_MULTI);
        if (rc == SL_STATIC_RANGE_OK) {
            check(sizes[i] > 0 && l > 0 && l <= sizes[i] && f <= sizes[i] - l);
            sl_static_reply_t r = {.status = 206, .first = f, .len = l, .size = sizes[i]};
            char cr[SL_STATIC_CONTENT_RANGE_MAX];
            check(sl_static_content_range(&r, cr, sizeof(cr)) > 8);
        } else {
            check(f == 7 && l == 7);
        }
        if (sizes[i] == 0)
            check(rc != SL_STATIC_RANGE_OK);
        /* NONE and MULTI are decided by syntax alone, whatever the size */
        check((rc == SL_STATIC_RANGE_NONE) == (rcs[0] == SL_STATIC_RANGE_NONE));
        check((rc == SL_STATIC_RANGE_MULTI) == (rcs[0] == SL_STATIC_RANGE_MULTI));
    }
    /* the unit upper-cased, and spaces after every comma: the same answers */
    char *alt = malloc(2 * n + 1);
    if (!alt)
        return;
    size_t k = 0;
    const char *eq = memchr(s, '=', n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (eq && s + i < eq && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        alt[k++] = c;
        if (eq && s + i > eq && c == ',')
            alt[k++] = ' ';
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t f1 = 0, l1 = 0, f2 = 0, l2 = 0;
        int a = sl_static_range_parse(s, n, sizes[i], &f1, &l1);
        int b = sl_static_range_parse(alt, k, sizes[i], &f2, &l2);
        check(a == b && f1 == f2 && l1 == l2);
    }
    free(alt);
}

static void fuzz_decide(char **parts, size_t *lens, size_t np)
{
    static const char *const names[MAX_PARTS] = {
        "Range",    "If-None-Match", "If-Match", "If-Modified-Since", "If-Unmodified-Since",
        "If-Range", "if-range",      "RANGE"};
    sl_http_header_t h[MAX_PARTS];
    for (size_t i = 0; i < np; i++)
        h[i] = hdr(names[i], parts[i], lens[i]);
    char etag[SL_STATIC_ETAG_MAX];
    size_t elen = sl_static_etag(1000, 1700000000, 0, 42, etag);
    static const int methods[] = {SL_M_GET, SL_M_HEAD, SL_M_POST};
    static const uint64_t sizes[] = {0, 1, 1000, UINT64_MAX};
    for (size_t m = 0; m < 3; m++)
        for (size_t z = 0; z < 4; z++) {
            sl_static_reply_t r;
            int s = sl_static_decide(h, (unsigned)np, methods[m], sizes[z], etag, elen, 1700000000,
                                     1700000100, &r);
            check(s == r.status && r.size == sizes[z]);
            switch (s) {
            case 200:
                check(r.first == 0 && r.len == sizes[z]);
                break;
            case 206:
                check(methods[m] == SL_M_GET && r.len > 0 && r.len <= sizes[z] &&
                      r.first <= sizes[z] - r.len);
                break;
            case 304:
                check(methods[m] != SL_M_POST && r.len == 0);
                break;
            case 412:
            case 416:
                check(r.len == 0 && r.first == 0);
                break;
            default:
                check(0);
            }
            char cr[SL_STATIC_CONTENT_RANGE_MAX];
            int c = sl_static_content_range(&r, cr, sizeof(cr));
            check((s == 206 || s == 416) ? c > 0 : c == SL_EINVAL);
            /* without validators of ours */
            s = sl_static_decide(h, (unsigned)np, methods[m], sizes[z], NULL, 0, -1, 0, &r);
            check(s == 200 || s == 206 || s == 304 || s == 412 || s == 416);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *parts[MAX_PARTS];
    size_t lens[MAX_PARTS], np = 0, start = 0;
    for (size_t i = 0; i <= size && np < MAX_PARTS; i++) {
        if (i == size || data[i] == '\n') {
            size_t n = i - start;
            parts[np] = malloc(n ? n : 1);
            if (!parts[np])
                break;
            memcpy(parts[np], data + start, n);
            lens[np++] = n;
            start = i + 1;
        }
    }
    if (np > 0)
        fuzz_range(parts[0], lens[0]);
    fuzz_decide(parts, lens, np);
    for (size_t i = 0; i < np; i++)
        free(parts[i]);
    return 0;
}
