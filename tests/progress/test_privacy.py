"""Small figures are never published, and cannot be worked out from the ones that are.

Pure logic: figures made up by hypothesis, published, and then attacked as a visitor would:
every sum the JSON implies (a service's open cases = its districts' = its sensor plus citizen
ones, a week's = its districts', the window's = its weeks', the city's = its services') is an
equation; the hidden cells are the unknowns; exact Gaussian elimination over the rationals
says whether any one of them is determined. None may be.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from citygate.progress.privacy import Relation, hidden_cells
from citygate.progress.publish import publish
from citygate.progress.stats import Area, Figures, Sample, ServiceFigures
from citygate.progress.weeks import Window
from citygate.service.settings import ServiceTarget

K = 5
LABEL = f"< {K}"


def test_small_counts_are_hidden() -> None:
    values = {"t": 20, "a": 12, "b": 8}
    assert hidden_cells(values, [Relation("t", ("a", "b"))], K) == set()
    values = {"t": 3, "a": 2, "b": 1}
    assert hidden_cells(values, [Relation("t", ("a", "b"))], K) == {"t", "a", "b"}


def test_a_lone_hidden_part_takes_the_smallest_other_part_with_it() -> None:
    values = {"t": 30, "a": 2, "b": 9, "c": 19}
    assert hidden_cells(values, [Relation("t", ("a", "b", "c"))], K) == {"a", "b"}


def test_zero_is_hidden_too_and_a_lone_part_equals_its_total() -> None:
    assert hidden_cells({"t": 0, "a": 0}, [Relation("t", ("a",))], K) == {"t", "a"}
    # Hidden as a complement elsewhere, the total takes its only part along.
    values = {"t": 9, "a": 9, "u": 11, "x": 2}
    rels = [Relation("t", ("a",)), Relation("u", ("t", "x"))]
    assert hidden_cells(values, rels, K) == {"x", "t", "a"}


def test_the_choice_is_deterministic() -> None:
    values = {"t": 20, "a": 3, "b": 8, "c": 8, "d": 1}
    rels = [Relation("t", ("a", "b", "c", "d"))]
    assert hidden_cells(values, rels, K) == {"a", "d"}  # two hidden already: nothing more
    values = {"t": 20, "a": 3, "b": 8, "c": 9}
    assert hidden_cells(values, [Relation("t", ("a", "b", "c"))], K) == {"a", "b"}
    values = {"t": 28, "a": 3, "c": 8, "b": 9, "d": 8}  # a tie at 8: the key first in order
    assert hidden_cells(values, [Relation("t", ("a", "b", "c", "d"))], K) == {"a", "c"}


# -- made-up figures, published, attacked ------------------------------------------------------


@st.composite
def figures(draw: st.DrawFn) -> tuple[Figures, dict[str, ServiceTarget]]:
    n_weeks = draw(st.integers(1, 3))
    districts: list[str | None] = draw(
        st.lists(st.sampled_from(["north", "south", "east", None]), min_size=1, max_size=3, unique=True)
    )
    districts = sorted((d for d in districts if d), key=str) + ([None] if None in districts else [])
    names = draw(st.lists(st.sampled_from(["waste", "roads", "parks"]), min_size=1, max_size=3, unique=True))
    small = st.integers(0, 12)
    services = {}
    for svc in names:
        total = Area(n_weeks)
        per_d = {}
        for d in districts:
            a = Area(n_weeks)
            a.open_by_source = {"sensor": draw(small), "citizen": draw(small)}
            a.open = sum(a.open_by_source.values())
            a.open_past_target = draw(st.integers(0, a.open))
            opened = [[draw(small), draw(small)] for _ in range(n_weeks)]
            a.opened = [sum(x) for x in opened]
            a.opened_by_source = {"sensor": sum(x[0] for x in opened), "citizen": sum(x[1] for x in opened)}
            a.closed = [draw(small) for _ in range(n_weeks)]
            for s, percents in ((a.acknowledge, (50, 90)), (a.close, (50, 90)), (a.open_age, (50, 100))):
                s.n = a.open if s is a.open_age else draw(small)
                s.met = draw(st.integers(0, s.n))
                s.at_ms = {p: 1000 * (i + 1) for i, p in enumerate(percents)} if s.n else {}
            per_d[d] = a
            total.open += a.open
            total.open_past_target += a.open_past_target
            for src in ("sensor", "citizen"):
                total.open_by_source[src] += a.open_by_source[src]
                total.opened_by_source[src] += a.opened_by_source[src]
            total.opened = [x + y for x, y in zip(total.opened, a.opened, strict=True)]
            total.closed = [x + y for x, y in zip(total.closed, a.closed, strict=True)]
        for s, percents in (
            (total.acknowledge, (50, 90)),
            (total.close, (50, 90)),
            (total.open_age, (50, 100)),
        ):
            s.n = total.open if s is total.open_age else draw(st.integers(0, 30))
            s.met = draw(st.integers(0, s.n))
            s.at_ms = {p: 1000 * (i + 1) for i, p in enumerate(percents)} if s.n else {}
        services[svc] = ServiceFigures(total=total, districts=per_d)
    window = Window(
        starts=tuple(date(2025, 3, 3 + 7 * i) for i in range(n_weeks)),
        bounds_ms=tuple(i * 604_800_000 for i in range(n_weeks + 1)),
        now_ms=n_weeks * 604_800_000 - 1,
    )
    targets = {svc: ServiceTarget() for svc in names if draw(st.booleans())}
    return Figures(window=window, services=services, districts=districts), targets


def _equations(doc: dict[str, Any]) -> Iterator[tuple[Any, list[Any]]]:
    """(total, parts) for every sum the published JSON implies, as paths of cells."""
    n_weeks = len(doc["weeks"])
    for i, s in enumerate(doc["services"]):
        svc = ("services", i)
        total = (*svc, "total")
        districts = [(*svc, "districts", j) for j in range(len(s["districts"]))]
        yield (*total, "open"), [(*d, "open") for d in districts]
        yield (*total, "open"), [(*svc, "open_by_source", src) for src in ("sensor", "citizen")]
        if s["target"] is not None:
            yield (*total, "open_past_target"), [(*d, "open_past_target") for d in districts]
        for kind in ("opened", "closed"):
            for w in range(n_weeks):
                cell = f"{kind}_per_week", w
                yield (*total, *cell), [(*d, *cell) for d in districts]
            yield (*svc, kind), [(*total, f"{kind}_per_week", w) for w in range(n_weeks)]
        yield (*svc, "opened"), [(*svc, "opened_by_source", src) for src in ("sensor", "citizen")]
    for kind in ("open", "opened", "closed"):
        if kind == "open":
            parts = [("services", i, "total", "open") for i in range(len(doc["services"]))]
        else:
            parts = [("services", i, kind) for i in range(len(doc["services"]))]
        yield ("city", kind), parts


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _determined(doc: dict[str, Any]) -> list[Any]:
    """The hidden cells a visitor can compute exactly from the published ones."""
    rows: list[dict[Any, Fraction]] = []
    for total, parts in _equations(doc):
        row: dict[Any, Fraction] = {}
        for path, sign in ((total, -1), *((p, 1) for p in parts)):
            if _get(doc, path) == LABEL:
                row[path] = row.get(path, Fraction(0)) + sign
        if any(row.values()):
            rows.append({k: v for k, v in row.items() if v})
    # Reduced row echelon form; a cell is determined iff some reduced row is that cell alone.
    variables = sorted({v for r in rows for v in r}, key=repr)
    reduced: list[dict[Any, Fraction]] = []
    for var in variables:
        pivot = next((r for r in rows if r.get(var)), None)
        if pivot is None:
            continue
        rows.remove(pivot)
        scale = pivot[var]
        pivot = {k: v / scale for k, v in pivot.items()}
        for group in (rows, reduced):
            for idx, r in enumerate(group):
                if r.get(var):
                    f = r[var]
                    merged = {
                        k: r.get(k, Fraction(0)) - f * pivot.get(k, Fraction(0))
                        for k in r.keys() | pivot.keys()
                    }
                    group[idx] = {k: v for k, v in merged.items() if v}
        reduced.append(pivot)
    return [next(iter(r)) for r in reduced if len(r) == 1]


def _counts(doc: dict[str, Any]) -> Iterator[Any]:
    for total, parts in _equations(doc):
        yield _get(doc, total)
        yield from (_get(doc, p) for p in parts)


@settings(max_examples=150, deadline=None)
@given(figures())
def test_no_small_figure_is_published_or_derivable(made: tuple[Figures, dict[str, ServiceTarget]]) -> None:
    figs, targets = made
    doc = publish(figs, k=K, targets=targets, refresh_s=300, timezone="UTC").model_dump(mode="json")
    for v in _counts(doc):
        assert v == LABEL or (isinstance(v, int) and v >= K), v
    assert _determined(doc) == []
    for s in doc["services"]:
        for area in (s["total"], *s["districts"]):
            assert isinstance(area["open_age"], str) == isinstance(area["open"], str)


def test_statistics_of_fewer_than_k_cases_are_hidden() -> None:
    a = Area(1)
    a.close = Sample(n=K - 1, met=1, at_ms={50: 1000, 90: 2000})
    a.acknowledge = Sample(n=K, met=K, at_ms={50: 1000, 90: 2000})
    figs = Figures(
        window=Window(starts=(date(2025, 3, 3),), bounds_ms=(0, 604_800_000), now_ms=1),
        services={"waste": ServiceFigures(total=a, districts={"north": a})},
        districts=["north"],
    )
    doc = publish(figs, k=K, targets={"waste": ServiceTarget()}, refresh_s=300, timezone="UTC")
    assert doc.services[0].total.close == LABEL and doc.services[0].total.closed_within_target == LABEL
    assert doc.services[0].total.acknowledge.p50_s == 1  # type: ignore[union-attr]
    assert doc.services[0].total.acknowledged_within_target == 1.0


def test_a_city_total_goes_before_a_service_total_a_district_before_a_service() -> None:
    def area(open_by_district: dict[str, int]) -> ServiceFigures:
        districts = {}
        for d, n in open_by_district.items():
            a = Area(1)
            a.open, a.open_by_source = n, {"sensor": n, "citizen": 0}
            a.open_age = Sample(n=n, at_ms={50: 1000, 100: 2000})
            districts[d] = a
        total = Area(1)
        total.open = sum(open_by_district.values())
        total.open_by_source = {"sensor": total.open, "citizen": 0}
        total.open_age = Sample(n=total.open, at_ms={50: 1000, 100: 2000})
        return ServiceFigures(total=total, districts=districts)

    figs = Figures(
        window=Window(starts=(date(2025, 3, 3),), bounds_ms=(0, 604_800_000), now_ms=1),
        services={"waste": area({"north": 9, "south": 7}), "roads": area({"north": 1, "south": 0})},
        districts=["north", "south"],
    )
    doc = publish(figs, k=K, targets={}, refresh_s=300, timezone="UTC")
    roads, waste = doc.services
    assert doc.city.open == LABEL  # 17: hidden, else 17 - 16 is the roads' 1
    assert waste.total.open == 16 and [d.open for d in waste.districts] == [9, 7]
    assert roads.total.open == LABEL and [d.open for d in roads.districts] == [LABEL, LABEL]
    # The sources: 16 = 16 + 0, the zero hidden, so the other source must be too.
    assert (waste.open_by_source.sensor, waste.open_by_source.citizen) == (LABEL, LABEL)


def test_no_cases_at_all_publishes_an_empty_page() -> None:
    figs = Figures(
        window=Window(starts=(date(2025, 3, 3),), bounds_ms=(0, 604_800_000), now_ms=1),
        services={},
        districts=[],
    )
    doc = publish(figs, k=K, targets={}, refresh_s=300, timezone="UTC")
    assert doc.services == [] and doc.city.open == LABEL
    assert hidden_cells({"t": 0}, [Relation("t", ())], K) == {"t"}
