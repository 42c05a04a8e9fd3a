"""Footprint: CPU, memory and disk writes of the agent, the broker and the cloud at steady rates.

The whole system runs as in the demo (PKI, InfluxDB, the real cloud, one
gateway with its Mosquitto). For each rate in ``--rates`` a simulated fleet of
``--devices`` publishes at that rate (mTLS, QoS 1, confirmation on); after the
ramp-up every process is sampled for ``--seconds``: CPU (user+system time over
wall time; 100 % = one core) and RSS (max, 0.5 s samples) of the agent, the
broker, the cloud, InfluxDB and the simulator. Disk bytes per reading: the
agent's ``write_bytes`` (psutil io_counters, what the process caused to be
written to the block layer: SQLite WAL, checkpoints, logs) divided by the
readings it committed in the same window. The achieved rate is what the agent
committed per second (``readings_in``) and delivered (``readings_out``): all
processes share the machine's cores, so at high rates the simulator itself
may be the limit; the numbers say so.

The footprint with a large backlog (1M readings) is measured by
``bench_gateway_backlog.py`` (scenario ``gateway-backlog``), not here.

    .venv/bin/python bench/bench_footprint.py [--rates 1000 10000] [--seconds 30] [--devices 1000]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
import psutil

from citygate.demo.run import audit_ledger
from citygate.demo.stack import DemoOptions, DemoStack, GatewayNode


def agent_counters(node: GatewayNode) -> tuple[int, int, int]:
    """(readings_in, readings_out, outbox_depth) from the agent's /healthz; retried."""
    for _ in range(20):
        h = node.health()
        if h is not None and "outbox_depth" in h:
            return int(h["readings_in"]), int(h["readings_out"]), int(h["outbox_depth"])  # type: ignore[call-overload]
        time.sleep(0.25)
    raise RuntimeError(f"agent /healthz not answering; log {node.agent.log_path}")


def sample(procs: dict[str, psutil.Process], node: GatewayNode, seconds: float) -> dict[str, object]:
    cpu0 = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
    io0 = procs["agent"].io_counters().write_bytes
    in0, out0, depth0 = agent_counters(node)
    rss: dict[str, list[float]] = {k: [] for k in procs}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for k, p in procs.items():
            rss[k].append(p.memory_info().rss / 1e6)
        time.sleep(0.5)
    dt = time.monotonic() - t0
    in1, out1, depth1 = agent_counters(node)
    io = procs["agent"].io_counters().write_bytes - io0
    committed = in1 - in0
    return {
        "seconds": round(dt, 1),
        "achieved_rate": round(committed / dt, 1),
        "delivered_rate": round((out1 - out0) / dt, 1),
        "outbox_depth": {"start": depth0, "end": depth1},
        "agent_write_bytes_per_reading": round(io / committed, 1) if committed else None,
        "procs": {
            k: {
                "cpu_percent": round((sum(p.cpu_times()[:2]) - cpu0[k]) / dt * 100, 1),
                "rss_mb_max": round(max(rss[k]), 1),
                "rss_mb_mean": round(sum(rss[k]) / len(rss[k]), 1),
            }
            for k, p in procs.items()
        },
    }


