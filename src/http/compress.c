/* compress.c - content-coding negotiation and the compression rules; see compress.h.
 * Pure: no I/O, no allocation, no clock. Every input is a (pointer, length) pair and is
 * never read past its length. */
#include "compress.h"

#include "../core/lex.h"

#include <stddef.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Bytes
 * ------------------------------------------------------------------------------------- */

#define IEQ(a, n, lit) sl_ieq_lit((a), (n), lit, sizeof(lit) - 1)

/* [a, b) ends with the lower-case literal lit, ignoring case, with at least one byte
 * before it. */
static int iends_with(const char *a, const char *b, const char *lit, size_t litlen)
{
    return (size_t)(b - a) > litlen && sl_ieq_lit(b - litlen, litlen, lit, litlen);
}

/* Header field h is named lit (a lower-case literal). By name, not by id: hand-built
 * header arrays (tests, the cache's) carry no ids. */
static int hdr_is(const sl_http_header_t *h, const char *lit, size_t litlen)
{
    return h->name && sl_ieq_lit(h->name, h->name_len, lit, litlen);
}
#define HDR_IS(h, lit) hdr_is((h), lit, sizeof(lit) - 1)

/* The end of the list element starting at p: the first comma outside a quoted-string, or
 * e. A backslash inside quotes escapes the next byte; an unterminated quote runs to e. */
static const char *element_end(const char *p, const char *e)
{
    int quoted = 0;
    for (; p < e; p++) {
        if (quoted) {
            if (*p == '\\' && p + 1 < e)
                p++;
            else if (*p == '"')
                quoted = 0;
        } else if (*p == '"') {
            quoted = 1;
        } else if (*p == ',') {
            break;
        }
    }
    return p;
}

/* The next non-empty element of the list [*pp, e), trimmed, into [*s, *t); advances *pp
 * past it and its comma. 0 when the list has no more elements. */
static int next_element(const char **pp, const char *e, const char **s, const char **t)
{
    while (*pp < e) {
        const char *a = *pp, *b = element_end(a, e);
        *pp = b < e ? b + 1 : e;
        sl_trim(&a, &b);
        if (a < b) {
            *s = a;
            *t = b;
            return 1;
        }
    }
    return 0;
}

