"""Traffic-control plugins on a real sluice-dp (DB-less): rate-limiting (policy
local), ip-restriction and request-size-limiting, with Kong 3.10's statuses,
messages and headers.

Rate-limiting windows are aligned on the UTC clock like Kong's, so every test
that counts waits, when needed, until enough of the current window is left
for it to finish inside one window.
"""

import concurrent.futures
import json
import socket
import threading
import time

import pytest

import h1
from conftest import declarative, free_port, route, run_dp, service, wait_until

RL_ID = "6f1d3c52-8e0a-4c55-9a57-0c1f5b9f1a01"
RL_ID2 = "6f1d3c52-8e0a-4c55-9a57-0c1f5b9f1a02"
IPR_ID = "0d4e7a10-2b7c-4e8e-8f49-7a8c1a2b3c01"
RSL_ID = "9a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c01"

JSON_CT = "application/json; charset=utf-8"
PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def plugin(name, config, pid=None, **scope):
    p = {"name": name, "config": config}
    if pid:
        p["id"] = pid
    p.update(scope)
    return p


def one_route_decl(upstream, plugins, paths=("/",), **extra):
    return declarative([service("echo", upstream.url, routes=[
        route("r", paths=list(paths), plugins=list(plugins))])], **extra)


def rl(config, pid=RL_ID):
    return plugin("rate-limiting", config, pid)


def wait_window(period, need):
    """Sleeps into the next window of `period` seconds unless at least `need`
    seconds of the current one are left."""
    left = period - (time.time() % period)
    if left < need:
        time.sleep(left + 0.05)


def rl_headers(resp):
    return {k.lower(): v for k, v in resp.headers
            if k.lower().startswith(("x-ratelimit", "ratelimit", "retry-after"))}


def check_dp(tmp_path, decl):
    """sluice-dp -t on a document: the CompletedProcess."""
    conf = tmp_path / "sluice.conf"
    conf.write_text("proxy_listen = 127.0.0.1:0\nstatus_listen = 127.0.0.1:0\nworkers = 1\n")
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(decl))
    return run_dp(["-c", conf, "-p", tmp_path, "-t", "--declarative", path])


def assert_rejected(res, *words):
    assert res.returncode == 2, "exit %r; stderr:\n%s" % (res.returncode, res.stderr)
    lines = [line for line in res.stderr.splitlines() if all(w in line for w in words)]
    assert lines, "no error line with %r; stderr:\n%s" % (words, res.stderr)


def parallel(n, fn, threads=24):
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        return list(ex.map(fn, range(n)))


# ======================================================================
# rate-limiting
# ======================================================================


@pytest.mark.parametrize("workers", [2, 4])
def test_rl_exact_across_workers(sluice_factory, upstream, workers):
    """Many parallel connections spread over several worker threads: exactly
    `limit` requests pass in the window, the rest get 429, and only the
    passed ones reach the upstream."""
    limit = 25
    token = "rl-exact-%d-%d" % (workers, time.time_ns())
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": limit, "limit_by": "ip"})]),
                        {"workers": str(workers)})
    wait_window(3600, 30)

    def one(i):
        return dp.get("/count/%s?i=%d" % (token, i)).status

    def keepalive(i):
        out = []
        with dp.conn() as c:
            for j in range(5):
                out.append(c.request("GET", "/count/%s?k=%d-%d" % (token, i, j)).status)
        return out

    statuses = parallel(60, one)
    statuses += [s for batch in parallel(8, keepalive, threads=8) for s in batch]
    assert statuses.count(200) == limit, statuses
    assert statuses.count(429) == len(statuses) - limit, statuses
    assert upstream.counter(token) == limit


