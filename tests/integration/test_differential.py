"""sluice checked against an independent HTTP/1.1 parser (h11, python3-h11).

Random but valid requests (seeded, so a failure replays) go through sluice to an origin
that parses what it receives with h11; random responses come back and the client parses
them with h11 too. In both directions the independent parser must see exactly the
messages that were sent: same method, target, status, end-to-end header fields in
order, identical bodies, whatever framing either side used, and nothing more."""

import random
import socket

import h11
import pytest

from conftest import IO_TIMEOUT, one_service_config

HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
       b"transfer-encoding", b"upgrade", b"content-length", b"expect"}
ADDED = {b"x-forwarded-for", b"x-real-ip", b"x-forwarded-proto", b"via", b"x-request-id"}
TCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7f))


def rand_token(rng, n):
    return "".join(rng.choice(TCHAR) for _ in range(n))


def rand_value(rng):
    n = rng.randint(0, 40)
    inner = "".join(rng.choice(VCHAR + "  \t") for _ in range(n))
    return inner.strip(" \t")


def rand_request(rng, i):
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"])
    def seg(n):  # target characters: no '#' (a fragment is never sent), no '%'
        return rand_token(rng, n).replace("#", "h").replace("%", "p")

    path = "/" + "/".join(seg(rng.randint(1, 8)) for _ in range(rng.randint(0, 3)))
    if rng.random() < 0.5:
        path += "?" + "&".join("%s=%s" % (seg(3), seg(4)) for _ in range(rng.randint(1, 3)))
    headers = [(b"Host", b"example.test")]
    used = {b"host"}
    for _ in range(rng.randint(0, 12)):
        name = "X-" + rand_token(rng, rng.randint(1, 12))
        if name.lower().encode() in used:
            continue
        used.add(name.lower().encode())
        headers.append((name.encode(), rand_value(rng).encode()))
    headers.append((b"X-Seq", str(i).encode()))
    body = b""
    framing = None
    if method in ("POST", "PUT", "PATCH") or rng.random() < 0.1:
        body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 100, 5000, 70000])))
        framing = rng.choice(["length", "chunked"])
    return method, path, headers, body, framing


def serialize(method, path, headers, body, framing):
    out = ("%s %s HTTP/1.1\r\n" % (method, path)).encode()
    for n, v in headers:
        out += n + b": " + v + b"\r\n"
    if framing == "length":
        out += b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        out += b"Transfer-Encoding: chunked\r\n\r\n"
        pos = 0
        rng = random.Random(len(body))
        while pos < len(body):
            n = min(len(body) - pos, rng.randint(1, 9000))
            out += b"%x\r\n" % n + body[pos:pos + n] + b"\r\n"
            pos += n
        out += b"0\r\n\r\n"
    else:
        out += b"\r\n"
    return out


def h11_origin(responses):
    """An origin handler that parses with h11 and answers each request with the next
    response spec; records (request, body, error) per request."""

    def handler(sock, origin):
        conn = h11.Connection(h11.SERVER)
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                data = sock.recv(65536)
                origin.record_raw(data)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return
                continue
            if isinstance(ev, h11.ConnectionClosed):
                return
            if isinstance(ev, h11.Request):
                body = b""
                while True:
                    e2 = conn.next_event()
                    if e2 is h11.NEED_DATA:
                        data = sock.recv(65536)
                        origin.record_raw(data)
                        conn.receive_data(data)
                        continue
                    if isinstance(e2, h11.Data):
                        body += e2.data
                    elif isinstance(e2, h11.EndOfMessage):
                        break
                origin.record_request({"req": ev, "body": body})
                status, rheaders, rbody, rframing = responses[
                    len(origin.requests) % len(responses)]
                hdrs = list(rheaders)
                if rframing == "length":
                    hdrs.append((b"Content-Length", b"%d" % len(rbody)))
                else:
                    hdrs.append((b"Transfer-Encoding", b"chunked"))
                sock.sendall(conn.send(h11.Response(status_code=status, headers=hdrs)))
                if rbody:
                    for k in range(0, len(rbody), 7000):
                        sock.sendall(conn.send(h11.Data(data=rbody[k:k + 7000])))
                sock.sendall(conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()

    return handler


def rand_response(rng, k):
    headers = [(b"X-Resp", str(k).encode())]
    for _ in range(rng.randint(0, 8)):
        headers.append((("X-" + rand_token(rng, rng.randint(1, 10))).encode(),
                        rand_value(rng).encode()))
    body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 10, 3000, 40000])))
    return (rng.choice([200, 201, 202, 400, 404, 500]), headers, body,
            rng.choice(["length", "chunked"]))


