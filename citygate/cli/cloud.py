"""``citygate cloud``: the cloud ingestion service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citygate.cli import cli_errors

app = typer.Typer(
    help="Cloud ingestion service: authenticated gateways -> InfluxDB; fleet and reads.", no_args_is_help=True
)


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML config file ([cloud] section).", exists=True, dir_okay=False
        ),
    ] = None,
) -> None:
    """Serve the API over HTTPS with client certificates (secrets from the file or CITYGATE_CLOUD_*)."""
    from citygate.cloud.server import serve
    from citygate.cloud.settings import CloudSettings

    with cli_errors():
        settings = CloudSettings.load(config)
        serve(settings)


@app.command("check-config")
def check_config(
    config: Annotated[Path | None, typer.Option("--config", "-c", exists=True, dir_okay=False)] = None,
) -> None:
    """Load the configuration and the files it names, then exit (0 if the service would start)."""
    from citygate.cloud.app import create_app
    from citygate.cloud.settings import CloudSettings

    with cli_errors():
        create_app(CloudSettings.load(config))
        typer.echo("configuration OK")
