"""Authentication and authorisation plugins on a real sluice-dp (DB-less):
key-auth, basic-auth and acl, with Kong 3.10's statuses, messages, response
headers and the headers the upstream receives (X-Consumer-*,
X-Credential-Identifier, X-Anonymous-Consumer, X-Consumer-Groups).

key-auth's key_in_body has its own data plane in front of an upstream that
echoes bodies (body_echo.py): keys in form, JSON and multipart bodies
(Content-Length or chunked), duplicates and non-string values, the order
header, query, body, and hide_credentials re-encoding the body as Kong's
kong.service.request.set_body does.

Most tests share one data plane whose routes each carry one plugin setup;
the global-scope tests start their own. Bad configurations are checked with
`sluice-dp -t`, which must exit 2 naming the field.
"""

import base64
import hashlib
import json

import pytest

import h1
from plugins.body_echo import BodyEcho, echoed
from plugins.body_echo import header as echo_header
from conftest import declarative, route, run_dp, service

JSON_CT = "application/json; charset=utf-8"

ALICE = "1b6a4f4e-0c59-4d8e-9d61-3b3f0f2a0a01"
BOB = "1b6a4f4e-0c59-4d8e-9d61-3b3f0f2a0a02"
CAROL = "1b6a4f4e-0c59-4d8e-9d61-3b3f0f2a0a03"
ANON = "1b6a4f4e-0c59-4d8e-9d61-3b3f0f2a0a09"
ALICE_KEY_ID = "2c7b5a5f-1d6a-4e9f-8e72-4c4a1a3b1b01"
BOB_KEY_ID = "2c7b5a5f-1d6a-4e9f-8e72-4c4a1a3b1b02"
CAROL_KEY_ID = "2c7b5a5f-1d6a-4e9f-8e72-4c4a1a3b1b03"
ALICE_BASIC_ID = "3d8c6b60-2e7b-4fa0-9f83-5d5b2b4c2c01"
BOB_BASIC_ID = "3d8c6b60-2e7b-4fa0-9f83-5d5b2b4c2c02"

ALICE_PASS = "correct horse"
BOB_PASS = "p:a:ss w\u00f6rd"  # a colon and non-ASCII in a password are fine

CONSUMER_HEADERS = ["X-Consumer-ID", "X-Consumer-Username", "X-Consumer-Custom-ID",
                    "X-Credential-Identifier", "X-Anonymous-Consumer"]


# ------------------------------------------------------------------ helpers


def plugin(name, config=None, **scope):
    p = {"name": name, "config": config or {}}
    p.update(scope)
    return p


def consumers():
    """alice (gold, silver), bob (bronze), carol (no group), anonymous (guest):
    credentials both nested under consumers and as top-level tables."""
    return [
        {"id": ALICE, "username": "alice", "custom_id": "alice-custom",
         "keyauth_credentials": [{"id": ALICE_KEY_ID, "key": "alice-key"}],
         "basicauth_credentials": [{"id": ALICE_BASIC_ID, "username": "alice-basic",
                                    "password": ALICE_PASS}],
         "acls": [{"group": "gold"}, {"group": "silver"}]},
        {"id": BOB, "username": "bob"},
        {"id": CAROL, "username": "carol",
         "keyauth_credentials": [{"id": CAROL_KEY_ID, "key": "carol-key"}]},
        {"id": ANON, "username": "anonymous-user", "acls": [{"group": "guest"}]},
    ]


LONG_KEY = "k" * 1000  # Kong puts no limit on a key's length
LONG_USER = "u" * 1000


def top_level_tables():
    return {
        "keyauth_credentials": [{"id": BOB_KEY_ID, "key": "bob-key", "consumer": BOB},
                                {"key": LONG_KEY, "consumer": CAROL}],
        "basicauth_credentials": [{"id": BOB_BASIC_ID, "username": "bob", "password": BOB_PASS,
                                   "consumer": BOB},
                                  {"username": LONG_USER, "password": "pw", "consumer": CAROL}],
        "acls": [{"group": "bronze", "consumer": BOB}],
    }


def r(name, path, *plugins):
    return route(name, paths=[path], plugins=list(plugins))


def main_decl(upstream):
    ka, ba, acl = "key-auth", "basic-auth", "acl"
    routes = [
        r("open", "/open"),
        r("ka", "/ka", plugin(ka)),
        r("ka-names", "/ka-names", plugin(ka, {"key_names": ["x-api-key", "token"]})),
        r("ka-hide", "/ka-hide", plugin(ka, {"hide_credentials": True})),
        r("ka-header-only", "/ka-header-only", plugin(ka, {"key_in_query": False})),
        r("ka-query-only", "/ka-query-only", plugin(ka, {"key_in_header": False})),
        r("ka-realm", "/ka-realm", plugin(ka, {"realm": "my-realm"})),
        r("ka-anon", "/ka-anon", plugin(ka, {"anonymous": ANON})),
        r("ka-anon-name", "/ka-anon-name", plugin(ka, {"anonymous": "anonymous-user"})),
        r("ka-anon-missing", "/ka-anon-missing", plugin(ka, {"anonymous": "nobody"})),
        r("ka-preflight", "/ka-preflight", plugin(ka, {"run_on_preflight": False})),
        r("ka-underscore", "/ka-underscore",
          plugin(ka, {"key_names": ["api_key"], "hide_credentials": True})),
        r("ba", "/ba", plugin(ba)),
        r("ba-hide", "/ba-hide", plugin(ba, {"hide_credentials": True})),
        r("ba-realm", "/ba-realm", plugin(ba, {"realm": "Secret Area"})),
        r("ba-anon", "/ba-anon", plugin(ba, {"anonymous": "anonymous-user"})),
        r("ba-anon-missing", "/ba-anon-missing", plugin(ba, {"anonymous": ALICE[:-2] + "ff"})),
        r("acl-allow", "/acl-allow", plugin(ka), plugin(acl, {"allow": ["gold", "platinum"]})),
        r("acl-deny", "/acl-deny", plugin(ka), plugin(acl, {"deny": ["bronze"]})),
        r("acl-hide", "/acl-hide", plugin(ka),
          plugin(acl, {"allow": ["gold"], "hide_groups_header": True})),
        r("acl-always", "/acl-always", plugin(ka),
          plugin(acl, {"allow": ["gold"], "always_use_authenticated_groups": True})),
        r("acl-alone", "/acl-alone", plugin(acl, {"allow": ["gold"]})),
        r("acl-anon", "/acl-anon", plugin(ka, {"anonymous": ANON}),
          plugin(acl, {"allow": ["guest"]})),
        r("acl-basic", "/acl-basic", plugin(ba), plugin(acl, {"deny": ["gold"]})),
        # Two ways in (logical OR): either credential, else the anonymous consumer.
        r("either", "/either", plugin(ba, {"anonymous": ANON}),
          plugin(ka, {"anonymous": ANON})),
        # Both required (logical AND).
        r("both", "/both", plugin(ka), plugin(ba)),
    ]
    scoped = service("scoped", upstream.url, routes=[
        route("svc-a", paths=["/svc-a"]),
        route("svc-b", paths=["/svc-b"],
              plugins=[plugin(ka, {"key_names": ["route-key"]})]),
    ], plugins=[plugin(ka, {"key_names": ["service-key"]})])
    return declarative([service("echo", upstream.url, routes=routes), scoped],
                       consumers=consumers(), **top_level_tables())


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    return module_sluice_factory(main_decl(upstream))


