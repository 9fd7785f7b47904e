"""The Admin API over TLS: admin_listen entries with the ssl flag, served
with admin_ssl_cert / admin_ssl_cert_key (TLS 1.2 and later)."""

import http.client
import json
import socket
import ssl
import subprocess
import time

import pytest

from .conftest import CP_BIN, cp_env, run_cp


@pytest.fixture
def pem_files(tmp_path, pki):
    cert, key = tmp_path / "admin.crt", tmp_path / "admin.key"
    cert.write_text(pki["cert"])
    key.write_text(pki["key"])
    return cert, key


def tls_env(cert, key, extra=None):
    env = {"SLUICE_ADMIN_LISTEN": "127.0.0.1:0, 127.0.0.1:0 http2 ssl reuseport backlog=128",
           "SLUICE_ADMIN_SSL_CERT": str(cert), "SLUICE_ADMIN_SSL_CERT_KEY": str(key)}
    env["SLUICE_CLUSTER_LISTEN"] = "off"
    env.update(extra or {})
    return env


def ssl_addr(cp):
    host, _, port = (cp.prefix / "admin_ssl.addr").read_text().strip().rpartition(":")
    return host, int(port)


def tls_context(cert, version=None):
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False  # the certificate names example.test, we dial 127.0.0.1
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def https(cp, cert, method, path, body=None, headers=None, version=None):
    host, port = ssl_addr(cp)
    conn = http.client.HTTPSConnection(host, port, timeout=10, context=tls_context(cert, version))
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None), conn.sock.version()
    finally:
        conn.close()


def test_https_requests_work(cp_factory, pem_files):
    cert, key = pem_files
    cp = cp_factory(env=tls_env(cert, key))
    status, body, version = https(cp, cert, "GET", "/")
    assert status == 200 and body["tagline"] == "Welcome to kong"
    assert version in ("TLSv1.2", "TLSv1.3")
    status, body, _ = https(cp, cert, "POST", "/services", {"name": "s1", "host": "up.test"})
    assert status == 201 and body["name"] == "s1"
    # the plain listener serves the same store
    assert cp.get("/services/s1").status == 200
    # a TLS 1.2 client is accepted too
    status, _, version = https(cp, cert, "GET", "/services/s1", version=ssl.TLSVersion.TLSv1_2)
    assert status == 200 and version == "TLSv1.2"


def test_plain_http_to_tls_port_fails_cleanly(cp_factory, pem_files):
    cert, key = pem_files
    cp = cp_factory(env=tls_env(cert, key))
    host, port = ssl_addr(cp)
    for _ in range(3):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        assert not data.startswith(b"HTTP/")
    # still healthy, on both listeners
    assert https(cp, cert, "GET", "/status")[0] == 200
    assert cp.get("/status").status == 200


def test_tls_client_refuses_unknown_certificate(cp_factory, pem_files, tmp_path):
    cert, key = pem_files
    cp = cp_factory(env=tls_env(cert, key))
    host, port = ssl_addr(cp)
    conn = http.client.HTTPSConnection(host, port, timeout=10,
                                       context=ssl.create_default_context())
    with pytest.raises(ssl.SSLError):
        conn.request("GET", "/")
    conn.close()
    assert https(cp, cert, "GET", "/")[0] == 200


def test_admin_token_over_tls(cp_factory, pem_files):
    cert, key = pem_files
    token = "s3cret-token-123"
    cp = cp_factory(env=tls_env(cert, key, {"SLUICE_ADMIN_TOKEN": token}))
    status, body, _ = https(cp, cert, "GET", "/services")
    assert status == 401 and body == {"message": "Unauthorized"}
    status, _, _ = https(cp, cert, "GET", "/services", headers={"Authorization": "Bearer nope"})
    assert status == 401
    status, body, _ = https(cp, cert, "GET", "/services",
                            headers={"Authorization": "Bearer " + token})
    assert status == 200 and body["data"] == []


def test_tls_only_listener(cp_factory, pem_files):
    cert, key = pem_files
    cp = cp_factory(env=tls_env(cert, key, {"SLUICE_ADMIN_LISTEN": "127.0.0.1:0 ssl"}),
                    start=False)
    cp.prefix.mkdir(parents=True, exist_ok=True)
    # ControlPlane.start waits for admin.addr; a TLS-only node writes admin_ssl.addr only
    proc = subprocess.Popen([str(CP_BIN), "-p", str(cp.prefix)], env=cp_env(cp.env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (cp.prefix / "admin_ssl.addr").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        assert not (cp.prefix / "admin.addr").exists()
        assert https(cp, cert, "GET", "/")[0] == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("which", ["cert", "key"])
def test_bad_paths_exit_2_naming_the_key(tmp_path, pem_files, which):
    cert, key = pem_files
    missing = tmp_path / "nope.pem"
    env = tls_env(missing if which == "cert" else cert, missing if which == "key" else key)
    r = run_cp(["-p", tmp_path / "p"], env=env)
    assert r.returncode == 2
    name = "admin_ssl_cert:" if which == "cert" else "admin_ssl_cert_key:"
    assert name in r.stderr and str(missing) in r.stderr
    # -t checks the files too
    r = run_cp(["-t", "-p", tmp_path / "p"], env=env)
    assert r.returncode == 2 and name in r.stderr


def test_bad_tls_configuration_messages(tmp_path, pem_files):
    cert, key = pem_files
    # ssl entry without a certificate
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_ADMIN_LISTEN": "127.0.0.1:0 ssl"})
    assert r.returncode == 2 and "admin_ssl_cert: required" in r.stderr
    # a key that is not PEM, a certificate that is not PEM
    junk = tmp_path / "junk.pem"
    junk.write_text("not a pem file\n")
    r = run_cp(["-t", "-p", tmp_path], env=tls_env(cert, junk))
    assert r.returncode == 2 and "admin_ssl_cert_key:" in r.stderr
    r = run_cp(["-t", "-p", tmp_path], env=tls_env(junk, key))
    assert r.returncode == 2 and "admin_ssl_cert:" in r.stderr
    # unknown listen flag
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_ADMIN_LISTEN": "127.0.0.1:0 tls"})
    assert r.returncode == 2 and "admin_listen: unknown flag 'tls'" in r.stderr
    r = run_cp(["-t", "-p", tmp_path], env={"SLUICE_ADMIN_LISTEN": "127.0.0.1:0,"})
    assert r.returncode == 2 and "admin_listen:" in r.stderr
