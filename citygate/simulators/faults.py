"""Faults on demand: what to break, on which devices, when, and exactly how often.

A :class:`FaultRequest` says what an operator asked for ("NaN on 10 % of the
devices, three readings each"); :func:`resolve` turns a list of them into one
:class:`DevicePlan` per device, deterministically from the seed, so that a run
injects exactly the faults asked for and a test can count them. Devices are
picked without replacement (``share`` of N gives exactly ``round(share * N)``
devices, at least one when the share is positive); two payload faults that land
on the same reading of a device are moved apart rather than merged, so none is lost.

Kinds and what one occurrence is:

- payload faults, one reading each, counted by reading number in the run
  (``at`` = first reading, ``every`` = spacing in readings):
  ``out_of_range``, ``malformed``, ``nan`` replace the reading by a payload the
  gateway must reject; ``clock_skew`` shifts its timestamp by ``skew_s``;
  ``duplicate`` sends it twice; ``wrong_topic`` additionally publishes a reading
  on another device's topic (the broker's ACL must drop it);
- timed faults, counted in seconds from the device's start (``at``, ``every``):
  ``offline`` cuts the connection for ``duration_s`` (the device keeps measuring
  into its own memory and resends afterwards); ``burst`` produces ``size``
  readings back to back;
- certificate faults: ``expired_cert`` and ``revoked_cert`` add ``count``
  extra devices whose certificate the broker must refuse;
- ``reboot`` (timed, ``at``/``every`` in seconds): the device restarts. What it
  held unconfirmed is gone (recorded as dropped), it is down for ``down_s``
  (no connection, no readings), its sequence counter starts at 0 again and its
  clock comes back ``behind_s`` behind (no battery-backed clock), so its new
  readings reuse old sequence numbers with timestamps among the old ones.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from citygate.errors import ConfigError


class FaultKind(StrEnum):
    OFFLINE = "offline"
    BURST = "burst"
    OUT_OF_RANGE = "out_of_range"
    MALFORMED = "malformed"
    NAN = "nan"
    CLOCK_SKEW = "clock_skew"
    DUPLICATE = "duplicate"
    WRONG_TOPIC = "wrong_topic"
    EXPIRED_CERT = "expired_cert"
    REVOKED_CERT = "revoked_cert"
    REBOOT = "reboot"  # last: FAULT_CODES are positions, stored in ledgers


PAYLOAD_FAULTS: frozenset[FaultKind] = frozenset(
    {
        FaultKind.OUT_OF_RANGE,
        FaultKind.MALFORMED,
        FaultKind.NAN,
        FaultKind.CLOCK_SKEW,
        FaultKind.DUPLICATE,
        FaultKind.WRONG_TOPIC,
    }
)
# Payloads the gateway must reject: they never count as expected in the ledger.
REJECTED_PAYLOADS: frozenset[FaultKind] = frozenset(
    {FaultKind.OUT_OF_RANGE, FaultKind.MALFORMED, FaultKind.NAN}
)
TIMED_FAULTS: frozenset[FaultKind] = frozenset({FaultKind.OFFLINE, FaultKind.BURST, FaultKind.REBOOT})
CERT_FAULTS: frozenset[FaultKind] = frozenset({FaultKind.EXPIRED_CERT, FaultKind.REVOKED_CERT})

# A stable small code per kind, stored in ledger records.
FAULT_CODES: dict[FaultKind, int] = {k: i + 1 for i, k in enumerate(FaultKind)}
FAULT_BY_CODE: dict[int, FaultKind] = {v: k for k, v in FAULT_CODES.items()}


@dataclass(frozen=True, slots=True)
class FaultRequest:
    """One fault asked for, on explicit ``devices`` or on a ``share`` of the fleet."""

    kind: FaultKind
    share: float = 0.0
    devices: tuple[str, ...] = ()
    count: int = 1
    at: float | None = None  # payload: first reading number; timed: seconds after start
    every: float | None = None  # payload: readings between occurrences; timed: seconds
    duration_s: float = 30.0  # offline
    size: int = 20  # burst: readings
    skew_s: float = 600.0  # clock_skew: seconds added to the timestamp (negative: late clock)
    behind_s: float = 30.0  # reboot: how far behind the clock comes back
    down_s: float = 1.0  # reboot: seconds without connection or readings

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ConfigError(f"fault {self.kind}: share must be between 0 and 1, got {self.share}")
        if self.count < 0:
            raise ConfigError(f"fault {self.kind}: count must not be negative")
        if self.kind in CERT_FAULTS:
            if self.share or self.devices:
                raise ConfigError(
                    f"fault {self.kind}: adds 'count' extra devices with a bad certificate; "
                    "share and devices do not apply"
                )
        elif not self.share and not self.devices:
            raise ConfigError(f"fault {self.kind}: say which devices (devices=a+b) or a share (share=0.1)")
        if self.duration_s <= 0 or self.size < 1:
            raise ConfigError(f"fault {self.kind}: duration and size must be positive")
        if self.behind_s < 0 or self.down_s <= 0:
            raise ConfigError(f"fault {self.kind}: behind must not be negative, down must be positive")
        if self.every is not None and self.every <= 0:
            raise ConfigError(f"fault {self.kind}: every must be positive")

    @property
    def first(self) -> float:
        if self.at is not None:
            return self.at
        return 2.0 if self.kind in PAYLOAD_FAULTS else 5.0

    @property
    def spacing(self) -> float:
        if self.every is not None:
            return self.every
        if self.kind is FaultKind.OFFLINE:
            return self.duration_s * 2.0
        return 1.0 if self.kind in PAYLOAD_FAULTS else 10.0


@dataclass(frozen=True, slots=True)
class Reboot:
    """One restart of a device: at ``at_s`` (seconds since its start), down ``down_s``, its
    clock ``behind_ms`` behind afterwards (more behind with every further reboot)."""

    at_s: float
    behind_ms: int
    down_s: float

    @property
    def up_s(self) -> float:
        return self.at_s + self.down_s


@dataclass(slots=True)
class DevicePlan:
    """The faults of one device in one run."""

    payload: dict[int, FaultKind] = field(default_factory=dict)  # reading number -> fault
    skew_ms: int = 0  # for its clock_skew readings
    wrong_topic_target: str | None = None
    offline: list[tuple[float, float]] = field(default_factory=list)  # (start_s, end_s)
    bursts: list[tuple[float, int]] = field(default_factory=list)  # (at_s, readings)
    reboots: list[Reboot] = field(default_factory=list)

    def is_offline(self, t_s: float) -> float | None:
        """The end of the offline period containing ``t_s`` (seconds since start), or None."""
        for start, end in self.offline:
            if start <= t_s < end:
                return end
        return None

    def planned(self) -> Counter[FaultKind]:
        c: Counter[FaultKind] = Counter(self.payload.values())
        c[FaultKind.OFFLINE] += len(self.offline)
        c[FaultKind.BURST] += len(self.bursts)
        c[FaultKind.REBOOT] += len(self.reboots)
        return +c


@dataclass(slots=True)
class FaultPlan:
    """Every device's plan, plus the certificate faults (extra devices) to create."""

    devices: dict[str, DevicePlan] = field(default_factory=dict)
    cert_devices: dict[FaultKind, int] = field(default_factory=dict)

    def for_device(self, device_id: str) -> DevicePlan:
        return self.devices.get(device_id) or DevicePlan()

    def planned(self) -> Counter[FaultKind]:
        """Occurrences per kind over the fleet (cert faults: devices)."""
        total: Counter[FaultKind] = Counter()
        for p in self.devices.values():
            total.update(p.planned())
        for kind, n in self.cert_devices.items():
            total[kind] += n
        return +total


