"""The status listener: GET /status (JSON), /status/ready, /metrics
(Prometheus text format: requests by status and route, a latency histogram,
a connections gauge, the configuration hash).
"""

import re

import pytest

from conftest import declarative, route, service, wait_until

ROUTE_ID = "6a1f4f2e-1c1e-4c55-9a57-2f0b9f0d0a01"
SERVICE_ID = "6a1f4f2e-1c1e-4c55-9a57-2f0b9f0d0b01"

SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})?'
    r' (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)( -?[0-9]+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def decl(upstream, extra=()):
    return declarative([service("okservice", upstream.url, id=SERVICE_ID, routes=[
        route("okroute", id=ROUTE_ID, paths=["/ok"])] + list(extra))])


@pytest.fixture(scope="module")
def dp(module_sluice_factory, upstream):
    d = module_sluice_factory(decl(upstream))
    for _ in range(7):
        assert d.get("/ok").status == 200
    for _ in range(3):
        assert d.get("/nothing").status == 404
    return d


def parse_metrics(text):
    samples = []  # (name, {labels}, value)
    types = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a Prometheus sample line: %r" % line
        labels = dict(LABEL_RE.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples, types


def metrics(dp):
    resp = dp.status_get("/metrics")
    assert resp.status == 200
    assert (resp.header("content-type") or "").startswith("text/plain"), resp.headers
    return parse_metrics(resp.body.decode())


def walk(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, prefix + "." + k)
    else:
        yield prefix, obj


def route_requests(samples, code):
    """Sum of request-counter samples for our route with the given status."""
    total = 0
    found = False
    for name, labels, value in samples:
        if not name.endswith("_total") or "request" not in name:
            continue
        status = labels.get("code", labels.get("status"))
        if status != str(code):
            continue
        if code == 200 and not any(v in (ROUTE_ID, "okroute") for v in labels.values()):
            continue
        found = True
        total += value
    return total if found else None


# ------------------------------------------------------------------ /status


def test_status_json(dp):
    resp = dp.status_get("/status")
    assert resp.status == 200
    assert (resp.header("content-type") or "").startswith("application/json")
    body = resp.json()
    h = body.get("configuration_hash")
    assert isinstance(h, str) and re.fullmatch(r"[0-9a-f]{8,}", h), body
    fields = dict(walk(body))
    conn = {k: v for k, v in fields.items() if "connection" in k.lower()}
    assert conn and all(isinstance(v, int) for v in conn.values()), body
    reqs = {k: v for k, v in fields.items() if "request" in k.lower() and isinstance(v, int)}
    assert reqs and max(reqs.values()) >= 10, body


def test_status_request_count_increases(dp):
    def total():
        fields = dict(walk(dp.status_get("/status").json()))
        return max(v for k, v in fields.items() if "request" in k.lower() and isinstance(v, int))
    before = total()
    for _ in range(5):
        dp.get("/ok")
    assert total() >= before + 5


def test_status_ready(dp):
    resp = dp.status_get("/status/ready")
    assert resp.status == 200


def test_status_unknown_path_404(dp):
    assert dp.status_get("/no-such-status-path").status == 404


def test_status_not_on_proxy_port(dp):
    resp = dp.get("/status")
    assert resp.status == 404
    assert resp.json()["message"] == "no Route matched with those values"


# ------------------------------------------------------------------ /metrics


def test_metrics_format_and_families(dp):
    samples, types = metrics(dp)
    names = {n for n, _, _ in samples}
    assert any(t == "counter" for t in types.values()), types
    assert any(t == "histogram" for t in types.values()), types
    # connections gauge
    assert any("connection" in n for n in names), sorted(names)
    assert any(types.get(n) == "gauge" and "connection" in n for n in types), types
    # configuration hash
    assert any("config" in n and ("hash" in n or any("hash" in k for k in lb))
               for n, lb, _ in samples), sorted(names)


def test_metrics_requests_by_status_and_route(dp):
    samples, _ = metrics(dp)
    ok = route_requests(samples, 200)
    assert ok is not None and ok >= 7, [s for s in samples if "request" in s[0]]
    nf = route_requests(samples, 404)
    assert nf is not None and nf >= 3, [s for s in samples if "request" in s[0]]


def test_metrics_counter_exact_delta(dp):
    before = route_requests(metrics(dp)[0], 200)
    for _ in range(5):
        assert dp.get("/ok").status == 200
    after = route_requests(metrics(dp)[0], 200)
    assert after - before == 5, (before, after)


def test_metrics_latency_histogram(dp):
    samples, types = metrics(dp)
    hists = [n for n, t in types.items() if t == "histogram"]
    assert hists
    for h in hists:
        buckets = [(lb, v) for n, lb, v in samples if n == h + "_bucket"]
        assert buckets, h
        assert any(lb.get("le") == "+Inf" for lb, _ in buckets), h
        assert any(n == h + "_sum" for n, _, _ in samples), h
        counts = [v for n, _, v in samples if n == h + "_count"]
        assert counts and sum(counts) >= 7, h
        # cumulative buckets: non-decreasing in le within one label set
        series = {}
        for lb, v in buckets:
            key = tuple(sorted((k, x) for k, x in lb.items() if k != "le"))
            le = float("inf") if lb["le"] == "+Inf" else float(lb["le"])
            series.setdefault(key, []).append((le, v))
        for key, pts in series.items():
            vals = [v for _, v in sorted(pts)]
            assert vals == sorted(vals), (h, key, pts)


def config_hash_sample(samples):
    for n, lb, v in samples:
        if "config" in n and ("hash" in n or any("hash" in k for k in lb)):
            return n, sorted(lb.items()), v
    return None


def test_config_hash_changes_on_reload(sluice_factory, upstream):
    d = sluice_factory(decl(upstream))
    h0 = d.status_get("/status").json()["configuration_hash"]
    m0 = config_hash_sample(metrics(d)[0])
    d.write_declarative(decl(upstream, [route("extra", paths=["/extra"])]))
    d.reload()
    wait_until(lambda: d.get("/extra").status == 200, 10, what="reloaded route")
    h1_ = d.status_get("/status").json()["configuration_hash"]
    assert h1_ != h0
    m1 = config_hash_sample(metrics(d)[0])
    assert m0 is not None and m1 != m0, (m0, m1)
