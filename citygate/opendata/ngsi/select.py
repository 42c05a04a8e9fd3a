"""Which entities answer a query: the types asked for that this caller may see, then ids and attrs.

A type the caller may not see is absent, as if it had no entity (an empty list, 404 for one
of its ids), never refused: whether a profile is public is the policy's business, not
something a probe should learn. A plain JSON answer names one ``@context`` in its Link
header, so its types must share one (:func:`contexts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from citygate.opendata.ngsi.entity import Entity, type_of
from citygate.opendata.ngsi.exporter import EXPANDED, SOURCES, Exporter
from citygate.opendata.ngsi.params import EntityQuery, Media, Selection, is_uri
from citygate.opendata.ngsi.problems import bad_data, not_found


@dataclass(frozen=True, slots=True)
class Found:
    entities: list[Entity]  # sorted by type, then id
    contexts: set[str]  # of the types the answer may hold


def resolve(names: Iterable[str]) -> list[str]:
    """Our entity types among these names (short, or expanded as the models' contexts expand them)."""
    out: list[str] = []
    for n in names:
        t = n if n in SOURCES else EXPANDED.get(n)
        if t is not None and t not in out:
            out.append(t)
    return out


def contexts(types: Iterable[str], media: Media) -> set[str]:
    found = {SOURCES[t].context for t in types}
    if media == "json" and len(found) > 1:
        # One Link header names one context, and the models' contexts expand some of the
        # same terms differently: ask per domain, or as JSON-LD (each entity its own context).
        raise bad_data(
            "these types come from different Smart Data Models contexts; ask for them one domain at a time "
            "or with Accept: application/ld+json (each entity then carries its own @context)"
        )
    return found


async def select(exporter: Exporter, q: EntityQuery, *, reader: bool, media: Media) -> Found:
    sel = q.selection
    types = resolve(sel.types) if sel.types is not None else list(SOURCES)
    if q.ids is not None:
        named = {type_of(i) for i in q.ids}
        types = [t for t in types if t in named]
    types = sorted(t for t in types if exporter.served(t, reader=reader))
    ctx = contexts(types, media)
    found: list[Entity] = []
    for t in types:
        snap = await exporter.snapshot(t)
        if q.ids is not None:
            found.extend(sorted((snap.by_id[i] for i in q.ids if i in snap.by_id), key=lambda e: e.id))
        else:
            found.extend(snap.entities)
    if sel.attrs is not None:
        wanted = sel.attrs
        found = [e for e in found if not wanted.isdisjoint(e.attrs)]
    return Found(found, ctx)


async def lookup(exporter: Exporter, entity_id: str, sel: Selection, *, reader: bool, media: Media) -> Found:
    """The one entity with this id (``Found.entities`` holds it), or NgsiProblem 400/404."""
    entity_type = type_of(entity_id)
    missing = not_found(f"no entity {entity_id[:200]!r}")
    if entity_type is None:
        if not is_uri(entity_id):
            raise bad_data(f"{entity_id[:80]!r} is not a URI (ids look like urn:ngsi-ld:<Type>:<name>)")
        raise missing
    if (
        entity_type not in SOURCES
        or not exporter.served(entity_type, reader=reader)
        or (sel.types is not None and entity_type not in resolve(sel.types))
    ):
        raise missing
    entity = (await exporter.snapshot(entity_type)).by_id.get(entity_id)
    if entity is None or (sel.attrs is not None and sel.attrs.isdisjoint(entity.attrs)):
        raise missing
    return Found([entity], contexts([entity_type], media))
