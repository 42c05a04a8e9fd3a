"""The outbox: durability order, bounds and overflow policies with exact counters."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

from citygate.gateway.outbox import DeadLetter, NewReading, Outbox, OutboxLimits, OverflowPolicy


def _r(i: int, size: int = 100, device: str = "d1", received_ns: int | None = None) -> NewReading:
    return NewReading(device, i, received_ns if received_ns is not None else 1_000 + i, b"x" * size)


def _row(r: NewReading) -> int:
    return len(r.body) + len(r.device_id) + 40


def test_commit_confirm_and_counters(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    res = ob.commit(
        [_r(i) for i in range(10)],
        [DeadLetter(1, "d1", "out_of_range", "too big", b"{}")],
        now_ns=2_000,
        free_disk=10**12,
    )
    assert res.stored == 10 and res.committed == {"d1": list(range(10))}
    rows = ob.oldest(4)
    assert [r.seq for r in rows] == [0, 1, 2, 3]
    assert ob.confirm([r.id for r in rows]) == 4
    st = ob.stats()
    assert st.depth == 6 and st.bytes == 6 * _row(_r(0))
    assert st.counters["readings_in"] == 10 and st.counters["readings_out"] == 4
    assert st.counters["rejected.out_of_range"] == 1
    assert ob.deadletters()[0].detail == "too big"
    ob.close()
    # Totals survive reopening.
    again = Outbox(tmp_path / "o.db")
    assert again.stats().depth == 6 and again.stats().bytes == st.bytes


def test_drop_oldest_policy_counts_exactly(tmp_path):
    size = _row(_r(0))
    ob = Outbox(
        tmp_path / "o.db",
        OutboxLimits(max_bytes=size * 10, min_free_disk_bytes=0, policy=OverflowPolicy.DROP_OLDEST),
    )
    ob.commit([_r(i) for i in range(10)], now_ns=2_000, free_disk=10**12)
    res = ob.commit([_r(i) for i in range(10, 13)], now_ns=2_000, free_disk=10**12)
    assert res.stored == 3
    st = ob.stats()
    assert st.depth == 10
    assert st.counters["dropped.overflow_oldest"] == 3
    assert [r.seq for r in ob.oldest(100)] == list(range(3, 13))


def test_drop_oldest_spares_the_batch_on_its_way_to_the_cloud(tmp_path):
    # A reading counted as dropped must be gone: the batch in flight (leased) is not dropped,
    # or it would be counted as dropped and then delivered (the long disk-full chaos run).
    size = _row(_r(0))
    ob = Outbox(
        tmp_path / "o.db",
        OutboxLimits(max_bytes=size * 10, min_free_disk_bytes=0, policy=OverflowPolicy.DROP_OLDEST),
    )
    ob.commit([_r(i) for i in range(10)], now_ns=2_000, free_disk=10**12)
    in_flight = ob.oldest(4)
    ob.lease(r.id for r in in_flight)
    ob.commit([_r(i) for i in range(10, 13)], now_ns=2_000, free_disk=10**12)
    assert [r.seq for r in ob.oldest(100)] == [0, 1, 2, 3, 7, 8, 9, 10, 11, 12]
    assert ob.stats().counters["dropped.overflow_oldest"] == 3
    assert ob.confirm(r.id for r in in_flight) == 4
    assert ob.stats().counters["readings_out"] == 4


def test_refuse_new_policy_counts_exactly_and_does_not_confirm(tmp_path):
    size = _row(_r(0))
    ob = Outbox(
        tmp_path / "o.db",
        OutboxLimits(max_bytes=size * 10, min_free_disk_bytes=0, policy=OverflowPolicy.REFUSE_NEW),
    )
    ob.commit([_r(i) for i in range(8)], now_ns=2_000, free_disk=10**12)
    res = ob.commit([_r(i) for i in range(8, 13)], now_ns=2_000, free_disk=10**12)
    assert res.stored == 2 and res.refused == 3
    assert res.committed == {"d1": [8, 9]}  # 10..12 are not confirmed end to end
    st = ob.stats()
    assert st.depth == 10 and st.counters["dropped.outbox_full"] == 3
    assert [r.seq for r in ob.oldest(100)] == list(range(10))


def test_min_free_disk_is_a_bound(tmp_path):
    size = _row(_r(0))
    ob = Outbox(
        tmp_path / "o.db", OutboxLimits(min_free_disk_bytes=1_000_000, policy=OverflowPolicy.REFUSE_NEW)
    )
    res = ob.commit([_r(i) for i in range(5)], now_ns=2_000, free_disk=1_000_000 + 2 * size)
    assert res.stored == 2 and ob.stats().counters["dropped.outbox_full"] == 3


def test_max_age_drops_and_counts(tmp_path):
    ob = Outbox(tmp_path / "o.db", OutboxLimits(max_age_s=10, min_free_disk_bytes=0))
    ob.commit([_r(i, received_ns=i * 1_000_000_000) for i in range(20)], now_ns=19 * 10**9, free_disk=10**12)
    ob.commit([], now_ns=25 * 10**9, free_disk=10**12)  # everything received before t=15 s expires
    st = ob.stats()
    assert st.counters["dropped.max_age"] == 15
    assert [r.seq for r in ob.oldest(100)] == list(range(15, 20))


def test_live_lane_start_by_bisection(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    ob.commit([_r(i, received_ns=i * 10) for i in range(1000)], now_ns=10_000, free_disk=10**12)
    first = ob.first_id_received_after(5_000)
    (row,) = ob.oldest(1, after_id=first - 1)
    assert row.received_ns == 5_010
    assert ob.first_id_received_after(10**9) is None
    assert ob.oldest(1)[0].id == ob.first_id_received_after(-1)


def test_corrupt_file_is_moved_aside(tmp_path):
    path = tmp_path / "o.db"
    path.write_bytes(b"garbage" * 1000)
    ob, aside = Outbox.open_or_recover(path)
    assert aside is not None and aside.exists()
    assert ob.stats().depth == 0 and ob.stats().counters["outbox_recovered"] == 1


def test_committed_rows_survive_kill_9(tmp_path):
    """A child process commits, prints, then is killed mid-way through the next group."""
    path = tmp_path / "o.db"
    child = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from citygate.gateway.outbox import NewReading, Outbox, OutboxLimits
        ob = Outbox(Path({str(path)!r}), OutboxLimits(min_free_disk_bytes=0))
        for g in range(50):
            now = time.time_ns()
            ob.commit([NewReading("d", g * 100 + i, now, b"y" * 200) for i in range(100)])
            print(g, flush=True)
            if g == 30:
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9
    confirmed_groups = len(out.stdout.split())
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    (n,) = db.execute("SELECT count(*) FROM readings").fetchone()
    assert n == confirmed_groups * 100


def _vm_steps(ob: Outbox, fn) -> int:
    """SQLite virtual-machine steps (in hundreds) that ``fn`` costs on the outbox's connection."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    ob._db.set_progress_handler(count, 100)
    try:
        fn()
    finally:
        ob._db.set_progress_handler(None, 100)
    return steps[0]


def test_batch_selection_cost_does_not_grow_with_the_backlog(tmp_path):
    # The forwarder picks every batch with these calls; a query that scans the table makes
    # each batch slower as the backlog grows, and a large backlog then never drains.
    ob = Outbox(tmp_path / "o.db")

    def select() -> None:
        first = ob.first_id_received_after(500)
        assert first is not None
        ob.oldest(2_000, after_id=first - 1)
        ob.oldest(2_000)

    ob.commit([_r(i, size=10, received_ns=i) for i in range(5_000)], now_ns=10**6, free_disk=10**12)
    small = _vm_steps(ob, select)
    for start in range(5_000, 200_000, 50_000):
        batch = [_r(i, size=10, received_ns=i) for i in range(start, min(start + 50_000, 200_000))]
        ob.commit(batch, now_ns=10**6, free_disk=10**12)
    large = _vm_steps(ob, select)
    assert large < 2 * small + 10, (small, large)
