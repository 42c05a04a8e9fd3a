"""Ingest into a real InfluxDB 1.x through the real service over real mutual TLS."""

from __future__ import annotations

import gzip
import uuid

import orjson
import pytest

from tests.cloud.conftest import aq_values, batch_body, post_batch, reading, unique_ts_ns

pytestmark = pytest.mark.servers


def _points(influxdb, db, device_id):
    doc = influxdb.query(f'SELECT * FROM "air_quality" WHERE "device_id" = \'{device_id}\'', db=db)
    series = doc["results"][0].get("series") or []
    if not series:
        return []
    cols = series[0]["columns"]
    return [dict(zip(cols, v, strict=True)) for v in series[0]["values"]]


def test_round_trip_exact_values_and_timestamps(cloud_v1, influxdb):
    gw = cloud_v1.gateway()
    t0 = unique_ts_ns()
    # Two readings within one second, one with sub-millisecond precision: all distinct.
    ts = [t0, t0 + 250_000_000, t0 + 250_000_123]
    rs = [reading("dev-a", ts_ns=t, seq=i, values=aq_values(10.0 + i)) for i, t in enumerate(ts)]
    rs[0]["readings"]["temperature"] = 21.0  # an integral float stays a float
    resp = post_batch(gw, rs)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 3 and body["rejected"] == [] and body["gateway_id"] == "gw-test"

    db = cloud_v1.settings.influx_db
    doc = influxdb.query(
        f'SELECT * FROM "air_quality" WHERE "device_id" = \'dev-a\' AND time >= {t0} AND time <= {ts[-1]}',
        db=db,
    )
    series = doc["results"][0]["series"][0]
    cols = series["columns"]
    rows = [dict(zip(cols, v, strict=True)) for v in series["values"]]
    assert [r["time"] for r in rows] == ts
    for i, r in enumerate(rows):
        assert r["seq"] == i
        assert r["pm2_5"] == 10.0 + i + 0.5
        assert r["site"] == "test-site" and r["district"] == "centre" and r["profile_version"] == "1"
        assert "gateway_id" not in r and "batch_id" not in r
    assert rows[0]["temperature"] == 21.0
    # Field types: floats are floats, seq is an integer.
    keys = influxdb.query('SHOW FIELD KEYS FROM "air_quality"', db=db)["results"][0]["series"][0]["values"]
    types = dict(keys)
    assert types["temperature"] == "float" and types["seq"] == "integer"

    # And back through the read API, exactly.
    r = cloud_v1.reader().get(
        "/v1/devices/dev-a/series",
        params={
            "start": _iso(t0),
            "end": _iso(ts[-1] + 1),
            "time_format": "ns",
            "fields": "pm2_5,temperature,seq",
        },
    )
    assert r.status_code == 200, r.text
    s = r.json()["series"][0]
    assert s["columns"] == ["time", "pm2_5", "temperature", "seq"]
    assert s["values"] == [[t, 10.0 + i + 0.5, 21.0 if i == 0 else 21.5, i] for i, t in enumerate(ts)]


def _iso(ns: int) -> str:
    import datetime as dt

    secs, frac = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def test_same_batch_twice_stores_each_point_once(cloud_v1, influxdb):
    gw = cloud_v1.gateway()
    device = "dev-b"
    rs = [reading(device, seq=i) for i in range(50)]
    body = batch_body(rs, batch_id="replayed-batch")
    for _ in range(2):
        resp = gw.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
        assert resp.status_code == 200 and resp.json()["accepted"] == 50
    lo = min(r["ts"] for r in rs) * 1_000_000
    hi = max(r["ts"] for r in rs) * 1_000_000
    doc = influxdb.query(
        f'SELECT count("seq") FROM "air_quality" WHERE "device_id" = \'{device}\' '
        f"AND time >= {lo} AND time <= {hi}",
        db=cloud_v1.settings.influx_db,
    )
    assert doc["results"][0]["series"][0]["values"][0][1] == 50


def test_bad_readings_are_rejected_one_by_one_and_the_good_ones_stored(cloud_v1, influxdb):
    gw = cloud_v1.gateway()
    good1, good2 = reading("dev-a", seq=1), reading("dev-a", seq=2)
    now_ms = unique_ts_ns() // 1_000_000
    bad = [
        reading("dev-unknown"),  # 1 unknown device
        reading("dev-a", values={**aq_values(), "pm2_5": "high"}),  # 2 wrong type
        reading("dev-a", values={**aq_values(), "pm2_5": 5000.0}),  # 3 out of range
        {**reading("dev-a"), "ts": now_ms + 86_400_000},  # 4 far future
        {**reading("dev-a"), "ts": now_ms - 400 * 86_400_000},  # 5 far past
        reading("dev-a", values={"pm2_5": 1.0}),  # 6 missing fields
        "not an object",  # 7
        {"ts": now_ms, "readings": aq_values()},  # 8 no device id
        reading("dev-a", values={**aq_values(), "bogus": 1.0}),  # 9 unknown field
        {**reading("dev-a"), "extra": 1},  # 10 bad shape
    ]
    resp = post_batch(gw, [good1, *bad, good2])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 2
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert reasons == {
        1: "unknown_device",
        2: "wrong_type",
        3: "out_of_range",
        4: "timestamp_in_future",
        5: "timestamp_too_old",
        6: "missing_field",
        7: "bad_shape",
        8: "bad_shape",
        9: "unknown_field",
        10: "bad_shape",
    }
    assert all(r["detail"] for r in body["rejected"])
    stored = {p["time"] for p in _points(influxdb, cloud_v1.settings.influx_db, "dev-a")}
    assert good1["ts"] * 1_000_000 in stored and good2["ts"] * 1_000_000 in stored


