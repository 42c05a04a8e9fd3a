"""The service layer (rules, cases, the event outbox, webhooks): throughput and latency, each
against a baseline measured in the same run (issue 15).

    .venv/bin/python bench/bench_service.py [--parts ingest case transition throughput outage]
        [--stores sqlite postgresql] [sizes: see --help]

Parts (each prints a line per measurement; the last line is one JSON summary):

* ``ingest``: the same gzip JSON batches posted by the same load generator to a cloud with
  ``[cloud.service]`` (shipped rules, a store per ``--stores``) and to one without, in
  interleaved rounds (the order flips each round); readings/s each and the ratio per round
  (target >= 0.9). After each round the bench waits until the evaluator has emptied the feed
  and reports how long that took: ingest never waits on the rules, so the ratio alone does not
  say whether they keep up.
* ``case``: ``--rate`` readings/s offered for ``--seconds`` (500-reading batches, 10/s) to a
  cloud with the shipped rules plus ``pm_spike`` (``pm2_5 > 100``); ``--triggers`` readings per
  second cross it, each on a device not used before (so each opens a case). Latency = the
  case's ``opened_ms`` (and the event's arrival at a receiver) minus the moment the ingest
  answered 200 for the batch holding the triggering reading. Baseline: POST /v1/ingest itself.
* ``transition``: conditions recorded through ``CaseStore.record`` (``--transition-rate`` per
  second, the dispatcher woken as the evaluator does) until the receiver has each event
  (``webhook-id`` = ``events.id``); p50/p99. Baseline: the same signed POST made by
  ``delivery.deliver`` without the store.
* ``throughput``: ``--deliveries`` events recorded with the dispatcher stopped, then started:
  deliveries/s one dispatcher sustains to one subscription, per ``--concurrency``. Baseline:
  ``delivery.deliver`` of the same events from the same number of threads on one client.
* ``outage``: the receiver answers 500 while ``--outage-events`` transitions are recorded
  (the dispatcher running, failing and rescheduling), then 204; time until every event is
  delivered. ``--outage-modes``: ``replay`` (default retry schedule, Dispatcher.replay called
  when the receiver is back, the operator's action), ``short`` (RetrySchedule(base_s=1,
  cap_s=5), no replay), ``default`` (the shipped schedule, no replay: the backoff dominates).
  Baseline: the throughput part's rate, i.e. N / deliveries/s.

The receiver (citygate.testing.webhook_receiver, answering at once) runs in a child process
of this script, so its threads do not share the dispatcher's interpreter lock; the
dispatcher and the store run in this process, as they run in a cloud replica. Every part
records the load average at its start and end: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import tomli_w
from _common import (
    AIR_QUALITY_VALUES,
    Stores,
    bench_pki,
    cloud_client,
    cloud_section,
    cpu_s,
    load,
    pcts,
    start_cloud,
    stop_process,
    wait_listening,
)

from citygate.testing.rules import PM_SPIKE_RULES

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
N_DEVICES = 1000
VALUES = AIR_QUALITY_VALUES


# -- the receiver, in a child process ------------------------------------------------------


def receiver_child() -> None:
    """``--receiver``: a WebhookReceiver driven by lines on stdin (mode, wait, dump, clear)."""
    from citygate.testing.webhook_receiver import WebhookReceiver

    r = WebhookReceiver().start()
    out = sys.stdout
    out.write(f"{r.url}\n")
    out.flush()
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "mode":
            r.set_mode(args[0])  # type: ignore[arg-type]
            out.write("ok\n")
        elif cmd == "clear":
            r.clear()
            out.write("ok\n")
        elif cmd == "waitok":  # distinct webhook-ids answered 204 >= n
            n, deadline = int(args[0]), time.monotonic() + float(args[1])
            while True:
                got = len({q.headers.get("webhook-id") for q in r.requests if q.mode == "ok"})
                if got >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            out.write(f"{got}\n")
        elif cmd == "dump":  # [webhook-id, arrived_at, mode] of every request
            Path(args[0]).write_bytes(
                orjson.dumps([[q.headers.get("webhook-id"), q.arrived_at, q.mode] for q in r.requests])
            )
            out.write("ok\n")
        elif cmd == "quit":
            break
        out.flush()
    r.stop()


class Receiver:
    """The parent's handle on the child receiver."""

    def __init__(self, work: Path) -> None:
        self._work = work
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def mode(self, m: str) -> None:
        self._ask(f"mode {m}")

    def clear(self) -> None:
        self._ask("clear")

    def wait_ok(self, n: int, timeout: float) -> int:
        return int(self._ask(f"waitok {n} {timeout}"))

    def dump(self) -> list[tuple[str, float, str]]:
        path = self._work / f"dump-{uuid.uuid4().hex[:6]}.json"
        self._ask(f"dump {path}")
        rows = orjson.loads(path.read_bytes())
        path.unlink()
        return [(r[0], r[1], r[2]) for r in rows]

    def first_ok(self) -> dict[str, float]:
        """webhook-id -> when it first arrived and was answered 204."""
        seen: dict[str, float] = {}
        for wid, at, mode in self.dump():
            if mode == "ok" and wid not in seen:
                seen[wid] = at
        return seen

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._ask("quit")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the cloud parts -----------------------------------------------------------------------