def test_rl_headers_and_429(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rl({"minute": 3, "hour": 10,
                                                      "limit_by": "ip"})]))
    wait_window(60, 15)
    for i in range(3):
        now = time.time()
        r = dp.get("/anything")
        assert r.status == 200, r
        h = rl_headers(r)
        assert h["x-ratelimit-limit-minute"] == "3"
        assert h["x-ratelimit-remaining-minute"] == str(2 - i)
        assert h["x-ratelimit-limit-hour"] == "10"
        assert h["x-ratelimit-remaining-hour"] == str(9 - i)
        # RateLimit-* describe the period with the fewest left: the minute.
        assert h["ratelimit-limit"] == "3"
        assert h["ratelimit-remaining"] == str(2 - i)
        assert abs(int(h["ratelimit-reset"]) - (60 - int(now) % 60)) <= 1, h
        assert "retry-after" not in h
        # The upstream saw none of them: they are response headers.
        assert not [k for k, _ in r.json()["headers"] if "ratelimit" in k.lower()]

    now = time.time()
    r = dp.get("/anything")
    assert r.status == 429, r
    assert r.json() == {"message": "API rate limit exceeded"}
    assert r.header("Content-Type") == JSON_CT
    h = rl_headers(r)
    assert h["x-ratelimit-remaining-minute"] == "0"
    # The refused request counts nowhere: the hour still has 7 left.
    assert h["x-ratelimit-remaining-hour"] == "7"
    assert h["ratelimit-limit"] == "3"
    assert h["ratelimit-remaining"] == "0"
    assert h["retry-after"] == h["ratelimit-reset"]
    assert abs(int(h["retry-after"]) - (60 - int(now) % 60)) <= 1, h
    assert "X-Upstream-Name" not in dict(r.headers)


def test_rl_tie_prefers_longer_window(sluice_factory, upstream):
    """Equal remaining in two periods: RateLimit-* describe the longer one."""
    dp = sluice_factory(one_route_decl(upstream, [rl({"minute": 4, "hour": 4,
                                                      "limit_by": "ip"})]))
    wait_window(60, 5)
    now = time.time()
    h = rl_headers(dp.get("/"))
    assert h["ratelimit-limit"] == "4" and h["ratelimit-remaining"] == "3"
    assert abs(int(h["ratelimit-reset"]) - (3600 - int(now) % 3600)) <= 1, h


def test_rl_second_window_rolls_over(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rl({"second": 2, "limit_by": "ip"})]))
    for _attempt in range(5):
        # Start just after a second boundary so that three requests fit in it.
        time.sleep(1.02 - time.time() % 1)
        t0 = time.time()
        got = [dp.get("/").status for _ in range(3)]
        if int(time.time()) == int(t0):
            break
    else:
        pytest.skip("could not fit three requests into one second")
    assert got == [200, 200, 429]
    time.sleep(1.02 - time.time() % 1)
    r = dp.get("/")
    assert r.status == 200, r
    assert r.header("X-RateLimit-Remaining-Second") == "1"


def test_rl_fractional_limit(sluice_factory, upstream):
    """Limits are numbers: 1.5 lets one request through and shows Lua's
    number formatting."""
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 1.5, "limit_by": "ip"})]))
    wait_window(3600, 10)
    r = dp.get("/")
    assert r.status == 200
    assert r.header("X-RateLimit-Limit-Hour") == "1.5"
    assert r.header("X-RateLimit-Remaining-Hour") == "0.5"
    r = dp.get("/")
    assert r.status == 200
    assert r.header("X-RateLimit-Remaining-Hour") == "0"
    assert dp.get("/").status == 429


def test_rl_limit_by_ip_uses_forwarded_address(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 2, "limit_by": "ip"})]),
                        {"trusted_ips": "127.0.0.1"})
    wait_window(3600, 10)
    a, b = {"X-Real-IP": "10.0.0.1"}, {"X-Real-IP": "10.0.0.2"}
    assert [dp.get("/", a).status for _ in range(3)] == [200, 200, 429]
    assert [dp.get("/", b).status for _ in range(3)] == [200, 200, 429]
    # The peer itself (no X-Real-IP) is a third client.
    assert dp.get("/").status == 200


def test_rl_limit_by_ip_ignores_untrusted_forwarding(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 2, "limit_by": "ip"})]))
    wait_window(3600, 10)
    got = [dp.get("/", {"X-Real-IP": "10.0.0.%d" % i}).status for i in range(3)]
    assert got == [200, 200, 429]


def test_rl_limit_by_header(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 2, "limit_by": "header",
                                                      "header_name": "X-Tenant"})]))
    wait_window(3600, 10)
    t1, t2 = {"X-Tenant": "alpha"}, {"X-Tenant": "beta"}
    assert [dp.get("/", t1).status for _ in range(3)] == [200, 200, 429]
    assert [dp.get("/", t2).status for _ in range(2)] == [200, 200]
    # Without the header the client address is the identifier.
    assert [dp.get("/").status for _ in range(3)] == [200, 200, 429]
    # A header value equal to nobody else's key is its own counter, however long.
    long_value = {"X-Tenant": "z" * 4000}
    assert dp.get("/", long_value).status == 200


