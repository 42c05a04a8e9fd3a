"""``citygate rules``: check the rules that open cases before the service runs them.

An operator points ``check`` at the city's rules directory (with ``--shipped`` to layer
it over the shipped rules, as the service does) and sees every rule that would be in
force, which shipped rules the city overrides, and every problem at once: each names the
file, the rule and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from citygate.cli import cli_errors, err_console
from citygate.cli.profiles import ProfilesDirOption
from citygate.contract.profiles import ProfileRegistry
from citygate.service.conditions import format_duration
from citygate.service.rules import Rule, RuleError, load_rules, packaged_rules_dir

app = typer.Typer(
    help="Rules: which readings open a case for which city service.",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Rules: which readings open a case for which city service."""
    # A callback keeps ``check`` a subcommand while it is the only one.


def _condition(rule: Rule) -> str:
    text = rule.when.describe()
    if rule.for_ns:
        text += f" for {format_duration(rule.for_ns)}"
    if rule.silence_after_ns is not None:
        text += f" ({format_duration(rule.silence_after_ns)})"
    if rule.offline_after_ns is not None:
        text += f" after {format_duration(rule.offline_after_ns)}"
    if rule.clear is not None:
        text += f"; clear: {rule.clear.describe()}"
    if rule.clear_for_ns:
        text += f" for {format_duration(rule.clear_for_ns)}"
    if rule.active_hours is not None:
        text += f"; {rule.active_hours.text}"
    return text


@app.command("check")
def check(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Rule files or directories of *.toml, in override order (default: the shipped rules)."
        ),
    ] = None,
    shipped: Annotated[
        bool,
        typer.Option("--shipped", help="Load the shipped rules first, under PATHS (as the service does)."),
    ] = False,
    profiles_dir: ProfilesDirOption = None,
    timezone: Annotated[
        str, typer.Option("--timezone", help="The city's time zone for active_hours (IANA name).")
    ] = "UTC",
) -> None:
    """Load the rules and report them; exit 2 listing every problem (file, rule, key)."""
    with cli_errors():
        registry = ProfileRegistry(extra_dirs=profiles_dir or ())
        dirs = list(paths or [])
        if shipped or not dirs:
            dirs.insert(0, packaged_rules_dir())  # type: ignore[arg-type]
        try:
            ruleset = load_rules(dirs, registry, timezone=timezone)
        except RuleError as e:
            for problem in e.problems:
                err_console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
            err_console.print(f"{len(e.problems)} problem(s); no rules loaded", highlight=False, markup=False)
            raise typer.Exit(2) from e
        for w in ruleset.warnings:
            err_console.print(f"[bold yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
        table = Table(title="Rules")
        table.add_column("id", no_wrap=True)
        table.add_column("service", no_wrap=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("condition", min_width=30)
        for r in ruleset:
            table.add_row(Text(r.id), Text(r.service), Text(r.severity), Text(_condition(r)))
        console = Console()
        console.print(table)
        for rid, old, new in ruleset.overrides:
            console.print(Text(f"{rid}: {new} overrides {old}"))
        console.print(
            Text(
                f"{len(ruleset)} rules OK ({len(ruleset.overrides)} overridden, "
                f"{len(ruleset.warnings)} warnings)"
            )
        )
