"""TLS termination on the proxy listeners (dataplane/tls.h), as Kong: a
`proxy_listen` entry with the `ssl` flag; the certificate chosen by the
client's SNI among the configuration's certificates and their snis (an exact
name, then a "*.example.com" wildcard, then an "example.*" one), else the
node's default (ssl_cert / ssl_cert_key, or a self-signed one made at start
and written to <prefix>/ssl/); requests over TLS have the scheme https
(route protocols, https_redirect_status_code, X-Forwarded-Proto/-Port).

Every certificate is made here with the `cryptography` package: a root CA,
an intermediate, and leaves for exact, wildcard-prefix and wildcard-suffix
names, RSA and ECDSA.
"""

import datetime
import hashlib
import json
import os
import subprocess
import ssl
import threading
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import h1
from conftest import declarative, proxy_listeners, route, run_dp, service, wait_until
from cp.conftest import cp_factory  # noqa: F401 (fixtures for the hybrid test)
from hybrid.conftest import cluster_addr, cluster_cert, dp_conf, hybrid_cp  # noqa: F401
from upstream import pattern_sha256

# ------------------------------------------------------------------ certificates


class Pair:
    """A certificate (with the chain above it, leaf first) and its key."""

    def __init__(self, cert, key, chain=()):
        self.cert = cert
        self.key = key
        self.chain = list(chain)

    @property
    def cert_pem(self):
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                       for c in [self.cert] + self.chain)

    @property
    def key_pem(self):
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    @property
    def der(self):
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def cn(self):
        return self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    def write(self, directory, name):
        crt, key = directory / (name + ".crt"), directory / (name + ".key")
        crt.write_text(self.cert_pem)
        key.write_text(self.key_pem)
        return crt, key


def new_key(kind):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def issue(cn, names=(), issuer=None, kind="rsa", ca=False):
    """A certificate for cn (and names as DNS SANs), signed by issuer (a Pair)
    or self-signed."""
    key = new_key(kind)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                            critical=False)
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in (names or [cn])]), critical=False)
    return Pair(b.sign(issuer.key if issuer else key, hashes.SHA256()), key)


class PKI:
    def __init__(self):
        self.root = issue("Sluice test root CA", ca=True)
        self.inter = issue("Sluice test intermediate CA", issuer=self.root, ca=True)
        leaf = lambda cn, names=(), kind="rsa": issue(cn, names, self.root, kind)  # noqa: E731
        self.exact = leaf("a.test")
        self.wild = leaf("*.wild.test")
        self.suffix = leaf("suffix.*", ["suffix.example"])
        self.exact_in_wild = leaf("exact.wild.test")
        self.both_prefix = leaf("*.both.test")
        self.both_suffix = leaf("pre.both.*", ["pre.both.example"])
        self.dual_rsa = leaf("dual.test")
        self.dual_ec = leaf("dual.test", kind="ec")
        self.ec_only = leaf("ec.test", kind="ec")
        self.gone = leaf("gone.test")
        self.rotated = leaf("a.test")  # a second certificate for a.test (SIGHUP)
        self.fresh = leaf("new.test")
        self.node = leaf("node.test")
        self.node_pem = leaf("node-pem.test")  # ssl_cert (PEM text)
        # Through the intermediate, which follows the leaf in the PEM: a
        # client that trusts the root only needs it sent.
        self.chained = issue("chain.test", issuer=self.inter)
        self.chained.chain = [self.inter.cert]

    @property
    def root_pem(self):
        return self.root.cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pki():
    return PKI()


def cert_entity(pair, *snis, alt=None):
    c = {"cert": pair.cert_pem, "key": pair.key_pem, "snis": [{"name": s} for s in snis]}
    if alt:
        c["cert_alt"], c["key_alt"] = alt.cert_pem, alt.key_pem
    return c


def certificates(pki):
    return [
        cert_entity(pki.exact, "a.test"),
        cert_entity(pki.wild, "*.wild.test"),
        cert_entity(pki.suffix, "suffix.*"),
        cert_entity(pki.exact_in_wild, "exact.wild.test"),
        cert_entity(pki.both_prefix, "*.both.test"),
        cert_entity(pki.both_suffix, "pre.both.*"),
        cert_entity(pki.dual_rsa, "dual.test", alt=pki.dual_ec),
        cert_entity(pki.ec_only, "ec.test"),
        cert_entity(pki.gone, "gone.test"),
        cert_entity(pki.chained, "chain.test"),
    ]


# ------------------------------------------------------------------ clients


