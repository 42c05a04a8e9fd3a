"""What a citygate certificate says its holder is: the kinds, which CA signs each, the SAN URI
``urn:citygate:<kind>:<id>``, and whether a certificate names exactly one clear identity.

Pure functions over parsed certificates; the CA that issues them is :mod:`citygate.certs.pki`,
the cloud's checks are :mod:`citygate.cloud.auth`.
"""

from __future__ import annotations

from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import NameOID

from citygate.contract.ids import validate_id
from citygate.errors import InvalidIdentifierError


class CertKind(StrEnum):
    DEVICE = "device"
    GATEWAY = "gateway"
    SERVER = "server"
    READER = "reader"  # a person's client certificate (client CA); a token still decides the role
    OPERATOR = "operator"


class CaName(StrEnum):
    DEVICE = "device-ca"
    INFRA = "infra-ca"
    CLIENT = "client-ca"  # people: readers and operators


PERSON_KINDS = frozenset({CertKind.READER, CertKind.OPERATOR})
_CLIENT_KINDS = frozenset({"device", "gateway", "reader", "operator"})  # kinds a SAN URI may name


def ca_for(kind: CertKind) -> CaName:
    """Which CA signs which kind: the heart of the trust separation."""
    if kind is CertKind.DEVICE:
        return CaName.DEVICE
    return CaName.CLIENT if kind in PERSON_KINDS else CaName.INFRA


def identity_uri(kind: CertKind, name: str) -> str:
    """The SAN URI that names a certificate's role and identity."""
    return f"urn:citygate:{kind.value}:{name}"


def certificate_identity(cert: x509.Certificate) -> tuple[CertKind, str] | None:
    """(kind, name) from a citygate certificate's SAN URI, or None if it has none or its identity
    is not exactly one (see :func:`identity_problem`)."""
    return None if identity_problem(cert) else _identity(cert)


def _identity(cert: x509.Certificate) -> tuple[CertKind, str] | None:
    found = _citygate_uris(cert)
    if len(found) != 1 or found[0][0] not in _CLIENT_KINDS:
        return None
    return CertKind(found[0][0]), found[0][1]


def _citygate_uris(cert: x509.Certificate) -> list[tuple[str, str]]:
    """(kind, id) of every ``urn:citygate:<kind>:<id>`` URI in the certificate's SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        parts = uri.split(":", 3)
        if len(parts) >= 3 and parts[:2] == ["urn", "citygate"]:
            out.append((parts[2], parts[3] if len(parts) == 4 else ""))
    return out


def identity_problem(cert: x509.Certificate) -> str | None:
    """Why this certificate's citygate identity cannot be trusted, or None if it is one clear
    device, gateway, reader or operator identity: exactly one ``urn:citygate:`` URI, of a known
    kind, whose id passes the id rules and equals the subject's CN."""
    found = _citygate_uris(cert)
    if not found:
        return "it names no citygate identity (no urn:citygate: URI)"
    if len(found) > 1:
        return f"it names {len(found)} citygate identities; a certificate must name exactly one"
    kind, name = found[0]
    if kind not in _CLIENT_KINDS:
        return f"its urn:citygate: URI names no device, gateway, reader or operator ({kind[:20]!r})"
    try:
        validate_id(name, kind=f"{kind} id")
    except InvalidIdentifierError as e:
        return f"its {kind} id is not valid: {e}"
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or cns[0].value != name:
        return f"its subject CN does not equal its {kind} id {name!r}"
    return None
