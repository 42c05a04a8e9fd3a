"""The audit against a real InfluxDB 1.x (and VictoriaMetrics): exact counts of what is where."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from citygate.servers.influxdb import LocalInfluxDB
from citygate.servers.process import loopback_http
from citygate.servers.victoriametrics import LocalVictoriaMetrics
from citygate.simulators.audit import InfluxV1Source, VictoriaMetricsSource, audit
from citygate.simulators.ledger import LedgerWriter, RecordKind

pytestmark = pytest.mark.servers

T0 = 1_780_000_000_000  # ms


def point(measurement: str, device: str, seq: int, ts_ms: int, value: float = 1.5) -> str:
    return (
        f"{measurement},device_id={device},district=centre,profile_version=1,site=s1 "
        f"seq={seq}i,level={value} {ts_ms * 1_000_000}"
    )


def write_ledger(path: Path, devices: dict[str, str], n: int) -> dict[str, list[tuple[int, int]]]:
    """n readings per device, 1 s apart; returns device -> [(seq, ts_ms)]."""
    out: dict[str, list[tuple[int, int]]] = {}
    with LedgerWriter(path) as w:
        for k, (dev, measurement) in enumerate(devices.items()):
            idx = w.device(dev, measurement, measurement, 1)
            out[dev] = []
            for seq in range(n):
                ts = T0 + seq * 1000 + k
                w.produced(idx, seq, ts)
                out[dev].append((seq, ts))
    return out


def test_nothing_lost_reports_zero(influxdb: LocalInfluxDB, tmp_path: Path) -> None:
    db = "audit_clean"
    influxdb.create_database(db)
    devices = {"a1": "water_level", "a2": "water_level", "n1": "noise"}
    ledger = write_ledger(tmp_path / "l.bin", devices, 300)
    lines = [point(devices[d], d, s, ts) for d, rs in ledger.items() for s, ts in rs]
    # Another device of the same measurement, not in the ledger, must be ignored.
    lines += [point("water_level", "other", s, T0 + s) for s in range(50)]
    influxdb.write(db, "\n".join(lines).encode())
    report = audit(tmp_path / "l.bin", InfluxV1Source(influxdb.url, db, chunk_size=100))
    t = report.total
    assert (t.expected, t.stored, t.lost, t.duplicated, t.unexpected) == (900, 900, 0, 0, 0)
    assert t.points == 900
    assert all(d.clean for d in report.devices)


def test_exact_counts_of_deleted_duplicated_and_unexpected(influxdb: LocalInfluxDB, tmp_path: Path) -> None:
    db = "audit_faults"
    influxdb.create_database(db)
    path = tmp_path / "l.bin"
    devices = {"b1": "water_level", "b2": "noise"}
    ledger = write_ledger(path, devices, 100)
    with LedgerWriter(path) as w:
        b1 = w.device("b1", "water_level", "water_level", 1)
        w.add(RecordKind.DROPPED, b1, 90, ledger["b1"][90][1])  # the device dropped 90 and 91
        w.add(RecordKind.DROPPED, b1, 91, ledger["b1"][91][1])
        w.add(RecordKind.HELD, b1, 5, ledger["b1"][5][1])
        w.add(RecordKind.FAULTY, b1, 100, T0 + 100_000, code=3)
    lost = {("b1", 5), ("b1", 6), ("b1", 7), ("b2", 50)}
    lines = [
        point(devices[d], d, s, ts)
        for d, rs in ledger.items()
        for s, ts in rs
        if (d, s) not in lost and not (d == "b1" and s == 91)
    ]
    # duplicates: the same seq stored again at another timestamp (b1: 3 seqs, one of them twice more)
    lines += [point("water_level", "b1", s, ledger["b1"][s][1] + 7) for s in (10, 11, 12)]
    lines.append(point("water_level", "b1", 12, ledger["b1"][12][1] + 9))
    # unexpected: a seq never produced, a lost reading stored at a wrong ts, the faulty payload
    lines.append(point("water_level", "b1", 555, T0 + 50_500))
    lines.append(point("noise", "b2", 50, ledger["b2"][50][1] + 3))
    lines.append(point("water_level", "b1", 100, T0 + 100_000))
    influxdb.write(db, "\n".join(lines).encode())

    report = audit(path, InfluxV1Source(influxdb.url, db))
    by = {d.device_id: d for d in report.devices}
    b1, b2 = by["b1"], by["b2"]
    assert (b1.expected, b1.stored, b1.lost, b1.held_lost) == (98, 95, 3, 1)
    assert (b1.duplicated, b1.unexpected, b1.faulty_stored) == (4, 2, 1)
    assert (b1.dropped, b1.dropped_stored) == (2, 1)
    assert (b2.expected, b2.stored, b2.lost, b2.duplicated, b2.unexpected) == (100, 99, 1, 0, 1)
    t = report.total
    assert (t.lost, t.duplicated, t.unexpected) == (4, 4, 3)
    assert t.points == t.stored + t.dropped_stored + t.unexpected + t.duplicated
    assert not t.clean


def test_victoriametrics_source(victoriametrics: LocalVictoriaMetrics, tmp_path: Path) -> None:
    devices = {"v1": "weather", "v2": "weather"}
    ledger = write_ledger(tmp_path / "l.bin", devices, 50)
    lines = [point("weather", d, s, ts) for d, rs in ledger.items() for s, ts in rs if (d, s) != ("v2", 7)]
    loopback_http().post(
        f"{victoriametrics.url}/write", content="\n".join(lines).encode(), timeout=10
    ).raise_for_status()
    victoriametrics.export('{__name__="weather_seq"}', min_series=2)
    report = audit(tmp_path / "l.bin", VictoriaMetricsSource(victoriametrics.url))
    t = report.total
    assert (t.expected, t.stored, t.lost, t.duplicated, t.unexpected) == (100, 99, 1, 0, 0)


def test_audit_is_fast(influxdb: LocalInfluxDB, tmp_path: Path) -> None:
    """200k readings (the report gives the 1M figure): well under the 1M-in-a-minute budget."""
    db = "audit_speed"
    influxdb.create_database(db)
    devices = {f"s{i:03d}": "noise" for i in range(200)}
    ledger = write_ledger(tmp_path / "l.bin", devices, 1000)
    lines = [point("noise", d, s, ts) for d, rs in ledger.items() for s, ts in rs]
    for i in range(0, len(lines), 10_000):
        influxdb.write(db, "\n".join(lines[i : i + 10_000]).encode())
    t0 = time.perf_counter()
    report = audit(tmp_path / "l.bin", InfluxV1Source(influxdb.url, db))
    took = time.perf_counter() - t0
    assert report.total.stored == 200_000
    assert report.total.clean
    assert took < 15, took
