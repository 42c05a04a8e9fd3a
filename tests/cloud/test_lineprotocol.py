"""The fast serialiser writes exactly what influxdb-client's Point writes."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from citygate.cloud.lineprotocol import ReadingEncoder, encode_point
from citygate.contract.readings import Reading

names = st.text(min_size=1, max_size=12).filter(lambda s: not s.startswith("#"))
tag_values = st.text(min_size=1, max_size=12)
field_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda s: s != "seq")
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=20),
)


def _point(measurement, tags, fields, ts):
    p = Point(measurement)
    for k, v in tags.items():
        p.tag(k, v)
    for k, v in fields.items():
        p.field(k, v)
    p.time(ts)
    return p.to_line_protocol()


@settings(max_examples=400, deadline=None)
@given(
    measurement=names,
    tags=st.dictionaries(names, tag_values, max_size=4),
    fields=st.dictionaries(names, field_values, min_size=1, max_size=5),
    ts=st.integers(min_value=0, max_value=2**62),
)
def test_encode_point_equals_point(measurement, tags, fields, ts):
    assert encode_point(measurement, tags, fields, ts) == _point(measurement, tags, fields, ts)


@settings(max_examples=200, deadline=None)
@given(
    device_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True),
    site=st.one_of(st.none(), tag_values),
    district=st.one_of(st.none(), tag_values),
    values=st.dictionaries(field_names, field_values, min_size=1, max_size=6),
    seq=st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1)),
    ts=st.integers(min_value=0, max_value=2**62),
)
def test_reading_encoder_equals_point(device_id, site, district, values, seq, ts):
    r = Reading(
        device_id=device_id,
        profile="p",
        profile_version=3,
        measurement="air_quality",
        ts_ns=ts,
        seq=seq,
        values=values,
    )
    tags = {"device_id": device_id, "profile_version": "3"}
    if site is not None:
        tags["site"] = site
    if district is not None:
        tags["district"] = district
    fields = dict(values)
    if seq is not None:
        fields["seq"] = seq
    assert ReadingEncoder().line(r, site, district) == _point("air_quality", tags, fields, ts)


def test_integral_float_stays_a_float_and_ints_get_i():
    line = encode_point("m", {}, {"f": 21.0, "i": 21, "big": 1e300, "b": True, "s": 'a"b\\c'}, 5)
    assert line == 'm b=true,big=1e+300,f=21,i=21i,s="a\\"b\\\\c" 5'
    assert "nan" not in encode_point("m", {}, {"x": math.nan, "y": 1.5}, 1)


def test_escaping_of_names_and_tag_values():
    line = encode_point("my m,x", {"t k=": "v, =\\"}, {"f=, ": 1.5}, 1)
    assert line == "my\\ m\\,x,t\\ k\\==v\\,\\ \\=\\  f\\=\\,\\ =1.5 1"


_floats_near_formats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [0.0, -0.0, 1.0, 55.0, 1e-4, 9.99e-5, 1e-5, 1.5e-7, 1e15, 9999999999999998.0, 1e16, 1e300]
    ),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda x: round(x, 3)),
)
_batch_values = st.one_of(
    st.dictionaries(field_names, _floats_near_formats, min_size=1, max_size=6),  # all floats: the fast path
    st.dictionaries(field_names, field_values, min_size=1, max_size=6),
    st.dictionaries(
        field_names, st.one_of(st.just(math.nan), st.just(math.inf), _floats_near_formats), max_size=3
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    batch=st.lists(
        st.tuples(
            st.sampled_from(["d1", "d%2", "d,3"]),
            _batch_values,
            st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1)),
            st.integers(min_value=0, max_value=2**62),
        ),
        max_size=8,
    )
)
def test_lines_equal_line_for_each_reading(batch):
    """The batch writer (one orjson pass, two %-formats) writes what line() writes, reading by reading."""
    enc = ReadingEncoder()
    readings = [
        Reading(device_id=d, profile="p", profile_version=1, measurement="m%s", ts_ns=ts, seq=seq, values=v)
        for d, v, seq, ts in batch
    ]
    prefixes = [enc.series_key(r.measurement, r.device_id, 1, "s%d", None) for r in readings]
    assert enc.lines(readings, prefixes) == [ReadingEncoder().line(r, "s%d", None) for r in readings]


def test_lines_of_plain_floats_and_of_what_needs_the_slow_path():
    enc = ReadingEncoder()

    def reading(values, seq=7):
        return Reading(
            device_id="d", profile="p", profile_version=1, measurement="m", ts_ns=5, seq=seq, values=values
        )

    pre = enc.series_key("m", "d", 1, None, None)
    assert enc.lines([reading({"b": 2.0, "a": 0.5}), reading({"x": 1e-5}, None)], [pre, pre]) == [
        "m,device_id=d,profile_version=1 a=0.5,b=2,seq=7i 5",
        "m,device_id=d,profile_version=1 x=1e-05 5",
    ]
    assert enc.lines([reading({"a": 1.0, "n": 3})], [pre]) == [
        "m,device_id=d,profile_version=1 a=1,n=3i,seq=7i 5"
    ]
    assert enc.lines([reading({"s": "a\nb"}), reading({"a": 1.5})], [pre, pre]) == [
        'm,device_id=d,profile_version=1 s="a\nb",seq=7i 5',
        "m,device_id=d,profile_version=1 a=1.5,seq=7i 5",
    ]
    assert enc.lines([reading({"a%d": 2.5, "b c": 1e16})], [pre]) == [
        "m,device_id=d,profile_version=1 a%d=2.5,b\\ c=1e+16,seq=7i 5"
    ]
    assert enc.lines([reading({"a%s": 2.5})], [pre]) == ["m,device_id=d,profile_version=1 a%s=2.5,seq=7i 5"]
    assert enc.lines([], []) == []
