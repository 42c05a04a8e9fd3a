"""Certificates an attacker with a CA-signed but ill-formed identity would hold (for attack
scenarios and tests): signed by the city's real infrastructure CA, with a chosen CN and SAN URIs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citygate.certs.pki import CaName, CertFiles, Pki


def forged_certificate(pki: Pki, directory: Path, name: str, cn: str, uris: Sequence[str]) -> CertFiles:
    """A one-day clientAuth certificate issued by ``pki``'s infrastructure CA (files in ``directory``)."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert_path(CaName.INFRA).read_bytes())
    ca_key = serialization.load_pem_private_key((pki.settings.dir / "infra-ca" / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the infrastructure CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = CertFiles(
        cert=directory / f"{name}.pem", key=directory / f"{name}.key", chain=directory / f"{name}-chain.pem"
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    files.cert.write_bytes(pem)
    files.chain.write_bytes(pem + pki.ca_cert_path(CaName.INFRA).read_bytes())
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.key.chmod(0o600)
    return files


# Identities the cloud must refuse although the CA signed them (docs/PKI.md, "Who may report what").
UNCLEAR_IDENTITIES: dict[str, tuple[str, list[str]]] = {
    "two gateway identities": ("{gw}", ["urn:citygate:gateway:{gw}", "urn:citygate:gateway:{other}"]),
    "a CN other than its id": ("{other}", ["urn:citygate:gateway:{gw}"]),
    "an id that fails the id rules": ("bad id!", ["urn:citygate:gateway:bad id!"]),
    "a gateway and a device identity": ("{gw}", ["urn:citygate:gateway:{gw}", "urn:citygate:device:dev-x"]),
}


def unclear_identity_certificates(
    pki: Pki, directory: Path, gateway: str, other: str
) -> dict[str, CertFiles]:
    """One forged certificate per entry of :data:`UNCLEAR_IDENTITIES`, naming ``gateway``."""
    out = {}
    for i, (label, (cn, uris)) in enumerate(UNCLEAR_IDENTITIES.items()):
        out[label] = forged_certificate(
            pki,
            directory,
            f"unclear-{i}",
            cn.format(gw=gateway, other=other),
            [u.format(gw=gateway, other=other) for u in uris],
        )
    return out
