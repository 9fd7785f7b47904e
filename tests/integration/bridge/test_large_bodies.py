"""Request bodies on routes with external plugins, as Kong: an external
plugin with an access (or rewrite) handler may call kong.request.get_raw_body,
so the data plane reads the body before the event when it fits in
client_body_buffer_size. A larger body is not refused: it streams to the
upstream unread, and a get_raw_body call gets Kong's error ("request body did
not fit into client body buffer, consider raising 'client_body_buffer_size'").
A native plugin that needs the body whole (key-auth's key_in_body) still
gets it whole or answers 413 on the same route.

Bodies go as Content-Length and chunked, sent at once and trickled; the
upstream's /stream-upload reports the length and SHA-256 of what it got. The
plugins are go-pdk-examples' hello (access, never reads the body) and
pdk-check (reads it, and reports each PDK answer in a response header).
"""

import hashlib
import os
import time

import pytest

import h1
from bridge.pluginservers import go_plugin_conf
from bridge.test_pdk_methods import header_report as report
from conftest import declarative, route, service

BUFFER = 64 * 1024  # client_body_buffer_size here
TOO_BIG_ERR = ("request body did not fit into client body buffer, consider raising "
               "'client_body_buffer_size'")
# pdk-check calls are skipped where they would change the request or fail the log.
SKIP = ["kong.log.crit", "kong.log.alert", "kong.service.request.set_raw_body",
        "kong.response.exit", "kong.response.error"]


def plugin(name, config=None, **scope):
    p = {"name": name, "config": config or {}}
    p.update(scope)
    return p


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    decl = declarative([service("echo", upstream.url, routes=[
        route("hello", paths=["/hello"], plugins=[plugin("hello", {"message": "hi"})]),
        route("check", paths=["/check"], plugins=[plugin("pdk-check", {"skip": SKIP})]),
        route("both", paths=["/both"], plugins=[
            plugin("hello", {"message": "hi"}),
            plugin("key-auth", {"key_in_body": True, "key_in_header": False})]),
    ])], consumers=[{"username": "u", "keyauth_credentials": [{"key": "k1"}]}])
    s = module_sluice_factory(decl, start=False)
    s.conf.update(go_plugin_conf(s.prefix, ["hello", "pdk-check"]))
    s.conf["client_body_buffer_size"] = str(BUFFER)
    s.write_conf()
    return s.start()


def post(dp, target, body, chunked=False, trickle=False, headers=()):
    hs = list(headers)
    if chunked:
        hs.append(("Transfer-Encoding", "chunked"))
        pieces = [body[i:i + 16384] for i in range(0, len(body), 16384)]
        data = h1.chunked_body(pieces)
    else:
        data = body
        hs.append(("Content-Length", str(len(body))))
    with dp.conn(timeout=30) as c:
        c.send(h1.build_request("POST", target, hs, None if trickle or chunked else data))
        if trickle or chunked:
            step = 8192 if trickle else len(data)
            for i in range(0, len(data), step):
                c.send(data[i:i + step])
                if trickle:
                    time.sleep(0.001)
        return c.read_response("POST")


def upload_seen(resp, body):
    assert resp.status == 200, resp
    got = resp.json()
    assert got["body_len"] == len(body), got
    assert got["body_sha256"] == hashlib.sha256(body).hexdigest()
    return got


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("trickle", [False, True])
def test_large_body_streams_past_a_plugin_that_does_not_read_it(dp, chunked, trickle):
    """3 MB (48 times the buffer) through hello: no 413, the plugin ran, the
    upstream got every byte."""
    body = os.urandom(3 << 20)
    r = post(dp, "/hello/stream-upload", body, chunked=chunked, trickle=trickle)
    upload_seen(r, body)
    assert r.header("x-hello-from-go") == "Go says hi to sluice.test"


@pytest.mark.parametrize("chunked", [False, True])
def test_body_that_fits_is_read_for_the_plugin(dp, chunked):
    """Under the buffer (also chunked, and trickled so that the data plane
    waits for the end): get_raw_body is the body, and the upstream gets it."""
    body = os.urandom(BUFFER // 2).hex().encode()[:BUFFER - 100]
    r = post(dp, "/check/stream-upload", body, chunked=chunked, trickle=chunked)
    upload_seen(r, body)
    a = report(r, "x-pdk-check-access")
    entry = a["kong.request.get_raw_body"]
    assert "err" not in entry, entry
    assert entry["v"] == body.decode()


@pytest.mark.parametrize("chunked", [False, True])
def test_get_raw_body_of_a_body_that_does_not_fit_is_kongs_error(dp, chunked):
    body = os.urandom(1 << 20)
    r = post(dp, "/check/stream-upload", body, chunked=chunked)
    upload_seen(r, body)
    entry = report(r, "x-pdk-check-access")["kong.request.get_raw_body"]
    assert TOO_BIG_ERR in entry.get("err", ""), entry


def test_just_over_the_buffer_chunked(dp):
    """A chunked body whose framing pushes it just past the buffer: the
    decision is made on what arrived, and nothing is lost either way."""
    body = b"x" * (BUFFER - 10)
    r = post(dp, "/check/stream-upload", body, chunked=True)
    upload_seen(r, body)


def test_native_plugin_needing_the_body_still_gets_413(dp):
    """key-auth with key_in_body on the same route needs the body whole: a
    body over the buffer is refused as before; one that fits is read."""
    big = b"apikey=k1&pad=" + b"p" * (BUFFER * 2)
    r = post(dp, "/both/stream-upload", big,
             headers=[("Content-Type", "application/x-www-form-urlencoded")])
    assert r.status == 413, r
    small = b"apikey=k1&pad=" + b"p" * 1000
    r = post(dp, "/both/stream-upload", small,
             headers=[("Content-Type", "application/x-www-form-urlencoded")])
    upload_seen(r, small)
    assert r.header("x-hello-from-go") == "Go says hi to sluice.test"
