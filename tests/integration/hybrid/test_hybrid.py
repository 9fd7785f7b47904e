"""Hybrid mode end to end: one real control plane, real data planes with
role = data_plane, a real upstream. Configuration made through the Admin API
must serve on every data plane; the data planes must survive the control
plane going away and come back to the same configuration hash."""
import json
import signal
import threading
import time

from conftest import wait_until
from .conftest import cluster_addr


def dp_hash(dp):
    return json.loads(dp.status_get("/status").body)["configuration_hash"]


def cp_data_planes(cp):
    r = cp.get("/clustering/data-planes")
    assert r.status == 200
    return r.json["data"]


def serves(dp, path, want):
    def check():
        return dp.get(path).status == want
    return check


def add_route(cp, upstream, name, path):
    r = cp.put("/services/" + name, {"url": upstream.url})
    assert r.status in (200, 201), r
    r = cp.put("/services/%s/routes/%s" % (name, name), {"paths": [path]})
    assert r.status in (200, 201), r


def test_changes_reach_every_data_plane(hybrid_cp, hybrid_dp, upstream):
    cp = hybrid_cp()
    dps = [hybrid_dp(cp) for _ in range(3)]
    add_route(cp, upstream, "s1", "/one")
    for dp in dps:
        wait_until(serves(dp, "/one", 200), what="route on every data plane")
        dp.wait_ready()
    r = dps[0].get("/one/x")
    assert json.loads(r.body)["path"] == "/x"  # strip_path default, served by the upstream

    # update: the route moves
    assert cp.patch("/routes/s1", {"paths": ["/moved"]}).status == 200
    for dp in dps:
        wait_until(serves(dp, "/moved", 200), what="update on every data plane")
        assert dp.get("/one").status == 404

    # delete
    assert cp.delete("/routes/s1").status == 204
    for dp in dps:
        wait_until(serves(dp, "/moved", 404), what="delete on every data plane")

    # every data plane converged to the same hash, and the control plane knows
    wait_until(lambda: len({dp_hash(dp) for dp in dps}) == 1, what="same hash")
    wait_until(lambda: len([d for d in cp_data_planes(cp)
                            if d["config_hash"] == dp_hash(dps[0])
                            and d["sync_status"] == "normal"]) == 3,
               what="control plane sees every data plane's hash")
    rows = cp_data_planes(cp)
    assert len(rows) == 3
    for d in rows:
        assert d["connected"] is True
        assert d["version"] and d["hostname"] and d["ip"] == "127.0.0.1"
        assert d["cert_details"]["expiry_timestamp"] > time.time() + 86400 * 365
        assert d["last_error"] is None
        assert d["config_version"] == rows[0]["config_version"] > 0
    status = cp.get("/clustering/status")
    assert status.status == 200 and set(status.json) == {d["id"] for d in rows}
    assert status.headers.get("deprecation") == "true"
    for dp in dps:
        c = json.loads(dp.status_get("/status").body)["cluster"]
        assert c["connected"] is True and c["last_error"] is None
        assert c["snapshots_applied"] + c["deltas_applied"] >= 3
        assert c["bytes_received"] > 0 and c["control_plane"] == cluster_addr(cp)


def test_control_plane_down_data_planes_keep_serving(hybrid_cp, hybrid_dp, upstream,
                                                     sluice_factory):
    cp = hybrid_cp()
    dp1 = hybrid_dp(cp)
    dp2 = hybrid_dp(cp)
    add_route(cp, upstream, "keep", "/keep")
    for dp in (dp1, dp2):
        wait_until(serves(dp, "/keep", 200), what="route served")
    wait_until(lambda: all(d["sync_status"] == "normal" and d["config_version"] > 0
                           for d in cp_data_planes(cp)) and len(cp_data_planes(cp)) == 2)
    cp.proc.send_signal(signal.SIGKILL)
    cp.proc.wait()
    # data planes keep serving without their control plane
    for _ in range(20):
        assert dp1.get("/keep").status == 200
        assert dp2.get("/keep").status == 200
    time.sleep(1.3)  # past one persistence delay (1 s)
    # a data plane restarted while the control plane is down serves its
    # persisted configuration
    dp2.stop()
    dp2.start(wait_ready=True)
    assert dp2.get("/keep").status == 200
    assert "persisted configuration" in dp2.stderr()
    # the control plane comes back on the same address: both reconnect and
    # converge
    cp.env["SLUICE_CLUSTER_LISTEN"] = cluster_addr(cp)
    cp.start()
    wait_until(lambda: len([d for d in cp_data_planes(cp) if d["connected"]]) == 2,
               timeout=20, what="both data planes reconnect")
    add_route(cp, upstream, "after", "/after")
    for dp in (dp1, dp2):
        wait_until(serves(dp, "/after", 200), what="change after reconnect")
    wait_until(lambda: dp_hash(dp1) == dp_hash(dp2), what="same hash")


