"""TLS termination (issue 8 part 3): protocol versions, SNI, ALPN, resumption, large
bodies both ways, pipelining, timeouts, certificate reload on SIGHUP, and `sluice -t`.

Certificates are made per test with the openssl CLI (self-signed EC P-256) in tmp_path.
Clients are Python's ssl module and curl; every socket has a timeout."""

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (IO_TIMEOUT, SAN, SLOW, SLUICE_BIN, ConnectionClosed, HttpConn,
                      build_request, chunked_body, parse_prometheus,
                      pattern_bytes, send_raw, to_yaml, wait_for)

# TLS 1.0/1.1 are deprecated in Python's ssl; test_tls11_refused uses them on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# ---------------------------------------------------------------------------------------
# helpers

def make_cert(d, name, sans, days=30):
    """A self-signed EC certificate for CN=name with DNS SANs; returns (cert, key) paths."""
    cert, key = d / (name.replace("*", "star") + ".crt"), d / (name.replace("*", "star") + ".key")
    args = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", str(days), "-subj", "/CN=" + name]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
    subprocess.run(args, check=True, capture_output=True, timeout=30)
    return cert, key


def der_fingerprint(path):
    """SHA-256 of the DER form of the PEM certificate at path."""
    pem = path.read_text()
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def client_ctx(cafile=None, minv=None, maxv=None, alpn=None):
    """A client context: verifying against cafile when given, else not verifying (SNI
    tests look at which certificate came, not whether it is trusted)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile=str(cafile))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if minv:
        ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TlsConn(HttpConn):
    """HttpConn over TLS. A peer that closes without close_notify raises (ragged EOFs
    are not suppressed), so tests see whether sluice ends its streams properly."""

    def __init__(self, port, ctx, server_hostname="localhost", session=None,
                 timeout=IO_TIMEOUT):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.settimeout(timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session,
                                    suppress_ragged_eofs=False)
        self.port = port
        self.buf = b""
        self.eof = False

    def peer_fingerprint(self):
        return hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()


def tls_yaml(tls, services, routes, limits=None, workers=2):
    cfg = {
        "listen": [{"address": "127.0.0.1:{port}", "tls": tls}],
        "admin": {"listen": "127.0.0.1:{admin_port}"},
        "workers": workers,
        "limits": dict({"shutdown_timeout": "2s"}, **(limits or {})),
        "services": services,
        "routes": routes,
    }
    return to_yaml(cfg) + "\n"


def start_tls(start_sluice, origin_address, tls, limits=None, workers=2):
    svc = {"origin": {"keepalive": 32, "servers": [{"address": origin_address}]}}
    routes = [{"match": {"path_prefix": "/"}, "service": "origin"}]
    return start_sluice(tls_yaml(tls, svc, routes, limits, workers))


def metric(sl, name, **labels):
    v = parse_prometheus(sl.metrics_text()).value(name, **labels)
    return 0 if v is None else v


def check_output(sl, pattern, timeout=5.0):
    return wait_for(lambda: pattern in sl.log(), timeout * SLOW, what=repr(pattern))


@pytest.fixture
def certs(tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    return d


@pytest.fixture
def one_cert(certs):
    return make_cert(certs, "localhost", ["localhost", "sluice.test"])


# ---------------------------------------------------------------------------------------
# versions, ALPN, curl

@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls12_and_tls13_work(start_origin, start_sluice, one_cert, version):
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    ctx = client_ctx(one_cert[0], minv=version, maxv=version)
    with TlsConn(sl.port, ctx) as c:
        assert c.sock.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
        r = c.request("GET", "/bytes/1000")
        assert r.status == 200
        assert r.body == pattern_bytes(0, 1000)
    assert metric(sl, "tls_handshakes_total", result="ok") >= 1
    assert metric(sl, "tls_handshake_duration_seconds_count") >= 1


def test_tls11_refused(start_origin, start_sluice, one_cert):
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    ctx = client_ctx(minv=ssl.TLSVersion.TLSv1, maxv=ssl.TLSVersion.TLSv1_1)
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1 at all
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, ConnectionError)):
        TlsConn(sl.port, ctx).close()
    # The refusal was sluice's: it saw the ClientHello and failed the handshake.
    wait_for(lambda: metric(sl, "tls_handshakes_total", result="failed") >= 1, 5 * SLOW,
             what="a failed handshake counted")
    assert metric(sl, "tls_handshakes_total", result="ok") == 0


def test_alpn_http11_and_curl(start_origin, start_sluice, one_cert):
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1],
                                                  "alpn": ["http/1.1"]})
    # Only http/1.1 configured: a client offering h2 first gets http/1.1.
    ctx = client_ctx(one_cert[0], alpn=["h2", "http/1.1"])
    with TlsConn(sl.port, ctx) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.request("GET", "/bytes/10").status == 200
    out = subprocess.run(
        ["curl", "-sS", "-v", "--max-time", "10", "--cacert", str(one_cert[0]), "--resolve",
         "sluice.test:%d:127.0.0.1" % sl.port, "https://sluice.test:%d/bytes/26" % sl.port],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == pattern_bytes(0, 26)
    err = out.stderr.decode(errors="replace")
    assert "ALPN" in err and "http/1.1" in err


def test_http2_over_tls_with_curl_and_h2load(start_origin, start_sluice, one_cert):
    """The default alpn offers h2 first: curl --http2 and h2load speak HTTP/2 over TLS
    through the same handler (routing, proxy), and an http/1.1-only client still works."""
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    ctx = client_ctx(one_cert[0], alpn=["h2", "http/1.1"])
    with TlsConn(sl.port, ctx) as c:
        assert c.sock.selected_alpn_protocol() == "h2"
    url = "https://sluice.test:%d/bytes/300000" % sl.port
    out = subprocess.run(
        ["curl", "-sS", "--http2", "--max-time", "20", "--cacert", str(one_cert[0]),
         "--resolve", "sluice.test:%d:127.0.0.1" % sl.port, "-w", "%{http_version}", url],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, version = out.stdout[:-1], out.stdout[-1:]
    assert version == b"2"
    assert body == pattern_bytes(0, 300000)
    out = subprocess.run(
        ["curl", "-sS", "--http1.1", "--max-time", "10", "--cacert", str(one_cert[0]),
         "--resolve", "sluice.test:%d:127.0.0.1" % sl.port, "-w", "%{http_version}",
         "https://sluice.test:%d/bytes/26" % sl.port],
        capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == pattern_bytes(0, 26) + b"1.1"
    h = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "16",
                        "https://127.0.0.1:%d/bytes/100" % sl.port],
                       capture_output=True, text=True, timeout=120)
    assert h.returncode == 0, h.stdout + h.stderr
    assert "2000 succeeded, 0 failed, 0 errored" in h.stdout, h.stdout
    assert "Application protocol: h2" in h.stdout
    assert metric(sl, "http2_sessions_total") >= 5


# ---------------------------------------------------------------------------------------
# SNI

def test_sni_picks_certificate(start_origin, start_sluice, certs):
    origin = start_origin()
    dflt = make_cert(certs, "default.test", ["default.test"])
    a = make_cert(certs, "a.test", ["a.test", "www.a.test"])
    b = make_cert(certs, "*.b.test", ["*.b.test"])
    sl = start_tls(start_sluice, origin.address, {"certificates": [
        {"cert": dflt[0], "key": dflt[1]}, {"cert": a[0], "key": a[1]},
        {"cert": b[0], "key": b[1]}]})
    cases = {
        "a.test": a, "WWW.A.TEST": a, "x.b.test": b, "X.B.Test": b,
        "b.test": dflt,          # a wildcard needs one label in front
        "x.y.b.test": dflt,      # ... and exactly one
        "other.test": dflt,
    }
    for host, want in cases.items():
        with TlsConn(sl.port, client_ctx(), server_hostname=host) as c:
            assert c.peer_fingerprint() == der_fingerprint(want[0]), host
            assert c.request("GET", "/bytes/5").status == 200
    # curl verifies the chosen certificate against the name it asked for.
    for host, want in (("a.test", a), ("www.a.test", a), ("z.b.test", b)):
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "--cacert", str(want[0]), "--resolve",
             "%s:%d:127.0.0.1" % (host, sl.port), "https://%s:%d/bytes/3" % (host, sl.port)],
            capture_output=True, timeout=30)
        assert out.returncode == 0, (host, out.stderr)
        assert out.stdout == b"abc"


# ---------------------------------------------------------------------------------------
# resumption

@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption(start_origin, start_sluice, one_cert, version):
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    ctx = client_ctx(one_cert[0], minv=version, maxv=version)
    with TlsConn(sl.port, ctx) as c:
        assert c.request("GET", "/bytes/10").status == 200  # TLS 1.3 tickets come after
        session = c.sock.session
        assert not c.sock.session_reused
    assert session is not None
    for _ in range(2):  # both workers: the SSL_CTX and its ticket keys are shared
        with TlsConn(sl.port, ctx, session=session) as c:
            assert c.sock.session_reused
            assert c.request("GET", "/bytes/10").status == 200
    assert metric(sl, "tls_session_reused_total") >= 2


# ---------------------------------------------------------------------------------------
# requests over TLS

def test_forwarded_proto_keepalive_pipelining(raw_origin, start_sluice, one_cert):
    origin = raw_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    with TlsConn(sl.port, client_ctx(one_cert[0])) as c:
        r = c.request("GET", "/one")
        assert r.status == 200
        # Three pipelined requests in one write: answered in order on the same session.
        c.send(b"".join(build_request("GET", "/p%d" % i) for i in range(3)))
        for i in range(3):
            r = c.read_response()
            assert r.status == 200
            assert b'"/p%d"' % i in r.body
        r = c.request("POST", "/after", body=b"x" * 100)
        assert r.status == 200 and b'"body_length": 100' in r.body
        pieces = [os.urandom(n) for n in (1, 5000, 70000, 3)]
        r = c.request("POST", "/chunked", [("Transfer-Encoding", "chunked")],
                      chunked_body(pieces))
        assert r.status == 200 and b'"body_length": 75004' in r.body
    heads = [h for h in origin.heads]
    assert [h[1] for h in heads] == ["/one", "/p0", "/p1", "/p2", "/after", "/chunked"]
    assert origin.requests[-1]["body"] == b"".join(pieces)
    for h in heads:
        xfp = [v for k, v in h[3] if k.lower() == "x-forwarded-proto"]
        assert xfp == ["https"], h


def test_large_bodies_intact(start_origin, raw_origin, start_sluice, one_cert):
    """5 MiB down (demo-origin's pattern) and 5 MiB up (hash of what the origin got)."""
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    n = 5 << 20
    with TlsConn(sl.port, client_ctx(one_cert[0])) as c:
        r = c.request("GET", "/bytes/%d" % n)
        assert r.status == 200
        assert len(r.body) == n
        assert hashlib.sha256(r.body).hexdigest() == \
            hashlib.sha256(pattern_bytes(0, n)).hexdigest()
        r = c.request("GET", "/chunked/%d" % (n + 7))
        assert r.body == pattern_bytes(0, n + 7)
    up = raw_origin()
    sl2 = start_tls(start_sluice, up.address, {"cert": one_cert[0], "key": one_cert[1]})
    body = os.urandom(n)
    with TlsConn(sl2.port, client_ctx(one_cert[0])) as c:
        r = c.request("POST", "/upload", body=body)
        assert r.status == 200, r
    reqs = [q for q in up.requests if q["target"] == "/upload"]
    assert len(reqs) == 1
    assert hashlib.sha256(reqs[0]["body"]).hexdigest() == hashlib.sha256(body).hexdigest()


def test_slow_reader_bounded_memory(start_origin, start_sluice, one_cert):
    """Backpressure through TLS: a client that stops reading a 50 MiB answer must not
    make sluice buffer it (the congestion accounting counts ciphertext)."""
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    total = 50 << 20
    with TlsConn(sl.port, client_ctx(one_cert[0])) as c:
        assert c.request("GET", "/bytes/1000").status == 200  # warm up
        idle = sl.rss_kb()
        samples = [idle]
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.send(build_request("GET", "/bytes/%d" % total))
        for _ in range(10):  # 2 s without reading
            time.sleep(0.2)
            samples.append(sl.rss_kb())
        got, h = 0, hashlib.sha256()
        head = c.read_head()
        assert head.status == 200
        data, c.buf = c.buf, b""
        while True:
            h.update(data)
            got += len(data)
            if got >= total:
                break
            data = c.sock.recv(1 << 20)
            assert data, "closed after %d of %d bytes" % (got, total)
            if got % (8 << 20) < len(data):
                samples.append(sl.rss_kb())
        assert got == total
        assert h.hexdigest() == hashlib.sha256(pattern_bytes(0, total)).hexdigest()
    # Under ASan every buffer is a fresh malloc kept in its quarantine (256 MiB), so RSS
    # says nothing about buffering there: the bound is checked in the normal build.
    if not SAN:
        grew = max(samples) - idle
        assert grew < 40 * 1024, "sluice RSS grew by %d KiB" % grew


def test_upgrade_tunnel_over_tls(raw_origin, start_sluice, one_cert):
    """A 101 tunnel on a TLS connection: raw bytes both ways, 300 kB included (more than
    the read buffer, so decrypted bytes wait in the session for room)."""
    from test_proxy import websocket_echo_handler
    o = raw_origin(websocket_echo_handler)
    sl = start_tls(start_sluice, o.address, {"cert": one_cert[0], "key": one_cert[1]})
    with TlsConn(sl.port, client_ctx(one_cert[0])) as c:
        c.send(build_request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                            ("Sec-WebSocket-Version", "13")]))
        r = c.read_head()
        assert r.status == 101, r
        while len(c.buf) < 13:
            c._fill()
        assert c.buf[:13] == b"server-hello;"
        c.buf = c.buf[13:]
        for msg in (b"hello", os.urandom(300000), b"bye"):
            c.send(msg)
            while len(c.buf) < len(msg):
                c._fill()
            assert c.buf[:len(msg)] == msg
            c.buf = c.buf[len(msg):]


