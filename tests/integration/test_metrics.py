"""The admin listener's /metrics (strict Prometheus text format, request counters and
histograms, connection gauges, process metrics) and the JSON access log."""

import json
import os
import re
import time

import pytest

from conftest import (SLOW, HttpConn, free_port, one_service_config, parse_prometheus,
                      request, sluice_config, wait_for)


@pytest.fixture
def mgw(start_origin, start_sluice, tmp_path):
    o = start_origin()
    svc = {"servers": [{"address": o.address}]}
    routes = [{"match": {"path_prefix": p}, "service": "origin"}
              for p in ("/echo", "/status", "/sleep")]
    log = tmp_path / "access.log"
    sl = start_sluice(sluice_config(services={"origin": svc}, routes=routes,
                                    access_log=str(log)))

    class M:
        pass

    m = M()
    m.origin, m.sluice, m.port, m.access_log = o, sl, sl.port, log
    return m


def test_metrics_endpoint_format(mgw):
    r = request(mgw.sluice.admin_port, "GET", "/metrics")
    assert r.status == 200
    assert r.header("Content-Type", "").startswith("text/plain; version=0.0.4"), r
    m = parse_prometheus(r.body.decode())
    # every family is declared, and the contract's names are present
    for name in ("http_requests_total", "http_request_duration_seconds",
                 "sluice_connections_active", "process_resident_memory_bytes",
                 "process_cpu_seconds_total", "sluice_build_info"):
        assert name in m.types, "no TYPE for %s" % name
        assert name in m.help, "no HELP for %s" % name
    assert m.types["http_requests_total"] == "counter"
    assert m.types["http_request_duration_seconds"] == "histogram"
    assert m.types["sluice_connections_active"] == "gauge"
    assert m.types["process_resident_memory_bytes"] == "gauge"
    assert m.types["process_cpu_seconds_total"] == "counter"
    for name, labels, value in m.samples:
        assert not name.startswith("http_request_duration_seconds") or "route" in labels


def test_admin_unknown_path_is_404(mgw):
    r = request(mgw.sluice.admin_port, "GET", "/nope")
    assert r.status == 404


def test_request_counters_and_histogram(mgw):
    port = mgw.port
    for _ in range(3):
        assert request(port, "GET", "/echo/g").status == 200
    for _ in range(2):
        assert request(port, "POST", "/echo/p", body=b"data").status == 200
    assert request(port, "HEAD", "/echo/h").status == 200
    for _ in range(2):
        assert request(port, "GET", "/status/503").status == 503
    assert request(port, "GET", "/nomatch").status == 404
    assert request(port, "GET", "/sleep/300").status == 200

    expected = {
        ("/echo", "GET", "200"): 3,
        ("/echo", "POST", "200"): 2,
        ("/echo", "HEAD", "200"): 1,
        ("/status", "GET", "503"): 2,
        ("unmatched", "GET", "404"): 1,
        ("/sleep", "GET", "200"): 1,
    }

    def counts():
        m = mgw.sluice.metrics()
        got = {(l.get("route"), l.get("method"), l.get("status")): v
               for l, v in m.find("http_requests_total")}
        return m if got == {k: float(v) for k, v in expected.items()} else None

    try:
        m = wait_for(counts, 3 * SLOW, what="request counters")
    except AssertionError:
        m = mgw.sluice.metrics()
        pytest.fail("http_requests_total: %r" % m.find("http_requests_total"))

    def hist(route, suffix, **labels):
        return m.value("http_request_duration_seconds" + suffix, route=route, **labels)

    assert hist("/echo", "_count") == 6
    assert hist("/status", "_count") == 2
    assert hist("unmatched", "_count") == 1
    assert hist("/echo", "_bucket", le="+Inf") == 6
    assert 0 < hist("/echo", "_sum") < 6 * SLOW
    # the 300 ms request is counted in seconds, in the right bucket
    assert hist("/sleep", "_count") == 1
    assert hist("/sleep", "_bucket", le="0.25") == 0
    assert hist("/sleep", "_bucket", le="2.5") == 1
    assert 0.29 <= hist("/sleep", "_sum") < 2.5
    # le="+Inf" equals _count for every series
    for labels, v in m.find("http_request_duration_seconds_bucket", le="+Inf"):
        assert v == hist(labels["route"], "_count")


