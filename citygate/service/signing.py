"""Standard Webhooks signatures (symmetric, ``v1``): HMAC-SHA256 over ``{id}.{timestamp}.{body}``.

Written on the standard library's hmac/hashlib/base64 rather than a package: the scheme is
one HMAC and one base64 call, and the ``standardwebhooks`` package is kept as the tests'
outside judge (a signer must not be verified by its own code).

During a secret rotation the sender signs with every current secret; the header then holds
one ``v1,<sig>`` per secret, space-separated, and a receiver holding either secret verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _secrets
from collections.abc import Sequence
from typing import Final

__all__ = ["WebhookSecret", "WebhookSecretError", "sign", "webhook_headers"]

PREFIX: Final = "whsec_"
# The spec: "Random. At least 24 bytes (192 bits, 512 maximum)" - 512 bits, 64 bytes.
MIN_KEY_BYTES: Final = 24
MAX_KEY_BYTES: Final = 64
# The id and timestamp are joined with "." in the signed content: an id with a "." (or with
# whitespace, which a header would mangle) could make two different messages sign alike.
_MSG_ID: Final = re.compile(r"[A-Za-z0-9_\-:]{1,256}")


class WebhookSecretError(ValueError):
    """A webhook secret that cannot be used. The message never contains the secret."""


class WebhookSecret:
    """A parsed ``whsec_<base64>`` secret. Its repr and str never show the key."""

    __slots__ = ("_key",)

    def __init__(self, serialized: str) -> None:
        if not isinstance(serialized, str) or not serialized.startswith(PREFIX):
            raise WebhookSecretError(f"webhook secret must be a string starting with {PREFIX!r}")
        encoded = serialized[len(PREFIX) :].strip()
        # Accept unpadded base64 (common when secrets are copied around), nothing else:
        # validate=True refuses characters outside the alphabet instead of skipping them.
        encoded += "=" * (-len(encoded) % 4)
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookSecretError(
                f"webhook secret is not valid base64 after {PREFIX!r} (the value is not shown)"
            ) from None
        self._key = self._check_length(key)

    @staticmethod
    def _check_length(key: bytes) -> bytes:
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise WebhookSecretError(
                f"webhook secret decodes to {len(key)} bytes; Standard Webhooks wants "
                f"{MIN_KEY_BYTES}-{MAX_KEY_BYTES} random bytes"
            )
        return key

    @classmethod
    def from_bytes(cls, key: bytes) -> WebhookSecret:
        self = cls.__new__(cls)
        self._key = cls._check_length(bytes(key))
        return self

    @classmethod
    def generate(cls, nbytes: int = 32) -> WebhookSecret:
        """A fresh random secret (``secrets.token_bytes``)."""
        return cls.from_bytes(_secrets.token_bytes(nbytes))

    def reveal(self) -> str:
        """The ``whsec_...`` form, to hand to the receiver once. The only way to see the key."""
        return PREFIX + base64.b64encode(self._key).decode("ascii")

    @property
    def fingerprint(self) -> str:
        """8 hex characters of SHA-256(key): tells secrets apart in logs without revealing them."""
        return hashlib.sha256(self._key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"WebhookSecret(<redacted>, fingerprint={self.fingerprint})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebhookSecret) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def _mac(self, content: bytes) -> str:
        return base64.b64encode(hmac.new(self._key, content, hashlib.sha256).digest()).decode("ascii")

    # Immutable: copies are the same object. Pickling would write the key out in the clear
    # (into a queue, a cache file...), so it is refused.
    def __copy__(self) -> WebhookSecret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> WebhookSecret:
        return self

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("WebhookSecret is not picklable (it would write the key out)")


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]) -> str:
    """The ``webhook-signature`` value: ``v1,<base64>`` per secret, space-separated, in order.

    ``timestamp`` is the attempt's Unix time in whole seconds (it changes on every retry;
    ``msg_id`` does not).
    """
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError("webhook id must be 1-256 characters of A-Z a-z 0-9 _ - : (no '.', no spaces)")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("webhook timestamp must be a non-negative integer (Unix seconds)")
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    content = f"{msg_id}.{timestamp}.".encode("ascii") + bytes(body)
    return " ".join(f"v1,{s._mac(content)}" for s in secrets)


def webhook_headers(
    msg_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, secrets),
    }
