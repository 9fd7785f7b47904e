"""Request and response bodies: 100 MB each way with bounded memory, slow
readers and stalled upstreams (backpressure), chunked passthrough and
streaming in both directions, Expect: 100-continue, and the bodiless
responses (HEAD, 204, 304).
"""

import hashlib
import os
import time
import uuid

import pytest

import h1
from conftest import RssSampler, assert_rss_bounded, declarative, dp_is_sanitized, route, service
from upstream import pattern_bytes, pattern_chunks, pattern_sha256

MB = 1024 * 1024
BIG = 100 * MB
MAX_GROWTH_MB = 64


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    d = module_sluice_factory(declarative([service("echo", upstream.url, routes=[
        route("all", paths=["/"])])]))
    # Warm up both workers so the baseline RSS includes their steady state.
    for _ in range(8):
        assert d.get("/bytes/100000").status == 200
    return d


@pytest.fixture
def capped_dp(sluice_factory, upstream):
    return sluice_factory(declarative([service("echo", upstream.url, routes=[
        route("all", paths=["/"])])]), {"client_max_body_size": "1k"})


def send_pattern(conn, n, piece=MB):
    for p in pattern_chunks(n, piece):
        conn.send(p)


def read_until(conn, resp, nbytes):
    """Reads at least nbytes of resp's body (Content-Length or chunked framing)
    without reading the rest; returns the bytes read and a state for the rest."""
    got = bytearray()
    if resp.chunked or "chunked" in (resp.header("transfer-encoding") or "").lower():
        while len(got) < nbytes:
            size = int(conn.readline().split(b";")[0].strip(), 16)
            assert size > 0, "response ended after %d bytes" % len(got)
            got += conn.read_exact(size)
            assert conn.read_exact(2) == b"\r\n"
    else:
        while len(got) < nbytes:
            got += conn.read_some(nbytes - len(got))
    return bytes(got)


# ------------------------------------------------------------------ 100 MB, bounded memory


@pytest.mark.slow
def test_upload_100mb_bounded_memory(dp):
    with RssSampler(dp.pid) as rss, dp.conn(timeout=60) as c:
        c.send(h1.build_request("PUT", "/stream-upload",
                                [("Content-Length", str(BIG)),
                                 ("Content-Type", "application/octet-stream")]))
        send_pattern(c, BIG)
        resp = c.read_response()
    assert resp.status == 200, resp
    assert resp.json()["body_len"] == BIG
    assert resp.json()["body_sha256"] == pattern_sha256(BIG)
    assert_rss_bounded(rss, MAX_GROWTH_MB)


@pytest.mark.slow
def test_download_100mb_bounded_memory(dp):
    h = hashlib.sha256()
    with RssSampler(dp.pid) as rss, dp.conn(timeout=60) as c:
        c.send(h1.build_request("GET", "/bytes/%d" % BIG))
        resp = c.read_response(sink=h.update)
    assert resp.status == 200
    assert resp.header("content-length") == str(BIG)
    assert resp.body_len == BIG
    assert h.hexdigest() == pattern_sha256(BIG)
    assert_rss_bounded(rss, MAX_GROWTH_MB)


@pytest.mark.slow
def test_slow_reader_download_bounded_memory(dp):
    """The client stops reading; the proxy must stop reading the upstream
    rather than buffer the 100 MB."""
    h = hashlib.sha256()
    with RssSampler(dp.pid) as rss, dp.conn(timeout=60) as c:
        c.send(h1.build_request("GET", "/bytes/%d" % BIG))
        resp = c.read_head()
        first = read_until(c, resp, MB)
        h.update(first)
        time.sleep(3)  # stalled client: whatever the proxy buffers now shows in RSS
        stalled_peak = rss.peak
        left = BIG - len(first)
        while left:
            piece = c.read_some(min(left, 262144))
            left -= len(piece)
            h.update(piece)
    assert h.hexdigest() == pattern_sha256(BIG)
    if not dp_is_sanitized():
        assert (stalled_peak - rss.baseline) / 1024 < MAX_GROWTH_MB, \
            "RSS grew %.1f MB while the client stalled" % ((stalled_peak - rss.baseline) / 1024)
    assert_rss_bounded(rss, MAX_GROWTH_MB)


