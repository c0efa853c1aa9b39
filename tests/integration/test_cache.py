"""The response cache (issue 5): RFC 9111 shared-cache rules, coalescing, stale serving,
revalidation, invalidation, purge and metrics, against a real origin on loopback.

The origin is a threaded Python HTTP/1.1 server in this process whose answer for a path is
set by the test (headers, status, body, delay) and which records every request it gets,
so "the origin saw exactly one request" is counted at the origin itself."""

import http.server
import json
import socket
import struct
import threading
import time
import urllib.parse

import pytest

from conftest import SAN, SLOW, HttpConn, free_port, request, sluice_config


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: bursts of connections are the point


class Origin:
    """answers[path] = dict(status=200, headers={...}, body=b"...", delay=0.0); a path
    without an entry answers 200 "body of PATH" with no caching headers. ETag and
    Last-Modified validators in headers make the origin answer matching conditional
    requests with 304 (plus the answer's Cache-Control/ETag/Expires/Date)."""

    def __init__(self):
        self.answers = {}
        self.requests = []  # (method, path, {lower-case name: value})
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self, method):
                n = int(self.headers.get("Content-Length", "0") or 0)
                if n:
                    self.rfile.read(n)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.requests.append((method, self.path, hdrs))
                    a = dict(outer.answers.get(self.path, {}))
                if a.get("delay"):
                    time.sleep(a["delay"])
                status = a.get("status", 200)
                headers = dict(a.get("headers", {}))
                body = a.get("body", ("body of %s" % self.path).encode())
                inm = hdrs.get("if-none-match")
                ims = hdrs.get("if-modified-since")
                if method == "GET" and status == 200 and (
                        (inm and headers.get("ETag") == inm) or
                        (ims and not inm and headers.get("Last-Modified") == ims)):
                    self.send_response(304)
                    for k in ("Cache-Control", "ETag", "Expires", "Date", "X-Version"):
                        if k in headers:
                            self.send_header(k, headers[k])
                    self.end_headers()
                    return
                self.send_response(status)
                for k, v in headers.items():
                    if isinstance(v, list):
                        for item in v:
                            self.send_header(k, item)
                    else:
                        self.send_header(k, v)
                if a.get("chunked"):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if method != "HEAD":
                        for i in range(0, len(body), 1000):
                            piece = body[i:i + 1000]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                self.handle_one("GET")

            def do_HEAD(self):
                self.handle_one("HEAD")

            def do_POST(self):
                self.handle_one("POST")

            def do_PUT(self):
                self.handle_one("PUT")

            def do_DELETE(self):
                self.handle_one("DELETE")

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.server = Server(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path, method="GET"):
        with self.lock:
            return sum(1 for m, p, _ in self.requests if p == path and m == method)

    def last(self, path):
        with self.lock:
            for m, p, h in reversed(self.requests):
                if p == path:
                    return h
        return None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


def cache_config(origin, route_cache=None, cache=None, workers=2, extra_routes=()):
    routes = list(extra_routes) + [{"match": {"path_prefix": "/"}, "service": "s",
                                    "cache": route_cache if route_cache is not None else {}}]
    cfg = sluice_config(services={"s": {"keepalive": 64,
                                        "servers": [{"address": origin.address}]}},
                        routes=routes, workers=workers)
    if cache:
        cfg["cache"] = cache
    return cfg


@pytest.fixture
def cached(origin, start_sluice):
    """start(route_cache=None, cache=None) -> Sluice caching everything from origin."""

    def start(route_cache=None, cache=None, **kw):
        return start_sluice(cache_config(origin, route_cache, cache, **kw))

    return start


def get(port, path, headers=None, method="GET"):
    return request(port, method, path, headers=headers)


def xcache(r):
    return r.header("X-Cache")


# ---- storing and hits ------------------------------------------------------------------

def test_fresh_answer_is_stored_and_served_with_age(origin, cached):
    origin.answers["/a"] = {"headers": {"Cache-Control": "max-age=60", "X-Thing": "1"}}
    sl = cached()
    r1 = get(sl.port, "/a")
    assert r1.status == 200 and xcache(r1) == "MISS"
    r2 = get(sl.port, "/a")
    assert r2.status == 200 and xcache(r2) == "HIT", r2
    assert r2.body == b"body of /a"
    assert r2.header("X-Thing") == "1"
    assert r2.header("Age") is not None and int(r2.header("Age")) >= 0
    assert r2.header("Content-Length") == str(len(b"body of /a"))
    assert origin.count("/a") == 1
    # HEAD is answered from the stored GET, without a body
    r3 = request(sl.port, "HEAD", "/a")
    assert r3.status == 200 and xcache(r3) == "HIT"
    assert r3.header("Content-Length") == str(len(b"body of /a")) and r3.body == b""
    assert origin.count("/a") == 1 and origin.count("/a", "HEAD") == 0


def test_age_grows_and_counts_the_upstream_age(origin, cached):
    origin.answers["/age"] = {"headers": {"Cache-Control": "max-age=100", "Age": "30"}}
    sl = cached()
    get(sl.port, "/age")
    time.sleep(1.2)
    r = get(sl.port, "/age")
    assert xcache(r) == "HIT"
    assert 31 <= int(r.header("Age")) <= 33, r.header("Age")