def test_disconnect_shows_at_once(hybrid_cp, hybrid_dp):
    cp = hybrid_cp()
    dp = hybrid_dp(cp)
    wait_until(lambda: [d for d in cp_data_planes(cp) if d["connected"]], what="connected")
    dp.stop()
    rows = wait_until(lambda: [d for d in cp_data_planes(cp) if not d["connected"]],
                      timeout=2, what="disconnected at once")
    assert len(rows) == 1


def test_wrong_certificate_is_refused(hybrid_cp, hybrid_dp, other_cert, upstream):
    cp = hybrid_cp()
    add_route(cp, upstream, "secret", "/secret")
    dp = hybrid_dp(cp, cert=other_cert)
    # each side refuses the other: the data plane the control plane's
    # certificate, the control plane a connection without an accepted one
    wait_until(lambda: "refused connection" in cp.stderr(), what="refusal logged")
    wait_until(lambda: "does not match cluster_cert" in dp.stderr(), what="data plane refuses")
    assert cp_data_planes(cp) == []
    assert dp.status_get("/status/ready").status == 503
    assert dp.get("/secret").status == 404
    assert not (dp.prefix / "cluster_config.pb").exists()


def test_withheld_when_a_plugin_is_missing(hybrid_cp, hybrid_dp, upstream):
    cp = hybrid_cp()
    dp = hybrid_dp(cp, plugins="key-auth")  # runs key-auth only: not cors
    add_route(cp, upstream, "p", "/p")
    wait_until(serves(dp, "/p", 200), what="route served")
    r = cp.post("/services/p/plugins", {"name": "cors"})
    assert r.status == 201
    add_route(cp, upstream, "q", "/q")

    def withheld():
        rows = cp_data_planes(cp)
        return rows and rows[0]["sync_status"] == "plugin_set_incompatible"
    wait_until(withheld, what="sync_status plugin_set_incompatible")
    row = cp_data_planes(cp)[0]
    assert "cors" in row["last_error"]
    assert dp.get("/q").status == 404 and dp.get("/p").status == 200  # old config kept
    assert "withholds configuration" in dp.stderr()
    assert cp.delete("/plugins/" + r.json["id"]).status == 204
    wait_until(serves(dp, "/q", 200), what="pushed once the plugin is gone")
    wait_until(lambda: cp_data_planes(cp)[0]["sync_status"] == "normal")


def test_swap_under_load_fails_no_request(hybrid_cp, hybrid_dp, upstream):
    cp = hybrid_cp()
    dp = hybrid_dp(cp)
    add_route(cp, upstream, "load", "/load")
    wait_until(serves(dp, "/load", 200), what="route served")
    stop = threading.Event()
    failures, count = [], [0]

    def load():
        while not stop.is_set():
            r = dp.get("/load/x")
            count[0] += 1
            if r.status != 200:
                failures.append(r.status)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            add_route(cp, upstream, "extra%d" % i, "/extra%d" % i)
        wait_until(serves(dp, "/extra39", 200), what="last change served")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert count[0] > 100
    assert failures == []


def test_data_plane_configuration_errors(tmp_path, cluster_cert):
    from conftest import run_dp
    r = run_dp(["-t", "-p", tmp_path], env={"SLUICE_ROLE": "data_plane"})
    assert r.returncode == 2
    assert "cluster_cert, cluster_cert_key: required with role = data_plane" in r.stderr
    r = run_dp(["-t", "-p", tmp_path], env={
        "SLUICE_ROLE": "data_plane", "SLUICE_CLUSTER_CERT": "/nope.crt",
        "SLUICE_CLUSTER_CERT_KEY": str(cluster_cert[1]),
        "SLUICE_CLUSTER_CONTROL_PLANE": "cp.example:8005"})
    assert r.returncode == 2 and "cluster_cert: cannot read '/nope.crt'" in r.stderr
    r = run_dp(["-t", "-p", tmp_path], env={
        "SLUICE_ROLE": "data_plane", "SLUICE_CLUSTER_CERT": str(cluster_cert[0]),
        "SLUICE_CLUSTER_CERT_KEY": str(cluster_cert[1]),
        "SLUICE_CLUSTER_CONTROL_PLANE": "no-port"})
    assert r.returncode == 2 and "cluster_control_plane: expected host:port" in r.stderr
    r = run_dp(["-t", "-p", tmp_path], env={
        "SLUICE_ROLE": "data_plane", "SLUICE_CLUSTER_CERT": str(cluster_cert[0]),
        "SLUICE_CLUSTER_CERT_KEY": str(cluster_cert[1]), "SLUICE_CLUSTER_MTLS": "pki",
        "SLUICE_CLUSTER_CONTROL_PLANE": "cp.example:8005"})
    assert r.returncode == 2 and "cluster_ca_cert: required when cluster_mtls = pki" in r.stderr
    r = run_dp(["-t", "-p", tmp_path], env={
        "SLUICE_ROLE": "data_plane", "SLUICE_CLUSTER_CERT": str(cluster_cert[0]),
        "SLUICE_CLUSTER_CERT_KEY": str(cluster_cert[1]),
        "SLUICE_CLUSTER_CONTROL_PLANE": "cp.example:8005"})
    assert r.returncode == 0, r.stderr


