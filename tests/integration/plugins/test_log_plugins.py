"""Logging plugins on a real sluice-dp (DB-less): kong.log.serialize as
file-log writes it, file-log's file handling, http-log against a real HTTP
receiver (batching, retries, the queue's limits, timeouts, keep-alive, TLS,
flushing at shutdown) and the prometheus plugin's kong_* metrics on the
status listener's /metrics.

Every expectation is Kong 3.10's (kong/pdk/log.lua, kong/plugins/file-log,
kong/plugins/http-log with kong/tools/queue.lua, kong/plugins/prometheus).
Bad configurations are checked with `sluice-dp -t`, which must exit 2 with
an error naming the field.
"""

import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time

import pytest

import h1
from conftest import declarative, free_port, route, run_dp, service, wait_until

ALICE = "5e2a1c7d-3b4f-4a60-9c11-7d8e9f0a1b01"
ALICE_KEY_ID = "5e2a1c7d-3b4f-4a60-9c11-7d8e9f0a1b11"
ROUTE_ID = "5e2a1c7d-3b4f-4a60-9c11-7d8e9f0a1b21"
SERVICE_ID = "5e2a1c7d-3b4f-4a60-9c11-7d8e9f0a1b31"
HTTP_LOG_ID = "5e2a1c7d-3b4f-4a60-9c11-7d8e9f0a1b41"


# ------------------------------------------------------------------ helpers


def plugin(name, config=None, **scope):
    p = {"name": name, "config": config or {}}
    p.update(scope)
    return p


def alice():
    return [{"id": ALICE, "username": "alice", "custom_id": "alice-custom",
             "keyauth_credentials": [{"id": ALICE_KEY_ID, "key": "alice-key"}]}]


def check_dp(tmp_path, decl):
    """sluice-dp -t on a document: the CompletedProcess."""
    conf = tmp_path / "check.conf"
    conf.write_text("proxy_listen = 127.0.0.1:0\nstatus_listen = 127.0.0.1:0\nworkers = 1\n")
    path = tmp_path / "check.json"
    path.write_text(json.dumps(decl))
    return run_dp(["-c", conf, "-p", tmp_path, "-t", "--declarative", path])


def assert_rejected(res, *words):
    assert res.returncode == 2, "exit %r; stderr:\n%s" % (res.returncode, res.stderr)
    lines = [line for line in res.stderr.splitlines() if all(w in line for w in words)]
    assert lines, "no error line with %r; stderr:\n%s" % (words, res.stderr)


def one_route(upstream, plugins, path="/", **extra):
    return declarative([service("svc", upstream.url, routes=[
        route("r", paths=[path], plugins=list(plugins))])], **extra)


def exchange(dp, method, target, headers=None, body=None):
    """Sends one request on a new connection: (request bytes, response, raw
    response bytes)."""
    data = h1.build_request(method, target, headers, body, host="sluice.test")
    with dp.conn() as c:
        c.send(data)
        resp = c.read_response(method)
    raw_len = len(resp.raw_head) + len(resp.body)
    return data, resp, raw_len


def read_lines(path, n, timeout=10):
    """The first n JSON lines of a file, waiting until it has them."""
    def have():
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return None
        return lines if len(lines) >= n else None
    lines = wait_until(have, timeout, what="%d lines in %s" % (n, path))
    return [json.loads(line) for line in lines]


# ------------------------------------------------------------------ an HTTP log receiver


