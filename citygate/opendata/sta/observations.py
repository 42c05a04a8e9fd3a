"""Observations from InfluxDB: ``$filter`` split into what InfluxQL and memory each answer, the
queries built, bounded and read through the cloud's read client.

A Datastream is one field of one device's points (measurement, ``device_id`` tag, field), so
the Observations of many Datastreams are a few InfluxQL statements, one per measurement and
field, each naming its devices. ``$filter`` is split at its top-level ``and`` s:

* ``phenomenonTime`` / ``resultTime`` (the same instant here: the device's time) compared
  with a date-time: the time range of every statement (InfluxDB answers ``or`` over time
  badly, so time conditions must be joined by ``and``);
* ``result`` with ``eq ne lt le gt ge in``, ``and or not``: an InfluxQL condition on the
  field, compiled per field type (``not`` is pushed down: InfluxQL has no NOT);
* ``Datastream/...`` and ``FeatureOfInterest/...``: which Datastreams take part, evaluated
  in memory (:mod:`.filters`).

A conjunct mixing two of these is a 400 saying to join them with ``and``.

Bounds (``[cloud.sta]``, docs/SENSORTHINGS.md): what a request could make the database send
is computed before any query (``max_observations``); ``$count`` needs a time range of at most
``max_time_range_s``, and so do the Observations of more than ``max_unbounded_datastreams``
Datastreams; ``$skip`` is at most ``max_observation_skip``. Each refusal says how to narrow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from odata_query import ast

from citygate.cloud import influxql
from citygate.cloud.reads import Collected, SeriesQuery
from citygate.opendata.sta import ids
from citygate.opendata.sta.entities import Entity, Kind, Stream
from citygate.opendata.sta.errors import BadQueryError
from citygate.opendata.sta.filters import Compiler, Instant, Predicate, literal_value
from citygate.opendata.sta.query import OrderKey, path_of
from citygate.opendata.sta.settings import StaSettings

_NS_PER_MS: Final = 1_000_000
_NS: Final = 1_000_000_000
TIME_NAMES: Final = frozenset({"phenomenonTime", "resultTime"})
STREAM_NAMES: Final = frozenset({"Datastream", "FeatureOfInterest"})
_NEGATED: Final[dict[type, type]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
}
_FLIPPED: Final[dict[type, type]] = {
    ast.Eq: ast.Eq,
    ast.NotEq: ast.NotEq,
    ast.Lt: ast.Gt,
    ast.Gt: ast.Lt,
    ast.LtE: ast.GtE,
    ast.GtE: ast.LtE,
}
_INFLUX_OP: Final[dict[type, str]] = {
    ast.Eq: "=",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_HOW_TO_NARROW: Final = (
    "add $filter=phenomenonTime ge <start> and phenomenonTime lt <end> (RFC 3339 with a time zone)"
)


@dataclass(frozen=True, slots=True)
class StaQuery(SeriesQuery):
    """A statement of ours sent through the read API's client (its pool, chunking, errors)."""

    text: str = ""

    def influxql(self) -> str:
        return self.text


