"""``POST /v1/ingest``: a gateway's batch, validated again, written, answered per reading."""

from __future__ import annotations

import asyncio
import time

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from citygate.cloud.ingest import PreparedBatch, decode_body, parse_batch, prepare
from citygate.cloud.routes.deps import Gateway, State, read_body
from citygate.cloud.sink import ErrorKind
from citygate.cloud.state import CloudState
from citygate.contract.readings import RejectReason
from citygate.contract.wire import (
    INGEST_PATH,
    NOT_ASSIGNED,
    WRITE_REJECTED,
    IngestBatch,
    IngestResult,
    RejectedReading,
)
from citygate.errors import BatchError, SinkUnavailable
from citygate.service.feed_body import encode_readings

router = APIRouter(tags=["gateways"])
log = structlog.get_logger("citygate.cloud.ingest")

_ERRORS = {
    400: {"description": "Malformed gzip or JSON"},
    401: {"description": "No gateway client certificate"},
    403: {
        "description": "Not a gateway certificate, wrong CA, revoked, ambiguous identity, or not registered"
    },
    413: {"description": "Body, decompressed body (zip bomb) or batch too large"},
    415: {"description": "Unsupported Content-Encoding"},
    422: {"description": "The batch document has the wrong shape"},
    503: {"description": "The database did not confirm the write; retry after Retry-After seconds"},
}


def _prepare(
    state: CloudState, body: bytes, encoding: str | None, gateway_id: str
) -> tuple[PreparedBatch, str]:
    """The prepared batch and the contract_version of the inventory it was validated with."""
    s = state.settings
    data = decode_body(body, encoding, s.max_decompressed_bytes)

    def attempt() -> tuple[PreparedBatch, str]:
        batch_id, raw = parse_batch(data, s.max_batch_readings)  # prepare() consumes the parsed readings
        validator, version = state.inventory.current()
        prepared = prepare(
            batch_id,
            raw,
            validator,
            state.encoder,
            time.time_ns(),
            gateway_id=gateway_id,
            max_buffered_s=s.max_buffered_s,
        )
        return prepared, version

    prepared, version = attempt()
    # A device registered or assigned a moment ago: read the inventory once more before refusing.
    unknown = (RejectReason.UNKNOWN_DEVICE.value, RejectReason.UNKNOWN_PROFILE.value, NOT_ASSIGNED)
    if any(prepared.reasons.get(r) for r in unknown) and state.inventory.refresh():
        prepared, version = attempt()
    return prepared, version


async def _feed_rules(state: CloudState, gateway_id: str, batch_id: str, count: int, body: bytes) -> None:
    """Hand the stored readings (``body``: :func:`encode_readings`) to the rules (the service
    layer's feed) before answering.

    If the service store does not take them, the batch is answered 503 like a database that
    did not confirm: the gateway keeps it and sends it again (InfluxDB stores a point once),
    so no reading escapes the rules. A full feed is counted instead (ServiceSettings).
    """
    service = state.service
    assert service is not None
    from sqlalchemy.exc import SQLAlchemyError

    try:
        if not await run_in_threadpool(
            state.ingest.timed, service.feed.append_encoded, gateway_id, count, body
        ):
            log.warning("rules_feed_full", gateway_id=gateway_id, batch_id=batch_id, readings=count)
    except SQLAlchemyError as e:
        state.metrics.batches.labels("unavailable").inc()
        log.warning("rules_feed_unavailable", gateway_id=gateway_id, batch_id=batch_id, error=str(e)[:200])
        raise SinkUnavailable(ErrorKind.CONNECTION, "the service store did not take the batch") from e
    service.wake()


def _discard(task: asyncio.Future[bytes] | None) -> None:
    """Let an encoding that will not be used finish unobserved (its error, if any, read)."""
    if task is not None:
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


