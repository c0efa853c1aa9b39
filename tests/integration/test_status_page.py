"""The admin listener's live status page: GET / serves src/ops/status_page.html exactly as
built in (one self-contained page), GET /status.json feeds it, and in headless Chromium
(Debian's /usr/bin/chromium) the page's charts draw non-zero data while sluice is under
load. Screenshots at phone and desktop sizes are kept in $SLUICE_BUILD/test-artifacts/
(build/test-artifacts/ by default), with the rendered DOM.

The page exposes what it drew for these tests: each chart's latest values as text in
#now-*, each canvas's data-points / data-max / data-max-<series>, #conn's data-state and
data-polls, and data-service / data-server / data-state on every services row.

Chromium runs in a session of its own with its output in files; it is waited for with a
bound and its process group is killed by id afterwards (renderer and zygote children
included), so nothing outlives the test."""

import os
import re
import signal
import struct
import subprocess
import threading
import time
from collections import Counter
from html.parser import HTMLParser

import pytest

from conftest import (BUILD, IO_TIMEOUT, REPO, SLOW, ConnectionClosed, HttpConn, request,
                      sluice_config, wait_for)

PAGE = REPO / "src" / "ops" / "status_page.html"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = BUILD / "test-artifacts"
CHROMIUM_TIMEOUT = 60.0 * SLOW  # one headless run; a normal one takes 1-3 s

needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="%s is missing: install Debian's chromium (apt-get install chromium)" % CHROMIUM)

SERIES_KEYS = ("t", "rps", "p50_ms", "p95_ms", "p99_ms", "status_2xx", "status_3xx",
               "status_4xx", "status_5xx", "ratelimited", "cache_hit_ratio")
NULLABLE = ("p50_ms", "p95_ms", "p99_ms", "cache_hit_ratio")


# ---------------------------------------------------------------------------------------
# sluice with one origin, a rate-limited route, and background load

RATE_LIMITED_PREFIX = "/limited"


@pytest.fixture
def status_gateway(start_origin, start_sluice):
    """(sluice, origin, page URL): every path goes to one demo-origin; paths under
    /limited are also limited to 20 a second for the route as a whole, so load makes 429s."""
    origin = start_origin(name="status-origin")
    cfg = sluice_config(
        services={"origin": {"keepalive": 32, "servers": [{"address": origin.address}]}},
        routes=[{"match": {"path_prefix": RATE_LIMITED_PREFIX}, "service": "origin",
                 "rate_limits": [{"key": "route", "rate": "20/second"}]},
                {"match": {"path_prefix": "/"}, "service": "origin"}])
    sl = start_sluice(cfg)
    return sl, origin, "http://127.0.0.1:%d/" % sl.admin_port


def load_path(i):
    """The i-th request of the mix: mostly 200s, some 404s, rate-limited requests (429
    beyond 20/s), slow requests (spread the percentiles), a few 500s and 302s. (500, not
    502-504: those count as failures for passive health.)"""
    m = i % 40
    if m in (0, 1, 20, 21):
        return "/no-such-page"  # the demo origin's 404
    if m in (2, 12, 22, 32):
        return "%s/%d" % (RATE_LIMITED_PREFIX, i)
    if m in (3, 23):
        return "/sleep/5"
    if m == 4:
        return "/status/500"
    if m == 5:
        return "/status/302"
    return "/api/blog/posts"


