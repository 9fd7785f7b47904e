#!/usr/bin/env python3
"""Control-plane benchmark: starts a real sluice-cp on a temporary prefix
(admin_listen 127.0.0.1:0, address read from <prefix>/admin.addr) and prints

  a. Admin API writes/s: POST /routes (each with a service), over one
     keep-alive connection and over several concurrent connections;
  b. reads/s of GET /routes?size=1000 paging through a large route table
     (loaded with POST /config): pages/s and entities/s;
  c. POST /config of a document with N services + N routes: seconds to
     validate and commit (goal: under 2 s for 10,000 + 10,000);
  d. the store's size on disk for that configuration.

Prints figures only; asserts nothing (benchmarks are not tests). Standard
library only. Environment (for quick runs): CP_BENCH_CREATES (default 1000),
CP_BENCH_CONNS (4), CP_BENCH_READ_ROUTES (100000), CP_BENCH_CONFIG_N (10000),
CP_BENCH_CONFIG_ROUNDS (3).
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
import re
import threading
import time
import uuid

NEXT_RE = re.compile(rb'"next":(null|"[^"]*")}$')


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class ControlPlane:
    def __init__(self, binary, root, name):
        self.prefix = os.path.join(root, name)
        os.makedirs(self.prefix)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update({"SLUICE_ADMIN_LISTEN": "127.0.0.1:0", "SLUICE_LOG_LEVEL": "warn",
                    "SLUICE_CLUSTER_LISTEN": "off",
                    "SLUICE_LMDB_MAP_SIZE": "4g"})
        self.stderr = open(os.path.join(root, name + ".stderr"), "wb")
        self.proc = subprocess.Popen([binary, "-p", self.prefix], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        addr = os.path.join(self.prefix, "admin.addr")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sluice-cp exited with %s" % self.proc.returncode)
            if os.path.exists(addr):
                text = open(addr).read().strip()
                if text:
                    host, _, port = text.rpartition(":")
                    self.host, self.port = host, int(port)
                    return
            time.sleep(0.02)
        raise RuntimeError("sluice-cp wrote no admin.addr in 20 s")

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=300)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def cpu_seconds(self):
        """User + system CPU time sluice-cp has used so far: on a shared
        machine it moves much less than wall-clock time does."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError, IndexError):
            return 0.0

    def store_bytes(self):
        """Allocated bytes of <prefix>/store (what du reports)."""
        total = 0
        d = os.path.join(self.prefix, "store")
        for name in os.listdir(d):
            st = os.stat(os.path.join(d, name))
            total += st.st_blocks * 512
        return total


def request(conn, method, path, body=None, ctype="application/json"):
    headers = {}
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        headers["Content-Type"] = ctype
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def check(status, data, want, what):
    if status != want:
        raise RuntimeError("%s: HTTP %d (wanted %d): %s" % (what, status, want, data[:300]))


def config_doc(n_services, routes_per_service):
    """A flat _format_version 3.0 document: services, and routes that name
    their service by id."""
    services, routes = [], []
    for i in range(n_services):
        sid = str(uuid.UUID(int=(1 << 64) + i))
        services.append({"id": sid, "name": "svc-%d" % i, "host": "upstream-%d.test" % i,
                         "port": 8000 + i % 1000, "path": "/"})
        for j in range(routes_per_service):
            k = i * routes_per_service + j
            routes.append({"id": str(uuid.UUID(int=(2 << 64) + k)), "name": "route-%d" % k,
                           "hosts": ["h%d.example.test" % (k % 997)],
                           "paths": ["/r%d" % k], "service": {"id": sid}})
    return json.dumps({"_format_version": "3.0", "services": services, "routes": routes})


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return "%.1f %s" % (n, unit)
        n /= 1024.0


# ---------------------------------------------------------------- a. writes

def bench_writes(cp, creates, conns):
    c = cp.conn()
    st, data = request(c, "POST", "/services", {"name": "bench-svc", "host": "up.test"})
    check(st, data, 201, "POST /services")
    svc = json.loads(data)["id"]

    def create(conn, lo, hi, errors):
        try:
            for k in range(lo, hi):
                st, data = request(conn, "POST", "/routes",
                                   {"name": "w-%d" % k, "paths": ["/w%d" % k],
                                    "service": {"id": svc}})
                check(st, data, 201, "POST /routes")
        except Exception as e:  # reported below; the benchmark goes on
            errors.append(str(e))

    errors = []
    t0, c0 = time.monotonic(), cp.cpu_seconds()
    create(c, 0, creates, errors)
    one = creates / (time.monotonic() - t0)
    one_cpu = (cp.cpu_seconds() - c0) * 1e6 / creates
    c.close()

    threads, cs = [], []
    per = creates // conns
    for i in range(conns):
        ci = cp.conn()
        cs.append(ci)
        lo = creates + i * per
        threads.append(threading.Thread(target=create, args=(ci, lo, lo + per, errors)))
    t0, c0 = time.monotonic(), cp.cpu_seconds()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    many = per * conns / (time.monotonic() - t0)
    many_cpu = (cp.cpu_seconds() - c0) * 1e6 / max(1, per * conns)
    for ci in cs:
        ci.close()
    print("a. Admin writes: POST /routes (with a service), %d creates per run;"
          " each is a durable (fsync'd) LMDB commit" % creates)
    print("   1 keep-alive connection:        %9.0f writes/s  (sluice-cp CPU %.0f us/write)"
          % (one, one_cpu))
    print("   %d concurrent connections:       %9.0f writes/s  (sluice-cp CPU %.0f us/write)"
          % (conns, many, many_cpu))
    if errors:
        print("   (%d errors, first: %s)" % (len(errors), errors[0]))


