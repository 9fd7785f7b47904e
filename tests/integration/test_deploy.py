"""The deployment files under deploy/ stay consistent with what the planes
accept. There is no Docker daemon or Kubernetes cluster here, so these tests
read the files: the YAML parses, the container image builds the Go example
plugin `hello` in a golang stage and copies it into the runtime image, and
the data planes of the compose file and of the Kubernetes Deployment get the
pluginserver_* settings that run it (checked with `sluice-dp -t`, which runs
the query command, after pointing the image's paths at this build)."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import run_dp
from bridge.pluginservers import go_binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IMAGE_HELLO = "/usr/local/bin/hello"
IMAGE_PREFIX = "/var/lib/sluice"


def load_yaml(path):
    try:
        import yaml
    except ImportError:
        pytest.fail("reading deploy/ needs PyYAML: run `make deps`", pytrace=False)
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def compose():
    return load_yaml(DEPLOY / "compose" / "docker-compose.yml")[0]


def k8s_dp_env():
    """The sluice-dp container's environment in the Deployment, as a dict
    (only the plain `value:` entries)."""
    dep = load_yaml(DEPLOY / "kubernetes" / "dp-deployment.yaml")[0]
    containers = dep["spec"]["template"]["spec"]["containers"]
    dp = next(c for c in containers if c["name"] == "sluice-dp")
    return {e["name"]: e["value"] for e in dp["env"] if "value" in e}, dep, dp


def plugin_keys(env):
    return {k: v for k, v in env.items()
            if k == "SLUICE_PLUGINS" or k.startswith("SLUICE_PLUGINSERVER_")}


def assert_runs_hello(env, prefix=IMAGE_PREFIX):
    """env (SLUICE_* variables) runs the image's hello from `prefix`."""
    assert env["SLUICE_PLUGINSERVER_NAMES"] == "hello"
    assert "hello" in env["SLUICE_PLUGINS"].split(",")
    assert "bundled" in env["SLUICE_PLUGINS"].split(",")
    assert env["SLUICE_PLUGINSERVER_HELLO_QUERY_CMD"] == IMAGE_HELLO + " -dump"
    start = shlex.split(env["SLUICE_PLUGINSERVER_HELLO_START_CMD"])
    assert start[0] == IMAGE_HELLO
    # go-pdk listens on <-kong-prefix>/<executable name>.socket: the socket the
    # data plane connects to must be that one, in its (writable) prefix.
    kong_prefix = start[start.index("-kong-prefix") + 1]
    assert kong_prefix == prefix
    assert env["SLUICE_PLUGINSERVER_HELLO_SOCKET"] == "%s/%s.socket" % (
        kong_prefix, Path(start[0]).name)


def check_with_this_build(conf_file, env, tmp_path, cluster_cert):
    """sluice-dp -t on conf_file with env, the image paths replaced by this
    build's binary and tmp_path, the cluster pair by a local one."""
    hello = str(go_binary("hello"))
    local = {k: v.replace(IMAGE_HELLO, hello).replace(IMAGE_PREFIX, str(tmp_path))
             for k, v in env.items() if k.startswith("SLUICE_")}
    local.pop("SLUICE_CLUSTER_CONTROL_PLANE", None)  # built from the pod's namespace
    local.update({"SLUICE_CLUSTER_CERT": str(cluster_cert[0]),
                  "SLUICE_CLUSTER_CERT_KEY": str(cluster_cert[1])})
    return run_dp(["-t", "-c", conf_file, "-p", tmp_path], env=local)


@pytest.fixture(scope="module")
def cluster_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-384", "-nodes", "-keyout", str(d / "c.key"), "-out",
                    str(d / "c.crt"), "-days", "30", "-subj", "/CN=kong_clustering"],
                   check=True, capture_output=True)
    return d / "c.crt", d / "c.key"


# ------------------------------------------------------------------ YAML


@pytest.mark.parametrize("path", sorted(str(p.relative_to(DEPLOY))
                                         for p in DEPLOY.rglob("*.y*ml")))
def test_yaml_parses(path):
    assert load_yaml(DEPLOY / path)


# ------------------------------------------------------------ container image


def dockerfile_stages():
    """[(base image, stage name, [instruction lines])] of the Dockerfile, with
    continuation lines joined."""
    text = (DEPLOY / "container" / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.I)
        if m:
            stages.append((m.group(1), m.group(2), []))
        else:
            stages[-1][2].append(line)
    return stages


