"""The outbox writes little (docs/GATEWAY.md, "Flash wear") and stays exact across kill -9.

A commit of readings writes only the readings; deliveries and counters are recorded
together by the deferred bookkeeping. No servers: SQLite files in a temporary directory.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from pathlib import Path

from citygate.gateway.intake import IncomingMessage
from citygate.gateway.outbox import NewReading, Outbox, OutboxLimits
from citygate.gateway.pipeline import GATHER_SLICE_S, CommitStats, Pipeline


def _r(i: int, size: int = 100, received_ns: int | None = None) -> NewReading:
    return NewReading("d1", i, received_ns if received_ns is not None else 1_000 + i, b"x" * size)


def _wal_size(path: Path) -> int:
    wal = Path(str(path) + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _stored_counters(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT name, value FROM counters").fetchall())
    finally:
        db.close()


def test_a_commit_of_readings_writes_only_their_pages(tmp_path):
    path = tmp_path / "o.db"
    ob = Outbox(path)
    ob.commit([_r(i) for i in range(50)], free_disk=10**12, now_ns=2_000)  # the tree and the WAL exist
    before = _wal_size(path)
    ob.commit([_r(100 + i) for i in range(5)], free_disk=10**12, now_ns=2_000)  # 5 x 100 B of payload
    grew = _wal_size(path) - before
    # One or two 1 KiB pages and their WAL frame headers. Before: a 4 KiB readings page and a
    # 4 KiB counters page, 8 KiB at least, for every commit however small.
    assert 0 < grew <= 2 * (1024 + 24), grew
    assert ob.stats().counters["readings_in"] == 55  # counted, though not written yet


def test_deliveries_are_recorded_later_and_leave_the_queue_at_once(tmp_path):
    ob = Outbox(tmp_path / "o.db", settle_s=3600)
    ob.commit([_r(i) for i in range(10)], free_disk=10**12, now_ns=2_000)
    sent = ob.oldest(4)
    ob.confirm([r.id for r in sent])
    st = ob.stats()
    assert st.depth == 6 and st.counters["readings_out"] == 4
    assert [r.seq for r in ob.oldest(100)] == list(range(4, 10)), "a delivered row was offered again"
    assert st.oldest_received_ns == 1_004
    assert "readings_out" not in _stored_counters(tmp_path / "o.db")  # nothing written yet
    ob.settle()
    stored = _stored_counters(tmp_path / "o.db")
    assert stored["readings_in"] == 10 and stored["readings_out"] == 4
    assert ob.stats().depth == 6


def test_kill_9_loses_no_count_and_no_reading(tmp_path):
    path = tmp_path / "o.db"
    ob = Outbox(path, settle_s=3600)
    ob.commit([_r(i) for i in range(10)], free_disk=10**12, now_ns=2_000)
    ob.settle()
    ob.commit([_r(10 + i) for i in range(5)], free_disk=10**12, now_ns=2_000)  # not in the counters yet
    ob.confirm([r.id for r in ob.oldest(3)])  # delivered, not deleted yet
    # kill -9: the first outbox's memory is gone; a new process opens the file.
    again = Outbox(path, settle_s=3600)
    st = again.stats()
    assert st.counters["readings_in"] == 15, "rows committed since the last bookkeeping not counted"
    assert st.counters.get("readings_out", 0) == 0
    # The three delivered rows are sent again (the cloud keeps one copy); nothing is missing.
    assert [r.seq for r in again.oldest(100)] == list(range(15))
    again.confirm([r.id for r in again.oldest(100)])
    again.settle()
    assert _stored_counters(path)["readings_in"] == 15
    assert _stored_counters(path)["readings_out"] == 15


def test_row_ids_are_never_given_twice(tmp_path):
    path = tmp_path / "o.db"
    ob = Outbox(path)
    ob.commit([_r(i) for i in range(3)], free_disk=10**12, now_ns=2_000)
    ob.confirm([r.id for r in ob.oldest(10)])
    ob.settle()  # the table is empty now; SQLite alone would start again at id 1
    ob.commit([_r(3)], free_disk=10**12, now_ns=2_000)
    assert [r.id for r in ob.oldest(10)] == [4]
    ob.close()
    assert [r.id for r in Outbox(path).oldest(10)] == [4]


def test_a_second_process_does_not_count_the_agents_rows(tmp_path):
    path = tmp_path / "o.db"
    agent = Outbox(path, settle_s=3600)
    agent.commit([_r(i) for i in range(7)], free_disk=10**12, now_ns=2_000)
    cli = Outbox(path, bookkeeper=False)  # `citygate gateway status` beside the running agent
    cli.close()
    agent.settle()
    assert _stored_counters(path)["readings_in"] == 7


def test_at_the_bound_delivered_rows_go_first_and_are_not_counted_as_dropped(tmp_path):
    row = 100 + 2 + 40
    ob = Outbox(tmp_path / "o.db", OutboxLimits(max_bytes=10 * row, min_free_disk_bytes=0), settle_s=3600)
    ob.commit([_r(i) for i in range(10)], free_disk=10**12, now_ns=2_000)
    ob.confirm([r.id for r in ob.oldest(4)])
    ob.commit([_r(10 + i) for i in range(4)], free_disk=10**12, now_ns=2_000)
    st = ob.stats()
    assert st.counters.get("dropped.overflow_oldest", 0) == 0
    assert st.counters["readings_out"] == 4 and st.depth == 10


def test_the_agents_outbox_checkpoints_in_the_background(tmp_path):
    path = tmp_path / "o.db"
    ob, _ = Outbox.open_or_recover(path)
    try:
        (autockpt,) = ob._db.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert autockpt >= 32000, "commits would still checkpoint the WAL themselves"
        assert any(t.name == "citygate-checkpoint" for t in threading.enumerate())
    finally:
        ob.close()


class _Intake:
    def __init__(self) -> None:
        self.messages: queue.Queue[IncomingMessage] = queue.Queue()


def _pipeline(tmp_path: Path, intake: _Intake, **kw: float) -> Pipeline:
    return Pipeline(
        intake=intake,  # type: ignore[arg-type]
        outbox=Outbox(tmp_path / "o.db"),
        validator=None,  # type: ignore[arg-type]  # _gather does not validate
        inventory_path=tmp_path / "inventory.toml",
        commit_max_readings=int(kw.get("max_readings", 2000)),
        commit_max_delay_s=kw.get("max_delay", 3600.0),
        commit_fill_bytes=int(kw.get("fill", 1000)),
        ack_interval_s=0.5,
    )


def _msg(i: int, size: int) -> IncomingMessage:
    return IncomingMessage("devices/d1/telemetry", b"x" * size, i, 1, 1, 0, False)


def test_a_group_is_committed_when_it_fills_its_pages_not_after_the_delay(tmp_path):
    intake = _Intake()
    p = _pipeline(tmp_path, intake, fill=1000, max_delay=3600.0)
    for i in range(5):
        intake.messages.put(_msg(i, 400))
    # With an hour's delay this returns only because 3 x 400 B reached the fill mark.
    assert [m.mid for m in p._gather()] == [0, 1, 2]
    assert intake.messages.qsize() == 2  # the next group's


def test_at_city_rates_a_group_waits_for_the_delay(tmp_path):
    intake = _Intake()
    p = _pipeline(tmp_path, intake, fill=10**6, max_delay=2.0)
    intake.messages.put(_msg(0, 100))
    arrived = threading.Event()

    def trickle() -> None:  # two more, a little later, well within the delay
        for i in (1, 2):
            threading.Event().wait(0.02)
            intake.messages.put(_msg(i, 100))
        arrived.set()

    threading.Thread(target=trickle).start()
    # Before: a group closed 5 ms after its first message, so these were three commits.
    assert [m.mid for m in p._gather()] == [0, 1, 2]
    assert arrived.is_set()


class _CountingQueue(queue.Queue[IncomingMessage]):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def get(self, block: bool = True, timeout: float | None = None) -> IncomingMessage:
        self.waits += block  # a blocking get: the thread sleeps until a message comes
        return super().get(block, timeout)


class _CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


def test_a_group_waiting_for_the_delay_does_not_wake_for_every_message(tmp_path):
    """At city rates each wake-up cost more than the reading it brought (bench/RESULTS.md):
    the pipeline sleeps in slices of GATHER_SLICE_S and takes what came, however many."""
    intake = _Intake()
    intake.messages = _CountingQueue()
    p = _pipeline(tmp_path, intake, fill=10**6, max_delay=1.0)
    stop = _CountingEvent()
    p._stop = stop
    intake.messages.put(_msg(0, 100))
    sent = threading.Event()

    def trickle() -> None:  # 59 more, 5 ms apart: well within the delay
        for i in range(1, 60):
            threading.Event().wait(0.005)
            intake.messages.put(_msg(i, 100))
        sent.set()

    threading.Thread(target=trickle).start()
    batch = p._gather()
    assert sent.is_set() and [m.mid for m in batch] == list(range(60))
    # Before: a blocking get per message, about 60.
    assert intake.messages.waits + stop.waits <= 1.0 / GATHER_SLICE_S + 3


def test_commit_stats_floor_rounds_each_commit_up_to_whole_pages():
    stats = CommitStats()
    stats.add([_r(0, size=100), _r(1, size=100)])
    stats.add([_r(2, size=5000)])
    assert (stats.commits, stats.readings, stats.floor_bytes) == (2, 3, 4096 + 8192)


def test_no_file_is_left_open_after_close(tmp_path):
    ob, _ = Outbox.open_or_recover(tmp_path / "o.db")
    ob.commit([_r(0)], free_disk=10**12, now_ns=2_000)
    ob.close()
    open_files = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_files.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    assert not [f for f in open_files if f.startswith(str(tmp_path))]
