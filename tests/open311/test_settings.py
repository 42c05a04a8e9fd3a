"""[cloud.open311]: refused at load when it cannot work (no service layer, weak keys, a status
left unmapped, malformed services), with a message naming what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w
from pydantic import SecretStr, ValidationError

from citygate.cloud.settings import CloudSettings
from citygate.errors import ConfigError
from citygate.open311.settings import STATUSES, AttributeDefinition, Open311Settings, ServiceDefinition
from citygate.service.case_model import STATUSES as STORE_STATUSES
from tests.open311.conftest import API_KEY, SERVICES

POTHOLE = {"code": "pothole", "name": "Pothole", "feeds": "roads"}


def cloud_toml(tmp_path: Path, **sections: Any) -> Path:
    cloud: dict[str, Any] = {
        "tls_cert": "/etc/citygate/cloud.pem",
        "tls_key": "/etc/citygate/cloud.key",
        "client_ca": "/etc/citygate/infra-ca.pem",
        "client_crl": "/etc/citygate/infra-ca.crl.pem",
        "inventory": "/etc/citygate/inventory.json",
        **sections,
    }
    path = tmp_path / "cloud.toml"
    path.write_text(tomli_w.dumps({"cloud": cloud}))
    return path


def test_the_settings_know_the_stores_statuses() -> None:
    assert set(STATUSES) == set(STORE_STATUSES)


def test_open311_without_the_service_layer_is_refused_at_load(tmp_path: Path) -> None:
    path = cloud_toml(tmp_path, open311={"enabled": True, "services": [POTHOLE]})
    with pytest.raises(ConfigError) as e:
        CloudSettings.load(path)
    assert "[cloud.open311] enabled needs the service layer" in str(e.value)
    assert "[cloud.service] enabled = true" in str(e.value)


def test_open311_with_the_service_layer_loads(tmp_path: Path) -> None:
    path = cloud_toml(
        tmp_path,
        service={"enabled": True, "store_url": f"sqlite:///{tmp_path}/s.db"},
        open311={"enabled": True, "services": [POTHOLE], "api_keys": {"app": API_KEY}},
    )
    s = CloudSettings.load(path)
    assert s.open311.enabled and s.open311.services[0].feeds == "roads"
    assert API_KEY not in repr(s)  # keys are secrets
    off = CloudSettings.load(cloud_toml(tmp_path))
    assert off.open311.enabled is False  # off by default


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api_keys": {"app": SecretStr("short")}}, "must be 24-200 characters"),
        ({"api_keys": {"app": SecretStr("x" * 30)}}, "repeats one character"),
        ({"api_keys": {"a": SecretStr(API_KEY), "b": SecretStr(API_KEY)}}, "distinct"),
        ({"api_keys": {"bad name": SecretStr(API_KEY)}}, "API key name"),
        ({"status_map": {"new": "open"}}, "missing acknowledged"),
        ({"services": [SERVICES[0], SERVICES[0]]}, "codes must be unique"),
        ({"enabled": True, "services": []}, "enabled needs a service"),
        ({"bounds": (52.7, 13.0, 52.3, 13.8)}, "south < north"),
        ({"default_page_size": 500, "max_page_size": 100}, "default_page_size"),
        ({"changeset": "yesterday"}, "RFC 3339"),
        ({"public_url": "http://city.example/open311"}, "public_url"),
    ],
)
def test_bad_open311_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        Open311Settings(**values)
    assert message in str(e.value)
    assert API_KEY not in str(e.value)  # hide_input_in_errors


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ({"datatype": "singlevaluelist"}, "needs values"),
        ({"datatype": "number", "values": [{"key": "1", "name": "one"}]}, "only list datatypes"),
        ({"required": True, "variable": False}, "required needs variable"),
        ({"code": "no spaces"}, "String should match pattern"),
    ],
)
def test_bad_attribute_definitions_are_refused(attribute: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        AttributeDefinition(**{"code": "depth", "description": "How deep?", "order": 1, **attribute})
    assert message in str(e.value)


def test_attribute_codes_and_orders_are_unique_within_a_service() -> None:
    a = {"code": "depth", "description": "How deep?", "order": 1}
    with pytest.raises(ValidationError, match="codes must be unique"):
        ServiceDefinition(**POTHOLE, attributes=[a, {**a, "order": 2}])
    with pytest.raises(ValidationError, match="orders must be unique"):
        ServiceDefinition(**POTHOLE, attributes=[a, {**a, "code": "width"}])