class Receiver:
    """A real HTTP/1.1 server in this process that records what http-log
    sends. Behaviour is switched per test: `fail` answers the next n
    requests with 500, `hold` makes requests wait (after being recorded as
    arrived) until released."""

    def __init__(self, port=0, tls_context=None):
        self.lock = threading.Condition()
        self.arrived = []  # every request as it arrived (before any hold)
        self.done = []     # requests answered 2xx: dicts with method, path, headers, body
        self.fail = 0
        self.hold = threading.Event()
        self.hold.set()    # set: not holding
        self.closed = False
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_any(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                rec = {"method": self.command, "path": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": body, "port": self.client_address[1], "t": time.monotonic()}
                with recv.lock:
                    recv.arrived.append(rec)
                    recv.lock.notify_all()
                    failing = recv.fail > 0
                    if failing:
                        recv.fail -= 1
                recv.hold.wait(30)
                if recv.closed:
                    self.close_connection = True
                    return
                if failing:
                    msg = b"boom"
                    self.send_response(500)
                else:
                    msg = b'{"ok":true}'
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)
                if not failing:
                    with recv.lock:
                        recv.done.append(rec)
                        recv.lock.notify_all()

            do_POST = do_PUT = do_PATCH = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if tls_context:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/logs", scheme="http", userinfo=""):
        return "%s://%s127.0.0.1:%d%s" % (scheme, userinfo, self.port, path)

    def wait_done(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.done) < n:
                left = deadline - time.monotonic()
                assert left > 0, "receiver got %d of %d batches: %r" % (
                    len(self.done), n, [r["body"][:100] for r in self.arrived])
                self.lock.wait(left)
            return list(self.done)

    def wait_arrived(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.arrived) < n:
                left = deadline - time.monotonic()
                assert left > 0, "receiver saw %d of %d requests" % (len(self.arrived), n)
                self.lock.wait(left)
            return list(self.arrived)

    def entries(self):
        """Every log entry delivered, batches flattened, in order."""
        out = []
        for rec in self.done:
            doc = json.loads(rec["body"])
            out.extend(doc if isinstance(doc, list) else [doc])
        return out

    def stop(self):
        self.closed = True
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def http_log(endpoint, pid=HTTP_LOG_ID, **config):
    config["http_endpoint"] = endpoint
    p = plugin("http-log", config)
    if pid:
        p["id"] = pid
    return p


# ======================================================================
# kong.log.serialize, through file-log
# ======================================================================


def test_serialize_proxied_request(sluice_factory, upstream, tmp_path):
    """Every field of Kong's log object for a proxied, authenticated request,
    checked against the request made and the response received."""
    log = tmp_path / "access.json"
    decl = declarative(
        [service("svc", upstream.url + "/delay", id=SERVICE_ID, routes=[
            route("logged", id=ROUTE_ID, paths=["/log"],
                  plugins=[plugin("key-auth"), plugin("file-log", {"path": str(log)})])])],
        consumers=alice())
    dp = sluice_factory(decl)
    headers = [("apikey", "alice-key"), ("X-Multi", "one"), ("X-Multi", "two"),
               ("Authorization", "Basic c2VjcmV0"), ("Proxy-Authorization", "Bearer t"),
               ("User-Agent", "log-test/1.0")]
    target = "/log/120?a=1&b=x&b=y&flag&e=&sp=a%20b"
    t0 = time.time()
    data, resp, raw_len = exchange(dp, "GET", target, headers)
    t1 = time.time()
    assert resp.status == 200, resp
    echo = resp.json()

    [entry] = read_lines(log, 1)
    req = entry["request"]
    assert req["method"] == "GET"
    assert req["uri"] == target
    assert req["url"] == "http://sluice.test:%d%s" % (dp.proxy[1], target)
    assert req["querystring"] == {"a": "1", "b": ["x", "y"], "flag": True, "e": "",
                                  "sp": "a b"}
    assert req["size"] == len(data)
    assert re.fullmatch(r"[0-9a-f]{32}", req["id"]), req["id"]
    assert req["id"] == resp.header("X-Kong-Request-Id")
    h = req["headers"]
    assert h["host"] == "sluice.test"
    assert h["x-multi"] == ["one", "two"]
    assert h["user-agent"] == "log-test/1.0"
    assert h["apikey"] == "alice-key"  # Kong redacts only the two below
    assert h["authorization"] == "REDACTED"
    assert h["proxy-authorization"] == "REDACTED"
    assert all(k == k.lower() for k in h)
    assert "tls" not in req

    # What went upstream: strip_path took /log off, the service path /delay
    # went in front; the echo upstream confirms it.
    assert entry["upstream_uri"] == "/delay/120?a=1&b=x&b=y&flag&e=&sp=a%20b"
    assert echo["target"] == entry["upstream_uri"]
    assert entry["upstream_status"] == "200"

    res = entry["response"]
    assert res["status"] == 200
    assert res["size"] == raw_len
    rh = res["headers"]
    assert all(k == k.lower() for k in rh)
    sent = {k.lower(): v for k, v in resp.headers}
    for k, v in sent.items():
        assert rh[k] == v, (k, rh)
    assert set(rh) == set(sent)

    assert entry["tries"] == [{"ip": upstream.host, "port": upstream.port}]
    lat = entry["latencies"]
    assert set(lat) == {"kong", "proxy", "request", "receive"}
    assert lat["proxy"] >= 120, lat  # the upstream slept 120 ms before answering
    assert lat["request"] >= lat["proxy"]
    assert 0 <= lat["kong"] <= lat["request"]
    assert lat["receive"] >= 0
    assert lat["request"] <= (t1 - t0) * 1000 + 5

    assert entry["route"]["id"] == ROUTE_ID
    assert entry["route"]["name"] == "logged"
    assert entry["route"]["paths"] == ["/log"]
    assert entry["service"]["id"] == SERVICE_ID
    assert entry["service"]["name"] == "svc"
    assert entry["service"]["host"] == upstream.host
    assert entry["service"]["port"] == upstream.port
    assert entry["service"]["path"] == "/delay"
    assert entry["consumer"] == {"id": ALICE, "username": "alice", "custom_id": "alice-custom"}
    assert entry["authenticated_entity"] == {"id": ALICE_KEY_ID, "consumer_id": ALICE}
    assert entry["client_ip"] == "127.0.0.1"
    assert int(t0 * 1000) - 1 <= entry["started_at"] <= int(t1 * 1000) + 1
    assert entry["source"] == "upstream"
    assert entry["workspace_name"] == "default"


# Kong collects every plugin of a request during access even after one
# answered (kong.response.exit sets ctx.delayed_response: later access
# handlers are skipped, but their plugins' log handlers still run), so a
# logging plugin sees the 401 of an auth plugin above it.
def test_serialize_plugin_response(sluice_factory, upstream, tmp_path):
    """A response a plugin produced (key-auth's 401): nothing went upstream,
    no consumer, the source is kong."""
    log = tmp_path / "exit.json"
    dp = sluice_factory(one_route(upstream, [plugin("key-auth"),
                                             plugin("file-log", {"path": str(log)})]))
    data, resp, raw_len = exchange(dp, "POST", "/nokey", [("Content-Type", "text/plain")],
                                   b"hello body")
    assert resp.status == 401
    [entry] = read_lines(log, 1)
    assert entry["request"]["method"] == "POST"
    # the answer came before the body was read: the head is what was read
    # (the connection closes rather than read a body nobody wants)
    assert entry["request"]["size"] == data.index(b"\r\n\r\n") + 4
    assert entry["response"]["status"] == 401
    assert entry["response"]["size"] == raw_len
    assert entry["response"]["headers"]["www-authenticate"] == "Key"
    assert entry["upstream_uri"] == ""
    assert entry["upstream_status"] == ""
    assert entry["tries"] == []
    assert entry["latencies"]["proxy"] == -1
    assert entry["latencies"]["receive"] == 0
    assert entry["source"] == "kong"
    assert "consumer" not in entry and "authenticated_entity" not in entry
    assert entry["route"]["name"] == "r"
    assert entry["service"]["name"] == "svc"


def test_serialize_upstream_failure(sluice_factory, tmp_path):
    """Every attempt failed: one entry per try, the gateway's 502."""
    log = tmp_path / "fail.json"
    port = free_port()
    dp = sluice_factory(declarative([service(
        "down", "http://127.0.0.1:%d" % port, retries=2,
        routes=[route("r", paths=["/"], plugins=[plugin("file-log", {"path": str(log)})])])]))
    assert dp.get("/x").status == 502
    [entry] = read_lines(log, 1)
    assert entry["response"]["status"] == 502
    assert entry["upstream_status"] == "502"
    assert entry["tries"] == [{"ip": "127.0.0.1", "port": port}] * 3
    assert entry["latencies"]["proxy"] == -1
    assert entry["source"] == "kong"
    assert entry["upstream_uri"] == "/x"


def test_serialize_head_request_and_headers_changed_by_plugins(sluice_factory, upstream,
                                                               tmp_path):
    """Request headers are those the upstream got (a plugin's changes
    included); response headers are those the client got."""
    log = tmp_path / "tx.json"
    dp = sluice_factory(one_route(upstream, [
        plugin("request-transformer", {"add": {"headers": ["x-added:yes"]},
                                       "remove": {"headers": ["x-gone"]}}),
        plugin("response-transformer", {"add": {"headers": ["x-resp:1"]}}),
        plugin("file-log", {"path": str(log)})]))
    data, resp, raw_len = exchange(dp, "HEAD", "/h", [("X-Gone", "1")])
    assert resp.status == 200 and resp.header("x-resp") == "1"
    [entry] = read_lines(log, 1)
    assert entry["request"]["method"] == "HEAD"
    assert entry["request"]["headers"]["x-added"] == "yes"
    assert "x-gone" not in entry["request"]["headers"]
    assert entry["response"]["headers"]["x-resp"] == "1"
    assert entry["response"]["size"] == raw_len == len(resp.raw_head)


def test_serialize_request_body_counts_in_size(sluice_factory, upstream, tmp_path):
    """request.size is nginx's $request_length: the head and the body read
    (chunked framing included)."""
    log = tmp_path / "body.json"
    dp = sluice_factory(one_route(upstream, [plugin("file-log", {"path": str(log)})]))
    data, resp, _ = exchange(dp, "POST", "/up", [("Content-Type", "text/plain")], b"x" * 5000)
    assert resp.status == 200 and resp.json()["body_len"] == 5000
    chunked = h1.build_request("POST", "/up2", [("Transfer-Encoding", "chunked")],
                               h1.chunked_body([b"a" * 10, b"b" * 20]), host="sluice.test")
    with dp.conn() as c:
        c.send(chunked)
        assert c.read_response().status == 200
    first, second = read_lines(log, 2)
    assert first["request"]["size"] == len(data)
    assert second["request"]["size"] == len(chunked)


def test_serialize_no_route(sluice_factory, upstream, tmp_path):
    """A global file-log sees the 404 of a request no route matched: no
    route, no service."""
    log = tmp_path / "global.json"
    dp = sluice_factory(declarative([service("svc", upstream.url, routes=[
        route("r", paths=["/only"])])], plugins=[plugin("file-log", {"path": str(log)})]))
    assert dp.get("/elsewhere").status == 404
    [entry] = read_lines(log, 1)
    assert entry["response"]["status"] == 404
    assert "route" not in entry and "service" not in entry
    assert entry["source"] == "kong"


def test_serialize_non_utf8_header_is_valid_json(sluice_factory, upstream, tmp_path):
    log = tmp_path / "bytes.json"
    dp = sluice_factory(one_route(upstream, [plugin("file-log", {"path": str(log)})]))
    raw = b"GET /b HTTP/1.1\r\nHost: sluice.test\r\nX-Bin: caf\xe9\r\n\r\n"
    with dp.conn() as c:
        c.send(raw)
        assert c.read_response().status == 200
    [entry] = read_lines(log, 1)
    assert entry["request"]["headers"]["x-bin"] == "caf\ufffd"


# ======================================================================
# file-log
# ======================================================================


def test_file_log_appends_lines_in_order(sluice_factory, upstream, tmp_path):
    log = tmp_path / "order.json"
    log.write_text('{"earlier": true}\n')  # appended to, not truncated
    dp = sluice_factory(one_route(upstream, [plugin("file-log", {"path": str(log)})]),
                        {"workers": "2"})
    with dp.conn() as c:
        for i in range(40):
            assert c.request("GET", "/seq/%d" % i).status == 200
    entries = read_lines(log, 41)
    assert entries[0] == {"earlier": True}
    assert [e["request"]["uri"] for e in entries[1:]] == ["/seq/%d" % i for i in range(40)]


def test_file_log_creates_file_with_mode_0644(sluice_factory, upstream, tmp_path):
    log = tmp_path / "new.json"
    dp = sluice_factory(one_route(upstream, [plugin("file-log", {"path": str(log)})]))
    old = os.umask(0)
    os.umask(old)
    assert dp.get("/").status == 200
    read_lines(log, 1)
    assert os.stat(log).st_mode & 0o777 == 0o644 & ~old


def test_file_log_reopen(sluice_factory, upstream, tmp_path):
    """reopen: the file is opened again for every line, so a rotated file is
    let go at once."""
    log = tmp_path / "rot.json"
    dp = sluice_factory(one_route(upstream, [plugin("file-log", {"path": str(log),
                                                                 "reopen": True})]))
    assert dp.get("/one").status == 200
    read_lines(log, 1)
    os.rename(log, tmp_path / "rot.json.1")
    assert dp.get("/two").status == 200
    [entry] = read_lines(log, 1)
    assert entry["request"]["uri"] == "/two"
    old = read_lines(tmp_path / "rot.json.1", 1)
    assert [e["request"]["uri"] for e in old] == ["/one"]


def test_file_log_without_reopen_keeps_file_until_reload(sluice_factory, upstream, tmp_path):
    """Without reopen the descriptor is kept (a renamed file keeps getting
    lines) until the configuration is read again (SIGHUP)."""
    log = tmp_path / "keep.json"
    logged = route("r", paths=["/log"], plugins=[plugin("file-log", {"path": str(log)})])
    dp = sluice_factory(declarative([service("svc", upstream.url, routes=[logged])]),
                        {"workers": "1"})
    assert dp.get("/log/one").status == 200
    read_lines(log, 1)
    moved = tmp_path / "keep.json.1"
    os.rename(log, moved)
    assert dp.get("/log/two").status == 200
    read_lines(moved, 2)
    assert not log.exists()

    dp.write_declarative(declarative([service("svc", upstream.url, routes=[
        logged, route("new", paths=["/new"])])]))
    dp.reload()
    wait_until(lambda: dp.get("/new").status == 200, 10, what="the reload")
    assert dp.get("/log/three").status == 200
    [entry] = read_lines(log, 1)
    assert entry["request"]["uri"] == "/log/three"
    assert [e["request"]["uri"] for e in read_lines(moved, 2)] == ["/log/one", "/log/two"]


def test_file_log_bad_path(sluice_factory, upstream, tmp_path):
    """A file that cannot be opened costs the line, not the request."""
    path = tmp_path / "missing-dir" / "x.json"
    dp = sluice_factory(one_route(upstream, [plugin("file-log", {"path": str(path)})]))
    for _ in range(5):
        assert dp.get("/fine").status == 200
    wait_until(lambda: "failed to open the file: No such file or directory" in dp.stderr(), 10,
               what="the open error")
    assert "[file-log]" in dp.stderr()
    assert not path.exists()
    # Once the directory exists, lines are written again (some of the
    # earlier ones may still have been waiting for the writer).
    path.parent.mkdir()
    assert dp.get("/later").status == 200

    def later_written():
        entries = read_lines(path, 1)
        return entries if entries[-1]["request"]["uri"] == "/later" else None
    entries = wait_until(later_written, 10, what="the line of /later")
    assert {e["request"]["uri"] for e in entries[:-1]} <= {"/fine"}


def test_file_log_blocked_file_does_not_block_requests(sluice_factory, upstream, tmp_path):
    """The path is a FIFO nobody reads: opening it blocks the writer thread,
    never a worker. Once a reader comes, every line arrives, in order."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    dp = sluice_factory(one_route(upstream, [plugin("file-log", {"path": str(fifo)})]),
                        {"workers": "1"})
    slowest = 0
    for i in range(20):
        t = time.monotonic()
        assert dp.get("/p/%d" % i).status == 200
        slowest = max(slowest, time.monotonic() - t)
    assert slowest < 1.0, slowest
    got = []
    with open(fifo, "rb") as f:
        buf = b""
        while len(got) < 20:
            chunk = f.read1(65536)
            assert chunk, "the writer closed the FIFO after %d lines" % len(got)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            got += [json.loads(line)["request"]["uri"] for line in lines]
    assert got == ["/p/%d" % i for i in range(20)]


def test_file_log_lines_written_before_exit(sluice_factory, upstream, tmp_path):
    log = tmp_path / "exit.json"
    dp = sluice_factory(one_route(upstream, [plugin("file-log", {"path": str(log)})]))
    with dp.conn() as c:
        for i in range(200):
            assert c.request("GET", "/e/%d" % i).status == 200
    dp.stop()
    lines = log.read_text().splitlines()
    assert len(lines) == 200


@pytest.mark.parametrize("config,words", [
    ({"path": "/tmp/x.log", "custom_fields_by_lua": {"a": "return 1"}},
     ("custom_fields_by_lua", "not supported")),
    ({"reopen": True}, ("path", "required")),
    ({"path": "/tmp/a*b.log"}, ("path", "not a valid filename")),
    ({"path": "/tmp/x.log", "reopen": "yes"}, ("reopen", "boolean")),
])
def test_file_log_bad_config(tmp_path, upstream, config, words):
    res = check_dp(tmp_path, one_route(upstream, [plugin("file-log", config)]))
    assert_rejected(res, *words)


def test_file_log_empty_custom_fields_accepted(tmp_path, upstream):
    res = check_dp(tmp_path, one_route(upstream, [plugin("file-log", {
        "path": "/tmp/x.log", "custom_fields_by_lua": {}})]))
    assert res.returncode == 0, res.stderr


# ======================================================================
# http-log
# ======================================================================


def test_http_log_single_entry_request(sluice_factory, upstream, receiver):
    """max_batch_size 1: each entry is sent alone as a JSON object, with the
    configured method, content type, headers and Basic credentials."""
    rcv = receiver()
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url("/logs/in?src=sluice", userinfo="user:pa%3Ass@"), method="PUT",
        content_type="application/json; charset=utf-8",
        headers={"X-Log-Token": "t0k", "X-Other": "v"})]))
    assert dp.get("/one?q=1").status == 200
    [rec] = rcv.wait_done(1)
    assert rec["method"] == "PUT"
    assert rec["path"] == "/logs/in?src=sluice"
    hs = rec["headers"]
    assert hs["content-type"] == "application/json; charset=utf-8"
    assert hs["x-log-token"] == "t0k" and hs["x-other"] == "v"
    assert hs["authorization"] == "Basic dXNlcjpwYSUzQXNz"  # user:pa%3Ass, as written
    assert hs["host"] == "127.0.0.1:%d" % rcv.port
    assert int(hs["content-length"]) == len(rec["body"])
    entry = json.loads(rec["body"])
    assert isinstance(entry, dict)
    assert entry["request"]["uri"] == "/one?q=1"
    assert entry["response"]["status"] == 200
    assert entry["route"]["name"] == "r"


def test_http_log_batches(sluice_factory, upstream, receiver):
    """max_batch_size 4: a full batch goes at once as a JSON array; a partial
    one after max_coalescing_delay."""
    rcv = receiver()
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url(), queue={"max_batch_size": 4, "max_coalescing_delay": 3})]),
        {"workers": "1"})
    with dp.conn() as c:
        for i in range(4):
            assert c.request("GET", "/b/%d" % i).status == 200
    [first] = rcv.wait_done(1, timeout=2.5)  # full: sent before the delay ran out
    batch = json.loads(first["body"])
    assert isinstance(batch, list)
    assert [e["request"]["uri"] for e in batch] == ["/b/%d" % i for i in range(4)]

    t = time.monotonic()
    with dp.conn() as c:
        for i in range(4, 6):
            assert c.request("GET", "/b/%d" % i).status == 200
    done = rcv.wait_done(2, timeout=8)
    assert done[1]["t"] - t >= 2.8  # waited for the coalescing delay
    assert [e["request"]["uri"] for e in json.loads(done[1]["body"])] == ["/b/4", "/b/5"]


def test_http_log_batch_of_one_is_still_an_array(sluice_factory, upstream, receiver):
    rcv = receiver()
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url(), queue={"max_batch_size": 10, "max_coalescing_delay": 0.2})]))
    assert dp.get("/lonely").status == 200
    [rec] = rcv.wait_done(1)
    doc = json.loads(rec["body"])
    assert isinstance(doc, list) and len(doc) == 1
    assert doc[0]["request"]["uri"] == "/lonely"


def test_http_log_retries_after_errors(sluice_factory, upstream, receiver):
    """The receiver fails, then recovers: the same batch is sent again and
    delivered; each failure is logged as Kong's queue logs it."""
    rcv = receiver()
    rcv.fail = 3
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url(), queue={"initial_retry_delay": 0.05, "max_retry_time": 30})]))
    assert dp.get("/retry-me").status == 200
    [rec] = rcv.wait_done(1)
    arrived = rcv.wait_arrived(4)
    assert len({r["body"] for r in arrived}) == 1  # the same batch every time
    assert json.loads(rec["body"])["request"]["uri"] == "/retry-me"
    err = dp.stderr()
    assert ("handler could not process entries: request to 127.0.0.1:%d returned status code "
            "500 and body boom" % rcv.port) in err
    assert "[http-log plugin %s] queue " % HTTP_LOG_ID in err
    # the delays doubled: 50, 100, 200 ms at least
    gaps = [b["t"] - a["t"] for a, b in zip(arrived, arrived[1:])]
    assert gaps[1] >= 0.09 and gaps[2] >= 0.19, gaps


