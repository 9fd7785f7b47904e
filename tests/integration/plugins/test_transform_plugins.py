"""cors, correlation-id, request-transformer and response-transformer as the
data plane runs them (Kong 3.10's handlers): a real sluice-dp on a DB-less
file, the echo upstream showing what went upstream (headers, method, target)
and sending the response headers it is asked for (?resp_header=Name:Value).

Covered: cors preflight vs actual request, exact / regex / "*" origins,
normalised ports, credentials, Vary, preflight_continue, allow_origin_absent,
private network; correlation-id's three generators, a kept incoming id,
echo_downstream; request-transformer's header and query operations in
Kong's order, Host handling, method and uri replacement, body operations on
form, JSON and multipart bodies (through an upstream that echoes bodies,
body_echo.py) and the move of form fields into the query string for GET;
response-transformer's header operations (with Kong's snapshot semantics) on
upstream and plugin-made responses, and its JSON body operations
(json_types, Kong's Lua quirks, cjson's encoding, is_json_body's media
types, bodies left alone) on upstream bodies (the upstream's /payload
answers a body the test gives; test_held_responses.py covers how the proxy
holds them); the order of plugins across phases; configs that are refused
at load with a message naming the field.
"""

import json
import os
import re
import time
import urllib.parse
import uuid

import pytest

import h1
from conftest import declarative, free_port, route, run_dp, service
from plugins.body_echo import BodyEcho, echoed
from plugins.body_echo import header as echo_header

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"


def plugin(name, config=None):
    p = {"name": name}
    if config is not None:
        p["config"] = config
    return p


def r(name, path, *plugins, **fields):
    return route(name, paths=[path], plugins=list(plugins), **fields)


ROUTES = [
    # cors
    r("cors-default", "/cors-default", plugin("cors")),
    r("cors-literal", "/cors-literal", plugin("cors", {"origins": ["http://example.com"]})),
    r("cors-list", "/cors-list", plugin("cors", {
        "origins": ["http://a.example", "https://b.example:8443", r"https?://.*\.rx\.example",
                    r"(.*\.)?host\.example"],
        "credentials": True,
        "exposed_headers": ["X-Exp-1", "X-Exp-2"],
        "headers": ["X-Custom", "Authorization"],
        "methods": ["GET", "POST"],
        "max_age": 600,
        "private_network": True,
    })),
    r("cors-anchored", "/cors-anchored", plugin("cors", {
        "origins": [r"^http://only\.example$", r"http://x\d+\.example"]})),
    r("cors-star-creds", "/cors-star-creds", plugin("cors", {"credentials": True})),
    r("cors-continue", "/cors-continue", plugin("cors", {"preflight_continue": True})),
    r("cors-no-absent", "/cors-no-absent", plugin("cors", {
        "origins": ["http://a.example", "http://b.example"], "allow_origin_absent": False})),
    r("cors-multi-star", "/cors-multi-star", plugin("cors", {
        "origins": ["http://a.example", "*"]})),
    # correlation-id
    r("cid-default", "/cid-default", plugin("correlation-id")),
    r("cid-uuid", "/cid-uuid", plugin("correlation-id", {
        "generator": "uuid", "header_name": "X-Corr", "echo_downstream": True})),
    r("cid-tracker", "/cid-tracker", plugin("correlation-id", {
        "generator": "tracker", "echo_downstream": True})),
    r("cid-counter-echo", "/cid-counter-echo", plugin("correlation-id", {
        "echo_downstream": True})),
    # request-transformer
    r("rt-headers", "/rt-headers", plugin("request-transformer", {
        "remove": {"headers": ["X-Rm", "x-rm2:ignored", "Host"]},
        "rename": {"headers": ["X-Old:X-New", "X-Missing:X-Never", "X-Case:X-CASE"]},
        "replace": {"headers": ["X-Rep:new", "X-Rep-Absent:never", "X-New:renamed-then-replaced"]},
        "add": {"headers": ["X-Add:added", "X-Exists:not-added", "X-Rm:re-added", "Host:nope"]},
        "append": {"headers": ["X-App:a2", "X-Fresh:f"]},
    })),
    r("rt-rename", "/rt-rename", plugin("request-transformer", {
        "rename": {"headers": ["X-Old:X-Target"]}})),
    r("rt-host", "/rt-host", plugin("request-transformer", {
        "replace": {"headers": ["Host:replaced.example"]}})),
    r("rt-query", "/rt-query", plugin("request-transformer", {
        "remove": {"querystring": ["q_rm"]},
        "rename": {"querystring": ["q_old:q_new", "q_missing:q_never"]},
        "replace": {"querystring": ["q_rep:R", "q_rep_absent:never"]},
        "add": {"querystring": ["q_add:A", "q_keep:not-added"]},
        "append": {"querystring": ["q_app:2", "q_flag:x", "q_more:m1", "q_more:m 2"]},
    })),
    r("rt-query-noop", "/rt-query-noop", plugin("request-transformer", {
        "remove": {"querystring": ["absent"]}})),
    r("rt-method", "/rt-method", plugin("request-transformer", {"http_method": "POST"})),
    r("rt-bad-method", "/rt-bad-method", plugin("request-transformer", {"http_method": "FOO"})),
    r("rt-uri", "/rt-uri", plugin("request-transformer", {
        "replace": {"uri": "/replaced/a b"}})),
    r("rt-uri-relative", "/rt-uri-relative", plugin("request-transformer", {
        "replace": {"uri": "relative"}})),
    # response-transformer
    r("resp-headers", "/resp-headers", plugin("response-transformer", {
        "remove": {"headers": ["X-Rm", "X-Rm2:ignored"]},
        "rename": {"headers": ["X-Old:X-New", "X-Missing:X-Never"]},
        "replace": {"headers": ["X-Rep:new", "X-Rep-Absent:never"]},
        "add": {"headers": ["X-Add:added", "X-Exists:not-added"]},
        "append": {"headers": ["X-App:a2", "X-App-New:v"]},
    })),
    r("resp-rename", "/resp-rename", plugin("response-transformer", {
        "rename": {"headers": ["X-Old:X-New"]}})),
    r("resp-snapshot", "/resp-snapshot", plugin("response-transformer", {
        "remove": {"headers": ["X-Snap", "X-Gone"]},
        "replace": {"headers": ["X-Snap:back"]},
        "add": {"headers": ["X-Gone:new"]},
    })),
    # several plugins on one route
    r("order", "/order",
      plugin("correlation-id", {"echo_downstream": True}),
      plugin("request-transformer", {"rename": {"headers": ["Kong-Request-ID:X-Renamed-Id"]}}),
      plugin("response-transformer", {"rename": {"headers": ["Kong-Request-ID:X-Resp-Id"]},
                                      "add": {"headers": ["X-Resp-Added:yes"]}}),
      plugin("cors", {"origins": ["http://a.example"]})),
    r("order-cid-cors", "/order-cid-cors",
      plugin("correlation-id", {"echo_downstream": True, "generator": "uuid"}),
      plugin("cors")),
]


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    return module_sluice_factory(declarative([
        service("echo", upstream.url, routes=ROUTES),
        service("dead", "http://127.0.0.1:%d" % free_port(), routes=[
            r("dead", "/dead", plugin("cors", {"origins": ["http://a.example"]}),
              plugin("response-transformer", {"add": {"headers": ["X-On-Error:yes"]}}),
              plugin("correlation-id", {"echo_downstream": True}))]),
        service("echo-base", upstream.url + "/svc", routes=[
            r("rt-uri-base", "/rt-uri-base", plugin("request-transformer", {
                "replace": {"uri": "/replaced"}}))]),
    ]))


