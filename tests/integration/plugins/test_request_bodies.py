"""Request bodies read whole before the access phase, for routes whose
plugins want them (sl_native_plugin_t.wants_body): the proxy's buffering
itself, seen from the client and the echo upstream (body_len, body_sha256,
the framing it received).

The routes use request-size-limiting with a limit below 1 MiB (an instance
that wants the body) and a data plane with client_body_buffer_size = 64k
and client_body_timeout = 1s. Covered: Content-Length and chunked bodies
arrive whole with a Content-Length; nothing reaches the upstream before the
body is complete; Expect: 100-continue; a body over the buffer gets 413 and
the connection closes; a plugin's own answer after buffering keeps the
connection; a stalled body hits client_body_timeout; bad chunked framing;
pipelined requests after a buffered one; a retry after a refused connection
sends the body again; routes without such a plugin still stream.
"""

import hashlib
import os
import time
import uuid

import pytest

import h1
from conftest import declarative, free_port, route, service

BUFFER = 64 * 1024
LIMIT = 1000 * 1024  # request-size-limiting: wants the body (below 1 MiB)
RSL_ID = "7c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e01"
RSL_SMALL_ID = "7c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e02"
RSL_RETRY_ID = "7c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e03"


def rsl(pid, size, unit="bytes"):
    return {"id": pid, "name": "request-size-limiting",
            "config": {"allowed_payload_size": size, "size_unit": unit}}


@pytest.fixture(scope="module")
def dead_port():
    return free_port()


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream, dead_port):
    targets = [{"target": "127.0.0.1:%d" % dead_port}, {"target": "%s:%d" % upstream.addr}]
    return module_sluice_factory(declarative([
        service("echo", upstream.url, routes=[
            route("buf", paths=["/buf"], plugins=[rsl(RSL_ID, LIMIT)]),
            route("small", paths=["/small"], plugins=[rsl(RSL_SMALL_ID, 100)]),
            route("stream", paths=["/stream"]),
        ]),
        service("retry", "http://pool.test", retries=3, routes=[
            route("retry", paths=["/retry"], plugins=[rsl(RSL_RETRY_ID, LIMIT)])]),
    ], upstreams=[{"name": "pool.test", "targets": targets}]),
        {"client_body_buffer_size": "64k", "client_body_timeout": "1s"})


def sha(b):
    return hashlib.sha256(b).hexdigest()


def up_headers(resp, name):
    return [v for k, v in resp.json()["headers"] if k.lower() == name.lower()]


def assert_arrived(resp, body):
    """The upstream got exactly `body`, framed by a Content-Length."""
    assert resp.status == 200, resp
    e = resp.json()
    assert (e["body_len"], e["body_sha256"]) == (len(body), sha(body))
    assert e["chunked"] is False
    assert up_headers(resp, "Content-Length") == [str(len(body))]
    assert up_headers(resp, "Transfer-Encoding") == []


# ------------------------------------------------------------------ bodies arrive whole


def test_content_length_body_arrives_whole(dp):
    body = os.urandom(40000)
    assert_arrived(dp.request("POST", "/buf/echo", body=body), body)


def test_chunked_body_arrives_with_content_length(dp):
    pieces = [os.urandom(n) for n in (1, 1000, 17, 30000, 5)]
    body = b"".join(pieces)
    resp = dp.request("POST", "/buf/echo", [("Transfer-Encoding", "chunked")],
                      h1.chunked_body(pieces, trailers=[("X-Trailer", "t")], ext=True))
    assert_arrived(resp, body)
    assert resp.json()["trailers"] == []


def test_empty_bodies(dp):
    assert_arrived(dp.request("POST", "/buf/echo", body=b""), b"")
    resp = dp.request("POST", "/buf/echo", [("Transfer-Encoding", "chunked")],
                      h1.chunked_body([]))
    assert_arrived(resp, b"")
    resp = dp.get("/buf/echo")
    assert resp.status == 200 and resp.json()["body_len"] == 0


def test_body_at_buffer_size_is_accepted(dp):
    body = os.urandom(BUFFER)
    assert_arrived(dp.request("POST", "/buf/echo", body=body), body)
    resp = dp.request("POST", "/buf/echo", [("Transfer-Encoding", "chunked")],
                      h1.chunked_body([body[:1000], body[1000:]]))
    assert_arrived(resp, body)


