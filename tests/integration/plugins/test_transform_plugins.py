"""cors, correlation-id, request-transformer and response-transformer as the
data plane runs them (Kong 3.10's handlers): a real sluice-dp on a DB-less
file, the echo upstream showing what went upstream (headers, method, target)
and sending the response headers it is asked for (?resp_header=Name:Value).

Covered: cors preflight vs actual request, exact / regex / "*" origins,
normalised ports, credentials, Vary, preflight_continue, allow_origin_absent,
private network; correlation-id's three generators, a kept incoming id,
echo_downstream; request-transformer's header and query operations in
Kong's order, Host handling, method and uri replacement; response-
transformer's header operations (with Kong's snapshot semantics) on upstream
and plugin-made responses; the order of plugins across phases; configs that
are refused at load with a message naming the field.
"""

import json
import os
import re
import time
import uuid

import pytest

from conftest import declarative, free_port, route, run_dp, service

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
    # and response-transformer (800) were never reached, so they change nothing
    res = preflight(dp, "/order")
    assert res.status == 200 and not from_upstream(res)
    rid = res.header("Kong-Request-ID")
    assert rid and re.fullmatch("%s#\\d+" % UUID_RE, rid)
    assert res.header("X-Resp-Id") is None
    assert res.header("X-Resp-Added") is None
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


@pytest.mark.parametrize("op", ["remove", "rename", "replace", "add", "append"])
def test_request_transformer_body_refused(tmp_path, op):
    item = "a" if op == "remove" else "a:b"
    res = check(tmp_path, [plugin("request-transformer", {op: {"body": [item]}})])
    assert_refused(res, "config.%s.body" % op, "not supported yet")


@pytest.mark.parametrize("field,config", [
    ("config.add.headers[1]", {"add": {"headers": ["X-A:1", "X-T:$(headers.host)"]}}),
    ("config.append.headers[0]", {"append": {"headers": ["X-T:pre-$(query_params.a)"]}}),
    ("config.replace.querystring[0]", {"replace": {"querystring": ["q:$(uri_captures.x)"]}}),
    ("config.rename.querystring[0]", {"rename": {"querystring": ["q:$(x)"]}}),
    ("config.replace.uri", {"replace": {"uri": "/v2/$(uri_captures.id)"}}),
])
def test_request_transformer_templates_refused(tmp_path, field, config):
    res = check(tmp_path, [plugin("request-transformer", config)])
    assert_refused(res, field, "templates are not supported yet")


@pytest.mark.parametrize("op", ["remove", "rename", "replace", "add", "append"])
def test_response_transformer_json_refused(tmp_path, op):
    item = "a" if op == "remove" else "a:b"
    res = check(tmp_path, [plugin("response-transformer", {op: {"json": [item]}})])
    assert_refused(res, "config.%s.json" % op, "not supported yet")


def test_response_transformer_json_types_alone_accepted(tmp_path):
    res = check(tmp_path, [plugin("response-transformer", {"add": {"json_types": ["number"]}})])
    assert res.returncode == 0, res.stderr


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
