"""The SensorThings API (issue 16): a device-day of Observations and a 1,000-device Things page,
each against a baseline measured in the same run.

    .venv/bin/python bench/bench_sta.py [--devices 1000] [--points 8640] [--repeat 20]

One cloud (`citygate cloud run`, its own process) with ``[cloud.sta]`` on, against a real
InfluxDB 1.x on this machine; ``--devices`` air-quality stations in the inventory, the first
of which holds ``--points`` readings at 10 s (8,640: one day) posted through /v1/ingest.

* ``day``: ``Datastreams(id)/Observations`` with that day's phenomenonTime range and
  ``$top`` = the day, one request with a reader token (so not the anonymous cache), p50/p99
  over ``--repeat``. Baseline: the same InfluxQL (taken from the service's own query builder)
  sent to InfluxDB's ``/query`` directly, chunked as the cloud asks for it, parsed. Also
  the same day walked through ``@iot.nextLink`` s at ``$top=1000``.
* ``things``: ``Things?$top=<devices>&$expand=Datastreams`` over HTTPS (reader token), p50/p99.
  Baselines: the inventory serialised without STA in this process (each device record
  with its profile's fields, orjson), and the STA answer computed in this process (the
  same code, without HTTP and TLS); and the model built once from the inventory (what the
  first request after an inventory change pays). Also the anonymous (cached) answer.

Answers are parsed with orjson on both sides. Prints one line per measurement, then one JSON
summary line. The machine is shared: ``/proc/loadavg`` is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import tomli_w
from _common import (
    AIR_QUALITY_VALUES,
    GATEWAY_ID,
    bench_pki,
    cloud_client,
    cloud_section,
    load,
    pcts,
    start_cloud,
    stop_process,
    wait_listening,
)

from citygate.certs.pki import Pki
from citygate.cloud.reads import Collected
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.rfc3339 import format_rfc3339_ns
from citygate.opendata.sta import observations as obs
from citygate.opendata.sta.entities import build_model
from citygate.opendata.sta.query import parse_filter
from citygate.opendata.sta.render import Links
from citygate.opendata.sta.service import Context, View, respond
from citygate.opendata.sta.settings import StaSettings
from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.process import free_port

_NS = 1_000_000_000
STEP_NS = 10 * _NS


def timed(fn: Any, repeat: int) -> list[float]:
    fn()  # warm: connections, caches, first imports
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def client(pki: Pki, port: int, *, cert: bool = False, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return cloud_client(pki, port, cert=cert, timeout=120, headers=headers)


def records(n: int) -> list[DeviceRecord]:
    return [
        DeviceRecord(
            device_id=f"aq-{i:04d}",
            profile="air_quality",
            profile_version=1,
            site=f"site-{i % 50}",
            district="centre",
            lat=52.4 + (i % 100) / 500,
            lon=13.2 + (i // 100) / 50,
            gateways=(GATEWAY_ID,),
        )
        for i in range(n)
    ]


def day_bodies(device: str, points: int, start_ns: int) -> list[bytes]:
    readings = [
        {
            "device_id": device,
            "ts": (start_ns + k * STEP_NS) // 1_000_000,
            "seq": k,
            "readings": {**AIR_QUALITY_VALUES, "pm2_5": float(k % 500)},
        }
        for k in range(points)
    ]
    return [
        gzip.compress(orjson.dumps({"batch_id": f"day-{i}", "readings": readings[i : i + 2000]}), 1)
        for i in range(0, len(readings), 2000)
    ]


def influxql_of(stream: obs.Stream, f: obs.ObsFilter, page: obs.Page) -> str:
    """The statement the service sends for this page (its builder, with a recording runner)."""
    sent: list[str] = []

    async def record(q: obs.StaQuery) -> Collected:
        sent.append(q.influxql())
        return Collected()

    asyncio.run(obs.read_merged(record, [stream], f, page))
    assert len(sent) == 1, sent
    return sent[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000, help="air-quality stations in the inventory")
    ap.add_argument("--points", type=int, default=8640, help="readings of the first station, 10 s apart")
    ap.add_argument("--repeat", type=int, default=20, help="timed requests per measurement")
    args = ap.parse_args()
    load_start = load()
    print(f"loadavg at start: {load_start}")
    with tempfile.TemporaryDirectory(prefix="bench-sta-") as tmp:
        work = Path(tmp)
        pki = bench_pki(work)
        devices = records(args.devices)
        Inventory.load(pki.inventory_path).with_devices(*devices).save(pki.inventory_path)
        influx = LocalInfluxDB(work / "influx")
        influx.start()
        influx.create_database("bench")
        token = secrets.token_urlsafe(32)
        port = free_port()
        top = max(args.points, args.devices)
        cloud = cloud_section(
            pki,
            port,
            client_cert_mode="optional",
            influx_url=influx.url,
            influx_db="bench",
            log_level="warning",
            influx_timeout_s=60,
            reader_tokens={"bench": token},
            opendata={
                "enabled": True,
                "public_profiles": ["air_quality"],
                "public_rate_per_minute": 1000000,
                "public_burst": 100000,
            },
            sta={
                "enabled": True,
                "max_top": top,
                "max_observations": top + 1,
                "max_entities": args.devices * 11,
            },
        )
        cfg = work / "cloud.toml"
        cfg.write_text(tomli_w.dumps({"cloud": cloud}))
        proc = start_cloud(cfg, work / "cloud.log")
        try:
            if not wait_listening(proc, port, 30):
                raise SystemExit(f"cloud did not start: {(work / 'cloud.log').read_text()[-2000:]}")
            summary = run(args, pki, port, token, influx, devices)
        finally:
            stop_process(proc, reap_s=10)
            influx.stop()
    summary["loadavg_start"] = load_start
    summary["loadavg_end"] = load()
    print(f"loadavg at end: {summary['loadavg_end']}")
    print(json.dumps(summary))


def run(
    args: argparse.Namespace,
    pki: Pki,
    port: int,
    token: str,
    influx: LocalInfluxDB,
    devices: list[DeviceRecord],
) -> dict[str, Any]:
    day_device = devices[0].device_id
    end_ns = time.time_ns() // _NS * _NS - 60 * _NS
    start_ns = end_ns - args.points * STEP_NS
    with client(pki, port, cert=True) as gw:
        for body in day_bodies(day_device, args.points, start_ns):
            r = gw.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
            if r.status_code != 200 or r.json()["rejected"]:
                raise SystemExit(f"preload failed: {r.status_code} {r.text[:300]}")
    reader = client(pki, port, token=token)
    anonymous = client(pki, port)
    ds = reader.get("/sta/v1.1/Datastreams", params={"$filter": f"name eq '{day_device}/pm2_5'"}).json()
    ds_id = ds["value"][0]["@iot.id"]
    window = (
        f"phenomenonTime ge {format_rfc3339_ns(start_ns)} and phenomenonTime lt {format_rfc3339_ns(end_ns)}"
    )
    day_params = {"$filter": window, "$top": str(args.points)}
    day_path = f"/sta/v1.1/Datastreams({ds_id})/Observations"

    def sta_day() -> None:
        r = reader.get(day_path, params=day_params)
        if r.status_code != 200 or len(orjson.loads(r.content)["value"]) != args.points:
            raise SystemExit(f"STA day read: {r.status_code} {r.text[:300]}")

    # The baseline: the statement the service sends, straight to InfluxDB, chunked as the cloud asks.
    stream = obs.Stream(ds_id, day_device, "air_quality", "pm2_5", "float", 0, "air_quality")
    f = obs.ObsFilter(obs.Window(start_ns, end_ns))
    text = influxql_of(stream, f, obs.Page(args.points, 0, False, False))
    direct = httpx.Client(timeout=120, trust_env=False)

    def influx_day() -> None:
        r = direct.get(
            f"{influx.url}/query",
            params={"db": "bench", "q": text, "epoch": "ns", "chunked": "true", "chunk_size": "2000"},
        )
        rows = sum(
            len(s["values"])
            for line in r.text.splitlines()
            if line
            for res in orjson.loads(line)["results"]
            for s in res.get("series", [])
        )
        if r.status_code != 200 or rows != args.points:
            raise SystemExit(f"InfluxDB day read: {r.status_code} {rows} rows {r.text[:300]}")

    def sta_day_paged() -> None:
        page = orjson.loads(reader.get(day_path, params={**day_params, "$top": "1000"}).content)
        n = len(page["value"])
        while "@iot.nextLink" in page:
            page = orjson.loads(reader.get(page["@iot.nextLink"]).content)
            n += len(page["value"])
        if n != args.points:
            raise SystemExit(f"paged walk got {n} Observations")

    day_sta = timed(sta_day, args.repeat)
    day_influx = timed(influx_day, args.repeat)
    day_paged = timed(sta_day_paged, max(3, args.repeat // 4))
    out: dict[str, Any] = {
        "devices": args.devices,
        "points": args.points,
        "repeat": args.repeat,
        "influxql": text,
    }
    for name, xs in (
        ("day_sta", day_sta),
        ("day_influxdb_direct", day_influx),
        ("day_sta_paged_1000", day_paged),
    ):
        out[name] = pcts(xs, count=False, mean_median=True)
    out["day_ratio_p50"] = out["day_sta"]["p50_ms"] / out["day_influxdb_direct"]["p50_ms"]
    print(
        f"device-day ({args.points} Observations), STA one request: p50 {out['day_sta']['p50_ms']:.1f} ms, "
        f"p99 {out['day_sta']['p99_ms']:.1f} ms"
    )
    print(
        f"device-day, same InfluxQL to InfluxDB directly: p50 {out['day_influxdb_direct']['p50_ms']:.1f} ms, "
        f"p99 {out['day_influxdb_direct']['p99_ms']:.1f} ms (STA/direct p50 {out['day_ratio_p50']:.2f}x)"
    )
    print(
        "device-day, STA walked at $top=1000 through next links: "
        f"p50 {out['day_sta_paged_1000']['p50_ms']:.1f} ms"
    )

    things_params = {"$top": str(args.devices), "$expand": "Datastreams"}

    def sta_things(c: httpx.Client = reader) -> None:
        r = c.get("/sta/v1.1/Things", params=things_params)
        if r.status_code != 200 or len(orjson.loads(r.content)["value"]) != args.devices:
            raise SystemExit(f"STA Things page: {r.status_code} {r.text[:300]}")

    registry = ProfileRegistry()
    inventory = Inventory.load(pki.inventory_path)

    def inventory_json() -> None:
        doc = []
        for record in inventory.values():
            profile = registry.get(record.profile, record.profile_version)
            doc.append(
                {
                    **record.model_dump(mode="json"),
                    "fields": {k: v.model_dump(mode="json") for k, v in profile.fields.items()},
                }
            )
        orjson.dumps(doc)

    t0 = time.perf_counter()
    model = build_model(inventory, registry)
    build_s = time.perf_counter() - t0
    view = View(model, model.profiles)
    settings = StaSettings(
        enabled=True, max_top=max(args.devices, 100), max_entities=max(args.devices, 100) * 11
    )
    items = list(things_params.items())

    loop = asyncio.new_event_loop()

    def sta_in_process() -> None:
        ctx = Context(settings, view, Links("https://localhost/sta/v1.1"), None, time.time_ns())
        orjson.dumps(loop.run_until_complete(respond(ctx, "Things", items)).body)

    parse_filter("name eq 'x'")  # the parser's import, not timed
    things_http = timed(sta_things, args.repeat)
    things_cached = timed(lambda: sta_things(anonymous), args.repeat)
    things_local = timed(sta_in_process, args.repeat)
    things_base = timed(inventory_json, args.repeat)
    size = len(reader.get("/sta/v1.1/Things", params=things_params).content)
    for name, xs in (
        ("things_sta_https", things_http),
        ("things_sta_anonymous_cached", things_cached),
        ("things_sta_in_process", things_local),
        ("things_inventory_json_in_process", things_base),
    ):
        out[name] = pcts(xs, count=False, mean_median=True)
    out["things_body_bytes"] = size
    out["model_build_ms"] = build_s * 1000
    out["things_ratio_in_process_p50"] = (
        out["things_sta_in_process"]["p50_ms"] / out["things_inventory_json_in_process"]["p50_ms"]
    )
    print(
        f"Things?$top={args.devices}&$expand=Datastreams over HTTPS: "
        f"p50 {out['things_sta_https']['p50_ms']:.1f} ms, "
        f"p99 {out['things_sta_https']['p99_ms']:.1f} ms, {size / 1e6:.1f} MB"
    )
    print(f"  anonymous, from the cache: p50 {out['things_sta_anonymous_cached']['p50_ms']:.1f} ms")
    print(
        f"  the same answer in process (no HTTP/TLS): p50 {out['things_sta_in_process']['p50_ms']:.1f} ms; "
        "the inventory serialised without STA: "
        f"p50 {out['things_inventory_json_in_process']['p50_ms']:.1f} ms "
        f"({out['things_ratio_in_process_p50']:.1f}x)"
    )
    print(f"  the entity model built from the inventory once: {out['model_build_ms']:.0f} ms")
    loop.close()
    for c in (reader, anonymous, direct):
        c.close()  # kept-alive connections would hold the cloud's shutdown
    return out


if __name__ == "__main__":
    main()
