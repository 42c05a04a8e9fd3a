"""The whole system on one machine: PKI, InfluxDB, the cloud, gateways with their brokers, fleets.

Everything is started for real, as separate processes, on free loopback
ports, under one directory. Each gateway's link to the cloud goes through a
:class:`~citygate.servers.tcp_proxy.TcpProxy`, so an outage is a real cut
link, not a flag.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from citygate.certs.pki import CaName, CertKind, Pki
from citygate.certs.settings import PkiSettings
from citygate.config import toml_section
from citygate.demo.public import DemoPublic
from citygate.demo.service import DemoService
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.process import ManagedProcess, free_port, loopback_http, port_open
from citygate.servers.tcp_proxy import TcpProxy

DISTRICTS = ("centre", "north", "harbour", "east", "west", "south")


def _json(url: str, token: str | None = None, timeout: float = 3.0) -> dict[str, object] | None:
    """The JSON body at a loopback ``url``, whatever the status (/healthz answers 503 with its
    document); None when nothing answers or the body is not JSON."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        r = loopback_http().get(url, headers=headers, timeout=timeout)
        doc: dict[str, object] = orjson.loads(r.content)
        return doc
    except (httpx.TransportError, OSError, orjson.JSONDecodeError):
        return None


@dataclass
class GatewayNode:
    name: str
    district: str
    broker: LocalMosquitto
    proxy: TcpProxy
    agent: ManagedProcess
    http_port: int
    config_path: Path

    def health(self) -> dict[str, object] | None:
        return _json(f"http://127.0.0.1:{self.http_port}/healthz")


@dataclass(frozen=True, slots=True)
class SimRun:
    """What one ``citygate sim run`` is asked for; the stack adds the gateway, the PKI and the ledger."""

    devices: int
    duration_s: float  # an upper bound: callers stop the devices with SIGINT
    rate: float | None = None  # total readings/s over the fleet (load), or
    interval_s: float | None = None  # seconds between one device's readings
    client: str | None = "lite"  # None: the simulator's default (aiomqtt)
    prefix: str | None = None  # device ids PREFIX-00001, ... (the simulator's default: sim)
    seed: int | None = None
    extra: tuple[str, ...] = ()

    def argv(self, node: GatewayNode, pki_dir: Path, ledger: Path) -> list[str]:
        """The command line, with a ledger and a JSON summary on stdout, no live display."""
        argv = [
            sys.executable,
            "-m",
            "citygate",
            "sim",
            "run",
            "--devices",
            str(self.devices),
            "--gateway-broker",
            f"127.0.0.1:{node.broker.device_port}",
            "--gateway",
            node.name,
            "--pki-dir",
            str(pki_dir),
        ]
        if self.rate is not None:
            argv += ["--rate", str(self.rate)]
        if self.interval_s is not None:
            argv += ["--interval", str(self.interval_s)]
        argv += ["--duration", str(self.duration_s)]
        if self.client is not None:
            argv += ["--client", self.client]
        if self.prefix is not None:
            argv += ["--prefix", self.prefix]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        return [*argv, "--no-progress", "--json", "--ledger", str(ledger), *self.extra]


@dataclass
class FleetProcess:
    """One ``citygate sim run`` process (:meth:`DemoStack.start_fleet`): its devices write ``ledger``."""

    name: str
    node: GatewayNode
    ledger: Path
    log: Path
    proc: subprocess.Popen[bytes]
    stats_file: Path | None = None

    def stats(self) -> dict[str, Any]:
        """The simulator's live summary (rewritten every second), empty before the first or without one."""
        if self.stats_file is None:
            return {}
        try:
            doc: dict[str, Any] = orjson.loads(self.stats_file.read_bytes())
            return doc
        except (OSError, orjson.JSONDecodeError):
            return {}

    def exit_note(self) -> str | None:
        """None while it runs; else its exit code and the end of its log."""
        if self.proc.poll() is None:
            return None
        return f"the simulator exited ({self.proc.returncode}): {log_tail(self.log)}"

    def kill(self) -> None:
        """SIGKILL if it still runs (cleanup after a failure), and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def stop_fleets(fleets: Sequence[FleetProcess], timeout: float) -> list[FleetProcess]:
    """SIGINT to all at once (the devices stop producing and wait for the confirmations of what they
    hold), then wait for each; the ones that had to be killed after ``timeout``."""
    for f in fleets:
        if f.proc.poll() is None:
            f.proc.send_signal(signal.SIGINT)
    killed = []
    for f in fleets:
        try:
            f.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            f.proc.kill()
            killed.append(f)
    return killed


def log_tail(log: Path, lines: int = 3) -> str:
    """The last lines of a process's log, on one line (for an error message)."""
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


