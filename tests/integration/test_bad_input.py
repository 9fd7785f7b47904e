"""HTTP/1.1 strictness (RFC 9112, RFC 9110). Every bad-input rule is sent over a
raw socket; each must get its exact status with a short JSON body
{"message": ...}, the connection must be closed after the response, nothing
may reach the upstream (where the head itself is bad), and a new connection
must still be served.
"""

import pytest

import h1
from conftest import Upstream, declarative, route, service


@pytest.fixture(scope="module")
def guarded_upstream(tmp_path_factory):
    u = Upstream(tmp_path_factory.mktemp("bad-input-upstream"), "guarded")
    yield u
    u.stop()


# A fresh process per test, so that one crash is pinned on the input that
# caused it; test_all_bad_inputs_on_one_process covers accumulated damage.
@pytest.fixture
def dp(sluice_factory, guarded_upstream):
    return sluice_factory(declarative([service("echo", guarded_upstream.url, routes=[
        route("all", paths=["/"])])]))


@pytest.fixture
def capped_dp(sluice_factory, guarded_upstream):
    return sluice_factory(declarative([service("echo", guarded_upstream.url, routes=[
        route("all", paths=["/"])])]), {"client_max_body_size": "1k"})


def req(head_lines, body=b"", request_line=b"POST / HTTP/1.1", host=True):
    lines = [request_line]
    if host:
        lines.append(b"Host: sluice.test")
    lines += [x if isinstance(x, bytes) else x.encode("latin-1") for x in head_lines]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def get_line(target):
    return b"GET " + target + b" HTTP/1.1"


TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100a5010000a10303") + bytes(range(32)) + bytes.fromhex(
    "000020cca8cca9c02fc030c02bc02cc013c009c014c00a009c009d002f0035c012000a01000058")

