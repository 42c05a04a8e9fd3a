"""The outbox's SQLite file: its tables, how a connection is set up, and what a row weighs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# 2: the held table (created in place in a version-1 outbox). 3: 'counted_through_id' in meta,
# the bookkeeping that lets a commit of readings write nothing else (see citygate.gateway.outbox_deferred).
# 4: new rows store the compact body (citygate.contract.wire.stored_body); rows stored whole
# before are sent as they are.
SCHEMA_VERSION = 4
# Small pages: a commit rewrites the whole pages it touches (each in a WAL frame), and most
# commits at city rates hold one or two kilobytes of readings. Set when the file is created;
# an existing outbox keeps its page size.
PAGE_SIZE = 1024

SCHEMA = """
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
# overhead. The same formula in Python (new rows) and in SQL (sums and deletes over stored
# ones), both from this constant. (Queries built with f-strings in the outbox interpolate only
# constants like ROW_SIZE_SQL and "?" placeholders, never a value: hence their noqa S608.)
ROW_OVERHEAD = 40
ROW_SIZE_SQL = f"length(body) + length(device_id) + {ROW_OVERHEAD}"


def row_size(device_id: str, body: bytes) -> int:
    return len(body) + len(device_id) + ROW_OVERHEAD


class OutboxCorruptError(Exception):
    """Raised internally when the database fails its integrity check."""


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # no effect on an existing database
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


def wal_size(path: Path) -> int:
    """The write-ahead log's bytes: as much as its checkpoint may need to grow the database
    file by (it copies the WAL's pages in). Counted as free disk, a disk filled from outside
    took that room, the checkpoints failed and then every commit ("disk is full"), and the
    drop policy never engaged (the long disk-full chaos run)."""
    try:
        return path.with_name(path.name + "-wal").stat().st_size
    except FileNotFoundError:
        return 0


def check_integrity(db: sqlite3.Connection) -> None:
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        raise OutboxCorruptError(str(e)) from e
    if rows != [("ok",)]:
        raise OutboxCorruptError("; ".join(str(r[0]) for r in rows[:5]))