def _pick(req: FaultRequest, device_ids: Sequence[str], seed: int, index: int) -> list[str]:
    if req.devices:
        unknown = [d for d in req.devices if d not in set(device_ids)]
        if unknown:
            raise ConfigError(f"fault {req.kind}: unknown devices {', '.join(unknown[:5])}")
        return list(dict.fromkeys(req.devices))
    n = max(1, round(req.share * len(device_ids))) if device_ids else 0
    rng = random.Random(f"{seed}:{index}:{req.kind.value}")  # noqa: S311 - a simulation, not crypto
    return sorted(rng.sample(sorted(device_ids), n))


def resolve(requests: Iterable[FaultRequest], device_ids: Sequence[str], seed: int) -> FaultPlan:
    """Turn fault requests into exact per-device plans (deterministic for a seed)."""
    plan = FaultPlan()
    ordered = list(device_ids)
    position = {d: i for i, d in enumerate(ordered)}
    for i, req in enumerate(requests):
        if req.kind in CERT_FAULTS:
            plan.cert_devices[req.kind] = plan.cert_devices.get(req.kind, 0) + req.count
            continue
        for dev in _pick(req, ordered, seed, i):
            dp = plan.devices.setdefault(dev, DevicePlan())
            if req.kind in PAYLOAD_FAULTS:
                n = max(0, int(req.first))
                step = max(1, int(req.spacing))
                for _ in range(req.count):
                    while n in dp.payload:  # never merge two faults into one reading
                        n += 1
                    dp.payload[n] = req.kind
                    n += step
                if req.kind is FaultKind.CLOCK_SKEW:
                    dp.skew_ms = round(req.skew_s * 1000)
                if req.kind is FaultKind.WRONG_TOPIC:
                    if len(ordered) < 2:
                        raise ConfigError("fault wrong_topic needs at least two devices")
                    dp.wrong_topic_target = ordered[(position[dev] + 1) % len(ordered)]
            elif req.kind is FaultKind.OFFLINE:
                for k in range(req.count):
                    start = req.first + k * req.spacing
                    dp.offline.append((start, start + req.duration_s))
                dp.offline.sort()
            elif req.kind is FaultKind.BURST:
                for k in range(req.count):
                    dp.bursts.append((req.first + k * req.spacing, req.size))
                dp.bursts.sort()
            elif req.kind is FaultKind.REBOOT:
                for k in range(req.count):
                    at = req.first + k * req.spacing
                    dp.reboots.append(Reboot(at, round(req.behind_s * 1000), req.down_s))
                dp.reboots.sort(key=lambda r: r.at_s)
                for a, b in itertools.pairwise(dp.reboots):
                    if b.at_s < a.up_s:
                        raise ConfigError(
                            f"fault reboot on {dev}: a reboot at {b.at_s:g} s while still down "
                            f"from the one at {a.at_s:g} s (every must exceed down)"
                        )
    return plan