def test_chunked_answer_is_stored_whole(origin, cached):
    body = bytes(range(256)) * 40
    origin.answers["/ch"] = {"headers": {"Cache-Control": "max-age=60"}, "body": body,
                             "chunked": True}
    sl = cached()
    r1 = get(sl.port, "/ch")
    assert r1.body == body
    r2 = get(sl.port, "/ch")
    assert xcache(r2) == "HIT" and r2.body == body
    assert r2.header("Transfer-Encoding") is None
    assert r2.header("Content-Length") == str(len(body))


def test_s_maxage_beats_max_age_and_expires(origin, cached):
    origin.answers["/s"] = {"headers": {"Cache-Control": "max-age=0, s-maxage=60"}}
    origin.answers["/m"] = {"headers": {"Cache-Control": "max-age=0"}}
    origin.answers["/e"] = {"headers": {"Expires": "Thu, 01 Jan 1970 00:00:00 GMT"}}
    sl = cached()
    for p in ("/s", "/m", "/e"):
        get(sl.port, p)
        get(sl.port, p)
    assert origin.count("/s") == 1
    assert origin.count("/m") == 2
    assert origin.count("/e") == 2


def test_expires_in_future_gives_freshness(origin, cached):
    now = time.time()
    origin.answers["/exp"] = {"headers": {
        "Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)),
        "Expires": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 60))}}
    sl = cached()
    get(sl.port, "/exp")
    assert xcache(get(sl.port, "/exp")) == "HIT"


def test_route_ttl_applies_only_when_origin_is_silent(origin, cached):
    origin.answers["/silent"] = {}
    origin.answers["/says"] = {"headers": {"Cache-Control": "max-age=0"}}
    sl = cached({"ttl": "60s"})
    for p in ("/silent", "/says"):
        get(sl.port, p)
        get(sl.port, p)
    assert origin.count("/silent") == 1
    assert origin.count("/says") == 2


def test_route_ttl_override(origin, cached):
    origin.answers["/o"] = {"headers": {"Cache-Control": "max-age=0"}}
    sl = cached({"ttl": "60s", "override": True})
    get(sl.port, "/o")
    assert xcache(get(sl.port, "/o")) == "HIT"


def test_without_ttl_silent_answers_are_not_stored(origin, cached):
    sl = cached()
    get(sl.port, "/nothing")
    r = get(sl.port, "/nothing")
    assert xcache(r) in ("PASS", "MISS")
    assert origin.count("/nothing") == 2


@pytest.mark.parametrize("headers", [
    {"Cache-Control": "no-store, max-age=60"},
    {"Cache-Control": "private, max-age=60"},
    {"Cache-Control": "max-age=60", "Set-Cookie": "a=b"},
    {"Cache-Control": "max-age=60", "Vary": "*"},
])
def test_not_stored(origin, cached, headers):
    origin.answers["/n"] = {"headers": headers}
    sl = cached()
    for _ in range(3):
        assert get(sl.port, "/n").status == 200
    assert origin.count("/n") == 3


def test_set_cookie_stored_when_allowed(origin, cached):
    origin.answers["/ck"] = {"headers": {"Cache-Control": "max-age=60", "Set-Cookie": "a=b"}}
    sl = cached({"allow_set_cookie": True})
    get(sl.port, "/ck")
    r = get(sl.port, "/ck")
    assert xcache(r) == "HIT" and r.header("Set-Cookie") == "a=b"


def test_authorization_not_stored_unless_public_or_s_maxage(origin, cached):
    origin.answers["/auth"] = {"headers": {"Cache-Control": "max-age=60"}}
    origin.answers["/pub"] = {"headers": {"Cache-Control": "public, max-age=60"}}
    origin.answers["/sm"] = {"headers": {"Cache-Control": "s-maxage=60"}}
    sl = cached()
    auth = {"Authorization": "Bearer x"}
    for p in ("/auth", "/pub", "/sm"):
        get(sl.port, p, auth)
        get(sl.port, p, auth)
    assert origin.count("/auth") == 2
    assert origin.count("/pub") == 1
    assert origin.count("/sm") == 1


def test_uncacheable_status_not_stored_but_404_with_freshness_is(origin, cached):
    origin.answers["/e500"] = {"status": 500, "headers": {"Cache-Control": "max-age=60"}}
    origin.answers["/e404"] = {"status": 404, "headers": {"Cache-Control": "max-age=60"}}
    origin.answers["/e302"] = {"status": 302, "headers": {"Location": "/x"}}
    sl = cached({"ttl": "60s"})
    for p in ("/e500", "/e404", "/e302"):
        get(sl.port, p)
        get(sl.port, p)
    assert origin.count("/e500") == 1  # 500 with explicit max-age is storable (RFC 9111 §3)
    assert origin.count("/e404") == 1
    assert origin.count("/e302") == 2  # not heuristically cacheable: the route ttl does not apply


def test_hop_by_hop_and_connection_listed_fields_not_stored(origin, cached):
    origin.answers["/hop"] = {"headers": {"Cache-Control": "max-age=60", "Connection": "x-secret",
                                          "X-Secret": "1", "Keep-Alive": "timeout=5",
                                          "X-Kept": "yes"}}
    sl = cached()
    get(sl.port, "/hop")
    r = get(sl.port, "/hop")
    assert xcache(r) == "HIT"
    assert r.header("X-Secret") is None and r.header("Keep-Alive") is None
    assert r.header("X-Kept") == "yes"


