"""Prometheus metrics of one replica, in its own registry (several apps can live in one process).

Each replica exports its own counters; Prometheus scrapes every replica and
sums. Labels are bounded sets (route templates, reasons, kinds), never ids.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class CloudMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
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
        self.batches = Counter(
            "citygate_cloud_batches_total", "Ingest batches by outcome", ["outcome"], registry=r
        )
        self.readings_in = Counter(
            "citygate_cloud_readings_received_total", "Readings received in ingest batches", registry=r
        )
        self.points_written = Counter(
            "citygate_cloud_points_written_total", "Points confirmed by the database", registry=r
        )
        self.rejected = Counter(
            "citygate_cloud_readings_rejected_total", "Readings rejected, by reason", ["reason"], registry=r
        )
        self.db_write_seconds = Histogram(
            "citygate_cloud_db_write_seconds",
            "Latency of one write request to the database",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.db_errors = Counter(
            "citygate_cloud_db_errors_total",
            "Database errors by kind (retryable or bad point)",
            ["kind", "retryable"],
            registry=r,
        )
        self.auth_failures = Counter(
            "citygate_cloud_auth_failures_total", "Refused callers, by reason", ["reason"], registry=r
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
    """Pure ASGI middleware: count and time every HTTP request by route template."""

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
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(status)).inc()
            self.metrics.request_seconds.labels(path).observe(time.perf_counter() - t0)
