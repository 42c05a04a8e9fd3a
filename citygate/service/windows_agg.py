"""Sliding windows in device time for the evaluator's aggregates and forecasts.

A window holds ``(ts_ns, value)`` points sorted by device time, only those of the last
``span_ns`` before the newest point, and never more than ``MAX_POINTS`` of them: a device
that floods readings makes its window cover less time (counted in ``truncated``), not the
process grow. At the shipped rules' rates the cap is far away (a 10 minute window of a
noise monitor reporting every minute holds 10 points).

The points live in two typed arrays (int64 times, float64 values), not as Python objects:
16 bytes a point instead of about 120, and nothing for the garbage collector to walk. Held
as tuples in deques, a few million points made every full collection in the cloud's
process walk them all, and ingest, which allocates at every request, slowed with the
windows (bench/RESULTS.md, "The windows and the garbage collector").

Late points (older than the newest) are inserted in place if still inside the window; a
point with the timestamp of one already held is a redelivered duplicate and is skipped,
so at-least-once delivery does not skew an average or a count.
"""

from __future__ import annotations

import bisect
import operator
from array import array
from dataclasses import dataclass, field
from typing import Final

MAX_POINTS: Final = 4096
_NS_PER_H: Final = 3_600_000_000_000
_COMPACT_AT: Final = 256  # dropped points kept at the arrays' head before they are cut off


def _times() -> array[int]:
    return array("q")


def _values() -> array[float]:
    return array("d")


