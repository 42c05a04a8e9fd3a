"""From a request body to line protocol: decompress, parse, re-validate, serialise.

Plain code over plain data (no HTTP, no database), so it is easy to test and
to fuzz. Whole-batch problems raise :class:`BatchError` with a specific
status (400 bad gzip, 413 too large / zip bomb, 415 unknown encoding, 422
bad shape); a bad reading inside a valid batch becomes a per-reading
rejection and the rest of the batch goes on (DESIGN guarantee 4).

Every reading is validated again with the gateway's own validator
(:meth:`Validator.validate_obj`): the cloud trusts no gateway's validation.
The batch is parsed with orjson and checked by hand rather than through the
pydantic model, which costs more than everything else on this path together;
the checks are those of :class:`citygate.contract.wire.IngestBatch`.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from citygate.cloud.lineprotocol import ReadingEncoder
from citygate.contract.validation import Reading, Rejection, Validator
from citygate.contract.wire import RejectedReading

_BATCH_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Parsing allocates a Python object of ~30-70 bytes per JSON value: 30 MiB of "[]," would
# become a gigabyte. Every value but the first follows a ',' or a ':', so counting those
# bounds the values before parsing. A wire reading with F fields has 2F + 6 of them.
VALUES_PER_READING = 128
_BATCH_KEYS = frozenset({"batch_id", "readings"})


class BatchError(Exception):
    """The whole batch is refused; nothing of it is written."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def decode_body(body: bytes, content_encoding: str | None, max_decompressed: int) -> bytes:
    """The JSON bytes of a body: gzip (capped, so a zip bomb stops early) or identity."""
    enc = (content_encoding or "identity").strip().lower()
    if enc == "identity":
        if len(body) > max_decompressed:
            raise BatchError(413, "too_large", f"body is larger than {max_decompressed} bytes")
        return body
    if enc not in ("gzip", "x-gzip"):
        raise BatchError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {enc[:40]!r} is not supported; send gzip or identity",
        )
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, max_decompressed + 1)
    except zlib.error as e:
        raise BatchError(400, "bad_gzip", f"body is not valid gzip: {e}") from e
    if len(out) > max_decompressed or d.unconsumed_tail:
        raise BatchError(
            413, "decompressed_too_large", f"body decompresses to more than {max_decompressed} bytes"
        )
    if not d.eof:
        raise BatchError(400, "bad_gzip", "gzip stream is truncated")
    if d.unused_data:
        raise BatchError(400, "bad_gzip", "data after the end of the gzip stream")
    return out


def parse_batch(data: bytes, max_readings: int) -> tuple[str, list[Any]]:
    """(batch_id, raw readings) of an IngestBatch document, or BatchError."""
    max_values = VALUES_PER_READING * max_readings + 64
    if data.count(b",") + data.count(b":") > max_values:
        raise BatchError(
            413,
            "too_many_values",
            f"body has more JSON values than {max_readings} readings can hold ({max_values}); "
            "send fewer readings per batch",
        )
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BatchError(400, "malformed_json", f"body is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise BatchError(422, "bad_shape", 'body must be an object {"batch_id": ..., "readings": [...]}')
    extra = set(doc) - _BATCH_KEYS
    if extra:
        shown = ", ".join(sorted(repr(k[:40]) for k in extra)[:5])
        raise BatchError(422, "bad_shape", f"unexpected key(s) {shown}; a batch has batch_id and readings")
    batch_id = doc.get("batch_id")
    if not isinstance(batch_id, str) or _BATCH_ID_RE.fullmatch(batch_id) is None:
        raise BatchError(
            422, "bad_batch_id", "batch_id must be 1-64 characters of letters, digits, '.', '_', ':', '-'"
        )
    readings = doc.get("readings")
    if not isinstance(readings, list):
        raise BatchError(422, "bad_shape", "readings must be an array")
    if len(readings) > max_readings:
        raise BatchError(
            413, "too_many_readings", f"batch has {len(readings)} readings; the limit is {max_readings}"
        )
    return batch_id, readings


@dataclass(slots=True)
class PreparedBatch:
    batch_id: str
    lines: list[str] = field(default_factory=list)
    line_reading: list[int] = field(default_factory=list)  # line index -> reading index
    line_device: list[str] = field(default_factory=list)
    rejected: list[RejectedReading] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    received: int = 0


def prepare(
    batch_id: str, raw_readings: list[Any], validator: Validator, encoder: ReadingEncoder, now_ns: int
) -> PreparedBatch:
    """Validate each reading; line protocol for the good ones, rejections for the rest."""
    out = PreparedBatch(batch_id=batch_id, received=len(raw_readings))
    inventory = validator.inventory
    validate = validator.validate_obj
    line = encoder.line
    meta: dict[str, tuple[str | None, str | None]] = {}  # device -> (site, district), per batch
    for i, r in enumerate(raw_readings):
        if r.__class__ is not dict:
            _reject(out, i, "", "bad_shape", "a reading must be an object with device_id, ts, seq, readings")
            continue
        device_id = r.pop("device_id", None)
        if not isinstance(device_id, str) or not device_id:
            _reject(out, i, "", "bad_shape", "a reading needs a non-empty string device_id")
            continue
        result: Reading | Rejection = validate(device_id, r, now_ns)
        if isinstance(result, Rejection):
            _reject(out, i, device_id[:64], result.reason.value, result.detail)
            continue
        where = meta.get(device_id)
        if where is None:
            record = inventory[device_id]
            where = meta[device_id] = (record.site, record.district)
        out.lines.append(line(result, where[0], where[1]))
        out.line_reading.append(i)
        out.line_device.append(device_id)
    return out


def _reject(out: PreparedBatch, index: int, device_id: str, reason: str, detail: str) -> None:
    out.rejected.append(RejectedReading(index=index, device_id=device_id, reason=reason, detail=detail))
    out.reasons[reason] += 1
