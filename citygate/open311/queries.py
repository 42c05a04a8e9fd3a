"""The public reads' query parameters, checked: every problem a 400 that names the parameter.

``GET requests``: ``service_request_id`` (comma-separated; overrides the rest, as the spec
says), ``service_code`` (comma-separated, or repeated), ``status`` (``open``, ``closed``),
``start_date`` / ``end_date`` (RFC 3339 with offset; by default the most recent 90 days, and
never a longer range), the ``page`` / ``page_size`` extension and ``extensions=true`` (the
history as ``notes``). ``GET servicerequestupdates``: ``start_date`` / ``end_date`` (by
default the last day) and the pages. Parameters the spec does not define are ignored, as a
GeoReport server must tolerate them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from citygate.contract.rfc3339 import parse_rfc3339_ns
from citygate.open311.errors import Open311Error
from citygate.open311.settings import Open311Settings, OpenClosed

MAX_PAGE = 1_000_000
_OPEN_CLOSED: Final[tuple[OpenClosed, ...]] = ("open", "closed")
_ID: Final = re.compile(r"[0-9]{1,18}")
_NS_MS = 1_000_000

Params = dict[str, list[str]]


def params_of(items: Iterable[tuple[str, str]]) -> Params:
    out: Params = {}
    for k, v in items:
        out.setdefault(k, []).append(v)
    return out


@dataclass(frozen=True, slots=True)
class Page:
    number: int  # from 1
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


@dataclass(frozen=True, slots=True)
class RequestQuery:
    ids: tuple[int, ...] | None  # set: only these, every other filter ignored
    codes: tuple[str, ...] | None  # None: every service
    statuses: tuple[OpenClosed, ...] | None  # None: both
    start_ms: int
    end_ms: int  # exclusive
    page: Page
    extensions: bool


@dataclass(frozen=True, slots=True)
class UpdatesQuery:
    start_ms: int
    end_ms: int  # exclusive
    page: Page


def one(params: Params, name: str) -> str | None:
    """A parameter's value (None when absent or empty), or 400 when given twice."""
    values = params.get(name, [])
    if len(values) > 1:
        raise Open311Error(400, f"{name} is given more than once")
    return values[0] if values and values[0] != "" else None


def check_jurisdiction(given: str | None, settings: Open311Settings) -> None:
    """404 for a jurisdiction this endpoint does not serve (it serves one: the parameter may be left out)."""
    if given is not None and settings.jurisdiction_id is not None and given != settings.jurisdiction_id:
        raise Open311Error(
            404, f"jurisdiction_id was not found; this endpoint serves {settings.jurisdiction_id}"
        )


def request_query(
    params: Params, settings: Open311Settings, known_codes: Iterable[str], now_ms: int
) -> RequestQuery:
    ext = one(params, "extensions")
    if ext not in (None, "true", "false"):
        raise Open311Error(400, "extensions must be true or false")
    page = _page(params, settings)
    ids_s = one(params, "service_request_id")
    if ids_s is not None:
        ids = _ids(ids_s, settings.max_ids)
        return RequestQuery(ids, None, None, 0, 0, page, ext == "true")
    codes = _list(params, "service_code")
    known = set(known_codes)
    for c in codes or ():
        if c not in known:
            raise Open311Error(400, f"service_code {c[:64]!r} is not a service here (see services.json)")
    statuses = _list(params, "status")
    for s in statuses or ():
        if s not in ("open", "closed"):
            raise Open311Error(400, "status must be open, closed or both (comma-separated)")
    wanted = tuple(s for s in _OPEN_CLOSED if statuses is None or s in statuses)
    start, end = _range(params, settings.max_range_s, settings.max_range_s, now_ms)
    return RequestQuery(None, codes, wanted, start, end, page, ext == "true")


def updates_query(params: Params, settings: Open311Settings, now_ms: int) -> UpdatesQuery:
    start, end = _range(params, settings.updates_default_range_s, settings.max_range_s, now_ms)
    return UpdatesQuery(start, end, _page(params, settings))


def _list(params: Params, name: str) -> tuple[str, ...] | None:
    values = [x.strip() for v in params.get(name, []) for x in v.split(",")]
    values = [v for v in values if v]
    return tuple(dict.fromkeys(values)) if values else None


def _ids(s: str, limit: int) -> tuple[int, ...]:
    parts = [p.strip() for p in s.split(",") if p.strip()]
    if not parts or any(_ID.fullmatch(p) is None for p in parts):
        raise Open311Error(400, "service_request_id must be request ids separated by commas")
    if len(parts) > limit:
        raise Open311Error(400, f"service_request_id names more than {limit} requests")
    return tuple(dict.fromkeys(int(p) for p in parts))


def _page(params: Params, settings: Open311Settings) -> Page:
    number = _int(params, "page", 1, MAX_PAGE, 1)
    size = _int(params, "page_size", 1, settings.max_page_size, settings.default_page_size)
    return Page(number, size)


def _int(params: Params, name: str, low: int, high: int, default: int) -> int:
    s = one(params, name)
    if s is None:
        return default
    if not s.isascii() or not s.isdigit() or len(s) > 7 or not low <= int(s) <= high:
        raise Open311Error(400, f"{name} must be a whole number from {low} to {high}")
    return int(s)


def _range(params: Params, default_s: float, max_s: float, now_ms: int) -> tuple[int, int]:
    start, end = _date(params, "start_date"), _date(params, "end_date")
    default_ms, max_ms = int(default_s * 1000), int(max_s * 1000)
    if start is None and end is None:
        end = now_ms + 1
        start = end - default_ms
    elif start is None:
        assert end is not None
        start = end - default_ms
    elif end is None:
        end = start + default_ms
    if end <= start:
        raise Open311Error(400, "end_date must be after start_date")
    if end - start > max_ms:
        raise Open311Error(400, f"start_date to end_date may span at most {max_s / 86400:g} days")
    return start, end


def _date(params: Params, name: str) -> int | None:
    s = one(params, name)
    if s is None:
        return None
    ns = parse_rfc3339_ns(s)
    if ns is None:
        raise Open311Error(
            400,
            f"{name} must be a date-time with offset such as 2026-01-01T00:00:00Z (in a URL, write + as %2B)",
        )
    return ns // _NS_MS