@router.post(
    INGEST_PATH,
    response_model=IngestResult,
    responses=_ERRORS,  # type: ignore[arg-type]
    summary="Store a batch of readings (gzip JSON)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": IngestBatch.model_json_schema()}},
            "description": "An IngestBatch, usually with Content-Encoding: gzip.",
        }
    },
)
async def ingest(request: Request, gw: Gateway, state: State) -> Response:
    """Validate every reading again, write the good ones synchronously, answer per reading.

    The answer comes only after the database confirmed the write. The same
    batch posted twice stores each point once (a point's identity is
    measurement + device tags + device time).
    """
    state.ingest.begin()  # the rules' evaluator defers its checkpoint while ingest is busy
    try:
        return await _answer(request, gw, state)
    finally:
        state.ingest.end()


async def _answer(request: Request, gw: Gateway, state: CloudState) -> Response:
    t0 = time.perf_counter()
    m = state.metrics
    try:
        body = await read_body(request, state.settings.max_body_bytes)
        prepared, version = await run_in_threadpool(
            state.ingest.timed, _prepare, state, body, request.headers.get("content-encoding"), gw.gateway_id
        )
    except BatchError as e:
        m.batches.labels("refused").inc()
        log.info("ingest_refused", gateway_id=gw.gateway_id, reason=e.reason, status=e.status)
        raise
    m.readings_in.inc(prepared.received)
    # The rules' copy is encoded while InfluxDB writes (in series it was a sixth of a request's
    # time: bench/RESULTS.md); it is used only if every point was stored.
    encoding = None
    if state.service is not None and prepared.good:
        encoding = asyncio.ensure_future(
            run_in_threadpool(state.ingest.timed, encode_readings, prepared.good)
        )
    try:
        report = await state.sink.write_lines(prepared.lines)
    except SinkUnavailable as e:
        _discard(encoding)
        m.batches.labels("unavailable").inc()
        m.db_errors.labels(e.kind.value, "true").inc()
        log.warning(
            "ingest_unavailable",
            gateway_id=gw.gateway_id,
            batch_id=prepared.batch_id,
            error_kind=e.kind.value,
            error=e.detail,
        )
        raise
    rejected = prepared.rejected
    if report.refused:
        m.db_errors.labels(ErrorKind.BAD_POINT.value, "false").inc(len(report.refused))
        for line_idx, detail in sorted(report.refused.items()):
            rejected.append(
                RejectedReading(
                    index=prepared.line_reading[line_idx],
                    device_id=prepared.good[line_idx].device_id,
                    reason=WRITE_REJECTED,
                    detail=f"the database refused this point: {detail}",
                )
            )
            prepared.reasons[WRITE_REJECTED] += 1
        rejected.sort(key=lambda r: r.index)
    for reason, n in prepared.reasons.items():
        m.rejected.labels(reason).inc(n)
    accepted = len(prepared.lines) - len(report.refused)
    if state.service is not None and accepted:
        if encoding is not None and not report.refused:
            body = await encoding
        else:
            _discard(encoding)
            stored = [r for i, r in enumerate(prepared.good) if i not in report.refused]
            body = await run_in_threadpool(state.ingest.timed, encode_readings, stored)
        await _feed_rules(state, gw.gateway_id, prepared.batch_id, accepted, body)
    else:
        _discard(encoding)  # every point refused: nothing for the rules
    m.points_written.inc(accepted)
    m.batches.labels("partial" if rejected else "ok").inc()
    result = IngestResult(
        batch_id=prepared.batch_id,
        gateway_id=gw.gateway_id,
        accepted=accepted,
        rejected=rejected,
        contract_version=version,
    )
    log.info(
        "ingest",
        gateway_id=gw.gateway_id,
        batch_id=prepared.batch_id,
        received=prepared.received,
        accepted=accepted,
        rejected=len(rejected),
        db_requests=report.requests,
        ms=round((time.perf_counter() - t0) * 1000, 2),
    )
    return Response(content=result.model_dump_json(), media_type="application/json")
