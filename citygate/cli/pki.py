"""``citygate pki``: the certificate authority and the device inventory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from citygate.certs.pki import CaName, CertKind, Pki
from citygate.certs.settings import PkiSettings
from citygate.cli import cli_errors
from citygate.contract.ids import validate_id
from citygate.contract.inventory import DeviceRecord, Inventory

app = typer.Typer(
    help="Certificate authority: CAs, device/gateway/server/reader/operator certificates, CRLs.",
    no_args_is_help=True,
)
issue_app = typer.Typer(help="Issue a certificate.", no_args_is_help=True)
app.add_typer(issue_app, name="issue")

console = Console()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file ([pki] section).", exists=True, dir_okay=False),
]
DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="PKI directory (default: $CITYGATE_PKI_DIR or ~/.local/share/citygate/pki).",
        file_okay=False,
    ),
]
InventoryOpt = Annotated[
    Path | None, typer.Option("--inventory", help="Device inventory file (default: <dir>/inventory.json).")
]
DaysOpt = Annotated[int | None, typer.Option("--days", min=1, help="Lifetime in days (default from config).")]
RenewOpt = Annotated[
    bool, typer.Option("--renew", help="Replace an existing certificate and key (rotation).")
]


def _settings(config: Path | None, pki_dir: Path | None, inventory: Path | None = None) -> PkiSettings:
    return PkiSettings.load(config, dir=pki_dir, inventory=inventory)


def _open(config: Path | None, pki_dir: Path | None, inventory: Path | None = None) -> Pki:
    return Pki(_settings(config, pki_dir, inventory))


@app.command()
def init(
    config: ConfigOpt = None,
    pki_dir: DirOpt = None,
    organization: Annotated[
        str | None, typer.Option("--org", help="Organization name in certificates.")
    ] = None,
) -> None:
    """Create the device, infrastructure and client CAs (EC P-256), their CRLs and the index."""
    with cli_errors():
        settings = PkiSettings.load(config, dir=pki_dir, organization=organization)
        pki = Pki.init(settings)
        console.print(f"created CAs in [bold]{pki.dir}[/]")
        for ca in CaName:
            console.print(f"  {ca.value}: {pki.ca_cert_path(ca)}  (CRL {pki.crl_path(ca)})")


@issue_app.command("device")
def issue_device(
    device_id: Annotated[str, typer.Argument(help="Device id: letters, digits, - _ . : (max 64).")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Device profile name, e.g. air_quality.")],
    profile_version: Annotated[int | None, typer.Option("--profile-version", help="Default: latest.")] = None,
    site: Annotated[str | None, typer.Option("--site")] = None,
    district: Annotated[str | None, typer.Option("--district")] = None,
    lat: Annotated[float | None, typer.Option("--lat", min=-90, max=90)] = None,
    lon: Annotated[float | None, typer.Option("--lon", min=-180, max=180)] = None,
    gateway: Annotated[
        list[str] | None,
        typer.Option(
            "--gateway",
            "-g",
            help="The gateway that may report this device (repeatable, for a planned move). "
            "Without one the cloud refuses its readings until 'citygate pki assign'.",
        ),
    ] = None,
    days: DaysOpt = None,
    renew: RenewOpt = False,
    config: ConfigOpt = None,
    pki_dir: DirOpt = None,
    inventory: InventoryOpt = None,
    profiles_dir: Annotated[
        list[Path] | None, typer.Option("--profiles-dir", help="Extra profile directory (repeatable).")
    ] = None,
) -> None:
    """Issue a device certificate (clientAuth, device CA) and register the device in the inventory."""
    from citygate.contract.profiles import ProfileRegistry

    with cli_errors():
        validate_id(device_id, kind="device id")
        pki = _open(config, pki_dir, inventory)
        resolved = ProfileRegistry(extra_dirs=profiles_dir or []).get(profile, profile_version)
        record = DeviceRecord(
            device_id=device_id,
            profile=resolved.name,
            profile_version=resolved.version,
            site=site,
            district=district,
            lat=lat,
            lon=lon,
            gateways=tuple(gateway or ()),
        )
        files = pki.issue_device(record, days=days, renew=renew)
        console.print(f"device [bold]{device_id}[/] ({resolved.name} v{resolved.version}) issued:")
        if not record.gateways:
            console.print(
                "  [yellow]assigned to no gateway: the cloud refuses its readings until "
                "'citygate pki assign'[/]"
            )
        console.print(f"  cert {files.cert}\n  key  {files.key}\n  inventory {pki.inventory_path}")


@issue_app.command("gateway")
def issue_gateway(
    gateway_id: Annotated[str, typer.Argument(help="Gateway id: letters, digits, - _ . : (max 64).")],
    site: Annotated[str | None, typer.Option("--site")] = None,
    district: Annotated[str | None, typer.Option("--district")] = None,
    days: DaysOpt = None,
    renew: RenewOpt = False,
    config: ConfigOpt = None,
    pki_dir: DirOpt = None,
) -> None:
    """Issue a gateway certificate (clientAuth, infrastructure CA) and register the gateway."""
    with cli_errors():
        validate_id(gateway_id, kind="gateway id")
        files = _open(config, pki_dir).issue_gateway(
            gateway_id, days=days, renew=renew, site=site, district=district
        )
        console.print(f"gateway [bold]{gateway_id}[/] issued:\n  cert {files.cert}\n  key  {files.key}")


@issue_app.command("server")
def issue_server(
    hostname: Annotated[str, typer.Argument(help="DNS name of the server (broker or cloud).")],
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address SAN (repeatable).")] = None,
    dns: Annotated[list[str] | None, typer.Option("--dns", help="Extra DNS SAN (repeatable).")] = None,
    days: DaysOpt = None,
    renew: RenewOpt = False,
    config: ConfigOpt = None,
    pki_dir: DirOpt = None,
) -> None:
    """Issue a server certificate (serverAuth with SANs, infrastructure CA)."""
    with cli_errors():
        files = _open(config, pki_dir).issue_server(
            hostname, ips=ip or [], extra_dns=dns or [], days=days, renew=renew
        )
        console.print(f"server [bold]{hostname}[/] issued:\n  cert {files.cert}\n  key  {files.key}")


def _issue_person(kind: CertKind, name: str, days: int | None, renew: bool, pki: Pki) -> None:
    created = not pki.has_ca(CaName.CLIENT)
    files = pki.issue_person(kind, name, days=days, renew=renew)
    if created:
        console.print(f"created the client CA {pki.ca_cert_path(CaName.CLIENT)} (the cloud's people_ca)")
    console.print(
        f"{kind.value} [bold]{name}[/] issued:\n  cert {files.cert}\n  key  {files.key}\n"
        f"  (with a {kind.value} token, for a cloud with people_ca; the certificate alone grants nothing)"
    )


PersonNameArg = Annotated[str, typer.Argument(help="Name: letters, digits, - _ . : (max 64).")]


def _person_command(kind: CertKind) -> None:
    """``citygate pki issue reader|operator NAME``: the same command for both kinds."""

    def command(
        name: PersonNameArg,
        days: DaysOpt = None,
        renew: RenewOpt = False,
        config: ConfigOpt = None,
        pki_dir: DirOpt = None,
    ) -> None:
        with cli_errors():
            _issue_person(kind, name, days, renew, _open(config, pki_dir))

    command.__doc__ = (
        f"Issue {'an' if kind is CertKind.OPERATOR else 'a'} {kind.value}'s client certificate "
        "(clientAuth, client CA; never the infrastructure CA)."
    )
    issue_app.command(kind.value)(command)


for _kind in (CertKind.READER, CertKind.OPERATOR):
    _person_command(_kind)


@app.command()
def assign(
    device_ids: Annotated[list[str], typer.Argument(help="Device id(s).")],
    gateway: Annotated[
        list[str],
        typer.Option(
            "--gateway",
            "-g",
            help="The gateway(s) that may report these devices from now on (repeat during a move: "
            "old and new; then assign the new one alone).",
        ),
    ],
    config: ConfigOpt = None,
    pki_dir: DirOpt = None,
) -> None:
    """Say which gateway(s) may report devices (a move between gateways); one audit line each."""
    with cli_errors():
        pki = _open(config, pki_dir)
        before = {d: _assigned_gateways(pki, d) for d in device_ids}
        pki.assign(device_ids, gateway)
        for d in device_ids:
            console.print(f"{d}: {', '.join(before[d]) or '(none)'} -> {', '.join(gateway)}")
        console.print(
            f"audit: {pki.settings.dir / 'audit.log'}; copy {pki.inventory_path} to the cloud and gateways"
        )


def _assigned_gateways(pki: Pki, device_id: str) -> tuple[str, ...]:
    record = Inventory.load(pki.inventory_path).get(device_id)
    return record.gateways if record is not None else ()


@app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="Device id, gateway id, server host name, reader or operator.")],
    kind: Annotated[
        CertKind | None, typer.Option("--kind", help="Needed only if the name is ambiguous.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason")] = "unspecified",
    config: ConfigOpt = None,
    pki_dir: DirOpt = None,
) -> None:
    """Revoke every certificate of NAME and re-sign the CRLs (then reload the broker and cloud)."""
    with cli_errors():
        revoked = _open(config, pki_dir).revoke(name, kind=kind, reason=reason)
        if not revoked:
            console.print(f"{name}: already revoked")
        for c in revoked:
            console.print(f"revoked {c.kind.value} {c.name} serial {c.serial:x}")


@app.command()
def crl(config: ConfigOpt = None, pki_dir: DirOpt = None) -> None:
    """Re-sign every CA's CRL with a fresh nextUpdate (schedule this daily)."""
    with cli_errors():
        pki = _open(config, pki_dir)
        for ca, path in pki.write_crls().items():
            nxt = pki.crl_next_update(ca)
            console.print(f"{ca.value}: {path} (next update {nxt:%Y-%m-%d %H:%M} UTC)")


