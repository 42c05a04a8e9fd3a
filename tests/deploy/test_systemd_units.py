"""deploy/systemd: every unit is valid for systemd, and the CRLs are renewed and fetched in time.

A CRL past its nextUpdate makes Mosquitto refuse every client (docs/PKI.md). The CA
machine re-signs daily (citygate-pki-crl.timer) and publishes; each gateway fetches every
few hours (citygate-crl-fetch.timer), both well inside ``crl_days``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from citygate.certs.settings import PkiSettings

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = sorted(p for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer", ".path"))


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert section is not None, f"{path.name}: {line!r} outside a section"
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def _seconds(span: str) -> float:
    units = {"min": 60, "h": 3600, "d": 86400, "s": 1}
    m = re.fullmatch(r"(\d+)\s*(min|h|d|s)", span)
    assert m, span
    return int(m[1]) * units[m[2]]


def test_the_ca_machine_resigns_the_crls_daily_and_publishes_them():
    timer = parse(SYSTEMD / "citygate-pki-crl.timer")["Timer"]
    assert timer["OnCalendar"] == ["daily"] and timer["Persistent"] == ["true"]
    assert timer["Unit"] == ["citygate-pki-crl.service"]
    service = parse(SYSTEMD / "citygate-pki-crl.service")["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == ["/opt/citygate/venv/bin/citygate pki crl"]
    pki_dir = next(v.split("=", 1)[1] for v in service["Environment"] if v.startswith("CITYGATE_PKI_DIR="))
    published = {v.split()[-1].rsplit("/", 1)[1]: v.split()[-2] for v in service["ExecStartPost"]}
    # Under the names a gateway installs, from where `citygate pki` writes them.
    assert published == {
        "device-ca.crl.pem": f"{pki_dir}/device-ca/crl.pem",
        "infra-ca.crl.pem": f"{pki_dir}/infra-ca/crl.pem",
        "client-ca.crl.pem": f"{pki_dir}/client-ca/crl.pem",
    }


def test_gateways_fetch_well_before_the_crl_expires():
    timer = parse(SYSTEMD / "citygate-crl-fetch.timer")["Timer"]
    assert timer["Unit"] == ["citygate-crl-fetch.service"] and "OnBootSec" in timer
    every = _seconds(timer["OnUnitActiveSec"][0]) + _seconds(timer["RandomizedDelaySec"][0])
    # The CA re-signs daily; a gateway needs a day plus its own interval, far less than crl_days.
    assert 86400 + every < PkiSettings.model_fields["crl_days"].default * 86400 / 2
    service = parse(SYSTEMD / "citygate-crl-fetch.service")["Service"]
    assert service["ExecStart"][0].startswith("/usr/local/sbin/citygate-crl-fetch ")
    assert "/etc/citygate/tls" in service["ReadWritePaths"][0]
    # The reload unit watches exactly the files the fetcher writes.
    watched = parse(SYSTEMD / "citygate-crl-reload.path")["Path"]["PathChanged"]
    assert sorted(watched) == ["/etc/citygate/tls/device-ca.crl.pem", "/etc/citygate/tls/infra-ca.crl.pem"]


def test_every_timer_and_path_names_a_unit_that_exists():
    for unit in UNITS:
        if unit.suffix in (".timer", ".path"):
            section = parse(unit)["Timer" if unit.suffix == ".timer" else "Path"]
            target = section.get("Unit", [unit.stem + ".service"])[0]
            assert (SYSTEMD / target).exists(), f"{unit.name} starts {target}, which is not in deploy/systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    # The programs the units run do not exist here: stand-ins at the same paths, under a root.
    units = tmp_path / "units"
    units.mkdir()
    stand_in = tmp_path / "stand-in"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    programs = {"/opt/citygate/venv/bin/citygate", "/usr/local/sbin/citygate-crl-fetch"}
    for unit in UNITS:
        text = unit.read_text()
        for program in programs:
            text = text.replace(program, str(stand_in))
        (units / unit.name).write_text(text)
    r = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in units.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=units,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
        check=False,
    )
    # Only complaints about our units count (not about the host's own units it loads too).
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "citygate" in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr
