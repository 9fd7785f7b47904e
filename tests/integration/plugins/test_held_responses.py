"""Upstream responses held whole for plugins: a route whose plugins need the
response body (here response-transformer with a json operation) gets the
upstream's response read completely (de-chunked, up to response_buffer_size)
before anything reaches the client, and then a head with the final body's
Content-Length.

Covered: Content-Length, chunked and close-delimited upstream bodies, bodies
past the proxy's 256k buffer watermark, HEAD, 204 and 304, an upstream that
dies mid-body (a 502 is still possible: nothing was sent), a response larger
than response_buffer_size (502 with the gateway's JSON error, the data plane
and the connection still healthy), keep-alive on both sides after held
responses, HTTP/1.0 clients, a plugin removing Content-Length (the body
stays framed), and that routes without such a plugin still
stream (the first bytes arrive before the upstream has finished) while a
held route sends nothing until it has.
"""

import json
import urllib.parse
import uuid

import pytest

import h1
from conftest import declarative, free_port, route, service
from upstream import pattern_bytes

LIMIT = 1024 * 1024  # response_buffer_size below
TOO_LARGE = "The upstream response is too large for the route's plugins"


def q(text):
    return urllib.parse.quote(text, safe="")


def payload(prefix, text=None, **params):
    """A target of the upstream's /payload endpoint behind a route prefix."""
    if text is not None:
        params["text"] = text
    query = "&".join("%s=%s" % (k, q(str(v))) for k, v in params.items())
    return "%s/payload%s" % (prefix, "?" + query if query else "")


HELD_CONFIG = {
    "remove": {"json": ["pad"]},
    "add": {"json": ["held:yes"], "headers": ["X-Held:1"]},
}


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    return module_sluice_factory(declarative([service("echo", upstream.url, routes=[
        route("held", paths=["/held"], plugins=[
            {"name": "response-transformer", "config": HELD_CONFIG}]),
        route("plain", paths=["/plain"]),
    ])]), {"response_buffer_size": "1m"})


def assert_length_framed(res):
    """The client got a Content-Length body (never chunked) of that length."""
    assert res.header("Transfer-Encoding") is None, res
    assert res.header_all("Content-Length") == [str(len(res.body))], res


def held_body(obj):
    """What HELD_CONFIG makes of a JSON object, as the plugin encodes it."""
    obj = {k: v for k, v in obj.items() if k != "pad"}
    if "held" not in obj:
        obj["held"] = "yes"
    return json.dumps(obj, separators=(",", ":")).encode()


# ------------------------------------------------------------------ upstream framings


def test_content_length_body(dp):
    res = dp.get(payload("/held", '{"a":1,"pad":"p"}'))
    assert res.status == 200
    assert res.body == b'{"a":1,"held":"yes"}'
    assert_length_framed(res)
    assert res.header("X-Held") == "1"  # header_filter ran after body_filter


@pytest.mark.parametrize("chunk", [1, 7, 8192])
def test_chunked_body_is_dechunked_and_sent_with_its_length(dp, chunk):
    text = json.dumps({"a": "z" * 100, "pad": "p", "n": [1, 2, 3]})
    res = dp.get(payload("/held", text, te="chunked", chunk=chunk))
    assert res.status == 200
    assert res.body == held_body(json.loads(text))
    assert_length_framed(res)


def test_chunked_body_with_trailers(dp):
    # the upstream's trailers cannot follow a Content-Length body: the body is
    # all that is kept
    res = dp.get("/held/chunked/50000?trailer=1")
    assert res.status == 200
    assert res.body == pattern_bytes(50000)
    assert_length_framed(res)
    assert res.trailers == []


@pytest.mark.parametrize("te", ["length", "chunked", "eof"])
def test_bodies_beyond_the_proxy_buffer_watermark(dp, te):
    # 600 kB: more than the 256 kB at which a streaming proxy pauses reading
    # the upstream until the client catches up; a held body must not stall
    res = dp.get(payload("/held", size=600000, te=te, chunk=65536), timeout=20)
    assert res.status == 200
    assert res.body == b'{"size":600000,"held":"yes"}'
    assert_length_framed(res)


def test_close_delimited_json_body(dp):
    res = dp.get(payload("/held", '{"a":[true,null]}', te="eof"))
    assert res.status == 200
    assert res.body == b'{"a":[true,null],"held":"yes"}'
    assert_length_framed(res)


def test_close_delimited_other_body_passes_unchanged(dp):
    res = dp.get("/held/eof/300000", timeout=20)
    assert res.status == 200
    assert res.header("Content-Type") == "application/octet-stream"
    assert res.body == pattern_bytes(300000)
    assert_length_framed(res)