Runner = Callable[[StaQuery], Awaitable[Collected]]


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end) in ns; None: unbounded on that side."""

    start: int | None = None
    end: int | None = None

    @property
    def empty(self) -> bool:
        return self.start is not None and self.end is not None and self.start >= self.end

    def length_s(self, now_ns: int) -> float | None:
        if self.start is None:
            return None
        return ((self.end if self.end is not None else now_ns) - self.start) / _NS

    def narrowed(self, start: int | None, end: int | None) -> Window:
        s = self.start if start is None else start if self.start is None else max(start, self.start)
        e = self.end if end is None else end if self.end is None else min(end, self.end)
        return Window(s, e)


@dataclass(frozen=True, slots=True)
class ObsFilter:
    window: Window = Window()
    result: ast._Node | None = None  # conditions on `result` only, for InfluxQL
    keep: Predicate | None = None  # the same, in memory: a point holds several fields
    streams: Predicate | None = None  # on a probe Observation of each Datastream
    only_stream: int | None = None  # from `id eq N`
    false: bool = False  # a condition no Observation can meet


def _roots(node: Any) -> set[str]:
    """The first names of every property path in ``node``."""
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        names = path_of(n)
        if names is not None:
            out.add(names[0])
            continue
        if isinstance(n, ast.BoolOp | ast.Compare | ast.BinOp):
            stack += [n.left, n.right]
        elif isinstance(n, ast.UnaryOp):
            stack.append(n.operand)
        elif isinstance(n, ast.Call):
            stack += list(n.args)
        elif isinstance(n, ast.List):
            stack += list(n.val)
    return out


def _conjuncts(node: Any) -> list[Any]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = node.operand
        if isinstance(inner, ast.BoolOp) and isinstance(inner.op, ast.Or):  # De Morgan
            return _conjuncts(ast.UnaryOp(ast.Not(), inner.left)) + _conjuncts(
                ast.UnaryOp(ast.Not(), inner.right)
            )
        if isinstance(inner, ast.UnaryOp) and isinstance(inner.op, ast.Not):
            return _conjuncts(inner.operand)
    return [node]


def _oriented(node: Any) -> tuple[tuple[str, ...], type, Any] | None:
    """A comparison of a path with a literal as (path, operator type, literal node), path first."""
    negate = False
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        negate, node = not negate, node.operand
    if not isinstance(node, ast.Compare) or type(node.comparator) not in _NEGATED:
        return None
    op: type = type(node.comparator)
    left, right = path_of(node.left), path_of(node.right)
    if left is not None and right is None and isinstance(node.right, ast._Literal):
        path, lit = left, node.right
    elif right is not None and left is None and isinstance(node.left, ast._Literal):
        path, lit, op = right, node.left, _FLIPPED[op]
    else:
        return None
    return path, (_NEGATED[op] if negate else op), lit


def _time_bound(node: Any) -> tuple[int | None, int | None]:
    got = _oriented(node)
    bad = (
        "time conditions are 'phenomenonTime (or resultTime) eq|lt|le|gt|ge <date-time>', "
        "joined by and (not or, not ne)"
    )
    if got is None or len(got[0]) != 1:
        raise BadQueryError(bad)
    _, op, lit = got
    value = literal_value(lit)
    if not isinstance(value, Instant):
        raise BadQueryError(f"{bad}; the date-time is RFC 3339 with a time zone")
    t = value.ns
    bounds: dict[type, tuple[int | None, int | None]] = {
        ast.Eq: (t, t + 1),
        ast.Gt: (t + 1, None),
        ast.GtE: (t, None),
        ast.Lt: (None, t),
        ast.LtE: (None, t + 1),
    }
    if op not in bounds:
        raise BadQueryError(bad)
    return bounds[op]


def split_filter(node: ast._Node | None, compiler: Compiler) -> ObsFilter:
    """The filter's time range, result condition and Datastream predicate (or a 400)."""
    if node is None:
        return ObsFilter()
    window = Window()
    results: list[Any] = []
    streams: list[Predicate] = []
    only_stream: int | None = None
    false = False
    for part in _conjuncts(node):
        roots = _roots(part)
        if not roots:
            if not compiler.predicate(part, Kind.OBSERVATION)(_PROBE):
                false = True
        elif roots <= TIME_NAMES:
            window = window.narrowed(*_time_bound(part))
        elif roots == {"result"}:
            results.append(part)
        elif roots <= STREAM_NAMES:
            streams.append(compiler.predicate(part, Kind.OBSERVATION))
        elif roots == {"id"}:
            got = _oriented(part)
            value = literal_value(got[2]) if got is not None else None
            if got is None or got[1] is not ast.Eq or not isinstance(value, int) or isinstance(value, bool):
                raise BadQueryError("Observations are filtered by id only as 'id eq <id>'")
            split = ids.split_observation_id(value)
            if split is None:
                false = True
                continue
            ds, t = split
            if only_stream is not None and only_stream != ds:
                false = True
            only_stream = ds
            window = window.narrowed(t, t + _NS_PER_MS)
        else:
            raise BadQueryError(
                "each part of an Observations $filter joined by 'and' is about one of: the time "
                "(phenomenonTime, resultTime), the value (result), or the Datastream "
                "(Datastream/..., FeatureOfInterest/...); join such parts with and, not or; "
                f"this part names {', '.join(sorted(roots))[:200]}"
            )
    result: Any = None
    for r in results:
        result = r if result is None else ast.BoolOp(ast.And(), result, r)
    keep = None
    if result is not None:
        result_condition(result, "result", "float")  # its shape is checked now, its types per field later
        keep = compiler.predicate(result, Kind.OBSERVATION)
    predicate: Predicate | None = None
    if streams:
        predicate = streams[0] if len(streams) == 1 else (lambda e, ps=tuple(streams): all(p(e) for p in ps))
    return ObsFilter(window, result, keep, predicate, only_stream, false or window.empty)


