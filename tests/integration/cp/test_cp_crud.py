"""The generated CRUD endpoints of every entity, nested paths and PUT upserts."""

import uuid

import pytest


def _consumer(cp, name="carol"):
    r = cp.post("/consumers", {"username": name})
    assert r.status == 201, r
    return r.json["id"]


def _cert(cp, pki):
    r = cp.post("/certificates", {"cert": pki["cert"], "key": pki["key"]})
    assert r.status == 201, r
    return r.json["id"]


# name -> (setup(cp, pki) -> ctx, path, create(ctx), endpoint key, patch, put(ctx), reverted)
# `reverted` is (field, value) that PUT without that field must restore to its default.
ENTITIES = {
    "services": (
        None, "/services",
        lambda c: {"name": "svc-a", "host": "a.test", "retries": 3},
        "name", {"port": 8080},
        lambda c: {"host": "b.test"}, ("retries", 5)),
    "routes": (
        None, "/routes",
        lambda c: {"name": "r-a", "paths": ["/a"], "strip_path": False},
        "name", {"hosts": ["x.test"]},
        lambda c: {"paths": ["/b"]}, ("strip_path", True)),
    "consumers": (
        None, "/consumers",
        lambda c: {"username": "alice", "custom_id": "c1"},
        "username", {"tags": ["t1"]},
        lambda c: {"username": "alice2"}, ("custom_id", None)),
    "plugins": (
        None, "/plugins",
        lambda c: {"name": "rate-limiting", "instance_name": "rl1", "config": {"minute": 5},
                   "enabled": False},
        "instance_name", {"tags": ["p"]},
        lambda c: {"name": "rate-limiting", "config": {"minute": 6}}, ("enabled", True)),
    "upstreams": (
        None, "/upstreams",
        lambda c: {"name": "up.test", "slots": 100},
        "name", {"host_header": "h.test"},
        lambda c: {"name": "up.test"}, ("slots", 10000)),
    "certificates": (
        lambda cp, pki: {"pki": pki}, "/certificates",
        lambda c: {"cert": c["pki"]["cert"], "key": c["pki"]["key"], "tags": ["x"]},
        None, {"tags": ["y"]},
        lambda c: {"cert": c["pki"]["cert"], "key": c["pki"]["key"]}, ("tags", None)),
    "snis": (
        lambda cp, pki: {"cert": _cert(cp, pki)}, "/snis",
        lambda c: {"name": "a.example.test", "certificate": {"id": c["cert"]}, "tags": ["x"]},
        "name", {"tags": ["y"]},
        lambda c: {"name": "a.example.test", "certificate": {"id": c["cert"]}}, ("tags", None)),
    "ca_certificates": (
        lambda cp, pki: {"pki": pki}, "/ca_certificates",
        lambda c: {"cert": c["pki"]["ca"], "tags": ["x"]},
        None, {"tags": ["y"]},
        lambda c: {"cert": c["pki"]["ca"]}, ("tags", None)),
    "key-auths": (
        lambda cp, pki: {"consumer": _consumer(cp)}, "/key-auths",
        lambda c: {"key": "k-1", "consumer": {"id": c["consumer"]}, "tags": ["x"]},
        "key", {"ttl": 100},
        lambda c: {"consumer": {"id": c["consumer"]}}, ("tags", None)),
    "basic-auths": (
        lambda cp, pki: {"consumer": _consumer(cp)}, "/basic-auths",
        lambda c: {"username": "ba1", "password": "pw", "consumer": {"id": c["consumer"]},
                   "tags": ["x"]},
        "username", {"tags": ["y"]},
        lambda c: {"username": "ba1", "password": "pw2", "consumer": {"id": c["consumer"]}},
        ("tags", None)),
    "jwts": (
        lambda cp, pki: {"consumer": _consumer(cp)}, "/jwts",
        lambda c: {"key": "jk1", "algorithm": "HS384", "consumer": {"id": c["consumer"]}},
        "key", {"tags": ["y"]},
        lambda c: {"consumer": {"id": c["consumer"]}}, ("algorithm", "HS256")),
    "acls": (
        lambda cp, pki: {"consumer": _consumer(cp)}, "/acls",
        lambda c: {"group": "g1", "consumer": {"id": c["consumer"]}, "tags": ["x"]},
        None, {"tags": ["y"]},
        lambda c: {"group": "g1", "consumer": {"id": c["consumer"]}}, ("tags", None)),
}


