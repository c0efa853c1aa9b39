"""HTTP/2 downstream (h2c with prior knowledge): streams go through the same routing,
limits, cache and proxy as HTTP/1.1 (curl, h2load, python-h2), and the session refuses
what RFC 9113 and the known floods call for, asserted frame by frame on raw sockets."""

import hashlib
import re
import socket
import struct
import subprocess
import time

import hpack
import pytest

from conftest import (IO_TIMEOUT, SLOW, one_service_config, pattern_bytes, request,
                      sluice_config)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

NO_ERROR, PROTOCOL_ERROR, STREAM_CLOSED, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x5, 0xB


# ---- raw frames ----

def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def settings(**kv):
    ids = {"max_concurrent_streams": 3, "initial_window_size": 4}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in kv.items()))


def block(headers):
    return hpack.Encoder().encode(headers)


def get_headers(path="/health", authority="h", method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":path", path),
            (":authority", authority)] + list(extra)


class H2Sock:
    """A raw HTTP/2 client connection: sends bytes, reads frames."""

    def __init__(self, port, handshake=True):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.buf = b""
        self.frames = []
        self.dec = hpack.Decoder()  # the server's HPACK state spans the connection
        self.last_headers = []
        if handshake:
            self.s.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        self.s.sendall(data)

    def try_send(self, data):
        """Send; the server may already have closed (a flood it stopped)."""
        try:
            self.s.sendall(data)
            return True
        except OSError:
            return False

    def read_frame(self, timeout=IO_TIMEOUT):
        """The next frame (type, flags, stream, payload), or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) >= 9 + n:
                    t, fl = self.buf[3], self.buf[4]
                    sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                    f = (t, fl, sid, self.buf[9:9 + n])
                    self.buf = self.buf[9 + n:]
                    self.frames.append(f)
                    if t == HEADERS:
                        self.last_headers = self.dec.decode(f[3])
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame within %.1fs" % timeout)
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                return None
            self.buf += d

    def until(self, pred, timeout=IO_TIMEOUT):
        """Read frames until pred(frame) (returned) or EOF (None)."""
        while True:
            f = self.read_frame(timeout)
            if f is None or pred(f):
                return f

    def goaway(self, timeout=IO_TIMEOUT):
        """The GOAWAY frame's (last_stream_id, error_code), then assert EOF follows."""
        f = self.until(lambda f: f[0] == GOAWAY, timeout)
        assert f is not None, "connection closed without GOAWAY; frames: %r" % self.frames
        last, code = struct.unpack(">II", f[3][:8])
        return last & 0x7FFFFFFF, code

    def assert_closed(self, timeout=5 * SLOW):
        assert self.until(lambda f: False, timeout) is None

    def close(self):
        self.s.close()


def response(sock, sid):
    """(status, {headers}, body) of stream sid, read to END_STREAM."""
    status, hdrs, body = None, {}, b""
    while True:
        f = sock.read_frame()
        assert f is not None, "closed before stream %d ended: %r" % (sid, sock.frames)
        t, fl, s, p = f
        if t == HEADERS and s == sid:
            for k, v in sock.last_headers:
                if k == ":status":
                    status = int(v)
                else:
                    hdrs[k] = v
        elif t == DATA and s == sid:
            body += p
            if p:  # keep the windows open for larger answers
                sock.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(p))) +
                          frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(p))))
        elif t == RST_STREAM and s == sid:
            raise AssertionError("stream %d reset: %r" % (sid, p))
        if s == sid and t in (HEADERS, DATA) and fl & END_STREAM:
            return status, hdrs, body


# ---- fixtures ----

@pytest.fixture
def gw(start_origin, start_sluice):
    """start(limits=None, **cfg) -> (Sluice, Origin): everything proxied to one origin."""
    o = start_origin()

    def start(limits=None, **top):
        return start_sluice(one_service_config(o.address, limits=limits, **top)), o

    return start