def test_close_notify_on_connection_close(start_origin, start_sluice, one_cert):
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    with TlsConn(sl.port, client_ctx(one_cert[0])) as c:
        r = c.request("GET", "/bytes/100", headers={"Connection": "close"})
        assert r.status == 200
        # A clean TLS end (close_notify) reads as EOF; a bare TCP close would raise
        # SSLEOFError here because ragged EOFs are not suppressed.
        assert c.sock.recv(10) == b""


# ---------------------------------------------------------------------------------------
# misbehaving clients

def test_plain_http_on_tls_port_is_closed(start_origin, start_sluice, one_cert):
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]})
    t0 = time.monotonic()
    r, closed = send_raw(sl.port, build_request("GET", "/bytes/10"), timeout=5 * SLOW)
    assert r is None and closed
    assert time.monotonic() - t0 < 5 * SLOW
    wait_for(lambda: metric(sl, "tls_handshakes_total", result="failed") >= 1, 5 * SLOW,
             what="the failed handshake counted")


def test_silent_client_closed_by_header_timeout(start_origin, start_sluice, one_cert):
    origin = start_origin()
    sl = start_tls(start_sluice, origin.address, {"cert": one_cert[0], "key": one_cert[1]},
                   limits={"header_timeout": "1s", "idle_timeout": "60s"})
    with HttpConn(sl.port, timeout=10 * SLOW) as c:
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            c._fill()  # no ClientHello: sluice must close, not wait for idle_timeout
        took = time.monotonic() - t0
    assert 0.8 <= took < 5 * SLOW, took
    # A handshake that stalls half-way is bounded by the same timeout.
    with HttpConn(sl.port, timeout=10 * SLOW) as c:
        c.send(b"\x16\x03\x01\x00\xa0\x01")  # the start of a ClientHello record
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while True:
                c._fill()
        assert time.monotonic() - t0 < 5 * SLOW