def echo(resp):
    assert resp.status == 200, resp
    return resp.json()


def up_all(resp, name):
    return [v for k, v in echo(resp)["headers"] if k.lower() == name.lower()]


def up_one(resp, name):
    vals = up_all(resp, name)
    assert len(vals) <= 1, "upstream got %s %d times: %r" % (name, len(vals), vals)
    return vals[0] if vals else None


def from_upstream(resp):
    return resp.header("X-Upstream-Name") is not None


def preflight(dp, path, origin="http://a.example", extra=()):
    hs = [("Origin", origin), ("Access-Control-Request-Method", "POST")] + list(extra)
    return dp.request("OPTIONS", path, hs)


# ------------------------------------------------------------------ cors: preflight


def test_cors_preflight_default_answers_200_itself(dp):
    res = preflight(dp, "/cors-default", extra=[("Access-Control-Request-Headers", "X-A, X-B")])
    assert res.status == 200
    assert not from_upstream(res)
    assert res.header("Access-Control-Allow-Origin") == "*"
    assert res.header("Access-Control-Allow-Methods") == DEFAULT_METHODS
    # no config.headers: the request's Access-Control-Request-Headers is echoed
    assert res.header("Access-Control-Allow-Headers") == "X-A, X-B"
    assert res.header("Access-Control-Allow-Credentials") is None
    assert res.header("Access-Control-Max-Age") is None
    assert res.header("Access-Control-Expose-Headers") is None
    assert res.header("Vary") is None  # "*" does not depend on the origin
    assert res.body == b""


def test_cors_preflight_without_request_headers_has_no_allow_headers(dp):
    res = preflight(dp, "/cors-default")
    assert res.status == 200
    assert res.header("Access-Control-Allow-Headers") is None


def test_cors_preflight_with_every_option(dp):
    res = preflight(dp, "/cors-list", extra=[("Access-Control-Request-Headers", "X-Ignored")])
    assert res.status == 200 and not from_upstream(res)
    assert res.header("Access-Control-Allow-Origin") == "http://a.example"
    assert res.header("Vary") == "Origin"
    assert res.header("Access-Control-Allow-Credentials") == "true"
    assert res.header("Access-Control-Allow-Headers") == "X-Custom,Authorization"
    assert res.header("Access-Control-Allow-Methods") == "GET,POST"
    assert res.header("Access-Control-Max-Age") == "600"
    # private network only when the browser asks for it
    assert res.header("Access-Control-Allow-Private-Network") is None
    # exposed headers belong to actual responses, not to preflights
    assert res.header("Access-Control-Expose-Headers") is None


def test_cors_preflight_private_network(dp):
    res = preflight(dp, "/cors-list",
                    extra=[("Access-Control-Request-Private-Network", "true")])
    assert res.header("Access-Control-Allow-Private-Network") == "true"
    res = preflight(dp, "/cors-default",
                    extra=[("Access-Control-Request-Private-Network", "true")])
    assert res.header("Access-Control-Allow-Private-Network") is None  # not configured


def test_cors_preflight_from_disallowed_origin(dp):
    # Kong still answers 200 with the methods, without an allowed origin
    res = preflight(dp, "/cors-list", origin="http://evil.example")
    assert res.status == 200 and not from_upstream(res)
    assert res.header("Access-Control-Allow-Origin") is None
    assert res.header("Access-Control-Allow-Methods") == "GET,POST"
    assert res.header("Vary") == "Origin"


def test_cors_options_without_request_method_is_not_a_preflight(dp):
    res = dp.request("OPTIONS", "/cors-default", [("Origin", "http://a.example")])
    assert res.status == 200 and from_upstream(res)
    assert echo(res)["method"] == "OPTIONS"
    assert res.header("Access-Control-Allow-Origin") == "*"
    assert res.header("Access-Control-Allow-Methods") is None


def test_cors_preflight_continue_goes_upstream_untouched(dp):
    res = preflight(dp, "/cors-continue")
    assert res.status == 200 and from_upstream(res)
    assert echo(res)["method"] == "OPTIONS"
    for h in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Vary"):
        assert res.header(h) is None, h


# ------------------------------------------------------------------ cors: actual requests


def test_cors_actual_request_default(dp):
    res = dp.get("/cors-default", [("Origin", "http://whoever.example")])
    assert from_upstream(res)
    assert res.header("Access-Control-Allow-Origin") == "*"
    assert res.header("Vary") is None
    assert res.header("Access-Control-Allow-Credentials") is None
    # allow_origin_absent (default true): also without an Origin
    assert dp.get("/cors-default").header("Access-Control-Allow-Origin") == "*"


def test_cors_single_literal_origin_is_sent_as_is(dp):
    res = dp.get("/cors-literal", [("Origin", "http://other.example")])
    assert res.header("Access-Control-Allow-Origin") == "http://example.com"
    assert res.header("Vary") == "Origin"


@pytest.mark.parametrize("origin,allowed", [
    ("http://a.example", "http://a.example"),
    ("http://a.example:80", "http://a.example"),       # default port dropped
    ("https://b.example:8443", "https://b.example:8443"),
    ("https://x.rx.example", "https://x.rx.example"),  # regex with ':' matches scheme://host
    ("http://deep.x.rx.example", "http://deep.x.rx.example"),
    ("http://api.host.example:9999", "http://api.host.example:9999"),  # regex by host
    ("http://host.example", "http://host.example"),
])
def test_cors_allowed_origins(dp, origin, allowed):
    res = dp.get("/cors-list", [("Origin", origin)])
    assert from_upstream(res)
    assert res.header("Access-Control-Allow-Origin") == allowed
    assert res.header("Vary") == "Origin"
    assert res.header("Access-Control-Allow-Credentials") == "true"
    assert res.header("Access-Control-Expose-Headers") == "X-Exp-1,X-Exp-2"


