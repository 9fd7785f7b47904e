"""access_log: one JSON object per line with at least time, client_ip,
method, path, status, route id, service id and request_time_ms; complete
lines under concurrency.
"""

import json
import threading

import pytest

from conftest import declarative, route, service, wait_until

ROUTE_ID = "0b7e8a52-5e5e-4b4b-8c8c-0a0a0a0a0a01"
SERVICE_ID = "0b7e8a52-5e5e-4b4b-8c8c-0a0a0a0a0b01"


def decl(upstream):
    return declarative([service("logged", upstream.url, id=SERVICE_ID, routes=[
        route("logged-route", id=ROUTE_ID, paths=["/ok"]),
        route("delayed", paths=["/d"])])])


def flatten(obj, prefix=""):
    out = {}
    for k, v in obj.items():
        key = prefix + k
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def field(entry, *names):
    """The value of the first of names present in the flattened entry (KeyError if none)."""
    flat = flatten(entry)
    for n in names:
        if n in flat:
            return flat[n]
    raise KeyError("none of %r in %r" % (names, sorted(flat)))


def read_log(path):
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    assert lines[-1] == "", "last line not terminated: %r" % lines[-1][:200]
    return [json.loads(line) for line in lines[:-1]]


@pytest.fixture
def logged(sluice_factory, upstream, tmp_path):
    log = tmp_path / "access.log"
    dp = sluice_factory(decl(upstream), {"access_log": str(log)})
    return dp, log


def wait_entries(log, n):
    return wait_until(lambda: len(read_log(log)) >= n and read_log(log), 10,
                      what="%d access log lines" % n)


def test_access_log_fields(logged):
    dp, log = logged
    assert dp.get("/ok/x?q=1").status == 200
    assert dp.request("POST", "/ok", body=b"abc").status == 200
    assert dp.get("/nothing").status == 404
    entries = wait_entries(log, 3)
    assert len(entries) == 3, entries
    get, post, nf = entries
    for e in entries:
        assert field(e, "time")
        assert field(e, "client_ip") == "127.0.0.1"
        assert isinstance(field(e, "request_time_ms"), (int, float))
        assert field(e, "request_time_ms") >= 0
    assert field(get, "method") == "GET"
    assert field(get, "path").startswith("/ok/x")
    assert field(get, "status") == 200
    assert field(get, "route_id", "route.id", "route") == ROUTE_ID
    assert field(get, "service_id", "service.id", "service") == SERVICE_ID
    assert field(post, "method") == "POST"
    assert field(nf, "status") == 404
    assert field(nf, "path") == "/nothing"
    try:
        rid = field(nf, "route_id", "route.id", "route")
    except KeyError:
        rid = None
    assert rid in (None, ""), nf


def test_access_log_request_time(logged):
    dp, log = logged
    assert dp.get("/d/delay/250").status == 200
    (entry,) = wait_entries(log, 1)
    assert field(entry, "request_time_ms") >= 240, entry


def test_access_log_complete_lines_under_concurrency(logged):
    dp, log = logged
    n_threads, per = 4, 50
    errors = []

    def run(i):
        try:
            with dp.conn() as c:
                for j in range(per):
                    assert c.request("GET", "/ok/%d/%d" % (i, j)).status == 200
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    entries = wait_entries(log, n_threads * per)
    assert len(entries) == n_threads * per
    paths = sorted(field(e, "path") for e in entries)
    assert paths == sorted("/ok/%d/%d" % (i, j) for i in range(n_threads) for j in range(per))


def test_access_log_flushed_on_shutdown(logged):
    dp, log = logged
    for i in range(10):
        assert dp.get("/ok/%d" % i).status == 200
    dp.stop()
    assert len(read_log(log)) == 10