@dataclass
class DemoOptions:
    directory: Path
    gateways: int = 2
    devices: int = 300
    interval_s: float = 5.0
    seed: int = 1
    # Chaos runs and benchmarks: settings merged into every gateway's [gateway] table, and
    # extra environment for the agent processes (e.g. libfaketime for a jumping clock).
    gateway_settings: dict[str, object] = field(default_factory=dict)
    agent_env: dict[str, str] = field(default_factory=dict)
    # Chaos runs: settings merged into the cloud's [cloud] table, and an inventory file of the
    # cloud's own (a copy of the PKI's when it starts, if missing; the gateways keep reading the
    # PKI's), so that the cloud can learn of devices later than the gateways do.
    cloud_settings: dict[str, object] = field(default_factory=dict)
    cloud_inventory: Path | None = None
    # The service layer (rules, cases, events to a local receiver): the demo's, not chaos runs'.
    service: bool = False
    service_store_url: str | None = None  # default: a SQLite file in the directory
    service_rules_dir: Path | None = None
    service_subscriptions: list[dict[str, object]] = field(default_factory=list)
    # The public surfaces (Open311, the progress page, SensorThings, NGSI-LD); needs `service`.
    public: bool = False


@dataclass
class DemoStack:
    opts: DemoOptions
    pki: Pki | None = None
    influx: LocalInfluxDB | None = None
    cloud: ManagedProcess | None = None
    cloud_port: int = 0  # readers, operators, the dashboard, probes
    gateway_port: int = 0  # the gateways' own listener (mTLS required, its own connection budget)
    operator_token: str = ""
    nodes: list[GatewayNode] = field(default_factory=list)
    started: list[object] = field(default_factory=list)
    service: DemoService | None = None
    public: DemoPublic | None = None

    @property
    def dir(self) -> Path:
        return self.opts.directory

    @property
    def cloud_url(self) -> str:
        return f"https://localhost:{self.cloud_port}"

    @property
    def gateway_url(self) -> str:
        """Where gateways post batches and heartbeats."""
        return f"https://localhost:{self.gateway_port}"

    @property
    def cloud_inventory_path(self) -> Path:
        """The inventory file the cloud reads (the PKI's unless ``cloud_inventory`` is set)."""
        assert self.pki is not None
        return self.opts.cloud_inventory or self.pki.inventory_path

    # -- start ------------------------------------------------------------------

    def start_infrastructure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = Pki.init(PkiSettings(dir=self.dir / "pki"))
        self.pki.issue_server("localhost", ips=["127.0.0.1"])
        self.influx = LocalInfluxDB(self.dir / "influxdb")
        self.influx.start()
        self.started.append(self.influx)
        self.influx.create_database("citygate")
        self._start_cloud()
        for i in range(self.opts.gateways):
            self._start_gateway(i)

    def _start_cloud(self) -> None:
        assert self.pki is not None and self.influx is not None
        server = self.pki.files(CertKind.SERVER, "localhost")
        self.cloud_port = free_port()
        self.gateway_port = free_port()
        self.operator_token = secrets.token_urlsafe(32)
        token_file = self.dir / "operator-token"
        token_file.write_text(self.operator_token + "\n")
        token_file.chmod(0o600)
        own = self.opts.cloud_inventory
        if own is not None and not own.exists():
            own.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.pki.inventory_path, own)
        extra: dict[str, object] = {}
        if self.opts.service:
            self.service = DemoService(
                self.dir,
                store_url_override=self.opts.service_store_url,
                rules_dir=self.opts.service_rules_dir,
                extra_subscriptions=list(self.opts.service_subscriptions),
            )
            self.service.start()
            self.started.append(self.service)
            extra["service"] = self.service.settings()
            if self.opts.public:
                self.public = DemoPublic()
                extra |= self.public.settings()
        cfg = self.dir / "cloud.toml"
        cfg.write_text(
            toml_section(
                "cloud",
                {
                    "host": "127.0.0.1",
                    "port": self.cloud_port,
                    "gateway_port": self.gateway_port,
                    "tls_cert": str(server.cert),
                    "tls_key": str(server.key),
                    "client_ca": str(self.pki.ca_cert_path(CaName.INFRA)),
                    "client_crl": str(self.pki.crl_path(CaName.INFRA)),
                    # Browsers have no client certificate: the dashboard signs in with a token.
                    "client_cert_mode": "optional",
                    "inventory": str(self.cloud_inventory_path),
                    "influx_api": "v1",
                    "influx_url": self.influx.url,
                    "influx_db": "citygate",
                    "heartbeat_stale_s": 15.0,
                    "heartbeat_offline_s": 45.0,
                    "operator_tokens": {"demo": self.operator_token},
                }
                | extra
                | self.opts.cloud_settings,
            )
        )
        cfg.chmod(0o600)
        self.cloud = ManagedProcess(
            "cloud",
            [sys.executable, "-m", "citygate", "cloud", "run", "--config", str(cfg)],
            log_path=self.dir / "cloud.log",
        )
        self.cloud.start(self.cloud_listening, timeout=60)
        self.started.append(self.cloud)

    def cloud_listening(self) -> bool:
        """Both of the cloud's listeners accept connections."""
        return port_open("127.0.0.1", self.cloud_port) and port_open("127.0.0.1", self.gateway_port)

    def _start_gateway(self, i: int) -> None:
        assert self.pki is not None
        district = DISTRICTS[i % len(DISTRICTS)]
        name = f"{district}-gw{i + 1}"
        files = self.pki.issue_gateway(name)
        work = self.dir / "gateways" / name
        broker = LocalMosquitto(work / "mosquitto", self.pki)
        broker.start()
        self.started.append(broker)
        proxy = TcpProxy("127.0.0.1", self.gateway_port)
        proxy.start()
        self.started.append(proxy)
        http_port = free_port()
        cfg = work / "gateway.toml"
        cfg.write_text(
            toml_section(
                "gateway",
                {
                    "cert_file": str(files.cert),
                    "key_file": str(files.key),
                    "ca_file": str(self.pki.ca_cert_path(CaName.INFRA)),
                    "broker_port": broker.gateway_port,
                    "inventory": str(self.pki.inventory_path),
                    "state_dir": str(work / "state"),
                    "cloud_url": f"https://localhost:{proxy.port}",
                    "http_port": http_port,
                    "heartbeat_interval_s": 5.0,
                    "backoff_max_s": 5.0,
                    "outbox_min_free_disk_bytes": 64 * 1024 * 1024,
                }
                | self.opts.gateway_settings,
            )
        )
        agent = ManagedProcess(
            f"gateway {name}",
            [sys.executable, "-m", "citygate", "gateway", "run", "--config", str(cfg)],
            log_path=work / "agent.log",
            env=(os.environ | self.opts.agent_env) if self.opts.agent_env else None,
        )
        node = GatewayNode(name, district, broker, proxy, agent, http_port, cfg)
        agent.start(lambda: node.health() is not None, timeout=60)
        self.started.append(agent)
        self.nodes.append(node)

    # -- devices ----------------------------------------------------------------

    def sim_command(
        self,
        node: GatewayNode,
        *,
        devices: int,
        rate: float,
        duration_s: float,
        ledger: Path,
        client: str = "lite",
        extra: tuple[str, ...] | list[str] = (),
    ) -> list[str]:
        """``citygate sim run`` against ``node``'s broker at a total rate, with a ledger and a JSON
        summary on stdout; the caller stops it with SIGINT (``duration_s`` is an upper bound)."""
        run = SimRun(devices, duration_s, rate=rate, client=client, extra=tuple(extra))
        return run.argv(node, self.dir / "pki", ledger)

    def start_fleet(
        self, node: GatewayNode, run: SimRun, work: Path, *, name: str | None = None, stats: bool = False
    ) -> FleetProcess:
        """``run`` against ``node``'s broker, in the background: its ledger and log in ``work``, and
        with ``stats`` its live summary too (:meth:`FleetProcess.stats`)."""
        work.mkdir(parents=True, exist_ok=True)
        ledger, log = work / "ledger.bin", work / "sim.log"
        stats_file = work / "stats.json" if stats else None
        argv = run.argv(node, self.dir / "pki", ledger)
        if stats_file is not None:
            argv += ["--stats-file", str(stats_file)]
        with log.open("ab") as f:
            # Its own session: a Ctrl-C at the terminal is the caller's, who stops the devices in order.
            proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        return FleetProcess(name or node.name, node, ledger, log, proc, stats_file)

    # -- observe ----------------------------------------------------------------

    def fleet(self) -> dict[str, object] | None:
        """The cloud's fleet view (GET /v1/gateways) over TLS, as an operator."""
        import ssl

        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert_path(CaName.INFRA)))
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        try:
            r = httpx.get(f"{self.cloud_url}/v1/gateways", headers=headers, timeout=3, verify=ctx)
            r.raise_for_status()
            doc: dict[str, object] = orjson.loads(r.content)
            return doc
        except (httpx.HTTPError, OSError, orjson.JSONDecodeError):
            return None

    def wait_drained(self, timeout: float) -> bool:
        """Until every gateway's outbox is empty (after the fleet stopped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            healths = [n.health() for n in self.nodes]
            if all(h is not None and h.get("outbox_depth") == 0 for h in healths):
                return True
            time.sleep(0.5)
        return False

    # -- stop -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything started, newest first (agents drain on SIGTERM)."""
        for thing in reversed(self.started):
            stop = getattr(thing, "stop", None)
            if stop is not None:
                stop()
        self.started.clear()