def test_rl_limit_by_service(sluice_factory, upstream):
    """A global instance limited by service: the routes of one service share
    a counter, another service has its own."""
    decl = declarative([
        service("s1", upstream.url, routes=[route("a", paths=["/a"]), route("b", paths=["/b"])]),
        service("s2", upstream.url, routes=[route("c", paths=["/c"])]),
    ], plugins=[rl({"hour": 3, "limit_by": "service"})])
    dp = sluice_factory(decl)
    wait_window(3600, 10)
    assert [dp.get(p).status for p in ("/a", "/b", "/a", "/b")] == [200, 200, 200, 429]
    assert [dp.get("/c").status for _ in range(4)] == [200, 200, 200, 429]


def test_rl_limit_by_path(sluice_factory, upstream):
    """Kong counts by path only requests whose path is config.path; any
    other request is counted by its client address."""
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 2, "limit_by": "path",
                                                      "path": "/hot"})]),
                        {"trusted_ips": "127.0.0.1"})
    wait_window(3600, 10)
    a, b = {"X-Real-IP": "10.0.0.1"}, {"X-Real-IP": "10.0.0.2"}
    assert dp.get("/hot", a).status == 200
    assert dp.get("/hot", b).status == 200
    assert dp.get("/hot", a).status == 429  # one counter for the path
    # Elsewhere each client has its own counter.
    assert [dp.get("/cold", a).status for _ in range(3)] == [200, 200, 429]
    assert dp.get("/cold", b).status == 200


def test_rl_limit_by_consumer_falls_back_to_ip(sluice_factory, upstream):
    """No authentication: limit_by consumer (the default) and credential
    count by client address."""
    for by in ("consumer", "credential"):
        dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 1, "limit_by": by})]),
                            {"trusted_ips": "127.0.0.1"})
        wait_window(3600, 10)
        assert dp.get("/", {"X-Real-IP": "10.9.0.1"}).status == 200
        assert dp.get("/", {"X-Real-IP": "10.9.0.1"}).status == 429
        assert dp.get("/", {"X-Real-IP": "10.9.0.2"}).status == 200
        dp.stop()


def keyauth_available(tmp_path, upstream):
    decl = one_route_decl(upstream, [plugin("key-auth", {})])
    return check_dp(tmp_path, decl).returncode == 0


@pytest.mark.parametrize("by", ["consumer", "credential"])
def test_rl_limit_by_consumer_with_key_auth(sluice_factory, upstream, tmp_path, by):
    if not keyauth_available(tmp_path, upstream):
        pytest.skip("key-auth is not available on this data plane yet")
    decl = one_route_decl(
        upstream, [plugin("key-auth", {}), rl({"hour": 2, "limit_by": by})],
        consumers=[{"username": "alice", "keyauth_credentials": [{"key": "k-alice"},
                                                                  {"key": "k-alice-2"}]},
                   {"username": "bob", "keyauth_credentials": [{"key": "k-bob"}]}])
    dp = sluice_factory(decl, {"trusted_ips": "127.0.0.1"})
    wait_window(3600, 10)
    alice, alice2, bob = ({"apikey": k} for k in ("k-alice", "k-alice-2", "k-bob"))
    assert dp.get("/", alice).status == 200
    # The same client address with another consumer is not limited by alice's count.
    assert [dp.get("/", bob).status for _ in range(3)] == [200, 200, 429]
    # alice from another address is still alice.
    assert dp.get("/", dict(alice, **{"X-Real-IP": "10.7.7.7"})).status == 200
    if by == "consumer":
        assert dp.get("/", alice2).status == 429  # her second key: the same consumer
    else:
        assert [dp.get("/", alice2).status for _ in range(3)] == [200, 200, 429]
        assert dp.get("/", alice).status == 429


def test_rl_hide_client_headers(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 1, "limit_by": "ip",
                                                      "hide_client_headers": True})]))
    wait_window(3600, 10)
    r = dp.get("/")
    assert r.status == 200 and rl_headers(r) == {}, r
    r = dp.get("/")
    assert r.status == 429 and rl_headers(r) == {}, r
    assert r.json() == {"message": "API rate limit exceeded"}


