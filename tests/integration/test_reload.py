"""SIGHUP: the declarative file is re-read and the configuration swapped
without dropping or failing a request; an invalid file keeps the old
configuration (and says why on stderr); requests in flight finish under the
configuration they started with.
"""

import threading
import time
import uuid

import pytest

import h1
from conftest import declarative, route, service, wait_until
from upstream import pattern_bytes


def decl(upstream, *paths, target=None):
    """One service per path p, with route p -> upstream base p; plus /g (gate)."""
    target = target or upstream
    services = [service("svc" + p.strip("/").replace("/", "_"), target.url + p,
                        routes=[route("r" + p.strip("/").replace("/", "_"), paths=[p])])
                for p in paths]
    return declarative(services)


def find_key(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_key(v, key)
            if r is not None:
                return r
    return None


def config_hash(dp):
    return find_key(dp.status_get("/status").json(), "configuration_hash")


def serves(dp, path, status=200):
    return dp.get(path).status == status


class Load:
    """Client threads hammering a path; some reuse a connection, some don't."""

    def __init__(self, dp, path, threads=4):
        self.dp = dp
        self.path = path
        self.stop = threading.Event()
        self.failures = []
        self.count = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i % 2 == 0,), daemon=True)
                        for i in range(threads)]

    def run(self, keepalive):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self.dp.conn()
                resp = conn.request("GET", self.path)
                ok = resp.status == 200 and resp.json()["target"].startswith(self.path)
                if not ok:
                    self.failures.append(repr(resp)[:300])
                if not keepalive or "close" in (resp.header("connection") or "").lower():
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001
                self.failures.append(repr(e))
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                self.count += 1
        if conn:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_reload_under_load_no_failures(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream, "/a"))
    h0 = config_hash(dp)
    with Load(dp, "/a") as load:
        time.sleep(0.5)
        dp.write_declarative(decl(upstream, "/a", "/b"))
        dp.reload()
        wait_until(lambda: serves(dp, "/b"), 10, what="route /b after SIGHUP")
        for i in range(5):
            paths = ["/a", "/b"] + ["/c%d" % j for j in range(i + 1)]
            dp.write_declarative(decl(upstream, *paths))
            dp.reload()
            wait_until(lambda: serves(dp, "/c%d" % i), 10, what="route /c%d" % i)
            time.sleep(0.2)
        time.sleep(0.5)
    assert load.count > 50, "load threads made only %d requests" % load.count
    assert not load.failures, "%d failures, e.g. %s" % (len(load.failures), load.failures[:5])
    assert config_hash(dp) != h0


@pytest.mark.parametrize("bad", [
    "invalid_entity", "unparseable", "missing_file",
])
def test_invalid_file_keeps_old_config(sluice_factory, upstream, bad):
    dp = sluice_factory(decl(upstream, "/a"))
    h0 = config_hash(dp)
    log_before = len(dp.stderr())
    if bad == "invalid_entity":
        d = decl(upstream, "/a", "/b")
        d["services"][1]["routes"][0]["paths"] = ["no-slash"]
        dp.write_declarative(d)
        reason = "services[1].routes[0].paths[0]"
    elif bad == "unparseable":
        dp.write_declarative("{ this is : not [ valid")
        reason = None
    else:
        dp.decl_path.unlink()
        reason = "kong.json"
    dp.reload()
    wait_until(lambda: len(dp.stderr()) > log_before, 10, what="a log line about the reload")
    time.sleep(0.5)
    new_log = dp.stderr()[log_before:]
    if reason:
        assert reason in new_log, new_log
    assert dp.proc.poll() is None, "sluice-dp died on an invalid reload"
    assert serves(dp, "/a")
    assert serves(dp, "/b", 404)
    assert config_hash(dp) == h0
    assert dp.status_get("/status/ready").status == 200
    # A good file afterwards is applied.
    dp.write_declarative(decl(upstream, "/a", "/b"))
    dp.reload()
    wait_until(lambda: serves(dp, "/b"), 10, what="route /b after a good reload")


def test_in_flight_request_finishes_under_old_config(sluice_factory, upstream):
    d = decl(upstream, "/a")
    d["services"].append(service("gate", upstream.url, routes=[route("g", paths=["/g"])]))
    dp = sluice_factory(d)
    token = uuid.uuid4().hex
    with dp.conn(timeout=20) as c:
        c.send(h1.build_request("GET", "/g/gate/%s?size=20000" % token))
        resp = c.read_head()
        assert resp.status == 200
        dp.write_declarative(decl(upstream, "/a"))  # the /g route and its service are gone
        dp.reload()
        wait_until(lambda: serves(dp, "/g/x", 404), 10, what="/g removed")
        upstream.open_gate(token)
        c.read_body(resp)
        assert resp.body == pattern_bytes(20000)


def test_keepalive_connection_sees_new_config(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream, "/a"))
    with dp.conn() as c:
        assert c.request("GET", "/a").status == 200
        assert c.request("GET", "/b").status == 404
        dp.write_declarative(decl(upstream, "/a", "/b"))
        dp.reload()
        wait_until(lambda: serves(dp, "/b"), 10, what="/b")
        assert c.request("GET", "/b").status == 200


def test_removed_route_404_after_reload(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream, "/a", "/b"))
    dp.write_declarative(decl(upstream, "/a"))
    dp.reload()
    wait_until(lambda: serves(dp, "/b", 404), 10, what="/b removed")
    assert serves(dp, "/a")


def test_reload_changes_service_target(sluice_factory, upstream, upstream2):
    dp = sluice_factory(decl(upstream, "/a"))
    with dp.conn() as c:
        assert c.request("GET", "/a").header("x-upstream-name") == "up1"
        dp.write_declarative(decl(upstream, "/a", target=upstream2))
        dp.reload()
        wait_until(lambda: dp.get("/a").header("x-upstream-name") == "up2", 10,
                   what="service moved to up2")
        assert c.request("GET", "/a").header("x-upstream-name") == "up2"


def test_many_quick_reloads(sluice_factory, upstream):
    dp = sluice_factory(decl(upstream, "/a"))
    for i in range(20):
        dp.write_declarative(decl(upstream, "/a", "/n%d" % i))
        dp.reload()
        time.sleep(0.05)
    wait_until(lambda: serves(dp, "/n19"), 10, what="the last reload applied")
    assert serves(dp, "/a")
