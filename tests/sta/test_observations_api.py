"""Observations from InfluxDB over HTTPS: paging, time and value filters, ids, expansion, and the
costly queries refused before any query (FROST-Server issue #287)."""

from __future__ import annotations

from typing import Any

import pytest

from citygate.contract.rfc3339 import format_rfc3339_ns
from citygate.opendata.sta.settings import StaSettings
from tests.sta.conftest import N_AQ, N_LIGHT, STEP_NS, T0_NS, StaCloud

pytestmark = pytest.mark.servers


def datastream(cloud: StaCloud, name: str) -> int:
    got = cloud.doc("Datastreams", {"$filter": f"name eq '{name}'"}, reader=True)["value"]
    assert len(got) == 1
    return int(got[0]["@iot.id"])


def at(i: int, offset_s: float = 0) -> str:
    return format_rfc3339_ns(T0_NS + i * STEP_NS + int(offset_s * 1e9))


def walk(
    cloud: StaCloud, path: str, params: dict[str, Any] | None = None, *, reader: bool = False
) -> list[dict[str, Any]]:
    """Every page, following @iot.nextLink (``path`` may be an absolute link itself)."""
    client = cloud.reader() if reader else cloud.anonymous()
    url = path if path.startswith("https://") else f"/sta/v1.1/{path}"
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    page = r.json()
    out = list(page["value"])
    while "@iot.nextLink" in page:
        r = client.get(page["@iot.nextLink"])
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["value"]
    return out


def test_a_datastreams_observations_in_time_order_with_ids_that_resolve(sta_cloud: StaCloud) -> None:
    ds = datastream(sta_cloud, "aq-1/pm2_5")
    got = walk(sta_cloud, f"Datastreams({ds})/Observations", {"$top": 7})
    assert [o["result"] for o in got] == [float(i) for i in range(N_AQ)]
    assert got[0]["phenomenonTime"] == got[0]["resultTime"] == at(0).replace(".000000000Z", ".000Z")
    assert len({o["@iot.id"] for o in got}) == N_AQ
    one = sta_cloud.anonymous().get(got[5]["@iot.selfLink"]).json()
    assert one["result"] == 5.0 and one["@iot.id"] == got[5]["@iot.id"]
    assert sta_cloud.doc(f"Observations({got[5]['@iot.id']})/Datastream")["@iot.id"] == ds
    foi = sta_cloud.doc(f"Observations({got[5]['@iot.id']})/FeatureOfInterest")
    assert foi["feature"]["coordinates"] == [13.40, 52.52]
    other = datastream(sta_cloud, "aq-2/pm2_5")
    assert sta_cloud.get(f"Datastreams({other})/Observations({got[5]['@iot.id']})").status_code == 404
    newest = sta_cloud.doc(f"Datastreams({ds})/Observations", {"$orderby": "phenomenonTime desc", "$top": 2})
    assert [o["result"] for o in newest["value"]] == [float(N_AQ - 1), float(N_AQ - 2)]


def test_time_and_value_filters(sta_cloud: StaCloud) -> None:
    ds = datastream(sta_cloud, "aq-1/pm2_5")
    got = walk(
        sta_cloud,
        f"Datastreams({ds})/Observations",
        {
            "$filter": f"phenomenonTime ge {at(10)} and phenomenonTime lt {at(20)} and "
            "(result lt 12 or result ge 18) and not (result eq 11)"
        },
    )
    assert [o["result"] for o in got] == [10.0, 18.0, 19.0]
    count = sta_cloud.doc(
        f"Datastreams({ds})/Observations",
        {
            "$filter": f"phenomenonTime ge {at(0)} and phenomenonTime le {at(9)}",
            "$count": "true",
            "$top": 1,
        },
    )
    assert count["@iot.count"] == 10 and len(count["value"]) == 1
    lamp = datastream(sta_cloud, "light-1/lamp_on")
    on = walk(sta_cloud, f"Datastreams({lamp})/Observations", {"$filter": "result eq true"}, reader=True)
    assert len(on) == N_LIGHT // 2 and all(o["result"] is True for o in on)


