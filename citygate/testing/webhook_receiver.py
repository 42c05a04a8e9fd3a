"""A loopback webhook receiver for tests: records every request, answers as told.

HTTPS with a server certificate passed in (the way citygate.testing.fake_cloud does it: a
ThreadingHTTPServer whose accepted sockets are wrapped server-side), or plain HTTP when no
certificate is given. No client certificates: webhooks authenticate by signature.

Modes, switchable at runtime with ``set_mode``:

- ``ok``: 204.
- ``error``: 500.
- ``throttle``: 429 with ``Retry-After: <retry_after>`` (seconds or an HTTP-date string).
- ``gone``: 410.
- ``slow``: waits ``slow_s`` before answering 204 (set it past the client's timeout); the
  wait ends early when the receiver stops, so teardown never hangs.
- ``redirect``: 302 to ``redirect_to``.
- ``status``: answers ``status_code`` (401, 404, 503...) with ``retry_after`` if set.
- ``flood``: ``flood_status`` (200) and a body that does not end (until the client hangs
  up), to test that the sender's read is bounded.

Every request is recorded before it is answered; ``wait_for(n)`` blocks on a Condition until
n have arrived.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = ["Mode", "RecordedRequest", "WebhookReceiver"]

Mode = Literal["ok", "error", "throttle", "gone", "slow", "redirect", "status", "flood"]
MAX_REQUEST_BYTES = 10 * 1024 * 1024
_FLOOD_CHUNK = b"x" * 65536


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased; a repeated header's values joined with ", "
    body: bytes
    arrived_at: float  # time.time()
    mode: str  # the mode that answered it


class WebhookReceiver:
    def __init__(self, *, cert: Path | None = None, key: Path | None = None, host: str = "127.0.0.1") -> None:
        if (cert is None) != (key is None):
            raise ValueError("give both cert and key (HTTPS) or neither (plain HTTP)")
        self.host = host
        self._ctx: ssl.SSLContext | None = None
        if cert is not None and key is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert), str(key))
            self._ctx = ctx
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self.mode: Mode = "ok"
        self.retry_after: str | None = "1"
        self.slow_s = 5.0
        self.redirect_to = "https://elsewhere.invalid/hook"
        self.status_code = 500
        self.flood_status = 200
        self.flood_bytes_sent = 0
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL; for HTTPS the host is "localhost" (what test server certs name)."""
        if self._ctx is None:
            return f"http://{self.host}:{self.port}"
        return f"https://localhost:{self.port}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(_Handler):
            owner = receiver

        ctx = self._ctx

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, addr = super().get_request()
                # A client that stalls (mid-handshake, or not reading a flood) cannot wedge a thread.
                sock.settimeout(10)
                if ctx is None:
                    return sock, addr
                return ctx.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients hanging up (timeouts, bounded reads) are what tests provoke

        # Port 0: the OS picks a free one at bind time, so there is no race for it.
        self._server = Server((self.host, 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases "slow" and "flood" handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- control and inspection --------------------------------------------------------------

    def set_mode(
        self,
        mode: Mode,
        *,
        retry_after: str | None = None,
        slow_s: float | None = None,
        redirect_to: str | None = None,
        status_code: int | None = None,
        flood_status: int | None = None,
    ) -> None:
        with self._cond:
            self.mode = mode
            if retry_after is not None:
                self.retry_after = retry_after
            if slow_s is not None:
                self.slow_s = slow_s
            if redirect_to is not None:
                self.redirect_to = redirect_to
            if status_code is not None:
                self.status_code = status_code
            if flood_status is not None:
                self.flood_status = flood_status

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def clear(self) -> None:
        with self._cond:
            self._requests.clear()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """The first n requests once they have arrived; TimeoutError naming how many did."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(f"webhook receiver: {len(self._requests)} of {n} requests in {timeout} s")
            return list(self._requests[:n])

    def _record(self, req: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    owner: WebhookReceiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _handle(self) -> None:
        arrived = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_REQUEST_BYTES)) if length > 0 else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            k = name.lower()
            headers[k] = f"{headers[k]}, {value}" if k in headers else value
        r = self.owner
        with r._cond:  # one consistent snapshot of the mode and its settings
            mode, retry_after, slow_s = r.mode, r.retry_after, r.slow_s
            redirect_to, status_code, flood_status = r.redirect_to, r.status_code, r.flood_status
        r._record(RecordedRequest(self.command, self.path, headers, body, arrived, mode))
        if mode == "ok":
            self._reply(204)
        elif mode == "error":
            self._reply(500, {"Content-Type": "text/plain"}, b"receiver error (test)")
        elif mode == "throttle":
            self._reply(429, {"Retry-After": retry_after or "1"})
        elif mode == "gone":
            self._reply(410, {"Content-Type": "text/plain"}, b"subscription removed")
        elif mode == "slow":
            r._stopping.wait(slow_s)
            self._reply(204)
        elif mode == "redirect":
            self._reply(302, {"Location": redirect_to})
        elif mode == "status":
            self._reply(status_code, {"Retry-After": retry_after} if retry_after else None)
        elif mode == "flood":
            self._flood(flood_status)

    def _flood(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(1 << 40))  # a terabyte: never finished
        self.end_headers()
        self.close_connection = True
        try:
            while not self.owner._stopping.is_set():
                self.wfile.write(_FLOOD_CHUNK)
                with self.owner._cond:
                    self.owner.flood_bytes_sent += len(_FLOOD_CHUNK)
        except OSError:
            pass  # the client hung up, which is the point

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()
