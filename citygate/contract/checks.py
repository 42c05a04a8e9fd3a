"""What both payload forms check the same way: field values against their rules, the time window.

:class:`FieldChecks` is the base of :class:`citygate.contract.validation.Validator`
rather than a member of it, so the parsers (:mod:`citygate.contract.json_form`,
:mod:`citygate.contract.senml`), which are handed the validator, reach these
methods and limits without one more attribute lookup per reading.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from citygate.contract.details import fmt_duration, fmt_ts, short, show
from citygate.contract.readings import Reading, Rejection, RejectReason, Value, new_reading
from citygate.contract.rules import BOOL, FLOAT, INT, KIND_WANTS, NO_RULE, CompiledProfile, Rule

_CONTROL_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class FieldChecks:
    """The limits, in the units the hot path compares, and the checks that use them."""

    __slots__ = ("max_future_ns", "max_past_ns", "max_str")

    def __init__(self, max_future_ns: int, max_past_ns: int, max_str: int) -> None:
        self.max_future_ns = max_future_ns
        self.max_past_ns = max_past_ns
        self.max_str = max_str

    def check_window(self, ts_ns: int, now_ns: int) -> Rejection | None:
        ahead = ts_ns - now_ns
        if ahead > self.max_future_ns:
            return Rejection(
                RejectReason.TIMESTAMP_IN_FUTURE,
                f"time {fmt_ts(ts_ns)} is {fmt_duration(ahead)} ahead of the receiver's clock "
                f"{fmt_ts(now_ns)} (limit {fmt_duration(self.max_future_ns)}); "
                "check the device clock",
            )
        if -ahead > self.max_past_ns:
            return Rejection(
                RejectReason.TIMESTAMP_TOO_OLD,
                f"time {fmt_ts(ts_ns)} is {fmt_duration(-ahead)} older than the receiver's clock "
                f"{fmt_ts(now_ns)} (limit {fmt_duration(self.max_past_ns)})",
            )
        return None

    def finish_fields(
        self,
        device_id: str,
        cp: CompiledProfile,
        readings: dict[Any, Any],
        ts_ns: int,
        seq: int | None,
        owned: bool,
    ) -> Reading | Rejection:
        """Check the field values (a JSON form's ``readings``) and build the Reading.

        First a check-only pass for the common case where every value already
        has its field's exact Python type and is in range: then the parsed
        dict itself (``owned``: nobody else holds it) or a copy becomes the
        Reading's values. Anything else goes through the explaining pass.
        """
        rules = cp.rules
        no_rule = NO_RULE
        n_required = 0
        for name, v in readings.items():
            exact, lo, hi, required, _detail = rules.get(name, no_rule)
            if v.__class__ is not exact or not lo <= v <= hi:
                break
            if required:
                n_required += 1
        else:
            if n_required == cp.n_required and readings:
                kept = readings if owned else dict(readings)
                return new_reading(device_id, cp.name, cp.version, cp.measurement, ts_ns, seq, kept)

        # The explaining pass: the first value at fault decides the rejection.
        values: dict[str, Value] = {}
        n_required = 0
        for name, v in readings.items():
            rule = rules.get(name)
            if rule is None:
                return self.unknown_field(cp, name)
            exact, lo, hi, required, _detail = rule
            if v.__class__ is exact and lo <= v <= hi:
                # The class check proves v is a Value; mypy narrows it to object.
                values[name] = v  # type: ignore[assignment]
            else:
                checked = self.check_value(name, rule, v)
                if isinstance(checked, Rejection):
                    return checked
                values[name] = checked
            if required:
                n_required += 1
        if n_required != cp.n_required:
            return self.missing(cp, values)
        if not values:
            return Rejection(RejectReason.BAD_SHAPE, "'readings' is empty; send at least one field")
        return new_reading(device_id, cp.name, cp.version, cp.measurement, ts_ns, seq, values)

    def unknown_field(self, cp: CompiledProfile, name: object) -> Rejection:
        shown = short(name) if isinstance(name, str) else show(name)
        known = ", ".join(cp.rules)
        return Rejection(
            RejectReason.UNKNOWN_FIELD,
            f"field {shown} is not in profile {cp.label}; known fields: {known}",
            name[:64] if isinstance(name, str) else None,
        )

    def missing(self, cp: CompiledProfile, values: Mapping[str, Value]) -> Rejection:
        missing = [n for n in cp.required if n not in values]
        return Rejection(
            RejectReason.MISSING_FIELD,
            f"required field(s) {', '.join(repr(n) for n in missing)} missing; profile "
            f"{cp.label} requires {', '.join(cp.required)}",
            missing[0],
        )

    def check_value(self, name: str, rule: Rule, v: object) -> Value | Rejection:
        """Type, finiteness and range of one value; the slow, fully explained path."""
        _exact, lo, hi, _required, (kind, _unit, lo_text, hi_text, unit_sfx) = rule
        if kind in (FLOAT, INT):
            if v is True or v is False or not isinstance(v, int | float):
                return Rejection(
                    RejectReason.WRONG_TYPE,
                    f"field {name!r} must be {KIND_WANTS[kind]}, got {show(v)}",
                    name,
                )
            if isinstance(v, float):
                f = float(v)
                if not math.isfinite(f):
                    return Rejection(
                        RejectReason.NOT_FINITE,
                        f"field {name!r} = {f!r} is not a finite number; leave the field out "
                        "when there is no valid value",
                        name,
                    )
                if kind == INT:
                    return Rejection(
                        RejectReason.WRONG_TYPE,
                        f"field {name!r} must be an integer, got {f!r}"
                        + (" (send it without a decimal point)" if f.is_integer() else ""),
                        name,
                    )
                num: int | float = f
            else:
                num = int(v)
            if num < lo:
                return Rejection(
                    RejectReason.OUT_OF_RANGE,
                    f"field {name!r} = {show(num)} is below the minimum {lo_text}{unit_sfx}",
                    name,
                )
            if num > hi:
                return Rejection(
                    RejectReason.OUT_OF_RANGE,
                    f"field {name!r} = {show(num)} is above the maximum {hi_text}{unit_sfx}",
                    name,
                )
            if kind == INT:
                return num
            try:
                return float(num)
            except OverflowError:
                return Rejection(
                    RejectReason.OUT_OF_RANGE,
                    f"field {name!r} = {show(num)} is too large for a float",
                    name,
                )
        if kind == BOOL:
            if v is True or v is False:
                return v
            return Rejection(
                RejectReason.WRONG_TYPE,
                f"field {name!r} must be true or false, got {show(v)}",
                name,
            )
        if not isinstance(v, str):
            return Rejection(RejectReason.WRONG_TYPE, f"field {name!r} must be a string, got {show(v)}", name)
        s = str(v)
        if len(s) > self.max_str:
            return Rejection(
                RejectReason.OUT_OF_RANGE,
                f"field {name!r} is {len(s)} characters long; the limit is {self.max_str}",
                name,
            )
        bad = _CONTROL_RE.search(s)
        if bad is not None:
            return Rejection(
                RejectReason.WRONG_TYPE,
                f"field {name!r} contains a control character or lone surrogate "
                f"(U+{ord(bad.group(0)):04X} at position {bad.start()}); send printable text",
                name,
            )
        return s
