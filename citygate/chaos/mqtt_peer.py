"""An MQTT client of the gateway's broker with a certificate of its choice, and what happened to it."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citygate.certs.pki import CertFiles


@dataclass
class MqttPeer:
    """A paho MQTT client with a certificate, and what happened to it."""

    client: mqtt.Client | None
    connected: bool = False
    reason: str = "timeout"
    connects: int = 0
    disconnects: list[float] = field(default_factory=list)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def connect(
        cls,
        port: int,
        *,
        ca: Path,
        cert: CertFiles | None,
        client_id: str,
        timeout: float = 5.0,
        keep_trying: bool = False,
    ) -> MqttPeer:
        """Connect and wait for the outcome.

        ``keep_trying``: stay in paho's reconnect loop even if refused, as a device would.
        """
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        client.tls_set(
            ca_certs=str(ca),
            certfile=str(cert.cert) if cert else None,
            keyfile=str(cert.key) if cert else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.reconnect_delay_set(1, 1)
        peer = cls(client)
        outcome = threading.Event()

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
            peer.connected = not rc.is_failure
            peer.reason = str(rc)
            if peer.connected:
                peer.connects += 1
            outcome.set()

        def on_disconnect(c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
            if not outcome.is_set():
                peer.reason = f"disconnected before CONNACK: {rc}"
            elif peer.connected:
                peer.disconnects.append(time.monotonic())
            peer.connected = False
            outcome.set()

        def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            with peer.lock:
                peer.messages.append((msg.topic, bytes(msg.payload)))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        try:
            client.connect("127.0.0.1", port, keepalive=30)
        except (ssl.SSLError, OSError) as e:
            peer.reason = f"{type(e).__name__}: {e}"
            peer.client = None
            return peer
        client.loop_start()
        outcome.wait(timeout)
        if not peer.connected and not keep_trying:
            client.loop_stop()
            peer.client = None
        return peer

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> bool:
        if self.client is None:
            return False
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def subscribe(self, topic: str, timeout: float = 5.0) -> None:
        assert self.client is not None
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe(topic, 1)
        done.wait(timeout)

    def received(self, pred: Callable[[str, bytes], bool]) -> int:
        with self.lock:
            return sum(1 for t, p in self.messages if pred(t, p))

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


def was_refused(peer: MqttPeer) -> bool:
    """Whether ``peer`` was refused; closes it either way."""
    ok = not peer.connected
    peer.close()
    return ok