def client_ctx(version=None, ciphers=None, cadata=None, alpn=None):
    """A client context. Without cadata it verifies nothing (the tests look
    at the certificate themselves); with it, chain and name are checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = version
            ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


INSECURE = client_ctx()


def tls_conn(addr, sni=None, ctx=None, timeout=h1.DEFAULT_TIMEOUT):
    return h1.Conn(addr, timeout, ssl_context=ctx or INSECURE, server_hostname=sni)


def served(addr, sni=None, ctx=None):
    """The certificate the data plane presents for sni (DER)."""
    with tls_conn(addr, sni, ctx) as c:
        return c.sock.getpeercert(binary_form=True)


def name_of(der):
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def start_tls(factory, decl, conf=None, env=None):
    """A data plane with a plain listener then a TLS one: dp.proxy is the
    plain one, dp.tls the TLS one."""
    c = {"proxy_listen": "127.0.0.1:0, 127.0.0.1:0 ssl"}
    c.update(conf or {})
    dp = factory(decl, c, env)
    addrs = proxy_listeners(dp)
    assert len(addrs) == 2, "proxy.addr should have one line per listener: %r" % addrs
    dp.proxy, dp.tls = addrs
    return dp


def default_files(dp):
    return dp.prefix / "ssl" / "sluice-default.crt", dp.prefix / "ssl" / "sluice-default.key"


def assert_healthy(dp):
    st = dp.status_get("/status")
    assert st.status == 200, st
    resp = h1.get(dp.tls, "/any/after", host="any.test", ssl_context=INSECURE,
                  server_hostname="a.test")
    assert resp.status == 200, resp


def upstream_header(resp, name):
    for k, v in resp.json()["headers"]:
        if k.lower() == name.lower():
            return v
    return None


# ------------------------------------------------------------------ the data plane

ROUTES = [
    route("any", paths=["/any"]),
    route("tls_only", paths=["/tls"], protocols=["https"]),
    route("plain_only", paths=["/plain"], protocols=["http"]),
] + [route("redir%d" % code, paths=["/r%d" % code], protocols=["https"],
           https_redirect_status_code=code) for code in (301, 302, 307, 308)]


# Priority against protocols: a route constraining the host beats one that
# does not, but only among the routes the scheme lets match.
SHADOW = [
    service("high", None, routes=[
        route("http_high", hosts=["shadow.test"], paths=["/shadow"], protocols=["http"]),
        route("https_high", hosts=["shadow2.test"], paths=["/shadow2"], protocols=["https"])]),
    service("low", None, routes=[
        route("any_low", paths=["/shadow"]),
        route("any_low2", paths=["/shadow2"])]),
]


def tls_decl(pki, upstream, certs=None):
    shadow = [dict(s, url=upstream.url + "/" + s["name"]) for s in SHADOW]
    return declarative([service("echo", upstream.url, routes=ROUTES)] + shadow,
                       certificates=certificates(pki) if certs is None else certs)


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream, pki):
    return start_tls(module_sluice_factory, tls_decl(pki, upstream))


# ------------------------------------------------------------------ listeners


def test_proxy_addr_has_a_line_per_listener(dp):
    plain, tls = dp.proxy, dp.tls
    assert plain[0] == tls[0] == "127.0.0.1"
    assert plain[1] != tls[1]
    # The first listener is plain HTTP, the second TLS.
    assert dp.get("/any/x", host="any.test").status == 200
    with tls_conn(tls, "a.test") as c:
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert c.request("GET", "/any/x", host="a.test").status == 200


def test_plain_http_on_the_tls_listener_is_closed(dp):
    """A request in clear on the TLS port is not a ClientHello: the connection
    is closed (nginx would first answer 400 in clear; either is fine)."""
    with h1.Conn(dp.tls, timeout=5) as c:
        c.send(h1.build_request("GET", "/any/x", host="any.test"))
        closed, extra = c.wait_closed(10)
        assert closed, "the TLS listener kept a plain-HTTP client open"
        assert not extra.startswith(b"HTTP/") or extra.startswith(b"HTTP/1.1 400"), extra[:200]
    assert_healthy(dp)


def test_tls_on_the_plain_listener_fails(dp):
    with pytest.raises((ssl.SSLError, OSError)):
        served(dp.proxy, "a.test")
    assert dp.get("/any/x", host="any.test").status == 200


# ------------------------------------------------------------------ certificate by SNI


SNI_CASES = [
    # client SNI, expected certificate (PKI attribute) or "default"
    ("a.test", "exact"),
    ("A.Test", "exact"),  # names compare case-insensitively
    ("x.wild.test", "wild"),
    ("exact.wild.test", "exact_in_wild"),  # an exact name beats a wildcard
    ("x.y.wild.test", "default"),  # as Kong: "*." stands for one label
    ("wild.test", "default"),
    ("suffix.org", "suffix"),
    ("suffix.example", "suffix"),
    ("suffix.co.uk", "default"),  # as Kong: ".*" stands for the last label only
    ("pre.both.test", "both_prefix"),  # "*.both.test" beats "pre.both.*"
    ("pre.both.org", "both_suffix"),
    ("dual.test", "dual_rsa|dual_ec"),  # the server picks by what the client accepts
    ("ec.test", "ec_only"),
    ("unknown.test", "default"),
    (None, "default"),  # no SNI at all
]


@pytest.mark.parametrize("sni,expected", SNI_CASES, ids=[str(c[0]) for c in SNI_CASES])
def test_certificate_chosen_by_sni(dp, pki, sni, expected):
    got = served(dp.tls, sni)
    if expected == "default":
        crt, _ = default_files(dp)
        want = x509.load_pem_x509_certificate(crt.read_bytes())
        assert got == want.public_bytes(serialization.Encoding.DER), (
            "SNI %r: expected the default certificate, got %r" % (sni, name_of(got)))
    else:
        pairs = [getattr(pki, e) for e in expected.split("|")]
        assert got in [p.der for p in pairs], "SNI %r: expected %r (%s), got %r" % (
            sni, pairs[0].cn, expected, name_of(got))


def test_served_certificate_verifies_with_the_root(dp, pki):
    """A client that trusts the CA and checks the name accepts the exact and
    wildcard certificates."""
    ctx = client_ctx(cadata=pki.root_pem)
    for sni in ("a.test", "x.wild.test"):
        with tls_conn(dp.tls, sni, ctx) as c:
            assert c.request("GET", "/any/v", host=sni).status == 200


def test_chain_after_the_leaf_is_sent(dp, pki):
    """certificates[].cert with an intermediate after the leaf: a client that
    trusts the root only can verify."""
    ctx = client_ctx(cadata=pki.root_pem)
    with tls_conn(dp.tls, "chain.test", ctx) as c:
        assert c.sock.getpeercert(binary_form=True) == pki.chained.der
        assert c.request("GET", "/any/chain", host="chain.test").status == 200


@pytest.mark.parametrize("cipher,expected", [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "dual_ec"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "dual_rsa"),
])
def test_cert_alt_chosen_by_the_client_key_type(dp, pki, cipher, expected):
    """cert / cert_alt (RSA + ECDSA): a TLS 1.2 client that takes only ECDSA
    (or only RSA) suites gets the matching certificate."""
    ctx = client_ctx(ssl.TLSVersion.TLSv1_2, cipher)
    assert served(dp.tls, "dual.test", ctx) == getattr(pki, expected).der


def test_default_certificate_made_at_start(dp):
    crt, key = default_files(dp)
    assert crt.exists() and key.exists(), "no default certificate in %s" % crt.parent
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    pkey = serialization.load_pem_private_key(key.read_bytes(), None)
    assert pkey.public_key().public_numbers() == cert.public_key().public_numbers()
    assert isinstance(pkey, ec.EllipticCurvePrivateKey)
    assert pkey.curve.name == "secp256r1"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    utc = hasattr(cert, "not_valid_after_utc")  # cryptography >= 42
    life = (cert.not_valid_after_utc - cert.not_valid_before_utc if utc
            else cert.not_valid_after - cert.not_valid_before)
    assert datetime.timedelta(days=360) <= life <= datetime.timedelta(days=370), life
    assert served(dp.tls) == cert.public_bytes(serialization.Encoding.DER)
    assert key.stat().st_mode & 0o077 == 0, "the default key is readable by others"


def test_default_certificate_kept_across_restarts(sluice_factory, upstream, pki):
    """As Kong's kong-default.crt: made once, reused by the next start."""
    dp = start_tls(sluice_factory, tls_decl(pki, upstream))
    first = served(dp.tls)
    dp.stop()
    dp.start()
    dp.proxy, dp.tls = proxy_listeners(dp)
    assert served(dp.tls) == first


