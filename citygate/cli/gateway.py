"""``citygate gateway``: run the agent, show its health, read its dead letters."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from citygate.cli import cli_errors

app = typer.Typer(help="The gateway agent: MQTT intake -> durable outbox -> cloud.", no_args_is_help=True)
console = Console()

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file ([gateway] section); env CITYGATE_GATEWAY_*.",
        exists=True,
        dir_okay=False,
    ),
]


@app.command()
def run(
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the agent until SIGTERM/SIGINT, then drain and exit."""
    from citygate.gateway.agent import GatewayAgent
    from citygate.gateway.settings import GatewaySettings
    from citygate.logs import configure_logging

    with cli_errors():
        configure_logging(log_level)
        agent = GatewayAgent(GatewaySettings.load(config))
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        agent.run_until(stop)


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(dt.timedelta(seconds=int(seconds)))


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the running agent's health numbers (from its local /healthz)."""
    from citygate.gateway.settings import GatewaySettings

    with cli_errors():
        s = GatewaySettings.load(config)
        url = f"http://{s.http_host}:{s.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                doc = orjson.loads(r.read())
        except urllib.error.HTTPError as e:
            doc = orjson.loads(e.read())
        except (urllib.error.URLError, OSError) as e:
            console.print(f"[red]agent not reachable at {url}: {e}[/]")
            raise typer.Exit(1) from e
        if as_json:
            typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
            return
        t = Table(title=f"citygate gateway ({'healthy' if doc.get('healthy') else 'UNHEALTHY'})")
        t.add_column("metric")
        t.add_column("value", justify="right")
        rows = [
            ("uptime", _fmt_age(doc["uptime_s"])),
            ("broker connected", str(doc["broker_connected"])),
            ("readings in", f"{doc['readings_in']:,}"),
            ("readings out", f"{doc['readings_out']:,}"),
            ("outbox depth", f"{doc['outbox_depth']:,}"),
            ("outbox bytes", f"{doc['outbox_bytes']:,}"),
            ("oldest unsent", _fmt_age(doc["oldest_unsent_age_s"])),
            ("last forward", str(doc["last_forward_at"] or "-")),
            ("disk free", f"{doc['disk_free_bytes'] / 1e9:.2f} GB"),
            ("memory (RSS)", f"{doc['rss_bytes'] / 1e6:.1f} MB"),
            ("CPU", f"{doc['cpu_percent']:.1f} %"),
            ("certificate days left", f"{doc['cert_days_left']:.1f}"),
        ]
        rows += [(f"rejected: {k}", f"{v:,}") for k, v in sorted(doc["rejected"].items())]
        rows += [(f"dropped: {k}", f"{v:,}") for k, v in sorted(doc["dropped"].items())]
        for k, v in rows:
            t.add_row(k, v)
        console.print(t)


@app.command()
def deadletters(
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the newest dead letters (rejected payloads) with their reasons."""
    from citygate.gateway.outbox import Outbox
    from citygate.gateway.settings import GatewaySettings

    with cli_errors():
        s = GatewaySettings.load(config)
        outbox = Outbox(s.outbox_path, s.outbox_limits())
        try:
            items = outbox.deadletters(limit=limit, reason=reason)
        finally:
            outbox.close()
        if as_json:
            rows = [
                {
                    "received": dt.datetime.fromtimestamp(d.received_ns / 1e9, dt.UTC).isoformat(),
                    "device_id": d.device_id,
                    "reason": d.reason,
                    "detail": d.detail,
                    "payload": d.payload.decode("utf-8", "replace"),
                }
                for d in items
            ]
            typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
            return
        t = Table(title=f"dead letters (newest {limit})")
        for col in ("received (UTC)", "device", "reason", "detail", "payload"):
            t.add_column(col, overflow="fold")
        for d in items:
            t.add_row(
                f"{dt.datetime.fromtimestamp(d.received_ns / 1e9, dt.UTC):%Y-%m-%d %H:%M:%S}",
                d.device_id or "-",
                d.reason,
                d.detail,
                d.payload[:80].decode("utf-8", "replace"),
            )
        console.print(t)
