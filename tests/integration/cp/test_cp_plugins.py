"""Plugin configuration on the control plane: the `plugins` property, bundled
plugin schemas (defaults filled, Kong's field errors), external plugins
described by a plugin server's query command (`-dump`), and the plugin
endpoints (GET /, /plugins/enabled, /schemas/plugins/...)."""
import json
import os
import stat
from pathlib import Path

from .conftest import run_cp

GO_HELLO_DUMP = {
    "Protocol": "ProtoBuf:1",
    "SocketPath": "/usr/local/kong/go-hello.socket",
    "Plugins": [{
        "Name": "go-hello", "Phases": ["access", "log"], "Version": "0.2", "Priority": 1,
        "Schema": {"name": "go-hello", "fields": [{"config": {"type": "record", "fields": [
            {"message": {"type": "string"}},
            {"count": {"type": "integer", "between": [0, 2147483648]}},
            {"tags": {"type": "array", "elements": {"type": "string"}}},
            {"headers": {"type": "map", "keys": {"type": "string"},
                         "values": {"type": "string"}}},
            {"nested": {"type": "record", "fields": [{"on": {"type": "boolean"}}]}},
        ]}}]},
    }],
}

PY_DUMP = [{
    "Name": "py-greet", "Phases": ["access"], "Version": "1.0.0", "Priority": 100,
    "Schema": {"name": "py-greet", "fields": [{"config": {"type": "record", "fields": [
        {"greeting": {"type": "string", "default": "hello", "one_of": ["hello", "hi"]}},
    ]}}]},
}]


def query_script(tmp_path, name, doc=None, raw=None, status=0):
    """A query command that prints a dump, as a plugin server's -dump does."""
    out = tmp_path / (name + ".json")
    out.write_text(raw if raw is not None else json.dumps(doc))
    script = tmp_path / name
    script.write_text("#!/bin/sh\ncat '%s'\nexit %d\n" % (out, status))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def external_env(tmp_path):
    return {
        "SLUICE_PLUGINSERVER_NAMES": "go-hello,py",
        "SLUICE_PLUGINSERVER_GO_HELLO_QUERY_CMD": query_script(tmp_path, "go-hello",
                                                               GO_HELLO_DUMP) + " -dump",
        "SLUICE_PLUGINSERVER_PY_QUERY_CMD": query_script(tmp_path, "py", PY_DUMP),
        "SLUICE_PLUGINS": "bundled,go-hello,py-greet",
    }


def test_bundled_plugin_config_gets_defaults(cp):
    r = cp.post("/plugins", {"name": "key-auth"})
    assert r.status == 201, r
    cfg = r.json["config"]
    assert cfg["key_names"] == ["apikey"]
    assert cfg["key_in_header"] is True and cfg["key_in_query"] is True
    assert cfg["key_in_body"] is False and cfg["hide_credentials"] is False
    assert cfg["anonymous"] is None
    r = cp.post("/plugins", {"name": "rate-limiting", "config": {"second": 5}})
    assert r.status == 201, r
    cfg = r.json["config"]
    assert cfg["policy"] == "local" and cfg["limit_by"] == "consumer"
    assert cfg["fault_tolerant"] is True and cfg["error_code"] == 429
    assert cfg["redis"]["port"] == 6379
    # what was stored is what is read back
    assert cp.get("/plugins/" + r.json["id"]).json["config"] == cfg