def curl(port, path, *args):
    """curl over h2c prior knowledge: (status, http_version, body)."""
    r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "-",
                        "-w", "\n%{http_code} %{http_version}", *args,
                        "http://127.0.0.1:%d%s" % (port, path)],
                       capture_output=True, timeout=60 * SLOW, check=True)
    body, _, tail = r.stdout.rpartition(b"\n")
    code, ver = tail.decode().split()
    return int(code), ver, body


# ---- through the handler ----

def test_get_and_post_one_mib_through_the_proxy(gw, tmp_path):
    sl, _ = gw()
    n = 1 << 20
    code, ver, body = curl(sl.port, "/bytes/%d" % n)
    assert (code, ver) == (200, "2")
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern_bytes(0, n)).digest()
    # A chunked upstream answer reaches the h2 client de-chunked, byte for byte.
    code, ver, body = curl(sl.port, "/chunked/%d" % n)
    assert (code, ver, len(body)) == (200, "2", n)
    assert body == pattern_bytes(0, n)
    up = bytes((i * 7 + 3) & 0xFF for i in range(n))
    f = tmp_path / "up.bin"
    f.write_bytes(up)
    code, ver, body = curl(sl.port, "/api/blog/customer-review", "--data-binary", "@%s" % f,
                           "-H", "content-type: application/octet-stream")
    assert (code, ver) == (201, "2"), body
    got = __import__("json").loads(body)
    assert got["received"] == n and got["checksum"] == sum(up) & 0xFFFFFFFF
    # Without Content-Length (the proxy sends it upstream chunked): same bytes arrive.
    code, ver, body = curl(sl.port, "/api/blog/customer-review", "--data-binary", "@%s" % f,
                           "-H", "content-length:", "-H", "transfer-encoding:")
    assert code == 201 and __import__("json").loads(body)["received"] == n


def test_many_concurrent_streams_with_h2load(gw):
    sl, _ = gw()
    r = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "32",
                        "http://127.0.0.1:%d/health" % sl.port],
                       capture_output=True, text=True, timeout=120 * SLOW)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", r.stdout)
    assert m, r.stdout + r.stderr
    assert (int(m.group(4)), int(m.group(5)), int(m.group(6))) == (2000, 0, 0), r.stdout
    assert "2000 2xx" in r.stdout
    mt = sl.metrics()
    assert mt.value("http2_sessions_total") >= 4
    assert mt.value("http2_streams_total") >= 2000


def test_routing_404_and_http1_on_the_same_port(start_origin, start_sluice):
    o = start_origin()
    sl = start_sluice(sluice_config(services={"o": {"servers": [{"address": o.address}]}},
                                    routes=[{"match": {"path_prefix": "/api"}, "service": "o"}]))
    code, ver, body = curl(sl.port, "/nowhere")
    assert (code, ver) == (404, "2") and b"no route matches" in body
    code, ver, _ = curl(sl.port, "/api/blog/posts")
    assert (code, ver) == (200, "2")
    r = request(sl.port, "GET", "/api/blog/posts")
    assert r.status == 200 and r.version == (1, 1)


def test_rate_limit_429_over_h2(start_origin, start_sluice):
    o = start_origin()
    route = {"match": {"path_prefix": "/"}, "service": "o",
             "rate_limits": [{"key": "ip", "rate": "3/minute", "burst": 0}]}
    sl = start_sluice(sluice_config(services={"o": {"servers": [{"address": o.address}]}},
                                    routes=[route]))
    c = H2Sock(sl.port)
    enc = hpack.Encoder()
    codes = []
    for i in range(5):
        sid = 1 + 2 * i
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode(get_headers("/health"))))
        status, hdrs, _ = response(c, sid)
        codes.append(status)
    assert codes[0] == 200 and 429 in codes, codes
    assert codes.count(200) <= 3


