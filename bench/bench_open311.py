"""Open311 ``POST requests``: reports per second sustained and their latency, against a baseline
measured in the same run (issue 16).

    .venv/bin/python bench/bench_open311.py [--reports 1000] [--concurrency 4] [--rounds 2]
        [--stores sqlite postgresql] [--spots 0]

* ``http``: ``--reports`` form-encoded reports POSTed to ``/open311/v2/requests.json`` of a
  real ``citygate cloud run`` (its own process; TLS, no client certificate, the service
  layer in the process, SQLite or PostgreSQL store), from ``--concurrency`` threads, each
  with its own kept-alive connection. Each report carries the reporter's name, e-mail and
  phone (so each writes the case, its history, its event, the report and the reporters
  row), and is at a place of its own (``--spots 0``: each opens a case), or at one of
  ``--spots`` places (all but the first report at a place join its case).
* ``store`` (the baseline): the same reports through ``CaseStore.report`` directly, in this
  process, from the same number of threads, on a fresh store of the same kind: what the
  store costs without HTTP, TLS, form parsing and checking.

Rounds alternate the order of the two (the machine is shared: the load average is printed at
the start and end of each). Per round: reports/s (reports / wall time of the round), p50/p99
of each request, CPU time per report (the cloud's process and this one, the load generator,
for ``http``; this process for ``store``); the ratio http/store of the rates. The last line is
one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import tomli_w
from _common import (
    Stores,
    cloud_client,
    cloud_section,
    cpu_s,
    load,
    pcts,
    start_cloud,
    stop_process,
    wait_listening,
)

API_KEY = "bench-" + "Zq4Wm8Rt" * 4
CENTRE = (52.5163, 13.3777)
PERSON = {"first_name": "Ann", "last_name": "Smith", "email": "ann@example.org", "phone": "+49 30 1234567"}


def place(i: int, spots: int) -> tuple[float, float]:
    """Report i's place: its own (100 m apart from every other), or one of ``spots``."""
    k = i % spots if spots else i
    return CENTRE[0] + (k % 100) * 0.001, CENTRE[1] + (k // 100) * 0.0015


def form(i: int, spots: int) -> dict[str, str]:
    lat, lon = place(i, spots)
    return {
        "api_key": API_KEY,
        "service_code": "pothole",
        "lat": f"{lat:.6f}",
        "long": f"{lon:.6f}",
        "description": f"Pothole number {i}, deep",
        "attribute[depth]": "7",
        **PERSON,
    }


# -- the cloud -------------------------------------------------------------------------------


class CloudRig:
    """A PKI (server certificate), an empty inventory, and `citygate cloud run` processes."""

    def __init__(self, work: Path) -> None:
        from citygate.certs.pki import Pki
        from citygate.certs.settings import PkiSettings

        self.work = work
        self.pki = Pki.init(PkiSettings(dir=work / "pki"))
        self.pki.issue_server("localhost", ips=["127.0.0.1"])

    def start(self, name: str, store_url: str) -> tuple[subprocess.Popen[bytes], int]:
        from citygate.servers.process import free_port

        port = free_port()
        unlimited = 1_000_000
        cloud = cloud_section(
            self.pki,
            port,
            client_cert_mode="optional",
            log_level="warning",
            service={"enabled": True, "store_url": store_url},
            open311={
                "enabled": True,
                "api_keys": {"bench": API_KEY},
                "services": [
                    {
                        "code": "pothole",
                        "name": "Pothole",
                        "feeds": "roads",
                        "attributes": [
                            {"code": "depth", "description": "cm", "datatype": "number", "order": 1}
                        ],
                    }
                ],
                # The bench measures the report path, not the limits: from one address, one key.
                "post_rate_per_minute_per_address": unlimited,
                "post_burst_per_address": 100_000,
                "post_rate_per_minute_per_key": unlimited,
                "post_burst_per_key": 100_000,
            },
        )
        cfg = self.work / f"{name}.toml"
        cfg.write_text(tomli_w.dumps({"cloud": cloud}))
        p = start_cloud(cfg, self.work / f"{name}.log")
        if not wait_listening(p, port, 60):
            raise SystemExit(f"cloud {name} did not start; see {self.work / (name + '.log')}")
        return p, port

    def client(self, port: int) -> httpx.Client:
        return cloud_client(self.pki, port)


# -- the two legs ----------------------------------------------------------------------------


def run_threads(n: int, concurrency: int, one: Callable[[int, int], None]) -> tuple[float, list[float]]:
    """``one(thread, i)`` for i in 0..n-1, spread over the threads; wall time and latencies."""
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(concurrency + 1)

    def worker(t: int) -> None:
        barrier.wait()
        try:
            for i in range(t, n, concurrency):
                t0 = time.perf_counter()
                one(t, i)
                lat[t].append(time.perf_counter() - t0)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrency)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"a report failed: {errors[0]!r}")
    return wall, [x for xs in lat for x in xs]


