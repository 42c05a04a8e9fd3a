"""The public progress page: ``/public`` (the page), ``/public/static/...`` (its files) and
``/public/v1/progress`` (its figures as JSON). No sign-in.

Every request takes a token from its client address's bucket (429 + ``Retry-After`` when
there is none; ``RateLimit-*`` headers on every answer). The JSON is the board's figures as
last computed (:mod:`citygate.progress.board`): no request ever queries the store itself.
Without ``[cloud.progress] enabled`` every route answers 404 ``progress_off``.

The board is built by this router's lifespan, which FastAPI runs inside the cloud's own
(after the service layer has opened its store, and closed before it).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING, Final

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from citygate.progress import model

if TYPE_CHECKING:
    from citygate.cloud.state import CloudState
    from citygate.progress.board import ProgressBoard

log = structlog.get_logger("citygate.progress")

# Everything from this origin, nothing inline, nothing from anywhere else.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_ASSETS: Final = frozenset({"progress.js", "progress.css"})  # a fixed list: no URL path reaches the disk


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: CloudState = app.state.cloud
    settings = state.settings
    board: ProgressBoard | None = None
    if settings.progress.enabled:
        from citygate.progress.board import ProgressBoard  # SQLAlchemy only when the page is on

        board = ProgressBoard(settings.progress, settings.service)
        if settings.client_cert_mode == "required":
            log.warning(
                "progress_page_needs_optional_client_certs",
                detail="client_cert_mode = 'required': browsers without a certificate cannot "
                "open /public; set client_cert_mode = 'optional' (and gateway_port)",
            )
    app.state.progress = board
    try:
        yield
    finally:
        app.state.progress = None
        if board is not None:
            board.close()


router = APIRouter(lifespan=_lifespan, tags=["public"])


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


@dataclass(frozen=True, slots=True)
class _Admitted:
    board: ProgressBoard
    headers: dict[str, str]  # the rate limit's, for the answer


def _admit(request: Request) -> _Admitted | Response:
    """The board and the rate limit's headers, or the refusal to answer instead."""
    board: ProgressBoard | None = getattr(request.app.state, "progress", None)
    if board is None:
        off = "the public progress page is off on this cloud ([cloud.progress] enabled = false)"
        return _error(404, "progress_off", off)
    decision = board.admit(request.client.host if request.client else None)
    if not decision.allowed:
        detail = f"too many requests from this address; retry in {decision.retry_after_s} s"
        return _error(429, "rate_limited", detail, decision.headers())
    return _Admitted(board, decision.headers())


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return etag in (t.strip().removeprefix("W/") for t in wanted.split(","))


@lru_cache(maxsize=8)
def _read(name: str) -> tuple[bytes, str]:
    """A packaged file's bytes and ETag (they change only with the package)."""
    data = (files("citygate.progress") / "static" / name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@router.get("/public", include_in_schema=False)
async def page(request: Request) -> Response:
    admitted = _admit(request)
    if isinstance(admitted, Response):
        return admitted
    body, _ = _read("index.html")
    headers = admitted.headers | {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
    headers["Cache-Control"] = "no-cache"
    return Response(body, media_type=_TYPES[".html"], headers=headers)


@router.get("/public/static/{name}", include_in_schema=False)
async def asset(name: str, request: Request) -> Response:
    admitted = _admit(request)
    if isinstance(admitted, Response):
        return admitted
    if name not in _ASSETS:
        return _error(404, "no_such_asset", "no such file", admitted.headers)
    body, etag = _read(name)
    headers = admitted.headers | {"Cache-Control": "no-cache", "ETag": etag}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_TYPES[name[name.rfind(".") :]], headers=headers)


@router.get(
    "/public/v1/progress",
    response_model=model.Progress,
    summary="How fast the city acts: open cases, weekly flow, times to act, per service and district",
    responses={304: {}, 404: {}, 429: {}, 503: {}},
)
async def progress(request: Request) -> Response:
    admitted = _admit(request)
    if isinstance(admitted, Response):
        return admitted
    headers = admitted.headers
    rendered, left = await admitted.board.current()
    if rendered is None:  # no refresh has succeeded yet; the next try is `left` seconds away
        retry = {"Retry-After": str(max(1, left))}
        return _error(503, "progress_unavailable", "the figures could not be computed yet", headers | retry)
    # Anyone may reuse the figures (no credentials are involved), and caches may keep them
    # until the next refresh could change them.
    headers = headers | {
        "ETag": rendered.etag,
        "Cache-Control": f"public, max-age={left}",
        "Access-Control-Allow-Origin": "*",
    }
    if _not_modified(request, rendered.etag):
        return Response(status_code=304, headers=headers)
    return Response(rendered.body, media_type="application/json", headers=headers)
