"""The body of ``POST requests``: ``application/x-www-form-urlencoded``, parsed within limits.

The standard library's ``urllib.parse.parse_qsl`` does the decoding, with its field count
bounded before it splits anything (``max_num_fields``) and UTF-8 decoding strict; the body
itself is read up to ``max_body_bytes`` and no further (:func:`read_limited`). Every
refusal is a specific 4xx: 413 for too large or too many, 415 for another media type or
charset, 400 for what does not decode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from urllib.parse import parse_qsl

from citygate.open311.errors import Open311Error

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_NAME_CHARS = 100  # a field's name, attribute[...] included


@dataclass(frozen=True, slots=True)
class Form:
    """The fields in their order; a name may repeat (multivaluelist attributes)."""

    pairs: tuple[tuple[str, str], ...]

    def names(self) -> set[str]:
        return {k for k, _ in self.pairs}


def check_content_type(header: str | None) -> None:
    """415 unless the body is form-encoded UTF-8 (the spec's only request format)."""
    if not header:
        raise Open311Error(415, f"Content-Type must be {FORM_TYPE}; charset=utf-8")
    msg = Message()
    msg["content-type"] = header
    media = msg.get_content_type()
    charset = (msg.get_param("charset") or "utf-8") if media == FORM_TYPE else None
    if media != FORM_TYPE or not isinstance(charset, str) or charset.lower() not in ("utf-8", "utf8"):
        raise Open311Error(415, f"Content-Type must be {FORM_TYPE}; charset=utf-8")


async def read_limited(declared: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, refused (413) as soon as it is, or says it will be, longer than ``limit``."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Open311Error(413, f"the body is larger than {limit} bytes")
    got: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise Open311Error(413, f"the body is larger than {limit} bytes")
        got.append(chunk)
    return b"".join(got)


def parse_form(body: bytes, *, max_fields: int) -> Form:
    """The fields of a form-encoded body (at most ``max_fields`` of them)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=max_fields
        )
    except UnicodeDecodeError:
        raise Open311Error(400, "the body is not UTF-8 (percent-encoded UTF-8 included)") from None
    except ValueError:  # parse_qsl: "Max number of fields exceeded"
        raise Open311Error(413, f"the body has more than {max_fields} fields") from None
    for name, _ in pairs:
        if not name or len(name) > MAX_NAME_CHARS:
            raise Open311Error(400, f"a field name is empty or longer than {MAX_NAME_CHARS} characters")
    return Form(tuple(pairs))
