"""The ``citygate`` command line: one command, a subcommand per role.

Sub-apps are attached when ``main`` runs, not at import time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from citygate.errors import (
    CitygateError,
    ConfigError,
    InvalidIdentifierError,
    ProfileError,
)

# Usage errors (bad names, bad config) exit 2 like argument errors; other failures exit 1.
USAGE_ERRORS = (InvalidIdentifierError, ConfigError, ProfileError)

err_console = Console(stderr=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn citygate errors into a clear message on stderr and an exit code."""
    try:
        yield
    except USAGE_ERRORS as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
        raise typer.Exit(2) from e
    except CitygateError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
        raise typer.Exit(1) from e


def build_app() -> typer.Typer:
    from citygate.cli import bench, cases, chaos, cloud, demo, gateway, pki, profiles, rules, service, sim

    app = typer.Typer(
        name="citygate",
        help="citygate: municipal sensor data from the street to the city's services, without loss.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,  # locals may hold keys and tokens
    )
    app.add_typer(pki.app, name="pki")
    app.add_typer(profiles.app, name="profiles")
    app.add_typer(rules.app, name="rules")
    app.add_typer(cases.app, name="cases")
    app.add_typer(service.app, name="service")
    app.add_typer(gateway.app, name="gateway")
    app.add_typer(cloud.app, name="cloud")
    app.command("bench")(bench.bench)
    app.command("chaos")(chaos.chaos)
    app.command("demo")(demo.demo)
    app.add_typer(sim.app, name="sim")
    return app


def main(argv: list[str] | None = None) -> None:
    app: Callable[..., object] = build_app()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="citygate")
