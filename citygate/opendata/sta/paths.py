"""Resource paths (STA 1.1 section 9.2): what the part after ``/sta/v1.1/`` names.

    Things                              an entity set
    Things(1)                           an entity
    Things(1)/Datastreams               a navigation property (a set, or one entity)
    Things(1)/Datastreams(2)/Sensor     ... and on, each key inside a set
    Things(1)/name   Things(1)/name/$value   a property, its raw value
    Things(1)/Datastreams/$ref          the association links only

Checked against the data model before anything is looked up: a wrong name is a 400 that
says what the entity has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from citygate.opendata.sta.entities import ENTITY_SETS, NAVIGATION, PROPERTIES, Kind
from citygate.opendata.sta.errors import BadQueryError

MAX_SEGMENTS: Final = 8
_SEGMENT: Final = re.compile(r"([A-Za-z]{1,40})(?:\(([0-9]{1,19})\))?")


@dataclass(frozen=True, slots=True)
class Step:
    name: str  # the entity set, then navigation properties
    kind: Kind
    many: bool  # a set (before its key, if any)
    key: int | None


@dataclass(frozen=True, slots=True)
class ResourcePath:
    steps: tuple[Step, ...]
    prop: str | None = None  # a property at the end
    value: bool = False  # $value: the property's raw value
    ref: bool = False  # $ref: association links only

    @property
    def kind(self) -> Kind:
        return self.steps[-1].kind

    @property
    def collection(self) -> bool:
        """The path ends at a set (no key), not at one entity."""
        last = self.steps[-1]
        return last.many and last.key is None


def _step(text: str, kind: Kind | None) -> Step:
    m = _SEGMENT.fullmatch(text)
    if m is None:
        raise BadQueryError(f"path segment {text[:60]!r} is not Name or Name(id) with an integer id")
    name, key = m.group(1), m.group(2)
    if kind is None:
        target = ENTITY_SETS.get(name)
        if target is None:
            raise BadQueryError(f"no entity set {name!r}; the sets are {', '.join(ENTITY_SETS)}")
        many = True
    else:
        nav = NAVIGATION[kind].get(name)
        if nav is None:
            raise BadQueryError(
                f"a {kind.value} has no navigation property {name!r}; it has {', '.join(NAVIGATION[kind])}"
            )
        target, many = nav.target, nav.many
    if key is not None and not many:
        raise BadQueryError(f"{name} is a single entity: it takes no (id)")
    return Step(name, target, many, int(key) if key is not None else None)


def parse_path(path: str) -> ResourcePath:
    parts = path.split("/")
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts:
        raise BadQueryError("empty resource path")
    if len(parts) > MAX_SEGMENTS:
        raise BadQueryError(f"a resource path has at most {MAX_SEGMENTS} segments")
    steps: list[Step] = []
    prop: str | None = None
    value = ref = False
    for i, part in enumerate(parts):
        last_step = steps[-1] if steps else None
        if part == "$ref":
            if i != len(parts) - 1 or last_step is None or prop is not None:
                raise BadQueryError("$ref ends a path to an entity or a set: Things(1)/Datastreams/$ref")
            ref = True
        elif part == "$value":
            if prop is None or i != len(parts) - 1:
                raise BadQueryError("$value follows a property: Things(1)/name/$value")
            value = True
        elif prop is not None:
            raise BadQueryError(f"nothing follows the property {prop!r} but $value")
        elif last_step is not None and last_step.many and last_step.key is None:
            raise BadQueryError(f"{last_step.name} is a set: name one of its entities, {last_step.name}(id)")
        elif last_step is not None and part in PROPERTIES[last_step.kind] + ("id",):
            prop = part
        else:
            steps.append(_step(part, last_step.kind if last_step else None))
    return ResourcePath(tuple(steps), prop, value, ref)
