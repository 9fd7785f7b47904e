"""HTTP/2 for the data plane's clients (dataplane/h2.c), as Kong/nginx do it.

Listeners: a `proxy_listen` entry with the `http2` flag speaks HTTP/2 over
TLS when ALPN picks "h2" (offered before "http/1.1"; a TLS listener without
the flag offers http/1.1 only), and in clear to a client that starts with the
connection preface (prior knowledge), HTTP/1.1 still being served on the same
listener. A plain listener without the flag answers the preface as an
HTTP/1.1 request of version 2.0 (505); an HTTP/1.1 `Upgrade: h2c` is served
as HTTP/1.1.

Streams: each one is a request on the HTTP/1.1 path (router, plugins,
keep-alive upstream connections): :authority as the Host (a different `host`
field is a 400), cookie fields joined with "; ", a body without
content-length sent upstream chunked, bodies streamed both ways within the
flow-control windows (a client that stops reading, or an upstream that stops
reading, bounds what the data plane holds). Responses: lower-case names, no
connection-specific fields, no body for HEAD/204/304, generated answers
(404, plugin exits, 502) with Kong's JSON bodies, response-phase plugins.

Limits and hostile clients: SETTINGS_MAX_CONCURRENT_STREAMS from
http2_max_concurrent_streams (streams over it refused), 431 for a header list
over max_header_size / max_headers (the connection goes on), resets and
closes mid-response, frames that break the protocol (GOAWAY PROTOCOL_ERROR),
a flood of streams opened and reset; SIGTERM sends GOAWAY and lets the
streams in flight finish. A few checks go through curl (--http2,
--http2-prior-knowledge) as a second, independent client.

The HTTP/2 client is h2client.py (on the `h2` package); the upstream is
upstream.py, whose echo shows what reached it.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time
import uuid

import h2.events
import pytest

import h1
import h2client
from conftest import (SERVER_RE, RssSampler, assert_rss_bounded,
                      declarative, free_port, proxy_listeners, route, service, wait_until)
from h2client import CONNECTION_SPECIFIC, PREFACE, ErrorCodes, H2Conn, connect
from test_shutdown import finish, refused
from upstream import pattern_bytes, pattern_sha256

LISTEN = "127.0.0.1:0 ssl http2, 127.0.0.1:0 http2, 127.0.0.1:0 ssl, 127.0.0.1:0"
NO_ROUTE = "no Route matched with those values"

RESPONSE_TRANSFORMER = {
    "remove": {"json": ["pad"]},
    "add": {"json": ["transformed:yes"], "headers": ["X-Transformed:yes"]},
}


def h2_decl(upstream, dead_port):
    return declarative([
        service("echo", upstream.url, routes=[route("echo", paths=["/e"])]),
        # preserve_host: the upstream's Host is the client's (:authority).
        service("host", upstream.url, routes=[route("host", paths=["/host"], preserve_host=True)]),
        service("byhost", upstream.url + "/byhost",
                routes=[route("byhost", hosts=["h2.example"], paths=["/e"])]),
        service("auth", upstream.url, routes=[route("auth", paths=["/auth"], plugins=[
            {"name": "key-auth", "config": {}}])]),
        service("held", upstream.url, routes=[route("held", paths=["/held"], plugins=[
            {"name": "response-transformer", "config": RESPONSE_TRANSFORMER}])]),
        service("refused", "http://127.0.0.1:%d" % dead_port, retries=0,
                routes=[route("refused", paths=["/refused"])]),
    ])


def start(factory, upstream, conf=None, listen=LISTEN):
    """A data plane with the listeners of LISTEN: dp.tls_h2, dp.plain_h2,
    dp.tls_h1, dp.plain_h1 (dp.proxy is the plain HTTP/1.1 one)."""
    c = {"proxy_listen": listen}
    c.update(conf or {})
    dp = factory(h2_decl(upstream, free_port()), c)
    addrs = proxy_listeners(dp)
    names = ["tls_h2", "plain_h2", "tls_h1", "plain_h1"] if listen == LISTEN else ["plain_h2"]
    assert len(addrs) == len(names), "proxy.addr should have one line per listener: %r" % addrs
    for name, addr in zip(names, addrs):
        setattr(dp, name, addr)
    dp.proxy = addrs[-1]
    return dp


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    return start(module_sluice_factory, upstream)


def seen(resp, name):
    """The values of header `name` that reached the upstream (its echo)."""
    return [v for k, v in resp.json()["headers"] if k.lower() == name.lower()]


def assert_h2_head(resp):
    """What every HTTP/2 response head must be: lower-case names, no
    connection-specific field."""
    for k, _ in resp.headers:
        assert k == k.lower(), "upper-case header name %r in %r" % (k, resp)
        assert k not in CONNECTION_SPECIFIC, "connection-specific %r in %r" % (k, resp)
    if resp.has("content-length") and resp.method != "HEAD" and resp.status not in (204, 304):
        assert resp.header_all("content-length") == [str(len(resp.body))], resp


def assert_healthy(dp):
    """The process answers a new HTTP/2 connection and a new HTTP/1.1 one."""
    with H2Conn(dp.plain_h2, timeout=5) as c:
        r = c.get("/e/healthy")
        assert r.status == 200 and r.json()["target"] == "/healthy", r
    r = h1.get(dp.plain_h2, "/e/healthy-h1")
    assert r.status == 200, r


def insecure(alpn):
    return h2client.tls_context(alpn)


# ------------------------------------------------------------------ listeners and ALPN


def test_alpn_prefers_h2_on_an_ssl_http2_listener(dp):
    """The server's preference decides: h2 even when the client lists it last."""
    for offer in (["h2", "http/1.1"], ["http/1.1", "h2"], ["h2"]):
        with H2Conn(dp.tls_h2, tls=True, ctx=insecure(offer), sni="a.test") as c:
            assert c.alpn == "h2", (offer, c.alpn)
            r = c.get("/e/alpn")
            assert r.status == 200, r
            assert r.json()["version"] == "HTTP/1.1"  # upstream side stays HTTP/1.1


