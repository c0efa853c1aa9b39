/* cachecontrol.h - the HTTP caching rules of sluice's shared response cache (RFC 9111,
 * RFC 9213 targeted fields, RFC 5861 stale-while-revalidate / stale-if-error).
 * Owns: Cache-Control / CDN-Cache-Control / Sluice-Cache-Control parsing and precedence,
 * HTTP-date parsing, what may be stored, freshness lifetime, age, the decision for a lookup,
 * Vary secondary keys, which fields are stored or refreshed by a 304, and the 304 answer to
 * a conditional request. Pure functions: never does I/O, never allocates, never reads a
 * clock. Every time is passed in as unix wall-clock milliseconds (Date and Expires are
 * wall-clock, so a monotonic clock cannot be compared with them). Any thread.
 *
 * sluice is a SHARED cache in RFC 9111's terms: s-maxage applies, private forbids storage,
 * and a request with Authorization is stored only when the response says so. */
#ifndef SL_CACHECONTROL_H
#define SL_CACHECONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"
#include "../http/http1.h"

/* delta-seconds larger than this are clamped to it (RFC 9111 §1.2.2: 2^31 "effectively
 * represents infinity"); every seconds value in sl_cc_t is within [0, SL_CC_DELTA_MAX]. */
#define SL_CC_DELTA_MAX 2147483648u

/* ---------------------------------------------------------------------------------------
 * Directives
 * ------------------------------------------------------------------------------------- */

/* Directives present (sl_cc_t.flags). The valued ones (SL_CC_MAX_AGE ... SL_CC_STALE_IF_ERROR)
 * say the directive was present; its value is in the matching sl_cc_t field. */
enum sl_cc_flag {
    SL_CC_NO_STORE = 1u << 0,         /* RFC 9111 §5.2.1.5, §5.2.2.5 */
    SL_CC_NO_CACHE = 1u << 1,         /* §5.2.1.4, §5.2.2.4 (with or without a field list) */
    SL_CC_PRIVATE = 1u << 2,          /* §5.2.2.7 (with or without a field list) */
    SL_CC_PUBLIC = 1u << 3,           /* §5.2.2.9 */
    SL_CC_MUST_REVALIDATE = 1u << 4,  /* §5.2.2.2 */
    SL_CC_PROXY_REVALIDATE = 1u << 5, /* §5.2.2.8 */
    SL_CC_NO_TRANSFORM = 1u << 6,     /* §5.2.1.6, §5.2.2.6: parsed for the caller */
    SL_CC_IMMUTABLE = 1u << 7,        /* RFC 8246: parsed for the caller, no rule here */
    SL_CC_MUST_UNDERSTAND = 1u << 8,  /* §5.2.2.3 */
    SL_CC_ONLY_IF_CACHED = 1u << 9,   /* request, §5.2.1.7 */
    SL_CC_MAX_AGE = 1u << 10,         /* max_age: §5.2.1.1 request, §5.2.2.1 response */
    SL_CC_S_MAXAGE = 1u << 11,        /* s_maxage: §5.2.2.10 */
    SL_CC_MAX_STALE = 1u << 12,       /* max_stale: request, §5.2.1.2 */
    SL_CC_MIN_FRESH = 1u << 13,       /* min_fresh: request, §5.2.1.3 */
    SL_CC_STALE_WHILE_REVALIDATE = 1u << 14, /* RFC 5861 §3 */
    SL_CC_STALE_IF_ERROR = 1u << 15,         /* RFC 5861 §4 (request or response) */
};

/* Which field the directives came from (sl_cc_t.source). */
enum sl_cc_source {
    SL_CC_SRC_NONE = 0,          /* no caching field at all */
    SL_CC_SRC_CACHE_CONTROL = 1, /* Cache-Control */
    SL_CC_SRC_PRAGMA = 2,        /* request Pragma: no-cache without Cache-Control (§5.4) */
    SL_CC_SRC_CDN = 3,           /* CDN-Cache-Control (RFC 9213 §3) */
    SL_CC_SRC_SLUICE = 4,        /* Sluice-Cache-Control: sluice's own targeted field */
};