def _strip(e, *drop):
    return {k: v for k, v in e.items() if k not in ("updated_at",) + drop}


@pytest.mark.parametrize("name", list(ENTITIES))
def test_crud_matrix(cp, pki, name):
    setup, path, create, ek, patch, put, (rfield, rvalue) = ENTITIES[name]
    ctx = setup(cp, pki) if setup else {}

    r = cp.post(path, create(ctx))
    assert r.status == 201, r
    ent = r.json
    eid = ent["id"]
    assert uuid.UUID(eid)
    assert isinstance(ent["created_at"], (int, float))

    r = cp.get("%s/%s" % (path, eid))
    assert r.status == 200 and r.json == ent
    assert r.headers["content-type"].startswith("application/json")
    if ek:
        r = cp.get("%s/%s" % (path, ent[ek]))
        assert r.status == 200 and r.json["id"] == eid

    r = cp.get(path)
    assert r.status == 200 and [e["id"] for e in r.json["data"]].count(eid) == 1
    assert r.json["next"] is None

    # PATCH changes what it names and nothing else
    r = cp.patch("%s/%s" % (path, eid), patch)
    assert r.status == 200, r
    for k, v in patch.items():
        assert r.json[k] == v
    assert _strip(r.json, *patch) == _strip(ent, *patch)
    r = cp.get("%s/%s" % (path, eid))
    for k, v in patch.items():
        assert r.json[k] == v

    # PUT replaces: omitted fields revert to their defaults, created_at stays
    r = cp.put("%s/%s" % (path, eid), put(ctx))
    assert r.status == 200, r
    assert r.json["id"] == eid
    assert r.json[rfield] == rvalue
    assert r.json["created_at"] == ent["created_at"]

    # DELETE: 204, then 404 on GET, and 204 again
    assert cp.delete("%s/%s" % (path, eid)).status == 204
    r = cp.get("%s/%s" % (path, eid))
    assert r.status == 404 and r.json == {"message": "Not found"}
    assert cp.delete("%s/%s" % (path, eid)).status == 204
    assert cp.patch("%s/%s" % (path, eid), patch).status == 404


@pytest.mark.parametrize("name", [n for n in ENTITIES if ENTITIES[n][3]])
def test_put_upsert_by_endpoint_key(cp, pki, name):
    setup, path, create, ek, patch, put, (rfield, rvalue) = ENTITIES[name]
    ctx = setup(cp, pki) if setup else {}
    body = create(ctx)
    key = body.pop(ek)
    r = cp.put("%s/%s" % (path, key), body)
    assert r.status == 200, r
    assert r.json[ek] == key
    eid = r.json["id"]
    # again: replaces the same entity
    r = cp.put("%s/%s" % (path, key), put(ctx))
    assert r.status == 200, r
    assert r.json["id"] == eid and r.json[ek] == key
    assert r.json[rfield] == rvalue
    r = cp.get("%s/%s" % (path, key))
    assert r.status == 200 and r.json["id"] == eid
    assert cp.delete("%s/%s" % (path, key)).status == 204
    assert cp.get("%s/%s" % (path, key)).status == 404


def test_put_by_new_uuid_creates_with_that_id(cp):
    eid = str(uuid.uuid4())
    r = cp.put("/services/" + eid, {"host": "x.test"})
    assert r.status == 200 and r.json["id"] == eid
    assert cp.get("/services/" + eid.upper()).status == 200


def test_post_with_existing_id_is_primary_key_violation(cp):
    r = cp.post("/services", {"host": "x.test"})
    eid = r.json["id"]
    r = cp.post("/services", {"id": eid, "host": "y.test"})
    assert r.status == 400
    assert r.json["code"] == 3 and r.json["name"] == "primary key violation"
    assert r.json["message"] == "primary key violation on key '{id=\"%s\"}'" % eid


def test_service_url_shorthand(cp):
    r = cp.post("/services", {"name": "u", "url": "https://up.test:8443/base"})
    assert r.status == 201, r
    s = r.json
    assert (s["protocol"], s["host"], s["port"], s["path"]) == ("https", "up.test", 8443, "/base")
    assert "url" not in s
    r = cp.patch("/services/u", {"url": "http://other.test"})
    assert r.status == 200, r
    assert (r.json["protocol"], r.json["host"], r.json["port"]) == ("http", "other.test", 80)
    assert r.json["path"] is None
    assert r.json["retries"] == 5


