"""A minimal real HTTPS server standing in for the cloud in gateway tests and benchmarks.

Real TLS with client-certificate verification (infrastructure CA), the real
wire contract (gzip JSON batches, IngestResult answers), and switches for
outages (503 + Retry-After, or refusing connections) and per-reading
rejections. It records every reading it acknowledged, keyed by (device, ts),
so tests can count exactly-once delivery, duplicates and order. Used by
tests/gateway/conftest.py and by bench/bench_gateway_backlog.py (shipped in the wheel).
"""

from __future__ import annotations

import email.utils
import gzip
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from citygate.servers.process import free_port


class FakeCloud:
    def __init__(self, *, cert: Path, key: Path, client_ca: Path) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.received: Counter[tuple[str, object]] = Counter()
        self.order: list[tuple[str, int | None]] = []  # (device, seq) in arrival order
        self.batches = 0
        self.unavailable = 0  # batches answered 503 (mode "503"): each is an attempt the gateway made
        self.heartbeats: list[dict[str, Any]] = []
        self.mode = "ok"  # "ok" | "503" | "down"
        self.reject_field: str | None = None  # readings with this field are rejected per reading
        self.reject_devices: set[str] = set()  # readings of these devices: unknown_device
        self.contract_version = "v1"  # in every answer, as the real cloud's inventory digest
        self.peer_ids: set[str | None] = set()
        self.date_offset_s = 0.0  # the cloud's clock against this machine's, in its Date header
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.load_verify_locations(str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self._ctx = ctx
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def start(self) -> None:
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                return email.utils.formatdate(time.time() + cloud.date_offset_s, usegmt=True)

            def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                cert = self.connection.getpeercert()
                cn = dict(x[0] for x in cert["subject"])["commonName"] if cert else None
                if cloud.mode == "503":
                    if not self.path.endswith("/heartbeat"):
                        with cloud.lock:
                            cloud.unavailable += 1
                    return self._reply(503, b'{"detail":"database unavailable"}', {"Retry-After": "1"})
                if self.path.endswith("/heartbeat"):
                    with cloud.lock:
                        cloud.heartbeats.append(orjson.loads(raw) | {"_cn": cn})
                    answer = {"gateway_id": cn, "stored": True, "contract_version": cloud.contract_version}
                    return self._reply(200, orjson.dumps(answer), {"Content-Type": "application/json"})
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                doc = orjson.loads(raw)
                rejected = []
                with cloud.lock:
                    cloud.peer_ids.add(cn)
                    for i, r in enumerate(doc["readings"]):
                        if r["device_id"] in cloud.reject_devices:
                            rejected.append(
                                {
                                    "index": i,
                                    "device_id": r["device_id"],
                                    "reason": "unknown_device",
                                    "detail": "test rejection",
                                }
                            )
                            continue
                        if cloud.reject_field and cloud.reject_field in r["readings"]:
                            rejected.append(
                                {
                                    "index": i,
                                    "device_id": r["device_id"],
                                    "reason": "out_of_range",
                                    "detail": "test rejection",
                                }
                            )
                            continue
                        cloud.received[(r["device_id"], r["ts"])] += 1
                        cloud.order.append((r["device_id"], r["seq"]))
                    cloud.batches += 1
                accepted = len(doc["readings"]) - len(rejected)
                body = orjson.dumps(
                    {
                        "batch_id": doc["batch_id"],
                        "gateway_id": cn or "?",
                        "accepted": accepted,
                        "rejected": rejected,
                        "contract_version": cloud.contract_version,
                    }
                )
                self._reply(200, body, {"Content-Type": "application/json"})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, addr = super().get_request()
                if cloud.mode == "down":
                    sock.close()
                    raise OSError("fake cloud is down")
                return cloud._ctx.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # TLS refusals and cut connections are expected in tests

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.received.values() if n > 1)
