"""Acknowledged writes survive restarts and SIGKILL."""

import signal
import threading
import time

from .conftest import Client


def test_sigkill_during_burst_keeps_acknowledged_writes(cp):
    acked = []
    stop = threading.Event()

    def writer():
        c = Client(cp.host, cp.port)
        for i in range(1000):
            if stop.is_set():
                return
            try:
                r = c.post("/services", {"name": "burst-%04d" % i, "host": "b.test"})
            except OSError:
                return
            if r.status == 201:
                acked.append(r.json["id"])
            else:
                return

    t = threading.Thread(target=writer)
    t.start()
    while len(acked) < 300 and t.is_alive():
        time.sleep(0.001)
    cp.kill()
    stop.set()
    t.join(timeout=60)
    assert len(acked) >= 300
    cp.start()
    for eid in acked:
        r = cp.get("/services/" + eid)
        assert r.status == 200, (eid, r)
    total = 0
    r = cp.get("/services", query={"size": 1000})
    total = len(r.json["data"])
    assert total >= len(acked)
    # and the store is writable afterwards
    assert cp.post("/services", {"name": "after", "host": "a.test"}).status == 201


def test_sigint_exits_cleanly(cp):
    cp.post("/services", {"name": "s", "host": "a.test"})
    assert cp.stop(sig=signal.SIGINT) == 0
    cp.start()
    assert cp.get("/services/s").status == 200
