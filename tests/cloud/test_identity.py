"""Gateway identity comes from the client certificate only; everything else is refused."""

from __future__ import annotations

import ssl

import httpx
import pytest

from citygate.certs.pki import CaName, CertKind
from citygate.contract.inventory import GatewayRecord, Inventory
from tests.cloud.conftest import (
    OPERATOR_TOKEN,
    OTHER_GATEWAY,
    READER_TOKEN,
    REVOKED_GATEWAY,
    post_batch,
    reading,
)

pytestmark = pytest.mark.servers

HEALTH = {
    "agent_version": "0.1.0",
    "uptime_s": 12.5,
    "readings_in": 100,
    "readings_out": 90,
    "rejected": {"out_of_range": 2},
    "dropped": {"outbox_full": 3},
    "outbox_depth": 10,
    "outbox_bytes": 4096,
    "oldest_unsent_age_s": 4.5,
    "last_forward_at": "2026-01-01T00:00:00Z",
    "disk_free_bytes": 10**9,
    "rss_bytes": 50 * 2**20,
    "cpu_percent": 3.5,
    "broker_connected": True,
    "cert_days_left": 999.0,
}


def _refused_at_handshake(fn):
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)):
        fn()


def test_no_client_certificate_is_refused(cloud_v1):
    c = cloud_v1.client(None)
    _refused_at_handshake(lambda: post_batch(c, [reading()]))


def test_certificate_from_another_ca_is_refused(cloud_v1):
    other = cloud_v1.cloud_pki.bundle.other_pki
    c = cloud_v1.client(other.files(CertKind.GATEWAY, "gw-test"))  # same name, foreign CA
    _refused_at_handshake(lambda: post_batch(c, [reading()]))


def test_device_certificate_is_refused(cloud_v1):
    c = cloud_v1.client(cloud_v1.cloud_pki.bundle.device("dev-a"))
    _refused_at_handshake(lambda: post_batch(c, [reading()]))


def test_server_certificate_is_not_a_gateway(cloud_v1):
    c = cloud_v1.client(cloud_v1.cloud_pki.server)
    try:
        resp = post_batch(c, [reading()])
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return  # refused by TLS (serverAuth-only EKU): also fine
    assert resp.status_code == 403 and resp.json()["error"] == "not_a_gateway"


def test_revoked_gateway_is_refused(cloud_v1):
    resp = post_batch(cloud_v1.gateway(REVOKED_GATEWAY), [reading()])
    assert resp.status_code == 403 and resp.json()["error"] == "revoked"


def test_revocation_takes_effect_without_restart(cloud_v1):
    pki = cloud_v1.cloud_pki.bundle.pki
    name = "gw-cloud-late"
    if (CertKind.GATEWAY, name) not in {(c.kind, c.name) for c in pki.certificates()}:
        pki.issue_gateway(name)
    # Registered in the cloud's own inventory (the test cloud's is not the PKI's).
    inventory = cloud_v1.settings.inventory
    Inventory.load(inventory).with_gateways(GatewayRecord(gateway_id=name)).save(inventory)
    cloud_v1.app.state.cloud.inventory.refresh()
    gw = cloud_v1.gateway(name)
    assert post_batch(gw, [reading()]).status_code == 200
    pki.revoke(name, kind=CertKind.GATEWAY)
    resp = post_batch(gw, [reading()])  # same TLS connection, same process
    assert resp.status_code == 403 and resp.json()["error"] == "revoked"


def test_gateway_id_comes_from_the_certificate_not_the_body(cloud_v1):
    resp = post_batch(cloud_v1.gateway(OTHER_GATEWAY), [reading()])
    assert resp.status_code == 200
    assert resp.json()["gateway_id"] == OTHER_GATEWAY
    # A gateway_id in the body is not a thing: the batch is refused as malformed.
    import gzip

    import orjson

    body = gzip.compress(orjson.dumps({"batch_id": "x1", "gateway_id": "gw-test", "readings": []}))
    resp = cloud_v1.gateway(OTHER_GATEWAY).post(
        "/v1/ingest", content=body, headers={"Content-Encoding": "gzip"}
    )
    assert resp.status_code == 422


def test_gateway_a_cannot_heartbeat_as_gateway_b(cloud_v1):
    b = cloud_v1.gateway(OTHER_GATEWAY)
    resp = b.post("/v1/gateways/gw-test/heartbeat", json=HEALTH)
    assert resp.status_code == 403
    assert b.post(f"/v1/gateways/{OTHER_GATEWAY}/heartbeat", json=HEALTH).status_code == 200
    # The fleet view shows B's numbers under B only.
    fleet = cloud_v1.operator().get("/v1/gateways").json()["gateways"]
    by_id = {g["gateway_id"]: g for g in fleet}
    assert by_id[OTHER_GATEWAY]["backlog"] == 10
    if "gw-test" in by_id:
        assert by_id["gw-test"]["agent_version"] != "spoofed"


def test_reads_need_a_token(cloud_v1):
    gw_only = cloud_v1.client(cloud_v1.cloud_pki.gateway())
    for path in ("/v1/devices/dev-a/series", "/v1/gateways", "/v1/devices"):
        resp = gw_only.get(path)
        assert resp.status_code == 401, path
        assert resp.headers["www-authenticate"] == "Bearer"
    bad = cloud_v1.client(cloud_v1.cloud_pki.gateway(), token="x" * 40)
    assert bad.get("/v1/devices/dev-a/series").status_code == 401
    reader = cloud_v1.client(cloud_v1.cloud_pki.gateway(), token=READER_TOKEN)
    assert reader.get("/v1/devices/dev-a/series").status_code == 200
    assert reader.get("/v1/gateways").status_code == 403  # fleet view: operators only
    op = cloud_v1.client(cloud_v1.cloud_pki.gateway(), token=OPERATOR_TOKEN)
    assert op.get("/v1/gateways").status_code == 200


def test_readers_cannot_ingest(cloud_v1, cloud_factory):
    """In optional-certificate mode a token-only client reads, but can never write."""
    rc = cloud_factory(client_cert_mode="optional", influx_url="http://127.0.0.1:9", influxql_enabled=False)
    reader = rc.client(None, token=READER_TOKEN)
    resp = post_batch(reader, [reading()])
    assert resp.status_code == 401 and resp.json()["error"] == "no_client_cert"
    assert rc.client(None).get("/healthz").status_code == 200
    # A foreign certificate is still refused by TLS, even when certificates are optional.
    other = rc.cloud_pki.bundle.other_pki
    _refused_at_handshake(lambda: rc.client(other.files(CertKind.GATEWAY, "gw-test")).get("/healthz"))
    assert rc.cloud_pki.bundle.pki.crl_path(CaName.INFRA).exists()
