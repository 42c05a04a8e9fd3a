"""A ``POST requests`` form checked against the spec and the service's definition.

What is accepted: the spec's fields (``service_code``, a location as ``lat`` + ``long``,
``address_string`` or ``address_id``, ``description``, ``media_url``, the reporter's
``first_name``, ``last_name``, ``email``, ``phone``, ``device_id``, ``account_id``) and
``attribute[code]=value`` (``attribute[code][]=...`` repeated for a multivaluelist), each
within its length. A field the spec does not define, an attribute the service does not,
a value of the wrong type, a second value of a single field: each a 400 naming the field,
never repeating the value. ``media_url`` must be an https URL (a client would otherwise
link our pages to anything). ``api_key`` and ``jurisdiction_id`` are checked by the router
first (403 and 404 come before field errors).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from citygate.contract.rfc3339 import parse_rfc3339_ns
from citygate.open311.errors import Open311Error
from citygate.open311.form import Form
from citygate.open311.settings import LIST_TYPES, AttributeDefinition, Open311Settings, ServiceDefinition
from citygate.service.reports import Reporter

# The spec's fields and the longest value each may have (description: the settings').
FIELD_CHARS: Final[dict[str, int]] = {
    "api_key": 200,
    "jurisdiction_id": 200,
    "service_code": 64,
    "lat": 40,
    "long": 40,
    "address_string": 500,
    "address_id": 100,
    "email": 254,
    "device_id": 200,
    "account_id": 200,
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "description": 0,  # Open311Settings.max_description_chars
    "media_url": 2000,
}
PERSONAL: Final = ("first_name", "last_name", "email", "phone", "device_id", "account_id")
_ATTRIBUTE: Final = re.compile(r"attribute\[([^\[\]]{1,64})\](\[\])?")
_DEGREES: Final = re.compile(r"[+-]?[0-9]{1,3}(\.[0-9]{1,17})?")
_NUMBER: Final = re.compile(r"[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,3})?")
_EMAIL: Final = re.compile(r"[^@\s]{1,64}@[^@\s]{1,253}")
_PHONE: Final = re.compile(r"[0-9+()./ -]{3,40}")
# Characters refused in every value (XML 1.0 cannot carry them; nothing a person types), and
# line breaks in single-line ones.
_CONTROL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_LINE_BREAK: Final = re.compile("[\r\n]")
_MULTILINE: Final = frozenset({"description"})


@dataclass(frozen=True, slots=True)
class Submission:
    """A checked report; the personal fields do not show in ``repr``."""

    service: ServiceDefinition
    description: str
    latitude: float | None
    longitude: float | None
    address: str | None
    address_id: str | None
    media_url: str | None
    attributes: dict[str, str | list[str]]
    reporter: Reporter = field(default_factory=Reporter, repr=False)  # the personal data, apart


def single(form: Form, name: str) -> str | None:
    """The one value of a spec field (None when absent or empty: the spec's "optional"), or 400."""
    values = [v for k, v in form.pairs if k == name]
    if len(values) > 1:
        raise Open311Error(400, f"{name} is given more than once")
    return values[0] if values and values[0] != "" else None


def check(form: Form, settings: Open311Settings, services: dict[str, ServiceDefinition]) -> Submission:
    """The report this form describes, or Open311Error (400; 404 for an unknown service_code)."""
    attrs: dict[str, list[str]] = {}
    for name, value in form.pairs:
        m = _ATTRIBUTE.fullmatch(name)
        if m is not None:
            _text(name, value, settings.max_attribute_chars, multiline=True)
            attrs.setdefault(m.group(1), []).append(value)
        elif name not in FIELD_CHARS:
            raise Open311Error(400, f"{name[:100]!r} is not a field of a service request")
    values: dict[str, str | None] = {}
    for name, limit in FIELD_CHARS.items():
        v = single(form, name)
        if v is not None:
            limit = limit or settings.max_description_chars
            _text(name, v, limit, multiline=name in _MULTILINE)
        values[name] = v
    code = values["service_code"]
    if code is None:
        raise Open311Error(400, "service_code was not provided")
    service = services.get(code)
    if service is None:
        raise Open311Error(404, f"service_code {code!r} was not found (see services.json)")
    lat, lon = _location(values["lat"], values["long"], settings)
    if lat is None and values["address_string"] is None and values["address_id"] is None:
        raise Open311Error(400, "a location is required: lat and long, address_string or address_id")
    media = values["media_url"]
    if media is not None:
        _https_url(media)
    if values["email"] is not None and _EMAIL.fullmatch(values["email"]) is None:
        raise Open311Error(400, "email is not an e-mail address")
    if values["phone"] is not None and _PHONE.fullmatch(values["phone"]) is None:
        raise Open311Error(400, "phone is not a phone number (digits, spaces, + ( ) . / -)")
    return Submission(
        service=service,
        description=values["description"] or "",
        latitude=lat,
        longitude=lon,
        address=values["address_string"],
        address_id=values["address_id"],
        media_url=media,
        attributes=_attributes(service, attrs),
        reporter=Reporter(**{k: values[k] for k in PERSONAL}),
    )


def _text(name: str, value: str, limit: int, *, multiline: bool) -> None:
    if len(value) > limit:
        raise Open311Error(400, f"{name} is longer than {limit} characters")
    if _CONTROL.search(value) or (not multiline and _LINE_BREAK.search(value)):
        what = "control characters" if multiline else "control characters or line breaks"
        raise Open311Error(400, f"{name} contains {what}")


def _location(
    lat_s: str | None, lon_s: str | None, settings: Open311Settings
) -> tuple[float | None, float | None]:
    if lat_s is None and lon_s is None:
        return None, None
    if lat_s is None or lon_s is None:
        raise Open311Error(400, "lat and long go together")
    lat, lon = _degrees("lat", lat_s, 90.0), _degrees("long", lon_s, 180.0)
    b = settings.bounds
    if b is not None and not (b[0] <= lat <= b[2] and b[1] <= lon <= b[3]):
        raise Open311Error(400, "lat/long is outside the area this city serves")
    return lat, lon


def _degrees(name: str, s: str, limit: float) -> float:
    if _DEGREES.fullmatch(s) is None:
        raise Open311Error(400, f"{name} must be decimal degrees (WGS84), e.g. 52.5163")
    v = float(s)
    if not -limit <= v <= limit:
        raise Open311Error(400, f"{name} must be between -{limit:g} and {limit:g}")
    return v


def _https_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        raise Open311Error(400, "media_url is not a URL") from None
    if parts.scheme.lower() != "https" or not parts.hostname or parts.username or parts.password:
        raise Open311Error(400, "media_url must be an https:// URL with a host (and no user or password)")
    if port == 0 or any(c.isspace() for c in url):
        raise Open311Error(400, "media_url is not a URL")


def _attributes(service: ServiceDefinition, given: dict[str, list[str]]) -> dict[str, str | list[str]]:
    defs = {a.code: a for a in service.attributes}
    out: dict[str, str | list[str]] = {}
    for code, values in given.items():
        a = defs.get(code)
        if a is None or not a.variable:
            raise Open311Error(400, f"attribute {code[:64]!r} is not one of service {service.code!r}")
        values = [v for v in values if v != ""]
        if not values:
            continue  # optional means: empty is the same as absent
        if a.datatype == "multivaluelist":
            out[code] = [_value(a, v) for v in dict.fromkeys(values)]
        elif len(values) > 1:
            raise Open311Error(400, f"attribute {code!r} takes one value")
        else:
            out[code] = _value(a, values[0])
    for a in service.attributes:
        if a.required and a.code not in out:
            raise Open311Error(400, f"attribute {a.code!r} is required ({a.description})")
    return out


def _value(a: AttributeDefinition, v: str) -> str:
    if a.datatype in LIST_TYPES:
        if v not in {x.key for x in a.values}:
            raise Open311Error(400, f"attribute {a.code!r} must be one of the keys in its definition")
    elif a.datatype == "number":
        if _NUMBER.fullmatch(v) is None or not math.isfinite(float(v)):
            raise Open311Error(400, f"attribute {a.code!r} must be a number")
    elif a.datatype == "datetime":
        if parse_rfc3339_ns(v) is None:
            raise Open311Error(400, f"attribute {a.code!r} must be a date-time such as 2026-01-01T10:00:00Z")
    elif a.datatype == "string" and _LINE_BREAK.search(v):
        raise Open311Error(400, f"attribute {a.code!r} is a string: no line breaks")
    return v
