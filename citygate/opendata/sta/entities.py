"""The inventory and the device profiles as SensorThings entities.

=====================  ==========================================================  ==============
STA entity             from                                                        natural key
=====================  ==========================================================  ==============
Thing                  a device (its site, district and profile as ``properties``)  device id
Location               the device's lat/lon, a GeoJSON Point                       device id
HistoricalLocation     one per located device (see below)                          device id
Datastream             device x field of its profile, UCUM unit (:mod:`.units`)     device/field
Sensor                 a profile at one version                                    profile:vN
ObservedProperty       a field of a profile                                        profile/field
FeatureOfInterest      the device's location (a GeoJSON Feature without geometry   device id
                       when the inventory has none)
Observation            one field of one stored point (InfluxDB)                    see :mod:`.ids`
=====================  ==========================================================  ==============

The inventory keeps a device's current location only, without a date: each located Thing has
one HistoricalLocation whose ``time`` is the epoch (1970-01-01T00:00:00Z), read "located here
for as long as the inventory knows". Devices whose profile is published only per zone
(``[cloud.opendata] zoned``, e.g. parking) and devices whose profile this cloud does not know
are not entities here at all (docs/SENSORTHINGS.md). A :class:`Model` is built once per
inventory version and is read-only afterwards; who may see which entity is decided per
request from each entity's ``profile``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import DeviceProfile, FieldType, ProfileRegistry
from citygate.opendata.sta import ids
from citygate.opendata.sta.units import unit_of_measurement


class Kind(StrEnum):
    THING = "Thing"
    LOCATION = "Location"
    HISTORICAL_LOCATION = "HistoricalLocation"
    DATASTREAM = "Datastream"
    SENSOR = "Sensor"
    OBSERVED_PROPERTY = "ObservedProperty"
    OBSERVATION = "Observation"
    FEATURE_OF_INTEREST = "FeatureOfInterest"


ENTITY_SETS: Final[dict[str, Kind]] = {
    "Things": Kind.THING,
    "Locations": Kind.LOCATION,
    "HistoricalLocations": Kind.HISTORICAL_LOCATION,
    "Datastreams": Kind.DATASTREAM,
    "Sensors": Kind.SENSOR,
    "ObservedProperties": Kind.OBSERVED_PROPERTY,
    "Observations": Kind.OBSERVATION,
    "FeaturesOfInterest": Kind.FEATURE_OF_INTEREST,
}
SET_NAME: Final[dict[Kind, str]] = {kind: name for name, kind in ENTITY_SETS.items()}


@dataclass(frozen=True, slots=True)
class Nav:
    target: Kind
    many: bool


NAVIGATION: Final[dict[Kind, dict[str, Nav]]] = {
    Kind.THING: {
        "Locations": Nav(Kind.LOCATION, True),
        "HistoricalLocations": Nav(Kind.HISTORICAL_LOCATION, True),
        "Datastreams": Nav(Kind.DATASTREAM, True),
    },
    Kind.LOCATION: {
        "Things": Nav(Kind.THING, True),
        "HistoricalLocations": Nav(Kind.HISTORICAL_LOCATION, True),
    },
    Kind.HISTORICAL_LOCATION: {"Thing": Nav(Kind.THING, False), "Locations": Nav(Kind.LOCATION, True)},
    Kind.DATASTREAM: {
        "Thing": Nav(Kind.THING, False),
        "Sensor": Nav(Kind.SENSOR, False),
        "ObservedProperty": Nav(Kind.OBSERVED_PROPERTY, False),
        "Observations": Nav(Kind.OBSERVATION, True),
    },
    Kind.SENSOR: {"Datastreams": Nav(Kind.DATASTREAM, True)},
    Kind.OBSERVED_PROPERTY: {"Datastreams": Nav(Kind.DATASTREAM, True)},
    Kind.OBSERVATION: {
        "Datastream": Nav(Kind.DATASTREAM, False),
        "FeatureOfInterest": Nav(Kind.FEATURE_OF_INTEREST, False),
    },
    Kind.FEATURE_OF_INTEREST: {"Observations": Nav(Kind.OBSERVATION, True)},
}

PROPERTIES: Final[dict[Kind, tuple[str, ...]]] = {
    Kind.THING: ("name", "description", "properties"),
    Kind.LOCATION: ("name", "description", "encodingType", "location", "properties"),
    Kind.HISTORICAL_LOCATION: ("time",),
    Kind.DATASTREAM: ("name", "description", "observationType", "unitOfMeasurement", "properties"),
    Kind.SENSOR: ("name", "description", "encodingType", "metadata", "properties"),
    Kind.OBSERVED_PROPERTY: ("name", "definition", "description", "properties"),
    Kind.OBSERVATION: ("phenomenonTime", "resultTime", "result"),
    Kind.FEATURE_OF_INTEREST: ("name", "description", "encodingType", "feature", "properties"),
}

_OM: Final = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
OBSERVATION_TYPES: Final[dict[FieldType, str]] = {
    "float": _OM + "OM_Measurement",
    "int": _OM + "OM_CountObservation",
    "bool": _OM + "OM_TruthObservation",
    "string": _OM + "OM_Observation",
}
GEOJSON: Final = "application/geo+json"
LOCATED_SINCE: Final = "1970-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Entity:
    kind: Kind
    id: int
    profile: str  # whose access decides who sees this entity
    props: dict[str, Any]
    # Navigation property -> related ids. Observations are not here: they live in InfluxDB.
    links: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stream:
    """Where a Datastream's Observations are: one field of the device's points."""

    datastream_id: int
    device_id: str
    measurement: str
    field: str
    type: FieldType
    foi_id: int
    profile: str


@dataclass(slots=True)
class Model:
    entities: dict[Kind, dict[int, Entity]]  # each in ascending id order
    streams: dict[int, Stream]
    foi_streams: dict[int, tuple[int, ...]]
    collisions: list[tuple[str, str, str]]  # (kind, holder key, moved key)
    profiles: frozenset[str] = frozenset()  # of the devices served

    def get(self, kind: Kind, entity_id: int) -> Entity | None:
        return self.entities[kind].get(entity_id)

    def all(self, kind: Kind) -> Iterator[Entity]:
        return iter(self.entities[kind].values())


def _thing(record: DeviceRecord, profile: DeviceProfile, entity_id: int) -> Entity:
    props: dict[str, Any] = {"device_id": record.device_id}
    for key in ("site", "district"):
        value = getattr(record, key)
        if value is not None:
            props[key] = value
    props["profile"] = profile.name
    props["profile_version"] = profile.version
    where = f" at {record.site}" if record.site else ""
    return Entity(
        Kind.THING,
        entity_id,
        profile.name,
        {
            "name": record.device_id,
            "description": f"{profile.title} {record.device_id}{where}",
            "properties": props,
        },
    )


def _point(record: DeviceRecord) -> dict[str, Any] | None:
    if record.lat is None or record.lon is None:
        return None
    return {"type": "Point", "coordinates": [record.lon, record.lat]}


def build_model(inventory: Inventory, registry: ProfileRegistry, *, left_out: Collection[str] = ()) -> Model:
    """Every entity of the inventory; devices of a ``left_out`` or unknown profile are skipped.

    Raises :class:`ids.IdSpaceFull` past about a million Datastreams.
    """
    devices: list[tuple[DeviceRecord, DeviceProfile]] = []
    for record in inventory.values():
        if record.profile in left_out:
            continue
        profile = registry.find(record.profile, record.profile_version)
        if profile is not None:
            devices.append((record, profile))
    located = [(r, p) for r, p in devices if _point(r) is not None]
    collisions: list[tuple[str, str, str]] = []

    def assign(kind: Kind, keys: Collection[str], bits: int = ids.HASH_BITS) -> dict[str, int]:
        got = ids.assign(kind.value, keys, bits)
        collisions.extend((kind.value, a, b) for a, b in got.collisions)
        return got.ids

    thing_ids = assign(Kind.THING, [r.device_id for r, _ in devices])
    location_ids = assign(Kind.LOCATION, [r.device_id for r, _ in located])
    hl_ids = assign(Kind.HISTORICAL_LOCATION, [r.device_id for r, _ in located])
    foi_ids = assign(Kind.FEATURE_OF_INTEREST, [r.device_id for r, _ in devices])
    sensor_ids = assign(Kind.SENSOR, {f"{p.name}:v{p.version}" for _, p in devices})
    # An ObservedProperty per (profile, field); its description from the newest version.
    op_specs: dict[str, tuple[DeviceProfile, str]] = {}
    for _, p in sorted(devices, key=lambda d: d[1].version):
        for f in p.fields:
            op_specs[f"{p.name}/{f}"] = (p, f)
    op_ids = assign(Kind.OBSERVED_PROPERTY, op_specs)
    ds_ids = assign(
        Kind.DATASTREAM, [f"{r.device_id}/{f}" for r, p in devices for f in p.fields], ids.DATASTREAM_BITS
    )

    out: dict[Kind, dict[int, Entity]] = {kind: {} for kind in Kind}
    links: dict[tuple[Kind, int], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    streams: dict[int, Stream] = {}
    foi_streams: dict[int, tuple[int, ...]] = {}
    for record, p in devices:
        dev = record.device_id
        thing_id, foi_id = thing_ids[dev], foi_ids[dev]
        sensor_id = sensor_ids[f"{p.name}:v{p.version}"]
        out[Kind.THING][thing_id] = _thing(record, p, thing_id)
        point = _point(record)
        place = record.site or record.district or dev
        if point is not None:
            loc_id, hl_id = location_ids[dev], hl_ids[dev]
            out[Kind.LOCATION][loc_id] = Entity(
                Kind.LOCATION,
                loc_id,
                p.name,
                {
                    "name": f"{dev} location",
                    "description": f"Where {dev} is ({place})",
                    "encodingType": GEOJSON,
                    "location": point,
                    "properties": {},
                },
                {"Things": (thing_id,), "HistoricalLocations": (hl_id,)},
            )
            out[Kind.HISTORICAL_LOCATION][hl_id] = Entity(
                Kind.HISTORICAL_LOCATION,
                hl_id,
                p.name,
                {"time": LOCATED_SINCE},
                {"Thing": (thing_id,), "Locations": (loc_id,)},
            )
            links[(Kind.THING, thing_id)]["Locations"].append(loc_id)
            links[(Kind.THING, thing_id)]["HistoricalLocations"].append(hl_id)
        feature = point or {
            "type": "Feature",
            "geometry": None,
            "properties": {"site": record.site, "district": record.district},
        }
        out[Kind.FEATURE_OF_INTEREST][foi_id] = Entity(
            Kind.FEATURE_OF_INTEREST,
            foi_id,
            p.name,
            {
                "name": f"{dev} surroundings",
                "description": f"What {dev} measures: {place}",
                "encodingType": GEOJSON,
                "feature": feature,
                "properties": {},
            },
        )
        mine: list[int] = []
        for fname, spec in p.fields.items():
            ds_id = ds_ids[f"{dev}/{fname}"]
            op_id = op_ids[f"{p.name}/{fname}"]
            out[Kind.DATASTREAM][ds_id] = Entity(
                Kind.DATASTREAM,
                ds_id,
                p.name,
                {
                    "name": f"{dev}/{fname}",
                    "description": f"{spec.description} ({p.title} {dev})",
                    "observationType": OBSERVATION_TYPES[spec.type],
                    "unitOfMeasurement": unit_of_measurement(spec.unit),
                    "properties": {
                        "device_id": dev,
                        "field": fname,
                        "profile": p.name,
                        "profile_version": p.version,
                    },
                },
                {"Thing": (thing_id,), "Sensor": (sensor_id,), "ObservedProperty": (op_id,)},
            )
            streams[ds_id] = Stream(ds_id, dev, p.measurement, fname, spec.type, foi_id, p.name)
            mine.append(ds_id)
            links[(Kind.SENSOR, sensor_id)]["Datastreams"].append(ds_id)
            links[(Kind.OBSERVED_PROPERTY, op_id)]["Datastreams"].append(ds_id)
        links[(Kind.THING, thing_id)]["Datastreams"].extend(mine)
        foi_streams[foi_id] = tuple(sorted(mine))
        if sensor_id not in out[Kind.SENSOR]:
            out[Kind.SENSOR][sensor_id] = Entity(
                Kind.SENSOR,
                sensor_id,
                p.name,
                {
                    "name": f"{p.title} (profile {p.name} v{p.version})",
                    "description": p.description,
                    "encodingType": "application/schema+json",
                    "metadata": f"urn:citygate:profile:{p.name}:v{p.version}",
                    "properties": {
                        "profile": p.name,
                        "version": p.version,
                        "measurement": p.measurement,
                        "expected_interval_s": p.expected_interval_s,
                    },
                },
            )
    for key, op_id in op_ids.items():
        p, fname = op_specs[key]
        spec = p.fields[fname]
        out[Kind.OBSERVED_PROPERTY][op_id] = Entity(
            Kind.OBSERVED_PROPERTY,
            op_id,
            p.name,
            {
                "name": fname,
                "definition": f"urn:citygate:observed-property:{p.name}:{fname}",
                "description": spec.description,
                "properties": {"profile": p.name},
            },
        )
    # Related ids in ascending order, as every collection here is.
    final: dict[Kind, dict[int, Entity]] = {}
    for kind, entities in out.items():
        ordered: dict[int, Entity] = {}
        for entity_id in sorted(entities):
            e = entities[entity_id]
            extra = links.get((kind, entity_id))
            if extra:
                merged = dict(e.links)
                merged.update({name: tuple(sorted(v)) for name, v in extra.items()})
                e = Entity(e.kind, e.id, e.profile, e.props, merged)
            ordered[entity_id] = e
        final[kind] = ordered
    return Model(final, streams, foi_streams, collisions, frozenset(p.name for _, p in devices))
