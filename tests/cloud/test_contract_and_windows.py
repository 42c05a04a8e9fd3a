"""contract_version from content only; prepare() as of received_ms; check-config --gateway-config.

No servers: InventoryHolder, prepare() and the CLI over plain files (the session PKI provides
the TLS files check-config loads).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from citygate.certs.pki import CaName
from citygate.cli import cloud as cloud_cli
from citygate.cloud.ingest import prepare
from citygate.cloud.lineprotocol import ReadingEncoder
from citygate.cloud.state import InventoryHolder
from citygate.config import toml_section
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.validation import ValidationLimits, Validator
from citygate.contract.wire import RECEIVED_IN_FUTURE, RECEIVED_TOO_OLD
from tests.cloud.conftest import CloudPki, aq_values, write_inventory
from tests.conftest import GATEWAY_ID

_MS = 1_000_000


def _holder(path: Path, registry: ProfileRegistry | None = None, **kw: Any) -> InventoryHolder:
    return InventoryHolder(path, registry or ProfileRegistry(), ValidationLimits(), 3600, **kw)


def test_contract_version_depends_on_content_not_on_the_file(tmp_path):
    a = write_inventory(tmp_path / "a.json")
    (tmp_path / "b").mkdir()
    b = tmp_path / "b" / "inventory.json"
    shutil.copyfile(a, b)  # another replica: another path, inode and mtime, the same bytes
    registry = ProfileRegistry()
    va, vb = _holder(a, registry).contract_version, _holder(b, ProfileRegistry()).contract_version
    assert va == vb and len(va) == 16
    assert _holder(a).contract_version == va  # loaded again: the same

    Inventory.load(b).with_devices(DeviceRecord(device_id="dev-z", profile="noise", profile_version=1)).save(
        b
    )
    assert _holder(b).contract_version != va
    # The profiles are part of it: a registry with only one of them is another contract.
    only_noise = ProfileRegistry.from_profiles(registry.get("noise", 1))
    assert _holder(a, only_noise).contract_version != va
    # And the window: a cloud that accepts longer buffering accepts other readings.
    assert _holder(a, max_buffered_s=60).contract_version != va


def test_holder_recomputes_the_version_when_it_reloads(tmp_path):
    path = write_inventory(tmp_path / "inventory.json")
    holder = _holder(path)
    v1 = holder.contract_version
    validator, v = holder.current()
    assert v == v1 and "dev-new" not in validator.inventory
    Inventory.load(path).with_devices(
        DeviceRecord(device_id="dev-new", profile="air_quality", profile_version=1)
    ).save(path)
    assert holder.refresh()
    validator, v2 = holder.current()
    assert v2 != v1 and "dev-new" in validator.inventory
    # Rewritten with the same bytes: reloaded (the file changed: a new inode) but the same version.
    data = path.read_bytes()
    path.with_suffix(".tmp").write_bytes(data)
    path.with_suffix(".tmp").replace(path)
    holder.refresh()
    assert holder.contract_version == v2


def _raw(ts_ms: int, **extra: Any) -> dict[str, Any]:
    return {"device_id": "dev-a", "ts": ts_ms, "readings": aq_values(), **extra}


def test_prepare_judges_the_window_as_of_received_ms(tmp_path):
    inv = Inventory.load(write_inventory(tmp_path / "inventory.json"))
    validator = Validator(ProfileRegistry(), inv, ValidationLimits(max_future_s=300, max_past_s=60))
    now_ms = 1_800_000_000_000
    raws = [
        _raw(now_ms - 120_000, received_ms=now_ms - 90_000),  # 0 fresh when received: good
        _raw(now_ms - 120_000),  # 1 no received_ms: judged now, too old
        _raw(now_ms, received_ms=now_ms + 301_000),  # 2 gateway clock ahead
        _raw(now_ms - 3_700_000, received_ms=now_ms - 3_601_000),  # 3 buffered too long
        _raw(now_ms + 150_000, received_ms=now_ms + 200_000),  # 4 within max_future_s: good
        _raw(now_ms, received_ms=float(now_ms)),  # 5 wrong type
        _raw(now_ms, received_ms=False),  # 6 bool is not an int
        _raw(now_ms - 100, received_ms=None),  # 7 null = absent: good
    ]
    out = prepare(
        "b", raws, validator, ReadingEncoder(), now_ms * _MS, gateway_id=GATEWAY_ID, max_buffered_s=3600
    )
    assert {r.index: r.reason for r in out.rejected} == {
        1: "timestamp_too_old",
        2: RECEIVED_IN_FUTURE,
        3: RECEIVED_TOO_OLD,
        5: "bad_shape",
        6: "bad_shape",
    }
    assert out.line_reading == [0, 4, 7]
    assert "301.000 s ahead" in next(r.detail for r in out.rejected if r.index == 2)


def _cloud_toml(cloud_pki: CloudPki, tmp: Path, **extra: Any) -> Path:
    values: dict[str, Any] = {
        "tls_cert": str(cloud_pki.server.cert),
        "tls_key": str(cloud_pki.server.key),
        "client_ca": str(cloud_pki.infra_ca),
        "client_crl": str(cloud_pki.bundle.pki.crl_path(CaName.INFRA)),
        "inventory": str(write_inventory(tmp / "inventory.json")),
        **extra,
    }
    path = tmp / "cloud.toml"
    path.write_text(toml_section("cloud", values))
    return path


def _check(*args: str) -> Any:
    return CliRunner().invoke(cloud_cli.app, ["check-config", *args])


def test_check_config_prints_the_windows(cloud_pki, tmp_path, monkeypatch):
    for k in ("MAX_PAST_S", "MAX_FUTURE_S", "MAX_BUFFERED_S"):
        monkeypatch.delenv(f"CITYGATE_CLOUD_{k}", raising=False)
    cfg = _cloud_toml(cloud_pki, tmp_path)
    res = _check("--config", str(cfg))
    assert res.exit_code == 0, res.output
    assert "configuration OK" in res.output
    assert (
        "cloud windows: max_past_s = 2592000 s (30.0 days), max_future_s = 300 s, "
        "max_buffered_s = 2592000 s (30.0 days)"
    ) in res.output
    assert "WARNING" not in res.output


def test_check_config_warns_about_a_gateway_that_would_have_readings_held(cloud_pki, tmp_path):
    cfg = _cloud_toml(cloud_pki, tmp_path, max_past_s=86400, max_future_s=60, max_buffered_s=604800)
    gw = tmp_path / "gateway.toml"
    gw.write_text('[gateway]\ncloud_url = "https://x"\nmax_future_s = 600\n')  # the rest: defaults
    res = _check("--config", str(cfg), "--gateway-config", str(gw))
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("WARNING:")]
    assert len(lines) == 3, res.output
    past, future, age = lines
    assert past.startswith(
        "WARNING: gateway max_past_s = 2592000 s (30.0 days) is greater than cloud max_past_s = "
        "86400 s (1.0 days)"
    )
    assert "until its outbox_max_age_s = 1209600 s (14.0 days) drops them" in past
    assert future.startswith(
        "WARNING: gateway max_future_s = 600 s is greater than cloud max_future_s = 60 s"
    )
    assert age.startswith(
        "WARNING: gateway outbox_max_age_s = 1209600 s (14.0 days) is greater than cloud "
        "max_buffered_s = 604800 s (7.0 days)"
    )
    assert "received_too_old" in age and "Set the cloud's max_buffered_s to at least 1209600 s" in age

    # A gateway within the cloud's windows: no warning.
    gw.write_text("[gateway]\nmax_past_s = 3600\nmax_future_s = 30\noutbox_max_age_s = 86400\n")
    res = _check("--config", str(cfg), "--gateway-config", str(gw))
    assert res.exit_code == 0 and "WARNING" not in res.output, res.output
    assert "nothing it accepts would be held" in res.output

    # Not a gateway config, or a key of the wrong type: a usage error naming the file.
    gw.write_text("[cloud]\nport = 1\n")
    res = _check("--config", str(cfg), "--gateway-config", str(gw))
    assert res.exit_code == 2
    gw.write_text('[gateway]\nmax_past_s = "long"\n')
    res = _check("--config", str(cfg), "--gateway-config", str(gw))
    assert res.exit_code == 2
