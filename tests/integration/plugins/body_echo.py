"""An upstream that echoes request bodies, for the plugin tests that change
them (key-auth's hide_credentials with key_in_body, request-transformer's
body operations).

The shared echo upstream (tests/integration/upstream.py) reports a body's
length and SHA-256 only; these tests need to read what arrived. This one runs
in a thread of the test process: HTTP/1.1 with keep-alive, Content-Length or
chunked request bodies, and a JSON answer:

    {"method", "target", "headers": [[name, value], ...], "chunked",
     "body": the body as latin-1 text (every byte one character)}
"""

import json
import socketserver
import threading


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def _head(self):
        line = self.rfile.readline(65536)
        if not line:
            return None
        method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers = []
        while True:
            h = self.rfile.readline(65536).decode("latin-1").rstrip("\r\n")
            if not h:
                break
            k, _, v = h.partition(":")
            headers.append([k, v.strip()])
        return method, target, headers

    def _body(self, headers):
        te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out), True
                out += self.rfile.read(size)
                self.rfile.readline()
        cl = [v for k, v in headers if k.lower() == "content-length"]
        return (self.rfile.read(int(cl[0])) if cl else b""), False

    def handle(self):
        while True:
            try:
                head = self._head()
            except (OSError, ValueError):
                return
            if head is None:
                return
            method, target, headers = head
            body, chunked = self._body(headers)
            out = json.dumps({"method": method, "target": target, "headers": headers,
                              "chunked": chunked, "body": body.decode("latin-1")}).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(out) + out)
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class BodyEcho:
    def __init__(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.host, self.port = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def echoed(resp):
    """The echo of a proxied request: (the JSON object, the body as bytes)."""
    assert resp.status == 200, resp
    e = resp.json()
    return e, e["body"].encode("latin-1")


def header(e, name):
    vals = [v for k, v in e["headers"] if k.lower() == name.lower()]
    assert len(vals) <= 1, vals
    return vals[0] if vals else None
