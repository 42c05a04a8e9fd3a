"""No Prometheus label takes its value from a client.

On the code before this, the HTTP method was a label as sent: 4,000 anonymous requests with
invented 60 KB methods added 208 MB that never came back, and /metrics grew to 513 MB. Now
methods outside the standard set are "other", routes are templates or "unmatched", and every
other label passes a bounded vocabulary.
"""

from __future__ import annotations

import re
import ssl
import uuid

import pytest

from tests.cloud.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.servers


def _request_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("citygate_cloud_requests_total{")]


def test_invented_methods_and_paths_add_no_series(cloud_factory):
    cloud = cloud_factory(client_cert_mode="optional")
    anon = cloud.client(None)  # no certificate, no token: anybody
    methods = [f"X{uuid.uuid4().hex.upper()}{'M' * 2000}" for _ in range(30)]
    for m in methods:
        assert anon.request(m, f"/nothing/{uuid.uuid4().hex}").status_code in (404, 405)
        anon.request(m, "/healthz")
    for _ in range(30):
        anon.get(f"/v1/devices/{uuid.uuid4().hex}/series")  # a route template with a client's value
    op = cloud.client(cloud.cloud_pki.gateway(), token=OPERATOR_TOKEN)
    text = op.get("/metrics").text
    assert "XM" not in text and not any(m[:33] in text for m in methods)
    lines = _request_lines(text)
    methods_seen = {re.search(r'method="([^"]*)"', ln).group(1) for ln in lines}  # type: ignore[union-attr]
    assert methods_seen <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
    assert "other" in methods_seen
    routes = {re.search(r'route="([^"]*)"', ln).group(1) for ln in lines}  # type: ignore[union-attr]
    assert routes <= {"unmatched", "/healthz", "/v1/devices/{device_id}/series", "/metrics"}, routes
    assert len(lines) < 20, lines
    assert len(text) < 64 * 1024


def test_label_sets_are_bounded():
    from citygate.cloud.metrics import OTHER, CloudMetrics, LabelSet, status_label

    fixed = LabelSet(fixed=("a", "b"))
    assert [fixed(v) for v in ("a", "b", "c", None, 3)] == ["a", "b", OTHER, OTHER, OTHER]
    words = LabelSet(limit=3)
    assert [words(v) for v in ("x", "y", "Bad Value", "z", "w", "x")] == ["x", "y", OTHER, "z", OTHER, "x"]
    assert words("a" * 41) == OTHER
    assert status_label(200) == "200" and status_label(1000) == OTHER and status_label("200") == OTHER
    m = CloudMetrics()
    for i in range(500):
        m.rejected.labels(f"reason_{i}").inc()
        m.auth_failures.labels(f"r{i}").inc()
        m.db_errors.labels(f"k{i}", "maybe").inc()
        m.batches.labels(f"o{i}").inc()
        m.reads_refused.labels(f"x{i}").inc()
    text = m.render().decode()
    for name in ("rejected", "auth_failures", "db_errors", "batches", "reads_refused"):
        prefix = {
            "rejected": "citygate_cloud_readings_rejected_total{",
            "auth_failures": "citygate_cloud_auth_failures_total{",
            "db_errors": "citygate_cloud_db_errors_total{",
            "batches": "citygate_cloud_batches_total{",
            "reads_refused": "citygate_cloud_reads_refused_total{",
        }[name]
        assert sum(ln.startswith(prefix) for ln in text.splitlines()) <= 65, name
    assert 'retryable="other"' in text
    with pytest.raises(ValueError, match="label values"):
        m.rejected.labels("a", "b")


def test_a_raw_request_with_a_huge_method_is_other(cloud_factory):
    """The 60 KB method of the issue, over a raw TLS socket (h11 takes tokens up to 64 KB)."""
    import socket

    cloud = cloud_factory(client_cert_mode="optional")
    ctx = ssl.create_default_context(cafile=str(cloud.cloud_pki.infra_ca))
    raw = socket.create_connection(("127.0.0.1", cloud.settings.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        method = b"Q" * 60_000
        s.sendall(method + b" /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 ")
    text = cloud.client(cloud.cloud_pki.gateway(), token=OPERATOR_TOKEN).get("/metrics").text
    assert "QQQQ" not in text
