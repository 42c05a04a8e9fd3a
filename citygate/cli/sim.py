"""``citygate sim``: run a simulated device fleet, and audit its ledger against the database."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from citygate.cli import cli_errors
from citygate.errors import ConfigError
from citygate.simulators.link import ClientKind

app = typer.Typer(
    help="Device fleet simulator: realistic signals, faults on demand, a ledger and its audit.",
    no_args_is_help=True,
)

console = Console()
err_console = Console(stderr=True)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--gateway-broker must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@app.command()
def run(
    devices: Annotated[int, typer.Option("--devices", "-n", min=1, help="Number of devices.")] = 10,
    gateway_broker: Annotated[
        str, typer.Option("--gateway-broker", help="The gateway's broker, device listener (HOST:PORT).")
    ] = "127.0.0.1:8883",
    pki_dir: Annotated[
        Path | None,
        typer.Option("--pki-dir", help="citygate PKI; missing device certificates are issued there."),
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Device ids are PREFIX-00001, ...")] = "sim",
    profile_mix: Annotated[
        str | None, typer.Option("--profile-mix", help="Weights, e.g. air_quality=3,noise=1 (default: all).")
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=0.001, help="Seconds between readings (default: each profile's)."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.001, help="Total readings/s over the fleet (load tests).")
    ] = None,
    duration: Annotated[float | None, typer.Option("--duration", min=0.0, help="Seconds to produce.")] = None,
    count: Annotated[int | None, typer.Option("--count", min=0, help="Readings per device.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of signals, faults and jitter.")] = 1,
    ledger: Annotated[
        Path | None, typer.Option("--ledger", help="Ledger file (appended; sequences resume from it).")
    ] = None,
    confirm: Annotated[
        bool, typer.Option("--confirm/--no-confirm", help="Keep readings until the gateway acks them.")
    ] = True,
    resend_after: Annotated[
        float, typer.Option("--resend-after", min=0.1, help="Resend unconfirmed readings after S seconds.")
    ] = 10.0,
    device_memory: Annotated[
        int, typer.Option("--device-memory", min=1, help="Readings a device can keep (oldest dropped).")
    ] = 1000,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="KIND[:key=value,...] (repeatable); kinds: offline burst out_of_range malformed nan "
            "clock_skew duplicate wrong_topic expired_cert revoked_cert reboot; keys: share devices count "
            "at every duration size skew behind down. See docs/SIMULATOR.md.",
        ),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            help="The gateway these devices report through: they are assigned to it in the inventory "
            "(default: the only registered gateway, if there is exactly one).",
        ),
    ] = None,
    ramp: Annotated[float | None, typer.Option("--ramp", min=0.0, help="Connection ramp-up (s).")] = None,
    connect_concurrency: Annotated[
        int, typer.Option("--connect-concurrency", min=1, help="TLS handshakes at once.")
    ] = 8,
    inflight: Annotated[int, typer.Option("--inflight", min=1, help="Unanswered publishes per device.")] = 16,
    drain: Annotated[
        float, typer.Option("--drain", min=0.0, help="Seconds to wait for confirmations at the end.")
    ] = 10.0,
    client: Annotated[
        ClientKind,
        typer.Option(
            "--client",
            help="MQTT client: aiomqtt (paho) or lite (citygate's own, batched writes, ~6x faster).",
        ),
    ] = "aiomqtt",
    utc_offset: Annotated[
        float,
        typer.Option(
            "--utc-offset",
            min=-12.0,
            max=14.0,
            help="The city's local time, UTC + HOURS: the signals follow it (rush hours, daylight).",
        ),
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    stats_file: Annotated[
        Path | None,
        typer.Option("--stats-file", help="Rewrite the live summary (JSON) there every second, for tools."),
    ] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Live display (default: on a terminal).")
    ] = None,
) -> None:
    """Run N simulated devices, each with its own certificate, against the gateway's broker."""
    from citygate.certs.pki import CaName, Pki
    from citygate.certs.settings import PkiSettings
    from citygate.contract.inventory import Inventory
    from citygate.contract.profiles import ProfileRegistry
    from citygate.simulators import provision
    from citygate.simulators.faults import CERT_FAULTS, FaultKind, parse_fault, resolve
    from citygate.simulators.fleet import Fleet, FleetSettings
    from citygate.simulators.ledger import LedgerWriter
    from citygate.simulators.progress import FleetStats, LiveView, summary_table

    with cli_errors():
        host, port = _host_port(gateway_broker)
        if rate is not None and interval is not None:
            raise ConfigError("--rate and --interval exclude each other")
        if duration is None and count is None:
            raise ConfigError("say how long: --duration SECONDS or --count READINGS")
        requests = [parse_fault(f) for f in fault or []]
        settings = PkiSettings.load(None, dir=pki_dir)
        pki = Pki(settings)
        registry = ProfileRegistry()
        if gateway is None:
            registered = list(Inventory.load(pki.inventory_path).gateways)
            gateway = registered[0] if len(registered) == 1 else None
            if gateway is None:
                err_console.print(
                    f"note: {len(registered)} gateways registered and no --gateway: devices not yet assigned "
                    "to one are refused by the cloud (not_assigned)"
                )
        records = provision.ensure_devices(
            pki, prefix, devices, provision.parse_mix(profile_mix, registry), registry, gateway=gateway
        )
        plan = resolve(requests, [r.device_id for r in records], seed)
        refused: dict[str, FaultKind] = {}
        for kind in CERT_FAULTS:
            extra = provision.ensure_cert_fault_devices(
                pki, prefix, kind, plan.cert_devices.get(kind, 0), registry
            )
            records += extra
            refused.update({r.device_id: kind for r in extra})
        if plan.cert_devices.get(FaultKind.REVOKED_CERT):
            err_console.print("note: the broker sees revocations after a reload (systemctl reload mosquitto)")
        fleet_devices = provision.build_fleet(pki, records, registry, plan, refused)
        fleet_settings = FleetSettings(
            host=host,
            port=port,
            ca=pki.ca_cert_path(CaName.INFRA),
            interval_s=interval,
            rate=rate,
            duration_s=duration,
            count=count,
            seed=seed,
            confirm=confirm,
            resend_after_s=resend_after,
            memory=device_memory,
            ramp_s=ramp,
            connect_concurrency=connect_concurrency,
            inflight=inflight,
            drain_s=drain,
            client=client,
            utc_offset_h=utc_offset,
        )
        writer = LedgerWriter(ledger) if ledger is not None else None
        stats = FleetStats()
        fleet = Fleet(fleet_settings, fleet_devices, ledger=writer, stats=stats)
        show = progress if progress is not None else (sys.stderr.isatty() and not as_json)
        try:
            asyncio.run(_run(fleet, LiveView(stats, err_console) if show else None, stats, stats_file))
        finally:
            if writer is not None:
                writer.close()
        summary = stats.summary() | {"seed": seed, "ledger": str(ledger) if ledger else None}
        if as_json:
            typer.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        else:
            console.print(summary_table(summary))


