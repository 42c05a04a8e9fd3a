"""The local health endpoint: ``/metrics`` (Prometheus text) and ``/healthz`` (JSON).

Bound to 127.0.0.1 by default: health numbers are for the operator's scraper
on the gateway, not for the street. Still bounded: every socket has a timeout, and
at most ``max_handlers`` requests are handled at once; a connection beyond that is
answered 503 and closed at once, without a thread (before, 500 half-sent requests
held 506 threads, for good).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from citygate.contract.wire import GatewayHealth
from citygate.gateway.pipeline import CommitStats

log = structlog.get_logger("citygate.gateway.local_http")


class _HealthCollector(Collector):
    """Exposes a fresh GatewayHealth snapshot at every scrape: one source of truth."""

    def __init__(
        self, snapshot: Callable[[], GatewayHealth], commit_stats: Callable[[], CommitStats] | None
    ) -> None:
        self.snapshot = snapshot
        self.commit_stats = commit_stats

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
            (
                "broker_connected",
                "1 when connected to the local broker and subscribed to telemetry",
                int(h.broker_connected),
            ),
            ("cert_days_left", "Days until the gateway certificate expires", h.cert_days_left),
            ("uptime_seconds", "Seconds since the agent started", h.uptime_s),
        ):
            yield GaugeMetricFamily(f"citygate_gateway_{name}", doc, value=value)
        if self.commit_stats is not None:
            c = self.commit_stats()
            yield CounterMetricFamily(
                "citygate_gateway_commits", "Outbox commits that stored readings", value=c.commits
            )
            yield CounterMetricFamily(
                "citygate_gateway_commit_floor_bytes",
                "Each commit's stored payloads rounded up to whole 4 KiB pages, summed (the least a "
                "commit of that size can write; compare with the disk writes of the process)",
                value=c.floor_bytes,
            )


# Seconds a connection may take for each read or write; what does not arrive by then is dropped.
REQUEST_TIMEOUT_S = 5.0
# Requests handled at once (a scraper, `citygate gateway status`, a person with curl).
MAX_HANDLERS = 8

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Connection: close\r\nRetry-After: 1\r\n\r\nbusy\n"
)


class BoundedThreadingHTTPServer(ThreadingHTTPServer):
    """A thread per request, at most ``max_handlers`` of them; past that, 503 and close."""

    daemon_threads = True
    # Connections waiting to be accepted (socketserver's default is 5: a burst beyond it has its
    # SYNs dropped and retried a second later). Accepting is quick, a refusal too.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any, *, max_handlers: int) -> None:
        self._slots = threading.BoundedSemaphore(max_handlers)
        self._lock = threading.Lock()
        self.max_handlers = max_handlers
        self.busy = 0  # handler threads running
        self.refused = 0  # connections turned away because all were busy
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # The accepting thread: never blocks here, so a full house cannot stop it accepting
        # (and turning away) the next connection.
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self.refused += 1
            self._refuse(request)
            return
        with self._lock:
            self.busy += 1
        try:
            super().process_request(request, client_address)  # starts the handler thread
        except BaseException:
            self._release()
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self.busy -= 1
        self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        with contextlib.suppress(OSError):
            request.setblocking(False)  # what fits in the send buffer, or nothing
            request.send(_BUSY)
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called inside the except block. A client that went away is not news; anything else is
        # logged as one JSON line (the default prints a bare traceback to stderr).
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            log.warning("local http request failed", error=repr(error))


class LocalHttp:
    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Callable[[], GatewayHealth],
        healthy: Callable[[], bool],
        *,
        commit_stats: Callable[[], CommitStats] | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_handlers: int = MAX_HANDLERS,
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_HealthCollector(snapshot, commit_stats))

        class Handler(BaseHTTPRequestHandler):
            # StreamRequestHandler puts this on the socket: a request that stops half-way (or a
            # reader that stops reading) gives its thread back after this long.
            timeout = request_timeout_s

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

        self.server = BoundedThreadingHTTPServer((host, port), Handler, max_handlers=max_handlers)
        self._thread = threading.Thread(target=self.server.serve_forever, name="citygate-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
