"""Hostile peers on the cluster protocol. A fake data plane (a TLS client
holding the cluster certificate) sends garbage, oversized, truncated and
out-of-order frames to a real control plane; a fake control plane (a TLS
server holding it) does the same to a real data plane. Each time the
connection must close and the real process must stay healthy."""
import json
import socket
import ssl
import struct
import threading
import time
import uuid

from conftest import wait_until
from .conftest import cluster_addr


# --- a few lines of protobuf encoding (proto/cluster.proto)

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def hello(version="0.1.0", node_id=None):
    body = (field(1, node_id or str(uuid.uuid4())) + field(2, "fake-dp") + field(3, version) +
            field(5, 0) + field(6, "0" * 32))
    return frame(field(1, body))


def ping():
    return frame(field(8, field(1, 0) + field(2, "0" * 32)))


def welcome():
    return frame(field(2, field(1, str(uuid.uuid4())) + field(2, "0.1.0") + field(3, 1000)))


def read_frame(sock, timeout=5):
    sock.settimeout(timeout)
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def closed(sock, timeout=5):
    """True when the peer closes (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def client_ctx(cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def connect(cp, cert):
    host, port = cluster_addr(cp).rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=5)
    s = client_ctx(cert).wrap_socket(raw, server_hostname="kong_clustering")
    s.do_handshake()
    return s


def test_garbage_from_a_data_plane(hybrid_cp, cluster_cert, other_cert):
    cp = hybrid_cp(env={"SLUICE_CLUSTER_MAX_PAYLOAD": "64k"})

    cases = [
        (b"\x00\x00\x00\x05hello", "not a ClusterMessage"),
        (b"\x7f\xff\xff\xff", "larger than cluster_max_payload"),
        (struct.pack(">I", 65537), "larger than cluster_max_payload"),
        (ping(), "before Hello"),
        (hello() + hello(), "second Hello"),
        (frame(b""), "not a ClusterMessage"),
    ]
    for data, log in cases:
        s = connect(cp, cluster_cert)
        s.sendall(data)
        assert closed(s), data[:16]
        s.close()
        wait_until(lambda: log in cp.stderr(), what=log)

    # a truncated frame and a hang-up in the middle of it
    s = connect(cp, cluster_cert)
    s.sendall(struct.pack(">I", 1000) + b"x" * 10)
    s.close()

    # a data plane too new for this control plane is refused with a reason
    s = connect(cp, cluster_cert)
    s.sendall(hello(version="9.0.0"))
    body = read_frame(s)
    assert body is not None and body[0] == (3 << 3 | 2)  # ClusterMessage.refused
    assert b"kong_version_incompatible" in body
    assert closed(s)
    rows = [r for r in cp.get("/clustering/data-planes").json["data"]
            if r["version"] == "9.0.0"]
    assert [r["sync_status"] for r in rows] == ["kong_version_incompatible"]
    assert rows[0]["connected"] is False
    assert "upgrade the control plane first" in rows[0]["last_error"]

    # a client that skips checking the server, with another certificate, is
    # refused by the control plane itself
    try:
        s = connect(cp, other_cert)
        s.sendall(hello())
        assert closed(s)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass
    wait_until(lambda: "does not match cluster_cert" in cp.stderr(), what="pinning refusal")

    # and nothing of this hurt the control plane
    assert cp.proc.poll() is None
    assert cp.get("/status").status == 200
    assert cp.post("/services", {"name": "alive", "host": "a.test"}).status == 201


class FakeControlPlane:
    """A TLS server holding the cluster certificate that plays a script per
    connection: script(conn) is called with each accepted TLS socket."""

    def __init__(self, cert, script):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_verify_locations(str(cert[0]))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            try:
                conn = self.ctx.wrap_socket(raw, server_side=True)
                self.connections += 1
                self.script(self.connections, conn)
            except (OSError, ssl.SSLError):
                pass
            finally:
                raw.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_garbage_from_a_control_plane(sluice_factory, cluster_cert):
    sent = []

    def script(n, conn):
        assert read_frame(conn) is not None  # the data plane's Hello
        attacks = [
            b"\x00\x00\x00\x05hello",
            b"\xff\xff\xff\xff",
            welcome() + frame(field(4, field(1, 1) + field(2, "0" * 32) + field(3, 1 << 40) +
                                    field(4, b"\x28\xb5\x2f\xfd garbage"))),
            welcome() + frame(field(5, field(1, 7) + field(2, 8) + field(5, "x" * 32))),
            welcome() + struct.pack(">I", 100) + b"cut",
            hello(),
        ]
        data = attacks[(n - 1) % len(attacks)]
        sent.append(data)
        conn.sendall(data)
        time.sleep(0.2)

    fake = FakeControlPlane(cluster_cert, script)
    try:
        dp = sluice_factory(None, conf={
            "role": "data_plane", "cluster_control_plane": "127.0.0.1:%d" % fake.port,
            "cluster_cert": str(cluster_cert[0]), "cluster_cert_key": str(cluster_cert[1]),
            "cluster_ping_interval": "1s"}, wait_ready=False)
        dp.wait_addrs()
        wait_until(lambda: fake.connections >= 7, timeout=30, what="the data plane reconnects")
        err = dp.stderr()
        assert "not a ClusterMessage" in err
        assert "larger than cluster_max_payload" in err
        assert "snapshot version 1 not applied" in err
        assert "delta 7 -> 8 not applied" in err
        assert "sent Hello before Welcome" in err
        # nothing applied, still alive and answering
        assert dp.status_get("/status/ready").status == 503
        assert dp.status_get("/status").status == 200
        assert dp.get("/").status == 404
        assert not (dp.prefix / "cluster_config.pb").exists()
    finally:
        fake.close()


def test_plugins_reported_by_a_data_plane_become_configurable(hybrid_cp, cluster_cert):
    cp = hybrid_cp()
    assert cp.post("/plugins", {"name": "edge-auth"}).status == 400  # unknown so far
    schema = {"name": "edge-auth", "fields": [{"config": {"type": "record", "fields": [
        {"secret": {"type": "string", "required": True}},
        {"ttl": {"type": "integer", "default": 60}}]}}]}
    info = (field(1, "edge-auth") + field(2, "1.2.0") + field(3, 1100) + field(4, "access") +
            field(5, json.dumps(schema)) + field(6, 1))
    bad = (field(1, "broken") + field(2, "1.0.0") + field(3, 1) + field(5, "{not json") +
           field(6, 1))
    body = (field(1, str(uuid.uuid4())) + field(2, "fake-dp") + field(3, "0.1.0") +
            field(5, 0) + field(6, "0" * 32) + field(7, info) + field(7, bad))
    s = connect(cp, cluster_cert)
    s.sendall(frame(field(1, body)))
    first = read_frame(s)
    assert first is not None and first[0] == (2 << 3 | 2)  # Welcome
    wait_until(lambda: "plugin 'edge-auth' 1.2.0 reported by data plane" in cp.stderr(),
               what="plugin registered")
    assert "reported plugin 'broken' with a bad description" in cp.stderr()
    avail = cp.get("/").json["plugins"]["available_on_server"]
    assert avail["edge-auth"] == {"priority": 1100, "version": "1.2.0"}
    r = cp.post("/plugins", {"name": "edge-auth", "config": {"secret": "s3"}})
    assert r.status == 201, r
    assert r.json["config"] == {"secret": "s3", "ttl": 60}
    r = cp.post("/plugins", {"name": "edge-auth", "instance_name": "two", "config": {}})
    assert r.status == 400
    assert r.json["fields"]["config"]["secret"] == "required field missing"
    s.close()