def test_cache_hit_over_h2(start_origin, start_sluice):
    o = start_origin()
    sl = start_sluice(sluice_config(
        services={"o": {"servers": [{"address": o.address}]}},
        routes=[{"match": {"path_prefix": "/"}, "service": "o", "cache": {}}]))
    c = H2Sock(sl.port)
    enc = hpack.Encoder()
    path = "/bytes/5000?cache=60"
    got = []
    for sid in (1, 3, 5):
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode(get_headers(path))))
        status, hdrs, body = response(c, sid)
        assert status == 200 and body == pattern_bytes(0, 5000)
        assert hdrs.get("content-length") == "5000"
        got.append(hdrs.get("x-cache"))
    assert got == ["MISS", "HIT", "HIT"], got
    # HEAD of the cached object: the fields, no body.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 7,
                 enc.encode(get_headers(path, method="HEAD"))))
    status, hdrs, body = response(c, 7)
    assert (status, body, hdrs.get("x-cache")) == (200, b"", "HIT")


def test_hop_by_hop_fields_dropped_and_names_lower_case(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(get_headers("/chunked/100"))))
    status, hdrs, body = response(c, 1)
    assert status == 200 and body == pattern_bytes(0, 100)
    for k in hdrs:
        assert k == k.lower()
    for hop in ("connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"):
        assert hop not in hdrs


# ---- the session's settings and refusals ----

def test_server_settings_announce_the_limits(gw):
    sl, _ = gw(limits={"h2_max_concurrent_streams": 7, "max_header_bytes": "8k"})
    c = H2Sock(sl.port)
    f = c.until(lambda f: f[0] == SETTINGS and not f[1] & ACK)
    vals = {struct.unpack(">H", f[3][i:i + 2])[0]: struct.unpack(">I", f[3][i + 2:i + 6])[0]
            for i in range(0, len(f[3]), 6)}
    assert vals[3] == 7  # MAX_CONCURRENT_STREAMS
    assert vals[6] == 8192  # MAX_HEADER_LIST_SIZE
    assert vals[2] == 0  # ENABLE_PUSH


def test_bad_preface_gets_goaway_protocol_error(gw):
    sl, _ = gw()
    c = H2Sock(sl.port, handshake=False)
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(SETTINGS, 0, 0))
    _, code = c.goaway()
    assert code == PROTOCOL_ERROR
    c.assert_closed()


def test_headers_on_stream_zero_is_a_connection_error(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 0, block(get_headers())))
    _, code = c.goaway()
    assert code == PROTOCOL_ERROR
    c.assert_closed()


def test_data_on_a_half_closed_stream_is_stream_closed(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    # END_STREAM on HEADERS: the stream is half-closed (remote) while the origin sleeps.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(get_headers("/sleep/300"))))
    c.send(frame(DATA, 0, 1, b"late"))
    f = c.until(lambda f: f[0] in (RST_STREAM, GOAWAY) and f[2] in (0, 1))
    assert f is not None
    code = struct.unpack(">I", f[3][:4] if f[0] == RST_STREAM else f[3][4:8])[0]
    assert code == STREAM_CLOSED, f
    # The connection goes on: a new stream is answered.
    if f[0] == RST_STREAM:
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, block(get_headers())))
        assert response(c, 3)[0] == 200


def test_data_on_a_closed_stream_is_an_error(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(get_headers())))
    assert response(c, 1)[0] == 200
    c.send(frame(DATA, 0, 1, b"after the end"))
    f = c.until(lambda f: f[0] in (RST_STREAM, GOAWAY))
    assert f is not None, c.frames
    code = struct.unpack(">I", f[3][:4] if f[0] == RST_STREAM else f[3][4:8])[0]
    assert code == STREAM_CLOSED, f


def test_too_large_header_list_gets_431(gw):
    sl, _ = gw(limits={"max_header_bytes": "4k"})
    c = H2Sock(sl.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                 block(get_headers(extra=[("x-big", "v" * 6000)]))))
    status, _, body = response(c, 1)
    assert status == 431 and b"too large" in body
    # The session is fine: the next stream works.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, block(get_headers())))
    assert response(c, 3)[0] == 200


