"""A reading the gateway confirmed is never lost at the cloud's door, nor taken for a resend.

Three ordinary situations, each against the real parts (Mosquitto, the agent, the cloud,
InfluxDB), each judged by what InfluxDB holds. On the code before held readings, received_ms
and exact resend identity, every affected reading was confirmed to its device and lost:
20 of 20, 5 of 5 and 10 of 10.
"""

from __future__ import annotations

import time
import uuid

import pytest

from citygate.contract.inventory import Inventory
from citygate.servers.tcp_proxy import TcpProxy
from tests.gateway.conftest import GW_DEVICES, reading, write_agent_config

pytestmark = pytest.mark.servers

DEV = GW_DEVICES[5]


def _stored(influxdb, db: str, device: str) -> set[int]:
    """The device timestamps (ns) InfluxDB holds for a device."""
    doc = influxdb.query(f'SELECT "level" FROM "water_level" WHERE "device_id" = \'{device}\'', db=db)
    series = doc["results"][0].get("series") or []
    return {row[0] for s in series for row in s["values"]}


def _stack(cloud_factory, rig_factory, gw_pki, influxdb, tmp_path, *, cloud=None, agent=None, proxy=False):
    db = f"e2e_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    options = {"inventory": gw_pki.pki.inventory_path} | (cloud or {})
    cloud_ = cloud_factory(influx_url=influxdb.url, influx_db=db, **options)
    rig = rig_factory()
    link = None
    url = cloud_.url
    if proxy:
        link = TcpProxy("127.0.0.1", cloud_.settings.port)
        link.start()
        url = f"https://localhost:{link.port}"
    write_agent_config(
        rig.agent.config_path,
        pki=gw_pki,
        broker=rig.broker,
        cloud_url=url,
        state_dir=rig.workdir / "state",
        http_port=rig.agent.http_port,
        **(agent or {}),
    )
    rig.agent.start()
    return db, cloud_, rig, link


def test_a_device_the_cloud_learns_of_later_loses_nothing(
    cloud_factory, rig_factory, gw_pki, influxdb, tmp_path
):
    # The cloud's inventory lacks the device; the gateway's has it.
    cloud_inventory = tmp_path / "cloud-inventory.json"
    full = Inventory.load(gw_pki.pki.inventory_path)
    full.without(DEV).save(cloud_inventory)
    db, _cloud, rig, _ = _stack(
        cloud_factory,
        rig_factory,
        gw_pki,
        influxdb,
        tmp_path,
        cloud={"inventory": cloud_inventory, "inventory_reload_s": 0.5},
    )
    base = int(time.time() * 1000) - 30_000
    for seq in range(20):
        rig.publish(DEV, reading(seq, ts_ms=base + seq))
    h = rig.agent.wait_for(
        lambda h: h["held"].get("cloud_unknown_device") == 20, what="20 readings held as unknown at the cloud"
    )
    assert h["outbox_depth"] == 0 and h["rejected"] == {}
    assert _stored(influxdb, db, DEV) == set()
    # The device reaches the cloud's inventory: its contract_version changes, the gateway retries at once.
    full.save(cloud_inventory)
    h = rig.agent.wait_for(lambda h: h["held"] == {}, timeout=60, what="the held readings stored")
    assert _stored(influxdb, db, DEV) == {(base + s) * 1_000_000 for s in range(20)}
    assert h["dropped"] == {} and h["rejected"] == {}


def test_readings_buffered_past_the_clouds_window_are_judged_by_when_the_gateway_took_them(
    cloud_factory, rig_factory, gw_pki, influxdb, tmp_path
):
    # The same situation as 30 days and an outage, at a smaller scale: both windows 60 s.
    db, _cloud, rig, link = _stack(
        cloud_factory,
        rig_factory,
        gw_pki,
        influxdb,
        tmp_path,
        cloud={"max_past_s": 60.0},
        agent={"max_past_s": 60.0},
        proxy=True,
    )
    assert link is not None
    try:
        link.cut()
        old = int(time.time() * 1000) - 50_000  # 50 s old when the gateway takes them
        for seq in range(5):
            rig.publish(DEV, reading(seq, ts_ms=old + seq))
        rig.agent.wait_for(lambda h: h["outbox_depth"] == 5, what="five readings in the outbox")
        time.sleep(15)  # the outage itself: by the batch's arrival they are over 60 s old
        link.restore()
        h = rig.agent.wait_for(
            lambda h: h["outbox_depth"] == 0 and h["readings_out"] >= 5, timeout=60, what="forwarded"
        )
    finally:
        link.stop()
    assert h["held"] == {} and h["rejected"] == {}
    assert _stored(influxdb, db, DEV) == {(old + s) * 1_000_000 for s in range(5)}


def test_a_rebooted_device_with_its_clock_behind_is_not_taken_for_a_resend(
    cloud_factory, rig_factory, gw_pki, influxdb, tmp_path
):
    db, _cloud, rig, _ = _stack(cloud_factory, rig_factory, gw_pki, influxdb, tmp_path)
    t0 = int(time.time() * 1000) - 60_000
    for seq in range(10):  # one a second
        rig.publish(DEV, reading(seq, ts_ms=t0 + seq * 1000))
    rig.agent.wait_for(lambda h: h["readings_out"] >= 10, what="the first boot's readings forwarded")
    # Reboot: the counter starts at 0 again and the clock is behind, inside the span just sent.
    for seq in range(10):
        rig.publish(DEV, reading(seq, ts_ms=t0 + 500 + seq * 100))
    rig.agent.wait_for(lambda h: h["readings_out"] >= 20 and h["outbox_depth"] == 0, what="all forwarded")
    expected = {(t0 + s * 1000) * 1_000_000 for s in range(10)} | {
        (t0 + 500 + s * 100) * 1_000_000 for s in range(10)
    }
    assert _stored(influxdb, db, DEV) == expected
