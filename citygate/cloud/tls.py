"""uvicorn's h11 protocol, extended with the ASGI TLS extension.

uvicorn 0.54 does not pass the client certificate to the app (uvicorn #745).
This subclass reads the verified peer certificate once per connection (the
TLS handshake is complete when ``connection_made`` runs) and puts it into
``scope["extensions"]["tls"]`` of every request on that connection, as the
ASGI TLS extension specifies. It does so by wrapping the app for the
connection, so it depends only on ``self.app`` and ``connection_made``, not on
how uvicorn builds its scope.

h11 is the protocol in use (httptools is not installed); pass this class as
``uvicorn.Config(http=TlsH11Protocol)``, or a class from :func:`tls_h11_protocol`.

uvicorn has no timeout between a connection's start (or the first byte of a
kept-alive connection's next request) and the end of the request headers: a
client that sends its headers a byte every few seconds, or nothing at all after
the handshake, holds a connection forever (slowloris). This class closes a
connection whose request headers are not complete ``header_timeout_s`` after the
connection was made or after that request's first byte arrived; the clock is
not reset by further bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
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


DEFAULT_HEADER_TIMEOUT_S = 10.0


class TlsH11Protocol(H11Protocol):
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = _WithTls(self.config.loaded_app, tls_extension(ssl_object))
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # the request line and headers are in

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def tls_h11_protocol(header_timeout_s: float) -> type[TlsH11Protocol]:
    """The protocol class with its own header timeout (uvicorn instantiates it per connection)."""
    return type("TlsH11Protocol", (TlsH11Protocol,), {"header_timeout_s": header_timeout_s})
