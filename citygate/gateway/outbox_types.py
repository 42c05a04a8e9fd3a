"""The values the outbox takes in and hands out: readings, dead letters, holds and its stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from citygate.contract.wire import wire_from_stored


class NewReading(NamedTuple):
    """A validated reading about to be stored (a tuple: built once per message, on the hot path).
    ``body`` is the stored form (citygate.contract.wire.stored_body)."""

    device_id: str
    seq: int | None
    received_ns: int
    body: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_ns: int
    device_id: str | None
    reason: str
    detail: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class StoredReading:
    id: int
    device_id: str
    seq: int | None
    received_ns: int
    body: bytes  # the stored form; the cloud gets wire()

    def wire(self) -> bytes:
        """The reading as it travels to the cloud (citygate.contract.wire.WireReading)."""
        return wire_from_stored(self.device_id, self.received_ns, self.body)


@dataclass(frozen=True, slots=True)
class Hold:
    """A reading of the batch in flight that the cloud refused and the gateway keeps."""

    id: int
    reason: str  # cloud_<the cloud's reason>
    detail: str


@dataclass(frozen=True, slots=True)
class HeldGroup:
    """Held readings of one reason (the operator's view)."""

    reason: str
    count: int
    bytes: int
    oldest_received_ns: int
    devices: int


@dataclass(frozen=True, slots=True)
class CommitResult:
    stored: int
    refused: int  # refused by the overflow policy (not stored)
    committed: dict[str, list[int]]  # device -> the seqs stored in this commit (for e2e acks)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    bytes: int
    oldest_received_ns: int | None
    deadletters: int
    counters: dict[str, int]
    held: dict[str, int]  # reason -> readings held now
    oldest_held_received_ns: int | None
