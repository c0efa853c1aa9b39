"""deploy/prometheus/ against the real tools: promtool checks the example configuration
and the alert rules and runs the rules' unit tests; promtool lints sluice's /metrics
exposition; and a real Prometheus on loopback scrapes sluice, counts exactly the
requests sent, and loads and evaluates the alert rules without error."""

import os
import subprocess
import time
import urllib.parse

import pytest

from conftest import (REPO, SLOW, HttpConn, Proc, free_port, one_service_config,
                      parse_prometheus, request, send_raw, sluice_config, wait_listening)

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
DEPLOY = REPO / "deploy" / "prometheus"
TOOL_TIMEOUT = 60 * SLOW  # bound of every promtool run
PROM_START_TIMEOUT = 30 * SLOW  # Prometheus listening and /-/ready
PROM_STOP_TIMEOUT = 10.0  # SIGTERM -> SIGKILL bound in teardown
SCRAPE_WAIT = 30 * SLOW  # bound on waiting for a scraped value to show in a query

needs_promtool = pytest.mark.skipif(
    not os.access(PROMTOOL, os.X_OK),
    reason="%s is not installed (the Debian package prometheus; make deps installs it)"
    % PROMTOOL)
needs_prometheus = pytest.mark.skipif(
    not os.access(PROMETHEUS, os.X_OK),
    reason="%s is not installed (the Debian package prometheus; make deps installs it)"
    % PROMETHEUS)

# The rules of deploy/prometheus/alerts.yml: name -> (for, in seconds; severity).
RULES = {
    "HighErrorRate": (60, "critical"),
    "HighLatencyP95": (300, "warning"),
    "LowCacheHitRate": (600, "warning"),
    "HighCPU": (300, "warning"),
    "HighMemory": (300, "warning"),
    "UpstreamPoolExhausted": (300, "warning"),
}


def promtool(*args, stdin=None):
    """Run promtool in the repository root: (exit status, stdout + stderr)."""
    r = subprocess.run([PROMTOOL, *[str(a) for a in args]], input=stdin, cwd=REPO,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=TOOL_TIMEOUT)
    return r.returncode, r.stdout.decode(errors="replace")


# ---------------------------------------------------------------------------------------
# a. the deploy files


@needs_promtool
def test_promtool_check_config():
    rc, out = promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert rc == 0, out
    assert "SUCCESS: 6 rules found" in out, out  # it loads alerts.yml beside it


@needs_promtool
def test_promtool_check_rules():
    rc, out = promtool("check", "rules", "deploy/prometheus/alerts.yml")
    assert rc == 0, out
    assert "SUCCESS: 6 rules found" in out, out


@needs_promtool
def test_promtool_test_rules():
    rc, out = promtool("test", "rules", "deploy/prometheus/alerts_test.yml")
    assert rc == 0, out
    assert "SUCCESS" in out and "FAILED" not in out, out


# ---------------------------------------------------------------------------------------
# b. sluice's exposition passes promtool's lint


@needs_promtool
def test_metrics_pass_promtool_check_metrics(start_origin, start_sluice):
    o = start_origin()
    sl = start_sluice(one_service_config(o.address))
    # Every status class and several methods, so that the label sets of a busy gateway
    # show: 200, origin 404 (route "/" takes every path), 503, OTHER, and a 400 refused
    # before routing (route="unmatched").
    kinds = [("GET", "/echo/a", None, 200), ("POST", "/echo/b", b"data", 200),
             ("PUT", "/echo/c", b"data", 200), ("DELETE", "/echo/d", None, 200),
             ("HEAD", "/echo/e", None, 200), ("PATCH", "/echo/f", b"x", 200),
             ("GET", "/no/such/path", None, 404), ("GET", "/status/503", None, 503),
             ("PURGE", "/echo/g", None, 200)]
    sent = 0
    with HttpConn(sl.port) as c:
        for i in range(300):
            method, target, body, status = kinds[i % len(kinds)]
            r = c.request(method, target, body=body)
            assert r.status == status, (method, target, r)
            sent += 1
    for _ in range(3):
        r, _ = send_raw(sl.port, b"NOT A REQUEST\r\n\r\n")
        assert r is not None and r.status == 400, r
        sent += 1

    # A request is counted just after its answer is written: wait until all are.
    def scrape():
        text = sl.metrics_text()
        m = parse_prometheus(text)
        return text, m, sum(v for _, v in m.find("http_requests_total"))

    deadline = time.monotonic() + 3 * SLOW
    text, m, counted = scrape()
    while counted != sent and time.monotonic() < deadline:
        time.sleep(0.05)
        text, m, counted = scrape()
    assert counted == sent, (counted, sent)
    statuses = {l["status"] for l, _ in m.find("http_requests_total")}
    assert {"200", "404", "503", "400"} <= statuses, statuses

    rc, out = promtool("check", "metrics", stdin=text.encode())
    if rc != 0 or out.strip():
        pytest.fail("promtool check metrics exited %d on sluice's /metrics; its findings"
                    " (metric names and help texts are defined in src/):\n%s"
                    % (rc, out), pytrace=False)


# ---------------------------------------------------------------------------------------
# c. a real Prometheus scrapes sluice


class Prometheus:
    def __init__(self, proc, port):
        self.proc = proc
        self.pid = proc.pid
        self.port = port

    def api(self, path, **params):
        """GET /api/v1/PATH?params: the "data" of a successful answer."""
        target = "/api/v1/" + path
        if params:
            target += "?" + urllib.parse.urlencode(params)
        r = request(self.port, "GET", target)
        assert r.status == 200, r
        d = r.json()
        assert d["status"] == "success", d
        return d["data"]

    def scalar(self, expr):
        """The value of an instant query with at most one result (None when empty)."""
        res = self.api("query", query=expr)["result"]
        if not res:
            return None
        assert len(res) == 1, res
        return float(res[0]["value"][1])


