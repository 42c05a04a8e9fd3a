"""Ingest is busy while a request is in flight and until ``quiet_s`` after the last one ended.

The rules' evaluator in the cloud's process yields to ingest and saves its checkpoint (seconds
of work under the interpreter lock for a large state) only when ingest is quiet. A gap between
two of a gateway's batches is not quiet: counting only requests in flight, it was.
"""

from __future__ import annotations

from citygate.cloud.ingest_activity import IngestActivity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_from_the_start() -> None:
    assert not IngestActivity(1.0, Clock()).busy()


def test_busy_while_a_request_is_in_flight() -> None:
    clock = Clock()
    activity = IngestActivity(1.0, clock)
    activity.begin()
    clock.now += 30
    assert activity.busy()


def test_the_gap_between_two_batches_is_not_quiet() -> None:
    clock = Clock()
    activity = IngestActivity(1.0, clock)
    activity.begin()
    activity.end()
    clock.now += 0.2  # the gateway is building its next batch
    assert activity.in_flight == 0
    assert activity.busy()
    clock.now += 0.9
    assert not activity.busy()


def test_overlapping_requests() -> None:
    clock = Clock()
    activity = IngestActivity(0.5, clock)
    activity.begin()
    activity.begin()
    activity.end()
    clock.now += 5
    assert activity.busy()  # one still in flight
    activity.end()
    clock.now += 0.6
    assert not activity.busy()


def test_quiet_s_zero_counts_only_requests_in_flight() -> None:
    activity = IngestActivity(0.0, Clock())
    activity.begin()
    activity.end()
    assert not activity.busy()
