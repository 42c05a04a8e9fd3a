"""The ledger: what every simulated device produced, in a compact append-only file.

Two files:

- ``PATH``: fixed-width 24-byte little-endian records
  ``kind u8, code u8, boot u16, device u32, seq i64, ts_ms i64``,
  written through a buffer (one ``write`` per 256 KiB or per flush), so that
  recording a reading costs a ``struct.pack`` and never slows publishing;
- ``PATH.devices``: one JSON line per device (index, id, measurement, profile),
  written before the first record that names the device.

Record kinds:

- ``PRODUCED``: a valid reading the device made; expected in the database
  unless a later ``DROPPED`` record for the same (device, seq) says the device
  let it go unconfirmed because its memory was full;
- ``HELD``: the device still held the reading, unconfirmed, when the run ended
  (it would have resent it; the audit reports these apart);
- ``FAULTY``: a payload that must be rejected (``code`` says which fault);
- ``WRONG_TOPIC``: a payload published on another device's topic (must be dropped
  by the broker).

``boot`` counts the device's restarts (the ``reboot`` fault; 0 without one, and in
ledgers written before it existed, where the field was reserved and 0). A
rebooted device counts from seq 0 again, so a reading is named by
(device, boot, seq): each boot has its own seq range in the audit's arrays.

A crash can leave a partial last record; readers ignore it. The file is the
input of :mod:`citygate.simulators.audit` and lets a later run resume each
device's sequence numbers and timestamps.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import IO, Final

import orjson

from citygate.errors import LedgerError

RECORD: Final = struct.Struct("<BBHIqq")
RECORD_SIZE: Final = RECORD.size  # 24
_FLUSH_BYTES: Final = 256 * 1024


class RecordKind(IntEnum):
    PRODUCED = 1
    DROPPED = 2
    HELD = 3
    FAULTY = 4
    WRONG_TOPIC = 5


@dataclass(frozen=True, slots=True)
class LedgerDevice:
    index: int
    device_id: str
    measurement: str
    profile: str
    profile_version: int


def devices_path(path: Path) -> Path:
    return path.with_name(path.name + ".devices")


def _read_devices(path: Path) -> list[LedgerDevice]:
    try:
        data = devices_path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise LedgerError(f"cannot read {devices_path(path)}: {e}") from e
    out: list[LedgerDevice] = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = orjson.loads(line)
            dev = LedgerDevice(
                index=int(d["i"]),
                device_id=str(d["device_id"]),
                measurement=str(d["measurement"]),
                profile=str(d["profile"]),
                profile_version=int(d["profile_version"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            if n == len(data.splitlines()) and not data.endswith(b"\n"):
                break  # a torn last line from a crash
            raise LedgerError(f"{devices_path(path)} line {n}: {e}") from e
        if dev.index != len(out):
            raise LedgerError(f"{devices_path(path)} line {n}: device index {dev.index}, expected {len(out)}")
        out.append(dev)
    return out


def read_records(path: Path) -> bytes:
    """The whole records file, cut to whole records."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as e:
        raise LedgerError(f"cannot read ledger {path}: {e}") from e
    return data[: len(data) - len(data) % RECORD_SIZE]


@dataclass(slots=True)
class ResumePoint:
    """Where a device continues: its next seq and the last timestamp it used."""

    next_seq: int = 0  # in the last boot
    last_ts_ms: int = -1  # of every boot
    boot: int = 0


