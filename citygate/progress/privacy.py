"""Which published counts are shown as "< k": small cells, and the cells that would give them away.

Primary suppression: a count below ``k`` (zero included: a zero and a three look the same) is
hidden. That alone is not enough where the page also shows a total: a service's open cases
minus the districts shown is the one district hidden. So, secondary (complementary)
suppression: every *relation* ``total = part_1 + ... + part_n`` the page publishes must have
none or at least two of its members hidden; where exactly one is, one more member is hidden,
until no relation has a single hidden member. Which one is the caller's choice (``tier``,
lowest first, then the smallest count): the page gives up details before headlines (a
district's count before a service's, a week before the weeks' total). Both kinds carry the
same label: a different one would say which of two hidden cells is the small one.

The guarantee is exact when the relations form a tree: no two relations share more than one
count, and no chain of relations leads back to where it started
(:mod:`citygate.progress.publish` builds them so). Then any linear combination of relations
keeps at least two hidden counts from a relation at the edge of what it uses (each has two,
and only one of them can be shared with the rest), so no hidden count can be computed,
however the relations are combined. What a visitor can still learn is the sum of a
relation's hidden counts (zero, when they are all zero).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Relation(Generic[K]):
    """``values[total] == sum(values[p] for p in parts)``, all of them published."""

    total: K
    parts: tuple[K, ...]

    @property
    def members(self) -> tuple[K, ...]:
        return (self.total, *self.parts)


def hidden_cells(
    values: Mapping[K, int],
    relations: Sequence[Relation[K]],
    k: int,
    *,
    tier: Callable[[K], int] = lambda _key: 0,
) -> set[K]:
    """The keys of ``values`` to publish as "< k". A complement is the shown member of the
    relation with the lowest ``tier``, then the smallest value, then first in ``values``' order
    (so the answer is deterministic)."""
    order = {key: i for i, key in enumerate(values)}
    hidden = {key for key, v in values.items() if v < k}
    touching: dict[K, list[Relation[K]]] = {}
    for r in relations:
        for m in r.members:
            if m not in order:
                raise KeyError(f"relation member {m!r} has no value")
            touching.setdefault(m, []).append(r)
    todo = list(reversed(relations))
    while todo:
        r = todo.pop()
        if sum(m in hidden for m in r.members) != 1:
            continue
        shown = [m for m in r.members if m not in hidden]
        if not shown:  # a relation of one member (a total of nothing) gives nothing away
            continue
        pick = min(shown, key=lambda m: (tier(m), values[m], order[m]))
        hidden.add(pick)
        todo.extend(touching[pick])  # its other relations may now have a single hidden member
    return hidden
