"""External Go plugins with HTTP/2 clients: the go-pdk examples through a real
sluice-dp and their real plugin servers, the client speaking HTTP/2 over TLS
(ALPN h2) and in clear (prior knowledge).

- body-rewrite's Response handler (the upstream response held whole, read
  with kong.service.response.get_raw_body, replaced with kong.response.exit):
  the rewritten body, the upstream's status and headers, the JSON envelope,
  a body left alone, a body larger than the stream's flow-control window,
  several streams rewritten at once on one connection;
- hello's access-phase header, which greets the Host: the request's
  :authority;
- pdk-check's reports: kong.request.get_http_version is 2 (1.1 for an
  HTTP/1.1 request to the same data plane), and the request the PDK sees
  (scheme, host, port, headers without pseudo-headers, cookies joined, the
  body sent in DATA frames); its response phase runs too.
"""

import hashlib
import os
import urllib.parse

import pytest

import h1
from bridge.pluginservers import go_plugin_conf
from bridge.test_pdk_methods import header_report as report
from bridge.test_pdk_methods import v as answer
from conftest import declarative, proxy_listeners, route, service
from h2client import CONNECTION_SPECIFIC, connect

QUIET = ["kong.log.crit", "kong.log.alert"]  # "[crit]" lines fail the data plane's stderr

REWRITE = {"replace": [{"from": "hello", "to": "HELLO, WORLD"}], "envelope": "data"}
DOUBLE_X = {"replace": [{"from": "x", "to": "ab"}]}


def plugin(name, config):
    return {"name": name, "config": config}


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    decl = declarative([service("echo", upstream.url, routes=[
        route("rewrite", paths=["/rw"], plugins=[plugin("body-rewrite", REWRITE)]),
        route("rewrite-big", paths=["/big"], plugins=[plugin("body-rewrite", DOUBLE_X)]),
        route("hello", paths=["/hello"], plugins=[plugin("hello", {"message": "bonjour"})]),
        route("hello-who", paths=["/who"], plugins=[
            plugin("hello", {"message": "salut", "header": "x-who"})]),
        route("check", paths=["/check"], plugins=[plugin("pdk-check", {"skip": QUIET})]),
        route("plain", paths=["/plain"]),
    ])])
    s = module_sluice_factory(decl, {"proxy_listen": "127.0.0.1:0 ssl http2, 127.0.0.1:0 http2"},
                              start=False)
    s.conf.update(go_plugin_conf(s.prefix, ["body-rewrite", "hello", "pdk-check"]))
    s.write_conf()
    s.start()
    s.tls_h2, s.plain_h2 = proxy_listeners(s)
    s.proxy = s.plain_h2  # HTTP/1.1 works there too
    return s


def check_head(r):
    for k, _ in r.headers:
        assert k == k.lower() and k not in CONNECTION_SPECIFIC, (k, r)
    if r.has("content-length"):
        assert r.header_all("content-length") == [str(len(r.body))], r


def payload(prefix, text=None, **params):
    if text is not None:
        params["text"] = text
    return "%s/payload?%s" % (prefix, urllib.parse.urlencode(params, quote_via=urllib.parse.quote))


def upstream_payload(size):
    """The upstream's /payload?size=N body (upstream.py's JSON padding)."""
    head = b'{"size":%d,"pad":"' % size
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


# ------------------------------------------------------------------ body-rewrite


def test_body_rewrite_replaces_the_body(dp, transport):
    with connect(dp, transport) as c:
        r = c.get(payload("/rw", "say hello", ct="text/plain"))
        assert r.status == 200, r
        assert r.body == b"say HELLO, WORLD"
        check_head(r)
        assert r.header("content-type") == "text/plain"
        # The upstream's status and headers survive the rewrite.
        r = c.get(payload("/rw", "hello", ct="text/plain", status=201))
        assert r.status == 201 and r.body == b"HELLO, WORLD", r
        assert r.header("x-upstream-name") == "up1"
        check_head(r)


def test_body_rewrite_json_envelope(dp, transport):
    with connect(dp, transport) as c:
        r = c.get(payload("/rw", size=40))
        assert r.status == 200, r
        check_head(r)
        assert r.header("content-type") == "application/json; charset=utf-8"
        doc = r.json()
        assert doc["status"] == 200 and doc["data"]["size"] == 40, doc
        r = c.get(payload("/rw", '{"msg":"hello","n":12345678901234567890}', status=202))
        assert r.status == 202, r
        assert r.body == b'{"data":{"msg":"HELLO, WORLD","n":12345678901234567890},"status":202}'


def test_body_rewrite_leaves_other_bodies_alone(dp, transport):
    with connect(dp, transport) as c:
        r = c.get(payload("/rw", "nothing to change", ct="text/plain"))
        assert r.status == 200 and r.body == b"nothing to change", r
        check_head(r)
        r = c.get(payload("/rw", "hello", ct="text/plain", status=204))
        assert r.status == 204 and r.body == b"" and r.ended, r


def test_body_rewrite_of_a_body_larger_than_the_window(dp, transport):
    """The new body (600 kB) goes out in many DATA frames as the client's
    65535-byte stream window is given back."""
    size = 300000
    want = upstream_payload(size).replace(b"x", b"ab")
    with connect(dp, transport, timeout=20) as c:
        r = c.get(payload("/big", size=size, ct="text/plain"))
        assert r.status == 200, r
        check_head(r)
        assert len(r.body) == len(want) and r.body == want
        assert r.data_frames > 1


