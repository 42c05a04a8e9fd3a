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

:class:`Outbox` is the one class callers use. Its parts live beside it: the file and what a
row weighs (outbox_schema), the held table (held), the bookkeeping not written yet
(outbox_deferred), the bounds (outbox_limits, overflow), the counters' names (counters) and
the values it takes and returns (outbox_types, re-exported here).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import structlog

from citygate.errors import OutboxWriteError
from citygate.fsutil import disk_free
from citygate.gateway import counters as c
from citygate.gateway.checkpoint import BACKSTOP_FRAMES, WalCheckpointer
from citygate.gateway.held import HeldTable
from citygate.gateway.outbox_deferred import Deferred, runs
from citygate.gateway.outbox_limits import OutboxLimits
from citygate.gateway.outbox_schema import (
    PAGE_SIZE,
    ROW_SIZE_SQL,
    SCHEMA,
    SCHEMA_VERSION,
    OutboxCorruptError,
    check_integrity,
    connect,
    row_size,
    wal_size,
)
from citygate.gateway.outbox_types import (
    CommitResult,
    DeadLetter,
    HeldGroup,
    Hold,
    NewReading,
    OutboxStats,
    StoredReading,
)
from citygate.gateway.overflow import OverflowPolicy
from citygate.gateway.settings import setting_default

# The outbox's callers import these from here; they live in modules of their own.
__all__ = [
    "SCHEMA_VERSION",
    "CommitResult",
    "DeadLetter",
    "HeldGroup",
    "Hold",
    "NewReading",
    "Outbox",
    "OutboxCorruptError",
    "OutboxLimits",
    "OutboxStats",
    "OverflowPolicy",
    "StoredReading",
]

log = structlog.get_logger("citygate.gateway.outbox")

