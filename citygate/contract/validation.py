"""Payload validation: raw MQTT bytes -> a typed Reading, or a Rejection with a reason.

This is the hot path of the gateway (every message) and of the cloud (every
reading of every batch), so it is written for speed: each profile is compiled
once into plain tuples and dicts, payloads are parsed with orjson, and values
are checked by hand instead of through pydantic. A gateway on a Pi serving a
few thousand devices must not spend its CPU here.

It is also the first line of defence (docs/ARCHITECTURE.md, guarantee 4), so nothing a device
sends can make it raise: every input becomes a Reading or a Rejection whose
reason is countable (``RejectReason``) and whose detail tells the device
vendor exactly what to fix.

Two payload forms are accepted on ``devices/{device_id}/telemetry``; the
device id always comes from the topic, never from the payload:

* JSON: ``{"ts": <epoch ms | RFC 3339>, "seq": <int>, "readings": {...}}``
* SenML (RFC 8428) JSON: an array of records forming one reading (one time).
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from citygate.contract.inventory import DeviceRecord, Inventory
from citygate.contract.profiles import INT64_MAX, INT64_MIN, DeviceProfile, ProfileRegistry

Value = float | int | bool | str


class RejectReason(StrEnum):
    """Why a payload or reading was refused; the label of the rejection counters."""

    MALFORMED_JSON = "malformed_json"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BAD_SHAPE = "bad_shape"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_PROFILE = "unknown_profile"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    BAD_UNIT = "bad_unit"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused payload: a countable reason, a specific detail, the field at fault if any."""

    reason: RejectReason
    detail: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated reading of one device at one time.

    ``values`` hold Python types that match the profile exactly (float fields are
    always ``float``), so InfluxDB field types stay stable across writes.
    """

    device_id: str
    profile: str
    profile_version: int
    measurement: str
    ts_ns: int
    seq: int | None
    values: Mapping[str, Value]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, e.g. for the gateway's outbox rows.

        The measurement is left out on purpose: it follows from the profile, and
        the cloud takes it from its own registry rather than from a gateway.
        """
        return {
            "device_id": self.device_id,
            "ts_ns": self.ts_ns,
            "seq": self.seq,
            "values": dict(self.values),
            "profile": self.profile,
            "profile_version": self.profile_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, measurement: str | None = None) -> Reading:
        """Rebuild a Reading from :meth:`to_dict` output that this system wrote itself.

        Checks the structure only (raises ValueError); it does not re-check the
        values against the profile, so data that crossed a trust boundary goes
        through :meth:`Validator.validate_obj` instead (see
        :mod:`citygate.contract.wire`). ``measurement`` defaults to the profile
        name, which is the profiles' default measurement.
        """
        device_id = data.get("device_id")
        profile = data.get("profile")
        version = data.get("profile_version")
        ts_ns = data.get("ts_ns")
        seq = data.get("seq")
        values = data.get("values")
        if not isinstance(device_id, str) or not device_id:
            raise ValueError("reading: 'device_id' must be a non-empty string")
        if not isinstance(profile, str) or not profile:
            raise ValueError("reading: 'profile' must be a non-empty string")
        if type(version) is not int or version < 1:
            raise ValueError("reading: 'profile_version' must be an integer >= 1")
        if type(ts_ns) is not int:
            raise ValueError("reading: 'ts_ns' must be an integer")
        if seq is not None and (type(seq) is not int or seq < 0):
            raise ValueError("reading: 'seq' must be null or an integer >= 0")
        if not isinstance(values, Mapping) or not values:
            raise ValueError("reading: 'values' must be a non-empty object")
        for k, v in values.items():
            if not isinstance(k, str) or not isinstance(v, float | int | bool | str):
                raise ValueError(f"reading: value {k!r} is not a number, boolean or string")
        return cls(
            device_id=device_id,
            profile=profile,
            profile_version=version,
            measurement=measurement if measurement is not None else profile,
            ts_ns=ts_ns,
            seq=seq,
            values=dict(values),
        )


# The generated __init__ of a frozen dataclass sets each field through
# object.__setattr__, which is a fifth of the cost of validating a payload.
# The hot path sets the slots through their descriptors instead: same object,
# same invariants (only this module builds Readings this way), half the time.
_SET_READING_SLOTS: Final = tuple(
    Reading.__dict__[n].__set__
    for n in ("device_id", "profile", "profile_version", "measurement", "ts_ns", "seq", "values")
)
_object_new: Final = object.__new__


