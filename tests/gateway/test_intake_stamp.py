"""How the intake stamps a message, without a broker: the clock's trust is read before its time.

The cloud's first answer anchors the gateway's clock (TrustedClock.anchored) at any moment. If
the intake read the time first and the trust after, a stamp taken from the unchecked clock just
before that answer would be marked as checked, and a reading rejected for its time against it
would be confirmed to the device, which then drops it.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt

from citygate.contract.topics import telemetry_topic
from citygate.gateway.intake import BrokerTls, MqttIntake
from tests.conftest import GATEWAY_ID, PkiBundle
from tests.gateway.conftest import GW_DEVICES, reading

UNCHECKED_NS = 1_700_000_000_000_000_000


def test_a_stamp_taken_as_the_clock_becomes_trusted_is_marked_unchecked(gw_pki: PkiBundle) -> None:
    anchored = [False]

    def clock() -> int:
        anchored[0] = True  # the cloud answers while this stamp is taken from the old clock
        return UNCHECKED_NS

    files = gw_pki.gateway()
    intake = MqttIntake(
        host="127.0.0.1",
        port=1,  # never connected
        client_id=f"citygate-gateway-{GATEWAY_ID}",
        tls=BrokerTls(gw_pki.infra_ca, files.cert, files.key),
        clock=clock,
        clock_trusted=lambda: anchored[0],
    )
    msg = mqtt.MQTTMessage(mid=3, topic=telemetry_topic(GW_DEVICES[0]).encode())
    msg.payload = reading(1)
    msg.qos = 1
    intake._on_message(intake._client, None, msg)
    item = intake.messages.get_nowait()
    assert item.received_ns == UNCHECKED_NS
    assert item.clock_trusted is False
    # The next stamp is the checked clock's.
    intake._on_message(intake._client, None, msg)
    assert intake.messages.get_nowait().clock_trusted is True
