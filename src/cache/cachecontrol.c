/* cachecontrol.c - RFC 9111 / RFC 9213 / RFC 5861 rules of the shared cache; see
 * cachecontrol.h. Pure: no I/O, no allocation, no clock. Every input is a (pointer, length)
 * pair and is never read past its length. */
#include "cachecontrol.h"

#include "../core/httpdate.h"
#include "../core/lex.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "../core/hash.h"

/* ---------------------------------------------------------------------------------------
 * Bytes
 * ------------------------------------------------------------------------------------- */

/* Header field h is named lit (lower-case literal). By name, not by id: the ids are the
 * parser's business and hand-built header arrays (tests, the cache's own) carry none. */
static int hdr_is(const sl_http_header_t *h, const char *lit, size_t litlen)
{
    return h->name && sl_ieq_lit(h->name, h->name_len, lit, litlen);
}
#define HDR_IS(h, lit) hdr_is((h), lit, sizeof(lit) - 1)

static const sl_http_header_t *find_hdr(const sl_http_header_t *h, unsigned n, const char *lit,
                                        size_t litlen)
{
    for (unsigned i = 0; i < n; i++)
        if (hdr_is(&h[i], lit, litlen))
            return &h[i];
    return NULL;
}
#define FIND(h, n, lit) find_hdr((h), (n), lit, sizeof(lit) - 1)

static const char *hval_end(const sl_http_header_t *h)
{
    return h->value ? h->value + h->value_len : NULL;
}

/* Saturating int64 arithmetic: times come from callers and fuzzers, and an overflow must
 * never turn into a negative age (RFC 9111 §1.2.2's concern, in milliseconds). */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t ms_cap(uint64_t ms)
{
    return ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ms;
}

/* ---------------------------------------------------------------------------------------
 * Directives (RFC 9111 §5.2)
 * ------------------------------------------------------------------------------------- */

enum { K_BOOL, K_DELTA, K_MAX_STALE };
/* How a repeated valued directive combines with the earlier value (RFC 9111 §4.2.1). */
enum { M_CONFLICT_ZERO, M_MIN, M_MAX };

typedef struct directive {
    const char *name; /* lower case */
    uint8_t kind;
    uint8_t merge;
    uint8_t off; /* offsetof the uint32_t value in sl_cc_t (valued kinds) */
    uint32_t flag;
} directive_t;

/* Every directive sluice acts on, request and response (RFC 9111 §5.2.1, §5.2.2; RFC 5861;
 * RFC 8246). Unknown ones are ignored (§5.2.3). */
static const directive_t DIRECTIVES[] = {
    {"no-store", K_BOOL, 0, 0, SL_CC_NO_STORE},
    {"no-cache", K_BOOL, 0, 0, SL_CC_NO_CACHE},
    {"private", K_BOOL, 0, 0, SL_CC_PRIVATE},
    {"public", K_BOOL, 0, 0, SL_CC_PUBLIC},
    {"must-revalidate", K_BOOL, 0, 0, SL_CC_MUST_REVALIDATE},
    {"proxy-revalidate", K_BOOL, 0, 0, SL_CC_PROXY_REVALIDATE},
    {"no-transform", K_BOOL, 0, 0, SL_CC_NO_TRANSFORM},
    {"immutable", K_BOOL, 0, 0, SL_CC_IMMUTABLE},
    {"must-understand", K_BOOL, 0, 0, SL_CC_MUST_UNDERSTAND},
    {"only-if-cached", K_BOOL, 0, 0, SL_CC_ONLY_IF_CACHED},
    {"max-age", K_DELTA, M_CONFLICT_ZERO, offsetof(sl_cc_t, max_age), SL_CC_MAX_AGE},
    {"s-maxage", K_DELTA, M_CONFLICT_ZERO, offsetof(sl_cc_t, s_maxage), SL_CC_S_MAXAGE},
    {"max-stale", K_MAX_STALE, M_MIN, offsetof(sl_cc_t, max_stale), SL_CC_MAX_STALE},
    {"min-fresh", K_DELTA, M_MAX, offsetof(sl_cc_t, min_fresh), SL_CC_MIN_FRESH},
    {"stale-while-revalidate", K_DELTA, M_MIN, offsetof(sl_cc_t, stale_while_revalidate),
     SL_CC_STALE_WHILE_REVALIDATE},
    {"stale-if-error", K_DELTA, M_MIN, offsetof(sl_cc_t, stale_if_error), SL_CC_STALE_IF_ERROR},
};

static const directive_t *find_directive(const char *name, size_t len)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(DIRECTIVES); i++)
        if (sl_ieq_lit(name, len, DIRECTIVES[i].name, strlen(DIRECTIVES[i].name)))
            return &DIRECTIVES[i];
    return NULL;
}

static uint32_t *slot(sl_cc_t *cc, const directive_t *d)
{
    return (uint32_t *)((char *)cc + d->off);
}

/* Record value v for valued directive d, combining with an earlier occurrence. */
static void merge_value(sl_cc_t *cc, const directive_t *d, uint32_t v)
{
    uint32_t *s = slot(cc, d);
    if (!(cc->flags & d->flag)) {
        cc->flags |= d->flag;
        *s = v;
        return;
    }
    switch (d->merge) {
    case M_CONFLICT_ZERO: /* §4.2.1: duplicates with different values are invalid: stale */
        if (*s != v)
            *s = 0;
        break;
    case M_MIN:
        if (v < *s)
            *s = v;
        break;
    default:
        if (v > *s)
            *s = v;
        break;
    }
}

/* delta-seconds (§1.2.2) from p[0..e), unescaping quoted-pairs when quoted. 1 and *out
 * (clamped to 2^31) when it is 1*DIGIT, else 0. */
