"""``citygate demo``: the whole system on one machine."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from citygate.cli import cli_errors
from citygate.errors import ConfigError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?")


def parse_duration(text: str) -> float:
    """'30s', '2m', '1.5h', '45' (seconds) -> seconds."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 30s, 2m, 1h)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def default_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "citygate" / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}"


def demo(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where everything goes (default: ~/.local/state/citygate/demo-<time>)."),
    ] = None,
    gateways: Annotated[int, typer.Option("--gateways", min=1, max=6)] = 2,
    devices: Annotated[int, typer.Option("--devices", min=1, max=5000, help="Devices in all.")] = 300,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between readings.")] = 5.0,
    duration: Annotated[
        str | None, typer.Option("--duration", help="Run this long (e.g. 2m), else until Ctrl-C.")
    ] = None,
    outage: Annotated[
        str | None,
        typer.Option("--outage", help="Cut a gateway's link to the cloud this long mid-run (e.g. 30s)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 1,
) -> None:
    """Start PKI, InfluxDB, Mosquitto (mTLS), the cloud, gateways and a simulated fleet; audit at the end."""
    from citygate.demo.run import run_demo
    from citygate.demo.stack import DemoOptions

    with cli_errors():
        d = directory or default_dir()
        if d.exists() and any(d.iterdir()):
            raise ConfigError(f"{d} is not empty; give a new --dir")
        result = run_demo(
            DemoOptions(
                directory=d,
                gateways=gateways,
                devices=devices,
                interval_s=interval,
                seed=seed,
                service=True,
                public=True,
            ),
            duration_s=parse_duration(duration) if duration else None,
            outage_s=parse_duration(outage) if outage else None,
            console=Console(),
        )
        if (
            result.lost
            or result.events_lost
            or not result.drained
            or any("error" in a for a in result.audits)
            or (result.public is not None and "error" in result.public)
        ):
            raise typer.Exit(1)