class LedgerWriter:
    """Appends records; resumes the device table and the sequence numbers of an existing ledger."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._devices = _read_devices(path)
        self._index = {d.device_id: d.index for d in self._devices}
        self.resume: dict[str, ResumePoint] = {}
        self._scan_resume()
        try:
            # Cut a torn tail so new records stay aligned.
            size = path.stat().st_size if path.exists() else 0
            if size % RECORD_SIZE:
                with path.open("r+b") as f:
                    f.truncate(size - size % RECORD_SIZE)
            dpath = devices_path(path)
            if dpath.exists():
                text = dpath.read_bytes()
                if text and not text.endswith(b"\n"):  # a torn last line
                    with dpath.open("r+b") as f:
                        f.truncate(text.rfind(b"\n") + 1)
            self._file: IO[bytes] = path.open("ab")
            self._dev_file: IO[bytes] = devices_path(path).open("ab")
        except OSError as e:
            raise LedgerError(f"cannot open ledger {path}: {e}") from e
        self._buf = bytearray()
        self.records = 0

    def _scan_resume(self) -> None:
        data = read_records(self.path)
        if not data:
            return
        next_seq: dict[int, tuple[int, int]] = {}  # device -> (boot, next seq in it)
        last_ts: dict[int, int] = {}
        for kind, _code, boot, dev, seq, ts in RECORD.iter_unpack(data):
            if kind == RecordKind.WRONG_TOPIC:
                continue
            if (boot, seq + 1) > next_seq.get(dev, (0, 0)):
                next_seq[dev] = (boot, seq + 1)
            if ts > last_ts.get(dev, -1):
                last_ts[dev] = ts
        for dev in self._devices:
            if dev.index in next_seq:
                boot, nxt = next_seq[dev.index]
                self.resume[dev.device_id] = ResumePoint(nxt, last_ts.get(dev.index, -1), boot)

    def device(self, device_id: str, measurement: str, profile: str, profile_version: int) -> int:
        """The device's index in this ledger (registered on first use)."""
        idx = self._index.get(device_id)
        if idx is not None:
            return idx
        idx = len(self._devices)
        dev = LedgerDevice(idx, device_id, measurement, profile, profile_version)
        self._devices.append(dev)
        self._index[device_id] = idx
        line = orjson.dumps(
            {
                "i": idx,
                "device_id": device_id,
                "measurement": measurement,
                "profile": profile,
                "profile_version": profile_version,
            }
        )
        self._dev_file.write(line + b"\n")
        self._dev_file.flush()
        return idx

    def add(self, kind: RecordKind, device: int, seq: int, ts_ms: int, code: int = 0, boot: int = 0) -> None:
        self._buf += RECORD.pack(kind, code, boot, device, seq, ts_ms)
        self.records += 1
        if len(self._buf) >= _FLUSH_BYTES:
            self.flush()

    def produced(self, device: int, seq: int, ts_ms: int, boot: int = 0) -> None:
        self.add(RecordKind.PRODUCED, device, seq, ts_ms, boot=boot)

    def flush(self) -> None:
        if self._buf:
            self._file.write(self._buf)
            self._buf.clear()
        self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()
        self._dev_file.close()

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading for the audit ------------------------------------------------------------

STATE_NONE: Final = 0
STATE_EXPECTED: Final = 1
STATE_DROPPED: Final = 2
STATE_FAULTY: Final = 3


@dataclass(frozen=True, slots=True)
class Segment:
    """One boot of a device in its arrays: seq ``s`` of boot ``boot`` is slot
    ``offset + s - base``, for ``base <= s < base + size``."""

    boot: int
    base: int
    offset: int
    size: int


@dataclass(slots=True)
class DeviceEntries:
    """One device's ledger, as compact arrays of slots.

    A device that never rebooted has one segment: slot ``seq - base``. One that did has
    one segment per boot, one after the other (boot 0 first), since its seqs repeat.
    """

    device: LedgerDevice
    base: int = 0  # of the first segment (the only one without reboots)
    ts_ms: array[int] = field(default_factory=lambda: array("q"))
    state: bytearray = field(default_factory=bytearray)
    held: bytearray = field(default_factory=bytearray)  # 1: still held by the device at the end
    conflicts: int = 0  # the same (boot, seq) recorded with two timestamps (a broken resume)
    wrong_topic: int = 0
    min_ts: int = 0
    max_ts: int = -1
    segments: tuple[Segment, ...] = ()

    def count(self, state: int) -> int:
        return self.state.count(state)

    def slots(self, seq: int) -> list[int]:
        """The slots of ``seq``, one per boot that used it (boot order)."""
        return [g.offset + seq - g.base for g in self.segments if g.base <= seq < g.base + g.size]

    def seq_of(self, slot: int) -> tuple[int, int]:
        """(boot, seq) of a slot."""
        for g in self.segments:
            if g.offset <= slot < g.offset + g.size:
                return g.boot, g.base + slot - g.offset
        raise IndexError(slot)


