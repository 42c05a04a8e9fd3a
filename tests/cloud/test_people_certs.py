"""Readers' and operators' own client certificates (client CA, ``people_ca``) with
``client_cert_mode = "required"``: they get a reader through the TLS handshake without a gateway
certificate, their token still decides what they may do, they never pass as a gateway, and a
revoked one is refused. Real uvicorn with mTLS, real InfluxDB, certificates from the project's PKI."""

from __future__ import annotations

import shutil
import ssl
import uuid
from typing import Any

import httpx
import pytest

from citygate.certs.pki import CaName, CertFiles, CertKind
from citygate.servers.process import free_port
from tests.cloud.conftest import OPERATOR_TOKEN, READER_TOKEN, post_batch, reading

HANDSHAKE_REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)


def _people(test_pki: Any) -> dict[str, Any]:
    pki = test_pki.pki
    return {"people_ca": pki.ca_cert_path(CaName.CLIENT), "people_crl": pki.crl_path(CaName.CLIENT)}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def db(influxdb: Any) -> str:
    name = f"people_{uuid.uuid4().hex[:8]}"
    influxdb.create_database(name)
    return name


@pytest.mark.servers
def test_a_reader_certificate_and_a_token_read_when_certificates_are_required(
    cloud_factory, influxdb, db, test_pki
):
    pki = test_pki.pki
    reader_name, operator_name = _name("ana"), _name("bo")
    reader_cert, operator_cert = pki.issue_reader(reader_name), pki.issue_operator(operator_name)
    rc = cloud_factory(
        influx_url=influxdb.url, influx_db=db, client_cert_mode="required", **_people(test_pki)
    )
    reader = rc.client(reader_cert, token=READER_TOKEN)
    assert reader.get("/v1/devices/dev-a/series").status_code == 200
    # The certificate alone grants nothing: the token decides the role.
    resp = rc.client(reader_cert).get("/v1/devices/dev-a/series")
    assert resp.status_code == 401 and resp.json()["error"] == "no_token", resp.text
    resp = rc.client(operator_cert, token=READER_TOKEN).get("/v1/devices")
    assert resp.status_code == 403 and resp.json()["error"] == "not_operator", resp.text
    assert rc.client(operator_cert, token=OPERATOR_TOKEN).get("/v1/devices").status_code == 200
    assert rc.client(reader_cert, token=OPERATOR_TOKEN).get("/v1/devices").status_code == 200
    # Never a gateway: the gateway routes want a gateway certificate of the infrastructure CA.
    resp = post_batch(rc.client(reader_cert), [reading()])
    assert resp.status_code == 403 and resp.json()["error"] == "wrong_ca", resp.text
    resp = rc.client(operator_cert).post("/v1/gateways/gw-test/heartbeat", json={})
    assert resp.status_code == 403 and resp.json()["error"] == "wrong_ca", resp.text
    # Gateways and gateway-certificate readers are as before.
    assert post_batch(rc.gateway(), [reading()]).json()["accepted"] == 1
    assert rc.reader().get("/v1/devices/dev-a/series").status_code == 200
    # Anonymous clients still fail the handshake.
    with pytest.raises(HANDSHAKE_REFUSED):
        rc.client(None, token=READER_TOKEN).get("/healthz")


@pytest.mark.servers
def test_a_revoked_reader_certificate_is_refused_at_once(cloud_factory, influxdb, db, test_pki):
    pki = test_pki.pki
    name = _name("carl")
    cert = pki.issue_reader(name)
    rc = cloud_factory(
        influx_url=influxdb.url, influx_db=db, client_cert_mode="required", **_people(test_pki)
    )
    kept_alive = rc.client(cert, token=READER_TOKEN)
    assert kept_alive.get("/v1/devices/dev-a/series").status_code == 200
    pki.revoke(name, kind=CertKind.READER, reason="keyCompromise")
    # On a new connection and on the one kept alive; every route, even the probes.
    for client in (rc.client(cert, token=READER_TOKEN), kept_alive):
        for path in ("/v1/devices/dev-a/series", "/healthz", "/dashboard"):
            resp = client.get(path)
            assert resp.status_code == 403 and resp.json()["error"] == "revoked", (path, resp.text)
    metrics = rc.operator().get("/metrics").text
    assert 'citygate_cloud_auth_failures_total{reason="revoked"} 6.0' in metrics


@pytest.mark.servers
def test_an_unreadable_people_crl_fails_closed_for_people_certificates_only(
    cloud_factory, influxdb, db, test_pki, tmp_path
):
    pki = test_pki.pki
    cert = pki.issue_reader(_name("dora"))
    crl = tmp_path / "people-crl.pem"
    shutil.copy(pki.crl_path(CaName.CLIENT), crl)
    rc = cloud_factory(
        influx_url=influxdb.url,
        influx_db=db,
        client_cert_mode="required",
        people_ca=pki.ca_cert_path(CaName.CLIENT),
        people_crl=crl,
    )
    assert rc.client(cert, token=READER_TOKEN).get("/v1/devices/dev-a/series").status_code == 200
    crl.write_text("not a CRL")
    resp = rc.client(cert, token=READER_TOKEN).get("/v1/devices/dev-a/series")
    assert resp.status_code == 503 and resp.json()["error"] == "crl_unavailable", resp.text
    assert rc.reader().get("/v1/devices/dev-a/series").status_code == 200  # gateway-certificate readers


def test_without_people_ca_a_reader_certificate_fails_the_handshake(cloud_factory, test_pki):
    cert = test_pki.pki.issue_reader(_name("eve"))
    rc = cloud_factory(client_cert_mode="required")
    with pytest.raises(HANDSHAKE_REFUSED):
        rc.client(cert, token=READER_TOKEN).get("/healthz")
    assert rc.reader().get("/healthz").status_code == 200


@pytest.mark.servers
def test_the_gateway_listener_never_trusts_the_client_ca(cloud_factory, influxdb, db, test_pki):
    cert: CertFiles = test_pki.pki.issue_reader(_name("finn"))
    rc = cloud_factory(
        influx_url=influxdb.url,
        influx_db=db,
        client_cert_mode="required",
        gateway_port=free_port(),
        **_people(test_pki),
    )
    ctx = ssl.create_default_context(cafile=str(rc.cloud_pki.infra_ca))
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    url = f"https://localhost:{rc.settings.gateway_port}"
    with (
        httpx.Client(base_url=url, verify=ctx, timeout=10, trust_env=False) as c,
        pytest.raises(HANDSHAKE_REFUSED),
    ):
        c.get("/healthz")
    assert rc.client(cert, token=READER_TOKEN).get("/v1/devices/dev-a/series").status_code == 200


def test_people_ca_and_people_crl_go_together(test_pki, tmp_path, cloud_pki):
    from tests.cloud.conftest import make_settings

    with pytest.raises(ValueError, match="people_ca and people_crl go together"):
        make_settings(cloud_pki, tmp_path, people_ca=test_pki.pki.ca_cert_path(CaName.CLIENT))
    with pytest.raises(ValueError, match="not the infrastructure CA"):
        make_settings(
            cloud_pki, tmp_path, people_ca=cloud_pki.infra_ca, people_crl=test_pki.pki.crl_path(CaName.INFRA)
        )
