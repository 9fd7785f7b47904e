"""Fixtures for the sluice-cp (control plane) integration tests.

Every test talks to a real build/bin/sluice-cp started with a fresh prefix
and admin_listen 127.0.0.1:0; the bound address is read from
<prefix>/admin.addr. Teardown sends SIGTERM and asserts a clean exit (code 0,
nothing alarming on stderr). Only the standard library is used.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
_build = Path(os.environ.get("SLUICE_BUILD", "build"))
BUILD = _build if _build.is_absolute() else REPO / _build
CP_BIN = BUILD / "bin" / "sluice-cp"

BAD_STDERR = re.compile(
    r"\[crit\]|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:"
    r"|Segmentation fault|double free|stack smashing", re.IGNORECASE)


def cp_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(extra or {})
    return env


def run_cp(args, env=None, timeout=30):
    """Runs sluice-cp to completion (-t, -v, bad configuration)."""
    if not CP_BIN.exists():
        pytest.fail("sluice-cp not found at %s: build it with `make`" % CP_BIN, pytrace=False)
    full = {"SLUICE_CLUSTER_LISTEN": "off"}
    full.update(env or {})
    return subprocess.run([str(CP_BIN)] + [str(a) for a in args], env=cp_env(full),
                          capture_output=True, text=True, timeout=timeout)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<%d %s>" % (self.status, self.raw[:300])


class Client:
    """A keep-alive HTTP/1.1 client for the Admin API."""

    def __init__(self, host, port, token=None):
        self.host, self.port, self.token = host, port, token
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def request(self, method, path, json_body=None, form=None, data=None, headers=None,
                query=None, token=None):
        hdrs = dict(headers or {})
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif form is not None:
            body = urllib.parse.urlencode(form, doseq=True).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if isinstance(body, str):
            body = body.encode()
        tok = token if token is not None else self.token
        if tok:
            hdrs.setdefault("Authorization", "Bearer " + tok)
        if query:
            path = path + "?" + urllib.parse.urlencode(query)
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data_out = r.read()
                resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()},
                                data_out.decode("utf-8", "replace"))
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json_body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, json_body=body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, json_body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


class ControlPlane:
    def __init__(self, prefix, env=None, conf=None):
        self.prefix = Path(prefix)
        self.env = dict(env or {})
        self.conf = conf
        self.proc = None
        self.client = None
        self.stderr_path = self.prefix.parent / (self.prefix.name + ".stderr")

    @property
    def token(self):
        return self.env.get("SLUICE_ADMIN_TOKEN")

    def start(self):
        self.prefix.mkdir(parents=True, exist_ok=True)
        addr = self.prefix / "admin.addr"
        if addr.exists():
            addr.unlink()
        env = {"SLUICE_ADMIN_LISTEN": "127.0.0.1:0", "SLUICE_LOG_LEVEL": "info",
               "SLUICE_CLUSTER_LISTEN": "off"}
        env.update(self.env)
        args = [str(CP_BIN), "-p", str(self.prefix)]
        if self.conf:
            args += ["-c", str(self.conf)]
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(args, env=cp_env(env), stdout=subprocess.DEVNULL,
                                     stderr=self.stderr_file)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("sluice-cp exited with %s:\n%s"
                                     % (self.proc.returncode, self.stderr()))
            if addr.exists():
                text = addr.read_text().strip()
                if text:
                    host, _, port = text.rpartition(":")
                    self.host, self.port = host, int(port)
                    self.client = Client(host, int(port), self.token)
                    return self
            time.sleep(0.02)
        raise AssertionError("sluice-cp did not write admin.addr:\n" + self.stderr())

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        if self.client:
            self.client.close()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.stderr_file.close()
        if sig == signal.SIGTERM:
            assert rc == 0, "sluice-cp exited %s on SIGTERM:\n%s" % (rc, self.stderr())
            bad = [l for l in self.stderr().splitlines() if BAD_STDERR.search(l)]
            assert not bad, "alarming stderr lines:\n" + "\n".join(bad)
        return rc

    def kill(self):
        if self.client:
            self.client.close()
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.stderr_file.close()

    def restart(self):
        self.stop()
        return self.start()

    # shortcuts
    def __getattr__(self, name):
        if name in ("get", "post", "put", "patch", "delete", "request"):
            return getattr(self.client, name)
        raise AttributeError(name)


@pytest.fixture
def cp_factory(tmp_path):
    made = []

    def make(env=None, conf=None, prefix=None, start=True):
        c = ControlPlane(prefix or tmp_path / ("cp%d" % len(made)), env, conf)
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    errors = []
    for c in made:
        try:
            c.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def cp(cp_factory):
    """A fresh, empty sluice-cp."""
    return cp_factory()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA certificate, and a server certificate + key signed by nothing (self-signed)."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "3650", "-subj", "/CN=Sluice Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign,cRLSign")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "srv.key", "-out", "srv.crt", "-days", "3650", "-subj", "/CN=example.test")
    return {
        "ca": (d / "ca.crt").read_text(),
        "cert": (d / "srv.crt").read_text(),
        "key": (d / "srv.key").read_text(),
    }
