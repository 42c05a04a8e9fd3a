"""A real cloud on the session InfluxDB with a fleet of every profile, readings posted through /v1/ingest.

Each profile has a device whose reading comes from the simulators' signal model (the shape
real devices send) and one with every field of the profile set, optional ones too. Parking
has a zone of six bays (five reported 20 minutes ago, then three changed a minute ago:
inside the zoned delay, so not yet published) and a zone of two bays (below min_devices).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from citygate.contract.inventory import DeviceRecord, GatewayRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.opendata.policy import OpenDataSettings, ZonePolicy
from citygate.simulators.signals import DeviceSignal
from tests.cloud.conftest import (
    CloudPki,
    RunningCloud,
    cloud_factory,
    cloud_pki,
    make_settings,
    post_batch,
    reading,
)
from tests.conftest import GATEWAY_ID

__all__ = ["cloud_factory", "cloud_pki"]

MARKET = "market square, east"  # a site name that is not id-safe as it stands
_MIN = 60_000_000_000

# Every field of each profile, optional ones too, within the profiles' ranges.
FULL: dict[str, dict[str, Any]] = {
    "air_quality": {
        "pm2_5": 12.5,
        "pm10": 20.0,
        "no2": 10.0,
        "o3": 30.0,
        "co": 0.5,
        "temperature": 21.5,
        "humidity": 55.0,
        "pm1": 5.0,
        "battery": 80.0,
    },
    "noise": {"laeq": 55.2, "lamax": 71.0, "lamin": 40.0, "la10": 60.0, "la90": 45.0, "battery": 50.0},
    "traffic_counter": {
        "vehicles": 120,
        "cars": 100,
        "trucks": 20,
        "bicycles": 15,
        "pedestrians": 40,
        "avg_speed": 42.5,
        "occupancy": 12.0,
    },
    "waste_bin": {"fill_level": 85.0, "temperature": 18.0, "tilt_alarm": False, "battery": 90.0},
    "street_light": {
        "lamp_on": True,
        "dim_level": 70.0,
        "power": 48.5,
        "energy": 1234.5,
        "voltage": 230.1,
        "current": 0.21,
        "ambient_light": 3.0,
        "lamp_fault": True,
    },
    "weather": {
        "temperature": -3.5,
        "humidity": 100.0,
        "pressure": 1003.2,
        "wind_speed": 4.5,
        "wind_gust": 9.0,
        "wind_dir": 360.0,
        "rain_rate": 2.0,
        "solar_radiation": 0.0,
        "uv_index": 0.0,
    },
    "water_level": {"level": -2.5, "level_trend": 0.3, "water_temperature": 8.0, "battery": 60.0},
}

MODEL_OF = {
    "air_quality": "AirQualityObserved",
    "noise": "NoiseLevelObserved",
    "traffic_counter": "TrafficFlowObserved",
    "waste_bin": "WasteContainer",
    "street_light": "Streetlight",
    "weather": "WeatherObserved",
    "water_level": "FloodMonitoring",
}


def _device(device_id: str, profile: str, n: int, **kw: Any) -> DeviceRecord:
    values: dict[str, Any] = {
        "device_id": device_id,
        "profile": profile,
        "profile_version": 1,
        "site": "old town",
        "district": "centre",
        "lat": 50.1 + n / 1000,
        "lon": 8.6 + n / 1000,
        "gateways": (GATEWAY_ID,),
    }
    values.update(kw)
    return DeviceRecord.model_validate(values)


def fleet() -> list[DeviceRecord]:
    out: list[DeviceRecord] = []
    for n, profile in enumerate(sorted(FULL)):
        out.append(_device(f"{profile}-sig", profile, 2 * n))
        out.append(_device(f"{profile}-full", profile, 2 * n + 1, site=None))  # district only
    out.append(_device("air_quality-noloc", "air_quality", 99, lat=None, lon=None))
    out += [_device(f"bay-{i}", "parking", 100 + i, site=MARKET) for i in range(1, 7)]
    out += [_device(f"lane-{i}", "parking", 200 + i, site="harbour lane") for i in range(1, 3)]
    return out


def write_fleet(path: Path) -> Path:
    Inventory().with_gateways(GatewayRecord(gateway_id=GATEWAY_ID)).with_devices(*fleet()).save(path)
    return path


def post_fleet(rc: RunningCloud, now_ns: int) -> dict[str, Any]:
    """Post every device's readings; returns what was posted per device (the newest reading)."""
    registry = ProfileRegistry()
    latest: dict[str, Any] = {}
    readings: list[dict[str, Any]] = []
    t_full = (now_ns - 2 * _MIN) // 1_000_000 * 1_000_000
    for profile in sorted(FULL):
        p = registry.latest(profile)
        t_sig = (now_ns - 3 * _MIN) // 1_000_000 * 1_000_000
        sig = DeviceSignal(f"{profile}-sig", p, seed=7, interval_s=p.expected_interval_s).values(
            t_sig // 1_000_000
        )
        readings.append(reading(f"{profile}-sig", ts_ns=t_sig, values=dict(sig)))
        readings.append(reading(f"{profile}-full", ts_ns=t_full, values=FULL[profile]))
        latest[f"{profile}-sig"] = (t_sig, dict(sig))
        latest[f"{profile}-full"] = (t_full, FULL[profile])
        # An older reading of each: the export must take the newest one.
        readings.append(reading(f"{profile}-full", ts_ns=t_full - 10 * _MIN, values=FULL[profile]))
    readings.append(reading("air_quality-noloc", ts_ns=t_full, values=FULL["air_quality"]))
    then = (now_ns - 20 * _MIN) // 1_000_000 * 1_000_000
    recent = (now_ns - 1 * _MIN) // 1_000_000 * 1_000_000
    states = {"bay-1": True, "bay-2": True, "bay-3": True, "bay-4": False, "bay-5": False}  # bay-6 silent
    for bay, occupied in states.items():
        readings.append(reading(bay, ts_ns=then, values={"occupied": occupied, "bay_id": bay.upper()}))
    for bay in ("bay-1", "bay-2", "bay-3"):  # they leave a minute ago: inside the delay
        readings.append(reading(bay, ts_ns=recent, values={"occupied": False, "battery": 70.0}))
    for lane in ("lane-1", "lane-2"):
        readings.append(reading(lane, ts_ns=then, values={"occupied": True}))
    resp = post_batch(rc.gateway(), readings)
    assert resp.status_code == 200, resp.text
    assert resp.json()["rejected"] == [], resp.text
    return latest


