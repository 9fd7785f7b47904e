#!/usr/bin/env python3
"""Hybrid-mode benchmark (`make bench-sync`): one sluice-cp, five sluice-dp
data planes on loopback, a shared-mode cluster certificate.

a. Propagation latency: 200 sequential route creations through the Admin API;
   for each, the time from the 2xx answer until the new route serves on all
   five data planes (polled over keep-alive connections).
b. With 10,000 services and 10,000 routes loaded: one-route change
   propagation over 50 changes, the bytes each data plane received for one
   change, the full snapshot size, the time a data plane takes to build and
   swap a full generation, and data-plane RSS.

Every figure is measured in this run on this machine; nothing is asserted.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cp_bench import config_doc, env_int, fmt_bytes  # noqa: E402


def wait_file(path, proc, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        try:
            text = open(path).read().split()
            if text:
                return text[0]
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("%s wrote no %s" % (what, path))


class Proc:
    def __init__(self, args, env, log):
        full = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        full.update(env)
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(args, env=full, stdout=self.log, stderr=self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def conn_to(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=10)


def call(c, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body,
              headers=headers)
    r = c.getresponse()
    return r.status, r.read()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


class Cluster:
    def __init__(self, build, root, ndp):
        self.root = root
        cert, key = os.path.join(root, "cluster.crt"), os.path.join(root, "cluster.key")
        subprocess.run([os.path.join(build, "sluice-cp"), "gen-cert", cert, key], check=True,
                       capture_output=True)
        cp_prefix = os.path.join(root, "cp")
        self.cp = Proc([os.path.join(build, "sluice-cp"), "-p", cp_prefix], {
            "SLUICE_ADMIN_LISTEN": "127.0.0.1:0", "SLUICE_CLUSTER_LISTEN": "127.0.0.1:0",
            "SLUICE_CLUSTER_CERT": cert, "SLUICE_CLUSTER_CERT_KEY": key,
            "SLUICE_LOG_LEVEL": os.environ.get("SYNC_BENCH_LOG_LEVEL", "notice"),
            "SLUICE_LMDB_MAP_SIZE": "4g"},
            os.path.join(root, "cp.log"))
        self.admin = wait_file(os.path.join(cp_prefix, "admin.addr"), self.cp.proc, "sluice-cp")
        cluster = wait_file(os.path.join(cp_prefix, "cluster.addr"), self.cp.proc, "sluice-cp")
        self.build, self.cert, self.key, self.cluster = build, cert, key, cluster
        self.dps, self.proxies, self.statuses = [], [], []
        for i in range(ndp):
            self.dps.append(None)
            self.proxies.append(None)
            self.statuses.append(None)
            self.start_dp(i)
        self.ac = conn_to(self.admin)
        self.pc = [conn_to(a) for a in self.proxies]
        self.sc = [conn_to(a) for a in self.statuses]

    def start_dp(self, i):
        prefix = os.path.join(self.root, "dp%d" % i)
        for name in ("proxy.addr", "status.addr"):
            try:
                os.unlink(os.path.join(prefix, name))
            except OSError:
                pass
        dp = Proc([os.path.join(self.build, "sluice-dp"), "-p", prefix], {
            "SLUICE_ROLE": "data_plane", "SLUICE_CLUSTER_CONTROL_PLANE": self.cluster,
            "SLUICE_CLUSTER_CERT": self.cert, "SLUICE_CLUSTER_CERT_KEY": self.key,
            "SLUICE_PROXY_LISTEN": "127.0.0.1:0", "SLUICE_STATUS_LISTEN": "127.0.0.1:0",
            "SLUICE_WORKERS": "1",
            "SLUICE_LOG_LEVEL": os.environ.get("SYNC_BENCH_LOG_LEVEL", "notice")},
            os.path.join(self.root, "dp%d.log" % i))
        self.dps[i] = dp
        self.proxies[i] = wait_file(os.path.join(prefix, "proxy.addr"), dp.proc, "dp")
        self.statuses[i] = wait_file(os.path.join(prefix, "status.addr"), dp.proc, "dp")

    def restart_dp_empty(self, i):
        """Restarts data plane i without its persisted configuration, so
        that it gets a full snapshot while the others are idle."""
        self.dps[i].stop()
        try:
            os.unlink(os.path.join(self.root, "dp%d" % i, "cluster_config.pb"))
        except OSError:
            pass
        self.start_dp(i)
        self.pc[i] = conn_to(self.proxies[i])
        self.sc[i] = conn_to(self.statuses[i])

    def dp_status(self, i):
        st, body = call(self.sc[i], "GET", "/status")
        return json.loads(body)

    def serving(self, i, path, host=None):
        try:
            self.pc[i].request("GET", path, headers={"Host": host} if host else {})
            r = self.pc[i].getresponse()
            r.read()
            st = r.status
        except (OSError, http.client.HTTPException):
            self.pc[i] = conn_to(self.proxies[i])
            return False
        return st != 404

    def wait_all(self, path, timeout=30, host=None, gone=False, poll=0.0005):
        """Seconds until every data plane serves path (with a Host header),
        or with gone, until none does."""
        t0 = time.monotonic()
        pending = set(range(len(self.dps)))
        while pending:
            for i in list(pending):
                if self.serving(i, path, host) != gone:
                    pending.discard(i)
            if pending:
                # Poll without taking a core from the processes measured.
                time.sleep(poll)
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("%s not served on %d data planes after %ds"
                                   % (path, len(pending), timeout))
        return time.monotonic() - t0

    def connected(self):
        st, body = call(self.ac, "GET", "/clustering/data-planes")
        return [d for d in json.loads(body)["data"] if d["connected"]]

    def stop(self):
        for dp in self.dps:
            dp.stop()
        self.cp.stop()


def bench_sequential(cl, n):
    call(cl.ac, "PUT", "/services/seq", {"url": "http://127.0.0.1:9/"})
    lat = []
    for i in range(n):
        st, body = call(cl.ac, "POST", "/services/seq/routes", {"paths": ["/seq%d" % i]})
        if st != 201:
            raise RuntimeError("route create answered %d: %s" % (st, body[:200]))
        lat.append(cl.wait_all("/seq%d" % i) * 1000)
    print("a. Propagation, %d sequential route creations, %d data planes:" % (n, len(cl.dps)))
    print("   Admin API 2xx -> serving on all: p50 %.1f ms  p99 %.1f ms  max %.1f ms"
          "  (goal p50 < 20 ms, p99 < 100 ms)" % (pct(lat, 50), pct(lat, 99), max(lat)))


def bench_large(cl, n, changes):
    # Services point at a closed local port: a served route answers 502 at
    # once, where a name to resolve would time the resolver instead.
    parsed = json.loads(config_doc(n, 1))
    for svc in parsed["services"]:
        svc["host"], svc["port"] = "127.0.0.1", 9
    doc = json.dumps(parsed)
    before = [cl.dp_status(i)["cluster"] for i in range(len(cl.dps))]
    t0 = time.monotonic()
    st, body = call(cl.ac, "POST", "/config", doc)
    if st != 201:
        raise RuntimeError("POST /config answered %d: %s" % (st, body[:200]))
    t_import = time.monotonic() - t0
    cl.wait_all("/r%d" % (n - 1), timeout=120, host="h%d.example.test" % ((n - 1) % 997))
    t_all = time.monotonic() - t0
    after = [cl.dp_status(i)["cluster"] for i in range(len(cl.dps))]
    snap_bytes = after[0]["bytes_received"] - before[0]["bytes_received"]
    applies = [a["last_apply_ms"] for a in after]
    print("b. %d services + %d routes (POST /config %.2f s; on all %d data planes %.2f s"
          " after it)" % (n, n, t_import, len(cl.dps), t_all))
    print("   full configuration sent to each data plane: %s" % fmt_bytes(snap_bytes))
    print("   data plane build + swap of the full generation, all %d at once: median %.0f ms,"
          " max %.0f ms" % (len(cl.dps), pct(applies, 50), max(applies)))
    # one-route changes on top of the large configuration, once the data
    # planes have settled (persisted the import, freed the old generation)
    time.sleep(3)
    lat, sizes, applies = [], [], []
    for i in range(changes):
        b0 = [cl.dp_status(k)["cluster"]["bytes_received"] for k in range(len(cl.dps))]
        st, body = call(cl.ac, "PATCH", "/routes/route-%d" % i, {"paths": ["/moved%d" % i]})
        if st != 200:
            raise RuntimeError("PATCH answered %d: %s" % (st, body[:200]))
        lat.append(cl.wait_all("/moved%d" % i, host="h%d.example.test" % (i % 997)) * 1000)
        time.sleep(0.01)
        st1 = [cl.dp_status(k)["cluster"] for k in range(len(cl.dps))]
        sizes += [st1[k]["bytes_received"] - b0[k] for k in range(len(cl.dps))]
        applies += [x["last_apply_ms"] for x in st1]
    if os.environ.get("SYNC_BENCH_VERBOSE"):
        print("   latencies (ms):", " ".join("%.0f" % x for x in lat))
    # one data plane joining alone gets the full snapshot with the machine
    # to itself (above, five data planes applied it at once on these cores)
    alone = []
    for _ in range(3):
        cl.restart_dp_empty(0)
        # polled gently: the figure is the data plane's own, and a busy
        # poller would take a core from it
        cl.wait_all("/r%d" % (n - 1), timeout=120, host="h%d.example.test" % ((n - 1) % 997),
                    poll=0.05)
        alone.append(cl.dp_status(0)["cluster"]["last_apply_ms"])
    # deleting a route early in the table moves every later one
    dels = []
    for i in range(changes, changes + min(changes, 20)):
        st, body = call(cl.ac, "DELETE", "/routes/route-%d" % i)
        if st != 204:
            raise RuntimeError("DELETE answered %d: %s" % (st, body[:200]))
        dels.append(cl.wait_all("/r%d" % i, host="h%d.example.test" % (i % 997), gone=True)
                    * 1000)
    rss = [dp.rss_kb() / 1024.0 for dp in cl.dps]
    print("   one-route change, %d changes: p50 %.1f ms  p99 %.1f ms  (goal p99 < 100 ms)"
          % (changes, pct(lat, 50), pct(lat, 99)))
    print("   of which each data plane's apply (delta + build + swap): p50 %.1f ms  p99 %.1f ms"
          % (pct(applies, 50), pct(applies, 99)))
    print("   one data plane joining alone, build + swap of the full generation: median %.0f ms"
          "  (goal < 500 ms)" % pct(alone, 50))
    print("   one-route delete, %d deletes: p50 %.1f ms  p99 %.1f ms"
          % (len(dels), pct(dels, 50), pct(dels, 99)))
    print("   bytes received per data plane for one change: median %d B, max %d B"
          " (goal < 4 KB; includes pings in flight)" % (pct(sizes, 50), max(sizes)))
    print("   data plane RSS: median %.1f MB, max %.1f MB  (goal < 150 MB)"
          % (pct(rss, 50), max(rss)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="directory with sluice-cp and sluice-dp")
    args = ap.parse_args()
    ndp = env_int("SYNC_BENCH_DATA_PLANES", 5)
    seq = env_int("SYNC_BENCH_CREATES", 200)
    n = env_int("SYNC_BENCH_CONFIG_N", 10000)
    changes = env_int("SYNC_BENCH_CHANGES", 50)
    root = tempfile.mkdtemp(prefix="sluice-sync-bench.")
    cl = None
    try:
        print("Hybrid mode: 1 sluice-cp, %d sluice-dp on loopback (shared-mode mTLS)" % ndp)
        cl = Cluster(args.build, root, ndp)
        deadline = time.monotonic() + 20
        while len(cl.connected()) < ndp:
            if time.monotonic() > deadline:
                raise RuntimeError("data planes did not connect")
            time.sleep(0.05)
        bench_sequential(cl, seq)
        bench_large(cl, n, changes)
    except (RuntimeError, OSError, http.client.HTTPException) as e:
        print("   (failed: %s; logs in %s)" % (e, root))
        if cl:
            cl.stop()
        return 1
    cl.stop()
    if os.environ.get("SYNC_BENCH_KEEP"):
        print("   (logs kept in %s)" % root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
