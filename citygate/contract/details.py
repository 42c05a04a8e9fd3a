"""Rejection details: short, safe descriptions of what was sent, and of times and durations.

Off the hot path (they run only once a payload is refused), and they never raise on any
value, so a rejection can always be explained.
"""

from __future__ import annotations

from citygate.contract.rfc3339 import format_rfc3339_ms

_NS = 1_000_000_000


def short(s: str, limit: int = 40) -> str:
    """``s`` quoted, cut to ``limit`` characters."""
    return repr(s) if len(s) <= limit else repr(s[: limit - 3] + "...")


def show(v: object) -> str:
    """A short, safe description of a JSON value for a rejection detail."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        # repr() of a huge int raises ValueError (int max str digits).
        return repr(int(v)) if v.bit_length() <= 128 else f"a {v.bit_length()}-bit integer"
    if isinstance(v, float):
        return repr(float(v))
    if isinstance(v, str):
        return f"the string {short(v)}"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list | tuple):
        return "an array"
    return f"a {type(v).__name__}"


def fmt_ts(ts_ns: int) -> str:
    """A timestamp for an error message: RFC 3339 to the millisecond, or the raw number."""
    try:
        return format_rfc3339_ms(ts_ns)
    except (OverflowError, ValueError, OSError):
        return f"{show(ts_ns)} ns since the epoch"


def fmt_duration(ns: int) -> str:
    """A duration for an error message, in seconds (and days past one)."""
    if ns >= 10**27:  # ns / _NS would overflow a float for the absurd ones
        return "more than 10**18 s"
    s = ns / _NS
    if s >= 86400 * 365 * 1000:
        return f"{s:.3g} s"
    if s >= 86400:
        return f"{s:.0f} s ({s / 86400:.1f} days)"
    return f"{s:.3f} s"
