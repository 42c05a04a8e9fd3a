"""Audit: the ledger against what the database holds. Exact, and fast enough for millions.

Per device and in total:

- ``expected``: valid readings the device produced and did not itself drop;
- ``stored``: expected readings found in the database at their exact (seq, ts);
- ``lost``: ``expected - stored``; ``held_lost`` says how many of those the
  device still held unconfirmed when the run ended (it would have resent them);
- ``duplicated``: extra points of one (device, seq): every point beyond the first
  for a seq (the same reading stored at more than one timestamp); a device that
  rebooted (the ledger's ``boot``) has each seq once per boot, told apart by the
  timestamp;
- ``unexpected``: points of an audited device whose seq is not an expected reading
  at that timestamp (a wrong ts, a seq never produced, a payload that should have been
  rejected: ``faulty_stored`` counts those apart);
- ``dropped``: readings the device let go unconfirmed because its memory was full;
  ``dropped_stored``: of those, how many made it anyway (not counted as unexpected).

Every point of an audited device is counted once:
``points = stored + dropped_stored + unexpected + duplicated``
(a faulty payload that was stored is in ``unexpected`` and also in ``faulty_stored``).

The database is read one measurement at a time over the ledger's time range, in
chunks (InfluxDB 1.x: InfluxQL over ``/query`` with ``chunked=true&epoch=ns``;
VictoriaMetrics: ``/api/v1/export`` of ``<measurement>_seq``). The ledger is held
as arrays indexed by seq, so memory is a few bytes per reading.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from citygate.errors import AuditError
from citygate.simulators.ledger import (
    STATE_DROPPED,
    STATE_EXPECTED,
    STATE_FAULTY,
    DeviceEntries,
    load,
)

Points = Sequence[tuple[int, int | None]]  # (ts_ns, seq)


class PointSource(Protocol):
    """Where stored points come from: (device_id, [(ts_ns, seq), ...]) batches."""

    def points(self, measurement: str, start_ns: int, end_ns: int) -> Iterator[tuple[str, Points]]: ...


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxV1Source:
    """InfluxDB 1.x (and the v1-compatible /query of 2.x/3.x) over HTTP."""

    def __init__(
        self,
        url: str,
        db: str,
        *,
        chunk_size: int = 100_000,
        timeout: float = 120.0,
        client: httpx.Client | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.db = db
        self.chunk_size = chunk_size
        self._client = client or httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def points(self, measurement: str, start_ns: int, end_ns: int) -> Iterator[tuple[str, Points]]:
        # Identifiers are quoted and the times are integers: nothing from outside is spliced in.
        q = (
            f"SELECT {_quote_ident('seq')} FROM {_quote_ident(measurement)} "  # noqa: S608
            f"WHERE time >= {start_ns} AND time <= {end_ns} GROUP BY {_quote_ident('device_id')}"
        )
        params = {"db": self.db, "q": q, "epoch": "ns", "chunked": "true", "chunk_size": str(self.chunk_size)}
        try:
            with self._client.stream("POST", f"{self.url}/query", data=params) as r:
                if r.status_code != 200:
                    body = r.read()[:500].decode(errors="replace")
                    raise AuditError(
                        f"InfluxDB {self.url} answered {r.status_code} to the audit query: {body}"
                    )
                for line in r.iter_lines():
                    if line.strip():
                        yield from self._series(orjson.loads(line))
        except httpx.HTTPError as e:
            raise AuditError(f"cannot query InfluxDB at {self.url}: {e}") from e
        except orjson.JSONDecodeError as e:
            raise AuditError(f"InfluxDB at {self.url} sent an unreadable answer: {e}") from e

    @staticmethod
    def _series(doc: dict[str, Any]) -> Iterator[tuple[str, Points]]:
        if "error" in doc:
            raise AuditError(f"InfluxDB: {doc['error']}")
        for result in doc.get("results", []):
            if "error" in result:
                raise AuditError(f"InfluxDB: {result['error']}")
            for s in result.get("series", []) or []:
                device = (s.get("tags") or {}).get("device_id", "")
                cols = s.get("columns", [])
                ti, si = cols.index("time"), cols.index("seq")
                yield device, [(int(v[ti]), v[si]) for v in s.get("values", [])]


class VictoriaMetricsSource:
    """VictoriaMetrics: the ``<measurement>_seq`` series through /api/v1/export (ms timestamps)."""

    def __init__(self, url: str, *, timeout: float = 120.0, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def points(self, measurement: str, start_ns: int, end_ns: int) -> Iterator[tuple[str, Points]]:
        params = {
            "match[]": f'{{__name__="{measurement}_seq"}}',
            "start": str(start_ns // 1_000_000 / 1000.0),
            "end": str(end_ns // 1_000_000 / 1000.0 + 0.001),
        }
        try:
            with self._client.stream("GET", f"{self.url}/api/v1/export", params=params) as r:
                if r.status_code != 200:
                    body = r.read()[:500].decode(errors="replace")
                    raise AuditError(f"VictoriaMetrics {self.url} answered {r.status_code}: {body}")
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    doc = orjson.loads(line)
                    device = doc.get("metric", {}).get("device_id", "")
                    pts = [
                        (int(t) * 1_000_000, int(v))
                        for t, v in zip(doc.get("timestamps", []), doc.get("values", []), strict=False)
                        if start_ns <= int(t) * 1_000_000 <= end_ns
                    ]
                    yield device, pts
        except httpx.HTTPError as e:
            raise AuditError(f"cannot query VictoriaMetrics at {self.url}: {e}") from e
        except orjson.JSONDecodeError as e:
            raise AuditError(f"VictoriaMetrics at {self.url} sent an unreadable answer: {e}") from e


@dataclass(slots=True)
class DeviceAudit:
    device_id: str
    measurement: str
    expected: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    dropped: int = 0
    dropped_stored: int = 0
    faulty_stored: int = 0
    held_lost: int = 0
    points: int = 0

    def add(self, other: DeviceAudit) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0


COUNTS: tuple[str, ...] = (
    "expected",
    "stored",
    "lost",
    "duplicated",
    "unexpected",
    "dropped",
    "dropped_stored",
    "faulty_stored",
    "held_lost",
    "points",
)


@dataclass(slots=True)
class AuditReport:
    devices: list[DeviceAudit]
    total: DeviceAudit
    ledger_records: int
    seconds: float
    ledger_conflicts: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "total": asdict(self.total),
            "devices": [asdict(d) for d in self.devices],
            "ledger_records": self.ledger_records,
            "ledger_conflicts": self.ledger_conflicts,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }


class _Tally:
    """Points of one device, counted against its ledger arrays."""

    __slots__ = ("entries", "hits", "matched", "other")

    def __init__(self, entries: DeviceEntries) -> None:
        self.entries = entries
        size = len(entries.state)
        self.hits = bytearray(size)  # points per seq slot (saturating at 255)
        self.matched = bytearray(size)  # 1: a point at the ledger's exact ts
        self.other: dict[int | None, int] = {}  # seqs outside the ledger -> points

    def add(self, points: Points) -> None:
        e = self.entries
        if len(e.segments) > 1:
            self._add_rebooted(points)
            return
        base, size = e.base, len(e.state)
        ts_ms, hits, matched, other = e.ts_ms, self.hits, self.matched, self.other
        for ts_ns, seq in points:
            i = seq - base if seq is not None else -1
            if 0 <= i < size and e.state[i]:
                if hits[i] < 255:
                    hits[i] += 1
                if ts_ns == ts_ms[i] * 1_000_000:
                    matched[i] = 1
            else:
                other[seq] = other.get(seq, 0) + 1

    def _add_rebooted(self, points: Points) -> None:
        """A device that rebooted used each low seq once per boot: the timestamp tells which
        reading a point is (a point matching none is counted against the first boot's)."""
        e = self.entries
        state, ts_ms, hits, matched, other = e.state, e.ts_ms, self.hits, self.matched, self.other
        for ts_ns, seq in points:
            slots = [i for i in e.slots(seq) if state[i]] if seq is not None else []
            if not slots:
                other[seq] = other.get(seq, 0) + 1
                continue
            i = next((j for j in slots if ts_ms[j] * 1_000_000 == ts_ns), -1)
            if i >= 0:
                matched[i] = 1
            else:
                i = slots[0]
            if hits[i] < 255:
                hits[i] += 1

    def result(self) -> DeviceAudit:
        e = self.entries
        a = DeviceAudit(e.device.device_id, e.device.measurement)
        state, hits, matched, held = e.state, self.hits, self.matched, e.held
        a.expected = state.count(STATE_EXPECTED)
        a.dropped = state.count(STATE_DROPPED)
        for i in _nonzero(hits):
            n = hits[i]
            a.points += n
            a.duplicated += n - 1
            s = state[i]
            if matched[i]:
                if s == STATE_EXPECTED:
                    a.stored += 1
                elif s == STATE_DROPPED:
                    a.dropped_stored += 1
                else:
                    a.unexpected += 1
                    if s == STATE_FAULTY:
                        a.faulty_stored += 1
            else:
                a.unexpected += 1
        for n in self.other.values():
            a.points += n
            a.unexpected += 1
            a.duplicated += n - 1
        a.lost = a.expected - a.stored
        if any(held):
            a.held_lost = sum(1 for i in _nonzero(held) if state[i] == STATE_EXPECTED and not matched[i])
        return a


def _nonzero(b: bytearray) -> Iterator[int]:
    """Indices of the non-zero bytes."""
    return (i for i, v in enumerate(b) if v)


def audit(
    ledger_path: Path,
    source: PointSource,
    *,
    devices: Iterable[str] | None = None,
    margin_s: float = 0.0,
) -> AuditReport:
    """Compare the ledger with the database; ``devices`` limits the audit to some devices."""
    t0 = time.perf_counter()
    only = set(devices) if devices is not None else None
    data = load(ledger_path, only)
    notes: list[str] = []
    if only is not None:
        missing = sorted(only - set(data.entries))
        if missing:
            notes.append(f"not in the ledger: {', '.join(missing[:10])}")
    by_measurement: dict[str, list[DeviceEntries]] = {}
    for e in data.entries.values():
        if len(e.state):
            by_measurement.setdefault(e.device.measurement, []).append(e)
    margin_ns = int(margin_s * 1e9)
    tallies: dict[str, _Tally] = {}
    for measurement, group in sorted(by_measurement.items()):
        start = min(e.min_ts for e in group) * 1_000_000 - margin_ns
        end = max(e.max_ts for e in group) * 1_000_000 + margin_ns
        wanted = {e.device.device_id: e for e in group}
        for device_id, points in source.points(measurement, start, end):
            entries = wanted.get(device_id)
            if entries is None:
                continue
            tally = tallies.get(device_id)
            if tally is None:
                tally = tallies[device_id] = _Tally(entries)
            tally.add(points)
    results: list[DeviceAudit] = []
    total = DeviceAudit("total", "")
    conflicts = 0
    for e in sorted(data.entries.values(), key=lambda x: x.device.index):
        t = tallies.get(e.device.device_id) or _Tally(e)
        r = t.result()
        results.append(r)
        total.add(r)
        conflicts += e.conflicts
    if conflicts:
        notes.append(f"{conflicts} ledger records gave one seq two timestamps (a broken resume)")
    return AuditReport(
        devices=results,
        total=total,
        ledger_records=data.records,
        seconds=time.perf_counter() - t0,
        ledger_conflicts=conflicts,
        notes=notes,
    )
