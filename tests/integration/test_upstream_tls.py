"""TLS to upstreams: a service with protocol https (url https://host:port) is
proxied over TLS 1.2 or 1.3. The data plane sends SNI = the service's host
when it is a name, none for an IP literal (RFC 6066 3: "Literal IPv4 and IPv6
addresses are not permitted in HostName"). The upstream's certificate is not
checked unless the service has tls_verify = true (Kong's default is
proxy_ssl_verify, off); then it must chain to the service's ca_certificates
(or the system trust store when it names none) and match the host. A service
with a client_certificate (a certificates entity) presents it to upstreams
that ask for one (mutual TLS), over connections pooled apart. A failed
handshake answers 502 as Kong does (nginx: NGX_HTTP_UPSTREAM_FT_ERROR), a
handshake that stalls past connect_timeout 504 (nginx arms connect_timeout
for the handshake too: NGX_HTTP_UPSTREAM_FT_TIMEOUT), both with the gateway's
JSON error body. TLS connections are pooled per (address, SNI, verification)
like plain ones (kong-compat.md 7.4: the pool key holds the host and the TLS
verify parameters for https).

The upstream is upstream.py with --tls-cert/--tls-key: its echo reports the
SNI and TLS version it saw. Certificates are made here with `cryptography`: a
CA nobody trusts and a leaf for up.test (SAN DNS:up.test, IP:127.0.0.1).
Names resolve through a hosts file (dns_hostsfile; the resolver is a
dnsserver.DNSServer that knows nothing). One data plane with workers = 1 serves
the module, so a pool is one worker's pool.
"""

import datetime
import hashlib
import ipaddress
import json
import os
import re
import socket
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import dnsserver
import h1
from conftest import SERVER_RE, Upstream, declarative, route, run_dp, service
from upstream import pattern_bytes

NAME = "up.test"
WRONG_NAME = "other.test"  # resolves to 127.0.0.1 too; the certificate does not name it
CA_ID = "0b9d4f4e-5d0c-4c57-9f57-3c1f1a2b0001"
CLIENT_CERT_ID = "0b9d4f4e-5d0c-4c57-9f57-3c1f1a2b0002"
CLIENT_CN = "sluice-client"
BAD_GATEWAY = "An invalid response was received from the upstream server"
TIMED_OUT = "The upstream server is timed out"
CONNECT_TIMEOUT_MS = 1000

