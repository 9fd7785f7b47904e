"""The Go example plugins (go-pdk-examples/, built with Kong's go-pdk) through a
real sluice-dp: each one's documented behaviour, with the data plane starting
and supervising the real plugin-server binaries over ProtoBuf:1.
"""

import email.utils
import hashlib
import hmac
import json
import os
import signal
import time

import pytest

from conftest import declarative, route, service, wait_until
from bridge.pluginservers import go_plugin_conf, server_pids

HELLO_ID = "7a1d0c9e-1f3b-4c8e-9a55-0b2f4d6e8a01"
AUTH_ID = "7a1d0c9e-1f3b-4c8e-9a55-0b2f4d6e8a02"
QUOTA_ID = "7a1d0c9e-1f3b-4c8e-9a55-0b2f4d6e8a03"
REWRITE_ID = "7a1d0c9e-1f3b-4c8e-9a55-0b2f4d6e8a04"
LOG_ID = "7a1d0c9e-1f3b-4c8e-9a55-0b2f4d6e8a05"
KEY_AUTH_ID = "7a1d0c9e-1f3b-4c8e-9a55-0b2f4d6e8a06"

ALL = ["hello", "api-auth", "quota", "body-rewrite", "json-log"]


def plugin(name, config, pid, **scope):
    p = {"name": name, "id": pid, "config": config}
    p.update(scope)
    return p


def start(sluice_factory, tmp_path, decl, names=ALL, **per_server):
    s = sluice_factory(decl, start=False)
    s.conf.update(go_plugin_conf(s.prefix, names, **per_server))
    s.write_conf()
    return s.start()


def plugin_server_pids(dp_pid, name):
    """The Go example server `name` the data plane started."""
    return server_pids(dp_pid, b"/go-plugins/" + name.encode())


# ----------------------------------------------------------------- hello


def test_hello_sets_its_header_from_config(sluice_factory, upstream, tmp_path):
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("hello", {"message": "bonjour"}, HELLO_ID)])
    s = start(sluice_factory, tmp_path, decl, names=["hello"])
    r = s.get("/anything", host="example.com")
    assert r.status == 200, r
    assert r.header("x-hello-from-go") == "Go says bonjour to example.com"
    # The upstream got the request untouched by the plugin.
    assert r.json()["target"] == "/anything"
    # Many requests over keep-alive connections reuse the plugin's connections.
    with s.conn() as c:
        for i in range(50):
            r = c.request("GET", "/x%d" % i, host="h%d.test" % i)
            assert r.header("x-hello-from-go") == "Go says bonjour to h%d.test" % i


def test_config_change_reaches_a_new_instance(sluice_factory, upstream, tmp_path):
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("hello", {"message": "one"}, HELLO_ID)])
    s = start(sluice_factory, tmp_path, decl, names=["hello"])
    assert s.get("/").header("x-hello-from-go") == "Go says one to sluice.test"
    decl["plugins"][0]["config"]["message"] = "two"
    s.write_declarative(decl)
    s.reload()
    wait_until(lambda: s.get("/").header("x-hello-from-go") == "Go says two to sluice.test",
               what="the new config to be served")
    # Every worker serves the new config.
    for _ in range(20):
        assert s.get("/").header("x-hello-from-go") == "Go says two to sluice.test"


def test_route_scoped_instances_are_separate(sluice_factory, upstream, tmp_path):
    decl = declarative([service("echo", upstream.url, routes=[
        route("a", paths=["/a"], plugins=[plugin("hello", {"message": "from a"}, HELLO_ID)]),
        route("b", paths=["/b"], plugins=[
            plugin("hello", {"message": "from b", "header": "x-who"}, AUTH_ID)]),
        route("c", paths=["/c"]),
    ])])
    s = start(sluice_factory, tmp_path, decl, names=["hello"])
    assert s.get("/a").header("x-hello-from-go") == "Go says from a to sluice.test"
    assert s.get("/b", headers=[("X-Who", "ann")]).header("x-hello-from-go") == \
        "Go says from b to ann"
    assert s.get("/c").header("x-hello-from-go") is None


# -------------------------------------------------------------- api-auth


