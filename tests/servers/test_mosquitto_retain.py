"""Why the broker template does not forbid retained telemetry: Mosquitto cannot, per listener.

``retain_available false`` is the only retain switch Mosquitto 2.0 has, and it applies to
the whole broker even when written in one listener's section: a client that publishes
with the retain bit on any listener is disconnected. Devices publish their online/offline
status retained (and as their will), so the switch would lock them out; the agent refuses
retained telemetry itself instead (tests/gateway/test_agent_retained.py). If this test
starts failing, Mosquitto has learnt a per-listener switch: put it on the device listener.
"""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citygate.servers.mosquitto import mosquitto_binary
from citygate.servers.process import ManagedProcess, free_port, port_open

pytestmark = pytest.mark.servers


def _publish_retained(port: int) -> str:
    """Publish one retained message: "kept" (PUBACK) or "disconnected"."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"retain-{port}", protocol=mqtt.MQTTv311)
    client.reconnect_delay_set(60, 60)
    connected, outcome = threading.Event(), []
    done = threading.Condition()

    def record(what: str) -> None:
        with done:
            outcome.append(what)
            done.notify_all()

    client.on_connect = lambda *a: connected.set()
    client.on_disconnect = lambda *a: record("disconnected")
    client.on_publish = lambda *a: record("kept")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(10), "no CONNACK"
        client.publish("devices/x/status", b"online", qos=1, retain=True)
        with done:
            assert done.wait_for(lambda: outcome, 10), "neither a PUBACK nor a disconnect"
        return outcome[0]
    finally:
        client.disconnect()
        client.loop_stop()


def test_retain_available_false_applies_to_every_listener(tmp_path: Path) -> None:
    refusing, other = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    lines = [
        "per_listener_settings true",
        "log_dest stderr",
        f"listener {refusing} 127.0.0.1",
        "allow_anonymous true",
        "retain_available false",
        f"listener {other} 127.0.0.1",
        "allow_anonymous true",
    ]
    conf.write_text("\n".join(lines) + "\n")
    broker = ManagedProcess("mosquitto", [mosquitto_binary(), "-c", str(conf)], log_path=tmp_path / "log")
    broker.start(lambda: port_open("127.0.0.1", refusing) and port_open("127.0.0.1", other))
    try:
        assert _publish_retained(refusing) == "disconnected"
        assert _publish_retained(other) == "disconnected", "retain_available is per listener now"
    finally:
        broker.stop()
