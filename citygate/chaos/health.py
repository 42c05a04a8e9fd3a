"""Figures read from the gateway agent's ``/healthz`` during a scenario."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the harness reads held readings with tally(): no import cycle at run time
    from citygate.chaos.harness import ChaosContext

# What a heartbeat carries: the agent's own figures, under the same names as in its health.
_HEARTBEAT_KEYS = (
    "agent_version",
    "uptime_s",
    "readings_in",
    "readings_out",
    "rejected",
    "dropped",
    "outbox_depth",
    "outbox_bytes",
    "disk_free_bytes",
    "rss_bytes",
    "cpu_percent",
    "broker_connected",
    "cert_days_left",
)


def tally(h: Mapping[str, object], key: str) -> dict[str, int]:
    """A per-reason counter of the health (``rejected``, ``dropped``, ``held``), empty when absent."""
    counts = h.get(key)
    if not isinstance(counts, Mapping):
        return {}
    return {str(k): int(v) for k, v in counts.items()}


def readings_out(ctx: ChaosContext) -> int:
    """Readings the agent has delivered to the cloud so far."""
    return int(ctx.health().get("readings_out") or 0)


def rejected_total(ctx: ChaosContext) -> int:
    """Payloads the agent has rejected so far, for any reason."""
    return sum(tally(ctx.health(), "rejected").values())


def heartbeat_body(ctx: ChaosContext) -> dict[str, object]:
    """A well-formed heartbeat (the agent's own numbers)."""
    h = ctx.health()
    body = {k: h.get(k) for k in _HEARTBEAT_KEYS}
    body["rejected"] = body["rejected"] or {}
    body["dropped"] = body["dropped"] or {}
    return body
