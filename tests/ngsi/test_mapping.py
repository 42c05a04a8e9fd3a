"""The profile -> Smart Data Model mappings, against the profiles and the models' own files (no servers)."""

from __future__ import annotations

import math

import pytest

from citygate.contract.inventory import DeviceRecord
from citygate.contract.profiles import ProfileRegistry
from citygate.opendata.ngsi.entity import CORE_CONTEXT
from citygate.opendata.ngsi.exporter import EXPANDED, SOURCES
from citygate.opendata.ngsi.forms import render
from citygate.opendata.ngsi.mapping import build, usable
from citygate.opendata.ngsi.models import DEVICE_MODELS
from citygate.opendata.ngsi.units import MOLAR_VOLUME_L, UNIT_CODES, ppb_to_ug_m3, ppm_to_mg_m3
from citygate.opendata.ngsi.zones import zone_id
from tests.ngsi import sdm

REGISTRY = ProfileRegistry()
PROFILES = sorted({m.profile for m in DEVICE_MODELS.values()})


def test_every_profile_has_a_model() -> None:
    assert sorted(p.name for p in REGISTRY) == PROFILES
    assert {m.profile for m in DEVICE_MODELS.values()} == {
        "air_quality",
        "noise",
        "traffic_counter",
        "waste_bin",
        "parking",
        "street_light",
        "weather",
        "water_level",
    }


@pytest.mark.parametrize("entity_type", sorted(DEVICE_MODELS))
def test_every_field_is_mapped_or_said_why_not(entity_type: str) -> None:
    model = DEVICE_MODELS[entity_type]
    profile = REGISTRY.latest(model.profile)
    mapped = {m.field for m in model.measured} | {f for d in model.derived for f in d.fields}
    assert mapped.isdisjoint(model.unmapped), "a field both mapped and unmapped"
    assert mapped | set(model.unmapped) == set(profile.fields), "a profile field the mapping forgot"
    assert all(reason for reason in model.unmapped.values())


@pytest.mark.parametrize("entity_type", sorted(DEVICE_MODELS))
def test_units_are_the_profiles_and_have_un_cefact_codes(entity_type: str) -> None:
    model = DEVICE_MODELS[entity_type]
    profile = REGISTRY.latest(model.profile)
    ok, changed = usable(model, profile)
    assert changed == []
    assert len(ok) == len(model.measured)
    for m in model.measured:
        assert profile.fields[m.field].unit == m.unit
        if m.unit not in (None, "count"):
            assert m.unit_code is not None, f"{m.field}: no UN/CEFACT code for {m.unit}"
        if m.conversion is not None:
            assert m.conversion.source == m.unit


def test_un_cefact_codes_are_the_recommendation_20_ones() -> None:
    # The codes a reader will look up: checked by hand against Rec. 20 (uncefact/vocab-codes).
    expected = {"%": "P1", "Cel": "CEL", "ug/m3": "GQ", "dB": "2N", "hPa": "A97", "m": "MTR", "km/h": "KMH"}
    assert {k: UNIT_CODES[k] for k in expected} == expected


def test_gas_conversions_use_the_directive_reference_conditions() -> None:
    assert pytest.approx(24.05, abs=0.005) == MOLAR_VOLUME_L  # 293 K, 101.3 kPa
    assert ppb_to_ug_m3("no2").apply(10.0) == pytest.approx(19.13, abs=0.01)
    assert ppb_to_ug_m3("o3").apply(10.0) == pytest.approx(19.96, abs=0.01)
    assert ppm_to_mg_m3("co").apply(1.0) == pytest.approx(1.165, abs=0.001)
    assert ppb_to_ug_m3("no2").target == "GQ"
    assert ppm_to_mg_m3("co").target == "GP"


def _record(profile: str, **kw: object) -> DeviceRecord:
    values: dict[str, object] = {
        "device_id": "dev-1",
        "profile": profile,
        "profile_version": 1,
        "site": "old town",
        "district": "centre",
        "lat": 52.5,
        "lon": 13.4,
    }
    values.update(kw)
    return DeviceRecord.model_validate(values)