def basic(user, password, scheme="Basic"):
    raw = ("%s:%s" % (user, password)).encode("utf-8")
    return "%s %s" % (scheme, base64.b64encode(raw).decode("ascii"))


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


def up_target(resp):
    assert resp.status == 200, resp
    return resp.json()["target"]


def consumer_headers(resp):
    return {h: up_one(resp, h) for h in CONSUMER_HEADERS}


def assert_error(resp, status, message, www_authenticate=None):
    """A plugin's error as Kong's kong.response.error writes it for a JSON
    client: status, {"message", "request_id"} (the X-Kong-Request-Id of the
    response), Content-Type and WWW-Authenticate (None: must be absent)."""
    assert resp.status == status, resp
    assert resp.header("Content-Type") == JSON_CT, resp
    rid = resp.header("X-Kong-Request-Id")
    assert rid and len(rid) == 32, resp
    assert resp.json() == {"message": message, "request_id": rid}, resp
    assert resp.header_all("WWW-Authenticate") == ([www_authenticate] if www_authenticate else [])


ALICE_UPSTREAM = {
    "X-Consumer-ID": ALICE,
    "X-Consumer-Username": "alice",
    "X-Consumer-Custom-ID": "alice-custom",
    "X-Credential-Identifier": ALICE_KEY_ID,
    "X-Anonymous-Consumer": None,
}

ANON_UPSTREAM = {
    "X-Consumer-ID": ANON,
    "X-Consumer-Username": "anonymous-user",
    "X-Consumer-Custom-ID": None,
    "X-Credential-Identifier": None,
    "X-Anonymous-Consumer": "true",
}


# ------------------------------------------------------------------ key-auth


def test_key_auth_no_key(dp):
    assert_error(dp.get("/ka"), 401, "No API key found in request", "Key")
    # The process keeps serving.
    assert dp.get("/open").status == 200


def test_key_auth_unknown_key(dp):
    assert_error(dp.get("/ka", headers=[("apikey", "nope")]), 401, "Unauthorized", "Key")
    assert_error(dp.get("/ka?apikey=nope"), 401, "Unauthorized", "Key")


def test_key_auth_key_in_header(dp):
    resp = dp.get("/ka", headers=[("apikey", "alice-key")])
    assert consumer_headers(resp) == ALICE_UPSTREAM
    # Without hide_credentials the key goes upstream too.
    assert up_one(resp, "apikey") == "alice-key"


def test_key_auth_header_name_is_case_insensitive(dp):
    resp = dp.get("/ka", headers=[("APIKEY", "alice-key")])
    assert up_one(resp, "X-Consumer-ID") == ALICE


def test_key_auth_key_in_query(dp):
    resp = dp.get("/ka?a=1&apikey=alice-key&b=2")
    assert consumer_headers(resp) == ALICE_UPSTREAM
    assert up_target(resp) == "/?a=1&apikey=alice-key&b=2"


def test_key_auth_query_key_is_percent_decoded(dp):
    resp = dp.get("/ka?apikey=alice%2Dkey")
    assert up_one(resp, "X-Consumer-ID") == ALICE
    resp = dp.get("/ka?api%6Bey=bob-key")
    assert up_one(resp, "X-Consumer-ID") == BOB


def test_key_auth_header_wins_over_query(dp):
    resp = dp.get("/ka?apikey=bob-key", headers=[("apikey", "alice-key")])
    assert up_one(resp, "X-Consumer-ID") == ALICE
    # An unknown key in the header is not rescued by a good one in the query.
    assert_error(dp.get("/ka?apikey=alice-key", headers=[("apikey", "nope")]),
                 401, "Unauthorized", "Key")


def test_key_auth_consumer_without_custom_id(dp):
    resp = dp.get("/ka", headers=[("apikey", "bob-key")])
    assert consumer_headers(resp) == {
        "X-Consumer-ID": BOB, "X-Consumer-Username": "bob", "X-Consumer-Custom-ID": None,
        "X-Credential-Identifier": BOB_KEY_ID, "X-Anonymous-Consumer": None}


def test_key_auth_replaces_client_supplied_consumer_headers(dp):
    spoofed = [("X-Consumer-ID", "evil"), ("X-Consumer-Username", "root"),
               ("X-Consumer-Custom-ID", "evil-custom"), ("X-Credential-Identifier", "evil"),
               ("X-Anonymous-Consumer", "false")]
    resp = dp.get("/ka", headers=[("apikey", "bob-key")] + spoofed)
    assert consumer_headers(resp) == {
        "X-Consumer-ID": BOB, "X-Consumer-Username": "bob", "X-Consumer-Custom-ID": None,
        "X-Credential-Identifier": BOB_KEY_ID, "X-Anonymous-Consumer": None}


def test_key_auth_duplicate_key(dp):
    assert_error(dp.get("/ka", headers=[("apikey", "alice-key"), ("apikey", "bob-key")]),
                 401, "Duplicate API key found", "Key")
    assert_error(dp.get("/ka?apikey=alice-key&apikey=alice-key"),
                 401, "Duplicate API key found", "Key")
    # An argument without a value still makes the name appear twice.
    assert_error(dp.get("/ka?apikey&apikey=alice-key"), 401, "Duplicate API key found", "Key")