def test_alpn_http11_still_served_on_an_ssl_http2_listener(dp):
    for offer in (["http/1.1"], None):
        with h1.Conn(dp.tls_h2, ssl_context=insecure(offer), server_hostname="a.test") as c:
            assert c.sock.selected_alpn_protocol() == (offer[0] if offer else None)
            r = c.request("GET", "/e/h1-on-h2-listener")
            assert r.status == 200 and r.version == "HTTP/1.1", r
            assert r.json()["target"] == "/h1-on-h2-listener"


def test_ssl_listener_without_http2_offers_only_http11(dp):
    with h1.Conn(dp.tls_h1, ssl_context=insecure(["h2", "http/1.1"])) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.request("GET", "/e/x").status == 200
    # A client that offers h2 only gets no ALPN answer (or a refused
    # handshake), never h2.
    try:
        with h1.Conn(dp.tls_h1, ssl_context=insecure(["h2"])) as c:
            assert c.sock.selected_alpn_protocol() is None
    except (ssl.SSLError, ConnectionError):
        pass


def test_prior_knowledge_and_http11_on_the_same_plain_listener(dp):
    with H2Conn(dp.plain_h2) as c:
        assert c.settings_received  # the server's SETTINGS: it speaks HTTP/2
        r = c.get("/e/h2c?x=1")
        assert r.status == 200, r
        assert r.json()["target"] == "/h2c?x=1"
    with h1.Conn(dp.plain_h2) as c:
        for i in range(3):
            r = c.request("GET", "/e/h1-%d" % i)
            assert r.status == 200 and r.version == "HTTP/1.1", r
        assert c.is_open(0.2)


def test_preface_on_a_plain_listener_without_http2_is_refused(dp):
    """Without the flag the preface is an HTTP/1.1 request line with version
    2.0: 505 HTTP Version Not Supported, then close."""
    with h1.Conn(dp.plain_h1, timeout=5) as c:
        c.send(PREFACE + h2client.settings_frame())
        r = c.read_response()
        assert r.version == "HTTP/1.1" and r.status == 505, r
        assert r.json()["message"] == "unsupported HTTP version", r
        closed, _ = c.wait_closed(5)
        assert closed, "connection left open after the 505"
    assert h1.get(dp.plain_h1, "/e/after").status == 200


def test_tls_listener_without_http2_never_speaks_h2(dp):
    """Forcing the preface through a TLS listener without the flag (ALPN
    http/1.1): an HTTP/1.1 error, not an HTTP/2 SETTINGS frame."""
    with h1.Conn(dp.tls_h1, timeout=5, ssl_context=insecure(["http/1.1"])) as c:
        c.send(PREFACE + h2client.settings_frame())
        r = c.read_response()
        assert r.version == "HTTP/1.1" and 400 <= r.status < 600, r


@pytest.mark.parametrize("listener", ["plain_h2", "plain_h1"])
def test_h2c_upgrade_is_served_as_http11(dp, listener):
    addr = getattr(dp, listener)
    hs = [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
          ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]
    with h1.Conn(addr) as c:
        r = c.request("GET", "/e/upgrade", hs)
        assert r.status == 200 and r.version == "HTTP/1.1", r
        assert r.header("upgrade") is None, r
        assert r.json()["target"] == "/upgrade"
        # The connection is still HTTP/1.1.
        r = c.request("GET", "/e/after-upgrade")
        assert r.status == 200 and r.json()["target"] == "/after-upgrade", r


