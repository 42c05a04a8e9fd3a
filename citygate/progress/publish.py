"""From the raw figures to what is published: the counts hidden by :mod:`citygate.progress.privacy`,
the statistics of small sets hidden, everything else rounded for people.

The sums the page publishes (and so the relations the hiding must respect), per service:
its open cases = those of its districts = its sensor plus its citizen ones; its open cases
past target = its districts'; each week's opened (closed) = the districts' that week; its
opened in the window = its weeks' = its sensor plus citizen ones; its closed in the window
= its weeks'; and the city's open, opened and closed = the services'. Nothing else is
published that adds up: a district's counts by source and a district's window totals are
left out on purpose, because with them the relations would close into loops (a table with
both margins), where hiding two cells per relation no longer keeps a cell from being
worked out. These relations form a tree, which is what :mod:`citygate.progress.privacy`
needs.

Every district that any public case names is listed under every service (with "< k" where
there is nothing, or too little): a row that appears only where a service has cases would
itself say that there are some.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from citygate.contract.rfc3339 import format_rfc3339_ms
from citygate.progress import model
from citygate.progress.privacy import Relation, hidden_cells
from citygate.progress.settings import PUBLIC_SOURCES
from citygate.progress.stats import AGE_PERCENTS, Area, District, Figures, Sample
from citygate.service.settings import ServiceTarget

# ("area", service, "service", metric), ("area", service, "district", name, metric),
# ("source", service, "open" | "opened", source), ("window", service, "opened" | "closed"),
# ("city", "open" | "opened" | "closed"): the kind first, so that no name can collide.
Key = tuple[Any, ...]
_TOTAL = ("service",)
_MS_NS = 1_000_000


def _tier(key: Key) -> int:
    """Which cell goes first when one more must be hidden: the details before the headlines.
    A district's count, then a service's week, a source, the city's totals, a service's window
    totals, and a service's open cases last."""
    kind = key[0]
    if kind == "area":
        if key[2] == "district":
            return 0
        return 5 if key[-1] in ("open", "past") else 1
    return {"source": 2, "city": 3, "window": 4}[kind]


def _scope(district: District) -> Key:
    return ("district", district)


class _Cells:
    """Every published count under its key, and the relations between them."""

    def __init__(self) -> None:
        self.values: dict[Key, int] = {}
        self.relations: list[Relation[Key]] = []

    def put(self, key: Key, value: int) -> Key:
        self.values[key] = value
        return key

    def relate(self, total: Key, parts: Sequence[Key]) -> None:
        if not parts:  # a sum of nothing (no services yet) is zero, and says nothing
            return
        assert self.values[total] == sum(self.values[p] for p in parts), (total, parts)
        self.relations.append(Relation(total, tuple(parts)))


def _cells(figures: Figures, services: Sequence[str], with_target: set[str]) -> _Cells:
    cells = _Cells()
    weeks = range(len(figures.window.starts))
    city: dict[str, list[Key]] = {"open": [], "opened": [], "closed": []}
    for svc in services:
        sf = figures.services[svc]
        areas = [(_TOTAL, sf.total), *((_scope(d), sf.districts[d]) for d in figures.districts)]
        metrics: list[tuple[str, Any]] = [("open", lambda a: a.open)]
        if svc in with_target:
            metrics.append(("past", lambda a: a.open_past_target))
        for w in weeks:
            metrics.append((f"opened.{w}", lambda a, w=w: a.opened[w]))
            metrics.append((f"closed.{w}", lambda a, w=w: a.closed[w]))
        for name, get in metrics:
            total = cells.put(("area", svc, *_TOTAL, name), get(sf.total))
            cells.relate(total, [cells.put(("area", svc, *scope, name), get(a)) for scope, a in areas[1:]])
        open_total = ("area", svc, *_TOTAL, "open")
        by_source = sf.total.open_by_source
        cells.relate(
            open_total, [cells.put(("source", svc, "open", s), by_source[s]) for s in PUBLIC_SOURCES]
        )
        for kind in ("opened", "closed"):
            n = cells.put(("window", svc, kind), sum(getattr(sf.total, kind)))
            cells.relate(n, [("area", svc, *_TOTAL, f"{kind}.{w}") for w in weeks])
            city[kind].append(n)
        by_source = sf.total.opened_by_source
        opened_src = [cells.put(("source", svc, "opened", s), by_source[s]) for s in PUBLIC_SOURCES]
        cells.relate(("window", svc, "opened"), opened_src)
        city["open"].append(open_total)
    for kind, parts in city.items():
        total = cells.put(("city", kind), sum(cells.values[p] for p in parts))
        cells.relate(total, parts)
    return cells


