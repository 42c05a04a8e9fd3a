"""The Open311 GeoReport v2 API at ``/open311/v2``: thin routes over the modules beside it.

Each resource answers in the format its path's extension names (``.json`` or ``.xml``), its
errors too. Reads are public and limited per client address; ``POST requests`` needs an
API key and is limited per address and per key. Every refusal is an :class:`Open311Error`
that :class:`Open311Route` answers in the Open311 error shape: 400, 403, 404, 413, 415, 429
(and 503 while the store does not answer); FastAPI's own validation is never involved (no
typed parameters), so nothing here answers 422 or 500 for what a client sent.

The store is blocking: its calls run in the thread pool. SQLAlchemy is imported (with
:mod:`citygate.open311.reports`) only when a request reaches the store, i.e. with the
service layer on.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from citygate.cloud.ratelimit import Decision, client_key
from citygate.open311 import views
from citygate.open311.errors import Open311Error
from citygate.open311.form import check_content_type, parse_form, read_limited
from citygate.open311.formats import Format, error_response, format_of, response
from citygate.open311.queries import (
    Params,
    check_jurisdiction,
    one,
    params_of,
    request_query,
    updates_query,
)
from citygate.open311.runtime import Open311Runtime, open311_runtime
from citygate.open311.submission import check, single

log = structlog.get_logger("citygate.open311")

PREFIX = "/open311/v2"
_MAX_ID_DIGITS = 18
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Open311Route(APIRoute):
    """A route whose Open311Error becomes the Open311 error document, in the path's format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Open311Error as e:
                log.debug("open311_refused", status=e.status, route=self.path)
                return error_response(_format_of_path(request), e.status, e.description, e.headers)

        return answer


router = APIRouter(prefix=PREFIX, tags=["open311"], route_class=Open311Route)
Runtime = Annotated[Open311Runtime, Depends(open311_runtime)]


def _format_of_path(request: Request) -> Format:
    fmt = request.path_params.get("fmt")
    if not isinstance(fmt, str):
        fmt = request.url.path.rsplit(".", 1)[-1]
    return format_of(fmt) or "json"


def _format(fmt: str) -> Format:
    f = format_of(fmt)
    if f is None:
        raise Open311Error(404, "no such format: use .json or .xml")
    return f


def _address(request: Request, rt: Open311Runtime) -> str:
    return client_key(request.client.host if request.client else None, rt.settings.ipv6_prefix)


def _read(request: Request, rt: Open311Runtime) -> tuple[Decision, Params]:
    """A public read: its rate-limit decision (429 when refused) and its parameters."""
    d = rt.reads.check(_address(request, rt))
    if not d.allowed:
        raise Open311Error(429, "too many requests from this address; slow down", d.headers())
    params = params_of(request.query_params.multi_items())
    check_jurisdiction(one(params, "jurisdiction_id"), rt.settings)
    return d, params


def _layer(request: Request) -> Any:
    """The service layer (open311_runtime has checked that it runs)."""
    return request.app.state.cloud.service


@router.get("/discovery.{fmt}", summary="Service discovery: this endpoint, its formats and specification")
async def discovery(fmt: str, request: Request, rt: Runtime) -> Response:
    f = _format(fmt)
    d, _ = _read(request, rt)
    url = rt.settings.public_url or str(request.base_url).rstrip("/") + PREFIX
    return response(f, "discovery", views.discovery(rt, url), headers=d.headers())


@router.get("/services.{fmt}", summary="The services a report may be about")
async def services(fmt: str, request: Request, rt: Runtime) -> Response:
    f = _format(fmt)
    d, _ = _read(request, rt)
    return response(f, "services", [views.service(s) for s in rt.services.values()], headers=d.headers())


@router.get("/services/{code}.{fmt}", summary="A service's definition: the attributes a report answers")
async def service_definition(code: str, fmt: str, request: Request, rt: Runtime) -> Response:
    f = _format(fmt)
    d, _ = _read(request, rt)
    svc = rt.services.get(code)
    if svc is None:
        raise Open311Error(404, "service_code was not found (see services.json)")
    return response(f, "service_definition", views.service_definition(svc), headers=d.headers())


