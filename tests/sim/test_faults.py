"""Faults: requests resolve to exact, deterministic plans; bad payloads are rejected for the right reason."""

from __future__ import annotations

import time

import pytest

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.readings import Reading, Rejection, RejectReason
from citygate.contract.validation import Validator
from citygate.errors import ConfigError
from citygate.simulators.device import bad_payload
from citygate.simulators.faults import FaultKind, FaultRequest, parse_fault, resolve
from citygate.simulators.signals import DeviceSignal

REGISTRY = ProfileRegistry()
IDS = [f"d{i:03d}" for i in range(100)]


def test_parse() -> None:
    r = parse_fault("nan:share=0.1,count=3,at=5,every=2")
    assert (r.kind, r.share, r.count, r.at, r.every) == (FaultKind.NAN, 0.1, 3, 5.0, 2.0)
    r = parse_fault("offline:devices=a+b,duration=30,at=10")
    assert r.devices == ("a", "b")
    assert r.duration_s == 30.0
    assert parse_fault("expired_cert:count=2").count == 2
    for bad in ("nope", "nan", "nan:share=2", "nan:share=x", "nan:colour=red", "expired_cert:share=0.1"):
        with pytest.raises(ConfigError):
            parse_fault(bad)


def test_share_picks_exactly_and_deterministically() -> None:
    req = FaultRequest(FaultKind.NAN, share=0.1, count=3)
    plan = resolve([req], IDS, seed=5)
    assert len(plan.devices) == 10
    assert plan.planned() == {FaultKind.NAN: 30}
    assert resolve([req], IDS, seed=5).devices.keys() == plan.devices.keys()
    assert resolve([req], IDS, seed=6).devices.keys() != plan.devices.keys()


def test_payload_faults_on_one_reading_are_kept_apart() -> None:
    reqs = [
        FaultRequest(FaultKind.NAN, devices=("d001",), count=2, at=3),
        FaultRequest(FaultKind.OUT_OF_RANGE, devices=("d001",), count=2, at=3),
        FaultRequest(FaultKind.DUPLICATE, devices=("d001",), count=1, at=4),
    ]
    plan = resolve(reqs, IDS, seed=1)
    p = plan.devices["d001"]
    assert sorted(p.payload.values()) == sorted(
        [FaultKind.NAN] * 2 + [FaultKind.OUT_OF_RANGE] * 2 + [FaultKind.DUPLICATE]
    )
    assert len(p.payload) == 5


def test_timed_and_cert_faults() -> None:
    reqs = [
        FaultRequest(FaultKind.OFFLINE, devices=("d002",), count=2, at=5, duration_s=3, every=10),
        FaultRequest(FaultKind.BURST, share=0.05, count=1, size=7),
        FaultRequest(FaultKind.REVOKED_CERT, count=2),
        FaultRequest(FaultKind.WRONG_TOPIC, devices=("d099",)),
    ]
    plan = resolve(reqs, IDS, seed=1)
    assert plan.devices["d002"].offline == [(5.0, 8.0), (15.0, 18.0)]
    assert plan.devices["d002"].is_offline(6) == 8.0
    assert plan.devices["d002"].is_offline(9) is None
    assert plan.cert_devices == {FaultKind.REVOKED_CERT: 2}
    assert plan.devices["d099"].wrong_topic_target == "d000"
    counts = plan.planned()
    assert counts[FaultKind.BURST] == 5
    assert counts[FaultKind.OFFLINE] == 2


def test_unknown_device_refused() -> None:
    with pytest.raises(ConfigError):
        resolve([FaultRequest(FaultKind.NAN, devices=("zzz",))], IDS, seed=1)


@pytest.mark.parametrize("profile", REGISTRY.names())
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (FaultKind.OUT_OF_RANGE, RejectReason.OUT_OF_RANGE),
        (FaultKind.NAN, RejectReason.NOT_FINITE),
        (FaultKind.MALFORMED, RejectReason.MALFORMED_JSON),
    ],
)
def test_bad_payloads_are_rejected_for_their_reason(
    profile: str, kind: FaultKind, reason: RejectReason
) -> None:
    p = REGISTRY.latest(profile)
    inv = Inventory({"x": DeviceRecord(device_id="x", profile=p.name, profile_version=p.version)})
    v = Validator(REGISTRY, inv)
    ts = int(time.time() * 1000)
    values = DeviceSignal("x", p, seed=1, interval_s=60).values(ts)
    result = v.validate("x", bad_payload(kind, 1, ts, values, p))
    assert isinstance(result, Rejection)
    assert result.reason == reason, result
    good = v.validate("x", bad_payload(FaultKind.MALFORMED, 1, ts, values, p)[:0] or b"{}")
    assert not isinstance(good, Reading)


def test_reboot_parse_and_plan() -> None:
    r = parse_fault("reboot:share=0.1,count=2,at=20,every=15,behind=10,down=0.5")
    assert (r.kind, r.share, r.count, r.at, r.every) == (FaultKind.REBOOT, 0.1, 2, 20.0, 15.0)
    assert (r.behind_s, r.down_s) == (10.0, 0.5)
    defaults = parse_fault("reboot:devices=d001")
    assert (defaults.behind_s, defaults.down_s, defaults.first) == (30.0, 1.0, 5.0)
    plan = resolve([r], IDS, seed=1)
    assert len(plan.devices) == 10
    assert plan.planned() == {FaultKind.REBOOT: 20}
    p = next(iter(plan.devices.values()))
    assert [(b.at_s, b.behind_ms, b.down_s) for b in p.reboots] == [(20.0, 10_000, 0.5), (35.0, 10_000, 0.5)]
    assert p.reboots[0].up_s == 20.5
    assert p.payload == {} and p.offline == []  # a reboot is neither a payload fault nor an offline one
    for bad in (
        "reboot:share=0.1,down=0",
        "reboot:share=0.1,behind=-1",
        "reboot:share=0.1,behind=x",
        "nan:share=0.1,behind=10",  # behind and down are the reboot's keys only
        "offline:share=0.1,down=1",
    ):
        with pytest.raises(ConfigError):
            parse_fault(bad)
    with pytest.raises(ConfigError, match="still down"):
        resolve([FaultRequest(FaultKind.REBOOT, devices=("d001",), count=2, every=1, down_s=2)], IDS, seed=1)


def test_reboot_keeps_the_earlier_fault_codes() -> None:
    """Ledgers store FAULT_CODES: the new kind comes last, the others keep their numbers."""
    from citygate.simulators.faults import FAULT_CODES

    assert FAULT_CODES[FaultKind.CLOCK_SKEW] == 6
    assert FAULT_CODES[FaultKind.REVOKED_CERT] == 10
    assert FAULT_CODES[FaultKind.REBOOT] == 11
