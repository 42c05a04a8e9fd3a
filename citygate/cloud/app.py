"""The FastAPI app: ``create_app(settings)`` builds it; the lifespan opens and closes the sink.

Nothing happens at import. Errors become specific JSON answers: 401/403 for
callers, 4xx for whole-batch problems, 503 + Retry-After whenever the
database did not confirm (the gateways keep the data and come back).

The lifespan also starts and stops the gateways' own listener when
``gateway_port`` is set (:mod:`citygate.cloud.listeners`). Every response carries
the security headers of :mod:`citygate.cloud.headers`; ``/docs`` and ``/redoc``
exist only with ``api_docs = true`` (they load scripts from a CDN).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from citygate.cloud.auth import PersonCertGuard
from citygate.cloud.headers import SecurityHeadersMiddleware
from citygate.cloud.listeners import GatewayListener, ListenerGuard
from citygate.cloud.metrics import RequestMetricsMiddleware
from citygate.cloud.readclient import SeriesReader
from citygate.cloud.reads import TokenReadLimiter
from citygate.cloud.settings import CloudSettings
from citygate.cloud.state import CloudState
from citygate.errors import (
    AuthError,
    BatchError,
    ConfigError,
    HeartbeatError,
    QueryError,
    RevocationUnavailable,
    SinkUnavailable,
)

log = structlog.get_logger("citygate.cloud")


def _error(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def create_app(settings: CloudSettings) -> FastAPI:
    """Build the app (loads profiles, inventory, CA and CRL now: configuration errors surface at start)."""
    from citygate import dashboard
    from citygate.cloud.cases import NotFound, ServiceLayerOff, case_error_answer
    from citygate.cloud.routes import cases, fleet, ingest, ops, reads
    from citygate.open311 import api as open311_api
    from citygate.opendata.ngsi import api as ngsi_api
    from citygate.opendata.sta import api as sta_api
    from citygate.progress import api as progress_api

    same_host = (settings.gateway_host or settings.host) == settings.host
    if settings.gateway_port and settings.gateway_port == settings.port and same_host:
        raise ConfigError("[cloud] gateway_port must differ from port (or be 0: no gateway listener)")
    state = CloudState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.open()
        app.state.read_slots = anyio.CapacityLimiter(settings.read_concurrency)
        app.state.series_reader = SeriesReader(settings)
        gateways: GatewayListener | None = None
        try:
            if settings.gateway_port:
                gateways = GatewayListener(settings, app)
                await gateways.start()
            log.info(
                "cloud_started",
                sink=state.sink.target,
                influx_api=settings.influx_api,
                readers=len(settings.reader_tokens),
                operators=len(settings.operator_tokens),
                gateway_port=settings.gateway_port or settings.port,
            )
            yield
        finally:
            if gateways is not None:
                await gateways.stop()
            await app.state.series_reader.aclose()
            await state.close()
            log.info("cloud_stopped")

    app = FastAPI(
        title="citygate cloud ingestion",
        version="1",
        summary="Authenticated gateway ingest into InfluxDB; fleet health; series reads.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a CDN onto this origin, where the
        # dashboard keeps an operator token: only when asked for. /openapi.json stays.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
    )
    app.state.cloud = state
    app.state.read_limiter = TokenReadLimiter(settings.read_concurrency_per_token)
    app.include_router(ingest.router)
    app.include_router(fleet.router)
    app.include_router(reads.router)
    app.include_router(ops.router)
    app.include_router(cases.router)  # operators' cases and subscriptions (the service layer)
    app.include_router(dashboard.router)  # the operator page at /dashboard
    app.include_router(ngsi_api.router)  # NGSI-LD entities at /ngsi-ld/v1 ([cloud.opendata])
    app.include_router(sta_api.router)  # SensorThings API 1.1 at /sta/v1.1 ([cloud.sta])
    app.include_router(open311_api.router)  # citizen reports, Open311 GeoReport v2 ([cloud.open311])
    app.include_router(progress_api.router)  # the public progress page at /public ([cloud.progress])
    retry_after = str(settings.retry_after_s)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        state.metrics.auth_failures.labels(exc.reason).inc()
        log.warning("auth_refused", reason=exc.reason, path=request.url.path)
        headers = {"WWW-Authenticate": "Bearer"} if exc.reason in ("no_token", "bad_token") else None
        return _error(exc.status, exc.reason, exc.detail, headers)

    @app.exception_handler(RevocationUnavailable)
    async def _crl(request: Request, exc: RevocationUnavailable) -> JSONResponse:
        state.metrics.auth_failures.labels("crl_unavailable").inc()
        return _error(503, "crl_unavailable", str(exc), {"Retry-After": retry_after})

    @app.exception_handler(BatchError)
    async def _batch(request: Request, exc: BatchError) -> JSONResponse:
        return _error(exc.status, exc.reason, exc.detail)

    @app.exception_handler(HeartbeatError)
    async def _hb(request: Request, exc: HeartbeatError) -> JSONResponse:
        return _error(422, "bad_heartbeat", str(exc))

    @app.exception_handler(SinkUnavailable)
    async def _sink(request: Request, exc: SinkUnavailable) -> JSONResponse:
        log.warning("database_unavailable", kind=exc.kind.value, detail=exc.detail, path=request.url.path)
        return _error(
            503,
            "database_unavailable",
            f"the database did not confirm ({exc.kind.value}); retry later",
            {"Retry-After": retry_after},
        )

    @app.exception_handler(QueryError)
    async def _query(request: Request, exc: QueryError) -> JSONResponse:
        log.error("query_refused", detail=str(exc)[:300], path=request.url.path)
        return _error(502, "query_refused", "the database refused the query")

    @app.exception_handler(ServiceLayerOff)
    async def _service_off(request: Request, exc: ServiceLayerOff) -> JSONResponse:
        return _error(404, "service_layer_off", str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, exc.error, exc.detail)

    if settings.service.enabled:  # CaseError (and SQLAlchemy) exist only with the service layer
        from citygate.service.case_model import CaseError

        @app.exception_handler(CaseError)
        async def _case(request: Request, exc: CaseError) -> JSONResponse:
            status, error = case_error_answer(exc)
            return _error(status, error, str(exc))

    # Starlette: the middleware added last runs first.
    if state.people_verifier is not None:
        app.add_middleware(
            PersonCertGuard,
            verifier=state.people_verifier,
            on_refused=lambda reason: state.metrics.auth_failures.labels(reason).inc(),
        )
    wrong_listener = state.metrics.auth_failures.labels("wrong_listener")
    app.add_middleware(ListenerGuard, gateway_port=settings.gateway_port, on_refused=wrong_listener.inc)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
