"""The router: ``GET /sta/v1.1[/<resource path>]`` (docs/SENSORTHINGS.md).

A reader or operator token (``Authorization: Bearer``) sees every profile that is not
zoned; without one, a caller sees ``[cloud.opendata] public_profiles`` only, is rate limited
per client address and is answered from the anonymous cache (:mod:`.cache`). A token that is
given but wrong is a 401, never anonymous access. Zoned profiles (parking) are not in the
SensorThings API at all. Errors are STA error documents ``{"code", "type", "message"}``;
the database being down is the cloud's own 503.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from citygate.cloud.ratelimit import client_key
from citygate.cloud.readclient import SeriesReader
from citygate.cloud.reads import Collected, TokenReadLimiter
from citygate.cloud.routes.deps import State
from citygate.cloud.state import CloudState
from citygate.errors import TooManyReads
from citygate.opendata.policy import access
from citygate.opendata.sta.cache import Cached
from citygate.opendata.sta.errors import StaError
from citygate.opendata.sta.observations import Runner, StaQuery
from citygate.opendata.sta.render import Links
from citygate.opendata.sta.runtime import ModelHolder, runtime
from citygate.opendata.sta.service import Context, View, respond

router = APIRouter(prefix="/sta/v1.1", tags=["sensorthings"])
PREFIX = "/sta/v1.1"
# Seconds a reader told 429 (its token's reads all in flight) should wait, as the read API.
READ_RETRY_AFTER_S = 1


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"code": status, "type": "error", "message": message}, status_code=status, headers=headers
    )


def _runner(app: Any, state: CloudState) -> Runner | None:
    if not state.settings.influxql_enabled:
        return None
    reader: SeriesReader = app.state.series_reader
    slots: anyio.CapacityLimiter = app.state.read_slots

    async def run(query: StaQuery) -> Collected:
        async with slots:  # shared with the series reads: at most read_concurrency at once
            return await reader.read(query, epoch="ns", device_id=None)

    return run


@dataclass(frozen=True, slots=True)
class _Ask:
    """Everything an answer depends on: the same for every caller of one anonymous cache key."""

    app: Any
    state: CloudState
    models: ModelHolder
    path: str
    items: list[tuple[str, str]]
    reader: bool
    base: str

    async def answer(self) -> Cached:
        state = self.state
        model = self.models.get(state)  # now, not when the first caller asked
        od = state.settings.opendata
        allowed = frozenset(p for p in model.profiles if access(od, p, reader=self.reader) == "raw")
        ctx = Context(
            state.settings.sta,
            View(model, allowed),
            Links(self.base),
            _runner(self.app, state),
            time.time_ns(),
        )
        got = await respond(ctx, self.path, self.items)
        body = got.body.encode() if isinstance(got.body, str) else orjson.dumps(got.body)
        return Cached(body, got.media_type)


@router.get("", summary="The SensorThings API service root", response_model=None)
@router.get("/{resource:path}", summary="A SensorThings resource path", response_model=None)
async def sta(request: Request, state: State, resource: str = "") -> Response:
    """Things, Locations, HistoricalLocations, Datastreams, Sensors, ObservedProperties,
    Observations and FeaturesOfInterest, read-only, with $top $skip $count $orderby $select
    $expand $filter (docs/SENSORTHINGS.md)."""
    settings = state.settings
    if not settings.sta.enabled:
        return _error(404, "the SensorThings API is off here ([cloud.sta] enabled = true turns it on)")
    rt = runtime(request, state)
    authorization = request.headers.get("authorization")
    token = state.tokens.check(authorization, operator=False) if authorization else None  # 401 if wrong
    base = settings.sta.public_url or str(request.base_url).rstrip("/") + PREFIX
    ask = _Ask(
        request.app, state, rt.models, resource, request.query_params.multi_items(), token is not None, base
    )
    try:
        if token is not None:
            limiter: TokenReadLimiter = request.app.state.read_limiter
            try:
                with limiter.hold(token):
                    got = await ask.answer()
            except TooManyReads:
                state.metrics.reads_refused.labels("too_many_in_flight").inc()
                return _error(
                    429,
                    f"this token already has {settings.read_concurrency_per_token} reads in flight",
                    {"Retry-After": str(READ_RETRY_AFTER_S)},
                )
            return Response(got.body, media_type=got.media_type)
        client = client_key(request.client.host if request.client else None)
        decision = rt.limiter.check(client)
        if not decision.allowed:
            return _error(
                429,
                "too many requests from this address; retry after Retry-After seconds",
                decision.headers(),
            )
        got = await rt.cache.get(f"{base}|{resource}?{request.url.query}", ask.answer)
        return Response(got.body, media_type=got.media_type, headers=decision.headers())
    except StaError as e:
        return _error(e.status, e.message)
