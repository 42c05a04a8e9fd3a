"""A gateway whose clock is behind, and no cloud yet to tell it so.

After a power cut a Raspberry Pi boots with the last saved time. Until the
cloud has answered once, the gateway has only that clock, so a good reading can
look "in the future". It is rejected then, but not confirmed: the device keeps
it, resends it, and once the cloud's Date has corrected the gateway's idea of
the time the reading is stored. Confirming that rejection made the device drop
a good reading for good.
"""

from __future__ import annotations

import time

import pytest

from citygate.certs.pki import CertKind
from tests.gateway.confirming_device import ConfirmingDevice
from tests.gateway.conftest import GW_DEVICES
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

AHEAD_S = 1200  # the cloud's clock, and the device's, 20 min ahead of the gateway's


def test_a_reading_rejected_for_time_before_the_cloud_answered_is_kept_and_stored_later(rig_factory):
    rig = rig_factory(via_proxy=True, request_timeout_s=2.0)
    rig.cloud.date_offset_s = AHEAD_S
    rig.proxy.cut()  # no answer from the cloud: the gateway has only its own clock
    rig.agent.start()
    device_id = GW_DEVICES[5]
    files = rig.pki.pki.files(CertKind.DEVICE, device_id)
    dev = ConfirmingDevice(
        device_id,
        port=rig.broker.device_port,
        ca=rig.pki.infra_ca,
        cert=files.cert,
        key=files.key,
        resend_after_s=1.0,
    )
    try:
        wait_until(dev.subscribed.is_set, message="the device connected and subscribed to its acks")
        ts_ms = int((time.time() + AHEAD_S) * 1000)  # right by the cloud's clock
        dev.publish(1, ts_ms)
        rig.agent.wait_for(
            lambda h: h["rejected"].get("timestamp_in_future", 0) >= 2,
            what="the reading rejected, and rejected again when resent",
        )
        assert dev.pending() == 1, "the rejection was confirmed: the device let a good reading go"
        assert rig.agent.health()["clock_offset_s"] is None

        rig.proxy.restore()  # the cloud answers: its Date says the gateway is 20 min behind
        wait_until(
            lambda: (device_id, ts_ms) in rig.cloud.received and not dev.pending(),
            timeout=30,
            interval=0.2,
            message=lambda: (
                f"the reading stored after the cloud answered; cloud has {dict(rig.cloud.received)}, "
                f"device holds {dev.pending()}\n{rig.agent.log_tail()}"
            ),
        )
        offset = rig.agent.health()["clock_offset_s"]
        assert offset is not None and abs(offset + AHEAD_S) < 5
    finally:
        dev.close()
