"""The cloud's listeners: the main one, and optionally the gateways' own.

One process, one app, one event loop; one or two TLS listeners, each a uvicorn
server with its **own connection budget** (uvicorn's ``limit_concurrency`` counts
the connections of its own server only):

* the **main listener** (``host``:``port``, ``client_cert_mode``): readers,
  operators, the dashboard, probes, and the gateways too unless they have their own.
  It trusts the infrastructure CA (``client_ca``) and, when set, the client CA of
  people's certificates (``people_ca``: readers, operators);
* the **gateway listener** (``gateway_host``:``gateway_port``, when the port is
  not 0): a client certificate from the infrastructure CA only is always required (anonymous
  clients fail the handshake), ``gateway_max_connections`` connections, and it
  answers only ``POST /v1/ingest``, heartbeats, ``/healthz`` and ``/readyz``.
  Then the main listener refuses the gateway routes (403 ``use_gateway_listener``,
  which a gateway retries with backoff, keeping its data): a thousand anonymous
  connections to the main port cannot take the gateways' budget.

The gateway listener is started and stopped by the app's lifespan
(:func:`citygate.cloud.app.create_app`), so whoever runs the main server (``citygate
cloud run``, a test fixture) gets both. Requests are told apart by a key the
gateway listener's app wrapper puts into the ASGI scope, which no client can set.

Every listener drops a TLS handshake not complete after ``tls_handshake_timeout_s``
(asyncio's own limit is 60 s; :class:`CloudServer`), closes connections whose
request headers are late (``header_timeout_s``, :mod:`citygate.cloud.tls`), and
keeps a connection without a client certificate alive for at most
``anonymous_keep_alive_s`` between requests (30 s with one).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson
import uvicorn

from citygate.cloud.settings import CloudSettings
from citygate.cloud.tls import TlsH11Protocol
from citygate.contract.wire import HEARTBEAT_PATH, INGEST_PATH

logger = logging.getLogger("uvicorn.error")

LISTENER_KEY: Final = "citygate.listener"
GATEWAY: Final = "gateway"
KEEP_ALIVE_S: Final = 30.0
STARTUP_FAILURE: Final = 3  # uvicorn's exit code when the server cannot start
_HEARTBEAT: Final = re.compile("^" + HEARTBEAT_PATH.replace("{gateway_id}", "[^/]+") + "$")
_PROBES: Final = frozenset({"/healthz", "/readyz"})


def is_gateway_path(path: str) -> bool:
    """The routes only gateways call: ``/v1/ingest`` and ``/v1/gateways/{id}/heartbeat``."""
    return path == INGEST_PATH or _HEARTBEAT.fullmatch(path) is not None


class CloudProtocol(TlsH11Protocol):
    """The TLS h11 protocol, with a short keep-alive for connections without a client certificate."""

    anonymous_keep_alive_s: float = 5.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or not ssl_object.getpeercert(binary_form=True):
            # uvicorn hands the value to loop.call_later, which takes a float.
            self.timeout_keep_alive = min(self.timeout_keep_alive, self.anonymous_keep_alive_s)  # type: ignore[assignment]


def protocol_class(header_timeout_s: float, anonymous_keep_alive_s: float) -> type[CloudProtocol]:
    """The protocol class with its own timeouts (uvicorn instantiates it per connection)."""
    return type(
        "CloudProtocol",
        (CloudProtocol,),
        {"header_timeout_s": header_timeout_s, "anonymous_keep_alive_s": anonymous_keep_alive_s},
    )


def _ssl_factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    ctx = default()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


SslFactory = Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]


def _ssl_factory_trusting(extra_ca: Path) -> SslFactory:
    """The TLS context of :func:`_ssl_factory`, trusting ``extra_ca`` for client certificates too."""

    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        ctx = _ssl_factory(config, default)
        ctx.load_verify_locations(cafile=str(extra_ca))
        return ctx

    return factory


class _OnGatewayListener:
    """The app as the gateway listener serves it: each scope says which listener it came from."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope[LISTENER_KEY] = GATEWAY
        await self.app(scope, receive, send)


