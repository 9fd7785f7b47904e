"""External plugins in hybrid mode: a control plane with no plugin server
configured, data planes that run the Go example `hello` (go-pdk-examples/hello)
as a plugin server. The data planes report the plugin and its -dump schema
when they connect; from then on the Admin API validates hello configurations
against that schema, and the control plane pushes them to the data planes
that have the plugin and withholds them from the one that does not."""

from conftest import wait_until
from bridge.pluginservers import go_plugin_conf
from .conftest import cluster_addr, dp_conf
from .test_hybrid import add_route, cp_data_planes


def hello_dp(sluice_factory, cp, cert):
    """A data plane of `cp` that starts and supervises the hello plugin server."""
    s = sluice_factory(None, conf=dp_conf(cluster_addr(cp), cert), start=False)
    s.conf.update(go_plugin_conf(s.prefix, ["hello"]))
    s.write_conf()
    s.start(wait_ready=False)
    s.wait_addrs()
    return s


def greets(dp, want):
    def check():
        r = dp.get("/greet", host="example.com")
        return r.status == 200 and r.header("x-hello-from-go") == want
    return check


def test_go_plugin_configured_on_the_control_plane_runs_on_data_planes(
        hybrid_cp, hybrid_dp, sluice_factory, cluster_cert, upstream):
    cp = hybrid_cp()
    # No data plane has reported hello yet: the control plane does not know it.
    r = cp.post("/plugins", {"name": "hello", "config": {"message": "hi"}})
    assert r.status == 400, r

    dps = [hello_dp(sluice_factory, cp, cluster_cert) for _ in range(2)]
    wait_until(lambda: len([d for d in cp_data_planes(cp) if d["connected"]]) == 2,
               what="both data planes connected")
    assert "plugin 'hello' 0.2 reported by data plane" in cp.stderr()
    avail = cp.get("/").json["plugins"]["available_on_server"]
    assert avail["hello"] == {"priority": 1, "version": "0.2"}
    schema = cp.get("/schemas/plugins/hello")
    assert schema.status == 200, schema
    assert "message" in str(schema.json)

    add_route(cp, upstream, "greet", "/greet")
    r = cp.post("/routes/greet/plugins", {"name": "hello", "config": {"message": "hi"}})
    assert r.status == 201, r
    plugin_id = r.json["id"]
    assert r.json["config"] == {"message": "hi", "header": None}
    for dp in dps:
        wait_until(greets(dp, "Go says hi to example.com"), what="hello on every data plane")
        dp.wait_ready()

    # A new configuration is a delta like any other.
    r = cp.patch("/plugins/" + plugin_id, {"config": {"message": "bonjour"}})
    assert r.status == 200, r
    for dp in dps:
        wait_until(greets(dp, "Go says bonjour to example.com"),
                   what="new message on every data plane")

    # The dumped schema says message is a string: a number is refused, naming
    # the field, and nothing changes.
    version = cp.get("/status").json["configuration_version"]
    r = cp.patch("/plugins/" + plugin_id, {"config": {"message": 5}})
    assert r.status == 400, r
    assert r.json["fields"]["config"]["message"] == "expected a string"
    assert "config.message" in r.json["message"]
    r = cp.post("/routes/greet/plugins", {"name": "hello", "instance_name": "two",
                                          "config": {"message": 5, "colour": "red"}})
    assert r.status == 400, r
    assert r.json["fields"]["config"]["message"] == "expected a string"
    assert "colour" in r.json["fields"]["config"]
    assert cp.get("/status").json["configuration_version"] == version
    for dp in dps:
        assert greets(dp, "Go says bonjour to example.com")()

    rows = cp_data_planes(cp)
    assert len(rows) == 2
    assert all(d["sync_status"] == "normal" and d["last_error"] is None for d in rows)

    # A data plane without the plugin server: the configuration that uses
    # hello is withheld from it, and /clustering/data-planes says why.
    with_hello = {d["id"] for d in rows}
    bare = hybrid_dp(cp)

    def withheld():
        row = next((d for d in cp_data_planes(cp) if d["id"] not in with_hello), None)
        return row if row and row["sync_status"] == "plugin_set_incompatible" else None
    row = wait_until(withheld, what="sync_status plugin_set_incompatible")
    assert row["connected"] is True
    assert "uses plugin 'hello', which this data plane does not have" in row["last_error"]
    assert "withholds configuration" in bare.stderr()
    assert bare.get("/greet").status == 404
    assert bare.status_get("/status/ready").status == 503
    # ... while the two that run it carry on.
    for d in cp_data_planes(cp):
        if d["id"] in with_hello:
            assert d["sync_status"] == "normal" and d["last_error"] is None
    for dp in dps:
        assert greets(dp, "Go says bonjour to example.com")()

    # Without the plugin in the configuration, every data plane gets it.
    assert cp.delete("/plugins/" + plugin_id).status == 204
    wait_until(lambda: bare.get("/greet").status == 200, what="pushed once hello is gone")
    for dp in dps + [bare]:
        wait_until(lambda: dp.get("/greet").header("x-hello-from-go") is None,
                   what="hello removed everywhere")
    wait_until(lambda: all(d["sync_status"] == "normal" for d in cp_data_planes(cp)),
               what="every data plane back to normal")
