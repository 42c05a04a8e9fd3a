"""Zone-level parking entities: occupancy counts per zone, never one bay's comings and goings.

One bay sensor's series is one driver's day, so a profile listed in ``[cloud.opendata]
zoned`` (parking by default) is published only aggregated per zone: the bays' ``site``,
else their ``district`` (a bay with neither is in no zone and counted nowhere). Each zone
becomes one Smart Data Models ``OnStreetParking`` entity ("a site, open space zone, on
street ... intended to park vehicles") with ``totalSpotNumber`` (the zone's bays in the
inventory), ``occupiedSpotNumber`` and ``availableSpotNumber`` (over the bays that reported;
a silent bay is in neither, so the two may add up to less than the total).

Why not the other Parking models: ``ParkingSpot`` is one bay (exactly what must not be
published), ``ParkingGroup`` must reference the parking site it belongs to (it "cannot be
orphan"), and ``OffStreetParking`` is a car park with entrances and barriers, not a street
zone of bay sensors.

The state published is the state ``delay_s`` ago, from each bay's newest reading before
then (and not older than the fleet's silent limit: a dead sensor's last word is not a
bay's state). A zone with fewer than ``min_devices`` reporting bays is not published at
all. Its ``location`` is the centroid of its bays with coordinates (a zone with none is
left out: the model requires a location).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final

from citygate.contract.inventory import DeviceRecord
from citygate.opendata.ngsi.entity import CORE_CONTEXT, Attribute, Entity, entity_id, point, rfc3339, slug

ZONE_TYPE: Final = "OnStreetParking"
PARKING_CONTEXT: Final = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
)
OCCUPIED_FIELD: Final = "occupied"

Zone = tuple[str, str]  # ("site" | "district", name)


def zone_of(record: DeviceRecord) -> Zone | None:
    if record.site is not None:
        return ("site", record.site)
    if record.district is not None:
        return ("district", record.district)
    return None


def zone_id(zone: Zone) -> str:
    kind, name = zone
    return entity_id(ZONE_TYPE, f"{kind}:{slug(name)}")


def build_zones(
    bays: Iterable[DeviceRecord],
    latest: Mapping[str, Mapping[str, Any]],
    *,
    as_of_ns: int,
    min_devices: int,
) -> list[Entity]:
    """One entity per zone with at least ``min_devices`` bays in ``latest`` (device -> reading)."""
    by_zone: dict[Zone, list[DeviceRecord]] = defaultdict(list)
    for record in bays:
        zone = zone_of(record)
        if zone is not None:
            by_zone[zone].append(record)
    as_of = rfc3339(as_of_ns)
    out: list[Entity] = []
    for zone, records in by_zone.items():
        states = [latest[r.device_id].get(OCCUPIED_FIELD) for r in records if r.device_id in latest]
        known = [s for s in states if isinstance(s, bool)]
        located = [(r.lon, r.lat) for r in records if r.lon is not None and r.lat is not None]
        if len(known) < min_devices or not located:
            continue
        occupied = sum(known)
        lon = round(sum(p[0] for p in located) / len(located), 6)
        lat = round(sum(p[1] for p in located) / len(located), 6)
        attrs: dict[str, Attribute] = {
            "observationDateTime": Attribute(as_of),
            "name": Attribute(zone[1]),
            "location": Attribute(point(lon, lat), "GeoProperty"),
            "totalSpotNumber": Attribute(len(records)),
            "occupiedSpotNumber": Attribute(occupied, observed_at=as_of),
            "availableSpotNumber": Attribute(len(known) - occupied, observed_at=as_of),
            "occupancyDetectionType": Attribute(["singleSpaceDetection"]),
        }
        districts = {r.district for r in records}
        if len(districts) == 1 and None not in districts:
            attrs["address"] = Attribute({"district": districts.pop()})
        out.append(Entity(zone_id(zone), ZONE_TYPE, (PARKING_CONTEXT, CORE_CONTEXT), attrs))
    return out
