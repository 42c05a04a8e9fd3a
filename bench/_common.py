"""Helpers the benchmark scripts share (shipped beside them in the wheel, as citygate/_bench/_common.py).

A script imports this as ``_common``: its own directory is first on ``sys.path``.

- a bench PKI (server certificate, the ``gw-bench`` gateway, water-level devices);
- a gateway agent as a subprocess: its TOML config, the process, its /healthz;
- a cloud as a subprocess (``citygate cloud run``): its ``[cloud]`` settings, the process, the
  wait until it listens, its stop, an HTTPS client of it;
- fresh service stores (SQLite files, databases on one local PostgreSQL): :class:`Stores`;
- on a :class:`~citygate.demo.stack.DemoStack`: the probe device and its latency probe
  (publish -> visible in InfluxDB), the agent's counters, the simulator's stop and summary;
- numbers: the load average, a process's CPU time, percentiles, min/median/max, the ledger audit;
- a Pi-like CPU budget for a process (:func:`confine_cpu`).
"""

from __future__ import annotations

import os
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citygate.certs.pki import CaName, CertKind, Pki
from citygate.certs.settings import PkiSettings
from citygate.config import toml_section
from citygate.contract.inventory import DeviceRecord
from citygate.contract.topics import telemetry_topic
from citygate.demo.stack import DemoStack, GatewayNode
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.process import loopback_http, port_open

GATEWAY_ID = "gw-bench"
PROBE_DEVICE = "probe-0001"

# -- a bench PKI and a gateway agent of its own ------------------------------------


def bench_pki(work: Path, devices: Sequence[str] = ()) -> Pki:
    """A PKI in ``work/pki``: the localhost server certificate, the ``gw-bench`` gateway and
    ``devices`` (water_level, v1)."""
    pki = Pki.init(PkiSettings(dir=work / "pki"))
    pki.issue_server("localhost", ips=["127.0.0.1"])
    pki.issue_gateway(GATEWAY_ID)
    if devices:
        pki.issue_devices(
            [DeviceRecord(device_id=d, profile="water_level", profile_version=1) for d in devices]
        )
    return pki


def write_gateway_config(
    path: Path,
    pki: Pki,
    broker: LocalMosquitto,
    *,
    state_dir: Path,
    cloud_url: str,
    http_port: int,
    **settings: object,
) -> Path:
    """The ``[gateway]`` TOML of the ``gw-bench`` agent on ``broker``; ``settings`` add to it."""
    gw = pki.files(CertKind.GATEWAY, GATEWAY_ID)
    path.write_text(
        toml_section(
            "gateway",
            {
                "cert_file": str(gw.cert),
                "key_file": str(gw.key),
                "ca_file": str(pki.ca_cert_path(CaName.INFRA)),
                "broker_port": broker.gateway_port,
                "inventory": str(pki.inventory_path),
                "state_dir": str(state_dir),
                "cloud_url": cloud_url,
                "http_port": http_port,
                **settings,
            },
        )
    )
    return path


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``citygate gateway run`` with ``config`` (log level warning), its stderr appended to ``log``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "citygate",
            "gateway",
            "run",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        stderr=log.open("ab"),
    )


def agent_health(port: int, timeout: float = 10.0) -> dict[str, Any]:
    """The agent's /healthz on ``port`` (OSError while it does not answer or answers an error,
    503 included: not yet healthy)."""
    try:
        r = loopback_http().get(f"http://127.0.0.1:{port}/healthz", timeout=timeout)
        r.raise_for_status()
    except httpx.HTTPError as e:
        raise OSError(f"GET /healthz on port {port}: {e}") from e
    doc: dict[str, Any] = orjson.loads(r.content)
    return doc


# -- a cloud of its own ------------------------------------------------------------


def cloud_section(pki: Pki, port: int, **settings: object) -> dict[str, Any]:
    """The ``[cloud]`` settings of a cloud on 127.0.0.1:``port`` with the PKI's ``localhost``
    server certificate, its infrastructure CA and CRL, and its inventory; ``settings`` follow."""
    server = pki.files(CertKind.SERVER, "localhost")
    return {
        "host": "127.0.0.1",
        "port": port,
        "tls_cert": str(server.cert),
        "tls_key": str(server.key),
        "client_ca": str(pki.ca_cert_path(CaName.INFRA)),
        "client_crl": str(pki.crl_path(CaName.INFRA)),
        "inventory": str(pki.inventory_path),
        **settings,
    }