def test_upstream_errors_counted(start_sluice):
    sl = start_sluice(one_service_config("127.0.0.1:%d" % free_port()))
    assert request(sl.port, "GET", "/x").status == 502
    m = wait_for(lambda: (lambda m: m if m.value("http_requests_total", status="502") == 1
                          else None)(sl.metrics()), 3 * SLOW, what="502 counted")
    assert m.value("http_requests_total", route="/", method="GET", status="502") == 1
    assert (m.value("sluice_upstream_errors_total", kind="connect") or 0) >= 1


def test_connections_active_gauge(mgw):
    sl = mgw.sluice
    wait_for(lambda: sl.metric("sluice_connections_active") == 0, 3 * SLOW,
             what="no connections")
    conns = [HttpConn(mgw.port) for _ in range(3)]
    try:
        for c in conns:
            assert c.request("GET", "/echo").status == 200
        assert sl.metric("sluice_connections_active") == 3
    finally:
        for c in conns:
            c.close()
    wait_for(lambda: sl.metric("sluice_connections_active") == 0, 3 * SLOW,
             what="connections closed")


def test_process_metrics(mgw):
    sl = mgw.sluice
    m = sl.metrics()
    rss = m.value("process_resident_memory_bytes")
    proc_rss = sl.rss_kb() * 1024
    assert rss is not None and rss > 1024 * 1024
    assert 0.5 * proc_rss <= rss <= 2 * proc_rss, (rss, proc_rss)
    cpu = m.value("process_cpu_seconds_total")
    with open("/proc/%d/stat" % sl.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    proc_cpu = (int(fields[11]) + int(fields[12])) / float(ticks)  # utime + stime
    assert cpu is not None and cpu >= 0
    assert abs(cpu - proc_cpu) < 0.5, (cpu, proc_cpu)
    info = m.find("sluice_build_info")
    assert len(info) == 1
    labels, value = info[0]
    assert value == 1
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", labels.get("version", "")), labels
    assert labels.get("workers") == "2", labels


def test_prometheus_parser_is_strict():
    """The parser these tests rely on rejects what Prometheus would reject."""
    good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
    parse_prometheus(good)
    bad = [
        good[:-1],  # no final newline
        "# TYPE a counter\na{x=1} 3\n",  # unquoted label value
        "# TYPE a counter\na 3 4 5\n",  # trailing garbage
        "# TYPE a counter\na{x=\"1\"} three\n",  # bad value
        "# TYPE a counter\n# TYPE a counter\na 1\n",  # TYPE twice
        "a 1\n# TYPE a counter\n",  # TYPE after sample
        "# TYPE a gauge\na 1\na 2\n",  # duplicate series
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"y\"} 1\n",  # not contiguous
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
        "h_sum 1\nh_count 1\n",  # not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",  # +Inf != count
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
        "# TYPE a counter\na -1\n",  # negative counter
        "# TYPE a-b counter\n",  # bad name
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            parse_prometheus(text)


# ---- access log ------------------------------------------------------------------------

def read_log_lines(path, n):
    def lines():
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        ls = [l for l in text.split("\n") if l]
        return ls if len(ls) >= n else None

    return wait_for(lines, 2 * SLOW, interval=0.05, what="%d access log lines" % n)


def test_access_log_json_lines(mgw):
    port = mgw.port
    r = request(port, "GET", "/echo/a?x=1")
    generated = [h["value"] for h in r.json()["headers"] if h["name"] == "X-Request-Id"][0]
    request(port, "GET", "/echo/b", [("X-Request-Id", "client-id-7")])
    request(port, "GET", "/nomatch")
    request(port, "POST", "/echo/c", body=b"0123456789")
    lines = read_log_lines(mgw.access_log, 4)
    assert len(lines) == 4, lines
    entries = [json.loads(l) for l in lines]
    for e in entries:
        for field in ("status", "method", "path", "request_id", "upstream"):
            assert field in e, "access log line without %s: %r" % (field, e)
        assert isinstance(e["status"], int)
    by_path = {e["path"].split("?")[0]: e for e in entries}
    a = by_path["/echo/a"]
    assert a["method"] == "GET" and a["status"] == 200
    assert a["request_id"] == generated
    assert a["upstream"] == mgw.origin.address
    assert "x=1" in a["path"]
    b = by_path["/echo/b"]
    assert b["request_id"] == "client-id-7"
    n = by_path["/nomatch"]
    assert n["status"] == 404 and n["upstream"] == ""
    c = by_path["/echo/c"]
    assert c["method"] == "POST" and c["status"] == 200


def test_access_log_records_gateway_errors(mgw):
    with HttpConn(mgw.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert c.read_response().status == 400
    lines = read_log_lines(mgw.access_log, 1)
    e = json.loads(lines[-1])
    assert e["status"] == 400
