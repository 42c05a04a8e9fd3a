"""The ledger: compact records, resume, torn tails."""

from __future__ import annotations

import time
from pathlib import Path

from citygate.simulators.ledger import (
    RECORD_SIZE,
    STATE_DROPPED,
    STATE_EXPECTED,
    STATE_FAULTY,
    LedgerWriter,
    RecordKind,
    devices_path,
    load,
)


def test_roundtrip_and_states(tmp_path: Path) -> None:
    path = tmp_path / "l.bin"
    with LedgerWriter(path) as w:
        a = w.device("a", "noise", "noise", 1)
        b = w.device("b", "traffic", "traffic_counter", 1)
        assert w.device("a", "noise", "noise", 1) == a
        for seq in range(5):
            w.produced(a, seq, 1000 + seq)
        w.add(RecordKind.DROPPED, a, 1, 1001)
        w.add(RecordKind.FAULTY, a, 5, 1005, code=3)
        w.add(RecordKind.HELD, a, 4, 1004)
        w.add(RecordKind.WRONG_TOPIC, a, 1 << 40, 1006, code=8)
        w.produced(b, 0, 2000)
    data = load(path)
    ea = data.entries["a"]
    assert ea.base == 0
    assert list(ea.state) == [
        STATE_EXPECTED,
        STATE_DROPPED,
        STATE_EXPECTED,
        STATE_EXPECTED,
        STATE_EXPECTED,
        STATE_FAULTY,
    ]
    assert list(ea.ts_ms) == [1000, 1001, 1002, 1003, 1004, 1005]
    assert ea.held[4] == 1
    assert ea.wrong_topic == 1
    assert (ea.min_ts, ea.max_ts) == (1000, 1005)
    assert data.entries["b"].device.measurement == "traffic"
    assert data.records == 10


def test_resume_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "l.bin"
    with LedgerWriter(path) as w:
        a = w.device("a", "noise", "noise", 1)
        for seq in range(3):
            w.produced(a, seq, 1000 + seq)
    with path.open("ab") as f:
        f.write(b"\x01\x00\x00")  # a crash mid-record
    with devices_path(path).open("ab") as f:
        f.write(b'{"i": 1, "dev')  # and mid-line
    w = LedgerWriter(path)
    assert w.resume["a"].next_seq == 3
    assert w.resume["a"].last_ts_ms == 1002
    b = w.device("b", "noise", "noise", 1)
    w.produced(b, 0, 5)
    w.close()
    assert path.stat().st_size % RECORD_SIZE == 0
    assert set(load(path).entries) == {"a", "b"}


def test_a_million_records_write_and_load_fast(tmp_path: Path) -> None:
    path = tmp_path / "l.bin"
    t0 = time.perf_counter()
    with LedgerWriter(path) as w:
        devs = [w.device(f"d{i}", "noise", "noise", 1) for i in range(1000)]
        for seq in range(1000):
            for d in devs:
                w.produced(d, seq, seq * 1000 + d)
    written = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = load(path)
    loaded = time.perf_counter() - t0
    assert data.records == 1_000_000
    assert sum(e.count(STATE_EXPECTED) for e in data.entries.values()) == 1_000_000
    assert written < 6 and loaded < 6, (written, loaded)


def test_a_rebooted_device_has_one_segment_per_boot(tmp_path: Path) -> None:
    path = tmp_path / "l.bin"
    with LedgerWriter(path) as w:
        a = w.device("a", "noise", "noise", 1)
        for seq in range(5):
            w.produced(a, seq, 1000 + 10 * seq)
        w.add(RecordKind.DROPPED, a, 4, 1040)  # lost at the reboot
        for seq in range(3):  # boot 1: seq 0 again, timestamps among the old ones
            w.produced(a, seq, 1005 + 10 * seq, boot=1)
        w.add(RecordKind.HELD, a, 2, 1025, boot=1)
    w = LedgerWriter(path)
    assert (w.resume["a"].boot, w.resume["a"].next_seq, w.resume["a"].last_ts_ms) == (1, 3, 1040)
    w.produced(a, 3, 1041, boot=1)  # a resumed run continues in the last boot
    w.close()
    e = load(path).entries["a"]
    assert e.conflicts == 0  # the same seqs with other timestamps, but in another boot
    assert [(g.boot, g.base, g.offset, g.size) for g in e.segments] == [(0, 0, 0, 5), (1, 0, 5, 4)]
    assert list(e.ts_ms) == [1000, 1010, 1020, 1030, 1040, 1005, 1015, 1025, 1041]
    assert list(e.state) == [STATE_EXPECTED] * 4 + [STATE_DROPPED] + [STATE_EXPECTED] * 4
    assert e.slots(3) == [3, 8] and e.slots(4) == [4] and e.slots(9) == []
    assert e.seq_of(7) == (1, 2) and e.held[7] == 1
