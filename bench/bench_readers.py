"""Gateway ingest latency while readers pull large site reads at full speed, beside ingest alone.

    .venv/bin/python bench/bench_readers.py [--devices 50] [--per-device 10000] [--readers 4] [--seconds 20]

One cloud (`citygate cloud run`, a separate process) against a real InfluxDB 1.x on this
machine. First ``devices x per-device`` readings are stored for one site (the last hour).
Then, in the same run:

  * ingest alone (the baseline): a gateway posts 500-reading batches at 10/s for
    ``--seconds`` and the latency of each POST /v1/ingest is recorded;
  * ingest under readers: the same, while ``--readers`` clients (one token each) read that
    site's raw series over the hour in a loop, as fast as they are answered (JSON, the
    answer capped at max_query_points rows over all the site's devices).

Prints p50/p99 of both, reads/s, rows per read, 429s and the cloud's peak RSS. By default
gateways post to the gateway listener (``gateway_port``) and readers to the main one;
``--one-listener`` puts both on one port. ``--cloud-pythonpath DIR`` runs the cloud from
another source tree (e.g. a git worktree of an older commit, with ``--one-listener``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx
import orjson
from _common import AIR_QUALITY_VALUES, GATEWAY_ID, bench_pki

from citygate.certs.pki import CaName, CertKind, Pki
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.process import free_port, port_open

VALUES = AIR_QUALITY_VALUES
SITE = "read-site"
PROBE_BATCH = 500
PROBE_RATE = 10.0
_NS = 1_000_000_000


def _gateway_cert(pki: Pki) -> tuple[str, str]:
    gw = pki.files(CertKind.GATEWAY, GATEWAY_ID)
    return str(gw.cert), str(gw.key)


def client(pki: Pki, port: int, *, cert: bool, token: str | None = None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert_path(CaName.INFRA)))
    if cert:
        ctx.load_cert_chain(*_gateway_cert(pki))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=f"https://localhost:{port}", verify=ctx, timeout=120, headers=headers, trust_env=False
    )


def batches(devices: list[str], per_device: int, t_end_ns: int, span_s: float, tag: str) -> list[bytes]:
    """Every device's readings spread over [t_end - span, t_end), as 5,000-reading gzip batches."""
    step = int(span_s * _NS / per_device)
    readings = []
    for k in range(per_device):
        for j, dev in enumerate(devices):
            ts_ms = (t_end_ns - (k + 1) * step) // 1_000_000 - j
            readings.append({"device_id": dev, "ts": ts_ms, "seq": k, "readings": VALUES})
    return [
        gzip.compress(orjson.dumps({"batch_id": f"{tag}-{i}", "readings": readings[i : i + 5000]}), 1)
        for i in range(0, len(readings), 5000)
    ]


def post_all(c: httpx.Client, bodies: list[bytes]) -> None:
    for body in bodies:
        r = c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
        if r.status_code != 200 or r.json()["rejected"]:
            raise SystemExit(f"preload failed: {r.status_code} {r.text[:300]}")


def probe(c: httpx.Client, bodies: list[bytes], seconds: float) -> list[float]:
    """POST batches at PROBE_RATE for ``seconds``; each one's latency in s."""
    lat = []
    t_next = time.perf_counter()
    for body in bodies[: int(PROBE_RATE * seconds)]:
        now = time.perf_counter()
        if now < t_next:
            time.sleep(t_next - now)
        t0 = time.perf_counter()
        r = c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
        lat.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise SystemExit(f"probe batch answered {r.status_code}: {r.text[:300]}")
        t_next += 1 / PROBE_RATE
    return lat