class _Publisher:
    def __init__(self, figures: Figures, cells: _Cells, hidden: set[Key], k: int) -> None:
        self.figures = figures
        self.cells = cells
        self.hidden = hidden
        self.k = k
        self.label = f"< {k}"

    def count(self, key: Key) -> model.Count:
        return self.label if key in self.hidden else self.cells.values[key]

    def durations(self, s: Sample) -> model.Durations | str:
        if s.n < self.k:
            return self.label
        return model.Durations(p50_s=round(s.at_ms[50] / 1000), p90_s=round(s.at_ms[90] / 1000))

    def share(self, s: Sample, has_target: bool) -> float | str | None:
        if not has_target:
            return None
        return self.label if s.n < self.k else round(s.met / s.n, 2)

    def area(self, svc: str, scope: Key, a: Area, has_target: bool) -> model.Area:
        weeks = range(len(self.figures.window.starts))
        open_key = ("area", svc, *scope, "open")
        ages: model.Ages | str = self.label
        if open_key not in self.hidden:  # the ages of a set are shown when its size is
            median, oldest = (round(a.open_age.at_ms[p] / 1000) for p in AGE_PERCENTS)
            ages = model.Ages(median_s=median, oldest_s=oldest)
        return model.Area(
            district=scope[1] if scope[0] == "district" else None,
            open=self.count(open_key),
            open_age=ages,
            open_past_target=self.count(("area", svc, *scope, "past")) if has_target else None,
            opened_per_week=[self.count(("area", svc, *scope, f"opened.{w}")) for w in weeks],
            closed_per_week=[self.count(("area", svc, *scope, f"closed.{w}")) for w in weeks],
            acknowledge=self.durations(a.acknowledge),
            close=self.durations(a.close),
            acknowledged_within_target=self.share(a.acknowledge, has_target),
            closed_within_target=self.share(a.close, has_target),
        )

    def sources(self, svc: str, kind: str) -> model.Sources:
        return model.Sources(
            sensor=self.count(("source", svc, kind, "sensor")),
            citizen=self.count(("source", svc, kind, "citizen")),
        )


def publish(
    figures: Figures,
    *,
    k: int,
    targets: Mapping[str, ServiceTarget],
    refresh_s: float,
    timezone: str,
    services: Sequence[str] = (),
    title: str = "How fast the city acts",
    stale: bool = False,
) -> model.Progress:
    """The page's JSON; ``services``, when given, are shown in that order (and only they)."""
    names = list(services) if services else sorted(figures.services)
    for svc in names:  # every service lists every district
        sf = figures.services[svc]
        for d in figures.districts:
            sf.districts.setdefault(d, Area(len(figures.window.starts)))
    with_target = {svc for svc in names if svc in targets}
    cells = _cells(figures, names, with_target)
    pub = _Publisher(figures, cells, hidden_cells(cells.values, cells.relations, k, tier=_tier), k)
    out = []
    for svc in names:
        sf = figures.services[svc]
        t = targets.get(svc)
        has = t is not None
        out.append(
            model.Service(
                service=svc,
                target=model.Target(acknowledge_s=t.acknowledge_s, resolve_s=t.resolve_s) if t else None,
                opened=pub.count(("window", svc, "opened")),
                closed=pub.count(("window", svc, "closed")),
                open_by_source=pub.sources(svc, "open"),
                opened_by_source=pub.sources(svc, "opened"),
                total=pub.area(svc, _TOTAL, sf.total, has),
                districts=[pub.area(svc, _scope(d), sf.districts[d], has) for d in figures.districts],
            )
        )
    w = figures.window
    return model.Progress(
        title=title,
        refreshed_at=format_rfc3339_ms(w.now_ms * _MS_NS),
        refresh_s=refresh_s,
        stale=stale,
        min_cases=k,
        suppressed=pub.label,
        timezone=timezone,
        window_start=format_rfc3339_ms(w.start_ms * _MS_NS),
        weeks=[
            model.Week(start=d.isoformat(), partial=i == len(w.starts) - 1) for i, d in enumerate(w.starts)
        ],
        city=model.City(
            open=pub.count(("city", "open")),
            opened=pub.count(("city", "opened")),
            closed=pub.count(("city", "closed")),
        ),
        services=out,
    )
