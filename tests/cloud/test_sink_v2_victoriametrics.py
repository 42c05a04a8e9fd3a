"""v2 mode: influxdb-client's synchronous write API into VictoriaMetrics through the service."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.cloud.conftest import aq_values, batch_body, reading, unique_ts_ns

pytestmark = pytest.mark.servers


def test_v2_write_into_victoriametrics_idempotent(cloud_factory, victoriametrics):
    rc = cloud_factory(
        influx_api="v2",
        influx_url=victoriametrics.url,
        influx_token=SecretStr("unused-by-vm"),
        influx_org="citygate",
        influx_bucket="citygate",
        influxql_enabled=False,
    )
    gw = rc.gateway()
    t0 = unique_ts_ns()
    ts = [t0, t0 + 250_000_000, t0 + 500_000_000]  # three readings within one second
    body = batch_body(
        [reading("dev-b", ts_ns=t, seq=i, values=aq_values(40.0 + i)) for i, t in enumerate(ts)]
    )
    for _ in range(2):  # replay: VictoriaMetrics dedups (started with -dedup.minScrapeInterval=1ms)
        resp = gw.post("/v1/ingest", content=body, headers={"Content-Encoding": "gzip"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["accepted"] == 3
    rows = victoriametrics.export('{__name__="air_quality_pm2_5",device_id="dev-b"}', min_series=1)
    assert len(rows) == 1
    row = rows[0]
    assert row["metric"]["site"] == "test-site" and row["metric"]["profile_version"] == "1"
    assert "gateway_id" not in row["metric"]
    got = {t: v for t, v in zip(row["timestamps"], row["values"], strict=True) if t * 1_000_000 in ts}
    assert got == {t // 1_000_000: 40.5 + i for i, t in enumerate(ts)}
    # The fleet and read APIs need InfluxQL: a clear 501 here, not a 500.
    assert rc.operator().get("/v1/gateways").status_code == 501
    assert rc.reader().get("/v1/devices/dev-b/series").status_code == 501
    assert rc.client(rc.cloud_pki.gateway()).get("/readyz").status_code == 200


def test_v2_database_down_is_503(cloud_factory):
    rc = cloud_factory(
        influx_api="v2",
        influx_url="http://127.0.0.1:9",
        influx_token=SecretStr("t"),
        influx_org="o",
        influx_bucket="b",
        influxql_enabled=False,
    )
    resp = rc.gateway().post(
        "/v1/ingest", content=batch_body([reading()]), headers={"Content-Encoding": "gzip"}
    )
    assert resp.status_code == 503 and resp.headers["retry-after"] == "7"
