"""A device profile compiled for the hot path: per field, one plain tuple in a plain dict.

Compiled once per (profile, version) and shared by every validator of the process.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from citygate.contract.profiles import INT64_MAX, INT64_MIN, DeviceProfile, FieldSpec

# Field kinds: small ints, so a kind indexes the per-kind tuples (here and in senml.py).
FLOAT: Final = 0
INT: Final = 1
BOOL: Final = 2
STR: Final = 3
_KINDS: Final = {"float": FLOAT, "int": INT, "bool": BOOL, "string": STR}
KIND_WANTS: Final = ("a number", "an integer", "true or false", "a string")
_MAX_FLOAT: Final = sys.float_info.max

# What explaining a refused value needs: (kind, unit, lo_text, hi_text, unit_suffix).
Detail = tuple[int, str | None, str, str, str]

# A field's rule: (exact_type, lo, hi, required, detail). A value passes when its class
# *is* exact_type and lo <= value <= hi: float bounds are always finite (the largest
# double when the profile has none), so that one chained comparison also rejects NaN and
# the infinities; bool fields get the bounds False..True. String fields have no
# exact_type (None): no value's class is None, so they always take the explaining path
# (length, control characters). Plain tuples unpacked into named locals: in CPython that
# is cheaper than indexing them, and much cheaper than attributes; the detail comes last
# and nested so that the checks that pass unpack five names, not nine.
Rule = tuple[type | None, Any, Any, bool, Detail]
# The rule of a name the profile does not have, for a lookup that must not branch: it
# passes nothing, so the caller takes its explaining path (unknown field).
NO_RULE: Final[tuple[None, Any, Any, bool, None]] = (None, None, None, False, None)


def _num_text(x: float) -> str:
    s = repr(x)
    return s[:-2] if s.endswith(".0") else s


def _rule(spec: FieldSpec) -> Rule:
    kind = _KINDS[spec.type]
    lo: Any
    hi: Any
    exact: type | None
    if kind == FLOAT:
        lo = -_MAX_FLOAT if spec.min is None else float(spec.min)
        hi = _MAX_FLOAT if spec.max is None else float(spec.max)
        exact = float
    elif kind == INT:
        lo = INT64_MIN if spec.min is None else int(spec.min)
        hi = INT64_MAX if spec.max is None else int(spec.max)
        exact = int
    elif kind == BOOL:
        lo, hi, exact = False, True, bool
    else:
        lo = hi = exact = None
    numeric = kind in (FLOAT, INT)
    detail = (
        kind,
        spec.unit,
        _num_text(lo) if numeric else "",
        _num_text(hi) if numeric else "",
        f" {spec.unit}" if spec.unit else "",
    )
    return (exact, lo, hi, spec.required, detail)


class CompiledProfile:
    """A profile reduced to what the hot path needs."""

    __slots__ = ("measurement", "n_required", "name", "required", "rules", "version")

    def __init__(self, profile: DeviceProfile) -> None:
        self.name = profile.name
        self.version = profile.version
        self.measurement = profile.measurement
        self.rules: dict[str, Rule] = {fname: _rule(spec) for fname, spec in profile.fields.items()}
        self.required = tuple(n for n, spec in profile.fields.items() if spec.required)
        self.n_required = len(self.required)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"
