"""The operator dashboard: one static page served by the cloud service.

No build step and no asset from the internet: HTML, CSS and JavaScript ship
in ``static/`` inside the package. The page asks for an operator token once
(kept in the browser tab's sessionStorage), then polls the fleet API
(``/v1/gateways``, ``/v1/gateways/{id}``, ``/v1/devices``) and the read API.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_ASSETS = frozenset({"app.js", "style.css"})
# The page talks only to its own origin and loads nothing from elsewhere.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _read(name: str) -> bytes:
    return (files("citygate.dashboard") / "static" / name).read_bytes()


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> Response:
    return Response(
        _read("index.html"),
        media_type=_TYPES[".html"],
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"},
    )


@router.get("/dashboard/static/{name}")
async def asset(name: str) -> Response:
    if name not in _ASSETS:  # a fixed list: no path from the URL reaches the file system
        raise HTTPException(404, "no such asset")
    suffix = name[name.rfind(".") :]
    return Response(_read(name), media_type=_TYPES[suffix], headers={"Cache-Control": "no-cache"})
