"""The example files under deploy/examples stay valid: the demo's
declarative file (with its plugins) loads, and so does the DB-less
example configuration file."""

from pathlib import Path

from conftest import run_dp

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def test_demo_declarative_file_is_valid(tmp_path):
    r = run_dp(["-t", "-p", tmp_path, "-d", EXAMPLES / "demo.yaml"])
    assert r.returncode == 0, r.stderr
    assert "3 routes" in r.stdout


def test_dp_example_configuration_is_valid(tmp_path):
    r = run_dp(["-t", "-c", EXAMPLES / "sluice-dp.conf", "-p", tmp_path, "-d",
                EXAMPLES / "demo.yaml"])
    assert r.returncode == 0, r.stderr
