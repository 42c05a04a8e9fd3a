"""Identifiers of devices, gateways and servers.

An id becomes an MQTT topic level (``devices/{id}/telemetry``), a certificate
CN that Mosquitto uses as the username in pattern ACLs, and a file name in the
PKI. A ``+``, ``#`` or ``/`` in it would break ACL patterns (CVE-2017-7650), a
control character or NUL would break logs and C strings, so the allowed set is
small and explicit.
"""

from __future__ import annotations

import re

from citygate.errors import InvalidIdentifierError

MAX_ID_LENGTH = 64

# Letters, digits, '-', '_', '.', ':'; must start with a letter or digit.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
# DNS host name labels, for server certificates.
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _describe(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def validate_id(value: str, *, kind: str = "id") -> str:
    """Return ``value`` if it is a safe identifier, else raise InvalidIdentifierError.

    The message says exactly what is wrong, for the operator who typed it.
    """
    if not isinstance(value, str):
        raise InvalidIdentifierError(f"{kind} must be a string, got {type(value).__name__}")
    if value == "":
        raise InvalidIdentifierError(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidIdentifierError(
            f"{kind} {_describe(value)} is {len(value)} characters long; the maximum is {MAX_ID_LENGTH}"
        )
    for bad, why in (("+", "an MQTT wildcard"), ("#", "an MQTT wildcard"), ("/", "a topic separator")):
        if bad in value:
            raise InvalidIdentifierError(
                f"{kind} {_describe(value)} contains {bad!r}, {why}; it would break topic ACLs"
            )
    for ch in value:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise InvalidIdentifierError(
                f"{kind} {_describe(value)} contains a control character (U+{ord(ch):04X})"
            )
    if _ID_RE.fullmatch(value) is None:
        raise InvalidIdentifierError(
            f"{kind} {_describe(value)} is not allowed: use letters, digits, '-', '_', '.', ':' "
            "and start with a letter or digit"
        )
    return value


def validate_hostname(value: str) -> str:
    """Return ``value`` if it is a valid DNS host name (for server certificates)."""
    if not value or len(value) > 253:
        raise InvalidIdentifierError(f"host name {_describe(value)} must be 1 to 253 characters")
    labels = value.rstrip(".").split(".")
    for label in labels:
        if _HOST_LABEL_RE.fullmatch(label) is None:
            raise InvalidIdentifierError(
                f"host name {_describe(value)} is not a valid DNS name (label {label!r})"
            )
    return value
