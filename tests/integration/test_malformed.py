"""Malformed and ambiguous requests: each is sent raw on a fresh connection and must get
the exact status, a JSON error body, and a closed connection. Behind sluice sits a Python
origin that records every byte it receives, so the smuggling tests can assert that no
smuggled request ever reached it."""

import time

import pytest

from conftest import (SLOW, HttpConn, build_request, header_of, one_service_config,
                      send_raw)

MAX_HEADER = 4096
MAX_BODY = 1024


class M:
    pass


@pytest.fixture(scope="module")
def _shared_gw(module_raw_origin, module_start_sluice):
    """One recording origin and one sluice for the module (each test starts from an
    empty record, see mgw): about 80 cases would otherwise spend most of their time
    starting and draining processes."""
    o = module_raw_origin()
    sl = module_start_sluice(one_service_config(
        o.address, limits={"max_header_bytes": "4k", "max_body_bytes": "1k"}))
    m = M()
    m.origin, m.sluice, m.port = o, sl, sl.port
    return m


@pytest.fixture
def mgw(_shared_gw):
    assert _shared_gw.sluice.proc.alive(), "sluice died:\n" + _shared_gw.sluice.log()
    settle()  # let bytes of the previous test land before forgetting them
    _shared_gw.origin.reset()
    yield _shared_gw
    assert _shared_gw.sluice.proc.alive(), "sluice died:\n" + _shared_gw.sluice.log()


def assert_error(resp, closed, status):
    assert resp is not None, "connection closed without a response (expected %d)" % status
    assert resp.status == status, resp
    assert resp.header("Content-Type", "").startswith("application/json"), resp
    j = resp.json()
    assert j["status"] == status, j
    assert isinstance(j["error"], str) and j["error"], j
    assert closed, "connection left open after a %d" % status


def settle():
    time.sleep(0.1 * SLOW)


H = "Host: example.test\r\n"

