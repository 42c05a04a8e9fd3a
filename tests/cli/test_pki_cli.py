"""``citygate pki`` end to end through the real command line (in-process runner)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import orjson
import pytest
from typer.testing import CliRunner

from citygate.cli import build_app
from citygate.contract.inventory import Inventory

runner = CliRunner()


def run(*args: str):
    return runner.invoke(build_app(), list(args), catch_exceptions=False)


@pytest.fixture
def pki_dir(tmp_path):
    d = tmp_path / "pki"
    result = run("pki", "init", "--dir", str(d))
    assert result.exit_code == 0, result.output
    return d


def test_full_lifecycle(pki_dir):
    d = str(pki_dir)
    r = run(
        "pki",
        "issue",
        "device",
        "aq-001",
        "--profile",
        "air_quality",
        "--site",
        "townhall",
        "--district",
        "centre",
        "--lat",
        "52.37",
        "--lon",
        "4.89",
        "--dir",
        d,
    )
    assert r.exit_code == 0, r.output
    assert run("pki", "issue", "gateway", "gw-1", "--dir", d).exit_code == 0
    assert run("pki", "issue", "server", "localhost", "--ip", "127.0.0.1", "--dir", d).exit_code == 0
    inv = Inventory.load(pki_dir / "inventory.json")
    assert inv["aq-001"].profile == "air_quality" and inv["aq-001"].district == "centre"

    r = run("pki", "list", "--json", "--dir", d)
    rows = orjson.loads(r.stdout)
    assert {(x["kind"], x["name"], x["status"]) for x in rows} == {
        ("device", "aq-001", "valid"),
        ("gateway", "gw-1", "valid"),
        ("server", "localhost", "valid"),
    }
    r = run("pki", "list", "--dir", d)
    assert "aq-001" in r.stdout and "CRL next update" in r.stdout

    # Devices default to 90 days, gateways/servers 365: only the device expires within 100 days.
    r = run("pki", "expiring", "--days", "100", "--json", "--dir", d)
    assert [x["name"] for x in orjson.loads(r.stdout)] == ["aq-001"]

    r = run("pki", "revoke", "aq-001", "--dir", d)
    assert r.exit_code == 0 and "revoked device aq-001" in r.stdout
    r = run("pki", "list", "--json", "--dir", d)
    assert {x["name"]: x["status"] for x in orjson.loads(r.stdout)}["aq-001"] == "revoked"
    assert run("pki", "crl", "--dir", d).exit_code == 0


@pytest.mark.parametrize("bad", ["a+b", "x#", "a/b", "", "x" * 65, "tab\there"])
def test_bad_ids_exit_2_with_a_clear_message(pki_dir, bad):
    r = run("pki", "issue", "device", bad, "--profile", "air_quality", "--dir", str(pki_dir))
    assert r.exit_code == 2
    assert "device id" in r.stderr
    r = run("pki", "issue", "gateway", bad, "--dir", str(pki_dir))
    assert r.exit_code == 2
    assert "gateway id" in r.stderr


def test_unknown_profile_exits_2(pki_dir):
    r = run("pki", "issue", "device", "aq-1", "--profile", "no_such_sensor", "--dir", str(pki_dir))
    assert r.exit_code == 2
    assert "no_such_sensor" in r.stderr


def test_init_twice_refuses_and_keeps_keys(pki_dir):
    key = pki_dir / "device-ca" / "ca.key"
    before = key.read_bytes()
    r = run("pki", "init", "--dir", str(pki_dir))
    assert r.exit_code == 1 and "refusing" in r.stderr
    assert key.read_bytes() == before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_config_file_and_environment(tmp_path):
    cfg = tmp_path / "citygate.toml"
    cfg.write_text(f'[pki]\ndir = "{tmp_path / "from-file"}"\ndevice_days = 10\n')
    assert run("pki", "init", "--config", str(cfg)).exit_code == 0
    assert (tmp_path / "from-file" / "device-ca" / "ca.pem").exists()
    run("pki", "issue", "device", "d1", "--profile", "noise", "--config", str(cfg))
    rows = orjson.loads(run("pki", "list", "--json", "--config", str(cfg)).stdout)
    assert 9 < rows[0]["days_left"] <= 10

    bad = tmp_path / "bad.toml"
    bad.write_text("[pki]\ndevice_days = -1\n")
    r = run("pki", "list", "--config", str(bad))
    assert r.exit_code == 2 and "device_days" in r.stderr
    bad.write_text("[pki]\ndevcie_days = 3\n")
    r = run("pki", "list", "--config", str(bad))
    assert r.exit_code == 2 and "devcie_days" in r.stderr


def test_console_script_runs(tmp_path):
    env = dict(os.environ, CITYGATE_PKI_DIR=str(tmp_path / "envpki"))
    out = subprocess.run(
        [sys.executable, "-m", "citygate", "pki", "init"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "envpki" / "infra-ca" / "ca.key").exists()


def test_reader_and_operator_certificates(pki_dir):
    d = str(pki_dir)
    r = run("pki", "issue", "reader", "ana", "--dir", d)
    assert r.exit_code == 0, r.output
    assert (pki_dir / "issued" / "reader" / "ana" / "cert.pem").exists()
    assert run("pki", "issue", "operator", "bo", "--days", "30", "--dir", d).exit_code == 0
    rows = {(x["kind"], x["name"]): x for x in orjson.loads(run("pki", "list", "--json", "--dir", d).stdout)}
    assert {k: v["status"] for k, v in rows.items()} == {
        ("reader", "ana"): "valid",
        ("operator", "bo"): "valid",
    }
    assert 29 < rows[("operator", "bo")]["days_left"] <= 30
    r = run("pki", "list", "--dir", d)
    assert "client-ca CRL next update" in r.stdout
    r = run("pki", "revoke", "ana", "--kind", "reader", "--dir", d)
    assert r.exit_code == 0 and "revoked reader ana" in r.stdout
    r = run("pki", "crl", "--dir", d)
    assert r.exit_code == 0 and "client-ca" in r.stdout
    r = run("pki", "issue", "reader", "a/b", "--dir", d)
    assert r.exit_code == 2 and "reader name" in r.stderr