def test_upstream_status_and_reason_are_kept(dp):
    res = dp.get(payload("/held", '{"error":"x"}', status=500))
    assert res.status == 500 and res.reason == "Internal Server Error"
    assert res.body == b'{"error":"x","held":"yes"}'
    assert_length_framed(res)


def test_http10_client_gets_a_length(dp):
    with dp.conn() as c:
        c.send(h1.build_request("GET", payload("/held", '{"a":1}', te="chunked", chunk=2),
                                version="HTTP/1.0"))
        res = c.read_response()
        assert res.status == 200
        assert res.body == b'{"a":1,"held":"yes"}'
        assert_length_framed(res)


# ------------------------------------------------------------------ bodiless responses


def test_head_request(dp):
    with dp.conn() as c:
        res = c.request("HEAD", payload("/held", '{"a":1}'))
        assert res.status == 200 and res.body == b""
        assert res.header("Content-Type") == "application/json"
        assert res.header("X-Held") == "1"
        # Kong drops the length of a JSON response when a body operation is
        # set: the upstream's described the untransformed body
        assert res.header("Content-Length") is None
        assert res.header("Transfer-Encoding") is None
        # the connection is still in step: the next response parses
        res = c.request("GET", payload("/held", '{"a":1}'))
        assert res.body == b'{"a":1,"held":"yes"}'
        assert_length_framed(res)


def test_head_request_of_a_body_left_alone_keeps_its_length(dp):
    with dp.conn() as c:
        res = c.request("HEAD", "/held/bytes/1000")
        assert res.status == 200 and res.body == b""
        assert res.header("Content-Length") == "1000"
        assert c.request("GET", "/held/bytes/10").body == pattern_bytes(10)


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_statuses(dp, code):
    with dp.conn() as c:
        res = c.request("GET", "/held/status/%d?resp_header=Content-Type:application/json" % code)
        assert res.status == code and res.body == b""
        assert res.header("Content-Length") is None
        assert res.header("Transfer-Encoding") is None
        assert res.header("X-Held") == "1"
        if code == 304:
            assert res.header("ETag") == '"sluice-test"'
        res = c.request("GET", payload("/held", '{"b":2}'))
        assert res.status == 200 and res.body == b'{"b":2,"held":"yes"}'


# ------------------------------------------------------------------ failures


def test_upstream_closing_mid_body_is_a_502(dp):
    # nothing was sent yet, so the client can still be told
    with dp.conn() as c:
        res = c.request("GET", "/held/truncate/1000")
        assert res.status == 502
        assert res.json()["message"] == "upstream prematurely closed connection"
        assert res.header("X-Upstream-Name") is None
        assert c.request("GET", payload("/held", "{}")).body == b'{"held":"yes"}'


@pytest.mark.parametrize("te", ["length", "chunked", "eof"])
def test_response_larger_than_response_buffer_size(dp, te):
    with dp.conn(timeout=20) as c:
        res = c.request("GET", payload("/held", size=LIMIT + 1, te=te, chunk=65536))
        assert res.status == 502
        assert res.header("Content-Type") == "application/json; charset=utf-8"
        body = res.json()
        assert body["message"] == TOO_LARGE
        assert body["request_id"] == res.header("X-Kong-Request-Id")
        # nothing of the upstream's response leaked
        assert res.header("X-Upstream-Name") is None
        # the connection goes on, or ends as announced (a close-delimited
        # upstream body marks the client connection for closing)
        if res.header("Connection") == "close":
            assert te == "eof"
            assert c.wait_closed()[0]
        else:
            res = c.request("GET", payload("/held", '{"c":3}'))
            assert res.status == 200 and res.body == b'{"c":3,"held":"yes"}'
    # exactly response_buffer_size is allowed
    res = dp.get(payload("/held", size=LIMIT, te=te, chunk=65536), timeout=20)
    assert res.status == 200
    assert res.body == b'{"size":%d,"held":"yes"}' % LIMIT
    # a route that does not hold streams any size
    res = dp.get(payload("/plain", size=3 * LIMIT, te=te), timeout=20)
    assert res.status == 200 and len(res.body) == 3 * LIMIT


@pytest.mark.parametrize("held", [False, True])
def test_removing_content_length_keeps_the_framing(sluice_factory, upstream, held):
    # Kong lets a plugin drop Content-Length (nginx then chunks the body): a
    # response must stay framed whatever plugins do to the field, streamed
    # or held
    config = {"remove": {"headers": ["Content-Length"]}}
    if held:
        config["add"] = {"json": ["a:b"]}
    d = sluice_factory(declarative([service("echo", upstream.url, routes=[
        route("r", paths=["/r"], plugins=[{"name": "response-transformer", "config": config}])])]))
    with d.conn() as c:
        for target, body in [("/r/bytes/10", pattern_bytes(10)),
                             ("/r/bytes/0", b""),
                             (payload("/r", "{}"), b'{"a":"b"}' if held else b"{}")]:
            res = c.request("GET", target)
            assert res.status == 200 and res.body == body
            assert res.chunked or res.header_all("Content-Length") == [str(len(body))], res
        # HEAD has no body to frame: the field may go
        res = c.request("HEAD", payload("/r", "{}"))
        assert res.status == 200 and res.body == b""
        assert c.request("GET", "/r/bytes/5").body == pattern_bytes(5)