def test_http_log_receiver_down_then_up(sluice_factory, upstream, receiver):
    """Connection refused, then the receiver starts on that port."""
    port = free_port()
    dp = sluice_factory(one_route(upstream, [http_log(
        "http://127.0.0.1:%d/logs" % port,
        queue={"initial_retry_delay": 0.1, "max_retry_delay": 0.2, "max_retry_time": 30})]))
    assert dp.get("/early").status == 200
    wait_until(lambda: "failed request to 127.0.0.1:%d: Connection refused" % port
               in dp.stderr(), 10, what="a refused attempt")
    rcv = receiver(port=port)
    [rec] = rcv.wait_done(1)
    assert json.loads(rec["body"])["request"]["uri"] == "/early"


def test_http_log_gives_up_after_max_retry_time(sluice_factory, upstream, receiver):
    rcv = receiver()
    rcv.fail = 1000
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url(), queue={"initial_retry_delay": 0.05, "max_retry_time": 0.4})]))
    assert dp.get("/lost").status == 200
    wait_until(lambda: "could not send entries due to max_retry_time exceeded. 1 queue entries "
               "were lost" in dp.stderr(), 10, what="the give-up error")
    n = len(rcv.arrived)
    assert 2 <= n <= 10, n
    time.sleep(0.5)
    assert len(rcv.arrived) == n  # no more attempts