/* The directives of one message. Zero-initialise, then parse each field line into it.
 * Request and response directives share the struct; which fields matter depends on the
 * side. Seconds values are clamped to [0, SL_CC_DELTA_MAX]. */
typedef struct sl_cc {
    uint32_t flags;                  /* enum sl_cc_flag */
    uint32_t max_age;                /* seconds */
    uint32_t s_maxage;               /* seconds */
    uint32_t max_stale;              /* seconds; a bare max-stale: SL_CC_DELTA_MAX (any) */
    uint32_t min_fresh;              /* seconds */
    uint32_t stale_while_revalidate; /* seconds */
    uint32_t stale_if_error;         /* seconds */
    uint8_t source;                  /* enum sl_cc_source (set by the helpers below) */
} sl_cc_t;

/* Parse one Cache-Control field line v[0..n) (RFC 9111 §5.2), accumulating into out (a
 * message may carry several lines: call once per line, in order). Never reads past n; v
 * may be NULL when n is 0. Lenient, as a recipient should be:
 *  - names are case-insensitive; unknown directives and malformed elements are skipped;
 *    whitespace and empty list elements are tolerated (RFC 9110 §5.6.1);
 *  - an argument may be a token or a quoted-string, for every directive (§5.2: recipients
 *    "ought to accept both forms"), so max-age="60" is 60; quoted-pairs are unescaped;
 *  - a directive that takes no argument ignores one it is given (no-store="x" is no-store);
 *    no-cache="f" and private="f" count as plain no-cache / private (conservative: we never
 *    store part of a response);
 *  - delta-seconds: 1*DIGIT; an invalid value (empty, signed, non-digit, "1.5", missing)
 *    is 0 - for max-age/s-maxage that makes the response stale (§4.2.1), for the others it
 *    is the most conservative reading (no stale serving, no min-fresh requirement);
 *    values above 2^31 clamp to SL_CC_DELTA_MAX (§1.2.2);
 *  - a directive given twice (in one line or across lines): max-age and s-maxage with
 *    different values become 0 (§4.2.1: "considered stale"); max-stale,
 *    stale-while-revalidate and stale-if-error keep the smaller value, min-fresh the
 *    larger (the most restrictive, §4.2.1 "the most restrictive directive should be
 *    honored"). A bare max-stale means any staleness (SL_CC_DELTA_MAX).
 * Returns the number of directives recognised in this line. */
int sl_cc_parse(const char *v, size_t n, sl_cc_t *out);

/* Parse one field line of a targeted field (CDN-Cache-Control, Sluice-Cache-Control) into
 * out. RFC 9213 §2.1: these are Structured Field Dictionaries (RFC 8941 §3.2), parsed as
 * such: lower-case keys, a bare key is Boolean true, "=?0" turns a directive off, a
 * duplicate key overrides the earlier one (RFC 8941 §4.2.2), parameters are ignored.
 * max-age and the other delta directives must be non-negative Integers; any other value
 * ("60" as a String, 1.5, a token) is invalid and counts as 0, as in sl_cc_parse.
 * Returns 0, or SL_EBADMSG when the line is not a valid Dictionary (then out may hold part
 * of it: parse into a scratch copy, as sl_cc_response_directives does). */
int sl_cc_parse_targeted(const char *v, size_t n, sl_cc_t *out);

/* The directives that govern this cache for a response with headers h[0..n) (out is
 * overwritten). RFC 9213 §2.2 target list, most specific first: the first of
 * Sluice-Cache-Control, then CDN-Cache-Control, whose lines are all valid and not all
 * empty, is used alone (out->source says which; Cache-Control and Expires are then
 * ignored: sl_cc_freshness_ms honours that); otherwise every Cache-Control line
 * (SL_CC_SRC_CACHE_CONTROL, or SL_CC_SRC_NONE when there is none). A response Pragma has
 * no meaning (§5.4). */
void sl_cc_response_directives(const sl_http_header_t *h, unsigned n, sl_cc_t *out);

/* The directives of a request with headers h[0..n) (out is overwritten): every
 * Cache-Control line; when there is none, Pragma: no-cache counts as Cache-Control:
 * no-cache (§5.4; source SL_CC_SRC_PRAGMA). Targeted fields are response-only. */
