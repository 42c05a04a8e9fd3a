"""A reading is judged against when the gateway received it, so buffering never makes it too old.

Real service, real mutual TLS, real InfluxDB (the fixtures of conftest.py). The cloud's
window is made small (60 s) so that "buffered through an outage" takes seconds, not days.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest

from tests.cloud.conftest import aq_values, post_batch, reading
from tests.conftest import GATEWAY_ID
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

_S = 1_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _stored_times(influxdb: Any, db: str, device_id: str) -> set[int]:
    doc = influxdb.query(f'SELECT * FROM "air_quality" WHERE "device_id" = \'{device_id}\'', db=db)
    series = doc["results"][0].get("series") or []
    if not series:
        return set()
    cols = series[0]["columns"]
    return {dict(zip(cols, v, strict=True))["time"] for v in series[0]["values"]}


def _cloud(cloud_factory: Any, influxdb: Any, **overrides: Any) -> Any:
    db = f"rx_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    return cloud_factory(influx_url=influxdb.url, influx_db=db, **overrides)


def test_a_buffered_reading_is_judged_against_its_receive_time(cloud_factory, influxdb):
    """Fresh at the gateway, buffered past the cloud's max_past_s: stored (was timestamp_too_old)."""
    rc = _cloud(cloud_factory, influxdb, max_past_s=60)
    now = _now_ms()
    ts = now - 120 * _S  # two minutes old by the cloud's clock: beyond max_past_s = 60 s
    buffered = {**reading("dev-a", ts_ns=ts * 1_000_000), "received_ms": now - 90 * _S}  # 30 s old then
    too_old_then = {  # received 30 s ago, but it was already 150 s old when the gateway took it
        **reading("dev-a", ts_ns=(ts - 30 * _S) * 1_000_000),
        "received_ms": now - 30 * _S,
    }
    legacy = reading("dev-a", ts_ns=(ts + 1) * 1_000_000)  # no received_ms: judged against arrival
    resp = post_batch(rc.gateway(), [buffered, too_old_then, legacy])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 1, body
    assert {r["index"]: r["reason"] for r in body["rejected"]} == {
        1: "timestamp_too_old",
        2: "timestamp_too_old",
    }
    stored = _stored_times(influxdb, rc.settings.influx_db, "dev-a")
    assert stored == {ts * 1_000_000}


def test_received_ms_out_of_bounds_or_of_a_wrong_type_is_refused_per_reading(cloud_factory, influxdb):
    rc = _cloud(cloud_factory, influxdb, max_buffered_s=3600, max_future_s=300)
    now = _now_ms()
    good = [
        {**reading("dev-a", ts_ns=(now - 10 * _S) * 1_000_000), "received_ms": now - 5 * _S},
        {**reading("dev-a", ts_ns=(now - 7200 * _S) * 1_000_000), "received_ms": now - 3500 * _S},
        reading("dev-a", ts_ns=(now - 20 * _S) * 1_000_000),  # an older gateway: no received_ms
    ]
    bad: list[dict[str, Any]] = [
        {**reading("dev-a", ts_ns=now * 1_000_000), "received_ms": now + 3600 * _S},  # clock ahead 1 h
        {**reading("dev-a", ts_ns=(now - 7300 * _S) * 1_000_000), "received_ms": now - 7200 * _S},
        {**reading("dev-a"), "received_ms": str(now)},
        {**reading("dev-a"), "received_ms": True},
        {**reading("dev-a"), "received_ms": now + 0.5},
        {**reading("dev-a"), "received_ms": [now]},
    ]
    resp = post_batch(rc.gateway(), [good[0], *bad, good[1], good[2]])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 3, body
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert reasons == {
        1: "received_in_future",
        2: "received_too_old",
        3: "bad_shape",
        4: "bad_shape",
        5: "bad_shape",
        6: "bad_shape",
    }
    details = {r["index"]: r["detail"] for r in body["rejected"]}
    assert "ahead of the cloud's clock" in details[1] and "max_future_s" in details[1]
    assert "max_buffered_s" in details[2]
    assert "received_ms" in details[3]
    assert all(r["device_id"] == "dev-a" for r in body["rejected"])
    stored = _stored_times(influxdb, rc.settings.influx_db, "dev-a")
    assert stored == {r["ts"] * 1_000_000 for r in good}


