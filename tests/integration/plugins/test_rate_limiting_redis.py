"""rate-limiting with policy redis, against a real redis-server started by
these tests: counters shared exactly by two data planes with two workers
each, the keys and their lifetimes in Redis, AUTH and SELECT, and what
happens when Redis is down, refuses the password or never answers
(fault_tolerant on and off, the request bounded by config.redis.timeout, a
client leaving while its request waits). The handler suspends the request
while Redis answers; other requests on the same worker keep flowing.
"""

import concurrent.futures
import json
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import declarative, free_port, route, service, wait_until

RL_ID = "7a1d3c52-8e0a-4c55-9a57-0c1f5b9f1b01"


class Redis:
    """redis-server on a free port, no persistence."""

    def __init__(self, workdir, password=None):
        exe = shutil.which("redis-server")
        assert exe, "redis-server is missing: run `make deps` (apt-get install redis-server)"
        self.port = free_port()
        self.password = password
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(workdir)]
        if password:
            args += ["--requirepass", password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, 10, what="redis-server listening")

    def command(self, *args):
        """One command over a fresh connection (RESP); returns the reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            f = s.makefile("rb")
            if self.password:
                s.sendall(resp("AUTH", self.password))
                read_reply(f)
            s.sendall(resp(*args))
            return read_reply(f)

    def ping(self):
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def read_reply(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    raise RuntimeError("bad reply %r" % line)


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


def rl_decl(upstream, config, extra_routes=()):
    plugin = {"id": RL_ID, "name": "rate-limiting", "config": config}
    return declarative([service("echo", upstream.url, routes=[
        route("limited", paths=["/limited"], plugins=[plugin]),
        route("free", paths=["/free"])] + list(extra_routes))])


def redis_config(redis, **extra):
    c = {"host": "127.0.0.1", "port": redis.port, "timeout": 2000}
    c.update(extra)
    return c


def wait_window(period, need):
    left = period - (time.time() % period)
    if left < need:
        time.sleep(left + 0.05)


def test_exact_across_two_data_planes(sluice_factory, upstream, redis):
    decl = rl_decl(upstream, {"minute": 30, "limit_by": "ip", "policy": "redis",
                              "redis": redis_config(redis)})
    dps = [sluice_factory(decl, conf={"workers": 2}) for _ in range(2)]
    wait_window(60, 20)

    def one(i):
        return dps[i % 2].get("/limited").status

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        codes = list(ex.map(one, range(80)))
    assert codes.count(200) == 30, codes
    assert codes.count(429) == 50
    # the counter is in Redis, with the window's lifetime
    keys = redis.command("KEYS", "ratelimit:%s:*" % RL_ID)
    assert len(keys) == 1 and keys[0].endswith(":minute")
    assert int(redis.command("GET", keys[0])) == 30
    assert 0 < redis.command("TTL", keys[0]) <= 61


def test_headers_and_refusal(sluice_factory, upstream, redis):
    dp = sluice_factory(rl_decl(upstream, {"minute": 2, "hour": 100, "limit_by": "ip",
                                           "policy": "redis", "redis": redis_config(redis)}))
    wait_window(60, 10)
    r = dp.get("/limited")
    assert r.status == 200
    assert r.header("X-RateLimit-Limit-Minute") == "2"
    assert r.header("X-RateLimit-Remaining-Minute") == "1"
    assert r.header("X-RateLimit-Remaining-Hour") == "99"
    assert r.header("RateLimit-Limit") == "2" and r.header("RateLimit-Remaining") == "1"
    assert dp.get("/limited").status == 200
    r = dp.get("/limited")
    assert r.status == 429
    assert json.loads(r.body) == {"message": "API rate limit exceeded"}
    assert r.header("X-RateLimit-Remaining-Minute") == "0"
    assert 0 < int(r.header("Retry-After")) <= 60
    # a refused request is not counted (the hour window still says 98)
    r = dp.get("/limited")
    assert r.header("X-RateLimit-Remaining-Hour") == "98"
    assert len(redis.command("KEYS", "ratelimit:*:hour")) == 1


def test_auth_and_database(sluice_factory, upstream, tmp_path):
    redis = Redis(tmp_path, password="s3cret")
    try:
        dp = sluice_factory(rl_decl(upstream, {
            "minute": 5, "limit_by": "ip", "policy": "redis", "fault_tolerant": False,
            "redis": redis_config(redis, password="s3cret", database=3)}))
        assert dp.get("/limited").status == 200
        with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as s:
            f = s.makefile("rb")
            s.sendall(resp("AUTH", "s3cret") + resp("SELECT", "3") + resp("KEYS", "ratelimit:*"))
            read_reply(f), read_reply(f)
            assert len(read_reply(f)) == 1  # the counter lives in database 3
        assert redis.command("KEYS", "ratelimit:*") == []  # not in database 0
        # a wrong password: Redis refuses, and without fault tolerance so do we
        dp2 = sluice_factory(rl_decl(upstream, {
            "minute": 5, "limit_by": "ip", "policy": "redis", "fault_tolerant": False,
            "redis": redis_config(redis, password="wrong")}))
        r = dp2.get("/limited")
        assert r.status == 500
        assert json.loads(r.body)["message"] == "An unexpected error occurred"
        assert "AUTH failed" in dp2.stderr() or "WRONGPASS" in dp2.stderr() or \
            "invalid password" in dp2.stderr()
    finally:
        redis.stop()


@pytest.mark.parametrize("fault_tolerant", [True, False])
def test_redis_down(sluice_factory, upstream, fault_tolerant):
    port = free_port()  # nothing listens there
    dp = sluice_factory(rl_decl(upstream, {
        "minute": 5, "limit_by": "ip", "policy": "redis", "fault_tolerant": fault_tolerant,
        "redis": {"host": "127.0.0.1", "port": port, "timeout": 500}}))
    for _ in range(3):
        r = dp.get("/limited")
        if fault_tolerant:
            assert r.status == 200
            assert r.header("X-RateLimit-Limit-Minute") is None
        else:
            assert r.status == 500
    assert "redis 127.0.0.1:%d" % port in dp.stderr()


class SilentRedis:
    """Accepts connections and reads, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


