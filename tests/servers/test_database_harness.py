"""The database harness: a real InfluxDB 1.x and a real VictoriaMetrics, started by the tests."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.servers


def test_influxdb_v1_write_and_query_round_trip(influxdb):
    db = f"t_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(db)
    ts1, ts2 = 1_767_225_600_000_000_000, 1_767_225_600_250_000_000  # 250 ms apart
    lines = (
        f"air_quality,device_id=dev-a,site=s1 pm2_5=12.5,seq=1i {ts1}\n"
        f"air_quality,device_id=dev-a,site=s1 pm2_5=13.0,seq=2i {ts2}\n"
        # The same point again: identity is measurement+tags+time, so it overwrites.
        f"air_quality,device_id=dev-a,site=s1 pm2_5=13.0,seq=2i {ts2}\n"
    ).encode()
    assert influxdb.write(db, lines) == 204
    doc = influxdb.query('SELECT "pm2_5", "seq" FROM "air_quality"', db=db)
    series = doc["results"][0]["series"][0]
    assert series["values"] == [[ts1, 12.5, 1], [ts2, 13.0, 2]]


def test_victoriametrics_accepts_influxdb_v2_writes_and_dedups(victoriametrics):
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    measurement = f"m_{uuid.uuid4().hex[:8]}"
    now_ms = int(time.time() * 1000)
    line = f"{measurement},device_id=dev-a level=1.5 {now_ms}"
    with InfluxDBClient(url=victoriametrics.url, token="unused", org="citygate") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        write.write(bucket="citygate", record=line, write_precision="ms")
        write.write(bucket="citygate", record=line, write_precision="ms")  # a replay
    rows = victoriametrics.export(f'{{__name__="{measurement}_level"}}', min_series=1)
    assert len(rows) == 1
    assert rows[0]["metric"]["device_id"] == "dev-a"
    assert rows[0]["values"] == [1.5]
    assert rows[0]["timestamps"] == [now_ms]