@dataclass
class Cloud:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    store_url: str | None
    workers: subprocess.Popen[bytes] | None = None  # `citygate service run` (runner = "separate")


class CloudRig:
    """A PKI with the gw-bench gateway and N_DEVICES air-quality devices, InfluxDB, clouds."""

    def __init__(self, work: Path) -> None:
        from citygate.contract.inventory import DeviceRecord, Inventory
        from citygate.servers.influxdb import LocalInfluxDB

        self.work = work
        self.pki = bench_pki(work)
        Inventory.load(self.pki.inventory_path).with_devices(
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
        ).save(self.pki.inventory_path)
        self.influx = LocalInfluxDB(work / "influx")
        self.influx.start()
        self.clouds: list[Cloud] = []

    def start_cloud(self, name: str, service: dict[str, Any] | None) -> Cloud:
        from citygate.servers.process import free_port

        port = free_port()
        self.influx.create_database(name)
        cloud = cloud_section(self.pki, port, influx_url=self.influx.url, influx_db=name, log_level="warning")
        if service is not None:
            cloud["service"] = service
        cfg = self.work / f"{name}.toml"
        cfg.write_text(tomli_w.dumps({"cloud": cloud}))
        p = start_cloud(cfg, self.work / f"{name}.log")
        if not wait_listening(p, port, 60):
            raise SystemExit(f"cloud {name} did not start; see {self.work / (name + '.log')}")
        c = Cloud(name, p, port, service.get("store_url") if service else None)
        if service is not None and service.get("runner") == "separate":
            c.workers = subprocess.Popen(
                [sys.executable, "-m", "citygate", "service", "run", "--config", str(cfg)],
                stdout=subprocess.DEVNULL,
                stderr=(self.work / f"{name}-workers.log").open("wb"),
            )
        self.clouds.append(c)
        return c

    def client(self, port: int) -> httpx.Client:
        return cloud_client(self.pki, port, cert=True)

    def stop_cloud(self, c: Cloud) -> None:
        if c.workers is not None:
            stop_process(c.workers)
        stop_process(c.proc)
        self.clouds.remove(c)

    def close(self) -> None:
        for c in list(self.clouds):
            self.stop_cloud(c)
        self.influx.stop()


def service_section(store_url: str, **extra: Any) -> dict[str, Any]:
    return {"enabled": True, "store_url": store_url, "shipped_rules": True, **extra}


def readings_at(n: int, t_end_ms: int, spacing_ms: int = 1000) -> list[dict[str, Any]]:
    """``n`` readings of N_DEVICES devices, the newest at ``t_end_ms``, ``spacing_ms`` apart per
    device (device time near now: no silence rule fires on old data)."""
    per = (n + N_DEVICES - 1) // N_DEVICES
    out = []
    for i in range(n):
        dev, k = i % N_DEVICES, i // N_DEVICES
        out.append(
            {
                "device_id": f"bench-{dev:04d}",
                "ts": t_end_ms - (per - 1 - k) * spacing_ms - dev % spacing_ms,
                "seq": k,
                "readings": {**VALUES, "pm2_5": 10.0 + (i % 97) / 4},
            }
        )
    return out


def gz_bodies(readings: list[dict[str, Any]], batch: int, tag: str) -> list[bytes]:
    return [
        gzip.compress(orjson.dumps({"batch_id": f"{tag}-{i}", "readings": readings[i : i + batch]}), 1)
        for i in range(0, len(readings), batch)
    ]


