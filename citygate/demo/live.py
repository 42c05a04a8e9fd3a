"""The demo's live terminal view: gateways, their links, the cloud's fleet view."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from citygate.demo.stack import DemoStack


def _age(s: object) -> str:
    if not isinstance(s, int | float):
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _int(v: object) -> int:
    return int(v) if isinstance(v, int | float) else 0


def _counts(v: object) -> int:
    return sum(_int(x) for x in v.values()) if isinstance(v, dict) else 0


def render(stack: DemoStack, elapsed_s: float, note: str, rates: dict[str, float]) -> Panel:
    fleet = stack.fleet() or {}
    gateways = fleet.get("gateways")
    cloud_status = {
        str(g.get("gateway_id")): str(g.get("status"))
        for g in (gateways if isinstance(gateways, list) else [])
        if isinstance(g, dict)
    }
    t = Table(expand=True)
    left = ("gateway", "link", "cloud")
    columns = (
        "gateway",
        "broker",
        "link",
        "in",
        "forwarded",
        "per s",
        "backlog",
        "oldest",
        "rejected",
        "dropped",
        "cloud",
    )
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right", no_wrap=True)
    for node in stack.nodes:
        h = node.health() or {}
        link = Text("up", style="green") if node.proxy.is_up else Text("CUT", style="bold red")
        status = cloud_status.get(node.name, "-")
        style = {"online": "green", "stale": "yellow", "offline": "red"}.get(status, "")
        t.add_row(
            node.name,
            "ok" if h.get("broker_connected") else "-",
            link,
            f"{_int(h.get('readings_in')):,}",
            f"{_int(h.get('readings_out')):,}",
            f"{rates.get(node.name, 0.0):,.0f}",
            f"{_int(h.get('outbox_depth')):,}",
            _age(h.get("oldest_unsent_age_s")),
            f"{_counts(h.get('rejected')):,}",
            f"{_counts(h.get('dropped')):,}",
            Text(status, style=style),
        )
    header = Text.assemble(
        ("citygate demo", "bold"),
        f"  running {elapsed_s:,.0f} s   ",
        ("dashboard ", "dim"),
        f"{stack.cloud_url}/dashboard",
        ("   token file ", "dim"),
        str(stack.dir / "operator-token"),
    )
    parts: list[Table | Text] = [header, t, Text(note, style="cyan")]
    if stack.service is not None:
        got = len(stack.service.receiver.requests)
        parts.append(Text(f"case events at the city's receiver: {got:,}", style="bold"))
        parts += [Text("  " + line, style="dim") for line in stack.service.latest()]
    return Panel(Group(*parts), title="Ctrl-C stops, drains and audits")
