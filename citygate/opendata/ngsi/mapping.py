"""How a profile's latest reading becomes one entity per device: the building blocks and the build.

A :class:`DeviceModel` says, for one profile, which Smart Data Model it becomes and how:
``measured`` fields copied (perhaps converted, :mod:`citygate.opendata.ngsi.units`) into the
model's attributes with their unit code, ``derived`` attributes computed from the reading
(a status from a fault flag), ``constants``, which attributes carry the observation time,
and, in ``unmapped``, every profile field the model has no place for and why. The tables
of the eight profiles are in :mod:`citygate.opendata.ngsi.models`.

A measured field is exported only while the device's profile still gives it the unit the
mapping was written for: a new profile version that changed a unit must not publish
numbers under the old unit's name (:func:`usable`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from citygate.contract.inventory import DeviceRecord
from citygate.contract.profiles import DeviceProfile
from citygate.opendata.ngsi.entity import CORE_CONTEXT, Attribute, AttrKind, Entity, entity_id, point, rfc3339
from citygate.opendata.ngsi.units import UNIT_CODES, Conversion

_NS = 1_000_000_000

Row = Mapping[str, Any]  # a reading's columns as InfluxDB answers them (None: not in that reading)


@dataclass(frozen=True, slots=True)
class Measured:
    field: str  # the profile's field
    attr: str  # the model's attribute
    unit: str | None  # the profile unit this mapping was written for (None: a count, an index)
    conversion: Conversion | None = None

    @property
    def unit_code(self) -> str | None:
        if self.conversion is not None:
            return self.conversion.target
        return UNIT_CODES.get(self.unit) if self.unit is not None else None


@dataclass(frozen=True, slots=True)
class Derived:
    attr: str
    fields: tuple[str, ...]  # the profile fields it reads (documentation, and the field check)
    derive: Callable[[Row, DeviceRecord], Any]  # the value; None leaves the attribute out
    kind: AttrKind = "Property"
    observed: bool = True  # a measured state (observedAt), not a description of the device


@dataclass(frozen=True, slots=True)
class DeviceModel:
    type: str
    profile: str
    context: str  # the model's published @context
    measured: tuple[Measured, ...]
    derived: tuple[Derived, ...] = ()
    constants: Mapping[str, Any] = field(default_factory=dict)
    # Attributes holding the reading's device time: dateObserved where the model's context has
    # that term, and the model's own name for it where that differs.
    time_attrs: tuple[str, ...] = ("dateObserved",)
    # The reading covers the profile's interval up to its time: dateObservedFrom/To, and
    # dateObserved as the ISO 8601 interval "from/to" (as NoiseLevelObserved describes it).
    interval: bool = False
    # Attributes the model's schema requires that a reading or a record may not give (a spot
    # without a zone has no parking site): without them the device is not exported.
    requires: tuple[str, ...] = ()
    unmapped: Mapping[str, str] = field(default_factory=dict)  # profile field -> why not exported


def usable(model: DeviceModel, profile: DeviceProfile) -> tuple[list[Measured], list[str]]:
    """The measured mappings this profile version fits, and the fields whose unit differs."""
    ok: list[Measured] = []
    changed: list[str] = []
    for m in model.measured:
        spec = profile.fields.get(m.field)
        if spec is None:
            continue
        if spec.unit != m.unit:
            changed.append(m.field)
        else:
            ok.append(m)
    return ok, changed


def build(
    model: DeviceModel,
    record: DeviceRecord,
    profile: DeviceProfile,
    measured: list[Measured],
    row: Row,
    time_ns: int,
) -> Entity | None:
    """The device's entity from its latest reading; None for a device with no location or
    without an attribute the model requires."""
    if record.lat is None or record.lon is None:
        return None  # location is required by most models and is what a portal maps by
    observed = rfc3339(time_ns)
    attrs: dict[str, Attribute] = {}
    for name in model.time_attrs:
        attrs[name] = Attribute(observed)
    if model.interval:
        start = rfc3339(time_ns - int(profile.expected_interval_s * _NS))
        attrs["dateObserved"] = Attribute(f"{start}/{observed}")
        attrs["dateObservedFrom"] = Attribute(start)
        attrs["dateObservedTo"] = Attribute(observed)
    attrs["location"] = Attribute(point(record.lon, record.lat), "GeoProperty")
    if record.district is not None:
        attrs["address"] = Attribute({"district": record.district})
    for m in measured:
        v = row.get(m.field)
        if v is None:
            continue
        value = m.conversion.apply(v) if m.conversion is not None else v
        attrs[m.attr] = Attribute(value, unit_code=m.unit_code, observed_at=observed)
    for d in model.derived:
        dv = d.derive(row, record)
        if dv is not None:
            attrs[d.attr] = Attribute(dv, d.kind, observed_at=observed if d.observed else None)
    for name, value in model.constants.items():
        attrs[name] = Attribute(value)
    if any(name not in attrs for name in model.requires):
        return None
    return Entity(entity_id(model.type, record.device_id), model.type, (model.context, CORE_CONTEXT), attrs)
