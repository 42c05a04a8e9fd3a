"""Who is asking: a reader (a reader or operator token) or anyone, rate-limited per address.

A request with a valid bearer token sees every profile the policy serves raw; any other
request is anonymous: it sees only ``public_profiles`` (and the zone aggregates) and takes a
token from its client address's bucket (``public_rate_per_minute``, ``public_burst``), with
the ``RateLimit-*`` headers on every answer. A request with a wrong token takes a token from
the bucket too before it is refused, so guessing tokens is as slow as anything else.

The per-app part (the exporter and the limiter) is made on the first request, not when the
app is built: the series reader it uses exists only once the app's lifespan has started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request

from citygate.cloud.ratelimit import RateLimiter, client_key
from citygate.cloud.routes.deps import State
from citygate.cloud.state import CloudState
from citygate.errors import AuthError
from citygate.opendata.ngsi.exporter import Exporter
from citygate.opendata.ngsi.problems import NONEXISTENT_TENANT, NgsiProblem, not_found

HEADERS_KEY = "ngsi_headers"  # request.state: headers every answer of this request carries


@dataclass(slots=True)
class NgsiParts:
    exporter: Exporter
    limiter: RateLimiter


@dataclass(frozen=True, slots=True)
class Caller:
    exporter: Exporter
    reader: bool


def _parts(request: Request, state: CloudState) -> NgsiParts:
    parts: NgsiParts | None = getattr(request.app.state, "ngsi", None)
    if parts is None:
        od = state.settings.opendata
        slots: anyio.CapacityLimiter = request.app.state.read_slots
        parts = NgsiParts(
            Exporter(state, request.app.state.series_reader, slots),
            RateLimiter(per_minute=od.public_rate_per_minute, burst=od.public_burst),
        )
        request.app.state.ngsi = parts  # one event loop: no other request runs between get and set
    return parts


def caller(request: Request, state: State) -> Caller:
    """The caller, or NgsiProblem: 404 while open data is off, 401 bad token, 429 over the rate."""
    if not state.settings.opendata.enabled:
        raise not_found("open data is not served here ([cloud.opendata] enabled = false)")
    if not state.settings.influxql_enabled:
        raise not_found("the NGSI-LD export needs a store that speaks InfluxQL (influxql_enabled = false)")
    parts = _parts(request, state)
    authorization = request.headers.get("authorization")
    if authorization is not None:
        try:
            state.tokens.check(authorization, operator=False)
        except AuthError as e:
            refused = e
        else:
            return _with_tenant_check(request, Caller(parts.exporter, reader=True))
    else:
        refused = None
    address = client_key(request.client.host if request.client is not None else None)
    decision = parts.limiter.check(address)
    setattr(request.state, HEADERS_KEY, decision.headers())
    if not decision.allowed:
        rate = state.settings.opendata.public_rate_per_minute
        raise NgsiProblem(429, f"more than {rate:g} requests a minute from this address")
    if refused is not None:
        state.metrics.auth_failures.labels(refused.reason).inc()
        raise NgsiProblem(401, refused.detail, headers={"WWW-Authenticate": "Bearer"})
    return _with_tenant_check(request, Caller(parts.exporter, reader=False))


def _with_tenant_check(request: Request, c: Caller) -> Caller:
    tenant = request.headers.get("ngsild-tenant")
    if tenant:  # one tenant only: the default one, which is not named
        raise NgsiProblem(404, f"there is no tenant {tenant[:64]!r} here", type_=NONEXISTENT_TENANT)
    return c


CallerDep = Annotated[Caller, Depends(caller)]