def test_rl_custom_error(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 1, "limit_by": "ip",
                                                      "error_code": 503,
                                                      "error_message": "slow down"})]))
    wait_window(3600, 10)
    assert dp.get("/").status == 200
    r = dp.get("/")
    assert r.status == 503, r
    assert r.json() == {"message": "slow down"}
    assert r.header("Retry-After") is not None


def test_rl_instances_count_separately(sluice_factory, upstream):
    """Two instances (one per route) never share counters, even for the same
    client."""
    decl = declarative([service("echo", upstream.url, routes=[
        route("a", paths=["/a"], plugins=[rl({"hour": 1, "limit_by": "ip"}, RL_ID)]),
        route("b", paths=["/b"], plugins=[rl({"hour": 1, "limit_by": "ip"}, RL_ID2)]),
    ])])
    dp = sluice_factory(decl)
    wait_window(3600, 10)
    assert [dp.get("/a").status, dp.get("/b").status] == [200, 200]
    assert [dp.get("/a").status, dp.get("/b").status] == [429, 429]


# The counter table's bound (rate_limiting.c: NSTRIPES * STRIPE_CAP).
TABLE_CAP = 64 * 2048


def flood_identifiers(dp, prefix, n, conns=4, batch=2000):
    """Sends n requests, each with its own X-Id, pipelined on a few
    keep-alive connections; returns how many responses came back. Responses
    are counted, not parsed: the service is down, so each is a short 502."""
    counts = [0] * conns

    def run(t):
        s = socket.create_connection(dp.proxy, timeout=60)
        got, tail, sent = 0, b"", 0
        mine = range(t, n, conns)
        while sent < len(mine):
            chunk = mine[sent:sent + batch]
            s.sendall(b"".join(b"GET / HTTP/1.1\r\nHost: x\r\nX-Id: %s-%d\r\n\r\n"
                               % (prefix.encode(), i) for i in chunk))
            sent += len(chunk)
            while got < sent:
                data = s.recv(1 << 20)
                assert data, "the data plane closed the connection"
                data = tail + data
                got += data.count(b"HTTP/1.1 ")
                tail = data[-8:]  # shorter than the marker: never counted twice
        s.close()
        counts[t] = got

    threads = [threading.Thread(target=run, args=(t,)) for t in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def dead_service_decl(config):
    """A route to a closed port behind rate-limiting: requests the plugin
    lets through are answered 502 by the data plane itself, quickly."""
    return declarative([service("down", "http://127.0.0.1:%d" % free_port(), retries=0,
                                routes=[route("r", paths=["/"], plugins=[rl(config)])])])


@pytest.mark.slow
def test_rl_full_table_evicts_least_recently_used(sluice_factory):
    """More live identifiers than the table holds: the least recently used
    lose their counts (they may pass again), recent ones keep theirs, memory
    stays bounded, and the eviction is logged once."""
    dp = sluice_factory(dead_service_decl({"hour": 1, "limit_by": "header",
                                           "header_name": "X-Id"}))
    wait_window(3600, 120)
    first = {"X-Id": "first"}
    assert dp.get("/", first).status == 502  # passed the plugin, counted
    assert dp.get("/", first).status == 429
    n = TABLE_CAP * 3 // 2
    assert flood_identifiers(dp, "flood", n) == n
    assert dp.get("/", first).status == 502  # evicted: counted afresh
    assert dp.get("/", {"X-Id": "flood-%d" % (n - 1)}).status == 429  # still counted
    assert dp.stderr().count("the counter table is full") == 1


@pytest.mark.slow
def test_rl_expired_windows_are_freed(sluice_factory):
    """More identifiers than the table holds, but in one-second windows:
    expired entries make room, so no live entry is ever evicted."""
    dp = sluice_factory(dead_service_decl({"second": 1000, "limit_by": "header",
                                           "header_name": "X-Id"}))
    n = TABLE_CAP + TABLE_CAP // 4
    assert flood_identifiers(dp, "sec", n) == n
    assert "the counter table is full" not in dp.stderr()
    assert dp.get("/", {"X-Id": "sec-0"}).status == 502


def reload_and_wait(dp, decl, probe):
    """Writes decl, sends SIGHUP and waits until GET probe answers 200."""
    dp.write_declarative(decl)
    dp.reload()
    wait_until(lambda: dp.get(probe).status == 200, 10, what="the reloaded configuration")


def test_rl_counters_survive_reload(sluice_factory, upstream):
    def decl(limit, pid, marker):
        return declarative([service("echo", upstream.url, routes=[
            route("limited", paths=["/limited"],
                  plugins=[rl({"hour": limit, "limit_by": "ip"}, pid)]),
            route(marker, paths=["/" + marker]),
        ])])

    dp = sluice_factory(decl(5, RL_ID, "gen1"))
    wait_window(3600, 20)
    for _ in range(3):
        assert dp.get("/limited").status == 200

    # Same instance id, new limit, another route: the three requests still count.
    reload_and_wait(dp, decl(6, RL_ID, "gen2"), "/gen2")
    r = dp.get("/limited")
    assert r.status == 200
    assert r.header("X-RateLimit-Limit-Hour") == "6"
    assert r.header("X-RateLimit-Remaining-Hour") == "2"

    # Back to the original limit: the fifth request was the last one.
    reload_and_wait(dp, decl(5, RL_ID, "gen3"), "/gen3")
    r = dp.get("/limited")
    assert r.status == 200 and r.header("X-RateLimit-Remaining-Hour") == "0"
    assert dp.get("/limited").status == 429

    # Another instance id starts from zero.
    reload_and_wait(dp, decl(5, RL_ID2, "gen4"), "/gen4")
    r = dp.get("/limited")
    assert r.status == 200 and r.header("X-RateLimit-Remaining-Hour") == "4"


@pytest.mark.parametrize("policy,extra,message", [
    ("cluster", {}, "config.policy: 'cluster' is not supported by this data plane yet"),
    ("redis", {"redis": {"host": "127.0.0.1", "port": 6379, "ssl": True}},
     "config.redis.ssl: TLS to Redis is not supported by this data plane yet"),
])
def test_rl_unsupported_policies_rejected(tmp_path, upstream, policy, extra, message):
    config = {"minute": 5, "policy": policy}
    config.update(extra)
    res = check_dp(tmp_path, one_route_decl(upstream, [rl(config)]))
    assert_rejected(res, message)


def test_rl_unsupported_policy_on_reload_keeps_config(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rl({"hour": 100, "limit_by": "ip"})]))
    dp.write_declarative(one_route_decl(upstream, [rl({"hour": 1, "policy": "cluster"})]))
    dp.reload()
    wait_until(lambda: "not supported by this data plane yet" in dp.stderr(), 10,
               what="the reload error")
    r = dp.get("/")
    assert r.status == 200 and r.header("X-RateLimit-Limit-Hour") == "100"