void sl_cc_request_directives(const sl_http_header_t *h, unsigned n, sl_cc_t *out);

/* ---------------------------------------------------------------------------------------
 * HTTP-date (RFC 9110 §5.6.7)
 * ------------------------------------------------------------------------------------- */

/* Parse v[0..n) as an HTTP-date: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the
 * obsolete RFC 850 form ("Sunday, 06-Nov-94 08:49:37 GMT") or asctime ("Sun Nov  6
 * 08:49:37 1994"), case-sensitive as §5.6.7 says, surrounding whitespace allowed. Fields
 * are range-checked (day within its month, leap years, second up to 60); the weekday
 * must be a day name but is not checked against the date. now_s (unix seconds, <= 0 when
 * unknown) resolves RFC 850's two-digit year: a year more than 50 years after now's is
 * taken 100 years earlier (§5.6.7); without now_s, 70-99 are 19xx and 00-69 are 20xx.
 * Returns unix seconds; a valid date before 1970 returns 0 (far past for caching); -1
 * when invalid (Expires: 0 and the like: callers treat that as "already expired"). */
int64_t sl_cc_date_parse(const char *v, size_t n, int64_t now_s);

/* Write t (unix seconds, 0 <= t <= 253402300799, the end of year 9999) as an IMF-fixdate
 * into out[0..29). Returns 29, or 0 (nothing written) when t is out of range. */
size_t sl_cc_date_format(int64_t t, char out[29]);

/* ---------------------------------------------------------------------------------------
 * Storing (RFC 9111 §3) and freshness (§4.2.1)
 * ------------------------------------------------------------------------------------- */

/* A route's cache options (configuration), in milliseconds. */
typedef struct sl_cc_route {
    uint64_t ttl_ms;          /* lifetime when the origin gives none (our heuristic, §4.2.2);
                               * 0: responses without explicit freshness are not stored */
    uint64_t swr_ms;          /* stale_while_revalidate when the response has none */
    uint64_t sie_ms;          /* stale_if_error when the response has none */
    uint8_t override;         /* ttl_ms replaces the origin's freshness lifetime */
    uint8_t allow_set_cookie; /* store responses that carry Set-Cookie */
} sl_cc_route_t;

/* 1 when a final status is heuristically cacheable (RFC 9110 §15.1) and we implement its
 * caching: 200 203 204 300 301 308 404 405 410 414 501 (206 is excluded: no ranges). */
int sl_cc_status_heuristic(int status);

/* May a shared cache store this response (RFC 9111 §3)? method is an enum sl_http_method,
 * status the response's; req/resp are the request's and response's header fields; route
 * may be NULL (no ttl, no Set-Cookie). Returns 1 or 0; *why (when why is not NULL) gets a
 * static reason: "ok", "method" (only GET is stored; a HEAD is answered from a stored GET
 * by the caller), "interim" (1xx), "partial" (206: no range support), "not modified"
 * (304 refreshes an entry, §4.3.4), "status" (not a final status we understand, or not
 * heuristically cacheable and without explicit freshness), "request no-store", "no-store",
 * "must-understand" (status not understood, §5.2.2.3), "private", "authorization" (§3.5),
 * "set-cookie", "vary *", "vary" (a Vary sluice cannot key on: too many names, too long, or
 * not tokens), "no freshness" (no explicit freshness and no route ttl). */
int sl_cc_storable(int method, int status, const sl_http_header_t *req, unsigned nreq,
                   const sl_http_header_t *resp, unsigned nresp, const sl_cc_route_t *route,
                   const char **why);

/* The freshness lifetime in milliseconds (RFC 9111 §4.2.1, shared-cache order) of a
 * response with effective directives cc (sl_cc_response_directives) and headers resp,
 * received at response_time_ms: route->ttl_ms when route->override is set and ttl_ms > 0;
 * else s-maxage; else max-age; else Expires - Date (only when cc->source is Cache-Control
 * or none: RFC 9213 §2.2 ignores Expires under a targeted field; Date absent or invalid:
 * the receipt time, RFC 9110 §6.6.1; Expires invalid, at or before Date, or several
 * different Expires lines: 0, stale); else the route's ttl (0 without a route). Never
 * the Last-Modified heuristic. Result within [0, SL_CC_DELTA_MAX x 1000]. */
