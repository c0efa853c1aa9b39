"""Shared fixtures and helpers for the sluice integration tests.

Everything runs over 127.0.0.1 with dynamically chosen ports, so two runs of the suite
can share a machine. Every process a test starts (sluice, demo-origin) is started by a
fixture and stopped by its PID in teardown (SIGTERM, then SIGKILL after a bound); the
small Python origins are threads in this process, stopped by their fixture. Every socket
has a timeout, so every test ends in bounded time.

$SLUICE_BUILD (default "build", relative to the repository root) names the build
directory both binaries come from; a directory whose name ends in "-san" is the
ASan/UBSan build, under which timing and memory bounds are loosened (see SAN).
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = (REPO / os.environ.get("SLUICE_BUILD", "build")).resolve()
SLUICE_BIN = BUILD / "sluice"
ORIGIN_BIN = BUILD / "demo-origin"
SAN = BUILD.name.endswith("-san")
# Multiplier for timing slack: sanitizer builds are several times slower.
SLOW = 3.0 if SAN else 1.0

IO_TIMEOUT = 10.0  # default timeout of every socket operation
PROC_STOP_TIMEOUT = 10.0  # SIGTERM -> SIGKILL bound in teardown

SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
)


def pytest_configure(config):
    missing = [str(p) for p in (SLUICE_BIN, ORIGIN_BIN) if not os.access(p, os.X_OK)]
    if missing:
        raise pytest.UsageError(
            "integration tests need %s; build them first (make, or make SAN=1 all)"
            % ", ".join(missing))


# ---------------------------------------------------------------------------------------
# small utilities

_ports_lock = threading.Lock()
_ports_handed_out = set()


def free_port():
    """A port nothing listens on right now (bind 0 and let the kernel choose). Never the
    same port twice in one run."""
    with _ports_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("no free port found")


def wait_for(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value (returned) or timeout seconds pass
    (AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)


def can_connect(port, timeout=0.2):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    s.close()
    return True


def pattern_bytes(offset, n):
    """demo-origin's generated body: byte i is 'a' + i % 26."""
    start = offset % 26
    reps = (start + n) // 26 + 1
    return (b"abcdefghijklmnopqrstuvwxyz" * reps)[start:start + n]


def checksum(data):
    """demo-origin's body checksum: sum of the bytes mod 2^32."""
    return sum(data) & 0xFFFFFFFF