# A stand-in Observation for conditions that name no Observation property.
_PROBE: Final = Entity(Kind.OBSERVATION, 0, "", {})


def probe(stream: Stream) -> Entity:
    """An Observation of ``stream`` without values, to test Datastream conditions on it."""
    return Entity(
        Kind.OBSERVATION,
        0,
        stream.profile,
        {},
        {"Datastream": (stream.datastream_id,), "FeatureOfInterest": (stream.foi_id,)},
    )


# -- result conditions as InfluxQL ---------------------------------------------------------------


def _value_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # InfluxQL has no exponent notation (1e+16 is a parse error): the decimal expansion of the
        # shortest repr, which round-trips to the same double
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"
    return influxql.literal(str(value))


def _compatible(value: Any, ftype: str) -> bool:
    if ftype in ("float", "int"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if ftype == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


Cond = str | bool  # InfluxQL text, or a constant


def _and(a: Cond, b: Cond) -> Cond:
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return f"({a} AND {b})"


def _or(a: Cond, b: Cond) -> Cond:
    if a is True or b is True:
        return True
    if a is False:
        return b
    if b is False:
        return a
    return f"({a} OR {b})"


_RESULT_HELP: Final = (
    "Observations' results are compared with eq, ne, lt, le, gt, ge or in against a literal "
    "('result gt 3.5'), joined by and, or, not"
)


def _comparison(op: type, value: Any, field: str, ftype: str) -> Cond:
    if value is None:
        return op is ast.NotEq  # every stored value is non-null
    if not _compatible(value, ftype):
        return op is ast.NotEq  # as in memory: different types are never equal
    if ftype in ("bool", "string") and op not in (ast.Eq, ast.NotEq):
        raise BadQueryError(f"a {ftype} result is compared with eq and ne only")
    return f"{influxql.ident(field)} {_INFLUX_OP[op]} {_value_literal(value)}"


def result_condition(node: Any, field: str, ftype: str, negate: bool = False) -> Cond:
    """``node`` (naming only ``result``) as an InfluxQL condition on ``field`` of type ``ftype``."""
    if isinstance(node, ast.BoolOp):
        a = result_condition(node.left, field, ftype, negate)
        b = result_condition(node.right, field, ftype, negate)
        return _and(a, b) if isinstance(node.op, ast.And) != negate else _or(a, b)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return result_condition(node.operand, field, ftype, not negate)
    if path_of(node) == ("result",):  # a bare boolean result
        if ftype != "bool":
            raise BadQueryError(_RESULT_HELP)
        return _comparison(ast.NotEq if negate else ast.Eq, True, field, ftype)
    if isinstance(node, ast.Compare) and isinstance(node.comparator, ast.In):
        if path_of(node.left) != ("result",) or not isinstance(node.right, ast.List):
            raise BadQueryError(_RESULT_HELP)
        out: Cond = negate  # or-ed equalities; negated: and-ed inequalities
        for item in node.right.val:
            one = _comparison(ast.NotEq if negate else ast.Eq, literal_value(item), field, ftype)
            out = _and(out, one) if negate else _or(out, one)
        return out
    got = _oriented(node)
    if got is None or got[0] != ("result",):
        raise BadQueryError(_RESULT_HELP)
    _, op, lit = got
    return _comparison(_NEGATED[op] if negate else op, literal_value(lit), field, ftype)


# -- planning and reading ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One page of Observations: ``top`` from ``skip`` (after the cursor, if any) in time order."""

    top: int
    skip: int
    descending: bool
    count: bool
    # From $skiptoken: (time ns, n): continue at that time (inclusive), past its first n.
    cursor: tuple[int, int] | None = None

    @property
    def offset(self) -> int:
        return self.skip + (self.cursor[1] if self.cursor else 0)

    def window(self, w: Window) -> Window:
        if self.cursor is None:
            return w
        t = self.cursor[0]
        return w.narrowed(None, t + 1) if self.descending else w.narrowed(t, None)


def page_order(keys: Sequence[OrderKey], several_streams: bool) -> bool:
    """True for descending time. Observations are ordered by time only (InfluxDB's one index)."""
    if not keys:
        return False
    if len(keys) > 1:
        raise BadQueryError("Observations are ordered by one key: phenomenonTime (or resultTime) asc|desc")
    key = keys[0]
    if key.path in (("phenomenonTime",), ("resultTime",)):
        return key.descending
    if key.path == ("id",) and not several_streams:
        return key.descending  # one Datastream's ids grow with time
    raise BadQueryError(
        "Observations are ordered by phenomenonTime or resultTime only (and by id within one "
        "Datastream): InfluxDB keeps them in time order, not by value"
    )


def _seconds(x: float) -> str:
    return f"{x:.0f}" if x >= 1 else f"{x:g}"


def check_cost(settings: StaSettings, streams: int, f: ObsFilter, page: Page, now_ns: int, rows: int) -> None:
    """Refuses (400) what would cost more than ``[cloud.sta]`` allows, before any query."""
    length = f.window.length_s(now_ns)
    limit = settings.max_time_range_s
    too_long = length is None or length > limit
    if page.count and too_long:
        raise BadQueryError(
            f"$count of Observations needs a time range of at most {_seconds(limit)} s (counting "
            f"{'all of them' if length is None else f'{_seconds(length)} s of them'} would scan the whole "
            f"range in the database): {_HOW_TO_NARROW}"
        )
    if streams > settings.max_unbounded_datastreams and too_long:
        span = "no time range" if length is None else f"a time range of {_seconds(length)} s"
        raise BadQueryError(
            f"the Observations of {streams} Datastreams over {span} are too costly to read (at most "
            f"{settings.max_unbounded_datastreams} Datastreams without a range of at most "
            f"{_seconds(limit)} s): "
            f"{_HOW_TO_NARROW}, or read fewer Datastreams (Datastreams(id)/Observations, a lower "
            "$top on the Datastreams, or $filter=Datastream/...)"
        )
    if page.skip > settings.max_observation_skip:
        raise BadQueryError(
            f"$skip over Observations is at most {settings.max_observation_skip}: the database reads "
            "what it skips; follow the @iot.nextLink, or continue with phenomenonTime gt <the last "
            "time you have>"
        )
    if rows > settings.max_observations:
        raise BadQueryError(
            f"this request could make the database send {rows} points; the limit is "
            f"{settings.max_observations} ([cloud.sta] max_observations): lower $top (on the "
            "Observations or on what expands them) or $skip, or read fewer Datastreams at once"
        )


@dataclass(frozen=True, slots=True)
class _Group:
    """Devices of one measurement whose Datastreams here are the same fields: one statement."""

    measurement: str
    fields: tuple[tuple[str, str], ...]  # (field, type), by name
    devices: dict[str, dict[str, Stream]]  # device -> field -> its Datastream


def _field_groups(streams: Iterable[Stream]) -> list[_Group]:
    per_device: dict[tuple[str, str], dict[str, Stream]] = defaultdict(dict)
    for s in streams:
        per_device[(s.measurement, s.device_id)][s.field] = s
    by: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, dict[str, Stream]]] = defaultdict(dict)
    for (measurement, device), fields in per_device.items():
        key = (measurement, tuple(sorted((f, st.type) for f, st in fields.items())))
        by[key][device] = fields
    return [_Group(m, fs, dict(sorted(devs.items()))) for (m, fs), devs in sorted(by.items())]


