"""SensorThings fixtures: a real cloud (uvicorn, TLS, the session InfluxDB) with ``[cloud.sta]`` on,
an inventory of located and unlocated devices, and readings posted through ``/v1/ingest``.

``client_cert_mode = "optional"``: anonymous callers come without a certificate (the public
surface); readers come with a token. One cloud for the session (its data is only read); tests
that need other settings start their own with :func:`sta_cloud_factory`.

Devices (all reported by the test gateway):

=========  ===============  =====================================  ==========================
device     profile          where                                  readings
=========  ===============  =====================================  ==========================
aq-1       air_quality      centre (lat 52.52, lon 13.40)          N_AQ at 10 s from T0
aq-2       air_quality      centre (lat 52.50, lon 13.30)          N_AQ at 10 s from T0 + 5 s
noise-1    noise            park, north (lat 52.60, lon 13.50)     N_NOISE at 60 s from T0
light-1    street_light     no location                            N_LIGHT at 60 s from T0
bay-1      parking          (zoned: never in STA)                  3
=========  ===============  =====================================  ==========================

Public (anonymous) profiles: air_quality and noise. Readers also see street_light.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from citygate.contract.inventory import DeviceRecord, GatewayRecord, Inventory
from citygate.opendata.policy import OpenDataSettings
from citygate.opendata.sta.settings import StaSettings
from tests.cloud.conftest import (
    OTHER_GATEWAY,
    READER_TOKEN,
    CloudPki,
    RunningCloud,
    cloud_pki,
    make_settings,
    post_batch,
)
from tests.conftest import GATEWAY_ID

__all__ = ["cloud_pki"]  # the fixture, for this directory's tests

N_AQ = 60
N_NOISE = 20
N_LIGHT = 10
STEP_NS = 10 * 1_000_000_000
# Whole seconds, an hour ago: recent enough for the cloud's windows, stable for the session.
T0_NS = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000


def write_inventory(path: Path) -> Path:
    gw = (GATEWAY_ID,)
    Inventory().with_gateways(
        GatewayRecord(gateway_id=GATEWAY_ID), GatewayRecord(gateway_id=OTHER_GATEWAY)
    ).with_devices(
        DeviceRecord(
            device_id="aq-1",
            profile="air_quality",
            profile_version=1,
            site="centre",
            district="mitte",
            lat=52.52,
            lon=13.40,
            gateways=gw,
        ),
        DeviceRecord(
            device_id="aq-2",
            profile="air_quality",
            profile_version=1,
            site="centre",
            district="mitte",
            lat=52.50,
            lon=13.30,
            gateways=gw,
        ),
        DeviceRecord(
            device_id="noise-1",
            profile="noise",
            profile_version=1,
            site="park, north",
            lat=52.60,
            lon=13.50,
            gateways=gw,
        ),
        DeviceRecord(
            device_id="light-1", profile="street_light", profile_version=1, site="main street", gateways=gw
        ),
        DeviceRecord(
            device_id="bay-1",
            profile="parking",
            profile_version=1,
            site="centre",
            lat=52.51,
            lon=13.39,
            gateways=gw,
        ),
    ).save(path)
    return path


def aq(i: int) -> dict[str, float]:
    return {
        "pm2_5": float(i),
        "pm10": 2.0 * i,
        "no2": 20.0,
        "o3": 30.0,
        "co": 0.5,
        "temperature": 20.0 + i / 10,
        "humidity": 50.0,
    }


def readings() -> list[dict[str, Any]]:
    ms = 1_000_000
    out: list[dict[str, Any]] = []
    for i in range(N_AQ):
        out.append({"device_id": "aq-1", "ts": (T0_NS + i * STEP_NS) // ms, "readings": aq(i)})
        out.append(
            {"device_id": "aq-2", "ts": (T0_NS + i * STEP_NS + STEP_NS // 2) // ms, "readings": aq(100 + i)}
        )
    for i in range(N_NOISE):
        out.append(
            {
                "device_id": "noise-1",
                "ts": (T0_NS + i * 6 * STEP_NS) // ms,
                "readings": {"laeq": 50.0 + i, "lamax": 70.0},
            }
        )
    for i in range(N_LIGHT):
        out.append(
            {
                "device_id": "light-1",
                "ts": (T0_NS + i * 6 * STEP_NS) // ms,
                "readings": {"lamp_on": i % 2 == 0, "power": 40.0 + i},
            }
        )
    for i in range(3):
        out.append({"device_id": "bay-1", "ts": (T0_NS + i * STEP_NS) // ms, "readings": {"occupied": True}})
    return out


def sta_settings(cloud_pki: CloudPki, tmp: Path, influxdb: Any, **overrides: Any) -> Any:
    db = f"sta_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    values: dict[str, Any] = {
        "influx_url": influxdb.url,
        "influx_db": db,
        "inventory": write_inventory(tmp / "sta-inventory.json"),
        "client_cert_mode": "optional",
        "opendata": OpenDataSettings(enabled=True, public_profiles=["air_quality", "noise"]),
        "sta": StaSettings(enabled=True),
    }
    values.update(overrides)
    return make_settings(cloud_pki, tmp, **values)


class StaCloud:
    """A running cloud and the clients a test needs."""

    def __init__(self, rc: RunningCloud) -> None:
        self.rc = rc
        self.base = f"{rc.url}/sta/v1.1"
        self._sessions: list[requests.Session] = []

    def anonymous(self) -> httpx.Client:
        return self.rc.client()

    def reader(self) -> httpx.Client:
        return self.rc.client(token=READER_TOKEN)

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, reader: bool = False
    ) -> httpx.Response:
        client = self.reader() if reader else self.anonymous()
        return client.get(f"/sta/v1.1/{path}", params=dict(params) if params else None)

    def doc(self, path: str, params: Mapping[str, Any] | None = None, *, reader: bool = False) -> Any:
        r = self.get(path, params, reader=reader)
        assert r.status_code == 200, r.text
        return r.json()

    def load(self) -> None:
        r = post_batch(self.rc.gateway(), readings())
        assert r.status_code == 200, r.text
        assert not r.json()["rejected"], r.json()["rejected"]

    def requests_session(self, *, token: str | None = None) -> requests.Session:
        """A requests Session for frost-sta-client: the test CA, no client certificate."""
        s = requests.Session()
        s.verify = str(self.rc.cloud_pki.infra_ca)
        s.trust_env = False
        if token:
            s.headers["Authorization"] = f"Bearer {token}"
        self._sessions.append(s)
        return s

    def stop(self) -> None:
        for s in self._sessions:
            s.close()  # kept-alive connections would hold the server's shutdown
        self.rc.stop()


@pytest.fixture(scope="session")
def sta_cloud(
    cloud_pki: CloudPki, influxdb: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StaCloud]:
    settings = sta_settings(
        cloud_pki,
        tmp_path_factory.mktemp("sta"),
        influxdb,
        sta=StaSettings(
            enabled=True,
            max_top=50,
            default_top=20,
            max_observations=2000,
            cache_s=0.001,
            rate_per_minute=1_000_000,
            burst=100_000,
        ),
    )
    rc = RunningCloud(settings, cloud_pki).start()
    cloud = StaCloud(rc)
    cloud.load()
    yield cloud
    cloud.stop()


@pytest.fixture
def sta_cloud_factory(
    cloud_pki: CloudPki, influxdb: Any, tmp_path: Path
) -> Iterator[Callable[..., StaCloud]]:
    started: list[StaCloud] = []

    def make(*, load: bool = True, **overrides: Any) -> StaCloud:
        d = tmp_path / f"sta-{len(started)}"
        d.mkdir()
        cloud = StaCloud(RunningCloud(sta_settings(cloud_pki, d, influxdb, **overrides), cloud_pki).start())
        started.append(cloud)
        if load:
            cloud.load()
        return cloud

    yield make
    for cloud in started:
        cloud.stop()