int64_t sl_cc_freshness_ms(const sl_cc_t *cc, const sl_http_header_t *resp, unsigned n,
                           int64_t response_time_ms, const sl_cc_route_t *route);

/* ---------------------------------------------------------------------------------------
 * A stored entry: age (§4.2.3) and the lookup decision (§4, §4.2.4, RFC 5861)
 * ------------------------------------------------------------------------------------- */

/* What the cache keeps per stored response to judge it later (fill with sl_cc_entry_init;
 * refill after a 304 from the merged fields and the new request/response times). */
typedef struct sl_cc_entry {
    int64_t request_time_ms;  /* when the request that got this response was sent */
    int64_t response_time_ms; /* when its response head was received */
    int64_t date_ms;          /* date_value: Date, or response_time_ms if absent/invalid */
    int64_t age_value_ms;     /* age_value: the Age field (0 when absent or invalid) */
    int64_t corrected_initial_age_ms;
    int64_t lifetime_ms; /* freshness lifetime (sl_cc_freshness_ms) */
    sl_cc_t cc;          /* effective response directives */
} sl_cc_entry_t;

/* Fill e for a response with headers resp[0..n): directives by precedence, Date, Age (the
 * largest valid Age line), the lifetime for route (may be NULL), and
 *   apparent_age          = max(0, response_time - date_value)
 *   response_delay        = response_time - request_time (0 if negative)
 *   corrected_age_value   = age_value + response_delay
 *   corrected_initial_age = max(apparent_age, corrected_age_value)     (§4.2.3) */
void sl_cc_entry_init(sl_cc_entry_t *e, const sl_http_header_t *resp, unsigned n,
                      int64_t request_time_ms, int64_t response_time_ms,
                      const sl_cc_route_t *route);

/* current_age = corrected_initial_age + (now - response_time), in ms (§4.2.3); the
 * resident time counts as 0 if now is before response_time. Saturates, never negative. */
int64_t sl_cc_current_age_ms(const sl_cc_entry_t *e, int64_t now_ms);

/* The Age field value to send with the entry at now (§5.1): whole seconds of current_age,
 * at most SL_CC_DELTA_MAX. */
uint32_t sl_cc_age_header(const sl_cc_entry_t *e, int64_t now_ms);

/* 1 when the entry is fresh at now: lifetime > current_age (§4.2), whatever the request. */
int sl_cc_is_fresh(const sl_cc_entry_t *e, int64_t now_ms);

/* current_age - lifetime in ms: > 0 stale by that much; <= 0 fresh for -result more. */
int64_t sl_cc_staleness_ms(const sl_cc_entry_t *e, int64_t now_ms);

/* What to do with a stored entry for a request. */
enum sl_cc_action {
    SL_CC_ACT_FRESH = 0,              /* serve it */
    SL_CC_ACT_STALE_OK,               /* stale, but the request's max-stale accepts it: serve */
    SL_CC_ACT_STALE_WHILE_REVALIDATE, /* serve it now and refresh it in the background */
    SL_CC_ACT_REVALIDATE,             /* validate (conditional request) before serving */
    SL_CC_ACT_UNSATISFIABLE,          /* only-if-cached and it would need the origin: 504 */
};

typedef struct sl_cc_decision {
    int action;             /* enum sl_cc_action */
    const char *why;        /* static reason ("fresh", "stale", "no-cache", ...) */
    int64_t age_ms;         /* current_age at now */
    int64_t error_grace_ms; /* if the origin fails now (5xx, unreachable, timeout) the
                             * entry may be served instead for this many more ms; 0: no */
} sl_cc_decision_t;

