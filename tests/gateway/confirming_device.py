"""A device that supports end-to-end confirmation (docs/ARCHITECTURE.md, guarantee 1), for gateway tests.

It keeps every reading until the gateway confirms its seq on devices/{id}/ack
(exact ranges, citygate.contract.acks),
and resends what is unconfirmed after a timeout and after every reconnect.
(The full simulator with a bounded memory and faults is citygate.simulators.)
"""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citygate.contract.acks import decode_ack
from citygate.contract.topics import ack_topic, telemetry_topic


class ConfirmingDevice:
    def __init__(
        self,
        device_id: str,
        *,
        port: int,
        ca: Path,
        cert: Path,
        key: Path,
        confirm: bool = True,
        resend_after_s: float = 2.0,
    ) -> None:
        self.device_id = device_id
        self.confirm = confirm
        self.resend_after_s = resend_after_s
        self.unconfirmed: dict[int, tuple[bytes, float]] = {}
        self.produced: dict[int, int] = {}  # seq -> ts (ms): the ledger
        self.lock = threading.Lock()
        self.resends = 0
        self.subscribed = threading.Event()  # to its ack topic: what it publishes now is confirmed
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, clean_session=True)
        c.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key), cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(0.2, 2)  # type: ignore[arg-type]  # seconds: paho takes a float too
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c
        c.connect_async("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self._stop = threading.Event()
        threading.Thread(target=self._resender, daemon=True).start()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            return
        client.subscribe(ack_topic(self.device_id), qos=1)
        if self.confirm:
            self._resend(force=True)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        ranges = decode_ack(bytes(msg.payload)) or []
        with self.lock:
            for a, b in ranges:
                for s in [s for s in self.unconfirmed if a <= s <= b]:
                    del self.unconfirmed[s]

    def publish(self, seq: int, ts_ms: int, level: float = 1.0) -> None:
        payload = orjson.dumps({"ts": ts_ms, "seq": seq, "readings": {"level": level}})
        with self.lock:
            self.produced[seq] = ts_ms
            if self.confirm:
                self.unconfirmed[seq] = (payload, time.monotonic())
        self.client.publish(telemetry_topic(self.device_id), payload, qos=1)

    def _resend(self, force: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            due = [
                (s, p)
                for s, (p, t) in sorted(self.unconfirmed.items())
                if force or now - t > self.resend_after_s
            ]
            for s, p in due:
                self.unconfirmed[s] = (p, now)
        for _, p in due:
            self.client.publish(telemetry_topic(self.device_id), p, qos=1)
            self.resends += 1

    def _resender(self) -> None:
        while not self._stop.wait(0.5):
            if self.confirm and self.client.is_connected():
                self._resend()

    def pending(self) -> int:
        with self.lock:
            return len(self.unconfirmed)

    def close(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
