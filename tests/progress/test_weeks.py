"""The weeks shown: Monday 00:00 local time to Monday 00:00, the current week last, across
daylight-saving changes as the city lives them."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from citygate.progress.weeks import window

BERLIN = ZoneInfo("Europe/Berlin")
HOUR_MS = 3_600_000


def _ms(*args: int, zone: ZoneInfo = BERLIN) -> int:
    return int(datetime(*args, tzinfo=zone).timestamp() * 1000)  # type: ignore[misc]


def test_the_current_week_is_last_and_runs_to_next_monday() -> None:
    now = _ms(2025, 4, 2, 15, 30)  # a Wednesday
    w = window(now, BERLIN, 3)
    assert w.starts == (date(2025, 3, 17), date(2025, 3, 24), date(2025, 3, 31))
    assert w.bounds_ms[-1] == _ms(2025, 4, 7)
    assert w.start_ms == _ms(2025, 3, 17)
    assert w.week_of(now) == 2


def test_a_week_with_the_clocks_going_forward_is_167_hours() -> None:
    w = window(_ms(2025, 4, 2, 12), BERLIN, 3)
    lengths = [(b - a) / HOUR_MS for a, b in zip(w.bounds_ms, w.bounds_ms[1:], strict=False)]
    assert lengths == [168, 167, 168]  # 30 March 2025: 02:00 -> 03:00
    w = window(_ms(2025, 10, 29, 12), BERLIN, 2)
    assert [(b - a) / HOUR_MS for a, b in zip(w.bounds_ms, w.bounds_ms[1:], strict=False)] == [169, 168]


def test_week_of_at_the_boundaries() -> None:
    w = window(_ms(2025, 4, 2, 12), BERLIN, 2)
    monday = _ms(2025, 3, 31)
    assert w.week_of(monday) == 1
    assert w.week_of(monday - 1) == 0
    assert w.week_of(w.start_ms) == 0
    assert w.week_of(w.start_ms - 1) is None
    assert w.week_of(w.bounds_ms[-1]) is None


def test_a_monday_just_after_midnight_starts_a_new_week() -> None:
    w = window(_ms(2025, 4, 7, 0, 0) + 1, BERLIN, 1)
    assert w.starts == (date(2025, 4, 7),)


def test_no_weeks_is_an_error() -> None:
    with pytest.raises(ValueError, match="weeks"):
        window(0, BERLIN, 0)
