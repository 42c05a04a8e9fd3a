"""The query options (``$top $skip $count $orderby $select $expand $filter``) and the ``$filter`` parser.

``$filter`` is parsed by ``odata-query``'s lexer and parser into its AST; what the AST means
is ours (:mod:`.filters` in memory, :mod:`.observations` as InfluxQL). The parser's own
function table is OData's; STA adds the ``st_*`` spatial functions and ``substringof``, so
each parse uses our table instead (:data:`FUNCTIONS`), and a function outside it is a 400
that lists the ones served. Every option is checked against the entity it applies to
before any lookup: an unknown name, a bad number or a malformed expression is a 400 naming
it, never a 5xx. Sizes are bounded before parsing (text) and after (nodes, depth), so
that nothing downstream recurses without limit.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from odata_query import ast
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from citygate.opendata.sta.entities import NAVIGATION, PROPERTIES, Kind
from citygate.opendata.sta.errors import BadQueryError

MAX_FILTER_CHARS: Final = 4000
MAX_FILTER_NODES: Final = 400
MAX_FILTER_DEPTH: Final = 40
MAX_OPTION_CHARS: Final = 8000
MAX_LIST_ITEMS: Final = 64
OPTIONS: Final = ("$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter", "$skiptoken")

# name -> (min args, max args). Evaluated by .filters (and time/result comparisons by .observations).
FUNCTIONS: Final[dict[str, tuple[int, int]]] = {
    "substringof": (2, 2),
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "length": (1, 1),
    "indexof": (2, 2),
    "substring": (2, 3),
    "tolower": (1, 1),
    "toupper": (1, 1),
    "trim": (1, 1),
    "concat": (2, 2),
    "round": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "geo.intersects": (2, 2),
    "geo.distance": (2, 2),
    "st_intersects": (2, 2),
    "st_within": (2, 2),
    "st_contains": (2, 2),
    "st_disjoint": (2, 2),
    "st_equals": (2, 2),
}
SELF_NAMES: Final = {"id": "id", "@iot.id": "id", "selfLink": "selfLink", "@iot.selfLink": "selfLink"}


@dataclass(frozen=True, slots=True)
class OrderKey:
    path: tuple[str, ...]
    descending: bool


@dataclass(slots=True)
class Options:
    """The options of one collection or entity (top level, or inside an $expand item)."""

    top: int | None = None
    skip: int = 0
    count: bool = False
    orderby: tuple[OrderKey, ...] = ()
    select: tuple[str, ...] | None = None
    expand: dict[str, Options] = field(default_factory=dict)
    filter: ast._Node | None = None
    # Observations only, in our own @iot.nextLinks: continue at (time ns, past n at that time).
    skiptoken: tuple[int, int] | None = None
    raw: dict[str, str] = field(default_factory=dict)  # as given, for @iot.nextLink


# -- $filter ----------------------------------------------------------------------------------


def _function_call(self: ODataParser, func: ast.Identifier, args: list[ast._Node]) -> ast.Call:
    name = ".".join((*func.namespace, func.name))
    arity = FUNCTIONS.get(name)
    if arity is None:
        raise BadQueryError(f"unknown or unsupported function {name[:40]!r}; served: {', '.join(FUNCTIONS)}")
    if not arity[0] <= len(args) <= arity[1]:
        want = str(arity[0]) if arity[0] == arity[1] else f"{arity[0]} to {arity[1]}"
        raise BadQueryError(f"{name} takes {want} arguments, not {len(args)}")
    return ast.Call(func, args)


def _walk(node: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    """Every AST node with its depth, without recursion."""
    stack = [(node, depth)]
    while stack:
        n, d = stack.pop()
        yield n, d
        for child in _children(n):
            stack.append((child, d + 1))


def _children(n: Any) -> Iterable[Any]:
    if isinstance(n, ast.BoolOp | ast.Compare | ast.BinOp):
        return (n.left, n.right)
    if isinstance(n, ast.UnaryOp):
        return (n.operand,)
    if isinstance(n, ast.Call):
        return tuple(n.args)
    if isinstance(n, ast.Attribute):
        return (n.owner,)
    if isinstance(n, ast.List):
        return tuple(n.val)
    return ()


def parse_filter(text: str) -> ast._Node:
    if len(text) > MAX_FILTER_CHARS:
        raise BadQueryError(f"$filter is at most {MAX_FILTER_CHARS} characters")
    if not text.strip():
        raise BadQueryError("$filter is empty")
    parser = ODataParser()
    # sly builds a parser's grammar from its class body, so it cannot be subclassed to change
    # one helper: this parser instance gets our function table instead of OData's.
    parser._function_call = types.MethodType(_function_call, parser)  # type: ignore[method-assign]
    try:
        tree = parser.parse(ODataLexer().tokenize(text))
    except BadQueryError:
        raise
    except ODataException as e:
        raise BadQueryError(f"$filter does not parse: {str(e)[:200]}") from None
    except (ValueError, TypeError, IndexError, AttributeError, KeyError) as e:
        raise BadQueryError(f"$filter does not parse ({type(e).__name__})") from None
    if not isinstance(tree, ast._Node):
        raise BadQueryError("$filter does not parse: it is empty")
    for count, (node, depth) in enumerate(_walk(tree), 1):
        if count > MAX_FILTER_NODES or depth > MAX_FILTER_DEPTH:
            raise BadQueryError(
                f"$filter is too complex (at most {MAX_FILTER_NODES} terms, {MAX_FILTER_DEPTH} deep)"
            )
        if isinstance(node, ast.CollectionLambda | ast.Lambda):
            raise BadQueryError("any() and all() are not supported in $filter")
        if isinstance(node, ast.Duration | ast.GUID | ast.Time):
            raise BadQueryError("duration, time-of-day and GUID literals are not supported in $filter")
    return tree


def path_of(node: Any) -> tuple[str, ...] | None:
    """``Thing/properties/site`` as its names, or None if ``node`` is not a property path."""
    tail: list[str] = []
    while isinstance(node, ast.Attribute):
        tail.append(node.attr)
        node = node.owner
    if not isinstance(node, ast.Identifier):
        return None
    return (*node.namespace, node.name, *reversed(tail))


# -- splitting option texts -------------------------------------------------------------------


def split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside parentheses and single-quoted strings."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, c in enumerate(text):
        if c == "'":
            quoted = not quoted  # '' inside a string toggles twice
        elif quoted:
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise BadQueryError(f"unbalanced ')' in {text[:60]!r}")
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise BadQueryError(f"unbalanced parentheses or quotes in {text[:60]!r}")
    parts.append(text[start:])
    return parts


def _int(name: str, text: str, limit: int = 10**9) -> int:
    t = text.strip()
    if not t.isascii() or not t.isdigit() or len(t) > 19 or int(t) > limit:
        raise BadQueryError(f"{name} must be a whole number 0..{limit}, not {text[:20]!r}")
    return int(t)


def _names(text: str, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise BadQueryError(f"{what} is a comma-separated list of names")
    if len(items) > MAX_LIST_ITEMS:
        raise BadQueryError(f"{what} has at most {MAX_LIST_ITEMS} items")
    return items


def _select(kind: Kind, text: str) -> tuple[str, ...]:
    allowed = {*PROPERTIES[kind], *NAVIGATION[kind]}
    out: list[str] = []
    for name in _names(text, "$select"):
        name = SELF_NAMES.get(name, name)
        if name not in allowed and name not in SELF_NAMES.values():
            raise BadQueryError(
                f"a {kind.value} has no property {name[:40]!r} to $select; it has id, selfLink, "
                + ", ".join(sorted(allowed))
            )
        if name not in out:
            out.append(name)
    return tuple(out)


def _orderby(kind: Kind, text: str) -> tuple[OrderKey, ...]:
    keys: list[OrderKey] = []
    for item in _names(text, "$orderby"):
        words = item.split()
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise BadQueryError(f"$orderby items are 'property [asc|desc]', not {item[:60]!r}")
        path = tuple(SELF_NAMES.get(p, p) for p in words[0].split("/"))
        head = path[0]
        nav = NAVIGATION[kind].get(head)
        if not (
            head in PROPERTIES[kind] or head == "id" or (nav is not None and not nav.many and len(path) > 1)
        ):
            raise BadQueryError(
                f"a {kind.value} cannot be ordered by {words[0][:40]!r}; use id or one of "
                + ", ".join(PROPERTIES[kind])
            )
        keys.append(OrderKey(path, len(words) == 2 and words[1].lower() == "desc"))
    return tuple(keys)


def _expand(kind: Kind, text: str, depth_left: int, into: dict[str, Options]) -> None:
    for item in split_top(text, ","):
        item = item.strip()
        if not item:
            raise BadQueryError("$expand is a comma-separated list of navigation paths")
        opts_text: str | None = None
        if "(" in item:
            head, _, rest = item.partition("(")
            if not rest.endswith(")"):
                raise BadQueryError(f"$expand item {item[:60]!r}: options go in (...) at its end")
            item, opts_text = head.strip(), rest[:-1]
        names = item.split("/")
        here_kind, here = kind, into
        for i, name in enumerate(names):
            nav = NAVIGATION[here_kind].get(name)
            if nav is None:
                raise BadQueryError(
                    f"a {here_kind.value} has no navigation property {name[:40]!r} to $expand; "
                    f"it has {', '.join(NAVIGATION[here_kind])}"
                )
            if i >= depth_left:
                raise BadQueryError(
                    "$expand nests too deep (at most [cloud.sta] max_expand_depth levels, nested "
                    "$expand included); read deeper levels through their own URLs"
                )
            last = i == len(names) - 1
            existing = here.get(name)
            if last and opts_text is not None:
                parsed = parse_options(nav.target, _nested(opts_text), depth_left - i - 1, nested=True)
                if existing is not None and existing.raw:
                    raise BadQueryError(f"{name} is expanded twice with options")
                if existing is not None:
                    parsed.expand.update(existing.expand)
                here[name] = parsed
            elif existing is None:
                here[name] = Options()
            here_kind, here = nav.target, here[name].expand


def _nested(text: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for part in split_top(text, ";"):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise BadQueryError(f"nested options are $name=value separated by ';', not {part[:60]!r}")
        items.append((key.strip(), value))
    return items


def _skiptoken(kind: Kind, text: str, nested: bool) -> tuple[int, int]:
    if kind is not Kind.OBSERVATION or nested:
        raise BadQueryError("$skiptoken is only in the @iot.nextLinks of Observations; follow those as given")
    t, dot, n = text.partition(".")
    if not dot:
        raise BadQueryError("$skiptoken is not one of ours; follow the @iot.nextLink as given")
    return _int("$skiptoken", t, 2**63 - 1), _int("$skiptoken", n)


def parse_options(
    kind: Kind, items: Sequence[tuple[str, str]], expand_depth: int, *, nested: bool = False
) -> Options:
    """The options among ``items`` (query parameters; others than $-options are ignored)."""
    opts = Options()
    seen: set[str] = set()
    for key, value in items:
        if not key.startswith("$"):
            continue  # custom options (OData) are allowed and mean nothing here
        if key not in OPTIONS:
            raise BadQueryError(f"unknown query option {key[:30]!r}; served: {', '.join(OPTIONS)}")
        if key in seen:
            raise BadQueryError(f"{key} is given twice")
        if len(value) > MAX_OPTION_CHARS:
            raise BadQueryError(f"{key} is at most {MAX_OPTION_CHARS} characters")
        seen.add(key)
        opts.raw[key] = value
        if key == "$top":
            opts.top = _int(key, value)
        elif key == "$skip":
            opts.skip = _int(key, value)
        elif key == "$count":
            if value.strip().lower() not in ("true", "false"):
                raise BadQueryError("$count is true or false")
            opts.count = value.strip().lower() == "true"
        elif key == "$select":
            opts.select = _select(kind, value)
        elif key == "$orderby":
            opts.orderby = _orderby(kind, value)
        elif key == "$skiptoken":
            opts.skiptoken = _skiptoken(kind, value, nested)
        elif key == "$expand":
            _expand(kind, value, expand_depth, opts.expand)
        else:
            opts.filter = parse_filter(value)
    return opts
