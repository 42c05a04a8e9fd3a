"""What the dashboard needs besides the fleet and read APIs: units, positions, map tiles.

``GET /dashboard/context`` (operator token) answers a :class:`DashboardContext`: the
profiles of the inventory's devices with each field's type and unit (the charts' axes
and hover values), every device's position from the inventory (``lat``/``lon``), every
registered gateway placed at the centre of its devices (a gateway record carries no
position of its own), the map's tile layer from ``dashboard_tile_url``, if any, and whether
the service layer runs (the cases panel).

The tile URL also decides the page's Content-Security-Policy: images from this origin
and, when set, from the tile server's origin only (:func:`tile_source`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, Literal

from pydantic import BaseModel

from citygate.contract.inventory import Inventory
from citygate.contract.profiles import DeviceProfile, ProfileRegistry

# scheme://host[:port]/..., with "{s}." as the host's first label for subdomains. The
# settings check the same shape at load; this check stands alone so that nothing that could
# break out of a header value (space, ';', ',', quotes) ever reaches the CSP.
_TILE_ORIGIN: Final = re.compile(
    r"(?P<scheme>https?)://(?P<sub>\{s\}\.)?(?P<host>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
    r"(?P<port>:[0-9]{1,5})?/[^\s\"'<>\\]*"
)
_OSM_HOST: Final = re.compile(r"(?:.*\.)?openstreetmap\.(?:org|fr|de)")


class FieldInfo(BaseModel):
    name: str
    type: Literal["float", "int", "bool", "string"]
    unit: str | None
    description: str


class ProfileInfo(BaseModel):
    name: str
    version: int
    title: str
    measurement: str
    expected_interval_s: int
    fields: list[FieldInfo]


class DevicePlace(BaseModel):
    device_id: str
    profile: str
    profile_version: int
    site: str | None
    district: str | None
    lat: float | None
    lon: float | None
    gateways: list[str]


class GatewayPlace(BaseModel):
    gateway_id: str
    site: str | None
    district: str | None
    # The mean position of the gateway's devices that have one; None when none has.
    lat: float | None
    lon: float | None
    devices: int
    placed_by: Literal["devices", "none"]


class TileLayer(BaseModel):
    url: str
    # Plain text (the page escapes it); the tile server's terms usually require it shown.
    attribution: str
    attribution_url: str | None


class DashboardContext(BaseModel):
    contract_version: str
    tiles: TileLayer | None
    # [cloud.service] runs here: the cases panel asks /v1/cases (else it says the layer is off).
    service_layer: bool
    profiles: list[ProfileInfo]
    devices: list[DevicePlace]
    gateways: list[GatewayPlace]


def tile_source(url: str) -> str | None:
    """The CSP source of a tile URL template (``https://*.tile.example.org`` for ``{s}.``), or None."""
    m = _TILE_ORIGIN.fullmatch(url) if url else None
    if m is None:
        return None
    wildcard = "*." if m["sub"] else ""
    return f"{m['scheme']}://{wildcard}{m['host'].lower()}{m['port'] or ''}"


def tile_layer(url: str) -> TileLayer | None:
    """The page's tile layer for ``dashboard_tile_url`` (None: empty, or not a usable template)."""
    m = _TILE_ORIGIN.fullmatch(url) if url else None
    if m is None or not all(key in url for key in ("{z}", "{x}", "{y}")):
        return None
    host = m["host"].lower()
    if _OSM_HOST.fullmatch(host):
        return TileLayer(
            url=url,
            attribution="© OpenStreetMap contributors",
            attribution_url="https://www.openstreetmap.org/copyright",
        )
    return TileLayer(url=url, attribution=f"map tiles: {host}", attribution_url=None)


def content_security_policy(tile_url: str) -> str:
    """The page's CSP: everything from this origin; map tile images from the tile server too."""
    source = tile_source(tile_url) if tile_layer(tile_url) is not None else None
    images = "'self' data:" + (f" {source}" if source else "")
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


def _profile_info(p: DeviceProfile) -> ProfileInfo:
    return ProfileInfo(
        name=p.name,
        version=p.version,
        title=p.title,
        measurement=p.measurement,
        expected_interval_s=p.expected_interval_s,
        fields=[
            FieldInfo(name=n, type=f.type, unit=f.unit, description=f.description)
            for n, f in p.fields.items()
        ],
    )


def _mean(values: Iterable[float]) -> float | None:
    vs = list(values)
    return round(sum(vs) / len(vs), 6) if vs else None


def build_context(
    inventory: Inventory,
    registry: ProfileRegistry,
    tile_url: str,
    contract_version: str,
    *,
    service_layer: bool = False,
) -> DashboardContext:
    devices = [
        DevicePlace(
            device_id=device_id,
            profile=r.profile,
            profile_version=r.profile_version,
            site=r.site,
            district=r.district,
            lat=r.lat,
            lon=r.lon,
            gateways=list(r.gateways),
        )
        for device_id, r in sorted(inventory.items())
    ]
    used = {(d.profile, d.profile_version) for d in devices}
    profiles = [_profile_info(p) for p in registry if (p.name, p.version) in used]
    placed: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, int] = {}
    for d in devices:
        for gid in d.gateways:
            counts[gid] = counts.get(gid, 0) + 1
            if d.lat is not None and d.lon is not None:
                placed.setdefault(gid, []).append((d.lat, d.lon))
    gateways = []
    for gateway_id, g in sorted(inventory.gateways.items()):
        points = placed.get(gateway_id, [])
        lat, lon = _mean(p[0] for p in points), _mean(p[1] for p in points)
        gateways.append(
            GatewayPlace(
                gateway_id=gateway_id,
                site=g.site,
                district=g.district,
                lat=lat,
                lon=lon,
                devices=counts.get(gateway_id, 0),
                placed_by="devices" if points else "none",
            )
        )
    return DashboardContext(
        contract_version=contract_version,
        tiles=tile_layer(tile_url),
        service_layer=service_layer,
        profiles=profiles,
        devices=devices,
        gateways=gateways,
    )
