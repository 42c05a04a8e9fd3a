"""The chaos run as a markdown table (docs/RELIABILITY.md quotes the latest long run)."""

from __future__ import annotations

from collections.abc import Sequence

from citygate.chaos.harness import ScenarioResult


def markdown(results: Sequence[ScenarioResult], *, command: str, generated_at: str) -> str:
    lines = [
        f"Generated {generated_at} by `{command}`.",
        "",
        "| # | scenario | mode | result | s | readings expected | stored | lost | duplicated | figures |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a = r.audit
        figures = ", ".join(
            f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in r.figures.items()
        )
        lines.append(
            f"| {r.number} | {r.name} | {'long' if r.long else 'fast'} | "
            f"{'pass' if r.passed else '**FAIL**'} | {r.seconds:.0f} | {a.get('expected', 0):,} | "
            f"{a.get('stored', 0):,} | {a.get('lost', 0):,} | {a.get('duplicated', 0):,} | {figures} |"
        )
    total = {k: sum(r.audit.get(k, 0) for r in results) for k in ("expected", "stored", "lost", "duplicated")}
    lines += [
        "",
        f"{sum(r.passed for r in results)} of {len(results)} passed; "
        f"{total['expected']:,} readings expected, "
        f"{total['stored']:,} stored, {total['lost']:,} lost, {total['duplicated']:,} duplicated.",
    ]
    failed = [r for r in results if not r.passed]
    for r in failed:
        lines += ["", "```", r.describe(), "```"]
    return "\n".join(lines) + "\n"
