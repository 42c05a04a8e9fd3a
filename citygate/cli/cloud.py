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
    gateway_config: Annotated[
        Path | None,
        typer.Option(
            "--gateway-config",
            help=(
                "A gateway's TOML config ([gateway] section): warn where its time windows or "
                "outbox age exceed what this cloud accepts (such readings would be held at the gateway)."
            ),
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Load the configuration and the files it names, then exit (0 if the service would start).

    Prints the cloud's time windows; with --gateway-config, one WARNING line per
    disagreement with that gateway (the exit code stays 0).
    """
    from citygate.cloud.app import create_app
    from citygate.cloud.settings import CloudSettings
    from citygate.contract import windows

    with cli_errors():
        settings = CloudSettings.load(config)
        create_app(settings)
        cloud = {k: float(getattr(settings, k)) for k in windows.CLOUD_DEFAULTS}
        typer.echo("configuration OK")
        typer.echo(windows.describe("cloud", cloud))
        if gateway_config is not None:
            # Read as plain TOML: checking a gateway file must not need the gateway's code.
            for line in windows.check_against(gateway_config, "gateway", cloud, i_am_gateway=False):
                typer.echo(line)
