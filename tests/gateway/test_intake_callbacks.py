"""The intake's paho callbacks, called directly (no broker): what they decide from what paho says.

A stamp: the clock's trust is read before its time. The cloud's first answer anchors the
gateway's clock (TrustedClock.anchored) at any moment. If the intake read the time first and the
trust after, a stamp taken from the unchecked clock just before that answer would be marked as
checked, and a reading rejected for its time against it would be confirmed to the device, which
then drops it.

Readiness: the intake reports itself connected (health's ``broker_connected``) only once the
broker acknowledged its subscription. On a first start the broker has no session for the agent,
and what devices publish before the SUBSCRIBE is processed has no subscriber and is discarded:
CI's fuzz test published as soon as health said connected and 47 of 68 messages never came.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from citygate.contract.topics import telemetry_topic
from citygate.gateway.intake import BrokerTls, MqttIntake
from tests.conftest import GATEWAY_ID, PkiBundle
from tests.gateway.conftest import GW_DEVICES, reading

UNCHECKED_NS = 1_700_000_000_000_000_000
SUBSCRIBE_MID = 42


class PahoStub:
    """What _on_connect calls on paho's client: subscribe, returning (result, mid)."""

    def __init__(self) -> None:
        self.subscribed: list[tuple[str, int]] = []

    def subscribe(self, topic: str, qos: int) -> tuple[int, int]:
        self.subscribed.append((topic, qos))
        return mqtt.MQTT_ERR_SUCCESS, SUBSCRIBE_MID


def make_intake(gw_pki: PkiBundle, **options: object) -> MqttIntake:
    files = gw_pki.gateway()
    return MqttIntake(
        host="127.0.0.1",
        port=1,  # never connected
        client_id=f"citygate-gateway-{GATEWAY_ID}",
        tls=BrokerTls(gw_pki.infra_ca, files.cert, files.key),
        **options,  # type: ignore[arg-type]
    )


def connack(intake: MqttIntake, paho: PahoStub) -> None:
    ok = ReasonCode(PacketTypes.CONNACK, "Success")
    intake._on_connect(paho, None, mqtt.ConnectFlags(session_present=False), ok, None)  # type: ignore[arg-type]


def suback(intake: MqttIntake, mid: int, granted: int = 1) -> None:
    granted_qos = [ReasonCode(PacketTypes.SUBACK, identifier=granted)]
    intake._on_subscribe(intake._client, None, mid, granted_qos, None)


def test_the_intake_is_ready_only_once_the_broker_acknowledged_its_subscription(gw_pki: PkiBundle) -> None:
    intake, paho = make_intake(gw_pki), PahoStub()
    connack(intake, paho)
    assert paho.subscribed == [("devices/+/telemetry", 1)]
    assert intake.connected and not intake.receiving, "ready before the broker has the subscription"
    assert not intake.wait_connected(0)
    suback(intake, SUBSCRIBE_MID + 1)  # another SUBACK: not ours
    assert not intake.receiving
    suback(intake, SUBSCRIBE_MID)
    assert intake.receiving and intake.wait_connected(0)


def test_a_refused_subscription_leaves_the_intake_not_ready(gw_pki: PkiBundle) -> None:
    intake, paho = make_intake(gw_pki), PahoStub()
    connack(intake, paho)
    suback(intake, SUBSCRIBE_MID, granted=0x80)  # 0x80: unspecified error (subscription refused)
    assert not intake.receiving


def test_a_reconnect_is_not_ready_until_its_own_subscription_is_acknowledged(gw_pki: PkiBundle) -> None:
    intake, paho = make_intake(gw_pki), PahoStub()
    connack(intake, paho)
    suback(intake, SUBSCRIBE_MID)
    connack(intake, paho)  # a new connection (paho reconnected)
    assert not intake.receiving


def test_a_stamp_taken_as_the_clock_becomes_trusted_is_marked_unchecked(gw_pki: PkiBundle) -> None:
    anchored = [False]

    def clock() -> int:
        anchored[0] = True  # the cloud answers while this stamp is taken from the old clock
        return UNCHECKED_NS

    intake = make_intake(gw_pki, clock=clock, clock_trusted=lambda: anchored[0])
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


# -- reading at city rates -----------------------------------------------------------------


def test_a_wake_reads_every_packet_the_socket_holds(gw_pki: PkiBundle) -> None:
    """paho read one packet per wake of its select, whatever the socket held."""
    client = make_intake(gw_pki)._client
    results = [mqtt.MQTT_ERR_SUCCESS] * 5 + [mqtt.MQTT_ERR_AGAIN]
    client._sock = object()  # type: ignore[assignment]  # "connected": _packet_read is stubbed
    client._packet_read = lambda: results.pop(0)  # type: ignore[method-assign]
    try:
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    finally:
        client._sock = None  # paho's __del__ closes it
    assert results == [] and client.packets_read == 5


def test_after_a_wake_that_read_few_packets_the_thread_pauses(
    gw_pki: PkiBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a city's rates each message came alone and woke paho's thread: the wake, not the
    message, was most of the agent's CPU there. A busy link, or a wake for a write, goes on."""
    client = make_intake(gw_pki, read_pause_s=0.05)._client
    pauses: list[float] = []
    client.pause = pauses.append  # type: ignore[method-assign]
    read = [0]

    def one_wake(self: mqtt.Client, timeout: float = 1.0) -> int:
        """paho's select and loop_read, as if the wake had read ``read[0]`` packets."""
        client.packets_read = read[0]
        return mqtt.MQTT_ERR_SUCCESS

    monkeypatch.setattr(mqtt.Client, "_loop", one_wake)
    for n in (1, 7, 8, 500, 0):
        read[0] = n
        assert client._loop(1.0) == mqtt.MQTT_ERR_SUCCESS
    assert pauses == [0.05, 0.05]  # after the wakes that read 1 and 7; not 8, 500 or none
