"""Mosquitto killed (kill -9) and restarted during publishing.

The broker is not a durable point. With end-to-end confirmation the devices
resend what the gateway did not confirm, and nothing is lost; without it, the
test reports how many readings the crash cost (why confirmation exists).
"""

from __future__ import annotations

import contextlib
import time

import pytest

from citygate.certs.pki import CertKind
from tests.gateway.confirming_device import ConfirmingDevice
from tests.gateway.conftest import GW_DEVICES
from tests.waiting import WaitTimeoutError, wait_until

pytestmark = pytest.mark.servers


def _run(rig, confirm: bool) -> tuple[int, int, int]:
    devices = []
    for d in GW_DEVICES[:3]:
        f = rig.pki.pki.files(CertKind.DEVICE, d)
        devices.append(
            ConfirmingDevice(
                d, port=rig.broker.device_port, ca=rig.pki.infra_ca, cert=f.cert, key=f.key, confirm=confirm
            )
        )
    for dev in devices:
        wait_until(dev.subscribed.is_set, message=f"{dev.device_id} connected and subscribed to its acks")
    base = int(time.time() * 1000)
    for seq in range(400):
        for dev in devices:
            dev.publish(seq, base + seq)
        if seq == 200:
            rig.broker.kill()
            rig.agent.wait_for(lambda h: not h["broker_connected"], what="the agent to see the broker gone")
            rig.broker.start()
        time.sleep(0.002)  # a steady stream: the crash comes in the middle of it
    expected = {(dev.device_id, ts) for dev in devices for ts in dev.produced.values()}

    def delivered() -> bool:
        done = all(dev.pending() == 0 for dev in devices) if confirm else True
        h = rig.agent.health()
        return bool(done and h and h["outbox_depth"] == 0 and expected <= set(rig.cloud.received))

    # With confirmation everything arrives (the test then says whether it did); without, what the
    # crash cost never comes: it is given 10 s to settle.
    with contextlib.suppress(WaitTimeoutError):
        wait_until(delivered, timeout=60 if confirm else 10, interval=0.2, message="every reading delivered")
    rig.agent.wait_for(lambda h: h["outbox_depth"] == 0, what="outbox drained")
    stored = expected & set(rig.cloud.received)
    for dev in devices:
        dev.close()
    return len(expected), len(stored), sum(dev.resends for dev in devices)


def test_broker_crash_with_end_to_end_confirmation_loses_nothing(rig_factory):
    rig = rig_factory()
    rig.agent.start()
    expected, stored, resends = _run(rig, confirm=True)
    print(
        f"broker kill -9 with confirmation: expected {expected}, stored {stored}, "
        f"lost {expected - stored}, device resends {resends}"
    )
    assert stored == expected


def test_broker_crash_without_confirmation_reports_the_loss(rig_factory):
    rig = rig_factory()
    rig.agent.start()
    expected, stored, _ = _run(rig, confirm=False)
    lost = expected - stored
    print(f"broker kill -9 WITHOUT confirmation: expected {expected}, stored {stored}, lost {lost}")
    assert stored <= expected
