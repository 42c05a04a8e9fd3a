"""Anonymous callers: rate limited per address, answered from a cache; settings; the switch."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from citygate.opendata.policy import OpenDataSettings
from citygate.opendata.sta.settings import StaSettings
from tests.sta.conftest import StaCloud

pytestmark = pytest.mark.servers

PUBLIC = "https://data.example.org/sta/v1.1"


def test_rate_limit_cache_and_public_url(sta_cloud_factory: Any) -> None:
    cloud: StaCloud = sta_cloud_factory(
        load=False, sta=StaSettings(enabled=True, burst=3, rate_per_minute=1, cache_s=3600, public_url=PUBLIC)
    )
    anonymous = cloud.anonymous()
    answers = [anonymous.get("/sta/v1.1/Things", params={"$top": 1}) for _ in range(3)]
    assert all(a.status_code == 200 for a in answers)
    assert answers[0].json() == answers[2].json()
    assert answers[0].json()["@iot.nextLink"].startswith(f"{PUBLIC}/Things?")  # links name the public URL
    assert answers[0].headers["RateLimit-Limit"] == "3" and answers[2].headers["RateLimit-Remaining"] == "0"
    runtime = cloud.rc.app.state.sta_runtime
    assert runtime.cache.computed == 1  # three requests, one computation
    refused = anonymous.get("/sta/v1.1/Things", params={"$top": 1})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["type"] == "error"
    # readers are neither limited nor cached
    for _ in range(5):
        assert cloud.get("Things", {"$top": 1}, reader=True).status_code == 200
    assert runtime.cache.computed == 1


def test_off_unless_enabled(sta_cloud_factory: Any) -> None:
    cloud = sta_cloud_factory(load=False, sta=StaSettings())
    r = cloud.get("Things")
    assert r.status_code == 404 and "[cloud.sta] enabled = true" in r.json()["message"]
    nothing_public = sta_cloud_factory(load=False, opendata=OpenDataSettings(enabled=False))
    assert nothing_public.doc("Things")["value"] == []  # [cloud.opendata] off: nothing is open data
    assert nothing_public.doc("Things", reader=True)["value"] == []


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="default_top must not exceed max_top"):
        StaSettings(default_top=500, max_top=100)
    with pytest.raises(ValidationError):
        StaSettings(public_url="ftp://x/")
    with pytest.raises(ValidationError):
        StaSettings.model_validate({"enabled": True, "max_tops": 5})
    assert StaSettings(public_url="https://data.example.org/sta/v1.1").public_url == PUBLIC
