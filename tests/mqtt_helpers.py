"""paho-mqtt helpers for tests: connect with a certificate and observe the outcome."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

Message = tuple[str, bytes]


@dataclass
class Connection:
    connected: bool
    reason: str
    client: mqtt.Client | None = None
    messages: list[Message] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Message]:
        """A copy of the messages received so far (paho's thread appends to ``messages``)."""
        with self._lock:
            return list(self.messages)

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 5.0) -> None:
        assert self.client is not None
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout)

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> None:
        assert self.client is not None
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos)
        assert done.wait(timeout), f"no SUBACK for {topic}"

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


def connect(
    port: int,
    *,
    ca: Path,
    cert: Path | None,
    key: Path | None,
    client_id: str,
    host: str = "127.0.0.1",
    timeout: float = 5.0,
    clean_session: bool = True,
) -> Connection:
    """Try to connect; return whether the broker accepted us (CONNACK 0) and why not."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean_session
    )
    client.tls_set(
        ca_certs=str(ca),
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )
    conn = Connection(connected=False, reason="timeout", client=client)
    outcome = threading.Event()

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        conn.connected = not reason_code.is_failure
        conn.reason = str(reason_code)
        outcome.set()

    def on_disconnect(c: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not outcome.is_set():
            conn.reason = f"disconnected before CONNACK: {reason_code}"
            outcome.set()
        conn.connected = False

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with conn._lock:
            conn.messages.append((msg.topic, bytes(msg.payload)))

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=30)
    except (ssl.SSLError, OSError) as e:
        return Connection(connected=False, reason=f"{type(e).__name__}: {e}")
    client.loop_start()
    outcome.wait(timeout)
    if not conn.connected:
        client.loop_stop()
        conn.client = None
    return conn