def test_http_log_max_entries_drops_oldest(sluice_factory, upstream, receiver):
    """While a batch hangs, at most max_entries wait; the oldest go first."""
    rcv = receiver()
    rcv.hold.clear()
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url(), queue={"max_entries": 3})]), {"workers": "1"})
    assert dp.get("/q/0").status == 200
    rcv.wait_arrived(1)  # /q/0 is in flight, held
    with dp.conn() as c:
        for i in range(1, 9):
            assert c.request("GET", "/q/%d" % i).status == 200
    wait_until(lambda: "queue full, dropping old entries until processing is successful again"
               in dp.stderr(), 10, what="the queue-full error")
    assert "queue at 80% capacity" in dp.stderr()
    rcv.hold.set()
    rcv.wait_done(4)
    time.sleep(0.3)
    assert [e["request"]["uri"] for e in rcv.entries()] == ["/q/0", "/q/6", "/q/7", "/q/8"]
    wait_until(lambda: "queue resumed processing" in dp.stderr(), 5, what="resumed")


def test_http_log_hanging_receiver_times_out_and_proxy_stays_fast(sluice_factory, upstream,
                                                                   receiver):
    """The receiver does not answer: each attempt ends after config.timeout,
    and client requests meanwhile are as fast as ever."""
    rcv = receiver()
    rcv.hold.clear()
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url(), timeout=2000, queue={"initial_retry_delay": 0.05, "max_retry_delay": 0.1})]),
        {"workers": "1"})
    slowest = 0
    for i in range(10):
        t = time.monotonic()
        assert dp.get("/fast/%d" % i).status == 200
        slowest = max(slowest, time.monotonic() - t)
    # Far below config.timeout, which a log handler waiting for the
    # receiver would add to every request.
    assert slowest < 1.0, slowest
    wait_until(lambda: "failed request to 127.0.0.1:%d: timeout" % rcv.port in dp.stderr(), 5,
               what="a timed-out attempt")
    rcv.hold.set()
    wait_until(lambda: len(rcv.entries()) == 10, 15, what="all entries after the hang")
    assert sorted(e["request"]["uri"] for e in rcv.entries()) == sorted(
        "/fast/%d" % i for i in range(10))


