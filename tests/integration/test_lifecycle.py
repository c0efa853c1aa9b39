"""The command line, configuration checking, signals and graceful drain, the connection
limit, and start-up failures."""

import re
import signal
import socket
import threading
import time

import pytest

from conftest import (SLOW, SLUICE_BIN, ConnectionClosed, HttpConn, Proc, build_request,
                      free_port, one_service_config, request, wait_for)


@pytest.fixture
def cli(procs, tmp_path):
    """cli(*args, timeout=10) -> (exit status, stdout, stderr) of a short sluice run."""
    n = [0]

    def run(*args, timeout=10 * SLOW):
        n[0] += 1
        p = procs.add(Proc([SLUICE_BIN, *args], tmp_path / ("cli-%d.out" % n[0]),
                           stderr_path=tmp_path / ("cli-%d.err" % n[0])))
        rc = p.wait(timeout)
        assert rc is not None, "sluice %r did not exit within %ss" % (args, timeout)
        p.stop()
        return rc, p.log(), p.stderr()

    return run


GOOD = """\
listen: [127.0.0.1:18080]
workers: 2
admin: { listen: 127.0.0.1:19901 }
limits: { max_connections: 100, header_timeout: 5s, shutdown_timeout: 1s }
services:
  blog:
    keepalive: 8
    timeouts: { connect: 1s, send: 2s, read: 3s }
    servers:
      - { address: 127.0.0.1:18001 }
routes:
  - match: { path_prefix: /api, methods: [GET, HEAD], host: example.com }
    service: blog
  - match: { path_prefix: / }
    service: blog
"""


