"""One NGSI-LD entity as the export holds it, before it is written in any of the three forms.

An entity is its id, its type, the ``@context`` URLs its terms come from, and attributes:
Properties (a value, perhaps with ``unitCode`` and ``observedAt``), one GeoProperty
(``location``) and Relationships (an entity id). :mod:`citygate.opendata.ngsi.forms`
writes it normalized, as keyValues or concise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from citygate.contract.rfc3339 import format_rfc3339_ms, format_rfc3339_ns

# The NGSI-LD core context, last in every entity's @context: the terms Property, GeoProperty,
# value, unitCode, observedAt... are defined there. (A broker implies it; a JSON-LD processor
# reading an exported document on its own would not.)
CORE_CONTEXT: Final = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
URN_PREFIX: Final = "urn:ngsi-ld:"

AttrKind = Literal["Property", "GeoProperty", "Relationship"]

_NS = 1_000_000_000
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class Attribute:
    value: Any  # a JSON value; for a Relationship, the target entity's id
    kind: AttrKind = "Property"
    unit_code: str | None = None  # UN/CEFACT common code
    observed_at: str | None = None  # RFC 3339: when the value was measured


@dataclass(frozen=True, slots=True)
class Entity:
    id: str
    type: str
    context: tuple[str, ...]
    attrs: Mapping[str, Attribute]


def entity_id(entity_type: str, local: str) -> str:
    """``urn:ngsi-ld:<Type>:<local>``, the Smart Data Models' id convention."""
    return f"{URN_PREFIX}{entity_type}:{local}"


def type_of(urn: str) -> str | None:
    """The entity type an id of this export names (``urn:ngsi-ld:<Type>:...``), or None."""
    if not urn.startswith(URN_PREFIX):
        return None
    entity_type, sep, rest = urn[len(URN_PREFIX) :].partition(":")
    return entity_type if sep and rest and entity_type else None


def slug(name: str) -> str:
    """``name`` as id-safe ASCII (letters, digits, ``.``, ``_``, ``-``).

    Site and district names may hold spaces, commas or other letters: those become ``-``
    and a short digest of the name follows (``~1a2b3c4d``), so that two names that slug
    alike ("park, north" and "park north") stay two ids. A comma would also break the
    ``id=`` lists of the query API, and ``%``-escapes would be decoded on the way.
    """
    safe = _SLUG_UNSAFE.sub("-", name)
    if safe == name:
        return name
    digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    return f"{safe}~{digest}"


def rfc3339(ns: int) -> str:
    """UTC with ``Z``: to the millisecond when that is exact (device times usually are), else ns."""
    return format_rfc3339_ms(ns) if ns % 1_000_000 == 0 else format_rfc3339_ns(ns)


def point(lon: float, lat: float) -> dict[str, Any]:
    """A GeoJSON Point (longitude first, as GeoJSON orders them)."""
    return {"type": "Point", "coordinates": [lon, lat]}