@pytest.mark.parametrize("path", [b"/caf\xc3\xa9", b"/a#frag"])
def test_targets_http1_would_refuse_get_400(gw, path):
    """The proxy writes an HTTP/1.1 request line from :path: bytes the HTTP/1 parser
    refuses in a target are refused here too, before any upstream sees them."""
    sl, _ = gw()
    c = H2Sock(sl.port)
    hb = hpack.Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"), (b":path", path),
                                 (b":authority", b"h")])
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, hb))
    status, _, body = response(c, 1)
    assert status == 400 and b"bad request" in body


def test_rapid_reset_flood_gets_enhance_your_calm(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    enc = hpack.Encoder()
    burst = b""
    for i in range(600):
        sid = 1 + 2 * i
        burst += frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode(get_headers("/sleep/200")))
        burst += frame(RST_STREAM, 0, sid, struct.pack(">I", 0x8))  # CANCEL
    c.try_send(burst)
    _, code = c.goaway()
    assert code == ENHANCE_YOUR_CALM
    c.assert_closed()
    m = sl.metrics()
    assert m.value("http2_goaway_sent_total", reason="rapid_reset") == 1
    assert m.value("http2_streams_reset_total", by="client") >= 200


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_ping_and_settings_floods_close_the_connection(gw, kind):
    sl, _ = gw()
    c = H2Sock(sl.port)
    one = frame(PING, 0, 0, b"12345678") if kind == "ping" else frame(SETTINGS, 0, 0)
    c.try_send(one * 3000)
    _, code = c.goaway()
    assert code == ENHANCE_YOUR_CALM
    c.assert_closed()
    assert sl.metric("http2_goaway_sent_total", reason="control_flood") == 1


def test_empty_data_flood_closes_the_connection(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    c.send(frame(HEADERS, END_HEADERS, 1, block(get_headers("/echo", method="POST"))))
    c.try_send(frame(DATA, 0, 1, b"") * 500)
    _, code = c.goaway()
    assert code == ENHANCE_YOUR_CALM
    c.assert_closed()
    assert sl.metric("http2_goaway_sent_total", reason="empty_data_flood") == 1


def test_continuation_flood_closes_the_connection(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    enc = hpack.Encoder()
    c.send(frame(HEADERS, 0, 1, enc.encode(get_headers())))  # no END_HEADERS
    burst = b"".join(frame(CONTINUATION, 0, 1, enc.encode([("x-c%d" % i, "v" * 100)]))
                     for i in range(200))
    c.try_send(burst)
    _, code = c.goaway()
    assert code == ENHANCE_YOUR_CALM
    c.assert_closed()
    assert sl.metric("http2_goaway_sent_total", reason="header_flood") == 1


def test_client_reset_mid_answer_aborts_the_stream_only(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(get_headers("/bytes/10000000"))))
    c.until(lambda f: f[0] == DATA and f[2] == 1)
    c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8)))
    # Stream 1 used up the connection's window; give it back for stream 3's answer.
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20)))
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, block(get_headers())))
    assert response(c, 3)[0] == 200
    assert sl.metric("http2_streams_reset_total", by="client") == 1


def test_drain_on_sigterm_finishes_streams_then_goaway(gw):
    sl, _ = gw()
    c = H2Sock(sl.port)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(get_headers("/sleep/500"))))
    time.sleep(0.2 * SLOW)
    sl.proc.signal(15)
    c.assert_closed(timeout=10 * SLOW)  # reads every frame up to EOF
    goaways = [f for f in c.frames if f[0] == GOAWAY]
    assert len(goaways) == 1 and struct.unpack(">I", goaways[0][3][4:8])[0] == NO_ERROR
    assert struct.unpack(">I", goaways[0][3][:4])[0] == 1  # stream 1 was let finish
    body = b"".join(f[3] for f in c.frames if f[0] == DATA and f[2] == 1)
    assert b"slept_ms" in body
    assert any(f[0] == DATA and f[2] == 1 and f[1] & END_STREAM for f in c.frames)
    assert not any(f[0] == RST_STREAM for f in c.frames)
    assert sl.proc.wait(10 * SLOW) == 0


