"""Payload validation: raw MQTT bytes -> a typed Reading, or a Rejection with a reason.

This is the hot path of the gateway (every message) and of the cloud (every
reading of every batch), so it is written for speed: each profile is compiled
once into plain tuples and dicts (:mod:`citygate.contract.rules`), payloads are
parsed with orjson, and values are checked by hand instead of through pydantic.
A gateway on a Pi serving a few thousand devices must not spend its CPU here.

It is also the first line of defence (docs/ARCHITECTURE.md, guarantee 4), so nothing a device
sends can make it raise: every input becomes a Reading or a Rejection whose
reason is countable (``RejectReason``) and whose detail tells the device
vendor exactly what to fix.

Two payload forms are accepted on ``devices/{device_id}/telemetry``; the
device id always comes from the topic, never from the payload:

* JSON: ``{"ts": <epoch ms | RFC 3339>, "seq": <int>, "readings": {...}}``
  (:mod:`citygate.contract.json_form`)
* SenML (RFC 8428) JSON: an array of records forming one reading (one time)
  (:mod:`citygate.contract.senml`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Final

import orjson

from citygate.contract import json_form, senml
from citygate.contract.checks import FieldChecks
from citygate.contract.details import short, show
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.readings import Reading, Rejection, RejectReason
from citygate.contract.rules import CompiledProfile

_NS: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Bounds on what a device may send; the same on gateway and cloud by default."""

    max_payload_bytes: int = 8192
    max_future_s: float = 300.0
    max_past_s: float = 30 * 86400.0
    max_string_len: int = 256

    def __post_init__(self) -> None:
        if self.max_payload_bytes <= 0 or self.max_string_len <= 0:
            raise ValueError("max_payload_bytes and max_string_len must be positive")
        if not (math.isfinite(self.max_future_s) and math.isfinite(self.max_past_s)):
            raise ValueError("max_future_s and max_past_s must be finite")
        if self.max_future_s < 0 or self.max_past_s < 0:
            raise ValueError("max_future_s and max_past_s must not be negative")


class Validator(FieldChecks):
    """Checks device payloads against the inventory and the device profiles.

    Construct one per (registry, inventory); it caches each compiled profile and
    each device's profile, so repeated payloads cost dictionary lookups only.
    ``validate`` and ``validate_obj`` never raise on any payload.
    """

    __slots__ = ("_by_device", "_compiled", "_inventory", "_limits", "_registry")

    def __init__(
        self,
        registry: ProfileRegistry,
        inventory: Inventory,
        limits: ValidationLimits = ValidationLimits(),  # frozen: sharing the default is safe
        *,
        _compiled: dict[tuple[str, int], CompiledProfile] | None = None,
    ) -> None:
        super().__init__(int(limits.max_future_s * _NS), int(limits.max_past_s * _NS), limits.max_string_len)
        self._registry = registry
        self._inventory = inventory
        self._limits = limits
        self._compiled: dict[tuple[str, int], CompiledProfile] = {} if _compiled is None else _compiled
        self._by_device: dict[str, CompiledProfile] = {}

    @property
    def registry(self) -> ProfileRegistry:
        return self._registry

    @property
    def inventory(self) -> Inventory:
        return self._inventory

    @property
    def limits(self) -> ValidationLimits:
        return self._limits

    def with_inventory(self, inventory: Inventory) -> Validator:
        """A validator for a reloaded inventory that reuses the compiled profiles."""
        return Validator(self._registry, inventory, self._limits, _compiled=self._compiled)

    # -- lookups ---------------------------------------------------------------

    def _profile_for(self, device_id: str) -> CompiledProfile | Rejection:
        try:
            cp = self._by_device.get(device_id)
        except TypeError:  # an unhashable device id given by a buggy caller
            return Rejection(RejectReason.UNKNOWN_DEVICE, "device id must be a string")
        if cp is not None:
            return cp
        if not isinstance(device_id, str):
            return Rejection(RejectReason.UNKNOWN_DEVICE, "device id must be a string")
        record: DeviceRecord | None = self._inventory.get(device_id)
        if record is None:
            return Rejection(
                RejectReason.UNKNOWN_DEVICE,
                f"device {short(device_id, 70)} is not in the device inventory "
                "(register it with 'citygate pki issue device')",
            )
        found = self._compile(record.profile, record.profile_version)
        if isinstance(found, Rejection):
            return Rejection(found.reason, f"device {short(device_id, 70)} is registered with {found.detail}")
        self._by_device[device_id] = found
        return found

    def _compile(self, name: str, version: int) -> CompiledProfile | Rejection:
        key = (name, version)
        cp = self._compiled.get(key)
        if cp is not None:
            return cp
        profile = self._registry.find(name, version)
        if profile is None:
            known = self._registry.versions(name)
            have = (
                f"known versions: {', '.join(map(str, known))}"
                if known
                else f"known profiles: {', '.join(self._registry.names()) or '(none)'}"
            )
            return Rejection(
                RejectReason.UNKNOWN_PROFILE,
                f"profile {short(name)} v{version}, which this system does not have ({have})",
            )
        cp = CompiledProfile(profile)
        self._compiled[key] = cp
        return cp

    # -- entry points ----------------------------------------------------------

    def validate(self, device_id: str, raw: bytes, now_ns: int | None = None) -> Reading | Rejection:
        """Validate one MQTT payload published on ``devices/{device_id}/telemetry``."""
        size = len(raw)
        limit = self._limits.max_payload_bytes
        if size > limit:
            return Rejection(
                RejectReason.PAYLOAD_TOO_LARGE,
                f"payload is {size} bytes; the limit is {limit} bytes (send one reading per message)",
            )
        cp = self._profile_for(device_id)
        if isinstance(cp, Rejection):
            return cp
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            return json_form.parse_failure(bytes(raw), e)
        # orjson built obj just now and nobody else holds it: its readings dict
        # can become the Reading's values without a copy.
        return self._dispatch(device_id, cp, obj, now_ns, True)

    def validate_obj(self, device_id: str, obj: object, now_ns: int | None = None) -> Reading | Rejection:
        """Validate an already-parsed payload (JSON form or SenML), with the same checks."""
        cp = self._profile_for(device_id)
        if isinstance(cp, Rejection):
            return cp
        return self._dispatch(device_id, cp, obj, now_ns, False)

    def _dispatch(
        self, device_id: str, cp: CompiledProfile, obj: object, now_ns: int | None, owned: bool
    ) -> Reading | Rejection:
        if now_ns is None:
            now_ns = time.time_ns()
        if obj.__class__ is dict:
            return json_form.parse(self, device_id, cp, obj, now_ns, owned)
        if isinstance(obj, list):
            return senml.parse(self, device_id, cp, obj, now_ns)
        if isinstance(obj, dict):
            return json_form.parse(self, device_id, cp, obj, now_ns, False)
        return Rejection(
            RejectReason.BAD_SHAPE,
            'payload must be a JSON object {"ts": ..., "seq": ..., "readings": {...}} '
            f"or a SenML array, got {show(obj)}",
        )