def test_percentages_become_fractions_and_keep_their_unit_code() -> None:
    model = DEVICE_MODELS["WasteContainer"]
    profile = REGISTRY.latest("waste_bin")
    measured, _ = usable(model, profile)
    row = {"fill_level": 55.0, "temperature": 21.5, "tilt_alarm": True, "battery": 80.0}
    e = build(model, _record("waste_bin"), profile, measured, row, 1_700_000_000_000_000_000)
    assert e is not None
    kv = render(e, "keyValues", context=False)
    assert kv["fillingLevel"] == 0.55  # exactly, not 0.5500000000000002
    assert kv["status"] == "dropped"
    assert "battery" not in kv
    norm = render(e, "normalized", context=False)
    assert norm["fillingLevel"]["unitCode"] == "C62"
    assert norm["temperature"]["unitCode"] == "CEL"
    assert norm["fillingLevel"]["observedAt"] == "2023-11-14T22:13:20.000Z"
    point = {"type": "Point", "coordinates": [13.4, 52.5]}
    assert norm["location"] == {"type": "GeoProperty", "value": point}


def test_a_unit_changed_in_a_new_profile_version_is_not_published() -> None:
    profile = REGISTRY.latest("waste_bin")
    fields = dict(profile.fields)
    fields["fill_level"] = fields["fill_level"].model_copy(update={"unit": "m3"})
    changed_profile = profile.model_copy(update={"version": 2, "fields": fields})
    measured, changed = usable(DEVICE_MODELS["WasteContainer"], changed_profile)
    assert changed == ["fill_level"]
    assert "fill_level" not in {m.field for m in measured}


def test_interval_models_cover_the_profile_interval() -> None:
    model = DEVICE_MODELS["NoiseLevelObserved"]
    profile = REGISTRY.latest("noise")
    measured, _ = usable(model, profile)
    t = 1_700_000_060_000_000_000
    e = build(model, _record("noise"), profile, measured, {"laeq": 55.0, "lamax": 70.0}, t)
    assert e is not None
    kv = render(e, "keyValues", context=False)
    assert kv["dateObservedFrom"] == "2023-11-14T22:13:20.000Z"  # 60 s (expected_interval_s) earlier
    assert kv["dateObservedTo"] == "2023-11-14T22:14:20.000Z"
    assert kv["dateObserved"] == "2023-11-14T22:13:20.000Z/2023-11-14T22:14:20.000Z"


def test_a_device_without_location_is_not_exported() -> None:
    model = DEVICE_MODELS["AirQualityObserved"]
    profile = REGISTRY.latest("air_quality")
    measured, _ = usable(model, profile)
    record = _record("air_quality", lat=None, lon=None)
    assert build(model, record, profile, measured, {"pm2_5": 1.0}, 1) is None


def test_a_parking_spot_outside_every_zone_is_not_exported() -> None:
    model = DEVICE_MODELS["ParkingSpot"]
    profile = REGISTRY.latest("parking")
    record = _record("parking", site=None, district=None)
    assert build(model, record, profile, [], {"occupied": True}, 1) is None
    e = build(model, _record("parking"), profile, [], {"occupied": False, "bay_id": "B-12"}, 1)
    assert e is not None
    assert render(e, "normalized", context=False)["refParkingSite"] == {
        "type": "Relationship",
        "object": zone_id(("site", "old town")),
    }
    kv = render(e, "keyValues", context=False)
    assert (kv["status"], kv["name"], kv["category"]) == ("free", "B-12", ["onStreet"])


def test_expanded_type_names_are_the_contexts() -> None:
    for entity_type, source in SOURCES.items():
        terms = sdm.context_document(source.context)
        assert terms[entity_type] == source.expanded
        assert EXPANDED[source.expanded] == entity_type


def test_every_context_is_stored_and_the_core_context_is_last() -> None:
    stored = sdm.index()["contexts"]
    for source in SOURCES.values():
        assert source.context in stored
    e = build(
        DEVICE_MODELS["FloodMonitoring"],
        _record("water_level"),
        REGISTRY.latest("water_level"),
        [],
        {"level": -2.0},
        1,
    )
    assert e is not None
    assert render(e, "keyValues", context=True)["@context"][-1] == CORE_CONTEXT


def test_conversion_rounding_stays_within_the_model_bounds() -> None:
    model = DEVICE_MODELS["AirQualityObserved"]
    humidity = next(m for m in model.measured if m.attr == "relativeHumidity")
    assert humidity.conversion is not None
    assert humidity.conversion.apply(100.0) == 1.0
    assert humidity.conversion.apply(0.0) == 0.0
    assert not math.isnan(humidity.conversion.apply(33.3))
