"""Cases written straight into a service store (as the rules and citizen reports leave them), and
a plain-Python reference of the figures the progress page computes from them.

The reference is written for reading, not speed: every figure from the list of cases by its
definition (docs/PROGRESS.md), percentiles by nearest rank with ``math.ceil``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select

from citygate.progress.weeks import Window
from citygate.service.schema import cases
from citygate.service.settings import ServiceTarget

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Seed:
    service: str
    district: str | None
    source: str  # sensor | citizen | system
    opened_ms: int
    acknowledged_ms: int | None = None
    closed_ms: int | None = None
    merged: bool = False  # closed as a duplicate (merged_into another case)
    title: str = "Bin full"
    subject: str | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_ms is None


def insert_cases(engine: Engine, seeds: Iterable[Seed]) -> None:
    """INSERT the cases; a merged one points at the first case inserted."""
    rows: list[dict[str, Any]] = []
    seeds = list(seeds)
    for i, s in enumerate(seeds):
        status = "closed" if s.closed_ms is not None else ("acknowledged" if s.acknowledged_ms else "new")
        rows.append(
            {
                "rule_id": f"citizen.{s.service}" if s.source == "citizen" else f"waste_bin.{s.service}",
                "subject": s.subject or f"subject-{i}",
                "source": s.source,
                "service": s.service,
                "severity": "warning",
                "title": s.title,
                "status": status,
                "is_open": s.is_open,
                "district": s.district,
                "site": "market square",
                "opened_ms": s.opened_ms,
                "updated_ms": s.closed_ms or s.acknowledged_ms or s.opened_ms,
                "acknowledged_ms": s.acknowledged_ms,
                "closed_ms": s.closed_ms,
                "detail": "seeded",
                "latitude": 50.1,
                "longitude": 8.6,
            }
        )
    with engine.begin() as conn:
        plain = [r for r, s in zip(rows, seeds, strict=True) if not s.merged]
        merged = [r for r, s in zip(rows, seeds, strict=True) if s.merged]
        if plain:
            conn.execute(insert(cases), plain)
        if merged:
            first = conn.execute(select(cases.c.id).order_by(cases.c.id).limit(1)).scalar_one()
            conn.execute(insert(cases), [r | {"merged_into": first} for r in merged])


def random_cases(
    rng: random.Random,
    n: int,
    now_ms: int,
    *,
    services: Sequence[str] = ("waste", "lighting", "roads"),
    districts: Sequence[str | None] = ("north", "south", "east", None),
    span_ms: int = 16 * 7 * DAY_MS,
    bounds: Sequence[int] = (),
) -> list[Seed]:
    """``n`` cases opened over the last ``span_ms``; some on the window's boundaries exactly."""
    out = []
    for i in range(n):
        opened = now_ms - rng.randrange(span_ms)
        if bounds and i % 17 == 0:
            opened = rng.choice(bounds[:-1])  # exactly a week's start
        ack = closed = None
        if rng.random() < 0.7:
            ack = min(now_ms, opened + rng.randrange(1, 3 * DAY_MS))
        if rng.random() < 0.6:
            closed = min(now_ms, (ack or opened) + rng.randrange(1, 6 * DAY_MS))
            if bounds and i % 23 == 0:
                later = [b for b in bounds if b >= opened and b <= now_ms]
                closed = later[0] if later else closed
        out.append(
            Seed(
                service=rng.choice(services),
                district=rng.choice(districts),
                source=rng.choice(("sensor", "sensor", "citizen", "system")),
                opened_ms=opened,
                acknowledged_ms=ack,
                closed_ms=closed,
                merged=closed is not None and rng.random() < 0.05,
            )
        )
    return out


# -- the reference --------------------------------------------------------------------------


def rank_value(values: Sequence[int], percent: int) -> int:
    s = sorted(values)
    return s[math.ceil(percent * len(s) / 100) - 1]