@pytest.mark.parametrize("chunked", [False, True])
def test_nothing_goes_upstream_before_the_body_is_complete(dp, upstream, chunked):
    token = uuid.uuid4().hex
    body = os.urandom(20000)
    with dp.conn() as c:
        if chunked:
            c.send(h1.build_request("POST", "/buf/count/" + token,
                                    [("Transfer-Encoding", "chunked")]))
            c.send(b"%x\r\n" % 10000 + body[:10000] + b"\r\n")
        else:
            c.send(h1.build_request("POST", "/buf/count/" + token,
                                    [("Content-Length", str(len(body)))]))
            c.send(body[:10000])
        time.sleep(0.5)  # well inside client_body_timeout
        assert upstream.counter(token) == 0, "the request went upstream before its body"
        if chunked:
            c.send(b"%x\r\n" % 10000 + body[10000:] + b"\r\n0\r\n\r\n")
        else:
            c.send(body[10000:])
        resp = c.read_response()
    assert resp.status == 200, resp
    assert upstream.counter(token) == 1


def test_body_sent_in_small_pieces(dp):
    body = os.urandom(3000)
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/buf/echo", [("Content-Length", str(len(body)))]))
        for i in range(0, len(body), 500):
            c.send(body[i:i + 500])
            time.sleep(0.05)
        assert_arrived(c.read_response(), body)


# ------------------------------------------------------------------ Expect: 100-continue


def test_expect_100_continue(dp):
    body = os.urandom(5000)
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/buf/echo", [("Expect", "100-continue"),
                                                      ("Content-Length", str(len(body)))]))
        interim = c.read_head()
        assert interim.status == 100, interim
        c.send(body)
        assert_arrived(c.read_response(), body)
        # No second 100 Continue (the proxy must not send one when it goes
        # upstream): the next response on the connection is the next request's.
        again = c.request("GET", "/buf/echo")
        assert again.status == 200 and again.interim == []


def test_expect_100_continue_chunked(dp):
    pieces = [os.urandom(700), os.urandom(300)]
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/buf/echo", [("Expect", "100-continue"),
                                                      ("Transfer-Encoding", "chunked")]))
        assert c.read_head().status == 100
        c.send(h1.chunked_body(pieces))
        assert_arrived(c.read_response(), b"".join(pieces))


# ------------------------------------------------------------------ over the buffer: 413, close


def test_content_length_over_buffer_is_413_and_closes(dp, upstream):
    token = uuid.uuid4().hex
    with dp.conn() as c:
        # Refused on the head: the body is never sent.
        c.send(h1.build_request("POST", "/buf/count/" + token,
                                [("Content-Length", str(BUFFER + 1))]))
        resp = c.read_response()
        assert resp.status == 413, resp
        assert "client_body_buffer_size" in resp.json()["message"]
        closed, _ = c.wait_closed(5)
        assert closed, "connection left open after a 413 with an unread body"
    assert upstream.counter(token) == 0


def test_chunked_over_buffer_is_413_and_closes(dp, upstream):
    token = uuid.uuid4().hex
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/buf/count/" + token,
                                [("Transfer-Encoding", "chunked")]))
        c.send(b"%x\r\n" % BUFFER + b"a" * BUFFER + b"\r\n")
        c.send(b"1\r\nb\r\n")  # one byte over
        resp = c.read_response()
        assert resp.status == 413, resp
        closed, _ = c.wait_closed(5)
        assert closed
    assert upstream.counter(token) == 0
    assert dp.get("/buf/echo").status == 200  # still serving


def test_plugin_answer_after_buffering_keeps_the_connection(dp):
    """The body was read for the plugin, which refuses it: the connection
    stays usable (the body was consumed)."""
    with dp.conn() as c:
        resp = c.request("POST", "/small/echo", [("Transfer-Encoding", "chunked")],
                         h1.chunked_body([b"x" * 60, b"y" * 41]))
        assert resp.status == 413, resp
        assert resp.json()["message"] == "Request size limit exceeded"
        body = b"z" * 100
        assert_arrived(c.request("POST", "/small/echo", body=body), body)


