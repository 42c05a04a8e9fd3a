"""End-to-end latency: device publish -> point visible in InfluxDB, under load.

The whole system runs as in the demo (PKI, InfluxDB, cloud, one gateway with its
Mosquitto, a simulated fleet for the background load). A probe device publishes
a reading every 100 ms stamped with the current time; a watcher queries InfluxDB
for each probe point until it is there. Latency = seen - published, so it
includes MQTT, validation, the fsync'd commit, batching, HTTPS, the cloud's
validation and the synchronous InfluxDB write, plus up to one polling interval
(20 ms). Baseline: the same probe with no background load, in the same run.

    .venv/bin/python bench/bench_e2e_latency.py [--devices 1000] [--rate 2000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citygate.certs.pki import CaName, CertKind
from citygate.contract.inventory import DeviceRecord
from citygate.contract.topics import telemetry_topic
from citygate.demo.stack import DemoOptions, DemoStack


def probe(
    stack: DemoStack, seconds: float, device: str = "probe-0001", interval_s: float = 0.1
) -> list[float]:
    assert stack.pki is not None and stack.influx is not None
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
                doc = stack.influx.query(q, db="citygate")
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


def fmt(ms: object) -> str:
    return f"{ms:.0f}" if isinstance(ms, float) else "-"


def pct(xs: list[float], p: float) -> float | None:
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        stack = DemoStack(DemoOptions(directory=Path(tmp) / "stack", gateways=1))
        sim = None
        try:
            stack.start_infrastructure()
            assert stack.pki is not None
            stack.pki.issue_device(
                DeviceRecord(
                    device_id="probe-0001",
                    profile="water_level",
                    profile_version=1,
                    gateways=(stack.nodes[0].name,),
                )
            )
            time.sleep(1.0)
            idle = probe(stack, min(10.0, args.seconds))
            node = stack.nodes[0]
            sim = subprocess.Popen(
                stack.sim_command(
                    node,
                    devices=args.devices,
                    rate=args.rate,
                    duration_s=args.seconds + 120,
                    ledger=stack.dir / "load.ledger",
                ),
                stdout=subprocess.DEVNULL,
                stderr=(stack.dir / "sim.log").open("ab"),
            )
            # Let the fleet connect and reach its rate before measuring.
            h0 = node.health() or {}
            time.sleep(max(5.0, args.devices / 250 + 3))
            t0, in0 = time.monotonic(), int((node.health() or h0).get("readings_in", 0))
            loaded = probe(stack, args.seconds)
            achieved = (int((node.health() or {}).get("readings_in", 0)) - in0) / (time.monotonic() - t0)
        finally:
            if sim is not None and sim.poll() is None:
                sim.send_signal(signal.SIGINT)
                try:
                    sim.wait(60)
                except subprocess.TimeoutExpired:
                    sim.kill()
            stack.stop()
    summary = {
        "devices": args.devices,
        "target_rate": args.rate,
        "achieved_rate": achieved,
        "idle_p50_ms": pct(idle, 0.5),
        "idle_p99_ms": pct(idle, 0.99),
        "idle_n": len(idle),
        "p50_ms": pct(loaded, 0.5),
        "p95_ms": pct(loaded, 0.95),
        "p99_ms": pct(loaded, 0.99),
        "n": len(loaded),
        "mean_ms": statistics.mean(loaded) * 1000 if loaded else None,
    }
    print(
        f"no load:      p50 {fmt(summary['idle_p50_ms'])} ms  "
        f"p99 {fmt(summary['idle_p99_ms'])} ms  (n={len(idle)})"
    )
    print(
        f"under load ({achieved:,.0f} readings/s from {args.devices} devices): "
        f"p50 {fmt(summary['p50_ms'])} ms  p95 {fmt(summary['p95_ms'])} ms  p99 {fmt(summary['p99_ms'])} ms  "
        f"(n={len(loaded)}); target p99 < 1000 ms"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
