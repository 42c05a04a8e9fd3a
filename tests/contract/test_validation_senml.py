"""Payload validation of SenML packs (RFC 8428): exact Readings, a specific reason for every bad pack."""

from __future__ import annotations

import pytest

from citygate.contract.readings import Reading, RejectReason
from tests.contract.validation_helpers import NOW, NOW_S, aq, j, rejected

# -- SenML -------------------------------------------------------------------------


def test_senml_pack_gives_the_exact_reading(v):
    pack = [
        {
            "bn": "urn:dev:mac:0024befffe804ff1:",
            "bt": NOW_S + 0.25,
            "bu": "%",
            "n": "fill_level",
            "v": 62,
            "seq": 41,
        },
        {"n": "temperature", "u": "Cel", "v": 21.5},
        {"n": "tilt_alarm", "vb": False},
        {"n": "battery", "v": 87.0},
    ]
    r = v.validate("wb-1", j(pack), NOW)
    assert r == Reading(
        device_id="wb-1",
        profile="waste_bin",
        profile_version=1,
        measurement="waste_bin",
        ts_ns=NOW + 250_000_000,
        seq=41,
        values={"fill_level": 62.0, "temperature": 21.5, "tilt_alarm": False, "battery": 87.0},
    )
    assert type(r.values["fill_level"]) is float


def test_senml_names_times_and_base_values(v):
    # '/' separated names, t relative to bt, base value added
    pack = [
        {"bn": "city/lights/sl-1/", "bt": NOW_S - 10, "n": "lamp_on", "vb": True, "t": 10},
        {"n": "power", "u": "W", "bv": 40, "v": 2.5, "t": 10},
        {"n": "energy", "u": "kWh", "v": 1200, "bt": NOW_S, "bv": 0},
    ]
    r = v.validate("sl-1", j(pack), NOW)
    assert isinstance(r, Reading), r
    assert r.ts_ns == NOW and r.seq is None
    assert r.values == {"lamp_on": True, "power": 42.5, "energy": 1200.0}


def test_senml_relative_and_missing_times_are_relative_to_now(v):
    r = v.validate("pk-1", j([{"n": "occupied", "vb": True}]), NOW)
    assert isinstance(r, Reading) and r.ts_ns == NOW
    r = v.validate("pk-1", j([{"n": "occupied", "vb": True, "t": -30.5}]), NOW)
    assert isinstance(r, Reading) and r.ts_ns == NOW - 30_500_000_000
    r = v.validate("pk-1", j([{"bt": -60, "n": "occupied", "vb": True, "t": 0}]), NOW)
    assert isinstance(r, Reading) and r.ts_ns == NOW - 60 * 10**9
    rejected(
        v.validate("pk-1", j([{"n": "occupied", "vb": True, "t": 3600}]), NOW),
        RejectReason.TIMESTAMP_IN_FUTURE,
    )
    rejected(
        v.validate("pk-1", j([{"n": "occupied", "vb": True, "t": 2**28 - 1}]), NOW),
        RejectReason.TIMESTAMP_IN_FUTURE,
    )
    rejected(
        v.validate("pk-1", j([{"n": "occupied", "vb": True, "t": 2**28}]), NOW),
        RejectReason.TIMESTAMP_TOO_OLD,
    )
    rejected(
        v.validate("pk-1", j([{"n": "occupied", "vb": True, "t": 1e300}]), NOW),
        RejectReason.TIMESTAMP_IN_FUTURE,
    )
    rejected(
        v.validate("pk-1", j([{"n": "occupied", "vb": True, "t": -1e300}]), NOW),
        RejectReason.TIMESTAMP_TOO_OLD,
    )


