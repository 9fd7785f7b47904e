"""Name resolution (dataplane/dns.c): service and target host names are resolved
asynchronously through DNS (libevent evdns; `dns_resolver` names the servers),
answers are cached per worker for their TTL (at least 1 s; failures 5 s), the
hosts file (`dns_hostsfile`) is consulted first, and a name that cannot be
resolved answers 503 {"message":"name resolution failed"} without disturbing
anything else the worker serves.

Every sluice-dp here talks to dnsserver.DNSServer, a real UDP DNS server on
127.0.0.1 port 0, and reads an empty hosts file (so /etc/hosts cannot answer
for it). `workers = 1` wherever query counts are asserted: the cache is per
worker.
"""

import errno
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import dnsserver
import h1
from conftest import (UPSTREAM_PY, declarative, read_addr_file, route, service,
                      wait_until)

NAME = "upstream.test"
RESOLUTION_FAILED = "name resolution failed"

# evdns defaults (no resolv.conf options are read once dns_resolver is set):
# a query is sent up to 3 times, 5 s apart, then fails with "request timed out".
EVDNS_TIMEOUT_S = 5.0
EVDNS_TRIES = 3
ONE_QUERY_BUDGET_S = EVDNS_TIMEOUT_S * EVDNS_TRIES  # 15 s


# ------------------------------------------------------------------ helpers and fixtures


@pytest.fixture
def dns():
    srv = dnsserver.DNSServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def blackhole():
    """A name server that receives (and counts) queries but never answers."""
    srv = dnsserver.DNSServer(silent=True).start()
    yield srv
    srv.stop()


@pytest.fixture
def hosts_file(tmp_path):
    p = tmp_path / "hosts"
    p.write_text("")
    return p


def dns_conf(server, hosts_file, workers=1, **extra):
    conf = {"workers": str(workers),
            "dns_resolver": "127.0.0.1:%d" % server.port,
            "dns_hostsfile": str(hosts_file)}
    conf.update(extra)
    return conf


def named_url(upstream, name=NAME, path=""):
    return "http://%s:%d%s" % (name, upstream.port, path)


def upstream_name(resp):
    return resp.header("x-upstream-name")


def echoed_header(resp, name):
    vals = [v for k, v in resp.json()["headers"] if k.lower() == name.lower()]
    assert len(vals) == 1, resp.json()["headers"]
    return vals[0]


def assert_resolution_failed(resp):
    assert resp.status == 503, resp
    assert (resp.header("content-type") or "").startswith("application/json"), resp.headers
    assert resp.json()["message"] == RESOLUTION_FAILED, resp


class AltUpstream:
    """upstream.py on another loopback address with the same port as `upstream`:
    a DNS answer carries only an IP, the port comes from the service."""

    def __init__(self, workdir, host, port, name):
        self.addr_file = workdir / ("upstream-%s.addr" % name)
        self.log = open(workdir / ("upstream-%s.log" % name), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(UPSTREAM_PY), "--host", host, "--port", str(port),
             "--addr-file", str(self.addr_file), "--name", name],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.proc.poll() is not None or
                   (self.addr_file.exists() and read_addr_file(self.addr_file)),
                   10, what="upstream %s address file" % name)
        if self.proc.poll() is not None:
            raise RuntimeError("upstream %s on %s:%d exited with %s" % (
                name, host, port, self.proc.returncode))
        self.addr = read_addr_file(self.addr_file)
        self.name = name

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def alt_upstream(upstream, tmp_path):
    """An upstream named "alt" on 127.0.0.2:<upstream.port>."""
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.2", upstream.port))
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            pytest.skip("127.0.0.2 is not a local address here")
        raise
    finally:
        probe.close()
    u = AltUpstream(tmp_path, "127.0.0.2", upstream.port, "alt")
    yield u
    u.stop()


# ------------------------------------------------------------------ the test DNS server


