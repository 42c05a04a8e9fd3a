"""The read API's logic: typed parameters -> whitelisted InfluxQL -> JSON or CSV.

Measurement and field names come from the device profiles, device ids and
sites from the inventory; anything else is refused before a query exists.
Times are aware datetimes turned into integer nanoseconds, intervals whole
seconds, aggregates an enum (see :mod:`citygate.cloud.influxql`).

Bounds (docs/CLOUD.md, "Read API"): at most ``max_query_points`` rows in one answer,
counted over all its series together; a raw read covers at most
``max_raw_range_s``; an aggregated read of a site at most ``max_query_points``
intervals times the site's devices. Results are rendered (JSON or CSV) by
:func:`render`, a plain function the route runs in a worker thread.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import BaseModel

from citygate.cloud import influxql
from citygate.cloud.influxql import Aggregate
from citygate.contract.profiles import DeviceProfile
from citygate.contract.rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from citygate.errors import ReadError, TooManyReads

_NS = 1_000_000_000
MAX_INTERVAL_S = 366 * 86400
# InfluxDB's own time range (influxql.MinTime / MaxTime); outside it a query is refused.
TIME_MIN_NS: Final = -9_223_372_036_854_775_806
TIME_MAX_NS: Final = 9_223_372_036_854_775_806
# ASCII digits only: str.isdigit() and int() also take "²" or Arabic-Indic digits.
_EPOCH_NS: Final = re.compile(r"-?[0-9]{1,19}")
# A CSV cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


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
    limit: int  # rows in the whole answer, over all series
    per_series: int  # InfluxQL LIMIT (rows per series): limit + 1 on raw reads, to see more exists
    slimit: int | None = None  # InfluxQL SLIMIT: series (aggregated reads of a site)

    @property
    def device_column(self) -> bool:
        """A raw read of a site: one series in time order with the device id as a column."""
        return self.aggregate is None and self.group_by_device

    def influxql(self) -> str:
        return influxql.select_series(
            self.measurement,
            self.fields,
            tag_filters=self.tag_filters,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            aggregate=self.aggregate,
            interval_s=self.interval_s,
            group_by_device=self.group_by_device and self.aggregate is not None,
            limit=self.per_series,
            device_column=self.device_column,
            slimit=self.slimit,
        )


def parse_time(text: str, what: str) -> int:
    """Epoch ns from RFC 3339 (with offset, up to 9 fractional digits) or integer epoch ns.

    Not ``datetime``: it stops at microseconds, and readings are stored in ns. Only
    ASCII digits, and only times InfluxDB can hold; anything else is a ReadError (422).
    """
    t = text.strip()
    if _EPOCH_NS.fullmatch(t):
        ns = int(t)
    else:
        parsed = parse_rfc3339_ns(t)
        if parsed is None:
            raise ReadError(
                422,
                f"{what} must be RFC 3339 with an offset (2026-01-01T00:00:00Z) or epoch ns (ASCII digits)",
            )
        ns = parsed
    _check_range(ns, what)
    return ns


def _check_range(ns: int, what: str) -> None:
    if not TIME_MIN_NS <= ns <= TIME_MAX_NS:
        raise ReadError(
            422, f"{what} is outside the range the database can hold ({TIME_MIN_NS}..{TIME_MAX_NS} ns)"
        )


def aligned_intervals(start_ns: int, end_ns: int, interval_s: int) -> int:
    """How many ``interval_s`` buckets (aligned to the epoch, as InfluxDB's) meet [start, end)."""
    width = interval_s * _NS
    return (end_ns - 1) // width - start_ns // width + 1


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
    max_raw_range_s: float | None = None,
    devices: int = 1,
) -> SeriesQuery:
    """The query for these parameters, or ReadError.

    ``devices``: how many series a read grouped by device may have (the site's devices
    of that profile in the inventory); an aggregated read must fit ``max_points`` rows
    with every one of them full.
    """
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
    _check_range(start_ns, "start")
    if end_ns <= start_ns:
        raise ReadError(422, "end must be after start")
    per_series = max_points + 1
    slimit: int | None = None
    if aggregate is None:
        if interval_s is not None:
            raise ReadError(422, "interval_s needs an aggregate (mean, min, max, last, count)")
        if max_raw_range_s is not None and end_ns - start_ns > int(max_raw_range_s * _NS):
            raise ReadError(
                422,
                f"a raw read covers at most {max_raw_range_s:g} s; use agg and interval_s "
                "for a longer range, or read it in parts",
            )
    else:
        if interval_s is None:
            raise ReadError(422, "an aggregate needs interval_s")
        if not 1 <= interval_s <= MAX_INTERVAL_S:
            raise ReadError(422, f"interval_s must be 1..{MAX_INTERVAL_S}")
        buckets = aligned_intervals(start_ns, end_ns, interval_s)
        series = max(1, devices) if group_by_device else 1
        if buckets * series > max_points:
            what = f"{buckets} intervals" + (f" x {series} devices" if series > 1 else "")
            raise ReadError(
                422,
                f"{what} is more than the limit of {max_points} rows; "
                "choose a longer interval or a shorter range",
            )
        if "seq" in chosen and aggregate is not Aggregate.LAST and aggregate is not Aggregate.COUNT:
            raise ReadError(422, "seq can only be read raw, with last or with count")
        strings = [f for f in chosen if f != "seq" and profile.fields[f].type in ("string", "bool")]
        if strings and aggregate not in (Aggregate.LAST, Aggregate.COUNT):
            raise ReadError(422, f"field(s) {', '.join(strings)} are not numeric; use last or count")
        per_series = buckets
        if group_by_device:
            # Devices the inventory does not know at this site may have series too: no more
            # series than fit the cap with each full, plus one to see that more exist.
            slimit = max_points // buckets + 1
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
        per_series=per_series,
        slimit=slimit,
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


