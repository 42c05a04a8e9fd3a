"""``citygate gateway``: run the agent, show its health, read its dead letters."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from citygate.cli import cli_errors
from citygate.contract.rfc3339 import format_rfc3339_timestamp

if TYPE_CHECKING:
    from citygate.gateway.outbox import Outbox

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


@contextmanager
def _outbox(config: Path | None) -> Iterator[Outbox]:
    """The configured outbox, opened without its bookkeeper (the agent may be running), closed after."""
    from citygate.gateway.outbox import Outbox
    from citygate.gateway.settings import GatewaySettings

    s = GatewaySettings.load(config)
    outbox = Outbox(s.outbox_path, s.outbox_limits(), bookkeeper=False)
    try:
        yield outbox
    finally:
        outbox.close()


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
    import httpx

    from citygate.gateway.settings import GatewaySettings

    with cli_errors():
        s = GatewaySettings.load(config)
        url = f"http://{s.http_host}:{s.http_port}/healthz"
        try:
            # Any status: an unhealthy agent answers 503 with the same document.
            doc = orjson.loads(httpx.get(url, timeout=5).content)
        except (httpx.TransportError, OSError) as e:
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
        rows += [(f"held: {k}", f"{v:,}") for k, v in sorted(doc.get("held", {}).items())]
        if doc.get("held"):
            rows.append(("oldest held", _fmt_age(doc.get("oldest_held_age_s"))))
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
    with cli_errors():
        with _outbox(config) as outbox:
            items = outbox.deadletters(limit=limit, reason=reason)
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
            # Everything but the time is device text: plain Text (never rich markup, so a
            # payload like {"[/]":1} is shown, not parsed), control characters made visible.
            t.add_row(
                f"{dt.datetime.fromtimestamp(d.received_ns / 1e9, dt.UTC):%Y-%m-%d %H:%M:%S}",
                plain(d.device_id or "-"),
                plain(d.reason),
                plain(d.detail),
                plain(d.payload[:80].decode("utf-8", "replace")),
            )
        console.print(t)


def visible(text: str) -> str:
    """``text`` with every character a terminal could act on spelled out (``\\x1b``,
    ``\\u202e``): control characters (C0, DEL, C1), format characters (bidi overrides,
    zero-width), line and paragraph separators. A backslash already in the text stays as it is."""
    return "".join(ch if ch.isprintable() else _escape(ord(ch)) for ch in text)


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def plain(text: str) -> Text:
    """Device text for a table cell: :func:`visible`, as a Text (no markup is parsed)."""
    return Text(visible(text))


held_app = typer.Typer(
    help="Readings the cloud refused for a reason the gateway does not share, kept in the outbox.",
    no_args_is_help=True,
)
app.add_typer(held_app, name="held")

ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Only held readings of this reason.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="Only held readings of this device.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]


@held_app.command("list")
def held_list(
    config: ConfigOpt = None,
    reason: ReasonOpt = None,
    device: DeviceOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Readings to show (0: totals only).")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """How many readings are held, by reason, and the oldest of them."""
    with cli_errors():
        with _outbox(config) as outbox:
            groups = outbox.held_groups()
            items = outbox.held_readings(limit, reason=reason, device_id=device) if limit else []
        now = dt.datetime.now(dt.UTC).timestamp()
        if as_json:
            doc = {
                "groups": [
                    {
                        "reason": g.reason,
                        "count": g.count,
                        "bytes": g.bytes,
                        "devices": g.devices,
                        "oldest_age_s": round(now - g.oldest_received_ns / 1e9, 3),
                    }
                    for g in groups
                ],
                "readings": [
                    {
                        "device_id": r.device_id,
                        "seq": r.seq,
                        "received": format_rfc3339_timestamp(r.received_ns / 1e9),
                        "reason": why,
                        "detail": detail,
                        "next_retry": format_rfc3339_timestamp(retry_ns / 1e9) if retry_ns else "now",
                        "attempts": attempts,
                        "body": r.wire().decode("utf-8", "replace"),
                    }
                    for r, why, detail, retry_ns, attempts in items
                ],
            }
            typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
            return
        total = sum(g.count for g in groups)
        if not total:
            console.print("nothing held")
            return
        t = Table(title=f"held readings: {total:,}")
        for col in ("reason", "readings", "devices", "oldest"):
            t.add_column(col, justify="left" if col == "reason" else "right")
        for g in groups:
            t.add_row(g.reason, f"{g.count:,}", f"{g.devices:,}", _fmt_age(now - g.oldest_received_ns / 1e9))
        console.print(t)
        if items:
            t = Table(title=f"oldest {len(items)} held readings")
            for col in ("received (UTC)", "device", "seq", "reason", "attempts", "detail"):
                t.add_column(col, overflow="fold")
            for r, why, detail, _, attempts in items:
                t.add_row(
                    f"{dt.datetime.fromtimestamp(r.received_ns / 1e9, dt.UTC):%Y-%m-%d %H:%M:%S}",
                    Text(r.device_id),
                    str(r.seq),
                    why,
                    str(attempts),
                    Text(detail),
                )
            console.print(t)


def _held_action(config: Path | None, reason: str | None, device: str | None, yes: bool, verb: str) -> int:
    with _outbox(config) as outbox:
        matching = outbox.count_held(reason=reason, device_id=device)
        what = " ".join(
            x for x in (f"reason {reason}" if reason else "", f"device {device}" if device else "") if x
        )
        scope = f" ({what})" if what else " (all)"
        if not matching:
            console.print(f"no held readings match{scope}")
            return 0
        if not yes and not typer.confirm(f"{verb} {matching:,} held readings{scope}?"):
            raise typer.Exit(1)
        if verb == "retry":
            return outbox.retry_held_now(reason=reason, device_id=device)
        return outbox.discard_held(reason=reason, device_id=device)


def _held_command(name: str, verb: str, doc: str, done: str) -> None:
    """``citygate gateway held release|discard``: the same command for both actions; ``done``
    is the closing line, ``{n}`` the number of readings acted on."""

    def command(
        config: ConfigOpt = None, reason: ReasonOpt = None, device: DeviceOpt = None, yes: YesOpt = False
    ) -> None:
        with cli_errors():
            n = _held_action(config, reason, device, yes, verb)
            console.print(done.format(n=n))

    command.__doc__ = doc
    held_app.command(name)(command)


_held_command(
    "release",
    "retry",
    "Send held readings to the cloud again now (after fixing what the cloud lacked).",
    "{n:,} held readings will be sent again within seconds (the agent picks them up)",
)
_held_command(
    "discard",
    "discard",
    "Give held readings up: they move to the dead letters, counted as dropped.operator_discarded.",
    "{n:,} held readings discarded (now in the dead letters)",
)


@app.command("check-config")
def check_config(
    config: ConfigOpt = None,
    cloud_config: Annotated[
        Path | None,
        typer.Option(
            "--cloud-config",
            exists=True,
            dir_okay=False,
            help="The cloud's TOML ([cloud]): warn where its windows disagree with this gateway's.",
        ),
    ] = None,
) -> None:
    """Load the configuration and the files it names, then exit (0 if the agent would start)."""
    from citygate.contract import windows as w
    from citygate.contract.inventory import Inventory
    from citygate.contract.profiles import ProfileRegistry
    from citygate.gateway.agent import gateway_id_from_cert
    from citygate.gateway.settings import GatewaySettings

    with cli_errors():
        s = GatewaySettings.load(config)
        gateway_id = gateway_id_from_cert(s)
        ProfileRegistry(extra_dirs=s.profiles_dirs)
        devices = len(Inventory.load(s.inventory))
        typer.echo(
            f"configuration OK: gateway {gateway_id}, {devices} devices; windows: "
            f"max_past_s={s.max_past_s:g}, max_future_s={s.max_future_s:g}, "
            f"outbox_max_age_s={s.outbox_max_age_s:g}"
        )
        if cloud_config is not None:
            gateway = {k: float(getattr(s, k)) for k in w.GATEWAY_DEFAULTS}
            for line in w.check_against(cloud_config, "cloud", gateway, i_am_gateway=True):
                typer.echo(line)