# ---------------------------------------------------------------------------------------
# certificate reload

def test_sighup_reloads_certificates(start_origin, start_sluice, certs):
    origin = start_origin()
    cert, key = make_cert(certs, "localhost", ["localhost"])
    old_fp = der_fingerprint(cert)
    sl = start_tls(start_sluice, origin.address, {"cert": cert, "key": key})
    keep = TlsConn(sl.port, client_ctx())
    assert keep.peer_fingerprint() == old_fp
    assert keep.request("GET", "/bytes/10").status == 200
    # New files under the same names, then SIGHUP.
    newdir = certs / "new"
    newdir.mkdir()
    ncert, nkey = make_cert(newdir, "localhost", ["localhost", "new.test"])
    new_fp = der_fingerprint(ncert)
    assert new_fp != old_fp
    os.replace(ncert, cert)
    os.replace(nkey, key)
    # A reload builds a new generation of workers, which reads the certificates anew
    # (docs/reload.md); the old generation drains with the old ones.
    os.kill(sl.pid, signal.SIGHUP)
    check_output(sl, "reload (SIGHUP): generation 2 serving")
    # The connection from before keeps its session and certificate: it may send one more
    # request during the drain (answered, then closed).
    assert keep.peer_fingerprint() == old_fp
    r = keep.request("GET", "/bytes/1000")
    assert r.status == 200 and r.body == pattern_bytes(0, 1000)
    keep.close()
    for _ in range(3):
        with TlsConn(sl.port, client_ctx()) as c:
            assert c.peer_fingerprint() == new_fp
            assert c.request("GET", "/bytes/10").status == 200


