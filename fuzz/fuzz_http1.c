/* fuzz_http1.c - libFuzzer driver for the HTTP/1.1 parser (src/http/http1.c).
 * Runs the request parser, the response parser and the chunked decoder on every input,
 * whole, split at a data-derived point and fed one byte at a time, and abort()s when the
 * results differ, when a returned slice leaves the input, or when lengths disagree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http/http1.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define MAX_HEAD 4096
#define TRICKLE_MAX 8192 /* byte-at-a-time runs only up to this input size */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_http_request_t g_r1, g_r2;
static sl_http_response_t g_s1, g_s2;

/* A slice is inside [b, b + n), or is the empty {NULL, 0}. */
static void check_slice(sl_slice_t s, const char *b, size_t n)
{
    if (s.p == NULL) {
        CHECK(s.len == 0);
        return;
    }
    CHECK((uintptr_t)s.p >= (uintptr_t)b);
    CHECK((uintptr_t)s.p + s.len <= (uintptr_t)b + n);
}

static void check_headers(const sl_http_header_t *h, unsigned n, const char *b, size_t head)
{
    CHECK(n <= SL_HTTP_MAX_HEADERS);
    for (unsigned i = 0; i < n; i++) {
        CHECK(h[i].name_len > 0);
        check_slice((sl_slice_t){h[i].name, h[i].name_len}, b, head);
        check_slice((sl_slice_t){h[i].value, h[i].value_len}, b, head);
        CHECK(h[i].name[h[i].name_len] == ':'); /* the name runs up to the colon */
        CHECK(h[i].value >= h[i].name + h[i].name_len + 1);
        CHECK(h[i].id == sl_http1_header_id(h[i].name, h[i].name_len));
        CHECK(h[i].hop <= 1);
        if (h[i].value_len > 0) { /* OWS trimmed */
            char f = h[i].value[0], l = h[i].value[h[i].value_len - 1];
            CHECK(f != ' ' && f != '\t' && l != ' ' && l != '\t');
        }
        for (uint32_t k = 0; k < h[i].value_len; k++) {
            uint8_t c = (uint8_t)h[i].value[k];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7F));
        }
    }
}

static void check_flags(uint32_t flags, int64_t cl)
{
    CHECK(cl >= -1 && cl <= (INT64_C(1) << 62));
    CHECK(!!(flags & SL_HF_CONTENT_LENGTH) == (cl >= 0));
    CHECK(!((flags & SL_HF_CHUNKED) && (flags & SL_HF_CONTENT_LENGTH)));
    CHECK(!((flags & SL_HF_CHUNKED) && (flags & SL_HF_TE_OTHER)));
}

static int known_rc(int rc)
{
    return rc > 0 || rc == SL_AGAIN || rc == SL_EBADMSG || rc == SL_ETOOBIG || rc == SL_ENOTSUP ||
           rc == SL_EVERSION;
}

static void check_request(const sl_http_request_t *r, const char *b, int rc)
{
    size_t head = (size_t)rc;
    CHECK(r->method.len > 0);
    check_slice(r->method, b, head);
    check_slice(r->target, b, head);
    check_slice(r->path, b, head);
    check_slice(r->query, b, head);
    check_slice(r->host, b, head);
    CHECK(r->target.len > 0);
    CHECK(r->method_id == sl_http1_method_id(r->method.p, r->method.len));
    CHECK(r->version == 10 || r->version == 11);
    if (r->path.p != NULL)
        check_slice(r->path, r->target.p, r->target.len);
    if (r->query.p != NULL) {
        check_slice(r->query, r->target.p, r->target.len);
        CHECK(r->query.p[-1] == '?');
    }
    if (r->version == 11)
        CHECK(r->host.p != NULL || sl_http1_find(r->headers, r->nheaders, SL_H_HOST) != NULL);
    CHECK(head >= 16 && b[head - 1] == '\n' && b[head - 2] == '\r');
    CHECK(r->flags & SL_HF_CHUNKED ? r->version == 11 : 1);
    CHECK(!(r->flags & SL_HF_TE_OTHER));
    check_flags(r->flags, r->content_length);
    check_headers(r->headers, r->nheaders, b, head);
}