def test_key_auth_empty_or_valueless_key(dp):
    assert_error(dp.get("/ka?apikey="), 401, "No API key found in request", "Key")
    assert_error(dp.get("/ka?apikey"), 401, "No API key found in request", "Key")
    assert_error(dp.get("/ka", headers=[("apikey", "")]), 401, "No API key found in request",
                 "Key")


def test_key_auth_reads_the_first_100_query_arguments(dp):
    # Kong's kong.request.get_query() stops after 100 arguments.
    filler = "&".join("a%d=1" % i for i in range(99))
    resp = dp.get("/ka?%s&apikey=alice-key" % filler)
    assert up_one(resp, "X-Consumer-ID") == ALICE
    assert_error(dp.get("/ka?%s&a99=1&apikey=alice-key" % filler), 401,
                 "No API key found in request", "Key")


def test_key_auth_key_with_nul_matches_nothing(dp):
    # %00 would cut the key short at the lookup; it must not find alice-key.
    assert_error(dp.get("/ka?apikey=alice-key%00junk"), 401, "Unauthorized", "Key")


def test_key_auth_long_key(dp):
    resp = dp.get("/ka", headers=[("apikey", LONG_KEY)])
    assert up_one(resp, "X-Consumer-ID") == CAROL


def test_key_auth_custom_key_names(dp):
    resp = dp.get("/ka-names", headers=[("X-API-Key", "alice-key")])
    assert up_one(resp, "X-Consumer-ID") == ALICE
    resp = dp.get("/ka-names?token=bob-key")
    assert up_one(resp, "X-Consumer-ID") == BOB
    # The default name is not one of them any more.
    assert_error(dp.get("/ka-names?apikey=alice-key"), 401, "No API key found in request",
                 "Key")
    # Names are tried in order: x-api-key first.
    resp = dp.get("/ka-names?token=bob-key", headers=[("x-api-key", "alice-key")])
    assert up_one(resp, "X-Consumer-ID") == ALICE
    # A valueless first name does not stop the search.
    resp = dp.get("/ka-names?x-api-key&token=bob-key")
    assert up_one(resp, "X-Consumer-ID") == BOB


def test_key_auth_hide_credentials(dp):
    resp = dp.get("/ka-hide?a=1&apikey=alice-key&b=x%20y", headers=[("apikey", "alice-key")])
    assert up_one(resp, "X-Consumer-ID") == ALICE
    assert up_all(resp, "apikey") == []
    assert up_target(resp) == "/?a=1&b=x%20y"
    resp = dp.get("/ka-hide?apikey=bob-key")
    assert up_one(resp, "X-Consumer-ID") == BOB
    assert up_target(resp) == "/"
    resp = dp.get("/ka-hide?z=9&apikey=bob-key&a=1")
    assert up_target(resp) == "/?z=9&a=1"  # the other arguments keep their order


def test_key_auth_without_hide_credentials_keeps_key(dp):
    # The same key in a header and in the query is not a duplicate: the
    # header is found first, and both go upstream.
    resp = dp.get("/ka?apikey=alice-key", headers=[("apikey", "alice-key")])
    assert up_one(resp, "apikey") == "alice-key"
    assert up_target(resp) == "/?apikey=alice-key"


def test_key_auth_key_in_header_only(dp):
    assert_error(dp.get("/ka-header-only?apikey=alice-key"), 401,
                 "No API key found in request", "Key")
    resp = dp.get("/ka-header-only", headers=[("apikey", "alice-key")])
    assert up_one(resp, "X-Consumer-ID") == ALICE


def test_key_auth_key_in_query_only(dp):
    assert_error(dp.get("/ka-query-only", headers=[("apikey", "alice-key")]), 401,
                 "No API key found in request", "Key")
    resp = dp.get("/ka-query-only?apikey=alice-key")
    assert up_one(resp, "X-Consumer-ID") == ALICE


def test_key_auth_realm(dp):
    realm = 'Key realm="my-realm"'
    assert_error(dp.get("/ka-realm"), 401, "No API key found in request", realm)
    assert_error(dp.get("/ka-realm?apikey=nope"), 401, "Unauthorized", realm)
    assert_error(dp.get("/ka-realm?apikey=a&apikey=b"), 401, "Duplicate API key found", realm)


def test_key_auth_anonymous_without_key(dp):
    resp = dp.get("/ka-anon", headers=[("X-Credential-Identifier", "spoofed")])
    assert consumer_headers(resp) == ANON_UPSTREAM


def test_key_auth_anonymous_with_bad_key(dp):
    # A failed authentication is not refused: it continues anonymously.
    for target, headers in [("/ka-anon?apikey=nope", []),
                            ("/ka-anon", [("apikey", "a"), ("apikey", "b")])]:
        resp = dp.get(target, headers=headers)
        assert resp.header("WWW-Authenticate") is None
        assert consumer_headers(resp) == ANON_UPSTREAM


def test_key_auth_anonymous_with_good_key(dp):
    resp = dp.get("/ka-anon", headers=[("apikey", "alice-key"), ("X-Anonymous-Consumer", "x")])
    assert consumer_headers(resp) == ALICE_UPSTREAM


def test_key_auth_anonymous_by_username(dp):
    assert consumer_headers(dp.get("/ka-anon-name")) == ANON_UPSTREAM


def test_key_auth_anonymous_consumer_missing(dp):
    resp = dp.get("/ka-anon-missing")
    assert_error(resp, 500, "anonymous consumer nobody is configured but doesn't exist")
    # With a good key the missing anonymous consumer does not matter.
    resp = dp.get("/ka-anon-missing?apikey=alice-key")
    assert up_one(resp, "X-Consumer-ID") == ALICE


def test_key_auth_preflight(dp):
    # run_on_preflight=false: OPTIONS goes through without a key.
    resp = dp.request("OPTIONS", "/ka-preflight")
    assert resp.status == 200, resp
    assert resp.json()["method"] == "OPTIONS"
    assert consumer_headers(resp) == dict.fromkeys(CONSUMER_HEADERS)
    # Other methods still need one.
    assert_error(dp.request("POST", "/ka-preflight", body=b"x"), 401,
                 "No API key found in request", "Key")
    # The default (run_on_preflight=true) authenticates OPTIONS too.
    assert_error(dp.request("OPTIONS", "/ka"), 401, "No API key found in request", "Key")


