"""Rate limits shared through a real redis-server: several sluice instances enforce one
global limit; when Redis goes away, on_failure decides (fail_open: the local limiter,
within the deadline; fail_closed: 503), and limits come back with Redis."""

import shutil
import time

import pytest

from conftest import SLOW, HttpConn, Proc, free_port, request, sluice_config, wait_listening

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

pytestmark = pytest.mark.skipif(not shutil.which("redis-server") and
                                not __import__("os").path.exists(REDIS),
                                reason="redis-server is not installed (make deps installs it)")


@pytest.fixture
def redis(procs, tmp_path):
    """start(port=None) -> (Proc, port): a throwaway redis-server on loopback."""

    def start(port=None):
        port = port or free_port()
        p = procs.add(Proc([REDIS, "--port", port, "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", tmp_path],
                           tmp_path / ("redis-%d.log" % port)))
        assert wait_listening(p, port, 10 * SLOW), p.log()
        return p, port

    return start


def limited_cfg(origin, redis_port, rate="100/hour", on_failure="fail_open", timeout="50ms"):
    cfg = sluice_config(services={"s": {"servers": [{"address": origin.address}]}},
                        routes=[{"match": {"path_prefix": "/"}, "service": "s",
                                 "rate_limits": [{"key": "ip", "rate": rate}]}])
    cfg["redis"] = {"address": "127.0.0.1:%d" % redis_port, "on_failure": on_failure,
                    "timeout": timeout, "key_prefix": "t%d" % redis_port}
    return cfg


def wait_connected(sl):
    deadline = time.time() + 10 * SLOW
    while time.time() < deadline:
        try:
            if sl.metrics().value("ratelimit_redis_connected") >= 1:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError("sluice did not connect to redis:\n" + sl.log())


def test_two_instances_share_one_limit(start_origin, start_sluice, redis):
    o = start_origin(name="O")
    _, rport = redis()
    # A generous deadline: exactness needs every decision made in Redis, none by the local
    # fallback, even on a loaded machine (the fallback is tested below).
    a = start_sluice(limited_cfg(o, rport, timeout="2s"))
    b = start_sluice(limited_cfg(o, rport, timeout="2s"))
    wait_connected(a)
    wait_connected(b)
    got = {200: 0, 429: 0}
    with HttpConn(a.port) as ca, HttpConn(b.port) as cb:
        for i in range(300):
            r = (ca if i % 2 else cb).request("GET", "/echo")
            got[r.status] = got.get(r.status, 0) + 1
    assert got == {200: 100, 429: 200}, got
    for sl in (a, b):
        m = sl.metrics()
        assert m.value("ratelimit_redis_calls_total") >= 150
        assert m.value("ratelimit_redis_fallbacks_total") == 0


def test_fail_open_when_redis_stops_and_limits_return(start_origin, start_sluice, redis):
    o = start_origin(name="O")
    rp, rport = redis()
    sl = start_sluice(limited_cfg(o, rport, rate="1000/hour", timeout="50ms"))
    wait_connected(sl)
    assert request(sl.port, "GET", "/echo").status == 200
    rp.stop()  # redis goes away mid-run
    slowest = 0.0
    with HttpConn(sl.port) as c:
        for _ in range(40):
            t0 = time.monotonic()
            r = c.request("GET", "/echo")
            slowest = max(slowest, time.monotonic() - t0)
            assert r.status == 200, r  # fail_open: the local limiter decides, no 5xx
    assert slowest < 0.05 + 0.5 * SLOW, slowest  # never stalls much past the deadline
    assert sl.metrics().value("ratelimit_redis_fallbacks_total") >= 40
    # redis comes back on the same port: sluice reconnects by itself
    redis(rport)
    wait_connected(sl)
    before = sl.metrics().value("ratelimit_redis_calls_total")
    assert request(sl.port, "GET", "/echo").status == 200
    assert sl.metrics().value("ratelimit_redis_calls_total") > before


def test_fail_closed_answers_503(start_origin, start_sluice, redis):
    o = start_origin(name="O")
    rp, rport = redis()
    sl = start_sluice(limited_cfg(o, rport, on_failure="fail_closed"))
    wait_connected(sl)
    assert request(sl.port, "GET", "/echo").status == 200
    rp.stop()
    r = request(sl.port, "GET", "/echo")
    assert r.status == 503 and r.json()["status"] == 503


def test_answer_right_after_shared_decision(start_origin, start_sluice, redis):
    """The proxy may answer at once after a Redis decision (503: every server still
    `checking`): sluice must not touch the freed exchange (it crashed doing so once), with
    and without a request body, on keep-alive connections with pipelined requests."""
    o = start_origin()
    _, rport = redis()
    cfg = limited_cfg(o, rport, rate="1000/minute", timeout="2s")
    # the check fails (the origin answers /status/500 with 500): the server stays
    # `checking`, so every answer is 503
    cfg["services"]["s"]["health_check"] = {"path": "/status/500", "interval": "100ms"}
    sl = start_sluice(cfg)
    wait_connected(sl)
    for _ in range(10):  # a body not read yet when the answer goes: the connection closes
        r = request(sl.port, "POST", "/echo", body=b"x" * 3000)
        assert r.status == 503
    with HttpConn(sl.port) as c:
        for _ in range(20):
            assert c.request("GET", "/echo").status == 503
        # pipelined: both heads in one write
        c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 503
        assert c.read_response().status == 503
    assert sl.proc.alive()
    assert request(sl.port, "GET", "/echo").status == 503
