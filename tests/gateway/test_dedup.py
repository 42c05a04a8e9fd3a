"""RecentSeqs: a device's resend of a reading the gateway holds is recognised, in bounded memory;
a device that counts from 0 again after a reboot sends new readings, and they are not taken for
resends, whatever its clock says: only the exact (device, seq, timestamp) of a reading added is."""

from __future__ import annotations

import itertools
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citygate.gateway.dedup import RecentSeqs

SEC = 1_000_000_000
T0 = 1_800_000_000 * SEC


def ts(seq: int, epoch: int = 0) -> int:
    """The timestamp a device gives reading ``seq`` (one a second; epoch = a later boot)."""
    return T0 + (epoch * 100_000 + seq) * SEC


def held(seqs: list[int] | range, epoch: int = 0) -> list[tuple[int, int]]:
    return [(s, ts(s, epoch)) for s in seqs]


def test_seqs_added_are_recognised_and_others_not() -> None:
    r = RecentSeqs()
    r.add("d1", held([5, 6, 7, 10]))
    assert ("d1", 6, ts(6)) in r and ("d1", 10, ts(10)) in r
    assert ("d1", 8, ts(8)) not in r and ("d1", 4, ts(4)) not in r and ("d2", 6, ts(6)) not in r


def test_contiguous_seqs_in_any_order_merge_into_one_range() -> None:
    r = RecentSeqs()
    seqs = list(range(1000))
    random.Random(3).shuffle(seqs)
    r.add("d", held(seqs))
    assert r.ranges("d") == [(0, 999)]
    assert all(("d", s, ts(s)) in r for s in range(1000))


def test_a_gap_filled_later_joins_the_two_ranges() -> None:
    r = RecentSeqs()
    r.add("d", held([1, 2, 3, 5, 6]))
    assert r.ranges("d") == [(1, 3), (5, 6)]
    r.add("d", held([4]))
    assert r.ranges("d") == [(1, 6)]
    assert all(("d", s, ts(s)) in r for s in range(1, 7))


def test_readings_given_by_any_iterable_are_held() -> None:
    r = RecentSeqs()
    r.add("d", ((s, ts(s)) for s in range(3)))
    assert r.ranges("d") == [(0, 2)] and ("d", 2, ts(2)) in r


# -- exact identity -------------------------------------------------------------------------