def test_cdn_and_sluice_cache_control_take_precedence(origin, cached):
    origin.answers["/cdn"] = {"headers": {"Cache-Control": "no-store",
                                          "CDN-Cache-Control": "max-age=60"}}
    origin.answers["/sl"] = {"headers": {"Cache-Control": "max-age=60",
                                         "CDN-Cache-Control": "max-age=60",
                                         "Sluice-Cache-Control": "no-store"}}
    sl = cached()
    for p in ("/cdn", "/sl"):
        get(sl.port, p)
        get(sl.port, p)
    assert origin.count("/cdn") == 1
    assert origin.count("/sl") == 2


def test_query_and_host_are_part_of_the_key(origin, cached):
    for p in ("/q?a=1", "/q?a=2"):
        origin.answers[p] = {"headers": {"Cache-Control": "max-age=60"}}
    sl = cached()
    assert get(sl.port, "/q?a=1").body == b"body of /q?a=1"
    assert get(sl.port, "/q?a=2").body == b"body of /q?a=2"
    assert xcache(get(sl.port, "/q?a=1")) == "HIT"
    get(sl.port, "/q?a=1", {"Host": "other.example"})
    assert origin.count("/q?a=1") == 2


def test_vary_keeps_variants_apart(origin, cached):
    origin.answers["/v"] = {"headers": {"Cache-Control": "max-age=60",
                                        "Vary": "Accept-Language"}}
    sl = cached()
    get(sl.port, "/v", {"Accept-Language": "en"})
    get(sl.port, "/v", {"Accept-Language": "fr"})
    assert xcache(get(sl.port, "/v", {"Accept-Language": "en"})) == "HIT"
    assert xcache(get(sl.port, "/v", {"Accept-Language": "fr"})) == "HIT"
    get(sl.port, "/v")  # absent is its own variant
    assert origin.count("/v") == 3


def test_request_no_cache_revalidates_and_max_age_zero(origin, cached):
    origin.answers["/rq"] = {"headers": {"Cache-Control": "max-age=60", "ETag": '"v1"'}}
    sl = cached()
    get(sl.port, "/rq")
    r = get(sl.port, "/rq", {"Cache-Control": "no-cache"})
    assert r.status == 200 and xcache(r) == "REVALIDATED"
    assert origin.last("/rq").get("if-none-match") == '"v1"'
    assert origin.count("/rq") == 2


def test_only_if_cached_gives_504_on_a_miss(origin, cached):
    sl = cached()
    r = get(sl.port, "/never", {"Cache-Control": "only-if-cached"})
    assert r.status == 504
    assert origin.count("/never") == 0


# ---- conditional requests and revalidation ------------------------------------------------

def test_client_conditionals_answered_304_from_cache(origin, cached):
    lm = "Tue, 01 Sep 2026 10:00:00 GMT"
    origin.answers["/c"] = {"headers": {"Cache-Control": "max-age=60", "ETag": '"abc"',
                                        "Last-Modified": lm}}
    sl = cached()
    get(sl.port, "/c")
    r = get(sl.port, "/c", {"If-None-Match": '"abc"'})
    assert r.status == 304 and r.header("ETag") == '"abc"' and r.body == b""
    r = get(sl.port, "/c", {"If-None-Match": 'W/"abc", "zzz"'})
    assert r.status == 304
    r = get(sl.port, "/c", {"If-None-Match": '"other"'})
    assert r.status == 200 and r.body == b"body of /c"
    r = get(sl.port, "/c", {"If-Modified-Since": lm})
    assert r.status == 304
    r = get(sl.port, "/c", {"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"})
    assert r.status == 200
    assert origin.count("/c") == 1


def test_client_conditional_on_a_miss_is_not_passed_to_the_origin(origin, cached):
    origin.answers["/cm"] = {"headers": {"Cache-Control": "max-age=60", "ETag": '"e1"'}}
    sl = cached()
    r = get(sl.port, "/cm", {"If-None-Match": '"e1"'})
    # the fill asked for the whole answer, so the cache can store it
    assert origin.last("/cm").get("if-none-match") is None
    assert r.status == 200
    assert xcache(get(sl.port, "/cm")) == "HIT"


def test_stale_entry_revalidated_with_304_refreshes_it(origin, cached):
    origin.answers["/rv"] = {"headers": {"Cache-Control": "max-age=1", "ETag": '"v1"',
                                         "X-Version": "1"}}
    sl = cached()
    get(sl.port, "/rv")
    time.sleep(1.3)
    origin.answers["/rv"]["headers"]["X-Version"] = "2"  # sent with the 304
    r = get(sl.port, "/rv")
    assert r.status == 200 and xcache(r) == "REVALIDATED", r
    assert r.body == b"body of /rv"
    assert r.header("X-Version") == "2"  # the 304's fields replace the stored ones
    assert origin.last("/rv").get("if-none-match") == '"v1"'
    r = get(sl.port, "/rv")
    assert xcache(r) == "HIT" and r.header("X-Version") == "2"
    assert origin.count("/rv") == 2