/* The value of h as [*s, *e); 0 when it has none (a NULL value: nothing to scan). */
static int hval(const sl_http_header_t *h, const char **s, const char **e)
{
    if (!h->value || !h->value_len)
        return 0;
    *s = h->value;
    *e = h->value + h->value_len;
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * Codings
 * ------------------------------------------------------------------------------------- */

const char *sl_compress_token(int coding)
{
    switch (coding) {
    case SL_COMPRESS_GZIP:
        return "gzip";
    case SL_COMPRESS_BR:
        return "br";
    default:
        return "";
    }
}

const char *sl_compress_suffix(int coding)
{
    switch (coding) {
    case SL_COMPRESS_GZIP:
        return ".gz";
    case SL_COMPRESS_BR:
        return ".br";
    default:
        return "";
    }
}

/* ---------------------------------------------------------------------------------------
 * Accept-Encoding
 * ------------------------------------------------------------------------------------- */

/* qvalue (RFC 9110 §12.4.2) exactly filling [p, e), in thousandths: 1 and *out, else 0. */
static int qvalue_parse(const char *p, const char *e, unsigned *out)
{
    size_t n = (size_t)(e - p);
    if (n == 0 || (p[0] != '0' && p[0] != '1'))
        return 0;
    unsigned v = (unsigned)(p[0] - '0') * 1000u, scale = 100;
    if (n > 1) {
        if (p[1] != '.' || n > 5)
            return 0;
        for (size_t i = 2; i < n; i++, scale /= 10) {
            if (p[i] < '0' || p[i] > '9')
                return 0;
            v += (unsigned)(p[i] - '0') * scale;
        }
    }
    if (v > SL_COMPRESS_Q_MAX) /* "1.5", "1.001": only zeros may follow a 1 */
        return 0;
    *out = v;
    return 1;
}

/* The end of a quoted-string starting at p (*p == '"'), past its closing quote; NULL when
 * it is not closed before e. */
static const char *skip_quoted(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\') {
            if (++p == e)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* Where a coding name is recorded: an index into sl_compress_accept_t.q, or -1. */
static int coding_index(const char *name, size_t len)
{
    if (IEQ(name, len, "br"))
        return SL_COMPRESS_BR;
    if (IEQ(name, len, "gzip") || IEQ(name, len, "x-gzip"))
        return SL_COMPRESS_GZIP;
    if (IEQ(name, len, "identity"))
        return SL_COMPRESS_IDENTITY;
    if (len == 1 && name[0] == '*')
        return SL_COMPRESS_STAR;
    return -1;
}

/* One trimmed, non-empty element [p, e): codings *( OWS ";" OWS [ parameter ] ).
 * 1 with the name and its weight, or 0 when the element is invalid. */
static int accept_element(const char *p, const char *e, const char **name, size_t *nlen,
                          unsigned *q)
{
    const char *t = sl_skip_token(p, e);
    if (t == p)
        return 0;
    *name = p;
    *nlen = (size_t)(t - p);
    *q = SL_COMPRESS_Q_MAX;
    int seen_q = 0;
    p = t;
    for (;;) {
        p = sl_skip_ows(p, e);
        if (p == e)
            return 1;
        if (*p != ';')
            return 0;
        p = sl_skip_ows(p + 1, e);
        if (p == e || *p == ';') /* an empty parameter */
            continue;
        const char *pn = p;
        p = sl_skip_token(p, e);
        if (p == pn || p == e || *p != '=')
            return 0;
        int is_q = (p - pn == 1) && sl_lower((unsigned char)*pn) == 'q';
        p++;
        if (is_q) {
            const char *v = p;
            p = sl_skip_token(p, e);
            if (seen_q || !qvalue_parse(v, p, q))
                return 0;
            seen_q = 1;
        } else if (p < e && *p == '"') {
            if (!(p = skip_quoted(p, e)))
                return 0;
        } else {
            const char *v = p;
            p = sl_skip_token(p, e);
            if (p == v)
                return 0;
        }
    }
}

int sl_compress_accept_parse(const char *v, size_t n, sl_compress_accept_t *out)
{
    out->present = 1;
    if (!v || !n)
        return 0;
    const char *p = v, *e = v + n, *s, *t;
    int valid = 0;
    while (next_element(&p, e, &s, &t)) {
        const char *name;
        size_t nlen;
        unsigned q;
        if (!accept_element(s, t, &name, &nlen, &q)) {
            if (out->ignored < UINT16_MAX)
                out->ignored++;
            continue;
        }
        valid++;
        int i = coding_index(name, nlen);
        if (i < 0)
            continue;
        unsigned bit = 1u << i;
        if (!(out->listed & bit) || q < out->q[i]) /* duplicates: the lowest q */
            out->q[i] = (uint16_t)q;
        out->listed |= (uint8_t)bit;
    }
    return valid;
}

void sl_compress_accept_from(const sl_http_header_t *req, unsigned n, sl_compress_accept_t *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < n; i++)
        if (HDR_IS(&req[i], "accept-encoding"))
            sl_compress_accept_parse(req[i].value, req[i].value_len, out);
}

unsigned sl_compress_q(const sl_compress_accept_t *a, int coding)
{
    if (coding != SL_COMPRESS_IDENTITY && coding != SL_COMPRESS_GZIP && coding != SL_COMPRESS_BR)
        return 0;
    if (!a->present) /* no field: identity only (see compress.h) */
        return coding == SL_COMPRESS_IDENTITY ? SL_COMPRESS_Q_MAX : 0;
    if (a->listed & (1u << coding))
        return a->q[coding];
    if (a->listed & (1u << SL_COMPRESS_STAR))
        return a->q[SL_COMPRESS_STAR];
    return coding == SL_COMPRESS_IDENTITY ? 1 : 0; /* acceptable, but the last resort */
}

int sl_compress_choose(const sl_compress_accept_t *a, unsigned available)
{
    /* In server preference order: a later candidate wins only with a strictly higher q. */
    static const int order[] = {SL_COMPRESS_BR, SL_COMPRESS_GZIP, SL_COMPRESS_IDENTITY};
    int best = SL_COMPRESS_NOT_ACCEPTABLE;
    unsigned best_q = 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(order); i++) {
        int c = order[i];
        if (c != SL_COMPRESS_IDENTITY && !(available & (1u << c)))
            continue;
        unsigned q = sl_compress_q(a, c);
        if (q > best_q) {
            best = c;
            best_q = q;
        }
    }
    return best;
}

