"""`sluice-cp gen-cert [--days N] [CERT [KEY]]`: a self-signed cluster
certificate and key as `kong hybrid gen_cert` makes them (EC P-384,
CN=kong_clustering, 1095 days by default, key 0600, certificate 0644), checked
with the openssl command line. Existing files are never overwritten; bad
arguments exit 2 with the reason."""

import calendar
import os
import stat
import subprocess
import time

import pytest

from .conftest import CP_BIN, cp_env, run_cp

DAY = 86400


def openssl(*args):
    r = subprocess.run(["openssl"] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def gen_cert(args, cwd):
    if not CP_BIN.exists():
        pytest.fail("sluice-cp not found at %s: build it with `make`" % CP_BIN, pytrace=False)
    return subprocess.run([str(CP_BIN), "gen-cert"] + [str(a) for a in args], env=cp_env(),
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def x509_fields(cert):
    """subject, notBefore and notAfter (epoch seconds) from `openssl x509`."""
    out = openssl("x509", "-in", cert, "-noout", "-subject", "-dates")
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def epoch(s):
        return calendar.timegm(time.strptime(s.strip(), "%b %d %H:%M:%S %Y GMT"))

    return fields["subject"].strip(), epoch(fields["notBefore"]), epoch(fields["notAfter"])


def check_pair(cert, key, days):
    assert mode(key) == 0o600
    assert mode(cert) == 0o644
    subject, not_before, not_after = x509_fields(cert)
    assert subject.replace(" ", "") == "CN=kong_clustering"
    now = time.time()
    assert now - 120 <= not_before <= now + 1
    assert abs((not_after - not_before) - days * DAY) <= 1
    text = openssl("pkey", "-in", key, "-noout", "-text")
    assert "secp384r1" in text and "P-384" in text, text
    # The key is the certificate's: their public keys are the same.
    assert openssl("x509", "-in", cert, "-noout", "-pubkey") == \
        openssl("pkey", "-in", key, "-pubout")
    # Self-signed with SHA-256, version 3.
    full = openssl("x509", "-in", cert, "-noout", "-text")
    assert "ecdsa-with-SHA256" in full
    assert "Version: 3" in full
    openssl("verify", "-CAfile", cert, "-partial_chain", cert)


def test_defaults(tmp_path):
    r = gen_cert([], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "wrote cluster.crt and cluster.key"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.crt", "cluster.key"]
    check_pair(tmp_path / "cluster.crt", tmp_path / "cluster.key", 1095)


def test_paths_and_days(tmp_path):
    cert, key = tmp_path / "cp.crt", tmp_path / "sub" / "cp.key"
    (tmp_path / "sub").mkdir()
    r = gen_cert(["--days", "30", cert, key], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "wrote %s and %s" % (cert, key)
    check_pair(cert, key, 30)

    # -d, --days=N, the limits, and options after the paths.
    for i, args in enumerate([["-d", "1"], ["--days=36500"], ["--days", "7"]]):
        c, k = tmp_path / ("c%d.crt" % i), tmp_path / ("c%d.key" % i)
        r = gen_cert([c, k] + args, tmp_path)
        assert r.returncode == 0, r.stderr
        check_pair(c, k, int(args[-1].split("=")[-1]))


def test_cert_alone_names_the_key(tmp_path):
    r = gen_cert(["node.crt"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "wrote node.crt and node.key"
    check_pair(tmp_path / "node.crt", tmp_path / "node.key", 1095)


def test_modes_ignore_umask(tmp_path):
    def restrictive():
        os.umask(0o077)

    r = subprocess.run([str(CP_BIN), "gen-cert"], env=cp_env(), cwd=tmp_path,
                       capture_output=True, text=True, timeout=60, preexec_fn=restrictive)
    assert r.returncode == 0, r.stderr
    assert mode(tmp_path / "cluster.crt") == 0o644
    assert mode(tmp_path / "cluster.key") == 0o600


def test_refuses_to_overwrite(tmp_path):
    cert, key = tmp_path / "cluster.crt", tmp_path / "cluster.key"
    assert gen_cert([], tmp_path).returncode == 0
    before = cert.read_bytes(), key.read_bytes()

    r = gen_cert([], tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "cluster.crt: already exists; remove it or choose another path" in r.stderr
    assert "cluster.key: already exists; remove it or choose another path" in r.stderr
    assert (cert.read_bytes(), key.read_bytes()) == before

    # One file in the way is enough, and the other is not written either.
    other_cert = tmp_path / "other.crt"
    r = gen_cert([other_cert, key], tmp_path)
    assert r.returncode == 2
    assert "%s: already exists; remove it or choose another path" % key in r.stderr
    assert not other_cert.exists()
    assert key.read_bytes() == before[1]


@pytest.mark.parametrize("days", ["0", "36501", "-1", "abc", "1.5", "", "99999999999999999999"])
def test_bad_days(tmp_path, days):
    r = gen_cert(["--days", days], tmp_path)
    assert r.returncode == 2
    assert "--days: '%s' is not a number of days from 1 to 36500" % days in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--days"], "--days needs a number of days"),
    (["--force"], "unknown option '--force'"),
    (["a.crt", "a.key", "extra"], "unexpected argument 'extra'"),
    (["same.pem", "same.pem"], "need different paths"),
    (["missing/dir/x.crt", "x.key"], "missing/dir/x.crt: cannot create it (No such file or"),
])
def test_bad_arguments(tmp_path, args, message):
    r = gen_cert(args, tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert r.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_help_and_usage():
    r = run_cp(["gen-cert", "--help"])
    assert r.returncode == 0
    assert "sluice-cp gen-cert [--days N] [CERT [KEY]]" in r.stdout
    r = run_cp(["--help"])
    assert r.returncode == 0
    assert "sluice-cp gen-cert [--days N] [CERT [KEY]]" in r.stdout
