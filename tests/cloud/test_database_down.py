"""The database goes away mid-run: 503 + Retry-After, nothing half-written; back up, the same batch lands."""

from __future__ import annotations

import pytest

from citygate.servers.influxdb import LocalInfluxDB
from tests.cloud.conftest import batch_body, reading

pytestmark = pytest.mark.servers


def _count(db: LocalInfluxDB, name: str) -> int:
    doc = db.query('SELECT count("seq") FROM "air_quality"', db=name)
    series = doc["results"][0].get("series")
    return 0 if not series else int(series[0]["values"][0][1])


def test_database_down_then_back(cloud_factory, tmp_path):
    influx = LocalInfluxDB(tmp_path / "influx")
    influx.start()
    try:
        influx.create_database("down")
        rc = cloud_factory(influx_url=influx.url, influx_db="down", influx_timeout_s=2.0)
        gw = rc.gateway()
        first = batch_body([reading("dev-a", seq=i) for i in range(10)])
        assert gw.post("/v1/ingest", content=first, headers={"Content-Encoding": "gzip"}).status_code == 200

        influx.stop()
        body = batch_body([reading("dev-a", seq=100 + i) for i in range(20)], batch_id="during-outage")
        resp = gw.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "7"
        assert resp.json()["error"] == "database_unavailable"
        assert rc.client(rc.cloud_pki.gateway()).get("/readyz").status_code == 503
        hb = gw.post(
            "/v1/gateways/gw-test/heartbeat",
            json={
                "agent_version": "x",
                "uptime_s": 1,
                "readings_in": 0,
                "readings_out": 0,
                "outbox_depth": 0,
                "outbox_bytes": 0,
                "disk_free_bytes": 0,
                "rss_bytes": 0,
                "cpu_percent": 0,
                "broker_connected": True,
                "cert_days_left": 1,
            },
        )
        assert hb.status_code == 503

        influx.start()  # same port, same data directory
        assert _count(influx, "down") == 10  # nothing of the refused batch was written
        resp = gw.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
        assert resp.status_code == 200 and resp.json()["accepted"] == 20
        assert _count(influx, "down") == 30
        assert rc.client(rc.cloud_pki.gateway()).get("/readyz").status_code == 200
    finally:
        influx.stop()


def test_missing_database_is_retryable_not_a_bad_point(cloud_factory, influxdb):
    rc = cloud_factory(influx_url=influxdb.url, influx_db="does_not_exist")
    resp = rc.gateway().post(
        "/v1/ingest", content=batch_body([reading()]), headers={"Content-Encoding": "gzip"}
    )
    assert resp.status_code == 503 and "not_found" in resp.json()["detail"]
