"""The control plane and a data plane as two hosts: each in its own network
namespace, joined by a veth pair (10.77.0.1 and 10.77.0.2), so the cluster
connection crosses a real interface rather than loopback. Needs root and
`ip netns`; where namespaces cannot be created the test is skipped with the
reason."""
import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import DP_BIN, UPSTREAM_PY, wait_until
from cp.conftest import CP_BIN


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    tag = uuid.uuid4().hex[:6]
    cp_ns, dp_ns = "slcp" + tag, "sldp" + tag
    try:
        sh("ip", "netns", "add", cp_ns)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip("network namespaces are not available here: %s"
                    % getattr(e, "stderr", e))
    try:
        sh("ip", "netns", "add", dp_ns)
        sh("ip", "link", "add", "v" + cp_ns, "type", "veth", "peer", "name", "v" + dp_ns)
        sh("ip", "link", "set", "v" + cp_ns, "netns", cp_ns)
        sh("ip", "link", "set", "v" + dp_ns, "netns", dp_ns)
        for ns, addr in ((cp_ns, "10.77.0.1/24"), (dp_ns, "10.77.0.2/24")):
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", addr, "dev", "v" + ns)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "v" + ns, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield cp_ns, dp_ns
    finally:
        sh("ip", "netns", "del", cp_ns, check=False)
        sh("ip", "netns", "del", dp_ns, check=False)


def spawn(ns, args, env, log):
    full = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    full.update(env)
    return subprocess.Popen(["ip", "netns", "exec", ns] + [str(a) for a in args], env=full,
                            stdout=log, stderr=log)


def read_addr(path, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = open(path).read().split()
            if text:
                return text[0]
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("no %s" % path)


def curl(ns, *args):
    return sh("ip", "netns", "exec", ns, "curl", "-s", "-m", "5", *args, check=False).stdout


def test_planes_on_two_hosts(two_hosts, tmp_path, cluster_cert):
    cp_ns, dp_ns = two_hosts
    procs = []
    log = open(tmp_path / "log.txt", "wb")
    try:
        cp = spawn(cp_ns, [CP_BIN, "-p", tmp_path / "cp"], {
            "SLUICE_ADMIN_LISTEN": "127.0.0.1:0", "SLUICE_CLUSTER_LISTEN": "10.77.0.1:0",
            "SLUICE_CLUSTER_CERT": str(cluster_cert[0]),
            "SLUICE_CLUSTER_CERT_KEY": str(cluster_cert[1])}, log)
        procs.append(cp)
        admin = read_addr(tmp_path / "cp" / "admin.addr")
        cluster = read_addr(tmp_path / "cp" / "cluster.addr")
        assert cluster.startswith("10.77.0.1:")
        up = spawn(dp_ns, ["python3", UPSTREAM_PY, "--port", "0", "--addr-file",
                           tmp_path / "up.addr"], {}, log)
        procs.append(up)
        upstream = read_addr(tmp_path / "up.addr")
        dp = spawn(dp_ns, [DP_BIN, "-p", tmp_path / "dp"], {
            "SLUICE_ROLE": "data_plane", "SLUICE_CLUSTER_CONTROL_PLANE": cluster,
            "SLUICE_CLUSTER_CERT": str(cluster_cert[0]),
            "SLUICE_CLUSTER_CERT_KEY": str(cluster_cert[1]),
            "SLUICE_PROXY_LISTEN": "127.0.0.1:0", "SLUICE_STATUS_LISTEN": "127.0.0.1:0",
            "SLUICE_WORKERS": "1"}, log)
        procs.append(dp)
        proxy = read_addr(tmp_path / "dp" / "proxy.addr")
        curl(cp_ns, "-X", "POST", "http://%s/services" % admin, "-d", "name=s",
             "-d", "url=http://%s" % upstream)
        curl(cp_ns, "-X", "POST", "http://%s/services/s/routes" % admin, "-d", "paths[]=/far")
        def echoed():
            text = curl(dp_ns, "http://%s/far/away" % proxy)
            return text if '"path"' in text else None
        body = wait_until(echoed, what="route served across namespaces")
        assert json.loads(body)["path"] == "/away"
        rows = json.loads(curl(cp_ns, "http://%s/clustering/data-planes" % admin))["data"]
        assert len(rows) == 1 and rows[0]["ip"] == "10.77.0.2" and rows[0]["connected"]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