@pytest.mark.slow
def test_stalled_upstream_upload_bounded_memory(dp):
    """The upstream does not read the body for 3 s; the proxy must stop
    reading the client rather than buffer the 100 MB."""
    with RssSampler(dp.pid) as rss, dp.conn(timeout=60) as c:
        c.send(h1.build_request("POST", "/stream-upload?body_delay_ms=3000",
                                [("Content-Length", str(BIG))]))
        send_pattern(c, BIG)
        resp = c.read_response()
    assert resp.status == 200, resp
    assert resp.json()["body_sha256"] == pattern_sha256(BIG)
    assert_rss_bounded(rss, MAX_GROWTH_MB)


# ------------------------------------------------------------------ chunked


def test_chunked_upload_passthrough(dp):
    pieces = [os.urandom(n) for n in (1, 10, 1000, 65536, 3, 200000, 7)]
    body = b"".join(pieces)
    resp = dp.request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                      h1.chunked_body(pieces, ext=True))
    assert resp.status == 200, resp
    echo = resp.json()
    assert echo["body_len"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["chunked"] is True, "upstream did not receive a chunked body"
    names = [k.lower() for k, _ in echo["headers"]]
    assert "content-length" not in names


def test_chunked_upload_with_trailers(dp):
    body = h1.chunked_body([b"abc", b"defg"], trailers=[("X-Trailer", "t1")])
    resp = dp.request("POST", "/echo", [("Transfer-Encoding", "chunked"),
                                        ("Trailer", "X-Trailer")], body)
    assert resp.status == 200, resp
    assert resp.json()["body_len"] == 7


def test_chunked_upload_is_streamed(dp, upstream):
    """The upstream sees the first chunk before the client sends the rest."""
    token = uuid.uuid4().hex
    with dp.conn(timeout=30) as c:
        c.send(h1.build_request("POST", "/stream-upload?notify=" + token,
                                [("Transfer-Encoding", "chunked")]))
        c.send(b"4000\r\n" + b"a" * 0x4000 + b"\r\n")
        assert upstream.wait_event(token, 10), "first chunk never reached the upstream"
        c.send(b"10\r\n" + b"b" * 16 + b"\r\n0\r\n\r\n")
        resp = c.read_response()
    assert resp.status == 200
    assert resp.json()["body_len"] == 0x4000 + 16


def test_content_length_upload_is_streamed(dp, upstream):
    token = uuid.uuid4().hex
    with dp.conn(timeout=30) as c:
        c.send(h1.build_request("POST", "/stream-upload?notify=" + token,
                                [("Content-Length", str(2 * MB))]))
        c.send(b"x" * MB)
        assert upstream.wait_event(token, 10), "first half never reached the upstream"
        c.send(b"y" * MB)
        resp = c.read_response()
    assert resp.status == 200
    assert resp.json()["body_len"] == 2 * MB


def test_large_chunked_upload(dp):
    n = 20 * MB
    h = hashlib.sha256()
    with dp.conn(timeout=60) as c:
        c.send(h1.build_request("POST", "/stream-upload", [("Transfer-Encoding", "chunked")]))
        for p in pattern_chunks(n, 100000):
            h.update(p)
            c.send(b"%x\r\n" % len(p) + p + b"\r\n")
        c.send(b"0\r\n\r\n")
        resp = c.read_response()
    assert resp.json()["body_len"] == n
    assert resp.json()["body_sha256"] == h.hexdigest()


def test_chunked_download_passthrough(dp):
    n = 1000000
    resp = dp.get("/chunked/%d?chunk=3000" % n)
    assert resp.status == 200
    assert resp.chunked, resp.headers
    assert not resp.has("content-length")
    assert resp.body == pattern_bytes(n)


def test_chunked_download_with_trailers_framed_correctly(dp):
    with dp.conn() as c:
        resp = c.request("GET", "/chunked/50000?trailer=1")
        assert resp.status == 200 and resp.body == pattern_bytes(50000)
        assert c.request("GET", "/").status == 200


@pytest.mark.parametrize("te", ["chunked", "length"])
def test_download_is_streamed(dp, upstream, te):
    """The client gets the first half before the upstream sends the second."""
    token = uuid.uuid4().hex
    size = 256 * 1024
    with dp.conn(timeout=15) as c:
        c.send(h1.build_request("GET", "/gate/%s?size=%d&te=%s" % (token, size, te)))
        resp = c.read_head()
        assert resp.status == 200
        first = read_until(c, resp, size // 2)
        upstream.open_gate(token)
        rest = bytearray()
        if te == "length" and resp.has("content-length"):
            rest += c.read_exact(size - len(first))
        else:
            c.read_body(resp)
            rest += resp.body
        assert bytes(first) + bytes(rest) == pattern_bytes(size)


def test_close_delimited_upstream_body(dp):
    n = 300000
    resp = dp.get("/eof/%d" % n)
    assert resp.status == 200
    assert resp.body == pattern_bytes(n)


def test_empty_and_get_bodies(dp):
    resp = dp.request("POST", "/echo", body=b"")
    assert resp.json()["body_len"] == 0
    resp = dp.request("GET", "/echo", body=b"payload")
    assert resp.json()["body_len"] == 7


# ------------------------------------------------------------------ Expect: 100-continue


def test_expect_100_continue(dp):
    body = b"z" * 5000
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/echo", [("Expect", "100-continue"),
                                                  ("Content-Length", str(len(body)))]))
        interim = c.read_head()
        assert interim.status == 100, interim
        c.send(body)
        resp = c.read_response()
        assert resp.status == 200, resp
        assert resp.json()["body_len"] == len(body)
        # Nothing stray (e.g. a second 100) before the next response.
        again = c.request("GET", "/echo")
        assert again.status == 200