def test_patch_keeps_untouched_nested_record_fields(cp):
    r = cp.post("/upstreams", {"name": "hc.test",
                               "healthchecks": {"active": {"http_path": "/health"}}})
    assert r.status == 201
    r = cp.patch("/upstreams/hc.test", {"healthchecks": {"active": {"timeout": 3}}})
    assert r.status == 200, r
    assert r.json["healthchecks"]["active"]["timeout"] == 3
    assert r.json["healthchecks"]["active"]["http_path"] == "/health"


# ------------------------------------------------------------------ nested


def test_service_routes_nested(cp):
    s1 = cp.post("/services", {"name": "s1", "host": "a.test"}).json
    s2 = cp.post("/services", {"name": "s2", "host": "b.test"}).json
    r = cp.post("/services/s1/routes", {"name": "r1", "paths": ["/one"]})
    assert r.status == 201, r
    assert r.json["service"] == {"id": s1["id"]}
    rid = r.json["id"]
    cp.post("/services/s2/routes", {"name": "r2", "paths": ["/two"]})

    r = cp.get("/services/s1/routes")
    assert r.status == 200 and [x["name"] for x in r.json["data"]] == ["r1"]
    assert r.json["next"] is None
    assert cp.get("/services/%s/routes/r1" % s1["id"]).json["id"] == rid
    assert cp.get("/services/s1/routes/" + rid).status == 200
    # a route of another service is not found there
    assert cp.get("/services/s2/routes/r1").status == 404
    assert cp.patch("/services/s2/routes/r1", {"hosts": ["h"]}).status == 404
    r = cp.patch("/services/s1/routes/r1", {"hosts": ["h.test"]})
    assert r.status == 200 and r.json["hosts"] == ["h.test"] and r.json["paths"] == ["/one"]
    # parent getter
    r = cp.get("/routes/r1/service")
    assert r.status == 200 and r.json["id"] == s1["id"]
    r = cp.patch("/routes/r1/service", {"retries": 9})
    assert r.status == 200 and r.json["retries"] == 9
    assert cp.get("/services/s1").json["retries"] == 9
    assert cp.delete("/routes/r1/service").status == 405
    # nested PUT upserts with the parent set
    r = cp.put("/services/s2/routes/r3", {"paths": ["/three"]})
    assert r.status == 200 and r.json["service"] == {"id": s2["id"]} and r.json["name"] == "r3"
    # unknown parent
    assert cp.get("/services/nope/routes").status == 404
    assert cp.post("/services/nope/routes", {"paths": ["/x"]}).status == 404
    # nested delete
    assert cp.delete("/services/s2/routes/r1").status == 404
    assert cp.delete("/services/s1/routes/r1").status == 204
    assert cp.get("/routes/r1").status == 404
    # a route without a service has no parent; PUT creates one and links it
    cp.post("/routes", {"name": "lonely", "paths": ["/l"]})
    assert cp.get("/routes/lonely/service").status == 404
    assert cp.patch("/routes/lonely/service", {"retries": 1}).status == 404
    r = cp.put("/routes/lonely/service", {"name": "made", "host": "made.test"})
    assert r.status == 200, r
    assert cp.get("/routes/lonely").json["service"] == {"id": r.json["id"]}
    assert cp.get("/routes/lonely/service").json["name"] == "made"
    r = cp.put("/routes/lonely/service", {"name": "made", "host": "again.test"})
    assert r.status == 200 and r.json["host"] == "again.test" and r.json["retries"] == 5
    r = cp.put("/routes/absent/service", {"host": "x.test"})
    assert r.status == 404


def test_delete_service_referenced_by_routes(cp):
    cp.post("/services", {"name": "s", "host": "a.test"})
    cp.post("/services/s/routes", {"paths": ["/"]})
    r = cp.delete("/services/s")
    assert r.status == 400
    assert r.json == {
        "code": 4, "name": "foreign key violation",
        "message": "an existing 'routes' entity references this 'services' entity",
        "fields": {"@referenced_by": "routes"}}
    assert cp.get("/services/s").status == 200


