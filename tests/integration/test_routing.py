"""Router matrix: hosts (exact, wildcard, with port), paths (prefix, regex,
captures, normalisation), methods, headers, Kong's priority rules
(kong-compat.md 5.3, 5.4) and the 404 answer.

Every route has its own service whose path is /r/<route name>, so the path the
upstream receives tells which route matched.
"""

import json
import re

import pytest

from conftest import SERVER_RE, declarative, route, service

ROUTES = [
    # hosts
    route("h_exact", hosts=["exact.test"]),
    route("h_port", hosts=["ported.test:8123"]),
    route("h_port80", hosts=["default-port.test:80"]),
    route("h_wild_left", hosts=["*.wild.test"]),
    route("h_wild_right", hosts=["wildright.*"]),
    route("h_multi", hosts=["one.test", "two.test"]),
    # paths
    route("p_prefix", paths=["/prefix"]),
    route("p_multi", paths=["/m1", "/m2"]),
    route("p_regex", paths=[r"~/users/\d+$"]),
    route("p_regex_cap", paths=[r"~/items/(?<id>\d+)"]),
    route("p_anchor", paths=["~/anch"]),
    # methods
    route("m_get", paths=["/meth"], methods=["GET", "HEAD"]),
    route("m_post", paths=["/meth"], methods=["POST"]),
    # headers
    route("hd_one", paths=["/hdr"], headers={"x-version": ["v1", "v2"]}),
    route("hd_re", paths=["/hdr"], headers={"x-re": ["~*^ab+c$"]}),
    # priority 1: more fields beat fewer
    route("pr_path", paths=["/prio1"]),
    route("pr_path_host", paths=["/prio1"], hosts=["prio.test"]),
    # priority 2: plain host beats wildcard host
    route("pr_wild", paths=["/prio2"], hosts=["*.prio2.test"]),
    route("pr_plain", paths=["/prio2"], hosts=["api.prio2.test"]),
    # priority 3: more header conditions win
    route("pr_h1", paths=["/prio3"], headers={"x-a": ["1"]}),
    route("pr_h2", paths=["/prio3"], headers={"x-a": ["1"], "x-b": ["1"]}),
    # priority 4: a regex path beats even a longer prefix
    route("pr_prefix_long", paths=["/prio4/long/prefix/here"]),
    route("pr_regex", paths=["~/prio4/"]),
    # priority 5/6: regex_priority decides between regexes
    route("pr_rp_low", paths=[r"~/prio5/\w+"], regex_priority=0),
    route("pr_rp_high", paths=["~/prio5/foo"], regex_priority=10),
    route("pr_rp6_broad", paths=[r"~/prio6/\w+"], regex_priority=20),
    route("pr_rp6_narrow", paths=["~/prio6/foo"], regex_priority=0),
    # priority 7: longest prefix wins
    route("pr_lp_short", paths=["/prio7"]),
    route("pr_lp_long", paths=["/prio7/deeper"]),
    # priority 8: methods + paths beats paths
    route("pr_m_path", paths=["/prio8"]),
    route("pr_m_meth", paths=["/prio8"], methods=["DELETE"]),
    # priority 9: each path of a route has its own priority
    route("pr_multi_a", paths=["/prio9", "/prio9/a/b/c"]),
    route("pr_multi_b", paths=["/prio9/a"]),
    # protocols: an https-only route reached over http
    route("https_only", paths=["/https-only"], protocols=["https"]),
]


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    services = [service("s_" + r["name"], "%s/r/%s" % (upstream.url, r["name"]), routes=[r])
                for r in ROUTES]
    return module_sluice_factory(declarative(services))


def which(resp):
    """The name of the route that served resp, or its status when not 200."""
    if resp.status != 200:
        return resp.status
    target = resp.json()["target"]
    m = re.match(r"^/r/([^/?]+)", target)
    assert m, "unexpected upstream target %r" % target
    return m.group(1)


