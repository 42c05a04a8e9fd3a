"""When to try a failed webhook delivery again, and when to give up.

Pure functions: the caller passes the attempt number, a ``random.Random`` and the time, so a
test can replay a schedule exactly and the dispatcher stores only "next attempt at".

The schedule, with ``attempt`` = the number of attempts already made (1 after the first
failure):

    ceiling(attempt) = min(cap_s, base_s * factor ** (attempt - 1))
    delay(attempt)   = rng.uniform(ceiling / 2, ceiling)

That jitter is what AWS's backoff article calls "equal jitter": half the ceiling is kept, the
other half drawn uniformly, so a delay is never below ceiling/2. It is NOT "full jitter"
(uniform on [0, ceiling]): we keep a floor so that a receiver that just failed is not hit
again within milliseconds, and still spread a burst of retries (an outage's backlog) over half
the window. With the defaults (10 s, x2, 1 h cap) the ceilings run 10 s, 20 s, 40 s ... 1 h
and the delays are 5-10 s, 10-20 s, ..., then 30-60 min.

Giving up: after an attempt fails, another is scheduled as long as less than
``give_up_after_s`` (default 26 h) has passed since the first attempt. So retries cover at
least that span: the last failure that makes us give up happened at or after it.

``Retry-After`` (delay-seconds or an HTTP-date, RFC 9110 10.2.3) replaces the computed delay
when it is longer, clamped to ``retry_after_max_s`` so a receiver cannot park an event for a
year; a shorter one is ignored (the backoff is our floor against hammering).
"""

from __future__ import annotations

import email.utils
import random
import re
from dataclasses import dataclass
from datetime import UTC
from typing import Final

__all__ = [
    "DEFAULT_SCHEDULE",
    "RetrySchedule",
    "ceiling_s",
    "jittered_delay_s",
    "next_attempt_at",
    "next_delay_s",
    "parse_retry_after",
    "planned_delays",
]

_DELAY_SECONDS: Final = re.compile(r"[0-9]{1,10}")
_MAX_EXPONENT: Final = 64  # far past any cap; keeps factor ** n from overflowing a float


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    base_s: float = 10.0
    factor: float = 2.0
    cap_s: float = 3600.0
    give_up_after_s: float = 26 * 3600.0
    retry_after_max_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if not self.base_s > 0:
            raise ValueError("retry base_s must be > 0")
        if not self.factor >= 1:
            raise ValueError("retry factor must be >= 1")
        if not self.cap_s >= self.base_s:
            raise ValueError("retry cap_s must be >= base_s")
        if not self.give_up_after_s >= 0:
            raise ValueError("retry give_up_after_s must be >= 0")
        if not self.retry_after_max_s >= 0:
            raise ValueError("retry retry_after_max_s must be >= 0")


DEFAULT_SCHEDULE: Final = RetrySchedule()


def _check_attempt(attempt: int) -> None:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt must be an integer >= 1 (attempts made so far), not {attempt!r}")


def ceiling_s(attempt: int, schedule: RetrySchedule = DEFAULT_SCHEDULE) -> float:
    """The upper end of the delay after ``attempt`` failed attempts."""
    _check_attempt(attempt)
    exponent = min(attempt - 1, _MAX_EXPONENT)
    return float(min(schedule.cap_s, schedule.base_s * schedule.factor**exponent))


def jittered_delay_s(attempt: int, rng: random.Random, schedule: RetrySchedule = DEFAULT_SCHEDULE) -> float:
    """Equal jitter: uniform on [ceiling/2, ceiling] (see the module docstring)."""
    ceiling = ceiling_s(attempt, schedule)
    return rng.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``now`` (Unix time), or None if absent or unreadable.

    Delay-seconds must be plain digits (RFC 9110: no sign, no fraction). An HTTP-date in the
    past gives 0. A date without a zone is read as UTC (HTTP-dates are always GMT).
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(int(text))
    if not text or text[0].isdigit() or text[0] in "+-":
        return None  # "-5", "1.5", "12abc": neither form
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def next_delay_s(
    attempt: int,
    rng: random.Random,
    *,
    retry_after_s: float | None = None,
    schedule: RetrySchedule = DEFAULT_SCHEDULE,
) -> float:
    """The delay before the next attempt: the jittered backoff, or Retry-After if longer (clamped)."""
    computed = jittered_delay_s(attempt, rng, schedule)
    if retry_after_s is None:
        return computed
    asked = min(max(retry_after_s, 0.0), schedule.retry_after_max_s)
    return max(computed, asked)


def next_attempt_at(
    attempt: int,
    rng: random.Random,
    *,
    first_attempt_at: float,
    now: float,
    retry_after_s: float | None = None,
    schedule: RetrySchedule = DEFAULT_SCHEDULE,
) -> float | None:
    """Unix time of the next attempt after ``attempt`` failures, or None: give up.

    ``first_attempt_at`` is when the first attempt of this event to this subscription was
    made; ``now`` is when the failed attempt ended.
    """
    _check_attempt(attempt)
    if now - first_attempt_at >= schedule.give_up_after_s:
        return None
    return now + next_delay_s(attempt, rng, retry_after_s=retry_after_s, schedule=schedule)


def planned_delays(rng: random.Random, schedule: RetrySchedule = DEFAULT_SCHEDULE) -> list[float]:
    """The delays a never-answering receiver would see (attempts taking no time, no Retry-After).

    For documentation and tests: ``len(result) + 1`` attempts in all, spanning ``sum(result)``.
    """
    delays: list[float] = []
    t = 0.0
    attempt = 1
    while (at := next_attempt_at(attempt, rng, first_attempt_at=0.0, now=t, schedule=schedule)) is not None:
        delays.append(at - t)
        t = at
        attempt += 1
    return delays
