"""The SenML payload form (RFC 8428, JSON): an array of records forming one reading (one time).

Base fields (``bn``, ``bt``, ``bu``, ``bv``) apply to their record and all that follow;
the field is the last segment of the resolved name (after ``:`` or ``/``); citygate's
extension ``seq`` on the first record carries the device's sequence number.
"""

from __future__ import annotations

import math
from typing import Any, Final

from citygate.contract.checks import FieldChecks
from citygate.contract.details import fmt_ts, short, show
from citygate.contract.profiles import INT64_MAX
from citygate.contract.readings import Reading, Rejection, RejectReason, Value, new_reading
from citygate.contract.rules import KIND_WANTS, CompiledProfile

_KEY_FOR_KIND: Final = ("v", "v", "vb", "vs")  # by rules.FLOAT, INT, BOOL, STR
_VALUE_KEYS: Final = ("v", "vb", "vs", "vd", "s")
_OTHER_VALUE_KEYS: Final = tuple(frozenset(_VALUE_KEYS) - {want} for want in _KEY_FOR_KIND)
_BASE_KEYS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
# Keys understood or deliberately ignored ("ut" update time, "bs" base sum);
# "seq" is citygate's extension carrying the device's sequence number.
_KEYS: Final = _BASE_KEYS | frozenset({"n", "u", "t", "ut", "seq", *_VALUE_KEYS})
_ABSOLUTE: Final = 2**28  # RFC 8428 4.5.3: smaller times are relative to "now"
_MAX_ABS_S: Final = 1e15  # beyond any real clock; keeps float -> ns arithmetic finite
_NS: Final = 1_000_000_000


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def parse(
    checks: FieldChecks, device_id: str, cp: CompiledProfile, pack: list[Any], now_ns: int
) -> Reading | Rejection:
    """One SenML pack -> one Reading.

    Each record takes a few cheap gates (set comparisons on its keys, an
    unchanged resolved time, a value of the field's exact type); anything
    unusual drops to the explaining checks below the gates.
    """
    if not pack:
        return Rejection(RejectReason.BAD_SHAPE, "SenML pack is empty")
    rules = cp.rules
    bn = ""
    bt: Any = 0
    bu: str | None = None
    bv: int | float | None = None
    ts_ns: int | None = None
    last_time: Any = None
    seq: int | None = None
    values: dict[str, Value] = {}
    n_required = 0
    for i, rec in enumerate(pack):
        if not isinstance(rec, dict):
            return Rejection(RejectReason.BAD_SHAPE, f"SenML record {i} must be an object, got {show(rec)}")
        keys = rec.keys()
        if not keys <= _KEYS:
            bad_key = _bad_key(i, rec)
            if bad_key is not None:
                return bad_key
        if not keys.isdisjoint(_BASE_KEYS):
            # Base fields apply to this record and all that follow (RFC 8428 4.1).
            if "bn" in rec:
                b = rec["bn"]
                if not isinstance(b, str):
                    return Rejection(RejectReason.BAD_SHAPE, f"SenML record {i}: 'bn' must be a string")
                bn = b
            if "bt" in rec:
                bt = rec["bt"]
                if not _is_number(bt):
                    return Rejection(
                        RejectReason.BAD_TIMESTAMP,
                        f"SenML record {i}: 'bt' must be a number of seconds, got {show(bt)}",
                    )
            if "bu" in rec:
                u = rec["bu"]
                if not isinstance(u, str):
                    return Rejection(RejectReason.BAD_UNIT, f"SenML record {i}: 'bu' must be a string")
                bu = u
            if "bv" in rec:
                b = rec["bv"]
                if not _is_number(b) or (isinstance(b, float) and not math.isfinite(b)):
                    return Rejection(
                        RejectReason.WRONG_TYPE,
                        f"SenML record {i}: 'bv' must be a finite number, got {show(b)}",
                    )
                bv = b
            if "bver" in rec and (type(rec["bver"]) is not int or rec["bver"] < 1):
                return Rejection(
                    RejectReason.BAD_SHAPE, f"SenML record {i}: 'bver' must be a positive integer"
                )

        # Time: all records of the pack must resolve to one instant.
        t = rec.get("t", 0)
        if not (t.__class__ is int or t.__class__ is float or _is_number(t)):
            return Rejection(
                RejectReason.BAD_TIMESTAMP,
                f"SenML record {i}: 't' must be a number of seconds, got {show(t)}",
            )
        resolved = bt + t
        if resolved != last_time:  # NaN never equals itself: it is always re-checked
            rec_ns = _time_ns(resolved, "bt+t", i, now_ns)
            if isinstance(rec_ns, Rejection):
                return rec_ns
            if ts_ns is None:
                ts_ns = rec_ns
            elif rec_ns != ts_ns:
                return Rejection(
                    RejectReason.BAD_SHAPE,
                    f"SenML record {i} has time {fmt_ts(rec_ns)} but record 0 has "
                    f"{fmt_ts(ts_ns)}: send one pack per reading, all records at one time",
                )
            last_time = resolved

        if "seq" in rec:
            s = rec["seq"]
            if not (type(s) is int and 0 <= s <= INT64_MAX):
                return Rejection(
                    RejectReason.BAD_SHAPE,
                    f"SenML record {i}: 'seq' must be an integer from 0 to 2**63-1, got {show(s)}",
                )
            if i == 0:
                seq = s
            elif s != seq:
                return Rejection(
                    RejectReason.BAD_SHAPE,
                    f"SenML record {i}: 'seq' {s} differs from the pack's sequence number; "
                    "put 'seq' on the first record only",
                )

        n = rec.get("n", "")
        if not isinstance(n, str):
            return Rejection(RejectReason.BAD_SHAPE, f"SenML record {i}: 'n' must be a string")
        full = bn + n
        name = full[max(full.rfind(":"), full.rfind("/")) + 1 :]
        rule = rules.get(name)
        if rule is None:
            if not name:
                return Rejection(
                    RejectReason.BAD_SHAPE,
                    f"SenML record {i}: name {short(full)} does not end in a field name",
                )
            return checks.unknown_field(cp, name)
        if name in values:
            return Rejection(
                RejectReason.BAD_SHAPE,
                f"SenML record {i}: field {short(name)} appears twice in the pack",
                name,
            )

        exact, lo, hi, required, (kind, unit, _lo_text, _hi_text, _unit_sfx) = rule
        want = _KEY_FOR_KIND[kind]
        if want not in rec or not keys.isdisjoint(_OTHER_VALUE_KEYS[kind]):
            return _bad_value(i, name, kind, rec)
        v = rec[want]

        if "u" in rec:
            u = rec["u"]
            if u != unit:
                expected = f"'{unit}'" if unit is not None else "no unit"
                return Rejection(
                    RejectReason.BAD_UNIT,
                    f"SenML record {i}: field {name!r} has unit "
                    f"{short(u) if isinstance(u, str) else show(u)}, "
                    f"the profile {cp.label} uses {expected}",
                    name,
                )
        elif bu is not None and bu != unit and unit is not None and want == "v":
            # A base unit cannot be unset per record, so it is only held
            # against numeric fields that have a unit of their own.
            return Rejection(
                RejectReason.BAD_UNIT,
                f"SenML record {i}: field {name!r} has base unit {short(bu)}, "
                f"the profile {cp.label} uses '{unit}'",
                name,
            )

        if bv is None and v.__class__ is exact and lo <= v <= hi:
            # The class check proves v is a Value; mypy narrows it to object.
            values[name] = v  # type: ignore[assignment]
        else:
            if bv is not None and want == "v" and _is_number(v):
                v = bv + v
            checked = checks.check_value(name, rule, v)
            if isinstance(checked, Rejection):
                return checked
            values[name] = checked
        if required:
            n_required += 1

    if n_required != cp.n_required:
        return checks.missing(cp, values)
    assert ts_ns is not None  # the pack is not empty
    bad = checks.check_window(ts_ns, now_ns)
    if bad is not None:
        return bad
    return new_reading(device_id, cp.name, cp.version, cp.measurement, ts_ns, seq, values)


