"""The read-only NGSI-LD API: ``/ngsi-ld/v1/entities`` and ``/ngsi-ld/v1/entities/{id}``.

Answers follow ETSI GS CIM 009 (the NGSI-LD API): ``Accept: application/json`` (the
default) gives plain JSON with the ``@context`` in a ``Link`` header; ``application/ld+json``
gives JSON-LD with the ``@context`` in each entity. Every refusal is a ProblemDetails
document with a specific status (:mod:`citygate.opendata.ngsi.problems`): the route class
below turns this package's refusals, FastAPI's parameter errors and a database that does
not answer into one, so nothing under ``/ngsi-ld/`` answers in another shape.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

import orjson
import structlog
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from citygate.errors import QueryError, SinkUnavailable
from citygate.opendata.ngsi.caller import HEADERS_KEY, CallerDep
from citygate.opendata.ngsi.forms import render
from citygate.opendata.ngsi.params import Media, negotiate, parse_entity, parse_query
from citygate.opendata.ngsi.problems import NgsiProblem, bad_data, not_found
from citygate.opendata.ngsi.select import lookup, select

log = structlog.get_logger("citygate.opendata.ngsi")
PREFIX: Final = "/ngsi-ld/v1"
_CONTEXT_REL: Final = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
_READS: Final = ["GET", "HEAD"]
_WRITES: Final = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class NgsiRoute(APIRoute):
    """Every answer of these routes a ProblemDetails on refusal, with the caller's rate-limit headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except NgsiProblem as p:
                response = p.response()
            except RequestValidationError as e:
                where = ", ".join(".".join(str(x) for x in err.get("loc", ())) for err in e.errors()[:3])
                response = bad_data(f"bad parameter: {where or 'request'}").response()
            except SinkUnavailable as e:
                log.warning("ngsi_database_unavailable", kind=e.kind.value, detail=e.detail)
                retry = str(request.app.state.cloud.settings.retry_after_s)
                response = NgsiProblem(
                    503, "the database did not answer; retry later", headers={"Retry-After": retry}
                ).response()
            except QueryError as e:
                log.error("ngsi_query_refused", detail=str(e)[:300])
                response = NgsiProblem(502, "the database refused the query").response()
            extra: dict[str, str] | None = getattr(request.state, HEADERS_KEY, None)
            if extra:
                response.headers.update(extra)
            return response

        return route


router = APIRouter(tags=["open data: NGSI-LD"], route_class=NgsiRoute)


def _link(contexts: set[str], media: Media) -> dict[str, str]:
    if media == "ld" or not contexts:
        return {}
    (context,) = contexts
    return {"Link": f"<{context}>; {_CONTEXT_REL}"}


def _json(body: Any, media: Media, headers: dict[str, str]) -> Response:
    return Response(
        orjson.dumps(body),
        media_type="application/ld+json" if media == "ld" else "application/json",
        headers=headers,
    )


@router.head(PREFIX + "/entities", include_in_schema=False)
@router.get(
    PREFIX + "/entities",
    summary="Query entities (type, id, attrs, options=keyValues|concise, limit, offset, count)",
)
async def query_entities(request: Request, who: CallerDep) -> Response:
    """Entities of the Smart Data Models types this caller may see, sorted by type and id."""
    q = parse_query(request.query_params)
    media = negotiate(request.headers.get("accept"))
    found = await select(who.exporter, q, reader=who.reader, media=media)
    page = found.entities[q.offset : q.offset + q.limit]
    body = [render(e, q.selection.form, attrs=q.selection.attrs, context=media == "ld") for e in page]
    headers = _link(found.contexts, media)
    if q.count:
        headers["NGSILD-Results-Count"] = str(len(found.entities))
    return _json(body, media, headers)


@router.head(PREFIX + "/entities/{entity_id}", include_in_schema=False)
@router.get(PREFIX + "/entities/{entity_id}", summary="One entity by id (type, attrs, options)")
async def retrieve_entity(entity_id: str, request: Request, who: CallerDep) -> Response:
    sel = parse_entity(request.query_params)
    media = negotiate(request.headers.get("accept"))
    found = await lookup(who.exporter, entity_id, sel, reader=who.reader, media=media)
    body = render(found.entities[0], sel.form, attrs=sel.attrs, context=media == "ld")
    return _json(body, media, _link(found.contexts, media))


def _read_only(path: str) -> NgsiProblem:
    return NgsiProblem(405, f"{path} is read-only here: GET only", headers={"Allow": "GET, HEAD"})


@router.api_route(PREFIX + "/entities", methods=_WRITES, include_in_schema=False)
async def entities_write(_who: CallerDep) -> Response:
    raise _read_only(PREFIX + "/entities")


@router.api_route(PREFIX + "/entities/{entity_id}", methods=_WRITES, include_in_schema=False)
async def entity_write(entity_id: str, _who: CallerDep) -> Response:
    raise _read_only(PREFIX + "/entities/{id}")


@router.api_route("/ngsi-ld/{rest:path}", methods=[*_READS, *_WRITES], include_in_schema=False)
async def elsewhere(rest: str) -> Response:
    """Anything else under /ngsi-ld/: a ProblemDetails 404 rather than the app's own shape."""
    raise not_found(
        f"/ngsi-ld/{rest[:100]} is not served; this API has {PREFIX}/entities and {PREFIX}/entities/{{id}}"
    )
