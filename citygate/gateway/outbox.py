"""The durable outbox: the only module that talks to SQLite.

Readings are committed in groups (one transaction, ``synchronous=FULL`` in WAL
mode: the commit is on disk when ``commit`` returns), and deleted only when the
cloud has confirmed their batch. Rejected payloads go to the dead-letter table.
Counters of drops and rejections live in the same database and change in the
same transactions as the rows they count, so they stay exact across kill -9.

Bounds: total bytes, age of the oldest row, and free disk. When a bound is hit
the configured overflow policy applies (see :class:`OverflowPolicy`), and
every reading it costs is counted by reason.

Held readings: a reading the cloud refused for a reason the gateway did not
foresee (its inventory, profiles, window or database disagree with the
gateway's) moves to the ``held`` table instead of being deleted. It is retried
on a slow schedule, at once when the cloud's contract changes, and leaves only
when the cloud stores it, an operator discards it, or the same bounds as every
other reading drop it (counted). See docs/GATEWAY.md, "Held readings".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

import structlog

from citygate.errors import OutboxWriteError
from citygate.gateway.checkpoint import BACKSTOP_FRAMES, WalCheckpointer

log = structlog.get_logger("citygate.gateway.outbox")

# 2: the held table (created in place in a version-1 outbox). 3: 'counted_through_id' in meta,
# the bookkeeping that lets a commit of readings write nothing else (see _Deferred).
SCHEMA_VERSION = 3
# Small pages: a commit rewrites the whole pages it touches (each in a WAL frame), and most
# commits at city rates hold one or two kilobytes of readings. Set when the file is created;
# an existing outbox keeps its page size.
_PAGE_SIZE = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,           -- arrival order; also the per-device order
    device_id TEXT NOT NULL,
    seq INTEGER,
    received_ns INTEGER NOT NULL,
    body BLOB NOT NULL                -- the wire form (citygate.contract.wire.WireReading), JSON
);
CREATE TABLE IF NOT EXISTS deadletters (
    id INTEGER PRIMARY KEY,
    received_ns INTEGER NOT NULL,
    device_id TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL,            -- bounded: first max_deadletter_payload bytes
    payload_size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS held (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    seq INTEGER,
    received_ns INTEGER NOT NULL,
    body BLOB NOT NULL,               -- the wire form, as in readings
    reason TEXT NOT NULL,             -- cloud_<the cloud's reason>
    detail TEXT NOT NULL,
    held_ns INTEGER NOT NULL,         -- first held
    retry_ns INTEGER NOT NULL,        -- next attempt
    attempts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS held_by_retry ON held(retry_ns);
CREATE INDEX IF NOT EXISTS held_by_received ON held(received_ns);
CREATE INDEX IF NOT EXISTS held_by_reason ON held(reason, received_ns);
"""

# The bytes a row is counted for: payload plus a fixed allowance for the row, id and index
# overhead. In SQL for the sums and deletes, in Python for new rows; the two must agree.
# (Queries built with f-strings below interpolate only constants like this one and "?"
# placeholders, never a value: hence their noqa S608.)
_ROW_SIZE_SQL = "length(body) + length(device_id) + 40"
_ROW_OVERHEAD = 40


class OverflowPolicy(StrEnum):
    """What happens to a new reading when the outbox is at a bound.

    ``drop_oldest``: delete the oldest unsent readings to make room (counted as
    ``dropped.overflow_oldest``); fresh data keeps flowing.
    ``refuse_new``: keep what is stored, refuse the new reading (counted as
    ``dropped.outbox_full``); it is not confirmed end to end, so a device that
    keeps unconfirmed readings resends it later.
    """

    DROP_OLDEST = "drop_oldest"
    REFUSE_NEW = "refuse_new"


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    max_bytes: int = 512 * 1024 * 1024
    max_age_s: float = 14 * 86400.0
    min_free_disk_bytes: int = 256 * 1024 * 1024
    policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    max_deadletters: int = 100_000
    max_deadletter_payload: int = 4096


class NewReading(NamedTuple):
    """A validated reading about to be stored (a tuple: built once per message, on the hot path)."""

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
    body: bytes


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


