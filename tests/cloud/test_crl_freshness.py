"""The cloud's CRL: one past its nextUpdate (beyond a short grace) is not trusted, and an older CRL
(a lower CRL number) cannot take a revocation back. CRLs signed here with the real infrastructure CA."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from citygate.certs.pki import CaName, CertKind
from citygate.cloud.auth import AuthError, CertificateVerifier, RevocationUnavailable
from tests.conftest import GATEWAY_ID, PkiBundle


def _crl(pki, path: Path, *, number: int, next_update: dt.datetime, revoked: list[int]) -> None:
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert_path(CaName.INFRA).read_bytes())
    ca_key = serialization.load_pem_private_key((pki.settings.dir / "infra-ca" / "ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(min(now, next_update) - dt.timedelta(days=1))
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    path.write_bytes(b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))  # type: ignore[arg-type]


def _scope(test_pki: PkiBundle) -> dict:
    pem = test_pki.pki.files(CertKind.GATEWAY, GATEWAY_ID).cert.read_text()
    return {"extensions": {"tls": {"client_cert_chain": [pem]}}}


def _serial(test_pki: PkiBundle) -> int:
    pem = test_pki.pki.files(CertKind.GATEWAY, GATEWAY_ID).cert.read_bytes()
    return x509.load_pem_x509_certificate(pem).serial_number


def test_a_crl_past_its_next_update_beyond_the_grace_fails_closed(test_pki, tmp_path):
    crl = tmp_path / "crl.pem"
    now = dt.datetime.now(dt.UTC)
    _crl(test_pki.pki, crl, number=5, next_update=now - dt.timedelta(minutes=30), revoked=[])
    ca = test_pki.pki.ca_cert_path(CaName.INFRA)
    assert CertificateVerifier(ca, crl, grace_s=3600).gateway(_scope(test_pki)).gateway_id == GATEWAY_ID
    with pytest.raises(RevocationUnavailable, match="expired"):
        CertificateVerifier(ca, crl, grace_s=600).gateway(_scope(test_pki))


def test_an_older_crl_cannot_undo_a_revocation(test_pki, tmp_path):
    crl = tmp_path / "crl.pem"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    _crl(test_pki.pki, crl, number=7, next_update=later, revoked=[_serial(test_pki)])
    v = CertificateVerifier(test_pki.pki.ca_cert_path(CaName.INFRA), crl)
    with pytest.raises(AuthError) as e:
        v.gateway(_scope(test_pki))
    assert e.value.reason == "revoked"
    _crl(test_pki.pki, crl, number=6, next_update=later, revoked=[])  # an older one, put back
    with pytest.raises(AuthError) as e:
        v.gateway(_scope(test_pki))
    assert e.value.reason == "revoked" and v.crls_refused == 1
    _crl(test_pki.pki, crl, number=8, next_update=later, revoked=[])  # a newer one may lift it
    assert v.gateway(_scope(test_pki)).gateway_id == GATEWAY_ID