def rss_kb(pid):
    """VmRSS of a process in KiB (from /proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


# ---------------------------------------------------------------------------------------
# YAML (a small block-style emitter: the configs are dicts of dicts, lists and scalars)

_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./:\-]*")


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if _PLAIN.fullmatch(s) and not s.endswith(":"):
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                if not v:
                    out.append("%s%s: %s" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
                else:
                    out.append("%s%s:" % (pad, k))
                    out.append(to_yaml(v, indent + 2))
            else:
                out.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                inner = to_yaml(item, indent + 2)
                out.append(pad + "- " + inner[indent + 2:])
            elif isinstance(item, (dict, list)):
                out.append(pad + "- " + ("{}" if isinstance(item, dict) else "[]"))
            else:
                out.append(pad + "- " + _yaml_scalar(item))
    else:
        out.append(pad + _yaml_scalar(obj))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# processes

class Proc:
    """A child process with its output (stdout+stderr) in a log file."""

    def __init__(self, argv, log_path, env=None, stderr_path=None):
        """stdout and stderr go to log_path, or stderr to stderr_path when given."""
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.stderr_path = Path(stderr_path) if stderr_path else None
        self._log = open(self.log_path, "wb")
        self._err = open(self.stderr_path, "wb") if stderr_path else None
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if env:
            e.update(env)
        self.check_exit = False  # servers set it: SIGTERM at teardown must give 0
        self.popen = subprocess.Popen(self.argv, stdout=self._log,
                                      stderr=self._err or subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=e)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        """Exit status, or None if still running after timeout seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=PROC_STOP_TIMEOUT):
        """SIGTERM, then SIGKILL if it has not exited within timeout. Returns the exit
        status. running_at_stop records whether it was still running (so this SIGTERM
        is what ended it)."""
        if not hasattr(self, "running_at_stop"):
            self.running_at_stop = self.popen.poll() is None
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.signal(signal.SIGKILL)
                self.wait(10)
        for f in (self._log, self._err):
            if f and not f.closed:
                f.close()
        return self.popen.returncode

    def log(self):
        """What the process wrote (stdout, plus stderr unless it was split off)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""
        except OSError:
            return ""

    def sanitizer_report(self):
        text = self.log() + self.stderr()
        for p in SANITIZER_PATTERNS:
            if p in text:
                return text
        return None


class ProcRegistry:
    def __init__(self):
        self.procs = []

    def add(self, p):
        self.procs.append(p)
        return p

    def stop_all(self):
        """Stop everything; returns problems: sanitizer reports, and servers that were
        still running at teardown but did not exit 0 on SIGTERM (a crash while
        draining). Processes that had exited already were checked by their test."""
        reports = []
        for p in reversed(self.procs):
            p.stop()
        for p in self.procs:
            r = p.sanitizer_report()
            if r:
                reports.append("sanitizer report from %s (pid %d):\n%s"
                               % (" ".join(p.argv), p.pid, r[-6000:]))
            elif p.check_exit and p.running_at_stop and p.popen.returncode != 0:
                reports.append("%s (pid %d) exited with status %s on SIGTERM at teardown;"
                               " log:\n%s" % (" ".join(p.argv), p.pid, p.popen.returncode,
                                              p.log()[-3000:]))
        return reports


def _finish_procs(reg):
    reports = reg.stop_all()
    if reports:
        pytest.fail("\n\n".join(reports), pytrace=False)


@pytest.fixture
def procs():
    """Every process started in a test; stopped by PID in teardown. A sanitizer report in
    any of their logs fails the test."""
    reg = ProcRegistry()
    yield reg
    _finish_procs(reg)


@pytest.fixture(scope="module")
def module_procs():
    """Like procs, for processes shared by a whole module."""
    reg = ProcRegistry()
    yield reg
    _finish_procs(reg)


def wait_listening(proc, port, timeout):
    """Poll connect() until port accepts, failing early if proc dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            return False
        if can_connect(port):
            return True
        time.sleep(0.02)
    return False


class Origin:
    """A running demo-origin."""

    def __init__(self, proc, port, name):
        self.proc = proc
        self.port = port
        self.name = name
        self.pid = proc.pid
        self.address = "127.0.0.1:%d" % port

    def stats(self):
        """GET /stats directly (this costs one accepted connection)."""
        r = request(self.port, "GET", "/stats")
        assert r.status == 200, r
        return r.json()


@pytest.fixture
def start_origin(procs, tmp_path):
    """start_origin(name=None, latency=None, cpu_us=None) -> Origin."""
    counter = [0]

    def start(name=None, latency=None, cpu_us=None):
        for _ in range(3):
            counter[0] += 1
            port = free_port()
            argv = [ORIGIN_BIN, "--port", port, "--quiet"]
            if name:
                argv += ["--name", name]
            if latency is not None:
                argv += ["--latency", latency]
            if cpu_us is not None:
                argv += ["--cpu-us", cpu_us]
            p = procs.add(Proc(argv, tmp_path / ("origin-%d.log" % counter[0])))
            p.check_exit = True
            if wait_listening(p, port, 10 * SLOW):
                return Origin(p, port, name or "origin-%d" % port)
            p.stop()
            if "address already in use" not in p.log().lower():
                raise RuntimeError("demo-origin did not start:\n" + p.log())
        raise RuntimeError("demo-origin: no usable port")

    return start