def client_read(sock, conn, n):
    """Read n responses with an h11 client connection."""
    out = []
    while len(out) < n:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            data = sock.recv(65536)
            assert data, "sluice closed the connection after %d responses" % len(out)
            conn.receive_data(data)
            continue
        if isinstance(ev, h11.Response):
            body = b""
            while True:
                e2 = conn.next_event()
                if e2 is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                    continue
                if isinstance(e2, h11.Data):
                    body += e2.data
                elif isinstance(e2, h11.EndOfMessage):
                    break
            out.append((ev, body))
            assert conn.our_state is h11.DONE and conn.their_state is h11.DONE, \
                (ev, body[:200], conn.states)
            conn.start_next_cycle()
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_both_directions_agree_with_h11(seed, raw_origin, start_sluice):
    rng = random.Random(seed)
    responses = [rand_response(rng, k) for k in range(7)]
    origin = raw_origin(h11_origin(responses))
    sl = start_sluice(one_service_config(origin.address,
                                         limits={"max_body_bytes": "1m"}))
    sent = [rand_request(rng, i) for i in range(40)]
    sock = socket.create_connection(("127.0.0.1", sl.port), timeout=IO_TIMEOUT)
    client = h11.Connection(h11.CLIENT)
    i = 0
    got = []
    while i < len(sent):
        batch = sent[i:i + rng.randint(1, 3)]  # pipelined batches
        sock.sendall(b"".join(serialize(*r) for r in batch))
        # the client-side h11 needs to know the requests to frame the answers
        for (method, path, headers, body, framing) in batch:
            hdrs = list(headers)
            if framing == "length":
                hdrs.append((b"Content-Length", b"%d" % len(body)))
            elif framing == "chunked":
                hdrs.append((b"Transfer-Encoding", b"chunked"))
            client.send(h11.Request(method=method, target=path, headers=hdrs))
            if body:
                client.send(h11.Data(data=body))
            client.send(h11.EndOfMessage())
            got.extend(client_read(sock, client, 1))
        i += len(batch)
    sock.close()

    assert not origin.errors, origin.errors
    assert len(origin.requests) == len(sent)
    for k, ((method, path, headers, body, framing), rec) in enumerate(zip(sent, origin.requests)):
        req = rec["req"]
        assert req.method == method.encode(), k
        assert req.target == path.encode(), k
        assert rec["body"] == body, k
        fwd = [(n, v) for n, v in req.headers if n not in ADDED and n not in HOP]
        want = [(n.lower(), v) for n, v in headers]
        assert fwd == want, (k, fwd, want)
        names = [n for n, _ in req.headers]
        assert names.count(b"x-forwarded-for") == 1 and names.count(b"via") == 1
        assert not [n for n in names if n in (HOP - {b"content-length", b"transfer-encoding"})]
        if body:
            te = dict(req.headers).get(b"transfer-encoding")
            assert (te == b"chunked") == (framing == "chunked"), k
    for k, (resp, body) in enumerate(got):
        status, rheaders, rbody, _ = responses[(k + 1) % len(responses)]
        assert resp.status_code == status, k
        assert body == (b"" if sent[k][0] == "HEAD" else rbody), k
        fwd = [(n, v) for n, v in resp.headers
               if n not in HOP and n not in (b"via", b"date", b"server")]
        assert fwd == [(n.lower(), v) for n, v in rheaders], k