def test_plugins_nested_and_cascade(cp):
    svc = cp.post("/services", {"name": "s", "host": "a.test"}).json
    route = cp.post("/services/s/routes", {"name": "r", "paths": ["/"]}).json
    con = cp.post("/consumers", {"username": "bob"}).json
    p1 = cp.post("/routes/r/plugins", {"name": "cors"})
    assert p1.status == 201 and p1.json["route"] == {"id": route["id"]}
    p2 = cp.post("/services/s/plugins", {"name": "cors"})
    assert p2.status == 201 and p2.json["service"] == {"id": svc["id"]}
    p3 = cp.post("/consumers/bob/plugins", {"name": "rate-limiting", "config": {"minute": 1}})
    assert p3.status == 201 and p3.json["consumer"] == {"id": con["id"]}
    assert [p["id"] for p in cp.get("/routes/r/plugins").json["data"]] == [p1.json["id"]]
    assert [p["id"] for p in cp.get("/services/s/plugins").json["data"]] == [p2.json["id"]]
    assert [p["id"] for p in cp.get("/consumers/bob/plugins").json["data"]] == [p3.json["id"]]
    assert cp.get("/plugins/%s/route" % p1.json["id"]).json["id"] == route["id"]
    assert cp.get("/plugins/%s/service" % p2.json["id"]).json["id"] == svc["id"]
    assert cp.get("/plugins/%s/consumer" % p3.json["id"]).json["id"] == con["id"]
    assert cp.get("/plugins/%s/service" % p1.json["id"]).status == 404
    # same plugin twice on the same scope
    r = cp.post("/routes/r/plugins", {"name": "cors"})
    assert r.status == 409 and r.json["code"] == 5
    assert r.json["message"].startswith("UNIQUE violation detected on '{consumer=null,name=\"cors\"")
    # cascades
    assert cp.delete("/routes/r").status == 204
    assert cp.get("/plugins/" + p1.json["id"]).status == 404
    assert cp.delete("/services/s").status == 204
    assert cp.get("/plugins/" + p2.json["id"]).status == 404
    assert cp.delete("/consumers/bob").status == 204
    assert cp.get("/plugins/" + p3.json["id"]).status == 404
    assert cp.get("/plugins").json["data"] == []


def test_consumer_credentials_nested(cp):
    bob = cp.post("/consumers", {"username": "bob"}).json
    cp.post("/consumers", {"username": "eve"})
    for seg, body, key in (("key-auth", {"key": "kk"}, "kk"),
                           ("basic-auth", {"username": "bob-ba", "password": "pw"}, "bob-ba"),
                           ("jwt", {"key": "jwt-key"}, "jwt-key"),
                           ("acls", {"group": "admins"}, "admins")):
        r = cp.post("/consumers/bob/" + seg, body)
        assert r.status == 201, (seg, r)
        assert r.json["consumer"] == {"id": bob["id"]}
        cid = r.json["id"]
        lst = cp.get("/consumers/bob/" + seg).json
        assert [x["id"] for x in lst["data"]] == [cid]
        assert cp.get("/consumers/eve/" + seg).json["data"] == []
        assert cp.get("/consumers/bob/%s/%s" % (seg, key)).json["id"] == cid
        assert cp.get("/consumers/bob/%s/%s" % (seg, cid)).json["id"] == cid
        assert cp.get("/consumers/eve/%s/%s" % (seg, cid)).status == 404
        r = cp.patch("/consumers/bob/%s/%s" % (seg, cid), {"tags": ["z"]})
        assert r.status == 200 and r.json["tags"] == ["z"]
        r = cp.post("/consumers/bob/" + seg, body)
        assert r.status == 409 and r.json["code"] == 5, (seg, r)
    r = cp.post("/consumers/bob/acls", {"group": "admins"})
    assert r.json["fields"] == {"consumer": {"id": bob["id"]}, "group": "admins"}
    # jwt secret generated, basic-auth password hashed
    jwt = cp.get("/consumers/bob/jwt/jwt-key").json
    assert jwt["secret"] and jwt["algorithm"] == "HS256"
    ba = cp.get("/consumers/bob/basic-auth/bob-ba").json
    assert ba["password"] != "pw" and len(ba["password"]) == 40
    # patching something else keeps the hash; patching the password rehashes it
    r = cp.patch("/basic-auths/bob-ba", {"tags": ["q"]})
    assert r.json["password"] == ba["password"]
    r = cp.patch("/basic-auths/bob-ba", {"password": "pw"})
    assert r.json["password"] == ba["password"]
    # top-level listing shows every consumer's credentials
    assert len(cp.get("/key-auths").json["data"]) == 1
    assert cp.delete("/consumers/bob").status == 204
    for path in ("/key-auths", "/basic-auths", "/jwts", "/acls"):
        assert cp.get(path).json["data"] == []


def test_key_auth_key_generated(cp):
    cp.post("/consumers", {"username": "bob"})
    r = cp.post("/consumers/bob/key-auth", {})
    assert r.status == 201 and len(r.json["key"]) >= 32


