"""The outbox's WAL checkpoints, off the commit path.

SQLite copies the write-ahead log back into the database file (a checkpoint) inside the
commit that crosses ``wal_autocheckpoint``: that commit, and the PUBACKs waiting on it,
stall while megabytes are written and synced, longest on an SD card. Here a thread does it
from its own connection, in PASSIVE mode, which never blocks the committing thread.

Checkpoints are also what a long WAL saves: a page rewritten many times between two of
them (the outbox's few busy pages at city rates) is copied to the database once.
SQLite's own autocheckpoint stays on, at a higher mark, should this thread fall behind.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

log = structlog.get_logger("citygate.gateway.checkpoint")

# Frames (pages) in the WAL that make a checkpoint due, and the longest wait between two.
DUE_FRAMES = 8000
INTERVAL_S = 60.0
# SQLite's autocheckpoint, the backstop (in the committing connection).
BACKSTOP_FRAMES = 32000


class WalCheckpointer:
    def __init__(self, path: Path, *, due_frames: int = DUE_FRAMES, interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self.due_frames = due_frames
        self.interval_s = interval_s
        self._frames = 0  # written since the last checkpoint (an estimate from the commits)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        self.last_error: str | None = None

    def noted(self, frames: int) -> None:
        """A commit wrote about ``frames`` pages to the WAL."""
        with self._lock:
            self._frames += frames
            due = self._frames >= self.due_frames
        if due:
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="citygate-checkpoint", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.is_set():
                self._wake.wait(self.interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                self.checkpoint(db)
        finally:
            db.close()

    def checkpoint(self, db: sqlite3.Connection) -> None:
        with self._lock:
            frames, self._frames = self._frames, 0
        if frames == 0:
            return
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:  # a full disk, an I/O error: the WAL waits, nothing is lost
            self.last_error = str(e)
            log.warning("WAL checkpoint failed; will try again", error=str(e))
            with self._lock:
                self._frames += frames
            return
        self.checkpoints += 1
        self.last_error = None
