"""Run the app under uvicorn with mutual TLS and the ASGI TLS extension."""

from __future__ import annotations

import gc
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import uvicorn

from citygate.cloud.app import create_app
from citygate.cloud.settings import CloudSettings
from citygate.cloud.tls import tls_h11_protocol
from citygate.logs import configure_logging


def _ssl_factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    ctx = default()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def uvicorn_config(settings: CloudSettings, *, log_config: bool = False) -> uvicorn.Config:
    """A uvicorn Config for the app: TLS with client certificates from the client CA only."""
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=tls_h11_protocol(settings.header_timeout_s),
        ssl_certfile=str(settings.tls_cert),
        ssl_keyfile=str(settings.tls_key),
        ssl_ca_certs=str(settings.client_ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED if settings.client_cert_mode == "required" else ssl.CERT_OPTIONAL,
        ssl_context_factory=_ssl_factory,
        proxy_headers=False,  # identity comes from the TLS handshake, never from headers
        server_header=False,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        # Slow or idle clients: request headers within header_timeout_s (see tls.py), and
        # beyond max_connections open connections new requests are answered 503.
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=30,
        h11_max_incomplete_event_size=64 * 1024,
    )


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a service that parses 5,000-reading batches.

    A parsed batch is tens of thousands of short-lived containers; with the
    default thresholds they trigger repeated collections that scan everything
    alive (about half of the JSON parse time here). Objects alive after start
    (modules, profiles, inventory) are frozen out of the scans, and young
    collections run less often. Memory stays bounded: the cycles collected are
    the same, only later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def serve(settings: CloudSettings) -> None:
    configure_logging(settings.log_level, settings.log_json)
    # uvicorn's access log is replaced by the request metrics and the per-batch log line.
    logging.getLogger("uvicorn.access").disabled = True
    config = uvicorn_config(settings)
    tune_gc()
    uvicorn.Server(config).run()


def main(config: Path | None = None) -> None:
    serve(CloudSettings.load(config))