# ---------------------------------------------------------------- b. reads

def bench_reads(cp, n_routes):
    services = max(1, n_routes // 100)
    doc = config_doc(services, n_routes // services)
    c = cp.conn()
    t0 = time.monotonic()
    st, data = request(c, "POST", "/config", doc)
    check(st, data, 201, "POST /config (%d routes)" % n_routes)
    load = time.monotonic() - t0
    pages = entities = 0
    path = "/routes?size=1000"
    t0, c0 = time.monotonic(), cp.cpu_seconds()
    while path:
        st, data = request(c, "GET", path)
        check(st, data, 200, "GET " + path)
        # The client must not be the bottleneck: rather than decoding 1,000
        # routes per page, count them (one created_at each) and read the
        # "next" link from the end of the body.
        pages += 1
        entities += data.count(b'"created_at":')
        m = NEXT_RE.search(data, max(0, len(data) - 2048))
        if not m:
            raise RuntimeError("GET %s: no \"next\" in the answer" % path)
        path = json.loads(m.group(1))
    dt = time.monotonic() - t0
    cpu = cp.cpu_seconds() - c0
    c.close()
    print("b. Reads: GET /routes?size=1000 through %d routes (loaded by POST /config in %.2f s)"
          % (entities, load))
    print("   %d pages in %.2f s:  %9.1f pages/s  %9.0f entities/s  (sluice-cp CPU %.1f ms/page)"
          % (pages, dt, pages / dt, entities / dt, cpu * 1e3 / max(1, pages)))


# ---------------------------------------------------------------- c, d. /config

def bench_config(cp, n, rounds):
    doc = config_doc(n, 1)
    c = cp.conn()
    times, cpus = [], []
    for _ in range(rounds):
        t0, c0 = time.monotonic(), cp.cpu_seconds()
        st, data = request(c, "POST", "/config", doc)
        check(st, data, 201, "POST /config (%d services + %d routes)" % (n, n))
        times.append(time.monotonic() - t0)
        cpus.append(cp.cpu_seconds() - c0)
        if len(times) == 1:
            first_size = cp.store_bytes()
    c.close()
    times.sort()
    cpus.sort()
    print("c. POST /config, %d services + %d routes (%.1f MiB of JSON), %d rounds"
          % (n, n, len(doc) / 1048576.0, rounds))
    print("   validate + commit + answer:  median %.3f s  (min %.3f, max %.3f; goal < 2 s);"
          " sluice-cp CPU median %.3f s"
          % (times[len(times) // 2], times[0], times[-1], cpus[len(cpus) // 2]))
    print("d. Store on disk (du <prefix>/store): %s after the first import into an empty store,"
          % fmt_bytes(first_size))
    print("   %s after %d imports (each keeps a change record naming every entity, for"
          " data-plane deltas)" % (fmt_bytes(cp.store_bytes()), rounds))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cp", required=True, help="path to sluice-cp")
    args = ap.parse_args()
    creates = env_int("CP_BENCH_CREATES", 1000)
    conns = max(1, env_int("CP_BENCH_CONNS", 4))
    n_read = env_int("CP_BENCH_READ_ROUTES", 100000)
    n_conf = env_int("CP_BENCH_CONFIG_N", 10000)
    rounds = max(1, env_int("CP_BENCH_CONFIG_ROUNDS", 3))

    root = tempfile.mkdtemp(prefix="sluice-cp-bench.")
    started = []
    try:
        print("Control plane: sluice-cp Admin API (LMDB store)")
        for name, fn in (("writes", lambda cp: bench_writes(cp, creates, conns)),
                         ("reads", lambda cp: bench_reads(cp, n_read)),
                         ("config", lambda cp: bench_config(cp, n_conf, rounds))):
            cp = ControlPlane(args.cp, root, name)
            started.append(cp)
            try:
                fn(cp)
            except (RuntimeError, OSError, http.client.HTTPException) as e:
                print("   (%s: failed: %s)" % (name, e))
            cp.stop()
    finally:
        for cp in started:
            cp.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