def _where(devices: Iterable[str], f: ObsFilter, fields: Sequence[tuple[str, str]]) -> str | None:
    """The WHERE clause of one statement, or None if no point can match."""
    cond: Cond = True
    if f.result is not None:
        cond = False  # a point matches if any of its fields does; each is checked again in memory
        for name, ftype in fields:
            cond = _or(cond, result_condition(f.result, name, ftype))
        if cond is False:
            return None
    start = max(f.window.start if f.window.start is not None else 0, ids.MIN_OBSERVATION_NS)
    end = min(f.window.end if f.window.end is not None else ids.MAX_OBSERVATION_NS, ids.MAX_OBSERVATION_NS)
    if start >= end:
        return None
    tag = influxql.ident("device_id")
    names = " OR ".join(f"{tag} = {influxql.literal(d)}" for d in devices)
    parts = [f"({names})", f"time >= {start}", f"time < {end}"]
    if cond is not True:
        parts.append(str(cond))
    return " AND ".join(parts)


def _statement(measurement: str, columns: str, where: str, tail: str) -> str:
    return f"SELECT {columns} FROM {influxql.ident(measurement)} WHERE {where} {tail}".rstrip()  # noqa: S608 - quoted parts only


def _query(text: str, measurement: str, rows: int) -> StaQuery:
    return StaQuery(
        measurement=measurement,
        fields=[],
        tag_filters={},
        start_ns=0,
        end_ns=0,
        aggregate=None,
        interval_s=None,
        group_by_device=False,
        limit=rows,
        per_series=rows,
        text=text,
    )


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + days).isoformat()