def leg_http(args: argparse.Namespace, rig: CloudRig, stores: Stores, kind: str, r: int) -> dict[str, Any]:
    proc, port = rig.start(f"http-{kind}-{r}", stores.new(kind, f"http_{r}"))
    try:
        clients = [rig.client(port) for _ in range(args.concurrency)]
        bodies = [urlencode(form(i, args.spots)).encode() for i in range(args.reports)]
        headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
        for c in clients:  # connect (TLS) before the clock starts
            assert c.get("/open311/v2/services.json").status_code == 200

        def one(t: int, i: int) -> None:
            resp = clients[t].post("/open311/v2/requests.json", content=bodies[i], headers=headers)
            if resp.status_code != 200:
                raise RuntimeError(f"report {i}: {resp.status_code} {resp.text[:200]}")

        cloud_cpu, own_cpu = cpu_s(proc.pid), cpu_s(os.getpid())
        wall, lat = run_threads(args.reports, args.concurrency, one)
        cloud_cpu, own_cpu = cpu_s(proc.pid) - cloud_cpu, cpu_s(os.getpid()) - own_cpu
        for c in clients:
            c.close()
    finally:
        stop_process(proc)
    return {
        "reports": args.reports,
        "wall_s": wall,
        "rate": args.reports / wall,
        # CPU per report: the cloud's process, and this one's (the load generator: httpx, TLS)
        "cloud_cpu_ms_per_report": cloud_cpu / args.reports * 1000,
        "client_cpu_ms_per_report": own_cpu / args.reports * 1000,
        **pcts(lat),
    }


def leg_store(args: argparse.Namespace, stores: Stores, kind: str, r: int) -> dict[str, Any]:
    from citygate.service.cases import CaseStore
    from citygate.service.db import make_engine, migrate
    from citygate.service.reports import CitizenReport, Reporter

    engine = make_engine(stores.new(kind, f"store_{r}"), pool_size=max(5, args.concurrency))
    migrate(engine)
    store = CaseStore(engine)
    reports = []
    for i in range(args.reports):
        f = form(i, args.spots)
        reports.append(
            CitizenReport(
                service_code="pothole",
                service="roads",
                severity="warning",
                title="Pothole",
                client="bench",
                description=f["description"],
                latitude=float(f["lat"]),
                longitude=float(f["long"]),
                attributes={"depth": "7"},
                reporter=Reporter(**PERSON),
            )
        )

    def one(_t: int, i: int) -> None:
        store.report(reports[i], attach_within_m=30.0, attach_within_s=7 * 86400.0)

    own_cpu = cpu_s(os.getpid())
    try:
        wall, lat = run_threads(args.reports, args.concurrency, one)
    finally:
        engine.dispose()
    own_cpu = cpu_s(os.getpid()) - own_cpu
    return {
        "reports": args.reports,
        "wall_s": wall,
        "rate": args.reports / wall,
        "cpu_ms_per_report": own_cpu / args.reports * 1000,
        **pcts(lat),
    }


def show(r: int, name: str, kind: str, res: dict[str, Any]) -> None:
    if "cloud_cpu_ms_per_report" in res:
        cpu = (
            f"CPU/report cloud {res['cloud_cpu_ms_per_report']:.1f} ms, "
            f"client {res['client_cpu_ms_per_report']:.1f} ms"
        )
    else:
        cpu = f"CPU/report {res['cpu_ms_per_report']:.1f} ms"
    print(
        f"round {r} [{name} {kind}]: {res['reports']} reports in {res['wall_s']:.2f} s = "
        f"{res['rate']:.0f}/s; p50 {res['p50_ms']:.1f} ms p99 {res['p99_ms']:.1f} ms "
        f"(max {res['max_ms']:.0f}); {cpu}; load {res['load_start']} -> {res['load_end']}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=int, default=1000, help="reports per leg per round")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads (HTTP) / store threads")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--stores", nargs="+", default=["sqlite"], choices=["sqlite", "postgresql"])
    ap.add_argument("--spots", type=int, default=0, help="0: every report at its own place; N: N places")
    args = ap.parse_args()

    summary: dict[str, Any] = {"cpus": os.cpu_count(), "load_start": load(), "args": vars(args)}
    print(
        f"cpus={os.cpu_count()} load {load()} reports={args.reports} concurrency={args.concurrency} "
        f"rounds={args.rounds} stores={' '.join(args.stores)} spots={args.spots}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-open311-") as tmp:
        work = Path(tmp)
        stores = Stores(work)
        rig = CloudRig(work)
        try:
            for kind in args.stores:
                rounds = []
                for r in range(1, args.rounds + 1):
                    legs: dict[str, Any] = {}
                    order = ("http", "store") if r % 2 else ("store", "http")
                    for name in order:
                        start = load()
                        res = (
                            leg_http(args, rig, stores, kind, r)
                            if name == "http"
                            else leg_store(args, stores, kind, r)
                        )
                        res.update(load_start=start, load_end=load())
                        show(r, name, kind, res)
                        legs[name] = res
                    legs["ratio"] = legs["http"]["rate"] / legs["store"]["rate"]
                    print(f"round {r} [{kind}]: http/store = {legs['ratio']:.2f}", flush=True)
                    rounds.append(legs)
                summary[kind] = {
                    "rounds": rounds,
                    "http_rate_median": statistics.median(x["http"]["rate"] for x in rounds),
                    "store_rate_median": statistics.median(x["store"]["rate"] for x in rounds),
                    "ratio_median": statistics.median(x["ratio"] for x in rounds),
                }
        finally:
            stores.close()
    summary["load_end"] = load()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
