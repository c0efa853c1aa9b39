"""Static routes: files under a root with validators, ranges, compression and the
path rules (docs/static.md). A real sluice serves a tree the test builds in tmp_path;
responses are checked byte for byte against the files."""
import gzip
import hashlib
import os
import socket
import subprocess
import time

import brotli
import pytest

from conftest import (SLUICE_BIN, HttpConn, request, sluice_config)

CSS = b"body { color: red; margin: 0 auto; }\n" * 400          # 15 KiB, compressible
HTML = b"<!doctype html><title>home</title><p>hello</p>\n" * 60
JS = b"export const answer = 42; // fingerprinted\n" * 100
BIG = os.urandom(3 * 1024 * 1024 + 12345)                        # several chunks
TEN = b"0123456789" * 1024                                       # 10 KiB


def build_tree(root):
    (root / "docs").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "nodex").mkdir()
    (root / "img").mkdir()
    (root / "index.html").write_bytes(HTML)
    (root / "docs" / "index.html").write_bytes(b"docs index\n")
    (root / "nodex" / "readme.txt").write_bytes(b"no index here\n")
    (root / "app.css").write_bytes(CSS)
    (root / "assets" / "app.0123abcd.js").write_bytes(JS)
    (root / "assets" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 4000)
    (root / "big.bin").write_bytes(BIG)
    (root / "ten.txt").write_bytes(TEN)
    (root / "tiny.txt").write_bytes(b"tiny\n")
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_bytes(b"Contact: x\n")
    # precompressed siblings of pre.js: the .br says so in its content, to tell them apart
    pre = b"console.log('precompressed');\n" * 200
    (root / "pre.js").write_bytes(pre)
    (root / "pre.js.br").write_bytes(brotli.compress(b"from the br sibling\n" * 100))
    (root / "pre.js.gz").write_bytes(gzip.compress(b"from the gz sibling\n" * 100))
    # a stale sibling (older than its file) must not be served
    (root / "stale.css").write_bytes(CSS)
    (root / "stale.css.gz").write_bytes(gzip.compress(b"old build\n"))
    old = time.time() - 3600
    os.utime(root / "stale.css.gz", (old, old))
    # symlinks: one inside the root, one escaping it
    outside = root.parent / "outside.txt"
    outside.write_bytes(b"outside the root\n")
    os.symlink("app.css", root / "inside-link.css")
    os.symlink(str(outside), root / "escape-link.txt")
    os.symlink("../outside.txt", root / "escape-rel.txt")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    root = base / "public"
    build_tree(root)
    return root


@pytest.fixture(scope="module")
def sl(module_start_sluice, tree):
    cfg = sluice_config(routes=[
        {"match": {"path_prefix": "/static/"},
         "static": {"root": str(tree), "max_age": "1h"}},
        {"match": {"path_prefix": "/raw/"},
         "static": {"root": str(tree), "compress": [], "immutable_pattern": "none",
                    "symlinks": False, "index": "readme.txt"}},
        {"match": {"path_prefix": "/dots/"},
         "static": {"root": str(tree), "dotfiles": True,
                    "immutable_pattern": "docs/*"}},
        {"match": {"path_prefix": "/nocache/"},
         "static": {"root": str(tree), "file_cache": 0}},
        {"match": {"path_prefix": "/tiny-cache/"},
         "static": {"root": str(tree), "file_cache": "20k"}},
        {"match": {"path_prefix": "/limited/"},
         "static": {"root": str(tree)},
         "rate_limits": [{"key": "ip", "rate": "2/minute"}]},
    ])
    return module_start_sluice(cfg)


def get(sl, path, headers=None, method="GET"):
    return request(sl.port, method, path, headers)


# ---- basics -------------------------------------------------------------------------

def test_file_served_with_type_length_and_validators(sl):
    r = get(sl, "/static/app.css")
    assert r.status == 200
    assert r.body == CSS
    assert r.header("Content-Type") == "text/css; charset=utf-8"
    assert int(r.header("Content-Length")) == len(CSS)
    assert r.header("ETag").startswith('"') and r.header("ETag").endswith('"')
    assert r.header("Last-Modified").endswith(" GMT")
    assert r.header("Accept-Ranges") == "bytes"
    assert r.header("Vary") == "Accept-Encoding"
    assert r.header("Cache-Control") == "public, max-age=3600"