def test_catch_all_sni(sluice_factory, upstream, pki):
    """As Kong: an sni named "*" serves every name nothing else matches, but
    a client without SNI still gets the default certificate."""
    certs = [cert_entity(pki.exact, "a.test"), cert_entity(pki.fresh, "*")]
    dp = start_tls(sluice_factory, tls_decl(pki, upstream, certs))
    assert served(dp.tls, "a.test") == pki.exact.der
    assert served(dp.tls, "unknown.test") == pki.fresh.der
    default = x509.load_pem_x509_certificate(default_files(dp)[0].read_bytes())
    assert served(dp.tls) == default.public_bytes(serialization.Encoding.DER)


# ------------------------------------------------------------------ ssl_cert / ssl_cert_key


def test_ssl_cert_as_paths_replaces_the_default(sluice_factory, upstream, pki, tmp_path):
    crt, key = pki.chained.write(tmp_path, "node")
    dp = start_tls(sluice_factory, tls_decl(pki, upstream),
                   {"ssl_cert": str(crt), "ssl_cert_key": str(key)})
    assert served(dp.tls) == pki.chained.der
    assert served(dp.tls, "unknown.test") == pki.chained.der
    assert served(dp.tls, "a.test") == pki.exact.der  # snis still win
    # The chain in the file is sent too.
    with tls_conn(dp.tls, "chain.test", client_ctx(cadata=pki.root_pem)) as c:
        assert c.request("GET", "/any/x", host="chain.test").status == 200
    assert not any(p.exists() for p in default_files(dp)), \
        "a default certificate was made although ssl_cert is set"


