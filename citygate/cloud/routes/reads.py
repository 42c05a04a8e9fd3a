"""The read API for downstream services: a device's or a site's series, raw or aggregated."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from citygate.cloud.influxql import Aggregate
from citygate.cloud.reads import ReadError, SeriesQuery, SeriesResult, build_query, collect, to_csv
from citygate.cloud.routes.deps import Reader, State
from citygate.cloud.routes.fleet import _require_influxql
from citygate.cloud.state import CloudState
from citygate.contract.profiles import DeviceProfile

router = APIRouter(tags=["read"])

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


async def _run(
    state: CloudState, query: SeriesQuery, device_id: str | None, fmt: str, time_format: str
) -> Response:
    results = await state.sink.query(query.influxql(), epoch="ns" if time_format == "ns" else None)
    result = collect(results, query, device_id)
    if fmt == "csv":
        return Response(content=to_csv(result), media_type="text/csv")
    return Response(content=result.model_dump_json(), media_type="application/json")


def _query(
    state: CloudState,
    profile: DeviceProfile,
    tags: dict[str, str],
    group: bool,
    fields: str | None,
    start: str | None,
    end: str | None,
    agg: Aggregate | None,
    interval_s: int | None,
) -> SeriesQuery:
    try:
        return build_query(
            profile,
            tag_filters=tags,
            fields=fields,
            start=start,
            end=end,
            aggregate=agg,
            interval_s=interval_s,
            group_by_device=group,
            max_points=state.settings.max_query_points,
            now_ns=time.time_ns(),
        )
    except ReadError as e:
        raise HTTPException(e.status, e.detail) from e


@router.get(
    "/v1/devices/{device_id}/series",
    response_model=SeriesResult,
    responses={200: {"content": {"text/csv": {}}}},
)
async def device_series(
    device_id: str,
    _reader: Reader,
    state: State,
    start: Start = None,
    end: End = None,
    fields: Fields = None,
    agg: Agg = None,
    interval_s: Interval = None,
    format: Format = "json",
    time_format: TimeFormat = "rfc3339",
) -> Response:
    """One device's readings over [start, end), raw or aggregated."""
    _require_influxql(state)
    record = state.inventory.validator.inventory.get(device_id)
    if record is None:
        raise HTTPException(404, "no such device in the inventory")
    profile = state.registry.find(record.profile, record.profile_version)
    if profile is None:
        raise HTTPException(404, "the device's profile is not known to this service")
    q = _query(state, profile, {"device_id": device_id}, False, fields, start, end, agg, interval_s)
    return await _run(state, q, device_id, format, time_format)


@router.get(
    "/v1/sites/{site}/series", response_model=SeriesResult, responses={200: {"content": {"text/csv": {}}}}
)
async def site_series(
    site: str,
    _reader: Reader,
    state: State,
    profile: Annotated[str, Query(description="Profile (sensor type) whose series to read")],
    profile_version: int | None = None,
    start: Start = None,
    end: End = None,
    fields: Fields = None,
    agg: Agg = None,
    interval_s: Interval = None,
    format: Format = "json",
    time_format: TimeFormat = "rfc3339",
) -> Response:
    """Every device of one profile at one site, one series per device."""
    _require_influxql(state)
    inventory = state.inventory.validator.inventory
    if not any(r.site == site and r.profile == profile for r in inventory.values()):
        raise HTTPException(404, "no device of that profile at that site in the inventory")
    found = (
        state.registry.find(profile, profile_version)
        if profile_version is not None
        else (state.registry.latest(profile) if profile in state.registry else None)
    )
    if found is None:
        raise HTTPException(404, "unknown profile or version")
    q = _query(state, found, {"site": site}, True, fields, start, end, agg, interval_s)
    return await _run(state, q, None, format, time_format)