def test_sighup_with_broken_key_keeps_old(start_origin, start_sluice, certs):
    origin = start_origin()
    cert, key = make_cert(certs, "localhost", ["localhost"])
    fp = der_fingerprint(cert)
    sl = start_tls(start_sluice, origin.address, {"cert": cert, "key": key})
    key.write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    os.kill(sl.pid, signal.SIGHUP)
    check_output(sl, "the running configuration (generation 1) stays")
    assert "listen[0].tls.key: %s holds no PEM private key" % key in sl.log()
    # A key from another certificate is refused too.
    other = make_cert(certs / "..", "other", ["other"])
    key.write_bytes(other[1].read_bytes())
    os.kill(sl.pid, signal.SIGHUP)
    wait_for(lambda: sl.log().count("the running configuration (generation 1) stays") >= 2,
             5 * SLOW, what="second reload refused")
    assert metric(sl, "sluice_reloads_total", result="failed") == 2
    for _ in range(2):
        with TlsConn(sl.port, client_ctx()) as c:
            assert c.peer_fingerprint() == fp
            assert c.request("GET", "/bytes/10").status == 200


def test_expiry_metric(start_origin, start_sluice, certs):
    origin = start_origin()
    cert, key = make_cert(certs, "localhost", ["localhost"], days=10)
    sl = start_tls(start_sluice, origin.address, {"cert": cert, "key": key})
    v = metric(sl, "tls_certificate_expiry_seconds", listen="127.0.0.1:%d" % sl.port,
               cert=str(cert))
    assert abs(v - (time.time() + 10 * 86400)) < 3600, v