@pytest.mark.parametrize("origin", [
    "http://evil.example",
    "http://a.example:8080",           # another port is another origin
    "https://a.example",               # another scheme too
    "https://b.example",               # the configured one has :8443
    "https://x.rx.example.evil.com",   # regexes are anchored at the end
    "ftp://x.rx.example",
    "http://host.example.evil",
    "http://nothost.example",          # (.*\.)? needs the dot
])
def test_cors_disallowed_origins(dp, origin):
    res = dp.get("/cors-list", [("Origin", origin)])
    assert from_upstream(res)
    assert res.header("Access-Control-Allow-Origin") is None
    assert res.header("Vary") == "Origin"
    # credentials do not depend on the match (Kong sets them for any listed origin set)
    assert res.header("Access-Control-Allow-Credentials") == "true"


def test_cors_explicitly_anchored_regexes(dp):
    ok = dp.get("/cors-anchored", [("Origin", "http://only.example")])
    assert ok.header("Access-Control-Allow-Origin") == "http://only.example"
    ok = dp.get("/cors-anchored", [("Origin", "http://x42.example")])
    assert ok.header("Access-Control-Allow-Origin") == "http://x42.example"
    for bad in ("http://only.example.com", "xhttp://only.example", "http://x42.example.com",
                "http://xx.example"):
        res = dp.get("/cors-anchored", [("Origin", bad)])
        assert res.header("Access-Control-Allow-Origin") is None, bad


def test_cors_list_without_origin_header(dp):
    res = dp.get("/cors-list")
    assert res.header("Access-Control-Allow-Origin") is None
    assert res.header("Vary") == "Origin"


def test_cors_allow_origin_absent_false(dp):
    res = dp.get("/cors-no-absent")
    assert from_upstream(res)
    assert res.header("Access-Control-Allow-Origin") is None
    assert res.header("Vary") is None  # the plugin did nothing at all
    res = dp.get("/cors-no-absent", [("Origin", "http://b.example")])
    assert res.header("Access-Control-Allow-Origin") == "http://b.example"


def test_cors_star_with_credentials_reflects_the_origin(dp):
    res = dp.get("/cors-star-creds", [("Origin", "http://anyone.example:81")])
    assert res.header("Access-Control-Allow-Origin") == "http://anyone.example:81"
    assert res.header("Access-Control-Allow-Credentials") == "true"
    assert res.header("Vary") == "Origin"
    # without an Origin: "*" and no credentials (a browser would refuse them)
    res = dp.get("/cors-star-creds")
    assert res.header("Access-Control-Allow-Origin") == "*"
    assert res.header("Access-Control-Allow-Credentials") is None
    res = preflight(dp, "/cors-star-creds", origin="http://p.example")
    assert res.header("Access-Control-Allow-Origin") == "http://p.example"
    assert res.header("Access-Control-Allow-Credentials") == "true"


def test_cors_star_among_origins_allows_any_origin(dp):
    res = dp.get("/cors-multi-star", [("Origin", "http://zzz.example")])
    assert res.header("Access-Control-Allow-Origin") == "*"
    assert res.header("Vary") == "Origin"


def test_cors_vary_joins_the_upstream_vary(dp):
    res = dp.get("/cors-list?resp_header=Vary:Accept-Encoding", [("Origin", "http://a.example")])
    assert from_upstream(res)
    assert res.header_all("Vary") == ["Accept-Encoding", "Origin"]
    assert res.header("Access-Control-Allow-Origin") == "http://a.example"


def test_cors_replaces_upstream_allow_origin(dp):
    res = dp.get("/cors-list?resp_header=Access-Control-Allow-Origin:http://up.example",
                 [("Origin", "http://evil.example")])
    assert res.header_all("Access-Control-Allow-Origin") == []
    res = dp.get("/cors-list?resp_header=Access-Control-Allow-Origin:http://up.example",
                 [("Origin", "http://a.example")])
    assert res.header_all("Access-Control-Allow-Origin") == ["http://a.example"]


# ------------------------------------------------------------------ correlation-id


def test_correlation_uuid_counter_default(dp):
    ids = []
    for _ in range(8):
        res = dp.get("/cid-default")
        val = up_one(res, "Kong-Request-ID")
        assert val is not None
        m = re.fullmatch("(%s)#(\\d+)" % UUID_RE, val)
        assert m, val
        ids.append((m.group(1), int(m.group(2))))
        # echo_downstream is off by default
        assert res.header("Kong-Request-ID") is None
    # one uuid per worker (2 workers), and per worker a counter that only grows
    prefixes = {u for u, _ in ids}
    assert 1 <= len(prefixes) <= 2, ids
    for prefix in prefixes:
        counters = [n for u, n in ids if u == prefix]
        assert counters == sorted(counters) and len(set(counters)) == len(counters), ids


def test_correlation_uuid_generated_and_echoed(dp):
    seen = set()
    for _ in range(3):
        res = dp.get("/cid-uuid")
        val = up_one(res, "X-Corr")
        assert re.fullmatch(UUID_RE, val), val
        assert res.header("X-Corr") == val
        seen.add(val)
    assert len(seen) == 3


def test_correlation_keeps_incoming_id(dp):
    res = dp.get("/cid-uuid", [("X-Corr", "client-chosen-42")])
    assert up_all(res, "X-Corr") == ["client-chosen-42"]
    assert res.header_all("X-Corr") == ["client-chosen-42"]
    # the header name is case-insensitive
    res = dp.get("/cid-uuid", [("x-corr", "lower")])
    assert up_all(res, "X-Corr") == ["lower"]
    assert res.header("X-Corr") == "lower"


def test_correlation_empty_incoming_id_is_replaced(dp):
    res = dp.get("/cid-uuid", [("X-Corr", "")])
    val = up_one(res, "X-Corr")
    assert re.fullmatch(UUID_RE, val), val
    assert res.header("X-Corr") == val


def test_correlation_echo_replaces_upstream_header(dp):
    res = dp.get("/cid-uuid?resp_header=X-Corr:from-upstream", [("X-Corr", "mine")])
    assert res.header_all("X-Corr") == ["mine"]


def test_correlation_counter_echoed(dp):
    res = dp.get("/cid-counter-echo")
    val = up_one(res, "Kong-Request-ID")
    assert re.fullmatch("%s#\\d+" % UUID_RE, val)
    assert res.header("Kong-Request-ID") == val


TRACKER_RE = r"(.+)-(\d+)-(\d+)-(\d+)-(\d+)-(\d+\.\d{3})"


def test_correlation_tracker_format(dp):
    res = dp.get("/cid-tracker")
    val = up_one(res, "Kong-Request-ID")
    m = re.fullmatch(TRACKER_RE, val)
    assert m, val
    assert int(m.group(2)) == dp.proxy[1]   # server port
    assert int(m.group(3)) == dp.pid        # the process id
    assert abs(float(m.group(6)) - time.time()) < 60
    assert res.header("Kong-Request-ID") == val