def test_stale_entry_replaced_by_new_answer(origin, cached):
    origin.answers["/nv"] = {"headers": {"Cache-Control": "max-age=1", "ETag": '"v1"'},
                             "body": b"one"}
    sl = cached()
    get(sl.port, "/nv")
    time.sleep(1.3)
    origin.answers["/nv"] = {"headers": {"Cache-Control": "max-age=60", "ETag": '"v2"'},
                             "body": b"two"}
    r = get(sl.port, "/nv")
    assert r.body == b"two" and xcache(r) == "MISS"
    r = get(sl.port, "/nv")
    assert r.body == b"two" and xcache(r) == "HIT"


# ---- stale serving -----------------------------------------------------------------------

def test_stale_while_revalidate_serves_stale_then_refreshes_once(origin, cached):
    origin.answers["/swr"] = {"headers": {"Cache-Control": "max-age=1, stale-while-revalidate=30"},
                              "body": b"old"}
    sl = cached()
    get(sl.port, "/swr")
    time.sleep(1.3)
    origin.answers["/swr"] = {"headers": {"Cache-Control": "max-age=60"}, "body": b"new",
                              "delay": 0.5}
    with HttpConn(sl.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/swr")
        r2 = c.request("GET", "/swr")  # the same connection is not held by the refresh
        took = time.monotonic() - t0
    assert r.body == b"old" and xcache(r) == "STALE"
    assert r2.body == b"old" and xcache(r2) == "STALE"
    assert took < 0.4 * SLOW, took  # neither waited for the 0.5 s refresh
    wait = time.monotonic() + 5 * SLOW
    while origin.count("/swr") < 2 and time.monotonic() < wait:
        time.sleep(0.02)
    time.sleep(0.7)
    r = get(sl.port, "/swr")
    assert r.body == b"new" and xcache(r) == "HIT"
    assert origin.count("/swr") == 2  # refreshed once
    assert sl.metric("cache_background_refreshes_total", result="stored") == 1
    # the refresh is not a client request
    assert sl.metric("cache_requests_total", result="stale") == 2


def test_route_stale_if_error_serves_stale_when_origin_fails(origin, cached):
    origin.answers["/sie"] = {"headers": {"Cache-Control": "max-age=1"}, "body": b"good"}
    sl = cached({"stale_if_error": "60s"})
    get(sl.port, "/sie")
    time.sleep(1.3)
    origin.answers["/sie"] = {"status": 503, "body": b"down"}
    r = get(sl.port, "/sie")
    assert r.status == 200 and r.body == b"good" and xcache(r) == "STALE"


def test_stale_if_error_when_origin_unreachable(origin, start_sluice):
    origin.answers["/u"] = {"headers": {"Cache-Control": "max-age=1, stale-if-error=60"},
                            "body": b"kept"}
    # no pooled connections: once the origin stops listening it is unreachable
    cfg = sluice_config(services={"s": {"keepalive": 0,
                                        "servers": [{"address": origin.address}]}},
                        routes=[{"match": {"path_prefix": "/"}, "service": "s", "cache": {}}])
    sl = start_sluice(cfg)
    assert get(sl.port, "/u").body == b"kept"
    time.sleep(1.3)
    origin.stop()
    r = get(sl.port, "/u")
    assert r.status == 200 and r.body == b"kept" and xcache(r) == "STALE"
    origin.server = Server(("127.0.0.1", free_port()), http.server.BaseHTTPRequestHandler)
    origin.thread = threading.Thread(target=origin.server.serve_forever, daemon=True)
    origin.thread.start()  # for the fixture's stop


def test_stale_without_stale_if_error_is_not_served_on_error(origin, cached):
    origin.answers["/nsie"] = {"headers": {"Cache-Control": "max-age=1"}, "body": b"good"}
    sl = cached()
    get(sl.port, "/nsie")
    time.sleep(1.3)
    origin.answers["/nsie"] = {"status": 503, "body": b"down"}
    r = get(sl.port, "/nsie")
    assert r.status == 503


# ---- coalescing --------------------------------------------------------------------------

def concurrent_gets(port, path, n, headers=None):
    """n requests on n connections, all sent before any answer is read."""
    socks = []
    extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    req = ("GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n" % (path, extra)).encode()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(req)
        socks.append(s)
    out = []
    for s in socks:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        out.append((status, hdrs, body))
    return out


def test_200_concurrent_misses_make_one_upstream_request(origin, cached):
    delay = 0.3 if not SAN else 1.5
    body = b"x" * 5000
    origin.answers["/co"] = {"headers": {"Cache-Control": "max-age=60"}, "body": body,
                             "delay": delay}
    sl = cached()
    res = concurrent_gets(sl.port, "/co", 200)
    assert origin.count("/co") == 1
    assert all(st == 200 and b == body for st, _, b in res)
    kinds = {h.get("x-cache") for _, h, _ in res}
    assert kinds <= {"MISS", "COALESCED", "HIT"}, kinds
    assert sum(1 for _, h, _ in res if h.get("x-cache") == "MISS") == 1
    m = sl.metrics()
    assert m.value("cache_requests_total", result="miss") == 1
    assert ((m.value("cache_requests_total", result="coalesced") or 0) +
            (m.value("cache_requests_total", result="hit") or 0)) == 199


def test_unstorable_answer_releases_waiters_and_marks_hit_for_pass(origin, cached):
    delay = 0.3 if not SAN else 1.5
    origin.answers["/np"] = {"headers": {"Cache-Control": "no-store"}, "delay": delay}
    sl = cached()
    t0 = time.monotonic()
    res = concurrent_gets(sl.port, "/np", 20)
    took = time.monotonic() - t0
    assert all(st == 200 for st, _, _ in res)
    # waiters went upstream at once after the leader's answer, not one after another
    assert took < (2 * delay + 1.0) * SLOW, took
    assert origin.count("/np") == 20
    # hit-for-pass: the next ones are not coalesced at all
    before = origin.count("/np")
    res = concurrent_gets(sl.port, "/np", 5)
    assert origin.count("/np") == before + 5
    assert {h.get("x-cache") for _, h, _ in res} == {"PASS"}


def test_coalescing_off_sends_every_miss(origin, cached):
    delay = 0.3 if not SAN else 1.0
    origin.answers["/off"] = {"headers": {"Cache-Control": "max-age=60"}, "delay": delay}
    sl = cached(cache={"coalesce": False})
    res = concurrent_gets(sl.port, "/off", 10)
    assert all(st == 200 for st, _, _ in res)
    assert origin.count("/off") == 10


def test_waiters_time_out_and_go_upstream(origin, cached):
    origin.answers["/slow"] = {"headers": {"Cache-Control": "max-age=60"}, "delay": 2.0}
    sl = cached(cache={"lock_timeout": "300ms"})
    res = concurrent_gets(sl.port, "/slow", 5)
    assert all(st == 200 for st, _, _ in res)
    assert origin.count("/slow") == 5
    assert sl.metric("cache_lock_timeouts_total") == 4


def test_client_of_the_leader_leaving_hands_the_fill_on(origin, cached):
    delay = 0.5 if not SAN else 1.5
    origin.answers["/gone"] = {"headers": {"Cache-Control": "max-age=60"}, "delay": delay}
    sl = cached()
    leader = socket.create_connection(("127.0.0.1", sl.port), timeout=10)
    # close with RST: a client that is gone, not one that only finished sending
    leader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    leader.sendall(b"GET /gone HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1 * SLOW)
    results = []
    t = threading.Thread(target=lambda: results.extend(concurrent_gets(sl.port, "/gone", 5)))
    t.start()
    time.sleep(0.1 * SLOW)
    leader.close()  # the leader's client goes away; a waiter must take over
    t.join(30)
    assert len(results) == 5 and all(st == 200 for st, _, _ in results)
    assert origin.count("/gone") == 2


# ---- invalidation and purge ---------------------------------------------------------------

def test_unsafe_methods_invalidate(origin, cached):
    origin.answers["/post"] = {"headers": {"Cache-Control": "max-age=60"}}
    origin.answers["/other"] = {"headers": {"Cache-Control": "max-age=60"}}
    sl = cached()
    get(sl.port, "/post")
    get(sl.port, "/other")
    assert xcache(get(sl.port, "/post")) == "HIT"
    origin.answers["/post"]["status"] = 200
    r = request(sl.port, "POST", "/post", body=b"x")
    assert r.status == 200
    assert xcache(get(sl.port, "/post")) == "MISS"
    # Location of a successful unsafe request is invalidated too
    origin.answers["/make"] = {"status": 201, "headers": {"Location": "/other"}}
    request(sl.port, "PUT", "/make", body=b"y")
    assert xcache(get(sl.port, "/other")) == "MISS"


def test_failed_unsafe_method_keeps_entry_after_it(origin, cached):
    origin.answers["/keep"] = {"headers": {"Cache-Control": "max-age=60"}}
    sl = cached()
    get(sl.port, "/keep")
    origin.answers["/keep"] = {"status": 500, "headers": {"Cache-Control": "max-age=60"}}
    request(sl.port, "DELETE", "/keep")
    # purged before the request went upstream (conservative), so the next GET is a miss
    assert origin.count("/keep", "DELETE") == 1


def purge(sl, body):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return request(sl.admin_port, "POST", "/api/cache/purge",
                   headers={"Content-Type": "application/json"}, body=data)


def test_purge_by_url_prefix_and_tag(origin, cached):
    for p, tag in (("/p/a", "blog post-1"), ("/p/b", "blog"), ("/q/c", "other"),
                   ("/p/a?x=1", "")):
        origin.answers[p] = {"headers": {"Cache-Control": "max-age=60", "Surrogate-Key": tag}}
    sl = cached()
    for p in ("/p/a", "/p/b", "/q/c", "/p/a?x=1"):
        get(sl.port, p)
        assert xcache(get(sl.port, p)) == "HIT"
    r = purge(sl, {"url": "/p/a"})
    assert r.status == 200 and r.json() == {"purged": 1}
    assert xcache(get(sl.port, "/p/a")) == "MISS"
    assert xcache(get(sl.port, "/p/a?x=1")) == "HIT"
    r = purge(sl, {"tag": "blog"})
    assert r.json() == {"purged": 2}
    assert xcache(get(sl.port, "/p/b")) == "MISS"
    r = purge(sl, {"prefix": "/p/"})
    assert r.json()["purged"] == 2  # /p/b and /p/a?x=1 (/p/a went with the tag)
    assert xcache(get(sl.port, "/q/c")) == "HIT"
    r = purge(sl, {"url": "http://t/q/c"})
    assert r.json() == {"purged": 0}  # the requests here carry Host: 127.0.0.1
    r = purge(sl, {"url": "http://127.0.0.1/q/c"})
    assert r.json() == {"purged": 1}


@pytest.mark.parametrize("body,word", [
    (b"not json", "JSON"),
    (b"[]", "object"),
    (b'{"url": 5}', "url"),
    (b'{"url": "/a", "tag": "x"}', "one of"),
    (b"{}", "one of"),
    (b'{"url": "a"}', "/"),
    (b'{"prefix": ""}', "prefix"),
    (b'{"bogus": "x"}', "bogus"),
])
def test_bad_purge_bodies_get_400(origin, cached, body, word):
    sl = cached()
    r = purge(sl, body)
    assert r.status == 400
    assert word in r.json()["error"], r.json()


# ---- bounds and metrics ------------------------------------------------------------------

def test_objects_over_max_object_stream_through_uncached(origin, cached):
    big = b"z" * 300000
    origin.answers["/big"] = {"headers": {"Cache-Control": "max-age=60"}, "body": big}
    origin.answers["/bigc"] = {"headers": {"Cache-Control": "max-age=60"}, "body": big,
                               "chunked": True}
    sl = cached(cache={"max_object": "100k"})
    for p in ("/big", "/bigc"):
        assert get(sl.port, p).body == big
        assert get(sl.port, p).body == big
        assert origin.count(p) == 2
    assert sl.metric("cache_store_refused_total", reason="too_big") >= 2


def test_memory_stays_within_budget_when_filling_twice_over(origin, cached):
    """16 MiB of answers through an 8 MiB cache: the charged bytes never pass the budget,
    and the process grows by at most the budget plus the documented overhead (the hash
    tables, a few pooled I/O buffers and allocator slack: 6 MiB allowed)."""
    body = b"m" * 40000
    n = 420  # 16.8 MB
    for i in range(n):
        origin.answers["/fill%d" % i] = {"headers": {"Cache-Control": "max-age=600"},
                                         "body": body}
    sl = cached(cache={"memory": "8m"})
    get(sl.port, "/warm")  # connections, buffers and threads exist before the baseline
    rss0 = sl.rss_kb()
    with HttpConn(sl.port) as c:
        for i in range(n):
            assert c.request("GET", "/fill%d" % i).status == 200
    m = sl.metrics()
    assert m.value("cache_bytes") <= 8 * 1024 * 1024
    assert m.value("cache_evictions_total") > 0
    assert m.value("cache_budget_bytes") == 8 * 1024 * 1024
    grew = sl.rss_kb() - rss0
    if not SAN:  # ASan's quarantine holds freed memory on purpose
        assert grew <= 8 * 1024 + 6 * 1024, grew
    # the most recent ones are still there
    assert xcache(get(sl.port, "/fill%d" % (n - 1))) == "HIT"


def test_metrics_and_access_log_name_the_result(origin, start_sluice, tmp_path):
    origin.answers["/ml"] = {"headers": {"Cache-Control": "max-age=60"}}
    log = tmp_path / "access.log"
    cfg = cache_config(origin)
    cfg["access_log"] = str(log)
    sl = start_sluice(cfg)
    get(sl.port, "/ml")
    get(sl.port, "/ml")
    get(sl.port, "/ml")
    m = sl.metrics()
    assert m.value("cache_requests_total", result="miss") == 1
    assert m.value("cache_requests_total", result="hit") == 2
    assert m.value("cache_hits_total") == 2
    assert m.value("cache_misses_total") == 1
    assert abs(m.value("cache_hit_ratio") - 2 / 3) < 1e-6
    assert m.value("cache_objects") == 1
    sl.stop()
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    caches = [x.get("cache") for x in lines if x.get("path") == "/ml"]
    assert sorted(caches) == ["hit", "hit", "miss"]  # each worker's lines come in a batch


def test_routes_without_cache_are_untouched(origin, start_sluice):
    origin.answers["/plain"] = {"headers": {"Cache-Control": "max-age=60"}}
    cfg = cache_config(origin, extra_routes=[{"match": {"path_prefix": "/plain"},
                                              "service": "s"}])
    sl = start_sluice(cfg)
    get(sl.port, "/plain")
    r = get(sl.port, "/plain")
    assert r.header("X-Cache") is None
    assert origin.count("/plain") == 2


def test_config_errors(start_sluice, origin, tmp_path):
    import subprocess
    from conftest import SLUICE_BIN, to_yaml
    bad = [
        ({"cache": {"memory": "1k"}}, "memory"),
        ({"cache": {"redis": True}}, "redis"),
        ({"cache": {"coalesce": "maybe"}}, "true or false"),
        ({"cache": {"bogus": 1}}, "bogus"),
    ]
    for top, word in bad:
        cfg = cache_config(origin)
        cfg.update(top)
        cfg["listen"] = ["127.0.0.1:%d" % free_port()]
        p = tmp_path / "bad.yaml"
        p.write_text(to_yaml(cfg) + "\n")
        r = subprocess.run([str(SLUICE_BIN), "-t", "-c", str(p)], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode != 0, top
        assert word in (r.stderr + r.stdout), (top, r.stderr)
    cfg = cache_config(origin, route_cache={"ttl": "forever"})
    p = tmp_path / "bad2.yaml"
    p.write_text(to_yaml(cfg) + "\n")
    r = subprocess.run([str(SLUICE_BIN), "-t", "-c", str(p)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0 and "ttl" in r.stderr


# ---- deduplication without caching ---------------------------------------------------------

def dedupe_config(origin):
    return sluice_config(services={"s": {"keepalive": 64,
                                         "servers": [{"address": origin.address}]}},
                         routes=[{"match": {"path_prefix": "/"}, "service": "s",
                                  "dedupe": True}])


def test_dedupe_shares_one_unstorable_answer(origin, start_sluice):
    delay = 0.3 if not SAN else 1.5
    origin.answers["/dd"] = {"headers": {"Cache-Control": "private, no-store"},
                             "body": b"personal", "delay": delay}
    sl = start_sluice(dedupe_config(origin))
    res = concurrent_gets(sl.port, "/dd", 50, {"Authorization": "Bearer A"})
    assert all(st == 200 and b == b"personal" for st, _, b in res)
    assert origin.count("/dd") == 1
    assert sum(1 for _, h, _ in res if h.get("x-cache") == "COALESCED") == 49
    # nothing was stored: the next request goes upstream again
    r = get(sl.port, "/dd", {"Authorization": "Bearer A"})
    assert r.status == 200 and origin.count("/dd") == 2


def test_dedupe_keeps_credentials_apart(origin, start_sluice):
    delay = 0.4 if not SAN else 1.5
    origin.answers["/who"] = {"headers": {"Cache-Control": "private"}, "delay": delay}
    sl = start_sluice(dedupe_config(origin))
    out = {}

    def run(name, hdrs):
        out[name] = concurrent_gets(sl.port, "/who", 10, hdrs)

    ts = [threading.Thread(target=run, args=("a", {"Authorization": "Bearer A"})),
          threading.Thread(target=run, args=("b", {"Authorization": "Bearer B"})),
          threading.Thread(target=run, args=("c", {"Cookie": "s=1"})),
          threading.Thread(target=run, args=("n", {}))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert all(len(v) == 10 and all(st == 200 for st, _, _ in v) for v in out.values())
    assert origin.count("/who") == 4  # one per distinct credential set
    auths = [h.get("authorization") for m, p, h in origin.requests if p == "/who"]
    assert sorted(a or "" for a in auths) == ["", "", "Bearer A", "Bearer B"]


def test_dedupe_never_shares_set_cookie(origin, start_sluice):
    delay = 0.3 if not SAN else 1.5
    origin.answers["/login"] = {"headers": {"Set-Cookie": "session=new"}, "delay": delay}
    sl = start_sluice(dedupe_config(origin))
    res = concurrent_gets(sl.port, "/login", 10)
    assert all(st == 200 for st, _, _ in res)
    assert origin.count("/login") == 10


def test_dedupe_with_cache_is_a_config_error(origin, tmp_path):
    import subprocess
    from conftest import SLUICE_BIN, to_yaml
    cfg = cache_config(origin)
    cfg["routes"][0]["dedupe"] = True
    p = tmp_path / "dd.yaml"
    p.write_text(to_yaml(cfg) + "\n")
    r = subprocess.run([str(SLUICE_BIN), "-t", "-c", str(p)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0 and "dedupe" in r.stderr


# ---- the L2 tier in Redis ------------------------------------------------------------------

import shutil  # noqa: E402

from conftest import Proc, wait_listening  # noqa: E402

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
def redis(procs, tmp_path):
    """A throwaway redis-server on loopback: (Proc, port)."""
    port = free_port()
    p = procs.add(Proc([REDIS, "--port", port, "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", tmp_path],
                       tmp_path / ("redis-%d.log" % port)))
    assert wait_listening(p, port, 10 * SLOW), p.log()
    return p, port


def resp(port, *args):
    """One Redis command in RESP, its reply parsed (integers, bulk strings, arrays)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    s.sendall(out)
    f = s.makefile("rb")

    def read():
        line = f.readline().rstrip(b"\r\n")
        t, rest = line[:1], line[1:]
        if t in (b"+", b"-"):
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data
        if t == b"*":
            return [read() for _ in range(int(rest))]
        raise AssertionError(line)

    r = read()
    s.close()
    return r


def l2_config(origin, redis_port, prefix, route_cache=None):
    cfg = cache_config(origin, route_cache, {"redis": True})
    cfg["redis"] = {"address": "127.0.0.1:%d" % redis_port, "timeout": "100ms",
                    "key_prefix": prefix}
    return cfg


def wait_l2(sl):
    deadline = time.time() + 10 * SLOW
    while time.time() < deadline:
        try:
            if sl.metrics().value("cache_l2_connected") == 1:
                time.sleep(0.2)  # the workers' connections come up at the same time
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError("no L2 connection:\n" + sl.log())


def test_l2_second_instance_serves_what_the_first_filled(origin, start_sluice, redis):
    _, rport = redis
    origin.answers["/l2"] = {"headers": {"Cache-Control": "max-age=60", "Surrogate-Key": "k1"},
                             "body": b"shared body"}
    a = start_sluice(l2_config(origin, rport, "l2a:"))
    b = start_sluice(l2_config(origin, rport, "l2a:"))
    wait_l2(a)
    wait_l2(b)
    r = get(a.port, "/l2")
    assert r.status == 200 and xcache(r) == "MISS"
    # the fill reaches Redis, with the object's remaining lifetime as its TTL
    key = "l2a:c:/l2 127.0.0.1"
    wait = time.time() + 5 * SLOW
    while resp(rport, "EXISTS", key) != 1 and time.time() < wait:
        time.sleep(0.02)
    ttl = resp(rport, "PTTL", key)
    assert 50000 < ttl <= 60000, ttl
    r = get(b.port, "/l2")
    assert r.status == 200 and r.body == b"shared body" and xcache(r) == "HIT", r
    assert origin.count("/l2") == 1
    assert b.metric("cache_l2_requests_total", result="hit") == 1
    # now in B's memory too
    r = get(b.port, "/l2")
    assert xcache(r) == "HIT"
    assert b.metric("cache_l2_requests_total", result="hit") == 1
    assert origin.count("/l2") == 1


def test_l2_respects_vary(origin, start_sluice, redis):
    _, rport = redis
    origin.answers["/lv"] = {"headers": {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}}
    a = start_sluice(l2_config(origin, rport, "l2v:"))
    b = start_sluice(l2_config(origin, rport, "l2v:"))
    wait_l2(a)
    wait_l2(b)
    get(a.port, "/lv", {"Accept-Language": "en"})
    time.sleep(0.2)
    r = get(b.port, "/lv", {"Accept-Language": "fr"})
    assert xcache(r) == "MISS"  # another variant: not served from Redis
    assert origin.count("/lv") == 2
    assert b.metric("cache_l2_requests_total", result="variant") == 1


def test_l2_purge_reaches_the_other_instances(origin, start_sluice, redis):
    _, rport = redis
    for p in ("/pa", "/pb"):
        origin.answers[p] = {"headers": {"Cache-Control": "max-age=60", "Surrogate-Key": "grp"}}
    a = start_sluice(l2_config(origin, rport, "l2p:"))
    b = start_sluice(l2_config(origin, rport, "l2p:"))
    wait_l2(a)
    wait_l2(b)
    for p in ("/pa", "/pb"):
        get(a.port, p)
        time.sleep(0.1)
        assert xcache(get(b.port, p)) == "HIT"  # from Redis, now in B's memory
    r = purge(a, {"url": "/pa"})
    assert r.status == 200, r
    body = r.json()
    assert body["purged"] == 1 and body["redis_purged"] == 1, body
    wait = time.time() + 5 * SLOW
    while (b.metric("cache_l2_purge_messages_total") or 0) < 1 and time.time() < wait:
        time.sleep(0.02)
    r = get(b.port, "/pa")
    assert xcache(r) == "MISS"  # gone from B's memory and from Redis
    assert xcache(get(b.port, "/pb")) == "HIT"
    r = purge(b, {"tag": "grp"})
    assert r.json()["redis_purged"] == 2, r.json()
    while (a.metric("cache_l2_purge_messages_total") or 0) < 1 and time.time() < wait + 5:
        time.sleep(0.02)
    assert xcache(get(a.port, "/pb")) == "MISS"
    assert resp(rport, "EXISTS", "l2p:c:/pb 127.0.0.1") in (0, 1)  # refilled by that MISS


def test_l2_down_means_origin_not_errors(origin, start_sluice, redis):
    rp, rport = redis
    origin.answers["/down"] = {"headers": {"Cache-Control": "max-age=60"}}
    a = start_sluice(l2_config(origin, rport, "l2d:"))
    wait_l2(a)
    rp.stop()
    time.sleep(0.3)
    t0 = time.monotonic()
    for i in range(20):
        r = get(a.port, "/down?i=%d" % i)
        assert r.status == 200 and xcache(r) == "MISS"
    took = time.monotonic() - t0
    assert took < 20 * 0.1 * SLOW + 2, took  # never more than the deadline per request
    assert (a.metric("cache_l2_requests_total", result="error") or 0) >= 1
    r = purge(a, {"url": "/down"})
    assert r.status == 200 and "redis_error" in r.json(), r.json()


def test_l2_unsafe_method_invalidates_in_redis(origin, start_sluice, redis):
    _, rport = redis
    origin.answers["/inv"] = {"headers": {"Cache-Control": "max-age=60"}}
    a = start_sluice(l2_config(origin, rport, "l2i:"))
    b = start_sluice(l2_config(origin, rport, "l2i:"))
    wait_l2(a)
    wait_l2(b)
    get(a.port, "/inv")
    time.sleep(0.2)
    assert xcache(get(b.port, "/inv")) == "HIT"
    request(a.port, "POST", "/inv", body=b"new")
    wait = time.time() + 5 * SLOW
    while resp(rport, "EXISTS", "l2i:c:/inv 127.0.0.1") != 0 and time.time() < wait:
        time.sleep(0.02)
    assert resp(rport, "EXISTS", "l2i:c:/inv 127.0.0.1") == 0
    while (b.metric("cache_l2_purge_messages_total") or 0) < 1 and time.time() < wait:
        time.sleep(0.02)
    assert xcache(get(b.port, "/inv")) == "MISS"
