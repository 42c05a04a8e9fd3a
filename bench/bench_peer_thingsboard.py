"""Peer run: ThingsBoard IoT Gateway receiving the gateway-intake stream, beside mosquitto_sub.

The same scenario as bench_gateway_intake.py (one `mosquitto_pub -l` per device,
QoS1 JSON readings over mTLS to a local Mosquitto; `mosquitto_sub` with a
gateway certificate as the baseline), received by ThingsBoard IoT Gateway
(PyPI `thingsboard-gateway`): its MQTT connector connects to the gateway
listener with its own gateway certificate from our PKI and subscribes to the
devices' telemetry filter; its storage is SQLite. It forwards to "ThingsBoard"
over MQTT (v1/gateway/telemetry, QoS1): here a second, plain Mosquitto on a
loopback port stands in for the platform, and a subscriber on it counts the
readings that arrive (and answers the gateway's getSessionLimits RPC the way a
self-hosted ThingsBoard without rate limits would). TB's rate is end to end:
readings received from the devices, stored and forwarded, per second.

Not the same guarantees as citygate's agent: the connector's MQTT client
PUBACKs each device message on receipt, before it is stored (citygate: after
the fsync'd commit), and the SQLite storage runs in WAL mode with
synchronous=NORMAL (no fsync per commit). Forwarding waits for the platform's
PUBACKs before deleting a pack from storage, and resends a pack it could not
confirm, so duplicates are possible (counted). The connector here has a
persistent session (cleanStart false), as the agent has. The gateway's stock
limits are kept: SQLite reads of 1,000 records, 50 ms pack delay.

ThingsBoard IoT Gateway is installed into its own venv on first use (not a
citygate dependency). If it cannot be installed or run, the summary says
"status": "not_run" with the reason. Run:

    .venv/bin/python bench/bench_peer_thingsboard.py [--devices 5] [--per-device 2000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psutil
from _common import bench_pki, spread
from bench_gateway_intake import make_payloads, run_baseline, start_publishers

from citygate.certs.pki import CaName, CertFiles, CertKind, Pki
from citygate.contract.topics import TELEMETRY_FILTER, telemetry_topic
from citygate.servers.mosquitto import LocalMosquitto, mosquitto_binary
from citygate.servers.process import ManagedProcess, free_port, port_open

TB_SPEC = "thingsboard-gateway==3.8.5"
TB_VENV = Path.home() / ".cache" / "citygate-bench" / "tb-venv"
TB_TOKEN = "citygate-bench-token"  # the gateway's MQTT username on the platform (access token)
TB_GATEWAY_ID = "tb-gw-bench"  # its certificate (infrastructure CA) for the device broker's gateway listener
TB_CLIENT_ID = "tb-gateway-bench"  # its MQTT connector's client id there
# What ThingsBoard answers to a gateway's getSessionLimits RPC (thingsboard PR #11450), with
# rate limits off, as on a self-hosted server by default.
SESSION_LIMITS = {
    "maxPayloadSize": 65536,
    "maxInflightMessages": 100,
    "payloadType": "JSON",
    "rateLimits": {},
    "gatewayRateLimits": {},
}
PROBE_SEQ = -1


class NotRunError(Exception):
    """ThingsBoard IoT Gateway could not be installed or run here."""


def ensure_tb_venv(venv: Path, spec: str) -> str:
    """A venv with thingsboard-gateway (created on first use); returns the installed version."""
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import importlib.metadata as m; print(m.version('thingsboard-gateway'))"]
    if py.exists():
        r = subprocess.run(probe, capture_output=True, text=True, check=False)
        if r.returncode == 0:
            return r.stdout.strip()
    print(f"installing {spec} into {venv} ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    for cmd in (
        [sys.executable, "-m", "venv", str(venv)],
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
        if r.returncode != 0:
            raise NotRunError(f"{' '.join(cmd)} failed (exit {r.returncode}): {r.stderr.strip()[-1500:]}")
    r = subprocess.run(probe, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise NotRunError(f"thingsboard-gateway not importable after install: {r.stderr.strip()[-1500:]}")
    return r.stdout.strip()


class Platform:
    """A plain Mosquitto standing in for the ThingsBoard server, and a subscriber counting what arrives."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = workdir / "platform.conf"
        self.log_path = workdir / "platform.log"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 1000000\n"
            "set_tcp_nodelay true\n"
            f"log_dest file {self.log_path}\n"
            # As root, Mosquitto would drop to user 'mosquitto' (see LocalMosquitto).
            f"{'user root' if os.geteuid() == 0 else ''}\n"
        )
        self.process = ManagedProcess(
            "platform-mosquitto", [mosquitto_binary(), "-c", str(conf)], log_path=workdir / "platform.stdout"
        )
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="platform-standin")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.reset()

    def reset(self) -> None:
        self.seen: dict[str, set[int]] = defaultdict(set)
        self.unique = 0
        self.entries = 0  # telemetry entries received, duplicates included
        self.messages = 0
        self.probes = 0
        self.last_new_at = 0.0
        self.rpc_answered = 0

    def start(self) -> None:
        self.process.start(lambda: port_open("127.0.0.1", self.port), timeout=20)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self.connected.wait(20):
            raise RuntimeError("platform subscriber did not connect")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.process.stop()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        client.subscribe([("v1/gateway/telemetry", 1), ("v1/devices/me/rpc/request/+", 1)])
        self.connected.set()

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith("v1/devices/me/rpc/request/"):
            if orjson.loads(msg.payload).get("method") == "getSessionLimits":
                request_id = msg.topic.rsplit("/", 1)[1]
                client.publish(f"v1/devices/me/rpc/response/{request_id}", orjson.dumps(SESSION_LIMITS), 1)
                self.rpc_answered += 1
            return
        self.messages += 1
        for device, entries in orjson.loads(msg.payload).items():
            seen = self.seen[device]
            for e in entries:
                self.entries += 1
                seq = e.get("values", {}).get("seq")
                if not isinstance(seq, int) or seq < 0:
                    self.probes += 1
                elif seq not in seen:
                    seen.add(seq)
                    self.unique += 1
                    self.last_new_at = time.perf_counter()


