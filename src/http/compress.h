/* compress.h - the decisions behind response compression (RFC 9110 §8.4, §8.8.3, §12.5.3).
 * Owns: Accept-Encoding parsing, the choice of a content coding among those available,
 * whether a response may be compressed on the fly, the Vary check, the cache-variant token
 * and the ETag of a compressed representation. Pure functions: never compresses a byte
 * (the streaming gzip/brotli encoders live elsewhere), never does I/O, never allocates,
 * never reads a clock. Every input is a (pointer, length) pair, never read past its
 * length. Any thread.
 *
 * How a caller uses it, for a response it could compress (proxied, or a static file):
 *   1. sl_compress_accept_from(request)        -> the client's preferences
 *   2. sl_compress_eligible(...) (on the fly) or the precompressed siblings that exist
 *      (static)                                -> the available codings
 *   3. sl_compress_choose(prefs, available)    -> the coding to send
 *   4. sl_compress_vary_has(response) == 0     -> append "Vary: Accept-Encoding" (always,
 *      whenever step 2 found a coding available, even if step 3 chose identity: the
 *      response *could* have been different for another Accept-Encoding)
 *   5. a compressed answer gets Content-Encoding: sl_compress_token(coding), loses its
 *      Content-Length (unknown until the encoder is done) and its ETag is rewritten with
 *      sl_compress_etag; the cache stores it under Vary: Accept-Encoding. */
#ifndef SL_COMPRESS_H
#define SL_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"
#include "http1.h"

/* ---------------------------------------------------------------------------------------
 * Codings
 * ------------------------------------------------------------------------------------- */

/* The content codings sluice can send, and the "nothing acceptable" answer of
 * sl_compress_choose. The values index sl_compress_accept_t.q. */
enum sl_compress_coding {
    SL_COMPRESS_IDENTITY = 0,       /* no content coding */
    SL_COMPRESS_GZIP = 1,           /* gzip (RFC 9110 §8.4.1.3; "x-gzip" is the same) */
    SL_COMPRESS_BR = 2,             /* brotli (RFC 7932) */
    SL_COMPRESS_NOT_ACCEPTABLE = 3, /* sl_compress_choose only: see there */
};

/* Index of the "*" wildcard in sl_compress_accept_t.q (not a coding). */
#define SL_COMPRESS_STAR 3

/* Bits of the `available` mask: which compressed representations the caller can produce
 * (both when compressing on the fly; for a static file, the .br / .gz siblings that exist).
 * Identity is always available and has no bit. */
#define SL_COMPRESS_HAVE_GZIP (1u << SL_COMPRESS_GZIP)
#define SL_COMPRESS_HAVE_BR (1u << SL_COMPRESS_BR)
#define SL_COMPRESS_HAVE_ALL (SL_COMPRESS_HAVE_GZIP | SL_COMPRESS_HAVE_BR)

/* qvalues are kept in thousandths: "1" is 1000, "0.5" is 500, "0.001" is 1. */
#define SL_COMPRESS_Q_MAX 1000

/* A suggested minimum body size for on-the-fly compression (sl_compress_eligible's
 * min_length): below about a kilobyte the gzip/brotli framing and the lost sendfile win
 * outweigh the saving. A default for configuration, not used by this module. */
#define SL_COMPRESS_MIN_LENGTH 1024

/* The name of a coding as sent in Content-Encoding and as the cache-variant token:
 * "br", "gzip", and "" for identity and SL_COMPRESS_NOT_ACCEPTABLE (the caller then sends
 * identity: see sl_compress_choose) and for any other value. Static strings. */
const char *sl_compress_token(int coding);

/* The file-name suffix of a precompressed static sibling: ".br", ".gz"; "" otherwise. */
const char *sl_compress_suffix(int coding);

/* ---------------------------------------------------------------------------------------
 * Accept-Encoding (RFC 9110 §12.5.3, qvalues §12.4.2)
 * ------------------------------------------------------------------------------------- */

/* A request's preferences. Zero-initialise (= no field seen), then parse each field line
 * into it; or let sl_compress_accept_from do both. */
typedef struct sl_compress_accept {
    uint16_t q[4];    /* per coding (enum sl_compress_coding) and SL_COMPRESS_STAR, in
                       * thousandths, 0..SL_COMPRESS_Q_MAX; meaningful only when listed */
    uint8_t listed;   /* bit 1u << index: q[index] was given by the client */
    uint8_t present;  /* an Accept-Encoding field line was seen, even an empty one */
    uint16_t ignored; /* invalid elements skipped (saturates at 65535), for metrics */
} sl_compress_accept_t;

