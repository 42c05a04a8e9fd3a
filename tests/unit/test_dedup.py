"""RecentSeqs: a device's resend of a reading the gateway holds is recognised, in bounded memory;
a device that counts from 0 again after a reboot sends new readings, and they are not taken for resends."""

from __future__ import annotations

import random

from citygate.gateway.dedup import RecentSeqs


def ts(seq: int, epoch: int = 0) -> int:
    """The timestamp a device gives reading ``seq`` (one a second; epoch = a later boot)."""
    return (1_800_000_000 + epoch * 100_000 + seq) * 1_000_000_000


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
    assert ("d", 1, ts(1)) in r and ("d", 6, ts(6)) in r


def test_per_device_ranges_are_bounded_forgetting_the_oldest() -> None:
    r = RecentSeqs(max_ranges=4)
    r.add("d", held(range(0, 20, 2)))  # ten separate seqs
    assert r.ranges("d") == [(12, 12), (14, 14), (16, 16), (18, 18)]
    assert ("d", 0, ts(0)) not in r and ("d", 18, ts(18)) in r


def test_devices_are_bounded_forgetting_the_least_recently_seen() -> None:
    r = RecentSeqs(max_devices=2)
    r.add("a", held([1]))
    r.add("b", held([1]))
    r.add("a", held([2]))
    r.add("c", held([1]))
    assert ("b", 1, ts(1)) not in r and ("a", 1, ts(1)) in r and ("c", 1, ts(1)) in r


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


def test_a_timestamp_outside_the_span_of_its_range_is_not_held() -> None:
    r = RecentSeqs()
    r.add("d", held(range(10, 20)))
    assert ("d", 15, ts(9)) not in r and ("d", 15, ts(20)) not in r and ("d", 15, ts(15)) in r
