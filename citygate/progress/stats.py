"""The page's figures, computed from the service store's ``cases`` table (read only).

Six aggregate queries per refresh, on one connection; none returns more than a few rows per
(service, district), whatever the number of cases, and every one but the open cases' is
bounded to the weeks shown (``WHERE <time> >= window start``):

1. open cases per (service, district, source), and how many are older than the service's
   resolve target;
2. cases opened per (service, district, source, week);
3. cases closed per (service, district, week) (merged duplicates included: they left the queue);
4. time to acknowledge, of the cases acknowledged in the window;
5. time to close, of the cases closed in the window (merged duplicates left out: their
   "closing" is the merge, which says nothing about the work);
6. the open cases' age.

Percentiles are nearest-rank (the value at rank ceil(p/100 * n) in ascending order) and are
picked in SQL: ``row_number()`` and ``count(*)`` over each group (window functions, in
SQLite since 3.25 and in PostgreSQL), the rank by integer arithmetic, and only the rows at
those ranks are returned. Integers in, integers out, the same rows on both databases: no
interpolation, no floating point, no dialect's own percentile function (SQLite has none).
The share meeting a target comes with them (``sum(met) over`` the same groups).

Only cases whose ``source`` is public (sensor, citizen) count; citygate's own ``system``
cases never do. Nothing identifying is read: no subjects, titles, notes or positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    Select,
    case,
    func,
    literal,
    or_,
    select,
)

from citygate.progress.settings import PUBLIC_SOURCES
from citygate.progress.weeks import Window
from citygate.service.schema import cases
from citygate.service.settings import ServiceTarget

# The percentiles the page shows; 100 is the largest value (the oldest open case).
TIME_PERCENTS = (50, 90)
AGE_PERCENTS = (50, 100)
QUERIES_PER_REFRESH = 6

District = str | None


def nearest_rank(percent: int, n: int) -> int:
    """The 1-based rank of the ``percent``-th percentile of ``n`` values (as the SQL computes it)."""
    return (percent * n + 99) // 100


@dataclass(slots=True)
class Sample:
    """A set of cases' durations: how many, how many met the target, the values at the percentiles."""

    n: int = 0
    met: int = 0
    at_ms: dict[int, int] = field(default_factory=dict)  # percent -> milliseconds


@dataclass(slots=True)
class Area:
    """One service in one district, or a whole service."""

    weeks: int
    open: int = 0
    open_by_source: dict[str, int] = field(default_factory=dict)
    open_past_target: int = 0
    opened: list[int] = field(default_factory=list)  # per week, oldest first
    opened_by_source: dict[str, int] = field(default_factory=dict)  # in the window
    closed: list[int] = field(default_factory=list)
    open_age: Sample = field(default_factory=Sample)
    acknowledge: Sample = field(default_factory=Sample)
    close: Sample = field(default_factory=Sample)

    def __post_init__(self) -> None:
        self.opened = self.opened or [0] * self.weeks
        self.closed = self.closed or [0] * self.weeks
        for src in PUBLIC_SOURCES:
            self.open_by_source.setdefault(src, 0)
            self.opened_by_source.setdefault(src, 0)


@dataclass(slots=True)
class ServiceFigures:
    total: Area
    districts: dict[District, Area]


@dataclass(slots=True)
class Figures:
    window: Window
    services: dict[str, ServiceFigures]
    districts: list[District]  # every district any public case names, city-wide (None last)


def _ms(value: int) -> ColumnElement[int]:
    # BIGINT, not the INTEGER SQLAlchemy infers for a Python int: epoch milliseconds overflow
    # PostgreSQL's int4.
    return literal(value, BigInteger)


def _target_ms(targets: Mapping[str, ServiceTarget], which: str) -> ColumnElement[Any] | None:
    """The service's target in ms as a CASE on the service (NULL without one), or None if no
    service has a target."""
    whens = {svc: int(getattr(t, which) * 1000) for svc, t in targets.items()}
    if not whens:
        return None
    return case({svc: _ms(v) for svc, v in whens.items()}, value=cases.c.service, else_=None)