def test_timeout_bounds_the_request_and_other_requests_flow(sluice_factory, upstream):
    silent = SilentRedis()
    try:
        dp = sluice_factory(rl_decl(upstream, {
            "minute": 5, "limit_by": "ip", "policy": "redis", "fault_tolerant": True,
            "redis": {"host": "127.0.0.1", "port": silent.port, "timeout": 300}}),
            conf={"workers": 1})
        results = {}

        def waiting():
            t0 = time.monotonic()
            results["status"] = dp.get("/limited").status
            results["took"] = time.monotonic() - t0

        t = threading.Thread(target=waiting)
        t.start()
        time.sleep(0.05)
        # the single worker is not blocked while the request waits for Redis
        t0 = time.monotonic()
        assert dp.get("/free").status == 200
        assert time.monotonic() - t0 < 0.2
        t.join(5)
        assert results["status"] == 200  # fault tolerant: through, after the timeout
        assert 0.25 <= results["took"] < 2
    finally:
        silent.stop()


def test_client_leaving_while_waiting(sluice_factory, upstream):
    """The request goes away while Redis has not answered: the data plane
    forgets it (no crash, no late write), and serves the next ones."""
    silent = SilentRedis()
    try:
        dp = sluice_factory(rl_decl(upstream, {
            "minute": 5, "limit_by": "ip", "policy": "redis",
            "redis": {"host": "127.0.0.1", "port": silent.port, "timeout": 1000}}),
            conf={"workers": 1})
        for _ in range(5):
            s = socket.create_connection(dp.proxy, timeout=5)
            s.sendall(b"GET /limited HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.05)
            s.close()
        time.sleep(1.5)  # the timeouts fire for requests that are gone
        assert dp.get("/free").status == 200
        assert dp.proc.poll() is None
    finally:
        silent.stop()


def test_keys_of_every_window(sluice_factory, upstream, redis):
    dp = sluice_factory(rl_decl(upstream, {
        "second": 100, "minute": 100, "hour": 100, "day": 100, "month": 100, "year": 100,
        "limit_by": "header", "header_name": "x-user", "policy": "redis",
        "redis": redis_config(redis)}))
    r = dp.get("/limited", headers={"x-user": "a"})
    assert r.status == 200
    keys = redis.command("KEYS", "ratelimit:%s:*" % RL_ID)
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == sorted(
        ["second", "minute", "hour", "day", "month", "year"])
    for k in keys:
        assert redis.command("TTL", k) > 0
    dp.get("/limited", headers={"x-user": "b"})
    assert len(redis.command("KEYS", "ratelimit:%s:*" % RL_ID)) == 12  # per identifier
