"""Building keys and certificates with ``cryptography``: the CA's own certificate, leaf
certificates, private key files. The policy (who gets which kind, from which CA, for how long)
is :mod:`citygate.certs.pki`'s."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citygate.certs.identity import CertKind, identity_uri
from citygate.certs.settings import PkiSettings
from citygate.errors import AlreadyExistsError
from citygate.fsutil import atomic_write


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a key 0600, refusing to replace an existing file."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise AlreadyExistsError(f"refusing to overwrite existing private key {path}") from e
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """digitalSignature for every key; keyCertSign and cRLSign only for a CA's."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def create_ca(d: Path, title: str, settings: PkiSettings, now: dt.datetime, clock_skew: dt.timedelta) -> None:
    """A self-signed CA (EC P-256) in ``d``: ca.key (0600) and ca.pem."""
    d.mkdir(mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(d / "ca.key", key)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.organization),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{settings.organization} {title}"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - clock_skew)
        .not_valid_after(now + dt.timedelta(days=settings.ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    atomic_write(d / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def build_leaf(
    kind: CertKind,
    name: str,
    public_key: ec.EllipticCurvePublicKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    start: dt.datetime,
    end: dt.datetime,
    organization: str,
    server_sans: list[x509.GeneralName] | None,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"{kind.value}s"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    if kind is CertKind.SERVER:
        eku = [ExtendedKeyUsageOID.SERVER_AUTH]
        sans = server_sans or [x509.DNSName(name)]
    else:
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH]
        sans = [x509.UniformResourceIdentifier(identity_uri(kind, name))]
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
