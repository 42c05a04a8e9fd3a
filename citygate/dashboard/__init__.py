"""The operator dashboard: one static page served by the cloud service.

No build step and no asset from the internet: HTML, CSS and JavaScript ship in
``static/`` inside the package, with two libraries vendored from npm into
``static/vendor/`` (uPlot for the charts, Leaflet for the map; versions and
licences in ``static/vendor/README.md``). The page asks for an operator token once
(kept in the browser tab's sessionStorage), then polls the fleet API
(``/v1/gateways``, ``/v1/gateways/{id}``, ``/v1/devices``), the read API and
``/dashboard/context`` (profiles' units, positions, map tiles:
:mod:`citygate.dashboard.context`). Its cases panel (``static/cases.js``) lists the service
layer's open cases (``/v1/cases``), shows one with its history and acts on it with the same
token; without the service layer (``service_layer`` false in the context) it says so.

The map's tiles come from ``dashboard_tile_url``; empty, the page draws its markers
on a blank background and asks nothing of any other host.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from citygate.cloud.routes.deps import Operator, State
from citygate.dashboard.context import build_context, content_security_policy

router = APIRouter(include_in_schema=False)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# A fixed list: no path from the URL reaches the file system.
_ASSETS = frozenset(
    {
        "app.js",
        "cases.js",
        "style.css",
        "vendor/uplot/uPlot.iife.min.js",
        "vendor/uplot/uPlot.min.css",
        "vendor/leaflet/leaflet.js",
        "vendor/leaflet/leaflet.css",
    }
)


@lru_cache(maxsize=16)
def _read(name: str) -> tuple[bytes, str]:
    """The packaged file's bytes and its ETag (the files change only with the package)."""
    node = files("citygate.dashboard") / "static"
    for part in name.split("/"):
        node = node / part
    data = node.read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return etag in (t.strip().removeprefix("W/") for t in wanted.split(","))


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(state: State) -> Response:
    body, _ = _read("index.html")
    csp = content_security_policy(state.settings.dashboard_tile_url)
    return Response(
        body,
        media_type=_TYPES[".html"],
        headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"},
    )


@router.get("/dashboard/static/{name:path}")
async def asset(name: str, request: Request) -> Response:
    if name not in _ASSETS:
        raise HTTPException(404, "no such asset")
    body, etag = _read(name)
    headers = {"Cache-Control": "no-cache", "ETag": etag}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_TYPES[name[name.rfind(".") :]], headers=headers)


@router.get("/dashboard/context")
async def context(request: Request, _op: Operator, state: State) -> Response:
    """Profiles (units), positions and the map's tiles; 304 while the inventory is unchanged."""
    validator, version = state.inventory.current()
    tile_url = state.settings.dashboard_tile_url
    service_layer = state.service is not None
    # The contract version names the inventory and the profiles; the tile URL and whether the
    # service layer runs are fixed per process.
    etag = '"' + hashlib.sha256(f"{version}\n{tile_url}\n{service_layer}".encode()).hexdigest()[:32] + '"'
    headers = {"Cache-Control": "private, no-cache", "ETag": etag}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    ctx = build_context(validator.inventory, state.registry, tile_url, version, service_layer=service_layer)
    return Response(ctx.model_dump_json(), media_type="application/json", headers=headers)
