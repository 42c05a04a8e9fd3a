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

    def add(self, ts_ns: int, value: float) -> bool:
        """Insert a point; False if it was a duplicate or already outside the window."""
        pts = self.points
        if not pts or ts_ns > pts[-1][0]:
            pts.append((ts_ns, value))
        else:
            if ts_ns <= pts[-1][0] - self.span_ns:
                return False
            i = bisect.bisect_left(pts, (ts_ns, float("-inf")))
            if i < len(pts) and pts[i][0] == ts_ns:
                return False
            pts.insert(i, (ts_ns, value))
        self._trim()
        return True

    def _trim(self) -> None:
        pts = self.points
        horizon = pts[-1][0] - self.span_ns
        while pts and pts[0][0] <= horizon:
            pts.popleft()
        while len(pts) > MAX_POINTS:
            pts.popleft()
            self.truncated += 1

    def values(self) -> list[float]:
        return [v for _, v in self.points]

    def aggregate(self, func: str) -> float | None:
        """avg / min / max of the values held (None when empty), or their count."""
        if func == "count":
            return float(len(self.points))
        vals = self.values()
        if not vals:
            return None
        if func == "avg":
            return sum(vals) / len(vals)
        if func == "min":
            return min(vals)
        if func == "max":
            return max(vals)
        raise ValueError(f"unknown aggregate {func!r}")

    def trend(self) -> tuple[float, int, float] | None:
        """Least-squares fit over the points: (slope per ns, t_mean_ns, value at t_mean).

        None with fewer than two distinct timestamps. Times are taken relative to the
        mean so that nanosecond epochs do not cost the fit its precision.
        """
        pts = self.points
        n = len(pts)
        if n < 2 or pts[0][0] == pts[-1][0]:
            return None
        t0 = sum(t for t, _ in pts) // n
        xs = [(t - t0) / _NS_PER_H for t, _ in pts]
        ys = [v for _, v in pts]
        mx = sum(xs) / n
        my = sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx == 0:
            return None
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        slope_per_h = sxy / sxx
        t_mean = t0 + round(mx * _NS_PER_H)
        return slope_per_h / _NS_PER_H, t_mean, my

    def to_json(self) -> list[list[float | int]]:
        return [[t, v] for t, v in self.points]

    @classmethod
    def from_json(cls, span_ns: int, data: object) -> Window:
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
        return w
