"""The JSON of ``/public/v1/progress``: what the page shows, and all it shows.

Every count is a number or the string ``"< k"`` (``suppressed``): it is below ``k``, or it
would let a small one be worked out. Every statistic of a set of cases (percentiles, shares,
ages) is an object or ``"< k"`` when the set has fewer than ``k`` cases. Durations are whole
seconds; shares are fractions rounded to two decimals. No case ids, subjects, titles, notes,
devices or positions: districts are the finest place there is.
"""

from __future__ import annotations

from pydantic import BaseModel

Count = int | str  # a number, or the suppressed label "< k"


class Durations(BaseModel):
    p50_s: int
    p90_s: int


class Ages(BaseModel):
    median_s: int
    oldest_s: int


class Target(BaseModel):
    acknowledge_s: float
    resolve_s: float


class Area(BaseModel):
    """One service in one district (``district`` None: cases without one), or a whole service."""

    district: str | None = None
    open: Count
    open_age: Ages | str
    # Open cases older than the service's resolve target; None when the service has no target.
    open_past_target: Count | None
    opened_per_week: list[Count]
    closed_per_week: list[Count]
    # Of the cases acknowledged in the window: how long it took.
    acknowledge: Durations | str
    # Of the cases closed in the window (merged duplicates left out): from opened to closed.
    close: Durations | str
    # The share of those within the service's acknowledge / resolve target; None without one.
    acknowledged_within_target: float | str | None
    closed_within_target: float | str | None


class Sources(BaseModel):
    sensor: Count
    citizen: Count


class Service(BaseModel):
    service: str
    target: Target | None
    opened: Count  # in the window
    closed: Count
    open_by_source: Sources
    opened_by_source: Sources
    total: Area
    districts: list[Area]


class Week(BaseModel):
    start: str  # the Monday, local date (ISO 8601)
    partial: bool  # the current week, still running


class City(BaseModel):
    open: Count
    opened: Count
    closed: Count


class Progress(BaseModel):
    title: str
    refreshed_at: str  # RFC 3339, UTC: when these figures were computed
    refresh_s: float  # they are computed again at most this often
    stale: bool  # the last refresh failed: these are the figures of refreshed_at
    min_cases: int  # k
    suppressed: str  # the label of a figure not shown, "< k"
    timezone: str
    window_start: str  # RFC 3339, UTC: the first week's Monday 00:00
    weeks: list[Week]
    city: City
    services: list[Service]
