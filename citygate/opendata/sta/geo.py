"""The geometries of the spatial ``$filter`` functions: WKT ``POINT`` and ``POLYGON`` (with holes).

Every location here is a point (a device's lat/lon), so the relations needed are point to
point and point to polygon, computed on the plane of longitude and latitude (as PostGIS
``geometry`` does; over a city's extent the difference to the sphere is nothing a bounding
box cares about). Coordinates are ``x y``, i.e. longitude first, as WKT and GeoJSON have it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from citygate.opendata.sta.errors import BadQueryError

MAX_VERTICES: Final = 10_000
_POINT_RE: Final = re.compile(r"\s*POINT\s*\(\s*([^()]*?)\s*\)\s*", re.IGNORECASE)
_POLYGON_RE: Final = re.compile(r"\s*POLYGON\s*\(\s*(\(.*\))\s*\)\s*", re.IGNORECASE | re.DOTALL)
_RING_RE: Final = re.compile(r"\(([^()]*)\)")

Coord = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Polygon:
    rings: tuple[tuple[Coord, ...], ...]  # the outer ring, then the holes; each closed


Geometry = Point | Polygon


def _coord(text: str) -> Coord:
    parts = text.split()
    if len(parts) != 2:
        raise BadQueryError(f"a WKT coordinate is 'x y' (longitude latitude), not {text.strip()[:40]!r}")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise BadQueryError(f"a WKT coordinate is two numbers, not {text.strip()[:40]!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise BadQueryError("WKT coordinates must be finite numbers")
    return x, y


def parse_wkt(text: str) -> Geometry:
    """A ``POINT(x y)`` or ``POLYGON((x y, ...), (hole), ...)``; anything else is BadQueryError."""
    wkt = text.split(";", 1)[1] if text.upper().startswith("SRID=") else text
    m = _POINT_RE.fullmatch(wkt)
    if m:
        x, y = _coord(m.group(1))
        return Point(x, y)
    m = _POLYGON_RE.fullmatch(wkt)
    if m is None:
        raise BadQueryError(
            "geography literals are WKT POINT(x y) or POLYGON((x y, x y, ...)); lon lat order"
        )
    body = m.group(1)
    rings_text = _RING_RE.findall(body)
    if not rings_text or _RING_RE.sub("", body).replace(",", "").strip():
        raise BadQueryError("a WKT POLYGON is POLYGON((x y, ...)[, (hole)...])")
    rings: list[tuple[Coord, ...]] = []
    vertices = 0
    for ring_text in rings_text:
        ring = tuple(_coord(c) for c in ring_text.split(","))
        vertices += len(ring)
        if vertices > MAX_VERTICES:
            raise BadQueryError(f"a polygon has at most {MAX_VERTICES} vertices")
        if len(ring) < 4 or ring[0] != ring[-1]:
            raise BadQueryError("a polygon ring has at least 4 points and ends where it starts")
        rings.append(ring)
    return Polygon(tuple(rings))


def from_geojson(doc: Mapping[str, Any] | None) -> Geometry | None:
    """The point of a location or feature (a GeoJSON Point, or a Feature holding one), or None."""
    if doc is None:
        return None
    if doc.get("type") == "Feature":
        geometry = doc.get("geometry")
        return from_geojson(geometry) if isinstance(geometry, Mapping) else None
    coordinates = doc.get("coordinates")
    if doc.get("type") == "Point" and isinstance(coordinates, list | tuple) and len(coordinates) >= 2:
        return Point(float(coordinates[0]), float(coordinates[1]))
    return None


def _on_segment(p: Point, a: Coord, b: Coord) -> bool:
    (ax, ay), (bx, by) = a, b
    cross = (bx - ax) * (p.y - ay) - (by - ay) * (p.x - ax)
    return cross == 0 and min(ax, bx) <= p.x <= max(ax, bx) and min(ay, by) <= p.y <= max(ay, by)


def _in_ring(p: Point, ring: tuple[Coord, ...]) -> bool:
    """Even-odd rule: strictly inside (the boundary is handled by :func:`_on_boundary`)."""
    inside = False
    for (ax, ay), (bx, by) in itertools.pairwise(ring):
        if (ay > p.y) != (by > p.y):
            x_cross = ax + (p.y - ay) * (bx - ax) / (by - ay)
            if p.x < x_cross:
                inside = not inside
    return inside


def _on_boundary(p: Point, poly: Polygon) -> bool:
    return any(_on_segment(p, a, b) for ring in poly.rings for a, b in itertools.pairwise(ring))


def _interior(p: Point, poly: Polygon) -> bool:
    outer, *holes = poly.rings
    return _in_ring(p, outer) and not any(_in_ring(p, h) for h in holes) and not _on_boundary(p, poly)


def _points_only(a: Geometry, b: Geometry) -> tuple[Point, Geometry]:
    if isinstance(a, Point):
        return a, b
    if isinstance(b, Point):
        return b, a
    raise BadQueryError("spatial functions compare a location (a point) with a geometry, not two polygons")


def intersects(a: Geometry, b: Geometry) -> bool:
    p, other = _points_only(a, b)
    if isinstance(other, Point):
        return p == other
    return _interior(p, other) or _on_boundary(p, other)


def within(a: Geometry, b: Geometry) -> bool:
    """``a`` lies in the interior of ``b`` (a point on a polygon's edge is not within it)."""
    if isinstance(a, Polygon):
        if isinstance(b, Point):
            return False
        raise BadQueryError(
            "spatial functions compare a location (a point) with a geometry, not two polygons"
        )
    if isinstance(b, Point):
        return a == b
    return _interior(a, b)


def equals(a: Geometry, b: Geometry) -> bool:
    if isinstance(a, Point) and isinstance(b, Point):
        return a == b
    _points_only(a, b)
    return False
