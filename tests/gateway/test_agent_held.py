"""Held readings: a refusal by the cloud that the gateway does not share keeps the reading (the device
was told it is safe) until the cloud agrees; one it shares is final. Real broker, agent subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import orjson
import pytest

from citygate.contract.inventory import Inventory
from tests.gateway.conftest import GW_DEVICES, reading
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

DEV = GW_DEVICES[3]


def _battery_reading(seq: int) -> bytes:
    return b'{"ts": %d, "seq": %d, "readings": {"level": 1.0, "battery": 50.0}}' % (
        int(time.time() * 1000) - 60_000 + seq,  # apart from reading()'s timestamps
        seq,
    )


def _cli(rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "citygate", "gateway", *args, "--config", str(rig.agent.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _hold_one(rig_factory, **options):
    """A rig whose cloud refuses one reading (a field it does not take) that the gateway takes."""
    rig = rig_factory(**options)
    rig.cloud.reject_field = "battery"
    rig.agent.start()
    for seq in range(10):
        rig.publish(DEV, reading(seq))
    rig.publish(DEV, _battery_reading(10))
    h = rig.agent.wait_for(
        lambda h: h["outbox_depth"] == 0 and h["readings_out"] == 10 and h["held"],
        what="ten delivered, one held",
    )
    return rig, h


def test_a_refusal_the_gateway_does_not_share_is_held_then_stored_when_the_cloud_changes(rig_factory):
    rig, h = _hold_one(rig_factory)
    # Held, visible, not dead-lettered: on the old code it was dead-lettered and deleted.
    assert h["held"] == {"cloud_out_of_range": 1}
    assert h["rejected"] == {}
    assert h["oldest_held_age_s"] is not None
    # The cloud's inventory/profiles change (its contract_version): retried at once, not in 300 s.
    rig.cloud.reject_field = None
    rig.cloud.contract_version = "v2"
    h = rig.agent.wait_for(
        lambda h: h["held"] == {} and h["readings_out"] == 11, timeout=30, what="the held reading stored"
    )
    with rig.cloud.lock:
        assert sum(1 for (d, _ts) in rig.cloud.received if d == DEV) == 11
    assert h["dropped"] == {}


def test_a_refusal_the_gateway_shares_is_final(rig_factory, gw_pki, tmp_path):
    inventory = tmp_path / "inventory.toml"
    shutil.copy(gw_pki.pki.inventory_path, inventory)
    rig = rig_factory(inventory=str(inventory))
    rig.cloud.mode = "503"
    rig.agent.start()
    rig.publish(DEV, reading(0))
    rig.agent.wait_for(lambda h: h["outbox_depth"] == 1, what="the reading stored at the gateway")
    # The device leaves the gateway's inventory too, then the cloud refuses it as unknown.
    Inventory.load(inventory).without(DEV).save(inventory)
    wait_until(
        lambda: "inventory reloaded" in rig.agent.log_path.read_text(),
        timeout=20,
        interval=0.1,
        message=lambda: f"the agent to reload its inventory:\n{rig.agent.log_tail()}",
    )
    rig.cloud.reject_devices = {DEV}
    rig.cloud.mode = "ok"
    h = rig.agent.wait_for(lambda h: h["outbox_depth"] == 0 and h["rejected"], what="the refusal recorded")
    assert h["rejected"] == {"cloud_unknown_device": 1}
    assert h["held"] == {}


def test_an_operator_lists_releases_and_discards_held_readings(rig_factory):
    rig, _ = _hold_one(rig_factory)
    rig.publish(DEV, _battery_reading(11))
    rig.agent.wait_for(lambda h: h["held"] == {"cloud_out_of_range": 2}, what="two held")
    doc = orjson.loads(_cli(rig, "held", "list", "--json").stdout)
    assert [(g["reason"], g["count"], g["devices"]) for g in doc["groups"]] == [("cloud_out_of_range", 2, 1)]
    assert {r["seq"] for r in doc["readings"]} == {10, 11}
    # Discard says how many it affects and moves them to the dead letters, counted as dropped.
    out = _cli(rig, "held", "discard", "--device", DEV, "--yes").stdout
    assert "2 held readings discarded" in out
    h = rig.agent.wait_for(lambda h: h["held"] == {}, what="nothing held")
    assert h["dropped"] == {"operator_discarded": 2}
    assert "nothing held" in _cli(rig, "held", "list").stdout


def test_release_sends_held_readings_again_now(rig_factory):
    rig, _ = _hold_one(rig_factory)
    rig.cloud.reject_field = None  # fixed at the cloud, with no contract change to signal it
    out = _cli(rig, "held", "release", "--reason", "cloud_out_of_range", "--yes").stdout
    assert "1 held readings will be sent again" in out
    rig.agent.wait_for(
        lambda h: h["held"] == {} and h["readings_out"] == 11, timeout=30, what="the released reading stored"
    )
