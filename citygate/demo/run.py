"""``citygate demo``: bring the whole system up, show it live, stop it, audit it."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from citygate.certs.pki import CaName
from citygate.demo.live import render
from citygate.demo.service import DemoService
from citygate.demo.stack import DemoOptions, DemoStack, FleetProcess, GatewayNode, SimRun, stop_fleets


@dataclass
class DemoResult:
    audits: list[dict[str, object]] = field(default_factory=list)
    drained: bool = False
    directory: Path | None = None
    events: dict[str, int] | None = None  # the service layer's audit (DemoService.audit)
    public: dict[str, Any] | None = None  # what the public surfaces answered (DemoPublic.exercise)

    @property
    def events_lost(self) -> int:
        e = self.events or {}
        return e.get("lost", 0) + e.get("twice_with_different_ids", 0)

    @property
    def lost(self) -> int:
        return sum(int(v) for a in self.audits if isinstance(v := a.get("lost", 0), int | float))


def start_fleet(
    stack: DemoStack, node: GatewayNode, devices: int, index: int, duration_s: float | None
) -> FleetProcess:
    """One simulator process per gateway: its devices, its district, its own ledger."""
    run = SimRun(
        devices,
        # The demo stops the devices itself (SIGINT); the simulator wants an upper bound.
        duration_s=(duration_s or 864_000) + 60,
        interval_s=stack.opts.interval_s,
        client=None,
        prefix=node.district,
        seed=stack.opts.seed + index,
    )
    return stack.start_fleet(node, run, stack.dir / "fleets" / node.name)


def audit_ledger(influx_url: str, ledger: Path, db: str = "citygate") -> dict[str, object]:
    """The simulator's audit of one ledger against InfluxDB: the totals (expected, stored, lost, ...)."""
    from dataclasses import asdict

    from citygate.errors import CitygateError
    from citygate.simulators.audit import InfluxV1Source
    from citygate.simulators.audit import audit as run_audit

    source = InfluxV1Source(influx_url, db)
    try:
        return dict(asdict(run_audit(ledger, source).total))
    except CitygateError as e:
        return {"error": str(e)}
    finally:
        source.close()


def audit(stack: DemoStack, fleet: FleetProcess) -> dict[str, object]:
    assert stack.influx is not None
    return audit_ledger(stack.influx.url, fleet.ledger) | {"gateway": fleet.node.name}