def test_key_auth_underscore_key_name(dp):
    # nginx looks "api_key" up as the field "api-key"; hiding removes that field.
    resp = dp.get("/ka-underscore", headers=[("Api-Key", "alice-key")])
    assert up_one(resp, "X-Consumer-ID") == ALICE
    assert up_all(resp, "api-key") == []
    resp = dp.get("/ka-underscore?api_key=bob-key&x=1")
    assert up_one(resp, "X-Consumer-ID") == BOB
    assert up_target(resp) == "/?x=1"


# ------------------------------------------------------------------ basic-auth

BASIC_REALM = 'Basic realm="service"'


def test_basic_auth_no_credentials(dp):
    assert_error(dp.get("/ba"), 401, "Unauthorized", BASIC_REALM)


def test_basic_auth_success(dp):
    auth = basic("alice-basic", ALICE_PASS)
    resp = dp.get("/ba", headers=[("Authorization", auth)])
    assert consumer_headers(resp) == {
        "X-Consumer-ID": ALICE, "X-Consumer-Username": "alice",
        "X-Consumer-Custom-ID": "alice-custom",
        # basic-auth identifies the credential by its username
        "X-Credential-Identifier": "alice-basic", "X-Anonymous-Consumer": None}
    assert up_one(resp, "Authorization") == auth  # not hidden by default


def test_basic_auth_long_username(dp):
    resp = dp.get("/ba", headers=[("Authorization", basic(LONG_USER, "pw"))])
    assert up_one(resp, "X-Consumer-ID") == CAROL
    assert up_one(resp, "X-Credential-Identifier") == LONG_USER


def test_basic_auth_password_with_colon_and_utf8(dp):
    resp = dp.get("/ba", headers=[("Authorization", basic("bob", BOB_PASS))])
    assert up_one(resp, "X-Consumer-ID") == BOB
    assert up_one(resp, "X-Credential-Identifier") == "bob"


@pytest.mark.parametrize("auth", [
    basic("alice-basic", "wrong"),
    basic("alice-basic", ALICE_PASS + " "),
    basic("alice-basic", ""),
    basic("nobody", ALICE_PASS),
    basic("bob", "p"),
    "Basic !!!notbase64",
    "Basic " + base64.b64encode(b"no-colon-here").decode(),
    "Basic",
    "Basic    ",
    "Bearer " + base64.b64encode(b"alice-basic:correct horse").decode(),
    "Digest username=alice-basic",
])
def test_basic_auth_bad_credentials(dp, auth):
    assert_error(dp.get("/ba", headers=[("Authorization", auth)]), 401, "Unauthorized",
                 BASIC_REALM)


def test_basic_auth_stored_hash_is_not_a_password(dp):
    # The stored value is sha1(password .. consumer_id); sending it back fails.
    digest = hashlib.sha1((ALICE_PASS + ALICE).encode()).hexdigest()
    assert_error(dp.get("/ba", headers=[("Authorization", basic("alice-basic", digest))]),
                 401, "Unauthorized", BASIC_REALM)


def test_basic_auth_scheme_forms(dp):
    # Kong's regex: "[Bb]asic" anywhere, blanks skipped, base64 up to the first '='.
    token = base64.b64encode(("alice-basic:" + ALICE_PASS).encode()).decode()
    for value in ["basic " + token, "Basic\t" + token, "  Basic   " + token,
                  "Basic " + token.rstrip("=")]:
        resp = dp.get("/ba", headers=[("Authorization", value)])
        assert up_one(resp, "X-Consumer-ID") == ALICE, value
    assert_error(dp.get("/ba", headers=[("Authorization", "BASIC " + token)]), 401,
                 "Unauthorized", BASIC_REALM)


def test_basic_auth_leading_colons_skipped(dp):
    # ([^:]+):(.*) starts at the first character that is not ':'.
    raw = base64.b64encode(("::alice-basic:" + ALICE_PASS).encode()).decode()
    resp = dp.get("/ba", headers=[("Authorization", "Basic " + raw)])
    assert up_one(resp, "X-Consumer-ID") == ALICE


def test_basic_auth_proxy_authorization(dp):
    resp = dp.get("/ba", headers=[("Proxy-Authorization", basic("bob", BOB_PASS))])
    assert up_one(resp, "X-Consumer-ID") == BOB
    # Proxy-Authorization is tried first...
    resp = dp.get("/ba", headers=[("Proxy-Authorization", basic("bob", BOB_PASS)),
                                  ("Authorization", basic("alice-basic", ALICE_PASS))])
    assert up_one(resp, "X-Consumer-ID") == BOB
    # ...and Authorization when it names no known user.
    resp = dp.get("/ba", headers=[("Proxy-Authorization", basic("nobody", "x")),
                                  ("Authorization", basic("alice-basic", ALICE_PASS))])
    assert up_one(resp, "X-Consumer-ID") == ALICE
    # A known user with a wrong password there is final.
    assert_error(dp.get("/ba", headers=[("Proxy-Authorization", basic("bob", "wrong")),
                                        ("Authorization", basic("alice-basic", ALICE_PASS))]),
                 401, "Unauthorized", BASIC_REALM)


def test_basic_auth_hide_credentials(dp):
    resp = dp.get("/ba-hide", headers=[("Authorization", basic("alice-basic", ALICE_PASS)),
                                       ("X-Other", "kept")])
    assert up_one(resp, "X-Consumer-ID") == ALICE
    assert up_all(resp, "Authorization") == []
    assert up_one(resp, "X-Other") == "kept"
    resp = dp.get("/ba-hide", headers=[("Proxy-Authorization", basic("bob", BOB_PASS))])
    assert up_one(resp, "X-Consumer-ID") == BOB
    assert up_all(resp, "Proxy-Authorization") == []


def test_basic_auth_realm(dp):
    assert_error(dp.get("/ba-realm"), 401, "Unauthorized", 'Basic realm="Secret Area"')
    assert_error(dp.get("/ba-realm", headers=[("Authorization", basic("bob", "x"))]), 401,
                 "Unauthorized", 'Basic realm="Secret Area"')


def test_basic_auth_anonymous(dp):
    assert consumer_headers(dp.get("/ba-anon")) == ANON_UPSTREAM
    resp = dp.get("/ba-anon", headers=[("Authorization", basic("bob", "wrong"))])
    assert resp.header("WWW-Authenticate") is None
    assert consumer_headers(resp) == ANON_UPSTREAM
    resp = dp.get("/ba-anon", headers=[("Authorization", basic("bob", BOB_PASS))])
    assert up_one(resp, "X-Consumer-ID") == BOB
    assert up_one(resp, "X-Anonymous-Consumer") is None