def test_dnsserver_wire_format(dns):
    """The helper itself: question echoed byte for byte (0x20 case kept), the
    table's TTL, NXDOMAIN for unknown names, NOERROR with no answer for AAAA."""
    dns.set(NAME, "127.0.0.1", 7)
    rcode, answers, raw = dnsserver.query(dns.addr, "UpStReAm.TeSt")
    assert rcode == 0 and answers == [("A", 7, socket.inet_aton("127.0.0.1"))]
    flags, qd, an = struct.unpack("!HHH", raw[2:8])
    assert flags & 0x8000 and flags & 0x0100 and (qd, an) == (1, 1)
    assert b"\x08UpStReAm\x04TeSt\x00" in raw
    assert dnsserver.query(dns.addr, NAME, "AAAA")[:2] == (0, [])
    assert dnsserver.query(dns.addr, "nope.test")[:2] == (3, [])
    dns.set(NAME, "127.0.0.2", 60)
    assert dnsserver.query(dns.addr, NAME)[1] == [("A", 60, socket.inet_aton("127.0.0.2"))]
    assert dns.queries(NAME) == 3 and dns.queries(NAME, "A") == 2
    assert dns.queries("nope.test", "A") == 1


# ------------------------------------------------------------------ (a) proxied via the name


def test_proxied_through_dns_name(sluice_factory, dns, hosts_file, upstream):
    dns.set(NAME, "127.0.0.1", 60)
    dp = sluice_factory(declarative([
        service("named", named_url(upstream), routes=[route("named", paths=["/named"])])]),
        dns_conf(dns, hosts_file))
    for i in range(5):
        resp = dp.get("/named/x%d" % i)
        assert resp.status == 200, resp
        assert upstream_name(resp) == "up1"
        assert resp.json()["target"] == "/x%d" % i  # strip_path defaults to true
    # Kong sends the service host (with its non-default port) as Host.
    assert echoed_header(resp, "host") == "%s:%d" % (NAME, upstream.port)
    assert dns.queries(NAME, "A") == 1, dns.log
    assert dns.queries(NAME, "AAAA") == 0, dns.log  # an A answer needs no IPv6 lookup


def test_upstream_target_name_resolved(sluice_factory, dns, hosts_file, upstream):
    """Targets of an upstream entity go through the same resolver."""
    dns.set("target.test", "127.0.0.1", 60)
    dp = sluice_factory(declarative(
        [service("balanced", "http://pool.test", routes=[route("b", paths=["/b"])])],
        upstreams=[{"name": "pool.test",
                    "targets": [{"target": "target.test:%d" % upstream.port}]}]),
        dns_conf(dns, hosts_file))
    for _ in range(3):
        resp = dp.get("/b")
        assert resp.status == 200 and upstream_name(resp) == "up1", resp
    assert dns.queries("target.test", "A") == 1, dns.log
    assert dns.queries("pool.test") == 0, dns.log  # an upstream entity is not a DNS name


def test_hosts_file_consulted_first(sluice_factory, dns, tmp_path, upstream):
    hosts = tmp_path / "hosts-with-entry"
    hosts.write_text("# test hosts\n127.0.0.1   fromhosts.test   alias.test\n")
    dns.set("fromhosts.test", "127.0.0.9", 60)  # must not be used
    dp = sluice_factory(declarative([
        service("h", named_url(upstream, "fromhosts.test"), routes=[route("h", paths=["/h"])]),
        service("a", named_url(upstream, "ALIAS.test"), routes=[route("a", paths=["/a"])])]),
        dns_conf(dns, hosts))
    assert dp.get("/h").status == 200
    assert dp.get("/a").status == 200
    assert dns.total_queries() == 0, dns.log


# ------------------------------------------------------------------ (b) TTL caching