# ------------------------------------------------------------------ requests


def test_get_reaches_the_upstream_as_http11(dp, transport):
    with connect(dp, transport) as c:
        r = c.get("/e/some/path?q=1&r=two", [("x-custom", "Value 1"), ("user-agent", "h2-test"),
                                              ("accept", "*/*")], authority="h2.test")
        assert r.status == 200, r
        assert_h2_head(r)
        echo = r.json()
        assert echo["method"] == "GET" and echo["version"] == "HTTP/1.1"
        assert echo["target"] == "/some/path?q=1&r=two"
        names = [k for k, _ in echo["headers"]]
        assert not [n for n in names if n.startswith(":")], names
        assert len([n for n in names if n.lower() == "host"]) == 1, names
        assert seen(r, "x-custom") == ["Value 1"]
        assert seen(r, "user-agent") == ["h2-test"]
        assert seen(r, "x-forwarded-host") == ["h2.test"]
        assert seen(r, "x-forwarded-proto") == ["https" if transport == "tls" else "http"]
        port = (dp.tls_h2 if transport == "tls" else dp.plain_h2)[1]
        assert seen(r, "x-forwarded-port") == [str(port)]
        assert r.header("x-upstream-name") == "up1"


def test_authority_becomes_the_host(dp, transport):
    with connect(dp, transport) as c:
        r = c.get("/host/a", authority="Authority.Example:8443")
        assert r.status == 200, r
        assert seen(r, "host") == ["Authority.Example:8443"]
        # A host field equal to :authority is fine.
        r = c.get("/host/b", [("host", "same.example")], authority="same.example")
        assert r.status == 200, r
        assert seen(r, "host") == ["same.example"]


def test_host_without_authority_is_the_host(dp, transport):
    """RFC 9113 8.3.1: a request may carry Host instead of :authority."""
    with connect(dp, transport, validate=False) as c:
        r = c.get("/host/h", [("host", "only-host.example")], authority=None)
        assert r.status == 200, r
        assert seen(r, "host") == ["only-host.example"]


def test_host_differing_from_authority_is_400(dp, upstream, transport):
    token = uuid.uuid4().hex
    with connect(dp, transport, validate=False) as c:
        r = c.get("/e/count/" + token, [("host", "other.example")], authority="h2.test")
        assert r.status == 400, r
        assert_h2_head(r)
        assert r.json()["message"], r
        # Only the stream failed: the connection goes on.
        r = c.get("/e/after-400")
        assert r.status == 200 and r.json()["target"] == "/after-400", r
    assert upstream.counter(token) == 0, "a request with two hosts reached the upstream"


def test_routing_by_authority(dp, transport):
    with connect(dp, transport) as c:
        r = c.get("/e/x", authority="h2.example")
        assert r.status == 200 and r.json()["target"] == "/byhost/x", r
        r = c.get("/e/x", authority="other.example")
        assert r.status == 200 and r.json()["target"] == "/x", r


def test_cookie_fields_are_joined(dp, transport):
    with connect(dp, transport) as c:
        r = c.get("/e/cookies", [("cookie", "a=1"), ("x-between", "y"), ("cookie", "b=2"),
                                 ("cookie", "c=3; d=4")])
        assert r.status == 200, r
        assert seen(r, "cookie") == ["a=1; b=2; c=3; d=4"]
        r = c.get("/e/one-cookie", [("cookie", "only=1")])
        assert seen(r, "cookie") == ["only=1"]


def test_body_with_content_length(dp, transport):
    body = os.urandom(300000)
    with connect(dp, transport) as c:
        r = c.request("POST", "/e/upload", [("content-type", "application/octet-stream")], body)
        assert r.status == 200, r
        echo = r.json()
        assert echo["method"] == "POST"
        assert echo["body_len"] == len(body)
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
        assert echo["chunked"] is False
        assert seen(r, "content-length") == [str(len(body))]