class Queries:
    """The six queries of one refresh, for one window, filters and targets."""

    def __init__(self, window: Window, services: Sequence[str], targets: Mapping[str, ServiceTarget]) -> None:
        self.window = window
        self.services = tuple(services)
        self.ack_target = _target_ms(targets, "acknowledge_s")
        self.resolve_target = _target_ms(targets, "resolve_s")

    def public(self, q: Select[Any]) -> Select[Any]:
        q = q.where(cases.c.source.in_(PUBLIC_SOURCES))
        return q.where(cases.c.service.in_(self.services)) if self.services else q

    def open_counts(self) -> Select[Any]:
        if self.resolve_target is None:
            past: ColumnElement[Any] = literal(0, Integer)
        else:
            late = cases.c.opened_ms <= _ms(self.window.now_ms) - self.resolve_target
            past = func.sum(case((late, 1), else_=0))
        keys = (cases.c.service, cases.c.district, cases.c.source)
        q = select(*keys, func.count(), past).where(cases.c.is_open)
        return self.public(q).group_by(cases.c.service, cases.c.district, cases.c.source)

    def weekly(self, column: ColumnElement[Any], *where: ColumnElement[bool]) -> Select[Any]:
        """Cases per (service, district, source, week of ``column``) in the window."""
        bounds = self.window.bounds_ms
        week = case(*[(column < _ms(b), i) for i, b in enumerate(bounds[1:])], else_=None)
        # The week's CASE in a subquery and grouped by its name: PostgreSQL does not take two
        # copies of an expression with parameters as the same GROUP BY expression.
        inner = self.public(
            select(cases.c.service, cases.c.district, cases.c.source, week.label("week")).where(
                column >= _ms(bounds[0]), column < _ms(bounds[-1]), *where
            )
        ).subquery()
        keys = (inner.c.service, inner.c.district, inner.c.source, inner.c.week)
        return select(*keys, func.count()).group_by(*keys)

    def opened(self) -> Select[Any]:
        return self.weekly(cases.c.opened_ms)

    def closed(self) -> Select[Any]:
        return self.weekly(cases.c.closed_ms, ~cases.c.is_open)

    def samples(
        self,
        value: ColumnElement[Any],
        target: ColumnElement[Any] | None,
        percents: Sequence[int],
        *where: ColumnElement[bool],
    ) -> Select[Any]:
        """The rows at the percentiles' ranks, per (service, district) and per service."""
        met: ColumnElement[Any] = literal(0, Integer)
        if target is not None:
            met = case((value <= target, 1), else_=0)
        levels = {"d": (cases.c.service, cases.c.district), "s": (cases.c.service,)}
        cols: list[ColumnElement[Any]] = [cases.c.service, cases.c.district, value.label("v")]
        for name, part in levels.items():
            # One window per level for the three (the whole partition as the frame): one sort
            # per level instead of two, on both databases.
            window: dict[str, Any] = {"partition_by": part, "order_by": value, "rows": (None, None)}
            cols += [
                func.row_number().over(**window).label(f"rn_{name}"),
                func.count().over(**window).label(f"n_{name}"),
                func.sum(met).over(**window).label(f"met_{name}"),
            ]
        inner = self.public(select(*cols).where(*where)).subquery()
        c = inner.c
        at_rank = [
            c[f"rn_{name}"] == (literal(p, Integer) * c[f"n_{name}"] + 99) // 100
            for name in levels
            for p in percents
        ]
        return select(c.service, c.district, c.v, c.rn_d, c.n_d, c.met_d, c.rn_s, c.n_s, c.met_s).where(
            or_(*at_rank)
        )

    def acknowledge(self) -> Select[Any]:
        took = cases.c.acknowledged_ms - cases.c.opened_ms
        return self.samples(
            took,
            self.ack_target,
            TIME_PERCENTS,
            cases.c.acknowledged_ms >= _ms(self.window.start_ms),
            cases.c.acknowledged_ms < _ms(self.window.bounds_ms[-1]),
        )

    def close(self) -> Select[Any]:
        took = cases.c.closed_ms - cases.c.opened_ms
        return self.samples(
            took,
            self.resolve_target,
            TIME_PERCENTS,
            ~cases.c.is_open,
            cases.c.merged_into.is_(None),
            cases.c.closed_ms >= _ms(self.window.start_ms),
            cases.c.closed_ms < _ms(self.window.bounds_ms[-1]),
        )

    def open_age(self) -> Select[Any]:
        age = _ms(self.window.now_ms) - cases.c.opened_ms
        return self.samples(age, None, AGE_PERCENTS, cases.c.is_open)