def run_rate(
    stack: DemoStack, procs: dict[str, psutil.Process], rate: float, args: argparse.Namespace, ledger: Path
) -> dict[str, object]:
    node = stack.nodes[0]
    sim_json = stack.dir / f"sim-{rate:g}.json"
    sim = subprocess.Popen(
        stack.sim_command(
            node, devices=args.devices, rate=rate, duration_s=args.seconds + 600, ledger=ledger
        ),
        stdout=sim_json.open("wb"),
        stderr=(stack.dir / "sim.log").open("ab"),
    )
    try:
        # Connect (rate mode starts the load after the ramp-up: devices / 250 s), then settle.
        time.sleep(max(8.0, args.devices / 250 + 6))
        if sim.poll() is not None:
            raise RuntimeError(f"simulator exited with {sim.returncode}; log {stack.dir / 'sim.log'}")
        phase = sample(procs | {"simulator": psutil.Process(sim.pid)}, node, args.seconds)
    finally:
        if sim.poll() is None:
            sim.send_signal(signal.SIGINT)
        try:
            sim.wait(120)
        except subprocess.TimeoutExpired:
            sim.kill()
    # The simulator's own view of the whole run (produced/s, PUBACK latency).
    try:
        raw = sim_json.read_bytes()
        doc = orjson.loads(raw[raw.find(b"{") :])
        phase["simulator"] = {
            k: doc.get(k) for k in ("produced", "readings_per_s", "puback_latency_ms", "resent")
        }
    except (OSError, orjson.JSONDecodeError):
        phase["simulator"] = None
    # The next phase starts from an empty outbox.
    phase["drained_after"] = stack.wait_drained(300)
    return phase


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=float, nargs="+", default=[1000.0, 10000.0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--devices", type=int, default=1000)
    args = ap.parse_args()
    phases: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        stack = DemoStack(DemoOptions(directory=Path(tmp) / "stack", gateways=1))
        ledger = stack.dir / "load.ledger"
        try:
            stack.start_infrastructure()
            assert stack.cloud is not None and stack.influx is not None
            node = stack.nodes[0]
            pids = {
                "agent": node.agent.pid,
                "broker": node.broker.process.pid,
                "cloud": stack.cloud.pid,
                "influxdb": stack.influx.process.pid,
            }
            procs = {k: psutil.Process(pid) for k, pid in pids.items() if pid is not None}
            phases["idle"] = sample(procs, node, 5.0)
            for rate in args.rates:
                phases[f"{rate:g}"] = run_rate(stack, procs, rate, args, ledger)
            time.sleep(1.0)
            audit = audit_ledger(stack.influx.url, ledger)
        finally:
            stack.stop()
    summary: dict[str, object] = {"devices": args.devices, "rates": args.rates}
    for name, ph in phases.items():
        p = ph["procs"]
        assert isinstance(p, dict)
        summary |= {
            f"achieved_rate_{name}": ph["achieved_rate"],
            f"delivered_rate_{name}": ph["delivered_rate"],
            f"agent_rss_mb_{name}": p["agent"]["rss_mb_max"],
            f"agent_cpu_{name}": p["agent"]["cpu_percent"],
            f"broker_rss_mb_{name}": p["broker"]["rss_mb_max"],
            f"broker_cpu_{name}": p["broker"]["cpu_percent"],
            f"cloud_rss_mb_{name}": p["cloud"]["rss_mb_max"],
            f"cloud_cpu_{name}": p["cloud"]["cpu_percent"],
            f"influxdb_cpu_{name}": p["influxdb"]["cpu_percent"],
            f"disk_bytes_per_reading_{name}": ph["agent_write_bytes_per_reading"],
        }
    summary |= {
        "expected": audit.get("expected"),
        "stored": audit.get("stored"),
        "lost": audit.get("lost"),
        "duplicated": audit.get("duplicated"),
        "phases": phases,
    }
    print(f"{args.devices} devices; CPU 100 % = one core; RSS max; machine: {psutil.cpu_count()} CPUs")
    for name, ph in phases.items():
        p = ph["procs"]
        assert isinstance(p, dict)
        target = "idle" if name == "idle" else f"target {float(name):,.0f}/s"
        line = f"{target:>16}: {ph['achieved_rate']:>8,.0f}/s in, {ph['delivered_rate']:>8,.0f}/s out"
        for k in ("agent", "broker", "cloud", "influxdb", "simulator"):
            if k in p:
                line += f" | {k} {p[k]['cpu_percent']:.0f}% {p[k]['rss_mb_max']:.0f} MB"
        bpr = ph["agent_write_bytes_per_reading"]
        if bpr is not None and name != "idle":
            line += f" | agent disk {bpr:.0f} B/reading"
        print(line)
    print(
        f"audit: expected {audit.get('expected')}, stored {audit.get('stored')}, lost {audit.get('lost')}, "
        f"duplicated {audit.get('duplicated')}; backlog footprint: scenario gateway-backlog"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
