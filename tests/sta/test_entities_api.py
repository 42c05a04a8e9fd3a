"""The inventory's entities over HTTPS: the service root, links, visibility, ids and the options."""

from __future__ import annotations

from typing import Any

import pytest

from citygate.contract.inventory import DeviceRecord, Inventory
from tests.conftest import GATEWAY_ID
from tests.sta.conftest import StaCloud
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

SPEC = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
BOX = "geography'POLYGON((13.35 52.51, 13.45 52.51, 13.45 52.53, 13.35 52.53, 13.35 52.51))'"


def thing(cloud: StaCloud, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    got = cloud.doc("Things", {"$filter": f"name eq '{name}'", **(params or {})}, reader=True)["value"]
    assert len(got) == 1, got
    one: dict[str, Any] = got[0]
    return one


def test_service_root_lists_sets_and_only_implemented_conformance(sta_cloud: StaCloud) -> None:
    root = sta_cloud.doc("")
    assert [s["name"] for s in root["value"]] == [
        "Things",
        "Locations",
        "HistoricalLocations",
        "Datastreams",
        "Sensors",
        "ObservedProperties",
        "Observations",
        "FeaturesOfInterest",
    ]
    assert root["value"][0]["url"] == f"{sta_cloud.base}/Things"
    conformance = root["serverSettings"]["conformance"]
    assert SPEC + "datamodel" in conformance
    assert SPEC + "resource-path/resource-path-to-entities" in conformance
    assert SPEC + "request-data/expand" in conformance
    assert not any(
        c.endswith(
            (
                "create-update-delete",
                "multi-datastream",
                "batch-request/batch-request",
                "request-data",
                "request-data/filter",
            )
        )
        for c in conformance
    )


def test_things_carry_their_site_and_absolute_links(sta_cloud: StaCloud) -> None:
    t = thing(sta_cloud, "aq-1")
    assert t["properties"] == {
        "device_id": "aq-1",
        "site": "centre",
        "district": "mitte",
        "profile": "air_quality",
        "profile_version": 1,
    }
    assert t["@iot.selfLink"] == f"{sta_cloud.base}/Things({t['@iot.id']})"
    assert t["Datastreams@iot.navigationLink"] == f"{sta_cloud.base}/Things({t['@iot.id']})/Datastreams"
    loc = sta_cloud.doc(f"Things({t['@iot.id']})/Locations")["value"]
    assert [x["location"] for x in loc] == [{"type": "Point", "coordinates": [13.40, 52.52]}]
    assert loc[0]["encodingType"] == "application/geo+json"
    back = sta_cloud.doc(f"Locations({loc[0]['@iot.id']})/Things")["value"]
    assert [x["@iot.id"] for x in back] == [t["@iot.id"]]
    hl = sta_cloud.doc(f"Things({t['@iot.id']})/HistoricalLocations")["value"]
    assert len(hl) == 1 and hl[0]["time"] == "1970-01-01T00:00:00Z"
    assert sta_cloud.doc(f"HistoricalLocations({hl[0]['@iot.id']})/Thing")["@iot.id"] == t["@iot.id"]


def test_datastreams_have_ucum_units_sensors_and_observed_properties(sta_cloud: StaCloud) -> None:
    t = thing(sta_cloud, "aq-1")
    ds = sta_cloud.doc(
        f"Things({t['@iot.id']})/Datastreams", {"$filter": "ObservedProperty/name eq 'temperature'"}
    )
    [temp] = ds["value"]
    assert temp["unitOfMeasurement"] == {
        "name": "degree Celsius",
        "symbol": "Cel",
        "definition": "urn:ogc:def:uom:UCUM::Cel",
    }
    assert temp["observationType"].endswith("OM_Measurement")
    sensor = sta_cloud.doc(f"Datastreams({temp['@iot.id']})/Sensor")
    assert sensor["metadata"] == "urn:citygate:profile:air_quality:v1"
    assert sensor["properties"]["version"] == 1
    prop = sta_cloud.doc(f"Datastreams({temp['@iot.id']})/ObservedProperty")
    assert prop["name"] == "temperature" and prop["definition"].endswith("air_quality:temperature")
    # one ObservedProperty for the field of every device of the profile
    both = sta_cloud.doc(f"ObservedProperties({prop['@iot.id']})/Datastreams")["value"]
    assert sorted(d["name"] for d in both) == ["aq-1/temperature", "aq-2/temperature"]
    lamp = sta_cloud.doc("Datastreams", {"$filter": "name eq 'light-1/lamp_on'"}, reader=True)["value"][0]
    assert lamp["observationType"].endswith("OM_TruthObservation")
    assert lamp["unitOfMeasurement"] == {"name": None, "symbol": None, "definition": None}


def test_who_sees_what(sta_cloud: StaCloud) -> None:
    anonymous = {t["name"] for t in sta_cloud.doc("Things")["value"]}
    reader = {t["name"] for t in sta_cloud.doc("Things", reader=True)["value"]}
    assert anonymous == {"aq-1", "aq-2", "noise-1"}  # public_profiles
    assert reader == {"aq-1", "aq-2", "noise-1", "light-1"}  # parking is zoned: never here
    light = thing(sta_cloud, "light-1")
    assert sta_cloud.get(f"Things({light['@iot.id']})").status_code == 404  # hidden, as if absent
    assert sta_cloud.get(f"Things({light['@iot.id']})", reader=True).status_code == 200
    sensors = {s["properties"]["profile"] for s in sta_cloud.doc("Sensors")["value"]}
    assert sensors == {"air_quality", "noise"}
    wrong = sta_cloud.rc.client(token="x" * 40).get("/sta/v1.1/Things")
    assert wrong.status_code == 401  # a wrong token is refused, never anonymous


def test_ids_are_the_same_on_another_replica(sta_cloud: StaCloud, sta_cloud_factory: Any) -> None:
    other = sta_cloud_factory(load=False)  # another process would compute the same from the same files
    for path in ("Things", "Datastreams", "Locations", "FeaturesOfInterest", "Sensors"):
        mine = {e["name"]: e["@iot.id"] for e in sta_cloud.doc(path, {"$top": 50}, reader=True)["value"]}
        theirs = {e["name"]: e["@iot.id"] for e in other.doc(path, {"$top": 50}, reader=True)["value"]}
        assert mine == theirs, path


def test_an_inventory_change_is_served_with_the_old_ids_kept(sta_cloud_factory: Any) -> None:
    cloud = sta_cloud_factory(load=False, inventory_reload_s=0.1)
    before = {t["name"]: t["@iot.id"] for t in cloud.doc("Things", reader=True)["value"]}
    path = cloud.rc.settings.inventory
    inv = Inventory.load(path)
    inv.with_devices(
        DeviceRecord(device_id="aq-0", profile="air_quality", profile_version=1, gateways=(GATEWAY_ID,))
    ).save(path)

    def reloaded() -> dict[str, int] | None:
        got = {t["name"]: t["@iot.id"] for t in cloud.doc("Things", reader=True)["value"]}
        return got if "aq-0" in got else None

    after = wait_until(reloaded, message="the new device as a Thing")
    assert {k: after[k] for k in before} == before  # a new device renumbers nothing


def test_top_skip_count_and_next_links(sta_cloud: StaCloud) -> None:
    first = sta_cloud.doc("Datastreams", {"$top": 10, "$count": "true", "$orderby": "name"})
    assert first["@iot.count"] == 24 and len(first["value"]) == 10
    assert first["@iot.nextLink"].startswith(f"{sta_cloud.base}/Datastreams?")
    names = [d["name"] for d in first["value"]]
    link = first["@iot.nextLink"]
    while link:
        page = sta_cloud.anonymous().get(link).json()
        names += [d["name"] for d in page["value"]]
        link = page.get("@iot.nextLink")
    assert names == sorted(names) and len(names) == 24
    big = sta_cloud.doc("Datastreams", {"$top": 1000})  # cut to max_top (50 here)
    assert len(big["value"]) == 24 and "@iot.nextLink" not in big
    assert len(sta_cloud.doc("Datastreams", {"$top": 1000, "$skip": 20})["value"]) == 4
    assert sta_cloud.doc("Things", {"$top": 0, "$count": "true"}) == {"@iot.count": 3, "value": []}
    assert len(sta_cloud.doc("Datastreams")["value"]) == 20  # default_top


def test_orderby_select_and_filters(sta_cloud: StaCloud) -> None:
    got = sta_cloud.doc("Things", {"$orderby": "properties/site desc,name asc", "$select": "name,id"})[
        "value"
    ]
    assert got == [
        {"name": "noise-1", "@iot.id": got[0]["@iot.id"]},
        {"name": "aq-1", "@iot.id": got[1]["@iot.id"]},
        {"name": "aq-2", "@iot.id": got[2]["@iot.id"]},
    ]
    within = sta_cloud.doc("Things", {"$filter": f"st_within(Locations/location, {BOX})"})["value"]
    assert [t["name"] for t in within] == ["aq-1"]
    locs = sta_cloud.doc("Locations", {"$filter": f"not geo.intersects(location, {BOX})", "$select": "name"})
    assert sorted(x["name"] for x in locs["value"]) == ["aq-2 location", "noise-1 location"]
    ds = sta_cloud.doc(
        "Datastreams",
        {
            "$filter": "Thing/properties/site eq 'park, north' and "
            "(unitOfMeasurement/symbol eq 'dB' or name eq 'noise-1/battery')"
        },
    )
    assert len(ds["value"]) == 6
    foi = sta_cloud.doc("FeaturesOfInterest", {"$filter": "feature/type eq 'Feature'"}, reader=True)["value"]
    assert [f["feature"]["properties"]["site"] for f in foi] == ["main street"]  # light-1 has no location


def test_expand_two_levels_with_nested_options(sta_cloud: StaCloud) -> None:
    t = thing(
        sta_cloud,
        "noise-1",
        {
            "$expand": "Datastreams($filter=name eq 'noise-1/laeq';$select=name;"
            "$expand=Sensor($select=name)),Locations"
        },
    )
    assert [d["name"] for d in t["Datastreams"]] == ["noise-1/laeq"]
    assert set(t["Datastreams"][0]) == {"name", "Sensor"}
    assert t["Datastreams"][0]["Sensor"]["name"].startswith("Environmental noise monitor")
    assert t["Locations"][0]["location"]["coordinates"] == [13.5, 52.6]
    paged = thing(sta_cloud, "aq-1", {"$expand": "Datastreams($top=4;$count=true;$orderby=name)"})
    assert len(paged["Datastreams"]) == 4 and paged["Datastreams@iot.count"] == 9
    rest = sta_cloud.anonymous().get(paged["Datastreams@iot.nextLink"]).json()
    assert [d["name"] for d in rest["value"]] == ["aq-1/o3", "aq-1/pm1", "aq-1/pm10", "aq-1/pm2_5"]
    too_deep = sta_cloud.get("Things", {"$expand": "Datastreams/Sensor/Datastreams"})
    assert too_deep.status_code == 400 and "nests too deep" in too_deep.json()["message"]


def test_properties_values_and_refs(sta_cloud: StaCloud) -> None:
    t = thing(sta_cloud, "aq-1")
    tid = t["@iot.id"]
    assert sta_cloud.doc(f"Things({tid})/name") == {"name": "aq-1"}
    raw = sta_cloud.get(f"Things({tid})/name/$value")
    assert raw.text == "aq-1" and raw.headers["content-type"].startswith("text/plain")
    assert sta_cloud.doc(f"Things({tid})/id") == {"@iot.id": tid}
    refs = sta_cloud.doc(f"Things({tid})/Datastreams/$ref", {"$top": 2})
    assert all(set(r) == {"@iot.selfLink"} for r in refs["value"]) and "@iot.nextLink" in refs
    assert sta_cloud.doc(f"Things({tid})/$ref") == {"@iot.selfLink": t["@iot.selfLink"]}


def test_bad_paths_are_specific_errors(sta_cloud: StaCloud) -> None:
    cases = {
        "Thingz": (400, "no entity set 'Thingz'"),
        "Things(abc)": (400, "integer id"),
        "Things/Datastreams": (400, "Things is a set"),
        "Things(1)/Sensors": (400, "no navigation property 'Sensors'"),
        "Things(1)": (404, "no Thing 1"),
        "Observations(1)": (404, "no Observation 1"),
        "Things(1)/name/$value/x": (400, "$value follows a property"),
    }
    for path, (status, says) in cases.items():
        r = sta_cloud.get(path)
        assert r.status_code == status, (path, r.text)
        body = r.json()
        assert body["code"] == status and body["type"] == "error" and says in body["message"], (path, body)
