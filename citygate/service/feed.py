"""The reading feed: accepted readings (and heartbeats) waiting for the rules.

Ingest appends a batch after the database confirmed it (one row per batch, one small
INSERT: the ingest path never waits on the rules themselves); the evaluator takes rows in
id order and deletes them in the transaction that saves its state, so a reading is
evaluated at least once and, because re-recording a condition change is a no-op
(:mod:`citygate.service.cases`), its case effects happen once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, func, insert, select

from citygate.contract.readings import Reading
from citygate.service.feed_body import decode_body, encode_readings
from citygate.service.schema import reading_feed

DEPTH_CHECK_S = 1.0  # how stale the feed's depth may be when deciding it is full


@dataclass(frozen=True, slots=True)
class FeedBatch:
    id: int
    kind: str  # "readings" | "heartbeat"
    gateway_id: str
    received_ms: int
    items: list[Any]  # readings: [device_id, profile, ts_ns, values]; heartbeat: [at_ns, backlog_age_s]


class ReadingFeed:
    def __init__(self, engine: Engine, *, max_batches: int) -> None:
        self.engine = engine
        self.max_batches = max_batches
        self.skipped_readings = 0  # not evaluated because the feed was full
        self._depth = 0
        self._depth_at = 0.0
        self._lock = threading.Lock()

    def _full(self) -> bool:
        now = time.monotonic()
        if now - self._depth_at > DEPTH_CHECK_S:
            self._depth = self.depth()
            self._depth_at = now
        return self._depth >= self.max_batches

    def append_readings(self, gateway_id: str, readings: Sequence[Reading]) -> bool:
        """Queue a batch for the rules; False (and counted) when the feed is full."""
        if not readings:
            return True
        return self.append_encoded(gateway_id, len(readings), encode_readings(readings))

    def append_encoded(self, gateway_id: str, count: int, body: bytes) -> bool:
        """:meth:`append_readings` of a body from :func:`encode_readings` (ingest encodes it
        while InfluxDB writes the batch)."""
        if self._full():
            with self._lock:
                self.skipped_readings += count
            return False
        self._append("readings", gateway_id, count, body)
        return True

    def append_heartbeat(self, gateway_id: str, at_ns: int, backlog_age_s: float | None) -> None:
        self._append("heartbeat", gateway_id, 1, orjson.dumps([at_ns, backlog_age_s]))

    def _append(self, kind: str, gateway_id: str, count: int, body: bytes) -> None:
        # One statement, so autocommit: no BEGIN and COMMIT round trips, each of which made
        # ingest's thread wait for the interpreter lock again when it came back.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                insert(reading_feed).values(
                    kind=kind,
                    gateway_id=gateway_id,
                    received_ms=time.time_ns() // 1_000_000,
                    count=count,
                    body=body,
                )
            )
        self._depth += 1

    def take(self, limit: int, *, after_id: int = 0) -> list[FeedBatch]:
        """The oldest ``limit`` batches with an id above ``after_id`` (they stay until :meth:`done`)."""
        q = select(reading_feed).where(reading_feed.c.id > after_id).order_by(reading_feed.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [
                FeedBatch(r.id, r.kind, r.gateway_id, r.received_ms, decode_body(r.body))
                for r in conn.execute(q)
            ]

    @staticmethod
    def done(conn: Connection, ids: Sequence[int]) -> None:
        """Delete evaluated batches, in the caller's transaction (the one that saves the state)."""
        if ids:
            conn.execute(delete(reading_feed).where(reading_feed.c.id.in_(list(ids))))

    def depth(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(reading_feed)).scalar_one())
