"""The weeks the page shows: Monday 00:00 to Monday 00:00 in the city's time zone.

Boundaries are computed on local dates and converted to UTC one by one, so a week holding a
daylight-saving change is 167 or 169 hours long, as the city lives it; the store's
times are UTC milliseconds, compared with these boundaries in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Window:
    """``weeks`` weeks, oldest first; the last one is the current week, still running."""

    starts: tuple[date, ...]  # each week's Monday, local
    bounds_ms: tuple[int, ...]  # len(starts) + 1 boundaries, UTC epoch ms; the last is next Monday
    now_ms: int

    @property
    def start_ms(self) -> int:
        return self.bounds_ms[0]

    def week_of(self, t_ms: int) -> int | None:
        """The index of the week holding ``t_ms``, or None outside the window."""
        if not self.bounds_ms[0] <= t_ms < self.bounds_ms[-1]:
            return None
        return next(i for i in range(len(self.starts)) if t_ms < self.bounds_ms[i + 1])


def _midnight_ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), tzinfo=zone).timestamp() * 1000)


def window(now_ms: int, zone: ZoneInfo, weeks: int) -> Window:
    """The last ``weeks`` weeks up to ``now_ms``, the current one included."""
    if weeks < 1:
        raise ValueError("weeks must be >= 1")
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    monday = today - timedelta(days=today.weekday())
    starts = tuple(monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks))
    bounds = (*(_midnight_ms(d, zone) for d in starts), _midnight_ms(monday + timedelta(weeks=1), zone))
    return Window(starts=starts, bounds_ms=bounds, now_ms=now_ms)