@router.post("/requests.{fmt}", summary="Report a problem (form-encoded; needs an API key)")
async def post_request(fmt: str, request: Request, rt: Runtime) -> Response:
    f = _format(fmt)
    s = rt.settings
    by_address = rt.posts_by_address.check(_address(request, rt))
    if not by_address.allowed:
        raise Open311Error(429, "too many reports from this address; slow down", by_address.headers())
    if request.url.query:
        # URLs end up in logs and proxies: personal data and keys belong in the body.
        raise Open311Error(400, "send the fields form-encoded in the body, not in the URL")
    check_content_type(request.headers.get("content-type"))
    body = await read_limited(request.headers.get("content-length"), request.stream(), s.max_body_bytes)
    form = parse_form(body, max_fields=s.max_fields)
    client = rt.keys.check(single(form, "api_key"))
    by_key = rt.posts_by_key.check(client)
    if not by_key.allowed:
        raise Open311Error(429, "too many reports with this api_key; slow down", by_key.headers())
    check_jurisdiction(single(form, "jurisdiction_id"), s)
    sub = check(form, s, rt.services)
    from citygate.open311.reports import submit

    layer = _layer(request)
    outcome = await run_in_threadpool(submit, layer.store, rt, sub, client)
    layer.dispatcher.wake()
    # No field of the report here: the description and the reporter's details may be personal.
    log.info(
        "open311_report",
        report_id=outcome.report_id,
        case_id=outcome.case_id,
        service_code=sub.service.code,
        attached=outcome.attached,
        client=client,
    )
    item: dict[str, Any] = (
        {"token": outcome.token}
        if sub.service.type == "batch"
        else {"service_request_id": str(outcome.case_id)}
    )
    item.update(service_notice=sub.service.notice or None, account_id=None)
    return response(f, "service_requests", [item], headers=by_key.headers())


@router.get("/requests.{fmt}", summary="Service requests: citizen reports and sensor cases")
async def get_requests(fmt: str, request: Request, rt: Runtime) -> Response:
    f = _format(fmt)
    d, params = _read(request, rt)
    from citygate.open311.reports import find_requests
    from citygate.service.case_model import wall_ms

    q = request_query(params, rt.settings, rt.services, wall_ms())
    docs = await run_in_threadpool(find_requests, _layer(request).engine, rt, q)
    return response(f, "service_requests", docs, headers=d.headers())


@router.get("/requests/{request_id}.{fmt}", summary="One service request")
async def get_request(request_id: str, fmt: str, request: Request, rt: Runtime) -> Response:
    f = _format(fmt)
    d, params = _read(request, rt)
    ext = one(params, "extensions")
    if ext not in (None, "true", "false"):
        raise Open311Error(400, "extensions must be true or false")
    if not (request_id.isascii() and request_id.isdigit() and len(request_id) <= _MAX_ID_DIGITS):
        raise Open311Error(404, "service_request_id was not found")
    from citygate.open311.reports import find_request

    doc = await run_in_threadpool(find_request, _layer(request).engine, rt, int(request_id), ext == "true")
    if doc is None:
        raise Open311Error(404, "service_request_id was not found")
    return response(f, "service_requests", [doc], headers=d.headers())


@router.get("/tokens/{token}.{fmt}", summary="The service request a token stands for")
async def get_token(token: str, fmt: str, request: Request, rt: Runtime) -> Response:
    f = _format(fmt)
    d, _ = _read(request, rt)
    if not (10 <= len(token) <= 64 and set(token) <= _TOKEN_CHARS):
        raise Open311Error(404, "token was not found")
    from citygate.open311.reports import request_of_token

    case_id = await run_in_threadpool(request_of_token, _layer(request).engine, rt, token)
    if case_id is None:
        raise Open311Error(404, "token was not found")
    item = {"service_request_id": str(case_id), "token": token}
    return response(f, "service_requests", [item], headers=d.headers())


@router.get(
    "/servicerequestupdates.{fmt}", summary="Updates to service requests in a time range (FixMyStreet)"
)
async def get_updates(fmt: str, request: Request, rt: Runtime) -> Response:
    f = _format(fmt)
    d, params = _read(request, rt)
    from citygate.open311.reports import find_updates
    from citygate.service.case_model import wall_ms

    q = updates_query(params, rt.settings, wall_ms())
    docs = await run_in_threadpool(find_updates, _layer(request).engine, rt, q)
    return response(f, "service_request_updates", docs, headers=d.headers())


@router.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
async def not_found(rest: str, request: Request, rt: Runtime) -> Response:
    raise Open311Error(404, "no such resource (see discovery.json)")
