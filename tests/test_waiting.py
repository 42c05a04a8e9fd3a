"""tests.waiting.wait_until: the value it returns, how it fails, how long it takes."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.waiting import WaitTimeoutError, wait_until


def test_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "", {"depth": 3}, {"depth": 0}])
    assert wait_until(lambda: next(values), interval=0) == {"depth": 3}


def test_a_condition_that_holds_is_checked_once_without_sleeping() -> None:
    calls = itertools.count()
    t0 = time.monotonic()
    assert wait_until(lambda: next(calls) >= 0, timeout=5, interval=5) is True
    assert time.monotonic() - t0 < 1


def test_a_timeout_names_what_was_awaited_and_the_last_value() -> None:
    counter = itertools.count()
    with pytest.raises(WaitTimeoutError) as failure:
        wait_until(lambda: [] if next(counter) < 10**9 else [1], timeout=0.2, message="the outbox drained")
    text = str(failure.value)
    assert "after 0.2 s" in text and "the outbox drained" in text and "last value seen: []" in text
    assert failure.value.last == []
    assert isinstance(failure.value, AssertionError)  # pytest reports it as a test failure


def test_the_message_may_be_computed_on_failure_only() -> None:
    asked = []

    def message() -> str:
        asked.append(1)
        return "a log tail"

    assert wait_until(lambda: True, message=message)
    assert asked == []
    with pytest.raises(WaitTimeoutError, match="waiting for a log tail"):
        wait_until(lambda: False, timeout=0.05, message=message)
    assert asked == [1]


def test_the_predicate_is_checked_again_at_the_deadline() -> None:
    t0 = time.monotonic()
    calls: list[float] = []

    def late() -> bool:
        calls.append(time.monotonic() - t0)
        return calls[-1] >= 0.3

    assert wait_until(late, timeout=0.3, interval=10)  # the interval is cut to the time left
    assert len(calls) == 2 and calls[-1] < 1


def test_an_exception_in_the_predicate_is_not_swallowed() -> None:
    def broken() -> bool:
        raise RuntimeError("the agent exited")

    with pytest.raises(RuntimeError, match="the agent exited"):
        wait_until(broken, timeout=30)


def test_a_long_last_value_is_cut_short() -> None:
    class NotYet:
        def __bool__(self) -> bool:
            return False

        def __repr__(self) -> str:
            return "x" * 10_000

    with pytest.raises(WaitTimeoutError) as failure:
        wait_until(NotYet, timeout=0)
    assert "xxx... (10000 characters)" in str(failure.value) and len(str(failure.value)) < 2200


def test_negative_times_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        wait_until(lambda: True, timeout=-1)