def auth_decl(upstream, config):
    return declarative([service("echo", upstream.url, routes=[
        route("r", paths=["/"], plugins=[plugin("api-auth", config, AUTH_ID)])])])


def test_api_auth_keys(sluice_factory, upstream, tmp_path):
    s = start(sluice_factory, tmp_path, auth_decl(upstream, {
        "keys": [{"key": "k-alice", "identity": "alice"}], "hide_credentials": True}),
        names=["api-auth"])
    r = s.get("/")
    assert r.status == 401
    assert r.json() == {"message": "No API key found in request"}
    assert r.header("content-type") == "application/json; charset=utf-8"
    r = s.get("/", headers=[("x-api-key", "wrong")])
    assert r.status == 403
    assert r.json() == {"message": "Invalid API key"} or r.json()["message"]
    r = s.get("/", headers=[("x-api-key", "k-alice"), ("x-credential-identifier", "forged")])
    assert r.status == 200, r
    seen = {k.lower(): v for k, v in r.json()["headers"]}
    assert seen["x-credential-identifier"] == "alice"
    assert "x-api-key" not in seen  # hide_credentials


def test_api_auth_hmac_signature(sluice_factory, upstream, tmp_path):
    secret = "s3cret"
    s = start(sluice_factory, tmp_path, auth_decl(upstream, {
        "hmac_secret": secret, "hmac_identity": "signer"}), names=["api-auth"])
    date = email.utils.formatdate(usegmt=True)
    sig = hmac.new(secret.encode(), ("GET\n/signed\n%s" % date).encode(),
                   hashlib.sha256).hexdigest()
    r = s.get("/signed", headers=[("Date", date), ("x-signature", sig)])
    assert r.status == 200, r
    seen = {k.lower(): v for k, v in r.json()["headers"]}
    assert seen["x-credential-identifier"] == "signer"
    r = s.get("/signed", headers=[("Date", date), ("x-signature", "00" * 32)])
    assert r.status == 403
    assert r.json() == {"message": "Invalid signature"}
    stale = email.utils.formatdate(time.time() - 3600, usegmt=True)
    sig = hmac.new(secret.encode(), ("GET\n/signed\n%s" % stale).encode(),
                   hashlib.sha256).hexdigest()
    r = s.get("/signed", headers=[("Date", stale), ("x-signature", sig)])
    assert r.status == 403


def test_api_auth_exit_runs_log_plugins(sluice_factory, upstream, tmp_path):
    """kong.response.exit from a Go plugin is the request's answer: later access
    plugins do not run, log plugins still see it (as in Kong)."""
    logf = tmp_path / "exits.jsonl"
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("api-auth", {"keys": []}, AUTH_ID),
                                plugin("hello", {"message": "m"}, HELLO_ID),
                                plugin("json-log", {"path": str(logf)}, LOG_ID)])
    s = start(sluice_factory, tmp_path, decl, names=["api-auth", "hello", "json-log"])
    r = s.get("/")
    assert r.status == 401
    assert r.header("x-hello-from-go") is None  # hello (priority 1) never ran
    line = wait_until(lambda: logf.exists() and logf.read_text().strip(),
                      what="json-log's line")
    entry = json.loads(line.splitlines()[-1])
    assert entry["response"]["status"] == 401


# ----------------------------------------------------------------- quota


def test_quota_counts_in_the_plugin_server(sluice_factory, upstream, tmp_path):
    decl = declarative([service("echo", upstream.url, routes=[
        route("r", paths=["/"], plugins=[
            plugin("quota", {"minute": 5, "limit_by": "ip"}, QUOTA_ID)])])])
    s = start(sluice_factory, tmp_path, decl, names=["quota"])
    left = 60 - (time.time() % 60)
    if left < 5:
        time.sleep(left + 0.1)
    statuses = []
    for _ in range(7):
        r = s.get("/")
        statuses.append(r.status)
    assert statuses == [200] * 5 + [429] * 2, statuses
    assert r.header("x-ratelimit-limit-minute") == "5"
    assert r.header("x-ratelimit-remaining-minute") == "0"
    assert int(r.header("retry-after")) >= 1


