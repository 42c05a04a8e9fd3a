"""A local InfluxDB 1.x server (Debian package ``influxdb``): ``/write`` and ``/query``."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import orjson

from citygate.errors import ServerStartError
from citygate.servers.process import ManagedProcess, free_port, loopback_http

_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{dir}/meta"

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
  # Commit the WAL at every write: an acknowledged write must survive a crash.
  wal-fsync-delay = "0s"

[coordinator]
  log-queries-after = "0s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  max-body-size = 67108864

[logging]
  level = "warn"

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
"""


def influxd_binary() -> str:
    found = shutil.which("influxd")
    if not found:
        raise ServerStartError("influxd is not installed (Debian: apt-get install influxdb)")
    return found


class LocalInfluxDB:
    """InfluxDB 1.x on a free loopback port, data in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.config_path = workdir / "influxdb.conf"
        self.config_path.write_text(
            _CONFIG.format(dir=workdir, rpc_port=free_port(), http_port=self.http_port)
        )
        self.process = ManagedProcess(
            "influxd",
            [influxd_binary(), "-config", str(self.config_path)],
            log_path=workdir / "influxd.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ping(self) -> bool:
        """Ready: ``/ping`` answers 204 (False while the port refuses connections)."""
        try:
            return loopback_http().get(f"{self.url}/ping", timeout=1).status_code == 204
        except (httpx.TransportError, OSError):
            return False

    def start(self) -> None:
        self.process.start(self.ping, timeout=30)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    # -- small client for tests and tools (the product's sink lives in cloud/) --

    def query(self, q: str, db: str | None = None) -> dict[str, object]:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        r = loopback_http().post(f"{self.url}/query", data=params, timeout=30)
        r.raise_for_status()
        doc: dict[str, object] = orjson.loads(r.content)
        return doc

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def write(self, db: str, line_protocol: bytes, precision: str = "ns") -> int:
        r = loopback_http().post(
            f"{self.url}/write", params={"db": db, "precision": precision}, content=line_protocol, timeout=30
        )
        r.raise_for_status()
        return r.status_code
