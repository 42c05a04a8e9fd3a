"""A local VictoriaMetrics (Debian ``victoria-metrics``): accepts InfluxDB's v2 write API."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import orjson

from citygate.errors import ServerStartError
from citygate.servers.process import ManagedProcess, free_port, loopback_http


def vm_binary() -> str:
    found = shutil.which("victoria-metrics")
    if not found:
        raise ServerStartError("victoria-metrics is not installed (Debian: apt-get install victoria-metrics)")
    return found


class LocalVictoriaMetrics:
    """Single-node VictoriaMetrics on a free loopback port.

    Started with ``-dedup.minScrapeInterval=1ms`` so that a replayed sample of
    the same series and timestamp is kept once (idempotent retries), and with
    no query latency offset so that tests see what was just written.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.process = ManagedProcess(
            "victoria-metrics",
            [
                vm_binary(),
                f"-storageDataPath={workdir / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self.http_port}",
                "-dedup.minScrapeInterval=1ms",
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-retentionPeriod=100y",
                "-loggerLevel=WARN",
            ],
            log_path=workdir / "victoria-metrics.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def healthy(self) -> bool:
        """Ready: ``/health`` answers 200 (False while the port refuses connections)."""
        try:
            return loopback_http().get(f"{self.url}/health", timeout=1).status_code == 200
        except (httpx.TransportError, OSError):
            return False

    def start(self) -> None:
        self.process.start(self.healthy, timeout=30)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def flush(self) -> None:
        """Make just-written samples searchable now."""
        loopback_http().get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()

    def export(self, match: str, *, min_series: int = 0, timeout: float = 10.0) -> list[dict[str, object]]:
        """Raw samples of the series matching ``match`` (JSON lines from /api/v1/export).

        Fresh samples become searchable a moment after a flush: with
        ``min_series`` the call polls until that many series are visible.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            r = loopback_http().get(f"{self.url}/api/v1/export", params={"match[]": match}, timeout=30)
            r.raise_for_status()
            rows = [orjson.loads(line) for line in r.content.splitlines() if line.strip()]
            if len(rows) >= min_series or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)
