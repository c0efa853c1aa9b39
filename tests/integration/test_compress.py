"""Compression of proxied answers (route `compress:`): gzip and brotli by Accept-Encoding
with q-values, Vary, ETags of compressed representations, what is never compressed, the
HTTP/1.0 and streaming cases, and compressed variants kept apart in the response cache.
The origin is test_cache's recording origin; bodies are decoded with Python's gzip and
brotli modules and compared byte for byte."""
import gzip
import socket
import threading
import time

import brotli
import pytest

from conftest import HttpConn, free_port, request, sluice_config
from test_cache import Origin

TEXT = b"<p>The quick brown fox jumps over the lazy dog.</p>\n" * 200   # 10 KiB of HTML


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


def config(origin, compress=("br", "gzip"), cache=None, compress_min=None):
    route = {"match": {"path_prefix": "/"}, "service": "s", "compress": list(compress)}
    if compress_min is not None:
        route["compress_min"] = compress_min
    if cache is not None:
        route["cache"] = cache
    return sluice_config(services={"s": {"keepalive": 16,
                                         "servers": [{"address": origin.address}]}},
                         routes=[route])


def html(origin, path, headers=None, **kw):
    h = {"Content-Type": "text/html; charset=utf-8"}
    h.update(headers or {})
    origin.answers[path] = dict(headers=h, body=kw.pop("body", TEXT), **kw)


def decode(r):
    ce = r.header("Content-Encoding")
    if ce == "gzip":
        return gzip.decompress(r.body)
    if ce == "br":
        return brotli.decompress(r.body)
    assert ce is None, ce
    return r.body


def test_gzip_and_br_by_accept_encoding(origin, start_sluice):
    sl = start_sluice(config(origin))
    html(origin, "/p")
    for ae, want in (("gzip", "gzip"), ("br", "br"), ("gzip, br", "br"),
                     ("br;q=0.2, gzip;q=0.8", "gzip"), ("identity", None), (None, None),
                     ("gzip;q=0, br;q=0", None), ("*", "br"), ("deflate", None)):
        r = request(sl.port, "GET", "/p", {"Accept-Encoding": ae} if ae else None)
        assert r.status == 200
        assert r.header("Content-Encoding") == want, ae
        assert r.header("Vary") == "Accept-Encoding", ae
        assert decode(r) == TEXT, ae
        if want:
            assert r.framing == "chunked" and r.header("Content-Length") is None
            assert len(r.body) < len(TEXT) / 5
        else:
            assert int(r.header("Content-Length")) == len(TEXT)
    m = sl.metrics()
    assert m.value("proxy_compressed_total", coding="br", result="compressed") == 3
    assert m.value("proxy_compressed_total", coding="gzip", result="compressed") == 2
    assert m.value("proxy_compressed_total", coding="identity", result="not_accepted") == 4


