"""One simulated device's memory: keep, resend, bound. Plain code, no I/O.

A real sensor with end-to-end confirmation (docs/ARCHITECTURE.md, guarantee 1) keeps each
reading until the gateway confirms it on ``devices/{id}/ack`` (exact seq
ranges, :mod:`citygate.contract.acks`), resends what is
unconfirmed after a timeout and after every reconnect, and has a small memory:
when it is full the oldest reading is dropped and counted. Without
confirmation (``confirm=False``) the device behaves like a plain QoS1 client:
it keeps a reading only until the broker's PUBACK, and resends after a
reconnect what was not PUBACKed.

The fleet runner drives this class from its network callbacks; tests drive it
directly, with explicit clocks.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from citygate.contract.profiles import DeviceProfile
from citygate.simulators.faults import FaultKind
from citygate.simulators.signals import Value

_RECENT_TS = 4096  # how many recent timestamps are kept to make every ts distinct


@dataclass(slots=True)
class Kept:
    """A reading the device still holds."""

    seq: int
    ts_ms: int
    payload: bytes
    sent_at: float | None = None  # monotonic seconds of the last send; None: not sent since (re)connect
    sends: int = 0


@dataclass(slots=True)
class DeviceCounters:
    produced: int = 0  # valid readings made (ledger: produced)
    faulty: int = 0  # deliberately bad payloads made (not kept)
    sent: int = 0  # first sends of kept readings
    resent: int = 0  # sends after the first
    pubacks: int = 0
    confirmed: int = 0  # let go after the gateway's ack (or PUBACK without confirmation)
    dropped: int = 0  # let go because the memory was full


def encode(seq: int, ts_ms: int, readings: Mapping[str, Value]) -> bytes:
    """The contract payload: ``{"ts": <epoch ms>, "seq": <int>, "readings": {...}}``."""
    return orjson.dumps({"ts": ts_ms, "seq": seq, "readings": readings})


def _bad_field(profile: DeviceProfile) -> tuple[str, float] | None:
    """A numeric field and a value beyond its range (required fields first)."""
    ranked = sorted(profile.fields.items(), key=lambda kv: (not kv[1].required, kv[0]))
    for name, spec in ranked:
        if spec.type not in {"float", "int"}:
            continue
        if spec.max is not None:
            above = spec.max * 10 + 1 if spec.max > 0 else spec.max + 1000
            return name, float(above) if spec.type == "float" else float(int(above))
        if spec.min is not None:
            return name, float(spec.min - 1000)
    return None


def bad_payload(
    kind: FaultKind, seq: int, ts_ms: int, readings: Mapping[str, Value], profile: DeviceProfile
) -> bytes:
    """A payload the gateway must reject, for the payload faults that replace a reading."""
    good = encode(seq, ts_ms, readings)
    if kind is FaultKind.MALFORMED:
        return good[: max(1, len(good) // 2)]
    bad = _bad_field(profile)
    if bad is None:  # a profile without numeric fields: only malformed is possible
        return good[: max(1, len(good) // 2)]
    name, above = bad
    if kind is FaultKind.OUT_OF_RANGE:
        value = int(above) if profile.fields[name].type == "int" else above
        return encode(seq, ts_ms, {**readings, name: value})
    if kind is FaultKind.NAN:
        rest = {k: v for k, v in readings.items() if k != name}
        body = orjson.dumps(rest)[1:]  # '"a":1,...}' or '}'
        sep = b"," if body != b"}" else b""
        inner = b'{"' + name.encode() + b'":NaN' + sep + body
        return b'{"ts":%d,"seq":%d,"readings":%s}' % (ts_ms, seq, inner)
    raise ValueError(f"{kind} does not replace a payload")


class DeviceCore:
    """Sequence numbers, timestamps and the bounded memory of one device."""

    __slots__ = (
        "_kept",
        "_last_ts",
        "_recent",
        "_recent_set",
        "_scan_at",
        "_unsent",
        "boot",
        "clock_offset_ms",
        "confirm",
        "counters",
        "device_id",
        "memory",
        "next_seq",
        "resend_after_s",
        "track_recent",
    )

    def __init__(
        self,
        device_id: str,
        *,
        memory: int = 1000,
        confirm: bool = True,
        resend_after_s: float = 10.0,
        next_seq: int = 0,
        last_ts_ms: int = -1,
        track_recent: bool = True,
    ) -> None:
        if memory < 1:
            raise ValueError("a device must be able to keep at least one reading")
        self.device_id = device_id
        self.memory = memory
        self.confirm = confirm
        self.resend_after_s = resend_after_s
        self.next_seq = next_seq
        self.counters = DeviceCounters()
        self._kept: dict[int, Kept] = {}  # insertion order == seq order
        self._last_ts = last_ts_ms
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()
        # Only a device whose clock can jump (a clock_skew fault) can repeat a timestamp;
        # the others need no history (it would cost ~300 MB for 1,000 devices).
        self.track_recent = track_recent
        self._unsent: deque[int] = deque()  # seqs not sent since keep / (re)connect / failure
        self._scan_at = 0.0  # no reading can be overdue before this (monotonic s)
        self.boot = 0  # restarts so far (the ledger tells readings of different boots apart)
        self.clock_offset_ms = 0  # the device's clock minus the real one (behind after a reboot)

    # -- time and sequence ----------------------------------------------------------

    def stamp(self, now_ms: int, skew_ms: int = 0) -> int:
        """A timestamp for a new reading: distinct from every recent one of this device.

        Normal readings also never go backwards; a skewed one (a faulty clock)
        may, but still never repeats a timestamp the device used recently.
        """
        if skew_ms == 0:
            ts = max(now_ms, self._last_ts + 1)
            if not self.track_recent:
                self._last_ts = ts
                return ts
        else:
            ts = now_ms + skew_ms
        while ts in self._recent_set:
            ts += 1
        if skew_ms == 0:
            self._last_ts = ts
        self._remember(ts)
        return ts

    def clock_ms(self, real_ms: int) -> int:
        """What the device's own clock reads at real time ``real_ms``."""
        return real_ms + self.clock_offset_ms

    def reboot(self, behind_ms: int) -> list[Kept]:
        """The device restarts: its memory is gone (returned, oldest first: let go unconfirmed),
        it counts from seq 0 again, and its clock comes back ``behind_ms`` behind where it was.

        Timestamps stay distinct from every recent one of the earlier boots (a reading at the
        same timestamp would overwrite an old one in the database): a rebooted device tracks
        them from now on, even if it did not before (then only the new boot's are known).
        """
        lost = list(self._kept.values())
        self._kept.clear()
        self._unsent.clear()
        self.counters.dropped += len(lost)
        self.next_seq = 0
        self._last_ts = -1
        self.clock_offset_ms -= behind_ms
        self.boot += 1
        self.track_recent = True
        return lost

    def _remember(self, ts: int) -> None:
        self._recent.append(ts)
        self._recent_set.add(ts)
        if len(self._recent) > _RECENT_TS:
            self._recent_set.discard(self._recent.popleft())

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    # -- the memory ---------------------------------------------------------------------

    def keep(self, seq: int, ts_ms: int, payload: bytes) -> list[Kept]:
        """Keep a new reading; returns what had to be dropped to make room (oldest first)."""
        self.counters.produced += 1
        self._kept[seq] = Kept(seq, ts_ms, payload)
        self._unsent.append(seq)
        dropped: list[Kept] = []
        while len(self._kept) > self.memory:
            oldest = next(iter(self._kept))
            dropped.append(self._kept.pop(oldest))
        self.counters.dropped += len(dropped)
        return dropped

    def produce(self, ts_ms: int, readings: Mapping[str, Value]) -> tuple[Kept, list[Kept]]:
        """Make and keep a valid reading; returns it and whatever was dropped for it."""
        seq = self.take_seq()
        payload = encode(seq, ts_ms, readings)
        dropped = self.keep(seq, ts_ms, payload)
        return self._kept[seq], dropped

    @property
    def held(self) -> int:
        return len(self._kept)

    def held_readings(self) -> list[Kept]:
        return list(self._kept.values())

    def take_due(self, now: float, limit: int | None = None) -> list[Kept]:
        """Readings to send now, marked as sent: those not sent since the last
        (re)connect and, with confirmation, those unconfirmed for ``resend_after_s``.

        Cheap when nothing is overdue: unsent readings sit in a queue, and the
        memory is scanned for overdue ones only when the earliest can be due.
        """
        cap = math.inf if limit is None else limit
        due: list[Kept] = []
        kept = self._kept
        unsent = self._unsent
        while unsent and len(due) < cap:
            k = kept.get(unsent.popleft())
            if k is not None and k.sent_at is None:
                k.sent_at = now  # claimed; counted below
                due.append(k)
        if self.confirm and now >= self._scan_at and len(due) < cap:
            deadline = now - self.resend_after_s
            earliest = math.inf
            for k in kept.values():
                sent_at = k.sent_at
                if sent_at is None or sent_at == now:
                    continue
                if sent_at <= deadline and len(due) < cap:
                    k.sent_at = now
                    due.append(k)
                elif sent_at < earliest:
                    earliest = sent_at
            self._scan_at = now if len(due) >= cap else earliest + self.resend_after_s
        if due:
            self._scan_at = min(self._scan_at, now + self.resend_after_s)
        for k in due:
            if k.sends:
                self.counters.resent += 1
            else:
                self.counters.sent += 1
            k.sends += 1
        return due

    def next_resend_at(self) -> float:
        """When the oldest sent, unconfirmed reading can become due again (inf if none)."""
        if not self.confirm or not self._kept:
            return math.inf
        return self._scan_at

    def on_puback(self, seq: int) -> None:
        """The broker has the reading. Without confirmation that is where the device lets go."""
        self.counters.pubacks += 1
        if not self.confirm and self._kept.pop(seq, None) is not None:
            self.counters.confirmed += 1

    def on_send_failed(self, seq: int) -> None:
        """No PUBACK (timeout, disconnect): send it again at the next chance."""
        k = self._kept.get(seq)
        if k is not None and k.sent_at is not None:
            k.sent_at = None
            self._unsent.append(seq)

    def on_ack(self, ranges: Sequence[tuple[int, int]]) -> int:
        """The gateway durably handled these seqs (inclusive ranges): let exactly those go."""
        if not self.confirm:
            return 0
        released = 0
        kept = self._kept
        for a, b in ranges:
            if b - a + 1 <= len(kept):
                for s in range(a, b + 1):
                    if kept.pop(s, None) is not None:
                        released += 1
            else:
                for s in [s for s in kept if a <= s <= b]:
                    del kept[s]
                    released += 1
        self.counters.confirmed += released
        return released

    def on_disconnect(self) -> None:
        """After a reconnect everything still held goes out again."""
        self._unsent.clear()
        for k in self._kept.values():
            k.sent_at = None
            self._unsent.append(k.seq)