def _number(kind: FaultKind, key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"fault {kind}: {key} must be a number, got {text!r}") from None


def parse_fault(text: str) -> FaultRequest:
    """Parse ``KIND[:key=value,...]`` from the command line.

    Keys: ``share``, ``devices`` (ids joined by ``+``), ``count``, ``at``, ``every``,
    ``duration`` (s), ``size``, ``skew`` (s), ``behind`` and ``down`` (s, reboot). Example:
    ``nan:share=0.1,count=3``, ``offline:devices=sim-00001+sim-00002,at=10,duration=30``,
    ``reboot:share=0.1,at=20,behind=10,down=1``.
    """
    head, _, rest = text.partition(":")
    try:
        kind = FaultKind(head.strip())
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise ConfigError(f"unknown fault {head!r}; known: {known}") from None
    kw: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"fault {kind}: expected key=value, got {item!r}")
        key = key.strip()
        value = value.strip()
        if key == "devices":
            kw["devices"] = tuple(d for d in value.split("+") if d)
        elif key in {"count", "size"}:
            number = _number(kind, key, value)
            if number != int(number):
                raise ConfigError(f"fault {kind}: {key} must be a whole number")
            kw[key] = int(number)
        elif key in {"share", "at", "every"}:
            kw[key] = _number(kind, key, value)
        elif key == "duration":
            kw["duration_s"] = _number(kind, key, value)
        elif key == "skew":
            kw["skew_s"] = _number(kind, key, value)
        elif key in {"behind", "down"} and kind is FaultKind.REBOOT:
            kw[f"{key}_s"] = _number(kind, key, value)
        else:
            raise ConfigError(
                f"fault {kind}: unknown key {key!r} (share, devices, count, at, every, duration, size, skew"
                + (", behind, down)" if kind is FaultKind.REBOOT else ")")
            )
    return FaultRequest(kind=kind, **kw)  # type: ignore[arg-type]
