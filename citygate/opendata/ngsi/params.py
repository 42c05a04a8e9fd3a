"""The query parameters and the ``Accept`` header of the NGSI-LD API, checked before anything is read.

Every parameter the API does not implement is refused by name (400) rather than ignored:
a client asking for ``q=`` or ``geoQ=`` and getting every entity back unfiltered would
take them for the answer to its question.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal

from starlette.datastructures import QueryParams

from citygate.opendata.ngsi.forms import Form
from citygate.opendata.ngsi.problems import NgsiProblem, bad_data

DEFAULT_LIMIT: Final = 20  # the NGSI-LD API's default page size
MAX_LIMIT: Final = 1000
MAX_OFFSET: Final = 1_000_000
MAX_LIST: Final = 100  # names or ids in one type=, id= or attrs= list
MAX_ITEM_LEN: Final = 512

# A term (type or attribute short name) or an absolute URI (an expanded name, an entity id).
_TERM: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`,]+")

QUERY_PARAMS: Final = frozenset({"type", "id", "attrs", "options", "format", "limit", "offset", "count"})
ENTITY_PARAMS: Final = frozenset({"type", "attrs", "options", "format"})

_FORMATS: Final[dict[str, Form]] = {
    "normalized": "normalized",
    "keyValues": "keyValues",
    "simplified": "keyValues",
    "concise": "concise",
}

Media = Literal["json", "ld"]
_MEDIA: Final[dict[str, Media]] = {
    "application/json": "json",
    "application/ld+json": "ld",
    "application/*": "json",
    "*/*": "json",
}


@dataclass(frozen=True, slots=True)
class Selection:
    """What both routes take: type filter, attribute filter, representation."""

    types: tuple[str, ...] | None
    attrs: frozenset[str] | None
    form: Form


@dataclass(frozen=True, slots=True)
class EntityQuery:
    selection: Selection
    ids: tuple[str, ...] | None
    limit: int
    offset: int
    count: bool


def is_uri(text: str) -> bool:
    return len(text) <= MAX_ITEM_LEN and _URI.fullmatch(text) is not None


def _single(params: QueryParams, allowed: Collection[str]) -> dict[str, str]:
    unknown = sorted({k for k in params if k not in allowed})
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise bad_data(
            f"parameter {shown} is not supported by this read-only API; it takes {', '.join(sorted(allowed))}"
        )
    out: dict[str, str] = {}
    for key in params:
        values = params.getlist(key)
        if len(values) > 1:
            raise bad_data(f"{key} is given {len(values)} times; give one comma-separated list")
        out[key] = values[0]
    return out


def _names(raw: str, what: str, *, uris: bool) -> tuple[str, ...]:
    items = [s.strip() for s in raw.split(",")]
    if not raw or any(not s for s in items):
        raise bad_data(f"{what} is an empty name in a comma-separated list")
    if len(items) > MAX_LIST:
        raise bad_data(f"{what} lists {len(items)} items; at most {MAX_LIST}")
    for s in items:
        term = len(s) <= MAX_ITEM_LEN and _TERM.fullmatch(s) is not None
        if not (term or (uris and is_uri(s))):
            kind = "a name or an absolute URI" if uris else "an absolute URI"
            raise bad_data(f"{what} {s[:80]!r} is not {kind}")
    return tuple(dict.fromkeys(items))  # in order, each once


def _ids(raw: str) -> tuple[str, ...]:
    items = [s.strip() for s in raw.split(",")]
    if not raw or any(not s for s in items):
        raise bad_data("id is an empty entity id in a comma-separated list")
    if len(items) > MAX_LIST:
        raise bad_data(f"id lists {len(items)} entity ids; at most {MAX_LIST}")
    for s in items:
        if not is_uri(s):
            raise bad_data(f"id {s[:80]!r} is not a URI (entity ids look like urn:ngsi-ld:<Type>:<name>)")
    return tuple(dict.fromkeys(items))


def _form(p: dict[str, str]) -> Form:
    chosen: set[Form] = set()
    if "options" in p:
        for opt in (s.strip() for s in p["options"].split(",")):
            if opt == "sysAttrs":
                raise bad_data("options=sysAttrs is not supported: the export keeps no createdAt/modifiedAt")
            if opt not in ("keyValues", "normalized", "concise"):
                raise bad_data(f"options {opt[:40]!r} is not one of keyValues, normalized, concise")
            chosen.add(_FORMATS[opt])
    if "format" in p:
        fmt = _FORMATS.get(p["format"])
        if fmt is None:
            names = ", ".join(_FORMATS)
            raise bad_data(f"format {p['format'][:40]!r} is not one of {names}")
        chosen.add(fmt)
    if len(chosen) > 1:
        raise bad_data(f"options/format ask for two representations at once: {', '.join(sorted(chosen))}")
    return chosen.pop() if chosen else "normalized"


def _selection(p: dict[str, str]) -> Selection:
    types = _names(p["type"], "type", uris=True) if "type" in p else None
    attrs = frozenset(_names(p["attrs"], "attrs", uris=False)) if "attrs" in p else None
    return Selection(types, attrs, _form(p))


def _int(p: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = p.get(key)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise bad_data(f"{key} must be a whole number {low}..{high}")
    value = int(raw)
    if not low <= value <= high:
        raise bad_data(f"{key} must be {low}..{high}, not {value}")
    return value


def parse_query(params: QueryParams) -> EntityQuery:
    """``GET /entities``: type, id, attrs, options/format, limit, offset, count."""
    p = _single(params, QUERY_PARAMS)
    selection = _selection(p)
    ids = _ids(p["id"]) if "id" in p else None
    if selection.types is None and ids is None and selection.attrs is None:
        raise bad_data("a query needs type, id or attrs (this API does not list every entity at once)")
    count_raw = p.get("count", "false")
    if count_raw not in ("true", "false"):
        raise bad_data("count must be true or false")
    count = count_raw == "true"
    limit = _int(p, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
    if limit == 0 and not count:
        raise bad_data("limit=0 is only for count=true (the count without the entities)")
    return EntityQuery(selection, ids, limit, _int(p, "offset", 0, 0, MAX_OFFSET), count)


def parse_entity(params: QueryParams) -> Selection:
    """``GET /entities/{id}``: type, attrs, options/format."""
    return _selection(_single(params, ENTITY_PARAMS))


def negotiate(accept: str | None) -> Media:
    """JSON (context in a Link header) or JSON-LD (context in the body), by the Accept header's q-values."""
    if not accept or not accept.strip():
        return "json"
    best: tuple[float, Media] | None = None
    for part in accept.split(",")[:32]:
        media, *rest = (s.strip() for s in part.split(";"))
        q = 1.0
        for r in rest:
            key, _, value = r.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind = _MEDIA.get(media.lower())
        if kind is not None and q > 0 and (best is None or q > best[0]):
            best = (q, kind)
    if best is None:
        raise NgsiProblem(406, "this API answers application/json or application/ld+json only")
    return best[1]
