"""Cloud ingestion throughput and latency, against a real InfluxDB 1.x on this machine.

    .venv/bin/python bench/bench_cloud.py [--points 200000] [--batch 5000] [--replicas 1 2]

Reports, in one run:
  * direct: points/s posting the same line protocol straight to InfluxDB /write
    (5,000-line batches, one connection): the ceiling;
  * service: points/s of gzip JSON gateway batches through `citygate cloud run`
    (mutual TLS, re-validation, line protocol, synchronous write) with 1 and 2
    replicas (separate processes, each gateway connection pinned to one);
    the ratio service/direct (target >= 0.7);
  * p50/p99 latency of POST /v1/ingest at a nominal load (500-reading batches,
    10 batches/s, one replica).
Bodies are built and gzipped before timing: the gateway's cost is not measured.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
from _common import AIR_QUALITY_VALUES

from citygate.certs.pki import CaName, CertKind, Pki
from citygate.certs.settings import PkiSettings
from citygate.cloud.lineprotocol import ReadingEncoder
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.validation import Validator
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.process import free_port, port_open

N_DEVICES = 1000
VALUES = AIR_QUALITY_VALUES


def make_readings(n: int, t_end_ns: int) -> list[dict]:
    out = []
    for i in range(n):
        dev, k = i % N_DEVICES, i // N_DEVICES
        ts_ms = t_end_ns // 1_000_000 - 3_600_000 - k * 1000 - dev  # distinct per device
        out.append(
            {
                "device_id": f"bench-{dev:04d}",
                "ts": ts_ms,
                "seq": k,
                "readings": {**VALUES, "pm2_5": 10.0 + (i % 97) / 4},
            }
        )
    return out


def direct_lines(readings: list[dict], inventory: Inventory) -> list[str]:
    v = Validator(ProfileRegistry(), inventory)
    enc = ReadingEncoder()
    lines = []
    for r in readings:
        obj = {k: x for k, x in r.items() if k != "device_id"}
        rd = v.validate_obj(r["device_id"], obj)
        rec = inventory[r["device_id"]]
        lines.append(enc.line(rd, rec.site, rec.district))  # type: ignore[arg-type]
    return lines


def bench_direct(influx: LocalInfluxDB, db: str, lines: list[str], batch: int) -> float:
    bodies = ["\n".join(lines[i : i + batch]).encode() for i in range(0, len(lines), batch)]
    with httpx.Client(timeout=60, trust_env=False) as c:
        t0 = time.perf_counter()
        for b in bodies:
            r = c.post(f"{influx.url}/write", params={"db": db, "precision": "ns"}, content=b)
            assert r.status_code == 204, r.text
        dt = time.perf_counter() - t0
    return len(lines) / dt


def start_replicas(n: int, work: Path, pki: Pki, influx: LocalInfluxDB, db: str) -> tuple[list, list[int]]:
    procs, ports = [], []
    for i in range(n):
        port = free_port()
        cfg = work / f"cloud-{i}.toml"
        server = pki.files(CertKind.SERVER, "localhost")
        cfg.write_text(
            "[cloud]\n"
            f'host = "127.0.0.1"\nport = {port}\n'
            f'tls_cert = "{server.cert}"\ntls_key = "{server.key}"\n'
            f'client_ca = "{pki.ca_cert_path(CaName.INFRA)}"\nclient_crl = "{pki.crl_path(CaName.INFRA)}"\n'
            f'inventory = "{pki.inventory_path}"\ninflux_url = "{influx.url}"\ninflux_db = "{db}"\n'
            'log_level = "warning"\n'
        )
        p = subprocess.Popen(
            [sys.executable, "-m", "citygate", "cloud", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=(work / f"cloud-{i}.log").open("wb"),
        )
        procs.append(p)
        ports.append(port)
    for port, p in zip(ports, procs, strict=True):
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"replica on {port} did not start; see {work}")
            time.sleep(0.05)
    return procs, ports


def client(pki: Pki, port: int) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert_path(CaName.INFRA)))
    gw = pki.files(CertKind.GATEWAY, "gw-bench")
    ctx.load_cert_chain(str(gw.cert), str(gw.key))
    return httpx.Client(base_url=f"https://localhost:{port}", verify=ctx, timeout=60, trust_env=False)


def bodies_of(readings: list[dict], batch: int, tag: str) -> list[bytes]:
    return [
        gzip.compress(orjson.dumps({"batch_id": f"{tag}-{i}", "readings": readings[i : i + batch]}), 1)
        for i in range(0, len(readings), batch)
    ]


def bench_service(
    pki: Pki, ports: list[int], bodies: list[bytes], n_points: int, conns_per_replica: int
) -> float:
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def worker(port: int) -> None:
        with client(pki, port) as c:
            c.get("/healthz")
            while True:
                with lock:
                    if not queue:
                        return
                    _, body = queue.pop()
                r = c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
                if r.status_code != 200 or r.json()["rejected"]:
                    errors.append(r.text[:300])

    threads = [threading.Thread(target=worker, args=(p,)) for p in ports for _ in range(conns_per_replica)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} failed batches, e.g. {errors[0]}")
    return n_points / dt


def bench_latency(
    pki: Pki, port: int, readings: list[dict], batch: int, rate: float, seconds: float
) -> list[float]:
    bodies = bodies_of(readings, batch, "lat")
    lat = []
    with client(pki, port) as c:
        c.get("/healthz")
        t_next = time.perf_counter()
        for body in bodies[: int(rate * seconds)]:
            now = time.perf_counter()
            if now < t_next:
                time.sleep(t_next - now)
            t0 = time.perf_counter()
            r = c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
            lat.append(time.perf_counter() - t0)
            assert r.status_code == 200
            t_next += 1 / rate
    return lat


def alternating(
    args: argparse.Namespace, work: Path, pki: Pki, influx: LocalInfluxDB, inv: Inventory, now: int
) -> dict[str, object]:
    """``--rounds``: per replica count, direct then the service on the same fresh points, ``rounds`` times."""
    span_ns = (args.points // N_DEVICES + 2) * 1_000_000_000  # one round's points are this far apart in time
    summary: dict[str, object] = {"points": args.points, "batch": args.batch, "rounds": args.rounds}
    round_no = 0
    for n in args.replicas:
        influx.create_database(f"direct{n}")
        influx.create_database(f"svc{n}")
        procs, ports = start_replicas(n, work, pki, influx, f"svc{n}")
        try:
            ratios = []
            for r in range(args.rounds):
                readings = make_readings(args.points, now - round_no * span_ns)
                round_no += 1
                direct = bench_direct(influx, f"direct{n}", direct_lines(readings, inv), args.batch)
                bodies = bodies_of(readings, args.batch, f"r{n}-{r}")
                rate = bench_service(pki, ports, bodies, len(readings), args.conns)
                ratios.append(rate / direct)
                print(
                    f"{n} replica(s), round {r + 1}: direct {direct:>9,.0f}/s  service {rate:>9,.0f}/s  "
                    f"ratio {rate / direct:.2f}"
                )
            med = statistics.median(ratios)
            print(f"{n} replica(s): median ratio {med:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
            summary[f"ratios_{n}"] = ratios
            summary[f"ratio_{n}"] = med
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(20)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--conns", type=int, default=2, help="gateway connections per replica")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with more than 1: per replica count, alternate direct /write and the service this many "
        "times on fresh points and report each round's ratio and the median (steadier on a shared "
        "machine, whose load changes between the phases of a single round); no latency probe",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        work = Path(tmp)
        pki = Pki.init(PkiSettings(dir=work / "pki"))
        pki.issue_server("localhost", ips=["127.0.0.1"])
        pki.issue_gateway("gw-bench")
        inv = Inventory.load(pki.inventory_path).with_devices(  # keeps gw-bench registered
            *[
                DeviceRecord(
                    device_id=f"bench-{i:04d}",
                    profile="air_quality",
                    profile_version=1,
                    site=f"site-{i % 20}",
                    district="centre",
                    gateways=("gw-bench",),
                )
                for i in range(N_DEVICES)
            ]
        )
        inv.save(pki.inventory_path)
        influx = LocalInfluxDB(work / "influx")
        influx.start()
        try:
            now = time.time_ns()
            print(f"cpus={os.cpu_count()} points={args.points} batch={args.batch}")
            if args.rounds > 1:
                print(json.dumps(alternating(args, work, pki, influx, inv, now)))
                return
            results = {}
            # Fresh data per run (distinct timestamps per run); each in its own database.
            readings = make_readings(args.points, now)
            influx.create_database("direct")
            direct = bench_direct(influx, "direct", direct_lines(readings, inv), args.batch)
            print(f"direct /write:            {direct:>10,.0f} points/s")
            summary: dict[str, object] = {"points": args.points, "batch": args.batch, "direct_rate": direct}
            for n in args.replicas:
                db = f"svc{n}"
                influx.create_database(db)
                procs, ports = start_replicas(n, work, pki, influx, db)
                try:
                    bodies = bodies_of(readings, args.batch, f"r{n}")
                    rate = bench_service(pki, ports, bodies, len(readings), args.conns)
                    results[n] = rate
                    print(f"service, {n} replica(s):     {rate:>10,.0f} points/s  ratio {rate / direct:.2f}")
                    summary[f"service_rate_{n}"] = rate
                    summary[f"ratio_{n}"] = rate / direct
                    if n == args.replicas[0]:
                        lat_readings = make_readings(500 * 100, now - 7_200_000_000_000)
                        lat = bench_latency(pki, ports[0], lat_readings, 500, 10.0, 10.0)
                        lat.sort()
                        p50 = statistics.median(lat) * 1000
                        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
                        print(
                            f"latency, 500-reading batches at 10/s: p50 {p50:.1f} ms  p99 {p99:.1f} ms "
                            f"(n={len(lat)})"
                        )
                        summary["latency_p50_ms"] = p50
                        summary["latency_p99_ms"] = p99
                finally:
                    for p in procs:
                        p.terminate()
                    for p in procs:
                        p.wait(20)
            print(json.dumps(summary))
        finally:
            influx.stop()


if __name__ == "__main__":
    main()