# (id, raw request, status). All are refused before anything is forwarded.
HEAD_CASES = [
    ("cl_and_te", "POST / HTTP/1.1\r\n" + H +
     "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_and_cl", "POST / HTTP/1.1\r\n" + H +
     "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("two_differing_cl", "POST / HTTP/1.1\r\n" + H +
     "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("differing_cl_list", "POST / HTTP/1.1\r\n" + H + "Content-Length: 5, 6\r\n\r\nhello!",
     400),
    ("cl_not_a_number", "POST / HTTP/1.1\r\n" + H + "Content-Length: 5x\r\n\r\nhello", 400),
    ("cl_signed", "POST / HTTP/1.1\r\n" + H + "Content-Length: +5\r\n\r\nhello", 400),
    ("cl_negative", "POST / HTTP/1.1\r\n" + H + "Content-Length: -1\r\n\r\n", 400),
    ("cl_empty", "POST / HTTP/1.1\r\n" + H + "Content-Length: \r\n\r\n", 400),
    ("obs_fold", "GET / HTTP/1.1\r\n" + H + "X-A: a\r\n  folded\r\n\r\n", 400),
    ("obs_fold_tab", "GET / HTTP/1.1\r\n" + H + "X-A: a\r\n\tfolded\r\n\r\n", 400),
    ("bare_cr_in_value", "GET / HTTP/1.1\r\n" + H + "X-A: a\rb\r\n\r\n", 400),
    ("bare_cr_line_end", "GET / HTTP/1.1\r\n" + H + "X-A: a\rX-B: b\r\n\r\n", 400),
    ("bare_lf_line_end", "GET / HTTP/1.1\r\n" + H + "X-A: a\nX-B: b\r\n\r\n", 400),
    ("bare_lf_everywhere", "GET / HTTP/1.1\nHost: example.test\n\n", 400),
    ("bare_lf_request_line", "GET / HTTP/1.1\n" + H + "\r\n", 400),
    ("nul_in_value", "GET / HTTP/1.1\r\n" + H + "X-A: a\x00b\r\n\r\n", 400),
    ("ctl_in_value", "GET / HTTP/1.1\r\n" + H + "X-A: a\x01b\r\n\r\n", 400),
    ("del_in_value", "GET / HTTP/1.1\r\n" + H + "X-A: a\x7fb\r\n\r\n", 400),
    ("no_colon", "GET / HTTP/1.1\r\n" + H + "X-A b\r\n\r\n", 400),
    ("space_before_colon", "GET / HTTP/1.1\r\n" + H + "X-A : b\r\n\r\n", 400),
    ("tab_before_colon", "GET / HTTP/1.1\r\n" + H + "X-A\t: b\r\n\r\n", 400),
    ("host_space_before_colon", "GET / HTTP/1.1\r\nHost : example.test\r\n\r\n", 400),
    ("empty_header_name", "GET / HTTP/1.1\r\n" + H + ": b\r\n\r\n", 400),
    ("bad_header_name_char", "GET / HTTP/1.1\r\n" + H + "X(A): b\r\n\r\n", 400),
    ("bad_method_char", "GE(T / HTTP/1.1\r\n" + H + "\r\n", 400),
    ("method_with_slash", "GE/T / HTTP/1.1\r\n" + H + "\r\n", 400),
    ("empty_method", " / HTTP/1.1\r\n" + H + "\r\n", 400),
    ("target_with_space", "GET /a b HTTP/1.1\r\n" + H + "\r\n", 400),
    ("target_with_ctl", "GET /a\x01b HTTP/1.1\r\n" + H + "\r\n", 400),
    ("target_with_del", "GET /a\x7fb HTTP/1.1\r\n" + H + "\r\n", 400),
    ("target_with_hash", "GET /a#frag HTTP/1.1\r\n" + H + "\r\n", 400),
    ("target_with_nul", "GET /a\x00b HTTP/1.1\r\n" + H + "\r\n", 400),
    ("double_space_request_line", "GET  / HTTP/1.1\r\n" + H + "\r\n", 400),
    ("lowercase_version", "GET / http/1.1\r\n" + H + "\r\n", 400),
    ("garbage_version", "GET / HTTP/x.y\r\n" + H + "\r\n", 400),
    ("http11_without_host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("two_hosts", "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400),
    ("two_identical_hosts", "GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n", 400),
    ("http2_version", "GET / HTTP/2.0\r\n" + H + "\r\n", 505),
    ("http3_version", "GET / HTTP/3.0\r\n" + H + "\r\n", 505),
    ("header_block_too_large", "GET / HTTP/1.1\r\n" + H + "X-Big: " + "a" * 5000 +
     "\r\n\r\n", 431),
    ("too_many_headers", "GET / HTTP/1.1\r\n" + H +
     "".join("X-H%d: v\r\n" % i for i in range(65)) + "\r\n", 431),
    ("content_length_over_limit", "POST / HTTP/1.1\r\n" + H + "Content-Length: 2048\r\n\r\n" +
     "b" * 2048, 413),
    ("content_length_huge", "POST / HTTP/1.1\r\n" + H +
     "Content-Length: 99999999999999\r\n\r\n" + "b" * 100, 413),
    ("te_gzip_chunked", "POST / HTTP/1.1\r\n" + H +
     "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te_chunked_not_last", "POST / HTTP/1.1\r\n" + H +
     "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("te_chunked_twice", "POST / HTTP/1.1\r\n" + H +
     "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_unknown_only", "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: xchunked\r\n\r\n"
     "0\r\n\r\n", 400),
    ("te_chunked_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
     "0\r\n\r\n", 400),
]


@pytest.mark.parametrize("raw,status", [c[1:] for c in HEAD_CASES],
                         ids=[c[0] for c in HEAD_CASES])
def test_malformed_head_refused(mgw, raw, status):
    resp, closed = send_raw(mgw.port, raw.encode("latin-1"))
    assert_error(resp, closed, status)
    settle()
    assert mgw.origin.accepted == 0 and mgw.origin.raw == b"", \
        "the origin received bytes of a refused request: %r" % mgw.origin.raw[:500]


def test_limits_boundaries_accepted(mgw):
    """Just inside the limits is fine: 64 header fields, a head just under
    max_header_bytes, a body of exactly max_body_bytes."""
    hdrs = [("X-H%d" % i, "v") for i in range(62)] + [("Connection", "close")]  # + Host
    r, closed = send_raw(mgw.port, build_request("GET", "/many", hdrs))
    assert r.status == 200, r
    assert r.json()["target"] == "/many"
    base = build_request("GET", "/big", [("X-Big", ""), ("Connection", "close")])
    pad = MAX_HEADER - len(base) - 10
    r, _ = send_raw(mgw.port, build_request("GET", "/big", [("X-Big", "a" * pad),
                                                            ("Connection", "close")]))
    assert r.status == 200, r
    r, _ = send_raw(mgw.port, build_request("POST", "/exact", [("Connection", "close")],
                                            b"z" * MAX_BODY))
    assert r.status == 200, r
    assert r.json()["body_length"] == MAX_BODY


