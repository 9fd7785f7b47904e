"""Plugins written with Kong's Python PDK (kong-pdk from PyPI) and Kong's
JavaScript PDK (kong-pdk from npm), unmodified, through a real sluice-dp: the
data plane starts their plugin servers and speaks MsgPack:1 to them.
"""

import json
import os
import signal
import sys
import time

import pytest

from conftest import REPO, declarative, route, service, wait_until
from bridge.pluginservers import server_pids

EXAMPLES = REPO / "pdk-examples"
PY_HELLO = EXAMPLES / "python" / "py-hello.py"
JS_DIR = EXAMPLES / "js"
JS_SERVER = JS_DIR / "node_modules" / ".bin" / "kong-js-pluginserver"

PY_ID = "5c0e2b1a-6d3f-4a8b-9c7d-1e2f3a4b5c01"
JS_ID = "5c0e2b1a-6d3f-4a8b-9c7d-1e2f3a4b5c02"


def require_pdks():
    try:
        import kong_pdk  # noqa: F401
    except ImportError:
        pytest.fail("Kong's Python PDK is missing: run `make deps` (pip install kong-pdk)",
                    pytrace=False)
    if not JS_SERVER.exists():
        pytest.fail("%s is missing: run `make deps` (npm ci in pdk-examples/js)" % JS_SERVER,
                    pytrace=False)


def pdk_conf(prefix, **per_server):
    py = sys.executable
    conf = {
        "plugins": "bundled,py-hello,js-hello",
        "pluginserver_names": "py-hello,js",
        "pluginserver_py_hello_query_cmd": "%s %s -dump" % (py, PY_HELLO),
        "pluginserver_py_hello_start_cmd": "%s %s -kong-prefix %s" % (py, PY_HELLO, prefix),
        "pluginserver_py_hello_socket": str(prefix / "py-hello.sock"),
        "pluginserver_js_query_cmd": "%s -d %s --dump-all-plugins" % (JS_SERVER, JS_DIR),
        "pluginserver_js_start_cmd": "%s -d %s --kong-prefix %s" % (JS_SERVER, JS_DIR, prefix),
        "pluginserver_js_socket": str(prefix / "js_pluginserver.sock"),
    }
    for key, value in per_server.items():
        conf[key] = value
    return conf


def start(sluice_factory, decl, **per_server):
    require_pdks()
    s = sluice_factory(decl, start=False)
    s.conf.update(pdk_conf(s.prefix, **per_server))
    s.write_conf()
    return s.start()


def plugin(name, config, pid, **scope):
    p = {"name": name, "id": pid, "config": config}
    p.update(scope)
    return p


def test_python_plugin_access_exit_and_log(sluice_factory, upstream, tmp_path):
    logf = tmp_path / "py.jsonl"
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("py-hello", {"message": "salut", "deny": True,
                                                    "log_path": str(logf)}, PY_ID)])
    s = start(sluice_factory, decl)
    r = s.get("/py/path", host="example.org")
    assert r.status == 200, r
    assert r.header("x-hello-from-python") == "Python says salut to example.org"
    # kong.response.exit with a table body: JSON, its headers, the status.
    r = s.get("/py/denied", headers=[("x-deny", "yes")])
    assert r.status == 403
    assert r.json() == {"message": "denied by py-hello"}
    assert r.header("x-denied-by") == "py-hello"
    assert r.header("content-type") == "application/json; charset=utf-8"
    # kong.response.error, which the ProtoBuf table lacks.
    r = s.get("/py/failed", headers=[("x-fail", "1")])
    assert r.status == 503
    assert r.json()["message"] == "py-hello is unavailable"
    assert r.json()["request_id"] == r.header("x-kong-request-id")
    # The log phase ran after each response, with the request and the status.
    lines = wait_until(lambda: logf.exists() and len(logf.read_text().splitlines()) >= 3
                       and logf.read_text().splitlines(), what="three log lines")
    entries = [json.loads(l) for l in lines]
    assert {"method": "GET", "path": "/py/path", "status": 200} in entries
    assert {"method": "GET", "path": "/py/denied", "status": 403} in entries
    assert {"method": "GET", "path": "/py/failed", "status": 503} in entries