def test_body_without_content_length_goes_upstream_chunked(dp, transport):
    pieces = [b"first piece ", os.urandom(70000), b"", b"last"]
    body = b"".join(pieces)
    with connect(dp, transport) as c:
        sid = c.send_request("PUT", "/e/chunked-up", [("content-type", "text/plain")],
                             end_stream=False)
        for p in pieces:
            c.send_body(sid, p, end_stream=False)
            time.sleep(0.02)
        c.end_stream(sid)
        r = c.response(sid)
        assert r.status == 200, r
        echo = r.json()
        assert echo["method"] == "PUT"
        assert echo["chunked"] is True, echo
        assert seen(r, "content-length") == []
        assert echo["body_len"] == len(body)
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_request_body_is_streamed_upstream(dp, upstream, transport):
    """The upstream sees the first bytes of a body whose end the client has
    not sent yet."""
    token = uuid.uuid4().hex
    with connect(dp, transport) as c:
        sid = c.send_request("POST", "/e/stream-upload?notify=" + token, end_stream=False)
        c.send_body(sid, b"x" * 1000, end_stream=False)
        assert upstream.wait_event(token, 10), "the body's first bytes never reached the upstream"
        c.send_body(sid, b"y" * 5000)
        r = c.response(sid)
        assert r.status == 200, r
        assert r.json()["body_len"] == 6000 and r.json()["chunked"] is True


def test_large_bodies(dp, transport):
    up = os.urandom(4 * 1024 * 1024 + 3)
    n = 6 * 1024 * 1024
    with connect(dp, transport, timeout=30) as c:
        r = c.request("POST", "/e/stream-upload", body=up)
        assert r.status == 200, r
        assert r.json()["body_len"] == len(up)
        assert r.json()["body_sha256"] == hashlib.sha256(up).hexdigest()
        for kind in ("bytes", "chunked"):
            r = c.get("/e/%s/%d" % (kind, n))
            assert r.status == 200 and r.ended, r
            assert len(r.body) == n, (kind, len(r.body))
            assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(n), kind
            assert_h2_head(r)


def test_many_requests_on_one_connection_reuse_upstream_connections(dp, transport):
    with connect(dp, transport) as c:
        conns = set()
        for i in range(40):
            r = c.get("/e/seq/%d" % i)
            assert r.status == 200 and r.json()["target"] == "/seq/%d" % i, r
            conns.add(r.header("x-upstream-conn-id"))
        assert r.stream_id == 79
        assert len(conns) <= 2, "40 sequential streams used %d upstream connections" % len(conns)


# ------------------------------------------------------------------ responses


def test_response_head_lower_case_without_connection_specific_fields(dp, transport):
    q = "&".join("resp_header=" + h for h in (
        "X-Mixed-Case:Value", "Keep-Alive:timeout%3D5", "Proxy-Connection:keep-alive",
        "Upgrade:foo"))
    with connect(dp, transport) as c:
        # Chunked from the upstream, with Connection: close.
        r = c.get("/e/chunked/5000?close=1&" + q)
        assert r.status == 200, r
        assert_h2_head(r)
        assert r.header("x-mixed-case") == "Value"
        assert r.body == pattern_bytes(5000)
        assert r.header("content-type") == "application/octet-stream"
        # And a Content-Length one on a keep-alive upstream connection.
        r = c.get("/e/bytes/3000?" + q)
        assert r.status == 200, r
        assert_h2_head(r)
        assert r.body == pattern_bytes(3000)


@pytest.mark.parametrize("method,path,status", [
    ("HEAD", "/e/bytes/1000", 200),
    ("HEAD", "/e/chunked/1000", 200),
    ("GET", "/e/status/204", 204),
    ("GET", "/e/status/304", 304),
    ("HEAD", "/nowhere", 404),
])
def test_responses_without_a_body(dp, transport, method, path, status):
    with connect(dp, transport) as c:
        r = c.request(method, path)
        assert r.status == status, r
        assert r.ended and r.body == b"" and r.data_frames == 0, r
        assert_h2_head(r)
        if status == 304:
            assert r.header("etag") == '"sluice-test"'
        # The connection goes on.
        assert c.get("/e/next").status == 200


def test_upstream_status_and_body_pass_through(dp, transport):
    with connect(dp, transport) as c:
        for code in (201, 404, 418, 500, 503):
            r = c.get("/e/status/%d" % code)
            assert r.status == code, r
            assert r.json() == {"status": code}
            assert_h2_head(r)


def check_generated(r, status, message=None):
    assert r.status == status, r
    assert_h2_head(r)
    assert (r.header("content-type") or "").startswith("application/json"), r
    assert re.match(SERVER_RE, r.header("server") or ""), r
    if message:
        assert r.json()["message"] == message, r
    else:
        assert isinstance(r.json()["message"], str) and r.json()["message"], r


def test_generated_responses(dp, transport):
    with connect(dp, transport) as c:
        check_generated(c.get("/nowhere"), 404, NO_ROUTE)
        check_generated(c.get("/auth/x"), 401, "No API key found in request")
        check_generated(c.get("/refused/x"), 502)
        # A request that fails does not spoil the connection.
        assert c.get("/e/fine").status == 200


