"""Who is calling: gateways by their client certificate, readers and operators by token.

A gateway's id comes from its certificate (SAN ``urn:citygate:gateway:<id>``,
:func:`citygate.certs.pki.certificate_identity`), never from the body or the
URL (docs/ARCHITECTURE.md, guarantee 5). The TLS layer already refused certificates that do
not chain to the infrastructure CA (device CA, foreign CAs); here the app
checks again that the certificate was issued by that CA, that it names a
gateway, and that its serial is not on the CA's CRL. The CRL file is re-read
when it changes on disk, so ``citygate pki revoke`` takes effect without a
restart (unlike Mosquitto, which reads it only at start and on SIGHUP).

Readers and operators may present a certificate of the client CA (``people_ca``;
``citygate pki issue reader|operator``) on the main listener. It only gets them
through a TLS handshake that requires a certificate: their bearer token still
decides what they may do. :class:`PersonCertGuard` refuses every request that
presents a revoked, expired or malformed one (403), the client CA's CRL reloaded
on change like the infrastructure CA's.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from pydantic import SecretStr

from citygate.certs.identity import PERSON_KINDS, CertKind, certificate_identity, identity_problem
from citygate.contract.filestamp import FileStamp, file_stamp
from citygate.errors import AuthError, RevocationUnavailable

log = structlog.get_logger("citygate.cloud.auth")


@dataclass(frozen=True, slots=True)
class ClientCert:
    """What the app needs from a verified client certificate (parsed once per certificate)."""

    kind: CertKind | None
    name: str | None
    serial: int
    not_after: dt.datetime
    issuer_ok: bool
    problem: str | None  # why its citygate identity cannot be trusted (pki.identity_problem)


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    gateway_id: str
    serial: int
    not_after: dt.datetime

    def cert_days_left(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).total_seconds() / 86400.0


@dataclass(frozen=True, slots=True)
class PersonIdentity:
    kind: CertKind  # READER or OPERATOR: who the certificate says, not what the token allows
    name: str
    serial: int


class CertificateVerifier:
    """Parses client certificates, checks the issuer, and checks the CRL (reloaded on change)."""

    def __init__(
        self, ca_path: Path, crl_path: Path, *, grace_s: float = 3600.0, warn_s: float = 2 * 86400.0
    ) -> None:
        self._ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        self._crl_path = crl_path
        self._grace = dt.timedelta(seconds=grace_s)
        self._warn = dt.timedelta(seconds=warn_s)
        self._warned_at: dt.datetime | None = None
        self._lock = threading.Lock()
        self._crl_key: FileStamp | None = None
        self._revoked: frozenset[int] | None = None
        self._crl_next_update: dt.datetime | None = None
        self._crl_number: int | None = None  # the highest seen: an older CRL must not undo a revocation
        self.crls_refused = 0
        self._parse = functools.lru_cache(maxsize=4096)(self._parse_uncached)
        self.reload_crl()

    @property
    def crl_next_update(self) -> dt.datetime | None:
        return self._crl_next_update

    def reload_crl(self) -> None:
        """Re-read the CRL if the file changed; a bad CRL makes gateway calls fail closed."""
        key = file_stamp(self._crl_path)
        if key == self._crl_key and self._revoked is not None:
            return
        with self._lock:
            if key == self._crl_key and self._revoked is not None:
                return
            try:
                crl = x509.load_pem_x509_crl(self._crl_path.read_bytes())
            except (OSError, ValueError) as e:
                self._revoked, self._crl_key = None, key
                log.error("crl_unreadable", path=str(self._crl_path), error=str(e))
                return
            public_key = self._ca.public_key()
            if crl.issuer != self._ca.subject or not crl.is_signature_valid(public_key):  # type: ignore[arg-type]
                self._revoked, self._crl_key = None, key
                log.error("crl_not_signed_by_client_ca", path=str(self._crl_path))
                return
            try:
                number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            except x509.ExtensionNotFound:
                number = 0
            if self._crl_number is not None and number < self._crl_number:
                # Replaying an older CRL would take revocations back: keep the one in force.
                self._crl_key = key
                self.crls_refused += 1
                log.error(
                    "crl_older_than_the_one_in_force",
                    path=str(self._crl_path),
                    crl_number=number,
                    in_force=self._crl_number,
                )
                return
            self._revoked = frozenset(r.serial_number for r in crl)
            self._crl_next_update = crl.next_update_utc
            self._crl_number = number
            self._crl_key = key
            log.info(
                "crl_loaded",
                path=str(self._crl_path),
                revoked=len(self._revoked),
                crl_number=number,
                next_update=str(self._crl_next_update),
            )

    def _check_fresh(self, now: dt.datetime) -> None:
        """Fail closed on a CRL past its nextUpdate (beyond the grace); warn as it nears."""
        nu = self._crl_next_update
        if nu is None:
            return
        if now > nu + self._grace:
            raise RevocationUnavailable(
                f"the revocation list expired at {nu:%Y-%m-%d %H:%M} UTC (nextUpdate, plus "
                f"{self._grace.total_seconds():.0f} s grace): install a fresh one (citygate pki crl)"
            )
        if now > nu - self._warn and (
            self._warned_at is None or now - self._warned_at > dt.timedelta(hours=1)
        ):
            self._warned_at = now
            log.warning(
                "crl_expires_soon",
                next_update=str(nu),
                hours_left=round((nu - now).total_seconds() / 3600, 1),
            )

    def _parse_uncached(self, pem: str) -> ClientCert:
        cert = x509.load_pem_x509_certificate(pem.encode())
        try:
            cert.verify_directly_issued_by(self._ca)
            issuer_ok = True
        except (ValueError, TypeError, InvalidSignature):
            issuer_ok = False
        ident = certificate_identity(cert)
        return ClientCert(
            kind=ident[0] if ident else None,
            name=ident[1] if ident else None,
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
            issuer_ok=issuer_ok,
            problem=identity_problem(cert),
        )

    def gateway(self, scope: Mapping[str, Any]) -> GatewayIdentity:
        """The calling gateway, or AuthError / RevocationUnavailable."""
        pem = _presented(scope)
        if pem is None:
            raise AuthError(
                401, "no_client_cert", "a gateway client certificate (citygate pki issue gateway) is required"
            )
        try:
            cert = self._parse(pem)
        except ValueError as e:
            raise AuthError(401, "bad_client_cert", "the client certificate cannot be parsed") from e
        if not cert.issuer_ok:
            raise AuthError(403, "wrong_ca", "the client certificate is not issued by the infrastructure CA")
        if cert.problem is not None:
            raise AuthError(403, "bad_identity", f"the client certificate is refused: {cert.problem}")
        if cert.kind is not CertKind.GATEWAY or not cert.name:
            raise AuthError(403, "not_a_gateway", "the client certificate is not a gateway certificate")
        self._check_current(cert, "the revocation list", f"gateway {cert.name!r}")
        return GatewayIdentity(gateway_id=cert.name, serial=cert.serial, not_after=cert.not_after)

    def _check_current(self, cert: ClientCert, crl_name: str, who: str) -> None:
        """Not expired, and not on a CRL that is itself readable, verified and fresh."""
        now = dt.datetime.now(dt.UTC)
        if cert.not_after <= now:
            raise AuthError(403, "expired", "the client certificate has expired")
        self.reload_crl()
        revoked = self._revoked
        if revoked is None:
            raise RevocationUnavailable(f"{crl_name} cannot be read or verified")
        self._check_fresh(now)
        if cert.serial in revoked:
            raise AuthError(403, "revoked", f"the certificate of {who} is revoked")

    def person(self, scope: Mapping[str, Any]) -> PersonIdentity | None:
        """The reader or operator whose certificate of this CA the request presents; None when it
        presents none of this CA. AuthError if it is revoked, expired or malformed,
        RevocationUnavailable if the CRL cannot be trusted (fail closed)."""
        pem = _presented(scope)
        if pem is None:
            return None
        try:
            cert = self._parse(pem)
        except ValueError:
            return None  # not this CA's: the TLS layer verified it against another one
        if not cert.issuer_ok:
            return None
        if cert.problem is not None:
            raise AuthError(403, "bad_identity", f"the client certificate is refused: {cert.problem}")
        if cert.kind is None or cert.kind not in PERSON_KINDS or not cert.name:
            raise AuthError(
                403, "not_a_person", "the client certificate is not a reader or operator certificate"
            )
        self._check_current(cert, "the client CA's revocation list", f"{cert.kind.value} {cert.name!r}")
        return PersonIdentity(kind=cert.kind, name=cert.name, serial=cert.serial)


def _presented(scope: Mapping[str, Any]) -> str | None:
    """The PEM of the client certificate a request's connection presented, if any."""
    tls = (scope.get("extensions") or {}).get("tls")
    chain = tls.get("client_cert_chain") if isinstance(tls, dict) else None
    return str(chain[0]) if chain else None


