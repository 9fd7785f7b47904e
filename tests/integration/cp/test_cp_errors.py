"""Request bodies, Kong's error shapes, routing errors, limits and the admin token."""

import json

import pytest

from .conftest import run_cp


def test_schema_violation_shape(cp):
    r = cp.post("/services", {"protocol": "ftp", "port": 70000})
    assert r.status == 400
    b = r.json
    assert b["code"] == 2 and b["name"] == "schema violation"
    assert b["fields"]["host"] == "required field missing"
    assert b["fields"]["protocol"].startswith("expected one of: ")
    assert b["fields"]["port"] == "value should be between 0 and 65535"
    assert b["message"].startswith("3 schema violations (host: required field missing; port: ")
    r = cp.post("/services", {})
    assert r.json["message"] == "schema violation (host: required field missing)"


def test_schema_violation_nested_fields(cp):
    r = cp.post("/routes", {"paths": ["/ok", "bad"], "protocols": ["http"]})
    assert r.status == 400 and r.json["code"] == 2
    paths = r.json["fields"]["paths"]
    assert paths[1].startswith("should start with: /")
    assert "paths.2: should start with: /" in r.json["message"]
    r = cp.post("/routes", {"protocols": ["http"]})
    assert r.status == 400
    assert "@entity" in r.json["fields"]


def test_unique_violation(cp):
    assert cp.post("/services", {"name": "dup", "host": "a.test"}).status == 201
    r = cp.post("/services", {"name": "dup", "host": "b.test"})
    assert r.status == 409
    assert r.json == {"code": 5, "name": "unique constraint violation",
                      "message": "UNIQUE violation detected on '{name=\"dup\"}'",
                      "fields": {"name": "dup"}}
    # also through PATCH and PUT onto another entity's name
    cp.post("/services", {"name": "other", "host": "c.test"})
    assert cp.patch("/services/other", {"name": "dup"}).status == 409
    assert cp.get("/services/other").status == 200


def test_foreign_key_violation(cp):
    missing = "3a3f3b2c-0000-4000-8000-000000000001"
    r = cp.post("/routes", {"paths": ["/"], "service": {"id": missing}})
    assert r.status == 400
    assert r.json == {
        "code": 4, "name": "foreign key violation",
        "message": "the foreign key '{id=\"%s\"}' does not reference an existing 'services' "
                   "entity." % missing,
        "fields": {"service": {"id": missing}}}


def test_invalid_uuid_in_foreign_key_is_schema_violation(cp):
    r = cp.post("/routes", {"paths": ["/"], "service": {"id": "nope"}})
    assert r.status == 400 and r.json["code"] == 2


def test_not_found_and_method_not_allowed(cp):
    for path in ("/nope", "/services/x/nope", "/targets", "/targets/x", "/a/b/c/d/e/f/g/h/i/j"):
        r = cp.get(path)
        assert r.status == 404 and r.json == {"message": "Not found"}, path
    assert cp.get("/services/absent").json == {"message": "Not found"}
    for method, path in (("DELETE", "/services"), ("PATCH", "/services"), ("PUT", "/services"),
                         ("POST", "/services/x"), ("POST", "/status"), ("DELETE", "/"),
                         ("PUT", "/config")):
        r = cp.request(method, path)
        assert r.status == 405 and r.json == {"message": "Method not allowed"}, (method, path)


def test_trailing_slash_tolerated(cp):
    cp.post("/services/", {"name": "s", "host": "a.test"})
    assert cp.get("/services/").status == 200
    assert cp.get("/services/s/").json["name"] == "s"


def test_options(cp):
    r = cp.request("OPTIONS", "/services")
    assert r.status == 204 and "GET" in r.headers["allow"]


def test_form_urlencoded_bodies(cp):
    r = cp.request("POST", "/services", form=[("name", "f"), ("host", "a.test"),
                                              ("port", "8080"), ("enabled", "false")])
    assert r.status == 201, r
    assert r.json["port"] == 8080 and r.json["enabled"] is False
    r = cp.request("POST", "/routes", form=[("name", "r"), ("paths[]", "/a"), ("paths[]", "/b"),
                                            ("methods", "GET"), ("methods", "POST"),
                                            ("hosts[1]", "h.test"), ("service.name", "f"),
                                            ("headers.x-v", "1")])
    assert r.status == 201, r
    assert r.json["paths"] == ["/a", "/b"]
    assert r.json["methods"] == ["GET", "POST"]
    assert r.json["hosts"] == ["h.test"]
    assert r.json["headers"] == {"x-v": ["1"]}
    r = cp.request("POST", "/plugins", form=[("name", "rate-limiting"), ("config.minute", "5"),
                                             ("config.policy", "local")])
    assert r.status == 201, r
    assert r.json["config"]["minute"] == 5 and r.json["config"]["policy"] == "local"
    assert r.json["config"]["hour"] is None and r.json["config"]["limit_by"] == "consumer"
    r = cp.request("PATCH", "/routes/r", form=[("service.id", ""), ("hosts", "")])
    assert r.status == 200, r
    assert r.json["service"] is None and r.json["hosts"] is None
    r = cp.request("PATCH", "/services/f", form=[("retries", "2")])
    assert r.status == 200 and r.json["retries"] == 2 and r.json["port"] == 8080


