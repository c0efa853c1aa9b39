/* fuzz_accept_encoding.c - libFuzzer target for the compression decisions (compress.h).
 * The input is split at '\n' into up to 16 parts, each copied to an exact-size buffer (ASan
 * catches any read beyond), and each part is one Accept-Encoding field line. Invariants:
 * weights within 0..1000 per mille; parsing the lines again, in reverse order, or joined
 * with commas into one line (when no quote can swallow a separator) gives the same
 * preferences; the header-array entry point agrees with line-by-line parsing; the chosen
 * coding is available (or identity), has a weight > 0, is the best by weight with br >
 * gzip > identity on ties, and NOT_ACCEPTABLE comes only when nothing has weight; the
 * variant token matches the choice. Each part also goes through the media-type, Vary,
 * eligibility and ETag functions: results in range, case-insensitive where documented,
 * derived ETags one suffix longer and themselves valid. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http/compress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PARTS 16

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

/* The preferences proper: everything but the ignored counter. */
static int same_prefs(const sl_compress_accept_t *a, const sl_compress_accept_t *b)
{
    if (a->present != b->present || a->listed != b->listed)
        return 0;
    for (int i = 0; i < 4; i++)
        if ((a->listed & (1u << i)) && a->q[i] != b->q[i])
            return 0;
    return 1;
}

static void check_prefs(const sl_compress_accept_t *a)
{
    check(a->present == 1);
    check((a->listed & ~0xfu) == 0);
    for (int i = 0; i < 4; i++)
        check(a->q[i] <= SL_COMPRESS_Q_MAX);
    for (int c = SL_COMPRESS_IDENTITY; c <= SL_COMPRESS_BR; c++)
        check(sl_compress_q(a, c) <= SL_COMPRESS_Q_MAX);
}

static void check_choice(const sl_compress_accept_t *a, unsigned avail)
{
    int r = sl_compress_choose(a, avail);
    unsigned qi = sl_compress_q(a, SL_COMPRESS_IDENTITY);
    unsigned qg = (avail & SL_COMPRESS_HAVE_GZIP) ? sl_compress_q(a, SL_COMPRESS_GZIP) : 0;
    unsigned qb = (avail & SL_COMPRESS_HAVE_BR) ? sl_compress_q(a, SL_COMPRESS_BR) : 0;
    switch (r) {
    case SL_COMPRESS_BR:
        check((avail & SL_COMPRESS_HAVE_BR) && qb > 0 && qb >= qg && qb >= qi);
        break;
    case SL_COMPRESS_GZIP:
        check((avail & SL_COMPRESS_HAVE_GZIP) && qg > 0 && qg > qb && qg >= qi);
        break;
    case SL_COMPRESS_IDENTITY:
        check(qi > 0 && qi > qg && qi > qb);
        break;
    case SL_COMPRESS_NOT_ACCEPTABLE:
        check(qi == 0 && qg == 0 && qb == 0);
        break;
    default:
        check(0);
    }
    /* more availability never turns an answer into NOT_ACCEPTABLE */
    if (r != SL_COMPRESS_NOT_ACCEPTABLE)
        check(sl_compress_choose(a, avail | SL_COMPRESS_HAVE_ALL) != SL_COMPRESS_NOT_ACCEPTABLE);
    check(strcmp(sl_compress_token(r), r == SL_COMPRESS_BR     ? "br"
                                       : r == SL_COMPRESS_GZIP ? "gzip"
                                                               : "") == 0);
}

static void fuzz_accept(char **parts, size_t *lens, size_t np)
{
    sl_compress_accept_t a, b, c;
    memset(&a, 0, sizeof(a));
    int valid = 0;
    for (size_t i = 0; i < np; i++) {
        int r = sl_compress_accept_parse(parts[i], lens[i], &a);
        check(r >= 0 && (size_t)r <= lens[i]);
        valid += r;
        check_prefs(&a);
    }
    /* again: duplicates keep the lowest weight, so nothing changes */
    b = a;
    for (size_t i = 0; i < np; i++)
        sl_compress_accept_parse(parts[i], lens[i], &b);
    check(same_prefs(&a, &b));
    /* in reverse order: the same */
    memset(&b, 0, sizeof(b));
    for (size_t i = np; i-- > 0;)
        sl_compress_accept_parse(parts[i], lens[i], &b);
    check(same_prefs(&a, &b) && a.ignored == b.ignored);
    /* through the header array (with a field of another name in between) */
    sl_http_header_t h[2 * MAX_PARTS];
    unsigned nh = 0;
    for (size_t i = 0; i < np; i++) {
        h[nh++] = hdr((i & 1) ? "accept-encoding" : "Accept-Encoding", parts[i], lens[i]);
        h[nh++] = hdr("Accept", parts[i], lens[i]);
    }
    sl_compress_accept_from(h, nh, &c);
    check(same_prefs(&a, &c) && a.ignored == c.ignored);
    /* joined into one line with commas: the same, unless a quote could swallow a comma */
    size_t total = 0;
    int quotes = 0;
    for (size_t i = 0; i < np; i++) {
        total += lens[i] + 1;
        quotes |= memchr(parts[i], '"', lens[i]) != NULL;
    }
    if (!quotes && np > 0) {
        char *j = malloc(total);
        if (j) {
            size_t k = 0;
            for (size_t i = 0; i < np; i++) {
                memcpy(j + k, parts[i], lens[i]);
                k += lens[i];
                if (i + 1 < np)
                    j[k++] = ',';
            }
            memset(&b, 0, sizeof(b));
            check(sl_compress_accept_parse(j, k, &b) == valid);
            check(same_prefs(&a, &b) && a.ignored == b.ignored);
            free(j);
        }
    }
    /* the choice, for every availability (and stray bits) */
    for (unsigned avail = 0; avail < 8; avail++) {
        check_choice(&a, avail);
        check_choice(&a, avail | 0xfffffff0u);
    }
    /* no field at all: identity, whatever is available */
    memset(&b, 0, sizeof(b));
    check(sl_compress_choose(&b, SL_COMPRESS_HAVE_ALL) == SL_COMPRESS_IDENTITY);
}