class Load:
    """THREADS keep-alive clients sending the load_path mix, paced to RATE requests a
    second in all, until stop(), DURATION seconds or MAX_REQUESTS, whichever comes first."""

    THREADS = 4
    RATE = 800.0
    DURATION = 6.0 * SLOW
    MAX_REQUESTS = 6000

    def __init__(self, port):
        self.port = port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.statuses = Counter()
        self.errors = []
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(self.THREADS)]
        for t in self.threads:
            t.start()

    def _run(self, k):
        per_thread = self.RATE / self.THREADS
        cap = self.MAX_REQUESTS // self.THREADS
        deadline = self.started + self.DURATION
        conn = None
        for j in range(cap):
            now = time.monotonic()
            if self.stopping.is_set() or now >= deadline:
                break
            due = self.started + j / per_thread
            if due > now and self.stopping.wait(due - now):
                break
            try:
                if conn is None:
                    conn = HttpConn(self.port, timeout=IO_TIMEOUT)
                r = conn.request("GET", load_path(j * self.THREADS + k))
                with self.lock:
                    self.statuses[r.status] += 1
                if (r.header("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, ConnectionClosed, AssertionError) as e:
                with self.lock:
                    self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(IO_TIMEOUT + 5)
        assert not any(t.is_alive() for t in self.threads), "load threads did not stop"


def status_json(port):
    r = request(port, "GET", "/status.json")
    assert r.status == 200, r
    return r.json()


def wait_for_traffic(port, points, timeout, requests=1):
    """Poll /status.json until its series hold `points` points and at least `requests`
    requests; returns the document. Fails with the last answer otherwise."""
    last = {}

    def ready():
        try:
            r = request(port, "GET", "/status.json")
        except (OSError, ConnectionClosed) as e:
            last["answer"] = repr(e)
            return None
        last["answer"] = r
        if r.status == 404:
            return "missing"
        if r.status != 200:
            return None
        d = r.json()
        s = d.get("series", {})
        # rates: a count over the time between two samples, about but not exactly 1 s
        if len(s.get("t", [])) >= points and \
                sum(v or 0 for v in s.get("rps", [])) >= requests * 0.95:
            return d
        return None

    try:
        d = wait_for(ready, timeout, interval=0.25, what="traffic in /status.json")
    except AssertionError:
        d = None
    if d == "missing":
        pytest.fail("the admin listener does not serve GET /status.json: %r" % last["answer"],
                    pytrace=False)
    if d is None:
        pytest.fail("GET /status.json on the admin listener showed no traffic within %.0f s;"
                    " last answer: %r" % (timeout, last.get("answer")), pytrace=False)
    return d


# ---------------------------------------------------------------------------------------
# headless Chromium

def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_chromium(tmp_path, name, url, args, budget_ms):
    """Run headless Chromium on url with extra args; --virtual-time-budget lets the page's
    timers (and so several polls) run for budget_ms of virtual time. Returns stdout as
    text. Bounded by CHROMIUM_TIMEOUT; its process group is killed afterwards."""
    out_path = tmp_path / ("chromium-%s.out" % name)
    err_path = tmp_path / ("chromium-%s.log" % name)
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--user-data-dir=%s" % (tmp_path / ("chromium-profile-%s" % name)),
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-dev-shm-usage", "--mute-audio",
            "--hide-scrollbars", "--force-device-scale-factor=1",
            "--virtual-time-budget=%d" % budget_ms] + list(args) + [url]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=CHROMIUM_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _kill_group(p.pid)  # whatever of its process group is left (or all of it)
            p.wait(10)
    log = err_path.read_text(errors="replace")
    assert rc is not None, "chromium (pid %d) did not finish within %.0f s:\n%s" % (
        p.pid, CHROMIUM_TIMEOUT, log[-3000:])
    assert rc == 0, "chromium exited with %d:\n%s" % (rc, log[-3000:])
    return out_path.read_text(errors="replace")


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Dom(HTMLParser):
    """What the tests read from a --dump-dom: attributes and text of every element with an
    id, and the attributes of every services row."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.attrs = {}
        self.text = {}
        self.rows = []
        self._stack = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-server" in a:
            self.rows.append(a)
        if a.get("id"):
            self.attrs[a["id"]] = a
            self.text[a["id"]] = ""
        if tag not in VOID:
            self._stack.append((tag, a.get("id")))

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                return

    def handle_data(self, data):
        for _, ident in self._stack:
            if ident:
                self.text[ident] += data

    def num(self, ident, attr):
        a = self.attrs.get(ident)
        assert a is not None, "no element #%s in the page" % ident
        assert attr in a, "#%s has no %s: %r" % (ident, attr, a)
        return float(a[attr])


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "%s is no PNG" % path
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------------------
# the page itself

def test_page_source_is_self_contained_and_small():
    html = PAGE.read_text()
    assert len(html.encode()) < 64 * 1024
    assert "<canvas" in html and "<script>" in html and "<style>" in html
    # nothing is loaded from anywhere: no script/style/image URLs, only data: and #anchors
    for m in re.finditer(r"""\b(?:src|href|srcset|action|poster)\s*=\s*["']?([^"'\s>]*)""",
                         html, re.I):
        assert m.group(1).startswith(("data:", "#")), "external reference %r" % m.group(0)
    assert not re.search(r"@import|url\(|https?://|<iframe|<object|<embed|<img\b", html, re.I)
    # the only thing fetched is status.json, from the page's own origin
    assert re.findall(r"fetch\(\s*([^,)]+)", html) == ["'status.json'"]
    assert "name=\"viewport\"" in html  # readable on a phone


def test_admin_serves_the_page_and_status_json(status_gateway):
    sl, origin, _ = status_gateway
    r = request(sl.admin_port, "GET", "/")
    assert r.status == 200, r
    assert r.header("Content-Type", "").startswith("text/html"), r
    assert r.body == PAGE.read_bytes(), \
        "GET / differs from src/ops/status_page.html (rebuild: make all)"

    for _ in range(20):
        assert request(sl.port, "GET", "/api/blog/posts").status == 200
    d = wait_for_traffic(sl.admin_port, 1, 10 * SLOW, requests=20)
    assert isinstance(d["version"], str) and d["version"]
    assert isinstance(d["uptime_s"], (int, float)) and d["uptime_s"] >= 0
    assert d["interval_s"] == 1
    s = d["series"]
    assert set(SERIES_KEYS) <= set(s), sorted(s)
    n = len(s["t"])
    assert 1 <= n <= 300
    for k in SERIES_KEYS:
        assert len(s[k]) == n, "series %s has %d points, t has %d" % (k, len(s[k]), n)
        for v in s[k]:
            assert v is None and k in NULLABLE or isinstance(v, (int, float)) and v >= 0, \
                "series %s: bad value %r" % (k, v)
    assert s["t"] == sorted(s["t"]) and s["t"][-1] > 1.5e12  # unix time in ms
    assert all(v is None or 0 <= v <= 1 for v in s["cache_hit_ratio"])
    assert sum(s["rps"]) >= 20 * 0.95  # per-second rates over samples about 1 s apart
    assert sum(s["rps"]) == pytest.approx(sum(sum(s[k]) for k in ("status_2xx", "status_3xx",
                                                                 "status_4xx", "status_5xx")))
    for k in ("requests", "status_5xx", "ratelimited", "connections_active"):
        assert isinstance(d["totals"][k], int) and d["totals"][k] >= 0, d["totals"]
    assert d["totals"]["requests"] >= 20
    assert [x["name"] for x in d["services"]] == ["origin"]
    svc = d["services"][0]
    assert isinstance(svc["balance"], str)
    (srv,) = svc["servers"]
    assert srv["address"] == origin.address and srv["pool"] == "primary"
    assert srv["state"] == "up"
    assert srv["requests"] >= 20 and srv["in_flight"] >= 0 and srv["failures"] == 0
    assert srv["weight"] >= 1
    assert isinstance(d["alerts"], list)


@needs_chromium
def test_status_page_in_chromium_under_load(status_gateway, tmp_path):
    sl, origin, url = status_gateway
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    load = Load(sl.port)
    try:
        # a few seconds of history first, then the browser, while the load goes on
        wait_for_traffic(sl.admin_port, 3, 15 * SLOW)
        dom_html = run_chromium(tmp_path, "dom", url, ["--dump-dom"], budget_ms=5000)
        (ARTIFACTS / "status-page-dom.html").write_text(dom_html)
        shots = {}
        for name, (w, h) in (("phone", (390, 844)), ("desktop", (1280, 900))):
            path = ARTIFACTS / ("status-page-%s.png" % name)
            if path.exists():
                path.unlink()
            run_chromium(tmp_path, name, url,
                         ["--window-size=%d,%d" % (w, h), "--screenshot=%s" % path],
                         budget_ms=3000)
            shots[name] = (path, (w, h))
    finally:
        load.stop()

    assert not load.errors, "load errors: %r" % load.errors[:5]
    assert load.statuses[200] > 0 and load.statuses[404] > 0 and load.statuses[429] > 0, \
        load.statuses

    dom = Dom(dom_html)
    conn = dom.attrs.get("conn", {})
    assert conn.get("data-state") == "live", "page not live: %r %r" % (
        conn, dom.text.get("conn"))
    assert int(conn.get("data-polls", 0)) >= 2, "the page polled only %r times" % conn

    # req/s: several points, non-zero, shown with its unit
    assert dom.num("chart-rps", "data-points") > 1
    assert dom.num("chart-rps", "data-max") > 0
    assert dom.text["now-rps"].strip().endswith("req/s"), dom.text["now-rps"]
    # latency percentiles: the /sleep/5 requests put p99 at 5 ms or more
    assert dom.num("chart-latency", "data-points") > 1
    assert dom.num("chart-latency", "data-max-p50") > 0
    assert dom.num("chart-latency", "data-max-p99") >= dom.num("chart-latency", "data-max-p50")
    assert dom.num("chart-latency", "data-max-p99") >= 4.0
    for k in ("p50", "p95", "p99"):
        assert re.fullmatch(r"[0-9.]+ m?s|\u2013", dom.text["now-" + k].strip()), dom.text
    # responses by status class: the mix has 2xx, 3xx, 4xx and 5xx
    for k in ("2xx", "3xx", "4xx", "5xx"):
        assert dom.num("chart-status", "data-max-" + k) > 0, (k, dom.attrs["chart-status"])
    assert dom.num("chart-status", "data-max") >= dom.num("chart-status", "data-max-2xx")
    # rate-limited per second: the /limited route rejects beyond 20/s
    assert dom.num("chart-ratelimited", "data-max") > 0
    assert dom.text["now-ratelimited"].strip().endswith("/s")
    # cache hit ratio: no cache lookups means an explicit note, not an empty chart
    if dom.num("chart-cache", "data-points") == 0:
        assert dom.text["now-cache"].strip() == "no cache lookups"
    else:
        assert 0 <= dom.num("chart-cache", "data-max") <= 1
    # services table: the origin's server, up
    rows = [r for r in dom.rows if r.get("data-server") == origin.address]
    assert rows, "origin %s not in the services table: %r" % (origin.address, dom.rows)
    assert rows[0].get("data-service") == "origin" and rows[0].get("data-state") == "up", rows
    assert "alerts" in dom.attrs

    for name, (path, (w, h)) in shots.items():
        assert path.exists(), "no %s screenshot" % name
        assert png_size(path) == (w, h), (name, png_size(path))
        # a blank page of that size compresses to a few KiB; charts and text make more
        assert path.stat().st_size > 15000, (name, path.stat().st_size)
