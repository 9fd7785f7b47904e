"""Upstream failures: refused connections (502), timeouts (504), an upstream
that closes without answering or answers garbage (502), a truncated body, and
retries (kong-compat.md 7.4): connection failures are retried on the next
target; HTTP 5xx answers are not retried; a non-idempotent request that was
sent is not retried.
"""

import re
import uuid

import pytest

from conftest import SERVER_RE, Upstream, declarative, free_port, route, service


@pytest.fixture(scope="module")
def closing_upstream(tmp_path_factory):
    u = Upstream(tmp_path_factory.mktemp("closing"), "closing", mode="close")
    yield u
    u.stop()


@pytest.fixture(scope="module")
def hanging_upstream(tmp_path_factory):
    u = Upstream(tmp_path_factory.mktemp("hanging"), "hanging", mode="hang")
    yield u
    u.stop()


@pytest.fixture(scope="module")
def dead_port():
    return free_port()


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream, closing_upstream, hanging_upstream, dead_port):
    dead = "http://127.0.0.1:%d" % dead_port
    u = upstream.url
    services = [
        service("refused", dead, retries=0, routes=[route("refused", paths=["/refused"])]),
        service("refused_retry", dead, retries=3,
                routes=[route("refused_retry", paths=["/refused-retry"])]),
        service("hang", u + "/hang", read_timeout=500, retries=0,
                routes=[route("hang", paths=["/t-hang"])]),
        service("slow", u + "/delay/3000", read_timeout=500, retries=0,
                routes=[route("slow", paths=["/t-slow"])]),
        service("fast_enough", u + "/delay/200", read_timeout=2000,
                routes=[route("fast_enough", paths=["/t-fast"])]),
        service("mode_close", closing_upstream.url, retries=0,
                routes=[route("mode_close", paths=["/m-close"])]),
        service("mode_hang", hanging_upstream.url, read_timeout=500, retries=0,
                routes=[route("mode_hang", paths=["/m-hang"])]),
        service("close", u + "/close", retries=0, routes=[route("close", paths=["/t-close"])]),
        service("garbage", u + "/garbage", retries=0,
                routes=[route("garbage", paths=["/t-garbage"])]),
        service("truncate", u + "/truncate/200000", routes=[route("truncate", paths=["/t-trunc"])]),
        service("count", u + "/count", retries=3, routes=[route("count", paths=["/t-count"])]),
        service("pool", "http://pool.test", retries=3, routes=[route("pool", paths=["/pool"])]),
        service("pool0", "http://pool0.test", retries=0, routes=[route("pool0", paths=["/pool0"])]),
        service("ok", u, routes=[route("ok", paths=["/ok"])]),
    ]
    targets = [{"target": "127.0.0.1:%d" % dead_port}, {"target": "%s:%d" % upstream.addr}]
    return module_sluice_factory(declarative(services, upstreams=[
        {"name": "pool.test", "targets": targets},
        {"name": "pool0.test", "targets": targets},
    ]))


def check_error(resp, status):
    assert resp.status == status, resp
    assert (resp.header("content-type") or "").startswith("application/json"), resp.headers
    assert isinstance(resp.json().get("message"), str) and resp.json()["message"]
    assert re.match(SERVER_RE, resp.header("server") or ""), resp.headers
    assert resp.has("x-kong-response-latency") or resp.has("x-kong-upstream-latency"), resp.headers


def test_refused_502(dp):
    check_error(dp.get("/refused"), 502)
    assert dp.get("/ok").status == 200


def test_refused_with_retries_502(dp):
    check_error(dp.get("/refused-retry"), 502)


def test_read_timeout_504_no_answer(dp):
    check_error(dp.get("/t-hang"), 504)


def test_read_timeout_504_slow_answer(dp):
    check_error(dp.get("/t-slow"), 504)
    assert dp.get("/ok").status == 200


def test_below_read_timeout_ok(dp):
    assert dp.get("/t-fast").status == 200


def test_upstream_closing_without_answer_502(dp):
    check_error(dp.get("/t-close"), 502)


def test_upstream_server_closing_every_connection_502(dp):
    check_error(dp.get("/m-close"), 502)


def test_upstream_server_never_answering_504(dp):
    check_error(dp.get("/m-hang"), 504)


def test_upstream_garbage_502(dp):
    check_error(dp.get("/t-garbage"), 502)


def test_error_keeps_client_connection_usable_or_closes_cleanly(dp):
    with dp.conn() as c:
        check_error(c.request("GET", "/refused"), 502)
        if c.is_open(0.2):
            assert c.request("GET", "/ok").status == 200


def test_truncated_upstream_body_is_not_completed(dp):
    """The upstream announces 200000 bytes and sends half: the client must
    see the connection end early, never a complete-looking body."""
    with dp.conn(timeout=15) as c:
        c.send(b"GET /t-trunc HTTP/1.1\r\nHost: sluice.test\r\n\r\n")
        resp = c.read_head()
        assert resp.status == 200
        got = bytearray()
        try:
            c.read_body(resp)
            got += resp.body
            complete = True
        except Exception:  # noqa: BLE001 - the expected outcome: the connection ends early
            complete = False
        assert not complete, "a truncated upstream body was delivered as complete"
    assert dp.get("/ok").status == 200


def test_5xx_answer_not_retried(dp, upstream):
    token = uuid.uuid4().hex
    resp = dp.get("/t-count/%s?action=503" % token)
    assert resp.status == 503
    assert upstream.counter(token) == 1


def test_non_idempotent_request_not_retried_after_send(dp, upstream):
    token = uuid.uuid4().hex
    resp = dp.request("POST", "/t-count/%s?action=close" % token, body=b"side effect")
    assert resp.status == 502, resp
    assert upstream.counter(token) == 1, "POST was sent to the upstream more than once"


def test_retry_moves_to_next_target_on_connect_failure(dp):
    """Targets: one refusing, one live; retries = 3. Every request succeeds."""
    for i in range(12):
        resp = dp.get("/pool/%d" % i)
        assert resp.status == 200, (i, resp)
        assert resp.json()["target"] == "/%d" % i


def test_no_retries_exposes_dead_target(dp):
    """Same targets, retries = 0: round-robin lands on the dead one sometimes."""
    statuses = [dp.get("/pool0/%d" % i).status for i in range(12)]
    assert 200 in statuses and 502 in statuses, statuses