def test_expect_100_continue_over_limit_gets_413_without_100(capped_dp):
    with capped_dp.conn() as c:
        c.send(h1.build_request("POST", "/echo", [("Expect", "100-continue"),
                                                  ("Content-Length", "100000")]))
        resp = c.read_response(skip_interim=False)
        assert resp.status == 413, resp
        assert resp.json()["message"]


# ------------------------------------------------------------------ bodiless responses


def test_head_content_length_without_body(dp):
    with dp.conn() as c:
        resp = c.request("HEAD", "/bytes/1000")
        assert resp.status == 200
        assert resp.header("content-length") == "1000"
        assert resp.body == b""
        resp = c.request("GET", "/bytes/10")
        assert resp.status == 200 and resp.body == pattern_bytes(10)


def test_head_on_chunked_endpoint(dp):
    with dp.conn() as c:
        resp = c.request("HEAD", "/chunked/1000")
        assert resp.status == 200 and resp.body == b""
        assert c.request("GET", "/bytes/5").body == pattern_bytes(5)


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_status(dp, code):
    with dp.conn() as c:
        resp = c.request("GET", "/status/%d" % code)
        assert resp.status == code
        assert not resp.has("transfer-encoding"), resp.headers
        if code == 304:
            assert resp.header("etag") == '"sluice-test"'
        # A stray body or chunk terminator would corrupt the next response.
        resp = c.request("GET", "/bytes/7")
        assert resp.status == 200 and resp.body == pattern_bytes(7)


def test_request_body_over_limit_413(capped_dp):
    with capped_dp.conn() as c:
        resp = c.request("POST", "/echo", body=b"x" * 2048)
        assert resp.status == 413
        assert resp.json()["message"]


def test_chunked_request_body_over_limit_413(capped_dp):
    with capped_dp.conn() as c:
        body = h1.chunked_body([b"x" * 800, b"y" * 800])
        resp = c.request("POST", "/echo", [("Transfer-Encoding", "chunked")], body)
        assert resp.status == 413
        assert resp.json()["message"]


def test_request_body_at_limit_accepted(capped_dp):
    resp = capped_dp.request("POST", "/echo", body=b"x" * 1024)
    assert resp.status == 200
    assert resp.json()["body_len"] == 1024
