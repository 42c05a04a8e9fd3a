"""A small certificate authority for citygate, built on ``cryptography``.

Three separate trust roots (see docs/PKI.md for why):

- the **device CA** signs device certificates only. The broker's device
  listener trusts this CA and nothing else, so a gateway or server
  certificate cannot even connect there, and no device certificate is
  trusted anywhere else;
- the **infrastructure CA** signs gateway certificates (clientAuth) and
  server certificates (serverAuth, with SANs): the broker's and the cloud's
  TLS servers, and the gateway's client identity at the broker's gateway
  listener and at the cloud;
- the **client CA** signs people's client certificates: readers and operators
  (clientAuth), for a cloud with ``client_cert_mode = "required"``. Not the
  infrastructure CA: the broker's gateway listener trusts every infrastructure
  certificate, so a reader's would read every device's telemetry there. Only
  the cloud's readers' listener trusts this CA (``people_ca``). A PKI made
  before it existed gets it on the first reader or operator certificate.

On disk (``<dir>``)::

    device-ca/  ca.pem  ca.key (0600)  crl.pem
    infra-ca/   ca.pem  ca.key (0600)  crl.pem
    client-ca/  ca.pem  ca.key (0600)  crl.pem
    issued/device/<id>/  cert.pem  key.pem (0600)  chain.pem   (+ archive/ on renewal)
    issued/gateway/<id>/ ...
    issued/server/<host>/ ...
    issued/reader/<name>/ ...     issued/operator/<name>/ ...
    index.json       every certificate ever issued, with revocation state
    inventory.json   the device inventory (unless configured elsewhere)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from citygate.certs.identity import PERSON_KINDS as PERSON_KINDS
from citygate.certs.identity import CaName as CaName
from citygate.certs.identity import CertKind as CertKind
from citygate.certs.identity import ca_for as ca_for
from citygate.certs.identity import certificate_identity as certificate_identity
from citygate.certs.identity import identity_problem as identity_problem
from citygate.certs.settings import PkiSettings
from citygate.certs.x509_build import build_leaf, create_ca, write_private_key
from citygate.contract.ids import validate_hostname, validate_id
from citygate.contract.inventory import DeviceRecord, GatewayRecord, Inventory
from citygate.errors import AlreadyExistsError, InvalidIdentifierError, NotFoundError, PkiError
from citygate.fsutil import atomic_write

INDEX_FORMAT = 1
# The agent's MQTT client id is "citygate-gateway-<id>"; no device may be called that.
RESERVED_DEVICE_PREFIX = "citygate-"
_CLOCK_SKEW = dt.timedelta(minutes=5)  # not_before slack for devices with slightly late clocks


_CA_TITLES = {
    CaName.DEVICE: "device CA",
    CaName.INFRA: "infrastructure CA",
    CaName.CLIENT: "client CA (readers, operators)",
}


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """One entry of the index: a certificate the CA issued."""

    kind: CertKind
    name: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    superseded: bool = False  # replaced by a renewal; still valid until it expires

    @property
    def ca(self) -> CaName:
        return ca_for(self.kind)

    def status(self, now: dt.datetime | None = None) -> str:
        now = now or _now()
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.not_after:
            return "expired"
        if now < self.not_before:
            return "not yet valid"
        return "superseded" if self.superseded else "valid"

    def days_left(self, now: dt.datetime | None = None) -> float:
        return (self.not_after - (now or _now())).total_seconds() / 86400.0

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "name": self.name,
            "serial": format(self.serial, "x"),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
            "superseded": self.superseded,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> IssuedCert:
        revoked = d.get("revoked_at")
        reason = d.get("revocation_reason")
        return cls(
            kind=CertKind(str(d["kind"])),
            name=str(d["name"]),
            serial=int(str(d["serial"]), 16),
            not_before=dt.datetime.fromisoformat(str(d["not_before"])),
            not_after=dt.datetime.fromisoformat(str(d["not_after"])),
            revoked_at=dt.datetime.fromisoformat(str(revoked)) if revoked else None,
            revocation_reason=str(reason) if reason else None,
            superseded=bool(d.get("superseded", False)),
        )


@dataclass(frozen=True, slots=True)
class CertFiles:
    """Where an issued identity's files are."""

    cert: Path
    key: Path
    chain: Path  # cert followed by its CA certificate


