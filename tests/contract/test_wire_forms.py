"""The gateway's hand-written wire bodies are byte for byte what the wire models serialise.

``wire_body`` and ``batch_body`` (citygate.contract.wire) skip pydantic for speed; the
cloud parses what they write by hand too, and documents the models. These tests hold
the fast forms to the models, and the batch id regex to the model's batch id rule.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import INT64_MAX, INT64_MIN, ProfileRegistry
from citygate.contract.readings import Reading, Value
from citygate.contract.validation import Validator
from citygate.contract.wire import (
    BATCH_ID_RE,
    IngestBatch,
    WireReading,
    batch_body,
    stored_body,
    ts_to_wire,
    wire_body,
    wire_from_stored,
)

NOW_MS = 1_700_000_000_000
NOW = NOW_MS * 1_000_000
RECEIVED = NOW + 123_456_789  # not a whole millisecond: received_ms rounds down

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # JSON cannot carry lone surrogates
_values: st.SearchStrategy[Value] = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(INT64_MIN, INT64_MAX),
    st.booleans(),
    _text,
)


def model_body(r: Reading, received_ns: int) -> bytes:
    """The wire form of ``r`` as the model states it: the slow, canonical serialisation."""
    model = WireReading(
        device_id=r.device_id,
        ts=ts_to_wire(r.ts_ns),
        seq=r.seq,
        readings=dict(r.values),
        received_ms=received_ns // 1_000_000,
    )
    return model.model_dump_json().encode()


def reading(device_id: str, ts_ns: int, seq: int | None, values: dict[str, Value]) -> Reading:
    return Reading(device_id, "p", 1, "p", ts_ns, seq, values)


@pytest.fixture(scope="module")
def validator() -> Validator:
    inv = Inventory().with_devices(
        DeviceRecord(device_id="tc-1", profile="traffic_counter", profile_version=1),
        DeviceRecord(device_id="pk-1", profile="parking", profile_version=1),
    )
    return Validator(ProfileRegistry(), inv)


@pytest.mark.parametrize(
    ("device_id", "payload"),
    [
        ("tc-1", {"ts": NOW_MS, "seq": 3, "readings": {"vehicles": 9, "occupancy": 4}}),  # int -> float
        ("tc-1", {"ts": "2023-11-14T22:13:20.123456789Z", "readings": {"vehicles": 0, "occupancy": 0.5}}),
        ("pk-1", [{"bt": NOW_MS / 1000 + 0.000_25, "n": "occupied", "vb": True, "seq": 8}]),
    ],
)
def test_wire_body_of_validated_readings_is_the_models_json(validator, device_id, payload):
    r = validator.validate(device_id, orjson.dumps(payload), NOW)
    assert isinstance(r, Reading), r
    body = wire_body(r, RECEIVED)
    assert body == model_body(r, RECEIVED)
    back = WireReading.model_validate_json(body)
    assert back.readings == r.values
    assert [type(v) for v in back.readings.values()] == [type(v) for v in r.values.values()]


@given(
    device_id=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=64),
    ts_ns=st.integers(0, INT64_MAX),
    seq=st.none() | st.integers(0, INT64_MAX),
    values=st.dictionaries(_text, _values, min_size=1, max_size=6),
    received_ns=st.integers(0, INT64_MAX),
)
def test_wire_body_is_the_models_json_for_any_reading(device_id, ts_ns, seq, values, received_ns):
    r = reading(device_id, ts_ns, seq, values)
    assert wire_body(r, received_ns) == model_body(r, received_ns)


@given(
    batch_id=st.from_regex(BATCH_ID_RE, fullmatch=True),
    n=st.integers(0, 4),
    values=st.dictionaries(_text, _values, min_size=1, max_size=4),
)
def test_batch_body_is_the_models_json(batch_id, n, values):
    bodies = [wire_body(reading(f"dev-{i}", NOW + i, i, values), RECEIVED) for i in range(n)]
    model = IngestBatch(batch_id=batch_id, readings=[WireReading.model_validate_json(b) for b in bodies])
    assert batch_body(batch_id, bodies) == model.model_dump_json().encode()


@given(st.text(st.sampled_from("aZ09._:-/ \n\u00e9"), max_size=70))
@example("a" * 64)
@example("a" * 65)
@example("")
@example("a\n")  # a Python "$" would match before the newline
def test_the_batch_id_regex_is_the_models_rule(batch_id):
    try:
        IngestBatch(batch_id=batch_id, readings=[])
        model_accepts = True
    except ValidationError:
        model_accepts = False
    assert (BATCH_ID_RE.fullmatch(batch_id) is not None) == model_accepts


@given(
    device_id=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=64),
    ts_ns=st.integers(0, INT64_MAX),
    seq=st.none() | st.integers(0, INT64_MAX),
    values=st.dictionaries(_text, _values, min_size=1, max_size=6),
    received_ns=st.integers(0, INT64_MAX),
)
def test_a_stored_reading_becomes_the_models_json_again(device_id, ts_ns, seq, values, received_ns):
    r = reading(device_id, ts_ns, seq, values)
    stored = stored_body(r)
    assert orjson.loads(stored).keys() == {"ts", "seq", "readings"}  # the columns hold the rest
    assert wire_from_stored(device_id, received_ns, stored) == model_body(r, received_ns)


def test_a_row_stored_whole_before_schema_4_is_sent_as_it_is():
    whole = model_body(reading("dev-1", NOW, 7, {"level": 1.5}), RECEIVED)
    assert wire_from_stored("dev-1", RECEIVED, whole) == whole
