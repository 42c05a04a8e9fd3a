"""The outbox's deferred bookkeeping: what the last durable write has not recorded yet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

# Runs of delivered ids kept before they must be deleted: each is a clause in the forwarder's
# queries.
_MAX_DELIVERED_RUNS = 32


@dataclass(slots=True)
class Deferred:
    """Bookkeeping the last durable write has not recorded yet (docs/GATEWAY.md, "Flash wear").

    A commit of readings writes only the readings; a delivered batch changes nothing on disk.
    Both are recorded together every ``settle_s`` (or sooner: a bound, a refusal, a stop):
    the delivered rows are deleted and the counters and meta updated in one transaction.

    Exact across kill -9: rows inserted since ``counted_through_id`` are counted in
    ``readings_in`` when the outbox opens (rows are deleted only in a transaction that also
    moves ``counted_through_id`` up to the newest id). Delivered rows not yet deleted are
    delivered again after a crash; the cloud stores a reading once however often it arrives
    (docs/ARCHITECTURE.md, guarantee 2).
    """

    readings_in: int = 0
    delivered: list[tuple[int, int]] = field(default_factory=list)  # runs of ids, (first, last)
    delivered_n: int = 0
    delivered_bytes: int = 0
    batches: int = 0
    last_forward_ns: int | None = None
    since: float | None = None  # monotonic time of the oldest item

    def copy(self) -> Deferred:
        return Deferred(
            self.readings_in,
            list(self.delivered),
            self.delivered_n,
            self.delivered_bytes,
            self.batches,
            self.last_forward_ns,
            self.since,
        )

    def empty(self) -> bool:
        return self.since is None

    def touch(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def delivered_batch(self, id_runs: list[tuple[int, int]], nbytes: int) -> None:
        """The cloud stored a batch: these runs of ids, of ``nbytes``."""
        for lo, hi in id_runs:
            if self.delivered and self.delivered[-1][1] + 1 == lo:  # batches follow each other
                self.delivered[-1] = (self.delivered[-1][0], hi)
            else:
                self.delivered.append((lo, hi))
            self.delivered_n += hi - lo + 1
        self.delivered_bytes += nbytes
        self.batches += 1
        self.last_forward_ns = time.time_ns()
        self.touch()

    def due(self, settle_s: float, settle_max_rows: int) -> bool:
        """Whether to record now: the oldest item has waited ``settle_s``, or enough is waiting."""
        return self.since is not None and (
            time.monotonic() - self.since >= settle_s
            or self.delivered_n >= settle_max_rows
            or len(self.delivered) > _MAX_DELIVERED_RUNS
        )

    def undelivered_clause(self) -> tuple[str, list[int]]:
        """SQL that leaves out delivered rows not yet deleted, and its arguments."""
        if not self.delivered:
            return "", []
        return (
            " AND NOT (" + " OR ".join(["id BETWEEN ? AND ?"] * len(self.delivered)) + ")",
            [x for run in self.delivered for x in run],
        )


def runs(ids: list[int]) -> Iterator[tuple[int, int]]:
    """Contiguous runs of sorted ids, as (first, last)."""
    if not ids:
        return
    lo = prev = ids[0]
    for i in ids[1:]:
        if i != prev + 1:
            yield lo, prev
            lo = i
        prev = i
    yield lo, prev
