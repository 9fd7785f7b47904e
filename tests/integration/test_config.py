"""Configuration checking: `-t` on valid and invalid declarative files (exit
codes, one error per line naming the entity path and field), kong.conf
errors, SLUICE_<KEY> environment overrides, and bad configuration at start.
"""

import json
import re
import socket

import pytest

from conftest import declarative, route, run_dp, service, wait_until


def write(tmp_path, decl, conf_lines=()):
    conf = tmp_path / "sluice.conf"
    conf.write_text("\n".join(["proxy_listen = 127.0.0.1:0", "status_listen = 127.0.0.1:0",
                               "workers = 1"] + list(conf_lines)) + "\n")
    path = tmp_path / "kong.json"
    if decl is not None:
        path.write_text(decl if isinstance(decl, str) else json.dumps(decl))
    return conf, path


def check(tmp_path, decl, conf_lines=(), env=None):
    conf, path = write(tmp_path, decl, conf_lines)
    args = ["-c", conf, "-p", tmp_path, "-t"]
    if decl is not None:
        args += ["--declarative", path]
    return run_dp(args, env)


def error_lines(res):
    return [line for line in res.stderr.splitlines() if line.strip()]


def assert_error(res, path, *words):
    assert res.returncode == 2, "exit %r; stderr:\n%s" % (res.returncode, res.stderr)
    lines = [line for line in error_lines(res) if path in line]
    assert lines, "no error line names %r; stderr:\n%s" % (path, res.stderr)
    for w in words:
        assert any(w in line for line in lines), "%r not in %r" % (w, lines)


def svc(routes=None, **kw):
    return service("s", "http://127.0.0.1:9", routes=routes, **kw)


GOOD = declarative([
    service("a", "http://127.0.0.1:9/base", routes=[
        route("a1", paths=["/a", r"~/a/\d+$"], methods=["GET"]),
        route("a2", hosts=["*.example.com", "example.org:8080"], headers={"x-v": ["1"]})]),
    {"name": "b", "protocol": "http", "host": "127.0.0.1", "port": 9},
], routes=[route("top", paths=["/top"], service="b")])


# ------------------------------------------------------------------ -t


def test_valid_json_file(tmp_path):
    res = check(tmp_path, GOOD)
    assert res.returncode == 0, res.stderr


def test_valid_yaml_file(tmp_path):
    res = check(tmp_path, """\
_format_version: "3.0"
services:
- name: y
  url: http://127.0.0.1:9
  routes:
  - name: yr
    paths: ["/y", "~/y/\\\\d+"]
    strip_path: false
""")
    assert res.returncode == 0, res.stderr


def test_config_only_valid(tmp_path):
    res = check(tmp_path, None)
    assert res.returncode == 0, res.stderr


def test_path_without_slash_message(tmp_path):
    res = check(tmp_path, declarative([svc([route("ok", paths=["/ok"]),
                                            route("bad", paths=["foo"])])]))
    assert_error(res, "services[0].routes[1].paths[0]",
                 "should start with: / (fixed path) or ~/ (regex path)")


@pytest.mark.parametrize("name,decl,path", [
    ("bad_regex", declarative([svc([route("r", paths=["~/("])])]),
     "services[0].routes[0].paths[0]"),
    ("missing_host", declarative([{"name": "nohost", "protocol": "http"}]), "services[0].host"),
    ("unknown_route_field", declarative([svc([route("r", paths=["/"], pathz=["/x"])])]),
     "services[0].routes[0].pathz"),
    ("port_out_of_range", declarative([{"name": "p", "host": "h", "port": 70000}]),
     "services[0].port"),
    ("bad_protocol", declarative([{"name": "p", "host": "h", "protocol": "gopher"}]),
     "services[0].protocol"),
    ("unknown_service_ref", declarative([], routes=[route("r", paths=["/"],
                                                           service="nope")]),
     "routes[0].service"),
    ("route_matches_nothing", declarative([svc([route("r", strip_path=True)])]),
     "services[0].routes[0]"),
    ("wildcard_in_middle", declarative([svc([route("r", hosts=["foo.*.com"])])]),
     "services[0].routes[0].hosts[0]"),
    ("host_header_forbidden", declarative([svc([route("r", headers={"host": ["x"]})])]),
     "services[0].routes[0].headers"),
    ("strip_path_not_bool", declarative([svc([route("r", paths=["/"], strip_path="yes")])]),
     "services[0].routes[0].strip_path"),
    ("bad_path_handling", declarative([svc([route("r", paths=["/"], path_handling="v2")])]),
     "services[0].routes[0].path_handling"),
    ("lowercase_method", declarative([svc([route("r", methods=["get"])])]),
     "services[0].routes[0].methods"),
    ("bad_retries", declarative([svc([route("r", paths=["/"])], retries=-1)]),
     "services[0].retries"),
])
def test_invalid_entity_named(tmp_path, name, decl, path):
    assert_error(check(tmp_path, decl), path)