def test_plugin_exit_with_a_body_from_the_client(dp, transport):
    """key-auth answers while the request body is still coming."""
    with connect(dp, transport) as c:
        sid = c.send_request("POST", "/auth/x", end_stream=False)
        c.send_body(sid, b"a" * 1000, end_stream=False)
        r = c.wait_headers(sid)
        assert r.status == 401, r
        try:
            c.send_body(sid, b"b" * 1000)
        except Exception:  # noqa: BLE001 - the server may have reset the stream
            pass
        c.response(sid)
        assert c.get("/e/after-exit").status == 200


def test_response_transformer(dp, transport):
    with connect(dp, transport) as c:
        r = c.get("/held/payload?size=200")
        assert r.status == 200, r
        assert_h2_head(r)
        assert r.header("x-transformed") == "yes"
        doc = r.json()
        assert "pad" not in doc and doc["transformed"] == "yes" and doc["size"] == 200
        # Upstream headers survive.
        assert r.header("x-upstream-name") == "up1"


def test_response_is_streamed(dp, upstream, transport):
    """The first half of a body reaches the client before the upstream has
    sent the rest."""
    token = uuid.uuid4().hex
    n = 200000
    with connect(dp, transport) as c:
        sid = c.send_request("GET", "/e/gate/%s?size=%d" % (token, n))
        r = c.streams[sid]
        c.wait_for(lambda: len(r.body) >= n // 2, 10, "the first half of the body")
        assert not r.done
        upstream.open_gate(token)
        c.response(sid)
        assert r.status == 200 and r.body == pattern_bytes(n), r


# ------------------------------------------------------------------ concurrency


def test_concurrent_streams_are_served_in_parallel(dp, transport):
    with connect(dp, transport, timeout=20) as c:
        assert c.remote_settings.max_concurrent_streams == 128  # the default
        t0 = time.monotonic()
        sids = [c.send_request("GET", "/e/delay/500?n=%d" % i) for i in range(100)]
        resps = c.responses(sids, 20)
        elapsed = time.monotonic() - t0
    for i, r in enumerate(resps):
        assert r.status == 200 and r.reset is None, r
        assert r.json()["target"] == "/delay/500?n=%d" % i
    assert elapsed < 6, "100 streams of 500 ms took %.1f s: not in parallel" % elapsed


def test_concurrent_large_responses_interleave(dp, transport):
    sizes = [300000 + i * 7777 for i in range(8)]
    with connect(dp, transport, timeout=20) as c:
        sids = [c.send_request("GET", "/e/bytes/%d" % n) for n in sizes]
        sids += [c.send_request("POST", "/e/stream-upload", body=pattern_bytes(n))
                 for n in sizes[:3]]
        resps = c.responses(sids, 20)
    for n, r in zip(sizes, resps):
        assert r.status == 200 and r.body == pattern_bytes(n), (n, r)
    for n, r in zip(sizes[:3], resps[8:]):
        assert r.json()["body_sha256"] == pattern_sha256(n)


def test_max_concurrent_streams_refuses_the_excess(sluice_factory, upstream):
    dp = start(sluice_factory, upstream, {"http2_max_concurrent_streams": "3"},
               listen="127.0.0.1:0 http2")
    # Six requests in the first flight, before the server's SETTINGS is read
    # (and acknowledged): the ones past the limit are refused.
    with H2Conn(dp.plain_h2, handshake=False, timeout=15) as c:
        sids = [c.send_request("GET", "/e/delay/800?n=%d" % i) for i in range(6)]
        resps = c.responses(sids, 15)
        assert c.remote_settings.max_concurrent_streams == 3
        ok = [r for r in resps if r.status == 200]
        refused = [r for r in resps if r.reset == ErrorCodes.REFUSED_STREAM]
        assert len(ok) == 3 and len(refused) == 3, resps
        assert all(r.status == 0 for r in refused), refused
        assert sorted(r.stream_id for r in ok) == [1, 3, 5]
        # Within the limit the connection goes on.
        sids = [c.send_request("GET", "/e/again/%d" % i) for i in range(3)]
        assert [r.status for r in c.responses(sids)] == [200] * 3
    assert_healthy(dp)


# ------------------------------------------------------------------ header limits


def big_headers(n, size):
    return [("x-h%d" % i, "v" * size) for i in range(n)]


@pytest.mark.parametrize("headers,expected", [
    (big_headers(20, 1000), 200),  # 20k: under max_header_size (32k)
    (big_headers(40, 1000), 431),  # 40k: over it
    ([("x-big", "v" * 33000)], 431),  # one field over it
    (big_headers(60, 10), 200),  # under max_headers (100)
    (big_headers(120, 10), 431),  # over it
], ids=["20k", "40k", "one_33k_field", "60_fields", "120_fields"])
def test_header_limits(dp, upstream, transport, headers, expected):
    token = uuid.uuid4().hex
    with connect(dp, transport, validate=False) as c:
        r = c.get("/e/count/" + token, headers)
        assert r.status == expected, r
        assert_h2_head(r)
        if expected == 431:
            assert r.json()["message"], r
            assert upstream.counter(token) == 0
        # The connection goes on.
        r = c.get("/e/after-limit")
        assert r.status == 200 and r.json()["target"] == "/after-limit", r


def test_configured_header_limits(sluice_factory, upstream):
    dp = start(sluice_factory, upstream, {"max_header_size": "4k", "max_headers": "10"},
               listen="127.0.0.1:0 http2")
    with H2Conn(dp.plain_h2) as c:
        assert c.get("/e/ok", big_headers(5, 100)).status == 200
        assert c.get("/e/big", [("x-big", "v" * 5000)]).status == 431
        assert c.get("/e/many", big_headers(12, 1)).status == 431
        assert c.get("/e/ok-again").status == 200


# ------------------------------------------------------------------ flow control


def test_slow_reader_bounds_what_the_data_plane_holds(dp, transport):
    """A stream whose client gives no window back gets no more than the
    window, and the data plane stops reading the upstream instead of
    holding the body; when the client reads again the body arrives whole."""
    n = 32 << 20
    window = 256 << 10
    with connect(dp, transport, timeout=30, window=window) as c:
        sid = c.send_request("GET", "/e/bytes/%d" % n)
        c.hold(sid)
        r = c.streams[sid]
        c.wait_for(lambda: len(r.body) >= window, 10, "the first window of the body")
        with RssSampler(dp.pid) as rss:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                c.pump(0.1)
        assert len(r.body) == window, "the data plane sent %d bytes into a %d window" % (
            len(r.body), window)
        assert_rss_bounded(rss, 16, " while a 32 MB response waited for its reader")
        # Another stream on the same connection is not blocked by the held one.
        other = c.get("/e/meanwhile")
        assert other.status == 200, other
        c.release(sid)
        c.response(sid, 30)
        assert r.status == 200 and len(r.body) == n
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(n)


def test_upstream_not_reading_bounds_what_the_client_may_send(dp, transport):
    """The data plane opens the request's window only as it passes the body
    on: while the upstream does not read, the client cannot send it all. What
    it can send is what the kernel's buffers toward the upstream take (here
    net.ipv4.tcp_rmem allows up to 32 MB of receive buffer, plus the send
    buffer) and the windows: well under the 64 MB sent."""
    n = 64 << 20
    body = os.urandom(1 << 20) * 64
    with connect(dp, transport, timeout=30) as c:
        sid = c.send_request("POST", "/e/stream-upload?body_delay_ms=2000",
                             [("content-length", str(n))], end_stream=False)
        sent = 0
        with RssSampler(dp.pid) as rss:
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                sent += c.try_send(sid, memoryview(body)[sent:])
                c.pump(0.05)
        assert sent < n * 3 // 4, "the client could send %d of %d bytes to an upstream that " \
                                  "reads nothing" % (sent, n)
        assert_rss_bounded(rss, 16, " while the upstream read no request body")
        c.send_body(sid, memoryview(body)[sent:], timeout=20)
        r = c.response(sid, 30)
        assert r.status == 200, r
        assert r.json()["body_len"] == n
        assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


# ------------------------------------------------------------------ resets and closes


def test_client_reset_mid_response(dp, upstream, transport):
    token = uuid.uuid4().hex
    with connect(dp, transport) as c:
        sid = c.send_request("GET", "/e/gate/%s?size=400000" % token)
        r = c.streams[sid]
        c.wait_for(lambda: len(r.body) > 0, 10, "the first body bytes")
        c.reset(sid)
        big = c.send_request("GET", "/e/bytes/%d" % (4 << 20))
        c.pump(0.05)
        c.reset(big)
        # The connection and the process go on.
        after = c.get("/e/after-reset")
        assert after.status == 200 and after.json()["target"] == "/after-reset", after
    upstream.open_gate(token)
    assert_healthy(dp)


def test_client_reset_mid_upload(dp, transport):
    with connect(dp, transport) as c:
        sid = c.send_request("POST", "/e/stream-upload", [("content-length", "1000000")],
                             end_stream=False)
        c.send_body(sid, b"z" * 100000, end_stream=False)
        c.reset(sid)
        assert c.get("/e/after-upload-reset").status == 200
    assert_healthy(dp)


@pytest.mark.parametrize("linger", [False, True], ids=["fin", "rst"])
def test_client_closing_mid_stream(dp, transport, linger):
    c = connect(dp, transport)
    try:
        sids = [c.send_request("GET", "/e/bytes/%d" % (8 << 20)) for _ in range(4)]
        sids.append(c.send_request("POST", "/e/stream-upload", [("content-length", "500000")],
                                   end_stream=False))
        c.send_body(sids[-1], b"q" * 50000, end_stream=False)
        c.wait_for(lambda: any(c.streams[s].body for s in sids[:4]), 10, "body bytes")
        if linger:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        c.close()
    assert_healthy(dp)


GARBAGE = {
    # id: (bytes after the preface, the GOAWAY error code expected)
    "settings_not_first": (h2client.frame(h2client.WINDOW_UPDATE, 0, 0, b"\x00\x00\x10\x00"),
                           ErrorCodes.PROTOCOL_ERROR),
    "data_on_stream_0": (h2client.settings_frame() + h2client.frame(h2client.DATA, 0, 0, b"x"),
                         ErrorCodes.PROTOCOL_ERROR),
    "headers_on_even_stream": (h2client.settings_frame() + h2client.frame(
        h2client.HEADERS, h2client.END_HEADERS | h2client.END_STREAM, 2, b"\x82\x84\x86"),
        ErrorCodes.PROTOCOL_ERROR),
    "settings_on_a_stream": (h2client.settings_frame() + h2client.frame(
        h2client.SETTINGS, 0, 1, b""), ErrorCodes.PROTOCOL_ERROR),
    "bad_hpack": (h2client.settings_frame() + h2client.frame(
        h2client.HEADERS, h2client.END_HEADERS | h2client.END_STREAM, 1, b"\xff" * 10),
        ErrorCodes.COMPRESSION_ERROR),
    "text": (h2client.settings_frame() + b"GARBAGE " * 512, None),
    "zeros": (b"\x00" * 4096, None),
}


@pytest.mark.parametrize("garbage", list(GARBAGE), ids=list(GARBAGE))
def test_garbage_after_the_preface(dp, transport, garbage):
    data, code = GARBAGE[garbage]
    if transport == "tls":
        sock = insecure(["h2"]).wrap_socket(socket.create_connection(dp.tls_h2, timeout=5))
        assert sock.selected_alpn_protocol() == "h2"
    else:
        sock = socket.create_connection(dp.plain_h2, timeout=5)
    try:
        sock.sendall(PREFACE + data)
        frames, closed, _ = h2client.read_frames(sock, 5)
    finally:
        sock.close()
    assert closed, "the connection stayed open after %s" % garbage
    assert not any(f[0] == h2client.HEADERS for f in frames), frames
    goaway = h2client.goaway_of(frames)
    if code is not None:
        assert goaway is not None, "no GOAWAY before the close: %r" % frames
        assert goaway[1] == code, "GOAWAY error %d, expected %d (%s)" % (goaway[1], code, code.name)
    elif goaway is not None:
        assert goaway[1] != ErrorCodes.NO_ERROR, goaway
    assert_healthy(dp)


def test_flood_of_streams_opened_and_reset(dp, transport):
    """Streams opened and reset at once, hundreds at a time (the "rapid
    reset" pattern): the data plane may end the connection, but stays
    healthy and bounded."""
    with RssSampler(dp.pid) as rss:
        with connect(dp, transport, timeout=10) as c:
            for batch in range(6):
                for i in range(100):
                    path = "/nowhere/%d" % i if i % 2 else "/e/delay/50?i=%d" % i
                    sid = c.h2.get_next_available_stream_id()
                    c.streams[sid] = h2client.Response(sid)
                    c.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                            (b":authority", b"flood.test"),
                                            (b":path", path.encode())])
                    c.h2.reset_stream(sid, ErrorCodes.CANCEL)
                try:
                    c.flush()
                except OSError:
                    break
                c.pump(0.05)
                if c.eof:
                    break
            if not c.eof and c.goaway is None:
                r = c.get("/e/after-flood")
                assert r.status == 200, r
            elif c.goaway is not None:
                assert c.goaway.error_code in (ErrorCodes.NO_ERROR, ErrorCodes.ENHANCE_YOUR_CALM,
                                               ErrorCodes.PROTOCOL_ERROR), c.goaway
    assert_rss_bounded(rss, 64, " during the stream flood")
    assert_healthy(dp)