CASES = [
    # method, path, host, headers, expected route (or status)
    # --- exact hosts: compared with and without the port
    ("GET", "/x", "exact.test", [], "h_exact"),
    ("GET", "/x", "exact.test:1234", [], "h_exact"),
    ("GET", "/x", "other.test", [], 404),
    ("GET", "/x", "sub.exact.test", [], 404),
    # --- host with a port: the port must match; the default port is filled in
    ("GET", "/x", "ported.test:8123", [], "h_port"),
    ("GET", "/x", "ported.test:9999", [], 404),
    ("GET", "/x", "ported.test", [], 404),
    ("GET", "/x", "default-port.test", [], "h_port80"),
    ("GET", "/x", "default-port.test:80", [], "h_port80"),
    ("GET", "/x", "default-port.test:8080", [], 404),
    # --- wildcards: leftmost and rightmost, any port when none is given
    ("GET", "/x", "a.wild.test", [], "h_wild_left"),
    ("GET", "/x", "a.b.wild.test", [], "h_wild_left"),
    ("GET", "/x", "a.wild.test:7777", [], "h_wild_left"),
    ("GET", "/x", "wild.test", [], 404),
    ("GET", "/x", "wildright.org", [], "h_wild_right"),
    ("GET", "/x", "wildright.co.uk", [], "h_wild_right"),
    ("GET", "/x", "wildright", [], 404),
    ("GET", "/x", "one.test", [], "h_multi"),
    ("GET", "/x", "two.test", [], "h_multi"),
    # --- prefix paths
    ("GET", "/prefix", "any.test", [], "p_prefix"),
    ("GET", "/prefixed", "any.test", [], "p_prefix"),
    ("GET", "/prefix/a/b", "any.test", [], "p_prefix"),
    ("GET", "/prefix?q=1", "any.test", [], "p_prefix"),
    ("GET", "/prefi", "any.test", [], 404),
    ("GET", "/x/prefix", "any.test", [], 404),
    ("GET", "/m1", "any.test", [], "p_multi"),
    ("GET", "/m2/z", "any.test", [], "p_multi"),
    # --- normalisation before matching: unreserved percent-decoding, dot segments
    ("GET", "/%70refix", "any.test", [], "p_prefix"),
    ("GET", "/foo/../prefix", "any.test", [], "p_prefix"),
    ("GET", "/./prefix/x", "any.test", [], "p_prefix"),
    # --- regex paths: anchored at the start only, $ honoured
    ("GET", "/users/123", "any.test", [], "p_regex"),
    ("GET", "/users/abc", "any.test", [], 404),
    ("GET", "/users/123/x", "any.test", [], 404),
    ("GET", "/items/42/detail", "any.test", [], "p_regex_cap"),
    ("GET", "/anch/x", "any.test", [], "p_anchor"),
    ("GET", "/x/anch", "any.test", [], 404),
    # --- methods
    ("GET", "/meth", "any.test", [], "m_get"),
    ("POST", "/meth", "any.test", [], "m_post"),
    ("PUT", "/meth", "any.test", [], 404),
    # --- headers: any of the values, case-insensitive; ~* regex
    ("GET", "/hdr", "any.test", [("x-version", "v1")], "hd_one"),
    ("GET", "/hdr", "any.test", [("X-Version", "V2")], "hd_one"),
    ("GET", "/hdr", "any.test", [("x-version", "v3")], 404),
    ("GET", "/hdr", "any.test", [], 404),
    ("GET", "/hdr", "any.test", [("x-re", "abbbc")], "hd_re"),
    ("GET", "/hdr", "any.test", [("X-RE", "ABC")], "hd_re"),
    ("GET", "/hdr", "any.test", [("x-re", "ac")], 404),
    # --- priorities
    ("GET", "/prio1", "prio.test", [], "pr_path_host"),
    ("GET", "/prio1", "other.test", [], "pr_path"),
    ("GET", "/prio2", "api.prio2.test", [], "pr_plain"),
    ("GET", "/prio2", "www.prio2.test", [], "pr_wild"),
    ("GET", "/prio3", "any.test", [("x-a", "1"), ("x-b", "1")], "pr_h2"),
    ("GET", "/prio3", "any.test", [("x-a", "1")], "pr_h1"),
    ("GET", "/prio4/long/prefix/here/x", "any.test", [], "pr_regex"),
    ("GET", "/prio4/other", "any.test", [], "pr_regex"),
    ("GET", "/prio5/foo", "any.test", [], "pr_rp_high"),
    ("GET", "/prio5/bar", "any.test", [], "pr_rp_low"),
    ("GET", "/prio6/foo", "any.test", [], "pr_rp6_broad"),
    ("GET", "/prio7/deeper/x", "any.test", [], "pr_lp_long"),
    ("GET", "/prio7/other", "any.test", [], "pr_lp_short"),
    ("GET", "/prio7deeper", "any.test", [], "pr_lp_short"),
    ("DELETE", "/prio8", "any.test", [], "pr_m_meth"),
    ("GET", "/prio8", "any.test", [], "pr_m_path"),
    ("GET", "/prio9/a/b/c/d", "any.test", [], "pr_multi_a"),
    ("GET", "/prio9/a/x", "any.test", [], "pr_multi_b"),
    ("GET", "/prio9/z", "any.test", [], "pr_multi_a"),
]


