"""Slow clients that hold the cloud's connections open: TLS ones trickling header bytes, TCP ones silent."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def closed(sock: socket.socket) -> bool:
    """True if the peer closed or reset ``sock`` (non-blocking check)."""
    try:
        return sock.recv(4096) == b""
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    except OSError:  # reset, or a TLS alert
        return True


@dataclass
class Held:
    """One connection kept open: when it opened, when the server closed it, bytes trickled."""

    sock: socket.socket
    opened: float
    closed: float | None = None
    dripped: int = 0

    def close(self, now: float) -> None:
        self.closed = now
        self.sock.close()

    def reap(self, now: float) -> bool:
        """Close it if the server has: True then."""
        if not closed(self.sock):
            return False
        self.close(now)
        return True


class Slowloris:
    """Keeps ``n`` connections to the cloud open: TLS ones trickling header bytes, or raw TCP ones silent."""

    def __init__(self, port: int, n: int, *, ca: Path | None, drip_every: float, replace: bool) -> None:
        self.port, self.n, self.drip_every, self.replace = port, n, drip_every, replace
        self.tls = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
        self.held: list[Held] = []
        self.open_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def _open(self) -> None:
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock: socket.socket = raw
            if self.tls is not None:
                sock = self.tls.wrap_socket(raw, server_hostname="localhost")
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            sock.setblocking(False)
        except OSError:
            self.open_failures += 1
            return
        self.held.append(Held(sock, time.monotonic()))

    def start(self) -> Slowloris:
        for _ in range(self.n):
            self._open()
        self._thread.start()
        return self

    def open_now(self) -> list[Held]:
        return [h for h in self.held if h.closed is None]

    def _run(self) -> None:
        line = b"X-Slow: keep-me-open\r\n"
        while not self._stop.wait(self.drip_every):
            now = time.monotonic()
            for h in self.open_now():
                if h.reap(now):
                    continue
                if self.tls is not None:
                    try:
                        h.sock.send(line[h.dripped % len(line) : h.dripped % len(line) + 1])
                        h.dripped += 1
                    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        pass
                    except OSError:
                        h.close(now)
            if self.replace:
                for _ in range(self.n - len(self.open_now())):
                    self._open()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for h in self.open_now():
            h.sock.close()

    def lifetimes(self) -> tuple[list[float], int]:
        """Seconds each closed connection lived; how many are still open."""
        return [h.closed - h.opened for h in self.held if h.closed is not None], len(self.open_now())

    def any_open(self) -> bool:
        """Whether any connection is still open, closing first those the server has closed."""
        now = time.monotonic()
        for h in self.open_now():
            h.reap(now)
        return bool(self.open_now())
