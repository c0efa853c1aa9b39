/* fuzz_cachecontrol.c - libFuzzer target for the cache's RFC 9111 parsers and rules. The
 * input is split at '\n' into parts, each copied to an exact-size buffer (ASan catches any
 * read beyond): part 0 goes to the Cache-Control and targeted-field parsers, part 1 to the
 * HTTP-date parser, the rest to Vary; then every part becomes a field of a response and a
 * request, through storability, the entry's age and the lookup decision, the secondary
 * key and the 304 decision. Invariants: values within their documented bounds, parsing a
 * line twice changes nothing, dates round-trip, Vary lists are sorted lower-case tokens,
 * equivalent spacing gives the same secondary key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cache/cachecontrol.h"
#include "../src/core/hash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PARTS 12
#define T0 1700000000000LL
#define ALL_FLAGS ((1u << 16) - 1)

static void check(int ok)
{
    if (!ok)
        abort();
}

static void check_cc(const sl_cc_t *c)
{
    check((c->flags & ~ALL_FLAGS) == 0);
    check(c->max_age <= SL_CC_DELTA_MAX && c->s_maxage <= SL_CC_DELTA_MAX);
    check(c->max_stale <= SL_CC_DELTA_MAX && c->min_fresh <= SL_CC_DELTA_MAX);
    check(c->stale_while_revalidate <= SL_CC_DELTA_MAX && c->stale_if_error <= SL_CC_DELTA_MAX);
}

static void fuzz_directives(const char *s, size_t n)
{
    sl_cc_t a, b;
    memset(&a, 0, sizeof(a));
    int count = sl_cc_parse(s, n, &a);
    check(count >= 0 && (size_t)count <= n);
    check_cc(&a);
    b = a;
    sl_cc_parse(s, n, &b); /* the same line again: the merge rules are idempotent */
    check(memcmp(&a, &b, sizeof(a)) == 0);

    memset(&a, 0, sizeof(a));
    int r = sl_cc_parse_targeted(s, n, &a);
    check(r == 0 || r == SL_EBADMSG);
    check_cc(&a);
    if (r == 0) {
        b = a;
        check(sl_cc_parse_targeted(s, n, &b) == 0); /* last occurrence wins: idempotent */
        check(memcmp(&a, &b, sizeof(a)) == 0);
    }
}

static void fuzz_date(const char *s, size_t n)
{
    int64_t nows[] = {0, T0 / 1000, 4102444800LL};
    for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
        int64_t t = sl_cc_date_parse(s, n, nows[i]);
        check(t == -1 || (t >= 0 && t <= 253402300799LL + 1)); /* 23:59:60 on 9999-12-31 */
        if (t >= 0 && t <= 253402300799LL) {
            char out[29];
            check(sl_cc_date_format(t, out) == 29);
            check(sl_cc_date_parse(out, 29, nows[i]) == t);
        }
    }
}

static int is_tchar_lower(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return 0;
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || strchr("!#$%&'*+-.^_`|~", c);
}