def test_correlation_tracker_connection_fields(dp):
    with dp.conn() as c:
        vals = [up_one(c.request("GET", "/cid-tracker"), "Kong-Request-ID") for _ in range(2)]
    ms = [re.fullmatch(TRACKER_RE, v) for v in vals]
    assert all(ms), vals
    assert ms[0].group(1) == "127.0.0.1"
    assert int(ms[0].group(4)) > 0 and ms[0].group(4) == ms[1].group(4)  # same connection
    assert (int(ms[0].group(5)), int(ms[1].group(5))) == (1, 2)


# ------------------------------------------------------------------ request-transformer


def test_request_transformer_headers(dp):
    res = dp.get("/rt-headers", [
        ("X-Rm", "1"), ("X-Rm2", "2"), ("X-Old", "o1"), ("X-Old", "o2"), ("X-Rep", "old"),
        ("X-Exists", "keep"), ("X-App", "a1"), ("X-Case", "c"), ("X-Other", "untouched")])
    e = echo(res)
    names = [k.lower() for k, _ in e["headers"]]
    assert "x-rm2" not in names and "x-old" not in names
    # remove then add: the add sees the header gone
    assert up_all(res, "X-Rm") == ["re-added"]
    # rename keeps every value; a later replace sees the renamed header
    assert up_all(res, "X-New") == ["renamed-then-replaced"]
    assert up_all(res, "X-Never") == []
    assert up_all(res, "X-Rep") == ["new"]
    assert up_all(res, "X-Rep-Absent") == []
    assert up_all(res, "X-Add") == ["added"]
    assert up_all(res, "X-Exists") == ["keep"]
    assert up_all(res, "X-App") == ["a1", "a2"]
    assert up_all(res, "X-Fresh") == ["f"]
    assert up_all(res, "X-Other") == ["untouched"]
    # a rename that changes only the case keeps the value
    assert up_all(res, "X-Case") == ["c"]
    assert "X-CASE" in [k for k, _ in e["headers"]]
    # Host is outside remove and add
    hosts = up_all(res, "Host")
    assert len(hosts) == 1 and hosts[0] != "nope"


def test_request_transformer_rename_moves_every_value(dp):
    res = dp.get("/rt-rename", [("X-Old", "o1"), ("X-Target", "overwritten"), ("X-Old", "o2")])
    assert up_all(res, "X-Target") == ["o1", "o2"]
    assert up_all(res, "X-Old") == []
    res = dp.get("/rt-rename", [("X-Target", "stays")])
    assert up_all(res, "X-Target") == ["stays"]  # nothing to rename
    res = dp.get("/rt-headers")
    assert up_all(res, "X-New") == []
    assert up_all(res, "X-Rm") == ["re-added"]  # add works on an absent header


def test_request_transformer_replace_host(dp, upstream):
    res = dp.get("/rt-host", [("X-A", "1")])
    assert up_all(res, "Host") == ["replaced.example"]
    assert up_all(res, "X-A") == ["1"]


def test_request_transformer_remove_host_is_ignored(dp, upstream):
    res = dp.get("/rt-headers")
    hosts = up_all(res, "Host")
    assert len(hosts) == 1 and hosts[0] not in ("nope", "")


def test_request_transformer_querystring(dp):
    res = dp.get("/rt-query?z=1&q_rm=x&q_old=o&q_rep=r&q_keep=k&q_app=1&q_flag&b=hello+world"
                 "&c=%41&q_more=m0")
    e = echo(res)
    path, _, query = e["target"].partition("?")
    assert path == "/"  # the route strips its path
    # Kong's set_query: arguments sorted, values percent-encoded (a space is %20)
    assert query == ("b=hello%20world&c=A&q_add=A&q_app=1&q_app=2&q_flag=x&q_keep=k"
                     "&q_more=m0&q_more=m1&q_more=m%202&q_new=o&q_rep=R&z=1")


def test_request_transformer_querystring_without_query(dp):
    e = echo(dp.get("/rt-query"))
    assert e["target"] == "/?q_add=A&q_app=2&q_flag=x&q_keep=not-added&q_more=m1&q_more=m%202"


def test_request_transformer_querystring_reencodes_when_nothing_matches(dp):
    # Kong rebuilds the query from its parsed arguments whenever a query
    # operation is configured: sorted, re-encoded, empty names dropped
    e = echo(dp.get("/rt-query-noop?b=2&a=1&a=0&=x&s=%7e%2F&flag"))
    assert e["target"] == "/?a=1&a=0&b=2&flag&s=~%2F"
    e = echo(dp.get("/rt-query-noop"))
    assert e["target"] == "/"


def test_request_transformer_http_method(dp):
    res = dp.get("/rt-method?x=1", [("X-A", "1")])
    e = echo(res)
    assert e["method"] == "POST"
    assert e["target"] == "/?x=1"


def test_request_transformer_unknown_method_is_an_error(dp):
    # Kong's set_method raises for a method it does not know: 500
    res = dp.get("/rt-bad-method")
    assert res.status == 500
    assert not from_upstream(res)
    assert res.json()["message"] == "An unexpected error occurred"
    assert dp.get("/rt-method").status == 200  # still healthy


def test_request_transformer_replace_uri(dp):
    e = echo(dp.get("/rt-uri/ignored/rest?x=1&y=2"))
    # the path is replaced (escaped as set_path escapes it); the query stays
    assert e["target"] == "/replaced/a%20b?x=1&y=2"


def test_request_transformer_replace_uri_replaces_service_path(dp):
    e = echo(dp.get("/rt-uri-base/more"))
    assert e["target"] == "/replaced"


def test_request_transformer_relative_uri_is_an_error(dp):
    res = dp.get("/rt-uri-relative")
    assert res.status == 500
    assert res.json()["message"] == "An unexpected error occurred"


# ------------------------------------------------------------------ response-transformer


def test_response_transformer_headers(dp):
    qs = "&".join("resp_header=" + h for h in [
        "X-Rm:1", "X-Rm2:2", "X-Old:o", "X-Rep:old", "X-Exists:keep", "X-App:a1", "X-Other:u"])
    res = dp.get("/resp-headers?" + qs)
    assert from_upstream(res)
    assert res.header("X-Rm") is None
    assert res.header("X-Rm2") is None
    assert res.header("X-Old") is None
    assert res.header_all("X-New") == ["o"]
    assert res.header("X-Never") is None
    assert res.header_all("X-Rep") == ["new"]
    assert res.header("X-Rep-Absent") is None
    assert res.header_all("X-Add") == ["added"]
    assert res.header_all("X-Exists") == ["keep"]
    assert res.header_all("X-App") == ["a1", "a2"]
    assert res.header_all("X-App-New") == ["v"]
    assert res.header_all("X-Other") == ["u"]
    assert res.json()["method"] == "GET"  # the body is untouched


