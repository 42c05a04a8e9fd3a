"""Security headers on every response the cloud sends, whatever answered it.

The service is HTTPS only and its origin holds the dashboard's operator token, so
every response says: never sniff a content type (``X-Content-Type-Options``),
send no ``Referer`` with links away from here (``Referrer-Policy``), and speak
only HTTPS to this host for a year (``Strict-Transport-Security``). These three
replace any value a route set; every other header (the dashboard's
``Content-Security-Policy``) is kept.
"""

from __future__ import annotations

from typing import Any, Final

SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000"),
)
_NAMES: Final = frozenset(name for name, _ in SECURITY_HEADERS)


class SecurityHeadersMiddleware:
    """Pure ASGI middleware: adds :data:`SECURITY_HEADERS` to every HTTP response start."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _NAMES]
                message["headers"] = [*headers, *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
