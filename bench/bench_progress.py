"""The public progress page: requests/s it serves and the store queries/s behind them, against a
baseline in the same run that computes the figures for every request (what each request would
cost the store without the refresh cache).

    .venv/bin/python bench/bench_progress.py [--cases 10000] [--seconds 10] [--conns 16]
        [--stores sqlite postgresql] [--scale 100000]

A service store is seeded with ``--cases`` cases over a year (four services, eight districts,
sensor and citizen; most closed, the recent ones open), and a cloud (the real app under uvicorn
with TLS, in this process: the store's statements are counted here with SQLAlchemy's
``before_cursor_execute`` on the page's engine) serves it with ``[cloud.progress]`` on. The
load comes from a child process of this script (``--conns`` threads, one keep-alive HTTPS
connection each, so that the clients do not share the server's interpreter lock), for
``--seconds`` per part:

* ``cached``: ``GET /public/v1/progress`` as shipped: the refresh cache computes the figures at
  most once per ``refresh_s`` (300 s) whatever the traffic;
* ``page``: ``GET /public``, the HTML (its assets are alike: packaged bytes with an ETag);
* ``uncached`` (the baseline): the same requests with the board's cache replaced by one that
  computes for every request (six queries, publish, render), concurrently as they come;
* ``refresh``: one computation timed alone on the store of ``--cases`` (a year), and on a
  store of ``--scale`` cases over ``--scale-weeks`` (five years: most of them closed long
  before the 12 weeks shown): what a refresh costs follows the cases in the weeks shown (they
  are sorted for the percentiles); the rest of the history is a scan of the table.

Every part prints a line; the last line is one JSON summary. The machine is shared: the load
average is recorded at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import Stores, load, pcts

SERVICES = {"waste": (2.0, 30.0), "roads": (20.0, 120.0), "lighting": (8.0, 60.0), "parks": (12.0, 90.0)}
DISTRICTS = ("north", "south", "east", "west", "centre", "harbour", "old-town", "airport")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


# -- the load, in a child process --------------------------------------------------------------


def load_child(url: str, ca: str, seconds: float, conns: int) -> None:
    """``--load``: ``conns`` threads GET ``url`` for ``seconds``; prints one JSON line. Each
    connects first with a GET of the page's stylesheet (cheap, and no computation)."""
    import httpx

    ctx = ssl.create_default_context(cafile=ca)
    latencies: list[list[float]] = [[] for _ in range(conns)]
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(conns + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        with httpx.Client(verify=ctx, timeout=60, trust_env=False) as c:
            parts = urlsplit(url)
            c.get(f"{parts.scheme}://{parts.netloc}/public/static/progress.css")  # TLS before the clock
            start.wait()
            mine = latencies[i]
            seen: dict[int, int] = {}
            while (t0 := time.perf_counter()) < stop_at[0]:
                r = c.get(url)
                mine.append(time.perf_counter() - t0)
                seen[r.status_code] = seen.get(r.status_code, 0) + 1
            with lock:
                for k, v in seen.items():
                    statuses[k] = statuses.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 1e9
    start.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for xs in latencies for x in xs]
    print(json.dumps({"requests": len(flat), "seconds": elapsed, "statuses": statuses, **pcts(flat)}))