def test_every_error_reported_one_per_line(tmp_path):
    res = check(tmp_path, declarative([
        svc([route("r1", paths=["bad1"]), route("r2", paths=["bad2"])]),
        {"name": "nohost"}]))
    assert res.returncode == 2
    lines = error_lines(res)
    for p in ("services[0].routes[0].paths[0]", "services[0].routes[1].paths[0]",
              "services[1].host"):
        assert sum(p in line for line in lines) == 1, (p, lines)


def test_duplicate_names(tmp_path):
    res = check(tmp_path, declarative([service("dup", "http://h"), service("dup", "http://h")]))
    assert res.returncode == 2, res.stderr
    assert "dup" in res.stderr


@pytest.mark.parametrize("text", [
    "{not json",
    "_format_version: \"3.0\"\nservices: [\n",
    "services: []\n",
    "_format_version: \"9.9\"\nservices: []\n",
    "",
])
def test_unparseable_or_unversioned(tmp_path, text):
    res = check(tmp_path, text)
    assert res.returncode == 2, res.stderr
    assert error_lines(res), "no reason given on stderr"


def test_missing_declarative_file(tmp_path):
    conf, _ = write(tmp_path, None)
    res = run_dp(["-c", conf, "-p", tmp_path, "--declarative", tmp_path / "nope.yml", "-t"])
    assert res.returncode == 2
    assert "nope.yml" in res.stderr


# ------------------------------------------------------------------ kong.conf


@pytest.mark.parametrize("line,key", [
    ("no_such_key = 1", "no_such_key"),
    ("workers = lots", "workers"),
    ("client_max_body_size = huge", "client_max_body_size"),
    ("keepalive_timeout = soon", "keepalive_timeout"),
    ("proxy_listen = not-an-address", "proxy_listen"),
    ("trusted_ips = 300.1.1.1", "trusted_ips"),
    ("upstream_keepalive_pool_size = -5", "upstream_keepalive_pool_size"),
    ("this line has no equals sign", "sluice.conf"),
])
def test_bad_conf(tmp_path, line, key):
    res = check(tmp_path, GOOD, [line])
    assert res.returncode == 2, res.stderr
    assert key in res.stderr, res.stderr


@pytest.mark.parametrize("line", [
    "client_max_body_size = 10m", "client_max_body_size = 0", "max_request_line = 8k",
    "max_header_size = 32k", "max_headers = 100", "keepalive_timeout = 500ms",
    "send_timeout = 60s", "drain_timeout = 10s", "trusted_ips = 10.0.0.0/8, ::1, 127.0.0.1",
    "headers = server_tokens, latency_tokens", "headers = off", "access_log = off",
    "workers = auto", "log_level = debug",
    "# a comment line", "",
])
def test_good_conf_values(tmp_path, line):
    res = check(tmp_path, GOOD, [line])
    assert res.returncode == 0, res.stderr


def test_env_overrides_conf_file_value(tmp_path):
    res = check(tmp_path, GOOD, ["workers = lots"], env={"SLUICE_WORKERS": "1"})
    assert res.returncode == 0, res.stderr


def test_bad_env_value_rejected(tmp_path):
    res = check(tmp_path, GOOD, env={"SLUICE_WORKERS": "lots"})
    assert res.returncode == 2
    assert "workers" in res.stderr.lower()


# ------------------------------------------------------------------ at start


