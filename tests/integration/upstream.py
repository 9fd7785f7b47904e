#!/usr/bin/env python3
"""A real HTTP/1.1 upstream for the Sluice integration tests.

One thread per connection, its own small parser (so that it sees exactly the
bytes the proxy sent: header order and case, chunked framing, Expect), bodies
always streamed through a hash and never held in memory.

Run as `python3 upstream.py --port 0 --addr-file F [--name N] [--mode M]`;
the bound address `127.0.0.1:PORT` is written to F once it listens.

TLS: with `--tls-cert FILE --tls-key FILE` every accepted connection is
wrapped in TLS (server side, TLS 1.2 or 1.3; `--tls-max-version 1.2` caps it)
before anything else happens on it. A failed handshake just closes the
connection. The echo then includes "tls": {"sni": <the client's SNI or null>,
"version": "TLSv1.3", "client_cn": <the CN of the client's certificate, or
null>}; the key is absent on plain connections. `--tls-client-ca FILE` asks
every client for a certificate signed by that CA and refuses the handshake
without one (mutual TLS).

Modes (whole server): `normal`; `close` (read the request head, then close
without answering); `hang` (read the request head, never answer).

Endpoints (mode normal). Every response carries X-Upstream-Name,
X-Upstream-Conn-Id and X-Upstream-Conn-Req.
  /status/<code>        answer <code>; no body for HEAD, 1xx, 204, 304
  /delay/<ms>           sleep, then echo
  /bytes/<n>            Content-Length body of n pattern bytes, streamed
  /chunked/<n>          chunked body of n pattern bytes (?chunk=SIZE, ?trailer=1)
  /stream-upload        {"body_len", "body_sha256"} of the streamed request body
  /ws                   WebSocket echo (text, binary, fragmented, ping, close)
  /close                read the request, close without answering
  /hang                 read the request, never answer
  /garbage              answer bytes that are not HTTP, then close
  /truncate/<n>         announce n bytes, send n/2, close
  /eof/<n>              n pattern bytes delimited by closing the connection
  /payload              a body the test chooses: ?text= (percent-decoded bytes), else a
                        JSON object {"size":N,"pad":"xx.."} of exactly ?size=N bytes
                        (default 64); ?ct= Content-Type (default application/json, empty:
                        none), ?status= (default 200), framed by ?te=chunked (chunks of
                        ?chunk=SIZE, default 8192) or ?te=eof (close), else Content-Length
  /gate/<token>         send the head and the first half of the body
                        (?size=N, ?te=chunked), wait until /__open/<token>, send the rest
  /count/<token>        count the request under token; ?action=close|hang|<status>
  /__open/<token>       set event token
  /__wait/<token>       wait (?timeout=S, default 10) for event token: 200, or 504
  /__counter/<token>    {"count": n}
  /__stats              {"connections": n, "requests": n}
  anything else         echo (JSON: method, target, version, headers as a list,
                        body_len, body_sha256, chunked, trailers, conn_id, conn_req)
Query parameters understood on every echo-like endpoint:
  resp_header=Name:Value  add a response header (repeatable)
  close=1                 answer with Connection: close and close
  idle_close_ms=N         after answering, close if no new request within N ms
  body_delay_ms=N         wait N ms before reading the request body
  notify=TOKEN            set event TOKEN when the first body byte arrives
"""

import argparse
import base64
import hashlib
import itertools
import json
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

MAX_HEAD = 256 * 1024
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Deterministic body pattern: byte i of every generated body is i % 251.
_PATTERN_PERIOD = 251
_PATTERN_BLOCK = bytes(i % _PATTERN_PERIOD for i in range(_PATTERN_PERIOD * 1024))


def pattern_chunks(n, size=65536):
    """Yields the first n pattern bytes in pieces of at most `size`."""
    off = 0
    block = _PATTERN_BLOCK
    while off < n:
        start = off % _PATTERN_PERIOD
        take = min(size, n - off, len(block) - start)
        yield block[start : start + take]
        off += take


def pattern_bytes(n):
    return b"".join(pattern_chunks(n))


def pattern_sha256(n):
    h = hashlib.sha256()
    for piece in pattern_chunks(n, 1 << 20):
        h.update(piece)
    return h.hexdigest()


class PeerClosed(Exception):
    pass


class BadRequest(Exception):
    pass


class Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            raise PeerClosed()
        self.buf += data

    def readline(self, limit=MAX_HEAD):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            self._fill()

    def read_some(self, maxn):
        if not self.buf:
            self._fill()
        n = min(maxn, len(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def has_buffered(self):
        return bool(self.buf)


class Request:
    def __init__(self):
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers = []  # [(name, value)] as received
        self.path = ""
        self.query = {}
        self.body_len = 0
        self.body_sha = hashlib.sha256()
        self.chunked = False
        self.trailers = []
        self.body_consumed = False

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def q(self, key, default=None):
        v = self.query.get(key)
        return v[-1] if v else default


def tls_server_context(cert, key, max_version=None, client_ca=None):
    """A server-side context; the SNI each handshake saw goes to _sni.name
    (the callback runs in the thread that does the handshake). With
    client_ca, a client certificate signed by it is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED

    def on_sni(sslobj, server_name, context):
        _sni.name = server_name
        return None

    ctx.sni_callback = on_sni
    return ctx


_sni = threading.local()


class Server:
    def __init__(self, host, port, name, mode, tls_ctx=None):
        self.name = name
        self.mode = mode
        self.tls_ctx = tls_ctx
        self.tls_info = {}  # conn_id -> {"sni", "version"} while the connection lives
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(1024)
        self.lock = threading.Lock()
        self.next_conn = 0
        self.total_requests = 0
        self.events = {}
        self.counters = {}

    def address(self):
        host, port = self.lsock.getsockname()[:2]
        return "%s:%d" % (host, port)

    def event(self, token):
        with self.lock:
            ev = self.events.get(token)
            if ev is None:
                ev = self.events[token] = threading.Event()
            return ev

    def serve_forever(self):
        while True:
            try:
                sock, peer = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.next_conn += 1
                conn_id = self.next_conn
            t = threading.Thread(target=self.handle_conn, args=(sock, peer, conn_id), daemon=True)
            t.start()

    # ---------------------------------------------------------------- connection

    def handle_conn(self, sock, peer, conn_id):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_ctx is not None:
            _sni.name = None
            try:
                sock = self.tls_ctx.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as e:
                print("conn %d: TLS handshake failed: %s" % (conn_id, e), flush=True)
                sock.close()
                return
            with self.lock:
                peer_cert = sock.getpeercert() or {}
                cn = [v for rdn in peer_cert.get("subject", ()) for k, v in rdn
                      if k == "commonName"]
                self.tls_info[conn_id] = {"sni": _sni.name, "version": sock.version(),
                                          "client_cn": cn[0] if cn else None}
        reader = Reader(sock)
        conn_req = 0
        try:
            while True:
                req = self.read_head(reader)
                conn_req += 1
                if not req.path.startswith("/__"):
                    with self.lock:
                        self.total_requests += 1
                if self.mode == "close":
                    return
                if self.mode == "hang":
                    self.hang(sock)
                    return
                keep = self.dispatch(sock, reader, req, peer, conn_id, conn_req)
                if not keep:
                    return
                idle_ms = req.q("idle_close_ms")
                pending = self.tls_ctx is not None and sock.pending()
                if idle_ms is not None and not reader.has_buffered() and not pending:
                    r, _, _ = select.select([sock], [], [], int(idle_ms) / 1000.0)
                    if not r:
                        return
        except (PeerClosed, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return
        except BadRequest as e:
            try:
                self.send_simple(sock, 400, {"error": str(e)}, close=True)
            except OSError:
                pass
        finally:
            with self.lock:
                self.tls_info.pop(conn_id, None)
            try:
                sock.close()
            except OSError:
                pass

    def hang(self, sock):
        # Never answer: wait for the peer to go away.
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def read_head(self, reader):
        line = reader.readline()
        while line in (b"\r\n", b"\n"):
            line = reader.readline()
        parts = line.rstrip(b"\r\n").decode("latin-1").split(" ")
        if len(parts) != 3:
            raise BadRequest("bad request line %r" % line)
        req = Request()
        req.method, req.target, req.version = parts
        total = len(line)
        while True:
            h = reader.readline()
            total += len(h)
            if total > MAX_HEAD:
                raise BadRequest("head too large")
            if h in (b"\r\n", b"\n"):
                break
            text = h.rstrip(b"\r\n").decode("latin-1")
            if ":" not in text:
                raise BadRequest("bad header line %r" % text)
            k, v = text.split(":", 1)
            req.headers.append((k, v.strip(" \t")))
        split = urllib.parse.urlsplit(req.target)
        req.path = split.path if req.target.startswith("/") else req.target
        req.query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        return req

    # ---------------------------------------------------------------- bodies

    def body_pieces(self, sock, reader, req):
        """Yields the request body in pieces (Content-Length or chunked)."""
        if req.body_consumed:
            return
        req.body_consumed = True
        te = ",".join(req.header_all("transfer-encoding")).lower()
        expect = (req.header("expect") or "").lower()
        if expect == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in te:
            req.chunked = True
            while True:
                line = reader.readline(4096).rstrip(b"\r\n")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:
                        t = reader.readline()
                        if t in (b"\r\n", b"\n"):
                            return
                        k, _, v = t.rstrip(b"\r\n").decode("latin-1").partition(":")
                        req.trailers.append((k, v.strip()))
                left = size
                while left:
                    piece = reader.read_some(min(left, 262144))
                    left -= len(piece)
                    yield piece
                if reader.read_exact(2) != b"\r\n":
                    raise BadRequest("chunk not followed by CRLF")
        else:
            cl = req.header("content-length")
            left = int(cl) if cl else 0
            while left:
                piece = reader.read_some(min(left, 262144))
                left -= len(piece)
                yield piece

    def consume_body(self, sock, reader, req):
        delay = req.q("body_delay_ms")
        if delay:
            time.sleep(int(delay) / 1000.0)
        notify = req.q("notify")
        first = True
        for piece in self.body_pieces(sock, reader, req):
            if first and notify and piece:
                self.event(notify).set()
                first = False
            req.body_len += len(piece)
            req.body_sha.update(piece)

    # ---------------------------------------------------------------- responses

    def base_headers(self, req, conn_id, conn_req):
        hs = [
            ("X-Upstream-Name", self.name),
            ("X-Upstream-Conn-Id", str(conn_id)),
            ("X-Upstream-Conn-Req", str(conn_req)),
        ]
        for rh in req.query.get("resp_header", []):
            k, _, v = rh.partition(":")
            hs.append((k.strip(), v.strip()))
        if req.q("close") == "1":
            hs.append(("Connection", "close"))
        return hs

    @staticmethod
    def head_bytes(status, headers, reason=None):
        reason = reason or REASONS.get(status, "Unknown")
        out = ["HTTP/1.1 %d %s\r\n" % (status, reason)]
        for k, v in headers:
            out.append("%s: %s\r\n" % (k, v))
        out.append("\r\n")
        return "".join(out).encode("latin-1")

    def send_simple(self, sock, status, obj, close=False, extra=()):
        body = json.dumps(obj).encode()
        hs = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        hs.extend(extra)
        if close:
            hs.append(("Connection", "close"))
        sock.sendall(self.head_bytes(status, hs) + body)

    def echo_obj(self, req, peer, conn_id, conn_req):
        obj = {
            "server": self.name,
            "conn_id": conn_id,
            "conn_req": conn_req,
            "peer": "%s:%d" % peer[:2],
            "method": req.method,
            "target": req.target,
            "path": req.target,
            "version": req.version,
            "headers": [[k, v] for k, v in req.headers],
            "body_len": req.body_len,
            "body_sha256": req.body_sha.hexdigest(),
            "chunked": req.chunked,
            "trailers": [[k, v] for k, v in req.trailers],
        }
        if self.tls_ctx is not None:
            with self.lock:
                obj["tls"] = dict(self.tls_info[conn_id])
        return obj

    def send_json(self, sock, req, status, obj, conn_id, conn_req, extra=()):
        body = json.dumps(obj).encode()
        hs = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        hs.extend(self.base_headers(req, conn_id, conn_req))
        hs.extend(extra)
        data = self.head_bytes(status, hs)
        if req.method != "HEAD":
            data += body
        sock.sendall(data)

    def keep_alive(self, req):
        if req.q("close") == "1":
            return False
        conn = ",".join(req.header_all("connection")).lower()
        if req.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    # ---------------------------------------------------------------- routing

    def dispatch(self, sock, reader, req, peer, conn_id, conn_req):
        path = req.path
        seg = path.split("/")
        head = seg[1] if len(seg) > 1 else ""
        arg = seg[2] if len(seg) > 2 else ""

        if head == "close":
            self.consume_body(sock, reader, req)
            return False
        if head == "hang":
            self.hang(sock)
            return False
        if head == "garbage":
            self.consume_body(sock, reader, req)
            sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
            return False
        if head == "ws":
            return self.websocket(sock, reader, req, conn_id, conn_req)
        if head == "__open":
            self.event(arg).set()
            self.send_json(sock, req, 200, {"opened": arg}, conn_id, conn_req)
            return self.keep_alive(req)
        if head == "__wait":
            ok = self.event(arg).wait(float(req.q("timeout", "10")))
            self.send_json(sock, req, 200 if ok else 504, {"set": ok}, conn_id, conn_req)
            return self.keep_alive(req)
        if head == "__counter":
            with self.lock:
                n = self.counters.get(arg, 0)
            self.send_json(sock, req, 200, {"count": n}, conn_id, conn_req)
            return self.keep_alive(req)
        if head == "__stats":
            with self.lock:
                st = {"connections": self.next_conn, "requests": self.total_requests}
            self.send_json(sock, req, 200, st, conn_id, conn_req)
            return self.keep_alive(req)

        self.consume_body(sock, reader, req)

        if head == "count":
            with self.lock:
                self.counters[arg] = self.counters.get(arg, 0) + 1
            action = req.q("action", "200")
            if action == "close":
                return False
            if action == "hang":
                self.hang(sock)
                return False
            status = int(action)
            self.send_json(sock, req, status, {"count_token": arg}, conn_id, conn_req)
            return self.keep_alive(req)
        if head == "status":
            return self.status(sock, req, int(arg), conn_id, conn_req)
        if head == "delay":
            time.sleep(int(arg) / 1000.0)
        if head == "bytes":
            return self.send_bytes(sock, req, int(arg), conn_id, conn_req)
        if head == "chunked":
            return self.send_chunked(sock, req, int(arg), conn_id, conn_req)
        if head == "truncate":
            n = int(arg)
            hs = [("Content-Length", str(n))] + self.base_headers(req, conn_id, conn_req)
            sock.sendall(self.head_bytes(200, hs) + pattern_bytes(n // 2))
            return False
        if head == "gate":
            return self.gate(sock, req, arg, conn_id, conn_req)
        if head == "eof":
            hs = [("Content-Type", "application/octet-stream"), ("Connection", "close")]
            sock.sendall(self.head_bytes(200, hs + self.base_headers(req, conn_id, conn_req)))
            for piece in pattern_chunks(int(arg)):
                sock.sendall(piece)
            return False
        if head == "payload":
            return self.payload(sock, req, conn_id, conn_req)
        if head == "stream-upload":
            obj = {"body_len": req.body_len, "body_sha256": req.body_sha.hexdigest(),
                   "chunked": req.chunked, "conn_id": conn_id}
            self.send_json(sock, req, 200, obj, conn_id, conn_req)
            return self.keep_alive(req)

        self.send_json(sock, req, 200, self.echo_obj(req, peer, conn_id, conn_req),
                       conn_id, conn_req)
        return self.keep_alive(req)

    def status(self, sock, req, code, conn_id, conn_req):
        hs = self.base_headers(req, conn_id, conn_req)
        if code in (204, 304) or 100 <= code < 200:
            if code == 304:
                hs.append(("ETag", '"sluice-test"'))
            sock.sendall(self.head_bytes(code, hs))
            return self.keep_alive(req)
        body = json.dumps({"status": code}).encode()
        hs = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + hs
        data = self.head_bytes(code, hs)
        if req.method != "HEAD":
            data += body
        sock.sendall(data)
        return self.keep_alive(req)

    def payload(self, sock, req, conn_id, conn_req):
        query = urllib.parse.urlsplit(req.target).query
        text = urllib.parse.parse_qs(query, keep_blank_values=True, encoding="latin-1").get("text")
        if text is not None:
            body = text[-1].encode("latin-1")
            total, pieces = len(body), [body]
        else:
            total = int(req.q("size", "64"))
            head = b'{"size":%d,"pad":"' % total
            pad = max(0, total - len(head) - 2)
            total = len(head) + pad + 2
            pieces = itertools.chain([head], (b"x" * min(65536, pad - off)
                                              for off in range(0, pad, 65536)), [b'"}'])
        status = int(req.q("status", "200"))
        te = req.q("te", "")
        ct = req.q("ct", "application/json")
        hs = [("Content-Type", ct)] if ct else []
        if status in (204, 304):
            pass
        elif te == "chunked":
            hs.append(("Transfer-Encoding", "chunked"))
        elif te == "eof":
            hs.append(("Connection", "close"))
        else:
            hs.append(("Content-Length", str(total)))
        hs += self.base_headers(req, conn_id, conn_req)
        sock.sendall(self.head_bytes(status, hs))
        if req.method == "HEAD" or status in (204, 304):
            return te != "eof" and self.keep_alive(req)
        size = int(req.q("chunk", "8192"))
        for piece in pieces:
            if te != "chunked":
                sock.sendall(piece)
                continue
            for off in range(0, len(piece), size):
                part = piece[off:off + size]
                sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
        if te == "chunked":
            sock.sendall(b"0\r\n\r\n")
        return te != "eof" and self.keep_alive(req)

    def send_bytes(self, sock, req, n, conn_id, conn_req):
        hs = [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))]
        hs += self.base_headers(req, conn_id, conn_req)
        sock.sendall(self.head_bytes(200, hs))
        if req.method != "HEAD":
            for piece in pattern_chunks(n, int(req.q("chunk", "262144"))):
                sock.sendall(piece)
        return self.keep_alive(req)

    def send_chunked(self, sock, req, n, conn_id, conn_req):
        hs = [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")]
        trailer = req.q("trailer") == "1"
        if trailer:
            hs.append(("Trailer", "X-Checksum"))
        hs += self.base_headers(req, conn_id, conn_req)
        sock.sendall(self.head_bytes(200, hs))
        if req.method == "HEAD":
            return self.keep_alive(req)
        for piece in pattern_chunks(n, int(req.q("chunk", "8192"))):
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        if trailer:
            sock.sendall(b"0\r\nX-Checksum: " + pattern_sha256(n).encode() + b"\r\n\r\n")
        else:
            sock.sendall(b"0\r\n\r\n")
        return self.keep_alive(req)

    def gate(self, sock, req, token, conn_id, conn_req):
        size = int(req.q("size", "65536"))
        chunked = req.q("te") == "chunked"
        first = pattern_bytes(size // 2)
        rest = pattern_bytes(size)[size // 2 :]
        hs = [("Content-Type", "application/octet-stream")]
        hs.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(size)))
        hs += self.base_headers(req, conn_id, conn_req)

        def frame(b):
            return (b"%x\r\n" % len(b) + b + b"\r\n") if chunked else b

        sock.sendall(self.head_bytes(200, hs) + frame(first))
        self.event("gate-sent-" + token).set()
        if not self.event(token).wait(60):
            return False
        sock.sendall(frame(rest) + (b"0\r\n\r\n" if chunked else b""))
        return self.keep_alive(req)

    # ---------------------------------------------------------------- websocket

    def websocket(self, sock, reader, req, conn_id, conn_req):
        key = req.header("sec-websocket-key")
        upgrade = (req.header("upgrade") or "").lower()
        if upgrade != "websocket" or not key:
            self.send_json(sock, req, 400, {"error": "not a websocket handshake",
                                            "headers": req.headers}, conn_id, conn_req)
            return self.keep_alive(req)
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        hs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Accept", accept)]
        proto = req.header("sec-websocket-protocol")
        if proto:
            hs.append(("Sec-WebSocket-Protocol", proto.split(",")[0].strip()))
        hs += self.base_headers(req, conn_id, conn_req)
        sock.sendall(self.head_bytes(101, hs, "Switching Protocols"))
        message = bytearray()
        msg_op = None
        while True:
            fin, op, payload = ws_read_frame(reader)
            if op == 0x8:
                sock.sendall(ws_frame(0x8, payload[:2] if len(payload) >= 2 else b""))
                return False
            if op == 0x9:
                sock.sendall(ws_frame(0xA, payload))
                continue
            if op == 0xA:
                continue
            if op in (0x1, 0x2):
                msg_op = op
                message = bytearray(payload)
            elif op == 0x0:
                message += payload
            if fin and msg_op is not None:
                sock.sendall(ws_frame(msg_op, bytes(message)))
                msg_op = None


def ws_read_frame(reader, expect_masked=True):
    """Reads one frame; returns (fin, opcode, unmasked payload)."""
    b0, b1 = reader.read_exact(2)
    fin = bool(b0 & 0x80)
    op = b0 & 0x0F
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.read_exact(8))[0]
    if n > 64 * 1024 * 1024:
        raise BadRequest("frame too large")
    mask = reader.read_exact(4) if masked else None
    payload = reader.read_exact(n)
    if mask:
        payload = ws_mask(payload, mask)
    return fin, op, payload


def ws_mask(data, mask):
    if not data:
        return data
    n = len(data)
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


def ws_frame(op, payload, fin=True, mask=None):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        return head + mask + ws_mask(payload, mask)
    return head + payload


REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
    418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--addr-file")
    ap.add_argument("--name", default="upstream")
    ap.add_argument("--mode", choices=["normal", "close", "hang"], default="normal")
    ap.add_argument("--tls-cert", help="serve TLS with this certificate (PEM, chain after it)")
    ap.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    ap.add_argument("--tls-max-version", choices=["1.2", "1.3"])
    ap.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    tls_ctx = None
    if args.tls_cert:
        tls_ctx = tls_server_context(args.tls_cert, args.tls_key, args.tls_max_version,
                                     args.tls_client_ca)
    srv = Server(args.host, args.port, args.name, args.mode, tls_ctx)
    addr = srv.address()
    if args.addr_file:
        tmp = args.addr_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(addr + "\n")
        os.rename(tmp, args.addr_file)
    else:
        print(addr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