# Rows per piece when rendering: each piece is a few milliseconds of work, and the route
# lets the event loop run between pieces (gateway batches are answered on the same loop).
PIECE_ROWS: Final = 2000


@dataclass(slots=True)
class Collected:
    """The rows of an answer, per series, at most ``SeriesQuery.limit`` in all."""

    series: list[tuple[str | None, list[str], list[list[Any]]]] = field(default_factory=list)
    rows: int = 0
    truncated: bool = False


class Collector:
    """Takes the database's answer a chunk at a time, keeping at most ``query.limit`` rows in all.

    Chunks are the documents of InfluxDB's chunked ``/query`` answer (a series may go on
    over several, marked ``partial``) or one whole answer. A raw read of a site arrives as
    one series in time order with a ``device_id`` column; it is split into one series per
    device (by device id). :meth:`add` says when no further row can be kept, so the
    caller can stop reading the database's answer there.
    """

    def __init__(self, query: SeriesQuery, device_id: str | None) -> None:
        self.query = query
        self.device_id = device_id
        self.out = Collected()
        self._by_key: dict[str | None, list[list[Any]]] = {}
        self._columns: dict[str | None, list[str]] = {}
        self._order: list[str | None] = []

    @property
    def full(self) -> bool:
        return self.out.truncated

    def add(self, results: Sequence[Mapping[str, Any]]) -> bool:
        """Take one chunk's ``results``; True once the answer is full and more rows were offered."""
        for result in results:
            for s in result.get("series") or []:
                columns = list(s.get("columns") or [])
                values: list[list[Any]] = s.get("values") or []
                if not values:
                    continue
                budget = self.query.limit - self.out.rows
                if budget <= 0:
                    self.out.truncated = True
                    return True
                if len(values) > budget:
                    values = values[:budget]
                    self.out.truncated = True
                self.out.rows += len(values)
                if self.query.device_column and "device_id" in columns:
                    self._split(columns, values)
                else:
                    tags = s.get("tags") or {}
                    self._append(tags.get("device_id", self.device_id), columns, values)
                if self.out.truncated:
                    return True
        return False

    def _rows(self, key: str | None, columns: list[str]) -> list[list[Any]]:
        """The rows of series ``key``, a new series with these columns on first sight."""
        rows = self._by_key.get(key)
        if rows is None:
            self._by_key[key] = rows = []
            self._columns[key] = columns
            self._order.append(key)
        return rows

    def _append(self, key: str | None, columns: list[str], values: list[list[Any]]) -> None:
        self._rows(key, columns).extend(values)

    def _split(self, columns: list[str], values: list[list[Any]]) -> None:
        i = columns.index("device_id")
        kept = columns[:i] + columns[i + 1 :]
        by_key = self._by_key
        for row in values:
            dev = row.pop(i)
            key = dev if isinstance(dev, str) else str(dev)
            # A dict lookup per row, a method call only per new device.
            rows = by_key.get(key)
            if rows is None:
                rows = self._rows(key, kept)
            rows.append(row)

    def done(self) -> Collected:
        order = sorted(self._order, key=str) if self.query.device_column else self._order
        self.out.series = [(k, self._columns[k], self._by_key[k]) for k in order]
        return self.out