@dataclass(slots=True)
class LedgerData:
    devices: list[LedgerDevice]
    entries: dict[str, DeviceEntries]
    records: int


def load(path: Path, only: set[str] | None = None) -> LedgerData:
    """Read a ledger into per-device arrays (two passes over the records, no per-reading objects)."""
    devices = _read_devices(path)
    if not devices and not path.exists():
        raise LedgerError(f"no ledger at {path}")
    data = read_records(path)
    n = len(devices)
    lo = [1 << 62] * n
    hi = [-1] * n
    later: dict[tuple[int, int], list[int]] = {}  # (device, boot >= 1) -> [lo, hi]
    for kind, _code, boot, dev, seq, _ts in RECORD.iter_unpack(data):
        if dev >= n:
            raise LedgerError(f"{path}: a record names device {dev}, but only {n} are registered")
        if kind == RecordKind.WRONG_TOPIC:
            continue
        if boot:
            span = later.get((dev, boot))
            if span is None:
                later[dev, boot] = [seq, seq]
            elif seq < span[0]:
                span[0] = seq
            elif seq > span[1]:
                span[1] = seq
            continue
        if seq < lo[dev]:
            lo[dev] = seq
        if seq > hi[dev]:
            hi[dev] = seq
    boots: dict[int, list[tuple[int, int, int]]] = {}  # device -> [(boot, lo, hi)] for boot >= 1
    for (dev, boot), (a, b) in sorted(later.items()):
        boots.setdefault(dev, []).append((boot, a, b))
    entries: list[DeviceEntries | None] = []
    # slot = seq - shift: boot 0 from a list, later boots from a dict
    shift = [0] * n
    shifts: dict[tuple[int, int], int] = {}
    for d in devices:
        if only is not None and d.device_id not in only:
            entries.append(None)
            continue
        i = d.index
        segments: list[Segment] = []
        if hi[i] >= 0:
            segments.append(Segment(0, lo[i], 0, hi[i] - lo[i] + 1))
            shift[i] = lo[i]
        for boot, a, b in boots.get(i, []):
            offset = sum(g.size for g in segments)
            segments.append(Segment(boot, a, offset, b - a + 1))
            shifts[i, boot] = a - offset
        size = sum(g.size for g in segments)
        entries.append(
            DeviceEntries(
                device=d,
                base=segments[0].base if segments else 0,
                ts_ms=array("q", bytes(8 * size)),
                state=bytearray(size),
                held=bytearray(size),
                min_ts=1 << 62,
                segments=tuple(segments),
            )
        )
    for kind, _code, boot, dev, seq, ts in RECORD.iter_unpack(data):
        e = entries[dev]
        if e is None:
            continue
        if kind == RecordKind.WRONG_TOPIC:
            e.wrong_topic += 1
            continue
        i = seq - (shifts[dev, boot] if boot else shift[dev])
        if kind == RecordKind.PRODUCED or kind == RecordKind.FAULTY:
            if e.state[i] != STATE_NONE and e.ts_ms[i] != ts:
                e.conflicts += 1
            e.ts_ms[i] = ts
            e.state[i] = STATE_EXPECTED if kind == RecordKind.PRODUCED else STATE_FAULTY
        elif kind == RecordKind.DROPPED:
            if e.state[i] == STATE_EXPECTED:
                e.state[i] = STATE_DROPPED
        elif kind == RecordKind.HELD:
            e.held[i] = 1
        if ts < e.min_ts:
            e.min_ts = ts
        if ts > e.max_ts:
            e.max_ts = ts
    return LedgerData(
        devices=devices,
        entries={e.device.device_id: e for e in entries if e is not None},
        records=len(data) // RECORD_SIZE,
    )
