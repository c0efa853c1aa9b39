/* test_http1.c - unit tests for the HTTP/1.1 parser (src/http/http1.c): every rule of the
 * request/response head parsers and the chunked decoder, each with an accepted and a
 * rejected case, plus whole-versus-trickled equivalence. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../src/http/http1.h"

#define MAXH 8192
#define S(lit) (lit), (sizeof(lit) - 1)

static sl_http_request_t g_req, g_req2;
static sl_http_response_t g_resp, g_resp2;

static int slice_is(sl_slice_t s, const char *want)
{
    size_t n = strlen(want);
    return s.len == n && (n == 0 || memcmp(s.p, want, n) == 0);
}

static int hdr_value_is(const sl_http_header_t *h, const char *want)
{
    return slice_is((sl_slice_t){h->value, h->value_len}, want);
}

static int req_n(const char *s, size_t n, sl_http_request_t *r)
{
    size_t scan = 0;
    memset(r, 0, sizeof(*r));
    return sl_http1_parse_request(s, n, MAXH, &scan, r);
}

static int req(const char *s)
{
    return req_n(s, strlen(s), &g_req);
}

static int resp_n(const char *s, size_t n, sl_http_response_t *r)
{
    size_t scan = 0;
    memset(r, 0, sizeof(*r));
    return sl_http1_parse_response(s, n, MAXH, &scan, r);
}

static int resp(const char *s)
{
    return resp_n(s, strlen(s), &g_resp);
}

static void assert_same_request(const sl_http_request_t *a, const sl_http_request_t *b)
{
    assert_ptr_equal(a->method.p, b->method.p);
    assert_int_equal(a->method.len, b->method.len);
    assert_ptr_equal(a->target.p, b->target.p);
    assert_int_equal(a->target.len, b->target.len);
    assert_ptr_equal(a->path.p, b->path.p);
    assert_int_equal(a->path.len, b->path.len);
    assert_ptr_equal(a->query.p, b->query.p);
    assert_int_equal(a->query.len, b->query.len);
    assert_ptr_equal(a->host.p, b->host.p);
    assert_int_equal(a->host.len, b->host.len);
    assert_int_equal(a->method_id, b->method_id);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->content_length, b->content_length);
    assert_int_equal(a->nheaders, b->nheaders);
    assert_memory_equal(a->headers, b->headers, a->nheaders * sizeof(a->headers[0]));
}

/* Feeds s[0..n) one more byte per call, as a slow client would, reusing *scan. Every call
 * before the last must say SL_AGAIN; the final result must equal parsing s whole. */
static void check_request_trickle(const char *s, size_t n, size_t max_head)
{
    size_t scan = 0;
    int whole = sl_http1_parse_request(s, n, max_head, &scan, &g_req2);
    int rc = SL_AGAIN;
    size_t l;
    scan = 0;
    memset(&g_req, 0, sizeof(g_req));
    for (l = 1; l <= n; l++) {
        rc = sl_http1_parse_request(s, l, max_head, &scan, &g_req);
        if (rc != SL_AGAIN)
            break;
        assert_true(scan <= l);
    }
    assert_int_equal(rc, whole);
    if (rc > 0) {
        assert_int_equal(l, (size_t)rc); /* complete exactly when the last byte arrives */
        assert_same_request(&g_req, &g_req2);
    }
}

static void check_response_trickle(const char *s, size_t n)
{
    size_t scan = 0;
    int whole = sl_http1_parse_response(s, n, MAXH, &scan, &g_resp2);
    int rc = SL_AGAIN;
    size_t l;
    scan = 0;
    memset(&g_resp, 0, sizeof(g_resp));
    for (l = 1; l <= n; l++) {
        rc = sl_http1_parse_response(s, l, MAXH, &scan, &g_resp);
        if (rc != SL_AGAIN)
            break;
    }
    assert_int_equal(rc, whole);
    if (rc > 0) {
        assert_int_equal(l, (size_t)rc);
        assert_int_equal(g_resp.status, g_resp2.status);
        assert_ptr_equal(g_resp.reason.p, g_resp2.reason.p);
        assert_int_equal(g_resp.reason.len, g_resp2.reason.len);
        assert_int_equal(g_resp.flags, g_resp2.flags);
        assert_int_equal(g_resp.content_length, g_resp2.content_length);
        assert_int_equal(g_resp.nheaders, g_resp2.nheaders);
        assert_memory_equal(g_resp.headers, g_resp2.headers,
                            g_resp.nheaders * sizeof(g_resp.headers[0]));
    }
}

/* ---- request line ---------------------------------------------------------------------- */

