"""[cloud.progress] is refused at load without the service layer (its figures come from the
service store), with a message naming both sections; a bad time zone is refused too."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from citygate.cloud.settings import CloudSettings
from citygate.errors import ConfigError
from tests.cloud.conftest import CloudPki, make_settings


def _config(tmp_path: Path, cloud_pki: CloudPki, **sections: dict[str, object]) -> Path:
    base = make_settings(cloud_pki, tmp_path)
    cloud: dict[str, object] = {
        key: str(getattr(base, key))
        for key in ("tls_cert", "tls_key", "client_ca", "client_crl", "inventory")
    }
    cloud.update(sections)
    path = tmp_path / "cloud.toml"
    path.write_text(tomli_w.dumps({"cloud": cloud}))
    return path


def test_progress_without_the_service_layer_is_refused_at_load(tmp_path: Path, cloud_pki: CloudPki) -> None:
    path = _config(tmp_path, cloud_pki, progress={"enabled": True})
    with pytest.raises(ConfigError) as e:
        CloudSettings.load(path)
    message = str(e.value)
    assert "[cloud] progress" in message
    assert "[cloud.progress] enabled needs the service layer" in message
    assert "[cloud.service] enabled = true" in message


def test_progress_with_the_service_layer_loads(tmp_path: Path, cloud_pki: CloudPki) -> None:
    service = {"enabled": True, "store_url": f"sqlite:///{tmp_path / 's.db'}", "timezone": "Europe/Berlin"}
    path = _config(tmp_path, cloud_pki, service=service, progress={"enabled": True, "min_cases": 10})
    s = CloudSettings.load(path)
    assert s.progress.enabled and s.progress.min_cases == 10
    assert s.progress.zone(s.service).key == "Europe/Berlin"  # weeks in the service's zone by default


def test_off_by_default_and_off_needs_nothing(tmp_path: Path, cloud_pki: CloudPki) -> None:
    assert CloudSettings.load(_config(tmp_path, cloud_pki)).progress.enabled is False
    s = CloudSettings.load(_config(tmp_path, cloud_pki, progress={"enabled": False, "weeks": 4}))
    assert s.progress.weeks == 4


@pytest.mark.parametrize(
    ("progress", "why"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"min_cases": 0}, "greater than or equal to 1"),
        ({"weeks": 0}, "greater than or equal to 1"),
        ({"refresh_s": 0.1}, "greater than or equal to 1"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_refused(
    tmp_path: Path, cloud_pki: CloudPki, progress: dict[str, object], why: str
) -> None:
    with pytest.raises(ConfigError, match=why):
        CloudSettings.load(_config(tmp_path, cloud_pki, progress=progress))