def _new_reading(
    device_id: str,
    profile: str,
    profile_version: int,
    measurement: str,
    ts_ns: int,
    seq: int | None,
    values: dict[str, Value],
) -> Reading:
    s0, s1, s2, s3, s4, s5, s6 = _SET_READING_SLOTS
    r: Reading = _object_new(Reading)
    s0(r, device_id)
    s1(r, profile)
    s2(r, profile_version)
    s3(r, measurement)
    s4(r, ts_ns)
    s5(r, seq)
    s6(r, values)
    return r


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Bounds on what a device may send; the same on gateway and cloud by default."""

    max_payload_bytes: int = 8192
    max_future_s: float = 300.0
    max_past_s: float = 30 * 86400.0
    max_string_len: int = 256

    def __post_init__(self) -> None:
        if self.max_payload_bytes <= 0 or self.max_string_len <= 0:
            raise ValueError("max_payload_bytes and max_string_len must be positive")
        if not (math.isfinite(self.max_future_s) and math.isfinite(self.max_past_s)):
            raise ValueError("max_future_s and max_past_s must be finite")
        if self.max_future_s < 0 or self.max_past_s < 0:
            raise ValueError("max_future_s and max_past_s must not be negative")


# -- compiled profiles ---------------------------------------------------------

_FLOAT: Final = 0
_INT: Final = 1
_BOOL: Final = 2
_STR: Final = 3
_KINDS: Final = {"float": _FLOAT, "int": _INT, "bool": _BOOL, "string": _STR}
_SENML_KEY_FOR_KIND: Final = ("v", "v", "vb", "vs")
_KIND_WANTS: Final = ("a number", "an integer", "true or false", "a string")

# A field rule: (kind, lo, hi, required, unit, lo_text, hi_text, unit_suffix,
# exact_type). A plain tuple because indexing it is the cheapest thing Python
# can do. The fast path accepts a value when its class *is* exact_type and
# lo <= value <= hi: float bounds are always finite (the largest double when the
# profile has none), so that one chained comparison also rejects NaN and the
# infinities; bool fields get the bounds False..True; string fields have no
# exact_type and always take the explained path (length, control characters).
_Rule = tuple[int, Any, Any, bool, str | None, str, str, str, type | None]


def _num_text(x: float) -> str:
    s = repr(x)
    return s[:-2] if s.endswith(".0") else s


class _Compiled:
    """A profile reduced to what the hot path needs."""

    __slots__ = ("measurement", "n_required", "name", "required", "rules", "version")

    def __init__(self, profile: DeviceProfile) -> None:
        self.name = profile.name
        self.version = profile.version
        self.measurement = profile.measurement
        rules: dict[str, _Rule] = {}
        for fname, spec in profile.fields.items():
            kind = _KINDS[spec.type]
            lo: Any
            hi: Any
            exact: type | None
            if kind == _FLOAT:
                lo = -_MAX_FLOAT if spec.min is None else float(spec.min)
                hi = _MAX_FLOAT if spec.max is None else float(spec.max)
                exact = float
            elif kind == _INT:
                lo = INT64_MIN if spec.min is None else int(spec.min)
                hi = INT64_MAX if spec.max is None else int(spec.max)
                exact = int
            elif kind == _BOOL:
                lo, hi, exact = False, True, bool
            else:
                lo = hi = exact = None
            numeric = kind in (_FLOAT, _INT)
            rules[fname] = (
                kind,
                lo,
                hi,
                spec.required,
                spec.unit,
                _num_text(lo) if numeric else "",
                _num_text(hi) if numeric else "",
                f" {spec.unit}" if spec.unit else "",
                exact,
            )
        self.rules = rules
        self.required = tuple(n for n, r in rules.items() if r[3])
        self.n_required = len(self.required)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


# -- helpers for messages (off the hot path) -----------------------------------


def _short(s: str, limit: int = 40) -> str:
    return repr(s) if len(s) <= limit else repr(s[: limit - 3] + "...")


def _show(v: object) -> str:
    """A short, safe description of a JSON value for a rejection detail."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        # repr() of a huge int raises ValueError (int max str digits).
        return repr(int(v)) if v.bit_length() <= 128 else f"a {v.bit_length()}-bit integer"
    if isinstance(v, float):
        return repr(float(v))
    if isinstance(v, str):
        return f"the string {_short(v)}"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list | tuple):
        return "an array"
    return f"a {type(v).__name__}"


