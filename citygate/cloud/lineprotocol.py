"""InfluxDB line protocol, written fast and escaped exactly as influxdb-client's ``Point``.

``Point`` builds about 60k points/s (measured on this project's machine), well below what one
InfluxDB node takes, so the ingest path serialises readings itself. The
escaping rules are the ones of ``influxdb_client.client.write.point`` (tested
for equality against ``Point(...).to_line_protocol()`` with generated names and
values): measurement ``, space \\n \\t \\r``; tag keys, tag values and field keys
also ``=``; a tag value ending in a backslash gets a trailing space; string
field values escape ``"`` and ``\\``. Tags and fields are sorted by key, and
``None`` values and non-finite floats are left out, as ``Point`` does.

Numbers: an ``int`` gets the ``i`` suffix; a ``float`` is written with
``repr`` and a trailing ``.0`` removed (``1.0`` -> ``1``), which line protocol
reads as a float because it has no ``i``: a float field never turns into an
integer field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final

import orjson

from citygate.contract.readings import Reading

FieldValue = float | int | bool | str

_ESCAPE_MEASUREMENT: Final = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY: Final = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING: Final = str.maketrans({'"': r"\"", "\\": r"\\"})


def escape_measurement(name: str) -> str:
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(key: str) -> str:
    """A tag key or field key."""
    return key.translate(_ESCAPE_KEY)


def escape_tag_value(value: str) -> str:
    out = value.translate(_ESCAPE_KEY)
    # A trailing backslash would escape the separator after it.
    return out + " " if out.endswith("\\") else out


def format_value(value: FieldValue) -> str | None:
    """One field value in line protocol, or None when ``Point`` would drop it."""
    cls = value.__class__
    if cls is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            return None
        s = repr(value)
        return s[:-2] if s.endswith(".0") else s
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return f"{value}i"
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPE_STRING) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{int(value)}i"
    if isinstance(value, float):
        return format_value(float(value))
    raise TypeError(f"field value of type {type(value).__name__} is not supported")


def tag_set(tags: Mapping[str, str | None]) -> str:
    """``,k=v,k2=v2`` sorted by key (empty keys/values dropped, as Point does)."""
    parts = []
    for k, v in sorted(tags.items()):
        if v is None:
            continue
        ek, ev = escape_key(k), escape_tag_value(v)
        if ek and ev:
            parts.append(f"{ek}={ev}")
    return "," + ",".join(parts) if parts else ""


def field_set(fields: Mapping[str, FieldValue | None]) -> str:
    parts = []
    for k, v in sorted(fields.items()):
        if v is None:
            continue
        text = format_value(v)
        if text is not None:
            parts.append(f"{escape_key(k)}={text}")
    return ",".join(parts)


def encode_point(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    ts_ns: int | None,
) -> str:
    """One line (no newline); "" when no field is left, like ``Point``."""
    fs = field_set(fields)
    if not fs:
        return ""
    ts = "" if ts_ns is None else f" {int(ts_ns)}"
    return f"{escape_measurement(measurement)}{tag_set(tags)} {fs}{ts}"


# How :meth:`ReadingEncoder.lines` writes the fields of one shape of all-float readings:
# the values in sorted-name order, and a %-template of the fields and the timestamp.
_FloatPlan = tuple[Callable[[Mapping[str, Any]], tuple[Any, ...]], str]

# What may be left of orjson's text of a list of floats written without an exponent.
_PLAIN_NUMBER_CHARS: Final = b"0123456789.,-"


class ReadingEncoder:
    """Readings -> line protocol, with per-device series keys and per-shape field plans cached.

    The series key (measurement + tags) of a device is built once from the
    inventory's static metadata: device_id, district, profile_version, site.
    Never the gateway or the batch id (a replay through another gateway must
    overwrite, not duplicate) and never ``seq`` (a field).

    Readings of one profile nearly always carry the same field names in the
    same order, so the sorted order and escaped keys are computed once per
    such "shape" (a plan) instead of sorting and escaping for every reading.
    Both caches are bounded.
    """

    __slots__ = ("_float_plans", "_plans", "_prefixes")

    _MAX_CACHE = 100_000

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, str, int, str | None, str | None], str] = {}
        self._plans: dict[tuple[tuple[str, ...], bool], tuple[tuple[str, str], ...]] = {}
        self._float_plans: dict[tuple[tuple[str, ...], bool], _FloatPlan | None] = {}

    def series_key(
        self, measurement: str, device_id: str, profile_version: int, site: str | None, district: str | None
    ) -> str:
        """Measurement and tags of a device's series, with the separator before the fields."""
        k = (measurement, device_id, profile_version, site, district)
        prefix = self._prefixes.get(k)
        if prefix is None:
            tags = {
                "device_id": device_id,
                "profile_version": str(profile_version),
                "site": site,
                "district": district,
            }
            prefix = escape_measurement(measurement) + tag_set(tags) + " "
            if len(self._prefixes) >= self._MAX_CACHE:
                self._prefixes.clear()
            self._prefixes[k] = prefix
        return prefix

    def _plan(self, names: tuple[str, ...], with_seq: bool) -> tuple[tuple[str, str], ...]:
        all_names = {*names, "seq"} if with_seq else set(names)
        plan = tuple((n, escape_key(n) + "=") for n in sorted(all_names))
        if len(self._plans) >= self._MAX_CACHE:
            self._plans.clear()
        self._plans[(names, with_seq)] = plan
        return plan

    def line(self, reading: Reading, site: str | None, district: str | None) -> str:
        """One reading's line (for many, :meth:`lines` is faster)."""
        prefix = self._prefixes.get(
            (reading.measurement, reading.device_id, reading.profile_version, site, district)
        ) or self.series_key(reading.measurement, reading.device_id, reading.profile_version, site, district)
        return prefix + self._tail(reading)

    def _tail(self, reading: Reading) -> str:
        """The fields and the timestamp of one reading, value by value."""
        values = reading.values
        seq = reading.seq
        has_seq = seq is not None
        plan = self._plans.get((tuple(values), has_seq)) or self._plan(tuple(values), has_seq)
        parts: list[str] = []
        append = parts.append
        for name, ek in plan:
            v = values[name] if name != "seq" or not has_seq else seq
            cls = v.__class__
            if cls is float:
                s = _repr(v)
                last = s[-1]
                if last == "0" and s[-2] == ".":
                    s = s[:-2]
                elif last == "n" or last == "f":
                    continue  # nan/inf: validation never lets these through; Point drops them too
                append(ek + s)
            elif cls is int:
                append(f"{ek}{v}i")
            else:
                text = format_value(v)  # type: ignore[arg-type]
                if text is not None:
                    append(ek + text)
        return f"{','.join(parts)} {reading.ts_ns}"

    def _float_plan(self, names: tuple[str, ...], with_seq: bool) -> _FloatPlan | None:
        """The float plan of a shape; None for a shape :meth:`lines` leaves to :meth:`_tail`."""
        plan: _FloatPlan | None = None
        if names and "seq" not in names:
            order = sorted({*names, "seq"} if with_seq else names)
            value_names = [n for n in order if n != "seq"]
            getter: Callable[[Mapping[str, Any]], tuple[Any, ...]]
            if len(value_names) > 1:
                getter = itemgetter(*value_names)
            else:
                only = value_names[0]
                getter = lambda values: (values[only],)  # noqa: E731 (itemgetter of one name is no tuple)
            # Two %-passes fill the template: floats (%s) first, then seq and ts (%%d);
            # a literal % is written %%%% to survive both.
            fields = ",".join(
                escape_key(n).replace("%", "%%%%") + ("=%%di" if n == "seq" else "=%s") for n in order
            )
            plan = (getter, fields + " %%d")
        if len(self._float_plans) >= self._MAX_CACHE:
            self._float_plans.clear()
        self._float_plans[(names, with_seq)] = plan
        return plan

    def lines(self, readings: Sequence[Reading], prefixes: Sequence[str]) -> list[str]:
        """The line of each reading after its series key (:meth:`series_key`); as :meth:`line` writes it.

        Float values are most of what ingest writes, and ``repr`` one float at
        a time was a third of the cloud's time per reading. Here all the float
        values of the batch go through one ``orjson.dumps`` (whose shortest
        round-trip text is ``repr``'s whenever it has no exponent) and the
        lines are filled in by two %-formats of one template, so the Python
        work per reading is a few list operations. What this cannot write
        exactly (an exponent, a value below 1e-4, which ``repr`` writes with
        one, nan/inf, a value that is not a float, a newline) sends the batch
        to :meth:`_tail`, value by value.
        """
        if not readings:
            return []
        floats: list[Any] = []
        ints: list[Any] = []  # seq (when present) and ts of each float-plan reading, in template order
        template: list[str] = []
        escaped: dict[str, str] = {}
        plans = self._float_plans
        for reading, prefix in zip(readings, prefixes, strict=True):
            values = reading.values
            seq = reading.seq
            key = (tuple(values), seq is not None)
            try:
                plan = plans[key]
            except KeyError:
                plan = self._float_plan(*key)
            p = escaped.get(prefix)
            if p is None:
                p = escaped[prefix] = prefix.replace("%", "%%%%")
            if plan is None:
                template.append(p + self._tail(reading).replace("%", "%%%%"))
                continue
            getter, fields = plan
            floats += getter(values)
            if seq is not None:
                ints.append(seq)
            ints.append(reading.ts_ns)
            template.append(p + fields)
        try:
            text = orjson.dumps(floats)
        except orjson.JSONEncodeError:  # e.g. a float subclass
            return self._slow_lines(readings, prefixes)
        # Only digits, '.', ',', '-' and one dot per value: every value is a float written
        # without an exponent. "0.0000" also catches 1e-5 <= |x| < 1e-4, where repr has one.
        if (
            text.translate(None, _PLAIN_NUMBER_CHARS) != b"[]"
            or text.count(b".") != len(floats)
            or b"0.0000" in text
            or not _INT_ONLY.issuperset(map(type, ints))
        ):
            return self._slow_lines(readings, prefixes)
        # Every ".0" followed by ',' or ']' ends a value: "1.0" is written "1", as Point does.
        values_text = text.decode().replace(".0,", ",").replace(".0]", "]")[1:-1]
        args = tuple(values_text.split(",")) if floats else ()
        out = ("\n".join(template) % args % tuple(ints)).split("\n")
        if len(out) != len(readings):  # a newline inside a string value
            return self._slow_lines(readings, prefixes)
        return out

    def _slow_lines(self, readings: Sequence[Reading], prefixes: Sequence[str]) -> list[str]:
        return [prefix + self._tail(r) for r, prefix in zip(readings, prefixes, strict=True)]


_repr: Final = repr
_INT_ONLY: Final = frozenset({int})


def join_lines(lines: Iterable[str]) -> bytes:
    return "\n".join(lines).encode()
