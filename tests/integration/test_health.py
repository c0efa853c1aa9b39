"""Active health checks (health_check: on a service).

Every interval sluice's control thread sends GET <path> to each server of a checked
service; `fails` failed checks in a row take an UP server out of rotation, `passes` good
ones in a row bring a server (back) in. Servers of a checked service start out of
rotation: they take traffic only after `passes` good checks.

The origins here answer /health themselves: demo-origin with 200, the raw origins as
each test's handler says. Timing bounds carry generous slack (the machine is noisy):
they are x3 the nominal figure plus a fixed allowance, and x3 again under SAN.
"""

import signal
import threading
import time

from conftest import (ORIGIN_BIN, SLOW, ConnectionClosed, HttpConn, OriginReader, Proc,
                      header_of, request, simple_response, sluice_config, wait_for,
                      wait_listening)

INTERVAL = 0.2  # seconds; the checks' interval in the configs below
FAILS = 2
PASSES = 2


def health_check(**over):
    hc = {"path": "/health", "interval": "200ms", "timeout": "100ms", "fails": FAILS,
          "passes": PASSES, "expect_status": [200]}
    hc.update(over)
    return hc


def checked_config(addresses, hc=None, **service):
    """One service "svc" with these servers (health checked), every path routed to it."""
    svc = {"keepalive": 16, "servers": [{"address": a} for a in addresses],
           "health_check": hc or health_check()}
    svc.update(service)
    return sluice_config(services={"svc": svc},
                         routes=[{"match": {"path_prefix": "/"}, "service": "svc"}])


def origin_of(r):
    return r.header("X-Origin")


def log_lines(sl, *needles):
    return [l for l in sl.log().splitlines() if all(n in l for n in needles)]


def health_handler(health_status):
    """A raw-origin handler: /health answers health_status (a callable returning a
    status, or a status), everything else 200 with X-Origin: raw; keep-alive."""

    def handler(sock, origin):
        rd = OriginReader(sock, origin)
        while not origin.stopping.is_set():
            req = rd.read_request()
            if req is None:
                return
            if req["target"] == "/health":
                st = health_status() if callable(health_status) else health_status
                sock.sendall(simple_response(st, b"health\n", reason="Whatever"))
            else:
                sock.sendall(simple_response(200, b"raw\n", [("X-Origin", "raw")]))

    return handler


def test_failing_server_gets_no_traffic(start_origin, start_sluice, raw_origin):
    a = start_origin(name="hc-a")
    b = raw_origin(health_handler(500))  # serves requests, but fails its checks
    sl = start_sluice(checked_config([a.address, b.address]))

    # A is in after PASSES good checks; until then nothing is (503).
    wait_for(lambda: request(sl.port, "GET", "/api/blog/posts").status == 200,
             10 * SLOW, 0.05, "hc-a to pass its checks")
    seen = {}
    with HttpConn(sl.port) as c:
        for _ in range(60):
            r = c.request("GET", "/api/blog/posts")
            assert r.status == 200, r
            seen[origin_of(r)] = seen.get(origin_of(r), 0) + 1
    assert seen == {"hc-a": 60}, seen

    # B was checked all along (and failed every time); it never saw a proxied request.
    with b.lock:
        heads = list(b.heads)
    checks = [h for h in heads if h[1] == "/health"]
    assert len(checks) >= PASSES, heads
    assert [h for h in heads if h[1] != "/health"] == [], heads
    method, target, version, headers = checks[0]
    assert (method, target, version) == ("GET", "/health", "HTTP/1.1")
    assert header_of(headers, "Host") == b.address
    assert header_of(headers, "User-Agent") == "sluice-health-check"
    assert header_of(headers, "Connection") == "close"
    assert b.errors == []
    # It is still being checked, about once an interval.
    n0 = len(checks)
    time.sleep(5 * INTERVAL)
    with b.lock:
        n1 = len([h for h in b.heads if h[1] == "/health"])
    assert n1 - n0 >= 2, (n0, n1)
    assert n1 - n0 <= 5 + 2, (n0, n1)  # not more often than the interval (+ jitter)


