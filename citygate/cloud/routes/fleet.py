"""Gateway heartbeats (gateways) and the fleet view (operators)."""

from __future__ import annotations

import time

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from citygate.cloud import influxql
from citygate.cloud.fleet import (
    HEALTH_MEASUREMENT,
    DeviceList,
    GatewayDetail,
    GatewayList,
    device_queries,
    device_statuses,
    gateway_status,
    heartbeat_line,
    now_iso,
    rows_of,
)
from citygate.cloud.ingest import decode_body
from citygate.cloud.routes.deps import Gateway, Operator, State, read_body
from citygate.cloud.state import CloudState
from citygate.contract.ids import validate_id
from citygate.contract.wire import HEARTBEAT_PATH, GatewayHealth, HeartbeatAnswer
from citygate.errors import HeartbeatError, InvalidIdentifierError

router = APIRouter(tags=["fleet"])
log = structlog.get_logger("citygate.cloud.fleet")
_NS = 1_000_000_000
MAX_HEARTBEAT_BYTES = 64 * 1024


def _require_influxql(state: CloudState) -> None:
    if not state.settings.influxql_enabled:
        raise HTTPException(
            501,
            "this deployment's store has no InfluxQL; the fleet and read APIs need "
            "InfluxDB 1.x/2.x/3.x (see docs/CLOUD.md)",
        )


@router.post(
    HEARTBEAT_PATH,
    response_model=HeartbeatAnswer,
    summary="Store a gateway's health numbers",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": GatewayHealth.model_json_schema()}},
        }
    },
)
async def heartbeat(gateway_id: str, request: Request, gw: Gateway, state: State) -> HeartbeatAnswer:
    """The URL id must be the certificate's id (403 otherwise): a gateway heartbeats only as itself.

    The answer carries the cloud's ``contract_version`` (as every ingest answer does), so a
    gateway with held readings learns of an inventory or profile change even while it has
    nothing else to send.
    """
    if gateway_id != gw.gateway_id:
        state.metrics.auth_failures.labels("gateway_id_mismatch").inc()
        log.warning("heartbeat_id_mismatch", cert_gateway_id=gw.gateway_id, url_gateway_id=gateway_id[:64])
        raise HTTPException(
            403,
            f"this certificate belongs to gateway {gw.gateway_id!r}; "
            "a gateway can only report its own health",
        )
    body = await read_body(request, MAX_HEARTBEAT_BYTES)
    data = decode_body(body, request.headers.get("content-encoding"), MAX_HEARTBEAT_BYTES)
    try:
        health = GatewayHealth.model_validate_json(data)
        line = heartbeat_line(gw.gateway_id, health, gw.not_after, time.time_ns())
    except ValidationError as e:
        raise HTTPException(422, [{"loc": list(err["loc"]), "msg": err["msg"]} for err in e.errors()]) from e
    except HeartbeatError as e:
        raise HTTPException(422, str(e)) from e
    report = await state.sink.write_lines([line])
    if report.refused:
        raise HTTPException(422, f"the database refused the heartbeat: {report.refused[0]}")
    state.metrics.heartbeats.inc()
    if state.service is not None:
        await _feed_heartbeat(state, gw.gateway_id, health.oldest_unsent_age_s)
    return HeartbeatAnswer(
        gateway_id=gw.gateway_id, stored=True, contract_version=state.inventory.contract_version
    )


async def _feed_heartbeat(state: CloudState, gateway_id: str, backlog_age_s: float | None) -> None:
    """The gateway-health rules see every heartbeat; a store that does not take one only
    delays them until the next (a heartbeat is not data)."""
    service = state.service
    assert service is not None
    from sqlalchemy.exc import SQLAlchemyError

    try:
        await run_in_threadpool(service.feed.append_heartbeat, gateway_id, time.time_ns(), backlog_age_s)
    except SQLAlchemyError as e:
        log.warning("rules_feed_unavailable", gateway_id=gateway_id, error=str(e)[:200])
        return
    service.wake()


@router.get("/v1/gateways", response_model=GatewayList, summary="Every gateway: online / stale / offline")
async def list_gateways(_op: Operator, state: State) -> GatewayList:
    _require_influxql(state)
    s = state.settings
    now = time.time_ns()
    q = influxql.latest_rows(HEALTH_MEASUREMENT, "gateway_id", now - int(s.fleet_lookback_s * _NS))
    rows = rows_of(await state.sink.query(q, epoch="ns"), "gateway_id")
    gateways = [
        gateway_status(gid, r[0], now, s.heartbeat_stale_s, s.heartbeat_offline_s)
        for gid, r in sorted(rows.items())
        if r
    ]
    return GatewayList(generated_at=now_iso(now), gateways=gateways)


@router.get(
    "/v1/gateways/{gateway_id}",
    response_model=GatewayDetail,
    summary="One gateway with its recent heartbeats",
)
async def get_gateway(gateway_id: str, _op: Operator, state: State, history: int = 60) -> GatewayDetail:
    _require_influxql(state)
    try:
        validate_id(gateway_id, kind="gateway id")
    except InvalidIdentifierError as e:
        raise HTTPException(422, str(e)) from e
    if not 1 <= history <= 1000:
        raise HTTPException(422, "history must be 1..1000")
    s = state.settings
    now = time.time_ns()
    q = influxql.latest_rows(
        HEALTH_MEASUREMENT, "gateway_id", now - int(s.fleet_lookback_s * _NS), value=gateway_id, limit=history
    )
    rows = rows_of(await state.sink.query(q, epoch="ns"), "gateway_id").get(gateway_id)
    if not rows:
        raise HTTPException(404, f"no heartbeat from gateway {gateway_id!r} in the lookback window")
    statuses = [gateway_status(gateway_id, r, now, s.heartbeat_stale_s, s.heartbeat_offline_s) for r in rows]
    return GatewayDetail(gateway=statuses[0], history=statuses)


@router.get("/v1/devices", response_model=DeviceList, summary="Last seen per device; silent devices")
async def list_devices(
    _op: Operator, state: State, silent_only: bool = False, site: str | None = None
) -> DeviceList:
    """A device is silent when its newest point is older than ``device_silent_factor`` x its interval."""
    _require_influxql(state)
    s = state.settings
    now = time.time_ns()
    validator = state.inventory.validator
    since = now - int(s.fleet_lookback_s * _NS)
    statements = [
        influxql.latest_per_tag(m, f, "device_id", since)
        for m, f in device_queries(validator.inventory, state.registry)
    ]
    last_seen: dict[str, int] = {}
    if statements:
        results = await state.sink.query(";".join(statements), epoch="ns")
        for device_id, rows in rows_of(results, "device_id").items():
            times = [int(r["time"]) for r in rows if isinstance(r.get("time"), int)]
            if times:
                last_seen[device_id] = max(times)
    devices = device_statuses(validator.inventory, state.registry, last_seen, now, s.device_silent_factor)
    if site is not None:
        devices = [d for d in devices if d.site == site]
    n_silent = sum(d.silent for d in devices)
    if silent_only:
        devices = [d for d in devices if d.silent]
    return DeviceList(generated_at=now_iso(now), devices=devices, silent=n_silent)
