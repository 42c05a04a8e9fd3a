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
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import agent_counters, fmt, issue_probe_device, pct, probe, stop_sim

from citygate.demo.stack import DemoOptions, DemoStack


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
            issue_probe_device(stack)
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
            time.sleep(max(5.0, args.devices / 250 + 3))
            t0, in0 = time.monotonic(), agent_counters(node)[0]
            loaded = probe(stack, args.seconds)
            achieved = (agent_counters(node)[0] - in0) / (time.monotonic() - t0)
        finally:
            if sim is not None:
                stop_sim(sim, 60)
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