static int delta_parse(const char *p, const char *e, int quoted, uint32_t *out)
{
    uint64_t v = 0;
    size_t digits = 0;
    while (p < e) {
        unsigned char c = (unsigned char)*p++;
        if (quoted && c == '\\' && p < e)
            c = (unsigned char)*p++;
        if (c < '0' || c > '9')
            return 0;
        digits++;
        if (v <= SL_CC_DELTA_MAX)
            v = v * 10 + (uint64_t)(c - '0');
    }
    if (digits == 0)
        return 0;
    *out = v > SL_CC_DELTA_MAX ? SL_CC_DELTA_MAX : (uint32_t)v;
    return 1;
}

/* Advance past the rest of a list element: to the next comma outside a quoted string. */
static const char *skip_element(const char *p, const char *e)
{
    int inq = 0;
    while (p < e) {
        char c = *p;
        if (inq) {
            if (c == '\\' && p + 1 < e)
                p++;
            else if (c == '"')
                inq = 0;
        } else if (c == '"') {
            inq = 1;
        } else if (c == ',') {
            break;
        }
        p++;
    }
    return p;
}

int sl_cc_parse(const char *v, size_t n, sl_cc_t *out)
{
    if (!v)
        return 0;
    const char *p = v, *e = v + n;
    int count = 0;
    while (p < e) {
        while (p < e && (sl_is_ows((unsigned char)*p) || *p == ','))
            p++;
        if (p == e)
            break;
        const char *name = p;
        while (p < e && sl_is_tchar((unsigned char)*p))
            p++;
        size_t name_len = (size_t)(p - name);
        if (name_len == 0) { /* not a directive: skip the element */
            p = skip_element(p, e);
            continue;
        }
        int has_value = 0, quoted = 0, bad = 0;
        const char *vs = NULL, *ve = NULL;
        const char *q = sl_skip_ows(p, e);
        if (q < e && *q == '=') {
            has_value = 1;
            q = sl_skip_ows(q + 1, e);
            if (q < e && *q == '"') {
                quoted = 1;
                vs = ++q;
                while (q < e && *q != '"')
                    q += (*q == '\\' && q + 1 < e) ? 2 : 1;
                ve = q;
                if (q < e)
                    q++; /* the closing quote */
                else
                    bad = 1; /* unterminated */
            } else {
                vs = q;
                while (q < e && sl_is_tchar((unsigned char)*q))
                    q++;
                ve = q;
            }
            p = q;
        }
        p = sl_skip_ows(p, e);
        if (p < e && *p != ',') { /* trailing garbage: the element's value is invalid */
            bad = 1;
            p = skip_element(p, e);
        }
        const directive_t *d = find_directive(name, name_len);
        if (!d)
            continue; /* unknown directives are ignored (§5.2.3) */
        count++;
        if (d->kind == K_BOOL) {
            out->flags |= d->flag; /* an argument on an argument-less directive is ignored */
            continue;
        }
        uint32_t val = 0;
        if (d->kind == K_MAX_STALE && !has_value && !bad)
            val = SL_CC_DELTA_MAX; /* bare max-stale: any staleness (§5.2.1.2) */
        else if (!has_value || bad || !delta_parse(vs, ve, quoted, &val))
            val = 0; /* invalid: §4.2.1 "consider ... invalid freshness information ... stale" */
        merge_value(out, d, val);
    }
    return count;
}

/* ---------------------------------------------------------------------------------------
 * Targeted fields: Structured Field Dictionaries (RFC 8941 §3.2, §4.2.2; RFC 9213 §2.1)
 * ------------------------------------------------------------------------------------- */

enum { SF_INT, SF_DEC, SF_STR, SF_TOK, SF_BIN, SF_BOOL, SF_LIST };

typedef struct sf_item {
    int type;
    int64_t ival; /* SF_INT; SF_BOOL: 0 or 1 */
} sf_item_t;

static int is_lcalpha(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ) */
static int sf_key(const char **pp, const char *e, const char **k, size_t *klen)
{
    const char *p = *pp;
    if (p == e || !(is_lcalpha((unsigned char)*p) || *p == '*'))
        return 0;
    *k = p++;
    while (p < e) {
        unsigned char c = (unsigned char)*p;
        if (!(is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '.' || c == '*'))
            break;
        p++;
    }
    *klen = (size_t)(p - *k);
    *pp = p;
    return 1;
}

static int sf_base64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '+' ||
           c == '/' || c == '=';
}

/* bare-item (RFC 8941 §4.2.3.1). 1 on success. */
static int sf_bare_item(const char **pp, const char *e, sf_item_t *it)
{
    const char *p = *pp;
    if (p == e)
        return 0;
    unsigned char c = (unsigned char)*p;
    if (c == '-' || is_digit(c)) { /* §4.2.4 */
        int neg = 0, dec = 0;
        size_t ndig = 0, frac = 0;
        int64_t v = 0;
        if (c == '-') {
            neg = 1;
            p++;
        }
        if (p == e || !is_digit((unsigned char)*p))
            return 0;
        while (p < e) {
            c = (unsigned char)*p;
            if (is_digit(c)) {
                if (dec)
                    frac++;
                else
                    v = v * 10 + (c - '0'); /* at most 15 digits: no overflow */
                ndig++;
            } else if (c == '.' && !dec) {
                if (ndig > 12)
                    return 0;
                dec = 1;
            } else {
                break;
            }
            p++;
            if (!dec && ndig > 15)
                return 0;
            if (dec && ndig > 15) /* 12 + 3; the fraction check below catches the rest */
                return 0;
        }
        if (dec && (frac == 0 || frac > 3))
            return 0;
        it->type = dec ? SF_DEC : SF_INT;
        it->ival = neg ? -v : v;
        *pp = p;
        return 1;
    }
    if (c == '"') { /* §4.2.5 */
        p++;
        while (p < e) {
            c = (unsigned char)*p++;
            if (c == '\\') {
                if (p == e || (*p != '"' && *p != '\\'))
                    return 0;
                p++;
            } else if (c == '"') {
                it->type = SF_STR;
                *pp = p;
                return 1;
            } else if (c < 0x20 || c > 0x7e) {
                return 0;
            }
        }
        return 0;
    }
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*') { /* §4.2.6 */
        p++;
        while (p < e && (sl_is_tchar((unsigned char)*p) || *p == ':' || *p == '/'))
            p++;
        it->type = SF_TOK;
        *pp = p;
        return 1;
    }
    if (c == ':') { /* §4.2.7 */
        p++;
        while (p < e && sf_base64((unsigned char)*p))
            p++;
        if (p == e || *p != ':')
            return 0;
        it->type = SF_BIN;
        *pp = p + 1;
        return 1;
    }
    if (c == '?') { /* §4.2.8 */
        if (p + 1 == e || (p[1] != '0' && p[1] != '1'))
            return 0;
        it->type = SF_BOOL;
        it->ival = p[1] == '1';
        *pp = p + 2;
        return 1;
    }
    return 0;
}

