"""uvicorn's h11 protocol, extended with the ASGI TLS extension.

uvicorn 0.54 does not pass the client certificate to the app (uvicorn #745).
This subclass reads the verified peer certificate once per connection (the
TLS handshake is complete when ``connection_made`` runs) and puts it into
``scope["extensions"]["tls"]`` of every request on that connection, as the
ASGI TLS extension specifies. It does so by wrapping the app for the
connection, so it depends only on ``self.app`` and ``connection_made``, not on
how uvicorn builds its scope.

h11 is the protocol in use (httptools is not installed); pass this class as
``uvicorn.Config(http=TlsH11Protocol)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from citygate.cloud.auth import tls_extension


class _WithTls:
    """The app, with this connection's TLS facts added to each scope."""

    __slots__ = ("app", "tls")

    def __init__(self, app: Any, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        extensions = scope.get("extensions")
        if extensions is None:
            extensions = scope["extensions"] = {}
        # Whatever a lower layer put there is replaced: only the handshake counts.
        extensions["tls"] = self.tls
        await self.app(scope, receive, send)


class TlsH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = _WithTls(self.config.loaded_app, tls_extension(ssl_object))