def test_http_log_runs_after_the_client_has_its_response(sluice_factory, upstream, receiver):
    """The log request is sent once the response was handed over: the
    client reads its complete response while the receiver holds the log
    request of that very response."""
    rcv = receiver()
    rcv.hold.clear()
    dp = sluice_factory(one_route(upstream, [http_log(rcv.url())]), {"workers": "1"})
    with dp.conn() as c:
        c.send(h1.build_request("GET", "/bytes/100000", host="sluice.test"))
        resp = c.read_response()
    assert resp.status == 200 and len(resp.body) == 100000
    [rec] = rcv.wait_arrived(1)
    entry = json.loads(rec["body"])
    assert entry["response"]["status"] == 200
    assert entry["response"]["size"] >= 100000
    assert not rcv.done  # still held: the client did not wait for it
    rcv.hold.set()
    rcv.wait_done(1)


def test_http_log_keepalive_reuses_connection(sluice_factory, upstream, receiver):
    rcv = receiver()
    dp = sluice_factory(one_route(upstream, [http_log(rcv.url())]), {"workers": "1"})
    for i in range(3):
        assert dp.get("/k/%d" % i).status == 200
        rcv.wait_done(i + 1)
    assert len({r["port"] for r in rcv.done}) == 1, [r["port"] for r in rcv.done]