# ---------------------------------------------------------------------------------------
# sluice -t

def check_config(path):
    return subprocess.run([str(SLUICE_BIN), "-t", "-c", str(path)], capture_output=True,
                          timeout=30)


def test_config_check_reports_tls_problems(tmp_path, certs):
    cert, key = make_cert(certs, "localhost", ["localhost"])
    other = make_cert(certs, "other", ["other"])
    svc = "services:\n  o:\n    servers: [{address: 127.0.0.1:1}]\n"
    good = tmp_path / "good.yaml"
    good.write_text("listen:\n  - {address: 127.0.0.1:1, tls: {cert: %s, key: %s}}\n%s"
                    % (cert, key, svc))
    out = check_config(good)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == "%s: ok" % good

    missing = tmp_path / "missing.yaml"
    missing.write_text("listen:\n  - address: 127.0.0.1:1\n    tls:\n      cert: %s\n"
                       "      key: %s/nope.key\n%s" % (cert, certs, svc))
    out = check_config(missing)
    assert out.returncode == 1
    assert ("%s:5:12: listen[0].tls.key: cannot read %s/nope.key: No such file or directory"
            % (missing, certs)) in out.stderr.decode(), out.stderr

    mismatch = tmp_path / "mismatch.yaml"
    mismatch.write_text("listen:\n  - address: 127.0.0.1:1\n    tls:\n      certificates:\n"
                        "        - {cert: %s, key: %s}\n        - {cert: %s, key: %s}\n%s"
                        % (cert, key, cert, other[1], svc))
    out = check_config(mismatch)
    assert out.returncode == 1
    col = len("        - {cert: %s, key: " % cert) + 1
    assert ("%s:6:%d: listen[0].tls.certificates[1].key: %s does not match the certificate "
            "in %s" % (mismatch, col, other[1], cert)) in out.stderr.decode(), out.stderr

    garbage = certs / "garbage.key"
    garbage.write_text("not a key\n")
    unreadable = certs / "unreadable.key"
    unreadable.write_bytes(key.read_bytes())
    unreadable.chmod(0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen:\n  - address: 127.0.0.1:1\n    tls: {cert: %s, key: %s}\n"
                   "  - address: 127.0.0.1:2\n    tls: {cert: %s, key: %s}\n%s"
                   % (cert, garbage, cert, unreadable, svc))
    out = check_config(bad)
    err = out.stderr.decode()
    assert out.returncode == 1
    assert "listen[0].tls.key: %s holds no PEM private key" % garbage in err, err
    if os.geteuid() != 0:  # root reads anything
        assert "listen[1].tls.key: cannot read %s: Permission denied" % unreadable in err, err
    for line in err.strip().splitlines():
        assert line.startswith(str(bad) + ":"), line
