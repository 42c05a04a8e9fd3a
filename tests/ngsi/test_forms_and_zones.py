"""The three representations, the zone aggregation and the offline schema registry (no servers)."""

from __future__ import annotations

import pytest
from referencing.exceptions import Unresolvable

from citygate.contract.inventory import DeviceRecord
from citygate.opendata.ngsi.entity import Attribute, Entity, slug, type_of
from citygate.opendata.ngsi.exporter import SOURCES
from citygate.opendata.ngsi.forms import render
from citygate.opendata.ngsi.zones import build_zones, zone_id
from tests.ngsi import sdm

ENTITY = Entity(
    id="urn:ngsi-ld:WasteContainer:bin-1",
    type="WasteContainer",
    context=("https://example.org/ctx.jsonld", "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"),
    attrs={
        "location": Attribute({"type": "Point", "coordinates": [1.0, 2.0]}, "GeoProperty"),
        "address": Attribute({"district": "north"}),
        "fillingLevel": Attribute(0.5, unit_code="C62", observed_at="2026-01-01T00:00:00.000Z"),
        "status": Attribute("ok"),
        "refParkingSite": Attribute("urn:ngsi-ld:OnStreetParking:site:x", "Relationship"),
    },
)


def test_normalized() -> None:
    doc = render(ENTITY, "normalized", context=False)
    assert doc["fillingLevel"] == {
        "type": "Property",
        "value": 0.5,
        "unitCode": "C62",
        "observedAt": "2026-01-01T00:00:00.000Z",
    }
    assert doc["status"] == {"type": "Property", "value": "ok"}
    assert doc["refParkingSite"] == {"type": "Relationship", "object": "urn:ngsi-ld:OnStreetParking:site:x"}
    assert "@context" not in doc


def test_key_values() -> None:
    doc = render(ENTITY, "keyValues", context=True)
    assert doc == {
        "id": ENTITY.id,
        "type": "WasteContainer",
        "location": {"type": "Point", "coordinates": [1.0, 2.0]},
        "address": {"district": "north"},
        "fillingLevel": 0.5,
        "status": "ok",
        "refParkingSite": "urn:ngsi-ld:OnStreetParking:site:x",
        "@context": list(ENTITY.context),
    }


def test_concise_leaves_out_what_can_be_inferred() -> None:
    doc = render(ENTITY, "concise", context=False)
    assert doc["location"] == {"type": "Point", "coordinates": [1.0, 2.0]}  # the GeoJSON itself
    assert doc["status"] == "ok"
    assert doc["address"] == {"value": {"district": "north"}}  # bare, its members would be sub-attributes
    assert doc["fillingLevel"] == {"value": 0.5, "unitCode": "C62", "observedAt": "2026-01-01T00:00:00.000Z"}
    assert doc["refParkingSite"] == {"object": "urn:ngsi-ld:OnStreetParking:site:x"}


def test_attrs_keeps_only_the_named_attributes() -> None:
    doc = render(ENTITY, "keyValues", attrs={"status"}, context=False)
    assert doc == {"id": ENTITY.id, "type": "WasteContainer", "status": "ok"}


def test_slugs_are_id_safe_and_keep_names_apart() -> None:
    assert slug("harbour") == "harbour"
    a, b = slug("park, north"), slug("park north")
    assert a != b
    assert a.startswith("park--north~") and b.startswith("park-north~")
    assert all(c.isascii() and (c.isalnum() or c in "._-~") for c in slug("Königsplatz / Süd"))


def test_type_of_an_id() -> None:
    assert type_of("urn:ngsi-ld:AirQualityObserved:dev-1") == "AirQualityObserved"
    assert type_of("urn:ngsi-ld:AirQualityObserved") is None
    assert type_of("urn:other:X:y") is None


def _bay(
    n: int, site: str | None = "market", district: str | None = "centre", located: bool = True
) -> DeviceRecord:
    return DeviceRecord(
        device_id=f"bay-{n}",
        profile="parking",
        profile_version=1,
        site=site,
        district=district,
        lat=50.0 + n / 1000 if located else None,
        lon=8.0 + n / 1000 if located else None,
    )


def test_zones_count_reporting_bays_and_hide_small_ones() -> None:
    bays = [_bay(i) for i in range(1, 7)] + [_bay(10 + i, site="lane") for i in range(2)]
    bays.append(_bay(20, site=None, district="east"))  # a district zone of one bay
    bays.append(_bay(30, site=None, district=None))  # in no zone at all
    latest = {f"bay-{i}": {"occupied": i % 2 == 1} for i in range(1, 6)}  # bay-6 silent
    latest |= {"bay-10": {"occupied": True}, "bay-11": {"occupied": True}, "bay-20": {"occupied": True}}
    latest["bay-30"] = {"occupied": True}
    zones = build_zones(bays, latest, as_of_ns=1_700_000_000_000_000_000, min_devices=5)
    assert [z.id for z in zones] == [zone_id(("site", "market"))]
    (z,) = zones
    kv = render(z, "keyValues", context=False)
    assert kv["totalSpotNumber"] == 6
    assert kv["occupiedSpotNumber"] == 3
    assert kv["availableSpotNumber"] == 2
    assert kv["observationDateTime"] == "2023-11-14T22:13:20.000Z"
    assert kv["address"] == {"district": "centre"}
    assert kv["location"]["coordinates"] == [pytest.approx(8.0035), pytest.approx(50.0035)]
    assert not list(sdm.errors(kv))
    one = build_zones(bays, latest, as_of_ns=0, min_devices=1)
    assert zone_id(("district", "east")) in {z.id for z in one}
    assert len(one) == 3  # the bay in no zone is counted nowhere


def test_a_zone_without_any_located_bay_is_left_out() -> None:
    bays = [_bay(i, located=False) for i in range(5)]
    latest = {b.device_id: {"occupied": True} for b in bays}
    assert build_zones(bays, latest, as_of_ns=0, min_devices=1) == []


@pytest.mark.parametrize("entity_type", sorted(SOURCES))
def test_every_reference_resolves_offline(entity_type: str) -> None:
    v = sdm.validator(entity_type)
    v.check_schema(v.schema)
    resolver = sdm.registry().resolver(sdm.schema_url(entity_type))
    seen = 0
    for ref in sdm.refs(v.schema):  # and the references of what they point to, from the stored files
        resolved = resolver.lookup(ref)
        assert resolved.contents is not None
        for inner in sdm.refs(resolved.contents):
            assert resolved.resolver.lookup(inner).contents is not None
        seen += 1
    assert seen > 0


def test_nothing_is_fetched_for_an_unknown_reference() -> None:
    with pytest.raises(Unresolvable):
        sdm.registry().resolver().lookup("https://smart-data-models.github.io/data-models/not-stored.json")


def test_the_format_checker_asserts_dates_and_uris() -> None:
    entity = {"id": "urn:ngsi-ld:WeatherObserved:x", "type": "WeatherObserved", "dateObserved": "yesterday"}
    entity["location"] = {"type": "Point", "coordinates": [1.0, 2.0]}
    assert any("date-time" in e for e in sdm.errors(entity))
    entity["dateObserved"] = "2026-01-01T00:00:00Z"
    assert list(sdm.errors(entity)) == []
    entity["id"] = "not a uri"
    assert list(sdm.errors(entity)) != []