def test_response_transformer_without_upstream_headers(dp):
    res = dp.get("/resp-headers")
    assert res.header_all("X-Add") == ["added"]
    assert res.header_all("X-Exists") == ["not-added"]
    assert res.header_all("X-App") == ["a2"]
    assert res.header("X-Rep") is None and res.header("X-New") is None


def test_response_transformer_rename(dp):
    res = dp.get("/resp-rename?resp_header=X-Old:o&resp_header=X-New:overwritten")
    assert res.header_all("X-New") == ["o"]
    assert res.header("X-Old") is None


def test_response_transformer_rename_moves_every_value(dp):
    res = dp.get("/resp-rename?resp_header=X-Old:o1&resp_header=X-Old:o2")
    assert res.header_all("X-New") == ["o1", "o2"]


def test_response_transformer_decides_from_the_original_headers(dp):
    # Kong reads the headers once: replace still applies to a header that
    # remove took away, add does not add one that was there
    res = dp.get("/resp-snapshot?resp_header=X-Snap:1&resp_header=X-Gone:1")
    assert res.header_all("X-Snap") == ["back"]
    assert res.header("X-Gone") is None
    res = dp.get("/resp-snapshot")
    assert res.header("X-Snap") is None
    assert res.header_all("X-Gone") == ["new"]


# ------------------------------------------------------------- response-transformer: JSON bodies
#
# The body operations on upstream responses (held whole by the proxy for the
# plugin), sent through the echo upstream's /payload endpoint, which answers
# the exact body and Content-Type it is given.

JSON_ROUTES = [
    r("rj-ops", "/rj-ops", plugin("response-transformer", {
        "remove": {"json": ["rm", "rm2:ignored", "a.b", ":no-key"]},
        "rename": {"json": ["old:new", "absent:never", "self:self", "over:target"]},
        "replace": {"json": ["rep:R", "rep_absent:x", "rep_false:x", "rep_null:x"]},
        "add": {"json": ["added:A", "keep:not", "add_false:now", "add_null:not",
                         "colon:x:y", "multi::v"]},
        "append": {"json": ["app_str:a2", "app_arr:3", "app_num:n", "app_fresh:f",
                            "app_empty_obj:e", "app_obj:o", "app_null:x", "app_false:x"]},
    })),
    r("rj-types", "/rj-types", plugin("response-transformer", {
        "add": {
            "json": ["n:-1.5", "i:42", "hex:0x10", "big:1e20", "spaced: 7 ", "nan_text:abc",
                     "b_true:true", "b_other:yes", "s:5", "q:\"v\"", "empty:", "empty_num:",
                     "empty_bool:", "slash:a/b", "back:a\\b", "untyped:1"],
            "json_types": ["number", "number", "number", "number", "number", "number",
                           "boolean", "boolean", "string", "string", "string", "number",
                           "boolean", "string", "string"],
        },
        "replace": {"json": ["r:7"], "json_types": ["number"]},
        "append": {"json": ["a:true", "a:false"], "json_types": ["boolean", "boolean"]},
    })),
    r("rj-inf", "/rj-inf", plugin("response-transformer", {
        "add": {"json": ["ok:1", "x:inf"], "json_types": ["number", "number"]}})),
    r("rj-add", "/rj-add", plugin("response-transformer", {"add": {"json": ["added:yes"]}})),
    r("rj-ct-replace", "/rj-ct-replace", plugin("response-transformer", {
        "replace": {"headers": ["Content-Type:text/plain"]}, "add": {"json": ["added:yes"]}})),
    r("rj-ct-add", "/rj-ct-add", plugin("response-transformer", {
        "add": {"headers": ["Content-Type:application/json"], "json": ["added:yes"]}})),
    r("rj-ct-rename", "/rj-ct-rename", plugin("response-transformer", {
        "rename": {"headers": ["X-Real-Type:Content-Type"]}, "add": {"json": ["added:yes"]}})),
]


@pytest.fixture(scope="module")
def json_dp(module_sluice_factory, upstream):
    # long request lines: the nesting test sends its body in the query
    return module_sluice_factory(declarative([service("echo", upstream.url, routes=JSON_ROUTES)]),
                                 {"max_request_line": "32k"})


def body_of(dp, prefix, text, ct=None, method="GET"):
    """The response to the upstream answering `text` with Content-Type ct
    (default application/json, "" for none) behind the route at prefix."""
    target = "%s/payload?text=%s" % (prefix, urllib.parse.quote(text, safe=""))
    if ct is not None:
        target += "&ct=" + urllib.parse.quote(ct, safe="")
    res = dp.request(method, target)
    assert res.status == 200, res
    assert res.header_all("Content-Length") == [str(len(res.body))], res
    return res


def test_response_transformer_json_operations(json_dp):
    body = {
        "rm": 1, "rm2": 2, "a.b": 0, "a": {"b": 2},
        "old": "o", "self": "s", "over": "v", "target": "t",
        "rep": "r", "rep_false": False, "rep_null": None,
        "keep": "k", "add_false": False, "add_null": None,
        "app_str": "a1", "app_arr": [1, 2], "app_num": 5, "app_empty_obj": {},
        "app_obj": {"k": "v"}, "app_null": None, "app_false": False,
        "nested": {"rm": "stays", "old": "stays"},
    }
    res = body_of(json_dp, "/rj-ops", json.dumps(body))
    assert res.json() == {
        # remove: top-level keys only, a dot is part of the name, the text
        # after a colon is ignored
        "a": {"b": 2},
        # rename moves any value, replaces the target, and onto itself removes
        "new": "o", "target": "v",
        # replace needs a value that is there and not false (null counts)
        "rep": "R", "rep_false": False, "rep_null": "x",
        # add writes where the key is absent or false
        "added": "A", "keep": "k", "add_false": "now", "add_null": None,
        "colon": "x:y", "multi": "v",
        # append: a string becomes a list, a list grows, anything else is
        # replaced by a list of the value; an object gets it under "1"
        "app_str": ["a1", "a2"], "app_arr": [1, 2, "3"], "app_num": ["n"],
        "app_fresh": ["f"], "app_empty_obj": ["e"], "app_obj": {"k": "v", "1": "o"},
        "app_null": ["x"], "app_false": ["x"],
        "nested": {"rm": "stays", "old": "stays"},
    }


def test_response_transformer_json_types(json_dp):
    res = body_of(json_dp, "/rj-types", '{"r":"old","a":[1]}')
    assert res.json() == {
        "r": 7, "a": [1, True, False],
        "n": -1.5, "i": 42, "hex": 16, "big": 1e20, "spaced": 7,
        "b_true": True, "b_other": False,
        # strings keep what was written, quotes included; an empty value is
        # the text null, which is no number and a false boolean
        "s": "5", "q": '"v"', "empty": "null", "empty_bool": False,
        "slash": "a/b", "back": "a\\\\b", "untyped": "1",
    }
    # numbers as cjson writes them
    assert b'"i":42,' in res.body and b'"big":1e+20,' in res.body