@dataclass
class Fleet:
    cloud: RunningCloud
    posted: dict[str, Any]  # device -> (device time ns, values) of its newest reading
    posted_at_ns: int

    def anonymous(self) -> httpx.Client:
        return self.cloud.client(self.cloud.cloud_pki.gateway())  # a TLS client certificate, no token

    def reader(self) -> httpx.Client:
        return self.cloud.reader()


def opendata(**kw: Any) -> OpenDataSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "public_profiles": ["air_quality", "weather", "parking"],
        "zoned": {"parking": ZonePolicy(delay_s=600, min_devices=5)},
        "public_rate_per_minute": 100_000,
        "public_burst": 100_000,
        "cache_s": 3600,  # computed once for the whole module: counts are exact
    }
    values.update(kw)
    return OpenDataSettings(**values)


def start_fleet_cloud(cloud_pki: CloudPki, influxdb: Any, tmp: Path, **opendata_kw: Any) -> Fleet:
    db = f"ngsi_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    settings = make_settings(
        cloud_pki,
        tmp,
        influx_url=influxdb.url,
        influx_db=db,
        inventory=write_fleet(tmp / "fleet.json"),
        opendata=opendata(**opendata_kw),
    )
    rc = RunningCloud(settings, cloud_pki).start()
    now = time.time_ns()
    return Fleet(rc, post_fleet(rc, now), now)


@pytest.fixture(scope="module")
def ngsi_fleet(
    cloud_pki: CloudPki, influxdb: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    f = start_fleet_cloud(cloud_pki, influxdb, tmp_path_factory.mktemp("ngsi"))
    yield f
    f.cloud.stop()
