"""Readings the gateway already holds, per device, so that a device's resend is not stored twice.

A device resends a reading when its confirmation is late (slow broker, a busy
gateway). Storing the resend again would be harmless for the database (the
same point twice is one point) but not for the gateway under load: every
duplicate is written, fsync'd and forwarded again, more load makes confirmations
later still, and devices resend more. :class:`RecentSeqs` remembers, per
device, the readings committed recently, and a resend found there is confirmed
again, not stored.

**Exact identity.** A reading is taken for a resend only if the same device
sent the same seq with the same timestamp (ns) before. A device that reboots
counts from 0 again and sends new readings under old numbers; without a
battery-backed clock its clock may also be behind, so its new timestamps fall
among the old ones. A looser test (the seq alone, or a timestamp within the
span of the old readings) confirmed such readings without storing them: data
lost. A resend carries the original timestamp, so nothing weaker is needed.

**Layout.** Per device, sorted disjoint seq ranges (devices count up by 1, so a
few ranges cover thousands of readings); per range an ``array('q')`` with the
exact timestamp of each seq (index ``seq - lo``): 8 bytes a reading, no Python
object per reading. A lookup is one bisection over the device's ranges.

**Reboots.** Adding a held seq with another timestamp means the device counts
again (a reboot): its old readings are forgotten, those added before in the
same call are kept, and a seq given twice in one call keeps the last timestamp.

**Bounds** (defaults in parentheses). Per device: ``max_readings_per_device``
(2,048) readings in ``max_ranges`` (64) ranges, and an even share of the memory
budget, ``max_bytes / devices``; the lowest seqs go first (devices count up:
the oldest). A device past one of these is cut to 15/16 of it, so that the cut
(it moves an array) runs once in many calls, not on every one. In all:
``max_devices`` (10,000) devices and ``max_bytes`` (6 MiB), as estimated by
``estimated_bytes``: 9 bytes a reading (8 and the arrays' spare room),
``RANGE_BYTES`` a range, ``DEVICE_BYTES`` plus its id's length a device. Past
those, the least recently added devices are forgotten first. So 300 devices
counting up keep their newest 1,920 to 2,048 readings each, 1,000 devices about
580, and about 9,000 devices one each (the budget binds before ``max_devices``).
Worst case, measured with tracemalloc (CPython 3.11, 64-bit) on the worst shapes
(10,000 to 30,000 devices of one reading, 64-character ids, every other seq,
ranges of two, shuffled batches of 2,000): 6.2 MB held after each ``add``, 6.6 MB
at the peak of one (the caller's batch included).

**Forgetting is safe**: a resend of a forgotten reading is stored once more,
which the database absorbs (same point identity), as after a restart of the
gateway (this starts empty). Nothing is ever reported as held that was not
added with exactly that (seq, timestamp). A reboot whose new seqs are still
below every seq held is not recognised as one until a seq collides; until then
its readings are the device's lowest and are trimmed first, at worst stored
once more on a resend.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Sequence

# Estimated bytes (tracemalloc, CPython 3.11, 64-bit) beyond 9 a reading (8 and the
# arrays' spare room): a range (an array object, its first and last seq, three list slots);
# a device (its entry, the _Device, its three lists, its id's str object less the characters).
RANGE_BYTES = 200
DEVICE_BYTES = 480


class RecentSeqs:
    def __init__(
        self,
        *,
        max_readings_per_device: int = 2048,
        max_ranges: int = 64,
        max_devices: int = 10_000,
        max_bytes: int = 6 * 1024 * 1024,
    ) -> None:
        if min(max_readings_per_device, max_ranges, max_devices, max_bytes) < 1:
            raise ValueError("RecentSeqs bounds must be positive")
        self.max_readings_per_device = max_readings_per_device
        self.max_ranges = max_ranges
        self.max_devices = max_devices
        self.max_bytes = max_bytes
        # device -> its readings; least recently added first
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        # all devices together: their estimated fixed bytes, ranges and readings
        self._fixed = 0
        self._ranges = 0
        self._count = 0

    def __contains__(self, key: tuple[str, int, int]) -> bool:
        """Whether (device, seq, ts_ns) was added: exactly this seq with exactly this timestamp."""
        device_id, seq, ts_ns = key
        d = self._devices.get(device_id)
        if d is None:
            return False
        i = bisect_right(d.lo, seq) - 1
        return i >= 0 and seq <= d.hi[i] and d.ts[i][seq - d.lo[i]] == ts_ns

    def add(self, device_id: str, readings: Iterable[tuple[int, int]]) -> None:
        """Remember committed readings, given as (seq, ts_ns)."""
        batch = readings if isinstance(readings, (list, tuple)) else list(readings)
        devices = self._devices
        d = devices.get(device_id)
        if d is None:
            d = devices[device_id] = _Device(DEVICE_BYTES + len(device_id))
            self._fixed += d.fixed
        else:
            devices.move_to_end(device_id)
        count, ranges = d.count, len(d.lo)
        try:
            if not d.insert(batch, overwrite=False):
                # A seq held with another timestamp: the device counts again (a reboot). Forget
                # its old readings (at worst a late resend of one is stored once more) and add
                # this call's readings to an empty device.
                d.clear()
                d.insert(batch, overwrite=True)
        except OverflowError:  # a timestamp beyond int64 (the validator refuses those): forget
            d.clear()
        share = self.max_bytes // len(devices)  # an even share of the budget, or its newest reading
        if (
            d.count > self.max_readings_per_device
            or len(d.lo) > self.max_ranges
            or d.fixed + RANGE_BYTES * len(d.lo) + 9 * d.count > share  # _estimate()
        ):
            d.trim(self.max_readings_per_device, self.max_ranges, share)
        if d.lo:
            self._count += d.count - count
            self._ranges += len(d.lo) - ranges
        else:  # nothing to hold
            del devices[device_id]
            self._fixed -= d.fixed
            self._count -= count
            self._ranges -= ranges
        while (
            len(devices) > self.max_devices
            or self._fixed + RANGE_BYTES * self._ranges + 9 * self._count > self.max_bytes
        ):
            _, gone = devices.popitem(last=False)  # the least recently added
            self._fixed -= gone.fixed
            self._count -= gone.count
            self._ranges -= len(gone.lo)

    def ranges(self, device_id: str) -> list[tuple[int, int]]:
        """The device's seq ranges held, [(first, last), ...] in order."""
        d = self._devices.get(device_id)
        return list(zip(d.lo, d.hi, strict=True)) if d else []

    def reading_count(self) -> int:
        """The number of readings remembered, all devices together."""
        return self._count

    def device_count(self) -> int:
        return len(self._devices)

    @property
    def estimated_bytes(self) -> int:
        """The memory held as the bounds count it (within a few % of tracemalloc's count)."""
        return _estimate(self._fixed, self._ranges, self._count)


