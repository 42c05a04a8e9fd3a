"""Every response carries nosniff, no-referrer and HSTS; /docs and /redoc (CDN scripts) are off by default.

On the code before this, /docs and /redoc loaded Swagger UI and ReDoc from a CDN onto the
dashboard's origin, where the operator token lives, and no response had these headers.
"""

from __future__ import annotations

import pytest

from tests.cloud.conftest import post_batch, reading

pytestmark = pytest.mark.servers

EXPECTED = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "strict-transport-security": "max-age=31536000",
}


def _has_headers(resp) -> None:
    for k, v in EXPECTED.items():
        assert resp.headers.get(k) == v, (resp.request.url, k, resp.headers)


def test_every_response_has_the_security_headers(cloud_v1):
    anon_ok = cloud_v1.client(cloud_v1.cloud_pki.gateway())
    reader, op, gw = cloud_v1.reader(), cloud_v1.operator(), cloud_v1.gateway()
    responses = [
        anon_ok.get("/healthz"),
        anon_ok.get("/readyz"),
        anon_ok.get("/metrics"),  # 401
        anon_ok.get("/no/such/path"),  # 404
        anon_ok.get("/openapi.json"),
        op.get("/dashboard"),
        op.get("/dashboard/static/app.js"),
        op.get("/v1/gateways"),
        reader.get("/v1/devices/dev-a/series"),
        reader.get("/v1/devices/dev-a/series", params={"format": "csv"}),
        reader.get("/v1/devices/dev-a/series", params={"start": "²"}),  # 422
        post_batch(gw, [reading()]),
        gw.post("/v1/ingest", content=b"not gzip", headers={"Content-Encoding": "gzip"}),  # 400
    ]
    for resp in responses:
        _has_headers(resp)
    dash = op.get("/dashboard")
    assert "default-src 'self'" in dash.headers["content-security-policy"]  # the route's own, kept


def test_api_docs_are_off_by_default_and_openapi_json_stays(cloud_v1):
    c = cloud_v1.client(cloud_v1.cloud_pki.gateway())
    assert c.get("/docs").status_code == 404
    assert c.get("/redoc").status_code == 404
    assert c.get("/docs/oauth2-redirect").status_code == 404
    assert "/v1/ingest" in c.get("/openapi.json").json()["paths"]


def test_api_docs_when_asked_for(cloud_factory):
    cloud = cloud_factory(api_docs=True)
    resp = cloud.client(cloud.cloud_pki.gateway()).get("/docs")
    assert resp.status_code == 200 and "swagger" in resp.text.lower()
    _has_headers(resp)