def test_control_plane_cluster_configuration_errors(tmp_path):
    from cp.conftest import run_cp
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_CLUSTER_LISTEN": "127.0.0.1:8005"})
    assert r.returncode == 2
    assert "cluster_cert, cluster_cert_key: required for the cluster listener" in r.stderr
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_CLUSTER_LISTEN": "127.0.0.1:8005",
                                            "SLUICE_CLUSTER_MTLS": "both"})
    assert r.returncode == 2 and "cluster_mtls: expected shared or pki" in r.stderr
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_CLUSTER_PING_INTERVAL": "1ms"})
    assert r.returncode == 2 and "cluster_ping_interval" in r.stderr


def test_snapshot_for_a_data_plane_too_far_behind(hybrid_cp, hybrid_dp, upstream):
    cp = hybrid_cp(env={"SLUICE_LMDB_CHANGES_DEPTH": "5"})
    dp = hybrid_dp(cp)
    add_route(cp, upstream, "base", "/base")
    wait_until(serves(dp, "/base", 200), what="route served")
    node = (dp.prefix / "node.id").read_text().strip()

    def snapshots_sent():
        return len([line for line in cp.stderr().splitlines()
                    if "snapshot of version" in line and node in line])

    # behind by less than the kept change log: a delta
    dp.stop()
    add_route(cp, upstream, "near", "/near")
    snapshots = snapshots_sent()
    dp.start(wait_ready=True)
    wait_until(serves(dp, "/near", 200), what="caught up by a delta")
    assert snapshots_sent() == snapshots
    assert json.loads(dp.status_get("/status").body)["cluster"]["deltas_applied"] == 1
    # behind by more than lmdb_changes_depth versions: a snapshot
    dp.stop()
    for i in range(8):
        add_route(cp, upstream, "far%d" % i, "/far%d" % i)
    dp.start(wait_ready=True)
    wait_until(serves(dp, "/far7", 200), what="caught up by a snapshot")
    assert snapshots_sent() == snapshots + 1
    wait_until(lambda: dp_hash(dp) == cp_data_planes(cp)[0]["config_hash"])


def test_failed_apply_keeps_the_old_configuration(hybrid_cp, hybrid_dp, upstream):
    cp = hybrid_cp()
    dp = hybrid_dp(cp)
    add_route(cp, upstream, "good", "/good")
    wait_until(serves(dp, "/good", 200), what="route served")
    good_hash = dp_hash(dp)
    # a service the data plane cannot serve yet: the control plane accepts it
    r = cp.post("/services", {"name": "g", "protocol": "grpc", "host": "grpc.test"})
    assert r.status == 201

    def failed():
        rows = cp_data_planes(cp)
        return rows and rows[0]["last_error"]
    err = wait_until(failed, what="last_error reported")
    assert "grpc" in err and "applying configuration" in err
    assert dp_hash(dp) == good_hash and dp.get("/good").status == 200
    status = json.loads(dp.status_get("/status").body)["cluster"]
    assert "grpc" in status["last_error"]
    # fixing the configuration brings the data plane forward again
    assert cp.delete("/services/g").status == 204
    add_route(cp, upstream, "after", "/after")
    wait_until(serves(dp, "/after", 200), what="served after the fix")
    wait_until(lambda: cp_data_planes(cp)[0]["last_error"] is None)


