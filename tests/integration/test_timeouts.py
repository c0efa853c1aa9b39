"""Timeouts and upstream failures: read timeout, unreachable servers, slow request heads,
idle keep-alive connections, and upstreams that close kept-alive connections."""

import socket
import time

import pytest

from conftest import (SLOW, ConnectionClosed, HttpConn, OriginReader, build_request,
                      free_port, one_service_config, request, simple_response, sluice_config)

TICK = 0.1  # sluice's timer precision


def assert_json_error(r, status):
    assert r.status == status, r
    assert r.header("Content-Type", "").startswith("application/json"), r
    j = r.json()
    assert j["status"] == status and isinstance(j["error"], str) and j["error"], j


def test_upstream_read_timeout_is_504(start_origin, start_sluice):
    o = start_origin()
    sl = start_sluice(one_service_config(o.address, service={
        "timeouts": {"connect": "1s", "send": "1s", "read": "300ms"}}))
    with HttpConn(sl.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/sleep/2000")
        elapsed = time.monotonic() - t0
        assert_json_error(r, 504)
        assert 0.25 <= elapsed <= 0.3 + 2 * TICK + 0.5 * SLOW, elapsed
        # the client connection survives a gateway error answer
        r2 = c.request("GET", "/echo/after-504")
        assert r2.status == 200
    # a response within the timeout is fine
    r = request(sl.port, "GET", "/sleep/100")
    assert r.status == 200


def test_read_timeout_not_charged_while_client_is_slow(start_origin, start_sluice):
    """timeouts.read bounds the wait for the server ("between two successful reads of
    the response from a server"). While sluice has stopped reading the upstream because
    the client is slow (backpressure), the server is not late: a client that stalls
    for 1 s, longer than the 300 ms read timeout, must still get the whole body."""
    total = 32 * 1024 * 1024  # more than the loopback socket buffers hold
    o = start_origin()
    sl = start_sluice(one_service_config(o.address, service={"timeouts": {"read": "300ms"}}))
    with HttpConn(sl.port, timeout=20) as c:
        c.send(build_request("GET", "/bytes/%d" % total))
        head = c.read_head()
        assert head.status == 200
        time.sleep(1.0)  # the client stalls
        got = len(c.buf)
        c.buf = b""
        while got < total:
            d = c.sock.recv(1 << 20)
            assert d, ("response cut after %d of %d bytes; sluice log:\n%s"
                       % (got, total, sl.log()))
            got += len(d)


def test_unreachable_server_is_502(start_sluice):
    dead = free_port()  # nothing listens there
    sl = start_sluice(one_service_config("127.0.0.1:%d" % dead))
    t0 = time.monotonic()
    r = request(sl.port, "GET", "/x")
    assert_json_error(r, 502)
    assert time.monotonic() - t0 < 2 * SLOW


def test_header_timeout_trickling_client(start_sluice):
    sl = start_sluice(one_service_config("127.0.0.1:%d" % free_port(),
                                         limits={"header_timeout": "500ms"}))
    with HttpConn(sl.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /slow HTTP/1.1\r\nHost: example.test\r\n")
        resp = None
        closed_at = None
        c.sock.settimeout(0.2)
        deadline = t0 + 5
        while time.monotonic() < deadline:
            try:
                c.send(b"X")  # one byte every 200 ms, never finishing the head
            except OSError:
                closed_at = time.monotonic()
                break
            try:
                d = c.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed_at = time.monotonic()
                break
            if not d:
                closed_at = time.monotonic()
                break
            c.buf += d
            if b"\r\n\r\n" in c.buf and resp is None:
                resp = c.buf
        if closed_at is None and resp is not None:
            closed_at = time.monotonic()
        assert closed_at is not None, "a trickling client was never cut off"
        elapsed = closed_at - t0
        assert 0.4 <= elapsed <= 0.5 + 0.5 * SLOW + TICK, elapsed
        if c.buf:
            assert c.buf.startswith(b"HTTP/1.1 408 "), c.buf


def test_header_timeout_answers_408(start_sluice):
    sl = start_sluice(one_service_config("127.0.0.1:%d" % free_port(),
                                         limits={"header_timeout": "500ms"}))
    with HttpConn(sl.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /slow HTTP/1.1\r\nHost: exa")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert_json_error(r, 408)
        assert 0.4 <= elapsed <= 0.5 + 0.5 * SLOW + TICK, elapsed
        assert c.wait_closed(2 * SLOW)


def test_idle_keepalive_connection_closed(gateway_idle):
    sl = gateway_idle
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/echo/1")
        assert r.status == 200
        t0 = time.monotonic()
        assert c.wait_closed(5), "idle keep-alive connection never closed"
        elapsed = time.monotonic() - t0
        assert 0.4 <= elapsed <= 0.5 + 0.5 * SLOW + TICK, elapsed
        assert c.extra == b"", "bytes on an idle connection: %r" % c.extra


def test_idle_connection_without_request_closed(gateway_idle):
    with HttpConn(gateway_idle.port) as c:
        t0 = time.monotonic()
        assert c.wait_closed(5)
        elapsed = time.monotonic() - t0
        assert elapsed <= 0.5 + 0.5 * SLOW + TICK, elapsed


def test_active_connection_not_cut_by_idle_timeout(gateway_idle):
    """Requests keep a connection alive: several requests spread over more than
    idle_timeout, each sooner than idle_timeout after the previous one."""
    with HttpConn(gateway_idle.port) as c:
        for i in range(5):
            r = c.request("GET", "/echo/%d" % i)
            assert r.status == 200
            time.sleep(0.25)
        # and a response that takes longer than idle_timeout is not cut either
        r = c.request("GET", "/sleep/900")
        assert r.status == 200


@pytest.fixture
def gateway_idle(start_origin, start_sluice):
    o = start_origin()
    return start_sluice(one_service_config(o.address, limits={"idle_timeout": "500ms"}))


# ---- upstreams that close kept-alive connections --------------------------------------

def answer_once_then_close(sock, origin):
    """Answers one request (keep-alive framing, no Connection: close), then closes."""
    rd = OriginReader(sock, origin)
    req = rd.read_request()
    if req is None:
        return
    sock.sendall(simple_response(200, "served %s" % req["target"]))
    sock.shutdown(socket.SHUT_RDWR)


def close_idle_after_100ms(sock, origin):
    """Answers requests; closes a connection idle for 100 ms."""
    rd = OriginReader(sock, origin)
    while True:
        sock.settimeout(0.1)
        try:
            while b"\r\n\r\n" not in rd.buf:
                rd._fill()
        except (socket.timeout, ConnectionClosed):
            return
        sock.settimeout(5)
        req = rd.read_request()
        if req is None:
            return
        sock.sendall(simple_response(200, "served %s" % req["target"]))


def test_upstream_closes_after_each_response(raw_origin, start_sluice):
    o = raw_origin(answer_once_then_close)
    sl = start_sluice(one_service_config(o.address))
    with HttpConn(sl.port) as c:
        for i in range(20):
            r = c.request("GET", "/r%d" % i)
            assert r.status == 200, "request %d: %r" % (i, r)
            assert r.body == b"served /r%d" % i
    # right away, and after the close had time to arrive
    for pause in (0, 0.2):
        time.sleep(pause)
        r = request(sl.port, "GET", "/p")
        assert r.status == 200, r


def test_upstream_closes_idle_connections(raw_origin, start_sluice):
    o = raw_origin(close_idle_after_100ms)
    sl = start_sluice(one_service_config(o.address))
    with HttpConn(sl.port) as c:
        for i in range(6):
            r = c.request("GET", "/i%d" % i)
            assert r.status == 200, "request %d: %r" % (i, r)
            assert r.body == b"served /i%d" % i
            time.sleep(0.1 + 0.05 * (i % 3))  # around the origin's idle close


def silent_close_on_reuse(sock, origin):
    """Answers the first request on a connection; closes at the second without an
    answer (a server that dropped the connection as the request arrived)."""
    rd = OriginReader(sock, origin)
    req = rd.read_request()
    if req is None:
        return
    sock.sendall(simple_response(200, "first %s" % req["target"]))
    if rd.read_head() is not None:
        sock.shutdown(socket.SHUT_RDWR)


def test_get_retried_when_reused_connection_closes_unanswered(raw_origin, start_sluice):
    o = raw_origin(silent_close_on_reuse)
    sl = start_sluice(one_service_config(o.address, workers=1))
    with HttpConn(sl.port) as c:
        r = c.request("GET", "/a")
        assert r.status == 200 and r.body == b"first /a"
        r = c.request("GET", "/b")
        assert r.status == 200, r
        assert r.body == b"first /b", r


def stall_mid_body(sock, origin):
    """Sends the head and 100 of 1000 announced body bytes, then stalls."""
    rd = OriginReader(sock, origin)
    if rd.read_request() is None:
        return
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    origin.stopping.wait(5)


def test_upstream_stall_mid_body_truncates_response(raw_origin, start_sluice):
    """Once the head went out a 504 is impossible: the client must see the response cut
    (connection closed before the announced length), never a complete-looking one."""
    o = raw_origin(stall_mid_body)
    sl = start_sluice(one_service_config(o.address, service={"timeouts": {"read": "300ms"}}))
    with HttpConn(sl.port) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/stall"))
        head = c.read_head()
        assert head.status == 200 and head.header("Content-Length") == "1000"
        assert c.wait_closed(3 * SLOW), "stalled response never cut"
        elapsed = time.monotonic() - t0
        assert len(c.extra) == 100, "expected the 100 bytes sent, got %d" % len(c.extra)
        assert elapsed <= 0.3 + 2 * TICK + 0.5 * SLOW, elapsed


# ---- retries and passive health (services.NAME.retries, servers[].max_fails) ----------

def test_retries_on_another_server(start_origin, start_sluice):
    """docs/configuration.md: `retries` is how many times a failed request is retried on
    another server (idempotent requests only). With a dead server that is never marked
    down (max_fails: 0) and retries: 1, every GET must reach the live server."""
    o = start_origin()
    dead = "127.0.0.1:%d" % free_port()
    svc = {"retries": 1, "servers": [{"address": dead, "max_fails": 0},
                                     {"address": o.address}]}
    sl = start_sluice(sluice_config(services={"s": svc}, workers=1,
                                    routes=[{"match": {"path_prefix": "/"}, "service": "s"}]))
    statuses = [request(sl.port, "GET", "/echo/%d" % i).status for i in range(6)]
    assert statuses == [200] * 6, statuses


def test_max_fails_marks_server_down(start_origin, start_sluice):
    """docs/configuration.md: max_fails failed attempts within fail_timeout mark the
    server down for fail_timeout (as in nginx). With max_fails: 1 and a dead server, at
    most one request fails; the rest go to the live server for the next 10 s."""
    o = start_origin()
    dead = "127.0.0.1:%d" % free_port()
    svc = {"servers": [{"address": dead, "max_fails": 1, "fail_timeout": "10s"},
                       {"address": o.address}]}
    sl = start_sluice(sluice_config(services={"s": svc}, workers=1,
                                    routes=[{"match": {"path_prefix": "/"}, "service": "s"}]))
    statuses = [request(sl.port, "GET", "/echo/%d" % i).status for i in range(8)]
    assert statuses.count(502) <= 1, statuses
    assert set(statuses) <= {200, 502}, statuses
