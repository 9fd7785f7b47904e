"""A small HTTP/2 client for the integration tests, on the `h2` package.

Plain TCP (prior knowledge, "h2c") or TLS with ALPN; requests on new streams,
any number of them in flight on one connection; responses read whole (status,
headers, body, trailers) with the flow-control windows given back as the body
is read, or not given back at all for a stream that is held (to see what a
server does with a client that stops reading); RST_STREAM sent and received,
GOAWAY received. Every wait has a timeout, so that a misbehaving server fails
a test instead of hanging the suite.

The connection never validates what the server sends (the tests check the
headers themselves, e.g. that no connection-specific header arrives), and
validates what it sends unless told not to (validate=False sends a header
list as given, for requests that are wrong on purpose).

Two departures from h2's defaults: a GOAWAY does not close the connection
object, so that streams below the GOAWAY's last stream id can finish (a
graceful shutdown); and the header names and values are str (latin-1).

Raw-socket helpers at the end (frame, read_frames, goaway_of) are for bytes
h2 would refuse to send or to parse.
"""

import select
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

import h1

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_TIMEOUT = 10.0

ErrorCodes = h2.errors.ErrorCodes
SettingCodes = h2.settings.SettingCodes

# Frame types (RFC 9113 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

# Connection-specific fields (RFC 9113 8.2.2): never in an HTTP/2 message.
CONNECTION_SPECIFIC = ("connection", "keep-alive", "proxy-connection", "transfer-encoding",
                       "upgrade")


class Closed(Exception):
    """The server closed the connection while the client waited for something."""


def tls_context(alpn=("h2", "http/1.1")):
    """A client context that verifies nothing and offers alpn (None: no ALPN)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _s(b):
    return b.decode("latin-1") if isinstance(b, (bytes, bytearray)) else b


def _b(s):
    return s.encode("latin-1") if isinstance(s, str) else s


class Response(h1.Fields):
    """One stream's response as it arrives."""

    def __init__(self, stream_id, method="GET"):
        self.stream_id = stream_id
        self.method = method
        self.status = 0
        self.headers = []  # [(name, value)] as received (str)
        self.interim = []  # 1xx: [(status, headers)]
        self.body = bytearray()  # grows in place: a 32 MB body must not be copied per frame
        self.data_frames = 0  # DATA frames with a payload
        self.trailers = []
        self.ended = False  # END_STREAM received
        self.headers_ended_stream = False  # END_STREAM on the HEADERS (no DATA at all)
        self.reset = None  # the RST_STREAM error code (ErrorCodes or int), if reset
        self.reset_by_peer = None
        self.first_data_at = None  # time.monotonic() of the first body byte
        self.held = False  # flow control not given back while held
        self.unacked = 0  # body bytes not yet given back

    @property
    def done(self):
        return self.ended or self.reset is not None


    def __repr__(self):
        return "<h2 Response stream %d: %d headers=%r body=%r%s>" % (
            self.stream_id, self.status, self.headers, bytes(self.body[:300]),
            "" if self.reset is None else " reset=%r" % (self.reset,))


class _Connection(h2.connection.H2Connection):
    """h2's connection, but a GOAWAY leaves the streams below its last stream
    id free to finish: it is reported (ConnectionTerminated) and no new stream
    may be opened (the test's business), nothing more."""

    def _receive_goaway_frame(self, frame):
        ev = h2.events.ConnectionTerminated()
        ev.error_code = h2.errors._error_code_from_int(frame.error_code)
        ev.last_stream_id = frame.last_stream_id
        ev.additional_data = frame.additional_data or None
        return [], [ev]