def fmt_ts(ts_ns: int) -> str:
    """A timestamp for an error message: RFC 3339 to the millisecond, or the raw number."""
    try:
        secs, frac = divmod(ts_ns, 1_000_000_000)
        dt = datetime.fromtimestamp(secs, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return f"{_show(ts_ns)} ns since the epoch"
    ms = frac // 1_000_000
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def fmt_duration(ns: int) -> str:
    """A duration for an error message, in seconds (and days past one)."""
    if ns >= 10**27:  # ns / _NS would overflow a float for the absurd ones
        return "more than 10**18 s"
    s = ns / _NS
    if s >= 86400 * 365 * 1000:
        return f"{s:.3g} s"
    if s >= 86400:
        return f"{s:.0f} s ({s / 86400:.1f} days)"
    return f"{s:.3f} s"


def _key_before(text: bytes, pos: int) -> str | None:
    """The object key whose value starts at ``pos``, if the text there is ``"key": ``."""
    m = _KEY_BEFORE_RE.search(text[max(0, pos - 200) : pos])
    if m is None:
        return None
    return m.group(1).decode("utf-8", "replace")


def _mask_strings(raw: bytes) -> bytes:
    """``raw`` with the contents of JSON string literals blanked, offsets kept.

    Linear time on purpose (a regex over escaped quotes can go quadratic on
    hostile input, and this runs on payloads that already failed to parse).
    """
    out = bytearray(raw)
    n = len(raw)
    i = raw.find(b'"')
    while i != -1:
        j = i + 1
        while True:
            j = raw.find(b'"', j)
            if j == -1:
                out[i + 1 :] = b"_" * (n - i - 1)
                return bytes(out)
            k = j - 1
            backslashes = 0
            while k > i and raw[k] == 0x5C:
                backslashes += 1
                k -= 1
            if backslashes % 2 == 0:
                break
            j += 1
        out[i + 1 : j] = b"_" * (j - i - 1)
        i = raw.find(b'"', j + 1)
    return bytes(out)


_NONFINITE_TOKEN_RE: Final = re.compile(
    rb"(?<![A-Za-z0-9_.])[-+]?(?:NaN|nan|NAN|Infinity|infinity|INFINITY|inf|Inf|INF)(?![A-Za-z0-9_])"
)
_KEY_BEFORE_RE: Final = re.compile(rb'"([^"\\]{1,64})"\s*:\s*[-+]?$')
_CONTROL_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_RFC3339_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_JSON_KEYS: Final = frozenset({"ts", "seq", "readings"})
_SENML_VALUE_KEYS: Final = ("v", "vb", "vs", "vd", "s")
_SENML_BASE_KEYS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
# Keys understood or deliberately ignored ("ut" update time, "bs" base sum);
# "seq" is citygate's extension carrying the device's sequence number.
_SENML_KEYS: Final = _SENML_BASE_KEYS | frozenset({"n", "u", "t", "ut", "seq", *_SENML_VALUE_KEYS})
_SENML_OTHER_VALUE_KEYS: Final = tuple(frozenset(_SENML_VALUE_KEYS) - {want} for want in _SENML_KEY_FOR_KIND)
_SENML_ABSOLUTE: Final = 2**28  # RFC 8428 4.5.3: smaller times are relative to "now"
_SENML_MAX_ABS_S: Final = 1e15  # beyond any real clock; keeps float -> ns arithmetic finite
_NS: Final = 1_000_000_000
_MAX_FLOAT: Final = sys.float_info.max


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


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Validator:
    """Checks device payloads against the inventory and the device profiles.

    Construct one per (registry, inventory); it caches each compiled profile and
    each device's profile, so repeated payloads cost dictionary lookups only.
    ``validate`` and ``validate_obj`` never raise on any payload.
    """

    __slots__ = (
        "_by_device",
        "_compiled",
        "_inventory",
        "_limits",
        "_max_future_ns",
        "_max_past_ns",
        "_max_str",
        "_registry",
    )

    def __init__(
        self,
        registry: ProfileRegistry,
        inventory: Inventory,
        limits: ValidationLimits = ValidationLimits(),  # frozen: sharing the default is safe
        *,
        _compiled: dict[tuple[str, int], _Compiled] | None = None,
    ) -> None:
        self._registry = registry
        self._inventory = inventory
        self._limits = limits
        self._max_future_ns = int(limits.max_future_s * _NS)
        self._max_past_ns = int(limits.max_past_s * _NS)
        self._max_str = limits.max_string_len
        self._compiled: dict[tuple[str, int], _Compiled] = {} if _compiled is None else _compiled
        self._by_device: dict[str, _Compiled] = {}

    @property
    def registry(self) -> ProfileRegistry:
        return self._registry

    @property
    def inventory(self) -> Inventory:
        return self._inventory

    @property
    def limits(self) -> ValidationLimits:
        return self._limits

    def with_inventory(self, inventory: Inventory) -> Validator:
        """A validator for a reloaded inventory that reuses the compiled profiles."""
        return Validator(self._registry, inventory, self._limits, _compiled=self._compiled)

    # -- lookups ---------------------------------------------------------------

    def _profile_for(self, device_id: str) -> _Compiled | Rejection:
        try:
            cp = self._by_device.get(device_id)
        except TypeError:  # an unhashable device id given by a buggy caller
            return Rejection(RejectReason.UNKNOWN_DEVICE, "device id must be a string")
        if cp is not None:
            return cp
        if not isinstance(device_id, str):
            return Rejection(RejectReason.UNKNOWN_DEVICE, "device id must be a string")
        record: DeviceRecord | None = self._inventory.get(device_id)
        if record is None:
            return Rejection(
                RejectReason.UNKNOWN_DEVICE,
                f"device {_short(device_id, 70)} is not in the device inventory "
                "(register it with 'citygate pki issue device')",
            )
        found = self._compile(record.profile, record.profile_version)
        if isinstance(found, Rejection):
            return Rejection(
                found.reason, f"device {_short(device_id, 70)} is registered with {found.detail}"
            )
        self._by_device[device_id] = found
        return found

    def _compile(self, name: str, version: int) -> _Compiled | Rejection:
        key = (name, version)
        cp = self._compiled.get(key)
        if cp is not None:
            return cp
        profile = self._registry.find(name, version)
        if profile is None:
            known = self._registry.versions(name)
            have = (
                f"known versions: {', '.join(map(str, known))}"
                if known
                else f"known profiles: {', '.join(self._registry.names()) or '(none)'}"
            )
            return Rejection(
                RejectReason.UNKNOWN_PROFILE,
                f"profile {_short(name)} v{version}, which this system does not have ({have})",
            )
        cp = _Compiled(profile)
        self._compiled[key] = cp
        return cp

    # -- entry points ----------------------------------------------------------

    def validate(self, device_id: str, raw: bytes, now_ns: int | None = None) -> Reading | Rejection:
        """Validate one MQTT payload published on ``devices/{device_id}/telemetry``."""
        size = len(raw)
        limit = self._limits.max_payload_bytes
        if size > limit:
            return Rejection(
                RejectReason.PAYLOAD_TOO_LARGE,
                f"payload is {size} bytes; the limit is {limit} bytes (send one reading per message)",
            )
        cp = self._profile_for(device_id)
        if isinstance(cp, Rejection):
            return cp
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            return self._parse_failure(bytes(raw), e)
        # orjson built obj just now and nobody else holds it: its readings dict
        # can become the Reading's values without a copy.
        return self._dispatch(device_id, cp, obj, now_ns, True)

    def validate_obj(self, device_id: str, obj: object, now_ns: int | None = None) -> Reading | Rejection:
        """Validate an already-parsed payload (JSON form or SenML), with the same checks."""
        cp = self._profile_for(device_id)
        if isinstance(cp, Rejection):
            return cp
        return self._dispatch(device_id, cp, obj, now_ns, False)

    # -- internals -------------------------------------------------------------

    def _parse_failure(self, raw: bytes, e: orjson.JSONDecodeError) -> Rejection:
        msg = str(e)
        # orjson refuses NaN/Infinity literals and numbers that overflow a
        # double; say so, since "unexpected character" would send a vendor
        # hunting for a syntax error in an otherwise valid payload.
        if "infinity" in msg:
            fname = _key_before(raw, e.pos)
            return Rejection(
                RejectReason.NOT_FINITE,
                (f"field {_short(fname)}: " if fname else "")
                + "a number in the payload is too large for a double (it would be infinite)",
                fname,
            )
        masked = _mask_strings(raw)
        m = _NONFINITE_TOKEN_RE.search(masked)
        if m is not None:
            fname = _key_before(raw, m.start())
            token = m.group(0).decode("ascii")
            return Rejection(
                RejectReason.NOT_FINITE,
                (f"field {_short(fname)} = {token}: " if fname else f"{token}: ")
                + "NaN and Infinity are not valid JSON and cannot be stored; "
                "leave the field out when there is no valid value",
                fname,
            )
        return Rejection(RejectReason.MALFORMED_JSON, f"payload is not valid JSON: {msg}")

    def _dispatch(
        self, device_id: str, cp: _Compiled, obj: object, now_ns: int | None, owned: bool
    ) -> Reading | Rejection:
        if now_ns is None:
            now_ns = time.time_ns()
        if obj.__class__ is dict:
            return self._json_form(device_id, cp, obj, now_ns, owned)
        if isinstance(obj, list):
            return self._senml(device_id, cp, obj, now_ns)
        if isinstance(obj, dict):
            return self._json_form(device_id, cp, obj, now_ns, False)
        return Rejection(
            RejectReason.BAD_SHAPE,
            'payload must be a JSON object {"ts": ..., "seq": ..., "readings": {...}} '
            f"or a SenML array, got {_show(obj)}",
        )

    def _json_form(
        self, device_id: str, cp: _Compiled, obj: dict[Any, Any], now_ns: int, owned: bool
    ) -> Reading | Rejection:
        if not obj.keys() <= _JSON_KEYS:
            extra = sorted(_short(str(k)) for k in obj.keys() - _JSON_KEYS)
            return Rejection(
                RejectReason.BAD_SHAPE,
                f"unexpected top-level key(s) {', '.join(extra[:5])}; a payload has only "
                "'ts', 'seq' and 'readings' (the device id comes from the topic)",
            )
        readings = obj.get("readings")
        if readings.__class__ is not dict:
            if readings is None:
                return Rejection(RejectReason.BAD_SHAPE, "'readings' is missing")
            if not isinstance(readings, dict):
                return Rejection(
                    RejectReason.BAD_SHAPE, f"'readings' must be an object, got {_show(readings)}"
                )
        seq = obj.get("seq")
        if seq is not None and not (seq.__class__ is int and 0 <= seq <= INT64_MAX):
            return Rejection(
                RejectReason.BAD_SHAPE,
                f"'seq' must be an integer from 0 to 2**63-1, got {_show(seq)}",
            )
        ts = obj.get("ts")
        if ts.__class__ is int:
            ts_ns = ts * 1_000_000
        elif isinstance(ts, str):
            parsed = parse_rfc3339_ns(ts)
            if parsed is None:
                return Rejection(
                    RejectReason.BAD_TIMESTAMP,
                    f"'ts' {_short(ts)} is not an RFC 3339 date-time with a time zone "
                    "(e.g. 2024-05-01T12:00:00.123Z or 2024-05-01T14:00:00+02:00)",
                )
            ts_ns = parsed
        else:
            return self._bad_ts_type(ts)
        # Compare before subtracting: the window check below also catches a
        # device that sends epoch seconds instead of milliseconds.
        if not (now_ns - self._max_past_ns <= ts_ns <= now_ns + self._max_future_ns):
            bad = self._check_window(ts_ns, now_ns)
            if bad is not None:
                if (
                    bad.reason is RejectReason.TIMESTAMP_TOO_OLD
                    and ts.__class__ is int
                    and 10**8 <= ts < 10**11
                ):
                    return Rejection(
                        bad.reason,
                        bad.detail + f"; {ts} looks like epoch seconds, 'ts' is in milliseconds",
                    )
                return bad
        return self._finish_fields(device_id, cp, readings, ts_ns, seq, "readings", owned)

    def _bad_ts_type(self, ts: object) -> Rejection:
        if ts is None:
            return Rejection(
                RejectReason.BAD_TIMESTAMP,
                "'ts' is missing; send the measurement time as epoch milliseconds or RFC 3339",
            )
        if isinstance(ts, float) and not isinstance(ts, bool):
            return Rejection(
                RejectReason.BAD_TIMESTAMP,
                f"'ts' = {_show(ts)} is not an integer; send epoch milliseconds as an integer",
            )
        if isinstance(ts, int) and not isinstance(ts, bool):
            return Rejection(RejectReason.BAD_TIMESTAMP, f"'ts' = {_show(ts)} is not a plain integer")
        return Rejection(
            RejectReason.BAD_TIMESTAMP,
            f"'ts' must be epoch milliseconds (an integer) or an RFC 3339 string, got {_show(ts)}",
        )

    def _check_window(self, ts_ns: int, now_ns: int) -> Rejection | None:
        ahead = ts_ns - now_ns
        if ahead > self._max_future_ns:
            return Rejection(
                RejectReason.TIMESTAMP_IN_FUTURE,
                f"time {fmt_ts(ts_ns)} is {fmt_duration(ahead)} ahead of the receiver's clock "
                f"{fmt_ts(now_ns)} (limit {fmt_duration(self._max_future_ns)}); "
                "check the device clock",
            )
        if -ahead > self._max_past_ns:
            return Rejection(
                RejectReason.TIMESTAMP_TOO_OLD,
                f"time {fmt_ts(ts_ns)} is {fmt_duration(-ahead)} older than the receiver's clock "
                f"{fmt_ts(now_ns)} (limit {fmt_duration(self._max_past_ns)})",
            )
        return None

    def _finish_fields(
        self,
        device_id: str,
        cp: _Compiled,
        readings: dict[Any, Any],
        ts_ns: int,
        seq: int | None,
        where: str,
        owned: bool,
    ) -> Reading | Rejection:
        """Check the field values and build the Reading.

        First a check-only pass for the common case where every value already
        has its field's exact Python type and is in range: then the parsed
        dict itself (``owned``: nobody else holds it) or a copy becomes the
        Reading's values. Anything else goes through the explaining pass.
        """
        rules = cp.rules
        n_required = 0
        for name, v in readings.items():
            rule = rules.get(name)
            if rule is None or v.__class__ is not rule[8] or not rule[1] <= v <= rule[2]:
                break
            if rule[3]:
                n_required += 1
        else:
            if n_required == cp.n_required and readings:
                values = readings if owned else dict(readings)
                return _new_reading(device_id, cp.name, cp.version, cp.measurement, ts_ns, seq, values)
        return self._finish_fields_slow(device_id, cp, readings, ts_ns, seq, where)

    def _finish_fields_slow(
        self,
        device_id: str,
        cp: _Compiled,
        readings: dict[Any, Any],
        ts_ns: int,
        seq: int | None,
        where: str,
    ) -> Reading | Rejection:
        rules = cp.rules
        values: dict[str, Value] = {}
        n_required = 0
        for name, v in readings.items():
            rule = rules.get(name)
            if rule is None:
                return self._unknown_field(cp, name)
            if v.__class__ is rule[8] and rule[1] <= v <= rule[2]:
                # The class check proves v is a Value; mypy narrows it to object.
                values[name] = v  # type: ignore[assignment]
            else:
                checked = self._check_value(name, rule, v)
                if isinstance(checked, Rejection):
                    return checked
                values[name] = checked
            if rule[3]:
                n_required += 1
        if n_required != cp.n_required:
            return self._missing(cp, values)
        if not values:
            return Rejection(RejectReason.BAD_SHAPE, f"'{where}' is empty; send at least one field")
        return _new_reading(device_id, cp.name, cp.version, cp.measurement, ts_ns, seq, values)

    def _unknown_field(self, cp: _Compiled, name: object) -> Rejection:
        shown = _short(name) if isinstance(name, str) else _show(name)
        known = ", ".join(cp.rules)
        return Rejection(
            RejectReason.UNKNOWN_FIELD,
            f"field {shown} is not in profile {cp.label}; known fields: {known}",
            name[:64] if isinstance(name, str) else None,
        )

    def _missing(self, cp: _Compiled, values: Mapping[str, Value]) -> Rejection:
        missing = [n for n in cp.required if n not in values]
        return Rejection(
            RejectReason.MISSING_FIELD,
            f"required field(s) {', '.join(repr(n) for n in missing)} missing; profile "
            f"{cp.label} requires {', '.join(cp.required)}",
            missing[0],
        )

    def _check_value(self, name: str, rule: _Rule, v: object) -> Value | Rejection:
        """Type, finiteness and range of one value; the slow, fully explained path."""
        kind, lo, hi, _req, _unit, lo_text, hi_text, unit_sfx, _is_float = rule
        if kind in (_FLOAT, _INT):
            if v is True or v is False or not isinstance(v, int | float):
                return Rejection(
                    RejectReason.WRONG_TYPE,
                    f"field {name!r} must be {_KIND_WANTS[kind]}, got {_show(v)}",
                    name,
                )
            if isinstance(v, float):
                f = float(v)
                if not math.isfinite(f):
                    return Rejection(
                        RejectReason.NOT_FINITE,
                        f"field {name!r} = {f!r} is not a finite number; leave the field out "
                        "when there is no valid value",
                        name,
                    )
                if kind == _INT:
                    return Rejection(
                        RejectReason.WRONG_TYPE,
                        f"field {name!r} must be an integer, got {f!r}"
                        + (" (send it without a decimal point)" if f.is_integer() else ""),
                        name,
                    )
                num: int | float = f
            else:
                num = int(v)
            if num < lo:
                return Rejection(
                    RejectReason.OUT_OF_RANGE,
                    f"field {name!r} = {_show(num)} is below the minimum {lo_text}{unit_sfx}",
                    name,
                )
            if num > hi:
                return Rejection(
                    RejectReason.OUT_OF_RANGE,
                    f"field {name!r} = {_show(num)} is above the maximum {hi_text}{unit_sfx}",
                    name,
                )
            if kind == _INT:
                return num
            try:
                return float(num)
            except OverflowError:
                return Rejection(
                    RejectReason.OUT_OF_RANGE,
                    f"field {name!r} = {_show(num)} is too large for a float",
                    name,
                )
        if kind == _BOOL:
            if v is True or v is False:
                return v
            return Rejection(
                RejectReason.WRONG_TYPE,
                f"field {name!r} must be true or false, got {_show(v)}",
                name,
            )
        if not isinstance(v, str):
            return Rejection(
                RejectReason.WRONG_TYPE, f"field {name!r} must be a string, got {_show(v)}", name
            )
        s = str(v)
        if len(s) > self._max_str:
            return Rejection(
                RejectReason.OUT_OF_RANGE,
                f"field {name!r} is {len(s)} characters long; the limit is {self._max_str}",
                name,
            )
        bad = _CONTROL_RE.search(s)
        if bad is not None:
            return Rejection(
                RejectReason.WRONG_TYPE,
                f"field {name!r} contains a control character or lone surrogate "
                f"(U+{ord(bad.group(0)):04X} at position {bad.start()}); send printable text",
                name,
            )
        return s

    # -- SenML -----------------------------------------------------------------

    def _senml_time(self, x: object, what: str, index: int, now_ns: int) -> int | Rejection:
        """Epoch ns of a resolved SenML time (seconds; < 2**28 means relative to now)."""
        if not _is_number(x):
            return Rejection(
                RejectReason.BAD_TIMESTAMP,
                f"SenML record {index}: '{what}' must be a number of seconds, got {_show(x)}",
            )
        t: int | float = x  # type: ignore[assignment]
        if isinstance(t, float) and not math.isfinite(t):
            return Rejection(RejectReason.BAD_TIMESTAMP, f"SenML record {index}: '{what}' is not finite")
        if t >= _SENML_MAX_ABS_S:
            return Rejection(
                RejectReason.TIMESTAMP_IN_FUTURE,
                f"SenML record {index}: time {_show(t)} s is far in the future",
            )
        if t <= -_SENML_MAX_ABS_S:
            return Rejection(
                RejectReason.TIMESTAMP_TOO_OLD,
                f"SenML record {index}: relative time {_show(t)} s is far in the past",
            )
        # Float seconds carry about 0.2 us at today's epoch: round to whole us.
        ns = int(t) * _NS if isinstance(t, int) else round(float(t) * 1e6) * 1000
        return ns if t >= _SENML_ABSOLUTE else now_ns + ns

    def _senml(self, device_id: str, cp: _Compiled, pack: list[Any], now_ns: int) -> Reading | Rejection:
        """One SenML pack -> one Reading.

        Each record takes a few cheap gates (set comparisons on its keys, an
        unchanged resolved time, a value of the field's exact type); anything
        unusual drops to the explaining checks below the gates.
        """
        if not pack:
            return Rejection(RejectReason.BAD_SHAPE, "SenML pack is empty")
        rules = cp.rules
        bn = ""
        bt: Any = 0
        bu: str | None = None
        bv: int | float | None = None
        ts_ns: int | None = None
        last_time: Any = None
        seq: int | None = None
        values: dict[str, Value] = {}
        n_required = 0
        for i, rec in enumerate(pack):
            if not isinstance(rec, dict):
                return Rejection(
                    RejectReason.BAD_SHAPE, f"SenML record {i} must be an object, got {_show(rec)}"
                )
            keys = rec.keys()
            if not keys <= _SENML_KEYS:
                bad_key = _senml_bad_key(i, rec)
                if bad_key is not None:
                    return bad_key
            if not keys.isdisjoint(_SENML_BASE_KEYS):
                # Base fields apply to this record and all that follow (RFC 8428 4.1).
                if "bn" in rec:
                    b = rec["bn"]
                    if not isinstance(b, str):
                        return Rejection(RejectReason.BAD_SHAPE, f"SenML record {i}: 'bn' must be a string")
                    bn = b
                if "bt" in rec:
                    bt = rec["bt"]
                    if not _is_number(bt):
                        return Rejection(
                            RejectReason.BAD_TIMESTAMP,
                            f"SenML record {i}: 'bt' must be a number of seconds, got {_show(bt)}",
                        )
                if "bu" in rec:
                    u = rec["bu"]
                    if not isinstance(u, str):
                        return Rejection(RejectReason.BAD_UNIT, f"SenML record {i}: 'bu' must be a string")
                    bu = u
                if "bv" in rec:
                    b = rec["bv"]
                    if not _is_number(b) or (isinstance(b, float) and not math.isfinite(b)):
                        return Rejection(
                            RejectReason.WRONG_TYPE,
                            f"SenML record {i}: 'bv' must be a finite number, got {_show(b)}",
                        )
                    bv = b
                if "bver" in rec and (type(rec["bver"]) is not int or rec["bver"] < 1):
                    return Rejection(
                        RejectReason.BAD_SHAPE, f"SenML record {i}: 'bver' must be a positive integer"
                    )

            # Time: all records of the pack must resolve to one instant.
            t = rec.get("t", 0)
            if not (t.__class__ is int or t.__class__ is float or _is_number(t)):
                return Rejection(
                    RejectReason.BAD_TIMESTAMP,
                    f"SenML record {i}: 't' must be a number of seconds, got {_show(t)}",
                )
            resolved = bt + t
            if resolved != last_time:  # NaN never equals itself: it is always re-checked
                rec_ns = self._senml_time(resolved, "bt+t", i, now_ns)
                if isinstance(rec_ns, Rejection):
                    return rec_ns
                if ts_ns is None:
                    ts_ns = rec_ns
                elif rec_ns != ts_ns:
                    return Rejection(
                        RejectReason.BAD_SHAPE,
                        f"SenML record {i} has time {fmt_ts(rec_ns)} but record 0 has "
                        f"{fmt_ts(ts_ns)}: send one pack per reading, all records at one time",
                    )
                last_time = resolved

            if "seq" in rec:
                s = rec["seq"]
                if not (type(s) is int and 0 <= s <= INT64_MAX):
                    return Rejection(
                        RejectReason.BAD_SHAPE,
                        f"SenML record {i}: 'seq' must be an integer from 0 to 2**63-1, got {_show(s)}",
                    )
                if i == 0:
                    seq = s
                elif s != seq:
                    return Rejection(
                        RejectReason.BAD_SHAPE,
                        f"SenML record {i}: 'seq' {s} differs from the pack's sequence number; "
                        "put 'seq' on the first record only",
                    )

            n = rec.get("n", "")
            if not isinstance(n, str):
                return Rejection(RejectReason.BAD_SHAPE, f"SenML record {i}: 'n' must be a string")
            full = bn + n
            name = full[max(full.rfind(":"), full.rfind("/")) + 1 :]
            rule = rules.get(name)
            if rule is None:
                if not name:
                    return Rejection(
                        RejectReason.BAD_SHAPE,
                        f"SenML record {i}: name {_short(full)} does not end in a field name",
                    )
                return self._unknown_field(cp, name)
            if name in values:
                return Rejection(
                    RejectReason.BAD_SHAPE,
                    f"SenML record {i}: field {_short(name)} appears twice in the pack",
                    name,
                )

            kind = rule[0]
            want = _SENML_KEY_FOR_KIND[kind]
            if want not in rec or not keys.isdisjoint(_SENML_OTHER_VALUE_KEYS[kind]):
                return self._senml_bad_value(i, name, kind, rec)
            v = rec[want]

            unit = rule[4]
            if "u" in rec:
                u = rec["u"]
                if u != unit:
                    expected = f"'{unit}'" if unit is not None else "no unit"
                    return Rejection(
                        RejectReason.BAD_UNIT,
                        f"SenML record {i}: field {name!r} has unit "
                        f"{_short(u) if isinstance(u, str) else _show(u)}, "
                        f"the profile {cp.label} uses {expected}",
                        name,
                    )
            elif bu is not None and bu != unit and unit is not None and want == "v":
                # A base unit cannot be unset per record, so it is only held
                # against numeric fields that have a unit of their own.
                return Rejection(
                    RejectReason.BAD_UNIT,
                    f"SenML record {i}: field {name!r} has base unit {_short(bu)}, "
                    f"the profile {cp.label} uses '{unit}'",
                    name,
                )

            if bv is None and v.__class__ is rule[8] and rule[1] <= v <= rule[2]:
                # The class check proves v is a Value; mypy narrows it to object.
                values[name] = v  # type: ignore[assignment]
            else:
                if bv is not None and want == "v" and _is_number(v):
                    v = bv + v
                checked = self._check_value(name, rule, v)
                if isinstance(checked, Rejection):
                    return checked
                values[name] = checked
            if rule[3]:
                n_required += 1

        if n_required != cp.n_required:
            return self._missing(cp, values)
        assert ts_ns is not None  # the pack is not empty
        bad = self._check_window(ts_ns, now_ns)
        if bad is not None:
            return bad
        return _new_reading(device_id, cp.name, cp.version, cp.measurement, ts_ns, seq, values)

    @staticmethod
    def _senml_bad_value(i: int, name: str, kind: int, rec: dict[Any, Any]) -> Rejection:
        present = [k for k in _SENML_VALUE_KEYS if k in rec]
        if len(present) != 1:
            return Rejection(
                RejectReason.BAD_SHAPE,
                f"SenML record {i} ({name}) must carry exactly one value ('v', 'vb' or 'vs'), "
                f"has {len(present)}",
                name,
            )
        want = _SENML_KEY_FOR_KIND[kind]
        return Rejection(
            RejectReason.WRONG_TYPE,
            f"SenML record {i}: field {name!r} must be {_KIND_WANTS[kind]} given as '{want}', "
            f"got '{present[0]}'",
            name,
        )


def _senml_bad_key(i: int, rec: dict[Any, Any]) -> Rejection | None:
    """Refuse non-string and must-understand keys (RFC 8428 4.4); others are ignored."""
    for k in rec:
        if not isinstance(k, str):
            return Rejection(RejectReason.BAD_SHAPE, f"SenML record {i}: keys must be strings")
        if k.endswith("_"):
            return Rejection(
                RejectReason.BAD_SHAPE,
                f"SenML record {i}: must-understand field {_short(k)} is not supported",
            )
    return None
