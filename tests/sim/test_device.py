"""Keep / resend / bound: the device's memory, driven with explicit clocks."""

from __future__ import annotations

import itertools

import orjson

from citygate.simulators.device import DeviceCore


def make(**kw: object) -> DeviceCore:
    return DeviceCore("dev", **kw)  # type: ignore[arg-type]


def produce(core: DeviceCore, n: int, t0: int = 1_000) -> list[int]:
    out = []
    for i in range(n):
        kept, _ = core.produce(core.stamp(t0 + i), {"x": float(i)})
        out.append(kept.seq)
    return out


def test_seq_rises_by_one_and_ts_are_distinct() -> None:
    core = make()
    seqs = produce(core, 5, t0=1000)
    assert seqs == [0, 1, 2, 3, 4]
    ts = [k.ts_ms for k in core.held_readings()]
    assert len(set(ts)) == 5
    same = [core.stamp(5000) for _ in range(3)]
    assert same == [5000, 5001, 5002]
    doc = orjson.loads(core.held_readings()[0].payload)
    assert set(doc) == {"ts", "seq", "readings"}


def test_resume_continues_seq_and_time() -> None:
    core = make(next_seq=42, last_ts_ms=10_000)
    kept, _ = core.produce(core.stamp(9_000), {"x": 1.0})
    assert kept.seq == 42
    assert kept.ts_ms == 10_001


def test_ack_releases_exactly_the_acked_ranges() -> None:
    core = make(confirm=True)
    produce(core, 10)
    core.take_due(0.0)
    assert core.on_ack([(0, 2), (4, 4)]) == 4
    assert [k.seq for k in core.held_readings()] == [3, 5, 6, 7, 8, 9]  # 3 was not confirmed
    assert core.on_ack([(0, 2)]) == 0  # an old ack changes nothing
    assert core.on_ack([(3, 3), (5, 100)]) == 6
    assert core.held == 0
    assert core.counters.confirmed == 10


def test_puback_does_not_release_with_confirmation() -> None:
    core = make(confirm=True)
    produce(core, 2)
    core.take_due(0.0)
    core.on_puback(0)
    assert core.held == 2


def test_without_confirmation_puback_releases() -> None:
    core = make(confirm=False)
    produce(core, 3)
    assert [k.seq for k in core.take_due(0.0)] == [0, 1, 2]
    core.on_puback(1)
    assert [k.seq for k in core.held_readings()] == [0, 2]
    assert core.on_ack([(0, 5)]) == 0  # acks mean nothing to such a device
    assert core.take_due(1000.0) == []  # no timeout resends either


def test_resend_after_timeout_only() -> None:
    core = make(confirm=True, resend_after_s=10.0)
    produce(core, 3)
    assert len(core.take_due(100.0)) == 3
    assert core.take_due(105.0) == []
    assert core.next_resend_at() == 110.0
    again = core.take_due(110.0)
    assert [k.seq for k in again] == [0, 1, 2]
    assert core.counters.resent == 3
    assert core.counters.sent == 3


def test_reconnect_resends_everything_held() -> None:
    core = make(confirm=True, resend_after_s=60.0)
    produce(core, 4)
    core.take_due(1.0)
    core.on_ack([(0, 1)])
    core.on_disconnect()
    assert [k.seq for k in core.take_due(2.0)] == [2, 3]


def test_failed_send_goes_out_again() -> None:
    core = make(confirm=False)
    produce(core, 2)
    core.take_due(1.0)
    core.on_send_failed(0)
    assert [k.seq for k in core.take_due(1.5)] == [0]


def test_memory_is_bounded_and_drops_are_counted() -> None:
    core = make(memory=5, confirm=True)
    dropped_all = []
    for i in range(12):
        _, dropped = core.produce(core.stamp(i), {"x": 1.0})
        dropped_all += [d.seq for d in dropped]
    assert core.held == 5
    assert dropped_all == [0, 1, 2, 3, 4, 5, 6]
    assert core.counters.dropped == 7
    assert [k.seq for k in core.held_readings()] == [7, 8, 9, 10, 11]


def test_take_due_limit() -> None:
    core = make(confirm=True)
    produce(core, 10)
    assert len(core.take_due(0.0, limit=4)) == 4
    assert len(core.take_due(0.0, limit=4)) == 4
    assert len(core.take_due(0.0, limit=4)) == 2


def test_skewed_timestamps_never_repeat() -> None:
    core = make()
    a = core.stamp(100_000)
    b = core.stamp(200_000, skew_ms=-100_000)  # a late clock lands on a used ts
    assert b != a
    assert core.stamp(200_000) == 200_000  # normal readings are unaffected by the skew


def test_reboot_counts_from_0_with_a_clock_behind_and_never_reuses_a_timestamp() -> None:
    core = make(track_recent=True)
    old = []
    for i in range(20):  # one reading every 100 ms
        kept, _ = core.produce(core.stamp(core.clock_ms(10_000 + 100 * i)), {"x": float(i)})
        old.append((kept.seq, kept.ts_ms))
    core.on_ack([(0, 17)])  # 18 and 19 are still unconfirmed
    lost = core.reboot(behind_ms=1_500)
    assert [k.seq for k in lost] == [18, 19]
    assert core.held == 0 and core.counters.dropped == 2
    assert (core.boot, core.next_seq, core.clock_offset_ms) == (1, 0, -1_500)
    new = []
    for i in range(20):  # the clock now reads 1.5 s behind: the first ones land among the old ones
        kept, _ = core.produce(core.stamp(core.clock_ms(12_000 + 100 * i)), {"x": float(i)})
        new.append((kept.seq, kept.ts_ms))
    assert [s for s, _ in new] == list(range(20))
    assert new[0][1] == 10_500 + 1  # 10,500 was an old reading's timestamp: bumped by 1 ms
    assert {t for _, t in new}.isdisjoint(t for _, t in old)
    assert all(a < b for (_, a), (_, b) in itertools.pairwise(new))  # and still rising
    assert sum(1 for _, t in new if t < old[-1][1]) == 14  # 10,501 ... 11,801, between old readings
    core.reboot(behind_ms=500)
    assert (core.boot, core.clock_offset_ms) == (2, -2_000)  # each reboot sets it back further
