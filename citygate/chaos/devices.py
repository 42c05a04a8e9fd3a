"""The scenarios' own devices: their inventory records, the valid readings they send, and the
validator the gateway would judge them by."""

from __future__ import annotations

import time

import orjson

from citygate.chaos.harness import ChaosContext
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import DeviceProfile, ProfileRegistry
from citygate.contract.validation import Validator

# Far above any seq a simulated device reaches in a run: whatever is stored at or beyond it is forged.
FORGED_SEQ = 10**12


def record(device_id: str, gateway: str, profile: str = "noise") -> DeviceRecord:
    """An inventory record of a device assigned to ``gateway``."""
    return DeviceRecord(
        device_id=device_id,
        profile=profile,
        profile_version=1,
        site="chaos",
        district="centre",
        gateways=(gateway,),
    )


def valid_readings(profile: DeviceProfile) -> dict[str, float | int | bool | str]:
    """Values every required field accepts (middle of the range)."""
    out: dict[str, float | int | bool | str] = {}
    for name, spec in profile.fields.items():
        if not spec.required:
            continue
        lo = spec.min if spec.min is not None else 0
        hi = spec.max if spec.max is not None else lo + 10
        if spec.type == "float":
            out[name] = (float(lo) + float(hi)) / 2
        elif spec.type == "int":
            out[name] = (int(lo) + int(hi)) // 2
        elif spec.type == "bool":
            out[name] = True
        else:
            out[name] = "ok"
    return out


def valid_payload(profile: DeviceProfile, seq: int, ts_ms: int | None = None) -> bytes:
    """A valid MQTT payload of ``profile`` (device time now unless ``ts_ms``)."""
    ts = ts_ms if ts_ms is not None else time.time_ns() // 1_000_000
    return orjson.dumps({"ts": ts, "seq": seq, "readings": valid_readings(profile)})


def gateway_validator(ctx: ChaosContext) -> tuple[Validator, Inventory, ProfileRegistry]:
    """The gateway's validator over the PKI's inventory as it is now, with that inventory and registry."""
    registry = ProfileRegistry()
    inventory = Inventory.load(ctx.pki.inventory_path)
    return Validator(registry, inventory), inventory, registry


def profile_of(inventory: Inventory, registry: ProfileRegistry, device_id: str) -> DeviceProfile:
    rec = inventory[device_id]
    return registry.get(rec.profile, rec.profile_version)
