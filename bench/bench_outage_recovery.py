"""Outage recovery: a gateway's cloud link is cut while its devices keep publishing, then restored.

The whole system runs as in the demo (PKI, InfluxDB, the real cloud, one
gateway with its Mosquitto, a simulated fleet with a ledger). After a warm-up
the live rate is measured (the baseline: readings the agent delivers per
second in steady state, in the same run), together with the fresh-data latency
of a probe device. Then the gateway's link to the cloud is cut (a real TCP
cut, :class:`~citygate.servers.tcp_proxy.TcpProxy`) for ``--outage`` seconds
while the fleet keeps publishing, so a backlog builds up in the outbox. After
the link is restored:

- drain time: until the outbox depth is back to its live level (devices are
  still publishing, so it never reaches 0 before they stop);
- drain rate: readings the cloud confirmed per second during the drain (the
  agent's ``readings_out`` counter), and that rate as a multiple of the live
  rate; the net backlog rate (backlog / drain time) too;
- fresh-data latency during the drain: the probe of ``bench_e2e_latency`` (``_common.probe``)
  publishes throughout (the forwarder sends readings received within its
  live window first, then fills batches with the oldest backlog);
- the agent's peak RSS during the outage and during the drain.

At the end the fleet is stopped (SIGINT: it waits for its confirmations), the
outbox drains, and the simulator's ledger is audited against InfluxDB:
expected, stored, lost (must be 0), duplicated.

    .venv/bin/python bench/bench_outage_recovery.py [--devices 1000] [--rate 2000] [--outage 600]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _common import agent_counters, audit_summary, audit_text, fmt, issue_probe_device, pct, probe, stop_sim

from citygate.demo.run import audit_ledger
from citygate.demo.stack import DemoOptions, DemoStack


class RssSampler:
    """Peak RSS of one process, per labelled phase, sampled every 0.25 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.phase = "warmup"
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                mb = self.proc.memory_info().rss / 1e6
            except psutil.Error:
                return
            self.peak[self.phase] = max(self.peak.get(self.phase, 0.0), mb)
            self._stop.wait(0.25)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class ProbeLoop:
    """Runs ``probe`` in consecutive chunks until stopped; collects every latency."""

    def __init__(self, stack: DemoStack, chunk_s: float) -> None:
        self.stack = stack
        self.chunk_s = chunk_s
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.latencies += probe(self.stack, self.chunk_s)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> list[float]:
        self.stop.set()
        self._thread.join(self.chunk_s + 60)
        return sorted(self.latencies)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=2000.0, help="readings/s over the fleet")
    ap.add_argument("--outage", type=float, default=600.0, help="seconds the cloud link is cut")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds measuring the live rate")
    ap.add_argument("--drain-timeout", type=float, default=0.0, help="give up draining after (0: auto)")
    args = ap.parse_args()
    drain_timeout = args.drain_timeout or max(120.0, 3 * args.outage)
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
        stack = DemoStack(DemoOptions(directory=Path(tmp) / "stack", gateways=1))
        sim = None
        sampler = None
        ledger = stack.dir / "load.ledger"
        try:
            stack.start_infrastructure()
            assert stack.influx is not None
            issue_probe_device(stack)
            node = stack.nodes[0]
            assert node.agent.pid is not None
            sampler = RssSampler(node.agent.pid)
            sampler.start()
            sim = subprocess.Popen(
                stack.sim_command(
                    node, devices=args.devices, rate=args.rate, duration_s=86400, ledger=ledger
                ),
                stdout=(stack.dir / "sim.json").open("wb"),
                stderr=(stack.dir / "sim.log").open("ab"),
            )
            # Connect and reach the rate, then measure the live phase (rate, depth, latency).
            time.sleep(max(5.0, args.devices / 250 + 3))
            live_probe = ProbeLoop(stack, min(5.0, args.warmup))
            live_probe.start()
            t0 = time.monotonic()
            in0, out0, _ = agent_counters(node)
            live_depths = []
            while time.monotonic() - t0 < args.warmup:
                live_depths.append(agent_counters(node)[2])
                time.sleep(0.5)
            in1, out1, _ = agent_counters(node)
            live_s = time.monotonic() - t0
            live_lat = live_probe.join()
            live_in_rate = (in1 - in0) / live_s
            live_rate = (out1 - out0) / live_s
            # "Drained" = the depth is back at its live level (the fleet keeps publishing).
            drained_depth = max(2 * max(live_depths), int(live_in_rate), 100)

            sampler.phase = "outage"
            node.proxy.cut()
            t_cut = time.monotonic()
            while time.monotonic() - t_cut < args.outage:
                time.sleep(0.5)
            in_r, out_r, backlog = agent_counters(node)
            h = node.health() or {}
            backlog_mb = float(h.get("outbox_bytes", 0)) / 1e6  # type: ignore[arg-type]
            outage_in_rate = (in_r - in1) / (time.monotonic() - t_cut)

            sampler.phase = "drain"
            node.proxy.restore()
            t_restore = time.monotonic()
            drain_probe = ProbeLoop(stack, 2.0)
            drain_probe.start()
            drained = False
            depth = backlog
            peak_depth = backlog
            while time.monotonic() - t_restore < drain_timeout:
                _, out_d, depth = agent_counters(node)
                peak_depth = max(peak_depth, depth)
                if depth <= drained_depth:
                    drained = True
                    break
                time.sleep(0.5)
            drain_s = time.monotonic() - t_restore
            drain_delivered = out_d - out_r
            drain_lat = drain_probe.join()
            sampler.phase = "after"

            # Stop the fleet (it waits for its confirmations), let the outbox empty, audit.
            stop_sim(sim, 120)
            all_delivered = stack.wait_drained(max(120.0, drain_timeout))
            time.sleep(1.0)
            audit = audit_ledger(stack.influx.url, ledger)
        finally:
            if sampler is not None:
                sampler.stop()
            if sim is not None and sim.poll() is None:
                sim.kill()
            stack.stop()
    drain_rate = drain_delivered / drain_s if drain_s > 0 else 0.0
    summary: dict[str, object] = {
        "devices": args.devices,
        "target_rate": args.rate,
        "outage_s": args.outage,
        "live_rate_per_s": round(live_rate, 1),
        "live_in_rate_per_s": round(live_in_rate, 1),
        "outage_in_rate_per_s": round(outage_in_rate, 1),
        "live_depth_max": max(live_depths),
        "drained_depth": drained_depth,
        "backlog_readings": backlog,
        "backlog_peak_readings": peak_depth,
        "backlog_outbox_mb": round(backlog_mb, 1),
        "drained": drained,
        "drain_s": round(drain_s, 1),
        "drain_rate_per_s": round(drain_rate, 1),
        "drain_rate_x_live": round(drain_rate / live_rate, 2) if live_rate > 0 else None,
        "backlog_net_rate_per_s": round((backlog - depth) / drain_s, 1) if drain_s > 0 else None,
        "live_latency_p50_ms": pct(live_lat, 0.5),
        "live_latency_p99_ms": pct(live_lat, 0.99),
        "live_latency_n": len(live_lat),
        "drain_latency_p50_ms": pct(drain_lat, 0.5),
        "drain_latency_p99_ms": pct(drain_lat, 0.99),
        "drain_latency_max_ms": drain_lat[-1] * 1000 if drain_lat else None,
        "drain_latency_mean_ms": statistics.mean(drain_lat) * 1000 if drain_lat else None,
        "drain_latency_n": len(drain_lat),
        "agent_rss_mb": {k: round(v, 1) for k, v in sampler.peak.items()},
        "agent_rss_peak_mb": round(max(sampler.peak.get("outage", 0.0), sampler.peak.get("drain", 0.0)), 1),
        "all_delivered": all_delivered,
        **audit_summary(audit),
        "audit": audit,
    }
    print(
        f"live: {live_rate:,.0f} readings/s delivered ({live_in_rate:,.0f}/s in), {args.devices} devices; "
        f"probe p50 {fmt(summary['live_latency_p50_ms'])} ms p99 {fmt(summary['live_latency_p99_ms'])} ms"
    )
    print(
        f"outage {args.outage:.0f} s: backlog {backlog:,} readings ({backlog_mb:.0f} MB in the outbox); "
        f"agent RSS peak {sampler.peak.get('outage', 0.0):.1f} MB"
    )
    print(
        f"drain: {'back to live depth' if drained else 'NOT drained'} (<= {drained_depth:,}) after "
        f"{drain_s:.1f} s; {drain_rate:,.0f} readings/s delivered = {summary['drain_rate_x_live']}x live; "
        f"backlog net {summary['backlog_net_rate_per_s']:,} readings/s; "
        f"agent RSS peak {sampler.peak.get('drain', 0.0):.1f} MB"
    )
    print(
        f"fresh data during the {drain_s:.0f} s drain: probe p50 {fmt(summary['drain_latency_p50_ms'])} ms "
        f"p99 {fmt(summary['drain_latency_p99_ms'])} ms max {summary['drain_latency_max_ms'] or 0:.0f} ms "
        f"(n={len(drain_lat)}; 2 s probe chunks from the restore until drained)"
    )
    print(audit_text(audit) + ("" if all_delivered else "; outbox NOT empty at the end"))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
