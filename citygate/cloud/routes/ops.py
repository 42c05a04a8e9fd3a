"""Liveness, readiness (checks the database) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from citygate.cloud.routes.deps import State

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers (else 503)")
async def readyz(state: State) -> Response:
    if await state.sink.ping():
        return JSONResponse({"status": "ready", "database": "ok"})
    return JSONResponse(
        {"status": "not ready", "database": "unreachable"},
        status_code=503,
        headers={"Retry-After": str(state.settings.retry_after_s)},
    )


@router.get("/metrics", summary="Prometheus metrics (operator token unless metrics_public)")
async def metrics(request: Request, state: State) -> Response:
    if not state.settings.metrics_public:
        state.tokens.check(request.headers.get("authorization"), operator=True)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