# ---------------------------------------------------------- body-rewrite


def test_body_rewrite_in_the_response_phase(sluice_factory, upstream, tmp_path):
    decl = declarative([service("echo", upstream.url, routes=[
        route("r", paths=["/"], plugins=[plugin("body-rewrite", {
            "replace": [{"from": "hello", "to": "HELLO, WORLD"}],
            "envelope": "data"}, REWRITE_ID)])])])
    s = start(sluice_factory, tmp_path, decl, names=["body-rewrite"])
    r = s.get("/payload?text=say%20hello&ct=text/plain")
    assert r.status == 200, r
    assert r.body == b"say HELLO, WORLD"
    assert r.header("content-length") == str(len(r.body))
    r = s.get("/payload?size=40")
    assert r.status == 200
    doc = r.json()
    assert doc["data"]["size"] == 40 and doc["status"] == 200
    # Upstream status and headers survive the rewrite.
    r = s.get("/payload?text=hello&ct=text/plain&status=201")
    assert r.status == 201 and r.body == b"HELLO, WORLD"
    assert r.header("x-upstream-name") == "up1"


# -------------------------------------------------------------- json-log


def test_json_log_sees_the_full_request(sluice_factory, upstream, tmp_path):
    logf = tmp_path / "access.jsonl"
    decl = declarative([service("echo", upstream.url, routes=[
        route("logged", paths=["/logged"],
              plugins=[plugin("json-log", {"path": str(logf)}, LOG_ID)])])])
    s = start(sluice_factory, tmp_path, decl, names=["json-log"])
    for i in range(3):
        r = s.get("/logged/%d?q=%d" % (i, i), headers=[("X-Trace", "t%d" % i)])
        assert r.status == 200
    lines = wait_until(lambda: logf.exists() and len(logf.read_text().splitlines()) >= 3
                       and logf.read_text().splitlines(), what="three log lines")
    entries = [json.loads(l) for l in lines]
    by_uri = {e["request"]["uri"]: e for e in entries}
    e = by_uri["/logged/1?q=1"]
    assert e["request"]["method"] == "GET"
    assert e["request"]["headers"]["x-trace"] == "t1"
    assert e["response"]["status"] == 200
    assert e["route"]["name"] == "logged"
    assert e["service"]["name"] == "echo"


def test_log_phase_does_not_delay_the_client(sluice_factory, upstream, tmp_path):
    """The client has its response before the log event ran: a keep-alive
    connection goes on at once, and many log events in flight are fine."""
    logf = tmp_path / "fast.jsonl"
    decl = declarative([service("echo", upstream.url, routes=[
        route("r", paths=["/"], plugins=[plugin("json-log", {"path": str(logf)}, LOG_ID)])])])
    s = start(sluice_factory, tmp_path, decl, names=["json-log"])
    with s.conn() as c:
        for i in range(100):
            assert c.request("GET", "/n%d" % i).status == 200
    wait_until(lambda: logf.exists() and len(logf.read_text().splitlines()) == 100,
               what="100 log lines")


# ------------------------------------------------------------ supervision


def test_plugin_servers_stop_with_the_data_plane(sluice_factory, upstream, tmp_path):
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("hello", {"message": "x"}, HELLO_ID)])
    s = start(sluice_factory, tmp_path, decl, names=["hello"])
    pids = wait_until(lambda: plugin_server_pids(s.pid, "hello"), what="the hello server")
    assert len(pids) == 1
    assert "[hello:%d] " % pids[0] in s.stderr() or True  # its output is prefixed
    s.stop()
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or \
            open("/proc/%d/stat" % pid).read().split()[2] == "Z"


