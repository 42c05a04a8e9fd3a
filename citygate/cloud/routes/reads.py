"""The read API for downstream services: a device's or a site's series, raw or aggregated.

Each token has at most ``read_concurrency_per_token`` reads in flight (429 with
``Retry-After`` beyond), and at most ``read_concurrency`` reads of all tokens are
fetched and rendered at once (the others wait). The database's answer is read in
chunks and cut at ``max_query_points`` rows over all its series
(:mod:`citygate.cloud.readclient`); the body is rendered in pieces with the event loop
running in between, so a large answer never stalls the gateway batches on that loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from citygate.cloud.influxql import Aggregate
from citygate.cloud.readclient import SeriesReader
from citygate.cloud.reads import (
    SeriesQuery,
    SeriesResult,
    TokenReadLimiter,
    build_query,
    render_pieces,
)
from citygate.cloud.routes.deps import Reader, State
from citygate.cloud.routes.fleet import _require_influxql
from citygate.cloud.state import CloudState
from citygate.contract.profiles import DeviceProfile
from citygate.errors import ReadError, TooManyReads

router = APIRouter(tags=["read"])

# Seconds a client told 429 (too many reads of its token in flight) should wait.
READ_RETRY_AFTER_S = 1

Start = Annotated[
    str | None, Query(description="RFC 3339 with offset, or epoch ns; default end - 1 h", max_length=40)
]
End = Annotated[
    str | None, Query(description="RFC 3339 with offset, or epoch ns (exclusive); default now", max_length=40)
]
Fields = Annotated[str | None, Query(description="Comma-separated field names; default all", max_length=1000)]
Agg = Annotated[Aggregate | None, Query(description="mean, min, max, last or count per interval")]
Interval = Annotated[int | None, Query(description="Aggregation interval in seconds")]
Format = Annotated[Literal["json", "csv"], Query()]
TimeFormat = Annotated[Literal["rfc3339", "ns"], Query(description="Time column: RFC 3339 or epoch ns")]

_ERRORS: dict[int | str, dict[str, str]] = {
    422: {
        "description": "Parameters that make no query: unknown field, bad time, a range or size over a limit"
    },
    429: {"description": "This token has its share of reads in flight; retry after Retry-After seconds"},
}

# Both series reads: JSON (the response model) or CSV, and the errors above.
_SERIES_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}, **_ERRORS}


@dataclass(frozen=True, slots=True)
class _SeriesParams:
    """The query parameters both series reads take."""

    start: str | None
    end: str | None
    fields: str | None
    agg: Aggregate | None
    interval_s: int | None
    format: str
    time_format: str


def _series_params(
    start: Start = None,
    end: End = None,
    fields: Fields = None,
    agg: Agg = None,
    interval_s: Interval = None,
    format: Format = "json",
    time_format: TimeFormat = "rfc3339",
) -> _SeriesParams:
    return _SeriesParams(start, end, fields, agg, interval_s, format, time_format)


SeriesParams = Annotated[_SeriesParams, Depends(_series_params)]


def read_limiter(request: Request) -> TokenReadLimiter:
    limiter: TokenReadLimiter = request.app.state.read_limiter
    return limiter


async def _run(
    request: Request,
    state: CloudState,
    token: str,
    query: SeriesQuery,
    device_id: str | None,
    p: _SeriesParams,
) -> Response:
    reader: SeriesReader = request.app.state.series_reader
    slots: anyio.CapacityLimiter = request.app.state.read_slots
    try:
        with read_limiter(request).hold(token):
            async with slots:
                got = await reader.read(
                    query, epoch="ns" if p.time_format == "ns" else None, device_id=device_id
                )
                pieces, media_type = render_pieces(query, got, p.format)
                body: list[bytes] = []
                for piece in pieces:
                    body.append(piece)
                    await anyio.sleep(0)  # gateway batches go in between pieces
    except TooManyReads as e:
        state.metrics.reads_refused.labels("too_many_in_flight").inc()
        raise HTTPException(
            429,
            f"this token already has {state.settings.read_concurrency_per_token} reads in flight",
            headers={"Retry-After": str(READ_RETRY_AFTER_S)},
        ) from e
    return Response(content=b"".join(body), media_type=media_type)


def _query(
    state: CloudState,
    profile: DeviceProfile,
    tags: dict[str, str],
    group: bool,
    p: _SeriesParams,
    devices: int = 1,
) -> SeriesQuery:
    s = state.settings
    try:
        return build_query(
            profile,
            tag_filters=tags,
            fields=p.fields,
            start=p.start,
            end=p.end,
            aggregate=p.agg,
            interval_s=p.interval_s,
            group_by_device=group,
            max_points=s.max_query_points,
            now_ns=time.time_ns(),
            max_raw_range_s=s.max_raw_range_s,
            devices=devices,
        )
    except ReadError as e:
        raise HTTPException(e.status, e.detail) from e


@router.get(
    "/v1/devices/{device_id}/series",
    response_model=SeriesResult,
    responses=_SERIES_RESPONSES,
)
async def device_series(
    device_id: str,
    request: Request,
    reader: Reader,
    state: State,
    params: SeriesParams,
) -> Response:
    """One device's readings over [start, end), raw or aggregated."""
    _require_influxql(state)
    record = state.inventory.validator.inventory.get(device_id)
    if record is None:
        raise HTTPException(404, "no such device in the inventory")
    profile = state.registry.find(record.profile, record.profile_version)
    if profile is None:
        raise HTTPException(404, "the device's profile is not known to this service")
    q = _query(state, profile, {"device_id": device_id}, False, params)
    return await _run(request, state, reader, q, device_id, params)


@router.get(
    "/v1/sites/{site}/series",
    response_model=SeriesResult,
    responses=_SERIES_RESPONSES,
)
async def site_series(
    site: str,
    request: Request,
    reader: Reader,
    state: State,
    profile: Annotated[str, Query(description="Profile (sensor type) whose series to read")],
    params: SeriesParams,
    profile_version: int | None = None,
) -> Response:
    """Every device of one profile at one site, one series per device."""
    _require_influxql(state)
    inventory = state.inventory.validator.inventory
    devices = sum(1 for r in inventory.values() if r.site == site and r.profile == profile)
    if not devices:
        raise HTTPException(404, "no device of that profile at that site in the inventory")
    found = (
        state.registry.find(profile, profile_version)
        if profile_version is not None
        else (state.registry.latest(profile) if profile in state.registry else None)
    )
    if found is None:
        raise HTTPException(404, "unknown profile or version")
    q = _query(state, found, {"site": site}, True, params, devices)
    return await _run(request, state, reader, q, None, params)
