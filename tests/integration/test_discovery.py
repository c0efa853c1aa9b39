"""DNS discovery: a server written as a host name with `resolve:` follows what the name
resolves to, the way a Kubernetes headless Service is followed.

sluice runs in its own mount namespace (unshare -m, root only) with a private
/etc/hosts bind-mounted over the real one, so the test can change what the name
resolves to while sluice runs, through the real resolver (getaddrinfo)."""

import os
import shutil
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import (ORIGIN_BIN, SLOW, SLUICE_BIN, HttpConn, Proc, Sluice, free_port, request,
                      to_yaml, wait_for, wait_listening)

NAME = "backend.sluice.test"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"),
    reason="needs root and unshare(1) for a private /etc/hosts")


def write_hosts(path, ips):
    # In place (same inode): the bind mount inside sluice's namespace sees it.
    with open(path, "r+") as f:
        f.seek(0)
        f.truncate()
        f.write("127.0.0.1 localhost\n" + "".join("%s %s\n" % (ip, NAME) for ip in ips))


def start_origin_at(procs, tmp_path, ip, port, name):
    p = procs.add(Proc([ORIGIN_BIN, "--host", ip, "--port", port, "--name", name, "--quiet"],
                       tmp_path / ("origin-%s.log" % name)))
    for _ in range(200):
        if p.alive():
            import socket
            s = socket.socket()
            s.settimeout(0.2)
            try:
                s.connect((ip, port))
                s.close()
                return p
            except OSError:
                time.sleep(0.02)
            finally:
                s.close()
    raise RuntimeError("origin %s did not start: %s" % (name, p.log()))


def test_servers_follow_the_name(procs, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    write_hosts(hosts, ["127.0.0.2"])
    oport = free_port()
    start_origin_at(procs, tmp_path, "127.0.0.2", oport, "A")
    start_origin_at(procs, tmp_path, "127.0.0.3", oport, "B")

    port, admin = free_port(), free_port()
    cfg = {"listen": ["127.0.0.1:%d" % port], "workers": 2,
           "admin": {"listen": "127.0.0.1:%d" % admin},
           "limits": {"shutdown_timeout": "2s"},
           "services": {"s": {"retries": 1, "servers": [
               {"address": "%s:%d" % (NAME, oport), "resolve": "200ms"}]}},
           "routes": [{"match": {"path_prefix": "/"}, "service": "s"}]}
    path = tmp_path / "sluice.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    p = procs.add(Proc(["unshare", "-m", "sh", "-c",
                        'mount --bind "$0" /etc/hosts && exec "$1" -c "$2"',
                        str(hosts), str(SLUICE_BIN), str(path)],
                       tmp_path / "sluice.log"))
    assert wait_listening(p, port, 10 * SLOW), p.log()
    p.check_exit = True
    sl = Sluice(p, port, admin, path, cfg)

    failures = []
    stop = threading.Event()

    def load():
        with HttpConn(port) as c:
            while not stop.is_set():
                r = c.request("GET", "/echo")
                if r.status != 200:
                    failures.append(r.status)
                time.sleep(0.005)

    t = threading.Thread(target=load)
    t.start()
    try:
        seen = Counter(request(port, "GET", "/echo").header("X-Origin") for _ in range(10))
        assert seen == {"A": 10}, seen

        write_hosts(hosts, ["127.0.0.2", "127.0.0.3"])  # scaled up: B appears
        wait_for(lambda: "B" in Counter(request(port, "GET", "/echo").header("X-Origin")
                                        for _ in range(6)), 5 * SLOW, what="B joins")

        write_hosts(hosts, ["127.0.0.3"])  # A goes away: drained, then removed
        wait_for(lambda: "127.0.0.2:%d: draining -> removed" % oport in sl.log()
                 or "127.0.0.2:%d: up -> draining" % oport in sl.log(), 5 * SLOW,
                 what="A drained")
        time.sleep(0.3)
        seen = Counter(request(port, "GET", "/echo").header("X-Origin") for _ in range(10))
        assert seen == {"B": 10}, seen

        write_hosts(hosts, [])  # the name resolves to nothing: keep serving with what we had
        time.sleep(0.8)
        assert request(port, "GET", "/echo").header("X-Origin") == "B"
    finally:
        stop.set()
        t.join(10)
    assert not failures, failures
    m = sl.metrics()
    assert m.value("upstream_up", service="s", server="127.0.0.3:%d" % oport,
                   pool="primary") == 1


def test_unresolvable_name_without_resolve_fails_start(tmp_path):
    port, admin = free_port(), free_port()
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml({
        "listen": ["127.0.0.1:%d" % port], "admin": {"listen": "127.0.0.1:%d" % admin},
        "services": {"s": {"servers": [{"address": "no-such-host.invalid:80"}]}},
        "routes": [{"match": {"path_prefix": "/"}, "service": "s"}]}) + "\n")
    r = subprocess.run([str(SLUICE_BIN), "-c", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert "no-such-host.invalid:80: cannot resolve" in r.stderr


def test_many_successive_addresses_reuse_removed_slots(procs, tmp_path):
    """Pods replaced again and again get new addresses: a pool has 64 spare slots, so past
    64 new addresses the slots of servers removed a while ago are reused (their kept-alive
    connections closed, not reused). 80 successive addresses: requests keep succeeding."""
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    write_hosts(hosts, ["127.0.1.1"])
    oport = free_port()
    # one origin on every 127.x address
    start_origin_at(procs, tmp_path, "0.0.0.0", oport, "any")
    port, admin = free_port(), free_port()
    cfg = {"listen": ["127.0.0.1:%d" % port], "workers": 2,
           "admin": {"listen": "127.0.0.1:%d" % admin},
           "limits": {"shutdown_timeout": "2s"},
           "services": {"s": {"keepalive": 4, "retries": 1, "servers": [
               {"address": "%s:%d" % (NAME, oport), "resolve": "100ms"}]}},
           "routes": [{"match": {"path_prefix": "/"}, "service": "s"}]}
    path = tmp_path / "sluice.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    p = procs.add(Proc(["unshare", "-m", "sh", "-c",
                        'mount --bind "$0" /etc/hosts && exec "$1" -c "$2"',
                        str(hosts), str(SLUICE_BIN), str(path)],
                       tmp_path / "sluice.log"))
    assert wait_listening(p, port, 10 * SLOW), p.log()
    p.check_exit = True
    bad = []
    with HttpConn(port) as c:
        for i in range(2, 82):
            write_hosts(hosts, ["127.0.1.%d" % i])
            end = time.time() + 0.15 * SLOW
            while time.time() < end:
                r = c.request("GET", "/echo")
                if r.status != 200:
                    bad.append((i, r.status))
                time.sleep(0.01)
    # the last address is reachable through sluice
    wait_for(lambda: "127.0.1.81:%d: added" % oport in p.log(), 5 * SLOW, what="last added")
    assert request(port, "GET", "/echo").status == 200
    assert not bad, bad[:10]
    log = p.log()
    assert "takes the slot of removed" in log
    assert "pool full" not in log
