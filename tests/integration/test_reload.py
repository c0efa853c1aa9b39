"""Zero-downtime reload (SIGHUP, sluice -s reload, POST /api/reload) and binary upgrade
(SIGUSR2), with real processes on loopback.

A reload starts a new generation of workers on the same listening sockets and lets the
old one drain; a binary upgrade hands the sockets to a new process. Either way no client
may see a refused or reset connection or a failed request. The load loops below count
every request; the only thing they forgive is what HTTP itself allows a client to retry:
an idempotent request sent on a kept-alive connection that the server had already closed
as idle (RFC 9112 section 9.3.1), which they re-send once on a new connection and count
apart (`idle_retries`). A request on a new connection is never retried.
"""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import threading
import time

import pytest

from conftest import (SAN, SLOW, HttpConn, free_port, request, sluice_config, to_yaml,
                      wait_for)


# ---------------------------------------------------------------------------------------
# helpers

def write_config(sl, cfg):
    """Rewrite sl's configuration file (listen and admin kept) atomically."""
    cfg = json.loads(json.dumps(cfg))
    cfg["listen"] = sl.config["listen"]
    cfg.setdefault("admin", {})["listen"] = sl.config["admin"]["listen"]
    if "pid_file" in sl.config:
        cfg["pid_file"] = sl.config["pid_file"]
    text = to_yaml(cfg) + "\n"
    tmp = str(sl.config_path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, sl.config_path)


def metric(sl, name, **labels):
    v = sl.metric(name, **labels)
    return 0 if v is None else v


def reload_and_wait(sl, expect_generation):
    sl.proc.signal(signal.SIGHUP)
    wait_for(lambda: metric(sl, "sluice_config_generation") == expect_generation,
             10 * SLOW, what="generation %d" % expect_generation)


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def nthreads(pid):
    return int(proc_status(pid)["Threads"])


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def settled_fds(pid):
    """The descriptor count once the admin connection of the last scrape is gone: the
    least of a few readings over half a second."""
    n = nfds(pid)
    for _ in range(10):
        time.sleep(0.05)
        n = min(n, nfds(pid))
    return n


def pid_alive(pid):
    try:
        st = proc_status(pid)
    except OSError:
        return False
    return not st.get("State", "").startswith("Z")


class Load:
    """Threads sending GETs until stopped: `keepalive` of them on kept-alive connections,
    `fresh` of them on a new connection per request. check(path, resp, body) -> None or
    a failure message; paths() -> the path to ask next."""

    def __init__(self, port, paths, check, keepalive=3, fresh=2):
        self.port = port
        self.paths = paths
        self.check = check
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.idle_retries = 0
        self.failures = []
        self.threads = [threading.Thread(target=self.run, args=(True,), daemon=True)
                        for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self.run, args=(False,), daemon=True)
                         for _ in range(fresh)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)

    def fail(self, msg):
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(msg)
            else:
                self.failures.append("...")

    def one(self, conn, path):
        conn.request("GET", path)
        r = conn.getresponse()
        return r, r.read()

    def run(self, keepalive):
        conn, used = None, 0
        while not self.stop_ev.is_set():
            path = self.paths()
            if conn is None:
                conn, used = http.client.HTTPConnection("127.0.0.1", self.port,
                                                        timeout=10 * SLOW), 0
            try:
                try:
                    r, body = self.one(conn, path)
                except (http.client.RemoteDisconnected, ConnectionResetError,
                        BrokenPipeError) as e:
                    if not used:
                        raise
                    # Closed as idle by a draining worker while this request was on the
                    # way: re-send once on a new connection (RFC 9112 9.3.1).
                    conn.close()
                    conn, used = http.client.HTTPConnection("127.0.0.1", self.port,
                                                            timeout=10 * SLOW), 0
                    with self.lock:
                        self.idle_retries += 1
                    r, body = self.one(conn, path)
                used += 1
                msg = self.check(path, r, body)
                if msg:
                    self.fail(msg)
                else:
                    with self.lock:
                        self.ok += 1
                if not keepalive or r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # every other error is a failed request
                self.fail("%s %s (keepalive=%s, used=%d): %r" % ("GET", path, keepalive,
                                                                  used, e))
                conn.close()
                conn = None
        if conn:
            conn.close()


def expect_200(path, r, body):
    if r.status != 200:
        return "%s -> %d %r" % (path, r.status, body[:200])
    return None


