"""Alert rules evaluated by sluice itself: an origin answering 5% 500s makes HighErrorRate
go pending, then firing after `for`; a webhook receiver gets the Alertmanager-format
firing notification and, once the errors stop and the window has passed, the resolved
one. Also: GET /alerts, the sluice_alerts gauge, the log lines, a receiver that refuses
connections (retried, then counted as failed, sluice unaffected), and GET /status.json."""

import http.server
import json
import threading
import time

import pytest

from conftest import HttpConn, SLOW, free_port, one_service_config, request, wait_for


class Receiver:
    """An HTTP server thread that records every POSTed JSON body."""

    def __init__(self):
        self.bodies = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.bodies.append((self.path, self.headers.get("Content-Type"),
                                         json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.server.timeout = 1
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self):
        with self.lock:
            return list(self.bodies)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


class Load:
    """Requests in a loop on one keep-alive connection: every 20th goes to /status/500
    while errors are on. Bounded by max_s."""

    def __init__(self, port, max_s=60):
        self.port = port
        self.errors = True
        self.stop_flag = False
        self.sent = 0
        self.max_s = max_s
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        end = time.time() + self.max_s
        with HttpConn(self.port, 10) as c:
            while not self.stop_flag and time.time() < end:
                self.sent += 1
                target = "/status/500" if self.errors and self.sent % 20 == 0 else "/health"
                r = c.request("GET", target)
                assert r.status in (200, 500)
                time.sleep(0.002)

    def stop(self):
        self.stop_flag = True
        self.thread.join(15)


def alerts(s):
    r = request(s.admin_port, "GET", "/alerts")
    assert r.status == 200
    assert r.header("content-type", "").startswith("application/json")
    return {a["name"]: a for a in r.json()["alerts"]}


def test_error_rate_pending_firing_resolved(start_origin, start_sluice, receiver):
    o = start_origin()
    for_s, window_s = 3, 4
    s = start_sluice(one_service_config(o.address, alerts={
        "webhook": "http://127.0.0.1:%d/hook" % receiver.port,
        "rules": [
            # the built-in rule, with a shorter for and window for the test
            {"name": "HighErrorRate", "for": "%ds" % for_s, "window": "%ds" % window_s},
        ]}))
    a = alerts(s)
    assert a["HighErrorRate"]["state"] == "inactive"
    assert a["HighErrorRate"]["expr"] == "error_rate > 0.01"
    assert a["HighErrorRate"]["for_ms"] == for_s * 1000
    assert {"HighLatencyP95", "HighCPU", "HighMemory", "LowCacheHitRate",
            "UpstreamPoolExhausted"} <= set(a)

    load = Load(s.port)
    try:
        # pending first: the rate is over 1% but `for` has not passed
        seen = {}

        def state_is(want):
            st = alerts(s)["HighErrorRate"]
            seen.setdefault(st["state"], time.time())
            return st["state"] == want

        assert wait_for(lambda: state_is("pending"), 10 * SLOW, interval=0.2,
                        what="HighErrorRate pending")
        st = alerts(s)["HighErrorRate"]
        assert 0.02 < st["value"] < 0.09, st  # 1 in 20 requests
        assert wait_for(lambda: state_is("firing"), (for_s + 5) * SLOW, interval=0.2,
                        what="HighErrorRate firing")
        assert seen["firing"] - seen["pending"] >= for_s - 1.2  # polls are 0.2 s apart
        assert 'sluice_alerts{alertname="HighErrorRate",severity="critical",state="firing"} 1' \
            in s.metrics_text()
        assert wait_for(lambda: len(receiver.got()) >= 1, 10 * SLOW, what="firing notification")
        path, ctype, msg = receiver.got()[0]
        assert path == "/hook" and ctype == "application/json"
        assert msg["version"] == "4" and msg["status"] == "firing"
        assert msg["groupLabels"] == {"alertname": "HighErrorRate"}
        (al,) = msg["alerts"]
        assert al["status"] == "firing"
        assert al["labels"]["alertname"] == "HighErrorRate"
        assert al["labels"]["severity"] == "critical"
        assert al["endsAt"] == "0001-01-01T00:00:00Z"
        assert "error_rate" in al["annotations"]["description"]

        # errors stop: once the window holds none, the alert resolves
        load.errors = False
        assert wait_for(lambda: state_is("resolved"), (window_s + 6) * SLOW, interval=0.2,
                        what="HighErrorRate resolved")
        assert wait_for(lambda: len(receiver.got()) >= 2, 10 * SLOW,
                        what="resolved notification")
        _, _, msg2 = receiver.got()[1]
        assert msg2["status"] == "resolved"
        (al2,) = msg2["alerts"]
        assert al2["status"] == "resolved" and al2["endsAt"] != "0001-01-01T00:00:00Z"
        assert al2["fingerprint"] == al["fingerprint"]
        assert al2["startsAt"] == al["startsAt"]
    finally:
        load.stop()
    assert len(receiver.got()) == 2
    log = s.log()
    assert "alert HighErrorRate firing: error_rate = " in log
    assert "alert HighErrorRate resolved" in log
    assert 'sluice_alert_notifications_total{result="sent"} 2' in s.metrics_text()


def test_receiver_down_is_retried_then_counted(start_origin, start_sluice):
    """Nothing listens at the webhook: the notification is tried 4 times (1 s, 2 s, 4 s
    apart), then dropped and counted; requests are served all along."""
    o = start_origin()
    dead = free_port()
    s = start_sluice(one_service_config(o.address, alerts={
        "defaults": False,
        "webhook": "http://127.0.0.1:%d/x" % dead,
        "rules": [{"name": "Busy", "expr": "request_rate > 5", "window": "2s"}]}))
    t0 = time.time()
    with HttpConn(s.port, 10) as c:
        while time.time() - t0 < 2.5:
            assert c.request("GET", "/health").status == 200
            time.sleep(0.01)
    assert wait_for(lambda: alerts(s)["Busy"]["state"] == "firing", 5 * SLOW, what="firing")
    assert set(alerts(s)) == {"Busy"}  # defaults: false
    assert wait_for(lambda: 'sluice_alert_notifications_total{result="failed"} 1'
                    in s.metrics_text(), 15 * SLOW, interval=0.3, what="failure counted")
    assert "webhook 127.0.0.1:%d:/x failed 4 times" % dead in s.log()
    assert request(s.port, "GET", "/health").status == 200


def test_status_json(start_origin, start_sluice):
    o = start_origin()
    s = start_sluice(one_service_config(o.address))
    with HttpConn(s.port, 10) as c:
        for _ in range(50):
            assert c.request("GET", "/health").status == 200
    time.sleep(2.2)
    r = request(s.admin_port, "GET", "/status.json")
    assert r.status == 200
    d = r.json()
    ser = d["series"]
    n = len(ser["t"])
    assert n >= 1
    for k in ("rps", "p50_ms", "p95_ms", "p99_ms", "status_2xx", "status_3xx", "status_4xx",
              "status_5xx", "ratelimited", "cache_hit_ratio"):
        assert len(ser[k]) == n, k
    assert sum(ser["status_2xx"]) >= 50 * 0.95  # per-second rates over samples about 1 s apart
    assert d["totals"]["requests"] >= 50
    (svc,) = d["services"]
    assert svc["name"] == "origin"
    assert svc["servers"][0]["address"] == o.address
    assert svc["servers"][0]["state"] == "up"
    assert {a["name"] for a in d["alerts"]} >= {"HighErrorRate"}
    assert r.header("cache-control") == "no-store"
