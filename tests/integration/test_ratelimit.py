"""Rate limits in memory: GCRA with rate/burst as DESIGN §5, several windows at once,
keys ip / user (JWT) / header / route, require_auth, trusted proxies, dry_run, the 429
answer and the IETF RateLimit fields, and a bounded table."""

import base64
import os
import hashlib
import hmac
import json
import socket
import time

import pytest

from conftest import SAN, SLOW, HttpConn, request, rss_kb, sluice_config

SECRET = "test-secret-0123456789abcdef0123456789"
os.environ["SLUICE_JWT_SECRET"] = SECRET  # sluice processes inherit the environment


def b64(d):
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def jwt(claims, secret=SECRET, alg="HS256"):
    h = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    p = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, p, b64(sig))


@pytest.fixture
def limited(start_origin, start_sluice):
    """start(routes_limits, global_limits=None, **top) -> Sluice, all routes to one origin."""
    o = start_origin(name="O")

    def start(route_limits=None, global_limits=None, require_auth=False, **top):
        route = {"match": {"path_prefix": "/"}, "service": "s"}
        if route_limits:
            route["rate_limits"] = route_limits
        if require_auth:
            route["require_auth"] = True
        cfg = sluice_config(services={"s": {"servers": [{"address": o.address}]}},
                            routes=[route], **top)
        if global_limits:
            cfg["rate_limits"] = global_limits
        return start_sluice(cfg)

    return start


def statuses(port, n, headers=None, path="/echo"):
    out = []
    with HttpConn(port) as c:
        for _ in range(n):
            out.append(c.request("GET", path, headers=headers))
    return out


def test_rate_alone_lets_n_through_at_once(limited):
    sl = limited([{"key": "ip", "rate": "5/second"}])
    rs = statuses(sl.port, 20)
    assert [r.status for r in rs] == [200] * 5 + [429] * 15
    r = rs[5]
    assert r.header("Retry-After") == "1"
    assert r.header("Content-Type") == "application/problem+json"
    body = r.json()
    assert body["status"] == 429 and body["violated-policies"] == ["route_second"]
    assert body["type"].endswith("#quota-exceeded")
    assert r.header("RateLimit-Policy") == '"route_second";q=5;w=1'
    assert r.header("RateLimit") == '"route_second";r=0;t=1'
    # allowed answers carry the remaining quota, counting down
    assert [x.header("RateLimit") for x in rs[:5]] == [
        '"route_second";r=%d;t=1' % k for k in (4, 3, 2, 1, 0)]
    time.sleep(0.25)  # one emission interval (200 ms): exactly one more
    assert [r.status for r in statuses(sl.port, 3)] == [200, 429, 429]


def test_burst_zero_lets_one_through(limited):
    sl = limited([{"key": "ip", "rate": "5/second", "burst": 0}])
    assert [r.status for r in statuses(sl.port, 10)] == [200] + [429] * 9


def test_burst_as_nginx(limited):
    """rate 10/second, burst 20: 21 at once (the first plus 20), as nginx nodelay."""
    sl = limited([{"key": "ip", "rate": "10/second", "burst": 20}])
    got = [r.status for r in statuses(sl.port, 30)]
    assert got == [200] * 21 + [429] * 9


def test_several_windows_at_once_and_no_budget_spent_by_rejects(limited):
    sl = limited(global_limits=[{"key": "ip", "rate": "100/minute"},
                                {"key": "ip", "rate": "3/hour"}],
                 route_limits=[{"key": "ip", "rate": "20/second"}])
    rs = statuses(sl.port, 6)
    assert [r.status for r in rs] == [200, 200, 200, 429, 429, 429]
    assert rs[3].json()["violated-policies"] == ["hour"]
    assert rs[3].header("RateLimit-Policy") == (
        '"minute";q=100;w=60, "hour";q=3;w=3600, "route_second";q=20;w=1')
    # the closest to exhaustion is reported on allowed answers
    assert rs[2].header("RateLimit") == '"hour";r=0;t=3600'
    m = sl.metrics()
    assert m.value("ratelimit_rejected_total", limit="hour") == 3
    # rejected requests consumed nothing from the minute limit: 3 allowed of 100
    assert m.value("ratelimit_allowed_total", limit="minute") == 3