@dataclass(slots=True)
class _Index:
    certs: list[IssuedCert] = field(default_factory=list)
    crl_numbers: dict[str, int] = field(default_factory=dict)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Pki:
    """The certificate authority in one directory. Create with :meth:`init`, open with the constructor."""

    def __init__(self, settings: PkiSettings) -> None:
        self.settings = settings
        self.dir = settings.dir
        if not (self._ca_dir(CaName.DEVICE) / "ca.pem").exists():
            raise NotFoundError(f"no CA in {self.dir}; create one with 'citygate pki init --dir {self.dir}'")

    # -- paths -----------------------------------------------------------------

    def _ca_dir(self, ca: CaName) -> Path:
        return self.dir / ca.value

    def ca_cert_path(self, ca: CaName) -> Path:
        return self._ca_dir(ca) / "ca.pem"

    def crl_path(self, ca: CaName) -> Path:
        return self._ca_dir(ca) / "crl.pem"

    def has_ca(self, ca: CaName) -> bool:
        """False for the client CA of a PKI made before it existed (until its first use)."""
        return self.ca_cert_path(ca).exists()

    def present_cas(self) -> list[CaName]:
        return [ca for ca in CaName if self.has_ca(ca)]

    @property
    def inventory_path(self) -> Path:
        return self.settings.inventory_path

    def files(self, kind: CertKind, name: str) -> CertFiles:
        d = self.dir / "issued" / kind.value / name
        return CertFiles(cert=d / "cert.pem", key=d / "key.pem", chain=d / "chain.pem")

    # -- creation --------------------------------------------------------------

    @classmethod
    def init(cls, settings: PkiSettings, *, now: dt.datetime | None = None) -> Pki:
        """Create the three CAs, empty CRLs and an index. Refuses an existing CA."""
        now = now or _now()
        root = settings.dir
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        for ca in CaName:
            d = root / ca.value
            if (d / "ca.key").exists() or (d / "ca.pem").exists():
                raise AlreadyExistsError(f"a CA already exists in {d}; refusing to overwrite it")
        for ca in CaName:
            create_ca(root / ca.value, _CA_TITLES[ca], settings, now, _CLOCK_SKEW)
        pki = cls(settings)
        with pki._locked() as index:
            pki._save_index(index)
            pki._write_crls(index, now)
            if not pki.inventory_path.exists():
                # An empty inventory from the start: the cloud refuses to run without the file.
                Inventory().save(pki.inventory_path)
        return pki

    # -- index -----------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[_Index]:
        """Hold the CA lock while reading and changing the index (several CLIs may run)."""
        lock_path = self.dir / ".lock"
        with lock_path.open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield self._load_index()
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _load_index(self) -> _Index:
        path = self.dir / "index.json"
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return _Index()
        except (OSError, orjson.JSONDecodeError) as e:
            raise PkiError(f"cannot read the certificate index {path}: {e}") from e
        if doc.get("format") != INDEX_FORMAT:
            raise PkiError(f"{path}: unknown index format {doc.get('format')!r}")
        return _Index(
            certs=[IssuedCert.from_json(c) for c in doc["certs"]],
            crl_numbers={str(k): int(v) for k, v in doc.get("crl_numbers", {}).items()},
        )

    def _save_index(self, index: _Index) -> None:
        doc = {
            "format": INDEX_FORMAT,
            "certs": [c.to_json() for c in index.certs],
            "crl_numbers": index.crl_numbers,
        }
        atomic_write(self.dir / "index.json", orjson.dumps(doc, option=orjson.OPT_INDENT_2), mode=0o644)

    def certificates(self) -> list[IssuedCert]:
        """Every certificate issued, oldest first."""
        return list(self._load_index().certs)

    def ca_certificates(self) -> dict[CaName, x509.Certificate]:
        return {
            ca: x509.load_pem_x509_certificate(self.ca_cert_path(ca).read_bytes())
            for ca in self.present_cas()
        }

    def _ca_key(self, ca: CaName) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca_cert_path(ca).read_bytes())
        key = serialization.load_pem_private_key((self._ca_dir(ca) / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{ca.value} key is not an EC key")
        return cert, key

    # -- issuing ---------------------------------------------------------------

    def issue_device(
        self,
        record: DeviceRecord,
        *,
        days: int | None = None,
        not_before: dt.datetime | None = None,
        renew: bool = False,
    ) -> CertFiles:
        """Issue a device certificate and register the device in the inventory."""
        return self.issue_devices([record], days=days, not_before=not_before, renew=renew)[0]

    def issue_devices(
        self,
        records: Sequence[DeviceRecord],
        *,
        days: int | None = None,
        not_before: dt.datetime | None = None,
        renew: bool = False,
    ) -> list[CertFiles]:
        """Issue many device certificates under one lock and one index/inventory write."""
        names = [r.device_id for r in records]
        return self._issue_many(
            CertKind.DEVICE,
            names,
            days=days or self.settings.device_days,
            not_before=not_before,
            renew=renew,
            register=records,
        )

    def issue_gateway(
        self,
        gateway_id: str,
        *,
        days: int | None = None,
        not_before: dt.datetime | None = None,
        renew: bool = False,
        site: str | None = None,
        district: str | None = None,
    ) -> CertFiles:
        """Issue a gateway certificate and register the gateway in the inventory."""
        validate_id(gateway_id, kind="gateway id")
        return self._issue_many(
            CertKind.GATEWAY,
            [gateway_id],
            days=days or self.settings.gateway_days,
            not_before=not_before,
            renew=renew,
            register_gateway=GatewayRecord(gateway_id=gateway_id, site=site, district=district),
        )[0]

    def issue_server(
        self,
        hostname: str,
        *,
        ips: Sequence[str] = (),
        extra_dns: Sequence[str] = (),
        days: int | None = None,
        renew: bool = False,
    ) -> CertFiles:
        validate_hostname(hostname)
        for name in extra_dns:
            validate_hostname(name)
        try:
            addresses = [ipaddress.ip_address(ip) for ip in ips]
        except ValueError as e:
            raise PkiError(f"invalid IP address for a server certificate: {e}") from e
        sans: list[x509.GeneralName] = [x509.DNSName(hostname)]
        sans += [x509.DNSName(n) for n in extra_dns]
        sans += [x509.IPAddress(a) for a in addresses]
        return self._issue_many(
            CertKind.SERVER,
            [hostname],
            days=days or self.settings.server_days,
            not_before=None,
            renew=renew,
            server_sans=sans,
        )[0]

    def issue_reader(self, name: str, *, days: int | None = None, renew: bool = False) -> CertFiles:
        """A reader's client certificate (client CA); see :meth:`issue_person`."""
        return self.issue_person(CertKind.READER, name, days=days, renew=renew)

    def issue_operator(self, name: str, *, days: int | None = None, renew: bool = False) -> CertFiles:
        """An operator's client certificate (client CA); see :meth:`issue_person`."""
        return self.issue_person(CertKind.OPERATOR, name, days=days, renew=renew)

    def issue_person(
        self, kind: CertKind, name: str, *, days: int | None = None, renew: bool = False
    ) -> CertFiles:
        """A person's client certificate (clientAuth, SAN ``urn:citygate:<kind>:<name>``, client CA).

        It only lets its holder connect to a cloud that requires client certificates
        (``people_ca``): what they may do is still decided by their bearer token. The
        client CA is created here if this PKI predates it.
        """
        if kind not in PERSON_KINDS:
            raise PkiError(f"{kind.value} is not a person's certificate kind (reader, operator)")
        validate_id(name, kind=f"{kind.value} name")
        self.ensure_ca(CaName.CLIENT)
        return self._issue_many(
            kind,
            [name],
            days=days or self.settings.person_days,
            not_before=None,
            renew=renew,
        )[0]

    def ensure_ca(self, ca: CaName, *, now: dt.datetime | None = None) -> bool:
        """Create ``ca`` (and its empty CRL) if this PKI has none yet; True if it was created."""
        if self.has_ca(ca):
            return False
        now = now or _now()
        with self._locked() as index:
            if self.has_ca(ca):  # another CLI made it meanwhile
                return False
            create_ca(self._ca_dir(ca), _CA_TITLES[ca], self.settings, now, _CLOCK_SKEW)
            self._write_crls(index, now, only=(ca,))
        return True

    def _issue_many(
        self,
        kind: CertKind,
        names: Sequence[str],
        *,
        days: int,
        not_before: dt.datetime | None,
        renew: bool,
        server_sans: list[x509.GeneralName] | None = None,
        register: Sequence[DeviceRecord] = (),
        register_gateway: GatewayRecord | None = None,
    ) -> list[CertFiles]:
        if kind is not CertKind.SERVER:
            for name in names:
                validate_id(name, kind=f"{kind.value} id")
                if kind is CertKind.DEVICE and name.startswith(RESERVED_DEVICE_PREFIX):
                    raise InvalidIdentifierError(
                        f"device id {name!r} starts with {RESERVED_DEVICE_PREFIX!r}, which is reserved "
                        "for the gateway agent's MQTT client id"
                    )
        if len(set(names)) != len(names):
            raise PkiError("the same name appears twice in one request")
        ca = ca_for(kind)
        ca_cert, ca_key = self._ca_key(ca)
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        start = not_before or (_now() - _CLOCK_SKEW)
        end = start + dt.timedelta(days=days)
        if end > ca_cert.not_valid_after_utc:
            raise PkiError(
                f"a {days}-day certificate would outlive the {ca.value} "
                f"(valid until {ca_cert.not_valid_after_utc:%Y-%m-%d})"
            )
        out: list[CertFiles] = []
        with self._locked() as index:
            current = {(c.kind, c.name) for c in index.certs if not c.superseded}
            inventory = Inventory.load(self.inventory_path)
            for r in register:
                unknown = [g for g in r.gateways if g not in inventory.gateways]
                if unknown:
                    raise NotFoundError(
                        f"device {r.device_id!r}: gateway(s) {', '.join(unknown)} not registered "
                        "(issue them first: citygate pki issue gateway ID)"
                    )
            for name in names:
                if (kind, name) in current and not renew:
                    raise AlreadyExistsError(
                        f"{kind.value} {name!r} already has a certificate; "
                        "use --renew to issue a new key and certificate"
                    )
            for name in names:
                files = self.files(kind, name)
                if renew:
                    self._archive(files)
                    index.certs = [
                        _superseded(c) if (c.kind, c.name) == (kind, name) else c for c in index.certs
                    ]
                files.cert.parent.mkdir(parents=True, exist_ok=True)
                key = ec.generate_private_key(ec.SECP256R1())
                cert = build_leaf(
                    kind,
                    name,
                    key.public_key(),
                    ca_cert,
                    ca_key,
                    start,
                    end,
                    self.settings.organization,
                    server_sans,
                )
                write_private_key(files.key, key)
                pem = cert.public_bytes(serialization.Encoding.PEM)
                atomic_write(files.cert, pem, mode=0o644)
                atomic_write(files.chain, pem + ca_pem, mode=0o644)
                index.certs.append(
                    IssuedCert(
                        kind=kind, name=name, serial=cert.serial_number, not_before=start, not_after=end
                    )
                )
                out.append(files)
            self._save_index(index)
            # Under the CA lock, so concurrent issuers do not lose each other's devices.
            if register:
                inventory.with_devices(*register).save(self.inventory_path)
            if register_gateway is not None:
                known = inventory.gateways.get(register_gateway.gateway_id)
                if renew and known is not None:
                    register_gateway = known  # a renewal keeps the gateway's record
                inventory.with_gateways(register_gateway).save(self.inventory_path)
        return out

    # -- who may report what -----------------------------------------------------------

    def assign(self, device_ids: Sequence[str], gateways: Sequence[str], *, actor: str | None = None) -> None:
        """From now on, only ``gateways`` may report these devices (two during a planned move);
        one audit line per device in ``audit.log`` beside the index."""
        gateways = tuple(dict.fromkeys(gateways))
        with self._locked():
            inventory = Inventory.load(self.inventory_path)
            unknown_gw = [g for g in gateways if g not in inventory.gateways]
            if unknown_gw:
                raise NotFoundError(f"gateway(s) not registered: {', '.join(unknown_gw)}")
            missing = [d for d in device_ids if d not in inventory]
            if missing:
                raise NotFoundError(f"device(s) not in the inventory: {', '.join(missing[:10])}")
            lines = []
            for d in device_ids:
                before = inventory[d].gateways
                inventory = inventory.assigned(d, gateways)
                lines.append(self._audit_line("assign", actor, device=d, before=before, after=gateways))
            inventory.save(self.inventory_path)
            self._audit(lines)

    def _audit_line(self, action: str, actor: str | None, **fields: object) -> bytes:
        doc = {"at": _now().isoformat(), "action": action, "actor": actor or _actor(), **fields}
        return orjson.dumps(doc) + b"\n"

    def _audit(self, lines: Sequence[bytes]) -> None:
        path = self.settings.dir / "audit.log"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _archive(self, files: CertFiles) -> None:
        if not files.cert.exists():
            return
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        archive = files.cert.parent / "archive" / format(cert.serial_number, "x")
        archive.mkdir(parents=True, exist_ok=True)
        for p in (files.cert, files.key, files.chain):
            if p.exists():
                p.replace(archive / p.name)

    # -- revocation ------------------------------------------------------------

    def revoke(
        self,
        name: str,
        *,
        kind: CertKind | None = None,
        reason: str = "unspecified",
        now: dt.datetime | None = None,
    ) -> list[IssuedCert]:
        """Revoke every unrevoked certificate of ``name`` and re-sign the CRLs."""
        now = now or _now()
        with self._locked() as index:
            matches = [c for c in index.certs if c.name == name and (kind is None or c.kind is kind)]
            kinds = {c.kind for c in matches}
            if not matches:
                raise NotFoundError(f"no certificate was issued for {name!r}")
            if len(kinds) > 1:
                raise PkiError(
                    f"{name!r} names certificates of several kinds ({', '.join(sorted(kinds))}); "
                    "say which with --kind"
                )
            revoked: list[IssuedCert] = []
            new_certs = []
            for c in index.certs:
                if c in matches and c.revoked_at is None:
                    c = IssuedCert(
                        kind=c.kind,
                        name=c.name,
                        serial=c.serial,
                        not_before=c.not_before,
                        not_after=c.not_after,
                        revoked_at=now,
                        revocation_reason=reason,
                        superseded=c.superseded,
                    )
                    revoked.append(c)
                new_certs.append(c)
            index.certs = new_certs
            self._save_index(index)
            self._write_crls(index, now)
            # Revocation reaches the inventory too: the cloud refuses the device or gateway even
            # before it has the new CRL, and the gateways stop taking the device's readings.
            (revoked_kind,) = kinds
            inventory = Inventory.load(self.inventory_path)
            if revoked_kind is CertKind.DEVICE and name in inventory:
                inventory.without(name).save(self.inventory_path)
            elif revoked_kind is CertKind.GATEWAY and name in inventory.gateways:
                inventory.without_gateway(name).save(self.inventory_path)
            self._audit([self._audit_line("revoke", None, kind=revoked_kind.value, name=name, reason=reason)])
        return revoked

    def write_crls(self, now: dt.datetime | None = None) -> dict[CaName, Path]:
        """Re-sign every CA's CRL with a fresh nextUpdate (run this regularly, e.g. daily)."""
        with self._locked() as index:
            self._write_crls(index, now or _now())
            self._save_index(index)
        return {ca: self.crl_path(ca) for ca in self.present_cas()}

    def _write_crls(self, index: _Index, now: dt.datetime, only: Sequence[CaName] | None = None) -> None:
        """Re-sign the CRL of every CA this PKI has (a client CA not made yet has none)."""
        for ca in only if only is not None else self.present_cas():
            ca_cert, ca_key = self._ca_key(ca)
            number = index.crl_numbers.get(ca.value, 0) + 1
            index.crl_numbers[ca.value] = number
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(ca_cert.subject)
                .last_update(now)
                .next_update(now + dt.timedelta(days=self.settings.crl_days))
                .add_extension(x509.CRLNumber(number), critical=False)
            )
            for c in index.certs:
                if c.ca is ca and c.revoked_at is not None:
                    builder = builder.add_revoked_certificate(
                        x509.RevokedCertificateBuilder()
                        .serial_number(c.serial)
                        .revocation_date(c.revoked_at)
                        .build()
                    )
            crl = builder.sign(ca_key, hashes.SHA256())
            atomic_write(self.crl_path(ca), crl.public_bytes(serialization.Encoding.PEM), mode=0o644)
        self._save_index(index)

    def crl_next_update(self, ca: CaName) -> dt.datetime | None:
        """The CRL's nextUpdate; None without one (a client CA not made yet)."""
        try:
            data = self.crl_path(ca).read_bytes()
        except FileNotFoundError:
            return None
        crl = x509.load_pem_x509_crl(data)
        return crl.next_update_utc


def _superseded(c: IssuedCert) -> IssuedCert:
    return IssuedCert(
        kind=c.kind,
        name=c.name,
        serial=c.serial,
        not_before=c.not_before,
        not_after=c.not_after,
        revoked_at=c.revoked_at,
        revocation_reason=c.revocation_reason,
        superseded=True,
    )


def _actor() -> str:
    """Who runs this command, for the audit log (the login user, else the process's user id)."""
    for var in ("SUDO_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    return f"uid {os.getuid()}"


def days_left(cert_path: Path, now: dt.datetime | None = None) -> float:
    """Days until the certificate at ``cert_path`` expires (negative once expired)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return (cert.not_valid_after_utc - (now or _now())).total_seconds() / 86400.0