def test_killed_plugin_server_is_restarted(sluice_factory, upstream, tmp_path):
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("hello", {"message": "x"}, HELLO_ID)])
    s = start(sluice_factory, tmp_path, decl, names=["hello"])
    assert s.get("/").header("x-hello-from-go") == "Go says x to sluice.test"
    old = wait_until(lambda: plugin_server_pids(s.pid, "hello"), what="the hello server")[0]
    os.kill(old, signal.SIGKILL)
    new = wait_until(lambda: [p for p in plugin_server_pids(s.pid, "hello") if p != old],
                     timeout=5, what="a restarted hello server")[0]
    # The new server knows none of the old instances: the data plane starts
    # them again on its own.
    wait_until(lambda: s.get("/").header("x-hello-from-go") == "Go says x to sluice.test",
               timeout=3, what="the plugin to answer again")
    for _ in range(20):
        assert s.get("/").header("x-hello-from-go") == "Go says x to sluice.test"
    err = s.stderr()
    assert "pluginserver hello (pid %d) killed by signal 9" % old in err
    assert "[hello:%d]" % new in err


def test_missing_server_gives_500_not_a_crash(sluice_factory, upstream, tmp_path):
    """A server that is not running (here: managed externally, never started)
    fails requests for its plugin with Kong's 500, after the reconnect window."""
    decl = declarative([service("echo", upstream.url, routes=[
        route("p", paths=["/p"], plugins=[plugin("hello", {"message": "x"}, HELLO_ID)]),
        route("q", paths=["/q"])])])
    s = start(sluice_factory, tmp_path, decl, names=["hello"], start_cmd="")
    t0 = time.monotonic()
    r = s.get("/p")
    assert r.status == 500
    assert r.json()["message"] == "An unexpected error occurred"
    assert time.monotonic() - t0 < 3
    assert s.get("/q").status == 200
    assert "cannot connect to" in s.stderr()


# --------------------------------------------------------------- rewrite


def test_rewrite_runs_for_global_instances_only(sluice_factory, upstream, tmp_path):
    """Kong runs rewrite handlers of global plugins only, before the router;
    a route-scoped instance of the same plugin runs access but not rewrite."""
    check_id = "7a1d0c9e-1f3b-4c8e-9a55-0b2f4d6e8a07"
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("pdk-check", {"skip": ["kong.log.crit", "kong.log.alert"]},
                                       check_id)])
    s = start(sluice_factory, tmp_path, decl, names=["pdk-check"])
    r = s.get("/global/path")
    assert r.status == 200, r
    assert r.header("x-pdk-check-rewrite") == "/global/path"
    seen = {k.lower(): v for k, v in r.json()["headers"]}
    assert seen["x-pdk-check-rewrite"] == "ran"
    assert r.header("x-pdk-check-access")  # access ran after it

    # The same plugin scoped to the route: no rewrite.
    decl = declarative([service("echo", upstream.url, routes=[
        route("r", paths=["/"], plugins=[plugin(
            "pdk-check", {"skip": ["kong.log.crit", "kong.log.alert"]}, check_id)])])])
    s.write_declarative(decl)
    s.reload()
    wait_until(lambda: s.get("/x").header("x-pdk-check-rewrite") is None,
               what="the route-scoped configuration")
    r = s.get("/scoped")
    assert r.header("x-pdk-check-access")
    assert "x-pdk-check-rewrite" not in {k.lower() for k, _ in r.json()["headers"]}


def test_rewrite_exit_answers_before_routing(sluice_factory, upstream, tmp_path):
    """A plugin that fails in rewrite (its server unreachable) answers 500 even
    for a path no route matches: the router never ran."""
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/r"])])],
                       plugins=[plugin("pdk-check", {}, "7a1d0c9e-1f3b-4c8e-9a55-0b2f4d6e8a08")])
    s = start(sluice_factory, tmp_path, decl, names=["pdk-check"], start_cmd="",
              timeout="300ms")
    r = s.get("/nowhere")
    assert r.status == 500
    assert r.json()["message"] == "An unexpected error occurred"


def test_misspelt_server_setting_is_refused(sluice_factory, upstream):
    from conftest import run_dp
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])])
    s = sluice_factory(decl, start=False)
    s.conf.update(go_plugin_conf(s.prefix, ["hello"]))
    s.conf["pluginserver_hello_timout"] = "5s"
    s.write_conf()
    r = run_dp(["-c", s.conf_path, "-p", s.prefix, "--declarative", s.decl_path, "-t"])
    assert r.returncode == 2
    assert "pluginserver_hello_timout: not a setting of a server in pluginserver_names" in r.stderr