/* Decide for entry e, a request with directives req (sl_cc_request_directives; NULL to
 * ignore the client's directives, e.g. for a route that shields its origin), the route's
 * options (may be NULL) and now. In order:
 *  1. response no-cache (§5.2.2.4) or request no-cache (§5.2.1.4): REVALIDATE;
 *  2. fresh (§4.2) and within the request's max-age (age <= max-age, §5.2.1.1) and
 *     min-fresh (lifetime - age >= min-fresh, §5.2.1.3): FRESH; fresh but too old for the
 *     request: REVALIDATE;
 *  3. stale: if the request's max-age is exceeded or it has min-fresh: REVALIDATE; stale
 *     serving is forbidden by must-revalidate and proxy-revalidate (§5.2.2.2, §5.2.2.8);
 *     s-maxage implies proxy-revalidate for us (§5.2.2.10) but an explicit
 *     stale-while-revalidate / stale-if-error beside it in the same field still counts
 *     (only the route's defaults are blocked);
 *     within the stale-while-revalidate window (the response's, else the route's):
 *     STALE_WHILE_REVALIDATE (RFC 5861 §3); else within the request's max-stale
 *     (staleness <= max-stale, §5.2.1.2): STALE_OK; else REVALIDATE;
 *  4. REVALIDATE with only-if-cached in the request: UNSATISFIABLE (§5.2.1.7).
 * error_grace_ms (any action): the entry may stand in for a failed origin while
 * age < lifetime + window, window = the largest of the response's stale-if-error (else
 * the route's) and the request's (RFC 5861 §4); 0 under no-cache, must-revalidate or
 * proxy-revalidate. Windows end exclusive (like freshness: age < lifetime). Returns
 * out->action. */
int sl_cc_lookup(const sl_cc_entry_t *e, const sl_cc_t *req, const sl_cc_route_t *route,
                 int64_t now_ms, sl_cc_decision_t *out);

/* How long after now_ms the entry can still be served without the origin in any way
 * (fresh, stale-while-revalidate or stale-if-error, ignoring request directives), in ms;
 * 0 when only a validation can use it. For the store's own expiry (L1 eviction, Redis
 * TTL); an entry with a validator may be kept longer for conditional requests. */
int64_t sl_cc_usable_ms(const sl_cc_entry_t *e, const sl_cc_route_t *route, int64_t now_ms);

/* ---------------------------------------------------------------------------------------
 * Vary (RFC 9111 §4.1)
 * ------------------------------------------------------------------------------------- */

#define SL_CC_VARY_MAX 16    /* names one Vary may list */
#define SL_CC_VARY_BYTES 256 /* bytes of all names together */

enum sl_cc_vary_flag {
    SL_CC_VARY_STAR = 1u << 0, /* "*": never matches (§4.1) */
    SL_CC_VARY_BAD = 1u << 1,  /* over the bounds above, or an element that is not a token */
};

/* A response's Vary, normalized: field names lower-cased, sorted, without duplicates.
 * Name i is names[off[i] .. off[i] + len[i]), not NUL-terminated. Zero-initialise. */
typedef struct sl_cc_vary {
    uint8_t flags; /* enum sl_cc_vary_flag */
    uint8_t n;
    uint16_t used;
    uint16_t off[SL_CC_VARY_MAX];
    uint8_t len[SL_CC_VARY_MAX];
    char names[SL_CC_VARY_BYTES];
} sl_cc_vary_t;

/* Add one Vary field line v[0..n) to out (comma-separated field names, whitespace and
 * empty elements tolerated). Returns 0, SL_EINVAL once "*" was seen, SL_ETOOBIG once
 * anything was out of bounds or invalid (out->flags says; both are sticky). */
int sl_cc_vary_add(sl_cc_vary_t *out, const char *v, size_t n);

/* Zero out, then add every Vary line of resp[0..n). Returns as sl_cc_vary_add; 0 with
 * out->n == 0 when there is no Vary. */
int sl_cc_vary_parse(const sl_http_header_t *resp, unsigned n, sl_cc_vary_t *out);

