"""Fleet statistics, the live display and the run summary.

The fleet runner only increments plain counters (cheap, single-threaded asyncio);
the display samples them twice a second and derives rates, so watching costs the
publishing path nothing. PUBACK latencies go into log-spaced histograms (5 %
wide buckets from 10 us to 100 s): percentiles over a whole run with constant
memory, plus a window histogram for the live view.
"""

from __future__ import annotations

import math
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

_LAT_MIN = 1e-5
_LAT_GROWTH = 1.05
_LAT_LOG = math.log(_LAT_GROWTH)
_LAT_BUCKETS = int(math.log(1e2 / _LAT_MIN) / _LAT_LOG) + 2


class LatencyHistogram:
    """Counts of latencies in log-spaced buckets; percentiles to within 5 %."""

    __slots__ = ("buckets", "count", "max")

    def __init__(self) -> None:
        self.buckets = [0] * _LAT_BUCKETS
        self.count = 0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        i = (
            0
            if seconds <= _LAT_MIN
            else min(_LAT_BUCKETS - 1, int(math.log(seconds / _LAT_MIN) / _LAT_LOG) + 1)
        )
        self.buckets[i] += 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def percentile(self, p: float) -> float | None:
        """The upper edge of the bucket holding the p-th percentile (seconds), None if empty."""
        if not self.count:
            return None
        rank = p / 100.0 * self.count
        seen = 0
        for i, n in enumerate(self.buckets):
            seen += n
            if seen >= rank and n:
                return min(self.max, _LAT_MIN * _LAT_GROWTH**i)
        return self.max

    def merge(self, other: LatencyHistogram) -> None:
        for i, n in enumerate(other.buckets):
            self.buckets[i] += n
        self.count += other.count
        self.max = max(self.max, other.max)

    def summary_ms(self) -> dict[str, float | None]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000.0, 3)

        return {
            "p50": ms(self.percentile(50)),
            "p90": ms(self.percentile(90)),
            "p99": ms(self.percentile(99)),
            "max": ms(self.max if self.count else None),
            "count": self.count,
        }


def rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    try:
        with open("/proc/self/statm", "rb") as f:  # noqa: PTH123 - a hot, tiny read
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass(slots=True)
class FleetStats:
    """Counters of a fleet run; incremented by the runner, read by the display."""

    devices: int = 0
    refused_devices: int = 0  # devices with a bad certificate on purpose
    connected: int = 0
    connected_peak: int = 0
    ever_connected: int = 0
    connects: int = 0
    connect_failures: int = 0
    produced: int = 0
    faulty: int = 0
    sent: int = 0
    resent: int = 0
    oneshots: int = 0
    pubacks: int = 0
    confirmed: int = 0
    acks_received: int = 0
    dropped: int = 0
    held_at_end: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    faults_planned: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    window: LatencyHistogram = field(default_factory=LatencyHistogram)
    started: float = field(default_factory=time.monotonic)
    all_connected_after_s: float | None = None
    production_s: float | None = None
    finished_s: float | None = None
    rss_peak_mb: float = 0.0
    rss_start_mb: float = field(default_factory=rss_mb)

    def on_connect(self, first: bool) -> None:
        self.connects += 1
        self.connected += 1
        if first:
            self.ever_connected += 1
        if self.connected > self.connected_peak:
            self.connected_peak = self.connected
        expected = self.devices - self.refused_devices
        if self.all_connected_after_s is None and expected and self.ever_connected >= expected:
            self.all_connected_after_s = time.monotonic() - self.started

    def on_puback(self, seconds: float) -> None:
        self.pubacks += 1
        self.latency.record(seconds)
        self.window.record(seconds)

    def sample_rss(self) -> float:
        now = rss_mb()
        self.rss_peak_mb = max(self.rss_peak_mb, now)
        return now

    def summary(self) -> dict[str, Any]:
        elapsed = (self.finished_s or (time.monotonic() - self.started)) or 1e-9
        prod_s = self.production_s or elapsed
        return {
            "devices": self.devices,
            "refused_devices": self.refused_devices,
            "connected": self.connected,
            "connected_peak": self.connected_peak,
            "ever_connected": self.ever_connected,
            "all_connected_after_s": _round(self.all_connected_after_s),
            "connects": self.connects,
            "connect_failures": self.connect_failures,
            "elapsed_s": round(elapsed, 3),
            "production_s": round(prod_s, 3),
            "produced": self.produced,
            "faulty": self.faulty,
            "sent": self.sent,
            "resent": self.resent,
            "oneshots": self.oneshots,
            "pubacks": self.pubacks,
            "confirmed": self.confirmed,
            "acks_received": self.acks_received,
            "dropped": self.dropped,
            "held_at_end": self.held_at_end,
            "readings_per_s": round(self.produced / prod_s, 1),
            "pubacks_per_s": round(self.pubacks / elapsed, 1),
            "puback_latency_ms": self.latency.summary_ms(),
            "faults": dict(sorted(self.faults.items())),
            "faults_planned": dict(sorted(self.faults_planned.items())),
            "errors": dict(sorted(self.errors.items())),
            "rss_mb": {"start": round(self.rss_start_mb, 1), "peak": round(self.rss_peak_mb, 1)},
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


class LiveView:
    """A rich live panel: connections, rates, latency percentiles, errors by kind."""

    def __init__(self, stats: FleetStats, console: Console, *, title: str = "citygate sim") -> None:
        self.stats = stats
        self.console = console
        self.title = title
        self._live: Live | None = None
        self._last = (time.monotonic(), 0, 0)
        self._rate = 0.0
        self._ack_rate = 0.0

    def __enter__(self) -> LiveView:
        self._live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(None, None, None)

    def tick(self) -> None:
        """Sample the counters (call about twice a second)."""
        now = time.monotonic()
        t0, produced0, acks0 = self._last
        dt = max(1e-6, now - t0)
        s = self.stats
        self._rate = (s.produced - produced0) / dt
        self._ack_rate = (s.pubacks - acks0) / dt
        self._last = (now, s.produced, s.pubacks)
        s.sample_rss()
        if self._live is not None:
            self._live.update(self.render())
        s.window = LatencyHistogram()

    def render(self) -> Group:
        s = self.stats
        elapsed = time.monotonic() - s.started
        t = Table(title=f"{self.title}  {elapsed:6.1f} s", show_header=False, box=None, padding=(0, 2))
        t.add_column(style="bold")
        t.add_column(justify="right")
        t.add_column(style="bold")
        t.add_column(justify="right")
        t.add_row(
            "connected",
            f"{s.connected}/{s.devices - s.refused_devices}",
            "readings/s",
            f"{self._rate:,.0f}",
        )
        t.add_row("produced", f"{s.produced:,}", "PUBACKs/s", f"{self._ack_rate:,.0f}")
        t.add_row(
            "confirmed",
            f"{s.confirmed:,}",
            "PUBACK ms p50/p99",
            f"{_ms(s.window.percentile(50))} / {_ms(s.window.percentile(99))}",
        )
        t.add_row("resent", f"{s.resent:,}", "dropped", f"{s.dropped:,}")
        t.add_row("faults", f"{sum(s.faults.values()):,}", "RSS MB", f"{s.sample_rss():,.0f}")
        parts: list[Table | Text] = [t]
        if s.errors:
            errs = ", ".join(f"{k}={v}" for k, v in sorted(s.errors.items()))
            parts.append(Text(f"errors: {errs}", style="yellow"))
        return Group(*parts)


def summary_table(summary: dict[str, Any]) -> Table:
    """The final summary as a two-column table (the JSON form is the dict itself)."""
    t = Table(title="simulation summary", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    for key, value in summary.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        else:
            shown = "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)
        t.add_row(key, shown)
    return t
