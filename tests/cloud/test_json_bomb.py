"""A small gzip body that parses into a huge number of objects is refused before parsing."""

from __future__ import annotations

import time

import orjson
import pytest

from citygate.cloud.ingest import VALUES_PER_READING, BatchError, parse_batch


@pytest.mark.parametrize("unit", [b"[],", b"{},", b"1.5,", b'"a",', b'{"a":0},'])
def test_a_json_bomb_is_refused_before_parsing(unit):
    data = b'{"batch_id":"bomb","readings":[' + unit * (10 * 1024 * 1024 // len(unit)) + b"0]}"
    t0 = time.perf_counter()
    with pytest.raises(BatchError) as e:
        parse_batch(data, 5000)
    assert e.value.status == 413 and e.value.reason == "too_many_values"
    assert time.perf_counter() - t0 < 1.0  # counted, not parsed


def test_a_full_batch_of_wide_readings_is_within_the_bound():
    fields = {f"field_{i}": 1.5 for i in range(40)}
    readings = [
        {"device_id": f"dev-{i}", "ts": "2026-11-28T12:00:00.123456789+01:00", "seq": i, "readings": fields}
        for i in range(5000)
    ]
    data = orjson.dumps({"batch_id": "wide", "readings": readings})
    assert data.count(b",") + data.count(b":") < VALUES_PER_READING * 5000
    batch_id, raw = parse_batch(data, 5000)
    assert batch_id == "wide" and len(raw) == 5000
