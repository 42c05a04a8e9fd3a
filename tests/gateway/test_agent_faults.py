"""Faults: kill -9 of the agent, the cloud unreachable, a corrupt outbox. Nothing acknowledged is lost."""

from __future__ import annotations

import random
import threading
import time

import psutil
import pytest

from tests.gateway.conftest import GW_DEVICES, reading
from tests.waiting import wait_until

pytestmark = pytest.mark.servers


class Publisher(threading.Thread):
    """Devices publishing at full rate; remembers every reading the broker acknowledged."""

    def __init__(self, rig, devices, per_device: int) -> None:
        super().__init__(daemon=True)
        self.rig, self.devices, self.per_device = rig, devices, per_device
        self.sent: set[tuple[str, int]] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            base = int(time.time() * 1000)
            for seq in range(self.per_device):
                for d in self.devices:
                    ts = base + seq
                    self.rig.publish(d, reading(seq, ts_ms=ts))
                    self.sent.add((d, ts))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_kill_9_during_full_rate_publishing_loses_nothing(rig_factory):
    rig = rig_factory()
    rig.agent.start()
    pub = Publisher(rig, GW_DEVICES[:4], per_device=400)
    pub.start()
    rng = random.Random(7)
    kills = 0
    while pub.is_alive() or kills < 5:
        time.sleep(rng.uniform(0.1, 0.6))  # faults at random moments of the stream, not a wait
        rig.agent.kill9()
        kills += 1
        rig.agent.start()
    pub.join()
    assert pub.error is None, pub.error
    expected = len(pub.sent)
    rig.agent.wait_for(
        lambda h: h["outbox_depth"] == 0 and rig.cloud.count() >= expected,
        timeout=90,
        what="everything forwarded after the kills",
    )
    received = set(rig.cloud.received)
    lost = {(d, ts) for d, ts in pub.sent if (d, ts) not in received}
    print(
        f"kill -9 x{kills}: sent {expected}, stored {len(received)}, lost {len(lost)}, "
        f"duplicate deliveries {rig.cloud.duplicates()}"
    )
    assert not lost
    assert received == pub.sent  # nothing unexpected either


def test_cloud_unreachable_then_back_drains_everything_in_order(rig_factory):
    rig = rig_factory(batch_max_readings=500)
    rig.cloud.mode = "down"
    rig.agent.start()
    n = 3000
    pub = Publisher(rig, GW_DEVICES[:3], per_device=n // 3)
    pub.run()
    rig.agent.wait_for(lambda h: h["outbox_depth"] == n, what="backlog held in the outbox")
    rss_before = psutil.Process(rig.agent.proc.pid).memory_info().rss
    rig.cloud.mode = "ok"
    h = rig.agent.wait_for(lambda h: h["outbox_depth"] == 0, timeout=60, what="backlog drained")
    rss_after = psutil.Process(rig.agent.proc.pid).memory_info().rss
    assert rig.cloud.count() == n and set(rig.cloud.received) == pub.sent
    assert h["readings_out"] == n
    for d in GW_DEVICES[:3]:
        seqs = [s for dev, s in rig.cloud.order if dev == d]
        assert seqs == sorted(seqs), f"order broken for {d}"
    print(f"backlog {n}: RSS before drain {rss_before / 1e6:.1f} MB, after {rss_after / 1e6:.1f} MB")


def test_cloud_503_with_retry_after_holds_data(rig_factory):
    rig = rig_factory()
    rig.cloud.mode = "503"
    rig.agent.start()
    for seq in range(20):
        rig.publish(GW_DEVICES[2], reading(seq))
    rig.agent.wait_for(lambda h: h["outbox_depth"] == 20, what="held")
    # Two more attempts refused (each after the Retry-After second): the readings stay held.
    tried = rig.cloud.unavailable
    wait_until(
        lambda: rig.cloud.unavailable >= tried + 2, timeout=30, message="two more attempts answered 503"
    )
    assert rig.agent.health()["outbox_depth"] == 20 and rig.cloud.count() == 0
    rig.cloud.mode = "ok"
    rig.agent.wait_for(lambda h: h["outbox_depth"] == 0, what="delivered after 503s")
    assert rig.cloud.count() == 20


def test_corrupt_outbox_is_moved_aside_and_the_agent_runs(rig_factory):
    rig = rig_factory()
    state = rig.workdir / "state"
    state.mkdir()
    (state / "outbox.db").write_bytes(b"this is not a sqlite database" * 100)
    rig.agent.start()
    assert list(state.glob("outbox.db.corrupt-*"))
    assert "outbox corrupt" in rig.agent.log_tail()
    rig.publish(GW_DEVICES[0], reading(1))
    rig.agent.wait_for(lambda h: h["readings_out"] == 1, what="flowing with a fresh outbox")


@pytest.mark.parametrize("policy", ["refuse_new", "drop_oldest"])
def test_outbox_full_policy_holds_and_counts_exactly(rig_factory, policy):
    rig = rig_factory(outbox_max_bytes=1_000_000, overflow_policy=policy)
    rig.cloud.mode = "down"
    rig.agent.start()
    pub = Publisher(rig, GW_DEVICES[:4], per_device=3000)
    pub.run()
    n = len(pub.sent)
    h = rig.agent.wait_for(
        lambda h: h["readings_in"] + h["dropped"].get("outbox_full", 0) >= n,
        what="every reading stored or counted as dropped",
    )
    dropped = sum(h["dropped"].values())
    assert h["outbox_bytes"] <= 1_000_000
    if policy == "refuse_new":
        assert set(h["dropped"]) == {"outbox_full"}
        assert h["readings_in"] + dropped == n and h["outbox_depth"] == h["readings_in"]
    else:
        assert set(h["dropped"]) == {"overflow_oldest"}
        assert h["readings_in"] == n and h["outbox_depth"] + dropped == n
    assert dropped > 0
    print(f"{policy}: published {n}, stored {h['outbox_depth']}, dropped {h['dropped']}")
    # Space returns (the cloud is back): what was kept is delivered, exactly.
    rig.cloud.mode = "ok"
    rig.agent.wait_for(lambda h: h["outbox_depth"] == 0, what="drained")
    assert rig.cloud.count() == h["outbox_depth"]
    if policy == "drop_oldest":  # the newest survived
        newest = sorted(pub.sent, key=lambda x: x[1])[-100:]
        assert all(k in rig.cloud.received for k in newest)


def test_flapping_link_to_the_cloud_loses_nothing(rig_factory):
    rig = rig_factory(via_proxy=True, request_timeout_s=2.0)
    rig.agent.start()
    pub = Publisher(rig, GW_DEVICES[:3], per_device=600)
    pub.start()
    rng = random.Random(3)
    flaps = 0
    flapping_until = time.monotonic() + 6  # at least 6 s of flapping, and for as long as devices publish
    while time.monotonic() < flapping_until or pub.is_alive():
        rig.proxy.cut()
        time.sleep(rng.uniform(0.2, 0.8))
        rig.proxy.restore()
        time.sleep(rng.uniform(0.2, 0.8))
        flaps += 1
    pub.join()
    rig.agent.wait_for(
        lambda h: h["outbox_depth"] == 0 and rig.cloud.count() >= len(pub.sent),
        timeout=60,
        what="delivered after the flapping stopped",
    )
    received = set(rig.cloud.received)
    print(
        f"flapping link x{flaps}: sent {len(pub.sent)}, stored {len(received)}, "
        f"duplicate deliveries {rig.cloud.duplicates()}"
    )
    assert received == pub.sent
