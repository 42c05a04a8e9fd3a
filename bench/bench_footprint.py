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

Beside the disk bytes per reading, the floor for the same run: each commit's
stored payloads rounded up to whole 4 KiB pages (the agent's
``citygate_gateway_commit_floor_bytes``), per reading. And the latency a device
sees at that rate: a probe device publishes every ``--probe-interval`` seconds
and each reading is timed until InfluxDB has it (``_common.probe``, as ``bench_e2e_latency.py``).

A Pi-like budget (``--agent-cpu 0.25``): the agent alone is held to a quarter of one
core of this machine, on one core (a CFS quota in its own cgroup plus CPU affinity, see
``_common.confine_cpu``), while the broker, the cloud and the simulator run free. A
quarter of one server core stands for one Cortex-A72 core of a Raspberry Pi 4 at 1.5 GHz,
which runs CPython about four to five times slower than a current x86 server core; the
agent is one Python process, so it can use about one core whatever the Pi has. The summary
gives the highest rate it kept up with (``sustainable_rate``: took in and delivered 95 %
of what was offered, outbox not growing, the probe's p99 under 1 s).

The footprint with a large backlog (1M readings) is measured by
``bench_gateway_backlog.py`` (scenario ``gateway-backlog``), not here.

    .venv/bin/python bench/bench_footprint.py [--rates 1000 10000] [--seconds 30] [--devices 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
import psutil
from _common import (
    agent_counters,
    audit_summary,
    audit_text,
    confine_cpu,
    issue_probe_device,
    pct,
    probe,
    read_sim_summary,
    stop_sim,
)

from citygate.demo.run import audit_ledger
from citygate.demo.stack import DemoOptions, DemoStack, GatewayNode


def commit_metrics(node: GatewayNode) -> tuple[float, float]:
    """(commits, floor bytes) from the agent's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{node.http_port}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("citygate_gateway_commits_total", "citygate_gateway_commit_floor_bytes_total"):
            values[name] = float(value)
    return values.get("citygate_gateway_commits_total", 0.0), values.get(
        "citygate_gateway_commit_floor_bytes_total", 0.0
    )


def sample(procs: dict[str, psutil.Process], node: GatewayNode, seconds: float) -> dict[str, object]:
    cpu0 = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
    io0 = procs["agent"].io_counters().write_bytes
    in0, out0, depth0 = agent_counters(node)
    commits0, floor0 = commit_metrics(node)
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
    commits1, floor1 = commit_metrics(node)
    return {
        "seconds": round(dt, 1),
        "achieved_rate": round(committed / dt, 1),
        "delivered_rate": round((out1 - out0) / dt, 1),
        "outbox_depth": {"start": depth0, "end": depth1},
        "agent_write_bytes_per_reading": round(io / committed, 1) if committed else None,
        "floor_bytes_per_reading": round((floor1 - floor0) / committed, 1) if committed else None,
        "readings_per_commit": round(committed / (commits1 - commits0), 1) if commits1 > commits0 else None,
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
        latencies: list[float] = []
        prober = threading.Thread(
            target=lambda: latencies.extend(probe(stack, args.seconds, interval_s=args.probe_interval)),
            daemon=True,
        )
        prober.start()
        phase = sample(procs | {"simulator": psutil.Process(sim.pid)}, node, args.seconds)
        prober.join(120)
        phase["e2e_ms"] = {
            "p50": pct(latencies, 0.5),
            "p99": pct(latencies, 0.99),
            "max": latencies[-1] * 1000 if latencies else None,
            "n": len(latencies),
        }
    finally:
        stop_sim(sim, 120)
    # The simulator's own view of the whole run (produced/s, PUBACK latency).
    try:
        doc = read_sim_summary(sim_json)
        phase["simulator"] = {
            k: doc.get(k) for k in ("produced", "readings_per_s", "puback_latency_ms", "resent")
        }
    except (OSError, orjson.JSONDecodeError):
        phase["simulator"] = None
    # The next phase starts from an empty outbox.
    phase["drained_after"] = stack.wait_drained(300)
    return phase


def kept_up(rate: float, ph: dict[str, object]) -> bool:
    depth = ph["outbox_depth"]
    e2e = ph.get("e2e_ms")
    assert isinstance(depth, dict) and isinstance(e2e, dict)
    p99 = e2e.get("p99")
    return (
        float(ph["achieved_rate"]) >= 0.95 * rate  # type: ignore[arg-type]
        and float(ph["delivered_rate"]) >= 0.95 * rate  # type: ignore[arg-type]
        and depth["end"] - depth["start"] <= rate
        and p99 is not None
        and p99 < 1000
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=float, nargs="+", default=[1000.0, 10000.0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--probe-interval", type=float, default=0.5, help="seconds between probe readings")
    ap.add_argument(
        "--agent-cpu",
        type=float,
        default=None,
        help="hold the agent to this fraction of one core, on one core (a Pi-like budget; root)",
    )
    args = ap.parse_args()
    phases: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        stack = DemoStack(DemoOptions(directory=Path(tmp) / "stack", gateways=1))
        ledger = stack.dir / "load.ledger"
        try:
            stack.start_infrastructure()
            assert stack.cloud is not None and stack.influx is not None
            node = stack.nodes[0]
            issue_probe_device(stack)
            pids = {
                "agent": node.agent.pid,
                "broker": node.broker.process.pid,
                "cloud": stack.cloud.pid,
                "influxdb": stack.influx.process.pid,
            }
            procs = {k: psutil.Process(pid) for k, pid in pids.items() if pid is not None}
            budget = confine_cpu(procs["agent"].pid, args.agent_cpu) if args.agent_cpu else None
            time.sleep(10.0)  # past the start: the first heartbeat, the first checkpoint
            phases["idle"] = sample(procs, node, 30.0)
            for rate in args.rates:
                phases[f"{rate:g}"] = run_rate(stack, procs, rate, args, ledger)
            time.sleep(1.0)
            audit = audit_ledger(stack.influx.url, ledger)
        finally:
            stack.stop()
    summary: dict[str, object] = {"devices": args.devices, "rates": args.rates, "agent_cpu_budget": budget}
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
            f"floor_bytes_per_reading_{name}": ph.get("floor_bytes_per_reading"),
            f"readings_per_commit_{name}": ph.get("readings_per_commit"),
            f"e2e_p99_ms_{name}": (ph.get("e2e_ms") or {}).get("p99"),  # type: ignore[union-attr]
        }
    summary |= audit_summary(audit) | {"phases": phases}
    if budget:
        # The highest rate the agent kept up with: took in what was offered, delivered it, its
        # outbox did not grow by more than a second's worth, and the probe's p99 stayed under 1 s.
        kept = [float(name) for name, ph in phases.items() if name != "idle" and kept_up(float(name), ph)]
        summary["sustainable_rate"] = max(kept, default=0.0)
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
            line += f" | agent disk {bpr:.0f} B/reading (floor {ph['floor_bytes_per_reading']:.0f})"
            e2e = ph["e2e_ms"]
            assert isinstance(e2e, dict)
            line += f" | e2e p50 {e2e['p50'] or 0:.0f} ms p99 {e2e['p99'] or 0:.0f} ms"
        print(line)
    if budget:
        print(f"agent held to {budget}: sustainable rate {summary['sustainable_rate']:,.0f}/s")
    print(f"{audit_text(audit)}; backlog footprint: scenario gateway-backlog")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