class H2Conn(h1.Closing):
    """One HTTP/2 connection.

    addr: (host, port). tls: speak TLS (ctx, else one offering alpn); sni is
    the server name sent. window: the initial stream window the client
    advertises (SETTINGS_INITIAL_WINDOW_SIZE); conn_window: how much to add
    to the connection window at once (0: keep 65535). validate=False sends
    header lists unchecked. auto_ack=False holds every stream's flow control
    until release()."""

    def __init__(self, addr, tls=False, ctx=None, sni=None, alpn=("h2", "http/1.1"),
                 timeout=DEFAULT_TIMEOUT, window=None, conn_window=16 << 20, settings=None,
                 validate=True, auto_ack=True, handshake=True):
        self.addr = addr
        self.timeout = timeout
        self.tls = tls
        self.auto_ack = auto_ack
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.alpn = None
        if tls:
            ctx = ctx or tls_context(alpn)
            try:
                self.sock = ctx.wrap_socket(self.sock, server_hostname=sni)
            except BaseException:
                self.sock.close()
                raise
            self.alpn = self.sock.selected_alpn_protocol()
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=validate,
            normalize_outbound_headers=validate, validate_inbound_headers=False,
            normalize_inbound_headers=False)
        self.h2 = _Connection(config=config)
        initial = {SettingCodes.ENABLE_PUSH: 0, SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                   SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20}
        if window is not None:
            initial[SettingCodes.INITIAL_WINDOW_SIZE] = window
        initial.update(settings or {})
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values=initial)
        self.streams = {}  # stream id -> Response
        self.events = []  # every h2 event, in order
        self.goaways = []  # ConnectionTerminated events
        self.settings_received = False
        self.settings_acked = False
        self.eof = False
        self.h2.initiate_connection()
        if conn_window:
            self.h2.increment_flow_control_window(conn_window)
        self.flush()
        if handshake:
            self.wait_for(lambda: self.settings_received, what="the server's SETTINGS")

    # ------------------------------------------------------------ plumbing

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    @property
    def remote_settings(self):
        return self.h2.remote_settings

    @property
    def goaway(self):
        """The last GOAWAY received (ConnectionTerminated), or None."""
        return self.goaways[-1] if self.goaways else None

    def pump(self, timeout=None):
        """Waits up to timeout for bytes from the server and handles them.
        Returns the new events; sets self.eof when the server closed."""
        if self.eof:
            return []
        timeout = self.timeout if timeout is None else timeout
        if not (self.tls and self.sock.pending()):
            r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not r:
                return []
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, ssl.SSLWantReadError):
            return []
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            return []
        events = self.h2.receive_data(data)
        for ev in events:
            self._handle(ev)
        self.events.extend(events)
        try:
            self.flush()
        except OSError:
            pass
        return events

    def _handle(self, ev):
        resp = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived) and resp:
            resp.headers = [(_s(k), _s(v)) for k, v in ev.headers]
            for k, v in resp.headers:
                if k == ":status":
                    resp.status = int(v)
            resp.headers = [(k, v) for k, v in resp.headers if not k.startswith(":")]
            resp.headers_ended_stream = ev.stream_ended is not None
        elif isinstance(ev, h2.events.InformationalResponseReceived) and resp:
            hs = [(_s(k), _s(v)) for k, v in ev.headers]
            resp.interim.append((int(dict(hs)[":status"]), hs))
        elif isinstance(ev, h2.events.TrailersReceived) and resp:
            resp.trailers = [(_s(k), _s(v)) for k, v in ev.headers]
        elif isinstance(ev, h2.events.DataReceived):
            if resp:
                if ev.data:
                    resp.data_frames += 1
                    if resp.first_data_at is None:
                        resp.first_data_at = time.monotonic()
                resp.body += ev.data
                if resp.held or not self.auto_ack:
                    resp.unacked += ev.flow_controlled_length
                    return
            if ev.flow_controlled_length:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded) and resp:
            resp.ended = True
        elif isinstance(ev, h2.events.StreamReset) and resp:
            resp.reset = ev.error_code
            resp.reset_by_peer = ev.remote_reset
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaways.append(ev)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_received = True
        elif isinstance(ev, h2.events.SettingsAcknowledged):
            self.settings_acked = True

    def wait_for(self, pred, timeout=None, what="condition"):
        """Handles server bytes until pred() is true; AssertionError after
        timeout, Closed if the server closed first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            v = pred()
            if v:
                return v
            if self.eof:
                raise Closed("the server closed the connection while waiting for %s "
                             "(GOAWAY: %r)" % (what, self.goaway))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s" % what)
            self.pump(left)

    def wait_closed(self, timeout=5.0):
        """True when the server closes the connection within timeout (events
        on the way are handled)."""
        try:
            self.wait_for(lambda: False, timeout, "the connection to close")
        except Closed:
            return True
        except AssertionError:
            return False
        return False

    def is_open(self, wait=0.2):
        return not self.wait_closed(wait)

    # ------------------------------------------------------------ requests

    def headers_for(self, method, path, headers=(), authority="sluice.test", scheme=None):
        hs = [(":method", method), (":scheme", scheme or ("https" if self.tls else "http"))]
        if authority is not None:
            hs.append((":authority", authority))
        if path is not None:
            hs.append((":path", path))
        return hs + list(headers)

    def send_headers(self, header_list, end_stream=False, method="GET"):
        """Opens a stream with header_list exactly as given (pseudo-headers
        included); returns its id."""
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = Response(sid, method)
        self.h2.send_headers(sid, [(_b(k), _b(v)) for k, v in header_list],
                             end_stream=end_stream)
        self.flush()
        return sid

    def send_request(self, method, path, headers=(), body=None, authority="sluice.test",
                     scheme=None, end_stream=True, content_length=True):
        """Opens a stream with a request. With body (bytes) a content-length
        is added unless content_length is False or headers have one; with
        end_stream=False the stream stays open for send_body()."""
        hs = self.headers_for(method, path, headers, authority, scheme)
        if body is not None and content_length and \
                not any(k.lower() == "content-length" for k, _ in headers):
            hs.append(("content-length", str(len(body))))
        sid = self.send_headers(hs, end_stream=end_stream and body is None, method=method)
        if body is not None:
            self.send_body(sid, body, end_stream)
        return sid

    def send_body(self, sid, data, end_stream=True, timeout=None):
        """Sends data on stream sid as the flow-control windows allow, waiting
        for WINDOW_UPDATEs (AssertionError if none comes within timeout)."""
        view = memoryview(data)
        while view:
            n = self.try_send(sid, view)
            view = view[n:]
            if view:
                self.wait_for(lambda: self.window(sid) > 0 or self.streams[sid].done, timeout,
                              "a WINDOW_UPDATE on stream %d" % sid)
                if self.streams[sid].done:
                    return
        if end_stream:
            self.end_stream(sid)

    def try_send(self, sid, data):
        """Sends as much of data as the windows allow now; returns how many bytes."""
        sent = 0
        while sent < len(data):
            n = min(self.window(sid), self.h2.max_outbound_frame_size, len(data) - sent)
            if n <= 0:
                break
            self.h2.send_data(sid, bytes(data[sent:sent + n]))
            sent += n
        self.flush()
        return sent

    def window(self, sid):
        try:
            return self.h2.local_flow_control_window(sid)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return 0

    def end_stream(self, sid):
        self.h2.end_stream(sid)
        self.flush()

    def reset(self, sid, code=ErrorCodes.CANCEL):
        self.h2.reset_stream(sid, code)
        self.flush()

    def ping(self, opaque=b"sluice!!"):
        self.h2.ping(opaque)
        self.flush()

    def response(self, sid, timeout=None):
        """Waits for stream sid to end (or be reset); returns its Response."""
        resp = self.streams[sid]
        self.wait_for(lambda: resp.done, timeout, "the response on stream %d" % sid)
        return resp

    def wait_headers(self, sid, timeout=None):
        resp = self.streams[sid]
        self.wait_for(lambda: resp.status or resp.done, timeout,
                      "the response head on stream %d" % sid)
        return resp

    def responses(self, sids, timeout=None):
        resps = [self.streams[s] for s in sids]
        self.wait_for(lambda: all(r.done for r in resps), timeout,
                      "%d responses" % len(resps))
        return resps

    def request(self, method, path, headers=(), body=None, authority="sluice.test",
                timeout=None, **kw):
        sid = self.send_request(method, path, headers, body, authority, **kw)
        return self.response(sid, timeout)

    def get(self, path, headers=(), authority="sluice.test", **kw):
        return self.request("GET", path, headers, None, authority, **kw)

    # ------------------------------------------------------------ flow control

    def hold(self, sid):
        """Stops giving flow control back for stream sid (a slow reader)."""
        self.streams[sid].held = True

    def release(self, sid):
        """Gives back what a held stream received, and whatever comes later."""
        resp = self.streams[sid]
        resp.held = False
        if resp.unacked:
            try:
                self.h2.acknowledge_received_data(resp.unacked, sid)
            except h2.exceptions.StreamClosedError:
                pass
            resp.unacked = 0
            self.flush()


def request(addr, method, path, headers=(), body=None, authority="sluice.test", **kw):
    """One request on a new connection."""
    conn_kw = {k: kw.pop(k) for k in ("tls", "ctx", "sni", "alpn", "timeout") if k in kw}
    with H2Conn(addr, **conn_kw) as c:
        return c.request(method, path, headers, body, authority, **kw)


def get(addr, path, headers=(), authority="sluice.test", **kw):
    return request(addr, "GET", path, headers, None, authority, **kw)


# ------------------------------------------------------------ raw frames


def frame(ftype, flags, stream_id, payload=b""):
    return struct.pack("!I", len(payload))[1:] + struct.pack("!BBI", ftype, flags,
                                                             stream_id & 0x7FFFFFFF) + payload


def settings_frame(settings=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack("!HI", k, v) for k, v in settings))


def parse_frames(data):
    """[(type, flags, stream id, payload)] of the whole frames in data, and
    the bytes left over."""
    out = []
    off = 0
    while len(data) - off >= 9:
        n = int.from_bytes(data[off:off + 3], "big")
        if len(data) - off < 9 + n:
            break
        ftype, flags, sid = struct.unpack("!BBI", data[off + 3:off + 9])
        out.append((ftype, flags, sid & 0x7FFFFFFF, bytes(data[off + 9:off + 9 + n])))
        off += 9 + n
    return out, bytes(data[off:])


def read_frames(sock, timeout=5.0):
    """Reads from sock until the server closes or timeout passes; returns
    (frames, closed, leftover bytes)."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    closed = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            break
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, OSError):
            data = b""
        if not data:
            closed = True
            break
        buf += data
    frames, rest = parse_frames(bytes(buf))
    return frames, closed, rest


def goaway_of(frames):
    """(last stream id, error code, debug data) of the first GOAWAY in frames, or None."""
    for ftype, _, _, payload in frames:
        if ftype == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack("!II", payload[:8])
            return last & 0x7FFFFFFF, code, payload[8:]
    return None


def connect(dp, transport, **kw):
    """An HTTP/2 connection to a data plane whose fixture set tls_h2 (an
    ssl http2 listener) and plain_h2 (a plain http2 one): over TLS with ALPN
    h2 when transport is "tls", else in clear with prior knowledge."""
    if transport == "tls":
        c = H2Conn(dp.tls_h2, tls=True, sni="sluice.test", **kw)
        assert c.alpn == "h2", "ALPN chose %r on an ssl http2 listener" % c.alpn
        return c
    return H2Conn(dp.plain_h2, **kw)
