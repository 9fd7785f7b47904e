"""WebSocket through the proxy: the Upgrade handshake reaches the upstream
intact, the 101 comes back, and frames are tunnelled both ways until close.
"""

import base64
import os
import threading

import pytest

import h1
from conftest import declarative, route, service


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    return module_sluice_factory(declarative([service("echo", upstream.url, routes=[
        route("all", paths=["/"]),
        route("wsprefix", paths=["/sock"])])]))


def open_ws(dp, target="/ws", extra=()):
    c = dp.conn(timeout=10)
    resp, key = h1.ws_handshake(c, target, extra=extra)
    assert resp.status == 101, resp
    assert (resp.header("upgrade") or "").lower() == "websocket"
    assert "upgrade" in (resp.header("connection") or "").lower()
    assert resp.header("sec-websocket-accept") == h1.ws_accept(key)
    return c


def roundtrip(c, op, payload):
    c.send(h1.ws_frame(op, payload))
    fin, rop, data, masked = h1.ws_read_frame(c)
    assert fin and rop == op and not masked
    return data


def close(c):
    c.send(h1.ws_frame(0x8, b"\x03\xe8"))
    fin, op, data, _ = h1.ws_read_frame(c)
    assert op == 0x8 and data == b"\x03\xe8"
    closed, _ = c.wait_closed(5)
    assert closed
    c.close()


def test_websocket_echo(dp):
    c = open_ws(dp)
    assert roundtrip(c, 0x1, b"hello") == b"hello"
    assert roundtrip(c, 0x1, "h\u00e9llo \u2603".encode()) == "h\u00e9llo \u2603".encode()
    close(c)


def test_websocket_binary_and_large_frames(dp):
    c = open_ws(dp)
    for n in (0, 125, 126, 65535, 65536, 1024 * 1024):
        data = os.urandom(n)
        assert roundtrip(c, 0x2, data) == data, n
    close(c)


def test_websocket_fragments_and_ping(dp):
    c = open_ws(dp)
    c.send(h1.ws_frame(0x1, b"frag", fin=False) + h1.ws_frame(0x0, b"men", fin=False)
           + h1.ws_frame(0x9, b"ping!") + h1.ws_frame(0x0, b"ted"))
    fin, op, data, _ = h1.ws_read_frame(c)
    assert (op, data) == (0xA, b"ping!")
    fin, op, data, _ = h1.ws_read_frame(c)
    assert (op, data) == (0x1, b"fragmented")
    close(c)


def test_websocket_handshake_headers_reach_upstream(dp):
    """Upgrade, Connection: Upgrade and Sec-WebSocket-* reach the upstream (it
    answers 400 otherwise), and subprotocol negotiation passes through."""
    c = open_ws(dp, extra=[("Sec-WebSocket-Protocol", "chat, superchat")])
    close(c)
    c = dp.conn()
    resp, key = h1.ws_handshake(c, "/ws", extra=[("Sec-WebSocket-Protocol", "chat")])
    assert resp.status == 101
    assert resp.header("sec-websocket-protocol") == "chat"
    close(c)


def test_websocket_through_prefix_route(dp):
    # Route /sock with strip_path: the upstream sees /ws.
    c = dp.conn()
    resp, key = h1.ws_handshake(c, "/sock/ws")
    assert resp.status == 101, resp
    assert roundtrip(c, 0x1, b"via prefix") == b"via prefix"
    close(c)


def test_websocket_pipelined_bytes_after_handshake(dp):
    """Frames sent right behind the handshake request must be tunnelled."""
    key = base64.b64encode(os.urandom(16)).decode()
    c = dp.conn()
    c.send(h1.build_request("GET", "/ws", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13")]) + h1.ws_frame(0x1, b"early"))
    resp = c.read_head()
    assert resp.status == 101
    fin, op, data, _ = h1.ws_read_frame(c)
    assert data == b"early"
    close(c)


def test_concurrent_websockets(dp):
    errors = []

    def worker(i):
        try:
            c = open_ws(dp)
            for j in range(50):
                msg = ("%d-%d" % (i, j)).encode()
                assert roundtrip(c, 0x1, msg) == msg
            close(c)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    assert dp.get("/").status == 200


def test_client_disconnect_mid_session_leaves_proxy_healthy(dp):
    c = open_ws(dp)
    assert roundtrip(c, 0x1, b"bye") == b"bye"
    c.close()
    assert dp.get("/").status == 200


def test_upgrade_refused_by_upstream_is_plain_response(dp):
    """The upstream answers 400 to an Upgrade on a non-ws path: the client gets
    that response and the connection stays HTTP."""
    c = dp.conn()
    resp, _ = h1.ws_handshake(c, "/status/400")
    assert resp.status == 400
    c.read_body(resp)
    c.close()
