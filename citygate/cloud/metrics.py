"""Prometheus metrics of one replica, in its own registry (several apps can live in one process).

Each replica exports its own counters; Prometheus scrapes every replica and
sums. No label takes its value from a client: every label value passes a
:class:`LabelSet` that maps anything outside a fixed set (HTTP methods, status
classes) or outside a bounded vocabulary (route templates, reasons, kinds: at
most ``MAX_LABEL_VALUES`` distinct values of ``[a-z0-9_]``) to ``"other"``. An
attacker who invents methods, paths or reasons adds at most one series.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

OTHER: Final = "other"
MAX_LABEL_VALUES: Final = 64
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_WORD: Final = re.compile(r"[a-z0-9_]{1,40}")
_ROUTE: Final = re.compile(r"/[A-Za-z0-9_./{}-]{0,200}")


class LabelSet:
    """Maps a label value to itself when allowed, else to ``"other"``.

    ``fixed``: exactly these values. Otherwise a value must match ``pattern`` and be
    one of the first ``limit`` distinct values seen (a bound even for a caller's bug).
    """

    def __init__(
        self,
        *,
        fixed: Iterable[str] | None = None,
        pattern: re.Pattern[str] = _WORD,
        limit: int = MAX_LABEL_VALUES,
    ) -> None:
        self._fixed = frozenset(fixed) if fixed is not None else None
        self._pattern = pattern
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        if not isinstance(value, str):
            return OTHER
        if self._fixed is not None:
            return value if value in self._fixed else OTHER
        if value in self._seen:
            return value
        if self._pattern.fullmatch(value) is None:
            return OTHER
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
        return value


def status_label(status: object) -> str:
    """An HTTP status as a label: the code if it is one (100..599), else "other"."""
    return str(status) if isinstance(status, int) and 100 <= status <= 599 else OTHER


class BoundedCounter:
    """A Counter whose ``labels()`` passes every value through its LabelSet."""

    def __init__(self, counter: Counter, *guards: LabelSet) -> None:
        self._counter = counter
        self._guards = guards

    def labels(self, *values: object) -> Counter:
        if len(values) != len(self._guards):
            raise ValueError(f"expected {len(self._guards)} label values, got {len(values)}")
        return self._counter.labels(*(g(v) for g, v in zip(self._guards, values, strict=True)))


class CloudMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.route_label = LabelSet(pattern=_ROUTE, limit=128)
        self.method_label = LabelSet(fixed=HTTP_METHODS)
        self.requests = Counter(
            "citygate_cloud_requests_total", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "citygate_cloud_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batches = BoundedCounter(
            Counter("citygate_cloud_batches_total", "Ingest batches by outcome", ["outcome"], registry=r),
            LabelSet(fixed=("ok", "partial", "refused", "unavailable")),
        )
        self.readings_in = Counter(
            "citygate_cloud_readings_received_total", "Readings received in ingest batches", registry=r
        )
        self.points_written = Counter(
            "citygate_cloud_points_written_total", "Points confirmed by the database", registry=r
        )
        self.rejected = BoundedCounter(
            Counter(
                "citygate_cloud_readings_rejected_total",
                "Readings rejected, by reason",
                ["reason"],
                registry=r,
            ),
            LabelSet(),
        )
        self.db_write_seconds = Histogram(
            "citygate_cloud_db_write_seconds",
            "Latency of one write request to the database",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.db_errors = BoundedCounter(
            Counter(
                "citygate_cloud_db_errors_total",
                "Database errors by kind (retryable or bad point)",
                ["kind", "retryable"],
                registry=r,
            ),
            LabelSet(),
            LabelSet(fixed=("true", "false")),
        )
        self.auth_failures = BoundedCounter(
            Counter(
                "citygate_cloud_auth_failures_total", "Refused callers, by reason", ["reason"], registry=r
            ),
            LabelSet(),
        )
        self.reads_refused = BoundedCounter(
            Counter(
                "citygate_cloud_reads_refused_total",
                "Series reads refused before the database was asked, by reason",
                ["reason"],
                registry=r,
            ),
            LabelSet(fixed=("too_many_in_flight",)),
        )
        self.heartbeats = Counter("citygate_cloud_heartbeats_total", "Gateway heartbeats stored", registry=r)
        self.crl_next_update = Gauge(
            "citygate_cloud_crl_next_update_timestamp_seconds",
            "nextUpdate of the client CA's CRL (alert well before it passes)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Pure ASGI middleware: count and time every HTTP request by route template.

    The route is the matched route's template (never the request's path) or
    ``unmatched``; the method one of :data:`HTTP_METHODS` or ``other``.
    """

    def __init__(self, app: Any, metrics: CloudMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m = self.metrics
            route = scope.get("route")
            template = getattr(route, "path", None)
            path = m.route_label(template) if template else "unmatched"
            m.requests.labels(path, m.method_label(scope.get("method")), status_label(status)).inc()
            m.request_seconds.labels(path).observe(time.perf_counter() - t0)
