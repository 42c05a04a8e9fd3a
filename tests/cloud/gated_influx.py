"""An HTTP pass-through in front of the real InfluxDB that holds every ``/query`` until released.

Tests use it to have reads in flight for as long as they need, and wait for
events (``arrived`` counting up, with tests.waiting.wait_until) instead of sleeping.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class GatedInflux:
    def __init__(self, target_url: str) -> None:
        self.target = target_url.rstrip("/")
        self.arrived = 0  # queries that reached the gate, in all
        self._lock = threading.Lock()
        self._open = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/query"):
                    with gate._lock:
                        gate.arrived += 1
                    gate._open.wait(60)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")
                }
                resp = httpx.request(
                    method, gate.target + self.path, content=body, headers=headers, timeout=30
                )
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() in ("content-type",):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def do_HEAD(self) -> None:
                self._forward("HEAD")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="gated-influx", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> GatedInflux:
        self._thread.start()
        return self

    def release(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()