def test_multipart_body(cp):
    boundary = "XyZ123"
    parts = [("name", "m"), ("host", "m.test"), ("tags[]", "a"), ("tags[]", "b")]
    body = "".join('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                   % (boundary, k, v) for k, v in parts) + "--%s--\r\n" % boundary
    r = cp.request("POST", "/services", data=body,
                   headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    assert r.status == 201, r
    assert r.json["name"] == "m" and r.json["tags"] == ["a", "b"]


def test_malformed_json(cp):
    for body in ('{"host": ', "[1,2", "nul", '{"a":1}}'):
        r = cp.request("POST", "/services", data=body,
                       headers={"Content-Type": "application/json"})
        assert r.status == 400 and r.json == {"message": "Cannot parse JSON body"}, body
    deep = "[" * 100 + "]" * 100
    r = cp.request("POST", "/services", data='{"tags": %s}' % deep,
                   headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json == {"message": "Cannot parse JSON body"}
    r = cp.request("POST", "/services", data="[1]", headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert cp.get("/status").status == 200


def test_oversized_body(cp):
    big = json.dumps({"host": "a.test", "tags": ["x" * 1000] * 1100})
    r = cp.request("POST", "/services", data=big, headers={"Content-Type": "application/json"})
    assert r.status == 413
    assert "too large" in r.json["message"]
    assert cp.get("/services").json["data"] == []
    assert cp.get("/status").status == 200


def test_unsupported_content_type(cp):
    r = cp.request("POST", "/services", data="host=a", headers={"Content-Type": "text/plain"})
    assert r.status == 415
    # a body without a Content-Type is refused too
    r = cp.request("POST", "/services", data='{"host": "a"}')
    assert r.status == 415
    assert cp.get("/services").json["data"] == []


def test_empty_bodies(cp):
    r = cp.request("POST", "/services", data="", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json == {"message": "Cannot parse JSON body"}
    for ctype in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        r = cp.request("POST", "/services", data="",
                       headers={"Content-Type": ctype} if ctype else {})
        assert r.status == 400, ctype
        assert r.json["message"] == "schema violation (host: required field missing)"


def test_kong_headers(cp):
    r = cp.get("/")
    assert r.headers["server"].startswith("sluice/")
    assert "x-kong-admin-latency" in r.headers


# ------------------------------------------------------------------ admin_token

TOKEN = "s3cret-t0ken-value"


def test_admin_token(cp_factory):
    c = cp_factory(env={"SLUICE_ADMIN_TOKEN": TOKEN})
    for tok in ("", "wrong-token-value!", TOKEN + "x", TOKEN[:-1]):
        r = c.client.request("GET", "/services", token=tok or None,
                             headers={} if tok else {"Authorization": "Basic Zm9vOmJhcg=="})
        assert r.status == 401 and r.json == {"message": "Unauthorized"}, tok
    r = c.client.request("GET", "/", headers={"Authorization": "Bearer " + TOKEN + "zz"})
    assert r.status == 401
    r = c.get("/services")
    assert r.status == 200
    r = c.post("/services", {"host": "a.test"})
    assert r.status == 201
    r = c.get("/")
    assert r.json["configuration"]["admin_token"] == "******"
    assert TOKEN not in r.raw
    c.stop()
    assert TOKEN not in c.stderr()


def test_bad_configuration_exits_2(tmp_path):
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_LMDB_MAP_SIZE": "lots"})
    assert r.returncode == 2 and "lmdb_map_size" in r.stderr
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_LOG_LEVEL": "loud"})
    assert r.returncode == 2 and "log_level" in r.stderr
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_ADMIN_LISTEN": "nowhere"})
    assert r.returncode == 2 and "admin_listen" in r.stderr
    conf = tmp_path / "cp.conf"
    conf.write_text("bogus_key = 1\n")
    r = run_cp(["-t", "-c", conf])
    assert r.returncode == 2 and "bogus_key" in r.stderr
    conf.write_text("admin_listen = 127.0.0.1:9999\nlmdb_map_size = 64m\n")
    r = run_cp(["-t", "-c", conf])
    assert r.returncode == 0, r.stderr
    r = run_cp(["-v"])
    assert r.returncode == 0 and "sluice-cp" in r.stdout


def test_invalid_primary_key(cp):
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = cp.request(method, "/certificates/not-a-uuid", json_body={} if method in ("PATCH", "PUT") else None)
        assert r.status == 400, method
        assert r.json == {"code": 1, "name": "invalid primary key",
                          "message": "invalid primary key: '{id=\"expected a valid UUID\"}'",
                          "fields": {"id": "expected a valid UUID"}}


def test_unknown_field(cp):
    r = cp.post("/services", {"host": "a.test", "nope": 1})
    assert r.status == 400 and r.json["fields"] == {"nope": "unknown field"}
    assert r.json["message"] == "schema violation (nope: unknown field)"


def test_form_and_query_keys_that_are_not_utf8(cp):
    # these used to hang the (single-threaded) Admin API for good
    for body in ("%FF[1]=x", "name=s&%C3[2]=y", "host=a.test&tags=%FF"):
        r = cp.request("POST", "/services", data=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 400, body
        assert r.json["message"].startswith("Cannot parse form body")
    r = cp.get("/services?%FF[1]=x&size=5")
    assert r.status == 200 and r.json["data"] == []
    r = cp.request("POST", "/services", data="--B\r\nContent-Disposition: form-data; "
                   "name=\"n%FF\"\r\n\r\nv\r\n--B--".replace("%FF", "\u00ff").encode("latin-1"),
                   headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert r.status == 400
    assert cp.post("/services", {"name": "after", "host": "a.test"}).status == 201
