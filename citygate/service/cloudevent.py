"""A case transition as a CloudEvent 1.0, in the HTTP content modes.

``structured()`` puts the whole event in a JSON body (``application/cloudevents+json``);
``binary()`` puts the context attributes in ``ce-*`` headers and only ``data`` in the body
(``application/json``); :func:`batch` puts several events in one JSON array
(``application/cloudevents-batch+json``, for a throttled receiver). All return the
headers and the body: the body is exactly the bytes that are signed and sent, so nothing
re-serialises it between signing and the wire.

The judge of this output is the CloudEvents SDK in the tests, never this module.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

import orjson

__all__ = ["CE_BATCH_JSON", "CE_JSON", "SPECVERSION", "CaseEvent", "CloudEventError", "batch"]

SPECVERSION: Final = "1.0"
CE_JSON: Final = "application/cloudevents+json"
CE_BATCH_JSON: Final = "application/cloudevents-batch+json"
DATA_CONTENT_TYPE: Final = "application/json"

# CloudEvents 1.0 naming: lower-case ASCII letters and digits only; "SHOULD NOT exceed 20
# characters", which we enforce so that a name stays usable as a header on every binding.
_EXT_NAME: Final = re.compile(r"[a-z0-9]{1,20}")
# Context attributes of the spec itself (and the JSON format's data members): an extension may
# not shadow them, or the structured body would carry two meanings for one member.
_RESERVED: Final = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
    }
)
# HTTP binding 3.1.3.2: in header values, space, '"', '%' and anything outside U+0021-U+007E
# are percent-encoded (upper-case hex, UTF-8 bytes). Everything else goes as is.
_HEADER_SAFE: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "%"}


class CloudEventError(ValueError):
    """An event that cannot be a valid CloudEvent (names the attribute, not the payload)."""


def _pct(value: str) -> str:
    if all(ch in _HEADER_SAFE for ch in value):
        return value
    return "".join(
        ch if ch in _HEADER_SAFE else "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in value
    )


def _rfc3339(t: datetime) -> str:
    # Microseconds only when there are some: "2024-05-01T10:00:00Z" or "...:00.250000Z".
    return t.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _check_string(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise CloudEventError(f"CloudEvent attribute {name!r} must be a non-empty string")
    # Control characters are not allowed in CloudEvents strings (spec "Type System": String).
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value):
        raise CloudEventError(f"CloudEvent attribute {name!r} contains control characters")


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One case transition.

    ``id`` is stable across retries: it is also the Standard Webhooks ``webhook-id``, the
    receiver's idempotency key. ``time`` is when the transition happened (not when it is
    sent), timezone-aware. ``extensions`` are optional CloudEvents extension attributes
    (``service``, ``district``, ``severity``...), string-valued so that they read the same in
    both modes (a header cannot say whether "3" was an integer).
    """

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: Mapping[str, Any] = field(hash=False)
    extensions: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("id", "type", "source", "subject"):
            _check_string(name, getattr(self, name))
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise CloudEventError("CloudEvent 'time' must be timezone-aware (UTC)")
        if self.time.utcoffset() != timedelta(0):
            raise CloudEventError("CloudEvent 'time' must be in UTC")
        if not isinstance(self.data, Mapping):
            raise CloudEventError("CloudEvent 'data' must be a JSON object (a mapping)")
        for key, value in self.extensions.items():
            if not isinstance(key, str) or not _EXT_NAME.fullmatch(key):
                raise CloudEventError(
                    f"CloudEvent extension name {key!r}: lower-case ASCII letters and digits, 1-20 characters"
                )
            if key in _RESERVED:
                raise CloudEventError(f"CloudEvent extension name {key!r} is a reserved attribute name")
            _check_string(key, value)
        # Read-only views: the event is frozen, and a caller's later change to its dict must not
        # alter what a retry sends (the signature would still verify, the content would differ).
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))
        object.__setattr__(self, "extensions", MappingProxyType(dict(self.extensions)))

    def _attributes(self) -> dict[str, str]:
        attrs = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": _rfc3339(self.time),
        }
        attrs.update(self.extensions)
        return attrs

    def data_json(self) -> bytes:
        """``data`` as compact JSON (orjson raises TypeError for what JSON cannot hold)."""
        return orjson.dumps(dict(self.data))

    def document(self) -> dict[str, Any]:
        """The event in the JSON event format (one element of a batch)."""
        doc: dict[str, Any] = self._attributes()
        doc["datacontenttype"] = DATA_CONTENT_TYPE
        doc["data"] = dict(self.data)
        return doc

    def structured(self) -> tuple[dict[str, str], bytes]:
        """Structured content mode: the JSON event format in the body."""
        return {"content-type": f"{CE_JSON}; charset=utf-8"}, orjson.dumps(self.document())

    def binary(self) -> tuple[dict[str, str], bytes]:
        """Binary content mode: attributes as ``ce-*`` headers, ``data`` as the body.

        ``datacontenttype`` is carried by ``content-type`` (the binding forbids a
        ``ce-datacontenttype`` header alongside it).
        """
        headers = {f"ce-{name}": _pct(value) for name, value in self._attributes().items()}
        headers["content-type"] = DATA_CONTENT_TYPE
        return headers, self.data_json()


def batch(events: Sequence[CaseEvent]) -> tuple[str, dict[str, str], bytes]:
    """Batched content mode (the HTTP binding's ``application/cloudevents-batch+json``): the
    events as one JSON array, and the message id that signs it. The id is derived from the
    events' ids, so the same batch sent again carries the same ``webhook-id``; a receiver
    deduplicates a batch's events by their own ``id``s."""
    if not events:
        raise ValueError("a batch holds at least one event")
    digest = hashlib.sha256("\n".join(e.id for e in events).encode()).hexdigest()[:32]
    body = orjson.dumps([e.document() for e in events])
    return f"batch_{digest}", {"content-type": f"{CE_BATCH_JSON}; charset=utf-8"}, body
