"""Every profile's readings, posted through the cloud into InfluxDB, exported as Smart Data Models entities.

Every entity the API exports is validated (keyValues) against its model's JSON Schema,
resolved offline from the stored files, and every attribute is checked to be a term of the
@context the entity names.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from citygate.contract.rfc3339 import parse_rfc3339_ns
from citygate.opendata.ngsi.entity import entity_id, rfc3339
from citygate.opendata.ngsi.exporter import SOURCES
from citygate.opendata.ngsi.zones import zone_id
from citygate.opendata.policy import ZonePolicy
from tests.cloud.conftest import CloudPki
from tests.ngsi import sdm
from tests.ngsi.conftest import FULL, MARKET, MODEL_OF, Fleet, start_fleet_cloud

pytestmark = pytest.mark.servers

DEVICE_TYPES = sorted(MODEL_OF.values())


def entities(fleet: Fleet, entity_type: str, form: str = "keyValues") -> list[dict[str, Any]]:
    resp = fleet.reader().get(
        "/ngsi-ld/v1/entities",
        params={"type": entity_type, "options": form, "limit": 1000},
        headers={"Accept": "application/ld+json"},
    )
    assert resp.status_code == 200, resp.text
    docs: list[dict[str, Any]] = resp.json()
    return docs


def by_id(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in docs}


@pytest.mark.parametrize("entity_type", sorted(SOURCES))
def test_every_exported_entity_is_valid_against_its_model(ngsi_fleet: Fleet, entity_type: str) -> None:
    docs = entities(ngsi_fleet, entity_type)
    expected = {"ParkingSpot": 0, "OnStreetParking": 1}.get(entity_type, 2)  # parking is zoned
    assert len(docs) == expected, docs
    for doc in docs:
        problems = list(sdm.errors(doc))
        assert problems == [], f"{doc['id']}: {problems}"
        terms = sdm.context_document(doc["@context"][0])
        unknown = [k for k in doc if k not in ("id", "type", "@context") and k not in terms]
        assert unknown == [], f"{doc['id']}: attributes not in its @context: {unknown}"
        assert doc["type"] in terms


@pytest.mark.parametrize("profile", sorted(MODEL_OF))
def test_the_newest_reading_and_its_device_time(ngsi_fleet: Fleet, profile: str) -> None:
    docs = by_id(entities(ngsi_fleet, MODEL_OF[profile]))
    for device in (f"{profile}-sig", f"{profile}-full"):
        t_ns, _values = ngsi_fleet.posted[device]
        doc = docs[entity_id(MODEL_OF[profile], device)]
        times = [doc.get(k) for k in ("dateObserved", "observationDateTime", "timeInstant", "dateObservedTo")]
        assert rfc3339(t_ns) in times
        assert doc["location"]["type"] == "Point"


def test_air_quality_units(ngsi_fleet: Fleet) -> None:
    full = by_id(entities(ngsi_fleet, "AirQualityObserved"))[
        entity_id("AirQualityObserved", "air_quality-full")
    ]
    assert full["pm25"] == 12.5 and full["pm10"] == 20.0 and full["pm1"] == 5.0
    assert full["no2"] == pytest.approx(19.13, abs=0.01)  # 10 ppb at 293 K, 101.3 kPa
    assert full["o3"] == pytest.approx(59.88, abs=0.01)
    assert full["co"] == pytest.approx(0.5824, abs=0.0001)  # mg/m3
    assert full["relativeHumidity"] == 0.55
    assert full["typeofLocation"] == "outdoor"
    assert full["address"] == {"district": "centre"}
    assert "battery" not in full
    norm = by_id(entities(ngsi_fleet, "AirQualityObserved", "normalized"))
    n = norm[full["id"]]
    assert {k: n[k]["unitCode"] for k in ("pm25", "no2", "co", "temperature", "relativeHumidity")} == {
        "pm25": "GQ",
        "no2": "GQ",
        "co": "GP",
        "temperature": "CEL",
        "relativeHumidity": "C62",
    }
    assert n["pm25"]["observedAt"] == full["dateObserved"]
    assert n["location"]["type"] == "GeoProperty"
    assert entity_id("AirQualityObserved", "air_quality-noloc") not in norm  # no location, no entity


def test_the_other_profiles_values(ngsi_fleet: Fleet) -> None:
    def full(entity_type: str, profile: str) -> dict[str, Any]:
        return by_id(entities(ngsi_fleet, entity_type))[entity_id(entity_type, f"{profile}-full")]

    waste = full("WasteContainer", "waste_bin")
    assert (waste["fillingLevel"], waste["temperature"], waste["status"]) == (0.85, 18.0, "ok")
    light = full("Streetlight", "street_light")
    assert light["illuminanceLevel"] == 0.7
    assert (light["powerState"], light["status"]) == ("on", "defectiveLamp")
    assert light["powerConsumption"] == 48.5 and light["lifetimePowerConsumption"] == 1234.5
    assert "ambient_light" not in light
    weather = full("WeatherObserved", "weather")
    assert weather["relativeHumidity"] == 1.0
    assert weather["atmosphericPressure"] == 1003.2
    assert (weather["windSpeed"], weather["gustSpeed"], weather["windDirection"]) == (4.5, 9.0, 360.0)
    assert "precipitation" not in weather  # a rain rate is not an amount
    flood = full("FloodMonitoring", "water_level")
    assert flood["currentLevel"] == -2.5  # below the datum: WaterObserved's waterLevel could not say it
    assert flood["observationDateTime"] == flood["dateObserved"]
    traffic = full("TrafficFlowObserved", "traffic_counter")
    assert (traffic["intensity"], traffic["averageVehicleSpeed"], traffic["occupancy"]) == (120, 42.5, 0.12)
    start, end = (parse_rfc3339_ns(traffic[k]) for k in ("dateObservedFrom", "dateObservedTo"))
    assert start is not None and end is not None
    assert end - start == 300 * 1_000_000_000  # the profile's expected interval
    noise = full("NoiseLevelObserved", "noise")
    assert (noise["LAeq"], noise["LAmax"]) == (55.2, 71.0)
    assert noise["dateObserved"] == f"{noise['dateObservedFrom']}/{noise['dateObservedTo']}"
    assert set(FULL) == set(MODEL_OF)


def test_parking_is_published_per_zone_and_late(ngsi_fleet: Fleet) -> None:
    docs = entities(ngsi_fleet, "OnStreetParking")
    (zone,) = docs  # "harbour lane" has two bays: fewer than min_devices, not published
    assert zone["id"] == zone_id(("site", MARKET))
    assert zone["name"] == MARKET
    # The state 10 minutes ago: bays 1-3 occupied then; that they left a minute ago is not shown.
    assert (zone["totalSpotNumber"], zone["occupiedSpotNumber"], zone["availableSpotNumber"]) == (6, 3, 2)
    as_of = parse_rfc3339_ns(zone["observationDateTime"])
    delay_ns = 600 * 1_000_000_000
    assert as_of is not None
    # (computed after the readings were posted; "as of" is whole seconds, rounded down)
    assert ngsi_fleet.posted_at_ns - delay_ns - 1_000_000_000 < as_of <= time.time_ns() - delay_ns
    # No bay is ever an entity, to readers either.
    reader = ngsi_fleet.reader()
    assert reader.get("/ngsi-ld/v1/entities", params={"type": "ParkingSpot"}).json() == []
    spot = reader.get(f"/ngsi-ld/v1/entities/{entity_id('ParkingSpot', 'bay-1')}")
    assert spot.status_code == 404
    assert spot.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"


def test_parking_unzoned_is_one_spot_per_bay_and_other_zoned_profiles_are_not_published(
    cloud_pki: CloudPki, influxdb: Any, tmp_path: Path
) -> None:
    """An operator who takes parking out of ``zoned`` publishes bays; noise put in ``zoned`` vanishes."""
    fleet = start_fleet_cloud(cloud_pki, influxdb, tmp_path, zoned={"noise": ZonePolicy()})
    try:
        spots = entities(fleet, "ParkingSpot")
        assert len(spots) == 7  # bay-6 never reported
        for doc in spots:
            assert list(sdm.errors(doc)) == [], doc
            assert doc["refParkingSite"].startswith("urn:ngsi-ld:OnStreetParking:site:")
        bay1 = by_id(spots)[entity_id("ParkingSpot", "bay-1")]
        assert (bay1["status"], bay1["timeInstant"]) == (
            "free",
            rfc3339(fleet.posted_at_ns // 1_000_000 * 1_000_000 - 60_000_000_000),
        )
        assert "name" not in bay1  # its newest reading carries no bay_id
        zones = by_id(entities(fleet, "OnStreetParking"))
        market = zones[zone_id(("site", MARKET))]  # the newest state, no delay
        assert (market["occupiedSpotNumber"], market["availableSpotNumber"]) == (0, 5)
        assert zone_id(("site", "harbour lane")) in zones  # no minimum either
        for doc in zones.values():
            assert list(sdm.errors(doc)) == [], doc
        assert entities(fleet, "NoiseLevelObserved") == []  # zoned, and no zone model for noise
    finally:
        fleet.cloud.stop()