@pytest.mark.parametrize("config,field", [
    ({"hour": 5, "error_code": 200}, "config.error_code"),
    ({"hour": 5, "error_code": 429.5}, "config.error_code"),
    ({"hour": 5, "limit_by": "header"}, "config.header_name"),
    ({"hour": 5, "limit_by": "path"}, "config.path"),
    ({"hour": 0}, "config.hour"),
    ({"hour": 5, "minute": 10}, "config"),
    ({"limit_by": "ip"}, "config"),
])
def test_rl_bad_config_rejected(tmp_path, upstream, config, field):
    res = check_dp(tmp_path, one_route_decl(upstream, [rl(config)]))
    assert_rejected(res, field)


# ======================================================================
# ip-restriction
# ======================================================================


def ipr(config):
    return plugin("ip-restriction", config, IPR_ID)


@pytest.mark.parametrize("config,status", [
    ({"allow": ["127.0.0.1"]}, 200),
    ({"allow": ["127.0.0.0/8"]}, 200),
    ({"allow": ["10.0.0.0/8", "127.0.0.1/32"]}, 200),
    ({"allow": ["10.0.0.0/8"]}, 403),
    ({"allow": ["::1"]}, 403),
    ({"deny": ["127.0.0.1"]}, 403),
    ({"deny": ["127.0.0.0/24"]}, 403),
    ({"deny": ["0.0.0.0/0"]}, 403),
    ({"deny": ["10.0.0.1"]}, 200),
    ({"deny": ["::/0"]}, 200),
    # deny wins over allow
    ({"allow": ["127.0.0.1"], "deny": ["127.0.0.0/8"]}, 403),
    ({"allow": [], "deny": ["10.0.0.1"]}, 200),
])
def test_ipr_peer_v4(sluice_factory, upstream, config, status):
    dp = sluice_factory(one_route_decl(upstream, [ipr(config)]))
    r = dp.get("/")
    assert r.status == status, r
    if status == 403:
        assert r.json() == {"message": "IP address not allowed: 127.0.0.1"}
        assert r.header("Content-Type") == JSON_CT
        assert "X-Upstream-Name" not in dict(r.headers)