def test_content_types_from_the_table(sl):
    assert get(sl, "/static/assets/logo.png").header("Content-Type") == "image/png"
    assert get(sl, "/static/assets/app.0123abcd.js").header("Content-Type") == \
        "text/javascript; charset=utf-8"
    assert get(sl, "/static/big.bin").header("Content-Type") == "application/octet-stream"


def test_head_has_the_get_fields_and_no_body(sl):
    g = get(sl, "/static/ten.txt")
    h = get(sl, "/static/ten.txt", method="HEAD")
    assert h.status == 200 and h.body == b""
    for f in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Cache-Control"):
        assert h.header(f) == g.header(f), f


def test_index_and_directory_redirect(sl):
    r = get(sl, "/static/")
    assert r.status == 200 and r.body == HTML
    assert get(sl, "/static/docs/").body == b"docs index\n"
    r = get(sl, "/static/docs?x=1")
    assert r.status == 301
    assert r.header("Location") == "/static/docs/?x=1"
    # a directory without its index file: 404, never a listing
    assert get(sl, "/static/nodex/").status == 404
    # the route's own index name
    assert get(sl, "/raw/nodex/").body == b"no index here\n"


def test_missing_file_and_methods(sl):
    r = get(sl, "/static/nope.css")
    assert r.status == 404
    assert r.json()["status"] == 404
    r = get(sl, "/static/app.css", method="POST")
    assert r.status == 405
    assert r.header("Allow") == "GET, HEAD"


def test_large_file_arrives_whole_on_keepalive(sl):
    with HttpConn(sl.port) as c:
        for _ in range(2):
            r = c.request("GET", "/static/big.bin")
            assert r.status == 200
            assert hashlib.sha256(r.body).digest() == hashlib.sha256(BIG).digest()
        r = c.request("GET", "/static/tiny.txt")
        assert r.body == b"tiny\n"