static const char TYPICAL[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1:18070\r\n"
                              "User-Agent: h2load nghttp2/1.52.0\r\nAccept: */*\r\n\r\n";

static void test_request_typical(void **state)
{
    (void)state;
    assert_int_equal(req(TYPICAL), (int)strlen(TYPICAL));
    assert_true(slice_is(g_req.method, "GET"));
    assert_int_equal(g_req.method_id, SL_M_GET);
    assert_true(slice_is(g_req.target, "/"));
    assert_true(slice_is(g_req.path, "/"));
    assert_null(g_req.query.p);
    assert_int_equal(g_req.query.len, 0);
    assert_true(slice_is(g_req.host, "127.0.0.1:18070"));
    assert_int_equal(g_req.version, 11);
    assert_int_equal(g_req.flags, 0);
    assert_int_equal(g_req.content_length, -1);
    assert_int_equal(g_req.nheaders, 3);
    assert_int_equal(g_req.headers[0].id, SL_H_HOST);
    assert_int_equal(g_req.headers[1].id, SL_H_OTHER);
    assert_int_equal(g_req.headers[1].name_len, 10);
    assert_true(hdr_value_is(&g_req.headers[1], "h2load nghttp2/1.52.0"));
    assert_true(hdr_value_is(&g_req.headers[2], "*/*"));
    for (int i = 0; i < 3; i++)
        assert_int_equal(g_req.headers[i].hop, 0);
    /* zero-copy: slices point into the caller's buffer */
    assert_ptr_equal(g_req.method.p, TYPICAL);
    assert_ptr_equal(g_req.host.p, TYPICAL + 22);
    assert_int_equal(sl_http1_request_body(&g_req), SL_BODY_NONE);
}

static void test_request_path_query(void **state)
{
    (void)state;
    assert_true(req("GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
    assert_true(slice_is(g_req.path, "/a/b"));
    assert_true(slice_is(g_req.query, "x=1&y"));
    assert_true(req("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
    assert_true(slice_is(g_req.path, "/a"));
    assert_non_null(g_req.query.p); /* present but empty */
    assert_int_equal(g_req.query.len, 0);
    assert_true(req("GET /a/b/c.html HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
    assert_null(g_req.query.p);
}

static void test_request_pipelined(void **state)
{
    (void)state;
    static const char two[] = "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                              "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
                              "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t n = sizeof(two) - 1, off = 0;
    int rc = req_n(two, n, &g_req);
    assert_int_equal(rc, 48);
    assert_true(slice_is(g_req.path, "/1"));
    assert_int_equal(g_req.content_length, 5);
    assert_int_equal(sl_http1_request_body(&g_req), SL_BODY_LENGTH);
    off = (size_t)rc + 5;
    rc = req_n(two + off, n - off, &g_req);
    assert_int_equal(rc, 28);
    assert_true(slice_is(g_req.path, "/2"));
    off += (size_t)rc;
    rc = req_n(two + off, n - off, &g_req);
    assert_int_equal(rc, 28);
    assert_true(slice_is(g_req.path, "/3"));
    assert_int_equal(off + (size_t)rc, n);
    /* the head of the first must not run into the second */
    static const char nobody[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n";
    assert_int_equal(req(nobody), 28);
    assert_true(slice_is(g_req.path, "/a"));
    assert_int_equal(g_req.nheaders, 1);
}

static void test_request_trickle(void **state)
{
    (void)state;
    static const char *const cases[] = {
        TYPICAL,
        "\r\n\r\nPOST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nConnection: close, "
        "X-A\r\n"
        "X-A: 1\r\n\r\nabc",
        "GET http://example.com/long/path/to/something?with=query HTTP/1.1\r\nHost: x\r\n"
        "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nCookie: a=b; c=d; e=f\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",                 /* bare LF: fails as soon as the head ends */
        "GET / HTTP/1.1\r\nHost: a\r\n\n",             /* "\r\n\n" also ends a head */
        "GET / HTTP/1.1\r\nHost: a\n\r\nX: y\r\n\r\n", /* "\n\r\n" */
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++)
        check_request_trickle(cases[i], strlen(cases[i]), MAXH);
    /* trickled into a small max_head: ETOOBIG at the same point as whole */
    check_request_trickle(TYPICAL, strlen(TYPICAL), 40);
}

static void test_request_bare_lf_fails_fast(void **state)
{
    (void)state;
    /* The head ends at "\n\n": 400 at once, no waiting for a "\r\n\r\n" that never comes. */
    assert_int_equal(req("GET / HTTP/1.1\nHost: a\n\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\n\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\n\r\n"), SL_EBADMSG);
    /* ... and without the terminator it is still incomplete */
    assert_int_equal(req("GET / HTTP/1.1\nHost: a\n"), SL_AGAIN);
}

static void test_request_leading_crlf(void **state)
{
    (void)state;
    static const char ok[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(req(ok), (int)strlen(ok)); /* the skipped lines count in the length */
    assert_true(slice_is(g_req.method, "GET"));
    assert_int_equal(req("\r\n"), SL_AGAIN);
    assert_int_equal(req("\r"), SL_AGAIN);
    static const char eight[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(req(eight), (int)strlen(eight));
    assert_int_equal(req("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
                     SL_EBADMSG);
    assert_int_equal(req("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
}

static void test_request_version(void **state)
{
    (void)state;
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
    assert_int_equal(g_req.version, 11);
    assert_true(req("GET / HTTP/1.0\r\n\r\n") > 0);
    assert_int_equal(g_req.version, 10);
    assert_true(req("GET / HTTP/1.7\r\nHost: h\r\n\r\n") > 0); /* 1.x, x >= 1: 1.1 */
    assert_int_equal(g_req.version, 11);
    assert_int_equal(req("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), SL_EVERSION);
    assert_int_equal(req("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), SL_EVERSION);
    assert_int_equal(req("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/11\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / http/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.a\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET /\r\nHost: h\r\n\r\n"), SL_EBADMSG); /* HTTP/0.9 style */
    assert_int_equal(req("GET / HTTP/1.1\rHost: h\r\n\r\n"), SL_EBADMSG);
}

static void test_request_method(void **state)
{
    (void)state;
    static const struct {
        const char *m;
        int id;
    } ids[] = {{"GET", SL_M_GET},
               {"HEAD", SL_M_HEAD},
               {"POST", SL_M_POST},
               {"PUT", SL_M_PUT},
               {"DELETE", SL_M_DELETE},
               {"PATCH", SL_M_PATCH},
               {"OPTIONS", SL_M_OPTIONS},
               {"TRACE", SL_M_TRACE},
               {"PURGE", SL_M_OTHER},
               {"M-SEARCH", SL_M_OTHER},
               {"get", SL_M_OTHER},
               {"GETX", SL_M_OTHER},
               {"X!#$%&'*+.^_`|~", SL_M_OTHER}};
    char buf[128];
    for (size_t i = 0; i < SL_ARRAY_LEN(ids); i++) {
        snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: h\r\n\r\n", ids[i].m);
        assert_true(req(buf) > 0);
        assert_int_equal(g_req.method_id, ids[i].id);
        assert_true(slice_is(g_req.method, ids[i].m));
    }
    assert_int_equal(sl_http1_method_id(S("CONNECT")), SL_M_CONNECT);
    assert_int_equal(req("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GE:T / HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("G\xc3\x89T / HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
}

static void test_request_target_chars(void **state)
{
    (void)state;
    assert_true(req("GET /%20a-._~!$&'()*+,;=:@/[x]{y}|^`\"<>\\?q=/? HTTP/1.1\r\nHost: h\r\n\r\n") >
                0);
    assert_true(slice_is(g_req.path, "/%20a-._~!$&'()*+,;=:@/[x]{y}|^`\"<>\\"));
    assert_true(slice_is(g_req.query, "q=/?"));
    /* a long target goes through the 16-byte scanner and its tail */
    assert_true(req("GET /0123456789abcdef0123456789abcdef0123456789 HTTP/1.1\r\nHost: h\r\n\r\n") >
                0);
    assert_int_equal(req("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET /0123456789abcdef0123\xff HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req_n(S("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"), &g_req), SL_EBADMSG);
    assert_int_equal(req("GET  HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
}

static void test_request_target_forms(void **state)
{
    (void)state;
    /* asterisk-form: OPTIONS only, and exactly "*" */
    assert_true(req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
    assert_true(slice_is(g_req.target, "*"));
    assert_true(slice_is(g_req.path, "*"));
    assert_int_equal(req("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);

    /* absolute-form: the authority becomes host, overriding the Host header */
    assert_true(req("GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other\r\n\r\n") > 0);
    assert_true(slice_is(g_req.host, "example.com:8080"));
    assert_true(slice_is(g_req.path, "/a/b"));
    assert_true(slice_is(g_req.query, "c=d"));
    assert_true(slice_is(g_req.target, "http://example.com:8080/a/b?c=d"));
    assert_true(req("GET HTTPS://Ex.com HTTP/1.1\r\nHost: Ex.com\r\n\r\n") > 0);
    assert_true(slice_is(g_req.host, "Ex.com"));
    assert_true(slice_is(g_req.path, "/")); /* empty path: "/" */
    assert_true(g_req.path.p >= g_req.target.p &&
                g_req.path.p < g_req.target.p + g_req.target.len); /* still in the buffer */
    assert_null(g_req.query.p);
    assert_true(req("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
    assert_true(slice_is(g_req.path, "/"));
    assert_true(slice_is(g_req.query, "q"));
    assert_true(req("GET http://[::1]:80/x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n") > 0);
    assert_true(slice_is(g_req.host, "[::1]:80"));
    assert_int_equal(req("GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET http:/h/ HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    /* absolute-form still needs Host in HTTP/1.1 */
    assert_int_equal(req("GET http://h/ HTTP/1.1\r\n\r\n"), SL_EBADMSG);

    /* authority-form: CONNECT only, and CONNECT only with it */
    assert_true(req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n") > 0);
    assert_int_equal(g_req.method_id, SL_M_CONNECT);
    assert_true(slice_is(g_req.target, "example.com:443"));
    assert_int_equal(g_req.path.len, 0);
    assert_true(req("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n") > 0);
    assert_int_equal(req("GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("CONNECT http://h:1/ HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("CONNECT h: HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("CONNECT h:123456 HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("CONNECT u@h:1 HTTP/1.1\r\nHost: h\r\n\r\n"), SL_EBADMSG);
}

/* ---- header fields --------------------------------------------------------------------- */

static void test_header_syntax(void **state)
{
    (void)state;
    /* OWS trimmed on both sides, inner whitespace kept; HTAB and obs-text allowed */
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: \t a \t b \t \r\nX-B:\xc3\xa9\x80\xff\r\n"
                    "X-C:\r\nX-D:   \r\n\r\n") > 0);
    assert_int_equal(g_req.nheaders, 5);
    assert_true(hdr_value_is(&g_req.headers[1], "a \t b"));
    assert_true(hdr_value_is(&g_req.headers[2], "\xc3\xa9\x80\xff"));
    assert_true(hdr_value_is(&g_req.headers[3], ""));
    assert_true(hdr_value_is(&g_req.headers[4], ""));
    /* every tchar in a name, long enough for the 16-byte scanner and its table fallback */
    static const char tname[] = "abcdefghijklmnop_!#$%&'*+.^`|~XYZ09";
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\nabcdefghijklmnop_!#$%&'*+.^`|~XYZ09: v\r\n\r\n") >
                0);
    assert_int_equal(g_req.headers[1].name_len, sizeof(tname) - 1);
    /* a long value through the 16-byte scanner */
    assert_true(
        req("GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789abcdef0123456789abcdef0123\r\n\r\n") > 0);
    assert_true(hdr_value_is(&g_req.headers[1], "0123456789abcdef0123456789abcdef0123"));

    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A\t: b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\n: b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX(A): b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nabcdefghijklmnopq/: b\r\n\r\n"), SL_EBADMSG);
    /* obs-fold */
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), SL_EBADMSG);
    /* NUL, other CTLs, DEL, bare CR, bare LF in a value */
    assert_int_equal(req_n(S("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n"), &g_req),
                     SL_EBADMSG);
    assert_int_equal(
        req_n(S("GET / HTTP/1.1\r\nHost: h\r\nX-A: 0123456789abcdef\0b\r\n\r\n"), &g_req),
        SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01 b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x1f\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\nX-B: b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\n\r\n"), SL_EBADMSG);
}

static void test_header_ids(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int id;
    } ids[] = {
        {"Host", SL_H_HOST},
        {"content-length", SL_H_CONTENT_LENGTH},
        {"TRANSFER-ENCODING", SL_H_TRANSFER_ENCODING},
        {"Connection", SL_H_CONNECTION},
        {"Keep-Alive", SL_H_KEEP_ALIVE},
        {"Proxy-Connection", SL_H_PROXY_CONNECTION},
        {"TE", SL_H_TE},
        {"Trailer", SL_H_TRAILER},
        {"Upgrade", SL_H_UPGRADE},
        {"Expect", SL_H_EXPECT},
        {"X-Forwarded-For", SL_H_X_FORWARDED_FOR},
        {"X-Real-IP", SL_H_X_REAL_IP},
        {"X-Forwarded-Proto", SL_H_X_FORWARDED_PROTO},
        {"Via", SL_H_VIA},
        {"X-Request-Id", SL_H_X_REQUEST_ID},
        {"Date", SL_H_DATE},
        {"Server", SL_H_SERVER},
        {"Authorization", SL_H_AUTHORIZATION},
        {"Cookie", SL_H_COOKIE},
        {"Set-Cookie", SL_H_SET_COOKIE},
        {"Cache-Control", SL_H_CACHE_CONTROL},
        {"Content-Type", SL_H_CONTENT_TYPE},
        {"Proxy-Authenticate", SL_H_PROXY_AUTHENTICATE},
        {"Proxy-Authorization", SL_H_PROXY_AUTHORIZATION},
        {"Hostx", SL_H_OTHER},
        {"Hos", SL_H_OTHER},
        {"Content-Lengtx", SL_H_OTHER},
        {"Accept", SL_H_OTHER},
        {"T", SL_H_OTHER},
        {"", SL_H_OTHER},
        {"X-Forwarded-For-And-More", SL_H_OTHER},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ids); i++)
        assert_int_equal(sl_http1_header_id(ids[i].name, strlen(ids[i].name)), ids[i].id);
    assert_true(req("GET / HTTP/1.1\r\nhOsT: h\r\nX-REAL-ip: 1\r\n\r\n") > 0);
    assert_int_equal(g_req.headers[0].id, SL_H_HOST);
    assert_int_equal(g_req.headers[1].id, SL_H_X_REAL_IP);
    const sl_http_header_t *h = sl_http1_find(g_req.headers, g_req.nheaders, SL_H_X_REAL_IP);
    assert_ptr_equal(h, &g_req.headers[1]);
    assert_null(sl_http1_find(g_req.headers, g_req.nheaders, SL_H_COOKIE));
}

static void test_header_host(void **state)
{
    (void)state;
    assert_int_equal(req("GET / HTTP/1.1\r\nX: y\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), SL_EBADMSG);
    assert_true(req("GET / HTTP/1.0\r\n\r\n") > 0);
    assert_null(g_req.host.p);
    assert_true(req("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n") > 0);
    assert_true(slice_is(g_req.host, "[::1]:8080"));
    assert_true(req("GET / HTTP/1.1\r\nHost:\r\n\r\n") > 0); /* empty Host is allowed */
    assert_int_equal(g_req.host.len, 0);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), SL_EBADMSG);
}

static void test_content_length(void **state)
{
    (void)state;
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n") > 0);
    assert_int_equal(g_req.content_length, 5);
    assert_true(g_req.flags & SL_HF_CONTENT_LENGTH);
    assert_int_equal(sl_http1_request_body(&g_req), SL_BODY_LENGTH);
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 ,\t5\r\n\r\n") > 0);
    assert_int_equal(g_req.content_length, 5);
    assert_true(
        req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 005\r\n\r\n") > 0);
    assert_int_equal(g_req.content_length, 5);
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n") > 0);
    assert_true(g_req.flags & SL_HF_CONTENT_LENGTH);
    assert_int_equal(sl_http1_request_body(&g_req), SL_BODY_NONE);
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n") >
                0);
    assert_int_equal(g_req.content_length, INT64_C(4611686018427387904));

    static const char *const bad[] = {
        "5, 6",
        "-1",
        "+1",
        "0x10",
        "",
        " ",
        "5 5",
        "5,",
        ",5",
        "5,,5",
        "1a",
        "1.0",
        "\"5\"",
        "4611686018427387905",
        "18446744073709551616",
        "99999999999999999999999999",
    };
    char buf[256];
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %s\r\n\r\n",
                 bad[i]);
        assert_int_equal(req(buf), SL_EBADMSG);
    }
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
                         "\r\n"),
                     SL_EBADMSG);
}

static void test_transfer_encoding_request(void **state)
{
    (void)state;
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") > 0);
    assert_true(g_req.flags & SL_HF_CHUNKED);
    assert_int_equal(g_req.content_length, -1);
    assert_int_equal(sl_http1_request_body(&g_req), SL_BODY_CHUNKED);
    assert_int_equal(g_req.headers[1].hop, 1);
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , CHUNKED \r\n\r\n") > 0);
    assert_true(g_req.flags & SL_HF_CHUNKED);

    static const struct {
        const char *te;
        int rc;
    } cases[] = {
        {"gzip, chunked", SL_ENOTSUP},
        {"gzip;q=\"a,b\" , chunked", SL_ENOTSUP},
        {"chunked, gzip", SL_EBADMSG},
        {"gzip", SL_EBADMSG},
        {"identity", SL_EBADMSG},
        {"chunked, chunked", SL_EBADMSG},
        {"chunked;a=b", SL_EBADMSG},
        {"", SL_EBADMSG},
        {"chun ked", SL_EBADMSG},
        {"chunked\"", SL_EBADMSG},
        {"gzip;q=\"a, chunked", SL_EBADMSG},
        {"gzip;q, chunked", SL_EBADMSG},
    };
    char buf[256];
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: %s\r\n\r\n",
                 cases[i].te);
        assert_int_equal(req(buf), cases[i].rc);
    }
    /* split over several fields */
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
                     SL_ENOTSUP);
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
                     SL_EBADMSG);
    /* with Content-Length, either order */
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
                     SL_EBADMSG);
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                         "Content-Length: 5\r\n\r\n"),
                     SL_EBADMSG);
    /* in HTTP/1.0 */
    assert_int_equal(req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), SL_EBADMSG);
}

static void test_connection(void **state)
{
    (void)state;
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n") > 0);
    assert_int_equal(g_req.flags, SL_HF_CONN_CLOSE);
    assert_int_equal(g_req.headers[1].hop, 1);
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n") > 0);
    assert_int_equal(g_req.flags, SL_HF_CONN_KEEPALIVE);
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: , CLOSE ,keep-alive\r\n\r\n") > 0);
    assert_int_equal(g_req.flags, SL_HF_CONN_CLOSE | SL_HF_CONN_KEEPALIVE);
    assert_true(
        req("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n") >
        0);
    assert_int_equal(g_req.flags, SL_HF_CONN_UPGRADE | SL_HF_UPGRADE);
    assert_int_equal(g_req.headers[2].hop, 1);
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n") > 0);
    assert_int_equal(g_req.flags, SL_HF_UPGRADE);

    /* fields named in Connection become hop-by-hop, before or after it, any case */
    assert_true(req("GET / HTTP/1.1\r\nX-Before: 1\r\nHost: h\r\nConnection: close, x-before,"
                    " X-AFTER\r\nX-Other: 2\r\nx-after: 3\r\nX-After-Not: 4\r\n\r\n") > 0);
    assert_int_equal(g_req.nheaders, 6);
    assert_int_equal(g_req.headers[0].hop, 1); /* X-Before */
    assert_int_equal(g_req.headers[1].hop, 0); /* Host */
    assert_int_equal(g_req.headers[2].hop, 1); /* Connection */
    assert_int_equal(g_req.headers[3].hop, 0); /* X-Other */
    assert_int_equal(g_req.headers[4].hop, 1); /* x-after */
    assert_int_equal(g_req.headers[5].hop, 0); /* X-After-Not */
    assert_int_equal(g_req.flags, SL_HF_CONN_CLOSE);
    /* two Connection fields both count */
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: x-a\r\nConnection: x-b\r\n"
                    "X-A: 1\r\nX-B: 2\r\n\r\n") > 0);
    assert_int_equal(g_req.headers[3].hop, 1);
    assert_int_equal(g_req.headers[4].hop, 1);

    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: close x\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: a/b\r\n\r\n"), SL_EBADMSG);
    /* dropping these would change how the next hop routes or frames the message */
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: h\r\nConnection: Content-Length\r\n"
                         "Content-Length: 3\r\n\r\n"),
                     SL_EBADMSG);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: host\r\n\r\n"), SL_EBADMSG);
}

static void test_hop_fixed_set(void **state)
{
    (void)state;
    assert_true(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n"
                    "Proxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: y\r\n"
                    "Accept: */*\r\nVia: 1.1 a\r\n\r\n") > 0);
    static const uint8_t want[] = {0, 1, 1, 1, 1, 1, 1, 0, 0};
    assert_int_equal(g_req.nheaders, SL_ARRAY_LEN(want));
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++)
        assert_int_equal(g_req.headers[i].hop, want[i]);
}

static void test_expect(void **state)
{
    (void)state;
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n") > 0);
    assert_true(g_req.flags & SL_HF_EXPECT_CONTINUE);
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue \r\n\r\n") > 0);
    assert_true(g_req.flags & SL_HF_EXPECT_CONTINUE);
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n") > 0);
    assert_false(g_req.flags & SL_HF_EXPECT_CONTINUE);
    assert_true(req("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n") > 0);
    assert_false(g_req.flags & SL_HF_EXPECT_CONTINUE); /* a 1.0 client cannot mean it */
}

static void test_limits(void **state)
{
    (void)state;
    size_t scan = 0, n = strlen(TYPICAL);
    assert_int_equal(sl_http1_parse_request(TYPICAL, n, n, &scan, &g_req), (int)n); /* exactly */
    scan = 0;
    assert_int_equal(sl_http1_parse_request(TYPICAL, n, n - 1, &scan, &g_req), SL_ETOOBIG);
    scan = 0; /* incomplete, but already max_head bytes */
    assert_int_equal(sl_http1_parse_request(TYPICAL, 40, 40, &scan, &g_req), SL_ETOOBIG);
    scan = 0;
    assert_int_equal(sl_http1_parse_request(TYPICAL, 40, 41, &scan, &g_req), SL_AGAIN);
    /* the terminator beyond max_head when there is more data */
    static const char pipelined[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /";
    scan = 0;
    assert_int_equal(sl_http1_parse_request(S(pipelined), 20, &scan, &g_req), SL_ETOOBIG);
    scan = 0;
    assert_int_equal(sl_http1_parse_request(S(pipelined), 27, &scan, &g_req), 27);

    /* SL_HTTP_MAX_HEADERS fields pass, one more fails */
    char buf[4096];
    size_t o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < SL_HTTP_MAX_HEADERS; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "X-%d: %d\r\n", i, i);
    memcpy(buf + o, "\r\n", 3);
    assert_true(req(buf) > 0);
    assert_int_equal(g_req.nheaders, SL_HTTP_MAX_HEADERS);
    o += (size_t)snprintf(buf + o, sizeof(buf) - o, "X-Last: 1\r\n\r\n");
    assert_int_equal(req(buf), SL_ETOOBIG);
}

/* ---- responses ------------------------------------------------------------------------- */

static const char NGINX[] = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
                            "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/html\r\n"
                            "Content-Length: 612\r\nConnection: keep-alive\r\n\r\n";

static void test_response_typical(void **state)
{
    (void)state;
    assert_int_equal(resp(NGINX), (int)strlen(NGINX));
    assert_int_equal(g_resp.status, 200);
    assert_true(slice_is(g_resp.reason, "OK"));
    assert_int_equal(g_resp.version, 11);
    assert_int_equal(g_resp.nheaders, 5);
    assert_int_equal(g_resp.content_length, 612);
    assert_int_equal(g_resp.flags, SL_HF_CONTENT_LENGTH | SL_HF_CONN_KEEPALIVE);
    assert_int_equal(g_resp.headers[0].id, SL_H_SERVER);
    assert_int_equal(g_resp.headers[1].id, SL_H_DATE);
    assert_true(hdr_value_is(&g_resp.headers[1], "Mon, 01 Jan 2024 00:00:00 GMT"));
    assert_int_equal(g_resp.headers[4].hop, 1);
    assert_int_equal(sl_http1_response_body(&g_resp, SL_M_GET), SL_BODY_LENGTH);
    check_response_trickle(NGINX, strlen(NGINX));
    /* body bytes after the head are not part of it */
    static const char withbody[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    assert_int_equal(resp(withbody), (int)strlen(withbody) - 2);
}

static void test_response_status_line(void **state)
{
    (void)state;
    assert_true(resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n") > 0);
    assert_int_equal(g_resp.status, 200);
    assert_int_equal(g_resp.reason.len, 0);
    assert_true(resp("HTTP/1.1 200 \r\n\r\n") > 0);
    assert_int_equal(g_resp.reason.len, 0);
    assert_true(resp("HTTP/1.0 404 Not Found\r\n\r\n") > 0);
    assert_int_equal(g_resp.version, 10);
    assert_int_equal(g_resp.status, 404);
    assert_true(slice_is(g_resp.reason, "Not Found"));
    assert_true(resp("HTTP/1.1 599 odd\treason \xe9\xff!\r\n\r\n") > 0);
    assert_true(slice_is(g_resp.reason, "odd\treason \xe9\xff!"));
    assert_true(resp("HTTP/1.1 100 Continue\r\n\r\n") > 0);
    assert_int_equal(g_resp.status, 100);

    assert_int_equal(resp("HTTP/1.1 099 Low\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 600 High\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 20 OK\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 2000 OK\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 2x0 OK\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1  200 OK\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 O\x01K\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 O\x7fK\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\rX: y\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/2.0 200 OK\r\n\r\n"), SL_EVERSION);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nX y\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("\r\nHTTP/1.1 200 OK\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\n\n"), SL_EBADMSG);
    assert_int_equal(resp("\n\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\n"), SL_AGAIN);
    /* no Host needed, and repeated ones are not the parser's business in a response */
    assert_true(resp("HTTP/1.1 200 OK\r\nHost: a\r\nHost: b c\r\n\r\n") > 0);
}

static void test_response_framing(void **state)
{
    (void)state;
    assert_true(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") > 0);
    assert_int_equal(g_resp.flags, SL_HF_CHUNKED);
    assert_true(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") > 0);
    assert_int_equal(g_resp.flags, SL_HF_CHUNKED);
    assert_true(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n") > 0);
    assert_int_equal(g_resp.flags, SL_HF_TE_OTHER);
    assert_true(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") > 0);
    assert_int_equal(g_resp.flags, SL_HF_TE_OTHER);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
                     SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n"),
                     SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n"
                          "\r\n"),
                     SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
                     SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), SL_EBADMSG);
    assert_true(resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n") > 0);
    assert_int_equal(g_resp.content_length, 3);
}

static int body_of(const char *head, int method)
{
    assert_true(resp(head) > 0);
    return sl_http1_response_body(&g_resp, method);
}

static void test_response_body_kinds(void **state)
{
    (void)state;
    const char *cl = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(body_of(cl, SL_M_GET), SL_BODY_LENGTH);
    assert_int_equal(body_of(cl, SL_M_HEAD), SL_BODY_NONE);
    assert_int_equal(body_of(ch, SL_M_GET), SL_BODY_CHUNKED);
    assert_int_equal(body_of(ch, SL_M_HEAD), SL_BODY_NONE);
    assert_int_equal(body_of("HTTP/1.1 100 Continue\r\n\r\n", SL_M_POST), SL_BODY_NONE);
    assert_int_equal(body_of("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: upgrade\r\n\r\n",
                             SL_M_GET),
                     SL_BODY_NONE);
    assert_int_equal(g_resp.flags, SL_HF_UPGRADE | SL_HF_CONN_UPGRADE);
    assert_int_equal(body_of("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", SL_M_GET),
                     SL_BODY_NONE);
    assert_int_equal(
        body_of("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", SL_M_GET),
        SL_BODY_NONE);
    assert_int_equal(body_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", SL_M_GET),
                     SL_BODY_EOF);
    assert_int_equal(body_of("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", SL_M_GET), SL_BODY_EOF);
    assert_int_equal(body_of("HTTP/1.0 200 OK\r\n\r\n", SL_M_GET), SL_BODY_EOF);
    assert_int_equal(body_of("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", SL_M_GET),
                     SL_BODY_NONE);
    assert_int_equal(body_of("HTTP/1.1 200 Connection established\r\n\r\n", SL_M_CONNECT),
                     SL_BODY_NONE);
    assert_int_equal(body_of("HTTP/1.1 407 Auth\r\nContent-Length: 4\r\n\r\n", SL_M_CONNECT),
                     SL_BODY_LENGTH);
}

static void test_response_trickle(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 204\r\n\r\n",
        "HTTP/1.1 200 OK\n\n",
        "HTTP/1.1 200 OK\r\nX: 1\r\nContent-Length: 1, 2\r\n\r\n",
        "HTTP/3.0 200 OK\r\n\r\n",
        /* found by fuzz_http1: a head shorter than a status-line, followed by more bytes
         * ending in an empty line, gave EVERSION whole but EBADMSG trickled */
        "HTTP/0.1\r\n\r\nOP\x18TABkAAQAAP__\r\n\r\n",
        "GET / HTTP/2.0\n\nGET / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++)
        check_response_trickle(cases[i], strlen(cases[i]));
    assert_int_equal(resp("HTTP/0.1\r\n\r\nOP\x18TABkAAQAAP__\r\n\r\n"), SL_EBADMSG);
    assert_int_equal(resp("HTTP/2.0 200 OK\r\n\r\n"), SL_EVERSION);
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++)
        check_request_trickle(cases[i], strlen(cases[i]), MAXH);
}

/* ---- chunked --------------------------------------------------------------------------- */

struct dechunk {
    int64_t rc; /* last negative code, or total consumed */
    int done;
    size_t out_len;
    char out[4096];
};

/* Decodes in[0..n) feeding at most step bytes per call (0: everything at once). */
static void dechunk(const char *in, size_t n, size_t step, struct dechunk *d)
{
    sl_chunked_t st;
    size_t pos = 0;
    memset(&st, 0, sizeof(st));
    memset(d, 0, sizeof(*d));
    for (;;) {
        size_t avail = n - pos, off = 99, dl = 99;
        if (step && avail > step)
            avail = step;
        int64_t r = sl_http1_chunked_decode(&st, in + pos, avail, &off, &dl);
        if (r < 0) {
            d->rc = r;
            d->done = st.done;
            return;
        }
        assert_true((size_t)r <= avail);
        if (dl > 0) {
            assert_int_equal(off + dl, (size_t)r);
            assert_true(d->out_len + dl <= sizeof(d->out));
            memcpy(d->out + d->out_len, in + pos + off, dl);
            d->out_len += dl;
        }
        pos += (size_t)r;
        if (r == 0 && (st.done || pos == n))
            break;
    }
    d->rc = (int64_t)pos;
    d->done = st.done;
}

static void check_dechunk(const char *in, size_t n, int64_t want_rc, const char *want_data)
{
    static struct dechunk whole, part;
    dechunk(in, n, 0, &whole);
    assert_int_equal(whole.rc, want_rc);
    if (want_data != NULL) {
        assert_int_equal(whole.out_len, strlen(want_data));
        assert_memory_equal(whole.out, want_data, whole.out_len);
    }
    /* one byte at a time and in a few other slices: identical outcome and data */
    static const size_t steps[] = {1, 2, 3, 7};
    for (size_t i = 0; i < SL_ARRAY_LEN(steps); i++) {
        dechunk(in, n, steps[i], &part);
        assert_int_equal(part.rc, whole.rc);
        assert_int_equal(part.done, whole.done);
        assert_int_equal(part.out_len, whole.out_len);
        assert_memory_equal(part.out, whole.out, whole.out_len);
    }
}

#define ALL INT64_MIN /* want_rc: the whole input consumed */
#define CHECK_CHUNKED(lit, rc, data)                                                               \
    check_dechunk(S(lit), (rc) == ALL ? (int64_t)sizeof(lit) - 1 : (rc), (data))

static void test_chunked_basic(void **state)
{
    (void)state;
    static const char body[] = "5\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n";
    CHECK_CHUNKED(body, ALL, "hello world0123456789");
    CHECK_CHUNKED("000005\r\nhello\r\n00\r\n\r\n", ALL, "hello"); /* leading zeros */
    CHECK_CHUNKED("1f\r\n0123456789012345678901234567890\r\n0\r\n\r\n", ALL,
                  "0123456789012345678901234567890");
    CHECK_CHUNKED("0\r\n\r\n", ALL, "");

    /* returns the data span of one chunk per call, and stops after the final CRLF */
    static const char two[] = "3\r\nabc\r\n0\r\n\r\nNEXT";
    sl_chunked_t st = {0};
    size_t off, dl;
    assert_int_equal(sl_http1_chunked_decode(&st, S(two), &off, &dl), 6);
    assert_int_equal(off, 3);
    assert_int_equal(dl, 3);
    assert_int_equal(sl_http1_chunked_decode(&st, two + 6, sizeof(two) - 7, &off, &dl), 7);
    assert_int_equal(dl, 0);
    assert_int_equal(st.done, 1);
    assert_int_equal(sl_http1_chunked_decode(&st, "NEXT", 4, &off, &dl), 0);
    sl_chunked_t st2 = {0};
    assert_int_equal(sl_http1_chunked_decode(&st2, "", 0, &off, &dl), 0);
    /* data split across calls */
    sl_chunked_t st3 = {0};
    assert_int_equal(sl_http1_chunked_decode(&st3, "5\r\nhe", 5, &off, &dl), 5);
    assert_int_equal(off, 3);
    assert_int_equal(dl, 2);
    assert_int_equal(st3.remaining, 3);
    assert_int_equal(sl_http1_chunked_decode(&st3, "llo\r\n", 5, &off, &dl), 3);
    assert_int_equal(off, 0);
    assert_int_equal(dl, 3);
}

static void test_chunked_sizes(void **state)
{
    (void)state;
    /* 16 hex digits is the most that fits in 64 bits */
    sl_chunked_t st = {0};
    size_t off, dl;
    assert_int_equal(sl_http1_chunked_decode(&st, S("FFFFFFFFFFFFFFFF\r\nab"), &off, &dl), 20);
    assert_int_equal(st.remaining, UINT64_MAX - 2);
    assert_int_equal(dl, 2);
    CHECK_CHUNKED("00000000000000005\r\nhello\r\n0\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("10000000000000000\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("g\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("-5\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("+5\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0x5\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED(" 5\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5\nhello\r\n0\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5\r\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5 \r\nhello\r\n0\r\n\r\n", SL_EBADMSG, NULL);
    /* CRLF after the data, strictly */
    CHECK_CHUNKED("5\r\nhelloX\r\n0\r\n\r\n", SL_EBADMSG, "hello");
    CHECK_CHUNKED("5\r\nhello\n0\r\n\r\n", SL_EBADMSG, "hello");
    CHECK_CHUNKED("5\r\nhello\r0\r\n\r\n", SL_EBADMSG, "hello");
    CHECK_CHUNKED("5\r\nhello world\r\n0\r\n\r\n", SL_EBADMSG, "hello");
    /* errors are sticky */
    sl_chunked_t bad = {0};
    assert_int_equal(sl_http1_chunked_decode(&bad, S("z"), &off, &dl), SL_EBADMSG);
    assert_int_equal(sl_http1_chunked_decode(&bad, S("5\r\n"), &off, &dl), SL_EBADMSG);
}

static void test_chunked_extensions(void **state)
{
    (void)state;
    CHECK_CHUNKED("5;a=b;c=\"q\\\"x; y\";d\r\nhello\r\n0;last\r\n\r\n", ALL, "hello");
    CHECK_CHUNKED("5 ; a = b ;\tc\r\nhello\r\n0\r\n\r\n", ALL, "hello");
    CHECK_CHUNKED("5;a=\"\"\r\nhello\r\n0\r\n\r\n", ALL, "hello");
    CHECK_CHUNKED("5;a=\"\xe9\t\"\r\nhello\r\n0\r\n\r\n", ALL, "hello");
    CHECK_CHUNKED("5;\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a=\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a=\"x\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a=b c\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a b\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a=b \r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a\x01\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a=\"\x01\"\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a=\"x\ny\"\r\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;a\nhello\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("5;(a)\r\nhello\r\n", SL_EBADMSG, NULL);
    /* the size line bound is 4096 bytes, CRLF included */
    static char line[4200];
    memcpy(line, "5;a=", 4);
    memset(line + 4, 'x', 4090);
    memcpy(line + 4094, "\r\nhello\r\n0\r\n\r\n", 14);
    check_dechunk(line, 4108, 4108, "hello");
    memset(line + 4, 'x', 4091);
    memcpy(line + 4095, "\r\nhello\r\n0\r\n\r\n", 14);
    check_dechunk(line, 4109, SL_ETOOBIG, NULL);
    /* a size line over 4 KiB */
    static char big[5000];
    memcpy(big, "5;a=\"", 5);
    memset(big + 5, 'x', sizeof(big) - 5);
    CHECK_CHUNKED(big, SL_ETOOBIG, NULL);
    memcpy(big + 4000, "\"\r\nhello\r\n0\r\n\r\n", 15);
    check_dechunk(big, 4015, 4015, "hello"); /* just under the bound */
}

static void test_chunked_trailers(void **state)
{
    (void)state;
    CHECK_CHUNKED("5\r\nhello\r\n0\r\nX-T: 1\r\nY:\t2 \xff\r\nZ:\r\n\r\n", ALL, "hello");
    CHECK_CHUNKED("0\r\nX-T: 1\r\n", ALL, "");
    /* incomplete: all consumed, not done */ /* incomplete: all consumed, not done */
    CHECK_CHUNKED("0\r\n X-T: 1\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\nX-T: 1\r\n\tmore\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\nNoColon\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\nX-T : 1\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\n: 1\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\nX-T: 1\x01\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\nX-T: a\x7f\r\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\nX-T: 1\n\r\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\nX-T: 1\r\n\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\n\n", SL_EBADMSG, NULL);
    CHECK_CHUNKED("0\r\n\rX", SL_EBADMSG, NULL);
    check_dechunk("0\r\nX: \0\r\n\r\n", 11, SL_EBADMSG, NULL);

    /* trailer section bounded to 8 KiB */
    static char big[9000];
    size_t o = 3;
    memcpy(big, "0\r\n", 3);
    while (o + 100 < sizeof(big)) {
        memcpy(big + o, "X-Pad: ", 7);
        memset(big + o + 7, 'p', 91);
        memcpy(big + o + 98, "\r\n", 2);
        o += 100;
    }
    memcpy(big + o, "\r\n", 2);
    check_dechunk(big, o + 2, SL_ETOOBIG, NULL);
    memcpy(big + 3 + 8100, "\r\n", 2); /* 81 lines + CRLF: under 8 KiB */
    check_dechunk(big, 3 + 8100 + 2, 3 + 8100 + 2, "");
    /* exactly 8192 trailer bytes, final CRLF included, pass; one more fails */
    memcpy(big, "0\r\nX: ", 6);
    memset(big + 6, 'v', 8185);
    memcpy(big + 6 + 8185, "\r\n\r\n", 4);
    check_dechunk(big, 3 + 8192, 3 + 8192, "");
    memset(big + 6, 'v', 8186);
    memcpy(big + 6 + 8186, "\r\n\r\n", 4);
    check_dechunk(big, 3 + 8193, SL_ETOOBIG, NULL);
}

/* ---- helpers --------------------------------------------------------------------------- */

static void test_list_has(void **state)
{
    (void)state;
    assert_true(sl_http1_list_has(S("close, Upgrade"), S("upgrade")));
    assert_true(sl_http1_list_has(S("close, Upgrade"), S("CLOSE")));
    assert_true(sl_http1_list_has(S(" a ,, b\t"), S("b")));
    assert_true(sl_http1_list_has(S("x"), S("x")));
    assert_false(sl_http1_list_has(S("keep-alive"), S("alive")));
    assert_false(sl_http1_list_has(S("closed"), S("close")));
    assert_false(sl_http1_list_has(S("clos"), S("close")));
    assert_false(sl_http1_list_has(S(""), S("close")));
    assert_false(sl_http1_list_has(S(", ,"), S("")));
    assert_false(sl_http1_list_has(S("a b"), S("a")));
}

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(sl_http1_reason(200), "OK");
    assert_string_equal(sl_http1_reason(404), "Not Found");
    assert_string_equal(sl_http1_reason(431), "Request Header Fields Too Large");
    assert_string_equal(sl_http1_reason(505), "HTTP Version Not Supported");
    assert_string_equal(sl_http1_reason(299), "Unknown");
    assert_string_equal(sl_http1_reason(-1), "Unknown");
}

static void test_request_body_kinds(void **state)
{
    (void)state;
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") > 0);
    assert_int_equal(sl_http1_request_body(&g_req), SL_BODY_CHUNKED);
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n") > 0);
    assert_int_equal(sl_http1_request_body(&g_req), SL_BODY_LENGTH);
    assert_true(req("POST / HTTP/1.1\r\nHost: h\r\n\r\n") > 0);
    assert_int_equal(sl_http1_request_body(&g_req), SL_BODY_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_typical),
        cmocka_unit_test(test_request_path_query),
        cmocka_unit_test(test_request_pipelined),
        cmocka_unit_test(test_request_trickle),
        cmocka_unit_test(test_request_bare_lf_fails_fast),
        cmocka_unit_test(test_request_leading_crlf),
        cmocka_unit_test(test_request_version),
        cmocka_unit_test(test_request_method),
        cmocka_unit_test(test_request_target_chars),
        cmocka_unit_test(test_request_target_forms),
        cmocka_unit_test(test_header_syntax),
        cmocka_unit_test(test_header_ids),
        cmocka_unit_test(test_header_host),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_transfer_encoding_request),
        cmocka_unit_test(test_connection),
        cmocka_unit_test(test_hop_fixed_set),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_request_body_kinds),
        cmocka_unit_test(test_response_typical),
        cmocka_unit_test(test_response_status_line),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_response_body_kinds),
        cmocka_unit_test(test_response_trickle),
        cmocka_unit_test(test_chunked_basic),
        cmocka_unit_test(test_chunked_sizes),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_list_has),
        cmocka_unit_test(test_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
