"""The PKI: key material, certificate profiles, trust separation, revocation, inventory."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citygate.certs.pki import CaName, CertKind, Pki, ca_for, certificate_identity, identity_problem
from citygate.certs.settings import PkiSettings
from citygate.contract.ids import validate_id
from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.errors import AlreadyExistsError, InvalidIdentifierError, NotFoundError, PkiError


def _rec(device_id: str, **kw) -> DeviceRecord:
    return DeviceRecord(device_id=device_id, profile="air_quality", profile_version=1, **kw)


@pytest.fixture
def pki(tmp_path) -> Pki:
    return Pki.init(PkiSettings(dir=tmp_path / "pki", device_days=30))


def _load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_creates_two_cas_with_private_keys_0600(pki):
    for ca in CaName:
        key = pki.dir / ca.value / "ca.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        cert = _load(pki.ca_cert_path(ca))
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert pki.crl_path(ca).exists()
    assert stat.S_IMODE(pki.dir.stat().st_mode) == 0o700
    device_ca, infra_ca = (_load(pki.ca_cert_path(c)) for c in (CaName.DEVICE, CaName.INFRA))
    assert device_ca.public_key() != infra_ca.public_key()


def test_init_refuses_to_overwrite_an_existing_ca(pki):
    before = (pki.dir / "device-ca" / "ca.key").read_bytes()
    with pytest.raises(AlreadyExistsError):
        Pki.init(pki.settings)
    assert (pki.dir / "device-ca" / "ca.key").read_bytes() == before


def test_opening_a_missing_pki_says_how_to_create_one(tmp_path):
    with pytest.raises(NotFoundError, match="citygate pki init"):
        Pki(PkiSettings(dir=tmp_path / "nothing"))


def test_device_certificate_profile(pki):
    files = pki.issue_device(_rec("aq-001"))
    cert = _load(files.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "aq-001"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert certificate_identity(cert) == (CertKind.DEVICE, "aq-001")
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    # Short by default for devices (configured 30 days here).
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=29) < lifetime <= dt.timedelta(days=30)


def test_trust_separation_device_ca_signs_only_devices(pki):
    device = _load(pki.issue_device(_rec("aq-001")).cert)
    gateway = _load(pki.issue_gateway("gw-1").cert)
    server = _load(pki.issue_server("broker.example", ips=["127.0.0.1"]).cert)
    device_ca = _load(pki.ca_cert_path(CaName.DEVICE))
    infra_ca = _load(pki.ca_cert_path(CaName.INFRA))
    device.verify_directly_issued_by(device_ca)
    gateway.verify_directly_issued_by(infra_ca)
    server.verify_directly_issued_by(infra_ca)
    with pytest.raises((InvalidSignature, ValueError)):
        device.verify_directly_issued_by(infra_ca)
    with pytest.raises((InvalidSignature, ValueError)):
        gateway.verify_directly_issued_by(device_ca)


def test_gateway_and_server_certificate_profiles(pki):
    gateway = _load(pki.issue_gateway("gw-1").cert)
    assert list(gateway.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert certificate_identity(gateway) == (CertKind.GATEWAY, "gw-1")
    server = _load(pki.issue_server("broker.example", ips=["127.0.0.1"], extra_dns=["mqtt"]).cert)
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example", "mqtt"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert certificate_identity(server) is None


@pytest.mark.parametrize(
    "bad",
    ["", "a+b", "a#", "dev/1", "dev\x00", "dev\n1", "x" * 65, "-leading", "spa ce", "ünï"],
)
def test_bad_ids_are_refused_with_a_clear_message(pki, bad):
    with pytest.raises(InvalidIdentifierError) as e:
        validate_id(bad, kind="device id")
    assert "device id" in str(e.value)
    with pytest.raises(ValueError):  # pydantic wraps the same check for inventory records
        _rec(bad)
    with pytest.raises(InvalidIdentifierError):
        pki.issue_gateway(bad)
    assert pki.certificates() == []


def test_server_hostname_validated(pki):
    with pytest.raises(InvalidIdentifierError):
        pki.issue_server("bad_host!")
    with pytest.raises(PkiError):
        pki.issue_server("ok.example", ips=["not-an-ip"])


def test_issuing_twice_is_refused_and_renew_rotates(pki):
    first = pki.issue_device(_rec("aq-001"))
    first_serial = _load(first.cert).serial_number
    with pytest.raises(AlreadyExistsError, match="--renew"):
        pki.issue_device(_rec("aq-001"))
    assert _load(first.cert).serial_number == first_serial
    second = pki.issue_device(_rec("aq-001"), renew=True)
    assert _load(second.cert).serial_number != first_serial
    archived = second.cert.parent / "archive" / format(first_serial, "x") / "cert.pem"
    assert _load(archived).serial_number == first_serial
    statuses = sorted(c.status() for c in pki.certificates() if c.name == "aq-001")
    assert statuses == ["superseded", "valid"]


def test_issue_device_registers_it_in_the_inventory(pki):
    pki.issue_device(_rec("aq-001", site="townhall", district="centre", lat=52.1, lon=4.3))
    pki.issue_devices([_rec("aq-002"), _rec("aq-003")])
    inv = Inventory.load(pki.inventory_path)
    assert set(inv) == {"aq-001", "aq-002", "aq-003"}
    assert inv["aq-001"].site == "townhall" and inv["aq-001"].lat == 52.1


def test_revoke_puts_the_serial_on_the_right_crl_with_next_update(pki):
    device = _load(pki.issue_device(_rec("aq-001")).cert)
    gateway = _load(pki.issue_gateway("gw-1").cert)
    revoked = pki.revoke("aq-001", reason="keyCompromise")
    assert [c.serial for c in revoked] == [device.serial_number]
    device_crl = x509.load_pem_x509_crl(pki.crl_path(CaName.DEVICE).read_bytes())
    infra_crl = x509.load_pem_x509_crl(pki.crl_path(CaName.INFRA).read_bytes())
    assert device_crl.get_revoked_certificate_by_serial_number(device.serial_number) is not None
    assert infra_crl.get_revoked_certificate_by_serial_number(gateway.serial_number) is None
    assert device_crl.is_signature_valid(_load(pki.ca_cert_path(CaName.DEVICE)).public_key())
    assert device_crl.next_update_utc is not None
    assert device_crl.next_update_utc - device_crl.last_update_utc == dt.timedelta(days=7)
    assert [c.status() for c in pki.certificates() if c.name == "aq-001"] == ["revoked"]
    # Re-signing keeps the revocation and raises the CRL number.
    number = device_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    pki.write_crls()
    again = x509.load_pem_x509_crl(pki.crl_path(CaName.DEVICE).read_bytes())
    assert again.get_revoked_certificate_by_serial_number(device.serial_number) is not None
    assert again.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1


def test_revoke_unknown_or_ambiguous_names(pki):
    with pytest.raises(NotFoundError):
        pki.revoke("nobody")
    pki.issue_device(_rec("shared-name"))
    pki.issue_gateway("shared-name")
    with pytest.raises(PkiError, match="--kind"):
        pki.revoke("shared-name")
    assert len(pki.revoke("shared-name", kind=CertKind.GATEWAY)) == 1


def test_certificate_cannot_outlive_its_ca(tmp_path):
    pki = Pki.init(PkiSettings(dir=tmp_path / "p", ca_days=30))
    with pytest.raises(PkiError, match="outlive"):
        pki.issue_gateway("gw-1", days=365)


def test_expired_certificates_show_as_expired(pki):
    pki.issue_device(_rec("old"), not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10), days=1)
    (entry,) = [c for c in pki.certificates() if c.name == "old"]
    assert entry.status() == "expired"
    assert entry.days_left() < 0


# -- people's client certificates: readers and operators, the client CA --------------------------


@pytest.mark.parametrize(
    ("kind", "issue"), [(CertKind.READER, "issue_reader"), (CertKind.OPERATOR, "issue_operator")]
)
def test_reader_and_operator_certificates_come_from_the_client_ca(pki, kind, issue):
    files = getattr(pki, issue)("ana")
    cert = _load(files.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ana"
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:citygate:{kind.value}:ana"]
    assert certificate_identity(cert) == (kind, "ana") and identity_problem(cert) is None
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert ca_for(kind) is CaName.CLIENT
    # Issued by the client CA, and never by the infrastructure CA: the broker's gateway
    # listener trusts every infrastructure certificate.
    cert.verify_directly_issued_by(_load(pki.ca_cert_path(CaName.CLIENT)))
    for other in (CaName.INFRA, CaName.DEVICE):
        with pytest.raises((InvalidSignature, ValueError)):
            cert.verify_directly_issued_by(_load(pki.ca_cert_path(other)))
    assert [(c.kind, c.name, c.ca) for c in pki.certificates()] == [(kind, "ana", CaName.CLIENT)]
    assert files.cert.parent == pki.dir / "issued" / kind.value / "ana"


def test_init_creates_the_client_ca_with_its_crl(pki):
    key = pki.dir / "client-ca" / "ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert pki.crl_next_update(CaName.CLIENT) is not None
    names = {_load(pki.ca_cert_path(c)).subject for c in CaName}
    assert len(names) == 3  # three distinct CAs
    assert set(pki.write_crls()) == set(CaName)


def test_an_older_pki_without_a_client_ca_gets_one_on_first_person_certificate(pki):
    import shutil

    shutil.rmtree(pki.dir / "client-ca")  # as made before the client CA existed
    old = Pki(pki.settings)
    gw = old.issue_gateway("gw-1")  # the rest keeps working
    assert set(old.write_crls()) == {CaName.DEVICE, CaName.INFRA}
    assert old.crl_next_update(CaName.CLIENT) is None
    assert set(old.ca_certificates()) == {CaName.DEVICE, CaName.INFRA}
    files = old.issue_reader("ana")
    assert stat.S_IMODE((pki.dir / "client-ca" / "ca.key").stat().st_mode) == 0o600
    _load(files.cert).verify_directly_issued_by(_load(old.ca_cert_path(CaName.CLIENT)))
    assert old.crl_next_update(CaName.CLIENT) is not None
    assert not old.ensure_ca(CaName.CLIENT)  # made once
    # Revocation lands on the client CA's CRL, and every CA's CRL is re-signed.
    numbers_before = {
        ca: _crl(old, ca).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for ca in CaName
    }
    (revoked,) = old.revoke("ana", kind=CertKind.READER)
    for ca in CaName:
        crl = _crl(old, ca)
        assert (
            crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == numbers_before[ca] + 1
        )
        assert (crl.get_revoked_certificate_by_serial_number(revoked.serial) is not None) is (
            ca is CaName.CLIENT
        )
    assert _load(gw.cert).serial_number not in {r.serial_number for r in _crl(old, CaName.INFRA)}


def test_person_certificates_refuse_other_kinds_and_bad_names(pki):
    with pytest.raises(PkiError, match="reader, operator"):
        pki.issue_person(CertKind.GATEWAY, "gw-1")
    with pytest.raises(InvalidIdentifierError, match="reader name"):
        pki.issue_reader("a/b")
    pki.issue_reader("ana")
    with pytest.raises(AlreadyExistsError):
        pki.issue_reader("ana")
    pki.issue_operator("ana")  # another kind, another identity
    with pytest.raises(PkiError, match="several kinds"):
        pki.revoke("ana")


def _crl(pki: Pki, ca: CaName) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(pki.crl_path(ca).read_bytes())