def test_python_pdk_sees_nil_for_what_is_absent(sluice_factory, upstream):
    """Kong answers nil (None) for a header the request does not have, not ""."""
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("py-hello", {"header": "x-absent"}, PY_ID)])
    s = start(sluice_factory, decl)
    assert s.get("/").header("x-hello-from-python") == "Python says hello to nobody"
    # A present empty value is "" (the field's trailing space is trimmed as
    # HTTP trims it).
    r = s.get("/", headers=[("X-Absent", "")])
    assert r.header("x-hello-from-python") == "Python says hello to"


def test_javascript_plugin_access_and_exit(sluice_factory, upstream):
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("js-hello", {"message": "hola", "deny": True}, JS_ID)])
    s = start(sluice_factory, decl)
    r = s.get("/js", headers=[("X-Who", "w")], host="js.test")
    assert r.status == 200, r
    assert r.header("x-hello-from-javascript") == "Javascript says hola to js.test"
    r = s.get("/js", headers=[("x-deny", "1")])
    assert r.status == 403
    assert r.json() == {"message": "denied by js-hello"}
    assert r.header("x-denied-by") == "js-hello"


def test_python_and_javascript_together_over_keepalive(sluice_factory, upstream):
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("py-hello", {"header": "x-name"}, PY_ID),
                                plugin("js-hello", {"header": "x-name"}, JS_ID)])
    s = start(sluice_factory, decl)
    with s.conn() as c:
        for i in range(30):
            r = c.request("GET", "/k%d" % i, headers=[("X-Name", "n%d" % i)])
            assert r.status == 200
            assert r.header("x-hello-from-python") == "Python says hello to n%d" % i
            assert r.header("x-hello-from-javascript") == "Javascript says hello to n%d" % i


def test_config_change_starts_a_new_instance(sluice_factory, upstream):
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("py-hello", {"message": "v1"}, PY_ID)])
    s = start(sluice_factory, decl)
    assert s.get("/").header("x-hello-from-python") == "Python says v1 to sluice.test"
    decl["plugins"][0]["config"]["message"] = "v2"
    s.write_declarative(decl)
    s.reload()
    wait_until(lambda: s.get("/").header("x-hello-from-python") ==
               "Python says v2 to sluice.test", what="the new config")
    for _ in range(10):
        assert s.get("/").header("x-hello-from-python") == "Python says v2 to sluice.test"


def test_killed_python_server_recovers(sluice_factory, upstream):
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("py-hello", {"message": "x"}, PY_ID)])
    s = start(sluice_factory, decl)
    assert s.get("/").header("x-hello-from-python") == "Python says x to sluice.test"

    def py_pids():
        return server_pids(s.pid, b"py-hello.py")

    old = wait_until(py_pids, what="the Python server")[0]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: [p for p in py_pids() if p != old], timeout=5,
               what="a restarted Python server")
    wait_until(lambda: s.get("/").header("x-hello-from-python") == "Python says x to sluice.test",
               timeout=5, what="the plugin to answer again")
    for _ in range(10):
        assert s.get("/").header("x-hello-from-python") == "Python says x to sluice.test"
    assert "pluginserver py-hello (pid %d) killed by signal 9" % old in s.stderr()


def test_dumps_register_msgpack_plugins(sluice_factory, upstream):
    """Both servers dump a bare JSON array (MsgPack:1); the data plane checks a
    plugin's configuration against the dumped schema."""
    decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                       plugins=[plugin("py-hello", {"message": 42}, PY_ID)])
    require_pdks()
    s = sluice_factory(decl, start=False)
    s.conf.update(pdk_conf(s.prefix))
    s.write_conf()
    from conftest import run_dp
    r = run_dp(["-c", s.conf_path, "-p", s.prefix, "--declarative", s.decl_path, "-t"])
    assert r.returncode != 0
    assert "message" in r.stderr and "string" in r.stderr, r.stderr