def test_check_good_config(cli, tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    rc, out, err = cli("-t", "-c", path)
    assert rc == 0, (out, err)
    assert out == "%s: ok\n" % path, (out, err)


def test_check_empty_mapping_is_valid(cli, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    rc, out, err = cli("-t", "-c", path)
    assert rc == 0 and out == "%s: ok\n" % path, (out, err)


BAD = [
    ("unknown_key", "listen: [127.0.0.1:18080]\nworkerz: 2\n",
     [(2, 1, r'unknown key "workerz"')]),
    ("missing_service", "services:\n  blog:\n    servers:\n      - { address: 127.0.0.1:8000 }\n"
     "routes:\n  - match: { path_prefix: / }\n    service: nope\n",
     [(7, 14, r'service "nope" is not defined')]),
    ("bad_duration", "services:\n  blog:\n    timeouts: { connect: 5x }\n"
     "    servers:\n      - { address: 127.0.0.1:8000 }\n",
     [(3, 26, r'services\.blog\.timeouts\.connect: bad duration "5x"')]),
    ("several_errors", "workers: 0\nlimits:\n  idle_timeout: 10q\nservices:\n  blog:\n"
     "    servers:\n      - { address: local_host:80 }\n",
     [(1, 10, r"workers"), (3, 17, r'limits\.idle_timeout: bad duration "10q"'),
      (7, 20, r'bad address "local_host:80"')]),
    ("yaml_syntax", "listen: [127.0.0.1:18080\n", [(None, None, r"YAML syntax error")]),
]


@pytest.mark.parametrize("text,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_check_bad_config(cli, tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    rc, out, err = cli("-t", "-c", path)
    assert rc == 1, (out, err)
    lines = [l for l in (out + err).splitlines() if l]
    assert lines, "no error printed"
    for l in lines:
        assert re.fullmatch(re.escape(str(path)) + r"(:\d+:\d+)?: \S.*", l), \
            "not a FILE:LINE:COL: message line: %r" % l
    assert "ok" not in out.split(":")[-1:]
    for line, col, msg in expected:
        if line is None:
            assert any(re.search(msg, l) for l in lines), lines
        else:
            prefix = "%s:%d:%d: " % (path, line, col)
            assert any(l.startswith(prefix) and re.search(msg, l) for l in lines), \
                "expected %r /%s/ in %r" % (prefix, msg, lines)
    if len(expected) > 1:  # sorted by position
        pos = [tuple(map(int, re.match(re.escape(str(path)) + r":(\d+):(\d+):", l).groups()))
               for l in lines]
        assert pos == sorted(pos), lines


def test_check_missing_file(cli, tmp_path):
    path = tmp_path / "does-not-exist.yaml"
    rc, out, err = cli("-t", "-c", path)
    assert rc == 1
    assert (out + err).startswith("%s: " % path), (out, err)


def test_version(cli):
    rc, out, err = cli("--version")
    assert rc == 0
    assert re.fullmatch(r"sluice \d+\.\d+\.\d+\S*\n", out), out


def test_help(cli):
    rc, out, err = cli("-h")
    assert rc == 0
    assert "usage" in out and "-c FILE" in out and "-t" in out, out


def test_unknown_argument(cli):
    rc, out, err = cli("--bogus")
    assert rc != 0
    assert "--bogus" in err


# ---- signals and graceful drain --------------------------------------------------------

def _get_in_thread(port, target, results, i):
    try:
        with HttpConn(port, timeout=20) as c:
            c.send(build_request("GET", target))
            r = c.read_response()
            results[i] = (r, c.wait_closed(3))
    except (OSError, ConnectionClosed) as e:
        results[i] = e


def test_sigterm_drains_in_flight_requests(start_origin, start_sluice):
    o = start_origin()
    sl = start_sluice(one_service_config(o.address, limits={"shutdown_timeout": "5s"}))
    results = [None] * 3
    threads = [threading.Thread(target=_get_in_thread,
                                args=(sl.port, "/sleep/1500", results, i), daemon=True)
               for i in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: sl.metric("http_requests_in_flight") == 3, 5 * SLOW,
             what="3 requests in flight")
    t_sig = time.monotonic()
    sl.proc.signal(signal.SIGTERM)

    # new connections are refused (or closed without an answer) once draining began
    time.sleep(0.2)
    try:
        with HttpConn(sl.port, timeout=3) as c:
            try:
                c.send(build_request("GET", "/echo/late"))
                r = c.read_response()
                pytest.fail("a connection made after SIGTERM was served: %r" % r)
            except (ConnectionClosed, OSError):
                pass
    except ConnectionRefusedError:
        pass

    rc = sl.proc.wait(5 + 2 * SLOW - (time.monotonic() - t_sig))
    exited = time.monotonic() - t_sig
    for t in threads:
        t.join(10)
    assert rc == 0, "sluice exit status %r after SIGTERM; log:\n%s" % (rc, sl.log())
    # it exits when the requests are done, not at shutdown_timeout
    assert exited < 1.5 + 1.0 * SLOW, exited
    for res in results:
        assert isinstance(res, tuple), "in-flight request failed: %r" % (res,)
        r, closed = res
        assert r.status == 200, r
        assert r.json()["slept_ms"] == 1500
        assert r.header("Connection", "").lower() == "close", r
        assert closed


def test_sigterm_closes_idle_connections_at_once(gateway):
    sl = gateway.sluice
    conns = [HttpConn(sl.port) for _ in range(3)]
    try:
        for c in conns:
            assert c.request("GET", "/echo").status == 200
        t0 = time.monotonic()
        sl.proc.signal(signal.SIGTERM)
        for c in conns:
            assert c.wait_closed(2 * SLOW), "idle keep-alive connection kept open"
        rc = sl.proc.wait(3 * SLOW)
        assert rc == 0, sl.log()
        assert time.monotonic() - t0 < 1.0 * SLOW
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_request_outlasting_shutdown_timeout(start_origin, start_sluice, workers):
    """With 2 workers, one of them has no connection and finishes draining at once;
    the end of the grace period must still be handled (exit 0, not a crash)."""
    o = start_origin()
    sl = start_sluice(one_service_config(o.address, limits={"shutdown_timeout": "1s"},
                                         workers=workers))
    results = [None]
    t = threading.Thread(target=_get_in_thread, args=(sl.port, "/sleep/10000", results, 0),
                         daemon=True)
    t.start()
    wait_for(lambda: sl.metric("http_requests_in_flight") == 1, 5 * SLOW,
             what="request in flight")
    t_sig = time.monotonic()
    sl.proc.signal(signal.SIGTERM)
    rc = sl.proc.wait(1 + 3 * SLOW)
    exited = time.monotonic() - t_sig
    assert rc == 0, "exit status %r; log:\n%s" % (rc, sl.log())
    assert 0.9 <= exited <= 1.0 + 1.0 * SLOW, exited
    t.join(5)
    assert isinstance(results[0], ConnectionClosed), \
        "the cut request should see its connection closed, got %r" % (results[0],)


def test_sigint_stops_gracefully(gateway):
    gateway.sluice.proc.signal(signal.SIGINT)
    assert gateway.sluice.proc.wait(3 * SLOW) == 0


def test_sighup_does_not_stop_the_server(gateway):
    gateway.sluice.proc.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert gateway.sluice.proc.alive()
    assert request(gateway.port, "GET", "/echo").status == 200


# ---- connection limit ------------------------------------------------------------------

def test_max_connections(start_origin, start_sluice):
    o = start_origin()
    sl = start_sluice(one_service_config(o.address, limits={"max_connections": 4}))
    # the readiness probes are gone before counting starts
    wait_for(lambda: sl.metric("sluice_connections_active") == 0, 3 * SLOW,
             what="no client connections")
    conns = [HttpConn(sl.port) for _ in range(4)]
    try:
        for i, c in enumerate(conns):
            assert c.request("GET", "/echo/%d" % i).status == 200
        fifth = HttpConn(sl.port)
        try:
            try:
                fifth.send(build_request("GET", "/echo/5"))
            except OSError:
                pass
            assert fifth.wait_closed(3 * SLOW), "the 5th connection was kept open"
            assert fifth.extra == b"", "the 5th connection got an answer: %r" % fifth.extra
        finally:
            fifth.close()
        # the 4 stay usable
        for i, c in enumerate(conns):
            r = c.request("GET", "/echo/again%d" % i)
            assert r.status == 200
        assert sl.metric("sluice_connections_rejected_total") == 1
        assert sl.metric("sluice_connections_active") == 4
        # a slot freed is a slot usable again
        conns[0].close()
        wait_for(lambda: sl.metric("sluice_connections_active") == 3, 3 * SLOW,
                 what="3 connections")
        assert request(sl.port, "GET", "/echo/new").status == 200
    finally:
        for c in conns:
            c.close()


# ---- start-up failures -----------------------------------------------------------------

def test_listen_port_in_use(start_origin, start_sluice):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        cfg = one_service_config("127.0.0.1:%d" % free_port())
        cfg["listen"] = ["127.0.0.1:%d" % port]
        sl = start_sluice(cfg, wait=False)
        rc = sl.proc.wait(5 * SLOW)
        assert rc is not None, "sluice kept running on a port in use"
        assert rc != 0
        log = sl.log()
        assert "127.0.0.1:%d" % port in log and "in use" in log.lower(), log
    finally:
        holder.close()


def test_admin_port_in_use(start_sluice):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        cfg = one_service_config("127.0.0.1:%d" % free_port())
        cfg["admin"] = {"listen": "127.0.0.1:%d" % port}
        sl = start_sluice(cfg, wait=False)
        rc = sl.proc.wait(5 * SLOW)
        assert rc is not None and rc != 0
        log = sl.log()
        assert "127.0.0.1:%d" % port in log and "in use" in log.lower(), log
    finally:
        holder.close()