static void same_request(const sl_http_request_t *a, const sl_http_request_t *b)
{
    CHECK(a->method.p == b->method.p && a->method.len == b->method.len);
    CHECK(a->target.p == b->target.p && a->target.len == b->target.len);
    CHECK(a->path.p == b->path.p && a->path.len == b->path.len);
    CHECK(a->query.p == b->query.p && a->query.len == b->query.len);
    CHECK(a->host.p == b->host.p && a->host.len == b->host.len);
    CHECK(a->method_id == b->method_id && a->version == b->version);
    CHECK(a->flags == b->flags && a->content_length == b->content_length);
    CHECK(a->nheaders == b->nheaders);
    CHECK(memcmp(a->headers, b->headers, a->nheaders * sizeof(a->headers[0])) == 0);
}

static void check_response(const sl_http_response_t *s, const char *b, int rc)
{
    size_t head = (size_t)rc;
    CHECK(s->status >= 100 && s->status <= 599);
    CHECK(s->version == 10 || s->version == 11);
    CHECK(s->reason.p != NULL);
    check_slice(s->reason, b, head);
    CHECK(head >= 16 && b[head - 1] == '\n' && b[head - 2] == '\r');
    check_flags(s->flags, s->content_length);
    check_headers(s->headers, s->nheaders, b, head);
    int body = sl_http1_response_body(s, SL_M_GET);
    CHECK(body >= SL_BODY_NONE && body <= SL_BODY_EOF);
}

static void same_response(const sl_http_response_t *a, const sl_http_response_t *b)
{
    CHECK(a->status == b->status && a->version == b->version);
    CHECK(a->reason.p == b->reason.p && a->reason.len == b->reason.len);
    CHECK(a->flags == b->flags && a->content_length == b->content_length);
    CHECK(a->nheaders == b->nheaders);
    CHECK(memcmp(a->headers, b->headers, a->nheaders * sizeof(a->headers[0])) == 0);
}

static void fuzz_requests(const char *b, size_t n, size_t split)
{
    size_t scan = 0;
    int whole = sl_http1_parse_request(b, n, MAX_HEAD, &scan, &g_r1);
    CHECK(known_rc(whole));
    CHECK(scan <= n);
    if (whole > 0) {
        CHECK((size_t)whole <= n && (size_t)whole <= MAX_HEAD);
        check_request(&g_r1, b, whole);
        CHECK(sl_http1_request_body(&g_r1) >= SL_BODY_NONE);
    }
    if (whole == SL_AGAIN)
        CHECK(n < MAX_HEAD);

    /* split in two: the first part is incomplete or already decisive */
    scan = 0;
    int rc = sl_http1_parse_request(b, split, MAX_HEAD, &scan, &g_r2);
    CHECK(rc == SL_AGAIN || rc == whole);
    if (rc == SL_AGAIN)
        rc = sl_http1_parse_request(b, n, MAX_HEAD, &scan, &g_r2);
    CHECK(rc == whole);
    if (whole > 0)
        same_request(&g_r1, &g_r2);

    /* one byte at a time */
    if (n <= TRICKLE_MAX) {
        scan = 0;
        rc = SL_AGAIN;
        size_t l;
        for (l = 1; l <= n; l++) {
            rc = sl_http1_parse_request(b, l, MAX_HEAD, &scan, &g_r2);
            if (rc != SL_AGAIN)
                break;
            CHECK(scan <= l);
        }
        CHECK(rc == whole);
        if (whole > 0) {
            CHECK(l == (size_t)whole);
            same_request(&g_r1, &g_r2);
        }
    }

    /* pipelined: whatever follows a head (as if it had no body) parses on its own */
    size_t off = 0;
    for (int i = 0; i < 4 && whole > 0; i++) {
        off += (size_t)whole;
        scan = 0;
        whole = sl_http1_parse_request(b + off, n - off, MAX_HEAD, &scan, &g_r1);
        CHECK(known_rc(whole));
        if (whole > 0) {
            CHECK((size_t)whole <= n - off);
            check_request(&g_r1, b + off, whole);
        }
    }
}