@pytest.fixture
def ipr_trusted(sluice_factory, upstream):
    """A data plane that trusts the test client's X-Real-IP, with deny and
    allow lists over IPv4, IPv6 and IPv4-mapped addresses."""
    decl = declarative([service("echo", upstream.url, routes=[
        route("deny", paths=["/deny"], plugins=[plugin("ip-restriction", {
            "deny": ["10.1.0.0/16", "192.0.2.7", "2001:db8::/32", "fe80::1"]})]),
        route("allow", paths=["/allow"], plugins=[plugin("ip-restriction", {
            "allow": ["10.1.2.0/24", "2001:db8:1::/48", "::ffff:172.16.0.0/108"]})]),
    ])])
    return sluice_factory(decl, {"trusted_ips": "127.0.0.1"})


@pytest.mark.parametrize("path,ip,status", [
    ("/deny", "10.1.2.3", 403),
    ("/deny", "10.1.255.255", 403),
    ("/deny", "10.2.0.1", 200),
    ("/deny", "192.0.2.7", 403),
    ("/deny", "192.0.2.8", 200),
    ("/deny", "2001:db8::5", 403),
    ("/deny", "2001:db8:ffff::1", 403),
    ("/deny", "2001:db9::1", 200),
    ("/deny", "fe80::1", 403),
    ("/deny", "fe80::2", 200),
    ("/deny", "::ffff:10.1.2.3", 403),  # IPv4-mapped matches the IPv4 block
    ("/allow", "10.1.2.200", 200),
    ("/allow", "10.1.3.1", 403),
    ("/allow", "2001:db8:1:abcd::1", 200),
    ("/allow", "2001:db8:2::1", 403),
    ("/allow", "172.16.5.5", 200),  # an IPv4 client matches an IPv4-mapped block
    ("/allow", "172.32.0.1", 403),
])
def test_ipr_forwarded_addresses(ipr_trusted, path, ip, status):
    r = ipr_trusted.get(path, {"X-Real-IP": ip})
    assert r.status == status, r
    if status == 403:
        assert r.json() == {"message": "IP address not allowed: %s" % ip}


def test_ipr_bad_forwarded_address_falls_back_to_peer(ipr_trusted):
    r = ipr_trusted.get("/allow", {"X-Real-IP": "not-an-address"})
    assert r.status == 403
    assert r.json() == {"message": "IP address not allowed: 127.0.0.1"}
    assert ipr_trusted.get("/deny", {"X-Real-IP": "not-an-address"}).status == 200


def test_ipr_untrusted_forwarding_ignored(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [ipr({"allow": ["10.0.0.0/8"]})]))
    r = dp.get("/", {"X-Real-IP": "10.1.1.1", "X-Forwarded-For": "10.1.1.1"})
    assert r.status == 403
    assert r.json() == {"message": "IP address not allowed: 127.0.0.1"}


@pytest.mark.parametrize("config,status", [
    ({"allow": ["::1"]}, 200),
    ({"allow": ["::1/128"]}, 200),
    ({"allow": ["::/1"]}, 200),
    ({"allow": ["127.0.0.1"]}, 403),
    ({"allow": ["0.0.0.0/0"]}, 403),
    ({"deny": ["::1"]}, 403),
    ({"deny": ["::0/127"]}, 403),
    ({"deny": ["2001:db8::/32"]}, 200),
    ({"deny": ["127.0.0.1"]}, 200),
])
def test_ipr_peer_v6(sluice_factory, upstream, config, status):
    dp = sluice_factory(one_route_decl(upstream, [ipr(config)]),
                        {"proxy_listen": "[::1]:0"})
    assert dp.proxy[0] == "::1"
    r = dp.get("/")
    assert r.status == status, r
    if status == 403:
        assert r.json() == {"message": "IP address not allowed: ::1"}


def test_ipr_custom_status_and_message(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [ipr({"deny": ["127.0.0.1"], "status": 401,
                                                       "message": "Go away"})]))
    r = dp.get("/")
    assert r.status == 401, r
    assert r.json() == {"message": "Go away"}
    dp2 = sluice_factory(one_route_decl(upstream, [ipr({"allow": ["10.0.0.1"], "status": 451})]))
    r = dp2.get("/")
    assert r.status == 451 and r.json() == {"message": "IP address not allowed: 127.0.0.1"}