def run_load(url: str, ca: Path, seconds: float, conns: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--load", url, str(ca), str(seconds), str(conns)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- the store ---------------------------------------------------------------------------------


def cases(n: int, now_ms: int, rng: random.Random, span_weeks: int = 52) -> Iterator[dict[str, Any]]:
    """``n`` cases opened over ``span_weeks``: acknowledged and closed after log-normal delays
    around each service's pace, still open where that lies after now."""
    names = list(SERVICES)
    for i in range(n):
        service = names[i % len(names)]
        ack_h, close_h = SERVICES[service]
        opened = now_ms - rng.randrange(span_weeks * 7 * DAY_MS)
        ack = opened + int(rng.lognormvariate(math.log(ack_h), 0.8) * HOUR_MS)
        closed = ack + int(rng.lognormvariate(math.log(close_h), 0.9) * HOUR_MS)
        source = "citizen" if rng.random() < 0.35 else "sensor"
        yield {
            "rule_id": f"citizen.{service}" if source == "citizen" else f"bench.{service}",
            "subject": f"s-{i}",
            "source": source,
            "service": service,
            "severity": "warning",
            "title": "bench case",
            "status": "closed" if closed <= now_ms else ("acknowledged" if ack <= now_ms else "new"),
            "is_open": closed > now_ms,
            "district": DISTRICTS[rng.randrange(len(DISTRICTS))],
            "opened_ms": opened,
            "updated_ms": min(now_ms, closed),
            "acknowledged_ms": ack if ack <= now_ms else None,
            "closed_ms": closed if closed <= now_ms else None,
            "detail": "",
        }


def seed(url: str, n: int, now_ms: int, span_weeks: int = 52) -> float:
    """Migrate and fill a store with ``n`` cases over ``span_weeks``; seconds taken."""
    from sqlalchemy import insert

    from citygate.service.db import make_engine, migrate
    from citygate.service.schema import cases as table

    t0 = time.perf_counter()
    engine = make_engine(url)
    migrate(engine)
    rows = list(cases(n, now_ms, random.Random(16), span_weeks))
    with engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(insert(table), rows[i : i + 5000])
    engine.dispose()
    return time.perf_counter() - t0


# -- the cloud, in this process ----------------------------------------------------------------


class Cloud:
    """The cloud app under uvicorn (TLS) in a thread, with the service layer's store at ``url``
    (its workers not started: ``runner = "separate"``) and the progress page on."""

    def __init__(self, work: Path, url: str) -> None:
        from citygate.certs.pki import CaName, CertKind, Pki
        from citygate.certs.settings import PkiSettings
        from citygate.cloud.server import cloud_server, uvicorn_config
        from citygate.cloud.settings import CloudSettings
        from citygate.progress.settings import ProgressSettings
        from citygate.servers.process import free_port
        from citygate.service.settings import ServiceSettings, ServiceTarget

        d = work / f"pki-{uuid.uuid4().hex[:6]}"
        pki = Pki.init(PkiSettings(dir=d))
        pki.issue_server("localhost", ips=["127.0.0.1"])
        server = pki.files(CertKind.SERVER, "localhost")
        self.ca = pki.ca_cert_path(CaName.INFRA)
        targets = {
            "waste": ServiceTarget(acknowledge_s=4 * 3600, resolve_s=2 * 86_400),
            "roads": ServiceTarget(acknowledge_s=86_400, resolve_s=7 * 86_400),
        }
        self.settings = CloudSettings(
            host="127.0.0.1",
            port=free_port(),
            tls_cert=server.cert,
            tls_key=server.key,
            client_ca=self.ca,
            client_crl=pki.crl_path(CaName.INFRA),
            inventory=pki.inventory_path,
            client_cert_mode="optional",
            log_level="warning",
            max_connections=1000,
            service=ServiceSettings(enabled=True, store_url=url, runner="separate", targets=targets),
            # One address makes all the load here: its bucket must not be what is measured.
            progress=ProgressSettings(enabled=True, refresh_s=300, rate_per_minute=1e6, burst=100_000),
        )
        self.config = uvicorn_config(self.settings)
        self.server = cloud_server(self.config, self.settings)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise SystemExit("the cloud did not start")
            time.sleep(0.02)

    @property
    def base(self) -> str:
        return f"https://localhost:{self.settings.port}"

    @property
    def board(self) -> Any:
        return self.config.loaded_app.state.progress

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@contextmanager
def statements(engine: Any) -> Iterator[list[int]]:
    """Counts the statements ``engine`` runs meanwhile (one element: the count)."""
    from sqlalchemy import event

    n = [0]

    def count(*_args: Any) -> None:
        n[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield n
    finally:
        event.remove(engine, "before_cursor_execute", count)


class NoCache:
    """The baseline: the board's figures computed for every request, concurrently as they come."""

    def __init__(self, board: Any) -> None:
        self.board = board
        self.computed = 0

    async def get(self) -> Any:
        from citygate.cloud.refresh import Fresh

        value = await self.board.refresh()
        self.computed += 1
        return Fresh(value, time.time())


def measure(cloud: Cloud, path: str, args: argparse.Namespace, label: str) -> dict[str, Any]:
    board = cloud.board
    computed_before = board.cache.computed
    with statements(board.engine) as n:
        got = run_load(cloud.base + path, cloud.ca, args.seconds, args.conns)
    s = got["seconds"]
    out = {
        "requests_per_s": got["requests"] / s,
        "statuses": got["statuses"],
        "p50_ms": got["p50_ms"],
        "p99_ms": got["p99_ms"],
        "computations": board.cache.computed - computed_before,
        "queries": n[0],
        "queries_per_s": n[0] / s,
        "queries_per_request": n[0] / max(1, got["requests"]),
    }
    print(
        f"  {label:<9} {path:<20} {out['requests_per_s']:8.0f} req/s  p50 {out['p50_ms']:.1f} ms  "
        f"p99 {out['p99_ms']:.1f} ms  computations {out['computations']}  "
        f"queries {n[0]} ({out['queries_per_s']:.1f}/s)  statuses {got['statuses']}"
    )
    return out


def time_refresh(url: str, repeat: int = 3) -> dict[str, Any]:
    """One computation alone (six queries, publish, render): ms, best and median of ``repeat``;
    and how many of the store's cases the weeks shown hold (opened or closed in them)."""
    from sqlalchemy import func, or_, select

    from citygate.progress.board import ProgressBoard, render
    from citygate.progress.settings import ProgressSettings
    from citygate.progress.weeks import window
    from citygate.service.schema import cases as table
    from citygate.service.settings import ServiceSettings

    board = ProgressBoard(ProgressSettings(enabled=True), ServiceSettings(enabled=True, store_url=url))
    took = []
    start = window(int(time.time() * 1000), board.zone, board.settings.weeks).start_ms
    with board.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(table)).scalar_one()
        shown = conn.execute(
            select(func.count()).where(or_(table.c.opened_ms >= start, table.c.closed_ms >= start))
        ).scalar_one()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            body = render(board.compute()).body
            took.append((time.perf_counter() - t0) * 1000)
    finally:
        board.close()
    return {
        "cases": total,
        "in_weeks_shown": shown,
        "best_ms": min(took),
        "median_ms": statistics.median(took),
        "json_bytes": len(body),
    }


def part_store(args: argparse.Namespace, stores: Stores, kind: str, work: Path) -> dict[str, Any]:
    now = int(time.time() * 1000)
    url = stores.new(kind, "progress")
    seeded = seed(url, args.cases, now)
    print(f"{kind}: {args.cases} cases seeded in {seeded:.1f} s; load {load()}")
    out: dict[str, Any] = {"load_start": load()}
    cloud = Cloud(work, url)
    try:
        run_load(cloud.base + "/public/v1/progress", cloud.ca, 0.5, 2)  # the first computation, warm
        out["cached"] = measure(cloud, "/public/v1/progress", args, "cached")
        out["page"] = measure(cloud, "/public", args, "page")
        board = cloud.board
        shipped = board.cache
        board.cache = NoCache(board)
        try:
            out["uncached"] = measure(cloud, "/public/v1/progress", args, "uncached")
        finally:
            board.cache = shipped
    finally:
        cloud.stop()
    out["speedup"] = out["cached"]["requests_per_s"] / max(1e-9, out["uncached"]["requests_per_s"])
    out["refresh"] = {str(args.cases): time_refresh(url)}
    print(f"  refresh alone, {args.cases} cases: {out['refresh'][str(args.cases)]}")
    if args.scale:
        big = stores.new(kind, "progress_scale")
        seeded = seed(big, args.scale, now, args.scale_weeks)
        timed = out["refresh"][str(args.scale)] = time_refresh(big)
        print(f"  refresh alone, {args.scale} cases (seeded in {seeded:.1f} s): {timed}")
    out["load_end"] = load()
    return out


def main() -> None:
    if sys.argv[1:2] == ["--load"]:
        load_child(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="cases in the store the page is served from")
    ap.add_argument("--scale", type=int, default=100_000, help="cases for the refresh-alone timing (0: skip)")
    ap.add_argument("--scale-weeks", type=int, default=260, help="the --scale store's history, in weeks")
    ap.add_argument("--seconds", type=float, default=10.0, help="per part")
    ap.add_argument("--conns", type=int, default=16, help="concurrent clients")
    ap.add_argument("--stores", nargs="+", default=["sqlite"], choices=["sqlite", "postgresql"])
    args = ap.parse_args()

    import logging

    logging.getLogger("uvicorn.access").disabled = True
    summary: dict[str, Any] = {"cpus": os.cpu_count(), "load_start": load(), "args": vars(args)}
    print(f"cpus={os.cpu_count()} load {load()} cases={args.cases} conns={args.conns} seconds={args.seconds}")
    with tempfile.TemporaryDirectory(prefix="bench-progress-") as tmp:
        work = Path(tmp)
        stores = Stores(work)
        try:
            for kind in args.stores:
                summary[kind] = part_store(args, stores, kind, work)
        finally:
            stores.close()
    summary["load_end"] = load()
    first = summary[args.stores[0]]
    summary.update(
        cached_rps=first["cached"]["requests_per_s"],
        page_rps=first["page"]["requests_per_s"],
        uncached_rps=first["uncached"]["requests_per_s"],
        cached_queries_per_s=first["cached"]["queries_per_s"],
        uncached_queries_per_s=first["uncached"]["queries_per_s"],
        speedup=first["speedup"],
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