def test_bundled_plugin_bad_config(cp):
    r = cp.post("/plugins", {"name": "key-auth", "config": {"key_names": ["ok", "bad name"]}})
    assert r.status == 400 and r.json["code"] == 2 and r.json["name"] == "schema violation"
    assert "bad name" in r.json["fields"]["config"]["key_names"][1]
    r = cp.post("/plugins", {"name": "rate-limiting", "config": {"minute": "many"}})
    assert r.status == 400
    assert r.json["fields"]["config"]["minute"] == "expected a number"
    r = cp.post("/plugins", {"name": "rate-limiting", "config": {"bogus": 1, "minute": 1}})
    assert r.status == 400 and r.json["fields"]["config"]["bogus"] == "unknown field"
    r = cp.post("/plugins", {"name": "acl", "config": {}})
    assert r.status == 400 and r.json["code"] == 2
    r = cp.post("/consumers", {"username": "bob"})
    r = cp.post("/consumers/bob/plugins", {"name": "key-auth"})
    assert r.status == 400 and r.json["fields"]["consumer"] == "value must be null"
    assert cp.get("/plugins").json["data"] == []


def test_unknown_plugin_not_enabled(cp):
    r = cp.post("/plugins", {"name": "no-such-plugin"})
    assert r.status == 400 and r.json["code"] == 2
    assert r.json["fields"]["name"] == ("plugin 'no-such-plugin' not enabled; add it to the "
                                        "'plugins' configuration property")
    doc = {"_format_version": "3.0", "plugins": [{"name": "no-such-plugin"}]}
    r = cp.post("/config", doc)
    assert r.status == 400 and r.json["code"] == 14
    assert "no-such-plugin" in json.dumps(r.json)
    doc = {"_format_version": "3.0", "plugins": [{"name": "cors", "config": {"max_age": "x"}}]}
    r = cp.post("/config", doc)
    assert r.status == 400 and r.json["code"] == 14
    assert r.json["fields"]["plugins"][0]["config"]["max_age"] == "expected a number"


def test_plugin_schema_endpoints(cp):
    r = cp.get("/schemas/plugins/key-auth")
    assert r.status == 200
    fields = {list(f)[0]: list(f.values())[0] for f in r.json["fields"]}
    cfg = {list(f)[0]: list(f.values())[0] for f in fields["config"]["fields"]}
    assert cfg["key_names"]["default"] == ["apikey"]
    assert cfg["hide_credentials"]["type"] == "boolean"
    r = cp.post("/schemas/plugins/validate", {"name": "cors", "config": {"origins": ["*"]}})
    assert r.status == 200 and r.json == {"message": "schema validation successful"}
    r = cp.post("/schemas/plugins/validate", {"name": "cors", "config": {"max_age": "x"}})
    assert r.status == 400 and r.json["fields"]["config"]["max_age"] == "expected a number"
    assert cp.get("/plugins").json["data"] == []


def test_form_encoded_plugin_config(cp):
    r = cp.request("POST", "/plugins", form=[("name", "key-auth"), ("config.key_names", "k1"),
                                             ("config.key_names", "k2"),
                                             ("config.hide_credentials", "true")])
    assert r.status == 201, r
    assert r.json["config"]["key_names"] == ["k1", "k2"]
    assert r.json["config"]["hide_credentials"] is True


def test_plugins_property_limits_the_set(cp_factory):
    cp = cp_factory(env={"SLUICE_PLUGINS": "key-auth, acl"})
    assert cp.get("/plugins/enabled").json == {"enabled_plugins": ["acl", "key-auth"]}
    assert sorted(cp.get("/").json["plugins"]["available_on_server"]) == ["acl", "key-auth"]
    assert cp.post("/plugins", {"name": "key-auth"}).status == 201
    r = cp.post("/plugins", {"name": "cors"})
    assert r.status == 400
    assert r.json["fields"]["name"].startswith("plugin 'cors' not enabled")
    assert cp.get("/schemas/plugins/cors").status == 404
    off = cp_factory(env={"SLUICE_PLUGINS": "off"})
    assert off.get("/plugins/enabled").json == {"enabled_plugins": []}
    assert off.post("/plugins", {"name": "key-auth"}).status == 400