def test_ipr_runs_before_auth(sluice_factory, upstream, tmp_path):
    """PRIORITY 990 vs key-auth's 1250: key-auth runs first, so a client
    without a key gets key-auth's 401, a keyed one the restriction."""
    if not keyauth_available(tmp_path, upstream):
        pytest.skip("key-auth is not available on this data plane yet")
    decl = one_route_decl(upstream, [plugin("key-auth", {}), ipr({"deny": ["127.0.0.1"]})],
                          consumers=[{"username": "u", "keyauth_credentials": [{"key": "k"}]}])
    dp = sluice_factory(decl)
    assert dp.get("/").status == 401
    assert dp.get("/", {"apikey": "k"}).status == 403


@pytest.mark.parametrize("config,field", [
    ({"allow": ["not-an-ip"]}, "config.allow"),
    ({"deny": ["10.0.0.0/33"]}, "config.deny"),
    ({"deny": ["::1/129"]}, "config.deny"),
    ({"allow": ["127.0.0.1"], "status": 200}, "config.status"),
    ({"allow": ["127.0.0.1"], "status": 403.5}, "config.status"),
    ({}, "config"),
    ({"allow": [], "deny": []}, "config"),
])
def test_ipr_bad_config_rejected(tmp_path, upstream, config, field):
    res = check_dp(tmp_path, one_route_decl(upstream, [ipr(config)]))
    assert_rejected(res, field)


# ======================================================================
# request-size-limiting
# ======================================================================


def rsl(config):
    return plugin("request-size-limiting", config, RSL_ID)


def assert_kong_error(r, status, message):
    """kong.response.error: {"message", "request_id"} in JSON."""
    assert r.status == status, r
    assert r.header("Content-Type") == JSON_CT
    assert r.json() == {"message": message, "request_id": r.header("X-Kong-Request-Id")}


# Limits below 1 MiB (the default client_body_buffer_size) make the proxy
# read the body before access (wants_body): the plugin then measures chunked
# bodies, and judges a Content-Length once the body has arrived.
@pytest.mark.parametrize("size,unit,limit,buffered", [
    (10, "bytes", 10, True),
    (2, "kilobytes", 2048, True),
    (1, "megabytes", 1048576, False),
])
def test_rsl_units_exact_and_over(sluice_factory, upstream, size, unit, limit, buffered):
    dp = sluice_factory(one_route_decl(upstream, [rsl({"allowed_payload_size": size,
                                                       "size_unit": unit})]))
    r = dp.request("POST", "/stream-upload", body=b"x" * limit)
    assert r.status == 200, r
    assert r.json()["body_len"] == limit
    with dp.conn() as c:
        if buffered:
            # One byte over: refused once the body is in; the connection
            # stays usable (the body was read).
            r = c.request("POST", "/stream-upload", body=b"x" * (limit + 1))
            assert_kong_error(r, 413, "Request size limit exceeded")
            assert c.request("GET", "/").status == 200
        else:
            # One byte over: refused on the head alone (the body is never needed).
            c.send(h1.build_request("POST", "/stream-upload",
                                    [("Content-Length", str(limit + 1))]))
            assert_kong_error(c.read_response(), 413, "Request size limit exceeded")


def test_rsl_default_is_128_megabytes(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rsl({})]))
    for n, status in ((128 * 1048576 + 1, 413), (1 << 40, 413)):
        with dp.conn() as c:
            c.send(h1.build_request("POST", "/", [("Content-Length", str(n))]))
            assert_kong_error(c.read_response(), status, "Request size limit exceeded")
    assert dp.request("POST", "/", body=b"y" * 1000).status == 200
    # A body larger than client_body_buffer_size (1m) goes through: this
    # limit does not make the proxy buffer bodies.
    big = b"z" * (3 * 1048576)
    r = dp.request("POST", "/stream-upload", body=big)
    assert r.status == 200 and r.json()["body_len"] == len(big)