class Sluice:
    """A running sluice."""

    def __init__(self, proc, port, admin_port, config_path, config):
        self.proc = proc
        self.pid = proc.pid
        self.port = port
        self.admin_port = admin_port
        self.config_path = config_path
        self.config = config
        self.log_path = proc.log_path

    def log(self):
        return self.proc.log()

    def rss_kb(self):
        return rss_kb(self.pid)

    def metrics_text(self):
        r = request(self.admin_port, "GET", "/metrics")
        assert r.status == 200, r
        return r.body.decode()

    def metrics(self):
        """The /metrics exposition, parsed strictly (see parse_prometheus)."""
        return parse_prometheus(self.metrics_text())

    def metric(self, name, **labels):
        return self.metrics().value(name, **labels)

    def stop(self, timeout=PROC_STOP_TIMEOUT):
        return self.proc.stop(timeout)


def sluice_config(services=None, routes=None, limits=None, **top):
    """A configuration dict; listen/admin are filled in by start_sluice."""
    cfg = {}
    cfg.update(top)
    cfg.setdefault("workers", 2)
    lim = {"shutdown_timeout": "2s"}
    lim.update(limits or {})
    cfg["limits"] = lim
    if services:
        cfg["services"] = services
    if routes:
        cfg["routes"] = routes
    return cfg


def one_service_config(address, limits=None, service=None, **top):
    """Everything routed to one service "origin" with one server."""
    svc = {"keepalive": 32, "servers": [{"address": address}]}
    svc.update(service or {})
    return sluice_config(services={"origin": svc},
                         routes=[{"match": {"path_prefix": "/"}, "service": "origin"}],
                         limits=limits, **top)


def make_sluice_starter(procs, tmp_path):
    """start(config) -> Sluice. config is a dict (listen and admin.listen are added
    unless present) or YAML text, in which {port} and {admin_port} are substituted."""
    counter = [0]

    def start(config, wait=True, args=()):
        for attempt in range(3):
            counter[0] += 1
            n = counter[0]
            port, admin_port = free_port(), free_port()
            if isinstance(config, dict):
                cfg = json.loads(json.dumps(config))
                if "listen" not in cfg:
                    cfg = dict([("listen", ["127.0.0.1:%d" % port])] + list(cfg.items()))
                else:
                    port = int(str(cfg["listen"][0]).rsplit(":", 1)[1])
                adm = cfg.setdefault("admin", {})
                if "listen" in adm:
                    admin_port = int(str(adm["listen"]).rsplit(":", 1)[1])
                else:
                    adm["listen"] = "127.0.0.1:%d" % admin_port
                text = to_yaml(cfg) + "\n"
            else:
                cfg = None
                text = config.replace("{port}", str(port)).replace("{admin_port}",
                                                                     str(admin_port))
            path = tmp_path / ("sluice-%d.yaml" % n)
            path.write_text(text)
            p = procs.add(Proc([SLUICE_BIN, "-c", path, *args],
                               tmp_path / ("sluice-%d.log" % n)))
            s = Sluice(p, port, admin_port, path, cfg)
            if not wait:
                return s
            if wait_listening(p, port, 10 * SLOW) and wait_listening(p, admin_port, 10 * SLOW):
                p.check_exit = True
                return s
            p.stop()
            log = p.log()
            if "address already in use" not in log.lower():
                raise RuntimeError("sluice did not start (config %s):\n%s\n--- log:\n%s"
                                   % (path, text, log))
        raise RuntimeError("sluice: no usable ports")

    return start




@pytest.fixture
def start_sluice(procs, tmp_path):
    """start_sluice(config) -> Sluice (see make_sluice_starter); stopped in teardown."""
    return make_sluice_starter(procs, tmp_path)


@pytest.fixture(scope="module")
def module_start_sluice(module_procs, tmp_path_factory):
    """start_sluice for a sluice shared by a whole module."""
    return make_sluice_starter(module_procs, tmp_path_factory.mktemp("sluice"))


@pytest.fixture
def gateway(start_origin, start_sluice):
    """A demo-origin behind a 2-worker sluice that routes everything to it."""
    origin = start_origin()
    sl = start_sluice(one_service_config(origin.address))

    class GW:
        pass

    gw = GW()
    gw.origin = origin
    gw.sluice = sl
    gw.port = sl.port
    return gw