def test_body_rewrite_on_concurrent_streams(dp, transport):
    sizes = [1000, 70000, 150000, 5000, 90000, 20000]
    with connect(dp, transport, timeout=20) as c:
        sids = [c.send_request("GET", payload("/big", size=n, ct="text/plain")) for n in sizes]
        sids += [c.send_request("GET", payload("/rw", "hello %d" % i, ct="text/plain"))
                 for i in range(6)]
        resps = c.responses(sids, 20)
    for n, r in zip(sizes, resps[:6]):
        assert r.status == 200 and r.body == upstream_payload(n).replace(b"x", b"ab"), (n, r)
    for i, r in enumerate(resps[6:]):
        assert r.status == 200 and r.body == b"HELLO, WORLD %d" % i, r


def test_body_rewrite_with_a_request_body(dp, transport):
    """The Response handler runs after a request body went upstream through
    DATA frames (the echo's JSON then gets rewritten)."""
    body = os.urandom(100000)
    with connect(dp, transport) as c:
        r = c.request("POST", "/rw/hello-path", [("x-greeting", "hello there")], body)
        assert r.status == 200, r
        check_head(r)
        doc = r.json()
        assert doc["status"] == 200
        echo = doc["data"]
        assert echo["target"] == "/HELLO, WORLD-path"
        assert echo["body_len"] == len(body)
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
        assert [v for k, v in echo["headers"] if k.lower() == "x-greeting"] == \
            ["HELLO, WORLD there"]


# ------------------------------------------------------------------ hello


def test_hello_greets_the_authority(dp, transport):
    with connect(dp, transport) as c:
        r = c.get("/hello/x", authority="example.com")
        assert r.status == 200, r
        assert r.header("x-hello-from-go") == "Go says bonjour to example.com"
        assert r.json()["target"] == "/x"
        r = c.get("/who", [("x-who", "ann")])
        assert r.header("x-hello-from-go") == "Go says salut to ann"
        # Many streams at once, each greeting its own authority.
        sids = [c.send_request("GET", "/hello/%d" % i, authority="h%d.test" % i)
                for i in range(30)]
        for i, r in enumerate(c.responses(sids, 15)):
            assert r.status == 200, r
            assert r.header("x-hello-from-go") == "Go says bonjour to h%d.test" % i


# ------------------------------------------------------------------ the PDK


def test_pdk_sees_an_http2_request(dp, transport):
    body = b"sent in DATA frames"
    with connect(dp, transport) as c:
        r = c.request("POST", "/check/x?a=1", [("user-agent", "h2-pdk/1"), ("cookie", "c1=1"),
                                               ("cookie", "c2=2")], body,
                      authority="PDK.Example:8443")
    assert r.status == 200, r
    a = report(r, "x-pdk-check-access")
    assert answer(a, "kong.request.get_http_version") == 2
    assert answer(a, "kong.request.get_scheme") == ("https" if transport == "tls" else "http")
    assert answer(a, "kong.request.get_host") == "pdk.example"
    port = (dp.tls_h2 if transport == "tls" else dp.plain_h2)[1]
    assert answer(a, "kong.request.get_port") == port
    assert answer(a, "kong.request.get_method") == "POST"
    assert answer(a, "kong.request.get_path_with_query") == "/check/x?a=1"
    assert answer(a, "kong.request.get_header(user-agent)") == "h2-pdk/1"
    headers = answer(a, "kong.request.get_headers(-1)")
    assert not [k for k in headers if k.startswith(":")], headers
    assert headers["host"] == ["PDK.Example:8443"], headers
    assert headers["cookie"] == ["c1=1; c2=2"], headers
    assert answer(a, "kong.request.get_raw_body") == body.decode()
    # The response phase ran for this HTTP/2 client as well.
    resp_report = report(r, "x-pdk-check-response")
    assert answer(resp_report, "kong.service.response.get_status") == 200
    assert answer(resp_report, "kong.service.response.get_header(x-upstream-name)") == "up1"
    check_head(r)


def test_pdk_http_version_of_an_http11_request_on_the_same_data_plane(dp):
    r = h1.get(dp.plain_h2, "/check/x", host="pdk.example")
    assert r.status == 200, r
    assert answer(report(r, "x-pdk-check-access"), "kong.request.get_http_version") == 1.1


def test_pdk_server_protocol_variable(dp, transport):
    """nginx's $server_protocol for an HTTP/2 request is "HTTP/2.0"."""
    with connect(dp, transport) as c:
        r = c.get("/check/v")
    assert r.status == 200, r
    a = report(r, "x-pdk-check-access")
    assert answer(a, "kong.nginx.get_var(server_protocol)") == "HTTP/2.0"


def test_plain_route_unaffected(dp, transport):
    """A route without plugins, on the same connection as plugin routes."""
    with connect(dp, transport) as c:
        assert c.get(payload("/rw", "hello", ct="text/plain")).body == b"HELLO, WORLD"
        r = c.get(payload("/plain", "hello", ct="text/plain"))
        assert r.status == 200 and r.body == b"hello", r
        assert r.header("x-hello-from-go") is None