def test_rsl_expect_continue_gets_417(sluice_factory, upstream):
    # Not buffered (limit >= 1 MiB): decided on the head, before any 100.
    dp = sluice_factory(one_route_decl(upstream, [rsl({"allowed_payload_size": 1})]))
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/", [("Content-Length", str(1048577)),
                                              ("Expect", " 100-Continue ")]))
        r = c.read_response(skip_interim=False)
    assert_kong_error(r, 417, "Request size limit exceeded")

    # Buffered: the proxy asks for the body (100 Continue) before the plugin
    # runs, and the plugin still answers 417 as Kong's does for that header.
    dp = sluice_factory(one_route_decl(upstream, [rsl({"allowed_payload_size": 4,
                                                       "size_unit": "bytes"})]))
    with dp.conn() as c:
        c.send(h1.build_request("POST", "/", [("Content-Length", "5"),
                                              ("Expect", " 100-Continue ")]))
        assert c.read_head().status == 100
        c.send(b"12345")
        assert_kong_error(c.read_response(), 417, "Request size limit exceeded")


def test_rsl_require_content_length(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rsl({"allowed_payload_size": 10,
                                                       "size_unit": "bytes",
                                                       "require_content_length": True})]))
    assert_kong_error(dp.get("/"), 411, "A valid Content-Length header is required")
    assert dp.request("GET", "/", [("Content-Length", "0")]).status == 200
    assert dp.request("POST", "/", body=b"0123456789").status == 200
    # A chunked body needs no Content-Length (Kong measures it).
    r = dp.request("POST", "/stream-upload", [("Transfer-Encoding", "chunked")],
                   body=h1.chunked_body([b"01234", b"56789"]))
    assert r.status == 200 and r.json()["body_len"] == 10

    lax = sluice_factory(one_route_decl(upstream, [rsl({"allowed_payload_size": 10,
                                                        "size_unit": "bytes"})]))
    assert lax.get("/").status == 200


@pytest.mark.parametrize("require", [False, True])
def test_rsl_chunked_body_measured(sluice_factory, upstream, require):
    dp = sluice_factory(one_route_decl(upstream, [rsl({"allowed_payload_size": 1,
                                                       "size_unit": "kilobytes",
                                                       "require_content_length": require})]))
    with dp.conn() as c:
        r = c.request("POST", "/stream-upload", [("Transfer-Encoding", "chunked")],
                      body=h1.chunked_body([b"a" * 1000, b"b" * 24]))
        assert r.status == 200, r
        assert r.json()["body_len"] == 1024 and r.json()["chunked"] is False
        r = c.request("POST", "/stream-upload", [("Transfer-Encoding", "chunked")],
                      body=h1.chunked_body([b"a" * 1000, b"b" * 25]))
        assert_kong_error(r, 413, "Request size limit exceeded")
        # The body was read: the connection goes on.
        assert c.request("POST", "/", body=b"abc").status == 200


def test_rsl_chunked_body_refused_when_not_buffered(sluice_factory, upstream):
    """A limit of 1 MiB or more does not make the proxy read bodies (they may
    be larger than client_body_buffer_size): a chunked body, whose size is
    then unknown when access runs, is refused with 411 rather than let
    through."""
    dp = sluice_factory(one_route_decl(upstream, [rsl({"allowed_payload_size": 1})]))
    r = dp.request("POST", "/", [("Transfer-Encoding", "chunked")],
                   body=h1.chunked_body([b"abc"]))
    assert_kong_error(r, 411, "A valid Content-Length header is required")
    assert dp.request("POST", "/", body=b"abc").status == 200


def test_rsl_limit_just_below_the_buffer_is_measured(sluice_factory, upstream):
    dp = sluice_factory(one_route_decl(upstream, [rsl({"allowed_payload_size": 1023,
                                                       "size_unit": "kilobytes"})]))
    body = b"c" * (1023 * 1024)
    r = dp.request("POST", "/stream-upload", [("Transfer-Encoding", "chunked")],
                   body=h1.chunked_body([body[:500000], body[500000:]]))
    assert r.status == 200 and r.json()["body_len"] == len(body)
    r = dp.request("POST", "/stream-upload", [("Transfer-Encoding", "chunked")],
                   body=h1.chunked_body([body, b"!"]))
    assert_kong_error(r, 413, "Request size limit exceeded")


@pytest.mark.parametrize("config,field", [
    ({"allowed_payload_size": -1}, "config.allowed_payload_size"),
    ({"allowed_payload_size": 1.5}, "config.allowed_payload_size"),
    ({"size_unit": "gigabytes"}, "config.size_unit"),
])
def test_rsl_bad_config_rejected(tmp_path, upstream, config, field):
    res = check_dp(tmp_path, one_route_decl(upstream, [rsl(config)]))
    assert_rejected(res, field)
