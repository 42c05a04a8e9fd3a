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
from tests.contract.validation_helpers import AQ, DEVICES, NOW, NOW_MS, NOW_S, aq, j, rejected

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