def post_all(rig: CloudRig, port: int, bodies: list[bytes], conns: int) -> float:
    """Post every body over ``conns`` connections; the wall time in s."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        with rig.client(port) as c:
            c.get("/healthz")
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = c.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
                if r.status_code != 200 or r.json()["rejected"]:
                    errors.append(f"{r.status_code} {r.text[:300]}")

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} failed batches, e.g. {errors[0]}")
    return dt


def feed_depth(store_url: str) -> int:
    from sqlalchemy import func, select

    from citygate.service.db import make_engine
    from citygate.service.schema import reading_feed

    eng = _engines.get(store_url) or make_engine(store_url)
    _engines[store_url] = eng
    with eng.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(reading_feed)).scalar_one())


_engines: dict[str, Any] = {}


def snapshot_bytes(store_url: str) -> tuple[int, int] | None:
    """The size of the evaluator's saved state (what every checkpoint writes): (as stored,
    as JSON)."""
    from sqlalchemy import select

    from citygate.service.layer import unpack_state
    from citygate.service.schema import evaluator_state

    feed_depth(store_url)  # opens the engine
    with _engines[store_url].connect() as conn:
        row = conn.execute(select(evaluator_state.c.packed, evaluator_state.c.snapshot)).first()
    if row is None:
        return None
    if row.packed is not None:
        return len(row.packed), len(orjson.dumps(unpack_state(row.packed)))
    n = len(orjson.dumps(row.snapshot))
    return n, n


def wait_feed_empty(store_url: str, timeout: float) -> float | None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if feed_depth(store_url) == 0:
            return time.perf_counter() - t0
        time.sleep(0.05)
    return None


def part_ingest(args: argparse.Namespace, rig: CloudRig, stores: Stores) -> dict[str, Any]:
    res: dict[str, Any] = {"load_start": load(), "points": args.ingest_points, "batch": args.batch}
    off = rig.start_cloud("rules_off", None)
    ons = {
        f"{k}/{runner}": rig.start_cloud(
            f"rules_on_{k}_{runner}", service_section(stores.new(k, f"ingest_{runner}"), runner=runner)
        )
        for k in args.stores
        for runner in args.runners
    }
    try:
        # Warm both up (TLS, imports, the store's first pass) on readings not timed: two minutes
        # old (older than any round's, and newer than the silence rules' 10 min, or the first
        # round would also clear a thousand 'silent' cases the warm-up's age opened).
        warm = readings_at(5000, int(time.time() * 1000) - 120_000)
        for c in (off, *ons.values()):
            post_all(rig, c.port, gz_bodies(warm, args.batch, f"warm-{c.name}"), 1)
        for c in ons.values():
            assert c.store_url
            wait_feed_empty(c.store_url, 120)
        for kind, on in ons.items():
            rounds = []
            for r in range(args.ingest_rounds):
                # Fresh readings per round and cloud (the newest a second ago); same shape.
                order = [("off", off), ("on", on)] if r % 2 == 0 else [("on", on), ("off", off)]
                row: dict[str, Any] = {"round": r + 1, "order": [o for o, _ in order], "load_before": load()}
                for label, c in order:
                    readings = readings_at(args.ingest_points, int(time.time() * 1000) - 1000)
                    bodies = gz_bodies(readings, args.batch, f"{kind.replace('/', '-')}-{label}-{r}")
                    cpu0 = cpu_s(c.proc.pid)
                    dt = post_all(rig, c.port, bodies, args.conns)
                    row[f"{label}_rate"] = len(readings) / dt
                    if label == "on":
                        assert c.store_url
                        drained = wait_feed_empty(c.store_url, 600)
                        row["evaluated_after_s"] = drained  # after the last 200, until the feed was empty
                        row["evaluated_rate"] = (
                            len(readings) / (dt + drained) if drained is not None else None
                        )
                        sizes = snapshot_bytes(c.store_url) or (0, 0)
                        row["snapshot_bytes"], row["snapshot_json_bytes"] = sizes
                    row[f"{label}_cloud_cpu_s"] = cpu_s(c.proc.pid) - cpu0
                row["ratio"] = row["on_rate"] / row["off_rate"]
                row["load_after"] = load()
                rounds.append(row)
                ev_s = row["evaluated_after_s"]
                print(
                    f"ingest [{kind}] round {r + 1} ({'/'.join(row['order'])}): "
                    f"off {row['off_rate']:>8,.0f}/s  on {row['on_rate']:>8,.0f}/s  "
                    f"ratio {row['ratio']:.2f}  "
                    f"feed empty {ev_s if ev_s is None else round(ev_s, 1)} s "
                    f"after the last 200 (evaluated {row['evaluated_rate'] or 0:,.0f}/s)  "
                    f"cpu off {row['off_cloud_cpu_s']:.1f} s on {row['on_cloud_cpu_s']:.1f} s  "
                    f"saved state {row['snapshot_bytes'] / 1e6:.1f} MB "
                    f"({row['snapshot_json_bytes'] / 1e6:.1f} MB as JSON)  "
                    f"load {row['load_before']} -> {row['load_after']}",
                    flush=True,
                )
            ratios = [x["ratio"] for x in rounds]
            res[kind] = {
                "rounds": rounds,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "off_rate_median": statistics.median(x["off_rate"] for x in rounds),
                "on_rate_median": statistics.median(x["on_rate"] for x in rounds),
                "evaluated_rate_median": statistics.median(x["evaluated_rate"] or 0 for x in rounds),
            }
    finally:
        for c in (off, *ons.values()):
            rig.stop_cloud(c)
    res["load_end"] = load()
    return res


def part_case(
    args: argparse.Namespace, rig: CloudRig, stores: Stores, kind: str, runner: str = "in_process"
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from citygate.service.db import make_engine
    from citygate.service.schema import cases, events

    res: dict[str, Any] = {
        "load_start": load(),
        "store": kind,
        "runner": runner,
        "rate": args.rate,
        "seconds": args.seconds,
    }
    rules = rig.work / "rules-spike"
    rules.mkdir(exist_ok=True)
    (rules / "spike.v1.toml").write_text(PM_SPIKE_RULES)
    recv = Receiver(rig.work)
    url = stores.new(kind, f"case_{runner}")
    c = rig.start_cloud(
        f"case_{kind}_{runner}",
        service_section(
            url,
            runner=runner,
            rules_dirs=[str(rules)],
            subscriptions=[{"name": "city", "url": recv.url + "/hook", "secrets": [SECRET]}],
            webhook_allow_http_loopback=True,
        ),
    )
    try:
        batch = 500  # two senders of 500 devices each (N_DEVICES = 1000)
        per_s = max(1, args.rate // batch)  # batches per second
        n_batches = int(args.seconds * per_s)
        period = 1.0 / per_s
        t_first = time.time() + 2.0  # after building the bodies
        devices = list(range(N_DEVICES))
        random.Random(15).shuffle(devices)
        trigger_every = max(1, round(per_s / args.triggers))  # batches between two triggers
        triggers: dict[tuple[str, int], int] = {}  # (device, ts_ns) -> batch index
        pending_clear: dict[str, bool] = {}
        bodies = []
        seq: dict[int, int] = {}
        used: set[int] = set()
        for j in range(n_batches):
            t_ms = int((t_first + j * period) * 1000) - 50
            rows = []
            in_batch = {(j * batch + m) % N_DEVICES for m in range(batch)}
            trig_dev = None
            if j % trigger_every == 0:
                trig_dev = next((d for d in devices if d in in_batch and d not in used), None)
                if trig_dev is not None:
                    used.add(trig_dev)
            for m in range(batch):
                d = (j * batch + m) % N_DEVICES
                name = f"bench-{d:04d}"
                s = seq.get(d, 0)
                seq[d] = s + 1
                v = {**VALUES}
                if d == trig_dev:
                    v["pm2_5"] = 150.0
                    triggers[(name, (t_ms - m % 50) * 1_000_000)] = j
                    pending_clear[name] = True
                elif pending_clear.pop(name, False):
                    v["pm2_5"] = 10.0  # clears: the case stays open, its clearing noted
                rows.append({"device_id": name, "ts": t_ms - m % 50, "seq": s, "readings": v})
            bodies.append(gzip.compress(orjson.dumps({"batch_id": f"case-{j}", "readings": rows}), 1))
        answered: list[float] = [0.0] * n_batches
        post_lat: list[float] = []
        late_starts = 0
        lock = threading.Lock()
        senders = N_DEVICES // batch  # batch j holds devices (j * batch + m) % N_DEVICES

        def worker(k: int) -> None:
            # Sender k posts batches k, k + senders, ... in order on one connection: each device's
            # readings reach the cloud in device-time order, as from one gateway (an older reading
            # arriving after a newer one never triggers: the evaluator's out-of-order rule).
            nonlocal late_starts
            with rig.client(c.port) as cl:
                cl.get("/healthz")
                for j in range(k, n_batches, senders):
                    due = t_first + j * period
                    now = time.time()
                    if now < due:
                        time.sleep(due - now)
                    elif now - due > 0.5:
                        with lock:
                            late_starts += 1
                    t0 = time.time()
                    r = cl.post("/v1/ingest", content=bodies[j], headers={"Content-Encoding": "gzip"})
                    answered[j] = time.time()
                    assert r.status_code == 200 and not r.json()["rejected"], r.text[:300]
                    with lock:
                        post_lat.append(answered[j] - t0)

        cpu0 = cpu_s(c.proc.pid)
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(senders)]
        while time.time() < t_first - 0.2:
            time.sleep(0.05)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_last = max(answered)
        achieved = n_batches * batch / (t_last - t_first)
        cloud_cpu = cpu_s(c.proc.pid) - cpu0
        drained = wait_feed_empty(url, 300)
        eng = make_engine(url)
        with eng.connect() as conn:
            n_events = int(conn.execute(select(func.count()).select_from(events)).scalar_one())
        got = recv.wait_ok(n_events, 60)
        with eng.connect() as conn:
            rows_ = conn.execute(
                select(cases.c.id, cases.c.subject, cases.c.condition_ns, cases.c.opened_ms).where(
                    cases.c.rule_id == "air_quality.pm_spike"
                )
            ).all()
            ev = {
                r.id: r.case_id
                for r in conn.execute(
                    select(events.c.id, events.c.case_id).where(events.c.type == "case.opened")
                )
            }
            other = (
                conn.execute(select(cases.c.rule_id).where(cases.c.rule_id != "air_quality.pm_spike"))
                .scalars()
                .all()
            )
        eng.dispose()
        arrivals = {ev[w]: at for w, at in recv.first_ok().items() if w in ev}
        opened, delivered = [], []
        for r in rows_:
            tj = triggers.get((r.subject, r.condition_ns))
            if tj is None:
                continue
            opened.append(r.opened_ms / 1000 - answered[tj])
            if r.id in arrivals:
                delivered.append(arrivals[r.id] - answered[tj])
        res.update(
            triggers=len(triggers),
            cases_opened=len(opened),
            other_cases=len(other),
            events_received=got,
            achieved_rate=achieved,
            late_batch_starts=late_starts,
            cloud_cpu_per_s=cloud_cpu / (t_last - t_first),
            feed_empty_after_last_200_s=drained,
            stored_to_opened=pcts(opened),
            stored_to_delivered=pcts(delivered),
            baseline_post_ingest=pcts(post_lat),
            load_end=load(),
        )
        print(
            f"case [{kind}/{runner}]: offered {args.rate:,}/s achieved {achieved:,.0f}/s, "
            f"{len(triggers)} triggers, "
            f"{len(opened)} cases opened, {got} events received; stored->opened p50 "
            f"{res['stored_to_opened']['p50_ms']:.0f} ms p99 {res['stored_to_opened']['p99_ms']:.0f} ms; "
            f"stored->delivered p50 {res['stored_to_delivered']['p50_ms'] or 0:.0f} ms p99 "
            f"{res['stored_to_delivered']['p99_ms'] or 0:.0f} ms; POST /v1/ingest p50 "
            f"{res['baseline_post_ingest']['p50_ms']:.0f} ms p99 "
            f"{res['baseline_post_ingest']['p99_ms']:.0f} ms; cloud CPU {cloud_cpu / (t_last - t_first):.2f} "
            f"cores; load {res['load_start']} -> {res['load_end']}",
            flush=True,
        )
    finally:
        rig.stop_cloud(c)
        recv.close()
    return res


# -- the dispatcher parts (in this process, as in a replica) -------------------------------


@contextmanager
def dispatch_rig(
    url: str, recv: Receiver, concurrency: int, schedule: Any = None
) -> Iterator[tuple[Any, Any, Any]]:
    from citygate.service.cases import CaseStore
    from citygate.service.db import make_engine, migrate
    from citygate.service.delivery import UrlPolicy
    from citygate.service.dispatcher import Dispatcher, DispatchSettings
    from citygate.service.subscriptions import Subscription

    sub = Subscription(name="city", url=recv.url + "/hook", secrets=(SECRET,), max_concurrency=concurrency)
    engine = make_engine(url)
    migrate(engine)
    store = CaseStore(engine, [sub])
    store.sync_subscriptions()
    ds = DispatchSettings() if schedule is None else DispatchSettings(schedule=schedule)
    d = Dispatcher(engine, [sub], policy=UrlPolicy(allow_http_loopback=True), settings=ds, cases=store)
    try:
        yield store, d, engine
    finally:
        d.stop(30)
        engine.dispose()


def condition(i: int, tag: str) -> Any:
    from citygate.service.case_model import Condition

    return Condition(
        kind="opened",
        rule_id="bench.threshold",
        subject=f"{tag}-{i:06d}",
        service="environment",
        severity="warning",
        title="bench threshold",
        at_ns=time.time_ns(),
        detail="bench",
        value=150.0,
        site="site-1",
        district="centre",
    )


def record_n(store: Any, n: int, tag: str, wake: Callable[[], None] | None = None) -> tuple[float, list[str]]:
    ids = []
    t0 = time.perf_counter()
    for i in range(n):
        tr = store.record(condition(i, tag))
        ids.append(tr.event_id)
        if wake:
            wake()
    return time.perf_counter() - t0, ids


def sample_event() -> Any:
    from citygate.service.cloudevent import CaseEvent

    data = {
        "action": "opened",
        "from_status": None,
        "to_status": "new",
        "actor": "rules",
        "note": "bench",
        "condition_ns": time.time_ns(),
        "late": False,
        "value": 150.0,
        "case": {
            "id": 1,
            "rule": "bench.threshold",
            "subject": "bench-000001",
            "source": "sensor",
            "service": "environment",
            "severity": "warning",
            "title": "bench threshold",
            "status": "new",
            "site": "site-1",
            "district": "centre",
            "assignee": None,
            "occurrences": 1,
            "late": False,
        },
    }
    return CaseEvent(
        id=str(uuid.uuid4()),
        type="org.citygate.case.opened",
        source="/citygate",
        subject="cases/1",
        time=datetime.now(UTC),
        data=data,
        extensions={"service": "environment", "severity": "warning", "sequence": f"{1:020d}"},
    )


def raw_deliver(url: str, n: int, threads: int, rate: float | None = None) -> tuple[float, list[float]]:
    """``delivery.deliver`` of n fresh events from ``threads`` threads on one client (the
    dispatcher's own HTTP path without the store); (deliveries/s, latencies)."""
    import dataclasses

    from citygate.service.delivery import deliver
    from citygate.service.signing import WebhookSecret

    client = httpx.Client(verify=True, trust_env=False)
    base = sample_event()
    secrets = [WebhookSecret(SECRET)]
    left = list(range(n))
    lock = threading.Lock()
    lat: list[float] = []

    def worker() -> None:
        while True:
            with lock:
                if not left:
                    return
                left.pop()
            if rate:
                time.sleep(1 / rate)
            ev = dataclasses.replace(base, id=str(uuid.uuid4()))
            t0 = time.perf_counter()
            o = deliver(client, url, ev, "structured", secrets, timeout_s=10, now=int(time.time()))
            dt = time.perf_counter() - t0
            assert o.status == "delivered", o
            with lock:
                lat.append(dt)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    client.close()
    return n / dt, lat


def part_transition(args: argparse.Namespace, stores: Stores, recv: Receiver, kind: str) -> dict[str, Any]:
    res: dict[str, Any] = {"load_start": load(), "store": kind, "events": args.transitions}
    recv.mode("ok")
    recv.clear()
    with dispatch_rig(stores.new(kind, "transition"), recv, 4) as (store, d, _):
        d.start()
        committed: dict[str, float] = {}
        period = 1 / args.transition_rate
        t_next = time.perf_counter()
        for i in range(args.transitions):
            now = time.perf_counter()
            if now < t_next:
                time.sleep(t_next - now)
            t_next += period
            tr = store.record(condition(i, "tr"))
            committed[tr.event_id] = time.time()
            d.wake()  # what the evaluator does after a pass with changes
        got = recv.wait_ok(args.transitions, 120)
        seen = recv.first_ok()
    lat = [seen[e] - t for e, t in committed.items() if e in seen]
    recv.clear()
    _, base = raw_deliver(recv.url + "/hook", min(args.transitions, 500), 1, rate=args.transition_rate)
    res.update(
        delivered=got,
        transition_to_delivered=pcts(lat),
        baseline_deliver=pcts(base),
        load_end=load(),
    )
    t, b = res["transition_to_delivered"], res["baseline_deliver"]
    print(
        f"transition [{kind}]: {args.transitions} at {args.transition_rate}/s, {got} delivered; "
        f"committed->delivered p50 {t['p50_ms']:.1f} ms p99 {t['p99_ms']:.1f} ms (max {t['max_ms']:.0f}); "
        f"baseline deliver() p50 {b['p50_ms']:.1f} ms p99 {b['p99_ms']:.1f} ms; "
        f"load {res['load_start']} -> {res['load_end']}",
        flush=True,
    )
    return res


def part_throughput(args: argparse.Namespace, stores: Stores, recv: Receiver, kind: str) -> dict[str, Any]:
    res: dict[str, Any] = {"load_start": load(), "store": kind, "deliveries": args.deliveries}
    for conc in args.concurrency:
        recv.mode("ok")
        recv.clear()
        with dispatch_rig(stores.new(kind, f"tput{conc}"), recv, conc) as (store, d, _):
            rec_s, ids = record_n(store, args.deliveries, f"tp{conc}")
            load_mid = load()
            t0 = time.time()
            d.start()
            got = recv.wait_ok(args.deliveries, 600)
            seen = recv.first_ok()
        t_end = max(seen[i] for i in ids if i in seen)
        rate = got / (t_end - t0)
        recv.clear()
        base_rate, _ = raw_deliver(recv.url + "/hook", args.deliveries, conc)
        res[f"c{conc}"] = {
            "record_rate": args.deliveries / rec_s,
            "dispatch_rate": rate,
            "baseline_rate": base_rate,
            "ratio": rate / base_rate,
            "delivered": got,
            "load_at_start": load_mid,
            "load_after": load(),
        }
        print(
            f"throughput [{kind}] max_concurrency {conc}: {got}/{args.deliveries} delivered at "
            f"{rate:,.0f}/s; baseline deliver() x{conc} threads {base_rate:,.0f}/s "
            f"(ratio {rate / base_rate:.2f}); recorded at {args.deliveries / rec_s:,.0f} transitions/s; "
            f"load {load_mid} -> {load()}",
            flush=True,
        )
    res["load_end"] = load()
    return res


def part_outage(args: argparse.Namespace, stores: Stores, recv: Receiver, kind: str) -> dict[str, Any]:
    from citygate.service.backoff import RetrySchedule

    res: dict[str, Any] = {"load_start": load(), "store": kind, "events": args.outage_events}
    n = args.outage_events
    for mode in args.outage_modes:
        schedule = RetrySchedule(base_s=1.0, cap_s=5.0) if mode == "short" else None
        recv.clear()
        recv.mode("error")
        with dispatch_rig(stores.new(kind, f"outage_{mode}"), recv, 4, schedule) as (store, d, _):
            d.start()
            since_ms = int(time.time() * 1000) - 1000
            rec_s, ids = record_n(store, n, f"out{mode}", wake=d.wake)
            failed = len(recv.dump())
            load_mid = load()
            recv.mode("ok")
            t0 = time.time()
            if mode == "replay":
                d.replay("city", since_ms)
            got = recv.wait_ok(n, args.outage_timeout)
            seen = recv.first_ok()
            attempts = len(recv.dump())
        done_at = max((seen[i] for i in ids if i in seen), default=t0)
        catch_up = done_at - t0
        each = pcts([seen[i] - t0 for i in ids if i in seen])
        res[mode] = {
            "schedule": "RetrySchedule(base_s=1, cap_s=5)"
            if mode == "short"
            else "default (10 s x2, cap 1 h)",
            "replay": mode == "replay",
            "outage_s": rec_s,
            "failed_attempts_during_outage": failed,
            "delivered": got,
            "catch_up_s": catch_up,
            "catch_up_rate": got / catch_up if catch_up > 0 else None,
            "each_after_restore": each,
            "requests_total": attempts,
            "load_at_restore": load_mid,
            "load_after": load(),
        }
        print(
            f"outage [{kind}] {mode}: {n} recorded in {rec_s:.1f} s with the receiver at 500 "
            f"({failed} failed attempts meanwhile); back to 204: {got}/{n} delivered after {catch_up:.1f} s "
            f"({res[mode]['catch_up_rate'] or 0:,.0f}/s; per event p50 {each['p50_ms'] or 0:.0f} ms p99 "
            f"{each['p99_ms'] or 0:.0f} ms); load {load_mid} -> {load()}",
            flush=True,
        )
    res["load_end"] = load()
    return res


def main() -> None:
    if "--receiver" in sys.argv:
        receiver_child()
        return
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--parts",
        nargs="+",
        default=["ingest", "case", "transition", "throughput", "outage"],
        choices=["ingest", "case", "transition", "throughput", "outage"],
    )
    ap.add_argument("--stores", nargs="+", default=["sqlite"], choices=["sqlite", "postgresql"])
    ap.add_argument(
        "--runners",
        nargs="+",
        default=["in_process", "separate"],
        choices=["in_process", "separate"],
        help="ingest part: the workers in the cloud's process, or in `citygate service run`",
    )
    ap.add_argument("--ingest-points", type=int, default=100_000, help="readings per cloud per round")
    ap.add_argument("--ingest-rounds", type=int, default=4)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--conns", type=int, default=2)
    ap.add_argument("--rate", type=int, default=5000, help="case part: readings/s offered")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--triggers", type=float, default=2.0, help="case part: threshold crossings per second")
    ap.add_argument("--transitions", type=int, default=500)
    ap.add_argument("--transition-rate", type=float, default=20.0)
    ap.add_argument("--deliveries", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--outage-events", type=int, default=10_000)
    ap.add_argument(
        "--outage-modes", nargs="+", default=["replay", "short"], choices=["replay", "short", "default"]
    )
    ap.add_argument("--outage-timeout", type=float, default=900)
    args = ap.parse_args()

    summary: dict[str, Any] = {"cpus": os.cpu_count(), "load_start": load(), "args": vars(args)}
    print(f"cpus={os.cpu_count()} load {load()} parts={' '.join(args.parts)} stores={' '.join(args.stores)}")
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        work = Path(tmp)
        stores = Stores(work)
        try:
            if {"ingest", "case"} & set(args.parts):
                rig = CloudRig(work)
                try:
                    if "ingest" in args.parts:
                        summary["ingest"] = part_ingest(args, rig, stores)
                    if "case" in args.parts:
                        summary["case"] = {
                            f"{k}/{runner}": part_case(args, rig, stores, k, runner)
                            for k in args.stores
                            for runner in args.runners
                        }
                finally:
                    rig.close()
            if {"transition", "throughput", "outage"} & set(args.parts):
                recv = Receiver(work)
                try:
                    for part, fn in (
                        ("transition", part_transition),
                        ("throughput", part_throughput),
                        ("outage", part_outage),
                    ):
                        if part in args.parts:
                            summary[part] = {k: fn(args, stores, recv, k) for k in args.stores}
                finally:
                    recv.close()
        finally:
            stores.close()
    summary["load_end"] = load()
    summary.update(headline(summary))
    print(json.dumps(summary))


def headline(s: dict[str, Any]) -> dict[str, Any]:
    """Flat keys for citygate.benchmarks (the first store's numbers; ``_separate`` for the
    workers in `citygate service run`)."""
    out: dict[str, Any] = {}
    stores = s["args"]["stores"]
    for k in stores:
        sfx = "" if k == stores[0] else f"_{k}"
        for runner in s["args"]["runners"]:
            rsfx = sfx + ("" if runner == "in_process" else f"_{runner}")
            placement = f"{k}/{runner}"  # how the ingest and case parts key their results
            if placement in s.get("ingest", {}):
                i = s["ingest"][placement]
                out[f"ingest_ratio{rsfx}"] = i["ratio_median"]
                out[f"ingest_on_rate{rsfx}"] = i["on_rate_median"]
                out[f"ingest_off_rate{rsfx}"] = i["off_rate_median"]
                out[f"evaluated_rate{rsfx}"] = i["evaluated_rate_median"]
            if placement in s.get("case", {}):
                c = s["case"][placement]
                out[f"case_p50_ms{rsfx}"] = c["stored_to_opened"]["p50_ms"]
                out[f"case_p99_ms{rsfx}"] = c["stored_to_opened"]["p99_ms"]
                out[f"case_delivered_p99_ms{rsfx}"] = c["stored_to_delivered"]["p99_ms"]
                out[f"case_achieved_rate{rsfx}"] = c["achieved_rate"]
        if k in s.get("transition", {}):
            t = s["transition"][k]
            out[f"transition_p50_ms{sfx}"] = t["transition_to_delivered"]["p50_ms"]
            out[f"transition_p99_ms{sfx}"] = t["transition_to_delivered"]["p99_ms"]
            out[f"deliver_baseline_p99_ms{sfx}"] = t["baseline_deliver"]["p99_ms"]
        for key, v in s.get("throughput", {}).get(k, {}).items():
            if key.startswith("c") and isinstance(v, dict):
                out[f"deliveries_per_s_{key}{sfx}"] = v["dispatch_rate"]
                out[f"deliveries_ratio_{key}{sfx}"] = v["ratio"]
                out[f"deliver_baseline_per_s_{key}{sfx}"] = v["baseline_rate"]
        for mode in ("replay", "short", "default"):
            if mode in s.get("outage", {}).get(k, {}):
                out[f"outage_catch_up_s_{mode}{sfx}"] = s["outage"][k][mode]["catch_up_s"]
    return out


if __name__ == "__main__":
    main()