# ---------------------------------------------------------------------------------------
# a raw HTTP/1.1 client

class ConnectionClosed(Exception):
    pass


class Response:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in order, as received
        self.raw_head = raw_head
        self.body = b""
        self.framing = None  # "none" | "length" | "chunked" | "close"
        self.chunks = []  # chunk sizes, for chunked bodies
        self.interim = []  # 1xx responses received before this one

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return self.header(name) is not None

    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (
            self.status, self.reason, self.headers, self.body[:300])


_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3}) ?([^\r\n]*)")


class HttpConn:
    """One client connection with a read buffer: send raw bytes, read responses with
    full framing (Content-Length, chunked, close-delimited)."""

    def __init__(self, port, timeout=IO_TIMEOUT):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            raise ConnectionClosed("connection closed")
        try:
            d = self.sock.recv(262144)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            raise ConnectionClosed("connection closed")
        self.buf += d

    def _read_line(self, limit=65536):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) > limit:
                raise AssertionError("line too long")
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def _read_to_close(self):
        while True:
            try:
                self._fill()
            except ConnectionClosed:
                d, self.buf = self.buf, b""
                return d

    def read_head(self):
        """One response head (1xx included). Raises ConnectionClosed if the peer closed
        before a complete head."""
        raw = b""
        while True:
            line = self._read_line()
            raw += line
            if line in (b"\r\n", b"\n"):
                break
            if len(raw) > 1 << 20:
                raise AssertionError("response head too long")
        lines = raw.split(b"\r\n")
        m = _STATUS_LINE.fullmatch(lines[0])
        assert m, "bad status line %r" % lines[0]
        headers = []
        for l in lines[1:]:
            if not l:
                continue
            assert b":" in l, "bad header line %r in %r" % (l, raw)
            k, v = l.split(b":", 1)
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        return Response((int(m.group(1)), int(m.group(2))), int(m.group(3)),
                        m.group(4).decode("latin-1"), headers, raw)

    def read_body(self, r, head_request=False):
        if head_request or 100 <= r.status < 200 or r.status in (204, 304):
            r.framing = "none"
            return r
        te = r.header("Transfer-Encoding")
        if te is not None:
            assert te.lower() == "chunked", "unexpected Transfer-Encoding %r" % te
            r.framing = "chunked"
            parts = []
            while True:
                line = self._read_line()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_line() not in (b"\r\n", b"\n"):
                        pass
                    break
                r.chunks.append(size)
                parts.append(self._read_exact(size))
                assert self._read_exact(2) == b"\r\n", "chunk not followed by CRLF"
            r.body = b"".join(parts)
        elif r.header("Content-Length") is not None:
            r.framing = "length"
            r.body = self._read_exact(int(r.header("Content-Length")))
        else:
            r.framing = "close"
            r.body = self._read_to_close()
        return r

    def read_response(self, head_request=False):
        """The next final response (1xx interim answers are collected in .interim)."""
        interim = []
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101:
                interim.append(r)
                continue
            break
        r.interim = interim
        return self.read_body(r, head_request)

    def request(self, method, target, headers=None, body=None, version="HTTP/1.1"):
        self.send(build_request(method, target, headers, body, version))
        return self.read_response(head_request=(method == "HEAD"))

    def wait_closed(self, timeout=2.0):
        """True when the peer closes (EOF or reset) within timeout, with no further
        bytes arriving; False otherwise. Bytes that arrive are kept in self.extra."""
        self.extra = self.buf
        self.buf = b""
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    return False
                except (ConnectionResetError, BrokenPipeError):
                    self.eof = True
                    return True
                if not d:
                    self.eof = True
                    return True
                self.extra += d
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass


def build_request(method, target, headers=None, body=None, version="HTTP/1.1"):
    """Request bytes. headers: list of (name, value) or dict; a Host header is added for
    HTTP/1.1 unless given (pass ("Host", None) to omit it); Content-Length is added for
    a body unless a Content-Length or Transfer-Encoding header is given."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if "host" not in names and version == "HTTP/1.1":
        headers.insert(0, ("Host", "127.0.0.1"))
    if body is not None and "content-length" not in names and \
            "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    out = "%s %s %s\r\n" % (method, target, version)
    for k, v in headers:
        if v is None:
            continue
        out += "%s: %s\r\n" % (k, v)
    out += "\r\n"
    data = out.encode("latin-1")
    if body:
        data += body if isinstance(body, bytes) else body.encode()
    return data


def request(port, method, target, headers=None, body=None, version="HTTP/1.1",
            timeout=IO_TIMEOUT):
    """One request on a fresh connection; returns the Response."""
    with HttpConn(port, timeout) as c:
        return c.request(method, target, headers, body, version)


def send_raw(port, data, timeout=IO_TIMEOUT, head_request=False):
    """Send raw bytes on a fresh connection, read one response, then report whether the
    peer closed within 2 s: returns (Response or None if closed without one, closed)."""
    with HttpConn(port, timeout) as c:
        c.send(data)
        try:
            r = c.read_response(head_request=head_request)
        except ConnectionClosed:
            return None, True
        return r, c.wait_closed(2.0 * SLOW)


def chunked_body(pieces, ext=False):
    out = b""
    for i, p in enumerate(pieces):
        out += b"%x%s\r\n" % (len(p), b";i=%d" % i if ext else b"") + p + b"\r\n"
    return out + b"0\r\n\r\n"


# ---------------------------------------------------------------------------------------
# Prometheus text format, parsed strictly

_M_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_L_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_HELP_RE = re.compile(r"# HELP (%s) (.*)" % _M_NAME)
_TYPE_RE = re.compile(r"# TYPE (%s) (counter|gauge|histogram|summary|untyped)" % _M_NAME)
_SAMPLE_RE = re.compile(r"(%s)(\{[^\n]*\})? (\S+)( -?\d+)?" % _M_NAME)
_LABEL_RE = re.compile(r'(%s)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"' % _L_NAME)
_VALUE_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN")


class Metrics:
    def __init__(self):
        self.types = {}
        self.help = {}
        self.samples = []  # (name, {labels}, value)

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(val) for k, val in labels.items())]

    def value(self, name, **labels):
        """The value of the one sample matching name and labels (a subset); None if there
        is none; AssertionError if several match."""
        m = self.find(name, **labels)
        if not m:
            return None
        assert len(m) == 1, "several samples match %s %r: %r" % (name, labels, m)
        return m[0][1]


def _parse_labels(text, lineno):
    labels = {}
    inner = text[1:-1]
    pos = 0
    while pos < len(inner):
        m = _LABEL_RE.match(inner, pos)
        assert m, "line %d: bad label set %r" % (lineno, text)
        name, val = m.group(1), m.group(2)
        assert name not in labels, "line %d: label %s twice" % (lineno, name)
        labels[name] = val.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        pos = m.end()
        if pos < len(inner):
            assert inner[pos] == ",", "line %d: bad label separator in %r" % (lineno, text)
            pos += 1
            if pos == len(inner):
                break  # trailing comma is allowed
    return labels


def _family(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) in ("histogram",
                                                                          "summary"):
            return name[:-len(suffix)]
    return name


def parse_prometheus(text):
    """Parse the Prometheus text exposition format (0.0.4) strictly: every line is a
    HELP, TYPE or comment line or a sample `name{labels} value [timestamp]`; HELP/TYPE at
    most once per family and TYPE before its samples; a family's lines are contiguous; no
    duplicate series; histogram buckets carry le, are cumulative, and +Inf equals
    _count. Raises AssertionError on any violation."""
    assert text.endswith("\n"), "exposition must end with a newline"
    m = Metrics()
    seen_series = set()
    finished = set()  # families whose group has ended
    current = None
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        if line == "":
            continue
        if line.startswith("#"):
            if line.startswith("# HELP "):
                hm = _HELP_RE.fullmatch(line)
                assert hm, "line %d: bad HELP line %r" % (lineno, line)
                name = hm.group(1)
                assert name not in m.help, "line %d: second HELP for %s" % (lineno, name)
                m.help[name] = hm.group(2)
            elif line.startswith("# TYPE "):
                tm = _TYPE_RE.fullmatch(line)
                assert tm, "line %d: bad TYPE line %r" % (lineno, line)
                name = tm.group(1)
                assert name not in m.types, "line %d: second TYPE for %s" % (lineno, name)
                assert not any(_family(n, {name: tm.group(2)}) == name
                               for n, _, _ in m.samples), \
                    "line %d: TYPE for %s after its samples" % (lineno, name)
                m.types[name] = tm.group(2)
            else:
                name = None  # a plain comment
            if name is not None:
                if name != current:
                    assert name not in finished, \
                        "line %d: family %s is not contiguous" % (lineno, name)
                    if current is not None:
                        finished.add(current)
                    current = name
            continue
        sm = _SAMPLE_RE.fullmatch(line)
        assert sm, "line %d: bad sample line %r" % (lineno, line)
        name, ltext, vtext = sm.group(1), sm.group(2), sm.group(3)
        labels = _parse_labels(ltext, lineno) if ltext else {}
        assert _VALUE_RE.fullmatch(vtext), "line %d: bad value %r" % (lineno, vtext)
        value = float(vtext)
        fam = _family(name, m.types)
        if fam != current:
            assert fam not in finished, "line %d: family %s is not contiguous" % (lineno, fam)
            if current is not None:
                finished.add(current)
            current = fam
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen_series, "line %d: duplicate series %r" % (lineno, line)
        seen_series.add(key)
        t = m.types.get(fam, "untyped")
        if t == "counter":
            assert value >= 0, "line %d: negative counter" % lineno
        if t == "histogram":
            assert name != fam, "line %d: bare sample %s of histogram" % (lineno, name)
            if name.endswith("_bucket"):
                assert "le" in labels, "line %d: bucket without le" % lineno
        m.samples.append((name, labels, value))
    _check_histograms(m)
    return m


def _check_histograms(m):
    for fam, t in m.types.items():
        if t != "histogram":
            continue
        series = {}
        for n, l, v in m.samples:
            if n == fam + "_bucket":
                base = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
                series.setdefault(base, {"buckets": []})["buckets"].append((l["le"], v))
            elif n in (fam + "_sum", fam + "_count"):
                base = tuple(sorted(l.items()))
                series.setdefault(base, {"buckets": []})[n[len(fam) + 1:]] = v
        for base, s in series.items():
            b = s["buckets"]
            assert b, "%s%r: no buckets" % (fam, base)
            les = [float(le) for le, _ in b]
            assert les == sorted(les), "%s%r: buckets out of order" % (fam, base)
            assert les[-1] == float("inf"), "%s%r: no +Inf bucket" % (fam, base)
            counts = [v for _, v in b]
            assert counts == sorted(counts), "%s%r: buckets not cumulative %r" % (
                fam, base, counts)
            assert "count" in s and "sum" in s, "%s%r: missing _sum/_count" % (fam, base)
            assert counts[-1] == s["count"], "%s%r: +Inf bucket %r != _count %r" % (
                fam, base, counts[-1], s["count"])


# ---------------------------------------------------------------------------------------
# small Python origins (threads, raw sockets)

class OriginReader:
    """Origin side of a connection: reads requests, records them on the RawOrigin."""

    def __init__(self, sock, origin):
        self.sock = sock
        self.origin = origin
        self.buf = b""

    def _fill(self):
        try:
            d = self.sock.recv(262144)
        except (ConnectionResetError, OSError):
            d = b""
        if not d:
            raise ConnectionClosed()
        self.origin.record_raw(d)
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise ConnectionClosed()
            self._fill()
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_head(self):
        """(method, target, version, [(name, value)]) or None at EOF before a head."""
        try:
            while b"\r\n\r\n" not in self.buf:
                if len(self.buf) > 1 << 20:
                    return None
                self._fill()
        except ConnectionClosed:
            return None
        i = self.buf.index(b"\r\n\r\n")
        head, self.buf = self.buf[:i], self.buf[i + 4:]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self.origin.errors.append("bad request line %r" % lines[0])
            return None
        headers = []
        for l in lines[1:]:
            if b":" not in l:
                self.origin.errors.append("bad header line %r" % l)
                return None
            k, v = l.split(b":", 1)
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        h = (parts[0].decode("latin-1"), parts[1].decode("latin-1"),
             parts[2].decode("latin-1"), headers)
        self.origin.record_head(h)
        return h

    def read_body(self, headers):
        names = {k.lower(): v for k, v in headers}
        if "transfer-encoding" in names:
            out = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line() != b"":
                        pass
                    return b"".join(out)
                out.append(self._exact(size))
                if self._exact(2) != b"\r\n":
                    raise ConnectionClosed()
        n = int(names.get("content-length", "0"))
        return self._exact(n)

    def read_request(self):
        """A complete request as a dict, recorded on the origin; None at EOF."""
        h = self.read_head()
        if h is None:
            return None
        try:
            body = self.read_body(h[3])
        except (ConnectionClosed, ValueError):
            return None
        req = {"method": h[0], "target": h[1], "version": h[2], "headers": h[3],
               "body": body}
        self.origin.record_request(req)
        return req


def header_of(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def simple_response(status=200, body=b"", headers=(), reason="OK"):
    if isinstance(body, str):
        body = body.encode()
    out = "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
    for k, v in headers:
        out += "%s: %s\r\n" % (k, v)
    return out.encode() + b"\r\n" + body


def recording_handler(sock, origin):
    """Answer every request with 200 and a JSON body naming the request; keep-alive."""
    rd = OriginReader(sock, origin)
    while not origin.stopping.is_set():
        req = rd.read_request()
        if req is None:
            return
        body = json.dumps({"target": req["target"], "method": req["method"],
                           "body_length": len(req["body"])}).encode()
        sock.sendall(simple_response(200, body, [("Content-Type", "application/json")]))


class RawOrigin:
    """A tiny threaded TCP server on 127.0.0.1: handler(sock, origin) runs in its own
    thread for every accepted connection. Records raw bytes, request heads and complete
    requests (via OriginReader)."""

    def __init__(self, handler):
        self.handler = handler
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.threads = []
        self.accepted = 0
        self.raw = b""
        self.heads = []
        self.requests = []
        self.errors = []
        self.state = {}  # free for handlers
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def record_raw(self, d):
        with self.lock:
            self.raw += d

    def record_head(self, h):
        with self.lock:
            self.heads.append(h)

    def record_request(self, r):
        with self.lock:
            self.requests.append(r)

    def reset(self):
        """Forget what was recorded so far (for an origin shared by several tests)."""
        with self.lock:
            self.raw = b""
            self.heads = []
            self.requests = []
            self.errors = []
            self.accepted = 0

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(IO_TIMEOUT)
            t = threading.Thread(target=self._run, args=(c,), daemon=True)
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
                self.threads.append(t)
            t.start()

    def _run(self, c):
        try:
            self.handler(c, self)
        except (OSError, ConnectionClosed):
            pass
        except Exception as e:  # recorded: a broken handler must not pass silently
            self.errors.append(repr(e))
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        self.thread.join(5)
        with self.lock:
            conns, threads = list(self.conns), list(self.threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        for t in threads:
            t.join(5)


def _raw_origin_factory():
    made = []

    def make(handler=recording_handler):
        o = RawOrigin(handler)
        made.append(o)
        return o

    return make, made


@pytest.fixture
def raw_origin():
    """raw_origin(handler=recording_handler) -> RawOrigin, stopped in teardown."""
    make, made = _raw_origin_factory()
    yield make
    for o in made:
        o.stop()


@pytest.fixture(scope="module")
def module_raw_origin():
    """raw_origin for origins shared by a whole module."""
    make, made = _raw_origin_factory()
    yield make
    for o in made:
        o.stop()