def test_image_builds_the_go_plugin_in_a_golang_bookworm_stage():
    stages = dockerfile_stages()
    go = [s for s in stages if s[0].startswith("golang:")]
    assert len(go) == 1, "one Go build stage, FROM the official golang image"
    base, name, lines = go[0]
    assert name and base.endswith("-bookworm"), base
    text = "\n".join(lines)
    assert "COPY go-pdk-examples/" in text
    assert "go mod download" in text
    build = next(line for line in lines if "go build" in line)
    assert "CGO_ENABLED=0" in build  # static: the runtime image has no Go libraries
    assert "-mod=readonly" in build and "-o /out/" in build
    default = re.search(r'ARG GO_PLUGINS="([^"]*)"', text)
    assert default and "hello" in default.group(1).split()
    for plugin in default.group(1).split():
        assert (Path(__file__).resolve().parents[2] / "go-pdk-examples" / plugin /
                "main.go").exists(), plugin


def test_runtime_image_holds_the_plugin_and_stays_slim_and_unprivileged():
    stages = dockerfile_stages()
    go_name = next(s[1] for s in stages if s[0].startswith("golang:"))
    base, _, lines = stages[-1]
    assert base.endswith("-slim"), "the runtime stage is the last one, on a slim base"
    copies = [line for line in lines if line.startswith("COPY --from=%s " % go_name)]
    assert copies and copies[0].split()[-1].rstrip("/") == "/usr/local/bin"
    assert not any("golang" in line or "go build" in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and not users[-1].startswith(("0", "root"))
    # the plugin is installed before USER, so the runtime user cannot replace it
    assert lines.index(copies[0]) < lines.index("USER " + users[-1])


# ---------------------------------------------------------------- compose


def test_compose_data_planes_run_hello_and_the_control_plane_needs_nothing():
    services = compose()["services"]
    for name in ("dp1", "dp2"):
        env = services[name]["environment"]
        assert_runs_hello(env)
        assert "SLUICE_CLUSTER_DP_LABELS" in env  # the merge kept each one's own
        assert any(v.endswith(":" + IMAGE_PREFIX) for v in services[name]["volumes"])
    assert not plugin_keys(services["cp"].get("environment") or {})
    assert "\npluginserver_names" not in (DEPLOY / "compose" / "cp.conf").read_text()
    dp_conf = (DEPLOY / "compose" / "dp.conf").read_text()
    assert re.search(r"^prefix = %s$" % IMAGE_PREFIX, dp_conf, re.M)


def test_compose_data_plane_configuration_is_valid(tmp_path, cluster_cert):
    env = compose()["services"]["dp1"]["environment"]
    r = check_with_this_build(DEPLOY / "compose" / "dp.conf", env, tmp_path, cluster_cert)
    assert r.returncode == 0, r.stderr
    # and without the plugin server, `plugins` naming hello is refused
    env = {k: v for k, v in env.items() if not k.startswith("SLUICE_PLUGINSERVER_")}
    r = check_with_this_build(DEPLOY / "compose" / "dp.conf", env, tmp_path, cluster_cert)
    assert r.returncode == 2 and "'hello'" in r.stderr


# ------------------------------------------------------------- Kubernetes


def test_kubernetes_data_planes_run_hello():
    env, dep, dp = k8s_dp_env()
    assert_runs_hello(env)
    mounts = {m["mountPath"]: m for m in dp["volumeMounts"]}
    assert not mounts[IMAGE_PREFIX].get("readOnly")  # where the socket goes
    assert dp["securityContext"]["readOnlyRootFilesystem"] is True
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    cp = load_yaml(DEPLOY / "kubernetes" / "cp-statefulset.yaml")[0]
    for c in cp["spec"]["template"]["spec"]["containers"]:
        assert not plugin_keys({e["name"]: e.get("value") for e in c.get("env", [])})


def test_kubernetes_data_plane_configuration_is_valid(tmp_path, cluster_cert):
    env, _, _ = k8s_dp_env()
    cm = load_yaml(DEPLOY / "kubernetes" / "dp-configmap.yaml")[0]
    conf = tmp_path / "dp.conf"
    conf.write_text(cm["data"]["dp.conf"])
    r = check_with_this_build(conf, env, tmp_path, cluster_cert)
    assert r.returncode == 0, r.stderr