def _table(pki: Pki, max_days: float | None, as_json: bool) -> None:
    now = dt.datetime.now(dt.UTC)
    certs = [
        c
        for c in pki.certificates()
        if max_days is None or (c.status(now) == "valid" and c.days_left(now) <= max_days)
    ]
    if as_json:
        rows = [
            c.to_json() | {"status": c.status(now), "days_left": round(c.days_left(now), 2)} for c in certs
        ]
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"certificates in {pki.dir}")
    for col in ("kind", "name", "serial", "not after (UTC)", "days left", "status"):
        table.add_column(col, justify="right" if col == "days left" else "left")
    for c in certs:
        status = c.status(now)
        style = {"valid": "green", "revoked": "red", "expired": "red"}.get(status, "yellow")
        left = c.days_left(now)
        table.add_row(
            c.kind.value,
            c.name,
            f"{c.serial:x}"[:16],
            f"{c.not_after:%Y-%m-%d %H:%M}",
            f"{left:.1f}",
            f"[{style}]{status}[/]",
        )
    console.print(table)
    for ca in CaName:
        nxt = pki.crl_next_update(ca)
        if nxt is not None:
            left = (nxt - now).total_seconds() / 86400
            warn = " [bold red]re-sign now: citygate pki crl[/]" if left < 2 else ""
            console.print(f"{ca.value} CRL next update {nxt:%Y-%m-%d %H:%M} UTC ({left:.1f} days){warn}")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    config: ConfigOpt = None,
    pki_dir: DirOpt = None,
) -> None:
    """List every certificate issued, its status and days left."""
    with cli_errors():
        _table(_open(config, pki_dir), None, as_json)


@app.command()
def expiring(
    days: Annotated[
        float, typer.Option("--days", min=0, help="Show valid certificates expiring within N days.")
    ] = 30,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    pki_dir: DirOpt = None,
) -> None:
    """List valid certificates that expire within --days."""
    with cli_errors():
        _table(_open(config, pki_dir), days, as_json)
