/* http1.h - HTTP/1.1 message parsing (RFC 9112), strict and zero-copy.
 * Owns: request/response head parsing, chunked body decoding, header classification.
 * Never does I/O, never allocates, never copies header bytes: every slice points into
 * the caller's buffer, which must outlive the parsed message. */
#ifndef SL_HTTP1_H
#define SL_HTTP1_H

#include "../core/common.h"

#define SL_HTTP_MAX_HEADERS 64 /* more header fields than this: SL_ETOOBIG (431) */
#define SL_EVERSION (-8)       /* HTTP major version other than 1: answer 505 */

/* Methods: enum sl_http_method lives in core/common.h (config needs it too). */

/* Header names the gateway acts on; SL_H_OTHER for the rest. Matched case-insensitively.
 * Append new ids at the end (before SL_H__COUNT); the numbers are not part of any contract. */
enum sl_http_header_id {
    SL_H_OTHER = 0,
    SL_H_HOST,
    SL_H_CONTENT_LENGTH,
    SL_H_TRANSFER_ENCODING,
    SL_H_CONNECTION,
    SL_H_KEEP_ALIVE,
    SL_H_PROXY_CONNECTION,
    SL_H_TE,
    SL_H_TRAILER,
    SL_H_UPGRADE,
    SL_H_EXPECT,
    SL_H_X_FORWARDED_FOR,
    SL_H_X_REAL_IP,
    SL_H_X_FORWARDED_PROTO,
    SL_H_VIA,
    SL_H_X_REQUEST_ID,
    SL_H_DATE,
    SL_H_SERVER,
    SL_H_AUTHORIZATION,
    SL_H_COOKIE,
    SL_H_SET_COOKIE,
    SL_H_CACHE_CONTROL,
    SL_H_CONTENT_TYPE,
    SL_H_PROXY_AUTHENTICATE,
    SL_H_PROXY_AUTHORIZATION,
    SL_H__COUNT
};

/* Flags derived from the head while parsing, so callers never re-scan headers. */
enum sl_http_flag {
    SL_HF_CHUNKED = 1u << 0,         /* Transfer-Encoding ends in chunked */
    SL_HF_CONTENT_LENGTH = 1u << 1,  /* a valid Content-Length was present */
    SL_HF_CONN_CLOSE = 1u << 2,      /* Connection: close */
    SL_HF_CONN_KEEPALIVE = 1u << 3,  /* Connection: keep-alive */
    SL_HF_CONN_UPGRADE = 1u << 4,    /* Connection lists "upgrade" */
    SL_HF_UPGRADE = 1u << 5,         /* an Upgrade header is present */
    SL_HF_EXPECT_CONTINUE = 1u << 6, /* Expect: 100-continue (ignored in an HTTP/1.0 request) */
    SL_HF_TE_OTHER = 1u << 7,        /* response only: Transfer-Encoding present but not ending in chunked */
};

/* One header field. name/value point into the parsed buffer; value has surrounding
 * whitespace (OWS) removed. hop is 1 for hop-by-hop fields: the fixed set (Connection,
 * Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade) and any field
 * named in a Connection header. 24 bytes. */
typedef struct sl_http_header {
    const char *name;
    const char *value;
    uint32_t value_len;
    uint16_t name_len;
    uint8_t id;  /* enum sl_http_header_id */
    uint8_t hop;
} sl_http_header_t;

typedef struct sl_http_request {
    sl_slice_t method;
    sl_slice_t target;  /* as sent: "/a/b?q", "*", "http://h/a?q" */
    sl_slice_t path;    /* "/a/b" (absolute-form: the path after the authority, "/" if empty;
                         * "*" for OPTIONS *; len 0 and p NULL for CONNECT's authority-form) */
    sl_slice_t query;   /* "q" without the '?'; len 0 and p NULL when absent */
    sl_slice_t host;    /* Host header value, or the authority of an absolute-form target */
    uint8_t method_id;  /* enum sl_http_method */
    uint8_t version;    /* 10 or 11 */
    uint16_t nheaders;
    uint32_t flags;         /* enum sl_http_flag */
    int64_t content_length; /* -1 when absent */
    sl_http_header_t headers[SL_HTTP_MAX_HEADERS];
} sl_http_request_t;

typedef struct sl_http_response {
    sl_slice_t reason;
    uint16_t status;
    uint8_t version; /* 10 or 11 */
    uint8_t pad;
    uint16_t nheaders;
    uint32_t flags;
    int64_t content_length;
    sl_http_header_t headers[SL_HTTP_MAX_HEADERS];
} sl_http_response_t;