def _reader_process(
    ca: str, port: int, tokens: list[str], params: dict[str, str], stop: Event, out: Queue
) -> None:
    """In a process of its own (its parsing must not share the probe's GIL): read until ``stop``."""
    counts = {"reads": 0, "rows": 0, "bytes": 0, "truncated": 0, "too_many": 0, "errors": []}
    lock = threading.Lock()

    def run(token: str) -> None:
        ctx = ssl.create_default_context(cafile=ca)
        with httpx.Client(
            base_url=f"https://localhost:{port}",
            verify=ctx,
            timeout=300,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        ) as c:
            while not stop.is_set():
                r = c.get(f"/v1/sites/{SITE}/series", params=params)
                with lock:
                    if r.status_code == 429:
                        counts["too_many"] += 1
                    elif r.status_code != 200:
                        counts["errors"].append(f"{r.status_code} {r.text[:200]}")
                        if r.status_code < 500:
                            return  # a refusal (bad token, bad parameters): the bench is wrong
                    else:
                        doc = orjson.loads(r.content)
                        counts["reads"] += 1
                        counts["bytes"] += len(r.content)
                        counts["rows"] += sum(len(s["values"]) for s in doc["series"])
                        counts["truncated"] += bool(doc["truncated"])
                if r.status_code == 429:
                    time.sleep(float(r.headers.get("retry-after", "1")))

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(counts)