/* parameters (§4.2.3.2): *( ";" *SP key [ "=" bare-item ] ), values ignored. */
static int sf_params(const char **pp, const char *e)
{
    const char *p = *pp;
    while (p < e && *p == ';') {
        p++;
        while (p < e && *p == ' ')
            p++;
        const char *k;
        size_t kl;
        if (!sf_key(&p, e, &k, &kl))
            return 0;
        if (p < e && *p == '=') {
            p++;
            sf_item_t it;
            if (!sf_bare_item(&p, e, &it))
                return 0;
        }
    }
    *pp = p;
    return 1;
}

/* inner-list (§4.2.1.2), starting at "(". */
static int sf_inner_list(const char **pp, const char *e)
{
    const char *p = *pp + 1;
    while (p < e) {
        while (p < e && *p == ' ')
            p++;
        if (p < e && *p == ')') {
            p++;
            if (!sf_params(&p, e))
                return 0;
            *pp = p;
            return 1;
        }
        sf_item_t it;
        if (!sf_bare_item(&p, e, &it) || !sf_params(&p, e))
            return 0;
        if (p == e || (*p != ' ' && *p != ')'))
            return 0;
    }
    return 0;
}

/* Apply one dictionary member to out: the last occurrence wins (RFC 8941 §4.2.2). */
static void sf_apply(sl_cc_t *out, const directive_t *d, const sf_item_t *it)
{
    if (it->type == SF_BOOL && it->ival == 0) { /* "=?0": the directive is off */
        out->flags &= ~d->flag;
        if (d->kind != K_BOOL)
            *slot(out, d) = 0;
        return;
    }
    out->flags |= d->flag;
    if (d->kind == K_BOOL)
        return; /* any other value: present (no-cache="f" / private="f" count whole) */
    uint32_t v = 0;
    if (it->type == SF_INT && it->ival >= 0)
        v = it->ival > (int64_t)SL_CC_DELTA_MAX ? SL_CC_DELTA_MAX : (uint32_t)it->ival;
    else if (d->kind == K_MAX_STALE && it->type == SF_BOOL)
        v = SL_CC_DELTA_MAX;
    /* else: RFC 9213 §2.1 "SHOULD NOT consume values that violate these inferred
     * constraints" - an invalid value, 0 (stale) as in RFC 9111 §4.2.1 */
    *slot(out, d) = v;
}

int sl_cc_parse_targeted(const char *v, size_t n, sl_cc_t *out)
{
    if (!v)
        return n ? SL_EBADMSG : SL_OK;
    const char *p = v, *e = v + n;
    sl_trim(&p, &e); /* §4.2: leading and trailing SP discarded (OWS: harmless leniency) */
    while (p < e) {
        const char *k;
        size_t klen;
        if (!sf_key(&p, e, &k, &klen))
            return SL_EBADMSG;
        sf_item_t it = {SF_BOOL, 1};
        if (p < e && *p == '=') {
            p++;
            if (p < e && *p == '(') {
                if (!sf_inner_list(&p, e))
                    return SL_EBADMSG;
                it.type = SF_LIST;
            } else if (!sf_bare_item(&p, e, &it) || !sf_params(&p, e)) {
                return SL_EBADMSG;
            }
        } else if (!sf_params(&p, e)) {
            return SL_EBADMSG;
        }
        const directive_t *d = find_directive(k, klen);
        if (d)
            sf_apply(out, d, &it);
        p = sl_skip_ows(p, e);
        if (p == e)
            break;
        if (*p != ',')
            return SL_EBADMSG;
        p = sl_skip_ows(p + 1, e);
        if (p == e)
            return SL_EBADMSG; /* trailing comma */
    }
    return SL_OK;
}

/* ---------------------------------------------------------------------------------------
 * Precedence (RFC 9213 §2.2, RFC 9111 §5.4)
 * ------------------------------------------------------------------------------------- */

static const struct target {
    const char *name;
    size_t len;
    uint8_t source;
} TARGETS[] = {
    /* sluice's target list, most specific first (RFC 9213 §2.2) */
    {"sluice-cache-control", sizeof("sluice-cache-control") - 1, SL_CC_SRC_SLUICE},
    {"cdn-cache-control", sizeof("cdn-cache-control") - 1, SL_CC_SRC_CDN},
};

void sl_cc_response_directives(const sl_http_header_t *h, unsigned n, sl_cc_t *out)
{
    for (size_t t = 0; t < SL_ARRAY_LEN(TARGETS); t++) {
        sl_cc_t tmp;
        memset(&tmp, 0, sizeof(tmp));
        int nonempty = 0, ok = 1;
        for (unsigned i = 0; i < n && ok; i++) {
            if (!hdr_is(&h[i], TARGETS[t].name, TARGETS[t].len))
                continue;
            const char *p = h[i].value, *e = hval_end(&h[i]);
            if (p)
                sl_trim(&p, &e);
            if (!p || p == e)
                continue; /* an empty line adds nothing to the combined value */
            nonempty = 1;
            ok = sl_cc_parse_targeted(p, (size_t)(e - p), &tmp) == SL_OK;
        }
        /* §2.1: an empty or unparsable targeted field is ignored, as if absent */
        if (ok && nonempty) {
            *out = tmp;
            out->source = TARGETS[t].source;
            return;
        }
    }
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < n; i++) {
        if (HDR_IS(&h[i], "cache-control")) {
            sl_cc_parse(h[i].value, h[i].value_len, out);
            out->source = SL_CC_SRC_CACHE_CONTROL;
        }
    }
}