def test_basic_auth_anonymous_consumer_missing(dp):
    missing = ALICE[:-2] + "ff"
    assert_error(dp.get("/ba-anon-missing"), 500,
                 "anonymous consumer %s is configured but doesn't exist" % missing)


def test_basic_auth_runs_on_preflight(dp):
    # basic-auth has no run_on_preflight: OPTIONS is authenticated like the rest.
    assert_error(dp.request("OPTIONS", "/ba"), 401, "Unauthorized", BASIC_REALM)


# ------------------------------------------------------------------ acl

REFUSED = "You cannot consume this service"


def test_acl_allow_lets_a_member_in(dp):
    resp = dp.get("/acl-allow?apikey=alice-key", headers=[("X-Consumer-Groups", "admin")])
    assert up_one(resp, "X-Consumer-Groups") == "gold, silver"
    assert up_one(resp, "X-Consumer-ID") == ALICE


def test_acl_allow_refuses_others(dp):
    assert_error(dp.get("/acl-allow?apikey=bob-key"), 403, REFUSED)
    # A consumer without any group is refused too.
    assert_error(dp.get("/acl-allow?apikey=carol-key"), 403, REFUSED)


def test_acl_auth_failure_comes_first(dp):
    # key-auth (1250) runs before acl (950): its 401 is what the client gets.
    assert_error(dp.get("/acl-allow"), 401, "No API key found in request", "Key")


def test_acl_deny(dp):
    assert_error(dp.get("/acl-deny?apikey=bob-key"), 403, REFUSED)
    resp = dp.get("/acl-deny?apikey=alice-key")
    assert up_one(resp, "X-Consumer-Groups") == "gold, silver"
    # Carol has no group: allowed, and no X-Consumer-Groups goes upstream,
    # not even one the client sent.
    resp = dp.get("/acl-deny?apikey=carol-key", headers=[("X-Consumer-Groups", "gold")])
    assert up_one(resp, "X-Consumer-ID") == CAROL
    assert up_all(resp, "X-Consumer-Groups") == []


def test_acl_hide_groups_header(dp):
    resp = dp.get("/acl-hide?apikey=alice-key")
    assert up_one(resp, "X-Consumer-ID") == ALICE
    assert up_all(resp, "X-Consumer-Groups") == []
    assert_error(dp.get("/acl-hide?apikey=bob-key"), 403, REFUSED)


def test_acl_always_use_authenticated_groups_without_any(dp):
    # No plugin here sets authenticated groups: the consumer's groups decide.
    resp = dp.get("/acl-always?apikey=alice-key")
    assert up_one(resp, "X-Consumer-Groups") == "gold, silver"
    assert up_all(resp, "X-Authenticated-Groups") == []
    assert_error(dp.get("/acl-always?apikey=bob-key"), 403, REFUSED)


def test_acl_without_consumer(dp):
    assert_error(dp.get("/acl-alone"), 401, "Unauthorized")
    assert_error(dp.get("/acl-alone?apikey=alice-key"), 401, "Unauthorized")


def test_acl_with_anonymous_consumer(dp):
    resp = dp.get("/acl-anon")
    assert consumer_headers(resp) == ANON_UPSTREAM
    assert up_one(resp, "X-Consumer-Groups") == "guest"
    # alice authenticates for real and is not a guest.
    assert_error(dp.get("/acl-anon?apikey=alice-key"), 403, REFUSED)


def test_acl_with_basic_auth(dp):
    resp = dp.get("/acl-basic", headers=[("Authorization", basic("bob", BOB_PASS))])
    assert up_one(resp, "X-Consumer-Groups") == "bronze"
    assert_error(dp.get("/acl-basic", headers=[("Authorization",
                                                basic("alice-basic", ALICE_PASS))]),
                 403, REFUSED)


# ------------------------------------------------------------------ all three


def test_reason_phrases(dp):
    # Kong (nginx) answers with the standard reason phrases.
    assert dp.get("/ka").reason == "Unauthorized"
    assert dp.get("/acl-allow?apikey=bob-key").reason == "Forbidden"
    assert dp.get("/ka-anon-missing").reason == "Internal Server Error"


# ------------------------------------------------------------------ several plugins


def test_either_credential_with_anonymous(dp):
    # key-auth runs first (1250 > 1100); once it authenticated with a
    # credential, basic-auth (anonymous set) leaves the request alone.
    resp = dp.get("/either?apikey=alice-key", headers=[("Authorization", basic("bob", "bad"))])
    assert consumer_headers(resp) == ALICE_UPSTREAM
    # key-auth fails into the anonymous consumer (no credential), so basic-auth
    # still authenticates and replaces it.
    resp = dp.get("/either", headers=[("Authorization", basic("bob", BOB_PASS))])
    assert consumer_headers(resp) == {
        "X-Consumer-ID": BOB, "X-Consumer-Username": "bob", "X-Consumer-Custom-ID": None,
        "X-Credential-Identifier": "bob", "X-Anonymous-Consumer": None}
    # Neither: anonymous.
    assert consumer_headers(dp.get("/either")) == ANON_UPSTREAM


def test_both_credentials_required(dp):
    assert_error(dp.get("/both", headers=[("Authorization", basic("bob", BOB_PASS))]),
                 401, "No API key found in request", "Key")
    assert_error(dp.get("/both?apikey=alice-key"), 401, "Unauthorized", BASIC_REALM)
    # With both, the later plugin (basic-auth) sets the consumer last.
    resp = dp.get("/both?apikey=alice-key", headers=[("Authorization", basic("bob", BOB_PASS))])
    assert up_one(resp, "X-Consumer-ID") == BOB
    assert up_one(resp, "X-Credential-Identifier") == "bob"


# ------------------------------------------------------------------ scopes


def test_service_scope(dp):
    assert_error(dp.get("/svc-a"), 401, "No API key found in request", "Key")
    resp = dp.get("/svc-a", headers=[("service-key", "alice-key")])
    assert up_one(resp, "X-Consumer-ID") == ALICE
    assert_error(dp.get("/svc-a", headers=[("apikey", "alice-key")]), 401,
                 "No API key found in request", "Key")


def test_route_scope_wins_over_service(dp):
    resp = dp.get("/svc-b", headers=[("route-key", "bob-key")])
    assert up_one(resp, "X-Consumer-ID") == BOB
    assert_error(dp.get("/svc-b", headers=[("service-key", "alice-key")]), 401,
                 "No API key found in request", "Key")


