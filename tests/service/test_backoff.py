"""The retry schedule: equal jitter on a capped exponential, at least 26 h, Retry-After honoured."""

from __future__ import annotations

import email.utils
import random

import pytest

from citygate.service.backoff import (
    DEFAULT_SCHEDULE,
    RetrySchedule,
    ceiling_s,
    jittered_delay_s,
    next_attempt_at,
    next_delay_s,
    parse_retry_after,
    planned_delays,
)

HOUR = 3600.0
NOW = 1_714_557_600.0  # 2024-05-01T10:00:00Z


def test_ceilings_double_from_the_base_up_to_the_cap() -> None:
    assert [ceiling_s(n) for n in range(1, 11)] == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert ceiling_s(10_000) == 3600  # no float overflow for absurd attempt numbers


def test_jitter_is_uniform_on_half_ceiling_to_ceiling() -> None:
    rng = random.Random(1)
    for attempt in (1, 4, 30):
        c = ceiling_s(attempt)
        draws = [jittered_delay_s(attempt, rng) for _ in range(2000)]
        assert all(c / 2 <= d <= c for d in draws)
        # Spread over the whole half-window, not bunched: both ends are reached.
        assert min(draws) < c * 0.52 and max(draws) > c * 0.98
        mean = sum(draws) / len(draws)
        assert c * 0.73 < mean < c * 0.77  # uniform on [c/2, c] has mean 0.75 c


def test_the_same_seed_replays_the_same_schedule() -> None:
    assert planned_delays(random.Random(42)) == planned_delays(random.Random(42))
    assert planned_delays(random.Random(42)) != planned_delays(random.Random(43))


@pytest.mark.parametrize("seed", range(20))
def test_a_never_answering_receiver_is_retried_for_at_least_26_hours(seed: int) -> None:
    delays = planned_delays(random.Random(seed))
    total = sum(delays)
    assert total >= 26 * HOUR
    # ...and not much longer: the last retry is at most one capped delay past the span.
    assert total - delays[-1] < 26 * HOUR <= total
    assert total < 26 * HOUR + DEFAULT_SCHEDULE.cap_s
    assert 30 < len(delays) < 80


def test_giving_up_is_decided_by_the_span_since_the_first_attempt() -> None:
    rng = random.Random(0)
    span = DEFAULT_SCHEDULE.give_up_after_s
    at = next_attempt_at(40, rng, first_attempt_at=NOW, now=NOW + span - 1)
    assert at is not None and at > NOW + span - 1
    assert next_attempt_at(40, rng, first_attempt_at=NOW, now=NOW + span) is None
    short = RetrySchedule(give_up_after_s=60)
    assert next_attempt_at(1, rng, first_attempt_at=NOW, now=NOW + 61, schedule=short) is None


def test_a_longer_retry_after_replaces_the_computed_delay() -> None:
    rng = random.Random(0)
    assert next_delay_s(1, rng, retry_after_s=120) == 120
    # Shorter than the backoff: the backoff stands (it is our floor against hammering).
    d = next_delay_s(8, rng, retry_after_s=1)
    assert ceiling_s(8) / 2 <= d <= ceiling_s(8)
    # Absurd: clamped.
    assert next_delay_s(1, rng, retry_after_s=365 * 24 * HOUR) == DEFAULT_SCHEDULE.retry_after_max_s
    assert next_delay_s(1, rng, retry_after_s=-50) <= ceiling_s(1)
    at = next_attempt_at(1, rng, first_attempt_at=NOW, now=NOW, retry_after_s=300)
    assert at == NOW + 300


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        ("Wed, 01 May 2024 10:05:00 GMT", 300.0),
        ("Wed, 01 May 2024 09:00:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("12abc", None),
    ],
)
def test_retry_after_seconds_or_http_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize("attempt", [0, -1, True])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt"):
        ceiling_s(attempt)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_s": 0},
        {"factor": 0.5},
        {"cap_s": 1, "base_s": 5},
        {"give_up_after_s": -1},
        {"retry_after_max_s": -1},
    ],
)
def test_schedules_that_make_no_sense_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="retry"):
        RetrySchedule(**kwargs)