static void check_vary(const sl_cc_vary_t *v)
{
    check(v->n <= SL_CC_VARY_MAX && v->used <= SL_CC_VARY_BYTES);
    size_t sum = 0;
    for (unsigned i = 0; i < v->n; i++) {
        const char *p = v->names + v->off[i];
        check(v->len[i] > 0 && (size_t)v->off[i] + v->len[i] <= v->used);
        sum += v->len[i];
        for (unsigned k = 0; k < v->len[i]; k++)
            check(p[k] != 0 && is_tchar_lower((unsigned char)p[k]));
        if (i > 0) { /* strictly ascending */
            const char *q = v->names + v->off[i - 1];
            size_t m = v->len[i - 1] < v->len[i] ? v->len[i - 1] : v->len[i];
            int c = memcmp(q, p, m);
            check(c < 0 || (c == 0 && v->len[i - 1] < v->len[i]));
        }
    }
    check(sum == v->used);
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

/* A spaced-out copy of a value without quotes: a space after every comma and at both ends.
 * Its secondary key must equal the original's. */
static char *spaced(const char *s, size_t n, size_t *outn)
{
    char *o = malloc(2 * n + 2);
    if (!o)
        return NULL;
    size_t k = 0;
    o[k++] = ' ';
    for (size_t i = 0; i < n; i++) {
        o[k++] = s[i];
        if (s[i] == ',')
            o[k++] = ' ';
    }
    o[k++] = '\t';
    *outn = k;
    return o;
}

static void fuzz_vary(char **parts, size_t *lens, size_t np)
{
    if (np < 3)
        return;
    sl_cc_vary_t v;
    memset(&v, 0, sizeof(v));
    for (size_t i = 2; i < np; i++) {
        int r = sl_cc_vary_add(&v, parts[i], lens[i]);
        check(r == 0 || r == SL_EINVAL || r == SL_ETOOBIG);
        check((r == 0) == (v.flags == 0));
        check_vary(&v);
    }
    if (v.flags) {
        check(sl_cc_vary_key(&v, NULL, 0, NULL, 0) == SL_EINVAL);
        return;
    }
    /* a request with one field per part, named after the Vary names in turn */
    sl_http_header_t req[MAX_PARTS], alt[MAX_PARTS];
    char *sp[MAX_PARTS] = {0};
    size_t nreq = 0;
    int comparable = 1;
    for (size_t i = 0; i < np && v.n; i++) {
        unsigned j = (unsigned)(i % v.n);
        static char names[SL_CC_VARY_MAX][256];
        memcpy(names[j], v.names + v.off[j], v.len[j]);
        names[j][v.len[j]] = 0;
        req[nreq] = hdr(names[j], parts[i], lens[i]);
        alt[nreq] = req[nreq];
        /* quoted strings and control bytes (which the HTTP parser rejects) are out */
        int plain = memchr(parts[i], '"', lens[i]) == NULL;
        for (size_t k = 0; k < lens[i]; k++)
            if ((unsigned char)parts[i][k] < 0x20 && parts[i][k] != '\t')
                plain = 0;
        size_t sn;
        if (plain && (sp[nreq] = spaced(parts[i], lens[i], &sn)) != NULL) {
            alt[nreq].value = sp[nreq];
            alt[nreq].value_len = (uint32_t)sn;
        } else if (!plain) {
            comparable = 0;
        }
        nreq++;
    }
    static char a[4096], b[8192];
    int64_t la = sl_cc_vary_key(&v, req, (unsigned)nreq, a, sizeof(a));
    check(la >= 0 || la == SL_ETOOBIG);
    uint64_t ha = sl_cc_vary_hash(&v, req, (unsigned)nreq);
    if (la >= 0) {
        if (la <= 256)
            check(ha == sl_hash_bytes(a, (size_t)la));
        int64_t la2 = sl_cc_vary_key(&v, req, (unsigned)nreq, b, sizeof(b));
        check(la2 == la && memcmp(a, b, (size_t)la) == 0);
    }
    if (comparable) {
        int64_t lb = sl_cc_vary_key(&v, alt, (unsigned)nreq, b, sizeof(b));
        check(sl_cc_vary_hash(&v, alt, (unsigned)nreq) == ha);
        if (la >= 0)
            check(lb == la && memcmp(a, b, (size_t)la) == 0);
    }
    for (size_t i = 0; i < nreq; i++)
        free(sp[i]);
}

/* Every part as a response field and a request field: the rules must hold for any bytes. */
static void fuzz_rules(char **parts, size_t *lens, size_t np)
{
    static const char *const resp_names[] = {"Cache-Control",
                                             "CDN-Cache-Control",
                                             "Sluice-Cache-Control",
                                             "Expires",
                                             "Date",
                                             "Age",
                                             "Vary",
                                             "ETag",
                                             "Last-Modified",
                                             "Set-Cookie",
                                             "Connection",
                                             "Cache-Control"};
    static const char *const req_names[] = {
        "Cache-Control",       "Pragma", "If-None-Match",   "If-Modified-Since",
        "Authorization",       "Accept", "If-Match",        "Cache-Control",
        "If-Unmodified-Since", "Cookie", "Accept-Encoding", "If-None-Match"};
    sl_http_header_t resp[MAX_PARTS], req[MAX_PARTS];
    for (size_t i = 0; i < np; i++) {
        resp[i] = hdr(resp_names[i], parts[i], lens[i]);
        req[i] = hdr(req_names[(i + 1) % MAX_PARTS], parts[i], lens[i]);
    }
    unsigned n = (unsigned)np;
    sl_cc_route_t route = {.ttl_ms = 30000, .swr_ms = 10000, .sie_ms = 60000};
    if (np && lens[0])
        route.override = parts[0][0] & 1, route.allow_set_cookie = (parts[0][0] >> 1) & 1;
    const char *why = NULL;
    int s = sl_cc_storable(SL_M_GET, 200, req, n, resp, n, &route, &why);
    check((s == 0 || s == 1) && why != NULL);

    sl_cc_entry_t e;
    sl_cc_entry_init(&e, resp, n, T0, T0 + 1500, &route);
    check_cc(&e.cc);
    check(e.lifetime_ms >= 0 && e.lifetime_ms <= (int64_t)SL_CC_DELTA_MAX * 1000);
    check(e.corrected_initial_age_ms >= 0 && e.age_value_ms >= 0);
    sl_cc_t rq;
    sl_cc_request_directives(req, n, &rq);
    check_cc(&rq);
    int64_t nows[] = {T0, T0 + 1500, T0 + 60000, T0 + 86400000LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
        sl_cc_decision_t d;
        int a = sl_cc_lookup(&e, &rq, &route, nows[i], &d);
        check(a == d.action && a >= SL_CC_ACT_FRESH && a <= SL_CC_ACT_UNSATISFIABLE);
        check(d.why != NULL && d.age_ms >= 0 && d.error_grace_ms >= 0);
        check(sl_cc_is_fresh(&e, nows[i]) == (sl_cc_staleness_ms(&e, nows[i]) < 0));
        check(sl_cc_age_header(&e, nows[i]) <= SL_CC_DELTA_MAX);
        check(sl_cc_usable_ms(&e, &route, nows[i]) >= 0);
        a = sl_cc_lookup(&e, NULL, NULL, nows[i], &d);
        check(a != SL_CC_ACT_UNSATISFIABLE && a != SL_CC_ACT_STALE_OK);
        check(a == SL_CC_ACT_FRESH ? sl_cc_is_fresh(&e, nows[i]) : 1);
    }
    int c = sl_cc_conditional(req, n, 200, resp, n, T0);
    check(c == SL_CC_COND_FULL || c == SL_CC_COND_NOT_MODIFIED || c == SL_CC_COND_FORWARD);
    for (unsigned i = 0; i < n; i++) {
        int dr = sl_cc_store_drops(&resp[i], resp, n);
        check(dr == 0 || dr == 1);
        check(!(dr && sl_cc_304_updates(&resp[i], resp, n)));
    }
    if (np >= 2) {
        int m = sl_cc_etag_match(parts[0], lens[0], parts[1], lens[1]);
        check(m == 0 || m == 1);
        if (sl_cc_etag_match(parts[1], lens[1], parts[1], lens[1]))
            check(sl_cc_etag_match("*", 1, parts[1], lens[1]));
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
    if (np > 0)
        fuzz_directives(parts[0], lens[0]);
    if (np > 1)
        fuzz_date(parts[1], lens[1]);
    fuzz_vary(parts, lens, np);
    fuzz_rules(parts, lens, np);
    for (size_t i = 0; i < np; i++)
        free(parts[i]);
    return 0;
}