SENML_BAD = [
    ("empty pack", [], RejectReason.BAD_SHAPE, "pack is empty"),
    ("record not object", [1], RejectReason.BAD_SHAPE, "record 0 must be an object"),
    (
        "two times",
        [{"n": "occupied", "vb": True, "t": 0}, {"n": "battery", "v": 50, "t": -60}],
        RejectReason.BAD_SHAPE,
        "one pack per reading",
    ),
    (
        "duplicate",
        [{"n": "occupied", "vb": True}, {"n": "occupied", "vb": False}],
        RejectReason.BAD_SHAPE,
        "appears twice",
    ),
    (
        "must understand",
        [{"n": "occupied", "vb": True, "crit_": 1}],
        RejectReason.BAD_SHAPE,
        "must-understand",
    ),
    ("two values", [{"n": "occupied", "vb": True, "v": 1}], RejectReason.BAD_SHAPE, "exactly one value"),
    ("no value", [{"n": "occupied"}], RejectReason.BAD_SHAPE, "exactly one value"),
    ("no name", [{"bn": "pk-1:", "vb": True}], RejectReason.BAD_SHAPE, "does not end in a field name"),
    ("bad seq", [{"n": "occupied", "vb": True, "seq": -2}], RejectReason.BAD_SHAPE, "'seq'"),
    (
        "seq differs",
        [{"n": "occupied", "vb": True, "seq": 1}, {"n": "battery", "v": 5, "seq": 2}],
        RejectReason.BAD_SHAPE,
        "first record",
    ),
    ("bad bn", [{"bn": 5, "n": "occupied", "vb": True}], RejectReason.BAD_SHAPE, "'bn'"),
    ("bad bver", [{"bver": "x", "n": "occupied", "vb": True}], RejectReason.BAD_SHAPE, "'bver'"),
    ("bad n", [{"n": 5, "vb": True}], RejectReason.BAD_SHAPE, "'n'"),
    ("v for bool", [{"n": "occupied", "v": 1}], RejectReason.WRONG_TYPE, "given as 'vb', got 'v'"),
    (
        "vs for float",
        [{"n": "occupied", "vb": True}, {"n": "battery", "vs": "50"}],
        RejectReason.WRONG_TYPE,
        "given as 'v', got 'vs'",
    ),
    ("vd", [{"n": "occupied", "vd": "AQ=="}], RejectReason.WRONG_TYPE, "got 'vd'"),
    ("sum", [{"n": "occupied", "vb": True}, {"n": "battery", "s": 50}], RejectReason.WRONG_TYPE, "got 's'"),
    ("vb not bool", [{"n": "occupied", "vb": 1}], RejectReason.WRONG_TYPE, "true or false"),
    (
        "bad bv",
        [{"n": "occupied", "vb": True}, {"n": "battery", "bv": "x", "v": 1}],
        RejectReason.WRONG_TYPE,
        "'bv'",
    ),
    (
        "unknown",
        [{"n": "occupied", "vb": True}, {"n": "speed", "v": 1}],
        RejectReason.UNKNOWN_FIELD,
        "'speed'",
    ),
    ("missing", [{"n": "battery", "v": 50}], RejectReason.MISSING_FIELD, "'occupied'"),
    (
        "range",
        [{"n": "occupied", "vb": True}, {"n": "battery", "v": 150}],
        RejectReason.OUT_OF_RANGE,
        "above the maximum 100 %",
    ),
    (
        "base value range",
        [{"n": "occupied", "vb": True}, {"n": "battery", "bv": 90, "v": 20}],
        RejectReason.OUT_OF_RANGE,
        "= 110 is above",
    ),
    (
        "bad t",
        [{"n": "occupied", "vb": True, "t": "now"}],
        RejectReason.BAD_TIMESTAMP,
        "'t' must be a number",
    ),
    (
        "bool t",
        [{"n": "occupied", "vb": True, "t": True}],
        RejectReason.BAD_TIMESTAMP,
        "'t' must be a number",
    ),
    (
        "bad bt",
        [{"bt": None, "n": "occupied", "vb": True}],
        RejectReason.BAD_TIMESTAMP,
        "'bt' must be a number",
    ),
    (
        "old",
        [{"bt": NOW_S - 40 * 86400, "n": "occupied", "vb": True}],
        RejectReason.TIMESTAMP_TOO_OLD,
        "older",
    ),
    ("unit on bool", [{"n": "occupied", "vb": True, "u": "%"}], RejectReason.BAD_UNIT, "uses no unit"),
    (
        "unit differs",
        [{"n": "occupied", "vb": True}, {"n": "battery", "u": "%RH", "v": 5}],
        RejectReason.BAD_UNIT,
        "'%RH'",
    ),
    (
        "base unit differs",
        [{"bu": "V", "n": "occupied", "vb": True}, {"n": "battery", "v": 5}],
        RejectReason.BAD_UNIT,
        "base unit 'V'",
    ),
    ("bu not a string", [{"bu": 1, "n": "occupied", "vb": True}], RejectReason.BAD_UNIT, "'bu'"),
]


@pytest.mark.parametrize(
    ("pack", "reason", "needle"), [c[1:] for c in SENML_BAD], ids=[c[0] for c in SENML_BAD]
)
def test_senml_rejections(v, pack, reason, needle):
    rejected(v.validate("pk-1", j(pack), NOW), reason, needle)


def test_senml_unknown_keys_are_ignored_and_base_unit_spares_unitless_fields(v):
    pack = [
        {"bn": "we-1/", "bt": NOW_S, "bu": "Cel", "n": "temperature", "v": 4.5, "ut": 60, "l": "x"},
        {"n": "humidity", "u": "%RH", "v": 91},
        {"n": "pressure", "u": "hPa", "v": 1003.2},
        {"n": "uv_index", "v": 0.0},  # no unit in the profile: the base unit is not held against it
    ]
    r = v.validate("we-1", j(pack), NOW)
    assert isinstance(r, Reading), r
    assert r.values == {"temperature": 4.5, "humidity": 91.0, "pressure": 1003.2, "uv_index": 0.0}
    rejected(
        v.validate("we-1", j([*pack[:3], {"n": "uv_index", "u": "Cel", "v": 1.0}]), NOW),
        RejectReason.BAD_UNIT,
    )


def test_senml_float_seconds_keep_microseconds(v):
    r = v.validate("pk-1", j([{"bt": 1_700_000_000.123456, "n": "occupied", "vb": True}]), NOW)
    assert isinstance(r, Reading) and r.ts_ns == 1_700_000_000_123_456_000


def test_reading_and_rejection_are_frozen(v):
    r = v.validate("aq-1", aq(), NOW)
    with pytest.raises(AttributeError):
        r.ts_ns = 0  # type: ignore[misc]
    rej = v.validate("aq-1", b"{", NOW)
    with pytest.raises(AttributeError):
        rej.reason = RejectReason.BAD_SHAPE  # type: ignore[misc]
    assert RejectReason.NOT_FINITE == "not_finite" and str(RejectReason.BAD_UNIT) == "bad_unit"
