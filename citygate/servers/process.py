"""A child process with a log file, readiness wait and hard/soft stop; the servers' HTTP client."""

from __future__ import annotations

import functools
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from citygate.errors import ServerStartError

# Ports this process has handed out: never the same one twice, even once it is free again
# (a server stopped for a restart comes back on its port; nobody else may take it meanwhile).
_handed_out: set[int] = set()
_LOWEST_PORT = 15_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, for a server this process is about to start.

    Chosen below the kernel's ephemeral range: a port the OS picks (bind to 0) comes from
    that range, which every outgoing connection on the machine also draws its source port
    from, so between this call and the server's bind any client could take it ("Address
    already in use"; a CI run lost a Mosquitto start that way). Random, so that two
    processes doing this seldom meet, and never one handed out before by this process.
    """
    low, _ = _ephemeral_range()
    if low - _LOWEST_PORT >= 1_000:
        for _ in range(200):
            port = random.randrange(_LOWEST_PORT, low)  # noqa: S311 (not a secret)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    while True:  # a machine with almost no room below its ephemeral range: the OS picks
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@functools.cache
def loopback_http() -> httpx.Client:
    """The HTTP client of the local servers' readiness probes and small clients, one for all.

    One, because building a client costs tens of milliseconds (its TLS context) and a
    request to a loopback server well under one; an ``httpx.Client`` may be shared between
    threads. Without keep-alive: each request opens its own connection and closes it, so a
    server that was killed or restarted on its port leaves no stale connection behind.
    Each call passes its own timeout.
    """
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))


class ManagedProcess:
    """One server process: started in its own session, output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        server_log: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        # Where the server writes its own log, if not to stdout (Mosquitto's log_dest file):
        # a start that fails says why there, and the error quotes it.
        self.server_log = server_log
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        if self.running:
            raise ServerStartError(f"{self.name} is already running")
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.05)
        self.kill()
        raise ServerStartError(f"{self.name} not ready after {timeout:.0f}s; log:\n{self.log_tail()}")

    def signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: the crash, not the shutdown."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def log_tail(self, lines: int = 30) -> str:
        tails = []
        for path in (self.log_path, self.server_log):
            if path is None:
                continue
            try:
                text = path.read_text(errors="replace")
            except OSError:
                text = "(no log)"
            tails.append(f"--- {path}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(tails)
