"""How sluice-dp's plugin-server bridge survives plugin servers that break
(pluginserver-bridge/bridge.h, "Failure handling"; plugin-protocol.md 2.4,
6.4 and 7).

Most tests run fakeserver.py, a ProtoBuf:1 server of the tests' own that
misbehaves on demand: one route per behaviour, each with the `fake` plugin
configured with that `mode`, all served by one fake server that sluice-dp
supervises (start_cmd). Every fault must end in exactly what bridge.h
documents:

  fail_open off (default)  HTTP 500 with Kong's JSON error body;
  fail_open on             the request proxied as if the plugin were absent;
  timeout                  a stall fails after about the timeout;
  close before any write   retried once, on a newly started instance;
  close after a write      not retried;
  kong.response.exit       reaches the client;

and afterwards the worker is healthy (a request to the `ok` route succeeds,
/status answers; conftest's teardown asserts a clean stderr). sluice-dp runs
one worker here, so the request after the fault lands on the worker that saw
it. Unless a test is about timeouts, each server gets a 4 s timeout: not to
be tested, only so that a missing check costs 4 s instead of Kong's 60.

The fake server journals every command and outcome to
<prefix>/fake-events.jsonl, which is how the tests count starts and events.

The last tests are about the supervisor: the real Go example `hello`
(build/bin/go-plugins/hello) SIGKILLed under load, with and without
fail_open; a start command that exits with status 127 (not restarted); the
"[<name>:<pid>]" prefix of a server's last output lines; a restart while the
old server's output pipe is still held open; stopping sluice-dp stops its
servers.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import h1
from conftest import RssSampler, assert_rss_bounded, declarative, route, service, wait_until
from bridge import fakeserver as fs
from bridge.pluginservers import go_plugin_conf

FAKE_PY = Path(__file__).resolve().with_name("fakeserver.py")
ERROR_MESSAGE = "An unexpected error occurred"
GUARD_TIMEOUT = "4s"

# ------------------------------------------------------------------ set-up


def fake_conf(prefix, start_cmd=None, **settings):
    """sluice-dp settings for one fake server `fake` in prefix; settings are
    pluginserver_fake_<key> = value (timeout="500ms", fail_open="on", ...)."""
    prefix = Path(prefix)
    conf = {
        "plugins": "bundled,fake",
        "pluginserver_names": "fake",
        "pluginserver_fake_query_cmd": "%s %s -dump" % (sys.executable, FAKE_PY),
        "pluginserver_fake_start_cmd": start_cmd or "%s %s -kong-prefix %s"
        % (sys.executable, FAKE_PY, prefix),
        "pluginserver_fake_socket": str(prefix / "fake.socket"),
        "pluginserver_fake_timeout": GUARD_TIMEOUT,
    }
    for k, v in settings.items():
        conf["pluginserver_fake_" + k] = v
    return conf


def fake_path(mode):
    """The route of mode (under /fake/: upstream.py gives /garbage, /close, ... meanings)."""
    return "/fake/" + mode


def fake_decl(upstream):
    routes = [route("r-" + m, paths=[fake_path(m)], strip_path=False,
                    plugins=[{"name": "fake", "config": {"mode": m}}])
              for m in fs.BEHAVIOURS]
    routes.append(route("plain", paths=["/plain"], strip_path=False))
    return declarative([service("echo", upstream.url, routes=routes)])


def start_fake_dp(sluice_factory, upstream, fail_open=False, start_cmd=None, **settings):
    dp = sluice_factory(fake_decl(upstream), start=False)
    if fail_open:
        settings["fail_open"] = "on"
    dp.conf.update(fake_conf(dp.prefix, start_cmd, **settings))
    dp.conf["workers"] = "1"
    dp.write_conf()
    dp.start()
    return dp


def journal(dp):
    path = dp.prefix / "fake-events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def starts(dp, mode):
    return [e for e in journal(dp)
            if e["what"] == "start_instance" and e["config"].get("mode") == mode]


def access_events(dp, mode):
    """The access events begun on instances configured with mode, in order."""
    ids = {e["id"] for e in starts(dp, mode)}
    return [e for e in journal(dp) if e["what"] == "event" and e.get("outcome") == "begin"
            and e["phase"] == "access" and e["id"] in ids]


def outcomes(dp, mode):
    ids = {e["id"] for e in starts(dp, mode)}
    return [e for e in journal(dp) if e["what"] == "event" and e.get("id") in ids
            and e.get("outcome") != "begin" and e["phase"] == "access"]


def proc_stat(pid):
    """(state, ppid) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid):
    """Live descendants of pid (zombies excluded)."""
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st and st[0] != "Z":
                kids.setdefault(st[1], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def server_pids(dp, needle):
    return [p for p in descendants(dp.pid) if needle in cmdline(p)]


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def log_lines(dp, pattern):
    rx = re.compile(pattern, re.IGNORECASE)
    return [line for line in dp.stderr().splitlines() if rx.search(line)]


# ------------------------------------------------------------------ assertions


def assert_500(resp, what):
    assert resp.status == 500, "%s: expected Kong's 500, got %r" % (what, resp)
    assert (resp.header("content-type") or "").startswith("application/json"), resp
    assert resp.json()["message"] == ERROR_MESSAGE, resp


def assert_proxied(resp, path, what, allow_fake_header=False):
    """The upstream answered the request as if the plugin were absent."""
    assert resp.status == 200, "%s: expected the request proxied (fail_open), got %r" % (
        what, resp)
    assert resp.header("x-upstream-name") == "up1", resp
    assert resp.json()["target"] == path, resp
    if not allow_fake_header:
        assert not resp.has("x-fake"), "%s: a skipped plugin left x-fake: %r" % (what, resp)


def assert_healthy(dp, what, timeout=0.0):
    """A request with mode ok succeeds and /status answers; with a timeout,
    polls for the ok request until then (a server being restarted)."""
    def ok():
        r = dp.get(fake_path("ok"), headers={"x-in": "healthy"})
        return r if r.status == 200 and r.header("x-fake") == "healthy" else None

    if timeout:
        wait_until(ok, timeout, 0.1, what="a request with mode ok after %s" % what)
    else:
        r = dp.get(fake_path("ok"), headers={"x-in": "healthy"})
        assert r.status == 200 and r.header("x-fake") == "healthy", \
            "after %s, a request with mode ok got %r" % (what, r)
    assert dp.status_get("/status").status == 200
    assert dp.proc.poll() is None


def check_failure(dp, mode, fail_open, **kw):
    """Sends one request to the route of mode; checks the configured outcome."""
    path = fake_path(mode)
    t0 = time.monotonic()
    resp = dp.get(path, headers={"x-in": "v1"}, timeout=8, **kw)
    elapsed = time.monotonic() - t0
    if fail_open:
        assert_proxied(resp, path, mode, allow_fake_header=(mode == "close_after_write"))
    else:
        assert_500(resp, mode)
    return resp, elapsed


# ------------------------------------------------------------------ the fake server itself


class FakeClient:
    """The gateway side of ProtoBuf:1, enough to check fakeserver.py without sluice-dp."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.seq = 0

    def close(self):
        self.sock.close()

    def start(self, config):
        self.seq += 2
        sub = fs.field_bytes(1, "fake") + fs.field_bytes(2, json.dumps(config))
        fs.send_frame(self.sock, fs.rpc_call(self.seq, fs.CMD_START_INSTANCE, sub))
        seq, status = fs.parse_rpc_return(fs.recv_frame(self.sock))
        assert seq == self.seq and status["name"] == "fake"
        return status["instance_id"]

    def event(self, iid, phase="access", x_in="v"):
        """Runs an event, answering get_header with x_in and anything else with
        an empty frame. Returns ([(method, arg)], "end" | "bad_sequence" | "closed" | "exit")."""
        self.seq += 2
        sub = fs.field_varint(1, iid) + fs.field_bytes(2, phase)
        fs.send_frame(self.sock, fs.rpc_call(self.seq, fs.CMD_HANDLE_EVENT, sub))
        calls = []
        while True:
            try:
                m = fs.recv_frame(self.sock)
            except fs.Closed:
                return calls, "closed"
            if not m:
                seq, _ = fs.parse_rpc_return(fs.recv_frame(self.sock))
                return calls, "end" if seq == self.seq else "bad_sequence"
            arg = fs.recv_frame(self.sock)
            calls.append((m.decode(), arg))
            if m == b"kong.response.exit":
                return calls, "exit"
            fs.send_frame(self.sock, fs.msg_string(x_in) if m == b"kong.request.get_header"
                          else b"")


def test_fake_server_speaks_protobuf1(tmp_path):
    """fakeserver.py on its own: -dump, and a few behaviours driven by hand."""
    out = subprocess.run([sys.executable, str(FAKE_PY), "-dump"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    info = json.loads(out)
    assert info["Protocol"] == "ProtoBuf:1"
    assert info["Plugins"][0]["Name"] == "fake" and info["Plugins"][0]["Priority"] == 1000
    assert info["Plugins"][0]["Phases"] == ["access", "log"]
    proc = subprocess.Popen([sys.executable, str(FAKE_PY), "-kong-prefix", str(tmp_path)],
                            stderr=subprocess.DEVNULL)
    try:
        sock = tmp_path / "fake.socket"
        wait_until(sock.exists, 5, what="fake.socket")
        c = FakeClient(sock)
        iid = c.start({"mode": "ok", "__seq__": 7, "__plugin_id": "p1"})
        calls, end = c.event(iid, x_in="hello")
        assert end == "end"
        assert calls == [("kong.request.get_header", b"\x0a\x04x-in"),
                         ("kong.response.set_header",
                          b"\x0a\x06x-fake\x12\x07\x1a\x05hello")]
        assert c.event(iid, "log") == ([], "end")
        # close_first_event: the first event of the entity closes, a retry on
        # a new instance succeeds.
        i1 = c.start({"mode": "close_first_event", "__plugin_id": "p2"})
        assert c.event(i1) == ([], "closed")
        c = FakeClient(sock)
        i2 = c.start({"mode": "close_first_event", "__plugin_id": "p2"})
        assert i2 != i1 and c.event(i2)[1] == "end"
        i3 = c.start({"mode": "exit"})
        calls, end = c.event(i3)
        assert end == "exit" and calls[0][1] == fs.msg_exit_args(418, fs.EXIT_BODY,
                                                                fs.EXIT_HEADERS)
        c = FakeClient(sock)
        assert c.event(12345) == ([], "closed")  # unknown instance, as go-pdk
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ through sluice-dp


def test_ok(sluice_factory, upstream):
    dp = start_fake_dp(sluice_factory, upstream)
    resp = dp.get(fake_path("ok"), headers={"x-in": "hello"})
    assert resp.status == 200, resp
    assert resp.header("x-fake") == "hello"
    assert resp.json()["target"] == fake_path("ok")
    resp = dp.get(fake_path("ok"), headers={"x-in": "again"})
    assert resp.status == 200 and resp.header("x-fake") == "again", resp
    assert len(starts(dp, "ok")) == 1, "the worker's instance was not reused: %r" % journal(dp)
    ids = {e["id"] for e in starts(dp, "ok")}
    wait_until(lambda: [e for e in journal(dp) if e["what"] == "event" and e["phase"] == "log"
                        and e["id"] in ids and e["outcome"] == "ok"],
               5, what="the log event of the fake plugin")
    assert dp.get("/plain").status == 200
    assert_healthy(dp, "ok")


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_garbage(sluice_factory, upstream, fail_open):
    dp = start_fake_dp(sluice_factory, upstream, fail_open)
    check_failure(dp, "garbage", fail_open)
    assert_healthy(dp, "garbage")


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_oversized(sluice_factory, upstream, fail_open):
    dp = start_fake_dp(sluice_factory, upstream, fail_open, max_frame="64k")
    with RssSampler(dp.pid) as rss:
        check_failure(dp, "oversized", fail_open)
    assert_rss_bounded(rss, 24, " while a server announced a 1 GiB frame (max_frame 64k)")
    sent = wait_until(lambda: [e for e in outcomes(dp, "oversized")
                               if e["outcome"] == "oversized_sent"], 8,
                      what="the fake server to see its oversized frame refused")
    assert sent[0]["reason"].startswith("peer closed"), \
        "sluice-dp did not close the connection of an oversized frame: %r" % sent
    assert_healthy(dp, "oversized")


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_stall_times_out(sluice_factory, upstream, fail_open):
    dp = start_fake_dp(sluice_factory, upstream, fail_open, timeout="500ms")
    _, elapsed = check_failure(dp, "stall", fail_open)
    assert 0.4 <= elapsed <= 3.0, "a stalled event with timeout 500ms ended after %.2fs" % elapsed
    assert_healthy(dp, "stall")


def test_slow_within_timeout(sluice_factory, upstream):
    dp = start_fake_dp(sluice_factory, upstream, timeout="500ms")
    t0 = time.monotonic()
    resp = dp.get(fake_path("slow"), headers={"x-in": "late"})
    elapsed = time.monotonic() - t0
    assert resp.status == 200 and resp.header("x-fake") == "late", resp
    assert 0.2 <= elapsed < 3.0, elapsed
    assert_healthy(dp, "slow")


def concurrent_gets(dp, path, n, headers=None):
    """n requests at once, each on its own connection: (statuses, seconds)."""
    import concurrent.futures
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        results = list(ex.map(lambda _: dp.get(path, headers=headers), range(n)))
    return [r.status for r in results], time.monotonic() - t0


def test_connections_bound_concurrent_events(sluice_factory, upstream):
    """pluginserver_<name>_connections caps the connections a worker opens:
    events beyond it wait for one instead of opening more."""
    dp = start_fake_dp(sluice_factory, upstream, timeout="5s", connections="2")
    assert dp.get(fake_path("ok"), headers={"x-in": "warm"}).status == 200
    statuses, elapsed = concurrent_gets(dp, fake_path("slow"), 6, {"x-in": "q"})
    assert statuses == [200] * 6, statuses
    # Six 200 ms events, two at a time: three rounds.
    assert elapsed >= 0.55, "six slow events took %.2fs with 2 connections" % elapsed
    assert_healthy(dp, "slow")


def test_waiting_for_a_connection_is_bounded_by_the_timeout(sluice_factory, upstream):
    dp = start_fake_dp(sluice_factory, upstream, timeout="300ms", connections="1")
    statuses, elapsed = concurrent_gets(dp, fake_path("slow"), 3, {"x-in": "q"})
    # The first gets the connection (200 ms); the third cannot have it
    # within 300 ms and fails as an unreachable server does.
    assert 200 in statuses and 500 in statuses, statuses
    assert elapsed < 3.0
    assert "connections of this worker were busy" in dp.stderr()
    assert_healthy(dp, "slow")


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_close_mid_event_retried_once(sluice_factory, upstream, fail_open):
    dp = start_fake_dp(sluice_factory, upstream, fail_open)
    check_failure(dp, "close_mid_event", fail_open)
    evs = access_events(dp, "close_mid_event")
    assert len(evs) == 2, "expected the event and one retry, got %r" % evs
    assert evs[0]["id"] != evs[1]["id"], "the retry did not start a new instance: %r" % evs
    assert_healthy(dp, "close_mid_event")


def test_close_first_event_retry_succeeds(sluice_factory, upstream):
    dp = start_fake_dp(sluice_factory, upstream)
    resp = dp.get(fake_path("close_first_event"), headers={"x-in": "second try"})
    assert resp.status == 200, resp
    assert resp.header("x-fake") == "second try", resp
    evs = access_events(dp, "close_first_event")
    assert [e["mode"] for e in evs] == ["close_mid_event", "ok"], evs
    first_start, second_start = starts(dp, "close_first_event")[:2]
    assert evs[0]["id"] == first_start["id"] and evs[1]["id"] == second_start["id"], \
        "the retry ran on an instance that was not started again: %r" % journal(dp)
    assert_healthy(dp, "close_first_event")


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_close_after_write_not_retried(sluice_factory, upstream, fail_open):
    dp = start_fake_dp(sluice_factory, upstream, fail_open)
    check_failure(dp, "close_after_write", fail_open)
    evs = access_events(dp, "close_after_write")
    assert len(evs) == 1, "an event that had set a header was run again: %r" % evs
    assert_healthy(dp, "close_after_write")


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_bad_sequence(sluice_factory, upstream, fail_open):
    dp = start_fake_dp(sluice_factory, upstream, fail_open)
    check_failure(dp, "bad_sequence", fail_open)
    done = wait_until(lambda: [e for e in outcomes(dp, "bad_sequence")
                               if e["outcome"] == "bad_sequence_sent"], 5,
                      what="the fake server to see what sluice-dp did after a bad sequence")
    assert done[0]["after"] == "closed", \
        "a connection out of step was not closed: %r" % done
    assert_healthy(dp, "bad_sequence")


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_unknown_method(sluice_factory, upstream, fail_open):
    dp = start_fake_dp(sluice_factory, upstream, fail_open)
    check_failure(dp, "unknown_method", fail_open)
    assert_healthy(dp, "unknown_method")


def test_exit_reaches_client(sluice_factory, upstream):
    dp = start_fake_dp(sluice_factory, upstream)
    resp = dp.get(fake_path("exit"), headers={"x-in": "v"})
    assert resp.status == 418, resp
    assert resp.body == fs.EXIT_BODY, resp
    assert resp.header("x-fake-exit") == "teapot", resp
    assert len(access_events(dp, "exit")) == 1
    assert_healthy(dp, "exit")


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_crash(sluice_factory, upstream, fail_open):
    dp = start_fake_dp(sluice_factory, upstream, fail_open)
    old = wait_until(lambda: server_pids(dp, "fakeserver.py"), 5, what="the fake server pid")
    check_failure(dp, "crash", fail_open)
    wait_until(lambda: [p for p in server_pids(dp, "fakeserver.py") if p not in old], 3,
               what="the supervisor to restart the crashed fake server")
    assert_healthy(dp, "crash", timeout=4)


# ------------------------------------------------------------------ crash recovery (Go hello)


HELLO_PATH = "/hello"


def hello_dp(sluice_factory, upstream, **per_server):
    decl = declarative([service("echo", upstream.url, routes=[
        route("hello", paths=[HELLO_PATH],
              plugins=[{"name": "hello", "config": {"message": "hi"}}])])])
    dp = sluice_factory(decl, start=False)
    dp.conf.update(go_plugin_conf(dp.prefix, ["hello"], **per_server))
    dp.write_conf()
    dp.start()
    return dp


def socket_accepts(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Load:
    """Threads sending requests to sluice-dp until stopped; each result is
    (start, end, status or None, has the greeting, error)."""

    def __init__(self, dp, threads=3):
        self.dp = dp
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        while not self.stopping.is_set():
            t0 = time.monotonic()
            status, greeted, err = None, False, None
            try:
                r = self.dp.get(HELLO_PATH, timeout=5)
                status = r.status
                greeted = (r.header("x-hello-from-go") or "").startswith("Go says hi to")
            except (OSError, h1.ProtocolError) as e:
                err = repr(e)
            with self.lock:
                self.results.append((t0, time.monotonic(), status, greeted, err))
            time.sleep(0.005)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(10)


@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_hello_server_killed_under_load(sluice_factory, upstream, fail_open):
    dp = hello_dp(sluice_factory, upstream, **({"fail_open": "on"} if fail_open else {}))
    sock = dp.prefix / "hello.socket"
    wait_until(lambda: dp.get(HELLO_PATH).header("x-hello-from-go"), 5,
               what="hello to greet")
    (old,) = wait_until(lambda: server_pids(dp, "go-plugins/hello"), 3, what="hello's pid")
    with Load(dp) as load:
        time.sleep(0.5)
        os.kill(old, signal.SIGKILL)
        t_kill = time.monotonic()
        new = wait_until(lambda: [p for p in server_pids(dp, "go-plugins/hello") if p != old],
                         3, 0.01, what="a new hello server")
        t_new = time.monotonic()
        wait_until(lambda: socket_accepts(sock), 3, 0.01, what="the new server's socket")
        t_sock = time.monotonic()
        time.sleep(1.6)
    res = load.results
    assert dp.proc.poll() is None, \
        "sluice-dp exited (%r) when its plugin server was killed:\n%s" % (
            dp.proc.returncode, dp.stderr()[-2000:])
    assert t_new - t_kill <= 2.2, "hello was restarted %.2fs after SIGKILL" % (t_new - t_kill)
    assert not alive(old)
    assert log_lines(dp, r"hello.*(restart|respawn|again)|(restart|respawn).*hello"), \
        "sluice-dp's log does not say it restarted hello (new pid %s):\n%s" % (
            new, "\n".join(log_lines(dp, "hello")[-15:]))
    before = [r for r in res if r[1] < t_kill]
    after = [r for r in res if r[0] >= t_sock + 1.0]
    assert before and all(r[2] == 200 and r[3] for r in before), before
    assert len(after) >= 3, "too few requests after recovery: %r" % after
    bad_after = [r for r in after if not (r[2] == 200 and r[3])]
    assert not bad_after, "requests more than 1 s after the new socket existed failed: %r" % (
        bad_after[:5],)
    if fail_open:
        failed = [r for r in res if r[2] != 200]
        assert not failed, "with fail_open on, %d of %d requests failed: %r" % (
            len(failed), len(res), failed[:5])
    else:
        odd = [r for r in res if r[2] != 200 and r[2] != 500]
        assert not odd, "requests failed other than with a 500: %r" % odd[:5]


def test_start_command_not_found_is_not_restarted(sluice_factory, upstream):
    dp = start_fake_dp(sluice_factory, upstream,
                       start_cmd="/nonexistent/fake-plugin-server -kong-prefix /nonexistent")
    time.sleep(2.5)  # two respawn periods
    assert dp.proc.poll() is None
    said = log_lines(dp, r"fake.*127|127.*fake")
    assert said, "sluice-dp's log does not mention exit status 127:\n%s" % dp.stderr()[-3000:]
    assert log_lines(dp, r"(not|n't|never|no longer)\b.*\b(restart|respawn)|giv(e|ing) up"), \
        "sluice-dp's log does not say the server is not restarted:\n%s" % "\n".join(said)
    spawned = {m.group(1) for m in re.finditer(r"\[fake:(\d+)\]", dp.stderr())}
    assert len(spawned) <= 1, "the start command ran %d times: %s" % (len(spawned), spawned)
    sh = log_lines(dp, r"sh: .*not found")
    assert len(sh) <= 1, "the start command ran %d times:\n%s" % (len(sh), "\n".join(sh))
    assert_500(dp.get(fake_path("ok"), timeout=8), "a request while the server is absent")
    assert dp.status_get("/status").status == 200


def test_stop_stops_plugin_servers(sluice_factory, upstream):
    decl = declarative([service("echo", upstream.url, routes=[
        route("hello", paths=[HELLO_PATH], plugins=[{"name": "hello"}]),
        route("ok", paths=[fake_path("ok")],
              plugins=[{"name": "fake", "config": {"mode": "ok"}}])])])
    dp = sluice_factory(decl, start=False)
    conf = go_plugin_conf(dp.prefix, ["hello"])
    fake = fake_conf(dp.prefix)
    conf.update({k: v for k, v in fake.items() if k.startswith("pluginserver_fake_")})
    conf["plugins"] = "bundled,hello,fake"
    conf["pluginserver_names"] = "hello,fake"
    dp.conf.update(conf)
    dp.write_conf()
    dp.start()
    assert dp.get(HELLO_PATH).header("x-hello-from-go")
    assert dp.get(fake_path("ok"), headers={"x-in": "x"}).header("x-fake") == "x"
    hello = wait_until(lambda: server_pids(dp, "go-plugins/hello"), 3, what="hello's pid")
    fake = wait_until(lambda: server_pids(dp, "fakeserver.py"), 3, what="the fake server's pid")
    pids = hello + fake
    dp.stop()
    wait_until(lambda: not [p for p in pids if alive(p)], 5,
               what="the plugin servers %s to exit after sluice-dp stopped" % pids)


def test_output_of_exited_server_keeps_its_pid(sluice_factory, upstream):
    """bridge.h: the server's output is logged prefixed "[<name>:<pid>]", also
    the last lines, read after the process has exited."""
    dp = start_fake_dp(sluice_factory, upstream,
                       start_cmd="/nonexistent/fake-plugin-server -kong-prefix /nonexistent")
    exited = wait_until(lambda: log_lines(dp, r"pluginserver fake \(pid \d+\) exited"), 3,
                        what="the exit of the start command")
    pid = re.search(r"\(pid (\d+)\)", exited[0]).group(1)
    sh = wait_until(lambda: log_lines(dp, r"sh: .*not found"), 3, what="sh's message")
    assert "[fake:%s]" % pid in sh[0], "expected the prefix [fake:%s]: %s" % (pid, sh[0])


def test_restart_while_old_output_still_open(sluice_factory, upstream):
    """A server killed while something it started still holds its output
    (here a `sleep` its start command put in the background) is restarted;
    when that old output finally ends, after the restart, sluice-dp carries
    on with the new server's output."""
    dp = sluice_factory(fake_decl(upstream), start=False)
    cmd = "/bin/sh -c 'sleep 2 & exec %s %s -kong-prefix %s'" % (sys.executable, FAKE_PY,
                                                                 dp.prefix)
    dp.conf.update(fake_conf(dp.prefix, cmd))
    dp.conf["workers"] = "1"
    dp.write_conf()
    dp.start()
    assert_healthy(dp, "start-up")
    (old,) = wait_until(lambda: server_pids(dp, "fakeserver.py"), 3, what="the fake server")
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: [p for p in server_pids(dp, "fakeserver.py") if p != old], 3,
               what="the restarted fake server")
    time.sleep(2.2)  # the old sleep ends: its end of the old output pipe closes
    assert dp.proc.poll() is None, \
        "sluice-dp died (%r) when the old server's output ended:\n%s" % (
            dp.proc.returncode, dp.stderr()[-2000:])
    assert_healthy(dp, "the old output's end", timeout=3)
    n = len(log_lines(dp, r"\[fake:\d+\] fake\["))
    assert_healthy(dp, "more output")
    wait_until(lambda: len(log_lines(dp, r"\[fake:\d+\] fake\[")) > n, 3,
               what="the new server's output in the log")
