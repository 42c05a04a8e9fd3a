"""How the reading feed stores a batch of readings: without SQLAlchemy, so that ingest can
encode it (while InfluxDB writes the batch) in a cloud whatever its store.

A batch is ``[[device_id, profile, ts_ns, values], ...]`` as JSON, zlib-compressed (level 1:
a tenth of its JSON for 1.5 ms per 5,000 readings, in C without the interpreter lock).
Uncompressed it was most of what the store wrote, and compressed again itself (PostgreSQL's
TOAST), during ingest bursts. Bodies written before start with "[" (JSON); a zlib stream
never does.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Final

import orjson

from citygate.contract.readings import Reading

_PACK_LEVEL: Final = 1


def encode_readings(readings: Sequence[Reading]) -> bytes:
    """A readings batch as the feed stores it."""
    # Tuples of the readings' own dicts (no copy): encoding is most of an append's CPU.
    body = orjson.dumps(
        [
            (r.device_id, r.profile, r.ts_ns, r.values if type(r.values) is dict else dict(r.values))
            for r in readings
        ]
    )
    return zlib.compress(body, _PACK_LEVEL)


def decode_body(body: bytes) -> Any:
    """A feed row's body (readings or heartbeat) as JSON values."""
    return orjson.loads(body if body[:1] == b"[" else zlib.decompress(body))