def test_route_without_plugin_is_open(dp):
    resp = dp.get("/open", headers=[("X-Consumer-ID", "client-value")])
    # Nothing authenticated: the client's header passes untouched.
    assert up_one(resp, "X-Consumer-ID") == "client-value"


def test_global_scope(sluice_factory, upstream):
    decl = declarative([service("echo", upstream.url, routes=[
        route("plain", paths=["/plain"]),
        route("own", paths=["/own"], plugins=[plugin("key-auth", {"key_names": ["own-key"]})]),
    ])], consumers=consumers(), plugins=[plugin("key-auth"), plugin("acl", {"deny": ["silver"]})],
        **top_level_tables())
    dp = sluice_factory(decl)
    assert_error(dp.get("/plain"), 401, "No API key found in request", "Key")
    resp = dp.get("/plain?apikey=bob-key")
    assert up_one(resp, "X-Consumer-ID") == BOB
    assert up_one(resp, "X-Consumer-Groups") == "bronze"
    # The global acl applies too.
    assert_error(dp.get("/plain?apikey=alice-key"), 403, REFUSED)
    # A route's own instance replaces the global one.
    assert_error(dp.get("/own?apikey=bob-key"), 401, "No API key found in request", "Key")
    resp = dp.get("/own", headers=[("own-key", "bob-key")])
    assert up_one(resp, "X-Consumer-ID") == BOB


def test_line_breaks_in_consumer_data_are_not_sent_upstream(sluice_factory, upstream):
    # Consumer fields are configuration, not client input, but a CR or LF in
    # one must never split the upstream request into extra header fields.
    decl = declarative([service("echo", upstream.url, routes=[
        route("ka", paths=["/ka"], plugins=[plugin("key-auth")]),
        route("acl", paths=["/acl"], plugins=[plugin("key-auth"),
                                              plugin("acl", {"deny": ["nobody"]})]),
    ])], consumers=[{"username": "m\r\nX-Injected-User: 1", "custom_id": "c\nX-Injected-Custom: 2",
                     "keyauth_credentials": [{"key": "m-key"}],
                     "acls": [{"group": "g\r\nX-Injected-Group: 3"}]}])
    dp = sluice_factory(decl)
    resp = dp.get("/ka?apikey=m-key")
    assert resp.status == 200, resp
    names = [k.lower() for k, _ in up_headers(resp)]
    assert not [n for n in names if n.startswith("x-injected")], names
    # acl cannot send the groups: like nginx refusing the value, a 500.
    assert_error(dp.get("/acl?apikey=m-key"), 500, "An unexpected error occurred")


def test_consumer_scoped_plugin_follows_the_authenticated_consumer(sluice_factory, upstream):
    # key-auth (1250) sets the consumer before ip-restriction (990) is
    # resolved, so an instance scoped to that consumer applies to it only.
    decl = declarative([service("echo", upstream.url, routes=[
        route("r", paths=["/"], plugins=[plugin("key-auth", {"anonymous": ANON})])])],
        consumers=consumers(),
        plugins=[plugin("ip-restriction", {"deny": ["127.0.0.1"]}, consumer=ALICE)],
        **top_level_tables())
    dp = sluice_factory(decl)
    assert dp.get("/?apikey=alice-key").status == 403
    assert up_one(dp.get("/?apikey=bob-key"), "X-Consumer-ID") == BOB
    assert up_one(dp.get("/"), "X-Consumer-ID") == ANON


def test_disabled_plugin_does_nothing(sluice_factory, upstream):
    p = plugin("key-auth")
    p["enabled"] = False
    dp = sluice_factory(declarative([service("echo", upstream.url, routes=[
        route("r", paths=["/"], plugins=[p])])], consumers=consumers()))
    assert dp.get("/").status == 200


# ------------------------------------------------------------------ key-auth: key_in_body


FORM = "application/x-www-form-urlencoded"
JSON_BODY = "application/json"


@pytest.fixture(scope="module")
def body_echo():
    e = BodyEcho()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def kb(module_sluice_factory, body_echo):
    ka = "key-auth"
    return module_sluice_factory(declarative([service("bodies", body_echo.url, routes=[
        r("kb", "/kb", plugin(ka, {"key_in_body": True})),
        r("kb-hide", "/kb-hide", plugin(ka, {"key_in_body": True, "hide_credentials": True})),
        r("kb-names", "/kb-names", plugin(ka, {"key_in_body": True,
                                               "key_names": ["x-key", "token"]})),
        r("kb-anon", "/kb-anon", plugin(ka, {"key_in_body": True, "anonymous": ANON})),
        r("kb-only", "/kb-only", plugin(ka, {"key_in_body": True, "key_in_header": False,
                                             "key_in_query": False})),
    ])], consumers=consumers(), **top_level_tables()), {"client_body_buffer_size": "16k"})