def _ready(port):
    try:
        return request(port, "GET", "/-/ready", timeout=2).status == 200
    except OSError:
        return False


@pytest.fixture
def start_prometheus(procs, tmp_path):
    """start_prometheus(targets, rule_files=()) -> Prometheus, scraping the targets (and
    evaluating the rules) every second, listening on a free loopback port, its data in
    tmp_path. Stopped by PID in teardown through procs (SIGTERM, SIGKILL after
    PROC_STOP_TIMEOUT)."""
    counter = [0]

    def start(targets, rule_files=()):
        for _ in range(3):
            counter[0] += 1
            n = counter[0]
            port = free_port()
            cfg = tmp_path / ("prometheus-%d.yml" % n)
            text = ("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n")
            if rule_files:
                text += "rule_files:\n" + "".join("  - %s\n" % f for f in rule_files)
            text += ("scrape_configs:\n"
                     "  - job_name: sluice\n"
                     "    metrics_path: /metrics\n"
                     "    static_configs:\n"
                     "      - targets: [%s]\n" % ", ".join('"%s"' % t for t in targets))
            cfg.write_text(text)
            p = procs.add(Proc([PROMETHEUS,
                                "--config.file=%s" % cfg,
                                "--storage.tsdb.path=%s" % (tmp_path / ("tsdb-%d" % n)),
                                "--storage.tsdb.retention.time=1h",
                                "--web.listen-address=127.0.0.1:%d" % port,
                                "--log.level=warn"],
                               tmp_path / ("prometheus-%d.log" % n)))
            if wait_listening(p, port, PROM_START_TIMEOUT):
                deadline = time.monotonic() + PROM_START_TIMEOUT
                while p.alive() and time.monotonic() < deadline:
                    if _ready(port):
                        return Prometheus(p, port)
                    time.sleep(0.1)
            p.stop(PROM_STOP_TIMEOUT)
            if "address already in use" not in p.log().lower():
                raise RuntimeError("prometheus did not start (config %s):\n%s\n--- log:\n%s"
                                   % (cfg, text, p.log()[-3000:]))
        raise RuntimeError("prometheus: no usable port")

    return start


def poll(fn, want, timeout, what):
    """Call fn() until it returns want or timeout seconds pass; assert it did."""
    deadline = time.monotonic() + timeout
    got = fn()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = fn()
    assert got == want, "%s: %r after %.0fs, expected %r" % (what, got, timeout, want)


@needs_prometheus
def test_prometheus_counts_exactly_the_requests_sent(start_origin, start_sluice,
                                                     start_prometheus):
    N = 137
    o = start_origin()
    sl = start_sluice(sluice_config(
        services={"origin": {"servers": [{"address": o.address}]}},
        routes=[{"match": {"path_prefix": "/echo"}, "service": "origin"},
                {"match": {"path_prefix": "/"}, "service": "origin"}]))
    prom = start_prometheus(["127.0.0.1:%d" % sl.admin_port],
                            rule_files=[DEPLOY / "alerts.yml"])
    poll(lambda: prom.scalar('up{job="sluice"}'), 1.0, SCRAPE_WAIT,
         "up of sluice's admin listener")

    with HttpConn(sl.port) as c:
        for i in range(N):
            r = c.request("GET" if i % 3 else "POST", "/echo/%d" % i,
                          body=None if i % 3 else b"x")
            assert r.status == 200, r
        for _ in range(20):  # another route: must not be counted under "/echo"
            assert c.request("GET", "/health").status == 200

    # sluice's own count first (a request is counted just after its answer is written):
    # the route label is the route's path_prefix
    poll(lambda: sum(v for _, v in sl.metrics().find("http_requests_total", route="/echo")),
         N, 3 * SLOW, "sum of http_requests_total for route /echo in sluice's /metrics")
    poll(lambda: prom.scalar('sum(http_requests_total{job="sluice",route="/echo"})'),
         float(N), SCRAPE_WAIT, "sum of http_requests_total for route /echo in Prometheus")
    poll(lambda: prom.scalar('sum(http_requests_total{job="sluice",route="/"})'),
         20.0, SCRAPE_WAIT, "sum of http_requests_total for route / in Prometheus")

    # The deploy rules loaded as written and evaluate against sluice's real series
    # without error (an evaluation error, such as a many-to-many match, shows as
    # health "err").
    def evaluated():
        groups = prom.api("rules", type="alert")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if any(r.get("health") == "unknown" for r in rules):
            return None
        return sorted((g["name"], r["name"], r["duration"], r["labels"].get("severity"),
                       r["health"], r.get("lastError", "")) for g in groups
                      for r in g["rules"])

    deadline = time.monotonic() + SCRAPE_WAIT
    got = evaluated()
    while got is None and time.monotonic() < deadline:
        time.sleep(0.2)
        got = evaluated()
    assert got == sorted(("sluice", name, dur, sev, "ok", "")
                         for name, (dur, sev) in RULES.items()), got
    # No request failed and none was slow: the request alerts are neither pending nor
    # firing. (The host and pool alerts depend on the machine, not on this test.)
    active = [a for a in prom.api("alerts")["alerts"]
              if a["labels"]["alertname"] in ("HighErrorRate", "HighLatencyP95")]
    assert active == [], active