void sl_cc_request_directives(const sl_http_header_t *h, unsigned n, sl_cc_t *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < n; i++) {
        if (HDR_IS(&h[i], "cache-control")) {
            sl_cc_parse(h[i].value, h[i].value_len, out);
            out->source = SL_CC_SRC_CACHE_CONTROL;
        }
    }
    if (out->source)
        return; /* §5.4: Pragma is ignored when Cache-Control is present */
    for (unsigned i = 0; i < n; i++) {
        if (HDR_IS(&h[i], "pragma") && h[i].value &&
            sl_http1_list_has(h[i].value, h[i].value_len, "no-cache", 8)) {
            out->flags |= SL_CC_NO_CACHE;
            out->source = SL_CC_SRC_PRAGMA;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * HTTP-date (RFC 9110 §5.6.7): core/httpdate, shared with the static files
 * ------------------------------------------------------------------------------------- */

int64_t sl_cc_date_parse(const char *v, size_t n, int64_t now_s)
{
    return sl_httpdate_parse(v, n, now_s);
}

size_t sl_cc_date_format(int64_t t, char out[29])
{
    return sl_httpdate_format(t, out);
}

/* The first field named lit parsed as an HTTP-date, or -1. */
static int64_t first_date(const sl_http_header_t *h, unsigned n, const char *lit, size_t litlen,
                          int64_t now_s)
{
    const sl_http_header_t *f = find_hdr(h, n, lit, litlen);
    return f ? sl_cc_date_parse(f->value, f->value_len, now_s) : -1;
}

/* ---------------------------------------------------------------------------------------
 * Storing (RFC 9111 §3) and freshness lifetime (§4.2.1)
 * ------------------------------------------------------------------------------------- */

int sl_cc_status_heuristic(int status)
{
    /* RFC 9110 §15.1 lists 206 too; we store no partial content (RFC 9111 §3.3). */
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return 1;
    default:
        return 0;
    }
}

/* Status codes whose caching requirements we implement, for must-understand (RFC 9111
 * §5.2.2.3): the final codes RFC 9110 §15 defines, but 206 and 304, which we never store. */
static int status_understood(int s)
{
    return (s >= 200 && s <= 205) || (s >= 300 && s <= 303) || s == 305 || s == 307 || s == 308 ||
           (s >= 400 && s <= 417) || s == 421 || s == 422 || s == 426 || (s >= 500 && s <= 505);
}

/* Expires applies (RFC 9213 §2.2: not under a targeted field). */
static int expires_applies(const sl_cc_t *cc)
{
    return cc->source == SL_CC_SRC_NONE || cc->source == SL_CC_SRC_CACHE_CONTROL;
}

int sl_cc_storable(int method, int status, const sl_http_header_t *req, unsigned nreq,
                   const sl_http_header_t *resp, unsigned nresp, const sl_cc_route_t *route,
                   const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    /* §3: the method is understood and cacheable. We store GET only: HEAD is answered from
     * a stored GET (§4.3.5), and other cacheable methods need keys we do not build. */
    if (method != SL_M_GET) {
        *why = "method";
        return 0;
    }
    /* §3: "the response status code is final"; 206 and 304 only if understood - we store
     * no partial content (§3.3, §3.4), and a 304 refreshes an entry (§4.3.4). */
    if (status < 100 || status > 599) {
        *why = "status";
        return 0;
    }
    if (status < 200) {
        *why = "interim";
        return 0;
    }
    if (status == 206) {
        *why = "partial";
        return 0;
    }
    if (status == 304) {
        *why = "not modified";
        return 0;
    }
    sl_cc_t rq, cc;
    sl_cc_request_directives(req, nreq, &rq);
    sl_cc_response_directives(resp, nresp, &cc);
    /* §5.2.1.5: request no-store - no part of the request or its response is stored. */
    if (rq.flags & SL_CC_NO_STORE) {
        *why = "request no-store";
        return 0;
    }
    /* §5.2.2.3: must-understand limits storage to caches that understand the status, and
     * such a cache ignores no-store; §5.2.2.5: otherwise no-store forbids storage. */
    if (cc.flags & SL_CC_MUST_UNDERSTAND) {
        if (!status_understood(status)) {
            *why = "must-understand";
            return 0;
        }
    } else if (cc.flags & SL_CC_NO_STORE) {
        *why = "no-store";
        return 0;
    }
    /* §3, §5.2.2.7: a shared cache stores no private response (qualified or not). */
    if (cc.flags & SL_CC_PRIVATE) {
        *why = "private";
        return 0;
    }
    /* §3.5: with Authorization in the request, only must-revalidate, public or s-maxage
     * in the response allow a shared cache to store it. */
    if (FIND(req, nreq, "authorization") &&
        !(cc.flags & (SL_CC_PUBLIC | SL_CC_S_MAXAGE | SL_CC_MUST_REVALIDATE))) {
        *why = "authorization";
        return 0;
    }
    /* Local policy: a Set-Cookie is usually one user's; replaying it to others leaks a
     * session (RFC 9111 §7.3 discusses cache privacy). Stored only where allowed. */
    if (FIND(resp, nresp, "set-cookie") && !(route && route->allow_set_cookie)) {
        *why = "set-cookie";
        return 0;
    }
    /* §4.1: Vary: * never matches, so such an entry could never be reused. */
    sl_cc_vary_t vary;
    int vr = sl_cc_vary_parse(resp, nresp, &vary);
    if (vr == SL_EINVAL) {
        *why = "vary *";
        return 0;
    }
    if (vr != 0) {
        *why = "vary";
        return 0;
    }
    /* §3: explicit freshness (Expires, max-age, s-maxage), or a heuristically cacheable
     * status with our heuristic, the route's ttl (§4.2.2). We do not store responses with
     * neither, even with a validator (each use would cost a round trip), and, more
     * conservative than §3, "public" alone does not make other statuses storable. */
    int explicit_fresh = (cc.flags & (SL_CC_MAX_AGE | SL_CC_S_MAXAGE)) ||
                         (expires_applies(&cc) && FIND(resp, nresp, "expires"));
    if (!explicit_fresh) {
        if (!sl_cc_status_heuristic(status)) {
            *why = "status";
            return 0;
        }
        if (!route || route->ttl_ms == 0) {
            *why = "no freshness";
            return 0;
        }
    }
    *why = "ok";
    return 1;
}

/* seconds to ms, within [0, SL_CC_DELTA_MAX x 1000] */
static int64_t sec_ms(int64_t s)
{
    if (s <= 0)
        return 0;
    if (s > (int64_t)SL_CC_DELTA_MAX)
        s = SL_CC_DELTA_MAX;
    return s * 1000;
}

static int64_t route_ttl(const sl_cc_route_t *route)
{
    if (!route)
        return 0;
    uint64_t cap = (uint64_t)SL_CC_DELTA_MAX * 1000;
    return (int64_t)(route->ttl_ms > cap ? cap : route->ttl_ms);
}

int64_t sl_cc_freshness_ms(const sl_cc_t *cc, const sl_http_header_t *resp, unsigned n,
                           int64_t response_time_ms, const sl_cc_route_t *route)
{
    /* The route's override: the operator's ttl replaces what the origin says. */
    if (route && route->override && route->ttl_ms > 0)
        return route_ttl(route);
    /* §4.2.1, for a shared cache: s-maxage, then max-age, then Expires - Date. */
    if (cc->flags & SL_CC_S_MAXAGE)
        return sec_ms(cc->s_maxage);
    if (cc->flags & SL_CC_MAX_AGE)
        return sec_ms(cc->max_age);
    const sl_http_header_t *exp = expires_applies(cc) ? FIND(resp, n, "expires") : NULL;
    if (exp) {
        /* §4.2.1: several Expires lines are invalid (unless identical): stale. */
        for (unsigned i = 0; i < n; i++)
            if (&resp[i] != exp && HDR_IS(&resp[i], "expires") &&
                (resp[i].value_len != exp->value_len ||
                 (exp->value_len && memcmp(resp[i].value, exp->value, exp->value_len) != 0)))
                return 0;
        int64_t now_s = response_time_ms / 1000;
        int64_t expires = sl_cc_date_parse(exp->value, exp->value_len, now_s);
        if (expires < 0)
            return 0; /* §5.3: an invalid date (e.g. "0") is in the past */
        int64_t date = first_date(resp, n, "date", 4, now_s);
        if (date < 0)
            date = now_s;              /* RFC 9110 §6.6.1: no Date, the time it was received */
        return sec_ms(expires - date); /* at or before Date: 0, stale */
    }
    /* No explicit expiration: our heuristic (§4.2.2) is the configured ttl only. */
    return route_ttl(route);
}

/* ---------------------------------------------------------------------------------------
 * Age (§4.2.3) and the lookup decision (§4, §4.2.4, RFC 5861)
 * ------------------------------------------------------------------------------------- */

void sl_cc_entry_init(sl_cc_entry_t *e, const sl_http_header_t *resp, unsigned n,
                      int64_t request_time_ms, int64_t response_time_ms, const sl_cc_route_t *route)
{
    memset(e, 0, sizeof(*e));
    e->request_time_ms = request_time_ms;
    e->response_time_ms = response_time_ms;
    sl_cc_response_directives(resp, n, &e->cc);
    int64_t now_s = response_time_ms / 1000;
    int64_t date = first_date(resp, n, "date", 4, now_s);
    e->date_ms = date >= 0 ? date * 1000 : response_time_ms;
    /* age_value: the Age field; invalid lines are ignored, several take the largest
     * (the conservative reading of a list that should not be one). */
    uint32_t age = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!HDR_IS(&resp[i], "age") || !resp[i].value)
            continue;
        const char *p = resp[i].value, *q = hval_end(&resp[i]);
        sl_trim(&p, &q);
        uint32_t a;
        if (delta_parse(p, q, 0, &a) && a > age)
            age = a;
    }
    e->age_value_ms = (int64_t)age * 1000;
    int64_t apparent_age = max64(0, sat_sub(response_time_ms, e->date_ms));
    int64_t response_delay = max64(0, sat_sub(response_time_ms, request_time_ms));
    int64_t corrected_age_value = sat_add(e->age_value_ms, response_delay);
    e->corrected_initial_age_ms = max64(apparent_age, corrected_age_value);
    e->lifetime_ms = sl_cc_freshness_ms(&e->cc, resp, n, response_time_ms, route);
}

