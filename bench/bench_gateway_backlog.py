"""Gateway memory with a large backlog, and the drain rate, against an HTTPS test cloud.

Fills the outbox with N readings (default 1,000,000) as if the cloud had been
unreachable, starts the agent, samples its RSS while the cloud stays down,
then lets the cloud answer and samples RSS until the backlog is drained.
The test cloud (citygate.testing.fake_cloud: real TLS, real wire contract,
no database) accepts batches as fast as the agent sends them.

    .venv/bin/python bench/bench_gateway_backlog.py [--readings 1000000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import orjson
import psutil
from _common import agent_health, bench_pki, start_agent, write_gateway_config

from citygate.certs.pki import CaName, CertKind
from citygate.gateway.outbox import NewReading, Outbox, OutboxLimits
from citygate.servers.mosquitto import LocalMosquitto
from citygate.servers.process import free_port
from citygate.testing.fake_cloud import FakeCloud


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="citygate-backlog-") as tmp:
        work = Path(tmp)
        devices = [f"dev-{i:05d}" for i in range(args.devices)]
        pki = bench_pki(work, devices)
        broker = LocalMosquitto(work / "mosquitto", pki)
        broker.start()
        server = pki.files(CertKind.SERVER, "localhost")
        cloud = FakeCloud(cert=server.cert, key=server.key, client_ca=pki.ca_cert_path(CaName.INFRA))
        cloud.mode = "down"
        cloud.start()

        state = work / "state"
        t0 = time.perf_counter()
        ob = Outbox(state / "outbox.db", OutboxLimits(max_bytes=4 * 1024**3, min_free_disk_bytes=0))
        now_ms = int(time.time() * 1000) - 3_600_000
        chunk = 20_000
        for start in range(0, args.readings, chunk):
            rows = []
            for i in range(start, min(start + chunk, args.readings)):
                d = devices[i % args.devices]
                seq = i // args.devices
                body = orjson.dumps(
                    {
                        "device_id": d,
                        "ts": now_ms + seq,
                        "seq": seq,
                        "readings": {"level": 1.25, "battery": 88.0},
                    }
                )
                rows.append(NewReading(d, seq, time.time_ns() - 3_600_000_000_000, body))
            ob.commit(rows)
        depth = ob.stats().depth
        ob.close()
        fill_s = time.perf_counter() - t0
        db_mb = (state / "outbox.db").stat().st_size / 1e6

        http_port = free_port()
        cfg = write_gateway_config(
            work / "gateway.toml",
            pki,
            broker,
            state_dir=state,
            cloud_url=cloud.url,
            http_port=http_port,
            outbox_max_bytes=4294967296,
            outbox_min_free_disk_bytes=0,
            backoff_max_s=1.0,
            heartbeat_interval_s=5.0,
        )
        agent = start_agent(cfg, work / "agent.log")
        proc = psutil.Process(agent.pid)
        while True:
            try:
                agent_health(http_port)
                break
            except OSError:
                time.sleep(0.2)
        held = []
        t_hold = time.perf_counter()
        while time.perf_counter() - t_hold < 10:
            held.append(proc.memory_info().rss)
            time.sleep(0.5)
        cloud.mode = "ok"
        t1 = time.perf_counter()
        drain = []
        while True:
            h = agent_health(http_port)
            drain.append(proc.memory_info().rss)
            if h["outbox_depth"] == 0:
                break
            time.sleep(0.5)
        drain_s = time.perf_counter() - t1
        agent.terminate()
        agent.wait(60)
        cloud.stop()
        broker.stop()
        summary = {
            "backlog_readings": depth,
            "outbox_file_mb": round(db_mb, 1),
            "fill_s": round(fill_s, 1),
            "rss_mb_while_held": {"min": min(held) / 1e6, "max": max(held) / 1e6},
            "rss_mb_while_draining": {"min": min(drain) / 1e6, "max": max(drain) / 1e6},
            "drain_s": round(drain_s, 1),
            "drain_rate_per_s": round(depth / drain_s),
            "stored_by_test_cloud": cloud.count(),
        }
    print(f"backlog {depth:,} readings ({db_mb:.0f} MB outbox file)")
    print(f"RSS while the cloud is down: {summary['rss_mb_while_held']['max']:.1f} MB max")
    print(
        f"RSS while draining: {summary['rss_mb_while_draining']['min']:.1f}-"
        f"{summary['rss_mb_while_draining']['max']:.1f} MB"
    )
    print(
        f"drained in {drain_s:.1f} s = {summary['drain_rate_per_s']:,} readings/s "
        f"(test cloud stored {summary['stored_by_test_cloud']:,})"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
