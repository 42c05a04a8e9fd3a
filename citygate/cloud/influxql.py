"""InfluxQL text built only from typed, whitelisted and escaped parts.

Every identifier goes through :func:`ident` (double-quoted, ``\\`` and ``"``
escaped) and every string literal through :func:`literal` (single-quoted,
``\\`` and ``'`` escaped), even though callers whitelist measurement names,
field names, device ids and sites first: two independent defences. Times are
integers (epoch nanoseconds), intervals whole seconds, aggregates an enum:
no user text reaches a query unescaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class Aggregate(StrEnum):
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    COUNT = "count"


def ident(name: str) -> str:
    """A quoted identifier (measurement, field, tag key)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """A quoted string literal (tag values)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def select_series(
    measurement: str,
    fields: Sequence[str],
    *,
    tag_filters: dict[str, str],
    start_ns: int,
    end_ns: int,
    aggregate: Aggregate | None,
    interval_s: int | None,
    group_by_device: bool,
    limit: int,
    device_column: bool = False,
    slimit: int | None = None,
) -> str:
    """One SELECT over [start, end) for a device or a site, raw or aggregated.

    ``LIMIT`` counts rows per series. A raw read of a site therefore does not group by
    device: with ``device_column`` the ``device_id`` tag is selected as a column, the
    answer is one series in time order, and ``LIMIT`` caps the rows of all devices
    together. ``slimit`` caps the number of series (aggregated reads grouped by device).
    """
    if not fields:
        raise ValueError("at least one field")
    if device_column and (aggregate is not None or group_by_device):
        raise ValueError("device_column is for raw reads that are not grouped by device")
    if aggregate is None:
        cols = ", ".join(ident(f) for f in fields)
        if device_column:
            cols = f"{ident('device_id')}, {cols}"
    else:
        cols = ", ".join(f"{aggregate.value}({ident(f)}) AS {ident(f)}" for f in fields)
    where = [f"{ident(k)} = {literal(v)}" for k, v in sorted(tag_filters.items())]
    where += [f"time >= {int(start_ns)}", f"time < {int(end_ns)}"]
    group: list[str] = []
    if aggregate is not None:
        if interval_s is None or interval_s <= 0:
            raise ValueError("an aggregate needs a positive interval")
        group.append(f"time({int(interval_s)}s)")
    if group_by_device:
        group.append(ident("device_id"))
    q = f"SELECT {cols} FROM {ident(measurement)} WHERE {' AND '.join(where)}"  # noqa: S608 - quoted parts only
    if group:
        q += " GROUP BY " + ", ".join(group)
        if aggregate is not None:
            q += " fill(none)"
    q += f" LIMIT {int(limit)}"
    if slimit is not None:
        q += f" SLIMIT {int(slimit)}"
    return q


def latest_per_tag(measurement: str, field: str, tag: str, since_ns: int) -> str:
    """The time of the newest point per tag value (a single selector keeps the point's own time)."""
    return (
        f"SELECT last({ident(field)}) FROM {ident(measurement)} WHERE time >= {int(since_ns)} "  # noqa: S608 - quoted parts only
        f"GROUP BY {ident(tag)}"
    )


def latest_rows(measurement: str, tag: str, since_ns: int, value: str | None = None, limit: int = 1) -> str:
    """The newest ``limit`` rows per ``tag`` value (or of one value), newest first."""
    where = f"time >= {int(since_ns)}"
    if value is not None:
        where = f"{ident(tag)} = {literal(value)} AND " + where
    return (
        f"SELECT * FROM {ident(measurement)} WHERE {where} GROUP BY {ident(tag)} "  # noqa: S608 - quoted parts only
        f"ORDER BY time DESC LIMIT {int(limit)}"
    )
