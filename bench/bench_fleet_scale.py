"""Fleet scale: N connected mTLS devices on one gateway (broker + agent + the rest of the system).

For each fleet size: connect time of the whole fleet (each device its own
certificate, ramp-up with jitter), then a steady phase at a low per-device
rate, sampling the broker's and the agent's CPU and memory. Baseline: the same
processes idle before the fleet connects, in the same run.

    .venv/bin/python bench/bench_fleet_scale.py [--sizes 1000 5000] [--seconds 30] [--interval 30]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
from _common import read_sim_summary

from citygate.demo.stack import DemoOptions, DemoStack, SimRun


def sample(procs: dict[str, psutil.Process], seconds: float) -> dict[str, dict[str, float]]:
    cpu0 = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
    rss = dict.fromkeys(procs, 0.0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for k, p in procs.items():
            rss[k] = max(rss[k], p.memory_info().rss / 1e6)
        time.sleep(0.5)
    dt = time.monotonic() - t0
    return {
        k: {"cpu_percent": (sum(p.cpu_times()[:2]) - cpu0[k]) / dt * 100, "rss_mb": rss[k]}
        for k, p in procs.items()
    }


def connected(sim: psutil.Process, port: int) -> int:
    """The simulator's established connections to the broker's device listener."""
    try:
        conns = sim.net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port)


def run_size(n: int, seconds: float, interval: float, work: Path) -> dict[str, object]:
    stack = DemoStack(DemoOptions(directory=work / f"fleet-{n}", gateways=1))
    sim = None
    try:
        stack.start_infrastructure()
        node = stack.nodes[0]
        assert node.broker.process.pid is not None and node.agent.pid is not None
        procs = {"broker": psutil.Process(node.broker.process.pid), "agent": psutil.Process(node.agent.pid)}
        idle = sample(procs, 3.0)
        out = work / f"sim-{n}.json"
        t0 = time.monotonic()
        # Stopped by SIGINT below; the duration is an upper bound beyond issuing, ramp-up and sampling.
        run = SimRun(n, seconds + n / 20 + 300, interval_s=interval, client="lite")
        sim = subprocess.Popen(
            run.argv(node, stack.dir / "pki", stack.dir / "ledger.bin"),
            stdout=out.open("wb"),
            stderr=(work / f"sim-{n}.log").open("ab"),
        )
        sim_proc = psutil.Process(sim.pid)
        # The connect time comes from the simulator's summary at exit (all_connected_after_s);
        # here we wait for the ramp-up (after the simulator issued the missing certificates:
        # ~30 s for 10,000), until every device is connected or a generous bound, then sample
        # the steady phase.
        time.sleep(max(5.0, n / 250 + 5))
        deadline = time.monotonic() + 60 + n / 25
        while connected(sim_proc, node.broker.device_port) < n and time.monotonic() < deadline:
            if sim.poll() is not None:
                break
            time.sleep(2.0)
        procs["simulator"] = sim_proc
        steady = sample(procs, seconds)
        sim.send_signal(signal.SIGINT)
        sim.wait(120)
        doc = read_sim_summary(out)
        return {
            "devices": n,
            "all_connected_after_s": doc.get("all_connected_after_s"),
            "connect_failures": doc.get("connect_failures"),
            "readings": doc.get("produced"),
            "idle": idle,
            "steady": steady,
            "wall_s": time.monotonic() - t0,
        }
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
        stack.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=30.0)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for n in args.sizes:
            r = run_size(n, args.seconds, args.interval, Path(tmp))
            results[str(n)] = r
            s = r["steady"]
            print(
                f"{n:>6} devices: all connected after {r['all_connected_after_s']} s "
                f"(failures {r['connect_failures']}); broker CPU {s['broker']['cpu_percent']:.0f} % "
                f"RSS {s['broker']['rss_mb']:.0f} MB; agent CPU {s['agent']['cpu_percent']:.0f} % "
                f"RSS {s['agent']['rss_mb']:.0f} MB; simulator RSS {s['simulator']['rss_mb']:.0f} MB"
            )
    flat = {
        f"{k}_{m}": v
        for n, r in results.items()
        for k, m, v in (
            ("connect_s", n, r["all_connected_after_s"]),
            ("broker_cpu", n, r["steady"]["broker"]["cpu_percent"]),  # type: ignore[index]
            ("broker_rss_mb", n, r["steady"]["broker"]["rss_mb"]),  # type: ignore[index]
            ("agent_cpu", n, r["steady"]["agent"]["cpu_percent"]),  # type: ignore[index]
            ("agent_rss_mb", n, r["steady"]["agent"]["rss_mb"]),  # type: ignore[index]
        )
    }
    print(json.dumps(flat | {"sizes": results}))


if __name__ == "__main__":
    main()
