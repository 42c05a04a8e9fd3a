"""The ``when`` / ``clear`` expressions of a rule: parsed once at load, judged by the evaluator.

The grammar is deliberately small (one comparison per expression, no and/or), so that a
rule file reads like the alarm it raises and every expression can be checked against the
device profile at load time:

    fill_level > 85                     a field of the reading against a literal
    tilt_alarm == true                  == / != also on bool and string fields
    avg(laeq, 10m) > 55                 avg | min | max | count over a window in device time
    forecast(fill_level, 6h) > 95       a least-squares trend (over the rule's ``window``)
                                        predicts the threshold is crossed within 6h
    silence                             no reading for ``silence_intervals`` x expected interval
    offline                             gateway rules: no heartbeat for ``after``
    backlog_age > 15m                   gateway rules: the age of the oldest unsent reading

Durations are ``30s``, ``10m``, ``2h``, ``1d`` or combinations in that order (``1h30m``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

Op = Literal[">", ">=", "<", "<=", "==", "!="]
AggFunc = Literal["avg", "min", "max", "count"]
Literal_ = float | int | bool | str

NUMERIC_OPS: Final[frozenset[str]] = frozenset({">", ">=", "<", "<="})
_OPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
NS_PER_S: Final = 1_000_000_000
_UNIT_NS: Final = {"d": 86_400 * NS_PER_S, "h": 3600 * NS_PER_S, "m": 60 * NS_PER_S, "s": NS_PER_S}
_DURATION_RE: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
DURATION_HINT: Final = 'a duration is a string like "30s", "10m", "2h", "1d" or "1h30m"'

_FIELD = r"(?P<field>[a-z][a-z0-9_]*)"
_OP = r"(?P<op>>=|<=|==|!=|>|<)"
_THRESHOLD_RE: Final = re.compile(rf"\s*{_FIELD}\s*{_OP}\s*(?P<value>.*?)\s*")
_AGG_RE: Final = re.compile(
    rf"\s*(?P<func>avg|min|max|count|forecast)\s*\(\s*{_FIELD}\s*,\s*(?P<dur>[0-9a-z]+)\s*\)"
    rf"\s*{_OP}\s*(?P<value>.*?)\s*"
)
_NUMBER_RE: Final = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_STRING_RE: Final = re.compile(r'"([^"\\\x00-\x1f]*)"|\'([^\'\\\x00-\x1f]*)\'')


def parse_duration(text: str) -> int:
    """``"10m"`` -> nanoseconds; ValueError naming the accepted forms."""
    m = _DURATION_RE.fullmatch(text.strip()) if text.strip() else None
    if m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration; {DURATION_HINT}")
    return sum(int(g) * _UNIT_NS[u] for g, u in zip(m.groups(), "dhms", strict=True) if g)


def format_duration(ns: int) -> str:
    """Nanoseconds -> ``"1h30m"`` (whole seconds; ``"0s"`` for zero, ``"1.5s"`` below a second)."""
    if ns < NS_PER_S and ns != 0:
        return f"{ns / NS_PER_S:g}s"
    secs = ns // NS_PER_S
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            parts.append(f"{secs // size}{unit}")
            secs %= size
    return "".join(parts) or "0s"


def format_value(v: float | int | bool | str | None) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.6g}"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def compare(op: Op, a: object, b: object) -> bool:
    return bool(_OPS[op](a, b))


@dataclass(frozen=True, slots=True)
class Threshold:
    """``field op value`` on the reading itself."""

    field: str
    op: Op
    value: Literal_

    def describe(self) -> str:
        return f"{self.field} {self.op} {format_value(self.value)}"


@dataclass(frozen=True, slots=True)
class Aggregate:
    """``func(field, window) op value`` over the readings of the last ``window_ns`` of device time."""

    func: AggFunc
    field: str
    window_ns: int
    op: Op
    value: float

    def describe(self) -> str:
        head = f"{self.func}({self.field}, {format_duration(self.window_ns)})"
        return f"{head} {self.op} {format_value(self.value)}"


@dataclass(frozen=True, slots=True)
class Forecast:
    """``forecast(field, horizon) op value``: the trend over ``window_ns`` crosses within ``horizon_ns``.

    ``window_ns`` comes from the rule's ``window`` key (0 until the rule is compiled).
    """

    field: str
    horizon_ns: int
    op: Op
    value: float
    window_ns: int = 0

    def describe(self) -> str:
        return (
            f"forecast({self.field}, {format_duration(self.horizon_ns)}) {self.op} {format_value(self.value)}"
        )


@dataclass(frozen=True, slots=True)
class Silence:
    def describe(self) -> str:
        return "silence"


@dataclass(frozen=True, slots=True)
class Offline:
    def describe(self) -> str:
        return "offline"


@dataclass(frozen=True, slots=True)
class Backlog:
    """``backlog_age op duration`` on a gateway heartbeat's oldest-unsent age."""

    op: Op
    seconds: float

    def describe(self) -> str:
        return f"backlog_age {self.op} {format_duration(int(self.seconds * NS_PER_S))}"


