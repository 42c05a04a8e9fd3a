"""Fixtures of the contract tests: the packaged profiles, an inventory of one device per profile."""

from __future__ import annotations

import pytest

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.validation import Validator
from tests.contract.validation_helpers import DEVICES


@pytest.fixture(scope="module")
def registry() -> ProfileRegistry:
    return ProfileRegistry()


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    inv = Inventory().with_devices(
        *(DeviceRecord(device_id=d, profile=p, profile_version=1) for d, p in DEVICES.items()),
        DeviceRecord(device_id="future-1", profile="air_quality", profile_version=9),
        DeviceRecord(device_id="alien-1", profile="teleporter", profile_version=1),
    )
    return inv


@pytest.fixture(scope="module")
def v(registry, inventory) -> Validator:
    return Validator(registry, inventory)