# id, raw bytes, expected status, head_is_bad (nothing may reach the upstream)
CASES = [
    # --- message framing (RFC 9112 6)
    ("cl_and_te", req(["Content-Length: 5", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
     400, True),
    ("te_and_cl", req(["Transfer-Encoding: chunked", "Content-Length: 5"], b"0\r\n\r\n"),
     400, True),
    ("cl_and_te_smuggle", req(["Content-Length: 40", "Transfer-Encoding: chunked"],
                              b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"), 400, True),
    ("two_different_cl", req(["Content-Length: 5", "Content-Length: 6"], b"hello!"), 400, True),
    ("cl_list_differing", req(["Content-Length: 5, 6"], b"hello!"), 400, True),
    ("cl_not_number", req(["Content-Length: abc"]), 400, True),
    ("cl_negative", req(["Content-Length: -1"]), 400, True),
    ("cl_plus_sign", req(["Content-Length: +5"], b"hello"), 400, True),
    ("cl_hex", req(["Content-Length: 0x5"], b"hello"), 400, True),
    ("cl_inner_space", req(["Content-Length: 5 5"], b"hello"), 400, True),
    ("cl_empty", req(["Content-Length: "]), 400, True),
    ("cl_overflow", req(["Content-Length: 99999999999999999999999999"]), 400, True),
    ("te_gzip_only", req(["Transfer-Encoding: gzip"], b"xxxx"), 400, True),
    ("te_chunked_not_final", req(["Transfer-Encoding: chunked, gzip"], b"0\r\n\r\n"), 400, True),
    ("te_chunked_then_other_header", req(["Transfer-Encoding: chunked",
                                          "Transfer-Encoding: gzip"], b"0\r\n\r\n"), 400, True),
    ("te_unknown_coding", req(["Transfer-Encoding: foobar, chunked"], b"0\r\n\r\n"), 501, True),
    # --- header syntax (RFC 9112 5, RFC 9110 5.5)
    ("obs_fold_space", req(["X-Foo: a", " b"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("obs_fold_tab", req(["X-Foo: a", "\tb"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("bare_cr_in_value", req([b"X-Foo: a\rb"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("bare_cr_ends_line", req([b"X-Foo: a\rX-Bar: b"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("nul_in_value", req([b"X-Foo: a\x00b"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("space_in_name", req(["X Foo: a"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("paren_in_name", req(["X(Foo): a"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("space_before_colon", req(["X-Foo : a"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("empty_name", req([": a"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("non_ascii_name", req([b"X-F\xc3\xb6o: a"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("no_colon", req(["X-Foo a"], request_line=b"GET / HTTP/1.1"), 400, True),
    # --- chunked body syntax (RFC 9112 7.1)
    ("bad_chunk_size", req(["Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n"),
     400, False),
    ("chunk_size_overflow", req(["Transfer-Encoding: chunked"],
                                b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400, False),
    ("chunk_size_negative", req(["Transfer-Encoding: chunked"], b"-5\r\nhello\r\n0\r\n\r\n"),
     400, False),
    ("chunk_data_without_crlf", req(["Transfer-Encoding: chunked"], b"5\r\nhelloXX0\r\n\r\n"),
     400, False),
    # --- Host (RFC 9112 3.2)
    ("missing_host", req([], request_line=b"GET / HTTP/1.1", host=False), 400, True),
    ("two_hosts", req(["Host: other.test"], request_line=b"GET / HTTP/1.1"), 400, True),
    ("bad_host_value", req(["Host: exa mple.test"], request_line=b"GET / HTTP/1.1", host=False),
     400, True),
    ("absolute_uri_host_mismatch", req([], request_line=b"GET http://other.test/ HTTP/1.1"),
     400, True),
    # --- request line (RFC 9112 3)
    ("version_2", req([], request_line=b"GET / HTTP/2.0"), 505, True),
    ("version_3", req([], request_line=b"GET / HTTP/3.0"), 505, True),
    ("version_garbage", req([], request_line=b"GET / HTTX/1.1"), 400, True),
    ("version_lowercase", req([], request_line=b"GET / http/1.1"), 400, True),
    ("space_in_target", req([], request_line=b"GET /a b HTTP/1.1"), 400, True),
    ("nul_in_target", req([], request_line=b"GET /a\x00b HTTP/1.1"), 400, True),
    ("double_space", req([], request_line=b"GET  / HTTP/1.1"), 400, True),
    ("bad_method_char", req([], request_line=b"G(T / HTTP/1.1"), 400, True),
    ("target_without_slash", req([], request_line=b"GET foo HTTP/1.1"), 400, True),
    ("tls_client_hello", TLS_CLIENT_HELLO, 400, True),
    # --- limits
    ("request_line_too_long", req([], request_line=get_line(b"/" + b"a" * 9000)), 414, True),
    ("header_block_too_big", req(["X-H%d: %s" % (i, "v" * 1000) for i in range(40)],
                                 request_line=b"GET / HTTP/1.1"), 431, True),
    ("one_header_too_big", req(["X-Big: " + "v" * 33000], request_line=b"GET / HTTP/1.1"),
     431, True),
    ("too_many_headers", req(["X-H%d: v" % i for i in range(120)],
                             request_line=b"GET / HTTP/1.1"), 431, True),
]


def check_error(conn, expected):
    resp = conn.read_response()
    assert resp.status == expected, resp
    assert (resp.header("content-type") or "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body.get("message"), str) and body["message"], body
    closed, extra = conn.wait_closed(5)
    assert closed, "connection left open after %d" % expected
    assert extra == b"", "bytes after the error response: %r" % extra[:200]
    return resp


def still_healthy(dp):
    resp = dp.get("/after")
    assert resp.status == 200, resp
    assert resp.json()["target"] == "/after"


@pytest.mark.parametrize("name,raw,expected,head_bad", CASES, ids=[c[0] for c in CASES])
def test_bad_input(dp, guarded_upstream, name, raw, expected, head_bad):
    before = guarded_upstream.stats()["requests"]
    with dp.conn() as c:
        c.send(raw)
        check_error(c, expected)
    if head_bad:
        assert guarded_upstream.stats()["requests"] == before, \
            "a request with a bad head reached the upstream"
    still_healthy(dp)


def test_all_bad_inputs_on_one_process(dp):
    """Every bad input in turn against one process, each on its own
    connection, with a good request between them."""
    for name, raw, expected, _ in CASES:
        with dp.conn() as c:
            c.send(raw)
            try:
                check_error(c, expected)
            except (AssertionError, h1.ProtocolError) as e:
                raise AssertionError("%s: %s" % (name, e)) from e
        still_healthy(dp)


SAME_CONN = [c for c in CASES if c[0] in (
    "cl_and_te", "te_and_cl", "cl_and_te_smuggle", "two_different_cl", "cl_not_number",
    "obs_fold_space", "bare_cr_in_value", "nul_in_value", "missing_host", "bad_chunk_size")]


@pytest.mark.parametrize("name,raw,expected,head_bad", SAME_CONN, ids=[c[0] for c in SAME_CONN])
def test_bad_input_after_good_request_on_same_connection(dp, name, raw, expected, head_bad):
    with dp.conn() as c:
        assert c.request("GET", "/first").status == 200
        c.send(raw)
        check_error(c, expected)
    still_healthy(dp)


def test_body_over_client_max_body_size(capped_dp, guarded_upstream):
    before = guarded_upstream.stats()["requests"]
    with capped_dp.conn() as c:
        c.send(req(["Content-Length: 5000"], b"x" * 5000))
        check_error(c, 413)
    assert guarded_upstream.stats()["requests"] == before
    still_healthy(capped_dp)


def test_chunked_body_over_client_max_body_size(capped_dp):
    with capped_dp.conn() as c:
        c.send(req(["Transfer-Encoding: chunked"], b"400\r\n" + b"x" * 1024 + b"\r\n"
                   + b"400\r\n" + b"y" * 1024 + b"\r\n0\r\n\r\n"))
        check_error(c, 413)
    still_healthy(capped_dp)


def test_limits_not_hit_by_reasonable_requests(dp):
    hs = [("X-H%d" % i, "v" * 100) for i in range(90)]
    resp = dp.get("/" + "a" * 4000, hs)
    assert resp.status == 200, resp


def test_absolute_uri_matching_host_accepted(dp):
    with dp.conn() as c:
        c.send(req([], request_line=b"GET http://sluice.test/abs?q=1 HTTP/1.1"))
        resp = c.read_response()
    assert resp.status == 200, resp
    assert resp.json()["target"] == "/abs?q=1"


def test_leading_empty_line_tolerated(dp):
    """RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line."""
    with dp.conn() as c:
        c.send(b"\r\n" + h1.build_request("GET", "/lead"))
        resp = c.read_response()
    assert resp.status == 200
    assert resp.json()["target"] == "/lead"


def test_http11_minor_version_above_1_accepted(dp):
    """RFC 9110 2.5: a higher minor version is processed as the highest one implemented."""
    with dp.conn() as c:
        c.send(req([], request_line=b"GET /minor HTTP/1.2"))
        resp = c.read_response()
    assert resp.status == 200, resp


def test_garbage_then_close_leaves_server_healthy(dp):
    for junk in (b"\x00" * 100, b"\xff\xfe\xfd" * 50, b"GET", b"GET / HTTP/1.1\r\nHost: x"):
        with dp.conn() as c:
            c.send(junk)
    still_healthy(dp)


@pytest.mark.parametrize("conf,raw,expected", [
    ({"max_request_line": "1k"}, req([], request_line=get_line(b"/" + b"a" * 2000)), 414),
    ({"max_header_size": "4k"}, req(["X-Big: " + "v" * 5000], request_line=b"GET / HTTP/1.1"),
     431),
    ({"max_headers": "10"}, req(["X-H%d: v" % i for i in range(12)],
                                request_line=b"GET / HTTP/1.1"), 431),
], ids=["max_request_line", "max_header_size", "max_headers"])
def test_configured_limits(sluice_factory, guarded_upstream, conf, raw, expected):
    d = sluice_factory(declarative([service("echo", guarded_upstream.url, routes=[
        route("all", paths=["/"])])]), conf)
    # Below the configured limit: served.
    assert d.get("/" + "a" * 500, [("X-H%d" % i, "v") for i in range(5)]).status == 200
    with d.conn() as c:
        c.send(raw)
        check_error(c, expected)
    still_healthy(d)
