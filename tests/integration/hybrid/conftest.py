"""Fixtures for hybrid-mode tests: a real sluice-cp with its cluster
listener and real sluice-dp processes with role = data_plane, all on
loopback with port 0, sharing a cluster certificate made by gen-cert."""

import subprocess

import pytest

from cp.conftest import CP_BIN, cp_factory  # noqa: F401 (cp_factory: a fixture used here)


@pytest.fixture(scope="session")
def cluster_cert(tmp_path_factory):
    """A shared-mode certificate and key made by `sluice-cp gen-cert`."""
    d = tmp_path_factory.mktemp("cluster")
    subprocess.run([str(CP_BIN), "gen-cert", str(d / "cluster.crt"), str(d / "cluster.key")],
                   check=True, capture_output=True)
    return d / "cluster.crt", d / "cluster.key"


@pytest.fixture(scope="session")
def other_cert(tmp_path_factory):
    """Another self-signed pair, made with openssl req as operators often do."""
    d = tmp_path_factory.mktemp("other")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-384", "-nodes", "-keyout", str(d / "o.key"), "-out",
                    str(d / "o.crt"), "-days", "30", "-subj", "/CN=kong_clustering"],
                   check=True, capture_output=True)
    return d / "o.crt", d / "o.key"


def cluster_env(cert, extra=None):
    env = {"SLUICE_CLUSTER_LISTEN": "127.0.0.1:0", "SLUICE_CLUSTER_CERT": str(cert[0]),
           "SLUICE_CLUSTER_CERT_KEY": str(cert[1]), "SLUICE_CLUSTER_PING_INTERVAL": "1s"}
    env.update(extra or {})
    return env


@pytest.fixture
def hybrid_cp(cp_factory, cluster_cert):
    """Starts control planes with the cluster listener on (stopped at teardown
    by cp_factory)."""

    def make(prefix=None, env=None):
        return cp_factory(env=cluster_env(cluster_cert, env), prefix=prefix)

    return make


def cluster_addr(cp):
    return (cp.prefix / "cluster.addr").read_text().split()[0]


def dp_conf(cp_addr, cert, **extra):
    conf = {"role": "data_plane", "cluster_control_plane": cp_addr,
            "cluster_cert": str(cert[0]), "cluster_cert_key": str(cert[1]),
            "cluster_ping_interval": "1s"}
    conf.update(extra)
    return conf


@pytest.fixture
def hybrid_dp(sluice_factory, cluster_cert):
    """Starts a data plane of a control plane (not waiting for readiness)."""

    def make(cp, cert=None, wait_ready=False, **extra):
        s = sluice_factory(None, conf=dp_conf(cluster_addr(cp), cert or cluster_cert, **extra),
                           wait_ready=False)
        if wait_ready:
            s.wait_ready()
        else:
            s.wait_addrs()
        return s

    return make