def format_time(ns: int) -> str:
    """RFC 3339 UTC, milliseconds when the time is whole milliseconds, else nanoseconds; ns >= 0.

    Arithmetic rather than ``datetime`` per value: a day of Observations is 8,640 of them, and
    ``fromtimestamp`` + ``strftime`` were half the time of rendering them.
    """
    secs, frac = divmod(ns, _NS)
    days, in_day = divmod(secs, 86400)
    hours, rest = divmod(in_day, 3600)
    minutes, seconds = divmod(rest, 60)
    base = f"{_day(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}"
    if frac % _NS_PER_MS == 0:
        return f"{base}.{frac // _NS_PER_MS:03d}Z"
    return f"{base}.{frac:09d}Z"


def observation(stream: Stream, time_ns: int, value: Any) -> Entity | None:
    obs_id = ids.observation_id(stream.datastream_id, time_ns)
    if obs_id is None:
        return None
    t = format_time(time_ns)
    return Entity(
        Kind.OBSERVATION,
        obs_id,
        stream.profile,
        {"phenomenonTime": t, "resultTime": t, "result": value},
        {"Datastream": (stream.datastream_id,), "FeatureOfInterest": (stream.foi_id,)},
    )


@dataclass(slots=True)
class Listed:
    entities: list[Entity]
    more: bool = False
    count: int | None = None
    # How the next page is named: a $skiptoken, or (rarely, see _continuation) a $skip.
    token: str | None = None
    next_skip: int | None = None


def _exact(groups: Sequence[_Group], page: Page) -> bool:
    """One statement of one field: rows are Observations, so the database can skip (OFFSET)."""
    return len(groups) == 1 and len(groups[0].fields) == 1 and page.cursor is None


def merged_rows(streams: Sequence[Stream], page: Page) -> int:
    """What :func:`read_merged` may make the database send (points)."""
    groups = _field_groups(streams)
    per = page.top + 1 if _exact(groups, page) else page.offset + page.top + 1
    return per * len(groups)


Row = tuple[int, str, str, Entity]  # time, device, field, the Observation


def _continuation(
    rows: Sequence[Row], start: int, page: Page, offset_used: bool
) -> tuple[str | None, int | None]:
    """The next page's $skiptoken: the last time sent, and how many at that time were sent.

    Keyset paging: the next page starts at that time, not at a growing offset the database
    would have to read again. After a database OFFSET the Observations skipped are not
    seen; if the whole page is one instant some of them may share it, and $skip is given.
    """
    sent = rows[: start + page.top]
    last = sent[-1][0]
    if offset_used and sent[start][0] == last:
        return None, page.skip + page.top
    same = sum(1 for r in sent if r[0] == last)  # sent: from the cursor's time on, what it skipped too
    return f"{last}.{same}", None


async def read_merged(run: Runner, streams: Sequence[Stream], f: ObsFilter, page: Page) -> Listed:
    """One page over all ``streams`` together, in time order (ties: device id, then field)."""
    window = page.window(f.window)
    if f.false or window.empty or not streams:
        return Listed([], count=0 if page.count else None)
    here = replace(f, window=window)
    groups = _field_groups(streams)
    use_offset = _exact(groups, page)
    order = "ORDER BY time DESC" if page.descending else "ORDER BY time ASC"
    rows: list[Row] = []
    for g in groups:
        where = _where(g.devices, here, g.fields)
        if where is None:
            continue
        limit = page.top + 1 if use_offset else page.offset + page.top + 1
        tail = f"{order} LIMIT {limit}" + (f" OFFSET {page.skip}" if use_offset and page.skip else "")
        columns = ", ".join(influxql.ident(c) for c in ("device_id", *(name for name, _ in g.fields)))
        got = await run(_query(_statement(g.measurement, columns, where, tail), g.measurement, limit))
        for _, cols, values in got.series:
            i_time, i_dev = cols.index("time"), cols.index("device_id")
            at = [(name, cols.index(name)) for name, _ in g.fields]
            for row in values:
                mine = g.devices.get(row[i_dev])
                if mine is None:
                    continue
                t = int(row[i_time])
                for name, i in at:
                    value = row[i]
                    if value is None:
                        continue
                    e = observation(mine[name], t, value)
                    if e is not None and (f.keep is None or f.keep(e)):
                        rows.append((t, row[i_dev], name, e))
    rows.sort(key=lambda r: (r[0], r[1], r[2]), reverse=page.descending)
    start = 0 if use_offset else page.offset
    listed = Listed([r[3] for r in rows[start : start + page.top]], len(rows) > start + page.top)
    if listed.more and listed.entities:
        listed.token, listed.next_skip = _continuation(rows, start, page, use_offset)
    if page.count:
        listed.count = await count_merged(run, streams, f)
    return listed


