"""The certificate phase: global external plugins run during each TLS
handshake, before any request (Kong's ssl_certificate phase), through the real
data plane and the real go-pdk conformance plugin (pdk-check's Certificate
handler logs the client's address; mode refuse_tls ends the handshake)."""

import ssl
import time

import pytest

import h1
from conftest import declarative, route, service, wait_until
from bridge.pluginservers import go_plugin_conf

CHECK_ID = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e01"
SKIP = ["kong.log.crit", "kong.log.alert"]


def tls_client():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the data plane's self-signed default
    return ctx


def start(sluice_factory, upstream, config, scoped=False, **per_server):
    inst = {"name": "pdk-check", "id": CHECK_ID, "config": config}
    if scoped:
        decl = declarative([service("echo", upstream.url, routes=[
            route("r", paths=["/"], plugins=[inst])])])
    else:
        decl = declarative([service("echo", upstream.url, routes=[route("r", paths=["/"])])],
                           plugins=[inst])
    s = sluice_factory(decl, start=False)
    s.conf.update(go_plugin_conf(s.prefix, ["pdk-check"], **per_server))
    s.conf["proxy_listen"] = "127.0.0.1:0, 127.0.0.1:0 ssl"
    s.conf["log_level"] = "notice"
    s.write_conf()
    s.start()
    # proxy.addr has a line per listener, in order: plain, then TLS.
    lines = (s.prefix / "proxy.addr").read_text().split()
    plain, tls = [(a.rpartition(":")[0], int(a.rpartition(":")[2])) for a in lines]
    s.proxy, s.tls_addr = plain, tls
    return s


def cert_lines(s):
    return s.stderr().count("pdk-check: certificate phase for 127.0.0.1")


def test_certificate_phase_runs_once_per_handshake(sluice_factory, upstream):
    s = start(sluice_factory, upstream, {"skip": SKIP})
    with h1.Conn(s.tls_addr, ssl_context=tls_client(), server_hostname="a.test") as c:
        for i in range(3):
            r = c.request("GET", "/over-tls/%d" % i)
            assert r.status == 200, r
            assert r.header("x-pdk-check-access")
    wait_until(lambda: cert_lines(s) == 1, what="one certificate phase for one handshake")
    # A second handshake runs it again; plain HTTP never does.
    assert h1.get(s.tls_addr, "/again", ssl_context=tls_client()).status == 200
    assert s.get("/plain").status == 200
    wait_until(lambda: cert_lines(s) == 2, what="a second certificate phase")
    time.sleep(0.3)
    assert cert_lines(s) == 2


def test_certificate_phase_can_refuse_the_handshake(sluice_factory, upstream):
    s = start(sluice_factory, upstream, {"mode": "refuse_tls", "skip": SKIP})
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        h1.get(s.tls_addr, "/", ssl_context=tls_client())
    # Plain HTTP is not affected, and the data plane stays healthy.
    assert s.status_get("/status").status == 200


def test_route_scoped_instances_have_no_certificate_phase(sluice_factory, upstream):
    s = start(sluice_factory, upstream, {"skip": SKIP}, scoped=True)
    assert h1.get(s.tls_addr, "/", ssl_context=tls_client()).status == 200
    time.sleep(0.3)
    assert cert_lines(s) == 0


def test_unreachable_server_refuses_the_handshake_unless_fail_open(sluice_factory, upstream):
    s = start(sluice_factory, upstream, {"skip": SKIP}, start_cmd="", timeout="300ms")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        h1.get(s.tls_addr, "/", ssl_context=tls_client())
    s2 = start(sluice_factory, upstream, {"skip": SKIP}, start_cmd="", timeout="300ms",
               fail_open="on")
    # fail_open: the plugin is skipped in every phase; the request goes through.
    assert h1.get(s2.tls_addr, "/", ssl_context=tls_client()).status == 200
