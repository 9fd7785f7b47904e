"""Fixtures for the sluice-dp integration tests.

Every process listens on 127.0.0.1 port 0 and tells us where it ended up
through an address file, so tests never race for ports. sluice-dp is found at
$SLUICE_BUILD/bin/sluice-dp (SLUICE_BUILD defaults to build/ at the repository
root). Teardown sends SIGTERM and asserts a clean exit (code 0, no "crit" line
and no sanitizer report on stderr).
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import h1  # noqa: E402

REPO = HERE.parents[1]
_build = Path(os.environ.get("SLUICE_BUILD", "build"))
BUILD = _build if _build.is_absolute() else REPO / _build
DP_BIN = BUILD / "bin" / "sluice-dp"
UPSTREAM_PY = HERE / "upstream.py"

START_TIMEOUT = float(os.environ.get("SLUICE_TEST_START_TIMEOUT", "20"))
STOP_TIMEOUT = float(os.environ.get("SLUICE_TEST_STOP_TIMEOUT", "30"))

# What must never appear on sluice-dp's stderr.
BAD_STDERR = re.compile(
    r"crit|AddressSanitizer|LeakSanitizer|ThreadSanitizer|UndefinedBehaviorSanitizer"
    r"|runtime error:|Segmentation fault|double free|stack smashing",
    re.IGNORECASE)

VIA_RE = r"1\.1 sluice/[0-9A-Za-z.+~-]+"
SERVER_RE = r"^sluice/[0-9A-Za-z.+~-]+$"


# ------------------------------------------------------------------ utilities


def wait_until(fn, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - keep polling through transient errors
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


def read_addr_file(path):
    text = Path(path).read_text().strip()
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) == 0:
        raise ValueError("bad address file content %r" % text)
    return (host.strip("[]"), int(port))


@pytest.fixture(params=["tls", "h2c"])
def transport(request):
    """HTTP/2 tests run twice: over TLS (ALPN h2) and in clear (h2c)."""
    return request.param


def proxy_listeners(dp):
    """proxy.addr: one (host, port) per proxy_listen entry, in order."""
    out = []
    for line in (dp.prefix / "proxy.addr").read_text().splitlines():
        host, _, port = line.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def free_port():
    """A port that nothing listens on (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_sanitized = None


def dp_is_sanitized():
    """True when sluice-dp is built with AddressSanitizer (its RSS says nothing then)."""
    global _sanitized
    if _sanitized is None:
        try:
            _sanitized = b"__asan_init" in DP_BIN.read_bytes()
        except OSError:
            _sanitized = False
    return _sanitized


def assert_rss_bounded(sampler, limit_mb, what=""):
    if dp_is_sanitized():
        return  # ASan's shadow memory and quarantine make RSS meaningless
    assert sampler.growth_mb < limit_mb, "RSS grew %.1f MB%s (limit %d MB)" % (
        sampler.growth_mb, what, limit_mb)


def rss_kb(pid):
    """VmRSS of pid plus its direct children (in case workers are processes)."""
    total = 0
    pids = [pid]
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == pid:
                        pids.append(int(entry))
                except (OSError, IndexError, ValueError):
                    pass
    except OSError:
        pass
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class RssSampler:
    """Samples the RSS of a process in a thread; .peak and .baseline in kB."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.baseline = rss_kb(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_kb(self.pid))

    @property
    def growth_mb(self):
        return (self.peak - self.baseline) / 1024.0


# ------------------------------------------------------------------ declarative helpers


def service(name, url, routes=None, **fields):
    s = {"name": name, "url": url}
    s.update(fields)
    if routes is not None:
        s["routes"] = routes
    return s


def route(name, **fields):
    r = {"name": name}
    r.update(fields)
    return r


def declarative(services=(), routes=(), **extra):
    d = {"_format_version": "3.0", "services": list(services)}
    if routes:
        d["routes"] = list(routes)
    d.update(extra)
    return d


# ------------------------------------------------------------------ upstream


class Upstream:
    """tests/integration/upstream.py running as a subprocess; with tls=(cert
    file, key file[, max version "1.2"]) it serves TLS, and get() speaks TLS
    to it (unverified); with client_ca (a CA file) too, it requires client
    certificates signed by that CA."""

    def __init__(self, workdir, name="up", mode="normal", tls=None, client_ca=None):
        self.name = name
        self.tls = tls
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        addr_file = self.workdir / ("upstream-%s.addr" % name)
        if addr_file.exists():
            addr_file.unlink()
        self.log = open(self.workdir / ("upstream-%s.log" % name), "wb")
        cmd = [sys.executable, str(UPSTREAM_PY), "--port", "0", "--addr-file", str(addr_file),
               "--name", name, "--mode", mode]
        if tls:
            cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
            cmd += ["--tls-max-version", tls[2]] if len(tls) > 2 else []
            cmd += ["--tls-client-ca", str(client_ca)] if client_ca else []
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: addr_file.exists() and read_addr_file(addr_file), 10,
                   what="upstream %s address file" % name)
        self.addr = read_addr_file(addr_file)
        self.host, self.port = self.addr

    @property
    def url(self):
        return "%s://%s:%d" % (("https" if self.tls else "http",) + self.addr)

    def get(self, target, **kw):
        if self.tls and "ssl_context" not in kw:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            kw["ssl_context"] = ctx
        return h1.get(self.addr, target, host="%s:%d" % self.addr, **kw)

    def counter(self, token):
        return self.get("/__counter/" + token).json()["count"]

    def stats(self):
        return self.get("/__stats").json()

    def open_gate(self, token):
        assert self.get("/__open/" + token).status == 200

    def wait_event(self, token, timeout=10):
        return self.get("/__wait/%s?timeout=%s" % (token, timeout),
                        timeout=timeout + 5).status == 200

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------ sluice-dp


def dp_env(extra=None):
    """The environment for sluice-dp: ours minus any SLUICE_* settings, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(extra or {})
    return env


def run_dp(args, env=None, timeout=30):
    """Runs sluice-dp to completion (e.g. -t); returns CompletedProcess (text)."""
    require_binary()
    return subprocess.run([str(DP_BIN)] + [str(a) for a in args], env=dp_env(env),
                          capture_output=True, text=True, timeout=timeout)


def require_binary():
    if not DP_BIN.exists():
        pytest.fail("sluice-dp not found at %s: build it with `make` (or set SLUICE_BUILD)"
                    % DP_BIN, pytrace=False)


RUNNING = []  # every started Sluice, so that a crash is pinned on the test that caused it


class Sluice:
    """One sluice-dp process in its own prefix directory."""

    DEFAULT_CONF = {
        "proxy_listen": "127.0.0.1:0",
        "status_listen": "127.0.0.1:0",
        "workers": "2",
        "log_level": "info",
        "error_log": "stderr",
    }

    def __init__(self, prefix, decl, conf=None, env=None, args=None):
        require_binary()
        self.prefix = Path(prefix)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf = dict(self.DEFAULT_CONF)
        self.conf.update(conf or {})
        self.conf = {k: v for k, v in self.conf.items() if v is not None}
        self.env = env or {}
        self.extra_args = list(args or [])
        self.conf_path = self.prefix / "sluice.conf"
        self.decl_path = self.prefix / "kong.json"
        self.stderr_path = self.prefix / "stderr.log"
        self.stopped = False
        self.terminating = False
        self.returncode = None
        self.proc = None
        if decl is not None:
            self.write_declarative(decl)
        self.write_conf()

    def write_conf(self):
        lines = ["# written by tests/integration/conftest.py"]
        lines += ["%s = %s" % (k, v) for k, v in self.conf.items()]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def write_declarative(self, decl):
        text = decl if isinstance(decl, str) else json.dumps(decl, indent=1)
        tmp = self.decl_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.decl_path)

    def command(self):
        cmd = [str(DP_BIN), "-c", str(self.conf_path), "-p", str(self.prefix)]
        if self.decl_path.exists():
            cmd += ["--declarative", str(self.decl_path)]
        return cmd + self.extra_args

    def start(self, wait_ready=True):
        self.stopped = False  # a restart is a new process to stop at teardown
        self.terminating = False
        self.returncode = None
        for name in ("proxy.addr", "status.addr"):
            p = self.prefix / name
            if p.exists():
                p.unlink()
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.command(), env=dp_env(self.env),
                                     stdout=self.stderr_file, stderr=self.stderr_file,
                                     cwd=str(self.prefix))
        self.pid = self.proc.pid
        RUNNING.append(self)
        if wait_ready:
            self.wait_ready()
        return self

    def _check_alive(self):
        if self.proc.poll() is not None:
            self.stopped = True
            raise AssertionError("sluice-dp exited with %s during startup; stderr:\n%s"
                                 % (self.proc.returncode, self.stderr()))

    def wait_addrs(self, timeout=START_TIMEOUT):
        """Waits for the listeners' address files (not for readiness)."""
        deadline = time.monotonic() + timeout

        def addr(name):
            while time.monotonic() < deadline:
                self._check_alive()
                p = self.prefix / name
                try:
                    return read_addr_file(p)
                except (OSError, ValueError):
                    time.sleep(0.02)
            self.kill()
            raise AssertionError("no %s after %.0fs; stderr:\n%s" % (name, timeout, self.stderr()))

        self.proxy = addr("proxy.addr")
        status_on = self.conf.get("status_listen", "").strip() != "off" or \
            self.env.get("SLUICE_STATUS_LISTEN", "off") != "off"
        self.status = addr("status.addr") if status_on else None
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        self.wait_addrs(timeout)
        if self.status:
            while True:
                self._check_alive()
                try:
                    if h1.get(self.status, "/status/ready", timeout=2).status == 200:
                        break
                except (OSError, h1.ProtocolError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError("/status/ready never answered 200; stderr:\n%s"
                                         % self.stderr())
                time.sleep(0.05)
        return self

    # --- requests

    def get(self, target, headers=None, host="sluice.test", **kw):
        return h1.get(self.proxy, target, headers, host=host, **kw)

    def request(self, method, target, headers=None, body=None, host="sluice.test", **kw):
        return h1.request(self.proxy, method, target, headers, body, host=host, **kw)

    def conn(self, timeout=h1.DEFAULT_TIMEOUT):
        return h1.Conn(self.proxy, timeout)

    def status_get(self, target):
        return h1.get(self.status, target, host="127.0.0.1")

    # --- process

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def rss_kb(self):
        return rss_kb(self.pid)

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            self.terminating = True
        os.kill(self.pid, sig)

    def reload(self):
        self.signal(signal.SIGHUP)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = True

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("sluice-dp did not exit within %.0fs; stderr:\n%s"
                                 % (timeout, self.stderr()[-4000:]))
        self.stopped = True
        return self.returncode

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then assert exit code 0 and a clean stderr."""
        if self.stopped:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout)
        self.stderr_file.close()
        assert code == 0, "sluice-dp exited with %r after SIGTERM; stderr:\n%s" % (
            code, self.stderr()[-4000:])
        assert_clean_stderr(self.stderr())
        return code


def assert_clean_stderr(text):
    bad = [line for line in text.splitlines() if BAD_STDERR.search(line)]
    assert not bad, "sluice-dp stderr has critical/sanitizer lines:\n" + "\n".join(bad[:20])


class Launcher:
    """Starts sluice-dp instances and stops them all at teardown."""

    def __init__(self, tmpdir_fn):
        self.tmpdir_fn = tmpdir_fn
        self.instances = []

    def __call__(self, decl, conf=None, env=None, args=None, wait_ready=True, start=True):
        s = Sluice(self.tmpdir_fn(), decl, conf, env, args)
        self.instances.append(s)
        if start:
            s.start(wait_ready=wait_ready)
        return s

    def teardown(self):
        errors = []
        for s in self.instances:
            if s.proc is None or s.stopped:
                continue
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def _sluice_died_during_test():
    """Fails the test during which a sluice-dp process exited unexpectedly."""
    alive = [s for s in RUNNING if not s.stopped and s.proc.poll() is None]
    yield
    for s in alive:
        if not s.stopped and not s.terminating and s.proc.poll() is not None:
            s.stopped = True
            s.returncode = s.proc.returncode
            pytest.fail("sluice-dp (%s) died during this test, exit %r; stderr tail:\n%s"
                        % (s.prefix, s.proc.returncode, s.stderr()[-3000:]), pytrace=False)


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    u = Upstream(tmp_path_factory.mktemp("upstream"), "up1")
    yield u
    u.stop()


@pytest.fixture(scope="session")
def upstream2(tmp_path_factory):
    u = Upstream(tmp_path_factory.mktemp("upstream2"), "up2")
    yield u
    u.stop()


@pytest.fixture
def upstream_factory(tmp_path):
    started = []

    def make(name="extra", mode="normal", tls=None):
        u = Upstream(tmp_path / ("upstream-" + name), name, mode, tls)
        started.append(u)
        return u

    yield make
    for u in started:
        u.stop()


@pytest.fixture
def sluice_factory(tmp_path):
    n = [0]

    def newdir():
        n[0] += 1
        d = tmp_path / ("dp%d" % n[0])
        d.mkdir()
        return d

    launcher = Launcher(newdir)
    yield launcher
    launcher.teardown()


@pytest.fixture(scope="module")
def module_sluice_factory(tmp_path_factory):
    launcher = Launcher(lambda: tmp_path_factory.mktemp("dp"))
    yield launcher
    launcher.teardown()


@pytest.fixture
def simple_sluice(sluice_factory, upstream):
    """sluice-dp with one catch-all route to the shared upstream."""
    return sluice_factory(declarative([
        service("echo", upstream.url, routes=[route("all", paths=["/"])])]))