def test_chunked_and_close_delimited_origins(origin, start_sluice):
    sl = start_sluice(config(origin))
    html(origin, "/chunked", chunked=True)
    r = request(sl.port, "GET", "/chunked", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") == "gzip" and gzip.decompress(r.body) == TEXT


def test_http10_client_gets_a_close_delimited_compressed_body(origin, start_sluice):
    sl = start_sluice(config(origin))
    html(origin, "/p")
    with HttpConn(sl.port) as c:
        c.send(b"GET /p HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
        r = c.read_response()
    assert r.header("Content-Encoding") == "gzip"
    assert r.framing == "close"
    assert gzip.decompress(r.body) == TEXT


def test_etag_is_made_per_representation(origin, start_sluice):
    sl = start_sluice(config(origin))
    html(origin, "/e", {"ETag": '"v1"'})
    html(origin, "/w", {"ETag": 'W/"v1"'})
    assert request(sl.port, "GET", "/e", {"Accept-Encoding": "gzip"}).header("ETag") == '"v1-gzip"'
    assert request(sl.port, "GET", "/e", {"Accept-Encoding": "br"}).header("ETag") == '"v1-br"'
    assert request(sl.port, "GET", "/e").header("ETag") == '"v1"'
    assert request(sl.port, "GET", "/w", {"Accept-Encoding": "br"}).header("ETag") == 'W/"v1-br"'


def test_what_is_never_compressed(origin, start_sluice):
    sl = start_sluice(config(origin, compress_min="2k"))
    html(origin, "/png", {"Content-Type": "image/png"})
    html(origin, "/sse", {"Content-Type": "text/event-stream"})
    html(origin, "/enc", {"Content-Encoding": "gzip"}, body=gzip.compress(TEXT))
    html(origin, "/nt", {"Cache-Control": "no-transform"})
    html(origin, "/small", body=b"<p>short</p>" * 10)
    html(origin, "/range", {"Content-Range": "bytes 0-9/100"}, status=206, body=TEXT[:10])
    html(origin, "/nocontent", status=204, body=b"")
    html(origin, "/p")
    ae = {"Accept-Encoding": "gzip, br"}
    r = request(sl.port, "GET", "/png", ae)
    assert r.header("Content-Encoding") is None and r.header("Vary") is None
    assert request(sl.port, "GET", "/sse", ae).header("Content-Encoding") is None
    r = request(sl.port, "GET", "/enc", ae)   # the origin's own coding passes untouched
    assert r.header("Content-Encoding") == "gzip" and gzip.decompress(r.body) == TEXT
    assert request(sl.port, "GET", "/nt", ae).header("Content-Encoding") is None
    r = request(sl.port, "GET", "/small", ae)  # below compress_min
    assert r.header("Content-Encoding") is None and r.body == b"<p>short</p>" * 10
    r = request(sl.port, "GET", "/range", ae)
    assert r.status == 206 and r.header("Content-Encoding") is None and r.body == TEXT[:10]
    assert request(sl.port, "GET", "/nocontent", ae).status == 204
    r = request(sl.port, "HEAD", "/p", ae)     # HEAD: the identity fields
    assert r.header("Content-Encoding") is None and int(r.header("Content-Length")) == len(TEXT)
    # the client asks intermediaries not to transform
    r = request(sl.port, "GET", "/p", {"Accept-Encoding": "gzip", "Cache-Control": "no-transform"})
    assert r.header("Content-Encoding") is None


def test_route_without_compress_passes_answers_as_they_are(origin, start_sluice):
    sl = start_sluice(config(origin, compress=()))
    html(origin, "/p")
    r = request(sl.port, "GET", "/p", {"Accept-Encoding": "gzip, br"})
    assert r.header("Content-Encoding") is None and r.header("Vary") is None and r.body == TEXT


def test_existing_vary_is_kept_and_extended(origin, start_sluice):
    sl = start_sluice(config(origin))
    html(origin, "/v", {"Vary": "Cookie"})
    html(origin, "/va", {"Vary": "accept-encoding"})
    r = request(sl.port, "GET", "/v", {"Accept-Encoding": "gzip"})
    assert r.header_all("Vary") == ["Cookie", "Accept-Encoding"]
    r = request(sl.port, "GET", "/va", {"Accept-Encoding": "gzip"})
    assert r.header_all("Vary") == ["accept-encoding"]


def test_keepalive_and_pipelining_with_compressed_answers(origin, start_sluice):
    sl = start_sluice(config(origin))
    html(origin, "/p")
    html(origin, "/q", body=TEXT[::-1])
    with HttpConn(sl.port) as c:
        req = b"GET /p HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\n\r\n" \
              b"GET /q HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n" \
              b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n"
        c.send(req)
        a, b, d = c.read_response(), c.read_response(), c.read_response()
    assert brotli.decompress(a.body) == TEXT
    assert gzip.decompress(b.body) == TEXT[::-1]
    assert d.header("Content-Encoding") is None and d.body == TEXT


def test_large_body_round_trip(origin, start_sluice):
    sl = start_sluice(config(origin))
    import os
    big = (TEXT + os.urandom(2000)) * 300   # ~3.6 MiB, partly incompressible
    html(origin, "/big", body=big)
    for ae, dec in (("gzip", gzip.decompress), ("br", brotli.decompress)):
        r = request(sl.port, "GET", "/big", {"Accept-Encoding": ae}, timeout=30)
        assert r.header("Content-Encoding") == ae
        assert dec(r.body) == big


def test_streamed_answer_is_flushed_as_it_arrives(start_sluice):
    """A chunked text answer streamed in pieces (a progressive HTML page, a log tail): each
    piece reaches the client compressed before the next is sent (a sync flush per read).
    (text/event-stream itself is never compressed: tiny events gain nothing.)"""
    port = free_port()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(8)
    release = threading.Event()

    def serve():
        c, _ = ls.accept()
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"data: first event\n\n"
        c.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        release.wait(10)
        piece = b"data: second event\n\n"
        c.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(piece), piece))
        time.sleep(0.2)
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    sl = start_sluice(sluice_config(
        services={"s": {"servers": [{"address": "127.0.0.1:%d" % port}]}},
        routes=[{"match": {"path_prefix": "/"}, "service": "s", "compress": ["gzip"],
                 "compress_min": 0}]))
    import zlib
    s = socket.create_connection(("127.0.0.1", sl.port), timeout=10)
    s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    data = b""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    plain = b""
    deadline = time.monotonic() + 5
    while b"first event" not in plain and time.monotonic() < deadline:
        data += s.recv(65536)
        if b"\r\n\r\n" in data:
            head, body = data.split(b"\r\n\r\n", 1)
            # de-chunk what is complete
            out, rest = b"", body
            while b"\r\n" in rest:
                size_line, after = rest.split(b"\r\n", 1)
                n = int(size_line, 16)
                if len(after) < n + 2:
                    break
                out += after[:n]
                rest = after[n + 2:]
            try:
                plain = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(out)
            except zlib.error as e:
                raise AssertionError("%r: %r" % (e, data))
    assert b"Content-Encoding: gzip" in data
    assert plain == b"data: first event\n\n"   # before the origin sent the second one
    release.set()
    s.close()
    t.join(5)
    ls.close()