/* Parse one Accept-Encoding field line v[0..n) into out, accumulating (call once per line;
 * v may be NULL when n is 0). Sets out->present. Per element of the comma-separated list:
 *  - whitespace around elements and around ';' is skipped; empty elements ("gzip,,br",
 *    a leading or trailing comma) are tolerated (RFC 9110 §5.6.1);
 *  - the coding name is a token, case-insensitive: "br", "gzip", "x-gzip" (= gzip,
 *    §8.4.1.3), "identity", "*"; other valid names (deflate, zstd, compress) are valid but
 *    not recorded, since sluice cannot produce them;
 *  - parameters are `;name=value` (value a token or a quoted-string, commas inside quotes
 *    do not split the list); "q" (case-insensitive) is the weight, in any position,
 *    others are extension parameters and ignored ("gzip;q=0.5;x=y" is gzip at 500); empty
 *    parameters ("gzip;" "gzip;;q=1") are allowed by §5.6.6;
 *  - qvalue = "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3"0" ] exactly: "1.0001", "1.001", "2",
 *    ".5", "0.5000", "-0", q="0.5" (quoted), "q = 0.5" (§5.6.6 allows no space around
 *    '='), a second q, a parameter without '=' or a name followed by anything but ';'
 *    make the whole element invalid: it is skipped and out->ignored counts it. (A
 *    skipped "gzip;q=O" leaves gzip unlisted: then unacceptable unless "*" allows it.)
 *  - a coding listed more than once (in one line, across lines, or as gzip and x-gzip)
 *    keeps its LOWEST qvalue: the most restrictive reading, never sending what the client
 *    refused once, and the result does not depend on the order of elements or lines.
 * Never fails; returns the number of valid elements in this line (recorded or not). */
int sl_compress_accept_parse(const char *v, size_t n, sl_compress_accept_t *out);

/* Zero out, then parse every Accept-Encoding line of req[0..n) (matched by name,
 * case-insensitively), in order. */
void sl_compress_accept_from(const sl_http_header_t *req, unsigned n, sl_compress_accept_t *out);

/* The weight (0..SL_COMPRESS_Q_MAX) that a gives coding (IDENTITY, GZIP or BR):
 *  - no Accept-Encoding field at all: identity 1000, gzip and br 0. RFC 9110 lets a
 *    server send any coding then, but clients that omit the field (scripts, old
 *    libraries, some health checkers) frequently cannot decode one: sluice never
 *    compresses for them;
 *  - the coding listed: its q;
 *  - else "*" listed: the q of "*" (which covers identity too: "*;q=0" refuses it);
 *  - else identity 1 (0.001: acceptable unless excluded, §12.5.3, but the last resort -
 *    RFC 9110 gives an unlisted identity no weight, and a client that lists a coding at
 *    any weight would rather have it; Node's `negotiator` ranks it lowest too), gzip and
 *    br 0 (a field that does not name them refuses them; an empty field refuses every
 *    coding).
 * Any other coding value: 0. */
unsigned sl_compress_q(const sl_compress_accept_t *a, int coding);

/* The coding to send given the client's preferences a and the available mask (bits
 * SL_COMPRESS_HAVE_*; other bits are ignored). The highest sl_compress_q > 0 among br
 * (when available), gzip (when available) and identity; on a tie br beats gzip and both
 * beat identity (compression is why we negotiate; br is the smaller). So "gzip, br" is
 * br, "identity, gzip" is gzip, "gzip;q=0.1" is gzip (identity unlisted: 0.001), but
 * "identity;q=1, gzip;q=0.5" is identity.
 * SL_COMPRESS_NOT_ACCEPTABLE when every candidate has q 0: identity refused
 * ("identity;q=0", or "*;q=0" without an identity entry) and no available coding
 * accepted. RFC 9110 §12.1 and §12.5.3 then allow a 406 or disregarding the field;
 * sluice's callers are expected to disregard it and send identity (a 406 for a page the
 * client could well read breaks more than it fixes); a strict mode may answer 406. */
int sl_compress_choose(const sl_compress_accept_t *a, unsigned available);

/* ---------------------------------------------------------------------------------------
 * Which responses may be compressed on the fly
 * ------------------------------------------------------------------------------------- */