def test_server_eligible_only_after_passes(start_sluice, raw_origin):
    passes = 3
    interval = 0.5
    o = raw_origin(health_handler(200))
    sl = start_sluice(checked_config([o.address],
                                     health_check(interval="500ms", timeout="250ms",
                                                  passes=passes)))
    t0 = time.monotonic()
    # The third good check can come no sooner than 2 intervals after start: during the
    # first interval nothing may reach the origin.
    early = []
    while time.monotonic() - t0 < interval:
        early.append(request(sl.port, "GET", "/early").status)
        time.sleep(0.02)
    assert early and all(s == 503 for s in early), early
    with o.lock:
        assert [h for h in o.heads if h[1] != "/health"] == [], o.heads

    # Then it comes in, and not before `passes` good checks: the first proxied request
    # the origin saw follows at least `passes` health checks.
    r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(
        request(sl.port, "GET", "/late")), 10 * SLOW, 0.05, "the server to come in")
    assert origin_of(r) == "raw"
    assert time.monotonic() - t0 >= (passes - 1) * interval - 0.4
    with o.lock:
        targets = [h[1] for h in o.heads]
    first = next(i for i, t in enumerate(targets) if t != "/health")
    assert first >= passes and set(targets[:first]) == {"/health"}, targets
    assert log_lines(sl, o.address, "health check passed"), sl.log()


class Load:
    """Sequential GETs through sluice on keep-alive connections, in a thread; records
    (monotonic time, status or exception text, X-Origin) for every request."""

    def __init__(self, port):
        self.port = port
        self.results = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        c = None
        while not self.stop.is_set():
            try:
                if c is None:
                    c = HttpConn(self.port, timeout=5 * SLOW)
                r = c.request("GET", "/api/blog/posts")
                self.results.append((time.monotonic(), r.status, origin_of(r)))
            except (OSError, ConnectionClosed, AssertionError) as e:
                self.results.append((time.monotonic(), repr(e), None))
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.results


def test_dead_server_out_and_back(procs, tmp_path, start_origin, start_sluice):
    origins = [start_origin(name="hc-%d" % i) for i in range(3)]
    victim = origins[2]
    # max_fails: 0 turns passive health off, so only the active checks move the victim.
    cfg = checked_config([o.address for o in origins], retries=2)
    for s in cfg["services"]["svc"]["servers"]:
        s["max_fails"] = 0
    sl = start_sluice(cfg)

    def all_in():
        got = set()
        for _ in range(12):
            r = request(sl.port, "GET", "/api/blog/posts")
            if r.status == 200:
                got.add(origin_of(r))
        return got == {"hc-0", "hc-1", "hc-2"}

    wait_for(all_in, 10 * SLOW, 0.05, "all three origins to pass their checks")

    load = Load(sl.port)
    try:
        time.sleep(0.5)
        # Kill the victim: in-flight and keep-alive requests to it fail and are retried.
        t_kill = time.monotonic()
        victim.proc.signal(signal.SIGKILL)
        assert victim.proc.wait(10) is not None
        wait_for(lambda: log_lines(sl, victim.address, "health check failed"),
                 3 * SLOW * (FAILS + 1) * INTERVAL + 2.0, 0.02, "the victim to be taken out")
        t_out = time.monotonic()
        time.sleep(0.5)

        # Restart it on the same port: back after PASSES good checks.
        t_restart = time.monotonic()
        p = procs.add(Proc([ORIGIN_BIN, "--port", victim.port, "--quiet", "--name", "hc-2"],
                           tmp_path / "victim-restarted.log"))
        p.check_exit = True
        assert wait_listening(p, victim.port, 10 * SLOW), p.log()
        wait_for(lambda: any(t > t_restart and o == "hc-2" for t, _, o in load.results),
                 3 * SLOW * (PASSES + 1) * INTERVAL + 2.0, 0.02, "traffic back on the victim")
        t_back = time.monotonic()
        time.sleep(max(0.0, 3.0 - (t_back - t_kill)))
    finally:
        results = load.finish()

    failed = [r for r in results if r[1] != 200]
    assert failed == [], failed[:10]
    assert len(results) > 50, len(results)
    # Out within interval x fails (+ one interval of phase, the timeout and slack).
    assert t_out - t_kill <= 3 * SLOW * (FAILS + 1) * INTERVAL + 1.0, t_out - t_kill
    assert t_back - t_restart <= 3 * SLOW * (PASSES + 1) * INTERVAL + 1.0, t_back - t_restart
    # While it was dead (once out), no request was answered by it.
    assert not [r for r in results if t_out <= r[0] <= t_restart and r[2] == "hc-2"]
    # It came back through the checks, and the others kept serving throughout.
    assert len(log_lines(sl, victim.address, "health check passed")) >= 2, sl.log()
    after = [r[2] for r in results if r[0] > t_back]
    assert {"hc-0", "hc-1"} <= set(after), after[:30]
