"""Sliding windows in device time for the evaluator's aggregates and forecasts.

A window holds ``(ts_ns, value)`` points sorted by device time, only those of the last
``span_ns`` before the newest point, and never more than ``MAX_POINTS`` of them: a device
that floods readings makes its window cover less time (counted in ``truncated``), not the
process grow. At the shipped rules' rates the cap is far away (a 10 minute window of a
noise monitor reporting every minute holds 10 points).

Late points (older than the newest) are inserted in place if still inside the window; a
point with the timestamp of one already held is a redelivered duplicate and is skipped,
so at-least-once delivery does not skew an average or a count.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Final

MAX_POINTS: Final = 4096
_NS_PER_H: Final = 3_600_000_000_000


@dataclass(slots=True)
class Window:
    span_ns: int
    points: deque[tuple[int, float]] = field(default_factory=deque)
    truncated: int = 0
    # Running sums, so that an average, a count or a trend costs the same at 10 points as at
    # 4,096 (the evaluator asks for them at every reading): x is hours since ``_ref``.
    _ref: int = 0
    _sy: float = 0.0
    _sx: float = 0.0
    _sxx: float = 0.0
    _sxy: float = 0.0
    _drift: int = 0  # points taken out since the sums were last added up afresh

    def add(self, ts_ns: int, value: float) -> bool:
        """Insert a point; False if it was a duplicate or already outside the window."""
        pts = self.points
        if not pts:
            self._ref = ts_ns
        if not pts or ts_ns > pts[-1][0]:
            pts.append((ts_ns, value))
        else:
            if ts_ns <= pts[-1][0] - self.span_ns:
                return False
            i = bisect.bisect_left(pts, (ts_ns, float("-inf")))
            if i < len(pts) and pts[i][0] == ts_ns:
                return False
            pts.insert(i, (ts_ns, value))
        self._count(ts_ns, value, 1.0)
        self._trim()
        return True

    def _count(self, ts_ns: int, value: float, sign: float) -> None:
        x = (ts_ns - self._ref) / _NS_PER_H
        self._sy += sign * value
        self._sx += sign * x
        self._sxx += sign * x * x
        self._sxy += sign * x * value

    def _trim(self) -> None:
        pts = self.points
        horizon = pts[-1][0] - self.span_ns
        while pts and pts[0][0] <= horizon:
            self._count(*pts.popleft(), -1.0)
            self._drift += 1
        while len(pts) > MAX_POINTS:
            self._count(*pts.popleft(), -1.0)
            self._drift += 1
            self.truncated += 1
        if self._drift >= len(pts):
            self._resum()  # once per turnover of the window: amortised O(1), no rounding drift

    def _resum(self) -> None:
        self._ref = self.points[0][0] if self.points else 0
        self._sy = self._sx = self._sxx = self._sxy = 0.0
        self._drift = 0
        for t, v in self.points:
            self._count(t, v, 1.0)

    def values(self) -> list[float]:
        return [v for _, v in self.points]

    def aggregate(self, func: str) -> float | None:
        """avg / min / max of the values held (None when empty), or their count."""
        n = len(self.points)
        if func == "count":
            return float(n)
        if not n:
            return None
        if func == "avg":
            return self._sy / n
        if func == "min":
            return min(v for _, v in self.points)
        if func == "max":
            return max(v for _, v in self.points)
        raise ValueError(f"unknown aggregate {func!r}")

    def trend(self) -> tuple[float, int, float] | None:
        """Least-squares fit over the points: (slope per ns, t_mean_ns, value at t_mean).

        None with fewer than two distinct timestamps. Times are hours from a point of the
        window, so that nanosecond epochs do not cost the fit its precision.
        """
        pts = self.points
        n = len(pts)
        if n < 2 or pts[0][0] == pts[-1][0]:
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

    def to_json(self) -> list[tuple[int, float]]:
        """The points as [ts_ns, value] pairs (tuples: JSON arrays to orjson, and copied in C,
        not pair by pair in Python, which was most of a checkpoint's time)."""
        return list(self.points)

    def sums_json(self) -> list[float | int]:
        """The running sums as they are: a restored window then goes on exactly as this one."""
        return [self._ref, self._sy, self._sx, self._sxx, self._sxy, self._drift]

    @classmethod
    def from_json(cls, span_ns: int, data: object, sums: object = None) -> Window:
        """``data`` from :meth:`to_json`; ``sums`` from :meth:`sums_json` (added up afresh
        when absent: a snapshot written before the sums were kept)."""
        if not isinstance(data, list):
            raise ValueError("a window must be a list of [ts_ns, value] pairs")
        w = cls(span_ns)
        for item in data:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], int)
                or not isinstance(item[1], int | float)
            ):
                raise ValueError("a window must be a list of [ts_ns, value] pairs")
            w.add(item[0], float(item[1]))
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
        return w