def test_http_log_unlimited_concurrency(sluice_factory, upstream, receiver):
    """concurrency_limit -1: every entry is sent at once on its own, so a held
    request does not hold back the next."""
    rcv = receiver()
    rcv.hold.clear()
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url(), queue={"concurrency_limit": -1})]), {"workers": "1"})
    assert dp.get("/c/1").status == 200
    assert dp.get("/c/2").status == 200
    arrived = rcv.wait_arrived(2)
    assert sorted(json.loads(r["body"])["request"]["uri"] for r in arrived) == ["/c/1", "/c/2"]
    rcv.hold.set()
    rcv.wait_done(2)


def test_http_log_flushes_at_shutdown(sluice_factory, upstream, receiver):
    """A batch still coalescing when the data plane stops is sent first."""
    rcv = receiver()
    dp = sluice_factory(one_route(upstream, [http_log(
        rcv.url(), queue={"max_batch_size": 100, "max_coalescing_delay": 60})]))
    for i in range(3):
        assert dp.get("/s/%d" % i).status == 200
    time.sleep(0.2)
    assert not rcv.arrived
    dp.stop()
    assert sorted(e["request"]["uri"] for e in rcv.entries()) == ["/s/0", "/s/1", "/s/2"]


def test_http_log_max_bytes(sluice_factory, upstream, receiver):
    """queue.max_bytes: an entry longer than the whole budget is refused."""
    rcv = receiver()
    dp = sluice_factory(one_route(upstream, [http_log(rcv.url(), queue={"max_bytes": 200})]))
    assert dp.get("/big").status == 200
    wait_until(lambda: "than the queue's max_bytes (200 bytes)" in dp.stderr(), 5,
               what="the max_bytes error")
    time.sleep(0.2)
    assert not rcv.arrived


def test_http_log_endpoint_by_name(sluice_factory, upstream, receiver):
    rcv = receiver()
    dp = sluice_factory(one_route(upstream, [http_log(
        "http://localhost:%d/named" % rcv.port)]))
    assert dp.get("/n").status == 200
    [rec] = rcv.wait_done(1)
    assert rec["path"] == "/named"
    assert rec["headers"]["host"] == "localhost:%d" % rcv.port


