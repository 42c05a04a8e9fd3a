"""The device inventory: device id -> profile, site/district, location.

One JSON file, written by ``citygate pki issue device`` and loaded by the
gateway and the cloud. Writes are atomic (temp file + fsync + rename) so a
reader never sees half a file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

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

    @field_validator("device_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        return validate_id(v, kind="device id")

    @field_validator("site", "district")
    @classmethod
    def _safe_label(cls, v: str | None) -> str | None:
        # Site and district become InfluxDB tag values; keep them printable and short.
        if v is None:
            return v
        if not v or len(v) > 64 or any(ord(c) < 0x20 for c in v):
            raise ValueError("must be 1-64 printable characters")
        return v


class Inventory(Mapping[str, DeviceRecord]):
    """An immutable view of the device inventory, keyed by device id."""

    __slots__ = ("_devices",)

    def __init__(self, devices: Mapping[str, DeviceRecord] | None = None) -> None:
        self._devices: dict[str, DeviceRecord] = dict(devices or {})

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
        return Inventory(devices)

    def without(self, device_id: str) -> Inventory:
        devices = dict(self._devices)
        devices.pop(device_id, None)
        return Inventory(devices)

    # -- file form -------------------------------------------------------------

    def to_json(self) -> bytes:
        doc = {
            "format": INVENTORY_FORMAT,
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
        raw = doc.get("devices")
        if not isinstance(raw, dict):
            raise InventoryError(f'{source}: "devices" must be an object')
        devices: dict[str, DeviceRecord] = {}
        for device_id, body in raw.items():
            if not isinstance(body, dict):
                raise InventoryError(f"{source}: device {device_id!r}: must be an object")
            try:
                devices[device_id] = DeviceRecord(device_id=device_id, **body)
            except ValidationError as e:
                raise InventoryError(f"{source}: device {device_id!r}: {e}") from e
        return cls(devices)

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
