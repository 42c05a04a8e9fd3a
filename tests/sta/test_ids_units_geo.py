"""Pure logic: stable ids, the UCUM table, the spatial relations (no servers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from citygate.opendata.sta import geo, ids
from citygate.opendata.sta.entities import Kind, build_model
from citygate.opendata.sta.errors import BadQueryError
from citygate.opendata.sta.observations import format_time
from citygate.opendata.sta.units import UCUM, unit_of_measurement


def inventory(*device_ids: str) -> Inventory:
    return Inventory().with_devices(
        *(
            DeviceRecord(device_id=d, profile="air_quality", profile_version=1, lat=52.5, lon=13.4)
            for d in device_ids
        )
    )


def test_ids_do_not_depend_on_inventory_order_or_other_devices() -> None:
    registry = ProfileRegistry()
    small = build_model(inventory("a-1", "b-2"), registry)
    large = build_model(inventory("z-9", "b-2", "m-5", "a-1"), registry)
    for kind in (Kind.THING, Kind.LOCATION, Kind.DATASTREAM, Kind.SENSOR, Kind.OBSERVED_PROPERTY):
        mine = {e.props["name"]: e.id for e in small.all(kind)}
        theirs = {e.props["name"]: e.id for e in large.all(kind)}
        assert mine.items() <= theirs.items(), kind
    assert all(0 < e.id < 2**53 for e in large.all(Kind.THING))
    assert all(0 < e.id < 2**ids.DATASTREAM_BITS for e in large.all(Kind.DATASTREAM))


def test_collisions_are_probed_in_sorted_key_order_and_reported() -> None:
    keys = [f"k{i}" for i in range(15)]
    got = ids.assign("Thing", keys, bits=5)  # 31 ids for 15 keys: these collide
    assert sorted(got.ids.values()) == sorted(set(got.ids.values()))  # all distinct
    assert got.collisions  # and reported
    assert ids.assign("Thing", list(reversed(keys)), bits=5).ids == got.ids  # order of input irrelevant
    with pytest.raises(ids.IdSpaceFull):
        ids.assign("Thing", [f"k{i}" for i in range(16)], bits=5)


@given(st.integers(1, 2**ids.DATASTREAM_BITS - 1), st.integers(0, ids.MAX_OBSERVATION_NS - 1))
def test_observation_ids_are_reversible(datastream_id: int, time_ns: int) -> None:
    obs_id = ids.observation_id(datastream_id, time_ns)
    assert obs_id is not None and 0 < obs_id < 2**63
    assert ids.split_observation_id(obs_id) == (datastream_id, time_ns - time_ns % 1_000_000)


@given(st.integers(0, ids.MAX_OBSERVATION_NS - 1))
def test_observation_times_are_rfc3339_utc(time_ns: int) -> None:
    text = format_time(time_ns)
    assert parse_rfc3339_ns(text) == time_ns
    full = format_rfc3339_ns(time_ns)
    assert text == (full[:-7] + "Z" if time_ns % 1_000_000 == 0 else full)


def test_observation_ids_outside_what_they_carry() -> None:
    assert ids.observation_id(5, -1) is None
    assert ids.observation_id(5, ids.MAX_OBSERVATION_NS) is None
    assert ids.split_observation_id(0) is None
    assert ids.split_observation_id(2**63) is None


def test_every_shipped_unit_is_mapped_to_ucum() -> None:
    units = {f.unit for p in ProfileRegistry() for f in p.fields.values() if f.unit is not None}
    assert units <= set(UCUM), units - set(UCUM)
    assert unit_of_measurement("ug/m3") == {
        "name": "microgram per cubic metre",
        "symbol": "ug/m3",
        "definition": "urn:ogc:def:uom:UCUM::ug/m3",
    }
    assert unit_of_measurement("%")["definition"] == "urn:ogc:def:uom:UCUM::%25"
    assert unit_of_measurement("furlong")["definition"] is None  # not claimed to be UCUM
    assert unit_of_measurement(None) == {"name": None, "symbol": None, "definition": None}


SQUARE_WITH_HOLE = "POLYGON((0 0, 10 0, 10 10, 0 10, 0 0), (4 4, 6 4, 6 6, 4 6, 4 4))"


def test_points_in_polygons_with_holes_and_edges() -> None:
    poly = geo.parse_wkt(SQUARE_WITH_HOLE)
    assert geo.within(geo.Point(1, 1), poly)
    assert not geo.within(geo.Point(5, 5), poly)  # in the hole
    assert not geo.within(geo.Point(11, 5), poly)
    assert not geo.within(geo.Point(0, 5), poly)  # on the edge: not within ...
    assert geo.intersects(geo.Point(0, 5), poly)  # ... but intersecting
    assert geo.intersects(geo.Point(4, 5), poly)  # the hole's edge
    assert geo.equals(geo.parse_wkt("POINT(1 2)"), geo.Point(1, 2))
    assert geo.parse_wkt("SRID=4326;POINT(1 2)") == geo.Point(1, 2)


@pytest.mark.parametrize(
    "wkt",
    [
        "LINESTRING(0 0, 1 1)",
        "POLYGON((0 0, 1 1))",
        "POLYGON((0 0, 1 0, 1 1, 0 1))",
        "POINT(1)",
        "POINT(a b)",
        "POLYGON((0 0, 1 0, 1 1, 0 0) x)",
        "POINT(1e999 0)",
    ],
)
def test_bad_wkt_is_a_specific_400(wkt: str) -> None:
    with pytest.raises(BadQueryError):
        geo.parse_wkt(wkt)