def test_a_seq_is_held_only_with_its_exact_timestamp() -> None:
    # The old check (a timestamp within the span of the seq's range) took the ones inside the
    # span for resends; a rebooted device whose clock is behind sends exactly those.
    r = RecentSeqs()
    r.add("d", held(range(10, 20)))
    assert ("d", 15, ts(15)) in r
    inside_the_span = [ts(15) - 1, ts(15) + 1, ts(14), ts(16), ts(10), ts(19), ts(15) + SEC // 2]
    outside_the_span = [ts(9), ts(20), ts(15, epoch=1), 0]
    assert [t for t in inside_the_span + outside_the_span if ("d", 15, t) in r] == []


# The device sent seq 0..99 at ts(seq) = T0 + seq s, rebooted, counts from 0 again. Which of its
# new readings (seq, ts) are taken for resends: exactly those it had sent before, no others.
REBOOTS = [
    pytest.param([(s, ts(s)) for s in range(10)], list(range(10)), id="equal: a true resend"),
    pytest.param([(s, ts(50 + s)) for s in range(10)], [], id="behind, inside the old span"),
    pytest.param([(s, T0 + s * SEC // 2) for s in range(10)], [0], id="behind, half-second steps"),
    pytest.param([(s, ts(s) - 1) for s in range(10)], [], id="behind by 1 ns"),
    pytest.param([(s, T0 - (10 - s) * SEC) for s in range(10)], [], id="behind, before the old span"),
    pytest.param([(s, ts(s, epoch=1)) for s in range(10)], [], id="ahead"),
    pytest.param([(s, ts(99) + 1 + s) for s in range(10)], [], id="ahead, just after the old span"),
    pytest.param([(s, ts(s + 1)) for s in range(10)], [], id="equal timestamps, shifted seq"),
    pytest.param(
        [(s, ts(s) if s % 3 == 0 else ts(s) + SEC // 3) for s in range(10)],
        [0, 3, 6, 9],
        id="some equal, some behind",
    ),
    pytest.param([(s, ts(s)) for s in range(95, 105)], list(range(95, 100)), id="resend past the end"),
]


@pytest.mark.parametrize(("new", "resends"), REBOOTS)
def test_a_rebooted_device_s_readings_are_resends_only_if_exactly_as_sent_before(
    new: list[tuple[int, int]], resends: list[int]
) -> None:
    r = RecentSeqs()
    r.add("d", held(range(100)))
    assert [s for s, t in new if ("d", s, t) in r] == resends


@pytest.mark.parametrize(("new", "resends"), REBOOTS)
def test_what_the_pipeline_stores_of_a_rebooted_device_and_then_recognises(
    new: list[tuple[int, int]], resends: list[int]
) -> None:
    """As the pipeline does: the check, then ``add`` of the readings it stored."""
    r = RecentSeqs()
    r.add("d", held(range(100)))
    stored = [(s, t) for s, t in new if ("d", s, t) not in r]
    assert [s for s, _ in stored] == [s for s, _ in new if s not in resends]  # nothing lost
    r.add("d", stored)
    # A resend of each reading stored is recognised now.
    assert all(("d", s, t) in r for s, t in stored)


# -- reboots --------------------------------------------------------------------------------


def test_a_seq_reused_with_a_new_timestamp_is_a_new_reading() -> None:
    r = RecentSeqs()
    r.add("d", held(range(100)))
    # After a reboot the device counts from 0 again: same numbers, later timestamps.
    assert not any(("d", s, ts(s, epoch=1)) in r for s in range(100))


def test_after_a_restarted_counter_the_new_readings_are_held_and_the_old_forgotten() -> None:
    r = RecentSeqs()
    r.add("d", held(range(100)))
    r.add("d", held(range(10), epoch=1))
    assert r.ranges("d") == [(0, 9)]
    assert all(("d", s, ts(s, epoch=1)) in r for s in range(10))
    assert ("d", 50, ts(50)) not in r  # forgotten: a late resend of it is stored once more


def test_a_reboot_keeps_the_readings_added_before_it_in_the_same_call() -> None:
    r = RecentSeqs()
    r.add("d", held(range(100)))
    r.add("d", [(200, ts(200)), (0, ts(0, epoch=1)), (1, ts(1, epoch=1))])
    assert r.ranges("d") == [(0, 1), (200, 200)]
    assert ("d", 200, ts(200)) in r and ("d", 0, ts(0, epoch=1)) in r and ("d", 0, ts(0)) not in r


def test_a_seq_given_twice_in_one_call_keeps_the_last_timestamp() -> None:
    r = RecentSeqs()
    r.add("d", [(5, ts(5)), (6, ts(6)), (5, ts(5, epoch=1))])
    assert ("d", 5, ts(5, epoch=1)) in r and ("d", 5, ts(5)) not in r and ("d", 6, ts(6)) in r


def test_a_timestamp_beyond_int64_is_not_held_and_does_not_raise() -> None:
    r = RecentSeqs()
    r.add("d", [(1, 2**63)])
    assert ("d", 1, 2**63) not in r and r.device_count() == 0
    r.add("d", held([2]))
    assert ("d", 2, ts(2)) in r


BATCHES = st.lists(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=30),
    max_size=12,
)
PROBES = [(s, t) for s in range(-1, 42) for t in range(5)]


@settings(max_examples=300, deadline=None)
@given(BATCHES)
def test_what_is_held_is_what_was_added_since_the_last_reboot(calls: list[list[tuple[int, int]]]) -> None:
    """Within the bounds: exactly the readings added, the last timestamp of a seq given twice in
    one call; a seq given with another timestamp than the one held (a reboot) first forgets all."""
    r = RecentSeqs()
    model: dict[int, int] = {}
    for batch in calls:
        after = dict(model)
        for s, t in batch:
            if after.get(s, t) != t:
                after = dict(batch)
                break
            after[s] = t
        model = after
        r.add("d", batch)
        assert {p for p in PROBES if ("d", *p) in r} == set(model.items())


@settings(max_examples=300, deadline=None)
@given(BATCHES, st.integers(1, 40), st.integers(1, 6))
def test_bounded_only_readings_added_are_ever_held(
    calls: list[list[tuple[int, int]]], max_readings: int, max_ranges: int
) -> None:
    r = RecentSeqs(max_readings_per_device=max_readings, max_ranges=max_ranges)
    added: set[tuple[int, int]] = set()
    for batch in calls:
        r.add("d", batch)
        added.update(batch)
        held_now = {p for p in PROBES if ("d", *p) in r}
        assert held_now <= added  # never held what was not added
        assert len(held_now) == r.reading_count() <= max_readings  # one timestamp a seq
        rs = r.ranges("d")
        assert len(rs) <= max_ranges
        assert all(lo <= hi for lo, hi in rs)
        assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(rs))  # sorted, apart
        assert {s for s, _ in held_now} == {s for lo, hi in rs for s in range(lo, hi + 1)}
        if batch:  # the lowest seqs go first: the highest stays
            assert held_now and max(s for s, _ in batch) <= max(s for s, _ in held_now)


# -- bounds ---------------------------------------------------------------------------------


def test_per_device_ranges_are_bounded_forgetting_the_oldest() -> None:
    r = RecentSeqs(max_ranges=4)
    r.add("d", held(range(0, 20, 2)))  # ten separate seqs
    assert r.ranges("d") == [(12, 12), (14, 14), (16, 16), (18, 18)]
    assert ("d", 0, ts(0)) not in r and ("d", 18, ts(18)) in r


def test_per_device_readings_are_bounded_keeping_the_newest() -> None:
    r = RecentSeqs(max_readings_per_device=160)
    for start in range(0, 10_000, 7):  # a long run, in small batches
        r.add("d", held(range(start, min(start + 7, 10_000))))
        ((lo, hi),) = r.ranges("d")
        assert hi == min(start + 6, 9_999) and hi - lo + 1 <= 160  # the newest, and at most 160
    assert r.reading_count() >= 150  # cut to 15/16 of the bound at most
    assert ("d", 9_999, ts(9_999)) in r and ("d", lo - 1, ts(lo - 1)) not in r


def test_devices_are_bounded_forgetting_the_least_recently_seen() -> None:
    r = RecentSeqs(max_devices=2)
    r.add("a", held([1]))
    r.add("b", held([1]))
    r.add("a", held([2]))
    r.add("c", held([1]))
    assert ("b", 1, ts(1)) not in r and ("a", 1, ts(1)) in r and ("c", 1, ts(1)) in r


def test_the_memory_budget_holds_for_many_devices_and_long_runs() -> None:
    budget = 400_000
    r = RecentSeqs(max_bytes=budget)
    devices = [f"device-{i:04d}" for i in range(200)]
    for k in range(40):
        for d in devices:
            r.add(d, held(range(k * 50, (k + 1) * 50)))
            assert r.estimated_bytes <= budget
    assert r.device_count() == 200  # the active devices share the budget: none forgotten
    per_device = {len(r.ranges(d)) for d in devices}
    assert per_device == {1}
    for d in devices:
        ((lo, hi),) = r.ranges(d)
        assert hi == 1_999 and 100 <= hi - lo + 1 <= 200  # each keeps its newest readings
        assert (d, 1_999, ts(1_999)) in r and (d, lo - 1, ts(lo - 1)) not in r
    assert 20_000 <= r.reading_count() <= budget // 9


def test_past_the_budget_the_silent_devices_go_first() -> None:
    r = RecentSeqs(max_bytes=100_000)
    r.add("silent", held(range(1_000)))
    for k in range(30):
        for i in range(50):
            r.add(f"active-{i}", held(range(k * 20, (k + 1) * 20)))
            assert r.estimated_bytes <= 100_000
    assert r.ranges("silent") == [] and ("silent", 999, ts(999)) not in r
    assert all((f"active-{i}", 599, ts(599)) in r for i in range(50))


def test_many_devices_seen_once_stay_within_the_budget_the_oldest_going_first() -> None:
    r = RecentSeqs(max_bytes=200_000)
    for i in range(5_000):
        r.add(f"device-{i:05d}", held([i]))
        assert r.estimated_bytes <= 200_000
    n = r.device_count()
    assert 100 < n < 5_000 and r.reading_count() == n
    assert all((f"device-{i:05d}", i, ts(i)) in r for i in range(5_000 - n, 5_000))  # the newest
    assert not any((f"device-{i:05d}", i, ts(i)) in r for i in range(5_000 - n))


def _seqs(shape: str, first: int, rng: random.Random) -> list[int]:
    if shape == "one reading each":
        return [first]
    if shape == "every other seq":
        return list(range(first, first + 128, 2))
    if shape == "in order":
        return list(range(first, first + 1_000))
    if shape == "shuffled":
        return rng.sample(range(first, first + 300), 300)
    return [s + j for s in range(first, first + 300, 3) for j in (0, 1)]  # ranges of two


def _fill(r: RecentSeqs, shape: str) -> None:
    rng = random.Random(5)
    for k in range(3):
        for i in range(2_000 if shape == "one reading each" else 100):
            r.add(f"device-{i:05d}", held(_seqs(shape, 10**9 + k * 1_000, rng)))  # no small ints


@pytest.mark.parametrize(
    "shape", ["one reading each", "every other seq", "in order", "shuffled", "ranges of two"]
)
def test_the_memory_held_is_within_the_estimate(shape: str) -> None:
    budget = 500_000
    # Fill CPython's free list of pairs first: the batches' tuples, freed, stay in it, counted.
    pairs = [(i, -i) for i in range(3_000)]
    del pairs
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        r = RecentSeqs(max_bytes=budget)
        _fill(r, shape)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert r.estimated_bytes <= budget
    assert used <= 1.05 * budget, f"{used:,} bytes held for an estimate of {r.estimated_bytes:,}"


def test_the_defaults_bound_the_memory_to_a_few_megabytes() -> None:
    r = RecentSeqs()
    for i in range(20_000):
        r.add(f"device-{i:05d}", held([i]))
    assert r.device_count() <= 10_000 and r.estimated_bytes <= 6 * 1024 * 1024