def collect(results: Sequence[Mapping[str, Any]], query: SeriesQuery, device_id: str | None) -> Collected:
    """A whole answer cut to ``query.limit`` rows over all series; ``truncated`` if any was left out."""
    c = Collector(query, device_id)
    c.add(results)
    return c.done()


def _chunks(values: list[list[Any]]) -> Iterator[list[list[Any]]]:
    for i in range(0, len(values), PIECE_ROWS):
        yield values[i : i + PIECE_ROWS]


def json_pieces(query: SeriesQuery, got: Collected) -> Iterator[bytes]:
    """A ``SeriesResult`` document in pieces of at most PIECE_ROWS rows (orjson for each)."""
    head = {
        "measurement": query.measurement,
        "fields": query.fields,
        "aggregate": query.aggregate.value if query.aggregate else None,
        "interval_s": query.interval_s,
        "start": format_rfc3339_ns(query.start_ns),
        "end": format_rfc3339_ns(query.end_ns),
    }
    yield orjson.dumps(head)[:-1] + b',"series":['
    for n, (device_id, columns, values) in enumerate(got.series):
        yield (
            (b"," if n else b"")
            + b'{"device_id":'
            + orjson.dumps(device_id)
            + b',"columns":'
            + orjson.dumps(columns)
            + b',"values":['
        )
        for k, chunk in enumerate(_chunks(values)):
            yield (b"," if k else b"") + orjson.dumps(chunk)[1:-1]
        yield b"]}"
    yield b'],"truncated":' + (b"true" if got.truncated else b"false") + b"}"


def to_json(query: SeriesQuery, got: Collected) -> bytes:
    return b"".join(json_pieces(query, got))


def csv_cell(value: Any) -> Any:
    """A cell that a spreadsheet would run as a formula, made text with a leading ``'`` (OWASP)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_pieces(query: SeriesQuery, got: Collected) -> Iterator[bytes]:
    """``device_id,time,<fields>`` rows in pieces; every text cell neutralised (:func:`csv_cell`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([csv_cell(c) for c in ("device_id", "time", *query.fields)])
    for device_id, columns, values in got.series:
        idx = {c: i for i, c in enumerate(columns)}
        t = idx.get("time")
        cols = [idx.get(f) for f in query.fields]
        dev = csv_cell(device_id or "")
        for chunk in _chunks(values):
            w.writerows(
                [
                    dev,
                    "" if t is None else csv_cell(row[t]),
                    *("" if i is None or row[i] is None else csv_cell(row[i]) for i in cols),
                ]
                for row in chunk
            )
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()


def to_csv(query: SeriesQuery, got: Collected) -> bytes:
    return b"".join(csv_pieces(query, got))


def render_pieces(query: SeriesQuery, got: Collected, fmt: str) -> tuple[Iterator[bytes], str]:
    """The answer's body in pieces, and its media type."""
    if fmt == "csv":
        return csv_pieces(query, got), "text/csv; charset=utf-8"
    return json_pieces(query, got), "application/json"


class TokenReadLimiter:
    """At most ``per_token`` reads in flight per token name (one event loop: no lock needed)."""

    def __init__(self, per_token: int) -> None:
        self.per_token = per_token
        self._active: dict[str, int] = {}

    def active(self, name: str) -> int:
        return self._active.get(name, 0)

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        n = self._active.get(name, 0)
        if n >= self.per_token:
            raise TooManyReads(name)
        self._active[name] = n + 1
        try:
            yield
        finally:
            left = self._active[name] - 1
            if left:
                self._active[name] = left
            else:
                del self._active[name]
