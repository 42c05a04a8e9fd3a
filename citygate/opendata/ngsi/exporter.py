"""The entities of each NGSI-LD type, computed from InfluxDB at most once per ``cache_s``.

One :class:`~citygate.cloud.refresh.RefreshCache` per entity type: whatever the traffic, the
database sees at most one query per type per ``cache_s`` (single flight: concurrent requests
for a stale type wait for the one computation), and no query at all for a type whose
profile has no device in the inventory. Each computation reads every device's newest
reading of the profile in one statement (:mod:`citygate.opendata.ngsi.latest`; one per
measurement, should two versions of a profile write different ones) within
``fleet_lookback_s``, under the cloud's ``read_concurrency`` budget shared with the series
reads, and builds the entities from the inventory (location, site, district) and the
mapping (:mod:`citygate.opendata.ngsi.models`).

Who may see a type is not decided here: the cache holds what the policy lets anyone with
access see (zoned profiles are aggregated and late for everyone), and the router asks
:func:`served` per caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Final

import anyio
import structlog

from citygate.cloud.readclient import SeriesReader
from citygate.cloud.refresh import RefreshCache
from citygate.cloud.state import CloudState
from citygate.contract.inventory import DeviceRecord
from citygate.contract.profiles import DeviceProfile
from citygate.opendata.ngsi.entity import Entity
from citygate.opendata.ngsi.latest import read_latest
from citygate.opendata.ngsi.mapping import DeviceModel, Measured, build, usable
from citygate.opendata.ngsi.models import DEVICE_MODELS
from citygate.opendata.ngsi.zones import PARKING_CONTEXT, ZONE_TYPE, build_zones
from citygate.opendata.policy import access

log = structlog.get_logger("citygate.opendata.ngsi")
_NS: Final = 1_000_000_000
ZONED_PROFILE: Final = "parking"  # the one profile with a zone-level model


@dataclass(frozen=True, slots=True)
class Source:
    """Where one entity type comes from: a profile, one entity per device or per zone."""

    type: str
    profile: str
    context: str
    model: DeviceModel | None  # None: zone aggregates (OnStreetParking)

    @property
    def expanded(self) -> str:
        """The type's full name, as the model's @context expands the short one."""
        domain = self.context.split("/smart-data-models/", 1)[1].split("/", 1)[0]
        return f"https://smartdatamodels.org/{domain}/{self.type}"


SOURCES: Final[dict[str, Source]] = {
    **{t: Source(t, m.profile, m.context, m) for t, m in DEVICE_MODELS.items()},
    ZONE_TYPE: Source(ZONE_TYPE, ZONED_PROFILE, PARKING_CONTEXT, None),
}
EXPANDED: Final[dict[str, str]] = {s.expanded: t for t, s in SOURCES.items()}


@dataclass(frozen=True, slots=True)
class _Window:
    since_ns: int
    until_ns: int
    as_of_ns: int
    min_devices: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    entities: tuple[Entity, ...]  # sorted by id
    by_id: Mapping[str, Entity]


class Exporter:
    def __init__(
        self,
        state: CloudState,
        reader: SeriesReader,
        slots: anyio.CapacityLimiter,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._state = state
        self._reader = reader
        self._slots = slots
        self._clock_ns = clock_ns
        self._warned: set[tuple[str, int, str]] = set()
        interval = state.settings.opendata.cache_s
        self._caches: dict[str, RefreshCache[Snapshot]] = {
            t: RefreshCache(partial(self._compute, s), interval_s=interval) for t, s in SOURCES.items()
        }

    def served(self, entity_type: str, *, reader: bool) -> bool:
        """Whether this caller (a reader token or anonymous) may see entities of this type."""
        source = SOURCES.get(entity_type)
        if source is None:
            return False
        granted = access(self._state.settings.opendata, source.profile, reader=reader)
        if source.model is None:
            return granted != "none"
        return granted == "raw"  # a zoned profile is never published per device

    def computed(self, entity_type: str) -> int:
        """How many times this type's entities were computed (each computation: one query)."""
        return self._caches[entity_type].computed

    async def snapshot(self, entity_type: str) -> Snapshot:
        """The type's entities (raises SinkUnavailable or QueryError when the database fails)."""
        return (await self._caches[entity_type].get()).value

    async def _compute(self, source: Source) -> Snapshot:
        state = self._state
        settings = state.settings
        records = [r for r in state.inventory.validator.inventory.values() if r.profile == source.profile]
        profiles = [state.registry.find(r.profile, r.profile_version) for r in records]
        measurements = sorted({p.measurement for p in profiles if p is not None})
        if not measurements:
            return Snapshot((), {})
        window = self._window(source)
        rows: dict[str, Mapping[str, object]] = {}
        async with self._slots:
            for measurement in measurements:
                got = await read_latest(
                    self._reader,
                    measurement,
                    since_ns=window.since_ns,
                    until_ns=window.until_ns,
                    limit=settings.max_query_points,
                )
                if got.truncated:
                    log.warning(
                        "ngsi_export_truncated",
                        type=source.type,
                        measurement=measurement,
                        limit=settings.max_query_points,
                    )
                rows.update(got.rows)
        if source.model is None:
            entities = build_zones(records, rows, as_of_ns=window.as_of_ns, min_devices=window.min_devices)
        else:
            entities = self._devices(source.model, records, rows)
        entities.sort(key=lambda e: e.id)
        return Snapshot(tuple(entities), {e.id: e for e in entities})

    def _window(self, source: Source) -> _Window:
        """Which readings count: each device's newest within ``fleet_lookback_s``; for zones, the
        newest before ``delay_s`` ago and within the fleet's silent limit."""
        settings = self._state.settings
        now = self._clock_ns()
        future_ns = int(settings.max_future_s * _NS) + 1  # device clocks may run a little ahead
        if source.model is not None:
            return _Window(now - int(settings.fleet_lookback_s * _NS), now + future_ns, now, 1)
        registry = self._state.registry
        newest = registry.latest(source.profile) if source.profile in registry else None
        silent_ns = int(settings.device_silent_factor * (newest.expected_interval_s if newest else 0) * _NS)
        zone = settings.opendata.zoned.get(source.profile)
        if zone is None:  # parking not zoned: the zones as they are now, however few bays
            return _Window(now - silent_ns, now + future_ns, now, 1)
        as_of = (now - int(zone.delay_s * _NS)) // _NS * _NS  # whole seconds: it is an "as of"
        return _Window(as_of - silent_ns, as_of, as_of, zone.min_devices)

    def _devices(
        self, model: DeviceModel, records: list[DeviceRecord], rows: Mapping[str, Mapping[str, object]]
    ) -> list[Entity]:
        out: list[Entity] = []
        fitting: dict[int, list[Measured]] = {}  # profile version -> the mappings its units fit
        for record in records:
            row = rows.get(record.device_id)
            profile = self._state.registry.find(record.profile, record.profile_version)
            if row is None or profile is None:
                continue
            t = row.get("time")
            if not isinstance(t, int):
                continue
            measured = fitting.get(profile.version)
            if measured is None:
                measured = fitting[profile.version] = self._fitting(model, profile)
            entity = build(model, record, profile, measured, row, t)
            if entity is not None:
                out.append(entity)
        return out

    def _fitting(self, model: DeviceModel, profile: DeviceProfile) -> list[Measured]:
        measured, changed = usable(model, profile)
        for f in changed:
            key = (profile.name, profile.version, f)
            if key not in self._warned:  # once per field and version, not every cache_s
                self._warned.add(key)
                log.warning(
                    "ngsi_unit_changed",
                    profile=profile.name,
                    version=profile.version,
                    field=f,
                    detail="the field's unit is not the one the mapping was written for; not exported",
                )
        return measured
