"""The open-data policy: nothing public by default, zoned profiles zoned for everyone."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from citygate.opendata.policy import OpenDataSettings, access


def test_nothing_is_served_while_off() -> None:
    s = OpenDataSettings(public_profiles=["air_quality"])
    assert access(s, "air_quality", reader=True) == "none"


def test_public_only_when_listed() -> None:
    s = OpenDataSettings(enabled=True, public_profiles=["air_quality"])
    assert access(s, "air_quality", reader=False) == "raw"
    assert access(s, "noise", reader=False) == "none"
    assert access(s, "noise", reader=True) == "raw"


def test_parking_is_zoned_even_for_readers() -> None:
    s = OpenDataSettings(enabled=True, public_profiles=["parking"])
    assert access(s, "parking", reader=True) == "zoned"
    assert access(s, "parking", reader=False) == "zoned"
    assert s.zoned["parking"].delay_s == 900.0


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        OpenDataSettings.model_validate({"enabled": True, "public_profile": ["x"]})