@pytest.mark.parametrize("method,path,host,headers,expected", CASES,
                         ids=["%s %s Host:%s %s" % (c[0], c[1], c[2], c[3]) for c in CASES])
def test_route_matrix(dp, method, path, host, headers, expected):
    resp = dp.request(method, path, headers, host=host)
    assert which(resp) == expected, resp


def test_regex_strip_uses_match_end(dp):
    """strip_path with a regex route strips what the regex matched."""
    resp = dp.get("/items/42/detail?x=1", host="any.test")
    assert resp.status == 200
    assert resp.json()["target"] == "/r/p_regex_cap/detail?x=1"


def test_all_routes_on_one_keepalive_connection(dp):
    """Routing is per request, not per connection."""
    with dp.conn() as c:
        for method, path, host, headers, expected in CASES[:30]:
            resp = c.request(method, path, headers, host=host)
            assert which(resp) == expected, (method, path, host, resp)


def check_404(resp):
    assert resp.status == 404
    ctype = resp.header("content-type") or ""
    assert ctype.startswith("application/json"), resp
    body = resp.json()
    assert body["message"] == "no Route matched with those values"
    assert set(body) <= {"message", "request_id"}, body
    assert re.match(SERVER_RE, resp.header("server") or ""), resp
    assert resp.has("x-kong-response-latency"), resp
    assert int(resp.header("x-kong-response-latency")) >= 0
    assert not resp.has("x-kong-upstream-latency")


def test_404_body_and_headers(dp):
    check_404(dp.get("/nothing-here", host="nowhere.test"))


def test_404_keeps_connection_usable(dp):
    with dp.conn() as c:
        check_404(c.request("GET", "/nothing", host="nowhere.test"))
        assert which(c.request("GET", "/prefix", host="any.test")) == "p_prefix"


def test_404_head_has_no_body(dp):
    with dp.conn() as c:
        resp = c.request("HEAD", "/nothing", host="nowhere.test")
        assert resp.status == 404 and resp.body == b""
        assert which(c.request("GET", "/prefix", host="any.test")) == "p_prefix"


def test_https_only_route_over_http_gives_426(dp):
    resp = dp.get("/https-only", host="any.test")
    assert resp.status == 426, resp
    assert resp.json()["message"] == "Please use HTTPS protocol"


def test_empty_route_set_answers_404(sluice_factory):
    dp = sluice_factory(declarative([]))
    check_404(dp.get("/"))


def test_top_level_routes_reference_service_by_name(sluice_factory, upstream):
    dp = sluice_factory(declarative(
        [service("named", upstream.url + "/named")],
        routes=[route("toplevel", paths=["/top"], service="named")]))
    resp = dp.get("/top/x")
    assert resp.status == 200
    assert resp.json()["target"] == "/named/x"


def test_service_by_protocol_host_port_path(sluice_factory, upstream):
    dp = sluice_factory(declarative([{
        "name": "parts", "protocol": "http", "host": upstream.host, "port": upstream.port,
        "path": "/parts", "routes": [route("r", paths=["/p"])]}]))
    resp = dp.get("/p/y")
    assert resp.status == 200
    assert resp.json()["target"] == "/parts/y"


def test_yaml_declarative(sluice_factory, upstream):
    text = """\
_format_version: "3.0"
services:
- name: yaml-svc
  url: %s/yaml
  routes:
  - name: yaml-route
    paths:
    - /y
    - "~/ry/\\\\d+$"
""" % upstream.url
    dp = sluice_factory(text)
    assert dp.get("/y/1").json()["target"] == "/yaml/1"
    assert dp.get("/ry/12").status == 200
    assert dp.get("/ry/ab").status == 404


def test_json_body_of_request_does_not_affect_routing(dp):
    body = json.dumps({"path": "/prefix"}).encode()
    resp = dp.request("POST", "/nothing", [("Content-Type", "application/json")], body,
                      host="nowhere.test")
    assert resp.status == 404