def test_bad_chunked_framing_while_buffering(dp):
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/buf/echo", [("Transfer-Encoding", "chunked")]))
        c.send(b"zz\r\nhello\r\n0\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 400, resp
        closed, _ = c.wait_closed(5)
        assert closed
    assert dp.get("/buf/echo").status == 200


# ------------------------------------------------------------------ client_body_timeout


@pytest.mark.parametrize("chunked", [False, True])
def test_stalled_body_hits_client_body_timeout(dp, upstream, chunked):
    token = uuid.uuid4().hex
    with dp.conn(timeout=10) as c:
        if chunked:
            c.send(h1.build_request("POST", "/buf/count/" + token,
                                    [("Transfer-Encoding", "chunked")]))
            c.send(b"64\r\n" + b"a" * 10)
        else:
            c.send(h1.build_request("POST", "/buf/count/" + token,
                                    [("Content-Length", "100")]))
            c.send(b"a" * 10)
        start = time.monotonic()
        closed, extra = c.wait_closed(8)
        waited = time.monotonic() - start
    assert closed, "a stalled request body was waited for more than 8s"
    assert waited >= 0.8, "closed after %.2fs, before client_body_timeout (1s)" % waited
    # Whatever was said before the close is a 408, never a proxied answer.
    assert extra == b"" or extra.startswith(b"HTTP/1.1 408 "), extra
    assert upstream.counter(token) == 0
    assert dp.get("/buf/echo").status == 200


def test_slow_but_steady_body_is_not_cut_off(dp):
    """client_body_timeout bounds the pause between reads, not the whole body."""
    body = os.urandom(1000)
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/buf/echo", [("Content-Length", str(len(body)))]))
        for i in range(0, 1000, 250):
            c.send(body[i:i + 250])
            time.sleep(0.5)
        assert_arrived(c.read_response(), body)


# ------------------------------------------------------------------ pipelining


def test_pipelined_requests_after_buffered_ones(dp):
    a, b, d = os.urandom(3000), [os.urandom(100), os.urandom(2000)], os.urandom(10)
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/buf/echo?n=1", body=a)
               + h1.build_request("POST", "/buf/echo?n=2", [("Transfer-Encoding", "chunked")],
                                  h1.chunked_body(b))
               + h1.build_request("GET", "/buf/echo?n=3")
               + h1.build_request("POST", "/stream/echo?n=4", body=d))
        r1, r2, r3, r4 = (c.read_response() for _ in range(4))
    assert_arrived(r1, a)
    assert r1.json()["target"] == "/echo?n=1"
    assert_arrived(r2, b"".join(b))
    assert r2.json()["target"] == "/echo?n=2"
    assert r3.status == 200 and r3.json()["target"] == "/echo?n=3"
    assert r3.json()["body_len"] == 0
    assert r4.status == 200 and r4.json()["target"] == "/echo?n=4"
    assert r4.json()["body_sha256"] == sha(d)


# ------------------------------------------------------------------ retries


def test_retry_after_refused_connection_resends_the_body(dp):
    """Targets: one refusing connections, one live; retries = 3. Round-robin
    sends some first attempts to the dead one; the retry carries the whole
    body again."""
    for i in range(12):
        body = os.urandom(1000 + i)
        if i % 2:
            resp = dp.request("POST", "/retry/echo", [("Transfer-Encoding", "chunked")],
                              h1.chunked_body([body[:500], body[500:]]))
        else:
            resp = dp.request("POST", "/retry/echo", body=body)
        assert_arrived(resp, body)
    assert "cannot connect to upstream" in dp.stderr(), "no attempt hit the dead target"


# ------------------------------------------------------------------ routes that stream


def test_routes_without_such_plugins_still_stream(dp):
    pieces = [b"a" * 100, b"b" * 200]
    resp = dp.request("POST", "/stream/echo", [("Transfer-Encoding", "chunked")],
                      h1.chunked_body(pieces))
    assert resp.status == 200
    assert resp.json()["chunked"] is True
    assert resp.json()["body_len"] == 300
    # ... and are not bound by client_body_buffer_size.
    body = os.urandom(BUFFER * 2)
    resp = dp.request("POST", "/stream/echo", body=body)
    assert resp.status == 200 and resp.json()["body_sha256"] == sha(body)
