"""MQTT intake: the only module that talks to the broker.

The agent subscribes to ``devices/+/telemetry`` with QoS1 and a persistent
session (clean_session=False, a fixed client id), so what devices publish while
the agent is down waits in the broker. paho's ``manual_ack`` is on: a message
is acknowledged to the broker only by :meth:`MqttIntake.ack`, which the
pipeline calls after the reading is committed to the outbox. A kill -9 before
that leaves the message unacknowledged, and the broker redelivers it.

Acks are tied to the connection they belong to: an ack for a message of an
earlier connection is never sent. After a reconnect the broker delivers again
what was not acknowledged: with the same packet ids if it kept the session, with
fresh ones if it lost it (a broker kill -9 before its autosave), and then an old
ack could acknowledge an unrelated message that reuses the id. The copy
delivered again is acknowledged once committed; the pipeline's resend check
keeps a reading with a seq from being stored twice.

Only paho's own thread (``loop_start``) touches the socket; see :meth:`MqttIntake.start`.
"""

from __future__ import annotations

import queue
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citygate.contract.acks import encode_acks
from citygate.contract.topics import TELEMETRY_FILTER, ack_topic

log = structlog.get_logger("citygate.gateway.intake")


class IncomingMessage(NamedTuple):
    """One delivered message (a tuple: built once per message, in paho's thread)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which broker connection delivered it
    received_ns: int
    # The broker's retain flag: set only on a copy replayed from its retained store because
    # the agent (re)subscribed, never on a live delivery (MQTT 3.1.1, 3.3.1.3). The pipeline
    # refuses such copies (see Pipeline.process).
    retain: bool = False
    # Whether received_ns came from a clock the cloud had checked (TrustedClock.anchored) when
    # the message was stamped: a rejection for time is confirmed to the device only then.
    clock_trusted: bool = True


@dataclass(frozen=True, slots=True)
class BrokerTls:
    ca_file: Path
    cert_file: Path
    key_file: Path
    # The name the broker's certificate must carry (SNI and hostname check); None: the host
    # connected to. For a broker reached by an address its certificate does not name.
    server_name: str | None = None


class _ServerNameContext(ssl.SSLContext):
    """A client context that checks the server's certificate for a fixed name.

    paho wraps its socket with ``server_hostname=<the host it connects to>`` and has no
    setting for another name (``tls_insecure_set`` only turns the check off). This context
    substitutes ``server_name``; the check itself stays the standard library's
    (``check_hostname``, which also makes paho skip its own match against the host).
    """

    server_name: str | None = None

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.server_name or server_hostname,
            session=session,
        )


def broker_tls_context(tls: BrokerTls) -> ssl.SSLContext:
    """The agent's TLS context for the broker: trust ``ca_file`` only, present the gateway's
    certificate, check the broker's certificate for ``server_name`` (or the host)."""
    ctx = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname
    ctx.load_verify_locations(cafile=str(tls.ca_file))
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    ctx.server_name = tls.server_name
    return ctx


_PUBACK = 0x40
_PUBLISH_QOS0 = 0x30  # PUBLISH, QoS 0, no retain, no dup
_READ_BATCH = 1000  # packets read per wake at most (the broker sends at most 1000 unacknowledged)
_FEW_PACKETS = 8  # a wake that read fewer than this found a quiet link: pause before the next
# The label of a buffer of several packets in paho's output queue: paho looks at a queued
# packet's command only to run on_publish after a QoS 0 PUBLISH and to close after a
# DISCONNECT; a buffer of packets is neither to it.
_PACKETS = 0x00


