"""End-to-end confirmation: the payload the gateway publishes on ``devices/{id}/ack``.

``{"ranges": [[first, last], ...]}``: inclusive ranges of sequence numbers the
gateway has durably handled (committed to its outbox, or dead-lettered as
invalid) since its previous ack to that device. A device lets go of exactly
those readings and keeps everything else until it is confirmed.

Why ranges and not "the highest committed seq": the broker is not a durable
point. If it crashes after acknowledging readings 100..110 to a device but
before the gateway saw them, and the device then sends 111, a cumulative
"highest = 111" would release 100..110, which nobody holds any more. Ranges
confirm only what the gateway really has. (Found by the simulator's broker
kill -9 test.)
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

MAX_RANGES = 256  # per message; more are sent in further messages


def to_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges of the given sequence numbers."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def encode_acks(seqs: Iterable[int]) -> list[bytes]:
    """One or more ack payloads covering ``seqs``."""
    ranges = to_ranges(seqs)
    return [orjson.dumps({"ranges": ranges[i : i + MAX_RANGES]}) for i in range(0, len(ranges), MAX_RANGES)]


def decode_ack(payload: bytes) -> list[tuple[int, int]] | None:
    """The ranges of an ack payload, or None if it is not one."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    ranges = doc.get("ranges") if isinstance(doc, dict) else None
    if not isinstance(ranges, list) or len(ranges) > MAX_RANGES:
        return None
    out: list[tuple[int, int]] = []
    for r in ranges:
        if not (isinstance(r, list) and len(r) == 2 and all(type(x) is int for x in r) and r[0] <= r[1]):
            return None
        out.append((r[0], r[1]))
    return out