def test_response_transformer_json_non_finite_number_leaves_the_body(json_dp):
    # cjson cannot encode inf: Kong's transform fails and the body goes out
    # as it came
    res = body_of(json_dp, "/rj-inf", '{"a": 1}')
    assert res.body == b'{"a": 1}'


def test_response_transformer_json_encoding(json_dp):
    text = ('{"url": "http://x/y", "u": "\u00e9", "ctl": "\\u0001\x7f", "n": 1.0, '
            '"big": 12345678901234567890, "small": 0.1, "neg": -0.0, "exp": 1E+2, '
            '"arr": [], "obj": {}, "esc": "q\\"b\\\\"}')
    res = body_of(json_dp, "/rj-add", text)
    # compact, '/' escaped, UTF-8 as is, numbers as doubles with 14 digits,
    # keys in their order with the new one last
    assert res.body == (
        '{"url":"http:\\/\\/x\\/y","u":"\u00e9","ctl":"\\u0001\\u007f","n":1,'
        '"big":1.2345678901235e+19,"small":0.1,"neg":-0,"exp":100,"arr":[],"obj":{},'
        '"esc":"q\\"b\\\\","added":"yes"}').encode()


def test_response_transformer_json_top_level_arrays_and_scalars(json_dp):
    res = body_of(json_dp, "/rj-add", '[1, "a/b", {"k": 2.50}]')
    assert res.body == b'[1,"a\\/b",{"k":2.5}]'
    for text in ['"a string"', "42", "null"]:
        assert body_of(json_dp, "/rj-add", text).body == text.encode()


@pytest.mark.parametrize("text", ['{"a":1,}', "not json", '{"a":1} trailing', "{",
                                  '{"a":"\\ud800"}', ""])
def test_response_transformer_invalid_json_passes_unchanged(json_dp, text):
    res = body_of(json_dp, "/rj-add", text)
    assert res.body == text.encode()


def test_response_transformer_json_nesting_limit(json_dp):
    # cjson decodes at most 1000 levels: deeper bodies stay as they are
    ok = '{"a":' + "[" * 999 + "]" * 999 + "}"
    res = body_of(json_dp, "/rj-add", ok)
    assert res.body == ('{"a":' + "[" * 999 + "]" * 999 + ',"added":"yes"}').encode()
    deep = '{"a":' + "[" * 1000 + "]" * 1000 + "}"
    assert body_of(json_dp, "/rj-add", deep).body == deep.encode()


@pytest.mark.parametrize("ct", [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=utf-8",
    "application/json ; charset=\"utf-8\"",
    "Application/JSON",
    "text/html, application/json",
])
def test_response_transformer_json_content_types(json_dp, ct):
    res = body_of(json_dp, "/rj-add", '{"a":1}', ct=ct)
    assert res.body == b'{"a":1,"added":"yes"}'
    assert res.header("Content-Type") == ct


@pytest.mark.parametrize("ct", [
    "", "text/plain", "text/json", "application/problem+json", "application/jsonx",
    "application/x-json", "application/json;", "application/json; charset",
])
def test_response_transformer_other_content_types_untouched(json_dp, ct):
    # Kong's is_json_body parses each media type: only application/json with
    # well-formed parameters qualifies
    res = body_of(json_dp, "/rj-add", '{"a":1}', ct=ct)
    assert res.body == b'{"a":1}'


def test_response_transformer_json_decided_by_the_final_content_type(json_dp):
    # Kong's body_filter runs after header_filter and reads the Content-Type
    # the plugin's own header operations left
    res = body_of(json_dp, "/rj-ct-replace", '{"a":1}')
    assert res.header("Content-Type") == "text/plain"
    assert res.body == b'{"a":1}'
    res = body_of(json_dp, "/rj-ct-add", '{"a":1}', ct="")
    assert res.header("Content-Type") == "application/json"
    assert res.body == b'{"a":1,"added":"yes"}'
    res = body_of(json_dp, "/rj-ct-add", '{"a":1}', ct="text/plain")
    assert res.header("Content-Type") == "text/plain"
    assert res.body == b'{"a":1}'
    target = "/rj-ct-rename/payload?ct=text/plain&resp_header=X-Real-Type:application/json&text="
    res = json_dp.get(target + urllib.parse.quote('{"a":1}'))
    assert res.header("X-Real-Type") is None
    assert res.header("Content-Type") == "application/json"
    assert res.body == b'{"a":1,"added":"yes"}'


# ------------------------------------------------------------------ ordering


def test_order_correlation_id_runs_before_request_transformer(dp):
    res = dp.get("/order", [("Origin", "http://a.example")])
    e = echo(res)
    # correlation-id (priority 100001) set the header before request-transformer
    # (801) renamed it
    renamed = up_one(res, "X-Renamed-Id")
    assert renamed and re.fullmatch("%s#\\d+" % UUID_RE, renamed), e["headers"]
    assert up_all(res, "Kong-Request-ID") == []
    # header_filter: correlation-id echoes, then response-transformer (800) renames
    assert res.header("Kong-Request-ID") is None
    assert res.header("X-Resp-Id") == renamed
    assert res.header("X-Resp-Added") == "yes"
    assert res.header("Access-Control-Allow-Origin") == "http://a.example"


def test_order_preflight_answered_by_cors(dp):
    # cors (2000) ends the access phase: correlation-id (100001) ran before it
    # and echoes its id on the preflight response; request-transformer (801)
    # never runs, but response-transformer (800) is still collected, as in
    # Kong, and its header_filter renames the echoed id on the answer
    res = preflight(dp, "/order")
    assert res.status == 200 and not from_upstream(res)
    rid = res.header("X-Resp-Id")
    assert rid and re.fullmatch("%s#\\d+" % UUID_RE, rid)
    assert res.header("Kong-Request-ID") is None
    assert res.header("X-Resp-Added") == "yes"
    assert res.header("Access-Control-Allow-Origin") == "http://a.example"
    assert res.header("Access-Control-Allow-Methods") == DEFAULT_METHODS


def test_order_correlation_id_on_cors_preflight(dp):
    res = preflight(dp, "/order-cid-cors", extra=[("Kong-Request-ID", "given")])
    assert res.status == 200 and not from_upstream(res)
    assert res.header("Kong-Request-ID") == "given"
    res = preflight(dp, "/order-cid-cors")
    assert re.fullmatch(UUID_RE, res.header("Kong-Request-ID") or "")