/* An exact-size upper-cased copy (caller frees), or NULL. */
static char *upper(const char *s, size_t n)
{
    char *u = malloc(n ? n : 1);
    if (u)
        for (size_t i = 0; i < n; i++)
            u[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 32) : s[i];
    return u;
}

static void fuzz_etag(const char *s, size_t n)
{
    static const int ext[3] = {0, 5, 3}; /* identity, "-gzip", "-br" */
    int64_t base = -1;
    for (int c = SL_COMPRESS_IDENTITY; c <= SL_COMPRESS_BR; c++) {
        int64_t need = sl_compress_etag(s, n, c, NULL, 0);
        check(need == SL_EINVAL || need == SL_ETOOBIG);
        if (need == SL_EINVAL)
            continue;
        char *out = malloc(n + SL_COMPRESS_ETAG_EXTRA);
        if (!out)
            return;
        int64_t r = sl_compress_etag(s, n, c, out, n + SL_COMPRESS_ETAG_EXTRA);
        check(r > 0 && (size_t)r <= n + SL_COMPRESS_ETAG_EXTRA);
        if (c == SL_COMPRESS_IDENTITY)
            base = r;
        check(base >= 0 && r == base + ext[c]);
        check(sl_compress_etag(s, n, c, out, (size_t)r - 1) == SL_ETOOBIG);
        /* the result is an entity-tag: identity copies it unchanged */
        char *again = malloc((size_t)r);
        if (again) {
            check(sl_compress_etag(out, (size_t)r, SL_COMPRESS_IDENTITY, again, (size_t)r) == r);
            check(memcmp(again, out, (size_t)r) == 0);
            free(again);
        }
        free(out);
    }
    check(sl_compress_etag(s, n, SL_COMPRESS_NOT_ACCEPTABLE, NULL, 0) == SL_EINVAL);
}

static void fuzz_response(char **parts, size_t *lens, size_t np)
{
    static const char *const names[MAX_PARTS] = {"Content-Type",
                                                 "Content-Length",
                                                 "Content-Encoding",
                                                 "Cache-Control",
                                                 "Vary",
                                                 "Transfer-Encoding",
                                                 "ETag",
                                                 "Content-Range",
                                                 "content-type",
                                                 "content-length",
                                                 "Content-Encoding",
                                                 "cache-control",
                                                 "vary",
                                                 "Date",
                                                 "Content-Length",
                                                 "Vary"};
    sl_http_header_t resp[MAX_PARTS], req[MAX_PARTS];
    for (size_t i = 0; i < np; i++) {
        resp[i] = hdr(names[i], parts[i], lens[i]);
        req[i] = hdr((i & 1) ? "Cache-Control" : "Accept-Encoding", parts[i], lens[i]);
    }
    static const int statuses[] = {100, 200, 204, 206, 304, 404, 503, 600};
    static const uint64_t mins[] = {0, 1, 1024, UINT64_MAX};
    for (size_t i = 0; i < SL_ARRAY_LEN(statuses); i++)
        for (size_t k = 0; k < SL_ARRAY_LEN(mins); k++) {
            const char *why = NULL;
            int r = sl_compress_eligible(SL_M_GET, statuses[i], req, (unsigned)np, resp,
                                         (unsigned)np, mins[k], &why);
            check((r == 0 || r == 1) && why != NULL && r == (strcmp(why, "ok") == 0));
            if (statuses[i] == 206 || statuses[i] == 204 || statuses[i] == 304 ||
                statuses[i] < 200 || statuses[i] > 599)
                check(r == 0);
            check(sl_compress_eligible(SL_M_GET, statuses[i], req, (unsigned)np, resp, (unsigned)np,
                                       mins[k], NULL) == r);
            check(sl_compress_eligible(SL_M_HEAD, statuses[i], req, (unsigned)np, resp,
                                       (unsigned)np, mins[k], NULL) == 0);
        }
    int v = sl_compress_vary_has(resp, (unsigned)np);
    check(v == 0 || v == 1);

    for (size_t i = 0; i < np; i++) {
        int t = sl_compress_type_ok(parts[i], lens[i]);
        check(t == 0 || t == 1);
        char *u = upper(parts[i], lens[i]);
        if (u) {
            check(sl_compress_type_ok(u, lens[i]) == t); /* case-insensitive */
            sl_http_header_t a = hdr("Vary", parts[i], lens[i]), b = hdr("VARY", u, lens[i]);
            check(sl_compress_vary_has(&a, 1) == sl_compress_vary_has(&b, 1));
            free(u);
        }
        fuzz_etag(parts[i], lens[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *parts[MAX_PARTS];
    size_t lens[MAX_PARTS], np = 0, start = 0;
    for (size_t i = 0; i <= size && np < MAX_PARTS; i++) {
        if (i == size || data[i] == '\n') {
            size_t n = i - start;
            /* A copy of exactly n bytes, so ASan catches any read beyond. */
            parts[np] = malloc(n ? n : 1);
            if (!parts[np])
                break;
            memcpy(parts[np], data + start, n);
            lens[np++] = n;
            start = i + 1;
        }
    }
    fuzz_accept(parts, lens, np);
    fuzz_response(parts, lens, np);
    for (size_t i = 0; i < np; i++)
        free(parts[i]);
    return 0;
}
