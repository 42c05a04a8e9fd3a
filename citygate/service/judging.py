"""Judging one condition on one reading or heartbeat: does it hold, with which value, and why.

Pure functions used by :mod:`citygate.service.evaluator`. A condition that cannot be
judged (the field is missing from the reading, the window does not yet span its length,
a forecast has fewer than two points) is ``holds=None``: the evaluator then leaves the
rule's state as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from citygate.service.conditions import (
    NS_PER_S,
    Aggregate,
    Backlog,
    Condition,
    Forecast,
    Threshold,
    compare,
    format_duration,
    format_value,
)
from citygate.service.windows_agg import Window

FieldValue = float | int | bool | str


@dataclass(frozen=True, slots=True)
class Judgement:
    holds: bool | None  # None: cannot be judged on this reading (field missing, window not warm)
    value: float | None = None
    text: str = ""  # the condition with its value, for the detail sentence
    forecast_at_ns: int | None = None


UNKNOWN: Final = Judgement(None)


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS_PER_S, tz=UTC).isoformat().replace("+00:00", "Z")


def numeric(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _kind(v: object) -> type:
    return bool if isinstance(v, bool) else str if isinstance(v, str) else float


def judge(
    cond: Condition,
    first_ts: int,
    windows: Mapping[tuple[str, int], Window],
    ts: int,
    fields: Mapping[str, FieldValue],
) -> Judgement:
    """Judge a reading condition at the reading ``fields`` of time ``ts``."""
    if isinstance(cond, Threshold):
        raw = fields.get(cond.field)
        if raw is None:
            return UNKNOWN
        if _kind(raw) != _kind(cond.value):
            return UNKNOWN  # a value of the wrong type: validation upstream should not let it by
        text = f"{cond.field} {format_value(raw)} {cond.op} {format_value(cond.value)}"
        return Judgement(compare(cond.op, raw, cond.value), numeric(raw), text)
    if isinstance(cond, Aggregate):
        if ts - first_ts < cond.window_ns:
            return UNKNOWN
        win = windows.get((cond.field, cond.window_ns))
        agg = (
            0.0 if win is None and cond.func == "count" else None if win is None else win.aggregate(cond.func)
        )
        if agg is None:
            return UNKNOWN
        head = f"{cond.func}({cond.field}, {format_duration(cond.window_ns)})"
        text = f"{head} {format_value(agg)} {cond.op} {format_value(cond.value)}"
        return Judgement(compare(cond.op, agg, cond.value), agg, text)
    if isinstance(cond, Forecast):
        return _judge_forecast(cond, first_ts, windows, ts, fields)
    raise AssertionError(f"not a reading condition: {cond!r}")  # the loader refuses these


def _judge_forecast(
    cond: Forecast,
    first_ts: int,
    windows: Mapping[tuple[str, int], Window],
    ts: int,
    fields: Mapping[str, FieldValue],
) -> Judgement:
    win = windows.get((cond.field, cond.window_ns))
    latest = None if win is None else win.latest_value()
    if win is None or latest is None or ts - first_ts < cond.window_ns:
        return UNKNOWN
    fit = win.trend()
    if fit is None:
        return UNKNOWN
    slope, t_mean, y_mean = fit
    cur = numeric(fields.get(cond.field))
    last = cur if cur is not None else latest
    rate = f"{slope * 3600 * NS_PER_S:+.3g}/h"
    head = f"forecast({cond.field}, {format_duration(cond.horizon_ns)}): {format_value(last)}, {rate}"
    if compare(cond.op, last, cond.value):
        text = f"{head}, already {cond.op} {format_value(cond.value)}"
        return Judgement(True, last, text, ts)
    rising = cond.op in (">", ">=")
    if slope == 0 or (slope > 0) != rising:
        return Judgement(False, last, f"{head}, not heading {cond.op} {format_value(cond.value)}")
    # Where the fitted line meets the threshold, relative to this reading.
    offset = (t_mean - ts) + (cond.value - y_mean) / slope
    if offset > cond.horizon_ns:
        return Judgement(False, last, f"{head}, not {cond.op} {format_value(cond.value)} within the horizon")
    at = ts + max(0, int(offset))
    text = f"{head}, predicted {cond.op} {format_value(cond.value)} at {iso(at)}"
    return Judgement(True, last, text, at)


def negate(j: Judgement) -> Judgement:
    if j.holds is None:
        return j
    return Judgement(not j.holds, j.value, j.text if j.holds else f"no longer: {j.text}")


def judge_backlog(cond: Condition | None, age_s: float) -> Judgement:
    assert isinstance(cond, Backlog)
    age, limit = format_duration(int(age_s * NS_PER_S)), format_duration(int(cond.seconds * NS_PER_S))
    text = f"backlog_age {age} {cond.op} {limit}"
    return Judgement(compare(cond.op, age_s, cond.seconds), age_s, text)
