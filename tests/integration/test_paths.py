"""Upstream path construction (kong-compat.md 5.5): strip_path, path_handling
v0 and v1, regex prefixes, postfix sanitising, query passthrough; and the
upstream Host with and without preserve_host (5.6).

The expectations come from two places: the literal table of the reference,
and a port of Kong's own functions (kong/router/utils.lua get_upstream_uri for
v0, kong/router/traditional.lua for v1) applied to a matrix of service paths,
route paths and requests.
"""

import itertools

import pytest

from conftest import declarative, route, service


def sanitize_postfix(p):
    if p in (".", ".."):
        return ""
    if p.startswith("./"):
        return p[2:]
    if p.startswith("../"):
        return p[3:]
    return p


def kong_v0(base, strip, prefix, req):
    """Kong's get_upstream_uri (v0)."""
    base = base or "/"
    postfix = sanitize_postfix(req[len(prefix):]) if strip else req[1:]
    if base.endswith("/"):
        if strip:
            if postfix == "":
                if base == "/":
                    return "/"
                return base if req.endswith("/") else base[:-1]
            if postfix.startswith("/"):
                return base[:-1] + postfix
            return base + postfix
        return base + req[1:]
    if strip:
        if postfix == "":
            return base + "/" if len(req) > 1 and req.endswith("/") else base
        if postfix.startswith("/"):
            return base + postfix
        return base + "/" + postfix
    return base if req == "/" else base + req


def kong_v1(base, strip, prefix, req):
    """Kong's traditional router, path_handling = v1."""
    base = base or "/"
    if strip:
        postfix = req[len(prefix):]
        if base.endswith("/") and postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix
    return base + req[1:]


BASES = [None, "/", "/fee/bor", "/fee/bor/"]
ROUTE_PATHS = ["/", "/foo/bar", "/foo/bar/"]
REQUESTS = ["/", "/foo/bar", "/foo/bar/", "/foo/bar/baz", "/foo/barbaz"]

MATRIX_ROUTES = []  # (host, base, route_path, strip, handling)
for i, (base, rpath, strip, handling) in enumerate(
        itertools.product(BASES, ROUTE_PATHS, [True, False], ["v0", "v1"])):
    MATRIX_ROUTES.append(("m%d.paths.test" % i, base, rpath, strip, handling))

MATRIX_CASES = []
for host, base, rpath, strip, handling in MATRIX_ROUTES:
    for req in REQUESTS:
        if req.startswith(rpath):
            fn = kong_v0 if handling == "v0" else kong_v1
            MATRIX_CASES.append((host, base, rpath, strip, handling, req,
                                 fn(base, strip, rpath, req)))

# The reference's literal table: service.path, route path, request, strip, v0, v1.
TABLE = [
    ("/s", "/fv0", "/fv0req", True, "/s/req", "/sreq"),
    ("/s", "/fv0", "/fv0req", False, "/s/fv0req", "/sfv0req"),
    ("/s", "/fv0", "/fv0/req", True, "/s/req", "/s/req"),
    ("/s", "/fv0", "/fv0/req", False, "/s/fv0/req", "/sfv0/req"),
    ("/s/", "/fv0", "/fv0req", True, "/s/req", "/s/req"),
    (None, "/api", "/api/users", True, "/users", "/users"),
    (None, "/api", "/api", True, "/", "/"),
    ("/s", "/api", "/api/", True, "/s/", "/s/"),
]

