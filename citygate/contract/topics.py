"""MQTT topics: the stable contract between devices and the gateway."""

from __future__ import annotations

TELEMETRY_FILTER = "devices/+/telemetry"


def telemetry_topic(device_id: str) -> str:
    return f"devices/{device_id}/telemetry"


def ack_topic(device_id: str) -> str:
    return f"devices/{device_id}/ack"


def status_topic(device_id: str) -> str:
    return f"devices/{device_id}/status"


def device_from_telemetry_topic(topic: str) -> str | None:
    """The device id of ``devices/{id}/telemetry``, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "devices" and parts[2] == "telemetry" and parts[1]:
        return parts[1]
    return None