/* ---------------------------------------------------------------------------------------
 * Eligibility
 * ------------------------------------------------------------------------------------- */

/* Exact media types (lower case) worth compressing besides text/..., +json and +xml. */
static const char *const COMPRESSIBLE[] = {
    "application/json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/wasm",
    "application/vnd.ms-fontobject",
    "application/x-font-ttf",
    "application/x-font-otf",
    "font/ttf",
    "font/otf",
    "font/collection",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
};

int sl_compress_type_ok(const char *v, size_t n)
{
    if (!v || !n)
        return 0;
    const char *p = v, *e = v + n;
    p = sl_skip_ows(p, e);
    const char *type = p;
    p = sl_skip_token(p, e);
    if (p == type || p == e || *p != '/')
        return 0;
    const char *slash = p, *sub = ++p;
    p = sl_skip_token(p, e);
    if (p == sub)
        return 0;
    const char *end = p;
    p = sl_skip_ows(p, e);
    if (p < e && *p != ';') /* parameters (charset, ...) do not matter; junk does */
        return 0;
    size_t tlen = (size_t)(slash - type), len = (size_t)(end - type);
    if (IEQ(type, tlen, "text"))
        return !IEQ(sub, (size_t)(end - sub), "event-stream");
    if (iends_with(sub, end, "+json", 5) || iends_with(sub, end, "+xml", 4))
        return 1;
    for (size_t i = 0; i < SL_ARRAY_LEN(COMPRESSIBLE); i++)
        if (sl_ieq_lit(type, len, COMPRESSIBLE[i], strlen(COMPRESSIBLE[i])))
            return 1;
    return 0;
}

/* Does some line named lit (lower case) of h[0..n) have a list element whose name (the
 * token before any '=' or ';') is want (lower case)? For Cache-Control directives and
 * Vary names. */
static int list_has(const sl_http_header_t *h, unsigned n, const char *lit, size_t litlen,
                    const char *want, size_t wantlen)
{
    for (unsigned i = 0; i < n; i++) {
        const char *p, *e, *s, *t;
        if (!hdr_is(&h[i], lit, litlen) || !hval(&h[i], &p, &e))
            continue;
        while (next_element(&p, e, &s, &t)) {
            const char *k = sl_skip_token(s, t);
            if (sl_ieq_lit(s, (size_t)(k - s), want, wantlen))
                return 1;
        }
    }
    return 0;
}
#define LIST_HAS(h, n, lit, want) list_has((h), (n), lit, sizeof(lit) - 1, want, sizeof(want) - 1)

/* Some line named lit of h[0..n) has an element (after trimming) other than the one of
 * the lower-case literal ok; an empty line counts as "other" when empty_is_other. */
static int list_has_other(const sl_http_header_t *h, unsigned n, const char *lit, size_t litlen,
                          const char *ok, size_t oklen, int empty_is_other)
{
    for (unsigned i = 0; i < n; i++) {
        if (!hdr_is(&h[i], lit, litlen))
            continue;
        const char *p, *e, *s, *t;
        int any = 0;
        if (hval(&h[i], &p, &e)) {
            while (next_element(&p, e, &s, &t)) {
                any = 1;
                if (!sl_ieq_lit(s, (size_t)(t - s), ok, oklen))
                    return 1;
            }
        }
        if (!any && empty_is_other)
            return 1;
    }
    return 0;
}

enum { CL_NONE = 0, CL_OK = 1, CL_BAD = -1 };

/* The Content-Length of resp[0..n): CL_NONE, CL_BAD (not 1*DIGIT, too large, or lines and
 * list elements that disagree), or CL_OK and *len. */
static int content_length(const sl_http_header_t *resp, unsigned n, uint64_t *len)
{
    int state = CL_NONE;
    for (unsigned i = 0; i < n; i++) {
        if (!HDR_IS(&resp[i], "content-length"))
            continue;
        const char *p, *e, *s, *t;
        if (!hval(&resp[i], &p, &e))
            return CL_BAD;
        int any = 0;
        while (next_element(&p, e, &s, &t)) {
            uint64_t v = 0;
            if (t - s > 19) /* 19 digits always fit in 64 bits */
                return CL_BAD;
            for (const char *c = s; c < t; c++) {
                if (*c < '0' || *c > '9')
                    return CL_BAD;
                v = v * 10 + (uint64_t)(*c - '0');
            }
            if (state == CL_OK && v != *len)
                return CL_BAD;
            *len = v;
            state = CL_OK;
            any = 1;
        }
        if (!any)
            return CL_BAD;
    }
    return state;
}