class _Collector:
    def __init__(self, window: Window, services: Sequence[str]) -> None:
        self.weeks = len(window.starts)
        self.figures = Figures(window=window, services={}, districts=[])
        for svc in services:
            self.service(svc)
        self._districts: set[District] = set()

    def service(self, name: str) -> ServiceFigures:
        sf = self.figures.services.get(name)
        if sf is None:
            sf = self.figures.services[name] = ServiceFigures(total=Area(self.weeks), districts={})
        return sf

    def area(self, service: str, district: District) -> Area:
        self._districts.add(district)
        districts = self.service(service).districts
        a = districts.get(district)
        if a is None:
            a = districts[district] = Area(self.weeks)
        return a

    def open_counts(self, rows: Iterable[Any]) -> None:
        for svc, district, source, n, past in rows:
            for a in (self.area(svc, district), self.service(svc).total):
                a.open += n
                a.open_by_source[source] += n
                a.open_past_target += int(past or 0)

    def opened(self, rows: Iterable[Any]) -> None:
        for svc, district, source, week, n in rows:
            for a in (self.area(svc, district), self.service(svc).total):
                a.opened[week] += n
                a.opened_by_source[source] += n

    def closed(self, rows: Iterable[Any]) -> None:
        for svc, district, _source, week, n in rows:
            for a in (self.area(svc, district), self.service(svc).total):
                a.closed[week] += n

    def samples(self, rows: Iterable[Any], which: str, percents: Sequence[int]) -> None:
        for svc, district, v, rn_d, n_d, met_d, rn_s, n_s, met_s in rows:
            for a, rn, n, met in (
                (self.area(svc, district), rn_d, n_d, met_d),
                (self.service(svc).total, rn_s, n_s, met_s),
            ):
                s: Sample = getattr(a, which)
                s.n, s.met = int(n), int(met or 0)
                for p in percents:
                    if rn == nearest_rank(p, int(n)):
                        s.at_ms[p] = int(v)

    def done(self) -> Figures:
        named: list[District] = [*sorted(d for d in self._districts if d is not None)]
        if None in self._districts:  # cases without a district: listed last
            named.append(None)
        self.figures.districts = named
        return self.figures


def collect(
    conn: Connection,
    window: Window,
    *,
    services: Sequence[str] = (),
    targets: Mapping[str, ServiceTarget] | None = None,
) -> Figures:
    """The raw figures (nothing suppressed yet: :mod:`citygate.progress.publish` does that)."""
    q = Queries(window, services, targets or {})
    c = _Collector(window, services)
    c.open_counts(conn.execute(q.open_counts()))
    c.opened(conn.execute(q.opened()))
    c.closed(conn.execute(q.closed()))
    c.samples(conn.execute(q.acknowledge()), "acknowledge", TIME_PERCENTS)
    c.samples(conn.execute(q.close()), "close", TIME_PERCENTS)
    c.samples(conn.execute(q.open_age()), "open_age", AGE_PERCENTS)
    return c.done()
