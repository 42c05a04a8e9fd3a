"""The gateway's health numbers: one snapshot for heartbeats, /metrics, /healthz and `status`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from citygate import __version__
from citygate.certs.pki import days_left
from citygate.contract.wire import GatewayHealth
from citygate.fsutil import disk_free
from citygate.gateway import counters as c
from citygate.gateway.clock import TrustedClock
from citygate.gateway.outbox import Outbox
from citygate.gateway.settings import GatewaySettings


@dataclass
class HealthSources:
    """Where the numbers come from; callables so this module stays plain code."""

    outbox: Outbox
    settings: GatewaySettings
    broker_connected: Callable[[], bool]
    started_monotonic: float
    clock: TrustedClock | None = None


# The cloud stores at most this many reasons per kind in a heartbeat (citygate.cloud.fleet).
MAX_HELD_REASONS = 32


def _capped(held: dict[str, int]) -> dict[str, int]:
    """Held counts by reason, the rarest folded into ``cloud_other`` past the cloud's limit."""
    if len(held) <= MAX_HELD_REASONS:
        return held
    ranked = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
    out = dict(ranked[: MAX_HELD_REASONS - 1])
    out["cloud_other"] = out.get("cloud_other", 0) + sum(n for _, n in ranked[MAX_HELD_REASONS - 1 :])
    return out


class HealthCollector:
    def __init__(self, sources: HealthSources) -> None:
        self.sources = sources
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # prime: the next call measures since now

    def snapshot(self) -> GatewayHealth:
        s = self.sources
        stats = s.outbox.stats()
        counters = stats.counters
        rejected, dropped = c.split_counters(counters)
        now_ns = s.clock.now_ns() if s.clock is not None else time.time_ns()
        last_fwd = s.outbox.last_forward_ns()
        try:
            cert_days = days_left(s.settings.cert_file)
        except (OSError, ValueError):
            cert_days = -1.0
        return GatewayHealth(
            agent_version=__version__,
            uptime_s=time.monotonic() - s.started_monotonic,
            readings_in=counters.get(c.READINGS_IN, 0),
            readings_out=counters.get(c.READINGS_OUT, 0),
            rejected=rejected,
            dropped=dropped,
            outbox_depth=stats.depth,
            outbox_bytes=stats.bytes,
            held=_capped(stats.held),
            oldest_held_age_s=(
                max(0.0, (now_ns - stats.oldest_held_received_ns) / 1e9)
                if stats.oldest_held_received_ns
                else None
            ),
            oldest_unsent_age_s=(
                max(0.0, (now_ns - stats.oldest_received_ns) / 1e9) if stats.oldest_received_ns else None
            ),
            last_forward_at=dt.datetime.fromtimestamp(last_fwd / 1e9, dt.UTC) if last_fwd else None,
            disk_free_bytes=disk_free(s.settings.state_dir),
            rss_bytes=self._proc.memory_info().rss,
            cpu_percent=self._proc.cpu_percent(None),
            broker_connected=s.broker_connected(),
            cert_days_left=cert_days,
            clock_offset_s=s.clock.offset_s() if s.clock is not None else None,
        )
