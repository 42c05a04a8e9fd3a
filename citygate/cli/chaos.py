"""``citygate chaos``: faults, attacks and bad input against the real system, judged by the audit."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import orjson
import typer

from citygate.cli import cli_errors
from citygate.errors import ConfigError


def chaos(
    scenarios: Annotated[
        list[str] | None, typer.Argument(help="Scenario names or numbers (default: all).")
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast/--long", help="The CI sizes, or the long run (default).")
    ] = False,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Runs of each scenario.")] = 1,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write results.json and report.md there (default: print only)."),
    ] = None,
    work: Annotated[
        Path | None, typer.Option("--work", help="Working directory (default: a temporary one, removed).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of fault timing.")] = 1,
    list_only: Annotated[bool, typer.Option("--list", help="List the scenarios and exit.")] = False,
) -> None:
    """Run chaos scenarios: each prints what it did, what it checked and the audit.

    Needs root for the disk-full scenario (it mounts a small tmpfs). Exits 1 when any
    scenario fails.
    """
    from citygate.chaos import scenarios as all_scenarios
    from citygate.chaos.harness import run_scenario
    from citygate.chaos.report import markdown

    with cli_errors():
        known = all_scenarios()
        if list_only:
            for s in known:
                typer.echo(f"{s.number:>2}  {s.name:21} {s.title}")
            return
        by_key = {s.name: s for s in known} | {str(s.number): s for s in known}
        unknown = [n for n in scenarios or [] if n not in by_key]
        if unknown:
            raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; see citygate chaos --list")
        chosen = [by_key[n] for n in scenarios] if scenarios else list(known)
        results = []
        with tempfile.TemporaryDirectory(prefix="citygate-chaos-") as tmp:
            base = work or Path(tmp)
            for sc in chosen:
                for i in range(runs):
                    typer.echo(
                        f"--- {sc.number}. {sc.name} run {i + 1}/{runs} ({'fast' if fast else 'long'})",
                        err=True,
                    )
                    r = run_scenario(
                        sc, base / f"{sc.number:02d}-{sc.name}-{i + 1}", long=not fast, seed=seed + i
                    )
                    typer.echo(r.describe())
                    results.append(r)
        failed = [r for r in results if not r.passed]
        typer.echo(
            f"\n{len(results) - len(failed)} of {len(results)} passed; readings audited "
            f"{sum(r.audit.get('expected', 0) for r in results):,}, lost "
            f"{sum(r.audit.get('lost', 0) for r in results):,}, duplicated "
            f"{sum(r.audit.get('duplicated', 0) for r in results):,}"
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            doc = {
                "generated_at": dt.datetime.now(dt.UTC).isoformat(),
                "command": "citygate chaos " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
                "results": [r.to_json() for r in results],
            }
            (out / "results.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            (out / "report.md").write_text(
                markdown(results, command=str(doc["command"]), generated_at=str(doc["generated_at"]))
            )
        if failed:
            raise typer.Exit(1)
