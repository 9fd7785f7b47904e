"""The plugin engine through a real sluice-dp: Kong's scope precedence with
the same plugin at every scope (the consumer known only once key-auth ran),
execution order by PRIORITY, a short-circuit in access (later access
handlers skipped, header_filter of the plugins collected so far still run),
global plugins on answers without a route, and header fields a plugin may
not set.

request-transformer instances that add `X-Scope: <scope>` upstream show which
instance applied; the echo upstream reports the headers it received.
"""

import json

import pytest

from conftest import declarative, route, service

SVC = "5a1d0c1e-0000-4000-8000-000000000001"
RT = "5a1d0c1e-0000-4000-8000-000000000002"
ALICE = "5a1d0c1e-0000-4000-8000-0000000000a1"
BOB = "5a1d0c1e-0000-4000-8000-0000000000b0"


def scoped(scope, **fk):
    p = {"name": "request-transformer", "config": {"add": {"headers": ["X-Scope:" + scope]}}}
    p.update({k: {"id": v} for k, v in fk.items()})
    return p


SCOPES = [  # Kong's ranks, most specific first
    ("route+service+consumer", dict(route=RT, service=SVC, consumer=ALICE)),
    ("route+consumer", dict(route=RT, consumer=ALICE)),
    ("service+consumer", dict(service=SVC, consumer=ALICE)),
    ("route+service", dict(route=RT, service=SVC)),
    ("consumer", dict(consumer=ALICE)),
    ("route", dict(route=RT)),
    ("service", dict(service=SVC)),
    ("global", dict()),
]


def doc(upstream, from_rank):
    plugins = [scoped(name, **fk) for name, fk in SCOPES[from_rank:]]
    plugins.append({"name": "key-auth", "config": {"anonymous": BOB}})
    return declarative(
        [{"id": SVC, "name": "s", "url": upstream.url,
          "routes": [{"id": RT, "name": "r", "paths": ["/r"]}]},
         service("other", upstream.url, routes=[route("o", paths=["/o"])])],
        consumers=[{"id": ALICE, "username": "alice",
                    "keyauth_credentials": [{"key": "alice-key"}]},
                   {"id": BOB, "username": "anonymous"}],
        plugins=plugins)


def scope_seen(dp, path, key=None):
    r = dp.get(path, headers={"apikey": key} if key else {})
    assert r.status == 200, r
    seen = [v for k, v in json.loads(r.body)["headers"] if k.lower() == "x-scope"]
    assert len(seen) <= 1, seen  # one instance of a plugin per request
    return seen[0] if seen else None


@pytest.mark.parametrize("from_rank", range(len(SCOPES)))
def test_scope_precedence(sluice_factory, upstream, from_rank):
    dp = sluice_factory(doc(upstream, from_rank))
    best = SCOPES[from_rank][0]
    # alice authenticated by key-auth (priority 1250, before the
    # transformer's 801): the most specific remaining scope wins
    assert scope_seen(dp, "/r", "alice-key") == best
    # the anonymous consumer (bob) has no consumer-scoped instance
    no_consumer = next(n for n, fk in SCOPES[from_rank:] if "consumer" not in fk)
    assert scope_seen(dp, "/r") == no_consumer
    # another route of another service: only consumer-only and global apply
    other_alice = next((n for n, fk in SCOPES[from_rank:]
                        if set(fk) <= {"consumer"}), None)
    assert scope_seen(dp, "/o", "alice-key") == other_alice
    assert scope_seen(dp, "/o") == ("global" if from_rank <= 7 else None)


def test_order_and_short_circuit(sluice_factory, upstream):
    """correlation-id (100001) and cors (2000) run before key-auth (1250);
    key-auth answers 401, so request-transformer (801) never runs, but the
    header_filter of cors and correlation-id still shape the 401."""
    dp = sluice_factory(declarative(
        [service("s", upstream.url, routes=[route("r", paths=["/r"])])],
        consumers=[{"username": "alice", "keyauth_credentials": [{"key": "k"}]}],
        plugins=[
            {"name": "key-auth"},
            {"name": "cors", "config": {"origins": ["https://app.example"]}},
            {"name": "correlation-id", "config": {"echo_downstream": True,
                                                  "header_name": "X-Corr"}},
            {"name": "request-transformer", "config": {"add": {"headers": ["X-Seen:yes"]}}},
        ]))
    r = dp.get("/r", headers={"Origin": "https://app.example"})
    assert r.status == 401
    assert json.loads(r.body)["message"] == "No API key found in request"
    assert r.header("access-control-allow-origin") == "https://app.example"
    assert r.header("x-corr")
    # let through: every plugin ran, in order, and the upstream saw it
    r = dp.get("/r", headers={"Origin": "https://app.example", "apikey": "k"})
    assert r.status == 200
    seen = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    assert seen["x-seen"] == "yes"
    assert seen["x-corr"] == r.header("x-corr")
    assert seen["x-consumer-username"] == "alice"
    assert r.header("access-control-allow-origin") == "https://app.example"


def test_global_plugins_see_answers_without_a_route(sluice_factory, upstream):
    dp = sluice_factory(declarative(
        [service("s", upstream.url, routes=[route("r", paths=["/r"])])],
        plugins=[{"name": "correlation-id", "config": {"echo_downstream": True}}]))
    r = dp.get("/nothing-here")
    assert r.status == 404
    assert r.header("kong-request-id")  # the global plugin's header_filter ran


def test_no_plugins_no_overhead_headers(sluice_factory, upstream):
    dp = sluice_factory(declarative(
        [service("s", upstream.url, routes=[route("r", paths=["/r"])])]))
    r = dp.get("/r")
    assert r.status == 200
    names = {k.lower() for k, _ in json.loads(r.body)["headers"]}
    assert not names & {"x-consumer-id", "x-anonymous-consumer", "kong-request-id"}


def test_data_plane_plugins_property(sluice_factory, upstream):
    """`plugins` limits what a data plane runs: a configuration using
    another plugin does not load, with Kong's message."""
    d = declarative([service("s", upstream.url, routes=[route("r", paths=["/r"])])],
                    plugins=[{"name": "cors"}])
    dp = sluice_factory(d, conf={"plugins": "key-auth"}, start=False)
    dp.start(wait_ready=False)
    assert dp.wait_exit() == 2
    assert "plugin 'cors' not enabled" in dp.stderr()
    dp2 = sluice_factory(declarative(
        [service("s", upstream.url, routes=[route("r", paths=["/r"])])]),
        conf={"plugins": "bundled,nope"}, start=False)
    dp2.start(wait_ready=False)
    assert dp2.wait_exit() == 2
    assert "plugins: 'nope'" in dp2.stderr()