def _estimate(fixed: int, ranges: int, readings: int) -> int:
    return fixed + RANGE_BYTES * ranges + 9 * readings


class _Device:
    """One device's readings: seq ``lo[i] + k`` (up to ``hi[i]``) has timestamp ``ts[i][k]``;
    the ranges sorted, disjoint and not adjacent (adjacent ones are merged)."""

    __slots__ = ("count", "fixed", "hi", "lo", "ts")

    def __init__(self, fixed: int) -> None:
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.ts: list[array[int]] = []
        self.count = 0  # readings held
        self.fixed = fixed  # estimated bytes of the device without its ranges and readings

    def clear(self) -> None:
        self.lo.clear()
        self.hi.clear()
        self.ts.clear()
        self.count = 0

    def insert(self, batch: Sequence[tuple[int, int]], *, overwrite: bool) -> bool:
        """Add the readings. A seq held with another timestamp: overwrite it, or stop and
        return False (the readings before it added)."""
        los, his, arrs = self.lo, self.hi, self.ts
        n = self.count
        for seq, ts in batch:
            if his:  # the common case first: the device counts up
                last = his[-1]
                if seq == last + 1:
                    arrs[-1].append(ts)
                    his[-1] = seq
                    n += 1
                    continue
                if seq > last:
                    arrs.append(array("q", (ts,)))
                    los.append(seq)
                    his.append(seq)
                    n += 1
                    continue
            i = bisect_right(los, seq) - 1
            if i >= 0 and seq <= his[i] + 1:
                a = arrs[i]
                if seq <= his[i]:  # held
                    if a[seq - los[i]] != ts:
                        if not overwrite:
                            self.count = n
                            return False
                        a[seq - los[i]] = ts
                    continue
                # just after range i, not the last one (that case is handled above)
                a.append(ts)
                n += 1
                if los[i + 1] == seq + 1:  # now touches the next one: merge
                    a.extend(arrs.pop(i + 1))
                    his[i] = his.pop(i + 1)
                    del los[i + 1]
                else:
                    his[i] = seq
                continue
            if i + 1 < len(los) and los[i + 1] == seq + 1:  # just before range i + 1
                arrs[i + 1].insert(0, ts)
                los[i + 1] = seq
            else:
                arrs.insert(i + 1, array("q", (ts,)))
                los.insert(i + 1, seq)
                his.insert(i + 1, seq)
            n += 1
        self.count = n
        return True

    def trim(self, max_readings: int, max_ranges: int, max_bytes: int) -> None:
        """Forget the lowest seqs until at most ``max_readings`` in ``max_ranges`` ranges and
        ``max_bytes`` (estimated) remain, and 1/16 less of readings and bytes: called each time
        a bound is passed, it then runs once in many calls (cutting the start of an array moves
        the rest). The newest reading (the highest seq) stays."""
        los, arrs = self.lo, self.ts
        if not los:
            return
        max_readings -= max_readings // 16
        max_bytes -= max_bytes // 16
        n, count = len(los), self.count
        k = 0  # the lowest ranges to forget whole
        while True:
            size = len(arrs[k])
            over = _estimate(self.fixed, n - k, count) - max_bytes
            excess = max(count - max_readings, -(-over // 9))  # 9 bytes a reading
            if k < n - 1 and (n - k > max_ranges or excess >= size):
                count -= size
                k += 1
            else:
                break
        if k:
            del los[:k], self.hi[:k], arrs[:k]
        excess = min(excess, size - 1)  # then from the start of the next range
        if excess > 0:
            del arrs[0][:excess]
            los[0] += excess
            count -= excess
        self.count = count