def test_plugins_property_errors(tmp_path):
    r = run_cp(["-t", "-p", tmp_path / "p"], env={"SLUICE_PLUGINS": "bundled,nope"})
    assert r.returncode == 2
    assert "plugins: 'nope' is neither a bundled plugin nor provided by a plugin server" in r.stderr
    r = run_cp(["-t", "-p", tmp_path / "p"], env={"SLUICE_PLUGINS": "off,cors"})
    assert r.returncode == 2 and "'off' cannot be combined" in r.stderr


def test_external_plugins_from_query_commands(cp_factory, tmp_path):
    cp = cp_factory(env=external_env(tmp_path))
    avail = cp.get("/").json["plugins"]["available_on_server"]
    assert avail["go-hello"] == {"priority": 1, "version": "0.2"}
    assert avail["py-greet"] == {"priority": 100, "version": "1.0.0"}
    assert "key-auth" in avail
    r = cp.post("/plugins", {"name": "go-hello", "config": {
        "message": "hi", "count": 3, "tags": ["a"], "headers": {"x": "y"},
        "nested": {"on": True}}})
    assert r.status == 201, r
    assert r.json["config"]["message"] == "hi"
    r = cp.post("/plugins", {"name": "go-hello", "config": {"message": 5, "count": -1}})
    assert r.status == 400
    assert r.json["fields"]["config"]["message"] == "expected a string"
    assert r.json["fields"]["config"]["count"] == "value should be between 0 and 2147483648"
    r = cp.post("/plugins", {"name": "go-hello", "config": {"nope": 1}})
    assert r.status == 400 and r.json["fields"]["config"]["nope"] == "unknown field"
    r = cp.post("/plugins", {"name": "py-greet"})
    assert r.status == 201 and r.json["config"] == {"greeting": "hello"}
    r = cp.post("/plugins", {"name": "py-greet", "instance_name": "g2",
                             "config": {"greeting": "yo"}})
    assert r.status == 400
    assert r.json["fields"]["config"]["greeting"] == "expected one of: hello, hi"
    r = cp.get("/schemas/plugins/go-hello")
    assert r.status == 200
    assert r.json["fields"][0]["config"]["fields"][0] == {"message": {"type": "string"}}
    assert cp.get("/").json["plugins"]["enabled_in_cluster"] == ["go-hello", "py-greet"]


def test_external_plugin_must_be_listed_in_plugins(cp_factory, tmp_path):
    env = external_env(tmp_path)
    env["SLUICE_PLUGINS"] = "bundled"
    cp = cp_factory(env=env)
    r = cp.post("/plugins", {"name": "go-hello"})
    assert r.status == 400 and r.json["fields"]["name"].startswith("plugin 'go-hello' not enabled")


def test_query_command_from_conf_file(cp_factory, tmp_path):
    conf = tmp_path / "cp.conf"
    conf.write_text("plugins = bundled,py-greet\npluginserver_names = py\n"
                    "pluginserver_py_query_cmd = %s\n" % query_script(tmp_path, "py", PY_DUMP))
    cp = cp_factory(conf=conf)
    assert cp.post("/plugins", {"name": "py-greet"}).status == 201
    assert cp.get("/").json["configuration"]["pluginserver_py_query_cmd"].endswith("/py")