# ------------------------------------------------------------------ certificates


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class PKI:
    """A self-signed CA and a leaf it signed for up.test and 127.0.0.1."""

    def __init__(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sluice upstream test CA")])
        self.ca = (x509.CertificateBuilder()
                   .subject_name(ca_name).issuer_name(ca_name)
                   .public_key(self.ca_key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))
        san = x509.SubjectAlternativeName([x509.DNSName(NAME),
                                           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.leaf_key, self.leaf = self._leaf(ca_name, now, NAME, ExtendedKeyUsageOID.SERVER_AUTH,
                                              san)
        # The data plane's certificate for upstreams that ask for one.
        self.client_key, self.client = self._leaf(ca_name, now, CLIENT_CN,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH)

    def _leaf(self, issuer, now, cn, usage, san=None):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(issuer)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            b = b.add_extension(san, critical=False)
        return key, b.sign(self.ca_key, hashes.SHA256())

    @property
    def ca_pem(self):
        return _pem(self.ca)

    def client_entity(self):
        """The client certificate as a certificates entity."""
        key = self.client_key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()
        return {"id": CLIENT_CERT_ID, "cert": _pem(self.client), "key": key}

    def write(self, directory):
        crt, key = directory / "up.crt", directory / "up.key"
        crt.write_text(_pem(self.leaf))
        key.write_bytes(self.leaf_key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        return crt, key


@pytest.fixture(scope="module")
def pki():
    return PKI()


# ------------------------------------------------------------------ processes


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("tls-up")
    u = Upstream(d, "tls-up", tls=pki.write(d))
    yield u
    u.stop()


@pytest.fixture(scope="module")
def tls12_upstream(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("tls12-up")
    u = Upstream(d, "tls12-up", tls=pki.write(d) + ("1.2",))
    yield u
    u.stop()


@pytest.fixture(scope="module")
def mtls_upstream(tmp_path_factory, pki):
    """An upstream that requires a client certificate signed by the CA."""
    d = tmp_path_factory.mktemp("mtls-up")
    ca = d / "ca.crt"
    ca.write_text(pki.ca_pem)
    u = Upstream(d, "mtls-up", tls=pki.write(d), client_ca=ca)
    yield u
    u.stop()


@pytest.fixture(scope="module")
def stalling_port():
    """A listener that never accepts: the kernel completes TCP's handshake,
    the ClientHello sits in the backlog, no ServerHello ever comes."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(scope="module")
def dp(module_sluice_factory, tmp_path_factory, tls_upstream, tls12_upstream, upstream,
       stalling_port, pki, mtls_upstream):
    srv = dnsserver.DNSServer().start()
    hosts = tmp_path_factory.mktemp("hosts") / "hosts"
    hosts.write_text("127.0.0.1 %s %s\n" % (NAME, WRONG_NAME))
    port = tls_upstream.port
    ip_url = "https://127.0.0.1:%d" % port
    name_url = "https://%s:%d" % (NAME, port)

    def svc(name, url, path, **fields):
        return service(name, url, routes=[route(name, paths=[path])], **fields)

    services = [
        svc("ip", ip_url, "/ip"),
        svc("named", name_url, "/named"),
        svc("tls12", "https://127.0.0.1:%d" % tls12_upstream.port, "/tls12"),
        svc("untrusted", name_url + "/count", "/untrusted", tls_verify=True, retries=0),
        svc("verified", name_url, "/verified", tls_verify=True, ca_certificates=[CA_ID]),
        svc("verified_ip", ip_url, "/verified-ip", tls_verify=True, ca_certificates=[CA_ID]),
        svc("wrong_name", "https://%s:%d/count" % (WRONG_NAME, port), "/wrong-name",
            tls_verify=True, ca_certificates=[CA_ID], retries=0),
        svc("plain_upstream", "https://127.0.0.1:%d" % upstream.port, "/plain-upstream",
            retries=0),
        svc("stall", "https://127.0.0.1:%d" % stalling_port, "/stall", retries=0,
            connect_timeout=CONNECT_TIMEOUT_MS, read_timeout=30000, write_timeout=30000),
        svc("ok", upstream.url, "/ok"),
        svc("mtls", "https://127.0.0.1:%d" % mtls_upstream.port, "/mtls",
            client_certificate={"id": CLIENT_CERT_ID}),
        svc("mtls_verified", "https://%s:%d" % (NAME, mtls_upstream.port), "/mtls-verified",
            client_certificate={"id": CLIENT_CERT_ID}, tls_verify=True, ca_certificates=[CA_ID]),
        svc("mtls_none", "https://127.0.0.1:%d/count" % mtls_upstream.port, "/mtls-none",
            retries=0),
        # Through an upstream entity whose client_certificate applies.
        svc("mtls_by_upstream", "https://mtls-pool", "/mtls-by-upstream"),
    ]
    conf = {"workers": "1", "dns_resolver": "127.0.0.1:%d" % srv.port,
            "dns_hostsfile": str(hosts)}
    yield module_sluice_factory(declarative(
        services, ca_certificates=[{"id": CA_ID, "cert": pki.ca_pem}],
        certificates=[pki.client_entity()],
        upstreams=[{"name": "mtls-pool", "client_certificate": {"id": CLIENT_CERT_ID},
                    "targets": [{"target": "127.0.0.1:%d" % mtls_upstream.port}]}]), conf)
    srv.stop()


# ------------------------------------------------------------------ helpers


def tls_of(resp):
    assert resp.status == 200, resp
    body = resp.json()
    assert "tls" in body, "the upstream saw a plain connection: %r" % body
    return body["tls"]


def check_error(resp, status, message):
    assert resp.status == status, resp
    assert (resp.header("content-type") or "").startswith("application/json"), resp.headers
    assert resp.json().get("message") == message, resp
    assert re.match(SERVER_RE, resp.header("server") or ""), resp.headers


def assert_healthy(dp):
    assert dp.status_get("/status/ready").status == 200
    assert dp.get("/ok/").status == 200
    assert tls_of(dp.get("/ip/after"))["sni"] is None


# ------------------------------------------------------------------ proxying


def test_ip_literal_no_sni(dp):
    resp = dp.get("/ip/hello?x=1")
    tls = tls_of(resp)
    assert tls["sni"] is None, tls
    assert tls["version"] in ("TLSv1.2", "TLSv1.3"), tls
    assert resp.json()["target"] == "/hello?x=1"
    assert resp.header("x-upstream-name") == "tls-up"


def test_named_host_sends_sni(dp, tls_upstream):
    resp = dp.get("/named/hello")
    assert tls_of(resp)["sni"] == NAME
    hosts = [v for k, v in resp.json()["headers"] if k.lower() == "host"]
    assert hosts == ["%s:%d" % (NAME, tls_upstream.port)], resp.json()["headers"]


def test_tls13_by_default_and_tls12_when_the_upstream_caps_it(dp):
    assert tls_of(dp.get("/ip/v"))["version"] == "TLSv1.3"
    assert tls_of(dp.get("/tls12/v"))["version"] == "TLSv1.2"


def test_connection_reused(dp):
    """Sequential requests, each on a new client connection: one upstream
    TLS connection carries them all."""
    seen = []
    for i in range(20):
        resp = dp.get("/ip/reuse/%d" % i)
        assert tls_of(resp)["sni"] is None
        seen.append((resp.json()["conn_id"], resp.json()["conn_req"]))
    conn_ids = {c for c, _ in seen}
    assert len(conn_ids) == 1, seen
    reqs = [n for _, n in seen]
    assert reqs == list(range(reqs[0], reqs[0] + 20)), seen


def test_pool_keyed_by_sni_and_verification(dp):
    """Same address, three ways of connecting (no SNI; SNI up.test unchecked;
    SNI up.test verified): none borrows another's connection."""
    by_kind = {"ip": set(), "named": set(), "verified": set()}
    for i in range(6):
        for kind, want_sni in (("ip", None), ("named", NAME), ("verified", NAME)):
            resp = dp.get("/%s/mix/%d" % (kind, i))
            assert tls_of(resp)["sni"] == want_sni, (kind, resp.json())
            by_kind[kind].add(resp.json()["conn_id"])
    assert not by_kind["ip"] & by_kind["named"], by_kind
    assert not by_kind["ip"] & by_kind["verified"], by_kind
    assert not by_kind["named"] & by_kind["verified"], \
        "an unverified connection was reused for a tls_verify service: %r" % by_kind
    assert all(len(v) == 1 for v in by_kind.values()), by_kind


def test_pooled_connection_closed_by_upstream_is_replaced(dp):
    first = dp.get("/ip/idle?idle_close_ms=100")
    cid = first.json()["conn_id"]
    time.sleep(0.6)  # the upstream has closed it (close_notify, FIN) while it was idle
    resp = dp.get("/ip/next")
    assert tls_of(resp)["sni"] is None
    assert resp.json()["conn_id"] != cid


# ------------------------------------------------------------------ verification


def test_verify_untrusted_ca_502(dp, tls_upstream):
    token = uuid.uuid4().hex
    check_error(dp.get("/untrusted/" + token), 502, BAD_GATEWAY)
    assert tls_upstream.counter(token) == 0, "the request reached an unverified upstream"
    assert_healthy(dp)


def test_verify_with_service_ca_certificates_200(dp):
    assert tls_of(dp.get("/verified/hello"))["sni"] == NAME


def test_verify_ip_literal_against_ip_san_200(dp):
    assert tls_of(dp.get("/verified-ip/hello"))["sni"] is None


def test_verify_name_mismatch_502(dp, tls_upstream):
    token = uuid.uuid4().hex
    check_error(dp.get("/wrong-name/" + token), 502, BAD_GATEWAY)
    assert tls_upstream.counter(token) == 0
    assert_healthy(dp)


# ------------------------------------------------------------------ failures


def test_plain_http_upstream_502(dp, upstream):
    """upstream.py (plain) reads the ClientHello as a bad request line and
    answers 400 in clear text: not TLS."""
    check_error(dp.get("/plain-upstream/x"), 502, BAD_GATEWAY)
    assert_healthy(dp)


def test_handshake_stall_504_within_connect_timeout(dp):
    started = time.monotonic()
    resp = dp.get("/stall/x", timeout=40)
    elapsed = time.monotonic() - started
    check_error(resp, 504, TIMED_OUT)
    # Loose bounds: the handshake is under connect_timeout (1 s), not
    # read_timeout (30 s).
    assert 0.5 <= elapsed < CONNECT_TIMEOUT_MS / 1000.0 + 4, elapsed
    assert_healthy(dp)


# ------------------------------------------------------------------ bodies


def test_post_1mib_body_intact(dp):
    body = os.urandom(1 << 20)
    resp = dp.request("POST", "/ip/upload", body=body, timeout=30)
    tls_of(resp)
    assert resp.json()["body_len"] == len(body)
    assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_chunked_request_body_intact(dp):
    pieces = [os.urandom(n) for n in (1, 1000, 70000, 16384, 5)]
    resp = dp.request("POST", "/ip/upload-chunked", headers=[("Transfer-Encoding", "chunked")],
                      body=h1.chunked_body(pieces), timeout=30)
    tls_of(resp)
    data = b"".join(pieces)
    assert resp.json()["body_len"] == len(data)
    assert resp.json()["body_sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("n,chunk", [(300000, 8192), (2 << 20, 65536), (1, 1)])
def test_chunked_response_intact(dp, n, chunk):
    resp = dp.get("/ip/chunked/%d?chunk=%d" % (n, chunk), timeout=30)
    assert resp.status == 200, resp
    assert resp.body == pattern_bytes(n)


def test_content_length_response_intact(dp):
    n = 3 << 20
    resp = dp.get("/ip/bytes/%d" % n, timeout=30)
    assert resp.status == 200, resp
    assert resp.body == pattern_bytes(n)


def test_plugin_set_scheme_https_switches_to_tls(sluice_factory, tls_upstream):
    """kong.service.request.set_scheme("https"), called by an external plugin
    (the tests' fake plugin server), makes a service declared http reach its
    upstream over TLS."""
    from bridge.test_faults import fake_conf
    port = int(tls_upstream.url.rsplit(":", 1)[1])
    decl = declarative([service("plain-declared", "http://127.0.0.1:%d" % port, routes=[
        route("switched", paths=["/switched"], strip_path=False,
              plugins=[{"name": "fake", "config": {"mode": "scheme_https"}}]),
        route("as-declared", paths=["/as-declared"], strip_path=False)])])
    s = sluice_factory(decl, start=False)
    s.conf.update(fake_conf(s.prefix))
    s.write_conf()
    s.start()
    assert tls_of(s.get("/switched"))["version"].startswith("TLSv1")
    # Without the plugin the same service speaks plain HTTP to a TLS port.
    assert s.get("/as-declared").status == 502


# ------------------------------------------------------------------ client certificates


def test_client_certificate_presented(dp):
    """The upstream requires a certificate from its CA: the service's
    client_certificate is presented, and the upstream sees its name."""
    tls = tls_of(dp.get("/mtls/x"))
    assert tls["client_cn"] == CLIENT_CN, tls
    assert tls["sni"] is None


def test_client_certificate_with_verification(dp):
    """client_certificate and tls_verify together: both sides are checked."""
    tls = tls_of(dp.get("/mtls-verified/x"))
    assert tls["client_cn"] == CLIENT_CN and tls["sni"] == NAME, tls


def test_client_certificate_of_the_upstream_entity(dp):
    """A service without one, whose host is an upstream entity with a
    client_certificate, presents the upstream's (as Kong)."""
    assert tls_of(dp.get("/mtls-by-upstream/x"))["client_cn"] == CLIENT_CN


def test_without_client_certificate_the_upstream_refuses_502(dp):
    """A service without one is refused by the same upstream: 502, even right
    after a request of /mtls (whose pooled connection, made with the
    certificate, is not lent to a service without it)."""
    assert dp.get("/mtls/first").status == 200
    check_error(dp.get("/mtls-none"), 502, BAD_GATEWAY)
    assert_healthy(dp)


@pytest.mark.parametrize("certificates,message", [
    ([], "services[0].client_certificate: invalid reference"),
    ([{"id": CLIENT_CERT_ID, "cert": "not a certificate", "key": "not a key"}],
     "certificates[0].cert: invalid certificate"),
])
def test_bad_client_certificate_refused_at_load(tmp_path, pki, certificates, message):
    """A client_certificate naming no certificate, or one that does not
    parse, is refused by `sluice-dp -t` with the field named."""
    decl = declarative([service("m", "https://127.0.0.1:1", routes=[route("m", paths=["/m"])],
                                client_certificate={"id": CLIENT_CERT_ID})],
                       certificates=certificates)
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(decl))
    conf = tmp_path / "sluice.conf"
    conf.write_text("proxy_listen = 127.0.0.1:0\nstatus_listen = off\nworkers = 1\n"
                    "declarative_config = %s\n" % path)
    res = run_dp(["-c", conf, "-p", tmp_path, "-t"])
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert message in res.stderr, res.stderr