def test_certificate_snis_nested(cp, pki):
    cert = cp.post("/certificates", {"cert": pki["cert"], "key": pki["key"]}).json
    r = cp.post("/certificates/%s/snis" % cert["id"], {"name": "a.example.test"})
    assert r.status == 201 and r.json["certificate"] == {"id": cert["id"]}
    lst = cp.get("/certificates/%s/snis" % cert["id"]).json["data"]
    assert [s["name"] for s in lst] == ["a.example.test"]
    assert cp.get("/snis/a.example.test/certificate").status == 404
    r = cp.delete("/certificates/" + cert["id"])
    assert r.status in (204, 400)


def test_upstream_targets(cp):
    up = cp.post("/upstreams", {"name": "up.test"}).json
    assert cp.get("/targets").status == 404
    assert cp.post("/targets", {"target": "a:1"}).status == 404
    r = cp.post("/upstreams/up.test/targets", {"target": "10.0.0.1"})
    assert r.status == 201, r
    t = r.json
    assert t["target"] == "10.0.0.1:8000" and t["weight"] == 100
    assert t["upstream"] == {"id": up["id"]}
    r = cp.post("/upstreams/up.test/targets", {"target": "10.0.0.1:8000"})
    assert r.status == 409 and r.json["code"] == 5
    assert r.json["fields"] == {"upstream": {"id": up["id"]}, "target": "10.0.0.1:8000"}
    assert r.json["message"] == ("UNIQUE violation detected on '{target=\"10.0.0.1:8000\","
                                 "upstream={id=\"%s\"}}'" % up["id"])
    assert cp.get("/upstreams/up.test/targets/10.0.0.1:8000").json["id"] == t["id"]
    assert cp.get("/upstreams/up.test/targets/" + t["id"]).json["id"] == t["id"]
    # PUT acts as PATCH: no upsert, 404 when missing
    r = cp.put("/upstreams/up.test/targets/10.0.0.1:8000", {"weight": 0})
    assert r.status == 200 and r.json["weight"] == 0 and r.json["id"] == t["id"]
    # a disabled target shows only in /targets/all
    assert cp.get("/upstreams/up.test/targets").json["data"] == []
    assert [x["id"] for x in cp.get("/upstreams/up.test/targets/all").json["data"]] == [t["id"]]
    assert cp.put("/upstreams/up.test/targets/10.9.9.9:1", {"weight": 1}).status == 404
    assert cp.patch("/upstreams/up.test/targets/10.0.0.1:8000", {"weight": 7}).json["weight"] == 7
    assert [x["id"] for x in cp.get("/upstreams/up.test/targets").json["data"]] == [t["id"]]
    assert [x["id"] for x in cp.get("/upstreams/up.test/targets/all").json["data"]] == [t["id"]]
    assert cp.delete("/upstreams/up.test/targets/10.0.0.1:8000").status == 204
    assert cp.get("/upstreams/up.test/targets").json["data"] == []
    # cascade from the upstream
    cp.post("/upstreams/up.test/targets", {"target": "b.test:80"})
    assert cp.delete("/upstreams/up.test").status == 204
    cp.post("/upstreams", {"name": "up.test"})
    assert cp.get("/upstreams/up.test/targets").json["data"] == []


def test_foreign_key_by_endpoint_key_and_unresolved(cp):
    svc = cp.post("/services", {"name": "s", "host": "a.test"}).json
    r = cp.post("/routes", {"paths": ["/"], "service": {"name": "s"}})
    assert r.status == 201 and r.json["service"] == {"id": svc["id"]}
    r = cp.post("/routes", {"paths": ["/"], "service": {"name": "nope"}})
    assert r.status == 400 and r.json["code"] == 13
    assert r.json["name"] == "foreign keys unresolved"
    assert r.json["message"] == ("foreign key unresolved (service.name: the foreign key cannot be "
                                 "resolved with '{name=\"nope\"}' for an existing 'services' "
                                 "entity)")


def test_custom_id_filter(cp):
    cp.post("/consumers", {"username": "a", "custom_id": "ca"})
    cp.post("/consumers", {"username": "b", "custom_id": "cb"})
    r = cp.get("/consumers", query={"custom_id": "cb"})
    assert r.status == 200 and [c["username"] for c in r.json["data"]] == ["b"]
    assert r.json["next"] is None
    assert cp.get("/consumers", query={"custom_id": "zz"}).json["data"] == []