class PersonCertGuard:
    """Pure ASGI middleware: a request presenting a client-CA certificate that is revoked,
    expired or malformed is refused (403; 503 while the CRL cannot be trusted), whatever the
    route. A valid one changes nothing: tokens decide access."""

    def __init__(
        self, app: Any, *, verifier: CertificateVerifier, on_refused: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.on_refused = on_refused

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = []
        try:
            self.verifier.person(scope)
        except AuthError as e:
            status, reason, detail = e.status, e.reason, e.detail
        except RevocationUnavailable as e:
            status, reason, detail = 503, "crl_unavailable", str(e)
            headers.append((b"retry-after", b"30"))
        else:
            await self.app(scope, receive, send)
            return
        if self.on_refused is not None:
            self.on_refused(reason)
        log.warning("auth_refused", reason=reason, path=str(scope.get("path", "")))
        body = orjson.dumps({"error": reason, "detail": detail})
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class TokenAuth:
    """Bearer tokens by role; compared in constant time against every configured token."""

    def __init__(self, readers: Mapping[str, SecretStr], operators: Mapping[str, SecretStr]) -> None:
        self._tokens = [(name, "reader", t.get_secret_value().encode()) for name, t in readers.items()]
        self._tokens += [(name, "operator", t.get_secret_value().encode()) for name, t in operators.items()]

    def check(self, authorization: str | None, *, operator: bool) -> str:
        """The token's name, or AuthError. Readers may read series; operators everything."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError(401, "no_token", "a bearer token is required (Authorization: Bearer <token>)")
        given = authorization[7:].strip().encode()
        found: tuple[str, str] | None = None
        for name, role, token in self._tokens:
            if hmac.compare_digest(given, token):
                found = (name, role)
        if found is None:
            raise AuthError(401, "bad_token", "the bearer token is not valid")
        if operator and found[1] != "operator":
            raise AuthError(403, "not_operator", "this endpoint needs an operator token")
        return found[0]


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any]:
    """The ASGI TLS extension dict for one connection (asgi.readthedocs.io, TLS extension)."""
    if ssl_object is None:
        return {}
    der = ssl_object.getpeercert(binary_form=True)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    name = None
    if der:
        try:
            name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except ValueError:
            name = None
    versions = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": versions.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }
