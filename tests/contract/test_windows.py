"""The two sides' time windows: one home for their defaults and their comparison, and the
gateway's check-config warning where its windows exceed the cloud's."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from citygate.certs.pki import CaName, CertKind
from citygate.cli import build_app
from citygate.cloud.settings import CloudSettings
from citygate.config import toml_section
from citygate.contract import windows
from citygate.gateway.settings import GatewaySettings
from tests.conftest import GATEWAY_ID, PkiBundle


@pytest.fixture
def gw_config(test_pki: PkiBundle, tmp_path: Path) -> Path:
    gw = test_pki.pki.files(CertKind.GATEWAY, GATEWAY_ID)
    path = tmp_path / "gateway.toml"
    values = {
        "cert_file": str(gw.cert),
        "key_file": str(gw.key),
        "ca_file": str(test_pki.pki.ca_cert_path(CaName.INFRA)),
        "inventory": str(test_pki.pki.inventory_path),
        "state_dir": str(tmp_path / "state"),
        "cloud_url": "https://localhost:1",
    }
    path.write_text(toml_section("gateway", values))
    return path


def test_the_defaults_here_are_each_sides_defaults():
    for key, value in windows.GATEWAY_DEFAULTS.items():
        assert GatewaySettings.model_fields[key].default == value, key
    for key, value in windows.CLOUD_DEFAULTS.items():
        assert CloudSettings.model_fields[key].default == value, key


def test_the_defaults_agree():
    assert windows.window_warnings(windows.GATEWAY_DEFAULTS, windows.CLOUD_DEFAULTS) == []


def test_each_disagreement_is_named_with_both_keys_and_values():
    gateway = {"max_past_s": 40 * 86400.0, "max_future_s": 600.0, "outbox_max_age_s": 60 * 86400.0}
    out = windows.window_warnings(gateway, windows.CLOUD_DEFAULTS)
    assert len(out) == 3
    assert "gateway max_past_s = 3456000 s (40.0 days)" in out[0] and "cloud max_past_s" in out[0]
    assert "max_future_s = 600 s" in out[1]
    assert "outbox_max_age_s" in out[2] and "max_buffered_s" in out[2]


def test_gateway_check_config_warns_against_the_clouds_file(gw_config, tmp_path):
    cloud = tmp_path / "cloud.toml"
    cloud.write_text(toml_section("cloud", {"max_past_s": 86400.0}))
    result = CliRunner().invoke(
        build_app(), ["gateway", "check-config", "--config", str(gw_config), "--cloud-config", str(cloud)]
    )
    assert result.exit_code == 0, result.output
    assert "configuration OK: gateway gw-test" in result.output
    assert (
        "WARNING: gateway max_past_s = 2592000 s (30.0 days) is greater than cloud max_past_s"
        in result.output
    )
