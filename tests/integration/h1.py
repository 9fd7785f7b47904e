"""A small raw-socket HTTP/1.1 client for the integration tests.

Everything here is deliberately literal: requests are built byte by byte (so
tests can send malformed ones), responses are parsed strictly enough to notice
a proxy that frames a body wrongly, and every socket operation has a timeout so
that a misbehaving server fails a test instead of hanging the suite.
"""

import base64
import hashlib
import json
import os
import select
import socket
import struct
import time

DEFAULT_TIMEOUT = 10.0


class ProtocolError(Exception):
    pass


class Fields:
    """Reading a response's `headers` ([(name, value)]) and `body` (bytes or
    bytearray); HTTP/2 responses (h2client.py) share it."""

    def header(self, name):
        """The first value of a header (case-insensitive), or None."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has(self, name):
        return self.header(name) is not None

    def json(self):
        return json.loads(bytes(self.body).decode("utf-8"))


class Response(Fields):
    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers = []  # [(name, value)] in order, case preserved
        self.body = b""
        self.body_len = 0
        self.chunked = False
        self.chunk_sizes = []
        self.trailers = []
        self.interim = []  # 1xx responses seen before this one: [(status, headers)]
        self.raw_head = b""


    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (
            self.status, self.reason, self.headers, self.body[:300])


def build_request(method, target, headers=None, body=None, host="sluice.test",
                  version="HTTP/1.1", content_length=True):
    """Bytes of a request. headers: list of (name, value) or dict. A Host header
    is added first unless host is None or headers already has one; a
    Content-Length is added for a bytes body unless headers has one or a
    Transfer-Encoding."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in hs}
    out = ["%s %s %s\r\n" % (method, target, version)]
    if host is not None and "host" not in names:
        out.append("Host: %s\r\n" % host)
    for k, v in hs:
        out.append("%s: %s\r\n" % (k, v))
    if (body is not None and content_length and "content-length" not in names
            and "transfer-encoding" not in names):
        out.append("Content-Length: %d\r\n" % len(body))
    out.append("\r\n")
    data = "".join(out).encode("latin-1")
    if body is not None:
        data += body
    return data


def chunked_body(pieces, trailers=None, ext=False):
    out = bytearray()
    for p in pieces:
        out += b"%x" % len(p)
        if ext:
            out += b";name=value"
        out += b"\r\n" + p + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers or []:
        out += ("%s: %s\r\n" % (k, v)).encode()
    out += b"\r\n"
    return bytes(out)