int64_t sl_cc_current_age_ms(const sl_cc_entry_t *e, int64_t now_ms)
{
    int64_t resident = max64(0, sat_sub(now_ms, e->response_time_ms));
    return max64(0, sat_add(e->corrected_initial_age_ms, resident));
}

uint32_t sl_cc_age_header(const sl_cc_entry_t *e, int64_t now_ms)
{
    int64_t s = sl_cc_current_age_ms(e, now_ms) / 1000;
    return s > (int64_t)SL_CC_DELTA_MAX ? SL_CC_DELTA_MAX : (uint32_t)s;
}

int sl_cc_is_fresh(const sl_cc_entry_t *e, int64_t now_ms)
{
    return e->lifetime_ms > sl_cc_current_age_ms(e, now_ms);
}

int64_t sl_cc_staleness_ms(const sl_cc_entry_t *e, int64_t now_ms)
{
    return sat_sub(sl_cc_current_age_ms(e, now_ms), e->lifetime_ms);
}

/* Directives that forbid serving the entry stale, whatever else says (RFC 9111 §4.2.4). */
#define NO_STALE (SL_CC_NO_CACHE | SL_CC_MUST_REVALIDATE | SL_CC_PROXY_REVALIDATE)

/* The stale-while-revalidate window in ms: the response's own (RFC 5861 §3), else the
 * route's. s-maxage implies proxy-revalidate for a shared cache (RFC 9111 §5.2.2.10): it
 * blocks the route's default, but not a stale-while-revalidate the origin sent beside it. */
