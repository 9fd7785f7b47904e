"""SIGTERM: stop accepting, let in-flight requests finish (within
drain_timeout), close idle connections, exit 0.
"""

import socket
import time
import uuid

import h1
from conftest import assert_clean_stderr, declarative, route, service, wait_until
from upstream import pattern_bytes


def decl(upstream):
    return declarative([service("echo", upstream.url, routes=[route("all", paths=["/"])])])


def refused(addr):
    try:
        s = socket.create_connection(addr, timeout=1)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def finish(dp, timeout=30):
    code = dp.wait_exit(timeout)
    assert code == 0, "exit code %r; stderr:\n%s" % (code, dp.stderr()[-3000:])
    assert_clean_stderr(dp.stderr())


def test_sigterm_drains_in_flight_response(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream), {"drain_timeout": "20s"})
    token = uuid.uuid4().hex
    with dp.conn(timeout=20) as c:
        c.send(h1.build_request("GET", "/gate/%s?size=100000" % token))
        resp = c.read_head()
        assert resp.status == 200
        dp.signal(15)
        wait_until(lambda: refused(dp.proxy), 5, what="the listener to close")
        assert dp.proc.poll() is None, "exited with a request in flight"
        upstream.open_gate(token)
        c.read_body(resp)
        assert resp.body == pattern_bytes(100000)
        closed, _ = c.wait_closed(5)
        assert closed
    finish(dp)


def test_sigterm_drains_in_flight_upload(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream), {"drain_timeout": "20s"})
    with dp.conn(timeout=20) as c:
        c.send(h1.build_request("POST", "/stream-upload", [("Content-Length", str(2 << 20))]))
        c.send(b"a" * (1 << 20))
        time.sleep(0.2)
        dp.signal(15)
        time.sleep(0.3)
        c.send(b"b" * (1 << 20))
        resp = c.read_response()
        assert resp.status == 200
        assert resp.json()["body_len"] == 2 << 20
    finish(dp)


def test_sigterm_drain_timeout_expires(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream), {"drain_timeout": "1s"})
    token = uuid.uuid4().hex
    with dp.conn(timeout=20) as c:
        c.send(h1.build_request("GET", "/gate/%s?size=1000" % token))
        assert c.read_head().status == 200
        started = time.monotonic()
        dp.signal(15)
        finish(dp, timeout=15)
        assert time.monotonic() - started < 10
        closed, _ = c.wait_closed(5)
        assert closed
    upstream.open_gate(token)


def test_sigterm_closes_idle_keepalive_connections_promptly(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream), {"drain_timeout": "30s"})
    conns = []
    for _ in range(5):
        c = dp.conn()
        assert c.request("GET", "/").status == 200
        conns.append(c)
    started = time.monotonic()
    dp.signal(15)
    finish(dp, timeout=20)
    assert time.monotonic() - started < 10, "idle connections held shutdown for the drain timeout"
    for c in conns:
        closed, _ = c.wait_closed(2)
        assert closed
        c.close()


def test_sigterm_idle_process_exits_0(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream))
    assert dp.get("/").status == 200
    dp.signal(15)
    finish(dp, timeout=10)