def test_answer_cached_for_its_ttl(sluice_factory, dns, hosts_file, upstream):
    dns.set(NAME, "127.0.0.1", 2)
    dp = sluice_factory(declarative([
        service("named", named_url(upstream), routes=[route("named", paths=["/"])])]),
        dns_conf(dns, hosts_file, workers=1))
    t0 = time.monotonic()
    assert dp.get("/first").status == 200
    assert dns.queries(NAME) == 1, dns.log
    # Within the TTL: served from the cache, on new connections and on one kept alive.
    with dp.conn() as c:
        while time.monotonic() - t0 < 1.4:
            assert c.request("GET", "/again").status == 200
            assert dp.get("/again-new-conn").status == 200
            time.sleep(0.1)
    assert dns.queries(NAME) == 1, "re-queried within the 2 s TTL: %r" % dns.log
    # After the TTL: the next request asks again, once.
    time.sleep(max(0.0, t0 + 2.6 - time.monotonic()))
    assert dp.get("/after-ttl").status == 200
    assert dns.queries(NAME) == 2, dns.log
    for _ in range(5):
        assert dp.get("/cached-again").status == 200
    assert dns.queries(NAME) == 2, dns.log
    assert dns.queries(NAME, "AAAA") == 0, dns.log


def test_ttl_zero_is_cached_for_one_second(sluice_factory, dns, hosts_file, upstream):
    dns.set(NAME, "127.0.0.1", 0)
    dp = sluice_factory(declarative([
        service("named", named_url(upstream), routes=[route("named", paths=["/"])])]),
        dns_conf(dns, hosts_file, workers=1))
    t0 = time.monotonic()
    for _ in range(3):
        assert dp.get("/").status == 200
    elapsed = time.monotonic() - t0
    if elapsed < 0.8:  # otherwise the machine is too slow to say anything
        assert dns.queries(NAME) == 1, dns.log
    time.sleep(max(0.0, t0 + 1.5 - time.monotonic()))
    n = dns.queries(NAME)
    assert dp.get("/").status == 200
    assert dns.queries(NAME) == n + 1, dns.log


# ------------------------------------------------------------------ (c) a changed answer


def test_changed_answer_takes_effect_after_ttl(sluice_factory, dns, hosts_file, upstream,
                                               alt_upstream):
    dns.set(NAME, "127.0.0.1", 2)
    dp = sluice_factory(declarative([
        service("named", named_url(upstream), routes=[route("named", paths=["/"])])]),
        dns_conf(dns, hosts_file, workers=1))
    t0 = time.monotonic()
    resp = dp.get("/")
    assert resp.status == 200 and upstream_name(resp) == "up1", resp
    dns.set(NAME, "127.0.0.2", 2)
    while time.monotonic() - t0 < 1.4:
        resp = dp.get("/")
        assert resp.status == 200 and upstream_name(resp) == "up1", \
            "new answer used before the old one's TTL ran out: %r" % resp
        time.sleep(0.1)
    assert dns.queries(NAME) == 1, dns.log
    time.sleep(max(0.0, t0 + 2.6 - time.monotonic()))
    for _ in range(3):
        resp = dp.get("/")
        assert resp.status == 200 and upstream_name(resp) == "alt", resp
        # The port is the service's; only the address came from DNS.
        assert echoed_header(resp, "host") == "%s:%d" % (NAME, upstream.port)
    assert dns.queries(NAME) == 2, dns.log


# ------------------------------------------------------------------ (d) unknown names


