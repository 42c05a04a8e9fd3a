"""What validation makes of a payload: a typed Reading, or a Rejection with a countable reason.

The gateway stores Readings (in their wire form, :mod:`citygate.contract.wire`) and the
cloud writes them as line protocol; both count Rejections by :class:`RejectReason`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

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


# The generated __init__ of a frozen dataclass sets each field through
# object.__setattr__, which is a fifth of the cost of validating a payload.
# The validator's parsers set the slots through their descriptors instead: same
# object, same invariants (only they build Readings this way), half the time.
_SET_READING_SLOTS: Final = tuple(
    Reading.__dict__[n].__set__
    for n in ("device_id", "profile", "profile_version", "measurement", "ts_ns", "seq", "values")
)
_object_new: Final = object.__new__


def new_reading(
    device_id: str,
    profile: str,
    profile_version: int,
    measurement: str,
    ts_ns: int,
    seq: int | None,
    values: dict[str, Value],
) -> Reading:
    """A Reading of values the caller has already checked (the validator's fast constructor)."""
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
