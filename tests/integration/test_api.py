"""The run-time API on the admin listener (docs/api.md): list services and servers, add
a server, drain one under load, refuse bad input without changing anything, and the
bearer token (admin.token_env).

Every sluice here routes everything to one service, so the demo-origins' own /stats
("requests" counts every request an origin received, /stats included) tell which
server got traffic. Timing bounds carry slack (x3 under SAN).
"""

import json
import os
import threading
import time

import pytest

from conftest import (SLOW, SLUICE_BIN, HttpConn, Proc, Sluice, build_request, free_port,
                      request, sluice_config, to_yaml, wait_for, wait_listening)

SERVERS = "/api/services/origin/servers"


def svc_config(origins, **service):
    """One service "origin" (round robin) with these demo-origins, every path routed to
    it, and a second service "other" the API must list too."""
    svc = {"keepalive": 32, "servers": [{"address": o.address} for o in origins]}
    svc.update(service)
    other = {"balance": "least_conn", "servers": [{"address": "127.0.0.1:9"}],
             "read_servers": [{"address": "127.0.0.1:10"}, {"address": "127.0.0.1:11"}]}
    return sluice_config(services={"origin": svc, "other": other},
                         routes=[{"match": {"path_prefix": "/"}, "service": "origin"}])


def api(sl, method, target, body=None, headers=None):
    """One admin request on a fresh connection; body may be a dict (sent as JSON)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    return request(sl.admin_port, method, target, headers=headers, body=body)


def api_json(sl, target):
    r = api(sl, "GET", target)
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json", r
    return r.json()


def servers_by_address(sl, service="origin"):
    return {(s["address"], s["pool"]): s
            for s in api_json(sl, "/api/services/%s/servers" % service)["servers"]}


def assert_error(r, status, *needles):
    assert r.status == status, r
    assert r.header("Content-Type") == "application/json", r
    j = r.json()
    assert j["status"] == status, j
    for n in needles:
        assert n in j["error"], (n, j)
    return j


SERVER_FIELDS = {"address", "pool", "weight", "max_fails", "fail_timeout_ms", "state",
                 "in_flight", "fails", "requests", "failures", "transitions", "health"}


@pytest.fixture
def two(start_origin, start_sluice):
    o1, o2 = start_origin(name="o1"), start_origin(name="o2")
    sl = start_sluice(svc_config([o1, o2]))

    class T:
        pass

    t = T()
    t.o1, t.o2, t.sluice = o1, o2, sl
    return t


# ---------------------------------------------------------------------------------------
# reading


def test_list_services(two):
    r = api(two.sluice, "GET", "/api/services")
    assert r.status == 200 and r.header("Content-Type") == "application/json", r
    services = {s["name"]: s for s in r.json()["services"]}
    assert services["origin"] == {"name": "origin", "balance": "round_robin", "servers": 2,
                                  "read_servers": 0, "healthy": 2}
    o = services["other"]
    assert (o["balance"], o["servers"], o["read_servers"]) == ("least_conn", 1, 2)
    # HEAD: the same head, no body
    h = api(two.sluice, "HEAD", "/api/services")
    assert h.status == 200 and h.body == b""
    assert int(h.header("Content-Length")) == len(r.body)


def test_get_one_service_has_both_pools(two):
    j = api_json(two.sluice, "/api/services/other")
    assert j["name"] == "other" and j["balance"] == "least_conn"
    assert [s["address"] for s in j["servers"]] == ["127.0.0.1:9"]
    assert [s["address"] for s in j["read_servers"]] == ["127.0.0.1:10", "127.0.0.1:11"]
    assert {s["pool"] for s in j["read_servers"]} == {"read"}
    assert_error(api(two.sluice, "GET", "/api/services/nope"), 404, 'unknown service "nope"')


def test_list_servers_with_fields(two):
    for _ in range(6):
        assert request(two.sluice.port, "GET", "/health").status == 200
    j = api_json(two.sluice, SERVERS)
    assert j["service"] == "origin"
    assert [s["address"] for s in j["servers"]] == [two.o1.address, two.o2.address]
    for s in j["servers"]:
        assert set(s) >= SERVER_FIELDS, s
        assert s["pool"] == "primary" and s["weight"] == 1 and s["state"] == "up", s
        assert s["in_flight"] == 0 and s["failures"] == 0, s
        assert set(s["health"]) >= {"checks", "failed", "last_status"}, s
    assert sum(s["requests"] for s in j["servers"]) == 6, j
    # one server, by address (":" may be sent as %3A)
    one = api_json(two.sluice, SERVERS + "/" + two.o2.address.replace(":", "%3A"))
    assert one["service"] == "origin" and one["server"]["address"] == two.o2.address


# ---------------------------------------------------------------------------------------
# adding


def test_add_server_gets_traffic(two, start_origin):
    o3 = start_origin(name="o3")
    r = api(two.sluice, "POST", SERVERS, {"address": o3.address, "weight": 1})
    assert r.status == 201, r
    added = r.json()["added"]
    assert added["address"] == o3.address and added["pool"] == "primary"
    assert added["state"] == "up" and added["weight"] == 1, added
    assert r.header("Location") == SERVERS + "/" + o3.address
    assert (o3.address, "primary") in servers_by_address(two.sluice)
    services = {s["name"]: s for s in api_json(two.sluice, "/api/services")["services"]}
    assert services["origin"]["servers"] == 3 and services["origin"]["healthy"] == 3

    # Round robin over three servers, on one kept-alive client connection.
    accepted0 = o3.stats()["connections_accepted"]
    names = {}
    with HttpConn(two.sluice.port) as c:
        for _ in range(30):
            resp = c.request("GET", "/health")
            assert resp.status == 200, resp
            n = resp.json()["name"]
            names[n] = names.get(n, 0) + 1
    assert set(names) == {"o1", "o2", "o3"}, names
    assert min(names.values()) >= 8, names
    st = o3.stats()
    assert st["requests"] == names["o3"] + 2, st  # + the two /stats requests
    # keep-alive upstream: one connection from sluice's worker (+ the second /stats one)
    assert st["connections_accepted"] - accepted0 == 2, (accepted0, st)
    after = servers_by_address(two.sluice)[(o3.address, "primary")]
    assert after["requests"] == names["o3"], after


def test_add_with_every_field_and_to_the_read_pool(two, start_origin):
    o3 = start_origin(name="o3")
    r = api(two.sluice, "POST", SERVERS, {"address": o3.address, "weight": 3,
                                          "max_fails": 2, "fail_timeout": "30s"})
    assert r.status == 201, r
    a = r.json()["added"]
    assert (a["weight"], a["max_fails"], a["fail_timeout_ms"]) == (3, 2, 30000), a
    r = api(two.sluice, "POST", "/api/services/other/servers",
            {"address": "127.0.0.1:12", "pool": "read", "fail_timeout": 5})
    assert r.status == 201, r
    a = r.json()["added"]
    assert a["pool"] == "read" and a["fail_timeout_ms"] == 5000, a
    assert r.header("Location") == "/api/services/other/servers/127.0.0.1:12?pool=read"
    j = api_json(two.sluice, "/api/services/other")
    assert [s["address"] for s in j["read_servers"]] == ["127.0.0.1:10", "127.0.0.1:11",
                                                        "127.0.0.1:12"]
    # the same address may sit in both pools; then a DELETE must say which
    assert api(two.sluice, "POST", "/api/services/other/servers",
               {"address": "127.0.0.1:12"}).status == 201
    assert_error(api(two.sluice, "DELETE", "/api/services/other/servers/127.0.0.1:12"), 409,
                 "both pools")
    r = api(two.sluice, "DELETE", "/api/services/other/servers/127.0.0.1:12?pool=read")
    assert r.status == 202 and r.json()["draining"]["pool"] == "read", r


def test_add_to_a_service_without_a_read_pool(two, start_origin):
    r = api(two.sluice, "POST", SERVERS, {"address": "127.0.0.2:80", "pool": "read"})
    assert r.status == 201, r
    j = api_json(two.sluice, "/api/services/origin")
    assert [s["address"] for s in j["read_servers"]] == ["127.0.0.2:80"]


def test_pool_full_is_507(two):
    before = None
    added = 0
    for i in range(1, 200):
        r = api(two.sluice, "POST", "/api/services/other/servers",
                {"address": "127.0.0.3:%d" % i})
        if r.status != 201:
            before = i
            break
        added += 1
    assert_error(r, 507, "full")
    assert added == 64, added  # SL_POOL_HEADROOM servers added at run time per pool
    n = len(api_json(two.sluice, "/api/services/other")["servers"])
    r = api(two.sluice, "POST", "/api/services/other/servers",
            {"address": "127.0.0.3:%d" % (before + 1)})
    assert r.status == 507
    assert len(api_json(two.sluice, "/api/services/other")["servers"]) == n == 65


# ---------------------------------------------------------------------------------------
# refusing


BAD_POSTS = [
    (b"{", 400, "bad JSON"),
    (b"[]", 400, "JSON object"),
    (b"", 400, "missing request body"),
    (b'{"weight": 2}', 400, 'missing field "address"'),
    (b'{"address": 8004}', 400, '"address" must be a string'),
    (b'{"address": "localhost:8004"}', 400, 'bad "address" "localhost:8004"'),
    (b'{"address": "127.0.0.1"}', 400, 'bad "address"'),
    (b'{"address": "127.0.0.1:0"}', 400, 'bad "address"'),
    (b'{"address": "127.0.0.1:70000"}', 400, 'bad "address"'),
    (b'{"address": "127.0.0.1:8004", "weight": 0}', 400, '"weight"'),
    (b'{"address": "127.0.0.1:8004", "weight": 1001}', 400, '"weight"'),
    (b'{"address": "127.0.0.1:8004", "weight": "2"}', 400, '"weight"'),
    (b'{"address": "127.0.0.1:8004", "weight": 1.5}', 400, '"weight"'),
    (b'{"address": "127.0.0.1:8004", "colour": "red"}', 400, 'unknown field "colour"'),
    (b'{"address": "127.0.0.1:8004", "pool": "replica"}', 400, '"pool"'),
    (b'{"address": "127.0.0.1:8004", "max_fails": -1}', 400, '"max_fails"'),
    (b'{"address": "127.0.0.1:8004", "fail_timeout": "soon"}', 400, '"fail_timeout"'),
    (b'{"address": "127.0.0.1:8004", "fail_timeout": "0s"}', 400, '"fail_timeout"'),
    (b'{"address": "127.0.0.1:8004", "address": "127.0.0.1:8005"}', 400, "duplicate"),
]


def test_bad_inputs_change_nothing(two):
    sl = two.sluice
    before = (api(sl, "GET", "/api/services").body, api(sl, "GET", "/api/services/origin").body)

    for body, status, needle in BAD_POSTS:
        assert_error(api(sl, "POST", SERVERS, body), status, needle)
    # duplicate address in that pool
    assert_error(api(sl, "POST", SERVERS, {"address": two.o1.address}), 409,
                 "already in the primary pool")
    # unknown service
    assert_error(api(sl, "POST", "/api/services/x/servers", {"address": "127.0.0.1:8004"}),
                 404, 'unknown service "x"')
    # body over 64 KiB, with Content-Length and chunked
    big = json.dumps({"address": "127.0.0.1:8004", "pad": "x" * 70000}).encode()
    assert_error(api(sl, "POST", SERVERS, big), 413, "64 KiB")
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 8192]), big[i:i + 8192])
                       for i in range(0, len(big), 8192)) + b"0\r\n\r\n"
    assert_error(api(sl, "POST", SERVERS, chunked, headers={"Transfer-Encoding": "chunked"}),
                 413, "64 KiB")
    # a body split in chunks under the bound is fine (and still validated)
    small = b'{"address": "127.0.0.1:8004", "weight": 0}'
    assert_error(api(sl, "POST", SERVERS, b"5\r\n" + small[:5] + b"\r\n%x\r\n" % (len(small) - 5)
                     + small[5:] + b"\r\n0\r\n\r\n", headers={"Transfer-Encoding": "chunked"}),
                 400, '"weight"')
    # DELETE: unknown server, malformed address, unknown service, bad ?pool
    assert_error(api(sl, "DELETE", SERVERS + "/127.0.0.1:1"), 404, "no server 127.0.0.1:1")
    assert_error(api(sl, "DELETE", SERVERS + "/nothere"), 400, "bad server address")
    assert_error(api(sl, "DELETE", "/api/services/x/servers/127.0.0.1:1"), 404,
                 'unknown service "x"')
    assert_error(api(sl, "DELETE", SERVERS + "/" + two.o1.address + "?pool=x"), 400, "pool")
    # wrong methods: 405 with Allow
    for method, target, allow in (("PUT", SERVERS, "GET, HEAD, POST"),
                                  ("DELETE", "/api/services", "GET, HEAD"),
                                  ("POST", "/api/services/origin", "GET, HEAD"),
                                  ("POST", SERVERS + "/" + two.o1.address, "GET, HEAD, DELETE"),
                                  ("PATCH", SERVERS + "/" + two.o1.address, "GET, HEAD, DELETE")):
        r = api(sl, method, target)
        assert_error(r, 405)
        assert r.header("Allow") == allow, r
    # unknown paths
    for target in ("/api", "/api/", "/api/nope", "/api/services/", "/api/services/origin/x",
                   "/api/services//servers", SERVERS + "/" + two.o1.address + "/more"):
        assert_error(api(sl, "GET", target), 404)

    after = (api(sl, "GET", "/api/services").body, api(sl, "GET", "/api/services/origin").body)
    assert after == before
    # /metrics and /health are still there, and the listener still serves
    assert api(sl, "GET", "/metrics").status == 200
    assert api(sl, "GET", "/health").status == 200


def test_errors_keep_the_connection(two):
    """An error after a complete body answers on the same kept-alive connection."""
    with HttpConn(two.sluice.admin_port) as c:
        for body, status, _ in BAD_POSTS[:4]:
            r = c.request("POST", SERVERS, body=body)
            assert r.status == status, r
            assert r.header("Connection") is None, r
        assert c.request("GET", "/api/services").status == 200


def test_post_with_expect_100_continue(two):
    body = json.dumps({"address": "127.0.0.2:81"}).encode()
    with HttpConn(two.sluice.admin_port) as c:
        c.send(build_request("POST", SERVERS, [("Expect", "100-continue"),
                                               ("Content-Length", str(len(body)))]))
        interim = c.read_head()
        assert interim.status == 100, interim
        c.send(body)
        r = c.read_response()
    assert r.status == 201, r
    assert r.json()["added"]["address"] == "127.0.0.2:81"


def test_clients_leaving_mid_body(two):
    """Bodies abandoned half-way are released (ASan builds check for leaks at exit);
    the API keeps answering."""
    before = api(two.sluice, "GET", SERVERS).body
    for i in range(80):
        with HttpConn(two.sluice.admin_port) as c:
            if i % 2:
                c.send(build_request("POST", SERVERS, [("Content-Length", "100")]) +
                       b'{"address": ')
            else:
                c.send(build_request("POST", SERVERS, [("Transfer-Encoding", "chunked")]) +
                       b"a\r\n" + b'{"address"')
    # The 80 closes reach sluice asynchronously; until it has seen them their bodies
    # count against the 64 in progress, so poll (bounded) rather than race them.
    wait_for(lambda: api(two.sluice, "POST", SERVERS, {"address": "127.0.0.2:82"}).status
             == 201, 5 * SLOW, what="the abandoned bodies released")
    after = json.loads(api(two.sluice, "GET", SERVERS).body)["servers"]
    assert [s for s in after if s["address"] != "127.0.0.2:82"] == \
        json.loads(before)["servers"]


def test_bodies_in_progress_are_bounded(two):
    """At most 64 POST bodies are collected at once; one more is answered 503."""
    conns = []
    try:
        for _ in range(64):
            c = HttpConn(two.sluice.admin_port)
            conns.append(c)
            c.send(build_request("POST", SERVERS, [("Expect", "100-continue"),
                                                   ("Content-Length", "30")]))
            assert c.read_head().status == 100  # dispatched: its body is awaited
        r = api(two.sluice, "POST", SERVERS, {"address": "127.0.0.2:83"})
        assert_error(r, 503, "too many")
    finally:
        for c in conns:
            c.close()
    wait_for(lambda: api(two.sluice, "POST", SERVERS, {"address": "127.0.0.2:83"}).status
             == 201, 5 * SLOW, what="a POST accepted again")


# ---------------------------------------------------------------------------------------
# draining


class Loop(threading.Thread):
    """Sequential requests for target on one kept-alive connection until stopped,
    recording (start, end, status, origin name) and failures."""

    def __init__(self, port, target):
        super().__init__(daemon=True)
        self.port, self.target = port, target
        self.stop = threading.Event()
        self.done = []
        self.failed = []

    def run(self):
        c = None
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                if c is None:
                    c = HttpConn(self.port)
                r = c.request("GET", self.target)
                name = r.json().get("name") if r.status == 200 else None
                self.done.append((t0, time.monotonic(), r.status, name))
                if r.status != 200:
                    self.failed.append(r)
                if (r.header("Connection") or "").lower() == "close":
                    c.close()
                    c = None
            except Exception as e:  # every failure is a test failure
                self.failed.append(repr(e))
                if c:
                    c.close()
                c = None
        if c:
            c.close()


def test_drain_under_load(two):
    sl, o2 = two.sluice, two.o2
    fast = Loop(sl.port, "/health")
    # Long enough that the slow request seen on o2 is still in flight when DELETE lands,
    # even on a loaded (or ASan) build.
    slow = [Loop(sl.port, "/sleep/3000") for _ in range(2)]
    for t in [fast] + slow:
        t.start()
    try:
        # Drain while o2 is serving a slow request: in flight in ten polls over 300 ms.
        # (A /health answer takes under a millisecond, but on a loaded machine o2 has one
        # in flight a good part of the time: two polls were not enough to tell.)
        def slow_on_o2():
            for _ in range(10):
                if servers_by_address(sl)[(o2.address, "primary")]["in_flight"] < 1:
                    return False
                time.sleep(0.03)
            return True

        wait_for(slow_on_o2, 10 * SLOW, interval=0.01, what="a slow request on o2")
        t_delete = time.monotonic()
        r = api(sl, "DELETE", SERVERS + "/" + o2.address)
        assert r.status == 202, r
        d = r.json()["draining"]
        assert d["address"] == o2.address and d["state"] == "draining", d
        assert d["in_flight"] >= 1, d

        # Requests that chose o2 before the drain reach it within microseconds.
        time.sleep(0.1)
        n1, fast1 = o2.stats()["requests"], len(fast.done)
        time.sleep(0.6 * SLOW)
        n2, fast2 = o2.stats()["requests"], len(fast.done)
        assert fast2 - fast1 >= 20, (fast1, fast2)
        assert n2 == n1 + 1, (n1, n2)  # only our second /stats request
    finally:
        for t in [fast] + slow:
            t.stop.set()
        for t in [fast] + slow:
            t.join(10 * SLOW)
    for t in [fast] + slow:
        assert not t.failed, t.failed[:5]
    # the slow request o2 was serving when the drain began finished with 200
    on_o2 = [x for t in slow for x in t.done
             if x[3] == "o2" and x[0] < t_delete < x[1]]
    assert on_o2 and all(x[2] == 200 for x in on_o2), on_o2
    # after the drain every request went to o1
    assert {x[3] for x in fast.done if x[0] > t_delete + 0.1} == {"o1"}

    wait_for(lambda: servers_by_address(sl)[(o2.address, "primary")]["state"] == "removed",
             5 * SLOW, what="o2 removed")
    s = servers_by_address(sl)[(o2.address, "primary")]
    assert s["in_flight"] == 0, s
    services = {x["name"]: x for x in api_json(sl, "/api/services")["services"]}
    assert services["origin"]["servers"] == 1 and services["origin"]["healthy"] == 1
    # gone: a second DELETE finds no live server; GET of it still reports "removed"
    assert_error(api(sl, "DELETE", SERVERS + "/" + o2.address), 404)
    assert api_json(sl, SERVERS + "/" + o2.address)["server"]["state"] == "removed"
    assert any("draining -> removed" in l and o2.address in l for l in sl.log().splitlines())


def test_drain_last_server_then_add_it_back(start_origin, start_sluice):
    o1 = start_origin(name="o1")
    sl = start_sluice(svc_config([o1]))
    result = {}

    def slow():
        result["r"] = request(sl.port, "GET", "/sleep/1000")

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    wait_for(lambda: servers_by_address(sl)[(o1.address, "primary")]["in_flight"] == 1,
             5 * SLOW, what="the slow request in flight")
    r = api(sl, "DELETE", SERVERS + "/" + o1.address.replace(":", "%3A"))
    assert r.status == 202, r
    assert r.json()["draining"]["in_flight"] == 1
    assert_error(api(sl, "DELETE", SERVERS + "/" + o1.address), 409, "already draining")
    assert api_json(sl, SERVERS + "/" + o1.address)["server"]["state"] == "draining"
    # a draining server takes no new request: the service has none left
    assert request(sl.port, "GET", "/health").status == 503
    t.join(10 * SLOW)
    assert result["r"].status == 200, result
    wait_for(lambda: servers_by_address(sl)[(o1.address, "primary")]["state"] == "removed",
             5 * SLOW, what="o1 removed")
    # a removed server's address may be added again (a new slot)
    r = api(sl, "POST", SERVERS, {"address": o1.address})
    assert r.status == 201, r
    assert request(sl.port, "GET", "/health").status == 200
    states = [s["state"] for s in api_json(sl, SERVERS)["servers"]]
    assert states == ["removed", "up"], states


# ---------------------------------------------------------------------------------------
# the bearer token


@pytest.fixture
def start_sluice_env(procs, tmp_path):
    """start(config, env) -> Sluice: like start_sluice, with extra environment variables
    for sluice's process (conftest's starter has no env parameter)."""
    counter = [0]

    def start(config, env):
        for _ in range(3):
            counter[0] += 1
            port, admin_port = free_port(), free_port()
            cfg = json.loads(json.dumps(config))
            cfg = dict([("listen", ["127.0.0.1:%d" % port])] + list(cfg.items()))
            cfg.setdefault("admin", {})["listen"] = "127.0.0.1:%d" % admin_port
            path = tmp_path / ("sluice-env-%d.yaml" % counter[0])
            path.write_text(to_yaml(cfg) + "\n")
            p = procs.add(Proc([SLUICE_BIN, "-c", path],
                               tmp_path / ("sluice-env-%d.log" % counter[0]), env=env))
            if wait_listening(p, port, 10 * SLOW) and wait_listening(p, admin_port, 10 * SLOW):
                p.check_exit = True
                return Sluice(p, port, admin_port, path, cfg)
            p.stop()
            if "address already in use" not in p.log().lower():
                raise RuntimeError("sluice did not start:\n" + p.log())
        raise RuntimeError("sluice: no usable ports")

    return start


TOKEN_ENV = "SLUICE_TEST_API_TOKEN"
TOKEN = "s3cret-t0ken.with_chars~+/="


def test_bearer_token(start_origin, start_sluice_env):
    o1 = start_origin(name="o1")
    cfg = svc_config([o1])
    cfg["admin"] = {"token_env": TOKEN_ENV}
    sl = start_sluice_env(cfg, {TOKEN_ENV: TOKEN})

    def get(target, auth=None, method="GET", body=None):
        return api(sl, method, target, body=body,
                   headers=[("Authorization", auth)] if auth else None)

    for auth in (None, "Bearer", "Bearer ", "Bearer wrong", "Bearer " + TOKEN[:-1],
                 "Bearer " + TOKEN + "x", "Basic " + TOKEN, TOKEN):
        r = get("/api/services", auth)
        assert_error(r, 401, "missing or bad bearer token")
        assert r.header("WWW-Authenticate", "").startswith("Bearer"), r
    # two Authorization fields, one of them right: refused
    r = api(sl, "GET", "/api/services", headers=[("Authorization", "Bearer " + TOKEN),
                                                 ("Authorization", "Bearer x")])
    assert r.status == 401, r
    # unknown /api paths and writes are behind the token too
    assert get("/api/nope").status == 401
    r = get(SERVERS, method="POST", body=json.dumps({"address": "127.0.0.1:8004"}))
    assert r.status == 401, r
    assert get("/api/services", "Bearer " + TOKEN).status == 200
    assert get("/api/services", "bearer " + TOKEN).status == 200  # scheme: any case
    j = get(SERVERS, "Bearer " + TOKEN).json()
    assert [s["address"] for s in j["servers"]] == [o1.address]  # nothing was added
    assert get("/api/nope", "Bearer " + TOKEN).status == 404
    # /metrics and /health stay open
    assert get("/metrics").status == 200
    assert get("/health").status == 200


def test_token_env_unset_fails_closed(start_origin, start_sluice_env):
    o1 = start_origin(name="o1")
    cfg = svc_config([o1])
    cfg["admin"] = {"token_env": "SLUICE_TEST_API_TOKEN_NOT_SET"}
    assert "SLUICE_TEST_API_TOKEN_NOT_SET" not in os.environ
    sl = start_sluice_env(cfg, {})
    for auth in (None, "Bearer ", "Bearer x"):
        r = api(sl, "GET", "/api/services", headers=[("Authorization", auth)] if auth else None)
        assert_error(r, 503, "admin token not configured")
    assert api(sl, "GET", "/metrics").status == 200
    assert api(sl, "GET", "/health").status == 200
    assert any("token_env" in l for l in sl.log().splitlines())
