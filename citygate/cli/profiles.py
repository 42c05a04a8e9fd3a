"""``citygate profiles``: list the device profiles and print their payload JSON Schema.

Device vendors and integrators get the schema from here instead of reading
TOML files, and an operator can check that a site's extra profile directory
loads before pointing the gateway and the cloud at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from citygate.cli import cli_errors
from citygate.contract.profiles import ProfileRegistry

app = typer.Typer(
    help="Device profiles: the fields, units and ranges each sensor type sends.",
    no_args_is_help=True,
)

ProfilesDirOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--profiles-dir",
        help="An extra directory of <name>.v<version>.toml profiles (repeatable).",
        file_okay=False,
        dir_okay=True,
    ),
]


def _registry(profiles_dir: list[Path] | None) -> ProfileRegistry:
    return ProfileRegistry(extra_dirs=profiles_dir or ())


@app.command("list")
def list_profiles(profiles_dir: ProfilesDirOption = None) -> None:
    """List every known profile and version."""
    with cli_errors():
        registry = _registry(profiles_dir)
        table = Table(title="Device profiles")
        table.add_column("name", no_wrap=True)
        table.add_column("version", justify="right", no_wrap=True)
        table.add_column("title", min_width=20)
        table.add_column("fields", justify="right", no_wrap=True)
        table.add_column("interval", justify="right", no_wrap=True)
        for p in registry:
            table.add_row(
                p.name,
                str(p.version),
                p.title,
                f"{len(p.fields)} ({len(p.required_fields)} required)",
                f"{p.expected_interval_s} s",
            )
        Console().print(table)


@app.command("schema")
def schema(
    name: Annotated[str, typer.Argument(help="Profile name, e.g. air_quality.")],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="Profile version (default: the latest).")
    ] = None,
    profiles_dir: ProfilesDirOption = None,
) -> None:
    """Print the JSON Schema (draft 2020-12) of a profile's device payload."""
    with cli_errors():
        profile = _registry(profiles_dir).get(name, version)
        out = orjson.dumps(profile.json_schema(), option=orjson.OPT_INDENT_2)
        typer.echo(out.decode("utf-8"))
