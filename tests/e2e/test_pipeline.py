"""The whole data path with every part real, judged by what InfluxDB holds."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.gateway.conftest import GW_DEVICES, reading, write_agent_config
from tests.waiting import wait_until

pytestmark = pytest.mark.servers


def _stored(influxdb, db: str) -> dict[tuple[str, int], int]:
    """(device_id, ts_ns) -> seq of every water_level point in the database."""
    doc = influxdb.query('SELECT "seq", "device_id" FROM "water_level"', db=db)
    series = doc["results"][0].get("series") or []
    out = {}
    for s in series:
        cols = s["columns"]
        for row in s["values"]:
            r = dict(zip(cols, row, strict=True))
            out[(r["device_id"], r["time"])] = r["seq"]
    return out


def test_devices_to_influxdb_exactly_once_with_a_gateway_kill(cloud_factory, rig_factory, gw_pki, influxdb):
    db = f"e2e_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    cloud = cloud_factory(influx_url=influxdb.url, influx_db=db, inventory=gw_pki.pki.inventory_path)
    rig = rig_factory()
    # Point the agent at the real cloud instead of the test cloud.
    write_agent_config(
        rig.agent.config_path,
        pki=gw_pki,
        broker=rig.broker,
        cloud_url=cloud.url,
        state_dir=rig.workdir / "state",
        http_port=rig.agent.http_port,
    )
    rig.agent.start()
    base = int(time.time() * 1000) - 10_000
    expected = {}
    devices = GW_DEVICES[:4]
    for seq in range(150):
        for d in devices:
            rig.publish(d, reading(seq, level=1.0 + seq / 100, ts_ms=base + seq))
            expected[(d, (base + seq) * 1_000_000)] = seq
        if seq == 75:
            rig.agent.kill9()
            rig.agent.start()
    rig.agent.wait_for(
        lambda h: h["outbox_depth"] == 0 and h["readings_out"] >= len(expected),
        timeout=60,
        what="everything forwarded to the cloud",
    )
    stored = _stored(influxdb, db)
    assert stored == expected  # nothing lost, nothing extra, every seq at its device timestamp
    # The site tag and the profile version come from the inventory, not from any payload.
    tags = influxdb.query('SHOW TAG VALUES FROM "water_level" WITH KEY IN ("site", "district")', db=db)
    values = {tuple(v) for s in tags["results"][0]["series"] for v in s["values"]}
    assert values == {("site", "river"), ("district", "north")}
    # The fleet view knows this gateway from its heartbeats.
    op = cloud.operator()
    fleet: dict[str, Any] = {}

    def online() -> bool:
        nonlocal fleet
        fleet = op.get("/v1/gateways").json()
        gws = [g for g in fleet["gateways"] if g["gateway_id"] == "gw-test"]
        return bool(gws and gws[0]["status"] == "online" and gws[0]["backlog"] == 0)

    wait_until(
        online,
        timeout=15,
        interval=0.3,
        message=lambda: f"gw-test online with no backlog in the fleet view; {fleet}\n{rig.agent.log_tail()}",
    )