/* 1 when media type v[0..n) (a Content-Type value; parameters such as charset are ignored,
 * case-insensitive, surrounding whitespace allowed) is worth compressing, else 0:
 *   every text/ type except text/event-stream (a stream of small events that must not
 *     wait in an encoder's buffer);
 *   any type whose subtype ends in "+json" or "+xml" (application/ld+json, problem+json,
 *     application/atom+xml, application/xhtml+xml, image/svg+xml, ...);
 *   application/json, application/javascript, application/x-javascript,
 *   application/ecmascript, application/xml, application/yaml, application/x-yaml,
 *   application/wasm, application/vnd.ms-fontobject, application/x-font-ttf,
 *   application/x-font-otf, font/ttf, font/otf, font/collection, image/x-icon,
 *   image/vnd.microsoft.icon, image/bmp.
 * Already-compressed formats (images, video, font/woff and woff2, archives) and
 * application/octet-stream are not; neither is a malformed type. */
int sl_compress_type_ok(const char *v, size_t n);

/* May sluice compress this response on the fly? method (enum sl_http_method) and req[0..
 * nreq) are the request's, status and resp[0..nresp) the response's; min_length is the
 * smallest Content-Length worth compressing (SL_COMPRESS_MIN_LENGTH is a fair default).
 * Returns 1 or 0; *why (when why is not NULL) gets a static reason:
 *   "ok";
 *   "method"          HEAD (no body to compress: the identity answer is as valid) or
 *                     CONNECT;
 *   "status"          not a final status (< 200 or > 599);
 *   "no content"      204, 205, 304: no body;
 *   "partial"         206, or "content-range" a Content-Range field: never compress
 *                     ranges (the range is of the identity representation);
 *   "encoded"         a Content-Encoding field whose elements are not all "identity"
 *                     (an empty one counts as encoded: never second-guess the origin);
 *   "transfer-coded"  a Transfer-Encoding other than chunked;
 *   "no-transform"    Cache-Control: no-transform in the response (RFC 9110 §7.7: a
 *                     proxy MUST NOT transform it), or "request no-transform" in the
 *                     request (the client asks intermediaries not to);
 *   "type"            no Content-Type, several different ones, or one
 *                     sl_compress_type_ok rejects;
 *   "content-length"  a Content-Length that is not one decimal number (or lines that
 *                     disagree);
 *   "too small"       Content-Length below min_length, or 0.
 * No Content-Length (chunked, or close-delimited: unknown length) is no reason: 1.
 * Header names are matched case-insensitively; ids are not needed. */
int sl_compress_eligible(int method, int status, const sl_http_header_t *req, unsigned nreq,
                         const sl_http_header_t *resp, unsigned nresp, uint64_t min_length,
                         const char **why);

/* ---------------------------------------------------------------------------------------
 * Vary and cache variants (RFC 9110 §12.5.5)
 * ------------------------------------------------------------------------------------- */

/* 1 when some Vary line of resp[0..n) already lists Accept-Encoding (case-insensitive)
 * or "*" (which covers it), so the caller must not append another; else 0. */
int sl_compress_vary_has(const sl_http_header_t *resp, unsigned n);

/* The response cache keys compressed variants by the request's Accept-Encoding value
 * itself (RFC 9111 Vary), not by the coding chosen: an origin may pick a coding of its own
 * (zstd, deflate) for one spelling, and a token would hand it to a client that did not ask
 * for it (docs/static.md). */

/* ---------------------------------------------------------------------------------------
 * ETag of a compressed representation (RFC 9110 §8.8.3)
 * ------------------------------------------------------------------------------------- */

/* The most bytes sl_compress_etag adds: strlen("-gzip"). */
#define SL_COMPRESS_ETAG_EXTRA 5

/* Derive the ETag of the `coding` representation from the identity ETag etag[0..n)
 * (surrounding whitespace allowed), into out[0..cap): the suffix "-br" or "-gzip" goes
 * inside the quotes, W/ is kept: "abc" -> "abc-gzip", W/"abc" -> W/"abc-br". A strong
 * validator must differ between representations whose bytes differ (§8.8.3: sending the
 * identity ETag on gzip bytes would let a range or a 304 mix the two); a weak one is
 * changed too, so that no cache treats the two as interchangeable bytes. SL_COMPRESS_
 * IDENTITY copies the tag unchanged. Returns the length written (at most n +
 * SL_COMPRESS_ETAG_EXTRA), SL_EINVAL when etag is not one valid entity-tag (the caller
 * then drops the field) or coding is not IDENTITY, GZIP or BR, SL_ETOOBIG when cap is
 * too small (nothing written; out may be NULL when cap is 0). out must not overlap etag. */
int64_t sl_compress_etag(const char *etag, size_t n, int coding, char *out, size_t cap);

#endif
