"""Readings the gateway already holds, per device, so that a device's resend is not stored twice.

A device resends a reading when its confirmation is late (slow broker, a busy
gateway). Storing the resend again would be harmless for the database (the
same point twice is one point) but not for the gateway under load: every
duplicate is written, fsync'd and forwarded again, more load makes confirmations
later still, and devices resend more. :class:`RecentSeqs` remembers, per
device, the sequence numbers committed recently as a few ranges (devices count
up, so a handful of ranges covers thousands of readings). A resend found there
is acknowledged and confirmed again, not stored.

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
        # device -> sorted, disjoint, non-adjacent [lo, hi] ranges, as two parallel lists
        self._ranges: OrderedDict[str, tuple[list[int], list[int]]] = OrderedDict()

    def __contains__(self, key: tuple[str, int]) -> bool:
        device_id, seq = key
        r = self._ranges.get(device_id)
        if r is None:
            return False
        los, his = r
        i = bisect.bisect_right(los, seq) - 1
        return i >= 0 and seq <= his[i]

    def add(self, device_id: str, seqs: Iterable[int]) -> None:
        r = self._ranges.get(device_id)
        if r is None:
            r = self._ranges[device_id] = ([], [])
            if len(self._ranges) > self.max_devices:
                self._ranges.popitem(last=False)
        else:
            self._ranges.move_to_end(device_id)
        los, his = r
        for seq in seqs:
            i = bisect.bisect_right(los, seq) - 1
            if i >= 0 and seq <= his[i] + 1:  # inside range i, or just after it
                if seq > his[i]:
                    his[i] = seq
                    if i + 1 < len(los) and los[i + 1] == seq + 1:  # now touches the next one
                        his[i] = his.pop(i + 1)
                        los.pop(i + 1)
                continue
            if i + 1 < len(los) and los[i + 1] == seq + 1:  # just before range i + 1
                los[i + 1] = seq
                continue
            los.insert(i + 1, seq)
            his.insert(i + 1, seq)
        while len(los) > self.max_ranges:  # forget the oldest readings first
            los.pop(0)
            his.pop(0)

    def ranges(self, device_id: str) -> list[tuple[int, int]]:
        los, his = self._ranges.get(device_id, ([], []))
        return list(zip(los, his, strict=True))