def _time_ns(x: object, what: str, index: int, now_ns: int) -> int | Rejection:
    """Epoch ns of a resolved SenML time (seconds; < 2**28 means relative to now)."""
    if not _is_number(x):
        return Rejection(
            RejectReason.BAD_TIMESTAMP,
            f"SenML record {index}: '{what}' must be a number of seconds, got {show(x)}",
        )
    t: int | float = x  # type: ignore[assignment]
    if isinstance(t, float) and not math.isfinite(t):
        return Rejection(RejectReason.BAD_TIMESTAMP, f"SenML record {index}: '{what}' is not finite")
    if t >= _MAX_ABS_S:
        return Rejection(
            RejectReason.TIMESTAMP_IN_FUTURE,
            f"SenML record {index}: time {show(t)} s is far in the future",
        )
    if t <= -_MAX_ABS_S:
        return Rejection(
            RejectReason.TIMESTAMP_TOO_OLD,
            f"SenML record {index}: relative time {show(t)} s is far in the past",
        )
    # Float seconds carry about 0.2 us at today's epoch: round to whole us.
    ns = int(t) * _NS if isinstance(t, int) else round(float(t) * 1e6) * 1000
    return ns if t >= _ABSOLUTE else now_ns + ns


def _bad_value(i: int, name: str, kind: int, rec: dict[Any, Any]) -> Rejection:
    present = [k for k in _VALUE_KEYS if k in rec]
    if len(present) != 1:
        return Rejection(
            RejectReason.BAD_SHAPE,
            f"SenML record {i} ({name}) must carry exactly one value ('v', 'vb' or 'vs'), has {len(present)}",
            name,
        )
    want = _KEY_FOR_KIND[kind]
    return Rejection(
        RejectReason.WRONG_TYPE,
        f"SenML record {i}: field {name!r} must be {KIND_WANTS[kind]} given as '{want}', got '{present[0]}'",
        name,
    )


def _bad_key(i: int, rec: dict[Any, Any]) -> Rejection | None:
    """Refuse non-string and must-understand keys (RFC 8428 4.4); others are ignored."""
    for k in rec:
        if not isinstance(k, str):
            return Rejection(RejectReason.BAD_SHAPE, f"SenML record {i}: keys must be strings")
        if k.endswith("_"):
            return Rejection(
                RejectReason.BAD_SHAPE,
                f"SenML record {i}: must-understand field {short(k)} is not supported",
            )
    return None