async def count_merged(run: Runner, streams: Sequence[Stream], f: ObsFilter) -> int:
    """The Observations matching ``f``: a count per field (a point counts once per field)."""
    if f.false:
        return 0
    total = 0
    for g in _field_groups(streams):
        for name, ftype in g.fields:
            where = _where(g.devices, f, [(name, ftype)])
            if where is None:
                continue
            text = _statement(g.measurement, f"count({influxql.ident(name)})", where, "")
            got = await run(_query(text, g.measurement, 2))
            total += sum(int(v[1]) for _, _, values in got.series for v in values if v[1] is not None)
    return total


async def read_each(run: Runner, streams: Sequence[Stream], f: ObsFilter, page: Page) -> dict[int, Listed]:
    """One page per Datastream (expanded Observations): InfluxQL's LIMIT and OFFSET per series."""
    out = {s.datastream_id: Listed([], count=0 if page.count else None) for s in streams}
    window = page.window(f.window)
    if f.false or window.empty or not streams:
        return out
    here = replace(f, window=window)
    order = "ORDER BY time DESC" if page.descending else "ORDER BY time ASC"
    group = f"GROUP BY {influxql.ident('device_id')}"
    by_field: dict[tuple[str, str, str], dict[str, Stream]] = defaultdict(dict)
    for s in streams:
        by_field[(s.measurement, s.field, s.type)][s.device_id] = s
    for (measurement, name, ftype), devices in sorted(by_field.items()):
        where = _where(sorted(devices), here, [(name, ftype)])
        if where is None:
            continue
        offset = f" OFFSET {page.offset}" if page.offset else ""
        text = _statement(
            measurement, influxql.ident(name), where, f"{group} {order} LIMIT {page.top + 1}{offset}"
        )
        got = await run(_query(text, measurement, len(devices) * (page.top + 1)))
        for device_id, columns, values in got.series:
            stream = devices.get(device_id or "")
            if stream is None:
                continue
            i_time, i_val = columns.index("time"), columns.index(name)
            rows: list[Row] = []
            for row in values:
                t = int(row[i_time])
                e = observation(stream, t, row[i_val])
                if e is not None:
                    rows.append((t, device_id or "", name, e))
            listed = out[stream.datastream_id]
            listed.entities = [r[3] for r in rows[: page.top]]
            listed.more = len(rows) > page.top
            if listed.more and listed.entities:
                listed.token, listed.next_skip = _continuation(
                    rows, 0, page, False
                )  # one series: times unique
        count_where = _where(sorted(devices), f, [(name, ftype)]) if page.count else None
        if count_where is not None:
            text = _statement(measurement, f"count({influxql.ident(name)})", count_where, group)
            got = await run(_query(text, measurement, len(devices) + 1))
            for device_id, _, values in got.series:
                stream = devices.get(device_id or "")
                if stream is not None and values:
                    out[stream.datastream_id].count = int(values[0][1] or 0)
    return out


def each_rows(streams: Sequence[Stream], page: Page) -> int:
    """What :func:`read_each` may make the database send."""
    return len(streams) * (page.top + 1)


async def lookup(run: Runner, stream: Stream, start_ns: int) -> Entity | None:
    """The Observation whose id names ``stream`` and the millisecond from ``start_ns``."""
    f = ObsFilter(Window(start_ns, start_ns + _NS_PER_MS))
    page = Page(top=1, skip=0, descending=False, count=False)
    got = await read_merged(run, [stream], f, page)
    return got.entities[0] if got.entities else None
