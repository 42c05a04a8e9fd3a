"""The inventory: devices (profile, site/district, location, the gateways that may report
each) and the registered gateways.

One JSON file, written by ``citygate pki`` (issue, assign, revoke) and loaded by
the gateway and the cloud. Writes are atomic (temp file + fsync + rename) so a
reader never sees half a file. The cloud takes readings of a device only from a
gateway the device is assigned to, and only from registered gateways
(docs/PKI.md, "Who may report what").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from citygate.contract.ids import validate_id
from citygate.errors import InventoryError
from citygate.fsutil import atomic_write

INVENTORY_FORMAT = 1


class DeviceRecord(BaseModel):
    """What the system knows about one device, besides its certificate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str
    profile: str
    profile_version: Annotated[int, Field(ge=1)]
    site: str | None = None
    district: str | None = None
    lat: Annotated[float | None, Field(ge=-90, le=90, allow_inf_nan=False)] = None
    lon: Annotated[float | None, Field(ge=-180, le=180, allow_inf_nan=False)] = None
    # The gateways that may report this device: usually one; two during a planned move.
    gateways: tuple[str, ...] = ()

    @field_validator("device_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return validate_id(v, kind="device id")

    @field_validator("gateways")
    @classmethod
    def _safe_gateways(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("a gateway is named twice")
        return tuple(validate_id(g, kind="gateway id") for g in v)

    @field_validator("site", "district")
    @classmethod
    def _safe_label(cls, v: str | None) -> str | None:
        # Site and district become InfluxDB tag values; keep them printable and short.
        if v is None:
            return v
        if not v or len(v) > 64 or any(ord(c) < 0x20 for c in v):
            raise ValueError("must be 1-64 printable characters")
        return v


class GatewayRecord(BaseModel):
    """A registered gateway: only these may send readings to the cloud."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway_id: str
    site: str | None = None
    district: str | None = None

    @field_validator("gateway_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return validate_id(v, kind="gateway id")


class Inventory(Mapping[str, DeviceRecord]):
    """An immutable view of the inventory: a mapping of devices by id, plus ``gateways``."""

    __slots__ = ("_devices", "_gateways")

    def __init__(
        self,
        devices: Mapping[str, DeviceRecord] | None = None,
        gateways: Mapping[str, GatewayRecord] | None = None,
    ) -> None:
        self._devices: dict[str, DeviceRecord] = dict(devices or {})
        self._gateways: dict[str, GatewayRecord] = dict(gateways or {})

    @property
    def gateways(self) -> Mapping[str, GatewayRecord]:
        return self._gateways

    def __getitem__(self, device_id: str) -> DeviceRecord:
        return self._devices[device_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._devices)

    def __len__(self) -> int:
        return len(self._devices)

    def with_devices(self, *records: DeviceRecord) -> Inventory:
        """A new inventory with ``records`` added or replaced."""
        devices = dict(self._devices)
        for r in records:
            devices[r.device_id] = r
        return Inventory(devices, self._gateways)

    def without(self, device_id: str) -> Inventory:
        devices = dict(self._devices)
        devices.pop(device_id, None)
        return Inventory(devices, self._gateways)

    def with_gateways(self, *records: GatewayRecord) -> Inventory:
        """A new inventory with these gateways registered (or their records replaced)."""
        gateways = dict(self._gateways)
        for r in records:
            gateways[r.gateway_id] = r
        return Inventory(self._devices, gateways)

    def without_gateway(self, gateway_id: str) -> Inventory:
        """The gateway unregistered (its devices keep the assignment, which no longer lets it in)."""
        gateways = dict(self._gateways)
        gateways.pop(gateway_id, None)
        return Inventory(self._devices, gateways)

    def assigned(self, device_id: str, gateways: tuple[str, ...]) -> Inventory:
        """The device reported by exactly these gateways from now on."""
        record = self._devices[device_id]
        return self.with_devices(record.model_copy(update={"gateways": gateways}))

    def may_report(self, gateway_id: str, device_id: str) -> bool:
        """Whether this registered gateway may send this device's readings."""
        record = self._devices.get(device_id)
        return record is not None and gateway_id in self._gateways and gateway_id in record.gateways

    # -- file form -------------------------------------------------------------

    def to_json(self) -> bytes:
        doc = {
            "format": INVENTORY_FORMAT,
            "gateways": {
                k: v.model_dump(exclude={"gateway_id"}, exclude_none=True)
                for k, v in sorted(self._gateways.items())
            },
            "devices": {
                k: v.model_dump(exclude={"device_id"}, exclude_none=True)
                for k, v in sorted(self._devices.items())
            },
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes, *, source: str = "<inventory>") -> Inventory:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise InventoryError(f"{source}: not valid JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != INVENTORY_FORMAT:
            raise InventoryError(f'{source}: expected an object with "format": {INVENTORY_FORMAT}')
        devices = _records(
            source, doc.get("devices"), "devices", "device", lambda k, body: DeviceRecord(device_id=k, **body)
        )
        gateways = _records(
            source,
            doc.get("gateways", {}),
            "gateways",
            "gateway",
            lambda k, body: GatewayRecord(gateway_id=k, **body),
        )
        return cls(devices, gateways)

    @classmethod
    def load(cls, path: Path) -> Inventory:
        """Load the inventory; a missing file is an empty inventory."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as e:
            raise InventoryError(f"cannot read inventory {path}: {e}") from e
        return cls.from_json(data, source=str(path))

    def save(self, path: Path) -> None:
        atomic_write(path, self.to_json(), mode=0o644)


_Record = TypeVar("_Record", DeviceRecord, GatewayRecord)


def _records(
    source: str, raw: object, section: str, what: str, make: Callable[[str, dict[str, Any]], _Record]
) -> dict[str, _Record]:
    """One section of the file (an object of id -> record body), each body made a record."""
    if not isinstance(raw, dict):
        raise InventoryError(f'{source}: "{section}" must be an object')
    records: dict[str, _Record] = {}
    for key, body in raw.items():
        if not isinstance(body, dict):
            raise InventoryError(f"{source}: {what} {key!r}: must be an object")
        try:
            records[key] = make(key, body)
        except ValidationError as e:
            raise InventoryError(f"{source}: {what} {key!r}: {e}") from e
    return records
