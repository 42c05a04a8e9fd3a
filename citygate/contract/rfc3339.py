"""RFC 3339 date-times: the one parser and the formatters that the rest of citygate uses.

One pattern serves as the profiles' JSON Schema ``pattern`` for ``ts`` and as the
parser's regex, so what the schema advertises and what the validator accepts cannot
drift apart. Times are integer nanoseconds since the epoch throughout: ``datetime``
stops at microseconds, and readings are stored in nanoseconds. The one exception,
:func:`format_rfc3339_timestamp`, takes float seconds: the fleet view's and
``gateway held list --json``'s times have always been ``datetime``'s form of those.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Final

# A date-time with a mandatory offset, fractional seconds up to ns. An ECMA-262 regex
# as JSON Schema wants it, which Python reads the same way (with fullmatch: ``$`` would
# also match before a trailing newline).
RFC3339_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
# The parser's regex is that pattern with its groups made non-capturing and each of its
# parts captured instead (digits, "Z", the offset's sign), which changes what a match
# returns, never what matches:
# ^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})
#  (?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))$
_RFC3339_RE: Final = re.compile(
    re.sub(r"\[0-9\]\{[0-9,]+\}|\[Zz\]|\[\+-\]", r"(\g<0>)", RFC3339_PATTERN.replace("(", "(?:"))
)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_NS: Final = 1_000_000_000
_SECONDS: Final = "%Y-%m-%dT%H:%M:%S"


def parse_rfc3339_ns(s: str) -> int | None:
    """Epoch nanoseconds of an RFC 3339 date-time with offset, or None if it is not one.

    Hand-written rather than ``datetime.fromisoformat`` because that accepts
    naive times and more ISO 8601 forms, and drops digits past microseconds.
    A leap second (``:60``) maps to the following second, as POSIX time does.
    """
    if len(s) > 40:
        return None
    m = _RFC3339_RE.fullmatch(s)
    if m is None:
        return None
    y, mo, d, hh, mi, ss, frac, z, sign, oh, om = m.groups()
    hour, minute, second = int(hh), int(mi), int(ss)
    if hour > 23 or minute > 59 or second > 60:
        return None
    try:
        days = date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    offset = 0
    if z is None:
        oh_i, om_i = int(oh), int(om)
        if oh_i > 23 or om_i > 59:
            return None
        offset = (oh_i * 3600 + om_i * 60) * (-1 if sign == "-" else 1)
    secs = days * 86400 + hour * 3600 + minute * 60 + second - offset
    frac_ns = int(frac.ljust(9, "0")) if frac else 0
    return secs * _NS + frac_ns


def format_rfc3339_ns(ns: int) -> str:
    """UTC with nanoseconds and ``Z`` (the wire's and the read API's form of a time).

    Raises OverflowError, ValueError or OSError outside the years ``datetime`` holds.
    """
    secs, frac = divmod(ns, _NS)
    return datetime.fromtimestamp(secs, UTC).strftime(_SECONDS) + f".{frac:09d}Z"


def format_rfc3339_ms(ns: int) -> str:
    """UTC to the millisecond with ``Z`` (for messages); raises as :func:`format_rfc3339_ns`."""
    secs, frac = divmod(ns, _NS)
    return datetime.fromtimestamp(secs, UTC).strftime(_SECONDS) + f".{frac // 1_000_000:03d}Z"


def format_rfc3339_timestamp(seconds: float) -> str:
    """UTC with ``Z``, from float epoch seconds: to the microsecond as ``datetime.fromtimestamp``
    rounds them, the fraction left out when it is zero (``isoformat``'s form).

    What ``seconds`` is computed from is the caller's: ``ns / 1_000_000_000`` and ``ns / 1e9``
    are not always the same float, so not always the same microsecond. Raises as
    :func:`format_rfc3339_ns`.
    """
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
