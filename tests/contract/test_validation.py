"""Payload validation: exact Readings for good payloads, a specific reason for every bad one."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import ProfileRegistry
from citygate.contract.readings import Reading, Rejection, RejectReason
from citygate.contract.rfc3339 import parse_rfc3339_ns
from citygate.contract.validation import ValidationLimits, Validator

NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
NOW = NOW_MS * 1_000_000
NOW_S = NOW_MS // 1000

AQ = {"pm2_5": 12.5, "pm10": 20.1, "no2": 14.2, "o3": 30.0, "co": 0.4, "temperature": 18.2, "humidity": 55.0}

DEVICES = {
    "aq-1": "air_quality",
    "tc-1": "traffic_counter",
    "pk-1": "parking",
    "wb-1": "waste_bin",
    "sl-1": "street_light",
    "we-1": "weather",
    "wl-1": "water_level",
    "nz-1": "noise",
}


@pytest.fixture(scope="module")
def registry() -> ProfileRegistry:
    return ProfileRegistry()


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    inv = Inventory().with_devices(
        *(DeviceRecord(device_id=d, profile=p, profile_version=1) for d, p in DEVICES.items()),
        DeviceRecord(device_id="future-1", profile="air_quality", profile_version=9),
        DeviceRecord(device_id="alien-1", profile="teleporter", profile_version=1),
    )
    return inv


@pytest.fixture(scope="module")
def v(registry, inventory) -> Validator:
    return Validator(registry, inventory)


def j(obj) -> bytes:
    return orjson.dumps(obj)


def aq(**readings) -> bytes:
    return j({"ts": NOW_MS, "seq": 7, "readings": {**AQ, **readings}})


def rejected(result, reason: RejectReason, *needles: str, field: str | None = None) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.reason is reason, result
    for n in needles:
        assert n in result.detail, (n, result.detail)
    if field is not None:
        assert result.field == field, result
    return result


# -- good payloads ---------------------------------------------------------------


def test_good_json_payload_gives_the_exact_reading(v):
    r = v.validate("aq-1", aq(), NOW)
    assert r == Reading(
        device_id="aq-1",
        profile="air_quality",
        profile_version=1,
        measurement="air_quality",
        ts_ns=NOW,
        seq=7,
        values=AQ,
    )


def test_measurement_comes_from_the_profile(v):
    r = v.validate("tc-1", j({"ts": NOW_MS, "readings": {"vehicles": 12, "avg_speed": 31}}), NOW)
    assert isinstance(r, Reading)
    assert r.measurement == "traffic" and r.profile == "traffic_counter" and r.seq is None
    assert r.values == {"vehicles": 12, "avg_speed": 31.0}
    assert type(r.values["vehicles"]) is int and type(r.values["avg_speed"]) is float


def test_int_for_float_field_becomes_float(v):
    r = v.validate("aq-1", aq(humidity=55, pm2_5=0), NOW)
    assert isinstance(r, Reading)
    assert type(r.values["humidity"]) is float and r.values["humidity"] == 55.0
    assert type(r.values["pm2_5"]) is float
    for value in r.values.values():
        assert type(value) is float


@pytest.mark.parametrize(
    ("ts", "ts_ns"),
    [
        (NOW_MS, NOW),
        (NOW_MS + 1, NOW + 1_000_000),
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T22:13:20.123456789Z", NOW + 123_456_789),
        ("2023-11-14T22:13:20.5Z", NOW + 500_000_000),
        ("2023-11-14T22:13:20.000001Z", NOW + 1_000),
        ("2023-11-15T00:13:20.25+02:00", NOW + 250_000_000),
        ("2023-11-14T17:43:20-04:30", NOW),
        ("2023-11-14t22:13:20z", NOW),
        ("2023-11-14 22:13:20+00:00", NOW),
        ("2023-11-14T22:13:19.999999999Z", NOW - 1),
    ],
)
def test_timestamps_are_exact(v, ts, ts_ns):
    r = v.validate("aq-1", j({"ts": ts, "readings": AQ}), NOW)
    assert isinstance(r, Reading), r
    assert r.ts_ns == ts_ns


def test_rfc3339_edge_cases():
    assert parse_rfc3339_ns("1970-01-01T00:00:00Z") == 0
    assert parse_rfc3339_ns("2016-12-31T23:59:60Z") == parse_rfc3339_ns("2017-01-01T00:00:00Z")
    assert parse_rfc3339_ns("2024-02-29T00:00:00Z") is not None
    for bad in [
        "2023-02-29T00:00:00Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T22:60:00Z",
        "2023-11-14T22:13:20+24:00",
        "2023-11-14T22:13:20",
        "2023-11-14T22:13:20.Z",
        "２０２３-11-14T22:13:20Z",  # non-ASCII digits
        "0000-01-01T00:00:00Z",
        "2023-11-14T22:13:20Z ",
    ]:
        assert parse_rfc3339_ns(bad) is None, bad


def test_time_window_boundaries(v):
    limits = v.limits
    edge_future = NOW_MS + int(limits.max_future_s * 1000)
    edge_past = NOW_MS - int(limits.max_past_s * 1000)
    assert isinstance(v.validate("aq-1", j({"ts": edge_future, "readings": AQ}), NOW), Reading)
    assert isinstance(v.validate("aq-1", j({"ts": edge_past, "readings": AQ}), NOW), Reading)
    rejected(
        v.validate("aq-1", j({"ts": edge_future + 1, "readings": AQ}), NOW), RejectReason.TIMESTAMP_IN_FUTURE
    )
    rejected(
        v.validate("aq-1", j({"ts": edge_past - 1, "readings": AQ}), NOW), RejectReason.TIMESTAMP_TOO_OLD
    )


def test_custom_limits(registry, inventory):
    strict = Validator(
        registry, inventory, ValidationLimits(max_payload_bytes=100, max_future_s=0, max_string_len=3)
    )
    rejected(strict.validate("aq-1", aq(), NOW), RejectReason.PAYLOAD_TOO_LARGE, "limit is 100 bytes")
    rejected(
        strict.validate("pk-1", j({"ts": NOW_MS, "readings": {"occupied": True, "bay_id": "abcd"}}), NOW),
        RejectReason.OUT_OF_RANGE,
        "4 characters long; the limit is 3",
        field="bay_id",
    )
    with pytest.raises(ValueError):
        ValidationLimits(max_payload_bytes=0)
    with pytest.raises(ValueError):
        ValidationLimits(max_past_s=math.inf)


def test_payload_size_limit_is_inclusive(v):
    base = j({"ts": NOW_MS, "readings": {"occupied": True, "bay_id": ""}})
    pad = v.limits.max_payload_bytes - len(base)
    exact = j({"ts": NOW_MS, "readings": {"occupied": True, "bay_id": ""}}).replace(
        b"{", b"{" + b" " * pad, 1
    )
    assert len(exact) == v.limits.max_payload_bytes
    assert isinstance(v.validate("pk-1", exact, NOW), Reading)
    rejected(v.validate("pk-1", exact + b" ", NOW), RejectReason.PAYLOAD_TOO_LARGE, "8193 bytes")


def test_bool_string_and_optional_fields(v):
    r = v.validate(
        "pk-1", j({"ts": NOW_MS, "seq": 0, "readings": {"occupied": False, "bay_id": "B-17"}}), NOW
    )
    assert isinstance(r, Reading)
    assert r.values == {"occupied": False, "bay_id": "B-17"} and r.seq == 0


def test_now_defaults_to_the_clock(v):
    import time

    r = v.validate("aq-1", j({"ts": time.time_ns() // 1_000_000, "readings": AQ}))
    assert isinstance(r, Reading)


def test_bytearray_and_memoryview_payloads(v):
    assert isinstance(v.validate("aq-1", bytearray(aq()), NOW), Reading)
    assert isinstance(v.validate("aq-1", memoryview(aq()), NOW), Reading)  # type: ignore[arg-type]


# -- bool is never a number, numbers are never bools ----------------------------


@pytest.mark.parametrize(
    ("device", "field", "value", "needle"),
    [
        ("aq-1", "pm2_5", True, "must be a number, got true"),
        ("aq-1", "pm2_5", False, "must be a number, got false"),
        ("tc-1", "vehicles", True, "must be an integer, got true"),
        ("tc-1", "vehicles", 3.0, "must be an integer, got 3.0 (send it without a decimal point)"),
        ("tc-1", "vehicles", 3.5, "must be an integer, got 3.5"),
        ("tc-1", "vehicles", "3", "must be an integer, got the string '3'"),
        ("pk-1", "occupied", 1, "must be true or false, got 1"),
        ("pk-1", "occupied", "true", "must be true or false, got the string 'true'"),
        ("pk-1", "bay_id", 17, "must be a string, got 17"),
        ("aq-1", "pm2_5", None, "must be a number, got null"),
        ("aq-1", "pm2_5", [1.0], "must be a number, got an array"),
        ("aq-1", "pm2_5", {"v": 1.0}, "must be a number, got an object"),
        ("pk-1", "bay_id", "a\x00b", "control character"),
        ("pk-1", "bay_id", "line\nbreak", "U+000A"),
    ],
)
def test_wrong_types(v, device, field, value, needle):
    base = {"aq-1": AQ, "tc-1": {"vehicles": 1}, "pk-1": {"occupied": True}}[device]
    result = v.validate(device, j({"ts": NOW_MS, "readings": {**base, field: value}}), NOW)
    rejected(result, RejectReason.WRONG_TYPE, needle, field=field)


# -- every reject reason -----------------------------------------------------------

T = NOW_MS
CASES = [
    # (id, device, payload, reason, detail needles, field)
    ("malformed", "aq-1", b'{"ts": 1, "readings": {', RejectReason.MALFORMED_JSON, ["not valid JSON"], None),
    ("trailing comma", "aq-1", b'{"ts": 1,}', RejectReason.MALFORMED_JSON, ["not valid JSON"], None),
    (
        "invalid utf-8",
        "aq-1",
        b'{"ts": 1, "readings": {"\xff": 1}}',
        RejectReason.MALFORMED_JSON,
        ["UTF-8"],
        None,
    ),
    ("empty", "aq-1", b"", RejectReason.MALFORMED_JSON, ["not valid JSON"], None),
    ("too large", "aq-1", b" " * 8193, RejectReason.PAYLOAD_TOO_LARGE, ["8193 bytes", "8192"], None),
    ("scalar", "aq-1", b"42", RejectReason.BAD_SHAPE, ["must be a JSON object", "got 42"], None),
    ("no readings", "aq-1", j({"ts": T}), RejectReason.BAD_SHAPE, ["'readings' is missing"], None),
    (
        "readings list",
        "aq-1",
        j({"ts": T, "readings": [1]}),
        RejectReason.BAD_SHAPE,
        ["must be an object"],
        None,
    ),
    (
        "extra key",
        "aq-1",
        j({"ts": T, "readings": AQ, "device_id": "x"}),
        RejectReason.BAD_SHAPE,
        ["'device_id'", "comes from the topic"],
        None,
    ),
    (
        "negative seq",
        "aq-1",
        j({"ts": T, "seq": -1, "readings": AQ}),
        RejectReason.BAD_SHAPE,
        ["'seq'", "-1"],
        None,
    ),
    (
        "bool seq",
        "aq-1",
        j({"ts": T, "seq": True, "readings": AQ}),
        RejectReason.BAD_SHAPE,
        ["got true"],
        None,
    ),
    (
        "float seq",
        "aq-1",
        j({"ts": T, "seq": 1.0, "readings": AQ}),
        RejectReason.BAD_SHAPE,
        ["got 1.0"],
        None,
    ),
    (
        "empty readings",
        "tc-1",
        j({"ts": T, "readings": {"vehicles": 1}}).replace(b'"vehicles":1', b""),
        RejectReason.MISSING_FIELD,
        ["'vehicles'"],
        "vehicles",
    ),
    (
        "unknown device",
        "nobody",
        aq(),
        RejectReason.UNKNOWN_DEVICE,
        ["'nobody' is not in the device inventory"],
        None,
    ),
    (
        "unknown version",
        "future-1",
        aq(),
        RejectReason.UNKNOWN_PROFILE,
        ["'future-1'", "air_quality' v9", "known versions: 1"],
        None,
    ),
    (
        "unknown profile",
        "alien-1",
        aq(),
        RejectReason.UNKNOWN_PROFILE,
        ["'teleporter' v1", "known profiles: "],
        None,
    ),
    (
        "unknown field",
        "aq-1",
        aq(pm25=1.0),
        RejectReason.UNKNOWN_FIELD,
        ["'pm25' is not in profile air_quality v1", "known fields: pm2_5"],
        "pm25",
    ),
    (
        "missing field",
        "aq-1",
        j({"ts": T, "readings": {k: x for k, x in AQ.items() if k != "co"}}),
        RejectReason.MISSING_FIELD,
        ["'co' missing", "requires pm2_5"],
        "co",
    ),
    ("wrong type", "aq-1", aq(pm2_5="12"), RejectReason.WRONG_TYPE, ["'pm2_5' must be a number"], "pm2_5"),
    (
        "NaN",
        "aq-1",
        b'{"ts": %d, "readings": {"pm2_5": NaN}}' % T,
        RejectReason.NOT_FINITE,
        ["field 'pm2_5' = NaN", "not valid JSON"],
        "pm2_5",
    ),
    (
        "-Infinity",
        "aq-1",
        b'{"ts": %d, "readings": {"co": 1, "pm10":  -Infinity}}' % T,
        RejectReason.NOT_FINITE,
        ["field 'pm10' = -Infinity"],
        "pm10",
    ),
    ("nan lower", "aq-1", b'{"ts": %d, "readings": {"o3":nan}}' % T, RejectReason.NOT_FINITE, ["'o3'"], "o3"),
    (
        "overflow",
        "aq-1",
        b'{"ts": %d, "readings": {"o3": 1e400}}' % T,
        RejectReason.NOT_FINITE,
        ["field 'o3'", "too large for a double"],
        "o3",
    ),
    ("NaN in array", "aq-1", b"[NaN]", RejectReason.NOT_FINITE, ["NaN"], None),
    (
        "above max",
        "aq-1",
        aq(pm2_5=1200.0),
        RejectReason.OUT_OF_RANGE,
        ["field 'pm2_5' = 1200.0 is above the maximum 1000 ug/m3"],
        "pm2_5",
    ),
    (
        "below min",
        "aq-1",
        aq(temperature=-41),
        RejectReason.OUT_OF_RANGE,
        ["field 'temperature' = -41 is below the minimum -40 Cel"],
        "temperature",
    ),
    (
        "int above max",
        "tc-1",
        j({"ts": T, "readings": {"vehicles": 20001}}),
        RejectReason.OUT_OF_RANGE,
        ["'vehicles' = 20001 is above the maximum 20000 count"],
        "vehicles",
    ),
    (
        "string too long",
        "pk-1",
        j({"ts": T, "readings": {"occupied": True, "bay_id": "x" * 257}}),
        RejectReason.OUT_OF_RANGE,
        ["257 characters long; the limit is 256"],
        "bay_id",
    ),
    ("no ts", "aq-1", j({"readings": AQ}), RejectReason.BAD_TIMESTAMP, ["'ts' is missing"], None),
    (
        "float ts",
        "aq-1",
        j({"ts": 1.7e12, "readings": AQ}),
        RejectReason.BAD_TIMESTAMP,
        ["not an integer", "epoch milliseconds"],
        None,
    ),
    ("bool ts", "aq-1", j({"ts": True, "readings": AQ}), RejectReason.BAD_TIMESTAMP, ["got true"], None),
    (
        "naive ts",
        "aq-1",
        j({"ts": "2023-11-14T22:13:20", "readings": AQ}),
        RejectReason.BAD_TIMESTAMP,
        ["not an RFC 3339 date-time with a time zone"],
        None,
    ),
    (
        "date ts",
        "aq-1",
        j({"ts": "2023-02-30T00:00:00Z", "readings": AQ}),
        RejectReason.BAD_TIMESTAMP,
        ["2023-02-30"],
        None,
    ),
    (
        "future",
        "aq-1",
        j({"ts": T + 301_000, "readings": AQ}),
        RejectReason.TIMESTAMP_IN_FUTURE,
        ["2023-11-14T22:18:21.000Z", "301.000 s ahead", "limit 300.000 s"],
        None,
    ),
    (
        "too old",
        "aq-1",
        j({"ts": "2023-10-01T00:00:00Z", "readings": AQ}),
        RejectReason.TIMESTAMP_TOO_OLD,
        ["2023-10-01T00:00:00.000Z", "older than", "30.0 days"],
        None,
    ),
    (
        "epoch seconds",
        "aq-1",
        j({"ts": NOW_S, "readings": AQ}),
        RejectReason.TIMESTAMP_TOO_OLD,
        ["looks like epoch seconds"],
        None,
    ),
    (
        "senml unit",
        "aq-1",
        j([{"bn": "aq-1:", "n": "pm2_5", "u": "mg/m3", "v": 1.0}]),
        RejectReason.BAD_UNIT,
        ["'pm2_5' has unit 'mg/m3'", "uses 'ug/m3'"],
        "pm2_5",
    ),
]

assert {c[3] for c in CASES} == set(RejectReason), set(RejectReason) - {c[3] for c in CASES}


@pytest.mark.parametrize(
    ("device", "payload", "reason", "needles", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_reject_reason(v, device, payload, reason, needles, field):
    rejected(v.validate(device, payload, NOW), reason, *needles, field=field)


def test_nan_inside_a_string_is_not_mistaken_for_a_non_finite_number(v):
    payload = b'{"ts": 1, "readings": {"bay_id": "NaN Infinity \\" NaN", }}'
    rejected(v.validate("pk-1", payload, NOW), RejectReason.MALFORMED_JSON)


def test_hostile_unparseable_payload_is_cheap(v):
    import time

    payload = b'["' + b'\\"' * 4000 + b"NaN"
    t = time.perf_counter()
    result = v.validate("aq-1", payload, NOW)
    assert time.perf_counter() - t < 0.5
    assert isinstance(result, Rejection)


def test_empty_readings_for_a_profile_without_required_fields_is_bad_shape(registry):
    from citygate.contract.profiles import DeviceProfile, FieldSpec

    p = DeviceProfile(
        name="opt",
        version=1,
        title="t",
        description="d",
        measurement="opt",
        expected_interval_s=1,
        fields={"a": FieldSpec(type="float", required=False, description="d")},
    )
    val = Validator(
        ProfileRegistry.from_profiles(p),
        Inventory().with_devices(DeviceRecord(device_id="o-1", profile="opt", profile_version=1)),
    )
    rejected(val.validate("o-1", j({"ts": NOW_MS, "readings": {}}), NOW), RejectReason.BAD_SHAPE, "empty")
    # unbounded float fields still refuse what is not finite, and huge ints
    rejected(
        val.validate_obj("o-1", {"ts": NOW_MS, "readings": {"a": math.inf}}, NOW), RejectReason.NOT_FINITE
    )
    rejected(
        val.validate_obj("o-1", {"ts": NOW_MS, "readings": {"a": 10**400}}, NOW), RejectReason.OUT_OF_RANGE
    )
    r = val.validate_obj("o-1", {"ts": NOW_MS, "readings": {"a": 10**300}}, NOW)
    assert isinstance(r, Reading) and r.values["a"] == 1e300


# -- validate_obj --------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_validate_obj_not_finite(v, bad):
    result = v.validate_obj("aq-1", {"ts": NOW_MS, "readings": {**AQ, "co": bad}}, NOW)
    rejected(result, RejectReason.NOT_FINITE, "'co'", "not a finite number", field="co")
    result = v.validate_obj("tc-1", {"ts": NOW_MS, "readings": {"vehicles": bad}}, NOW)
    rejected(result, RejectReason.NOT_FINITE, field="vehicles")


def test_validate_obj_gives_the_same_reading_and_does_not_alias_the_callers_dict(v):
    readings = dict(AQ)
    r = v.validate_obj("aq-1", {"ts": NOW_MS, "seq": 7, "readings": readings}, NOW)
    assert r == v.validate("aq-1", aq(), NOW)
    assert isinstance(r, Reading)
    readings["pm2_5"] = 999.0
    assert r.values["pm2_5"] == 12.5


def test_validate_obj_odd_python_objects(v):
    rejected(v.validate_obj("aq-1", ("ts",), NOW), RejectReason.BAD_SHAPE)
    rejected(v.validate_obj("aq-1", {"ts": NOW_MS, "readings": {1: 2.0}}, NOW), RejectReason.UNKNOWN_FIELD)
    rejected(v.validate_obj("aq-1", {"ts": 10**5000, "readings": AQ}, NOW), RejectReason.TIMESTAMP_IN_FUTURE)
    rejected(
        v.validate_obj("aq-1", {"ts": NOW_MS, "readings": {**AQ, "co": 10**5000}}, NOW),
        RejectReason.OUT_OF_RANGE,
        "-bit integer",
    )
    rejected(v.validate_obj(["not", "hashable"], {}, NOW), RejectReason.UNKNOWN_DEVICE)  # type: ignore[arg-type]
    rejected(
        v.validate_obj("pk-1", {"ts": NOW_MS, "readings": {"occupied": True, "bay_id": "\ud800"}}, NOW),
        RejectReason.WRONG_TYPE,
        "lone surrogate",
    )


def test_compiled_profiles_are_shared_with_a_reloaded_inventory(v, registry):
    v2 = v.with_inventory(
        Inventory().with_devices(DeviceRecord(device_id="new-1", profile="noise", profile_version=1))
    )
    assert v2.registry is registry
    r = v2.validate("new-1", j({"ts": NOW_MS, "readings": {"laeq": 55.0, "lamax": 71.5}}), NOW)
    assert isinstance(r, Reading) and r.profile == "noise"
    rejected(v2.validate("aq-1", aq(), NOW), RejectReason.UNKNOWN_DEVICE)


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


# -- never raises -------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(["pm2_5", "co", "vehicles", "occupied", "bay_id", "battery", "x", ""])
payload_like = st.fixed_dictionaries(
    {},
    optional={
        "ts": st.one_of(
            st.integers(min_value=-(2**64), max_value=2**64),
            st.just(NOW_MS),
            st.text(max_size=35),
            st.sampled_from(["2023-11-14T22:13:20Z", "2023-11-14T22:13:20.5+01:00"]),
            json_scalars,
        ),
        "seq": json_values,
        "readings": st.dictionaries(field_names, json_values, max_size=6) | json_values,
    },
)
senml_record = st.fixed_dictionaries(
    {},
    optional={
        "bn": st.sampled_from(["", "dev:", "a/b/", 3]),
        "bt": st.one_of(
            st.floats(), st.integers(min_value=-(2**40), max_value=2**40), st.just(NOW_S), st.text()
        ),
        "bu": st.sampled_from(["%", "Cel", None]),
        "bv": st.one_of(st.floats(), st.integers(), st.none()),
        "n": field_names,
        "t": st.one_of(st.floats(), st.integers(min_value=-(2**40), max_value=2**40), st.none()),
        "u": st.sampled_from(["%", "Cel", "", None]),
        "v": json_scalars,
        "vb": json_scalars,
        "vs": json_scalars,
        "seq": json_scalars,
    },
)
senml_records = st.lists(senml_record, max_size=4)
DEVICE_IDS = st.sampled_from([*DEVICES, "nobody", "future-1"])
FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(device=DEVICE_IDS, raw=st.binary(max_size=300))
def test_validate_never_raises_on_random_bytes(v, device, raw):
    assert isinstance(v.validate(device, raw, NOW), Reading | Rejection)


@FAST
@given(device=DEVICE_IDS, obj=json_values | payload_like | senml_records)
def test_validate_never_raises_on_random_json(v, device, obj):
    try:
        raw = orjson.dumps(obj)  # NaN/inf become null, as any JSON encoder must
    except (TypeError, orjson.JSONEncodeError):
        raw = repr(obj).encode()
    assert isinstance(v.validate(device, raw, NOW), Reading | Rejection)
    assert isinstance(v.validate_obj(device, obj, NOW), Reading | Rejection)


@FAST
@given(
    device=DEVICE_IDS, obj=payload_like | senml_records, now=st.integers(min_value=-(2**64), max_value=2**64)
)
def test_validate_obj_never_raises_at_any_clock(v, device, obj, now):
    result = v.validate_obj(device, obj, now)
    assert isinstance(result, Reading | Rejection)
    if isinstance(result, Rejection):
        assert result.detail and result.reason in RejectReason


@FAST
@given(text=st.text(max_size=60))
def test_nan_heuristic_never_raises(v, text):
    result = v.validate("aq-1", text.encode("utf-8", "surrogatepass"), NOW)
    assert isinstance(result, Reading | Rejection)


@FAST
@given(field=field_names | st.sampled_from(list(AQ)), value=json_values, ts=json_scalars | st.just(NOW_MS))
def test_near_valid_payloads_never_raise(v, field, value, ts):
    """One field (or the time) of an otherwise valid payload replaced by anything."""
    for obj in ({"ts": NOW_MS, "seq": 1, "readings": {**AQ, field: value}}, {"ts": ts, "readings": AQ}):
        assert isinstance(v.validate_obj("aq-1", obj, NOW), Reading | Rejection)
        try:
            raw = orjson.dumps(obj)
        except (TypeError, orjson.JSONEncodeError):
            continue
        assert isinstance(v.validate("aq-1", raw, NOW), Reading | Rejection)


@FAST
@given(record=senml_record)
def test_near_valid_senml_never_raises(v, record):
    pack = [{"bn": "pk-1:", "bt": NOW_S, "n": "occupied", "vb": True}, record]
    assert isinstance(v.validate_obj("pk-1", pack, NOW), Reading | Rejection)