def start_cloud(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``citygate cloud run`` with ``config``: stdout discarded, stderr written to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "citygate", "cloud", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """Wait until 127.0.0.1:``port`` accepts a connection: False if ``proc`` exits first or
    ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_process(
    proc: subprocess.Popen[bytes], timeout: float = 30.0, *, reap_s: float | None = None
) -> None:
    """SIGTERM, then wait ``timeout`` s; SIGKILL if it still runs (and wait ``reap_s`` s for it)."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        if reap_s is not None:
            proc.wait(reap_s)


def cloud_client(
    pki: Pki,
    port: int,
    *,
    cert: bool = False,
    timeout: float = 60,
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    """An HTTPS client of the cloud on ``port`` (the PKI's infrastructure CA), with the
    ``gw-bench`` gateway's client certificate if ``cert``."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert_path(CaName.INFRA)))
    if cert:
        gw = pki.files(CertKind.GATEWAY, GATEWAY_ID)
        ctx.load_cert_chain(str(gw.cert), str(gw.key))
    return httpx.Client(
        base_url=f"https://localhost:{port}", verify=ctx, timeout=timeout, headers=headers, trust_env=False
    )


# -- service stores ----------------------------------------------------------------


class Stores:
    """Fresh service stores: SQLite files in the work directory, PostgreSQL databases on one
    local server (started on first use)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._pg: Any = None

    def new(self, kind: str, name: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{self.work / (name + '.db')}"
        if self._pg is None:
            from citygate.servers.postgres import LocalPostgres

            self._pg = LocalPostgres(self.work / "pg")
            self._pg.start()
        url: str = self._pg.create_database(f"{name}_{uuid.uuid4().hex[:6]}")
        return url

    def close(self) -> None:
        if self._pg is not None:
            self._pg.remove()


# -- on a demo stack ---------------------------------------------------------------


def issue_probe_device(stack: DemoStack, device: str = PROBE_DEVICE) -> None:
    """A water-level device on the stack's first gateway, for :func:`probe`."""
    assert stack.pki is not None
    stack.pki.issue_device(
        DeviceRecord(
            device_id=device, profile="water_level", profile_version=1, gateways=(stack.nodes[0].name,)
        )
    )


def probe(
    stack: DemoStack, seconds: float, device: str = PROBE_DEVICE, interval_s: float = 0.1
) -> list[float]:
    """Publish a reading every ``interval_s`` for ``seconds`` and time each until InfluxDB has it;
    the latencies in s, sorted."""
    assert stack.pki is not None and stack.influx is not None
    influx = stack.influx
    node = stack.nodes[0]
    f = stack.pki.files(CertKind.DEVICE, device)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
    c.tls_set(
        ca_certs=str(stack.pki.ca_cert_path(CaName.INFRA)),
        certfile=str(f.cert),
        keyfile=str(f.key),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    c.connect("127.0.0.1", node.broker.device_port)
    c.loop_start()
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() or len(seen) < len(sent):
            pending = [ts for ts in list(sent) if ts not in seen]
            if pending:
                lo = min(pending)
                q = (
                    f'SELECT "seq" FROM "water_level" WHERE "device_id" = \'{device}\' '
                    f"AND time >= {lo * 1_000_000}"
                )
                doc = influx.query(q, db="citygate")
                now = time.monotonic()
                for s in doc["results"][0].get("series") or []:
                    for row in s["values"]:
                        ts_ms = row[0] // 1_000_000
                        if ts_ms in sent and ts_ms not in seen:
                            seen[ts_ms] = now
            if done.is_set() and time.monotonic() > deadline_watch:
                return
            time.sleep(0.02)

    deadline_watch = time.monotonic() + seconds + 30
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    t_end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < t_end:
        ts = int(time.time() * 1000)
        if ts in sent:
            time.sleep(0.001)
            continue
        payload = orjson.dumps({"ts": ts, "seq": seq, "readings": {"level": 1.0}})
        sent[ts] = time.monotonic()
        c.publish(telemetry_topic(device), payload, qos=1)
        seq += 1
        time.sleep(interval_s)
    done.set()
    w.join()
    c.disconnect()
    c.loop_stop()
    return sorted(seen[ts] - sent[ts] for ts in seen)


def agent_counters(node: GatewayNode) -> tuple[int, int, int]:
    """(readings_in, readings_out, outbox_depth) from the agent's /healthz; retried."""
    for _ in range(20):
        h = node.health()
        if h is not None and "outbox_depth" in h:
            return int(h["readings_in"]), int(h["readings_out"]), int(h["outbox_depth"])  # type: ignore[call-overload]
        time.sleep(0.25)
    raise RuntimeError(f"agent /healthz not answering; log {node.agent.log_path}")


def stop_sim(sim: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGINT if it still runs (the devices wait for their confirmations), then wait; SIGKILL
    after ``timeout``."""
    if sim.poll() is None:
        sim.send_signal(signal.SIGINT)
    try:
        sim.wait(timeout)
    except subprocess.TimeoutExpired:
        sim.kill()


def read_sim_summary(path: Path) -> dict[str, Any]:
    """The simulator's JSON summary (``--json``) from its stdout file: from the first ``{`` on."""
    raw = path.read_bytes()
    doc: dict[str, Any] = orjson.loads(raw[raw.find(b"{") :])
    return doc


# -- numbers -----------------------------------------------------------------------


def load() -> str:
    """The load averages over 1, 5 and 15 minutes, as /proc/loadavg has them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in s."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float | None:
    """The ``p`` quantile of sorted latencies in s, in ms (None without any)."""
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else None


def pcts(
    xs: Iterable[float], *, count: bool = True, mean_median: bool = False
) -> dict[str, float | int | None]:
    """p50/p99/max in ms of latencies in s (None without any), after ``n``, how many, if ``count``.
    p50 of an even number is the upper of the two middle ones, or with ``mean_median`` their mean
    (:func:`statistics.median`)."""
    s = sorted(xs)
    out: dict[str, float | int | None] = {"n": len(s)} if count else {}
    if not s:
        return {**out, "p50_ms": None, "p99_ms": None, "max_ms": None}
    out["p50_ms"] = (statistics.median(s) if mean_median else s[len(s) // 2]) * 1000
    out["p99_ms"] = pct(s, 0.99)
    out["max_ms"] = s[-1] * 1000
    return out


def fmt(ms: object) -> str:
    return f"{ms:.0f}" if isinstance(ms, float) else "-"


def spread(values: Iterable[float]) -> dict[str, float]:
    xs = list(values)
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


AUDIT_KEYS = ("expected", "stored", "lost", "duplicated")


def audit_summary(audit: Mapping[str, object]) -> dict[str, object]:
    """The ledger audit's headline numbers, for a summary."""
    return {k: audit.get(k) for k in AUDIT_KEYS}


def audit_text(audit: Mapping[str, object]) -> str:
    return "audit: " + ", ".join(f"{k} {audit.get(k)}" for k in AUDIT_KEYS)


# -- a Pi-like CPU budget ------------------------------------------------------------------


def confine_cpu(pid: int, fraction: float, cpu: int = 0) -> str:
    """Hold process ``pid`` (all its threads, and those it starts) to ``fraction`` of one core,
    on core ``cpu`` only: a CFS quota in a cgroup of its own (cgroup v2 ``cpu.max``, else v1
    ``cpu.cfs_quota_us``; needs root) plus CPU affinity. Returns what was done, for the report."""
    period = 100_000
    quota = max(1000, int(period * fraction))
    name = f"citygate-bench-{pid}"
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists() and "cpu" in v2.read_text().split():
        group = Path("/sys/fs/cgroup") / name
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{quota} {period}")
        how = f"cgroup v2 cpu.max {quota} {period}"
    else:
        group = Path("/sys/fs/cgroup/cpu") / name
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        how = f"cgroup v1 cpu.cfs_quota_us {quota} per {period}"
    (group / "cgroup.procs").write_text(str(pid))
    for tid in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(tid.name), {cpu})
    return f"{how}, affinity CPU {cpu}"


# One air-quality reading's values, valid for the shipped profile: the benchmarks' payload.
AIR_QUALITY_VALUES = {
    "pm2_5": 12.5,
    "pm10": 20.25,
    "no2": 31.0,
    "o3": 40.5,
    "co": 0.375,
    "temperature": 21.5,
    "humidity": 55.0,
}
