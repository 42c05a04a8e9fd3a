"""``$filter`` and ``$orderby`` over entities held in memory (everything but stored Observations).

The AST is compiled once per request into closures, checked against the entity kind as it
goes: a property the entity does not have is a 400 even when no entity would be tested.
A path through a set (``Locations/location`` of a Thing) yields several values, and a
comparison holds if it holds for any of them (as FROST-Server reads such paths). Values of
different types never compare equal (``ne`` holds), and order only within one type; a
missing property is ``null``. Observations are not reachable from here: their values are in
InfluxDB, and :mod:`.observations` turns conditions on them into InfluxQL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from odata_query import ast

from citygate.contract.rfc3339 import parse_rfc3339_ns
from citygate.opendata.sta import geo
from citygate.opendata.sta.entities import NAVIGATION, PROPERTIES, Entity, Kind
from citygate.opendata.sta.errors import BadQueryError
from citygate.opendata.sta.query import OrderKey, path_of

_NS: Final = 1_000_000_000
_DAY_NS: Final = 86400 * _NS
TIME_PROPERTIES: Final = frozenset({"time", "phenomenonTime", "resultTime"})
GEO_PROPERTIES: Final = frozenset({"location", "feature"})

Values = Callable[[Entity], list[Any]]
Predicate = Callable[[Entity], bool]


class Graph(Protocol):
    """The related entities a caller may see (the service's model and visibility)."""

    def related(self, entity: Entity, nav: str) -> Sequence[Entity]: ...


@dataclass(frozen=True, slots=True, order=True)
class Instant:
    ns: int


def literal_value(node: ast._Node) -> Any:
    """A literal's value: None, bool, int, float, str, :class:`Instant` or a geometry."""
    if isinstance(node, ast.Null):
        return None
    if isinstance(node, ast.Boolean):
        return node.val.lower() == "true"
    if isinstance(node, ast.Integer):
        value = int(node.val)
        if abs(value) > 2**63 - 1:
            raise BadQueryError(f"integer {node.val[:30]} is outside the 64-bit range")
        return value
    if isinstance(node, ast.Float):
        number = float(node.val)
        if not math.isfinite(number):
            raise BadQueryError(f"number {node.val[:30]} is not finite")
        return number
    if isinstance(node, ast.String):
        return node.val
    if isinstance(node, ast.DateTime):
        ns = parse_rfc3339_ns(node.val)
        if ns is None:
            raise BadQueryError(
                f"date-time {node.val[:40]!r} must be RFC 3339 with a time zone (Z or +hh:mm), "
                "at most nanoseconds, e.g. 2026-01-01T00:00:00Z"
            )
        return Instant(ns)
    if isinstance(node, ast.Date):
        ns = parse_rfc3339_ns(node.val + "T00:00:00Z")
        if ns is None:
            raise BadQueryError(f"{node.val[:20]!r} is not a date")
        return Instant(ns)
    if isinstance(node, ast.Geography):
        return geo.parse_wkt(node.val)
    raise BadQueryError(f"{type(node).__name__} literals are not supported in $filter")


def _time(value: Any) -> Instant | None:
    if isinstance(value, Instant):
        return value
    if isinstance(value, str):
        ns = parse_rfc3339_ns(value)
        return None if ns is None else Instant(ns)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pair(a: Any, b: Any) -> tuple[Any, Any] | None:
    """Both values in one comparable type, or None."""
    if isinstance(a, Instant) or isinstance(b, Instant):
        ta, tb = _time(a), _time(b)
        return None if ta is None or tb is None else (ta, tb)
    if _number(a) and _number(b):
        return a, b
    if type(a) is type(b) and isinstance(a, bool | str):
        return a, b
    return None


def compare(op: ast._Comparator, a: Any, b: Any) -> bool:
    if a is None or b is None:
        if isinstance(op, ast.Eq):
            return a is None and b is None
        if isinstance(op, ast.NotEq):
            return not (a is None and b is None)
        return False
    pair = _pair(a, b)
    if pair is None:
        return isinstance(op, ast.NotEq)
    x, y = pair
    if isinstance(op, ast.Eq):
        return bool(x == y)
    if isinstance(op, ast.NotEq):
        return bool(x != y)
    if isinstance(op, ast.Lt):
        return bool(x < y)
    if isinstance(op, ast.LtE):
        return bool(x <= y)
    if isinstance(op, ast.Gt):
        return bool(x > y)
    if isinstance(op, ast.GtE):
        return bool(x >= y)
    raise BadQueryError(f"unsupported comparison {type(op).__name__}")


def _geometry(value: Any) -> geo.Geometry | None:
    if isinstance(value, geo.Point | geo.Polygon):
        return value
    if isinstance(value, dict):
        return geo.from_geojson(value)
    return None


def _string_fn(name: str, args: list[Any]) -> Any:
    if name == "substring":
        s, start, *rest = args
        if not isinstance(s, str) or not isinstance(start, int) or isinstance(start, bool):
            return None
        if rest:
            n = rest[0]
            if not isinstance(n, int) or isinstance(n, bool):
                return None
            return s[start : start + max(0, n)]
        return s[start:]
    if name in ("length", "tolower", "toupper", "trim"):
        (s,) = args
        if not isinstance(s, str):
            return None
        if name == "length":
            return len(s)
        return s.lower() if name == "tolower" else s.upper() if name == "toupper" else s.strip()
    a, b = args
    if not (isinstance(a, str) and isinstance(b, str)):
        return None
    if name == "substringof":
        return a in b
    if name == "contains":
        return b in a
    if name == "startswith":
        return a.startswith(b)
    if name == "endswith":
        return a.endswith(b)
    if name == "indexof":
        return a.find(b)
    return a + b  # concat


def _math_fn(name: str, x: Any) -> Any:
    if not _number(x):
        return None
    if name == "round":
        return round(x)
    return math.floor(x) if name == "floor" else math.ceil(x)


def _geo_fn(name: str, a: Any, b: Any) -> Any:
    ga, gb = _geometry(a), _geometry(b)
    if ga is None or gb is None:
        return None
    if name == "geo.distance":
        if isinstance(ga, geo.Point) and isinstance(gb, geo.Point):
            return math.hypot(ga.x - gb.x, ga.y - gb.y)
        raise BadQueryError("geo.distance is between two points")
    if name in ("st_intersects", "geo.intersects"):
        return geo.intersects(ga, gb)
    if name == "st_disjoint":
        return not geo.intersects(ga, gb)
    if name == "st_within":
        return geo.within(ga, gb)
    if name == "st_contains":
        return geo.within(gb, ga)
    return geo.equals(ga, gb)  # st_equals


def call(name: str, args: list[Any]) -> Any:
    if name.startswith(("st_", "geo.")):
        return _geo_fn(name, *args)
    if name in ("round", "floor", "ceiling"):
        return _math_fn(name, args[0])
    return _string_fn(name, args)


def _arith(op: ast._BinOpToken, a: Any, b: Any) -> Any:
    if not (_number(a) and _number(b)):
        return None
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b
    if b == 0:
        return None
    if isinstance(op, ast.Div):
        return a / b if isinstance(a, float) or isinstance(b, float) else a // b
    return a % b


def _product(lists: list[list[Any]]) -> list[list[Any]]:
    combos: list[list[Any]] = [[]]
    for values in lists:
        combos = [[*c, v] for c in combos for v in values][:1000]  # paths through sets: bounded
    return combos


def _descend(value: Any, names: Sequence[str]) -> Any:
    for name in names:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


class Compiler:
    """Compiles AST nodes against an entity kind, with ``graph`` for navigation paths."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def path(self, names: tuple[str, ...], kind: Kind) -> Values:
        head, rest = names[0], names[1:]
        if head in ("id", "@iot.id"):
            if rest:
                raise BadQueryError("id has no parts")
            return lambda e: [e.id]
        if head in PROPERTIES[kind]:
            return lambda e: [_descend(e.props.get(head), rest)]
        nav = NAVIGATION[kind].get(head)
        if nav is None:
            raise BadQueryError(
                f"a {kind.value} has no property {head[:40]!r}; it has id, "
                + ", ".join((*PROPERTIES[kind], *NAVIGATION[kind]))
            )
        if nav.target is Kind.OBSERVATION:
            raise BadQueryError(
                f"conditions cannot reach Observations from a {kind.value}; query Observations"
            )
        if not rest:
            raise BadQueryError(f"{head} is an entity: name one of its properties ({head}/name)")
        inner = self.path(rest, nav.target)
        graph = self.graph
        return lambda e: [v for r in graph.related(e, head) for v in inner(r)] or [None]

    def values(self, node: Any, kind: Kind) -> Values:
        names = path_of(node)
        if names is not None:
            return self.path(names, kind)
        if isinstance(node, ast._Literal) and not isinstance(node, ast.List):
            value = literal_value(node)
            return lambda e: [value]
        if isinstance(node, ast.BinOp):
            left, right, op = self.values(node.left, kind), self.values(node.right, kind), node.op
            return lambda e: [_arith(op, a, b) for a in left(e) for b in right(e)]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.values(node.operand, kind)
            return lambda e: [-v if _number(v) else None for v in inner(e)]
        if isinstance(node, ast.Call):
            name = ".".join((*node.func.namespace, node.func.name))
            args = [self.values(a, kind) for a in node.args]
            return lambda e: [call(name, combo) for combo in _product([a(e) for a in args])]
        if isinstance(node, ast.Compare | ast.BoolOp | ast.UnaryOp):
            predicate = self.predicate(node, kind)
            return lambda e: [predicate(e)]
        raise BadQueryError(f"{type(node).__name__} is not supported in $filter here")

    def predicate(self, node: Any, kind: Kind) -> Predicate:
        if isinstance(node, ast.BoolOp):
            left, right = self.predicate(node.left, kind), self.predicate(node.right, kind)
            if isinstance(node.op, ast.And):
                return lambda e: left(e) and right(e)
            return lambda e: left(e) or right(e)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.predicate(node.operand, kind)
            return lambda e: not inner(e)
        if isinstance(node, ast.Compare):
            lhs = self.values(node.left, kind)
            op = node.comparator
            if isinstance(op, ast.In):
                if not isinstance(node.right, ast.List):
                    raise BadQueryError("'in' takes a list: name in ('a', 'b')")
                items = [literal_value(v) for v in node.right.val]
                return lambda e: any(compare(ast.Eq(), a, b) for a in lhs(e) for b in items)
            rhs = self.values(node.right, kind)
            return lambda e: any(compare(op, a, b) for a in lhs(e) for b in rhs(e))
        values = self.values(node, kind)
        return lambda e: any(v is True for v in values(e))

    def sort_key(self, keys: Sequence[OrderKey], kind: Kind) -> Callable[[Entity], tuple[Any, ...]]:
        """A key for ``sorted`` (descending keys are reversed by rank inversion), ties by id."""
        parts = [(self.path(k.path, kind), k.descending) for k in keys]

        def key(e: Entity) -> tuple[Any, ...]:
            out: list[Any] = []
            for values, descending in parts:
                ranked = _rank(values(e)[0])
                out.append(_Reversed(ranked) if descending else ranked)
            out.append(e.id)
            return tuple(out)

        return key


def _rank(value: Any) -> tuple[int, Any]:
    """Values of one type order among themselves; types in a fixed order, null first."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if _number(value):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, repr(value))


@dataclass(frozen=True, slots=True)
class _Reversed:
    value: tuple[int, Any]

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)
