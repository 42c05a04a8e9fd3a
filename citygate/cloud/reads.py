"""The read API's logic: typed parameters -> whitelisted InfluxQL -> JSON or CSV.

Measurement and field names come from the device profiles, device ids and
sites from the inventory; anything else is refused before a query exists.
Times are aware datetimes turned into integer nanoseconds, intervals whole
seconds, aggregates an enum (see :mod:`citygate.cloud.influxql`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from citygate.cloud import influxql
from citygate.cloud.influxql import Aggregate
from citygate.contract.profiles import DeviceProfile
from citygate.contract.validation import parse_rfc3339_ns

_NS = 1_000_000_000
MAX_INTERVAL_S = 366 * 86400


class ReadError(ValueError):
    """Parameters that cannot make a query (422) or name nothing known (404)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    measurement: str
    fields: list[str]
    tag_filters: dict[str, str]
    start_ns: int
    end_ns: int
    aggregate: Aggregate | None
    interval_s: int | None
    group_by_device: bool
    limit: int

    def influxql(self) -> str:
        return influxql.select_series(
            self.measurement,
            self.fields,
            tag_filters=self.tag_filters,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            aggregate=self.aggregate,
            interval_s=self.interval_s,
            group_by_device=self.group_by_device,
            limit=self.limit,
        )


def parse_time(text: str, what: str) -> int:
    """Epoch ns from RFC 3339 (with offset, up to 9 fractional digits) or integer epoch ns.

    Not ``datetime``: it stops at microseconds, and readings are stored in ns.
    """
    t = text.strip()
    if t.lstrip("-").isdigit() and len(t) <= 20:
        return int(t)
    ns = parse_rfc3339_ns(t)
    if ns is None:
        raise ReadError(422, f"{what} must be RFC 3339 with an offset (2026-01-01T00:00:00Z) or epoch ns")
    return ns


def build_query(
    profile: DeviceProfile,
    *,
    tag_filters: dict[str, str],
    fields: str | None,
    start: str | None,
    end: str | None,
    aggregate: Aggregate | None,
    interval_s: int | None,
    group_by_device: bool,
    max_points: int,
    now_ns: int,
) -> SeriesQuery:
    allowed = list(profile.fields)
    if fields:
        chosen = [f.strip() for f in fields.split(",") if f.strip()]
        unknown = [f for f in chosen if f not in profile.fields and f != "seq"]
        if unknown or not chosen:
            raise ReadError(
                422,
                f"unknown field(s) {', '.join(repr(f[:40]) for f in unknown[:5])}; "
                f"profile {profile.name} v{profile.version} has {', '.join(allowed)}",
            )
        if len(set(chosen)) != len(chosen):
            raise ReadError(422, "a field is named twice")
    else:
        chosen = allowed
    end_ns = now_ns if end is None else parse_time(end, "end")
    start_ns = end_ns - 3600 * _NS if start is None else parse_time(start, "start")
    if end_ns <= start_ns:
        raise ReadError(422, "end must be after start")
    if aggregate is None:
        if interval_s is not None:
            raise ReadError(422, "interval_s needs an aggregate (mean, min, max, last, count)")
    else:
        if interval_s is None:
            raise ReadError(422, "an aggregate needs interval_s")
        if not 1 <= interval_s <= MAX_INTERVAL_S:
            raise ReadError(422, f"interval_s must be 1..{MAX_INTERVAL_S}")
        buckets = (end_ns - start_ns) // (interval_s * _NS)
        if buckets > max_points:
            raise ReadError(
                422,
                f"{buckets} intervals is more than the limit of {max_points}; "
                "choose a longer interval or a shorter range",
            )
        if "seq" in chosen and aggregate is not Aggregate.LAST and aggregate is not Aggregate.COUNT:
            raise ReadError(422, "seq can only be read raw, with last or with count")
        strings = [f for f in chosen if f != "seq" and profile.fields[f].type in ("string", "bool")]
        if strings and aggregate not in (Aggregate.LAST, Aggregate.COUNT):
            raise ReadError(422, f"field(s) {', '.join(strings)} are not numeric; use last or count")
    return SeriesQuery(
        measurement=profile.measurement,
        fields=chosen,
        tag_filters=tag_filters,
        start_ns=start_ns,
        end_ns=end_ns,
        aggregate=aggregate,
        interval_s=interval_s,
        group_by_device=group_by_device,
        limit=max_points,
    )


class Series(BaseModel):
    device_id: str | None
    columns: list[str]
    values: list[list[Any]]


class SeriesResult(BaseModel):
    measurement: str
    fields: list[str]
    aggregate: str | None
    interval_s: int | None
    start: str
    end: str
    series: list[Series]
    truncated: bool


def collect(results: Sequence[Mapping[str, Any]], query: SeriesQuery, device_id: str | None) -> SeriesResult:
    series: list[Series] = []
    total = 0
    for result in results:
        for s in result.get("series") or []:
            tags = s.get("tags") or {}
            values = s.get("values") or []
            total = max(total, len(values))
            series.append(
                Series(
                    device_id=tags.get("device_id", device_id),
                    columns=list(s.get("columns") or []),
                    values=values,
                )
            )
    return SeriesResult(
        measurement=query.measurement,
        fields=query.fields,
        aggregate=query.aggregate.value if query.aggregate else None,
        interval_s=query.interval_s,
        start=_iso(query.start_ns),
        end=_iso(query.end_ns),
        series=series,
        truncated=total >= query.limit,
    )


def _iso(ns: int) -> str:
    secs, frac = divmod(ns, _NS)
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def to_csv(result: SeriesResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["device_id", "time", *result.fields])
    for s in result.series:
        idx = {c: i for i, c in enumerate(s.columns)}
        for row in s.values:
            w.writerow(
                [
                    s.device_id or "",
                    row[idx["time"]] if "time" in idx else "",
                    *("" if f not in idx or row[idx[f]] is None else row[idx[f]] for f in result.fields),
                ]
            )
    return buf.getvalue()
