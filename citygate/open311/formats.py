"""GeoReport v2 documents as JSON or XML, chosen by the path's extension.

One document, two renderings, as the spec's "Spark convention" maps them: a JSON array is
an XML wrapper element holding one element per item (``services`` > ``service``), a JSON
object's keys are child elements, ``true``/``false`` are text, ``null`` an empty element.
:data:`ITEMS` names the item element of every list the API answers. Element names come
from this module and from the configuration (validated codes), never from a request.

XML is written with the standard library's ElementTree (escaping is its job); characters
XML 1.0 cannot carry are dropped from text first (a document that does not parse is worse
than a missing control character).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET  # writes our own documents; parses nothing
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import orjson
from starlette.responses import Response

Format = Literal["json", "xml"]
FORMATS: Final[tuple[Format, ...]] = ("json", "xml")
MEDIA_TYPES: Final[dict[Format, str]] = {
    "json": "application/json; charset=utf-8",
    "xml": "text/xml; charset=utf-8",
}
# The item element of each list, by the list's element name.
ITEMS: Final[dict[str, str]] = {
    "services": "service",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "attributes": "attribute",
    "values": "value",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "notes": "note",
}
_XML_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def format_of(extension: str) -> Format | None:
    """``json`` or ``xml`` from a path's extension, or None for any other."""
    return "json" if extension == "json" else "xml" if extension == "xml" else None


def render(fmt: Format, root: str, doc: Sequence[Any] | Mapping[str, Any]) -> bytes:
    """The document as bytes: JSON as it is, XML under a ``root`` element."""
    if fmt == "json":
        return orjson.dumps(doc)
    top = ET.Element(root)
    _fill(top, root, doc)
    # The declaration as the spec shows it (ElementTree's own uses single quotes).
    return _DECLARATION + ET.tostring(top, encoding="unicode").encode()


def response(
    fmt: Format,
    root: str,
    doc: Sequence[Any] | Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(render(fmt, root, doc), status_code=status, media_type=MEDIA_TYPES[fmt], headers=headers)


def error_response(
    fmt: Format, status: int, description: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The spec's error document: a list of ``{code, description}``."""
    return response(
        fmt, "errors", [{"code": status, "description": description}], status=status, headers=headers
    )


def _fill(el: ET.Element, name: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _fill(ET.SubElement(el, _name(key)), key, child)
    elif isinstance(value, list | tuple):
        item = ITEMS[name]  # a KeyError here is a list this module was not told about
        for child in value:
            _fill(ET.SubElement(el, item), item, child)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif value is None:
        pass
    elif isinstance(value, int):
        el.text = str(value)
    elif isinstance(value, float):
        el.text = repr(value) if math.isfinite(value) else ""
    else:
        el.text = _NOT_XML.sub("", str(value))


def _name(key: object) -> str:
    if not isinstance(key, str) or _XML_NAME.fullmatch(key) is None or key.lower().startswith("xml"):
        raise ValueError(f"not an element name this API writes: {key!r}")
    return key
