"""Gateway fixtures: a fresh broker, a fake cloud and the agent as a real subprocess per test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from citygate.certs.pki import CaName, CertKind
from citygate.config import toml_section
from citygate.contract.inventory import DeviceRecord
from citygate.contract.topics import ack_topic, telemetry_topic
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.process import free_port
from citygate.servers.tcp_proxy import TcpProxy
from citygate.testing.fake_cloud import FakeCloud
from tests.conftest import GATEWAY_ID, PkiBundle
from tests.mqtt_helpers import Connection, connect
from tests.waiting import wait_until

GW_DEVICES = tuple(f"gwt-{i:02d}" for i in range(8))


@pytest.fixture(scope="session")
def gw_pki(test_pki: PkiBundle) -> PkiBundle:
    # Idempotent: other test folders re-export this fixture (one definition per folder).
    have = {c.name for c in test_pki.pki.certificates() if c.kind is CertKind.DEVICE}
    missing = [d for d in GW_DEVICES if d not in have]
    if missing:
        test_pki.pki.issue_devices(
            [
                DeviceRecord(
                    device_id=d,
                    profile="water_level",
                    profile_version=1,
                    site="river",
                    district="north",
                    gateways=(GATEWAY_ID,),
                )
                for d in missing
            ]
        )
    return test_pki


def reading(seq: int, level: float = 1.5, ts_ms: int | None = None) -> bytes:
    ts = ts_ms if ts_ms is not None else int(time.time() * 1000) + seq  # distinct per seq
    return orjson.dumps({"ts": ts, "seq": seq, "readings": {"level": level}})


@dataclass
class AgentProcess:
    """``citygate gateway run`` in a subprocess: kill -9 is a real kill -9."""

    config_path: Path
    http_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _http: httpx.Client | None = field(default=None, repr=False)

    def start(self, wait_connected: bool = True) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citygate", "gateway", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        proc = self.proc

        def ready() -> bool:
            assert proc.poll() is None, f"agent exited:\n{self.log_tail()}"
            h = self.health()
            return h is not None and bool(h["broker_connected"] or not wait_connected)

        what = "the agent connected to its broker" if wait_connected else "the agent's /healthz answering"
        wait_until(ready, timeout=30, interval=0.1, message=lambda: f"{what}:\n{self.log_tail()}")

    def health(self) -> dict[str, Any] | None:
        """The agent's /healthz document (also when it answers 503, unhealthy); None if it does not answer."""
        if self._http is None:
            self._http = httpx.Client(timeout=2, trust_env=False)
        try:
            r = self._http.get(f"http://127.0.0.1:{self.http_port}/healthz")
        except httpx.TransportError:
            return None
        doc: dict[str, Any] = orjson.loads(r.content)
        return doc

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._http is not None:
            self._http.close()
            self._http = None

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait_for(
        self, pred: Callable[[dict[str, Any]], object], timeout: float = 60, what: str = "condition"
    ) -> dict[str, Any]:
        """The agent's first health that satisfies ``pred`` (tests.waiting.wait_until on /healthz).

        A failure shows the last health and the agent's log.
        """
        last: list[dict[str, Any] | None] = [None]

        def satisfied() -> dict[str, Any] | None:
            h = last[0] = self.health()
            return h if h is not None and pred(h) else None

        return wait_until(
            satisfied,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"{what}; last health {last[0]}\n{self.log_tail()}",
        )


@dataclass
class GatewayRig:
    pki: PkiBundle
    broker: LocalMosquitto
    cloud: FakeCloud
    agent: AgentProcess
    workdir: Path
    proxy: TcpProxy | None = None
    devices: dict[str, Connection] = field(default_factory=dict)

    def device(self, device_id: str) -> Connection:
        if device_id not in self.devices or self.devices[device_id].client is None:
            files = self.pki.pki.files(CertKind.DEVICE, device_id)
            conn = connect(
                self.broker.device_port,
                ca=self.pki.infra_ca,
                cert=files.cert,
                key=files.key,
                client_id=device_id,
            )
            assert conn.connected, conn.reason
            conn.subscribe(ack_topic(device_id))
            self.devices[device_id] = conn
        return self.devices[device_id]

    def publish(self, device_id: str, payload: bytes) -> None:
        self.device(device_id).publish(telemetry_topic(device_id), payload)

    def close_devices(self) -> None:
        for c in self.devices.values():
            c.close()
        self.devices.clear()


def write_agent_config(
    path: Path,
    *,
    pki: PkiBundle,
    broker: LocalMosquitto,
    cloud_url: str,
    state_dir: Path,
    http_port: int,
    **extra: object,
) -> None:
    gw = pki.pki.files(CertKind.GATEWAY, GATEWAY_ID)
    values: dict[str, object] = {
        "cert_file": str(gw.cert),
        "key_file": str(gw.key),
        "ca_file": str(pki.pki.ca_cert_path(CaName.INFRA)),
        "broker_host": "127.0.0.1",
        "broker_port": broker.gateway_port,
        "inventory": str(pki.pki.inventory_path),
        "state_dir": str(state_dir),
        "cloud_url": cloud_url,
        "http_port": http_port,
        "heartbeat_interval_s": 1.0,
        "batch_max_delay_s": 0.1,
        "backoff_initial_s": 0.1,
        "backoff_max_s": 1.0,
        "outbox_min_free_disk_bytes": 0,
    } | extra
    path.write_text(toml_section("gateway", values))


@pytest.fixture
def rig_factory(gw_pki: PkiBundle, tmp_path: Path) -> Iterator[Callable[..., GatewayRig]]:
    made: list[GatewayRig] = []
    cleanups: list[
        Callable[[], object]
    ] = []  # registered as each part starts, so a failing setup leaks nothing

    def make(*, via_proxy: bool = False, **agent_options: object) -> GatewayRig:
        work = tmp_path / f"rig-{uuid.uuid4().hex[:6]}"
        work.mkdir()
        broker = LocalMosquitto(work / "mosquitto", gw_pki.pki)
        broker.start()
        cleanups.append(broker.stop)
        server = gw_pki.pki.files(CertKind.SERVER, "localhost")
        cloud = FakeCloud(cert=server.cert, key=server.key, client_ca=gw_pki.infra_ca)
        cloud.start()
        cleanups.append(cloud.stop)
        cloud_url = cloud.url
        proxy = None
        if via_proxy:  # the gateway's link to the cloud goes through a link cutter
            proxy = TcpProxy("127.0.0.1", cloud.port)
            proxy.start()
            cleanups.append(proxy.stop)
            cloud_url = f"https://localhost:{proxy.port}"
        http_port = free_port()
        cfg = work / "gateway.toml"
        write_agent_config(
            cfg,
            pki=gw_pki,
            broker=broker,
            cloud_url=cloud_url,
            state_dir=work / "state",
            http_port=http_port,
            **agent_options,
        )
        agent = AgentProcess(config_path=cfg, http_port=http_port, log_path=work / "agent.log")
        rig = GatewayRig(pki=gw_pki, broker=broker, cloud=cloud, agent=agent, workdir=work, proxy=proxy)
        cleanups.append(agent.stop)
        cleanups.append(rig.close_devices)
        made.append(rig)
        return rig

    yield make
    for cleanup in reversed(cleanups):
        cleanup()