def test_nan_and_infinity_are_refused(cloud_v1):
    gw = cloud_v1.gateway()
    # orjson cannot write NaN; a gateway bug or an attacker can: the whole JSON is not JSON.
    raw = b'{"batch_id":"nan-1","readings":[{"device_id":"dev-a","ts":1,"readings":{"pm2_5":NaN}}]}'
    resp = gw.post("/v1/ingest", content=gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 400 and resp.json()["error"] == "malformed_json"
    raw = raw.replace(b"NaN", b"1e999")
    resp = gw.post("/v1/ingest", content=gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 400


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}, 400, "bad_gzip"),
        (
            gzip.compress(b'{"batch_id": "x", "readings": []}')[:-6],
            {"Content-Encoding": "gzip"},
            400,
            "bad_gzip",
        ),
        (b"{not json", {}, 400, "malformed_json"),
        (b"[1, 2]", {}, 422, "bad_shape"),
        (b'{"batch_id": "has space", "readings": []}', {}, 422, "bad_batch_id"),
        (b'{"batch_id": "ok", "readings": {}}', {}, 422, "bad_shape"),
        (b'{"batch_id": "ok", "readings": [], "gateway_id": "gw-x"}', {}, 422, "bad_shape"),
        (b'{"batch_id": "ok", "readings": []}', {"Content-Encoding": "br"}, 415, "unsupported_encoding"),
    ],
)
def test_whole_batch_problems_get_specific_4xx(cloud_v1, body, headers, status, error):
    resp = cloud_v1.gateway().post("/v1/ingest", content=body, headers=headers)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == error


def test_zip_bomb_oversized_body_and_too_many_readings(cloud_v1):
    gw = cloud_v1.gateway()
    s = cloud_v1.settings
    bomb = gzip.compress(b'{"batch_id":"bomb","readings":[' + b" " * (s.max_decompressed_bytes + 10) + b"]}")
    assert len(bomb) < s.max_body_bytes
    resp = gw.post("/v1/ingest", content=bomb, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413 and resp.json()["error"] == "decompressed_too_large"

    big = b"x" * (s.max_body_bytes + 1)
    resp = gw.post("/v1/ingest", content=big, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413 and resp.json()["error"] == "body_too_large"

    def chunks():  # no Content-Length: the streaming cap must catch it
        for _ in range(s.max_body_bytes // 65536 + 2):
            yield b"y" * 65536

    resp = gw.post("/v1/ingest", content=chunks(), headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413

    many = [reading("dev-a") for _ in range(s.max_batch_readings + 1)]
    resp = post_batch(gw, many)
    assert resp.status_code == 413 and resp.json()["error"] == "too_many_readings"


def test_field_type_conflict_is_narrowed_to_the_bad_point(cloud_v1, influxdb):
    """A point the database refuses is reported as write_rejected; the rest of the batch lands."""
    db = cloud_v1.settings.influx_db
    # Someone else wrote "battery" as an integer into this measurement/shard before.
    t_conflict = unique_ts_ns()
    influxdb.write(db, f"air_quality,device_id=legacy battery=5i {t_conflict}".encode())
    rs = [reading("dev-b", seq=i) for i in range(8)]
    rs[5]["readings"]["battery"] = 80.0
    resp = post_batch(cloud_v1.gateway(), rs)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 7
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(5, "write_rejected")]
    stored = {p["time"] for p in _points(influxdb, db, "dev-b")}
    for i, r in enumerate(rs):
        assert (r["ts"] * 1_000_000 in stored) == (i != 5)


def test_metrics_count_batches_points_and_rejections(cloud_v1):
    post_batch(cloud_v1.gateway(), [reading("dev-a"), reading("dev-unknown")])
    assert cloud_v1.client(cloud_v1.cloud_pki.gateway()).get("/metrics").status_code == 401
    text = cloud_v1.operator().get("/metrics").text
    assert 'citygate_cloud_readings_rejected_total{reason="unknown_device"}' in text
    assert "citygate_cloud_points_written_total" in text
    assert "citygate_cloud_db_write_seconds_bucket" in text
    assert 'citygate_cloud_requests_total{method="POST",route="/v1/ingest",status="200"}' in text


def test_health_readiness_and_openapi(cloud_v1):
    c = cloud_v1.client(cloud_v1.cloud_pki.gateway())
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").status_code == 200
    spec = c.get("/openapi.json").json()
    assert "/v1/ingest" in spec["paths"] and "/v1/gateways" in spec["paths"]


def test_uncompressed_json_is_accepted_too(cloud_v1):
    doc = {"batch_id": f"plain-{uuid.uuid4().hex[:6]}", "readings": [reading("dev-a")]}
    resp = cloud_v1.gateway().post(
        "/v1/ingest", content=orjson.dumps(doc), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 200 and resp.json()["accepted"] == 1


def test_values_the_batch_writer_leaves_to_the_slow_path_are_stored_exactly(cloud_v1, influxdb):
    """A batch the encoder cannot write in one pass (a value below 1e-4) still stores every value exactly."""
    rs = [reading("dev-a", seq=i, values=aq_values(10.0 + i)) for i in range(3)]
    rs[1]["readings"]["co"] = 0.00005  # repr writes 5e-05, orjson 0.00005: written value by value
    rs[2]["readings"]["co"] = 0.0001
    rs[2]["readings"]["humidity"] = 60.0
    resp = post_batch(cloud_v1.gateway(), rs)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 3
    stored = {p["time"]: p for p in _points(influxdb, cloud_v1.settings.influx_db, "dev-a")}
    for i, r in enumerate(rs):
        p = stored[r["ts"] * 1_000_000]
        assert p["seq"] == i
        assert {k: p[k] for k in r["readings"]} == r["readings"]