def test_users_from_jwt_have_separate_budgets(limited):
    sl = limited([{"key": "user", "rate": "2/minute"}],
                 auth={"jwt": {"secret_env": "SLUICE_JWT_SECRET"}})
    alice = {"Authorization": "Bearer " + jwt({"sub": "alice", "exp": time.time() + 300})}
    bob = {"Authorization": "Bearer " + jwt({"sub": "bob", "exp": time.time() + 300})}
    forged = {"Authorization": "Bearer " + jwt({"sub": "alice"}, secret="wrong")}
    assert [r.status for r in statuses(sl.port, 3, alice)] == [200, 200, 429]
    assert [r.status for r in statuses(sl.port, 3, bob)] == [200, 200, 429]
    # a forged token is no identity: it counts as its IP, which still has its budget...
    assert [r.status for r in statuses(sl.port, 3, forged)] == [200, 200, 429]
    # ...and shares it with token-less requests from that IP
    assert [r.status for r in statuses(sl.port, 1)] == [429]
    expired = {"Authorization": "Bearer " + jwt({"sub": "carol", "exp": time.time() - 3600})}
    assert [r.status for r in statuses(sl.port, 1, expired)] == [429]


def test_require_auth(limited):
    sl = limited(require_auth=True, auth={"jwt": {"secret_env": "SLUICE_JWT_SECRET"}})
    r = request(sl.port, "GET", "/echo")
    assert r.status == 401 and r.header("WWW-Authenticate") == "Bearer"
    assert r.json()["status"] == 401
    good = {"Authorization": "Bearer " + jwt({"sub": "alice"})}
    assert request(sl.port, "GET", "/echo", headers=good).status == 200
    bad = {"Authorization": "Bearer " + jwt({"sub": "alice"}, alg="HS256", secret="x")}
    assert request(sl.port, "GET", "/echo", headers=bad).status == 401


def test_header_and_route_keys(limited):
    sl = limited([{"key": "header:X-Api-Key", "rate": "1/minute", "name": "per-key"},
                  {"key": "route", "rate": "4/minute", "name": "whole-route"}])
    a, b = {"X-Api-Key": "a"}, {"X-Api-Key": "b"}
    assert [r.status for r in statuses(sl.port, 2, a)] == [200, 429]
    assert [r.status for r in statuses(sl.port, 2, b)] == [200, 429]
    # no header: only the route limit applies (2 of its 4 are used)
    assert [r.status for r in statuses(sl.port, 3)] == [200, 200, 429]


def test_x_forwarded_for_only_from_trusted_proxies(limited):
    lim = [{"key": "ip", "rate": "1/minute"}]
    sl = limited(lim)
    h1, h2 = {"X-Forwarded-For": "1.2.3.4"}, {"X-Forwarded-For": "5.6.7.8"}
    assert [r.status for r in statuses(sl.port, 1, h1)] == [200]
    assert [r.status for r in statuses(sl.port, 1, h2)] == [429]  # same peer, not trusted
    sl2 = limited(lim, trusted_proxies=["127.0.0.0/8"])
    assert [r.status for r in statuses(sl2.port, 2, h1)] == [200, 429]
    assert [r.status for r in statuses(sl2.port, 1, h2)] == [200]
    # the rightmost untrusted entry counts; a spoofed leftmost one does not help
    spoof = {"X-Forwarded-For": "9.9.9.9, 1.2.3.4"}
    assert [r.status for r in statuses(sl2.port, 1, spoof)] == [429]


def test_dry_run_counts_but_never_rejects(limited):
    sl = limited([{"key": "ip", "rate": "2/minute", "dry_run": True}])
    assert [r.status for r in statuses(sl.port, 5)] == [200] * 5
    m = sl.metrics()
    assert m.value("ratelimit_dry_run_rejected_total", limit="route_minute") == 3


def test_table_stays_bounded_under_a_flood_of_keys(limited):
    """1,000,000 distinct keys (100,000 under ASan, which is 5x slower) into a table
    bounded at 10,000: the table holds at most its bound, evictions are counted, and
    memory stays flat."""
    nkeys = 100000 if SAN else 1000000
    sl = limited([{"key": "header:X-K", "rate": "10/minute"}],
                 limits={"rate_limit_keys": 10000})
    base = rss_kb(sl.pid)
    s = socket.create_connection(("127.0.0.1", sl.port), timeout=30)
    got = 0
    for batch in range(nkeys // 100):
        reqs = b"".join(b"GET /health HTTP/1.1\r\nHost: x\r\nX-K: k%d\r\n\r\n" % (batch * 100 + i)
                        for i in range(100))
        s.sendall(reqs)
        buf = b""
        while buf.count(b"HTTP/1.1 200") + buf.count(b"HTTP/1.1 429") < 100:
            d = s.recv(1 << 20)
            assert d
            buf += d
        got += buf.count(b"HTTP/1.1 200")
    s.close()
    assert got == nkeys  # every key is new (or evicted while idle): all allowed
    m = sl.metrics()
    assert m.value("ratelimit_table_keys") <= 10000 * 1.1
    assert m.value("ratelimit_evictions_total") >= nkeys - 20000
    if not SAN:  # ASan's quarantine keeps freed memory resident: RSS says nothing there
        assert rss_kb(sl.pid) - base < 8000, (base, rss_kb(sl.pid))