def test_bad_query_commands(tmp_path):
    def check(env, *needles):
        r = run_cp(["-t", "-p", tmp_path / "p"], env=env)
        assert r.returncode == 2, r.stderr
        for n in needles:
            assert n in r.stderr, r.stderr

    check({"SLUICE_PLUGINSERVER_NAMES": "gone"},
          "pluginserver_gone_query_cmd: query command undefined for pluginserver gone")
    check({"SLUICE_PLUGINSERVER_NAMES": "x",
           "SLUICE_PLUGINSERVER_X_QUERY_CMD": query_script(tmp_path, "x", GO_HELLO_DUMP,
                                                           status=3)},
          "pluginserver x:", "exited with status 3")
    check({"SLUICE_PLUGINSERVER_NAMES": "x",
           "SLUICE_PLUGINSERVER_X_QUERY_CMD": "/nonexistent/binary -dump"},
          "status 127 (command not found)")
    check({"SLUICE_PLUGINSERVER_NAMES": "x",
           "SLUICE_PLUGINSERVER_X_QUERY_CMD": query_script(tmp_path, "x", raw="not json{")},
          "pluginserver x: the plugin info is not JSON")
    check({"SLUICE_PLUGINSERVER_NAMES": "x",
           "SLUICE_PLUGINSERVER_X_QUERY_CMD": "head -c 5000000 /dev/zero"},
          "printed more than the size limit")
    bad = json.loads(json.dumps(GO_HELLO_DUMP))
    bad["Plugins"][0]["Schema"]["fields"][0]["config"]["fields"][0]["message"]["type"] = "blob"
    check({"SLUICE_PLUGINSERVER_NAMES": "x",
           "SLUICE_PLUGINSERVER_X_QUERY_CMD": query_script(tmp_path, "x", bad)},
          "Plugins[0].Schema.config.message: type: 'blob' is not one of")
    bad = json.loads(json.dumps(GO_HELLO_DUMP))
    bad["Plugins"][0]["Phases"] = ["access", "teleport"]
    check({"SLUICE_PLUGINSERVER_NAMES": "x",
           "SLUICE_PLUGINSERVER_X_QUERY_CMD": query_script(tmp_path, "x", bad)},
          "Plugins[0].Phases[1]: unknown phase")
    bad = json.loads(json.dumps(GO_HELLO_DUMP))
    bad["Plugins"][0]["Name"] = "key-auth"
    check({"SLUICE_PLUGINSERVER_NAMES": "x",
           "SLUICE_PLUGINSERVER_X_QUERY_CMD": query_script(tmp_path, "x", bad)},
          "a plugin named 'key-auth' is already known")
    deep = {"type": "string"}
    for _ in range(40):
        deep = {"type": "record", "fields": [{"f": deep}]}
    bad = json.loads(json.dumps(GO_HELLO_DUMP))
    bad["Plugins"][0]["Schema"]["fields"][0]["config"]["fields"] = [{"deep": deep}]
    check({"SLUICE_PLUGINSERVER_NAMES": "x",
           "SLUICE_PLUGINSERVER_X_QUERY_CMD": query_script(tmp_path, "x", bad)},
          "nested deeper than 16 levels")


GO_PLUGINS = Path(os.environ.get("SLUICE_BUILD", Path(__file__).resolve().parents[3] / "build")) \
    / "bin" / "go-plugins"


def test_go_pdk_examples_register_from_their_dumps(cp_factory):
    """The real go-pdk example servers' -dump output registers each plugin
    (name, priority, version, phases, schema) on the control plane."""
    names = ["hello", "api-auth", "body-rewrite", "json-log", "quota"]
    for n in names:
        assert (GO_PLUGINS / n).exists(), "run `make go-examples` first (%s missing)" % n
    env = {"SLUICE_PLUGINS": "bundled," + ",".join(names),
           "SLUICE_PLUGINSERVER_NAMES": ",".join(names)}
    for n in names:
        key = n.replace("-", "_").upper()
        env["SLUICE_PLUGINSERVER_%s_QUERY_CMD" % key] = "%s -dump" % (GO_PLUGINS / n)
    cp = cp_factory(env=env)
    avail = cp.get("/").json["plugins"]["available_on_server"]
    assert avail["hello"]["priority"] == 1
    assert avail["api-auth"]["priority"] == 1250
    assert avail["quota"]["priority"] == 910
    r = cp.post("/plugins", {"name": "hello", "config": {"message": "hi"}})
    assert r.status == 201, r
    assert r.json["config"]["message"] == "hi"
    r = cp.post("/plugins", {"name": "hello", "config": {"message": 5}})
    assert r.status == 400 and r.json["fields"]["config"]["message"] == "expected a string"
