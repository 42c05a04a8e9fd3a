"""The ``held`` table: readings the cloud refused for a reason the gateway did not foresee.

:class:`HeldTable` is the table's SQL and the two facts the outbox keeps about it in memory
(the bytes it holds, for the bounds; the rows of the batch in flight, which no bound drops).
Every method works in the caller's connection and, for writes, the caller's transaction:
the outbox decides when to write, and counts what each change costs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from citygate.gateway.outbox_schema import ROW_SIZE_SQL, row_size
from citygate.gateway.outbox_types import DeadLetter, HeldGroup, Hold, StoredReading

# (Queries built with f-strings interpolate only constants and "?" placeholders: noqa S608.)


class HeldTable:
    def __init__(self) -> None:
        self.bytes = 0  # the held rows' size, counted against the outbox's bounds
        # The held rows of the batch on its way to the cloud: no bound drops them.
        self.leased: frozenset[int] = frozenset()

    def refresh_bytes(self, db: sqlite3.Connection) -> None:
        (size,) = db.execute(f"SELECT coalesce(sum({ROW_SIZE_SQL}), 0) FROM held").fetchone()  # noqa: S608
        self.bytes = size

    def hold(self, db: sqlite3.Connection, holds: Sequence[Hold], *, now_ns: int, retry_ns: int) -> None:
        """Move these rows of ``readings`` to ``held`` (the caller deletes them from readings)."""
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
            [(*rows[h.id], h.reason, h.detail[:1000], now_ns, retry_ns) for h in holds if h.id in rows],
        )
        self.bytes += sum(row_size(rows[h.id][0], rows[h.id][3]) for h in holds if h.id in rows)

    def keep(self, db: sqlite3.Connection, holds: Sequence[Hold], *, retry_ns: int) -> None:
        """Refused again: the reason updated, the next attempt at ``retry_ns``."""
        db.executemany(
            "UPDATE held SET reason = ?, detail = ?, retry_ns = ?, attempts = attempts + 1 WHERE id = ?",
            [(h.reason, h.detail[:1000], retry_ns, h.id) for h in holds],
        )

    def due(self, db: sqlite3.Connection, limit: int, now_ns: int) -> list[StoredReading]:
        rows = db.execute(
            "SELECT id, device_id, seq, received_ns, body FROM held WHERE retry_ns <= ? "
            "ORDER BY retry_ns, id LIMIT ?",
            (now_ns, limit),
        ).fetchall()
        return [StoredReading(*r) for r in rows]

    def delete(self, db: sqlite3.Connection, ids: Sequence[int]) -> int:
        n = 0
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            count, size = db.execute(
                f"SELECT count(*), coalesce(sum({ROW_SIZE_SQL}), 0) FROM held WHERE id IN ({marks})",  # noqa: S608
                chunk,
            ).fetchone()
            db.execute(f"DELETE FROM held WHERE id IN ({marks})", chunk)  # noqa: S608
            n += count
            self.bytes -= size
        return n

    def drop_oldest(self, db: sqlite3.Connection, nbytes: int, before_ns: int | None) -> tuple[int, int]:
        """Delete the oldest held rows (received before ``before_ns``) until ``nbytes`` are freed."""
        rows = freed = 0
        cursor = (-1, -1)
        leased = self.leased
        while freed < nbytes:
            page = db.execute(
                f"SELECT id, received_ns, {ROW_SIZE_SQL} FROM held WHERE (received_ns, id) > (?, ?) "  # noqa: S608
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
        self.bytes -= freed
        return rows, freed

    def expire(self, db: sqlite3.Connection, cutoff: int) -> int:
        """Delete the held rows received before ``cutoff``; how many."""
        (oldest,) = db.execute("SELECT min(received_ns) FROM held").fetchone()
        if oldest is None or oldest >= cutoff:
            return 0
        rows = db.execute(
            f"SELECT id, {ROW_SIZE_SQL} FROM held WHERE received_ns < ?",  # noqa: S608
            (cutoff,),
        ).fetchall()
        old = [(rid,) for rid, _ in rows if rid not in self.leased]
        db.executemany("DELETE FROM held WHERE id = ?", old)
        self.bytes -= sum(size for rid, size in rows if rid not in self.leased)
        return len(old)

    @staticmethod
    def retry_now(db: sqlite3.Connection, reason: str | None, device_id: str | None) -> int:
        where, args = _filter(reason, device_id)
        return db.execute(f"UPDATE held SET retry_ns = 0{where}", args).rowcount  # noqa: S608

    def take(
        self, db: sqlite3.Connection, reason: str | None, device_id: str | None, note: str
    ) -> list[DeadLetter]:
        """Delete the matching held rows, and return them as dead letters with their reason."""
        where, args = _filter(reason, device_id)
        rows = db.execute(
            f"SELECT id, device_id, received_ns, reason, detail, body FROM held{where}",  # noqa: S608
            args,
        ).fetchall()
        self.delete(db, [r[0] for r in rows])
        return [
            DeadLetter(received, dev, reason_, f"{note}; held for: {detail}", body)
            for _, dev, received, reason_, detail, body in rows
        ]

    @staticmethod
    def count(db: sqlite3.Connection, reason: str | None, device_id: str | None) -> int:
        where, args = _filter(reason, device_id)
        (n,) = db.execute(f"SELECT count(*) FROM held{where}", args).fetchone()  # noqa: S608
        return int(n)

    @staticmethod
    def groups(db: sqlite3.Connection) -> list[HeldGroup]:
        rows = db.execute(
            f"SELECT reason, count(*), coalesce(sum({ROW_SIZE_SQL}), 0), min(received_ns), "  # noqa: S608
            "count(DISTINCT device_id) FROM held GROUP BY reason ORDER BY count(*) DESC"
        ).fetchall()
        return [HeldGroup(*r) for r in rows]

    @staticmethod
    def by_reason(db: sqlite3.Connection) -> tuple[dict[str, int], int | None]:
        """Readings held now by reason, and when the oldest of them was received."""
        held = db.execute("SELECT reason, count(*), min(received_ns) FROM held GROUP BY reason").fetchall()
        return {reason: n for reason, n, _ in held}, min((oldest for _, _, oldest in held), default=None)

    @staticmethod
    def readings(
        db: sqlite3.Connection, limit: int, reason: str | None, device_id: str | None
    ) -> list[tuple[StoredReading, str, str, int, int]]:
        where, args = _filter(reason, device_id)
        rows = db.execute(
            "SELECT id, device_id, seq, received_ns, body, reason, detail, retry_ns, attempts "  # noqa: S608
            f"FROM held{where} ORDER BY received_ns, id LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [(StoredReading(*r[:5]), r[5], r[6], r[7], r[8]) for r in rows]

    def lease(self, ids: Iterable[int]) -> None:
        self.leased = frozenset(ids)


def _filter(reason: str | None, device_id: str | None) -> tuple[str, tuple[str, ...]]:
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