def test_http_log_https_endpoint(sluice_factory, upstream, receiver, tmp_path):
    """https: TLS without certificate verification, as Kong's http-log."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=logs.test"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    rcv = receiver(tls_context=ctx)
    dp = sluice_factory(one_route(upstream, [http_log(rcv.url("/tls", scheme="https"))]))
    assert dp.get("/secure").status == 200
    [rec] = rcv.wait_done(1)
    assert json.loads(rec["body"])["request"]["uri"] == "/secure"


@pytest.mark.parametrize("config,words", [
    ({"http_endpoint": "http://127.0.0.1:1/", "custom_fields_by_lua": {"x": "return 1"}},
     ("custom_fields_by_lua", "not supported")),
    ({}, ("http_endpoint", "required")),
    ({"http_endpoint": "ftp://127.0.0.1/x"}, ("http_endpoint",)),
    ({"http_endpoint": "http://127.0.0.1:1/", "method": "GET"}, ("method",)),
    ({"http_endpoint": "http://127.0.0.1:1/", "headers": {"Host": "x"}}, ("headers", "Host")),
    ({"http_endpoint": "http://127.0.0.1:1/", "queue": {"max_batch_size": 0}},
     ("max_batch_size",)),
    ({"http_endpoint": "http://127.0.0.1:1/", "queue": {"concurrency_limit": 5}},
     ("concurrency_limit",)),
    ({"http_endpoint": "http://127.0.0.1:1/", "queue": {"initial_retry_delay": 0}},
     ("initial_retry_delay",)),
    ({"http_endpoint": "http://u:p@127.0.0.1:1/", "headers": {"Authorization": "x"}},
     ("Authorization",)),
])
def test_http_log_bad_config(tmp_path, upstream, config, words):
    res = check_dp(tmp_path, one_route(upstream, [plugin("http-log", config)]))
    assert_rejected(res, *words)


# ======================================================================
# prometheus
# ======================================================================

SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})?'
    r' (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(dp):
    resp = dp.status_get("/metrics")
    assert resp.status == 200
    samples, types = [], {}
    for line in resp.body.decode().splitlines():
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE_RE.match(line)
            assert m, "not a Prometheus sample line: %r" % line
            labels = LABEL_RE.findall(m.group(3) or "")
            samples.append((m.group(1), labels, float(m.group(4))))
    return samples, types


def scrape_when(dp, name, **labels):
    """Scrapes until a sample of that name and labels is there: the log phase
    counts a request after its response reached the client, so a scrape
    right after the response can come first."""
    def ready():
        samples, _ = scrape(dp)
        return samples if value(samples, name, **labels) is not None else None
    return wait_until(ready, 5, what="%s %s in /metrics" % (name, labels))


def value(samples, name, **labels):
    """The sample of that name whose labels include these; None when none."""
    found = [v for n, ls, v in samples if n == name and labels.items() <= dict(ls).items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def kong_names(samples):
    return {n for n, _, _ in samples if n.startswith("kong_")}


ALL_METRICS = {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True}


def test_prometheus_metrics_after_requests(sluice_factory, upstream):
    down = "http://127.0.0.1:%d" % free_port()
    dp = sluice_factory(declarative([
        service("svc", upstream.url, routes=[route("open", paths=["/open"])]),
        service("gone", down, retries=0, routes=[route("broken", paths=["/broken"])])],
        plugins=[plugin("prometheus", ALL_METRICS)]), {"workers": "2"})
    sizes_in = sizes_out = 0
    for i in range(3):
        data, resp, raw_len = exchange(dp, "GET", "/open/delay/30?i=%d" % i)
        assert resp.status == 200
        sizes_in += len(data)
        sizes_out += raw_len
    assert dp.get("/broken").status == 502

    def scraped():
        s, _ = scrape(dp)
        return s if value(s, "kong_http_requests_total", code="502") else None
    samples = wait_until(scraped, 5, what="the metrics of all four requests")
    _, types = scrape(dp)

    base = {"service": "svc", "route": "open", "workspace": "default"}
    ok = [(n, ls) for n, ls, _ in samples if n == "kong_http_requests_total"
          and dict(ls)["code"] == "200"]
    assert ok and [k for k, _ in ok[0][1]] == ["service", "route", "code", "source",
                                               "workspace", "consumer"]
    assert value(samples, "kong_http_requests_total", code="200", source="service",
                 consumer="", **base) == 3
    # The gateway's own answer (the upstream was down): source kong.
    assert value(samples, "kong_http_requests_total", service="gone", route="broken",
                 code="502", source="kong", workspace="default", consumer="") == 1
    assert types["kong_http_requests_total"] == "counter"

    assert value(samples, "kong_bandwidth_bytes", direction="ingress", consumer="",
                 **base) == sizes_in
    assert value(samples, "kong_bandwidth_bytes", direction="egress", consumer="",
                 **base) == sizes_out
    assert types["kong_bandwidth_bytes"] == "counter"

    for name in ("kong_kong_latency_ms", "kong_upstream_latency_ms", "kong_request_latency_ms"):
        assert types[name] == "histogram"
        assert value(samples, name + "_count", **base) == 3
        buckets = [(dict(ls)["le"], v) for n, ls, v in samples
                   if n == name + "_bucket" and dict(ls)["route"] == "open"]
        assert buckets[-1] == ("+Inf", 3)
        counts = [v for _, v in buckets]
        assert counts == sorted(counts)  # cumulative
    # The upstream slept 30 ms each time: no upstream latency under 25 ms.
    assert value(samples, "kong_upstream_latency_ms_bucket", le="00025.0", **base) == 0
    assert value(samples, "kong_upstream_latency_ms_bucket", le="00050.0", **base) == 3
    assert value(samples, "kong_upstream_latency_ms_sum", **base) >= 90
    # Kong's buckets, labelled as Kong's prometheus library writes them.
    les = [dict(ls)["le"] for n, ls, _ in samples
           if n == "kong_kong_latency_ms_bucket" and dict(ls)["route"] == "open"]
    assert les == ["0001.0", "0002.0", "0005.0", "0007.0", "0010.0", "0015.0", "0020.0",
                   "0030.0", "0050.0", "0075.0", "0100.0", "0200.0", "0500.0", "0750.0",
                   "1000.0", "3000.0", "6000.0", "+Inf"]
    les = [dict(ls)["le"] for n, ls, _ in samples
           if n == "kong_request_latency_ms_bucket" and dict(ls)["route"] == "open"]
    assert les[:3] == ["00025.0", "00050.0", "00080.0"] and les[-2:] == ["60000.0", "+Inf"]
    # Nothing came from upstream on the broken route: no upstream latency.
    assert value(samples, "kong_upstream_latency_ms_count", route="broken") is None
    assert value(samples, "kong_kong_latency_ms_count", route="broken") == 1

    # Node-level metrics.
    assert value(samples, "kong_nginx_requests_total", subsystem="http") >= 4
    assert value(samples, "kong_nginx_connections_total", state="accepted") >= 4
    assert value(samples, "kong_datastore_reachable") == 1
    assert value(samples, "kong_node_info") == 1
    # The sluice_* metrics are still there.
    assert any(n == "sluice_http_requests_total" for n, _, _ in samples)


def test_prometheus_counts_plugin_responses(sluice_factory, upstream):
    """key-auth's 401 is counted, with source kong."""
    dp = sluice_factory(declarative([service("svc", upstream.url, routes=[
        route("locked", paths=["/locked"], plugins=[plugin("key-auth")])])],
        plugins=[plugin("prometheus", ALL_METRICS)]))
    assert dp.get("/locked").status == 401
    samples = scrape_when(dp, "kong_http_requests_total", route="locked")
    assert value(samples, "kong_http_requests_total", service="svc", route="locked",
                 code="401", source="kong", workspace="default", consumer="") == 1


