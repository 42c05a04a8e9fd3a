"""Readings the gateway already holds, per device, so that a device's resend is not stored twice.

A device resends a reading when its confirmation is late (slow broker, a busy
gateway). Storing the resend again would be harmless for the database (the
same point twice is one point) but not for the gateway under load: every
duplicate is written, fsync'd and forwarded again, more load makes confirmations
later still, and devices resend more. :class:`RecentSeqs` remembers, per
device, the sequence numbers committed recently as a few ranges (devices count
up, so a handful of ranges covers thousands of readings). A resend found there
is acknowledged and confirmed again, not stored. A reading counts as held only
if its timestamp is also within the span of its range: a device that reboots and
counts from 0 again sends new readings under old numbers, and those are stored.

Bounded: at most ``max_ranges`` ranges per device (the oldest go first) and
``max_devices`` devices (the least recently seen go first). After a restart it
starts empty; a resend then is stored once more, which the database absorbs.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable


class RecentSeqs:
    def __init__(self, *, max_ranges: int = 64, max_devices: int = 100_000) -> None:
        self.max_ranges = max_ranges
        self.max_devices = max_devices
        # device -> sorted, disjoint, non-adjacent seq ranges [lo, hi] and the span of the
        # readings' timestamps in each, as parallel lists
        self._ranges: OrderedDict[str, _Ranges] = OrderedDict()

    def __contains__(self, key: tuple[str, int, int]) -> bool:
        """Whether (device, seq, ts_ns) is a reading committed recently: same seq, and a
        timestamp within what that seq range held (a device that restarted its counter
        reuses seqs with new timestamps, and those are new readings)."""
        device_id, seq, ts_ns = key
        r = self._ranges.get(device_id)
        if r is None:
            return False
        i = bisect.bisect_right(r.lo, seq) - 1
        return i >= 0 and seq <= r.hi[i] and r.ts_lo[i] <= ts_ns <= r.ts_hi[i]

    def add(self, device_id: str, readings: Iterable[tuple[int, int]]) -> None:
        """Remember committed readings, given as (seq, ts_ns)."""
        r = self._ranges.get(device_id)
        if r is None:
            r = self._ranges[device_id] = _Ranges()
            if len(self._ranges) > self.max_devices:
                self._ranges.popitem(last=False)
        else:
            self._ranges.move_to_end(device_id)
        los, his, ts_los, ts_his = r.lo, r.hi, r.ts_lo, r.ts_hi
        for seq, ts in readings:
            i = bisect.bisect_right(los, seq) - 1
            if i >= 0 and seq <= his[i] and not ts_los[i] <= ts <= ts_his[i]:
                # A seq held with other timestamps: the device counts again from an earlier
                # number (a reboot). Forget its old readings; that can only let a resend of
                # them be stored twice, which the database absorbs.
                r.clear()
                i = -1
            if i >= 0 and seq <= his[i] + 1:  # inside range i, or just after it
                ts_los[i] = min(ts_los[i], ts)
                ts_his[i] = max(ts_his[i], ts)
                if seq > his[i]:
                    his[i] = seq
                    if i + 1 < len(los) and los[i + 1] == seq + 1:  # now touches the next one
                        his[i] = his.pop(i + 1)
                        los.pop(i + 1)
                        ts_los[i] = min(ts_los[i], ts_los.pop(i + 1))
                        ts_his[i] = max(ts_his[i], ts_his.pop(i + 1))
                continue
            if i + 1 < len(los) and los[i + 1] == seq + 1:  # just before range i + 1
                los[i + 1] = seq
                ts_los[i + 1] = min(ts_los[i + 1], ts)
                ts_his[i + 1] = max(ts_his[i + 1], ts)
                continue
            los.insert(i + 1, seq)
            his.insert(i + 1, seq)
            ts_los.insert(i + 1, ts)
            ts_his.insert(i + 1, ts)
        while len(los) > self.max_ranges:  # forget the oldest readings first
            for part in (los, his, ts_los, ts_his):
                part.pop(0)

    def ranges(self, device_id: str) -> list[tuple[int, int]]:
        r = self._ranges.get(device_id)
        return list(zip(r.lo, r.hi, strict=True)) if r else []


class _Ranges:
    __slots__ = ("hi", "lo", "ts_hi", "ts_lo")

    def __init__(self) -> None:
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.ts_lo: list[int] = []
        self.ts_hi: list[int] = []

    def clear(self) -> None:
        for part in (self.lo, self.hi, self.ts_lo, self.ts_hi):
            part.clear()
