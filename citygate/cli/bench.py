"""``citygate bench``: benchmark scenarios with baselines measured in the same run."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from citygate.cli import cli_errors


def bench(
    scenarios: Annotated[list[str] | None, typer.Argument(help="Scenarios to run (default: all).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for results.json, report.md, PNGs.")] = Path(
        "bench/out"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes: minutes, not tens of minutes.")
    ] = False,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Runs per scenario (min/median/max).")] = 3,
    list_only: Annotated[bool, typer.Option("--list", help="List the scenarios and exit.")] = False,
) -> None:
    """Run benchmark scenarios and write a JSON file, a markdown report and plots."""
    from citygate.benchmarks import SCENARIOS, run_scenarios, write_report

    with cli_errors():
        if list_only:
            for s in SCENARIOS:
                typer.echo(f"{s.name:16} {s.title}")
            return
        runs = run_scenarios(
            scenarios or [], quick=quick, repeats=repeats, log=lambda m: typer.echo(m, err=True)
        )
        command = "citygate bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        files = write_report(runs, out, command=command, quick=quick)
        typer.echo((out / "report.md").read_text())
        typer.echo(f"wrote {', '.join(str(p) for p in files.values())}", err=True)
        if any(r.errors for r in runs):
            raise typer.Exit(1)