# ---------------------------------------------------------------------------------------
# reload under continuous load

def gen_config(i, a, b, **top):
    """Generation i: /echo/stable always; /echo/g{i} appears (and g{i-1} is gone); the
    service "flip" is served by origin a in even generations and b in odd ones."""
    flip = a if i % 2 == 0 else b
    return sluice_config(
        services={"steady": {"servers": [{"address": a.address}]},
                  "flip": {"servers": [{"address": flip.address}]}},
        routes=[{"match": {"path_prefix": "/echo/stable"}, "service": "steady"},
                {"match": {"path_prefix": "/echo/flip"}, "service": "flip"},
                {"name": "g%d" % i, "match": {"path_prefix": "/echo/g%d" % i},
                 "service": "steady"}],
        **top)


def test_twenty_reloads_under_load(start_origin, start_sluice):
    a, b = start_origin(name="A"), start_origin(name="B")
    sl = start_sluice(gen_config(0, a, b))
    paths = ["/echo/stable/x", "/echo/flip/y"]
    with Load(sl.port, lambda: random.choice(paths), expect_200) as load:
        time.sleep(0.3)
        for i in range(1, 21):
            write_config(sl, gen_config(i, a, b))
            reload_and_wait(sl, i + 1)
            # New requests see the new routes and the new backend at once.
            r = request(sl.port, "GET", "/echo/g%d/new" % i)
            assert r.status == 200, (i, r)
            r = request(sl.port, "GET", "/echo/g%d/old" % (i - 1))
            assert r.status == 404 and b"no route" in r.body, (i, r)
            r = request(sl.port, "GET", "/echo/flip/z")
            assert r.status == 200 and r.header("X-Origin") == ("A" if i % 2 == 0 else "B"), \
                (i, r)
            time.sleep(0.1)
        time.sleep(0.3)
    print("reload under load: %d requests ok, %d failed, %d idle keep-alive retries"
          % (load.ok, len(load.failures), load.idle_retries))
    assert not load.failures, load.failures[:10]
    assert load.ok > 200, load.ok
    assert metric(sl, "sluice_reloads_total", result="ok") == 20
    assert metric(sl, "sluice_reloads_total", result="failed") == 0
    assert metric(sl, "sluice_connections_rejected_total") == 0
    # Per-route series carry on by name across generations: never reset, never doubled.
    m = sl.metrics()
    stable = sum(v for (labels, v) in m.find("http_requests_total", route="/echo/stable"))
    assert stable > 0
    wait_for(lambda: metric(sl, "sluice_generations_draining") == 0, 10 * SLOW,
             what="old generations drained")
    assert nthreads(sl.pid) == 1 + 2, proc_status(sl.pid)["Threads"]


# ---------------------------------------------------------------------------------------
# invalid reloads

def test_invalid_reload_keeps_serving(start_origin, start_sluice):
    o = start_origin(name="A")
    cfg = gen_config(0, o, o)
    sl = start_sluice(cfg)
    assert request(sl.port, "GET", "/echo/g0/x").status == 200
    # A YAML syntax error.
    with open(sl.config_path, "a") as f:
        f.write("routes: [oops\n")
    sl.proc.signal(signal.SIGHUP)
    wait_for(lambda: metric(sl, "sluice_reloads_total", result="failed") == 1, 10 * SLOW,
             what="a failed reload counted")
    assert "%s:" % sl.config_path in sl.log()
    assert "YAML syntax error" in sl.log()
    # An unknown service: a validation error with its position.
    bad = gen_config(1, o, o)
    bad["routes"].append({"match": {"path_prefix": "/nope"}, "service": "missing"})
    write_config(sl, bad)
    sl.proc.signal(signal.SIGHUP)
    wait_for(lambda: metric(sl, "sluice_reloads_total", result="failed") == 2, 10 * SLOW,
             what="a second failed reload counted")
    lines = [l for l in sl.log().splitlines() if "missing" in l and "[error]" in l]
    assert lines and str(sl.config_path) + ":" in lines[0], sl.log()
    # The old configuration serves on, unchanged.
    assert metric(sl, "sluice_config_generation") == 1
    assert request(sl.port, "GET", "/echo/g0/x").status == 200
    assert request(sl.port, "GET", "/echo/g1/x").status == 404
    assert metric(sl, "sluice_reloads_total", result="ok") == 0


# ---------------------------------------------------------------------------------------
# in-flight requests finish on the old generation

