"""The local health endpoint: ``/metrics`` (Prometheus text) and ``/healthz`` (JSON).

Bound to 127.0.0.1 by default: health numbers are for the operator's scraper
on the gateway, not for the street.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from citygate.contract.wire import GatewayHealth


class _HealthCollector(Collector):
    """Exposes a fresh GatewayHealth snapshot at every scrape: one source of truth."""

    def __init__(self, snapshot: Callable[[], GatewayHealth]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        h = self.snapshot()
        yield CounterMetricFamily(
            "citygate_gateway_readings_in", "Readings committed to the outbox", value=h.readings_in
        )
        yield CounterMetricFamily(
            "citygate_gateway_readings_out", "Readings confirmed by the cloud", value=h.readings_out
        )
        rejected = CounterMetricFamily(
            "citygate_gateway_rejected", "Payloads dead-lettered, by reason", labels=["reason"]
        )
        for reason, n in sorted(h.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        dropped = CounterMetricFamily(
            "citygate_gateway_dropped", "Readings dropped by the outbox, by reason", labels=["reason"]
        )
        for reason, n in sorted(h.dropped.items()):
            dropped.add_metric([reason], n)
        yield dropped
        held = GaugeMetricFamily(
            "citygate_gateway_held",
            "Readings held because the cloud refused them for a reason the gateway does not share",
            labels=["reason"],
        )
        for reason, n in sorted(h.held.items()):
            held.add_metric([reason], n)
        yield held
        for name, doc, value in (
            ("outbox_depth", "Readings waiting in the outbox", h.outbox_depth),
            ("outbox_bytes", "Bytes of readings waiting in the outbox", h.outbox_bytes),
            ("oldest_unsent_age_seconds", "Age of the oldest unsent reading", h.oldest_unsent_age_s or 0.0),
            ("oldest_held_age_seconds", "Age of the oldest held reading", h.oldest_held_age_s or 0.0),
            (
                "last_forward_timestamp_seconds",
                "Time of the last confirmed batch",
                h.last_forward_at.timestamp() if h.last_forward_at else 0.0,
            ),
            ("disk_free_bytes", "Free disk where the outbox lives", h.disk_free_bytes),
            ("rss_bytes", "Resident memory of the agent", h.rss_bytes),
            ("cpu_percent", "CPU use of the agent since the last scrape", h.cpu_percent),
            ("broker_connected", "1 when connected to the local broker", int(h.broker_connected)),
            ("cert_days_left", "Days until the gateway certificate expires", h.cert_days_left),
            ("uptime_seconds", "Seconds since the agent started", h.uptime_s),
        ):
            yield GaugeMetricFamily(f"citygate_gateway_{name}", doc, value=value)


class LocalHttp:
    def __init__(
        self, host: str, port: int, snapshot: Callable[[], GatewayHealth], healthy: Callable[[], bool]
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_HealthCollector(snapshot))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, ctype, code = generate_latest(registry), "text/plain; version=0.0.4", 200
                elif self.path == "/healthz":
                    h = snapshot()
                    ok = healthy()
                    body = h.model_dump_json().encode()
                    body = body[:-1] + (b',"healthy":true}' if ok else b',"healthy":false}')
                    ctype, code = "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes are not news

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="citygate-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
