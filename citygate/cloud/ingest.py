"""From a request body to line protocol: decompress, parse, re-validate, serialise.

Plain code over plain data (no HTTP, no database), so it is easy to test and
to fuzz. Whole-batch problems raise :class:`BatchError` with a specific
status (400 bad gzip, 413 too large / zip bomb, 415 unknown encoding, 422
bad shape); a bad reading inside a valid batch becomes a per-reading
rejection and the rest of the batch goes on (docs/ARCHITECTURE.md, guarantee 4).

Every reading is validated again with the gateway's own validator
(:meth:`Validator.validate_obj`): the cloud trusts no gateway's validation.
Its time window is judged against the reading's ``received_ms`` (when the
gateway received it) rather than against the batch's arrival, so a reading
buffered through an outage stays good; ``received_ms`` itself must lie within
``max_future_s`` ahead of and ``max_buffered_s`` behind the cloud's clock.
The batch is parsed with orjson and checked by hand rather than through the
pydantic model, which costs more than everything else on this path together;
the checks are those of :class:`citygate.contract.wire.IngestBatch`.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from citygate.cloud.lineprotocol import ReadingEncoder
from citygate.contract.details import fmt_duration, fmt_ts
from citygate.contract.readings import Reading, Rejection
from citygate.contract.validation import Validator
from citygate.contract.wire import BATCH_ID_RE as _BATCH_ID_RE
from citygate.contract.wire import NOT_ASSIGNED, RECEIVED_IN_FUTURE, RECEIVED_TOO_OLD, RejectedReading
from citygate.errors import BatchError

# Parsing allocates a Python object of ~30-70 bytes per JSON value: 30 MiB of "[]," would
# become a gigabyte. Every value but the first follows a ',' or a ':', so counting those
# bounds the values before parsing. A wire reading with F fields has 2F + 8 of them.
VALUES_PER_READING = 128
_BATCH_KEYS = frozenset({"batch_id", "readings"})


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
    good: list[Reading] = field(default_factory=list)  # line index -> the reading it writes
    rejected: list[RejectedReading] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    received: int = 0


DEFAULT_MAX_BUFFERED_S = 30 * 86400.0
_NS = 1_000_000_000


def prepare(
    batch_id: str,
    raw_readings: list[Any],
    validator: Validator,
    encoder: ReadingEncoder,
    now_ns: int,
    *,
    gateway_id: str,
    max_buffered_s: float = DEFAULT_MAX_BUFFERED_S,
) -> PreparedBatch:
    """Validate each reading; line protocol for the good ones, rejections for the rest.

    A reading with ``received_ms`` is validated as of that time (the gateway's
    receive time), after checking that the gateway did not receive it in the
    cloud's future (beyond ``max_future_s``: its clock is ahead) nor longer ago
    than ``max_buffered_s``. Without it (older gateways) ``now_ns`` stands in.
    A reading of a device not assigned to ``gateway_id`` (the caller) is refused
    ``not_assigned``: a gateway reports only its own devices.
    """
    out = PreparedBatch(batch_id=batch_id, received=len(raw_readings))
    inventory = validator.inventory
    validate = validator.validate_obj
    series_key = encoder.series_key
    prefixes: list[str] = []  # line index -> series key
    max_future_ns = int(validator.limits.max_future_s * _NS)
    max_buffered_ns = int(max_buffered_s * _NS)
    # device -> series key, per batch: a validator maps a device to one profile, so its
    # readings' measurement and profile_version are the same within the batch.
    meta: dict[str, str] = {}
    for i, r in enumerate(raw_readings):
        if r.__class__ is not dict:
            _reject(out, i, "", "bad_shape", "a reading must be an object with device_id, ts, seq, readings")
            continue
        device_id = r.pop("device_id", None)
        if not isinstance(device_id, str) or not device_id:
            _reject(out, i, "", "bad_shape", "a reading needs a non-empty string device_id")
            continue
        received_ms = r.pop("received_ms", None)
        at_ns = now_ns
        if received_ms is not None:
            if received_ms.__class__ is not int:
                _reject(
                    out,
                    i,
                    device_id[:64],
                    "bad_shape",
                    f"'received_ms' must be an integer (epoch milliseconds), got {_kind(received_ms)}",
                )
                continue
            at_ns = received_ms * 1_000_000
            if at_ns > now_ns + max_future_ns:
                _reject(
                    out,
                    i,
                    device_id[:64],
                    RECEIVED_IN_FUTURE,
                    f"received_ms {fmt_ts(at_ns)} is {fmt_duration(at_ns - now_ns)} ahead of the cloud's "
                    f"clock {fmt_ts(now_ns)} (limit max_future_s = {fmt_duration(max_future_ns)}): "
                    "the gateway's clock is ahead by about that much; check its time synchronisation",
                )
                continue
            if at_ns < now_ns - max_buffered_ns:
                _reject(
                    out,
                    i,
                    device_id[:64],
                    RECEIVED_TOO_OLD,
                    f"received_ms {fmt_ts(at_ns)} is {fmt_duration(now_ns - at_ns)} before the cloud's "
                    f"clock {fmt_ts(now_ns)}: the gateway held this reading longer than the cloud's "
                    f"max_buffered_s = {fmt_duration(max_buffered_ns)}",
                )
                continue
        result: Reading | Rejection = validate(device_id, r, at_ns)
        if isinstance(result, Rejection):
            _reject(out, i, device_id[:64], result.reason.value, result.detail)
            continue
        where = meta.get(device_id)
        if where is None:
            record = inventory[device_id]
            if gateway_id not in record.gateways:
                assigned = ", ".join(record.gateways) or "no gateway"
                _reject(
                    out,
                    i,
                    device_id[:64],
                    NOT_ASSIGNED,
                    f"device {device_id!r} is assigned to {assigned}, not to gateway {gateway_id!r} "
                    "(citygate pki assign moves a device)",
                )
                continue
            where = meta[device_id] = series_key(
                result.measurement, device_id, result.profile_version, record.site, record.district
            )
        prefixes.append(where)
        out.good.append(result)
        out.line_reading.append(i)
    out.lines = encoder.lines(out.good, prefixes)
    return out


def _reject(out: PreparedBatch, index: int, device_id: str, reason: str, detail: str) -> None:
    out.rejected.append(RejectedReading(index=index, device_id=device_id, reason=reason, detail=detail))
    out.reasons[reason] += 1


def _kind(v: object) -> str:
    if isinstance(v, str):
        return f"a string {v[:24]!r}"
    if isinstance(v, bool | float):
        return f"{v!r}"
    if isinstance(v, list | dict):
        return "an array" if isinstance(v, list) else "an object"
    return f"a {type(v).__name__}"
