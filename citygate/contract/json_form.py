"""The JSON payload form: ``{"ts": <epoch ms | RFC 3339>, "seq": <int>, "readings": {...}}``.

Also what a payload that orjson could not parse is refused for: NaN, Infinity and
numbers too large for a double are named as such, since "unexpected character"
would send a vendor hunting for a syntax error in an otherwise valid payload.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from citygate.contract.checks import FieldChecks
from citygate.contract.details import short, show
from citygate.contract.profiles import INT64_MAX
from citygate.contract.readings import Reading, Rejection, RejectReason
from citygate.contract.rfc3339 import parse_rfc3339_ns
from citygate.contract.rules import CompiledProfile

_JSON_KEYS: Final = frozenset({"ts", "seq", "readings"})
_NONFINITE_TOKEN_RE: Final = re.compile(
    rb"(?<![A-Za-z0-9_.])[-+]?(?:NaN|nan|NAN|Infinity|infinity|INFINITY|inf|Inf|INF)(?![A-Za-z0-9_])"
)
_KEY_BEFORE_RE: Final = re.compile(rb'"([^"\\]{1,64})"\s*:\s*[-+]?$')


def parse(
    checks: FieldChecks, device_id: str, cp: CompiledProfile, obj: dict[Any, Any], now_ns: int, owned: bool
) -> Reading | Rejection:
    """One JSON-form payload -> one Reading (``owned``: its readings dict may become the values)."""
    if not obj.keys() <= _JSON_KEYS:
        extra = sorted(short(str(k)) for k in obj.keys() - _JSON_KEYS)
        return Rejection(
            RejectReason.BAD_SHAPE,
            f"unexpected top-level key(s) {', '.join(extra[:5])}; a payload has only "
            "'ts', 'seq' and 'readings' (the device id comes from the topic)",
        )
    readings = obj.get("readings")
    if readings.__class__ is not dict:
        if readings is None:
            return Rejection(RejectReason.BAD_SHAPE, "'readings' is missing")
        if not isinstance(readings, dict):
            return Rejection(RejectReason.BAD_SHAPE, f"'readings' must be an object, got {show(readings)}")
    seq = obj.get("seq")
    if seq is not None and not (seq.__class__ is int and 0 <= seq <= INT64_MAX):
        return Rejection(
            RejectReason.BAD_SHAPE,
            f"'seq' must be an integer from 0 to 2**63-1, got {show(seq)}",
        )
    ts = obj.get("ts")
    if ts.__class__ is int:
        ts_ns = ts * 1_000_000
    elif isinstance(ts, str):
        parsed = parse_rfc3339_ns(ts)
        if parsed is None:
            return Rejection(
                RejectReason.BAD_TIMESTAMP,
                f"'ts' {short(ts)} is not an RFC 3339 date-time with a time zone "
                "(e.g. 2024-05-01T12:00:00.123Z or 2024-05-01T14:00:00+02:00)",
            )
        ts_ns = parsed
    else:
        return _bad_ts_type(ts)
    # Compare before subtracting: the window check below also catches a
    # device that sends epoch seconds instead of milliseconds.
    if not (now_ns - checks.max_past_ns <= ts_ns <= now_ns + checks.max_future_ns):
        bad = checks.check_window(ts_ns, now_ns)
        if bad is not None:
            if bad.reason is RejectReason.TIMESTAMP_TOO_OLD and ts.__class__ is int and 10**8 <= ts < 10**11:
                return Rejection(
                    bad.reason,
                    bad.detail + f"; {ts} looks like epoch seconds, 'ts' is in milliseconds",
                )
            return bad
    return checks.finish_fields(device_id, cp, readings, ts_ns, seq, owned)


def _bad_ts_type(ts: object) -> Rejection:
    if ts is None:
        return Rejection(
            RejectReason.BAD_TIMESTAMP,
            "'ts' is missing; send the measurement time as epoch milliseconds or RFC 3339",
        )
    if isinstance(ts, float) and not isinstance(ts, bool):
        return Rejection(
            RejectReason.BAD_TIMESTAMP,
            f"'ts' = {show(ts)} is not an integer; send epoch milliseconds as an integer",
        )
    if isinstance(ts, int) and not isinstance(ts, bool):
        return Rejection(RejectReason.BAD_TIMESTAMP, f"'ts' = {show(ts)} is not a plain integer")
    return Rejection(
        RejectReason.BAD_TIMESTAMP,
        f"'ts' must be epoch milliseconds (an integer) or an RFC 3339 string, got {show(ts)}",
    )


def parse_failure(raw: bytes, e: orjson.JSONDecodeError) -> Rejection:
    """Why orjson refused ``raw``, told as specifically as the text allows."""
    msg = str(e)
    # orjson refuses numbers that overflow a double with an "infinity" message.
    if "infinity" in msg:
        fname = _key_before(raw, e.pos)
        return Rejection(
            RejectReason.NOT_FINITE,
            (f"field {short(fname)}: " if fname else "")
            + "a number in the payload is too large for a double (it would be infinite)",
            fname,
        )
    masked = _mask_strings(raw)
    m = _NONFINITE_TOKEN_RE.search(masked)
    if m is not None:
        fname = _key_before(raw, m.start())
        token = m.group(0).decode("ascii")
        return Rejection(
            RejectReason.NOT_FINITE,
            (f"field {short(fname)} = {token}: " if fname else f"{token}: ")
            + "NaN and Infinity are not valid JSON and cannot be stored; "
            "leave the field out when there is no valid value",
            fname,
        )
    return Rejection(RejectReason.MALFORMED_JSON, f"payload is not valid JSON: {msg}")


def _key_before(text: bytes, pos: int) -> str | None:
    """The object key whose value starts at ``pos``, if the text there is ``"key": ``."""
    m = _KEY_BEFORE_RE.search(text[max(0, pos - 200) : pos])
    if m is None:
        return None
    return m.group(1).decode("utf-8", "replace")


def _mask_strings(raw: bytes) -> bytes:
    """``raw`` with the contents of JSON string literals blanked, offsets kept.

    Linear time on purpose (a regex over escaped quotes can go quadratic on
    hostile input, and this runs on payloads that already failed to parse).
    """
    out = bytearray(raw)
    n = len(raw)
    i = raw.find(b'"')
    while i != -1:
        j = i + 1
        while True:
            j = raw.find(b'"', j)
            if j == -1:
                out[i + 1 :] = b"_" * (n - i - 1)
                return bytes(out)
            k = j - 1
            backslashes = 0
            while k > i and raw[k] == 0x5C:
                backslashes += 1
                k -= 1
            if backslashes % 2 == 0:
                break
            j += 1
        out[i + 1 : j] = b"_" * (j - i - 1)
        i = raw.find(b'"', j + 1)
    return bytes(out)
