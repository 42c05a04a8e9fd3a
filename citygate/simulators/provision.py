"""Give the simulated fleet real identities: certificates from citygate's PKI and inventory records.

Devices are named ``<prefix>-00001``, ``<prefix>-00002``, ...; a device that the
inventory already knows keeps its recorded profile, missing ones are issued in
one bulk call (one CA lock, one index and inventory write) with a deterministic
mix of profiles over districts and sites. Certificate faults get their own
devices (``<prefix>-expired-001``, ``<prefix>-revoked-001``) so that breaking them
never touches the healthy fleet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from citygate.certs.pki import CertKind, Pki
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.errors import ConfigError
from citygate.simulators.faults import DevicePlan, FaultKind, FaultPlan
from citygate.simulators.fleet import SimDevice

DISTRICTS: tuple[str, ...] = ("centre", "north", "east", "south", "west", "harbour")
_ISSUE_CHUNK = 1000


def parse_mix(text: str | None, registry: ProfileRegistry) -> dict[str, float]:
    """``air_quality=3,noise=1`` -> weights; None or empty: every known profile equally."""
    if not text:
        return dict.fromkeys(registry.names(), 1.0)
    mix: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, eq, weight = item.partition("=")
        name = name.strip()
        if name not in registry:
            raise ConfigError(
                f"--profile-mix: unknown profile {name!r}; known: {', '.join(registry.names())}"
            )
        try:
            w = float(weight) if eq else 1.0
        except ValueError:
            raise ConfigError(f"--profile-mix: weight of {name} must be a number, got {weight!r}") from None
        if w < 0:
            raise ConfigError(f"--profile-mix: weight of {name} must not be negative")
        mix[name] = w
    if not any(mix.values()):
        raise ConfigError("--profile-mix: at least one profile needs a positive weight")
    return mix


def assign_profiles(n: int, mix: Mapping[str, float]) -> list[str]:
    """Smooth weighted round robin: any prefix of the fleet already has the mix's proportions."""
    names = sorted(k for k, w in mix.items() if w > 0)
    total = sum(mix[k] for k in names)
    current = dict.fromkeys(names, 0.0)
    out: list[str] = []
    for _ in range(n):
        for k in names:
            current[k] += mix[k]
        best = max(names, key=lambda k: current[k])
        current[best] -= total
        out.append(best)
    return out


def device_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(1, n + 1)]


def planned_records(
    prefix: str, n: int, mix: Mapping[str, float], registry: ProfileRegistry, gateway: str | None = None
) -> list[DeviceRecord]:
    """The records a fresh fleet of ``n`` would get (deterministic)."""
    out: list[DeviceRecord] = []
    for i, (device_id, profile) in enumerate(
        zip(device_ids(prefix, n), assign_profiles(n, mix), strict=True)
    ):
        district = DISTRICTS[i % len(DISTRICTS)]
        site = f"{district}-{i // (len(DISTRICTS) * 8) + 1:03d}"
        out.append(
            DeviceRecord(
                device_id=device_id,
                profile=profile,
                profile_version=registry.latest(profile).version,
                site=site,
                district=district,
                lat=round(50.10 + ((i * 37) % 1000) / 10000.0, 5),
                lon=round(8.60 + ((i * 91) % 1000) / 10000.0, 5),
                gateways=(gateway,) if gateway else (),
            )
        )
    return out


def ensure_devices(
    pki: Pki,
    prefix: str,
    n: int,
    mix: Mapping[str, float],
    registry: ProfileRegistry,
    *,
    days: int | None = None,
    gateway: str | None = None,
) -> list[DeviceRecord]:
    """The fleet's inventory records; devices without a certificate are issued and registered,
    and, with ``gateway``, every device is assigned to it (the gateway it reports through)."""
    inventory = Inventory.load(pki.inventory_path)
    wanted = planned_records(prefix, n, mix, registry, gateway)
    records: list[DeviceRecord] = []
    missing: list[DeviceRecord] = []
    moved: list[str] = []
    for r in wanted:
        known = inventory.get(r.device_id)
        has_cert = pki.files(CertKind.DEVICE, r.device_id).cert.exists()
        if known is not None and has_cert:
            records.append(known)
            if gateway and known.gateways != (gateway,):
                moved.append(r.device_id)
        else:
            missing.append(r)
            records.append(r)
    for start in range(0, len(missing), _ISSUE_CHUNK):
        pki.issue_devices(missing[start : start + _ISSUE_CHUNK], days=days)
    if moved and gateway:
        pki.assign(moved, [gateway], actor="citygate sim")
        records = [
            r.model_copy(update={"gateways": (gateway,)}) if r.device_id in moved else r for r in records
        ]
    return records


def ensure_cert_fault_devices(
    pki: Pki, prefix: str, kind: FaultKind, count: int, registry: ProfileRegistry
) -> list[DeviceRecord]:
    """Devices whose certificate is expired or revoked (issued once, reused afterwards).

    A revocation reaches Mosquitto only when it re-reads its CRL (reload or restart).
    """
    label = {FaultKind.EXPIRED_CERT: "expired", FaultKind.REVOKED_CERT: "revoked"}[kind]
    profile = registry.latest(registry.names()[0])
    out: list[DeviceRecord] = []
    inventory = Inventory.load(pki.inventory_path)
    for i in range(1, count + 1):
        device_id = f"{prefix}-{label}-{i:03d}"
        record = inventory.get(device_id) or DeviceRecord(
            device_id=device_id, profile=profile.name, profile_version=profile.version, district="test"
        )
        out.append(record)
        if pki.files(CertKind.DEVICE, device_id).cert.exists():
            continue
        if kind is FaultKind.EXPIRED_CERT:
            ten_days_ago = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=10)
            pki.issue_device(record, not_before=ten_days_ago, days=1)
        else:
            pki.issue_device(record)
            pki.revoke(device_id, kind=CertKind.DEVICE, reason="keyCompromise")
    return out


def build_fleet(
    pki: Pki,
    records: Sequence[DeviceRecord],
    registry: ProfileRegistry,
    plan: FaultPlan | None = None,
    refused: Mapping[str, FaultKind] | None = None,
) -> list[SimDevice]:
    """SimDevices with their certificate files, profiles and fault plans."""
    out: list[SimDevice] = []
    for r in records:
        files = pki.files(CertKind.DEVICE, r.device_id)
        out.append(
            SimDevice(
                device_id=r.device_id,
                profile=registry.get(r.profile, r.profile_version),
                cert=files.cert,
                key=files.key,
                plan=plan.for_device(r.device_id) if plan is not None else DevicePlan(),
                refused=(refused or {}).get(r.device_id),
            )
        )
    return out