def test_ping_is_answered(dp, transport):
    with connect(dp, transport) as c:
        c.ping(b"12345678")
        ack = c.wait_for(lambda: [e for e in c.events if isinstance(e, h2.events.PingAckReceived)],
                         5, "the PING ACK")
        assert ack[0].ping_data == b"12345678"


# ------------------------------------------------------------------ shutdown


def test_sigterm_sends_goaway_and_streams_in_flight_finish(sluice_factory, upstream):
    dp = start(sluice_factory, upstream, {"drain_timeout": "20s"}, listen="127.0.0.1:0 http2")
    token = uuid.uuid4().hex
    n = 200000
    with H2Conn(dp.plain_h2, timeout=20) as c:
        sid = c.send_request("GET", "/e/gate/%s?size=%d" % (token, n))
        up = c.send_request("POST", "/e/stream-upload", [("content-length", "20000")],
                            end_stream=False)
        c.send_body(up, b"u" * 10000, end_stream=False)
        r = c.streams[sid]
        c.wait_for(lambda: len(r.body) >= n // 2, 10, "the first half of the body")
        dp.signal(15)
        goaway = c.wait_for(lambda: c.goaway, 5, "a GOAWAY after SIGTERM")
        assert goaway.error_code == ErrorCodes.NO_ERROR, goaway
        wait_until(lambda: refused(dp.plain_h2), 5, what="the listener to close")
        assert dp.proc.poll() is None, "exited with streams in flight"
        # Both streams in flight finish.
        upstream.open_gate(token)
        c.send_body(up, b"u" * 10000)
        c.responses([sid, up], 15)
        assert r.status == 200 and r.body == pattern_bytes(n), r
        assert c.streams[up].status == 200 and c.streams[up].json()["body_len"] == 20000
        assert c.goaway.last_stream_id >= up, c.goaways
        assert c.wait_closed(10), "the connection stayed open after its streams finished"
    finish(dp)


def test_sigterm_closes_an_idle_h2_connection_promptly(sluice_factory, upstream):
    dp = start(sluice_factory, upstream, {"drain_timeout": "30s"}, listen="127.0.0.1:0 http2")
    with H2Conn(dp.plain_h2) as c:
        assert c.get("/e/idle").status == 200
        started = time.monotonic()
        dp.signal(15)
        assert c.wait_closed(10), "an idle HTTP/2 connection was not closed"
        assert c.goaway is not None, "closed without a GOAWAY"
        assert c.goaway.last_stream_id == 1, c.goaways
    finish(dp, 20)
    assert time.monotonic() - started < 10, "an idle HTTP/2 connection held shutdown"


# ------------------------------------------------------------------ curl


def curl(*args, stdin=None):
    if not shutil.which("curl"):
        pytest.fail("curl is not installed: run make deps")
    res = subprocess.run(["curl", "-sS", "--max-time", "20", "-w", "\n%{http_version} %{http_code}"]
                         + list(args), input=stdin, capture_output=True, timeout=30)
    assert res.returncode == 0, (res.returncode, res.stderr)
    body, _, tail = res.stdout.rpartition(b"\n")
    version, code = tail.decode().split()
    return version, int(code), body


def url(addr, path, scheme="http"):
    return "%s://%s:%d%s" % (scheme, addr[0], addr[1], path)


def test_curl_http2_over_tls(dp):
    version, code, body = curl("-k", "--http2", "-H", "X-Curl: yes",
                               url(dp.tls_h2, "/e/curl?x=1", "https"))
    assert (version, code) == ("2", 200), body
    echo = json.loads(body)
    assert echo["target"] == "/curl?x=1"
    hs = {k.lower(): v for k, v in echo["headers"]}
    assert hs["x-curl"] == "yes" and hs["x-forwarded-proto"] == "https"
    # The same client against the TLS listener without http2: HTTP/1.1.
    version, code, _ = curl("-k", "--http2", url(dp.tls_h1, "/e/curl", "https"))
    assert (version, code) == ("1.1", 200)


def test_curl_http2_prior_knowledge(dp):
    version, code, body = curl("--http2-prior-knowledge", url(dp.plain_h2, "/e/pk"))
    assert (version, code) == ("2", 200), body
    version, code, body = curl("--http2-prior-knowledge", url(dp.plain_h2, "/nowhere"))
    assert (version, code) == ("2", 404)
    assert NO_ROUTE.encode() in body


def test_curl_h2c_upgrade_gets_http11(dp):
    version, code, body = curl("--http2", url(dp.plain_h2, "/e/upgrade"))
    assert (version, code) == ("1.1", 200), body


def test_curl_upload_of_unknown_length(dp):
    """curl sends a body from a pipe without content-length: chunked upstream."""
    data = os.urandom(1 << 20)
    version, code, body = curl("-k", "--http2", "-T", "-", url(dp.tls_h2, "/e/stream-upload",
                                                              "https"), stdin=data)
    assert (version, code) == ("2", 200), body
    echo = json.loads(body)
    assert echo["body_len"] == len(data) and echo["chunked"] is True
    assert echo["body_sha256"] == hashlib.sha256(data).hexdigest()
