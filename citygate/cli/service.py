"""``citygate service run``: the service layer's workers in their own process.

For ``[cloud.service] runner = "separate"``: the cloud replicas take readings into the feed
and serve the case API; this process evaluates the rules, delivers the events and
escalates (one or more of them: the evaluator is leased, deliveries are claimed).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from citygate.cli import cli_errors

app = typer.Typer(help="The service layer's workers (rules, case events, escalation).", no_args_is_help=True)


@app.callback()
def _service() -> None:
    """The service layer's workers."""


@app.command("run")
def run(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="The cloud's TOML config ([cloud] and [cloud.service]).", exists=True
        ),
    ] = None,
) -> None:
    """Evaluate the rules, deliver the events and escalate until SIGTERM or Ctrl-C."""
    from citygate.cloud.settings import CloudSettings
    from citygate.cloud.state import InventoryHolder
    from citygate.contract.profiles import ProfileRegistry
    from citygate.contract.validation import ValidationLimits
    from citygate.errors import ConfigError
    from citygate.logs import configure_logging
    from citygate.service.layer import ServiceLayer

    with cli_errors():
        settings = CloudSettings.load(config)
        s = settings.service
        if not s.enabled:
            raise ConfigError("[cloud.service] enabled = false: there is nothing to run")
        if s.runner != "separate":
            raise ConfigError(
                '[cloud.service] runner = "in_process": the cloud runs the workers itself; '
                'set runner = "separate" to run them here'
            )
        configure_logging(settings.log_level, json=settings.log_json)
        os.nice(s.worker_nice)  # the cloud and InfluxDB beside us win the CPU under load
        registry = ProfileRegistry(extra_dirs=settings.profiles_dirs)
        limits = ValidationLimits(max_future_s=settings.max_future_s, max_past_s=settings.max_past_s)
        inventory = InventoryHolder(settings.inventory, registry, limits, settings.inventory_reload_s)
        layer = ServiceLayer.own_process(s, registry, lambda d: inventory.validator.inventory.get(d))
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        layer.start()
        typer.echo(f"service layer running: {len(layer.rules)} rules, {len(s.subscriptions)} subscriptions")
        try:
            while not stop.wait(5.0):
                inventory.refresh()  # devices moved between sites or districts
                if not layer.alive():
                    raise typer.Exit(1)  # a worker died: let the supervisor restart us
        finally:
            layer.stop()