_DEFAULT_SETTLE_S: float = setting_default("outbox_settle_s")


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
        settle_s: float = _DEFAULT_SETTLE_S,
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
        self._db = connect(path)
        if check:
            check_integrity(self._db)
        self._db.executescript(SCHEMA)
        self._deferred = Deferred()
        self._next_id = self._open_bookkeeping() if bookkeeper else 0
        depth, size = self._db.execute(
            f"SELECT count(*), coalesce(sum({ROW_SIZE_SQL}), 0) FROM readings"  # noqa: S608
        ).fetchone()
        self._depth: int = depth
        self._bytes: int = size
        self._held = HeldTable()
        self._held.refresh_bytes(self._db)
        # Rows of the batch on its way to the cloud: the overflow and age policies never drop
        # them (a reading counted as dropped must really be gone, not delivered a moment later).
        self._leased: frozenset[int] = frozenset()  # (for held rows: HeldTable.leased)
        self._checkpointer: WalCheckpointer | None = None
        if background_checkpoints:
            self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_FRAMES}")
            self._checkpointer = WalCheckpointer(path)
            self._checkpointer.start()

    def refresh_held_bytes(self) -> None:
        """Re-read the held rows' size (an operator's ``citygate gateway held discard`` changes
        it from another process; until then the bound errs on the side of less room)."""
        with self._lock:
            self._held.refresh_bytes(self._db)

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
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
                (str(SCHEMA_VERSION), SCHEMA_VERSION),
            )
        (uncounted,) = db.execute("SELECT count(*) FROM readings WHERE id > ?", (counted,)).fetchone()
        self._deferred.readings_in = uncounted
        if uncounted:
            self._deferred.touch()
        # Ids only rise: a row id once deleted is never given again (the forwarder's order and
        # the bookkeeping above rely on it).
        return int(max(max_id, counted)) + 1

    @classmethod
    def open_or_recover(
        cls, path: Path, limits: OutboxLimits | None = None, *, settle_s: float = _DEFAULT_SETTLE_S
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
            fresh._bump({c.OUTBOX_RECOVERED: 1})
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
        depth, size, held = self._depth, self._bytes, self._held.bytes
        deferred, next_id = self._deferred.copy(), self._next_id
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as e:
            self._depth, self._bytes, self._held.bytes = depth, size, held
            self._deferred, self._next_id = deferred, next_id
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError):
                raise OutboxWriteError(f"outbox write failed: {e}") from e
            raise

    def _usable_disk(self) -> int:
        """Free disk less the WAL's size: the room its checkpoint needs (outbox_schema.wal_size)."""
        return disk_free(self.path.parent) - wal_size(self.path)

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
        need = sum(row_size(r.device_id, r.body) for r in readings)
        if free_disk is None and self._usable_disk() - self.limits.min_free_disk_bytes < need:
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
                    counts[c.dropped(c.OVERFLOW_OLDEST)] = self._drop_oldest(db, need - room)
                    if need > self._room(db, free_disk):
                        # Even an empty outbox cannot hold the group: keep what fits.
                        accepted = _fit(readings, self._room(db, free_disk))
                else:
                    accepted = _fit(readings, room)
            refused = len(readings) - len(accepted)
            if refused:
                counts[c.dropped(c.OUTBOX_FULL)] = refused
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
                self._checkpointer.noted(-(-need // PAGE_SIZE) + 3)
            self._depth += len(accepted)
            self._bytes += sum(row_size(r.device_id, r.body) for r in accepted)
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
            key = c.rejected(d.reason)
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
        room = self.limits.max_bytes - self._bytes - self._held.bytes
        if free_disk is None:
            free_disk = self._usable_disk()
        room = min(room, free_disk - self.limits.min_free_disk_bytes)
        return max(room, 0)

    def _drop_oldest(self, db: sqlite3.Connection, nbytes: int) -> int:
        """Free ``nbytes``, oldest readings first, held or not (held ones older than the oldest
        unsent reading go first, then unsent ones, then the remaining held ones)."""
        first = db.execute("SELECT received_ns FROM readings ORDER BY id LIMIT 1").fetchone()
        dropped, freed = self._held.drop_oldest(db, nbytes, before_ns=first[0] if first else None)
        after = 0
        leased = self._leased
        while freed < nbytes:
            rows = db.execute(
                f"SELECT id, {ROW_SIZE_SQL} FROM readings WHERE id > ? ORDER BY id LIMIT 1000",  # noqa: S608
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
            n, size = self._held.drop_oldest(db, nbytes - freed, before_ns=None)
            dropped += n
        return dropped

    def _expiry_due(self, db: sqlite3.Connection, now_ns: int) -> bool:
        cutoff = now_ns - int(self.limits.max_age_s * 1e9)
        oldest = db.execute("SELECT received_ns FROM readings ORDER BY id LIMIT 1").fetchone()
        return oldest is not None and oldest[0] < cutoff

    def _expire(self, db: sqlite3.Connection, now_ns: int) -> dict[str, int]:
        # Rows arrive in received order: look at the oldest one, and only if it is
        # too old look further (this runs at every commit, so it must be cheap).
        cutoff = now_ns - int(self.limits.max_age_s * 1e9)
        expired = self._held.expire(db, cutoff)
        oldest = db.execute("SELECT received_ns FROM readings ORDER BY id LIMIT 1").fetchone()
        if oldest is None or oldest[0] >= cutoff:
            return {c.dropped(c.MAX_AGE): expired} if expired else {}
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
        return {c.dropped(c.MAX_AGE): expired} if expired else {}

    def _delete_ids(self, db: sqlite3.Connection, ids: list[int]) -> tuple[int, int]:
        rows = bytes_ = 0
        for lo, hi in runs(sorted(ids)):
            n, size = db.execute(
                f"SELECT count(*), coalesce(sum({ROW_SIZE_SQL}), 0) FROM readings WHERE id BETWEEN ? AND ?",  # noqa: S608
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
            clause, args = self._deferred.undelivered_clause()
            rows = self._db.execute(
                "SELECT id, device_id, seq, received_ns, body FROM readings "  # noqa: S608
                f"WHERE id > ?{clause} ORDER BY id LIMIT ?",
                (after_id, *args, limit),
            ).fetchall()
        return [StoredReading(*r) for r in rows]

    def first_id_received_after(self, cutoff_ns: int) -> int | None:
        """The first row received after ``cutoff_ns`` (the start of the live lane), or None.

        Rows are in arrival order, so received_ns rises with id (up to clock steps): a bisection
        over ids finds it in O(log n) primary-key lookups, with no index on received_ns to write.
        """
        with self._lock:
            db = self._db
            # Not "SELECT min(id), max(id)": SQLite reads a lone min or max off the key, both scan.
            lo, hi = db.execute(
                "SELECT (SELECT min(id) FROM readings), (SELECT max(id) FROM readings)"
            ).fetchone()
            if lo is None:
                return None
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
                batch = list(runs(ids))
                self._deferred.delivered_batch(batch, self._size_of_runs(batch))
                if self._settle_due():
                    self.settle()
                return len(ids)
        with self._lock, self._tx() as db:
            if holds:
                self._held.hold(db, holds, now_ns=time.time_ns(), retry_ns=retry_ns)
                for h in holds:
                    counts[c.held_in(h.reason)] = counts.get(c.held_in(h.reason), 0) + 1
            deleted, _ = self._delete_ids(db, ids)
            if deadletters:
                self._add_deadletters(db, deadletters, counts)
            counts[c.READINGS_OUT] = deleted - len(deadletters) - len(holds)
            counts[c.FORWARDED_BATCHES] = 1
            self._deferred.last_forward_ns = time.time_ns()
            self._deferred.touch()
            self._settle(db, counts)
        return deleted

    # -- bookkeeping ----------------------------------------------------------------

    def _settle_due(self) -> bool:
        return self._deferred.due(self.settle_s, self.settle_max_rows)

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
            counts[c.READINGS_OUT] = counts.get(c.READINGS_OUT, 0) + deleted
        counts[c.FORWARDED_BATCHES] = counts.get(c.FORWARDED_BATCHES, 0) + d.batches
        counts[c.READINGS_IN] = counts.get(c.READINGS_IN, 0) + d.readings_in
        self._bump(counts)
        counts.clear()  # recorded: a second settle in the same transaction must not count them again
        db.execute(
            "INSERT INTO meta(key, value) VALUES('counted_through_id', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(self._next_id - 1),),
        )
        if d.last_forward_ns is not None:
            self._set_last_forward(db, d.last_forward_ns)
        self._deferred = Deferred()

    def _size_of_runs(self, id_runs: list[tuple[int, int]]) -> int:
        total = 0
        for lo, hi in id_runs:
            (size,) = self._db.execute(
                f"SELECT coalesce(sum({ROW_SIZE_SQL}), 0) FROM readings WHERE id BETWEEN ? AND ?",  # noqa: S608
                (lo, hi),
            ).fetchone()
            total += size
        return total

    @staticmethod
    def _set_last_forward(db: sqlite3.Connection, at_ns: int | None = None) -> None:
        db.execute(
            "INSERT INTO meta(key, value) VALUES('last_forward_ns', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(at_ns if at_ns is not None else time.time_ns()),),
        )

    # -- held readings (the table: citygate.gateway.held) ---------------------------

    def lease_held(self, ids: Iterable[int]) -> None:
        """As :meth:`lease`, for a batch of held rows (until :meth:`settle_held`)."""
        with self._lock:
            self._held.lease(ids)

    def held_due(self, limit: int, now_ns: int) -> list[StoredReading]:
        """Held readings whose next attempt is due, oldest first (ids are the held table's)."""
        with self._lock:
            return self._held.due(self._db, limit, now_ns)

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
            self._held.lease(())
            if holds:
                self._held.keep(db, holds, retry_ns=retry_ns)
            stored = self._held.delete(db, gone)
            if deadletters:
                self._add_deadletters(db, [d for _, d in deadletters], counts)
            counts[c.READINGS_OUT] = stored - len(deadletters)
            counts[c.HELD_STORED] = stored - len(deadletters)
            self._bump(counts)
            self._set_last_forward(db)

    def retry_held_now(self, *, reason: str | None = None, device_id: str | None = None) -> int:
        """Make held readings due now (all, or of one reason and/or device); how many."""
        with self._lock, self._tx() as db:
            return self._held.retry_now(db, reason, device_id)

    def discard_held(
        self,
        *,
        reason: str | None = None,
        device_id: str | None = None,
        note: str = "discarded by an operator",
    ) -> int:
        """Give held readings up (an operator's decision): they move to the dead letters with
        their reason, counted as ``dropped.operator_discarded``. How many."""
        counts: dict[str, int] = {}
        with self._lock, self._tx() as db:
            letters = self._held.take(db, reason, device_id, note)
            self._add_deadletters(db, letters, counts)
            # Counted as dropped, not as rejected: the cloud never said these were final.
            counts = {k: v for k, v in counts.items() if not c.is_rejected(k)}
            counts[c.dropped(c.OPERATOR_DISCARDED)] = len(letters)
            self._bump(counts)
        return len(letters)

    def count_held(self, *, reason: str | None = None, device_id: str | None = None) -> int:
        with self._lock:
            return self._held.count(self._db, reason, device_id)

    def held_groups(self) -> list[HeldGroup]:
        with self._lock:
            return self._held.groups(self._db)

    def held_readings(
        self, limit: int, *, reason: str | None = None, device_id: str | None = None
    ) -> list[tuple[StoredReading, str, str, int, int]]:
        """(reading, reason, detail, retry_ns, attempts) of held rows, oldest first."""
        with self._lock:
            return self._held.readings(self._db, limit, reason, device_id)

    # -- reads --------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        with self._lock:
            db = self._db
            clause, args = self._deferred.undelivered_clause()
            row = db.execute(
                f"SELECT received_ns FROM readings WHERE id > 0{clause} ORDER BY id LIMIT 1",  # noqa: S608
                args,
            ).fetchone()
            (dl,) = db.execute("SELECT count(*) FROM deadletters").fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            d = self._deferred
            for name, n in (
                (c.READINGS_IN, d.readings_in),
                (c.READINGS_OUT, d.delivered_n),
                (c.FORWARDED_BATCHES, d.batches),
            ):
                if n:
                    counters[name] = counters.get(name, 0) + n
            held, oldest_held = self._held.by_reason(db)
            return OutboxStats(
                depth=self._depth - d.delivered_n,
                bytes=self._bytes - d.delivered_bytes,
                oldest_received_ns=row[0] if row else None,
                deadletters=dl,
                counters=counters,
                held=held,
                oldest_held_received_ns=oldest_held,
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
        size = row_size(r.device_id, r.body)
        if size > room:
            break
        room -= size
        out.append(r)
    return out