def test_observations_of_many_datastreams_merge_in_time_order(sta_cloud: StaCloud) -> None:
    window = f"phenomenonTime ge {at(0)} and phenomenonTime lt {at(3)}"
    got = walk(
        sta_cloud,
        "Observations",
        {
            "$filter": f"{window} and Datastream/ObservedProperty/name eq 'pm2_5'",
            "$top": 2,
            "$expand": "Datastream($select=name)",
        },
    )
    # aq-1 at 0, 10, 20 s; aq-2 at 5, 15, 25 s: interleaved by time
    assert [(o["Datastream"]["name"], o["result"]) for o in got] == [
        ("aq-1/pm2_5", 0.0),
        ("aq-2/pm2_5", 100.0),
        ("aq-1/pm2_5", 1.0),
        ("aq-2/pm2_5", 101.0),
        ("aq-1/pm2_5", 2.0),
        ("aq-2/pm2_5", 102.0),
    ]
    # every field of one point shares its time: paging by time cursor loses and repeats none
    everything = walk(sta_cloud, "Observations", {"$filter": window, "$top": 5})
    assert len(everything) == 2 * 3 * 7 + 2  # aq-1, aq-2: 3 points x 7 fields; noise-1: 1 point x 2
    assert len({o["@iot.id"] for o in everything}) == len(everything)
    times = [o["phenomenonTime"] for o in everything]
    assert times == sorted(times)


def test_expanded_observations_per_datastream(sta_cloud: StaCloud) -> None:
    t = sta_cloud.doc(
        "Things",
        {
            "$filter": "name eq 'aq-2'",
            "$expand": "Datastreams($filter=name eq 'aq-2/pm10' or name eq 'aq-2/pm1';"
            "$expand=Observations($top=3;$orderby=phenomenonTime desc;$count=true;"
            f"$filter=phenomenonTime ge {at(0)}))",
        },
    )["value"][0]
    by_name = {d["name"]: d for d in t["Datastreams"]}
    pm10 = by_name["aq-2/pm10"]
    assert [o["result"] for o in pm10["Observations"]] == [2.0 * (100 + i) for i in (59, 58, 57)]
    assert pm10["Observations@iot.count"] == N_AQ
    rest = walk(sta_cloud, pm10["Observations@iot.nextLink"])
    assert len(rest) == N_AQ - 3 and rest[0]["result"] == 2.0 * (100 + 56)
    assert by_name["aq-2/pm1"]["Observations"] == [] and by_name["aq-2/pm1"]["Observations@iot.count"] == 0


def test_costly_queries_are_400_before_any_query(sta_cloud: StaCloud) -> None:
    def refused(path: str, params: dict[str, Any] | None = None) -> str:
        r = sta_cloud.get(path, params)
        assert r.status_code == 400, r.text
        return str(r.json()["message"])

    # FROST-Server #287, the three of them
    assert "$count of Observations needs a time range" in refused("Observations", {"$count": "true"})
    latest = refused(
        "Things",
        {"$expand": "Datastreams($expand=Observations($orderby=phenomenonTime desc;$top=1))"},
    )
    assert "Observations of 24 Datastreams over no time range are too costly" in latest
    assert "phenomenonTime ge" in latest  # says how to narrow
    assert "too costly" in refused("Observations", {"$filter": f"phenomenonTime ge {at(0, -30 * 86400)}"})
    # the budget of points, counted before the query
    assert "max_observations" in refused(
        "Observations", {"$filter": f"phenomenonTime ge {at(0)}", "$top": 50, "$skip": 2000}
    )
    ds = datastream(sta_cloud, "aq-1/pm2_5")
    assert "$skip over Observations is at most" not in refused(
        f"Datastreams({ds})/Observations", {"$orderby": "result"}
    )
    assert "ordered by phenomenonTime" in refused(f"Datastreams({ds})/Observations", {"$orderby": "result"})
    assert "join such parts with and" in refused(
        "Observations", {"$filter": f"phenomenonTime ge {at(0)} or result gt 1"}
    )


def test_limits_are_configurable(sta_cloud_factory: Any) -> None:
    cloud = sta_cloud_factory(
        sta=StaSettings(
            enabled=True,
            max_observation_skip=5,
            max_unbounded_datastreams=100,
            rate_per_minute=100_000,
            burst=1000,
        )
    )
    ds = cloud.doc("Datastreams", {"$filter": "name eq 'aq-1/pm2_5'"})["value"][0]["@iot.id"]
    r = cloud.get(f"Datastreams({ds})/Observations", {"$skip": 6})
    assert r.status_code == 400 and "at most 5" in r.json()["message"]
    assert len(cloud.doc("Observations", {"$top": 3})["value"]) == 3  # 24 Datastreams, no range: allowed here


def test_no_influxql_no_observations(sta_cloud_factory: Any) -> None:
    cloud = sta_cloud_factory(load=False, influxql_enabled=False)
    assert cloud.get("Things").status_code == 200
    r = cloud.get("Observations")
    assert r.status_code == 501 and "no InfluxQL" in r.json()["message"]