def test_header_filter_runs_on_gateway_errors(dp):
    # the upstream is down: the gateway's 502 still gets every collected
    # plugin's header_filter, as Kong's error pages do
    res = dp.get("/dead", [("Origin", "http://a.example")])
    assert res.status == 502
    assert res.header("Access-Control-Allow-Origin") == "http://a.example"
    assert res.header("X-On-Error") == "yes"
    assert re.fullmatch("%s#\\d+" % UUID_RE, res.header("Kong-Request-ID") or "")


# ------------------------------------------------------------------ request-transformer: bodies


FORM = "application/x-www-form-urlencoded"
JSON_BODY = "application/json"
MP = "multipart/form-data; boundary=Bnd-42"

ALL_BODY_OPS = {
    "remove": {"body": ["r1", "r2"]},
    "rename": {"body": ["o:n", "same:same", "missing:never"]},
    "replace": {"body": ["rep:R", "absent:X"]},
    "add": {"body": ["add:A", "keep:no"]},
    "append": {"body": ["app:2", "newapp:N"]},
}


@pytest.fixture(scope="module")
def body_echo():
    e = BodyEcho()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def bt(module_sluice_factory, body_echo):
    rt = "request-transformer"
    return module_sluice_factory(declarative([service("bodies", body_echo.url, routes=[
        r("bt-all", "/bt-all", plugin(rt, ALL_BODY_OPS)),
        r("bt-grow", "/bt-grow", plugin(rt, {"add": {"body": ["a:1"]},
                                             "append": {"body": ["b:2"]}})),
        r("bt-ct", "/bt-ct", plugin(rt, {"replace": {"headers": ["Content-Type:application/json"]},
                                         "add": {"body": ["x:1"]}})),
        r("bt-get", "/bt-get", plugin(rt, {"http_method": "GET",
                                           "add": {"querystring": ["added:1"]}})),
        r("bt-head", "/bt-head", plugin(rt, {"http_method": "HEAD"})),
        r("bt-post", "/bt-post", plugin(rt, {"http_method": "POST"})),
    ])]), {"client_body_buffer_size": "16k"})


def multipart(parts, boundary="Bnd-42"):
    """parts: (name, value) or (name, value, [extra header lines])."""
    out = b""
    for part in parts:
        hs = ['Content-Disposition: form-data; name="%s"' % part[0]]
        if len(part) > 2:
            hs = part[2]
        out += b"--%s\r\n" % boundary.encode()
        out += b"".join(h.encode() + b"\r\n" for h in hs) + b"\r\n" + part[1] + b"\r\n"
    return out + b"--%s--\r\n" % boundary.encode()