static int64_t swr_window(const sl_cc_entry_t *e, const sl_cc_route_t *route)
{
    uint32_t f = e->cc.flags;
    if (f & NO_STALE)
        return 0;
    if (f & SL_CC_STALE_WHILE_REVALIDATE)
        return sec_ms(e->cc.stale_while_revalidate);
    if (f & SL_CC_S_MAXAGE)
        return 0;
    return route ? ms_cap(route->swr_ms) : 0;
}

/* The stale-if-error window (RFC 5861 §4): the largest of the response's (else the
 * route's) and the request's; the same prohibitions as above. */
static int64_t sie_window(const sl_cc_entry_t *e, const sl_cc_t *req, const sl_cc_route_t *route)
{
    uint32_t f = e->cc.flags;
    int64_t w;
    if (f & NO_STALE)
        return 0;
    if (f & SL_CC_STALE_IF_ERROR)
        w = sec_ms(e->cc.stale_if_error);
    else if (f & SL_CC_S_MAXAGE)
        return 0;
    else
        w = route ? ms_cap(route->sie_ms) : 0;
    if (req && (req->flags & SL_CC_STALE_IF_ERROR))
        w = max64(w, sec_ms(req->stale_if_error));
    return w;
}

static int decide(sl_cc_decision_t *out, const sl_cc_t *req, int action, const char *why)
{
    if (action == SL_CC_ACT_REVALIDATE && req && (req->flags & SL_CC_ONLY_IF_CACHED)) {
        action = SL_CC_ACT_UNSATISFIABLE; /* §5.2.1.7: a stored response or 504 */
        why = "only-if-cached";
    }
    out->action = action;
    out->why = why;
    return action;
}

int sl_cc_lookup(const sl_cc_entry_t *e, const sl_cc_t *req, const sl_cc_route_t *route,
                 int64_t now_ms, sl_cc_decision_t *out)
{
    int64_t age = sl_cc_current_age_ms(e, now_ms);
    int64_t left = sat_sub(e->lifetime_ms, age); /* > 0: fresh for that long */
    uint32_t rf = req ? req->flags : 0;
    out->age_ms = age;
    /* error grace: a failed origin may be replaced by this entry while age < lifetime +
     * window; never for no-cache, which forbids any use without validation (§5.2.2.4). */
    if (e->cc.flags & SL_CC_NO_CACHE)
        out->error_grace_ms = 0;
    else
        out->error_grace_ms = max64(0, sat_add(left, sie_window(e, req, route)));

    if (e->cc.flags & SL_CC_NO_CACHE) /* §5.2.2.4, §4 */
        return decide(out, req, SL_CC_ACT_REVALIDATE, "no-cache");
    if (rf & SL_CC_NO_CACHE) /* §5.2.1.4 (or Pragma, §5.4) */
        return decide(out, req, SL_CC_ACT_REVALIDATE, "request no-cache");
    int too_old = (rf & SL_CC_MAX_AGE) && age > sec_ms(req->max_age); /* §5.2.1.1 */
    if (left > 0) {
        if (too_old)
            return decide(out, req, SL_CC_ACT_REVALIDATE, "request max-age");
        if ((rf & SL_CC_MIN_FRESH) && left < sec_ms(req->min_fresh)) /* §5.2.1.3 */
            return decide(out, req, SL_CC_ACT_REVALIDATE, "request min-fresh");
        return decide(out, req, SL_CC_ACT_FRESH, "fresh");
    }
    /* Stale. The client's own limits first: a max-age it exceeds, or min-fresh, which no
     * stale response meets. */
    if (too_old)
        return decide(out, req, SL_CC_ACT_REVALIDATE, "request max-age");
    if (rf & SL_CC_MIN_FRESH)
        return decide(out, req, SL_CC_ACT_REVALIDATE, "request min-fresh");
    if (e->cc.flags & (SL_CC_MUST_REVALIDATE | SL_CC_PROXY_REVALIDATE)) /* §5.2.2.2, .8 */
        return decide(out, req, SL_CC_ACT_REVALIDATE, "must-revalidate");
    int64_t stale = -left;
    int64_t swr = swr_window(e, route);
    if (swr > 0 && stale < swr) /* RFC 5861 §3 */
        return decide(out, req, SL_CC_ACT_STALE_WHILE_REVALIDATE, "stale-while-revalidate");
    /* §5.2.1.2 max-stale, unless s-maxage's implied proxy-revalidate forbids (§5.2.2.10) */
    if ((rf & SL_CC_MAX_STALE) && !(e->cc.flags & SL_CC_S_MAXAGE) &&
        stale <= sec_ms(req->max_stale))
        return decide(out, req, SL_CC_ACT_STALE_OK, "max-stale");
    return decide(out, req, SL_CC_ACT_REVALIDATE, "stale");
}

int64_t sl_cc_usable_ms(const sl_cc_entry_t *e, const sl_cc_route_t *route, int64_t now_ms)
{
    if (e->cc.flags & SL_CC_NO_CACHE)
        return 0;
    int64_t w = max64(swr_window(e, route), sie_window(e, NULL, route));
    int64_t left = sat_sub(e->lifetime_ms, sl_cc_current_age_ms(e, now_ms));
    return max64(0, sat_add(left, w));
}

/* ---------------------------------------------------------------------------------------
 * Vary (RFC 9111 §4.1)
 * ------------------------------------------------------------------------------------- */

static int vary_rc(const sl_cc_vary_t *v)
{
    if (v->flags & SL_CC_VARY_STAR)
        return SL_EINVAL;
    return v->flags ? SL_ETOOBIG : 0;
}

/* Compare name a (lower-case) with stored name i. */
static int vary_cmp(const sl_cc_vary_t *v, unsigned i, const char *a, size_t alen)
{
    size_t bl = v->len[i];
    int c = memcmp(a, v->names + v->off[i], alen < bl ? alen : bl);
    if (c)
        return c;
    return alen < bl ? -1 : alen > bl;
}

