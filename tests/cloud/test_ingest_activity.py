"""Ingest is busy while a request is in flight and until ``quiet_s`` after the last one ended.

The rules' evaluator in the cloud's process yields to ingest and saves its checkpoint (seconds
of work under the interpreter lock for a large state) only when ingest is quiet. A gap between
two of a gateway's batches is not quiet: counting only requests in flight, it was.
"""

from __future__ import annotations

import time

import pytest

from citygate.cloud.ingest_activity import LOAD_WINDOW_S, IngestActivity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_from_the_start() -> None:
    assert not IngestActivity(1.0, clock=Clock()).busy()


def test_busy_while_a_request_is_in_flight() -> None:
    clock = Clock()
    activity = IngestActivity(1.0, clock=clock)
    activity.begin()
    clock.now += 30
    assert activity.busy()


def test_the_gap_between_two_batches_is_not_quiet() -> None:
    clock = Clock()
    activity = IngestActivity(1.0, clock=clock)
    activity.begin()
    activity.end()
    clock.now += 0.2  # the gateway is building its next batch
    assert activity.in_flight == 0
    assert activity.busy()
    clock.now += 0.9
    assert not activity.busy()


def test_overlapping_requests() -> None:
    clock = Clock()
    activity = IngestActivity(0.5, clock=clock)
    activity.begin()
    activity.begin()
    activity.end()
    clock.now += 5
    assert activity.busy()  # one still in flight
    activity.end()
    clock.now += 0.6
    assert not activity.busy()


def test_quiet_s_zero_counts_only_requests_in_flight() -> None:
    activity = IngestActivity(0.0, clock=Clock())
    activity.begin()
    activity.end()
    assert not activity.busy()


def test_load_is_the_cpu_time_requests_spent_per_second() -> None:
    clock = Clock()
    activity = IngestActivity(1.0, clock=clock)
    for _ in range(200):  # 20 ms of CPU every 40 ms for 8 s: half a core
        activity.spent(0.020)
        clock.now += 0.040
    assert activity.load() == pytest.approx(0.5, rel=0.1)
    clock.now += LOAD_WINDOW_S * 5  # a quiet spell: the load decays
    assert activity.load() < 0.01


def test_the_evaluators_share_falls_with_the_load_not_with_busy() -> None:
    clock = Clock()
    activity = IngestActivity(1.0, full_load=0.25, min_share=0.05, clock=clock)
    assert activity.evaluator_share() == 1.0
    activity.begin()
    for _ in range(100):  # a steady city rate: busy, 2 ms of CPU every 100 ms
        activity.spent(0.002)
        clock.now += 0.1
    assert activity.busy()
    assert activity.evaluator_share() == pytest.approx(1 - 0.02 / 0.25, abs=0.02)
    for _ in range(300):  # a burst: 90 % of a core
        activity.spent(0.009)
        clock.now += 0.01
    assert activity.evaluator_share() == 0.05
    activity.end()
    clock.now += 1.5
    assert not activity.busy() and activity.evaluator_share() == 1.0


def test_without_a_full_load_busy_is_enough() -> None:
    activity = IngestActivity(1.0, min_share=0.05, clock=Clock())
    activity.begin()
    assert activity.evaluator_share() == 0.05


def test_timed_counts_the_threads_cpu_time() -> None:
    activity = IngestActivity(1.0)

    def work(n: int) -> int:
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.05:  # CPU, not a sleep: a sleep costs none
            n += 1
        return n

    assert activity.timed(work, 1) > 1
    assert activity.load() > 0.02