@dataclass(slots=True)
class Window:
    span_ns: int
    truncated: int = 0
    _ts: array[int] = field(default_factory=_times)
    _vs: array[float] = field(default_factory=_values)
    _lo: int = 0  # the oldest point held; those before it are dropped (cut off in bulk)
    # Running sums, so that an average, a count or a trend costs the same at 10 points as at
    # 4,096 (the evaluator asks for them at every reading): x is hours since ``_ref``.
    _ref: int = 0
    _sy: float = 0.0
    _sx: float = 0.0
    _sxx: float = 0.0
    _sxy: float = 0.0
    _drift: int = 0  # points taken out since the sums were last added up afresh

    def __len__(self) -> int:
        return len(self._ts) - self._lo

    def add(self, ts_ns: int, value: float) -> bool:
        """Insert a point; False if it was a duplicate or already outside the window."""
        ts, vs = self._ts, self._vs
        if len(ts) == self._lo:
            if self._lo:
                del ts[:], vs[:]
                self._lo = 0
            self._ref = ts_ns
        if len(ts) == self._lo or ts_ns > ts[-1]:
            ts.append(ts_ns)
            vs.append(value)
        else:
            if ts_ns <= ts[-1] - self.span_ns:
                return False
            i = bisect.bisect_left(ts, ts_ns, self._lo)
            if i < len(ts) and ts[i] == ts_ns:
                return False
            ts.insert(i, ts_ns)
            vs.insert(i, value)
        self._count(ts_ns, value, 1.0)
        self._trim()
        return True

    def _count(self, ts_ns: int, value: float, sign: float) -> None:
        x = (ts_ns - self._ref) / _NS_PER_H
        self._sy += sign * value
        self._sx += sign * x
        self._sxx += sign * x * x
        self._sxy += sign * x * value

    def _drop_oldest(self) -> None:
        self._count(self._ts[self._lo], self._vs[self._lo], -1.0)
        self._lo += 1
        self._drift += 1

    def _trim(self) -> None:
        ts = self._ts
        horizon = ts[-1] - self.span_ns
        while self._lo < len(ts) and ts[self._lo] <= horizon:
            self._drop_oldest()
        while len(ts) - self._lo > MAX_POINTS:
            self._drop_oldest()
            self.truncated += 1
        if self._lo >= _COMPACT_AT and self._lo * 2 >= len(ts):
            del ts[: self._lo], self._vs[: self._lo]  # a memmove, once per so many drops
            self._lo = 0
        if self._drift >= len(self):
            self._resum()  # once per turnover of the window: amortised O(1), no rounding drift

    def _resum(self) -> None:
        self._ref = self._ts[self._lo] if len(self) else 0
        self._sy = self._sx = self._sxx = self._sxy = 0.0
        self._drift = 0
        for t, v in zip(self._ts[self._lo :], self._vs[self._lo :], strict=True):
            self._count(t, v, 1.0)

    def pairs(self) -> list[tuple[int, float]]:
        """The points held, oldest first."""
        return list(zip(self._ts[self._lo :], self._vs[self._lo :], strict=True))

    def latest_value(self) -> float | None:
        return self._vs[-1] if len(self) else None

    def aggregate(self, func: str) -> float | None:
        """avg / min / max of the values held (None when empty), or their count."""
        n = len(self)
        if func == "count":
            return float(n)
        if not n:
            return None
        if func == "avg":
            return self._sy / n
        held = self._vs[self._lo :] if self._lo else self._vs
        if func == "min":
            return min(held)
        if func == "max":
            return max(held)
        raise ValueError(f"unknown aggregate {func!r}")

    def trend(self) -> tuple[float, int, float] | None:
        """Least-squares fit over the points: (slope per ns, t_mean_ns, value at t_mean).

        None with fewer than two distinct timestamps. Times are hours from a point of the
        window, so that nanosecond epochs do not cost the fit its precision.
        """
        n = len(self)
        if n < 2 or self._ts[self._lo] == self._ts[-1]:
            return None
        mx = self._sx / n
        my = self._sy / n
        sxx = self._sxx - self._sx * mx
        if sxx <= 0:
            return None
        sxy = self._sxy - self._sx * my
        slope_per_h = sxy / sxx
        t_mean = self._ref + round(mx * _NS_PER_H)
        return slope_per_h / _NS_PER_H, t_mean, my

    def to_json(self) -> dict[str, list[int] | list[float]]:
        """The points as two lists, times and values (each made in C from its array; pairs,
        one small list each, were most of a checkpoint's time)."""
        return {"ts": self._ts[self._lo :].tolist(), "values": self._vs[self._lo :].tolist()}

    def sums_json(self) -> list[float | int]:
        """The running sums as they are: a restored window then goes on exactly as this one."""
        return [self._ref, self._sy, self._sx, self._sxx, self._sxy, self._drift]

    @classmethod
    def from_json(cls, span_ns: int, data: object, sums: object = None) -> Window:
        """``data`` from :meth:`to_json` (or, from snapshots of format 1, a list of
        ``[ts_ns, value]`` pairs); ``sums`` from :meth:`sums_json` (added up afresh when
        absent: a snapshot written before the sums were kept)."""
        w = cls(span_ns)
        if isinstance(data, dict):
            w._load_arrays(data)
        elif isinstance(data, list):
            for item in data:
                if (
                    not isinstance(item, list)
                    or len(item) != 2
                    or not isinstance(item[0], int)
                    or not isinstance(item[1], int | float)
                ):
                    raise ValueError("a window must be a list of [ts_ns, value] pairs")
                w.add(item[0], float(item[1]))
        else:
            raise ValueError('a window must be {"ts": [...], "values": [...]}')
        if sums is None:
            w._resum()
        elif (
            isinstance(sums, list)
            and len(sums) == 6
            and isinstance(sums[0], int)
            and isinstance(sums[5], int)
            and all(isinstance(x, int | float) for x in sums[1:5])
        ):
            w._ref, w._drift = sums[0], sums[5]
            w._sy, w._sx, w._sxx, w._sxy = (float(x) for x in sums[1:5])
        else:
            raise ValueError("a window's sums must be [ref_ns, sy, sx, sxx, sxy, drift]")
        if len(w):
            w._trim()  # a snapshot is ours, but hold it to the span and the cap all the same
        return w

    def _load_arrays(self, data: dict[object, object]) -> None:
        """Points as :meth:`to_json` wrote them: checked whole (in C), not re-added one by one."""
        ts, vs = data.get("ts"), data.get("values")
        bad = ValueError('a window must be {"ts": [int, ...], "values": [number, ...]}, equally long')
        if not isinstance(ts, list) or not isinstance(vs, list) or len(ts) != len(vs):
            raise bad
        try:
            self._ts, self._vs = array("q", ts), array("d", vs)
        except (TypeError, OverflowError):
            raise bad from None
        if not all(map(operator.lt, self._ts, self._ts[1:])):
            raise ValueError("a window's times must be strictly increasing")