int sl_cc_vary_add(sl_cc_vary_t *out, const char *v, size_t n)
{
    if (!v)
        return vary_rc(out);
    const char *p = v, *e = v + n;
    while (p < e && !out->flags) {
        const char *s = p;
        while (p < e && *p != ',')
            p++;
        const char *t = p;
        if (p < e)
            p++;
        sl_trim(&s, &t);
        size_t len = (size_t)(t - s);
        if (len == 0)
            continue; /* empty list elements are ignored (RFC 9110 §5.6.1) */
        if (len == 1 && *s == '*') {
            out->flags |= SL_CC_VARY_STAR;
            break;
        }
        char name[255];
        if (len > sizeof(name)) {
            out->flags |= SL_CC_VARY_BAD;
            break;
        }
        for (size_t i = 0; i < len; i++) {
            if (!sl_is_tchar((unsigned char)s[i])) {
                out->flags |= SL_CC_VARY_BAD;
                break;
            }
            name[i] = (char)sl_lower((unsigned char)s[i]);
        }
        if (out->flags)
            break;
        /* insertion point in the sorted list; duplicates dropped */
        unsigned at = 0;
        int c = 1;
        while (at < out->n && (c = vary_cmp(out, at, name, len)) > 0)
            at++;
        if (at < out->n && c == 0)
            continue;
        if (out->n == SL_CC_VARY_MAX || out->used + len > SL_CC_VARY_BYTES) {
            out->flags |= SL_CC_VARY_BAD;
            break;
        }
        memmove(&out->off[at + 1], &out->off[at], (out->n - at) * sizeof(out->off[0]));
        memmove(&out->len[at + 1], &out->len[at], (out->n - at) * sizeof(out->len[0]));
        memcpy(out->names + out->used, name, len);
        out->off[at] = out->used;
        out->len[at] = (uint8_t)len;
        out->used = (uint16_t)(out->used + len);
        out->n++;
    }
    return vary_rc(out);
}

int sl_cc_vary_parse(const sl_http_header_t *resp, unsigned n, sl_cc_vary_t *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < n; i++)
        if (HDR_IS(&resp[i], "vary"))
            sl_cc_vary_add(out, resp[i].value, resp[i].value_len);
    return vary_rc(out);
}

/* Where a secondary key goes: a bounded buffer, or a hash in 256-byte blocks. */
typedef struct key_sink {
    char *buf;
    size_t cap;
    size_t len;
    int hashing;
    uint64_t h;
    size_t blen;
    char blk[256];
} key_sink_t;

static void sink_put(key_sink_t *s, const char *p, size_t n)
{
    if (!s->hashing) {
        if (s->len + n <= s->cap && n)
            memcpy(s->buf + s->len, p, n);
        s->len += n;
        return;
    }
    while (n) {
        if (s->blen == sizeof(s->blk)) { /* flushed only when more follows: a key of
                                          * <= 256 bytes hashes exactly as sl_hash_bytes */
            s->h = sl_hash_seeded(s->blk, s->blen, s->h);
            s->blen = 0;
        }
        size_t k = sizeof(s->blk) - s->blen;
        if (k > n)
            k = n;
        memcpy(s->blk + s->blen, p, k);
        s->blen += k;
        s->len += k;
        p += k;
        n -= k;
    }
}

/* Emit one field line's list elements, normalized (see sl_cc_vary_key). */
static void emit_elements(key_sink_t *s, const char *v, size_t n, int *first)
{
    const char *p = v, *e = v + n;
    while (p < e) {
        const char *a = p;
        p = skip_element(p, e);
        const char *b = p;
        if (p < e)
            p++; /* the comma */
        sl_trim(&a, &b);
        if (a == b)
            continue;
        if (!*first)
            sink_put(s, ", ", 2);
        *first = 0;
        sink_put(s, a, (size_t)(b - a));
    }
}

static void emit_key(const sl_cc_vary_t *v, const sl_http_header_t *req, unsigned n, key_sink_t *s)
{
    for (unsigned i = 0; i < v->n; i++) {
        const char *name = v->names + v->off[i];
        size_t nl = v->len[i];
        sink_put(s, name, nl);
        int present = 0, first = 1;
        for (unsigned j = 0; j < n; j++) {
            if (!hdr_is(&req[j], name, nl))
                continue;
            if (!present)
                sink_put(s, ":", 1);
            present = 1;
            if (req[j].value)
                emit_elements(s, req[j].value, req[j].value_len, &first);
        }
        sink_put(s, "\n", 1);
    }
}

int64_t sl_cc_vary_key(const sl_cc_vary_t *v, const sl_http_header_t *req, unsigned n, char *buf,
                       size_t cap)
{
    if (v->flags)
        return SL_EINVAL;
    key_sink_t s;
    s.buf = buf;
    s.cap = buf ? cap : 0;
    s.len = 0;
    s.hashing = 0;
    emit_key(v, req, n, &s);
    return s.len > s.cap ? SL_ETOOBIG : (int64_t)s.len;
}

uint64_t sl_cc_vary_hash(const sl_cc_vary_t *v, const sl_http_header_t *req, unsigned n)
{
    if (v->flags)
        return 0;
    key_sink_t s;
    s.buf = NULL;
    s.cap = 0;
    s.len = 0;
    s.hashing = 1;
    s.h = 0;
    s.blen = 0;
    emit_key(v, req, n, &s);
    return sl_hash_seeded(s.blk, s.blen, s.h);
}

/* ---------------------------------------------------------------------------------------
 * Stored header fields (RFC 9111 §3.1, §3.2, §4.3.4)
 * ------------------------------------------------------------------------------------- */