/* The single Content-Type of resp[0..n) is compressible: 0 when absent, when lines differ
 * (byte for byte) or when sl_compress_type_ok says no. */
static int type_ok(const sl_http_header_t *resp, unsigned n)
{
    const sl_http_header_t *ct = NULL;
    for (unsigned i = 0; i < n; i++) {
        if (!HDR_IS(&resp[i], "content-type"))
            continue;
        if (ct && (ct->value_len != resp[i].value_len ||
                   (ct->value_len && memcmp(ct->value, resp[i].value, ct->value_len) != 0)))
            return 0;
        ct = &resp[i];
    }
    return ct && sl_compress_type_ok(ct->value, ct->value_len);
}

static int verdict(const char **why, const char *reason, int r)
{
    if (why)
        *why = reason;
    return r;
}

int sl_compress_eligible(int method, int status, const sl_http_header_t *req, unsigned nreq,
                         const sl_http_header_t *resp, unsigned nresp, uint64_t min_length,
                         const char **why)
{
    if (method == SL_M_HEAD || method == SL_M_CONNECT)
        return verdict(why, "method", 0);
    if (status < 200 || status > 599)
        return verdict(why, "status", 0);
    if (status == 204 || status == 205 || status == 304)
        return verdict(why, "no content", 0);
    if (status == 206)
        return verdict(why, "partial", 0);
    for (unsigned i = 0; i < nresp; i++)
        if (HDR_IS(&resp[i], "content-range"))
            return verdict(why, "content-range", 0);
    if (list_has_other(resp, nresp, "content-encoding", 16, "identity", 8, 1))
        return verdict(why, "encoded", 0);
    if (list_has_other(resp, nresp, "transfer-encoding", 17, "chunked", 7, 0))
        return verdict(why, "transfer-coded", 0);
    if (LIST_HAS(resp, nresp, "cache-control", "no-transform"))
        return verdict(why, "no-transform", 0);
    if (LIST_HAS(req, nreq, "cache-control", "no-transform"))
        return verdict(why, "request no-transform", 0);
    if (!type_ok(resp, nresp))
        return verdict(why, "type", 0);
    uint64_t len = 0;
    int cl = content_length(resp, nresp, &len);
    if (cl == CL_BAD)
        return verdict(why, "content-length", 0);
    if (cl == CL_OK && (len == 0 || len < min_length))
        return verdict(why, "too small", 0);
    return verdict(why, "ok", 1);
}

/* ---------------------------------------------------------------------------------------
 * Vary and variants
 * ------------------------------------------------------------------------------------- */

int sl_compress_vary_has(const sl_http_header_t *resp, unsigned n)
{
    return LIST_HAS(resp, n, "vary", "accept-encoding") || LIST_HAS(resp, n, "vary", "*");
}

/* ---------------------------------------------------------------------------------------
 * ETag
 * ------------------------------------------------------------------------------------- */

int64_t sl_compress_etag(const char *etag, size_t n, int coding, char *out, size_t cap)
{
    const char *suffix;
    switch (coding) {
    case SL_COMPRESS_IDENTITY:
        suffix = "";
        break;
    case SL_COMPRESS_GZIP:
        suffix = "-gzip";
        break;
    case SL_COMPRESS_BR:
        suffix = "-br";
        break;
    default:
        return SL_EINVAL;
    }
    if (!etag || !n)
        return SL_EINVAL;
    const char *s = etag, *e = etag + n;
    sl_trim(&s, &e);
    /* entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text */
    const char *q = s;
    if (e - q >= 2 && q[0] == 'W' && q[1] == '/')
        q += 2;
    if (e - q < 2 || q[0] != '"' || e[-1] != '"')
        return SL_EINVAL;
    for (const char *c = q + 1; c < e - 1; c++) {
        unsigned char b = (unsigned char)*c;
        if (!(b == 0x21 || (b >= 0x23 && b <= 0x7e) || b >= 0x80))
            return SL_EINVAL;
    }
    size_t body = (size_t)(e - 1 - s), slen = strlen(suffix), total = body + slen + 1;
    if (!out || total > cap)
        return SL_ETOOBIG;
    memcpy(out, s, body);
    memcpy(out + body, suffix, slen);
    out[body + slen] = '"';
    return (int64_t)total;
}