def tb_config(
    confdir: Path, work: Path, pki: Pki, gw: CertFiles, broker_port: int, platform_port: int
) -> None:
    """tb_gateway.json (platform, SQLite storage), mqtt.json (mTLS to the device broker) and logs.json."""
    confdir.mkdir(parents=True, exist_ok=True)
    no_limit = "0:0,"
    main = {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": platform_port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "latencyDebugMode": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 60},
            "deviceFiltering": {"enable": False},
            "maxPayloadSizeBytes": 8196,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 60,
            "handleDeviceRenaming": True,
            "security": {"type": "accessToken", "accessToken": TB_TOKEN},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
            "rateLimits": no_limit,
            "dpRateLimits": no_limit,
            "messagesRateLimits": no_limit,
            "deviceMessagesRateLimits": no_limit,
            "deviceRateLimits": no_limit,
            "deviceDpRateLimits": no_limit,
        },
        "storage": {
            "type": "sqlite",
            "data_file_path": f"{work / 'tb-data'}/",
            "messages_ttl_check_in_hours": 1,
            "messages_ttl_in_days": 7,
        },
        "grpc": {"enabled": False},
        "connectors": [{"type": "mqtt", "name": "citygate devices", "configuration": "mqtt.json"}],
    }
    number = {"type": "double"}
    connector = {
        "broker": {
            "host": "127.0.0.1",
            "port": broker_port,
            "clientId": TB_CLIENT_ID,
            "version": 5,
            "maxMessageNumberPerWorker": 10,
            "maxNumberOfWorkers": 100,
            # A persistent session, as citygate's agent has: a reconnect loses nothing queued.
            "cleanSession": False,
            "cleanStart": False,
            "sessionExpiryInterval": 3600,
            "keepAlive": 60,
            "security": {
                "type": "certificates",
                "pathToCACert": str(pki.ca_cert_path(CaName.INFRA)),
                "pathToPrivateKey": str(gw.key),
                "pathToClientCert": str(gw.cert),
            },
        },
        "dataMapping": [
            {
                "topicFilter": TELEMETRY_FILTER,
                "subscriptionQos": 1,
                "converter": {
                    "type": "json",
                    "deviceInfo": {
                        "deviceNameExpressionSource": "topic",
                        "deviceNameExpression": "(?<=devices/)[^/]+(?=/telemetry)",
                        "deviceProfileExpressionSource": "constant",
                        "deviceProfileExpression": "water_level",
                    },
                    "sendDataOnlyOnChange": False,
                    "timeout": 60000,
                    "attributes": [],
                    "timeseries": [
                        {**number, "key": "level", "value": "${readings.level}"},
                        {**number, "key": "battery", "value": "${readings.battery}"},
                        {"type": "integer", "key": "seq", "value": "${seq}"},
                    ],
                },
            }
        ],
        "requestsMapping": {},
    }
    names = ("service", "connector", "converter", "tb_connection", "storage", "extension", "database")
    logs = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "f": {"format": "%(asctime)s |%(levelname)s| %(name)s %(filename)s:%(lineno)d %(message)s"}
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stdout"}
        },
        "loggers": {n: {"handlers": ["console"], "level": "WARNING", "propagate": False} for n in names},
        "root": {"level": "WARNING", "handlers": ["console"]},
    }
    for name, doc in (("tb_gateway.json", main), ("mqtt.json", connector), ("logs.json", logs)):
        (confdir / name).write_text(json.dumps(doc, indent=2))