def run_demo(
    opts: DemoOptions, *, duration_s: float | None, outage_s: float | None, console: Console
) -> DemoResult:
    stack = DemoStack(opts)
    result = DemoResult(directory=opts.directory)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fleets: list[FleetProcess] = []
    try:
        console.print(f"[bold]citygate demo[/] in {opts.directory}")
        with console.status("starting PKI, InfluxDB, cloud, gateways and brokers ..."):
            stack.start_infrastructure()
        per_gateway = max(1, opts.devices // max(1, len(stack.nodes)))
        for i, node in enumerate(stack.nodes):
            fleets.append(start_fleet(stack, node, per_gateway, i, duration_s))
        console.print(
            f"dashboard: [bold]{stack.cloud_url}/dashboard[/] (the demo's server certificate "
            f"comes from its own CA: {stack.dir / 'pki' / 'infra-ca' / 'ca.pem'})"
        )
        console.print(f"operator token: {stack.operator_token}  (also in {stack.dir / 'operator-token'})")
        if stack.public is not None:
            u = stack.cloud_url
            console.print(
                f"public, no sign-in: progress page [bold]{u}/public[/]; "
                f"Open311 {u}/open311/v2/services.json; "
                f"SensorThings {u}/sta/v1.1; NGSI-LD {u}/ngsi-ld/v1/entities?type=AirQualityObserved"
            )
        outage_at = None
        if outage_s:
            outage_at = 20.0 if duration_s is None else max(10.0, (duration_s - outage_s) / 3)
        t0 = time.monotonic()
        last: dict[str, tuple[float, int]] = {}
        note = "devices connecting ..."
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set():
                elapsed = time.monotonic() - t0
                if duration_s is not None and elapsed >= duration_s:
                    break
                target = stack.nodes[0]
                if outage_at is not None and outage_s is not None:
                    if outage_at <= elapsed < outage_at + outage_s and target.proxy.is_up:
                        target.proxy.cut()
                        note = f"OUTAGE: {target.name}'s link to the cloud is cut for {outage_s:.0f} s"
                    elif elapsed >= outage_at + outage_s and not target.proxy.is_up:
                        target.proxy.restore()
                        note = f"{target.name}'s link is back: the backlog drains while live data flows"
                rates = {}
                for node in stack.nodes:
                    h = node.health() or {}
                    v = h.get("readings_out", 0)
                    out = int(v) if isinstance(v, int | float) else 0
                    t_prev, out_prev = last.get(node.name, (time.monotonic(), out))
                    dt_s = time.monotonic() - t_prev
                    rates[node.name] = (out - out_prev) / dt_s if dt_s > 0 else 0.0
                    if out and note.startswith("devices connecting"):
                        note = f"{opts.devices} devices publishing every {opts.interval_s:g} s"
                    last[node.name] = (time.monotonic(), out)
                dead = [f for f in fleets if f.proc.poll() is not None]
                if dead:
                    note = f"simulator for {dead[0].node.name} exited; see {dead[0].log}"
                live.update(render(stack, elapsed, note, rates))
                stop.wait(1.0)
        for node in stack.nodes:
            node.proxy.restore()
        with console.status("stopping the devices (they flush their ledgers) ..."):
            stop_fleets(fleets, 60)
        with console.status("waiting for the gateways to deliver everything ..."):
            result.drained = stack.wait_drained(120)
            time.sleep(1.0)
        with console.status("auditing: ledger vs InfluxDB ..."):
            result.audits = [audit(stack, f) for f in fleets]
        if stack.public is not None and stack.pki is not None:
            with console.status("citizen reports (Open311) and the public surfaces ..."):
                ca = stack.pki.ca_cert_path(CaName.INFRA)
                try:
                    result.public = stack.public.exercise(stack.cloud_url, ca, stack.cloud_inventory_path)
                except (httpx.HTTPError, KeyError, ValueError) as e:
                    result.public = {"error": f"{type(e).__name__}: {e}"}
        if stack.service is not None:
            with console.status("waiting for the city's receiver to get every case event ..."):
                result.events = audit_events(stack.service, timeout_s=60.0)
        _summary(console, result)
        return result
    finally:
        for f in fleets:
            f.kill()
        stack.stop()
        signal.signal(signal.SIGINT, previous)


def audit_events(service: DemoService, timeout_s: float) -> dict[str, int]:
    """The service layer's audit, once nothing is left to deliver (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        a = service.audit()
        if a["lost"] == 0 or time.monotonic() > deadline:
            return a
        time.sleep(0.5)


def _summary(console: Console, result: DemoResult) -> None:
    t = Table(title="audit: every reading the devices produced vs what InfluxDB holds")
    cols = ("gateway", "expected", "stored", "lost", "duplicated", "unexpected")
    for c in cols:
        t.add_column(c, justify="left" if c == "gateway" else "right")
    for a in result.audits:
        if "error" in a:
            t.add_row(str(a["gateway"]), "audit failed: " + str(a["error"])[:60], "", "", "", "")
            continue
        t.add_row(*(f"{a.get(c, 0):,}" if c != "gateway" else str(a[c]) for c in cols))
    console.print(t)
    failed = [a for a in result.audits if "error" in a]
    if failed:
        console.print(f"[bold red]audit failed for {len(failed)} fleet(s)[/]")
    elif not result.drained:
        console.print("[bold red]the gateways did not deliver everything in time[/]")
    elif result.lost:
        console.print(f"[bold red]lost = {result.lost}[/]")
    else:
        console.print("[bold green]lost = 0[/]")
    if result.events is not None:
        e = result.events
        console.print(
            f"case events: transitions made {e['transitions']:,} / delivered {e['delivered']:,} / "
            f"lost {e['lost']:,} / delivered twice with different ids {e['twice_with_different_ids']:,} "
            f"({e['requests']:,} requests at the receiver)",
            style="bold red" if result.events_lost else "bold green",
        )
    if result.public is not None:
        p = result.public
        if "error" in p:
            console.print(f"public surfaces: failed: {p['error']}", style="bold red")
        else:
            console.print(
                f"public: citizen reports {p['reports']} ({p['attached']} joined an open case) / "
                f"Open311 lists {p['requests_listed']} requests ({p['sensor_requests']} from sensors) / "
                f"progress page {p['progress_services']} services / NGSI-LD AirQualityObserved "
                f"{p['ngsi_air_quality']} / SensorThings Things {p['sta_things']}",
                style="bold green",
            )
    console.print(f"everything is under {result.directory}")