# ------------------------------------------------------------------ keep-alive


def test_keepalive_reuse_after_held_responses(dp):
    with dp.conn() as c:
        r1 = c.request("GET", payload("/held", '{"n":1}'))
        r2 = c.request("GET", payload("/held", '{"n":2}', te="chunked", chunk=3))
        r3 = c.request("GET", payload("/plain", '{"n":3}'))
        assert r1.body == b'{"n":1,"held":"yes"}'
        assert r2.body == b'{"n":2,"held":"yes"}'
        assert r3.body == b'{"n":3}'  # not held, not transformed
        for r in (r1, r2):
            assert_length_framed(r)
            assert r.header("Connection") is None
        # one upstream connection served all three, in turn
        conns = {r.header("X-Upstream-Conn-Id") for r in (r1, r2, r3)}
        assert len(conns) == 1, [r.headers for r in (r1, r2, r3)]
        reqs = [int(r.header("X-Upstream-Conn-Req")) for r in (r1, r2, r3)]
        assert reqs == [reqs[0], reqs[0] + 1, reqs[0] + 2]


# ------------------------------------------------------------------ holding vs streaming


def gate(dp, upstream, prefix, size=65536):
    token = uuid.uuid4().hex
    c = dp.conn(timeout=15)
    c.send(h1.build_request("GET", "%s/gate/%s?size=%d" % (prefix, token, size)))
    assert upstream.wait_event("gate-sent-" + token), "the upstream never sent the first half"
    return c, token


def test_route_without_body_plugins_streams(dp, upstream):
    size = 65536
    c, token = gate(dp, upstream, "/plain", size)
    with c:
        res = c.read_head()  # arrives while the upstream waits at the gate
        assert res.status == 200 and res.header("Content-Length") == str(size)
        first = c.read_exact(size // 2)
        upstream.open_gate(token)
        rest = c.read_exact(size - size // 2)
        assert first + rest == pattern_bytes(size)


def test_held_route_sends_nothing_before_the_upstream_has_finished(dp, upstream):
    size = 65536
    c, token = gate(dp, upstream, "/held", size)
    with c:
        closed, early = c.wait_closed(0.5)
        assert not closed and early == b"", "sent before the upstream finished: %r" % early[:200]
        upstream.open_gate(token)
        res = c.read_response()
        assert res.status == 200 and res.body == pattern_bytes(size)
        assert_length_framed(res)


def test_header_only_response_transformer_streams(sluice_factory, upstream):
    # without a json operation the plugin does not need the body
    d = sluice_factory(declarative([service("echo", upstream.url, routes=[
        route("hdr", paths=["/hdr"], plugins=[{"name": "response-transformer", "config": {
            "add": {"headers": ["X-Hdr:1"]}}}])])]))
    size = 65536
    c, token = gate(d, upstream, "/hdr", size)
    with c:
        res = c.read_head()
        assert res.status == 200 and res.header("X-Hdr") == "1"
        first = c.read_exact(size // 2)
        upstream.open_gate(token)
        assert first + c.read_exact(size - size // 2) == pattern_bytes(size)


def test_generated_answers_pass_through_body_filter(sluice_factory, upstream):
    """As in Kong, response-transformer also edits the JSON of answers the
    gateway or a plugin produced: key-auth's 401, the gateway's 502."""
    dead = "http://127.0.0.1:%d" % free_port()
    rt = {"name": "response-transformer", "config": {"add": {"json": ["extra:yes"]}}}
    dp = sluice_factory(declarative([
        service("s", upstream.url, routes=[route("locked", paths=["/locked"], plugins=[
            {"name": "key-auth"}, dict(rt)])]),
        service("gone", dead, retries=0, routes=[route("gone", paths=["/gone"],
                                                        plugins=[dict(rt)])])]))
    r = dp.get("/locked")
    assert r.status == 401
    body = json.loads(r.body)
    assert body["message"] == "No API key found in request" and body["extra"] == "yes"
    assert int(r.header("Content-Length")) == len(r.body)
    r = dp.get("/gone")
    assert r.status == 502
    body = json.loads(r.body)
    assert body["extra"] == "yes" and "request_id" in body
    assert int(r.header("Content-Length")) == len(r.body)