async def _run(fleet: object, view: object, stats: object, stats_file: Path | None) -> None:
    from citygate.fsutil import atomic_write
    from citygate.simulators.fleet import Fleet
    from citygate.simulators.progress import FleetStats, LiveView

    assert isinstance(fleet, Fleet) and isinstance(stats, FleetStats)

    async def publish_stats() -> None:
        assert stats_file is not None
        while True:
            atomic_write(stats_file, orjson.dumps(stats.summary()), mode=0o644)
            await asyncio.sleep(1.0)

    publisher = asyncio.get_running_loop().create_task(publish_stats()) if stats_file else None
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, fleet.stop)
        loop.add_signal_handler(signal.SIGTERM, fleet.stop)
    task = loop.create_task(fleet.run())
    if isinstance(view, LiveView):
        with view:
            while not task.done():
                await asyncio.wait({task}, timeout=0.5)
                view.tick()
    try:
        await task
    finally:
        if publisher is not None and stats_file is not None:
            publisher.cancel()
            atomic_write(stats_file, orjson.dumps(stats.summary()), mode=0o644)


@app.command()
def audit(
    ledger: Annotated[Path, typer.Option("--ledger", help="The simulator's ledger file.", exists=True)],
    influx: Annotated[
        str | None, typer.Option("--influx", help="InfluxDB URL (v1 /query), e.g. http://127.0.0.1:8086.")
    ] = None,
    db: Annotated[str, typer.Option("--db", help="InfluxDB database.")] = "citygate",
    vm: Annotated[
        str | None, typer.Option("--vm", help="VictoriaMetrics URL instead of InfluxDB (/api/v1/export).")
    ] = None,
    device: Annotated[
        list[str] | None, typer.Option("--device", help="Audit only these devices (repeatable).")
    ] = None,
    margin: Annotated[
        float, typer.Option("--margin", min=0.0, help="Also read S seconds around the ledger's time range.")
    ] = 0.0,
    per_device: Annotated[
        bool, typer.Option("--per-device/--total-only", help="Show every device (table) or the total only.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Compare the ledger with the database: expected, stored, lost, duplicated, unexpected.

    Exits 0 when nothing is lost, duplicated or unexpected, 3 otherwise.
    """
    from rich.table import Table

    from citygate.simulators.audit import COUNTS, InfluxV1Source, PointSource, VictoriaMetricsSource
    from citygate.simulators.audit import audit as run_audit

    with cli_errors():
        if (influx is None) == (vm is None):
            raise ConfigError("give exactly one of --influx URL or --vm URL")
        source: PointSource
        if vm is not None:
            source = VictoriaMetricsSource(vm)
        else:
            assert influx is not None
            source = InfluxV1Source(influx, db)
        try:
            report = run_audit(ledger, source, devices=device, margin_s=margin)
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        if as_json:
            typer.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
        else:
            cols = ("expected", "stored", "lost", "duplicated", "unexpected", "dropped", "held_lost")
            table = Table(
                title=f"audit of {ledger} ({report.ledger_records:,} records, {report.seconds:.2f} s)"
            )
            rows = [*report.devices, report.total] if per_device else [report.total]
            table.add_column("device", no_wrap=True, min_width=min(40, max(len(d.device_id) for d in rows)))
            for c in cols:
                table.add_column(c, justify="right")
            for d in rows:
                bad = not d.clean
                style = "bold red" if bad else ("bold" if d is report.total else "")
                table.add_row(d.device_id, *(f"{getattr(d, c):,}" for c in cols), style=style)
            console.print(table)
            extras = {
                c: getattr(report.total, c) for c in COUNTS if c not in cols and getattr(report.total, c)
            }
            if extras:
                console.print(", ".join(f"{k}={v:,}" for k, v in extras.items()))
            for note in report.notes:
                err_console.print(f"note: {note}")
        if not report.total.clean:
            raise typer.Exit(3)