def test_inflight_requests_survive_reload(start_origin, start_sluice):
    o = start_origin(name="A")
    cfg = sluice_config(services={"s": {"servers": [{"address": o.address}]}},
                        routes=[{"match": {"path_prefix": "/sleep"}, "service": "s"}])
    sl = start_sluice(cfg)
    results = []

    def slow():
        results.append(request(sl.port, "GET", "/sleep/2000", timeout=20 * SLOW))

    ts = [threading.Thread(target=slow) for _ in range(4)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    cfg2 = sluice_config(services={"s": {"servers": [{"address": o.address}]}},
                         routes=[{"match": {"path_prefix": "/echo"}, "service": "s"}])
    write_config(sl, cfg2)
    reload_and_wait(sl, 2)
    # New requests see the new routes while the old generation still drains.
    assert request(sl.port, "GET", "/echo/x").status == 200
    assert request(sl.port, "GET", "/sleep/1").status == 404
    assert metric(sl, "sluice_generations_draining") == 1
    for t in ts:
        t.join(30)
    assert [r.status for r in results] == [200] * 4, results
    wait_for(lambda: metric(sl, "sluice_generations_draining") == 0, 10 * SLOW,
             what="the old generation gone")


# ---------------------------------------------------------------------------------------
# what carries over

def test_cache_survives_reload_when_unchanged(start_origin, start_sluice):
    o = start_origin(name="A")

    def cfg(extra_route):
        routes = [{"match": {"path_prefix": "/echo/c"}, "service": "s", "cache": {}}]
        routes.append({"match": {"path_prefix": extra_route}, "service": "s"})
        return sluice_config(services={"s": {"servers": [{"address": o.address}]}},
                             routes=routes, cache={"memory": "16m"})

    sl = start_sluice(cfg("/echo/one"))
    r1 = request(sl.port, "GET", "/echo/c/obj?cache=300")
    assert r1.status == 200 and r1.header("X-Cache") == "MISS", r1
    assert request(sl.port, "GET", "/echo/c/obj?cache=300").header("X-Cache") == "HIT"
    write_config(sl, cfg("/echo/two"))
    reload_and_wait(sl, 2)
    r = request(sl.port, "GET", "/echo/c/obj?cache=300")
    assert r.status == 200 and r.header("X-Cache") == "HIT", r
    assert r.body == r1.body
    assert "cache kept" in sl.log()
    # A changed cache: section builds a new (empty) store.
    c3 = cfg("/echo/two")
    c3["cache"] = {"memory": "8m"}
    write_config(sl, c3)
    reload_and_wait(sl, 3)
    assert request(sl.port, "GET", "/echo/c/obj?cache=300").header("X-Cache") == "MISS"


def servers(sl, service):
    r = request(sl.admin_port, "GET", "/api/services/%s/servers" % service)
    assert r.status == 200, r
    return {s["address"]: s for s in r.json()["servers"]}


def test_service_state_survives_reload(start_origin, start_sluice):
    a, b = start_origin(name="A"), start_origin(name="B")
    dead = "127.0.0.1:%d" % free_port()
    hc = {"path": "/health", "interval": "200ms", "timeout": "200ms", "fails": 2,
          "passes": 3, "expect_status": [200]}

    def cfg(route):
        return sluice_config(
            services={"svc": {"servers": [{"address": a.address}, {"address": dead}],
                              "health_check": hc},
                      "other": {"servers": [{"address": b.address}]}},
            routes=[{"match": {"path_prefix": "/echo"}, "service": "svc"},
                    {"match": {"path_prefix": route}, "service": "other"}])

    sl = start_sluice(cfg("/health"))
    wait_for(lambda: servers(sl, "svc")[a.address]["state"] == "up", 10 * SLOW,
             what="A up after its checks")
    r = request(sl.admin_port, "POST", "/api/services/svc/servers",
                body=json.dumps({"address": b.address}))
    assert r.status == 201, r
    wait_for(lambda: servers(sl, "svc")[b.address]["state"] == "up", 10 * SLOW,
             what="added B up after its checks")
    before = servers(sl, "svc")
    assert before[dead]["state"] != "up"
    write_config(sl, cfg("/stats"))  # only a route changes; svc is the same
    reload_and_wait(sl, 2)
    after = servers(sl, "svc")
    # Right after the swap (checks need 3 x 200 ms to bring a new server in): the state
    # was carried, not re-learnt, and the API-added server is still there.
    assert after[a.address]["state"] == "up", after
    assert after[b.address]["state"] == "up", after
    assert after[dead]["state"] == before[dead]["state"], after
    names = {request(sl.port, "GET", "/echo/x").header("X-Origin") for _ in range(10)}
    assert names == {"A", "B"}, names
    # A changed service starts afresh: the added server is gone, checks start over.
    c3 = cfg("/stats")
    c3["services"]["svc"]["keepalive"] = 7
    write_config(sl, c3)
    reload_and_wait(sl, 3)
    fresh = servers(sl, "svc")
    assert b.address not in fresh and fresh[a.address]["state"] == "checking", fresh


# ---------------------------------------------------------------------------------------
# the ways to ask for a reload

def test_dash_s_reload_uses_pid_file(start_origin, start_sluice, tmp_path):
    from conftest import SLUICE_BIN
    o = start_origin(name="A")
    pid_file = str(tmp_path / "sluice.pid")
    sl = start_sluice(gen_config(0, o, o, pid_file=pid_file))
    wait_for(lambda: os.path.exists(pid_file), 5 * SLOW, what="pid file")
    assert int(open(pid_file).read()) == sl.pid
    write_config(sl, gen_config(1, o, o))
    import subprocess
    p = subprocess.run([str(SLUICE_BIN), "-s", "reload", "-c", str(sl.config_path)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    wait_for(lambda: metric(sl, "sluice_config_generation") == 2, 10 * SLOW,
             what="reloaded")
    assert request(sl.port, "GET", "/echo/g1/x").status == 200
    # Without pid_file: a clear error, nothing signalled.
    nopid = tmp_path / "nopid.yaml"
    nopid.write_text(to_yaml(gen_config(1, o, o, listen=["127.0.0.1:1"])) + "\n")
    p = subprocess.run([str(SLUICE_BIN), "-s", "reload", "-c", str(nopid)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "pid_file" in p.stderr, p
    # The pid file goes with the process.
    assert sl.stop() == 0
    assert not os.path.exists(pid_file)


def test_admin_api_reload_with_token(start_origin, start_sluice, monkeypatch):
    o = start_origin(name="A")
    monkeypatch.setenv("RELOAD_TEST_TOKEN", "s3cret")
    sl = start_sluice(gen_config(0, o, o, admin={"token_env": "RELOAD_TEST_TOKEN"}))
    write_config(sl, gen_config(1, o, o, admin={"token_env": "RELOAD_TEST_TOKEN"}))
    r = request(sl.admin_port, "POST", "/api/reload")
    assert r.status == 401, r
    auth = {"Authorization": "Bearer s3cret"}
    r = request(sl.admin_port, "GET", "/api/reload", headers=auth)
    assert r.status == 405 and r.header("Allow") == "POST", r
    r = request(sl.admin_port, "POST", "/api/reload", headers=auth)
    assert r.status == 200 and r.json() == {"result": "ok", "generation": 2}, r
    assert request(sl.port, "GET", "/echo/g1/x").status == 200
    # Invalid: 400 with the reason, the old one keeps serving.
    with open(sl.config_path, "a") as f:
        f.write("workers: many\n")
    r = request(sl.admin_port, "POST", "/api/reload", headers=auth)
    assert r.status == 400 and "reload failed" in r.json()["error"], r
    assert request(sl.port, "GET", "/echo/g1/x").status == 200
    assert metric(sl, "sluice_reloads_total", result="failed") == 1
    assert metric(sl, "sluice_config_generation") == 2
    # A key only a restart can change is logged and kept.
    c = gen_config(2, o, o, admin={"token_env": "OTHER_TOKEN"})
    write_config(sl, c)
    r = request(sl.admin_port, "POST", "/api/reload", headers=auth)
    assert r.status == 200, r
    assert "admin.token_env changed: needs a restart" in sl.log()
    assert request(sl.admin_port, "POST", "/api/reload", headers=auth).status == 200


def test_workers_count_changes_on_reload(start_origin, start_sluice):
    o = start_origin(name="A")
    sl = start_sluice(gen_config(0, o, o, workers=2))
    wait_for(lambda: nthreads(sl.pid) == 3, 5 * SLOW, what="2 worker threads")
    for gen, workers in ((2, 4), (3, 1), (4, 3)):
        write_config(sl, gen_config(gen, o, o, workers=workers))
        reload_and_wait(sl, gen)
        wait_for(lambda: metric(sl, "sluice_generations_draining") == 0, 10 * SLOW,
                 what="drained")
        wait_for(lambda: nthreads(sl.pid) == 1 + workers, 5 * SLOW,
                 what="%d worker threads" % workers)
        for _ in range(20):
            assert request(sl.port, "GET", "/echo/stable").status == 200
    m = sl.metrics()
    assert m.value("sluice_build_info", workers="3") == 1


# ---------------------------------------------------------------------------------------
# nothing leaks across reloads

def test_threads_fds_memory_stable_across_reloads(start_origin, start_sluice):
    a, b = start_origin(name="A"), start_origin(name="B")
    sl = start_sluice(gen_config(0, a, b))

    def traffic():
        with HttpConn(sl.port) as c:
            for _ in range(20):
                assert c.request("GET", "/echo/stable/x").status == 200
                assert c.request("GET", "/echo/flip/x").status == 200

    def settle(gen):
        wait_for(lambda: metric(sl, "sluice_generations_draining") == 0, 10 * SLOW,
                 what="drained")
        time.sleep(0.2)

    for i in range(1, 4):  # warm up: allocator pools, metric series, thread slots
        traffic()
        write_config(sl, gen_config(i, a, b))
        reload_and_wait(sl, i + 1)
        settle(i + 1)
    traffic()
    t0, f0, m0 = nthreads(sl.pid), settled_fds(sl.pid), sl.rss_kb()
    for i in range(4, 14):
        traffic()
        write_config(sl, gen_config(i, a, b))
        reload_and_wait(sl, i + 1)
        settle(i + 1)
    traffic()
    t1, f1, m1 = nthreads(sl.pid), settled_fds(sl.pid), sl.rss_kb()
    print("10 reloads: threads %d -> %d, fds %d -> %d, rss %d -> %d KiB"
          % (t0, t1, f0, f1, m0, m1))
    assert t1 == t0 == 3
    assert f1 == f0, (f0, f1)
    if not SAN:
        # Under ASan, RSS holds its quarantine of freed memory; there LeakSanitizer at
        # exit (checked at teardown) is what finds a generation not freed.
        assert m1 - m0 < 4096, (m0, m1)


# ---------------------------------------------------------------------------------------
# binary upgrade

def new_pid(pid_file, old):
    try:
        p = int(open(pid_file).read())
    except (OSError, ValueError):
        return None
    return p if p != old else None


def test_binary_upgrade_under_load(start_origin, start_sluice, tmp_path, procs):
    from conftest import SLUICE_BIN
    o = start_origin(name="A")
    binary = tmp_path / "sluice-new"
    shutil.copy(SLUICE_BIN, binary)
    pid_file = str(tmp_path / "up.pid")
    sl = start_sluice(gen_config(0, o, o, pid_file=pid_file))
    # Run the copy: start_sluice ran build/sluice, so start our own from the copy.
    sl.stop()
    from conftest import Proc
    # Registered: a sanitizer report of it or of its successor (same log) fails the test.
    p = procs.add(Proc([binary, "-c", sl.config_path], tmp_path / "up.log"))
    successor = None
    try:
        wait_for(lambda: os.path.exists(pid_file) and new_pid(pid_file, 0) == p.pid,
                 10 * SLOW, what="first process serving")
        wait_for(lambda: request(sl.port, "GET", "/echo/stable").status == 200, 5 * SLOW)
        # A "new" binary installed at the same path (as a package upgrade does).
        shutil.copy(SLUICE_BIN, str(binary) + ".tmp")
        os.replace(str(binary) + ".tmp", binary)
        with Load(sl.port, lambda: "/echo/stable/x", expect_200) as load:
            time.sleep(0.3)
            os.kill(p.pid, signal.SIGUSR2)
            successor = wait_for(lambda: new_pid(pid_file, p.pid), 15 * SLOW,
                                 what="the new process's pid")
            assert p.wait(20 * SLOW) == 0, p.log()
            time.sleep(0.5)
        print("upgrade under load: %d requests ok, %d failed, %d idle keep-alive retries"
              % (load.ok, len(load.failures), load.idle_retries))
        assert not load.failures, load.failures[:10]
        assert load.ok > 50
        assert pid_alive(successor)
        r = request(sl.port, "GET", "/echo/stable/y")
        assert r.status == 200
        # The admin listener was handed over too.
        r = request(sl.admin_port, "GET", "/metrics")
        assert r.status == 200 and b"sluice_config_generation 1" in r.body
        assert "upgrade: the new process %d is serving" % successor in p.log()
    finally:
        if successor and pid_alive(successor):
            os.kill(successor, signal.SIGTERM)
            wait_for(lambda: not pid_alive(successor), 20 * SLOW, what="successor exit")
        p.stop()


def test_binary_upgrade_failure_keeps_old(start_origin, start_sluice, tmp_path, procs):
    from conftest import SLUICE_BIN, Proc
    o = start_origin(name="A")
    binary = tmp_path / "sluice-new"
    shutil.copy(SLUICE_BIN, binary)
    pid_file = str(tmp_path / "up.pid")
    sl = start_sluice(gen_config(0, o, o, pid_file=pid_file))
    sl.stop()
    p = procs.add(Proc([binary, "-c", sl.config_path], tmp_path / "up.log"))
    p.check_exit = True
    try:
        wait_for(lambda: new_pid(pid_file, 0) == p.pid, 10 * SLOW, what="serving")
        wait_for(lambda: request(sl.port, "GET", "/echo/stable").status == 200, 5 * SLOW)
        # 1: the binary cannot run.
        os.chmod(binary, 0o644)
        os.kill(p.pid, signal.SIGUSR2)
        wait_for(lambda: "could not run the binary" in p.log(), 10 * SLOW,
                 what="the failed exec logged")
        os.chmod(binary, 0o755)
        # 2: the configuration is bad at that moment.
        text = open(sl.config_path).read()
        with open(sl.config_path, "a") as f:
            f.write("routes: [oops\n")
        os.kill(p.pid, signal.SIGUSR2)
        wait_for(lambda: p.log().count("keeps serving") == 2, 10 * SLOW,
                 what="the second failure logged")
        with open(sl.config_path, "w") as f:
            f.write(text)
        assert p.alive()
        assert int(open(pid_file).read()) == p.pid
        for _ in range(10):
            assert request(sl.port, "GET", "/echo/stable").status == 200
        r = request(sl.admin_port, "GET", "/metrics")
        assert b"sluice_upgrades_failed_total 2" in r.body
    finally:
        assert p.stop() == 0


# ---------------------------------------------------------------------------------------
# autoscale: the supervisor follows the new gateway, its instances run on

def port_range(n):
    """n consecutive ports free now, below the ephemeral range (random bases)."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            pass
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of %d free ports" % n)


def test_autoscaled_instances_survive_reload(start_sluice):
    from test_autoscale import config as as_config, state
    cfg = as_config(port_range(10), 2, 4, initial=2)
    sl = start_sluice(cfg)
    wait_for(lambda: state(sl)["ready"] == 2, 20 * SLOW, what="2 instances ready")
    pids = sorted(i["pid"] for i in state(sl)["instances"])
    starts = state(sl)["starts"]
    # A route changes; the autoscaled service does not.
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["routes"].insert(0, {"match": {"path_prefix": "/echo"}, "service": "app"})
    write_config(sl, cfg2)
    with Load(sl.port, lambda: random.choice(["/health", "/echo/x"]), expect_200,
              keepalive=2, fresh=1) as load:
        time.sleep(0.3)
        reload_and_wait(sl, 2)
        time.sleep(1.0)
    assert not load.failures, load.failures[:10]
    st = state(sl)
    assert sorted(i["pid"] for i in st["instances"]) == pids, st
    assert st["starts"] == starts and st["ready"] == 2, st
    assert all(i["state"] == "ready" for i in st["instances"]), st
    servers_now = servers(sl, "app")
    assert sum(1 for s in servers_now.values() if s["state"] == "up") == 2, servers_now
    # The autoscaled service itself changed: refused, instances untouched.
    cfg3 = json.loads(json.dumps(cfg2))
    cfg3["services"]["app"]["autoscale"]["max"] = 5
    write_config(sl, cfg3)
    sl.proc.signal(signal.SIGHUP)
    wait_for(lambda: metric(sl, "sluice_reloads_total", result="failed") == 1, 10 * SLOW,
             what="refused")
    assert "autoscaled services changed" in sl.log()
    assert sorted(i["pid"] for i in state(sl)["instances"]) == pids
    assert metric(sl, "sluice_config_generation") == 2
