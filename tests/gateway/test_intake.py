"""MqttIntake against a real Mosquitto: only paho's network thread touches the socket.

The pipeline thread acknowledges and confirms readings while paho's thread
reads. If the pipeline thread wrote to the socket itself, a write that failed
(the broker just died) would run paho's disconnect handling, and the intake's
``on_disconnect``, in the pipeline thread, inside ``ack()``'s lock: the agent
hung for good, and every device's readings stayed unconfirmed (seen in CI's
reconnect-storm run: 3,548 readings held).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

import orjson
import pytest

from citygate.contract.topics import ack_topic, telemetry_topic
from citygate.gateway.intake import BrokerTls, IncomingMessage, MqttIntake
from citygate.servers.mosquitto import LocalMosquitto
from tests.conftest import GATEWAY_ID, PkiBundle
from tests.gateway.conftest import GW_DEVICES, reading
from tests.mqtt_helpers import Connection, connect
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

DEVICE = GW_DEVICES[0]


@pytest.fixture
def gw_broker(gw_pki: PkiBundle, broker_factory: Callable[..., LocalMosquitto]) -> LocalMosquitto:
    return broker_factory(gw_pki.pki)


@pytest.fixture
def intake(gw_pki: PkiBundle, gw_broker: LocalMosquitto) -> Iterator[MqttIntake]:
    files = gw_pki.gateway()
    it = MqttIntake(
        host="127.0.0.1",
        port=gw_broker.gateway_port,
        client_id=f"citygate-gateway-{GATEWAY_ID}",
        tls=BrokerTls(gw_pki.infra_ca, files.cert, files.key),
    )
    it.start()
    assert it.wait_connected(10), "the intake did not connect"
    yield it
    it.stop()


@pytest.fixture
def device(gw_pki: PkiBundle, gw_broker: LocalMosquitto) -> Iterator[Connection]:
    files = gw_pki.device(DEVICE)
    conn = connect(
        gw_broker.device_port, ca=gw_pki.infra_ca, cert=files.cert, key=files.key, client_id=DEVICE
    )
    assert conn.connected, conn.reason
    conn.subscribe(ack_topic(DEVICE))
    yield conn
    conn.close()


def _receive(intake: MqttIntake, device: Connection, seqs: range) -> list[IncomingMessage]:
    for seq in seqs:
        device.publish(telemetry_topic(DEVICE), reading(seq))
    got: list[IncomingMessage] = []

    def all_received() -> bool:
        with contextlib.suppress(queue.Empty):
            got.append(intake.messages.get(timeout=0.5))
        return len(got) >= len(seqs)

    wait_until(
        all_received,
        interval=0,  # get() waits for the next message
        message=lambda: f"{len(seqs)} readings at the intake; {len(got)} arrived",
    )
    return got


def _record_socket_writers(intake: MqttIntake) -> tuple[list[threading.Thread], list[bool]]:
    """Wrap paho's socket send: who writes, and a switch that makes the next write fail."""
    client = intake._client
    real_send = client._sock_send
    writers: list[threading.Thread] = []
    fail_next = [False]

    def send(buf: bytes) -> int:
        writers.append(threading.current_thread())
        if fail_next[0]:
            fail_next[0] = False
            raise ConnectionResetError("injected: the broker went away mid-write")
        return real_send(buf)

    client._sock_send = send  # type: ignore[method-assign]
    return writers, fail_next


def test_acks_and_confirmations_are_written_by_the_network_thread_only(intake, device):
    writers, _ = _record_socket_writers(intake)
    messages = _receive(intake, device, range(20))
    assert len(messages) == 20
    assert intake.ack(messages) == 20
    intake.publish_acks({DEVICE: list(range(20))})
    wait_until(device.received, message="a confirmation at the device")
    me = threading.current_thread()
    assert writers, "nothing was written"
    assert me not in writers, "the caller's thread wrote to the socket"
    assert set(writers) == {intake._client.network_thread} and intake.alive


def test_a_write_that_fails_during_ack_reconnects_instead_of_hanging(intake, device):
    _, fail_next = _record_socket_writers(intake)
    messages = _receive(intake, device, range(5))
    fail_next[0] = True
    caller = threading.Thread(target=intake.ack, args=(messages,), daemon=True)
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "ack() hung on a failed write"
    wait_until(
        lambda: intake.connects >= 2,
        timeout=20,
        interval=0.1,
        message="the intake to reconnect after the failed write",
    )
    assert intake.connects >= 2 and intake.alive, "the intake did not reconnect after the failed write"
    # The ones never acknowledged come again (persistent session), and new ones flow.
    for seq in range(5, 8):
        device.publish(telemetry_topic(DEVICE), reading(seq))
    seen: set[int] = set()

    def new_ones_received() -> bool:
        with contextlib.suppress(queue.Empty):
            seen.add(orjson.loads(intake.messages.get(timeout=0.5).payload)["seq"])
        return {5, 6, 7} <= seen

    wait_until(
        new_ones_received,
        interval=0,  # get() waits for the next message
        message=lambda: f"seqs 5, 6 and 7 after the reconnect; the intake received only seqs {sorted(seen)}",
    )


def test_a_rounds_confirmations_go_out_in_one_write_at_qos_0(
    intake: MqttIntake, device: Connection, gw_pki: PkiBundle, gw_broker: LocalMosquitto
) -> None:
    """At a city's rates each confirmation was a QoS 1 PUBLISH of its own: its own TLS record,
    and a PUBACK back to read, per reading. Now one round is one write, and nothing waits for a
    PUBACK (a lost confirmation is resent by the device, not by the gateway)."""
    from citygate.contract.acks import encode_acks

    other_id = GW_DEVICES[1]
    files = gw_pki.device(other_id)
    other = connect(
        gw_broker.device_port, ca=gw_pki.infra_ca, cert=files.cert, key=files.key, client_id=other_id
    )
    assert other.connected, other.reason
    other.subscribe(ack_topic(other_id))
    try:
        client = intake._client
        real_send = client._sock_send
        written: list[bytes] = []

        def send(buf: bytes) -> int:
            written.append(bytes(buf))
            return real_send(buf)

        client._sock_send = send  # type: ignore[method-assign]
        intake.publish_acks({DEVICE: [1, 2, 3], other_id: [7]})
        wait_until(lambda: device.received() and other.received(), message="both confirmations")
        assert device.received() == [(ack_topic(DEVICE), encode_acks([1, 2, 3])[0])]
        assert other.received() == [(ack_topic(other_id), encode_acks([7])[0])]
        assert len(written) == 1  # both PUBLISHes in one buffer ...
        assert written[0][0] == 0x30  # ... the first at QoS 0 (a QoS 1 PUBLISH starts 0x32)
        assert written[0].count(ack_topic(other_id).encode()) == 1
        assert not intake._client._out_messages  # QoS 0: none kept for a PUBACK or a resend
    finally:
        other.close()