def storage_backlog(data_dir: Path, delivered: dict[str, set[int]]) -> int:
    """Undelivered readings still in the gateway's SQLite storage (stored, not forwarded) after it stopped."""
    left: set[tuple[str, int]] = set()
    for db in data_dir.glob("*.db"):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            for (message,) in conn.execute("SELECT message FROM messages"):
                event = orjson.loads(message)
                device = event.get("deviceName", "")
                telemetry = event.get("telemetry") or []
                for entry in telemetry if isinstance(telemetry, list) else [telemetry]:
                    seq = entry.get("values", {}).get("seq")
                    if isinstance(seq, int) and seq >= 0 and seq not in delivered.get(device, ()):
                        left.add((device, seq))
    return len(left)


def tree_rss(proc: psutil.Process) -> int:
    try:
        return sum(p.memory_info().rss for p in (proc, *proc.children(recursive=True)))
    except psutil.Error:
        return 0


def tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip()
    except OSError:
        return ""


def publish_probe(pki: Pki, broker: LocalMosquitto, device: str) -> None:
    """One reading with seq -1 from a real device: shows the whole TB path is live before timing."""
    f = pki.files(CertKind.DEVICE, device)
    payload = orjson.dumps({"ts": int(time.time() * 1000), "seq": PROBE_SEQ, "readings": {"level": 0.0}})
    subprocess.run(
        [
            "mosquitto_pub",
            *("-h", "127.0.0.1", "-p", str(broker.device_port)),
            *("--cafile", str(pki.ca_cert_path(CaName.INFRA)), "--cert", str(f.cert), "--key", str(f.key)),
            *("-i", device, "-q", "1", "-t", telemetry_topic(device), "-m", payload.decode()),
        ],
        check=False,
        timeout=30,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def clear_session(pki: Pki, broker: LocalMosquitto) -> None:
    """End the connector's persistent session: it must not queue the next baseline run's stream."""
    gw = pki.files(CertKind.GATEWAY, TB_GATEWAY_ID)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=TB_CLIENT_ID, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki.ca_cert_path(CaName.INFRA)), certfile=str(gw.cert), keyfile=str(gw.key))
    c.connect("127.0.0.1", broker.gateway_port, clean_start=True)  # no session expiry: gone on disconnect
    c.loop_start()
    deadline = time.monotonic() + 10
    while not c.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()


