"""Fuzz POST /v1/ingest with hypothesis: every answer is a 2xx or a specific 4xx, never a 500.

The app runs in-process (starlette TestClient) with the TLS extension set to
a real gateway certificate, as the TLS protocol class would set it, and a real
InfluxDB behind it; the identity tests use the real TLS server instead.
"""

from __future__ import annotations

import gzip
import ssl
import uuid
import warnings

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citygate.cloud.app import create_app
from citygate.cloud.tls import _WithTls
from tests.cloud.conftest import make_settings

with warnings.catch_warnings():  # starlette suggests httpx2 for its TestClient; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.servers

ALLOWED = {200, 400, 413, 415, 422}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
fields = st.sampled_from(["pm2_5", "pm10", "no2", "o3", "co", "temperature", "humidity", "battery", "x", ""])
wire_readings = st.fixed_dictionaries(
    {"device_id": st.one_of(st.sampled_from(["dev-a", "dev-b", "dev-n", "nope", ""]), json_values)},
    optional={
        "ts": st.one_of(
            st.integers(min_value=1_700_000_000_000, max_value=1_900_000_000_000),
            json_values,
            st.sampled_from(["2026-11-28T12:00:00Z", "2026-11-28T12:00:00.123456789+01:00"]),
        ),
        "seq": st.one_of(st.integers(min_value=-5, max_value=2**64 - 1), json_values),
        "readings": st.one_of(
            st.dictionaries(fields, st.one_of(st.floats(-100, 3000), json_scalars), max_size=9), json_values
        ),
        "extra": json_values,
    },
)
batches = st.fixed_dictionaries(
    {
        "batch_id": st.one_of(st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True), json_values),
        "readings": st.one_of(st.lists(st.one_of(wire_readings, json_values), max_size=20), json_values),
    },
    optional={"gateway_id": st.text(max_size=5)},
)


@pytest.fixture(scope="module")
def fuzz_client(cloud_pki, influxdb, tmp_path_factory):
    db = f"fuzz_{uuid.uuid4().hex[:6]}"
    influxdb.create_database(db)
    s = make_settings(
        cloud_pki,
        tmp_path_factory.mktemp("fuzz"),
        influx_url=influxdb.url,
        influx_db=db,
        max_body_bytes=64 * 1024,
        max_decompressed_bytes=256 * 1024,
        max_batch_readings=50,
    )
    pem = ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(cloud_pki.gateway().cert.read_text()))
    app = create_app(s)
    wrapped = _WithTls(app, {"client_cert_chain": [pem], "tls_version": 0x0304})
    with TestClient(wrapped, base_url="https://testserver", raise_server_exceptions=False) as client:
        yield client


def _post(client, body: bytes, encoding: str | None):
    headers = {"Content-Encoding": encoding} if encoding else {}
    resp = client.post("/v1/ingest", content=body, headers=headers)
    assert resp.status_code in ALLOWED, (resp.status_code, resp.text[:500])
    if resp.status_code == 200:
        doc = resp.json()
        assert doc["accepted"] >= 0 and all(r["reason"] for r in doc["rejected"])
    else:
        assert resp.json()["error"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=batches, gz=st.booleans())
def test_fuzz_structured_batches(fuzz_client, doc, gz):
    raw = orjson.dumps(doc)
    _post(fuzz_client, gzip.compress(raw) if gz else raw, "gzip" if gz else None)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2000), encoding=st.sampled_from([None, "gzip", "identity", "br", "GZIP", ""]))
def test_fuzz_raw_bytes(fuzz_client, body, encoding):
    _post(fuzz_client, body, encoding)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=json_values)
def test_fuzz_any_json_gzipped(fuzz_client, doc):
    _post(fuzz_client, gzip.compress(orjson.dumps(doc)), "gzip")