def test_slow_reader_gets_everything(sl):
    """The body goes out in chunks as the client drains it: with a small receive window
    the server's output congests and waits for drained before reading on."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)  # before connect: the window
    s.settimeout(20)
    s.connect(("127.0.0.1", sl.port))
    try:
        s.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # the server fills the socket and waits
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200")
        while len(body) < len(BIG):
            d = s.recv(1 << 20)
            assert d, "closed early"
            body += d
        assert body == BIG
    finally:
        s.close()


# ---- conditional requests -------------------------------------------------------------

def test_if_none_match_and_if_modified_since(sl):
    r = get(sl, "/static/ten.txt")
    etag, lm = r.header("ETag"), r.header("Last-Modified")
    r = get(sl, "/static/ten.txt", {"If-None-Match": etag})
    assert r.status == 304 and r.body == b""
    assert r.header("ETag") == etag
    assert r.header("Cache-Control") == "public, max-age=3600"
    assert get(sl, "/static/ten.txt", {"If-None-Match": '"other", ' + etag}).status == 304
    assert get(sl, "/static/ten.txt", {"If-None-Match": '"other"'}).status == 200
    assert get(sl, "/static/ten.txt", {"If-Modified-Since": lm}).status == 304
    assert get(sl, "/static/ten.txt",
               {"If-Modified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"}).status == 200


def test_if_match_and_if_unmodified_since(sl):
    etag = get(sl, "/static/ten.txt").header("ETag")
    assert get(sl, "/static/ten.txt", {"If-Match": etag}).status == 200
    assert get(sl, "/static/ten.txt", {"If-Match": '"nope"'}).status == 412
    assert get(sl, "/static/ten.txt",
               {"If-Unmodified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"}).status == 412


def test_etag_changes_when_the_file_is_replaced(sl, tree):
    """Without the in-memory file table every request sees the file as it is now."""
    p = tree / "changing.txt"
    p.write_bytes(b"one\n")
    e1 = get(sl, "/nocache/changing.txt").header("ETag")
    tmp = tree / "changing.tmp"
    tmp.write_bytes(b"two\n")
    os.rename(tmp, p)  # an atomic deploy: new inode
    r = get(sl, "/nocache/changing.txt", {"If-None-Match": e1})
    assert r.status == 200 and r.body == b"two\n"
    assert r.header("ETag") != e1


def test_file_cache_serves_from_memory_and_rereads_after_valid(sl, tree):
    """A kept file is answered from memory (no thread-pool job) and read again once
    file_cache_valid (1s by default) has passed: a deploy shows within a second."""
    p = tree / "kept.txt"
    p.write_bytes(b"version 1\n")
    m0 = sl.metrics()
    hits0 = m0.value("static_file_cache_total", result="hit") or 0
    assert get(sl, "/static/kept.txt").body == b"version 1\n"
    for _ in range(5):
        assert get(sl, "/static/kept.txt").body == b"version 1\n"
    assert sl.metrics().value("static_file_cache_total", result="hit") >= hits0 + 5
    tmp = tree / "kept.tmp"
    tmp.write_bytes(b"version 2\n")
    os.rename(tmp, p)
    time.sleep(1.2)
    r = get(sl, "/static/kept.txt")
    assert r.body == b"version 2\n"
    # ranges and conditionals are decided from memory too
    r2 = get(sl, "/static/kept.txt", {"Range": "bytes=0-6"})
    assert r2.status == 206 and r2.body == b"version"
    assert get(sl, "/static/kept.txt", {"If-None-Match": r.header("ETag")}).status == 304
    # a deleted file is noticed when it is read again
    p.unlink()
    time.sleep(1.2)
    assert get(sl, "/static/kept.txt").status == 404


def test_file_cache_is_bounded(sl):
    """A 20 KiB table keeps one 15 KiB file and no more: others are read per request and
    counted as full; answers are right either way."""
    before = sl.metrics().value("static_file_cache_total", result="full") or 0
    for _ in range(2):
        assert get(sl, "/tiny-cache/app.css").body == CSS
        assert get(sl, "/tiny-cache/ten.txt").body == TEN
    assert sl.metrics().value("static_file_cache_total", result="full") >= before + 1


# ---- ranges ---------------------------------------------------------------------------

def test_single_ranges(sl):
    r = get(sl, "/static/ten.txt", {"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == TEN[10:20]
    assert r.header("Content-Range") == "bytes 10-19/%d" % len(TEN)
    r = get(sl, "/static/ten.txt", {"Range": "bytes=-5"})
    assert r.status == 206 and r.body == TEN[-5:]
    r = get(sl, "/static/ten.txt", {"Range": "bytes=10000-"})
    assert r.status == 206 and r.body == TEN[10000:]
    r = get(sl, "/static/big.bin", {"Range": "bytes=1000000-2999999"})
    assert r.status == 206 and r.body == BIG[1000000:3000000]


def test_unsatisfiable_multi_and_malformed_ranges(sl):
    r = get(sl, "/static/ten.txt", {"Range": "bytes=20000-"})
    assert r.status == 416
    assert r.header("Content-Range") == "bytes */%d" % len(TEN)
    r = get(sl, "/static/ten.txt", {"Range": "bytes=0-1,5-6"})
    assert r.status == 200 and r.body == TEN
    r = get(sl, "/static/ten.txt", {"Range": "bytes=9-1"})
    assert r.status == 200 and r.body == TEN
    r = get(sl, "/static/ten.txt", {"Range": "items=0-1"})
    assert r.status == 200


def test_if_range(sl):
    etag = get(sl, "/static/ten.txt").header("ETag")
    r = get(sl, "/static/ten.txt", {"Range": "bytes=0-3", "If-Range": etag})
    assert r.status == 206 and r.body == TEN[:4]
    r = get(sl, "/static/ten.txt", {"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert r.status == 200 and r.body == TEN


# ---- immutable and cache-control ------------------------------------------------------

def test_fingerprinted_names_are_immutable(sl):
    r = get(sl, "/static/assets/app.0123abcd.js")
    assert r.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert get(sl, "/raw/assets/app.0123abcd.js").header("Cache-Control") is None
    # a glob instead of the fingerprint rule
    assert get(sl, "/dots/docs/index.html").header("Cache-Control") == \
        "public, max-age=31536000, immutable"
    assert get(sl, "/dots/assets/app.0123abcd.js").header("Cache-Control") is None


# ---- path safety ----------------------------------------------------------------------

def raw_status(sl, target):
    with HttpConn(sl.port) as c:
        c.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target).encode("latin-1"))
        return c.read_response().status


@pytest.mark.parametrize("target,status", [
    ("/static/../static/app.css", 404),
    ("/static/docs/../../etc/passwd", 404),
    ("/static/%2e%2e/%2e%2e/etc/passwd", 404),
    ("/static/.%2E/outside.txt", 404),
    ("/static/%2E%2e%2fetc%2fpasswd", 404),
    ("/static/docs%2findex.html", 404),
    ("/static/app.css%00.png", 400),
    ("/static/..%5c..%5cetc", 400),
    ("/static/a%zz", 400),
    ("/static/.env", 404),
    ("/static/escape-link.txt", 404),
    ("/static/escape-rel.txt", 404),
])
def test_traversal_is_impossible(sl, target, status):
    assert raw_status(sl, target) == status


def test_symlinks_and_dotfiles(sl):
    assert get(sl, "/static/inside-link.css").body == CSS
    assert get(sl, "/raw/inside-link.css").status == 404   # symlinks: false
    assert get(sl, "/static/.well-known/security.txt").status == 200
    assert get(sl, "/dots/.env").body == b"SECRET=1\n"     # dotfiles: true


# ---- compression ----------------------------------------------------------------------

def test_gzip_and_br_on_the_fly_round_trip(sl):
    etags = set()
    for ae, coding, dec in (("gzip", "gzip", gzip.decompress),
                            ("br", "br", brotli.decompress),
                            ("gzip, br", "br", brotli.decompress),
                            ("br;q=0.5, gzip", "gzip", gzip.decompress)):
        r = get(sl, "/static/app.css", {"Accept-Encoding": ae})
        assert r.status == 200
        assert r.header("Content-Encoding") == coding, ae
        assert r.header("Vary") == "Accept-Encoding"
        assert r.header("Accept-Ranges") is None
        assert int(r.header("Content-Length")) == len(r.body) < len(CSS) / 5
        assert dec(r.body) == CSS
        etags.add(r.header("ETag"))
    plain = get(sl, "/static/app.css").header("ETag")
    assert len(etags) == 2 and plain not in etags  # one tag per representation


def test_compressed_variant_revalidates_with_its_own_etag(sl):
    r = get(sl, "/static/app.css", {"Accept-Encoding": "gzip"})
    r2 = get(sl, "/static/app.css", {"Accept-Encoding": "gzip", "If-None-Match": r.header("ETag")})
    assert r2.status == 304 and r2.header("ETag") == r.header("ETag")
    # the gzip tag does not validate the br representation
    r3 = get(sl, "/static/app.css", {"Accept-Encoding": "br", "If-None-Match": r.header("ETag")})
    assert r3.status == 200 and r3.header("Content-Encoding") == "br"


def test_curl_decodes_compressed_answers(sl):
    out = subprocess.run(["curl", "-s", "--compressed", "-D", "-",
                          "http://127.0.0.1:%d/static/app.css" % sl.port],
                         capture_output=True, timeout=20)
    assert out.returncode == 0
    head, body = out.stdout.split(b"\r\n\r\n", 1)
    assert b"Content-Encoding: " in head
    assert body == CSS


def test_precompressed_siblings_are_preferred(sl):
    r = get(sl, "/static/pre.js", {"Accept-Encoding": "br, gzip"})
    assert r.header("Content-Encoding") == "br"
    assert brotli.decompress(r.body) == b"from the br sibling\n" * 100
    r = get(sl, "/static/pre.js", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") == "gzip"
    assert gzip.decompress(r.body) == b"from the gz sibling\n" * 100
    r = get(sl, "/static/pre.js")
    assert r.header("Content-Encoding") is None
    assert r.body == b"console.log('precompressed');\n" * 200
    assert r.header("Content-Type") == "text/javascript; charset=utf-8"


def test_stale_sibling_is_ignored(sl):
    r = get(sl, "/static/stale.css", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") == "gzip"
    assert gzip.decompress(r.body) == CSS


def test_what_is_never_compressed(sl):
    # already-compressed types
    r = get(sl, "/static/assets/logo.png", {"Accept-Encoding": "gzip, br"})
    assert r.header("Content-Encoding") is None and r.header("Vary") is None
    # below compress_min (1k)
    r = get(sl, "/static/tiny.txt", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") is None and r.body == b"tiny\n"
    # above compress_max (1m): identity unless a sibling exists
    r = get(sl, "/static/big.bin", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") is None
    # ranges are of the identity bytes
    r = get(sl, "/static/app.css", {"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert r.status == 206 and r.header("Content-Encoding") is None and r.body == CSS[:10]
    # refused codings
    for ae in ("gzip;q=0, br;q=0", "identity", ""):
        r = get(sl, "/static/app.css", {"Accept-Encoding": ae})
        assert r.header("Content-Encoding") is None, ae
        assert r.body == CSS
    # a route without compression
    r = get(sl, "/raw/app.css", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") is None and r.header("Vary") is None


def test_head_of_compressed_answer(sl):
    g = get(sl, "/static/app.css", {"Accept-Encoding": "gzip"})
    h = get(sl, "/static/app.css", {"Accept-Encoding": "gzip"}, method="HEAD")
    assert h.body == b""
    assert h.header("Content-Length") == g.header("Content-Length")
    assert h.header("Content-Encoding") == "gzip"


# ---- policies, metrics, configuration -------------------------------------------------

def test_rate_limits_apply_to_static_routes(sl):
    codes = [get(sl, "/limited/tiny.txt").status for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429]


def test_metrics_count_static_answers(sl):
    get(sl, "/static/app.css", {"Accept-Encoding": "br"})
    get(sl, "/static/pre.js", {"Accept-Encoding": "gzip"})
    m = sl.metrics()
    assert m.value("static_responses_total", coding="br", source="on_the_fly") >= 1
    assert m.value("static_responses_total", coding="gzip", source="precompressed") >= 1
    assert m.value("static_responses_total", coding="identity", source="file") >= 1
    text = sl.metrics_text()
    assert 'http_requests_total{route="/static/",method="GET",status="200"}' in text
    assert "static_file_errors_total" in text


def check(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    r = subprocess.run([str(SLUICE_BIN), "-t", "-c", str(p)], capture_output=True, text=True,
                       timeout=20)
    return r.returncode, r.stdout + r.stderr


def test_configuration_errors(tmp_path):
    head = "listen: [127.0.0.1:1]\nroutes:\n"
    rc, out = check(tmp_path, head + "  - match: {path_prefix: /}\n"
                                     "    static: {root: /nonexistent/dir}\n")
    assert rc == 1 and "static.root: /nonexistent/dir: No such file or directory" in out
    f = tmp_path / "file"
    f.write_text("x")
    rc, out = check(tmp_path, head + "  - match: {path_prefix: /}\n"
                                     "    static: {root: %s}\n" % f)
    assert rc == 1 and "not a directory" in out
    rc, out = check(tmp_path, head + "  - match: {path_prefix: /}\n"
                                     "    static: {root: %s, compress: [zstd]}\n" % tmp_path)
    assert rc == 1 and 'unknown coding "zstd"' in out
    rc, out = check(tmp_path, head + "  - match: {path_prefix: /}\n"
                                     "    static: {root: %s, index: ../x}\n" % tmp_path)
    assert rc == 1 and "index" in out
    rc, out = check(tmp_path, "listen: [127.0.0.1:1]\nservices:\n  a: {servers: [{address: 127.0.0.1:2}]}\n"
                    "routes:\n  - match: {path_prefix: /}\n    service: a\n"
                    "    static: {root: %s}\n" % tmp_path)
    assert rc == 1 and "a route has one target" in out
    rc, out = check(tmp_path, head + "  - match: {path_prefix: /}\n"
                                     "    static: {root: %s}\n    cache: {ttl: 1s}\n" % tmp_path)
    assert rc == 1 and "cache and dedupe are for service routes" in out
    rc, out = check(tmp_path, head + "  - match: {path_prefix: /}\n")
    assert rc == 1 and "needs a target" in out
    rc, out = check(tmp_path, head + "  - match: {path_prefix: /}\n"
                                     "    static: {root: %s}\n" % tmp_path)
    assert rc == 0, out


def test_demo_configuration_with_its_static_route_loads():
    """make run's configuration (examples/demo.yaml, with its /static/ route on
    examples/public) passes sluice -t from the repository root, where run-demo.sh runs it."""
    repo = SLUICE_BIN.resolve().parent.parent
    r = subprocess.run([str(SLUICE_BIN), "-t", "-c", "examples/demo.yaml"], cwd=repo,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (repo / "examples/public/index.html").is_file()