def test_cache_keeps_compressed_variants_apart(origin, start_sluice):
    sl = start_sluice(config(origin, cache={"ttl": "60s"}))
    html(origin, "/c", {"Cache-Control": "max-age=60"})
    r1 = request(sl.port, "GET", "/c", {"Accept-Encoding": "gzip"})
    r2 = request(sl.port, "GET", "/c", {"Accept-Encoding": "gzip"})
    assert r1.header("X-Cache") == "MISS" and r2.header("X-Cache") == "HIT"
    assert r2.header("Content-Encoding") == "gzip" and gzip.decompress(r2.body) == TEXT
    r3 = request(sl.port, "GET", "/c", {"Accept-Encoding": "br"})
    assert r3.header("X-Cache") == "MISS" and brotli.decompress(r3.body) == TEXT
    r4 = request(sl.port, "GET", "/c")
    assert r4.header("X-Cache") == "MISS" and r4.header("Content-Encoding") is None
    assert r4.body == TEXT
    for ae, ce in (("br", "br"), (None, None), ("gzip", "gzip")):
        r = request(sl.port, "GET", "/c", {"Accept-Encoding": ae} if ae else None)
        assert r.header("X-Cache") == "HIT", ae
        assert r.header("Content-Encoding") == ce
        assert decode(r) == TEXT
        assert r.header("Vary") == "Accept-Encoding"
    assert origin.count("/c") == 3
    # the stored variant revalidates with its own tag
    r = request(sl.port, "GET", "/c", {"Accept-Encoding": "gzip",
                                        "If-None-Match": r2.header("ETag") or '"none"'})
    assert r.status in (200, 304)


def test_coalesced_waiters_with_other_codings_get_their_own(origin, start_sluice):
    """Concurrent misses for one URL with different Accept-Encoding: each client gets a
    body it can decode (a waiter whose variant the fill did not produce goes upstream)."""
    sl = start_sluice(config(origin, cache={"ttl": "60s"}))
    html(origin, "/slow", {"Cache-Control": "max-age=60"}, delay=0.3)
    results = {}

    def get(ae, i):
        r = request(sl.port, "GET", "/slow", {"Accept-Encoding": ae} if ae else None)
        results[i] = (ae, r)

    ts = [threading.Thread(target=get, args=(ae, i))
          for i, ae in enumerate(["gzip", "br", None, "gzip", "br", None] * 3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert len(results) == 18
    for ae, r in results.values():
        assert r.status == 200
        assert r.header("Content-Encoding") == ae
        assert decode(r) == TEXT
    assert origin.count("/slow") <= 6


def test_configuration_errors(tmp_path):
    import subprocess
    from conftest import SLUICE_BIN
    p = tmp_path / "c.yaml"
    p.write_text("listen: [127.0.0.1:1]\nservices:\n  a: {servers: [{address: 127.0.0.1:2}]}\n"
                 "routes:\n  - match: {path_prefix: /}\n    service: a\n    compress: [lz4]\n")
    r = subprocess.run([str(SLUICE_BIN), "-t", "-c", str(p)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1 and 'routes[0].compress[0]: unknown coding "lz4"' in r.stdout + r.stderr
    p.write_text("listen: [127.0.0.1:1]\nroutes:\n  - match: {path_prefix: /}\n"
                 "    static: {root: %s}\n    compress: [gzip]\n" % tmp_path)
    r = subprocess.run([str(SLUICE_BIN), "-t", "-c", str(p)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1 and "compress is for service routes" in r.stdout + r.stderr