static void fuzz_responses(const char *b, size_t n, size_t split)
{
    size_t scan = 0;
    int whole = sl_http1_parse_response(b, n, MAX_HEAD, &scan, &g_s1);
    CHECK(known_rc(whole) && whole != SL_ENOTSUP);
    if (whole > 0) {
        CHECK((size_t)whole <= n);
        check_response(&g_s1, b, whole);
    }
    scan = 0;
    int rc = sl_http1_parse_response(b, split, MAX_HEAD, &scan, &g_s2);
    CHECK(rc == SL_AGAIN || rc == whole);
    if (rc == SL_AGAIN)
        rc = sl_http1_parse_response(b, n, MAX_HEAD, &scan, &g_s2);
    CHECK(rc == whole);
    if (whole > 0)
        same_response(&g_s1, &g_s2);
    if (n <= TRICKLE_MAX) {
        scan = 0;
        rc = SL_AGAIN;
        size_t l;
        for (l = 1; l <= n; l++) {
            rc = sl_http1_parse_response(b, l, MAX_HEAD, &scan, &g_s2);
            if (rc != SL_AGAIN)
                break;
        }
        CHECK(rc == whole);
        if (whole > 0) {
            CHECK(l == (size_t)whole);
            same_response(&g_s1, &g_s2);
        }
    }
}

struct dechunk {
    int64_t err; /* 0, or the negative code that stopped decoding */
    size_t pos;  /* input bytes consumed */
    int done;
    size_t out_len;
    char *out;
};

/* Feeds in[from..to) to the decoder in pieces of at most step bytes (0: all at once),
 * appending decoded data to d->out and checking every call's contract. */
static void dechunk_feed(sl_chunked_t *st, const char *in, size_t to, size_t step,
                         struct dechunk *d)
{
    while (d->err == 0 && !d->done) {
        size_t avail = to - d->pos;
        if (step && avail > step)
            avail = step;
        size_t off = (size_t)-1, dl = (size_t)-1;
        int64_t r = sl_http1_chunked_decode(st, in + d->pos, avail, &off, &dl);
        if (r < 0) {
            CHECK(r == SL_EBADMSG || r == SL_ETOOBIG);
            CHECK(!st->done);
            d->err = r;
            return;
        }
        CHECK((uint64_t)r <= avail);
        CHECK(dl != (size_t)-1);
        if (dl > 0) {
            CHECK(off + dl == (size_t)r); /* data ends the piece, framing before it */
            memcpy(d->out + d->out_len, in + d->pos + off, dl);
            d->out_len += dl;
        }
        d->pos += (size_t)r;
        d->done = st->done;
        if (r == 0) {
            CHECK(avail == 0 || st->done);
            break;
        }
        if (d->pos == to)
            break;
    }
}

/* Same outcome and same data; the consumed count only when no error (an error call
 * reports nothing consumed, so where it is counted from depends on the slicing). */
static void same_dechunk(const struct dechunk *a, const struct dechunk *b)
{
    CHECK(a->err == b->err && a->done == b->done);
    CHECK(a->err != 0 || a->pos == b->pos);
    CHECK(a->out_len == b->out_len && memcmp(a->out, b->out, a->out_len) == 0);
}

static void fuzz_chunked(const char *b, size_t n, size_t split, char *out1, char *out2)
{
    struct dechunk whole = {.out = out1}, part = {.out = out2};
    sl_chunked_t st;

    memset(&st, 0, sizeof(st));
    dechunk_feed(&st, b, n, 0, &whole);
    CHECK(whole.pos <= n && whole.out_len <= whole.pos);
    if (whole.done)
        CHECK(whole.pos >= 5 && b[whole.pos - 1] == '\n' && b[whole.pos - 2] == '\r');

    memset(&st, 0, sizeof(st));
    dechunk_feed(&st, b, split, 0, &part);
    if (part.err == 0 && !part.done)
        dechunk_feed(&st, b, n, 0, &part);
    same_dechunk(&part, &whole);

    if (n <= TRICKLE_MAX) {
        memset(&st, 0, sizeof(st));
        part = (struct dechunk){.out = out2};
        dechunk_feed(&st, b, n, 1, &part);
        same_dechunk(&part, &whole);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char out1[1 << 20], out2[1 << 20];
    if (size > sizeof(out1))
        return 0;
    const char *b = (const char *)data;
    /* a split point derived from the data, so the fuzzer can steer it */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size && i < 64; i++)
        h = (h ^ data[i]) * 16777619u;
    size_t split = size ? h % (size + 1) : 0;

    fuzz_requests(b, size, split);
    fuzz_responses(b, size, split);
    fuzz_chunked(b, size, split, out1, out2);
    return 0;
}
