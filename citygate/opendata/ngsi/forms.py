"""An entity written in one of NGSI-LD's three representations.

* **normalized** (the default): every attribute an object with its ``type`` (Property,
  GeoProperty, Relationship), ``value`` or ``object``, and the sub-attributes ``unitCode``
  and ``observedAt``;
* **keyValues** (``options=keyValues``, also called simplified): every attribute just its
  value; the shape the Smart Data Models' JSON Schemas describe;
* **concise**: normalized without what a reader can infer: ``type`` is left out, a
  Property with no sub-attribute is its bare value, a GeoProperty its GeoJSON. A Property
  whose value is a JSON object stays ``{"value": {...}}``: bare, its members would read as
  sub-attributes.

``@context`` is written into the body only when the answer is JSON-LD; plain JSON answers
name the context in a ``Link`` header instead (the router decides).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from citygate.opendata.ngsi.entity import Attribute, Entity

Form = Literal["normalized", "keyValues", "concise"]


def _normalized(a: Attribute) -> dict[str, Any]:
    if a.kind == "Relationship":
        d: dict[str, Any] = {"type": "Relationship", "object": a.value}
    else:
        d = {"type": a.kind, "value": a.value}
    if a.unit_code is not None:
        d["unitCode"] = a.unit_code
    if a.observed_at is not None:
        d["observedAt"] = a.observed_at
    return d


def _concise(a: Attribute) -> Any:
    sub = a.unit_code is not None or a.observed_at is not None
    if a.kind == "Relationship":
        d: dict[str, Any] = {"object": a.value}
    elif not sub and (a.kind == "GeoProperty" or not isinstance(a.value, dict)):
        return a.value
    else:
        d = {"value": a.value}
        if a.kind == "GeoProperty":
            d["type"] = "GeoProperty"  # a JSON object value with sub-attributes: say what it is
    if a.unit_code is not None:
        d["unitCode"] = a.unit_code
    if a.observed_at is not None:
        d["observedAt"] = a.observed_at
    return d


def render(
    entity: Entity, form: Form, *, attrs: Collection[str] | None = None, context: bool
) -> dict[str, Any]:
    """The entity as a JSON object; only the attributes in ``attrs`` when it is given."""
    doc: dict[str, Any] = {"id": entity.id, "type": entity.type}
    for name, a in entity.attrs.items():
        if attrs is not None and name not in attrs:
            continue
        if form == "keyValues":
            doc[name] = a.value
        elif form == "concise":
            doc[name] = _concise(a)
        else:
            doc[name] = _normalized(a)
    if context:
        doc["@context"] = list(entity.context)
    return doc