def test_unknown_name_503_and_negative_cache(sluice_factory, dns, hosts_file, upstream):
    dns.set(NAME, "127.0.0.1", 60)
    dp = sluice_factory(declarative([
        service("unknown", named_url(upstream, "nowhere.test"),
                routes=[route("unknown", paths=["/unknown"])]),
        service("named", named_url(upstream), routes=[route("named", paths=["/named"])]),
        service("ip", upstream.url, routes=[route("ip", paths=["/ip"])])]),
        dns_conf(dns, hosts_file, workers=1))
    t0 = time.monotonic()
    resp = dp.get("/unknown")
    assert_resolution_failed(resp)
    assert resp.json().get("request_id"), resp
    n_first = dns.queries("nowhere.test")
    assert n_first >= 1, dns.log
    # The process stays healthy: good routes, on the same worker, still work.
    assert dp.get("/ip").status == 200
    assert dp.get("/named").status == 200
    assert dp.status_get("/status/ready").status == 200
    # The failure is cached (5 s): no new query within it, and the same 503.
    with dp.conn() as c:  # also on a kept-alive connection
        assert_resolution_failed(c.request("GET", "/unknown"))
        assert c.request("GET", "/named").status == 200
    while time.monotonic() - t0 < 4.0:
        assert_resolution_failed(dp.get("/unknown"))
        time.sleep(0.25)
    assert dns.queries("nowhere.test") == n_first, dns.log
    # After the negative TTL it asks again; and once the name exists, it works.
    dns.set("nowhere.test", "127.0.0.1", 60)
    time.sleep(max(0.0, t0 + 5.6 - time.monotonic()))
    resp = dp.get("/unknown")
    assert resp.status == 200 and upstream_name(resp) == "up1", resp
    assert dns.queries("nowhere.test", "A") == 2, dns.log
    assert "cannot resolve 'nowhere.test'" in dp.stderr()


# ------------------------------------------------------------------ (e) a silent name server


def _timed_get(dp, target, out, key, timeout):
    t = time.monotonic()
    try:
        out[key] = (dp.get(target, timeout=timeout), time.monotonic() - t)
    except Exception as e:  # noqa: BLE001 - reported by the test
        out[key] = (e, time.monotonic() - t)