def test_ssl_cert_as_pem_text_replaces_the_default(sluice_factory, upstream, pki):
    """PEM text can't span lines of the conf file: it comes from the environment."""
    dp = start_tls(sluice_factory, tls_decl(pki, upstream), env={
        "SLUICE_SSL_CERT": pki.node_pem.cert_pem, "SLUICE_SSL_CERT_KEY": pki.node_pem.key_pem})
    assert served(dp.tls) == pki.node_pem.der
    assert served(dp.tls, "ec.test") == pki.ec_only.der
    with tls_conn(dp.tls) as c:
        assert c.request("GET", "/any/x", host="any.test").status == 200


def start_fails(tmp_path, conf_lines, env=None):
    conf = tmp_path / "sluice.conf"
    conf.write_text("\n".join(["proxy_listen = 127.0.0.1:0 ssl", "status_listen = off",
                               "workers = 1", "error_log = stderr"] + conf_lines) + "\n")
    try:
        return run_dp(["-c", conf, "-p", tmp_path], env, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("sluice-dp started although the TLS settings are wrong")


def test_ssl_cert_key_not_matching_stops_start(tmp_path, pki):
    crt, _ = pki.node.write(tmp_path, "node")
    _, other_key = pki.fresh.write(tmp_path, "other")
    res = start_fails(tmp_path, ["ssl_cert = %s" % crt, "ssl_cert_key = %s" % other_key])
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "ssl_cert" in res.stderr, res.stderr


def test_check_ssl_cert_key_not_matching(tmp_path, pki):
    crt, _ = pki.node.write(tmp_path, "node")
    _, other_key = pki.fresh.write(tmp_path, "other")
    conf = tmp_path / "sluice.conf"
    conf.write_text("proxy_listen = 127.0.0.1:0 ssl\nstatus_listen = off\nworkers = 1\n"
                    "ssl_cert = %s\nssl_cert_key = %s\n" % (crt, other_key))
    res = run_dp(["-c", conf, "-p", tmp_path, "-t"])
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "ssl_cert" in res.stderr, res.stderr


@pytest.mark.parametrize("which", ["ssl_cert", "ssl_cert_key"])
def test_check_one_of_the_pair_alone(tmp_path, pki, which):
    """`-t` refuses what start refuses: one of ssl_cert / ssl_cert_key alone."""
    crt, key = pki.node.write(tmp_path, "node")
    conf = tmp_path / "sluice.conf"
    conf.write_text("proxy_listen = 127.0.0.1:0 ssl\nstatus_listen = off\nworkers = 1\n"
                    "%s = %s\n" % (which, crt if which == "ssl_cert" else key))
    res = run_dp(["-c", conf, "-p", tmp_path, "-t"])
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "ssl_cert" in res.stderr, res.stderr


def test_ssl_cert_without_key_stops_start(tmp_path, pki):
    crt, _ = pki.node.write(tmp_path, "node")
    res = start_fails(tmp_path, ["ssl_cert = %s" % crt])
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "ssl_cert_key" in res.stderr, res.stderr


def test_ssl_cert_missing_file_stops_start(tmp_path):
    res = start_fails(tmp_path, ["ssl_cert = %s" % (tmp_path / "nope.crt"),
                                 "ssl_cert_key = %s" % (tmp_path / "nope.key")])
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "ssl_cert" in res.stderr, res.stderr


# ------------------------------------------------------------------ scheme https


def test_request_over_tls_is_https_upstream(dp):
    with tls_conn(dp.tls, "a.test") as c:
        resp = c.request("GET", "/any/fwd", host="a.test")
    assert resp.status == 200, resp
    assert upstream_header(resp, "x-forwarded-proto") == "https"
    assert upstream_header(resp, "x-forwarded-port") == str(dp.tls[1])
    assert upstream_header(resp, "x-forwarded-host") == "a.test"
    # The plain listener on the same process still says http and its own port.
    resp = dp.get("/any/fwd", host="a.test")
    assert upstream_header(resp, "x-forwarded-proto") == "http"
    assert upstream_header(resp, "x-forwarded-port") == str(dp.proxy[1])


def test_https_only_route_served_over_tls(dp):
    with tls_conn(dp.tls, "a.test") as c:
        resp = c.request("GET", "/tls/x?q=1", host="a.test")
    assert resp.status == 200, resp
    assert resp.json()["target"] == "/x?q=1"  # strip_path


def test_https_only_route_over_plain_http_gives_426(dp):
    resp = dp.get("/tls/x", host="a.test")
    assert resp.status == 426, resp
    assert resp.json()["message"] == "Please use HTTPS protocol"
    assert resp.header("upgrade") == "TLS/1.2, HTTP/1.1", resp


@pytest.mark.parametrize("code", [301, 302, 307, 308])
@pytest.mark.parametrize("host", ["redir.test", "redir.test:8000"])
def test_https_redirect_status_code_over_plain_http(dp, code, host):
    """As Kong: Location is https:// + the request's host (without its port) +
    the request URI."""
    resp = dp.get("/r%d/x?y=1" % code, host=host)
    assert resp.status == code, resp
    assert resp.header("location") == "https://redir.test/r%d/x?y=1" % code, resp


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirecting_route_served_over_tls(dp, code):
    with tls_conn(dp.tls, "redir.test") as c:
        resp = c.request("GET", "/r%d/x" % code, host="redir.test")
    assert resp.status == 200, resp


def test_http_only_route_not_matched_over_tls(dp):
    with tls_conn(dp.tls, "a.test") as c:
        resp = c.request("GET", "/plain/x", host="a.test")
        assert resp.status == 404, resp
        assert resp.json()["message"] == "no Route matched with those values"
        # The connection stays usable.
        assert c.request("GET", "/any/x", host="a.test").status == 200
    assert dp.get("/plain/x", host="a.test").status == 200


def test_http_only_route_does_not_shadow_a_lower_one_over_tls(dp):
    """As Kong (the route's expression gets `net.protocol == "http"`): over
    TLS the http-only route is no candidate, so the lower one serves."""
    with tls_conn(dp.tls, "shadow.test") as c:
        resp = c.request("GET", "/shadow/x", host="shadow.test")
    assert resp.status == 200, resp
    assert resp.json()["target"] == "/low/x", resp
    resp = dp.get("/shadow/x", host="shadow.test")
    assert resp.status == 200 and resp.json()["target"] == "/high/x", resp


def test_https_only_route_shadows_a_lower_one_over_http(dp):
    """As Kong (an https-only route gets no protocol condition, to redirect):
    over plain HTTP it still wins, and answers 426."""
    resp = dp.get("/shadow2/x", host="shadow2.test")
    assert resp.status == 426, resp
    with tls_conn(dp.tls, "shadow2.test") as c:
        resp = c.request("GET", "/shadow2/x", host="shadow2.test")
    assert resp.status == 200 and resp.json()["target"] == "/high/x", resp


# ------------------------------------------------------------------ connections


def test_keepalive_over_tls(dp):
    with tls_conn(dp.tls, "a.test") as c:
        for i in range(200):
            resp = c.request("GET", "/any/ka/%d" % i, host="a.test")
            assert resp.status == 200, (i, resp)
            assert resp.json()["target"] == "/ka/%d" % i
        assert c.is_open(0.3)


def test_pipelined_requests_over_tls(dp):
    with tls_conn(dp.tls, "a.test") as c:
        c.send(b"".join(h1.build_request("GET", "/any/p%d" % i, host="a.test")
                        for i in range(10)))
        for i in range(10):
            resp = c.read_response()
            assert resp.status == 200 and resp.json()["target"] == "/p%d" % i, resp


def test_large_bodies_over_tls(dp):
    body = os.urandom(3 * 1024 * 1024 + 7)
    n = 8 * 1024 * 1024
    with tls_conn(dp.tls, "a.test", timeout=30) as c:
        resp = c.request("POST", "/any/upload", host="a.test", body=body)
        assert resp.status == 200, resp
        assert resp.json()["body_len"] == len(body)
        assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        resp = c.request("GET", "/any/bytes/%d" % n, host="a.test")
        assert resp.status == 200 and resp.body_len == n
        assert hashlib.sha256(resp.body).hexdigest() == pattern_sha256(n)
        resp = c.request("GET", "/any/chunked/%d" % n, host="a.test")
        assert resp.status == 200 and resp.body_len == n
        assert c.request("GET", "/any/after", host="a.test").status == 200


def test_tls_versions(dp):
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        with tls_conn(dp.tls, "a.test", client_ctx(version)) as c:
            assert c.sock.version() == name
            assert c.request("GET", "/any/v", host="a.test").status == 200


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_versions_refused(dp, version):
    ctx = client_ctx(getattr(ssl.TLSVersion, version), "DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)) as ei:
        served(dp.tls, "a.test", ctx)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(ei.value), "this client cannot offer %s" % version
    assert isinstance(ei.value, ConnectionError) or "PROTOCOL_VERSION" in str(ei.value), ei.value
    assert_healthy(dp)


def test_alpn_http11(dp):
    ctx = client_ctx(alpn=["h2", "http/1.1"])
    with tls_conn(dp.tls, "a.test", ctx) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.request("GET", "/any/alpn", host="a.test").status == 200


def test_websocket_over_tls(dp):
    with tls_conn(dp.tls, "a.test") as c:
        resp, key = h1.ws_handshake(c, "/any/ws", host="a.test")
        assert resp.status == 101, resp
        assert resp.header("sec-websocket-accept") == h1.ws_accept(key)
        for payload in (b"hello", os.urandom(200000)):
            c.send(h1.ws_frame(0x2, payload))
            fin, op, data, masked = h1.ws_read_frame(c)
            assert (fin, op, data, masked) == (True, 0x2, payload, False)
        c.send(h1.ws_frame(0x8, b"\x03\xe8"))
        assert h1.ws_read_frame(c)[1] == 0x8
        assert c.wait_closed(5)[0]


# ------------------------------------------------------------------ bad clients


def client_hello(sni="a.test"):
    """The bytes of a real ClientHello, made without a socket."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = INSECURE.wrap_bio(inc, out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


GARBAGE = {
    "zeros": b"\x00" * 64,
    "text": b"GARBAGE " * 512,
    "bad_handshake_type": b"\x16\x03\x01\x00\x04\xff\x00\x00\x00",
    "alert_first": b"\x15\x03\x03\x00\x02\x02\x28",
    "app_data_first": b"\x17\x03\x03\x00\x05hello",
    "huge_record": b"\x16\x03\x01\xff\xff" + b"\x01" * 300,  # longer than allowed
}


@pytest.mark.parametrize("garbage", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_instead_of_client_hello(dp, garbage):
    with h1.Conn(dp.tls, timeout=5) as c:
        c.send(garbage)
        closed, extra = c.wait_closed(10)
        assert closed, "the data plane kept a connection that sent garbage"
        assert not extra.startswith(b"HTTP/"), extra[:100]
    assert_healthy(dp)


def test_client_closing_mid_handshake(dp):
    for _ in range(20):
        with h1.Conn(dp.tls, timeout=5) as c:
            c.send(client_hello()[:40])
    for _ in range(20):
        with h1.Conn(dp.tls, timeout=5) as c:
            c.send(client_hello())
    assert_healthy(dp)


@pytest.fixture
def short_timeouts_dp(sluice_factory, upstream, pki):
    return start_tls(sluice_factory, tls_decl(pki, upstream),
                     {"client_header_timeout": "2s", "keepalive_timeout": "2s"})


@pytest.mark.parametrize("stall", ["nothing", "half_hello", "whole_hello"])
def test_stalled_handshake_is_closed(short_timeouts_dp, stall):
    """A client that connects and stalls before finishing the handshake is
    closed after the header timeout; meanwhile others are served."""
    dp = short_timeouts_dp
    c = h1.Conn(dp.tls, timeout=5)
    try:
        hello = client_hello()
        if stall == "half_hello":
            c.send(hello[:len(hello) // 2])
        elif stall == "whole_hello":
            c.send(hello)  # then never answers the ServerHello
        assert_healthy(dp)
        closed, _ = c.wait_closed(15)
        assert closed, "a handshake stalled (%s) is still open after 15 s" % stall
    finally:
        c.close()
    assert_healthy(dp)


def test_many_stalled_handshakes_do_not_block_others(short_timeouts_dp):
    dp = short_timeouts_dp
    conns = [h1.Conn(dp.tls, timeout=5) for _ in range(50)]
    try:
        hello = client_hello()
        for c in conns:
            c.send(hello[:20])
        assert_healthy(dp)
    finally:
        for c in conns:
            c.close()
    assert_healthy(dp)


def test_idle_tls_keepalive_closed_after_timeout(short_timeouts_dp):
    dp = short_timeouts_dp
    with tls_conn(dp.tls, "a.test") as c:
        assert c.request("GET", "/any/x", host="a.test").status == 200
        closed, _ = c.wait_closed(15)
        assert closed


# ------------------------------------------------------------------ SIGHUP


def test_sighup_serves_new_certificates_to_new_connections(sluice_factory, upstream, pki):
    dp = start_tls(sluice_factory, tls_decl(pki, upstream))
    assert served(dp.tls, "a.test") == pki.exact.der
    assert served(dp.tls, "gone.test") == pki.gone.der
    old = tls_conn(dp.tls, "a.test")
    try:
        assert old.request("GET", "/any/1", host="a.test").status == 200
        certs = [c for c in certificates(pki) if c["snis"][0]["name"] not in
                 ("a.test", "gone.test")]
        certs += [cert_entity(pki.rotated, "a.test"), cert_entity(pki.fresh, "new.test")]
        dp.write_declarative(tls_decl(pki, upstream, certs))
        dp.reload()
        wait_until(lambda: served(dp.tls, "a.test") == pki.rotated.der, 10,
                   what="the rotated certificate for a.test after SIGHUP")
        assert served(dp.tls, "new.test") == pki.fresh.der
        default = x509.load_pem_x509_certificate(default_files(dp)[0].read_bytes())
        assert served(dp.tls, "gone.test") == default.public_bytes(serialization.Encoding.DER)
        assert served(dp.tls, "x.wild.test") == pki.wild.der
        # A connection made before the reload keeps working.
        assert old.request("GET", "/any/2", host="a.test").status == 200
    finally:
        old.close()
    assert_healthy(dp)


def test_handshakes_during_reloads(sluice_factory, upstream, pki):
    """New TLS connections keep succeeding while SIGHUP swaps the certificates
    under them, each getting the old or the new certificate, never an error."""
    dp = start_tls(sluice_factory, tls_decl(pki, upstream))
    other = [c for c in certificates(pki) if c["snis"][0]["name"] != "a.test"]
    versions = [tls_decl(pki, upstream, other + [cert_entity(p, "a.test")])
                for p in (pki.rotated, pki.exact)]
    allowed = {pki.exact.der, pki.rotated.der}
    stop = threading.Event()
    failures, count = [], [0]

    def run(i):
        sni = "a.test" if i % 2 == 0 else "x.wild.test"
        while not stop.is_set():
            try:
                with tls_conn(dp.tls, sni, client_ctx(ssl.TLSVersion.TLSv1_2 if i % 3 == 0
                                                      else None)) as c:
                    der = c.sock.getpeercert(binary_form=True)
                    if der not in (allowed if sni == "a.test" else {pki.wild.der}):
                        failures.append("%s: got %s" % (sni, name_of(der)))
                    for _ in range(i % 3 + 1):
                        resp = c.request("GET", "/any/x", host=sni)
                        if resp.status != 200:
                            failures.append(repr(resp)[:200])
                count[0] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    try:
        for n in range(8):
            dp.write_declarative(versions[n % 2])
            dp.reload()
            want = (pki.rotated if n % 2 == 0 else pki.exact).der
            wait_until(lambda: served(dp.tls, "a.test") == want, 10, what="reload %d" % n)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert count[0] > 50, "only %d connections made" % count[0]
    assert not failures, "%d failures, e.g. %s" % (len(failures), failures[:5])
    assert_healthy(dp)


def test_sighup_with_a_bad_certificate_keeps_the_old_ones(sluice_factory, upstream, pki):
    dp = start_tls(sluice_factory, tls_decl(pki, upstream))
    log_before = len(dp.stderr())
    bad = cert_entity(pki.rotated, "a.test")
    bad["key"] = pki.fresh.key_pem
    certs = [c for c in certificates(pki) if c["snis"][0]["name"] != "a.test"] + [bad]
    dp.write_declarative(tls_decl(pki, upstream, certs))
    dp.reload()
    wait_until(lambda: "keeping the current configuration" in dp.stderr()[log_before:], 10,
               what="the reload to be refused")
    assert "certificates[" in dp.stderr()[log_before:]
    assert served(dp.tls, "a.test") == pki.exact.der
    assert_healthy(dp)


# ------------------------------------------------------------------ hybrid


def test_certificates_from_the_control_plane(hybrid_cp, sluice_factory, cluster_cert,  # noqa: F811
                                             upstream, pki):
    """Certificates and snis made through the control plane's Admin API reach
    a data plane's TLS listener, and a PATCH of the certificate rotates it."""
    cp = hybrid_cp()
    conf = dp_conf(cluster_addr(cp), cluster_cert)
    conf["proxy_listen"] = "127.0.0.1:0, 127.0.0.1:0 ssl"
    dp = sluice_factory(None, conf, wait_ready=False)
    dp.wait_addrs()
    dp.proxy, dp.tls = proxy_listeners(dp)
    assert cp.put("/services/echo", {"url": upstream.url}).status in (200, 201)
    assert cp.put("/services/echo/routes/tls", {"paths": ["/tls"],
                                                "protocols": ["https"]}).status in (200, 201)
    r = cp.request("POST", "/certificates", form={"cert": pki.exact.cert_pem,
                                                  "key": pki.exact.key_pem})
    assert r.status == 201, r
    cert_id = r.json["id"]
    assert cp.post("/certificates/%s/snis" % cert_id, {"name": "a.test"}).status == 201
    wait_until(lambda: served(dp.tls, "a.test") == pki.exact.der, 15,
               what="the certificate on the data plane")
    resp = h1.get(dp.tls, "/tls/x", host="a.test", ssl_context=INSECURE,
                  server_hostname="a.test")
    assert resp.status == 200, resp
    assert dp.get("/tls/x", host="a.test").status == 426
    # A key that does not match is refused by the Admin API.
    r = cp.patch("/certificates/" + cert_id, {"cert": pki.rotated.cert_pem,
                                               "key": pki.fresh.key_pem})
    assert r.status == 400, r
    r = cp.patch("/certificates/" + cert_id, {"cert": pki.rotated.cert_pem,
                                               "key": pki.rotated.key_pem})
    assert r.status == 200, r
    wait_until(lambda: served(dp.tls, "a.test") == pki.rotated.der, 15,
               what="the rotated certificate on the data plane")
    # Moving the name to another certificate entity, then deleting the old one.
    r = cp.post("/certificates", {"cert": pki.fresh.cert_pem, "key": pki.fresh.key_pem})
    assert r.status == 201, r
    assert cp.patch("/snis/a.test", {"certificate": {"id": r.json["id"]}}).status == 200
    wait_until(lambda: served(dp.tls, "a.test") == pki.fresh.der, 15,
               what="the sni moved to another certificate")
    assert cp.delete("/certificates/" + cert_id).status == 204
    assert served(dp.tls, "a.test") == pki.fresh.der


# ------------------------------------------------------------------ sluice-dp -t


def check(tmp_path, decl):
    conf = tmp_path / "sluice.conf"
    conf.write_text("proxy_listen = 127.0.0.1:0, 127.0.0.1:0 ssl\nstatus_listen = off\n"
                    "workers = 1\n")
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(decl))
    return run_dp(["-c", conf, "-p", tmp_path, "--declarative", path, "-t"])


def test_check_accepts_certificates(tmp_path, pki):
    res = check(tmp_path, declarative([], certificates=certificates(pki)))
    assert res.returncode == 0, res.stderr


def test_check_key_not_matching_names_the_entity(tmp_path, pki):
    bad = cert_entity(pki.fresh, "new.test")
    bad["key"] = pki.exact.key_pem
    res = check(tmp_path, declarative([], certificates=[cert_entity(pki.exact, "a.test"), bad]))
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if "certificates[1]" in line]
    assert lines, "no error line names certificates[1]:\n" + res.stderr
    assert not any("certificates[0]" in line for line in res.stderr.splitlines()), res.stderr


def test_check_cert_alt_key_not_matching_names_the_entity(tmp_path, pki):
    bad = cert_entity(pki.dual_rsa, "dual.test", alt=pki.dual_ec)
    bad["key_alt"] = pki.ec_only.key_pem
    res = check(tmp_path, declarative([], certificates=[bad]))
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "certificates[0]" in res.stderr, res.stderr


def test_check_cert_not_pem_names_the_field(tmp_path, pki):
    bad = cert_entity(pki.exact, "a.test")
    bad["cert"] = "not a certificate"
    res = check(tmp_path, declarative([], certificates=[bad]))
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "certificates[0].cert" in res.stderr, res.stderr


def test_check_cert_alt_of_the_same_type_refused(tmp_path, pki):
    """As Kong: cert_alt must be of the other key type (RSA beside ECDSA)."""
    bad = cert_entity(pki.dual_rsa, "dual.test", alt=pki.exact)
    res = check(tmp_path, declarative([], certificates=[bad]))
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "certificates[0]" in res.stderr, res.stderr
