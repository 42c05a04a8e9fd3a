"""``citygate sim run`` and ``citygate sim audit`` through typer, against real servers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from citygate.certs.pki import Pki
from citygate.cli.sim import app
from citygate.contract.inventory import Inventory
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.mosquitto import LocalMosquitto
from tests.sim.conftest import StandInGateway, store_readings

pytestmark = pytest.mark.servers


def test_run_issues_certificates_then_audit(
    sim_pki: Pki, sim_broker: LocalMosquitto, gateway: StandInGateway, influxdb: LocalInfluxDB, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.bin"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "run",
            "--devices",
            "6",
            "--gateway-broker",
            f"127.0.0.1:{sim_broker.device_port}",
            "--pki-dir",
            str(sim_pki.dir),
            "--prefix",
            "cli",
            "--profile-mix",
            "air_quality=1,noise=1",
            "--count",
            "4",
            "--interval",
            "0.1",
            "--ledger",
            str(ledger),
            "--seed",
            "9",
            "--fault",
            "duplicate:devices=cli-00002,count=1",
            "--json",
            "--no-progress",
            "--ramp",
            "0.3",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert summary["produced"] == 24
    assert summary["held_at_end"] == 0
    assert summary["faults"] == {"duplicate": 1}
    inventory = Inventory.load(sim_pki.inventory_path)
    assert {inventory[f"cli-0000{i}"].profile for i in range(1, 7)} == {"air_quality", "noise"}
    gateway.wait_quiet()
    store_readings(influxdb, "sim_cli", sim_pki, gateway.by_device())

    ok = runner.invoke(
        app, ["audit", "--ledger", str(ledger), "--influx", influxdb.url, "--db", "sim_cli", "--json"]
    )
    assert ok.exit_code == 0, ok.output
    total = orjson.loads(ok.stdout)["total"]
    assert (total["expected"], total["stored"], total["lost"]) == (24, 24, 0)

    influxdb.query("DROP SERIES FROM \"noise\" WHERE device_id = 'cli-00002'", db="sim_cli")
    bad = runner.invoke(app, ["audit", "--ledger", str(ledger), "--influx", influxdb.url, "--db", "sim_cli"])
    assert bad.exit_code == 3
    assert "cli-00002" in bad.stdout


def test_usage_errors() -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["run", "--gateway-broker", "nope", "--count", "1"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["run", "--gateway-broker", "127.0.0.1:1", "--count", "1", "--fault", "bogus"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["run", "--gateway-broker", "127.0.0.1:1", "--count", "1", "--client", "paho"])
    assert r.exit_code == 2