# Bad chunked bodies: the head may already be on its way upstream; the answer is still
# the status, the client connection is closed, and the origin never sees a complete
# request.
BODY_CASES = [
    ("chunk_size_zz", "zz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_negative", "-1\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_17_hex_digits", "10000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_empty", "\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_size_0x_prefix", "0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk_data_without_crlf", "5\r\nhelloXX0\r\n\r\n", 400),
    ("chunk_size_bare_lf", "5\nhello\r\n0\r\n\r\n", 400),
    ("chunked_body_over_limit", "400\r\n" + "a" * 1024 + "\r\n1\r\nb\r\n0\r\n\r\n", 413),
]


@pytest.mark.parametrize("body,status", [c[1:] for c in BODY_CASES],
                         ids=[c[0] for c in BODY_CASES])
def test_malformed_chunked_body(mgw, body, status):
    raw = ("POST /chunky HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n" + body)
    resp, closed = send_raw(mgw.port, raw.encode("latin-1"))
    assert_error(resp, closed, status)
    settle()
    assert mgw.origin.requests == [], \
        "the origin got a complete request from a bad body: %r" % mgw.origin.requests


# ---- request smuggling ---------------------------------------------------------------

SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n"


def assert_nothing_smuggled(origin, allowed_heads=0):
    settle()
    assert b"smuggled" not in origin.raw, \
        "a smuggled request reached the origin:\n%r" % origin.raw
    assert len(origin.heads) <= allowed_heads, origin.heads
    assert not origin.errors, origin.errors


def test_smuggle_cl_te(mgw):
    body = "0\r\n\r\n" + SMUGGLED
    raw = ("POST /a HTTP/1.1\r\n" + H + "Content-Length: %d\r\n" % len(body) +
           "Transfer-Encoding: chunked\r\n\r\n" + body)
    resp, closed = send_raw(mgw.port, raw.encode())
    assert_error(resp, closed, 400)
    assert_nothing_smuggled(mgw.origin)


def test_smuggle_te_cl(mgw):
    inner = "GET /smuggled HTTP/1.1\r\nHost: example.test\r\nContent-Length: 15\r\n\r\nx=1"
    body = "%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    raw = ("POST /a HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n" +
           "Content-Length: 4\r\n\r\n" + body)
    resp, closed = send_raw(mgw.port, raw.encode())
    assert_error(resp, closed, 400)
    assert_nothing_smuggled(mgw.origin)