class Readers:
    """``len(tokens)`` readers, one token each, reading the site's raw hour in a loop until stopped."""

    def __init__(self, pki: Pki, port: int, tokens: list[str], start_ns: int, end_ns: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._out: Queue = ctx.Queue()
        params = {"profile": "air_quality", "start": str(start_ns), "end": str(end_ns), "time_format": "ns"}
        ca = str(pki.ca_cert_path(CaName.INFRA))
        self._proc = ctx.Process(
            target=_reader_process, args=(ca, port, tokens, params, self._stop, self._out), daemon=True
        )
        self.counts: dict[str, object] = {}

    def start(self) -> None:
        self._proc.start()

    def join(self) -> dict[str, object]:
        self._stop.set()
        self.counts = self._out.get(timeout=600)
        self._proc.join(60)
        return self.counts


class DirectProbe:
    """Meanwhile, 500-point line-protocol bodies straight to InfluxDB's /write at PROBE_RATE."""

    def __init__(self, influx: LocalInfluxDB, t_end_ns: int) -> None:
        self.lat: list[float] = []
        self._stop = threading.Event()
        self._url = f"{influx.url}/write"
        self._t_end = t_end_ns
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        fields = ",".join(f"{k}={v}" for k, v in VALUES.items())
        with httpx.Client(timeout=60, trust_env=False) as c:
            i = 0
            t_next = time.perf_counter()
            while not self._stop.is_set():
                now = time.perf_counter()
                if now < t_next:
                    time.sleep(t_next - now)
                body = "\n".join(
                    f"direct,device_id=d{j} {fields} {self._t_end - (i * PROBE_BATCH + j) * 1_000_000}"
                    for j in range(PROBE_BATCH)
                ).encode()
                t0 = time.perf_counter()
                c.post(self._url, params={"db": "bench", "precision": "ns"}, content=body)
                self.lat.append(time.perf_counter() - t0)
                i += 1
                t_next += 1 / PROBE_RATE

    def __enter__(self) -> DirectProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class RssPeak:
    """Peak RSS of a process, sampled every 0.1 s from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process used so far."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50, help="devices at the site that readers read")
    ap.add_argument("--per-device", type=int, default=10_000, help="stored readings per device (last hour)")
    ap.add_argument("--readers", type=int, default=4, help="reader clients, one token each")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each ingest probe")
    ap.add_argument("--one-listener", action="store_true", help="gateways and readers on one port")
    ap.add_argument("--cloud-pythonpath", type=Path, default=None, help="run the cloud from this tree")
    ap.add_argument("--cloud-log", type=Path, default=None, help="copy the cloud's log here at the end")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=TOML", help="a [cloud] setting: read_concurrency=1"
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-readers-") as tmp:
        work = Path(tmp)
        pki = bench_pki(work)
        read_devices = [f"read-{i:04d}" for i in range(args.devices)]
        probe_devices = [f"probe-{i:04d}" for i in range(50)]
        records = [
            DeviceRecord(device_id=d, profile="air_quality", profile_version=1, site=SITE, district="centre")
            for d in read_devices
        ] + [
            DeviceRecord(device_id=d, profile="air_quality", profile_version=1, site="probe-site")
            for d in probe_devices
        ]
        # Register the bench gateway for its devices where this inventory knows of gateways.
        inv = Inventory.load(pki.inventory_path)
        assign = "gateways" in DeviceRecord.model_fields
        inv.with_devices(
            *[r.model_copy(update={"gateways": (GATEWAY_ID,)}) if assign else r for r in records]
        ).save(pki.inventory_path)
        influx = LocalInfluxDB(work / "influx")
        influx.start()
        tokens = {f"reader{i}": secrets.token_urlsafe(32) for i in range(args.readers)}
        port = free_port()
        gateway_port = port if args.one_listener else free_port()
        server = pki.files(CertKind.SERVER, "localhost")
        cfg = work / "cloud.toml"
        cfg.write_text(
            "[cloud]\n"
            f'host = "127.0.0.1"\nport = {port}\n'
            + ("" if args.one_listener else f"gateway_port = {gateway_port}\n")
            + 'client_cert_mode = "optional"\n'
            f'tls_cert = "{server.cert}"\ntls_key = "{server.key}"\n'
            f'client_ca = "{pki.ca_cert_path(CaName.INFRA)}"\nclient_crl = "{pki.crl_path(CaName.INFRA)}"\n'
            f'inventory = "{pki.inventory_path}"\ninflux_url = "{influx.url}"\ninflux_db = "bench"\n'
            'log_level = "warning"\ninflux_timeout_s = 60\n'
            + "".join(f"{kv}\n" for kv in args.set)
            + "[cloud.reader_tokens]\n"
            + "".join(f'{k} = "{v}"\n' for k, v in tokens.items())
        )
        env = dict(os.environ)
        if args.cloud_pythonpath:
            env["PYTHONPATH"] = str(args.cloud_pythonpath)
        influx.create_database("bench")
        proc = subprocess.Popen(
            [sys.executable, "-m", "citygate", "cloud", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=(work / "cloud.log").open("wb"),
            env=env,
            # python -m puts the working directory first on sys.path: not this checkout's code.
            cwd=work if args.cloud_pythonpath else None,
        )
        try:
            deadline = time.monotonic() + 30
            while not (port_open("127.0.0.1", port) and port_open("127.0.0.1", gateway_port)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"cloud did not start: {(work / 'cloud.log').read_text()[-2000:]}")
                time.sleep(0.05)
            now = time.time_ns()
            start_ns, end_ns = now - 3600 * _NS, now
            gw = client(pki, gateway_port, cert=True)
            t0 = time.perf_counter()
            post_all(gw, batches(read_devices, args.per_device, end_ns - 5 * _NS, 3500, "pre"))
            stored = args.devices * args.per_device
            print(f"stored {stored:,} readings at {SITE} in {time.perf_counter() - t0:.1f} s")
            n_probe = int(PROBE_RATE * args.seconds)

            def probe_bodies(tag: str, t_end: int) -> list[bytes]:
                out = []
                for i in range(n_probe):
                    rs = [
                        {
                            "device_id": probe_devices[j % len(probe_devices)],
                            "ts": t_end // 1_000_000 - i * 1000 - j,
                            "readings": VALUES,
                        }
                        for j in range(PROBE_BATCH)
                    ]
                    out.append(gzip.compress(orjson.dumps({"batch_id": f"{tag}-{i}", "readings": rs}), 1))
                return out

            # Warm up both paths once (TLS, first imports, InfluxDB caches).
            probe(gw, probe_bodies("warm", end_ns - 1800 * _NS)[:5], 0.5)
            with client(pki, port, cert=False, token=next(iter(tokens.values()))) as c:
                c.get(f"/v1/sites/{SITE}/series", params={"profile": "air_quality", "start": str(start_ns)})
            pids = (proc.pid, influx.process.pid)
            cpu0, t_alone = [cpu_s(p) for p in pids], time.perf_counter()
            with RssPeak(proc.pid) as rss_alone, DirectProbe(influx, end_ns - 2400 * _NS) as direct_alone:
                alone = probe(gw, probe_bodies("alone", end_ns - 600 * _NS), args.seconds)
            cpu1, t_alone = [cpu_s(p) for p in pids], time.perf_counter() - t_alone
            readers = Readers(pki, port, list(tokens.values()), start_ns, end_ns)
            with RssPeak(proc.pid) as rss_readers, DirectProbe(influx, end_ns - 3000 * _NS) as direct_readers:
                readers.start()
                t_read = time.perf_counter()
                loaded = probe(gw, probe_bodies("loaded", end_ns - 1200 * _NS), args.seconds)
                read_s = time.perf_counter() - t_read
                cpu2 = [cpu_s(p) for p in pids]
                got = readers.join()
            errors = got["errors"]
            assert isinstance(errors, list)
            if any(not e.startswith("5") for e in errors):
                raise SystemExit(f"{len(errors)} failed reads, e.g. {errors[0]}")
            n_reads = int(got["reads"])  # type: ignore[call-overload]
            rows, n_bytes = int(got["rows"]), int(got["bytes"])  # type: ignore[call-overload]
            summary: dict[str, object] = {
                "stored_readings": stored,
                "readers": args.readers,
                "one_listener": args.one_listener,
                "ingest_alone_p50_ms": statistics.median(alone) * 1000,
                "ingest_alone_p99_ms": pct(alone, 0.99),
                "ingest_alone_max_ms": max(alone) * 1000,
                "ingest_readers_p50_ms": statistics.median(loaded) * 1000,
                "ingest_readers_p99_ms": pct(loaded, 0.99),
                "ingest_readers_max_ms": max(loaded) * 1000,
                "p99_ratio": pct(loaded, 0.99) / pct(alone, 0.99),
                "direct_write_alone_p99_ms": pct(direct_alone.lat, 0.99),
                "direct_write_readers_p99_ms": pct(direct_readers.lat, 0.99),
                "reads": n_reads,
                "reads_per_s": n_reads / read_s,
                "rows_per_read": rows / max(1, n_reads),
                "mb_per_read": n_bytes / max(1, n_reads) / 1e6,
                "reads_truncated": got["truncated"],
                "reads_429": got["too_many"],
                "reads_failed": len(errors),
                "cloud_cpu_alone": (cpu1[0] - cpu0[0]) / t_alone * 100,
                "cloud_cpu_readers": (cpu2[0] - cpu1[0]) / read_s * 100,
                "influxdb_cpu_alone": (cpu1[1] - cpu0[1]) / t_alone * 100,
                "influxdb_cpu_readers": (cpu2[1] - cpu1[1]) / read_s * 100,
                "cloud_rss_alone_mb": rss_alone.peak_kb / 1024,
                "cloud_rss_peak_mb": rss_readers.peak_kb / 1024,
            }
            print(
                f"ingest alone:        p50 {summary['ingest_alone_p50_ms']:.1f} ms  "
                f"p99 {summary['ingest_alone_p99_ms']:.1f} ms  (n={len(alone)})"
            )
            print(
                f"ingest with readers: p50 {summary['ingest_readers_p50_ms']:.1f} ms  "
                f"p99 {summary['ingest_readers_p99_ms']:.1f} ms  (n={len(loaded)})"
            )
            print(
                f"readers: {n_reads} reads ({summary['reads_per_s']:.2f}/s), "
                f"{summary['rows_per_read']:,.0f} rows and {summary['mb_per_read']:.1f} MB per read, "
                f"{got['truncated']} truncated, {got['too_many']} answered 429, {len(errors)} failed"
                + (f" (e.g. {errors[0][:80]})" if errors else "")
                + "; cloud RSS "
                f"{summary['cloud_rss_alone_mb']:.0f} MB alone, peak {summary['cloud_rss_peak_mb']:.0f} MB"
            )
            print(
                "InfluxDB /write directly, same size and rate: "
                f"p99 {summary['direct_write_alone_p99_ms']:.1f} ms alone, "
                f"{summary['direct_write_readers_p99_ms']:.1f} ms with readers"
            )
            print(
                f"CPU (100 % = one core): cloud {summary['cloud_cpu_alone']:.0f} % alone, "
                f"{summary['cloud_cpu_readers']:.0f} % with readers; InfluxDB "
                f"{summary['influxdb_cpu_alone']:.0f} % / {summary['influxdb_cpu_readers']:.0f} %"
            )
            gw.close()
            print(json.dumps(summary))
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                print(f"the cloud did not stop in 60 s; killed. Log: {work / 'cloud.log'}", file=sys.stderr)
                proc.kill()
                proc.wait()
            influx.stop()
            if args.cloud_log:
                args.cloud_log.write_bytes((work / "cloud.log").read_bytes())


if __name__ == "__main__":
    main()