def _sample(values: list[int], met: int, percents: Sequence[int]) -> dict[str, Any]:
    return {
        "n": len(values),
        "met": met,
        "at_ms": {p: rank_value(values, p) for p in percents} if values else {},
    }


def reference(
    seeds: Sequence[Seed], window: Window, targets: Mapping[str, ServiceTarget]
) -> dict[tuple[str, Any], dict[str, Any]]:
    """{(service, district) or (service, "*"): figures} for the public cases."""
    start, end, now = window.bounds_ms[0], window.bounds_ms[-1], window.now_ms
    public = [s for s in seeds if s.source in ("sensor", "citizen")]
    groups: dict[tuple[str, Any], list[Seed]] = {}
    for s in public:
        groups.setdefault((s.service, s.district), []).append(s)
        groups.setdefault((s.service, "*"), []).append(s)
    out = {}
    for key, group in groups.items():
        t = targets.get(key[0])
        open_ = [s for s in group if s.is_open]
        acked = [s for s in group if s.acknowledged_ms is not None and start <= s.acknowledged_ms < end]
        closed = [s for s in group if s.closed_ms is not None and start <= s.closed_ms < end]
        done = [s for s in closed if not s.merged]
        ack_took = [s.acknowledged_ms - s.opened_ms for s in acked]  # type: ignore[operator]
        close_took = [s.closed_ms - s.opened_ms for s in done]  # type: ignore[operator]
        weeks = range(len(window.starts))
        out[key] = {
            "open": len(open_),
            "open_by_source": {src: sum(s.source == src for s in open_) for src in ("sensor", "citizen")},
            "open_past_target": sum(now - s.opened_ms >= t.resolve_s * 1000 for s in open_) if t else 0,
            "opened": [sum(window.week_of(s.opened_ms) == w for s in group) for w in weeks],
            "opened_by_source": {
                src: sum(s.source == src and window.week_of(s.opened_ms) is not None for s in group)
                for src in ("sensor", "citizen")
            },
            "closed": [
                sum(s.closed_ms is not None and window.week_of(s.closed_ms) == w for s in group)
                for w in weeks
            ],
            "acknowledge": _sample(
                ack_took, sum(d <= t.acknowledge_s * 1000 for d in ack_took) if t else 0, (50, 90)
            ),
            "close": _sample(
                close_took, sum(d <= t.resolve_s * 1000 for d in close_took) if t else 0, (50, 90)
            ),
            "open_age": _sample([now - s.opened_ms for s in open_], 0, (50, 100)),
        }
    return out


# Per service: cases a week per district, and the typical hours to acknowledge and to close.
PACE = {"waste": (9, 2.0, 30.0), "roads": (5, 20.0, 120.0), "lighting": (6, 8.0, 60.0)}


def city_cases(
    rng: random.Random,
    now_ms: int,
    *,
    weeks: int = 14,
    districts: Sequence[str | None] = ("north", "south", "centre", "harbour"),
    pace: Mapping[str, tuple[float, float, float]] | None = None,
) -> list[Seed]:
    """A city as it runs: cases opened at a steady pace; each acknowledged and closed after
    log-normal delays around the service's pace, unless that lies after now (then still open)."""
    out = []
    for service, (per_week, ack_h, close_h) in (pace or PACE).items():
        for district in districts:
            for _ in range(int(per_week * weeks * rng.uniform(0.6, 1.4))):
                opened = now_ms - rng.randrange(weeks * 7 * DAY_MS)
                ack = opened + int(rng.lognormvariate(math.log(ack_h), 0.8) * HOUR_MS)
                closed = ack + int(rng.lognormvariate(math.log(close_h), 0.9) * HOUR_MS)
                out.append(
                    Seed(
                        service=service,
                        district=district,
                        source="citizen" if rng.random() < 0.35 else "sensor",
                        opened_ms=opened,
                        acknowledged_ms=ack if ack <= now_ms else None,
                        closed_ms=closed if closed <= now_ms else None,
                    )
                )
    return out
