"""RecentSeqs: a device's resend of a reading the gateway holds is recognised, in bounded memory."""

from __future__ import annotations

import random

from citygate.gateway.dedup import RecentSeqs


def test_seqs_added_are_recognised_and_others_not():
    r = RecentSeqs()
    r.add("d1", [5, 6, 7, 10])
    assert ("d1", 6) in r and ("d1", 10) in r
    assert ("d1", 8) not in r and ("d1", 4) not in r and ("d2", 6) not in r


def test_contiguous_seqs_in_any_order_merge_into_one_range():
    r = RecentSeqs()
    seqs = list(range(1000))
    random.Random(3).shuffle(seqs)
    r.add("d", seqs)
    assert r.ranges("d") == [(0, 999)]


def test_a_gap_filled_later_joins_the_two_ranges():
    r = RecentSeqs()
    r.add("d", [1, 2, 3, 5, 6])
    assert r.ranges("d") == [(1, 3), (5, 6)]
    r.add("d", [4])
    assert r.ranges("d") == [(1, 6)]


def test_per_device_ranges_are_bounded_forgetting_the_oldest():
    r = RecentSeqs(max_ranges=4)
    r.add("d", range(0, 20, 2))  # ten separate seqs
    assert r.ranges("d") == [(12, 12), (14, 14), (16, 16), (18, 18)]
    assert ("d", 0) not in r and ("d", 18) in r


def test_devices_are_bounded_forgetting_the_least_recently_seen():
    r = RecentSeqs(max_devices=2)
    r.add("a", [1])
    r.add("b", [1])
    r.add("a", [2])
    r.add("c", [1])
    assert ("b", 1) not in r and ("a", 1) in r and ("c", 1) in r
