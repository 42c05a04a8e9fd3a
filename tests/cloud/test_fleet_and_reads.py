"""Fleet view from stored heartbeats; the read API for downstream services."""

from __future__ import annotations

import csv
import io
import time

import pytest

from tests.cloud.conftest import aq_values, post_batch, reading, unique_ts_ns
from tests.cloud.test_identity import HEALTH

pytestmark = pytest.mark.servers


def test_heartbeat_then_fleet_view(cloud_v1):
    gw = cloud_v1.gateway()
    assert gw.post("/v1/gateways/gw-test/heartbeat", json=HEALTH).status_code == 200
    op = cloud_v1.operator()
    fleet = op.get("/v1/gateways").json()
    g = {x["gateway_id"]: x for x in fleet["gateways"]}["gw-test"]
    assert g["status"] == "online"
    assert g["backlog"] == 10 and g["oldest_unsent_age_s"] == 4.5
    assert g["drops"] == {"outbox_full": 3} and g["rejected"] == {"out_of_range": 2}
    assert g["last_forward_at"].startswith("2026-01-01T00:00:00")
    # Days left come from the certificate the cloud saw, not from the gateway's claim (999).
    assert 300 < g["cert_days_left"] < 370
    detail = op.get("/v1/gateways/gw-test").json()
    assert detail["gateway"]["gateway_id"] == "gw-test" and len(detail["history"]) >= 1
    assert op.get("/v1/gateways/gw-nobody").status_code == 404
    assert op.get("/v1/gateways/bad%20id").status_code == 422


def test_heartbeat_with_bad_body_is_422(cloud_v1):
    gw = cloud_v1.gateway()
    assert gw.post("/v1/gateways/gw-test/heartbeat", json={"uptime_s": -1}).status_code == 422
    bad = {**HEALTH, "dropped": {"Bad Reason": 1}}
    assert gw.post("/v1/gateways/gw-test/heartbeat", json=bad).status_code == 422
    assert gw.post("/v1/gateways/gw-test/heartbeat", content=b"{nan").status_code == 422


def test_stale_and_offline_thresholds(cloud_v1):
    from citygate.cloud.fleet import gateway_status

    now = 10**18
    row = {"time": now - 30 * 10**9}
    assert gateway_status("g", row, now, 60, 300).status == "online"
    assert gateway_status("g", {"time": now - 100 * 10**9}, now, 60, 300).status == "stale"
    assert gateway_status("g", {"time": now - 400 * 10**9}, now, 60, 300).status == "offline"


def test_devices_last_seen_and_silent(cloud_v1):
    # Now, not the session's fixed base time: that can be minutes old by the time this runs.
    post_batch(cloud_v1.gateway(), [reading("dev-a", ts_ns=time.time_ns() // 1_000_000 * 1_000_000)])
    doc = cloud_v1.operator().get("/v1/devices").json()
    by_id = {d["device_id"]: d for d in doc["devices"]}
    assert by_id["dev-a"]["last_seen"] is not None and not by_id["dev-a"]["silent"]
    assert by_id["dev-silent"]["silent"] and by_id["dev-silent"]["last_seen"] is None
    only = cloud_v1.operator().get("/v1/devices", params={"silent_only": "true"}).json()
    assert "dev-a" not in {d["device_id"] for d in only["devices"]}


def test_aggregates_csv_and_site_series(cloud_v1):
    gw = cloud_v1.gateway()
    base = (unique_ts_ns() // 60_000_000_000 - 3) * 60_000_000_000  # a whole minute
    rs = []
    for i in range(6):  # 3 readings in each of two minutes
        for dev in ("dev-a", "dev-b"):
            rs.append(
                reading(
                    dev,
                    ts_ns=base + (i // 3) * 60_000_000_000 + (i % 3) * 1_000_000_000 + 7,
                    values=aq_values(float(i)),
                )
            )
    assert post_batch(gw, rs).json()["accepted"] == 12
    reader = cloud_v1.reader()
    params = {
        "start": str(base),
        "end": str(base + 120_000_000_000),
        "agg": "mean",
        "interval_s": 60,
        "fields": "pm2_5",
        "time_format": "ns",
    }
    doc = reader.get("/v1/devices/dev-a/series", params=params).json()
    assert doc["series"][0]["values"] == [[base, 1.5], [base + 60_000_000_000, 4.5]]
    for agg, expected in (("min", 0.5), ("max", 2.5), ("last", 2.5)):
        v = reader.get("/v1/devices/dev-a/series", params={**params, "agg": agg}).json()
        assert v["series"][0]["values"][0][1] == expected
    text = reader.get("/v1/devices/dev-a/series", params={**params, "format": "csv"}).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["device_id", "time", "pm2_5"]
    assert rows[1] == ["dev-a", str(base), "1.5"]
    site = reader.get("/v1/sites/test-site/series", params={**params, "profile": "air_quality"}).json()
    assert {s["device_id"] for s in site["series"]} >= {"dev-a", "dev-b"}


@pytest.mark.parametrize(
    "params",
    [
        {"fields": 'pm2_5" FROM x; DROP DATABASE y --'},
        {"fields": "nope"},
        {"start": "yesterday"},
        {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"agg": "median", "interval_s": 60},
        {"agg": "mean"},
        {"interval_s": 60},
        {"agg": "mean", "interval_s": 1, "start": "2000-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    ],
)
def test_read_parameters_are_validated(cloud_v1, params):
    resp = cloud_v1.reader().get("/v1/devices/dev-a/series", params=params)
    assert resp.status_code == 422, resp.text


def test_unknown_device_and_site_are_404_and_quotes_are_harmless(cloud_v1):
    reader = cloud_v1.reader()
    assert reader.get("/v1/devices/dev-x'%20OR%20'1'='1/series").status_code == 404
    assert reader.get("/v1/sites/nowhere/series", params={"profile": "air_quality"}).status_code == 404
    # A site name with a comma and a space is a legal tag value, escaped end to end.
    gw = cloud_v1.gateway()  # dev-n's own gateway (another one's readings of it are refused)
    noise = {"laeq": 55.5, "lamax": 70.0, "la90": 40.0}
    r = post_batch(gw, [reading("dev-n", values=noise)])
    assert r.json()["accepted"] == 1, r.json()
    doc = reader.get("/v1/sites/park, north/series", params={"profile": "noise"}).json()
    assert doc["series"][0]["device_id"] == "dev-n"
