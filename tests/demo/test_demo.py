"""`citygate demo` as a user runs it: everything up, an outage, everything down, audit lost = 0."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.servers


def test_demo_with_outage_loses_nothing(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "citygate",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--devices",
            "24",
            "--interval",
            "0.5",
            "--duration",
            "24s",
            "--outage",
            "8s",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "140", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "lost = 0" in out.stdout
    assert "OUTAGE" in out.stdout or "link is back" in out.stdout
    # The service layer ran: its events audited at the demo's receiver, none lost.
    assert "case events: transitions made" in out.stdout
    assert "/ lost 0 / delivered twice with different ids 0" in " ".join(out.stdout.split())
    assert (tmp_path / "demo" / "service.db").exists()
    # The public surfaces answered an anonymous caller: two citizen reports filed over Open311,
    # the progress page, NGSI-LD and SensorThings (the fleet's air-quality devices among them).
    flat = " ".join(out.stdout.split())
    assert "public: citizen reports 2" in flat, out.stdout[-3000:]
    assert "SensorThings Things 0" not in flat and "NGSI-LD AirQualityObserved 0 " not in flat
    # Everything it wrote is under the directory it named.
    assert (tmp_path / "demo" / "pki" / "inventory.json").exists()
    assert (tmp_path / "demo" / "operator-token").stat().st_mode & 0o077 == 0