def send(dp, path, ctype, body, chunked=False, method="POST"):
    hs = [("Content-Type", ctype)] if ctype else []
    if chunked:
        hs.append(("Transfer-Encoding", "chunked"))
        body = h1.chunked_body([body[:len(body) // 2], body[len(body) // 2:]])
    e, got = echoed(dp.request(method, path, hs, body))
    assert echo_header(e, "Content-Length") == str(len(got))
    assert e["chunked"] is False
    return e, got


@pytest.mark.parametrize("chunked", [False, True])
def test_request_transformer_form_body(bt, chunked):
    e, got = send(bt, "/bt-all", FORM, b"r1=x&o=1&rep=old&keep=k&app=1&same=s&z=a+b%21&flag",
                  chunked)
    # remove, rename (in place), replace, add, append; the fields keep their
    # order and are encoded again as ngx.encode_args encodes them.
    assert got == b"n=1&rep=R&keep=k&app=1&app=2&same=s&z=a%20b%21&flag&add=A&newapp=N"


def test_request_transformer_form_body_details(bt):
    # A flag counts as present; append turns it into the value alone; rename
    # onto an existing field replaces it.
    _, got = send(bt, "/bt-all", FORM, b"app&keep&n=gone&o=moved&rep")
    assert got == b"app=2&keep&n=moved&rep=R&add=A&newapp=N"


def test_request_transformer_json_body(bt):
    body = (b'{"r1": 1, "o": {"deep": true}, "rep": "old", "keep": false, "app": "1", '
            b'"same": "s", "list": [1, 2.5, "x/y"], "num": 0.1}')
    e, got = send(bt, "/bt-all", JSON_BODY + "; charset=utf-8", body)
    assert json.loads(got) == {
        "n": {"deep": True}, "rep": "R", "keep": "no",  # false counts as absent for add
        "app": ["1", "2"], "same": "s", "list": [1, 2.5, "x/y"], "num": 0.1,
        "add": "A", "newapp": ["N"]}
    # cjson's compact writing: '/' escaped, 14 significant digits.
    assert b'"list":[1,2.5,"x\\/y"],"num":0.1,' in got


def test_request_transformer_json_append_and_replace_details(bt):
    _, got = send(bt, "/bt-all", JSON_BODY,
                  b'{"app": [1], "newapp": 5, "rep": null, "o": false}')
    # Appending to an array grows it, to a number replaces it; null is
    # truthy for replace (cjson.null); a false value is not renamed.
    assert json.loads(got) == {"app": [1, "2"], "newapp": ["N"], "rep": "R", "o": False,
                               "add": "A", "keep": "no"}


@pytest.mark.parametrize("ctype,body", [
    (JSON_BODY, b'{"r1": "not closed"'),        # not JSON
    ("text/plain", b"r1=x&o=1"),                 # another type
    (None, b"r1=x&o=1"),                         # no type
])
def test_request_transformer_body_left_alone(bt, ctype, body):
    _, got = send(bt, "/bt-all", ctype, body)
    assert got == body


def test_request_transformer_json_array_body(bt):
    # Names mean nothing to an array; Kong writes it out again all the same.
    _, got = send(bt, "/bt-all", JSON_BODY, b'[1, {"r1": 2}]')
    assert got == b'[1,{"r1":2}]'


def test_request_transformer_multipart_body(bt):
    file_headers = ['Content-Disposition: form-data; name="keep"; filename="k.txt"',
                    "Content-Type: text/plain"]
    body = multipart([("r1", b"x"), ("o", b"old\r\nvalue"), ("rep", b"old"),
                      ("keep", b"file data", file_headers), ("app", b"1"), ("same", b"s")])
    e, got = send(bt, "/bt-all", MP, body)
    # rename first (the new name at the end), remove, replace (moved to the
    # end), add; append does nothing to multipart bodies, as in Kong. Other
    # parts keep their headers.
    assert got == multipart([("keep", b"file data", file_headers), ("app", b"1"),
                             ("same", b"s"), ("n", b"old\r\nvalue"), ("rep", b"R"),
                             ("add", b"A")])
    assert echo_header(e, "Content-Type") == MP


def test_request_transformer_multipart_without_boundary(bt):
    body = multipart([("r1", b"x")])
    _, got = send(bt, "/bt-all", "multipart/form-data", body)
    assert got == body


@pytest.mark.parametrize("ctype,expected", [
    (JSON_BODY, b'{"a":"1","b":["2"]}'),
    (FORM, b"a=1&b=2"),
    (MP, b'--Bnd-42\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--Bnd-42--\r\n'),
])
def test_request_transformer_empty_body_grows(bt, ctype, expected):
    # add and append need no body; remove, rename and replace do.
    _, got = send(bt, "/bt-grow", ctype, b"")
    assert got == expected
    _, got = send(bt, "/bt-all", ctype, b"")
    if ctype == JSON_BODY:
        assert json.loads(got) == {"add": "A", "keep": "no", "app": ["2"], "newapp": ["N"]}


def test_request_transformer_body_follows_header_operations(bt):
    # Headers are transformed first: the body is read by the new Content-Type.
    e, got = send(bt, "/bt-ct", "text/plain", b'{"y": 2}')
    assert json.loads(got) == {"y": 2, "x": "1"}
    assert echo_header(e, "Content-Type") == "application/json"


def test_request_transformer_form_fields_move_to_query_for_get(bt):
    body = b"f=bv&n=1&n=2&flag&sp=a+b"
    e, got = send(bt, "/bt-get?q=0&f=qv", FORM, body)
    assert e["method"] == "GET"
    # Appended after the query's own values, written sorted (set_query);
    # then the query operations run on the result.
    assert e["target"] == "/?added=1&f=qv&f=bv&flag&n=1&n=2&q=0&sp=a%20b"
    assert got == body  # the body still goes upstream
    e, got = send(bt, "/bt-head?x=1", FORM, b"y=2", method="POST")
    assert e["method"] == "HEAD" and e["target"] == "/?x=1&y=2"
    # Not for other body types.
    e, _ = send(bt, "/bt-get?q=0", JSON_BODY, b'{"f": "bv"}')
    assert e["target"] == "/?added=1&q=0"


def test_request_transformer_other_methods_leave_query(bt):
    e, got = send(bt, "/bt-post?q=0", FORM, b"f=bv", method="PUT")
    assert e["method"] == "POST" and e["target"] == "/?q=0"
    assert got == b"f=bv"


def test_request_transformer_body_over_buffer_size(bt):
    resp = bt.request("POST", "/bt-all", [("Content-Type", FORM)], b"a=" + b"x" * 20000)
    assert resp.status == 413, resp


def test_request_transformer_without_body_operations_streams(dp):
    """wants_body only with body operations (or a GET/HEAD/TRACE method):
    other instances leave the body streaming (chunked stays chunked)."""
    res = dp.request("POST", "/rt-method", [("Transfer-Encoding", "chunked")],
                     h1.chunked_body([b"a" * 10, b"b" * 10]))
    e = echo(res)
    assert e["chunked"] is True and e["body_len"] == 20


# ------------------------------------------------------------------ configs refused at load


def check(tmp_path, plugins):
    conf = tmp_path / "sluice.conf"
    conf.write_text("proxy_listen = 127.0.0.1:0\nstatus_listen = off\nworkers = 1\n")
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(declarative(
        [service("s", "http://127.0.0.1:9", routes=[route("r", paths=["/"])])],
        plugins=plugins)))
    return run_dp(["-c", conf, "-p", tmp_path, "-t", "--declarative", path])


def assert_refused(res, *words):
    assert res.returncode == 2, "exit %r; stderr:\n%s" % (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if all(w in ln for w in words)]
    assert lines, "no line with %r in:\n%s" % (words, res.stderr)


def test_good_config_passes_the_check(tmp_path):
    first = {}
    for rt in ROUTES:
        for p in rt["plugins"]:
            first.setdefault(p["name"], p)
    assert len(first) == 4
    res = check(tmp_path, list(first.values()))
    assert res.returncode == 0, res.stderr


def test_request_transformer_body_operations_accepted(tmp_path):
    config = {op: {"body": ["a" if op == "remove" else "a:b"]}
              for op in ("remove", "rename", "replace", "add", "append")}
    res = check(tmp_path, [plugin("request-transformer", config)])
    assert res.returncode == 0, res.stderr


def test_request_transformer_body_value_required(tmp_path):
    res = check(tmp_path, [plugin("request-transformer", {"add": {"body": ["a"]}})])
    assert_refused(res, "config.add.body[0]", "has no value")


@pytest.mark.parametrize("field,config", [
    ("config.add.headers[1]", {"add": {"headers": ["X-A:1", "X-T:$(headers.host)"]}}),
    ("config.append.headers[0]", {"append": {"headers": ["X-T:pre-$(query_params.a)"]}}),
    ("config.replace.querystring[0]", {"replace": {"querystring": ["q:$(uri_captures.x)"]}}),
    ("config.rename.querystring[0]", {"rename": {"querystring": ["q:$(x)"]}}),
    ("config.replace.uri", {"replace": {"uri": "/v2/$(uri_captures.id)"}}),
    ("config.add.body[0]", {"add": {"body": ["b:$(query_params.b)"]}}),
])
def test_request_transformer_templates_refused(tmp_path, field, config):
    res = check(tmp_path, [plugin("request-transformer", config)])
    assert_refused(res, field, "templates are not supported yet")


def test_response_transformer_json_config_accepted(tmp_path):
    res = check(tmp_path, [plugin("response-transformer", {
        "remove": {"json": ["a", ":no-key"]},
        "rename": {"json": ["b:c"]},
        "replace": {"json": ["d:1"], "json_types": ["number"]},
        "add": {"json": ["e:true", "f:"], "json_types": ["boolean"]},
        "append": {"json": ["g:x"], "json_types": ["string", "number"]},
    })])
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("field,config", [
    ("config.add.json", {"add": {"json": "a:b"}}),
    ("config.add.json[1]", {"add": {"json": ["a:b", "no-colon"]}}),
    ("config.rename.json[0]", {"rename": {"json": ["a"]}}),
    ("config.replace.json[0]", {"replace": {"json": [7]}}),
    ("config.append.json_types[0]", {"append": {"json": ["a:1"], "json_types": ["integer"]}}),
    ("config.add.json_types", {"add": {"json_types": "number"}}),
])
def test_response_transformer_bad_json_config_refused(tmp_path, field, config):
    res = check(tmp_path, [plugin("response-transformer", config)])
    assert_refused(res, field)


def test_cors_bad_regex_refused(tmp_path):
    res = check(tmp_path, [plugin("cors", {"origins": ["http://ok.example", "(unclosed"]})])
    assert_refused(res, "config.origins[1]", "regex")


def test_correlation_bad_generator_refused(tmp_path):
    res = check(tmp_path, [plugin("correlation-id", {"generator": "sequence"})])
    assert_refused(res, "config.generator")


def test_request_transformer_bad_header_refused(tmp_path):
    res = check(tmp_path, [plugin("request-transformer",
                                  {"rename": {"headers": ["X-A:bad name"]}})])
    assert_refused(res, "config.rename.headers[0]")