def multipart(fields, boundary="XyZ-b0und"):
    """fields: (name, value) or (name, value, filename)."""
    out = b""
    for f in fields:
        disp = 'Content-Disposition: form-data; name="%s"' % f[0]
        if len(f) > 2:
            disp += '; filename="%s"\r\nContent-Type: text/plain' % f[2]
        out += b"--" + boundary.encode() + b"\r\n" + disp.encode() + b"\r\n\r\n" + f[1] + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def post(dp, path, ctype, body, headers=(), chunked=False):
    hs = [("Content-Type", ctype)] if ctype else []
    hs += list(headers)
    if chunked:
        hs.append(("Transfer-Encoding", "chunked"))
        body = h1.chunked_body([body[:len(body) // 2], body[len(body) // 2:]])
    return dp.request("POST", path, hs, body)


def as_alice(resp):
    e, body = echoed(resp)
    assert echo_header(e, "X-Consumer-ID") == ALICE, e
    assert echo_header(e, "X-Credential-Identifier") == ALICE_KEY_ID
    return e, body


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("ctype,body", [
    (FORM, b"a=1&apikey=alice-key&b=2"),
    (FORM + "; charset=UTF-8", b"apikey=alice%2Dkey"),
    (JSON_BODY, b'{"a": [1, 2], "apikey": "alice-key"}'),
    ("Application/JSON; charset=utf-8", b'{"apikey":"alice-key"}'),
    ("multipart/form-data; boundary=XyZ-b0und",
     multipart([("a", b"1"), ("apikey", b"alice-key"), ("f", b"file\r\ndata", "f.txt")])),
    ('multipart/form-data; boundary="XyZ-b0und"', multipart([("apikey", b"alice-key")])),
], ids=["form", "form-charset", "json", "json-case", "multipart", "multipart-quoted"])
def test_key_auth_key_in_body(kb, ctype, body, chunked):
    e, got = as_alice(post(kb, "/kb", ctype, body, chunked=chunked))
    # Without hide_credentials the body goes upstream as it came, whole.
    assert got == body
    assert e["chunked"] is False
    assert echo_header(e, "Content-Length") == str(len(body))


def test_key_auth_key_in_body_second_name(kb):
    e, _ = as_alice(post(kb, "/kb-names", FORM, b"token=alice-key"))
    assert_error(post(kb, "/kb-names", FORM, b"apikey=alice-key"), 401,
                 "No API key found in request", "Key")


@pytest.mark.parametrize("ctype,body,message", [
    (FORM, b"apikey=nope", "Unauthorized"),
    (FORM, b"other=alice-key", "No API key found in request"),
    (FORM, b"", "No API key found in request"),
    (FORM, b"apikey=", "No API key found in request"),
    (FORM, b"apikey", "No API key found in request"),  # a flag, not a key
    (FORM, b"apikey=alice-key&apikey=bob-key", "Duplicate API key found"),
    (JSON_BODY, b'{"apikey": ["alice-key"]}', "Duplicate API key found"),
    (JSON_BODY, b'{"apikey": {"k": "alice-key"}}', "Duplicate API key found"),
    (JSON_BODY, b'{"apikey": 12345}', "No API key found in request"),
    (JSON_BODY, b'{"apikey": null}', "No API key found in request"),
    (JSON_BODY, b'["alice-key"]', "No API key found in request"),
    (JSON_BODY, b'"alice-key"', "No API key found in request"),
    (JSON_BODY, b'{"apikey": "alice-key"', "No API key found in request"),  # not JSON
    (JSON_BODY, b'{"apikey": "alice\\u0000key"}', "Unauthorized"),
    ("multipart/form-data; boundary=XyZ-b0und",
     multipart([("apikey", b"alice-key"), ("apikey", b"bob-key")]), "Duplicate API key found"),
    ("multipart/form-data", multipart([("apikey", b"alice-key")]),
     "No API key found in request"),  # no boundary: no fields
    ("text/plain", b"apikey=alice-key", "No API key found in request"),
    (None, b"apikey=alice-key", "No API key found in request"),
])
def test_key_auth_key_in_body_refused(kb, ctype, body, message):
    assert_error(post(kb, "/kb", ctype, body), 401, message, "Key")


def test_key_auth_key_in_body_order(kb):
    # For each name: the header, then the query, then the body.
    e, _ = as_alice(post(kb, "/kb", FORM, b"apikey=nope", [("apikey", "alice-key")]))
    e, _ = as_alice(post(kb, "/kb?apikey=alice-key", FORM, b"apikey=nope"))
    # A query flag (?apikey) is a value that is no key: the body is not
    # searched for that name (Kong sees `true`).
    assert_error(post(kb, "/kb?apikey", FORM, b"apikey=alice-key"), 401,
                 "No API key found in request", "Key")
    # Body only.
    as_alice(post(kb, "/kb-only", JSON_BODY, b'{"apikey":"alice-key"}'))
    assert_error(post(kb, "/kb-only?apikey=alice-key", JSON_BODY, b"{}",
                      [("apikey", "alice-key")]), 401, "No API key found in request", "Key")


def test_key_auth_key_in_body_anonymous(kb):
    e, _ = echoed(post(kb, "/kb-anon", FORM, b"apikey=nope"))
    assert echo_header(e, "X-Consumer-ID") == ANON
    assert echo_header(e, "X-Anonymous-Consumer") == "true"
    as_alice(post(kb, "/kb-anon", FORM, b"apikey=alice-key"))


def test_key_auth_key_in_body_over_buffer_size(kb):
    # The body is read whole before access (client_body_buffer_size 16k here).
    body = b"apikey=alice-key&pad=" + b"x" * 20000
    resp = post(kb, "/kb", FORM, body)
    assert resp.status == 413, resp
    as_alice(post(kb, "/kb", FORM, b"apikey=alice-key&pad=" + b"x" * 15000))


@pytest.mark.parametrize("chunked", [False, True])
def test_key_auth_hide_credentials_form_body(kb, chunked):
    e, got = as_alice(post(kb, "/kb-hide", FORM, b"z=2&apikey=alice-key&b=x+y%21&a=1&a=0&f",
                           chunked=chunked))
    # kong.service.request.set_body: fields sorted, values escaped again.
    assert got == b"a=1&a=0&b=x%20y%21&f&z=2"
    assert echo_header(e, "Content-Length") == str(len(got))
    assert echo_header(e, "Content-Type") == FORM


def test_key_auth_hide_credentials_json_body(kb):
    e, got = as_alice(post(kb, "/kb-hide", JSON_BODY,
                           b'{ "url": "http://x/y", "apikey": "alice-key", "n": 1.5, '
                           b'"i": 7, "nested": {"apikey": "kept"}, "list": [] }'))
    assert json.loads(got) == {"url": "http://x/y", "n": 1.5, "i": 7,
                               "nested": {"apikey": "kept"}, "list": []}
    # Compact, with '/' escaped, as cjson writes it.
    assert got == b'{"url":"http:\\/\\/x\\/y","n":1.5,"i":7,"nested":{"apikey":"kept"},"list":[]}'
    assert echo_header(e, "Content-Length") == str(len(got))


def test_key_auth_hide_credentials_multipart_body(kb):
    body = multipart([("z", b"last"), ("apikey", b"alice-key"), ("a", b"first\r\nline"),
                      ("f", b"file data", "f.txt")])
    e, got = as_alice(post(kb, "/kb-hide", "multipart/form-data; boundary=XyZ-b0und", body))
    # set_body: every field a plain part (a file loses its filename and
    # type, as in Kong), sorted by name, on the same boundary.
    assert got == multipart([("a", b"first\r\nline"), ("f", b"file data"), ("z", b"last")])
    assert echo_header(e, "Content-Type") == "multipart/form-data; boundary=XyZ-b0und"
    assert echo_header(e, "Content-Length") == str(len(got))


def test_key_auth_hide_credentials_multipart_without_boundary(kb):
    # No boundary in the Content-Type: no fields, and set_body writes the
    # empty form on a boundary of its own, which Content-Type then names.
    e, got = as_alice(post(kb, "/kb-hide", "multipart/form-data",
                           multipart([("apikey", b"decoy")]), [("apikey", "alice-key")]))
    ct = echo_header(e, "Content-Type")
    assert ct.startswith("multipart/form-data; boundary="), ct
    boundary = ct.split("boundary=", 1)[1]
    assert boundary
    assert got == b"--%s--\r\n" % boundary.encode()


def test_key_auth_hide_credentials_body_when_key_elsewhere(kb):
    """Kong removes the name from the body and re-encodes it even when the
    key came from the header or the query."""
    e, got = as_alice(post(kb, "/kb-hide", FORM, b"zz=1&apikey=decoy&aa=2",
                           [("apikey", "alice-key")]))
    assert got == b"aa=2&zz=1"
    assert echo_header(e, "apikey") is None
    e, got = as_alice(post(kb, "/kb-hide?apikey=alice-key&q=1", JSON_BODY,
                           b'{ "b" : 1,  "a":2 }'))
    assert got == b'{"b":1,"a":2}'
    assert e["target"] == "/?q=1"
    # A body of another type is left alone.
    e, got = as_alice(post(kb, "/kb-hide", "text/plain", b"apikey=x", [("apikey", "alice-key")]))
    assert got == b"apikey=x"


def test_key_auth_without_key_in_body_streams_the_body(sluice_factory, upstream):
    """wants_body only with key_in_body: other key-auth routes do not read
    the body before access (a chunked body stays chunked)."""
    dp = sluice_factory(declarative([service("echo", upstream.url, routes=[
        r("ka", "/ka", plugin("key-auth"))])], consumers=consumers()))
    resp = dp.request("POST", "/ka", [("apikey", "alice-key"), ("Transfer-Encoding", "chunked")],
                      h1.chunked_body([b"a" * 100, b"b" * 100]))
    assert resp.status == 200, resp
    assert resp.json()["chunked"] is True
    assert resp.json()["body_len"] == 200


def test_key_auth_key_in_body_reads_chunked_bodies(sluice_factory, upstream):
    dp = sluice_factory(declarative([service("echo", upstream.url, routes=[
        r("ka", "/ka", plugin("key-auth", {"key_in_body": True}))])], consumers=consumers()))
    resp = dp.request("POST", "/ka", [("apikey", "alice-key"), ("Transfer-Encoding", "chunked")],
                      h1.chunked_body([b"a" * 100, b"b" * 100]))
    assert resp.status == 200, resp
    assert resp.json()["chunked"] is False
    assert resp.json()["body_len"] == 200


# ------------------------------------------------------------------ bad configurations


def check_dp(tmp_path, decl):
    conf = tmp_path / "sluice.conf"
    conf.write_text("proxy_listen = 127.0.0.1:0\nstatus_listen = 127.0.0.1:0\nworkers = 1\n")
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(decl))
    return run_dp(["-c", conf, "-p", tmp_path, "-t", "--declarative", path])


BAD = [
    ("key-auth", {"key_in_body": "yes"}, "plugins[0].config.key_in_body", ["boolean"]),
    ("key-auth", {"key_names": ["bad name"]}, "plugins[0].config.key_names[0]",
     ["bad header name"]),
    ("key-auth", {"key_names": "apikey"}, "plugins[0].config.key_names", ["array"]),
    ("key-auth", {"hide_credentials": "yes"}, "plugins[0].config.hide_credentials",
     ["boolean"]),
    ("key-auth", {"anonymous": ""}, "plugins[0].config.anonymous", ["length"]),
    ("key-auth", {"run_on_preflight": 1}, "plugins[0].config.run_on_preflight", ["boolean"]),
    ("key-auth", {"bogus": 1}, "plugins[0].config.bogus", ["unknown field"]),
    ("basic-auth", {"realm": 5}, "plugins[0].config.realm", ["string"]),
    ("basic-auth", {"run_on_preflight": False}, "plugins[0].config.run_on_preflight",
     ["unknown field"]),
    ("acl", {"allow": ["a"], "deny": ["b"]}, "plugins[0]", ["config.allow", "config.deny"]),
    ("acl", {}, "plugins[0]", ["at least one", "config.allow", "config.deny"]),
    ("acl", {"allow": "gold"}, "plugins[0].config.allow", ["array"]),
    ("acl", {"allow": ["gold"], "hide_groups_header": "no"},
     "plugins[0].config.hide_groups_header", ["boolean"]),
]


@pytest.mark.parametrize("name,config,path,words", BAD,
                         ids=["%s-%d" % (b[0], i) for i, b in enumerate(BAD)])
def test_bad_config_rejected(tmp_path, name, config, path, words):
    decl = declarative([service("s", "http://127.0.0.1:9", routes=[route("r", paths=["/"])])],
                       plugins=[plugin(name, config)])
    res = check_dp(tmp_path, decl)
    assert res.returncode == 2, "exit %r; stderr:\n%s" % (res.returncode, res.stderr)
    lines = [line for line in res.stderr.splitlines() if path in line]
    assert lines, "no error line names %r; stderr:\n%s" % (path, res.stderr)
    for w in words:
        assert any(w in line for line in lines), "%r not in %r" % (w, lines)


def test_consumer_scope_rejected(tmp_path):
    # Authentication plugins cannot be scoped to a consumer (no_consumer).
    decl = declarative([service("s", "http://127.0.0.1:9", routes=[route("r", paths=["/"])])],
                       consumers=[{"id": ALICE, "username": "alice"}],
                       plugins=[plugin("key-auth", consumer=ALICE),
                                plugin("acl", {"allow": ["x"]}, consumer=ALICE)])
    res = check_dp(tmp_path, decl)
    assert res.returncode == 2, res.stderr
    assert "plugins[0].consumer" in res.stderr, res.stderr
    assert "plugins[1].consumer" in res.stderr, res.stderr


def test_bad_config_does_not_start(sluice_factory, tmp_path):
    decl = declarative([service("s", "http://127.0.0.1:9", routes=[route("r", paths=["/"])])],
                       plugins=[plugin("key-auth", {"key_names": ["bad name"]})])
    dp = sluice_factory(decl, start=False)
    dp.start(wait_ready=False)
    assert dp.wait_exit() != 0
    assert "config.key_names[0]" in dp.stderr()


def test_good_config_accepted(tmp_path, upstream):
    res = check_dp(tmp_path, main_decl(upstream))
    assert res.returncode == 0, res.stderr