def test_prometheus_counts_merged_across_workers(sluice_factory, upstream):
    dp = sluice_factory(one_route(upstream, [plugin("prometheus", ALL_METRICS)]),
                        {"workers": "4"})
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        statuses = list(ex.map(lambda i: dp.get("/m/%d" % i).status, range(200)))
    assert statuses == [200] * 200

    def total():
        s, _ = scrape(dp)
        return value(s, "kong_http_requests_total", code="200") == 200
    wait_until(total, 5, what="200 requests counted")
    samples, _ = scrape(dp)
    assert value(samples, "kong_request_latency_ms_count", route="r") == 200
    assert len([1 for n, ls, _ in samples if n == "kong_http_requests_total"]) == 1


def test_prometheus_defaults_count_no_requests(sluice_factory, upstream):
    """Kong 3.x: status_code_metrics, latency_metrics and bandwidth_metrics
    default to false; the node metrics are there all the same."""
    dp = sluice_factory(one_route(upstream, [plugin("prometheus")]))
    for _ in range(3):
        assert dp.get("/d").status == 200
    samples, _ = scrape(dp)
    names = kong_names(samples)
    assert "kong_nginx_requests_total" in names and "kong_node_info" in names
    assert not names & {"kong_http_requests_total", "kong_bandwidth_bytes",
                        "kong_kong_latency_ms_bucket", "kong_request_latency_ms_bucket"}


def test_prometheus_per_consumer(sluice_factory, upstream):
    dp = sluice_factory(declarative([service("svc", upstream.url, routes=[
        route("r", paths=["/"], plugins=[plugin("key-auth", {"anonymous": "anon"})])])],
        consumers=alice() + [{"username": "anon"}],
        plugins=[plugin("prometheus", dict(ALL_METRICS, per_consumer=True))]))
    for _ in range(2):
        assert dp.get("/p", headers={"apikey": "alice-key"}).status == 200
    assert dp.get("/p").status == 200
    samples = scrape_when(dp, "kong_http_requests_total", code="200", consumer="anon")
    assert value(samples, "kong_http_requests_total", code="200", consumer="alice") == 2
    assert value(samples, "kong_http_requests_total", code="200", consumer="anon") == 1
    assert value(samples, "kong_bandwidth_bytes", direction="egress", consumer="alice") > 0
    # without per_consumer the label is empty
    dp2 = sluice_factory(declarative([service("svc", upstream.url, routes=[
        route("r", paths=["/"], plugins=[plugin("key-auth")])])], consumers=alice(),
        plugins=[plugin("prometheus", ALL_METRICS)]))
    assert dp2.get("/p", headers={"apikey": "alice-key"}).status == 200
    samples = scrape_when(dp2, "kong_http_requests_total", code="200")
    assert value(samples, "kong_http_requests_total", code="200", consumer="") == 1


def test_prometheus_absent_no_kong_metrics(sluice_factory, upstream):
    dp = sluice_factory(one_route(upstream, []))
    assert dp.get("/a").status == 200
    samples, _ = scrape(dp)
    assert not kong_names(samples)
    assert any(n == "sluice_http_requests_total" for n, _, _ in samples)


def test_prometheus_disabled_plugin_no_kong_metrics(sluice_factory, upstream):
    p = plugin("prometheus", ALL_METRICS)
    p["enabled"] = False
    dp = sluice_factory(declarative([service("svc", upstream.url, routes=[
        route("r", paths=["/"])])], plugins=[p]))
    assert dp.get("/a").status == 200
    samples, _ = scrape(dp)
    assert not kong_names(samples)


def test_prometheus_scoped_to_a_route(sluice_factory, upstream):
    """Only the route with the plugin counts requests."""
    dp = sluice_factory(declarative([service("svc", upstream.url, routes=[
        route("with", paths=["/with"], plugins=[plugin("prometheus", ALL_METRICS)]),
        route("without", paths=["/without"])])]))
    assert dp.get("/with").status == 200
    assert dp.get("/without").status == 200
    samples = scrape_when(dp, "kong_http_requests_total", route="with")
    assert value(samples, "kong_http_requests_total", route="with") == 1
    assert value(samples, "kong_http_requests_total", route="without") is None


def test_prometheus_upstream_health(sluice_factory, upstream):
    decl = declarative(
        [service("svc", "http://pool.internal", routes=[route("r", paths=["/"])])],
        upstreams=[{"name": "pool.internal",
                    "targets": [{"target": "%s:%d" % (upstream.host, upstream.port)}]}],
        plugins=[plugin("prometheus", {"upstream_health_metrics": True})])
    dp = sluice_factory(decl)
    samples, _ = scrape(dp)
    target = "%s:%d" % (upstream.host, upstream.port)
    assert value(samples, "kong_upstream_target_health", upstream="pool.internal",
                 target=target, state="healthchecks_off") == 1
    assert value(samples, "kong_upstream_target_health", upstream="pool.internal",
                 target=target, state="healthy") == 0


def test_prometheus_bad_config(tmp_path, upstream):
    res = check_dp(tmp_path, one_route(upstream, [plugin("prometheus",
                                                         {"per_consumer": "yes"})]))
    assert_rejected(res, "per_consumer")