ValueCondition = Threshold | Aggregate | Forecast
Condition = Threshold | Aggregate | Forecast | Silence | Offline | Backlog


def parse_literal(text: str) -> Literal_:
    """A literal on the right of an operator: a number, ``true``/``false`` or a quoted string."""
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER_RE.fullmatch(text):
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(f"{text!r} is not a finite number")
        return v
    m = _STRING_RE.fullmatch(text)
    if m is not None:
        return m.group(1) if m.group(1) is not None else m.group(2)
    raise ValueError(
        f'{text!r} is not a value: write a number (85, 2.5), true/false, or a quoted string ("A1")'
    )


def parse_condition(text: str) -> Condition:
    """Parse one expression; ValueError with a message that says what is accepted."""
    stripped = text.strip()
    if stripped == "silence":
        return Silence()
    if stripped == "offline":
        return Offline()
    m = _AGG_RE.fullmatch(text)
    if m is not None:
        func, field, op = m.group("func"), m.group("field"), cast(Op, m.group("op"))
        dur = parse_duration(m.group("dur"))
        if dur <= 0:
            raise ValueError(f"the window of {func}() must be longer than 0s")
        value = parse_literal(m.group("value"))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{func}() is compared with a number, not {format_value(value)}")
        if func == "forecast":
            if op not in NUMERIC_OPS:
                raise ValueError("forecast() predicts a crossing: use >, >=, < or <=, not " + op)
            return Forecast(field=field, horizon_ns=dur, op=op, value=float(value))
        return Aggregate(func=cast(AggFunc, func), field=field, window_ns=dur, op=op, value=float(value))
    m = _THRESHOLD_RE.fullmatch(text)
    if m is not None:
        field, op, raw = m.group("field"), cast(Op, m.group("op")), m.group("value")
        if field == "backlog_age":
            if op not in NUMERIC_OPS:
                raise ValueError("backlog_age is compared with >, >=, < or <=")
            return Backlog(op=op, seconds=parse_duration(raw) / NS_PER_S)
        return Threshold(field=field, op=op, value=parse_literal(raw))
    raise ValueError(
        f"cannot parse {text!r}: expected 'field op value' (ops > >= < <= == !=), "
        "'avg|min|max|count(field, 10m) op value', 'forecast(field, 6h) op value', "
        "'silence', 'offline' or 'backlog_age > 15m'"
    )


def _interval(op: Op, v: float) -> tuple[float, bool, float, bool]:
    """The set ``{x : x op v}`` as (lo, lo_closed, hi, hi_closed)."""
    inf = math.inf
    return {
        ">": (v, False, inf, False),
        ">=": (v, True, inf, False),
        "<": (-inf, False, v, False),
        "<=": (-inf, False, v, True),
    }[op]


def overlap(when: Condition, clear: Condition) -> float | None:
    """A value satisfying both ``when`` and ``clear`` on the same quantity, or None.

    Only judged for numeric comparisons of the same quantity (same field, same aggregate
    and window): such a pair would open and clear on the same value, i.e. flap.
    """
    if type(when) is not type(clear):
        return None
    if isinstance(when, Threshold) and isinstance(clear, Threshold):
        if (
            when.field != clear.field
            or isinstance(when.value, bool | str)
            or isinstance(clear.value, bool | str)
        ):
            return None
        a, b = (when.op, float(when.value)), (clear.op, float(clear.value))
    elif isinstance(when, Aggregate) and isinstance(clear, Aggregate):
        if (when.func, when.field, when.window_ns) != (clear.func, clear.field, clear.window_ns):
            return None
        a, b = (when.op, when.value), (clear.op, clear.value)
    elif isinstance(when, Backlog) and isinstance(clear, Backlog):
        a, b = (when.op, when.seconds), (clear.op, clear.seconds)
    else:
        return None
    if a[0] not in NUMERIC_OPS or b[0] not in NUMERIC_OPS:
        return None
    lo1, lc1, hi1, hc1 = _interval(a[0], a[1])
    lo2, lc2, hi2, hc2 = _interval(b[0], b[1])
    lo, lc = (lo1, lc1) if (lo1, not lc1) > (lo2, not lc2) else (lo2, lc2)
    hi, hc = (hi1, hc1) if (hi1, hc1) < (hi2, hc2) else (hi2, hc2)
    if lo < hi:
        if math.isinf(lo):
            return hi - 1.0 if not math.isinf(hi) else 0.0
        if math.isinf(hi):
            return lo + 1.0
        return (lo + hi) / 2
    if lo == hi and lc and hc:
        return lo
    return None