class _AckBatchingClient(mqtt.Client):
    """paho's client, plus three shortcuts: many PUBACKs written as one packet buffer, many
    QoS 0 PUBLISHes likewise, and messages handed to ``on_message`` without paho's per-topic
    callback matching.

    paho sends each ``ack()`` and each ``publish()`` as its own TLS record and wakes its loop
    for each; after a group commit of hundreds of readings that is a large share of the
    agent's CPU. The bytes on the wire are exactly the packets paho would send (a PUBACK is
    ``struct.pack('!BBH', PUBACK, 2, mid)`` as in ``_send_command_with_mid``; a PUBLISH is
    built with paho's own packers as in ``_send_publish``), queued together through paho's
    own output queue. paho is pinned below 3.
    """

    def send_pubacks(self, mids: list[int]) -> None:
        # Only while paho's thread runs: without it, _packet_queue writes from the caller's
        # thread, and a failed write runs on_disconnect there (inside MqttIntake.ack's lock).
        # Not sent, the messages stay unacknowledged and the broker delivers them again.
        if mids and self._thread is not None:
            data = b"".join(struct.pack("!BBH", _PUBACK, 2, mid) for mid in mids)
            self._packet_queue(_PUBACK, data, 0, 1)

    def send_qos0_publishes(self, messages: list[tuple[str, bytes]]) -> None:
        # Only while paho's thread runs, as send_pubacks. Lost with the connection (paho's
        # output queue is emptied at a reconnect): nothing needs them again (MqttIntake.publish_acks).
        if messages and self._thread is not None:
            data = bytearray()
            for topic, payload in messages:
                t = topic.encode()
                data.append(_PUBLISH_QOS0)
                self._pack_remaining_length(data, 2 + len(t) + len(payload))
                self._pack_str16(data, t)
                data.extend(payload)
            self._packet_queue(_PACKETS, data, 0, 0)

    # Set by MqttIntake before the loop starts: the pause after a wake that read few packets.
    read_pause_s = 0.0
    pause: Callable[[float], None] = staticmethod(time.sleep)
    packets_read = 0  # in the last wake

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # paho reads one packet per wake of its select (its count is of its own messages in
        # flight, and the agent has none): a select, and a pass through its loop, per message.
        # Read what the socket holds, as paho's loop_read does one packet at a time (the count
        # starts at 0 in _loop, which also wakes for writes alone).
        for _ in range(_READ_BATCH):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            self.packets_read += 1
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        self.packets_read = 0
        rc = super()._loop(timeout)
        # At a city's rates each message came alone and woke the thread: the wake, not the
        # message, was most of its CPU. After a wake that found only a few, let more arrive
        # (they wait in the socket, acknowledged later by at most the pause; our own writes
        # queued meanwhile wait as long). A busy link reads many per wake and never pauses.
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and 0 < self.packets_read < _FEW_PACKETS:
            self.pause(self.read_pause_s)
        return rc

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # paho first runs every message's topic through its matcher of per-topic callbacks
        # (message_callback_add). The agent has none, so that finds nothing, and it was about
        # 8 % of the agent's CPU at full rate (py-spy). Exceptions propagate as in paho.
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    @property
    def network_thread(self) -> threading.Thread | None:
        """paho's ``loop_start()`` thread (paho keeps it in ``_thread`` while it runs)."""
        return self._thread