def listener_config(settings: CloudSettings, app: Any, *, gateway: bool) -> uvicorn.Config:
    """A uvicorn Config for one listener: TLS with client certificates from the client CA only.

    The main listener runs the app's lifespan; the gateway listener's (``gateway=True``)
    always requires a certificate, has its own connection budget and no lifespan. Only the
    main listener also trusts ``people_ca`` (readers' and operators' certificates).
    """
    factory: SslFactory = _ssl_factory
    if gateway:
        host, port = settings.gateway_host or settings.host, settings.gateway_port
        cert_reqs, limit = ssl.CERT_REQUIRED, settings.gateway_max_connections
        app = _OnGatewayListener(app)
    else:
        host, port, limit = settings.host, settings.port, settings.max_connections
        cert_reqs = ssl.CERT_REQUIRED if settings.client_cert_mode == "required" else ssl.CERT_OPTIONAL
        if settings.people_ca is not None:
            factory = _ssl_factory_trusting(settings.people_ca)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(settings.header_timeout_s, settings.anonymous_keep_alive_s),
        ssl_certfile=str(settings.tls_cert),
        ssl_keyfile=str(settings.tls_key),
        ssl_ca_certs=str(settings.client_ca),
        ssl_cert_reqs=cert_reqs,
        ssl_context_factory=factory,
        proxy_headers=False,  # identity comes from the TLS handshake, never from headers
        server_header=False,
        lifespan="off" if gateway else "on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=int(KEEP_ALIVE_S),
        # Slow or idle clients: request headers within header_timeout_s (see tls.py), and
        # beyond this many open connections new requests are answered 503.
        limit_concurrency=limit,
        timeout_graceful_shutdown=30,
        h11_max_incomplete_event_size=64 * 1024,
    )


class CloudServer(uvicorn.Server):
    """uvicorn's server, binding its host/port with a TLS handshake timeout (uvicorn has none)."""

    def __init__(self, config: uvicorn.Config, *, handshake_timeout_s: float) -> None:
        super().__init__(config)
        self.handshake_timeout_s = handshake_timeout_s

    async def bind(self) -> None:
        """Listen on the config's host and port (raises OSError if it cannot)."""
        config = self.config
        loop = asyncio.get_running_loop()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop
            )

        server = await loop.create_server(
            create_protocol,
            host=config.host,
            port=config.port,
            ssl=config.ssl,
            backlog=config.backlog,
            ssl_handshake_timeout=self.handshake_timeout_s if config.ssl else None,
        )
        assert server.sockets is not None
        self.servers = [server]
        self._log_started_message(server.sockets)
        self.started = True

    async def startup(self, sockets: list[Any] | None = None) -> None:
        config = self.config
        if sockets is not None or config.fd is not None or config.uds is not None:
            await super().startup(sockets=sockets)  # not how the cloud runs; uvicorn's own way
            return
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        try:
            await self.bind()
        except OSError as exc:
            logger.error(exc)
            await self.lifespan.shutdown()
            sys.exit(1)


class GatewayListener:
    """The gateways' own listener, run inside the main server's event loop by the app's lifespan."""

    def __init__(self, settings: CloudSettings, app: Any) -> None:
        self.config = listener_config(settings, app, gateway=True)
        self.server = CloudServer(self.config, handshake_timeout_s=settings.tls_handshake_timeout_s)
        self._ticker: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.config.port

    async def start(self) -> None:
        if not self.config.loaded:
            self.config.load()
        self.server.lifespan = self.config.lifespan_class(self.config)  # "off": the main server runs it
        await self.server.bind()
        # uvicorn's tick: the Date header (gateways anchor their clock to it) and should_exit.
        self._ticker = asyncio.create_task(self.server.main_loop(), name="gateway-listener")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._ticker is not None:
            await self._ticker
            self._ticker = None
        if self.server.started:
            await self.server.shutdown()
            self.server.started = False


def _json(status: int, error: str, detail: str) -> tuple[dict[str, Any], bytes]:
    body = orjson.dumps({"error": error, "detail": detail})
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class ListenerGuard:
    """Pure ASGI middleware: with a gateway listener, each route answers on its listener only.

    On the gateway listener: the gateway routes and the probes, else 404. On the main
    listener: everything but the gateway routes, which are 403 ``use_gateway_listener``
    (a gateway retries a 403 with backoff and keeps its data; its operator sees why).
    """

    def __init__(self, app: Any, *, gateway_port: int, on_refused: Callable[[], None] | None = None) -> None:
        self.app = app
        self.gateway_port = gateway_port
        self.on_refused = on_refused

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.gateway_port:
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        refusal: tuple[dict[str, Any], bytes] | None = None
        if scope.get(LISTENER_KEY) == GATEWAY:
            if not (is_gateway_path(path) or path in _PROBES):
                refusal = _json(404, "not_on_gateway_listener", "this listener serves gateways only")
        elif is_gateway_path(path):
            if self.on_refused is not None:
                self.on_refused()
            refusal = _json(
                403,
                "use_gateway_listener",
                f"gateways connect to this service's gateway listener (port {self.gateway_port})",
            )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        start, body = refusal
        await send(start)
        await send({"type": "http.response.body", "body": body})
