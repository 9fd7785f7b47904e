"""Headers the proxy adds, replaces and removes (kong-compat.md 5.7):
X-Forwarded-* with and without trusted_ips, X-Real-IP, Via both ways,
hop-by-hop removal both ways, latency headers, Server, and `headers`.
"""

import re
import urllib.parse

import pytest

import h1
from conftest import SERVER_RE, VIA_RE, declarative, route, service

FORWARDED = ["X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port",
             "X-Forwarded-Path", "X-Forwarded-Prefix"]

SPOOFED = [
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "spoofed.example"),
    ("X-Forwarded-Port", "9999"),
    ("X-Forwarded-Path", "/spoofed/path"),
    ("X-Forwarded-Prefix", "/spoofed-prefix"),
]


def decl(upstream):
    return declarative([service("echo", upstream.url, routes=[
        route("all", paths=["/"]),
        route("api", paths=["/api"]),
        route("nostrip", paths=["/nostrip"], strip_path=False),
        route("rx", paths=[r"~/rx/\d+"]),
    ])])


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    return module_sluice_factory(decl(upstream))


@pytest.fixture(scope="module")
def trusted_dp(module_sluice_factory, upstream):
    return module_sluice_factory(decl(upstream), {"trusted_ips": "10.0.0.0/8, 127.0.0.1/32, ::1"})


@pytest.fixture(scope="module")
def headers_off_dp(module_sluice_factory, upstream):
    return module_sluice_factory(decl(upstream), {"headers": "off"})


@pytest.fixture(scope="module")
def server_tokens_dp(module_sluice_factory, upstream):
    return module_sluice_factory(decl(upstream), {"headers": "server_tokens"})


def up_headers(resp):
    """The headers the upstream received, as a list of (name, value)."""
    assert resp.status == 200, resp
    return [(k, v) for k, v in resp.json()["headers"]]


def up_all(resp, name):
    return [v for k, v in up_headers(resp) if k.lower() == name.lower()]


def up_one(resp, name):
    vals = up_all(resp, name)
    assert len(vals) <= 1, "upstream got %s %d times: %r" % (name, len(vals), vals)
    return vals[0] if vals else None


def combined(resp, name):
    """All values of a header the upstream received, comma-joined (RFC 9110 5.3)."""
    return ", ".join(up_all(resp, name))


# ------------------------------------------------------------------ X-Forwarded-For / X-Real-IP


def test_xff_set_to_client_ip(dp):
    assert combined(dp.get("/"), "X-Forwarded-For") == "127.0.0.1"


@pytest.mark.parametrize("which", ["dp", "trusted_dp"])
def test_xff_appended(which, request):
    d = request.getfixturevalue(which)
    resp = d.get("/", [("X-Forwarded-For", "1.2.3.4")])
    assert combined(resp, "X-Forwarded-For") == "1.2.3.4, 127.0.0.1"