def test_bad_conf_at_start_exits_2(tmp_path):
    conf, path = write(tmp_path, GOOD, ["no_such_key = 1"])
    res = run_dp(["-c", conf, "-p", tmp_path, "--declarative", path])
    assert res.returncode == 2
    assert "no_such_key" in res.stderr


def test_invalid_declarative_at_start_exits_2(tmp_path):
    conf, path = write(tmp_path, declarative([svc([route("bad", paths=["foo"])])]))
    res = run_dp(["-c", conf, "-p", tmp_path, "--declarative", path])
    assert res.returncode == 2
    assert "services[0].routes[0].paths[0]" in res.stderr


def test_address_in_use_fails(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        conf, path = write(tmp_path, GOOD, ["proxy_listen = 127.0.0.1:%d" % port])
        res = run_dp(["-c", conf, "-p", tmp_path, "--declarative", path], timeout=15)
    finally:
        s.close()
    assert res.returncode in (1, 2), res
    assert str(port) in res.stderr


def test_env_status_listen_override(sluice_factory, upstream):
    dp = sluice_factory(declarative([service("e", upstream.url, routes=[
        route("r", paths=["/"])])]), {"status_listen": "off"},
        env={"SLUICE_STATUS_LISTEN": "127.0.0.1:0"})
    assert dp.status is not None
    assert dp.status_get("/status/ready").status == 200


def test_env_declarative_config(sluice_factory, upstream, tmp_path):
    f = tmp_path / "from-env.json"
    f.write_text(json.dumps(declarative([service("e", upstream.url + "/env", routes=[
        route("r", paths=["/"])])])))
    dp = sluice_factory(None, env={"SLUICE_DECLARATIVE_CONFIG": str(f)})
    resp = dp.get("/x")
    assert resp.status == 200
    assert resp.json()["target"] == "/env/x"


def test_declarative_config_conf_key(sluice_factory, upstream, tmp_path):
    f = tmp_path / "from-conf.json"
    f.write_text(json.dumps(declarative([service("e", upstream.url + "/conf", routes=[
        route("r", paths=["/"])])])))
    dp = sluice_factory(None, {"declarative_config": str(f)})
    assert dp.get("/x").json()["target"] == "/conf/x"


def test_env_proxy_listen_override(sluice_factory, upstream):
    """The conf file names a port that is busy; the environment wins."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        busy = "127.0.0.1:%d" % s.getsockname()[1]
        dp = sluice_factory(declarative([service("e", upstream.url, routes=[
            route("r", paths=["/"])])]), {"proxy_listen": busy},
            env={"SLUICE_PROXY_LISTEN": "127.0.0.1:0"})
        assert dp.get("/").status == 200
    finally:
        s.close()


def test_format_1_1_regex_paths_migrated(sluice_factory, upstream):
    dp = sluice_factory(declarative([service("e", upstream.url, routes=[
        route("r", paths=[r"/users/\d+$"])])], _format_version="1.1"))
    assert dp.get("/users/12").status == 200
    assert dp.get("/users/ab").status == 404


def test_addr_files_written(sluice_factory, upstream):
    dp = sluice_factory(declarative([]))
    for name in ("proxy.addr", "status.addr"):
        text = (dp.prefix / name).read_text().strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", text), text


def test_error_log_to_file(sluice_factory, upstream, tmp_path):
    log = tmp_path / "error.log"
    dp = sluice_factory(declarative([service("e", upstream.url, routes=[
        route("r", paths=["/"])])]), {"error_log": str(log)})
    assert dp.get("/").status == 200
    wait_until(lambda: log.exists() and log.stat().st_size > 0, 5, what="error_log file")
    assert str(dp.proxy[1]) in log.read_text(), log.read_text()


def test_log_level_error_hides_info(sluice_factory, upstream):
    dp = sluice_factory(declarative([service("e", upstream.url, routes=[
        route("r", paths=["/"])])]), {"log_level": "error"})
    with dp.conn() as c:
        c.send(b"GET / HTTP/1.1\r\n\r\n")  # a 400, logged at info level or below
        c.read_response()
    assert dp.get("/").status == 200
    dp.stop()
    assert "[info]" not in dp.stderr() and "[debug]" not in dp.stderr(), dp.stderr()