@dataclass(slots=True)
class _Deferred:
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

    def copy(self) -> _Deferred:
        return _Deferred(
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


# Runs of delivered ids kept before they must be deleted: each is a clause in the forwarder's
# queries.
_MAX_DELIVERED_RUNS = 32


class OutboxCorruptError(Exception):
    """Raised internally when the database fails its integrity check."""


def _row_size(r: NewReading) -> int:
    return len(r.body) + len(r.device_id) + _ROW_OVERHEAD


class Outbox:
    """One SQLite database file, shared by the agent's threads through one lock.

    SQLite serialises writers anyway; one connection behind a lock also keeps
    the running totals (depth, bytes) exact without re-scanning the table.
    """

    def __init__(
        self,
        path: Path,
        limits: OutboxLimits | None = None,
        *,
        check: bool = False,
        settle_s: float = 10.0,
        settle_max_rows: int = 2_000,
        bookkeeper: bool = True,
        background_checkpoints: bool = False,
    ) -> None:
        """``bookkeeper=False`` for a second process beside the running agent (the CLI): it
        does not count the agent's newest rows as its own, and records no bookkeeping.
        ``background_checkpoints``: the WAL is checkpointed by a thread of its own
        (citygate.gateway.checkpoint), never inside a commit (the agent)."""
        self.path = path
        self.bookkeeper = bookkeeper
        self.limits = limits or OutboxLimits()
        self.settle_s = settle_s
        self.settle_max_rows = settle_max_rows
        self._lock = threading.RLock()
        self._db = self._connect(path)
        if check:
            self._check_integrity()
        self._db.executescript(_SCHEMA)
        self._deferred = _Deferred()
        self._next_id = self._open_bookkeeping() if bookkeeper else 0
        depth, size = self._db.execute(
            f"SELECT count(*), coalesce(sum({_ROW_SIZE_SQL}), 0) FROM readings"  # noqa: S608
        ).fetchone()
        self._depth: int = depth
        self._bytes: int = size
        self._held_bytes = 0
        self.refresh_held_bytes()
        # Rows of the batch on its way to the cloud: the overflow and age policies never drop
        # them (a reading counted as dropped must really be gone, not delivered a moment later).
        self._leased: frozenset[int] = frozenset()
        self._leased_held: frozenset[int] = frozenset()  # the same, for a batch of held rows
        self._checkpointer: WalCheckpointer | None = None
        if background_checkpoints:
            self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_FRAMES}")
            self._checkpointer = WalCheckpointer(path)
            self._checkpointer.start()

    def refresh_held_bytes(self) -> None:
        """Re-read the held rows' size (an operator's ``citygate gateway held discard`` changes
        it from another process; until then the bound errs on the side of less room)."""
        with self._lock:
            (size,) = self._db.execute(f"SELECT coalesce(sum({_ROW_SIZE_SQL}), 0) FROM held").fetchone()  # noqa: S608
            self._held_bytes = size

    def _open_bookkeeping(self) -> int:
        """Schema version, and the readings committed since the last bookkeeping (kill -9):
        counted now, in memory, as the fast path would have. Returns the next row id."""
        db = self._db
        (max_id,) = db.execute("SELECT coalesce(max(id), 0) FROM readings").fetchone()
        row = db.execute("SELECT value FROM meta WHERE key = 'counted_through_id'").fetchone()
        if row is None:
            # A new outbox, or one of schema 1 or 2, which counted every row as it committed it.
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO meta(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [("counted_through_id", str(max_id)), ("schema_version", str(SCHEMA_VERSION))],
            )
            db.execute("COMMIT")
            counted = max_id
        else:
            counted = int(row[0])
        (uncounted,) = db.execute("SELECT count(*) FROM readings WHERE id > ?", (counted,)).fetchone()
        self._deferred.readings_in = uncounted
        if uncounted:
            self._deferred.touch()
        # Ids only rise: a row id once deleted is never given again (the forwarder's order and
        # the bookkeeping above rely on it).
        return int(max(max_id, counted)) + 1

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # no effect on an existing database
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsync'd to the WAL. NORMAL may lose the last
        # commits on power loss, and we acknowledge right after a commit.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=30000")
        # Bigger checkpoints are fewer rewrites of the same pages (SD card wear).
        db.execute("PRAGMA wal_autocheckpoint=4000")  # a second process's; the agent's: checkpoint.py
        # Debian's SQLite zeroes every deleted row and freed page (SECURE_DELETE), which writes
        # each delivered reading a second time. FAST zeroes only within pages written anyway.
        db.execute("PRAGMA secure_delete=FAST")
        return db

    def _check_integrity(self) -> None:
        try:
            rows = self._db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as e:
            raise OutboxCorruptError(str(e)) from e
        if rows != [("ok",)]:
            raise OutboxCorruptError("; ".join(str(r[0]) for r in rows[:5]))

    @classmethod
    def open_or_recover(
        cls, path: Path, limits: OutboxLimits | None = None, *, settle_s: float = 10.0
    ) -> tuple[Outbox, Path | None]:
        """Open the outbox; a corrupt or unreadable one is moved aside and a fresh one started.

        Returns the outbox and, if recovery happened, where the bad file went.
        The agent never refuses to run because of its outbox.
        """
        try:
            return cls(path, limits, check=True, settle_s=settle_s, background_checkpoints=True), None
        except (sqlite3.DatabaseError, OutboxCorruptError) as e:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            aside = path.with_name(f"{path.name}.corrupt-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(path) + suffix)
                if src.exists():
                    shutil.move(src, Path(str(aside) + suffix))
            log.critical(
                "outbox corrupt: moved aside, starting a fresh one",
                path=str(path),
                moved_to=str(aside),
                error=str(e),
            )
            fresh = cls(path, limits, check=True, settle_s=settle_s, background_checkpoints=True)
            fresh._bump({"outbox_recovered": 1})
            return fresh, aside

    def close(self) -> None:
        with self._lock:  # never under a transaction another thread has open
            try:
                self.settle()
            except OutboxWriteError as e:
                log.warning("could not record the last deliveries at close; they go again", error=str(e))
            if self._checkpointer is not None:
                self._checkpointer.stop()
            self._db.close()

    # -- writes -------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; on any failure (COMMIT included) rolled back, in memory too."""
        depth, size, held = self._depth, self._bytes, self._held_bytes
        deferred, next_id = self._deferred.copy(), self._next_id
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as e:
            self._depth, self._bytes, self._held_bytes = depth, size, held
            self._deferred, self._next_id = deferred, next_id
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError):
                raise OutboxWriteError(f"outbox write failed: {e}") from e
            raise

    def _reclaim_wal(self) -> None:
        """Give the write-ahead log's disk space back (checkpoint, truncate): near the disk floor
        the WAL is the space that can be reclaimed without dropping anything."""
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _bump(self, counts: dict[str, int]) -> None:
        self._db.executemany(
            "INSERT INTO counters(name, value) VALUES(?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [(k, v) for k, v in counts.items() if v],
        )

    def commit(
        self,
        readings: Sequence[NewReading],
        deadletters: Sequence[DeadLetter] = (),
        *,
        now_ns: int | None = None,
        free_disk: int | None = None,
        counters: Mapping[str, int] | None = None,
    ) -> CommitResult:
        """Store a group of readings and dead letters in one durable transaction (with ``counters``)."""
        now_ns = now_ns if now_ns is not None else time.time_ns()
        counts: dict[str, int] = dict(counters or {})
        need = sum(_row_size(r) for r in readings)
        if free_disk is None and disk_free(self.path.parent) - self.limits.min_free_disk_bytes < need:
            with self._lock:
                self._reclaim_wal()
        with self._lock, self._tx() as db:
            if self._deferred.delivered_n and (
                self._expiry_due(db, now_ns) or need > self._room(db, free_disk)
            ):
                # Delivered rows go before any policy looks for rows to drop.
                self._settle(db, counts)
            counts.update(self._expire(db, now_ns))
            room = self._room(db, free_disk)
            accepted: Sequence[NewReading] = readings
            if need > room:
                if self.limits.policy is OverflowPolicy.DROP_OLDEST:
                    counts["dropped.overflow_oldest"] = self._drop_oldest(db, need - room)
                    if need > self._room(db, free_disk):
                        # Even an empty outbox cannot hold the group: keep what fits.
                        accepted = _fit(readings, self._room(db, free_disk))
                else:
                    accepted = _fit(readings, room)
            refused = len(readings) - len(accepted)
            if refused:
                counts["dropped.outbox_full"] = refused
            first = self._next_id
            db.executemany(
                "INSERT INTO readings(id, device_id, seq, received_ns, body) VALUES(?, ?, ?, ?, ?)",
                [(first + i, r.device_id, r.seq, r.received_ns, r.body) for i, r in enumerate(accepted)],
            )
            self._next_id = first + len(accepted)
            if deadletters:
                self._add_deadletters(db, deadletters, counts)
            self._deferred.readings_in += len(accepted)
            self._deferred.touch()
            if any(counts.values()) or self._settle_due():
                self._settle(db, counts)
            if self._checkpointer is not None:
                # The pages the rows fill, and the few the tree and the free list change.
                self._checkpointer.noted(-(-need // _PAGE_SIZE) + 3)
            self._depth += len(accepted)
            self._bytes += sum(_row_size(r) for r in accepted)
        committed: dict[str, list[int]] = {}
        for r in accepted:
            if r.seq is not None:
                committed.setdefault(r.device_id, []).append(r.seq)
        return CommitResult(stored=len(accepted), refused=refused, committed=committed)

    def _add_deadletters(
        self, db: sqlite3.Connection, deadletters: Sequence[DeadLetter], counts: dict[str, int]
    ) -> None:
        cap = self.limits.max_deadletter_payload
        db.executemany(
            "INSERT INTO deadletters(received_ns, device_id, reason, detail, payload, payload_size) "
            "VALUES(?, ?, ?, ?, ?, ?)",
            [
                (d.received_ns, d.device_id, d.reason, d.detail[:1000], d.payload[:cap], len(d.payload))
                for d in deadletters
            ],
        )
        for d in deadletters:
            key = f"rejected.{d.reason}"
            counts[key] = counts.get(key, 0) + 1
        # The dead-letter store is bounded too: keep the newest.
        (n,) = db.execute("SELECT count(*) FROM deadletters").fetchone()
        if n > self.limits.max_deadletters:
            db.execute(
                "DELETE FROM deadletters WHERE id IN (SELECT id FROM deadletters ORDER BY id LIMIT ?)",
                (n - self.limits.max_deadletters,),
            )

    def add_deadletters(self, deadletters: Sequence[DeadLetter]) -> None:
        counts: dict[str, int] = {}
        with self._lock, self._tx() as db:
            self._add_deadletters(db, deadletters, counts)
            self._bump(counts)

    def _room(self, db: sqlite3.Connection, free_disk: int | None) -> int:
        room = self.limits.max_bytes - self._bytes - self._held_bytes
        if free_disk is None:
            free_disk = disk_free(self.path.parent)
        room = min(room, free_disk - self.limits.min_free_disk_bytes)
        return max(room, 0)

    def _drop_oldest(self, db: sqlite3.Connection, nbytes: int) -> int:
        """Free ``nbytes``, oldest readings first, held or not (held ones older than the oldest
        unsent reading go first, then unsent ones, then the remaining held ones)."""
        first = db.execute("SELECT received_ns FROM readings ORDER BY id LIMIT 1").fetchone()
        dropped, freed = self._drop_held(db, nbytes, before_ns=first[0] if first else None)
        after = 0
        leased = self._leased
        while freed < nbytes:
            rows = db.execute(
                f"SELECT id, {_ROW_SIZE_SQL} FROM readings WHERE id > ? ORDER BY id LIMIT 1000",  # noqa: S608
                (after,),
            ).fetchall()
            if not rows:
                break
            victims = []
            for rid, size in rows:
                after = rid
                if rid in leased:
                    continue
                victims.append(rid)
                freed += size
                if freed >= nbytes:
                    break
            if victims:
                n, _ = self._delete_ids(db, victims)
                dropped += n
        if freed < nbytes:
            n, size = self._drop_held(db, nbytes - freed, before_ns=None)
            dropped += n
        return dropped

    def _drop_held(self, db: sqlite3.Connection, nbytes: int, before_ns: int | None) -> tuple[int, int]:
        """Delete the oldest held rows (received before ``before_ns``) until ``nbytes`` are freed."""
        rows = freed = 0
        cursor = (-1, -1)
        leased = self._leased_held
        while freed < nbytes:
            page = db.execute(
                f"SELECT id, received_ns, {_ROW_SIZE_SQL} FROM held WHERE (received_ns, id) > (?, ?) "  # noqa: S608
                "ORDER BY received_ns, id LIMIT 1000",
                cursor,
            ).fetchall()
            if not page:
                break
            victims = []
            done = False
            for rid, received, size in page:
                cursor = (received, rid)
                if (before_ns is not None and received >= before_ns) or freed >= nbytes:
                    done = True
                    break
                if rid not in leased:
                    victims.append((rid,))
                    freed += size
            db.executemany("DELETE FROM held WHERE id = ?", victims)
            rows += len(victims)
            if done:
                break
        self._held_bytes -= freed
        return rows, freed

    def _expiry_due(self, db: sqlite3.Connection, now_ns: int) -> bool:
        cutoff = now_ns - int(self.limits.max_age_s * 1e9)
        oldest = db.execute("SELECT received_ns FROM readings ORDER BY id LIMIT 1").fetchone()
        return oldest is not None and oldest[0] < cutoff

    def _expire(self, db: sqlite3.Connection, now_ns: int) -> dict[str, int]:
        # Rows arrive in received order: look at the oldest one, and only if it is
        # too old look further (this runs at every commit, so it must be cheap).
        cutoff = now_ns - int(self.limits.max_age_s * 1e9)
        expired = self._expire_held(db, cutoff)
        oldest = db.execute("SELECT received_ns FROM readings ORDER BY id LIMIT 1").fetchone()
        if oldest is None or oldest[0] >= cutoff:
            return {"dropped.max_age": expired} if expired else {}
        after = 0
        leased = self._leased
        while True:
            rows = db.execute(
                "SELECT id, received_ns FROM readings WHERE id > ? ORDER BY id LIMIT 1000", (after,)
            ).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            old = [rid for rid, received in rows if received < cutoff and rid not in leased]
            if old:
                n, _ = self._delete_ids(db, old)
                expired += n
            if any(received >= cutoff for _, received in rows):
                break
        return {"dropped.max_age": expired} if expired else {}

    def _expire_held(self, db: sqlite3.Connection, cutoff: int) -> int:
        (oldest,) = db.execute("SELECT min(received_ns) FROM held").fetchone()
        if oldest is None or oldest >= cutoff:
            return 0
        rows = db.execute(
            f"SELECT id, {_ROW_SIZE_SQL} FROM held WHERE received_ns < ?",  # noqa: S608
            (cutoff,),
        ).fetchall()
        old = [(rid,) for rid, _ in rows if rid not in self._leased_held]
        db.executemany("DELETE FROM held WHERE id = ?", old)
        self._held_bytes -= sum(size for rid, size in rows if rid not in self._leased_held)
        return len(old)

    def _delete_ids(self, db: sqlite3.Connection, ids: list[int]) -> tuple[int, int]:
        rows = bytes_ = 0
        for lo, hi in _runs(sorted(ids)):
            n, size = db.execute(
                f"SELECT count(*), coalesce(sum({_ROW_SIZE_SQL}), 0) FROM readings WHERE id BETWEEN ? AND ?",  # noqa: S608
                (lo, hi),
            ).fetchone()
            db.execute("DELETE FROM readings WHERE id BETWEEN ? AND ?", (lo, hi))
            rows += n
            bytes_ += size
        self._depth -= rows
        self._bytes -= bytes_
        return rows, bytes_

    # -- forwarding ---------------------------------------------------------------

    def oldest(self, limit: int, *, after_id: int = 0) -> list[StoredReading]:
        """The first ``limit`` rows after ``after_id`` not delivered yet."""
        with self._lock:
            clause, args = self._delivered_clause()
            rows = self._db.execute(
                "SELECT id, device_id, seq, received_ns, body FROM readings "  # noqa: S608
                f"WHERE id > ?{clause} ORDER BY id LIMIT ?",
                (after_id, *args, limit),
            ).fetchall()
        return [StoredReading(*r) for r in rows]

    def first_id_received_after(self, cutoff_ns: int) -> int | None:
        """The first row received after ``cutoff_ns`` (the start of the live lane), or None.

        Rows are in arrival order, so received_ns rises with id (up to clock
        steps): a bisection over ids finds it in O(log n) primary-key lookups,
        with no index on received_ns to write for every reading.
        """
        with self._lock:
            db = self._db
            bounds = db.execute("SELECT min(id), max(id) FROM readings").fetchone()
            if bounds[0] is None:
                return None
            lo, hi = bounds
            (last_received,) = db.execute("SELECT received_ns FROM readings WHERE id = ?", (hi,)).fetchone()
            if last_received <= cutoff_ns:
                return None

            def first_at_or_after(x: int) -> tuple[int, int]:
                row = db.execute(
                    "SELECT id, received_ns FROM readings WHERE id >= ? ORDER BY id LIMIT 1", (x,)
                ).fetchone()
                return int(row[0]), int(row[1])

            # Smallest x with first_at_or_after(x) received after the cutoff; true at x = hi.
            while lo < hi:
                mid = (lo + hi) // 2
                if first_at_or_after(mid)[1] > cutoff_ns:
                    hi = mid
                else:
                    lo = mid + 1
            return first_at_or_after(lo)[0]

    def lease(self, ids: Iterable[int]) -> None:
        """These rows are the batch on its way to the cloud: no policy drops them until
        :meth:`confirm` (or the next lease)."""
        with self._lock:
            self._leased = frozenset(ids)

    def confirm(
        self,
        ids: Iterable[int],
        deadletters: Sequence[DeadLetter] = (),
        holds: Sequence[Hold] = (),
        *,
        retry_ns: int = 0,
    ) -> int:
        """The cloud answered a batch: delete its rows, dead-letter those it refused for good,
        and move those it refused for a reason the gateway did not foresee to ``held``, to be
        tried again from ``retry_ns``. One transaction: nothing is deleted that is not stored,
        dead-lettered or held."""
        counts: dict[str, int] = {}
        ids = sorted(set(ids))
        with self._lock:
            self._leased = frozenset()
            if not deadletters and not holds:
                # Delivered: recorded with the next bookkeeping, nothing written now.
                d = self._deferred
                runs = list(_runs(ids))
                for lo, hi in runs:
                    if d.delivered and d.delivered[-1][1] + 1 == lo:  # batches follow each other
                        d.delivered[-1] = (d.delivered[-1][0], hi)
                    else:
                        d.delivered.append((lo, hi))
                d.delivered_n += len(ids)
                d.delivered_bytes += self._size_of_runs(runs)
                d.batches += 1
                d.last_forward_ns = time.time_ns()
                d.touch()
                if self._settle_due():
                    self.settle()
                return len(ids)
        with self._lock, self._tx() as db:
            if holds:
                now = time.time_ns()
                id_list = ",".join(str(int(h.id)) for h in holds)
                rows = {
                    rid: (dev, seq, received, body)
                    for rid, dev, seq, received, body in db.execute(
                        f"SELECT id, device_id, seq, received_ns, body FROM readings WHERE id IN ({id_list})"  # noqa: S608
                    )
                }
                db.executemany(
                    "INSERT INTO held(device_id, seq, received_ns, body, reason, detail, held_ns, retry_ns, "
                    "attempts) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    [(*rows[h.id], h.reason, h.detail[:1000], now, retry_ns) for h in holds if h.id in rows],
                )
                self._held_bytes += sum(
                    len(rows[h.id][3]) + len(rows[h.id][0]) + _ROW_OVERHEAD for h in holds if h.id in rows
                )
                for h in holds:
                    counts[f"held_in.{h.reason}"] = counts.get(f"held_in.{h.reason}", 0) + 1
            deleted, _ = self._delete_ids(db, ids)
            if deadletters:
                self._add_deadletters(db, deadletters, counts)
            counts["readings_out"] = deleted - len(deadletters) - len(holds)
            counts["forwarded_batches"] = 1
            self._deferred.last_forward_ns = time.time_ns()
            self._deferred.touch()
            self._settle(db, counts)
        return deleted

    # -- bookkeeping ----------------------------------------------------------------

    def _settle_due(self) -> bool:
        d = self._deferred
        return d.since is not None and (
            time.monotonic() - d.since >= self.settle_s
            or d.delivered_n >= self.settle_max_rows
            or len(d.delivered) > _MAX_DELIVERED_RUNS
        )

    def settle(self) -> None:
        """Record the deferred bookkeeping now (delete delivered rows, write the counters)."""
        with self._lock:
            if self._deferred.empty() or not self.bookkeeper:
                return
            with self._tx() as db:
                self._settle(db, {})

    def settle_if_due(self) -> None:
        with self._lock:
            if self._settle_due():
                self.settle()

    def _settle(self, db: sqlite3.Connection, counts: dict[str, int]) -> None:
        """In the caller's transaction: the deferred deliveries and counts, with ``counts``."""
        d = self._deferred
        if d.delivered:
            ids = [i for lo, hi in d.delivered for i in range(lo, hi + 1)]
            deleted, _ = self._delete_ids(db, ids)
            counts["readings_out"] = counts.get("readings_out", 0) + deleted
        counts["forwarded_batches"] = counts.get("forwarded_batches", 0) + d.batches
        counts["readings_in"] = counts.get("readings_in", 0) + d.readings_in
        self._bump(counts)
        counts.clear()  # recorded: a second settle in the same transaction must not count them again
        db.execute(
            "INSERT INTO meta(key, value) VALUES('counted_through_id', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(self._next_id - 1),),
        )
        if d.last_forward_ns is not None:
            self._set_last_forward(db, d.last_forward_ns)
        self._deferred = _Deferred()

    def _size_of_runs(self, runs: list[tuple[int, int]]) -> int:
        total = 0
        for lo, hi in runs:
            (size,) = self._db.execute(
                f"SELECT coalesce(sum({_ROW_SIZE_SQL}), 0) FROM readings WHERE id BETWEEN ? AND ?",  # noqa: S608
                (lo, hi),
            ).fetchone()
            total += size
        return total

    def _delivered_clause(self) -> tuple[str, list[int]]:
        """SQL that leaves out delivered rows not yet deleted, and its arguments."""
        runs = self._deferred.delivered
        if not runs:
            return "", []
        return (
            " AND NOT (" + " OR ".join(["id BETWEEN ? AND ?"] * len(runs)) + ")",
            [x for run in runs for x in run],
        )

    @staticmethod
    def _set_last_forward(db: sqlite3.Connection, at_ns: int | None = None) -> None:
        db.execute(
            "INSERT INTO meta(key, value) VALUES('last_forward_ns', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(at_ns if at_ns is not None else time.time_ns()),),
        )

    # -- held readings --------------------------------------------------------------

    def lease_held(self, ids: Iterable[int]) -> None:
        """As :meth:`lease`, for a batch of held rows (until :meth:`settle_held`)."""
        with self._lock:
            self._leased_held = frozenset(ids)

    def held_due(self, limit: int, now_ns: int) -> list[StoredReading]:
        """Held readings whose next attempt is due, oldest first (ids are the held table's)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device_id, seq, received_ns, body FROM held WHERE retry_ns <= ? "
                "ORDER BY retry_ns, id LIMIT ?",
                (now_ns, limit),
            ).fetchall()
        return [StoredReading(*r) for r in rows]

    def settle_held(
        self,
        ids: Iterable[int],
        deadletters: Sequence[tuple[int, DeadLetter]] = (),
        holds: Sequence[Hold] = (),
        *,
        retry_ns: int,
    ) -> None:
        """The cloud answered a batch of held readings: delete those it stored, dead-letter
        those it refused for good, and keep the rest (reason updated) until ``retry_ns``."""
        counts: dict[str, int] = {}
        kept = {h.id for h in holds}
        gone = [i for i in ids if i not in kept]
        with self._lock, self._tx() as db:
            self._leased_held = frozenset()
            if holds:
                db.executemany(
                    "UPDATE held SET reason = ?, detail = ?, retry_ns = ?, attempts = attempts + 1 "
                    "WHERE id = ?",
                    [(h.reason, h.detail[:1000], retry_ns, h.id) for h in holds],
                )
            stored = self._delete_held(db, gone)
            if deadletters:
                self._add_deadletters(db, [d for _, d in deadletters], counts)
            counts["readings_out"] = stored - len(deadletters)
            counts["held_stored"] = stored - len(deadletters)
            self._bump(counts)
            self._set_last_forward(db)

    def _delete_held(self, db: sqlite3.Connection, ids: Sequence[int]) -> int:
        n = 0
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            count, size = db.execute(
                f"SELECT count(*), coalesce(sum({_ROW_SIZE_SQL}), 0) FROM held WHERE id IN ({marks})",  # noqa: S608
                chunk,
            ).fetchone()
            db.execute(f"DELETE FROM held WHERE id IN ({marks})", chunk)  # noqa: S608
            n += count
            self._held_bytes -= size
        return n

    def retry_held_now(self, *, reason: str | None = None, device_id: str | None = None) -> int:
        """Make held readings due now (all, or of one reason and/or device); how many."""
        where, args = _held_filter(reason, device_id)
        with self._lock, self._tx() as db:
            return db.execute(f"UPDATE held SET retry_ns = 0{where}", args).rowcount  # noqa: S608

    def discard_held(
        self,
        *,
        reason: str | None = None,
        device_id: str | None = None,
        note: str = "discarded by an operator",
    ) -> int:
        """Give held readings up (an operator's decision): they move to the dead letters with
        their reason, counted as ``dropped.operator_discarded``. How many."""
        where, args = _held_filter(reason, device_id)
        counts: dict[str, int] = {}
        with self._lock, self._tx() as db:
            rows = db.execute(
                f"SELECT id, device_id, received_ns, reason, detail, body FROM held{where}",  # noqa: S608
                args,
            ).fetchall()
            letters = [
                DeadLetter(received, dev, reason_, f"{note}; held for: {detail}", body)
                for _, dev, received, reason_, detail, body in rows
            ]
            self._delete_held(db, [r[0] for r in rows])
            self._add_deadletters(db, letters, counts)
            # Counted as dropped, not as rejected: the cloud never said these were final.
            counts = {k: v for k, v in counts.items() if not k.startswith("rejected.")}
            counts["dropped.operator_discarded"] = len(rows)
            self._bump(counts)
        return len(rows)

    def count_held(self, *, reason: str | None = None, device_id: str | None = None) -> int:
        where, args = _held_filter(reason, device_id)
        with self._lock:
            (n,) = self._db.execute(f"SELECT count(*) FROM held{where}", args).fetchone()  # noqa: S608
        return int(n)

    def held_groups(self) -> list[HeldGroup]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT reason, count(*), coalesce(sum({_ROW_SIZE_SQL}), 0), min(received_ns), "  # noqa: S608
                "count(DISTINCT device_id) FROM held GROUP BY reason ORDER BY count(*) DESC"
            ).fetchall()
        return [HeldGroup(*r) for r in rows]

    def held_readings(
        self, limit: int, *, reason: str | None = None, device_id: str | None = None
    ) -> list[tuple[StoredReading, str, str, int, int]]:
        """(reading, reason, detail, retry_ns, attempts) of held rows, oldest first."""
        where, args = _held_filter(reason, device_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device_id, seq, received_ns, body, reason, detail, retry_ns, attempts "  # noqa: S608
                f"FROM held{where} ORDER BY received_ns, id LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [(StoredReading(*r[:5]), r[5], r[6], r[7], r[8]) for r in rows]

    # -- reads --------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        with self._lock:
            db = self._db
            clause, args = self._delivered_clause()
            row = db.execute(
                f"SELECT received_ns FROM readings WHERE id > 0{clause} ORDER BY id LIMIT 1",  # noqa: S608
                args,
            ).fetchone()
            (dl,) = db.execute("SELECT count(*) FROM deadletters").fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            d = self._deferred
            for name, n in (
                ("readings_in", d.readings_in),
                ("readings_out", d.delivered_n),
                ("forwarded_batches", d.batches),
            ):
                if n:
                    counters[name] = counters.get(name, 0) + n
            held = db.execute(
                "SELECT reason, count(*), min(received_ns) FROM held GROUP BY reason"
            ).fetchall()
            return OutboxStats(
                depth=self._depth - d.delivered_n,
                bytes=self._bytes - d.delivered_bytes,
                oldest_received_ns=row[0] if row else None,
                deadletters=dl,
                counters=counters,
                held={reason: n for reason, n, _ in held},
                oldest_held_received_ns=min((oldest for _, _, oldest in held), default=None),
            )

    def last_forward_ns(self) -> int | None:
        with self._lock:
            if self._deferred.last_forward_ns is not None:
                return self._deferred.last_forward_ns
            row = self._db.execute("SELECT value FROM meta WHERE key = 'last_forward_ns'").fetchone()
        return int(row[0]) if row else None

    def deadletters(self, limit: int = 50, reason: str | None = None) -> list[DeadLetter]:
        q = "SELECT received_ns, device_id, reason, detail, payload FROM deadletters"
        args: tuple[object, ...] = ()
        if reason:
            q += " WHERE reason = ?"
            args = (reason,)
        q += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(q, (*args, limit)).fetchall()
        return [DeadLetter(*r) for r in rows]


def _fit(readings: Sequence[NewReading], room: int) -> list[NewReading]:
    out: list[NewReading] = []
    for r in readings:
        size = _row_size(r)
        if size > room:
            break
        room -= size
        out.append(r)
    return out


def _held_filter(reason: str | None, device_id: str | None) -> tuple[str, tuple[str, ...]]:
    clauses, args = [], []
    if reason is not None:
        clauses.append("reason = ?")
        args.append(reason)
    if device_id is not None:
        clauses.append("device_id = ?")
        args.append(device_id)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


def _chunks(items: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _runs(ids: list[int]) -> Iterator[tuple[int, int]]:
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


def disk_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
