"""Run the app under uvicorn with mutual TLS and the ASGI TLS extension.

The listeners (the main one and, with ``gateway_port``, the gateways' own) are
described in :mod:`citygate.cloud.listeners`.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import uvicorn

from citygate.cloud.app import create_app
from citygate.cloud.listeners import CloudServer, listener_config
from citygate.cloud.settings import CloudSettings
from citygate.logs import configure_logging


def uvicorn_config(settings: CloudSettings, *, log_config: bool = False) -> uvicorn.Config:
    """A uvicorn Config for the app's main listener: TLS with client certificates from the client CA only.

    Its lifespan starts the gateway listener too when ``gateway_port`` is set.
    """
    return listener_config(settings, create_app(settings), gateway=False)


def cloud_server(config: uvicorn.Config, settings: CloudSettings) -> CloudServer:
    """The server for a config from :func:`uvicorn_config`: uvicorn's, plus a TLS handshake timeout."""
    return CloudServer(config, handshake_timeout_s=settings.tls_handshake_timeout_s)


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
    cloud_server(config, settings).run()


def main(config: Path | None = None) -> None:
    serve(CloudSettings.load(config))