def _heartbeat_health(**extra: Any) -> dict[str, Any]:
    from tests.cloud.test_identity import HEALTH

    return {**HEALTH, **extra}


def test_contract_version_in_answers_and_follows_the_inventory_content(cloud_factory, influxdb):
    rc = _cloud(cloud_factory, influxdb, inventory_reload_s=0.1)
    gw = rc.gateway()

    def versions() -> tuple[str, str]:
        ingest = post_batch(gw, [{**reading("dev-a"), "received_ms": _now_ms()}])
        assert ingest.status_code == 200, ingest.text
        hb = gw.post("/v1/gateways/gw-test/heartbeat", json=_heartbeat_health())
        assert hb.status_code == 200, hb.text
        answer = hb.json()
        assert answer["gateway_id"] == "gw-test" and answer["stored"] is True
        return ingest.json()["contract_version"], answer["contract_version"]

    v_ingest, v_heartbeat = versions()
    assert v_ingest == v_heartbeat
    assert re.fullmatch(r"[0-9a-f]{16}", v_ingest), v_ingest

    # The same bytes written again (a new inode and mtime): the same version.
    path = rc.settings.inventory
    data = path.read_bytes()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    time.sleep(0.3)  # past inventory_reload_s, so that the next request has the holder look again
    assert versions() == (v_ingest, v_ingest)

    # Different content: a new version once the holder reloaded, in both answers.
    from citygate.contract.inventory import DeviceRecord, Inventory

    Inventory.load(path).with_devices(
        DeviceRecord(device_id="dev-new", profile="air_quality", profile_version=1, gateways=(GATEWAY_ID,))
    ).save(path)

    def changed() -> tuple[str, str] | None:
        v = versions()
        return v if v[0] != v_ingest else None

    v2 = wait_until(changed, interval=0.2, message="contract_version to change after the inventory did")
    assert v2[0] == v2[1] and len(v2[0]) == 16
    # The new device is known under the new version.
    r = post_batch(gw, [{**reading("dev-new", values=aq_values()), "received_ms": _now_ms()}]).json()
    assert r["accepted"] == 1 and r["contract_version"] == v2[0]


def test_fleet_view_shows_readings_held_at_the_gateway(cloud_v1):
    gw = cloud_v1.client(cloud_v1.cloud_pki.gateway("gw-cloud-b"))
    held = {"cloud_unknown_device": 1200, "cloud_timestamp_too_old": 34}
    health = _heartbeat_health(held=held, oldest_held_age_s=10800.0)
    assert gw.post("/v1/gateways/gw-cloud-b/heartbeat", json=health).status_code == 200
    op = cloud_v1.operator()
    g = {x["gateway_id"]: x for x in op.get("/v1/gateways").json()["gateways"]}["gw-cloud-b"]
    assert g["held"] == held and g["held_total"] == 1234 and g["oldest_held_age_s"] == 10800.0
    detail = op.get("/v1/gateways/gw-cloud-b").json()["gateway"]
    assert detail["held"] == held and detail["held_total"] == 1234

    # Nothing held any more: the newest heartbeat says so (older held_* fields do not linger).
    assert gw.post("/v1/gateways/gw-cloud-b/heartbeat", json=_heartbeat_health()).status_code == 200
    g = {x["gateway_id"]: x for x in op.get("/v1/gateways").json()["gateways"]}["gw-cloud-b"]
    assert g["held"] == {} and g["held_total"] == 0 and g["oldest_held_age_s"] is None

    bad = _heartbeat_health(held={"Not A Reason": 1})
    assert gw.post("/v1/gateways/gw-cloud-b/heartbeat", json=bad).status_code == 422
    many = _heartbeat_health(held={f"cloud_r{i}": 1 for i in range(33)})
    assert gw.post("/v1/gateways/gw-cloud-b/heartbeat", json=many).status_code == 422
