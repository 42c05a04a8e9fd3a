"""``citygate bench``: run the benchmark scenarios and write a JSON file, a markdown report and plots.

Each scenario is a script in ``bench/`` (a source checkout; the wheel ships the same
scripts as ``citygate/_bench/``, see :func:`bench_dir`) that measures the
system and a baseline **in the same run on the same machine** and prints its
numbers as a JSON object on its last line. The runner repeats each scenario,
reports min/median/max of every headline number, puts each number beside its
target (met or not), and describes the machine.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from citygate.errors import ConfigError

_HERE = Path(__file__).resolve().parent
# Installed: the wheel carries bench/*.py as citygate/_bench/ (pyproject.toml, force-include).
# Checkout: bench/ beside the package. The packaged copy first, so an installed citygate
# never runs some unrelated site-packages/bench/.
BENCH_DIRS: tuple[Path, ...] = (_HERE / "_bench", _HERE.parent / "bench")


@dataclass(frozen=True, slots=True)
class Metric:
    key: str  # key in the script's JSON summary (dots for nesting)
    label: str
    unit: str
    target: float | None = None
    higher_is_better: bool = True

    def met(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    script: str
    full_args: tuple[str, ...]
    quick_args: tuple[str, ...]
    metrics: tuple[Metric, ...]
    baseline: str  # what the headline ratio is measured against, in words
    max_repeats: int | None = None  # full mode: at most this many runs (long scenarios); quick: as asked


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "validation",
        "Payload validation (the gateway's and the cloud's per-reading check)",
        "bench_validation.py",
        ("--n", "200000", "--runs", "5"),
        ("--n", "20000", "--runs", "2"),
        (
            Metric("validate_per_s", "validated readings/s", "1/s"),
            Metric("orjson_loads_per_s", "orjson.loads payloads/s (baseline)", "1/s"),
            Metric("ratio", "validate / orjson.loads", ""),
        ),
        "bare orjson.loads of the same payloads",
    ),
    Scenario(
        "gateway-intake",
        "Gateway intake ceiling (mTLS, QoS1, validated, fsync'd, PUBACK after commit)",
        "bench_gateway_intake.py",
        ("--devices", "20", "--per-device", "10000", "--repeats", "1"),
        ("--devices", "5", "--per-device", "2000", "--repeats", "1"),
        (
            Metric("agent_rate.median", "agent readings/s", "1/s", 20_000),
            Metric("mosquitto_sub_rate.median", "mosquitto_sub readings/s (baseline)", "1/s"),
            Metric("ratio.median", "agent / mosquitto_sub", "", 0.4),
            Metric("agent_rss_max_mb", "agent peak RSS", "MB", 80, higher_is_better=False),
            Metric("bytes_written_per_reading", "disk bytes written per reading", "B"),
        ),
        "mosquitto_sub (C client) receiving the same stream from the same broker",
    ),
    Scenario(
        "cloud-ingest",
        "Cloud ingestion ceiling (POST /v1/ingest -> InfluxDB 1.x, synchronous writes)",
        "bench_cloud.py",
        ("--points", "200000"),
        ("--points", "20000", "--replicas", "1"),
        (
            Metric("service_rate_1", "service, 1 replica, points/s", "1/s"),
            Metric("ratio_1", "1 replica / direct /write", "", 0.7),
            Metric("service_rate_2", "service, 2 replicas, points/s", "1/s"),
            Metric("ratio_2", "2 replicas / direct /write", "", 0.7),
            Metric("direct_rate", "direct /write points/s (baseline)", "1/s"),
            Metric("latency_p50_ms", "POST /v1/ingest p50", "ms"),
            Metric("latency_p99_ms", "POST /v1/ingest p99", "ms"),
        ),
        "the same line protocol posted straight to InfluxDB's /write in 5,000-point batches",
    ),
    Scenario(
        "cloud-readers",
        "Gateway ingest latency while readers pull large site reads at full speed (one cloud, "
        "gateways on their own listener, InfluxDB 1.x)",
        "bench_readers.py",
        ("--devices", "50", "--per-device", "10000", "--readers", "4", "--seconds", "20"),
        ("--devices", "10", "--per-device", "2000", "--readers", "2", "--seconds", "5"),
        (
            Metric("ingest_alone_p99_ms", "POST /v1/ingest p99, no readers (baseline)", "ms"),
            Metric(
                "ingest_readers_p99_ms",
                "POST /v1/ingest p99 while readers pull",
                "ms",
                1000,
                higher_is_better=False,
            ),
            Metric("ingest_alone_p50_ms", "POST /v1/ingest p50, no readers", "ms"),
            Metric("ingest_readers_p50_ms", "POST /v1/ingest p50 while readers pull", "ms"),
            Metric("p99_ratio", "p99 with readers / alone", "", higher_is_better=False),
            Metric("direct_write_readers_p99_ms", "InfluxDB /write p99 while readers pull (same rate)", "ms"),
            Metric("reads_per_s", "site reads answered/s", "1/s"),
            Metric("rows_per_read", "rows per read (cap: max_query_points)", ""),
            Metric("reads_failed", "reads failed (5xx)", "", higher_is_better=False),
            Metric("cloud_rss_peak_mb", "cloud peak RSS while readers pull", "MB", higher_is_better=False),
        ),
        "the same ingest probe with no readers, in the same run (and InfluxDB's own /write beside it)",
    ),
    Scenario(
        "e2e-latency",
        "End-to-end latency: device publish -> point visible in InfluxDB, under load",
        "bench_e2e_latency.py",
        ("--devices", "1000", "--rate", "2000", "--seconds", "30"),
        ("--devices", "200", "--rate", "400", "--seconds", "10"),
        (
            Metric("p50_ms", "p50 under load", "ms"),
            Metric("p95_ms", "p95 under load", "ms"),
            Metric("p99_ms", "p99 under load", "ms", 1000, higher_is_better=False),
            Metric("idle_p99_ms", "p99 without load (baseline)", "ms"),
            Metric("achieved_rate", "background load, readings/s", "1/s"),
        ),
        "the same probe with no background load, in the same run",
    ),
    Scenario(
        "fleet-scale",
        "Fleet scale: connected mTLS devices on one gateway (connect time, CPU, memory)",
        "bench_fleet_scale.py",
        ("--sizes", "1000", "5000", "10000", "--seconds", "30"),
        ("--sizes", "300", "--seconds", "10"),
        tuple(
            m
            for n in ("300", "1000", "5000", "10000")
            for m in (
                Metric(f"connect_s_{n}", f"{n} devices: all connected after", "s"),
                Metric(f"broker_cpu_{n}", f"{n} devices: broker CPU", "%"),
                Metric(f"agent_cpu_{n}", f"{n} devices: agent CPU", "%"),
                Metric(f"agent_rss_mb_{n}", f"{n} devices: agent RSS", "MB"),
            )
        ),
        "the same processes idle before the fleet connects (in results.json)",
        max_repeats=1,  # three fleet sizes, 10,000 mTLS devices: minutes per run
    ),
    Scenario(
        "gateway-backlog",
        "Gateway with a large backlog: memory and drain rate (test cloud over TLS)",
        "bench_gateway_backlog.py",
        ("--readings", "1000000"),
        ("--readings", "50000"),
        (
            Metric(
                "rss_mb_while_held.max", "agent RSS while the cloud is down", "MB", 80, higher_is_better=False
            ),
            Metric("rss_mb_while_draining.max", "agent RSS while draining", "MB", 80, higher_is_better=False),
            Metric("drain_rate_per_s", "drain readings/s", "1/s"),
            Metric("backlog_readings", "backlog readings", ""),
        ),
        "none (absolute numbers)",
    ),
    Scenario(
        "peer-thingsboard",
        "Peer: ThingsBoard IoT Gateway (MQTT connector, SQLite storage) on the gateway-intake stream "
        "(citygate's agent: >= 20,000/s and >= 0.4 of mosquitto_sub)",
        "bench_peer_thingsboard.py",
        # 40,000, not gateway-intake's 200,000: with 200,000 queued, ThingsBoard gateway 3.8.5 lost
        # its broker connection every 2 min ("multiple CONNECT messages") and trickled for 13+ min.
        ("--devices", "20", "--per-device", "2000", "--repeats", "1"),
        ("--devices", "5", "--per-device", "2000", "--repeats", "1"),
        (
            Metric("tb_rate.median", "ThingsBoard gateway readings/s (end to end)", "1/s"),
            Metric("mosquitto_sub_rate.median", "mosquitto_sub readings/s (baseline)", "1/s"),
            Metric("ratio.median", "ThingsBoard gateway / mosquitto_sub", ""),
            Metric("tb_rss_max_mb", "ThingsBoard gateway peak RSS", "MB", higher_is_better=False),
            Metric("tb_cpu_s_per_1k_readings", "ThingsBoard gateway CPU per 1k readings", "s"),
            Metric("readings_lost", "readings lost", "", higher_is_better=False),
            Metric("duplicates", "readings forwarded twice", "", higher_is_better=False),
        ),
        "mosquitto_sub (C client) receiving the same stream from the same broker; the ThingsBoard "
        "gateway's rate is end to end (devices -> its SQLite storage -> a local Mosquitto standing in "
        "for the ThingsBoard server), to set beside gateway-intake's agent / mosquitto_sub",
    ),
    Scenario(
        "outage-recovery",
        "Outage recovery: the gateway's cloud link cut while devices keep publishing, then restored "
        "(real cloud and InfluxDB; drain time and rate, fresh-data latency, ledger audit)",
        "bench_outage_recovery.py",
        ("--devices", "1000", "--rate", "2000", "--outage", "600", "--warmup", "20"),
        ("--devices", "500", "--rate", "2000", "--outage", "30", "--warmup", "10"),
        (
            Metric("drain_s", "backlog drained (back to live depth) after", "s", higher_is_better=False),
            Metric("drain_rate_per_s", "readings/s delivered during the drain", "1/s"),
            Metric("drain_rate_x_live", "drain rate / live rate", ""),
            Metric("live_rate_per_s", "live rate before the outage, readings/s (baseline)", "1/s"),
            Metric("drain_latency_p99_ms", "fresh-data p99 during the drain", "ms", higher_is_better=False),
            Metric("live_latency_p99_ms", "fresh-data p99 before the outage", "ms", higher_is_better=False),
            Metric("backlog_readings", "backlog when the link came back", ""),
            Metric("agent_rss_peak_mb", "agent peak RSS (outage and drain)", "MB", higher_is_better=False),
            Metric("lost", "readings lost (ledger audit)", "", 0, higher_is_better=False),
            Metric("duplicated", "readings stored twice (ledger audit)", "", higher_is_better=False),
        ),
        "the live rate and fresh-data latency of the same system just before the outage, in the same run",
        max_repeats=1,
    ),
    Scenario(
        "footprint",
        "Footprint at city rates and above (30, 100, 1,000 and 10,000 readings/s): agent disk bytes "
        "per reading beside their floor, device-to-InfluxDB p99, CPU and RSS of the agent, broker "
        "and cloud; with a 1M-reading backlog: see gateway-backlog",
        "bench_footprint.py",
        ("--rates", "30", "100", "1000", "10000", "--seconds", "60", "--devices", "1000"),
        ("--rates", "30", "1000", "--seconds", "15", "--devices", "300"),
        (
            Metric("agent_rss_mb_idle", "agent RSS, idle (baseline)", "MB", higher_is_better=False),
            Metric("agent_cpu_idle", "agent CPU, idle", "%", 0.5, higher_is_better=False),
            *(
                m
                for r, disk_target in (("30", 1000.0), ("100", 1000.0), ("1000", 400.0), ("10000", None))
                for m in (
                    Metric(f"achieved_rate_{r}", f"target {int(r):,}/s: achieved readings/s", "1/s"),
                    Metric(
                        f"disk_bytes_per_reading_{r}",
                        f"{int(r):,}/s: agent disk bytes written per reading",
                        "B",
                        disk_target,
                        higher_is_better=False,
                    ),
                    Metric(
                        f"floor_bytes_per_reading_{r}",
                        f"{int(r):,}/s: floor (each commit's payloads in whole 4 KiB pages)",
                        "B",
                        higher_is_better=False,
                    ),
                    Metric(f"e2e_p99_ms_{r}", f"{int(r):,}/s: device -> InfluxDB p99", "ms", 1000.0, False),
                    Metric(f"agent_rss_mb_{r}", f"{int(r):,}/s: agent RSS", "MB", higher_is_better=False),
                    Metric(f"agent_cpu_{r}", f"{int(r):,}/s: agent CPU", "%", higher_is_better=False),
                    Metric(f"broker_cpu_{r}", f"{int(r):,}/s: broker CPU", "%", higher_is_better=False),
                    Metric(f"cloud_rss_mb_{r}", f"{int(r):,}/s: cloud RSS", "MB", higher_is_better=False),
                    Metric(f"cloud_cpu_{r}", f"{int(r):,}/s: cloud CPU", "%", higher_is_better=False),
                )
            ),
        ),
        "the same processes idle before the load, in the same run (CPU 100 % = one core; the "
        "simulator shares the machine: read the achieved rate)",
    ),
    Scenario(
        "service",
        "Service layer: cloud ingest with rules on / off, reading stored -> case opened at 5,000 "
        "readings/s, transition -> webhook delivered, deliveries/s, catch-up after a receiver outage "
        "(SQLite store)",
        "bench_service.py",
        (
            "--ingest-points",
            "100000",
            "--ingest-rounds",
            "4",
            "--rate",
            "5000",
            "--seconds",
            "60",
            "--transitions",
            "500",
            "--deliveries",
            "5000",
            "--concurrency",
            "4",
            "16",
            "--outage-events",
            "10000",
            "--outage-modes",
            "replay",
            "short",
        ),
        (
            "--ingest-points",
            "20000",
            "--ingest-rounds",
            "2",
            "--rate",
            "5000",
            "--seconds",
            "10",
            "--transitions",
            "100",
            "--deliveries",
            "500",
            "--concurrency",
            "4",
            "16",
            "--outage-events",
            "500",
            "--outage-modes",
            "replay",
            "short",
        ),
        (
            Metric("ingest_ratio", "ingest readings/s, rules on / rules off", "", 0.9),
            Metric("ingest_on_rate", "ingest readings/s, rules on", "1/s"),
            Metric("ingest_off_rate", "ingest readings/s, rules off (baseline)", "1/s"),
            Metric("evaluated_rate", "readings/s evaluated (post start -> feed empty)", "1/s"),
            Metric(
                "ingest_ratio_separate", "ingest readings/s, rules on / off, workers in service run", "", 0.9
            ),
            Metric("ingest_on_rate_separate", "ingest readings/s, rules on, workers in service run", "1/s"),
            Metric("case_p50_ms", "reading stored -> case opened p50, 5,000/s offered", "ms", None, False),
            Metric("case_p99_ms", "reading stored -> case opened p99, 5,000/s offered", "ms", 5000, False),
            Metric("case_delivered_p99_ms", "reading stored -> event at the receiver p99", "ms", None, False),
            Metric("case_achieved_rate", "readings/s achieved (5,000 offered)", "1/s"),
            Metric(
                "case_p99_ms_separate",
                "reading stored -> case opened p99, workers in service run",
                "ms",
                5000,
                False,
            ),
            Metric("transition_p50_ms", "transition -> delivered p50", "ms", None, False),
            Metric("transition_p99_ms", "transition -> delivered p99", "ms", None, False),
            Metric("deliver_baseline_p99_ms", "deliver() alone p99 (baseline)", "ms", None, False),
            Metric("deliveries_per_s_c4", "deliveries/s, max_concurrency 4", "1/s"),
            Metric("deliveries_ratio_c4", "max_concurrency 4 / deliver() x4 threads", ""),
            Metric("deliveries_per_s_c16", "deliveries/s, max_concurrency 16", "1/s"),
            Metric("deliveries_ratio_c16", "max_concurrency 16 / deliver() x16 threads", ""),
            Metric("outage_catch_up_s_replay", "outage: all delivered after (replay)", "s", None, False),
            Metric("outage_catch_up_s_short", "outage: delivered after (1-5 s retries)", "s", None, False),
        ),
        "ingest: the same batches to a cloud without [cloud.service], interleaved; case: POST "
        "/v1/ingest itself; webhooks: delivery.deliver() of the same events without the store",
        max_repeats=1,  # about 6 minutes per run
    ),
    Scenario(
        "open311",
        "Open311 POST requests/s sustained (citizen reports into cases, SQLite store)",
        "bench_open311.py",
        ("--reports", "1000", "--rounds", "2"),
        ("--reports", "200", "--rounds", "1"),
        (
            Metric("sqlite.http_rate_median", "POST requests.json per s", "1/s"),
            Metric("sqlite.store_rate_median", "the same report through the store call (baseline)", "1/s"),
            Metric("sqlite.ratio_median", "HTTP / store call", ""),
        ),
        "CaseStore.report of the same reports, without HTTP",
    ),
    Scenario(
        "progress",
        "The public progress page: requests/s and the database queries behind them (10,000 cases)",
        "bench_progress.py",
        ("--cases", "10000", "--seconds", "10"),
        ("--cases", "1000", "--scale", "0", "--seconds", "2"),
        (
            Metric("cached_rps", "GET /public/v1/progress per s", "1/s"),
            Metric("page_rps", "GET /public per s", "1/s"),
            Metric("cached_queries_per_s", "database queries/s behind them", "1/s", None, False),
            Metric("uncached_rps", "computed per request (baseline) per s", "1/s"),
            Metric("uncached_queries_per_s", "database queries/s, computed per request", "1/s", None, False),
        ),
        "the same figures computed for every request (no cache)",
    ),
    Scenario(
        "sta",
        "SensorThings API: a device-day of Observations (8,640 points), a 1,000-device Things page",
        "bench_sta.py",
        ("--devices", "1000", "--points", "8640", "--repeat", "20"),
        ("--devices", "100", "--points", "1000", "--repeat", "5"),
        (
            Metric("day_sta.p50_ms", "device-day through STA p50", "ms", None, False),
            Metric("day_sta.p99_ms", "device-day through STA p99", "ms", None, False),
            Metric(
                "day_influxdb_direct.p99_ms",
                "the same InfluxQL to InfluxDB p99 (baseline)",
                "ms",
                None,
                False,
            ),
            Metric("things_sta_https.p50_ms", "Things?$expand=Datastreams page p50", "ms", None, False),
            Metric("things_sta_https.p99_ms", "Things?$expand=Datastreams page p99", "ms", None, False),
        ),
        "the same InfluxQL sent to InfluxDB directly; the inventory serialised without STA",
    ),
    Scenario(
        "ngsi",
        "NGSI-LD export: entities/s for 1,000 devices, GET /ngsi-ld/v1/entities requests/s",
        "bench_ngsi.py",
        ("--devices", "1000", "--seconds", "5"),
        ("--devices", "100", "--seconds", "2"),
        (
            Metric("uncached.entities_per_s", "entities/s exported, query + build per request", "1/s"),
            Metric("uncached.vs_baseline", "uncached requests / the same InfluxQL direct", ""),
            Metric("cached.requests_per_s", "entities requests/s (cached)", "1/s"),
            Metric("baseline.requests_per_s", "the latest-value InfluxQL to InfluxDB (baseline)", "1/s"),
        ),
        "the same latest-value InfluxQL sent to InfluxDB directly",
    ),
)


def bench_dir() -> Path:
    """The directory holding the scenario scripts, installed or in a checkout."""
    for d in BENCH_DIRS:
        if all((d / s.script).is_file() for s in SCENARIOS):
            return d
    raise ConfigError(
        "the benchmark scripts were not found (looked in "
        + ", ".join(str(d) for d in BENCH_DIRS)
        + "): reinstall citygate from its wheel, or run from a source checkout"
    )


@dataclass
class ScenarioRun:
    scenario: Scenario
    results: list[dict[str, object]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.results:
            v: object = r
            for part in key.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            if isinstance(v, int | float):
                out.append(float(v))
        return out


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9

    def version(cmd: list[str]) -> str:
        exe = shutil.which(cmd[0])
        if not exe:
            return "not installed"
        try:
            out = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return (
            (out.stdout or out.stderr).strip().splitlines()[0][:80]
            if (out.stdout or out.stderr)
            else "unknown"
        )

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(mem_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mosquitto": version(["mosquitto", "-h"]),
        "influxd": version(["influxd", "version"]),
    }


def run_scenarios(
    names: Sequence[str], *, quick: bool, repeats: int, log: Callable[[str], None] = print
) -> list[ScenarioRun]:
    by_name = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    bench = bench_dir()
    runs = []
    for name in names or [s.name for s in SCENARIOS]:
        sc = by_name[name]
        run = ScenarioRun(sc)
        t0 = time.perf_counter()
        n = repeats if quick or sc.max_repeats is None else min(repeats, sc.max_repeats)
        for i in range(n):
            log(f"[{sc.name}] run {i + 1}/{n} ...")
            args = sc.quick_args if quick else sc.full_args
            proc = subprocess.run(
                [sys.executable, str(bench / sc.script), *args],
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                run.errors.append(f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
                continue
            try:
                run.results.append(orjson.loads(lines[-1]))
            except orjson.JSONDecodeError as e:  # e.g. NaN from an empty sample: an error, not a crash
                run.errors.append(f"unreadable summary ({e}): {lines[-1][:300]}")
        run.seconds = time.perf_counter() - t0
        runs.append(run)
    return runs


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def write_report(runs: list[ScenarioRun], out: Path, *, command: str, quick: bool) -> dict[str, Path]:
    """JSON (everything), markdown (tables with targets), one PNG per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    doc: dict[str, object] = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "command": command,
        "quick": quick,
        "machine": info,
        "scenarios": {},
    }
    md = [
        "# citygate benchmark report",
        "",
        f"Generated {doc['generated_at']} by `{command}`" + (" (quick mode)" if quick else ""),
        "",
        f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gb']} GB, Linux "
        f"{info['kernel']}, Python {info['python']}; {info['mosquitto']}; InfluxDB {info['influxd']}.",
        "Every ratio is against a baseline measured in the same run on the same machine; "
        "machines here are shared and noisy, so read min/median/max.",
        "",
    ]
    scenarios: dict[str, object] = {}
    files = {}
    for run in runs:
        sc = run.scenario
        rows = []
        md += [
            f"## {sc.title}",
            "",
            f"Baseline: {sc.baseline}. Script: `bench/{sc.script}`; "
            f"{len(run.results)} run(s), {run.seconds:.0f} s.",
            "",
        ]
        md += ["| metric | min | median | max | target | met |", "|---|---|---|---|---|---|"]
        medians, labels, lo, hi = [], [], [], []
        for m in sc.metrics:
            vals = run.values(m.key)
            if not vals:
                continue
            mn, med, mx = min(vals), statistics.median(vals), max(vals)
            met = m.met(med)
            target = "" if m.target is None else ("≥ " if m.higher_is_better else "≤ ") + _fmt(m.target)
            md.append(
                f"| {m.label} | {_fmt(mn)} | {_fmt(med)} | {_fmt(mx)} | {target} | "
                f"{'' if met is None else ('yes' if met else '**no**')} |"
            )
            rows.append(
                {
                    "metric": m.key,
                    "label": m.label,
                    "unit": m.unit,
                    "min": mn,
                    "median": med,
                    "max": mx,
                    "target": m.target,
                    "met": met,
                }
            )
            if m.target is not None or "ratio" in m.key:
                medians.append(med / m.target if m.target else med)
                labels.append(m.label + (" (÷ target)" if m.target else ""))
                lo.append((med - mn) / (m.target or 1))
                hi.append((mx - med) / (m.target or 1))
        for e in run.errors:
            md += ["", f"Run failed: `{e[:300]}`"]
        if medians:
            fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(medians)))
            ax.barh(labels, medians, xerr=[lo, hi], color="#2a62c9")
            ax.axvline(1.0, color="#b3261e", linestyle="--", linewidth=1)
            ax.set_xlabel("median (1.0 = target where a target exists); bars: min-max")
            ax.set_title(sc.name)
            fig.tight_layout()
            png = out / f"{sc.name}.png"
            fig.savefig(png, dpi=90)
            plt.close(fig)
            files[sc.name] = png
            md += ["", f"![{sc.name}]({png.name})"]
        md.append("")
        scenarios[sc.name] = {
            "title": sc.title,
            "baseline": sc.baseline,
            "metrics": rows,
            "raw": run.results,
            "errors": run.errors,
            "seconds": run.seconds,
        }
    doc["scenarios"] = scenarios
    (out / "results.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    (out / "report.md").write_text("\n".join(md) + "\n")
    files["json"] = out / "results.json"
    files["markdown"] = out / "report.md"
    return files
