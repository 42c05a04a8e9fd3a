"""The audit of a device that rebooted: the same seqs twice, told apart by their timestamps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from citygate.simulators.audit import Points, audit
from citygate.simulators.ledger import LedgerWriter, RecordKind

T0 = 1_780_000_000_000  # ms


class MemorySource:
    """Stored points, as a database would give them: (device, [(ts_ns, seq)])."""

    def __init__(self, points: dict[str, list[tuple[int, int]]]) -> None:
        self._points = points  # device -> [(seq, ts_ms)]

    def points(self, measurement: str, start_ns: int, end_ns: int) -> Iterator[tuple[str, Points]]:
        for device, pts in self._points.items():
            yield device, [(ts * 1_000_000, seq) for seq, ts in pts if start_ns <= ts * 1_000_000 <= end_ns]


def test_readings_of_both_boots_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "l.bin"
    old = [(seq, T0 + 1000 * seq) for seq in range(20)]  # boot 0: every second, whole seconds
    new = [(seq, T0 + 10_500 + 1000 * seq) for seq in range(20)]  # boot 1: 0 again, at half seconds
    with LedgerWriter(path) as w:
        r = w.device("r", "noise", "noise", 1)
        other = w.device("o", "noise", "noise", 1)
        for seq, ts in old:
            w.produced(r, seq, ts)
            w.produced(other, seq, ts + 1)
        w.add(RecordKind.DROPPED, r, 19, old[19][1])  # unconfirmed when it rebooted
        for seq, ts in new:
            w.produced(r, seq, ts, boot=1)
    # Everything stored, but the new seqs 0-4 were confirmed as "resends" and never stored
    # (what a resend check on seq + timestamp span did), and one old reading stored twice.
    stored = {
        "r": [p for p in old if p[0] != 19] + new[5:] + [(3, old[3][1] + 7)],
        "o": [(seq, ts + 1) for seq, ts in old],
    }
    report = audit(path, MemorySource(stored))
    by = {d.device_id: d for d in report.devices}
    r_audit = by["r"]
    assert report.ledger_conflicts == 0
    assert (r_audit.expected, r_audit.stored, r_audit.lost, r_audit.dropped) == (39, 34, 5, 1)
    assert (r_audit.duplicated, r_audit.unexpected) == (1, 0)
    assert by["o"].clean and by["o"].stored == 20
    # Everything there: clean.
    stored["r"] = old[:19] + new
    t = audit(path, MemorySource(stored)).total
    assert (t.expected, t.stored, t.lost, t.duplicated, t.unexpected) == (59, 59, 0, 0, 0)
    # A point of a seq both boots used, at a timestamp neither had: a second point for that seq
    # (counted against the first boot), as for a device that never rebooted.
    stored["r"] = [*old[:19], *new, (2, T0 + 5_250)]
    t = audit(path, MemorySource(stored)).total
    assert (t.stored, t.lost, t.duplicated, t.unexpected) == (59, 0, 1, 0)
    assert t.points == t.stored + t.dropped_stored + t.unexpected + t.duplicated