/* Parse one request head (request-line, header fields, empty line) at buf[0..len).
 * Leading empty lines (CRLF) before the request-line are skipped (RFC 9112 §2.2).
 * *scan is where the search for the end of the head resumes; set it to 0 before the
 * first call for a message and pass it back unchanged on each retry with more bytes,
 * so a client trickling bytes costs O(n) in total, not O(n^2).
 * Returns:
 *   > 0          length of the head in bytes (including the final CRLF); *req filled
 *   SL_AGAIN     head incomplete (and len < max_head)
 *   SL_ETOOBIG   head longer than max_head bytes, or more than SL_HTTP_MAX_HEADERS fields (431)
 *   SL_EBADMSG   malformed: bad method/target/version characters, bare CR or LF, NUL or other
 *                CTL in a field, obs-fold, missing colon, whitespace before the colon, missing
 *                or repeated Host in HTTP/1.1, Content-Length with Transfer-Encoding, differing
 *                or invalid Content-Length, Transfer-Encoding in HTTP/1.0, Transfer-Encoding
 *                whose final coding is not chunked, a Host or absolute-form authority with
 *                bytes outside uri-host[:port] (userinfo, '/', whitespace), a Connection
 *                header naming Host or Content-Length (400, close)
 *   SL_ENOTSUP   Transfer-Encoding with a coding other than chunked, chunked last (501)
 *   SL_EVERSION  HTTP version whose major is not 1 (505)
 * Identical repeated Content-Length values ("5, 5" or two "5" fields) count as one. */
int sl_http1_parse_request(const char *buf, size_t len, size_t max_head, size_t *scan,
                           sl_http_request_t *req);

/* Parse one response head (status-line, fields, empty line) from an upstream.
 * Same conventions and return codes as sl_http1_parse_request (SL_EBADMSG covers a bad
 * status line, a status outside 100..599, CL with TE, differing CL). A response with
 * Transfer-Encoding whose final coding is not chunked sets SL_HF_TE_OTHER (body runs to
 * EOF) rather than failing; Transfer-Encoding in an HTTP/1.0 response is SL_EBADMSG
 * (RFC 9112 §6.1: faulty framing), as is chunked listed twice. No Host requirement. */
int sl_http1_parse_response(const char *buf, size_t len, size_t max_head, size_t *scan,
                            sl_http_response_t *resp);

/* How a message body is delimited. */
enum sl_http_body {
    SL_BODY_NONE = 0, /* no body at all */
    SL_BODY_LENGTH,   /* exactly content_length bytes */
    SL_BODY_CHUNKED,  /* chunked coding */
    SL_BODY_EOF,      /* response only: until the connection closes */
};

/* Body kind of a parsed request: CHUNKED, LENGTH (content_length > 0) or NONE. */
int sl_http1_request_body(const sl_http_request_t *req);

/* Body kind of a response to a request with method req_method (RFC 9112 §6.3):
 * HEAD, 1xx, 204 and 304 have none; then chunked; then TE-other → EOF; then length;
 * otherwise EOF. A Content-Length of 0, and a 2xx to CONNECT (a tunnel), are NONE. */
int sl_http1_response_body(const sl_http_response_t *resp, int req_method);

/* Incremental chunked-body decoder (RFC 9112 §7.1). Zero-initialise before a body. */
typedef struct sl_chunked {
    uint64_t remaining; /* data bytes left in the current chunk */
    uint32_t line_len;  /* bytes of the current size/trailer line seen so far (bounded) */
    uint32_t trailer_len;
    uint8_t state;      /* private */
    uint8_t done;       /* 1 once the last chunk and the trailer section are consumed */
    uint8_t digits;     /* private */
    uint8_t pad;
} sl_chunked_t;

/* Decode from in[0..len). Consumes framing bytes (size lines, extensions, CRLFs, the
 * trailer section, which is validated and discarded) or chunk data, one piece per call:
 * when it stops in chunk data it returns the bytes consumed and sets *data_off, *data_len
 * to the data span inside in[] (otherwise *data_len = 0). Call again with the rest.
 * Returns bytes consumed (>= 0; 0 only when len == 0 or st->done), SL_EBADMSG (bad size,
 * size overflow, missing CRLF, bad extension or trailer bytes) or SL_ETOOBIG (a size line
 * over 4 KiB, or trailers over 8 KiB). Bytes after the final CRLF are not consumed. */
int64_t sl_http1_chunked_decode(sl_chunked_t *st, const char *in, size_t len, size_t *data_off,
                                size_t *data_len);

/* Classify a header name (case-insensitive). */
int sl_http1_header_id(const char *name, size_t len);

/* Method id of a method token (exact, case-sensitive as RFC 9110 says). */
int sl_http1_method_id(const char *m, size_t len);

/* First header with this id, or NULL. */
const sl_http_header_t *sl_http1_find(const sl_http_header_t *h, unsigned n, int id);

/* Reason phrase for a status code ("OK", "Not Found", ...; "Unknown" otherwise). */
const char *sl_http1_reason(int status);

/* Case-insensitive search for token tok in a comma-separated list value (e.g. a
 * Connection header): 1 if present as a whole element, else 0. */
int sl_http1_list_has(const char *v, size_t vlen, const char *tok, size_t toklen);

#endif
