"""Stable integer ``@iot.id`` s: the same inventory gives the same ids on every replica, always.

Not the inventory's order (a device added in the middle would renumber the rest) and no
stored mapping (replicas share no store): each entity's id is a BLAKE2b hash of its kind and
natural key (a device id, ``device/field``, ``profile:vN``), truncated.

* Inventory entities: 53 bits, JavaScript's safe integers (most STA clients are web maps).
  Two keys of one kind meet with a probability of about n^2 / 2^54 (5e-9 for 10,000).
* Datastreams: 21 bits, because an Observation's id carries its Datastream's:
  ``datastream_id << 42 | epoch milliseconds`` (42 bits of ms reach the year 2109) is
  reversible, so ``Observations(id)`` is answered by one query without any index. Those ids
  reach 2^63 - 1: a Java ``long``, as FROST-Server's own, beyond JavaScript's 2^53.

Collisions are resolved, not refused: keys are taken in sorted order and a key whose id is
taken gets the next free one (linear probing). Replicas with the same inventory agree; an id
can only change when a later inventory adds a key that sorts before it *and* lands on its
slot (about 1 in 10^9 for hashed entities; for 10,000 Datastreams about a dozen sit one
slot off their hash). :func:`assign` reports every collision so that the caller logs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

HASH_BITS: Final = 53
DATASTREAM_BITS: Final = 21
TIME_BITS: Final = 42
_TIME_MASK: Final = (1 << TIME_BITS) - 1
_NS_PER_MS: Final = 1_000_000
# Observation times the ids can carry: [1970, 2109).
MIN_OBSERVATION_NS: Final = 0
MAX_OBSERVATION_NS: Final = (1 << TIME_BITS) * _NS_PER_MS


class IdSpaceFull(ValueError):  # noqa: N818 - a state, like the cloud's TooManyReads
    """More keys than an id space takes with probing kept short (half of it)."""


@dataclass(slots=True)
class Assigned:
    ids: dict[str, int] = field(default_factory=dict)
    collisions: list[tuple[str, str]] = field(default_factory=list)  # (holder, moved)


def _hash(kind: str, key: str) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=kind.encode()[:16]).digest()
    return int.from_bytes(digest, "big")


def assign(kind: str, keys: Iterable[str], bits: int = HASH_BITS) -> Assigned:
    """Ids in ``1 .. 2**bits - 1`` for ``keys`` (see the module docstring for collisions)."""
    size = (1 << bits) - 1
    ordered = sorted(set(keys))
    if len(ordered) > size // 2:
        raise IdSpaceFull(
            f"{len(ordered)} {kind} keys do not fit a {bits}-bit id space (at most {size // 2})"
        )
    out = Assigned()
    holders: dict[int, str] = {}
    for key in ordered:
        n = _hash(kind, key) % size + 1
        if n in holders:
            out.collisions.append((holders[n], key))
            while n in holders:
                n = n % size + 1
        holders[n] = key
        out.ids[key] = n
    return out


def observation_id(datastream_id: int, time_ns: int) -> int | None:
    """The Observation's id, or None for a time the id cannot carry (before 1970, after 2108)."""
    if not MIN_OBSERVATION_NS <= time_ns < MAX_OBSERVATION_NS:
        return None
    return datastream_id << TIME_BITS | time_ns // _NS_PER_MS


def split_observation_id(obs_id: int) -> tuple[int, int] | None:
    """(Datastream id, first ns of the id's millisecond), or None if no Observation can have it."""
    if obs_id <= 0 or obs_id >= 1 << (DATASTREAM_BITS + TIME_BITS):
        return None
    return obs_id >> TIME_BITS, (obs_id & _TIME_MASK) * _NS_PER_MS
