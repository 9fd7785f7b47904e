"""Client-side timeouts with short settings: a stalled or dribbling header
block (client_header_timeout), a stalled body (client_body_timeout), idle
keep-alive connections (keepalive_timeout), a client that stops reading
(send_timeout). Bounds are loose: these check that each timer exists and
fires, not how precisely.
"""

import time

import pytest

import h1
from conftest import declarative, route, service

TIMEOUTS = {
    "client_header_timeout": "1s",
    "client_body_timeout": "1s",
    "keepalive_timeout": "1s",
    "send_timeout": "1s",
}


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    return module_sluice_factory(declarative([service("echo", upstream.url, routes=[
        route("all", paths=["/"])])]), TIMEOUTS)


def assert_closed_by_timeout(conn, started, low=0.5, high=6.0, allow_408=True):
    closed, extra = conn.wait_closed(high + 2)
    elapsed = time.monotonic() - started
    assert closed, "still open after %.1fs" % elapsed
    assert elapsed >= low, "closed after only %.2fs" % elapsed
    assert elapsed <= high + 1, "closed only after %.1fs" % elapsed
    if extra:
        assert allow_408 and extra.startswith(b"HTTP/1.1 408"), extra[:200]


def test_stalled_header_block(dp):
    with dp.conn() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: sluice.test\r\nX-Half: ")
        assert_closed_by_timeout(c, time.monotonic())
    assert dp.get("/").status == 200


def test_silent_connection(dp):
    with dp.conn() as c:
        assert_closed_by_timeout(c, time.monotonic())


def test_dribbled_header_block_slowloris(dp):
    """One byte every 200 ms keeps the socket busy but must not keep the
    connection alive past client_header_timeout."""
    data = b"GET / HTTP/1.1\r\nHost: sluice.test\r\n" + b"X-Slow: " + b"a" * 200
    started = time.monotonic()
    with dp.conn() as c:
        closed = False
        for b in data:
            try:
                c.send(bytes([b]))
            except OSError:
                closed = True
                break
            if not c.is_open(0.2):
                closed = True
                break
            if time.monotonic() - started > 10:
                break
        elapsed = time.monotonic() - started
        assert closed, "dribbling client still connected after %.1fs" % elapsed
        assert elapsed < 7, "dribbling client kept for %.1fs" % elapsed


def test_stalled_body(dp):
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/", [("Content-Length", "100")]) + b"0123456789")
        started = time.monotonic()
        closed, extra = c.wait_closed(8)
        elapsed = time.monotonic() - started
        assert closed, "connection with a stalled body still open after %.1fs" % elapsed
        assert elapsed >= 0.5
        if extra:
            assert extra.startswith(b"HTTP/1.1 408"), extra[:200]
    assert dp.get("/").status == 200


def test_stalled_chunked_body(dp):
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/", [("Transfer-Encoding", "chunked")]) + b"a\r\n01234")
        started = time.monotonic()
        closed, extra = c.wait_closed(8)
        assert closed, "still open after %.1fs" % (time.monotonic() - started)
        if extra:
            assert extra.startswith(b"HTTP/1.1 408"), extra[:200]


def test_idle_keepalive_closed(dp):
    with dp.conn() as c:
        assert c.request("GET", "/").status == 200
        started = time.monotonic()
        assert_closed_by_timeout(c, started, allow_408=False)


def test_active_keepalive_not_closed(dp):
    """Requests every 0.4 s for 3 s: the timers restart with each request."""
    with dp.conn() as c:
        end = time.monotonic() + 3
        n = 0
        while time.monotonic() < end:
            assert c.request("GET", "/n%d" % n).status == 200
            n += 1
            time.sleep(0.4)
        assert n >= 6


def test_slow_upstream_not_cut_by_client_timeouts(dp):
    """Waiting for the upstream is governed by the service's read_timeout,
    not by the client header/body/keep-alive timers."""
    resp = dp.get("/delay/2500")
    assert resp.status == 200


def test_slow_body_dribble_within_timeout_ok(dp):
    """A body that keeps arriving (each gap below client_body_timeout) is fine."""
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/", [("Content-Length", "8")]))
        for b in b"01234567":
            time.sleep(0.3)
            c.send(bytes([b]))
        resp = c.read_response()
        assert resp.status == 200
        assert resp.json()["body_len"] == 8


def test_client_not_reading_hits_send_timeout(dp):
    total = 300 * 1024 * 1024
    with dp.conn(timeout=20) as c:
        c.send(h1.build_request("GET", "/bytes/%d" % total))
        time.sleep(5)  # not reading: the proxy's writes stall for longer than send_timeout
        got = 0
        try:
            c.settimeout(10)
            while True:
                data = c.sock.recv(1 << 20)
                if not data:
                    break
                got += len(data)
        except TimeoutError:
            pytest.fail("connection neither closed nor delivered data for 10 s")
        except (ConnectionResetError, OSError):
            pass
        assert got < total, "the whole body arrived; send_timeout never fired"
    assert dp.get("/").status == 200