def log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def run_tb(
    venv: Path,
    pki: Pki,
    broker: LocalMosquitto,
    platform: Platform,
    devices: list[str],
    files: dict[str, Path],
    total: int,
    work: Path,
    stall_s: float,
) -> dict[str, float]:
    run_dir = work / f"tb-{time.monotonic_ns()}"
    (run_dir / "logs").mkdir(parents=True)
    confdir = run_dir / "config"
    tb_config(
        confdir, run_dir, pki, pki.files(CertKind.GATEWAY, TB_GATEWAY_ID), broker.gateway_port, platform.port
    )
    platform.reset()
    broker_log0, platform_log0 = len(broker.log()), len(log_text(platform.log_path))
    env = {
        **os.environ,
        "TB_GW_CONFIG_DIR": str(confdir),
        # The gateway checks for updates over HTTPS at start: send that to a closed local port.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    log_path = run_dir / "tb.log"
    with log_path.open("ab") as log:
        tb = subprocess.Popen(
            [
                str(venv / "bin" / "python"),
                "-c",
                "from thingsboard_gateway.tb_gateway import daemon; daemon()",
            ],
            cwd=run_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    proc = psutil.Process(tb.pid)
    try:
        deadline = time.monotonic() + 120
        while platform.probes == 0:
            if tb.poll() is not None:
                raise NotRunError(
                    f"thingsboard-gateway exited with {tb.returncode} at start: {tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise NotRunError(
                    "thingsboard-gateway did not forward a probe reading within 120 s "
                    f"(session limits answered: {platform.rpc_answered}): {tail(log_path)}"
                )
            publish_probe(pki, broker, devices[0])
            wait_until = time.monotonic() + 2
            while platform.probes == 0 and time.monotonic() < wait_until:
                time.sleep(0.05)
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()
        pubs = start_publishers(pki, broker, devices, files)
        rss_max = 0
        while platform.unique < total:
            rss_max = max(rss_max, tree_rss(proc))
            if tb.poll() is not None:
                raise NotRunError(
                    f"thingsboard-gateway exited with {tb.returncode} mid-run: {tail(log_path)}"
                )
            if time.perf_counter() - max(platform.last_new_at, t0) > stall_s:
                break  # nothing new for stall_s: give up on the rest
            time.sleep(0.2)
        delivered = platform.unique
        elapsed = (platform.last_new_at or time.perf_counter()) - t0
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        for p in pubs:
            p.wait(60)
    finally:
        tb.send_signal(signal.SIGINT)  # the gateway's own shutdown path
        try:
            tb.wait(20)
        except subprocess.TimeoutExpired:
            tb.kill()
            tb.wait(10)
        # Connections made during the run (more than one each: it reconnected).
        broker_connects = broker.log()[broker_log0:].count(f" as {TB_CLIENT_ID} (")
        platform_connects = log_text(platform.log_path)[platform_log0:].count(f"u'{TB_TOKEN}'")
        with contextlib.suppress(OSError):
            clear_session(pki, broker)
    in_storage = storage_backlog(run_dir / "tb-data", platform.seen)
    return {
        "rate": delivered / elapsed if elapsed > 0 else 0.0,
        "delivered": delivered,
        "undelivered": total - delivered,
        "in_tb_storage": in_storage,
        "lost": total - delivered - in_storage,
        "duplicates": platform.entries - platform.probes - delivered,
        "platform_messages": platform.messages,
        "device_broker_connects": broker_connects,
        "platform_connects": platform_connects,
        "rss_max_mb": rss_max / 1e6,
        "cpu_s_per_1k": cpu / max(delivered, 1) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=5)
    ap.add_argument("--per-device", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--tb-venv", type=Path, default=TB_VENV, help="venv for thingsboard-gateway (made if absent)"
    )
    ap.add_argument("--tb-spec", default=TB_SPEC, help="pip requirement for the gateway")
    ap.add_argument(
        "--stall-s", type=float, default=60.0, help="stop waiting after this long with no new reading"
    )
    args = ap.parse_args()
    total = args.devices * args.per_device
    summary: dict[str, object] = {"readings_per_run": total, "devices": args.devices}
    base: list[float] = []
    runs: list[dict[str, float]] = []
    try:
        summary["tb_gateway_version"] = ensure_tb_venv(args.tb_venv, args.tb_spec)
        with tempfile.TemporaryDirectory(prefix="citygate-bench-") as tmp:
            work = Path(tmp)
            devices = [f"bench-{i:03d}" for i in range(args.devices)]
            pki = bench_pki(work, devices)  # gw-bench: the baseline mosquitto_sub
            pki.issue_gateway(TB_GATEWAY_ID)  # ThingsBoard IoT Gateway's MQTT connector
            # No max_packet_size: the peer's broker stays at Mosquitto's defaults. (Under a large
            # queue ThingsBoard's connector is dropped for "multiple CONNECT messages" either way.)
            broker = LocalMosquitto(
                work / "mosquitto", pki, max_queued_messages=10_000_000, max_packet_size=0
            )
            platform = Platform(work / "platform")
            broker.start()
            platform.start()
            try:
                for r in range(args.repeats):
                    files = {}
                    for d in devices:
                        files[d] = work / f"{d}.jsonl"
                        files[d].write_bytes(
                            make_payloads(args.per_device, int(time.time() * 1000) + r * 10**6)
                        )
                    base.append(run_baseline(pki, broker, devices, files, total))
                    runs.append(
                        run_tb(args.tb_venv, pki, broker, platform, devices, files, total, work, args.stall_s)
                    )
            finally:
                platform.stop()
                broker.stop()
    except NotRunError as e:
        summary.update(status="not_run", reason=str(e))
        if base:
            summary["mosquitto_sub_rate"] = spread(base)
        print(f"ThingsBoard IoT Gateway not run: {e}")
        print(json.dumps(summary))
        return
    rates = [r["rate"] for r in runs]
    ratios = [a / b for a, b in zip(rates, base, strict=True)]
    summary.update(
        status="ok",
        mosquitto_sub_rate=spread(base),
        tb_rate=spread(rates),
        ratio=spread(ratios),
        tb_rss_max_mb=max(r["rss_max_mb"] for r in runs),
        tb_cpu_s_per_1k_readings=statistics.median(r["cpu_s_per_1k"] for r in runs),
        readings_delivered=min(r["delivered"] for r in runs),
        readings_undelivered=max(r["undelivered"] for r in runs),
        readings_in_tb_storage=max(r["in_tb_storage"] for r in runs),
        readings_lost=max(r["lost"] for r in runs),
        duplicates=max(r["duplicates"] for r in runs),
        platform_messages=statistics.median(r["platform_messages"] for r in runs),
        tb_device_broker_connects=max(r["device_broker_connects"] for r in runs),
        tb_platform_connects=max(r["platform_connects"] for r in runs),
    )
    print(f"mosquitto_sub (C client) : {summary['mosquitto_sub_rate']['median']:>9,.0f} readings/s (median)")
    print(f"ThingsBoard IoT Gateway  : {summary['tb_rate']['median']:>9,.0f} readings/s (median, end to end)")
    print(
        f"ratio tb/mosquitto_sub   : {summary['ratio']['median']:.2f} "
        f"(min {summary['ratio']['min']:.2f}, max {summary['ratio']['max']:.2f}); "
        "citygate's agent target: >= 0.4 and >= 20,000/s"
    )
    print(
        f"thingsboard-gateway {summary['tb_gateway_version']}: delivered "
        f"{summary['readings_delivered']:,} of {total:,} in {summary['platform_messages']:,.0f} platform "
        f"messages; undelivered {summary['readings_undelivered']:,} (still in its SQLite storage "
        f"{summary['readings_in_tb_storage']:,}, lost {summary['readings_lost']:,}); "
        f"duplicates {summary['duplicates']:,}; connections: device broker "
        f"{summary['tb_device_broker_connects']}, platform {summary['tb_platform_connects']}"
    )
    print(
        f"TB peak RSS {summary['tb_rss_max_mb']:.1f} MB; "
        f"TB CPU {summary['tb_cpu_s_per_1k_readings']:.3f} s per 1k readings delivered"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
