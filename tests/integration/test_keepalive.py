"""Connection reuse: client keep-alive, HTTP/1.0, pipelining, and the upstream
keep-alive pool (reuse, max requests, idle timeout, pool size 0, upstream
closing a pooled connection).
"""

import time

import pytest

import h1
from conftest import declarative, route, service
from upstream import pattern_bytes


def decl(upstream, upstream2=None):
    services = [service("echo", upstream.url, routes=[route("all", paths=["/"])])]
    if upstream2 is not None:
        services.append(service("two", upstream2.url + "/", routes=[route("two", paths=["/two"])]))
    return declarative(services)


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream, upstream2):
    return module_sluice_factory(decl(upstream, upstream2))


def conn_of(resp):
    assert resp.status == 200, resp
    return int(resp.header("x-upstream-conn-id")), int(resp.header("x-upstream-conn-req"))


# ------------------------------------------------------------------ client side


def test_client_keepalive_many_requests(dp):
    with dp.conn() as c:
        for i in range(50):
            resp = c.request("GET", "/echo/%d" % i)
            assert resp.status == 200
            assert resp.json()["target"] == "/echo/%d" % i
        assert c.is_open()


def test_client_connection_close(dp):
    with dp.conn() as c:
        resp = c.request("GET", "/", [("Connection", "close")])
        assert resp.status == 200
        assert "close" in (resp.header("connection") or "").lower()
        closed, extra = c.wait_closed(5)
        assert closed and extra == b""


def test_http10_closes_by_default(dp):
    with dp.conn() as c:
        c.send(h1.build_request("GET", "/", version="HTTP/1.0"))
        resp = c.read_response()
        assert resp.status == 200
        assert resp.version in ("HTTP/1.0", "HTTP/1.1")
        closed, _ = c.wait_closed(5)
        assert closed


def test_http10_keepalive_requested(dp):
    with dp.conn() as c:
        for _ in range(3):
            c.send(h1.build_request("GET", "/", [("Connection", "keep-alive")],
                                    version="HTTP/1.0"))
            resp = c.read_response()
            assert resp.status == 200
            assert not resp.chunked, "chunked encoding sent to an HTTP/1.0 client"


def test_http10_client_gets_no_chunked(dp):
    with dp.conn() as c:
        c.send(h1.build_request("GET", "/chunked/20000", version="HTTP/1.0"))
        resp = c.read_response()
        assert resp.status == 200
        assert "chunked" not in (resp.header("transfer-encoding") or "").lower()
        assert resp.body == pattern_bytes(20000)


# ------------------------------------------------------------------ pipelining


def test_pipelining_in_order(dp):
    reqs = [
        ("GET", "/delay/300?n=0", None),
        ("GET", "/echo?n=1", None),
        ("POST", "/echo?n=2", b"x" * 10000),
        ("HEAD", "/bytes/100?n=3", None),
        ("GET", "/delay/100?n=4", None),
        ("GET", "/chunked/5000?n=5", None),
        ("GET", "/status/204?n=6", None),
        ("GET", "/echo?n=7", None),
    ]
    data = b"".join(h1.build_request(m, t, body=b) for m, t, b in reqs)
    with dp.conn(timeout=20) as c:
        c.send(data)
        for i, (m, t, b) in enumerate(reqs):
            resp = c.read_response(m)
            if t.startswith("/status/204"):
                assert resp.status == 204
                continue
            assert resp.status == 200, (i, resp)
            if t.startswith(("/echo", "/delay")):
                assert resp.json()["target"] == t, (i, resp.json()["target"])
            if b:
                assert resp.json()["body_len"] == len(b)
        assert c.is_open()


def test_pipelining_many_small(dp):
    n = 100
    data = b"".join(h1.build_request("GET", "/p/%d" % i) for i in range(n))
    with dp.conn(timeout=20) as c:
        c.send(data)
        for i in range(n):
            resp = c.read_response()
            assert resp.json()["target"] == "/p/%d" % i


def test_pipelined_request_split_across_writes(dp):
    data = h1.build_request("GET", "/a") + h1.build_request("GET", "/b")
    with dp.conn() as c:
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.005)
        assert c.read_response().json()["target"] == "/a"
        assert c.read_response().json()["target"] == "/b"


# ------------------------------------------------------------------ upstream pool


def test_upstream_connection_reused_on_one_client_connection(dp):
    with dp.conn() as c:
        seen = [conn_of(c.request("GET", "/")) for _ in range(10)]
    ids = {cid for cid, _ in seen}
    assert len(ids) == 1, seen
    reqs = [n for _, n in seen]
    assert reqs == sorted(reqs) and reqs[-1] - reqs[0] == 9, seen


def test_upstream_connection_reused_across_client_connections(dp):
    """Sequential client connections share the pool: at most one upstream
    connection per worker (workers = 2)."""
    ids = set()
    for _ in range(20):
        ids.add(conn_of(dp.get("/"))[0])
    assert len(ids) <= 2, ids


def test_pool_is_per_upstream(dp):
    with dp.conn() as c:
        for _ in range(3):
            assert c.request("GET", "/").header("x-upstream-name") == "up1"
            assert c.request("GET", "/two").header("x-upstream-name") == "up2"


def test_upstream_closing_pooled_connection_is_survived(dp):
    """The upstream closes its idle connection; the next request still works."""
    with dp.conn() as c:
        first = conn_of(c.request("GET", "/?idle_close_ms=100"))
        time.sleep(0.5)
        resp = c.request("GET", "/")
        assert resp.status == 200
        assert conn_of(resp)[0] != first[0]


def test_upstream_connection_close_response_not_reused(dp):
    with dp.conn() as c:
        first = conn_of(c.request("GET", "/?close=1"))
        second = conn_of(c.request("GET", "/"))
        assert second[0] != first[0]


def test_upstream_max_requests(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream), {"upstream_keepalive_max_requests": "3", "workers": "1"})
    with dp.conn() as c:
        seen = [conn_of(c.request("GET", "/")) for _ in range(7)]
    assert max(n for _, n in seen) <= 3, seen
    assert len({cid for cid, _ in seen}) >= 3, seen


def test_upstream_idle_timeout(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream), {"upstream_keepalive_idle_timeout": "1s", "workers": "1"})
    with dp.conn() as c:
        a = conn_of(c.request("GET", "/"))
        b = conn_of(c.request("GET", "/"))
        assert a[0] == b[0]
        time.sleep(2.5)
        d = conn_of(c.request("GET", "/"))
        assert d[0] != a[0], "pooled connection outlived upstream_keepalive_idle_timeout"


def test_upstream_pool_size_zero_disables_reuse(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream), {"upstream_keepalive_pool_size": "0", "workers": "1"})
    with dp.conn() as c:
        ids = [conn_of(c.request("GET", "/"))[0] for _ in range(4)]
    assert len(set(ids)) == 4, ids
