"""A well-behaved device publishing valid readings alongside an attack."""

from __future__ import annotations

import threading
import time

from citygate.chaos.devices import valid_payload
from citygate.chaos.mqtt_peer import MqttPeer
from citygate.contract.profiles import DeviceProfile
from citygate.contract.topics import telemetry_topic


class Publisher:
    """A device thread publishing valid readings at a steady rate; keeps the seqs it sent."""

    def __init__(self, peer: MqttPeer, device_id: str, profile: DeviceProfile, rate: float) -> None:
        self.peer, self.device_id, self.profile, self.rate = peer, device_id, profile, rate
        self.sent: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pub-{device_id}", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        seq = 0
        base_ms = time.time_ns() // 1_000_000
        while not self._stop.is_set():
            seq += 1
            payload = valid_payload(self.profile, seq, base_ms + seq)  # distinct device times
            if self.peer.publish(telemetry_topic(self.device_id), payload):
                self.sent.append(seq)
            self._stop.wait(1.0 / self.rate)
