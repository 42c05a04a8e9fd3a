"""Deadline: a worker's promise of when it passes its checkpoint again."""

from __future__ import annotations

from citygate.gateway.liveness import Deadline


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_promise_is_overdue_only_after_its_time():
    clock = FakeClock()
    d = Deadline(clock)
    assert d.overdue_s() == 0.0  # nothing promised yet
    d.within(5.0)
    clock.now += 4.9
    assert d.overdue_s() == 0.0
    clock.now += 3.1
    assert d.overdue_s() == 3.0
    d.within(1.0)  # the worker came back and promised again
    assert d.overdue_s() == 0.0


def test_a_worker_that_stopped_on_purpose_is_never_overdue():
    clock = FakeClock()
    d = Deadline(clock)
    d.within(1.0)
    d.done()
    clock.now += 10_000
    assert d.overdue_s() == 0.0
