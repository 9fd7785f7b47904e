"""Pagination, tag filters and the tag index."""

import base64
import urllib.parse

import pytest


def _load_services(cp, n, tags=None):
    """Creates n services in one POST /config (one transaction)."""
    services = [{"name": "svc-%05d" % i, "host": "h%d.test" % i,
                 **({"tags": tags(i)} if tags else {})} for i in range(n)]
    r = cp.post("/config", {"_format_version": "3.0", "services": services})
    assert r.status == 201, r
    return services


def _walk(cp, path, query):
    seen, pages = [], 0
    r = cp.get(path, query=query)
    while True:
        assert r.status == 200, r
        pages += 1
        seen += [e["name"] for e in r.json["data"]]
        if r.json["next"] is None:
            assert "offset" not in r.json
            return seen, pages
        assert r.json["offset"]
        assert r.json["next"].startswith(path + "?offset=")
        r = cp.get(r.json["next"])


def test_paginate_2500_services(cp):
    _load_services(cp, 2500)
    seen, pages = _walk(cp, "/services", None)
    assert len(seen) == 2500 and len(set(seen)) == 2500 and pages == 25
    seen, pages = _walk(cp, "/services", {"size": 1000})
    assert len(seen) == 2500 and len(set(seen)) == 2500 and pages == 3
    seen, pages = _walk(cp, "/services", {"size": 7})
    assert sorted(seen) == ["svc-%05d" % i for i in range(2500)]
    r = cp.get("/services", query={"size": 3})
    assert len(r.json["data"]) == 3 and r.json["next"].endswith("&size=3")
    # the offset is opaque but stable: the same page twice
    again = cp.get("/services", query={"size": 3, "offset": r.json["offset"]}).json
    nxt = cp.get(r.json["next"]).json
    assert again["data"] == nxt["data"]


def test_page_size_limits(cp):
    for bad in ("abc", "1x", ""):
        r = cp.get("/services?size=" + bad)
        if bad == "":
            continue
        assert r.status == 400
        assert r.json == {"code": 9, "name": "invalid size", "message": "size must be a number"}
    for bad in ("0", "1001", "2.5", "-3"):
        r = cp.get("/services", query={"size": bad})
        assert r.status == 400 and r.json["code"] == 9
        assert r.json["message"] == "size must be an integer between 1 and 1000"
    assert cp.get("/services", query={"size": "1000"}).status == 200


def test_invalid_offset(cp):
    for bad in ("!!!", "Zm9v", base64.b64encode(b"not-a-uuid-but-36-characters-long!!!").decode()):
        r = cp.get("/services", query={"offset": bad})
        assert r.status == 400, bad
        assert r.json["code"] == 7 and r.json["name"] == "invalid offset"
        assert r.json["message"] == "'%s' is not a valid offset: bad base64 encoding" % bad


def test_nested_pagination(cp):
    cp.post("/services", {"name": "s", "host": "a.test"})
    for i in range(5):
        assert cp.post("/services/s/routes", {"name": "r%d" % i, "paths": ["/%d" % i]}).status == 201
    cp.post("/routes", {"name": "other", "paths": ["/o"]})
    r = cp.get("/services/s/routes", query={"size": 2})
    names = [x["name"] for x in r.json["data"]]
    while r.json["next"]:
        assert "/routes?offset=" in r.json["next"]
        r = cp.get(r.json["next"] + "&size=2")
        names += [x["name"] for x in r.json["data"]]
    assert sorted(names) == ["r%d" % i for i in range(5)]


def test_tag_filters(cp):
    _load_services(cp, 30, tags=lambda i: (["even"] if i % 2 == 0 else ["odd"]) +
                   (["three"] if i % 3 == 0 else []))
    def names(q, size=None):
        query = {"tags": q}
        if size:
            query["size"] = size
        seen, _ = _walk(cp, "/services", query)
        return sorted(seen)
    even = ["svc-%05d" % i for i in range(30) if i % 2 == 0]
    assert names("even") == even
    assert names("even,three") == ["svc-%05d" % i for i in range(30) if i % 6 == 0]
    assert names("odd/three") == sorted("svc-%05d" % i for i in range(30)
                                        if i % 2 == 1 or i % 3 == 0)
    assert names("even", size=4) == even
    assert names("nothing") == []
    r = cp.get("/services", query={"tags": "even", "size": 4})
    assert "&tags=even" in r.json["next"]


def test_tag_filter_errors(cp):
    r = cp.get("/services", query={"tags": "a,b,c,d,e,f"})
    assert r.status == 400
    assert r.json["code"] == 11 and r.json["name"] == "invalid options"
    assert r.json["message"] == "invalid option (tags: cannot query more than 5 tags)"
    assert r.json["options"] == {"tags": "cannot query more than 5 tags"}
    assert cp.get("/services", query={"tags": "a,b,c,d,e"}).status == 200
    r = cp.get("/services", query={"tags": "a,b/c"})
    assert r.status == 400 and r.json["code"] == 11


def test_tags_endpoints(cp):
    cp.post("/services", {"name": "s", "host": "a.test", "tags": ["blue", "green"]})
    cp.post("/consumers", {"username": "c", "tags": ["blue"]})
    r = cp.get("/tags/blue")
    assert r.status == 200
    got = sorted((x["entity_name"], x["tag"]) for x in r.json["data"])
    assert got == [("consumers", "blue"), ("services", "blue")]
    r = cp.get("/tags")
    assert sorted(x["tag"] for x in r.json["data"]) == ["blue", "blue", "green"]
    seen = []
    r = cp.get("/tags", query={"size": 1})
    while True:
        seen += r.json["data"]
        if not r.json["next"]:
            break
        r = cp.get(r.json["next"] + "&size=1")
    assert len(seen) == 3
    r = cp.get("/tags/blue", query={"size": 1})
    assert r.json["next"].startswith("/tags/blue?offset=")
    assert len(cp.get(r.json["next"]).json["data"]) == 1
    assert cp.get("/tags/none").json["data"] == []
    # deleting an entity removes it from the tag index
    cp.delete("/consumers/c")
    assert [x["entity_name"] for x in cp.get("/tags/blue").json["data"]] == ["services"]
