#!/opt/citygate/venv/bin/python3
"""Fetch the citygate CRLs onto a gateway before their nextUpdate (docs/PKI.md).

Installed as /usr/local/sbin/citygate-crl-fetch and run by citygate-crl-fetch.timer.
For each CA (``device-ca``, ``infra-ca``; ``client-ca`` on the cloud if asked) it
downloads ``<URL>/<ca>.crl.pem`` and installs it as ``<tls dir>/<ca>.crl.pem`` only if the CRL is

- signed by the CA certificate this gateway already trusts (``<tls dir>/<ca>.pem``),
- not past its nextUpdate (a stale CRL makes Mosquitto refuse every client), and
- not older than the one installed (a higher or equal CRL number: replaying an old CRL
  would un-revoke what was revoked since).

The file is replaced atomically (write, fsync, rename); an unchanged CRL is left alone.
citygate-crl-reload.path then restarts Mosquitto. The CRLs are public and signed, so
plain HTTP does; ``--cafile`` checks an HTTPS server's certificate against that CA.

Exit status: 0 when every CRL is current (installed or already there), 1 when one could
not be fetched or was refused (the installed one is kept), 2 for bad arguments. It warns
while an installed CRL has less than ``--warn-hours`` left.

Only the standard library and ``cryptography`` (citygate's own dependency).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

MAX_CRL_BYTES = 4 * 1024 * 1024


class RefusedError(Exception):
    """A CRL that must not be installed."""


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        ext = crl.extensions.get_extension_for_oid(ExtensionOID.CRL_NUMBER)
    except x509.ExtensionNotFound:
        return -1
    value = ext.value
    return value.crl_number if isinstance(value, x509.CRLNumber) else -1


def check(
    new_pem: bytes, ca_pem: bytes, current_pem: bytes | None, now: dt.datetime
) -> x509.CertificateRevocationList:
    """The new CRL if it may replace ``current_pem``; else :class:`RefusedError` saying why."""
    try:
        crl = x509.load_pem_x509_crl(new_pem)
    except ValueError as e:
        raise RefusedError(f"not a PEM CRL: {e}") from e
    ca = x509.load_pem_x509_certificate(ca_pem)
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise RefusedError(f"not signed by {ca.subject.rfc4514_string()}")
    if crl.next_update_utc is None or crl.next_update_utc <= now:
        raise RefusedError(f"stale: its nextUpdate {crl.next_update_utc} has passed")
    if current_pem is not None:
        try:
            current = x509.load_pem_x509_crl(current_pem)
        except ValueError:
            return crl  # the installed file is broken: anything valid is better
        if _crl_number(crl) < _crl_number(current):
            raise RefusedError(
                f"older than the installed one (CRL number {_crl_number(crl)} < {_crl_number(current)})"
            )
    return crl


def fetch(url: str, context: ssl.SSLContext | None, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout, context=context) as r:  # noqa: S310 - http(s) only
        body: bytes = r.read(MAX_CRL_BYTES + 1)
    if len(body) > MAX_CRL_BYTES:
        raise RefusedError(f"larger than {MAX_CRL_BYTES} bytes")
    return body


def install(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="citygate-crl-fetch", description=__doc__.splitlines()[0])
    p.add_argument("url", help="where <ca>.crl.pem are published, e.g. https://pki.city.example/crl")
    p.add_argument("--tls-dir", type=Path, default=Path("/etc/citygate/tls"))
    p.add_argument(
        "--ca",
        action="append",
        choices=["device-ca", "infra-ca", "client-ca"],
        help="default: device-ca and infra-ca (client-ca: the cloud's people_crl)",
    )
    p.add_argument("--cafile", type=Path, help="trust this CA for an https:// URL (default: the system's)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--warn-hours", type=float, default=48.0)
    args = p.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        p.error("the URL must be http:// or https://")
    context = ssl.create_default_context(cafile=str(args.cafile)) if args.cafile else None
    now = dt.datetime.now(dt.UTC)
    failed = False
    for name in args.ca or ["device-ca", "infra-ca"]:
        target = args.tls_dir / f"{name}.crl.pem"
        current = target.read_bytes() if target.exists() else None
        url = f"{args.url.rstrip('/')}/{name}.crl.pem"
        try:
            new = fetch(url, context, args.timeout)
            crl = check(new, (args.tls_dir / f"{name}.pem").read_bytes(), current, now)
            if new == current:
                print(f"{name}: unchanged (nextUpdate {crl.next_update_utc:%Y-%m-%d %H:%M}Z)")
            else:
                install(target, new)
                print(f"{name}: installed CRL number {_crl_number(crl)} from {url}", end=" ")
                print(f"(nextUpdate {crl.next_update_utc:%Y-%m-%d %H:%M}Z)")
        except (RefusedError, OSError, urllib.error.URLError, ValueError) as e:
            failed = True
            print(f"{name}: not installed from {url}: {e}", file=sys.stderr)
        installed = target.read_bytes() if target.exists() else None
        if installed is not None:
            left = _hours_left(installed, now)
            if left is not None and left < args.warn_hours:
                print(f"{name}: WARNING the installed CRL expires in {left:.1f} h", file=sys.stderr)
    return 1 if failed else 0


def _hours_left(pem: bytes, now: dt.datetime) -> float | None:
    try:
        nxt = x509.load_pem_x509_crl(pem).next_update_utc
    except ValueError:
        return None
    return None if nxt is None else (nxt - now).total_seconds() / 3600


if __name__ == "__main__":
    sys.exit(main())