def test_stale_while_revalidate_refresh_from_an_h2_request(start_origin, start_sluice):
    """The background refresh copies the request it started from: for a stream that copy
    is made from the stream's fields (there is no HTTP/1 head in a read buffer)."""
    o = start_origin()
    sl = start_sluice(sluice_config(
        services={"o": {"servers": [{"address": o.address}]}},
        routes=[{"match": {"path_prefix": "/"}, "service": "o",
                 "cache": {"stale_while_revalidate": "30s"}}]))
    c = H2Sock(sl.port)
    # max-age=3: the origin's Date has whole seconds, so an answer's age starts anywhere in
    # [0, 1) s; 3 s keeps the refreshed copy fresh (>= 2 s) for the last request, and the
    # 3.3 s wait makes the first copy stale whatever its Date.
    path = "/bytes/300?cache=3"
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(get_headers(path))))
    assert response(c, 1)[1].get("x-cache") == "MISS"
    time.sleep(3.3)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, block(get_headers(path))))
    status, hdrs, body = response(c, 3)
    assert (status, hdrs.get("x-cache"), body) == (200, "STALE", pattern_bytes(0, 300))
    deadline = time.monotonic() + 5 * SLOW
    while (sl.metric("cache_background_refreshes_total", result="stored") or 0) < 1:
        assert time.monotonic() < deadline, "no background refresh"
        time.sleep(0.05)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, block(get_headers(path))))
    assert response(c, 5)[1].get("x-cache") == "HIT"


def test_body_over_the_limit_gets_413(gw):
    sl, _ = gw(limits={"max_body_bytes": "10k"})
    c = H2Sock(sl.port)
    # Announced too large: refused before the handler.
    c.send(frame(HEADERS, END_HEADERS, 1,
                 block(get_headers("/echo", method="POST", extra=[("content-length", "20000")]))))
    assert response(c, 1)[0] == 413
    # Not announced, counted while it arrives.
    c.send(frame(HEADERS, END_HEADERS, 3, block(get_headers("/echo", method="POST"))))
    c.send(frame(DATA, 0, 3, b"x" * 8000) + frame(DATA, END_STREAM, 3, b"x" * 8000))
    assert response(c, 3)[0] == 413


def test_streams_beyond_the_limit_are_refused(gw):
    sl, _ = gw(limits={"h2_max_concurrent_streams": 2})
    c = H2Sock(sl.port)
    c.until(lambda f: f[0] == SETTINGS and not f[1] & ACK)
    c.send(frame(SETTINGS, ACK, 0))  # the limit applies once the client acknowledged it
    enc = hpack.Encoder()
    for sid in (1, 3, 5):
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode(get_headers("/sleep/300"))))
    # nghttp2 treats exceeding an acknowledged limit as a connection error (RFC 9113
    # §5.1.2 allows a stream error; it is stricter): the third stream is never served.
    last, code = c.goaway()
    assert (last, code) == (3, PROTOCOL_ERROR)
    c.assert_closed()
    assert not any(f[0] == HEADERS and f[2] == 5 for f in c.frames)


def test_idle_session_gets_goaway_and_closes(gw):
    sl, _ = gw(limits={"idle_timeout": "1s"})
    c = H2Sock(sl.port)
    # A request waiting on its upstream longer than the idle timeout is not idleness.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(get_headers("/sleep/2500"))))
    assert response(c, 1)[0] == 200
    t0 = time.monotonic()
    last, code = c.goaway(timeout=5 * SLOW)
    assert (last, code) == (1, NO_ERROR)
    assert time.monotonic() - t0 > 0.5
    c.assert_closed()
    assert sl.metric("http2_goaway_sent_total", reason="idle") == 1