def test_silent_name_server_does_not_block_the_worker(sluice_factory, blackhole, tmp_path,
                                                      upstream):
    """workers = 1: while lookups wait on a name server that never answers,
    requests to an IP-literal service and to a hosts-file name on the same
    worker are served at once; the waiting requests share one lookup and end
    in a 503 rather than hanging."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 fromhosts.test\n")
    dp = sluice_factory(declarative([
        service("bh", named_url(upstream, "blackhole.test"), routes=[route("bh", paths=["/bh"])]),
        service("ip", upstream.url, routes=[route("ip", paths=["/ip"])]),
        service("h", named_url(upstream, "fromhosts.test"), routes=[route("h", paths=["/h"])])]),
        dns_conf(blackhole, hosts, workers=1))
    results = {}
    threads = [threading.Thread(target=_timed_get, args=(dp, "/bh", results, i, 60))
               for i in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    wait_until(lambda: blackhole.queries("blackhole.test") >= 1, 5,
               what="the lookup to reach the name server")
    # Keep the worker busy with other requests across the first retransmission (5 s).
    served = 0
    while time.monotonic() - t0 < EVDNS_TIMEOUT_S + 1.0:
        for target in ("/ip", "/h"):
            ts = time.monotonic()
            resp = dp.get(target, timeout=5)
            took = time.monotonic() - ts
            assert resp.status == 200 and upstream_name(resp) == "up1", resp
            assert took < 1.0, "%s took %.2fs while a lookup was pending" % (target, took)
            served += 1
        assert dp.status_get("/status/ready").status == 200
        assert not results, "a /bh request ended before any DNS timeout: %r" % results
        time.sleep(0.1)
    assert served >= 20
    # Three concurrent requests for one name: one lookup, so only its (re)transmissions.
    a_queries = [ts - t0 for ts, name, qt in blackhole.log
                 if name == "blackhole.test" and qt == "A"]
    assert len([t for t in a_queries if t < EVDNS_TIMEOUT_S - 0.5]) == 1, blackhole.log
    for t in threads:
        t.join(65)
    assert len(results) == 3
    for i in range(3):
        resp, took = results[i]
        assert not isinstance(resp, Exception), "request %d: %r after %.1fs" % (i, resp, took)
        assert_resolution_failed(resp)
        assert took >= EVDNS_TIMEOUT_S, "failed after %.1fs: before any DNS timeout" % took
    # Healthy afterwards; the failure is cached, so no new query for the name.
    n = blackhole.queries("blackhole.test")
    assert dp.get("/ip").status == 200
    assert_resolution_failed(dp.get("/bh", timeout=5))
    assert blackhole.queries("blackhole.test") == n
    assert "cannot resolve 'blackhole.test'" in dp.stderr()


def test_silent_name_server_fails_within_one_query_timeout(sluice_factory, blackhole,
                                                           hosts_file, upstream):
    """A lookup whose A query timed out has learnt nothing about AAAA: it fails
    then (evdns: 3 tries x 5 s = 15 s), instead of spending another full
    timeout on an AAAA query to the same silent server. (IPv6 is the fallback
    for a name with no A record, not for an unreachable name server.)"""
    dp = sluice_factory(declarative([
        service("bh", named_url(upstream, "silent.test"), routes=[route("bh", paths=["/bh"])])]),
        dns_conf(blackhole, hosts_file, workers=1))
    t = time.monotonic()
    resp = dp.get("/bh", timeout=60)  # generous: we want to see when it does answer
    took = time.monotonic() - t
    assert_resolution_failed(resp)
    qlog = [(round(ts - t, 1), qt) for ts, name, qt in blackhole.log if name == "silent.test"]
    assert took < ONE_QUERY_BUDGET_S + 5.0, (
        "503 only after %.1fs (one evdns query times out after %.0fs); queries (s, type): %r"
        % (took, ONE_QUERY_BUDGET_S, qlog))
    assert blackhole.queries("silent.test", "AAAA") == 0, (
        "AAAA queried after the A query timed out: %r" % qlog)


def test_client_reset_during_lookup_then_sigterm(sluice_factory, blackhole, hosts_file,
                                                 upstream):
    """A client that resets while its lookup is pending leaves the lookup in
    flight; SIGTERM must still exit promptly and cleanly (exit 0, and no leak
    report under the ASan build: the pending lookup is freed)."""
    dp = sluice_factory(declarative([
        service("bh", named_url(upstream, "pending.test"), routes=[route("bh", paths=["/bh"])]),
        service("ip", upstream.url, routes=[route("ip", paths=["/ip"])])]),
        dns_conf(blackhole, hosts_file, workers=1))
    c = dp.conn(timeout=10)
    c.send(h1.build_request("GET", "/bh"))
    wait_until(lambda: blackhole.queries("pending.test") >= 1, 5,
               what="the lookup to reach the name server")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sock.close()  # RST
    assert dp.get("/ip").status == 200  # the worker has seen the reset by now
    t = time.monotonic()
    dp.stop()  # SIGTERM; asserts exit 0 and a clean stderr (no LeakSanitizer report)
    assert time.monotonic() - t < 5.0, "drain waited %.1fs with no request in flight" % (
        time.monotonic() - t)


def test_cached_failure_served_repeatedly(sluice_factory, dns, hosts_file, upstream):
    """The cached-failure path answers from within the resolve call itself
    (no lookup in flight): hammer it, interleaved with good requests on the
    same connections, and the worker must stay sound (run this under the ASan
    build: `SLUICE_BUILD=build-asan`)."""
    dp = sluice_factory(declarative([
        service("unknown", named_url(upstream, "nowhere.test"),
                routes=[route("unknown", paths=["/unknown"])]),
        service("ip", upstream.url, routes=[route("ip", paths=["/ip"])])]),
        dns_conf(dns, hosts_file, workers=1))
    assert_resolution_failed(dp.get("/unknown"))
    n = dns.queries("nowhere.test")
    errors = []

    def client(k):
        try:
            with dp.conn() as c:
                for i in range(60):
                    resp = c.request("GET", "/unknown" if i % 3 else "/ip")
                    if resp.status != (503 if i % 3 else 200):
                        errors.append(resp)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    if time.monotonic() - t0 < 4.5:  # all within the 5 s negative TTL
        assert dns.queries("nowhere.test") == n, dns.log
    assert dp.get("/ip").status == 200
    assert dp.proc.poll() is None
