"""Open311 fixtures: a real cloud (uvicorn, TLS; clients without certificates) with the service
layer on a SQLite store and ``[cloud.open311]`` configured, plus a CaseStore on the same store.

Two services: ``pothole`` (feeds citygate's ``roads``; three attributes, one required) and
``bin-full`` (feeds ``waste``, a ``batch`` service answering tokens; the sensor cases of
``waste`` are listed under it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from citygate.open311.settings import AttributeDefinition, AttributeValue, Open311Settings, ServiceDefinition
from citygate.service.cases import CaseStore
from citygate.service.db import make_engine, sqlite_url
from citygate.service.settings import ServiceSettings, ServiceTarget
from citygate.service.subscriptions import Subscription
from tests.cloud.conftest import CloudPki, RunningCloud, cloud_pki, make_settings

__all__ = ["cloud_pki"]  # the fixture, for this directory's tests

API_KEY = "fixmystreet-" + "Kq7Rw2Zt" * 4
OTHER_KEY = "city-app-" + "Hn4Xp9Lm" * 4
CENTRE = (52.5163, 13.3777)  # lat, long
BOUNDS = (52.3, 13.0, 52.7, 13.8)

SERVICES = [
    ServiceDefinition(
        code="pothole",
        name="Pothole",
        description="A hole in the road or the pavement",
        group="streets",
        keywords=["road", "hole"],
        feeds="roads",
        notice="Inspected within 2 working days",
        agency="Roads department",
        attributes=[
            AttributeDefinition(
                code="depth", description="How deep (cm)?", datatype="number", order=1, required=True
            ),
            AttributeDefinition(
                code="lane",
                description="Where is it?",
                datatype="singlevaluelist",
                order=2,
                values=[
                    AttributeValue(key="road", name="Road"),
                    AttributeValue(key="path", name="Cycle path"),
                ],
            ),
            AttributeDefinition(
                code="hazards",
                description="What else is there?",
                datatype="multivaluelist",
                order=3,
                values=[AttributeValue(key="water", name="Water"), AttributeValue(key="glass", name="Glass")],
            ),
        ],
    ),
    ServiceDefinition(
        code="bin-full", name="Bin overflowing", group="sanitation", feeds="waste", type="batch"
    ),
]


def open311_settings(**overrides: Any) -> Open311Settings:
    values: dict[str, Any] = {
        "enabled": True,
        "jurisdiction_id": "city.example",
        "api_keys": {"fixmystreet": SecretStr(API_KEY), "city-app": SecretStr(OTHER_KEY)},
        "services": SERVICES,
        "bounds": BOUNDS,
        "contact": "311@city.example",
        "key_service": "https://city.example/open311-keys",
        # Generous for the shared cloud; the rate-limit tests start their own.
        "read_burst": 100_000,
        "read_rate_per_minute": 1_000_000,
        "post_burst_per_address": 100_000,
        "post_rate_per_minute_per_address": 1_000_000,
        "post_burst_per_key": 100_000,
        "post_rate_per_minute_per_key": 1_000_000,
    }
    values.update(overrides)
    return Open311Settings(**values)


@dataclass
class Open311Cloud:
    cloud: RunningCloud
    store: CaseStore
    store_url: str

    def client(self) -> httpx.Client:
        """A citizen's app: no client certificate, no token."""
        return self.cloud.client()

    def post(self, fmt: str = "json", *, key: str = API_KEY, **fields: Any) -> httpx.Response:
        return self.client().post(f"/open311/v2/requests.{fmt}", data={"api_key": key, **fields})

    def report(self, **fields: Any) -> httpx.Response:
        """A good pothole report at the centre (fields override)."""
        form = {
            "service_code": "pothole",
            "lat": str(CENTRE[0]),
            "long": str(CENTRE[1]),
            "attribute[depth]": "7",
        }
        form.update(fields)
        return self.post(**form)


def start_open311_cloud(
    cloud_pki: CloudPki,
    directory: Path,
    *,
    store_url: str | None = None,
    subscriptions: tuple[Subscription, ...] = (),
    service: dict[str, Any] | None = None,
    **open311: Any,
) -> Open311Cloud:
    url = store_url or sqlite_url(directory / "service.db")
    svc = ServiceSettings(
        enabled=True,
        store_url=url,
        subscriptions=list(subscriptions),
        webhook_allow_http_loopback=True,
        targets={"roads": ServiceTarget(acknowledge_s=3600, resolve_s=2 * 86400)},
        **(service or {}),
    )
    settings = make_settings(
        cloud_pki, directory, service=svc, open311=open311_settings(**open311), client_cert_mode="optional"
    )
    cloud = RunningCloud(settings, cloud_pki).start()
    return Open311Cloud(cloud, CaseStore(make_engine(url), subscriptions), url)


@pytest.fixture(scope="module")
def o311(cloud_pki: CloudPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Open311Cloud]:
    """One cloud for a module's tests: tests use their own places (reports attach by distance)."""
    c = start_open311_cloud(cloud_pki, tmp_path_factory.mktemp("open311"))
    yield c
    c.cloud.stop()
    c.store.engine.dispose()


@pytest.fixture
def open311_factory(cloud_pki: CloudPki, tmp_path: Path) -> Iterator[Callable[..., Open311Cloud]]:
    started: list[Open311Cloud] = []

    def make(**kwargs: Any) -> Open311Cloud:
        d = tmp_path / f"o311-{len(started)}"
        d.mkdir()
        c = start_open311_cloud(cloud_pki, d, **kwargs)
        started.append(c)
        return c

    yield make
    for c in started:
        c.cloud.stop()
        c.store.engine.dispose()
