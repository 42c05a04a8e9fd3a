"""Fleet health: gateway heartbeats as points, and the fleet view computed from them.

Heartbeats are stored in InfluxDB (measurement ``citygate_gateway_health``,
tag ``gateway_id``), never in process memory, so any replica answers the same
fleet view. A gateway is online / stale / offline by the age of its newest
heartbeat against configurable thresholds. ``cert_days_left`` is computed
from the certificate the gateway presented (the cloud saw it), not from what
the gateway reports.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from citygate.cloud.lineprotocol import FieldValue, encode_point
from citygate.contract.inventory import Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.rfc3339 import format_rfc3339_timestamp
from citygate.contract.wire import GatewayHealth
from citygate.errors import HeartbeatError

HEALTH_MEASUREMENT = "citygate_gateway_health"
_REASON_RE = re.compile(r"[a-z0-9_]{1,40}")
MAX_REASONS = 32
_NS = 1_000_000_000


def heartbeat_line(gateway_id: str, health: GatewayHealth, cert_not_after: dt.datetime, now_ns: int) -> str:
    fields: dict[str, FieldValue | None] = {
        "agent_version": health.agent_version[:64],
        "uptime_s": float(health.uptime_s),
        "readings_in": health.readings_in,
        "readings_out": health.readings_out,
        "outbox_depth": health.outbox_depth,
        "outbox_bytes": health.outbox_bytes,
        "oldest_unsent_age_s": (
            None if health.oldest_unsent_age_s is None else float(health.oldest_unsent_age_s)
        ),
        "last_forward_ns": None if health.last_forward_at is None else _to_ns(health.last_forward_at),
        "disk_free_bytes": health.disk_free_bytes,
        "rss_bytes": health.rss_bytes,
        "cpu_percent": float(health.cpu_percent),
        "broker_connected": health.broker_connected,
        "cert_days_left_reported": float(health.cert_days_left),
        "cert_not_after_ns": _to_ns(cert_not_after),
        "oldest_held_age_s": None if health.oldest_held_age_s is None else float(health.oldest_held_age_s),
    }
    for prefix, counts in (
        ("rejected_", health.rejected),
        ("dropped_", health.dropped),
        ("held_", health.held),
    ):
        if len(counts) > MAX_REASONS:
            raise HeartbeatError(f"at most {MAX_REASONS} {prefix.rstrip('_')} reasons")
        for reason, n in counts.items():
            if _REASON_RE.fullmatch(reason) is None:
                raise HeartbeatError(f"reason {reason[:40]!r} must match [a-z0-9_]{{1,40}}")
            fields[prefix + reason] = n
    return encode_point(HEALTH_MEASUREMENT, {"gateway_id": gateway_id}, fields, now_ns)


def _to_ns(t: dt.datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000


class GatewayStatus(BaseModel):
    gateway_id: str
    status: Literal["online", "stale", "offline"]
    last_heartbeat: str | None
    heartbeat_age_s: float | None
    backlog: int | None
    outbox_bytes: int | None
    oldest_unsent_age_s: float | None
    last_forward_at: str | None
    drops: dict[str, int]
    rejected: dict[str, int]
    # Readings the cloud refused that the gateway holds and retries, by reason (e.g.
    # cloud_unknown_device); their sum; the age of the oldest one.
    held: dict[str, int]
    held_total: int
    oldest_held_age_s: float | None
    cert_days_left: float | None
    agent_version: str | None
    broker_connected: bool | None
    readings_in: int | None
    readings_out: int | None
    uptime_s: float | None
    disk_free_bytes: int | None
    rss_bytes: int | None
    cpu_percent: float | None


class GatewayList(BaseModel):
    generated_at: str
    gateways: list[GatewayStatus]


class GatewayDetail(BaseModel):
    gateway: GatewayStatus
    history: list[GatewayStatus]


class DeviceStatus(BaseModel):
    device_id: str
    profile: str
    profile_version: int
    site: str | None
    district: str | None
    last_seen: str | None
    silent_s: float | None
    expected_interval_s: int
    silent: bool


class DeviceList(BaseModel):
    generated_at: str
    devices: list[DeviceStatus]
    silent: int


def rows_of(results: Sequence[Mapping[str, Any]], tag: str) -> dict[str, list[dict[str, Any]]]:
    """InfluxQL results (epoch=ns) -> {tag value: [row dicts, newest first as queried]}."""
    out: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for series in result.get("series") or []:
            key = str((series.get("tags") or {}).get(tag, ""))
            cols = series.get("columns") or []
            for values in series.get("values") or []:
                out.setdefault(key, []).append(dict(zip(cols, values, strict=False)))
    return out


def gateway_status(
    gateway_id: str, row: Mapping[str, Any], now_ns: int, stale_s: float, offline_s: float
) -> GatewayStatus:
    t = row.get("time")
    age = (now_ns - int(t)) / _NS if isinstance(t, int) else None
    status: Literal["online", "stale", "offline"] = "offline"
    if age is not None and age <= stale_s:
        status = "online"
    elif age is not None and age <= offline_s:
        status = "stale"
    drops = {k[8:]: int(v) for k, v in row.items() if k.startswith("dropped_") and v is not None}
    rejected = {k[9:]: int(v) for k, v in row.items() if k.startswith("rejected_") and v is not None}
    held = {k[5:]: int(v) for k, v in row.items() if k.startswith("held_") and v is not None}
    not_after = row.get("cert_not_after_ns")
    last_fwd = row.get("last_forward_ns")

    def num(key: str) -> Any:
        v = row.get(key)
        return v if isinstance(v, int | float) and not isinstance(v, bool) else None

    def intnum(key: str) -> int | None:
        v = num(key)
        return None if v is None else int(v)

    return GatewayStatus(
        gateway_id=gateway_id,
        status=status,
        last_heartbeat=format_rfc3339_timestamp(t / _NS) if isinstance(t, int) else None,
        heartbeat_age_s=None if age is None else round(age, 3),
        backlog=intnum("outbox_depth"),
        outbox_bytes=intnum("outbox_bytes"),
        oldest_unsent_age_s=num("oldest_unsent_age_s"),
        last_forward_at=(
            format_rfc3339_timestamp(int(last_fwd) / _NS) if isinstance(last_fwd, int | float) else None
        ),
        drops=drops,
        rejected=rejected,
        held=held,
        held_total=sum(held.values()),
        oldest_held_age_s=num("oldest_held_age_s"),
        cert_days_left=(
            round((int(not_after) - now_ns) / _NS / 86400, 2) if isinstance(not_after, int | float) else None
        ),
        agent_version=_typed(row, "agent_version", str),
        broker_connected=_typed(row, "broker_connected", bool),
        readings_in=intnum("readings_in"),
        readings_out=intnum("readings_out"),
        uptime_s=num("uptime_s"),
        disk_free_bytes=intnum("disk_free_bytes"),
        rss_bytes=intnum("rss_bytes"),
        cpu_percent=num("cpu_percent"),
    )


def _typed(row: Mapping[str, Any], key: str, cls: type) -> Any:
    v = row.get(key)
    return v if isinstance(v, cls) else None


def device_queries(inventory: Inventory, registry: ProfileRegistry) -> list[tuple[str, str]]:
    """(measurement, a required field) per profile in use: the last point of each device."""
    seen: dict[str, str] = {}
    for record in inventory.values():
        profile = registry.find(record.profile, record.profile_version)
        if profile is None or profile.measurement in seen:
            continue
        required = profile.required_fields or list(profile.fields)
        seen[profile.measurement] = required[0]
    return sorted(seen.items())


def device_statuses(
    inventory: Inventory, registry: ProfileRegistry, last_seen: Mapping[str, int], now_ns: int, factor: float
) -> list[DeviceStatus]:
    out = []
    for device_id, record in sorted(inventory.items()):
        profile = registry.find(record.profile, record.profile_version)
        interval = profile.expected_interval_s if profile is not None else 0
        seen = last_seen.get(device_id)
        silent_s = None if seen is None else max(0.0, (now_ns - seen) / _NS)
        silent = silent_s is None or silent_s > factor * interval
        out.append(
            DeviceStatus(
                device_id=device_id,
                profile=record.profile,
                profile_version=record.profile_version,
                site=record.site,
                district=record.district,
                last_seen=None if seen is None else format_rfc3339_timestamp(seen / _NS),
                silent_s=None if silent_s is None else round(silent_s, 3),
                expected_interval_s=interval,
                silent=silent,
            )
        )
    return out


def now_iso(now_ns: int) -> str:
    return format_rfc3339_timestamp(now_ns / _NS)