int sl_cc_store_drops(const sl_http_header_t *f, const sl_http_header_t *all, unsigned n)
{
    static const struct {
        const char *s;
        size_t len;
    } never[] = {
#define N(x) {x, sizeof(x) - 1}
        /* hop-by-hop (RFC 9110 §7.6.1), removed before forwarding, so before storage */
        N("connection"),
        N("keep-alive"),
        N("proxy-connection"),
        N("te"),
        N("trailer"),
        N("transfer-encoding"),
        N("upgrade"),
        /* specific to the proxy used for the request: never stored (RFC 9111 §3.1) */
        N("proxy-authenticate"),
        N("proxy-authentication-info"),
        N("proxy-authorization"),
#undef N
    };
    if (f->hop)
        return 1;
    for (size_t i = 0; i < SL_ARRAY_LEN(never); i++)
        if (hdr_is(f, never[i].s, never[i].len))
            return 1;
    if (!f->name || f->name_len == 0)
        return 0;
    for (unsigned i = 0; i < n; i++)
        if (HDR_IS(&all[i], "connection") && all[i].value &&
            sl_http1_list_has(all[i].value, all[i].value_len, f->name, f->name_len))
            return 1;
    return 0;
}

int sl_cc_304_updates(const sl_http_header_t *f, const sl_http_header_t *all, unsigned n)
{
    if (sl_cc_store_drops(f, all, n))
        return 0;
    return !HDR_IS(f, "content-length") && !HDR_IS(f, "content-range");
}

/* ---------------------------------------------------------------------------------------
 * Conditional requests (RFC 9110 §13.1, §13.2; RFC 9111 §4.3.2)
 * ------------------------------------------------------------------------------------- */

/* entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text
 * (RFC 9110 §8.8.3). At *pp; the opaque-tag (with its quotes) in *o, *olen. */
static int etag_parse(const char **pp, const char *e, const char **o, size_t *olen)
{
    const char *p = *pp;
    if (e - p >= 2 && p[0] == 'W' && p[1] == '/')
        p += 2;
    if (p == e || *p != '"')
        return 0;
    const char *s = p++;
    while (p < e && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x21 || c == 0x7f)
            return 0;
        p++;
    }
    if (p == e)
        return 0;
    p++;
    *o = s;
    *olen = (size_t)(p - s);
    *pp = p;
    return 1;
}

/* 1 match, 0 no match, -1 malformed: one If-None-Match line against opaque-tag o. */
static int inm_line(const char *v, size_t n, const char *o, size_t olen)
{
    const char *p = v, *e = v + n;
    int match = 0, any = 0;
    while (p < e) {
        while (p < e && (sl_is_ows((unsigned char)*p) || *p == ','))
            p++;
        if (p == e)
            break;
        const char *t;
        size_t tl;
        if (!etag_parse(&p, e, &t, &tl))
            return -1;
        any = 1;
        if (o && tl == olen && memcmp(t, o, tl) == 0)
            match = 1;
        p = sl_skip_ows(p, e);
        if (p < e && *p != ',')
            return -1;
    }
    return any ? match : -1;
}

static int is_star(const char *v, size_t n)
{
    const char *p = v, *e = v + n;
    sl_trim(&p, &e);
    return e - p == 1 && *p == '*';
}

int sl_cc_etag_match(const char *list, size_t n, const char *etag, size_t elen)
{
    if (!list || !etag)
        return 0;
    const char *p = etag, *e = etag + elen, *o;
    size_t olen;
    sl_trim(&p, &e);
    if (!etag_parse(&p, e, &o, &olen) || p != e)
        return 0;
    if (is_star(list, n))
        return 1;
    return inm_line(list, n, o, olen) == 1;
}

int sl_cc_conditional(const sl_http_header_t *req, unsigned nreq, int stored_status,
                      const sl_http_header_t *stored, unsigned nstored, int64_t now_ms)
{
    /* RFC 9111 §4.3.2: If-Match and If-Unmodified-Since are not applicable to a cache. */
    if (FIND(req, nreq, "if-match") || FIND(req, nreq, "if-unmodified-since"))
        return SL_CC_COND_FORWARD;
    /* RFC 9110 §13.2.1: preconditions apply only when the response would be 2xx. */
    if (stored_status < 200 || stored_status > 299)
        return SL_CC_COND_FULL;
    if (FIND(req, nreq, "if-none-match")) {
        /* §13.1.2, weak comparison; "*" is true when a representation exists: ours. */
        const sl_http_header_t *et = FIND(stored, nstored, "etag");
        const char *o = NULL;
        size_t olen = 0;
        if (et && et->value) {
            const char *p = et->value, *e = hval_end(et);
            sl_trim(&p, &e);
            if (!etag_parse(&p, e, &o, &olen) || p != e)
                o = NULL;
        }
        int match = 0;
        for (unsigned i = 0; i < nreq; i++) {
            if (!HDR_IS(&req[i], "if-none-match"))
                continue;
            if (!req[i].value)
                return SL_CC_COND_FULL;
            if (is_star(req[i].value, req[i].value_len)) {
                match = 1;
                continue;
            }
            int r = inm_line(req[i].value, req[i].value_len, o, olen);
            if (r < 0)
                return SL_CC_COND_FULL; /* malformed: the full response is always right */
            match |= r;
        }
        return match ? SL_CC_COND_NOT_MODIFIED : SL_CC_COND_FULL;
    }
    /* §13.1.3: If-Modified-Since, only without If-None-Match, ignored when invalid or
     * repeated; true (modified) unless Last-Modified is at or before it. */
    const sl_http_header_t *ims = NULL;
    for (unsigned i = 0; i < nreq; i++) {
        if (HDR_IS(&req[i], "if-modified-since")) {
            if (ims)
                return SL_CC_COND_FULL;
            ims = &req[i];
        }
    }
    if (!ims)
        return SL_CC_COND_FULL;
    int64_t now_s = now_ms / 1000;
    int64_t since = sl_cc_date_parse(ims->value, ims->value_len, now_s);
    int64_t lm = first_date(stored, nstored, "last-modified", 13, now_s);
    if (since < 0 || lm < 0)
        return SL_CC_COND_FULL;
    return lm <= since ? SL_CC_COND_NOT_MODIFIED : SL_CC_COND_FULL;
}