/* The secondary key of a request with headers req[0..n) for vary v, into buf[0..cap):
 * for each name in v's order, "name:value\n" when the request has the field and "name\n"
 * when it does not (absent never equals empty). value combines the field's lines in order;
 * each comma-separated element (commas inside quoted strings do not split) is trimmed,
 * empty elements are dropped, and elements are joined with ", " - so "gzip,br", "gzip ,
 * br" and two lines "gzip" + "br" give the same key. Values are otherwise compared as
 * sent (no case folding). Returns the key length, SL_EINVAL when v has a flag set (never
 * matches: no key), or SL_ETOOBIG when cap is too small. buf may be NULL when cap is 0
 * (to learn nothing but SL_ETOOBIG / SL_EINVAL / 0). */
int64_t sl_cc_vary_key(const sl_cc_vary_t *v, const sl_http_header_t *req, unsigned n, char *buf,
                       size_t cap);

/* A 64-bit hash of the secondary key sl_cc_vary_key would write, computed without a
 * buffer (any length): sl_hash_bytes(key) for keys up to 256 bytes; longer keys chain
 * sl_hash_seeded over 256-byte blocks. Equal keys, equal hashes. 0 when v has a flag set
 * (never matches): callers check v->flags first. */
uint64_t sl_cc_vary_hash(const sl_cc_vary_t *v, const sl_http_header_t *req, unsigned n);

/* ---------------------------------------------------------------------------------------
 * Header fields of stored responses (RFC 9111 §3.1, §3.2, §4.3.4)
 * ------------------------------------------------------------------------------------- */

/* 1 when response field f (one of all[0..n), the whole response) must not be stored: f->hop
 * is set, or it is hop-by-hop (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade), or named by a Connection field of all (RFC 9110 §7.6.1), or
 * proxy-specific (Proxy-Authenticate, Proxy-Authentication-Info, Proxy-Authorization:
 * RFC 9111 §3.1). Else 0. */
int sl_cc_store_drops(const sl_http_header_t *f, const sl_http_header_t *all, unsigned n);

/* 1 when field f of a 304 (one of all[0..n), the 304's fields) replaces the stored fields
 * of that name (§4.3.4, §3.2): every field except those sl_cc_store_drops drops,
 * Content-Length, and Content-Range (which §3.2 lets us skip: stored entries are whole). */
int sl_cc_304_updates(const sl_http_header_t *f, const sl_http_header_t *all, unsigned n);

/* ---------------------------------------------------------------------------------------
 * Conditional requests answered from the cache (RFC 9110 §13.1, §13.2; RFC 9111 §4.3.2)
 * ------------------------------------------------------------------------------------- */

enum sl_cc_cond {
    SL_CC_COND_FULL = 0,     /* answer with the stored response */
    SL_CC_COND_NOT_MODIFIED, /* answer 304 (with the stored response's fields) */
    SL_CC_COND_FORWARD,      /* If-Match / If-Unmodified-Since: not for a cache to evaluate
                              * (RFC 9111 §4.3.2): send the request to the origin */
};

/* 1 when an If-None-Match value list[0..n) matches entity-tag etag[0..elen) by the weak
 * comparison (RFC 9110 §8.8.3.2: opaque-tags equal, W/ ignored): "*" matches any valid
 * tag, a list matches when one member does. 0 when either is malformed. */
int sl_cc_etag_match(const char *list, size_t n, const char *etag, size_t elen);

/* How to answer a request with headers req[0..nreq) from a stored response with status
 * stored_status and fields stored[0..nstored) (the caller has decided it may be served).
 * If-Match or If-Unmodified-Since: FORWARD. Preconditions are for 2xx only (§13.2.1):
 * other statuses FULL. If-None-Match present (any line): NOT_MODIFIED when it matches the
 * stored ETag (weak comparison, "*" matches), else FULL; If-Modified-Since is then ignored
 * (§13.1.3). Otherwise one valid If-Modified-Since and a valid stored Last-Modified at or
 * before it: NOT_MODIFIED; else FULL (no Last-Modified: FULL; we do not fall back to Date).
 * If-Range is ignored: sluice answers ranges with the whole 200 (§14.2). now_ms resolves
 * RFC 850 years. */
int sl_cc_conditional(const sl_http_header_t *req, unsigned nreq, int stored_status,
                      const sl_http_header_t *stored, unsigned nstored, int64_t now_ms);

#endif