def test_a_large_change_goes_as_a_snapshot(hybrid_cp, hybrid_dp, upstream):
    cp = hybrid_cp()
    dp = hybrid_dp(cp)
    add_route(cp, upstream, "first", "/first")
    wait_until(serves(dp, "/first", 200), what="route served")
    before = json.loads(dp.status_get("/status").body)["cluster"]
    # 1,200 new entities in one write: a compressed snapshot, not a delta
    doc = {"_format_version": "3.0", "services": [
        {"name": "bulk%d" % i, "url": upstream.url, "routes": [
            {"name": "bulk%d" % i, "paths": ["/bulk%d" % i]}]} for i in range(600)]}
    assert cp.post("/config", doc).status == 201
    wait_until(serves(dp, "/bulk599", 200), what="bulk import served")
    after = json.loads(dp.status_get("/status").body)["cluster"]
    assert after["snapshots_applied"] == before["snapshots_applied"] + 1
    assert after["deltas_applied"] == before["deltas_applied"]
    assert after["bytes_received"] - before["bytes_received"] < 100000


def test_route_and_service_changes_interleaved(hybrid_cp, hybrid_dp, upstream, upstream2):
    """Route-only changes reuse the data plane's built services; a service
    change must still take effect after them."""
    cp = hybrid_cp()
    dp = hybrid_dp(cp)
    add_route(cp, upstream, "svc", "/svc")
    wait_until(serves(dp, "/svc", 200), what="route served")
    for i in range(3):
        add_route(cp, upstream, "r%d" % i, "/r%d" % i)  # new routes and services
        assert cp.patch("/routes/svc", {"paths": ["/svc", "/alias%d" % i]}).status == 200
    wait_until(serves(dp, "/alias2", 200), what="route-only changes served")
    assert dp.get("/svc").header("x-upstream-name") == "up1"
    assert cp.patch("/services/svc", {"url": upstream2.url}).status == 200
    wait_until(lambda: dp.get("/svc").header("x-upstream-name") == "up2",
               what="service change served")
    assert cp.patch("/routes/svc", {"paths": ["/svc"]}).status == 200
    wait_until(serves(dp, "/alias2", 404), what="route change after the service change")
    assert dp.get("/svc").header("x-upstream-name") == "up2"


def test_routes_after_a_deleted_one_keep_their_settings(hybrid_cp, hybrid_dp, upstream,
                                                        upstream2):
    """A delete moves every later route in the data plane's table; the routes
    it takes from the previous generation must still be the right ones."""
    cp = hybrid_cp()
    dp = hybrid_dp(cp)
    assert cp.put("/services/a", {"url": upstream.url}).status in (200, 201)
    assert cp.put("/services/b", {"url": upstream2.url}).status in (200, 201)
    for i in range(6):
        svc = "a" if i % 2 == 0 else "b"
        r = cp.put("/services/%s/routes/k%d" % (svc, i),
                   {"paths": ["/k%d" % i], "strip_path": i % 3 != 0})
        assert r.status in (200, 201), r
    wait_until(serves(dp, "/k5", 200), what="routes served")
    for gone in (0, 3):
        assert cp.delete("/routes/k%d" % gone).status == 204
        wait_until(serves(dp, "/k%d" % gone, 404), what="delete served")
        for i in range(6):
            if i in (0, 3) and i <= gone:
                assert dp.get("/k%d/x" % i).status == 404
                continue
            r = dp.get("/k%d/x" % i)
            assert r.status == 200, (i, r)
            assert r.header("x-upstream-name") == ("up1" if i % 2 == 0 else "up2"), i
            want = "/x" if i % 3 != 0 else "/k%d/x" % i
            assert json.loads(r.body)["path"] == want, i


def test_plugins_configured_on_the_control_plane_run_on_data_planes(hybrid_cp, hybrid_dp,
                                                                    upstream):
    cp = hybrid_cp()
    dps = [hybrid_dp(cp), hybrid_dp(cp)]
    add_route(cp, upstream, "guarded", "/guarded")
    assert cp.put("/consumers/alice", {}).status in (200, 201)
    assert cp.post("/consumers/alice/key-auth", {"key": "alice-key"}).status == 201
    r = cp.post("/services/guarded/plugins", {"name": "key-auth"})
    assert r.status == 201, r
    for dp in dps:
        wait_until(serves(dp, "/guarded", 401), what="key-auth on every data plane")
        r = dp.get("/guarded", headers={"apikey": "alice-key"})
        assert r.status == 200
        seen = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
        assert seen["x-consumer-username"] == "alice"
    # a change to the plugin's config is a delta like any other
    assert cp.patch("/plugins/" + r_id(cp, "key-auth"),
                    {"config": {"key_names": ["x-key"]}}).status == 200
    for dp in dps:
        wait_until(lambda: dp.get("/guarded", headers={"x-key": "alice-key"}).status == 200,
                   what="new key_names on every data plane")
    rows = cp_data_planes(cp)
    assert all(d["sync_status"] == "normal" for d in rows)


def r_id(cp, name):
    return next(p["id"] for p in cp.get("/plugins").json["data"] if p["name"] == name)
