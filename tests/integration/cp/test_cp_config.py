"""GET/POST /config, the node endpoints and the schema endpoints."""

import json
import uuid

import pytest

from .conftest import Client


def _populate(cp, pki):
    cp.post("/services", {"name": "s1", "url": "http://a.test:8080/p", "tags": ["t"]})
    cp.post("/services/s1/routes", {"name": "r1", "paths": ["/r1"], "methods": ["GET"]})
    cp.post("/routes/r1/plugins", {"name": "cors", "config": {"origins": ["*"]}})
    cp.post("/consumers", {"username": "bob", "custom_id": "b"})
    cp.post("/consumers/bob/key-auth", {"key": "k1"})
    cp.post("/consumers/bob/basic-auth", {"username": "bob", "password": "pw"})
    cp.post("/consumers/bob/jwt", {"key": "j1"})
    cp.post("/consumers/bob/acls", {"group": "g"})
    cp.post("/upstreams", {"name": "up.test"})
    cp.post("/upstreams/up.test/targets", {"target": "10.1.1.1:80", "weight": 10})
    cert = cp.post("/certificates", {"cert": pki["cert"], "key": pki["key"]}).json
    cp.post("/certificates/%s/snis" % cert["id"], {"name": "x.example.test"})
    cp.post("/ca_certificates", {"cert": pki["ca"]})


def _everything(cp):
    out = {}
    for path in ("/services", "/routes", "/plugins", "/consumers", "/key-auths",
                 "/basic-auths", "/jwts", "/acls", "/upstreams", "/certificates", "/snis",
                 "/ca_certificates"):
        out[path] = sorted(cp.get(path, query={"size": 1000}).json["data"],
                           key=lambda e: e["id"])
    return out


def test_config_round_trip(cp, pki):
    _populate(cp, pki)
    before = _everything(cp)
    r = cp.get("/config")
    assert r.status == 200
    text = r.json["config"]
    assert text.startswith('_format_version: "3.0"')
    # import it back (YAML body), then export again: identical
    r = cp.request("POST", "/config", data=text, headers={"Content-Type": "application/yaml"})
    assert r.status == 201, r
    assert set(r.json["services"]) == {e["id"] for e in before["/services"]}
    assert cp.get("/config").json["config"] == text
    assert _everything(cp) == before
    # JSON export and a `config` form field work too
    js = cp.get("/config", query={"format": "json"}).json["config"]
    assert json.loads(js)["_format_version"] == "3.0"
    r = cp.request("POST", "/config", form={"config": js})
    assert r.status == 201, r
    assert cp.get("/config").json["config"] == text


def test_config_restart_keeps_everything(cp, pki):
    _populate(cp, pki)
    before = _everything(cp)
    text = cp.get("/config").json["config"]
    node_id = cp.get("/").json["node_id"]
    cp.restart()
    assert _everything(cp) == before
    assert cp.get("/config").json["config"] == text
    assert cp.get("/").json["node_id"] == node_id


def test_post_config_replaces_everything(cp):
    cp.post("/services", {"name": "old", "host": "old.test"})
    doc = {"_format_version": "3.0",
           "services": [{"name": "new", "url": "http://new.test",
                         "routes": [{"name": "nr", "paths": ["/n"]}]}],
           "consumers": [{"username": "u", "keyauth_credentials": [{"key": "kk"}]}]}
    r = cp.post("/config", doc)
    assert r.status == 201, r
    assert [s["name"] for s in cp.get("/services").json["data"]] == ["new"]
    route = cp.get("/routes/nr").json
    assert route["service"]["id"] == cp.get("/services/new").json["id"]
    assert cp.get("/key-auths/kk").status == 200
    # the store's writes keep working afterwards
    assert cp.post("/services/new/routes", {"paths": ["/more"]}).status == 201