class Closing:
    """A client connection owning `sock`: closed by close() or at the end of
    a with block (HTTP/2's too, h2client.py)."""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Conn(Closing):
    """One client connection with a read buffer. With ssl_context the
    connection speaks TLS (the handshake happens here, sending
    server_hostname as SNI when it is given); self.sock is then an
    ssl.SSLSocket."""

    def __init__(self, addr, timeout=DEFAULT_TIMEOUT, ssl_context=None, server_hostname=None):
        self.addr = addr
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = ssl_context is not None
        if self.tls:
            try:
                self.sock = ssl_context.wrap_socket(self.sock, server_hostname=server_hostname)
            except BaseException:
                self.sock.close()
                raise
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def settimeout(self, t):
        self.timeout = t
        self.sock.settimeout(t)

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            raise ProtocolError("connection closed by peer")
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise ProtocolError("connection closed by peer (buffered %r)" % bytes(self.buf[:200]))
        self.buf += data

    def readline(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > limit:
                raise ProtocolError("line too long")
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_some(self, maxn):
        if not self.buf:
            self._fill()
        n = min(maxn, len(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_head(self):
        """Reads one response head (status line and headers)."""
        resp = Response()
        line = self.readline()
        raw = bytearray(line)
        parts = line.rstrip(b"\r\n").decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ProtocolError("bad status line %r" % line)
        resp.version = parts[0]
        resp.status = int(parts[1])
        resp.reason = parts[2] if len(parts) > 2 else ""
        while True:
            h = self.readline()
            raw += h
            if h in (b"\r\n", b"\n"):
                break
            text = h.rstrip(b"\r\n").decode("latin-1")
            k, sep, v = text.partition(":")
            if not sep:
                raise ProtocolError("bad header line %r" % text)
            resp.headers.append((k, v.strip(" \t")))
        resp.raw_head = bytes(raw)
        return resp

    def read_response(self, method="GET", sink=None, skip_interim=True):
        """Reads a complete response. Interim 1xx responses (except 101) are
        collected in resp.interim. With sink, body bytes go to sink(bytes) and
        resp.body stays empty (resp.body_len counts them)."""
        interim = []
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101 and skip_interim:
                interim.append((resp.status, resp.headers))
                continue
            break
        resp.interim = interim
        self.read_body(resp, method, sink)
        return resp

    def read_body(self, resp, method="GET", sink=None):
        body = bytearray()

        def put(b):
            resp.body_len += len(b)
            if sink is not None:
                sink(b)
            else:
                body.extend(b)

        te = ",".join(resp.header_all("transfer-encoding")).lower()
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            pass
        elif "chunked" in te:
            resp.chunked = True
            while True:
                line = self.readline(65536).rstrip(b"\r\n")
                size = int(line.split(b";", 1)[0].strip(), 16)
                resp.chunk_sizes.append(size)
                if size == 0:
                    while True:
                        t = self.readline()
                        if t in (b"\r\n", b"\n"):
                            break
                        k, _, v = t.rstrip(b"\r\n").decode("latin-1").partition(":")
                        resp.trailers.append((k, v.strip()))
                    break
                left = size
                while left:
                    piece = self.read_some(min(left, 262144))
                    left -= len(piece)
                    put(piece)
                crlf = self.read_exact(2)
                if crlf != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF: %r" % crlf)
        elif resp.has("content-length"):
            left = int(resp.header("content-length"))
            while left:
                piece = self.read_some(min(left, 262144))
                left -= len(piece)
                put(piece)
        else:
            # Delimited by close.
            while True:
                try:
                    piece = self.read_some(262144)
                except ProtocolError:
                    break
                put(piece)
        resp.body = bytes(body)
        return resp

    def request(self, method, target, headers=None, body=None, host="sluice.test", **kw):
        self.send(build_request(method, target, headers, body, host=host, **kw))
        return self.read_response(method)

    def wait_closed(self, timeout=5.0):
        """Waits for the peer to close. Returns (closed, extra_bytes): closed is
        True on EOF or reset within timeout; extra_bytes is anything received
        meanwhile (including still-buffered bytes)."""
        extra = bytearray(self.buf)
        self.buf.clear()
        if self.eof:
            return True, bytes(extra)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, bytes(extra)
            # TLS: decrypted bytes may wait in the SSL object, unseen by select.
            if not (self.tls and self.sock.pending()):
                r, _, _ = select.select([self.sock], [], [], left)
                if not r:
                    return False, bytes(extra)
            if self.tls:
                # A record without application data (a TLS 1.3 session
                # ticket) makes the socket readable but recv would wait.
                self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, OSError):
                self.eof = True
                return True, bytes(extra)
            finally:
                if self.tls:
                    self.sock.settimeout(self.timeout)
            if not data:
                self.eof = True
                return True, bytes(extra)
            extra += data

    def is_open(self, wait=0.2):
        """True when the peer has not closed within `wait` seconds (no data either)."""
        closed, extra = self.wait_closed(wait)
        if extra:
            self.buf[:0] = extra
        return not closed


def request(addr, method, target, headers=None, body=None, host="sluice.test",
            timeout=DEFAULT_TIMEOUT, ssl_context=None, server_hostname=None, **kw):
    """One request on a new connection (over TLS with ssl_context)."""
    with Conn(addr, timeout, ssl_context, server_hostname) as c:
        return c.request(method, target, headers, body, host=host, **kw)


def get(addr, target, headers=None, host="sluice.test", **kw):
    return request(addr, "GET", target, headers, host=host, **kw)


# ------------------------------------------------------------------ websocket


def ws_frame(op, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    key = os.urandom(4) if mask else b""
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        return head + key + ws_apply_mask(payload, key)
    return head + payload


def ws_apply_mask(data, key):
    if not data:
        return data
    n = len(data)
    m = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


def ws_read_frame(conn):
    """Reads one server frame from a Conn: (fin, opcode, payload, masked)."""
    b0, b1 = conn.read_exact(2)
    fin = bool(b0 & 0x80)
    op = b0 & 0x0F
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", conn.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", conn.read_exact(8))[0]
    key = conn.read_exact(4) if masked else None
    payload = conn.read_exact(n)
    if key:
        payload = ws_apply_mask(payload, key)
    return fin, op, payload, masked


def ws_accept(key):
    return base64.b64encode(
        hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()


def ws_handshake(conn, target="/ws", host="sluice.test", extra=()):
    key = base64.b64encode(os.urandom(16)).decode()
    hs = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
          ("Sec-WebSocket-Version", "13")] + list(extra)
    conn.send(build_request("GET", target, hs, host=host))
    resp = conn.read_head()
    return resp, key