TE_OBFUSCATIONS = [
    ("xchunked", "Transfer-Encoding: xchunked\r\n"),
    ("space_before_colon", "Transfer-Encoding : chunked\r\n"),
    ("vertical_tab", "Transfer-Encoding:\x0bchunked\r\n"),
    ("second_te_identity", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
    ("quoted", 'Transfer-Encoding: "chunked"\r\n'),
    ("leading_space_line", " Transfer-Encoding: chunked\r\n"),
    ("bare_lf_before", "X-A: b\nTransfer-Encoding: chunked\r\n"),
    ("bare_cr_before", "X-A: b\rTransfer-Encoding: chunked\r\n"),
    ("nul_in_name", "Transfer-Encoding\x00: chunked\r\n"),
    ("upper_case_with_cl", "TRANSFER-ENCODING: CHUNKED\r\n"),
]


@pytest.mark.parametrize("te", [t[1] for t in TE_OBFUSCATIONS],
                         ids=[t[0] for t in TE_OBFUSCATIONS])
def test_smuggle_te_variants_with_content_length(mgw, te):
    """TE variants beside a Content-Length that would swallow a second request."""
    body = "0\r\n\r\n" + SMUGGLED
    raw = ("POST /a HTTP/1.1\r\n" + H + te + "Content-Length: %d\r\n\r\n" % len(body) + body)
    resp, closed = send_raw(mgw.port, raw.encode("latin-1"))
    assert_error(resp, closed, 400)
    assert_nothing_smuggled(mgw.origin)


def test_smuggle_differing_content_length(mgw):
    raw = ("POST /a HTTP/1.1\r\n" + H + "Content-Length: 0\r\n" +
           "Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED)
    resp, closed = send_raw(mgw.port, raw.encode())
    assert_error(resp, closed, 400)
    assert_nothing_smuggled(mgw.origin)


def test_smuggle_te_in_http10(mgw):
    body = "0\r\n\r\n" + SMUGGLED
    raw = ("POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n" +
           "Content-Length: %d\r\n\r\n" % len(body) + body)
    resp, closed = send_raw(mgw.port, raw.encode())
    assert_error(resp, closed, 400)
    assert_nothing_smuggled(mgw.origin)


def test_smuggle_chunk_size_overflow(mgw):
    """A 17-digit chunk size that a 64-bit parser would wrap to 5."""
    body = "10000000000000005\r\nhello\r\n0\r\n\r\n" + SMUGGLED
    raw = "POST /a HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n" + body
    resp, closed = send_raw(mgw.port, raw.encode())
    assert_error(resp, closed, 400)
    # the head of /a may have been forwarded; nothing else
    assert_nothing_smuggled(mgw.origin, allowed_heads=1)
    assert mgw.origin.requests == []
    for h in mgw.origin.heads:
        assert h[1] == "/a"


def test_smuggle_after_valid_request_on_same_connection(mgw):
    body = "0\r\n\r\n" + SMUGGLED
    bad = ("POST /b HTTP/1.1\r\n" + H + "Content-Length: %d\r\n" % len(body) +
           "Transfer-Encoding: chunked\r\n\r\n" + body)
    with HttpConn(mgw.port) as c:
        c.send(build_request("GET", "/ok") + bad.encode())
        r1 = c.read_response()
        assert r1.status == 200 and r1.json()["target"] == "/ok"
        r2 = c.read_response()
        assert_error(r2, c.wait_closed(2 * SLOW), 400)
    assert_nothing_smuggled(mgw.origin, allowed_heads=1)
    assert [r["target"] for r in mgw.origin.requests] == ["/ok"]


def test_identical_duplicate_content_length_forwarded_once(mgw):
    raw = ("POST /dup HTTP/1.1\r\n" + H +
           "Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    resp, closed = send_raw(mgw.port, raw.encode())
    assert resp.status == 200, resp
    settle()
    assert len(mgw.origin.requests) == 1
    req = mgw.origin.requests[0]
    assert req["body"] == b"hello"
    cls = [v for k, v in req["headers"] if k.lower() == "content-length"]
    assert cls == ["5"], req["headers"]


def test_chunked_request_is_reframed_upstream(mgw):
    """The origin gets the decoded body re-chunked by sluice: extensions and trailers
    are not passed through raw."""
    body = "5;ext=\"q\"\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
    raw = ("POST /re HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n"
           "Connection: close\r\n\r\n" + body)
    resp, _ = send_raw(mgw.port, raw.encode())
    assert resp.status == 200, resp
    settle()
    assert len(mgw.origin.requests) == 1
    req = mgw.origin.requests[0]
    assert req["body"] == b"hello"
    assert header_of(req["headers"], "Transfer-Encoding") == "chunked"
    assert b"ext=" not in mgw.origin.raw
    assert b"X-Trailer" not in mgw.origin.raw
    assert header_of(req["headers"], "Content-Length") is None


# ---- malformed upstream responses -----------------------------------------------------

def fixed_answer(raw):
    """An origin that answers every request with these exact bytes (keep-alive)."""
    from conftest import OriginReader

    def handler(sock, origin):
        rd = OriginReader(sock, origin)
        while rd.read_request() is not None:
            sock.sendall(raw)
    return handler


BAD_RESPONSES = [
    ("cl_and_te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n"),
    ("differing_cl", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
     b"hello!"),
    ("bad_status_line", b"HTTP/1.1 2xx OK\r\nContent-Length: 0\r\n\r\n"),
    ("not_http", b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
    ("obs_fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 0\r\n\r\n"),
    ("nul_in_header", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"),
    ("bad_chunk_size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n"
     b"0\r\n\r\n"),
    # a coding sluice would strip along with the hop-by-hop field: never passed on undeclared
    ("te_gzip_chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"2\r\nhi\r\n0\r\n\r\n"),
    ("te_gzip_only", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"),
]


@pytest.mark.parametrize("raw", [b[1] for b in BAD_RESPONSES],
                         ids=[b[0] for b in BAD_RESPONSES])
def test_malformed_upstream_response_is_502(raw_origin, start_sluice, raw):
    o = raw_origin(fixed_answer(raw))
    sl = start_sluice(one_service_config(o.address))
    with HttpConn(sl.port) as c:
        c.send(build_request("GET", "/x"))
        r = c.read_response()
        assert r.status == 502, r
        j = r.json()
        assert j["status"] == 502 and j["error"], j


def test_upstream_bytes_after_response_are_not_forwarded(raw_origin, start_sluice):
    """Response splitting: bytes after a Content-Length body must not reach the client
    as a second response, and that upstream connection must not be reused."""
    injected = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Injected: 1\r\n\r\nINJECTED"
    o = raw_origin(fixed_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + injected))
    sl = start_sluice(one_service_config(o.address, workers=1))
    with HttpConn(sl.port) as c:
        for i in range(3):
            r = c.request("GET", "/r%d" % i)
            assert r.status == 200 and r.body == b"ok", r
            assert r.header("X-Injected") is None, r
    assert o.accepted == 3, "an upstream connection with stray bytes was reused"