def test_post_config_invalid_changes_nothing(cp):
    cp.post("/services", {"name": "keep", "host": "k.test"})
    before = cp.get("/config").json["config"]
    doc = {"_format_version": "3.0",
           "services": [{"name": "x"},
                        {"name": "y", "host": "y.test", "routes": [{"paths": ["bad"]}]}]}
    r = cp.post("/config", doc)
    assert r.status == 400
    b = r.json
    assert b["code"] == 14 and b["name"] == "invalid declarative configuration"
    assert b["message"].startswith("declarative config is invalid: ")
    assert b["fields"]["services"][0]["host"] == "required field missing"
    assert b["fields"]["services"][1]["routes"][0]["paths"][0].startswith("should start with")
    assert cp.get("/config").json["config"] == before
    r = cp.request("POST", "/config", data="services: [", headers={"Content-Type": "application/yaml"})
    assert r.status == 400 and r.json["code"] == 14
    r = cp.request("POST", "/config", data="", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json == {"message": "expected a declarative configuration"}
    r = cp.request("POST", "/config", form={"other": "x"})
    assert r.status == 400 and r.json == {"message": "expected a declarative configuration"}
    assert cp.get("/config").json["config"] == before


def test_post_config_flatten_errors(cp):
    doc = {"_format_version": "3.0",
           "services": [{"name": "ok", "host": "a.test"},
                        {"name": "bad", "host": "b.test", "port": 99999, "tags": ["t1"],
                         "routes": [{"name": "rbad", "paths": ["nope"]}]}]}
    r = cp.post("/config?flatten_errors=1", doc)
    assert r.status == 400 and r.json["code"] == 14
    flat = r.json["flattened_errors"]
    by_name = {e["entity_name"]: e for e in flat}
    svc = by_name["bad"]
    assert svc["entity_type"] == "service" and svc["entity_tags"] == ["t1"]
    assert svc["errors"] == [{"type": "field", "field": "port",
                              "message": "value should be between 0 and 65535"}]
    assert "routes" not in svc["entity"]
    route = by_name["rbad"]
    assert route["entity_type"] == "route"
    assert route["errors"][0]["field"] == "paths.1"
    assert route["errors"][0]["message"].startswith("should start with")


def test_post_config_check_hash(cp):
    doc = {"_format_version": "3.0", "services": [{"name": "s", "host": "a.test"}]}
    assert cp.post("/config?check_hash=1", doc).status == 201
    assert cp.post("/config?check_hash=1", doc).status == 304
    assert cp.post("/config", doc).status == 201
    # any other write makes the same document new again
    cp.post("/consumers", {"username": "u"})
    assert cp.post("/config?check_hash=1", doc).status == 201
    assert cp.get("/consumers").json["data"] == []


def test_map_full_changes_nothing(cp_factory):
    c = cp_factory(env={"SLUICE_LMDB_MAP_SIZE": "1m"})
    c.post("/services", {"name": "first", "host": "a.test"})
    # /config answers as Kong does: 413 naming lmdb_map_size
    services = [{"name": "svc-%05d" % i, "host": "h%d.test" % i, "tags": ["x%d" % j for j in range(5)]}
                for i in range(3000)]
    r = c.post("/config", {"_format_version": "3.0", "services": services})
    assert r.status == 413, r
    assert "lmdb_map_size" in r.json["message"]
    assert [s["name"] for s in c.get("/services").json["data"]] == ["first"]
    # entity writes answer 507 naming lmdb_map_size
    statuses = []
    for i in range(200):
        r = c.post("/services", {"name": "big-%d" % i, "host": "b.test",
                                 "tags": ["%d-%s" % (j, "y" * 300) for j in range(200)]})
        statuses.append(r.status)
        if r.status != 201:
            break
    assert statuses[-1] == 507, statuses
    assert "lmdb_map_size" in r.json["message"]
    assert c.get("/services/big-%d" % (len(statuses) - 1)).status == 404
    assert c.get("/services/first").status == 200
    assert c.delete("/services/big-0").status == 204
    assert c.get("/status").status == 200


def test_root_and_status(cp):
    r = cp.get("/")
    assert r.status == 200
    b = r.json
    assert b["tagline"] == "Welcome to kong"
    assert b["version"].startswith("3.")
    uuid.UUID(b["node_id"])
    assert b["hostname"]
    assert b["plugins"]["enabled_in_cluster"] == []
    avail = b["plugins"]["available_on_server"]
    assert avail["key-auth"] == {"priority": 1250, "version": "3.10.0"}
    assert avail["rate-limiting"]["priority"] == 910 and len(avail) >= 14
    assert b["configuration"]["admin_listen"] == "127.0.0.1:0"
    r = cp.get("/status")
    assert r.status == 200
    assert r.json["database"] == {"reachable": True}
    assert r.json["server"]["total_requests"] >= 2
    accepted = r.json["server"]["connections_accepted"]
    assert accepted >= 1 and r.json["server"]["connections_handled"] == accepted
    for _ in range(3):  # three new connections
        c = Client(cp.host, cp.port)
        assert c.get("/").status == 200
        c.close()
    s = cp.get("/status").json["server"]
    assert s["connections_accepted"] >= accepted + 3
    assert s["total_requests"] >= r.json["server"]["total_requests"] + 4
    v0 = r.json["configuration_version"]
    cp.post("/services", {"host": "a.test"})
    assert cp.get("/status").json["configuration_version"] == v0 + 1
    enabled = cp.get("/plugins/enabled").json["enabled_plugins"]
    assert enabled == sorted(enabled) and "acl" in enabled and "http-log" in enabled
    assert cp.post("/plugins", {"name": "rate-limiting", "config": {"minute": 1}}).status == 201
    cp.post("/services", {"name": "s", "host": "a.test"})
    assert cp.post("/services/s/plugins", {"name": "cors"}).status == 201
    r = cp.post("/services/s/plugins", {"name": "rate-limiting", "config": {"hour": 9}})
    assert r.status == 201
    assert cp.get("/").json["plugins"]["enabled_in_cluster"] == ["cors", "rate-limiting"]


def test_schemas(cp):
    r = cp.get("/schemas/services")
    assert r.status == 200
    fields = {list(f)[0]: list(f.values())[0] for f in r.json["fields"]}
    assert fields["host"]["required"] is True
    assert fields["port"]["default"] == 80
    assert fields["protocol"]["one_of"]
    for name in ("routes", "consumers", "plugins", "upstreams", "targets", "certificates",
                 "snis", "ca_certificates", "keyauth_credentials", "acls"):
        assert cp.get("/schemas/" + name).status == 200, name
    r = cp.get("/schemas/nope")
    assert r.status == 404 and r.json == {"message": "No entity named 'nope'"}
    r = cp.post("/schemas/services/validate", {"host": "a.test"})
    assert r.status == 200 and r.json == {"message": "schema validation successful"}
    r = cp.post("/schemas/routes/validate", {"protocols": ["http"], "paths": ["x"]})
    assert r.status == 400 and r.json["code"] == 2
    assert cp.get("/services").json["data"] == []
    r = cp.get("/schemas/plugins/nope")
    assert r.status == 404 and r.json == {"message": "No plugin named 'nope'"}
    r = cp.post("/schemas/plugins/validate", {"name": "nope"})
    assert r.status == 400 and r.json["code"] == 2
    assert r.json["fields"]["name"] == ("plugin 'nope' not enabled; add it to the "
                                        "'plugins' configuration property")
    assert cp.get("/schemas/services/validate").status == 405