def test_xff_several_incoming_headers(dp):
    resp = dp.get("/", [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2, 3.3.3.3")])
    assert combined(resp, "X-Forwarded-For") == "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"


def test_x_real_ip_is_peer_and_not_spoofable(dp):
    resp = dp.get("/", [("X-Real-IP", "6.6.6.6")])
    assert up_all(resp, "X-Real-IP") == ["127.0.0.1"]


def test_x_real_ip_without_incoming(dp):
    assert up_all(dp.get("/"), "X-Real-IP") == ["127.0.0.1"]


# ------------------------------------------------------------------ X-Forwarded-* computed


def test_forwarded_computed_untrusted_ignores_client_values(dp):
    resp = dp.get("/api/users?x=1", SPOOFED, host="front.example:8080")
    assert up_one(resp, "X-Forwarded-Proto") == "http"
    assert up_one(resp, "X-Forwarded-Host") == "front.example"
    assert up_one(resp, "X-Forwarded-Port") == str(dp.proxy[1])
    assert up_one(resp, "X-Forwarded-Path") == "/api/users"
    assert up_one(resp, "X-Forwarded-Prefix") == "/api"


def test_forwarded_computed_without_client_values(dp):
    resp = dp.get("/api/users?x=1", host="front.example")
    assert up_one(resp, "X-Forwarded-Proto") == "http"
    assert up_one(resp, "X-Forwarded-Host") == "front.example"
    assert up_one(resp, "X-Forwarded-Port") == str(dp.proxy[1])
    assert up_one(resp, "X-Forwarded-Path") == "/api/users"
    assert up_one(resp, "X-Forwarded-Prefix") == "/api"


def test_forwarded_prefix_absent_for_root_route(dp):
    resp = dp.get("/other/thing", SPOOFED)
    assert up_one(resp, "X-Forwarded-Prefix") is None
    assert up_one(resp, "X-Forwarded-Path") == "/other/thing"


def test_forwarded_prefix_absent_without_strip(dp):
    resp = dp.get("/nostrip/x")
    assert resp.json()["target"] == "/nostrip/x"
    assert up_one(resp, "X-Forwarded-Prefix") is None


def test_forwarded_prefix_regex_is_matched_part(dp):
    resp = dp.get("/rx/123/tail")
    assert resp.json()["target"] == "/tail"
    assert up_one(resp, "X-Forwarded-Prefix") == "/rx/123"


# ------------------------------------------------------------------ trusted_ips


def test_forwarded_taken_from_trusted_peer(trusted_dp):
    resp = trusted_dp.get("/api/users?x=1", SPOOFED, host="front.example")
    for name, value in SPOOFED:
        assert up_one(resp, name) == value, name


def test_forwarded_trusted_peer_without_values_computed(trusted_dp):
    resp = trusted_dp.get("/api/users", host="front.example")
    assert up_one(resp, "X-Forwarded-Proto") == "http"
    assert up_one(resp, "X-Forwarded-Host") == "front.example"
    assert up_one(resp, "X-Forwarded-Port") == str(trusted_dp.proxy[1])
    assert up_one(resp, "X-Forwarded-Path") == "/api/users"
    assert up_one(resp, "X-Forwarded-Prefix") == "/api"


# ------------------------------------------------------------------ Via


def test_via_added_upstream(dp):
    vals = up_all(dp.get("/"), "Via")
    assert len(vals) == 1 and re.fullmatch(VIA_RE, vals[0]), vals


def test_via_appended_upstream(dp):
    resp = dp.get("/", [("Via", "1.0 fred")])
    assert re.fullmatch(r"1\.0 fred, " + VIA_RE, combined(resp, "Via")), up_headers(resp)


def test_via_added_downstream(dp):
    resp = dp.get("/")
    assert re.fullmatch(VIA_RE, ", ".join(resp.header_all("via"))), resp.headers


def test_via_appended_downstream(dp):
    resp = dp.get("/?resp_header=" + urllib.parse.quote("Via:1.1 inner-proxy"))
    assert re.fullmatch(r"1\.1 inner-proxy, " + VIA_RE,
                        ", ".join(resp.header_all("via"))), resp.headers


# ------------------------------------------------------------------ hop-by-hop


def test_hop_by_hop_request_headers_removed(dp):
    resp = dp.get("/", [
        ("Connection", "keep-alive, X-Drop-Me, x-drop-too"),
        ("X-Drop-Me", "1"),
        ("X-Drop-Too", "1"),
        ("X-Keep-Me", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "gzip"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
    ])
    names = [k.lower() for k, _ in up_headers(resp)]
    for gone in ["x-drop-me", "x-drop-too", "keep-alive", "proxy-connection", "te", "trailer",
                 "upgrade"]:
        assert gone not in names, (gone, up_headers(resp))
    assert "x-keep-me" in names
    conn = (combined(resp, "Connection") or "").lower()
    assert "x-drop" not in conn and "upgrade" not in conn, conn


def test_te_trailers_may_pass_but_nothing_else(dp):
    resp = dp.get("/", [("TE", "trailers, deflate")])
    assert combined(resp, "TE") in ("", "trailers"), up_headers(resp)


def test_hop_by_hop_response_headers_removed(dp):
    """RFC 9110 7.6.1: a proxy removes the response's hop-by-hop fields too."""
    q = urllib.parse.urlencode([("resp_header", "Connection: X-Hop"),
                                ("resp_header", "X-Hop: 1"),
                                ("resp_header", "Keep-Alive: timeout=99"),
                                ("resp_header", "X-End-To-End: yes")])
    resp = dp.get("/?" + q)
    assert resp.status == 200
    assert not resp.has("x-hop"), resp.headers
    assert "timeout=99" not in ", ".join(resp.header_all("keep-alive")), resp.headers
    assert resp.header("x-end-to-end") == "yes"


def test_upstream_request_is_http11_even_for_http10_client(dp):
    with dp.conn() as c:
        c.send(h1.build_request("GET", "/", version="HTTP/1.0"))
        resp = c.read_response()
    assert resp.status == 200
    assert resp.json()["version"] == "HTTP/1.1"


def test_end_to_end_headers_pass_unchanged(dp):
    sent = [("X-MiXeD-Case", "Value With  Spaces"), ("x-dup", "1"), ("x-dup", "2"),
            ("Accept", "*/*"), ("Cookie", "a=1; b=2"), ("Authorization", "Bearer t")]
    got = up_headers(dp.get("/", sent))
    names = [k for k, _ in got]
    assert "X-MiXeD-Case" in names, got
    assert ("X-MiXeD-Case", "Value With  Spaces") in got
    dups = [v for k, v in got if k.lower() == "x-dup"]
    assert ", ".join(dups) == "1, 2", got
    assert ("Cookie", "a=1; b=2") in got
    assert ("Authorization", "Bearer t") in got


def test_multiple_set_cookie_not_merged(dp):
    q = urllib.parse.urlencode([("resp_header", "Set-Cookie: a=1; Path=/"),
                                ("resp_header",
                                 "Set-Cookie: b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT")])
    resp = dp.get("/?" + q)
    assert resp.header_all("set-cookie") == ["a=1; Path=/",
                                             "b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT"]


# ------------------------------------------------------------------ latency, Server


def test_latency_headers_on_proxied_response(dp):
    resp = dp.get("/")
    assert resp.status == 200
    assert int(resp.header("x-kong-upstream-latency")) >= 0
    assert int(resp.header("x-kong-proxy-latency")) >= 0
    assert not resp.has("x-kong-response-latency")


def test_upstream_latency_covers_upstream_delay(dp):
    resp = dp.get("/delay/300")
    assert resp.status == 200
    assert int(resp.header("x-kong-upstream-latency")) >= 290, resp.headers


def test_server_header_from_upstream_kept(dp):
    resp = dp.get("/?resp_header=" + urllib.parse.quote("Server: upstream-test/1.0"))
    assert resp.header_all("server") == ["upstream-test/1.0"]


def test_server_header_added_when_upstream_has_none(dp):
    resp = dp.get("/")
    assert len(resp.header_all("server")) == 1
    assert re.match(SERVER_RE, resp.header("server")), resp.headers


def test_short_circuit_response_headers(dp):
    with dp.conn() as c:
        c.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400 produced by sluice itself
        resp = c.read_response()
    assert resp.status == 400
    assert re.match(SERVER_RE, resp.header("server") or ""), resp.headers
    assert resp.has("x-kong-response-latency"), resp.headers


def test_headers_off(headers_off_dp):
    resp = headers_off_dp.get("/")
    assert resp.status == 200
    for name in ("x-kong-upstream-latency", "x-kong-proxy-latency", "x-kong-response-latency"):
        assert not resp.has(name), resp.headers
    assert not any("sluice" in v for v in resp.header_all("via")), resp.headers
    assert not any("sluice" in v for v in resp.header_all("server")), resp.headers


def test_headers_off_short_circuit(module_sluice_factory, upstream):
    d = module_sluice_factory(declarative([service("s", upstream.url, routes=[
        route("only", paths=["/only"])])]), {"headers": "off"})
    resp = d.get("/nothing")
    assert resp.status == 404
    assert not resp.has("x-kong-response-latency"), resp.headers
    assert not any("sluice/" in v for v in resp.header_all("server")), resp.headers


def test_headers_server_tokens_only(server_tokens_dp):
    resp = server_tokens_dp.get("/")
    assert resp.status == 200
    assert re.fullmatch(VIA_RE, ", ".join(resp.header_all("via"))), resp.headers
    assert not resp.has("x-kong-upstream-latency")
    assert not resp.has("x-kong-proxy-latency")


def test_headers_request_id_only(module_sluice_factory, upstream):
    d = module_sluice_factory(decl(upstream), {"headers": "X-Kong-Request-Id"})
    a, b = d.get("/"), d.get("/")
    assert a.status == 200 and b.status == 200
    assert a.header("x-kong-request-id") and b.header("x-kong-request-id"), a.headers
    assert a.header("x-kong-request-id") != b.header("x-kong-request-id")
    assert not a.has("x-kong-upstream-latency") and not a.has("x-kong-proxy-latency")
    assert not any("sluice" in v for v in a.header_all("via")), a.headers