TABLE_ROUTES = []  # (host, base, route_path, strip, handling)
TABLE_CASES = []
for i, (base, rpath, req, strip, v0, v1) in enumerate(TABLE):
    for handling, expected in (("v0", v0), ("v1", v1)):
        host = "t%d-%s.paths.test" % (i, handling)
        TABLE_ROUTES.append((host, base, rpath, strip, handling))
        TABLE_CASES.append((host, req, expected))


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    services = []
    for n, (host, base, rpath, strip, handling) in enumerate(MATRIX_ROUTES + TABLE_ROUTES):
        url = upstream.url + (base or "")
        services.append(service("svc%d" % n, url, routes=[route(
            "r%d" % n, hosts=[host], paths=[rpath], strip_path=strip,
            path_handling=handling)]))
    services += [
        service("q", upstream.url, routes=[route("q", hosts=["q.paths.test"], paths=["/api"])]),
        service("dots", upstream.url + "/s",
                routes=[route("dots", hosts=["dots.paths.test"], paths=["/api"])]),
        service("rx", upstream.url + "/s", routes=[
            route("rx", hosts=["rx.paths.test"], paths=[r"~/items/(?<id>\d+)"]),
            route("rx_nostrip", hosts=["rxn.paths.test"], paths=[r"~/items/\d+"],
                  strip_path=False)]),
        service("ph", upstream.url, routes=[
            route("ph_on", hosts=["preserve.test"], preserve_host=True),
            route("ph_off", hosts=["nopreserve.test"], preserve_host=False),
            route("ph_default", hosts=["default.test"])]),
    ]
    return module_sluice_factory(declarative(services))


def target(dp, path, host):
    resp = dp.get(path, host=host)
    assert resp.status == 200, resp
    return resp.json()["target"]


@pytest.mark.parametrize(
    "host,base,rpath,strip,handling,req,expected", MATRIX_CASES,
    ids=["base=%s route=%s strip=%s %s req=%s" % (c[1], c[2], c[3], c[4], c[5])
         for c in MATRIX_CASES])
def test_path_matrix(dp, host, base, rpath, strip, handling, req, expected):
    assert target(dp, req, host) == expected


@pytest.mark.parametrize("host,req,expected", TABLE_CASES,
                         ids=["%s %s" % (c[0], c[1]) for c in TABLE_CASES])
def test_reference_table(dp, host, req, expected):
    assert target(dp, req, host) == expected


@pytest.mark.parametrize("req,expected", [
    ("/api/users?a=1&b=%20x&c", "/users?a=1&b=%20x&c"),
    ("/api/users?", "/users?"),
    ("/api?x=1", "/?x=1"),
    ("/api/users?redirect=/a/b%2F&e=%E2%82%AC", "/users?redirect=/a/b%2F&e=%E2%82%AC"),
    ("/api/a%20b", "/a%20b"),
    ("/api/a%2Fb", "/a%2Fb"),
])
def test_query_and_encoding_passthrough(dp, req, expected):
    assert target(dp, req, "q.paths.test") == expected


@pytest.mark.parametrize("req,expected", [
    ("/api./x", "/s/x"),
    ("/api../x", "/s/x"),
    ("/api.", "/s"),
    ("/api..", "/s"),
])
def test_postfix_dot_sanitising(dp, req, expected):
    assert target(dp, req, "dots.paths.test") == expected


@pytest.mark.parametrize("host,req,expected", [
    ("rx.paths.test", "/items/42", "/s"),
    ("rx.paths.test", "/items/42/", "/s/"),
    ("rx.paths.test", "/items/42/detail", "/s/detail"),
    ("rx.paths.test", "/items/42abc", "/s/abc"),
    ("rx.paths.test", "/items/42/detail?v=1", "/s/detail?v=1"),
    ("rxn.paths.test", "/items/42/detail", "/s/items/42/detail"),
])
def test_regex_route_paths(dp, host, req, expected):
    assert target(dp, req, host) == expected


def upstream_host_header(dp, host):
    resp = dp.get("/", host=host)
    assert resp.status == 200, resp
    hosts = [v for k, v in resp.json()["headers"] if k.lower() == "host"]
    assert len(hosts) == 1, resp.json()["headers"]
    return hosts[0]


def test_preserve_host_true(dp):
    assert upstream_host_header(dp, "preserve.test") == "preserve.test"


def test_preserve_host_true_keeps_port(dp):
    assert upstream_host_header(dp, "preserve.test:1234") == "preserve.test:1234"


@pytest.mark.parametrize("host", ["nopreserve.test", "default.test"])
def test_preserve_host_false_uses_service_host_and_port(dp, upstream, host):
    assert upstream_host_header(dp, host) == "%s:%d" % (upstream.host, upstream.port)
