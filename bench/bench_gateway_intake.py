"""Gateway intake ceiling beside the C client's, in the same run on the same broker.

Publishers: one `mosquitto_pub -l` (C, mTLS, QoS1) per device, each sending
its pre-generated readings. Baseline: `mosquitto_sub` on the gateway listener
(QoS1, the gateway's certificate) receiving the same stream. Then the agent:
mTLS QoS1 intake, validation, group commit to the fsync'd outbox, manual
PUBACK after commit. The cloud is unreachable on purpose so the forwarder
does not compete: this measures intake.

Prints readings/s for both, the ratio, the agent's RSS and bytes written to
disk per reading (from /proc/<pid>/io). Run:

    .venv/bin/python bench/bench_gateway_intake.py [--devices 20] [--per-device 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psutil
from _common import GATEWAY_ID, agent_health, bench_pki, spread, start_agent, write_gateway_config
from paho.mqtt.enums import CallbackAPIVersion

from citygate.certs.pki import CaName, CertKind, Pki
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.process import free_port


def make_payloads(n: int, base_ms: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {"ts": base_ms + i, "seq": i, "readings": {"level": 1.0 + (i % 100) / 100, "battery": 90.0}}
        )
        + b"\n"
        for i in range(n)
    )


def start_publishers(pki: Pki, broker: LocalMosquitto, devices: list[str], files: dict[str, Path]) -> list:
    procs = []
    ca = pki.ca_cert_path(CaName.INFRA)
    for d in devices:
        f = pki.files(CertKind.DEVICE, d)
        procs.append(
            subprocess.Popen(
                [
                    "mosquitto_pub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(broker.device_port),
                    "--cafile",
                    str(ca),
                    "--cert",
                    str(f.cert),
                    "--key",
                    str(f.key),
                    "-i",
                    d,
                    "-q",
                    "1",
                    "-t",
                    f"devices/{d}/telemetry",
                    "-l",
                ],
                stdin=files[d].open("rb"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    return procs


def run_baseline(pki, broker, devices, files, total) -> float:
    gw = pki.files(CertKind.GATEWAY, GATEWAY_ID)
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.gateway_port),
            "--cafile",
            str(pki.ca_cert_path(CaName.INFRA)),
            "--cert",
            str(gw.cert),
            "--key",
            str(gw.key),
            "-i",
            "bench-sub",
            "-q",
            "1",
            "-t",
            "devices/+/telemetry",
            "-C",
            str(total),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    t0 = time.perf_counter()
    pubs = start_publishers(pki, broker, devices, files)
    sub.wait(600)
    elapsed = time.perf_counter() - t0
    for p in pubs:
        p.wait(60)
    return total / elapsed


def forget_agent_session(pki: Pki, broker: LocalMosquitto) -> None:
    """End the agent's persistent session at the broker (a clean-session connect under its
    client id). Otherwise the broker queues the next baseline's readings for the agent while it
    is away, and the next agent run starts with them in hand: one repeat measured 195,000/s."""
    gw = pki.files(CertKind.GATEWAY, GATEWAY_ID)
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert_path(CaName.INFRA)))
    ctx.check_hostname = False  # loopback; the agent checks the broker's name itself
    ctx.load_cert_chain(str(gw.cert), str(gw.key))
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"citygate-gateway-{GATEWAY_ID}", clean_session=True
    )
    c.tls_set_context(ctx)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", broker.gateway_port)
    c.loop_start()
    try:
        if not connected.wait(30) or refused:
            raise RuntimeError(f"could not connect as the agent to end its session: {refused}")
    finally:
        c.disconnect()
        c.loop_stop()


def run_agent(pki, broker, devices, files, total, work: Path) -> dict:
    http_port = free_port()
    cfg = write_gateway_config(
        work / "gateway.toml",
        pki,
        broker,
        state_dir=work / f"state-{time.monotonic_ns()}",
        cloud_url="https://127.0.0.1:9",  # unreachable on purpose: intake only
        http_port=http_port,
        backoff_max_s=60.0,
        outbox_min_free_disk_bytes=0,
    )
    agent = start_agent(cfg, work / "agent.log")
    try:
        proc = psutil.Process(agent.pid)
        deadline = time.monotonic() + 60
        while True:
            try:
                if agent_health(http_port, timeout=5)["broker_connected"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or agent.poll() is not None:
                raise RuntimeError(f"the agent did not connect to the broker; see {work / 'agent.log'}")
            time.sleep(0.1)
        rss_idle = proc.memory_info().rss
        io0 = proc.io_counters().write_bytes
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()
        pubs = start_publishers(pki, broker, devices, files)
        rss_max = 0
        deadline = time.monotonic() + 600
        while True:
            h = agent_health(http_port, timeout=5)
            rss_max = max(rss_max, proc.memory_info().rss)
            if h["readings_in"] >= total:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the agent committed {h['readings_in']:,} of {total:,} readings in 600 s; health: {h}"
                )
            time.sleep(0.2)
        elapsed = time.perf_counter() - t0
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        io = proc.io_counters().write_bytes - io0
        for p in pubs:
            p.wait(60)
    finally:
        agent.terminate()
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(30)
        forget_agent_session(pki, broker)
    return {
        "rate": total / elapsed,
        "rss_max_mb": rss_max / 1e6,
        "rss_idle_mb": rss_idle / 1e6,
        "bytes_written_per_reading": io / total,
        "agent_cpu_s_per_1k": cpu / total * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--per-device", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    total = args.devices * args.per_device
    with tempfile.TemporaryDirectory(prefix="citygate-bench-") as tmp:
        work = Path(tmp)
        devices = [f"bench-{i:03d}" for i in range(args.devices)]
        pki = bench_pki(work, devices)
        broker = LocalMosquitto(work / "mosquitto", pki, max_queued_messages=10_000_000)
        broker.start()
        base, agent_runs = [], []
        try:
            for _ in range(args.repeats):
                files = {}
                for d in devices:
                    files[d] = work / f"{d}.jsonl"
                    # Stamped now: every repeat's readings must be within the profile's
                    # max_future_s of the gateway's clock (an offset of r * 1,000 s was not).
                    files[d].write_bytes(make_payloads(args.per_device, int(time.time() * 1000)))
                base.append(run_baseline(pki, broker, devices, files, total))
                agent_runs.append(run_agent(pki, broker, devices, files, total, work))
        finally:
            broker.stop()
    rates = [a["rate"] for a in agent_runs]
    ratios = [a / b for a, b in zip(rates, base, strict=True)]
    summary = {
        "readings_per_run": total,
        "devices": args.devices,
        "mosquitto_sub_rate": spread(base),
        "agent_rate": spread(rates),
        "ratio": spread(ratios),
        "agent_rss_max_mb": max(a["rss_max_mb"] for a in agent_runs),
        "agent_rss_idle_mb": max(a["rss_idle_mb"] for a in agent_runs),
        "bytes_written_per_reading": statistics.median(a["bytes_written_per_reading"] for a in agent_runs),
        "agent_cpu_s_per_1k_readings": statistics.median(a["agent_cpu_s_per_1k"] for a in agent_runs),
    }
    print(f"mosquitto_sub (C client) : {summary['mosquitto_sub_rate']['median']:>9,.0f} readings/s (median)")
    print(f"citygate agent (committed): {summary['agent_rate']['median']:>9,.0f} readings/s (median)")
    print(
        f"ratio agent/mosquitto_sub : {summary['ratio']['median']:.2f} "
        f"(min {summary['ratio']['min']:.2f}, max {summary['ratio']['max']:.2f}); "
        "target >= 0.4 and >= 20,000/s"
    )
    print(
        f"agent RSS max {summary['agent_rss_max_mb']:.1f} MB; "
        f"disk writes {summary['bytes_written_per_reading']:.0f} B/reading; "
        f"agent CPU {summary['agent_cpu_s_per_1k_readings']:.3f} s per 1k readings"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