class MqttIntake:
    """A paho client in its own network thread, feeding a bounded queue."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        tls: BrokerTls,
        keepalive: int = 30,
        queue_max: int = 20_000,
        read_pause_s: float = 0.0,
        clock: Callable[[], int] = time.time_ns,
        clock_trusted: Callable[[], bool] = lambda: True,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive = keepalive
        self._clock = clock
        self._clock_trusted = clock_trusted
        # Bounded: when the pipeline falls behind, paho's thread blocks here and the broker
        # holds the rest (it sends at most its max_inflight_messages unacknowledged).
        self.messages: queue.Queue[IncomingMessage] = queue.Queue(maxsize=queue_max)
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._subscribed = threading.Event()  # this connection's SUBACK came: telemetry flows to us
        self._stopping = False
        self.connects = 0
        self.disconnects = 0
        self._client = _AckBatchingClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        self._client.read_pause_s = read_pause_s
        self._tls = tls
        self._configure_tls()
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._last_connect_error: str | None = None
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._subscribe_mid: int | None = None  # the SUBSCRIBE of the current connection

    def _configure_tls(self) -> None:
        self._client.tls_set_context(broker_tls_context(self._tls))

    # -- paho callbacks (network thread) -------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused connection", reason=str(reason_code))
            return
        with self._lock:
            self._generation += 1
            self._connected = True
            self._subscribed.clear()
        # Subscribe every time: cheap, and correct even if the broker lost the session. Its
        # SUBACK comes to _on_subscribe in this same thread, after this returns.
        _, self._subscribe_mid = client.subscribe(TELEMETRY_FILTER, qos=1)
        self.connects += 1
        self._last_connect_error = None
        log.info("connected to broker", host=self.host, port=self.port, session_present=flags.session_present)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        # Ready only now: until the broker has the subscription (a first start has no session
        # there), what devices publish has no subscriber and the broker discards it.
        if mid != self._subscribe_mid:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:  # health says not connected: the operator sees it (the broker's ACL, say)
            log.error("broker refused the telemetry subscription", topic=TELEMETRY_FILTER, reason=refused)
            return
        with self._lock:
            if not self._connected:
                return
            self._subscribed.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho calls this inside its ``except OSError`` around a failed (re)connect, so the
        # error is at hand: a refused TCP connection, or a certificate that does not match
        # (broker_server_name). Logged when it changes, not at every retry.
        error = str(sys.exc_info()[1])
        if error != self._last_connect_error:
            self._last_connect_error = error
            log.warning("cannot connect to broker; retrying", host=self.host, port=self.port, error=error)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._generation += 1  # acks of the old connection must never be sent
            self._connected = False
            self._subscribed.clear()
        self.disconnects += 1
        if not self._stopping:
            log.warning("disconnected from broker; reconnecting", reason=str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # Trust first, then the time: once trusted the clock stays so, so a True here means the
        # stamp below was the checked clock's (read the other way round, a stamp taken just
        # before the cloud's first answer would pass as checked).
        trusted = self._clock_trusted()
        item = IncomingMessage(
            msg.topic,
            bytes(msg.payload),
            msg.mid,
            msg.qos,
            self._generation,
            self._clock(),
            bool(msg.retain),
            trusted,
        )
        while not self._stopping:  # stopping: not acked, the broker delivers it after the restart
            try:
                self.messages.put(item, timeout=1.0)
                return
            except queue.Full:
                continue

    # -- API (other threads) ----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def receiving(self) -> bool:
        """Connected, and the broker acknowledged the telemetry subscription on this connection."""
        return self._subscribed.is_set()

    @property
    def alive(self) -> bool:
        """The network thread runs (if it died, nothing comes in: the agent is not healthy)."""
        thread = self._client.network_thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        # connect_async + loop_start: the first connection and every reconnect happen in
        # paho's thread; start() never blocks on the broker. loop_start, not loop_forever in a
        # thread of ours: only then does paho know it is threaded, and leave all socket writes
        # to its own thread. Otherwise ack() from the pipeline thread writes to the socket
        # itself, and a write that fails runs on_disconnect there, inside ack()'s lock: the
        # agent hung for good after a broker kill.
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until :attr:`receiving` (connected and subscribed)."""
        return self._subscribed.wait(timeout)

    def ack(self, messages: Iterable[IncomingMessage]) -> int:
        """PUBACK messages whose readings are committed. Returns how many were sent."""
        with self._lock:
            if not self._connected:
                return 0
            gen = self._generation
            mids = [m.mid for m in messages if m.generation == gen and m.qos == 1]
            self._client.send_pubacks(mids)
        return len(mids)

    def publish_acks(self, handled: Mapping[str, list[int]]) -> None:
        """End-to-end confirmation: the seqs each device may now let go of, as ranges.

        QoS 0, all of them in one write: a confirmation lost on the way (the connection
        dropped) leaves the device holding those readings, and it resends them; the resend
        check knows them, so they are confirmed again and not stored twice. At QoS 1 each
        confirmation was its own TLS record and brought its own PUBACK back: at a city's rates
        (a reading per device per round) that was most of the agent's CPU (bench/RESULTS.md).
        """
        if not self.alive:
            return  # a device resends what stays unconfirmed; it is acked when committed again
        messages = [
            (ack_topic(device_id), payload)
            for device_id, seqs in handled.items()
            for payload in encode_acks(seqs)
        ]
        with self._lock:
            if self._connected:
                self._client.send_qos0_publishes(messages)

    def stop(self) -> None:
        self._stopping = True
        thread = self._client.network_thread
        self._client.disconnect()  # paho's loop returns once the DISCONNECT is out
        if thread is not None:
            thread.join(10.0)  # bounded, unlike loop_stop()
