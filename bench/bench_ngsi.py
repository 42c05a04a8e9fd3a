"""The NGSI-LD export (issue 16): entities/s exported and requests/s of the API, each beside a
baseline measured in the same run.

    .venv/bin/python bench/bench_ngsi.py [--devices 1000] [--seconds 5] [--conns 4]

One cloud (``citygate cloud run``, a separate process) against a real InfluxDB 1.x on this
machine, ``--devices`` air-quality stations (each with a location), each with 5 readings of
the simulators' signal model stored (the newest a minute ago). Then:

* ``build``: in this process, the devices' newest rows turned into entities and written as
  keyValues and normalized (no database, no HTTP): entities/s of the mapping itself.
* ``baseline``: the latest-value statement the export sends (``latest_statement``), sent to
  InfluxDB's ``/query`` directly by ``--conns`` clients for ``--seconds``: requests/s.
* ``uncached``: ``GET /ngsi-ld/v1/entities?type=AirQualityObserved&limit=1000`` on a cloud
  with ``cache_s`` = 0.001, so every request queries InfluxDB and builds every entity:
  requests/s, and entities/s exported end to end (HTTPS, TLS client certificate).
* ``cached``: ``GET /ngsi-ld/v1/entities?type=AirQualityObserved`` (the default page of 20)
  on a cloud with ``cache_s`` = 30: requests/s answered from the refresh cache (the
  database saw one query for all of them; tests/ngsi asserts that count).

Anonymous requests (``air_quality`` public, a rate limit far above the load) exercise the
public path, rate limiter included. Prints one line per part, then one JSON summary line.
The load generator shares the machine with the cloud and InfluxDB: ``cat /proc/loadavg``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import tomli_w
from _common import (
    GATEWAY_ID,
    bench_pki,
    cloud_client,
    cloud_section,
    load,
    start_cloud,
    stop_process,
    wait_listening,
)

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.opendata.ngsi.forms import render
from citygate.opendata.ngsi.latest import latest_statement
from citygate.opendata.ngsi.mapping import build, usable
from citygate.opendata.ngsi.models import AIR_QUALITY
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.process import free_port
from citygate.simulators.signals import DeviceSignal

PER_DEVICE = 5
_NS = 1_000_000_000


def devices(n: int) -> list[DeviceRecord]:
    return [
        DeviceRecord(
            device_id=f"aq-{i:05d}",
            profile="air_quality",
            profile_version=1,
            site=f"site-{i % 50}",
            district=f"district-{i % 7}",
            lat=50.0 + (i % 100) / 1000,
            lon=8.0 + (i // 100) / 1000,
            gateways=(GATEWAY_ID,),
        )
        for i in range(n)
    ]


def readings(records: list[DeviceRecord], now_ms: int) -> list[dict[str, Any]]:
    profile = ProfileRegistry().latest("air_quality")
    out = []
    for r in records:
        signal = DeviceSignal(r.device_id, profile, seed=1, interval_s=60)
        for k in range(PER_DEVICE):
            ts = now_ms - 60_000 * (k + 1)
            out.append({"device_id": r.device_id, "ts": ts, "seq": k, "readings": signal.values(ts)})
    return out


def part_build(records: list[DeviceRecord], now_ms: int, seconds: float) -> dict[str, Any]:
    profile = ProfileRegistry().latest("air_quality")
    measured, _ = usable(AIR_QUALITY, profile)
    rows = []
    for r in records:
        values = DeviceSignal(r.device_id, profile, seed=1, interval_s=60).values(now_ms)
        rows.append((r, {**values, "time": now_ms * 1_000_000}))
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for record, row in rows:
            e = build(AIR_QUALITY, record, profile, measured, row, row["time"])
            assert e is not None
            render(e, "keyValues", context=True)
            render(e, "normalized", context=True)
        n += len(rows)
    dt = time.perf_counter() - t0
    return {"entities": n, "seconds": round(dt, 2), "entities_per_s": round(n / dt)}


def hammer(make: Any, url: str, params: dict[str, str], conns: int, seconds: float) -> dict[str, Any]:
    """``conns`` threads GETting ``url`` over keep-alive for ``seconds``: requests/s and failures."""
    counts = [0] * conns
    failures = [0] * conns
    stop = time.monotonic() + seconds

    def run(i: int) -> None:
        with make() as c:
            while time.monotonic() < stop:
                r = c.get(url, params=params)
                if r.status_code == 200:
                    counts[i] += 1
                else:
                    failures[i] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    return {"requests": sum(counts), "failures": sum(failures), "requests_per_s": round(sum(counts) / dt, 1)}


class Rig:
    def __init__(self, work: Path, n: int) -> None:
        self.work = work
        self.pki = bench_pki(work)
        self.records = devices(n)
        Inventory.load(self.pki.inventory_path).with_devices(*self.records).save(self.pki.inventory_path)
        self.influx = LocalInfluxDB(work / "influx")
        self.influx.start()
        self.influx.create_database("ngsi")
        self.procs: list[subprocess.Popen[bytes]] = []

    def cloud(self, name: str, cache_s: float) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        cfg = cloud_section(
            self.pki,
            port,
            influx_url=self.influx.url,
            influx_db="ngsi",
            log_level="warning",
            opendata={
                "enabled": True,
                "public_profiles": ["air_quality"],
                "public_rate_per_minute": 1_000_000,
                "public_burst": 100_000,
                "cache_s": cache_s,
            },
        )
        path = self.work / f"{name}.toml"
        path.write_text(tomli_w.dumps({"cloud": cfg}))
        p = start_cloud(path, self.work / f"{name}.log")
        self.procs.append(p)
        if not wait_listening(p, port, 60):
            raise SystemExit(f"cloud {name} did not start; see {self.work / (name + '.log')}")
        return port, p

    def client(self, port: int) -> httpx.Client:
        return cloud_client(self.pki, port, cert=True)

    def close(self) -> None:
        for p in self.procs:
            stop_process(p)
        self.influx.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measured part")
    ap.add_argument("--conns", type=int, default=4, help="client threads of the HTTP parts")
    args = ap.parse_args()
    summary: dict[str, Any] = {"cpus": os.cpu_count(), "load_start": load(), "args": vars(args)}
    print(f"cpus={os.cpu_count()} load {load()} devices={args.devices}")
    with tempfile.TemporaryDirectory(prefix="bench-ngsi-") as tmp:
        rig = Rig(Path(tmp), args.devices)
        try:
            now_ms = time.time_ns() // 1_000_000
            summary["build"] = b = part_build(rig.records, now_ms, args.seconds)
            print(f"build: {b['entities_per_s']:,} entities/s (keyValues + normalized, in process)")

            port, _ = rig.cloud("cached", 30.0)
            gw = rig.client(port)
            batch = readings(rig.records, now_ms)
            for i in range(0, len(batch), 5000):
                body = gzip.compress(orjson.dumps({"batch_id": f"b{i}", "readings": batch[i : i + 5000]}))
                r = gw.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
                if r.status_code != 200 or r.json()["rejected"]:
                    raise SystemExit(f"ingest failed: {r.status_code} {r.text[:300]}")
            print(f"stored {len(batch):,} readings of {args.devices} devices")

            since = (now_ms - 30 * 86400 * 1000) * 1_000_000
            until = (now_ms + 600_000) * 1_000_000
            stmt = latest_statement("air_quality", since_ns=since, until_ns=until, limit=100_001)
            influx_params = {"db": "ngsi", "q": stmt, "epoch": "ns", "chunked": "true", "chunk_size": "2000"}
            summary["baseline"] = base = hammer(
                lambda: httpx.Client(base_url=rig.influx.url, timeout=60, trust_env=False),
                "/query",
                influx_params,
                args.conns,
                args.seconds,
            )
            print(f"baseline (the same InfluxQL to InfluxDB): {base['requests_per_s']} requests/s")

            uport, _ = rig.cloud("uncached", 0.001)
            params = {"type": "AirQualityObserved", "limit": "1000"}
            first = rig.client(uport).get("/ngsi-ld/v1/entities", params=params)
            assert first.status_code == 200 and len(first.json()) == min(1000, args.devices), first.text[:300]
            summary["uncached"] = u = hammer(
                lambda: rig.client(uport), "/ngsi-ld/v1/entities", params, args.conns, args.seconds
            )
            u["entities_per_s"] = round(u["requests_per_s"] * min(1000, args.devices))
            u["vs_baseline"] = round(u["requests_per_s"] / base["requests_per_s"], 3)
            print(
                f"uncached (query + build per request, limit=1000): {u['requests_per_s']} requests/s, "
                f"{u['entities_per_s']:,} entities/s, {u['vs_baseline']} x baseline"
            )

            cached_params = {"type": "AirQualityObserved"}
            summary["cached"] = c = hammer(
                lambda: rig.client(port), "/ngsi-ld/v1/entities", cached_params, args.conns, args.seconds
            )
            c["vs_baseline"] = round(c["requests_per_s"] / base["requests_per_s"], 3)
            print(
                f"cached (default page of 20): {c['requests_per_s']} requests/s, "
                f"{c['vs_baseline']} x baseline"
            )
        finally:
            rig.close()
    summary["load_end"] = load()
    print(f"load {load()}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
