"""The raw figures from the store, on SQLite and on PostgreSQL, against a plain-Python reference
over the same cases (tests/progress/seeding.py): open counts and ages, weekly opened and closed,
times to acknowledge and close with their nearest-rank p50/p90, the shares within target."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, event

from citygate.progress.stats import QUERIES_PER_REFRESH, Area, Figures, Queries, collect
from citygate.progress.weeks import window
from citygate.service.settings import ServiceTarget
from tests.progress.seeding import DAY_MS, HOUR_MS, Seed, insert_cases, random_cases, reference

BERLIN = ZoneInfo("Europe/Berlin")
# A Wednesday afternoon; the window of 12 weeks holds the change to summer time (30 March).
NOW_MS = int(datetime(2025, 4, 2, 15, 30, tzinfo=BERLIN).timestamp() * 1000)
TARGETS = {
    "waste": ServiceTarget(acknowledge_s=3600, resolve_s=86_400),
    "roads": ServiceTarget(acknowledge_s=7200, resolve_s=3 * 86_400),
}


def _as_reference(a: Area) -> dict[str, Any]:
    got = dataclasses.asdict(a)
    got.pop("weeks")
    return got


def _areas(f: Figures) -> dict[tuple[str, Any], Area]:
    out: dict[tuple[str, Any], Area] = {}
    for svc, sf in f.services.items():
        out[(svc, "*")] = sf.total
        out.update({(svc, d): a for d, a in sf.districts.items()})
    return out


def _collect(engine: Engine, **kw: Any) -> Figures:
    w = window(NOW_MS, BERLIN, 12)
    with engine.connect() as conn:
        return collect(conn, w, targets=TARGETS, **kw)


def test_figures_match_the_reference(engine: Engine) -> None:
    w = window(NOW_MS, BERLIN, 12)
    seeds = random_cases(random.Random(16), 700, NOW_MS, bounds=w.bounds_ms)
    insert_cases(engine, seeds)
    got = {k: _as_reference(a) for k, a in _areas(_collect(engine)).items()}
    expected = reference(seeds, w, TARGETS)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key
    # The data is rich enough to mean something: every kind of figure was non-trivial somewhere.
    total = expected[("waste", "*")]
    assert total["open"] > 10 and total["acknowledge"]["n"] > 10 and total["close"]["met"] > 0
    assert total["open_past_target"] > 0 and sum(total["closed"]) > 10


def test_system_cases_are_never_counted(engine: Engine) -> None:
    t = NOW_MS - DAY_MS
    insert_cases(
        engine,
        [
            Seed("ops", "north", "system", t),
            Seed("waste", "north", "system", t, acknowledged_ms=t + 1, closed_ms=t + 2),
            Seed("waste", "north", "citizen", t),
        ],
    )
    f = _collect(engine)
    assert list(f.services) == ["waste"]  # a service with system cases only is not there at all
    total = f.services["waste"].total
    assert (total.open, sum(total.opened), sum(total.closed), total.acknowledge.n) == (1, 1, 0, 0)
    assert total.open_by_source == {"sensor": 0, "citizen": 1}


def test_merged_duplicates_count_as_closed_but_not_in_the_time_to_close(engine: Engine) -> None:
    t = NOW_MS - 2 * DAY_MS
    insert_cases(
        engine,
        [
            Seed("waste", "north", "sensor", t, closed_ms=t + 10 * HOUR_MS),
            Seed("waste", "north", "citizen", t, closed_ms=t + 1000, merged=True),
        ],
    )
    total = _collect(engine).services["waste"].total
    assert sum(total.closed) == 2
    assert (total.close.n, total.close.at_ms) == (1, {50: 10 * HOUR_MS, 90: 10 * HOUR_MS})
    assert total.close.met == 1  # within a day


def test_nearest_rank_percentiles_and_the_share_within_target(engine: Engine) -> None:
    t = NOW_MS - 3 * DAY_MS
    took_h = [1, 2, 3, 4, 5, 6, 7, 8, 9, 30]  # hours to close; the target is 24 h
    insert_cases(
        engine,
        [
            Seed("waste", "south", "sensor", t, acknowledged_ms=t + h * 60_000, closed_ms=t + h * HOUR_MS)
            for h in took_h
        ],
    )
    total = _collect(engine).services["waste"].total
    assert total.close.at_ms == {50: 5 * HOUR_MS, 90: 9 * HOUR_MS}  # ranks 5 and 9 of 10
    assert (total.close.n, total.close.met) == (10, 9)
    # Acknowledged after 1..9 and 30 minutes: the target is 60 minutes, all met.
    assert total.acknowledge.at_ms == {50: 5 * 60_000, 90: 9 * 60_000} and total.acknowledge.met == 10


def test_only_the_configured_services_in_their_order(engine: Engine) -> None:
    t = NOW_MS - DAY_MS
    insert_cases(engine, [Seed("waste", "north", "sensor", t), Seed("roads", "north", "sensor", t)])
    f = _collect(engine, services=["roads", "parks"])
    assert list(f.services) == ["roads", "parks"]  # parks listed, with nothing in it
    assert f.services["roads"].total.open == 1 and f.services["parks"].total.open == 0


def test_one_refresh_is_a_fixed_number_of_queries(engine: Engine) -> None:
    insert_cases(engine, random_cases(random.Random(3), 200, NOW_MS))
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        _collect(engine)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == QUERIES_PER_REFRESH
    assert all("FROM cases" in s for s in statements)
    assert not any(word in s for s in statements for word in ("title", "subject", "detail", "latitude"))


def test_the_store_returns_rows_per_group_not_per_case(engine: Engine) -> None:
    # 3,000 cases of one service in two districts: every query answers a handful of rows.
    t = NOW_MS - 20 * DAY_MS
    seeds = [
        Seed(
            "waste",
            ("north", "south")[i % 2],
            "sensor",
            t + i * 60_000,
            acknowledged_ms=t + i * 60_000 + 5,
            closed_ms=t + i * 60_000 + 10 if i % 3 else None,
        )
        for i in range(3000)
    ]
    insert_cases(engine, seeds)
    q = Queries(window(NOW_MS, BERLIN, 12), (), TARGETS)
    with engine.connect() as conn:
        sizes = {
            name: len(conn.execute(getattr(q, name)()).all())
            for name in ("open_counts", "opened", "closed", "acknowledge", "close", "open_age")
        }
    weeks_touched = 4  # 3,000 minutes span three weeks, maybe four
    assert sizes["open_counts"] == 2
    assert sizes["opened"] <= 2 * weeks_touched and sizes["closed"] <= 2 * weeks_touched
    # The rows at the ranks: two percentiles, per district and per service (a row can be both).
    assert all(sizes[name] <= 6 for name in ("acknowledge", "close", "open_age")), sizes
